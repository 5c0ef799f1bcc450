"""The open-boundary Poisson solve of the forward-only space-charge kick, without autograd.

Same method and result as :func:`backends.inhouse.space_charge.solve_potential` (Hockney's
doubled grid with the integrated Green function, ImpactX/ablastr ``computePhi``), with the
work that the symmetry of the Green function makes unnecessary left out. Profiled on
``expanding_beam`` (10^5 particles, 64^3 cells: 65^3 nodes, FFTs on 135^3 points, 1
thread), one solve of the reference function took about 130 ms: 41 ms for the two forward
FFTs, 29 ms for the inverse, 15 ms to mirror the Green function onto the doubled grid
(three concatenations and flips), 10 ms to pad the charge, 20 ms for the Green function
itself. Here:

* the mirrored Green function is even along each axis (G[L - j] = G[j], zero in the gap
  n <= j <= L - n), so its FFT on L points is a cosine sum over the n points G[0..n-1],
  X_k = G_0 + 2 sum_{j=1}^{n-1} G_j cos(2 pi j k / L): real, and computed axis by axis as
  a matrix product on the n^3 points for k = 0..L/2 only (X_{L-k} = X_k gives the rest of
  the first two axes), instead of an FFT of the L^3 mirrored grid (measured, 1 thread:
  65^3 nodes 0.02 s vs 0.05 s, 129^3 0.16 vs 0.34 s, 257^3 1.5 vs 6.2 s);
* the zero-padded charge lives in a buffer allocated (and zeroed) once per grid shape, of
  which each solve overwrites only the n^3 corner; above :data:`PRUNE_BYTES` the forward
  FFT is pruned instead (:func:`_forward`);
* the real spectrum of G multiplies the complex one in place, as real and imaginary
  parts (no complex copy of it: 4 of 28 s of the 256^3 kick at 10^6 particles);
* the caller may hand in the Green function compiled (``green``; the forward-only kick
  does: one fused kernel instead of about 40 eager element-wise passes over the
  ``(n + 1)^3`` corners, with vectorised transcendental functions);
* the inverse FFT runs one axis at a time and keeps, after each, only the rows that lead to
  the n^3 corner of the potential (about 2/3 of the full inverse's time here).

Profiled on ``napac25_space_charge`` (10^6 particles, 256^3 cells: 259^3 nodes, FFTs on
540^3 points, 1 thread, AMD EPYC), one kick took 28.6 s before the last three changes: the
forward FFT 5.8 s, the inverse 6.6 s plus copies, a complex copy of G's spectrum for the
product 4.2 s, the Green function's element-wise passes about 4.5 s, its cosine sums 2.2 s;
after them one solve takes 17.1 s instead of 21.9 s, of which the FFTs about 11 s (the
particle side, deposition and gather of 10^6 particles, well under 1 s).

The spectrum is that of the reference function to round-off (a sum of n float64 terms per
axis instead of an FFT); ``tests/test_inhouse_space_charge.py`` compares the potentials.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from backends.inhouse.space_charge import (
    _fft_length,
    green_corners,
    green_from_corners,
    solve_potential,
)

#: Cosine matrices by (n, L, device): ``(L // 2 + 1, n)``.
_COSINES: dict[tuple, torch.Tensor] = {}
#: Padded charge buffers larger than this [bytes] are not kept: the forward FFT is pruned.
PRUNE_BYTES = 256 * 2**20
#: Zero-padded charge buffers by (shape, dtype, device); each solve writes its corner.
_BUFFERS: dict[tuple, torch.Tensor] = {}


def _cosines(n: int, length: int, device: torch.device) -> torch.Tensor:
    """``w_j cos(2 pi j k / L)`` for k = 0..L//2 and j = 0..n-1 (w_0 = 1, else 2)."""
    key = (n, length, device)
    if key not in _COSINES:
        k = torch.arange(length // 2 + 1, dtype=torch.float64, device=device)
        j = torch.arange(n, dtype=torch.float64, device=device)
        weight = torch.full((n,), 2.0, dtype=torch.float64, device=device)
        weight[0] = 1.0
        angle = 2.0 * math.pi * torch.remainder(torch.outer(k, j), length) / length
        _COSINES[key] = torch.cos(angle) * weight
    return _COSINES[key]


def green_spectrum(green: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """The (real) ``rfftn`` over the last three axes of the Green function ``(B, nx, ny,
    nz)`` mirrored onto ``lengths`` (as :func:`space_charge._mirror` builds it):
    ``(B, Lx, Ly, Lz // 2 + 1)``."""
    spectrum = green
    for dim, length in zip((3, 2, 1), reversed(lengths), strict=True):
        cosines = _cosines(green.shape[dim], length, green.device)
        spectrum = torch.movedim(torch.matmul(torch.movedim(spectrum, dim, -1), cosines.T),
                                 -1, dim)
    for dim, length in ((1, lengths[0]), (2, lengths[1])):
        k = torch.arange(length, device=green.device)
        spectrum = spectrum.index_select(dim, torch.minimum(k, length - k))
    return spectrum


def _forward(charge_density: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """``rfftn`` of the charge zero-padded to ``lengths``: from a reused padded buffer, or,
    for a buffer over :data:`PRUNE_BYTES`, one axis at a time over the rows that hold charge
    (n^2 rows, then n L rows; the zero padding is the FFT's own ``n=``), which needs no
    L^3 buffer (1.3 GB at 540^3) and took 10.8 s instead of 12.7 s for the solve's FFTs at
    259^3 nodes on one core, while at 35^3 nodes the padded buffer was faster."""
    batch, nx, ny, nz = charge_density.shape
    if batch * math.prod(lengths) * charge_density.element_size() > PRUNE_BYTES:
        spectrum = torch.fft.rfft(charge_density, n=lengths[2], dim=3)
        spectrum = torch.fft.fft(spectrum, n=lengths[1], dim=2)
        return torch.fft.fft(spectrum, n=lengths[0], dim=1)
    key = ((batch,) + tuple(lengths), charge_density.dtype, charge_density.device)
    padded = _BUFFERS.get(key)
    if padded is None:
        padded = _BUFFERS[key] = torch.zeros(key[0], dtype=key[1], device=key[2])
    padded[:, :nx, :ny, :nz].copy_(charge_density)
    return torch.fft.rfftn(padded, dim=(1, 2, 3))


def solve(charge_density: torch.Tensor, cell: Sequence[torch.Tensor],
          gamma: float = 1.0, green: Callable[..., torch.Tensor] = green_from_corners
          ) -> torch.Tensor:
    """:func:`backends.inhouse.space_charge.solve_potential` (same arguments, same result
    to round-off) for a no-grad solve; ``green`` computes the integrated Green function
    from :func:`~backends.inhouse.space_charge.green_corners` (e.g. a compiled
    :func:`~backends.inhouse.space_charge.green_from_corners`)."""
    if torch.is_grad_enabled():
        return solve_potential(charge_density, cell, gamma)
    _, nx, ny, nz = charge_density.shape
    nodes = (nx, ny, nz)
    dz_rest = cell[2] * gamma
    green_g = green(*green_corners(nodes, (cell[0], cell[1], dz_rest)))
    lengths = [_fft_length(2 * n - 1) for n in nodes]
    spectrum_g = green_spectrum(green_g, lengths).to(charge_density.dtype)
    spectrum = _forward(charge_density, lengths)
    # the real spectrum of G multiplies real and imaginary parts in place
    torch.view_as_real(spectrum).mul_(spectrum_g[..., None])
    # the inverse, one axis at a time, keeping only the rows of the n^3 corner
    spectrum = torch.fft.ifft(spectrum, dim=2)[:, :, :ny]
    spectrum = torch.fft.ifft(spectrum, dim=1)[:, :nx]
    return torch.fft.irfft(spectrum, n=lengths[2], dim=3)[..., :nz]
