"""MAD-X lattices through the real MAD-X (cpymad): sequence -> translated PALS elements.

Reading, not running
--------------------
A lattice file from a colleague or the internet is data. MAD-X, however, is a scripting
language: ``SYSTEM`` runs shell commands, ``ASSIGN`` and ``SAVE``/``WRITE`` write files,
``CALL`` and ``READTABLE`` read any file, ``WHILE`` and macros run forever. So MAD-X never
sees the file itself: :func:`harness.io.madx_scan.scan_madx` checks every statement first (the
file and every file it calls) and MAD-X gets the checked statements as text. The policy is an
allow-list:

* **run** -- what defines a lattice: assignments (``a = 1;``, ``a := b;``, ``qf->k1 = 2;``,
  with ``const``/``real``/``int``/``shared``), element definitions (``label: KIND, ...;`` with
  a MAD-X element type or an element defined before), ``LINE`` and ``SEQUENCE`` definitions,
  elements placed in a sequence, ``ENDSEQUENCE``, ``BEAM``/``RESBEAM``, ``USE``,
  ``SELECT``/``DESELECT``, ``SET``, sequence editing (``SEQEDIT`` ... ``ENDEDIT``: ``FLATTEN``,
  ``CYCLE``, ``REFLECT``, ``INSTALL``, ``REMOVE``, ``MOVE``, ``REPLACE``, ``EXTRACT``) and
  ``OPTION`` with flags that only change printing or MAD-X's physics conventions (``echo``,
  ``info``, ``warn``, ``rbarc``, ``thin_foc``, ...; ``echo`` is MAD-X's default, its output
  goes to the importer's pipe). ``CALL, FILE=...`` is replaced by the checked statements of
  the called file, which must be a regular file in the lattice file's folder or below
  (symlinks resolved), at most ``MAX_CALL_DEPTH`` calls deep; ``RETURN`` ends a file and
  ``STOP``/``EXIT``/``QUIT`` the input, as in MAD-X. ``!``, ``//`` and ``/* */`` comments are
  dropped.
* **left out**, named in a note -- analysis and printing commands that do not change the
  lattice (``TWISS``, ``SURVEY``, ``EMIT``, ``VALUE``, ``SHOW``, ``PRINT``, ``TITLE``,
  ``PLOT``, ...): ImpactX's own ``dogleg.madx`` ends with ``TWISS, FILE=optics``, which is
  not run, so nothing is written.
* **refused** before MAD-X starts, with one line naming the file, the line and the command:
  everything else -- ``SYSTEM`` (a shell command), ``ASSIGN`` (output into a file),
  ``EXEC``/``MACRO``/``USE_MACRO``/``IF``/``WHILE`` and ``{ }`` blocks (code),
  ``READTABLE``/``READMYTABLE``/``SDDSIN``/``SXFREAD`` (read files),
  ``SAVE``/``WRITE``/``SDDSOUT``/``SXFWRITE``/``ESAVE``/``COPYFILE``/``RENAMEFILE``/
  ``REMOVEFILE``/``CHDIR`` (write or move files), ``PTC_*``, ``MATCH``, ``TRACK``,
  ``MAKETHIN``, ``SIXTRACK`` (runs that write files or change the lattice by computation), a
  ``FILE=``/``ECHO=`` attribute on a statement that runs, ``TABLE(...)`` in an expression
  (it reads the result of an analysis command that is not run), a ``;`` inside a string,
  ``CALL`` of a file outside the lattice's folder, of a FIFO, a device or a directory, or of
  a file larger than the caps of :mod:`harness.io.source_file`, and any statement head that is
  not on the lists above.

MAD-X then runs in its own process (:func:`madx_session`): an empty temporary working folder,
an address-space limit (``--memory-limit``, 1 GiB by default: the MAD-X process starts at
about 0.5 GiB), no file writes (``RLIMIT_FSIZE`` 0), and a wall-clock limit (``--time-limit``,
5 s by default, counted from the start of MAD-X) after which it is killed; a limit hit is one
line. A sequence of more than :data:`~harness.io.model.MAX_IMPORTED_ELEMENTS` elements is
refused before its elements are read.

Translation
-----------
The checked statements are run by MAD-X; the chosen sequence (``--sequence``, else the one the file
``USE``s, else the only one) is read from cpymad's expanded element list with positions, so
implicit drifts between positioned elements are MAD-X's own (``drift_0``, ...); the
automatic ``<seq>$start``/``$end`` markers are left out.

Translations (MAD-X manual, "Element types"; PALS standard, element parameter groups).
MAD-X strengths are already normalised to the reference momentum, so they are copied:

===========================  ==================================================================
MAD-X                        PALS
===========================  ==================================================================
DRIFT (and implicit drifts)  ``Drift`` length
QUADRUPOLE L, K1             ``Quadrupole`` length, ``Kn1 = K1`` [1/m^2]
SEXTUPOLE L, K2              ``Sextupole`` length, ``Kn2 = K2`` [1/m^3]
SBEND L, ANGLE, E1, E2, K1   ``SBend`` length, ``g_ref = ANGLE / L`` [1/m], e1, e2, ``Kn1``
RBEND L, ANGLE, E1, E2, K1   ``SBend`` with the arc length ``L (ANGLE/2) / sin(ANGLE/2)`` and
                             ``e1 = E1 + ANGLE/2``, ``e2 = E2 + ANGLE/2`` (MAD-X RBARC option)
DIPEDGE H, E1 (FINT*HGAP=0)  merged into the adjacent bend's free pole face when its ``H``
                             equals the bend's ``ANGLE/L``, else a thin ``Multipole``
                             ``Kn1L = -H tan(E1)``: both exact for the linear edge map
                             (MAD-X R21 = H tan E1, R43 = -H tan E1), listed in the notes
MULTIPOLE KNL, KSL           thin ``Multipole``: ``KnNL = KNL[N]``, ``KsNL = KSL[N]``
HKICKER/VKICKER/KICKER       ``Kicker`` length, ``Kn0L = -HKICK``, ``Ks0L = +VKICK`` (MAD-X:
(TKICKER) L, HKICK, VKICK,   HKICK adds to px, KNL[0] subtracts from it; KSL[0] adds to py);
KICK, CHKICK, CVKICK         an HKICKER's (VKICKER's) kick is KICK, else HKICK (VKICK) when
                             KICK is zero (``src/mad_elem.c`` ``el_par_value``), plus the
                             corrector setting CHKICK (CVKICK) (``twiss.f90`` ``tmcorr``); a
                             thick one is MAD-X's half kick, drift, half kick, which
                             ``Kicker``'s kick between drift halves equals to first order
SOLENOID L, KS               ``Solenoid`` length, ``Ksol = KS`` [1/m]
RFCAVITY L=0, VOLT, FREQ,    ``RFCavity`` voltage ``VOLT*1e6`` [V] (times p_ref/p_ref(MAD-X),
                             1 + O(1e-9), keeping MAD-X's kick VOLT/(p c)), ``FREQ*1e6`` [Hz]
LAG                          (or ``HARMON * beta c / circumference``), ``phase = 2 pi LAG - pi/2``
                             (MAD-X PT += V sin(2 pi LAG - k T); ImpactX pt -= V cos(k t + phase)
                             with t = -T, pt = -PT); only at zero crossing (sin(2 pi LAG) = 0),
                             where neither code changes the reference energy
MARKER                       ``Marker``
MONITOR, H/VMONITOR,         ``Instrument`` length
INSTRUMENT, PLACEHOLDER
===========================  ==================================================================

The beam is the file's ``BEAM`` (PARTICLE and its Lorentz factor GAMMA, so that
beta and R56 are MAD-X's exactly; see :func:`harness.io.pals_doc.beam_from_gamma`), unless
``--species``/``--energy`` are given; its emittances and spreads are the ones the BEAM
states (EX/EXN, EY/EYN, SIGT, SIGE, ET; see :func:`_beam_spreads`) and its Twiss parameters
MAD-X's periodic solution when the beamline has one; every value the file does not state is
a placeholder, named in the notes.

``--sequence`` takes a SEQUENCE or a LINE (MAD-X's ``USE`` expands either); a file without a
``USE`` and with more than one of them is refused with their names, the LINEs no other LINE
contains first.

Anything else, or a translated kind with a nonzero attribute trackbench does not model
(TILT, K1S, K0 different from ANGLE/L, FINT*HGAP, H1/H2, misalignments DX..DPSI, SINKICK,
...), is an :class:`~harness.io.model.Untranslatable` naming the
attribute. Apertures on MAD-X elements are reported in the notes (TWISS ignores them too).
"""

