"""Bends as ImpactX's examples give them, through the ImpactX lattice import: an
``ExactSbend`` by its field B (a PALS ``SBend`` with ``bend_field_ref`` over the arc its map
tracks, or, in a lattice that accelerates, the extension kind ``ImpactX.ExactSbend``), a
``Sbend`` of radius 0 (ImpactX's drift map), the rotation of bends and pole faces
(``tilt_ref``) and the linear ``DipEdge`` fringe term g K2 (the bend's ``edge_int``).

Each imported lattice is tracked by ImpactX as the example builds it and, restated as a
scenario, by trackbench's ImpactX and in-house backends, particle by particle (float64);
the new kind's in-house map is differentiated in reverse and forward mode against central
differences."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from harness.io.model import Translated, Untranslatable
from harness.model.load import scenario_from_dict
from harness.model.particles import generate
from harness.model.reference_particle import ReferenceParticle

impactx = pytest.importorskip("impactx")
ix = impactx.elements

BEAM = {"species": "electron", "kinetic_energy_MeV": 200.0, "bunch_charge_C": 0.0,
        "distribution": "gaussian",
        "twiss": {"beta_x": 10.0, "alpha_x": -0.5, "emittance_x": 1e-8,
                  "beta_y": 8.0, "alpha_y": 0.3, "emittance_y": 1e-8},
        "longitudinal": {"sigma_t": 1e-4, "sigma_pt": 1e-3}, "particles": 1000}
PROTON = {**BEAM, "species": "proton", "kinetic_energy_MeV": 4e-3}


def _reference(beam: dict) -> ReferenceParticle:
    return ReferenceParticle(beam["species"], beam["kinetic_energy_MeV"])


def _imported(lattice: list, beam: dict) -> tuple[list[Any], list[str]]:
    from harness.io.impactx_lattice import import_impactx

    result = import_impactx(_built(lattice), _reference(beam))
    return result.items, result.notes


def _scenario(items: list[Any], beam: dict, model: str = "exact", periods: int = 1):
    assert all(isinstance(i, Translated) for i in items), items
    facility: list[dict] = [{i.name: i.fields} for i in items]
    facility += [{"line": {"kind": "BeamLine", "line": [i.name for i in items]}},
                 {"use": "line"}]
    return scenario_from_dict({"name": "bends", "beam": beam, "model": model,
                               "periods": periods,
                               "lattice": {"PALS": {"facility": facility}}}, "bends.yaml")


def _impactx_direct(lattice: list, s, particles: np.ndarray, periods: int = 1) -> np.ndarray:
    """ImpactX's own track of ``lattice`` (the elements as the example builds them, as
    ``(class, arguments)``), ``periods`` times, with the beam of scenario ``s``."""
    from backends.impactx import ElementSpec, ImpactXPrepared

    specs = [ElementSpec(cls, kwargs) for cls, kwargs in lattice] * periods
    with ImpactXPrepared(s, specs) as prepared:
        return prepared.track(particles)


def _built(lattice: list) -> list:
    """The ImpactX elements of ``(class, arguments)``."""
    return [getattr(ix, cls)(**kwargs) for cls, kwargs in lattice]


def _track(s, particles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    assert IMPACTX().supports(s) and INHOUSE().supports(s)
    with IMPACTX().prepare(s) as prepared:
        theirs = prepared.track(particles)
    with INHOUSE().prepare(s, compile=False) as prepared:
        ours = prepared.track(particles)
    return theirs, ours


def _deviation(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / sigma(b) over the particles both keep (the lost ones must agree)."""
    lost = np.isnan(a).any(axis=1)
    assert np.array_equal(lost, np.isnan(b).any(axis=1))
    a, b = a[~lost], b[~lost]
    return float((np.abs(a - b).max(axis=0) / b.std(axis=0)).max())


