"""The execution layer: serial and Dask executors run the same jobs to the same rows, a
worker that dies gets its job re-run once and then recorded as lost, prerequisites run
first, local workers are pinned to disjoint cores, and jobqueue job scripts are generated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.execution import ExecutionConfig, Job, SerialExecutor, make_executor
from tests import execution_work

pytest.importorskip("distributed")


def _collect(executor, jobs, work):
    rows, order = {}, []

    def on_result(job, job_rows):
        order.append(job.key)
        rows[job.key] = job_rows

    executor.run(jobs, work, on_result)
    return rows, order


def test_serial_runs_in_order_and_stamps_placement():
    jobs = [Job(f"j{i}", {"value": i}) for i in range(4)]
    rows, order = _collect(SerialExecutor(), jobs, execution_work.echo)
    assert order == ["j0", "j1", "j2", "j3"]
    assert [rows[k][0]["value"] for k in order] == [0, 1, 2, 3]
    assert all(rows[k][0]["worker"] == "serial" and rows[k][0]["host"] for k in order)


@pytest.fixture(scope="module")
def local_cluster():
    executor = make_executor(ExecutionConfig(workers=2))
    yield executor
    executor.close()


def test_dask_gives_the_serial_rows_and_respects_prerequisites(local_cluster):
    jobs = [Job("ref", {"value": -1, "sleep": 0.5})]
    jobs += [Job(f"j{i}", {"value": i}, after="ref") for i in range(6)]
    rows, order = _collect(local_cluster, jobs, execution_work.echo)
    serial, _ = _collect(SerialExecutor(), jobs, execution_work.echo)
    assert order[0] == "ref"  # every other job waited for it
    assert sorted(order) == sorted(j.key for j in jobs)  # each exactly once
    for key in serial:
        assert rows[key][0]["value"] == serial[key][0]["value"]
        assert rows[key][0]["worker"] in {"0", "1"}
    assert len({rows[k][0]["pid"] for k in rows}) == 2  # both workers were used


def test_local_workers_are_pinned_to_disjoint_cores(local_cluster):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores")
    jobs = [Job(f"p{i}", {"value": i, "sleep": 0.3}) for i in range(4)]
    rows, _ = _collect(local_cluster, jobs, execution_work.echo)
    cores_by_worker = {row[0]["worker"]: row[0]["cores"] for row in rows.values()}
    assert len(set(cores_by_worker.values())) == len(cores_by_worker) == 2
    assert all("," not in cores for cores in cores_by_worker.values())


def test_a_lost_worker_reruns_the_job_once_then_records_it(local_cluster, tmp_path: Path):
    jobs = [Job("survives", {"value": 1, "marker": str(tmp_path / "m")}),
            Job("lost", {"value": 2})]
    rows, order = _collect(local_cluster, jobs[:1], execution_work.die_once)
    assert rows["survives"][0]["status"] == "ok"  # re-run on another worker
    rows, order = _collect(local_cluster, jobs[1:], execution_work.always_die)
    assert order == ["lost"]
    assert rows["lost"][0]["status"] == "failed"
    assert rows["lost"][0]["reason"].startswith("worker lost")
    # the cluster goes on: later jobs still run
    rows, _ = _collect(local_cluster, [Job("after", {"value": 3})], execution_work.echo)
    assert rows["after"][0]["value"] == 3


def test_jobqueue_job_script_from_a_config(tmp_path: Path):
    pytest.importorskip("dask_jobqueue")
    from harness.execution.cluster import jobqueue_cluster

    config = Path(__file__).resolve().parent.parent / "docs" / "cluster" / "slurm.yaml"
    cluster = jobqueue_cluster("slurm", config)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH" in script and "--cpus-per-task=" in script
    assert "distributed.cli.dask_worker" in script or "dask-worker" in script


def test_bad_cluster_config_is_one_line(tmp_path: Path):
    from harness.errors import ScenarioError
    from harness.execution.cluster import load_cluster_config

    bad = tmp_path / "bad.yaml"
    bad.write_text("- just a list\n")
    with pytest.raises(ScenarioError) as error:
        load_cluster_config(bad)
    assert "cluster-config" in str(error.value) and "\n" not in str(error.value)