from __future__ import annotations

import collections
import contextlib
import math
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.io.madx_scan import ScannedMadx, scan_madx
from harness.io.model import (
    MAX_IMPORTED_ELEMENTS,
    ImportRefused,
    ImportResult,
    Item,
    Translated,
    Untranslatable,
)
from harness.io.pals_doc import BeamSpec, beam_from_gamma
from harness.io.sandbox import (
    DEFAULT_MEMORY_LIMIT_GIB,
    DEFAULT_TIME_LIMIT_S,
    Watchdog,
    child_limits,
)
from harness.model.reference_particle import C_LIGHT, SPECIES

#: MAD-X particle names the harness has a species for.
MADX_SPECIES = {"electron": "electron", "positron": "positron", "proton": "proton"}
#: Misalignment attributes of MAD-X elements (none is translated yet).
MISALIGNMENTS = ("dx", "dy", "ds", "dtheta", "dphi", "dpsi")
_ABS = 1e-15
#: MAD-X output kept for messages [characters].
OUTPUT_KEPT = 1 << 20


class _Output:
    """MAD-X's last output (at most :data:`OUTPUT_KEPT` characters), to name the fatal error
    when MAD-X stops."""

    def __init__(self) -> None:
        self.text: collections.deque[str] = collections.deque()
        self.size = 0

    def __call__(self, chunk: bytes | str) -> None:
        text = chunk.decode(errors="replace") if isinstance(chunk, bytes) else chunk
        self.text.append(text)
        self.size += len(text)
        while self.size > OUTPUT_KEPT and len(self.text) > 1:
            self.size -= len(self.text.popleft())

    def last_error(self) -> str:
        lines = [ln.strip() for ln in "".join(self.text).splitlines()
                 if "fatal" in ln.lower() or "error" in ln.lower()]
        return lines[-1] if lines else "MAD-X stopped"


