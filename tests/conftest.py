"""Test-wide settings.

The in-house tracker tracks eagerly in the tests (also in the case processes they start)
unless a test asks for compilation: compiling every lattice would cost seconds per test.
``tests/test_inhouse_compiled.py`` checks the compiled path against the eager one; set
``TRACKBENCH_INHOUSE_COMPILE=1`` to run the whole suite compiled.

``make test`` runs the suite in two parts (see the Makefile):

- everything not marked ``serial`` on pytest-xdist workers, one per available core
  (``-n auto --dist loadgroup``). Each worker compiles into an inductor cache of its own,
  ``<cache>-<worker>`` beside the project's ``.cache/inductor`` (or beside
  ``TORCHINDUCTOR_CACHE_DIR`` when that is set), started as a copy of it so that it is warm
  when the project's cache is, and kept between runs. Tests that share an expensive
  module fixture, and tests that start several processes or time themselves against a
  wall-clock budget, carry an ``xdist_group`` mark: a group runs on one worker, one test
  after the other;
- then the tests marked ``serial`` (they measure the machine's load, so they need it to
  themselves) in one process, after the workers are gone.

OpenMP threads that wait for work spin for a bounded time only (``GOMP_SPINCOUNT``, as the
harness sets it for its cases, :data:`harness.timing_quality.OPENMP_SPIN_COUNT`), so that the
workers' thread teams do not spin against each other on a machine they share.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness.timing_quality import OPENMP_SPIN_COUNT

#: The project's inductor cache (``backends.inhouse.compiled.CACHE_DIR``, not imported here:
#: that module imports torch).
PROJECT_INDUCTOR_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "inductor"

os.environ.setdefault("TRACKBENCH_INHOUSE_COMPILE", "0")
os.environ.setdefault("GOMP_SPINCOUNT", str(OPENMP_SPIN_COUNT))


def worker_inductor_cache(worker: str, base: Path) -> Path:
    """The inductor cache of the xdist worker ``worker`` (``gw0``, ``gw1``, ...): ``base``'s
    sibling ``<base>-<worker>``, created as a copy of ``base`` when it does not exist yet
    (inductor writes its entries by rename, so a copy holds whole entries only)."""
    own = base.with_name(f"{base.name}-{worker}")
    if not own.exists():
        scratch = base.with_name(f"{base.name}-{worker}.{os.getpid()}.tmp")
        if base.is_dir():
            shutil.copytree(base, scratch, ignore=shutil.ignore_patterns("locks", "*.lock"))
        else:
            scratch.mkdir(parents=True)
        try:
            scratch.rename(own)
        except OSError:  # another run made it first: use that one
            shutil.rmtree(scratch, ignore_errors=True)
    return own


_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    _BASE = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(worker_inductor_cache(
        _WORKER, Path(_BASE) if _BASE else PROJECT_INDUCTOR_CACHE))

