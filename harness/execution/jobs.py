"""What every executor shares: the job, the execution settings, and the columns that say
where a row ran (no executor of its own, so that the serial and the Dask executors import it
alike)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.model.vocabulary import Status

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
