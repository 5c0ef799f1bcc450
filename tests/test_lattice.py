"""The flat element list: SI parameters per PALS kind, flattening of beamlines, per-element
model tiers (ImpactX's floor rule) and slicing."""

from __future__ import annotations

import math

import pytest
import yaml

from harness.model.errors import ScenarioError
from harness.model.lattice import ElementSettings, build_elements, with_params
from harness.model.load import BUNDLED_DIR, load_scenario, scenario_from_dict

#: One element of every translated kind, in a nested beamline used twice.
EVERY_KIND = {"PALS": {"facility": [
    {"sol": {"kind": "Solenoid", "length": 0.5, "SolenoidP": {"Ksol": 0.8}}},
    {"rf": {"kind": "RFCavity", "length": 0.0,
            "RFP": {"voltage": 1.0e6, "frequency": 1.3e9, "phase": -1.0}}},
    {"ap": {"kind": "Marker", "ApertureP": {"x_limits": [-1.0e-3, 1.0e-3],
                                            "y_limits": [-2.0e-3, 2.0e-3],
                                            "shape": "ELLIPTICAL"}}},
    {"mk": {"kind": "Marker"}},
    {"bpm": {"kind": "Instrument", "length": 0.1}},
    {"cf": {"kind": "SBend", "length": 2.0, "BendP": {"g_ref": 0.05, "e1": 0.01, "e2": 0.02},
            "MagneticMultipoleP": {"Kn1": 0.3}}},
    {"mp": {"kind": "Multipole", "length": 0.0, "MagneticMultipoleP": {"Kn1L": 0.1,
                                                                        "Ks2L": -0.2}}},
    {"sx": {"kind": "Sextupole", "length": 0.2, "MagneticMultipoleP": {"Kn2": 40.0}}},
    {"q": {"kind": "Quadrupole", "length": 0.3, "MagneticMultipoleP": {"Kn1": -2.0}}},
    {"d": {"kind": "Drift", "length": 0.7}},
    {"inner": {"kind": "BeamLine", "line": ["sol", "rf"]}},
    {"outer": {"kind": "BeamLine",
               "line": ["inner", "ap", "mk", "bpm", "cf", "mp", "sx", "q", "d", "inner"]}},
    {"use": "outer"},
]}}

EXPECTED_PARAMS = {
    "sol": ("Solenoid", {"length": 0.5, "Ksol": 0.8}),
    "rf": ("RFCavity", {"length": 0.0, "voltage": 1.0e6, "frequency": 1.3e9, "phase": -1.0}),
    "ap": ("Aperture", {"length": 0.0, "x_limit": 1.0e-3, "y_limit": 2.0e-3,
                        "elliptical": 1.0}),
    "mk": ("Marker", {"length": 0.0}),
    "bpm": ("Instrument", {"length": 0.1}),
    "cf": ("SBend", {"length": 2.0, "angle": 0.1, "e1": 0.01, "e2": 0.02, "Kn1": 0.3}),
    "mp": ("Multipole", {"length": 0.0, "Kn1L": 0.1, "Ks2L": -0.2}),
    "sx": ("Sextupole", {"length": 0.2, "Kn2": 40.0}),
    "q": ("Quadrupole", {"length": 0.3, "Kn1": -2.0}),
    "d": ("Drift", {"length": 0.7}),
}


def every_kind(model: str = "linear", overrides=None):
    return build_elements(EVERY_KIND, ElementSettings(model, 2, 5), overrides)


def test_every_kind_has_its_si_parameters_in_line_order() -> None:
    elements = every_kind()
    assert [e.name for e in elements] == ["sol", "rf", "ap", "mk", "bpm", "cf", "mp", "sx",
                                          "q", "d", "sol", "rf"]
    for element in elements:
        kind, params = EXPECTED_PARAMS[element.name]
        assert element.kind == kind
        assert element.params == pytest.approx(params, rel=1e-15), element.name
        assert element.length == params["length"]
    assert math.fsum(e.length for e in elements) == pytest.approx(
        2 * 0.5 + 0.1 + 2.0 + 0.2 + 0.3 + 0.7, rel=1e-15)


