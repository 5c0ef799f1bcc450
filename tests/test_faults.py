"""Faults injected for real (issue: runs that lose nothing under any fault). Each test
asserts that no finished case is lost or duplicated and that every row states the true
cause."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from harness.case_process import Limits
from harness.cases import Case, plan
from harness.model.load import load_scenario
from harness.results import RESULTS_JSONL, RESULTS_QUARANTINE, ResultsWriter, read_rows
from harness.run_lock import LOCK_FILE, RunDirectoryBusy, RunLock, read_owner
from harness.runner import Runner

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FAKE = "fake_backends:"



@pytest.fixture(scope="module")
def fodo():
    return load_scenario("fodo_linear")


def _case(scenario, backend: str, n: int = 200, **kw) -> Case:
    return Case("fodo_linear", scenario.source_file, FAKE + backend, n, repeat=1, **kw)


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", *args]


def _run_cli(*args: str, out: Path, backends: str, timeout: str = "120") -> list[str]:
    return _cli("run", "fodo_linear", "--particles", "300", "--repeat", "1", "--json",
                "--no-report", "--backends", backends, "--timeout", timeout, *args,
                *(["--out", str(out)] if "--resume" not in args else []))


def _wait_for(condition, seconds: float = 120.0, what: str = "") -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _running_children(out: Path) -> list[dict]:
    owner = read_owner(out / LOCK_FILE) or {}
    return owner.get("children", [])


def _ids(rows: list[dict]) -> list[str]:
    return [row["case_id"] for row in rows]


# 1. a torn last line ------------------------------------------------------------------

def test_torn_last_line_is_quarantined_and_its_case_runs_again(tmp_path, fake_path, fodo):
    a, b = _case(fodo, "IdentityBackend", 200), _case(fodo, "IdentityBackend", 201)
    Runner(tmp_path, Limits(timeout_s=120.0)).run([a, b], {"fodo_linear": fodo})
    whole = read_rows(tmp_path)
    path = tmp_path / RESULTS_JSONL
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # power lost in the middle of b's row
    assert _ids(read_rows(tmp_path)) == [a.case_id]
    warnings: list[str] = []
    Runner(tmp_path, Limits(timeout_s=120.0), resume=True,
           on_warning=warnings.append).run([a, b], {"fodo_linear": fodo})
    rows = read_rows(tmp_path)
    assert _ids(rows) == [a.case_id, b.case_id]
    assert rows[0] == whole[0]
    assert len(path.read_text().splitlines()) == 2  # every line whole JSON
    assert any("last line was incomplete" in w for w in warnings), warnings
    quarantined = (tmp_path / RESULTS_QUARANTINE).read_bytes()
    assert quarantined.rstrip(b"\n") == data[len(data) - len(data.splitlines()[-1]) - 1:
                                              len(data) - 40].lstrip(b"\n")


def test_a_case_cut_short_is_quarantined_whole(tmp_path):
    """A gradient case writes several rows in one write; fewer than its ``case_rows``
    (a torn write across lines) sets all of them aside."""
    writer = ResultsWriter(tmp_path)
    writer.append([{"case_id": "a", "kind": "track", "status": "ok", "started": "t0"}])
    writer.append([{"case_id": "g", "kind": "gradient", "status": "ok", "started": "t1",
                    "method": m} for m in ("fd", "reverse", "forward")])
    lines = (tmp_path / RESULTS_JSONL).read_text().splitlines()
    (tmp_path / RESULTS_JSONL).write_text("\n".join(lines[:3]) + "\n")  # 2 of g's 3 rows
    again = ResultsWriter(tmp_path)
    assert any("cases cut short: g" in w for w in again.warnings), again.warnings
    assert _ids(read_rows(tmp_path)) == ["a"]
    assert len((tmp_path / RESULTS_QUARANTINE).read_text().splitlines()) == 2


def test_a_failed_write_leaves_no_torn_line(tmp_path, monkeypatch):
    """A full disk in the middle of a write: the file is cut back to the last whole case."""
    import errno

    from harness import results

    writer = ResultsWriter(tmp_path)
    writer.append([{"case_id": "a", "kind": "track"}])
    before = (tmp_path / RESULTS_JSONL).read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.os, "write", half_then_full)
    with pytest.raises(OSError, match="No space"):
        writer.append([{"case_id": "b", "kind": "track"}])
    assert (tmp_path / RESULTS_JSONL).read_bytes() == before


# 2. two writers on one run directory ----------------------------------------------------

def test_a_second_writer_is_refused_naming_the_owner(tmp_path):
    with RunLock.acquire(tmp_path), pytest.raises(RunDirectoryBusy) as refused:
        RunLock.acquire(tmp_path)
    message = str(refused.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    assert "\n" not in message
    RunLock.acquire(tmp_path).release()  # free again once released


def test_two_runs_on_one_out_never_both_run(tmp_path, fake_path):
    out = tmp_path / "run"
    backends = FAKE + "HangBackend"
    first = subprocess.Popen(_run_cli(out=out, backends=backends), cwd=ROOT, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _running_children(out), what="the first run's case")
        second = subprocess.run(_run_cli(out=out, backends=FAKE + "IdentityBackend"),
                                cwd=ROOT, env=_env(), capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 2
        assert f"in use by pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(60)
    ids = _ids(read_rows(out))
    assert len(ids) == len(set(ids))
    assert not any("IdentityBackend" in i for i in ids)


# 3. SIGKILL of a child from outside ----------------------------------------------------

def test_external_sigkill_of_a_child_is_not_called_oom(tmp_path, fake_path, fodo):
    runner = Runner(tmp_path, Limits(timeout_s=120.0, memory_bytes=1 << 30))
    thread = threading.Thread(target=runner.run,
                              args=([_case(fodo, "HangBackend")], {"fodo_linear": fodo}))
    thread.start()
    _wait_for(lambda: _running_children(tmp_path), what="the case process")
    os.kill(_running_children(tmp_path)[0]["pid"], signal.SIGKILL)
    thread.join(60)
    (row,) = read_rows(tmp_path)
    assert row["status"] == "failed" and row["cause"] == "signal"
    assert "SIGKILL sent from outside the harness" in row["reason"]


def test_a_kernel_oom_kill_is_oom(monkeypatch):
    """When the kernel log names the killed child, SIGKILL is the out-of-memory killer."""
    from harness import case_process

    monkeypatch.setattr(case_process, "_kernel_log_names_oom", lambda pid: True)
    assert case_process._kill_cause(12345, None)[:2] == ("oom", "kernel-oom")
    monkeypatch.setattr(case_process, "_kernel_log_names_oom", lambda pid: False)
    monkeypatch.setattr(case_process, "_cgroup_oom_kills", lambda: 3)
    assert case_process._kill_cause(12345, 2)[:2] == ("oom", "kernel-oom")
    assert case_process._kill_cause(12345, 3)[:2] == ("failed", "signal")


# 4. SIGKILL of the parent: the child dies too, a resumed run reaps leftovers ----------

def test_killed_parent_takes_its_child_along_and_resume_completes(tmp_path, fake_path):
    out = tmp_path / "run"
    backends = ",".join(FAKE + n for n in ("IdentityBackend", "HangBackend"))
    parent = subprocess.Popen(_run_cli(out=out, backends=backends), cwd=ROOT, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: any("HangBackend" in c.get("case_id", "")
                          for c in _running_children(out)), what="the hanging case")
    child = psutil.Process(_running_children(out)[0]["pid"])
    before = read_rows(out)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    child.wait(10)  # PR_SET_PDEATHSIG: the kernel kills the child with its parent
    assert read_rows(out) == before
    resumed = subprocess.run(_run_cli("--resume", str(out), "--no-fail", out=out,
                                      backends=backends, timeout="3"),
                             cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    rows = read_rows(out)
    assert rows[: len(before)] == before
    assert len(_ids(rows)) == len(set(_ids(rows))) == 3
    assert {r["backend"]: r["status"] for r in rows}[FAKE + "HangBackend"] == "timeout"


def test_resume_reaps_processes_a_dead_run_left(tmp_path, fake_path, fodo):
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                start_new_session=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(json.dumps({
        "pid": dead.pid, "host": socket.gethostname(), "since": "earlier",
        "children": [{"pid": leftover.pid,
                      "create_time": psutil.Process(leftover.pid).create_time()}]}))
    warnings: list[str] = []
    Runner(tmp_path, Limits(timeout_s=60.0), resume=True, on_warning=warnings.append).run(
        [_case(fodo, "IdentityBackend")], {"fodo_linear": fodo})
    leftover.wait(10)  # ended (it slept 600 s): killed by the resumed run
    assert any(str(leftover.pid) in w for w in warnings), warnings
    assert [r["status"] for r in read_rows(tmp_path)] == ["ok"]


# 5. limits that hold -------------------------------------------------------------------

@pytest.mark.parametrize("hard", [True, False])
def test_a_memory_spike_between_polls_is_oom(tmp_path, fake_path, fodo, monkeypatch, hard):
    """768 MiB for an instant under a 512 MiB limit: refused by RLIMIT_DATA (hard), or
    seen in the child's peak resident memory after it ended (polls alone can miss it)."""
    monkeypatch.setenv("FAKE_SPIKE_BYTES", str(768 * 2**20))
    Runner(tmp_path, Limits(timeout_s=120.0, memory_bytes=512 * 2**20, hard_memory=hard)).run(
        [_case(fodo, "SpikeBackend")], {"fodo_linear": fodo})
    (row,) = read_rows(tmp_path)
    assert row["status"] == "oom", row.get("reason")
    assert row["cause"] in (("out-of-memory",) if hard else ("memory-limit",))


