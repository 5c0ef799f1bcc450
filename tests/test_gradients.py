"""Gradient machinery: FD sweeps, scenario edits, AD vs FD vs forward mode, cross-code
agreement and gradient cases through the isolated-case runner."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from harness import gradients
from harness.case_process import Limits
from harness.cases import Case
from harness.model.load import load_scenario
from harness.model.particles import generate
from harness.model.scenario_edit import with_values
from harness.results import read_rows
from harness.rows import GRADIENT
from harness.runner import Runner

FAKE = "fake_backends:"
HAS_OBJECTIVE = importlib.util.find_spec("backends.inhouse.objective") is not None
needs_objective = pytest.mark.skipif(not HAS_OBJECTIVE,
                                     reason="backends.inhouse.objective is not present")


def test_fd_sweep_has_the_v_curve_of_central_differences():
    """F(v) = sin(v) + v^3 at v = 1: truncation error ~ h^2 |F'''| / 6 for large steps,
    rounding error ~ eps |F| / h for small ones, minimum near eps^(1/3) ~ 6e-6."""
    value = 1.0
    exact = math.cos(value) + 3 * value**2
    sweep = gradients.fd_sweep(lambda v: math.sin(v) + v**3, value)
    errors = {step: gradients.rel_error(d, exact) for step, d in sweep}
    assert [s for s, _ in sweep] == list(gradients.DEFAULT_FD_STEPS)
    third = -math.cos(value) + 6.0  # F'''(1)
    for step in (1e-2, 1e-3):  # truncation regime: h^2 F''' / 6 to a few per cent
        assert errors[step] == pytest.approx(step**2 * third / 6 / exact, rel=0.05)
    best = gradients.best_step(errors)
    assert best in (1e-5, 1e-6)
    assert errors[best] < 1e-9
    assert errors[1e-10] > 100 * errors[best]  # the rounding arm of the V
    assert errors[1e-2] > errors[1e-3] > errors[1e-4] > errors[best]


def test_error_metrics():
    assert gradients.rel_error(1.1, 1.0) == pytest.approx(0.1)
    assert gradients.rel_error(1e-3, 0.0) == pytest.approx(1e-3)
    assert gradients.rel_error(None, 1.0) is None
    # scaled error: the error of d ln F / d ln p
    assert gradients.scaled_error(2.0, 1.0, parameter=3.0, objective=6.0) == pytest.approx(0.5)
    assert gradients.best_step({1e-2: 1e-4, 1e-3: None, 1e-4: 1e-8}) == 1e-4


def test_scenario_edit_changes_exactly_the_named_element_field():
    scenario = load_scenario("chicane")
    edited = with_values(scenario, {"dl.length": 4.0, "b2.angle": -0.05})
    before, after = scenario.elements, edited.elements
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        expected = dict(old.params)
        if old.name == "dl":  # both occurrences of the element change
            expected["length"] = 4.0
        if old.name == "b2":
            expected["angle"] = -0.05
        assert new.params == expected
        assert (new.name, new.kind, new.tier) == (old.name, old.kind, old.tier)
    assert edited.beam == scenario.beam
    assert scenario.elements[1].params["length"] == 5.0  # the original is untouched
    assert edited.length == pytest.approx(scenario.length - 2.0)
    with pytest.raises(KeyError):
        with_values(scenario, {"nope.length": 1.0})


def test_scenario_edit_changes_exactly_the_named_beam_field():
    scenario = load_scenario("fodo_linear")
    edited = with_values(scenario, {"beam.twiss.beta_x": 4.0,
                                    "beam.longitudinal.sigma_pt": 1e-3})
    old, new = scenario.beam.model_dump(), edited.beam.model_dump()
    old["twiss"]["beta_x"], old["longitudinal"]["sigma_pt"] = 4.0, 1e-3
    assert new == old
    assert [e.params for e in edited.elements] == [e.params for e in scenario.elements]
    # same seed: x scales by sqrt(beta_x' / beta_x), y and t are unchanged
    a, b = generate(scenario.beam, 500), generate(edited.beam, 500)
    ratio = math.sqrt(4.0 / scenario.beam.twiss.beta_x)
    np.testing.assert_allclose(b[:, 0], a[:, 0] * ratio, rtol=1e-13)
    np.testing.assert_array_equal(b[:, 2:5], a[:, 2:5])


