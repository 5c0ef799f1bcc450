"""Every bundled scenario loads, validates and reports its model tiers."""

from __future__ import annotations

import pytest

from harness.model.load import bundled_names, load_scenario


@pytest.mark.parametrize("name", bundled_names())
def test_bundled_scenario_loads(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.elements, "a bundled scenario has at least one element"
    assert scenario.length > 0.0


def test_fodo_cell_is_the_impactx_example_cell() -> None:
    scenario = load_scenario("fodo_linear")
    kinds = [e.kind for e in scenario.elements]
    assert kinds == ["Drift", "Quadrupole", "Drift", "Quadrupole", "Drift"]
    assert scenario.length == pytest.approx(3.0)
    assert scenario.tiers == ("linear",) or list(scenario.tiers) == ["linear"]
