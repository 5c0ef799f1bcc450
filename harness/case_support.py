"""What every case kind run in a child process shares: the clock, the error helpers, the
thread and memory set-up, and the load-and-support preamble.

The clock is passed in explicitly (:class:`Clock`): it counts from the moment the parent
started the process, so ``import_s`` includes the interpreter's start-up whatever module
measures it.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.case_spec import CaseSpec

if TYPE_CHECKING:
    from backends.base import Backend

#: ``prctl`` option that makes the kernel send a signal to a process when its parent dies
#: (``linux/prctl.h``).
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Clock:
    """A start time on :func:`time.perf_counter`'s scale [s]."""

    start: float

    @classmethod
    def since(cls, launched_at: float | None, perf_now: float | None = None,
              wall_now: float | None = None) -> Clock:
        """The clock of a process started at UNIX time ``launched_at`` [s] (None: now)."""
        perf_now = time.perf_counter() if perf_now is None else perf_now
        if launched_at is None:
            return cls(perf_now)
        wall_now = time.time() if wall_now is None else wall_now
        return cls(perf_now - max(0.0, wall_now - launched_at))

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.start


def last_line(error: BaseException) -> str:
    """``Type: last line of the message`` of an exception."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}".strip()


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an exception means memory ran out (host or CUDA)."""
    if isinstance(error, MemoryError):
        return True
    text = f"{type(error).__name__} {error}".lower()
    return any(s in text for s in ("out of memory", "outofmemory", "can't allocate memory",
                                   "cannot allocate memory", "bad_alloc",
                                   "unable to allocate"))


def peak_rss_bytes() -> int:
    """High-water mark of this process's resident memory [bytes].

    On Linux this is ``VmHWM`` of ``/proc/self/status``, the peak of this program's own
    address space: ``getrusage``'s ``ru_maxrss`` survives ``execve`` (proc(5), getrusage(2)),
    so a case process started by a large parent would report the parent's peak. Elsewhere
    ``ru_maxrss`` (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def die_with_parent(parent_pid: int | None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``); exit at once if the parent is already gone."""
    import os
    import signal

    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(3)  # the parent died before the request above took effect


def apply_limits(spec: CaseSpec) -> None:
    """The hard memory limit of a CPU case: ``RLIMIT_DATA`` set to the memory limit, so an
    allocation past it fails at once (``MemoryError``) instead of slipping between two
    of the parent's polls. ``RLIMIT_DATA`` counts private writable memory (heap and
    anonymous mappings, Linux >= 4.7), not the read-only libraries and reserved address
    space that ``RLIMIT_AS`` would count, so torch imports and runs under it. Measured on
    the reference machine after ImpactX and the in-house tracker each tracked 1e5
    particles in one process: 463 MB private data, 446 MB resident, 1 054 MB address
    space; with ``RLIMIT_AS`` a 1 GiB limit would refuse that case, with ``RLIMIT_DATA`` it
    runs (and torch.compile works under it). CUDA cases are left without it (the driver
    maps device memory and reserves address space in the process)."""
    if not (spec.hard_memory_limit and spec.memory_limit_bytes) or spec.device != "cpu":
        return
    limit = int(spec.memory_limit_bytes)
    with contextlib.suppress(ValueError, OSError, AttributeError):
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def set_threads(threads: int | None, imported_only: bool = False) -> None:
    """Torch's intra-op thread count (None: leave what the process is given). With
    ``imported_only``, only when torch is imported already (a backend that does not use torch
    does not pay torch's import, about 2 s; torch imported later takes the case's
    ``OMP_NUM_THREADS``, which the parent sets)."""
    if threads and (not imported_only or "torch" in sys.modules):
        import torch

        torch.set_num_threads(int(threads))