def test_exact_sbend_by_field_is_an_sbend_over_its_arc() -> None:
    """B != 0 without acceleration: rc = (B rho)/B, angle sign(ds rc)|phi|, stated as a PALS
    SBend with ``bend_field_ref = B`` over the arc sign(ds)|rc phi| (ds = 0.5 m is not
    the arc here: ImpactX's map never uses it), tracked as ImpactX tracks the element."""
    reference = _reference(BEAM)
    field = 0.5
    lattice = [("ExactSbend", dict(name="b", ds=0.5, phi=5.0, B=field)),
               ("ExactDrift", dict(name="d", ds=0.3)),
               ("ExactSbend", dict(name="c", ds=0.2, phi=3.0, B=-2 * field))]
    items, notes = _imported(lattice, BEAM)
    b = items[0].fields
    rc = reference.rigidity_Tm / field
    assert b["kind"] == "SBend" and b["BendP"]["bend_field_ref"] == field
    assert b["length"] == pytest.approx(abs(rc) * math.radians(5.0), rel=1e-15)
    assert any("ExactSbend b" in n and "not used by the map" in n for n in notes), notes
    s = _scenario(items, BEAM)
    # electrons: rc < 0 for B > 0, so the bend turns by -|phi|
    assert s.elements[0].params["angle"] == pytest.approx(-math.radians(5.0), rel=1e-14)
    particles = generate(s.beam, 1000)
    direct = _impactx_direct(lattice, s, particles)
    theirs, ours = _track(s, particles)
    assert _deviation(theirs, direct) <= 1e-11
    assert _deviation(ours, direct) <= 1e-11


def _accelerating_lattice(ez: float = 2.0, phi: float = 10.0, field: float = 0.5) -> list:
    return [("ChrAcc", dict(name="acc", ds=0.5, ez=ez, bz=1.5)),
            ("ExactSbend", dict(name="bend", ds=0.25, phi=phi, B=field)),
            ("ChrAcc", dict(name="acc2", ds=0.5, ez=ez, bz=1.5)),
            ("ExactSbend", dict(name="bend2", ds=0.25, phi=phi, B=field, rotation=3.0))]


def test_exact_sbend_by_field_in_an_accelerating_lattice_is_the_extension_kind() -> None:
    """With ChrAcc in the lattice the rigidity at the bend changes from period to period:
    ``ImpactX.ExactSbend`` keeps ds, phi and B (ImpactX's cyclotron example), and both
    backends take the radius at the bend (3 periods): in-house = ImpactX to 1e-11 sigma,
    t to ChrAcc's stated round-off of ImpactX (``tests/test_extension_kinds.py``)."""
    cyclotron = _accelerating_lattice(1.12188308693e-4, 180.0, 1.0)
    items, _ = _imported(cyclotron, PROTON)
    assert items[1].fields == {"kind": "ImpactX.ExactSbend", "length": 0.25,
                               "ImpactXP": {"phi": pytest.approx(math.pi, rel=1e-15),
                                            "B": 1.0}}
    assert items[3].fields["BodyShiftP"] == {"z_rot": pytest.approx(math.radians(3.0))}
    lattice = _accelerating_lattice()
    items, _ = _imported(lattice, BEAM)
    assert items[1].fields["kind"] == "ImpactX.ExactSbend"
    s = _scenario(items, BEAM, "paraxial", periods=3)
    particles = generate(s.beam, 1000)
    direct = _impactx_direct(lattice, s, particles, periods=3)
    theirs, ours = _track(s, particles)
    deviation = np.abs(ours - theirs).max(axis=0) / theirs.std(axis=0)
    print(f"ImpactX.ExactSbend (3 periods with ChrAcc): |in-house - ImpactX| / sigma = "
          f"{np.array2string(deviation, precision=1)}")
    assert _deviation(theirs, direct) <= 1e-13   # phi through degrees and back
    gamma = 1.0 + 200.0 / 0.51099895 + 6 * 2.0 * 0.5
    bound = np.full(6, 1e-11)
    bound[4] += 6 * 64 * np.finfo(float).eps * gamma / 2.0 / theirs[:, 4].std()
    assert (deviation <= bound).all(), deviation


