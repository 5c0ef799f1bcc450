"""The backend contract: what every registered, available backend must do, tested on each.

A new adapter in ``backends/`` is registered by the registry and so tested here for free:

* a linear drift is the analytic map (ImpactX ``src/elements/Drift.H``: x += L px,
  y += L py, t += L pt / (beta gamma)^2); a backend that runs a named stand-in
  (``stand-in:...``) must still give the analytic transverse coordinates, and one whose
  plan is a stand-in and that declares the exact drift as what it runs at the linear tier
  (``linear_tier_drift = "exact"``) gives ImpactX's exact drift in all six
  (``src/elements/ExactDrift.H``);
* the particle order out is the order in, whatever it is;
* particles lost at an aperture are rows of NaN in place, exactly the analytic set (of the
  drift the backend declares);
* float32 either runs within 1e-3 of sigma of float64 or is refused with a reason;
* what a backend cannot run (an element kind it does not translate, a device it has no
  build for, a dtype it lacks) is ``Unsupported`` with a reason naming it;
* coordinates survive the round trip into the code and back (a zero-length drift);
* every space-charge kind of the schema is planned by a backend that declares it, and
  refused with a reason by one that does not.
"""

from __future__ import annotations

import numpy as np
import pytest
from scenario_helpers import line_scenario

from backends.base import Plan, Supported, Unsupported, model_signature
from backends.registry import available_backends, backend_classes, get_backend
from harness.model.load import scenario_from_dict
from harness.model.particles import beam_cholesky, unit_samples
from harness.model.scenario import SPACE_CHARGE_KINDS
from harness.model.vocabulary import LATTICE_KINDS

BACKENDS = available_backends()
N = 1500


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch) -> None:
    """Serial tracking (codes that read ``OMP_NUM_THREADS`` when they prepare): Xsuite's
    serial kernels are prebuilt, its OpenMP kernel is compiled once per machine and is
    tested in ``tests/test_xsuite_backend.py``."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def make_scenario(elements: list[tuple[str, dict]], model: str = "linear",
                  energy_MeV: float = 2000.0, species: str = "electron"):
    """A scenario of one beamline through ``elements`` (name, PALS fields) in order."""
    return line_scenario(elements, "contract", model, energy_MeV=energy_MeV, species=species)


def particles_of(scenario, n: int = N, seed: int = 3) -> np.ndarray:
    return unit_samples(scenario.beam.distribution, n, seed) @ beam_cholesky(scenario.beam).T


def track(name: str, scenario, particles: np.ndarray, dtype: str = "float64") -> np.ndarray:
    backend = get_backend(name)
    verdict = backend.supports(scenario, "cpu", dtype)
    assert verdict, f"{name} refuses a case of the contract: {verdict.reason}"
    with backend.prepare(scenario, "cpu", dtype) as prepared:
        return prepared.track(particles)


def scaled(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """max |a - b| / std(b) per coordinate."""
    return np.abs(a - b).max(axis=0) / b.std(axis=0)


DRIFT = [("d", {"kind": "Drift", "length": 2.5})]


def planned_model(name: str, scenario) -> str:
    """The model label of the backend's plan of the scenario (which it must accept)."""
    plan = get_backend(name).plan(scenario)
    assert isinstance(plan, Plan), f"{name} refuses a case of the contract: {plan}"
    return plan.model


def declared_drift(name: str, scenario) -> str:
    """The drift a backend runs for the scenario's linear-tier drift: ``"exact"`` when its
    plan is a stand-in and it declares ``linear_tier_drift = "exact"``, else ``"linear"``."""
    declared = getattr(type(get_backend(name)), "linear_tier_drift", "linear")
    return declared if planned_model(name, scenario).startswith("stand-in:") else "linear"


def drift_map(p0: np.ndarray, length: float, scenario, drift: str = "linear") -> np.ndarray:
    """Particles ``(N, 6)`` after a drift of ``length`` [m]: ImpactX's linear ``Drift``
    (``src/elements/Drift.H``: x += L px, y += L py, t += L pt / (beta0 gamma0)^2) or, for
    ``drift="exact"``, its ``ExactDrift`` (``src/elements/ExactDrift.H``:
    pz = sqrt(1 - 2 pt / beta0 + pt^2 - px^2 - py^2), x += L px / pz, y += L py / pz,
    t -= L (1 / beta0 + (pt - 1 / beta0) / pz), here as t -= L (pt + (pz - 1) / beta0) / pz
    with pz - 1 = w / (1 + pz), free of the cancellation of order 1)."""
    reference = scenario.reference_particle
    px, py, pt = p0[:, 1], p0[:, 3], p0[:, 5]
    out = p0.copy()
    if drift == "exact":
        w = pt * pt - 2.0 * pt / reference.beta - px * px - py * py
        pz = np.sqrt(1.0 + w)
        out[:, 0] += length * px / pz
        out[:, 2] += length * py / pz
        out[:, 4] -= length * (pt + w / (1.0 + pz) / reference.beta) / pz
        return out
    out[:, 0] += length * px
    out[:, 2] += length * py
    out[:, 4] += length * pt / reference.beta_gamma ** 2
    return out


