"""In-house maps of ImpactX's soft-edge quadrupole and solenoid, thick RF cavity, apertures
with every option and polygon apertures, and negative lengths: against ImpactX's own
elements particle by particle (float64, same initial particles) and their derivatives
(reverse mode = forward mode = central finite differences on every map parameter).

Agreement = max over particles and coordinates of |in-house - ImpactX| / std(ImpactX
coordinate) (``tests.test_inhouse_vs_impactx.deviation``); lost particles must be the same
ones, and become NaN rows under ``backends.base.final_particles``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from impactx_helpers import quiet_simulation
from torch.func import jvp

from backends.base import final_particles
from backends.inhouse import aperture_masks, drift, rf_cavity, soft_edge
from backends.inhouse.maps import Entries, assemble
from backends.inhouse.reference import RefState
from backends.inhouse.tracker import Tracker
from tests.test_inhouse_vs_impactx import (
    ENERGIES,
    _element,
    deviation,
    run_impactx,
    track_impactx,
)

impactx = pytest.importorskip("impactx")

N = 4000

#: ImpactX ``SoftQuad.H``'s default profile (tanh edges, g/L = 1/10), first 12 terms.
TANH_COS = [0.834166514794446, 0.598104328994702, 0.141852844428785, -0.118211272182381,
            -9.056149864743113e-2, 1.803476331179615e-2, 4.464887700797893e-2,
            7.364410636252136e-3, -1.697541023436736e-2, -9.012679515542771e-3,
            4.367667630047725e-3, 5.444030542119803e-3]
#: An asymmetric profile: sine terms as well (the odd part of the field).
ASYM_SIN = [0.0, 0.03, -0.01, 0.02, 0.0, -0.005, 0.004, 0.0, 0.001, 0.0, -0.002, 0.0005]
ZERO = [0.0] * len(TANH_COS)


@pytest.fixture(scope="module")
def particles() -> np.ndarray:
    rng = np.random.default_rng(20260101)
    return rng.standard_normal((N, 6)) * np.array([1e-4, 2e-5, 1e-4, 2e-5, 1e-4, 1e-3])


def apply(entries: Entries, particles: np.ndarray) -> np.ndarray:
    """``particles`` (N, 6) through the 6x6 map of ``entries``."""
    matrix = assemble(entries, "cpu", torch.float64).numpy()
    return particles @ matrix.T


def rfcavity_profile() -> tuple[np.ndarray, np.ndarray]:
    """Fourier coefficients (25) of ImpactX's ``examples/rfcavity`` on-axis field."""
    from impactx.fourier import fourier_coefficients

    path = Path(impactx.__file__).parent / "examples" / "rfcavity" / "onaxis_data.in"
    if not path.is_file():
        pytest.skip("the ImpactX wheel ships no examples/rfcavity/onaxis_data.in")
    data = np.loadtxt(path)
    return fourier_coefficients(data[:, 0], data[:, 1], 25)


# -- soft-edge quadrupole and solenoid -----------------------------------------------------
SOFT_CASES = {
    "tanh_1slice": (1.5, 1, 60, TANH_COS, ZERO),
    "asym_3slices": (1.2, 3, 20, TANH_COS, ASYM_SIN),
    "negative_length": (-1.0, 2, 10, TANH_COS, ASYM_SIN),
    "flat_one_term": (1.0, 1, 40, [2.0], [0.0]),
}


