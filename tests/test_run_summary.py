"""A run that reads at a glance: the end-of-run summary (the report's first table on the
terminal), the progress line with done/running/left and an estimate, ``compare --rejudge``
without phantom changes, and names that never become raw terminal text or paths outside the
run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from harness.cli import app
from harness.display import CaseCount, progress_line, running_line
from harness.names import MAX_FILE_NAME, file_name, path_inside, printable

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _row(backend: str, status: str = "ok", **extra) -> dict:
    base = {"kind": "track", "case_id": f"track/fodo/{backend}/1000/cpu/float64",
            "scenario": "fodo", "backend": backend, "particles": 1000, "device": "cpu",
            "dtype": "float64", "threads_requested": 1, "status": status,
            "reference": "impactx", "case_rows": 1}
    return base | extra


def _write(directory: Path, rows: list[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return directory


def _render(renderable) -> str:
    console = Console(width=200, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


# -- compare --rejudge ---------------------------------------------------------------------

def test_rejudge_does_not_call_a_missing_verdict_a_change(tmp_path: Path) -> None:
    """Failed rows have no verdict before or after: once every one printed ``nan -> nan``."""
    run = _write(tmp_path / "run", [
        _row("a", "failed", reason="boom"), _row("b", "unsupported", reason="no"),
        _row("impactx", verdict="reference", time_median_s=1.0),
        _row("c", verdict="agrees", model="linear", reference_model="linear", dev_max=1e-12,
             dev_rms=1e-13, compared_particles=1000, time_median_s=0.5)])
    result = CliRunner().invoke(app, ["compare", "--rejudge", str(run)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "nan" not in result.stdout
    assert "0 verdict(s) changed" in result.stdout


def test_changed_verdicts_still_finds_a_real_change() -> None:
    import numpy as np
    import pandas as pd

    from harness.compare import changed_verdicts

    frame = pd.DataFrame({"verdict": [np.nan, None, "differs", "agrees"],
                          "stored_verdict": [np.nan, np.nan, "agrees", "agrees"]})
    assert changed_verdicts(frame).index.tolist() == [2]


# -- the end-of-run summary ----------------------------------------------------------------

def test_end_of_run_is_the_reports_table_with_settings_counts_and_paths(tmp_path) -> None:
    from harness.report.terminal import end_of_run

    long_reason = "does not translate element kind 'Sextupole' " * 5
    run = _write(tmp_path / "run", [
        _row("inhouse", verdict="agrees", time_median_s=0.25),
        _row("impactx", verdict="reference", time_median_s=1.0),
        _row("pyat", "unsupported", reason=long_reason),
        _row("xsuite", "failed", reason="child process crashed"),
        _row("impactx", verdict="reference", time_median_s=2.0, scenario="chicane",
             case_id="track/chicane/impactx/1000/cpu/float64")])
    (run / "results.csv").write_text("x\n")
    text = _render(end_of_run(run, "particles 1e3 · repeat 1 · serial"))
    lines = text.splitlines()
    title = next(line for line in lines if "particles 1e3" in line)
    assert "cpu, float64, 1 thread" in title and "repeat 1 · serial" in title
    header = next(line for line in lines if "scenario" in line)
    assert header.index("impactx") < header.index("inhouse") < header.index("pyat")
    chicane = next(i for i, line in enumerate(lines) if " chicane " in line)
    fodo = next(i for i, line in enumerate(lines) if " fodo " in line)
    assert chicane < fodo  # sorted by scenario
    assert "250 ms · 4x ✓" in lines[fodo]  # time · speed-up over impactx · mark
    assert "unsupported" in lines[fodo] and "failed" in lines[fodo]
    assert "Sextupole" not in text  # long reasons stay in results.csv and the report
    assert "cases: 3 ok · 1 unsupported · 1 failed" in text
    assert f"{run}/results.csv" in text
    assert len(lines) < 20


def test_the_reference_backend_is_the_runs_own_without_impactx(tmp_path) -> None:
    from harness.report.terminal import run_reference_backend

    run = _write(tmp_path / "run", [_row("inhouse", reference="inhouse"),
                                    _row("cheetah", reference="inhouse")])
    assert run_reference_backend(run) == "inhouse"


def test_a_run_ends_with_the_summary_not_a_line_per_case(tmp_path) -> None:
    """``trackbench run`` (a log, not a terminal) with the test's fake backends: the
    progress lines say done/running/left and an estimate, the run ends with the summary."""
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]),
               COLUMNS="200")
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "fodo_linear", "--particles", "200",
         "--repeat", "1", "--no-report", "--threads", "1", "--out", str(out), "--backends",
         "fake_backends:IdentityBackend,fake_backends:PerturbedBackend,"
         "fake_backends:RaisingBackend"], capture_output=True, text=True, env=env,
        cwd=ROOT, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # one case failed
    lines = done.stdout.splitlines()
    total = 4 if "track/fodo_linear/impactx/" in done.stdout else 3  # + the reference
    assert any(line.startswith(f"[0/{total} done, 1 running, {total - 1} left, ETA ?] "
                               "running ") for line in lines), lines
    assert any(line.startswith(f"[{total}/{total} done, 0 running, 0 left] ")
               for line in lines), lines
    assert any(line.startswith(f"[1/{total} done, 0 running, {total - 1} left, ETA ")
               for line in lines), lines
    assert "particles 200 · repeat 1 · serial" in done.stdout
    assert f"cases: {total - 1} ok · 1 failed" in done.stdout
    assert f"{out}/results.csv" in done.stdout
    assert "│ detail" not in done.stdout  # the old one-line-per-case table is gone


# -- the progress line ---------------------------------------------------------------------

def test_cases_queued_on_a_cluster_beyond_its_workers_are_left_not_running() -> None:
    count = CaseCount(10, started_at=0.0, slots=2)
    for _ in range(8):   # a cluster is handed every case whose reference is done
        count.start()
    assert count.prefix(now=0.0) == "[0/10 done, 2 running, 8 left, ETA ?]"
    count.finish()
    assert count.prefix(now=10.0) == "[1/10 done, 2 running, 7 left, ETA 1 min 30 s]"


def test_progress_counts_done_running_left_and_estimates_the_rest() -> None:
    count = CaseCount(4, started_at=100.0)
    count.start()
    assert count.prefix(now=100.0) == "[0/4 done, 1 running, 3 left, ETA ?]"
    count.finish()
    count.start()
    assert count.eta_s(now=110.0) == pytest.approx(30.0)  # 10 s per case, 3 to go
    assert count.prefix(now=110.0) == "[1/4 done, 1 running, 2 left, ETA 30 s]"
    for _ in range(3):
        count.finish()
    assert count.prefix() == "[4/4 done, 0 running, 0 left]"


def test_escape_sequences_in_names_never_reach_the_terminal_raw() -> None:
    evil = "x\x1b[2J\x1b]0;pwned\x07\r\nname\u202e"
    count = CaseCount(1)
    line = progress_line(count, {"status": "failed", "case_id": f"track/{evil}/b",
                                 "reason": f"bad {evil}"})
    line += running_line(count, evil)
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in line)
    assert "\\x1b[2J" in line and "\\u202e" in line
    assert printable("fodo_linear ok") == "fodo_linear ok"


# -- names as file names -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../../../elsewhere/x", "a/b/c", "..", ".", "",
                                  "x\x00y", "/etc/passwd", "a\\b", "x" * 10_000,
                                  "\x1b[31mred", "ü ñ"])
def test_names_become_one_safe_file_name_inside_the_directory(name, tmp_path) -> None:
    safe = file_name(name)
    assert safe and "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert not safe.startswith(".") and len(safe) <= MAX_FILE_NAME
    assert safe.isprintable() and safe.isascii()
    path = path_inside(tmp_path, name)
    assert path.parent == tmp_path


def test_distinct_names_stay_distinct() -> None:
    names = ["a/b", "a_b", "a%2Fb", "a b", "x" * 10_000, "x" * 10_001, "fodo_linear"]
    assert len({file_name(n) for n in names}) == len(names)
    assert file_name("fodo_linear") == "fodo_linear"


def test_particle_files_of_a_hostile_name_stay_under_particles(tmp_path) -> None:
    from harness.io.particles_out import final_file, initial_file, particles_dir

    home = particles_dir(tmp_path)
    for path in (initial_file(tmp_path, "../../../../elsewhere/x", 100),
                 final_file(tmp_path, "track/../../../../elsewhere/x/inhouse/100/cpu/float64"),
                 initial_file(tmp_path, "a/b/c", 10)):
        assert path.parent == home, path
    assert initial_file(tmp_path, "fodo_linear", 100).name == "fodo_linear__N100__initial.h5"


def test_path_inside_refuses_a_way_out(tmp_path, monkeypatch) -> None:
    """The second line of defence: were a name ever passed unmapped, the path is refused."""
    import harness.names

    monkeypatch.setattr(harness.names, "file_name", lambda name: name)
    with pytest.raises(ValueError, match="is not inside"):
        harness.names.path_inside(tmp_path, "../../elsewhere")


def test_plot_and_cache_names_are_safe() -> None:
    from harness.cases import cache_name
    from harness.report.plots import slug

    assert "/" not in cache_name("track/../../x/inhouse/1/cpu/float64")
    assert len(slug("y" * 10_000)) <= MAX_FILE_NAME