@pytest.mark.parametrize(("requested", "expected"), [
    ("linear", {"Drift": "linear", "Quadrupole": "linear", "SBend": "linear",
                "Sextupole": "exact", "Solenoid": "linear", "Multipole": "linear"}),
    ("paraxial", {"Drift": "paraxial", "Quadrupole": "paraxial", "SBend": "exact",
                  "Sextupole": "exact", "Solenoid": "linear", "Multipole": "paraxial"}),
    ("exact", {"Drift": "exact", "Quadrupole": "exact", "SBend": "exact",
               "Sextupole": "exact", "Solenoid": "linear", "Multipole": "exact"}),
])
def test_tier_floor_rule(requested: str, expected: dict[str, str]) -> None:
    """The requested tier is a floor: the cheapest implemented tier at or above it, else the
    highest one (ImpactX ``element_models.select_model``)."""
    for element in every_kind(requested):
        assert element.requested_tier == requested
        if element.kind in expected:
            assert element.tier == expected[element.kind], element.kind


def test_override_applies_to_every_instance_of_the_named_element() -> None:
    elements = every_kind("linear", {"sol": ElementSettings("exact", 4, 9),
                                     "q": ElementSettings("paraxial", 3, 10)})
    solenoids = [e for e in elements if e.name == "sol"]
    assert len(solenoids) == 2
    for sol in solenoids:
        assert (sol.requested_tier, sol.tier, sol.nslice, sol.mapsteps) == (
            "exact", "linear", 4, 9)
        assert sol.integrator_steps == 36
    (quad,) = [e for e in elements if e.name == "q"]
    assert (quad.tier, quad.nslice, quad.mapsteps) == ("paraxial", 3, 10)
    others = [e for e in elements if e.name not in ("sol", "q")]
    assert all((e.requested_tier, e.nslice, e.mapsteps) == ("linear", 2, 5) for e in others)


def fodo_with(**changes) -> dict:
    data = yaml.safe_load((BUNDLED_DIR / "fodo_linear.yaml").read_text())
    data.update(changes)
    return data


def test_scenario_overrides_inherit_unset_fields_from_the_defaults() -> None:
    scenario = scenario_from_dict(fodo_with(
        model="paraxial", integrator={"nslice": 3, "mapsteps": 6},
        overrides={"quad1": {"model": "exact"}, "drift2": {"nslice": 8}}))
    by_name = {e.name: e for e in scenario.elements}
    assert (by_name["quad1"].tier, by_name["quad1"].nslice, by_name["quad1"].mapsteps) == (
        "exact", 3, 6)
    assert (by_name["drift2"].tier, by_name["drift2"].nslice, by_name["drift2"].mapsteps) == (
        "paraxial", 8, 6)
    assert (by_name["quad2"].tier, by_name["quad2"].nslice) == ("paraxial", 3)
    assert scenario.tiers == ("paraxial", "exact")


def test_integrator_values_must_be_positive() -> None:
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(fodo_with(integrator={"nslice": 0}), "f.yaml")
    assert info.value.field == "integrator.nslice"
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(fodo_with(overrides={"quad1": {"mapsteps": 0}}), "f.yaml")
    assert info.value.field == "overrides.quad1.mapsteps"


def test_chicane_bends_and_edges() -> None:
    """Four sector bends of 0.5 m, g_ref = +-0.0966 1/m: angle = g_ref*L = +-48.3 mrad, the
    exit (b1, b3) / entrance (b2, b4) pole faces rotated by the full angle (a rectangular
    chicane built from sector bends)."""
    scenario = load_scenario("chicane")
    bends = [e for e in scenario.elements if e.kind == "SBend"]
    assert [e.name for e in bends] == ["b1", "b2", "b3", "b4"]
    angle = 0.0966183574879227 * 0.5
    signs = [1, -1, -1, 1]
    edges = [(0.0, angle), (-angle, 0.0), (0.0, -angle), (angle, 0.0)]
    for bend, sign, (e1, e2) in zip(bends, signs, edges, strict=True):
        assert bend.params["length"] == 0.5
        assert bend.params["angle"] == pytest.approx(sign * angle, rel=1e-15)
        assert bend.params["e1"] == pytest.approx(e1, abs=1e-16)
        assert bend.params["e2"] == pytest.approx(e2, abs=1e-16)
        assert "Kn1" not in bend.params
        assert bend.tier == "linear"
    assert math.fsum(b.params["angle"] for b in bends) == pytest.approx(0.0, abs=1e-16)
    assert [e.name for e in scenario.elements] == ["b1", "dl", "b2", "dc", "b3", "dl", "b4"]
    assert scenario.length == pytest.approx(12.5, rel=1e-15)


