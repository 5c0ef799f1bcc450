"""Cases: one scenario × backend × particle count × device × dtype × math setting, and how
a matrix of them is planned (reference cases first, so that every other case can compare
with one)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from backends.base import IEEE
from harness.model.scenario import Scenario

#: Particle counts of the default comparison when a scenario names none (modest sizes that
#: finish in minutes on a 2-core machine).
DEFAULT_PARTICLE_COUNTS: tuple[int, ...] = (10_000, 100_000)
#: The reference code and settings of a scenario with ``reference: impactx``.
REFERENCE_DEVICE, REFERENCE_DTYPE = "cpu", "float64"


class Case(BaseModel):
    """One cell of the matrix, and everything its case process is told: the one case type
    of the parent (planning, running, storing) and the child (:mod:`harness.child`), which
    validates it back from JSON, so that a misspelt or missing field fails at once with its
    name. Positional arguments follow the field order (``Case(scenario, scenario_path,
    backend, particles, ...)``).

    Attributes:
        scenario: scenario name; ``scenario_path`` the file it was loaded from.
        backend: registry id or ``module:Class``.
        particles: number of macro-particles.
        device, dtype: ``cpu``/``cuda``, ``float64``/``float32``.
        repeat: timed tracks after the warm-up one.
        threads: threads the case may use (None: all the process is given).
        role: ``reference`` for the case others are compared with, else ``case``.
        reference: what the case is compared with: ``impactx``, ``inhouse``, ``analytic``
            or ``none``; ``reference_case`` the id of the reference case (if any) and
            ``reference_note`` why that reference was chosen.
        kind: the case kind (``track``, ``gradient``, ``tuning``, ...; :mod:`harness.child`).
        options: extra settings of the kind (e.g. gradient parameters).
        scenario_hash: content hash of the scenario file (:func:`scenario_hash`): cached
            particles and ``--resume`` never mix two files.
        math: ``ieee`` (default) or ``fast`` (the code's fast-math flags, where it offers
            them at run time; :attr:`backends.base.Backend.math_modes`); ``fast`` ends the
            case id with ``/fast``.

    What the runner adds for the case process (defaults while planning):

    Attributes:
        initial_path: ``.npy`` file of the initial particles; None: the child draws them
            from the scenario's beam (its seed), so the parent never holds them.
        final_path: where a reference case saves its final particles (``.npy``).
        reference_final_path: the reference case's final particles; reference_missing: why
            they are absent (the reference case's row says more).
        reference_model: the model signature of the scenario (what the reference ran).
        memory_limit_bytes: the case's memory limit [bytes]; with ``hard_memory_limit`` the
            child also sets it as ``RLIMIT_DATA`` (:func:`harness.case_support.apply_limits`).
        launched_at: UNIX time [s] at which the parent started the process (the child's
            clock counts interpreter start-up from it); parent_pid: the parent's pid.
        write_particles: ``openpmd`` to write the initial and final particles into
            ``run_directory``/particles (``--write-particles``, after the timed tracks);
            None or ``none``: nothing written.
        scenario_blob: a file holding the parent's validated scenario
            (:func:`harness.model.load.scenario_to_bytes`), so that the child neither parses
            nor validates the YAML again; None: the child reads ``scenario_path``.
        plan_blob: a file holding the backend's :class:`backends.base.Plan` of the case,
            made once by the parent (support decided, lattice translated); the child
            prepares from it without asking again. None: the child plans itself.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    scenario: str = ""
    scenario_path: str
    backend: str
    particles: int
    device: str = "cpu"
    dtype: str = "float64"
    repeat: int = 5
    threads: int | None = None
    role: str = "case"
    reference: str = "none"
    reference_case: str | None = None
    reference_note: str = ""
    kind: str = "track"
    options: dict[str, Any] = {}
    scenario_hash: str = ""
    math: Literal["ieee", "fast"] = "ieee"
    # -- what the runner adds for the case process
    initial_path: str | None = None
    final_path: str | None = None
    reference_final_path: str | None = None
    reference_missing: str | None = None
    reference_model: str | None = None
    memory_limit_bytes: int | None = None
    hard_memory_limit: bool = False
    launched_at: float | None = None
    parent_pid: int | None = None
    write_particles: str | None = None
    run_directory: str | None = None
    scenario_blob: str | None = None
    plan_blob: str | None = None

    def __init__(self, *args: Any, **data: Any) -> None:
        names = list(type(self).model_fields)
        if len(args) > len(names):
            raise TypeError(f"Case takes at most {len(names)} positional arguments")
        data.update(zip(names, args, strict=False))
        super().__init__(**data)

    @model_validator(mode="before")
    @classmethod
    def _without_case_id(cls, data: Any) -> Any:
        """A dict with ``case_id`` (a row, :meth:`as_dict`) is accepted: the id is derived."""
        if isinstance(data, dict) and "case_id" in data:
            data = {k: v for k, v in data.items() if k != "case_id"}
        return data

    @property
    def case_id(self) -> str:
        """Stable identifier of the case (what ``--resume`` matches)."""
        threads = "" if self.threads is None else f"/t{self.threads}"
        # a variant of the same cell (e.g. gradient parameter sets ``P16``) ends the id
        variant = f"/{self.options['label']}" if self.options.get("label") else ""
        math = "" if self.math == IEEE else f"/{self.math}"
        return (f"{self.kind}/{self.scenario}/{self.backend}/{self.particles}/{self.device}/"
                f"{self.dtype}{threads}{math}{variant}")

    def as_dict(self) -> dict:
        """JSON-ready form of the case's cell (without the case-process fields), with the
        case id."""
        return self.model_dump(include=set(CELL_FIELDS)) | {"case_id": self.case_id}

    def with_hash(self, scenario_hash: str) -> Case:
        """The same case with its scenario's content hash."""
        return self.replace(scenario_hash=scenario_hash)

    def replace(self, **changes: Any) -> Case:
        """A copy with ``changes`` (validated)."""
        return type(self).model_validate(self.model_dump() | changes)

    @classmethod
    def coerce(cls, spec: Case | dict[str, Any]) -> Case:
        """A case as given, or validated from a plain dict."""
        return spec if isinstance(spec, Case) else cls.model_validate(spec)


#: The fields that make a case's cell (the rest are what the runner adds for its process).
CELL_FIELDS: tuple[str, ...] = (
    "scenario", "scenario_path", "backend", "particles", "device", "dtype", "repeat",
    "threads", "role", "reference", "reference_case", "reference_note", "kind", "options",
    "scenario_hash", "math")


def scenario_hash(scenario: Scenario) -> str:
    """Content hash of a scenario (its file's bytes, else its validated model): 12 hex."""
    data = b""
    if scenario.source_file:
        with contextlib.suppress(OSError):
            data = Path(scenario.source_file).read_bytes()
    if not data:
        data = scenario.model_dump_json().encode()
    return hashlib.sha256(data).hexdigest()[:12]


def scenario_labels(scenarios: Sequence[Scenario]) -> list[str]:
    """The label of each scenario in rows and case ids: its name, or ``name@<hash>`` when
    two different files of the run share the name (identical files keep the name)."""
    hashes = [scenario_hash(s) for s in scenarios]
    by_name: dict[str, set[str]] = {}
    for scenario, digest in zip(scenarios, hashes, strict=True):
        by_name.setdefault(scenario.name, set()).add(digest)
    return [s.name if len(by_name[s.name]) == 1 else f"{s.name}@{digest[:8]}"
            for s, digest in zip(scenarios, hashes, strict=True)]


def scenario_map(scenarios: Sequence[Scenario]) -> dict[str, Scenario]:
    """Scenarios by label (:func:`scenario_labels`)."""
    return dict(zip(scenario_labels(scenarios), scenarios, strict=True))


#: ``--particles smallest``: each scenario at the smallest of its own particle counts.
SMALLEST = "smallest"


def particle_counts(scenario: Scenario,
                    requested: Sequence[int] | str | None) -> list[int]:
    """The particle counts of a scenario: as requested, else the scenario's, else defaults;
    :data:`SMALLEST` asks for the smallest of the scenario's (or of the defaults)."""
    own = list(scenario.particle_counts or DEFAULT_PARTICLE_COUNTS)
    if requested == SMALLEST:
        return [min(own)]
    if requested:
        return [int(n) for n in requested]
    return own


def reference_backend(scenario: Scenario, available: Sequence[str]) -> tuple[str, str]:
    """The reference a scenario's cases are compared with, and a note on the choice.

    ``impactx`` unless the scenario says ``analytic`` or ``inhouse``; ``inhouse`` stands in
    when ImpactX is not installed (the note says so).
    """
    if scenario.reference == "analytic":
        return "analytic", "closed-form observables given by the scenario"
    if scenario.reference == "impactx" and "impactx" not in available:
        if "inhouse" in available:
            return "inhouse", "ImpactX is not installed: the in-house tracker is the reference"
        return "none", "neither ImpactX nor the in-house tracker is available"
    return scenario.reference, ""


def plan(scenarios: Sequence[Scenario], backends: Sequence[str],
         counts: Sequence[int] | str | None,
         devices: Sequence[str], dtypes: Sequence[str], repeat: int, available: Sequence[str],
         threads: int | Sequence[int | None] | None = None,
         maths: Sequence[str] = (IEEE,)) -> list[Case]:
    """All cases of the matrix, each reference case placed before the cases that use it.

    The reference case (the reference code, cpu, float64, ieee, same particle count, the
    first thread count) is added even when its backend was not requested, because agreement
    is measured against it. ``threads`` is one thread count or several (each a dimension of
    the matrix, e.g. ``[1, 2]`` for a per-core comparison); None: all the process is given.
    ``maths``: the math settings (:data:`backends.base.MATH_MODES`: ``ieee``, ``fast``),
    each a dimension of the matrix; only ``fast`` shows in the case id (``/fast``), so
    the ids of IEEE cases are those of runs made before the setting.
    """
    thread_counts = list(threads) if isinstance(threads, Sequence) else [threads]
    cases: list[Case] = []
    for scenario, label in zip(scenarios, scenario_labels(scenarios), strict=True):
        # absolute: the case process runs in the run's cache directory
        path = os.path.abspath(scenario.source_file) if scenario.source_file else scenario.name
        digest = scenario_hash(scenario)
        reference, note = reference_backend(scenario, available)
        for n in particle_counts(scenario, counts):
            ref_case = None
            # analytic scenarios are also compared particle by particle with a reference code
            code = reference if reference != "analytic" else next(
                (b for b in ("impactx", "inhouse") if b in available), "none")
            if code != "none":
                ref_case = Case(label, path, code, n, REFERENCE_DEVICE,
                                REFERENCE_DTYPE, repeat, thread_counts[0], role="reference",
                                reference=reference, reference_note=note,
                                scenario_hash=digest)
                cases.append(ref_case)
            for backend, device, dtype, count, math in itertools.product(
                    backends, devices, dtypes, thread_counts, maths):
                case = Case(label, path, backend, n, device, dtype, repeat, count,
                            reference=reference,
                            reference_case=ref_case.case_id if ref_case else None,
                            reference_note=note, scenario_hash=digest, math=math)
                if ref_case is None or case.case_id != ref_case.case_id:
                    cases.append(case)
    return cases


def cache_name(case_id: str) -> str:
    """A case id as one safe file name (``/`` as ``__``, then :func:`harness.names.file_name`:
    a scenario name never makes a path leave its directory)."""
    from harness.names import file_name

    return file_name(case_id.replace("/", "__"))


def final_path(cache: Path, case_id: str, scenario_hash: str = "") -> Path:
    """Where a reference case's final particles are kept (per scenario content)."""
    suffix = f"__{scenario_hash}" if scenario_hash else ""
    return cache / f"final__{cache_name(case_id)}{suffix}.npy"
