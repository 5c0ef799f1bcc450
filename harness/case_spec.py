"""The typed specification of one case as the child process receives it.

The parent (:mod:`harness.runner`) writes it as JSON; the child (:mod:`harness.child`)
validates it back into :class:`CaseSpec`, so a misspelt or missing field fails at once
with its name instead of as a ``KeyError`` deep inside a case.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class CaseSpec(BaseModel):
    """What one child process runs.

    Attributes:
        kind: ``track`` or ``gradient`` (the case module that runs it).
        case_id: the case's id (:attr:`harness.cases.Case.case_id`).
        scenario, scenario_path, scenario_hash: name, file and content hash of the scenario.
        backend: registry id or ``module:Class``.
        particles: number of macro-particles; device ``cpu``/``cuda``; dtype
            ``float64``/``float32``; repeat: timed repetitions; threads: torch threads
            (None: all the process is given).
        role, reference, reference_case, reference_note: as :class:`harness.cases.Case`.
        options: settings of the kind (gradient parameters, FD steps, ...).
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
        scenario_blob: a file holding the parent's validated scenario
            (:func:`harness.model.load.scenario_to_bytes`), so that the child neither parses
            nor validates the YAML again; None: the child reads ``scenario_path``.
        write_particles: ``openpmd`` to write the initial and final particles into
            ``run_directory``/particles (``--write-particles``, after the timed tracks);
            None or ``none``: nothing written.
    """

    model_config = ConfigDict(extra="forbid")

    kind: str = "track"
    case_id: str = ""
    scenario: str = ""
    scenario_path: str
    scenario_hash: str = ""
    backend: str
    particles: int
    device: str = "cpu"
    dtype: str = "float64"
    repeat: int = 1
    threads: int | None = None
    role: str = "case"
    reference: str = "none"
    reference_case: str | None = None
    reference_note: str = ""
    options: dict[str, Any] = {}
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

    @classmethod
    def coerce(cls, spec: CaseSpec | dict[str, Any]) -> CaseSpec:
        """A spec as given, or validated from a plain dict."""
        return spec if isinstance(spec, CaseSpec) else cls.model_validate(spec)
