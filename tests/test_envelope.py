"""Envelope tracking: the 6x6 covariance through a lattice, in-house vs ImpactX's
``track_envelope`` vs Cheetah's ``ParameterBeam``, against the analytic drift, against
particle tracking, and its gradients (reverse = forward mode = finite differences).

Agreement of two covariance matrices = max |A - B| / max |B| (element by element, relative
to the largest entry), at the lattice entrance and after every element.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable

import numpy as np
import pytest
import torch
import yaml

from backends.inhouse import envelope as ie
from harness.model.load import load_scenario, resolve_scenario_path, scenario_from_dict
from harness.model.particles import generate
from harness.model.scenario import Scenario

HAS_IMPACTX = importlib.util.find_spec("impactx") is not None
HAS_CHEETAH = importlib.util.find_spec("cheetah") is not None
needs_impactx = pytest.mark.skipif(not HAS_IMPACTX, reason="impactx not installed")
needs_cheetah = pytest.mark.skipif(not HAS_CHEETAH, reason="cheetah not installed")

#: in-house vs ImpactX (same maps, float64): round-off
ROUND_OFF = 1e-12


def deviation(a, b) -> float:
    """max |a - b| / max |b| of two covariance matrices."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def worst(states_a, states_b) -> float:
    """:func:`deviation` at the entrance and after every element, the worst."""
    assert len(states_a) == len(states_b)
    return max(deviation(torch.as_tensor(a).numpy() if isinstance(a, torch.Tensor) else a,
                         torch.as_tensor(b).numpy() if isinstance(b, torch.Tensor) else b)
               for a, b in zip(states_a, states_b, strict=True))


def random_covariance(seed: int = 1) -> np.ndarray:
    """A symmetric positive-definite 6x6 matrix with every correlation present."""
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=(6, 6)) * np.array([1e-3, 1e-4, 2e-3, 3e-4, 1e-3, 1e-3])[:, None]
    return factor @ factor.T + np.diag([1e-8, 1e-9, 1e-8, 1e-9, 1e-8, 1e-8])


def edited(name: str, facility: list, line: list[str], **changes) -> Scenario:
    """A bundled scenario with another lattice (and top-level fields)."""
    data = yaml.safe_load(resolve_scenario_path(name).read_text())
    data = copy.deepcopy(data)
    data["lattice"] = {"PALS": {"version": None, "facility": [
        *facility, {"line": {"kind": "BeamLine", "line": line}}, {"use": "line"}]}}
    data.pop("gradients", None)
    data.update(changes)
    return scenario_from_dict(data)


#: a bend with edges, fringe and tilt, an offset and rotated solenoid, a skew quadrupole,
#: thin multipoles, a thick kicker, an RF gap and an aperture (linear model)
BEND_SOLENOID: list[dict[str, dict]] = [
    {"b1": {"kind": "SBend", "length": 0.5,
            "BendP": {"g_ref": 0.2, "e1": 0.03, "e2": -0.02, "edge_int1": 0.02,
                      "edge_int2": 0.01, "tilt_ref": 0.3}}},
    {"d1": {"kind": "Drift", "length": 0.4}},
    {"s1": {"kind": "Solenoid", "length": 0.7, "SolenoidP": {"Ksol": 1.3},
            "BodyShiftP": {"x_offset": 2e-4, "y_offset": -1e-4, "z_rot": 0.5}}},
    {"q1": {"kind": "Quadrupole", "length": 0.3,
            "MagneticMultipoleP": {"Kn1": 2.0, "Ks1": 0.7}}},
    {"m1": {"kind": "Multipole", "length": 0.0,
            "MagneticMultipoleP": {"Kn0L": 1e-4, "Kn1L": 0.3, "Ks1L": 0.1, "Kn2L": 50.0}}},
    {"k1": {"kind": "Kicker", "length": 0.2, "MagneticMultipoleP": {"Kn0L": 1e-4}}},
    {"rf": {"kind": "RFCavity", "length": 0.0,
            "RFP": {"voltage": 2e7, "frequency": 1.3e9, "phase": -0.5}}},
    {"ap": {"kind": "Marker", "ApertureP": {"x_limits": [-0.01, 0.01],
                                            "y_limits": [-0.01, 0.01]}}},
    {"b2": {"kind": "SBend", "length": 0.4, "BendP": {"g_ref": -0.15},
            "MagneticMultipoleP": {"Kn1": 0.5}}},
]
LINE = ["b1", "d1", "s1", "q1", "m1", "k1", "rf", "ap", "b2", "d1"]

