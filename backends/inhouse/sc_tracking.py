"""Tracking with space charge: element slices interleaved with space-charge kicks.

The kick is the scenario's kind (:func:`kick_function`): ``3d``
(:mod:`backends.inhouse.space_charge`, compiled by :mod:`backends.inhouse.sc_fast`), ``2d``,
``2p5d``, ``gauss3d`` and ``gauss2p5d`` (:mod:`backends.inhouse.space_charge_2d`, eager),
each ImpactX's (``src/particles/spacecharge/HandleSpacecharge.cpp``); the slicing and the
split below are the same for every kind.

Every element with a length is cut into ``kicks_per_element`` equal slices of length
``ds``, and each slice gets one space-charge kick over ``ds``. Two orders (``split``):

* ``"strang"`` (default): half-slice map, kick over ``ds``, half-slice map -- ImpactX's
  second-order Strang split, ``algo.strang_split = true`` by default (ImpactX
  ``src/tracking/particles.cpp``: ``track_lattice(..., strang_split, collective_kicks,
  element_push, ...)``, where the element push is applied "twice per slice, once per
  half-map"). Measured with impactx 26.10 (1e4 particles, one 6 m slice of
  ``expanding_beam``): its final ``x`` equals ``x0 + 3 m * px_kick`` to 5e-7 of sigma_x,
  i.e. half drift - kick - half drift.
* ``"kick_first"``: kick over ``ds``, then the slice map (ImpactX with
  ``algo.strang_split = false``, and older ImpactX releases: ``HandleSpacecharge(slice_ds)``
  then ``Push``), first order.

With ``kicks_per_element`` equal to the elements' ``nslice`` both codes take the same steps.

Slicing (:func:`slice_element`, :func:`backends.inhouse.translate.slice_params`): the
pieces (slices, or half-slices with ``"strang"``) are copies of the harness element with
``length`` and ``angle`` divided by the number of pieces (the bend radius and every per-
metre strength stay); a bend's entrance edge ``e1`` stays on the first piece and its exit
edge ``e2`` on the last; each piece has ``nslice = 1`` and the element's ``mapsteps``, so
an exact integrator takes ``mapsteps`` steps per piece: with the Strang split this is
ImpactX's (measured, 5 MeV electrons with 1e-3 spread in every coordinate: ChrQuad +
ExactQuad with ``nslice = 2``, ``mapsteps = 10`` agree to 4e-10 of sigma; with 5 steps per
half-slice they differ by 8.5e-6); linear and paraxial maps are exact for any cut. Thin
elements (multipoles, short RF, markers, apertures) are not sliced and get no kick
(ImpactX's slice length is 0 there).
Pieces are named ``<name>#<k>``; differentiable parameters keep the element's name and
:meth:`SpaceChargeTracker.steps` hands each piece its share. A piece of an element with a
pipe aperture checks it at its exit (:func:`backends.inhouse.translate.translate`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from torch.utils.checkpoint import checkpoint

from backends.inhouse import numeric as nm
from backends.inhouse import sc_fast
from backends.inhouse import space_charge_2d as s2
from backends.inhouse.maps import Columns
from backends.inhouse.reference import RefState
from backends.inhouse.space_charge import DEFAULT_PROB_RELATIVE, MeshSettings
from backends.inhouse.tracker import (
    LinearStep,
    ParamKey,
    Step,
    StepTracking,
    Tracker,
)
from backends.inhouse.translate import slice_params, translate
from harness.model.kinds import KIND_SPECS
from harness.model.lattice import Element

#: Element kinds whose maps are cut into slices (all have a ``length``): drifts, bends and
#: every kind whose strength is per metre (:attr:`harness.model.kinds.KindSpec.thick`).
SLICED_KINDS = frozenset({"Drift", "SBend", "Instrument"}) | frozenset(
    spec.kind for spec in KIND_SPECS if spec.thick)

#: Orders of map and kick per slice (see the module docstring).
SPLITS = ("strang", "kick_first")


def slice_name(name: str, index: int) -> str:
    """Name of slice ``index`` of element ``name``."""
    return f"{name}#{index}"


def is_sliced(element: Element) -> bool:
    """Whether the element is cut into slices with a space-charge kick before each."""
    return element.kind in SLICED_KINDS and element.length > 0.0


def slice_element(element: Element, count: int) -> list[Element]:
    """``count`` slices of an element that compose to the whole element's map."""
    return [replace(element, name=slice_name(element.name, k),
                    params=slice_params(element.params, k, count), nslice=1)
            for k in range(count)]


def _slice_keys(key: ParamKey, count: int) -> list[tuple[ParamKey, int]]:
    """Slice parameter keys fed by one element parameter, with the slice index."""
    name, field = key
    indices: Sequence[int] = range(count)
    if field in ("e1", "edge_int1"):
        indices = [0]
    elif field in ("e2", "edge_int2"):
        indices = [count - 1]
    return [((slice_name(name, k), field), k) for k in indices]


#: Settings of each kind's kick: the 3D mesh, the transverse mesh of 2D and 2.5D, the
#: Gaussian kicks' quadrature.
KickSettings = MeshSettings | s2.TransverseMesh | s2.GaussSettings

