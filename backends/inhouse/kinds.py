"""Element kinds the in-house tracker translates (importable without torch)."""

from __future__ import annotations

#: Harness element kinds (PALS kinds plus ``Aperture``) with an in-house map.
KINDS: frozenset[str] = frozenset({
    "Drift", "Quadrupole", "SBend", "Sextupole", "Multipole", "Solenoid", "RFCavity",
    "Marker", "Instrument", "Aperture",
})
