"""The soak check (tests/soak_faults.py) at a small size: random child kills, parent kills
with resumes, torn last lines and timeouts; every case recorded once with its true
status, after any records of outside kills (which ``--resume`` runs again)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

#: Its cases have a 5 s time limit: never beside the other tests that start processes.
pytestmark = pytest.mark.xdist_group("processes")

TESTS = Path(__file__).resolve().parent


def test_soak_with_random_faults_keeps_every_case_once(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    import soak_faults

    summary = soak_faults.soak(tmp_path / "soak", n_cases=16, seed=3, timeout_s=5.0,
                               budget_s=240)
    assert summary["problems"] == [], summary
    assert summary["recorded"] == 16
    assert 16 <= summary["rows"] <= 16 + summary["child_kills"], summary
    assert summary["parent_kills"] + summary["child_kills"] >= 1, summary
    assert "soak_faults" in sys.modules
