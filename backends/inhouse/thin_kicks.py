"""Thin maps of ImpactX elements without a PALS counterpart: the thin dipole
(``src/elements/ThinDipole.H``), the linearised RF buncher (``src/elements/Buncher.H``) and
the hard-edge quadrupole fringe field (``src/elements/QuadEdge.H``).
"""

from __future__ import annotations

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Columns, Entries, Kernel
from backends.inhouse.reference import RefState


def _thin_dipole_push(columns: Columns, coeffs: tuple) -> Columns:
    """``ThinDipole.H`` ``operator()`` (G. Ripken, F. Schmidt, "A symplectic
    six-dimensional thin-lens formalism for tracking", CERN/SL/95-12 (AP), 1995, eqs. 3.2b
    and 3.2e): with f = delta (1 + delta = sqrt(1 - 2 pt/beta + pt^2)) and
    f' = (1 - beta pt)/(beta (1 + delta)), px -= kx^2 ds x - kx ds f, t += kx ds x f'."""
    x, px, y, py, t, pt = columns
    focus, bend, beta = coeffs
    delta1, delta = nm.momentum_deviation(pt, 1.0 / beta)
    fprime = (1.0 - beta * pt) / (beta * delta1)
    return (x, px - focus * x + bend * delta, y, py, t + bend * x * fprime, pt)


def thin_dipole_kernel(theta: nm.Scalar, rc: nm.Scalar, ref: RefState) -> Kernel:
    """The thin dipole of bending angle ``theta`` [rad] (ImpactX takes degrees) and radius
    of curvature ``rc`` [m] (MAD-X's thin dipole): ImpactX's effective length ds = theta rc
    and curvature kx = 1/rc give kx^2 ds = theta/rc and kx ds = theta."""
    kx = 1.0 / rc
    ds = theta * rc
    return Kernel(_thin_dipole_push, (kx * kx * ds, kx * ds, ref.beta))


def buncher_entries(voltage: nm.Scalar, k: nm.Scalar, ref: RefState) -> Entries:
    """``Buncher.H``: the linearised short RF gap at the zero crossing, of normalised
    voltage ``voltage`` (ImpactX's V = E_max L/(c B rho) = q V_peak/(p0 c), dimensionless)
    and RF wavenumber ``k`` [1/m] (2 pi f / c): px += k V/(2 (beta gamma)^2) x, the same for
    y, pt -= k V t. The reference particle is unchanged."""
    kv = k * voltage
    focus = kv / (2.0 * ref.beta_gamma**2)
    return {(1, 0): focus, (3, 2): focus, (5, 4): -kv}


def _quad_edge_push(columns: Columns, coeffs: tuple) -> Columns:
    """``QuadEdge.H`` ``operator()``, written in its order of operations: with
    a = flag (-g/12) / (1 + delta), x += -a (x^3 + 3 x y^2), y += a (3 x^2 y + y^3), the
    momenta solved from the implicit relations (denominator 1 - 9 a^2 (x^2 - y^2)^2)
    and t += f4 (pt - 1/beta) / (1 + delta)^2 (the third-order hard-edge fringe map of
    the quadrupole, E. Forest, Beam Dynamics: A New Attitude and Framework, 1998)."""
    x, px, y, py, t, pt = columns
    flag_a, beta = coeffs
    delta1 = nm.sqrt(1.0 - 2.0 * pt / beta + pt * pt)
    a = flag_a / delta1
    x2my2 = x * x - y * y
    x2py2 = x * x + y * y
    denominator = 1.0 - 9.0 * (a * a) * (x2my2 * x2my2)
    xcube = x * (x * x) + 3.0 * x * (y * y)
    ycube = 3.0 * (x * x) * y + y * (y * y)
    x_out = x - a * xcube
    y_out = y + a * ycube
    px_out = (px + 3.0 * a * px * x2py2 - 6.0 * a * py * x * y) / denominator
    py_out = (py - 3.0 * a * py * x2py2 + 6.0 * a * px * x * y) / denominator
    f4 = a * (px_out * xcube - py_out * (y * (y * y) + 3.0 * y * (x * x)))
    t_out = t + f4 * (pt - 1.0 / beta) / (delta1 * delta1)
    return (x_out, px_out, y_out, py_out, t_out, pt)


def quad_edge_kernel(k: nm.Scalar, flag: nm.Scalar, ref: RefState) -> Kernel:
    """The hard-edge fringe of a quadrupole of gradient ``k`` [1/m^2] (ImpactX unit 0) at
    its entry (``flag`` = +1) or exit (-1): ``QuadEdge.H`` with m_a = flag (-k / 12)."""
    return Kernel(_quad_edge_push, (flag * (-1.0 * k / 12.0), ref.beta))
