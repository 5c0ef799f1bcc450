"""Drift maps of ImpactX's three model tiers.

* linear ``Drift``: ImpactX ``src/elements/Drift.H``;
* paraxial ``ChrDrift`` (Hamiltonian expanded to second order in x, px, y, py, exact in pt):
  ``src/elements/ChrDrift.H``;
* exact ``ExactDrift`` (exact Hamiltonian): ``src/elements/ExactDrift.H``.

Lengths in m; the maps act on ImpactX's (x, px, y, py, t, pt). Each ImpactX slice applies
the same map to ``ds/nslice``; drifts compose exactly, so the whole length is applied once.
"""

from __future__ import annotations

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Columns, Entries, Kernel
from backends.inhouse.reference import RefState


def drift_entries(length: nm.Scalar, ref: RefState) -> Entries:
    """Linear drift (``Drift.H``): x += L px, y += L py, t += L pt / (beta gamma)^2."""
    return {(0, 1): length, (2, 3): length, (4, 5): length / (ref.beta_gamma**2)}


def _chr_drift_push(columns: Columns, coeffs: tuple) -> Columns:
    x, px, y, py, t, pt = columns
    length, beta = coeffs
    delta1, delta = nm.momentum_deviation(pt, 1.0 / beta)
    idelta1 = 1.0 / delta1
    x_out = x + length * px * idelta1
    y_out = y + length * py * idelta1
    # ChrDrift.H: t -= L (1/beta + term/(1+delta)^3) with
    #   term = (-1 + beta pt) (-2 + gamma^2 (2 - 4 beta pt + beta^2 (2 pt^2 + px^2 + py^2)))
    #          / (2 beta^3 gamma^2).
    # The inner bracket is beta^2 gamma^2 (2 (1+delta)^2 + px^2 + py^2), hence the same
    # update written without its O(1) cancellation:
    #   t -= L [(delta + beta pt) / (beta (1+delta)) + (beta pt - 1)(px^2 + py^2)
    #           / (2 beta (1+delta)^3)].
    # delta + beta pt cancels to first order: nm.delta_plus_beta_pt
    transverse = px * px + py * py
    t_out = t - length / beta * idelta1 * (
        nm.delta_plus_beta_pt(pt, delta, beta)
        + (beta * pt - 1.0) * transverse * 0.5 * idelta1 * idelta1)
    return (x_out, px, y_out, py, t_out, pt)


def chr_drift_kernel(length: nm.Scalar, ref: RefState) -> Kernel:
    """Paraxial drift (``ChrDrift.H``): transverse motion scaled by 1/(1+delta) and the
    symplectic t update of the second-order Hamiltonian."""
    return Kernel(_chr_drift_push, (length, ref.beta))


def exact_drift_push(columns: Columns, coeffs: tuple) -> Columns:
    """Exact drift of length ``coeffs[0]`` (``ExactDrift.H``); also ImpactX's map H_1 of
    ``ExactMultipole``.

    ImpactX: pz = sqrt((pt - 1/beta)^2 - 1/(beta gamma)^2 - px^2 - py^2),
    t -= L (1/beta + (pt - 1/beta)/pz). With 1/beta^2 - 1/(beta gamma)^2 = 1 this is
    pz = sqrt(1 + w), w = pt^2 - 2 pt/beta - px^2 - py^2, and
    t -= L (pt + (pz - 1)/beta) / pz, free of the O(1) cancellation, with pt + (pz - 1)/beta
    formed free of its first-order one (:func:`backends.inhouse.numeric.exact_longitudinal`).
    """
    x, px, y, py, t, pt = columns
    length, ibeta = coeffs
    _, inv_pz, _, time = nm.exact_longitudinal(pt, px, py, ibeta)
    x_out = x + length * px * inv_pz
    y_out = y + length * py * inv_pz
    t_out = t - length * time * inv_pz
    return (x_out, px, y_out, py, t_out, pt)


def exact_drift_coeffs(length: nm.Scalar, ref: RefState) -> tuple:
    """Coefficients of :func:`exact_drift_push`: (L, 1/beta)."""
    return (length, 1.0 / ref.beta)


def exact_drift_kernel(length: nm.Scalar, ref: RefState) -> Kernel:
    """Exact drift (``ExactDrift.H``), see :func:`exact_drift_push`."""
    return Kernel(exact_drift_push, exact_drift_coeffs(length, ref))
