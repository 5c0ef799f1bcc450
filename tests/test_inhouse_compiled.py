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
from harness.model.lattice import Element
from harness.model.load import load_scenario
from harness.model.particles import generate

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
    # the second track called inductor's kernels directly (checked against dynamo first)
    assert compiled.forward._direct, "the direct kernel calls were not taken"


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
def test_a_direct_call_that_fails_its_check_leaves_the_dynamo_call(monkeypatch):
    """A direct kernel call that raises (or differs) is not used: the track goes on through
    dynamo with the same result."""
    from backends.inhouse.compiled import KernelCapture

    def broken(self, key):
        def call(columns, vector):
            raise RuntimeError("direct call broken")
        return call

    monkeypatch.setattr(KernelCapture, "direct", broken)
    scenario, particles, _ = setup("fodo_paraxial")
    compiled = InhouseBackend().prepare(scenario, compile=True)
    out = compiled.track(particles)
    assert compiled.compiled is True and not compiled.forward._direct
    reference = InhouseBackend().prepare(scenario, compile=False).track(particles)
    np.testing.assert_array_equal(compiled.track(particles), out)
    assert relative_error(torch.from_numpy(out), torch.from_numpy(reference)) < 1e-13


# -- segments: lifted coefficients, shared compiled code ---------------------------------
def test_lift_and_rebuild_round_trip():
    from backends.inhouse.segments import Slot, lift, rebuild

    values: list[float] = []
    tree = (1.5, (2, True, None, "one", (0.25, torch.tensor(3.0))), abs)
    structure = lift(tree, values)
    assert values == [1.5, 0.25, 3.0]
    assert structure[0] == Slot(0) and structure[1][:4] == (2, True, None, "one")
    rebuilt = rebuild(structure, torch.tensor(values, dtype=torch.float64))
    assert float(rebuilt[0]) == 1.5 and float(rebuilt[1][4][1]) == 3.0
    assert rebuilt[2] is abs
    with pytest.raises(TypeError):
        lift((torch.ones(3),), [])


def test_equal_values_share_one_slot_within_a_segment():
    """With ``shared``, equal floats (bit for bit: -0.0 is not 0.0) get one slot."""
    from backends.inhouse.segments import Slot, lift

    values: list[float] = []
    structure = lift((1.5, 2.5, (1.5, -0.0), 0.0, torch.tensor(2.5)), values, {})
    assert values == [1.5, 2.5, -0.0, 0.0]
    assert structure == (Slot(0), Slot(1), (Slot(0), Slot(2)), Slot(3), Slot(1))


@pytest.mark.parametrize("model", ["paraxial", "exact"])
def test_consecutive_additive_maps_are_joined(model):
    """Consecutive drifts, and a paraxial quadrupole written as two equal halves, become one
    map of the summed length: fewer steps, the same track to round-off; a quadrupole of
    another strength, or a parameter given as a tensor, stays a map of its own."""
    def element(name, kind, **params):
        return Element(name=name, kind=kind, params=params, tier=model, requested_tier=model)

    scenario = load_scenario("fodo_paraxial")
    elements = [element("d1", "Drift", length=0.3), element("d2", "Drift", length=0.2),
                element("qa", "Quadrupole", length=0.4, Kn1=2.0),
                element("qb", "Quadrupole", length=0.6, Kn1=2.0),
                element("qc", "Quadrupole", length=0.5, Kn1=-2.0),
                element("d3", "Drift", length=0.7)]
    joined = Tracker(elements, scenario.reference_particle)
    separate = Tracker(elements, scenario.reference_particle, join_additive=False)
    # exact quadrupoles are integrators of their length, not joined; the drifts are
    expected = 5 if model == "exact" else 4
    assert len(joined.steps()) == expected and len(separate.steps()) == 6
    particles = torch.from_numpy(generate(scenario.beam, N))
    a, _ = joined.track(particles)
    b, _ = separate.track(particles)
    assert relative_error(a, b) < 1e-14
    assert relative_error(a, particles) > 1e-3  # the lattice did something
    free = Tracker(elements, scenario.reference_particle, parameters=[("d2", "length")])
    assert len(free.steps({("d2", "length"): torch.tensor(0.2, dtype=torch.float64)})) == (
        expected + 1)


