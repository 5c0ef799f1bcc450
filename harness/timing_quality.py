"""How trustworthy a timing is: the spread of the repeats and the machine's load.

On a shared machine a timed track can be slowed by other processes (measured here: a FODO
track at 22.4 ms median on 2 threads against 0.36 ms on 1 thread while another process held
a core). A row therefore carries the load average seen around its timed repeats and a
warning when the repeats spread too widely or the machine was loaded, so that such a number
is never read as the code's speed.

The thread count of a case that asks for all threads is the CPUs the process may run on
(:func:`available_cores`, ``os.sched_getaffinity``) less those other processes keep busy
when it starts (:func:`busy_cores`, sampled from ``/proc/stat``): an OpenMP team splits
each kernel evenly between its threads and waits at the end for the slowest, so a thread
that shares its core with another process holds every kernel up. Measured on the 2-core
machine (in-house ``fodo_exact``, 1e6 particles, one other CPU-bound process): 2 threads
took 0.95 s per track (median; 0.15-3.2 s) against 0.063 s on 1 thread. Waiting threads
also spin for a bounded time only (``GOMP_SPINCOUNT``, :data:`OPENMP_SPIN_COUNT`; libgomp's
default is 300 000), so a load that begins after the start costs less: 0.26 s instead of
0.95 s on 2 threads, and idle 2-thread tracks are unchanged (0.039 s).
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


#: How long other processes' CPU use is sampled before a case that asks for all threads [s].
BUSY_SAMPLE_S = 0.2
#: Iterations an idle OpenMP thread spins before it sleeps (libgomp's ``GOMP_SPINCOUNT``).
#: Measured (see the module text): 10 000 keeps idle 2-thread tracks as fast as libgomp's
#: default and cuts the loss under a competing process 3.6x; at 500 or fewer, idle 2-thread
#: tracks slowed by 1.7x (each kernel waits for a thread to wake).
OPENMP_SPIN_COUNT = 10_000


def _cpu_times(cpus: set[int]) -> tuple[float, float] | None:
    """Total and idle (idle + iowait) jiffies of ``cpus`` from ``/proc/stat`` (None where
    there is none)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            lines = stat.read().splitlines()
    except OSError:
        return None
    total = idle = 0.0
    for line in lines:
        name, _, values = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [float(v) for v in values.split()]
            total += sum(ticks[:8])  # user nice system idle iowait irq softirq steal
            idle += ticks[3] + ticks[4]
    return (total, idle) if total > 0 else None


def busy_cores(interval_s: float = BUSY_SAMPLE_S) -> float | None:
    """Cores of this process's affinity mask that other processes kept busy over the next
    ``interval_s`` seconds (this process sleeps meanwhile) [cores]; None without
    ``/proc/stat``."""
    import time

    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    before = _cpu_times(cpus)
    time.sleep(interval_s)
    after = _cpu_times(cpus)
    if before is None or after is None or after[0] <= before[0]:
        return None
    span, idle = after[0] - before[0], after[1] - before[1]
    return max(0.0, len(cpus) * (1.0 - idle / span))


def threads_beside(cores: int, busy: float | None) -> int:
    """Threads for a case on ``cores`` CPUs of which ``busy`` are taken by others: the free
    cores, a core counted free when less than half of it is taken (at least 1). The runner
    itself (polling its case process) shows as 0.3 of a core of 2 here."""
    if busy is None:
        return cores
    return max(1, min(cores, int(cores - busy + 0.5)))


def default_threads() -> float | None:
    """Before a backend is imported: bound OpenMP's spinning (:data:`OPENMP_SPIN_COUNT`,
    unless ``GOMP_SPINCOUNT`` is set) and, unless ``OMP_NUM_THREADS`` is set (``--threads
    N`` sets it), let OpenMP (torch, ImpactX) use the available cores that other processes
    leave free. Returns the busy cores measured (None when the thread count was given)."""
    os.environ.setdefault("GOMP_SPINCOUNT", str(OPENMP_SPIN_COUNT))
    if "OMP_NUM_THREADS" in os.environ:
        return None
    cores = available_cores()
    busy = busy_cores() if cores > 1 else None
    os.environ["OMP_NUM_THREADS"] = str(threads_beside(cores, busy))
    return busy


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
