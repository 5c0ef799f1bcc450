"""``reverse: true`` on the exact-tier multipoles (``Sextupole``, ``Octupole``,
``ImpactX.ExactMultipole``, all ImpactX ``ExactMultipole``) and on ``ImpactX.ExactSbend``
given its field: in-house = ImpactX particle by particle through the reversed element, the
element followed by its reversed copy is the identity in ImpactX, an AD gradient through a
reversed ExactMultipole against finite differences, and the ImpactX importer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.model.load import scenario_from_dict
from harness.model.particles import generate

BEAM = {"species": "electron", "kinetic_energy_MeV": 2000.0, "bunch_charge_C": 0.0,
        "distribution": "gaussian",
        "twiss": {"beta_x": 20.0, "alpha_x": -1.0, "emittance_x": 2e-7,
                  "beta_y": 10.0, "alpha_y": 0.5, "emittance_y": 1e-7},
        "longitudinal": {"sigma_t": 1e-3, "sigma_pt": 2e-3}, "particles": 1000}
#: B [T] of a 10 m radius for electrons of 2 GeV kinetic energy (B rho = p / e).
FIELD_10M = 2000.510998950e6 * (1 - (0.510998950 / 2000.510998950) ** 2) ** 0.5 / 299792458.0 / 10
BODIES = {
    "Sextupole": {"kind": "Sextupole", "length": 0.7,
                  "MagneticMultipoleP": {"Kn1": 1.0, "Ks1": -0.5, "Kn2": -20.0, "Ks2": 14.0}},
    "Octupole": {"kind": "Octupole", "length": 0.7,
                 "MagneticMultipoleP": {"Kn1": 0.8, "Kn3": 300.0, "Ks3": -100.0}},
    "ImpactX.ExactMultipole": {"kind": "ImpactX.ExactMultipole", "length": 0.7,
                               "ImpactXP": {"k_normal": [1e-3, 1.3, 0.0],
                                            "k_skew": [0.0, -0.5, 0.0]}},
    "ImpactX.ExactSbend": {"kind": "ImpactX.ExactSbend", "length": 0.7,
                           "ImpactXP": {"phi": 0.07, "B": FIELD_10M}},
    "ImpactX.ExactSbend-": {"kind": "ImpactX.ExactSbend", "length": 0.7,
                            "ImpactXP": {"phi": 0.05, "B": -FIELD_10M}},
}
CASES = [(kind, order) for kind in BODIES for order in ((2, 4) if "Sbend" not in kind
                                                        else (2,))]


def scenario(body: dict, line: tuple[str, ...] = ("d1", "e", "ie"), int_order: int = 2,
             spin: bool = False):
    facility = [{"d1": {"kind": "Drift", "length": 0.5}}, {"e": body},
                {"ie": {**body, "reverse": True}},
                {"line": {"kind": "BeamLine", "line": list(line)}}, {"use": "line"}]
    beam = {**BEAM, "spin": {"polarization": [0.3, 0.5, 0.6]}} if spin else BEAM
    return scenario_from_dict({
        "name": "reverse", "beam": beam, "model": "exact",
        "integrator": {"nslice": 3, "mapsteps": 4, "int_order": int_order},
        "lattice": {"PALS": {"facility": facility}},
        "observables": ["sigma_x", "sigma_px", "emittance_x"]}, "reverse.yaml")


def test_reverse_gives_the_extension_element_a_negative_length() -> None:
    (_, e, ie) = scenario(BODIES["ImpactX.ExactMultipole"]).elements
    assert ie.kind == "ImpactX.ExactMultipole"
    assert ie.params["length"] == -e.params["length"] == -0.7
    assert ie.params["Kn1"] == e.params["Kn1"]
    (_, e, ie) = scenario(BODIES["ImpactX.ExactSbend"]).elements
    assert ie.params["length"] == -0.7 and ie.params["phi"] == e.params["phi"]


def _track(backend, s, particles):
    from backends.impactx import BACKEND as IMPACTX

    if backend is IMPACTX:
        with backend().prepare(s) as prepared:
            return prepared.track(particles)
    with backend().prepare(s, compile=False) as prepared:
        return prepared.track(particles)


@pytest.mark.parametrize(("kind", "order"), CASES)
def test_inhouse_equals_impactx_and_the_inverse_undoes_the_element(kind: str,
                                                                   order: int) -> None:
    """float64, 1000 particles: in-house = ImpactX to <= 1e-11 sigma through the reversed
    element, and in ImpactX the element followed by its reversed copy is the identity (to
    1e-9 sigma)."""
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(BODIES[kind], ("d1", "ie"), order)
    particles = generate(s.beam, 1000)
    theirs = _track(IMPACTX, s, particles)
    ours = _track(INHOUSE, s, particles)
    assert np.isfinite(theirs).all()
    sigma = theirs.std(axis=0)
    deviation = float((np.abs(ours - theirs).max(axis=0) / sigma).max())
    print(f"reverse {kind} int_order {order}: max |in-house - ImpactX| / sigma = "
          f"{deviation:.2e}")
    assert deviation <= 1e-11
    pair = _track(IMPACTX, scenario(BODIES[kind], int_order=order), particles)
    drift_only = _track(IMPACTX, scenario(BODIES[kind], ("d1",), order), particles)
    identity = float((np.abs(pair - drift_only).max(axis=0) / sigma).max())
    print(f"  element then its reverse (ImpactX): {identity:.2e} sigma")
    assert identity <= 1e-9
    assert float((np.abs(theirs - drift_only).max(axis=0) / sigma).max()) > 1e-3


@pytest.mark.parametrize("kind", ["ImpactX.ExactMultipole", "ImpactX.ExactSbend"])
def test_reversed_element_with_spins_inhouse_equals_impactx(kind: str) -> None:
    """Spin tracking through the reversed element: spins within 1e-13, and the element
    then its reverse gives the initial spins back (ImpactX, 1e-12)."""
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(BODIES[kind], ("d1", "ie"), spin=True)
    particles = generate(s.beam, 500)
    theirs = _track(IMPACTX, s, particles)
    ours = _track(INHOUSE, s, particles)
    spin = float(np.abs(ours[:, 6:] - theirs[:, 6:]).max())
    print(f"reverse {kind} with spin: max |s in-house - s ImpactX| = {spin:.2e}")
    assert spin <= 1e-13
    pair = _track(IMPACTX, scenario(BODIES[kind], spin=True), particles)
    drift_only = _track(IMPACTX, scenario(BODIES[kind], ("d1",), spin=True), particles)
    assert float(np.abs(pair[:, 6:] - drift_only[:, 6:]).max()) <= 1e-12


def test_ad_gradient_through_a_reversed_exact_multipole_equals_finite_differences() -> None:
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(BODIES["ImpactX.ExactMultipole"], ("d1", "ie"))
    particles = generate(s.beam, 1000)
    names = ["emittance_x", "sigma_px"]
    made = INHOUSE().differentiable_observables(s, ["ie.Kn1"], names, particles, "cpu",
                                                "float64")
    assert made is not None
    g, theta0 = made
    theta = theta0.clone().requires_grad_(True)
    values = g(theta)
    (ad,) = torch.autograd.grad(values["sigma_px"], theta)
    h = 1e-4 * float(theta0[0])
    with torch.no_grad():
        fd = (g(theta0 + h)["sigma_px"] - g(theta0 - h)["sigma_px"]) / (2 * h)
    assert float(ad[0]) != 0.0
    assert abs(float(ad[0]) - float(fd)) <= 1e-6 * abs(float(fd)), (ad, fd)


def test_other_backends_refuse_the_reversed_sextupole_by_name() -> None:
    from backends.registry import backend_classes

    s = scenario({"kind": "Sextupole", "length": 0.7, "MagneticMultipoleP": {"Kn2": -20.0}})
    for name, cls in backend_classes().items():
        if "Sextupole" in cls.reversible_kinds:
            assert name in ("impactx", "inhouse"), name
            continue
        verdict = cls().supports(s)
        assert not verdict, name
        assert "'ie'" in verdict.reason, (name, verdict.reason)


def test_impactx_importer_states_negative_ds_exact_multipole_and_sbend_as_reverse() -> None:
    impactx = pytest.importorskip("impactx")
    from harness.io.impactx_lattice import import_impactx
    from harness.io.model import Translated
    from harness.model.reference_particle import ReferenceParticle

    elements = impactx.elements
    result = import_impactx([
        elements.ExactMultipole(name="im", ds=-1.0, k_normal=[0.0, 1.0, -2.0],
                                k_skew=[0.0, -0.5, 1.4], unit=0),
        elements.ExactMultipole(name="iq", ds=-1.0, k_normal=[0.0, 1.0], k_skew=[0.0, 0.5],
                                unit=0),
        elements.ExactSbend(name="ib", ds=-0.5, phi=3.0, B=0.6)],
        ReferenceParticle("electron", 2000.0), "reverse")
    sextupole, multipole, bend = result.items
    # a field bend outside an accelerating lattice is an SBend (bend_field_ref)
    for item, kind in ((sextupole, "Sextupole"), (multipole, "ImpactX.ExactMultipole"),
                       (bend, "SBend")):
        assert isinstance(item, Translated), item
        assert item.fields["kind"] == kind
        assert item.fields["reverse"] is True and item.fields["length"] > 0.0
