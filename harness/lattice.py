"""PALS lattice -> a flat list of :class:`Element`, the one lattice form every backend reads.

The lattice section of a scenario is a PALS document (``PALS: {facility: [...]}``), validated
with the ``pals-schema`` package (the same one ImpactX reads). It is flattened (beamlines,
lattices, ``use`` and name references resolved) into elements whose fields carry SI units:

==============  ==========================================================================
PALS kind       fields of :attr:`Element.params` (units)
==============  ==========================================================================
Drift           ``length`` [m]
Quadrupole      ``length`` [m], ``Kn1`` [1/m^2] (MAD-X K1, >0 focuses x)
SBend           ``length`` [m], ``angle`` [rad] (= BendP.g_ref * length), ``e1``, ``e2`` [rad]
                (pole-face angles), ``Kn1`` [1/m^2] (combined-function gradient, optional)
Sextupole       ``length`` [m], ``Kn2`` [1/m^3]
Multipole       thin kick: ``Kn1L`` [1/m], ``Kn2L`` [1/m^2], ... and ``KsNL`` (MAD-X KNL, KSL)
Solenoid        ``length`` [m], ``Ksol`` [1/m] (= B_s / (B rho), ImpactX ``ks``)
RFCavity        ``length`` [m] (0: short RF), ``voltage`` [V], ``frequency`` [Hz],
                ``phase`` [rad] (ImpactX ``ShortRF`` convention: 0 = on crest, -pi/2 bunches)
Marker          none; with ``ApertureP`` (symmetric x/y limits) it becomes an aperture with
                ``x_limit``, ``y_limit`` [m] half-widths and ``elliptical`` (0 or 1)
Instrument      ``length`` [m] (a monitor: drift of that length, identity if 0)
==============  ==========================================================================
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pydantic

from harness.errors import ScenarioError
from harness.vocabulary import ELEMENT_TIERS, MODEL_TIERS, resolve_tier

#: Container kinds of PALS (not elements).
_CONTAINERS = ("BeamLine", "Lattice")


@dataclass(frozen=True)
class Element:
    """One element of the flattened lattice.

    Attributes:
        name: the element's PALS name (shared by every instance of a named element).
        kind: PALS kind (a key of :data:`harness.vocabulary.ELEMENT_TIERS`, or ``Aperture``).
        params: field name -> value in SI units (see the module table).
        tier: effective model tier (the requested floor resolved with ImpactX's rule).
        requested_tier: the tier the scenario asked for.
        nslice: ImpactX ``nslice`` (space-charge kicks per element; slices of the map).
        mapsteps: integrator steps per slice for exact symplectic integrators.
    """

    name: str
    kind: str
    params: dict[str, float] = field(default_factory=dict)
    tier: str = "linear"
    requested_tier: str = "linear"
    nslice: int = 1
    mapsteps: int = 10

    @property
    def length(self) -> float:
        """Length [m] (0 for thin elements)."""
        return float(self.params.get("length", 0.0))

    @property
    def integrator_steps(self) -> int:
        """Total integrator steps nslice*mapsteps of exact integrators (ImpactX)."""
        return self.nslice * self.mapsteps


def _pals_classes() -> dict[str, type]:
    import pals

    names = [
        "Drift", "Quadrupole", "SBend", "Sextupole", "Multipole", "Solenoid", "RFCavity",
        "Marker", "Instrument", "BeamLine", "Lattice", "Octupole", "RBend", "Kicker",
        "ACKicker", "CrabCavity", "Wiggler", "Patch", "Taylor", "Mask", "Match", "Foil",
        "BeamBeam", "Converter", "EGun", "Feedback", "Fiducial", "FloorShift", "Fork",
        "Girder", "NullEle", "UnionEle", "BeginningEle",
    ]
    return {n: getattr(pals, n) for n in names if hasattr(pals, n)}


def _pydantic_message(error: pydantic.ValidationError) -> tuple[str, str, Any]:
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    msg = first.get("msg", "a valid value").removeprefix("Value error, ")
    msg = msg.removeprefix("Input should be ")
    if first.get("type") == "missing":
        msg = "this required field"
    got = first.get("input")
    return loc, msg, None if isinstance(got, dict) else got


def _bad_multipole_key(raw: Any) -> str | None:
    """The first key of a raw ``MagneticMultipoleP`` mapping that pals-schema rejects."""
    import pals

    if not isinstance(raw, dict):
        return None
    for key in raw:
        try:
            pals.MagneticMultipoleParameters(**{key: 0.0})
        except (pydantic.ValidationError, ValueError):
            return str(key)
    return None


def _check_known_fields(model: pydantic.BaseModel, raw: dict, file, path: str) -> None:
    """Reject keys that pals-schema would silently ignore (typos in parameter groups)."""
    fields = type(model).model_fields
    for key, value in raw.items():
        if key == "kind":
            continue
        if key not in fields:
            raise ScenarioError(
                file, f"{path}.{key}", f"one of the fields of {type(model).__name__}: "
                f"{sorted(k for k in fields if k != 'name')}", key)
        sub = getattr(model, key, None)
        if isinstance(sub, pydantic.BaseModel) and isinstance(value, dict):
            extra_allowed = type(sub).model_config.get("extra") == "allow"
            if not extra_allowed:
                _check_known_fields(sub, value, file, f"{path}.{key}")


class _Flattener:
    """Resolves a raw PALS document into PALS element objects, with field paths for errors."""

    def __init__(self, file: str | Path | None):
        self.file = file
        self.classes = _pals_classes()
        self.registry: dict[str, tuple[str, dict]] = {}

    def build(self, name: str, raw: Any, path: str) -> Any:
        if not isinstance(raw, dict):
            raise ScenarioError(self.file, path, "a mapping of the element's fields", raw)
        kind = raw.get("kind")
        if kind is None:
            raise ScenarioError(self.file, f"{path}.kind", "an element kind", None)
        if not isinstance(kind, str) or kind not in self.classes:
            raise ScenarioError(
                self.file, f"{path}.kind",
                f"a PALS kind; supported: {sorted(ELEMENT_TIERS)}", kind)
        if kind not in ELEMENT_TIERS and kind not in _CONTAINERS:
            from backends.registry import backends_supporting_kind

            supporters = backends_supporting_kind(kind)
            raise ScenarioError(
                self.file, f"{path}.kind",
                f"an element kind trackbench translates: {sorted(ELEMENT_TIERS)}; "
                f"{kind!r} is supported by: {', '.join(supporters) or 'no installed backend'}",
                kind)
        if kind in _CONTAINERS:
            return raw
        fields = {k: v for k, v in raw.items() if k != "kind"}
        known = self.classes[kind].model_fields
        for key in fields:
            if key not in known:  # before pals-schema, whose message would not name the key
                raise ScenarioError(
                    self.file, f"{path}.{key}", f"one of the fields of {kind}: "
                    f"{sorted(k for k in known if k not in ('name', 'kind'))}", key)
            if key.endswith("P") and fields[key] is not None and not isinstance(fields[key],
                                                                                 dict):
                raise ScenarioError(self.file, f"{path}.{key}", "a mapping of parameters",
                                    fields[key])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                element = self.classes[kind](name=name, **copy.deepcopy(fields))
        except pydantic.ValidationError as error:
            loc, msg, got = _pydantic_message(error)
            bad_key = _bad_multipole_key(fields.get("MagneticMultipoleP"))
            if loc == "MagneticMultipoleP" and bad_key is not None:
                loc, got = f"{loc}.{bad_key}", bad_key
                msg = ("a multipole name KnN, KsN, BnN, BsN or tiltN (N = order, no leading "
                       "zeros; suffix L for integrated strengths)")
            raise ScenarioError(self.file, f"{path}.{loc}" if loc else path, msg, got) from None
        except (TypeError, ValueError, AttributeError) as error:  # pals-schema's own checks
            raise ScenarioError(self.file, path, f"valid {kind} fields ({error})") from None
        _check_known_fields(element, fields, self.file, path)
        return element

    def flatten(self, item: Any, path: str, depth: int = 0) -> list[Any]:
        if depth > 64:
            raise ScenarioError(self.file, path, "a lattice without circular references")
        if isinstance(item, str):
            if item not in self.registry:
                raise ScenarioError(self.file, path, "the name of an element defined in "
                                    "the facility", item)
            name, raw = self.registry[item]
            return self.flatten({name: raw}, f"lattice.{name}", depth + 1)
        if not isinstance(item, dict) or len(item) != 1:
            raise ScenarioError(self.file, path, "a one-key mapping {name: {kind: ...}} or a "
                                "name", item)
        (name, raw), = item.items()
        if name == "use" and isinstance(raw, str):
            return self.flatten(raw, path, depth + 1)
        if isinstance(raw, dict) and raw.get("kind") is None and name in self.registry:
            raw = {**self.registry[name][1], **raw}
        built = self.build(name, raw, path)
        if isinstance(built, dict):
            key = "line" if built["kind"] == "BeamLine" else "branches"
            children = built.get(key)
            if not isinstance(children, list):
                raise ScenarioError(self.file, f"{path}.{key}", "a list", children)
            if built["kind"] == "Lattice" and len(children) != 1:
                raise ScenarioError(self.file, f"{path}.branches", "exactly one branch",
                                    len(children))
            out: list[Any] = []
            for index, child in enumerate(children):
                out.extend(self.flatten(child, f"{path}.{key}[{index}]", depth + 1))
            return out
        return [built]


def parse_pals(document: Any, file: str | Path | None = None) -> list[Any]:
    """Validate a PALS document with pals-schema and flatten it to PALS element objects."""
    if not isinstance(document, dict) or "PALS" not in document:
        raise ScenarioError(file, "lattice", "a PALS document: {PALS: {facility: [...]}}",
                            type(document).__name__)
    root = document["PALS"]
    facility = root.get("facility") if isinstance(root, dict) else None
    if not isinstance(facility, list) or not facility:
        raise ScenarioError(file, "lattice.PALS.facility", "a non-empty list", facility)
    flattener = _Flattener(file)
    for entry in facility:
        if isinstance(entry, dict) and len(entry) == 1:
            (name, raw), = entry.items()
            if name != "use" and isinstance(raw, dict):
                flattener.registry[name] = (name, raw)
    active = facility[-1]
    if len(facility) > 1 and not (isinstance(active, dict) and "use" in active):
        raise ScenarioError(file, "lattice.PALS.facility", "a final 'use: <line>' entry "
                            "selecting the beamline when the facility has several entries")
    elements = flattener.flatten(active, "lattice")
    _validate_with_pals_root(document, file)
    return elements


def _validate_with_pals_root(document: dict, file) -> None:
    """Run the whole document through ``pals.PALSroot`` (the check ImpactX's reader does)."""
    import pals

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # pals-schema 0.3 mistakes a root holding only 'facility' for a one-key container
            pals.PALSroot(**{"version": None, **copy.deepcopy(document["PALS"])})
    except (pydantic.ValidationError, ValueError, TypeError) as error:
        raise ScenarioError(file, "lattice.PALS", f"a valid PALS document ({error})") from None


def _multipole(element, prefix: str, order: int, file=None) -> float | None:
    mm = element.MagneticMultipoleP
    if mm is None:
        return None
    value = getattr(mm, f"{prefix}{order}", None)
    if value is None and mm.model_extra:
        value = mm.model_extra.get(f"{prefix}{order}")
    path = f"lattice.{element.name}.MagneticMultipoleP.{prefix}{order}"
    return None if value is None else _number(value, file, path)


def _number(value: Any, file, path: str) -> float:
    """``value`` as a float; pals-schema keeps multipole strengths untyped."""
    if isinstance(value, bool):
        raise ScenarioError(file, path, "a number", value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ScenarioError(file, path, "a number", value) from None


def _require(value, file, path: str, expected: str):
    if value is None:
        raise ScenarioError(file, path, expected)
    return value


def element_params(element, file=None) -> tuple[str, dict[str, float]]:
    """Kind and SI parameters (see the module table) of one validated PALS element."""
    kind = element.kind
    path = f"lattice.{element.name}"
    length = float(getattr(element, "length", 0.0) or 0.0)
    if kind == "Drift":
        return kind, {"length": length}
    if kind == "Quadrupole":
        k1 = _require(_multipole(element, "Kn", 1, file), file, f"{path}.MagneticMultipoleP.Kn1",
                      "the normalised gradient Kn1 [1/m^2]")
        return kind, {"length": length, "Kn1": k1}
    if kind == "SBend":
        bend = _require(element.BendP, file, f"{path}.BendP", "bend parameters with g_ref "
                        "[1/m]")
        if length <= 0:
            raise ScenarioError(file, f"{path}.length", "a positive length for a bend", length)
        params = {"length": length, "angle": float(bend.g_ref) * length,
                  "e1": float(bend.e1), "e2": float(bend.e2)}
        k1 = _multipole(element, "Kn", 1, file)
        if k1:
            params["Kn1"] = k1
        return kind, params
    if kind == "Sextupole":
        k2 = _require(_multipole(element, "Kn", 2, file), file, f"{path}.MagneticMultipoleP.Kn2",
                      "the normalised sextupole strength Kn2 [1/m^3]")
        return kind, {"length": length, "Kn2": k2}
    if kind == "Multipole":
        if length != 0.0:
            raise ScenarioError(file, f"{path}.length", "0 (thin multipole kick)", length)
        mm = _require(element.MagneticMultipoleP, file, f"{path}.MagneticMultipoleP",
                      "integrated strengths KnNL / KsNL")
        params = {"length": 0.0}
        for key, value in (mm.model_extra or {}).items():
            if not (key.startswith(("Kn", "Ks")) and key.endswith("L")):
                raise ScenarioError(file, f"{path}.MagneticMultipoleP.{key}",
                                    "integrated strengths KnNL or KsNL", key)
            params[key] = _number(value, file, f"{path}.MagneticMultipoleP.{key}")
        return kind, params
    if kind == "Solenoid":
        sol = _require(element.SolenoidP, file, f"{path}.SolenoidP", "Ksol [1/m]")
        return kind, {"length": length, "Ksol": float(sol.Ksol)}
    if kind == "RFCavity":
        rf = _require(element.RFP, file, f"{path}.RFP", "voltage [V], frequency [Hz], phase")
        if length != 0.0:
            raise ScenarioError(file, f"{path}.length", "0 (short RF gap; thick cavities are "
                                "not translated)", length)
        return kind, {"length": 0.0, "voltage": float(rf.voltage),
                      "frequency": float(rf.frequency), "phase": float(rf.phase)}
    if kind in ("Marker", "Instrument"):
        aperture = element.ApertureP
        if aperture is not None and aperture.aperture_active:
            xs, ys = aperture.x_limits, aperture.y_limits
            for axis, limits in (("x", xs), ("y", ys)):
                lo, hi = limits
                if lo is None or hi is None or abs(lo + hi) > 1e-15 * max(abs(lo), 1.0):
                    raise ScenarioError(file, f"{path}.ApertureP.{axis}_limits",
                                        "symmetric limits [-a, a] in metres", limits)
            if aperture.shape not in ("RECTANGULAR", "ELLIPTICAL"):
                raise ScenarioError(file, f"{path}.ApertureP.shape",
                                    "RECTANGULAR or ELLIPTICAL", aperture.shape)
            if length != 0.0:
                raise ScenarioError(file, f"{path}.length", "0 for an aperture", length)
            return "Aperture", {"length": 0.0, "x_limit": float(xs[1]),
                                "y_limit": float(ys[1]),
                                "elliptical": float(aperture.shape == "ELLIPTICAL")}
        return kind, {"length": length}
    raise ScenarioError(file, f"{path}.kind", f"one of {sorted(ELEMENT_TIERS)}", kind)


@dataclass(frozen=True)
class ElementSettings:
    """Per-element tracking settings (model tier floor and slicing)."""

    model: str
    nslice: int = 1
    mapsteps: int = 10


def build_elements(
    document: Any,
    default: ElementSettings,
    overrides: dict[str, ElementSettings] | None = None,
    file: str | Path | None = None,
) -> list[Element]:
    """Parse a PALS document into the flat element list with resolved model tiers."""
    overrides = overrides or {}
    out = []
    for pals_element in parse_pals(document, file):
        kind, params = element_params(pals_element, file)
        settings = overrides.get(pals_element.name, default)
        if settings.model not in MODEL_TIERS:
            raise ScenarioError(file, f"overrides.{pals_element.name}.model",
                                f"one of {list(MODEL_TIERS)}", settings.model)
        family = "Marker" if kind == "Aperture" else kind
        out.append(Element(
            name=pals_element.name, kind=kind, params=params,
            tier=resolve_tier(family, settings.model), requested_tier=settings.model,
            nslice=settings.nslice, mapsteps=settings.mapsteps,
        ))
    unknown = set(overrides) - {e.name for e in out}
    if unknown:
        raise ScenarioError(file, f"overrides.{sorted(unknown)[0]}",
                            "the name of an element in the lattice", sorted(unknown)[0])
    return out


def with_params(elements: list[Element], updates: dict[tuple[str, str], float]) -> list[Element]:
    """A copy of ``elements`` with ``(element name, field) -> value`` replaced everywhere."""
    out = []
    for element in elements:
        changed = {f: v for (n, f), v in updates.items() if n == element.name}
        out.append(replace(element, params={**element.params, **changed}) if changed else element)
    return out