def _value(element, key: str, default: float = 0.0) -> float:
    try:
        value = element[key]
    except (KeyError, AttributeError):
        return default
    return float(value)


def _nonzero(element, keys: tuple[str, ...]) -> str | None:
    """The first of ``keys`` with a nonzero value on ``element``."""
    for key in keys:
        if abs(_value(element, key)) > _ABS:
            return key
    return None


def _refuse(name: str, kind: str, length: float, reason: str) -> Untranslatable:
    return Untranslatable(name, kind.upper(), length, reason)


def _normal_magnet(e: Any, name: str, length: float, kind: str, order: int) -> Item:
    """A straight normal magnet of ``order`` N (1 QUADRUPOLE, 2 SEXTUPOLE): MAD-X's ``kN``
    [1/m^(N+1)] as the PALS ``KnN``; its skew ``kNs`` or a ``tilt`` refused by name."""
    bad = _nonzero(e, (f"k{order}s", "tilt"))
    if bad:
        return _refuse(name, kind, length, f"{bad.upper()} (skew/tilted {kind.lower()}) is "
                       "not translated")
    return Translated(name, {"kind": kind, "length": length,
                             "MagneticMultipoleP": {f"Kn{order}": _value(e, f"k{order}")}})


class MadxTranslator:
    """Translates the expanded elements of one MAD-X sequence (see the module table)."""

    def __init__(self, circumference: float, beta: float, voltage_scale: float = 1.0):
        self.circumference = circumference
        self.beta = beta
        #: p_ref(trackbench) / p_ref(MAD-X): keeps MAD-X's normalised gap kick VOLT / (p c)
        self.voltage_scale = voltage_scale
        self.notes: list[str] = []

    def translate(self, element, length: float) -> Item:
        """One element (``length`` [m]: the length it occupies in the sequence)."""
        name, kind = element.name, element.base_type.name
        bad = _nonzero(element, MISALIGNMENTS)
        if bad:
            return _refuse(name, kind, length, f"misalignment {bad.upper()} is not translated "
                           "(PALS BodyShiftP is not read by trackbench yet)")
        method = getattr(self, f"_{kind}", None)
        if method is None:
            return _refuse(name, kind, length, f"MAD-X {kind.upper()} has no trackbench "
                           "translation")
        return method(element, name, length)

    def _drift(self, e: Any, name: str, length: float) -> Item:
        return Translated(name, {"kind": "Drift", "length": length})

    def _marker(self, e: Any, name: str, length: float) -> Item:
        return Translated(name, {"kind": "Marker"})

    def _instrument(self, e: Any, name: str, length: float) -> Item:
        return Translated(name, {"kind": "Instrument", "length": length})

    _monitor = _hmonitor = _vmonitor = _placeholder = _instrument

    def _quadrupole(self, e: Any, name: str, length: float) -> Item:
        return _normal_magnet(e, name, length, "Quadrupole", 1)

    def _sextupole(self, e: Any, name: str, length: float) -> Item:
        return _normal_magnet(e, name, length, "Sextupole", 2)

    def _bend(self, e: Any, name: str, kind: str, arc: float, angle: float, e1: float,
              e2: float) -> Item:
        if arc <= 0:
            return _refuse(name, kind, arc, "a bend of zero length (thin bends are not "
                           "translated)")
        bad = _nonzero(e, ("k1s", "k2", "k2s", "tilt", "h1", "h2"))
        if bad:
            return _refuse(name, kind, arc, f"{bad.upper()} is not translated for bends")
        k0 = _value(e, "k0")
        g_ref = angle / arc
        if abs(k0) > _ABS and abs(k0 - g_ref) > 1e-12 * abs(g_ref):
            return _refuse(name, kind, arc, "K0 different from ANGLE/L (a bend field off the "
                           "reference curvature) is not translated")
        if self._fringe(e):
            return _refuse(name, kind, arc, "fringe field FINT*HGAP != 0 needs the PALS "
                           "BendP.edge_int fields, not read by trackbench yet")
        fields: dict[str, Any] = {"kind": "SBend", "length": arc,
                                  "BendP": {"g_ref": g_ref, "e1": e1, "e2": e2}}
        k1 = _value(e, "k1")
        if k1:
            fields["MagneticMultipoleP"] = {"Kn1": k1}
        return Translated(name, fields)

    @staticmethod
    def _fringe(e: Any) -> bool:
        hgap, fint = _value(e, "hgap"), _value(e, "fint")
        fintx = _value(e, "fintx", -1.0)
        fintx = fint if fintx < 0 else fintx
        return abs(hgap) > _ABS and (abs(fint) > _ABS or abs(fintx) > _ABS)

    def _sbend(self, e: Any, name: str, length: float) -> Item:
        return self._bend(e, name, "sbend", length, _value(e, "angle"), _value(e, "e1"),
                          _value(e, "e2"))

    def _rbend(self, e: Any, name: str, length: float) -> Item:
        angle = _value(e, "angle")
        half = angle / 2.0
        chord = _value(e, "l")
        arc = chord * half / math.sin(half) if half else chord
        if abs(arc - length) > 1e-9 * max(arc, 1.0):
            return _refuse(name, "rbend", length, "RBEND length in the sequence is not its "
                           "arc length (option RBARC=false is not translated)")
        return self._bend(e, name, "rbend", length, angle, _value(e, "e1") + half,
                          _value(e, "e2") + half)

    def _multipole(self, e: Any, name: str, length: float) -> Item:
        bad = _nonzero(e, ("tilt", "angle"))
        if bad:
            return _refuse(name, "multipole", length, f"{bad.upper()} is not translated for "
                           "multipoles")
        strengths: dict[str, float] = {}
        for prefix, key in (("Kn", "knl"), ("Ks", "ksl")):
            for order, value in enumerate(e.get(key, [])):
                if float(value):
                    strengths[f"{prefix}{order}L"] = float(value)
        if not strengths:
            self.notes.append(f"MULTIPOLE {name}: all strengths zero, written as a Marker")
            return Translated(name, {"kind": "Marker"})
        return Translated(name, {"kind": "Multipole", "length": 0.0,
                                 "MagneticMultipoleP": strengths})

    def _kick(self, e: Any, name: str, kind: str, length: float, hkick: float,
              vkick: float) -> Item:
        """MAD-X's corrector map (``twiss.f90`` ``tmcorr``: half kick, drift L, half kick;
        px += HKICK, py += VKICK) as a PALS ``Kicker`` (``Kn0L = -HKICK``, ``Ks0L = VKICK``:
        the kick between two drift halves; the same map to first order, the exact drifts
        differ at second order in the kick)."""
        bad = _nonzero(e, ("tilt", "sinkick"))
        if bad:
            return _refuse(name, kind, length, f"{bad.upper()} is not translated for kickers")
        if not hkick and not vkick:
            self.notes.append(f"{kind.upper()} {name}: zero kick, written as a "
                              + ("Drift" if length else "Marker"))
            return (Translated(name, {"kind": "Drift", "length": length}) if length
                    else Translated(name, {"kind": "Marker"}))
        return Translated(name, {"kind": "Kicker", "length": length,
                                 "MagneticMultipoleP": {"Kn0L": 0.0 - hkick,
                                                        "Ks0L": 0.0 + vkick}})

    @staticmethod
    def _alias(e: Any, key: str, alias: str) -> float:
        """An HKICKER's (VKICKER's) kick: ``KICK``, or ``HKICK`` (``VKICK``) when ``KICK`` is
        zero (MAD-X ``src/mad_elem.c`` ``el_par_value``: "extra code for kickers")."""
        return _value(e, key) or _value(e, alias)

    def _hkicker(self, e: Any, name: str, length: float) -> Item:
        return self._kick(e, name, "hkicker", length,
                          self._alias(e, "kick", "hkick") + _value(e, "chkick"), 0.0)

    def _vkicker(self, e: Any, name: str, length: float) -> Item:
        return self._kick(e, name, "vkicker", length, 0.0,
                          self._alias(e, "kick", "vkick") + _value(e, "cvkick"))

    def _kicker(self, e: Any, name: str, length: float) -> Item:
        return self._kick(e, name, e.base_type.name, length,
                          _value(e, "hkick") + _value(e, "chkick"),
                          _value(e, "vkick") + _value(e, "cvkick"))

    _tkicker = _kicker

    def _solenoid(self, e: Any, name: str, length: float) -> Item:
        if not length:
            if _nonzero(e, ("ksi",)):
                return _refuse(name, "solenoid", 0.0, "a thin solenoid (KSI) is not translated")
            return Translated(name, {"kind": "Marker"})
        return Translated(name, {"kind": "Solenoid", "length": length,
                                 "SolenoidP": {"Ksol": _value(e, "ks")}})

    def _rfcavity(self, e: Any, name: str, length: float) -> Item:
        volt, lag = _value(e, "volt"), _value(e, "lag")
        if length:
            return _refuse(name, "rfcavity", length, "a thick RF cavity (L > 0) is not "
                           "translated (only short RF gaps)")
        freq = _value(e, "freq") * 1e6
        harmon = _value(e, "harmon")
        if not freq and harmon and self.circumference > 0:
            freq = harmon * self.beta * C_LIGHT / self.circumference
        if not volt:
            if freq > 0:
                return Translated(name, {"kind": "RFCavity", "length": 0.0,
                                         "RFP": {"voltage": 0.0, "frequency": freq,
                                                 "phase": 2 * math.pi * lag - math.pi / 2}})
            self.notes.append(f"RFCAVITY {name}: no voltage and no frequency, written as a "
                              "Marker")
            return Translated(name, {"kind": "Marker"})
        if abs(math.sin(2 * math.pi * lag)) > 1e-12:
            return _refuse(name, "rfcavity", 0.0, "an accelerating phase (sin(2 pi LAG) != 0): "
                           "MAD-X keeps the reference energy, trackbench's RF gap changes it")
        if freq <= 0:
            return _refuse(name, "rfcavity", 0.0, "no FREQ and no HARMON")
        return Translated(name, {"kind": "RFCavity", "length": 0.0,
                                 "RFP": {"voltage": volt * 1e6 * self.voltage_scale,
                                         "frequency": freq,
                                         "phase": 2 * math.pi * lag - math.pi / 2}})

    def _dipedge(self, e: Any, name: str, length: float) -> Item:
        """The linear edge kick as a thin quadrupole (merged into a bend by merge_dipedges
        when that is possible)."""
        if self._fringe(e) or _nonzero(e, ("tilt",)):
            return _refuse(name, "dipedge", 0.0, "FINT*HGAP != 0 or TILT on a DIPEDGE is not "
                           "translated")
        kn1l = -_value(e, "h") * math.tan(_value(e, "e1"))
        return Translated(name, {"kind": "Multipole", "length": 0.0,
                                 "MagneticMultipoleP": {"Kn1L": kn1l}})


