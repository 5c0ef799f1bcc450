"""The composed map of an all-linear lattice (:mod:`backends.inhouse.composed`): its matrix
equals the tracker's map-by-map product, per setting of a batch, for every linear kind
(maps of one kind with parameters built in one call); the observables through it equal the
map-by-map track to round-off, and so do their reverse- and forward-mode derivatives."""

from __future__ import annotations

import pytest
import torch
from torch.func import jacfwd

from backends.inhouse.composed import ComposedLinear, composed_map, track_moments
from backends.inhouse.objective import make_observables
from backends.inhouse.reference import RefState
from backends.inhouse.tracker import LinearStep, Tracker
from harness.model import observables
from harness.model.lattice import Element
from harness.model.load import load_scenario
from harness.model.particles import generate
from harness.model.reference_particle import ReferenceParticle

REF = ReferenceParticle("proton", 800.0)  # beta = 0.84: the velocity terms matter


def element(name: str, kind: str, **params) -> Element:
    return Element(name, kind, params, "linear", "linear")


def lattice() -> list[Element]:
    """Every linear kind, maps of one kind with and without equal other parameters,
    rotated and skew quadrupoles, coupling (solenoid, bend) and constant runs."""
    return [
        element("d0", "Drift", length=0.3),
        element("qa", "Quadrupole", length=0.5, Kn1=1.1),
        element("d1", "Drift", length=0.2),
        element("qb", "Quadrupole", length=0.5, Kn1=-0.9),
        element("qc", "Quadrupole", length=0.3, Kn1=0.7),
        element("qr", "Quadrupole", length=0.5, Kn1=0.8, z_rot=0.1),
        element("qs", "Quadrupole", length=0.4, Kn1=0.6, Ks1=0.2),
        element("b1", "SBend", length=1.0, angle=0.1, e1=0.02, e2=0.03),
        element("s1", "Solenoid", length=0.5, Ksol=0.4),
        element("m1", "Multipole", length=0.0, Kn1L=0.05),
        element("d2", "Drift", length=0.4),
        element("qd", "Quadrupole", length=0.5, Kn1=-1.2),
    ]


PARAMETERS = [("qa", "Kn1"), ("qb", "Kn1"), ("qc", "Kn1"), ("qr", "Kn1"), ("qs", "Kn1"),
              ("qd", "Kn1"), ("d1", "length"), ("b1", "angle"), ("s1", "Ksol")]


