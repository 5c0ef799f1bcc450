"""The Ocelot adapter against ImpactX particle by particle: Ocelot's first-order maps are
ImpactX's linear tier to round-off (all six coordinates), the paraxial and exact tiers run
Ocelot's second-order maps as a labelled stand-in, and what Ocelot does not model is refused
with its reason.

Agreement is max |dev| / std(reference coordinate) over all particles, per coordinate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scenario_helpers import line_scenario

pytest.importorskip("ocelot")
pytest.importorskip("impactx")

from backends.base import Unsupported  # noqa: E402
from backends.ocelot import OcelotBackend, from_ocelot, to_ocelot  # noqa: E402
from backends.registry import get_backend  # noqa: E402
from harness.model.load import load_scenario  # noqa: E402
from harness.model.particles import generate  # noqa: E402

N = 2000
#: Same model (ImpactX's linear tier = Ocelot's TransferMap): round-off over a few elements.
SAME_MODEL = 1e-12


def make(elements: dict[str, dict], model: str = "linear", **settings: Any):
    """A scenario of one beamline through ``elements`` (name: PALS fields) in order."""
    return line_scenario(list(elements.items()), "ocelot_test", model, **settings)


def against_impactx(scenario, position_scale: float = 1.0
                    ) -> tuple[np.ndarray, np.ndarray, str]:
    """ImpactX's and Ocelot's final particles from the same initial ones (x and y times
    ``position_scale``, for nonlinear kicks well above round-off), and Ocelot's model."""
    particles = generate(scenario.beam, N)
    particles[:, [0, 2]] *= position_scale
    finals = {}
    for name in ("impactx", "ocelot"):
        with get_backend(name).prepare(scenario) as prepared:
            finals[name] = (prepared.track(particles), prepared.model)
    return finals["impactx"][0], finals["ocelot"][0], finals["ocelot"][1]


def deviation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b).max(axis=0) / b.std(axis=0)


@pytest.mark.parametrize("name", ["fodo_linear", "chicane", "fodo_channel"])
def test_linear_scenarios_are_impactx_particle_by_particle(name: str) -> None:
    scenario = load_scenario(name)
    impactx, ocelot, model = against_impactx(scenario)
    assert model == "linear"
    assert deviation(ocelot, impactx).max() < SAME_MODEL


def test_paraxial_scenario_is_the_labelled_second_order_map() -> None:
    scenario = load_scenario("fodo_paraxial")
    impactx, ocelot, model = against_impactx(scenario)
    assert model == "stand-in:ocelot(ChrDrift->SecondTM, ChrQuad->SecondTM)"
    assert 1e-6 < deviation(ocelot, impactx)[:4].max() < 1e-3


SAME_LINEAR_MAP = {
    "solenoid (k = Ksol / 2)": make({"s": {"kind": "Solenoid", "length": 1.0,
                                           "SolenoidP": {"Ksol": 0.7}}}),
    "thin normal multipole": make({"m": {"kind": "Multipole", "length": 0.0,
                                         "MagneticMultipoleP": {"Kn1L": 0.3, "Kn2L": 50.0,
                                                                "Kn3L": 3e4}},
                                   "d": {"kind": "Drift", "length": 1.0}}),
    "thin and thick kickers": make({
        "k1": {"kind": "Kicker", "length": 0.0,
               "MagneticMultipoleP": {"Kn0L": 2e-5, "Ks0L": -3e-5}},
        "d": {"kind": "Drift", "length": 1.0},
        "k2": {"kind": "Kicker", "length": 0.4,
               "MagneticMultipoleP": {"Kn0L": -1e-5, "Ks0L": 4e-5}}}),
    "combined-function bend with edges": make({"b": {
        "kind": "SBend", "length": 0.5, "BendP": {"g_ref": 0.2, "e1": 0.03, "e2": 0.07},
        "MagneticMultipoleP": {"Kn1": 0.8}}}),
    "50 MeV protons (gamma0 through Ocelot's electron mass)": make(
        {"d": {"kind": "Drift", "length": 1.0},
         "q": {"kind": "Quadrupole", "length": 0.5, "MagneticMultipoleP": {"Kn1": 2.0}}},
        species="proton", energy_MeV=50.0),
}


@pytest.mark.parametrize("case", list(SAME_LINEAR_MAP))
def test_linear_elements_agree_with_impactx(case: str) -> None:
    scale = 3.0 if case == "thin normal multipole" else 1.0
    impactx, ocelot, model = against_impactx(SAME_LINEAR_MAP[case], scale)
    assert model == "linear"
    assert deviation(ocelot, impactx).max() < SAME_MODEL