def _case_rows(scenario_name: str, backend: str, tmp_path: Path, n: int = 1000,
               steps=(1e-4, 1e-5, 1e-6, 1e-7), parameters=None) -> list[dict]:
    """Run one gradient case in this process (as the child would)."""
    from harness.gradient_case import gradient_case

    scenario = load_scenario(scenario_name)
    initial = tmp_path / f"initial_{scenario_name}.npy"
    np.save(initial, generate(scenario.beam, n))
    options = {"fd_steps": list(steps)} | ({"parameters": parameters} if parameters else {})
    spec = {"scenario_path": scenario.source_file, "backend": backend, "particles": n,
            "device": "cpu", "dtype": "float64", "repeat": 1, "initial_path": str(initial),
            "options": options}
    return gradient_case(spec)


def _by_method(rows: list[dict], method: str) -> dict[str, dict]:
    return {r["parameter"]: r for r in rows if r.get("method") == method}


@needs_objective
@pytest.mark.parametrize("scenario_name", ["fodo_paraxial", "chicane"])
def test_inhouse_reverse_equals_forward_and_fd(scenario_name, tmp_path):
    rows = _case_rows(scenario_name, "inhouse", tmp_path)
    assert {r["status"] for r in rows} == {"ok"}
    reverse, forward = _by_method(rows, "reverse"), _by_method(rows, "forward")
    scenario = load_scenario(scenario_name)
    assert set(reverse) == set(forward) == set(scenario.gradients.parameters)
    for name, row in reverse.items():
        objective, value = row["objective_value"], row["parameter_value"]
        scaled = gradients.scaled_error(row["value"], forward[name]["value"], value,
                                        objective)
        relative = gradients.rel_error(row["value"], forward[name]["value"])
        # components with a (numerically) zero derivative are judged by the scaled error
        assert relative <= 1e-12 or scaled <= 1e-14, (name, relative, scaled)
        assert forward[name]["rel_error"] == 0.0  # forward mode is the reference itself
        against_fd = row["rel_error_vs_best_fd"]
        assert against_fd <= 1e-7 or row["scaled_error_vs_best_fd"] <= 1e-12, (
            name, against_fd, row["scaled_error_vs_best_fd"])
    fd = [r for r in rows if r["method"] == "fd"]
    assert len(fd) == 4 * len(reverse)
    assert all(r["best_fd_step"] in (1e-4, 1e-5, 1e-6, 1e-7) for r in fd)
    first = rows[0]
    assert first["n_params"] == len(reverse)
    assert first["fd_evaluations"] == 2 * 4 * len(reverse) + 1
    assert first["time_fd_s"] > 0 and first["time_forward_s"] > 0


@needs_objective
def test_inhouse_and_cheetah_gradients_agree_on_the_linear_fodo():
    pytest.importorskip("cheetah")
    import torch

    from backends.cheetah import CheetahBackend
    from backends.inhouse import InhouseBackend
    from harness.gradient_case import reverse_gradient

    if not hasattr(CheetahBackend, "differentiable_objective"):
        pytest.skip("CheetahBackend.differentiable_objective is not present")
    scenario = load_scenario("fodo_linear")
    names = scenario.gradients.parameters
    initial = generate(scenario.beam, 1000)
    grads = []
    for backend in (InhouseBackend(), CheetahBackend()):
        f, theta0 = backend.objective(scenario, names, "sigma_x", initial, "cpu", "float64")
        grads.append(reverse_gradient(f, theta0))
    error = (grads[0] - grads[1]).abs() / grads[0].abs()
    assert torch.all(error <= 1e-10), dict(zip(names, error.tolist(), strict=True))



