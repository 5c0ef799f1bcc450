"""The ``Octupole`` kind end to end: PALS reading, the in-house map against ImpactX particle
by particle, its AD gradient against finite differences, and each backend's answer
(translated, or refused by construction)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends.registry import backend_classes
from harness.model.errors import ScenarioError
from harness.model.load import scenario_from_dict
from harness.model.particles import generate

BEAM = {"species": "proton", "kinetic_energy_MeV": 800.0, "bunch_charge_C": 0.0,
        "distribution": "gaussian",
        "twiss": {"beta_x": 20.0, "alpha_x": -1.0, "emittance_x": 2e-7,
                  "beta_y": 10.0, "alpha_y": 0.5, "emittance_y": 1e-7},
        "longitudinal": {"sigma_t": 1e-3, "sigma_pt": 1e-3}, "particles": 2000}

#: Octupole strength [1/m^4]: with ~2 mm beams the kick Kn3 x^3 L / 6 is ~1e-5 rad.
KN3 = 5e4


def scenario(octupole: dict | None = None, model: str = "exact", mapsteps: int = 10):
    body = octupole if octupole is not None else {
        "kind": "Octupole", "length": 0.3,
        "MagneticMultipoleP": {"Kn3": KN3, "Ks3": -0.3 * KN3}}
    facility = [{"d1": {"kind": "Drift", "length": 0.5}}, {"o1": body},
                {"d2": {"kind": "Drift", "length": 1.0}},
                {"line": {"kind": "BeamLine", "line": ["d1", "o1", "d2"]}}, {"use": "line"}]
    return scenario_from_dict({
        "name": "octupole", "beam": BEAM, "model": model,
        "integrator": {"mapsteps": mapsteps},
        "lattice": {"PALS": {"facility": facility}},
        "observables": ["sigma_x", "sigma_px", "emittance_x", "emittance_y"]}, "oct.yaml")


def test_pals_octupole_becomes_an_element_with_kn3() -> None:
    (_, octupole, _) = scenario().elements
    assert octupole.kind == "Octupole"
    assert octupole.params == {"length": 0.3, "Kn3": KN3, "Ks3": -0.3 * KN3}
    assert octupole.tier == "exact" and octupole.integrated


def test_an_octupole_without_kn3_or_length_is_refused_by_name() -> None:
    with pytest.raises(ScenarioError, match=r"MagneticMultipoleP\.Kn3.*octupole strength"):
        scenario({"kind": "Octupole", "length": 0.3, "MagneticMultipoleP": {"Kn2": 1.0}})
    with pytest.raises(ScenarioError, match="positive length for a Octupole"):
        scenario({"kind": "Octupole", "length": 0.0, "MagneticMultipoleP": {"Kn3": 1.0}})


def test_linear_request_runs_the_exact_tier() -> None:
    """ImpactX has only the exact octupole (``madx_to_impactx.py``): a linear floor rises."""
    (_, octupole, _) = scenario(model="linear").elements
    assert octupole.tier == "exact" and octupole.requested_tier == "linear"


def test_impactx_translation_is_exact_multipole() -> None:
    from backends.impactx import translate

    s = scenario()
    (spec,) = translate(s.elements[1], s.reference_particle)
    assert spec.cls == "ExactMultipole"
    assert spec.kwargs["k_normal"] == [0.0, 0.0, 0.0, KN3]
    assert spec.kwargs["k_skew"] == [0.0, 0.0, 0.0, -0.3 * KN3]


def test_inhouse_equals_impactx_particle_by_particle() -> None:
    """float64, the same 2000 particles: max |in-house - ImpactX| / sigma <= 1e-11."""
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario()
    particles = generate(s.beam, 2000)
    with IMPACTX().prepare(s) as prepared:
        theirs = prepared.track(particles)
    with INHOUSE().prepare(s, compile=False) as prepared:
        ours = prepared.track(particles)
    assert np.isfinite(theirs).all()
    moved = np.abs(theirs - particles).max(axis=0) / theirs.std(axis=0)
    assert moved[1] > 1e-3          # the octupole kicks visibly
    deviation = float((np.abs(ours - theirs).max(axis=0) / theirs.std(axis=0)).max())
    print(f"octupole: max |in-house - ImpactX| / sigma = {deviation:.2e}")
    assert deviation <= 1e-11


def test_ad_gradient_on_kn3_equals_finite_differences() -> None:
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario()
    particles = generate(s.beam, 1000)
    names = ["emittance_x", "sigma_px"]
    made = INHOUSE().differentiable_observables(s, ["o1.Kn3"], names, particles, "cpu",
                                                "float64")
    assert made is not None
    g, theta0 = made
    theta = theta0.clone().requires_grad_(True)
    values = g(theta)
    for name in names:
        (ad,) = torch.autograd.grad(values[name], theta, retain_graph=True)
        h = 1e-3 * float(theta0[0])
        with torch.no_grad():
            fd = (g(theta0 + h)[name] - g(theta0 - h)[name]) / (2 * h)
        assert float(ad[0]) != 0.0
        assert abs(float(ad[0]) - float(fd)) <= 1e-6 * abs(float(fd)), (name, ad, fd)


def test_every_backend_translates_or_refuses_the_octupole_by_name() -> None:
    s = scenario()
    for name, cls in backend_classes().items():
        if "Octupole" in cls.element_kinds:
            continue
        verdict = cls().supports(s)
        assert not verdict, name
        assert "Octupole" in verdict.reason, (name, verdict.reason)


def test_pyat_octupole_agrees_with_impactx() -> None:
    """AT's ``ExactMultipolePass`` (4th-order, the same steps) stands in for ImpactX's
    ``ExactMultipole`` (2nd order): labelled a stand-in, equal to ImpactX's where both
    integrators have nearly converged (200 steps; at 10 ImpactX's own step error is 6e-4 sigma in
    px for this octupole, measured)."""
    pytest.importorskip("at")
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.pyat import BACKEND as PYAT

    s = scenario({"kind": "Octupole", "length": 0.3, "MagneticMultipoleP": {"Kn3": KN3}},
                 mapsteps=200)
    verdict = PYAT().supports(s)
    assert verdict and "ExactMultipole->ExactMultipolePass" in verdict.model
    particles = generate(s.beam, 500)
    particles[:, 4:] = 0.0          # AT moves every particle at c: compare transversely
    with IMPACTX().prepare(s) as prepared:
        theirs = prepared.track(particles)
    with PYAT().prepare(s) as prepared:
        ours = prepared.track(particles)
    deviation = (np.abs(ours - theirs)[:, :4].max(axis=0) / theirs[:, :4].std(axis=0)).max()
    print(f"octupole: max |pyAT - ImpactX| / sigma (x, px, y, py) = {deviation:.2e}")
    assert deviation <= 1e-5   # measured 1.6e-6: ImpactX's 2nd-order step error at 200 steps