#: exact tier: exact drift, exact bend, ExactCFbend, ExactMultipole (quadrupole with skew
#: and sextupole components), paraxial quadrupole, exact sextupole
EXACT: list[dict[str, dict]] = [
    {"d1": {"kind": "Drift", "length": 0.4}},
    {"b1": {"kind": "SBend", "length": 0.5, "BendP": {"g_ref": 0.2, "e1": 0.03}}},
    {"b2": {"kind": "SBend", "length": 0.4, "BendP": {"g_ref": -0.15},
            "MagneticMultipoleP": {"Kn1": 0.5}}},
    {"q1": {"kind": "Quadrupole", "length": 0.3,
            "MagneticMultipoleP": {"Kn1": 2.0, "Ks1": 0.7, "Kn2": 30.0}}},
    {"q2": {"kind": "Quadrupole", "length": 0.3, "MagneticMultipoleP": {"Kn1": -1.5}}},
    {"x1": {"kind": "Sextupole", "length": 0.2, "MagneticMultipoleP": {"Kn2": 40.0}}},
]
EXACT_LINE = ["d1", "b1", "d1", "q1", "d1", "b2", "q2", "d1", "x1"]


def bend_solenoid():
    return edited("chicane", BEND_SOLENOID, LINE)


def exact_mixture():
    return edited("chicane", EXACT, EXACT_LINE, model="exact",
                  overrides={"q2": {"model": "paraxial"}})


# ----------------------------------------------------------------------- analytic drift


@pytest.mark.parametrize(("species", "energy_MeV"), [("electron", 5.0), ("proton", 800.0)])
def test_drift_is_the_analytic_map(species: str, energy_MeV: float) -> None:
    """Sigma_out = R Sigma R^T with R of a drift written out: x += L px, y += L py,
    t += L pt / (beta gamma)^2."""
    length = 1.7
    data = yaml.safe_load(resolve_scenario_path("fodo_linear").read_text())
    data["beam"].update(species=species, kinetic_energy_MeV=energy_MeV)
    scenario = edited("fodo_linear", [{"d": {"kind": "Drift", "length": length}}], ["d"],
                      beam=data["beam"])
    sigma = random_covariance()
    bg = scenario.reference_particle.beta_gamma
    r = np.eye(6)
    r[0, 1] = length
    r[2, 3] = length
    r[4, 5] = length / bg**2
    expected = r @ sigma @ r.T
    assert deviation(ie.track_envelope(scenario, sigma).numpy(), expected) < 1e-15
    if HAS_IMPACTX:
        from backends import impactx_envelope

        assert deviation(impactx_envelope.track_envelope(scenario, sigma), expected) < 1e-15


# --------------------------------------------------------------- in-house vs ImpactX


@needs_impactx
@pytest.mark.parametrize("name", ["fodo_linear", "fodo_paraxial", "fodo_exact", "chicane",
                                  "fodo_sextupole", "htu", "bend_solenoid", "exact_mixture"])
def test_inhouse_equals_impactx_element_by_element(name: str) -> None:
    from backends import impactx_envelope

    scenario = {"bend_solenoid": bend_solenoid, "exact_mixture": exact_mixture}.get(
        name, lambda: load_scenario(name))()
    for sigma in (ie.initial_covariance(scenario), random_covariance()):
        ours = ie.track_envelope_elements(scenario, sigma)
        theirs = impactx_envelope.track_envelope_elements(scenario, sigma)
        assert len(theirs) == len(scenario.elements) + 1
        assert worst(ours, theirs) < ROUND_OFF, name


