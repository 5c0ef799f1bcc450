"""Scalar algebra on ``float | torch.Tensor``, shared by every element map.

Element coefficients are Python floats when they are constants of the lattice and tensors
when they depend on a differentiable parameter (any shape: ``()`` or a batch shape). Each
function dispatches on the type, so that constants cost nothing at tracking time and never
cause a host-device copy, while tensors stay in the autograd graph:

* no Python branching on tensor values: choices are :func:`select` (``torch.where``);
* branch-free, differentiable forms of the functions with removable singularities
  (``sin(sqrt(k) L) / sqrt(k)`` and friends) use a Taylor series near ``k = 0`` together
  with the "double where" pattern, so that gradients and forward-mode tangents stay finite
  (no ``0 * inf``) in the branch that is not taken.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

import torch

Scalar = float | torch.Tensor

#: |k| L^2 below which :func:`focusing_functions` uses its Taylor series (the next term of
#: every series is below 1e-20 relative there).
SERIES_LIMIT = 1e-2


def is_tensor(value: Any) -> TypeGuard[torch.Tensor]:
    """Whether ``value`` is a torch tensor (a differentiable or device-resident quantity)."""
    return isinstance(value, torch.Tensor)


def any_tensor(*values: Any) -> bool:
    """Whether any of ``values``, or any item of a list or tuple among them, is a torch
    tensor (the map then keeps its graph; otherwise it is built without one)."""
    for value in values:
        if isinstance(value, torch.Tensor):
            return True
        if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
            return True
    return False


def _unary(name: str):
    math_fn = getattr(math, name)
    torch_fn = getattr(torch, name)

    def fn(value: Scalar) -> Scalar:
        return torch_fn(value) if isinstance(value, torch.Tensor) else math_fn(value)

    fn.__name__ = name
    fn.__doc__ = f"``{name}`` of a float (math) or a tensor (torch)."
    return fn


sqrt = _unary("sqrt")
sin = _unary("sin")
cos = _unary("cos")


def sinh(value: Scalar) -> Scalar:
    """``sinh`` of a float or a tensor; a float beyond the float64 range is +-inf, as
    torch and IEEE 754 give (math raises OverflowError), so a blow-up is tracked, not raised."""
    if isinstance(value, torch.Tensor):
        return torch.sinh(value)
    try:
        return math.sinh(value)
    except OverflowError:
        return math.copysign(math.inf, value)


def cosh(value: Scalar) -> Scalar:
    """``cosh`` of a float or a tensor; +inf beyond the float64 range (see :func:`sinh`)."""
    if isinstance(value, torch.Tensor):
        return torch.cosh(value)
    try:
        return math.cosh(value)
    except OverflowError:
        return math.inf

tan = _unary("tan")
asin = _unary("asin")
log = _unary("log")


def absolute(value: Scalar) -> Scalar:
    """|value| for a float or a tensor."""
    return value.abs() if isinstance(value, torch.Tensor) else abs(value)


def select(condition, if_true: Scalar, if_false: Scalar) -> Scalar:
    """``if_true`` where ``condition`` holds, else ``if_false``.

    A Python ``bool`` condition (a property of constants, known at set-up) picks one branch
    without any work; a tensor condition is evaluated element-wise with ``torch.where``.
    """
    if isinstance(condition, bool):
        return if_true if condition else if_false
    return torch.where(condition, if_true, if_false)


def greater(value: Scalar, bound: float):
    """``value > bound`` as a Python bool for floats, a bool tensor for tensors."""
    return value > bound if isinstance(value, torch.Tensor) else bool(value > bound)


def is_zero(value: Scalar):
    """``value == 0`` as a Python bool for floats, a bool tensor for tensors."""
    return value == 0 if isinstance(value, torch.Tensor) else bool(value == 0.0)


def replace_where(condition, value: Scalar, fallback: float) -> Scalar:
    """``value`` with ``fallback`` where ``condition`` holds: the guard of the double-where
    pattern, so that a branch that is not selected is evaluated at a harmless point."""
    if isinstance(condition, bool):
        return fallback if condition else value
    return torch.where(condition, fallback, value)


def _series(u: Scalar, coefficients: tuple[float, ...]) -> Scalar:
    """sum_n c_n (-u)^n by Horner's rule (u = k L^2)."""
    out: Scalar = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        out = c - u * out
    return out


