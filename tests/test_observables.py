"""Observables against values computed by hand, with weights, a batch dimension, and torch
(identical to numpy, differentiable)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.model import observables
from harness.model.reference_particle import ReferenceParticle
from harness.model.scenario import observable_names
from harness.model.spin import SPIN_OBSERVABLES

#: Four particles (x, px, y, py, t, pt); moments below are worked out by hand.
HAND = np.array([
    [1.0, 0.0, 2.0, 1.0, 0.0, 1.0],
    [-1.0, 0.0, 0.0, -1.0, 0.0, -1.0],
    [0.0, 1.0, -2.0, 1.0, 2.0, 1.0],
    [0.0, -1.0, 0.0, -1.0, -2.0, -1.0],
]) + np.array([0.5, 0.0, 0.0, 0.25, 0.0, 0.0])  # offsets in x and py

#: Every observable of six-column particles (the spin observables: tests/test_spin.py).
ALL = [n for n in observable_names() if n not in SPIN_OBSERVABLES]


def test_hand_computed_moments() -> None:
    """means: x 0.5, py 0.25, others 0.  Centred second moments (divide by N = 4):
    <x2> = (1+1)/4 = 0.5, <px2> = 0.5, <x px> = 0; <y2> = (4+4)/4 = 2, <py2> = 1,
    <y py> = (2-0-2+0)/4 = 0; <t2> = 2, <pt2> = 1, <t pt> = (0+0+2+2)/4 = 1;
    <x pt> = (1+1)/4 = 0.5, <y pt> = (2+0-2+0)/4 = 0, <px pt> = (0+0+1+1)/4 = 0.5."""
    out = observables.compute(HAND, ALL, beta_gamma=3.0, beta0=0.5)
    expected = {
        "mean_x": 0.5, "mean_px": 0.0, "mean_y": 0.0, "mean_py": 0.25, "mean_t": 0.0,
        "mean_pt": 0.0,
        "sigma_x": math.sqrt(0.5), "sigma_px": math.sqrt(0.5), "sigma_y": math.sqrt(2.0),
        "sigma_py": 1.0, "sigma_t": math.sqrt(2.0), "sigma_pt": 1.0,
        "emittance_x": 0.5, "emittance_y": math.sqrt(2.0), "emittance_t": 1.0,
        "norm_emittance_x": 1.5, "norm_emittance_y": 3.0 * math.sqrt(2.0),
        "norm_emittance_t": 3.0,
        "beta_total_x": 1.0, "alpha_total_x": 0.0, "beta_total_y": math.sqrt(2.0),
        "alpha_total_y": 0.0, "beta_t": 2.0, "alpha_t": -1.0,
        # dispersion = <u delta>/<delta^2>, delta = -pt/beta0  ->  -beta0 <u pt>/<pt^2>
        "dispersion_x": -0.25, "dispersion_px": -0.25, "dispersion_y": 0.0,
        "dispersion_py": -0.5,
        "survival": 1.0,
    }
    # without the dispersive part the x and the y plane of these four particles have no
    # emittance left (<x2>_d <px2>_d = <x px>_d^2 = 1/16; <py2>_d = 1 - 1 = 0): beta is inf
    assert set(expected) | {"beta_x", "alpha_x", "beta_y", "alpha_y"} == set(ALL)
    for name, value in expected.items():
        assert out[name] == pytest.approx(value, abs=1e-15), name
    assert out["beta_x"] == out["alpha_x"] == out["beta_y"] == math.inf


def test_twiss_without_dispersion_by_hand() -> None:
    """Betatron parts x_b = (1, -1, 0, 0), px_b = (0, 0, 1, -1) (<x_b2> = <px_b2> = 1/2,
    uncorrelated: beta 1 m, alpha 0) plus dispersion D = 2 m, D' = 0.5 along
    pt = (1, 1, -1, -1) (<pt2> = 1, orthogonal to both): x = x_b - D pt, px = px_b - D' pt.
    ImpactX's beta_x / alpha_x (dispersion removed) give back the betatron ones; the total
    moments are <x2> = 1/2 + 4 = 4.5, <px2> = 1/2 + 1/4 = 0.75, <x px> = D D' = 1."""
    pt = np.array([1.0, 1.0, -1.0, -1.0])
    particles = np.zeros((4, 6))
    particles[:, 0] = np.array([1.0, -1.0, 0.0, 0.0]) - 2.0 * pt
    particles[:, 1] = np.array([0.0, 0.0, 1.0, -1.0]) - 0.5 * pt
    particles[:, 5] = pt
    names = ["beta_x", "alpha_x", "beta_total_x", "alpha_total_x", "emittance_x"]
    out = observables.compute(particles, names)
    eps_total = math.sqrt(4.5 * 0.75 - 1.0)
    assert out["beta_x"] == pytest.approx(1.0, abs=1e-15)
    assert out["alpha_x"] == pytest.approx(0.0, abs=1e-15)
    assert out["beta_total_x"] == pytest.approx(4.5 / eps_total, rel=1e-15)
    assert out["alpha_total_x"] == pytest.approx(-1.0 / eps_total, rel=1e-15)
    assert out["emittance_x"] == pytest.approx(eps_total, rel=1e-15)   # ImpactX's: total
    tensor = observables.compute(torch.tensor(particles), names)
    for name in names:
        assert float(tensor[name]) == pytest.approx(out[name], rel=1e-15, abs=1e-15)
    cold = particles.copy()
    cold[:, 5] = 0.0   # no energy spread: no dispersion to remove (ImpactX: D = 0)
    same = observables.compute(cold, ["beta_x", "beta_total_x"])
    assert same["beta_x"] == same["beta_total_x"]