def test_fodo_sextupole_kinds_params_and_tiers() -> None:
    scenario = load_scenario("fodo_sextupole")
    by_name = {e.name: e for e in scenario.elements}
    assert by_name["sf"].params == {"length": 0.2, "Kn2": 50.0}
    assert by_name["sd"].params == {"length": 0.2, "Kn2": -50.0}
    assert by_name["kick"].params == {"length": 0.0, "Kn2L": 5.0}
    assert by_name["quad1"].params == {"length": 1.0, "Kn1": 1.0}
    # paraxial requested: sextupoles only have exact maps; drifts, quads, thin kicks paraxial
    assert by_name["sf"].tier == "exact" and by_name["sf"].requested_tier == "paraxial"
    assert by_name["quad2"].tier == by_name["kick"].tier == "paraxial"
    assert scenario.tiers == ("paraxial", "exact")
    assert scenario.length == pytest.approx(3.0, rel=1e-15)


@pytest.mark.parametrize("name", ["fodo_linear", "fodo_paraxial", "fodo_exact"])
def test_fodo_cells_are_the_impactx_example(name: str) -> None:
    scenario = load_scenario(name)
    expected = [("drift1", "Drift", {"length": 0.25}),
                ("quad1", "Quadrupole", {"length": 1.0, "Kn1": 1.0}),
                ("drift2", "Drift", {"length": 0.5}),
                ("quad2", "Quadrupole", {"length": 1.0, "Kn1": -1.0}),
                ("drift3", "Drift", {"length": 0.25})]
    assert [(e.name, e.kind, e.params) for e in scenario.elements] == expected
    tier = name.removeprefix("fodo_")
    assert all(e.tier == tier for e in scenario.elements)
    assert scenario.tiers == (tier,)


def test_expanding_beam_slicing() -> None:
    scenario = load_scenario("expanding_beam")
    (drift,) = scenario.elements
    assert (drift.kind, drift.length, drift.nslice, drift.mapsteps) == ("Drift", 6.0, 12, 10)


def test_with_params_replaces_every_instance_and_copies() -> None:
    elements = every_kind()
    changed = with_params(elements, {("sol", "Ksol"): 1.5, ("d", "length"): 0.9})
    assert [e.params["Ksol"] for e in changed if e.name == "sol"] == [1.5, 1.5]
    assert [e.params["Ksol"] for e in elements if e.name == "sol"] == [0.8, 0.8]
    assert next(e for e in changed if e.name == "d").length == 0.9
    unchanged = [a is b for a, b in zip(elements, changed, strict=True)]
    assert unchanged.count(False) == 3


def test_pals_root_without_version_is_accepted() -> None:
    """pals-schema's root model needs a workaround when 'version' is left out."""
    document = {"PALS": {"facility": [{"d": {"kind": "Drift", "length": 1.0}}]}}
    (drift,) = build_elements(document, ElementSettings("linear"))
    assert drift.params == {"length": 1.0}


@pytest.mark.parametrize(("element", "field", "expected"), [
    ({"kind": "SBend", "length": 0.0, "BendP": {"g_ref": 0.1}}, "lattice.e.length",
     "positive length"),
    ({"kind": "SBend", "length": 1.0}, "lattice.e.BendP", "g_ref"),
    ({"kind": "Multipole", "length": 0.1, "MagneticMultipoleP": {"Kn1L": 1.0}},
     "lattice.e.length", "thin multipole"),
    ({"kind": "Multipole", "length": 0.0, "MagneticMultipoleP": {"Kn1": 1.0}},
     "lattice.e.MagneticMultipoleP.Kn1", "KnNL"),
    ({"kind": "RFCavity", "length": 1.0, "RFP": {"voltage": 1.0}}, "lattice.e.length",
     "short RF"),
    ({"kind": "Marker", "ApertureP": {"x_limits": [-1.0, 2.0], "y_limits": [-1.0, 1.0]}},
     "lattice.e.ApertureP.x_limits", "symmetric"),
    ({"kind": "Sextupole", "length": 0.2, "MagneticMultipoleP": {"Kn1": 1.0}},
     "lattice.e.MagneticMultipoleP.Kn2", "Kn2 [1/m^3]"),
    ({"kind": "Solenoid", "length": 0.2}, "lattice.e.SolenoidP", "Ksol"),
])
def test_untranslatable_elements_name_the_field(element, field, expected) -> None:
    document = {"PALS": {"facility": [{"e": element}]}}
    with pytest.raises(ScenarioError) as info:
        build_elements(document, ElementSettings("linear"), file="lat.yaml")
    assert info.value.field == field
    assert expected in str(info.value)
    assert str(info.value).startswith("lat.yaml: ")


# ---------------------------------------------------------------- equivalent PALS forms

BRHO = -6.67  # a signed rigidity [T m] (negative: an electron beam)