def merge_dipedges(items: list[Item], elements: list, notes: list[str]) -> list[Item]:
    """Fold each ``DIPEDGE`` into the free pole face of the bend right before (exit) or after
    (entry) it when its ``H`` equals the bend's ``g_ref`` and it has no fringe term."""
    out: list[Item | None] = list(items)
    for index, element in enumerate(elements):
        edge = out[index]
        if element.base_type.name != "dipedge" or not isinstance(edge, Translated):
            continue
        h, angle = _value(element, "h"), _value(element, "e1")
        for neighbour, face in ((index - 1, "e2"), (index + 1, "e1")):
            if not 0 <= neighbour < len(out):
                continue
            bend = out[neighbour]
            if not (isinstance(bend, Translated) and bend.kind == "SBend"):
                continue
            bend_p = bend.fields["BendP"]
            if abs(bend_p["g_ref"] - h) > 1e-12 * max(abs(h), 1e-300) or bend_p[face]:
                continue
            fields = {**bend.fields, "BendP": {**bend_p, face: angle}}
            out[neighbour] = Translated(bend.name, fields)
            out[index] = None
            notes.append(f"DIPEDGE {element.name} merged into {bend.name} as its "
                         f"{'exit' if face == 'e2' else 'entry'} pole face {face} = {angle!r}")
            break
        else:
            notes.append(f"DIPEDGE {element.name}: thin Multipole Kn1L = -H tan(E1) = "
                         f"{edge.fields['MagneticMultipoleP']['Kn1L']!r} (exact for "
                         "the linear map)")
    return [item for item in out if item is not None]


