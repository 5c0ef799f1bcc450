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

#: One worker runs the module: its tests share one local cluster and start worker and case
#: processes, which the other tests that start processes never run beside.
pytestmark = pytest.mark.xdist_group("processes")


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
    assert rows["lost"][0]["cause"] == "lost-worker"  # --resume runs it again
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
    from harness.execution.cluster import load_cluster_config
    from harness.model.errors import ScenarioError

    bad = tmp_path / "bad.yaml"
    bad.write_text("- just a list\n")
    with pytest.raises(ScenarioError) as error:
        load_cluster_config(bad)
    assert "cluster-config" in str(error.value) and "\n" not in str(error.value)


# --------------------------------------------------------------------------- the runner on Dask

TESTS = Path(__file__).resolve().parent
FAKE = "fake_backends:"


def _matrix():
    from harness.cases import Case
    from harness.model.load import load_scenario

    scenario = load_scenario("fodo_linear")
    path = scenario.source_file
    reference = Case("fodo_linear", path, FAKE + "IdentityBackend", 500, repeat=1,
                     role="reference", reference="fake-identity")
    names = ["PerturbedBackend", "SleepBackend", "RaisingBackend", "UnsupportingBackend",
             "IdentityBackend"]
    cases = [reference] + [
        Case("fodo_linear", path, FAKE + name, 500, repeat=1, reference="fake-identity",
             reference_case=reference.case_id, threads=1) for name in names]
    return scenario, cases


def _outcome(rows):
    return {row["case_id"]: (row["status"], row.get("verdict"), row.get("dev_max"))
            for row in rows}


def test_runner_on_two_workers_gives_the_serial_rows(tmp_path, monkeypatch):
    """Same cases, statuses, verdicts and deviations on a LocalCluster as serially; every
    case stored once, with the worker that ran it."""
    from harness.case_process import Limits
    from harness.results import read_rows
    from harness.runner import Runner
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    monkeypatch.syspath_prepend(str(TESTS))
    scenario, cases = _matrix()
    limits = Limits(timeout_s=120.0, memory_bytes=1 << 30)
    Runner(tmp_path / "serial", limits).run(cases, {"fodo_linear": scenario})
    runner = Runner(tmp_path / "dask", limits)
    runner.executor = make_executor(ExecutionConfig(workers=2))  # workers see the fakes
    try:
        runner.run(cases, {"fodo_linear": scenario})
    finally:
        runner.executor.close()
    serial, dask = read_rows(tmp_path / "serial"), read_rows(tmp_path / "dask")
    assert sorted(r["case_id"] for r in dask) == sorted(c.case_id for c in cases)
    assert _outcome(dask) == _outcome(serial)
    ran = [r for r in dask if r["status"] != "unsupported"]
    assert {r["worker"] for r in ran} <= {"0", "1"} and all(r["host"] for r in ran)
    assert {r["worker"] for r in serial} == {"serial"}


def _case_processes(marker: str) -> list:
    """Case processes (``harness.child``) whose command line names the run directory."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if "harness.child" in cmdline and marker in cmdline:
            found.append(process)
    return found


def test_ctrl_c_on_a_cluster_keeps_finished_cases_and_leaves_no_process(tmp_path):
    """Ctrl-C during a run on two workers: the finished cases stay, the command says how
    to resume, and the running case's process goes with the cluster."""
    import signal
    import subprocess
    import sys
    import time

    from harness.results import read_rows

    root = TESTS.parent
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(root)]))
    backends = ",".join(FAKE + n for n in ("IdentityBackend", "HangBackend"))
    parent = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "fodo_linear", "--particles", "300",
         "--repeat", "1", "--json", "--no-report", "--backends", backends, "--timeout", "300",
         "--threads", "1", "--workers", "2", "--out", str(out)],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (
            _case_processes(str(out)) and len(read_rows(out)) >= 2):
        time.sleep(0.2)
    hanging = _case_processes(str(out))
    kept = len(read_rows(out))
    assert hanging and kept >= 2, "the hanging case never started"
    parent.send_signal(signal.SIGINT)
    _, stderr = parent.communicate(timeout=120)
    assert parent.returncode == 130
    assert f"{kept} of 3 cases kept" in stderr and f"--resume {out}" in stderr
    assert len(read_rows(out)) == kept
    deadline = time.time() + 30
    while time.time() < deadline and any(p.is_running() and p.status() != "zombie"
                                         for p in hanging):
        time.sleep(0.2)
    assert not _case_processes(str(out))
