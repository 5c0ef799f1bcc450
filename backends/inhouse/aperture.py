"""Thin transverse aperture (ImpactX ``src/elements/Aperture.H``, action ``transmit``).

A particle is lost when (x/a_x)^2 > 1 or (y/a_y)^2 > 1 (rectangular) or
(x/a_x)^2 + (y/a_y)^2 > 1 (elliptical); coordinates are unchanged. ImpactX removes lost
particles; here the loss is a boolean survival mask carried through the rest of the
lattice, and the observables weight particles by it (``harness.model.observables``). The mask is
piecewise constant, so it carries no gradient with respect to the particle coordinates.
"""

from __future__ import annotations

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Columns, Kernel


def _aperture_push(columns: Columns, coeffs: tuple):
    x, _, y, _, _, _ = columns
    x_limit, y_limit, elliptical = coeffs
    u = x / x_limit
    v = y / y_limit
    ok = u * u + v * v <= 1.0 if elliptical else (u * u <= 1.0) & (v * v <= 1.0)
    return columns, ok


def aperture_kernel(x_limit: nm.Scalar, y_limit: nm.Scalar, elliptical: bool) -> Kernel:
    """The aperture of half-widths ``x_limit``, ``y_limit`` [m]."""
    return Kernel(_aperture_push, (x_limit, y_limit, bool(elliptical)), loses_particles=True)
