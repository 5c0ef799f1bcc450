"""Cheetah ``Segment`` -> translated PALS elements; Bmad and elegant files through Cheetah.

Bmad and elegant files are parsed by Cheetah's own readers (``cheetah.converters.bmad`` /
``elegant``: the same parsing as ``Segment.from_bmad`` / ``from_elegant``), element by
element, so that every warning Cheetah raises is tied to the element it concerns: an element
Cheetah replaces by a drift (``UnknownElementWarning``) or one with a property Cheetah does
not understand (``NotUnderstoodPropertyWarning``, e.g. Bmad ``g``) is reported as
untranslatable instead of being imported changed.

The files are read as data (:func:`read_lines`): only regular, size-capped files, a
``call, file = ...`` only of a file in the lattice file's folder or below (no ``$VARIABLE``
expansion), at most ``MAX_CALL_DEPTH`` calls deep. Cheetah's parser evaluates expressions with
its own infix/RPN evaluators (no ``eval``), but with Python numbers, so it runs in a child
process under the time and memory limits (:func:`harness.io.sandbox.run_limited`); a line that
expands to more than ``MAX_IMPORTED_ELEMENTS`` elements is refused before it is expanded.

Cheetah element -> PALS (Cheetah's modules in ``cheetah/accelerator``):

======================  ==========================================================================
Cheetah                 PALS
======================  ==========================================================================
Drift                   ``Drift`` length
Quadrupole(k1)          ``Quadrupole`` ``Kn1 = k1`` [1/m^2] (no tilt, no misalignment)
Dipole / RBend          ``SBend`` ``g_ref = angle / length``, ``e1 = dipole_e1``,
                        ``e2 = dipole_e2``, ``Kn1 = k1`` (no tilt; gap * fringe_integral = 0)
Sextupole(k2)           ``Sextupole`` ``Kn2 = k2`` [1/m^3] (no tilt, no misalignment)
Solenoid(k)             ``Solenoid`` ``Ksol = 2 k`` (Cheetah's k = B0 / (2 B rho))
Horizontal-/Vertical-/  thin: ``Multipole`` ``Kn0L = -angle`` (px += angle), ``Ks0L = +angle``
CombinedCorrector       (py += angle); zero angle: ``Drift`` / ``Marker``
Marker                  ``Marker``
BPM, Screen             ``Instrument`` length
Aperture                ``Marker`` with ``ApertureP`` (finite symmetric limits, active)
Cavity                  zero voltage: ``Drift`` / ``Marker``; otherwise untranslatable (Cheetah's
                        cos(phi - k beta0 tau) gap is not the RF gap of the harness)
Segment                 flattened
======================  ==========================================================================
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

from harness.io.model import (
    MAX_IMPORTED_ELEMENTS,
    ImportRefused,
    ImportResult,
    Item,
    Translated,
    Untranslatable,
)
from harness.io.pals_doc import BeamSpec, beam_from_momentum
from harness.io.sandbox import DEFAULT_MEMORY_LIMIT_GIB, DEFAULT_TIME_LIMIT_S, run_limited
from harness.io.source_file import MAX_CALL_DEPTH, MAX_TOTAL_BYTES, inside, read_source
from harness.model.reference_particle import SPECIES

_ABS = 1e-15


def _scalar(element, attribute: str, default: float = 0.0) -> float | None:
    """A Cheetah parameter as a float; None when it is batched (several values)."""
    value = getattr(element, attribute, None)
    if value is None:
        return default
    try:
        if hasattr(value, "numel") and value.numel() != 1:
            return None
        return float(value)
    except (TypeError, ValueError):
        return None


def _refuse(element, reason: str) -> Untranslatable:
    length = _scalar(element, "length") or 0.0
    return Untranslatable(str(element.name), type(element).__name__, length, reason)


def _values(element, names: tuple[str, ...]) -> dict[str, float] | str:
    """The float values of ``names``, or the name of the first batched one."""
    out = {}
    for name in names:
        value = _scalar(element, name)
        if value is None:
            return name
        out[name] = value
    return out


def element_items(element, notes: list[str]) -> list[Item]:
    """The translated form(s) of one Cheetah element (a Segment is flattened)."""
    import cheetah

    if isinstance(element, cheetah.Segment):
        return [item for child in element.elements for item in element_items(child, notes)]
    kind = type(element).__name__
    name = str(element.name)
    values = _values(element, ("length",))
    if isinstance(values, str):
        return [_refuse(element, "a batched (vectorised) length")]
    length = values["length"]
    if length < 0:
        return [_refuse(element, f"a negative length ({length!r} m) is not a PALS length")]
    translate = _TRANSLATIONS.get(kind)
    if translate is None and isinstance(element, cheetah.Dipole):
        translate = _dipole
    if translate is None:
        return [_refuse(element, f"Cheetah {kind} has no trackbench translation")]
    return [translate(element, name, length, notes)]


def _nonzero(values: dict[str, float], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if abs(values.get(n, 0.0)) > _ABS), None)


def _misaligned(element) -> bool:
    offset = getattr(element, "misalignment", None)
    return offset is not None and bool((offset != 0).any())


def _drift(element: Any, name: str, length: float, notes: list[str]) -> Item:
    return Translated(name, {"kind": "Drift", "length": length})


def _marker(element: Any, name: str, length: float, notes: list[str]) -> Item:
    return Translated(name, {"kind": "Marker"})


def _instrument(element: Any, name: str, length: float, notes: list[str]) -> Item:
    return Translated(name, {"kind": "Instrument", "length": length})


def _normal_magnet(element: Any, name: str, length: float, kind: str, order: int) -> Item:
    """A straight normal magnet of ``order`` N (1 quadrupole, 2 sextupole): Cheetah's
    ``kN`` [1/m^(N+1)] as the PALS ``KnN``; tilted, misaligned or batched ones refused."""
    strength = f"k{order}"
    values = _values(element, (strength, "tilt"))
    if isinstance(values, str):
        return _refuse(element, f"a batched (vectorised) {values}")
    if _nonzero(values, ("tilt",)) or _misaligned(element):
        return _refuse(element, f"a tilted or misaligned {kind.lower()} is not translated")
    return Translated(name, {"kind": kind, "length": length,
                             "MagneticMultipoleP": {f"Kn{order}": values[strength]}})


def _quadrupole(element: Any, name: str, length: float, notes: list[str]) -> Item:
    return _normal_magnet(element, name, length, "Quadrupole", 1)


def _sextupole(element: Any, name: str, length: float, notes: list[str]) -> Item:
    return _normal_magnet(element, name, length, "Sextupole", 2)


def _dipole(element: Any, name: str, length: float, notes: list[str]) -> Item:
    values = _values(element, ("angle", "k1", "dipole_e1", "dipole_e2", "tilt", "gap",
                               "gap_exit", "fringe_integral", "fringe_integral_exit"))
    if isinstance(values, str):
        return _refuse(element, f"a batched (vectorised) {values}")
    if length <= 0:
        return _refuse(element, "a bend of zero length is not translated")
    if _nonzero(values, ("tilt",)):
        return _refuse(element, "a tilted bend is not translated")
    fringe = (values["gap"] * values["fringe_integral"],
              values["gap_exit"] * values["fringe_integral_exit"])
    if any(abs(f) > _ABS for f in fringe):
        return _refuse(element, "fringe field gap * fringe_integral != 0 needs the PALS "
                       "BendP.edge_int fields, not read by trackbench yet")
    fringe_at = getattr(element, "fringe_at", "both")
    if fringe_at != "both" and (values["dipole_e1"] or values["dipole_e2"]):
        return _refuse(element, f"pole faces with fringe_at={fringe_at!r} are not translated")
    fields: dict[str, Any] = {"kind": "SBend", "length": length,
                              "BendP": {"g_ref": values["angle"] / length,
                                        "e1": values["dipole_e1"], "e2": values["dipole_e2"]}}
    if values["k1"]:
        fields["MagneticMultipoleP"] = {"Kn1": values["k1"]}
    return Translated(name, fields)


def _solenoid(element: Any, name: str, length: float, notes: list[str]) -> Item:
    values = _values(element, ("k",))
    if isinstance(values, str):
        return _refuse(element, "a batched (vectorised) k")
    if _misaligned(element):
        return _refuse(element, "a misaligned solenoid is not translated")
    return Translated(name, {"kind": "Solenoid", "length": length,
                             "SolenoidP": {"Ksol": 2.0 * values["k"]}})


def _corrector(element: Any, name: str, length: float, notes: list[str]) -> Item:
    kind = type(element).__name__
    if kind == "CombinedCorrector":
        values = _values(element, ("horizontal_angle", "vertical_angle"))
        if isinstance(values, str):
            return _refuse(element, f"a batched (vectorised) {values}")
        hkick, vkick = values["horizontal_angle"], values["vertical_angle"]
    else:
        values = _values(element, ("angle",))
        if isinstance(values, str):
            return _refuse(element, "a batched (vectorised) angle")
        hkick = values["angle"] if kind == "HorizontalCorrector" else 0.0
        vkick = values["angle"] if kind == "VerticalCorrector" else 0.0
    if not hkick and not vkick:
        notes.append(f"{kind} {name}: zero kick, written as a "
                     + ("Drift" if length else "Marker"))
        return (Translated(name, {"kind": "Drift", "length": length}) if length
                else Translated(name, {"kind": "Marker"}))
    if length:
        return _refuse(element, "a thick corrector with a kick is not translated (PALS "
                       "Kicker kinds are not read by trackbench yet)")
    strengths = {}
    if hkick:
        strengths["Kn0L"] = -hkick
    if vkick:
        strengths["Ks0L"] = vkick
    return Translated(name, {"kind": "Multipole", "length": 0.0,
                             "MagneticMultipoleP": strengths})


def _cavity(element: Any, name: str, length: float, notes: list[str]) -> Item:
    voltage = _scalar(element, "voltage")
    if voltage is None:
        return _refuse(element, "a batched (vectorised) voltage")
    if voltage:
        return _refuse(element, "Cheetah's cavity (cos(phi - k beta0 tau), thick) is not the "
                       "short RF gap trackbench translates")
    notes.append(f"Cavity {name}: zero voltage, written as a "
                 + ("Drift" if length else "Marker"))
    return (Translated(name, {"kind": "Drift", "length": length}) if length
            else Translated(name, {"kind": "Marker"}))


def _aperture(element: Any, name: str, length: float, notes: list[str]) -> Item:
    values = _values(element, ("x_max", "y_max"))
    if isinstance(values, str):
        return _refuse(element, f"a batched (vectorised) {values}")
    if not getattr(element, "is_active", True) or all(math.isinf(v) for v in values.values()):
        notes.append(f"Aperture {name}: inactive or unbounded, written as a Marker")
        return Translated(name, {"kind": "Marker"})
    if any(math.isinf(v) for v in values.values()):
        return _refuse(element, "an aperture bounded in one plane only is not translated")
    shape = "ELLIPTICAL" if getattr(element, "shape", "rectangular") == "elliptical" \
        else "RECTANGULAR"
    return Translated(name, {"kind": "Marker", "ApertureP": {
        "x_limits": [-values["x_max"], values["x_max"]],
        "y_limits": [-values["y_max"], values["y_max"]], "shape": shape}})


_TRANSLATIONS = {
    "Drift": _drift, "Marker": _marker, "BPM": _instrument, "Screen": _instrument,
    "Quadrupole": _quadrupole, "Sextupole": _sextupole, "Dipole": _dipole, "RBend": _dipole,
    "Solenoid": _solenoid, "HorizontalCorrector": _corrector,
    "VerticalCorrector": _corrector, "CombinedCorrector": _corrector, "Cavity": _cavity,
    "Aperture": _aperture,
}


def import_segment(segment, source: str = "<Cheetah Segment>") -> ImportResult:
    """A Cheetah ``Segment`` (built in Python) as translated elements."""
    notes: list[str] = []
    return ImportResult(element_items(segment, notes), source, notes)


# --- Bmad and elegant files through Cheetah's readers -------------------------------------

_PROPERTY = re.compile(r"Property (\S+) with value (.*?) for element type (\S+)")


_CALL = re.compile(r"call\s*,\s*file\s*=\s*(.*)$", re.IGNORECASE)


def read_lines(path: Path, folder: Path | None = None, depth: int = 0,
               total: list[int] | None = None) -> list[str]:
    """The clean lines of a Bmad/elegant file as Cheetah's ``read_clean_lines`` makes them
    (stripped, ``!`` comments and empty lines dropped, ``call, file = X`` replaced by the lines
    of ``X``, lower case), read as data: every file a regular, size-capped file
    (:func:`harness.io.source_file.read_source`), called files only in the lattice file's
    folder or below (no ``$VARIABLE`` expansion), at most ``MAX_CALL_DEPTH`` calls deep."""
    folder = folder or path.resolve().parent
    total = total if total is not None else [0]
    text = read_source(path)
    total[0] += len(text)
    if total[0] > MAX_TOTAL_BYTES:
        raise ImportRefused(f"{path}: the lattice and the files it calls are larger than "
                            f"{MAX_TOTAL_BYTES} bytes in all")
    lines: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"!.*", "", raw.strip()).strip()
        call = _CALL.match(line)
        if call is None:
            if line:
                lines.append(line.lower())
            continue
        name = call.group(1).strip().strip("\"'")
        target = Path(name) if Path(name).is_absolute() else path.parent / name
        if depth + 1 > MAX_CALL_DEPTH:
            raise ImportRefused(f"{path}:{number}: call nested deeper than {MAX_CALL_DEPTH} "
                                "files is refused")
        if not inside(folder, target):
            raise ImportRefused(f"{path}:{number}: call of {name!r} is refused: outside the "
                                f"lattice file's folder {folder}")
        lines += read_lines(target, folder, depth + 1, total)
    return lines


def _parse(lines: list[str]) -> tuple[dict, list[str]]:
    """Cheetah's parse of clean lines (its ``convert_lattice`` steps, unchanged) and the
    messages of the warnings it raised."""
    from cheetah.converters.utils.fortran_namelist import (
        merge_delimiter_continued_lines,
        parse_lines,
    )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            merged = merge_delimiter_continued_lines(lines, delimiter="&",
                                                     remove_delimiter=True)
            merged = merge_delimiter_continued_lines(merged, delimiter=",",
                                                     remove_delimiter=False)
            merged = merge_delimiter_continued_lines(merged, delimiter="{",
                                                     remove_delimiter=False)
            context = parse_lines(merged)
        except Exception as error:  # noqa: BLE001 - the parser's own message names the cause
            raise ImportRefused(f"Cheetah could not parse the file ({type(error).__name__}: "
                                f"{error})") from None
    return context, [str(warning.message) for warning in caught]


def _context(path: Path, notes: list[str], time_limit_s: float = DEFAULT_TIME_LIMIT_S,
             memory_limit_gib: float = DEFAULT_MEMORY_LIMIT_GIB) -> dict:
    """Cheetah's parse of a Bmad/elegant file, in a child process under the time and memory
    limits (Cheetah's expression evaluator computes with Python numbers: ``a^b`` of large
    integers can run for hours)."""
    lines = read_lines(path)
    import cheetah.converters.utils.fortran_namelist  # noqa: F401 - loaded once, before fork

    try:
        context, messages = run_limited(_parse, (lines,), str(path), time_limit_s,
                                        memory_limit_gib)
    except ImportRefused as error:
        message = str(error)
        raise ImportRefused(message if message.startswith(str(path)) else
                            f"{path}: {message}") from None
    notes += [f"Cheetah parser: {message}" for message in messages]
    return context


def _count_leaves(name: str, context: dict, path: Path, memo: dict[str, int],
                  depth: int = 0) -> int:
    """How many elements line ``name`` expands to (refused above MAX_IMPORTED_ELEMENTS)."""
    name = name.removeprefix("-")
    if name in memo:
        return memo[name]
    if depth > 64:
        raise ImportRefused(f"{path}: line {name!r} refers to itself")
    parsed = context.get(name)
    count = sum(_count_leaves(str(child), context, path, memo, depth + 1)
                for child in parsed) if isinstance(parsed, list) else 1
    if count > MAX_IMPORTED_ELEMENTS:
        raise ImportRefused(f"{path}: line {name!r} expands to more than "
                            f"{MAX_IMPORTED_ELEMENTS} elements, more than an import takes")
    memo[name] = count
    return count


def _leaves(name: str, context: dict, path: Path, reversed_: bool = False,
            depth: int = 0) -> list[tuple[str, bool]]:
    """Element names of a line in beamline order, with whether they sit in a reversed line."""
    if depth > 64:
        raise ImportRefused(f"{path}: line {name!r} refers to itself")
    flip = name.startswith("-")
    name = name.removeprefix("-")
    if name not in context:
        raise ImportRefused(f"{path}: {name!r} is not defined in the file")
    parsed = context[name]
    if isinstance(parsed, list):
        out = [leaf for child in parsed
               for leaf in _leaves(child, context, path, reversed_ != flip, depth + 1)]
        return out[::-1] if flip else out
    if isinstance(parsed, dict) and "element_type" in parsed:
        return [(name, reversed_)]
    raise ImportRefused(f"{path}: {name!r} is neither a line nor an element")


def _convert_one(module, name: str, context: dict, fmt: str, in_reversed_line: bool,
                 notes: list[str]) -> list[Item]:
    import torch
    from cheetah.utils import NoBeamPropertiesInLatticeWarning, UnknownElementWarning

    parsed = context[name]
    source_kind = str(parsed.get("element_type", "?"))
    length = float(parsed.get("l", 0.0)) if isinstance(parsed.get("l", 0.0), int | float) \
        else 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            element = module.convert_element(name, context, sanitize_name=False,
                                             dtype=torch.float64)
        except Exception as error:  # noqa: BLE001 - Cheetah refuses the element
            return [Untranslatable(name, source_kind, length,
                                   f"Cheetah's {fmt} reader: {type(error).__name__}: {error}")]
    for warning in caught:
        message = str(warning.message)
        if issubclass(warning.category, UnknownElementWarning):
            return [Untranslatable(name, source_kind, length,
                                   f"Cheetah's {fmt} reader has no conversion for it")]
        if issubclass(warning.category, NoBeamPropertiesInLatticeWarning):
            notes.append(f"{source_kind} {name}: beam property element, written as a Marker "
                         "(the beam is the scenario's)")
            continue
        match = _PROPERTY.search(message)
        if match:
            return [Untranslatable(name, source_kind, length,
                                   f"property {match.group(1)} is not understood by Cheetah's "
                                   f"{fmt} reader")]
        notes.append(f"{source_kind} {name}: Cheetah: {message}")
    items = element_items(element, notes)
    if in_reversed_line:
        for item in items:
            if isinstance(item, Translated) and item.kind == "SBend" and \
                    item.fields["BendP"]["e1"] != item.fields["BendP"]["e2"]:
                return [Untranslatable(name, source_kind, length, "a bend with different "
                                       "pole faces in a reversed line")]
    return items


def _bmad_beam(context: dict, species: str | None, energy_MeV: float | None,
               path: Path) -> BeamSpec:
    parameter = context.get("parameter", {}) if isinstance(context.get("parameter"), dict) \
        else {}
    beginning = context.get("beginning", {}) if isinstance(context.get("beginning"), dict) \
        else {}
    if species is None:
        particle = str(parameter.get("particle", "")).lower()
        if particle not in SPECIES:
            raise ImportRefused(f"{path}: parameter[particle] = {particle or 'none'!r} is not a "
                                f"trackbench species; give --species "
                                f"({', '.join(sorted(SPECIES))})")
        species = particle
    if energy_MeV is not None:
        return BeamSpec(species, energy_MeV)
    mass = SPECIES[species][0]
    if "p0c" in beginning:
        return beam_from_momentum(species, float(beginning["p0c"]))
    if "e_tot" in beginning:
        total = float(beginning["e_tot"])
        if total <= mass:
            raise ImportRefused(f"{path}: beginning[e_tot] = {total!r} eV is not above the "
                                f"rest energy of {species}")
        return BeamSpec(species, (total - mass) * 1e-6)
    raise ImportRefused(f"{path}: no beginning[e_tot] or beginning[p0c]; give --energy")


def import_cheetah_file(path: str | Path, fmt: str, line: str | None = None,
                        species: str | None = None, energy_MeV: float | None = None,
                        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
                        memory_limit_gib: float = DEFAULT_MEMORY_LIMIT_GIB,
                        ) -> tuple[ImportResult, BeamSpec, str]:
    """Import a Bmad (``fmt="bmad"``) or elegant (``"elegant"``) file through Cheetah's
    readers; returns the translated beamline, its beam and the line name. The file is read
    as data (:func:`read_lines`) and parsed in a child process under the limits."""
    path = Path(path)
    notes: list[str] = []
    context = _context(path, notes, time_limit_s, memory_limit_gib)
    from cheetah.converters import bmad, elegant

    if line is None:
        line = context.get("__use__")
        if line is None:
            lines = [k for k, v in context.items() if isinstance(v, list)]
            if len(lines) != 1:
                raise ImportRefused(f"{path}: no 'use' line; choose one with --sequence "
                                    f"({', '.join(lines) or 'no lines defined'})")
            line = lines[0]
    module = bmad if fmt == "bmad" else elegant
    _count_leaves(str(line), context, path, {})
    items: list[Item] = []
    for leaf, in_reversed in _leaves(str(line), context, path):
        items.extend(_convert_one(module, leaf, context, fmt, in_reversed, notes))
    if fmt == "bmad":
        beam = _bmad_beam(context, species, energy_MeV, path)
    else:
        if species is None or energy_MeV is None:
            raise ImportRefused(f"{path}: an elegant lattice file has no beam; give --species "
                                "and --energy")
        beam = BeamSpec(species, energy_MeV)
    return ImportResult(items, str(path), notes), beam, str(line)