@pytest.mark.parametrize("energy", list(ENERGIES))
@pytest.mark.parametrize("case", list(SOFT_CASES))
@pytest.mark.parametrize("kind", ["SoftQuadrupole", "SoftSolenoid"])
def test_soft_edge_particle_by_particle(kind, case, energy, particles):
    from impactx import elements as ix

    length, nslice, mapsteps, cos_coef, sin_coef = SOFT_CASES[case]
    reference = ENERGIES[energy]
    state = RefState.from_reference(reference)
    if kind == "SoftQuadrupole":
        ours = apply(soft_edge.soft_quad_entries(length, -1.3, cos_coef, sin_coef, state,
                                                 mapsteps, nslice), particles)

        def lattice() -> list:
            return [ix.SoftQuadrupole(ds=length, gscale=-1.3, cos_coefficients=cos_coef,
                                      sin_coefficients=sin_coef, mapsteps=mapsteps,
                                      nslice=nslice)]
    else:
        ours = apply(soft_edge.soft_sol_entries(length, 1.1, cos_coef, sin_coef, state,
                                                mapsteps, nslice), particles)

        def lattice() -> list:
            return [ix.SoftSolenoid(ds=length, bscale=1.1, cos_coefficients=cos_coef,
                                    sin_coefficients=sin_coef, mapsteps=mapsteps,
                                    nslice=nslice)]
    theirs, kept = run_impactx(lattice, reference, particles)
    assert len(kept) == N
    dev = deviation(ours, theirs)
    print(f"{kind} {case} @ {energy}: max |dev|/sigma = {dev:.2e}")
    assert dev <= 1e-11
    if length > 0:   # the element does something beyond a drift
        assert deviation(apply(drift.drift_entries(length, state), particles), theirs) > 1e-3


def test_negative_soft_edge_is_a_drift_in_impactx(particles):
    """ImpactX 26.10 samples a soft-edge element of negative ds outside its field (z runs
    from 0 to ds < 0): the element is a drift of ds, not the inverse of the element of
    length |ds|; the in-house map does the same."""
    from impactx import elements as ix

    reference = ENERGIES["e-2GeV"]
    state = RefState.from_reference(reference)
    theirs, _ = run_impactx(lambda: [ix.Drift(ds=-1.0)], reference, particles)
    ours = apply(soft_edge.soft_quad_entries(-1.0, 2.0, TANH_COS, ASYM_SIN, state, 20),
                 particles)
    assert deviation(ours, theirs) <= 1e-13


# -- thick RF cavity -----------------------------------------------------------------------
RF_CASES = {
    # (length, nslice, mapsteps, escale for an electron [1/m], phase [deg], asymmetric)
    "example_4slices": (1.31879807, 4, 25, 62.0, 85.5, False),
    "asym_decelerating": (1.0, 2, 30, 5.0, -150.0, True),
}


@pytest.mark.parametrize("energy", list(ENERGIES))
@pytest.mark.parametrize("case", list(RF_CASES))
def test_rf_cavity_particle_by_particle(case, energy, particles):
    """Drift, cavity, drift, cavity: the second cavity's RF phase depends on the reference
    time of arrival, carried from the first (``CavityMap.t_ref``)."""
    from impactx import elements as ix

    length, nslice, mapsteps, escale, phase_deg, asym = RF_CASES[case]
    cos_coef, sin_coef = rfcavity_profile()
    if asym:
        sin_coef = sin_coef + np.linspace(0.0, 0.02, len(sin_coef))
    reference = ENERGIES[energy]
    state = RefState.from_reference(reference)
    escale = escale * 0.51099895e6 / state.mass_eV   # the same field for every species
    d1, d2 = 0.433, 0.066
    frequency = 1.3e9

    def cavity() -> object:
        return ix.RFCavity(ds=length, escale=escale, freq=frequency, phase=phase_deg,
                           cos_coefficients=list(cos_coef), sin_coefficients=list(sin_coef),
                           mapsteps=mapsteps, nslice=nslice)

    theirs, kept = run_impactx(lambda: [ix.Drift(ds=d1), cavity(), ix.Drift(ds=d2),
                                        cavity()], reference, particles)
    assert len(kept) == N
    # ImpactX's reference particle after the line (a separate run, same line)
    sim = quiet_simulation(reference.species, reference.kinetic_energy_MeV)
    ref = sim.beam.ref
    qm_eev = ref.charge_qe / (ref.mass_MeV * 1e6)
    sim.beam.add_n_particles(*(np.zeros(1) for _ in range(6)), qm_eev, w=np.ones(1))
    sim.lattice.extend([ix.Drift(ds=d1), cavity(), ix.Drift(ds=d2), cavity()])
    sim.track_particles()
    gamma_ix, t_ix = -sim.beam.ref.pt, sim.beam.ref.t
    sim.finalize()

    ours = particles
    t_ref = 0.0
    for gap in (d1, d2):
        ours = apply(drift.drift_entries(gap, state), ours)
        t_ref = t_ref + gap / state.beta   # ImpactX Drift.H: t_ref += ds / beta
        cav = rf_cavity.rf_cavity_map(length, escale, frequency, math.radians(phase_deg),
                                      list(cos_coef), list(sin_coef), state, t_ref,
                                      mapsteps, nslice)
        ours = apply(cav.entries, ours)
        state, t_ref = cav.ref, cav.t_ref
    dev = deviation(ours, theirs)
    print(f"RFCavity {case} @ {energy}: max |dev|/sigma = {dev:.2e}, "
          f"gamma {state.gamma:.6f} ({state.gamma / gamma_ix - 1:.1e}), "
          f"t_ref {t_ref:.6f} m ({t_ref - t_ix:.1e})")
    assert dev <= 1e-11
    assert abs(float(state.gamma) / gamma_ix - 1.0) <= 1e-14
    assert abs(float(t_ref) - t_ix) <= 1e-14 * abs(t_ix)


