"""The validation rule of impactx-benchmarks (2026) as a pure function: the class of one
code's final moments against the reference's.

Restated from ``benchmarks/validate.py`` of BLAST-ImpactX/impactx-benchmarks (``_compare``,
``classify_measurement``) and the tolerances of ``benchmarks/registry.py``: each compared
moment (rms sizes and geometric emittances; ``sigma_t`` with space charge; spin spreads with
spin) must satisfy

    |obs - ref| / max(|ref|, 1e-30) <= tol + 3 / sqrt(N)

with ``tol`` the scenario's relative tolerance and N the particle count (the term 3/sqrt(N)
is the benchmark's ``SAMPLING_C / sqrt(npart)``: an rms estimator from N particles
fluctuates by O(1/sqrt(N))). A non-finite moment is never within tolerance. Classes:

* ``model_mismatch``: the code runs another model than the scenario intends (declared, not
  measured; it takes precedence);
* ``correct``: every compared moment within its widened tolerance;
* ``unconverged``: out of tolerance in single precision while the double-precision run of
  the same code and options is correct (a precision artefact);
* ``incorrect``: out of tolerance otherwise.

The reference is ImpactX in double precision without fast-math (``impactx-cpu-simd-dp``) at
the same N.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

#: The benchmark's SAMPLING_C: tolerances are widened by SAMPLING_C / sqrt(N).
SAMPLING_C = 3.0
#: Relative tolerance per scenario (``benchmarks/registry.py`` SCENARIOS, ``"default"``).
TOLERANCES: dict[str, float] = {"fodo_chromatic": 5e-3, "fodo_exact": 5e-3, "htu": 3e-2,
                                "htu_spin": 1.5e-1, "spacecharge": 5e-2,
                                "spacecharge_2p5d": 5e-2}
#: Moments compared per scenario (``_OBS_TRACKING``, ``_OBS_SC``, ``_OBS_SPIN``).
_TRACKING = ("sigma_x", "sigma_y", "emit_x", "emit_y")
_SC = ("sigma_x", "sigma_y", "sigma_t", "emit_x", "emit_y")
OBSERVABLES: dict[str, tuple[str, ...]] = {
    "fodo_chromatic": _TRACKING, "fodo_exact": _TRACKING, "htu": _TRACKING,
    "htu_spin": ("sigma_sx", "sigma_sy"), "spacecharge": _SC, "spacecharge_2p5d": _SC}

Verdict = Literal["correct", "incorrect", "unconverged", "model_mismatch"]


@dataclass(frozen=True)
class Judgement:
    """The class, the worst relative error (dimensionless) and the moment it was on."""

    verdict: Verdict
    worst_error: float
    worst_moment: str


def widened_tolerance(tolerance: float, particles: int) -> float:
    """``tolerance + SAMPLING_C / sqrt(particles)`` (dimensionless; particles >= 1)."""
    if particles < 1:
        raise ValueError(f"particles: expected a count >= 1, got {particles}")
    return tolerance + SAMPLING_C / math.sqrt(particles)


def compare(moments: Mapping[str, float], reference: Mapping[str, float],
            keys: Sequence[str], tolerance: float, particles: int) -> tuple[bool, float, str]:
    """(all within, worst relative error, its moment) over the ``keys`` both sides hold.

    Moments in SI units (m, m rad; the ratio is dimensionless). No shared moment is not
    within tolerance (``inf``, ``"no-shared-observables"``), as in the benchmark.
    """
    limit = widened_tolerance(tolerance, particles)
    within, worst, worst_key, compared = True, 0.0, "", 0
    for key in keys:
        if key not in moments or key not in reference:
            continue
        compared += 1
        obs, ref = float(moments[key]), float(reference[key])
        if not math.isfinite(obs):
            within, worst, worst_key = False, math.inf, key
            continue
        rel = abs(obs - ref) / max(abs(ref), 1e-30)
        if rel > limit:
            within = False
        if rel > worst:
            worst, worst_key = rel, key
    if compared == 0:
        return False, math.inf, "no-shared-observables"
    return within, worst, worst_key


def classify(moments: Mapping[str, float], reference: Mapping[str, float], particles: int,
             scenario: str, *, precision: Literal["single", "double"] = "double",
             double_sibling_correct: bool = False, model_mismatch: bool = False) -> Judgement:
    """The benchmark's class of one run of ``scenario`` with ``particles`` particles.

    ``double_sibling_correct``: whether the double-precision run of the same code and
    options is ``correct`` (only read for ``precision="single"``); ``model_mismatch``: the
    code runs another model than the scenario intends.
    """
    if scenario not in TOLERANCES:
        raise ValueError(f"scenario: expected one of {', '.join(TOLERANCES)}, got {scenario!r}")
    if model_mismatch:
        return Judgement("model_mismatch", math.nan, "")
    within, worst, key = compare(moments, reference, OBSERVABLES[scenario],
                                 TOLERANCES[scenario], particles)
    if within:
        return Judgement("correct", worst, key)
    if precision == "single" and double_sibling_correct:
        return Judgement("unconverged", worst, key)
    return Judgement("incorrect", worst, key)


#: trackbench's moment names for the benchmark's (trackbench rows: ``emittance_x``, ...).
TRACKBENCH_NAMES: dict[str, str] = {"emit_x": "emittance_x", "emit_y": "emittance_y",
                                    "sigma_x": "sigma_x", "sigma_y": "sigma_y",
                                    "sigma_t": "sigma_t", "sigma_sx": "sigma_sx",
                                    "sigma_sy": "sigma_sy"}
