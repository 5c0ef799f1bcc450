"""ImpactX adapter: a scenario's flat element list -> ImpactX element maps, particles in and out.

Element translation, per effective tier (ImpactX ``src/elements/*.H``, ``pals_to_impactx.py``
and ``element_models.py`` of the installed wheel):

=============  ===========  ===================================================================
harness kind   tier         ImpactX elements (in order)
=============  ===========  ===================================================================
Drift          lin/par/ex   ``Drift`` / ``ChrDrift`` / ``ExactDrift`` (``ds``)
Quadrupole     lin/par/ex   ``Quad`` / ``ChrQuad`` / ``ExactQuad`` (``k`` = Kn1 [1/m^2], unit 0)
Quadrupole+    par/ex       ``ChrQuad`` / ``ExactQuad`` (``k`` = Kn1 field_rigidity [T/m], unit
field_rigidity              1: divided by the local rigidity; linear: unsupported, Quad has no
                            unit)
SBend          linear       ``DipEdge(psi=e1, g=2 edge_int1, K2=1)``, ``Sbend(rc = length/angle)``
                            (``CFbend(rc, k=Kn1)`` with Kn1), ``DipEdge(psi=e2, ...)``
SBend          exact        ``DipEdge(e1)``, ``ExactSbend(phi = angle in DEGREES)``
                            (``ExactCFbend(k_normal=[angle/length, Kn1, ..., Kn4], k_skew=
                            [0, Ks1, ..., Ks4])`` with components; the linear tier: Kn1 only),
                            ``DipEdge(e2)``
Sextupole      exact        ``ExactMultipole(k_normal=[0, 0, Kn2, ...], k_skew=[0, 0, Ks2, ...])``
                            (index = order N, per metre; every component of the element)
Octupole       exact        ``ExactMultipole(k_normal=[0, 0, 0, Kn3, ...], ...)`` (as Sextupole;
                            ImpactX's own MAD-X reader builds an octupole so)
Quadrupole+KnN exact        ``ExactMultipole`` of every component (other tiers: unsupported)
Multipole      thin         one ``Multipole(multipole=N+1, K_normal=KnNL, K_skew=KsNL)`` per order
                            N (ImpactX index m=1 dipole, 2 quadrupole, 3 sextupole; the kick
                            -Re/Im[(Kn + i Ks)(x + i y)^N]/N! is MAD-X's KNL/KSL convention);
                            ``Marker`` when every component is zero
Solenoid       linear       ``Sol(ks = Ksol)``
RFCavity       thin         ``ShortRF(V = |q| voltage / m c^2, freq, phase = phase in DEGREES)``
Instrument     any          drift of its tier when it has a length, else ``Marker``
Marker         any          ``Marker`` (ImpactX's named element that does nothing)
Aperture       any          ``Aperture(aperture_x, aperture_y, shape, action, repeat_x,
                            repeat_y, shift_odd_x, dx, dy, rotation in DEGREES)``
Kicker         any          ``Kicker(xkick=-Kn0L, ykick=Ks0L, unit="dimensionless")``, between
                            two drift halves of its tier when it has a length
ImpactX.<X>    any          ImpactX's own ``<X>`` (extension kinds, ``docs/scenario-format.md``):
                            ``ConstF(ds, kx, ky, kt)``, ``ChrAcc(ds, ez, bz)``,
                            ``ChrPlasmaLens(ds, k, unit=0)``, ``TaperedPL(k=kL, taper, unit=0)``,
                            ``NonlinearLens(knll, cnll)``, ``ThinDipole(theta = angle in
                            DEGREES, rc)``, ``Buncher(V, k)``, ``LinearMap(R, ds)``,
                            ``PRot(phi_in, phi_out in DEGREES)``, ``PlaneXYRot(angle in DEGREES)``,
                            ``RFCavity(ds, escale, freq, phase in DEGREES, cos_coefficients,
                            sin_coefficients, mapsteps, nslice)``,
                            ``SoftQuadrupole(ds, gscale, cos_coefficients, sin_coefficients,
                            mapsteps)``, ``SoftSolenoid(ds, bscale, ..., unit=0)``
                            ``PolygonAperture(vertices_x, vertices_y, min_radius2, action,
                            repeat_x, repeat_y, shift_odd_x, dx, dy, rotation)``
                            ``ExactSbend(ds, phi in DEGREES, B)``, ``DipEdge(psi, rc, g, R,
                            K0..K6, model, location)``
                            ``ExactMultipole(ds, k_normal=[Kn0, ...], k_skew=[Ks0, ...], unit=0)``
                            (as Sextupole), ``SpinMap(v, A)`` (``Vector3``, ``Map3x6``),
                            ``QuadEdge(k, unit=0, flag = "entry" / "exit")``
=============  ===========  ===================================================================

A thick element's pipe aperture (``aperture_x``, ``aperture_y`` [m], a PALS ``ApertureP``
with ``location: EVERYWHERE``) is the same arguments of its ImpactX element (of a bend, its
body's, not its edges'): ImpactX checks it after the push of every slice, in the element's
own frame (``src/elements/mixin/beamoptic.H``).

Body offsets and rotation (``x_offset``, ``y_offset``, ``z_rot``) become ImpactX's ``dx``,
``dy``, ``rotation`` [deg] (``src/elements/mixin/alignment.H``); a bend's ``tilt_ref``
becomes the ``rotation`` of its edges and body. Which fields ImpactX honours per kind is
:data:`HONOURED_FIELDS`; any other field makes the case ``unsupported``, named. Edges use
ImpactX's linear ``DipEdge``, with the gap term ``g K2 = 2 edge_int`` (``DipEdge.H``: the
vertical focusing ``g K2 (1 + sin^2 psi) / (rc^2 cos^3 psi)``); an edge with zero angle and
zero fringe integral is the identity and is left out. A bend with a zero
angle is the drift (quadrupole with Kn1) of its tier. Exact integrators run ``nslice *
mapsteps`` steps of order ``int_order`` (2, 4 or 6). With space charge, every element gets
``nslice = kicks_per_element`` (ImpactX applies one space-charge kick per slice).

ImpactX keeps its whole state (AMReX, the beam, the lattice, ``ParmParse`` settings) in one
process-wide simulation object. AMReX is initialised once per process by the first
:meth:`ImpactXBackend.prepare` and finalised at interpreter exit. Every prepared scenario
shares that object: :meth:`ImpactXPrepared.inject` loads its settings, lattice and particles
into it, so only the most recently injected beam can be run or extracted (the others raise
``RuntimeError``). ImpactX fixes the space-charge mesh (``n_cell``, particle shape) when its
grids are built (one AMReX box per dimension, with the blocking factors of
:func:`blocking_factors`, so any cell count runs, or the scenario's ``blocking_factor``
boxes; each kind's settings are :func:`backends.impactx_space_charge.impactx_settings`'s,
and kind ``2d`` takes the beam current as its intensity); a scenario that needs a different mesh
re-creates the simulation object
(AMReX is finalised and initialised again, which ImpactX supports in one process). Any other
``ImpactX.finalize()`` in the process also finalises AMReX under the shared object; that is
detected (``amrex.initialized()``) and a fresh object is built on the next use, while the
dangling one is kept alive, because destroying it would free memory of AMReX arenas that no
longer exist.

Particles lost in an aperture are removed from ImpactX's beam; :meth:`ImpactXPrepared.extract`
returns them as rows of NaN (matched by ImpactX's particle ids), so the output always has
the injected shape and order. (ImpactX keeps lost particles in its own container, which this
adapter cannot empty: repeated runs with losses keep them in memory until exit.)
"""