def test_maps_of_nonlinear_elements_are_their_jacobians() -> None:
    """The whole-lattice map equals the Jacobian of in-house particle tracking at the
    reference orbit (backends.inhouse.transfer_map) where the in-house maps linearise as
    ImpactX's transport_map does."""
    from backends.inhouse.transfer_map import linear_map

    for name in ("fodo_paraxial", "chicane", "htu"):
        scenario = load_scenario(name)
        tracker = ie.envelope_tracker(scenario)
        assert deviation(tracker.transfer_matrix().numpy(), linear_map(scenario).numpy()) \
            < 1e-13


# ------------------------------------------------------------------ Cheetah vs ImpactX

#: measured Cheetah ParameterBeam vs ImpactX track_envelope (2-core AMD EPYC, float64):
#: fodo_linear 1.2e-18, chicane 4.5e-16, htu 8.7e-15 (Cheetah's first-order maps are
#: ImpactX's transport maps)
CHEETAH_BOUND = 1e-13


@needs_cheetah
@needs_impactx
@pytest.mark.parametrize("name", ["fodo_linear", "fodo_paraxial", "chicane", "htu",
                                  "bend_solenoid"])
def test_cheetah_parameter_beam_equals_impactx(name: str) -> None:
    from backends import cheetah_envelope, impactx_envelope

    if name == "bend_solenoid":
        # Cheetah refuses the RF gap (no zero-length cavity) and a thin dipole (Kn0L), and
        # its edge fringe is a stand-in: the bend here has edge angles and no fringe
        facility = [e for e in BEND_SOLENOID if not {"rf", "b1", "m1"} & set(e.keys())]
        facility += [
            {"b1": {"kind": "SBend", "length": 0.5,
                    "BendP": {"g_ref": 0.2, "e1": 0.03, "e2": -0.02, "tilt_ref": 0.3}}},
            {"m1": {"kind": "Multipole", "length": 0.0,
                    "MagneticMultipoleP": {"Kn1L": 0.3, "Ks1L": 0.1, "Kn2L": 50.0}}}]
        scenario = edited("chicane", facility, [n for n in LINE if n != "rf"])
    else:
        scenario = load_scenario(name)
    sigma = ie.initial_covariance(scenario)
    ours = cheetah_envelope.track_envelope_elements(scenario, sigma)
    theirs = impactx_envelope.track_envelope_elements(scenario, sigma)
    assert worst(ours, theirs) < CHEETAH_BOUND


@needs_cheetah
def test_cheetah_covariance_conversion_is_exact() -> None:
    from backends import cheetah_envelope
    from backends.cheetah import to_cheetah_columns

    rng = np.random.default_rng(3)
    particles = rng.normal(size=(1000, 6)) @ np.linalg.cholesky(random_covariance()).T
    sigma = np.cov(particles.T)
    converted = cheetah_envelope.to_cheetah_covariance(sigma)
    direct = np.cov(to_cheetah_columns(particles).T)
    assert np.allclose(converted, direct, rtol=0, atol=1e-15 * np.abs(sigma).max())
    back = cheetah_envelope.to_impactx_covariance(converted)
    assert np.array_equal(back, sigma)


# ------------------------------------------------------------ envelope vs particles


def test_envelope_equals_particle_covariance_on_fodo_linear() -> None:
    """10^5 particles: the tracked particles' covariance is the envelope of their own
    initial covariance to round-off (linear maps), and within 5 standard errors of the
    envelope of the beam's covariance."""
    from backends.inhouse.tracker import Tracker

    scenario = load_scenario("fodo_linear")
    n = 100_000
    p0 = generate(scenario.beam, n)
    tracker = Tracker(scenario.elements, scenario.reference_particle)
    p1 = tracker.track(torch.as_tensor(p0))[0].numpy()
    sample0, sample1 = np.cov(p0.T), np.cov(p1.T)
    assert deviation(ie.track_envelope(scenario, sample0).numpy(), sample1) < 1e-13
    envelope = ie.track_envelope(scenario).numpy()
    diagonal = np.diag(envelope)
    error = np.sqrt((np.outer(diagonal, diagonal) + envelope**2) / n)
    assert np.all(np.abs(sample1 - envelope) < 5.0 * error)


