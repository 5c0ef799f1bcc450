"""The project's single source of truth for model tiers, element kinds, statuses and verdicts.

Model tiers follow ImpactX (``impactx/element_models.py``): ``linear`` < ``paraxial`` <
``exact``. A requested tier is a *floor*: an element family that does not implement it is
run with the cheapest implemented tier above it, or, when none is above, with its highest
tier (ImpactX's ``select_model`` rule). The effective tier of every element is recorded.
"""

from __future__ import annotations

from enum import StrEnum

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
}

#: Every element kind of the harness's flat lattice: the PALS kinds above plus ``Aperture``
#: (a PALS ``ApertureP`` on a Marker or Instrument becomes its own element).
LATTICE_KINDS: frozenset[str] = frozenset(ELEMENT_TIERS) | {"Aperture"}

SPACE_CHARGE_KINDS: tuple[str, ...] = ("3d", "2p5d")


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