from __future__ import annotations

import atexit
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from backends.base import (
    Availability,
    Backend,
    Plan,
    Prepared,
    Unsupported,
    field_table,
    final_particles,
    model_signature,
    package_version,
)
from backends.impactx_space_charge import (
    DEFAULT_PROB_RELATIVE,
    MODELS,
    ImpactXSpaceCharge,
    Refused,
    impactx_settings,
)
from backends.impactx_space_charge import apply as apply_settings
from backends.translation import (
    ALIGNMENT_FIELDS,
    CFBEND_FIELDS,
    aperture_limits,
    around_kick,
    bend_edges,
    exact_tier_multipoles,
    multipole_orders,
)
from harness.model.kinds import (
    APERTURE_OPTIONS,
    EXTENSION_KINDS,
    FIELD_RIGIDITY,
    PIPE_APERTURE,
    PIPE_APERTURE_KINDS,
    POLYGON_APERTURE,
    SPECS,
)
from harness.model.lattice import (
    Element,
    polygon_vertices,
    profile_coefficients,
    rotated_normal,
    thick_multipoles,
)
from harness.model.vocabulary import ELEMENT_TIERS, tier_rank

if TYPE_CHECKING:
    from harness.model.reference_particle import ReferenceParticle
    from harness.model.scenario import Scenario

#: PyPI distributions that provide the ``impactx`` module (the sequential CPU wheel and the
#: accelerated builds); conda-forge installs the module without a PyPI distribution.
IMPACTX_DISTRIBUTIONS: tuple[str, ...] = ("impactx-noacc", "impactx")

#: ImpactX ``particle_shape`` (B-spline order of deposition and gather) per deposition name.
PARTICLE_SHAPES: dict[str, int] = {"cic": 1, "tsc": 2}

#: Mesh extent as a multiple of the beam's maximum extent (ImpactX ``prob_relative``, dynamic
#: mesh) where the scenario states none; 1.1 is the value of ImpactX ``examples/
#: expanding_beam`` (finest level).
PROB_RELATIVE: float = DEFAULT_PROB_RELATIVE


def mesh_prob_relative(space_charge: Any) -> float:
    """The scenario's ``space_charge.prob_relative`` (mesh extent / beam extent per axis),
    else :data:`PROB_RELATIVE` (:func:`space_charge_settings`)."""
    value = getattr(space_charge, "prob_relative", None)
    return PROB_RELATIVE if value is None else float(value)


def mesh_note(space_charge: Any) -> str:
    """What ImpactX's space-charge model is for this scenario, for the case's support note."""
    kind = space_charge.kind
    if space_charge.grid is None:
        return f"space charge {MODELS[kind]} (analytic Gaussian field, no mesh)"
    cells = "x".join(map(str, space_charge.grid))
    note = (f"space charge {MODELS[kind]}, mesh {cells} over prob_relative "
            f"{mesh_prob_relative(space_charge):g} x the beam's extent per axis (ImpactX's "
            "dynamic mesh)")
    if space_charge.domain_sigmas is not None:
        note += (f"; space_charge.domain_sigmas {space_charge.domain_sigmas:g} is the +-k "
                 "sigma mesh of Cheetah, not ImpactX's")
    if space_charge.blocking_factor is not None:
        note += (f"; AMReX boxes of {'x'.join(map(str, space_charge.blocking_factor))} "
                 "cells")
    return note


#: Largest cells per mesh dimension ImpactX is given here (AMReX box indices are ``int``;
#: far above the schema's 1024, so a grid beyond it is refused rather than overflowed).
MAX_CELLS_PER_DIM: int = 2**20


def blocking_factors(grid: tuple[int, int, int]) -> tuple[int, int, int] | Unsupported:
    """AMReX ``amr.blocking_factor_{x,y,z}`` for a space-charge mesh of ``grid`` cells: per
    dimension the largest power of two dividing its cell count, with one box per dimension
    (``amr.max_grid_size_{x,y,z}`` = the cell count); or :class:`Unsupported` naming why.

    AMReX (``Src/AmrCore/AMReX_AmrMesh.cpp``, ``AmrMesh::checkInput``) requires a blocking
    factor that is a power of two and divides both the level-0 domain length and
    ``max_grid_size`` (both checks apply where the blocking factor is <= max_grid_size); its
    default of 8 therefore aborts ``init_grids`` for e.g. a 20-cell dimension ("domain size
    not divisible by blocking_factor"). ImpactX's own ``examples/expanding_beam`` runs 16 x
    16 x 20 cells with ``blocking_factor_z = 4``. One box per dimension holds the whole mesh
    in one process (ImpactX's single-process examples set ``max_grid_size`` >= ``n_cell`` for
    the same reason); the largest power of two dividing any ``n >= 1`` is ``n & -n``, so
    every grid of >= 1 cell up to :data:`MAX_CELLS_PER_DIM` per dimension decomposes."""
    for axis, cells in zip("xyz", grid, strict=True):
        if not 1 <= cells <= MAX_CELLS_PER_DIM:
            return Unsupported(f"space_charge.grid: {cells} cells along {axis} cannot be an "
                               f"AMReX domain for ImpactX (1 to {MAX_CELLS_PER_DIM} cells per "
                               "dimension)")
    return (grid[0] & -grid[0], grid[1] & -grid[1], grid[2] & -grid[2])


def _impactx_version() -> str | None:
    """``impactx.__version__`` when the module imports, else the distribution's version."""
    try:
        import impactx
    except Exception:  # noqa: BLE001 - any import failure means unavailable
        return next((v for d in IMPACTX_DISTRIBUTIONS if (v := package_version(d))), None)
    return str(getattr(impactx, "__version__", "")) or next(
        (v for d in IMPACTX_DISTRIBUTIONS if (v := package_version(d))), "unknown")


def build_info() -> dict[str, Any]:
    """ImpactX's build configuration (``impactx.Config``): GPU backend, OpenMP, precision."""
    import impactx

    config = impactx.Config
    return {
        "gpu_backend": config.gpu_backend,
        "have_gpu": bool(config.have_gpu),
        "have_omp": bool(config.have_omp),
        "have_mpi": bool(config.have_mpi),
        "precision_particles": str(config.precision_particles),
    }


def native_device() -> str:
    """The device ImpactX tracks on: ``cuda`` for a CUDA build, else ``cpu``."""
    info = build_info()
    return "cuda" if info["have_gpu"] and str(info["gpu_backend"]).upper() == "CUDA" else "cpu"


def native_dtype() -> str:
    """The dtype of ImpactX's particle data in this build (``float64`` for DOUBLE)."""
    return "float64" if build_info()["precision_particles"].upper() == "DOUBLE" else "float32"


def tracking_threads() -> int:
    """Threads ImpactX tracks with: OpenMP threads for an OpenMP build, else 1."""
    if not build_info()["have_omp"]:
        return 1
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- translation


