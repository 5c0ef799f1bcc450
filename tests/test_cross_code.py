"""ImpactX and Cheetah through their adapters, particle by particle, on the same particles.

Agreement is max over particles of |Δ| / σ_ImpactX per coordinate, worst coordinate
(harness.agreement.particle_deviation, the runner's own metric).
"""

from __future__ import annotations

import pytest

pytest.importorskip("impactx", reason="ImpactX is not installed")
pytest.importorskip("cheetah", reason="Cheetah is not installed")

from backends.registry import get_backend  # noqa: E402
from harness.agreement import particle_deviation  # noqa: E402
from harness.model.load import load_scenario, scenario_from_dict  # noqa: E402
from harness.model.particles import generate  # noqa: E402

pytestmark = pytest.mark.impactx
N = 10_000


def final(backend: str, scenario, particles):
    with get_backend(backend).prepare(scenario) as prepared:
        return prepared.track(particles)


def worst(scenario, backend: str = "cheetah") -> float:
    particles = generate(scenario.beam, N)
    return particle_deviation(final(backend, scenario, particles),
                              final("impactx", scenario, particles))["dev_max"]


@pytest.mark.parametrize(("name", "bound"), [("fodo_linear", 1e-12), ("chicane", 1e-12)])
def test_linear_lattices_agree_to_round_off(name: str, bound: float) -> None:
    assert worst(load_scenario(name)) <= bound


def test_drift_kick_drift_pairing_on_the_fodo() -> None:
    """Cheetah's drift_kick_drift FODO against ImpactX's ExactDrift + ChrQuad."""
    data = load_scenario("fodo_paraxial").model_dump()
    data["overrides"] = {name: {"model": "exact"} for name in ("drift1", "drift2", "drift3")}
    scenario = scenario_from_dict(data)
    tiers = {e.name: e.tier for e in scenario.elements}
    assert tiers == {"drift1": "exact", "quad1": "paraxial", "drift2": "exact",
                     "quad2": "paraxial", "drift3": "exact"}
    assert worst(scenario) <= 1e-9


@pytest.mark.parametrize(("species", "kinetic_energy_MeV"),
                         [("electron", 2000.0), ("electron", 5.0), ("proton", 800.0)])
@pytest.mark.parametrize("backend", ["impactx", "cheetah", "inhouse"])
def test_conversion_round_trip_is_exact(backend: str, species: str,
                                        kinetic_energy_MeV: float) -> None:
    """canonical -> backend -> canonical through a zero-length lattice returns the input."""
    data = load_scenario("fodo_linear").model_dump()
    data["beam"] |= {"species": species, "kinetic_energy_MeV": kinetic_energy_MeV}
    data["gradients"] = None
    data["lattice"] = {"PALS": {"version": None, "facility": [
        {"d0": {"kind": "Drift", "length": 0.0}},
        {"line": {"kind": "BeamLine", "line": ["d0"]}}, {"use": "line"}]}}
    scenario = scenario_from_dict(data)
    particles = generate(scenario.beam, 1000)
    out = final(backend, scenario, particles)
    assert particle_deviation(out, particles)["dev_max"] <= 1e-15