#: Taylor coefficients (in -u = -k L^2) of C, S/L, D/L^2, E/L^3 (see focusing_functions).
_C_SERIES = tuple(1.0 / math.factorial(2 * n) for n in range(7))
_S_SERIES = tuple(1.0 / math.factorial(2 * n + 1) for n in range(7))
_D_SERIES = tuple(1.0 / math.factorial(2 * n + 2) for n in range(7))
_E_SERIES = tuple(1.0 / math.factorial(2 * n + 3) for n in range(7))


def focusing_functions(k: Scalar, length: Scalar, sign: int | None = None,
                       regular: bool = False, derived: bool = True) -> tuple[Scalar, ...]:
    """Entire functions of the focusing strength ``k`` [1/m^2] over ``length`` [m].

    With w = sqrt(|k|) and phi = w L (textbook solution of u'' = -k u, e.g. Wolski,
    *Beam Dynamics in High Energy Particle Accelerators*, ch. 3)::

        C = cos(phi)        (k > 0),  cosh(phi)        (k < 0),  1       (k = 0)
        S = sin(phi) / w    (k > 0),  sinh(phi) / w    (k < 0),  L       (k = 0)
        D = (1 - C) / k,  E = (L - S) / k  (limits L^2/2 and L^3/6 at k = 0)

    Returns ``(C, S, D, E)``, or ``(C, S)`` when ``derived`` is False.

    ``sign`` (+1, -1, 0) states the sign of ``k`` when it is known at set-up (e.g. a constant
    quad strength with a per-particle chromatic factor), which avoids evaluating both the
    trigonometric and the hyperbolic branch. ``regular`` states that |k| L^2 is known to be
    far from 0 (or k is exactly 0 with ``sign=0``), which skips the Taylor-series guard.
    """
    u = k * length * length
    small: bool | torch.Tensor
    if regular:
        small = False
    elif isinstance(u, torch.Tensor):
        small = u.abs() < SERIES_LIMIT
    else:
        small = abs(u) < SERIES_LIMIT
    k_safe = replace_where(small, k, 1.0)
    c_direct: Scalar
    s_direct: Scalar
    if sign == 0:
        c_direct, s_direct = 1.0, length
    else:
        w = sqrt(absolute(k_safe))
        phi = w * length
        if sign is None:
            positive = greater(k_safe, 0.0)
            c_direct = select(positive, cos(phi), cosh(phi))
            s_direct = select(positive, sin(phi), sinh(phi)) / w
        elif sign > 0:
            c_direct, s_direct = cos(phi), sin(phi) / w
        else:
            c_direct, s_direct = cosh(phi), sinh(phi) / w
    if small is False:
        if not derived:
            return c_direct, s_direct
        if sign == 0:
            return c_direct, s_direct, length * length / 2.0, length**3 / 6.0
        return (c_direct, s_direct, (1.0 - c_direct) / k_safe, (length - s_direct) / k_safe)
    c = select(small, _series(u, _C_SERIES), c_direct)
    s = select(small, length * _series(u, _S_SERIES), s_direct)
    if not derived:
        return c, s
    d = select(small, length * length * _series(u, _D_SERIES), (1.0 - c_direct) / k_safe)
    e = select(small, length**3 * _series(u, _E_SERIES), (length - s_direct) / k_safe)
    return c, s, d, e


def sinc_functions(theta: Scalar) -> tuple[Scalar, Scalar, Scalar]:
    """sin(t)/t, (1 - cos t)/t and (t - sin t)/t^2 of a bend angle t [rad] (entire, finite
    and differentiable at t = 0). These are :func:`focusing_functions` at k = 1/rho^2."""
    c, s, d, e = focusing_functions(theta * theta, 1.0, sign=None if is_tensor(theta) else 1)
    del c
    return s, d * theta, e * theta


def sqrt1p_minus_one(w):
    """sqrt(1 + w) - 1 of a tensor, as w / (1 + sqrt(1 + w)): no cancellation for small w,
    which keeps O(1) terms out of small coordinate updates (matters most in float32)."""
    return w / (1.0 + torch.sqrt(1.0 + w))


