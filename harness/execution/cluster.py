"""The Dask side of the execution layer: a client on a local, existing or jobqueue cluster.

See :mod:`harness.execution` for what an executor does. Workers run each job's work function
(which starts the case's own child process with its limits); a worker that dies is replaced
by the nanny, and its job is re-run once (``allowed-failures``), then recorded as lost.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from harness.execution.jobs import ExecutionConfig, Job, Rows, lost_row, placement

#: Retries of a job whose worker died (then ``failed``: worker lost).
WORKER_LOSS_RETRIES = 1
#: Cluster kinds of dask-jobqueue offered by ``--cluster``.
JOBQUEUE_CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}


def _pinned_work(work: Callable[[Any], Rows], payload: Any) -> Rows:
    """The work function as a worker runs it: rows stamped with the worker's placement."""
    from distributed import get_worker

    where = placement(str(get_worker().name))
    return [where | row for row in work(payload)]


class CorePinning(WorkerPlugin):
    """A Dask worker plugin pinning each local worker's process (and so the case processes
    it starts) to its own cores, also when the nanny restarts a worker that died."""

    name = "trackbench-core-pinning"

    def __init__(self, cores_by_name: dict[str, list[int]]):
        self.cores_by_name = cores_by_name

    def setup(self, worker) -> None:
        """Called by Dask on every worker, now and when one (re)starts."""
        cores = self.cores_by_name.get(str(worker.name))
        if cores:
            os.sched_setaffinity(0, cores)

    def teardown(self, worker) -> None:
        """Nothing to undo."""


def core_plan(workers: int, cores_per_worker: int,
              available: Sequence[int] | None = None) -> tuple[list[list[int]], bool]:
    """Disjoint core sets for local workers, and whether they had to share cores.

    Worker ``i`` gets ``cores_per_worker`` consecutive ids of the cores this process may use;
    when there are too few, the sets wrap around (shared cores: timings are not fair).
    """
    ids = sorted(available if available is not None else os.sched_getaffinity(0))
    needed = workers * cores_per_worker
    shared = needed > len(ids)
    plan = [[ids[(i * cores_per_worker + k) % len(ids)] for k in range(cores_per_worker)]
            for i in range(workers)]
    return plan, shared


