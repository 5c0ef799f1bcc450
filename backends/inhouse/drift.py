"""Drift maps of ImpactX's three model tiers.

* linear ``Drift``: ImpactX ``src/elements/Drift.H``;
* paraxial ``ChrDrift`` (Hamiltonian expanded to second order in x, px, y, py, exact in pt):
  ``src/elements/ChrDrift.H``;
* exact ``ExactDrift`` (exact Hamiltonian): ``src/elements/ExactDrift.H``.

Lengths in m; the maps act on ImpactX's (x, px, y, py, t, pt). Each ImpactX slice applies
the same map to ``ds/nslice``; drifts compose exactly, so the whole length is applied once.
"""

from __future__ import annotations

import torch

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Columns, Entries, Kernel
from backends.inhouse.reference import RefState


def drift_entries(length: nm.Scalar, ref: RefState) -> Entries:
    """Linear drift (``Drift.H``): x += L px, y += L py, t += L pt / (beta gamma)^2."""
    return {(0, 1): length, (2, 3): length, (4, 5): length / (ref.beta_gamma**2)}


def _chr_drift_push(columns: Columns, coeffs: tuple) -> Columns:
    x, px, y, py, t, pt = columns
    length, beta, gamma2, const1 = coeffs
    # 1 / (1 + delta), delta from pt (ChrDrift.H)
    idelta1 = 1.0 / torch.sqrt(1.0 - 2.0 * pt / beta + pt * pt)
    x_out = x + length * px * idelta1
    y_out = y + length * py * idelta1
    term = 2.0 * pt * pt + px * px + py * py
    term = 2.0 - 4.0 * beta * pt + beta * beta * term
    term = -2.0 + gamma2 * term
    term = (-1.0 + beta * pt) * term
    term = term * const1
    t_out = t - length * (1.0 / beta + term * idelta1 * idelta1 * idelta1)
    return (x_out, px, y_out, py, t_out, pt)


def chr_drift_kernel(length: nm.Scalar, ref: RefState) -> Kernel:
    """Paraxial drift (``ChrDrift.H``): transverse motion scaled by 1/(1+delta) and the
    symplectic t update of the second-order Hamiltonian."""
    beta, gamma = ref.beta, ref.gamma
    const1 = 1.0 / (2.0 * beta**3 * gamma**2)
    return Kernel(_chr_drift_push, (length, beta, gamma * gamma, const1))


def exact_drift_push(columns: Columns, coeffs: tuple) -> Columns:
    """Exact drift of length ``coeffs[0]`` (``ExactDrift.H``); also ImpactX's map H_1 of
    ``ExactMultipole``."""
    x, px, y, py, t, pt = columns
    length, ibeta, ibetagam2 = coeffs
    dpt = pt - ibeta
    inv_pzden = 1.0 / torch.sqrt(dpt * dpt - ibetagam2 - px * px - py * py)
    x_out = x + length * px * inv_pzden
    y_out = y + length * py * inv_pzden
    t_out = t - length * (ibeta + dpt * inv_pzden)
    return (x_out, px, y_out, py, t_out, pt)


def exact_drift_coeffs(length: nm.Scalar, ref: RefState) -> tuple:
    """Coefficients of :func:`exact_drift_push`: (L, 1/beta, 1/(beta gamma)^2)."""
    return (length, 1.0 / ref.beta, 1.0 / (ref.beta_gamma**2))


def exact_drift_kernel(length: nm.Scalar, ref: RefState) -> Kernel:
    """Exact drift (``ExactDrift.H``), pz = sqrt((pt - 1/beta)^2 - 1/(beta gamma)^2 - px^2
    - py^2)."""
    return Kernel(exact_drift_push, exact_drift_coeffs(length, ref))
