"""The asv suite end to end on its one tiny case (``TRACKBENCH_ASV_QUICK=1``: fodo_linear,
inhouse, 1000 particles, cpu): ``asv run --python=same --quick`` into a temporary results
folder, the recorded values against the harness's own numbers, ``asv publish``, the
regression gate, and the dashboard in headless Chromium (skipped without Chromium)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

from harness import asv_tools, dashboard

#: One worker runs the module: its tests share one asv run.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("asv")]

MACHINE = "trackbench-test"
BENCHMARKS = ("accuracy.Agreement.track_agreement",
              "accuracy.GradientAccuracy.track_gradient_error",
              "accuracy.GradientCost.time_gradient", "tracking.Tracking.peakmem_track",
              "tracking.Tracking.time_track", "tracking.MemoryFloor.time_one_pass")
TINY_PARAMS = ("'fodo_linear'", "'inhouse'", "1000", "'cpu'")
#: Benchmarks parameterised by the particle count alone.
PARTICLES_ONLY = ("tracking.MemoryFloor.time_one_pass",)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One quick asv run and one publish into a temporary folder (HOME there too, so the
    machine description does not touch the user's ~/.asv-machine.json)."""
    root = tmp_path_factory.mktemp("asv")
    config = asv_tools.isolated_config(root)
    env = dict(os.environ, HOME=str(root / "home"))
    (root / "home").mkdir()
    status = asv_tools.run_current(config, machine=MACHINE, quick=True, tiny=True, env=env)
    published = asv_tools.publish(config)
    return root, config, status, published


def result_file(root: Path) -> Path:
    files = [p for p in (root / "asv" / MACHINE).glob("*.json") if p.name != "machine.json"]
    assert len(files) == 1, files
    return files[0]


def recorded(root: Path) -> dict[str, float]:
    """Benchmark name -> value of the tiny case."""
    data = json.loads(result_file(root).read_text())
    out = {}
    for name, row in data["results"].items():
        values, params = row[0], row[1]
        expected = ("1000",) if name in PARTICLES_ONLY else TINY_PARAMS
        assert tuple(p[0] for p in params) == expected
        out[name] = values[0]
    return out


def test_quick_run_records_every_benchmark(tiny_run):
    root, _, status, _ = tiny_run
    assert status == 0
    data = json.loads(result_file(root).read_text())
    assert data["commit_hash"] == asv_tools.head_commit()
    values = recorded(root)
    assert set(BENCHMARKS) <= set(values)
    assert 0 < values["tracking.Tracking.time_track"] < 60
    assert 0 < values["tracking.MemoryFloor.time_one_pass"] < 1
    assert 0 < values["accuracy.GradientCost.time_gradient"] < 60
    assert values["tracking.Tracking.peakmem_track"] > 50e6  # torch alone is more
    units = json.loads((root / "asv" / "benchmarks.json").read_text())
    assert units["accuracy.Agreement.track_agreement"]["unit"] == "sigma"
    assert units["accuracy.GradientAccuracy.track_gradient_error"]["unit"] == "relative"


def test_track_values_equal_the_harness_numbers(tiny_run):
    """track_agreement is the harness's dev_max of the same case; track_gradient_error is
    the max over parameters of the harness's reverse-mode rel_error vs its reference."""
    pytest.importorskip("impactx")
    from backends.registry import get_backend
    from harness.agreement import particle_deviation
    from harness.gradient_case import forward_gradient, reverse_gradient
    from harness.gradients import rel_error
    from harness.model.load import load_scenario
    from harness.model.particles import generate

    values = recorded(tiny_run[0])
    scenario = load_scenario("fodo_linear")
    initial = generate(scenario.beam, 1000, base_dir=Path(scenario.source_file).parent)
    with get_backend("impactx").prepare(scenario) as prepared:
        reference = prepared.track(initial)
    inhouse = get_backend("inhouse")
    with inhouse.prepare(scenario) as prepared:
        final = prepared.track(initial)
    dev_max = particle_deviation(final, reference)["dev_max"]
    assert values["accuracy.Agreement.track_agreement"] == pytest.approx(dev_max, rel=1e-9)
    assert dev_max < 1e-8  # the harness's fp64 tolerance for the same maps

    gradients = scenario.gradients
    f, theta0 = inhouse.objective(scenario, gradients.parameters, gradients.objective,
                                  initial, "cpu", "float64")
    reverse = reverse_gradient(f, theta0).tolist()
    forward = forward_gradient(f, theta0)[0].tolist()
    error = max(rel_error(r, g) for r, g in zip(reverse, forward, strict=True))
    assert values["accuracy.GradientAccuracy.track_gradient_error"] == pytest.approx(
        error, rel=1e-6, abs=1e-15)
    assert error < 1e-12  # reverse = forward mode to round-off


def test_publish_writes_the_dashboard(tiny_run):
    root, _, _, published = tiny_run
    assert published == 0
    html = root / "html"
    assert (html / "index.html").exists()
    index = json.loads((html / "index.json").read_text())
    assert set(BENCHMARKS) <= set(index["benchmarks"])
    assert list((html / "graphs").rglob("tracking.Tracking.time_track.json"))


def test_regression_gate_flags_a_slower_head(tiny_run, tmp_path):
    """A fabricated earlier commit 3x faster than HEAD: time_track of HEAD is a regression
    at factor 1.5, the accuracy values are not gated."""
    root, config, _, _ = tiny_run
    copy = tmp_path / "asv"
    shutil.copytree(root / "asv", copy)
    gate_config = tmp_path / "asv.conf.json"
    data = json.loads(Path(config).read_text()) | {"results_dir": str(copy)}
    gate_config.write_text(json.dumps(data))
    head_file = result_file(tmp_path)
    result = json.loads(head_file.read_text())
    base = "0" * 39 + "1"
    result["commit_hash"] = base
    result["date"] -= 86_400_000
    for name, row in result["results"].items():
        if name.rsplit(".", 1)[-1].startswith("time_"):
            row[0] = [value / 3 for value in row[0]]
    (head_file.parent / f"{base[:8]}-{head_file.name.split('-', 1)[1]}").write_text(
        json.dumps(result))

    head = asv_tools.head_commit()
    assert asv_tools.previous_commit(copy, MACHINE, head) == base
    changes = asv_tools.regressions(base, head, 1.5, gate_config, MACHINE)
    names = sorted(change.name.split("(")[0] for change in changes)
    assert names == ["accuracy.GradientCost.time_gradient",
                     "tracking.MemoryFloor.time_one_pass", "tracking.Tracking.time_track"]
    assert all(math.isclose(change.ratio, 3.0, rel_tol=1e-9) for change in changes)
    assert asv_tools.regressions(base, head, 4.0, gate_config, MACHINE) == []
    with pytest.raises(ValueError, match="no asv results for commit"):
        asv_tools.regressions("f" * 40, head, 1.5, gate_config, MACHINE)


def test_dashboard_lists_benchmarks_in_chromium(tiny_run):
    if dashboard.find_chromium() is None:
        pytest.skip("no Chromium (apt-get install chromium) for the dashboard check")
    if dashboard.fetch_assets() is None:
        pytest.skip("asv's CDN libraries cannot be served offline without npm")
    root = tiny_run[0]
    check = dashboard.dashboard_check(root / "html", root / "html-screenshot.png")
    assert check.ok, check.detail
    assert sorted(check.listed) == sorted(check.benchmarks)
    assert check.graph_benchmark.startswith("tracking.Tracking.time_track")
    for path in check.screenshots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
