"""PALS lattice -> a flat list of :class:`Element`, the one lattice form every backend reads.

The lattice section of a scenario is a PALS document (``PALS: {facility: [...]}``), validated
with the ``pals-schema`` package (the same one ImpactX reads). Every element the facility
defines is validated, used or not; names are unique. It is flattened (beamlines, lattices,
``use`` and name references resolved; the element count is computed before anything is
expanded and capped at :data:`MAX_ELEMENTS`) into elements whose fields carry SI units and
normalised strengths. The fields of each kind, with units, are
:data:`harness.model.vocabulary.ELEMENT_FIELDS`; where every PALS field goes is
:data:`PALS_FIELDS` (a field is translated to an element field, or refused by ``validate``
with the reason; nothing is dropped).

Equivalent PALS forms are resolved here, once, so that every backend reads one form:

* bend strength: ``BendP.g_ref`` [1/m], ``rho_ref`` [m] (g = 1/rho), ``bend_field_ref`` [T]
  (g = B / (B rho)) or ``angle`` [rad] (g = angle / length) -> ``angle``; several given must
  agree;
* pole faces: ``e1_rect`` = e1 - angle/2 (rectangular-bend convention) -> ``e1`` (same for
  e2);
* multipoles (``MagneticMultipoleP``): field strengths ``BnN`` [T/m^N] -> ``KnN`` = BnN /
  (B rho) with the beam's signed rigidity B rho = p/q; integrated ``KnNL`` on a thick element
  -> ``KnN`` = KnNL / length; per-metre ``KnN`` on a thin kicker -> ``KnNL`` = KnN * length;
* fields in a lattice that changes the reference energy (an element whose spec
  :attr:`~harness.model.kinds.KindSpec.accelerates`): a Quadrupole's ``Bn1``/``Bs1`` keeps
  the field, ``field_rigidity`` = the starting B rho beside Kn1 = Bn1 / that B rho, so that
  the backends divide the field by the local rigidity (ImpactX ``unit = 1``); every other
  field form (``BnN`` elsewhere, ``Bsol``, ``bend_field_ref``) is refused there, naming the
  field;
* body shifts (``BodyShiftP``): ``x_offset``, ``y_offset`` [m], ``z_rot`` [rad];
* apertures: a Marker (or zero-length Instrument) with an active ``ApertureP`` becomes an
  ``Aperture`` element; ImpactX's options PALS has no field for (``action``, ``repeat_x``,
  ``repeat_y``, ``shift_odd_x``) come from the element's ``ImpactXP`` group, and its
  ``BodyShiftP`` moves the aperture when ``ApertureP.aperture_shifts_with_body`` is true
  (ImpactX ``dx``, ``dy``, ``rotation``);
* pipe apertures: an ``ApertureP`` with ``location: EVERYWHERE`` and ``shape: ELLIPTICAL``
  on a thick element of a kind with ImpactX's pipe aperture (Drift, Quadrupole, SBend,
  Sextupole, Octupole, Solenoid and the thick extension kinds) becomes its ``aperture_x``,
  ``aperture_y`` (:func:`pipe_aperture`).
"""

from __future__ import annotations

import copy
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pydantic

from harness.model.errors import ScenarioError
from harness.model.kinds import (
    ALIGNMENT,
    EXTENSION_GROUP,
    EXTENSION_KINDS,
    EXTENSION_NAMESPACE,
    FIELD_RIGIDITY,
    LIST_FIELDS,
    MATRIX_ENTRIES,
    MAX_COEFFICIENTS,
    PIPE_APERTURE_KINDS,
    POLYGON_APERTURE,
    SPECS,
    SPIN_MATRIX_ENTRIES,
    SPIN_VECTOR_ENTRIES,
    Disposition,
    KindSpec,
    Refused,
)
from harness.model.limits import element_bound
from harness.model.vocabulary import ELEMENT_TIERS, MODEL_TIERS, resolve_tier

#: Container kinds of PALS (not elements).
_CONTAINERS = ("BeamLine", "Lattice")

#: Most elements a flattened lattice may have (counted before expanding).
MAX_ELEMENTS = 1_000_000

#: Deepest nesting of beamlines (a line in a line in ...); circular references are found by
#: identity, whatever the depth.
MAX_DEPTH = 200

#: Most distinct element definitions in a facility (each is validated by pals-schema: about
#: 4 s for 100 000 on one core).
MAX_DEFINITIONS = 100_000

#: Longest element name [characters].
MAX_NAME_CHARS = 200

#: Characters refused in element names: ASCII control characters (NUL, escape sequences,
#: line breaks) and DEL, and the C1 controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

#: Kinds with a body whose strength is per metre (:attr:`KindSpec.thick`): at length 0
#: ImpactX's map is the identity (its ``Quad``, ``ExactQuad``, ``Sol``, ... push with
#: ``slice_ds = ds / nslice = 0``), so a strength on a zero-length one would be silently lost.
_THICK_KINDS = tuple(spec.kind for spec in SPECS.values() if spec.thick)


@dataclass(frozen=True)
class Element:
    """One element of the flattened lattice.

    Attributes:
        name: the element's PALS name (shared by every instance of a named element).
        kind: PALS kind (a key of :data:`harness.model.vocabulary.ELEMENT_TIERS`, or ``Aperture``).
        params: field name -> value in SI units (:data:`harness.model.vocabulary.ELEMENT_FIELDS`).
        tier: effective model tier (the requested floor resolved with ImpactX's rule).
        requested_tier: the tier the scenario asked for.
        nslice: ImpactX ``nslice`` (space-charge kicks per element; slices of the map).
        mapsteps: integrator steps per slice for exact symplectic integrators.
        int_order: order (2, 4 or 6) of the symplectic integrator of an
            :attr:`integrated` element (ImpactX ``int_order``).
    """

    name: str
    kind: str
    params: dict[str, float] = field(default_factory=dict)
    tier: str = "linear"
    requested_tier: str = "linear"
    nslice: int = 1
    mapsteps: int = 10
    int_order: int = 2

    @property
    def length(self) -> float:
        """Length [m] (0 for thin elements)."""
        return float(self.params.get("length", 0.0))

    @property
    def integrator_steps(self) -> int:
        """Total integrator steps nslice*mapsteps of exact integrators (ImpactX)."""
        return self.nslice * self.mapsteps

    @property
    def integrated(self) -> bool:
        """Whether ImpactX tracks the element with a symplectic integrator, the elements
        ``mapsteps`` and ``int_order`` act on: at the exact tier a quadrupole
        (``ExactQuad`` or ``ExactMultipole``), a sextupole (``ExactMultipole``) and a bend
        with multipole components (``ExactCFbend``; ``ExactQuad`` at zero angle).
        ImpactX's ``ExactSbend`` and ``ExactDrift`` are closed-form maps
        (``src/elements/Exact*.H``); the kinds so tracked are those whose spec says
        :attr:`KindSpec.integrated`."""
        if self.tier != "exact":
            return False
        return SPECS[self.kind].integrated or (
            self.kind == "SBend" and bool(thick_multipoles(self.params)))


# --------------------------------------------------------------------------- where fields go


#: Every PALS field of the translated kinds: parameter group field -> the element field it
#: becomes (a name of :data:`harness.model.vocabulary.ELEMENT_FIELDS`), ``None`` (no effect on
#: tracking: names and labels), or :class:`Refused`. Keys are ``Group.field`` (``*`` for
#: any kind) or ``Kind:Group.field``; multipoles are handled by :func:`parse_multipoles`.
#: The fields shared by every kind are listed here, each kind's own come from its spec
#: (:attr:`harness.model.kinds.KindSpec.pals_fields`).
PALS_FIELDS: dict[str, Disposition] = {
    "length": "length",
    "MetaP.alias": None, "MetaP.ID": None, "MetaP.label": None, "MetaP.description": None,
    "BodyShiftP.x_offset": "x_offset", "BodyShiftP.y_offset": "y_offset",
    "BodyShiftP.z_rot": "z_rot",
    "BodyShiftP.z_offset": Refused("no backend models a longitudinal body offset"),
    "BodyShiftP.x_rot": Refused("no backend models a pitched element body (x_rot)"),
    "BodyShiftP.y_rot": Refused("no backend models a yawed element body (y_rot)"),
    "ReferenceP.species_ref": Refused("the reference particle is the scenario's beam"),
    "ReferenceP.pc_ref": Refused("the reference particle is the scenario's beam"),
    "ReferenceP.E_tot_ref": Refused("the reference particle is the scenario's beam"),
    "ReferenceP.time_ref": Refused("the reference particle is the scenario's beam"),
    "ReferenceP.location": Refused("the reference particle is the scenario's beam"),
    "ReferenceChangeP.dE_ref": Refused("reference energy changes come from RF gaps only"),
    "ReferenceChangeP.extra_dtime_ref": Refused("no backend shifts the reference time"),
    "ApertureP.x_limits": "x_limit", "ApertureP.y_limits": "y_limit",
    "ApertureP.shape": "elliptical", "ApertureP.aperture_active": None,
    "ApertureP.location": Refused("apertures act where their Marker is (ENTRANCE_END)"),
    "ApertureP.material": Refused("no backend models aperture material"),
    "ApertureP.thickness": Refused("no backend models aperture thickness"),
    # with a BodyShiftP on the aperture's Marker: the shift moves the aperture (ImpactX dx,
    # dy, rotation); without one it has nothing to move
    "ApertureP.aperture_shifts_with_body": None,
    "ElectricMultipoleP": Refused("no backend models electric multipoles"),
    "FloorP": None,       # floor geometry (under construction in PALS, no fields)
    "TrackingP": None,    # tracking hints (under construction in PALS, no fields)
}
PALS_FIELDS.update({f"{spec.kind}:{key}": where for spec in SPECS.values()
                    for key, where in spec.pals_fields.items()})
