"""The RF-Track adapter: coordinates at the boundary, its maps against ImpactX particle by
particle, losses, refusals and a quiet import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backends.base import Supported, Unsupported
from backends.registry import get_backend
from harness.model.load import load_scenario as load
from harness.model.load import scenario_from_dict
from harness.model.particles import beam_cholesky, unit_samples

pytest.importorskip("RF_Track")
pytest.importorskip("impactx")

from backends.rftrack import (  # noqa: E402
    QUIET_ENVIRONMENT,
    RFTrackBackend,
    from_rftrack,
    to_rftrack,
)

ROOT = Path(__file__).resolve().parent.parent
N = 2000


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def make_scenario(elements: list[tuple[str, dict]], model: str = "exact",
                  energy_MeV: float = 2000.0, species: str = "electron",
                  integrator: dict | None = None, sigma_pt: float = 2e-3):
    facility: list[dict[str, Any]] = [{name: body} for name, body in elements]
    facility.append({"line": {"kind": "BeamLine", "line": [name for name, _ in elements]}})
    facility.append({"use": "line"})
    document: dict[str, Any] = {
        "name": "rftrack",
        "beam": {"species": species, "kinetic_energy_MeV": energy_MeV,
                 "bunch_charge_C": 1e-12, "distribution": "gaussian",
                 "twiss": {"beta_x": 3.0, "alpha_x": 0.5, "emittance_x": 1e-8,
                           "beta_y": 2.0, "alpha_y": -0.5, "emittance_y": 1e-8},
                 "longitudinal": {"sigma_t": 1e-3, "sigma_pt": sigma_pt}, "seed": 7},
        "model": model,
        "lattice": {"PALS": {"version": None, "facility": facility}},
    }
    if integrator:
        document["integrator"] = integrator
    return scenario_from_dict(document)


def particles_of(scenario, n: int = N, seed: int = 3, scale: float = 1.0) -> np.ndarray:
    p = unit_samples(scenario.beam.distribution, n, seed) @ beam_cholesky(scenario.beam).T
    p[:, [1, 3]] *= scale
    return p


def track(name: str, scenario, particles: np.ndarray) -> np.ndarray:
    backend = get_backend(name)
    assert backend.supports(scenario), backend.supports(scenario)
    with backend.prepare(scenario) as prepared:
        return prepared.track(particles)


def deviation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """max |a - b| / std(b) per coordinate."""
    return np.abs(a - b).max(axis=0) / b.std(axis=0)


@pytest.mark.parametrize(("species", "energy_MeV"),
                         [("electron", 2000.0), ("electron", 5.0), ("proton", 800.0)])
def test_conversion_round_trip_is_exact(species: str, energy_MeV: float) -> None:
    """ImpactX -> Bunch6d -> ImpactX at S = 0, with large angles and a 2 % energy spread."""
    scenario = make_scenario([("d", {"kind": "Drift", "length": 1.0})], species=species,
                             energy_MeV=energy_MeV, sigma_pt=2e-2)
    reference = scenario.reference_particle
    p0 = particles_of(scenario, scale=100.0)
    back = from_rftrack(to_rftrack(p0, reference), reference)
    assert deviation(back, p0).max() < 1e-13


def test_bunch6d_holds_slopes_and_total_momentum() -> None:
    """x' = P_x / P_z in mrad and P in MeV/c (RF-Track's Bunch6d columns)."""
    scenario = make_scenario([("d", {"kind": "Drift", "length": 1.0})], energy_MeV=5.0)
    reference = scenario.reference_particle
    p = np.array([[1e-3, 0.1, -2e-3, 0.05, 1e-3, -0.02]])
    row = to_rftrack(p, reference)[0]
    p0c = reference.mass_MeV * reference.beta_gamma
    momentum = row[5] / p0c
    energy = np.hypot(row[5], reference.mass_MeV)
    pz = np.sqrt(momentum**2 - 0.1**2 - 0.05**2)
    assert row[0] == pytest.approx(1.0) and row[2] == pytest.approx(-2.0)
    assert row[1] == pytest.approx(1e3 * 0.1 / pz, rel=1e-14)
    assert row[3] == pytest.approx(1e3 * 0.05 / pz, rel=1e-14)
    assert -(energy - reference.mass_MeV * reference.gamma) / p0c == pytest.approx(-0.02,
                                                                                   rel=1e-12)


@pytest.mark.parametrize(("species", "energy_MeV"), [("electron", 5.0), ("proton", 800.0)])
def test_exact_drift_is_impactx_exact_drift(species: str, energy_MeV: float) -> None:
    """RF-Track's Drift is ImpactX's ExactDrift (same model: no stand-in)."""
    scenario = make_scenario([("d", {"kind": "Drift", "length": 2.5})], species=species,
                             energy_MeV=energy_MeV, sigma_pt=2e-2)
    verdict = RFTrackBackend().supports(scenario)
    assert isinstance(verdict, Supported) and verdict.model == "exact"
    p0 = particles_of(scenario, scale=100.0)
    assert deviation(track("rftrack", scenario, p0), track("impactx", scenario, p0)).max() < 1e-10


def test_field_quadrupole_is_the_converged_exact_quadrupole() -> None:
    """RF-Track's Multipole field (rk8pd) equals ImpactX's ExactQuad converged (400
    sixth-order steps) particle by particle, at angles 30x the beam's."""
    quad = [("q", {"kind": "Quadrupole", "length": 1.0, "MagneticMultipoleP": {"Kn1": 1.0}})]
    converged = make_scenario(quad, integrator={"nslice": 1, "mapsteps": 400, "int_order": 6},
                              sigma_pt=2e-2)
    rft = make_scenario(quad, sigma_pt=2e-2)
    p0 = particles_of(rft, scale=30.0)
    assert deviation(track("rftrack", rft, p0), track("impactx", converged, p0)).max() < 1e-10


