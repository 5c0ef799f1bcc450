"""How trustworthy a timing is: the spread of the repeats and the machine's load.

On a shared machine a timed track can be slowed by other processes (measured here: a FODO
track at 22.4 ms median on 2 threads against 0.36 ms on 1 thread while another process held
a core). A row therefore carries the load average seen around its timed repeats and a
warning when the repeats spread too widely or the machine was loaded, so that such a number
is never read as the code's speed.

The thread count of a case defaults to the CPUs the process may run on
(:func:`available_cores`, ``os.sched_getaffinity``), not the machine's core count.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Spread of the repeats, (max - min) / median, above which a row is flagged.
SPREAD_LIMIT = 0.5

#: One-minute load average per available core above which a row is flagged (1.0: every
#: core of the process had, on average, a runnable task besides the timed one).
LOAD_PER_CORE_LIMIT = 1.0


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` without one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads() -> None:
    """Let OpenMP (torch, ImpactX) use the available cores unless ``OMP_NUM_THREADS`` is set;
    call before a backend is imported."""
    os.environ.setdefault("OMP_NUM_THREADS", str(available_cores()))


def load_average() -> float | None:
    """The one-minute load average (None where the platform has none)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


@dataclass
class LoadProbe:
    """The load average when timing started; :func:`quality_fields` reads it again."""

    start: float | None = field(default_factory=load_average)


def quality_fields(times: Sequence[float], probe: LoadProbe, cores: int | None = None,
                   spread_limit: float = SPREAD_LIMIT,
                   load_limit: float = LOAD_PER_CORE_LIMIT) -> dict[str, object]:
    """Row fields of a timed case: ``load_1min_start``, ``load_1min_end``, ``cores_available``
    and ``timing_warning`` ("" when the timing looks clean, else why not)."""
    cores = cores or available_cores()
    end = load_average()
    warnings = []
    ordered = sorted(times)
    if len(ordered) > 1:
        median = ordered[len(ordered) // 2] if len(ordered) % 2 else 0.5 * (
            ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2])
        spread = (ordered[-1] - ordered[0]) / median if median > 0 else 0.0
        if spread > spread_limit:
            warnings.append(f"repeats spread {spread:.0%} (> {spread_limit:.0%})")
    loads = [value for value in (probe.start, end) if value is not None]
    if loads and max(loads) > load_limit * cores:
        warnings.append(f"machine load {max(loads):.1f} on {cores} cores while timing")
    return {"load_1min_start": probe.start, "load_1min_end": end, "cores_available": cores,
            "timing_warning": "; ".join(warnings)}
