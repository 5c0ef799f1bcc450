"""ImpactX's pipe apertures on thick elements (``aperture_x``, ``aperture_y``) end to end:
the scenario's statement (a PALS ``ApertureP`` with ``location: EVERYWHERE``, ``shape:
ELLIPTICAL`` on the element), ImpactX against the in-house tracker through prepare/track
per kind and tier (the same lost particles, the survivors to round-off), the slices
honoured (a converging beam loses more with more slices, in both codes), the other
backends refusing the fields by name, one-line errors for what cannot be honoured, and the
ImpactX lattice importer."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from backends.registry import backend_classes
from harness.model.errors import ScenarioError
from harness.model.load import scenario_from_dict
from harness.model.particles import generate

#: A converging proton beam (sigma ~ 2 mm at the entrance, a waist downstream).
BEAM = {"species": "proton", "kinetic_energy_MeV": 800.0, "bunch_charge_C": 0.0,
        "distribution": "gaussian",
        "twiss": {"beta_x": 20.0, "alpha_x": 2.0, "emittance_x": 2e-7,
                  "beta_y": 15.0, "alpha_y": 1.5, "emittance_y": 2e-7},
        "longitudinal": {"sigma_t": 1e-4, "sigma_pt": 1e-3}, "particles": 4000}

PIPE = {"x_limits": [-3e-3, 3e-3], "y_limits": [-2.5e-3, 2.5e-3], "shape": "ELLIPTICAL",
        "location": "EVERYWHERE"}
SHIFTED = {"BodyShiftP": {"x_offset": 4e-4, "y_offset": -2e-4, "z_rot": 0.3}}
PIPE_SHIFTED = {**PIPE, "aperture_shifts_with_body": True}

#: name -> (the element with its pipe aperture (PALS), the model tiers to run it at).
CASES: dict[str, tuple[dict, tuple[str, ...]]] = {
    "drift": ({"kind": "Drift", "length": 3.0, "ApertureP": PIPE},
              ("linear", "paraxial", "exact")),
    "drift_shifted": ({"kind": "Drift", "length": 3.0, "ApertureP": PIPE_SHIFTED, **SHIFTED},
                      ("linear", "exact")),
    "quadrupole": ({"kind": "Quadrupole", "length": 0.8, "MagneticMultipoleP": {"Kn1": 1.5},
                    "ApertureP": PIPE}, ("linear", "paraxial", "exact")),
    "quadrupole_skew_shifted": ({"kind": "Quadrupole", "length": 0.8, "MagneticMultipoleP": {
        "Kn1": 1.5, "Ks1": 0.4}, "ApertureP": PIPE_SHIFTED, **SHIFTED}, ("linear", "exact")),
    "sbend": ({"kind": "SBend", "length": 1.5, "BendP": {"g_ref": 0.1, "e1": 0.05, "e2": 0.03},
               "ApertureP": PIPE}, ("linear", "exact")),
    "sbend_combined_tilted": ({"kind": "SBend", "length": 1.5, "BendP": {
        "g_ref": 0.1, "tilt_ref": 0.2}, "MagneticMultipoleP": {"Kn1": 0.6},
        "ApertureP": PIPE}, ("linear", "exact")),
    "solenoid": ({"kind": "Solenoid", "length": 1.2, "SolenoidP": {"Ksol": 0.9},
                  "ApertureP": PIPE_SHIFTED, **SHIFTED}, ("linear",)),
    "sextupole": ({"kind": "Sextupole", "length": 0.5, "MagneticMultipoleP": {"Kn2": 300.0},
                   "ApertureP": PIPE}, ("exact",)),
    "constf": ({"kind": "ImpactX.ConstF", "length": 1.0, "ImpactXP": {
        "kx": 1.3, "ky": -0.8, "kt": 0.9}, "ApertureP": PIPE}, ("linear",)),
    "chr_plasma_lens": ({"kind": "ImpactX.ChrPlasmaLens", "length": 0.6, "ImpactXP": {
        "k": 3.0}, "ApertureP": PIPE_SHIFTED, **SHIFTED}, ("linear",)),
    "chr_acc": ({"kind": "ImpactX.ChrAcc", "length": 1.0, "ImpactXP": {"ez": 0.2, "bz": 0.5},
                 "ApertureP": PIPE}, ("linear",)),
}

#: Slices per element in the comparisons (the aperture is checked after each).
NSLICE = 4


def scenario(body: dict, model: str = "linear", nslice: int = NSLICE):
    facility = [{"d1": {"kind": "Drift", "length": 0.4}}, {"e": copy.deepcopy(body)},
                {"q1": {"kind": "Quadrupole", "length": 0.2,
                        "MagneticMultipoleP": {"Kn1": 2.0}}},
                {"line": {"kind": "BeamLine", "line": ["d1", "e", "q1"]}},
                {"use": "line"}]
    return scenario_from_dict({"name": "pipes", "beam": BEAM, "model": model,
                               "integrator": {"nslice": nslice},
                               "lattice": {"PALS": {"facility": facility}}}, "pipe.yaml")


def _track(s, backend: str, particles: np.ndarray) -> np.ndarray:
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    if backend == "impactx":
        with IMPACTX().prepare(s) as prepared:
            return prepared.track(particles)
    with INHOUSE().prepare(s, compile=False) as prepared:
        return prepared.track(particles)


def test_the_reader_gives_the_half_axes_as_element_fields() -> None:
    (_, drift, _) = scenario(CASES["drift_shifted"][0]).elements
    assert drift.params == {"length": 3.0, "x_offset": 4e-4, "y_offset": -2e-4, "z_rot": 0.3,
                            "aperture_x": 3e-3, "aperture_y": 2.5e-3}
    (_, lens, _) = scenario(CASES["constf"][0]).elements
    assert lens.params["aperture_x"] == 3e-3 and lens.params["aperture_y"] == 2.5e-3
    inactive = {"kind": "Drift", "length": 1.0, "ApertureP": {**PIPE, "aperture_active": False}}
    (_, drift, _) = scenario(inactive).elements
    assert drift.params == {"length": 1.0}


def test_impactx_gets_the_aperture_on_the_body_only() -> None:
    from backends.impactx import translate

    s = scenario(CASES["sbend"][0])
    edge1, body, edge2 = translate(s.elements[1], s.reference_particle)
    assert body.cls == "Sbend" and body.kwargs["nslice"] == NSLICE
    assert body.kwargs["aperture_x"] == 3e-3 and body.kwargs["aperture_y"] == 2.5e-3
    assert "aperture_x" not in edge1.kwargs and "aperture_x" not in edge2.kwargs


_RUNS = [(case, model) for case, (_, models) in sorted(CASES.items()) for model in models]


@pytest.mark.parametrize(("case", "model"), _RUNS, ids=[f"{c}-{m}" for c, m in _RUNS])
def test_inhouse_loses_the_same_particles_as_impactx(case: str, model: str) -> None:
    """The same particles lost (all-NaN rows in both), the survivors equal to <= 1e-11
    sigma (float64, 4000 particles, 4 slices each checked)."""
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(CASES[case][0], model)
    particles = generate(s.beam, 4000)
    assert IMPACTX().supports(s) and INHOUSE().supports(s)
    theirs = _track(s, "impactx", particles)
    ours = _track(s, "inhouse", particles)
    lost_theirs = np.isnan(theirs).all(axis=1)
    lost_ours = np.isnan(ours).all(axis=1)
    assert np.array_equal(lost_theirs, lost_ours), (lost_theirs.sum(), lost_ours.sum())
    assert 0 < lost_theirs.sum() < len(particles)
    kept = ~lost_theirs
    assert np.isfinite(theirs[kept]).all() and np.isfinite(ours[kept]).all()
    deviation = np.abs(ours[kept] - theirs[kept]).max(axis=0) / theirs[kept].std(axis=0)
    print(f"{case} ({model}): {lost_theirs.sum()} of {len(particles)} lost in both; max "
          f"|in-house - ImpactX| / sigma = {deviation.max():.2e}")
    bound = 1e-11
    if case == "sbend_combined_tilted" and model == "exact":
        # ExactCFbend's symplectic integrator: the two codes differ by ~1e-10 sigma on
        # this element without any aperture (round-off of 40 integrator steps); the
        # aperture must add nothing to that
        body = {k: v for k, v in CASES[case][0].items() if k != "ApertureP"}
        bare = scenario(body, model)
        a, b = _track(bare, "impactx", particles), _track(bare, "inhouse", particles)
        bound = max(bound, 2.0 * float((np.abs(b - a).max(axis=0) / a.std(axis=0)).max()))
    assert deviation.max() <= bound, deviation


def test_each_slice_exit_is_checked_in_both_codes() -> None:
    """A converging beam in a drift: particles outside the pipe at the entrance that come
    inside by the exit are lost at the first slice exits, so 8 slices lose more than one;
    ImpactX and the in-house tracker lose the same ones either way."""
    pytest.importorskip("impactx")
    lost = {}
    for nslice in (1, 8):
        s = scenario(CASES["drift"][0], "linear", nslice)
        particles = generate(s.beam, 4000)
        theirs = np.isnan(_track(s, "impactx", particles)).all(axis=1)
        ours = np.isnan(_track(s, "inhouse", particles)).all(axis=1)
        assert np.array_equal(theirs, ours)
        lost[nslice] = int(theirs.sum())
    print(f"drift lost with 1 slice: {lost[1]}, with 8 slices: {lost[8]}")
    assert lost[8] > lost[1] > 0


def test_with_space_charge_each_half_slice_checks_the_aperture() -> None:
    """ImpactX 26.10's Strang split pushes each slice as two half-slices, and each push
    checks the pipe aperture: with a negligible charge and ``kicks_per_element`` k, ImpactX
    loses the particles it loses with 2k slices and no space charge; the in-house
    space-charge tracker's half-slice pieces lose the same ones."""
    pytest.importorskip("impactx")
    beam = {**BEAM, "bunch_charge_C": 1e-15}
    facility = [{"e": copy.deepcopy(CASES["drift"][0])},
                {"line": {"kind": "BeamLine", "line": ["e"]}}, {"use": "line"}]
    for kicks in (1, 2):
        s = scenario_from_dict({
            "name": "sc", "beam": beam, "model": "linear", "lattice": {"PALS": {
                "facility": facility}}, "space_charge": {
                "kind": "3d", "grid": [16, 16, 16], "kicks_per_element": kicks,
                "deposition": "cic"}}, "sc.yaml")
        plain = scenario_from_dict({
            "name": "plain", "beam": BEAM, "model": "linear",
            "integrator": {"nslice": 2 * kicks},
            "lattice": {"PALS": {"facility": facility}}}, "plain.yaml")
        particles = generate(s.beam, 4000)
        theirs = np.isnan(_track(s, "impactx", particles)).all(axis=1)
        ours = np.isnan(_track(s, "inhouse", particles)).all(axis=1)
        halves = np.isnan(_track(plain, "impactx", particles)).all(axis=1)
        print(f"space charge, {kicks} kick(s): {theirs.sum()} lost in ImpactX, "
              f"{ours.sum()} in-house, {halves.sum()} with {2 * kicks} slices")
        assert np.array_equal(theirs, ours)
        assert np.array_equal(theirs, halves)