def test_other_backends_refuse_the_field_bend_by_name() -> None:
    from backends.registry import backend_classes

    items, _ = _imported(_accelerating_lattice(), BEAM)
    s = _scenario(items[1:2], BEAM, "paraxial")
    for name, cls in backend_classes().items():
        if name in ("impactx", "inhouse"):
            continue
        verdict = cls().supports(s)
        assert not verdict and "ImpactX.ExactSbend" in verdict.reason, (name, verdict)


@pytest.mark.parametrize("field", ["B", "phi"])
def test_field_bend_gradient_reverse_forward_and_differences(field: str) -> None:
    """d sigma_x / d field through ``ImpactX.ExactSbend``: reverse mode = forward mode (to
    round-off) = central difference (h = 1e-5 relative) to 1e-6."""
    import torch
    from torch.func import jvp

    from backends.inhouse import BACKEND as INHOUSE

    body = {"kind": "ImpactX.ExactSbend", "length": 0.3,
            "ImpactXP": {"phi": 0.2, "B": 0.8}}
    s = _scenario([Translated("x1", body), Translated("d", {"kind": "Drift",
                                                            "length": 0.5})], BEAM)
    particles = generate(s.beam, 500)
    made = INHOUSE().differentiable_observables(s, [f"x1.{field}"], ["sigma_x"], particles,
                                                "cpu", "float64")
    assert made is not None
    g, theta0 = made
    theta = theta0.clone().requires_grad_(True)
    (reverse,) = torch.autograd.grad(g(theta)["sigma_x"], theta)
    forward = jvp(lambda t: g(t)["sigma_x"], (theta0,), (torch.ones_like(theta0),))[1]
    h = 1e-5 * abs(float(theta0[0]))
    with torch.no_grad():
        fd = (g(theta0 + h)["sigma_x"] - g(theta0 - h)["sigma_x"]) / (2 * h)
    assert float(reverse[0]) != 0.0
    assert abs(float(reverse[0]) - float(forward)) <= 1e-10 * abs(float(forward))
    assert abs(float(reverse[0]) - float(fd)) <= 1e-6 * abs(float(fd)), (reverse, fd)


def test_a_zero_radius_sbend_is_impactx_drift_map() -> None:
    """``Sbend(rc=0)``: every entry of ``Sbend.H`` takes its h = 0 branch, the linear drift;
    stated as ``g_ref = 0``."""
    lattice = [("Sbend", dict(name="z", ds=1.5, rc=0.0)), ("Quad", dict(name="q", ds=0.2, k=2.0))]
    items, notes = _imported(lattice, BEAM)
    assert items[0].fields["BendP"]["g_ref"] == 0.0
    assert any("rc = 0" in n for n in notes)
    s = _scenario(items, BEAM, "linear")
    particles = generate(s.beam, 1000)
    direct = _impactx_direct(lattice, s, particles)
    theirs, ours = _track(s, particles)
    assert _deviation(theirs, direct) <= 1e-13 and _deviation(ours, direct) <= 1e-11


def _edged_bends(roll: float = 0.0, gap: float = 0.0, k2: float = 0.0) -> list:
    rc = 2.0
    return [("Drift", dict(name="d0", ds=0.2)),
            ("DipEdge", dict(name="e1", psi=0.05, rc=rc, g=gap, K2=k2, rotation=roll)),
            ("Sbend", dict(name="b", ds=0.4, rc=rc, rotation=roll)),
            ("DipEdge", dict(name="e2", psi=-0.03, rc=rc, g=gap, K2=k2, rotation=roll)),
            ("Drift", dict(name="d1", ds=0.3))]


