"""The extension kinds (``ImpactX.<X>``, ImpactX's elements PALS does not have) end to
end: a small PALS scenario per kind through prepare/track, ImpactX against the in-house
tracker particle by particle (float64, <= 1e-11 sigma, ChrAcc with ImpactX's stated
round-off), every other backend refusing the kind by name with the reason, the bounds of
their fields, and their survival in an exported PALS file."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from backends.registry import backend_classes
from harness.model.errors import ScenarioError
from harness.model.kinds import EXTENSION_GROUP, EXTENSION_KINDS, POLYGON_APERTURE
from harness.model.load import scenario_from_dict
from harness.model.particles import generate
from harness.model.vocabulary import ELEMENT_FIELDS

BEAM = {"species": "electron", "kinetic_energy_MeV": 200.0, "bunch_charge_C": 0.0,
        "distribution": "gaussian",
        "twiss": {"beta_x": 10.0, "alpha_x": -0.5, "emittance_x": 1e-8,
                  "beta_y": 8.0, "alpha_y": 0.3, "emittance_y": 1e-8},
        "longitudinal": {"sigma_t": 1e-4, "sigma_pt": 1e-3}, "particles": 2000}

#: A coupled symplectic matrix: exp(J S) of a fixed symmetric S (to round-off).
def _symplectic_rows() -> list[list[float]]:
    from scipy.linalg import expm

    j = np.zeros((6, 6))
    for i in range(3):
        j[2 * i, 2 * i + 1], j[2 * i + 1, 2 * i] = 1.0, -1.0
    rng = np.random.default_rng(3)
    a = 0.2 * rng.standard_normal((6, 6))
    return expm(j @ (a + a.T)).tolist()


SHIFT = {"x_offset": 2e-4, "y_offset": -1e-4, "z_rot": 0.2}

#: kind -> (the element's own fields, length, alignment) of one scenario.
CASES: dict[str, tuple[dict, float, dict]] = {
    "ImpactX.ConstF": ({"kx": 1.3, "ky": -0.8, "kt": 0.9}, 0.5, SHIFT),
    "ImpactX.ChrAcc": ({"ez": 2.0, "bz": 1.5}, 0.5, SHIFT),
    "ImpactX.ChrPlasmaLens": ({"k": 3.0}, 0.3, SHIFT),
    "ImpactX.TaperedPL": ({"kL": 0.5, "taper": 300.0}, 0.0, SHIFT),
    "ImpactX.NonlinearLens": ({"knll": 4e-6, "cnll": 0.01}, 0.0, SHIFT),
    "ImpactX.ThinDipole": ({"angle": 0.00785, "rc": 1.0}, 0.0, SHIFT),
    "ImpactX.ExactSbend": ({"phi": 0.1, "B": 0.5}, 0.5, SHIFT),
    "ImpactX.DipEdge": ({"psi": 0.3, "rc": 1.5, "g": 0.05, "R": 0.5, "K0": 1.6449340668482264,
                         "K1": 0.3, "K2": 1.0, "K3": 0.16666666666666666, "K4": 0.2,
                         "K5": 0.1, "K6": 0.05, "nonlinear": 1, "exit": 0}, 0.0, SHIFT),
    "ImpactX.Buncher": ({"V": 0.01, "k": 15.0}, 0.0, SHIFT),
    "ImpactX.LinearMap": ({"R": "symplectic"}, 0.3, SHIFT),
    "ImpactX.PRot": ({"phi_in": 0.05, "phi_out": 0.13}, 0.0, {}),
    "ImpactX.PlaneXYRot": ({"angle": 0.3}, 0.0, {}),
    "ImpactX.SoftQuadrupole": ({"gscale": 2.5, "cos_coefficients": [0.83, 0.6, 0.14, -0.12],
                                "sin_coefficients": [0.0, 0.03, -0.01, 0.02]}, 1.2, SHIFT),
    "ImpactX.SoftSolenoid": ({"bscale": 2.5, "cos_coefficients": [0.83, 0.6, 0.14, -0.12]},
                             1.2, SHIFT),
    "ImpactX.ExactMultipole": ({"k_normal": [1e-4, 1.0, -20.0], "k_skew": [0.0, 0.5, 0.0]},
                               0.5, SHIFT),
    "ImpactX.QuadEdge": ({"k": -60.0, "flag": "exit"}, 0.0, SHIFT),
    "ImpactX.SpinMap": ({"v": [0.0, 2.2, 0.0], "A": [[0.0, 0.0, 0.0, 1.6, 0.0, 0.0],
                                                     [0.2, 0.1, 0.0, 0.0, 0.0, 0.1],
                                                     [0.0, 0.0, 0.0, -0.8, 0.0, 0.0]]},
                        0.0, {}),
    "ImpactX.RFCavity": ({"escale": 0.5, "freq": 1.3e9, "phase": 1.2,
                          "cos_coefficients": [0.6, 0.5, -0.2, 0.05],
                          "sin_coefficients": [0.0, 0.1, -0.03, 0.0]}, 0.8, SHIFT),
}


def element(kind: str, own: dict | None = None, length: float | None = None,
            shift: dict | None = None) -> dict:
    default_own, default_length, default_shift = CASES[kind]
    own = dict(default_own if own is None else own)
    if own.get("R") == "symplectic":
        own["R"] = _symplectic_rows()
    body: dict = {"kind": kind, EXTENSION_GROUP: own}
    length = default_length if length is None else length
    if length:
        body["length"] = length
    shift = default_shift if shift is None else shift
    if shift:
        body["BodyShiftP"] = dict(shift)
    return body


def scenario(body: dict, model: str = "linear"):
    facility = [{"d1": {"kind": "Drift", "length": 0.4}}, {"x1": body},
                {"q1": {"kind": "Quadrupole", "length": 0.2,
                        "MagneticMultipoleP": {"Kn1": 2.0}}},
                {"d2": {"kind": "Drift", "length": 0.7}},
                {"line": {"kind": "BeamLine", "line": ["d1", "x1", "q1", "d2"]}},
                {"use": "line"}]
    return scenario_from_dict({
        "name": "extension", "beam": BEAM, "model": model,
        "lattice": {"PALS": {"facility": facility}},
        "observables": ["sigma_x", "sigma_y", "sigma_t"]}, "ext.yaml")


def _track(kind: str, body: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(body or element(kind))
    particles = generate(s.beam, 2000)
    assert IMPACTX().supports(s) and INHOUSE().supports(s)
    with IMPACTX().prepare(s) as prepared:
        theirs = prepared.track(particles)
    with INHOUSE().prepare(s, compile=False) as prepared:
        ours = prepared.track(particles)
    return particles, theirs, ours


@pytest.mark.parametrize("kind", sorted(CASES))
def test_inhouse_equals_impactx_through_prepare_and_track(kind: str) -> None:
    """float64, the same 2000 particles: max |in-house - ImpactX| / sigma <= 1e-11 (ChrAcc:
    plus ImpactX's own round-off in t, ~eps gamma / |ez|, docs/new-kinds-a.md)."""
    pytest.importorskip("impactx")
    particles, theirs, ours = _track(kind)
    assert np.isfinite(theirs).all() and np.isfinite(ours).all()
    sigma = theirs.std(axis=0)
    deviation = np.abs(ours - theirs).max(axis=0) / sigma
    print(f"{kind}: max |in-house - ImpactX| / sigma = {deviation.max():.2e} "
          f"(per coordinate {np.array2string(deviation, precision=1)})")
    bound = np.full(6, 1e-11)
    if kind == "ImpactX.ChrAcc":
        gamma = 1.0 + 200.0 / 0.51099895 + 2.0 * 0.5
        bound[4] = 1e-11 + 64 * np.finfo(float).eps * gamma / 2.0 / (sigma[4] / 1.0)
    assert (deviation <= bound).all()


def test_chr_plasma_lens_defocusing_reproduces_impactx_t() -> None:
    """k < 0: the in-house map runs ImpactX's (non-symplectic) t update by default, so the
    codes agree to round-off in t too."""
    pytest.importorskip("impactx")
    _, theirs, ours = _track("ImpactX.ChrPlasmaLens",
                             element("ImpactX.ChrPlasmaLens", {"k": -2.0}))
    deviation = np.abs(ours - theirs).max(axis=0) / theirs.std(axis=0)
    assert deviation.max() <= 1e-11, deviation


def test_nslice_reaches_chr_acc_in_both_codes() -> None:
    """ChrAcc is not additive (the reference energy changes in every slice): ``nslice``
    reaches ImpactX's element and the in-house kernel, and they agree."""
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.impactx import translate
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario_from_dict({**_raw(element("ImpactX.ChrAcc")),
                            "integrator": {"nslice": 3}}, "ext.yaml")
    (spec,) = translate(s.elements[0], s.reference_particle)
    assert spec.cls == "ChrAcc" and spec.kwargs["nslice"] == 3
    particles = generate(s.beam, 1000)
    with IMPACTX().prepare(s) as prepared:
        theirs = prepared.track(particles)
    with INHOUSE().prepare(s, compile=False) as prepared:
        ours = prepared.track(particles)
    deviation = np.abs(ours - theirs).max(axis=0) / theirs.std(axis=0)
    assert deviation[:4].max() <= 1e-11 and deviation[5] <= 1e-11, deviation
    assert deviation[4] <= 1e-9, deviation     # ImpactX's t round-off (docs/new-kinds-a.md)


def _raw(body: dict) -> dict:
    facility = [{"x1": body}, {"line": {"kind": "BeamLine", "line": ["x1"]}}, {"use": "line"}]
    return {"name": "extension", "beam": BEAM, "lattice": {"PALS": {"facility": facility}}}


#: Extension kinds another code models with the same map (measured below).
XSUITE_KINDS = ("ImpactX.NonlinearLens", "ImpactX.ThinDipole", "ImpactX.PlaneXYRot")


@pytest.mark.parametrize("kind", sorted(CASES))
def test_other_backends_refuse_the_kind_by_name_with_the_reason(kind: str) -> None:
    s = scenario(element(kind))
    for name, cls in backend_classes().items():
        if name in ("impactx", "inhouse") or (name == "xsuite" and kind in XSUITE_KINDS):
            assert kind in cls.element_kinds
            continue
        verdict = cls().supports(s)
        assert not verdict, name
        assert kind in verdict.reason and "ImpactX's own element" in verdict.reason, \
            (name, verdict.reason)


@pytest.mark.slow
@pytest.mark.parametrize("kind", XSUITE_KINDS)
def test_xsuite_equals_impactx_on_the_kinds_it_models(kind: str) -> None:
    """Xsuite's NonLinearLens, Multipole with hxl and SRotation are ImpactX's maps: the same
    particles to <= 1e-11 sigma (800 MeV protons, model linear; a shifted element is
    refused by name, Xsuite's adapter does not map ImpactX's alignment)."""
    pytest.importorskip("impactx")
    pytest.importorskip("xtrack")
    from backends.impactx import BACKEND as IMPACTX
    from backends.xsuite import BACKEND as XSUITE

    if "x_offset" in ELEMENT_FIELDS[kind]:
        verdict = XSUITE().supports(scenario(element(kind, shift=SHIFT)))
        assert not verdict and "'x_offset'" in verdict.reason
    s = scenario_from_dict({**_raw(element(kind, shift={})),
                            "beam": {**BEAM, "species": "proton",
                                     "kinetic_energy_MeV": 800.0}}, "ext.yaml")
    verdict = XSUITE().supports(s)
    assert verdict, verdict
    particles = generate(s.beam, 1000)
    with IMPACTX().prepare(s) as prepared:
        theirs = prepared.track(particles)
    with XSUITE().prepare(s) as prepared:
        ours = prepared.track(particles)
    deviation = np.abs(ours - theirs).max(axis=0) / theirs.std(axis=0)
    print(f"{kind}: max |Xsuite - ImpactX| / sigma = {deviation.max():.2e}")
    assert deviation.max() <= 1e-11, deviation


def test_every_extension_kind_has_a_case() -> None:
    """(``ImpactX.PolygonAperture`` loses particles: tests/test_aperture_options.py.)"""
    assert set(CASES) == EXTENSION_KINDS - {POLYGON_APERTURE}


BAD = [
    (element("ImpactX.ConstF", {"kx": 1.0, "ky": 1.0, "kt": -0.1}),
     r"lattice\.x1\.ImpactXP\.kt: expected 0 <= x <= 100000 \[1/m\]"),
    (element("ImpactX.ChrAcc", {"ez": 2e6, "bz": 1.0}),
     r"ImpactXP\.ez: expected -1e\+06 <= x <= 1e\+06"),
    (element("ImpactX.NonlinearLens", {"knll": 1e-6, "cnll": 0.0}),
     r"ImpactXP\.cnll: expected 0 < x <= 10"),
    (element("ImpactX.ThinDipole", {"angle": 0.01, "rc": 0.0}),
     r"ImpactXP\.rc: expected .*x != 0"),
    (element("ImpactX.ExactSbend", {"phi": 0.1, "B": 0.0}),
     r"ImpactXP\.B: expected .*x != 0"),
    (element("ImpactX.PRot", {"phi_in": 1.6, "phi_out": 0.0}),
     r"ImpactXP\.phi_in: expected -pi/2 < x < pi/2"),
    (element("ImpactX.PRot", {"phi_in": 0.0, "phi_out": -1.6}),
     r"ImpactXP\.phi_out: expected -pi/2 < x < pi/2"),
    (element("ImpactX.LinearMap", {"R": [[1.0] * 6] * 5}),
     r"ImpactXP\.R: expected a 6x6 matrix"),
    (element("ImpactX.LinearMap", {"R": [[1.0] * 6] * 5 + [[1.0] * 5 + ["a"]]}),
     r"ImpactXP\.R\[5\]\[5\]: expected a number"),
    (element("ImpactX.LinearMap", {}), r"ImpactXP\.R: expected this required field"),
    (element("ImpactX.ConstF", {"kx": 1.0, "ky": 1.0}),
     r"ImpactXP\.kt: expected this required field of ImpactX\.ConstF"),
    (element("ImpactX.ConstF", {"kx": 1.0, "ky": 1.0, "kt": 1.0, "aperture_x": 1e-3}),
     r"ImpactXP\.aperture_x: expected one of the fields of ImpactX\.ConstF"),
    (element("ImpactX.ConstF", length=0.0),
     r"x1\.length: expected a positive length for a ImpactX\.ConstF"),
    (element("ImpactX.Buncher", length=0.2),
     r"x1\.length: expected 0 \(ImpactX\.Buncher is a thin"),
    ({**element("ImpactX.PRot"), "BodyShiftP": {"x_offset": 1e-3}},
     r"x1\.BodyShiftP: expected one of the fields of ImpactX\.PRot"),
    (element("ImpactX.ConstF", shift={"y_rot": 0.1}),
     r"BodyShiftP\.y_rot: expected x_offset, y_offset or z_rot \(no backend models a yawed"),
    ({"kind": "ImpactX.Quad", "length": 0.1},
     r"x1\.kind: expected a PALS kind or one of the extension kinds"),
    ({**element("ImpactX.ConstF"), "MagneticMultipoleP": {"Kn1": 1.0}},
     r"x1\.MagneticMultipoleP: expected one of the fields of ImpactX\.ConstF"),
]


@pytest.mark.parametrize(("body", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_extension_input_is_one_line_naming_the_field(body: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as caught:
        scenario(body)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("ext.yaml: ")


def test_exported_pals_keeps_the_extension_kind(tmp_path) -> None:
    from harness.io.pals_file import export_pals, read_pals, write_pals

    s = scenario(element("ImpactX.ConstF"))
    out = write_pals(export_pals(s), tmp_path / "lattice.pals.yaml")
    document = read_pals(out)
    (body,) = [next(iter(e.values())) for e in document["PALS"]["facility"]
               if "x1" in e]
    assert body["kind"] == "ImpactX.ConstF" and body[EXTENSION_GROUP]["kt"] == 0.9
    again = scenario_from_dict({"name": "again", "beam": BEAM,
                                "lattice": copy.deepcopy(document)}, "again.yaml")
    assert again.elements[1].params == s.elements[1].params


def test_an_impactx_lattice_imports_as_extension_kinds() -> None:
    """ImpactX elements PALS has no kind for import as ``ImpactX.<class>`` with the same
    parameters (angles to rad, the plasma lens's unit 1 divided by the rigidity where the
    reference energy stays)."""
    pytest.importorskip("impactx")
    from impactx import Map6x6
    from impactx import elements as ix

    from harness.io.impactx_lattice import import_impactx
    from harness.io.model import Translated

    s = scenario(element("ImpactX.ConstF"))
    rigidity = s.reference_particle.rigidity_Tm
    matrix = Map6x6.identity()
    matrix[1, 2] = 0.3
    lattice = [ix.ConstF(ds=0.5, kx=1.3, ky=-0.8, kt=0.9, dx=2e-4, rotation=10.0),
               ix.ChrAcc(ds=0.5, ez=2.0, bz=1.5),
               ix.ChrPlasmaLens(ds=0.3, k=3.0, unit=0),
               ix.TaperedPL(k=0.5, taper=300.0, unit=0),
               ix.NonlinearLens(knll=4e-6, cnll=0.01), ix.ThinDipole(theta=0.45, rc=1.0),
               ix.Buncher(V=0.01, k=15.0), ix.LinearMap(R=matrix, ds=0.3),
               ix.PRot(phi_in=3.0, phi_out=7.5), ix.PlaneXYRot(angle=17.0)]
    result = import_impactx(lattice, s.reference_particle)
    items = [item for item in result.items]
    assert all(isinstance(item, Translated) for item in items), items
    kinds = [item.fields["kind"] for item in items]
    assert kinds == [f"ImpactX.{type(e).__name__}" for e in lattice]
    facility = [{f"e{i}": item.fields} for i, item in enumerate(items)]
    facility += [{"line": {"kind": "BeamLine", "line": [f"e{i}" for i in range(len(items))]}},
                 {"use": "line"}]
    loaded = scenario_from_dict({"name": "imported", "beam": BEAM,
                                 "lattice": {"PALS": {"facility": facility}}}, "imp.yaml")
    params = [e.params for e in loaded.elements]
    assert params[0] == {"length": 0.5, "kx": 1.3, "ky": -0.8, "kt": 0.9, "x_offset": 2e-4,
                         "z_rot": pytest.approx(np.radians(10.0))}
    assert params[2]["k"] == pytest.approx(3.0, rel=1e-15)
    assert params[5]["angle"] == pytest.approx(np.radians(0.45), rel=1e-15)
    assert params[7]["R12"] == 0.3 and params[7]["R11"] == 1.0 and params[7]["length"] == 0.3
    assert params[8] == {"length": 0.0, "phi_in": pytest.approx(np.radians(3.0)),
                         "phi_out": pytest.approx(np.radians(7.5))}
    assert not [n for n in result.notes if "mixes" in n], result.notes
    # the lens's field (unit 1) is divided by the beam's rigidity: exact where the reference
    # energy stays; after the ChrAcc above ImpactX divides by the local one, which only a
    # quadrupole's field carries, so there the lens is refused by name
    alone = import_impactx([ix.ChrPlasmaLens(ds=0.3, k=3.0 * rigidity, unit=1)],
                           s.reference_particle)
    assert alone.items[0].fields["ImpactXP"]["k"] == pytest.approx(3.0, rel=1e-15)


#: One parameter per kind for the derivative check (element x1).
AD_FIELDS = [("ImpactX.ConstF", "kx"), ("ImpactX.ChrAcc", "ez"),
             ("ImpactX.ChrPlasmaLens", "k"), ("ImpactX.TaperedPL", "taper"),
             ("ImpactX.NonlinearLens", "knll"), ("ImpactX.ThinDipole", "rc"),
             ("ImpactX.Buncher", "V"), ("ImpactX.LinearMap", "R12"),
             ("ImpactX.PRot", "phi_out"), ("ImpactX.PlaneXYRot", "angle"),
             ("ImpactX.ExactSbend", "B"), ("ImpactX.DipEdge", "psi")]


@pytest.mark.parametrize(("kind", "field"), AD_FIELDS)
def test_scenario_gradient_equals_central_differences(kind: str, field: str) -> None:
    """d sigma_x / d field of the in-house track through the scenario: reverse mode equals
    a central difference (h = 1e-4 relative) to 1e-6."""
    import torch

    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(element(kind))
    particles = generate(s.beam, 500)
    made = INHOUSE().differentiable_observables(s, [f"x1.{field}"], ["sigma_x", "sigma_pt"],
                                                particles, "cpu", "float64")
    assert made is not None
    g, theta0 = made
    theta = theta0.clone().requires_grad_(True)
    values = g(theta)
    name = "sigma_pt" if kind == "ImpactX.Buncher" else "sigma_x"
    (ad,) = torch.autograd.grad(values[name], theta)
    h = 1e-4 * abs(float(theta0[0]))
    with torch.no_grad():
        fd = (g(theta0 + h)[name] - g(theta0 - h)[name]) / (2 * h)
    assert float(ad[0]) != 0.0, (kind, field)
    assert abs(float(ad[0]) - float(fd)) <= 1e-6 * abs(float(fd)), (kind, field, ad, fd)