#: Most LINE names a "choose one with --sequence" message lists.
MAX_LINES_LISTED = 12


def _line_names(lines: dict[str, list[str]]) -> str:
    """The LINEs of a file for a message: those no other LINE contains first (the beamlines a
    user means), then the others, at most :data:`MAX_LINES_LISTED` names."""
    inside = {name for members in lines.values() for name in members}
    ordered = [n for n in lines if n not in inside] + [n for n in lines if n in inside]
    shown = ", ".join(ordered[:MAX_LINES_LISTED])
    more = len(ordered) - MAX_LINES_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _choose_sequence(madx, requested: str | None, file: Path,
                     lines: dict[str, list[str]] | None = None):
    """The sequence to import: ``requested`` (a SEQUENCE or a LINE: MAD-X's ``USE`` expands
    either), else the one the file ``USE``s, else the only SEQUENCE or LINE."""
    names = list(madx.sequence)
    lines = lines or {}
    if requested:
        madx.use(sequence=requested)  # expands it and attaches the beam
        return madx.sequence[requested.lower()]
    active = madx.sequence()
    if active is not None:
        return active
    candidates = names + [n for n in lines if n not in names]
    if len(candidates) == 1:
        madx.use(sequence=candidates[0])
        return madx.sequence[candidates[0]]
    offered = [f"SEQUENCEs: {', '.join(names)}"] if names else []
    offered += [f"LINEs: {_line_names(lines)}"] if lines else []
    raise ImportRefused(f"{file}: no USEd sequence; choose one with --sequence "
                        f"({'; '.join(offered) or 'none defined'})")