def test_rotated_bends_and_edges_are_tilted_sbends() -> None:
    """A bend and its pole faces rotated alike (ImpactX's vertical dogleg) are one SBend
    with ``tilt_ref``; a pole face rotated otherwise stays a thin quadrupole with
    ``z_rot``."""
    lattice = _edged_bends(roll=90.0)
    items, _ = _imported(lattice, BEAM)
    bend_p = items[1].fields["BendP"]
    assert [i.name for i in items] == ["d0", "b", "d1"]
    assert bend_p["tilt_ref"] == pytest.approx(math.pi / 2) and bend_p["e1"] == 0.05
    assert bend_p["e2"] == -0.03
    s = _scenario(items, BEAM, "linear")
    particles = generate(s.beam, 1000)
    direct = _impactx_direct(lattice, s, particles)
    theirs, ours = _track(s, particles)
    assert _deviation(theirs, direct) <= 1e-11 and _deviation(ours, direct) <= 1e-11

    odd = _edged_bends(roll=90.0)
    odd[3] = ("DipEdge", dict(name="e2", psi=-0.03, rc=2.0, g=0.0, K2=0.0, rotation=30.0))
    items, _ = _imported(odd, BEAM)
    assert [i.name for i in items] == ["d0", "b", "e2", "d1"]
    assert items[2].fields["BodyShiftP"] == {"z_rot": pytest.approx(math.radians(30.0))}
    s = _scenario(items, BEAM, "linear")
    direct = _impactx_direct(odd, s, particles)
    theirs, ours = _track(s, particles)
    assert _deviation(theirs, direct) <= 1e-11 and _deviation(ours, direct) <= 1e-11


def test_edge_fringe_term_is_the_bends_edge_int() -> None:
    """Linear DipEdge with g K2 != 0 beside a bend of the same radius (IOTA's edges):
    ``edge_int = g K2 / 2`` on that face; each face takes one edge."""
    lattice = _edged_bends(gap=0.058, k2=0.5)
    items, notes = _imported(lattice, BEAM)
    bend_p = items[1].fields["BendP"]
    assert bend_p["edge_int1"] == bend_p["edge_int2"] == pytest.approx(0.058 * 0.5 / 2)
    assert sum("with edge_int" in n for n in notes) == 2
    s = _scenario(items, BEAM, "linear")
    particles = generate(s.beam, 1000)
    direct = _impactx_direct(lattice, s, particles)
    theirs, ours = _track(s, particles)
    assert _deviation(theirs, direct) <= 1e-11 and _deviation(ours, direct) <= 1e-11


@pytest.mark.parametrize(("lattice", "reason"), [
    ([("DipEdge", dict(name="e", psi=0.1, rc=2.0, g=0.05, model="nonlinear",
                       modify_ref_part=True))], "modify_ref_part"),
    ([("DipEdge", dict(name="e", psi=0.1, rc=0.0, g=0.05))], "rc = 0"),
    ([("ExactSbend", dict(name="b", ds=0.5, phi=0.0, B=0.5))],
     "an ExactSbend with a field B and phi = 0"),
    ([("Sbend", dict(name="b", ds=0.5, rc=2.0, dx=1e-3))], "dx is not translated"),
])
def test_what_the_bend_import_does_not_translate(lattice: list, reason: str) -> None:
    items, _ = _imported(lattice, BEAM)
    assert isinstance(items[0], Untranslatable) and items[0].reason.startswith(reason), \
        items[0]


def _field_bend_scenario(**extra: Any):
    """The field bend (ds = 0.3 m, |phi| 0.2 rad, B 0.8 T: an arc of 0.167 m, not ds)
    between drifts, with ``extra`` scenario settings."""
    facility: list[dict] = [
        {"x1": {"kind": "ImpactX.ExactSbend", "length": 0.3,
                "ImpactXP": {"phi": 0.2, "B": 0.8}, "BodyShiftP": {"z_rot": 0.1}}},
        {"d": {"kind": "Drift", "length": 0.5}},
        {"q": {"kind": "Quadrupole", "length": 0.2, "MagneticMultipoleP": {"Kn1": 2.0}}},
        {"line": {"kind": "BeamLine", "line": ["d", "x1", "q", "d"]}}, {"use": "line"}]
    return scenario_from_dict({"name": "field_bend", "beam": BEAM, "model": "exact",
                               "lattice": {"PALS": {"facility": facility}}} | extra,
                              "bends.yaml")


