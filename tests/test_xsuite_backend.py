"""The Xsuite adapter against ImpactX particle by particle, its model labels, the refusals
with reasons, and the OpenMP kernel cache.

Agreement is max |dev| / std(reference coordinate) over all particles, per coordinate.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

pytest.importorskip("xtrack")
pytest.importorskip("impactx")

from scenario_helpers import KICKERS, WIDE_TWISS, cross_check_scenario  # noqa: E402

from backends.base import Unsupported, model_signature  # noqa: E402
from backends.registry import get_backend  # noqa: E402
from backends.xsuite import XsuiteBackend, from_xsuite, to_xsuite, translate  # noqa: E402
from harness.model.lattice import Element  # noqa: E402
from harness.model.load import load_scenario  # noqa: E402
from harness.model.particles import generate  # noqa: E402

N = 2000
PROTON = {"species": "proton", "kinetic_energy_MeV": 800.0}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


#: ``make(elements, model, beam, **extra)``: the cross-check scenario through ``elements``.
make = partial(cross_check_scenario, name="xsuite_test")


def against_impactx(scenario, name: str = "xsuite", n: int = N) -> tuple[np.ndarray, str]:
    """Per-coordinate deviation of a backend from ImpactX, and the backend's model label."""
    particles = generate(scenario.beam, n)
    with get_backend("impactx").prepare(scenario) as prepared:
        reference = prepared.track(particles)
    with get_backend(name).prepare(scenario) as prepared:
        final = prepared.track(particles)
        model = prepared.model
    both = np.isfinite(final).all(axis=1) & np.isfinite(reference).all(axis=1)
    np.testing.assert_array_equal(np.isfinite(final).all(axis=1),
                                  np.isfinite(reference).all(axis=1))
    return np.abs(final[both] - reference[both]).max(axis=0) / reference[both].std(axis=0), model


@pytest.mark.parametrize("name", ["fodo_linear", "fodo_paraxial", "chicane"])
def test_bundled_scenarios_agree_with_impactx_on_the_same_model(name: str) -> None:
    scenario = load_scenario(name)
    deviation, model = against_impactx(scenario)
    assert model == model_signature(scenario)
    # linear: the Taylor map's matrix comes from extrapolated central differences
    # (measured: chicane 4e-11, fodo_linear 3e-12, both in t)
    assert deviation.max() < 3e-10, deviation
    assert deviation[:4].max() < (1e-11 if name == "chicane" else 1e-13), deviation


EXACT_BEND = {"kind": "SBend", "length": 0.5, "BendP": {"g_ref": 0.2, "e1": 0.03, "e2": 0.07}}
SAME_MODEL_CASES = {
    "exact drift 5 MeV": (make({"d": {"kind": "Drift", "length": 2.0}}, "exact",
                               {"kinetic_energy_MeV": 5.0}), 1e-11),
    "exact drift 800 MeV p": (make({"d": {"kind": "Drift", "length": 2.0}}, "exact", PROTON),
                              1e-11),
    "paraxial drift 5 MeV": (make({"d": {"kind": "Drift", "length": 2.0}}, "paraxial",
                                  {"kinetic_energy_MeV": 5.0}), 1e-11),
    "exact bend with edges": (make({"b": EXACT_BEND, "d": {"kind": "Drift", "length": 1.0}},
                                   "exact"), 1e-10),
    "exact bend, negative, p": (make({"b": {**EXACT_BEND, "BendP": {
        "g_ref": -0.2, "e1": -0.03, "e2": 0.02}}}, "exact", PROTON), 1e-10),
    "linear combined-function bend, p": (make({"b": {**EXACT_BEND, "MagneticMultipoleP": {
        "Kn1": 0.8}}}, "linear", PROTON), 1e-10),
    "thin multipole orders 1-3": (make({"m": {"kind": "Multipole", "length": 0.0,
                                              "MagneticMultipoleP": {
                                                  "Kn1L": 0.3, "Ks1L": 0.1, "Kn2L": 50.0,
                                                  "Ks2L": 20.0, "Kn3L": 3e4}},
                                        "d": {"kind": "Drift", "length": 1.0}},
                                       "paraxial", WIDE_TWISS), 1e-11),
    "thin and thick kickers": (make(KICKERS, "paraxial"), 1e-11),
    "solenoid, p": (make({"s": {"kind": "Solenoid", "length": 1.0,
                                "SolenoidP": {"Ksol": 0.7}}}, "linear", PROTON), 1e-10),
}


