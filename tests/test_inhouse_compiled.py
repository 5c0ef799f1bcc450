"""The in-place forward paths of the in-house tracker: blocked eager and ``torch.compile``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from backends.inhouse import InhouseBackend
from backends.inhouse import compiled as compiled_module
from backends.inhouse.compiled import CompiledForward, compile_mode, elementwise_steps
from backends.inhouse.tracker import Tracker, run_steps, track_inplace
from harness.lattice import Element
from harness.particles import generate
from harness.scenario import load_scenario

N = 1000
SCENARIOS = ("fodo_paraxial", "fodo_exact", "chicane")


def columns_of(particles: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Six separate contiguous float64 columns of ``(N, 6)`` particles."""
    return tuple(torch.tensor(np.ascontiguousarray(particles[:, i])) for i in range(6))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference per coordinate relative to that coordinate's largest |value|."""
    scale = b.abs().amax(dim=0)
    return float(((a - b).abs().amax(dim=0) / scale).max())


def setup(name: str):
    scenario = load_scenario(name)
    particles = generate(scenario.beam, N)
    tracker = Tracker(scenario.elements, scenario.reference_particle)
    return scenario, particles, tracker


@pytest.mark.parametrize("name", SCENARIOS)
def test_blocked_inplace_track_equals_the_tracker(name):
    _, particles, tracker = setup(name)
    expected, alive = tracker.track(torch.from_numpy(particles))
    columns = columns_of(particles)
    mask = track_inplace(tracker.steps(), columns, block=300)
    assert alive is None and mask is None
    assert relative_error(torch.stack(columns, dim=-1), expected) < 1e-15


def test_blocked_track_carries_the_survival_mask():
    scenario = load_scenario("fodo_linear")
    particles = generate(scenario.beam, N)
    slit = Element(name="slit", kind="Aperture",
                   params={"length": 0.0, "x_limit": 1e-4, "y_limit": 1e-4, "elliptical": True})
    tracker = Tracker([*scenario.elements, slit], scenario.reference_particle)
    expected, alive = tracker.track(torch.from_numpy(particles))
    columns = columns_of(particles)
    mask = track_inplace(tracker.steps(), columns, block=256)
    assert 0 < int(alive.sum()) < N
    assert torch.equal(mask, alive)
    assert relative_error(torch.stack(columns, dim=-1), expected) < 1e-15


@pytest.mark.parametrize("name", ("chicane", "fodo_linear"))
def test_elementwise_linear_steps_equal_the_matrix_product(name):
    _, particles, tracker = setup(name)
    steps = tracker.steps()
    columns = columns_of(particles)
    by_matrix, _ = run_steps(steps, columns)
    by_sums, _ = run_steps(elementwise_steps(steps), columns)
    assert relative_error(torch.stack(by_sums, -1), torch.stack(by_matrix, -1)) < 1e-15


def test_compile_mode_from_option_and_environment(monkeypatch):
    monkeypatch.delenv(compiled_module.ENV_VAR, raising=False)
    assert compile_mode() is None
    assert compile_mode(True) is True and compile_mode(False) is False
    monkeypatch.setenv(compiled_module.ENV_VAR, "0")
    assert compile_mode() is False
    assert compile_mode(True) is True
    monkeypatch.setenv(compiled_module.ENV_VAR, "1")
    assert compile_mode() is True


def test_adapter_stays_eager_below_the_threshold(monkeypatch):
    monkeypatch.delenv(compiled_module.ENV_VAR, raising=False)
    scenario, _, tracker = setup("fodo_paraxial")
    particles = generate(scenario.beam, compiled_module.MIN_PARTICLES - 1)
    prepared = InhouseBackend().prepare(scenario)
    out = prepared.track(particles)
    assert prepared.compiled is False and prepared.compile_s == 0.0
    assert prepared.threads == torch.get_num_threads()
    expected, _ = tracker.track(torch.from_numpy(particles))
    np.testing.assert_array_equal(out, expected.numpy())


def test_failed_compilation_falls_back_to_eager(monkeypatch):
    _, particles, tracker = setup("fodo_paraxial")

    def broken_compile(*args, **kwargs):
        def fail(*a, **k):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    forward = CompiledForward(tracker.steps(), compile=True)
    columns = columns_of(particles)
    assert forward(columns) is None
    assert forward.compiled is False and "no C++ compiler" in forward.error
    expected, _ = tracker.track(torch.from_numpy(particles))
    assert torch.equal(torch.stack(columns, dim=-1), expected)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.parametrize("name", SCENARIOS)
def test_compiled_track_agrees_with_eager(name):
    scenario, particles, _ = setup(name)
    compiled = InhouseBackend().prepare(scenario, compile=True)
    eager = InhouseBackend().prepare(scenario, compile=False)
    out = compiled.track(particles)
    assert compiled.compiled is True, compiled.compile_error
    assert compiled.compile_s > 0.0
    again = compiled.track(particles)
    reference = eager.track(particles)
    assert eager.compiled is False
    np.testing.assert_array_equal(again, out)
    assert relative_error(torch.from_numpy(out), torch.from_numpy(reference)) < 1e-13