@pytest.mark.parametrize("case", ["drift_shifted", "quadrupole", "sbend", "solenoid", "constf"])
def test_other_backends_refuse_the_pipe_aperture_by_name(case: str) -> None:
    """Where a backend runs the element without its pipe aperture, it refuses the one with
    it naming ``aperture_x``; where it refuses the element anyway, it still refuses."""
    body, models = CASES[case]
    s = scenario(body, models[-1])
    bare = scenario({k: v for k, v in body.items() if k != "ApertureP"}, models[-1])
    named = 0
    for name, cls in backend_classes().items():
        if name in ("impactx", "inhouse"):
            continue
        verdict = cls().supports(s)
        assert not verdict, name
        if cls().supports(bare):
            assert "'aperture_x'" in verdict.reason, (name, verdict.reason)
            named += 1
    print(f"{case}: {named} backends run it without the aperture and refuse it with one")


def test_the_inhouse_tracker_refuses_what_it_cannot_cut() -> None:
    from backends.inhouse import BACKEND as INHOUSE

    soft = {"kind": "ImpactX.SoftQuadrupole", "length": 1.0, "ImpactXP": {
        "gscale": 1.0, "cos_coefficients": [2.0]}, "ApertureP": PIPE}
    verdict = INHOUSE().supports(scenario(soft, nslice=2))
    assert not verdict and "pipe aperture and nslice 2" in verdict.reason
    assert INHOUSE().supports(scenario(soft, nslice=1))


