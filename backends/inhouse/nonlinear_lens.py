"""Thin Danilov-Nagaitsev nonlinear lens (ImpactX ``src/elements/NonlinearLens.H``; MAD-X
``NLLENS``): one thin segment of the integrable nonlinear insert of V. Danilov and
S. Nagaitsev, Phys. Rev. ST Accel. Beams 13, 084002 (2010), Sect. V.A.

The kick is dpx - i dpy = -(knll/cnll) F'(zeta), zeta = (x + i y)/cnll, with
F'(zeta) = zeta/(1 - zeta^2) + arcsin(zeta)/(1 - zeta^2)^(3/2) and
arcsin(zeta) = -i log(i zeta + sqrt(1 - zeta^2)); ``knll`` [m] is the integrated strength and
``cnll`` [m] the distance of the singularities (branch points) from the axis.

ImpactX evaluates it in complex arithmetic (``amrex::GpuComplex``: principal square root and
logarithm). Here the same operations are written in real arithmetic (two real tensors per
complex number), so that the kernel stays an element-wise real function under
``torch.compile``, ``torch.func.jvp`` and reverse mode.
"""

from __future__ import annotations

import torch

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Columns, Kernel


def _principal_sqrt(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal square root of a + i b (the textbook algorithm of ``std::sqrt`` for complex
    numbers: t = sqrt(2 (|w| + |a|)); (t/2, b/t) for a > 0, else (|b|/t, +-t/2) with the sign
    of b). Undefined only at w = 0, the lens's branch points zeta = +-1."""
    r = torch.hypot(a, b)
    t = torch.sqrt(2.0 * (r + a.abs()))
    half = 0.5 * t
    t_safe = torch.where(t > 0.0, t, torch.ones_like(t))
    positive = a > 0.0
    real = torch.where(positive, half, b.abs() / t_safe)
    imag = torch.where(positive, b / t_safe, torch.where(b < 0.0, -half, half))
    return real, imag


def _divide(p: torch.Tensor, q: torch.Tensor, m: torch.Tensor, n: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(p + i q) / (m + i n)."""
    inv = 1.0 / (m * m + n * n)
    return (p * m + q * n) * inv, (q * m - p * n) * inv


def _push(columns: Columns, coeffs: tuple) -> Columns:
    """``NonlinearLens.H`` ``operator()`` in real arithmetic."""
    x, px, y, py, t, pt = columns
    inv_c, kick = coeffs
    u = x * inv_c
    v = y * inv_c
    # croot = sqrt(1 - zeta^2)
    sr, si = _principal_sqrt(1.0 - (u * u - v * v), -2.0 * u * v)
    # carcsin = -i log(i zeta + croot) = atan2(Q, P) - i log|P + i Q|
    p_re = sr - v
    p_im = si + u
    asin_re = torch.atan2(p_im, p_re)
    asin_im = -torch.log(torch.hypot(p_re, p_im))
    # croot^2 and croot^3 (ImpactX's powi<2>, powi<3> of croot)
    c2_re = sr * sr - si * si
    c2_im = 2.0 * sr * si
    c3_re = c2_re * sr - c2_im * si
    c3_im = c2_re * si + c2_im * sr
    d1_re, d1_im = _divide(u, v, c2_re, c2_im)
    d2_re, d2_im = _divide(asin_re, asin_im, c3_re, c3_im)
    return (x, px + kick * (d1_re + d2_re), y, py - kick * (d1_im + d2_im), t, pt)


def nonlinear_lens_kernel(knll: nm.Scalar, cnll: nm.Scalar) -> Kernel:
    """The lens of integrated strength ``knll`` [m] and dimensional parameter ``cnll`` [m]
    (ImpactX ``compute_constants``: 1/cnll and the kick factor -knll/cnll)."""
    inv_c = 1.0 / cnll
    return Kernel(_push, (inv_c, -knll * inv_c))