@pytest.mark.parametrize("case", list(SAME_MODEL_CASES))
def test_element_maps_are_impactx_maps(case: str) -> None:
    scenario, tolerance = SAME_MODEL_CASES[case]
    deviation, model = against_impactx(scenario)
    assert model == model_signature(scenario)
    assert deviation.max() < tolerance, deviation


def _quad_cell(mapsteps: int, model: str = "exact"):
    return make({"d": {"kind": "Drift", "length": 0.25},
                 "q": {"kind": "Quadrupole", "length": 1.0, "MagneticMultipoleP": {"Kn1": 1.0}},
                 "d2": {"kind": "Drift", "length": 0.5}},
                model, integrator={"nslice": 1, "mapsteps": mapsteps})


def test_exact_quadrupole_is_a_labelled_integrator_that_converges_with_steps() -> None:
    particles = generate(_quad_cell(1).beam, N)
    with get_backend("impactx").prepare(_quad_cell(200)) as prepared:
        converged = prepared.track(particles)
    deviations = []
    for steps in (2, 8):
        with XsuiteBackend().prepare(_quad_cell(steps)) as prepared:
            assert prepared.model == (
                f"stand-in:xsuite(ExactQuad->drift-kick-drift-exact yoshida-4 x{steps})")
            final = prepared.track(particles)
        deviations.append((np.abs(final - converged).max(axis=0) / converged.std(axis=0)).max())
    # a fourth-order integrator: 4x the steps -> 256x smaller error (measured 0.034 at 2
    # steps, 1.2e-4 at 8; ImpactX at 200 steps is 4e-8 from 800 steps)
    assert deviations[1] < deviations[0] / 100, deviations


def test_translation_refuses_a_field_it_does_not_honour() -> None:
    element = Element("q", "Quadrupole", {"length": 1.0, "Kn1": 1.0, "tilt": 0.1},
                      tier="paraxial", requested_tier="paraxial")
    verdict = translate(element)
    assert isinstance(verdict, Unsupported) and "tilt" in verdict.reason


def test_unsupported_cases_say_why() -> None:
    backend = XsuiteBackend()
    rf = make({"rf": {"kind": "RFCavity", "length": 0.0,
                      "RFP": {"voltage": 1e6, "frequency": 1.3e9, "phase": 0.0}}})
    assert "RFCavity" in backend.supports(rf).reason
    sc = load_scenario("fodo_space_charge")
    assert "space charge" in backend.supports(sc).reason
    assert "float64" in backend.supports(load_scenario("fodo_linear"), "cpu", "float32").reason
    assert "cpu" in backend.supports(load_scenario("fodo_linear"), "cuda").reason.lower()


def test_coordinate_conversion_round_trip_is_exact() -> None:
    scenario = make({"d": {"kind": "Drift", "length": 1.0}}, beam={"kinetic_energy_MeV": 5.0})
    p = generate(scenario.beam, 100)
    beta0 = scenario.reference_particle.beta
    c = to_xsuite(p, beta0)
    np.testing.assert_allclose(c["zeta"], -beta0 * p[:, 4], rtol=1e-16)
    back = from_xsuite(c["x"], c["px"], c["y"], c["py"], c["zeta"], c["ptau"], beta0)
    np.testing.assert_allclose(back, p, rtol=1e-15, atol=0)


@pytest.mark.slow
@pytest.mark.xdist_group("processes")  # two OpenMP threads: not beside the timed tests
def test_openmp_tracking_uses_the_cached_kernel_and_agrees_with_serial(monkeypatch) -> None:
    """Two threads: the OpenMP kernel is compiled once into the project cache (the first
    time on a machine), found there by Xsuite's prebuilt-kernel lookup, and tracks exactly
    as the serial prebuilt kernel does."""
    from backends.xsuite import _kernel_module_name, kernel_dir

    scenario = load_scenario("fodo_paraxial")
    particles = generate(scenario.beam, N)
    with XsuiteBackend().prepare(scenario) as prepared:
        serial = prepared.track(particles)
        assert prepared.threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with XsuiteBackend().prepare(scenario) as prepared:
        assert prepared.compile_error == "" and prepared.threads == 2
        parallel = prepared.track(particles)
        config = prepared.line.config
    assert (kernel_dir() / f"{_kernel_module_name(config)}.json").exists()
    np.testing.assert_allclose(parallel, serial, rtol=0, atol=1e-15)