def test_gradient_cases_through_the_runner(tmp_path, fake_path):
    """The identity lattice has d sigma_x / d beta_x = sigma_x / (2 beta_x) exactly (x scales
    with sqrt(beta_x) at a fixed seed) and d sigma_x / d Kn1 = 0; a raising backend fails
    alone."""
    scenario = load_scenario("fodo_linear")
    n = 1000
    sigma_x = float(np.std(generate(scenario.beam, n)[:, 0]))
    beta = scenario.beam.twiss.beta_x
    names = ["beam.twiss.beta_x", "quad1.Kn1"]
    options = {"parameters": names, "objective": "sigma_x", "fd_steps": [1e-3, 1e-5, 1e-7],
               "analytic": {"beam.twiss.beta_x": sigma_x / (2 * beta), "quad1.Kn1": 0.0}}
    path = scenario.source_file
    cases = [Case("fodo_linear", path, FAKE + name, n, repeat=1, kind="gradient",
                  reference="analytic", options=options | {"label": label})
             for name, label in (("IdentityBackend", "a"), ("RaisingBackend", "b"),
                                 ("SleepBackend", "c"))]
    Runner(tmp_path, Limits(timeout_s=60.0)).run(cases, {"fodo_linear": scenario})
    rows = read_rows(tmp_path)
    failed = [r for r in rows if r["backend"] == FAKE + "RaisingBackend"]
    assert len(failed) == 1 and failed[0]["status"] == "failed"
    assert failed[0]["reason"] == "RuntimeError: the element map diverged"
    for backend in ("IdentityBackend", "SleepBackend"):
        mine = [r for r in rows if r["backend"] == FAKE + backend]
        assert {r["status"] for r in mine} == {"ok"}
        assert {r["method"] for r in mine} == {"reference", "fd"}  # no AD: FD only
        fd = [r for r in mine if r["method"] == "fd"]
        assert len(fd) == 3 * len(names)
        required = set(GRADIENT) - {"backward_peak_bytes", "parameter_value",
                                    "objective_value", "time_gradient_warmup_s",
                                    "forward_mode", "backward_memory_method",
                                    "saved_tensor_bytes", "cuda_max_allocated_bytes",
                                    "rel_error_vs_best_fd", "scaled_error_vs_best_fd"}
        for row in fd:
            assert required <= set(row), required - set(row)
            assert row["kind"] == "gradient" and row["n_params"] == 2
            assert row["reference_method"] == "analytic"
        beta_rows = {r["fd_step"]: r for r in fd if r["parameter"] == "beam.twiss.beta_x"}
        assert beta_rows[1e-5]["rel_error"] < 1e-9
        assert beta_rows[1e-3]["best_fd_step"] in (1e-5, 1e-7)
        assert all(r["value"] == 0.0 for r in fd if r["parameter"] == "quad1.Kn1")
    assert len({r["case_id"] for r in rows}) == 3  # labels keep the case ids apart


@pytest.mark.parametrize(("args", "message"), [
    (["--params", "nope.Kn1"], "an element name of the lattice"),
    (["--objective", "sigma_q"], "an observable name"),
    (["--fd-steps", "small"], "--fd-steps"),
])
def test_grad_command_rejects_bad_input_in_one_line(args, message, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["grad", "fodo_linear", "--out", str(tmp_path / "r"),
                                      *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r" / "results.jsonl").exists()


def test_scaling_plan_takes_the_first_quadrupoles():
    scenario = load_scenario("fodo_channel")
    quads = gradients.quadrupole_parameters(scenario)
    assert len(quads) == 64 and quads[:3] == ["qf00.Kn1", "qd00.Kn1", "qf01.Kn1"]
    cases = gradients.plan_gradient_cases([scenario], ["inhouse"], [1000], ["cpu"],
                                          ["float64"], 1, scaling=True)
    assert [len(c.options["parameters"]) for c in cases] == [1, 4, 16, 64]
    assert [c.case_id.rsplit("/", 1)[1] for c in cases] == ["P1", "P4", "P16", "P64"]
    assert all(c.options["parameters"] == quads[:len(c.options["parameters"])]
               for c in cases)
