"""The project's vocabulary: model tiers, the kind tables the code reads, statuses and verdicts.

The kind tables (``ELEMENT_TIERS``, ``ELEMENT_FIELDS``, ``REQUIRED_FIELDS``) are derived
from the one declaration per kind, :data:`harness.model.kinds.KIND_SPECS`.

Model tiers follow ImpactX (``impactx/element_models.py``): ``linear`` < ``paraxial`` <
``exact``. A requested tier is a *floor*: an element family that does not implement it is
run with the cheapest implemented tier above it, or, when none is above, with its highest
tier (ImpactX's ``select_model`` rule). The effective tier of every element is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from fnmatch import fnmatchcase

from harness.model.kinds import (
    KIND_SPECS,
    MODEL_TIERS,
    MULTIPOLE_PATTERNS,
    PALS_KINDS,
    SPECS,
    FieldInfo,
)

__all__ = ["ELEMENT_FIELDS", "ELEMENT_TIERS", "LATTICE_KINDS", "MODEL_TIERS",
           "MULTIPOLE_PATTERNS", "REQUIRED_FIELDS", "TUNING_METHODS", "Cause", "FieldInfo",
           "Status", "Verdict", "field_declared", "resolve_tier", "tier_rank"]

_RANK = {tier: rank for rank, tier in enumerate(MODEL_TIERS)}

#: Element kinds understood by the harness, keyed by their PALS ``kind``. The value lists the
#: tiers ImpactX implements for that family (thin or tier-independent maps list all three).
#: Derived from :data:`harness.model.kinds.KIND_SPECS`.
ELEMENT_TIERS: dict[str, tuple[str, ...]] = {kind: SPECS[kind].tiers for kind in PALS_KINDS}

#: Every element kind of the harness's flat lattice: the PALS kinds above plus ``Aperture``
#: (a PALS ``ApertureP`` on a Marker or Instrument becomes its own element).
LATTICE_KINDS: frozenset[str] = frozenset(SPECS)

#: The fields of :attr:`harness.model.lattice.Element.params` per kind (from the kind
#: specs). ``REQUIRED_FIELDS`` are always present; the others appear only when the lattice
#: sets them (non-zero), and a backend that does not honour one present reports the case
#: ``unsupported`` naming it.
ELEMENT_FIELDS: dict[str, dict[str, FieldInfo]] = {
    spec.kind: dict(spec.fields) for spec in KIND_SPECS}

#: Fields every element of a kind carries (see ``ELEMENT_FIELDS``).
REQUIRED_FIELDS: dict[str, frozenset[str]] = {spec.kind: spec.required for spec in KIND_SPECS}


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
