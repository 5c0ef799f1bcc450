"""2D, 2.5D and Gaussian space charge of the in-house tracker against analytic fields and
ImpactX (one kick, particle by particle), derivatives, and ImpactX's settings per kind."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from impactx_helpers import track_sorted

from backends.impactx_space_charge import Refused, impactx_settings
from backends.inhouse import space_charge_2d as s2
from backends.inhouse.reference import RefState
from harness.model.reference_particle import ReferenceParticle

F64 = torch.float64


def test_round_gaussian_field_matches_analytic():
    """E_r = lambda / (2 pi eps0 r) (1 - exp(-r^2 / 2 sigma^2)) of a round Gaussian line
    charge (Gauss's law on the enclosed charge of the 2D Gaussian; e.g. M. Reiser, Theory
    and Design of Charged Particle Beams, 2nd ed., Wiley 2008, sec. 4.2). Measured (1e4
    particles, 64^2 cells, CIC): mean deviation -0.7 %, rms 1.9 % for 0.5 < r/sigma < 3
    (shot noise and the cell size)."""
    gen = torch.Generator().manual_seed(7)
    n, sigma, line = 10_000, 1e-3, 1e-9
    xy = sigma * torch.randn(2, 1, n, generator=gen, dtype=F64)
    charge = torch.full((1, n), line / n, dtype=F64)
    ex, ey, _ = s2.transverse_field(xy[0], xy[1], charge, s2.TransverseMesh((64, 64), "cic"))
    r = xy.pow(2).sum(0).sqrt()[0]
    radial = (ex[0] * xy[0, 0] + ey[0] * xy[1, 0]) / r
    expected = line / (2 * math.pi * s2.EPSILON_0 * r) * (1 - torch.exp(-r * r / (2 * sigma**2)))
    band = (r > 0.5 * sigma) & (r < 3 * sigma)
    relative = radial[band] / expected[band] - 1
    assert relative.mean().abs() < 0.01, relative.mean()
    assert relative.pow(2).mean().sqrt() < 0.03


def test_round_gaussian_kick_matches_gauss2p5d_model():
    """The Gauss2p5D transverse kick of a round beam equals the closed form of the 2D
    Gaussian field (J. Qiang, Phys. Rev. Accel. Beams 28, 114602 (2025), Eqs. 31-32 for
    sigma_x = sigma_y), up to the quadrature of ImpactX's ``potInt`` (Simpson on [0.01, 1],
    a trapezoid on [0, 0.01]): measured at most 7e-4 relative, -1e-4 on average."""
    gen = torch.Generator().manual_seed(8)
    n, sigma = 4000, 1e-3
    x, y = (sigma * torch.randn(1, n, generator=gen, dtype=F64) for _ in range(2))
    size = torch.full((1, 1), sigma, dtype=F64)
    ex, _, _ = s2.gauss2p5d_integrals(x, y, size, size, 0.01, 101)
    r2 = x * x + y * y
    # field integral without the 1/(4 pi eps0) and line density: 2 x / r^2 (1 - e^{-r^2/2s^2})
    expected = 2 * x / r2 * (1 - torch.exp(-r2 / (2 * sigma**2)))
    assert torch.allclose(ex, expected, rtol=1e-3, atol=0)


# -- against ImpactX ---------------------------------------------------------------------
def _impactx_one_kick(initial: np.ndarray, model: str, species: str, energy_MeV: float,
                      intensity: float, grid: int, ds: float, extra: dict) -> np.ndarray:
    """One kick over ``ds`` then a drift (``strang_split = False``): ImpactX's final
    ``(N, 6)`` particles; the momentum change is its space-charge kick."""
    from impactx import ImpactX, elements

    from backends.impactx_space_charge import apply

    settings = impactx_settings(SimpleNamespace(kind=model, grid=(grid, grid, 1)
                                                if model in ("2d", "2p5d") else None,
                                                deposition=extra.pop("deposition", "tsc"), **extra))
    assert not isinstance(settings, Refused), settings
    sim = ImpactX()
    try:
        sim.verbose = 0
        sim.tiny_profiler = False
        sim.diagnostics = False
        apply(sim, settings.mesh)
        apply(sim, settings.run)
        sim.strang_split = False
        sim.init_grids()
        return track_sorted(sim, initial, species, energy_MeV, intensity,
                            [elements.Drift(name="d", ds=ds, nslice=1)])
    finally:
        sim.space_charge = False
        sim.finalize()


KICKS = {
    "2d": lambda c, ref, q: s2.kick_2d(c, ref, 0.1, q, s2.TransverseMesh((32, 32), "tsc")),
    "2p5d": lambda c, ref, q: s2.kick_2p5d(c, ref, 0.1, q, s2.TransverseMesh((32, 32), "tsc")),
    "gauss3d": lambda c, ref, q: s2.kick_gauss3d(c, ref, 0.1, q),
    "gauss2p5d": lambda c, ref, q: s2.kick_gauss2p5d(c, ref, 0.1, q),
}


@pytest.mark.parametrize("kind", sorted(KICKS))
def test_kick_matches_impactx_particle_by_particle(kind):
    """6.7 MeV protons (beta 0.12, so every 1/beta and gamma factor shows), 2000 particles,
    32^2 cells, TSC, one 0.1 m kick. Measured (largest deviation / largest kick per
    momentum): 2d and 2p5d 6.8e-10 (the 2D IGF's corner sums, as the 3D solver's 5e-10),
    gauss3d 4.7e-13, gauss2p5d 6.7e-15."""
    pytest.importorskip("impactx")
    rng = np.random.default_rng(1)
    initial = rng.normal(size=(2000, 6)) * np.array([1e-3, 1e-4, 1.2e-3, 1e-4, 2e-3, 1e-4])
    intensity = 0.5 if kind == "2d" else 1e-9   # current [A] for 2d, else charge [C]
    expected = _impactx_one_kick(initial, kind, "proton", 6.7, intensity, 32, 0.1, {})
    ref = RefState.from_reference(ReferenceParticle("proton", 6.7))
    columns = tuple(torch.tensor(initial[:, i]) for i in range(6))
    kicked = np.stack([c.numpy() for c in KICKS[kind](columns, ref, intensity)], axis=1)
    for column in (1, 3, 5):
        theirs = expected[:, column] - initial[:, column]
        ours = kicked[:, column] - initial[:, column]
        scale = np.abs(theirs).max()
        if kind == "2d" and column == 5:
            assert scale == 0.0 and np.abs(ours).max() == 0.0
            continue
        assert np.abs(theirs - ours).max() < 2e-9 * scale, (column, np.abs(theirs - ours).max()
                                                            / scale)


# -- derivatives -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["2d", "gauss3d"])
def test_reverse_mode_equals_finite_differences(kind):
    """d<x px>/ds for a transverse scaling s of the beam: reverse mode = central differences
    (step 1e-5) to 1e-7 relative. The mesh follows the beam, so the scaling moves no
    particle across a cell boundary (the objective is smooth in s)."""
    gen = torch.Generator().manual_seed(3)
    base = 1e-3 * torch.randn(6, 1000, generator=gen, dtype=F64)
    ref = RefState.from_reference(ReferenceParticle("proton", 6.7))

    def objective(scale: torch.Tensor) -> torch.Tensor:
        cols = (base[0] * scale, base[1], base[2] * scale, base[3], base[4], base[5])
        kicked = KICKS[kind](cols, ref, 0.5 if kind == "2d" else 1e-9)
        return (kicked[0] * kicked[1]).mean()

    s = torch.tensor(1.1, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(objective(s), s)
    h = 1e-5
    with torch.no_grad():
        fd = (objective(s + h) - objective(s - h)) / (2 * h)
    assert abs(grad.item() / fd.item() - 1) < 1e-7, (grad.item(), fd.item())


# -- ImpactX settings ------------------------------------------------------------------------
def test_impactx_settings_per_kind():
    two = impactx_settings(SimpleNamespace(kind="2p5d", grid=(64, 64, 1), deposition="tsc",
                                           prob_relative=1.2, longitudinal_bins=129))
    assert not isinstance(two, Refused)
    assert two.mesh["n_cell"] == [64, 64, 1] and two.mesh["blocking_factor_z"] == [1]
    assert two.mesh["particle_shape"] == 2 and two.run["poisson_solver"] == "fft"
    assert two.run["space_charge"] == "2p5D"
    assert two.run["space_charge_num_longitudinal_bins"] == 129
    assert two.run["space_charge_apply_longitudinal_kick"] is True
    assert two.intensity == "charge"
    assert impactx_settings(SimpleNamespace(kind="2d", grid=(32, 32))).intensity == "current"
    gauss = impactx_settings(SimpleNamespace(kind="gauss2p5d", gauss_long_scale=6.0,
                                             longitudinal_kick=False))
    assert not isinstance(gauss, Refused)
    assert "n_cell" not in gauss.mesh and gauss.run["space_charge_gauss_long_scale"] == 6.0
    assert gauss.run["space_charge_apply_longitudinal_kick"] is False


@pytest.mark.parametrize("settings, field", [
    (SimpleNamespace(kind="2d", grid=(32, 32, 8)), "space_charge.grid"),
    (SimpleNamespace(kind="gauss3d", prob_relative=1.1), "space_charge.prob_relative"),
    (SimpleNamespace(kind="3d", grid=(32, 32, 32), longitudinal_kick=False),
     "space_charge.longitudinal_kick"),
    (SimpleNamespace(kind="4d"), "space_charge.kind"),
])
def test_impactx_settings_refuse_by_name(settings, field):
    refused = impactx_settings(settings)
    assert isinstance(refused, Refused) and refused.reason.startswith(field)