# ------------------------------------------------------------------------ gradients


def assert_gradients_agree(f: Callable[[torch.Tensor], torch.Tensor],
                           theta0: torch.Tensor) -> None:
    """Reverse mode, forward mode (``jacfwd``) and a five-point central difference of the
    scalar ``f`` at ``theta0`` agree: 1e-12 and 1e-8 of the largest component."""
    theta = theta0.clone().requires_grad_(True)
    reverse = torch.autograd.grad(f(theta), theta)[0]
    forward = torch.func.jacfwd(f)(theta0)
    central = torch.zeros_like(theta0)
    for i in range(len(theta0)):
        # five-point central stencil (truncation O(h^4), round-off eps f / h)
        h = 1e-3 * max(abs(float(theta0[i])), 1e-3)

        def at(step: float, i: int = i) -> torch.Tensor:
            moved = theta0.clone()
            moved[i] += step
            return f(moved)

        central[i] = (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h)
    scale = float(reverse.abs().max())
    assert float((reverse - forward).abs().max()) <= 1e-12 * scale
    assert float((reverse - central).abs().max()) <= 1e-8 * scale


def sigma_x_of(scenario, keys):
    tracker = ie.envelope_tracker(scenario, keys)
    sigma0 = torch.as_tensor(ie.initial_covariance(scenario))

    def f(theta: torch.Tensor) -> torch.Tensor:
        values = {key: theta[..., i] for i, key in enumerate(keys)}
        return torch.sqrt(tracker.track(sigma0, values)[..., 0, 0])

    params = {e.name: e.params for e in scenario.elements}
    theta0 = torch.tensor([float(params[n][field]) for n, field in keys], dtype=torch.float64)
    return f, theta0


@pytest.mark.parametrize(("name", "keys"), [
    ("fodo_linear", [("quad1", "Kn1"), ("quad2", "Kn1"), ("drift2", "length")]),
    ("fodo_exact", [("quad1", "Kn1"), ("drift2", "length")]),
    ("chicane", [("b1", "angle"), ("dl", "length")]),
    ("htu", [("PMQ1V", "Kn1"), ("EMQ1H", "Kn1")]),
])
def test_gradient_reverse_equals_forward_and_finite_differences(name: str, keys) -> None:
    scenario = load_scenario(name)
    f, theta0 = sigma_x_of(scenario, keys)
    assert_gradients_agree(f, theta0)


def test_batched_parameter_sets_equal_one_at_a_time() -> None:
    scenario = load_scenario("fodo_linear")
    keys = [("quad1", "Kn1"), ("quad2", "Kn1")]
    f, theta0 = sigma_x_of(scenario, keys)
    batch = theta0 * torch.tensor([[1.0], [1.01], [0.97]], dtype=torch.float64)
    together = f(batch)
    assert together.shape == (3,)
    one_by_one = torch.stack([f(row) for row in batch])
    assert torch.allclose(together, one_by_one, rtol=1e-15, atol=0)
    assert bool((together[1:] != together[0]).all())


def test_initial_covariance_is_differentiable_in_beam_parameters() -> None:
    scenario = load_scenario("fodo_linear")
    twiss = scenario.beam.twiss
    assert twiss is not None
    beta = torch.tensor(twiss.beta_x, dtype=torch.float64, requires_grad=True)
    sigma0 = ie.initial_covariance(scenario, {"twiss.beta_x": beta})
    assert isinstance(sigma0, torch.Tensor)
    out = ie.track_envelope(scenario, sigma0)
    (grad,) = torch.autograd.grad(out[0, 0], beta)
    assert float(grad) != 0.0
    assert np.allclose(sigma0.detach().numpy(), ie.initial_covariance(scenario))


# ------------------------------------------------------------------------- refusals


