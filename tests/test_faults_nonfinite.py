"""Non-finite results: aperture losses and numerical blow-ups are told apart, survival is
the surviving fraction, moments are those of the survivors, and the verdict of a case that
lost every particle compares the losses. Verdicts can be judged again from stored rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import agreement
from harness.case_process import Limits
from harness.cases import Case
from harness.model import observables
from harness.model.load import load_scenario
from harness.model.particles import generate
from harness.results import append_rows, read_rows
from harness.runner import Runner

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FAKE = "fake_backends:"



def test_fates_and_survivor_moments():
    rng = np.random.default_rng(1)
    final = rng.normal(size=(10, 6))
    final[:3] = np.nan          # lost at an aperture (all-NaN rows)
    final[3, 2] = np.inf        # a blow-up
    final[4, 0] = 1e9           # a magnitude no beamline holds
    fate = observables.fates(final)
    assert (fate.lost.sum(), fate.blown_up.sum(), fate.alive.sum()) == (3, 2, 5)
    reference = load_scenario("fodo_linear").reference_particle
    values = observables.compute_survivors(final, ["sigma_x", "survival"], reference)
    assert values["survival"] == 0.5
    assert values["sigma_x"] == pytest.approx(np.std(final[5:, 0]))
    none = observables.compute_survivors(np.full((4, 6), np.nan), ["sigma_x", "survival"],
                                         reference)
    assert none["survival"] == 0.0 and np.isnan(none["sigma_x"])


def test_verdict_compares_losses_when_every_particle_is_lost():
    tolerance = agreement.tolerances("float64", False, False)
    lost = np.full((50, 6), np.nan)
    both = agreement.particle_deviation(lost, lost)
    assert both["dev_max"] is None and both["lost_mismatch"] == 0
    assert agreement.verdict("m", "m", both, tolerance, 50) == (
        "agrees", "no particle survived in either code: the losses agree")
    kept = np.ones((50, 6))
    one_sided = agreement.particle_deviation(lost, kept)
    verdict, detail = agreement.verdict("m", "m", one_sided, tolerance, 50)
    assert verdict == "differs" and "50 of 50 particles lost in one code only" in detail
    assert agreement.verdict("m", "m", both | {"blown_up": 2}, tolerance, 50)[0] == "blow-up"


def test_losses_and_blow_ups_through_the_runner(tmp_path, fake_path):
    scenario = load_scenario("fodo_linear")
    path = scenario.source_file

    def pair(reference_backend, backend, n):
        ref = Case("fodo_linear", path, FAKE + reference_backend, n, repeat=1,
                   role="reference", reference="fake")
        return [ref, Case("fodo_linear", path, FAKE + backend, n, repeat=1, reference="fake",
                          reference_case=ref.case_id)]

    cases = (pair("LossBackend", "LossBackend", 200) + pair("IdentityBackend", "LossBackend",
                                                            201)
             + pair("AllLostBackend", "AllLostBackend", 202)
             + pair("IdentityBackend", "BlowUpBackend", 203))
    Runner(tmp_path, Limits(timeout_s=120.0)).run(cases, {"fodo_linear": scenario})
    rows = {(r["particles"], r["role"]): r for r in read_rows(tmp_path)}
    same = rows[(200, "case")]
    assert (same["lost"], same["blown_up"], same["survival"]) == (60, 0, 0.7)
    assert same["verdict"] == "agrees" and same["dev_max"] == 0.0
    survivors = generate(scenario.beam, 200)[60:]
    assert same["obs_sigma_x"] == pytest.approx(np.std(survivors[:, 0]), rel=1e-12)
    against_identity = rows[(201, "case")]
    assert against_identity["verdict"] == "differs"
    assert "lost in one code only" in against_identity["verdict_detail"]
    all_lost = rows[(202, "case")]
    assert all_lost["verdict"] == "agrees" and all_lost["survival"] == 0.0
    assert all_lost.get("dev_max") is None
    blown = rows[(203, "case")]
    assert blown["status"] == "ok" and blown["verdict"] == "blow-up"
    assert (blown["lost"], blown["blown_up"]) == (20, 10)


def test_track_reports_survivors_and_refuses_a_blow_up(fake_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    lossy = subprocess.run([sys.executable, "-m", "harness.cli", "track", "fodo_linear",
                            "--backend", FAKE + "LossBackend", "--particles", "1000"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert lossy.returncode == 0, lossy.stderr
    assert "300 of 1000 particles lost at apertures" in lossy.stdout
    assert "nan" not in lossy.stdout.lower()
    blown = subprocess.run([sys.executable, "-m", "harness.cli", "track", "fodo_linear",
                            "--backend", FAKE + "BlowUpBackend", "--particles", "1000"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert blown.returncode == 4
    assert "numerical blow-up: 50 of 1000 particles" in blown.stderr


def test_rejudge_uses_the_stored_deviations(tmp_path, monkeypatch):
    from harness.compare import rejudged

    base = {"kind": "track", "scenario": "s", "backend": "b", "particles": 100,
            "device": "cpu", "dtype": "float64", "status": "ok", "model": "m",
            "reference_model": "m", "reference": "impactx", "role": "case",
            "space_charge": False, "lost_mismatch": 0, "compared_particles": 100}
    append_rows(tmp_path, [base | {"case_id": "a", "dev_max": 1e-6, "dev_rms": 1e-7,
                                   "verdict": "differs", "verdict_detail": "dev_max"}])
    append_rows(tmp_path, [base | {"case_id": "r", "role": "reference",
                                   "verdict": "reference"}])
    frame = rejudged(tmp_path)
    assert list(frame["verdict"]) == ["differs", "reference"]
    monkeypatch.setattr(agreement, "tolerances",
                        lambda dtype, sc, analytic: agreement.Tolerances(1e-5, 1e-5, 1e-5))
    frame = rejudged(tmp_path)
    assert list(frame["verdict"]) == ["agrees", "reference"]
    assert list(frame["stored_verdict"]) == ["differs", "reference"]


def test_compare_rejudge_command_lists_changed_verdicts(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from harness.cli import app

    row = {"kind": "track", "case_id": "a", "scenario": "s", "backend": "b",
           "particles": 100, "device": "cpu", "dtype": "float64", "status": "ok",
           "model": "m", "reference_model": "m", "reference": "impactx", "role": "case",
           "space_charge": False, "lost_mismatch": 0, "compared_particles": 100,
           "dev_max": 1e-6, "dev_rms": 1e-7, "verdict": "agrees", "verdict_detail": ""}
    append_rows(tmp_path, [row])
    before = (tmp_path / "results.jsonl").read_bytes()
    result = CliRunner().invoke(app, ["compare", str(tmp_path), "--rejudge"])
    assert result.exit_code == 0, result.output
    assert "s b N=100 float64: agrees -> differs" in result.output
    assert "1 verdict(s) changed" in result.output
    assert (tmp_path / "results.jsonl").read_bytes() == before  # nothing rewritten
