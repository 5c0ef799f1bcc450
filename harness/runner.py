"""The runner: each case in its own fresh process, with a time and memory limit; every
finished case appended to the results store at once.

Statuses (:class:`harness.vocabulary.Status`):

* ``unsupported`` — the backend is not installed, or says it cannot run the case (decided
  in the parent without starting a process when the adapter can tell);
* ``timeout`` — the child ran past ``timeout`` seconds and was killed;
* ``oom`` — the child's resident memory passed ``memory_limit`` bytes (the parent polls it
  and kills the child), or the child reported running out of host or CUDA memory, or it
  was killed by the kernel's out-of-memory killer (SIGKILL not sent by us);
* ``failed`` — an exception (its last line is the reason) or a crash (the signal).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from harness import results
from harness.cases import Case, final_path, initial_path
from harness.metadata import now

#: Seconds between two looks at a running child (memory high-water mark, time limit).
POLL_S = 0.05
#: Rows always present, whatever the status.
CASE_COLUMNS = ("kind", "case_id", "scenario", "backend", "particles", "device", "dtype",
                "repeat", "threads_requested", "role", "reference", "reference_note")


@dataclass
class Limits:
    """Per-case limits: wall time [s] and resident memory [bytes] (None: no cap)."""

    timeout_s: float = 600.0
    memory_bytes: int | None = None


def base_row(case: Case) -> dict[str, Any]:
    """The columns that identify a case."""
    return {"kind": case.kind, "case_id": case.case_id, "scenario": case.scenario,
            "backend": case.backend, "particles": case.particles, "device": case.device,
            "dtype": case.dtype, "repeat": case.repeat, "threads_requested": case.threads,
            "role": case.role, "reference": case.reference,
            "reference_note": case.reference_note}


def precheck(case: Case, scenario) -> dict[str, Any] | None:
    """An ``unsupported`` row when the adapter can tell without running the code."""
    from backends.base import Unsupported
    from backends.registry import load_backend_class

    try:
        cls = load_backend_class(case.backend)
    except KeyError as error:
        return {"status": "unsupported", "reason": str(error.args[0])}
    availability = cls.availability()
    if not availability.available:
        return {"status": "unsupported",
                "reason": f"{case.backend} is not installed: {availability.hint}"}
    try:
        support = cls().supports(scenario, case.device, case.dtype)
    except Exception:  # noqa: BLE001 - the child will run and record the error
        return None
    if isinstance(support, Unsupported):
        return {"status": "unsupported", "reason": support.reason,
                "backend_version": availability.version}
    return None


def _kill_tree(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


def _rss_tree(pid: int) -> int:
    """Resident memory of a process and its children [bytes]."""
    try:
        parent = psutil.Process(pid)
        processes = [parent, *parent.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes)
    except psutil.Error:
        return 0


def run_child(spec: dict[str, Any], limits: Limits, workdir: Path) -> list[dict[str, Any]]:
    """Run one case in a fresh interpreter; the child's rows or one row saying why not."""
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=workdir, delete=False) as f:
        json.dump(spec, f)
        spec_file = Path(f.name)
    out_file = spec_file.with_name(spec_file.stem + ".out.json")
    env = dict(os.environ)
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    env.setdefault("PYTHONPATH", "")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env["PYTHONPATH"]) if p)
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "harness.child", str(spec_file),
                                str(out_file)], cwd=workdir, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    peak = 0
    killed: str | None = None
    stderr_chunks: list[bytes] = []
    try:
        while process.poll() is None:
            elapsed = time.perf_counter() - started
            if elapsed > limits.timeout_s:
                killed = "timeout"
                _kill_tree(process)
                break
            rss = _rss_tree(process.pid)
            peak = max(peak, rss)
            if limits.memory_bytes and rss > limits.memory_bytes:
                killed = "oom"
                _kill_tree(process)
                break
            time.sleep(POLL_S)
        _, stderr = process.communicate()
        stderr_chunks.append(stderr or b"")
    finally:
        if process.poll() is None:
            _kill_tree(process)
            process.wait()
        spec_file.unlink(missing_ok=True)
    wall = time.perf_counter() - started
    common = {"wall_s": wall, "parent_peak_rss_bytes": peak or None}
    if killed == "timeout":
        return [common | {"status": "timeout",
                          "reason": f"killed after the {limits.timeout_s:g} s time limit"}]
    if killed == "oom":
        return [common | {"status": "oom", "reason": "resident memory passed the limit of "
                          f"{limits.memory_bytes / 2**30:.2f} GiB; killed"}]
    if out_file.exists():
        rows = json.loads(out_file.read_text())
        out_file.unlink()
        return [common | row for row in rows]
    code = process.returncode
    tail = b"".join(stderr_chunks).decode(errors="replace").strip().splitlines()
    detail = f" ({tail[-1][-300:]})" if tail else ""
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        status = "oom" if name == "SIGKILL" else "failed"
        what = ("killed by SIGKILL (the system's out-of-memory killer)" if status == "oom"
                else f"child process died with signal {name}")
        return [common | {"status": status, "reason": what + detail}]
    return [common | {"status": "failed",
                      "reason": f"child process exited with code {code} without a result"
                                f"{detail}"}]


