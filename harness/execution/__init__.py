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

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from harness.execution.jobs import (
    PLACEMENT_COLUMNS,
    ExecutionConfig,
    Job,
    Rows,
    lost_row,
    placement,
)


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


__all__ = ["PLACEMENT_COLUMNS", "ExecutionConfig", "Executor", "Job", "Rows", "SerialExecutor",
           "lost_row", "make_executor", "placement"]