def test_space_charge_is_refused_by_name() -> None:
    scenario = load_scenario("fodo_space_charge")
    with pytest.raises(ValueError, match="space_charge"):
        ie.track_envelope(scenario)
    sigma = ie.initial_covariance(scenario)
    if HAS_IMPACTX:
        from backends import impactx_envelope

        with pytest.raises(ValueError, match="space_charge"):
            impactx_envelope.track_envelope(scenario, sigma)
    if HAS_CHEETAH:
        from backends import cheetah_envelope

        with pytest.raises(ValueError, match="space_charge"):
            cheetah_envelope.track_envelope(scenario, sigma)


# ------------------------------------------------------------------ space charge


def sliced(name: str, nslice: int, energy_MeV: float = 10.0) -> Scenario:
    """A bundled scenario at a low energy with ``nslice`` slices per element."""
    data = yaml.safe_load(resolve_scenario_path(name).read_text())
    data["integrator"]["nslice"] = nslice
    data["beam"]["kinetic_energy_MeV"] = energy_MeV
    data.pop("gradients", None)
    return scenario_from_dict(data)


def test_elliptic_rd_is_carlsons() -> None:
    scipy_special = pytest.importorskip("scipy.special")
    args = torch.tensor([[1.0, 2.0, 3.0], [1e-6, 4e-6, 2e-3], [5.0, 5.0, 5.0],
                         [0.0, 1.0, 1e-3]], dtype=torch.float64)
    ours = ie.elliptic_rd(args[:, 0], args[:, 1], args[:, 2]).numpy()
    theirs = scipy_special.elliprd(*args.numpy().T)
    assert np.allclose(ours, theirs, rtol=1e-14, atol=0)


@needs_impactx
@pytest.mark.parametrize(("name", "nslice"), [("fodo_linear", 25), ("chicane", 10),
                                              ("fodo_exact", 4)])
@pytest.mark.parametrize(("kind", "intensity"), [("2D", 0.5), ("3D", 1e-9)])
def test_space_charge_inhouse_equals_impactx(name: str, nslice: int, kind: str,
                                             intensity: float) -> None:
    """10 MeV, where the kicks change the final covariance by 0.5 % (2D, fodo) to
    2900x (3D, chicane)."""
    from backends import impactx_envelope

    scenario = sliced(name, nslice)
    sigma = ie.initial_covariance(scenario)
    space_charge = ie.EnvelopeSpaceCharge(kind, intensity)
    ours = ie.track_envelope_elements(scenario, sigma, space_charge=space_charge)
    theirs = impactx_envelope.track_envelope_elements(scenario, sigma, space_charge)
    assert worst(ours, theirs) < ROUND_OFF
    plain = impactx_envelope.track_envelope(scenario, sigma)
    assert deviation(theirs[-1], plain) > 1e-3  # the kicks matter


@pytest.mark.parametrize("kind", ["2D", "3D"])
def test_space_charge_gradient_reverse_forward_finite_differences(kind: str) -> None:
    scenario = sliced("fodo_linear", 5)
    keys = [("quad1", "Kn1"), ("drift2", "length")]
    space_charge = ie.EnvelopeSpaceCharge(kind, 0.5 if kind == "2D" else 1e-9)
    tracker = ie.envelope_tracker(scenario, keys, space_charge=space_charge)
    sigma0 = torch.as_tensor(ie.initial_covariance(scenario))

    def f(theta: torch.Tensor) -> torch.Tensor:
        values = {key: theta[..., i] for i, key in enumerate(keys)}
        return torch.sqrt(tracker.track(sigma0, values)[..., 0, 0])

    theta0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert_gradients_agree(f, theta0)


def test_space_charge_refuses_what_it_cannot_slice() -> None:
    scenario = bend_solenoid()
    with pytest.raises(ValueError, match="offsets and rotations"):
        ie.envelope_tracker(scenario, space_charge=ie.EnvelopeSpaceCharge("3D", 1e-9))
    with pytest.raises(ValueError, match="'2D' or '3D'"):
        ie.EnvelopeSpaceCharge("2p5d", 1e-9)