def draws(batch: tuple[int, ...], seed: int = 3) -> dict[tuple[str, str], torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    elements = {e.name: e for e in lattice()}
    return {key: elements[key[0]].params[key[1]] * (
        1.0 + 0.05 * torch.randn(batch, generator=generator, dtype=torch.float64))
        for key in PARAMETERS}


def tracker_matrix(values) -> torch.Tensor:
    tracker = Tracker(lattice(), REF, parameters=PARAMETERS)
    steps = tracker.steps(values)
    assert len(steps) == 1  # every map linear: one fused matrix
    step = steps[0]
    assert isinstance(step, LinearStep)
    return step.matrix


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_matrix_equals_the_fused_tracker_product(batch):
    tracker = Tracker(lattice(), REF, parameters=PARAMETERS)
    composed = composed_map(tracker.specs, tracker.reference, tracker.parameters,
                            torch.device("cpu"), torch.float64)
    assert composed is not None
    values = draws(batch)
    got = composed.matrix(values)
    expected = tracker_matrix(values)
    assert got.shape == (*batch, 6, 6)
    assert torch.allclose(got, expected, rtol=0.0, atol=1e-13)


def test_maps_of_one_kind_are_built_together():
    tracker = Tracker(lattice(), REF, parameters=PARAMETERS)
    composed = ComposedLinear(tracker.specs, tracker.reference, tracker.parameters,
                              torch.device("cpu"), torch.float64)
    names = [[composed.dynamic[i].element.name for i in group] for group in composed.groups]
    # qa, qb, qd: one length; qc another; qr and qs are rotated (their own alignment maps)
    assert ["qa", "qb", "qd"] in names
    assert ["qc"] in names


def test_missing_values_take_the_lattice_values():
    tracker = Tracker(lattice(), REF, parameters=PARAMETERS)
    composed = ComposedLinear(tracker.specs, tracker.reference, tracker.parameters,
                              torch.device("cpu"), torch.float64)
    assert torch.allclose(composed.matrix({}), tracker_matrix({}), rtol=0.0, atol=1e-13)
    with pytest.raises(KeyError, match="not declared"):
        composed.matrix({("d0", "length"): torch.tensor(1.0)})


def test_nonlinear_lattices_have_no_composed_map():
    elements = [element("d0", "Drift", length=0.3),
                Element("q", "Quadrupole", {"length": 0.5, "Kn1": 1.0}, "paraxial",
                        "paraxial")]
    tracker = Tracker(elements, REF)
    assert composed_map(tracker.specs, RefState.coerce(REF), frozenset(),
                        torch.device("cpu"), torch.float64) is None


def test_moments_equal_those_of_the_tracked_particles():
    values = draws((4,))
    matrix = tracker_matrix(values)
    particles = torch.as_tensor(generate(load_scenario("fodo_linear").beam, 300))
    mean, cov = track_moments(matrix, particles)
    final = (matrix @ particles.T).transpose(-1, -2)
    expected_mean, expected_cov = observables.moments(final)
    assert torch.allclose(mean, expected_mean, rtol=0.0, atol=1e-15)
    scale = expected_cov.diagonal(dim1=-2, dim2=-1).amax()
    assert torch.allclose(cov, expected_cov, rtol=0.0, atol=1e-13 * float(scale))
    batched = particles.expand(4, 300, 6)
    mean_b, cov_b = track_moments(matrix, batched)
    assert torch.allclose(cov_b, cov, rtol=0.0, atol=1e-15 * float(scale))


OBSERVED = ["sigma_x", "sigma_px", "sigma_y", "sigma_py", "emittance_x", "emittance_y",
            "beta_x", "alpha_y", "mean_x", "dispersion_x", "sigma_t"]


@pytest.mark.parametrize(("name", "parameters"), [
    ("fodo_channel", ["qf00.Kn1", "qd00.Kn1", "qf15.Kn1", "qd31.Kn1", "d2.length"]),
    ("fodo_linear", None),            # element and beam parameters
    ("chicane", None),
    ("quad_scan", ["q.Kn1"]),
])
def test_observables_equal_the_map_by_map_track(name, parameters):
    scenario = load_scenario(name)
    parameters = parameters or scenario.gradients.parameters
    particles = generate(scenario.beam, 400)
    composed, theta0 = make_observables(scenario, parameters, OBSERVED, 400,
                                        particles=particles)
    by_map, _ = make_observables(scenario, parameters, OBSERVED, 400, particles=particles,
                                 composed=False)
    generator = torch.Generator().manual_seed(1)
    theta = theta0 * (1 + 0.01 * torch.randn(3, len(theta0), generator=generator,
                                             dtype=torch.float64))
    for point in (theta0, theta):
        got, expected = composed(point), by_map(point)
        for key in OBSERVED:
            scale = float(expected[key].abs().max()) + 1e-300
            assert torch.allclose(got[key], expected[key], rtol=1e-12,
                                  atol=1e-12 * scale), key


def test_derivatives_equal_the_map_by_map_track():
    scenario = load_scenario("fodo_linear")
    parameters = scenario.gradients.parameters
    particles = generate(scenario.beam, 300)
    composed, theta0 = make_observables(scenario, parameters, ["sigma_x"], 300,
                                        particles=particles)
    by_map, _ = make_observables(scenario, parameters, ["sigma_x"], 300,
                                 particles=particles, composed=False)

    def reverse(g) -> torch.Tensor:
        theta = theta0.clone().requires_grad_(True)
        g(theta)["sigma_x"].backward()
        assert theta.grad is not None
        return theta.grad

    expected = reverse(by_map)
    assert torch.allclose(reverse(composed), expected, rtol=1e-10, atol=0.0)
    forward = jacfwd(lambda t: composed(t)["sigma_x"])(theta0)
    assert torch.allclose(forward, expected, rtol=1e-10, atol=0.0)