@pytest.mark.xdist_group("processes")  # a wall-clock budget: never beside the busiest tests
def test_cases_that_cannot_fit_are_refused_before_any_allocation(tmp_path, fake_path, fodo):
    sc = load_scenario("fodo_space_charge")
    huge_grid = sc.model_copy(update={"space_charge": sc.space_charge.model_copy(
        update={"grid": (4096, 4096, 4096)})})
    rss = psutil.Process().memory_info().rss
    started = time.perf_counter()
    runner = Runner(tmp_path, Limits(timeout_s=120.0, memory_bytes=1 << 30))
    runner.run([_case(fodo, "IdentityBackend", 10**12)], {"fodo_linear": fodo})
    runner.run([Case("fodo_space_charge", sc.source_file, FAKE + "IdentityBackend", 1000,
                     repeat=1)], [huge_grid])
    assert time.perf_counter() - started < 30
    assert psutil.Process().memory_info().rss - rss < 200 * 2**20  # the parent drew nothing
    rows = read_rows(tmp_path)
    assert [(r["status"], r["cause"]) for r in rows] == [("oom", "preflight")] * 2
    assert "1e+12 particles" in rows[0]["reason"]
    assert "grid 4096x4096x4096" in rows[1]["reason"]
    assert all("wall_s" not in r for r in rows)  # no process was started


