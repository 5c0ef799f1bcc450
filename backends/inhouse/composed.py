"""A lattice of linear maps as one composed 6x6 map per parameter setting, applied once.

When every map of a :class:`~backends.inhouse.tracker.Tracker` is linear (the ``linear``
tier: Drift, Quad, Sbend, CFbend, DipEdge, Sol, ConstF, thin quadrupole, LinearMap, ...),
the lattice is the product ``M = M_L ... M_2 M_1`` of its element matrices, and tracking is
``x_final = M x_initial`` for every particle (ImpactX applies the same matrices one element
after the other, ``src/elements/*.H``; the product differs from that only by round-off).
:class:`ComposedLinear` evaluates ``M`` for a batch of K parameter settings with a fixed,
small number of tensor operations, whatever the number of elements:

* the element maps whose parameters are given as tensors are evaluated per *map kind*: the
  maps of one kind whose other parameters are equal (64 quadrupoles of one length, say) are
  built in one call of the map's function with their values stacked along a leading axis;
* consecutive constant maps are multiplied once, at construction;
* the product is a pairwise (tree) reduction over the stacked maps, ``ceil(log2 L)``
  levels, each computing only the products of structurally non-zero entries, and none by
  an entry that is 1 in every map (uncoupled x, y and t planes: 16 products instead of the
  216 of a dense 6x6 product).

:func:`track_moments` applies ``M`` to the particles (one matrix product per block of
settings) and takes the first and second moments of the tracked particles of each setting,
as :func:`harness.model.observables.moments` defines them. Everything is differentiable in
reverse and forward mode.
Units: ImpactX's coordinates (x [m], px [1], y [m], py [1], t [m], pt [1]).
"""

from __future__ import annotations

import math
import types
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Entries, Kernel, assemble
from backends.inhouse.reference import RefState
from backends.inhouse.translate import MapSpec
from harness.model.lattice import Element

#: A parameter key: (element name, field).
ParamKey = tuple[str, str]
#: One entry position (row, column) of a 6x6 map, 0-based in ImpactX's order.
Position = tuple[int, int]

#: Bytes of tracked particles per block of settings in :func:`track_moments` (settings x 6
#: x N float64): 512 KiB was the fastest of 0.25 to 8 MiB for 1000 x 1000 particles on a
#: 2-core AMD EPYC (one thread).
BLOCK_BYTES = 1 << 19


def _closure_key(value: Any, dynamic: frozenset[str]) -> Hashable:
    """A hashable stand-in for what a map's ``make`` captured: two makes with equal keys
    compute the same function of their parameters. Elements count without their name and
    the fields given as tensors; anything not recognised counts by identity."""
    if value is None or isinstance(value, bool | int | float | str):
        return (type(value).__name__, value)
    if isinstance(value, tuple):
        return ("tuple", tuple(_closure_key(v, dynamic) for v in value))
    if isinstance(value, Element):
        params = tuple(sorted((k, repr(v)) for k, v in value.params.items()
                              if k not in dynamic))
        return ("element", value.kind, value.tier, value.requested_tier, value.nslice,
                value.mapsteps, value.int_order, params)
    if isinstance(value, types.FunctionType):
        cells = tuple(_closure_key(cell.cell_contents, dynamic)
                      for cell in (value.__closure__ or ()))
        defaults = _closure_key(tuple(value.__defaults__ or ()), dynamic)
        return ("function", value.__code__, cells, defaults)
    if isinstance(value, MapSpec):
        return ("spec", value.impactx, value.linear, _closure_key(value.element, dynamic),
                _closure_key(value.make, dynamic))
    return ("object", id(value))


#: A stack of L sparse 6x6 maps for B settings: position -> a float that every map and
#: setting shares, or a tensor ``(L, B)`` (``(L, 1)``: the same for every setting); absent
#: positions are 0.
Stack = dict[Position, float | torch.Tensor]


def _identity() -> Stack:
    return {(i, i): 1.0 for i in range(6)}


def _constant_stack(matrices: Sequence[torch.Tensor]) -> Stack:
    """The stack of constant ``(6, 6)`` matrices: floats where all of them agree, else
    ``(L, 1)`` tensors."""
    rows = torch.stack(list(matrices))
    values = rows.tolist()
    out: Stack = {}
    for i in range(6):
        for j in range(6):
            column = [v[i][j] for v in values]
            if all(c == column[0] for c in column):
                if column[0] != 0.0:
                    out[(i, j)] = float(column[0])
            else:
                out[(i, j)] = rows[:, i, j].reshape(-1, 1)
    return out