def test_coordinate_conversion_round_trip_is_exact() -> None:
    """x' = px, tau = t, p = (E - E0) / (p0 c) = -pt: no reference quantity, bit for bit."""
    scenario = make({"d": {"kind": "Drift", "length": 1.0}},
                    species="proton", energy_MeV=50.0)
    reference = scenario.reference_particle
    p = generate(scenario.beam, 500)
    r = to_ocelot(p)
    assert r.shape == (6, 500)
    # p from the particle energies E = E0 - pt p0 c (E - E0 loses ~1e-16 E / p0c to rounding)
    energy = reference.total_energy_eV - p[:, 5] * reference.p0c_eV
    np.testing.assert_allclose(r[5], (energy - reference.total_energy_eV) / reference.p0c_eV,
                               rtol=0, atol=1e-14)
    np.testing.assert_array_equal(r[4], p[:, 4])
    np.testing.assert_array_equal(from_ocelot(r), p)


def test_aperture_losses_keep_the_order() -> None:
    """Ocelot deletes lost particles from its array; they come back as NaN rows in place,
    the survivors equal to ImpactX's."""
    scenario = make({"d": {"kind": "Drift", "length": 1.0},
                     "ap": {"kind": "Marker", "ApertureP": {"x_limits": [-1e-4, 1e-4],
                                                            "y_limits": [-1e-4, 1e-4],
                                                            "shape": "ELLIPTICAL"}},
                     "q": {"kind": "Quadrupole", "length": 0.5,
                           "MagneticMultipoleP": {"Kn1": 2.0}}})
    impactx, ocelot, _ = against_impactx(scenario)
    lost = np.isnan(ocelot).all(axis=1)
    assert 0 < lost.sum() < N
    np.testing.assert_array_equal(lost, np.isnan(impactx).all(axis=1))
    assert deviation(ocelot[~lost], impactx[~lost]).max() < SAME_MODEL


RF = {"kind": "RFCavity", "length": 0.0,
      "RFP": {"voltage": 1e6, "frequency": 1.3e9, "phase": 0.0}}


@pytest.mark.parametrize(("elements", "words"), [
    ({"rf": RF}, ("RFCavity", "rf", "ShortRF")),
    ({"m": {"kind": "Multipole", "length": 0.0,
            "MagneticMultipoleP": {"Kn1L": 0.1, "Ks2L": 3.0}}}, ("Ks2L", "normal")),
    ({"m": {"kind": "Multipole", "length": 0.0,
            "MagneticMultipoleP": {"Kn0L": 1e-4}}}, ("Kn0L",)),
    ({"q": {"kind": "Quadrupole", "length": 0.5, "MagneticMultipoleP": {"Kn1": 1.0},
            "BodyShiftP": {"x_offset": 1e-3}}}, ("x_offset",)),
])
def test_what_ocelot_does_not_model_is_refused_by_name(elements: dict, words: tuple) -> None:
    verdict = OcelotBackend().supports(make(elements))
    assert isinstance(verdict, Unsupported)
    for word in words:
        assert word in verdict.reason, verdict.reason


def test_space_charge_devices_and_dtypes_are_refused_with_the_reason() -> None:
    backend = OcelotBackend()
    verdict = backend.supports(load_scenario("fodo_space_charge"))
    assert isinstance(verdict, Unsupported) and "SpaceCharge" in verdict.reason
    linear = load_scenario("fodo_linear")
    for device, dtype, word in (("cpu", "float32", "float64"), ("cuda", "float64", "cpu")):
        verdict = backend.supports(linear, device, dtype)
        assert isinstance(verdict, Unsupported) and word in verdict.reason, verdict


def test_import_is_silent_and_threads_follow_the_blas_pool() -> None:
    """A fresh process: importing Ocelot through the adapter prints nothing (Ocelot's
    banner and its dependencies' warnings), and ``OMP_NUM_THREADS=1`` gives 1 thread."""
    code = ("import json\n"
            "from backends.registry import get_backend\n"
            "from harness.model.load import load_scenario\n"
            "backend = get_backend('ocelot')\n"
            "assert backend.availability().available\n"
            "prepared = backend.prepare(load_scenario('fodo_linear'))\n"
            "print(json.dumps({'threads': prepared.threads}))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=Path(__file__).resolve().parents[1], timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout) == {"threads": 1}