def _one(element: dict, rigidity_Tm: float | None = BRHO):
    document = {"PALS": {"facility": [{"e": element}]}}
    (out,) = build_elements(document, ElementSettings("linear"), file="lat.yaml",
                            rigidity_Tm=rigidity_Tm)
    return out


@pytest.mark.parametrize("bend", [
    {"g_ref": 0.25}, {"rho_ref": 4.0}, {"bend_field_ref": 0.25 * BRHO}, {"angle": 0.125},
    {"g_ref": 0.25, "angle": 0.125}, {"rho_ref": 4.0, "bend_field_ref": 0.25 * BRHO},
])
def test_every_way_to_state_a_bend_gives_one_angle(bend: dict) -> None:
    element = _one({"kind": "SBend", "length": 0.5, "BendP": bend})
    assert element.params["angle"] == pytest.approx(0.125, rel=1e-15)


def test_disagreeing_bend_strengths_are_refused() -> None:
    with pytest.raises(ScenarioError, match=r"lattice\.e\.BendP\.angle: expected a value "
                                            r"agreeing with g_ref"):
        _one({"kind": "SBend", "length": 0.5, "BendP": {"g_ref": 0.25, "angle": 0.2}})


def test_rectangular_edges_are_sector_edges_minus_half_the_angle() -> None:
    element = _one({"kind": "SBend", "length": 0.5,
                    "BendP": {"angle": 0.1, "e1_rect": 0.0, "e2_rect": 0.01}})
    assert element.params["e1"] == pytest.approx(0.05, rel=1e-15)
    assert element.params["e2"] == pytest.approx(0.06, rel=1e-15)


@pytest.mark.parametrize(("normalised", "field"), [
    ({"Kn1": 2.0}, {"Bn1": 2.0 * BRHO}), ({"Kn1": 2.0}, {"Kn1L": 1.0}),
    ({"Kn1": 2.0, "Ks2": -3.0}, {"Bn1": 2.0 * BRHO, "Bs2L": -1.5 * BRHO}),
])
def test_field_and_integrated_strengths_are_normalised(normalised, field) -> None:
    a = _one({"kind": "Quadrupole", "length": 0.5, "MagneticMultipoleP": normalised})
    b = _one({"kind": "Quadrupole", "length": 0.5, "MagneticMultipoleP": field})
    assert a.params.keys() == b.params.keys()
    for key, value in a.params.items():
        assert b.params[key] == pytest.approx(value, rel=1e-15)


def test_solenoid_field_and_kicker_field_use_the_rigidity() -> None:
    sol = _one({"kind": "Solenoid", "length": 0.5, "SolenoidP": {"Bsol": 1.2}})
    assert sol.params["Ksol"] == pytest.approx(1.2 / BRHO, rel=1e-15)
    kick = _one({"kind": "Kicker", "length": 0.2, "MagneticMultipoleP": {"Bn0": 1e-3}})
    assert kick.params == pytest.approx({"length": 0.2, "Kn0L": 0.2e-3 / BRHO, "Ks0L": 0.0})


def test_field_strength_without_rigidity_is_refused() -> None:
    with pytest.raises(ScenarioError, match="rigidity"):
        _one({"kind": "Quadrupole", "length": 0.5, "MagneticMultipoleP": {"Bn1": 1.0}},
             rigidity_Tm=None)


def test_body_shift_and_bend_fields_are_kept_only_when_set() -> None:
    quad = _one({"kind": "Quadrupole", "length": 0.5, "MagneticMultipoleP": {"Kn1": 1.0},
                 "BodyShiftP": {"x_offset": 1e-3, "y_offset": 0.0, "z_rot": 0.1}})
    assert quad.params == {"length": 0.5, "Kn1": 1.0, "x_offset": 1e-3, "z_rot": 0.1}
    bend = _one({"kind": "SBend", "length": 0.5,
                 "BendP": {"g_ref": 0.1, "edge_int1": 0.02, "tilt_ref": 0.3, "h2": 0.0}})
    assert bend.params == pytest.approx({"length": 0.5, "angle": 0.05, "e1": 0.0, "e2": 0.0,
                                         "edge_int1": 0.02, "tilt_ref": 0.3})


# ---------------------------------------------------------------- hostile and bad lattices