def _made_stack(made: Entries, members: int, batch: torch.Size, dtype: torch.dtype) -> Stack:
    """The stack of ``members`` maps made in one call (tensors ``(members,) + batch``, or
    0-d, or floats; unset diagonal entries 1)."""
    flat = math.prod(batch)
    out: Stack = {}
    for position in [*made, *((i, i) for i in range(6))]:
        if position in out:
            continue
        value = made.get(position, 1.0)
        if isinstance(value, torch.Tensor):
            value = value.to(dtype=dtype)
            out[position] = (value.expand(members, *batch).reshape(members, flat)
                             if value.dim() > 0 else value.expand(members, 1))
        elif value != 0.0:
            out[position] = float(value)
    return out


def multiply(later: Stack, earlier: Stack) -> Stack:
    """``later @ earlier`` map by map (stacks of equal L, or one of them L = 1): each
    product of the sparse entries once, none with a structural 0, none by a shared 1."""
    by_row: dict[int, list[tuple[int, float | torch.Tensor]]] = {}
    for (j, k), value in earlier.items():
        by_row.setdefault(j, []).append((k, value))
    floats: dict[Position, float] = {}
    tensors: dict[Position, torch.Tensor] = {}
    for (i, j), a in later.items():
        for k, b in by_row.get(j, ()):
            position = (i, k)
            if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor):
                floats[position] = floats.get(position, 0.0) + a * b
                continue
            if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
                term = tensors.get(position)
                tensors[position] = a * b if term is None else torch.addcmul(term, a, b)
                continue
            tensor, factor = (a, b) if isinstance(a, torch.Tensor) else (b, a)
            if not isinstance(tensor, torch.Tensor) or isinstance(factor, torch.Tensor):
                raise TypeError("one tensor and one float expected")
            product = tensor if factor == 1.0 else tensor * factor
            term = tensors.get(position)
            tensors[position] = product if term is None else term + product
    out: Stack = {}
    for position in {*floats, *tensors}:
        number = floats.get(position, 0.0)
        if position in tensors:
            out[position] = tensors[position] + number if number else tensors[position]
        elif number != 0.0:
            out[position] = number
    return out


def _rows(stack: Stack, rows: slice) -> Stack:
    return {p: v[rows] if isinstance(v, torch.Tensor) else v for p, v in stack.items()}


def _concatenate(parts: Sequence[tuple[Stack, int]], reference: torch.Tensor) -> Stack:
    """The stacks ``(stack, L)`` one after the other (floats kept where all agree)."""
    out: Stack = {}
    for position in {p for stack, _ in parts for p in stack}:
        values = [stack.get(position, 0.0) for stack, _ in parts]
        if not any(isinstance(v, torch.Tensor) for v in values) and \
                all(v == values[0] for v in values):
            if values[0] != 0.0:
                out[position] = values[0]
            continue
        width = max((v.shape[1] for v in values if isinstance(v, torch.Tensor)), default=1)
        blocks = [v.expand(count, width) if isinstance(v, torch.Tensor) else
                  torch.full((count, width), float(v), device=reference.device,
                             dtype=reference.dtype)
                  for v, (_, count) in zip(values, parts, strict=True)]
        out[position] = torch.cat(blocks)
    return out


def reduce(stack: Stack, count: int, like: torch.Tensor) -> Stack:
    """``F_L ... F_2 F_1`` of a stack of ``count`` maps (in the order of application) by
    pairwise products: ``ceil(log2 L)`` levels of :func:`multiply`."""
    while count > 1:
        pairs = count // 2
        product = multiply(_rows(stack, slice(1, 2 * pairs, 2)),
                           _rows(stack, slice(0, 2 * pairs, 2)))
        if count % 2:
            product = _concatenate([(product, pairs),
                                    (_rows(stack, slice(count - 1, count)), 1)], like)
        stack, count = product, pairs + count % 2
    return stack