def _madx_beam(sequence, species: str | None, energy_MeV: float | None, file: Path,
               has_beam: bool) -> BeamSpec:
    beam = sequence.beam
    if species is None:
        particle = str(beam["particle"]).lower()
        if not has_beam:
            raise ImportRefused(f"{file}: no BEAM command; give --species and --energy")
        if particle not in MADX_SPECIES:
            raise ImportRefused(f"{file}: BEAM PARTICLE={particle!r} is not a trackbench "
                                f"species; give --species ({', '.join(sorted(SPECIES))})")
        species = MADX_SPECIES[particle]
    if energy_MeV is not None:
        return BeamSpec(species, energy_MeV)
    if not has_beam:
        raise ImportRefused(f"{file}: no BEAM command; give --energy (kinetic, MeV)")
    return beam_from_gamma(species, float(beam["gamma"]))


def _beam_spreads(sequence, stated: set[str], beam: BeamSpec) -> list[str]:
    """Put the emittances and spreads the file's BEAM states into ``beam``; one note per value
    (taken, or a placeholder because the file states nothing for it).

    MAD-X manual, ``BEAM`` (``doc/latexuguide/beams.tex``): EX, EY are the geometric rms
    emittances [m rad] (EXN, EYN the normalised ones, EX = EXN / (beta gamma); MAD-X's BEAM
    holds both), SIGT is the bunch length c sigma_t [m] (trackbench's ``sigma_t``, ImpactX's
    t = c dt), SIGE the energy spread: MAD-X's EMIT writes it as the rms of PT = dE / (p0 c)
    (``src/emit.f90``: sige = sqrt(sigma(6,6))), which ImpactX's pt = -PT shares (the manual's
    sigma_E / E is the same number for beta -> 1). ET = SIGT * SIGE (``src/mad_beam.c``)
    gives the one of SIGT, SIGE the file leaves out."""
    values = sequence.beam
    notes: list[str] = []
    for plane in ("x", "y"):
        names = (f"e{plane}", f"e{plane}n")
        key = f"emittance_{plane}"
        if stated & set(names):
            beam.twiss[key] = float(values[f"e{plane}"])
            notes.append(f"beam: {key} = {beam.twiss[key]!r} m rad from BEAM "
                         f"{'/'.join(n.upper() for n in names if n in stated)}")
        else:
            notes.append(f"beam: {key} = {beam.twiss[key]!r} m rad is a placeholder (the "
                         f"BEAM states no {names[0].upper()} or {names[1].upper()})")
    sigt, sige, et = (float(values[k]) for k in ("sigt", "sige", "et"))
    has = {k: k in stated for k in ("sigt", "sige", "et")}
    if has["et"] and has["sigt"] != has["sige"]:
        sigt, sige = (sigt, et / sigt) if has["sigt"] else (et / sige, sige)
        has["sigt"] = has["sige"] = True
        notes.append("beam: the BEAM's ET = SIGT * SIGE gives the spread it leaves out")
    for key, name, value, unit in (("sigma_t", "SIGT", sigt, " m"),
                                   ("sigma_pt", "SIGE", sige, "")):
        if has[name.lower()]:
            beam.longitudinal[key] = value
            notes.append(f"beam: {key} = {value!r}{unit} from BEAM {name}")
        else:
            notes.append(f"beam: {key} = {beam.longitudinal[key]!r}{unit} is a placeholder "
                         f"(the BEAM states no {name})")
    return notes


