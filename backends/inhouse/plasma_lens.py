"""Active plasma lenses: the thick chromatic lens (ImpactX ``src/elements/ChrPlasmaLens.H``)
and the thin tapered lens (``src/elements/TaperedPL.H``).

Both focus x and y equally (an azimuthal magnetic field B_phi = g' r inside the lens).
Strengths follow ImpactX's ``unit = 0``: the thick lens takes g [1/m^2] (gradient /
rigidity, g > 0 focuses, g < 0 defocuses), the thin lens the integrated strength
g [1/m] (length * gradient / rigidity). ImpactX's ``unit = 1`` (gradient in T/m, integrated
gradient in T) is :func:`per_rigidity` of the value.
"""

from __future__ import annotations

import torch

from backends.inhouse import drift
from backends.inhouse import numeric as nm
from backends.inhouse.maps import Columns, Kernel
from backends.inhouse.reference import RefState
from harness.model.reference_particle import C_LIGHT


def rigidity(ref: RefState) -> nm.Scalar:
    """Magnetic rigidity B rho = p/q [T m], signed with the charge (ImpactX
    ``RefPart::rigidity_Tm``): (beta gamma) m c^2 [eV] / (c q [e])."""
    return ref.beta_gamma * ref.mass_eV / (C_LIGHT * ref.charge_qe)


def per_rigidity(value: nm.Scalar, ref: RefState) -> nm.Scalar:
    """ImpactX's ``unit = 1`` conversion: a gradient [T/m] (or integrated gradient [T])
    divided by the rigidity, giving g [1/m^2] (or [1/m])."""
    return value / rigidity(ref)


def _sign(g: nm.Scalar) -> int | None:
    if isinstance(g, torch.Tensor):
        return None
    return (g > 0) - (g < 0)


def _regular(g: nm.Scalar, length: nm.Scalar) -> bool:
    """|g| L^2 far from 0 (>= 0.1), so that even a chromatic factor 1/(1+delta) in (1/2, 2)
    keeps the direct cos/sin formulas accurate (as ``quadrupole._regular``)."""
    if isinstance(g, torch.Tensor) or isinstance(length, torch.Tensor):
        return False
    return g == 0.0 or abs(g) * length * length >= 0.1


def _chr_plasma_lens_push(columns: Columns, coeffs: tuple) -> Columns:
    """``ChrPlasmaLens.H`` ``operator()``.

    With 1 + delta = sqrt(1 - 2 pt/beta + pt^2) and omega = sqrt(|g|/(1+delta)), ImpactX
    writes for g > 0: x' = cos(omega L) x + sin(omega L)/(omega (1+delta)) px,
    px' = -omega (1+delta) sin(omega L) x + cos(omega L) px (cosh, sinh and +omega for
    g < 0), the same for y, and its t update from terms in sin(2 omega L), cos(2 omega L).
    These are C, S of the chromatic strength k = g/(1+delta) (entire in k,
    :func:`backends.inhouse.numeric.focusing_functions`): x' = C x + S px/(1+delta),
    px' = -g S x + C px, and, per plane, with C(2L) = C^2 - k S^2, S(2L) = 2 S C,
    t' = t - (pt + delta/beta) L/(1+delta) + (-1 + beta pt)/(8 beta (1+delta)^3) *
    sum_planes [-(p^2 - k (1+delta)^2 q^2) S(2L) - 2 q p (1+delta) C(2L) + 2 q p (1+delta)
    - 2 p^2 L - 2 k (1+delta)^2 q^2 L] (ImpactX's terms 1-5 divided by omega).

    ImpactX's defocusing branch (g < 0) writes the last term as - 2 |k| (1+delta)^2 q^2 L
    (``term5`` keeps the focusing sign), which makes its t update non-symplectic; with
    ``impactx_t`` (the default) the kernel reproduces it, else it takes the symplectic
    flow's - 2 k (1+delta)^2 q^2 L (``docs/scenario-format.md``).
    """
    x, px, y, py, t, pt = columns
    length, g, sign, regular, beta, impactx_t = coeffs
    delta1, delta = nm.momentum_deviation(pt, 1.0 / beta)
    k = g / delta1
    c, s = nm.focusing_functions(k, length, sign, regular, derived=False)
    c2 = c * c - k * s * s
    s2 = 2.0 * s * c
    out = []
    bracket = 0.0
    for q, p in ((x, px), (y, py)):
        out.append((c * q + s / delta1 * p, -g * s * q + c * p))
        qq = k * delta1 * delta1 * q * q
        qp = q * p * delta1
        last = nm.absolute(k) * delta1 * delta1 * q * q if impactx_t else qq
        bracket = bracket + (-(p * p - qq) * s2 - 2.0 * qp * c2 + 2.0 * qp
                             - 2.0 * p * p * length - 2.0 * last * length)
    t0 = t - nm.delta_plus_beta_pt(pt, delta, beta) / beta * length / delta1
    t_out = t0 + (-1.0 + beta * pt) / (8.0 * beta * delta1 * delta1 * delta1) * bracket
    (x_out, px_out), (y_out, py_out) = out
    return (x_out, px_out, y_out, py_out, t_out, pt)


def chr_plasma_lens_kernel(length: nm.Scalar, g: nm.Scalar, ref: RefState,
                           impactx_t: bool = True) -> Kernel:
    """``ChrPlasmaLens`` of ``length`` [m] and strength ``g`` [1/m^2]; ``impactx_t``:
    ImpactX's t update for g < 0 (the default), else the symplectic one (see
    :func:`_chr_plasma_lens_push`).

    A constant g = 0 is ImpactX's own ``ChrDrift`` branch (the same formulas as
    ``ChrDrift.H``), so it is that kernel. ImpactX's ``nslice`` slices compose to the whole
    element (pt is conserved, the transverse motion is linear at fixed pt and the t update
    is the flow's exact time of flight), so one map of the whole length is the same.
    """
    if not nm.is_tensor(g) and g == 0.0:
        return drift.chr_drift_kernel(length, ref)
    return Kernel(_chr_plasma_lens_push, (length, g, _sign(g), _regular(g, length), ref.beta,
                                          impactx_t))


def _tapered_push(columns: Columns, coeffs: tuple) -> Columns:
    """``TaperedPL.H`` ``operator()``: px -= g (x + taper (x^2 + y^2)/2),
    py -= g (y + taper x y)."""
    x, px, y, py, t, pt = columns
    g, taper = coeffs
    px_out = px - g * (x + 0.5 * taper * (x * x + y * y))
    py_out = py - g * (y + taper * x * y)
    return (x, px_out, y, py_out, t, pt)


def tapered_pl_kernel(g: nm.Scalar, taper: nm.Scalar) -> Kernel:
    """Thin tapered plasma lens of integrated strength ``g`` [1/m] and horizontal taper
    ``taper`` [1/m] (1 / the horizontal dispersion; C. Lindstrøm et al., "Achromatic optics
    using nonlinear plasma lenses for beam-quality preservation between
    plasma-accelerator stages", arXiv:2604.17605)."""
    return Kernel(_tapered_push, (g, taper))