#: The kick of each space-charge kind: ``(columns, ref, ds, intensity, settings, alive)``
#: with the intensity the bunch charge [C], or the beam current [A] for ``2d``.
KICKS = {
    "3d": sc_fast.kick,
    "2d": s2.kick_2d,
    "2p5d": s2.kick_2p5d,
    "gauss3d": s2.kick_gauss3d,
    "gauss2p5d": s2.kick_gauss2p5d,
}


def kick_function(kind: str):
    """The kick of space-charge ``kind`` (:data:`KICKS`)."""
    if kind not in KICKS:
        raise ValueError(f"space-charge kind must be one of {sorted(KICKS)}, got {kind!r}")
    return KICKS[kind]


@dataclass(frozen=True)
class KickStep:
    """A space-charge kick of ``kind`` over ``ds`` metres with the reference particle
    ``ref``; ``bunch_charge_C`` is the kind's intensity (the beam current [A] for ``2d``)."""

    ds: torch.Tensor | float
    ref: RefState
    bunch_charge_C: float
    mesh: KickSettings
    use_checkpoint: bool
    label: str
    kind: str = "3d"

    def _kick(self, *columns: torch.Tensor) -> Columns:
        return kick_function(self.kind)(columns, self.ref, self.ds, self.bunch_charge_C,
                                        self.mesh)

    def __call__(self, columns: Columns, alive: torch.Tensor | None):
        if alive is not None:
            return kick_function(self.kind)(columns, self.ref, self.ds, self.bunch_charge_C,
                                            self.mesh, alive), alive
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._kick, *columns, use_reentrant=False), alive
        return self._kick(*columns), alive


