"""The project's single source of truth for model tiers, element kinds, statuses and verdicts.

Model tiers follow ImpactX (``impactx/element_models.py``): ``linear`` < ``paraxial`` <
``exact``. A requested tier is a *floor*: an element family that does not implement it is
run with the cheapest implemented tier above it, or, when none is above, with its highest
tier (ImpactX's ``select_model`` rule). The effective tier of every element is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase

MODEL_TIERS: tuple[str, ...] = ("linear", "paraxial", "exact")
_RANK = {tier: rank for rank, tier in enumerate(MODEL_TIERS)}

#: Element kinds understood by the harness, keyed by their PALS ``kind``. The value lists the
#: tiers ImpactX implements for that family (thin or tier-independent maps list all three).
ELEMENT_TIERS: dict[str, tuple[str, ...]] = {
    "Drift": ("linear", "paraxial", "exact"),
    "Quadrupole": ("linear", "paraxial", "exact"),
    "SBend": ("linear", "exact"),
    "Sextupole": ("exact",),
    "Multipole": MODEL_TIERS,
    "Solenoid": ("linear",),
    "RFCavity": MODEL_TIERS,
    "Marker": MODEL_TIERS,
    "Instrument": MODEL_TIERS,
    "Kicker": MODEL_TIERS,
}

#: Every element kind of the harness's flat lattice: the PALS kinds above plus ``Aperture``
#: (a PALS ``ApertureP`` on a Marker or Instrument becomes its own element).
LATTICE_KINDS: frozenset[str] = frozenset(ELEMENT_TIERS) | {"Aperture"}


@dataclass(frozen=True)
class FieldInfo:
    """One field of :attr:`harness.model.lattice.Element.params`: its unit and meaning."""

    unit: str
    meaning: str


_ALIGNMENT: dict[str, FieldInfo] = {
    "x_offset": FieldInfo("m", "horizontal offset of the element body (PALS BodyShiftP; "
                          "ImpactX dx)"),
    "y_offset": FieldInfo("m", "vertical offset of the element body (PALS BodyShiftP; "
                          "ImpactX dy)"),
    "z_rot": FieldInfo("rad", "rotation of the element body about s (PALS BodyShiftP; "
                       "ImpactX rotation, sign of MAD-X TILT)"),
}

#: Multipole fields (order N = 0, 1, 2, ...): ``KnN``/``KsN`` per metre of a thick element
#: [1/m^(N+1)], ``KnNL``/``KsNL`` integrated [1/m^N] on thin ones. Field strengths (``BnN``
#: [T/m^N]) are converted with the beam's rigidity and ``tiltN`` is folded into the two
#: components, so params hold normalised, untilted strengths only.
MULTIPOLE_PATTERNS: dict[str, FieldInfo] = {
    "Kn*": FieldInfo("1/m^(N+1)", "normal multipole of order N per metre (MAD-X KN/L)"),
    "Ks*": FieldInfo("1/m^(N+1)", "skew multipole of order N per metre (MAD-X KS/L)"),
}

#: The fields of :attr:`harness.model.lattice.Element.params` per kind. ``REQUIRED_FIELDS`` are
#: always present; the others appear only when the lattice sets them (non-zero), and a
#: backend that does not honour one present reports the case ``unsupported`` naming it.
ELEMENT_FIELDS: dict[str, dict[str, FieldInfo]] = {
    "Drift": {"length": FieldInfo("m", "length"), **_ALIGNMENT},
    "Quadrupole": {"length": FieldInfo("m", "length"),
                   "Kn1": FieldInfo("1/m^2", "normalised gradient (MAD-X K1, > 0 focuses x)"),
                   **_ALIGNMENT},
    "SBend": {
        "length": FieldInfo("m", "arc length"),
        "angle": FieldInfo("rad", "bend angle = g_ref * length"),
        "e1": FieldInfo("rad", "entrance pole-face angle (sector convention)"),
        "e2": FieldInfo("rad", "exit pole-face angle (sector convention)"),
        "Kn1": FieldInfo("1/m^2", "combined-function gradient"),
        "edge_int1": FieldInfo("m", "entrance fringe-field integral (MAD-X FINT*HGAP)"),
        "edge_int2": FieldInfo("m", "exit fringe-field integral (MAD-X FINTX*HGAP)"),
        "h1": FieldInfo("1/m", "entrance pole-face curvature"),
        "h2": FieldInfo("1/m", "exit pole-face curvature"),
        "tilt_ref": FieldInfo("rad", "rotation of the bend (and its plane) about s (MAD-X "
                              "TILT of a bend; ImpactX rotation)"),
        **_ALIGNMENT},
    "Sextupole": {"length": FieldInfo("m", "length"),
                  "Kn2": FieldInfo("1/m^3", "normalised sextupole strength (MAD-X K2)"),
                  "Ks2": FieldInfo("1/m^3", "skew sextupole strength (MAD-X K2S)"),
                  **_ALIGNMENT},
    "Multipole": {"length": FieldInfo("m", "0 (thin kick)"),
                  "Kn*L": FieldInfo("1/m^N", "integrated normal strength (MAD-X KNL)"),
                  "Ks*L": FieldInfo("1/m^N", "integrated skew strength (MAD-X KSL)"),
                  **_ALIGNMENT},
    "Solenoid": {"length": FieldInfo("m", "length"),
                 "Ksol": FieldInfo("1/m", "B_s / (B rho) (ImpactX ks)"), **_ALIGNMENT},
    "RFCavity": {"length": FieldInfo("m", "0 (short RF gap)"),
                 "voltage": FieldInfo("V", "peak voltage"),
                 "frequency": FieldInfo("Hz", "RF frequency"),
                 "phase": FieldInfo("rad", "RF phase (ImpactX ShortRF: 0 on crest)")},
    "Marker": {"length": FieldInfo("m", "0")},
    "Instrument": {"length": FieldInfo("m", "length (a drift)")},
    "Kicker": {"length": FieldInfo("m", "length (drift halves around a thin kick)"),
               "Kn0L": FieldInfo("rad", "integrated dipole kick, dpx = -Kn0L (MAD-X KNL[0])"),
               "Ks0L": FieldInfo("rad", "integrated skew dipole kick, dpy = +Ks0L"),
               "Kn*L": FieldInfo("1/m^N", "integrated normal multipole of order N"),
               "Ks*L": FieldInfo("1/m^N", "integrated skew multipole of order N"),
               **_ALIGNMENT},
    "Aperture": {"length": FieldInfo("m", "0"),
                 "x_limit": FieldInfo("m", "horizontal half-width"),
                 "y_limit": FieldInfo("m", "vertical half-width"),
                 "elliptical": FieldInfo("1", "1 elliptical, 0 rectangular")},
}
for _kind in ("Quadrupole", "SBend", "Sextupole", "Solenoid"):
    ELEMENT_FIELDS[_kind] = {**ELEMENT_FIELDS[_kind], **MULTIPOLE_PATTERNS}

#: Fields every element of a kind carries (see ``ELEMENT_FIELDS``).
REQUIRED_FIELDS: dict[str, frozenset[str]] = {
    "Drift": frozenset({"length"}),
    "Quadrupole": frozenset({"length", "Kn1"}),
    "SBend": frozenset({"length", "angle", "e1", "e2"}),
    "Sextupole": frozenset({"length", "Kn2"}),
    "Multipole": frozenset({"length"}),
    "Solenoid": frozenset({"length", "Ksol"}),
    "RFCavity": frozenset({"length", "voltage", "frequency", "phase"}),
    "Marker": frozenset({"length"}),
    "Instrument": frozenset({"length"}),
    "Kicker": frozenset({"length", "Kn0L", "Ks0L"}),
    "Aperture": frozenset({"length", "x_limit", "y_limit", "elliptical"}),
}


def field_declared(patterns: Iterable[str], field: str) -> bool:
    """Whether ``field`` matches one of ``patterns`` (names, or ``fnmatch`` patterns such
    as ``Kn*L``)."""
    return any(field == p or ("*" in p and fnmatchcase(field, p)) for p in patterns)



def tier_rank(tier: str) -> int:
    """Rank of a model tier (higher = more faithful)."""
    return _RANK[tier]


def resolve_tier(kind: str, requested: str) -> str:
    """Effective tier of an element family for a requested tier floor (ImpactX's rule)."""
    implemented = sorted(ELEMENT_TIERS[kind], key=tier_rank)
    for tier in implemented:
        if tier_rank(tier) >= tier_rank(requested):
            return tier
    return implemented[-1]


class Status(StrEnum):
    """Outcome of one case."""

    OK = "ok"
    UNSUPPORTED = "unsupported"
    FAILED = "failed"
    TIMEOUT = "timeout"
    OOM = "oom"


class Verdict(StrEnum):
    """Physics verdict of a case against its reference."""

    AGREES = "agrees"
    DIFFERS = "differs"
    MODEL_MISMATCH = "model-mismatch"
    NO_REFERENCE = "no-reference"
    IS_REFERENCE = "reference"
    BLOW_UP = "blow-up"


class Cause(StrEnum):
    """Why a case did not finish ``ok`` (the ``cause`` column; ``reason`` has the words)."""

    EXCEPTION = "exception"          # the case raised; reason: its last line
    OUT_OF_MEMORY = "out-of-memory"  # the case's own allocation failed (host, CUDA, rlimit)
    MEMORY_LIMIT = "memory-limit"    # the harness saw resident memory pass the limit
    KERNEL_OOM = "kernel-oom"        # SIGKILL by the kernel's out-of-memory killer
    PREFLIGHT = "preflight"          # refused before starting: the estimate exceeds the limit
    TIMEOUT = "timeout"              # killed by the harness at the time limit
    SIGNAL = "signal"                # killed by a signal sent from outside the harness
    CRASH = "crash"                  # died of its own fault signal (SIGSEGV, SIGABRT, ...)
    EXIT = "exit"                    # exited without writing a result
    HARNESS = "harness"              # the parent failed to run the case
    DISK_FULL = "disk-full"          # the file system was full (ENOSPC) or the quota spent
    LOST_WORKER = "lost-worker"      # the cluster worker running the case died (twice)


#: Names of the tuning methods (the registry :data:`harness.tuning.methods.METHODS` holds
#: one entry per name; a scenario's ``tuning`` block refers to them).
TUNING_METHODS: tuple[str, ...] = ("lbfgs", "adam", "neldermead", "xopt-neldermead", "xopt-bo")
