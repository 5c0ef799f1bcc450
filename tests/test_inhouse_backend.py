"""The in-house tracker's backend adapter (``backends.inhouse``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from backends.base import Supported, Unsupported
from backends.inhouse import BACKEND, InhouseBackend
from backends.inhouse.tracker import Tracker
from backends.registry import backend_classes
from harness.model.load import resolve_scenario_path, scenario_from_dict
from harness.model.particles import generate
from harness.model.vocabulary import ELEMENT_TIERS

N = 2000


def scenario(name: str, **changes):
    data = yaml.safe_load(resolve_scenario_path(name).read_text())
    data.update(changes)
    return scenario_from_dict(data)


def with_aperture(half_width: float):
    """fodo_linear with an elliptical aperture of the given half-widths at its end."""
    data = yaml.safe_load(resolve_scenario_path("fodo_linear").read_text())
    facility = data["lattice"]["PALS"]["facility"]
    facility.insert(0, {"slit": {"kind": "Marker", "ApertureP": {
        "x_limits": [-half_width, half_width], "y_limits": [-half_width, half_width],
        "shape": "ELLIPTICAL"}}})
    facility[-2]["fodo_cell"]["line"].append("slit")
    return scenario_from_dict(data)


def test_registered_with_its_metadata():
    assert backend_classes()["inhouse"] is InhouseBackend
    assert BACKEND is InhouseBackend
    assert InhouseBackend.differentiable
    assert InhouseBackend.distribution == "trackbench"
    assert set(ELEMENT_TIERS) | {"Aperture"} <= InhouseBackend.element_kinds
    assert InhouseBackend.availability().available


def test_tracks_like_the_tracker_and_reports_its_model():
    sc = scenario("chicane")
    particles = generate(sc.beam, N)
    with InhouseBackend().prepare(sc, "cpu", "float64") as prepared:
        out = prepared.track(particles)
        assert prepared.model == "linear"
        assert prepared.threads == torch.get_num_threads()
    expected, _ = Tracker(sc.elements, sc.reference_particle).track(torch.from_numpy(particles))
    assert out.dtype == np.float64 and out.shape == (N, 6)
    np.testing.assert_array_equal(out, expected.numpy())


@pytest.mark.parametrize("name", ["fodo_paraxial", "fodo_exact", "fodo_sextupole"])
def test_float32_is_close_to_float64(name):
    """Measured at 1e4 particles: <= 9e-6 of sigma (the t updates of the paraxial and exact
    maps are written without O(1) cancellations)."""
    sc = scenario(name)
    particles = generate(sc.beam, N)
    backend = InhouseBackend()
    out64 = backend.prepare(sc, "cpu", "float64").track(particles)
    out32 = backend.prepare(sc, "cpu", "float32").track(particles)
    assert out32.dtype == np.float64
    rel = np.abs(out32 - out64).max(axis=0) / out64.std(axis=0)
    assert rel.max() < 2e-5


def test_lost_particles_are_nan_rows():
    sc = with_aperture(1.5e-4)
    particles = generate(sc.beam, N)
    out = InhouseBackend().prepare(sc).track(particles)
    lost = np.isnan(out).any(axis=1)
    assert np.isnan(out[lost]).all()
    assert 0 < lost.sum() < N
    radius2 = (out[~lost, 0] ** 2 + out[~lost, 2] ** 2) / 1.5e-4**2
    assert radius2.max() <= 1.0


def test_supports():
    backend = InhouseBackend()
    assert isinstance(backend.supports(scenario("fodo_exact")), Supported)
    assert backend.supports(scenario("fodo_exact")).model == "exact"
    assert "float16" in backend.supports(scenario("fodo_linear"), "cpu", "float16").reason
    sc = scenario("expanding_beam", space_charge={"kind": "2p5d", "grid": [32, 32, 1],
                                                  "kicks_per_element": 12})
    verdict = backend.supports(sc)
    assert isinstance(verdict, Supported) and "sc:2p5d" in verdict.model
    assert isinstance(backend.supports(scenario("fodo_linear"), "cpu", "float16"), Unsupported)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_unavailable_is_unsupported_with_a_reason():
    verdict = InhouseBackend().supports(scenario("fodo_linear"), "cuda", "float64")
    assert isinstance(verdict, Unsupported)
    assert "cuda" in verdict.reason.lower()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs torch.cuda.is_available()")
@pytest.mark.parametrize("name", ["fodo_exact", "chicane", "fodo_sextupole"])
def test_cuda_matches_cpu(name):
    sc = scenario(name)
    particles = generate(sc.beam, N)
    backend = InhouseBackend()
    cpu = backend.prepare(sc, "cpu", "float64").track(particles)
    cuda = backend.prepare(sc, "cuda", "float64").track(particles)
    assert (np.abs(cuda - cpu).max(axis=0) / cpu.std(axis=0)).max() < 1e-12


def test_objective_tracks_the_given_particles():
    sc = scenario("fodo_paraxial")
    particles = generate(sc.beam, N) * 1.5  # not the scenario's own draw
    f, theta0 = InhouseBackend().objective(sc, ["quad1.Kn1"], "sigma_x", particles, "cpu",
                                           "float64")
    assert theta0.tolist() == [1.0]
    out = InhouseBackend().prepare(sc).track(particles)
    assert float(f(theta0)) == pytest.approx(float(out[:, 0].std()), rel=1e-13)


def test_objective_draws_particles_for_beam_parameters():
    sc = scenario("fodo_paraxial")
    particles = generate(sc.beam, N)
    f, theta0 = InhouseBackend().objective(sc, ["beam.twiss.beta_x", "quad2.Kn1"], "sigma_x",
                                           particles, "cpu", "float64")
    out = InhouseBackend().prepare(sc).track(particles)
    assert float(f(theta0)) == pytest.approx(float(out[:, 0].std()), rel=1e-13)
    # a case the backend does not run has no objective
    assert InhouseBackend().objective(sc, ["quad2.Kn1"], "sigma_x", particles, "cpu",
                                      "float16") is None


def test_importing_the_adapter_does_not_import_torch():
    code = ("import sys, backends.inhouse; from backends.inhouse import translate; "
            "assert translate.KINDS is backends.inhouse.InhouseBackend.element_kinds")
    subprocess.run([sys.executable, "-c", code], check=True)
    probe = "import sys, backends.inhouse; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                            text=True)
    assert result.stdout.strip() == "False"
