"""Quadrupole maps of ImpactX's three model tiers (``k`` [1/m^2], MAD-X K1, k > 0 focuses x).

* linear ``Quad``: ImpactX ``src/elements/Quad.H``;
* paraxial ``ChrQuad`` (chromatic focusing sqrt(k/(1+delta)), symplectic t update):
  ``src/elements/ChrQuad.H``;
* exact ``ExactQuad``: ``src/elements/ExactQuad.H``, symplectic integration of the
  splitting H = H_1 + H_2 with H_1 the linear quadrupole (map 1) and H_2 the exact-minus-
  linear drift (map 2), ``nslice * mapsteps`` steps (see :mod:`backends.inhouse.integrators`).

The focusing and defocusing branches of ImpactX are written with the entire functions of
:func:`backends.inhouse.numeric.focusing_functions` (C, S of k and -k), which reproduce both
branches and the k = 0 drift, and are differentiable in k everywhere.
"""

from __future__ import annotations

import math

import torch

from backends.inhouse import integrators
from backends.inhouse import numeric as nm
from backends.inhouse.maps import Columns, Entries, Kernel
from backends.inhouse.reference import RefState


def _sign(k: nm.Scalar) -> int | None:
    """Sign of a constant strength (None for a tensor, decided element-wise)."""
    if isinstance(k, torch.Tensor):
        return None
    return (k > 0) - (k < 0)


def _regular(k: nm.Scalar, length: nm.Scalar) -> bool:
    """Whether a constant strength is 0 or far from it (|k| L^2 >= 0.1), so that even a
    chromatic factor 1/(1+delta) in (1/2, 2) keeps the direct formulas accurate."""
    if isinstance(k, torch.Tensor) or isinstance(length, torch.Tensor):
        return False
    return k == 0.0 or abs(k) * length * length >= 0.1


def quad_entries(length: nm.Scalar, k: nm.Scalar, ref: RefState) -> Entries:
    """Linear quadrupole (``Quad.H``): x'' = -k x, y'' = +k y, t += L pt/(beta gamma)^2."""
    sign = _sign(k)
    cx, sx = nm.focusing_functions(k, length, sign, derived=False)
    cy, sy = nm.focusing_functions(-k, length, None if sign is None else -sign,
                                   derived=False)
    return {
        (0, 0): cx, (0, 1): sx, (1, 0): -k * sx, (1, 1): cx,
        (2, 2): cy, (2, 3): sy, (3, 2): k * sy, (3, 3): cy,
        (4, 5): length / (ref.beta_gamma**2),
    }


def _chr_quad_push(columns: Columns, coeffs: tuple) -> Columns:
    x, px, y, py, t, pt = columns
    length, k, sign, regular, beta, root_k = coeffs
    # 1 + delta from pt (ChrQuad.H)
    delta1, delta = nm.momentum_deviation(pt, 1.0 / beta)
    kx = k / delta1
    cx: nm.Scalar
    sx: nm.Scalar
    cy: nm.Scalar
    sy: nm.Scalar
    if regular and sign:
        # k constant, |k| L^2 far from 0: C, S of +-k/(1+delta) from one phase
        # phi = sqrt(|k|) L / sqrt(1+delta). The x and y planes, and a focusing and a
        # defocusing quadrupole of equal |k| and L in one compiled segment, share phi and
        # its cos, sin, cosh and sinh (inductor eliminates the common subexpressions).
        w = root_k * torch.rsqrt(delta1)
        phi = w * length
        trig = (torch.cos(phi), torch.sin(phi) / w)
        # cosh and sinh from one exponential: phi >= sqrt(0.1 / 2) here (|k| L^2 >= 0.1,
        # 1 + delta < 2), so (e - 1/e)/2 loses at most coth(phi) < 5 ulp to cancellation
        grow = torch.exp(phi)
        shrink = 1.0 / grow
        hyper = (0.5 * (grow + shrink), 0.5 * (grow - shrink) / w)
        (cx, sx), (cy, sy) = (trig, hyper) if sign > 0 else (hyper, trig)
    else:
        cx, sx = nm.focusing_functions(kx, length, sign, regular, derived=False)
        cy, sy = nm.focusing_functions(-kx, length, None if sign is None else -sign,
                                       regular, derived=False)
    x_out = cx * x + sx / delta1 * px
    px_out = -k * sx * x + cx * px
    y_out = cy * y + sy / delta1 * py
    py_out = k * sy * y + cy * py
    # ImpactX's t update, written per plane j with strength k_j = +-k/(1+delta):
    # bracket/omega = sum_j [-(p_j^2 - k_j d1^2 q_j^2) S_j(2L) - 2 q_j p_j d1 C_j(2L)
    #                        + 2 q_j p_j d1 - 2 p_j^2 L - 2 k_j d1^2 q_j^2 L]
    # with C(2L) = C^2 - k S^2 and S(2L) = 2 S C (double-angle formulas).
    bracket = 0.0
    for q, p, c, s, kj in ((x, px, cx, sx, kx), (y, py, cy, sy, -kx)):
        c2 = c * c - kj * s * s
        s2 = 2.0 * s * c
        qq = kj * delta1 * delta1 * q * q
        qp = q * p * delta1
        bracket = bracket + (-(p * p - qq) * s2 - 2.0 * qp * c2 + 2.0 * qp
                             - 2.0 * p * p * length - 2.0 * qq * length)
    # pt + delta/beta = (delta + beta pt)/beta, first-order cancellation removed
    t0 = t - nm.delta_plus_beta_pt(pt, delta, beta) / beta * length / delta1
    t_out = t0 + (-1.0 + beta * pt) / (8.0 * beta * delta1 * delta1 * delta1) * bracket
    return (x_out, px_out, y_out, py_out, t_out, pt)