# a pipe aperture (:func:`pipe_aperture`, which also reads its location and shape)
PALS_FIELDS.update({f"{kind}:ApertureP.{axis}_limits": f"aperture_{axis}"
                    for kind in PIPE_APERTURE_KINDS for axis in "xy"})

#: Parameter groups that are mappings of fields (validated field by field).
_GROUPS = ("ApertureP", "BodyShiftP", "BendP", "MagneticMultipoleP", "ElectricMultipoleP",
           "MetaP", "ReferenceP", "ReferenceChangeP", "RFP", "SolenoidP", "FloorP",
           "TrackingP")

#: Extensions of pals-schema's models (fields of the PALS standard it does not model yet).
_EXTRA_FIELDS: dict[tuple[str, str], str] = {("SBend", "BendP"): "angle"}

#: PALS fields that are flags (the only fields where ``true``/``false`` is a valid value).
_BOOLEAN_FIELDS = frozenset({"aperture_active", "aperture_shifts_with_body", "shift_odd_x"})

#: ImpactX's aperture actions (``src/elements/Aperture.H``).
APERTURE_ACTIONS = ("transmit", "absorb")

#: Most vertices of a polygon aperture (the first repeated last).
MAX_VERTICES = 10_000


def pals_disposition(kind: str, path: str) -> str | None | Refused:
    """Where the PALS field ``path`` (``Group.field`` or ``length``) of a ``kind`` goes
    (:data:`PALS_FIELDS`); KeyError for a field without an entry."""
    for key in (f"{kind}:{path}", path, path.split(".")[0], f"{kind}:{path.split('.')[0]}"):
        if key in PALS_FIELDS:
            return PALS_FIELDS[key]
    raise KeyError(f"{kind}.{path}")


# --------------------------------------------------------------------------- small helpers


class _Short:
    """A value shown abbreviated in an error message (never the repr of a huge value)."""

    def __init__(self, value: Any, limit: int = 60):
        text = repr(value)
        self.text = text if len(text) <= limit else text[:limit] + "..."

    def __repr__(self) -> str:
        return self.text


def _short(value: Any) -> Any:
    return value if isinstance(value, (int, float, bool, type(None))) else _Short(value)


def _number(value: Any, file, path: str) -> float:
    """``value`` as a finite float (booleans, text and NaN/inf are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(file, path, "a number (finite)", _short(value))
    number = float(value)
    if not math.isfinite(number):
        raise ScenarioError(file, path, "a number (finite)", number)
    return number


def check_element_name(name: Any, file, path: str) -> str:
    """An element name: text of 1 to :data:`MAX_NAME_CHARS` characters without control
    characters (names reach terminals, reports and file contents)."""
    if not isinstance(name, str):
        raise ScenarioError(file, path, "an element name that is text", _short(name))
    if not name or len(name) > MAX_NAME_CHARS:
        raise ScenarioError(file, path, f"an element name of 1 to {MAX_NAME_CHARS} "
                            "characters", f"{len(name)} characters")
    if _CONTROL.search(name):
        raise ScenarioError(file, path, "an element name without control characters (NUL, "
                            "escape sequences, line breaks)", _short(name))
    return name


def check_element_bounds(kind: str, params: Mapping[str, float], file, path: str) -> None:
    """Every field of a translated element within its bound (:mod:`harness.model.limits`), and no
    strength on a zero-length thick element (see :data:`_THICK_KINDS`)."""
    for key, value in params.items():
        bound = element_bound(key)
        if bound is None:
            raise ScenarioError(file, f"{path}.{key}", "a field with a stated bound "
                                "(harness.model.limits)", key)
        if not math.isfinite(value) or not bound.contains(value):
            raise ScenarioError(file, f"{path}.{_pals_name(key, kind)}", f"{bound.text()} "
                                f"[{bound.unit}] ({bound.why})", value)
    if kind in _THICK_KINDS and params.get("length", 0.0) == 0.0:
        strengths = [k for k, v in params.items() if k.startswith("K") and v != 0.0]
        if strengths:
            raise ScenarioError(file, f"{path}.length", f"a positive length for a {kind} "
                                f"with {strengths[0]} (at length 0 ImpactX's map is the "
                                "identity; a thin kick is a Multipole with KnNL)", 0.0)


#: Element fields and the PALS group they come from (for messages).
_PALS_GROUP = {"x_offset": "BodyShiftP", "y_offset": "BodyShiftP", "z_rot": "BodyShiftP",
               "x_limit": "ApertureP", "y_limit": "ApertureP", "elliptical": "ApertureP",
               "absorb": EXTENSION_GROUP, "repeat_x": EXTENSION_GROUP,
               "repeat_y": EXTENSION_GROUP, "shift_odd_x": EXTENSION_GROUP}
_PALS_GROUP.update({where: key.split(".")[0] for spec in SPECS.values()
                    for key, where in spec.pals_fields.items()
                    if isinstance(where, str) and "." in key
                    and spec.kind not in EXTENSION_KINDS})


def _pals_name(key: str, kind: str = "") -> str:
    """``BendP.angle``, ``MagneticMultipoleP.Kn1``, ``length``: an element field (of
    ``kind``) as the PALS path it was translated from."""
    if kind in EXTENSION_KINDS and key != "length":
        if key in ALIGNMENT:
            return f"BodyShiftP.{key}"
        if key in MATRIX_ENTRIES:
            return f"{EXTENSION_GROUP}.R[{int(key[1]) - 1}][{int(key[2]) - 1}]"
        if key.startswith("vertex_"):
            return f"{EXTENSION_GROUP}.vertices_{key[7]}[{key[8:]}]"
        if key == "absorb":
            return f"{EXTENSION_GROUP}.action"
        for name, pattern in LIST_FIELDS.items():
            prefix = pattern.removesuffix("*")
            if key.startswith(prefix) and key[len(prefix):].isdigit():
                return f"{EXTENSION_GROUP}.{name}[{key[len(prefix):]}]"
        if key in SPIN_MATRIX_ENTRIES:
            return f"{EXTENSION_GROUP}.A[{int(key[1]) - 1}][{int(key[2]) - 1}]"
        if key in SPIN_VECTOR_ENTRIES:
            return f"{EXTENSION_GROUP}.v[{int(key[1]) - 1}]"
        if key[:2] in ("Kn", "Ks") and key[2:].isdigit():
            group = "k_normal" if key[1] == "n" else "k_skew"
            return f"{EXTENSION_GROUP}.{group}[{key[2:]}]"
        return f"{EXTENSION_GROUP}.{key}"
    if key in _PALS_GROUP:
        return f"{_PALS_GROUP[key]}.{key}"
    if key.startswith("K") and key != "Ksol":
        return f"MagneticMultipoleP.{key}"
    return key


def _kinds_text(extensions: bool = True) -> str:
    """The kinds a scenario may name, in one line: the PALS kinds, then (``extensions``) the
    extension kinds by their ImpactX class (each in docs/scenario-format.md)."""
    pals = sorted(k for k in ELEMENT_TIERS if k not in EXTENSION_KINDS)
    if not extensions:
        return f"{pals} (and the ImpactX.<class> extension kinds)"
    return f"{pals} or ImpactX.<class>, <class> one of {_extension_classes()}"


def _extension_classes() -> str:
    """The extension kinds' ImpactX classes, comma-separated (docs/scenario-format.md)."""
    return ", ".join(sorted(k.removeprefix(EXTENSION_NAMESPACE) for k in EXTENSION_KINDS)) \
        + " (docs/scenario-format.md)"


def _check_values(raw: Any, file, path: str, depth: int = 0) -> None:
    """Refuse non-finite numbers and booleans in numeric fields anywhere in ``raw``."""
    if depth > 8:
        raise ScenarioError(file, path, "at most 8 levels of nesting in an element")
    if isinstance(raw, dict):
        for key, value in raw.items():
            if not isinstance(key, str):
                raise ScenarioError(file, path, "field names that are text", _short(key))
            if isinstance(value, bool) and key not in _BOOLEAN_FIELDS:
                raise ScenarioError(file, f"{path}.{key}", "a number, not true/false", value)
            _check_values(value, file, f"{path}.{key}", depth + 1)
    elif isinstance(raw, list):
        for index, value in enumerate(raw):
            if isinstance(value, bool):
                raise ScenarioError(file, f"{path}[{index}]", "a number, not true/false",
                                    value)
            _check_values(value, file, f"{path}[{index}]", depth + 1)
    elif isinstance(raw, float) and not math.isfinite(raw):
        raise ScenarioError(file, path, "a number (finite)", raw)


def _pals_classes() -> dict[str, type[pydantic.BaseModel]]:
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
    return loc, msg, None if isinstance(got, dict) else _short(got)


_MULTIPOLE_KEY = re.compile(r"^(Kn|Ks|Bn|Bs|tilt)(0|[1-9][0-9]*)(L?)$")


def _bad_multipole_key(raw: Any) -> str | None:
    """The first key of a raw ``MagneticMultipoleP`` mapping that is not a multipole name."""
    if not isinstance(raw, dict):
        return None
    for key in raw:
        match = _MULTIPOLE_KEY.match(str(key))
        if match is None or (match.group(1) == "tilt" and match.group(3)):
            return str(key)
    return None


#: Bend fields of the pole faces, which a reversed bend may not carry (:func:`_reverse`).
_POLE_FACE_FIELDS = ("e1", "e2", "edge_int1", "edge_int2", "h1", "h2")