def load_cluster_config(path: Path) -> dict[str, Any]:
    """The keyword arguments of a jobqueue cluster from a YAML file (one mapping)."""
    import yaml

    from harness.model.errors import ScenarioError

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ScenarioError(path, "cluster-config", "a readable YAML mapping of "
                            "dask-jobqueue cluster options", str(error).splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ScenarioError(path, "cluster-config", "a mapping of dask-jobqueue cluster "
                            "options (cores, memory, queue, walltime, ...)", type(data).__name__)
    return data


def jobqueue_cluster(kind: str, config_file: Path):
    """A dask-jobqueue cluster (not yet scaled) of ``kind`` from ``config_file``."""
    import dask_jobqueue

    if kind not in JOBQUEUE_CLUSTERS:
        raise ValueError(f"--cluster must be one of {sorted(JOBQUEUE_CLUSTERS)}, not {kind!r}")
    options = load_cluster_config(config_file)
    scale = options.pop("jobs", 1)
    cluster = getattr(dask_jobqueue, JOBQUEUE_CLUSTERS[kind])(**options)
    cluster._trackbench_jobs = int(scale)
    return cluster


def local_cluster(workers: int, cores_per_worker: int = 1,
                  notes: list[str] | None = None):
    """``(cluster, client, shared)``: a :class:`~distributed.LocalCluster` of ``workers``
    single-threaded worker processes, each pinned to ``cores_per_worker`` cores of its own
    (:func:`core_plan`; ``shared``: there were too few cores, a note and a warning say so)."""
    from distributed import Client, LocalCluster

    plan, shared = core_plan(workers, cores_per_worker)
    if shared:
        message = (f"{workers} workers x {cores_per_worker} cores need more cores than the "
                   f"{len(os.sched_getaffinity(0))} this process may use: workers share "
                   "cores, timings are not fair")
        if notes is not None:
            notes.append(message)
        warnings.warn(message, stacklevel=3)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", memory_limit=0, silence_logs=40)
    client = Client(cluster)
    names = sorted(str(w["name"]) for w in client.scheduler_info()["workers"].values())
    client.register_plugin(CorePinning(dict(zip(names, plan, strict=True))))
    return cluster, client, shared


def close_client(client, cluster) -> None:
    """Close a Dask client, then the cluster it was started on (None: not ours)."""
    try:
        client.close()
    finally:
        if cluster is not None:
            cluster.close()


class EvaluationPool:
    """Workers for the evaluations of one optimisation (a tuning case's parallel
    evaluations): a local cluster of ``workers`` pinned single-core processes, or the
    workers of an existing ``scheduler``. :attr:`executor` is a
    :class:`concurrent.futures.Executor` (Dask's ``ClientExecutor``), what Xopt's
    ``Evaluator`` takes; :attr:`shared_cores` says whether the local workers had to share
    cores. Use as a context manager (closes the client and the cluster it started)."""

    def __init__(self, workers: int, scheduler: str | None = None):
        import dask
        from distributed import Client

        dask.config.set({"distributed.worker.daemon": False})
        self.workers = int(workers)
        self.notes: list[str] = []
        self.cluster = None
        self.shared_cores = False
        if scheduler:
            self.client = Client(scheduler)
        else:
            self.cluster, self.client, self.shared_cores = local_cluster(
                self.workers, 1, self.notes)
        self.executor = self.client.get_executor(pure=False)

    def on_every_worker(self, function: Callable[..., Any], *args: Any) -> None:
        """Call ``function(*args)`` once in every worker process (imports, warm-up)."""
        self.client.run(function, *args)

    def close(self) -> None:
        """Close the client and a cluster this pool started."""
        close_client(self.client, self.cluster)

    def __enter__(self) -> EvaluationPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaskExecutor:
    """Runs the jobs on a Dask cluster; the results come back here as they finish."""

    def __init__(self, config: ExecutionConfig):
        import dask
        from distributed import Client

        dask.config.set({"distributed.scheduler.allowed-failures": WORKER_LOSS_RETRIES,
                         "distributed.worker.daemon": False})
        self.cluster = None
        self.shared_cores = False
        if config.scheduler:
            self.client = Client(config.scheduler)
            self.description = f"dask scheduler {config.scheduler}"
        elif config.cluster:
            self.cluster = jobqueue_cluster(config.cluster, Path(config.cluster_config or ""))
            self.cluster.scale(jobs=self.cluster._trackbench_jobs)
            self.client = Client(self.cluster)
            self.description = f"dask-jobqueue {config.cluster}"
        else:
            workers = int(config.workers or 1)
            self.cluster, self.client, self.shared_cores = local_cluster(
                workers, config.cores_per_worker, config.notes)
            self.description = f"dask LocalCluster of {workers} workers"
        self.dashboard = self.client.dashboard_link

    def run(self, jobs: Sequence[Job], work: Callable[[Any], Rows],
            on_result: Callable[[Job, Rows], None],
            on_start: Callable[[Job], None] | None = None,
            prepare: Callable[[Job], Any] | None = None) -> None:
        """Submit every job whose prerequisite is done; store each result as it arrives."""
        from distributed import as_completed

        done: set[str] = set()
        known = {job.key for job in jobs}
        waiting: dict[str, list[Job]] = {}
        futures = {}

        def submit(job: Job) -> None:
            if on_start:
                on_start(job)
            payload = prepare(job) if prepare else job.payload
            future = self.client.submit(_pinned_work, work, payload, key=_dask_key(job),
                                        pure=False)
            futures[future.key] = job
            stream.add(future)

        stream = as_completed()
        for job in jobs:
            if job.after and job.after in known and job.after not in done:
                waiting.setdefault(job.after, []).append(job)
            else:
                submit(job)
        try:
            for future in stream:
                job = futures.pop(future.key)
                try:
                    rows = future.result()
                except Exception as error:  # noqa: BLE001 - recorded, the run goes on
                    rows = [lost_row(_loss_reason(error))]
                on_result(job, rows)
                done.add(job.key)
                for dependent in waiting.pop(job.key, []):
                    submit(dependent)
        except BaseException:
            for future in list(stream.futures):
                future.cancel()
            raise

    def close(self) -> None:
        """Shut the client and a cluster this executor started (workers and their cases)."""
        close_client(self.client, self.cluster)


def _dask_key(job: Job) -> str:
    return "trackbench-" + job.key.replace("/", "-")


def _loss_reason(error: BaseException) -> str:
    from distributed import KilledWorker

    if isinstance(error, KilledWorker):
        return (f"worker lost: the worker running the case died {WORKER_LOSS_RETRIES + 1} "
                "times (killed, or its node was lost)")
    return f"harness: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


