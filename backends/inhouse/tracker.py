"""The tracker: a lattice as a list of steps, applied to particle columns.

A *step* is either

* a :class:`LinearStep`: the 6x6 matrix of one linear map, or (``fuse_linear=True``) the
  product of a run of consecutive linear maps (Drift, Quad, Sbend, CFbend, DipEdge, Sol,
  thin quadrupole), applied in one matrix product to the ``(6, N)`` particle array; or
* a :class:`KernelStep`: a pure element-wise function of the six particle columns
  (ChrDrift, ChrQuad, exact maps, thin multipoles, RF, apertures).

Particles are held as six columns ``(x, px, y, py, t, pt)`` of shape ``batch + (N,)``;
a ``(6, N)`` layout was measured faster than ``(N, 6)`` on CPU (2 threads, 1e6 particles,
fp64: matrix product 27 vs 36 ms, a ChrDrift 81 vs 120 ms).

Element and beam parameters named at construction may be given as tensors (any batch
shape, with ``requires_grad`` or dual numbers); all other maps are built once, on the
device, when the tracker is constructed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from backends.inhouse import boundary
from backends.inhouse import numeric as nm
from backends.inhouse.maps import (
    Columns,
    Entries,
    Kernel,
    assemble,
    broadcast_columns,
    stack_columns,
)
from backends.inhouse.reference import RefState
from backends.inhouse.translate import (
    MapSpec,
    changes_reference,
    checked_parameters,
    declared_values,
    reference_after,
    translate,
)
from harness.model.lattice import Element
from harness.model.reference_particle import ReferenceParticle

#: A parameter key: (element name, field), e.g. ("qf", "Kn1").
ParamKey = tuple[str, str]


@dataclass(frozen=True)
class LinearStep:
    """A 6x6 (or ``batch + (6, 6)``) matrix applied as ``M @ particles``."""

    matrix: torch.Tensor
    label: str

    def __call__(self, columns: Columns, alive: torch.Tensor | None):
        return torch.matmul(self.matrix, stack_columns(columns)).unbind(-2), alive


@dataclass(frozen=True)
class KernelStep:
    """An element-wise map ``push(columns, coeffs)``; coefficients broadcast per batch."""

    push: Any
    coeffs: tuple
    loses_particles: bool
    label: str

    def __call__(self, columns: Columns, alive: torch.Tensor | None):
        if not self.loses_particles:
            return self.push(columns, self.coeffs), alive
        columns, ok = self.push(columns, self.coeffs)
        return columns, ok if alive is None else alive & ok


Step = LinearStep | KernelStep


def _entries(spec: MapSpec, params: Mapping[str, nm.Scalar], ref: RefState) -> Entries:
    """The 6x6 entries of a linear ``spec``."""
    entries = spec.make(params, ref)
    if isinstance(entries, Kernel):
        raise TypeError(f"{spec.impactx}({spec.element.name}) is linear but made a Kernel")
    return entries


def _kernel(spec: MapSpec, params: Mapping[str, nm.Scalar], ref: RefState) -> Kernel:
    """The Kernel of a nonlinear ``spec``."""
    kernel = spec.make(params, ref)
    if not isinstance(kernel, Kernel):
        raise TypeError(f"{spec.impactx}({spec.element.name}) is nonlinear but made entries")
    return kernel


def run_steps(steps: Sequence[Step], columns: Columns, alive: torch.Tensor | None = None
              ) -> tuple[Columns, torch.Tensor | None]:
    """Track columns through the steps; returns the columns and the survival mask (None
    when no step can lose particles)."""
    for step in steps:
        columns, alive = step(columns, alive)
    return broadcast_columns(columns), alive


#: Particles per block of :func:`track_inplace`: each column block (512 KiB in float64)
#: and the temporaries of the element-wise maps stay in the CPU caches and below the
#: allocator's mmap threshold, so no temporary costs a page fault.
BLOCK = 65536


def run_steps_into(steps: Sequence[Step], rows: Columns) -> torch.Tensor | None:
    """Track six columns through ``steps`` and write the result back into them (each
    column updated in place, none that a step returned unchanged); returns the survival
    mask or None."""
    columns, alive = rows, None
    for step in steps:
        columns, alive = step(columns, alive)
    for row, column in zip(rows, columns, strict=True):
        if column is not row:
            row.copy_(column)
    return alive


def track_inplace(steps: Sequence[Step], columns: Columns, block: int = BLOCK
                  ) -> torch.Tensor | None:
    """Track six contiguous particle columns ``(N,)`` in place, ``block`` particles at a time
    (every map acts on each particle alone, so blocks are independent); no autograd graph
    is built.

    Returns the survival mask ``(N,)`` or None when no step can lose particles.
    """
    n = columns[0].shape[-1]
    alive_all = None
    with torch.no_grad():
        for start in range(0, n, block):
            alive = run_steps_into(steps, tuple(column[start:start + block]
                                                for column in columns))
            if alive is not None:
                if alive_all is None:
                    alive_all = torch.ones(n, dtype=torch.bool, device=columns[0].device)
                alive_all[start:start + block] = alive
    return alive_all


def to_columns(particles: torch.Tensor) -> Columns:
    """``batch + (N, 6)`` particles -> six contiguous columns of shape ``batch + (N,)``."""
    return particles.transpose(-1, -2).contiguous().unbind(-2)


def from_columns(columns: Columns) -> torch.Tensor:
    """Six columns -> ``batch + (N, 6)`` particles."""
    return torch.stack(broadcast_columns(columns), dim=-1)


class StepTracking(ABC):
    """Tracking through ``self.steps(values)``, shared by the trackers that build steps."""

    @abstractmethod
    def steps(self, values: Mapping[ParamKey, torch.Tensor] | None = None) -> list:
        """The maps of the lattice as steps ``(columns, alive) -> (columns, alive)``, with
        ``values`` (parameter tensors by ``(element, field)``) replacing constants."""

    def track_columns(self, columns: Columns,
                      values: Mapping[ParamKey, torch.Tensor] | None = None
                      ) -> tuple[Columns, torch.Tensor | None]:
        """Track six columns; returns the final columns and the survival mask or None."""
        return run_steps(self.steps(values), columns)

    def track(self, particles: torch.Tensor,
              values: Mapping[ParamKey, torch.Tensor] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Track ``batch + (N, 6)`` particles; returns ``batch + (N, 6)`` and the survival
        mask (``batch + (N,)`` bool) or None."""
        columns, alive = self.track_columns(to_columns(particles), values)
        return from_columns(columns), alive


