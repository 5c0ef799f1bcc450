"""Constant-focusing channel (ImpactX ``src/elements/ConstF.H``): a linear map that focuses
x, y and t independently, used for matched-beam and space-charge benchmarks.

Strengths follow ImpactX: ``kx``, ``ky`` [1/m] are signed square roots of a
quadrupole-like strength, kx = sign(K) sqrt(|K|) (kx > 0 focuses, kx < 0 defocuses with
cosh/sinh, kx = 0 is a drift), and ``kt`` [1/m] >= 0 focuses the (t, pt) plane.
"""

from __future__ import annotations

import torch

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Entries
from backends.inhouse.reference import RefState


def _sign(k: nm.Scalar) -> int | None:
    """Sign of a constant strength, None for a tensor (decided element-wise)."""
    if isinstance(k, torch.Tensor):
        return None
    return (k > 0) - (k < 0)


def _plane(k: nm.Scalar, length: nm.Scalar) -> tuple[nm.Scalar, nm.Scalar, nm.Scalar]:
    """(C, S, -K S) of one transverse plane with K = k |k| [1/m^2].

    ``ConstF.H`` ``compute_constants``: for k > 0, C = cos(k L), S = sin(k L)/k,
    R21 = -k sin(k L); for k < 0, C = cosh(|k| L), S = sinh(|k| L)/|k|,
    R21 = |k| sinh(|k| L); for k = 0 a drift. All three are the entire functions C, S of
    K = k |k| (:func:`backends.inhouse.numeric.focusing_functions`), with R21 = -K S,
    differentiable in k everywhere (dK/dk = 2 |k|).
    """
    strength = k * nm.absolute(k)
    c, s = nm.focusing_functions(strength, length, _sign(k), derived=False)
    return c, s, -strength * s


def constf_entries(length: nm.Scalar, kx: nm.Scalar, ky: nm.Scalar, kt: nm.Scalar,
                   ref: RefState) -> Entries:
    """The ``ConstF`` map over ``length`` [m] with strengths ``kx``, ``ky``, ``kt`` [1/m].

    ``ConstF.H`` ``operator()``: x, y as :func:`_plane`; t' = cos(kt L) t +
    sin(kt L)/(kt (beta gamma)^2) pt, pt' = -kt (beta gamma)^2 sin(kt L) t + cos(kt L) pt
    (L/(beta gamma)^2 for kt = 0). ImpactX applies it ``nslice`` times over L/nslice; the
    slices compose to the whole element (the map is the flow of an s-independent quadratic
    Hamiltonian), so one map of the whole length is the same to round-off. ``kt`` must be
    >= 0 (ImpactX raises ``ConstF: must have kt >= 0!``); callers check it.
    """
    cx, sx, fx = _plane(kx, length)
    cy, sy, fy = _plane(ky, length)
    ct, st = nm.focusing_functions(kt * kt, length, None if nm.is_tensor(kt) else
                                   int(kt > 0), derived=False)
    bg2 = ref.beta_gamma**2
    return {
        (0, 0): cx, (0, 1): sx, (1, 0): fx, (1, 1): cx,
        (2, 2): cy, (2, 3): sy, (3, 2): fy, (3, 3): cy,
        (4, 4): ct, (4, 5): st / bg2, (5, 4): -kt * kt * bg2 * st, (5, 5): ct,
    }