class Runner:
    """Runs a planned list of cases into a run directory.

    Args:
        out: run directory (``results.jsonl``, ``metadata.json``, a particle cache).
        limits: per-case time and memory limits.
        resume: skip the cases whose ids are already in ``results.jsonl``.
        on_row: called with each row as it is stored (progress display).
    """

    def __init__(self, out: Path, limits: Limits, resume: bool = False,
                 on_row: Callable[[dict], None] | None = None,
                 on_start: Callable[[Case], None] | None = None):
        self.out = Path(out).absolute()  # case processes run elsewhere (cwd)
        self.cache = self.out / ".cache"
        self.limits = limits
        self.resume = resume
        self.on_row = on_row
        self.on_start = on_start
        #: ``--write-particles``: "openpmd" writes initial and final particles (harness.io)
        self.write_particles: str | None = None

    def pending(self, cases: Sequence[Case]) -> list[Case]:
        """The cases not yet recorded (all of them unless resuming)."""
        if not self.resume:
            return list(cases)
        done = results.done_case_ids(self.out)
        return [c for c in cases if c.case_id not in done]

    def initial_particles(self, case: Case, scenario) -> Path:
        """The initial particles of a scenario and count, drawn once per run and reused."""
        from harness.particles import generate

        path = initial_path(self.cache, case.scenario, case.particles)
        if not path.exists():
            self.cache.mkdir(parents=True, exist_ok=True)
            base = Path(scenario.source_file).parent if scenario.source_file else None
            particles = generate(scenario.beam, case.particles, base_dir=base)
            from harness.io.particles_out import write_initial

            write_initial(self.write_particles, self.out, scenario, case.particles, particles)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, particles)
            os.replace(tmp, path)
        return path

    def spec(self, case: Case, scenario) -> dict[str, Any]:
        """What the child is told."""
        from backends.base import model_signature

        spec = case.as_dict() | {
            "initial_path": str(self.initial_particles(case, scenario)),
            "reference_model": model_signature(scenario),
            "write_particles": self.write_particles, "run_directory": str(self.out),
        }
        if case.role == "reference":
            spec["final_path"] = str(final_path(self.cache, case.case_id))
        if case.reference_case:
            reference_file = final_path(self.cache, case.reference_case)
            spec["reference_final_path"] = str(reference_file)
            if not reference_file.exists():
                spec["reference_missing"] = (f"the reference case {case.reference_case} has "
                                             "no result (see its row)")
        return spec

    def run_case(self, case: Case, scenario) -> list[dict[str, Any]]:
        """Run (or pre-decide) one case; its rows, stored."""
        started = now()
        rows = None
        try:
            unsupported = precheck(case, scenario)
            if unsupported is not None:
                rows = [unsupported]
            else:
                rows = run_child(self.spec(case, scenario), self.limits, self.cache)
        except Exception as error:  # noqa: BLE001 - the harness records and goes on
            rows = [{"status": "failed", "reason": f"harness: {type(error).__name__}: {error}"}]
        stored = [base_row(case) | {"started": started, "finished": now()} | row
                  for row in rows]
        results.append_rows(self.out, stored)
        for row in stored:
            if self.on_row:
                self.on_row(row)
        return stored

    def regenerate_reference(self, reference: Case, scenario) -> None:
        """Re-track a reference case whose row is stored but whose final particles are gone
        (a resumed run): the particles are cached again, no second row is stored."""
        if final_path(self.cache, reference.case_id).exists():
            return
        spec = self.spec(reference, scenario) | {"repeat": 0}
        run_child(spec, self.limits, self.cache)

    def run(self, cases: Sequence[Case], scenarios: dict[str, Any]) -> list[dict[str, Any]]:
        """Run every pending case in order; returns the rows stored by this call."""
        self.out.mkdir(parents=True, exist_ok=True)
        stored = []
        pending = self.pending(cases)
        pending_ids = {c.case_id for c in pending}
        by_id = {c.case_id: c for c in cases}
        for case in pending:
            reference = by_id.get(case.reference_case or "")
            if reference is not None and reference.case_id not in pending_ids:
                self.regenerate_reference(reference, scenarios[case.scenario])
            if self.on_start:
                self.on_start(case)
            stored.extend(self.run_case(case, scenarios[case.scenario]))
        results.write_tables(self.out)
        return stored

    def clear_cache(self) -> None:
        """Remove the particle cache (after a complete run)."""
        if self.cache.exists():
            for path in self.cache.iterdir():
                path.unlink(missing_ok=True)
            self.cache.rmdir()
