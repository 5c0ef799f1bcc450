"""Threads of a case that asks for all of them: the free cores, measured when it starts, and
OpenMP's spinning bounded (harness.timing_quality)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness import timing_quality


def test_threads_beside_counts_the_free_cores() -> None:
    assert timing_quality.threads_beside(2, None) == 2
    assert timing_quality.threads_beside(2, 0.35) == 2   # the runner's own polling
    assert timing_quality.threads_beside(2, 1.3) == 1    # one other CPU-bound process
    assert timing_quality.threads_beside(2, 2.0) == 1    # never fewer than one
    assert timing_quality.threads_beside(16, 3.0) == 13


@pytest.mark.serial  # the machine's load, measured: needs the machine to itself
@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs /proc/stat")
def test_busy_cores_sees_a_competing_process() -> None:
    if timing_quality.available_cores() < 2:
        pytest.skip("needs two cores")
    quiet = timing_quality.busy_cores(0.2)
    assert quiet is not None and 0.0 <= quiet <= timing_quality.available_cores()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = timing_quality.busy_cores(0.3)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None and busy >= quiet + 0.6, (quiet, busy)


def test_default_threads_keeps_a_given_count_and_bounds_spinning(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert timing_quality.default_threads() is None
    assert os.environ["OMP_NUM_THREADS"] == "3"
    assert os.environ["GOMP_SPINCOUNT"] == str(timing_quality.OPENMP_SPIN_COUNT)


def test_default_threads_leaves_the_busy_cores(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(timing_quality, "available_cores", lambda: 4)
    monkeypatch.setattr(timing_quality, "busy_cores", lambda interval_s=0.2: 1.1)
    assert timing_quality.default_threads() == 1.1
    assert os.environ["OMP_NUM_THREADS"] == "3"
