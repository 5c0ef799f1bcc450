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

On the CPU (scipy installed, a plain tensor) the solve goes through scipy.fft instead
(:func:`_solve_pocketfft`): measured at 259^3 nodes on one core of the 2-core AMD EPYC
machine (process CPU time, under load from concurrent jobs), the pruned forward transform
(``rfft`` along z of the n^2 charged rows, ``fft`` along y, ``fft`` along x, all padded
to 540) took 3.4 s with torch (MKL), 0.93 s with ``scipy.fft`` (pocketfft, ``workers=1``)
and 0.58 s with pyFFTW 0.15.1 (FFTW, ``FFTW_MEASURE``, after 4.5 s of planning; 0.85 s
with ``FFTW_ESTIMATE``), which is not a dependency. The Green function's spectrum there is
a DCT-I (:func:`green_octant`, 0.6 s instead of 1.9 s of cosine sums), the x transforms
run slab by slab with the product and the inverse in between (no doubled-grid array), and
one solve of the ``napac25_space_charge`` density took 3.0 s instead of 9.0 s (the
compiled Green function 0.64 s of it, the DCT 0.6 s), the process's peak resident memory
2.15 GB instead of 4.93 GB (0.99 / 0.85 GB before the solve).

The spectrum is that of the reference function to round-off (a sum of n float64 terms per
axis, or a DCT, instead of an FFT); ``tests/test_inhouse_space_charge.py`` compares the
potentials.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.autograd import forward_ad

from backends.inhouse.space_charge import (
    _fft_length,
    green_corners,
    green_from_corners,
    solve_potential,
)

try:  # scipy is optional: without it the torch FFTs do the CPU solve
    import scipy.fft as _sfft
except ImportError:  # pragma: no cover
    _sfft = None

#: Solve plain CPU tensors with scipy.fft (pocketfft) when it is installed (False: torch's).
USE_POCKETFFT = True
#: Work slabs of the pocketfft solve hold about this many bytes (at 259^3 nodes, one core:
#: 2.25 s per solve with 4 MiB, 2.6 s with 8-16 MiB, 2.7 s with 32 MiB: larger slabs are
#: allocated and page-faulted afresh each time).
CHUNK_BYTES = 4 * 2**20
#: The reused work array of the pocketfft solve (one grid shape at a time).
_NP_BUFFERS: dict[tuple, np.ndarray] = {}
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
    :func:`~backends.inhouse.space_charge.green_from_corners`). Plain CPU tensors go through
    :func:`_solve_pocketfft` when scipy is installed, others through the torch FFTs."""
    if torch.is_grad_enabled():
        return solve_potential(charge_density, cell, gamma)
    _, nx, ny, nz = charge_density.shape
    nodes = (nx, ny, nz)
    dz_rest = cell[2] * gamma
    green_g = green(*green_corners(nodes, (cell[0], cell[1], dz_rest)))
    if USE_POCKETFFT and _sfft is not None and _plain_cpu(charge_density):
        return _solve_pocketfft(charge_density, green_g)
    lengths = [_fft_length(2 * n - 1) for n in nodes]
    spectrum_g = green_spectrum(green_g, lengths).to(charge_density.dtype)
    spectrum = _forward(charge_density, lengths)
    # the real spectrum of G multiplies real and imaginary parts in place
    torch.view_as_real(spectrum).mul_(spectrum_g[..., None])
    # the inverse, one axis at a time, keeping only the rows of the n^3 corner
    spectrum = torch.fft.ifft(spectrum, dim=2)[:, :, :ny]
    spectrum = torch.fft.ifft(spectrum, dim=1)[:, :nx]
    return torch.fft.irfft(spectrum, n=lengths[2], dim=3)[..., :nz]


# -- the CPU solve through scipy.fft (pocketfft) ---------------------------------------------
def _plain_cpu(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` may go through numpy: a CPU tensor of float32/64 that carries no
    gradient, no forward-mode tangent and no functorch wrapper."""
    return (tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.float64)
            and not tensor.requires_grad
            and not torch._C._functorch.is_functorch_wrapped_tensor(tensor)
            and forward_ad.unpack_dual(tensor).tangent is None)


def even_fft_length(nodes: int) -> int:
    """Smallest even 5-smooth length ``L >= 2 n - 2`` for ``n`` nodes: with a kernel even
    about 0 and about ``L / 2`` (the mirrored Green function) the circular convolution of
    period ``L`` equals the linear one on the ``n`` nodes (lags up to ``n - 1``, the lag
    ``L / 2 = n - 1`` taken once), and even ``L`` makes the kernel's spectrum a DCT-I."""
    length = max(2 * nodes - 2, 2)
    while True:
        length += length % 2
        if _fft_length(length) == length:
            return length
        length += 1