def longitudinal_momentum(w):
    """``(pz - 1, 1/pz, (pz - 1)/pz)`` of pz = sqrt(1 + w) with one square root and one
    division: with s = sqrt(1 + w) and r = 1 / (s (1 + s)), pz - 1 = w s r (the
    cancellation-free w / (1 + s) of :func:`sqrt1p_minus_one`), 1/pz = (1 + s) r and
    (pz - 1)/pz = w r. Divisions and square roots bound the exact maps' speed."""
    root = torch.sqrt(1.0 + w)
    one_plus_root = 1.0 + root
    r = 1.0 / (root * one_plus_root)
    return w * root * r, one_plus_root * r, w * r


def momentum_deviation(pt: torch.Tensor, ibeta: Scalar) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1 + delta, delta)`` of ImpactX's pt, with (1 + delta)^2 = 1 - 2 pt / beta + pt^2
    (``ChrQuad.H``); delta is formed without cancellation (:func:`sqrt1p_minus_one`)."""
    delta = sqrt1p_minus_one(pt * pt - 2.0 * ibeta * pt)
    return 1.0 + delta, delta


def delta_plus_beta_pt(pt: torch.Tensor, delta: torch.Tensor, beta: Scalar) -> torch.Tensor:
    """``delta + beta pt`` (delta of :func:`momentum_deviation`) without its first-order
    cancellation (delta = -beta pt + O(pt^2)), which in float32 costs about 6e-8 |pt| per
    use (an off-momentum beam, pt = -1e-2: 6e-10 m of t per metre of drift). From
    (1 + delta)^2 = 1 - 2 pt/beta + pt^2:
    delta + beta pt = [pt (pt + beta delta) - 2 pt / (beta gamma^2)] / (2 + delta),
    1/(beta gamma^2) = (1 - beta^2)/beta; the remaining cancellation, in pt + beta delta,
    is multiplied by pt (second order)."""
    inv_beta_gamma_sq = (1.0 - beta * beta) / beta
    return (pt * (pt + beta * delta) - 2.0 * inv_beta_gamma_sq * pt) / (2.0 + delta)


def exact_longitudinal(pt: torch.Tensor, px: torch.Tensor, py: torch.Tensor, ibeta: Scalar):
    """``(pz - 1, 1/pz, (pz - 1)/pz, pt + (pz - 1)/beta)`` of the exact maps, pz = sqrt(1 +
    w), w = pt^2 - 2 pt/beta - px^2 - py^2 (:func:`longitudinal_momentum`).

    ``pt + (pz - 1)/beta`` (the t update of an exact drift, ``ExactDrift.H``) cancels to
    first order in pt (pz - 1 = -pt/beta + ...); it is formed as
    [pt A - 2 pt/(beta gamma)^2 - (px^2 + py^2)/beta] / (1 + pz) with
    A = (pz - 1) + pt/beta = [pt^2 + pt (pz - 1)/beta - px^2 - py^2] / (1 + pz), both
    exact rearrangements of the same quantity whose cancellations are of second order."""
    transverse = px * px + py * py
    w = pt * pt - 2.0 * ibeta * pt - transverse
    root = torch.sqrt(1.0 + w)
    one_plus_root = 1.0 + root
    r = 1.0 / (root * one_plus_root)
    inv_one_plus_pz = root * r
    pz_minus_one = w * inv_one_plus_pz
    a = (pt * pt + ibeta * pt * pz_minus_one - transverse) * inv_one_plus_pz
    inv_beta_gamma_sq = ibeta * ibeta - 1.0
    time = (pt * a - 2.0 * inv_beta_gamma_sq * pt - ibeta * transverse) * inv_one_plus_pz
    return pz_minus_one, one_plus_root * r, w * r, time


def broadcast_ready(tree: Any) -> Any:
    """Coefficients of shape ``batch`` -> ``batch + (1,)`` so they broadcast against
    per-particle columns of shape ``batch + (N,)``; floats, 0-d tensors, callables and ints
    are returned unchanged. Works recursively on tuples and lists."""
    if isinstance(tree, torch.Tensor):
        return tree.unsqueeze(-1) if tree.dim() > 0 else tree
    if isinstance(tree, tuple):
        return tuple(broadcast_ready(item) for item in tree)
    if isinstance(tree, list):
        return [broadcast_ready(item) for item in tree]
    return tree
