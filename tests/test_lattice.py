"""The flat element list: SI parameters per PALS kind, flattening of beamlines, per-element
model tiers (ImpactX's floor rule) and slicing."""

from __future__ import annotations

import math

import pytest
import yaml

from harness.errors import ScenarioError
from harness.lattice import ElementSettings, build_elements, with_params
from harness.scenario import BUNDLED_DIR, load_scenario, scenario_from_dict

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
    assert (drift.kind, drift.length, drift.nslice, drift.mapsteps) == ("Drift", 6.0, 6, 10)


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
