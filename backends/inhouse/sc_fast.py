"""The forward-only 3D space-charge kick with compiled particle-side kernels.

:func:`backends.inhouse.space_charge.space_charge_kick` is written for autograd: it builds
the whole shape-function stencil, ``(N, s, s, s)`` node indices and weights, and gathers the
nodal field as an ``(N, s, s, s, 3)`` tensor; profiled on ``fodo_space_charge`` (10^5
particles, 32^3 cells, 1 thread) most of a kick went to these temporaries (element-wise
products and the gather), not to the Poisson solve. Without autograd the same kick is done
here by two compiled kernels over the particles:

1. :func:`_deposit`: s -> t transformation of the positions, the stencil of each particle
   and the scatter-add of its charge onto the nodes (no stencil tensor is stored);
2. :func:`_gather_push`: the stencil again, the interpolated field, the momentum push and
   the t -> s transformation, in one pass.

The mesh bounds (a min/max reduction) and the Poisson solve on the doubled grid
(:func:`backends.inhouse.poisson_fast.solve`, the FFT solve of
:func:`backends.inhouse.space_charge.solve_potential` without its redundant work, with the
Green function as a third compiled kernel) stay eager between them; the nodal field
``-grad phi`` is a fourth compiled kernel. The maps,
formulas and order of operations are those of :mod:`backends.inhouse.space_charge` (ImpactX
``HandleSpacecharge.cpp`` step by step); only the summation order of the deposition and the
gather differs (round-off).
"""

from __future__ import annotations

import math

import torch

from backends.inhouse import poisson_fast
from backends.inhouse.space_charge import (
    MeshSettings,
    electric_field,
    green_from_corners,
    space_charge_kick,
    to_fixed_s,
    to_fixed_t,
)

#: Use the compiled forward-only kick where it applies (:func:`kick`); False: always the
#: differentiable kick of :mod:`backends.inhouse.space_charge`.
FAST_KICK = True

#: Inductor settings (as the lattice kernels, :data:`backends.inhouse.compiled.INDUCTOR_OPTIONS`).
OPTIONS: dict[str, int] = {"compile_threads": 1}


