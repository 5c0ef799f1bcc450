"""What an importer produces: translated PALS elements and the elements it could not translate.

A translated element is a PALS element mapping (``kind`` plus PALS fields, SI units, the
fields :mod:`harness.model.lattice` validates). An element the importer cannot translate is kept
as an :class:`Untranslatable` with its source kind and the reason; the user's
``--on-unsupported`` policy (:data:`POLICIES`) decides what happens to it:

* ``error`` (default): the import stops with one line naming every untranslated kind, its
  count and the reason;
* ``marker``: a ``Marker`` in its place (an ``Instrument`` of the same length when it is
  thick, so the beamline keeps its length);
* ``drift``: a ``Drift`` of its length.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

POLICIES: tuple[str, ...] = ("error", "marker", "drift")
#: Most elements an imported beamline may have (after expanding lines and repetitions).
MAX_IMPORTED_ELEMENTS = 100_000


@dataclass(frozen=True)
class Translated:
    """One element of the beamline in PALS form.

    Attributes:
        name: element name (PALS key).
        fields: PALS fields including ``kind`` (e.g. ``{"kind": "Quadrupole", "length": 1.0,
            "MagneticMultipoleP": {"Kn1": 0.5}}``).
    """

    name: str
    fields: dict[str, Any]

    @property
    def kind(self) -> str:
        """PALS kind."""
        return str(self.fields["kind"])

    @property
    def length(self) -> float:
        """Length [m]."""
        return float(self.fields.get("length", 0.0) or 0.0)


@dataclass(frozen=True)
class Untranslatable:
    """An element the importer cannot translate exactly.

    Attributes:
        name: element name.
        source_kind: its kind in the source format (``HKICKER``, ``wiggler``, ...).
        length: its length [m] (kept by the ``marker`` and ``drift`` policies).
        reason: why it is not translated (what is missing on the trackbench side).
    """

    name: str
    source_kind: str
    length: float
    reason: str


Item = Translated | Untranslatable


class ImportRefused(ValueError):
    """The import cannot go on (untranslated elements under ``error``, a bad source file)."""


@dataclass
class ImportResult:
    """An imported beamline and what was done to it.

    Attributes:
        items: the beamline in order (translated or not).
        source: the file (or object) it came from, for messages.
        notes: exact rewrites the importer made (e.g. a MAD-X ``DIPEDGE`` merged into the
            adjacent bend's pole face), one line each.
        replaced: untranslatable elements replaced under the ``marker``/``drift`` policy.
    """

    items: list[Item]
    source: str
    notes: list[str] = field(default_factory=list)
    replaced: list[Untranslatable] = field(default_factory=list)

    @property
    def untranslatable(self) -> list[Untranslatable]:
        """The elements not translated (before a policy is applied)."""
        return [i for i in self.items if isinstance(i, Untranslatable)]


def summarise(untranslatable: list[Untranslatable]) -> str:
    """``KIND xCOUNT (reason; e.g. NAME)`` for every distinct kind and reason, joined by '; '."""
    groups: Counter[tuple[str, str]] = Counter((u.source_kind, u.reason) for u in untranslatable)
    first: dict[tuple[str, str], str] = {}
    for u in untranslatable:
        first.setdefault((u.source_kind, u.reason), u.name)
    return "; ".join(f"{kind} x{count} ({reason}; e.g. {first[(kind, reason)]})"
                     for (kind, reason), count in groups.items())


def apply_policy(result: ImportResult, policy: str) -> list[Translated]:
    """The translated beamline under ``policy`` (see the module docstring)."""
    if policy not in POLICIES:
        raise ImportRefused(f"--on-unsupported: expected one of {list(POLICIES)} (got {policy!r})")
    missing = result.untranslatable
    if missing and policy == "error":
        raise ImportRefused(
            f"{result.source}: {len(missing)} element(s) cannot be translated: "
            f"{summarise(missing)}; choose --on-unsupported marker or drift to replace them")
    out: list[Translated] = []
    for item in result.items:
        if isinstance(item, Translated):
            out.append(item)
            continue
        result.replaced.append(item)
        if item.length < 0:
            raise ImportRefused(f"{result.source}: {item.source_kind} {item.name} cannot be "
                                f"replaced: {item.reason}")
        if policy == "drift":
            out.append(Translated(item.name, {"kind": "Drift", "length": item.length}))
        elif item.length:
            out.append(Translated(item.name, {"kind": "Instrument", "length": item.length}))
        else:
            out.append(Translated(item.name, {"kind": "Marker"}))
    return out
