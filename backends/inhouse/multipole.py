"""Multipole maps (MAD-X conventions: KnL, KsL integrated, Kn, Ks per metre).

* thin ``Multipole`` (``src/elements/Multipole.H``): for each order n (n = 0 dipole, 1 quad,
  2 sextupole, ...; ImpactX's index m = n + 1) the kick
  dpx = -Re[(KnL + i KsL) (x + i y)^n] / n!, dpy = +Im[...] / n!, independent of pt;
* thick ``ExactMultipole`` (``src/elements/ExactMultipole.H``): symplectic splitting with the
  exact drift (map 1) and the kick of all orders per unit length (map 2), ``nsteps`` steps.

A thin multipole with only quadrupole components is linear and is given as 6x6 entries.
"""

from __future__ import annotations

import math

import torch

from backends.inhouse import integrators
from backends.inhouse import numeric as nm
from backends.inhouse.drift import exact_drift_coeffs, exact_drift_push
from backends.inhouse.maps import Columns, Entries, Kernel
from backends.inhouse.reference import RefState

#: (order n, normal strength, skew strength), strengths integrated (thin) or per metre.
Strength = tuple[int, nm.Scalar, nm.Scalar]


def _kick(x: torch.Tensor, y: torch.Tensor, strengths: tuple[Strength, ...]
          ) -> tuple[nm.Scalar, nm.Scalar]:
    """sum_n -Re, +Im of (Kn + i Ks)(x + i y)^n / n! (powers built by complex products)."""
    dpx: nm.Scalar = 0.0
    dpy: nm.Scalar = 0.0
    max_order = max(n for n, _, _ in strengths)
    re: nm.Scalar = 1.0  # (x + i y)^0
    im: nm.Scalar = 0.0
    for n in range(max_order + 1):
        for order, kn, ks in strengths:
            if order == n:
                inv_fact = 1.0 / math.factorial(n)
                dpx = dpx - (kn * re - ks * im) * inv_fact
                dpy = dpy + (kn * im + ks * re) * inv_fact
        re, im = re * x - im * y, re * y + im * x
    return dpx, dpy


def _thin_push(columns: Columns, coeffs: tuple) -> Columns:
    x, px, y, py, t, pt = columns
    dpx, dpy = _kick(x, y, coeffs)
    return (x, px + dpx, y, py + dpy, t, pt)


def thin_multipole_kernel(strengths: tuple[Strength, ...]) -> Kernel:
    """Thin multipole kick of integrated strengths (``Multipole.H``)."""
    return Kernel(_thin_push, tuple(strengths))


def thin_quadrupole_entries(k1l: nm.Scalar, k1sl: nm.Scalar) -> Entries:
    """The thin kick of order 1 as a matrix: px -= k1l x - k1sl y, py += k1l y + k1sl x."""
    return {(1, 0): -k1l, (1, 2): k1sl, (3, 2): k1l, (3, 0): k1sl}


def _kick_push(columns: Columns, coeffs: tuple) -> Columns:
    x, px, y, py, t, pt = columns
    tau, strengths = coeffs
    dpx, dpy = _kick(x, y, strengths)
    return (x, px + tau * dpx, y, py + tau * dpy, t, pt)


def exact_multipole_maps(strengths: tuple[Strength, ...], ref: RefState):
    """``map_coeffs(index, tau) -> (push, coefficients)`` of ``ExactMultipole.H``'s two
    maps: 1 the exact drift, 2 the multipole kick (also stepped by the spin integrator,
    :mod:`backends.inhouse.spin`)."""

    def map_coeffs(index: int, tau):
        if index == 1:
            return exact_drift_push, exact_drift_coeffs(tau, ref)
        return _kick_push, (tau, tuple(strengths))

    return map_coeffs


def exact_multipole_kernel(length: nm.Scalar, strengths: tuple[Strength, ...],
                           ref: RefState, nsteps: int, order: int = 2) -> Kernel:
    """Thick multipole with the exact Hamiltonian (``ExactMultipole.H``), strengths per
    metre (e.g. a sextupole ``(2, Kn2, 0)``), ``nsteps`` symplectic steps of ``order``."""
    map_coeffs = exact_multipole_maps(strengths, ref)
    sequence = integrators.build_sequence(order, length / nsteps, map_coeffs)
    return Kernel(integrators.integrate_push, (nsteps, sequence))