#: Bundled scenarios RF-Track runs, and the largest max |delta|/sigma from ImpactX
#: (1e4 particles) each is held to: the stand-ins' model difference, measured, with margin.
BUNDLED = {
    "fodo_exact": 1e-4,      # ImpactX's ExactQuad at 10 second-order steps vs the field
    "fodo_paraxial": 1e-6,   # ChrDrift/ChrQuad vs exact drift and the slope matrix
    "fodo_sextupole": 1e-4,  # the above, sextupole fields and the thin kick
    "fodo_linear": 5e-2,     # the linear maps vs exact drift and the chromatic matrix
}


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_scenario_against_impactx(name: str) -> None:
    scenario = load(ROOT / "lattices" / f"{name}.yaml")
    verdict = RFTrackBackend().supports(scenario)
    assert isinstance(verdict, Supported) and verdict.model.startswith("stand-in:rftrack("), verdict
    p0 = particles_of(scenario, 4000)
    dev = deviation(track("rftrack", scenario, p0), track("impactx", scenario, p0))
    assert dev.max() < BUNDLED[name], dev


def test_aperture_losses_are_nan_rows_and_order_is_kept() -> None:
    a, b = 8e-5, 1.2e-4
    scenario = make_scenario([
        ("d", {"kind": "Drift", "length": 1.0}),
        ("ap", {"kind": "Marker", "ApertureP": {"x_limits": [-a, a], "y_limits": [-b, b],
                                                "shape": "RECTANGULAR"}}),
        ("d2", {"kind": "Drift", "length": 0.5}),
    ])
    p0 = particles_of(scenario, 1000)
    final = track("rftrack", scenario, p0)
    expected = track("impactx", scenario, p0)
    lost = np.isnan(expected).all(axis=1)
    assert 0 < lost.sum() < len(p0)
    np.testing.assert_array_equal(np.isnan(final).all(axis=1), lost)
    assert deviation(final[~lost], expected[~lost]).max() < 1e-10


def reason(verdict: Supported | Unsupported) -> str:
    assert isinstance(verdict, Unsupported), verdict
    return verdict.reason


def test_refusals_name_their_reason() -> None:
    backend = RFTrackBackend()
    drift = make_scenario([("d", {"kind": "Drift", "length": 1.0})])
    assert "float32" in reason(backend.supports(drift, "cpu", "float32"))
    assert "cuda" in reason(backend.supports(drift, "cuda"))
    kick = make_scenario([("k", {"kind": "Kicker", "length": 0.0,
                                 "MagneticMultipoleP": {"Kn0L": 1e-4}})])
    assert "Kicker" in reason(backend.supports(kick))
    rf = make_scenario([("rf", {"kind": "RFCavity", "length": 0.0,
                                "RFP": {"voltage": 1e6, "frequency": 1.3e9, "phase": 0.0}})])
    assert "ShortRF" in reason(backend.supports(rf))
    space_charge = load(ROOT / "lattices" / "fodo_space_charge.yaml")
    assert "space charge" in reason(backend.supports(space_charge))


def test_threads_are_the_cases_threads(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    scenario = make_scenario([("d", {"kind": "Drift", "length": 1.0})])
    with RFTrackBackend().prepare(scenario) as prepared:
        assert prepared.threads == 2


def test_import_is_quiet() -> None:
    """No banner and no update check: nothing on stdout or stderr."""
    env = {k: v for k, v in __import__("os").environ.items() if k not in QUIET_ENVIRONMENT}
    done = subprocess.run(
        [sys.executable, "-c", "from backends.rftrack import RFTrackBackend as B; "
                               "assert B.availability().available"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == "" and done.stderr == ""
