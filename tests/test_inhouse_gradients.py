"""Gradients of scenario objectives through the in-house tracker.

Reverse mode (autograd) vs forward mode (``torch.func.jacfwd``), AD vs central finite
differences at the best of a sweep of steps, beam-parameter (reparameterised sampling)
gradients, batching, and the objective's value vs the non-differentiable tracking path.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
import yaml
from torch.func import jacfwd, jvp

from backends.inhouse.objective import make_objective
from backends.inhouse.tracker import Tracker
from harness.model import observables
from harness.model.load import load_scenario, resolve_scenario_path, scenario_from_dict
from harness.model.particles import generate

N = 1000


def objective(name: str, parameters: list[str] | None = None, objective_name: str | None = None):
    scenario = load_scenario(name)
    return make_objective(scenario, parameters or scenario.gradients.parameters,
                          objective_name or scenario.gradients.objective, N, "cpu",
                          torch.float64)


def reverse_gradient(f, theta0: torch.Tensor) -> torch.Tensor:
    theta = theta0.clone().requires_grad_(True)
    f(theta).backward()
    return theta.grad


def central_differences(f, theta0: torch.Tensor, exponents=range(3, 9)) -> torch.Tensor:
    """``(P, K)`` central differences (f(t + h) - f(t - h)) / 2h per parameter, for steps
    h = |t| 10^-k (10^-k at t = 0), evaluated in one batched call of ``f``."""
    scale = theta0.abs().clamp_min(1e-12)
    steps = scale[:, None] * torch.tensor([10.0**-k for k in exponents], dtype=theta0.dtype)
    n_params, n_steps = steps.shape
    shifts = torch.zeros(n_params, n_steps, n_params, dtype=theta0.dtype)
    index = torch.arange(n_params)
    shifts[index, :, index] = steps
    with torch.no_grad():
        plus = f((theta0 + shifts).reshape(-1, n_params)).reshape(n_params, n_steps)
        minus = f((theta0 - shifts).reshape(-1, n_params)).reshape(n_params, n_steps)
    return (plus - minus) / (2.0 * steps)


@pytest.mark.parametrize("name", ["fodo_paraxial", "chicane"])
def test_reverse_equals_forward_mode(name):
    f, theta0 = objective(name)
    reverse = reverse_gradient(f, theta0)
    forward = jacfwd(f)(theta0)
    scale = reverse.abs()
    rel = ((forward - reverse).abs() / scale.clamp_min(1e-300)).max()
    # parameters with an exactly vanishing gradient compare absolutely
    assert float(rel) <= 1e-12 or float((forward - reverse).abs().max()) == 0.0
    _, tangent = jvp(f, (theta0,), (torch.ones_like(theta0),))
    assert float(tangent) == pytest.approx(float(reverse.sum()), rel=1e-12)


#: AD vs best central difference, relative. fodo_sextupole's objective is emittance_x, a
#: square root of a nearly cancelling determinant whose finite differences carry ~1e-6
#: relative round-off at every step (measured: best step 1.4e-6 at N = 1000).
FD_BOUNDS = {"fodo_paraxial": 1e-7, "chicane": 1e-7, "fodo_exact": 1e-7, "fodo_sextupole": 1e-5}


@pytest.mark.parametrize("name", list(FD_BOUNDS))
def test_ad_matches_central_differences(name):
    f, theta0 = objective(name)
    gradient = reverse_gradient(f, theta0)
    scenario = load_scenario(name)
    differences = central_differences(f, theta0)
    for index, parameter in enumerate(scenario.gradients.parameters):
        ad = float(gradient[index])
        fd = differences[index].tolist()
        errors = [abs(d - ad) for d in fd]
        # relative to the gradient; a gradient below 1e-6 |f|/|theta| (e.g. d sigma_t /
        # d beta_x of the achromatic chicane, ~1e-25) is round-off on both sides and is
        # compared on that scale instead
        scale = max(abs(ad), abs(float(f(theta0))) / max(abs(float(theta0[index])), 1e-12)
                    * 1e-6)
        assert min(errors) / scale <= FD_BOUNDS[name], (parameter, ad, fd)


def test_beam_twiss_gradient_vs_regenerated_beam():
    """d sigma_x / d beta_x etc. by AD equals central differences of the whole numpy pipeline
    (harness.model.particles.generate of a modified scenario, same seed, then tracking)."""
    scenario = load_scenario("fodo_paraxial")
    names = ["beam.twiss.beta_x", "beam.twiss.alpha_x", "beam.twiss.emittance_x"]
    f, theta0 = make_objective(scenario, names, "sigma_x", N, "cpu", torch.float64)
    gradient = reverse_gradient(f, theta0)
    tracker = Tracker(scenario.elements, scenario.reference_particle)

    def pipeline(field: str, value: float) -> float:
        twiss = scenario.beam.twiss.model_copy(update={field: value})
        beam = scenario.beam.model_copy(update={"twiss": twiss})
        out, _ = tracker.track(torch.from_numpy(generate(beam, N)))
        return float(observables.compute(out, ["sigma_x"])["sigma_x"])

    assert float(f(theta0)) == pytest.approx(pipeline("beta_x", float(theta0[0])), rel=1e-14)
    for index, name in enumerate(names):
        field = name.rsplit(".", 1)[1]
        value = float(theta0[index])
        best = min(abs((pipeline(field, value + h) - pipeline(field, value - h)) / (2 * h)
                       - float(gradient[index]))
                   for h in (abs(value) * 10.0**-k for k in range(3, 8)))
        assert best <= 1e-7 * abs(float(gradient[index]))


def test_batch_equals_separate_calls():
    f, theta0 = objective("fodo_paraxial")
    batch = theta0.repeat(8, 1)
    batch[:, 0] = torch.linspace(0.8, 1.2, 8, dtype=torch.float64)  # quad1.Kn1
    batch[:, 1] = torch.linspace(-1.2, -0.8, 8, dtype=torch.float64)  # quad2.Kn1
    together = f(batch)
    assert together.shape == (8,)
    separate = torch.stack([f(row) for row in batch])
    torch.testing.assert_close(together, separate, rtol=1e-14, atol=0.0)
    # and the batched gradient equals the per-row gradients
    rows = batch.clone().requires_grad_(True)
    f(rows).sum().backward()
    for index in (0, 7):
        torch.testing.assert_close(rows.grad[index], reverse_gradient(f, batch[index]),
                                   rtol=1e-12, atol=0.0)


def test_objective_value_matches_tracking():
    scenario = load_scenario("chicane")
    f, theta0 = make_objective(scenario, ["b1.angle"], "sigma_t", N, "cpu", torch.float64)
    out, _ = Tracker(scenario.elements, scenario.reference_particle).track(
        torch.from_numpy(generate(scenario.beam, N)))
    expected = observables.compute(out, ["sigma_t"])["sigma_t"]
    assert float(f(theta0)) == pytest.approx(float(expected), rel=1e-13)


def test_bad_theta_shape_is_rejected():
    f, theta0 = objective("fodo_paraxial")
    with pytest.raises(ValueError, match="shape"):
        f(theta0[:2])


@pytest.mark.skipif(importlib.util.find_spec("backends.inhouse.sc_tracking") is None,
                    reason="backends.inhouse.sc_tracking (space-charge tracker) is not present")
def test_space_charge_objective():
    """expanding_beam on a 16^3 mesh with 2 kicks: reverse = forward mode, AD = central
    differences (measured best step: 1.7e-10 relative), a batch = its rows."""
    data = yaml.safe_load(resolve_scenario_path("expanding_beam").read_text())
    data["space_charge"] = {"kind": "3d", "grid": [16, 16, 16], "kicks_per_element": 2}
    data["integrator"]["nslice"] = 2   # one slice per kick (another nslice is refused)
    scenario = scenario_from_dict(data)
    f, theta0 = make_objective(scenario, ["beam.rms.sigma_x", "drift.length"], "sigma_x", 500)
    reverse = reverse_gradient(f, theta0)
    forward = jacfwd(f)(theta0)
    torch.testing.assert_close(forward, reverse, rtol=1e-12, atol=0.0)
    differences = central_differences(f, theta0, exponents=range(4, 7))
    errors = ((differences - reverse[:, None]).abs().min(dim=1).values / reverse.abs())
    assert float(errors.max()) <= 1e-7
    batch = torch.stack([theta0, theta0 * 1.01])
    torch.testing.assert_close(f(batch), torch.stack([f(theta0), f(theta0 * 1.01)]),
                               rtol=1e-14, atol=0.0)


@pytest.mark.parametrize("backend_name", ["inhouse", "cheetah"])
def test_observables_of_one_track_equal_the_single_observable_objectives(
        backend_name: str) -> None:
    """``differentiable_observables`` gives every observable from one track: each value
    and the gradient of a weighted sum equal those of the one-observable objectives."""
    from backends.registry import load_backend_class

    scenario = load_scenario("fodo_linear")
    names = ["sigma_x", "beta_y", "alpha_x", "emittance_y"]
    params = list(scenario.gradients.parameters)
    backend = load_backend_class(backend_name)()
    initial = generate(scenario.beam, 200)
    observe, theta0 = backend.differentiable_observables(scenario, params, names, initial,
                                                         "cpu", "float64")
    theta = theta0.clone().requires_grad_(True)
    together = observe(theta)
    assert sorted(together) == sorted(names)
    weights = {name: 1.0 + i for i, name in enumerate(names)}
    (joint,) = torch.autograd.grad(sum(w * together[n] for n, w in weights.items()), theta)
    separate = torch.zeros_like(theta0)
    for name in names:
        f, _ = backend.objective(scenario, params, name, initial, "cpu", "float64")
        single = theta0.clone().requires_grad_(True)
        value = f(single)
        assert float(value) == pytest.approx(float(together[name]), rel=1e-13)
        separate += weights[name] * torch.autograd.grad(value, single)[0]
    # the same terms summed in another order (3e-11 relative seen, with cancellation)
    assert torch.allclose(joint, separate, rtol=1e-9, atol=0.0)
