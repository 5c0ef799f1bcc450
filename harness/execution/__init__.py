"""Where cases run: in this process one after the other (the default), or on a Dask cluster.

The execution layer only decides *where* a job's work function is called; the work function
itself (run one case in a fresh child process with its time and memory limits, return its
rows) is the same everywhere, and the rows always come back to this process, which alone
writes the run directory. A job may name a prerequisite (a reference case whose final
particles it compares with); it is started only once that job has finished.

* :class:`SerialExecutor` — one job after the other, in order.
* :class:`DaskExecutor` — a ``distributed`` client on a :class:`~distributed.LocalCluster`
  of N single-job workers pinned to disjoint cores (``--workers N``), an existing scheduler
  (``--scheduler ADDRESS``), or a Slurm/PBS cluster from ``dask-jobqueue`` (``--cluster
  slurm|pbs --cluster-config FILE``). A worker that dies while running a job (killed, node
  lost) gets the job re-run once on another worker (``distributed.scheduler.allowed-failures
  = 1``); a second loss records the job as ``failed`` with the reason ``worker lost``.

Every row is stamped with where it ran: ``host``, ``worker`` and ``cores`` (the CPU ids the
worker's process may use). ``distributed`` is imported only when a cluster is asked for.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.vocabulary import Status

Rows = list[dict[str, Any]]
#: The columns :func:`placement` stamps on every row.
PLACEMENT_COLUMNS: tuple[str, ...] = ("host", "worker", "cores")


@dataclass(frozen=True)
class Job:
    """One unit of work: ``key`` (the case id), ``payload`` (what the work function is
    given; picklable) and ``after`` (the key of a job that must finish first, or None)."""

    key: str
    payload: Any
    after: str | None = None


@dataclass
class ExecutionConfig:
    """How to run: serial (all None), a local cluster of ``workers``, an existing
    ``scheduler`` address, or a jobqueue ``cluster`` kind with its ``cluster_config`` file.

    ``cores_per_worker`` [CPU cores] is each local worker's share (the cases' thread count).
    """

    workers: int | None = None
    scheduler: str | None = None
    cluster: str | None = None
    cluster_config: Path | None = None
    cores_per_worker: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def serial(self) -> bool:
        """Whether no cluster is asked for."""
        return self.workers is None and self.scheduler is None and self.cluster is None


def placement(worker: str) -> dict[str, Any]:
    """Where this process runs: host name, worker name and the CPU ids it may use."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = list(range(os.cpu_count() or 1))
    return {"host": socket.gethostname(), "worker": worker,
            "cores": ",".join(str(c) for c in cores)}


def lost_row(reason: str) -> dict[str, Any]:
    """The row of a job whose worker was lost (twice): cause ``lost-worker``, which
    ``--resume`` runs again."""
    from harness.rows import LOST_WORKER

    return {"status": Status.FAILED.value, "cause": LOST_WORKER, "reason": reason}


class Executor(Protocol):
    """Runs jobs somewhere and hands each job's rows back to this process."""

    description: str

    def run(self, jobs: Sequence[Job], work: Callable[[Any], Rows],
            on_result: Callable[[Job, Rows], None],
            on_start: Callable[[Job], None] | None = None,
            prepare: Callable[[Job], Any] | None = None) -> None:
        """Run every job (a job after its prerequisite); call ``on_result`` as each ends.

        ``prepare(job)``, when given, makes the job's payload here just before it is
        started (so it can depend on what its prerequisite left behind)."""

    def close(self) -> None:
        """Release workers and clusters."""


class SerialExecutor:
    """Runs the jobs here, one after the other, in the order given."""

    description = "serial (this process)"

    def run(self, jobs: Sequence[Job], work: Callable[[Any], Rows],
            on_result: Callable[[Job, Rows], None],
            on_start: Callable[[Job], None] | None = None,
            prepare: Callable[[Job], Any] | None = None) -> None:
        """Call ``work(payload)`` for each job in order and hand its rows to ``on_result``."""
        where = placement("serial")
        for job in jobs:
            if on_start:
                on_start(job)
            rows = work(prepare(job) if prepare else job.payload)
            on_result(job, [where | row for row in rows])

    def close(self) -> None:
        """Nothing to release."""


def make_executor(config: ExecutionConfig) -> Executor:
    """The executor a configuration asks for."""
    if config.serial:
        return SerialExecutor()
    from harness.execution.cluster import DaskExecutor

    return DaskExecutor(config)


__all__ = ["PLACEMENT_COLUMNS", "ExecutionConfig", "Executor", "Job", "SerialExecutor",
           "lost_row", "make_executor", "placement"]
