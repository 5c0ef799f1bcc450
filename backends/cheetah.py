"""Cheetah adapter (``cheetah-accelerator`` 0.8.4): harness lattice -> ``cheetah.Segment``.

Coordinates (docs/conventions.md §1, exact in both directions): Cheetah's particle columns
are (x, px, y, py, tau, p, 1) with tau = ImpactX t and p = +dE/(p0 c) = -pt; x, px, y, py
are identical. The reference particle is given as the total energy [eV] and a
``cheetah.Species`` carrying ImpactX's rest energy, so both codes see the same reference.

Maps per harness element and effective tier (``Element.tier``). "exact" means the Cheetah
map is ImpactX's map to round-off (measured, docs/conventions.md §3 and this module's tests);
anything else is a labelled stand-in and the case's model becomes ``stand-in:...``.

=============  ============  ==================================================  =========
harness kind   tier          Cheetah element (tracking method)                   vs ImpactX
=============  ============  ==================================================  =========
Drift          linear        ``Drift`` (linear)                                  exact
Drift          paraxial      ``Drift`` (drift_kick_drift: the exact drift)       stand-in
Drift          exact         ``Drift`` (drift_kick_drift) = ``ExactDrift``       exact
Quadrupole     linear        ``Quadrupole(k1=Kn1)`` (linear)                     exact
Quadrupole     paraxial      ``Quadrupole`` (drift_kick_drift, Bmad quad)        stand-in
Quadrupole     exact         ``Quadrupole`` (drift_kick_drift, paraxial quad)    stand-in
SBend          linear        ``Dipole(angle, k1, e1, e2)`` (linear)              exact
SBend          exact         ``Dipole(angle, e1, e2)`` (drift_kick_drift)        exact
SBend+Kn1      exact         none: Cheetah's drift_kick_drift dipole ignores k1  unsupported
Sextupole      exact         ``Sextupole(k2=Kn2)`` (second_order truncation)     stand-in
Multipole      thin          ``CustomTransferMap`` for Kn1L/Ks1L (thin quad);    exact
                             Kn2L: a 1 nm second-order ``Sextupole``             stand-in
                             other orders: no thin Cheetah element               unsupported
Solenoid       linear        ``Solenoid(k=Ksol/2)`` (linear)                     exact
RFCavity       thin          none: ``Cavity`` of length 0 gives inf momenta      unsupported
Marker         any           ``Marker``                                          exact
Instrument     any           ``BPM`` (length 0) or a drift of its tier           as Drift
Aperture       any           ``Aperture`` (lost particles -> NaN rows)           exact
Kicker         any           ``HorizontalCorrector`` + ``VerticalCorrector``     exact
                             (length 0) between drift halves of its tier
SBend+edge_int any           ``Dipole(gap=2, fringe_integral=edge_int)``:        stand-in
                             -h tan(e - psi) for ImpactX's first order in psi
=============  ============  ==================================================  =========

Fields (:data:`HONOURED_FIELDS`): body offsets become ``misalignment`` and ``z_rot`` the
``tilt`` of quadrupoles and sextupoles (Cheetah's entry transform is ImpactX's
``shift_in``); a bend's ``tilt_ref`` its ``tilt``; a skew component (Ks1, Ks2) the normal
magnet of strength hypot(Kn, Ks) with tilt -atan2(Ks, Kn)/(N+1). Drifts, kickers and
solenoids honour offsets and rotations exactly without an attribute: their maps are
unchanged by them (a constant kick; maps that commute with transverse rotations). Any
other field set makes the case ``unsupported``, named. Measured against ImpactX (4000
particles, 2 GeV e-): offset, rotated and skew quadrupole, kickers, offset and rotated
solenoid and drift, tilted rectangular bend 8e-15 (linear), tilted exact bend 7.6e-12;
edge fringe (g_ref 0.4, e1 0.1, edge_int1 0.03) 2.4e-4 of sigma, 1.9e-3 of the fringe
effect itself.

Measured against ImpactX 26.10 (10 000 particles, fp64, max |dev| / std per coordinate,
worst coordinate): fodo_linear 2.0e-15, chicane 6.8e-15; exact drifts (2 GeV e-, 800 MeV p)
3e-13 in t; exact chicane bends with linear edges 1.4e-10 (abs 1.7e-14 m); solenoid, thin
quad and combined-function bend with edges (800 MeV p) 2.7e-15. Stand-ins: fodo_paraxial
1.9e-8 (ChrQuad itself: transverse 5e-15, t 4.4e-13 m abs at 5 MeV), fodo_exact 3.3e-5
(ExactQuad with 10 steps), fodo_sextupole 7.2e-5 (second-order sextupole truncation).
float32: the linear maps stay within 1e-6 of float64; drift_kick_drift converts through
energies in eV, which leaves pt an absolute error ~1e-7 at 2 GeV (2.7e-4 of sigma_pt).

Space charge (3D only): every element of length L > 0 is cut into ``kicks_per_element``
pieces, each tracked as [piece/2, ``SpaceChargeKick(L/n)``, piece/2]. Cheetah's Poisson
grid spans +-``domain_sigmas`` rms sizes about 0 (not about the centroid), deposits with
cloud-in-cell only, and uses ``+e E(rho(particle_charges))``, so particle charges are
given positive, |Q|/N (docs/conventions.md §4).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from backends.base import (
    Backend,
    Plan,
    Prepared,
    Unsupported,
    field_table,
    final_particles,
    int_order_note,
)
from backends.torch_support import device_support, synchronize, torch_dtype
from backends.translation import ALIGNMENT_FIELDS, around_kick, stand_in_label, thin_fields

if TYPE_CHECKING:
    import torch

    from harness.model.lattice import Element
    from harness.model.reference_particle import ReferenceParticle
    from harness.model.scenario import Scenario

#: Cheetah tracking methods used by this adapter.
LINEAR = "linear"
SECOND_ORDER = "second_order"
DRIFT_KICK_DRIFT = "drift_kick_drift"

#: Harness field -> factor to the Cheetah attribute where they differ (Cheetah's solenoid
#: k = Ksol / 2, docs/conventions.md §3); other fields map one to one (Kn1 -> k1, ...).
FIELD_FACTORS: dict[str, float] = {"Ksol": 0.5}

#: Length [m] of the second-order sextupole that stands in for a thin sextupole kick.
THIN_SEXTUPOLE_LENGTH = 1e-9


@dataclass(frozen=True)
class ElementPlan:
    """How one harness element is run in Cheetah.

    Attributes:
        method: Cheetah tracking method (``linear``, ``second_order``, ``drift_kick_drift``;
            empty for elements without one).
        stand_in: empty when the Cheetah map equals ImpactX's for the element's tier,
            otherwise a short description of the stand-in (goes into the model label).
    """

    method: str
    stand_in: str = ""


def _plan_drift(element: Element) -> ElementPlan | Unsupported:
    if element.kind == "Instrument" and element.length == 0.0:
        return ElementPlan("")
    if element.tier == "linear":
        return ElementPlan(LINEAR)
    if element.tier == "paraxial":
        return ElementPlan(DRIFT_KICK_DRIFT, "ChrDrift->exact drift")
    return ElementPlan(DRIFT_KICK_DRIFT)


def _plan_quadrupole(element: Element) -> ElementPlan | Unsupported:
    if element.tier == "linear":
        return ElementPlan(LINEAR)
    if element.tier == "paraxial":
        return ElementPlan(DRIFT_KICK_DRIFT, "ChrQuad->Bmad dkd quad")
    return ElementPlan(DRIFT_KICK_DRIFT,
                       f"ExactQuad{int_order_note(element)}->Bmad dkd (paraxial) quad")


def _plan_bend(element: Element) -> ElementPlan | Unsupported:
    fringe = any(element.params.get(f, 0.0) != 0.0 for f in ("edge_int1", "edge_int2"))
    stand_in = "DipEdge fringe->tan(e - psi) edge" if fringe else ""
    if element.tier == "linear":
        return ElementPlan(LINEAR, stand_in)
    if "Kn1" in element.params:
        return Unsupported(
            f"Cheetah has no exact combined-function bend ({element.name}: its "
            "drift_kick_drift Dipole ignores k1; ImpactX runs ExactCFbend)")
    return ElementPlan(DRIFT_KICK_DRIFT, stand_in)


def _plan_multipole(element: Element) -> ElementPlan | Unsupported:
    orders = thin_fields(element.params)
    other = sorted(k for k in orders if k not in ("Kn1L", "Ks1L", "Kn2L"))
    if other:
        return Unsupported(
            f"Cheetah has no thin multipole kick for {', '.join(other)} "
            f"({element.name}); it translates Kn1L, Ks1L and Kn2L only")
    if "Kn2L" in element.params:
        return ElementPlan(SECOND_ORDER, "thin Kn2L->1 nm second-order Sextupole")
    return ElementPlan(LINEAR)


def _plan_rf(element: Element) -> ElementPlan | Unsupported:
    return Unsupported(
        f"Cheetah has no short RF gap ({element.name}): a zero-length Cavity divides "
        "by its length (measured: infinite momenta), and its thick model adds "
        "Rosenzweig-Serafini focusing that ImpactX ShortRF does not have")


def _plan_kicker(element: Element) -> ElementPlan | Unsupported:
    return _plan_drift(element) if element.length != 0.0 else ElementPlan(LINEAR)


def _sliced_unsupported(element: Element) -> Unsupported | None:
    """Space charge cuts thick elements into pieces; a thick kicker's kick sits in its
    middle, which the pieces do not keep."""
    if element.kind == "Kicker" and element.length != 0.0:
        return Unsupported(f"thick Kicker with space charge ({element.name}): the adapter "
                           "does not cut a kicker around its kick")
    return None


class _Factory:
    """Builds Cheetah elements with tensors on one device and dtype; values may be floats or
    tensors (tensors keep their autograd graph)."""

    def __init__(self, device: str, dtype: str):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = torch_dtype(dtype)

    def tensor(self, value) -> torch.Tensor:
        if isinstance(value, self.torch.Tensor):
            return value.to(device=self.device, dtype=self.dtype)
        return self.torch.tensor(float(value), device=self.device, dtype=self.dtype)

    @property
    def kwargs(self) -> dict[str, Any]:
        return {"device": self.device, "dtype": self.dtype, "sanitize_name": True}


def _misalignment(params: dict[str, Any], make: _Factory):
    """Cheetah ``misalignment`` [dx, dy] from the body offsets (Cheetah's entry transform
    x' = x - dx, then the tilt rotation, is ImpactX's ``shift_in``)."""
    return make.torch.stack([make.tensor(params.get("x_offset", 0.0)),
                             make.tensor(params.get("y_offset", 0.0))])


def _build_drift(element, plan, params, fraction, first, last, name, make) -> list:
    import cheetah

    if plan.method == "":
        return [cheetah.BPM(name=name, **make.kwargs)]
    length = make.tensor(params.get("length", 0.0)) * fraction
    return [cheetah.Drift(length, tracking_method=plan.method, name=name, **make.kwargs)]


def _normal_and_tilt(params: dict[str, Any], order: int, make: _Factory):
    """Cheetah strength and tilt of a quadrupole (order 1) or sextupole (2): with a skew
    component, the normal magnet hypot(Kn, Ks) rotated by -atan2(Ks, Kn)/(N+1)
    (:func:`harness.model.lattice.rotated_normal`), plus the body rotation ``z_rot``."""
    t = make.tensor
    kn, tilt = t(params[f"Kn{order}"]), t(params.get("z_rot", 0.0))
    if f"Ks{order}" not in params:
        return kn, tilt
    ks = t(params[f"Ks{order}"])
    return make.torch.hypot(kn, ks), tilt - make.torch.atan2(ks, kn) / (order + 1)


def _thick_multipole(cls: str, order: int) -> Callable[..., list]:
    """The builder of a Cheetah ``Quadrupole`` (order 1, ``k1``) or ``Sextupole`` (2,
    ``k2``): strength and tilt of :func:`_normal_and_tilt`, the body offsets as
    ``misalignment``."""

    def build(element, plan, params, fraction, first, last, name, make) -> list:
        import cheetah

        strength, tilt = _normal_and_tilt(params, order, make)
        return [getattr(cheetah, cls)(
            make.tensor(params["length"]) * fraction, misalignment=_misalignment(params, make),
            tilt=tilt, tracking_method=plan.method, name=name,
            **{f"k{order}": strength}, **make.kwargs)]

    return build


def _build_bend(element, plan, params, fraction, first, last, name, make) -> list:
    """Cheetah ``Dipole``; the fringe integrals go in as ``fringe_integral`` with gap 2 m
    (Cheetah's edge uses fringe_integral * gap = 2 FINT HGAP = 2 edge_int)."""
    import cheetah

    t = make.tensor
    zero = t(0.0)
    return [cheetah.Dipole(
        t(params["length"]) * fraction, angle=t(params["angle"]) * fraction,
        k1=t(params.get("Kn1", 0.0)),
        dipole_e1=t(params["e1"]) if first else zero,
        dipole_e2=t(params["e2"]) if last else zero,
        gap=t(2.0), fringe_integral=t(params.get("edge_int1", 0.0)) if first else zero,
        fringe_integral_exit=t(params.get("edge_int2", 0.0)) if last else zero,
        tilt=t(params.get("tilt_ref", 0.0)), tracking_method=plan.method, name=name,
        **make.kwargs)]


def _build_solenoid(element, plan, params, fraction, first, last, name, make) -> list:
    import cheetah

    t = make.tensor
    return [cheetah.Solenoid(t(params["length"]) * fraction,
                             k=t(params["Ksol"]) * FIELD_FACTORS["Ksol"],
                             misalignment=_misalignment(params, make), name=name,
                             **make.kwargs)]


def _build_multipole(element, plan, params, fraction, first, last, name, make) -> list:
    out = []
    if "Kn1L" in params or "Ks1L" in params or "Kn2L" not in params:
        out.append(_thin_quadrupole(params, name, make))
    if "Kn2L" in params:
        out += _thin_sextupole(params["Kn2L"], name, make)
    return out


def _build_aperture(element, plan, params, fraction, first, last, name, make) -> list:
    import cheetah

    t = make.tensor
    shape = "elliptical" if float(params["elliptical"]) else "rectangular"
    return [cheetah.Aperture(x_max=t(params["x_limit"]), y_max=t(params["y_limit"]),
                             shape=shape, name=name, **make.kwargs)]


def _build_marker(element, plan, params, fraction, first, last, name, make) -> list:
    import cheetah

    return [cheetah.Marker(name=name, **make.kwargs)]


def _build_kicker(element, plan, params, fraction, first, last, name, make) -> list:
    """ImpactX's ``Kicker`` (px += -Kn0L, py += Ks0L, turned by ``z_rot`` as ImpactX's
    ``shift_out`` turns it) as zero-length ``HorizontalCorrector`` and
    ``VerticalCorrector`` (Cheetah: px += angle), between drift halves of the kicker."""
    import cheetah

    t = make.tensor
    torch = make.torch
    rot = t(params.get("z_rot", 0.0))
    kx, ky = -t(params["Kn0L"]), t(params["Ks0L"])
    cos, sin = torch.cos(rot), torch.sin(rot)
    kicks = [cheetah.HorizontalCorrector(t(0.0), angle=kx * cos - ky * sin, name=f"{name}_h",
                                         **make.kwargs),
             cheetah.VerticalCorrector(t(0.0), angle=kx * sin + ky * cos, name=f"{name}_v",
                                       **make.kwargs)]
    length = params.get("length", 0.0)
    return around_kick(float(length) if length == 0.0 else length, kicks, lambda side: [
        cheetah.Drift(t(length) * 0.5, tracking_method=plan.method, name=f"{name}_{side}",
                      **make.kwargs)])


@dataclass(frozen=True)
class KindTranslator:
    """How one harness kind becomes Cheetah elements.

    Attributes:
        plan: ``plan(element) -> ElementPlan | Unsupported`` (tracking method, stand-in).
        build: ``build(element, plan, params, fraction, first, last, name, make)`` -> the
            Cheetah elements of ``fraction`` of the element (1.0 the whole; a bend keeps its
            entrance edge only on the first piece and its exit edge only on the last).
    """

    plan: Callable[[Element], ElementPlan | Unsupported]
    build: Callable[..., list]


_THIN = KindTranslator(lambda e: ElementPlan(""), _build_marker)

#: harness kind -> its Cheetah translation.
TRANSLATORS: dict[str, KindTranslator] = {
    "Drift": KindTranslator(_plan_drift, _build_drift),
    "Instrument": KindTranslator(_plan_drift, _build_drift),
    "Quadrupole": KindTranslator(_plan_quadrupole, _thick_multipole("Quadrupole", 1)),
    "SBend": KindTranslator(_plan_bend, _build_bend),
    "Sextupole": KindTranslator(
        lambda e: ElementPlan(SECOND_ORDER,
                             f"ExactMultipole{int_order_note(e)}->second-order sextupole"),
        _thick_multipole("Sextupole", 2)),
    "Multipole": KindTranslator(_plan_multipole, _build_multipole),
    "Solenoid": KindTranslator(lambda e: ElementPlan(LINEAR), _build_solenoid),
    "RFCavity": KindTranslator(_plan_rf, _build_marker),
    "Marker": _THIN,
    "Aperture": KindTranslator(lambda e: ElementPlan(""), _build_aperture),
    "Kicker": KindTranslator(_plan_kicker, _build_kicker),
}

_ALIGNED = tuple(sorted(ALIGNMENT_FIELDS))

#: Element fields Cheetah honours per kind: every required field of its kinds plus these.
#: A drift, a kicker's constant kick and a solenoid are unchanged by a transverse offset
#: (drift, kick) or rotation (drift, solenoid: their maps commute with it), so those fields
#: are honoured exactly.
HONOURED_FIELDS: dict[str, frozenset[str]] = field_table(
    TRANSLATORS, Drift=_ALIGNED, Quadrupole=("Ks1", *_ALIGNED), Sextupole=("Ks2", *_ALIGNED),
    SBend=("Kn1", "edge_int1", "edge_int2", "tilt_ref"), Multipole=("Kn1L", "Ks1L", "Kn2L"),
    Solenoid=_ALIGNED, Kicker=_ALIGNED)


def plan_element(element: Element) -> ElementPlan | Unsupported:
    """The Cheetah map for one element at its effective tier, or why there is none."""
    if element.kind not in TRANSLATORS:
        return Unsupported(f"cheetah does not translate element kind {element.kind!r} "
                           f"({element.name})")
    return TRANSLATORS[element.kind].plan(element)


def _piece(element: Element, plan: ElementPlan, params: dict[str, Any], fraction: float,
           first: bool, last: bool, name: str, make: _Factory) -> list:
    """Cheetah elements for ``fraction`` of an element (see :class:`KindTranslator`)."""
    return TRANSLATORS[element.kind].build(element, plan, params, fraction, first, last,
                                           name, make)


def _thin_quadrupole(params: dict[str, Any], name: str, make: _Factory):
    """ImpactX thin ``Multipole`` of order 1 as a 7x7 map (MAD-X KNL/KSL): px -= Kn1L x -
    Ks1L y, py += Kn1L y + Ks1L x (ImpactX ``src/elements/Multipole.H``)."""
    import cheetah

    torch = make.torch
    kn = make.tensor(params.get("Kn1L", 0.0))
    ks = make.tensor(params.get("Ks1L", 0.0))
    zero = kn * 0.0
    rows = [[zero] * 7 for _ in range(7)]
    for i in range(7):
        rows[i][i] = zero + 1.0
    rows[1][0], rows[1][2] = -kn, ks
    rows[3][2], rows[3][0] = kn, ks
    matrix = torch.stack([torch.stack(r) for r in rows])
    return cheetah.CustomTransferMap(matrix, length=make.tensor(0.0), name=name,
                                     **make.kwargs)


def _thin_sextupole(k2l, name: str, make: _Factory) -> list:
    """ImpactX's thin sextupole kick (``Multipole`` order 3: px -= Kn2L (x^2 - y^2) / 2,
    py += Kn2L x y) as the thin limit of Cheetah's second-order ``Sextupole``: length
    :data:`THIN_SEXTUPOLE_LENGTH`, k2 = Kn2L / length, between two linear drifts of minus
    half that length. The residual is O(length); measured 8e-13 of sigma_x (2 GeV,
    Kn2L = 5 1/m^2, sigma_x = 1 mm) against ImpactX ``Multipole(3, Kn2L)``."""
    import cheetah

    eps = make.tensor(THIN_SEXTUPOLE_LENGTH)
    kw = make.kwargs
    return [cheetah.Drift(-0.5 * eps, tracking_method=LINEAR, name=f"{name}_back", **kw),
            cheetah.Sextupole(eps, k2=make.tensor(k2l) / eps, tracking_method=SECOND_ORDER,
                              name=f"{name}_k2", **kw),
            cheetah.Drift(-0.5 * eps, tracking_method=LINEAR, name=f"{name}_fwd", **kw)]


def build_elements(scenario: Scenario, device: str = "cpu", dtype: str = "float64",
                   updates: dict[tuple[str, str], Any] | None = None,
                   plans: tuple[ElementPlan, ...] | None = None) -> list:
    """The Cheetah elements of a scenario (call after :meth:`CheetahBackend.plan`);
    ``updates`` maps ``(element name, field)`` to a value (float or tensor) that replaces
    the field everywhere the element occurs; ``plans``: the elements' plans made already
    (:attr:`backends.base.Plan.lattice`), else they are made here."""
    import cheetah

    updates = updates or {}
    make = _Factory(device, dtype)
    sc = scenario.space_charge
    out: list = []
    for index, element in enumerate(scenario.elements):
        plan = plan_element(element) if plans is None else plans[index]
        if isinstance(plan, Unsupported):
            raise ValueError(plan.reason)
        params = {**element.params,
                  **{f: v for (n, f), v in updates.items() if n == element.name}}
        name = f"{element.name}_{index}"
        if sc is None or element.length == 0.0:
            out += _piece(element, plan, params, 1.0, True, True, name, make)
            continue
        n = sc.kicks_per_element
        half = 0.5 / n
        extent = make.tensor(domain_sigmas(sc))
        for k in range(n):
            out += _piece(element, plan, params, half, k == 0, False, f"{name}_{k}a", make)
            out.append(cheetah.SpaceChargeKick(
                make.tensor(params["length"]) / n, grid_shape=tuple(sc.grid or ()),
                grid_extent_x=extent, grid_extent_y=extent, grid_extent_tau=extent,
                name=f"{name}_{k}sc", **make.kwargs))
            out += _piece(element, plan, params, half, False, k == n - 1, f"{name}_{k}b",
                          make)
    return out


#: Half-width of Cheetah's space-charge mesh in rms sizes where the scenario states no
#: ``space_charge.domain_sigmas`` (``SpaceChargeKick``'s default ``grid_extent`` 3).
DOMAIN_SIGMAS = 3.0


def domain_sigmas(space_charge) -> float:
    """The scenario's ``space_charge.domain_sigmas``, else :data:`DOMAIN_SIGMAS`."""
    value = space_charge.domain_sigmas
    return DOMAIN_SIGMAS if value is None else float(value)


def cheetah_species(reference: ReferenceParticle, device: str = "cpu", dtype: str = "float64"):
    """A Cheetah species with ImpactX's rest energy and charge (docs/conventions.md §1)."""
    import cheetah

    make = _Factory(device, dtype)
    return cheetah.Species(f"{reference.species}_impactx",
                           num_elementary_charges=make.tensor(reference.charge_qe),
                           mass_eV=make.tensor(reference.mass_eV),
                           device=make.device, dtype=make.dtype)


def to_cheetah_columns(particles):
    """(N, 6) ImpactX (x, px, y, py, t, pt) -> (N, 7) Cheetah (x, px, y, py, tau, p, 1);
    numpy or torch (keeps the autograd graph)."""
    if isinstance(particles, np.ndarray):
        out = np.ones((particles.shape[0], 7), dtype=particles.dtype)
        out[:, :6] = particles
        out[:, 5] = -particles[:, 5]
        return out
    import torch

    ones = torch.ones_like(particles[:, :1])
    return torch.cat([particles[:, :5], -particles[:, 5:6], ones], dim=1)


def to_impactx_columns(particles):
    """(N, 7) Cheetah columns -> (N, 6) ImpactX columns; numpy or torch."""
    if isinstance(particles, np.ndarray):
        out = particles[:, :6].copy()
        out[:, 5] = -out[:, 5]
        return out
    import torch

    return torch.cat([particles[:, :5], -particles[:, 5:6]], dim=1)


class CheetahPrepared(Prepared):
    """A scenario as a ``cheetah.Segment`` on one device and dtype.

    Attributes:
        survival: after :meth:`extract`, a float64 mask (1 transmitted, 0 lost at an
            aperture), in injection order; :meth:`extract` returns lost particles as NaN
            rows (the harness convention, as ImpactX's adapter does).
    """

    def __init__(self, scenario: Scenario, device: str, dtype: str, model: str,
                 plans: tuple[ElementPlan, ...] | None = None):
        import cheetah
        import torch

        self.scenario = scenario
        self.device = torch.device(device)
        self.dtype = torch_dtype(dtype)
        self.model = model
        self.threads = torch.get_num_threads()
        self.segment = cheetah.Segment(build_elements(scenario, device, dtype, plans=plans))
        reference = scenario.reference_particle
        self.species = cheetah_species(reference, device, dtype)
        self.energy_eV = reference.total_energy_eV
        self.bunch_charge_C = abs(scenario.beam.bunch_charge_C)
        self.survival: np.ndarray | None = None

    def beam(self, particles):
        """A ``ParticleBeam`` of ImpactX-ordered particles (numpy float64 or a tensor)."""
        import cheetah
        import torch

        if isinstance(particles, np.ndarray):
            columns = torch.from_numpy(to_cheetah_columns(np.asarray(particles, np.float64)))
        else:
            columns = to_cheetah_columns(particles)
        columns = columns.to(device=self.device, dtype=self.dtype)
        n = columns.shape[0]
        charges = torch.full((n,), self.bunch_charge_C / n, device=self.device,
                             dtype=self.dtype)
        return cheetah.ParticleBeam(
            columns, energy=torch.tensor(self.energy_eV, device=self.device,
                                         dtype=self.dtype),
            particle_charges=charges, species=self.species, device=self.device,
            dtype=self.dtype)

    def inject(self, particles: np.ndarray):
        return self.beam(particles)

    def run(self, handle):
        import torch

        with torch.no_grad():
            return self.segment.track(handle)

    def extract(self, handle) -> np.ndarray:
        columns = handle.particles.detach().to("cpu", dtype=torch_dtype("float64")).numpy()
        self.survival = (handle.survival_probabilities.detach()
                         .to("cpu", dtype=torch_dtype("float64")).numpy())
        # a particle Cheetah blew up keeps survival 1: it is a blow-up, not a loss
        return final_particles(to_impactx_columns(columns), lost=self.survival == 0.0)

    def synchronize(self) -> None:
        synchronize(self.device)


# ------------------------------------------------------ envelope (tracking: envelope)
# The covariance helpers of backends.cheetah_envelope (see its module text): ImpactX
# (x, px, y, py, t, pt) covariance <-> Cheetah (x, px, y, py, tau, p, 1) with p = -pt.


#: ImpactX (x, px, y, py, t, pt) -> Cheetah (x, px, y, py, tau, p): p = -pt.
J = np.diag([1.0, 1.0, 1.0, 1.0, 1.0, -1.0])

def to_cheetah_covariance(sigma):
    """(6, 6) ImpactX covariance -> (7, 7) Cheetah covariance (numpy or torch, batched)."""
    if isinstance(sigma, np.ndarray):
        out = np.zeros(sigma.shape[:-2] + (7, 7))
        out[..., :6, :6] = J @ sigma @ J.T
        return out
    import torch

    jt = torch.as_tensor(J, dtype=sigma.dtype, device=sigma.device)
    inner = jt @ sigma @ jt.T
    return torch.nn.functional.pad(inner, (0, 1, 0, 1))

def to_impactx_covariance(cov):
    """(7, 7) Cheetah covariance -> (6, 6) ImpactX covariance (numpy or torch)."""
    if isinstance(cov, np.ndarray):
        return J @ cov[..., :6, :6] @ J.T
    import torch

    jt = torch.as_tensor(J, dtype=cov.dtype, device=cov.device)
    return jt @ cov[..., :6, :6] @ jt.T

def linearised(element: Any) -> Any:
    """The element with its first-order map as tracking method (Cheetah tracks a
    ``ParameterBeam`` through first-order maps only)."""
    methods = getattr(element, "supported_tracking_methods", None)
    if methods and "linear" in methods and element.tracking_method != "linear":
        element.tracking_method = "linear"
    return element

def parameter_beam(scenario: Scenario, sigma, device: str = "cpu", dtype: str = "float64"
                   ) -> Any:
    """The ``cheetah.ParameterBeam`` of the ImpactX covariance ``sigma`` ((6, 6)) about the
    scenario's reference particle (mean (0, 0, 0, 0, 0, 0, 1))."""
    import cheetah
    import torch

    from backends.torch_support import torch_dtype

    tdtype = torch_dtype(dtype)
    sigma_t = torch.as_tensor(np.asarray(sigma) if isinstance(sigma, np.ndarray) else sigma)
    sigma_t = sigma_t.to(device=device, dtype=tdtype)
    mu = torch.zeros(7, device=device, dtype=tdtype)
    mu[6] = 1.0
    reference = scenario.reference_particle
    beam = cheetah.ParameterBeam(
        mu, to_cheetah_covariance(sigma_t),
        energy=torch.tensor(reference.total_energy_eV, device=device, dtype=tdtype),
        total_charge=torch.tensor(abs(scenario.beam.bunch_charge_C), device=device,
                                  dtype=tdtype),
        species=cheetah_species(reference, device, dtype), device=device, dtype=tdtype)
    return beam

def track_group(group: list[Any], beam: Any) -> Any:
    """A ``ParameterBeam`` through a list of Cheetah elements."""
    for piece in group:
        with warnings.catch_warnings():
            # an aperture leaves a ParameterBeam unchanged (Cheetah warns so); ImpactX's
            # envelope mode does the same (Aperture.H transport_map: the identity)
            warnings.filterwarnings("ignore", "Aperture tracking is currently only")
            beam = piece.track(beam)
    return beam


class CheetahBackend(Backend):
    """Cheetah (DESY), a differentiable PyTorch tracker."""

    name: ClassVar[str] = "cheetah"
    distribution: ClassVar[str] = "cheetah-accelerator"
    install_hint: ClassVar[str] = "pip install cheetah-accelerator"
    element_kinds: ClassVar[frozenset[str]] = frozenset(TRANSLATORS)
    honoured_fields: ClassVar[dict[str, frozenset[str]]] = HONOURED_FIELDS
    differentiable: ClassVar[bool] = True
    space_charge_kinds: ClassVar[frozenset[str] | None] = frozenset({"3d"})
    space_charge_reasons: ClassVar[dict[str, str]] = {
        kind: "Cheetah's only space-charge model is SpaceChargeKick, a 3D IGF Poisson solve "
              "on a 3D mesh; it has no 2D, 2.5D or analytic Gaussian kick"
        for kind in ("2d", "2p5d", "gauss3d", "gauss2p5d")}
    takes_plans: ClassVar[bool] = True
    tracking_modes: ClassVar[frozenset[str]] = frozenset({"particles", "envelope"})
    envelope_class: ClassVar[str] = "backends.cheetah_envelope:CheetahEnvelope"

    @classmethod
    def _import(cls) -> None:
        import cheetah  # noqa: F401

    def plan(self, scenario: Scenario, device: str = "cpu",
             dtype: str = "float64") -> Plan | Unsupported:
        """The common checks, device and dtype (torch's), space charge, and every element's
        Cheetah map planned once (:attr:`Plan.lattice`: one :class:`ElementPlan` each)."""
        base = self.common_checks(scenario, device, dtype)
        if base is not None:
            return base
        refused = device_support(self.name, device, dtype)
        if refused is not None:
            return refused
        notes = []
        sc = scenario.space_charge
        if sc is not None:
            if sc.deposition != "cic":
                return Unsupported(f"deposition {sc.deposition!r}: Cheetah's "
                                   "SpaceChargeKick deposits cloud-in-cell only")
            if sc.prob_relative is not None and sc.domain_sigmas is None:
                return Unsupported(f"space_charge.prob_relative {sc.prob_relative:g}: "
                                   "Cheetah's SpaceChargeKick mesh spans +-k rms sizes "
                                   "(grid_extent), not a multiple of the beam's extent; "
                                   "state space_charge.domain_sigmas for Cheetah")
            notes.append(f"SpaceChargeKick grid {tuple(sc.grid or ())} over +-{domain_sigmas(sc):g}"
                         " sigma about 0, positive particle charges")
        stand_ins: list[str] = []
        plans: list[ElementPlan] = []
        for element in scenario.elements:
            sliced = _sliced_unsupported(element) if sc is not None else None
            if sliced is not None:
                return sliced
            plan = plan_element(element)
            if isinstance(plan, Unsupported):
                return plan
            plans.append(plan)
            if plan.stand_in and plan.stand_in not in stand_ins:
                stand_ins.append(plan.stand_in)
        return Plan(model_label(scenario, stand_ins), "; ".join(notes), scenario, device,
                    dtype, tuple(plans))

    def prepare(self, scenario: Scenario | Plan, device: str = "cpu",
                dtype: str = "float64") -> CheetahPrepared:
        """The Cheetah segment of a plan (a scenario is planned first)."""
        plan = self.planned(scenario, device, dtype)
        return CheetahPrepared(plan.scenario, plan.device, plan.dtype, plan.model,
                               plan.lattice)

    def differentiable_objective(
        self, scenario: Scenario, parameter_names: list[str], objective: str,
        particles: np.ndarray | int | None = None, device: str = "cpu",
        dtype: str = "float64",
    ) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
        """``(f, theta0)``: the one observable ``objective`` of :meth:`observables_of`."""
        observe, theta0 = self.observables_of(scenario, parameter_names, [objective],
                                              particles, device, dtype)
        return (lambda theta: observe(theta)[objective]), theta0

    def observables_of(
        self, what: Scenario | Plan, parameter_names: list[str], names: list[str],
        particles: np.ndarray | int | None = None, device: str = "cpu",
        dtype: str = "float64",
    ) -> tuple[Callable[[torch.Tensor], dict[str, torch.Tensor]], torch.Tensor]:
        """``(g, theta0)``: g(theta) is the dict of observables ``names`` (harness units)
        at the lattice end, from one track, for parameter values ``theta`` (1D tensor, order of
        ``parameter_names``: ``quad1.Kn1``, ``b1.angle``, ``d1.length``, ``beam.twiss.
        beta_x``, ...), differentiable by autograd; theta0 holds the scenario's values.
        Particles lost at an aperture do not count (weight 0).

        ``particles`` is the initial (N, 6) ImpactX-ordered array, or a particle count
        (None: the scenario's). With beam parameters the N particles are drawn inside the
        graph (:func:`harness.model.particles.generate_torch`, the scenario's seed), so an array
        only gives N.
        """
        import torch

        from harness.model import observables
        from harness.model.parameters import resolve_parameters
        from harness.model.particles import generate_torch

        plan = self.planned(what, device, dtype)  # a plan as it is: no second decision
        scenario: Scenario = plan.scenario
        prepared = CheetahPrepared(scenario, device, dtype, plan.model, plan.lattice)
        params = resolve_parameters(scenario, list(parameter_names))
        has_beam = any(p.target == "beam" for p in params)
        fixed = particles if isinstance(particles, np.ndarray) else None
        count = (len(fixed) if fixed is not None
                 else scenario.beam.particles if particles is None else int(particles))
        if fixed is None and not has_beam:
            from harness.model.particles import generate

            fixed = generate(scenario.beam, count)
        weigh = any(e.kind == "Aperture" for e in scenario.elements)

        def envelope_observables(segment: Any, beam_values: dict[str, Any]
                                 ) -> dict[str, torch.Tensor]:
            # tracking: envelope: the beam's covariance (differentiable in beam parameters)
            # as a ParameterBeam through the segment's first-order maps
            from harness.model.particles import beam_cholesky

            factor = beam_cholesky(scenario.beam, beam_values)
            factor = torch.as_tensor(factor).to(device=prepared.device, dtype=prepared.dtype)
            sigma = factor @ factor.transpose(-1, -2)
            beam = parameter_beam(scenario, sigma, device, dtype)
            out = track_group([linearised(e) for e in segment.elements], beam)
            cov = to_impactx_covariance(out.cov)
            reference = scenario.reference_particle
            mean = torch.zeros(6, device=cov.device, dtype=cov.dtype)
            return observables.observables_from_moments(mean, cov, list(names),
                                                        reference.beta_gamma, reference.beta)

        theta0 = torch.tensor([p.value for p in params], device=prepared.device,
                              dtype=prepared.dtype)

        def g(theta: torch.Tensor) -> dict[str, torch.Tensor]:
            updates = {(p.owner, p.field): theta[i] for i, p in enumerate(params)
                       if p.target == "element"}
            beam_values = {f"{p.owner}.{p.field}": theta[i] for i, p in enumerate(params)
                           if p.target == "beam"}
            segment = cheetah_segment(scenario, device, dtype, updates, plan.lattice)
            if scenario.tracking == "envelope":
                return envelope_observables(segment, beam_values)
            if beam_values:
                initial = generate_torch(scenario.beam, count, beam_values,
                                         dtype=prepared.dtype, device=prepared.device)
                beam = prepared.beam(initial)
            else:
                beam = prepared.beam(fixed)
            out = segment.track(beam)
            final = to_impactx_columns(out.particles)
            weights = out.survival_probabilities if weigh else None
            return observables.compute_for(final, list(names), scenario.reference_particle,
                                           weights)

        return g, theta0

    def differentiable_observables(self, scenario: Scenario | Plan, parameters: list[str],
                                   names: list[str], particles: np.ndarray, device: str,
                                   dtype: str):
        """``(g, theta0)`` of :meth:`observables_of` (see
        :meth:`Backend.differentiable_observables`): the given particles for element
        parameters, the seeded draw of ``len(particles)`` particles when a beam parameter is
        among them."""
        beam = any(name.startswith("beam.") for name in parameters)
        return self.observables_of(scenario, list(parameters), list(names),
                                   len(particles) if beam else particles, device, dtype)


def cheetah_segment(scenario: Scenario, device: str = "cpu", dtype: str = "float64",
                    updates: dict[tuple[str, str], Any] | None = None,
                    plans: tuple[ElementPlan, ...] | None = None):
    """A ``cheetah.Segment`` of the scenario (see :func:`build_elements`)."""
    import cheetah

    return cheetah.Segment(build_elements(scenario, device, dtype, updates, plans))


def model_label(scenario: Scenario, stand_ins: list[str]) -> str:
    """The scenario's model signature when every map is ImpactX's, else
    ``stand-in:cheetah(<what replaces what>)`` with the space-charge model appended."""
    label = stand_in_label("cheetah", scenario, stand_ins)
    if stand_ins and scenario.space_charge is not None:
        label += f"|sc:{scenario.space_charge.kind}"
    return label


BACKEND = CheetahBackend
