"""Thin kicks of two ImpactX elements without a PALS counterpart: the thin dipole
(``src/elements/ThinDipole.H``) and the linearised RF buncher (``src/elements/Buncher.H``).
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
