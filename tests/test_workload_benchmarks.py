"""The asv benchmarks of the workloads' headline figures (``benchmarks/workloads.py``),
called directly at small sizes: each gives a finite figure in its unit, and the one-tiny-case
grid (``TRACKBENCH_ASV_QUICK=1``) leaves them out."""

from __future__ import annotations

import importlib
import math

import pytest

from benchmarks import grid

pytestmark = pytest.mark.xdist_group("workloads")


@pytest.fixture()
def suite(monkeypatch):
    """The module as the full suite defines it, with small sizes."""
    monkeypatch.delenv(grid.QUICK_VARIABLE, raising=False)
    module = importlib.reload(importlib.import_module("benchmarks.workloads"))
    monkeypatch.setattr(module, "SETTINGS", 20)
    monkeypatch.setattr(module, "PARTICLES", 200)
    monkeypatch.setattr(module, "LOOP_SETTINGS", 2)
    yield module
    monkeypatch.undo()
    importlib.reload(module)


@pytest.mark.parametrize("mode", ["vectorised", "vectorised+grad"])
def test_batch_settings(suite, mode):
    bench = suite.BatchSettings()
    bench.setup(mode)
    bench.time_batch(mode)
    rate = bench.track_settings_per_s(mode)
    assert math.isfinite(rate) and rate > 0
    assert suite.BatchSettings.track_settings_per_s.unit == "settings/s"


def test_batch_speedup(suite):
    pytest.importorskip("impactx")
    bench = suite.BatchSpeedup()
    bench.setup()
    ratio = bench.track_speedup_vs_impactx()
    assert math.isfinite(ratio) and ratio > 0


@pytest.mark.parametrize("method", ["analytic", "lbfgs"])
def test_reconstruction(suite, method):
    pytest.importorskip("impactx")
    bench = suite.Reconstruction()
    bench.setup(method)
    seconds = bench.track_time_to_target(method)
    assert math.isfinite(seconds) and 0 < seconds < 60


def test_grad_memory(suite):
    bench = suite.GradMemory()
    bench.setup("kick")
    assert bench.track_backward_peak_bytes("kick") > 1e5


def test_the_tiny_grid_leaves_them_out(monkeypatch):
    monkeypatch.setenv(grid.QUICK_VARIABLE, "1")
    module = importlib.reload(importlib.import_module("benchmarks.workloads"))
    try:
        assert not hasattr(module, "BatchSettings")
        assert not hasattr(module, "GradMemory")
    finally:
        monkeypatch.delenv(grid.QUICK_VARIABLE)
        importlib.reload(module)