@dataclass(frozen=True)
class ElementSpec:
    """One ImpactX element to build: class name in ``impactx.elements`` and its arguments."""

    cls: str
    kwargs: dict[str, Any]

    def build(self, elements_module: Any) -> Any:
        """The ImpactX element (needs AMReX initialised: some elements allocate arenas)."""
        return getattr(elements_module, self.cls)(**self.kwargs)


def _pipe(element: Element) -> dict[str, Any]:
    """ImpactX's pipe aperture of a thick element (``src/elements/mixin/pipeaperture.H``):
    ``aperture_x``, ``aperture_y`` [m] when the element has one (PALS ``ApertureP``,
    :func:`harness.model.lattice.pipe_aperture`)."""
    p = element.params
    if "aperture_x" not in p:
        return {}
    return {"aperture_x": float(p["aperture_x"]), "aperture_y": float(p["aperture_y"])}


def _thick(element: Element, nslice: int, exact: bool = False) -> dict[str, Any]:
    """Common keyword arguments of thick elements: name, slices, the pipe aperture
    (:func:`_pipe`) and, for the integrated exact elements (``ExactQuad``,
    ``ExactMultipole``, ``ExactCFbend``), the integrator's steps per slice and order
    (``mapsteps``, ``int_order``)."""
    kwargs: dict[str, Any] = {"name": element.name, "nslice": nslice, **_pipe(element)}
    if exact:
        kwargs["mapsteps"] = element.mapsteps
        kwargs["int_order"] = element.int_order
    return kwargs


def _aligned(element: Element, rotation_field: str = "z_rot", turn: float = 0.0
             ) -> dict[str, Any]:
    """ImpactX alignment arguments (``src/elements/mixin/alignment.H``): ``dx``, ``dy`` [m]
    from the body offsets and ``rotation`` [degrees] from ``rotation_field`` [rad] plus
    ``turn`` [rad] (the rotation of a skew component, :func:`harness.model.lattice.
    rotated_normal`); only those that are set."""
    p = element.params
    out: dict[str, Any] = {}
    if "x_offset" in p:
        out["dx"] = float(p["x_offset"])
    if "y_offset" in p:
        out["dy"] = float(p["y_offset"])
    rotation = float(p.get(rotation_field, 0.0)) + turn
    if rotation != 0.0:
        out["rotation"] = math.degrees(rotation)
    return out


def _exact_multipole(element: Element, nslice: int) -> ElementSpec:
    """``ExactMultipole`` of every multipole component of a thick element (index = order
    N, per metre, ``src/elements/ExactMultipole.H``)."""
    poles = thick_multipoles(element.params)
    top = max(poles)
    return ElementSpec("ExactMultipole", {
        "ds": element.length,
        "k_normal": [float(poles.get(n, (0.0, 0.0))[0]) for n in range(top + 1)],
        "k_skew": [float(poles.get(n, (0.0, 0.0))[1]) for n in range(top + 1)],
        "unit": 0, **_aligned(element), **_thick(element, nslice, True)})


def _quadrupole(element: Element, reference: ReferenceParticle, nslice: int) -> list[ElementSpec]:
    """A quadrupole; a skew component Ks1 makes it the normal quadrupole of strength
    hypot(Kn1, Ks1) rotated by -atan2(Ks1, Kn1)/2 (exact for a pure quadrupole field);
    other multipole components make it an ``ExactMultipole`` (exact tier only)."""
    if set(thick_multipoles(element.params)) != {1}:
        return [_exact_multipole(element, nslice)]
    k, turn = rotated_normal(float(element.params["Kn1"]),
                             float(element.params.get("Ks1", 0.0)), 1)
    if FIELD_RIGIDITY in element.params:
        # the field gradient [T/m], which ImpactX divides by the local rigidity (unit 1)
        refused = field_rigidity_refusal(element)
        if refused is not None:
            raise ValueError(refused.reason)
        field = k * float(element.params[FIELD_RIGIDITY])
        return [_quad(element, element.tier, nslice, field, _aligned(element, turn=turn), 1)]
    return [_quad(element, element.tier, nslice, k, _aligned(element, turn=turn))]


def field_rigidity_refusal(element: Element) -> Unsupported | None:
    """Unsupported for a quadrupole whose field is held against the local rigidity
    (``field_rigidity``) at the linear tier: ImpactX's ``Quad`` takes k [1/m^2] only (no
    ``unit``, ``src/elements/Quad.H``), ``ChrQuad`` and ``ExactQuad`` take unit 1."""
    if element.kind != "Quadrupole" or FIELD_RIGIDITY not in element.params \
            or element.tier != "linear":
        return None
    return Unsupported(f"Quadrupole field {FIELD_RIGIDITY!r} ({element.name}): a gradient "
                       "held as a field in a lattice that changes the reference energy needs "
                       "ImpactX's unit 1, which its linear Quad does not take; use model "
                       "'paraxial' or 'exact' (ChrQuad, ExactQuad)")


def _drift(element: Element, tier: str, nslice: int, length: float | None = None,
           name: str | None = None, align: dict[str, Any] | None = None) -> ElementSpec:
    cls = {"linear": "Drift", "paraxial": "ChrDrift", "exact": "ExactDrift"}[tier]
    ds = element.length if length is None else length
    return ElementSpec(cls, {"ds": ds, **(align or {}), **_thick(element, nslice),
                             **({"name": name} if name else {})})


def _quad(element: Element, tier: str, nslice: int, k: float,
          align: dict[str, Any] | None = None, unit: int = 0) -> ElementSpec:
    """Thick quadrupole, ``k`` [1/m^2] (MAD-X K1; ImpactX ``unit=0``), or with ``unit`` 1
    the gradient [T/m] that ImpactX divides by the local rigidity (ChrQuad, ExactQuad)."""
    base = {"ds": element.length, "k": k, **(align or {})}
    if tier == "linear":
        return ElementSpec("Quad", {**base, **_thick(element, nslice)})
    if tier == "paraxial":
        return ElementSpec("ChrQuad", {**base, "unit": unit, **_thick(element, nslice)})
    return ElementSpec("ExactQuad", {**base, "unit": unit, **_thick(element, nslice, True)})