# -- apertures -----------------------------------------------------------------------------
VERTICES_X = [0.5e-3, 0.5e-3, -0.5e-3, -0.5e-3, -1.5e-3, -1.5e-3, -0.5e-3, -0.5e-3,
              0.5e-3, 0.5e-3, 1.5e-3, 1.5e-3, 0.5e-3]   # examples/polygon_aperture's cross
VERTICES_Y = [0.5e-3, 1.5e-3, 1.5e-3, 0.5e-3, 0.5e-3, -0.5e-3, -0.5e-3, -1.5e-3,
              -1.5e-3, -0.5e-3, -0.5e-3, 0.5e-3, 0.5e-3]

APERTURE_CASES = {
    "absorber": dict(aperture_x=1e-3, aperture_y=1.5e-3, action="absorb"),
    "pepperpot_hexagonal": dict(aperture_x=1.5e-4, aperture_y=1e-4, repeat_x=1e-3,
                                repeat_y=1e-3, shift_odd_x=True),
    "elliptical_periodic_absorb_misaligned": dict(
        aperture_x=3e-4, aperture_y=2e-4, repeat_x=1.1e-3, repeat_y=0.9e-3,
        shape="elliptical", action="absorb", dx=2e-4, dy=-1e-4, rotation=25.0),
    "rectangular_x_period_only": dict(aperture_x=2e-4, aperture_y=2e-3, repeat_x=7e-4),
}

POLYGON_CASES = {
    "transmit": dict(action="transmit"),
    "absorb_rotated_offset": dict(action="absorb", dx=0.0006, dy=-0.0012, rotation=30.0),
    "periodic_hexagonal_rotated": dict(repeat_x=4e-3, repeat_y=3.5e-3, shift_odd_x=True,
                                       rotation=-10.0),
}


@pytest.fixture(scope="module")
def wide_particles() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.standard_normal((10_000, 6)) * np.array([2e-3, 2e-5, 2e-3, 2e-5, 1e-4, 1e-3])


def _compare_losses(kernel, theirs: np.ndarray, kept: np.ndarray,
                    particles: np.ndarray) -> None:
    """Same survivors; the harness's final particles agree row by row, lost rows NaN."""
    columns = tuple(torch.from_numpy(particles).T)
    out, ok = kernel.push(columns, kernel.coeffs)
    survivors = np.flatnonzero(ok.numpy())
    np.testing.assert_array_equal(survivors, kept)
    assert 0 < len(kept) < len(particles)
    ours = final_particles(torch.stack(out, dim=1).numpy(), lost=~ok.numpy())
    reference = np.full_like(particles, np.nan)
    reference[kept] = theirs
    reference = final_particles(reference, lost=np.isnan(reference).all(axis=1))
    assert np.array_equal(np.isnan(ours).all(axis=1), np.isnan(reference).all(axis=1))
    assert deviation(ours[kept], reference[kept]) <= 1e-14