def _periodic_twiss(madx, sequence) -> dict[str, float] | None:
    """The periodic Twiss at the start, when the beamline has a stable one."""
    try:
        table = madx.twiss(sequence=sequence.name)
        bx, by = float(table.betx[0]), float(table.bety[0])
    except Exception:  # noqa: BLE001 - no periodic solution: the default beam is used
        return None
    if not all(1e-3 < b < 1e5 for b in (bx, by)):  # also rejects NaN
        return None
    return {"beta_x": bx, "alpha_x": float(table.alfx[0]), "beta_y": by,
            "alpha_y": float(table.alfy[0])}


def _default_beam(madx, species: str, energy_MeV: float) -> None:
    """A BEAM of ``species`` at ``energy_MeV`` [MeV kinetic] (for a file without one)."""
    from harness.model.reference_particle import ReferenceParticle

    mass = SPECIES[species][0] * 1e-9
    energy = ReferenceParticle(species, energy_MeV).total_energy_eV * 1e-9
    madx.command.beam(particle=species, mass=mass, charge=SPECIES[species][1], energy=energy)


@contextlib.contextmanager
def madx_session(file: Path, scanned: ScannedMadx, species: str | None = None,
                 energy_MeV: float | None = None,
                 time_limit_s: float = DEFAULT_TIME_LIMIT_S,
                 memory_limit_gib: float = DEFAULT_MEMORY_LIMIT_GIB) -> Iterator[Any]:
    """A MAD-X process that has run the checked statements of ``file`` (a default BEAM first
    when the file has none and --species/--energy are given, so that USE works).

    MAD-X runs in its own process under :func:`harness.io.sandbox.child_limits` (address space
    ``memory_limit_gib`` GiB, no file writes) in an empty temporary folder, and is killed
    ``time_limit_s`` s after it is started; every failure inside the block, a limit hit
    included, becomes one :class:`ImportRefused` line."""
    from cpymad.madx import Madx

    output = _Output()
    with tempfile.TemporaryDirectory(prefix="trackbench-madx-") as folder:
        started = time.monotonic()
        try:
            madx = Madx(stdout=output, stderr=subprocess.STDOUT, cwd=folder,
                        preexec_fn=child_limits(memory_limit_gib, time_limit_s))
        except Exception as error:  # noqa: BLE001 - MAD-X did not start
            raise ImportRefused(f"{file}: MAD-X did not start under the memory limit of "
                                f"{memory_limit_gib:g} GiB ({type(error).__name__})") from None
        watchdog = Watchdog(madx._process.pid, time_limit_s - (time.monotonic() - started))
        try:
            if species is not None and energy_MeV is not None and not scanned.has_beam:
                _default_beam(madx, species, energy_MeV)
            madx.input(scanned.text)
            yield madx, output
        except ImportRefused:
            raise
        except Exception:  # noqa: BLE001 - MAD-X stopped: say why in one line
            raise _stopped(file, madx, output, watchdog, time_limit_s,
                           memory_limit_gib) from None
        finally:
            watchdog.stop()
            with contextlib.suppress(Exception):
                madx.quit()
            with contextlib.suppress(Exception):
                madx._process.kill()
                madx._process.wait(timeout=5)


