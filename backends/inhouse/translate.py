"""Harness elements -> the ImpactX element maps that model them, per effective tier.

=============  ========================  ==========================================
harness kind   tier                      ImpactX maps (in order)
=============  ========================  ==========================================
Drift          linear/paraxial/exact     ``Drift`` / ``ChrDrift`` / ``ExactDrift``
Quadrupole     linear/paraxial/exact     ``Quad`` / ``ChrQuad`` / ``ExactQuad``
SBend          linear                    ``DipEdge(e1)``, ``Sbend`` (``CFbend`` with Kn1),
                                         ``DipEdge(e2)``
SBend          exact                     ``DipEdge(e1)``, ``ExactSbend`` (``ExactCFbend``
                                         with Kn1..Kn4, Ks1..Ks4), ``DipEdge(e2)``
Sextupole      exact                     ``ExactMultipole(k_normal=[0, 0, Kn2])``
Octupole       exact                     ``ExactMultipole(k_normal=[0, 0, 0, Kn3])``
Multipole      (thin, any)               ``Multipole`` per order (KnNL, KsNL)
Solenoid       linear                    ``Sol``
RFCavity       (thin, any)               ``ShortRF(V = |q| voltage / m c^2, phase)``
Instrument     any                       drift of its tier when it has a length
Marker         any                       identity
Aperture       any                       ``Aperture`` (transmit or absorb, periodic)
Kicker         any                       ``Kicker`` (xkick = -Kn0L, ykick = Ks0L), between
                                         drift halves of its tier when it has a length
ImpactX.<X>    any                       ImpactX's ``<X>``: ConstF, ChrAcc (reference
                                         energy updated), ChrPlasmaLens (ImpactX's t
                                         update for k < 0), TaperedPL, NonlinearLens,
                                         ThinDipole, Buncher, LinearMap, PRot,
                                         PlaneXYRot, PolygonAperture, SoftQuadrupole,
                                         SoftSolenoid, RFCavity (the linear map of its
                                         on-axis field; reference energy and time
                                         updated) (:func:`_extension_specs`),
                                         ExactMultipole (every KnN/KsN, as Sextupole),
                                         SpinMap (phase-space identity), QuadEdge
=============  ========================  ==========================================

The reference particle carries its time since the start of the lattice
(:class:`~backends.inhouse.reference.RefState` ``t``): each map advances it as ImpactX's
reference push does (:func:`reference_after`; :attr:`MapSpec.advance`), and an
``RFCavity`` reads it for its RF phase.

Shifted or rotated elements (``x_offset``, ``y_offset``, ``z_rot``; a bend's ``tilt_ref``)
are wrapped in ImpactX's ``shift_in``/``shift_out`` (:mod:`backends.inhouse.alignment`).
A thick element with a pipe aperture (``aperture_x``, ``aperture_y``) is cut into its
``nslice`` pieces (:func:`slice_params`), each followed by the elliptical aperture mask, all
inside the alignment: ImpactX's ``shift_in``, slice push, ``apply_aperture``, ``shift_out``
per slice (``src/elements/mixin/beamoptic.H``, ``mixin/pipeaperture.H``), to round-off.
Edges use the linear ``DipEdge`` model with the gap term g K2 = 2 edge_int (rc =
length/angle of their bend); an edge with constant zero angle and zero fringe integral is
the identity and is left out. Exact integrators take
``nslice * mapsteps`` steps of the element's ``int_order`` (2, 4 or 6, as ImpactX's
``int_order``; :mod:`backends.inhouse.integrators`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, overload

import torch

from backends.inhouse import (
    alignment,
    aperture_masks,
    bend,
    chr_acc,
    constf,
    dipedge,
    drift,
    linear_map,
    multipole,
    nonlinear_lens,
    plasma_lens,
    quadrupole,
    rf,
    rf_cavity,
    rotations,
    soft_edge,
    solenoid,
    thin_kicks,
)
from backends.inhouse import numeric as nm
from backends.inhouse.kinds import KINDS
from backends.inhouse.maps import Entries, Kernel
from backends.inhouse.reference import RefState
from backends.translation import around_kick
from harness.model.kinds import EXTENSION_KINDS, FIELD_RIGIDITY
from harness.model.lattice import (
    Element,
    polygon_vertices,
    profile_coefficients,
    thick_multipoles,
    thin_multipoles,
)

#: An element's parameters as a map reads them: floats, or tensors for differentiable ones.
Params = Mapping[str, nm.Scalar]


@dataclass(frozen=True)
class MapSpec:
    """One ImpactX element map of a harness element.

    Attributes:
        impactx: ImpactX element class it reproduces (e.g. ``ChrQuad``).
        element: the harness element.
        linear: True when ``make`` returns 6x6 entries, False when it returns a Kernel.
        make: ``make(params, ref) -> Entries | Kernel`` from the element's parameters (SI,
            floats or tensors) and the reference particle before the map.
        reference: ``reference(params, ref) -> RefState`` after the map (the RF elements
            only: energy and time), else :attr:`advance` moves the reference time.
        additive: the map over a length L1 followed by the map over L2, with every other
            parameter equal, is the map over L1 + L2 (``make`` reads the whole ``length``):
            the element's map is the exact flow of a Hamiltonian that does not depend on s.
            So are ChrDrift, ExactDrift and ChrQuad (ImpactX's own slices compose to
            the whole element, ``src/elements/ChrQuad.H``: pt is conserved and the
            transverse motion is linear at fixed pt); the tracker joins such runs.
        advance: the fraction of the element's ``length`` the reference particle travels
            in this map at constant energy (its time grows by that path / beta): 1 for the
            body of a thick element, 1/2 for a kicker's drift halves, 0 for thin maps,
            edges and alignment (ImpactX's reference push of each element).
        reads_time: the map depends on the reference time (``RFCavity``).
    """

    impactx: str
    element: Element
    linear: bool
    make: Callable[[Params, RefState], Entries | Kernel]
    reference: Callable[[Params, RefState], RefState] | None = None
    additive: bool = False
    advance: float = 0.0
    reads_time: bool = False


def reference_after(spec: MapSpec, params: Params, ref: RefState) -> RefState:
    """The reference particle after the map ``spec`` (with the element's ``params``):
    :attr:`MapSpec.reference` where the map changes its energy, else its time advanced by
    ``advance * length / beta``."""
    if spec.reference is not None:
        return spec.reference(params, ref)
    if spec.advance:
        length = params["length"]
        return ref.advanced(length * spec.advance if spec.advance != 1.0 else length)
    return ref


def changes_reference(spec: MapSpec, timed: bool) -> bool:
    """Whether the map changes what later maps read of the reference particle: its energy,
    or (``timed``: a later map reads the time) its time."""
    return spec.reference is not None or (timed and spec.advance != 0.0)


def _drift_spec(element: Element, tier: str, fraction: float = 1.0,
                label: str | None = None) -> MapSpec:
    """The drift of ``fraction`` of the element's length at ``tier``."""
    def length(p: Params) -> nm.Scalar:
        return p["length"] * fraction if fraction != 1.0 else p["length"]

    if tier == "linear":
        return MapSpec(label or "Drift", element, True,
                       lambda p, r: drift.drift_entries(length(p), r), advance=fraction)
    whole = fraction == 1.0
    if tier == "paraxial":
        return MapSpec(label or "ChrDrift", element, False,
                       lambda p, r: drift.chr_drift_kernel(length(p), r), additive=whole,
                       advance=fraction)
    return MapSpec(label or "ExactDrift", element, False,
                   lambda p, r: drift.exact_drift_kernel(length(p), r), additive=whole,
                   advance=fraction)


def _atan2(y: nm.Scalar, x: nm.Scalar) -> nm.Scalar:
    if isinstance(y, torch.Tensor) or isinstance(x, torch.Tensor):
        # a float argument takes the tensor's dtype (torch.as_tensor alone would make it
        # float32, and the angle with it)
        like = y if isinstance(y, torch.Tensor) else x
        assert isinstance(like, torch.Tensor)
        return torch.atan2(torch.as_tensor(y, dtype=like.dtype, device=like.device),
                           torch.as_tensor(x, dtype=like.dtype, device=like.device))
    return math.atan2(y, x)


def field_scale(p: Params, ref: RefState | None) -> nm.Scalar:
    """The factor from a quadrupole's Kn1/Ks1 to its strength where it sits: 1, or with
    ``field_rigidity`` (the gradient held as a field in a lattice that changes the reference
    energy) field_rigidity / the local rigidity B rho [T m / T m] (ImpactX ``unit = 1``,
    ``src/elements/ChrQuad.H``: ``m_g = m_k / refpart.rigidity_Tm()``)."""
    if FIELD_RIGIDITY not in p:
        return 1.0
    if ref is None:
        raise ValueError("a quadrupole with field_rigidity needs the local reference particle")
    return p[FIELD_RIGIDITY] / plasma_lens.rigidity(ref)


def _quad_strength(p: Params, ref: RefState | None = None) -> nm.Scalar:
    """The normal gradient of a quadrupole [1/m^2]: Kn1, or hypot(Kn1, Ks1) with a skew
    component (the quadrupole is then rotated, :func:`_quad_turn`), times
    :func:`field_scale` at the reference ``ref``."""
    k = p["Kn1"] if "Ks1" not in p else nm.sqrt(p["Kn1"] * p["Kn1"] + p["Ks1"] * p["Ks1"])
    if FIELD_RIGIDITY not in p:
        return k
    return k * field_scale(p, ref)


def _quad_turn(p: Params) -> nm.Scalar:
    """Rotation [rad] of a skew quadrupole component: -atan2(Ks1, Kn1)/2
    (:func:`harness.model.lattice.rotated_normal`)."""
    return -0.5 * _atan2(p["Ks1"], p["Kn1"]) if "Ks1" in p else 0.0


def _exact_multipole_spec(element: Element) -> MapSpec:
    """``ExactMultipole`` of every multipole component of a thick element."""
    steps = element.integrator_steps

    def strengths(p: Params) -> tuple[multipole.Strength, ...]:
        return tuple((n, kn, ks) for n, (kn, ks) in thick_multipoles(p).items())

    return MapSpec("ExactMultipole", element, False, lambda p, r: (
        multipole.exact_multipole_kernel(p["length"], strengths(p), r, steps,
                                         element.int_order)), advance=1.0)


def _pure_quadrupole(element: Element) -> bool:
    return set(thick_multipoles(element.params)) == {1}


def _quad_spec(element: Element) -> MapSpec:
    tier, steps = element.tier, element.integrator_steps
    if not _pure_quadrupole(element):
        return _exact_multipole_spec(element)
    if tier == "linear":
        return MapSpec("Quad", element, True, lambda p, r: quadrupole.quad_entries(
            p["length"], _quad_strength(p, r), r), advance=1.0)
    if tier == "paraxial":
        return MapSpec("ChrQuad", element, False, lambda p, r: quadrupole.chr_quad_kernel(
            p["length"], _quad_strength(p, r), r), additive=True, advance=1.0)
    return MapSpec("ExactQuad", element, False, lambda p, r: quadrupole.exact_quad_kernel(
        p["length"], _quad_strength(p, r), r, steps, element.int_order), advance=1.0)


def _edge_spec(element: Element, face: str) -> MapSpec:
    """``DipEdge`` of face 1 or 2; the gap term g K2 = 2 edge_int (see the ImpactX
    adapter)."""
    return MapSpec("DipEdge", element, True, lambda p, r: bend.dipedge_entries(
        p[f"e{face}"], p["length"], p["angle"], 2.0 * p.get(f"edge_int{face}", 0.0)))


def _has(element: Element, field: str, parameter_fields: frozenset[str]) -> bool:
    """Whether a field is set (non-zero) or will be given as a tensor."""
    return element.params.get(field, 0.0) != 0.0 or field in parameter_fields


def _bend_specs(element: Element, parameter_fields: frozenset[str]) -> list[MapSpec]:
    exact = element.tier == "exact"
    combined = "Kn1" in element.params
    steps = element.integrator_steps
    general = exact and set(thick_multipoles(element.params)) - {1}
    if general or (exact and "Ks1" in element.params):
        # every component (``ExactCFbend.H`` map2, orders 1 to 4, normal and skew)
        body = MapSpec("ExactCFbend", element, False, lambda p, r: bend.exact_cfbend_kernel(
            p["length"], p["angle"], 0.0, r, steps, element.int_order, tuple(
                (n, kn, ks) for n, (kn, ks) in thick_multipoles(p).items())))
    elif combined and exact:
        body = MapSpec("ExactCFbend", element, False, lambda p, r: bend.exact_cfbend_kernel(
            p["length"], p["angle"], p["Kn1"], r, steps, element.int_order), advance=1.0)
    elif combined:
        body = MapSpec("CFbend", element, True, lambda p, r: bend.cfbend_entries(
            p["length"], p["angle"], p["Kn1"], r), advance=1.0)
    elif exact:
        body = MapSpec("ExactSbend", element, False, lambda p, r: bend.exact_sbend_kernel(
            p["length"], p["angle"], r), advance=1.0)
    else:
        body = MapSpec("Sbend", element, True, lambda p, r: bend.sbend_entries(
            p["length"], p["angle"], r), advance=1.0)
    out = []
    if _has(element, "e1", parameter_fields) or _has(element, "edge_int1", parameter_fields):
        out.append(_edge_spec(element, "1"))
    out.append(body)
    if _has(element, "e2", parameter_fields) or _has(element, "edge_int2", parameter_fields):
        out.append(_edge_spec(element, "2"))
    return out


def multipole_strengths(params: Params) -> tuple[multipole.Strength, ...]:
    """(order, KnNL, KsNL) per order of a thin multipole (:func:`harness.model.lattice.
    thin_multipoles`)."""
    return tuple((n, kn, ks) for n, (kn, ks) in thin_multipoles(params).items())


def _multipole_specs(element: Element, parameter_fields: frozenset[str]) -> list[MapSpec]:
    orders = [n for n, _, _ in multipole_strengths(element.params)]
    if not orders:
        return []
    if set(orders) == {1}:
        def entries(p, r):
            (_, k1l, k1sl), = multipole_strengths(p)
            return multipole.thin_quadrupole_entries(k1l, k1sl)

        return [MapSpec("Multipole", element, True, entries)]
    return [MapSpec("Multipole", element, False,
                    lambda p, r: multipole.thin_multipole_kernel(multipole_strengths(p)))]


def _sextupole_specs(element: Element, parameter_fields: frozenset[str]) -> list[MapSpec]:
    """A Sextupole or Octupole: ``ExactMultipole`` of every component (ImpactX
    ``src/elements/ExactMultipole.H``, :mod:`backends.inhouse.multipole`)."""
    return [_exact_multipole_spec(element)]


def _kicker_specs(element: Element, parameter_fields: frozenset[str]) -> list[MapSpec]:
    """ImpactX ``Kicker`` (xkick = -Kn0L, ykick = +Ks0L), between drift halves of the
    element's tier when it has a length (as the ImpactX adapter builds it)."""
    kick = MapSpec("Kicker", element, False,
                   lambda p, r: alignment.kicker_kernel(-p["Kn0L"], p["Ks0L"]))
    # a length given as a tensor keeps the halves even where it is 0
    length = None if "length" in parameter_fields else element.length
    return around_kick(length, [kick], lambda side: [_drift_spec(element, element.tier, 0.5)])


def _aligned(element: Element, specs: list[MapSpec], parameter_fields: frozenset[str],
             rotation_field: str = "z_rot") -> list[MapSpec]:
    """``specs`` inside ImpactX's ``shift_in``/``shift_out`` when the element is shifted or
    rotated (:mod:`backends.inhouse.alignment`); a rotation alone is linear. A quadrupole's
    skew component adds its rotation (:func:`_quad_turn`), as the ImpactX adapter does."""
    offset = _has(element, "x_offset", parameter_fields) or \
        _has(element, "y_offset", parameter_fields)
    skew = (element.kind == "Quadrupole" and _has(element, "Ks1", parameter_fields)
            and _pure_quadrupole(element))
    rotated = _has(element, rotation_field, parameter_fields) or skew

    def angle(p: Params) -> nm.Scalar:
        return p.get(rotation_field, 0.0) + _quad_turn(p) if skew else \
            p.get(rotation_field, 0.0)

    if not specs or not (offset or rotated):
        return specs
    if not offset:
        return [MapSpec("Alignment", element, True,
                        lambda p, r: alignment.rotation_entries(angle(p))),
                *specs,
                MapSpec("Alignment", element, True,
                        lambda p, r: alignment.rotation_entries(angle(p), inverse=True))]

    def shift(out: bool) -> MapSpec:
        return MapSpec("Alignment", element, False, lambda p, r: alignment.shift_kernel(
            p.get("x_offset", 0.0), p.get("y_offset", 0.0), angle(p), out))

    return [shift(False), *specs, shift(True)]


def _instrument_specs(element: Element, parameter_fields: frozenset[str]) -> list[MapSpec]:
    has_length = element.length != 0.0 or "length" in parameter_fields
    return [_drift_spec(element, element.tier)] if has_length else []


def _rf_specs(element: Element, parameter_fields: frozenset[str]) -> list[MapSpec]:
    return [MapSpec("ShortRF", element, False,
                    lambda p, r: rf.short_rf_kernel(p["voltage"], p["frequency"],
                                                    p["phase"], r),
                    reference=lambda p, r: rf.reference_after(p["voltage"], p["phase"], r))]


def _mask_options(p: Params) -> dict[str, Any]:
    """The options of an aperture mask (:mod:`backends.inhouse.aperture_masks`) from an
    ``Aperture``'s or ``ImpactX.PolygonAperture``'s params; its alignment is ImpactX's
    ``shift_in``/``shift_out`` around the mask (:func:`_aligned`), as in ImpactX's
    ``src/elements/mixin/beamoptic.H``."""
    return {"action": "absorb" if float(p.get("absorb", 0.0)) else "transmit",
            "repeat_x": float(p.get("repeat_x", 0.0)),
            "repeat_y": float(p.get("repeat_y", 0.0)),
            "shift_odd_x": bool(float(p.get("shift_odd_x", 0.0)))}


def _aperture_specs(element: Element, parameter_fields: frozenset[str]) -> list[MapSpec]:
    """An ``Aperture``: its half-widths are parameters; its shape and options are the
    element's own (structural choices, not traced values: the compiled path takes them as
    constants)."""
    shape = "elliptical" if float(element.params["elliptical"]) else "rectangular"
    options = _mask_options(element.params)
    return [MapSpec("Aperture", element, False, lambda p, r: aperture_masks.aperture_kernel(
        p["x_limit"], p["y_limit"], shape, **options))]


def _polygon_kernel(p: Params) -> Kernel:
    """ImpactX ``PolygonAperture`` (:func:`backends.inhouse.aperture_masks.
    polygon_aperture_kernel`)."""
    xs, ys = polygon_vertices(p)
    return aperture_masks.polygon_aperture_kernel(
        [float(v) for v in xs], [float(v) for v in ys], float(p["min_radius2"]),
        **_mask_options(p))


def _matrix_rows(p: Params) -> list[list[nm.Scalar]]:
    """A LinearMap's entries ``Rij`` (1-based) as 0-based rows."""
    return [[p[f"R{i}{j}"] for j in range(1, 7)] for i in range(1, 7)]


def profile_values(element: Element, p: Params) -> tuple[list[nm.Scalar], list[nm.Scalar]]:
    """The cosine and sine coefficients of a soft-edge element or an RF cavity (as many as
    the element's cosines; ``p`` gives their values, floats or tensors)."""
    cos, _ = profile_coefficients(element.params)
    count = len(cos)
    return ([p[f"cos{j}"] for j in range(count)],
            [p.get(f"sin{j}", 0.0) for j in range(count)])
def _dipedge_spec(element: Element) -> MapSpec:
    """``ImpactX.DipEdge``: the nonlinear model ``DipEdgeNL`` (a kernel), or the linear
    model, ImpactX's ``DipEdge`` matrix (:mod:`backends.inhouse.dipedge`); the model and
    the face are flags, not parameters."""
    if element.params["nonlinear"]:
        exit_face = bool(element.params["exit"])
        return MapSpec("DipEdgeNL", element, False, lambda p, r: dipedge.nonlinear_kernel(
            p["psi"], p["rc"], p["g"], p["R"], tuple(p[f"K{n}"] for n in range(7)),
            exit_face, r))
    return MapSpec("DipEdge", element, True, lambda p, r: dipedge.linear_entries(
        p["psi"], p["rc"], p["g"] * p["K2"]))


def _extension_specs(element: Element, parameter_fields: frozenset[str]) -> list[MapSpec]:
    """An ``ImpactX.<X>`` extension kind: the in-house port of ImpactX's ``<X>``
    (``src/elements/<X>.H``; the modules :mod:`backends.inhouse.constf`, ``chr_acc``,
    ``plasma_lens``, ``nonlinear_lens``, ``thin_kicks``, ``linear_map``, ``rotations``,
    ``soft_edge``, ``bend``, ``dipedge``; the soft-edge maps integrate ``nslice * mapsteps``
    steps along the profile of their coefficients ``cos<j>``, ``sin<j>``; ``ExactSbend``
    given its field B is the map ``ExactSbendB``, the nonlinear ``DipEdge`` model
    ``DipEdgeNL``, which has no spin push here)."""
    cls = element.kind.removeprefix("ImpactX.")
    nslice, mapsteps = element.nslice, element.mapsteps
    if cls == "DipEdge":
        return [_dipedge_spec(element)]
    table: dict[str, MapSpec] = {
        "ConstF": MapSpec("ConstF", element, True, lambda p, r: constf.constf_entries(
            p["length"], p["kx"], p["ky"], p["kt"], r), additive=True, advance=1.0),
        "ChrAcc": MapSpec("ChrAcc", element, False, lambda p, r: chr_acc.chr_acc_kernel(
            p["length"], p["ez"], p["bz"], r, nslice),
            reference=lambda p, r: _chr_acc_reference(p["length"], p["ez"], r)),
        "ChrPlasmaLens": MapSpec("ChrPlasmaLens", element, False, lambda p, r: (
            plasma_lens.chr_plasma_lens_kernel(p["length"], p["k"], r)), additive=True,
            advance=1.0),
        "TaperedPL": MapSpec("TaperedPL", element, False, lambda p, r: (
            plasma_lens.tapered_pl_kernel(p["kL"], p["taper"]))),
        "NonlinearLens": MapSpec("NonlinearLens", element, False, lambda p, r: (
            nonlinear_lens.nonlinear_lens_kernel(p["knll"], p["cnll"]))),
        "ThinDipole": MapSpec("ThinDipole", element, False, lambda p, r: (
            thin_kicks.thin_dipole_kernel(p["angle"], p["rc"], r))),
        "ExactSbend": MapSpec("ExactSbendB", element, False, lambda p, r: (
            bend.exact_sbend_field_kernel(p["length"], p["phi"], p["B"], r))),
        "Buncher": MapSpec("Buncher", element, True, lambda p, r: (
            thin_kicks.buncher_entries(p["V"], p["k"], r))),
        "LinearMap": MapSpec("LinearMap", element, True, lambda p, r: (
            linear_map.linear_map_entries(_matrix_rows(p))), advance=1.0),
        "PRot": MapSpec("PRot", element, False, lambda p, r: rotations.prot_kernel(
            p["phi_in"], p["phi_out"], r)),
        "PlaneXYRot": MapSpec("PlaneXYRot", element, True, lambda p, r: (
            rotations.plane_xy_rot_entries(p["angle"]))),
        "SoftQuadrupole": MapSpec("SoftQuadrupole", element, True, lambda p, r: (
            soft_edge.soft_quad_entries(p["length"], p["gscale"], *profile_values(element, p), r,
                                        mapsteps, nslice))),
        "SoftSolenoid": MapSpec("SoftSolenoid", element, True, lambda p, r: (
            soft_edge.soft_sol_entries(p["length"], p["bscale"], *profile_values(element, p), r,
                                       mapsteps, nslice))),
        "PolygonAperture": MapSpec("PolygonAperture", element, False,
                                   lambda p, r: _polygon_kernel(p)),
        "QuadEdge": MapSpec("QuadEdge", element, False, lambda p, r: (
            thin_kicks.quad_edge_kernel(p["k"], p["flag"], r))),
        # ``SpinMap.H``: the identity in phase space (its spin push is
        # :mod:`backends.inhouse.spin`)
        "SpinMap": MapSpec("SpinMap", element, True, lambda p, r: {
            (i, i): 1.0 for i in range(6)}),
    }
    if cls == "RFCavity":
        return [_rf_cavity_spec(element)]
    if cls == "ExactMultipole":
        return [_exact_multipole_spec(element)]
    return [table[cls]]


def _chr_acc_reference(length: nm.Scalar, ez: nm.Scalar, ref: RefState) -> RefState:
    """The reference particle after a ChrAcc: gamma + ez L and t + (bg_f - bg_i) / ez
    (``ChrUniformAcc.H`` reference push: ``refpart.t = t + (bgf - bgi)/m_ez`` per slice, a
    sum that telescopes over the slices). With ez = 0 (a chromatic solenoid) the energy
    stays and the time is its limit, t + L / beta."""
    if isinstance(ez, float | int) and ez == 0.0:
        return ref.advanced(length)
    after = chr_acc.reference_after(length, ez, ref)
    return after.with_time(ref.t + (after.beta_gamma - ref.beta_gamma) / ez)


def _rf_cavity_spec(element: Element) -> MapSpec:
    """``RFCavity`` (ImpactX ``src/elements/RFCavity.H``, :mod:`backends.inhouse.rf_cavity`):
    the linear map of its on-axis field over the element's ``nslice`` slices of
    ``mapsteps`` steps, at the reference time it enters with; the reference particle leaves
    with the cavity's energy gain and its own time. The map and the reference after it come
    from one integration (the last one is kept for the reference push that follows)."""
    last: list[Any] = [None, None, None]

    def cavity(p: Params, r: RefState) -> rf_cavity.CavityMap:
        if last[0] is p and last[1] is r:
            return last[2]
        made = rf_cavity.rf_cavity_map(
            p["length"], p["escale"], p["freq"], p["phase"], *profile_values(element, p), r,
            r.t, element.mapsteps, element.nslice)
        last[:] = [p, r, made]
        return made

    return MapSpec("RFCavity", element, True, lambda p, r: cavity(p, r).entries,
                   reference=lambda p, r: cavity(p, r).ref.with_time(cavity(p, r).t_ref),
                   reads_time=True)


#: harness kind -> ``translator(element, parameter_fields) -> maps`` (before alignment).
TRANSLATORS: dict[str, Callable[[Element, frozenset[str]], list[MapSpec]]] = {
    "Drift": lambda e, fields: [_drift_spec(e, e.tier)],
    "Instrument": _instrument_specs,
    "Marker": lambda e, fields: [],
    "Quadrupole": lambda e, fields: [_quad_spec(e)],
    "SBend": _bend_specs,
    "Sextupole": _sextupole_specs,
    "Octupole": _sextupole_specs,
    "Multipole": _multipole_specs,
    "Solenoid": lambda e, fields: [MapSpec("Sol", e, True, lambda p, r: solenoid.sol_entries(
        p["length"], p["Ksol"], r), advance=1.0)],
    "RFCavity": _rf_specs,
    "Aperture": _aperture_specs,
    "Kicker": _kicker_specs,
    **{kind: _extension_specs for kind in EXTENSION_KINDS},
}

if set(TRANSLATORS) != KINDS:  # one table per kind, kept in step with the vocabulary
    raise ImportError(f"in-house translators {sorted(TRANSLATORS)} != kinds {sorted(KINDS)}")

#: Fields proportional to the length of a slice (``phi``: the angle of an
#: ``ImpactX.ExactSbend``, whose slices ImpactX bends by |phi| / nslice, ``ExactSbend.H``).
LENGTH_FIELDS = ("length", "angle", "phi")

#: Kinds whose map reads the whole element's on-axis profile: a piece of one is not the
#: same map over a shorter length (ImpactX ``SoftQuad.H``, ``SoftSol.H``, ``RFCavity.H``).
PROFILE_KINDS = frozenset({"ImpactX.SoftQuadrupole", "ImpactX.SoftSolenoid",
                           "ImpactX.RFCavity"})


@overload
def slice_params(params: Mapping[str, float], index: int, count: int) -> dict[str, float]: ...


@overload
def slice_params(params: Mapping[str, nm.Scalar], index: int, count: int
                 ) -> dict[str, nm.Scalar]: ...


def slice_params(params: Mapping[str, nm.Scalar], index: int, count: int
                 ) -> dict[str, float] | dict[str, nm.Scalar]:
    """Parameters of slice ``index`` of ``count`` from the element's (floats or tensors;
    all-float parameters give all-float slices): ``length`` and ``angle`` divided by
    ``count`` (the bend radius and every per-metre strength stay), a bend's entrance edge
    on the first slice only and its exit edge on the last."""
    out = dict(params)
    for field in LENGTH_FIELDS:
        if field in out:
            out[field] = out[field] / count
    for field in ("e1", "edge_int1"):
        if field in out and index > 0:
            out[field] = 0.0
    for field in ("e2", "edge_int2"):
        if field in out and index < count - 1:
            out[field] = 0.0
    return out


def has_pipe_aperture(element: Element) -> bool:
    """Whether the element has ImpactX's pipe aperture (``aperture_x``, ``aperture_y``)."""
    return "aperture_x" in element.params


def _piece(spec: MapSpec, piece: Element, index: int, count: int) -> MapSpec:
    """``spec`` (of the whole element) as the map of slice ``index`` of ``count``."""
    if count == 1:
        return replace(spec, element=piece, additive=False)

    def make(p: Params, r: RefState) -> Entries | Kernel:
        return spec.make(slice_params(p, index, count), r)

    reference = spec.reference
    after = None if reference is None else \
        (lambda p, r: reference(slice_params(p, index, count), r))
    return MapSpec(spec.impactx, piece, spec.linear, make, after, additive=False,
                   advance=spec.advance / count, reads_time=spec.reads_time)


def _pipe_specs(element: Element, parameter_fields: frozenset[str]) -> list[MapSpec]:
    """The element's ``nslice`` slices, each followed by its elliptical pipe aperture
    (ImpactX ``src/elements/mixin/pipeaperture.H``: lost where (x/a_x)^2 + (y/a_y)^2 > 1,
    :func:`backends.inhouse.aperture_masks.aperture_kernel`). Each slice is the element's
    map over ``length / nslice`` with ``nslice = 1`` (an exact integrator takes
    ``mapsteps`` steps per slice, as ImpactX's; ChrAcc updates the reference per slice);
    a bend keeps its entrance edge before the first slice and its exit edge after the
    last (:func:`slice_params`). A soft-edge element or cavity is one slice (its map reads the
    whole profile; the backend refuses ``nslice > 1`` with a pipe aperture)."""
    count = element.nslice
    if element.kind in PROFILE_KINDS and count != 1:
        raise ValueError(f"{element.kind} {element.name} with a pipe aperture and nslice "
                         f"{count}: its map reads the whole on-axis profile")
    out: list[MapSpec] = []
    for index in range(count):
        edges = slice_params(element.params, index, count)   # this slice's edges
        piece = replace(element, nslice=1, params={**element.params, **{
            k: edges[k] for k in ("e1", "edge_int1", "e2", "edge_int2") if k in edges}})
        fields = frozenset(f for f in parameter_fields
                           if f not in ("e1", "edge_int1") or index == 0)
        fields = frozenset(f for f in fields
                           if f not in ("e2", "edge_int2") or index == count - 1)
        out.extend(_piece(spec, piece, index, count)
                   for spec in TRANSLATORS[element.kind](piece, fields))
        out.append(MapSpec("PipeAperture", piece, False, lambda p, r: (
            aperture_masks.aperture_kernel(p["aperture_x"], p["aperture_y"],
                                           "elliptical"))))
    return out


def translate(element: Element, parameter_fields: frozenset[str] = frozenset()
              ) -> list[MapSpec]:
    """The maps of one element; ``parameter_fields`` are its fields that will be given as
    tensors (they keep maps that are the identity at the scenario's values). An element
    with a pipe aperture is its slices and their apertures (:func:`_pipe_specs`)."""
    if element.kind not in TRANSLATORS:
        raise ValueError(f"the in-house tracker does not translate {element.kind!r} "
                         f"({element.name})")
    if has_pipe_aperture(element):
        specs = _pipe_specs(element, parameter_fields)
    else:
        specs = TRANSLATORS[element.kind](element, parameter_fields)
    rotation = "tilt_ref" if element.kind == "SBend" else "z_rot"
    return _aligned(element, specs, parameter_fields, rotation)


def checked_parameters(elements: Sequence[Element],
                       parameters: Iterable[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    """The ``(element name, field)`` keys of ``parameters``; KeyError naming those whose
    element is not in ``elements``."""
    keys = frozenset(parameters)
    names = {e.name for e in elements}
    unknown = sorted(k for k in keys if k[0] not in names)
    if unknown:
        raise KeyError(f"parameters of elements not in the lattice: {unknown}")
    return keys


def declared_values(values: Mapping[tuple[str, str], Any] | None,
                    parameters: frozenset[tuple[str, str]], device: torch.device,
                    dtype: torch.dtype) -> dict[tuple[str, str], torch.Tensor]:
    """Parameter ``values`` as tensors on ``device`` in ``dtype``; KeyError naming those
    whose key is not among the declared ``parameters``."""
    given = dict(values or {})
    unknown = sorted(k for k in given if k not in parameters)
    if unknown:
        raise KeyError(f"{unknown} were not declared as parameters of this tracker "
                       f"(declared: {sorted(parameters)})")
    return {k: torch.as_tensor(v).to(device=device, dtype=dtype) for k, v in given.items()}