def test_moments_mean_and_covariance() -> None:
    mean, cov = observables.moments(HAND)
    np.testing.assert_allclose(mean, HAND.mean(axis=0), atol=1e-15)
    np.testing.assert_allclose(cov, np.cov(HAND.T, bias=True), atol=1e-15)


def test_emittance_invariant_under_a_symplectic_map() -> None:
    """A drift (x += L px) and a thin lens (px -= k x) keep the rms emittance and change
    beta as the Twiss transport says (Wolski eq. 5.22)."""
    rng = np.random.default_rng(5)
    particles = rng.standard_normal((2000, 6)) * [1e-3, 1e-4, 1e-3, 1e-4, 1e-3, 1e-3]
    before = observables.compute(particles, ["emittance_x", "beta_x", "alpha_x"])
    moved = particles.copy()
    moved[:, 0] += 2.0 * moved[:, 1]
    moved[:, 1] -= 0.3 * moved[:, 0]
    after = observables.compute(moved, ["emittance_x"])
    assert after["emittance_x"] == pytest.approx(before["emittance_x"], rel=1e-12)
    drift = particles.copy()
    drift[:, 0] += 2.0 * drift[:, 1]
    beta, alpha = before["beta_x"], before["alpha_x"]
    gamma = (1 + alpha**2) / beta
    got = observables.compute(drift, ["beta_x", "alpha_x"])
    assert got["beta_x"] == pytest.approx(beta - 2 * 2.0 * alpha + 4.0 * gamma, rel=1e-12)
    assert got["alpha_x"] == pytest.approx(alpha - 2.0 * gamma, rel=1e-12)


def test_compute_for_uses_the_reference_particle() -> None:
    ref = ReferenceParticle("electron", 2000.0)
    out = observables.compute_for(HAND, ["norm_emittance_x", "dispersion_x"], ref)
    assert out["norm_emittance_x"] == pytest.approx(ref.beta_gamma * 0.5, rel=1e-15)
    assert out["dispersion_x"] == pytest.approx(-ref.beta * 0.5, rel=1e-15)


def test_integer_weights_equal_repeated_particles() -> None:
    weights = np.array([2.0, 1.0, 3.0, 1.0])
    repeated = np.repeat(HAND, weights.astype(int), axis=0)
    names = [n for n in ALL if n != "survival"]
    weighted = observables.compute(HAND, names, 2.0, 0.9, weights=weights)
    plain = observables.compute(repeated, names, 2.0, 0.9)
    for name in names:
        assert weighted[name] == pytest.approx(plain[name], rel=1e-14, abs=1e-15), name


def test_zero_weights_drop_particles_and_set_survival() -> None:
    rng = np.random.default_rng(1)
    particles = rng.standard_normal((50, 6))
    mask = np.ones(50)
    mask[::5] = 0.0
    names = ["mean_x", "sigma_y", "emittance_x", "beta_t", "survival"]
    masked = observables.compute(particles, names, weights=mask)
    kept = observables.compute(particles[mask == 1.0], names)
    for name in names[:-1]:
        assert masked[name] == pytest.approx(kept[name], rel=1e-13), name
    assert masked["survival"] == pytest.approx(0.8)
    assert kept["survival"] == 1.0


def test_batch_dimension_matches_a_loop() -> None:
    rng = np.random.default_rng(2)
    batch = rng.standard_normal((3, 200, 6)) * np.array([1, 2, 3, 4, 5, 6])
    weights = rng.random((3, 200))
    names = ALL
    together = observables.compute(batch, names, 4.0, 0.7, weights=weights)
    for b in range(3):
        alone = observables.compute(batch[b], names, 4.0, 0.7, weights=weights[b])
        for name in names:
            assert np.shape(together[name]) == (3,), name
            assert together[name][b] == pytest.approx(alone[name], rel=1e-13), name