@pytest.mark.parametrize(("element", "field"), [
    ({"kind": "Drift", "length": float("nan")}, "lattice.e.length"),
    ({"kind": "Drift", "length": True}, "lattice.e.length"),
    ({"kind": "Quadrupole", "length": 1.0, "MagneticMultipoleP": {"Kn1": float("inf")}},
     "lattice.e.MagneticMultipoleP.Kn1"),
    ({"kind": "SBend", "length": 1.0, "BendP": {"g_ref": float("-inf")}},
     "lattice.e.BendP.g_ref"),
    ({"kind": "Quadrupole", "length": 1.0, "MagneticMultipoleP": {"Kn1": False}},
     "lattice.e.MagneticMultipoleP.Kn1"),
    ({"kind": "Drift", "length": 1.0, "BodyShiftP": {"x_rot": 0.1}},
     "lattice.e.BodyShiftP.x_rot"),
    ({"kind": "Drift", "length": 1.0, "ApertureP": {"x_limits": [-1.0, 1.0]}},
     "lattice.e.ApertureP.location"),
    ({"kind": "Quadrupole", "length": 1.0, "MagneticMultipoleP": {"Kn1": 1.0},
      "ElectricMultipoleP": {"En1": 1.0}}, "lattice.e.ElectricMultipoleP.En1"),
    ({"kind": "Quadrupole", "length": 1.0, "MagneticMultipoleP": {"Kn1": 1.0, "Bn1": 1.0}},
     "lattice.e.MagneticMultipoleP.Bn1"),
])
def test_bad_values_name_the_field(element: dict, field: str) -> None:
    with pytest.raises(ScenarioError) as info:
        _one(element)
    assert info.value.field == field, str(info.value)
    assert "\n" not in str(info.value)


def _facility(*entries) -> dict:
    return {"PALS": {"facility": list(entries)}}


def test_unused_elements_are_validated() -> None:
    document = _facility({"bad": {"kind": "Drift", "length": -3.0}},
                         {"d": {"kind": "Drift", "length": 1.0}},
                         {"line": {"kind": "BeamLine", "line": ["d"]}}, {"use": "line"})
    with pytest.raises(ScenarioError) as info:
        build_elements(document, ElementSettings("linear"))
    assert info.value.field == "lattice.bad.length"


def test_duplicate_element_names_are_refused() -> None:
    document = _facility({"d": {"kind": "Drift", "length": 1.0}},
                         {"d": {"kind": "Drift", "length": 8.0}},
                         {"line": {"kind": "BeamLine", "line": ["d"]}}, {"use": "line"})
    with pytest.raises(ScenarioError, match="unique element names") as info:
        build_elements(document, ElementSettings("linear"))
    assert info.value.field == "lattice.d"


def test_integer_element_name_is_one_line() -> None:
    document = _facility({7: {"kind": "Drift", "length": 1.0}},
                         {"line": {"kind": "BeamLine", "line": ["d"]}}, {"use": "line"})
    with pytest.raises(ScenarioError, match="element name that is text") as info:
        build_elements(document, ElementSettings("linear"))
    assert "\n" not in str(info.value)


def test_doubling_beamline_fails_fast_on_the_element_cap() -> None:
    import time

    entries = [{"d": {"kind": "Drift", "length": 1.0}}, {"l0": {"kind": "BeamLine",
                                                                "line": ["d"]}}]
    for k in range(1, 32):
        entries.append({f"l{k}": {"kind": "BeamLine", "line": [f"l{k - 1}", f"l{k - 1}"]}})
    entries.append({"use": "l31"})
    start = time.perf_counter()
    with pytest.raises(ScenarioError, match="at most 1,000,000 elements"):
        build_elements(_facility(*entries), ElementSettings("linear"))
    assert time.perf_counter() - start < 2.0


def test_the_lattice_layer_imports_no_backend() -> None:
    import subprocess
    import sys

    code = ("import sys, harness.model.lattice, harness.model.vocabulary; "
            "assert not [m for m in sys.modules if m.startswith('backends')], "
            "[m for m in sys.modules if m.startswith('backends')]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_million_element_ring_of_one_cell_flattens_in_seconds() -> None:
    """A named line is expanded once and each definition becomes one shared Element."""
    import time

    cell = [{f"d{i}": {"kind": "Drift", "length": 0.1}} for i in range(10)]
    document = _facility(*cell,
                         {"cell": {"kind": "BeamLine", "line": [f"d{i}" for i in range(10)]}},
                         {"ring": {"kind": "BeamLine", "line": ["cell"] * 100_000}},
                         {"use": "ring"})
    start = time.perf_counter()
    elements = build_elements(document, ElementSettings("linear"))
    assert len(elements) == 1_000_000 and elements[0] is elements[10]
    assert time.perf_counter() - start < 15.0   # 1.1 s measured on the reference machine