def test_every_registered_backend_is_tested_or_says_how_to_install_it() -> None:
    classes = backend_classes()
    assert {"impactx", "cheetah", "inhouse", "xsuite", "pyat", "ocelot", "rftrack"
            } <= set(classes)
    for name, cls in classes.items():
        availability = cls.availability()
        assert (name in BACKENDS) == availability.available
        assert availability.available or availability.hint
        assert cls.element_kinds <= LATTICE_KINDS


@pytest.mark.parametrize("name", BACKENDS)
def test_linear_drift_is_the_analytic_map(name: str) -> None:
    scenario = make_scenario(DRIFT, energy_MeV=5.0)
    p0 = particles_of(scenario)
    p1 = track(name, scenario, p0)
    drift = declared_drift(name, scenario)
    deviation = scaled(p1, drift_map(p0, 2.5, scenario, drift))
    model = planned_model(name, scenario)
    assert deviation[:4].max() < 1e-12, deviation
    if model == model_signature(scenario) or drift == "exact":
        assert deviation.max() < 1e-8, deviation
    else:
        assert model.startswith("stand-in:"), model


@pytest.mark.parametrize("name", BACKENDS)
def test_particle_order_out_is_the_order_in(name: str) -> None:
    scenario = make_scenario([("d", {"kind": "Drift", "length": 1.0}),
                              ("q", {"kind": "Quadrupole", "length": 0.5,
                                     "MagneticMultipoleP": {"Kn1": 2.0}})])
    p0 = particles_of(scenario, 500)
    order = np.random.default_rng(11).permutation(len(p0))
    straight = track(name, scenario, p0)
    shuffled = track(name, scenario, p0[order])
    np.testing.assert_allclose(shuffled, straight[order], rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("shape", ["RECTANGULAR", "ELLIPTICAL"])
def test_aperture_losses_are_nan_rows_in_place(name: str, shape: str) -> None:
    a, b = 8e-5, 1.2e-4
    scenario = make_scenario([
        ("d", {"kind": "Drift", "length": 1.0}),
        ("ap", {"kind": "Marker", "ApertureP": {"x_limits": [-a, a], "y_limits": [-b, b],
                                                "shape": shape}}),
    ])
    p0 = particles_of(scenario)
    p1 = track(name, scenario, p0)
    at_aperture = drift_map(p0, 1.0, scenario, declared_drift(name, scenario))
    x, y = at_aperture[:, 0], at_aperture[:, 2]
    if shape == "RECTANGULAR":
        lost = (np.abs(x) > a) | (np.abs(y) > b)
    else:
        lost = (x / a) ** 2 + (y / b) ** 2 > 1.0
    assert 0 < lost.sum() < len(p0)
    nan_rows = np.isnan(p1).all(axis=1)
    assert not (np.isnan(p1).any(axis=1) & ~nan_rows).any(), "partly NaN rows"
    np.testing.assert_array_equal(nan_rows, lost)
    np.testing.assert_allclose(p1[~lost, 0], x[~lost], rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", BACKENDS)
def test_float32_runs_close_to_float64_or_is_refused(name: str) -> None:
    scenario = make_scenario([("d", {"kind": "Drift", "length": 0.5}),
                              ("q", {"kind": "Quadrupole", "length": 1.0,
                                     "MagneticMultipoleP": {"Kn1": 1.0}}),
                              ("d2", {"kind": "Drift", "length": 0.5})])
    backend = get_backend(name)
    verdict = backend.supports(scenario, "cpu", "float32")
    if isinstance(verdict, Unsupported):
        assert "float32" in verdict.reason
        return
    p0 = particles_of(scenario)
    p64 = track(name, scenario, p0)
    p32 = track(name, scenario, p0, "float32")
    assert p32.dtype == np.float64 and p32.shape == p0.shape
    assert scaled(p32, p64).max() < 1e-3


@pytest.mark.parametrize("name", BACKENDS)
def test_what_cannot_be_run_is_unsupported_with_a_reason(name: str) -> None:
    backend = get_backend(name)
    scenario = make_scenario(DRIFT)
    assert isinstance(backend.supports(scenario), Supported)
    for device, dtype, word in (("mps", "float64", "mps"), ("cpu", "float16", "float16")):
        verdict = backend.supports(scenario, device, dtype)
        assert isinstance(verdict, Unsupported) and word in verdict.reason, verdict
    bodies = {
        "RFCavity": {"kind": "RFCavity", "length": 0.0,
                     "RFP": {"voltage": 1e6, "frequency": 1.3e9, "phase": 0.0}},
        "Solenoid": {"kind": "Solenoid", "length": 0.5, "SolenoidP": {"Ksol": 0.3}},
        "Sextupole": {"kind": "Sextupole", "length": 0.2,
                      "MagneticMultipoleP": {"Kn2": 10.0}},
    }
    for kind, body in bodies.items():
        verdict = backend.supports(make_scenario([("elem", body)]))
        if kind not in type(backend).element_kinds:
            assert isinstance(verdict, Unsupported) and kind in verdict.reason
        elif isinstance(verdict, Unsupported):
            assert "elem" in verdict.reason, verdict.reason


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(("species", "energy_MeV"), [("electron", 5.0), ("proton", 800.0)])
def test_coordinates_survive_the_round_trip(name: str, species: str, energy_MeV: float
                                            ) -> None:
    """Through a zero-length exact drift (the identity): the conversions at the boundary,
    both ways."""
    scenario = make_scenario([("d0", {"kind": "Drift", "length": 0.0})], model="exact",
                             energy_MeV=energy_MeV, species=species)
    p0 = particles_of(scenario)
    p1 = track(name, scenario, p0)
    assert p1.shape == p0.shape
    assert scaled(p1, p0).max() < 1e-12


@pytest.mark.parametrize("name", BACKENDS)
def test_envelope_tracking_runs_or_is_refused_by_name(name: str) -> None:
    """``tracking: envelope``: a backend that declares it (``tracking_modes``) propagates the
    covariance as the in-house tracker does; every other is refused by the base class with
    the mode named."""
    from harness.model.particles import beam_covariance
    from harness.model.scenario import Scenario

    plain = make_scenario([("d", {"kind": "Drift", "length": 2.5}),
                           ("q", {"kind": "Quadrupole", "length": 0.5,
                                  "MagneticMultipoleP": {"Kn1": 1.5}})])
    scenario = Scenario.model_validate(
        plain.model_dump() | {"tracking": "envelope", "lattice": plain.lattice})
    backend = get_backend(name)
    plan = backend.plan(scenario, "cpu", "float64")
    if "envelope" not in type(backend).tracking_modes:
        assert isinstance(plan, Unsupported) and "tracking 'envelope'" in plan.reason
        return
    assert plan, plan
    sigma = beam_covariance(scenario.beam)
    final = backend.prepare_planned(plan).track(sigma)
    expected = get_backend("inhouse").prepare_planned(
        get_backend("inhouse").plan(scenario)).track(sigma)
    assert final.shape == (6, 6)
    assert np.abs(final - expected).max() <= 1e-14 * np.abs(expected).max()


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("kind", SPACE_CHARGE_KINDS)
def test_space_charge_kind_is_planned_where_declared_or_refused(name: str, kind: str) -> None:
    """Each kind of :data:`harness.model.scenario.SPACE_CHARGE_KINDS` (by construction: a new
    kind is tested here) on a drift: a backend that declares it plans it, one that declares
    others refuses it naming the kind, one that declares none (or checks itself) refuses it
    naming space charge."""
    data = make_scenario(DRIFT).model_dump(exclude={"source_file", "lattice_file"})
    data["space_charge"] = {"kind": kind}
    if kind == "2d":
        data["beam"] = {**data["beam"], "bunch_charge_C": 0.0, "current_A": 0.1}
    scenario = scenario_from_dict(data)
    backend = get_backend(name)
    declared = type(backend).space_charge_kinds
    verdict = backend.supports(scenario)
    if declared is not None and kind in declared:
        assert isinstance(verdict, Supported), verdict
        assert kind in model_signature(scenario)
    else:
        assert isinstance(verdict, Unsupported), f"{name} accepts {kind} undeclared"
        assert kind in verdict.reason or "space charge" in verdict.reason.lower().replace(
            "-", " "), \
            verdict.reason
