"""In-house tracker maps against closed forms, symplecticity and linear fusion.

Closed forms: Wolski, *Beam Dynamics in High Energy Particle Accelerators* (2014), ch. 3
(drift, quadrupole, sector dipole), written in ImpactX's coordinates (x, px, y, py, t, pt)
with pt = -dE/(p0 c), so that delta ~= -pt/beta0 to first order.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.func import jacfwd

from backends.inhouse.tracker import Tracker
from harness.model.lattice import Element
from harness.model.load import load_scenario
from harness.model.particles import generate
from harness.model.reference_particle import ReferenceParticle

REF = ReferenceParticle("electron", 2000.0)
SLOW = ReferenceParticle("proton", 800.0)  # beta = 0.84: the velocity terms matter

#: The symplectic form of (x, px, y, py, t, pt).
S = torch.zeros(6, 6, dtype=torch.float64)
for _i in range(3):
    S[2 * _i, 2 * _i + 1] = 1.0
    S[2 * _i + 1, 2 * _i] = -1.0


def element(kind: str, tier: str = "linear", nslice: int = 1, mapsteps: int = 10,
            name: str = "e", **params) -> Element:
    """A harness element with the given SI parameters."""
    return Element(name, kind, params, tier, tier, nslice, mapsteps)


def track_one(elements: list[Element], vector: torch.Tensor, ref: ReferenceParticle = REF,
              **kwargs) -> torch.Tensor:
    """Track one particle (a 6-vector) through ``elements``."""
    out, _ = Tracker(elements, ref, **kwargs).track(vector[None, :])
    return out[0]


def jacobian(elements: list[Element], at: torch.Tensor,
             ref: ReferenceParticle = REF) -> torch.Tensor:
    """The 6x6 Jacobian of the map at a particle (forward mode)."""
    tracker = Tracker(elements, ref)
    return jacfwd(lambda v: tracker.track(v[None, :])[0][0])(at)


def origin() -> torch.Tensor:
    return torch.zeros(6, dtype=torch.float64)


def off_axis_particles() -> list[torch.Tensor]:
    """A few particles well off the reference orbit (mm, mrad, percent energy)."""
    return [torch.tensor(v, dtype=torch.float64) for v in (
        [1e-3, -2e-4, 5e-4, 3e-4, 1e-3, 1e-2],
        [-2e-3, 1e-3, -1e-3, -5e-4, -2e-3, -2e-2],
        [5e-4, 5e-4, 2e-3, 1e-4, 0.0, 5e-3],
    )]


# -- drift ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ref", [REF, SLOW], ids=["e2GeV", "p800MeV"])
def test_linear_drift(ref):
    v = torch.tensor([1e-3, 2e-4, -5e-4, -3e-4, 1e-3, 1e-2], dtype=torch.float64)
    length = 2.5
    out = track_one([element("Drift", length=length)], v, ref)
    expected = v.clone()
    expected[0] += length * v[1]
    expected[2] += length * v[3]
    expected[4] += length * v[5] / ref.beta_gamma**2
    torch.testing.assert_close(out, expected, rtol=1e-15, atol=1e-18)


@pytest.mark.parametrize("ref", [REF, SLOW], ids=["e2GeV", "p800MeV"])
def test_exact_drift_closed_form(ref):
    """Straight line with P_z = sqrt((1+delta)^2 - px^2 - py^2), (1+delta)^2 =
    (pt - 1/beta)^2 - 1/(beta gamma)^2, and the time of flight L (E/p0c) / (c P_z)."""
    length = 3.0
    for v in off_axis_particles():
        x, px, y, py, t, pt = v.tolist()
        energy = 1.0 / ref.beta - pt  # E / (p0 c)
        p_total2 = energy**2 - 1.0 / ref.beta_gamma**2
        pz = math.sqrt(p_total2 - px * px - py * py)
        expected = torch.tensor([x + length * px / pz, px, y + length * py / pz, py,
                                 t + length * (energy / pz - 1.0 / ref.beta), pt],
                                dtype=torch.float64)
        out = track_one([element("Drift", "exact", length=length)], v, ref)
        # t is a difference of O(1) numbers: round-off ~1e-15 m absolute
        torch.testing.assert_close(out, expected, rtol=1e-13, atol=1e-14)


def test_chr_drift_is_the_paraxial_expansion():
    """ChrDrift = ExactDrift on axis (px = py = 0, any pt) and differs at third order in px."""
    length = 1.0
    on_axis = torch.tensor([1e-3, 0.0, -1e-3, 0.0, 1e-3, 3e-2], dtype=torch.float64)
    chr_out = track_one([element("Drift", "paraxial", length=length)], on_axis, SLOW)
    exact_out = track_one([element("Drift", "exact", length=length)], on_axis, SLOW)
    torch.testing.assert_close(chr_out, exact_out, rtol=1e-14, atol=1e-16)
    errors = []
    for px in (2e-3, 1e-3):
        v = torch.tensor([0.0, px, 0.0, 0.0, 0.0, 1e-2], dtype=torch.float64)
        chr_out = track_one([element("Drift", "paraxial", length=length)], v, SLOW)
        exact_out = track_one([element("Drift", "exact", length=length)], v, SLOW)
        errors.append(abs(float(chr_out[0] - exact_out[0])))
    assert errors[0] / errors[1] == pytest.approx(8.0, rel=1e-3)


# -- quadrupole ---------------------------------------------------------------------------------
def quad_matrix(length: float, k: float, ref: ReferenceParticle) -> torch.Tensor:
    """Thick quadrupole: cos/sin in the focusing plane, cosh/sinh in the other (Wolski 3.3)."""
    w = math.sqrt(abs(k))
    phi = w * length
    foc = [[math.cos(phi), math.sin(phi) / w], [-w * math.sin(phi), math.cos(phi)]]
    defoc = [[math.cosh(phi), math.sinh(phi) / w], [w * math.sinh(phi), math.cosh(phi)]]
    hor, ver = (foc, defoc) if k > 0 else (defoc, foc)
    m = torch.eye(6, dtype=torch.float64)
    m[0:2, 0:2] = torch.tensor(hor, dtype=torch.float64)
    m[2:4, 2:4] = torch.tensor(ver, dtype=torch.float64)
    m[4, 5] = length / ref.beta_gamma**2
    return m


@pytest.mark.parametrize("k", [1.3, -0.7, 1e-5])
def test_thick_quad_matrix(k):
    length = 0.9
    got = jacobian([element("Quadrupole", length=length, Kn1=k)], origin())
    torch.testing.assert_close(got, quad_matrix(length, k, REF), rtol=1e-14, atol=1e-15)


def test_thin_lens_limit():
    """Quad of length L, strength kL/L between drifts of -L/2 -> thin lens kL: the focusing
    term -w sin(wL) = -kL (1 - kL L/6 + ...) converges linearly in L."""
    kl = 0.4
    thin = jacobian([element("Multipole", Kn1L=kl, length=0.0)], origin())
    assert thin[1, 0] == -kl and thin[3, 2] == kl
    errors = []
    for length in (1e-2, 5e-3):
        drift = element("Drift", length=-length / 2, name="d")
        quad = element("Quadrupole", length=length, Kn1=kl / length)
        got = jacobian([drift, quad, drift], origin())
        errors.append(float((got[:4, :4] - thin[:4, :4]).abs().max()))
    assert errors[0] == pytest.approx(kl * kl * 1e-2 / 6.0, rel=1e-2)
    assert errors[0] / errors[1] == pytest.approx(2.0, rel=1e-2)


@pytest.mark.parametrize("tier", ["paraxial", "exact"])
def test_quad_linearisation_is_the_linear_quad(tier):
    """ChrQuad and ExactQuad (any step count) linearise to Quad at the reference orbit."""
    quad = element("Quadrupole", tier, length=0.9, Kn1=-1.3, mapsteps=3)
    torch.testing.assert_close(jacobian([quad], origin(), SLOW), quad_matrix(0.9, -1.3, SLOW),
                               rtol=1e-13, atol=1e-14)


def test_chr_quad_chromatic_focusing():
    """ChrQuad at energy offset delta is a quad of k/(1+delta) acting on px/(1+delta)."""
    k, length, pt = 1.1, 0.8, -2e-2
    delta1 = math.sqrt(1.0 - 2.0 * pt / SLOW.beta + pt * pt)
    v = torch.tensor([1e-3, 2e-4, -5e-4, 1e-4, 0.0, pt], dtype=torch.float64)
    out = track_one([element("Quadrupole", "paraxial", length=length, Kn1=k)], v, SLOW)
    m = quad_matrix(length, k / delta1, SLOW)
    for q, p in ((0, 1), (2, 3)):
        q_out = m[q, q] * v[q] + m[q, p] * v[p] / delta1
        p_out = m[p, q] * delta1 * v[q] + m[p, p] * v[p]
        torch.testing.assert_close(out[[q, p]], torch.stack([q_out, p_out]), rtol=1e-13,
                                   atol=1e-18)


# -- bends ----------------------------------------------------------------------------------------
def sbend_matrix(length: float, angle: float, ref: ReferenceParticle) -> torch.Tensor:
    """Sector dipole (Wolski 3.4) with delta = -pt/beta and c dt = -z/beta."""
    rho = length / angle
    beta = ref.beta
    c, s = math.cos(angle), math.sin(angle)
    m = torch.eye(6, dtype=torch.float64)
    m[0, 0], m[0, 1], m[0, 5] = c, rho * s, -rho * (1.0 - c) / beta
    m[1, 0], m[1, 1], m[1, 5] = -s / rho, c, -s / beta
    m[2, 3] = length
    m[4, 0], m[4, 1] = s / beta, rho * (1.0 - c) / beta
    m[4, 5] = length / ref.beta_gamma**2 - rho * (angle - s) / beta**2
    return m


@pytest.mark.parametrize("ref", [REF, SLOW], ids=["e2GeV", "p800MeV"])
@pytest.mark.parametrize("angle", [0.1, -0.3])
def test_sbend_linear_matrix(ref, angle):
    bend = element("SBend", length=0.7, angle=angle, e1=0.0, e2=0.0)
    torch.testing.assert_close(jacobian([bend], origin(), ref), sbend_matrix(0.7, angle, ref),
                               rtol=1e-13, atol=1e-15)


def test_exact_sbend_linearises_to_sbend():
    bend = element("SBend", "exact", length=0.7, angle=0.2, e1=0.0, e2=0.0)
    torch.testing.assert_close(jacobian([bend], origin(), SLOW), sbend_matrix(0.7, 0.2, SLOW),
                               rtol=1e-12, atol=1e-14)


def test_dipole_edge_focusing():
    """Hard-edge pole face: px += tan(e)/rho x, py -= tan(e)/rho y (Wolski 3.5)."""
    bend = element("SBend", length=1e-300, angle=1e-300 / 4.0, e1=0.1, e2=0.0)
    got = jacobian([bend], origin())
    assert float(got[1, 0]) == pytest.approx(math.tan(0.1) / 4.0, rel=1e-14)
    assert float(got[3, 2]) == pytest.approx(-math.tan(0.1) / 4.0, rel=1e-14)


# -- symplecticity --------------------------------------------------------------------------------
SYMPLECTIC_LATTICES = {
    "Drift": [element("Drift", length=1.2)],
    "ChrDrift": [element("Drift", "paraxial", length=1.2)],
    "ExactDrift": [element("Drift", "exact", length=1.2)],
    "Quad": [element("Quadrupole", length=0.7, Kn1=2.0)],
    "ChrQuad": [element("Quadrupole", "paraxial", length=0.7, Kn1=-2.0)],
    "ExactQuad": [element("Quadrupole", "exact", length=0.7, Kn1=2.0, mapsteps=4)],
    "Sbend+DipEdge": [element("SBend", length=0.5, angle=0.2, e1=0.05, e2=-0.03)],
    "CFbend": [element("SBend", length=0.5, angle=0.2, e1=0.0, e2=0.0, Kn1=0.8)],
    "ExactSbend": [element("SBend", "exact", length=0.5, angle=-0.2, e1=0.0, e2=0.0)],
    "ExactCFbend": [element("SBend", "exact", length=0.5, angle=0.2, e1=0.0, e2=0.0, Kn1=0.8,
                            mapsteps=3)],
    "ExactMultipole": [element("Sextupole", "exact", length=0.2, Kn2=80.0, mapsteps=3)],
    "Multipole": [element("Multipole", Kn2L=30.0, Ks3L=500.0, Kn1L=0.2, length=0.0)],
    "Sol": [element("Solenoid", length=0.6, Ksol=1.5)],
}


@pytest.mark.parametrize("name", list(SYMPLECTIC_LATTICES))
def test_symplectic(name):
    """J^T S J = S at off-axis particles, J from forward-mode AD."""
    for v in off_axis_particles():
        j = jacobian(SYMPLECTIC_LATTICES[name], v, SLOW)
        torch.testing.assert_close(j.T @ S @ j, S, rtol=0.0, atol=2e-13)


def test_short_rf_is_conformally_symplectic():
    """A gap that changes the reference momentum scales the form by (beta gamma)_i/_f."""
    gap = element("RFCavity", voltage=3e7, frequency=1.3e9, phase=-0.4, length=0.0)
    bg_in = SLOW.beta_gamma
    gamma_out = SLOW.gamma + 3e7 / SLOW.mass_eV * math.cos(-0.4)
    bg_out = math.sqrt(gamma_out**2 - 1.0)
    for v in off_axis_particles():
        j = jacobian([gap], v, SLOW)
        torch.testing.assert_close(j.T @ S @ j, S * (bg_in / bg_out), rtol=0.0, atol=1e-14)


# -- linear fusion ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fodo_linear", "chicane", "fodo_sextupole"])
def test_fusion_on_off_identical(name):
    scenario = load_scenario(name)
    particles = torch.from_numpy(generate(scenario.beam, 2000))
    fused, _ = Tracker(scenario.elements, scenario.reference_particle,
                       fuse_linear=True).track(particles)
    unfused_tracker = Tracker(scenario.elements, scenario.reference_particle, fuse_linear=False)
    unfused, _ = unfused_tracker.track(particles)
    assert len(unfused_tracker.steps()) == len(unfused_tracker.specs)
    scale = unfused.std(dim=0)
    assert float(((fused - unfused).abs() / scale).max()) < 1e-13


@pytest.mark.parametrize("tier", ["linear", "exact"])
def test_space_charge_slices_of_a_fringed_tilted_bend_compose_to_the_bend(tier: str) -> None:
    """The space-charge tracker's slices keep the entrance edge (angle and fringe integral)
    on the first slice and the exit edge on the last, so that without kicks they compose
    to the whole element (misalignment and tilt per slice cancel in between)."""
    from backends.inhouse.sc_tracking import slice_element

    bend = element("SBend", tier, length=0.6, angle=0.15, e1=0.04, e2=0.02, edge_int1=0.03,
                   edge_int2=0.01, tilt_ref=0.4)
    quad = element("Quadrupole", tier, name="q", mapsteps=30, length=0.4, Kn1=1.2, Ks1=0.3,
                   x_offset=1e-4, z_rot=0.2)
    particles = generate(load_scenario("chicane").beam, 200)
    for whole in (bend, quad):
        one, _ = Tracker([whole], REF).track(torch.from_numpy(particles))
        # each slice keeps mapsteps: the whole element with 3x the steps takes the same steps
        pieces = slice_element(replace(whole, mapsteps=max(whole.mapsteps // 3, 1)), 3)
        sliced, _ = Tracker(pieces, REF).track(torch.from_numpy(particles))
        bound = 1e-13 if tier == "linear" else 1e-10
        scale = one.std(dim=0)
        assert float(((sliced - one).abs().max(dim=0).values / scale).max()) < bound