def dense(stack: Stack, flat: int, like: torch.Tensor) -> torch.Tensor:
    """The ``(flat, 6, 6)`` matrices of a stack of one map."""
    columns = []
    for i in range(6):
        for j in range(6):
            value = stack.get((i, j), 0.0)
            columns.append(value.reshape(-1).expand(flat) if isinstance(value, torch.Tensor)
                           else torch.full((flat,), float(value), device=like.device,
                                           dtype=like.dtype))
    return torch.stack(columns, dim=-1).reshape(flat, 6, 6)


class ComposedLinear:
    """The composed 6x6 matrix of an all-linear lattice, per parameter setting.

    The maps are grouped at construction into the leading constant run ``C_0`` (maps before
    the first map with a parameter) and, per map ``D_i`` with a parameter, ``C_i D_i`` with
    ``C_i`` the run of constant maps after it; the lattice is ``(C_m D_m) ... (C_1 D_1)
    C_0``.

    Args:
        specs: the lattice's maps in order (:attr:`backends.inhouse.tracker.Tracker.specs`),
            all linear.
        reference: the reference particle every map sees (linear maps do not change it).
        parameters: ``(element name, field)`` keys that :meth:`matrix` receives as tensors.
        device, dtype: where and in which precision the matrices are built.

    Raises:
        ValueError: a map is not linear, or the reference depends on a parameter.
    """

    def __init__(self, specs: Sequence[MapSpec], reference: RefState,
                 parameters: frozenset[ParamKey], device: torch.device | str,
                 dtype: torch.dtype):
        if not specs or not all(spec.linear for spec in specs):
            raise ValueError("a composed map needs a lattice of linear maps only")
        if reference.dynamic:
            raise ValueError("a composed map needs a constant reference particle")
        self.reference = reference
        self.parameters = parameters
        self.device, self.dtype = torch.device(device), dtype
        self._like = torch.zeros((), device=self.device, dtype=dtype)
        names = {name for name, _ in parameters}
        identity = torch.eye(6, device=self.device, dtype=dtype)
        self.leading = identity                  # C_0
        self.dynamic: list[MapSpec] = []         # D_i
        after: list[torch.Tensor] = []           # C_i
        for spec in specs:
            if spec.element.name in names:
                self.dynamic.append(spec)
                after.append(identity)
                continue
            made = spec.make(dict(spec.element.params), reference)
            if isinstance(made, Kernel):
                raise ValueError(f"{spec.impactx}({spec.element.name}) is linear but made "
                                 "a Kernel")
            matrix = assemble(made, self.device, dtype)
            if after:
                after[-1] = matrix @ after[-1]
            else:
                self.leading = matrix @ self.leading
        self.groups = self._kind_groups()
        self._after = [_constant_stack([after[i] for i in group]) for group in self.groups]
        order = [i for group in self.groups for i in group]
        self._order = (None if order == sorted(order) else torch.tensor(
            sorted(range(len(order)), key=order.__getitem__), device=self.device))

    def _fields(self, spec: MapSpec) -> frozenset[str]:
        return frozenset(f for n, f in self.parameters if n == spec.element.name)

    def _kind_groups(self) -> list[list[int]]:
        """Indices of the maps with parameters built in one call: same map code, same
        captured values, same constant parameters, same fields given as tensors."""
        groups: dict[Hashable, list[int]] = {}
        for index, spec in enumerate(self.dynamic):
            fields = self._fields(spec)
            key = (spec.impactx, fields, _closure_key(spec.element, fields),
                   _closure_key(spec.make, fields))
            groups.setdefault(key, []).append(index)
        return list(groups.values())

    def _value(self, values: Mapping[ParamKey, torch.Tensor], spec: MapSpec,
               field: str) -> torch.Tensor:
        """The tensor value of a field of a map (its lattice value when not given)."""
        given = values.get((spec.element.name, field))
        if given is not None:
            return given
        if field not in spec.element.params:
            raise KeyError(f"{spec.element.name}.{field}: no value given and none in the "
                           "lattice")
        return torch.as_tensor(float(spec.element.params[field]), device=self.device,
                               dtype=self.dtype)

    def matrix(self, values: Mapping[ParamKey, torch.Tensor] | None = None) -> torch.Tensor:
        """The lattice's matrix ``batch + (6, 6)`` at parameter ``values`` (tensors of one
        common batch shape, keys among :attr:`parameters`; missing keys take the lattice
        values)."""
        values = {k: torch.as_tensor(v).to(device=self.device, dtype=self.dtype)
                  for k, v in (values or {}).items()}
        unknown = sorted(k for k in values if k not in self.parameters)
        if unknown:
            raise KeyError(f"{unknown} were not declared as parameters of this map")
        shapes = [v.shape for v in values.values()]
        batch = torch.broadcast_shapes(*shapes) if shapes else torch.Size()
        if not self.dynamic:
            return self.leading.expand(*batch, 6, 6)
        parts = []
        for group, after in zip(self.groups, self._after, strict=True):
            specs = [self.dynamic[i] for i in group]
            first = specs[0]
            params: dict[str, nm.Scalar] = dict(first.element.params)
            for field in self._fields(first):
                params[field] = torch.stack([self._value(values, s, field).expand(batch)
                                             for s in specs])
            made = first.make(params, self.reference)
            if isinstance(made, Kernel):
                raise ValueError(f"{first.impactx}({first.element.name}) is linear but made "
                                 "a Kernel")
            parts.append((multiply(after, _made_stack(made, len(group), batch, self.dtype)),
                          len(group)))
        stack = parts[0][0] if len(parts) == 1 else _concatenate(parts, self._like)
        if self._order is not None:
            stack = {p: v.index_select(0, self._order) if isinstance(v, torch.Tensor)
                     and v.shape[0] > 1 else v for p, v in stack.items()}
        flat = math.prod(batch)
        whole = dense(reduce(stack, len(self.dynamic), self._like), flat, self._like)
        return torch.matmul(whole, self.leading).reshape(*batch, 6, 6)