def _reverse(kind: str, raw: dict, file, path: str) -> bool:
    """An element's ``reverse`` key (default false): ``true`` states the inverse element,
    ImpactX's ``reverse()`` (ds -> -ds), for the kinds whose spec is
    :attr:`~harness.model.kinds.KindSpec.reversible`; PALS has no negative lengths."""
    value = raw.get("reverse", False)
    if not isinstance(value, bool):
        raise ScenarioError(file, f"{path}.reverse", "true or false", _short(value))
    if value and (kind not in SPECS or not SPECS[kind].reversible):
        raise ScenarioError(file, f"{path}.reverse", "reverse: true only on the kinds whose "
                            "negative length ImpactX defines as their inverse: "
                            f"{sorted(k for k, s in SPECS.items() if s.reversible)}", kind)
    return value


def _check_known_fields(model: pydantic.BaseModel, raw: dict, file, path: str,
                        extra: frozenset[str] = frozenset()) -> None:
    """Reject keys that pals-schema would silently ignore (typos in parameter groups)."""
    fields = type(model).model_fields
    for key, value in raw.items():
        if key == "kind" or key in extra:
            continue
        if key not in fields:
            known = sorted({*(k for k in fields if k != "name"), *extra})
            raise ScenarioError(
                file, f"{path}.{key}", f"one of the fields of {type(model).__name__}: "
                f"{known}", _short(key))
        sub = getattr(model, key, None)
        if isinstance(sub, pydantic.BaseModel) and isinstance(value, dict):
            extra_allowed = type(sub).model_config.get("extra") == "allow"
            if not extra_allowed:
                _check_known_fields(sub, value, file, f"{path}.{key}")


# --------------------------------------------------------------------------- multipoles


@dataclass(frozen=True)
class Multipoles:
    """The magnetic multipoles of one element, normalised once.

    Attributes:
        normal, skew: order N -> normalised strength, per metre (``KnN``, thick elements) or
            integrated (``KnNL``, thin elements; see ``integrated``), with the multipole's
            ``tiltN`` folded in (see :func:`parse_multipoles`).
        integrated: whether strengths are integrated (thin elements).
    """

    normal: dict[int, float]
    skew: dict[int, float]
    integrated: bool

    def params(self) -> dict[str, float]:
        """Element fields ``KnN``/``KsN`` (``KnNL``/``KsNL`` when integrated)."""
        suffix = "L" if self.integrated else ""
        out = {f"Kn{n}{suffix}": v for n, v in self.normal.items()}
        out.update({f"Ks{n}{suffix}": v for n, v in self.skew.items()})
        return out


def rotated_normal(kn: float, ks: float, order: int) -> tuple[float, float]:
    """``(K, T)``: a multipole of order N with normalised components (Kn, Ks) is the normal
    multipole K rotated by T about s, Kn + i Ks = K exp(-i (N+1) T) (PALS
    ``MagneticMultipoleP``: B_y + i B_x = (Bn + i Bs) exp(-i (N+1) tiltN) (x + i y)^N / N!).
    ``T`` is an ImpactX ``rotation`` (element frame x' = x cos T + y sin T). A normal
    component alone gives (Kn, 0) exactly."""
    if ks == 0.0:
        return kn, 0.0
    return math.hypot(kn, ks), -math.atan2(ks, kn) / (order + 1)


_THICK_COMPONENT = re.compile(r"^K([ns])(0|[1-9][0-9]*)$")
_THIN_COMPONENT = re.compile(r"^K([ns])(0|[1-9][0-9]*)L$")


def _components(params: Mapping[str, Any], pattern: re.Pattern) -> dict[int, tuple[Any, Any]]:
    out: dict[int, list[Any]] = {}
    for key, value in params.items():
        match = pattern.match(key)
        if match:
            out.setdefault(int(match.group(2)), [0.0, 0.0])[match.group(1) == "s"] = value
    return {n: (kn, ks) for n, (kn, ks) in sorted(out.items())}


def thick_multipoles(params: Mapping[str, Any]) -> dict[int, tuple[Any, Any]]:
    """``{order N: (KnN, KsN)}`` of a thick element's multipole fields (per metre; values
    as stored, floats or tensors; a missing component is 0.0), ordered by N."""
    return _components(params, _THICK_COMPONENT)


