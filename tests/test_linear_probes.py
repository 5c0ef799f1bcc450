"""Probe particles (``beam.linear_probes``): unit vectors such as pt = 1, which read a
transfer map (ImpactX's ``solenoid_softedge`` example) but move no physical particle
forward. Accepted over a lattice of linear maps only (refused by name otherwise), tracked by
ImpactX and the in-house tracker alike (the map's columns agree to round-off), refused by
the backends that convert coordinates with the particle's energy."""

from __future__ import annotations

import numpy as np
import pytest

from backends.registry import backend_classes
from harness.model.errors import ScenarioError
from harness.model.load import scenario_from_dict
from harness.model.particles import generate

#: The six unit vectors and a zero particle (x, px, y, py, t, pt).
PROBES = np.vstack([np.eye(6), np.zeros((1, 6))])

SOFT: dict = {"kind": "ImpactX.SoftSolenoid", "length": 1.0,
        "ImpactXP": {"bscale": -0.8, "cos_coefficients": [1.0, 0.5, 0.1],
                     "sin_coefficients": [0.0, 0.0, 0.0]}}
QUAD: dict = {"kind": "Quadrupole", "length": 0.3, "MagneticMultipoleP": {"Kn1": 2.0}}
BEND: dict = {"kind": "SBend", "length": 0.5, "BendP": {"g_ref": 0.2}}


def scenario(tmp_path, probes: bool = True, model: str = "linear",
             extra: dict | None = None, particles: np.ndarray = PROBES, soft: bool = True):
    path = tmp_path / "probes.npz"
    np.savez(path, particles=particles)
    facility: list[dict] = [{"s": SOFT}] if soft else []
    facility += [{"d": {"kind": "Drift", "length": 0.4}}, {"q": QUAD}, {"b": BEND}]
    if extra is not None:
        facility.append({"x": extra})
    names = [next(iter(entry)) for entry in facility]
    facility += [{"line": {"kind": "BeamLine", "line": names}}, {"use": "line"}]
    beam: dict = {"species": "proton", "kinetic_energy_MeV": 250.0, "distribution": "file",
            "file": str(path), "particles": len(particles)}
    if probes:
        beam["linear_probes"] = True
    return scenario_from_dict({"name": "probes", "beam": beam, "model": model,
                               "lattice": {"PALS": {"facility": facility}},
                               "observables": ["sigma_x"]}, tmp_path / "s.yaml")


def test_probes_are_refused_without_the_setting(tmp_path) -> None:
    with pytest.raises(ScenarioError, match="particles moving forward"):
        scenario(tmp_path, probes=False)


def test_probes_over_a_nonlinear_element_are_refused_by_name(tmp_path) -> None:
    with pytest.raises(ScenarioError, match=r"beam\.linear_probes.*'x' \(Sextupole"):
        scenario(tmp_path, extra={"kind": "Sextupole", "length": 0.2,
                                  "MagneticMultipoleP": {"Kn2": 1.0}})
    with pytest.raises(ScenarioError, match=r"beam\.linear_probes.*'d' \(Drift, model "
                       "paraxial"):
        scenario(tmp_path, model="paraxial")
    with pytest.raises(ScenarioError, match=r"beam\.linear_probes.*RFCavity"):
        scenario(tmp_path, extra={"kind": "RFCavity", "length": 0.0, "RFP": {
            "voltage": 1e5, "frequency": 1e8, "phase": 0.0}})


def test_the_setting_needs_a_file_beam(tmp_path) -> None:
    with pytest.raises(ScenarioError, match="linear_probes"):
        scenario_from_dict({"name": "p", "beam": {
            "species": "proton", "kinetic_energy_MeV": 250.0, "distribution": "gaussian",
            "twiss": {"beta_x": 1.0, "alpha_x": 0.0, "emittance_x": 1e-8, "beta_y": 1.0,
                      "alpha_y": 0.0, "emittance_y": 1e-8},
            "linear_probes": True},
            "lattice": {"PALS": {"facility": [{"d": {"kind": "Drift", "length": 1.0}},
                                              {"l": {"kind": "BeamLine", "line": ["d"]}},
                                              {"use": "l"}]}},
            "observables": ["sigma_x"]}, tmp_path / "g.yaml")


def test_inhouse_equals_impactx_on_the_probes(tmp_path) -> None:
    """The columns of the map read by the unit vectors: |in-house - ImpactX| <= 1e-11
    (the entries are of order 1)."""
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(tmp_path)
    particles = generate(s.beam, len(PROBES))
    assert (particles == PROBES).all()
    with IMPACTX().prepare(s) as prepared:
        theirs = prepared.track(particles)
    with INHOUSE().prepare(s, compile=False) as prepared:
        ours = prepared.track(particles)
    assert np.isfinite(theirs).all()
    assert np.abs(theirs[5, :4]).max() > 1e-3      # pt = 1 reaches x, px (the bend)
    deviation = float(np.abs(ours - theirs).max())
    print(f"probes: max |in-house - ImpactX| = {deviation:.2e}")
    assert deviation <= 1e-11


def test_backends_that_take_the_energy_refuse_probes_by_name(tmp_path) -> None:
    s = scenario(tmp_path, soft=False)
    refused = 0
    for name, cls in backend_classes().items():
        if cls.linear_probes:
            continue
        verdict = cls().supports(s)
        assert not verdict and "beam.linear_probes" in verdict.reason, (name, verdict)
        refused += 1
    assert refused
