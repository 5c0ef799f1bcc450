"""One case in its own fresh process, under its time and memory limits: the process
supervision of :mod:`harness.runner`, which knows nothing of run directories or of other
cases, so that any execution layer (this process, a Dask worker) can call it.

Statuses (:class:`harness.model.vocabulary.Status`) and causes (the ``cause`` column,
:class:`harness.model.vocabulary.Cause`) a case process can end with:

* ``timeout`` (cause ``timeout``) — the child ran past ``timeout`` seconds and was killed;
* ``oom`` — cause ``memory-limit``: the child's resident memory passed the limit (seen by
  the parent's poll, or in the child's peak resident memory after it ended, so a spike
  between two polls counts); ``out-of-memory``: an allocation failed in the child (host or
  CUDA, or the hard limit ``RLIMIT_DATA`` refused it); ``kernel-oom``: SIGKILL by the
  kernel's out-of-memory killer (the kernel log or the cgroup's ``oom_kill`` count says so);
* ``failed`` — cause ``exception`` (its last line is the reason), ``crash`` (the child's
  own fault signal, with its last line of error output), ``signal`` (a signal sent from
  outside the harness, e.g. ``kill -9``: not an out-of-memory kill), ``exit`` (no result)
  or ``disk-full`` (ENOSPC or EDQUOT in the case's own writes or its result file).

No orphans: a child asks the kernel to kill it when the parent dies (``PR_SET_PDEATHSIG``)
and the parent kills the child's process group on any exit it lives through.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from harness.case_spec import CaseSpec
from harness.model.vocabulary import Cause, Status
from harness.rows import (
    DISK_FULL,
    DISK_FULL_EXIT,
    says_disk_full,
)

#: Seconds between two looks at a running child (memory, time limit).
POLL_S = 0.02
#: Signals a process raises on itself when it crashes (not sent from outside).
CRASH_SIGNALS = frozenset({"SIGSEGV", "SIGABRT", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP",
                           "SIGSYS"})


@dataclass
class Limits:
    """Per-case limits: wall time [s] and resident memory [bytes] (None: no cap).

    ``hard_memory``: also set the memory limit as the child's ``RLIMIT_DATA`` (CPU cases),
    so an allocation past it fails at once instead of slipping between two polls.
    """

    timeout_s: float = 600.0
    memory_bytes: int | None = None
    hard_memory: bool = True


def kill_group(pid: int, leader_alive: bool = True) -> None:
    """SIGKILL a case process's whole process group (it leads its own session); the
    process alone when the group is gone and the leader has not been reaped yet (a reaped
    pid may belong to another process by now)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if leader_alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _rss_tree(pid: int) -> int:
    """Resident memory of a process and its children [bytes]."""
    try:
        parent = psutil.Process(pid)
        processes = [parent, *parent.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes)
    except psutil.Error:
        return 0


def _cgroup_oom_kills() -> int | None:
    """The ``oom_kill`` count of this process's memory cgroup (v2 ``memory.events``, v1
    ``memory.oom_control``); None where unreadable."""
    candidates = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                candidates += [Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.events",
                               Path("/sys/fs/cgroup/memory.events")]
            elif "memory" in controllers.split(","):
                candidates += [Path("/sys/fs/cgroup/memory") / path.lstrip("/")
                               / "memory.oom_control",
                               Path("/sys/fs/cgroup/memory/memory.oom_control")]
    for candidate in candidates:
        with contextlib.suppress(OSError, ValueError):
            for line in candidate.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    return None


def _kernel_log_names_oom(pid: int) -> bool | None:
    """Whether the kernel log reports an out-of-memory kill of ``pid`` (None: unreadable)."""
    try:
        log = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if log.returncode != 0:
        return None
    pattern = re.compile(rf"(Killed process {pid}\b|oom-kill:.*\bpid={pid}\b)")
    return any(pattern.search(line) for line in log.stdout.splitlines())


def _kill_cause(pid: int, oom_kills_before: int | None) -> tuple[str, str, str]:
    """Status, cause and words for a child killed by SIGKILL that the harness did not send."""
    by_log = _kernel_log_names_oom(pid)
    after = _cgroup_oom_kills()
    by_cgroup = (oom_kills_before is not None and after is not None
                 and after > oom_kills_before)
    if by_log or by_cgroup:
        evidence = "the kernel log" if by_log else "the cgroup's oom_kill count"
        return (Status.OOM.value, Cause.KERNEL_OOM.value,
                f"killed by the kernel's out-of-memory killer (SIGKILL; {evidence} says so)")
    checked = [what for what, known in (("kernel log", by_log),
                                        ("cgroup oom_kill count", by_cgroup if after
                                         is not None else None)) if known is not None]
    basis = f"; no out-of-memory kill in the {' or '.join(checked)}" if checked else ""
    return (Status.FAILED.value, Cause.SIGNAL.value,
            f"killed by SIGKILL sent from outside the harness{basis}")


