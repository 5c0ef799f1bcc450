"""ImpactX's pole-face element ``DipEdge`` with all its parameters (``src/elements/DipEdge.H``),
for the extension kind ``ImpactX.DipEdge``: the linear fringe-field model and the
nonlinear one (C. E. Mitchell and K. Hwang, NAPAC 2025, eq. (14); K. Hwang and S. Y. Lee,
PRAB 18, 122401 (2015)), entry or exit. A bend's own pole faces are the linear model of
:func:`backends.inhouse.bend.dipedge_entries`.
"""

from __future__ import annotations

import torch

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Columns, Entries, Kernel
from backends.inhouse.reference import RefState


def linear_entries(psi: nm.Scalar, rc: nm.Scalar, gap_k2: nm.Scalar) -> Entries:
    """The linear model and the ``transport_map`` of either model (``DipEdge.H``):
    px += tan(psi)/rc x, py += (g K2 (1 + sin^2 psi)/(rc^2 cos^3 psi) - tan(psi)/rc) y, with
    ``gap_k2`` = g K2 [m]."""
    r21 = nm.tan(psi) / rc
    sin_psi, cos_psi = nm.sin(psi), nm.cos(psi)
    vf = (1.0 + sin_psi * sin_psi) / cos_psi**3 * gap_k2 / (rc * rc)
    return {(1, 0): r21, (3, 2): vf - r21}


def _nonlinear_push(columns: Columns, coeffs: tuple) -> Columns:
    """``DipEdge.H`` ``operator()``, nonlinear model (without ``modify_ref_part``): the
    coefficients c2, c3, c7..c12 scale with 1/(1 + delta), 1 + delta =
    sqrt(1 - 2 pt/beta + pt^2); x, y move by the c3, c10, c11 terms, px, py solve the
    generating function's 2x2 system (determinant D) and t follows from d delta / d pt."""
    x, px, y, py, t, pt = columns
    (c2d, c3d, c5, c7d, c8d, c9d, c10d, c11d, c12d, c13, c14, c15, ibeta) = coeffs
    inv_delta1 = 1.0 / torch.sqrt(1.0 - 2.0 * pt * ibeta + pt * pt)
    c2, c3, c7, c8, c9 = (c * inv_delta1 for c in (c2d, c3d, c7d, c8d, c9d))
    c10, c11, c12 = (c * inv_delta1 for c in (c10d, c11d, c12d))
    x2, y2 = x * x, y * y
    x_out = x - c3 - c10 * x2 + (c10 + c11) * y2
    y_out = y + 2.0 * c10 * x * y
    det = 1.0 - 4.0 * c10 * c11 * y2 - 4.0 * c10 * c10 * (x2 + y2)
    mixed = -c15 / 2.0 + c10 * c5 - c11 * c5 - c9
    d_r_dx = (-c13 + c2 + c3 * c5 + 2.0 * (c14 - c5) * x
              + 3.0 * (c15 / 6.0 + c10 * c5 + c8) * x2 + mixed * y2)
    d_r_dy = 2.0 * (-c14 + c5 - c7) * y + 2.0 * mixed * x * y - 4.0 * c12 * y2 * y
    dxdx, dxdy = 1.0 - 2.0 * c10 * x, 2.0 * (c10 + c11) * y
    dydx, dydy = 2.0 * c10 * y, 1.0 + 2.0 * c10 * x
    u, v = px - d_r_dx, py - d_r_dy
    px_out = (dydy * u - dydx * v) / det
    py_out = (-dxdy * u + dxdx * v) / det
    d_delta_dpt = (pt - ibeta) * inv_delta1
    t_out = t - d_delta_dpt * inv_delta1 * (
        (c2 + c3 * c5) * x + (c10 * c5 + c8) * x2 * x - c7 * y2 - c12 * y2 * y2
        + (c10 * c5 - c11 * c5 - c9) * x * y2
        + px_out * (-c3 + (c11 + c10) * y2 - c10 * x2) + 2.0 * py_out * c10 * x * y)
    return (x_out, px_out, y_out, py_out, t_out, pt)


def nonlinear_kernel(psi: nm.Scalar, rc: nm.Scalar, g: nm.Scalar, big_r: nm.Scalar,
                     k: tuple[nm.Scalar, ...], exit_face: bool, ref: RefState) -> Kernel:
    """The nonlinear model of ``DipEdge.H`` (``compute_constants``) of pole-face angle
    ``psi`` [rad], bend radius ``rc`` [m], gap ``g`` [m], length scale ``big_r`` [m] and
    the fringe-field integrals ``k`` = (K0, ..., K6) [1], at the entry or the exit."""
    k0, k1, k2, k3, k4, k5, k6 = k
    sin_psi, cos_psi = nm.sin(psi), nm.cos(psi)
    tan_psi = sin_psi / cos_psi
    sec_psi = 1.0 / cos_psi
    loc = -1.0 if exit_face else 1.0
    c2d = (g / rc) ** 2 * k0 * sin_psi * sec_psi**3 / 2.0
    c3d = loc * g * g / rc * k0 * sec_psi**2
    c5 = tan_psi / (2.0 * rc)
    c7d = 0.5 * sec_psi**3 * (g * k1 / (2.0 * rc * rc)
                              + (1.0 + sin_psi * sin_psi) * g * k2 / (rc * rc))
    c8d = (1.0 / 6.0) * tan_psi**3 / (2.0 * rc * rc)
    c9d = 0.5 * tan_psi * sec_psi**2 / (2.0 * rc * rc)
    c10d = loc * tan_psi**2 / (2.0 * rc)
    c11d = loc * 1.0 / (2.0 * rc)
    # ImpactX: (g > 0) ? ... : 0 (the K3 term divides by the gap)
    g_safe = nm.replace_where(nm.is_zero(g), g, 1.0)
    c12d = nm.select(nm.greater(g, 0.0),
                     (1.0 / 24.0) * (4.0 / cos_psi - 8.0 / cos_psi**3) * k3
                     / (rc * rc * g_safe), 0.0 * g)
    c13 = sin_psi * sin_psi / (2.0 * cos_psi**3) * g * g / (rc * big_r) * k4
    c14 = 0.5 * sin_psi / cos_psi**3 * g / (rc * big_r) * k5
    c15 = (k6 / (rc * big_r)) / cos_psi**3
    return Kernel(_nonlinear_push, (c2d, c3d, c5, c7d, c8d, c9d, c10d, c11d, c12d, c13, c14,
                                    c15, 1.0 / ref.beta))
