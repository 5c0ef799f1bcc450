"""A user-given linear transport map (ImpactX ``src/elements/LinearMap.H``): the 6x6 matrix
R applied to (x, px, y, py, t, pt) in ImpactX's coordinates, x_final = R[0, 0] x +
R[0, 1] px + ..., with an optional length ds [m] that only advances the reference
particle's path length (ImpactX does not slice it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Entries

#: The symplectic form of (x, px, y, py, t, pt).
_OMEGA = [[0.0, 1.0, 0.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
          [0.0, 0.0, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0, 0.0, 0.0],
          [0.0, 0.0, 0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0, -1.0, 0.0]]


def linear_map_entries(matrix: torch.Tensor | Sequence[Sequence[nm.Scalar]]) -> Entries:
    """The entries of a 6x6 matrix (0-based rows and columns): a nested sequence of floats
    (or tensors), or a tensor of shape ``batch + (6, 6)`` whose entries stay in the autograd
    graph. Every entry is set, so unset-entry defaults never apply."""
    if isinstance(matrix, torch.Tensor):
        if matrix.shape[-2:] != (6, 6):
            raise ValueError(f"LinearMap: expected a 6x6 matrix, got shape "
                             f"{tuple(matrix.shape)}")
        return {(i, j): matrix[..., i, j] for i in range(6) for j in range(6)}
    rows = [list(row) for row in matrix]
    if len(rows) != 6 or any(len(row) != 6 for row in rows):
        raise ValueError("LinearMap: expected a 6x6 matrix (6 rows of 6 numbers)")
    return {(i, j): rows[i][j] for i in range(6) for j in range(6)}


def symplectic_error(matrix: Sequence[Sequence[float]]) -> float:
    """max |R^T Omega R - Omega| (ImpactX ``LinearMap::symplectic``, which accepts
    <= 1e-10 in double precision): 0 for a symplectic map."""
    r = torch.tensor(matrix, dtype=torch.float64)
    omega = torch.tensor(_OMEGA, dtype=torch.float64)
    return float((r.T @ omega @ r - omega).abs().max())