def green_octant(green: np.ndarray, lengths: Sequence[int], workers: int) -> np.ndarray:
    """The (real, even) spectrum of the Green function ``(nx, ny, nz)`` mirrored onto even
    ``lengths`` at ``k = 0..L/2`` per axis, ``(Lx/2 + 1, Ly/2 + 1, Lz/2 + 1)``: a DCT-I of
    the function zero-padded to ``L/2 + 1`` points per axis, since for ``G[L - j] = G[j]``
    the DFT is ``X_k = G_0 + (-1)^k G_{L/2} + 2 sum_{j=1}^{L/2-1} G_j cos(pi j k / (L/2))``
    (scipy ``dct(type=1)``; Britanak, Yip and Rao, Discrete Cosine and Sine Transforms,
    2007, Sec. 2.4). The rest of the spectrum is ``X[L - k] = X[k]``."""
    half = tuple(length // 2 + 1 for length in lengths)
    padded = np.zeros(half, dtype=green.dtype)
    padded[:green.shape[0], :green.shape[1], :green.shape[2]] = green
    return _sfft.dctn(padded, type=1, axes=(0, 1, 2), overwrite_x=True, workers=workers)


def _buffer(shape: tuple[int, ...], dtype) -> np.ndarray:
    """The reused work array of ``shape`` and ``dtype`` (one per shape; contents stale)."""
    key = (shape, np.dtype(dtype).str)
    if key not in _NP_BUFFERS:
        _NP_BUFFERS.clear()  # one grid at a time: a new mesh frees the old work array
        _NP_BUFFERS[key] = np.empty(shape, dtype=dtype)
    return _NP_BUFFERS[key]


def _solve_pocketfft(charge_density: torch.Tensor, green_g: torch.Tensor) -> torch.Tensor:
    """The potential ``(B, nx, ny, nz)`` of :func:`solve` on the CPU with scipy.fft
    (pocketfft; ``workers`` = torch's intra-op threads), pruned along every axis:

    1. per slab of :data:`CHUNK_BYTES` along x, ``rfft`` along z of the ``n^2`` rows that
       hold charge (zero-padded to ``Lz`` by the transform), then ``fft`` along y of the
       ``nx (Lz/2 + 1)`` rows, into one reused ``(nx, Ly, Lz/2 + 1)`` complex array (half
       of the doubled grid's spectrum along x: the rows above ``nx`` are zero);
    2. per slab along y: ``fft`` along x (zero-padded to ``Lx``), times the Green
       function's real spectrum (:func:`green_octant`, indexed by ``min(k, L - k)``), the
       inverse ``ifft`` along x, of which only the first ``nx`` rows are kept, in place;
    3. per slab along x: ``ifft`` along y keeping ``ny`` rows, then ``irfft`` along z
       keeping ``nz`` points.

    No doubled-grid array is allocated: the largest holds ``nx Ly (Lz/2 + 1)`` complex
    values (606 MB at 259^3 nodes, against 1.26 GB for the full half spectrum)."""
    batch, nx, ny, nz = charge_density.shape
    lengths = [even_fft_length(n) for n in (nx, ny, nz)]
    lx, ly, lz = lengths
    hz = lz // 2 + 1
    real = np.float64 if charge_density.dtype == torch.float64 else np.float32
    cplx = np.complex128 if real is np.float64 else np.complex64
    workers = max(1, torch.get_num_threads())
    rho = charge_density.detach().numpy()
    greens = green_g.detach().to(torch.float64).numpy()
    kx = np.arange(lx)
    kx = np.minimum(kx, lx - kx)
    ky = np.arange(ly)
    ky = np.minimum(ky, ly - ky)
    work = _buffer((nx, ly, hz), cplx)
    out = np.empty((batch, nx, ny, nz), dtype=real)
    row = ly * hz * np.dtype(cplx).itemsize
    step_x = max(1, CHUNK_BYTES // row)
    step_y = max(1, CHUNK_BYTES // (lx * hz * np.dtype(cplx).itemsize))
    for b in range(batch):
        octant = green_octant(greens[b], lengths, workers).astype(real, copy=False)
        for x0 in range(0, nx, step_x):
            x1 = min(nx, x0 + step_x)
            slab = _sfft.rfft(rho[b, x0:x1], n=lz, axis=2, workers=workers)
            work[x0:x1] = _sfft.fft(slab, n=ly, axis=1, workers=workers, overwrite_x=True)
        for y0 in range(0, ly, step_y):
            y1 = min(ly, y0 + step_y)
            slab = _sfft.fft(work[:, y0:y1], n=lx, axis=0, workers=workers)
            slab *= octant[np.ix_(kx, ky[y0:y1])]
            slab = _sfft.ifft(slab, axis=0, workers=workers, overwrite_x=True)
            work[:, y0:y1] = slab[:nx]
        for x0 in range(0, nx, step_x):
            x1 = min(nx, x0 + step_x)
            slab = _sfft.ifft(work[x0:x1], axis=1, workers=workers)[:, :ny]
            out[b, x0:x1] = _sfft.irfft(slab, n=lz, axis=2, workers=workers)[..., :nz]
    return torch.from_numpy(out)