@pytest.mark.parametrize("case", list(APERTURE_CASES))
def test_aperture_options_particle_by_particle(case, wide_particles):
    from impactx import elements as ix

    settings = APERTURE_CASES[case]
    theirs, kept = run_impactx(lambda: [ix.Aperture(**settings)], ENERGIES["p800MeV"],
                               wide_particles)
    ours = dict(settings)
    kernel = aperture_masks.aperture_kernel(
        ours.pop("aperture_x"), ours.pop("aperture_y"),
        rotation=math.radians(ours.pop("rotation", 0.0)), **ours)
    _compare_losses(kernel, theirs, kept, wide_particles)


@pytest.mark.parametrize("case", list(POLYGON_CASES))
def test_polygon_aperture_particle_by_particle(case, wide_particles):
    from impactx import elements as ix

    settings = POLYGON_CASES[case]
    min_radius2 = 2 * 0.5e-3**2

    def lattice() -> list:
        element = ix.PolygonAperture(VERTICES_X, VERTICES_Y, **settings)
        element.min_radius2 = min_radius2
        return [element]

    theirs, kept = run_impactx(lattice, ENERGIES["p800MeV"], wide_particles)
    ours = dict(settings)
    kernel = aperture_masks.polygon_aperture_kernel(
        VERTICES_X, VERTICES_Y, min_radius2, rotation=math.radians(ours.pop("rotation", 0.0)),
        **ours)
    _compare_losses(kernel, theirs, kept, wide_particles)


@pytest.mark.parametrize("call", [
    lambda: aperture_masks.aperture_kernel(1e-3, 1e-3, shape="hexagonal"),
    lambda: aperture_masks.aperture_kernel(1e-3, 1e-3, action="reflect"),
    lambda: aperture_masks.aperture_kernel(1e-3, 1e-3, repeat_x=1e-3, shift_odd_x=True),
    lambda: aperture_masks.polygon_aperture_kernel([0.0, 1.0, 0.0], [0.0, 0.0, 1.0]),
    lambda: aperture_masks.polygon_aperture_kernel([0.0, 1.0, 0.0, 0.1], [0.0, 0.0, 1.0, 0.0]),
])
def test_bad_aperture_settings_are_refused(call):
    with pytest.raises(ValueError):
        call()


# -- negative lengths ----------------------------------------------------------------------
@pytest.mark.parametrize("energy", ["e-2GeV", "p800MeV"])
@pytest.mark.parametrize("tier", ["linear", "paraxial", "exact"])
@pytest.mark.parametrize("kind,fields", [("Drift", {}), ("Quadrupole", {"Kn1": 2.0}),
                                         ("Quadrupole", {"Kn1": -1.5}),
                                         ("Solenoid", {"Ksol": 1.3})])
def test_negative_length_particle_by_particle(kind, fields, tier, energy, particles):
    """ImpactX runs ds < 0 through the same formulas (``Drift.H``, ``ChrDrift.H``,
    ``ExactDrift.H``, ``Quad.H``, ``ChrQuad.H``, ``ExactQuad.H``, ``Sol.H``); so do the
    in-house maps,
    and an element followed by its negative-length copy is the identity in both."""
    if kind == "Solenoid" and tier != "linear":
        pytest.skip("ImpactX has a linear solenoid only (Sol.H)")
    reference = ENERGIES[energy]
    forward = _element("f", kind, tier, nslice=3, mapsteps=4, length=0.7, **fields)
    backward = _element("b", kind, tier, nslice=3, mapsteps=4, length=-0.7, **fields)
    theirs, _ = track_impactx([backward], reference, particles)
    ours, alive = Tracker([backward], reference).track(torch.from_numpy(particles))
    assert alive is None or bool(alive.all())
    dev = deviation(ours.numpy(), theirs)
    print(f"{kind}{fields} {tier} ds=-0.7 @ {energy}: max |dev|/sigma = {dev:.2e}")
    assert dev <= (1e-11 if tier != "exact" else 1e-10)
    round_trip, _ = Tracker([forward, backward], reference).track(torch.from_numpy(particles))
    assert deviation(round_trip.numpy(), particles) <= 1e-12