def initial_particles(spec: CaseSpec, scenario) -> np.ndarray:
    """The case's initial ``(N, 6)`` particles: the file of ``initial_path``, else drawn here
    from the scenario's beam (deterministic for its seed)."""
    if spec.initial_path:
        return np.load(spec.initial_path)
    from harness.model.particles import generate

    base = Path(scenario.source_file).parent if scenario.source_file else None
    return generate(scenario.beam, spec.particles, base_dir=base)


@dataclass
class Loaded:
    """The scenario and backend of a case, and whether the backend can run it.

    Attributes:
        scenario: the validated scenario; backend_class / backend: the backend's class and
            an instance; support: its plan of the case (:class:`backends.base.Plan`, the
            parent's when it handed one over) or Unsupported;
        versions: versions of the backend's dependencies; backend_version: its own.
    """

    scenario: Any
    backend_class: type[Backend]
    backend: Any
    support: Any
    versions: dict[str, str]
    backend_version: str | None

    @property
    def unsupported(self) -> bool:
        """Whether the backend declined the case."""
        from backends.base import Unsupported

        return isinstance(self.support, Unsupported)


def case_scenario(spec: CaseSpec):
    """The case's scenario: the parent's validated model when it handed one over
    (``scenario_blob``, no parsing or validating again), else read from its file."""
    from harness.model.load import load_scenario, scenario_from_bytes

    if spec.scenario_blob and Path(spec.scenario_blob).exists():
        return scenario_from_bytes(Path(spec.scenario_blob).read_bytes())
    return load_scenario(spec.scenario_path)


def case_plan(spec: CaseSpec) -> Any:
    """The plan the parent made for the case (``plan_blob``), or None."""
    import pickle

    from backends.base import Plan

    if not spec.plan_blob or not Path(spec.plan_blob).exists():
        return None
    plan = pickle.loads(Path(spec.plan_blob).read_bytes())  # noqa: S301 - the parent's
    return plan if isinstance(plan, Plan) else None


def load(spec: CaseSpec, scenario=None) -> Loaded:
    """Load the scenario (unless given) and the backend, set the threads, and take the
    parent's plan of the case (``plan_blob``, when no other scenario is given: its scenario
    is the one the case runs) or plan it here (the scenario of the case's kind and options,
    :func:`harness.case_kinds.case_scenario`): support and translation are decided once per
    case."""
    from backends.registry import load_backend_class
    from harness.case_kinds import case_scenario as kind_scenario

    plan = case_plan(spec) if scenario is None else None
    if scenario is None:
        scenario = (plan.scenario if plan is not None
                    else kind_scenario(spec.kind, case_scenario(spec), spec.options))
    cls = load_backend_class(spec.backend)
    backend = cls()
    availability = cls.availability()  # imports the backend's own modules (torch if it uses it)
    set_threads(spec.threads, imported_only=True)
    versions = availability.versions or cls.dependency_versions()
    support = plan if plan is not None else backend.plan(scenario, spec.device, spec.dtype)
    return Loaded(scenario, cls, backend, support, versions,
                  availability.version or versions.get(cls.distribution))


def failure_row(error: BaseException, traceback_text: str) -> dict[str, Any]:
    """The row of a case that raised: ``oom`` when memory ran out, ``failed`` with cause
    ``disk-full`` when the disk was full (:func:`harness.rows.disk_full_error`), else
    ``failed``."""
    from harness.model.vocabulary import Cause, Status
    from harness.rows import DISK_FULL, disk_full_error, disk_full_reason

    full = disk_full_error(error)
    if full is not None:
        return {"status": Status.FAILED.value, "cause": DISK_FULL,
                "reason": disk_full_reason(full), "traceback": traceback_text[-4000:],
                "peak_rss_bytes": peak_rss_bytes()}
    oom = is_out_of_memory(error)
    return {"status": (Status.OOM if oom else Status.FAILED).value,
            "cause": (Cause.OUT_OF_MEMORY if oom else Cause.EXCEPTION).value,
            "reason": last_line(error), "traceback": traceback_text[-4000:],
            "peak_rss_bytes": peak_rss_bytes()}