def _bend(element: Element, nslice: int) -> list[ElementSpec]:
    """Edges and body; ``tilt_ref`` rotates all three (ImpactX ``rotation``, MAD-X TILT of
    a bend); ``edge_int`` gives the edge gap g = 2 edge_int with K2 = 1 (only g K2 =
    2 FINT HGAP enters the linear DipEdge, as ImpactX's MAD-X reader sets g = 2 HGAP,
    K2 = FINT)."""
    p = element.params
    length, angle = element.length, float(p["angle"])
    k1 = p.get("Kn1")
    exact = element.tier == "exact"
    tilt = _aligned(element, "tilt_ref")
    if angle == 0.0:
        if k1 is not None:
            return [_quad(element, element.tier, nslice, float(k1), tilt)]
        return [_drift(element, element.tier, nslice)]
    rc = length / angle
    poles = thick_multipoles(p)
    if poles and exact:
        top = max(poles)
        body = ElementSpec("ExactCFbend", {
            "ds": length,
            "k_normal": [angle / length, *(float(poles.get(n, (0.0, 0.0))[0])
                                           for n in range(1, top + 1))],
            "k_skew": [0.0, *(float(poles.get(n, (0.0, 0.0))[1]) for n in range(1, top + 1))],
            "unit": 0, **tilt, **_thick(element, nslice, True)})
    elif k1 is not None:
        body = ElementSpec("CFbend", {"ds": length, "rc": rc, "k": float(k1), **tilt,
                                      **_thick(element, nslice)})
    elif exact:
        body = ElementSpec("ExactSbend", {"ds": length, "phi": math.degrees(angle), **tilt,
                                          **_thick(element, nslice)})
    else:
        body = ElementSpec("Sbend", {"ds": length, "rc": rc, **tilt,
                                     **_thick(element, nslice)})

    edges = {face: ElementSpec("DipEdge", {
        "name": f"{element.name}.e{face}", "psi": psi, "rc": rc, "g": 2.0 * edge_int,
        "K2": 1.0, "model": "linear", "location": "entry" if face == "1" else "exit",
        **tilt}) for face, psi, edge_int in bend_edges(p)}
    return [*([edges["1"]] if "1" in edges else []), body,
            *([edges["2"]] if "2" in edges else [])]


def _marker(element: Element) -> ElementSpec:
    """ImpactX ``Marker`` (``src/elements/Marker.H``: a named element that does nothing).
    Every harness element becomes at least one ImpactX element, so a lattice of markers or
    zero-strength thin elements is a lattice, not an empty one (ImpactX refuses to track
    through zero elements)."""
    return ElementSpec("Marker", {"name": element.name})


def _multipole(element: Element, reference: ReferenceParticle, nslice: int) -> list[ElementSpec]:
    """One ImpactX ``Multipole`` per non-zero order; a multipole without one is a marker."""
    kicks = [ElementSpec("Multipole", {"name": element.name, "multipole": n + 1,
                                       "K_normal": kn, "K_skew": ks, **_aligned(element)})
             for n, (kn, ks) in multipole_orders(element.params).items()
             if kn != 0.0 or ks != 0.0]
    return kicks or [_marker(element)]


def _short_rf(element: Element, reference: ReferenceParticle, nslice: int) -> list[ElementSpec]:
    """ImpactX ``ShortRF``: ``V`` = max energy gain / (m c^2), phase in degrees
    (``src/elements/ShortRF.H``: 0 on crest, -90 bunching)."""
    p = element.params
    v = abs(reference.charge_qe) * float(p["voltage"]) / reference.mass_eV
    return [ElementSpec("ShortRF", {"name": element.name, "V": v,
                                    "freq": float(p["frequency"]),
                                    "phase": math.degrees(float(p["phase"]))})]


def _kicker(element: Element, reference: ReferenceParticle, nslice: int) -> list[ElementSpec]:
    """ImpactX ``Kicker`` (``src/elements/Kicker.H``: px += xkick, py += ykick, unit
    ``dimensionless``) with xkick = -Kn0L, ykick = +Ks0L (MAD-X KNL/KSL signs); a thick
    kicker is the kick between two drift halves of its tier."""
    kick = ElementSpec("Kicker", {"name": element.name, "xkick": -float(element.params["Kn0L"]),
                                  "ykick": float(element.params["Ks0L"]),
                                  "unit": "dimensionless", **_aligned(element)})
    return around_kick(element.length, [kick], lambda side: [_drift(
        element, element.tier, nslice, 0.5 * element.length, f"{element.name}.{side}")])


def _aperture_options(element: Element) -> dict[str, Any]:
    """ImpactX's aperture options (``src/elements/Aperture.H``, ``PolygonAperture.H``) of an
    ``Aperture`` or ``ImpactX.PolygonAperture``: ``action``, ``repeat_x``, ``repeat_y`` [m],
    ``shift_odd_x`` and the alignment ``dx``, ``dy`` [m], ``rotation`` [deg]."""
    p = element.params
    return {"action": "absorb" if float(p.get("absorb", 0.0)) else "transmit",
            "repeat_x": float(p.get("repeat_x", 0.0)),
            "repeat_y": float(p.get("repeat_y", 0.0)),
            "shift_odd_x": bool(float(p.get("shift_odd_x", 0.0))), **_aligned(element)}


def _aperture(element: Element, reference: ReferenceParticle, nslice: int) -> list[ElementSpec]:
    a, b, elliptical = aperture_limits(element.params)
    return [ElementSpec("Aperture", {
        "name": element.name, "aperture_x": a, "aperture_y": b,
        "shape": "elliptical" if elliptical else "rectangular",
        **_aperture_options(element)})]


def _thick_multipole(element: Element, reference: ReferenceParticle, nslice: int
                     ) -> list[ElementSpec]:
    """A Sextupole or Octupole: ``ExactMultipole`` of every component (ImpactX has only the
    exact tier of both; ``madx_to_impactx.py`` builds them so)."""
    return [_exact_multipole(element, nslice)]


def _linear_map_matrix(params: dict[str, Any]) -> Any:
    """ImpactX ``Map6x6`` (1-based) of a LinearMap's entries ``Rij`` (built when the
    element is, ImpactX imported then)."""
    from impactx import Map6x6

    matrix = Map6x6.identity()
    for i in range(1, 7):
        for j in range(1, 7):
            matrix[i, j] = float(params[f"R{i}{j}"])
    return matrix


@dataclass(frozen=True)
class _LinearMapSpec(ElementSpec):
    """``LinearMap``: its ``R`` is an ImpactX ``Map6x6``, made at build time."""

    def build(self, elements_module: Any) -> Any:
        kwargs = dict(self.kwargs)
        kwargs["R"] = _linear_map_matrix(kwargs.pop("entries"))
        return elements_module.LinearMap(**kwargs)


def _soft(element: Element, nslice: int, scale: str) -> dict[str, Any]:
    """``SoftQuadrupole``/``SoftSolenoid``/``RFCavity`` arguments (``src/elements/SoftQuad.H``,
    ``SoftSol.H``, ``RFCavity.H``): the field scale ``scale``, the profile's coefficients,
    ``nslice`` and ``mapsteps`` (the map integrates nslice * mapsteps steps along the
    profile)."""
    cos, sin = profile_coefficients(element.params)
    return {"ds": element.length, scale: float(element.params[scale]),
            "cos_coefficients": [float(v) for v in cos],
            "sin_coefficients": [float(v) for v in sin],
            "nslice": nslice, "mapsteps": element.mapsteps, **_pipe(element)}


#: ``ImpactX.DipEdge``'s numbers, under ImpactX's names.
_DIPEDGE_FIELDS = ("psi", "rc", "g", "R", "K0", "K1", "K2", "K3", "K4", "K5", "K6")


@dataclass(frozen=True)
class _SpinMapSpec(ElementSpec):
    """``SpinMap`` (``src/elements/SpinMap.H``): its ``v`` is an ImpactX ``Vector3`` and its
    ``A`` a ``Map3x6`` (1-based), made at build time from the element's ``v1..v3`` and
    ``A11..A36``."""

    def build(self, elements_module: Any) -> Any:
        from impactx import Map3x6, Vector3

        kwargs = dict(self.kwargs)
        entries = kwargs.pop("entries")
        vector, matrix = Vector3(), Map3x6()
        for i in range(1, 4):
            vector[i] = float(entries[f"v{i}"])
            for j in range(1, 7):
                matrix[i, j] = float(entries[f"A{i}{j}"])
        return elements_module.SpinMap(v=vector, A=matrix, **kwargs)


