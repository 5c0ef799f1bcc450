"""Building blocks of every element map: linear maps as sparse 6x6 entries, nonlinear maps
as :class:`Kernel` (a pure function of the particle columns plus its coefficients).

Particle columns are the tuple ``(x, px, y, py, t, pt)`` of tensors of shape
``batch + (N,)`` in ImpactX's canonical coordinates. A kernel's ``push(columns, coeffs)``
returns the new columns, or ``(columns, ok)`` with a boolean survival mask when the kernel
can lose particles (``loses_particles``). Push functions never modify their inputs in place,
never branch on tensor values and never leave the device, so they are usable under
reverse mode, ``torch.func.jvp``/``jacfwd``/``vmap`` and ``torch.compile``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from backends.inhouse import numeric as nm

#: Sparse 6x6 map: (row, column) -> value, 0-based, in the order (x, px, y, py, t, pt);
#: unset diagonal entries are 1 and unset off-diagonal entries 0.
Entries = dict[tuple[int, int], nm.Scalar]

Columns = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Kernel:
    """A nonlinear map.

    Attributes:
        push: ``push(columns, coeffs) -> columns`` (or ``(columns, ok)``).
        coeffs: the map's coefficients (floats, tensors of the batch shape, nested tuples).
        loses_particles: whether ``push`` also returns a survival mask.
    """

    push: Callable[..., Any]
    coeffs: tuple
    loses_particles: bool = False


def batch_shape(entries: Entries) -> torch.Size:
    """Broadcast shape of the tensor entries (``()`` when all are floats or 0-d)."""
    shapes = [v.shape for v in entries.values() if isinstance(v, torch.Tensor)]
    return torch.broadcast_shapes(*shapes) if shapes else torch.Size()


def assemble(entries: Entries, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """The dense ``batch + (6, 6)`` matrix of sparse entries.

    All-float entries become one tensor copied to the device once (call this at set-up);
    with tensor entries the float entries are filled on the device (``torch.full``, no
    host-device copy) and the matrix is stacked in the autograd graph.
    """
    if not any(isinstance(v, torch.Tensor) for v in entries.values()):
        dense = [[float(entries.get((i, j), 1.0 if i == j else 0.0)) for j in range(6)]
                 for i in range(6)]
        return torch.tensor(dense, device=device, dtype=dtype)
    shape = batch_shape(entries)
    rows = []
    for i in range(6):
        row = []
        for j in range(6):
            value = entries.get((i, j), 1.0 if i == j else 0.0)
            if isinstance(value, torch.Tensor):
                row.append(value.to(dtype=dtype).expand(shape))
            else:
                row.append(torch.full(shape, float(value), device=device, dtype=dtype))
        rows.append(torch.stack(row, dim=-1))
    return torch.stack(rows, dim=-2)


def broadcast_columns(columns: Columns) -> Columns:
    """Columns expanded to one common shape (views, no copy)."""
    return tuple(torch.broadcast_tensors(*columns))


def stack_columns(columns: Columns) -> torch.Tensor:
    """Columns -> ``batch + (6, N)``."""
    return torch.stack(broadcast_columns(columns), dim=-2)
