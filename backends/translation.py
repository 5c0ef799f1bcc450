"""The translation pieces every adapter shares: one copy of each, the adapters call them.

An adapter's own module says what a harness element becomes in its code; what does not
depend on the code lives here: the multipole orders of a thin element, the thick kicker as a
kick between two drift halves, an aperture's half-widths, a bend's pole faces, the alignment
fields, the refusal-first support preamble, the ``stand-in:<code>(...)`` model label, and
:class:`LineBackend`, the plan/prepare of an adapter whose lattice is a line of specs.
Element fields and their units are those of :data:`harness.model.kinds.KIND_SPECS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from backends.base import (
    Backend,
    Plan,
    Prepared,
    Unsupported,
    translate_element,
    translate_line,
)
from harness.model.kinds import ALIGNMENT
from harness.model.lattice import thick_multipoles, thin_multipoles
from harness.model.scenario import model_signature

if TYPE_CHECKING:
    from harness.model.lattice import Element
    from harness.model.scenario import Scenario

T = TypeVar("T")

#: The body-alignment fields (``x_offset``, ``y_offset`` [m], ``z_rot`` [rad]).
ALIGNMENT_FIELDS: frozenset[str] = frozenset(ALIGNMENT)

#: Kinds whose linear-tier map an adapter may run as one fused matrix (pyAT's
#: ``find_elem_m66``, Xsuite's first-order Taylor map).
LINEARISED_KINDS: frozenset[str] = frozenset({"Drift", "Quadrupole", "SBend", "Solenoid",
                                              "Instrument"})


@dataclass(frozen=True)
class Translation:
    """The code's elements of one harness element and, when they are not ImpactX's map of
    the element's tier, a short description of the stand-in (it goes into the model
    label)."""

    specs: tuple[Any, ...]
    stand_in: str = ""


def multipole_orders(params: dict[str, Any]) -> dict[int, tuple[float, float]]:
    """``{order N: (KnNL, KsNL)}`` of a thin element's integrated fields as floats, ordered
    by N (a missing component is 0.0; :func:`harness.model.lattice.thin_multipoles`)."""
    return {n: (float(kn), float(ks)) for n, (kn, ks) in thin_multipoles(params).items()}


def thin_fields(params: dict[str, Any]) -> dict[str, Any]:
    """The thin-multipole fields ``KnNL`` / ``KsNL`` an element sets, by name, without the
    zero floats (tensors are kept: they are parameters of a differentiable track)."""
    out = {}
    for n, (kn, ks) in thin_multipoles(params).items():
        for prefix, value in (("Kn", kn), ("Ks", ks)):
            if f"{prefix}{n}L" in params and (not isinstance(value, float) or value != 0.0):
                out[f"{prefix}{n}L"] = value
    return out


def padded_orders(orders: dict[int, tuple[float, float]]) -> tuple[list[float], list[float]]:
    """``(normal, skew)`` lists indexed by order 0..max of ``orders`` (zeros between)."""
    top = max(orders, default=-1)
    return ([orders.get(n, (0.0, 0.0))[0] for n in range(top + 1)],
            [orders.get(n, (0.0, 0.0))[1] for n in range(top + 1)])


def padded_multipoles(params: dict[str, Any]) -> tuple[list[float], list[float]]:
    """``(normal, skew)`` integrated strengths ``KnNL``, ``KsNL`` [1/m^N] of a thin element,
    indexed by order 0..max (:func:`padded_orders` of :func:`multipole_orders`)."""
    return padded_orders(multipole_orders(params))


# --------------------------------------------------------------------------- the kicker


def kick_of(element: Element) -> Element:
    """A kicker's thin kick as an element of the same kind with only ``Kn0L`` and ``Ks0L``
    (ImpactX ``Kicker.H``: px += -Kn0L, py += Ks0L, the order-0 thin multipole's signs)."""
    return replace(element, params={"Kn0L": float(element.params["Kn0L"]),
                                    "Ks0L": float(element.params["Ks0L"])})


def half_drift_of(element: Element) -> Element:
    """Half a thick kicker's length as a drift element of its tier (``length`` only)."""
    return replace(element, params={"length": 0.5 * element.length})


def around_kick(length: Any, kick: Sequence[T], half: Callable[[str], Sequence[T]]
                ) -> list[T]:
    """A kicker of ``length`` [m]: its thin ``kick`` alone at length 0, else the kick
    between two drift halves ``half("in")`` and ``half("out")`` (how the ImpactX adapter
    and the in-house tracker build a thick ``Kicker``)."""
    if isinstance(length, float) and length == 0.0:
        return list(kick)
    return [*half("in"), *kick, *half("out")]


def kicker_translator(thin: Callable[[Element], Translation],
                      drift: Callable[[Element], Translation]
                      ) -> Callable[[Element], Translation]:
    """The ``Kicker`` translator of an adapter, from its thin-multipole (or kick) and drift
    translators."""

    def kicker(element: Element) -> Translation:
        """A steering kick (ImpactX ``Kicker.H``: px += -Kn0L, py += Ks0L, independent of
        the momentum deviation): the adapter's order-0 thin kick, whose signs and
        normalisation are the same; a thick kicker is the kick between the two drift halves
        of its tier, as the ImpactX adapter builds it (:func:`around_kick`), and the drift's
        stand-in description goes with it."""
        kick = thin(kick_of(element)).specs
        if element.length == 0.0:
            return Translation(tuple(kick))
        half = drift(half_drift_of(element))
        return Translation(tuple(around_kick(element.length, kick, lambda _: half.specs)),
                           half.stand_in)

    return kicker


# --------------------------------------------------------------------------- apertures, edges


def aperture_limits(params: dict[str, Any]) -> tuple[float, float, bool]:
    """``(x_limit, y_limit [m], elliptical)`` of an ``Aperture`` element."""
    return (float(params["x_limit"]), float(params["y_limit"]),
            bool(float(params.get("elliptical", 0.0))))


def bend_edges(params: dict[str, Any]) -> list[tuple[str, float, float]]:
    """``[(face "1" or "2", pole-face angle [rad], fringe integral edge_int [m]), ...]`` of
    the bend's faces that act: a face of zero angle and zero fringe integral is the
    identity (ImpactX ``DipEdge.H``) and is left out."""
    out = []
    for face in ("1", "2"):
        psi = float(params.get(f"e{face}", 0.0))
        edge_int = float(params.get(f"edge_int{face}", 0.0))
        if psi != 0.0 or edge_int != 0.0:
            out.append((face, psi, edge_int))
    return out


# --------------------------------------------------------------------------- support


#: Multipole fields of a bend that ImpactX's ``ExactCFbend`` models (``src/elements/
#: ExactCFbend.H`` map2: orders 1 quadrupole to 4 decapole, normal and skew).
CFBEND_FIELDS: tuple[str, ...] = tuple(f"K{c}{n}" for n in range(1, 5) for c in "ns")


def exact_tier_multipoles(element: Element) -> Unsupported | None:
    """Unsupported naming the field when a quadrupole carries components besides Kn1/Ks1
    below the exact tier (only ImpactX's ``ExactMultipole`` models them; the ImpactX
    adapter and the in-house tracker, which runs ImpactX's maps, both refuse it), or a
    bend components besides Kn1 below the exact tier (only ``ExactCFbend`` models them)
    or at angle 0 (``ExactCFbend`` divides by its radius)."""
    if element.kind == "SBend":
        fields = [k for k in element.params if k in CFBEND_FIELDS and k != "Kn1"]
        if not fields:
            return None
        if element.tier != "exact":
            return Unsupported(f"SBend field {fields[0]!r} ({element.name}): multipole "
                               "components on a bend besides Kn1 need model 'exact' "
                               f"(ExactCFbend); this element runs {element.tier}")
        if float(element.params["angle"]) == 0.0:
            return Unsupported(f"SBend field {fields[0]!r} ({element.name}): ImpactX's "
                               "ExactCFbend needs a non-zero angle (it divides by the "
                               "bending radius); give a straight multipole its own kind")
        return None
    if element.kind != "Quadrupole" or element.tier == "exact":
        return None
    extra = [n for n in thick_multipoles(element.params) if n != 1]
    if not extra:
        return None
    name = next(k for k in element.params if k in (f"Kn{extra[0]}", f"Ks{extra[0]}"))
    return Unsupported(f"{element.kind} field {name!r} ({element.name}): multipole "
                       f"components on a quadrupole need model 'exact' (ExactMultipole); "
                       f"this element runs {element.tier}")



def first_refusal(elements: Iterable[Element], translate: Callable[[Element], Any]) -> Any:
    """The first element's ``Unsupported`` from an adapter's own ``translate`` (its
    reasons say more than the base class's "kind not translated"), else None."""
    for element in elements:
        result = translate(element)
        if isinstance(result, Unsupported):
            return result
    return None


def linearised(scenario: Scenario) -> bool:
    """Whether the scenario has a linear-tier element of :data:`LINEARISED_KINDS`."""
    return any(e.tier == "linear" and e.kind in LINEARISED_KINDS for e in scenario.elements)


def stand_in_label(code: str, scenario: Scenario, stand_ins: Sequence[str],
                   always: bool = False) -> str:
    """The model a backend runs: the scenario's :func:`model_signature` when every map is
    ImpactX's, else ``stand-in:<code>(<what replaces what>, ...)`` (``always``: a code
    whose every map is a stand-in)."""
    if not stand_ins and not always:
        return model_signature(scenario)
    return f"stand-in:{code}({', '.join(stand_ins)})"


# --------------------------------------------------------------------------- line adapters


class LineBackend(Backend):
    """An adapter whose lattice is a line of element specs, one translator per kind
    (pyAT, Xsuite, Ocelot, RF-Track): it plans by translating the line once (its own
    reasons first, they say more than "kind not translated"), then the base class's
    common checks and :meth:`extra_checks`; ``prepare`` builds from the plan's specs
    (:meth:`prepared`).

    Class attributes: ``translators`` (kind -> ``translate(element) -> Translation``; the
    adapter's ``element_kinds`` are its keys), ``refused_kinds`` (kind -> ``refuse(element)
    -> Unsupported``), ``described`` (stand-in descriptions of every case), ``linear_note``
    (the note of a linearised lattice), ``stand_in_code`` (the code in
    ``stand-in:<code>(...)``, the adapter's ``name`` unless it says otherwise),
    ``always_stand_in`` and ``prepared_class`` (``prepared_class(scenario, specs, model)``
    is the prepared tracker of a plan). Such an adapter tracks float64 on the CPU unless it
    declares other ``devices`` and ``dtypes``."""

    devices: ClassVar[tuple[str, ...] | None] = ("cpu",)
    dtypes: ClassVar[tuple[str, ...] | None] = ("float64",)
    translators: ClassVar[Mapping[str, Callable[..., Any]]] = {}
    refused_kinds: ClassVar[Mapping[str, Callable[..., Any]]] = {}
    described: ClassVar[tuple[str, ...]] = ()
    linear_note: ClassVar[str] = ""
    stand_in_code: ClassVar[str] = ""
    always_stand_in: ClassVar[bool] = False
    takes_plans: ClassVar[bool] = True
    prepared_class: ClassVar[Callable[..., Prepared]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """An adapter's element kinds are those it has translators for; its stand-in code
        is its name unless it states one."""
        super().__init_subclass__(**kwargs)
        if "translators" in cls.__dict__ and "element_kinds" not in cls.__dict__:
            cls.element_kinds = frozenset(cls.translators)
        if not cls.stand_in_code and "name" in cls.__dict__:
            cls.stand_in_code = cls.name

    @classmethod
    def translate(cls, element: Element) -> Any:
        """The translation of one element, or why there is none."""
        return translate_element(cls, element, cls.translators, cls.refused_kinds)

    @classmethod
    def translate_scenario(cls, scenario: Scenario) -> Any:
        """``([(name, spec), ...], stand-in descriptions)`` of the scenario, or why not."""
        return translate_line(scenario.elements, cls.translate, cls.described)

    #: Why the code runs no space charge of a scenario ("" : no refusal of its own here).
    space_charge_refusal: ClassVar[str] = ""

    def extra_checks(self, scenario: Scenario) -> Unsupported | None:
        """The adapter's own refusals after the common checks: space charge when the
        adapter states :attr:`space_charge_refusal` (none otherwise)."""
        sc = scenario.space_charge
        if sc is not None and self.space_charge_refusal:
            return Unsupported(f"space charge {sc.kind!r}: {self.space_charge_refusal}")
        return None

    def plan(self, scenario: Scenario, device: str = "cpu",
             dtype: str = "float64") -> Plan | Unsupported:
        """The line of the scenario, translated once, then the checks."""
        result = self.translate_scenario(scenario)
        if isinstance(result, Unsupported):
            return result
        for refused in (self.common_checks(scenario, device, dtype),
                        self.extra_checks(scenario)):
            if refused is not None:
                return refused
        specs, stand_ins = result
        note = self.linear_note if linearised(scenario) else ""
        label = stand_in_label(self.stand_in_code, scenario, stand_ins, self.always_stand_in)
        return Plan(label, note, scenario, device, dtype, specs)

    def prepare(self, scenario: Any, device: str = "cpu", dtype: str = "float64") -> Prepared:
        """Build the code's lattice from a plan (a scenario is planned first)."""
        return self.prepared(self.planned(scenario, device, dtype))

    def prepared(self, plan: Plan) -> Prepared:
        """The prepared tracker of a plan's specs (:attr:`prepared_class`)."""
        return type(self).prepared_class(plan.scenario, plan.lattice, plan.model)