def test_field_bend_envelope_is_impactx_transport_map() -> None:
    """Envelope tracking: ImpactX's ``transport_map`` of a field bend is the linear Sbend of
    radius (B rho)/B over ds (``ExactSbend.H``); the in-house envelope equals it element by
    element."""
    from backends import impactx_envelope
    from backends.inhouse import envelope as ie

    s = _field_bend_scenario(tracking="envelope")
    sigma = ie.initial_covariance(s)
    ours = ie.track_envelope_elements(s, sigma)
    theirs = impactx_envelope.track_envelope_elements(s, sigma)
    worst = max(float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(b).max())
                for a, b in zip(ours, theirs, strict=True))
    assert worst <= 1e-12


def test_field_bend_sliced_for_space_charge_as_impactx() -> None:
    """3D space charge with 3 kicks per element: each in-house piece bends by |phi| / 3 on
    the same radius, as ImpactX's slices; the codes agree to the space-charge solvers'
    agreement (the same mesh, deposition and kicks)."""
    s = _field_bend_scenario(space_charge={"kind": "gauss3d", "kicks_per_element": 3},
                             beam={**BEAM, "bunch_charge_C": 1e-10})
    particles = generate(s.beam, 1000)
    theirs, ours = _track(s, particles)
    plain = _field_bend_scenario(beam={**BEAM, "bunch_charge_C": 1e-10})
    without, _ = _track(plain, particles)
    effect = np.abs(theirs - without).max(axis=0) / theirs.std(axis=0)
    deviation = np.abs(ours - theirs).max(axis=0) / theirs.std(axis=0)
    assert effect.max() > 1e-6           # the kicks act
    assert deviation.max() <= 1e-3 * effect.max(), (deviation, effect)


def _edges(model: str, location: str = "entry", **extra: Any) -> list:
    """ImpactX's edge-effects example (``edge_effects/run_dipedge.py``: pi/8, rc 10 m, gap
    1 mm) with a stronger face, its fringe integrals set, between drifts."""
    return [("Drift", dict(name="d0", ds=0.2)),
            ("DipEdge", dict(name="edge", psi=math.pi / 8, rc=1.5, g=0.05, R=0.5, K1=0.3,
                             K4=0.2, K5=0.1, K6=0.05, model=model, location=location,
                             **extra)),
            ("Drift", dict(name="d1", ds=0.3))]


@pytest.mark.parametrize(("model", "location"), [("nonlinear", "entry"),
                                                 ("nonlinear", "exit"), ("linear", "entry")])
def test_a_lone_edge_is_the_extension_kind(model: str, location: str) -> None:
    """A pole face that joins no bend, with the nonlinear model or a fringe term g K2, is
    ``ImpactX.DipEdge`` (here shifted and rolled); both backends track it as ImpactX does
    (<= 1e-11 sigma), and the nonlinear model differs from the linear one."""
    lattice = _edges(model, location, dx=2e-4, dy=-1e-4, rotation=10.0)
    items, _ = _imported(lattice, BEAM)
    edge = items[1].fields
    assert edge["kind"] == "ImpactX.DipEdge"
    assert edge["ImpactXP"]["nonlinear"] == (model == "nonlinear")
    assert edge["ImpactXP"]["exit"] == (location == "exit")
    assert edge["BodyShiftP"] == {"x_offset": 2e-4, "y_offset": -1e-4,
                                  "z_rot": pytest.approx(math.radians(10.0))}
    s = _scenario(items, BEAM, "linear")
    particles = generate(s.beam, 1000)
    direct = _impactx_direct(lattice, s, particles)
    theirs, ours = _track(s, particles)
    print(f"ImpactX.DipEdge {model} {location}: max |in-house - ImpactX| / sigma = "
          f"{_deviation(ours, theirs):.2e}")
    assert _deviation(theirs, direct) <= 1e-13
    assert _deviation(ours, direct) <= 1e-11
    if model == "nonlinear":
        linear = _impactx_direct(_edges("linear", location, dx=2e-4, dy=-1e-4,
                                        rotation=10.0), s, particles)
        assert _deviation(linear, direct) > 1e-3