_DRIFT = {"kind": "Drift", "length": 1.0}

BAD = [
    ({**_DRIFT, "ApertureP": {**PIPE, "location": "ENTRANCE_END"}},
     r"e\.ApertureP\.location: expected EVERYWHERE on a thick element"),
    ({**_DRIFT, "ApertureP": {k: v for k, v in PIPE.items() if k != "location"}},
     r"e\.ApertureP\.location: expected EVERYWHERE"),
    ({**_DRIFT, "ApertureP": {**PIPE, "shape": "RECTANGULAR"}},
     r"e\.ApertureP\.shape: expected ELLIPTICAL on a thick element"),
    ({**_DRIFT, "ApertureP": {**PIPE, "x_limits": [-1e-3, 2e-3]}},
     r"e\.ApertureP\.x_limits: expected symmetric limits"),
    ({**_DRIFT, "ApertureP": {**PIPE, "y_limits": [None, None]}},
     r"e\.ApertureP\.y_limits: expected both limits"),
    ({**_DRIFT, "ApertureP": {**PIPE, "material": "Cu"}},
     r"e\.ApertureP\.material: expected not set"),
    ({**_DRIFT, "ApertureP": PIPE, **SHIFTED},
     r"e\.ApertureP\.aperture_shifts_with_body: expected true on a shifted"),
    ({"kind": "Multipole", "MagneticMultipoleP": {"Kn1L": 0.1}, "ApertureP": PIPE},
     r"e\.ApertureP: expected no aperture on a Multipole"),
    ({"kind": "ImpactX.Buncher", "ImpactXP": {"V": 0.01, "k": 15.0}, "ApertureP": PIPE},
     r"e\.ApertureP: expected one of the fields of ImpactX\.Buncher"),
    ({"kind": "ImpactX.ConstF", "length": 1.0, "ImpactXP": {"kx": 1.0, "ky": 1.0, "kt": 0.5},
      "ApertureP": {**PIPE, "location": "CENTER"}},
     r"e\.ApertureP\.location: expected EVERYWHERE"),
    ({"kind": "ImpactX.ConstF", "length": 1.0, "ImpactXP": {"kx": 1.0, "ky": 1.0, "kt": 0.5},
      "ApertureP": {**PIPE, "radius": 1.0}},
     r"e\.ApertureP\.radius: expected one of the fields of ApertureP"),
]


