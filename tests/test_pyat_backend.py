"""The pyAT adapter against ImpactX particle by particle: the transverse maps are ImpactX's,
the longitudinal coordinate lacks exactly the velocity slip (AT moves particles at c), and
every row says so in its model label.

Agreement is max |dev| / std(reference coordinate) over all particles, per coordinate.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

pytest.importorskip("at")
pytest.importorskip("impactx")

from scenario_helpers import KICKERS, WIDE_TWISS, cross_check_scenario  # noqa: E402

from backends.base import Unsupported  # noqa: E402
from backends.pyat import PyatBackend, from_at, to_at  # noqa: E402
from backends.registry import get_backend  # noqa: E402
from harness.model.load import load_scenario  # noqa: E402
from harness.model.particles import generate  # noqa: E402

N = 2000


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch) -> None:
    """Serial Xsuite in the cross-check (its OpenMP kernel is tested elsewhere)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


#: ``make(elements, model, beam, **extra)``: the cross-check scenario through ``elements``.
make = partial(cross_check_scenario, name="pyat_test")


def tracks(scenario, *names: str) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
    particles = generate(scenario.beam, N)
    outs, models = [], []
    for name in names:
        with get_backend(name).prepare(scenario) as prepared:
            outs.append(prepared.track(particles))
            models.append(prepared.model)
    return particles, outs, models


def deviation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b).max(axis=0) / b.std(axis=0)


@pytest.mark.parametrize("name", ["fodo_linear", "chicane"])
def test_linear_maps_are_impactx_maps_without_the_velocity_slip(name: str) -> None:
    """Transverse: ImpactX to round-off. Longitudinal: ImpactX's t of a drift-like element
    has the slip L pt / (beta gamma)^2 (R56 of ``Drift.H``, ``Quad.H``); AT's has none.
    The chicane's bends have an R56 of their own, so only the fodo cell is checked for it."""
    scenario = load_scenario(name)
    particles, (impactx, pyat), (_, model) = tracks(scenario, "impactx", "pyat")
    assert model == "stand-in:pyat(beta=1: no velocity slip)"
    assert deviation(pyat, impactx)[:4].max() < 1e-13
    if name == "fodo_linear":
        slip = scenario.length * impactx[:, 5] / scenario.reference_particle.beta_gamma**2
        assert deviation(pyat[:, 4] + slip, impactx[:, 4]) < 1e-11
        assert deviation(pyat[:, 4], impactx[:, 4]) > 1e-7


def test_paraxial_quadrupole_is_the_labelled_fourth_order_integrator() -> None:
    scenario = load_scenario("fodo_paraxial")
    _, (impactx, pyat), (_, model) = tracks(scenario, "impactx", "pyat")
    assert model == ("stand-in:pyat(beta=1: no velocity slip, "
                     "ChrQuad->StrMPoleSymplectic4Pass x10)")
    assert 1e-6 < deviation(pyat, impactx)[:4].max() < 1e-3


def _quad_cell(mapsteps: int):
    return make({"d": {"kind": "Drift", "length": 0.25},
                 "q": {"kind": "Quadrupole", "length": 1.0, "MagneticMultipoleP": {"Kn1": 1.0}},
                 "d2": {"kind": "Drift", "length": 0.5}},
                "exact", integrator={"nslice": 1, "mapsteps": mapsteps})


@pytest.mark.parametrize("steps", [3, 12])
def test_exact_quadrupoles_of_pyat_and_xsuite_are_the_same_integrator(steps: int) -> None:
    pytest.importorskip("xtrack")
    _, (xsuite, pyat), models = tracks(_quad_cell(steps), "xsuite", "pyat")
    assert f"ExactMultipolePass x{steps}" in models[1]
    assert deviation(pyat, xsuite)[:4].max() < 1e-11


SAME_TRANSVERSE = {
    "solenoid": (make({"s": {"kind": "Solenoid", "length": 1.0,
                             "SolenoidP": {"Ksol": 0.7}}}), 1e-13),
    "thin multipole": (make({"m": {"kind": "Multipole", "length": 0.0,
                                   "MagneticMultipoleP": {"Kn1L": 0.3, "Ks1L": 0.1,
                                                          "Kn2L": 50.0, "Ks2L": 20.0,
                                                          "Kn3L": 3e4}},
                             "d": {"kind": "Drift", "length": 1.0}}, "paraxial",
                            WIDE_TWISS), 1e-13),
    "thin and thick kickers": (make(KICKERS, "paraxial"), 1e-13),
    "combined-function bend with edges": (make({"b": {
        "kind": "SBend", "length": 0.5, "BendP": {"g_ref": 0.2, "e1": 0.03, "e2": 0.07},
        "MagneticMultipoleP": {"Kn1": 0.8}}}), 1e-9),
}


@pytest.mark.parametrize("case", list(SAME_TRANSVERSE))
def test_transverse_maps_agree_with_impactx(case: str) -> None:
    scenario, tolerance = SAME_TRANSVERSE[case]
    _, (impactx, pyat), _ = tracks(scenario, "impactx", "pyat")
    assert deviation(pyat, impactx)[:4].max() < tolerance


def test_unsupported_cases_say_why() -> None:
    backend = PyatBackend()
    rf = make({"rf": {"kind": "RFCavity", "length": 0.0,
                      "RFP": {"voltage": 1e6, "frequency": 1.3e9, "phase": 0.0}}})
    assert "RFCavity" in backend.supports(rf).reason
    verdict = backend.supports(load_scenario("fodo_space_charge"))
    assert isinstance(verdict, Unsupported) and "space-charge" in verdict.reason
    assert "float64" in backend.supports(load_scenario("fodo_linear"), "cpu", "float32").reason


def test_coordinate_conversion_round_trip_is_exact_at_low_energy() -> None:
    scenario = make({"d": {"kind": "Drift", "length": 1.0}},
                    beam={"species": "proton", "kinetic_energy_MeV": 50.0})
    reference = scenario.reference_particle
    p = generate(scenario.beam, 500)
    r = to_at(p, reference)
    assert r.flags.f_contiguous and r.shape == (6, 500)
    # delta of the particle momentum: P / P0 from the energy E = E0 - pt P0 c
    energy = reference.total_energy_eV - p[:, 5] * reference.p0c_eV
    momentum = np.sqrt(energy**2 - reference.mass_eV**2)
    np.testing.assert_allclose(r[4], momentum / reference.p0c_eV - 1.0, rtol=0, atol=1e-13)
    assert deviation(from_at(r, reference), p).max() < 1e-12


def test_tracks_on_one_thread() -> None:
    with PyatBackend().prepare(load_scenario("fodo_linear")) as prepared:
        assert prepared.threads == 1