class SpaceChargeTracker(StepTracking):
    """A lattice with space-charge kicks for one device and dtype.

    Args:
        elements: the harness element list.
        reference: reference particle at the entrance.
        bunch_charge_C: bunch charge [C] (magnitude); the beam current [A] for kind ``2d``.
        kicks_per_element: slices (and kicks) per element with a length.
        mesh: the kind's settings (:data:`KickSettings`: the 3D mesh of the Poisson solve for
            ``3d``).
        device, dtype: where and in which precision particles are tracked.
        parameters: ``(element name, field)`` keys that :meth:`steps` may receive as
            tensors (as :class:`~backends.inhouse.tracker.Tracker`).
        use_checkpoint: recompute each kick in the backward pass instead of storing its
            intermediates (``torch.utils.checkpoint``), trading time for memory.
        split: ``"strang"`` or ``"kick_first"`` (module docstring).
        kind: the space-charge kind (:data:`KICKS`).
    """

    def __init__(self, elements: Sequence[Element], reference, bunch_charge_C: float,
                 kicks_per_element: int, mesh: KickSettings, *,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64,
                 parameters: Iterable[ParamKey] = (), use_checkpoint: bool = False,
                 split: str = "strang", kind: str = "3d"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        kick_function(kind)
        self.kind = kind
        self.elements = list(elements)
        self.split = split
        self.bunch_charge_C = float(bunch_charge_C)
        self.kicks = int(kicks_per_element)
        self.mesh = mesh
        self.use_checkpoint = use_checkpoint
        self.parameters = frozenset(parameters)
        # strang: 2 pieces per slice, kick (over both pieces) before every odd piece;
        # kick_first: 1 piece per slice, kick before every piece.
        self.pieces = 2 * self.kicks if split == "strang" else self.kicks
        self._kick_factor = 2 if split == "strang" else 1
        self.sliced: list[Element] = []
        self._kick_before: list[bool] = []  # whether a kick precedes each piece
        for element in self.elements:
            if is_sliced(element):
                self.sliced.extend(slice_element(element, self.pieces))
                self._kick_before.extend(k % self._kick_factor == self._kick_factor - 1
                                         for k in range(self.pieces))
            else:
                self.sliced.append(element)
                self._kick_before.append(False)
        sliced_names = {e.name for e in self.elements if is_sliced(e)}
        self._expand = {key: (_slice_keys(key, self.pieces) if key[0] in sliced_names
                              else [(key, -1)]) for key in self.parameters}
        slice_keys = {k for keys in self._expand.values() for k, _ in keys}
        self.tracker = Tracker(self.sliced, reference, device=device, dtype=dtype,
                               fuse_linear=False, join_additive=False,
                               parameters=slice_keys)
        self._spec_counts = [
            len(translate(e, frozenset(f for n, f in slice_keys if n == e.name)))
            for e in self.sliced]

    @property
    def device(self) -> torch.device:
        return self.tracker.device

    @property
    def dtype(self) -> torch.dtype:
        return self.tracker.dtype

    def _slice_values(self, values: Mapping[ParamKey, torch.Tensor]
                      ) -> dict[ParamKey, torch.Tensor]:
        unknown = sorted(k for k in values if k not in self.parameters)
        if unknown:
            raise KeyError(f"{unknown} were not declared as parameters "
                           f"(declared: {sorted(self.parameters)})")
        out = {}
        for key, value in values.items():
            value = torch.as_tensor(value).to(device=self.device, dtype=self.dtype)
            for slice_key, index in self._expand[key]:
                if index >= 0:
                    piece = slice_params({key[1]: value}, index, self.pieces)[key[1]]
                    # a tensor divided or kept: _slice_keys never zeroes a field it feeds
                    assert isinstance(piece, torch.Tensor)
                    out[slice_key] = piece
                else:
                    out[slice_key] = value
        return out

    def steps(self, values: Mapping[ParamKey, torch.Tensor] | None = None) -> list:
        """Element maps and kicks in tracking order for parameter ``values`` (keys of
        the unsliced elements, as given at construction)."""
        slice_values = self._slice_values(dict(values or {}))
        maps = self.tracker.steps(slice_values)
        out: list = []
        ref = self.tracker.reference
        position = 0
        for element, kick, count in zip(self.sliced, self._kick_before, self._spec_counts,
                                        strict=True):
            if kick:
                piece = slice_values.get((element.name, "length"), element.params["length"])
                out.append(KickStep(piece * self._kick_factor, ref, self.bunch_charge_C,
                                    self.mesh,
                                    self.use_checkpoint, f"SC({element.name})", self.kind))
            for spec in self.tracker.specs[position:position + count]:
                if spec.reference is not None:
                    params: dict[str, nm.Scalar] = dict(spec.element.params)
                    params.update({f: v for (n, f), v in slice_values.items()
                                   if n == spec.element.name})
                    ref = spec.reference(params, ref)
            out.extend(maps[position:position + count])
            position += count
        return _fuse_linear(out)



def _fuse_linear(steps: list[Step | KickStep]) -> list[Step | KickStep]:
    """Multiply runs of consecutive linear steps (between kicks) into one matrix."""
    out: list = []
    for step in steps:
        if isinstance(step, LinearStep) and out and isinstance(out[-1], LinearStep):
            previous = out.pop()
            step = LinearStep(torch.matmul(step.matrix, previous.matrix),
                              f"{previous.label}+{step.label}")
        out.append(step)
    return out


def kick_settings(settings, prob_relative: float | None = None) -> KickSettings:
    """The in-house settings of a scenario's ``space_charge`` block for its kind
    (``prob_relative``: the mesh padding, by default the block's, else 1.1)."""
    if prob_relative is None:
        stated = getattr(settings, "prob_relative", None)
        prob_relative = DEFAULT_PROB_RELATIVE if stated is None else float(stated)
    kind = settings.kind
    if kind == "3d":
        return MeshSettings(tuple(settings.grid), settings.deposition, prob_relative)
    if kind in ("2d", "2p5d"):
        return s2.TransverseMesh((int(settings.grid[0]), int(settings.grid[1])),
                                 settings.deposition, prob_relative,
                                 int(settings.bins or 100), settings.longitudinal_kick is not False)
    if kind in ("gauss3d", "gauss2p5d"):
        # the settings of gauss2p5d alone are None for gauss3d: the defaults, unused there
        return s2.GaussSettings(int(settings.gauss_nint or 101),
                                float(settings.gauss_taylor_delta or 0.01),
                                int(settings.bins or 129), settings.gauss_long_scale,
                                settings.longitudinal_kick is not False)
    raise ValueError(f"space-charge kind must be one of {sorted(KICKS)}, got {kind!r}")


def build_space_charge_tracker(scenario, device: torch.device | str = "cpu",
                               dtype: torch.dtype = torch.float64, *,
                               parameters: Iterable[ParamKey] = (),
                               use_checkpoint: bool = False,
                               prob_relative: float | None = None,
                               split: str = "strang") -> SpaceChargeTracker:
    """The space-charge tracker of a scenario with a ``space_charge`` block of any kind.

    ``prob_relative`` is ImpactX's mesh padding (mesh extent / beam extent per axis, the
    mesh rule of :mod:`backends.inhouse.space_charge`); by default the scenario's
    ``space_charge.prob_relative`` where it states one, else 1.1, the value of the ImpactX
    runs of docs/conventions.md §4 -- the same rule as ``backends.impactx.
    mesh_prob_relative``, so both codes mesh the same box. A ``domain_sigmas`` (a +-k sigma
    grid) is not this mesh rule: the backend refuses it where no ``prob_relative`` is stated.
    The intensity is the bunch charge, or the beam current [A] for kind ``2d``.
    """
    settings = scenario.space_charge
    if settings is None:
        raise ValueError(f"scenario {scenario.name!r} has no space charge")
    mesh = kick_settings(settings, prob_relative)
    if settings.kind == "2d":
        charge = float(scenario.beam.current_A or 0.0)
    else:
        charge = scenario.beam.bunch_charge_C
    if not math.isfinite(charge):
        raise ValueError("bunch_charge_C must be finite")
    return SpaceChargeTracker(scenario.elements, scenario.reference_particle, charge,
                              settings.kicks_per_element, mesh, device=device, dtype=dtype,
                              parameters=parameters, use_checkpoint=use_checkpoint,
                              split=split, kind=settings.kind)
