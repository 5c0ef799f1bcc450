"""Blow-ups are never losses: only an aperture of the scenario loses a particle.

A quadrupole of Kn1 = +-1e6 m^-2 (no aperture) sends every particle to a non-finite or
astronomically large coordinate in every code; each backend must report them ``blown_up``,
never ``lost`` (before, Cheetah, Xsuite, pyAT and the in-house tracker returned them as the
all-NaN rows of aperture losses, and the in-house tracker raised OverflowError). A particle
a code stops by its own amplitude limit (Xsuite's and AT's 1 m) without an aperture there is
a blow-up too, while the same code's aperture losses stay losses. The verdict never calls a
blow-up "losses that agree", and ``blow-up`` / ``model-mismatch`` details show the
survivors' deviation.
"""

from __future__ import annotations

import numpy as np
import pytest

from backends.base import final_particles
from backends.registry import available_backends, get_backend
from harness import agreement
from harness.model import observables
from tests.test_backend_contract import make_scenario, particles_of

BACKENDS = [name for name in available_backends() if name != "cheetah-compiled"]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def track(name: str, scenario, particles: np.ndarray) -> np.ndarray:
    backend = get_backend(name)
    if not backend.supports(scenario):
        pytest.skip(f"{name} does not run this scenario")
    with backend.prepare(scenario, "cpu", "float64") as prepared:
        return prepared.track(particles)


def divergent(particles: np.ndarray) -> np.ndarray:
    """Particles with 150 times the angles (rms ~1e-2 rad): metres after 100 m."""
    out = particles.copy()
    out[:, [1, 3]] *= 150.0
    return out


def test_final_particles_tells_blow_ups_from_losses():
    raw = np.ones((5, 6))
    raw[0] = np.nan                  # lost at an aperture
    raw[1] = np.nan                  # blew up to NaN everywhere: not a loss
    raw[2, 3] = np.inf               # blew up in one coordinate
    stopped = np.array([False, False, False, True, False])   # stopped by the code's limit
    out = final_particles(raw, lost=np.array([True, False, False, False, False]),
                          stopped=stopped)
    fate = observables.fates(out)
    assert fate.lost.tolist() == [True, False, False, False, False]
    assert fate.blown_up.tolist() == [False, True, True, True, False]
    assert np.isinf(out[1]).all() and out[2, 3] == np.inf and np.isinf(out[3]).all()
    np.testing.assert_array_equal(out[4], raw[4])
    assert np.isnan(raw[1]).all()    # the input is not modified


@pytest.mark.parametrize("name", BACKENDS)
def test_a_blown_up_quadrupole_is_a_blow_up_in_every_backend(name: str):
    scenario = make_scenario([
        ("q1", {"kind": "Quadrupole", "length": 1.0, "MagneticMultipoleP": {"Kn1": 1e6}}),
        ("q2", {"kind": "Quadrupole", "length": 1.0, "MagneticMultipoleP": {"Kn1": -1e6}})])
    final = track(name, scenario, particles_of(scenario, 16))
    fate = observables.fates(final)
    assert (int(fate.lost.sum()), int(fate.blown_up.sum())) == (0, 16)


@pytest.mark.parametrize("name", [b for b in BACKENDS if b in ("xsuite", "pyat")])
def test_a_code_amplitude_limit_is_a_blow_up_and_an_aperture_a_loss(name: str):
    """x = px L reaches metres after 100 m: Xsuite and AT stop such particles at 1 m."""
    far = make_scenario([("d", {"kind": "Drift", "length": 100.0})])
    p0 = divergent(particles_of(far, 64))
    fate = observables.fates(track(name, far, p0))
    beyond = ((np.abs(p0[:, 0] + 100.0 * p0[:, 1]) > 1.0)
              | (np.abs(p0[:, 2] + 100.0 * p0[:, 3]) > 1.0))
    assert 0 < beyond.sum() < 64 and not fate.lost.any()
    np.testing.assert_array_equal(fate.blown_up, beyond)
    a = 1e-2
    cut = make_scenario([
        ("d", {"kind": "Drift", "length": 1.0}),
        ("ap", {"kind": "Marker", "ApertureP": {"x_limits": [-a, a], "y_limits": [-a, a]}}),
        ("far", {"kind": "Drift", "length": 100.0})])
    p0 = divergent(particles_of(cut, 64))
    fate = observables.fates(track(name, cut, p0))
    outside = (np.abs(p0[:, 0] + p0[:, 1]) > a) | (np.abs(p0[:, 2] + p0[:, 3]) > a)
    assert 0 < outside.sum() < 64
    x1, y1 = p0[:, 0] + 1.0 * p0[:, 1], p0[:, 2] + 1.0 * p0[:, 3]
    beyond = (np.abs(x1 + 100.0 * p0[:, 1]) > 1.0) | (np.abs(y1 + 100.0 * p0[:, 3]) > 1.0)
    np.testing.assert_array_equal(fate.lost, outside)
    np.testing.assert_array_equal(fate.blown_up, ~outside & beyond)


def test_a_reference_that_blew_up_never_agrees_with_losses():
    tolerance = agreement.tolerances("float64", False, False)
    lost = np.full((50, 6), np.nan)
    blown = np.full((50, 6), np.inf)
    deviations = agreement.particle_deviation(lost, blown)
    assert deviations["blown_up_reference"] == 50
    verdict, detail = agreement.verdict("m", "m", deviations, tolerance, 50)
    assert verdict == "blow-up"
    assert "50 particle(s) blew up in the reference" in detail
    assert "losses agree" not in detail
    row = {"kind": "track", "status": "ok", "verdict": "agrees", "role": "case",
           "model": "m", "reference_model": "m", "dtype": "float64", "particles": 50,
           "space_charge": False, "reference": "impactx"} | deviations
    assert agreement.rejudge(row)[0] == "blow-up"


def test_blow_up_and_model_mismatch_show_the_survivors_deviation():
    tolerance = agreement.tolerances("float64", False, False)
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(100, 6))
    final = reference + 4.3 * reference.std(axis=0) * (np.arange(100) == 7)[:, None]
    deviations = agreement.particle_deviation(final, reference)
    verdict, detail = agreement.verdict("stand-in:x", "linear", deviations, tolerance, 100)
    assert verdict == "model-mismatch"
    assert "100 survivors: dev_max=4.3 " in detail and "dev_max=4.3 > 1e-08" in detail
    blown = deviations | {"blown_up": 3}
    verdict, detail = agreement.verdict("linear", "linear", blown, tolerance, 100)
    assert verdict == "blow-up"
    assert detail.startswith("3 particle(s) blew up numerically")
    assert "dev_max=4.3" in detail
    same = agreement.particle_deviation(reference, reference)
    detail = agreement.verdict("stand-in:x", "linear", same, tolerance, 100)[1]
    assert "dev_max=0 dev_rms=0 sigma (within tolerance)" in detail