def track_moments(matrix: torch.Tensor, particles: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """First moments ``batch + (6,)`` and covariances ``batch + (6, 6)`` of the particles
    ``(N, 6)`` (or ``batch + (N, 6)``) after the map ``matrix`` (``batch + (6, 6)``).

    The moments are those of :func:`harness.model.observables.moments` (mean, and the mean
    outer product of the centred particles), with each particle tracked as ``M x``:
    centring commutes with a linear map (``M x - <M x> = M (x - <x>)``), so the particles
    are centred once, before the map, and the mean is tracked as ``M <x>``; the settings
    are tracked a block at a time (:data:`BLOCK_BYTES`), one matrix product per block.
    """
    batch = matrix.shape[:-2]
    n = particles.shape[-2]
    initial = particles.transpose(-1, -2)                     # batch + (6, N)
    mean0 = initial.mean(dim=-1, keepdim=True)                # batch + (6, 1)
    centred0 = initial - mean0
    if not batch:
        centred = matrix @ centred0
        return (matrix @ mean0)[..., 0], centred @ centred.transpose(-1, -2) / n
    flat = math.prod(batch)
    matrices = matrix.reshape(flat, 6, 6)
    shared = particles.dim() == 2
    if shared:
        centred0 = centred0.contiguous()
        means = (matrices @ mean0)[..., 0]
    else:
        centred0 = centred0.expand(*batch, 6, n).reshape(flat, 6, n)
        means = (matrices @ mean0.expand(*batch, 6, 1).reshape(flat, 6, 1))[..., 0]
    block = max(1, BLOCK_BYTES // (48 * n))
    covariances = []
    for start in range(0, flat, block):
        chunk = matrices[start:start + block]
        if shared:
            centred = (chunk.reshape(-1, 6) @ centred0).reshape(-1, 6, n)
        else:
            centred = chunk @ centred0[start:start + block]
        covariances.append(centred @ centred.transpose(-1, -2) / n)
    return means.reshape(*batch, 6), torch.cat(covariances).reshape(*batch, 6, 6)


def composed_map(specs: Sequence[MapSpec], reference: RefState,
                 parameters: frozenset[ParamKey], device: torch.device,
                 dtype: torch.dtype) -> ComposedLinear | None:
    """:class:`ComposedLinear` of the maps, or None where one is not linear, one changes
    the reference particle or reads its time (an ``RFCavity``: the maps after it see another
    reference), or the reference depends on a parameter."""
    if not specs or not all(spec.linear for spec in specs) or reference.dynamic:
        return None
    if any(spec.reference is not None or spec.reads_time for spec in specs):
        return None
    return ComposedLinear(specs, reference, parameters, device, dtype)


__all__ = ["BLOCK_BYTES", "ComposedLinear", "composed_map", "multiply", "reduce",
           "track_moments"]