class Tracker(StepTracking):
    """A lattice translated into steps for one device and dtype.

    Args:
        elements: the harness element list (:attr:`harness.model.scenario.Scenario.elements`).
        reference: reference particle at the lattice entrance.
        device, dtype: where and in which precision particles are tracked.
        fuse_linear: multiply consecutive linear maps into one matrix.
        join_additive: join consecutive additive maps (:attr:`MapSpec.additive`: drifts,
            ChrQuad) of constant, otherwise equal parameters into one map of their summed
            length (e.g. a quadrupole written as two halves, consecutive drifts): the
            same map to round-off (1e-15 of the spread), one map evaluation instead of
            several. Off where every map must stay a step of its own (space-charge
            slices).
        parameters: ``(element name, field)`` keys that :meth:`steps` may receive as
            tensors; every map that depends on one (or sits downstream of an RF gap that
            does) is rebuilt per call, all others are built here once.
        bucket_length: with a value [m], ImpactX's periodic particle boundary after every
            element (:mod:`backends.inhouse.boundary`); None: none.
    """

    def __init__(self, elements: Sequence[Element], reference: ReferenceParticle | RefState, *,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64,
                 fuse_linear: bool = True, join_additive: bool = True,
                 parameters: Iterable[ParamKey] = (), bucket_length: float | None = None):
        self.elements = list(elements)
        self.bucket_length = bucket_length
        self.device = torch.device(device)
        self.dtype = dtype
        self.fuse_linear = fuse_linear
        self.join_additive = join_additive
        self.parameters = checked_parameters(self.elements, parameters)
        self.reference = RefState.coerce(reference)
        self.specs: list[MapSpec] = []
        for element in self.elements:
            fields = frozenset(f for n, f in self.parameters if n == element.name)
            self.specs.extend(translate(element, fields))
            if bucket_length is not None:   # ImpactX's periodic particle boundary
                self.specs.append(MapSpec("ParticleBoundary", element, False, lambda p, r: (
                    boundary.periodic_kernel(bucket_length, r))))
        #: whether a map reads the reference time (an RFCavity): then every map that
        #: advances it counts as changing the reference
        self.timed = any(spec.reads_time for spec in self.specs)
        self._dynamic = self._dynamic_flags()
        self.groups = self._group()
        self._matrices: dict[int, torch.Tensor] = {}
        self._ref_after: list[RefState] = []
        self._cached: dict[int, Step] = {}
        self._build_constants()

    # -- structure -------------------------------------------------------------------------
    def _group(self) -> list[list[int]]:
        groups: list[list[int]] = []
        for index, spec in enumerate(self.specs):
            fused = (self.fuse_linear and spec.linear and bool(groups)
                     and self.specs[groups[-1][-1]].linear)
            joined = self.join_additive and bool(groups) and self._joins(groups[-1][-1], index)
            if fused or joined:
                groups[-1].append(index)
            else:
                groups.append([index])
        return groups

    def _joins(self, before: int, index: int) -> bool:
        """Whether map ``index`` joins map ``before`` (:attr:`join_additive`)."""
        first, second = self.specs[before], self.specs[index]
        if not (first.additive and second.additive) or first.impactx != second.impactx:
            return False
        if self._dynamic[before] or self._dynamic[index]:
            return False

        def others(spec: MapSpec) -> dict:
            return {k: v for k, v in spec.element.params.items() if k != "length"}

        return others(first) == others(second)

    def _dynamic_flags(self) -> list[bool]:
        names = {n for n, _ in self.parameters}
        reference_dynamic = self.reference.dynamic
        flags = []
        for spec in self.specs:
            dynamic = reference_dynamic or spec.element.name in names
            flags.append(dynamic)
            if dynamic and changes_reference(spec, self.timed):
                reference_dynamic = True
        return flags

    def _build_constants(self) -> None:
        ref = self.reference
        for index, spec in enumerate(self.specs):
            params: dict[str, nm.Scalar] = dict(spec.element.params)
            if not self._dynamic[index] and spec.linear:
                self._matrices[index] = assemble(_entries(spec, params, ref), self.device,
                                                 self.dtype)
            if not self._dynamic[index]:
                ref = reference_after(spec, params, ref)
            self._ref_after.append(ref)
        for group_index, group in enumerate(self.groups):
            if not any(self._dynamic[i] for i in group):
                ref_in = self._ref_after[group[0] - 1] if group[0] > 0 else self.reference
                self._cached[group_index] = self._build_group(group, ref_in, {})[0]

    @property
    def labels(self) -> list[str]:
        """ImpactX element class of every map, in order (e.g. ``['Drift', 'Quad', ...]``)."""
        return [spec.impactx for spec in self.specs]

    # -- building steps --------------------------------------------------------------------
    def _params(self, spec: MapSpec, values: Mapping[ParamKey, torch.Tensor]
                ) -> dict[str, nm.Scalar]:
        params: dict[str, nm.Scalar] = dict(spec.element.params)
        for (name, field), value in values.items():
            if name == spec.element.name:
                params[field] = value
        return params

    def _build_group(self, group: list[int], ref: RefState,
                     values: Mapping[ParamKey, torch.Tensor]) -> tuple[Step, RefState]:
        specs = [self.specs[i] for i in group]
        label = "+".join(f"{s.impactx}({s.element.name})" for s in specs)
        if specs[0].linear:
            matrix = None
            for index, spec in zip(group, specs, strict=True):
                params = self._params(spec, values)
                if index in self._matrices:
                    factor = self._matrices[index]
                else:
                    factor = assemble(_entries(spec, params, ref), self.device, self.dtype)
                matrix = factor if matrix is None else torch.matmul(factor, matrix)
                ref = reference_after(spec, params, ref)
            assert matrix is not None  # a group holds at least one map
            return LinearStep(matrix, label), ref
        spec = specs[0]
        params = self._params(spec, values)
        if len(specs) > 1:  # joined additive maps (constant parameters)
            params["length"] = sum(float(s.element.params["length"]) for s in specs)
        kernel = _kernel(spec, params, ref)
        ref = reference_after(spec, params, ref)
        return KernelStep(kernel.push, nm.broadcast_ready(kernel.coeffs),
                          kernel.loses_particles, label), ref

    def steps(self, values: Mapping[ParamKey, torch.Tensor] | None = None) -> list[Step]:
        """The steps for parameter ``values`` (tensors of one common batch shape, keys among
        the ``parameters`` given at construction; missing keys take the lattice values)."""
        values = declared_values(values, self.parameters, self.device, self.dtype)
        out: list[Step] = []
        ref = self.reference
        for group_index, group in enumerate(self.groups):
            if group_index in self._cached:
                out.append(self._cached[group_index])
                ref = self._ref_after[group[-1]]
                continue
            step, ref = self._build_group(group, ref, values)
            out.append(step)
        return out

    def reference_at_end(self, values: Mapping[ParamKey, torch.Tensor] | None = None
                         ) -> RefState:
        """Reference particle after the last element."""
        ref = self.reference
        values = dict(values or {})
        for spec in self.specs:
            ref = reference_after(spec, self._params(spec, values), ref)
        return ref

    def section(self, start: int = 0, stop: int | None = None) -> Tracker:
        """A tracker of ``elements[start:stop]`` (same device, dtype, fusion, parameters of
        those elements) entered with the constant reference particle at ``start``."""
        ref = self.reference
        for element in self.elements[:start]:
            for spec in translate(element):
                ref = reference_after(spec, dict(element.params), ref)
        chosen = self.elements[start:stop]
        names = {e.name for e in chosen}
        return Tracker(chosen, ref, device=self.device, dtype=self.dtype,
                       fuse_linear=self.fuse_linear, join_additive=self.join_additive,
                       parameters=[k for k in self.parameters if k[0] in names],
                       bucket_length=self.bucket_length)