def _over_limit(rows: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """Rows of a child whose peak resident memory passed the limit become ``oom`` (a spike
    between two polls is caught here: the peak is the kernel's high-water mark)."""
    peak = max((int(row.get("peak_rss_bytes") or 0) for row in rows), default=0)
    if not limit or peak <= limit:
        return rows
    reason = (f"peak resident memory {peak / 2**30:.3g} GiB passed the limit of "
              f"{limit / 2**30:.3g} GiB")
    # an allocation the child's own hard limit refused keeps that, the truer cause
    return [row if row.get("cause") == Cause.OUT_OF_MEMORY.value else
            row | {"status": Status.OOM.value, "cause": Cause.MEMORY_LIMIT.value,
                   "reason": reason} for row in rows]


def _tail_bytes(path: Path, size: int = 8192) -> bytes:
    """The last ``size`` bytes of a file."""
    with path.open("rb") as stream:
        stream.seek(max(0, path.stat().st_size - size))
        return stream.read()


def run_in_child(spec: CaseSpec, limits: Limits, workdir: Path,
                 on_spawn: Callable[[int], None] | None = None,
                 on_exit: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Run one case in a fresh interpreter under ``limits``; the child's rows, or one row
    saying why there are none (see the module text for statuses and causes).

    Args:
        spec: the case; workdir: a directory of this run for the spec and result files.
        on_spawn / on_exit: called with the child's pid when it started / ended.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    spec = spec.model_copy(update={
        "memory_limit_bytes": limits.memory_bytes, "hard_memory_limit": limits.hard_memory,
        "parent_pid": os.getpid()})
    fd, name = tempfile.mkstemp(suffix=".json", prefix="spec-", dir=workdir)
    spec_file = Path(name)
    out_file = spec_file.with_name(spec_file.stem + ".out.json")
    env = dict(os.environ)
    if spec.threads:
        env["OMP_NUM_THREADS"] = str(spec.threads)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    oom_kills_before = _cgroup_oom_kills()
    started = time.perf_counter()
    with os.fdopen(fd, "w") as stream:
        stream.write(spec.model_copy(update={"launched_at": time.time()}).model_dump_json())
    err_file = spec_file.with_name(spec_file.stem + ".stderr")
    with err_file.open("wb") as errors:  # a file, not a pipe: a chatty child never blocks
        process = subprocess.Popen([sys.executable, "-m", "harness.child", str(spec_file),
                                    str(out_file)], cwd=workdir, env=env,
                                   stdout=subprocess.DEVNULL, stderr=errors,
                                   start_new_session=True)
    if on_spawn:
        on_spawn(process.pid)
    peak = 0
    killed: str | None = None
    stderr = b""
    try:
        while process.poll() is None:
            if time.perf_counter() - started > limits.timeout_s:
                killed = Cause.TIMEOUT.value
                kill_group(process.pid)
                break
            rss = _rss_tree(process.pid)
            peak = max(peak, rss)
            if limits.memory_bytes and rss > limits.memory_bytes:
                killed = Cause.MEMORY_LIMIT.value
                kill_group(process.pid)
                break
            time.sleep(POLL_S)
        process.wait()
    finally:
        if process.poll() is None:
            kill_group(process.pid)
            process.wait()
        else:
            kill_group(process.pid, leader_alive=False)  # helpers left in its group
        if on_exit:
            on_exit(process.pid)
        spec_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            stderr = _tail_bytes(err_file)
        err_file.unlink(missing_ok=True)
    wall = time.perf_counter() - started
    common = {"wall_s": wall, "parent_peak_rss_bytes": peak or None}
    if killed == Cause.TIMEOUT:
        out_file.unlink(missing_ok=True)
        return [common | {"status": Status.TIMEOUT.value, "cause": killed,
                          "reason": f"killed after the {limits.timeout_s:g} s time limit"}]
    if killed == Cause.MEMORY_LIMIT:
        out_file.unlink(missing_ok=True)
        return [common | {"status": Status.OOM.value, "cause": killed,
                          "reason": "resident memory passed the limit of "
                          f"{(limits.memory_bytes or 0) / 2**30:.3g} GiB; killed"}]
    if out_file.exists():
        rows = json.loads(out_file.read_text())
        out_file.unlink()
        return _over_limit([common | row for row in rows], limits.memory_bytes)
    code = process.returncode
    text = (stderr or b"").decode(errors="replace")
    tail = text.strip().splitlines()
    detail = f" (last line: {tail[-1][-300:]})" if tail else ""
    if code == DISK_FULL_EXIT or (code is not None and code > 0 and says_disk_full(text)):
        what = tail[-1][-300:] if tail and tail[-1].startswith("disk full") else \
            f"disk full: the case process exited with code {code}{detail}"
        return [common | {"status": Status.FAILED.value, "cause": DISK_FULL, "reason": what}]
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        if name == "SIGKILL":
            status, cause, what = _kill_cause(process.pid, oom_kills_before)
        elif name in CRASH_SIGNALS:
            status, cause, what = (Status.FAILED.value, Cause.CRASH.value,
                                   f"child process crashed with signal {name}")
        else:
            status, cause, what = (Status.FAILED.value, Cause.SIGNAL.value,
                                   f"killed by signal {name} sent from outside the harness")
        return [common | {"status": status, "cause": cause, "reason": what + detail}]
    return [common | {"status": Status.FAILED.value, "cause": Cause.EXIT.value,
                      "reason": f"child process exited with code {code} without a result"
                                f"{detail}"}]


def run_payload(payload: tuple[CaseSpec, Limits, Path]) -> list[dict[str, Any]]:
    """The work of one case wherever it runs (this process or a cluster worker): its child
    process under its limits (:func:`run_in_child`)."""
    spec, limits, workdir = payload
    return run_in_child(spec, limits, workdir)
