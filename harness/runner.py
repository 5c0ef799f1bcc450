"""The runner: each case in its own fresh process, with a time and memory limit; every
finished case appended to the results store at once.

Two layers, so that another execution layer (e.g. a Dask cluster) can replace the loop:

* :func:`harness.case_process.run_in_child` runs one case in a fresh process under its
  limits and returns its rows; it knows nothing of run directories or of other cases;
* :class:`Runner` is the loop over a run directory: the lock
  (:mod:`harness.run_lock`), the results writer (:class:`harness.results.ResultsWriter`),
  ``--resume``, the pre-flight memory check (:mod:`harness.preflight`), reference particles.

Statuses (:class:`harness.model.vocabulary.Status`) and causes (the ``cause`` column,
:class:`harness.model.vocabulary.Cause`):

* ``unsupported`` — the backend is not installed, or says it cannot run the case (decided
  in the parent without starting a process when the adapter can tell);
* ``timeout`` (cause ``timeout``) — the child ran past ``timeout`` seconds and was killed;
* ``oom`` — cause ``memory-limit``: the child's resident memory passed the limit (seen by
  the parent's poll, or in the child's peak resident memory after it ended, so a spike
  between two polls counts); ``out-of-memory``: an allocation failed in the child (host or
  CUDA, or the hard limit ``RLIMIT_DATA`` refused it); ``kernel-oom``: SIGKILL by the
  kernel's out-of-memory killer (the kernel log or the cgroup's ``oom_kill`` count says
  so); ``preflight``: the estimate exceeds the limit, the case was not started;
* ``failed`` — cause ``exception`` (its last line is the reason), ``crash`` (the child's
  own fault signal, with its last line of error output), ``signal`` (a signal sent from
  outside the harness, e.g. ``kill -9``: not an out-of-memory kill), ``exit`` (no result),
  ``harness``, ``disk-full`` (ENOSPC or EDQUOT anywhere in the case: its own writes, its
  result file, the harness's files for it) or ``lost-worker`` (:mod:`harness.rows`).

``--resume`` runs a case again when its last record failed for a cause outside the case
(:data:`harness.rows.OUTSIDE_CAUSES`: ``disk-full``, ``signal``, ``lost-worker``).

No orphans: a child asks the kernel to kill it when the parent dies (``PR_SET_PDEATHSIG``),
the parent kills the child's process group on any exit it lives through (including
Ctrl-C), and the lock file records running children so that a resumed run reaps them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import preflight, results
from harness.case_process import (
    Limits,
    run_in_child,
    run_payload,
)
from harness.case_spec import CaseSpec
from harness.cases import Case, cache_name, final_path, scenario_hash
from harness.execution import PLACEMENT_COLUMNS, Executor, Job, placement
from harness.metadata import now
from harness.model.vocabulary import Cause, Status
from harness.rows import (
    DISK_FULL,
    OUTSIDE_CAUSES,
    disk_full_error,
    disk_full_reason,
)
from harness.run_lock import RunDirectoryBusy, RunLock


def base_row(case: Case) -> dict[str, Any]:
    """The columns that identify a case."""
    return {"kind": case.kind, "case_id": case.case_id, "scenario": case.scenario,
            "scenario_hash": case.scenario_hash, "backend": case.backend,
            "particles": case.particles, "device": case.device, "dtype": case.dtype,
            "math": case.math, "repeat": case.repeat, "threads_requested": case.threads,
            "role": case.role, "reference": case.reference,
            "reference_note": case.reference_note}


def precheck(case: Case, scenario) -> tuple[dict[str, Any] | None, Any]:
    """``(row, plan)``: an ``unsupported`` row when the adapter can tell without running
    the code, else the backend's :class:`backends.base.Plan` of the case, made once here
    and handed to the case process (None when planning raised: the child will run and
    record the error). The plan is of the scenario the case runs
    (:func:`harness.case_kinds.case_scenario`: the named one with the case's options)."""
    from backends.base import Unsupported
    from backends.registry import load_backend_class
    from harness.case_kinds import case_scenario

    try:
        cls = load_backend_class(case.backend)
    except KeyError as error:
        return {"status": Status.UNSUPPORTED.value, "reason": str(error.args[0])}, None
    availability = cls.availability()
    if not availability.available:
        return {"status": Status.UNSUPPORTED.value,
                "reason": f"{case.backend} is not installed: {availability.hint}"}, None
    try:
        plan = cls().plan_case(case_scenario(case.kind, scenario, case.options),
                               case.device, case.dtype, case.math)
    except Exception:  # noqa: BLE001 - the child will run and record the error
        return None, None
    if isinstance(plan, Unsupported):
        return {"status": Status.UNSUPPORTED.value, "reason": plan.reason,
                "backend_version": availability.version}, None
    return None, plan


def harness_failure(error: BaseException) -> dict[str, Any]:
    """The row of a case the harness itself could not run (cause ``disk-full`` when its
    files for the case could not be written for a full disk)."""
    full = disk_full_error(error)
    if full is not None:
        return {"status": Status.FAILED.value, "cause": DISK_FULL,
                "reason": disk_full_reason(full)}
    return {"status": Status.FAILED.value, "cause": Cause.HARNESS.value,
            "reason": f"harness: {type(error).__name__}: {error}"}


def _kept(causes: dict[str, str], scenario_hash: str) -> bool:
    """Whether a case's record stands (``causes``: the last cause recorded per scenario
    hash): one of the same content (or of unknown content) that did not fail for a cause
    outside the case."""
    return any(causes[key] not in OUTSIDE_CAUSES for key in (scenario_hash, "")
               if key in causes)


def _distinct(cases: list[Case]) -> list[Case]:
    """Cases whose ids collide while their scenario files differ get the label
    ``name@<hash>`` (:func:`harness.cases.scenario_labels` does this when planning)."""
    hashes: dict[str, set[str]] = {}
    for case in cases:
        hashes.setdefault(case.case_id, set()).add(case.scenario_hash)
    return [case.replace(scenario=f"{case.scenario}@{case.scenario_hash[:8]}")
            if len(hashes[case.case_id]) > 1 else case for case in cases]


@contextlib.contextmanager
def _exit_on_termination():
    """SIGTERM and SIGHUP end the run like Ctrl-C (``KeyboardInterrupt``), so that the
    running child is killed and the lock released (main thread only)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Runner:
    """Runs a planned list of cases into a run directory, one at a time.

    Args:
        out: run directory (``results.jsonl``, ``metadata.json``, ``.lock``, a cache of
            reference particles ``.cache`` and per-run temporary files ``.work-*``).
        limits: per-case time and memory limits.
        resume: skip the cases already recorded in ``results.jsonl`` (with the same
            scenario content, when recorded).
        on_row: called with each row as it is stored; on_start: with each case as it
            starts; on_warning: with each warning (a repaired results file, reaped
            processes); fresh: refuse a directory that already holds results (checked
            under the lock, so two runs started together on one directory never both run).
    """

    def __init__(self, out: Path, limits: Limits, resume: bool = False,
                 on_row: Callable[[dict], None] | None = None,
                 on_start: Callable[[Case], None] | None = None,
                 on_warning: Callable[[str], None] | None = None, fresh: bool = False):
        self.out = Path(out).absolute()  # case processes run elsewhere (cwd)
        self.cache = self.out / ".cache"
        self.limits = limits
        self.resume = resume
        self.on_row = on_row
        self.on_start = on_start
        self.on_warning = on_warning
        #: ``--write-particles``: "openpmd" writes initial and final particles (harness.io)
        self.write_particles: str | None = None
        #: Where cases run (:mod:`harness.execution`); None: here, one after the other.
        self.executor: Executor | None = None
        #: What ran where, for the run's metadata (the command line's executor fills it).
        self.execution: dict[str, Any] = {}
        #: Where this process runs (stamped on the rows of the cases it runs itself).
        self.placement = placement("serial")
        self.fresh = fresh
        self.lock: RunLock | None = None
        self.workdir: Path | None = None
        #: Cases stored by the current (or last) :meth:`run`.
        self.stored_cases = 0
        self.writer: results.ResultsWriter | None = None
        self._by_id: dict[str, Case] = {}
        #: The plan of each case decided here (:func:`precheck`), by case id.
        self._plans: dict[str, Any] = {}

    def _warn(self, message: str) -> None:
        if self.on_warning:
            self.on_warning(message)
        else:
            print(f"warning: {message}", file=sys.stderr, flush=True)

    def pending(self, cases: Sequence[Case]) -> list[Case]:
        """The cases not yet recorded (all of them unless resuming): when resuming, a case
        whose last record (of its scenario content) failed for a cause outside the case
        (:data:`harness.rows.OUTSIDE_CAUSES`: a full disk, a signal from outside, a lost
        worker) is pending again."""
        if not self.resume:
            return list(cases)
        recorded: dict[str, dict[str, str]] = {}  # case id -> scenario hash -> last cause
        for row in results.read_rows(self.out):
            if "case_id" in row:
                recorded.setdefault(row["case_id"], {})[row.get("scenario_hash") or ""] = \
                    str(row.get("cause") or "")
        return [c for c in cases if not _kept(recorded.get(c.case_id, {}), c.scenario_hash)]

    def _final_path(self, case: Case) -> Path:
        return final_path(self.cache, case.case_id, case.scenario_hash)

    def spec(self, case: Case, scenario) -> CaseSpec:
        """What the child is told (it draws the initial particles itself)."""
        from harness.model.scenario import model_signature

        spec = case.model_copy(update={
            "reference_model": model_signature(scenario),
            "write_particles": self.write_particles, "run_directory": str(self.out),
            "scenario_blob": self._scenario_blob(case, scenario),
            "plan_blob": self._plan_blob(case)})
        update: dict[str, Any] = {}
        if case.role == "reference":
            update["final_path"] = str(self._final_path(case))
        if case.reference_case:
            reference = self._by_id.get(case.reference_case)
            reference_file = (self._final_path(reference) if reference is not None
                              else final_path(self.cache, case.reference_case,
                                              case.scenario_hash))
            update["reference_final_path"] = str(reference_file)
            if not reference_file.exists():
                update["reference_missing"] = (f"the reference case {case.reference_case} "
                                               "has no result (see its row)")
        return spec.model_copy(update=update)

    def _scenario_blob(self, case: Case, scenario) -> str | None:
        """The file of this run holding the validated scenario for the case processes
        (written once per scenario; None when it cannot be written: they read the YAML)."""
        from harness.model.load import scenario_to_bytes

        directory = self.workdir or self.cache
        path = directory / f"scenario-{case.scenario_hash or cache_name(case.scenario)}.pickle"
        if not path.exists():
            try:
                directory.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(f".{os.getpid()}.partial")
                partial.write_bytes(scenario_to_bytes(scenario))
                os.replace(partial, path)
            except (OSError, TypeError, AttributeError, pickle.PicklingError):
                return None
        return str(path)

    def _plan_blob(self, case: Case) -> str | None:
        """The file holding the case's plan (:func:`precheck`) for its case process, so that
        the process neither asks the backend again nor translates the lattice again; None
        when there is no plan or it cannot be written (the process plans itself)."""
        plan = self._plans.get(case.case_id)
        if plan is None:
            return None
        directory = self.workdir or self.cache
        key = hashlib.sha256(f"{case.case_id}|{case.scenario_hash}".encode()).hexdigest()[:20]
        path = directory / f"plan-{key}.pickle"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.partial")
            partial.write_bytes(pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL))
            os.replace(partial, path)
        except (OSError, TypeError, AttributeError, pickle.PicklingError):
            return None
        return str(path)

    def _child(self, spec: CaseSpec) -> list[dict[str, Any]]:
        lock = self.lock
        return run_in_child(spec, self.limits, self.workdir or self.cache,
                            on_spawn=(lambda pid: lock.add_child(pid, spec.case_id))
                            if lock else None,
                            on_exit=lock.remove_child if lock else None)

    def decide(self, case: Case, scenario) -> list[dict[str, Any]] | None:
        """The rows of a case decided here without running it (not installed, unsupported,
        refused by the memory pre-flight), else None."""
        unsupported, plan = precheck(case, scenario)
        if unsupported is not None:
            return [unsupported]
        if plan is not None:
            self._plans[case.case_id] = plan
        refused = preflight.refusal(case.backend, case.particles, scenario,
                                    self.limits.memory_bytes)
        if refused is not None:
            return [{"status": Status.OOM.value, "cause": Cause.PREFLIGHT.value,
                     "reason": refused}]
        return None

    def run_case(self, case: Case, scenario) -> list[dict[str, Any]]:
        """Run (or pre-decide) one case here; its rows, stored."""
        started = now()
        try:
            rows = self.decide(case, scenario)
            if rows is None:
                self.cache.mkdir(parents=True, exist_ok=True)
                rows = self._child(self.spec(case, scenario))
        except KeyboardInterrupt:
            raise
        except Exception as error:  # noqa: BLE001 - the harness records and goes on
            rows = [harness_failure(error)]
        return self.store(case, rows, started)

    def store(self, case: Case, rows: list[dict[str, Any]], started: str,
              where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Append a case's rows to the results (one write), stamped with the case's
        columns, its start and end, and where it ran (``host``, ``worker``, ``cores``)."""
        placement = where or self.placement
        stored = [base_row(case) | {"started": started, "finished": now()} | placement | row
                  for row in rows]
        if self.writer is None:
            self.writer = results.ResultsWriter(self.out)
        self.writer.append(stored)
        self.stored_cases += 1
        for row in stored:
            if self.on_row:
                self.on_row(row)
        return stored

    def regenerate_reference(self, reference: Case, scenario) -> None:
        """Re-track a reference case whose row is stored but whose final particles are gone
        (a resumed run): the particles are cached again, no second row is stored."""
        if self._final_path(reference).exists():
            return
        self.cache.mkdir(parents=True, exist_ok=True)
        spec = self.spec(reference, scenario).model_copy(update={"repeat": 0})
        self._child(spec)

    def _scenario(self, case: Case, scenarios) -> Any:
        """The scenario of a case: matched by file (two files may share a name), else name."""
        if isinstance(scenarios, Mapping):
            candidates = list(scenarios.values())
            by_name = scenarios.get(case.scenario)
        else:
            candidates = list(scenarios)
            by_name = None
        for scenario in candidates:
            if str(scenario.source_file or scenario.name) == case.scenario_path:
                return scenario
        if by_name is not None:
            return by_name
        return next(s for s in candidates if s.name == case.scenario)

    def run(self, cases: Sequence[Case], scenarios: Mapping[str, Any] | Sequence[Any]
            ) -> list[dict[str, Any]]:
        """Run every pending case in order; returns the rows stored by this call.

        Takes the run directory's lock first (:class:`harness.run_lock.RunDirectoryBusy`
        when another process holds it) and repairs a torn results file."""
        self.out.mkdir(parents=True, exist_ok=True)
        cases = _distinct([case if case.scenario_hash else case.with_hash(scenario_hash(
            self._scenario(case, scenarios))) for case in cases])
        self._by_id = {c.case_id: c for c in cases}
        stored: list[dict[str, Any]] = []
        self.stored_cases = 0
        with RunLock.acquire(self.out) as lock, _exit_on_termination():
            self.lock = lock
            if self.fresh and results.read_rows(self.out):
                raise RunDirectoryBusy(f"{self.out} already holds results; continue it with "
                                       f"--resume {self.out} or choose another --out")
            if lock.reaped:
                self._warn(f"killed {len(lock.reaped)} case process(es) left running by an "
                           f"earlier run of {self.out} (pids {lock.reaped})")
            for stale in self.out.glob(".work-*"):
                shutil.rmtree(stale, ignore_errors=True)
            self.workdir = Path(tempfile.mkdtemp(prefix=".work-", dir=self.out))
            try:
                self.writer = results.ResultsWriter(self.out)
                for warning in self.writer.warnings:
                    self._warn(warning)
                pending = self.pending(cases)
                pending_ids = {c.case_id for c in pending}
                for case in pending:
                    reference = self._by_id.get(case.reference_case or "")
                    if reference is not None and reference.case_id not in pending_ids:
                        self.regenerate_reference(reference, self._scenario(case, scenarios))
                if self.executor is None:
                    for case in pending:
                        if self.on_start:
                            self.on_start(case)
                        stored.extend(self.run_case(case, self._scenario(case, scenarios)))
                else:
                    stored.extend(self._dispatch(pending, pending_ids, scenarios))
                try:
                    results.write_tables(self.out)
                except OSError as error:
                    self._warn(f"could not write results.csv: {error.strerror or error}")
            finally:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None
                self.lock = None
        return stored

    def _dispatch(self, pending: list[Case], pending_ids: set[str],
                  scenarios) -> list[dict[str, Any]]:
        """Run the pending cases through :attr:`executor`: cases decided here are stored at
        once, the others become jobs (after their reference case when it is pending too),
        each stored as its rows come back, in any order."""
        stored: list[dict[str, Any]] = []
        jobs: list[Job] = []
        started: dict[str, str] = {}
        by_id = {case.case_id: case for case in pending}
        for case in pending:
            try:
                rows = self.decide(case, self._scenario(case, scenarios))
            except Exception as error:  # noqa: BLE001 - recorded, the run goes on
                rows = [harness_failure(error)]
            if rows is not None:
                stored.extend(self.store(case, rows, now()))
                continue
            after = case.reference_case if case.reference_case in pending_ids else None
            jobs.append(Job(case.case_id, None, after))

        def prepare(job: Job) -> tuple[CaseSpec, Limits, Path]:
            case = by_id[job.key]
            started[job.key] = now()
            if self.on_start:
                self.on_start(case)
            self.cache.mkdir(parents=True, exist_ok=True)
            return (self.spec(case, self._scenario(case, scenarios)), self.limits,
                    self.workdir or self.cache)

        def on_result(job: Job, rows: list[dict[str, Any]]) -> None:
            where = {k: rows[0].pop(k) for k in PLACEMENT_COLUMNS if rows and k in rows[0]}
            for row in rows[1:]:
                for key in PLACEMENT_COLUMNS:
                    row.pop(key, None)
            stored.extend(self.store(by_id[job.key], rows, started.get(job.key, now()),
                                     where or None))

        assert self.executor is not None
        self.executor.run(jobs, run_payload, on_result, prepare=prepare)
        return stored

    def clear_cache(self) -> None:
        """Remove the reference-particle cache (after a complete run)."""
        shutil.rmtree(self.cache, ignore_errors=True)
