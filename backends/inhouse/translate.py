"""Harness elements -> the ImpactX element maps that model them, per effective tier.

=============  ========================  ==========================================
harness kind   tier                      ImpactX maps (in order)
=============  ========================  ==========================================
Drift          linear/paraxial/exact     ``Drift`` / ``ChrDrift`` / ``ExactDrift``
Quadrupole     linear/paraxial/exact     ``Quad`` / ``ChrQuad`` / ``ExactQuad``
SBend          linear                    ``DipEdge(e1)``, ``Sbend`` (``CFbend`` with Kn1),
                                         ``DipEdge(e2)``
SBend          exact                     ``DipEdge(e1)``, ``ExactSbend`` (``ExactCFbend``
                                         with Kn1), ``DipEdge(e2)``
Sextupole      exact                     ``ExactMultipole(k_normal=[0, 0, Kn2])``
Multipole      (thin, any)               ``Multipole`` per order (KnNL, KsNL)
Solenoid       linear                    ``Sol``
RFCavity       (thin, any)               ``ShortRF(V = |q| voltage / m c^2, phase)``
Instrument     any                       drift of its tier when it has a length
Marker         any                       identity
Aperture       any                       ``Aperture`` (transmit)
=============  ========================  ==========================================

Edges use the linear ``DipEdge`` model with zero gap (rc = length/angle of their bend);
an edge with a constant zero angle is the identity and is left out. Exact integrators take
``nslice * mapsteps`` second-order steps (ImpactX's default ``int_order = 2``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from backends.inhouse import aperture, bend, drift, multipole, quadrupole, rf, solenoid
from backends.inhouse import numeric as nm
from backends.inhouse.kinds import KINDS
from backends.inhouse.maps import Entries, Kernel
from backends.inhouse.reference import RefState
from harness.lattice import Element

Params = dict[str, nm.Scalar]


@dataclass(frozen=True)
class MapSpec:
    """One ImpactX element map of a harness element.

    Attributes:
        impactx: ImpactX element class it reproduces (e.g. ``ChrQuad``).
        element: the harness element.
        linear: True when ``make`` returns 6x6 entries, False when it returns a Kernel.
        make: ``make(params, ref) -> Entries | Kernel`` from the element's parameters (SI,
            floats or tensors) and the reference particle before the map.
        reference: ``reference(params, ref) -> RefState`` after the map (RF gaps only).
    """

    impactx: str
    element: Element
    linear: bool
    make: Callable[[Params, RefState], Entries | Kernel]
    reference: Callable[[Params, RefState], RefState] | None = None


def _drift_spec(element: Element, tier: str) -> MapSpec:
    if tier == "linear":
        return MapSpec("Drift", element, True, lambda p, r: drift.drift_entries(p["length"], r))
    if tier == "paraxial":
        return MapSpec("ChrDrift", element, False,
                       lambda p, r: drift.chr_drift_kernel(p["length"], r))
    return MapSpec("ExactDrift", element, False,
                   lambda p, r: drift.exact_drift_kernel(p["length"], r))


def _quad_spec(element: Element) -> MapSpec:
    tier, steps = element.tier, element.integrator_steps
    if tier == "linear":
        return MapSpec("Quad", element, True,
                       lambda p, r: quadrupole.quad_entries(p["length"], p["Kn1"], r))
    if tier == "paraxial":
        return MapSpec("ChrQuad", element, False,
                       lambda p, r: quadrupole.chr_quad_kernel(p["length"], p["Kn1"], r))
    return MapSpec("ExactQuad", element, False,
                   lambda p, r: quadrupole.exact_quad_kernel(p["length"], p["Kn1"], r, steps))


def _edge_spec(element: Element, field: str) -> MapSpec:
    return MapSpec("DipEdge", element, True,
                   lambda p, r: bend.dipedge_entries(p[field], p["length"], p["angle"]))


def _bend_specs(element: Element, parameter_fields: frozenset[str]) -> list[MapSpec]:
    exact = element.tier == "exact"
    combined = "Kn1" in element.params
    steps = element.integrator_steps
    if combined and exact:
        body = MapSpec("ExactCFbend", element, False, lambda p, r: bend.exact_cfbend_kernel(
            p["length"], p["angle"], p["Kn1"], r, steps))
    elif combined:
        body = MapSpec("CFbend", element, True, lambda p, r: bend.cfbend_entries(
            p["length"], p["angle"], p["Kn1"], r))
    elif exact:
        body = MapSpec("ExactSbend", element, False, lambda p, r: bend.exact_sbend_kernel(
            p["length"], p["angle"], r))
    else:
        body = MapSpec("Sbend", element, True, lambda p, r: bend.sbend_entries(
            p["length"], p["angle"], r))
    out = []
    if element.params.get("e1", 0.0) != 0.0 or "e1" in parameter_fields:
        out.append(_edge_spec(element, "e1"))
    out.append(body)
    if element.params.get("e2", 0.0) != 0.0 or "e2" in parameter_fields:
        out.append(_edge_spec(element, "e2"))
    return out


def multipole_strengths(params: Params) -> tuple[multipole.Strength, ...]:
    """(order, KnNL, KsNL) per order from thin-multipole fields ``Kn2L``, ``Ks1L``, ..."""
    orders: dict[int, list] = {}
    for key, value in params.items():
        if key.startswith(("Kn", "Ks")) and key.endswith("L") and key[2:-1].isdigit():
            slot = orders.setdefault(int(key[2:-1]), [0.0, 0.0])
            slot[0 if key.startswith("Kn") else 1] = value
    return tuple((n, kn, ks) for n, (kn, ks) in sorted(orders.items()))


def _multipole_specs(element: Element) -> list[MapSpec]:
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


def translate(element: Element, parameter_fields: frozenset[str] = frozenset()
              ) -> list[MapSpec]:
    """The maps of one element; ``parameter_fields`` are its fields that will be given as
    tensors (they keep maps that are the identity at the scenario's values)."""
    kind = element.kind
    if kind not in KINDS:
        raise ValueError(f"the in-house tracker does not translate {kind!r} ({element.name})")
    if kind == "Drift":
        return [_drift_spec(element, element.tier)]
    if kind == "Instrument":
        has_length = element.length != 0.0 or "length" in parameter_fields
        return [_drift_spec(element, element.tier)] if has_length else []
    if kind == "Marker":
        return []
    if kind == "Quadrupole":
        return [_quad_spec(element)]
    if kind == "SBend":
        return _bend_specs(element, parameter_fields)
    if kind == "Sextupole":
        steps = element.integrator_steps
        return [MapSpec("ExactMultipole", element, False,
                        lambda p, r: multipole.exact_multipole_kernel(
                            p["length"], ((2, p["Kn2"], 0.0),), r, steps))]
    if kind == "Multipole":
        return _multipole_specs(element)
    if kind == "Solenoid":
        return [MapSpec("Sol", element, True,
                        lambda p, r: solenoid.sol_entries(p["length"], p["Ksol"], r))]
    if kind == "RFCavity":
        return [MapSpec("ShortRF", element, False,
                        lambda p, r: rf.short_rf_kernel(p["voltage"], p["frequency"],
                                                        p["phase"], r),
                        reference=lambda p, r: rf.reference_after(p["voltage"], p["phase"], r))]
    return [MapSpec("Aperture", element, False, lambda p, r: aperture.aperture_kernel(
        p["x_limit"], p["y_limit"], bool(p["elliptical"])))]
