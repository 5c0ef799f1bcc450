"""The parameter grid of the asv suite.

Default (a nightly on a 2-core machine): four scenarios × the registered backends × 1e4,
1e5 and 1e6 particles, on ``cpu`` (and ``cuda`` when torch sees a GPU), all in float64.
``TRACKBENCH_ASV_QUICK=1`` shrinks it to one tiny case (``fodo_linear``, the in-house
tracker, 1000 particles; ImpactX still tracks the reference of ``track_agreement``) for
tests and smoke runs.

The grid is computed at import, identically in asv's discovery and in every benchmark
process of one machine (the environment variable must be set for both; ``trackbench asv``
passes it through).
"""

from __future__ import annotations

import os

QUICK_VARIABLE = "TRACKBENCH_ASV_QUICK"


def quick() -> bool:
    """Whether the one-tiny-case grid is asked for (``TRACKBENCH_ASV_QUICK=1``)."""
    return os.environ.get(QUICK_VARIABLE, "").strip() not in ("", "0", "false", "no")


def scenarios() -> list[str]:
    """Bundled scenario names benchmarked."""
    if quick():
        return ["fodo_linear"]
    return ["fodo_linear", "fodo_paraxial", "fodo_exact", "chicane"]


def backends() -> list[str]:
    """Backend ids benchmarked: every registered one (an unavailable one is skipped in setup,
    so its column stays in the dashboard)."""
    if quick():
        return ["inhouse"]
    from backends.registry import backend_classes

    return list(backend_classes())


def particle_counts() -> list[int]:
    """Numbers of macro-particles."""
    if quick():
        return [1_000]
    return [10_000, 100_000, 1_000_000]


def gradient_particle_counts() -> list[int]:
    """Numbers of macro-particles of the gradient benchmarks (a reverse-mode gradient at
    10^6 particles stores gigabytes and takes seconds per sample on 2 cores)."""
    return [n for n in particle_counts() if n <= 100_000]


def devices() -> list[str]:
    """``cpu``, plus ``cuda`` when torch sees a GPU."""
    try:
        import torch
    except ImportError:
        return ["cpu"]
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


#: Precision of every benchmark (the harness's reference precision).
DTYPE = "float64"