def test_periodic_line_is_cut_into_segments_of_one_signature():
    from backends.inhouse.segments import SEGMENT_COST, segment_steps

    scenario = load_scenario("long_fodo")
    assert len(scenario.elements) >= 150
    tracker = Tracker(scenario.elements, scenario.reference_particle)
    segments = segment_steps(tracker.steps())
    # one cell signature, plus the line's last drift (each cell's last drift is joined
    # with the next cell's first one)
    assert len({s.signature for s in segments}) <= 2
    assert all(len(s.subs) <= SEGMENT_COST for s in segments)
    assert sum(len(s.subs) for s in segments) == len(tracker.steps())
    # the integrator steps of a thick sextupole share one signature, whatever its strength
    sextupole = load_scenario("fodo_sextupole")
    steps = Tracker(sextupole.elements, sextupole.reference_particle).steps()
    kinds = [s.signature for s in segment_steps(steps)]
    assert len(set(kinds)) < len(kinds)


@pytest.mark.parametrize("name", ("fodo_sextupole", "chicane", "fodo_exact"))
def test_generated_segment_functions_equal_the_steps(name):
    """The generated source of every segment, run eagerly (no compiler), tracks as the
    steps do: lifted coefficients change nothing but the type of the constants."""
    from backends.inhouse.segments import segment_function, segment_steps

    _, particles, tracker = setup(name)
    steps = tracker.steps()
    expected = columns_of(particles)
    track_inplace(steps, expected)
    columns = columns_of(particles)
    for segment in segment_steps(steps, limit=7):
        vector = torch.tensor(segment.values or [0.0], dtype=torch.float64)
        segment_function(segment)(*columns, vector)
    assert relative_error(torch.stack(columns, -1), torch.stack(expected, -1)) < 1e-14


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_blocks_with_losses_and_a_second_particle_count():
    """Blocked compiled track (small segments, small blocks) with an aperture: equal to the
    eager track, mask included; a second particle count reuses the compiled code."""
    scenario = load_scenario("fodo_paraxial")
    slit = Element(name="slit", kind="Aperture",
                   params={"length": 0.0, "x_limit": 1e-4, "y_limit": 1e-4, "elliptical": True})
    elements = [*scenario.elements, slit, *scenario.elements]
    tracker = Tracker(elements, scenario.reference_particle)
    forward = CompiledForward(tracker.steps(), compile=True, block=300, segment_cost=2)
    for n in (N, 700):
        particles = generate(scenario.beam, n)
        expected, alive = tracker.track(torch.from_numpy(particles))
        columns = columns_of(particles)
        mask = forward(columns)
        assert forward.compiled is True, forward.error
        assert len(forward.segments) >= 3 and forward.kernels < len(forward.segments)
        assert 0 < int(alive.sum()) < n and torch.equal(mask, alive)
        assert relative_error(torch.stack(columns, -1), expected) < 1e-13
        if n == N:
            compile_s = forward.compile_s
            assert compile_s > 0.0
    assert forward.compile_s == compile_s


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ("fodo_sextupole", "long_fodo"))
def test_compiled_cuda_track_agrees_with_cpu_eager(name):
    scenario, particles, _ = setup(name)
    cuda = InhouseBackend().prepare(scenario, device="cuda", compile=True)
    out = cuda.track(particles)
    assert cuda.compiled is True, cuda.compile_error
    reference = InhouseBackend().prepare(scenario, compile=False).track(particles)
    assert relative_error(torch.from_numpy(out), torch.from_numpy(reference)) < 1e-12


@pytest.mark.parametrize(("name", "kernels"), [("htu", 6), ("long_fodo", 2),
                                                ("fodo_sextupole", 4)])
def test_segmentation_bounds_the_distinct_kernels(name: str, kernels: int) -> None:
    """A line without repeated cells (HTU: 138 maps) is cut into single-map segments, one
    kernel per distinct map (fewer than its 11 kernels of up to 8 maps); a periodic line
    keeps its cell segments (long_fodo: 30 segments of one cell, one kernel)."""
    from backends.inhouse.compiled import _fewest_kernels
    from backends.inhouse.segments import SEGMENT_COST, Segment
    from backends.inhouse.tracker import Tracker
    from harness.model.load import load_scenario

    scenario = load_scenario(name)
    steps = Tracker(scenario.elements, scenario.reference_particle).steps()
    parts = _fewest_kernels(steps, SEGMENT_COST)
    segments = [p for p in parts if isinstance(p, Segment)]
    assert len({s.signature for s in segments}) == kernels
    assert sum(len(s.subs) for s in segments) >= len(steps)
