"""The runner records every kind of trouble with the right status, and loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.case_process import Limits
from harness.cases import Case
from harness.model.load import load_scenario
from harness.results import read_rows
from harness.runner import Runner

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FAKE = "fake_backends:"



def test_each_kind_of_trouble_gets_its_status(tmp_path, fake_path):
    scenario = load_scenario("fodo_linear")
    path = scenario.source_file
    reference = Case("fodo_linear", path, FAKE + "IdentityBackend", 1000, repeat=2,
                     role="reference", reference="fake-identity")
    names = ["PerturbedBackend", "SleepBackend", "CrashBackend", "HangBackend",
             "MemoryHogBackend", "RaisingBackend", "UnsupportingBackend"]
    cases = [reference] + [
        Case("fodo_linear", path, FAKE + name, 1000, repeat=2, reference="fake-identity",
             reference_case=reference.case_id) for name in names]
    hang = [c for c in cases if c.backend.endswith("HangBackend")]
    # a generous time limit for the others: start-up alone takes seconds on a loaded machine
    Runner(tmp_path, Limits(timeout_s=120.0, memory_bytes=1 << 30)).run(
        [c for c in cases if c not in hang], {"fodo_linear": scenario})
    Runner(tmp_path, Limits(timeout_s=4.0, memory_bytes=1 << 30)).run(
        hang, {"fodo_linear": scenario})
    rows = {row["backend"].split(":")[1]: row for row in read_rows(tmp_path)}
    assert set(rows) == {"IdentityBackend", *names}
    assert rows["IdentityBackend"]["status"] == "ok"
    assert rows["IdentityBackend"]["verdict"] == "reference"
    assert rows["PerturbedBackend"]["verdict"] == "differs"
    assert 1e-7 < rows["PerturbedBackend"]["dev_max"] < 1e-4
    assert rows["SleepBackend"]["status"] == "ok"
    assert rows["SleepBackend"]["verdict"] == "agrees"
    assert rows["SleepBackend"]["dev_max"] == 0.0
    assert rows["SleepBackend"]["time_min_s"] >= 0.01
    assert len(rows["SleepBackend"]["times_s"]) == 2
    # start-up, preparation and warm-up are recorded apart from the tracking time
    assert rows["SleepBackend"]["import_s"] > 0
    assert rows["SleepBackend"]["warmup_s"] >= 0.01
    assert rows["CrashBackend"]["status"] == "failed"
    assert "SIGABRT" in rows["CrashBackend"]["reason"]
    assert rows["HangBackend"]["status"] == "timeout"
    assert rows["MemoryHogBackend"]["status"] == "oom"
    assert rows["RaisingBackend"]["status"] == "failed"
    assert rows["RaisingBackend"]["reason"] == "RuntimeError: the element map diverged"
    assert rows["UnsupportingBackend"]["status"] == "unsupported"
    assert "runs no scenario" in rows["UnsupportingBackend"]["reason"]
    assert (tmp_path / "results.csv").exists()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "run", "fodo_linear", "--particles", "500",
            "--repeat", "1", "--json", "--no-report", *args]


def test_killed_parent_loses_nothing_and_resume_completes(tmp_path, fake_path):
    out = tmp_path / "run"
    backends = ",".join(FAKE + n for n in ("SleepBackend", "HangBackend", "IdentityBackend"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    parent = subprocess.Popen(_cli("--backends", backends, "--out", str(out),
                                   "--timeout", "120"),
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(read_rows(out)) < 2:
        time.sleep(0.2)
    before = read_rows(out)
    assert len(before) == 2, "the reference and the sleeping case finish before the hang"
    children = psutil.Process(parent.pid).children(recursive=True)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for child in children:
        child.kill()
    assert read_rows(out) == before, "every finished case survives the kill"

    resumed = subprocess.run(_cli("--backends", backends, "--resume", str(out),
                                  "--timeout", "4"),
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    # a case timed out: the run exits 1 (documented; --no-fail keeps 0)
    assert resumed.returncode == 1, resumed.stderr
    assert "1 case(s) failed, timed out or ran out of memory" in resumed.stderr
    rows = read_rows(out)
    ids = [row["case_id"] for row in rows]
    assert len(ids) == len(set(ids)) == 4
    assert rows[:2] == before
    statuses = {row["backend"]: row["status"] for row in rows}
    assert statuses[FAKE + "HangBackend"] == "timeout"
    assert statuses[FAKE + "IdentityBackend"] == "ok"
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["machine"]["logical_cores"] >= 1
    assert metadata["command"]


def test_plan_puts_each_reference_first_and_multiplies_thread_counts():
    """fodo_linear at two sizes, backends cheetah+inhouse, threads 1 and 2: per size one
    ImpactX reference (first thread count) before 2 backends x 2 thread counts."""
    from harness.cases import plan

    scenario = load_scenario("fodo_linear")
    cases = plan([scenario], ["cheetah", "inhouse"], [100, 200], ["cpu"], ["float64"], 1,
                 ["impactx", "cheetah", "inhouse"], threads=[1, 2])
    assert [c.case_id for c in cases[:5]] == [
        "track/fodo_linear/impactx/100/cpu/float64/t1",
        "track/fodo_linear/cheetah/100/cpu/float64/t1",
        "track/fodo_linear/cheetah/100/cpu/float64/t2",
        "track/fodo_linear/inhouse/100/cpu/float64/t1",
        "track/fodo_linear/inhouse/100/cpu/float64/t2"]
    assert len(cases) == 10
    assert {c.reference_case for c in cases[1:5]} == {cases[0].case_id}
    assert [c.role for c in cases].count("reference") == 2


def test_relative_run_directory_works_from_any_working_directory(tmp_path, fake_path,
                                                                 monkeypatch):
    """Case processes run in their own working directory: a relative --out must still
    reach the cached particles (it is made absolute)."""
    scenario = load_scenario("fodo_linear")
    monkeypatch.chdir(tmp_path)
    reference = Case("fodo_linear", scenario.source_file, FAKE + "IdentityBackend", 200,
                     repeat=1, role="reference", reference="fake-identity")
    case = Case("fodo_linear", scenario.source_file, FAKE + "SleepBackend", 200, repeat=1,
                reference="fake-identity", reference_case=reference.case_id)
    Runner(Path("runs/relative"), Limits(timeout_s=120.0, memory_bytes=1 << 30)).run(
        [reference, case], {"fodo_linear": scenario})
    rows = read_rows(tmp_path / "runs" / "relative")
    assert [row["status"] for row in rows] == ["ok", "ok"]
    assert rows[1]["verdict"] == "agrees"


def test_import_time_counts_interpreter_start_up_for_every_case_kind(tmp_path, monkeypatch):
    """A start-up made 1.5 s slower (a sitecustomize that sleeps) shows in ``import_s`` of
    track and gradient rows alike: the clock runs from the moment the parent started the
    process (the gradient case once read a second copy of the entry point's clock)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import time\ntime.sleep(1.5)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(site)]))
    monkeypatch.syspath_prepend(str(TESTS))
    scenario = load_scenario("fodo_linear")
    track = Case("fodo_linear", scenario.source_file, FAKE + "IdentityBackend", 200, repeat=1)
    gradient = Case("fodo_linear", scenario.source_file, FAKE + "IdentityBackend", 200,
                    repeat=1, kind="gradient",
                    options={"parameters": ["quad1.Kn1"], "objective": "sigma_x",
                             "fd_steps": [1e-5]})
    Runner(tmp_path / "run", Limits(timeout_s=120.0)).run([track, gradient],
                                                          {"fodo_linear": scenario})
    rows = read_rows(tmp_path / "run")
    assert {row["kind"] for row in rows} == {"track", "gradient"}
    for row in rows:
        assert row["status"] == "ok", row.get("reason")
        assert 1.5 <= row["import_s"] < row["wall_s"], (row["kind"], row["import_s"])


def test_case_spec_is_typed_and_refuses_unknown_fields():
    from pydantic import ValidationError

    from harness.case_spec import CaseSpec

    scenario = load_scenario("fodo_linear")
    case = Case("fodo_linear", scenario.source_file, "inhouse", 100)
    spec = CaseSpec(**case.as_dict())
    assert spec.case_id == case.case_id and spec.particles == 100
    with pytest.raises(ValidationError, match="initial_pth"):
        CaseSpec(**case.as_dict(), initial_pth="x.npy")


def test_cases_get_the_parents_validated_scenario_not_the_file(tmp_path, fake_path):
    """The case process takes the scenario the parent validated (no second parse): the
    file may be gone, or the parent may have changed the model, and the case still runs
    what the parent planned."""
    import shutil

    copy = tmp_path / "copy.yaml"
    shutil.copy(load_scenario("fodo_linear").source_file, copy)
    scenario = load_scenario(copy)
    wider = scenario.model_copy(update={"beam": scenario.beam.model_copy(update={
        "twiss": scenario.beam.twiss.model_copy(update={"emittance_x": 8e-9})})})
    copy.unlink()
    case = Case("fodo_linear", str(copy), FAKE + "IdentityBackend", 500, repeat=1)
    Runner(tmp_path / "run", Limits(timeout_s=120.0)).run([case], [wider])
    (row,) = read_rows(tmp_path / "run")
    assert row["status"] == "ok", row.get("reason")
    nominal = load_scenario("fodo_linear").beam.twiss.emittance_x
    assert row["obs_emittance_x"] > 3 * nominal  # the parent's emittance, not the file's