def _extension(element: Element, reference: ReferenceParticle, nslice: int
               ) -> list[ElementSpec]:
    """An ``ImpactX.<X>`` extension kind: ImpactX's own element ``<X>`` (``src/elements/
    <X>.H``), its fields under ImpactX's names; angles in degrees; the thick ones
    (ConstF, ChrAcc, ChrPlasmaLens, SoftQuadrupole, SoftSolenoid) take ``nslice``."""
    p = element.params
    cls = element.kind.removeprefix("ImpactX.")
    base: dict[str, Any] = {"name": element.name}
    if cls == "PRot":
        return [ElementSpec(cls, {**base, "phi_in": math.degrees(float(p["phi_in"])),
                                  "phi_out": math.degrees(float(p["phi_out"]))})]
    if cls == "PlaneXYRot":
        return [ElementSpec(cls, {**base, "angle": math.degrees(float(p["angle"]))})]
    if cls == "PolygonAperture":
        xs, ys = polygon_vertices(p)
        return [ElementSpec(cls, {**base, "vertices_x": [float(v) for v in xs],
                                  "vertices_y": [float(v) for v in ys],
                                  "min_radius2": float(p["min_radius2"]),
                                  **_aperture_options(element)})]
    if cls == "SpinMap":
        return [_SpinMapSpec(cls, {**base, "entries": {
            k: float(v) for k, v in p.items() if k[0] in "vA"}})]
    if cls == "ExactMultipole":
        return [_exact_multipole(element, nslice)]
    base.update(_aligned(element))
    if cls == "QuadEdge":
        return [ElementSpec(cls, {**base, "k": float(p["k"]), "unit": 0,
                                  "flag": "entry" if float(p["flag"]) > 0 else "exit"})]
    if cls == "LinearMap":
        return [_LinearMapSpec(cls, {**base, "ds": element.length, "entries": {
            k: float(v) for k, v in p.items() if k.startswith("R")}})]
    thick: dict[str, Any] = {"ds": element.length, "nslice": nslice, **_pipe(element)}
    kwargs: dict[str, Any] = {
        "ConstF": lambda: {**thick, "kx": float(p["kx"]), "ky": float(p["ky"]),
                           "kt": float(p["kt"])},
        "ChrAcc": lambda: {**thick, "ez": float(p["ez"]), "bz": float(p["bz"])},
        "ChrPlasmaLens": lambda: {**thick, "k": float(p["k"]), "unit": 0},
        "TaperedPL": lambda: {"k": float(p["kL"]), "taper": float(p["taper"]), "unit": 0},
        "NonlinearLens": lambda: {"knll": float(p["knll"]), "cnll": float(p["cnll"])},
        "ThinDipole": lambda: {"theta": math.degrees(float(p["angle"])),
                               "rc": float(p["rc"])},
        "Buncher": lambda: {"V": float(p["V"]), "k": float(p["k"])},
        "SoftQuadrupole": lambda: _soft(element, nslice, "gscale"),
        "SoftSolenoid": lambda: {**_soft(element, nslice, "bscale"), "unit": 0},
        "RFCavity": lambda: {**_soft(element, nslice, "escale"), "freq": float(p["freq"]),
                             "phase": math.degrees(float(p["phase"]))},
        "ExactSbend": lambda: {**thick, "phi": math.degrees(float(p["phi"])),
                               "B": float(p["B"])},
        "DipEdge": lambda: {**{key: float(p[key]) for key in _DIPEDGE_FIELDS},
                            "model": "nonlinear" if p["nonlinear"] else "linear",
                            "location": "exit" if p["exit"] else "entry"},
    }[cls]()
    return [ElementSpec(cls, {**base, **kwargs})]


#: harness kind -> translator ``(element, reference particle, nslice) -> ImpactX specs``.
TRANSLATORS: dict[str, Any] = {
    "Drift": lambda e, ref, n: [_drift(e, e.tier, n, align=_aligned(e))],
    "Instrument": lambda e, ref, n: [_drift(e, e.tier, n)] if e.length != 0.0 else [_marker(e)],
    "Marker": lambda e, ref, n: [_marker(e)],
    "Quadrupole": _quadrupole,
    "SBend": lambda e, ref, n: _bend(e, n),
    "Sextupole": _thick_multipole,
    "Octupole": _thick_multipole,
    "Multipole": _multipole,
    "Solenoid": lambda e, ref, n: [ElementSpec("Sol", {
        "ds": e.length, "ks": float(e.params["Ksol"]), **_aligned(e), **_thick(e, n)})],
    "RFCavity": _short_rf,
    "Aperture": _aperture,
    "Kicker": _kicker,
    **{kind: _extension for kind in sorted(EXTENSION_KINDS)},
}

_ALIGNED = tuple(sorted(ALIGNMENT_FIELDS))
_PIPE = tuple(PIPE_APERTURE)
_MULTIPOLES = ("Kn*", "Ks*", *_ALIGNED, *_PIPE)
#: Optional fields of extension kinds besides the alignment.
_EXTENSION_EXTRA = {"ImpactX.LinearMap": ("R*",), "ImpactX.SoftQuadrupole": ("sin*",),
                    "ImpactX.SoftSolenoid": ("sin*",), "ImpactX.RFCavity": ("sin*",)}

#: Element fields ImpactX honours per kind (see :attr:`backends.base.Backend.honoured_fields`):
#: every required field of its kinds plus these.
HONOURED_FIELDS: dict[str, frozenset[str]] = field_table(
    TRANSLATORS, Drift=(*_ALIGNED, *_PIPE), Quadrupole=(*_MULTIPOLES, FIELD_RIGIDITY),
    Sextupole=_MULTIPOLES, Octupole=_MULTIPOLES,
    SBend=(*CFBEND_FIELDS, "edge_int1", "edge_int2", "tilt_ref", *_PIPE),
    Multipole=("Kn*L", "Ks*L", *_ALIGNED), Solenoid=(*_ALIGNED, *_PIPE), Kicker=_ALIGNED,
    Aperture=(*APERTURE_OPTIONS, *_ALIGNED),
    **{kind: (*_ALIGNED, *_EXTENSION_EXTRA.get(kind, ()),
              *(_PIPE if kind in PIPE_APERTURE_KINDS else ()))
       for kind in EXTENSION_KINDS
       if "x_offset" in SPECS[kind].fields
       and kind not in (POLYGON_APERTURE, "ImpactX.ExactMultipole")},
    **{POLYGON_APERTURE: ("vertex_x*", "vertex_y*", *APERTURE_OPTIONS, *_ALIGNED),
       "ImpactX.ExactMultipole": _MULTIPOLES, "ImpactX.SpinMap": ("A*",)})


def translate(element: Element, reference: ReferenceParticle, nslice: int | None = None
              ) -> list[ElementSpec]:
    """The ImpactX elements of one harness element (``nslice`` overrides the element's)."""
    slices = nslice if nslice is not None else element.nslice
    if element.kind not in TRANSLATORS:
        raise ValueError(f"ImpactX adapter does not translate {element.kind!r} "
                         f"({element.name})")
    return TRANSLATORS[element.kind](element, reference, slices)


