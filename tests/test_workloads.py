"""The workloads: the quad-scan reconstruction recovers the known beam (analytic answer,
gradient fit through the in-house tracker, Nelder-Mead of scipy and of Xopt through a
backend), the chromatic scan has no closed form (the analytic answer is a biased baseline,
the best fit the reference), the batch workload agrees with ImpactX per setting, and bad
input is one line."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.model.load import load_scenario
from harness.workloads import batch, fits, memory
from harness.workloads import quad_scan as qs
from harness.workloads.reconstruct import parse_strengths

pytestmark = pytest.mark.xdist_group("workloads")


@pytest.fixture(scope="module")
def problem_exact():
    """Five strengths, no noise, small beams."""
    scenario = load_scenario("quad_scan")
    return qs.make_problem(scenario, np.linspace(-8, 8, 5), 0.0, 1, 300, 2000)


def test_analytic_recovers_the_measured_beam_without_noise(problem_exact):
    sigma = qs.analytic(problem_exact)
    assert np.max(qs.normalised_errors(sigma, problem_exact.truth)) < 1e-9
    twiss = qs.twiss_from_sigma(sigma)
    assert twiss["beta_x"] == pytest.approx(6.0, rel=0.05)
    assert twiss["alpha_y"] == pytest.approx(-0.8, abs=0.05)


def test_inhouse_gauss_newton_reaches_the_analytic_answer(problem_exact):
    reference = qs.analytic(problem_exact)
    result = fits.run_method(problem_exact, "gauss-newton", "inhouse", reference, 200)
    assert result.row["status"] == "ok"
    assert result.row["batched"] is True
    assert result.row["max_dev_analytic"] < qs.TARGET
    assert result.row["time_to_target_s"] is not None


def test_neldermead_through_a_backend_records_its_evaluations(problem_exact):
    reference = qs.analytic(problem_exact)
    result = fits.run_method(problem_exact, "neldermead", "impactx", reference, 40)
    assert result.row["status"].startswith("stopped: Maximum number of function")
    assert result.row["converged"] is False
    assert 0 < result.row["evaluations"] <= 41
    assert result.trace and result.row["max_dev_analytic"] > 0


def test_xopt_neldermead_reaches_the_analytic_answer_and_stops_by_its_rule(problem_exact):
    reference = qs.analytic(problem_exact)
    result = fits.run_method(problem_exact, "xopt-neldermead", "inhouse", reference, 3000)
    assert result.row["status"] == "ok" and result.row["converged"] is True
    assert result.row["kind"] == "gradient-free"
    assert result.row["max_dev_analytic"] < qs.TARGET
    assert result.row["time_to_target_s"] is not None
    assert 100 < result.row["evaluations"] < 3000


def test_xopt_neldermead_through_impactx_stops_at_the_budget(problem_exact):
    reference = qs.analytic(problem_exact)
    result = fits.run_method(problem_exact, "xopt-neldermead", "impactx", reference, 30)
    assert result.row["status"] == "stopped: the evaluation budget is spent"
    assert result.row["evaluations"] == 30 and result.row["converged"] is False
    assert result.trace and result.row["max_dev_analytic"] > 0


def test_chromatic_scan_has_no_closed_form(tmp_path):
    """The analytic answer is biased against the known beam; the in-house gradient fit of
    the chromatic model is the reference and comes closer to the known beam."""
    from harness.workloads import reconstruct

    scenario = load_scenario("quad_scan_chromatic")
    document = reconstruct.run(scenario, strengths=np.linspace(-8, 8, 7), noise=0.0,
                               noise_seed=1, particles=2000, measure_particles=2000,
                               methods=["lbfgs"], backends=["inhouse"], max_evaluations=300,
                               out=tmp_path, say=lambda _: None)
    assert document["problem"]["closed_form"] is False
    assert document["reference_source"].startswith("best fit: lbfgs through inhouse")
    analytic, fit = document["rows"]
    assert analytic["model"] == "linear" and fit["model"] == "paraxial"
    assert analytic["time_to_target_s"] is None and analytic["max_dev_analytic"] > 0.03
    assert fit["time_to_target_s"] is not None and fit["max_dev_analytic"] == 0
    assert analytic["max_err_truth"] > 0.05
    assert fit["max_err_truth"] < 0.5 * analytic["max_err_truth"]
    assert fit["err_emittance_x"] < 0.5 * analytic["err_emittance_x"]
    assert "Reference answer: best fit" in (tmp_path / "summary.md").read_text()


def test_a_backend_that_cannot_run_a_method_is_a_row(problem_exact):
    reference = qs.analytic(problem_exact)
    no_ad = fits.run_method(problem_exact, "lbfgs", "impactx", reference, 10)
    assert no_ad.row["status"].startswith("unsupported: impactx gives no AD")
    unknown = fits.run_method(problem_exact, "lbfgs", "nosuchcode", reference, 10)
    assert unknown.row["status"].startswith("unsupported: unknown backend")


def test_batch_agrees_with_impactx_per_setting(tmp_path):
    scenario = load_scenario("fodo_linear")
    rows = batch.run(scenario, names=None, counts=[1, 3], spread=0.01, seed=2,
                     particles=200, backends=["inhouse", "impactx"], budget_s=5.0,
                     check=2, repeat=1, out=tmp_path, say=lambda _: None)
    vectorised = [r for r in rows if r["mode"] == "vectorised"]
    assert [r["settings"] for r in vectorised] == [1, 3]
    for row in rows:
        assert row["status"] == "ok", row
        assert row["max_rel_diff_vs_impactx"] < 1e-11, row
    assert (tmp_path / "batch.csv").exists() and (tmp_path / "batch.md").exists()


@pytest.mark.parametrize("text", ["abc", "1:2", "0:1:0", "1,nan,2", "1e9"])
def test_bad_strengths_are_refused(text):
    with pytest.raises(qs.WorkloadError, match="--strengths"):
        parse_strengths(text)


@pytest.mark.parametrize(("args", "expected"), [
    (["reconstruct", "--strengths", "x"], "--strengths"),
    (["reconstruct", "--parameter", "nope.Kn1"], "--parameter"),
    (["reconstruct", "--noise", "-1"], "--noise"),
    (["reconstruct", "--methods", "magic", "--strengths", "1,2,3"], "--methods"),
    (["reconstruct", "fodo_channel", "--parameter", "d1.length"], "Quadrupole"),
    (["batch", "--settings", "0"], "--settings"),
    (["batch", "--params", "beam.twiss.beta_x", "--settings", "1"], "--params"),
    (["batch", "no_such_scenario"], "no_such_scenario"),
    (["grad-memory", "--grid", "1"], "--grid"),
    (["grad-memory", "--checkpoint", "layer"], "--checkpoint"),
    (["grad-memory", "fodo_linear", "--particles", "10", "--kicks", "1", "--grid", "4"],
     "space_charge"),
])
def test_bad_input_is_one_line(args, expected, tmp_path):
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output


def test_memory_exponent_and_one_point():
    assert memory.exponent([1, 2, 4, 8], [3, 6, 12, 24]) == pytest.approx(1.0)
    scenario = load_scenario("fodo_space_charge")
    row = memory.point("inhouse", scenario, 100, 1, 4, "kick")
    assert row["status"] == "ok" and row["backward_peak_bytes"] > 0
    assert memory.point("cheetah", scenario, 200, 1, 8, "kick")["status"].startswith(
        "unsupported: cheetah has no per-kick checkpointing")