def chr_quad_kernel(length: nm.Scalar, k: nm.Scalar, ref: RefState) -> Kernel:
    """Paraxial (chromatic) quadrupole (``ChrQuad.H``)."""
    sign = _sign(k)
    root_k = math.sqrt(abs(float(k))) if sign is not None else None
    return Kernel(_chr_quad_push, (length, k, sign, _regular(k, length), ref.beta, root_k))


def _quad_map1_push(columns: Columns, coeffs: tuple) -> Columns:
    x, px, y, py, t, pt = columns
    cx, sx, fx, cy, sy, fy, r56 = coeffs
    return (cx * x + sx * px, fx * x + cx * px, cy * y + sy * py, fy * y + cy * py,
            t + r56 * pt, pt)


def _quad_map2_push(columns: Columns, coeffs: tuple) -> Columns:
    """ExactQuad.H map2 (exact minus linear drift). ImpactX writes, with
    pz = sqrt((pt - 1/beta)^2 - 1/(beta gamma)^2 - px^2 - py^2),
    x += tau px (1/pz - 1), t += tau (-1/beta - pt/(beta gamma)^2 - (pt - 1/beta)/pz);
    here pz = sqrt(1 + w), w = pt^2 - 2 pt/beta - px^2 - py^2, and the same updates are
    x -= tau px (pz - 1)/pz, t -= tau (pt/(beta gamma)^2 + (pt + (pz - 1)/beta)/pz)."""
    x, px, y, py, t, pt = columns
    tau, ibeta, ibetgam2 = coeffs
    _, inv_pz, excess_ratio, time = nm.exact_longitudinal(pt, px, py, ibeta)
    excess = tau * excess_ratio
    return (x - excess * px, px, y - excess * py, py,
            t - tau * (ibetgam2 * pt + time * inv_pz), pt)


def exact_quad_maps(k: nm.Scalar, ref: RefState):
    """``map_coeffs(index, tau) -> (push, coefficients)`` of ``ExactQuad.H``'s two maps:
    1 the linear quadrupole, 2 the exact minus linear drift (also stepped by the spin
    integrator, :mod:`backends.inhouse.spin`)."""
    ibeta = 1.0 / ref.beta
    ibetgam2 = 1.0 / (ref.beta_gamma**2)

    def map_coeffs(index: int, tau):
        if index == 1:
            entries = quad_entries(tau, k, ref)
            return _quad_map1_push, tuple(entries[key] for key in (
                (0, 0), (0, 1), (1, 0), (2, 2), (2, 3), (3, 2), (4, 5)))
        return _quad_map2_push, (tau, ibeta, ibetgam2)

    return map_coeffs


def exact_quad_kernel(length: nm.Scalar, k: nm.Scalar, ref: RefState, nsteps: int,
                      order: int = 2) -> Kernel:
    """Exact quadrupole (``ExactQuad.H``): ``nsteps`` symplectic steps of ``order``."""
    map_coeffs = exact_quad_maps(k, ref)
    sequence = integrators.build_sequence(order, length / nsteps, map_coeffs)
    return Kernel(integrators.integrate_push, (nsteps, sequence))
