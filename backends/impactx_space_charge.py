"""ImpactX's settings for each space-charge kind, as a pure function of the settings.

:func:`impactx_settings` turns a space-charge settings object (the scenario's
``space_charge`` block or anything with the same attributes) into the attribute values an
``impactx.ImpactX`` simulation takes before ``init_grids`` (``mesh``) and before each track
(``run``), so an adapter sets them in that order. What each kind needs (read from the wheel's
``impactx/examples`` and the sources named):

* ``3d``: ``space_charge = "3D"``, ``poisson_solver = "fft"``, ``n_cell = [nx, ny, nz]``.
* ``2d`` / ``2p5d``: ``space_charge = "2D"`` / ``"2p5D"``, ``poisson_solver = "fft"`` (the
  only solver for them, ``PoissonSolve.cpp``), ``n_cell = [nx, ny, 1]`` (one z cell:
  ``ForceFromSelfFields.cpp`` asserts "2D space charge requires exactly 1 slice in z") with
  ``blocking_factor_z = [1]`` (``examples/fodo_space_charge/run_fodo_2d_sc.py``); 2.5D adds
  ``space_charge_num_longitudinal_bins`` and ``space_charge_apply_longitudinal_kick``. The
  2D model's beam "charge" is the current [A] (``InitDistribution.cpp`` reads
  ``beam.current``): :attr:`ImpactXSpaceCharge.intensity` says which.
* ``gauss3d`` / ``gauss2p5d``: ``space_charge = "Gauss3D"`` / ``"Gauss2p5D"``, no mesh (but
  ``particle_shape`` must be set for ``init_grids``), ``space_charge_gauss_nint``; 2.5D adds
  ``space_charge_gauss_charge_z_bins``, ``space_charge_gauss_taylor_delta``,
  ``space_charge_gauss_long_scale`` (only when given) and
  ``space_charge_apply_longitudinal_kick``.

Mesh kinds also get ``particle_shape``, ``dynamic_size = True``, ``prob_relative`` and one
AMReX box per dimension (``blocking_factor_*`` the largest power of two dividing the cells,
``max_grid_size_*`` the cells: AMReX ``AmrMesh::checkInput``). Settings a kind cannot honour
are refused by name (:class:`Refused`), never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: ImpactX ``algo.space_charge`` name of each kind.
MODELS: dict[str, str] = {"3d": "3D", "2d": "2D", "2p5d": "2p5D", "gauss3d": "Gauss3D",
                          "gauss2p5d": "Gauss2p5D"}

#: ImpactX ``particle_shape`` per deposition name.
PARTICLE_SHAPES: dict[str, int] = {"cic": 1, "tsc": 2}

#: ``prob_relative`` where the settings give none (ImpactX examples' 1.1).
DEFAULT_PROB_RELATIVE = 1.1

#: Kinds solved on a mesh (the others are analytic).
MESH_KINDS = frozenset({"3d", "2d", "2p5d"})


@dataclass(frozen=True)
class Refused:
    """A setting ImpactX cannot run for this kind, by name."""

    reason: str


@dataclass(frozen=True)
class ImpactXSpaceCharge:
    """What to set on ``impactx.ImpactX``.

    Attributes:
        mesh: attributes to set before ``init_grids`` (name -> value).
        run: attributes to set before each ``track_particles``.
        intensity: ``"charge"`` (``add_particles`` / ``add_n_particles`` take the bunch
            charge [C]) or ``"current"`` (the 2D model: the beam current [A]).
    """

    mesh: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    intensity: str = "charge"


def _opt(settings: Any, name: str, default: Any) -> Any:
    value = getattr(settings, name, None)
    return default if value is None else value


def _box(cells: tuple[int, ...], blocking: tuple[int, ...] | None = None) -> dict[str, Any]:
    """``n_cell`` and the AMReX boxes: one box per axis (``blocking_factor`` the largest power
    of two dividing the cells, ``max_grid_size`` the cells), or, with ``blocking``, boxes of
    ``blocking`` cells per axis (``blocking_factor = max_grid_size``, as the benchmark's
    ``blocking_factor = n/2`` with AMReX's default ``max_grid_size`` 32 at 64 cells)."""
    out: dict[str, Any] = {"n_cell": list(cells)}
    for index, (axis, n) in enumerate(zip("xyz", cells, strict=True)):
        size = n if blocking is None else int(blocking[index])
        out[f"blocking_factor_{axis}"] = [size & -size]
        out[f"max_grid_size_{axis}"] = [size]
    return out


def impactx_settings(settings: Any) -> ImpactXSpaceCharge | Refused:
    """ImpactX's settings for ``settings`` (attributes: ``kind``, ``grid`` (2 or 3 cell
    counts), ``deposition``, ``prob_relative``, ``blocking_factor``, and per kind
    ``longitudinal_bins`` (also Gauss2p5D's ``gauss_charge_z_bins`` where that is not given),
    ``longitudinal_kick``, ``gauss_nint``, ``gauss_charge_z_bins``, ``gauss_taylor_delta``,
    ``gauss_long_scale``; missing or None ones take ImpactX's defaults)."""
    kind = getattr(settings, "kind", None)
    if kind not in MODELS:
        return Refused(f"space_charge.kind: {kind!r} is not one of {sorted(MODELS)}")
    if getattr(settings, "mesh_refinement", False):
        return Refused("space_charge.mesh_refinement: ImpactX's finer mesh levels are not "
                       "driven from a scenario (amr.max_level 0)")
    deposition = _opt(settings, "deposition", "cic")
    if deposition not in PARTICLE_SHAPES:
        return Refused(f"space_charge.deposition: {deposition!r} is not one of "
                       f"{sorted(PARTICLE_SHAPES)}")
    mesh: dict[str, Any] = {"particle_shape": PARTICLE_SHAPES[deposition]}
    run: dict[str, Any] = {"space_charge": MODELS[kind]}
    if kind in MESH_KINDS:
        grid = tuple(int(n) for n in _opt(settings, "grid", (32, 32, 32)))
        if kind == "3d":
            if len(grid) != 3:
                return Refused("space_charge.grid: kind 3d needs three cell counts")
            cells = grid
        elif kind == "2p5d" and len(grid) == 3:
            # ImpactX deposits 2p5D on the 3D mesh and sums it over z (flatten_charge_to_2D):
            # nz > 1 gives the same kick (measured 9e-15 at 32^3 against 32^2 x 1)
            cells = grid
        else:
            if len(grid) == 3 and grid[2] != 1:
                return Refused(f"space_charge.grid: kind {kind} solves on one z cell "
                               f"(ImpactX n_cell [nx, ny, 1]); got nz = {grid[2]}")
            cells = (grid[0], grid[1], 1)
        if min(cells[:2]) < 2:
            return Refused("space_charge.grid: at least 2 cells per transverse axis")
        prob_relative = float(_opt(settings, "prob_relative", DEFAULT_PROB_RELATIVE))
        if prob_relative < 1.0:
            return Refused("space_charge.prob_relative: must be >= 1")
        blocking = getattr(settings, "blocking_factor", None)
        if blocking is not None:
            blocking = tuple(int(b) for b in blocking)
            for n, b in zip(cells, blocking, strict=True):
                if b < 1 or b & (b - 1) or n % b:
                    return Refused(f"space_charge.blocking_factor: powers of two dividing the "
                                   f"cells per axis; got {list(blocking)} for {list(cells)}")
        mesh.update(_box(cells, blocking))
        mesh.update({"max_level": 0, "dynamic_size": True, "prob_relative": [prob_relative]})
        run.update({"poisson_solver": "fft", "dynamic_size": True,
                    "prob_relative": [prob_relative]})
    else:
        # a mesh setting on an analytic kind is refused (the schema should not accept a
        # grid for these kinds either; a default grid cannot be told from a stated one here)
        if getattr(settings, "prob_relative", None) is not None:
            return Refused(f"space_charge.prob_relative: kind {kind} is analytic (no mesh)")
        run["space_charge_gauss_nint"] = int(_opt(settings, "gauss_nint", 101))
    if kind == "2p5d":
        run["space_charge_num_longitudinal_bins"] = int(
            _opt(settings, "longitudinal_bins", 100))
    if kind == "gauss2p5d":
        run["space_charge_gauss_charge_z_bins"] = int(_opt(
            settings, "gauss_charge_z_bins", _opt(settings, "longitudinal_bins", 129)))
        run["space_charge_gauss_taylor_delta"] = float(
            _opt(settings, "gauss_taylor_delta", 0.01))
        long_scale = getattr(settings, "gauss_long_scale", None)
        if long_scale is not None:
            run["space_charge_gauss_long_scale"] = float(long_scale)
    if kind in ("2p5d", "gauss2p5d"):
        run["space_charge_apply_longitudinal_kick"] = bool(
            _opt(settings, "longitudinal_kick", True))
    elif getattr(settings, "longitudinal_kick", None) is False:
        return Refused(f"space_charge.longitudinal_kick: kind {kind} has no switch for it "
                       "(only 2p5d and gauss2p5d)")
    return ImpactXSpaceCharge(mesh=mesh, run=run,
                              intensity="current" if kind == "2d" else "charge")


def apply(sim: Any, values: dict[str, Any]) -> None:
    """Set ``values`` (``ImpactXSpaceCharge.mesh`` or ``.run``) on an ImpactX simulation;
    ``blocking_factor_*`` before ``max_grid_size_*`` (the former also sets the latter)."""
    for name in sorted(values, key=lambda key: key.startswith("max_grid_size")):
        setattr(sim, name, values[name])
