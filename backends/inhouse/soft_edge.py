"""Soft-edge quadrupole and solenoid (ImpactX ``src/elements/SoftQuad.H``,
``src/elements/SoftSol.H``): linear maps integrated along the on-axis field profile.

ImpactX computes each element's 6x6 map while it pushes the reference particle: the map
starts as the identity at every slice and is advanced by ``mapsteps`` steps of a
symplectic splitting integrator (``src/particles/integrators/Integrators.H``); particles
then get that linear map. The steps, with the field f(z) of
:mod:`backends.inhouse.fourier_field` evaluated after the first half drift (the step's
midpoint):

* ``SoftQuadrupole`` (``symp2_integrate``): map1(dz/2) map2(dz) map1(dz/2), map1 the drift
  x += tau px, y += tau py, t += tau pt / (beta gamma)^2, map2 the kick
  px -= tau k(z) x, py += tau k(z) y with k(z) = gscale f(z) [1/m^2];
* ``SoftSolenoid`` (``symp2_integrate_split3``): map1(dz/2) map2(dz/2) map3(dz) map2(dz/2)
  map1(dz/2), map2 the focusing px -= tau a^2 x, py -= tau a^2 y and map3 the rotation of
  (x, px) into (y, py) by theta = tau a, with a = bscale f(z) / 2 [1/m] (MAD-X units,
  bscale = B_z / (B rho) at the field's peak).

The maps are exact products of the step matrices (``fourier_field.ordered_product``); all
parameters (length, scale, coefficients) may be tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from backends.inhouse import numeric as nm
from backends.inhouse.fourier_field import as_coefficients, on_axis, ordered_product
from backends.inhouse.maps import Entries
from backends.inhouse.reference import RefState

Coefficients = Sequence[nm.Scalar] | torch.Tensor


def midpoints(length: nm.Scalar, nslice: int, mapsteps: int) -> torch.Tensor:
    """The z [m from the entrance] of every step's midpoint, slice after slice: slice i
    starts at i ds/nslice and takes ``mapsteps`` steps of dz = ds/(nslice mapsteps)."""
    slice_ds = length / nslice
    dz = slice_ds / mapsteps
    index = torch.arange(mapsteps, dtype=torch.float64)
    starts = torch.arange(nslice, dtype=torch.float64)
    if isinstance(length, torch.Tensor):
        pad = (1,) * length.dim()
        index = index.reshape((1, mapsteps) + pad)
        starts = starts.reshape((nslice, 1) + pad)
    else:
        index = index.reshape(1, mapsteps)
        starts = starts.reshape(nslice, 1)
    z = starts * slice_ds + (index * dz + dz * 0.5)
    return z.reshape((nslice * mapsteps,) + tuple(z.shape[2:]))


def _stack(rows: list[list[nm.Scalar]], like: torch.Tensor) -> torch.Tensor:
    """A matrix ``like.shape + (k, k)`` of float or tensor entries."""
    out = []
    for row in rows:
        out.append(torch.stack([
            (v if isinstance(v, torch.Tensor) else torch.full((), float(v), dtype=like.dtype))
            .expand(like.shape) for v in row], dim=-1))
    return torch.stack(out, dim=-2)


def _entries(block: torch.Tensor, keys: Sequence[tuple[int, int]], extra: Entries,
             floats: bool) -> Entries:
    """Entries of a transverse block (index pairs into ``block``'s last two axes)."""
    out: Entries = {}
    for i, j in keys:
        value = block[..., i, j]
        out[(i, j)] = float(value) if floats else value
    out.update(extra)
    return out


def _profile_steps(length: nm.Scalar, cos_coef: Coefficients, sin_coef: Coefficients,
                   nslice: int, mapsteps: int) -> tuple[torch.Tensor, nm.Scalar, nm.Scalar]:
    """The on-axis profile at every step's midpoint (:func:`midpoints`), the step length
    tau = ds/(nslice mapsteps) [m] and half of it [m]."""
    cos_t, sin_t = as_coefficients(cos_coef), as_coefficients(sin_coef)
    z = midpoints(length, nslice, mapsteps)
    f, _, _ = on_axis(z, nm.absolute(length), cos_t, sin_t)
    tau = length / (nslice * mapsteps)
    return f, tau, tau * 0.5


def soft_quad_entries(length: nm.Scalar, gscale: nm.Scalar, cos_coef: Coefficients,
                      sin_coef: Coefficients, ref: RefState, mapsteps: int = 10,
                      nslice: int = 1) -> Entries:
    """The ``SoftQuadrupole`` map of length ``length`` [m], peak gradient ``gscale``
    [1/m^2] (k > 0 focuses x) and profile coefficients (see the module docstring)."""
    floats = not nm.any_tensor(length, gscale, cos_coef, sin_coef)
    with torch.no_grad() if floats else _null():
        f, tau, half = _profile_steps(length, cos_coef, sin_coef, nslice, mapsteps)
        kick = tau * (gscale * f)  # tau * alpha per step
        blocks = []
        for sign in (-1.0, 1.0):   # x: px -= tau alpha x; y: py += tau alpha y
            g = sign * kick
            # D(h) K(g) D(h), D(h) = [[1, h], [0, 1]], K(g) = [[1, 0], [g, 1]]
            blocks.append(_stack([[1.0 + half * g, half * (2.0 + half * g)],
                                  [g, 1.0 + half * g]], f))
        mx, my = (ordered_product(b) for b in blocks)
    bg2 = ref.beta_gamma * ref.beta_gamma
    extra: Entries = {(4, 5): length / bg2}
    out = _entries(mx, [(0, 0), (0, 1), (1, 0), (1, 1)], {}, floats)
    out.update({(i + 2, j + 2): v for (i, j), v in
                _entries(my, [(0, 0), (0, 1), (1, 0), (1, 1)], {}, floats).items()})
    out.update(extra)
    return out


def soft_sol_entries(length: nm.Scalar, bscale: nm.Scalar, cos_coef: Coefficients,
                     sin_coef: Coefficients, ref: RefState, mapsteps: int = 10,
                     nslice: int = 1) -> Entries:
    """The ``SoftSolenoid`` map (``unit = 0``) of length ``length`` [m], peak strength
    ``bscale`` = B_z/(B rho) [1/m] and profile coefficients (see the module docstring)."""
    floats = not nm.any_tensor(length, bscale, cos_coef, sin_coef)
    with torch.no_grad() if floats else _null():
        f, tau, half = _profile_steps(length, cos_coef, sin_coef, nslice, mapsteps)
        alpha = bscale * f * 0.5
        focus = half * alpha * alpha   # map2(dz/2): p -= (dz/2) alpha^2 q
        theta = tau * alpha            # map3(dz)
        c, s = torch.cos(theta), torch.sin(theta)
        zero = torch.zeros_like(f)
        drift = _stack([[1.0, half, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0],
                        [0.0, 0.0, 1.0, half], [0.0, 0.0, 0.0, 1.0]], f)
        lens = _stack([[1.0, 0.0, 0.0, 0.0], [-focus, 1.0, 0.0, 0.0],
                       [0.0, 0.0, 1.0, 0.0], [zero, 0.0, -focus, 1.0]], f)
        turn = _stack([[c, zero, s, zero], [zero, c, zero, s],
                       [-s, zero, c, zero], [zero, -s, zero, c]], f)
        step = drift @ lens @ turn @ lens @ drift
        block = ordered_product(step)
    bg2 = ref.beta_gamma * ref.beta_gamma
    keys = [(i, j) for i in range(4) for j in range(4)]
    return _entries(block, keys, {(4, 5): length / bg2}, floats)


class _null:
    """A do-nothing context manager (tensor parameters keep their graph)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None