def test_torch_equals_numpy() -> None:
    rng = np.random.default_rng(3)
    batch = rng.standard_normal((2, 300, 6)) * 1e-3
    weights = rng.random((2, 300))
    a = observables.compute(batch, ALL, 4.0, 0.7, weights=weights)
    b = observables.compute(torch.from_numpy(batch), ALL, 4.0, 0.7,
                            weights=torch.from_numpy(weights))
    for name in ALL:
        assert isinstance(b[name], torch.Tensor), name
        np.testing.assert_allclose(b[name].numpy(), a[name], rtol=1e-12, atol=0, err_msg=name)


def test_torch_gradient_of_sigma_x() -> None:
    """d sigma_x / d x_i = (x_i - mean_x) / (N sigma_x); other columns get no gradient."""
    rng = np.random.default_rng(4)
    particles = torch.tensor(rng.standard_normal((100, 6)), requires_grad=True)
    sigma_x = observables.compute(particles, ["sigma_x"])["sigma_x"]
    sigma_x.backward()
    x = particles.detach()[:, 0]
    expected = (x - x.mean()) / (100 * sigma_x.detach())
    torch.testing.assert_close(particles.grad[:, 0], expected, rtol=1e-12, atol=1e-15)
    assert torch.all(particles.grad[:, 1:] == 0)


def test_torch_gradient_of_emittance_matches_finite_difference() -> None:
    rng = np.random.default_rng(6)
    base = rng.standard_normal((60, 6))
    particles = torch.tensor(base, requires_grad=True)
    observables.compute(particles, ["emittance_y"])["emittance_y"].backward()
    step = 1e-6
    for i, j in ((0, 2), (7, 3), (30, 2)):
        plus, minus = base.copy(), base.copy()
        plus[i, j] += step
        minus[i, j] -= step
        fd = (observables.compute(plus, ["emittance_y"])["emittance_y"]
              - observables.compute(minus, ["emittance_y"])["emittance_y"]) / (2 * step)
        assert float(particles.grad[i, j]) == pytest.approx(fd, rel=1e-7)


def test_unknown_observable_raises() -> None:
    with pytest.raises(KeyError, match="sigma_q"):
        observables.compute(HAND, ["sigma_q"])


#: ImpactX tracks a Waterbag beam through a bend, a drift and a quadrupole (dispersion
#: D_x ~ 0.34 m at the end) and writes its final particles and its own reduced beam
#: characteristics (``beam.beam_moments()``).
IMPACTX_DISPERSIVE = """
import json, sys
import numpy as np
import amrex.space3d as amr
from impactx import ImpactX, distribution, elements

amr.ParmParse("amrex").add("verbose", 0)
sim = ImpactX()
sim.verbose, sim.tiny_profiler, sim.space_charge, sim.diagnostics = 0, False, False, False
sim.init_grids()
sim.beam.ref.set_species("electron").set_kin_energy_MeV(100.0)
sim.add_particles(1e-12, distribution.Waterbag(
    lambdaX=3e-4, lambdaY=2e-4, lambdaT=1e-3, lambdaPx=4e-5, lambdaPy=3e-5, lambdaPt=2e-3,
    muxpx=0.3, muypy=-0.2, mutpt=0.0), 2000)
sim.lattice.extend([elements.Sbend(name="b", ds=0.5, rc=2.0, nslice=1),
                    elements.Drift(name="d", ds=1.0, nslice=1),
                    elements.Quad(name="q", ds=0.2, k=3.0, nslice=1)])
sim.track_particles()
moments = {k: float(v) for k, v in sim.beam.beam_moments().items()}
frame = sim.beam.to_df(local=True)
np.save(sys.argv[1], frame[["position_x", "momentum_x", "position_y", "momentum_y",
                            "position_t", "momentum_t"]].to_numpy())
sim.finalize()
with open(sys.argv[2], "w") as out:
    json.dump(moments, out)
"""


def test_twiss_equal_impactx_reduced_beam_characteristics_with_dispersion(tmp_path) -> None:
    """beta_*, alpha_* are ImpactX's own diagnostics to round-off on a dispersive beam
    (there beta_total_x, the plain moments, is 24 % off)."""
    import json
    import subprocess
    import sys

    pytest.importorskip("impactx")
    script = tmp_path / "dispersive.py"
    script.write_text(IMPACTX_DISPERSIVE)
    particles, moments = tmp_path / "final.npy", tmp_path / "moments.json"
    subprocess.run([sys.executable, str(script), str(particles), str(moments)], check=True,
                   cwd=tmp_path, capture_output=True, timeout=120)
    impactx = json.loads(moments.read_text())
    assert impactx["dispersion_x"] > 0.3
    names = ["beta_x", "alpha_x", "beta_y", "alpha_y", "beta_t", "alpha_t", "emittance_x"]
    ours = observables.compute(np.load(particles), names + ["beta_total_x"])
    for name in names:
        assert ours[name] == pytest.approx(impactx[name], rel=1e-11), name
    assert abs(ours["beta_total_x"] / impactx["beta_x"] - 1.0) > 0.2