def profile_coefficients(params: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """The cosine and sine Fourier coefficients of a soft-edge element's on-axis profile
    (``cos0``, ``cos1``, ... and ``sin0``, ...; a sine not given is 0), in order
    (:data:`harness.model.kinds.LIST_FIELDS`)."""
    count = sum(1 for key in params if key.startswith("cos") and key[3:].isdigit())
    return ([params[f"cos{j}"] for j in range(count)],
            [params.get(f"sin{j}", 0.0) for j in range(count)])


def thin_multipoles(params: Mapping[str, Any]) -> dict[int, tuple[Any, Any]]:
    """``{order N: (KnNL, KsNL)}`` of a thin multipole's integrated fields (as
    :func:`thick_multipoles`)."""
    return _components(params, _THIN_COMPONENT)


def parse_multipoles(raw: Any, length: float, integrated: bool, rigidity_Tm: float | None,
                     file, path: str) -> Multipoles:
    """A raw ``MagneticMultipoleP`` mapping as normalised strengths.

    ``BnN`` [T/m^N] becomes ``KnN = BnN / (B rho)`` (signed rigidity, so a negative charge
    flips the sign, as in ImpactX's ``unit = 1`` elements); ``KnNL`` on a thick element
    becomes ``KnNL / length``; ``KnN`` on a thin one (``integrated``) ``KnN * length``.
    ``tiltN`` T is folded into the components: Kn + i Ks -> (Kn + i Ks) exp(-i (N+1) T)
    (see :func:`rotated_normal`). Giving one component twice (``Kn1`` and ``Bn1``, or ``Kn1``
    and ``Kn1L``), or the two components of one order in different forms, is refused.
    """
    normal: dict[int, float] = {}
    skew: dict[int, float] = {}
    tilt: dict[int, float] = {}
    seen: dict[tuple[str, int], str] = {}
    forms: dict[int, tuple[str, str]] = {}
    for key, value in (raw or {}).items():
        key_path = f"{path}.{key}"
        match = _MULTIPOLE_KEY.match(str(key))
        if match is None or (match.group(1) == "tilt" and match.group(3)):
            raise ScenarioError(file, key_path, "a multipole name KnN, KsN, BnN, BsN or tiltN "
                                "(N = order, no leading zeros; suffix L for integrated "
                                "strengths)", _short(key))
        prefix, order, per_length = match.group(1), int(match.group(2)), not match.group(3)
        number = _number(value, file, key_path)
        component = "tilt" if prefix == "tilt" else prefix[1]
        if (component, order) in seen:
            raise ScenarioError(file, key_path, f"one form of each component ({key} and "
                                f"{seen[(component, order)]} both set order {order})", key)
        seen[(component, order)] = str(key)
        if prefix == "tilt":
            tilt[order] = number
            continue
        form = (prefix[0], match.group(3))
        if forms.setdefault(order, form) != form:
            raise ScenarioError(file, key_path, f"both components of order {order} in one "
                                "form (both K or both B, both with or without L; PALS)", key)
        if prefix.startswith("B"):
            if rigidity_Tm is None:
                raise ScenarioError(file, key_path, "a normalised strength Kn/Ks (a field "
                                    "strength needs the beam's rigidity)", key)
            number = number / rigidity_Tm
        if integrated and per_length:
            if length <= 0.0:
                raise ScenarioError(file, key_path, f"integrated strengths KnNL / KsNL on a "
                                    f"thin element ({key}L, not {key})", key)
            number = number * length
        elif not integrated and not per_length:
            if length <= 0.0:
                raise ScenarioError(file, key_path, "a per-metre strength (no L suffix) "
                                    "on a thick element of positive length", key)
            number = number / length
        (normal if component == "n" else skew)[order] = number
    for order, angle in tilt.items():
        if angle == 0.0 or order not in normal and order not in skew:
            continue   # a tilt without a field rotates nothing
        turned = complex(normal.get(order, 0.0), skew.get(order, 0.0)) \
            * complex(math.cos((order + 1) * angle), -math.sin((order + 1) * angle))
        normal[order], skew[order] = turned.real, turned.imag
    return Multipoles(normal, skew, integrated)


# --------------------------------------------------------------------------- per kind


@dataclass(frozen=True)
class _Context:
    """What the per-kind translators need besides the element."""

    file: Any
    rigidity_Tm: float | None


def _nonzero(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if v != 0.0}


def _alignment(element, ctx: _Context, path: str) -> dict[str, float]:
    shift = element.BodyShiftP
    if shift is None:
        return {}
    return _nonzero({f: _number(getattr(shift, f), ctx.file, f"{path}.BodyShiftP.{f}")
                     for f in ("x_offset", "y_offset", "z_rot")})


def _multipoles(element, raw: dict, ctx: _Context, path: str, integrated: bool = False
                ) -> Multipoles:
    length = float(getattr(element, "length", 0.0) or 0.0)
    return parse_multipoles(raw.get("MagneticMultipoleP"), length, integrated,
                            ctx.rigidity_Tm, ctx.file, f"{path}.MagneticMultipoleP")


def _thick_multipole_kind(spec: KindSpec) -> Callable:
    """A thick multipole kind (Quadrupole, Sextupole, ...): the normal strength of the
    spec's :attr:`~KindSpec.main_order` is required, every other component becomes its own
    (optional) field."""
    order = spec.main_order
    main = f"Kn{order}"

    def read(element, raw: dict, ctx: _Context, path: str) -> dict[str, float]:
        poles = _multipoles(element, raw, ctx, path)
        if order not in poles.normal:
            raise ScenarioError(ctx.file, f"{path}.MagneticMultipoleP.{main}",
                                f"the normalised {spec.main_name} {main} "
                                f"[{spec.unit_of(main)}] (or the field Bn{order})")
        params = {"length": element.length, main: poles.normal[order]}
        params.update(_nonzero({k: v for k, v in poles.params().items() if k != main}))
        return {**params, **_alignment(element, ctx, path)}

    return read


def _drift(element, raw, ctx: _Context, path: str) -> dict[str, float]:
    return {"length": element.length, **_alignment(element, ctx, path)}


def _bend_angle(element, raw: dict, ctx: _Context, path: str) -> float:
    """The bend angle from whichever of g_ref, rho_ref, bend_field_ref, angle is given."""
    length = element.length
    given = raw.get("BendP") or {}
    candidates: dict[str, float] = {}
    for key in ("g_ref", "rho_ref", "bend_field_ref", "angle"):
        if key not in given:
            continue
        value = _number(given[key], ctx.file, f"{path}.BendP.{key}")
        if key == "g_ref":
            candidates[key] = value * length
        elif key == "rho_ref":
            if value == 0.0:
                raise ScenarioError(ctx.file, f"{path}.BendP.rho_ref", "a non-zero bending "
                                    "radius [m] (give g_ref: 0 for a straight bend)", value)
            candidates[key] = length / value
        elif key == "bend_field_ref":
            if ctx.rigidity_Tm is None:
                raise ScenarioError(ctx.file, f"{path}.BendP.bend_field_ref", "g_ref or "
                                    "angle (a field needs the beam's rigidity)")
            candidates[key] = value / ctx.rigidity_Tm * length
        else:
            candidates[key] = value
    if not candidates:
        raise ScenarioError(ctx.file, f"{path}.BendP", "a bend strength: g_ref [1/m], "
                            "rho_ref [m], bend_field_ref [T] or angle [rad]")
    (first, angle), *others = candidates.items()
    for key, other in others:
        if abs(other - angle) > 1e-12 * max(abs(angle), 1e-300):
            raise ScenarioError(ctx.file, f"{path}.BendP.{key}", f"a value agreeing with "
                                f"{first} (angle {angle:.12g} rad; this gives "
                                f"{other:.12g} rad)", given[key])
    return angle


def _bend(element, raw, ctx: _Context, path: str) -> dict[str, float]:
    if element.length <= 0:
        raise ScenarioError(ctx.file, f"{path}.length", "a positive length for a bend",
                            element.length)
    if element.BendP is None:
        raise ScenarioError(ctx.file, f"{path}.BendP", "bend parameters with g_ref [1/m], "
                            "rho_ref [m], bend_field_ref [T] or angle [rad]")
    angle = _bend_angle(element, raw, ctx, path)
    given = raw.get("BendP") or {}
    params = {"length": element.length, "angle": angle}
    for face in ("1", "2"):
        sector, rect = f"e{face}", f"e{face}_rect"
        value = _number(given.get(sector, 0.0), ctx.file, f"{path}.BendP.{sector}")
        if rect in given:
            from_rect = _number(given[rect], ctx.file, f"{path}.BendP.{rect}") + angle / 2
            if sector in given and abs(from_rect - value) > 1e-12:
                raise ScenarioError(ctx.file, f"{path}.BendP.{rect}", f"{sector} = {rect} + "
                                    f"angle/2 when both are given ({sector} = {value:.12g}, "
                                    f"{rect} + angle/2 = {from_rect:.12g})", given[rect])
            value = from_rect
        params[sector] = value
    bend = element.BendP
    params.update(_nonzero({f: _number(getattr(bend, f), ctx.file, f"{path}.BendP.{f}")
                            for f in ("edge_int1", "edge_int2", "h1", "h2", "tilt_ref")}))
    poles = _multipoles(element, raw, ctx, path)
    params.update(_nonzero(poles.params()))
    return {**params, **_alignment(element, ctx, path)}


def _multipole(element, raw, ctx: _Context, path: str) -> dict[str, float]:
    if element.length != 0.0:
        raise ScenarioError(ctx.file, f"{path}.length", "0 (thin multipole kick)",
                            element.length)
    if raw.get("MagneticMultipoleP") is None:
        raise ScenarioError(ctx.file, f"{path}.MagneticMultipoleP",
                            "integrated strengths KnNL / KsNL")
    poles = _multipoles(element, raw, ctx, path, integrated=True)
    return {"length": 0.0, **poles.params(), **_alignment(element, ctx, path)}


def _solenoid(element, raw, ctx: _Context, path: str) -> dict[str, float]:
    given = raw.get("SolenoidP")
    if not given:
        raise ScenarioError(ctx.file, f"{path}.SolenoidP", "Ksol [1/m] or Bsol [T]")
    if "Ksol" in given and "Bsol" in given:
        raise ScenarioError(ctx.file, f"{path}.SolenoidP.Bsol", "one of Ksol or Bsol")
    if "Bsol" in given:
        if ctx.rigidity_Tm is None:
            raise ScenarioError(ctx.file, f"{path}.SolenoidP.Bsol", "Ksol [1/m] (a field "
                                "needs the beam's rigidity)")
        ksol = _number(given["Bsol"], ctx.file, f"{path}.SolenoidP.Bsol") / ctx.rigidity_Tm
    else:
        ksol = _number(given.get("Ksol", 0.0), ctx.file, f"{path}.SolenoidP.Ksol")
    poles = _multipoles(element, raw, ctx, path)
    return {"length": element.length, "Ksol": ksol, **_nonzero(poles.params()),
            **_alignment(element, ctx, path)}


def _rf(element, raw, ctx: _Context, path: str) -> dict[str, float]:
    rf = element.RFP
    if rf is None:
        raise ScenarioError(ctx.file, f"{path}.RFP", "voltage [V], frequency [Hz], phase")
    if element.length != 0.0:
        raise ScenarioError(ctx.file, f"{path}.length", "0 (short RF gap; thick cavities are "
                            "not translated)", element.length)
    return {"length": 0.0, **{f: _number(getattr(rf, f), ctx.file, f"{path}.RFP.{f}")
                              for f in ("voltage", "frequency", "phase")}}


def _kicker(element, raw, ctx: _Context, path: str) -> dict[str, float]:
    poles = _multipoles(element, raw, ctx, path, integrated=True)
    params = {"length": element.length, "Kn0L": poles.normal.get(0, 0.0),
              "Ks0L": poles.skew.get(0, 0.0)}
    params.update(_nonzero({k: v for k, v in poles.params().items()
                            if k not in ("Kn0L", "Ks0L")}))
    return {**params, **_alignment(element, ctx, path)}


def aperture_options(options: Mapping[str, Any], file, path: str) -> dict[str, float]:
    """ImpactX's aperture options (``src/elements/Aperture.H``, ``PolygonAperture.H``) from
    ``options`` (``action``: transmit or absorb; ``repeat_x``, ``repeat_y`` [m] >= 0, 0 none;
    ``shift_odd_x``: true/false, needs ``repeat_y``) -> the set ones as element fields
    (``absorb``, ``repeat_x``, ``repeat_y``, ``shift_odd_x``); ``path`` is the group's."""
    out: dict[str, float] = {}
    for key, value in options.items():
        where = f"{path}.{key}"
        if key == "action":
            if value not in APERTURE_ACTIONS:
                raise ScenarioError(file, where, f"one of {list(APERTURE_ACTIONS)}",
                                    _short(value))
            if value == "absorb":
                out["absorb"] = 1.0
        elif key == "shift_odd_x":
            if not isinstance(value, bool):
                raise ScenarioError(file, where, "true or false", _short(value))
            if value:
                out["shift_odd_x"] = 1.0
        elif key in ("repeat_x", "repeat_y"):
            number = _number(value, file, where)
            if number != 0.0:
                out[key] = number
        else:
            raise ScenarioError(file, where, "one of the aperture options action, repeat_x, "
                                "repeat_y, shift_odd_x", _short(key))
    if out.get("shift_odd_x") and not out.get("repeat_y"):
        raise ScenarioError(file, f"{path}.shift_odd_x", "false unless repeat_y > 0 (ImpactX "
                            "shifts every odd row of vertical periods)", True)
    return out


#: The fields of a PALS ``ApertureP`` (pals-schema ``ApertureParameters``) and their defaults.
_APERTURE_DEFAULTS: Mapping[str, Any] = {
    "x_limits": [None, None], "y_limits": [None, None], "shape": "RECTANGULAR",
    "location": "ENTRANCE_END", "material": "", "thickness": 0.0,
    "aperture_shifts_with_body": False, "aperture_active": True}


def pipe_aperture(group: Any, params: Mapping[str, Any], file, path: str
                  ) -> dict[str, float]:
    """ImpactX's pipe aperture (``src/elements/mixin/pipeaperture.H``) of a thick element
    from its raw ``ApertureP`` ``group`` (None: none) -> ``aperture_x``, ``aperture_y`` [m].

    ImpactX checks (x/a_x)^2 + (y/a_y)^2 <= 1 in the element's own frame at the exit of
    each of its ``nslice`` slices (``src/elements/mixin/beamoptic.H``): PALS's nearest
    statement is ``location: EVERYWHERE`` (sampled at the slice exits), ``shape:
    ELLIPTICAL``, symmetric ``x_limits``, ``y_limits``, and, on a shifted or rotated
    element (``BodyShiftP``), ``aperture_shifts_with_body: true``. Every other statement is
    refused naming the field; ``aperture_active: false`` is no aperture. ``params`` are the
    element's other fields (its alignment); ``path`` is the element's."""
    if group is None:
        return {}
    where = f"{path}.ApertureP"
    if not isinstance(group, dict):
        raise ScenarioError(file, where, "a mapping of parameters", _short(group))
    for key in group:
        if key not in _APERTURE_DEFAULTS:
            raise ScenarioError(file, f"{where}.{key}", "one of the fields of ApertureP: "
                                f"{sorted(_APERTURE_DEFAULTS)}", _short(key))
    given = {**_APERTURE_DEFAULTS, **group}
    if given["aperture_active"] is not True:
        if given["aperture_active"] is not False:
            raise ScenarioError(file, f"{where}.aperture_active", "true or false",
                                _short(given["aperture_active"]))
        return {}
    for key in ("material", "thickness"):
        if given[key] != _APERTURE_DEFAULTS[key]:
            reason = getattr(PALS_FIELDS[f"ApertureP.{key}"], "reason", "")
            raise ScenarioError(file, f"{where}.{key}", f"not set ({reason})",
                                _short(given[key]))
    if given["location"] != "EVERYWHERE":
        raise ScenarioError(file, f"{where}.location", "EVERYWHERE on a thick element (its "
                            "pipe aperture, which ImpactX checks at the exit of each of the "
                            "element's nslice slices; an aperture at one end is a Marker "
                            "with the ApertureP beside the element)",
                            _short(given["location"]))
    if given["shape"] != "ELLIPTICAL":
        raise ScenarioError(file, f"{where}.shape", "ELLIPTICAL on a thick element "
                            "(ImpactX's pipe aperture is an ellipse; a rectangular one is a "
                            "Marker with the ApertureP beside the element)",
                            _short(given["shape"]))
    out: dict[str, float] = {}
    for axis in ("x", "y"):
        key = f"{axis}_limits"
        limits = given[key]
        if not isinstance(limits, list) or len(limits) != 2 or any(
                v is None or isinstance(v, bool) for v in limits):
            raise ScenarioError(file, f"{where}.{key}", "both limits [-a, a] in metres (a "
                                "pipe aperture bounds x and y)", _short(limits))
        lo = _number(limits[0], file, f"{where}.{key}[0]")
        hi = _number(limits[1], file, f"{where}.{key}[1]")
        if hi <= 0.0 or abs(lo + hi) > 1e-15 * max(abs(lo), 1.0):
            raise ScenarioError(file, f"{where}.{key}", "symmetric limits [-a, a] with a > 0 "
                                "in metres", _short(limits))
        out[f"aperture_{axis}"] = hi
    shifted = any(params.get(key, 0.0) != 0.0 for key in ALIGNMENT)
    if shifted and given["aperture_shifts_with_body"] is not True:
        raise ScenarioError(file, f"{where}.aperture_shifts_with_body", "true on a shifted "
                            "or rotated element (ImpactX checks a pipe aperture in the "
                            "element's own frame)", _short(given["aperture_shifts_with_body"]))
    return out


def _shifted_aperture(raw: Mapping[str, Any]) -> bool:
    """Whether a raw element's ``ApertureP`` moves with its ``BodyShiftP``."""
    group = raw.get("ApertureP")
    return isinstance(group, dict) and group.get("aperture_shifts_with_body") is True


def _aperture(element, ctx: _Context, path: str, options: Mapping[str, Any] | None = None
              ) -> dict[str, float] | None:
    """The ``Aperture`` of a Marker or Instrument with an active ``ApertureP`` (None without
    one); ``options`` is the element's ``ImpactXP`` group (:func:`aperture_options`)."""
    aperture = element.ApertureP
    if aperture is None or not aperture.aperture_active:
        if options:
            raise ScenarioError(ctx.file, f"{path}.{EXTENSION_GROUP}", "no ImpactXP group "
                                "without an active ApertureP (it holds aperture options)",
                                _short(dict(options)))
        return None
    xs, ys = aperture.x_limits, aperture.y_limits
    for axis, limits in (("x", xs), ("y", ys)):
        lo, hi = limits
        if lo is None or hi is None or abs(lo + hi) > 1e-15 * max(abs(lo), 1.0):
            raise ScenarioError(ctx.file, f"{path}.ApertureP.{axis}_limits",
                                "symmetric limits [-a, a] in metres", _short(limits))
        _number(hi, ctx.file, f"{path}.ApertureP.{axis}_limits[1]")
    if aperture.shape not in ("RECTANGULAR", "ELLIPTICAL"):
        raise ScenarioError(ctx.file, f"{path}.ApertureP.shape",
                            "RECTANGULAR or ELLIPTICAL", aperture.shape)
    if element.length != 0.0:
        raise ScenarioError(ctx.file, f"{path}.length", "0 for an aperture", element.length)
    params = {"length": 0.0, "x_limit": float(xs[1]), "y_limit": float(ys[1]),
              "elliptical": float(aperture.shape == "ELLIPTICAL")}
    params.update(aperture_options(options or {}, ctx.file, f"{path}.{EXTENSION_GROUP}"))
    if aperture.aperture_shifts_with_body:
        params.update(_alignment(element, ctx, path))
    return params


def _marker(element, raw, ctx: _Context, path: str) -> dict[str, float]:
    return {"length": float(element.length)}


def _matrix(value: Any, file, path: str) -> dict[str, float]:
    """A LinearMap's ``R``: 6 rows of 6 finite numbers -> ``{"R11": ..., "R66": ...}``."""
    if not isinstance(value, list) or len(value) != 6 or not all(
            isinstance(row, list) and len(row) == 6 for row in value):
        raise ScenarioError(file, path, "a 6x6 matrix: 6 rows of 6 numbers on (x, px, y, "
                            "py, t, pt)", _short(value))
    return {f"R{i + 1}{j + 1}": _number(value[i][j], file, f"{path}[{i}][{j}]")
            for i in range(6) for j in range(6)}


def _entries(value: Any, prefix: str, file, path: str) -> dict[str, float]:
    """A list field of an extension kind (:data:`harness.model.kinds.LIST_FIELDS`): 1 to
    :data:`~harness.model.kinds.MAX_COEFFICIENTS` finite numbers -> ``{"<prefix>0": ...,
    "<prefix>1": ...}``."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_COEFFICIENTS:
        raise ScenarioError(file, path, f"a list of 1 to {MAX_COEFFICIENTS} numbers",
                            _short(value))
    return {f"{prefix}{j}": _number(v, file, f"{path}[{j}]") for j, v in enumerate(value)}


def _check_lists(spec: KindSpec, params: dict[str, float], file, path: str) -> None:
    """The list fields of one element have the same length (ImpactX's soft-edge elements
    pair the j-th cosine with the j-th sine coefficient)."""
    lengths = {}
    for name, pattern in LIST_FIELDS.items():
        if f"{EXTENSION_GROUP}.{name}" in spec.pals_fields:
            prefix = pattern.removesuffix("*")
            lengths[name] = sum(1 for k in params if k.startswith(prefix)
                                and k[len(prefix):].isdigit())
    given = {name: n for name, n in lengths.items() if n}
    if len(set(given.values())) > 1:
        first, *others = given
        raise ScenarioError(file, f"{path}.{EXTENSION_GROUP}.{others[0]}", f"as many "
                            f"entries as {first} ({given[first]})", given[others[0]])


def _pole_list(value: Any, letter: str, file, path: str) -> dict[str, float]:
    """An ExactMultipole's ``k_normal`` (``letter`` n) or ``k_skew`` (s): a list of up to 21
    numbers, index = order N, per metre -> the non-zero ``KnN``/``KsN``."""
    if not isinstance(value, list) or not 1 <= len(value) <= 21:
        raise ScenarioError(file, path, "a list of 1 to 21 numbers (index = multipole order "
                            "N, per metre)", _short(value))
    numbers = [_number(v, file, f"{path}[{n}]") for n, v in enumerate(value)]
    return {f"K{letter}{n}": v for n, v in enumerate(numbers) if v != 0.0}


def _edge_flag(value: Any, file, path: str) -> float:
    """A QuadEdge's ``flag``: ``entry`` or +1 -> 1.0, ``exit`` or -1 -> -1.0."""
    named = {"entry": 1.0, "exit": -1.0}
    if isinstance(value, str) and value in named:
        return named[value]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (1, -1):
        return float(value)
    raise ScenarioError(file, path, "'entry' (or 1) or 'exit' (or -1)", _short(value))


def _spin_entries(key: str, value: Any, file, path: str) -> dict[str, float]:
    """A SpinMap's ``v`` (3 numbers) or ``A`` (3 rows of 6 numbers on (x, px, y, py, t,
    pt)) -> ``v1..v3`` or ``A11..A36``."""
    if key == "v":
        if not isinstance(value, list) or len(value) != 3:
            raise ScenarioError(file, path, "3 numbers: the design spin rotation vector "
                                "[rad]", _short(value))
        return {f"v{i + 1}": _number(v, file, f"{path}[{i}]") for i, v in enumerate(value)}
    if not isinstance(value, list) or len(value) != 3 or not all(
            isinstance(row, list) and len(row) == 6 for row in value):
        raise ScenarioError(file, path, "a 3x6 matrix: 3 rows of 6 numbers on (x, px, y, "
                            "py, t, pt)", _short(value))
    return {f"A{i + 1}{j + 1}": _number(value[i][j], file, f"{path}[{i}][{j}]")
            for i in range(3) for j in range(6)}


def _extension(spec: KindSpec, fields: dict, ctx: _Context, path: str) -> dict[str, float]:
    """The params of an extension kind (``ImpactX.<class>``, no pals-schema class):
    ``length``, ``MetaP`` (no effect), ``BodyShiftP`` (the alignment fields, where the kind
    has them) and its own group :data:`EXTENSION_GROUP`; every other key is refused by
    name, every required field must be given."""
    file = ctx.file
    aligned = "x_offset" in spec.fields
    allowed = ["length", "MetaP", EXTENSION_GROUP, *(["BodyShiftP"] if aligned else []),
               *(["ApertureP"] if spec.pipe_aperture else [])]
    for key, value in fields.items():
        if key not in allowed:
            raise ScenarioError(file, f"{path}.{key}", f"one of the fields of {spec.kind}: "
                                f"{allowed}", _short(key))
        if key != "length" and not isinstance(value, dict):
            raise ScenarioError(file, f"{path}.{key}", "a mapping of parameters",
                                _short(value))
    params: dict[str, float] = {"length": _number(fields.get("length", 0.0), file,
                                                  f"{path}.length")}
    if not spec.thick and spec.kind != "ImpactX.LinearMap" and params["length"] != 0.0:
        raise ScenarioError(file, f"{path}.length", f"0 ({spec.kind} is a thin element)",
                            params["length"])
    if spec.thick and params["length"] == 0.0:
        raise ScenarioError(file, f"{path}.length", f"a positive length for a {spec.kind} "
                            "(ImpactX's map of length 0 is the identity)", 0.0)
    own = fields.get(EXTENSION_GROUP) or {}
    if spec.kind == POLYGON_APERTURE:
        params.update(_polygon(own, file, f"{path}.{EXTENSION_GROUP}"))
        own = {}
    names = {key.split(".", 1)[1]: where for key, where in spec.pals_fields.items()}
    for key, value in own.items():
        where = names.get(key)
        if where is None:
            raise ScenarioError(file, f"{path}.{EXTENSION_GROUP}.{key}", "one of the fields "
                                f"of {spec.kind}: {sorted(names)}", _short(key))
        if key == "R" and spec.kind == "ImpactX.LinearMap":
            params.update(_matrix(value, file, f"{path}.{EXTENSION_GROUP}.R"))
        elif key in LIST_FIELDS:
            params.update(_entries(value, str(where).removesuffix("*"), file,
                                   f"{path}.{EXTENSION_GROUP}.{key}"))
        elif key in ("k_normal", "k_skew") and spec.kind == "ImpactX.ExactMultipole":
            params.update(_pole_list(value, "n" if key == "k_normal" else "s", file,
                                     f"{path}.{EXTENSION_GROUP}.{key}"))
        elif key in ("v", "A") and spec.kind == "ImpactX.SpinMap":
            params.update(_spin_entries(key, value, file, f"{path}.{EXTENSION_GROUP}.{key}"))
        elif key == "flag" and spec.kind == "ImpactX.QuadEdge":
            params["flag"] = _edge_flag(value, file, f"{path}.{EXTENSION_GROUP}.flag")
        else:
            params[str(where)] = _number(value, file, f"{path}.{EXTENSION_GROUP}.{key}")
    if spec.kind == "ImpactX.ExactMultipole" and not any(
            k.startswith("K") for k in params):
        raise ScenarioError(file, f"{path}.{EXTENSION_GROUP}.k_normal", "at least one "
                            "non-zero component in k_normal or k_skew (without one the map "
                            "is an exact drift: use a Drift)")
    if spec.kind == "ImpactX.SpinMap" and "A11" not in params:
        params.update({key: 0.0 for key in SPIN_MATRIX_ENTRIES})
    if spec.kind == "ImpactX.LinearMap" and "R11" not in params:
        raise ScenarioError(file, f"{path}.{EXTENSION_GROUP}.R", "this required field (the "
                            "6x6 matrix)")
    lists = {where: key.split(".", 1)[1] for key, where in spec.pals_fields.items()
             if key.split(".", 1)[1] in LIST_FIELDS}
    for name in sorted(spec.required - set(params)):
        if name in lists and any(fnmatchcase(k, name) for k in params):
            continue
        raise ScenarioError(file, f"{path}.{EXTENSION_GROUP}.{lists.get(name, name)}",
                            f"this required field of {spec.kind}")
    _check_lists(spec, params, file, path)
    shift = fields.get("BodyShiftP") or {}
    for key, value in shift.items():
        if key not in ALIGNMENT:
            where = PALS_FIELDS.get(f"BodyShiftP.{key}")
            reason = where.reason if isinstance(where, Refused) else "not a BodyShiftP field"
            raise ScenarioError(file, f"{path}.BodyShiftP.{key}",
                                f"x_offset, y_offset or z_rot ({reason})", _short(key))
        number = _number(value, file, f"{path}.BodyShiftP.{key}")
        if number != 0.0:
            params[key] = number
    if spec.pipe_aperture:
        params.update(pipe_aperture(fields.get("ApertureP"), params, file, path))
    return params


def _polygon(own: Mapping[str, Any], file, path: str) -> dict[str, float]:
    """The fields of an ``ImpactX.PolygonAperture`` from its ``ImpactXP`` group (``path``):
    ``vertices_x``, ``vertices_y`` [m] (equally long, 4 to :data:`MAX_VERTICES` entries,
    the first vertex repeated last, as ImpactX ``src/elements/PolygonAperture.H`` requires)
    -> ``vertex_xN``, ``vertex_yN``; ``min_radius2`` [m^2] (default 0) and the options of
    :func:`aperture_options`."""
    rest = {k: v for k, v in own.items()
            if k not in ("vertices_x", "vertices_y", "min_radius2")}
    columns = {}
    for axis in ("x", "y"):
        key = f"vertices_{axis}"
        value = own.get(key)
        if not isinstance(value, list) or not 4 <= len(value) <= MAX_VERTICES:
            raise ScenarioError(file, f"{path}.{key}", f"a list of 4 to {MAX_VERTICES:,} "
                                "vertex coordinates [m], the first repeated last",
                                _short(value))
        columns[axis] = [_number(v, file, f"{path}.{key}[{i}]") for i, v in enumerate(value)]
    xs, ys = columns["x"], columns["y"]
    if len(xs) != len(ys):
        raise ScenarioError(file, f"{path}.vertices_y", f"as many entries as vertices_x "
                            f"({len(xs)})", len(ys))
    if xs[0] != xs[-1] or ys[0] != ys[-1]:
        raise ScenarioError(file, f"{path}.vertices_x", "a closed polygon: the last vertex "
                            "exactly equal to the first (ImpactX PolygonAperture)",
                            _short([xs[-1], ys[-1]]))
    params = {"min_radius2": _number(own.get("min_radius2", 0.0), file,
                                     f"{path}.min_radius2")}
    params.update({f"vertex_x{i}": v for i, v in enumerate(xs)})
    params.update({f"vertex_y{i}": v for i, v in enumerate(ys)})
    params.update(aperture_options(rest, file, path))
    return params


def polygon_vertices(params: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """``(vertices_x, vertices_y)`` [m] of an ``ImpactX.PolygonAperture``'s params, in
    order (:func:`_polygon`)."""
    count = sum(1 for key in params if key.startswith("vertex_x"))
    return ([params[f"vertex_x{i}"] for i in range(count)],
            [params[f"vertex_y{i}"] for i in range(count)])


#: Reading rule (:attr:`harness.model.kinds.KindSpec.reader`) -> the reader of a kind.
_READERS: dict[str, Callable[[KindSpec], Callable[..., dict[str, float]]]] = {
    "drift": lambda spec: _drift,
    "thick_multipole": _thick_multipole_kind,
    "bend": lambda spec: _bend,
    "thin_multipole": lambda spec: _multipole,
    "solenoid": lambda spec: _solenoid,
    "rf": lambda spec: _rf,
    "marker": lambda spec: _marker,
    "kicker": lambda spec: _kicker,
}

#: PALS kind -> reader ``(pals element, raw fields, context, path) -> params`` (built from
#: each kind's spec).
READERS: dict[str, Callable[..., dict[str, float]]] = {
    spec.kind: _READERS[spec.reader](spec) for spec in SPECS.values()
    if spec.reader and spec.reader != "extension"}


def _group_class(kind_class: type[pydantic.BaseModel], group: str
                 ) -> type[pydantic.BaseModel] | None:
    """The pydantic model of a parameter group of a PALS kind (its annotation ``X | None``)."""
    import typing

    info = kind_class.model_fields.get(group)
    if info is None:
        return None
    for candidate in (info.annotation, *typing.get_args(info.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, pydantic.BaseModel):
            return candidate
    return None


def _check_dispositions(kind: str, kind_class: type[pydantic.BaseModel], raw: dict, file,
                        path: str) -> None:
    """Refuse PALS fields that :data:`PALS_FIELDS` marks :class:`Refused` when they are set
    (differ from pals-schema's default), whole groups refused for a kind, and an ApertureP
    on an element that is not a zero-length Marker or Instrument."""
    for group in _GROUPS:
        given = raw.get(group)
        if not isinstance(given, dict) or not given:
            continue
        whole = PALS_FIELDS.get(f"{kind}:{group}", PALS_FIELDS.get(group))
        moves_aperture = group == "BodyShiftP" and _shifted_aperture(raw)
        if isinstance(whole, Refused) and not moves_aperture:
            key = next(iter(given))
            hint = ("; to move its aperture set ApertureP.aperture_shifts_with_body: true"
                    if group == "BodyShiftP" and isinstance(raw.get("ApertureP"), dict)
                    else "")
            raise ScenarioError(file, f"{path}.{group}.{key}", f"no {group} on a {kind} "
                                f"({whole.reason}{hint})", _short(given[key]))
        if group == "MagneticMultipoleP":
            continue
        pipe = group == "ApertureP" and kind in PIPE_APERTURE_KINDS
        if group == "ApertureP" and kind not in ("Marker", "Instrument") and not pipe:
            raise ScenarioError(file, f"{path}.ApertureP", f"no aperture on a {kind} "
                                "(apertures sit on a Marker or a zero-length Instrument, "
                                f"pipe apertures on {sorted(PIPE_APERTURE_KINDS)}; put a "
                                "Marker with the ApertureP before the element)")
        model = _group_class(kind_class, group)
        for key in given:
            try:
                where = pals_disposition(kind, f"{group}.{key}")
            except KeyError:
                continue   # unknown keys are refused by _check_known_fields
            if not isinstance(where, Refused) or (pipe and key == "location"):
                continue   # a pipe aperture's location is read by pipe_aperture
            field_info = model.model_fields.get(key) if model is not None else None
            default = field_info.default if field_info is not None else None
            if given[key] != default:
                raise ScenarioError(file, f"{path}.{group}.{key}",
                                    f"not set ({where.reason})", _short(given[key]))


# --------------------------------------------------------------------------- flattening


class _Flattener:
    """Resolves a raw PALS document into PALS element objects, with field paths for errors."""

    def __init__(self, file: str | Path | None, rigidity_Tm: float | None):
        self.file = file
        self.ctx = _Context(file, rigidity_Tm)
        self.classes = _pals_classes()
        self.registry: dict[str, dict] = {}
        self.where: dict[str, str] = {}
        self.built: dict[str, tuple[str, dict[str, float]] | dict] = {}
        self._counts: dict[int, int] = {}
        self._expanded: dict[str, list] = {}
        #: element name -> the path of its first field strength given as a field (T/m^N,
        #: T), read with the starting rigidity (:func:`_fields_against_local_reference`).
        self.field_forms: dict[str, str] = {}

    # -- one element -----------------------------------------------------------------------
    def check_kind(self, raw: Any, path: str) -> str:
        if not isinstance(raw, dict):
            raise ScenarioError(self.file, path, "a mapping of the element's fields",
                                _short(raw))
        kind = raw.get("kind")
        if kind is None:
            raise ScenarioError(self.file, f"{path}.kind", "an element kind", None)
        if isinstance(kind, str) and kind in EXTENSION_KINDS:
            return kind
        if isinstance(kind, str) and "." in kind:
            raise ScenarioError(
                self.file, f"{path}.kind", "a PALS kind or one of the extension kinds "
                f"ImpactX.<class>, <class> one of {_extension_classes()}", _short(kind))
        if not isinstance(kind, str) or kind not in self.classes:
            raise ScenarioError(
                self.file, f"{path}.kind",
                f"a PALS kind; supported: {_kinds_text()}", _short(kind))
        if kind not in ELEMENT_TIERS and kind not in _CONTAINERS:
            raise ScenarioError(
                self.file, f"{path}.kind",
                f"an element kind trackbench translates: {_kinds_text(False)}; "
                f"{kind!r} is supported by: no backend (the lattice layer does not "
                "translate it)", kind)
        return kind

    def build(self, name: str, raw: Any, path: str) -> tuple[str, dict[str, float]] | dict:
        """``(kind, params)`` of an element, or the raw mapping of a container."""
        kind = self.check_kind(raw, path)
        if kind in _CONTAINERS:
            return raw
        reverse = _reverse(kind, raw, self.file, path)
        _check_values({k: v for k, v in raw.items() if k != "reverse"}, self.file, path)
        fields = {k: v for k, v in raw.items() if k not in ("kind", "reverse")}
        if reverse:
            kind, params = self._built(kind, name, fields, path)
            if params.get("length", 0.0) <= 0.0:
                raise ScenarioError(self.file, f"{path}.length", "a positive length for an "
                                    "element with reverse: true (its inverse has length "
                                    "-length)", params.get("length", 0.0))
            faces = sorted(k for k in _POLE_FACE_FIELDS if params.get(k))
            if faces:
                raise ScenarioError(self.file, f"{path}.reverse", "reverse: true on a bend "
                                    "without pole faces (ImpactX inverts the body of a bend "
                                    f"of negative length, not its DipEdges; set: {faces})",
                                    True)
            flipped = {**params, "length": -params["length"]}
            if "angle" in params:  # a bend: the same curvature g = angle / length
                flipped["angle"] = -params["angle"]
            return kind, flipped
        return self._built(kind, name, fields, path)

    def _built(self, kind: str, name: str, fields: dict, path: str
               ) -> tuple[str, dict[str, float]]:
        """``(kind, params)`` of an element's fields (``kind`` and ``reverse`` taken out)."""
        fields = dict(fields)
        options = fields.pop(EXTENSION_GROUP, None) if kind in ("Marker", "Instrument") \
            else None
        if options is not None and not isinstance(options, dict):
            raise ScenarioError(self.file, f"{path}.{EXTENSION_GROUP}", "a mapping of "
                                "aperture options (action, repeat_x, repeat_y, shift_odd_x)",
                                _short(options))
        if kind in EXTENSION_KINDS:
            params = _extension(SPECS[kind], fields, self.ctx, path)
            check_element_bounds(kind, params, self.file, path)
            return kind, params
        known = self.classes[kind].model_fields
        extra = {group: key for (k, group), key in _EXTRA_FIELDS.items() if k == kind}
        for key in fields:
            if key not in known:  # before pals-schema, whose message would not name the key
                raise ScenarioError(
                    self.file, f"{path}.{key}", f"one of the fields of {kind}: "
                    f"{sorted(k for k in known if k not in ('name', 'kind'))}", _short(key))
            if key.endswith("P") and fields[key] is not None and not isinstance(fields[key],
                                                                                 dict):
                raise ScenarioError(self.file, f"{path}.{key}", "a mapping of parameters",
                                    _short(fields[key]))
        _check_dispositions(kind, self.classes[kind], fields, self.file, path)
        bad_key = _bad_multipole_key(fields.get("MagneticMultipoleP"))
        if bad_key is not None:
            raise ScenarioError(self.file, f"{path}.MagneticMultipoleP.{bad_key}",
                                "a multipole name KnN, KsN, BnN, BsN or tiltN (N = order, no "
                                "leading zeros; suffix L for integrated strengths)", bad_key)
        for key, value in (fields.get("MagneticMultipoleP") or {}).items():
            _number(value, self.file, f"{path}.MagneticMultipoleP.{key}")
        schema_fields = {k: (dict(v) if isinstance(v, dict) else v) for k, v in fields.items()}
        for group, key in extra.items():
            if isinstance(schema_fields.get(group), dict):
                schema_fields[group].pop(key, None)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                element = self.classes[kind](name=name, **schema_fields)
        except pydantic.ValidationError as error:
            loc, msg, got = _pydantic_message(error)
            raise ScenarioError(self.file, f"{path}.{loc}" if loc else path, msg, got) from None
        except (TypeError, ValueError, AttributeError) as error:  # pals-schema's own checks
            raise ScenarioError(self.file, path, f"valid {kind} fields "
                                f"({_Short(str(error), 200)!r})") from None
        for key, value in schema_fields.items():
            sub = getattr(element, key, None)
            if (isinstance(sub, pydantic.BaseModel) and isinstance(value, dict)
                    and type(sub).model_config.get("extra") != "allow"):
                _check_known_fields(sub, value, self.file, f"{path}.{key}",
                                    frozenset({extra[key]}) if key in extra else frozenset())
        if kind in ("Marker", "Instrument"):
            aperture = _aperture(element, self.ctx, path, options)
            if aperture is not None:
                check_element_bounds("Aperture", aperture, self.file, path)
                return "Aperture", aperture
        params = READERS[kind](element, fields, self.ctx, path)
        if kind in PIPE_APERTURE_KINDS:
            params.update(pipe_aperture(fields.get("ApertureP"), params, self.file, path))
        check_element_bounds(kind, params, self.file, path)
        given = _field_form(fields, path)
        if given is not None:
            self.field_forms[name] = given
        return kind, params

    def element(self, name: str) -> tuple[str, dict[str, float]] | dict:
        if name not in self.built:
            self.built[name] = self.build(name, self.registry[name], self.where[name])
        return self.built[name]

    # -- lines -----------------------------------------------------------------------------
    def _children(self, raw: dict, path: str) -> tuple[str, list]:
        key = "line" if raw["kind"] == "BeamLine" else "branches"
        children = raw.get(key)
        if not isinstance(children, list):
            raise ScenarioError(self.file, f"{path}.{key}", "a list", _short(children))
        if not children:
            raise ScenarioError(self.file, f"{path}.{key}", "a non-empty list (an empty "
                                f"{raw['kind']} tracks nothing)", [])
        if raw["kind"] == "Lattice" and len(children) != 1:
            raise ScenarioError(self.file, f"{path}.branches", "exactly one branch",
                                len(children))
        return key, children

    def _resolve(self, item: Any, path: str) -> tuple[str, Any, str]:
        """``(name, raw, path)`` of a line entry (a name, ``use: name`` or an inline
        ``{name: {...}}`` definition)."""
        if isinstance(item, str):
            if item not in self.registry:
                raise ScenarioError(self.file, path, "the name of an element defined in "
                                    "the facility", _short(item))
            return item, self.registry[item], self.where[item]
        if not isinstance(item, dict) or len(item) != 1:
            raise ScenarioError(self.file, path, "a one-key mapping {name: {kind: ...}} or a "
                                "name", _short(item))
        (name, raw), = item.items()
        check_element_name(name, self.file, path)
        if name == "use" and isinstance(raw, str):
            return self._resolve(raw, path)
        if isinstance(raw, dict) and raw.get("kind") is None and name in self.registry:
            raw = {**self.registry[name], **raw}
        return name, raw, path

    def count(self, item: Any, path: str, stack: tuple[int, ...] = ()) -> int:
        """Elements ``item`` expands to, computed without expanding (memoised per
        container), capped at :data:`MAX_ELEMENTS`."""
        name, raw, where = self._resolve(item, path)
        if id(raw) in stack:
            raise ScenarioError(self.file, where, "a lattice without circular references "
                                f"({name!r} contains itself)")
        if len(stack) > MAX_DEPTH:
            raise ScenarioError(self.file, where, f"at most {MAX_DEPTH} levels of nested "
                                "beamlines")
        if not isinstance(raw, dict) or raw.get("kind") not in _CONTAINERS:
            return 1
        if id(raw) in self._counts:
            return self._counts[id(raw)]
        self.check_kind(raw, where)
        key, children = self._children(raw, where)
        total = 0
        for index, child in enumerate(children):
            total += self.count(child, f"{where}.{key}[{index}]", (*stack, id(raw)))
            if total > MAX_ELEMENTS:
                raise ScenarioError(self.file, where, f"at most {MAX_ELEMENTS:,} elements "
                                    "after expanding the beamlines (this line expands to "
                                    "more)")
        self._counts[id(raw)] = total
        return total

    def flatten(self, item: Any, path: str, out: list, depth: int = 0) -> None:
        name, raw, where = self._resolve(item, path)
        if depth > MAX_DEPTH:  # count() has refused it already; kept for direct callers
            raise ScenarioError(self.file, where, f"at most {MAX_DEPTH} levels of nested "
                                "beamlines")
        shared = not isinstance(item, dict) and name in self.registry
        built = self.element(name) if shared else self.build(name, raw, where)
        if not isinstance(built, dict):
            out.append((name, *built))
            return
        if shared and name in self._expanded:   # a named line is expanded once
            out.extend(self._expanded[name])
            return
        key, children = self._children(built, where)
        start = len(out)
        for index, child in enumerate(children):
            self.flatten(child, f"{where}.{key}[{index}]", out, depth + 1)
        if shared:
            self._expanded[name] = out[start:]


def _field_form(fields: Mapping[str, Any], path: str) -> str | None:
    """The path of the first strength a PALS element gives as a field (``BnN``, ``BsN``,
    ``Bsol``, ``bend_field_ref``), or None."""
    for group, keys in (("MagneticMultipoleP", None), ("SolenoidP", ("Bsol",)),
                        ("BendP", ("bend_field_ref",))):
        given = fields.get(group)
        if not isinstance(given, dict):
            continue
        for key in given:
            if (keys is None and str(key).startswith("B")) or (keys and key in keys):
                return f"{path}.{group}.{key}"
    return None


def _fields_against_local_reference(flattener: _Flattener,
                                    out: list[tuple[str, str, dict[str, float]]], file,
                                    rigidity_Tm: float | None) -> None:
    """In a lattice that changes the reference energy, a Quadrupole given by its field
    (``Bn1``/``Bs1`` [T/m] only) gets :data:`~harness.model.kinds.FIELD_RIGIDITY` (the
    starting B rho that Kn1/Ks1 were normalised with): the backends then divide the field by
    the local rigidity, as ImpactX does for ``unit = 1`` (``src/elements/ChrQuad.H``).
    Any other strength given as a field is refused there, naming the field and the
    accelerating element (its strength per rigidity would change along the lattice)."""
    changers = [name for name, kind, _ in out if SPECS[kind].accelerates]
    if not changers or not flattener.field_forms:
        return
    used = {name for name, _, _ in out}
    for name, where in flattener.field_forms.items():
        if name not in used:
            continue
        kind, params = flattener.built[name]  # type: ignore[misc]
        key = where.rsplit(".", 1)[1]
        if kind == "Quadrupole" and key in ("Bn1", "Bs1") \
                and set(thick_multipoles(params)) == {1} and rigidity_Tm is not None:
            params[FIELD_RIGIDITY] = rigidity_Tm
            continue
        raise ScenarioError(file, where, f"a normalised strength (the lattice changes the "
                            f"reference energy at {changers[0]!r}, so a field is held "
                            "against the local rigidity: trackbench carries that for a "
                            "Quadrupole's Bn1/Bs1 alone, without other multipole "
                            "components)", key)


def _register(flattener: _Flattener, facility: list, file) -> None:
    """Facility entries by name; names must be text and unique."""
    for index, entry in enumerate(facility):
        path = f"lattice.PALS.facility[{index}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ScenarioError(file, path, "a one-key mapping {name: {kind: ...}} or "
                                "'use: <line>'", _short(entry))
        (name, raw), = entry.items()
        check_element_name(name, file, path)
        if name == "use":
            continue
        if name in flattener.registry:
            raise ScenarioError(file, f"lattice.{name}", "unique element names (defined "
                                f"again at facility[{index}])", name)
        flattener.registry[name] = raw
        flattener.where[name] = f"lattice.{name}"


def parse_pals(document: Any, file: str | Path | None = None,
               rigidity_Tm: float | None = None) -> list[tuple[str, str, dict[str, float]]]:
    """Validate a PALS document with pals-schema and flatten it to ``(name, kind, params)``.

    ``rigidity_Tm`` (the beam's signed B rho = p/q [T m]) converts field strengths (``BnN``,
    ``bend_field_ref``, ``Bsol``); without it they are refused. In a lattice that changes the
    reference energy only a Quadrupole's ``Bn1``/``Bs1`` may be a field (it keeps
    ``field_rigidity``, :func:`_fields_against_local_reference`)."""
    if not isinstance(document, dict) or "PALS" not in document:
        raise ScenarioError(file, "lattice", "a PALS document: {PALS: {facility: [...]}}",
                            type(document).__name__)
    root = document["PALS"]
    facility = root.get("facility") if isinstance(root, dict) else None
    if not isinstance(facility, list) or not facility:
        raise ScenarioError(file, "lattice.PALS.facility", "a non-empty list",
                            _short(facility))
    if len(facility) > MAX_DEFINITIONS + 1:
        raise ScenarioError(file, "lattice.PALS.facility", f"at most {MAX_DEFINITIONS:,} "
                            "element definitions", f"{len(facility):,}")
    flattener = _Flattener(file, rigidity_Tm)
    _register(flattener, facility, file)
    active = facility[-1]
    if len(facility) > 1 and not (isinstance(active, dict) and "use" in active):
        raise ScenarioError(file, "lattice.PALS.facility", "a final 'use: <line>' entry "
                            "selecting the beamline when the facility has several entries")
    for name in flattener.registry:   # every element defined, used or not
        flattener.element(name)
    flattener.count(active, "lattice")
    out: list[tuple[str, str, dict[str, float]]] = []
    flattener.flatten(active, "lattice", out)
    _fields_against_local_reference(flattener, out, file, rigidity_Tm)
    _validate_with_pals_root(document, file)
    return out


#: Line entries per container that :func:`_validate_with_pals_root` gives pals-schema.
_PALS_ROOT_ENTRIES = 256


def _skeleton(root: dict) -> dict:
    """The PALS root with its containers (distinct line entries, at most
    :data:`_PALS_ROOT_ENTRIES`) and ``use`` only:
    every named element was already validated by its own pals-schema class, every line
    entry by the flattener (a root of elements only keeps one Marker)."""
    facility = []
    for entry in root.get("facility", []):
        (name, raw), = entry.items()
        if isinstance(raw, dict) and raw.get("kind") not in _CONTAINERS and name != "use":
            continue
        raw = copy.deepcopy(raw)
        if isinstance(raw, dict) and isinstance(raw.get("line"), list):
            # the forms of the entries (the flattener checks every entry): pals-schema takes
            # ~170 us per entry, 17 s for a line of 1e5 names
            distinct = {(x if isinstance(x, str) else id(x)): x for x in raw["line"]}
            raw["line"] = list(distinct.values())[:_PALS_ROOT_ENTRIES]
        facility.append({name: raw})
    if not facility:
        facility = [{"_": {"kind": "Marker"}}]
    return {**{k: v for k, v in root.items() if k != "facility"}, "facility": facility}


def _validate_with_pals_root(document: dict, file) -> None:
    """Run the document's structure through ``pals.PALSroot`` (the check ImpactX's reader
    does), its elements as bare kinds: their fields were validated element by element."""
    import pals

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # pals-schema 0.3 mistakes a root holding only 'facility' for a one-key container
            pals.PALSroot(**{"version": None, **_skeleton(document["PALS"])})
    except (pydantic.ValidationError, ValueError, TypeError) as error:
        raise ScenarioError(file, "lattice.PALS", "a valid PALS document "
                            f"({_Short(str(error), 200)!r})") from None


@dataclass(frozen=True)
class ElementSettings:
    """Per-element tracking settings (model tier floor, slicing, integrator order)."""

    model: str
    nslice: int = 1
    mapsteps: int = 10
    int_order: int = 2


def build_elements(
    document: Any,
    default: ElementSettings,
    overrides: dict[str, ElementSettings] | None = None,
    file: str | Path | None = None,
    rigidity_Tm: float | None = None,
) -> list[Element]:
    """Parse a PALS document into the flat element list with resolved model tiers;
    ``rigidity_Tm`` as in :func:`parse_pals`."""
    overrides = overrides or {}
    out = []
    made: dict[int, Element] = {}   # one Element per element definition (frozen, shared)
    for name, kind, params in parse_pals(document, file, rigidity_Tm):
        if id(params) in made:
            out.append(made[id(params)])
            continue
        settings = overrides.get(name, default)
        if settings.model not in MODEL_TIERS:
            raise ScenarioError(file, f"overrides.{name}.model",
                                f"one of {list(MODEL_TIERS)}", settings.model)
        family = "Marker" if kind == "Aperture" else kind
        out.append(Element(
            name=name, kind=kind, params=dict(params),
            tier=resolve_tier(family, settings.model), requested_tier=settings.model,
            nslice=settings.nslice, mapsteps=settings.mapsteps, int_order=settings.int_order,
        ))
        made[id(params)] = out[-1]
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