# 6. all failed, empty and partial runs -------------------------------------------------

def test_compare_and_report_survive_all_failed_empty_and_partial_runs(tmp_path, fake_path,
                                                                      fodo):
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.compare import rejudged, side_by_side, summary
    from harness.report import write_report

    failed = tmp_path / "failed"
    Runner(failed, Limits(timeout_s=120.0)).run(
        [_case(fodo, "RaisingBackend"), _case(fodo, "CrashBackend")], {"fodo_linear": fodo})
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / RESULTS_JSONL).write_text("")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / RESULTS_JSONL).write_text(json.dumps({"case_id": "x", "status": "ok"}) + "\n"
                                         + '{"kind": "track", "case_id": "y"}\n{"kin')
    for run in (failed, empty, partial):
        assert len(summary(run)) == (2 if run == failed else 0 if run == empty else 1)
        rejudged(run)
        side_by_side(run, failed)
        write_report([run], run / "report", formats=("md", "html"))
        result = CliRunner().invoke(app, ["compare", str(run)])
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(app, ["compare", str(run), str(failed)])
        assert result.exit_code == 0, result.output
    assert {r["cause"] for r in read_rows(failed)} == {"exception", "crash"}


def test_run_exits_non_zero_when_every_case_failed_unless_no_fail(tmp_path, fake_path):
    for flags, code in (((), 1), (("--no-fail",), 0)):
        out = tmp_path / f"run{code}"
        done = subprocess.run(_cli("run", "fodo_linear", "--particles", "200", "--repeat", "1",
                                   "--backends", FAKE + "RaisingBackend", "--out", str(out),
                                   "--no-report", *flags),
                              cwd=ROOT, env=_env(), capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == code, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        assert "[2/2 done, 0 running, 0 left] failed" in done.stdout  # one line per case


# 7. an unusable --out --------------------------------------------------------------------

@pytest.mark.xdist_group("processes")  # a wall-clock budget: never beside the busiest tests
def test_an_unusable_out_is_one_line_before_any_case(tmp_path, monkeypatch):
    from harness import results

    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out, words in ((a_file, "not a directory"), (a_file / "sub", "cannot create"),
                       (Path("/proc/trackbench-run"), "cannot create")):
        started = time.perf_counter()
        done = subprocess.run(_cli("run", "fodo_linear", "--particles", "200", "--out",
                                   str(out), "--backends", "inhouse"),
                              cwd=ROOT, env=_env(), capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2, done.stderr
        assert words in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert time.perf_counter() - started < 30
    monkeypatch.setattr("shutil.disk_usage", lambda path: type("U", (), {"free": 1024})())
    assert "file system is full" in results.unusable_directory(tmp_path / "full")
    if os.geteuid() != 0:  # root writes into read-only directories
        read_only = tmp_path / "ro"
        read_only.mkdir(mode=0o555)
        assert "cannot write" in results.unusable_directory(read_only)


# 8. two scenario files with the same name ---------------------------------------------

def test_two_files_with_one_name_never_share_rows_or_beams(tmp_path, fake_path, fodo):
    text = Path(fodo.source_file).read_text()
    wide = tmp_path / "wide" / "fodo_linear.yaml"
    wide.parent.mkdir()
    import yaml

    data = yaml.safe_load(text)
    data["beam"]["seed"] = int(data["beam"].get("seed", 1)) + 1
    wide.write_text(yaml.safe_dump(data, sort_keys=False))
    scenarios = [fodo, load_scenario(wide)]
    assert scenarios[0].name == scenarios[1].name
    cases = plan(scenarios, [FAKE + "IdentityBackend"], [300], ["cpu"], ["float64"], 1, [])
    assert len({c.case_id for c in cases}) == 2
    from harness.cases import scenario_map

    Runner(tmp_path / "run", Limits(timeout_s=120.0)).run(cases, scenario_map(scenarios))
    assert cases[1].scenario.startswith("fodo_linear@")
    rows = read_rows(tmp_path / "run")
    assert len({r["scenario"] for r in rows}) == 2
    assert len({r["scenario_hash"] for r in rows}) == 2
    assert rows[0]["obs_sigma_x"] != rows[1]["obs_sigma_x"]  # each file's own beam


# 9. Ctrl-C ------------------------------------------------------------------------------

def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, fake_path):
    out = tmp_path / "run"
    backends = ",".join(FAKE + n for n in ("IdentityBackend", "HangBackend"))
    parent = subprocess.Popen(_run_cli(out=out, backends=backends), cwd=ROOT, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any("HangBackend" in c.get("case_id", "")
                          for c in _running_children(out)), what="the hanging case")
    child = psutil.Process(_running_children(out)[0]["pid"])
    kept = len(read_rows(out))
    parent.send_signal(signal.SIGINT)
    _, stderr = parent.communicate(timeout=60)
    assert parent.returncode == 130
    assert f"interrupted: {kept} of 3 cases kept in {out}/results.jsonl" in stderr
    assert f"--resume {out}" in stderr and f"--out {out}" not in stderr
    child.wait(10)
    assert not _running_children(out)


def test_colliding_case_ids_of_different_files_are_told_apart():
    """Cases planned elsewhere (e.g. gradient cases) with one name and two files."""
    from harness.runner import _distinct

    a = Case("s", "a/s.yaml", "inhouse", 10, kind="gradient", scenario_hash="aaaaaaaa1111")
    b = Case("s", "b/s.yaml", "inhouse", 10, kind="gradient", scenario_hash="bbbbbbbb2222")
    same = Case("s", "c/s.yaml", "inhouse", 20, scenario_hash="aaaaaaaa1111")
    assert [c.scenario for c in _distinct([a, b, same])] == ["s@aaaaaaaa", "s@bbbbbbbb", "s"]


def test_a_large_parent_does_not_make_its_case_look_large(tmp_path, fake_path, fodo):
    """The case's peak memory is its own: Linux keeps ``ru_maxrss`` across ``execve``, so
    a parent that once held 1.5 GiB would otherwise hand its peak to every case (an ``oom``
    under a 1 GiB limit for a case that used 300 MB)."""
    ballast = np.ones(3 * 2**26)  # 1.5 GiB resident in this (the parent) process
    ballast[::512] = 2.0
    runner = Runner(tmp_path, Limits(timeout_s=120.0, memory_bytes=1 << 30))
    runner.run([_case(fodo, "IdentityBackend")], {"fodo_linear": fodo})
    del ballast
    (row,) = read_rows(tmp_path)
    assert row["status"] == "ok", row.get("reason")
    assert row["peak_rss_bytes"] < 1 << 30


# 9. a full disk, and cases that failed for a cause outside the case ----------------------

def test_a_full_disk_in_the_case_is_its_cause_and_resume_runs_it_again(tmp_path, fake_path,
                                                                       fodo, monkeypatch):
    """ENOSPC raised by the case's own write: ``failed`` with cause ``disk-full`` (once
    ``exception``); ``--resume`` runs it again, once there is room, and keeps the rest."""
    from harness.cases import scenario_hash

    monkeypatch.setenv("FAKE_DISK_FULL", "1")
    cases = [_case(fodo, name).with_hash(scenario_hash(fodo))
             for name in ("DiskFullBackend", "RaisingBackend")]
    Runner(tmp_path, Limits(timeout_s=120.0)).run(cases, {"fodo_linear": fodo})
    full, raised = read_rows(tmp_path)
    assert full["status"] == "failed" and full["cause"] == "disk-full"
    assert full["reason"] == "disk full: No space left on device (writing particles/final.h5)"
    assert raised["cause"] == "exception"
    monkeypatch.setenv("FAKE_DISK_FULL", "0")
    resumed = Runner(tmp_path, Limits(timeout_s=120.0), resume=True)
    assert [c.case_id for c in resumed.pending(cases)] == [cases[0].case_id]
    resumed.run(cases, {"fodo_linear": fodo})
    rows = read_rows(tmp_path)
    assert _ids(rows) == [cases[0].case_id, cases[1].case_id, cases[0].case_id]
    assert rows[-1]["status"] == "ok"
    assert Runner(tmp_path, Limits(), resume=True).pending(cases) == []


def test_a_full_disk_for_the_result_file_is_not_a_bare_exit(tmp_path, fake_path, fodo):
    """The case tracked, then its process could not write its result: once ``failed/exit``
    with a traceback's last line, now ``disk-full`` naming the file."""
    Runner(tmp_path, Limits(timeout_s=120.0)).run([_case(fodo, "DiskFullResultBackend")],
                                                  {"fodo_linear": fodo})
    (row,) = read_rows(tmp_path)
    assert row["status"] == "failed" and row["cause"] == "disk-full", row
    assert row["reason"].startswith("disk full: No space left on device (writing ")
    assert row["reason"].endswith(".out.json)")


def test_a_full_disk_in_the_parent_is_not_a_harness_failure(tmp_path, fake_path, fodo,
                                                            monkeypatch):
    """The harness cannot write the case's spec file: once ``failed/harness``."""
    import errno
    import tempfile

    def full(*args, **kwargs):
        raise OSError(errno.EDQUOT, "Disk quota exceeded", str(kwargs.get("dir")))

    monkeypatch.setattr(tempfile, "mkstemp", full)
    Runner(tmp_path, Limits(timeout_s=120.0)).run([_case(fodo, "IdentityBackend")],
                                                  {"fodo_linear": fodo})
    (row,) = read_rows(tmp_path)
    assert row["cause"] == "disk-full" and row["reason"].startswith("disk full: Disk quota")


def test_a_child_that_says_disk_full_on_its_way_out_is_disk_full(tmp_path):
    """An exit with ENOSPC's words on stderr (e.g. a library's own write) is a full disk."""
    from harness.rows import says_disk_full

    assert says_disk_full("OSError: [Errno 28] No space left on device: 'x'")
    assert says_disk_full("HDF5-DIAG: ... Disk quota exceeded")
    assert not says_disk_full("ValueError: bad value")


def test_resume_runs_a_case_killed_from_outside_again(tmp_path, fake_path, fodo,
                                                      monkeypatch):
    """SIGKILL sent to a case from outside: cause ``signal``; ``--resume`` runs it again
    (once it never did), and the run's last word on it is the new record."""
    monkeypatch.setenv("FAKE_HANG", "1")
    case = _case(fodo, "HangIfAskedBackend")
    runner = Runner(tmp_path, Limits(timeout_s=120.0, memory_bytes=1 << 30))
    thread = threading.Thread(target=runner.run, args=([case], {"fodo_linear": fodo}))
    thread.start()
    _wait_for(lambda: _running_children(tmp_path), what="the case process")
    os.kill(_running_children(tmp_path)[0]["pid"], signal.SIGKILL)
    thread.join(60)
    (killed,) = read_rows(tmp_path)
    assert killed["cause"] == "signal"
    monkeypatch.setenv("FAKE_HANG", "0")
    Runner(tmp_path, Limits(timeout_s=120.0), resume=True).run([case], {"fodo_linear": fodo})
    assert [row["status"] for row in read_rows(tmp_path)] == ["failed", "ok"]


def test_resume_keeps_cases_whose_failure_is_their_own(tmp_path, fodo):
    """Only causes outside the case are run again: a lost worker is, a timeout is not."""
    from harness.execution import lost_row
    from harness.rows import OUTSIDE_CAUSES

    cases = [_case(fodo, name) for name in ("A", "B", "C", "D", "E")]
    rows = [{"cause": lost_row("worker lost")["cause"]}, {"cause": "timeout"},
            {"cause": "exception"}, {"cause": "disk-full"}, {"cause": "signal"}]
    ResultsWriter(tmp_path).append([{"kind": "track", "case_id": c.case_id, "status": "failed"}
                                    | r for c, r in zip(cases, rows, strict=True)])
    pending = Runner(tmp_path, Limits(), resume=True).pending(cases)
    assert [c.backend for c in pending] == [FAKE + n for n in ("A", "D", "E")]
    assert {"disk-full", "signal", "lost-worker"} == OUTSIDE_CAUSES


def test_a_full_disk_when_storing_a_row_says_so_and_how_to_resume(tmp_path, fake_path,
                                                                  monkeypatch):
    """The results file cannot take the row: the run stops with one line naming the full
    disk and the ``--resume`` command; the case is not recorded, so resume runs it."""
    import errno

    from typer.testing import CliRunner

    from harness import results
    from harness.cli import app

    def full(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(results.ResultsWriter, "append", full)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "fodo_linear", "--particles", "200", "--repeat",
                                      "1", "--no-report", "--backends", FAKE + "IdentityBackend",
                                      "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "cannot write results, disk full: No space left on device (writing " in \
        result.stderr
    assert f"--resume {out}" in result.stderr
    assert read_rows(out) == []