def _stopped(file: Path, madx, output: _Output, watchdog: Watchdog, time_limit_s: float,
             memory_limit_gib: float) -> ImportRefused:
    """Why MAD-X stopped: the time limit, its process ending (memory limit or crash) or
    MAD-X's own error."""
    if watchdog.fired:
        return ImportRefused(f"{file}: MAD-X ran past the time limit of {time_limit_s:g} s "
                             "(--time-limit); stopped")
    code = madx._process.poll()
    if code is not None and code < 0:
        return ImportRefused(f"{file}: MAD-X stopped (signal {-code}): past its memory limit "
                             f"of {memory_limit_gib:g} GiB (--memory-limit) or crashed; "
                             f"last message: {output.last_error()}")
    return ImportRefused(f"{file}: MAD-X: {output.last_error()}")


def scan(file: Path, species: str | None, energy_MeV: float | None) -> ScannedMadx:
    """The checked statements of ``file`` (refused before MAD-X starts when the file has no
    BEAM and --species/--energy are not both given)."""
    scanned = scan_madx(file)
    if not scanned.has_beam and (species is None or energy_MeV is None):
        raise ImportRefused(f"{file}: no BEAM command; give --species and --energy")
    return scanned


def import_madx(file: str | Path, sequence: str | None = None, species: str | None = None,
                energy_MeV: float | None = None, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
                memory_limit_gib: float = DEFAULT_MEMORY_LIMIT_GIB,
                ) -> tuple[ImportResult, BeamSpec, str]:
    """Import a MAD-X file: the translated beamline, its beam and the sequence name (the file
    is checked first and MAD-X runs under the limits, see the module docstring)."""
    file = Path(file)
    scanned = scan(file, species, energy_MeV)
    with madx_session(file, scanned, species, energy_MeV, time_limit_s,
                      memory_limit_gib) as (madx, output):
        try:
            chosen = _choose_sequence(madx, sequence, file, scanned.lines)
        except ImportRefused:
            raise
        except Exception:  # noqa: BLE001
            raise ImportRefused(f"{file}: MAD-X: {output.last_error()} (--sequence "
                                f"{sequence!r})") from None
        count = len(chosen.expanded_elements)
        if count > MAX_IMPORTED_ELEMENTS:
            raise ImportRefused(f"{file}: sequence {chosen.name} has {count} elements, more "
                                f"than the {MAX_IMPORTED_ELEMENTS} an import takes")
        beam = _madx_beam(chosen, species, energy_MeV, file, scanned.has_beam)
        beam_notes = _beam_spreads(chosen, scanned.stated_beam(chosen.name), beam)
        twiss = _periodic_twiss(madx, chosen)
        if twiss:
            beam.twiss.update(twiss)
        else:
            beam_notes.append("beam: beta_x, alpha_x, beta_y, alpha_y are placeholders (the "
                              "beamline has no periodic Twiss solution)")
        result = _translate(chosen, beam, energy_MeV, file)
        result.notes[:0] = scanned.notes + beam_notes
        return result, beam, chosen.name


def _translate(chosen, beam: BeamSpec, energy_MeV: float | None, file: Path) -> ImportResult:
    """The translated elements of the expanded sequence ``chosen`` (see the module table)."""
    from harness.io.pals_doc import reference_of

    scale = 1.0 if energy_MeV is not None else \
        reference_of(beam).p0c_eV / (float(chosen.beam["pc"]) * 1e9)
    translator = MadxTranslator(float(chosen.length), float(chosen.beam["beta"]), scale)
    elements = list(chosen.expanded_elements)
    positions = [float(p) for p in chosen.expanded_element_positions()]
    items: list[Item] = []
    kept = []
    for index, element in enumerate(elements):
        if element.name.endswith(("$start", "$end")):
            continue
        length = float(element.length) if element.base_type.name != "rbend" else (
            positions[index + 1] - positions[index] if index + 1 < len(elements) else 0.0)
        items.append(translator.translate(element, length))
        kept.append(element)
        if str(element.get("apertype", "circle")) != "circle" or \
                any(float(a) for a in element.get("aperture", [])):
            translator.notes.append(f"{element.base_type.name.upper()} {element.name}: "
                                    "aperture not translated (MAD-X TWISS ignores it too)")
    items = merge_dipedges(items, kept, translator.notes)
    total = math.fsum(i.fields.get("length", 0.0) or 0.0 if isinstance(i, Translated)
                      else i.length for i in items)
    if abs(total - float(chosen.length)) > 1e-9 * max(1.0, float(chosen.length)):
        translator.notes.append(f"beamline length {total!r} m differs from MAD-X's "
                                f"sequence length {float(chosen.length)!r} m")
    return ImportResult(items, str(file), translator.notes)