@pytest.mark.parametrize(("body", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_what_cannot_be_honoured_is_one_line_naming_the_field(body: dict, message: str
                                                              ) -> None:
    with pytest.raises(ScenarioError, match=message) as caught:
        scenario(body)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("pipe.yaml: ")


def test_an_impactx_lattice_imports_the_pipe_apertures() -> None:
    """ImpactX elements with ``aperture_x``, ``aperture_y`` import as the scenario's form
    and read back to the same ImpactX elements (same arguments)."""
    pytest.importorskip("impactx")
    from impactx import elements as ix

    from backends.impactx import translate
    from harness.io.impactx_lattice import import_impactx
    from harness.io.model import Translated

    s = scenario(CASES["drift"][0])
    lattice = [ix.Drift(name="d", ds=0.123, aperture_x=1e-3, aperture_y=1.5e-3, nslice=3),
               ix.Quad(name="q", ds=0.3, k=2.0, dx=1e-4, rotation=10.0, aperture_x=2e-3,
                       aperture_y=1e-3),
               ix.Sol(name="s", ds=0.5, ks=0.7, aperture_x=2e-3, aperture_y=3e-3),
               ix.ConstF(name="c", ds=0.5, kx=1.0, ky=1.0, kt=0.5, aperture_x=2e-3,
                         aperture_y=3e-3)]
    result = import_impactx(lattice, s.reference_particle)
    assert all(isinstance(item, Translated) for item in result.items), result.items
    facility: list[dict[str, Any]] = [{item.name: item.fields} for item in result.items
                                      if isinstance(item, Translated)]
    facility += [{"line": {"kind": "BeamLine", "line": ["d", "q", "s", "c"]}},
                 {"use": "line"}]
    loaded = scenario_from_dict({"name": "imported", "beam": BEAM,
                                 "lattice": {"PALS": {"facility": facility}}}, "imp.yaml")
    for element, original in zip(loaded.elements, lattice, strict=True):
        (spec,) = translate(element, loaded.reference_particle, original.nslice)
        built = spec.build(ix).to_dict()
        for key, value in original.to_dict().items():
            if isinstance(value, float):
                assert built[key] == pytest.approx(value, rel=1e-14), key
            else:
                assert built[key] == value, key
    one_sided = import_impactx([ix.Drift(name="d", ds=1.0, aperture_x=1e-3)],
                               s.reference_particle)
    (item,) = one_sided.items
    assert isinstance(item, Translated) and "ApertureP" not in item.fields
    assert any("aperture_y" in note for note in one_sided.notes)


@pytest.mark.parametrize(("case", "field"), [("quadrupole", "Kn1"), ("sbend", "angle"),
                                             ("drift", "length")])
def test_ad_gradient_through_the_slices_equals_finite_differences(case: str, field: str
                                                                  ) -> None:
    """The slices pass each parameter's share on (length and angle divided by nslice),
    so reverse-mode AD through the sliced element equals central finite differences; the
    mask is piecewise constant and no particle crosses the pipe within the step."""
    import torch

    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(CASES[case][0], "linear")
    particles = generate(s.beam, 1000)
    names = ["sigma_x", "sigma_y"]
    made = INHOUSE().differentiable_observables(s, [f"e.{field}"], names, particles, "cpu",
                                                "float64")
    assert made is not None
    g, theta0 = made
    theta = theta0.clone().requires_grad_(True)
    values = g(theta)
    checked = 0
    for name in names:
        (ad,) = torch.autograd.grad(values[name], theta, retain_graph=True)
        h = 1e-7 * abs(float(theta0[0]))
        with torch.no_grad():
            fd = (g(theta0 + h)[name] - g(theta0 - h)[name]) / (2 * h)
        if abs(float(fd)) < 1e-9:        # e.g. sigma_y does not depend on a bend's angle
            assert abs(float(ad[0])) < 1e-9, (name, ad, fd)
            continue
        assert abs(float(ad[0]) - float(fd)) <= 1e-5 * abs(float(fd)), (name, ad, fd)
        checked += 1
    assert checked


def test_exported_pals_keeps_the_pipe_aperture(tmp_path) -> None:
    """``trackbench export`` writes the ApertureP on the element; reading it back gives the
    same element fields."""
    from harness.io.pals_file import export_pals, read_pals, write_pals

    s = scenario(CASES["quadrupole_skew_shifted"][0])
    document = read_pals(write_pals(export_pals(s), tmp_path / "lattice.pals.yaml"))
    (body,) = [next(iter(e.values())) for e in document["PALS"]["facility"] if "e" in e]
    assert body["ApertureP"]["location"] == "EVERYWHERE"
    again = scenario_from_dict({"name": "again", "beam": BEAM,
                                "lattice": copy.deepcopy(document)}, "again.yaml")
    assert again.elements[1].params == s.elements[1].params
