"""Linear transfer maps (Jacobian at the reference orbit) of the in-house tracker."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backends.inhouse.tracker import Tracker
from backends.inhouse.transfer_map import linear_map
from harness.model.load import load_scenario


def drift(length: float, beta_gamma: float) -> torch.Tensor:
    m = torch.eye(6, dtype=torch.float64)
    m[0, 1] = m[2, 3] = length
    m[4, 5] = length / beta_gamma**2
    return m


def quad(length: float, k: float, beta_gamma: float) -> torch.Tensor:
    """Thick quadrupole (Wolski, Beam Dynamics in High Energy Particle Accelerators, 3.3)."""
    w = math.sqrt(abs(k))
    phi = w * length
    foc = [[math.cos(phi), math.sin(phi) / w], [-w * math.sin(phi), math.cos(phi)]]
    defoc = [[math.cosh(phi), math.sinh(phi) / w], [w * math.sinh(phi), math.cosh(phi)]]
    m = drift(length, beta_gamma)
    m[0:2, 0:2] = torch.tensor(foc if k > 0 else defoc, dtype=torch.float64)
    m[2:4, 2:4] = torch.tensor(defoc if k > 0 else foc, dtype=torch.float64)
    return m


def fodo_product(beta_gamma: float) -> torch.Tensor:
    """The bundled FODO cell: D(0.25) QF(1, +1) D(0.5) QD(1, -1) D(0.25), first on the right."""
    return (drift(0.25, beta_gamma) @ quad(1.0, -1.0, beta_gamma) @ drift(0.5, beta_gamma)
            @ quad(1.0, 1.0, beta_gamma) @ drift(0.25, beta_gamma))


def test_fodo_map_is_the_matrix_product():
    scenario = load_scenario("fodo_linear")
    bg = scenario.reference_particle.beta_gamma
    torch.testing.assert_close(linear_map(scenario), fodo_product(bg), rtol=1e-14, atol=1e-15)


def test_section_maps():
    scenario = load_scenario("fodo_linear")
    bg = scenario.reference_particle.beta_gamma
    torch.testing.assert_close(linear_map(scenario, 1, 2), quad(1.0, 1.0, bg), rtol=1e-14,
                               atol=1e-15)
    tracker = Tracker(scenario.elements, scenario.reference_particle)
    whole = linear_map(tracker)
    split = linear_map(tracker, 2) @ linear_map(tracker, 0, 2)
    torch.testing.assert_close(whole, split, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", ["fodo_paraxial", "fodo_exact"])
def test_nonlinear_models_linearise_to_the_linear_fodo(name):
    scenario = load_scenario(name)
    bg = scenario.reference_particle.beta_gamma
    torch.testing.assert_close(linear_map(scenario), fodo_product(bg), rtol=1e-12, atol=1e-13)


def test_map_is_differentiable_in_parameters():
    scenario = load_scenario("fodo_linear")
    tracker = Tracker(scenario.elements, scenario.reference_particle,
                      parameters=[("quad1", "Kn1")])
    k = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    linear_map(tracker, values={("quad1", "Kn1"): k})[0, 0].backward()
    bg = scenario.reference_particle.beta_gamma

    def m00(value: float) -> float:
        return float((drift(0.25, bg) @ quad(1.0, -1.0, bg) @ drift(0.5, bg)
                      @ quad(1.0, value, bg) @ drift(0.25, bg))[0, 0])

    h = 1e-6
    assert float(k.grad) == pytest.approx((m00(1.0 + h) - m00(1.0 - h)) / (2 * h), rel=1e-8)


def impactx_lattice_map(scenario) -> np.ndarray:
    """ImpactX's own linear lattice map (``KnownElementsList.transfer_map``)."""
    from impactx_helpers import quiet_simulation
    from test_inhouse_vs_impactx import impactx_elements

    reference = scenario.reference_particle
    sim = quiet_simulation(reference.species, reference.kinetic_energy_MeV)
    ref = sim.beam.ref
    sim.lattice.extend(impactx_elements(scenario.elements, reference))
    out = np.array(sim.lattice.transfer_map(ref).to_numpy())
    sim.finalize()
    return out


@pytest.mark.parametrize("name", ["fodo_linear", "chicane"])
def test_matches_impactx_transfer_map(name):
    pytest.importorskip("impactx")
    scenario = load_scenario(name)
    ours = linear_map(scenario).numpy()
    np.testing.assert_allclose(ours, impactx_lattice_map(scenario), rtol=1e-12, atol=1e-14)
