"""``particle_boundary: {kind: periodic, bucket_length}``: ImpactX's ``algo.particle_bc =
periodic`` (``src/particles/ParticleBoundary.cpp``: t wrapped into one bucket after every
slice of every element) and the in-house tracker's wrap after every element agree particle
by particle (float64); the AD gradient through the wrap equals finite differences; every
backend without the boundary refuses it by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends.registry import backend_classes
from harness.model.errors import ScenarioError
from harness.model.load import scenario_from_dict
from harness.model.particles import generate

#: Bucket length [m]; the beam's t spread (0.05 m rms) spans several buckets.
BUCKET = 0.04

BEAM = {"species": "proton", "kinetic_energy_MeV": 100.0, "bunch_charge_C": 0.0,
        "distribution": "gaussian",
        "twiss": {"beta_x": 5.0, "alpha_x": 0.0, "emittance_x": 1e-7,
                  "beta_y": 5.0, "alpha_y": 0.0, "emittance_y": 1e-7},
        "longitudinal": {"sigma_t": 0.05, "sigma_pt": 2e-2}, "particles": 2000}


def scenario(model: str = "paraxial", boundary: bool = True, extra: dict | None = None):
    facility = [{"d1": {"kind": "Drift", "length": 1.5}},
                {"q1": {"kind": "Quadrupole", "length": 0.3,
                        "MagneticMultipoleP": {"Kn1": 1.5}}},
                {"d2": {"kind": "Drift", "length": 2.0}},
                {"m": {"kind": "Marker"}},
                {"line": {"kind": "BeamLine", "line": ["d1", "q1", "d2", "m"]}},
                {"use": "line"}]
    data: dict = {"name": "wrap", "beam": BEAM, "model": model, "periods": 3,
                  "integrator": {"nslice": 3},
                  "lattice": {"PALS": {"facility": facility}},
                  "observables": ["sigma_x", "sigma_px", "emittance_x", "sigma_t"]}
    if boundary:
        data["particle_boundary"] = {"kind": "periodic", "bucket_length": BUCKET}
    data.update(extra or {})
    return scenario_from_dict(data, "wrap.yaml")


def _wrap(t: np.ndarray, duration: float) -> np.ndarray:
    """ImpactX's wrap (``ParticleBoundary.cpp``) in numpy."""
    half = 0.5 * duration
    return np.fmod(np.fmod(t + half, duration) + duration, duration) - half


@pytest.mark.parametrize("model", ["linear", "paraxial", "exact"])
def test_inhouse_equals_impactx_particle_by_particle(model: str) -> None:
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(model)
    particles = generate(s.beam, 2000)
    with IMPACTX().prepare(s) as prepared:
        theirs = prepared.track(particles)
    with INHOUSE().prepare(s, compile=False) as prepared:
        ours = prepared.track(particles)
    duration = BUCKET / s.reference_particle.beta
    assert np.abs(theirs[:, 4]).max() <= 0.5 * duration * (1 + 1e-12)
    deviation = float((np.abs(ours - theirs).max(axis=0) / theirs.std(axis=0)).max())
    print(f"periodic boundary ({model}): max |in-house - ImpactX| / sigma = {deviation:.2e}")
    assert deviation <= 1e-11
    # the wrap acts: without it t leaves the bucket
    with INHOUSE().prepare(scenario(model, boundary=False), compile=False) as prepared:
        free = prepared.track(particles)
    assert np.abs(free[:, 4]).max() > duration
    np.testing.assert_allclose(_wrap(free[:, 4], duration), theirs[:, 4], rtol=0,
                               atol=1e-9 * duration)


def test_ad_gradient_through_the_wrap_equals_finite_differences() -> None:
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario()
    particles = generate(s.beam, 500)
    names = ["emittance_x", "sigma_px"]
    made = INHOUSE().differentiable_observables(s, ["q1.Kn1"], names, particles, "cpu",
                                                "float64")
    assert made is not None
    g, theta0 = made
    theta = theta0.clone().requires_grad_(True)
    values = g(theta)
    for name in names:
        (ad,) = torch.autograd.grad(values[name], theta, retain_graph=True)
        h = 1e-4 * float(theta0[0])
        with torch.no_grad():
            fd = (g(theta0 + h)[name] - g(theta0 - h)[name]) / (2 * h)
        assert float(ad[0]) != 0.0
        assert abs(float(ad[0]) - float(fd)) <= 1e-6 * abs(float(fd)), (name, ad, fd)


def test_backends_without_the_boundary_refuse_it_by_name() -> None:
    s = scenario("linear")
    for name, cls in backend_classes().items():
        if "periodic" in cls.particle_boundaries:
            continue
        verdict = cls().supports(s)
        assert not verdict and "particle_boundary" in verdict.reason, (name, verdict)


def test_the_inhouse_space_charge_tracker_refuses_it() -> None:
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario("linear", extra={"space_charge": {"kind": "3d", "grid": [16, 16, 16],
                                                   "kicks_per_element": 3}})
    verdict = INHOUSE().supports(s)
    assert not verdict and "particle_boundary with space charge" in verdict.reason


def test_envelope_tracking_refuses_it() -> None:
    with pytest.raises(ScenarioError, match="particle_boundary"):
        scenario("linear", extra={"tracking": "envelope"})
