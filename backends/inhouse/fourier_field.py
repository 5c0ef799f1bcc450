"""On-axis fields of ImpactX's soft-edge elements from their Fourier coefficients, and the
ordered product of many small step matrices.

ImpactX describes the on-axis profile f(z) of ``SoftQuadrupole`` (gradient),
``SoftSolenoid`` (B_z) and ``RFCavity`` (E_z) over the element's length zlen = |ds| [m] by
cosine and sine coefficients c_j, s_j about the element's midpoint
(``src/elements/SoftQuad.H`` ``Quad_Bfield``, ``src/elements/SoftSol.H`` ``Sol_Bfield``,
``src/elements/RFCavity.H`` ``RF_Efield``). With u = z - zlen/2 (z from the entrance)::

    f(z)  = c_0/2 + sum_{j>=1} c_j cos(2 pi j u / zlen) + s_j sin(2 pi j u / zlen)
    f'(z) = sum_{j>=1} (2 pi j / zlen) (-c_j sin(...) + s_j cos(...))
    F(z)  = c_0 u/2 + sum_{j>=1} zlen/(2 pi j) (c_j sin(...) - s_j cos(...))

for |u| <= zlen/2, and f = f' = 0 outside. ``RF_Efield`` alone also gives the integral F
outside, as its value at the nearer end (sign(u) zlen/4 c_0 - sum zlen s_j cos(pi j)/(2 pi
j)); ``Quad_Bfield`` and ``Sol_Bfield`` return F = 0 there (their maps never use F).

The coefficients are ImpactX's own (``impactx.fourier.fourier_coefficients`` derives them
from sampled field data with the trapezoidal rule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from backends.inhouse import numeric as nm


def as_coefficients(values: Sequence[nm.Scalar] | torch.Tensor,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Coefficients as one tensor of shape ``(ncoef,) + batch`` (floats, 0-d or batch
    tensors, or a tensor whose first axis is the coefficient index)."""
    if isinstance(values, torch.Tensor):
        return values.to(dtype)
    items = [v if isinstance(v, torch.Tensor) else torch.tensor(float(v), dtype=dtype)
             for v in values]
    shape = torch.broadcast_shapes(*(v.shape for v in items))
    return torch.stack([v.to(dtype).expand(shape) for v in items])


def on_axis(z: torch.Tensor, zlen: nm.Scalar, cos_coef: torch.Tensor, sin_coef: torch.Tensor,
            outside_integral: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(f, f', F)`` at the points ``z`` [m from the entrance] (shape ``(npoints,) +
    batch``) of coefficients of shape ``(ncoef,) + batch``; see the module docstring.
    ``outside_integral``: F beyond the ends as ``RF_Efield`` gives it (else 0)."""
    ncoef = cos_coef.shape[0]
    batch = torch.broadcast_shapes(z.shape[1:], cos_coef.shape[1:], sin_coef.shape[1:],
                                   zlen.shape if isinstance(zlen, torch.Tensor) else ())
    pad = (1,) * len(batch)
    zl = zlen.unsqueeze(0).unsqueeze(0) if isinstance(zlen, torch.Tensor) else zlen
    j = torch.arange(1, ncoef, dtype=z.dtype, device=z.device).reshape((1, ncoef - 1) + pad)
    zmid = zlen * 0.5
    u = z - zmid
    inside = u.abs() <= zmid
    # ImpactX's operand order: j*2*pi*z/zlen
    angle = j * 2.0 * math.pi * u.unsqueeze(1) / zl
    cj = cos_coef[1:].unsqueeze(0)
    sj = sin_coef[1:].unsqueeze(0)
    cos_a = torch.cos(angle)
    sin_a = torch.sin(angle)
    two_pi_j = j * 2.0 * math.pi
    c0 = cos_coef[0]
    f = 0.5 * c0 + (cj * cos_a + sj * sin_a).sum(dim=1)
    fp = (-two_pi_j * cj * sin_a / zl + two_pi_j * sj * cos_a / zl).sum(dim=1)
    big_f = u * (0.5 * c0) + (zl * cj * sin_a / two_pi_j - zl * sj * cos_a / two_pi_j).sum(dim=1)
    zero = torch.zeros((), dtype=z.dtype, device=z.device)
    f = torch.where(inside, f, zero)
    fp = torch.where(inside, fp, zero)
    if outside_integral:
        sign = torch.where(u < 0, -1.0, 1.0).to(z.dtype)
        parity = torch.cos(j * math.pi)  # cos(j pi) = (-1)^j
        end = sign * zmid * 0.5 * c0 - (zl * sj * parity / two_pi_j).sum(dim=1)
        big_f = torch.where(inside, big_f, end)
    else:
        big_f = torch.where(inside, big_f, zero)
    return f, fp, big_f


def ordered_product(mats: torch.Tensor) -> torch.Tensor:
    """``mats[n-1] @ ... @ mats[1] @ mats[0]`` of ``mats`` of shape ``(n,) + batch + (k,
    k)`` (``mats[0]`` acts first), by pairwise products (log2(n) batched matmuls)."""
    while mats.shape[0] > 1:
        if mats.shape[0] % 2:
            eye = torch.eye(mats.shape[-1], dtype=mats.dtype, device=mats.device)
            mats = torch.cat([mats, eye.expand_as(mats[:1])], dim=0)
        mats = mats[1::2] @ mats[0::2]
    return mats[0]
