"""Options of ``run``, ``grad``, ``tune`` and ``reproduce`` checked before any heavy import:
bounded by what the machine has, one line each, in a fraction of a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Modules a refusal must not have imported (each costs seconds).
HEAVY = ("torch", "pandas", "dask", "distributed", "backends.registry", "harness.runner",
         "harness.model.scenario")

#: (command line, what the one line must say)
REFUSALS = [
    (["run", "fodo_linear", "--workers", "1000"], "--workers: a whole number from 1 to"),
    (["run", "fodo_linear", "--memory-limit", "1e300"], "--memory-limit: at most"),
    (["run", "fodo_linear", "--memory-limit", "inf"], "--memory-limit"),
    (["run", "fodo_linear", "--resume", "DIR/missing"], "no such run directory"),
    (["run", "fodo_linear", "--backends", ""], "--backends: expected"),
    (["run", "fodo_linear", "--backends", ","], "--backends: expected"),
    (["run", "fodo_linear", "--timeout", "0"], "--timeout"),
    (["grad", "fodo_linear", "--workers", "1000"], "--workers"),
    (["grad", "fodo_linear", "--backends", " , "], "--backends"),
    (["tune", "--memory-limit", "1e300"], "--memory-limit"),
    (["tune", "--resume", "DIR/missing"], "no such run directory"),
    (["reproduce", "--backends", ","], "--backends"),
]

PROBE = """
import json, sys, time
from typer.testing import CliRunner
from harness.cli import app
out = []
for args in json.loads(sys.argv[1]):
    start = time.perf_counter()
    result = CliRunner().invoke(app, args)
    out.append({"code": result.exit_code, "stderr": result.stderr,
                "seconds": time.perf_counter() - start})
heavy = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
print(json.dumps({"results": out, "heavy": heavy}))
"""


def test_refusals_come_before_any_heavy_import(tmp_path: Path) -> None:
    """Every refusal: exit 2, one line naming the option, no file written, and neither
    torch, pandas, Dask nor the backends imported (so it takes well under a second; the
    refusals once came after 4-5.5 s of imports)."""
    out = tmp_path / "out"
    commands = [[a.replace("DIR", str(tmp_path)) for a in args] + ["--out", str(out)]
                if args[0] != "reproduce" else args for args, _ in REFUSALS]
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="300")
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(commands),
                           json.dumps(HEAVY)], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["heavy"] == []
    for (args, words), result in zip(REFUSALS, report["results"], strict=True):
        lines = [line for line in result["stderr"].splitlines() if line.strip()]
        assert result["code"] == 2, (args, result)
        assert len(lines) == 1 and words in lines[0], (args, lines)
        assert "Traceback" not in result["stderr"]
        assert result["seconds"] < 0.5, (args, result["seconds"])
    assert not out.exists()


def test_workers_are_bounded_by_the_cores_of_this_process(monkeypatch) -> None:
    import typer

    from harness.cli import common

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert common.available_cores() == 2
    common.check_run_options(workers=2)
    with pytest.raises(typer.Exit):
        common.check_run_options(workers=3)
    common.check_run_options(workers=64, scheduler="tcp://host:8786")  # runs elsewhere


def test_memory_limit_is_bounded_by_this_machines_memory(monkeypatch) -> None:
    import typer

    from harness.cli import common

    monkeypatch.setattr(common, "machine_memory_bytes", lambda: 8 * 2**30)
    common.check_run_options(memory_limit=8.0)
    with pytest.raises(typer.Exit):
        common.check_run_options(memory_limit=8.5)
    common.check_run_options(memory_limit=64.0, cluster="slurm")  # the cluster's machines
    with pytest.raises(typer.Exit):
        common.check_run_options(memory_limit=1e300, cluster="slurm")


def test_resume_of_an_existing_directory_passes(tmp_path: Path) -> None:
    from harness.cli import common

    common.check_run_options(resume=tmp_path)
