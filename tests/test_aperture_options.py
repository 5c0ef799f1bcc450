"""ImpactX's aperture options end to end: ``Aperture`` with ``action``, ``repeat_x``,
``repeat_y``, ``shift_odd_x`` and a shifted aperture (``ImpactXP`` group and ``BodyShiftP``
with ``ApertureP.aperture_shifts_with_body``), and the extension kind
``ImpactX.PolygonAperture``: the scenario reader, ImpactX against the in-house tracker
through prepare/track (the same lost particles, NaN rows under
``backends.base.final_particles``; the survivors to round-off), the other backends refusing
them by name, one-line errors for bad input, and the ImpactX lattice importer."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from backends.registry import backend_classes
from harness.model.errors import ScenarioError
from harness.model.load import scenario_from_dict
from harness.model.particles import generate

BEAM = {"species": "proton", "kinetic_energy_MeV": 800.0, "bunch_charge_C": 0.0,
        "distribution": "gaussian",
        "twiss": {"beta_x": 20.0, "alpha_x": -0.5, "emittance_x": 2e-7,
                  "beta_y": 15.0, "alpha_y": 0.3, "emittance_y": 2e-7},
        "longitudinal": {"sigma_t": 1e-4, "sigma_pt": 1e-3}, "particles": 4000}

#: The cross of ImpactX's ``examples/polygon_aperture`` [m].
CROSS_X = [5e-4, 5e-4, -5e-4, -5e-4, -1.5e-3, -1.5e-3, -5e-4, -5e-4, 5e-4, 5e-4, 1.5e-3,
           1.5e-3, 5e-4]
CROSS_Y = [5e-4, 1.5e-3, 1.5e-3, 5e-4, 5e-4, -5e-4, -5e-4, -1.5e-3, -1.5e-3, -5e-4, -5e-4,
           5e-4, 5e-4]

LIMITS = {"x_limits": [-1.5e-3, 1.5e-3], "y_limits": [-1e-3, 1e-3]}

#: name -> the aperture element (PALS).
CASES: dict[str, dict] = {
    "absorber": {"kind": "Marker", "ApertureP": {**LIMITS},
                 "ImpactXP": {"action": "absorb"}},
    "pepperpot_hexagonal": {"kind": "Marker", "ApertureP": {
        "x_limits": [-1.5e-4, 1.5e-4], "y_limits": [-1e-4, 1e-4]},
        "ImpactXP": {"repeat_x": 1e-3, "repeat_y": 1e-3, "shift_odd_x": True}},
    "elliptical_periodic_absorb_shifted": {"kind": "Marker", "ApertureP": {
        "x_limits": [-3e-4, 3e-4], "y_limits": [-2e-4, 2e-4], "shape": "ELLIPTICAL",
        "aperture_shifts_with_body": True},
        "BodyShiftP": {"x_offset": 2e-4, "y_offset": -1e-4, "z_rot": 0.4},
        "ImpactXP": {"action": "absorb", "repeat_x": 1.1e-3, "repeat_y": 0.9e-3}},
    "x_period_only": {"kind": "Marker", "ApertureP": {
        "x_limits": [-2e-4, 2e-4], "y_limits": [-2e-3, 2e-3]},
        "ImpactXP": {"repeat_x": 7e-4}},
    "polygon_transmit": {"kind": "ImpactX.PolygonAperture", "ImpactXP": {
        "vertices_x": CROSS_X, "vertices_y": CROSS_Y, "min_radius2": 2 * 0.5e-3**2}},
    "polygon_absorb_rotated_offset": {
        "kind": "ImpactX.PolygonAperture",
        "ImpactXP": {"vertices_x": CROSS_X, "vertices_y": CROSS_Y, "action": "absorb"},
        "BodyShiftP": {"x_offset": 6e-4, "y_offset": -1.2e-3, "z_rot": 0.5235987755982988}},
    "polygon_periodic_hexagonal": {"kind": "ImpactX.PolygonAperture", "ImpactXP": {
        "vertices_x": CROSS_X, "vertices_y": CROSS_Y, "repeat_x": 4e-3, "repeat_y": 3.5e-3,
        "shift_odd_x": True}, "BodyShiftP": {"z_rot": -0.17}},
}


def scenario(body: dict, model: str = "linear"):
    facility = [{"d1": {"kind": "Drift", "length": 0.4}}, {"ap": copy.deepcopy(body)},
                {"q1": {"kind": "Quadrupole", "length": 0.2,
                        "MagneticMultipoleP": {"Kn1": 2.0}}},
                {"line": {"kind": "BeamLine", "line": ["d1", "ap", "q1"]}},
                {"use": "line"}]
    return scenario_from_dict({"name": "apertures", "beam": BEAM, "model": model,
                               "lattice": {"PALS": {"facility": facility}}}, "ap.yaml")


def test_the_reader_gives_the_options_as_element_fields() -> None:
    (_, aperture, _) = scenario(CASES["elliptical_periodic_absorb_shifted"]).elements
    assert aperture.kind == "Aperture"
    assert aperture.params == {"length": 0.0, "x_limit": 3e-4, "y_limit": 2e-4,
                               "elliptical": 1.0, "absorb": 1.0, "repeat_x": 1.1e-3,
                               "repeat_y": 0.9e-3, "x_offset": 2e-4, "y_offset": -1e-4,
                               "z_rot": 0.4}
    (_, polygon, _) = scenario(CASES["polygon_transmit"]).elements
    assert polygon.kind == "ImpactX.PolygonAperture"
    assert polygon.params["vertex_x12"] == 5e-4 and polygon.params["vertex_y1"] == 1.5e-3
    assert polygon.params["min_radius2"] == 2 * 0.5e-3**2 and "absorb" not in polygon.params


@pytest.mark.parametrize("model", ["linear", "exact"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_inhouse_loses_the_same_particles_as_impactx(case: str, model: str) -> None:
    """The same particles lost (all-NaN rows in both), the survivors equal to <= 1e-11
    sigma (float64, 4000 particles; the project's bound: the exact tier's drift and
    quadrupole differ by ~1e-12 in t, the apertures move no coordinate)."""
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(CASES[case], model)
    particles = generate(s.beam, 4000)
    assert IMPACTX().supports(s) and INHOUSE().supports(s)
    with IMPACTX().prepare(s) as prepared:
        theirs = prepared.track(particles)
    with INHOUSE().prepare(s, compile=False) as prepared:
        ours = prepared.track(particles)
    lost_theirs = np.isnan(theirs).all(axis=1)
    lost_ours = np.isnan(ours).all(axis=1)
    assert np.array_equal(lost_theirs, lost_ours)
    assert 0 < lost_theirs.sum() < len(particles)
    kept = ~lost_theirs
    assert np.isfinite(theirs[kept]).all() and np.isfinite(ours[kept]).all()
    deviation = np.abs(ours[kept] - theirs[kept]).max(axis=0) / theirs[kept].std(axis=0)
    print(f"{case} ({model}): {lost_theirs.sum()} of {len(particles)} lost in both; max "
          f"|in-house - ImpactX| / sigma = {deviation.max():.2e}")
    assert deviation.max() <= 1e-11, deviation


@pytest.mark.parametrize("case", sorted(CASES))
def test_other_backends_refuse_the_options_by_name(case: str) -> None:
    s = scenario(CASES[case])
    polygon = CASES[case]["kind"].startswith("ImpactX.")
    for name, cls in backend_classes().items():
        if name in ("impactx", "inhouse"):
            continue
        verdict = cls().supports(s)
        assert not verdict, name
        if polygon:
            assert "ImpactX.PolygonAperture" in verdict.reason, (name, verdict.reason)
        else:
            assert any(f"'{field}'" in verdict.reason for field in (
                "absorb", "repeat_x", "repeat_y", "shift_odd_x", "x_offset")), \
                (name, verdict.reason)


def test_the_plain_aperture_still_runs_everywhere_it_did() -> None:
    s = scenario({"kind": "Marker", "ApertureP": {**LIMITS}})
    (_, aperture, _) = s.elements
    assert aperture.params == {"length": 0.0, "x_limit": 1.5e-3, "y_limit": 1e-3,
                               "elliptical": 0.0}
    for name, cls in backend_classes().items():
        assert "Aperture" in cls.element_kinds, name


_MARKER = {"kind": "Marker", "ApertureP": {**LIMITS}}
_POLYGON = CASES["polygon_transmit"]

BAD = [
    ({**_MARKER, "ImpactXP": {"action": "reflect"}},
     r"ap\.ImpactXP\.action: expected one of \['transmit', 'absorb'\]"),
    ({**_MARKER, "ImpactXP": {"shift_odd_x": True, "repeat_x": 1e-3}},
     r"ap\.ImpactXP\.shift_odd_x: expected false unless repeat_y > 0"),
    ({**_MARKER, "ImpactXP": {"repeat_x": -1e-3}},
     r"ap\.ImpactXP\.repeat_x: expected 0 <= x <= 10"),
    ({**_MARKER, "ImpactXP": {"shape": "hexagonal"}},
     r"ap\.ImpactXP\.shape: expected one of the aperture options"),
    ({**_MARKER, "ImpactXP": {"shift_odd_x": 1}},
     r"ap\.ImpactXP\.shift_odd_x: expected true or false"),
    ({"kind": "Marker", "ImpactXP": {"action": "absorb"}},
     r"ap\.ImpactXP: expected no ImpactXP group without an active ApertureP"),
    ({**_MARKER, "BodyShiftP": {"x_offset": 1e-4}},
     r"ap\.BodyShiftP\.x_offset: expected no BodyShiftP on a Marker .*"
     r"aperture_shifts_with_body: true"),
    ({"kind": "Marker", "ApertureP": {**LIMITS, "aperture_shifts_with_body": True},
      "BodyShiftP": {"x_rot": 1e-3}}, r"ap\.BodyShiftP\.x_rot: expected not set"),
    ({**_POLYGON, "ImpactXP": {**_POLYGON["ImpactXP"], "vertices_y": CROSS_Y[:-1]}},
     r"ImpactXP\.vertices_y: expected as many entries as vertices_x \(13\)"),
    ({**_POLYGON, "ImpactXP": {**_POLYGON["ImpactXP"], "vertices_x": CROSS_X[:-1] + [0.0]}},
     r"ImpactXP\.vertices_x: expected a closed polygon"),
    ({**_POLYGON, "ImpactXP": {**_POLYGON["ImpactXP"], "vertices_x": [0.0, 1e-3, 0.0],
                               "vertices_y": [0.0, 0.0, 1e-3]}},
     r"ImpactXP\.vertices_x: expected a list of 4 to 10,000"),
    ({**_POLYGON, "ImpactXP": {**_POLYGON["ImpactXP"], "vertices_x": [20.0, *CROSS_X[1:-1],
                                                                      20.0]}},
     r"ImpactXP\.vertices_x\[0\]: expected -10 <= x <= 10 \[m\]"),
    ({**_POLYGON, "ImpactXP": {**_POLYGON["ImpactXP"], "min_radius2": -1.0}},
     r"ImpactXP\.min_radius2: expected 0 <= x <= 100"),
    ({**_POLYGON, "length": 0.1}, r"ap\.length: expected 0 \(ImpactX\.PolygonAperture is"),
    ({"kind": "ImpactX.PolygonAperture", "ImpactXP": {"vertices_y": CROSS_Y}},
     r"ImpactXP\.vertices_x: expected a list of 4"),
]


@pytest.mark.parametrize(("body", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_aperture_input_is_one_line_naming_the_field(body: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as caught:
        scenario(body)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("ap.yaml: ")


def test_an_impactx_lattice_imports_the_aperture_options() -> None:
    """ImpactX ``Aperture`` with every option and ``PolygonAperture`` import as the
    scenario's forms, and read back to the same ImpactX elements."""
    pytest.importorskip("impactx")
    from impactx import elements as ix

    from backends.impactx import translate
    from harness.io.impactx_lattice import import_impactx
    from harness.io.model import Translated

    s = scenario(CASES["absorber"])
    polygon = ix.PolygonAperture(CROSS_X, CROSS_Y, action="absorb", dx=6e-4, dy=-1.2e-3,
                                 rotation=30.0, name="cross")
    polygon.min_radius2 = 5e-7
    lattice = [ix.Aperture(aperture_x=3e-4, aperture_y=2e-4, repeat_x=1.1e-3,
                           repeat_y=0.9e-3, shift_odd_x=True, shape="elliptical",
                           action="absorb", dx=2e-4, dy=-1e-4, rotation=25.0, name="pp"),
               polygon]
    items = import_impactx(lattice, s.reference_particle).items
    assert all(isinstance(item, Translated) for item in items), items
    facility: list[dict[str, Any]] = [{item.name: item.fields} for item in items
                                      if isinstance(item, Translated)]
    facility += [{"line": {"kind": "BeamLine", "line": ["pp", "cross"]}}, {"use": "line"}]
    loaded = scenario_from_dict({"name": "imported", "beam": BEAM,
                                 "lattice": {"PALS": {"facility": facility}}}, "imp.yaml")
    for element, original in zip(loaded.elements, lattice, strict=True):
        (spec,) = translate(element, loaded.reference_particle)
        built = spec.build(ix).to_dict()
        expected = original.to_dict()
        for key, value in expected.items():
            if key == "rotation":
                assert built[key] == pytest.approx(value, rel=1e-14), key
            elif isinstance(value, float):
                assert built[key] == value, key
            else:
                assert built[key] == value, key