def _axis(u: torch.Tensor, cells: int, guard: int, order: int
          ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Node index (float) and weight of each stencil point along one axis for node
    coordinates ``u`` (as ``space_charge._axis_stencil``)."""
    if order == 1:
        base = torch.floor(u).clamp(0, cells - 1)
        frac = u - base
        return [(base + guard, 1.0 - frac), (base + (guard + 1), frac)]
    base = torch.floor(u + 0.5)
    frac = u - base
    weights = (0.5 * (0.5 - frac) ** 2, 0.75 - frac**2, 0.5 * (0.5 + frac) ** 2)
    return [(base + (guard + offset), weights[offset + 1]) for offset in (-1, 0, 1)]


def _stencil(x, y, z, low, cell, mesh: MeshSettings, order: int):
    """Per axis the stencil points of B-spline ``order`` of every particle (``low``, ``cell``:
    0-d tensors)."""
    return [_axis((q - lo) / d, n, mesh.guard, order)
            for q, lo, d, n in zip((x, y, z), low, cell, mesh.grid, strict=True)]


def _deposit(x, y, z, low0, low1, low2, cell0, cell1, cell2, charge, mesh: MeshSettings):
    """Charge per node [C], flat ``prod(nodes)``, of particles at fixed-t ``(x, y, z)``."""
    nodes = mesh.nodes
    axes = _stencil(x, y, z, (low0, low1, low2), (cell0, cell1, cell2), mesh, mesh.order)
    flat = torch.zeros(math.prod(nodes), dtype=x.dtype, device=x.device)
    for ix, wx in axes[0]:
        for iy, wy in axes[1]:
            for iz, wz in axes[2]:
                index = ((ix * nodes[1] + iy) * nodes[2] + iz).long()
                flat.index_put_((index,), charge * (wx * wy * wz), accumulate=True)
    return flat


def _gather_push(x, px, y, py, z, pz, low0, low1, low2, cell0, cell1, cell2,
                 ex, ey, ez, push, gamma, mesh: MeshSettings):
    """Field at the particles (gathered linearly, as ImpactX for every deposition shape:
    :attr:`MeshSettings.gather_order`), momentum push and t -> s: the kicked fixed-s columns."""
    nodes = mesh.nodes
    axes = _stencil(x, y, z, (low0, low1, low2), (cell0, cell1, cell2), mesh,
                    mesh.gather_order)
    fx = fy = fz = None
    for ix, wx in axes[0]:
        for iy, wy in axes[1]:
            for iz, wz in axes[2]:
                index = ((ix * nodes[1] + iy) * nodes[2] + iz).long()
                w = wx * wy * wz
                terms = (ex[index] * w, ey[index] * w, ez[index] * w)
                if fx is None:
                    fx, fy, fz = terms
                else:
                    fx, fy, fz = fx + terms[0], fy + terms[1], fz + terms[2]
    kicked = (x, px + push * fx, y, py + push * fy, z, pz + push * fz)
    return to_fixed_s(kicked, gamma)


def _field_components(potential, cell0, cell1, cell2):
    """The three components of :func:`~backends.inhouse.space_charge.electric_field` of a
    ``(1,) + nodes`` potential, each flat and contiguous (one fused pass instead of the
    eager differences, padding, stack and three copies: 1.25 s of 5.4 s per kick at 259^3
    nodes on one core)."""
    field = electric_field(potential, [cell0, cell1, cell2])[0]
    return tuple(field[..., i].reshape(-1).contiguous() for i in range(3))


def _to_fixed_t(x, px, y, py, t, pt, gamma):
    return to_fixed_t((x, px, y, py, t, pt), gamma)


class FastKick:
    """Compiled kernels of the no-grad kick, shared by every kick of a process."""

    def __init__(self):
        self._fns: dict[str, object] = {}

    def fn(self, name: str, function):
        if name not in self._fns:
            self._fns[name] = torch.compile(function, fullgraph=True, options=dict(OPTIONS))
        return self._fns[name]


_KERNELS = FastKick()


def usable(columns, ref, ds, alive) -> bool:
    """Whether :func:`fast_kick` applies: no autograd, no survival mask, one beam (1-d
    columns of >= 2 particles), constant reference particle and slice length."""
    return (not torch.is_grad_enabled() and alive is None
            and all(c.dim() == 1 for c in columns) and columns[0].shape[0] >= 2
            and not isinstance(ref.gamma, torch.Tensor) and not isinstance(ds, torch.Tensor)
            and not any(c.requires_grad for c in columns))


def fast_kick(columns, ref, ds: float, bunch_charge_C: float, mesh: MeshSettings):
    """The kick of :func:`backends.inhouse.space_charge.space_charge_kick` for
    :func:`usable` inputs; returns the kicked ``(x, px, y, py, t, pt)``."""
    columns = torch.broadcast_tensors(*columns)
    like = columns[0]
    n = like.shape[0]
    for column in columns:
        torch._dynamo.mark_dynamic(column, 0)
    gamma = torch.tensor(float(ref.gamma), dtype=torch.float64, device=like.device)
    fixed = _KERNELS.fn("to_fixed_t", _to_fixed_t)(*columns, gamma)
    low, cell = [], []
    for q, cells in zip((fixed[0], fixed[2], fixed[4]), mesh.grid, strict=True):
        lo, hi = torch.aminmax(q)
        width = hi - lo
        low.append(lo - 0.5 * (mesh.prob_relative - 1.0) * width)
        cell.append(mesh.prob_relative * width / cells)
    charge = torch.tensor(math.copysign(abs(bunch_charge_C), ref.charge_qe) / n,
                          dtype=like.dtype, device=like.device)
    for column in (fixed[0], fixed[2], fixed[4]):
        torch._dynamo.mark_dynamic(column, 0)
    flat = _KERNELS.fn("deposit", _deposit)(fixed[0], fixed[2], fixed[4], *low, *cell,
                                            charge, mesh)
    volume = cell[0] * cell[1] * cell[2]
    density = (flat / volume).view((1,) + mesh.nodes)
    cell_b = [c.reshape(1, 1) for c in cell]
    potential = poisson_fast.solve(density, cell_b, float(ref.gamma),
                                   green=_KERNELS.fn("green", green_from_corners))
    ex, ey, ez = _KERNELS.fn("field", _field_components)(potential, *cell_b)
    g = float(ref.gamma)
    beta2 = 1.0 - 1.0 / (g * g)
    push = torch.tensor(ds * ref.charge_qe / (beta2 * g**3 * ref.mass_eV), dtype=torch.float64,
                        device=like.device)
    for column in fixed:
        torch._dynamo.mark_dynamic(column, 0)
    return _KERNELS.fn("gather_push", _gather_push)(*fixed, *low, *cell, ex, ey, ez, push,
                                                    gamma, mesh)


def kick(columns, ref, ds, bunch_charge_C: float, mesh: MeshSettings = MeshSettings(),
         alive: torch.Tensor | None = None):
    """The space-charge kick of :func:`backends.inhouse.space_charge.space_charge_kick`
    (same arguments and result): through the compiled kernels of this module without
    autograd (and without a survival mask, for one beam) unless :data:`FAST_KICK` is False,
    else the differentiable kick."""
    if FAST_KICK and usable(columns, ref, ds, alive):
        assert not isinstance(ds, torch.Tensor)  # usable() admits only a float ds
        return fast_kick(columns, ref, ds, bunch_charge_C, mesh)
    return space_charge_kick(columns, ref, ds, bunch_charge_C, mesh, alive)
