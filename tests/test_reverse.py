"""``reverse: true``, the inverse element (ImpactX's negative length): reading it, the
in-house maps against ImpactX particle by particle, an AD gradient through a reversed
element against finite differences, the ImpactX importer, and every other backend's refusal
by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends.registry import backend_classes
from harness.model.errors import ScenarioError
from harness.model.load import scenario_from_dict
from harness.model.particles import generate

BEAM = {"species": "electron", "kinetic_energy_MeV": 2000.0, "bunch_charge_C": 0.0,
        "distribution": "gaussian",
        "twiss": {"beta_x": 20.0, "alpha_x": -1.0, "emittance_x": 2e-7,
                  "beta_y": 10.0, "alpha_y": 0.5, "emittance_y": 1e-7},
        "longitudinal": {"sigma_t": 1e-3, "sigma_pt": 2e-3}, "particles": 1000}
BODIES = {"Drift": {"kind": "Drift", "length": 0.7},
          "Quadrupole": {"kind": "Quadrupole", "length": 0.7,
                         "MagneticMultipoleP": {"Kn1": 1.3}},
          "Solenoid": {"kind": "Solenoid", "length": 0.7, "SolenoidP": {"Ksol": 0.9}},
          "SBend": {"kind": "SBend", "length": 0.7, "BendP": {"g_ref": 0.1}},
          "CFbend": {"kind": "SBend", "length": 0.7, "BendP": {"g_ref": 0.1},
                     "MagneticMultipoleP": {"Kn1": 0.8}}}
TIERS = {"Solenoid": ("linear",), "SBend": ("linear", "exact"), "CFbend": ("linear", "exact")}
CASES = [(kind, model) for kind in BODIES
         for model in TIERS.get(kind, ("linear", "paraxial", "exact"))]


def scenario(body: dict, model: str = "linear", line: tuple[str, ...] = ("d1", "e", "ie")):
    facility = [{"d1": {"kind": "Drift", "length": 0.5}}, {"e": body},
                {"ie": {**body, "reverse": True}},
                {"line": {"kind": "BeamLine", "line": list(line)}}, {"use": "line"}]
    return scenario_from_dict({
        "name": "reverse", "beam": BEAM, "model": model,
        "lattice": {"PALS": {"facility": facility}},
        "observables": ["sigma_x", "sigma_px", "emittance_x"]}, "reverse.yaml")


def test_reverse_gives_the_element_a_negative_length() -> None:
    (_, e, ie) = scenario(BODIES["Quadrupole"]).elements
    assert e.params == {"length": 0.7, "Kn1": 1.3}
    assert ie.params == {"length": -0.7, "Kn1": 1.3}


def test_a_reversed_bend_keeps_its_curvature() -> None:
    (_, e, ie) = scenario(BODIES["SBend"]).elements
    assert ie.params["length"] == -e.params["length"]
    assert ie.params["angle"] == -e.params["angle"] == pytest.approx(-0.07)


def test_reverse_on_a_kind_impactx_does_not_invert_is_refused_by_name() -> None:
    multipole = {"kind": "Multipole", "length": 0.0, "MagneticMultipoleP": {"Kn1L": 0.1}}
    with pytest.raises(ScenarioError, match=r"lattice\.ie\.reverse: .*Drift"):
        scenario(multipole)
    with pytest.raises(ScenarioError, match=r"lattice\.ie\.reverse: .*without pole faces"):
        scenario({"kind": "SBend", "length": 0.5, "BendP": {"g_ref": 0.1, "e1": 0.02}})
    with pytest.raises(ScenarioError, match=r"lattice\.e\.reverse: expected true or false"):
        scenario({**BODIES["Drift"], "reverse": "yes"}, line=("d1", "e"))
    with pytest.raises(ScenarioError, match=r"ie\.length: expected a positive length"):
        scenario({"kind": "Drift", "length": 0.0})


@pytest.mark.parametrize(("kind", "model"), CASES)
def test_inhouse_equals_impactx_and_the_inverse_undoes_the_element(kind: str,
                                                                   model: str) -> None:
    """float64, 1000 particles: in-house = ImpactX to <= 1e-11 sigma through the reversed
    element, and in ImpactX the element followed by its reversed copy is the identity (to
    1e-9 sigma)."""
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(BODIES[kind], model, ("d1", "ie"))
    particles = generate(s.beam, 1000)
    with IMPACTX().prepare(s) as prepared:
        theirs = prepared.track(particles)
    with INHOUSE().prepare(s, compile=False) as prepared:
        ours = prepared.track(particles)
    sigma = theirs.std(axis=0)
    deviation = float((np.abs(ours - theirs).max(axis=0) / sigma).max())
    print(f"reverse {kind} {model}: max |in-house - ImpactX| / sigma = {deviation:.2e}")
    assert deviation <= 1e-11
    with IMPACTX().prepare(scenario(BODIES[kind], model)) as prepared:
        pair = prepared.track(particles)
    with IMPACTX().prepare(scenario(BODIES[kind], model, ("d1",))) as prepared:
        drift_only = prepared.track(particles)
    assert float((np.abs(pair - drift_only).max(axis=0) / sigma).max()) <= 1e-9


def test_ad_gradient_through_a_reversed_quadrupole_equals_finite_differences() -> None:
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(BODIES["Quadrupole"], line=("d1", "ie"))
    particles = generate(s.beam, 1000)
    names = ["emittance_x", "sigma_px"]
    made = INHOUSE().differentiable_observables(s, ["ie.Kn1"], names, particles, "cpu",
                                                "float64")
    assert made is not None
    g, theta0 = made
    theta = theta0.clone().requires_grad_(True)
    values = g(theta)
    for name in names[1:]:
        (ad,) = torch.autograd.grad(values[name], theta, retain_graph=True)
        h = 1e-4 * float(theta0[0])
        with torch.no_grad():
            fd = (g(theta0 + h)[name] - g(theta0 - h)[name]) / (2 * h)
        assert float(ad[0]) != 0.0
        assert abs(float(ad[0]) - float(fd)) <= 1e-6 * abs(float(fd)), (name, ad, fd)


def test_every_other_backend_refuses_the_reversed_element_by_name() -> None:
    s = scenario(BODIES["Quadrupole"])
    for name, cls in backend_classes().items():
        if "Quadrupole" in cls.reversible_kinds:
            assert name in ("impactx", "inhouse"), name
            continue
        verdict = cls().supports(s)
        assert not verdict, name
        assert "'ie'" in verdict.reason and "reverse" in verdict.reason, (name,
                                                                         verdict.reason)


def test_impactx_importer_states_a_negative_ds_as_reverse() -> None:
    impactx = pytest.importorskip("impactx")
    from harness.io.impactx_lattice import import_impactx
    from harness.io.model import Translated, Untranslatable
    from harness.model.reference_particle import ReferenceParticle

    elements = impactx.elements
    result = import_impactx([elements.Quad(name="iq", ds=-1.5, k=2.0),
                             elements.ExactSbend(name="ib", ds=-1.5707963, phi=-90.0),
                             elements.ConstF(name="ic", ds=-1.0, kx=1.0, ky=1.0, kt=1.0)],
                            ReferenceParticle("electron", 2000.0), "reverse")
    quad, bend, constf = result.items
    assert isinstance(quad, Translated)
    assert quad.fields["length"] == 1.5 and quad.fields["reverse"] is True
    assert isinstance(bend, Translated) and bend.fields["reverse"] is True
    assert bend.fields["length"] == 1.5707963
    assert bend.fields["BendP"]["g_ref"] == pytest.approx(1.0)
    assert isinstance(constf, Untranslatable) and "reverse: true only on" in constf.reason
