"""A quadrupole given by its field (PALS ``Bn1`` [T/m], ImpactX ``unit = 1``) in a lattice
that changes the reference energy: the reader keeps ``field_rigidity`` (the starting B rho),
ImpactX and the in-house tracker divide the field by the local rigidity, particle by
particle equal (<= 1e-11 sigma, float64), the AD gradient equals finite differences, and
every other backend refuses the field by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends.registry import backend_classes
from harness.model.errors import ScenarioError
from harness.model.kinds import FIELD_RIGIDITY
from harness.model.load import scenario_from_dict
from harness.model.particles import generate

BEAM = {"species": "electron", "kinetic_energy_MeV": 50.0, "bunch_charge_C": 0.0,
        "distribution": "gaussian",
        "twiss": {"beta_x": 5.0, "alpha_x": -0.5, "emittance_x": 1e-8,
                  "beta_y": 4.0, "alpha_y": 0.4, "emittance_y": 1e-8},
        "longitudinal": {"sigma_t": 1e-3, "sigma_pt": 1e-3}, "particles": 1000}

#: Gradients [T/m]; the ChrAcc raises gamma by ez * 1.0 = 40 (from 99 to 139 and 179).
GRADIENT = 4.0
EZ = 40.0


def scenario(model: str = "paraxial", quad: dict | None = None,
             periods: int = 2):
    q = quad if quad is not None else {
        "kind": "Quadrupole", "length": 0.2,
        "MagneticMultipoleP": {"Bn1": GRADIENT, "Bs1": 0.3 * GRADIENT}}
    facility: list[dict] = [
        {"q1": q}, {"d1": {"kind": "Drift", "length": 0.4}},
        {"q2": {"kind": "Quadrupole", "length": 0.2, "MagneticMultipoleP": {"Bn1": -GRADIENT}}},
        {"acc": {"kind": "ImpactX.ChrAcc", "length": 1.0,
                 "ImpactXP": {"ez": EZ, "bz": 1e-12}}},
        {"line": {"kind": "BeamLine", "line": ["q1", "d1", "q2", "acc"]}}, {"use": "line"}]
    return scenario_from_dict({
        "name": "field-rigidity", "beam": BEAM, "model": model, "periods": periods,
        "lattice": {"PALS": {"facility": facility}},
        "observables": ["sigma_x", "sigma_px", "emittance_x", "emittance_y"]}, "f.yaml")


def test_field_quadrupole_keeps_its_starting_rigidity() -> None:
    s = scenario()
    q1 = s.elements[0]
    rigidity = s.reference_particle.rigidity_Tm
    assert q1.params[FIELD_RIGIDITY] == rigidity
    assert q1.params["Kn1"] == GRADIENT / rigidity
    assert q1.params["Ks1"] == 0.3 * GRADIENT / rigidity


def test_without_an_energy_change_the_field_is_normalised_once() -> None:
    facility = [{"q": {"kind": "Quadrupole", "length": 0.2,
                       "MagneticMultipoleP": {"Bn1": GRADIENT}}},
                {"line": {"kind": "BeamLine", "line": ["q"]}}, {"use": "line"}]
    s = scenario_from_dict({"name": "n", "beam": BEAM, "lattice": {"PALS": {
        "facility": facility}}, "observables": ["sigma_x"]}, "n.yaml")
    assert FIELD_RIGIDITY not in s.elements[0].params


def test_other_fields_in_an_accelerating_lattice_are_refused_by_name() -> None:
    with pytest.raises(ScenarioError, match=r"q1\.MagneticMultipoleP\.Bn2.*reference energy "
                       r"at 'acc'"):
        scenario(quad={"kind": "Sextupole", "length": 0.2,
                       "MagneticMultipoleP": {"Bn2": 10.0}})
    with pytest.raises(ScenarioError, match=r"q1\.MagneticMultipoleP\.Bn1.*without other "
                       "multipole"):
        scenario(quad={"kind": "Quadrupole", "length": 0.2,
                       "MagneticMultipoleP": {"Bn1": 1.0, "Bn2": 3.0}})


def test_impactx_gets_the_field_with_unit_1() -> None:
    from backends.impactx import translate

    s = scenario()
    (spec,) = translate(s.elements[2], s.reference_particle)
    assert spec.cls == "ChrQuad" and spec.kwargs["unit"] == 1
    assert spec.kwargs["k"] == pytest.approx(-GRADIENT, rel=1e-15)


@pytest.mark.parametrize("model", ["paraxial", "exact"])
def test_inhouse_equals_impactx_particle_by_particle(model: str) -> None:
    """Two periods: the second period's quadrupoles see twice the energy, so a gradient
    normalised at the start would be twice too strong there."""
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(model)
    particles = generate(s.beam, 1000)
    with IMPACTX().prepare(s) as prepared:
        theirs = prepared.track(particles)
    with INHOUSE().prepare(s, compile=False) as prepared:
        ours = prepared.track(particles)
    assert np.isfinite(theirs).all()
    deviation = float((np.abs(ours - theirs).max(axis=0) / theirs.std(axis=0)).max())
    print(f"field_rigidity ({model}): max |in-house - ImpactX| / sigma = {deviation:.2e}")
    assert deviation <= 1e-11
    # the local rigidity matters: without field_rigidity the in-house result differs
    fixed = scenario(model, quad={"kind": "Quadrupole", "length": 0.2, "MagneticMultipoleP": {
        "Kn1": GRADIENT / s.reference_particle.rigidity_Tm,
        "Ks1": 0.3 * GRADIENT / s.reference_particle.rigidity_Tm}})
    with INHOUSE().prepare(fixed, compile=False) as prepared:
        other = prepared.track(particles)
    assert float((np.abs(other - theirs).max(axis=0) / theirs.std(axis=0)).max()) > 1e-3


def test_impactx_refuses_the_linear_tier_by_name() -> None:
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX

    verdict = IMPACTX().supports(scenario("linear"))
    assert not verdict and "field_rigidity" in verdict.reason and "linear Quad" in \
        verdict.reason


def test_ad_gradient_equals_finite_differences() -> None:
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario()
    particles = generate(s.beam, 500)
    names = ["emittance_x", "sigma_px"]
    made = INHOUSE().differentiable_observables(s, ["q2.Kn1", f"q2.{FIELD_RIGIDITY}"], names,
                                                particles, "cpu", "float64")
    assert made is not None
    g, theta0 = made
    theta = theta0.clone().requires_grad_(True)
    values = g(theta)
    for name in names:
        (ad,) = torch.autograd.grad(values[name], theta, retain_graph=True)
        for i in range(2):
            h = 1e-4 * abs(float(theta0[i]))
            step = torch.zeros_like(theta0)
            step[i] = h
            with torch.no_grad():
                fd = (g(theta0 + step)[name] - g(theta0 - step)[name]) / (2 * h)
            assert float(ad[i]) != 0.0
            assert abs(float(ad[i]) - float(fd)) <= 1e-6 * abs(float(fd)), (name, i, ad, fd)


def test_every_other_backend_refuses_the_field_by_name() -> None:
    """An RF gap changes the reference energy too (ImpactX ``ShortRF.H``): a backend that
    tracks quadrupoles and RF gaps but not a field against the local rigidity says so."""
    facility = [{"q": {"kind": "Quadrupole", "length": 0.2,
                       "MagneticMultipoleP": {"Bn1": GRADIENT}}},
                {"rf": {"kind": "RFCavity", "length": 0.0,
                        "RFP": {"voltage": 1e6, "frequency": 1.3e9, "phase": 0.0}}},
                {"line": {"kind": "BeamLine", "line": ["q", "rf"]}}, {"use": "line"}]
    s = scenario_from_dict({"name": "rf", "beam": BEAM, "lattice": {"PALS": {
        "facility": facility}}, "observables": ["sigma_x"]}, "rf.yaml")
    assert s.elements[0].params[FIELD_RIGIDITY] == s.reference_particle.rigidity_Tm
    checked = 0
    for name, cls in backend_classes().items():
        if name in ("impactx", "inhouse") or not {"Quadrupole", "RFCavity"} <= set(
                cls.element_kinds):
            continue
        verdict = cls().supports(s)
        assert not verdict and FIELD_RIGIDITY in verdict.reason, (name, verdict)
        checked += 1
    assert checked


def test_the_importer_writes_unit_1_as_a_field_and_refuses_other_fields_after_an_energy_change(
) -> None:
    impactx = pytest.importorskip("impactx")
    ix = impactx.elements
    from harness.io.impactx_lattice import import_impactx
    from harness.io.model import Translated
    from harness.model.reference_particle import ReferenceParticle

    reference = ReferenceParticle("positron", 1000.0)
    quad = ix.ChrQuad(name="q", ds=0.1, k=-6.0, unit=1)
    lens = ix.ChrPlasmaLens(name="pl", ds=0.1, k=50.0, unit=1)
    acc = ix.ChrAcc(name="acc", ds=1.0, ez=100.0, bz=1e-12)
    result = import_impactx([quad, lens, acc], reference)
    fields = {item.name: item for item in result.items}
    assert isinstance(fields["q"], Translated)
    assert fields["q"].fields["MagneticMultipoleP"] == {"Bn1": -6.0}
    (refused,) = result.untranslatable
    assert refused.name == "pl" and "reference energy changes (ChrAcc)" in refused.reason
    assert not import_impactx([quad, lens], reference).untranslatable
