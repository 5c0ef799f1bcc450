"""Test-wide settings.

The in-house tracker tracks eagerly in the tests (also in the case processes they start)
unless a test asks for compilation: compiling every lattice would cost seconds per test.
``tests/test_inhouse_compiled.py`` checks the compiled path against the eager one; set
``TRACKBENCH_INHOUSE_COMPILE=1`` to run the whole suite compiled.

``make test`` runs the suite in two parts (see the Makefile):

- everything not marked ``serial`` on pytest-xdist workers, one per available core
  (``-n auto --dist loadgroup``). Each worker compiles into an inductor cache of its own,
  ``<cache>-<worker>`` beside the project's ``.cache/inductor`` (or beside
  ``TORCHINDUCTOR_CACHE_DIR`` when that is set), so that no two workers write one cache. It
  is kept between runs, and filled when the worker starts with the entries that the
  project's cache and the other workers' caches hold: a kernel that any worker compiled in
  an earlier run is not compiled again. Tests that share an expensive module fixture, and
  tests that start several processes or time themselves against a wall-clock budget, carry
  an ``xdist_group`` mark: a group runs on one worker, one test after the other;
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

import pytest

from harness.timing_quality import OPENMP_SPIN_COUNT

#: The project's inductor cache (``backends.inhouse.compiled.CACHE_DIR``, not imported here:
#: that module imports torch).
PROJECT_INDUCTOR_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "inductor"

os.environ.setdefault("TRACKBENCH_INHOUSE_COMPILE", "0")
os.environ.setdefault("GOMP_SPINCOUNT", str(OPENMP_SPIN_COUNT))


def worker_inductor_cache(worker: str, base: Path) -> Path:
    """The inductor cache of the xdist worker ``worker`` (``gw0``, ``gw1``, ...): ``base``'s
    sibling ``<base>-<worker>``, first filled with what ``base`` and the other workers' caches
    hold that it lacks. Inductor names its entries by their content, so an entry copied from
    another cache is the one this worker would have written: a kernel that another worker
    compiled in an earlier run costs a copy here, not a compilation."""
    own = base.with_name(f"{base.name}-{worker}")
    own.mkdir(parents=True, exist_ok=True)
    for source in (base, *sorted(base.parent.glob(f"{base.name}-gw*"))):
        if source != own and source.is_dir():
            fill_from(source, own)
    return own


def fill_from(source: Path, target: Path) -> None:
    """Copy into ``target`` each file of ``source`` that it lacks, whole (a copy renamed into
    place), leaving out locks and files being written (``*.tmp``, ``*.part``)."""
    for folder, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if d != "locks"]
        into = target / Path(folder).relative_to(source)
        for name in files:
            destination = into / name
            if name.endswith((".lock", ".tmp", ".part")) or destination.exists():
                continue
            scratch = into / f".{name}.{os.getpid()}.part"
            try:
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(folder) / name, scratch)
                os.replace(scratch, destination)
            except OSError:  # gone meanwhile, or no room: this worker compiles it instead
                scratch.unlink(missing_ok=True)


_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    _BASE = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(worker_inductor_cache(
        _WORKER, Path(_BASE) if _BASE else PROJECT_INDUCTOR_CACHE))


def xdist_group(item: pytest.Item) -> str:
    """The ``xdist_group`` of a test as pytest-xdist names it ("" when it has none)."""
    names = {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
             for mark in item.iter_markers("xdist_group")}
    return "_".join(sorted(names))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker with ``--dist loadgroup``: give each grouped test the node id
    ``<id>@<group>`` by which the controller keeps a group on one worker. pytest-xdist does
    so in this same hook by assigning ``item._nodeid``, which pytest 9.2's structured node ids
    ignore (pytest-xdist issue #1386): every group was then spread over the workers. Does
    nothing where xdist's own suffix took."""
    if not (_WORKER and config.getvalue("loadgroup")):
        return
    from _pytest.nodeid import NodeId

    for item in items:
        group = xdist_group(item)
        if group and not item.nodeid.endswith(f"@{group}"):
            item._id = NodeId.parse(f"{item.nodeid}@{group}")  # type: ignore[attr-defined]


@pytest.fixture
def fake_path(monkeypatch):
    """Make the fake backends (``tests/fake_backends.py``) importable here and in the case
    processes the runner starts."""
    tests = Path(__file__).resolve().parent
    monkeypatch.setenv("PYTHONPATH", str(tests))
    monkeypatch.syspath_prepend(str(tests))
