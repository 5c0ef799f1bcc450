"""Standalone scripts (``trackbench script RUN_DIR CASE_ID``, :mod:`backends.scripts`): for
every backend, the script of a ``fodo_linear`` case (10^3 particles) run in a fresh process
prints the final moments of the harness's row to 1e-12 relative, and imports no trackbench
module (the in-house tracker's own ``backends.inhouse`` API aside).
"""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.registry import available_backends
from backends.scripts import GENERATORS
from backends.scripts.common import literal, printed

pytestmark = pytest.mark.xdist_group("processes")

ROOT = Path(__file__).resolve().parents[1]
TRACKBENCH = [sys.executable, "-m", "harness.cli"]
#: The backends with a script generator that are installed here.
BACKENDS = [b for b in GENERATORS if b in available_backends()]


@pytest.fixture(scope="module")
def fodo_run(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """One run of fodo_linear on every backend with a generator: 10^3 particles, 1 track."""
    out = tmp_path_factory.mktemp("fodo") / "run"
    done = subprocess.run([*TRACKBENCH, "run", "fodo_linear", "--backends", ",".join(BACKENDS),
                           "--particles", "1e3", "--repeat", "1", "--threads", "1", "--out",
                           str(out), "--no-fail"], capture_output=True, text=True, cwd=ROOT,
                          timeout=900)
    assert (out / "results.jsonl").exists(), done.stderr[-2000:]
    rows = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows[row["backend"]] = row
    return out, rows


def _run_script(path: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          cwd=path.parent, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    values = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                values[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return values


@pytest.mark.parametrize("backend", BACKENDS)
def test_script_prints_the_rows_moments(fodo_run, backend: str, tmp_path: Path) -> None:
    run, rows = fodo_run
    row = rows[backend]
    assert row["status"] == "ok", row.get("reason")
    target = tmp_path / "case.py"
    done = subprocess.run([*TRACKBENCH, "script", str(run), row["case_id"], "--out",
                           str(target)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert target.exists() and (tmp_path / "case.npy").exists()
    # only the code's own API: no harness module, and backends.* only for the in-house tracker
    imported = set()
    for node in ast.walk(ast.parse(target.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "harness" not in imported
    assert ("backends" in imported) == (backend == "inhouse")
    values = _run_script(target)
    names = printed(row_names(row))
    assert len(names) >= 8
    for name in names:
        expected = row[f"obs_{name}"]
        assert values[name] == pytest.approx(expected, rel=1e-12, abs=1e-300), name
    assert values["particles"] == 1000 and values["time_min_s"] > 0


def row_names(row: dict) -> list[str]:
    """The observables a row holds (``obs_<name>`` columns)."""
    return [k[4:] for k in row if k.startswith("obs_") and not k.startswith("obs_err_")]


def test_script_refuses_an_unknown_case_in_one_line(fodo_run) -> None:
    run, _ = fodo_run
    done = subprocess.run([*TRACKBENCH, "script", str(run), "track/nothing/x/1/cpu/float64"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode != 0
    message = (done.stdout + done.stderr).strip()
    assert "no case 'track/nothing/x/1/cpu/float64'" in message
    assert "Traceback" not in message


def test_compiled_cheetah_is_refused_by_name() -> None:
    from backends.scripts import script

    with pytest.raises(ValueError, match="cheetah-compiled"):
        script("cheetah-compiled", None, case_id="c", particles_file="p.npy",  # type: ignore[arg-type]
               repeat=1, observables=[])


def test_literals_evaluate_to_the_same_values() -> None:
    values = [0.1 + 0.2, -1e-300, math.pi, 3, "a'b", None, True, (1.5,), [1, 2.5],
              {"k": [0.3]}, np.array([1.0 / 3.0, 2.0]), np.float64(1.0 / 7.0), 1 + 2j]
    for value in values:
        back = eval(literal(value), {"np": np})  # noqa: S307 - our own literals
        if isinstance(value, np.ndarray):
            assert back.dtype == value.dtype and np.array_equal(back, value)
        else:
            assert back == value and type(back) is type(value.item() if isinstance(
                value, np.generic) else value)
    assert eval(literal(float("nan"))) != eval(literal(float("nan")))  # noqa: S307
    assert printed(["sigma_x", "beta_x", "emittance_t", "mean_pt", "dispersion_x"]) == [
        "sigma_x", "emittance_t", "mean_pt"]
