"""What the in-house tracker translates, importable without torch: the element kinds (the
lattice vocabulary's, one source) and the element fields it honours per kind (the same as
ImpactX's, whose maps it reproduces; see :mod:`backends.inhouse.translate`)."""

from __future__ import annotations

from harness.vocabulary import LATTICE_KINDS

#: Harness element kinds with an in-house map (every kind of the lattice vocabulary).
KINDS: frozenset[str] = LATTICE_KINDS

_ALIGNMENT = frozenset({"x_offset", "y_offset", "z_rot"})

#: Element fields the in-house tracker honours per kind.
HONOURED_FIELDS: dict[str, frozenset[str]] = {
    "Drift": frozenset({"length"}) | _ALIGNMENT,
    "Quadrupole": frozenset({"length", "Kn1", "Ks1"}) | _ALIGNMENT,
    "SBend": frozenset({"length", "angle", "e1", "e2", "Kn1", "edge_int1", "edge_int2",
                        "tilt_ref"}),
    "Sextupole": frozenset({"length", "Kn2", "Ks2"}) | _ALIGNMENT,
    "Multipole": frozenset({"length", "Kn*L", "Ks*L"}) | _ALIGNMENT,
    "Solenoid": frozenset({"length", "Ksol"}) | _ALIGNMENT,
    "RFCavity": frozenset({"length", "voltage", "frequency", "phase"}),
    "Marker": frozenset({"length"}),
    "Instrument": frozenset({"length"}),
    "Aperture": frozenset({"length", "x_limit", "y_limit", "elliptical"}),
    "Kicker": frozenset({"length", "Kn0L", "Ks0L"}) | _ALIGNMENT,
}