@pytest.mark.parametrize("field", ["psi", "rc", "g", "K0"])
def test_nonlinear_edge_gradient_reverse_forward_and_differences(field: str) -> None:
    """d sigma_x / d field through the nonlinear ``ImpactX.DipEdge``: reverse mode =
    forward mode (to round-off) = central difference (h = 1e-3 relative) to
    1e-6."""
    import torch
    from torch.func import jvp

    from backends.inhouse import BACKEND as INHOUSE

    items, _ = _imported(_edges("nonlinear"), BEAM)
    s = _scenario(items, BEAM, "linear")
    particles = generate(s.beam, 500)
    made = INHOUSE().differentiable_observables(s, [f"edge.{field}"], ["sigma_x"], particles,
                                                "cpu", "float64")
    assert made is not None
    g, theta0 = made
    theta = theta0.clone().requires_grad_(True)
    (reverse,) = torch.autograd.grad(g(theta)["sigma_x"], theta)
    forward = jvp(lambda t: g(t)["sigma_x"], (theta0,), (torch.ones_like(theta0),))[1]
    h = 1e-3 * abs(float(theta0[0]))
    with torch.no_grad():
        fd = (g(theta0 + h)["sigma_x"] - g(theta0 - h)["sigma_x"]) / (2 * h)
    assert float(reverse[0]) != 0.0
    assert abs(float(reverse[0]) - float(forward)) <= 1e-10 * abs(float(forward))
    assert abs(float(reverse[0]) - float(fd)) <= 1e-6 * abs(float(fd)), (reverse, fd)


def test_nonlinear_edge_envelope_is_impactx_transport_map() -> None:
    """ImpactX's envelope pushes a DipEdge of either model with the linear model's matrix
    (``DipEdge.H`` ``transport_map``); so does the in-house envelope."""
    from backends import impactx_envelope
    from backends.inhouse import envelope as ie

    items, _ = _imported(_edges("nonlinear", rotation=10.0), BEAM)
    facility: list[dict] = [{i.name: i.fields} for i in items]
    facility += [{"line": {"kind": "BeamLine", "line": [i.name for i in items]}},
                 {"use": "line"}]
    s = scenario_from_dict({"name": "edges", "beam": BEAM, "model": "linear",
                            "tracking": "envelope",
                            "lattice": {"PALS": {"facility": facility}}}, "bends.yaml")
    sigma = ie.initial_covariance(s)
    ours = ie.track_envelope_elements(s, sigma)
    theirs = impactx_envelope.track_envelope_elements(s, sigma)
    worst = max(float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(b).max())
                for a, b in zip(ours, theirs, strict=True))
    assert worst <= 1e-12


@pytest.mark.parametrize("nslice", [1, 3])
def test_field_bend_spin_equals_impactx(nslice: int) -> None:
    """Spin through ``ImpactX.ExactSbend`` (rolled; ds != the arc): ImpactX's spin push
    of ``ExactSbend.H`` on the field's radius, slice by slice; in-house = ImpactX to 1e-11
    in each spin component (the in-house tracker has no spin push for ChrAcc, so the
    energy stays)."""
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    facility = _field_bend_scenario().lattice["PALS"]["facility"]
    s = scenario_from_dict({"name": "spin_bend", "model": "paraxial", "periods": 2,
                            "integrator": {"nslice": nslice},
                            "beam": {**BEAM, "spin": {"polarization": [0.3, 0.5, 0.6]}},
                            "lattice": {"PALS": {"facility": facility}}}, "bends.yaml")
    particles = generate(s.beam, 500)
    finals = {}
    for backend in (IMPACTX(), INHOUSE()):
        plan = backend.plan(s)
        assert plan, plan
        with backend.prepare_planned(plan) as prepared:
            finals[backend.name] = prepared.track(particles)
    ours, theirs = finals["inhouse"], finals["impactx"]
    spin = float(np.abs(ours[:, 6:] - theirs[:, 6:]).max())
    print(f"ImpactX.ExactSbend spin, nslice {nslice}: max |in-house - ImpactX| = {spin:.1e}")
    assert np.abs(theirs[:, 6:] - particles[:, 6:]).max() > 1e-2    # the spins turned
    assert spin <= 1e-11