def translate_scenario(scenario: Scenario) -> list[ElementSpec]:
    """The ImpactX lattice of a scenario (space charge sets every element's ``nslice``)."""
    sc = scenario.space_charge
    nslice = sc.kicks_per_element if sc is not None else None
    ref = scenario.reference_particle
    return [spec for e in scenario.elements for spec in translate(e, ref, nslice)]


# --------------------------------------------------------------------------- the simulation


def _frozen(values: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """ImpactX attribute values as a hashable, ordered tuple (lists become tuples)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                        for k, v in values.items()))


def _thawed(values: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values}


@dataclass(frozen=True)
class MeshSettings:
    """What ImpactX fixes at ``init_grids``: the space-charge mesh, its AMReX boxes and the
    particle shape (:attr:`backends.impactx_space_charge.ImpactXSpaceCharge.mesh`)."""

    values: tuple[tuple[str, Any], ...] = ()

    @property
    def n_cell(self) -> tuple[int, int, int] | None:
        """The mesh's cells, None without one."""
        return dict(self.values).get("n_cell")

    def compatible(self, other: MeshSettings) -> bool:
        """Whether a simulation built with ``other`` serves a scenario needing ``self``."""
        return not self.values or self == other


@dataclass(frozen=True)
class RunSettings:
    """``ParmParse`` settings ImpactX reads when tracking (re-applied before every run):
    :attr:`backends.impactx_space_charge.ImpactXSpaceCharge.run`; empty without space
    charge."""

    values: tuple[tuple[str, Any], ...] = ()
    #: Thomas-BMT spin push (``algo.spin``), process-global too: set for every scenario.
    spin: bool = False
    #: Longitudinal particle boundary (``algo.particle_bc``: ``open`` or ``periodic``,
    #: ``src/particles/ParticleBoundary.cpp``), process-global: set for every scenario.
    particle_bc: str = "open"

    @property
    def space_charge(self) -> str | bool:
        """ImpactX's ``algo.space_charge`` (False: off)."""
        return dict(self.values).get("space_charge", False)


def space_charge_settings(space_charge: Any) -> ImpactXSpaceCharge | Unsupported:
    """ImpactX's settings of a scenario's ``space_charge`` block
    (:func:`backends.impactx_space_charge.impactx_settings`), or why it cannot run.

    ImpactX sizes its mesh as ``prob_relative`` times the beam's extent (``geometry.
    dynamic_size``, ``ImpactX::ResizeMesh`` in ``initialization/InitMeshRefinement.cpp``) or
    as a fixed box; it has no mesh in rms sizes, so a ``domain_sigmas`` (the +-k sigma mesh of
    Cheetah) stated without ``prob_relative`` is refused by name rather than replaced by
    ImpactX's 1.1."""
    if space_charge.domain_sigmas is not None and space_charge.prob_relative is None:
        return Unsupported(f"space_charge.domain_sigmas {space_charge.domain_sigmas:g}: "
                           "ImpactX's mesh is prob_relative x the beam's extent per axis, "
                           "never +-k rms sizes; state space_charge.prob_relative for ImpactX")
    settings = impactx_settings(space_charge)
    if isinstance(settings, Refused):
        return Unsupported(settings.reason)
    return settings


class _SharedSimulation:
    """The process-wide ImpactX simulation (ImpactX keeps AMReX state per process)."""

    def __init__(self) -> None:
        self.sim: Any = None
        self.mesh = MeshSettings()
        self.generation = 0
        self.owner: object | None = None
        self._registered = False

    def alive(self) -> bool:
        """Whether the simulation object is usable: other code in the process may finalise
        AMReX (any ``ImpactX.finalize()`` does), which leaves this object dangling."""
        import amrex.space3d as amr

        return self.sim is not None and bool(amr.initialized())

    def _abandon(self) -> None:
        """Drop a simulation whose AMReX was finalised elsewhere without destroying it: its
        destructor would free memory of AMReX arenas that no longer exist (a segfault), so
        the object is kept referenced for the rest of the process."""
        if self.sim is not None:
            _ABANDONED.append(self.sim)
            self.sim = None
            self.owner = None

    def acquire(self, mesh: MeshSettings) -> Any:
        """The simulation object, built (AMReX initialised) on first use or for a new mesh."""
        if self.sim is not None and not self.alive():
            self._abandon()
        if self.sim is not None and mesh.compatible(self.mesh):
            return self.sim
        self.finalize()
        from impactx import ImpactX

        sim = ImpactX()
        sim.verbose = 0
        sim.tiny_profiler = False
        sim.diagnostics = False          # no diags/ directory in the working directory
        sim.slice_step_diagnostics = False
        if mesh.values:
            apply_settings(sim, _thawed(mesh.values))
        sim.init_grids()
        self.sim, self.mesh = sim, mesh
        self.generation += 1
        self.owner = None
        if not self._registered:
            atexit.register(self.finalize)
            self._registered = True
        return sim

    def apply(self, settings: RunSettings) -> None:
        """Load per-scenario tracking settings into ImpactX's global ``ParmParse`` table."""
        sim = self.sim
        sim.diagnostics = False
        sim.verbose = 0
        sim.space_charge = False
        sim.spin = settings.spin   # process-global too: set for every scenario
        sim.particle_bc = settings.particle_bc
        if settings.values:
            apply_settings(sim, _thawed(settings.values))

    def finalize(self) -> None:
        """Finalise ImpactX and AMReX (at exit, or before rebuilding for another mesh)."""
        if self.sim is not None and not self.alive():
            self._abandon()
        if self.sim is not None:
            self.sim.finalize()
            self.sim = None
            self.owner = None


#: Simulations whose AMReX was finalised by other code (never destroyed, see ``_abandon``).
_ABANDONED: list[Any] = []

_SHARED = _SharedSimulation()


@dataclass
class _Handle:
    """Particles injected into the shared simulation by one prepared scenario."""

    ids: np.ndarray          # ImpactX particle ids in injection order (int64)
    generation: int


class ImpactXPrepared(Prepared):
    """A scenario translated to ImpactX elements, sharing the process-wide simulation."""

    def __init__(self, scenario: Scenario, specs: list[ElementSpec]):
        self.scenario = scenario
        self.specs = specs
        self.model = model_signature(scenario)
        self.threads = tracking_threads()
        self.reference = scenario.reference_particle
        sc = scenario.space_charge
        self.spin = scenario.spin
        #: the Thomas-BMT push (``sim.spin``); without it ImpactX carries given spins
        #: unchanged (``beam.spin.push: false``)
        self.spin_push = scenario.spin_push
        self.bunch_charge_C = float(scenario.beam.bunch_charge_C)
        boundary = scenario.particle_boundary
        #: the bucket length [m] of a particle boundary (0: none), set on the particle
        #: container at every injection (``set_bucket_length``)
        self.bucket_length = boundary.bucket_length if boundary is not None else 0.0
        particle_bc = boundary.kind if boundary is not None else "open"
        if sc is None:
            self.mesh = MeshSettings()
            self.settings = RunSettings(spin=self.spin_push, particle_bc=particle_bc)
        else:
            settings = space_charge_settings(sc)
            if isinstance(settings, Unsupported):
                raise ValueError(settings.reason)
            # the model too: ImpactX sizes its fields at init_grids for the model it is set
            # to then (a 2D model set afterwards aborts: "2D space charge requires exactly
            # 1 slice in z", measured with impactx 26.10)
            self.mesh = MeshSettings(_frozen({**settings.mesh,
                                              "space_charge": settings.run["space_charge"]}))
            self.settings = RunSettings(_frozen(settings.run), spin=self.spin_push,
                                        particle_bc=particle_bc)
            if settings.intensity == "current":   # 2D: the beam current [A] (beam.current)
                self.bunch_charge_C = float(scenario.beam.current_A or 0.0)
        self._handle: _Handle | None = None
        _SHARED.acquire(self.mesh)

    def _check(self, handle: _Handle) -> Any:
        if not _SHARED.alive():
            _SHARED.acquire(self.mesh)
            raise RuntimeError("AMReX was finalised by other code since these particles were "
                               "injected (an ImpactX.finalize() in this process); inject again")
        if _SHARED.owner is not handle or _SHARED.generation != handle.generation:
            raise RuntimeError("these particles are no longer loaded in ImpactX: another "
                               "scenario was injected since (one ImpactX beam per process)")
        return _SHARED.sim

    def inject(self, particles: np.ndarray) -> _Handle:
        """Load settings, lattice, reference particle and ``(N, 6)`` particles (x, px, y, py,
        t, pt) into ImpactX. ImpactX's ``add_n_particles`` takes x, y, t, px, py, pt and
        ``qm`` = q/(m c^2) [1/eV]; the bunch charge sets the weights. A scenario with spins
        takes ``(N, 9)`` particles, the spins given as ``sx, sy, sz`` (``sim.spin`` on; off
        for ``beam.spin.push: false``, when ImpactX carries them unchanged)."""
        from impactx import elements

        particles = np.ascontiguousarray(particles, dtype=np.float64)
        width = 9 if self.spin else 6
        if particles.ndim != 2 or particles.shape[1] != width:
            raise ValueError(f"particles must have shape (N, {width}), got {particles.shape}")
        spins = ({"sx": particles[:, 6].copy(), "sy": particles[:, 7].copy(),
                  "sz": particles[:, 8].copy()} if self.spin else {})
        sim = _SHARED.acquire(self.mesh)
        _SHARED.apply(self.settings)
        sim.lattice.clear()
        # built afresh for every run: ImpactX finalises element data after each track
        sim.lattice.extend([spec.build(elements) for spec in self.specs])
        beam = sim.beam
        beam.clear_particles()
        beam.set_bucket_length(self.bucket_length)
        ref = beam.ref
        ref.reset()
        from harness.model.reference_particle import IMPACTX_SPECIES

        if self.reference.species in IMPACTX_SPECIES:
            ref.set_species(self.reference.species)
        else:  # muons, ions: ImpactX takes any species by charge and rest energy
            ref.set_charge_qe(self.reference.charge_qe).set_mass_MeV(self.reference.mass_MeV)
        ref.set_kin_energy_MeV(self.reference.kinetic_energy_MeV)
        qm_eev = ref.charge_qe / (ref.mass_MeV * 1e6)
        x, px, y, py, t, pt = (particles[:, i].copy() for i in range(6))
        # ImpactX needs a non-zero total weight: a chargeless beam gets unit weights
        # (space charge is off then, so weights do not enter the tracking).
        if self.bunch_charge_C > 0.0:
            beam.add_n_particles(x, y, t, px, py, pt, qm_eev, bunch_charge=self.bunch_charge_C,
                                 **spins)
        else:
            beam.add_n_particles(x, y, t, px, py, pt, qm_eev, w=np.ones(len(particles)),
                                 **spins)
        ids, columns = _read_particles(beam)
        order = np.argsort(ids, kind="stable")
        if len(ids) != len(particles) or not np.array_equal(columns[order, 0], x):
            raise RuntimeError("ImpactX did not number the particles in injection order")
        handle = _Handle(ids=ids[order], generation=_SHARED.generation)
        _SHARED.owner = self._handle = handle
        return handle

    def run(self, handle: _Handle) -> _Handle:
        """Track through the lattice (``ImpactX.track_particles``)."""
        sim = self._check(handle)
        sim.track_particles()
        if self.settings.space_charge:
            sim.space_charge = False   # the setting is process-global in ImpactX
        return handle

    def extract(self, handle: _Handle) -> np.ndarray:
        """Final ``(N, 6)`` particles (``(N, 9)`` with spins) in injection order
        (:func:`backends.base.final_particles`):
        particles ImpactX removed (at an aperture) are NaN rows, a particle it returned with
        all-NaN coordinates is a blow-up (+inf row)."""
        sim = self._check(handle)
        ids, columns = _read_particles(sim.beam, self.spin)
        rows = np.searchsorted(handle.ids, ids)
        if len(ids) and (rows.max() >= len(handle.ids) or
                         not np.array_equal(handle.ids[rows], ids)):
            raise RuntimeError("ImpactX returned particles that were not injected")
        raw = np.full((len(handle.ids), columns.shape[1]), np.nan)
        raw[rows] = columns
        lost = np.ones(len(handle.ids), bool)
        lost[rows] = False
        return final_particles(raw, lost=lost)

    def reference_energy_MeV(self) -> float:
        """Kinetic energy of ImpactX's reference particle now [MeV] (changes in RF gaps)."""
        return float(_SHARED.sim.beam.ref.kin_energy_MeV)

    def close(self) -> None:
        """Release this scenario's particles (AMReX itself is finalised at exit)."""
        if _SHARED.sim is not None and _SHARED.owner is not None \
                and _SHARED.owner is self._handle:
            _SHARED.sim.beam.clear_particles()
            _SHARED.owner = None
        self._handle = None


def _host_array(vector: Any, on_device: bool) -> np.ndarray:
    """A numpy copy of a pyAMReX PODVector (copied to the host first in GPU builds)."""
    if on_device:
        host = vector.to_host()
        return np.array(host.to_numpy(), copy=True)
    return np.array(vector.to_numpy(), copy=True)


def _read_particles(beam: Any, spin: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """ids (int64) and ``(n, 6)`` columns x, px, y, py, t, pt of the particles in ImpactX
    (``(n, 9)`` with ``spin_x``, ``spin_y``, ``spin_z`` when ``spin``).

    Reads the structure-of-arrays tiles directly (``to_df`` is ~50x slower at 1e6); the SoA
    real components are named in ``beam.real_soa_names`` (x, y, t, px, py, pt first).
    """
    import amrex.space3d as amr
    from impactx import ImpactXParIter

    on_device = bool(build_info()["have_gpu"])
    names = list(beam.real_soa_names)
    wanted = ["position_x", "momentum_x", "position_y", "momentum_y", "position_t",
              "momentum_t"] + (["spin_x", "spin_y", "spin_z"] if spin else [])
    index = [names.index(n) for n in wanted]
    ids, blocks = [], []
    for level in range(beam.finest_level + 1):
        for tile in ImpactXParIter(beam, level):
            soa = tile.soa()
            idcpu = _host_array(soa.get_idcpu_data(), on_device)
            ids.append(np.asarray(amr.unpack_ids(idcpu), dtype=np.int64))
            blocks.append(np.stack([_host_array(soa.get_real_data(i), on_device)
                                    for i in index], axis=1))
    if not ids:
        return np.empty(0, dtype=np.int64), np.empty((0, len(index)))
    return np.concatenate(ids), np.concatenate(blocks)


# --------------------------------------------------------------------------- the backend


class ImpactXBackend(Backend):
    """ImpactX (``impactx-noacc`` from PyPI, or any ``impactx`` build, e.g. conda-forge)."""

    name: ClassVar[str] = "impactx"
    distribution: ClassVar[str] = "impactx-noacc"
    install_hint: ClassVar[str] = "pip install 'trackbench[impactx]'"
    element_kinds: ClassVar[frozenset[str]] = frozenset(TRANSLATORS)
    #: ImpactX tracks these kinds with a negative ds as their inverse (``Drift.H``,
    #: ``ChrDrift.H``, ``ExactDrift.H``, ``Quad.H``, ``ChrQuad.H``, ``ExactQuad.H``, ``Sol.H``,
    #: ``Sbend.H``, ``CFbend.H``, ``ExactSbend.H``, ``ExactCFbend.H``, ``ExactMultipole.H``).
    reversible_kinds: ClassVar[frozenset[str]] = frozenset({
        "Drift", "Quadrupole", "Solenoid", "SBend", "Sextupole", "Octupole",
        "ImpactX.ExactMultipole", "ImpactX.ExactSbend"})
    honoured_fields: ClassVar[dict[str, frozenset[str]]] = HONOURED_FIELDS
    differentiable: ClassVar[bool] = False
    space_charge_kinds: ClassVar[frozenset[str] | None] = frozenset(MODELS)
    takes_plans: ClassVar[bool] = True
    #: Thomas-BMT spin push of every element (``sim.spin``; ``spin_and_phasespace_push``).
    spin_tracking: ClassVar[bool] = True
    linear_probes: ClassVar[bool] = True
    particle_boundaries: ClassVar[frozenset[str]] = frozenset({"periodic"})
    tracking_modes: ClassVar[frozenset[str]] = frozenset({"particles", "envelope"})
    envelope_space_charge_kinds: ClassVar[frozenset[str]] = frozenset({"2d", "3d"})
    envelope_class: ClassVar[str] = "backends.impactx_envelope:ImpactXEnvelope"
    #: No fast-math setting at run time: the compiler flags are fixed when ImpactX is built.
    math_refusal: ClassVar[str] = (
        "ImpactX is compiled once, when it is built (the PyPI wheel with its fixed flags); a "
        "fast-math ImpactX is another build (CXXFLAGS='-ffast-math', as the benchmark's "
        "'-fm' configurations), not a run-time setting")

    @classmethod
    def _import(cls) -> None:
        import amrex.space3d  # noqa: F401
        import impactx  # noqa: F401

    @classmethod
    def availability(cls) -> Availability:
        """Available when ``impactx`` imports, whichever distribution (or conda) provides it."""
        try:
            cls._import()
        except Exception as error:  # noqa: BLE001 - any import failure means unavailable
            version = next((v for d in IMPACTX_DISTRIBUTIONS if (v := package_version(d))),
                           None)
            hint = cls.install_hint if version is None else f"{cls.install_hint} ({error})"
            return Availability(False, version, hint)
        return Availability(True, _impactx_version(), "", cls.dependency_versions())

    @classmethod
    def dependency_versions(cls) -> dict[str, str]:
        """impactx (module version), the providing distribution, pyAMReX, numpy, the build."""
        out = {"impactx": _impactx_version() or "missing"}
        for dist in (*IMPACTX_DISTRIBUTIONS, "pyamrex", "numpy"):
            version = package_version(dist)
            if version and dist != "impactx":
                out[dist] = version
        try:
            info = build_info()
        except Exception:  # noqa: BLE001 - the module does not import
            return out
        out["impactx-build"] = (f"gpu={info['gpu_backend'] or 'none'}, omp={info['have_omp']}, "
                                f"mpi={info['have_mpi']}, "
                                f"particles={info['precision_particles'].lower()}")
        return out

    def plan(self, scenario: Scenario, device: str = "cpu",
             dtype: str = "float64") -> Plan | Unsupported:
        """Element kinds and tiers, device (the build's) and dtype (the build's precision),
        the space-charge mesh; the ImpactX lattice translated once."""
        base = self.common_checks(scenario, device, dtype)
        if base is not None:
            return base
        if not self.availability().available:
            return Unsupported(f"impactx is not installed: {self.install_hint}")
        native = native_device()
        if device != native:
            if device == "cuda":
                return Unsupported("this ImpactX build has no GPU support (the impactx-noacc "
                                   "wheel is CPU-only); install the CUDA build from conda-forge "
                                   "(conda install -c conda-forge impactx) for device 'cuda'")
            return Unsupported(f"this ImpactX build tracks on {native!r} only, not {device!r}")
        native_type = native_dtype()
        if dtype != native_type:
            return Unsupported(f"ImpactX's particle data are {native_type} in this build "
                               f"(impactx.Config.precision_particles = "
                               f"{build_info()['precision_particles']}); {dtype} would only be "
                               "a conversion at the boundary")
        if not scenario.elements:
            return Unsupported("the lattice has no elements; ImpactX tracks through one or "
                               "more (a Marker is one)")
        if scenario.space_charge is not None:
            if scenario.space_charge.grid is not None:
                factors = blocking_factors(scenario.space_charge.grid)
                if isinstance(factors, Unsupported):
                    return factors
            settings = space_charge_settings(scenario.space_charge)
            if isinstance(settings, Unsupported):
                return settings
        raised = []
        for element in scenario.elements:
            refused = exact_tier_multipoles(element)
            if refused is None:   # (an Unsupported is falsy: no `or` here)
                refused = field_rigidity_refusal(element)
            if refused is not None:
                return refused
            family = "Marker" if element.kind == "Aperture" else element.kind
            if element.tier not in ELEMENT_TIERS[family]:
                return Unsupported(f"ImpactX has no {element.tier} model of {element.kind} "
                                   f"({element.name}); it implements {ELEMENT_TIERS[family]}")
            if tier_rank(element.tier) != tier_rank(element.requested_tier):
                raised.append(f"{element.name}: {element.requested_tier}->{element.tier}")
        notes = [mesh_note(scenario.space_charge)] if scenario.space_charge is not None else []
        if raised:
            notes.append("ImpactX runs the nearest implemented tier: " + ", ".join(raised))
        return Plan(model_signature(scenario), "; ".join(notes), scenario, device, dtype,
                    translate_scenario(scenario))

    def prepare(self, scenario: Scenario | Plan, device: str = "cpu",
                dtype: str = "float64") -> ImpactXPrepared:
        """The plan's lattice in ImpactX (a scenario is planned first; AMReX is initialised
        on the first call in a process)."""
        plan = self.planned(scenario, device, dtype)
        return ImpactXPrepared(plan.scenario, plan.lattice)


#: Registered by :mod:`backends.registry`.
BACKEND = ImpactXBackend