# -- derivatives ---------------------------------------------------------------------------
def _check_derivatives(objective, values: dict[str, float], rel: float = 1e-7) -> None:
    """d objective / d each value: reverse mode = forward mode = central differences
    (five-point stencil)."""
    for name, value in values.items():
        def f(x, name=name):
            return objective({**values, name: x})

        x = torch.tensor(value, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(f(x), x)
        tangent = jvp(f, (torch.tensor(value, dtype=torch.float64),),
                      (torch.tensor(1.0, dtype=torch.float64),))[1]
        h = 1e-4 * max(abs(value), 1.0)

        def at(step: float, f=f, value=value) -> float:
            return float(f(torch.tensor(value + step, dtype=torch.float64)))

        # five-point central stencil, truncation error O(h^4)
        fd = (8.0 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12.0 * h)
        scale = max(abs(float(fd)), 1e-300)
        print(f"d/d{name}: reverse {float(grad):.12e} forward {float(tangent):.12e} "
              f"fd {float(fd):.12e}")
        assert abs(float(grad) - float(tangent)) <= 1e-12 * scale
        assert abs(float(grad) - float(fd)) <= rel * scale


def _sample() -> torch.Tensor:
    rng = np.random.default_rng(11)
    return torch.from_numpy(rng.standard_normal((64, 6)) * np.array(
        [1e-3, 1e-4, 1e-3, 1e-4, 1e-3, 1e-3]))


def _objective_of(entries: Entries, sample: torch.Tensor) -> torch.Tensor:
    out = sample @ assemble(entries, "cpu", torch.float64).transpose(-1, -2)
    weights = torch.tensor([1.0, 30.0, 1.3, 20.0, 0.7, 2.0], dtype=torch.float64)
    return (out * out * weights).sum() * 1e6


@pytest.mark.parametrize("kind", ["SoftQuadrupole", "SoftSolenoid"])
def test_soft_edge_derivatives(kind):
    """The map's length, scale and a cosine and a sine coefficient of its profile."""
    sample = _sample()
    state = RefState.from_reference(ENERGIES["p800MeV"])
    make = soft_edge.soft_quad_entries if kind == "SoftQuadrupole" else \
        soft_edge.soft_sol_entries

    def objective(p: dict) -> torch.Tensor:
        cos_coef = [p["c1"] if j == 1 else c for j, c in enumerate(TANH_COS)]
        sin_coef = [p["s2"] if j == 2 else s for j, s in enumerate(ASYM_SIN)]
        return _objective_of(make(p["length"], p["scale"], cos_coef, sin_coef, state, 15, 2),
                             sample)

    _check_derivatives(objective, {"length": 1.2, "scale": 1.7, "c1": TANH_COS[1],
                                   "s2": ASYM_SIN[2]})


def test_rf_cavity_derivatives():
    """Length, field scale, frequency, phase, a profile coefficient and the arrival time,
    through the particle map and the reference particle after the cavity."""
    sample = _sample()
    cos_coef, sin_coef = rfcavity_profile()
    state = RefState.from_reference(ENERGIES["e-5MeV"])

    def objective(p: dict) -> torch.Tensor:
        coefficients = [p["c2"] if j == 2 else float(c) for j, c in enumerate(cos_coef)]
        cav = rf_cavity.rf_cavity_map(p["length"], p["escale"], p["freq"], p["phase"],
                                      coefficients, list(sin_coef), state, p["t_ref"], 12, 2)
        return _objective_of(cav.entries, sample) + cav.ref.gamma + 10.0 * cav.t_ref

    _check_derivatives(objective, {"length": 1.3, "escale": 30.0, "freq": 1.3e9,
                                   "phase": 1.2, "c2": float(cos_coef[2]), "t_ref": 0.5})
