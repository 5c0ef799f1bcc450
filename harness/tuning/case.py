"""Tuning cases: one problem × method × backend, each in its own process.

Planning (:func:`plan_tuning_cases`) makes :class:`harness.cases.Case` objects of kind
``tuning``; :func:`run_tuning` runs them with :class:`harness.runner.Runner`, so a tuning
case has exactly the time limit, memory limit, statuses, result rows, resumption and
crash handling of ``trackbench run``. In the child process (``harness.child`` hands a spec
of kind ``tuning`` to :func:`tuning_case`) the method runs on the backend's objective and
every evaluation is appended to the case's trace file, ``DIR/traces/<case>.jsonl``, as it
happens; a case that crashes or times out keeps its trace up to the last evaluation.

Which objective a case uses: gradient methods the backend's differentiable objective
(:class:`harness.tuning.objective.Differentiable`), gradient-free methods the black-box
track of a scenario copy (:class:`harness.tuning.objective.BlackBox`) on every backend,
the differentiable ones included, so that every gradient-free case pays the same kind of
evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.case_spec import CaseSpec
from harness.case_support import Clock
from harness.cases import Case, cache_name
from harness.model.tuning import TuningProblem, exact_moment_particles
from harness.model.tuning_problems import problems
from harness.model.vocabulary import Status
from harness.tuning.methods import METHODS

if TYPE_CHECKING:
    from harness.tuning.objective import TuningObjective

#: Folder of the per-case trace files inside a run directory.
TRACE_DIR = "traces"


def trace_file(case_id: str) -> str:
    """Path of a case's trace file relative to the run directory."""
    return f"{TRACE_DIR}/{cache_name(case_id)}.jsonl"


def case_label(problem_label: str, method: str, workers: int = 1) -> str:
    """The variant part of a tuning case id: ``<method>`` or ``P<size>-<method>``, with
    ``-w<K>`` appended for K evaluation workers."""
    label = f"{problem_label}-{method}" if problem_label else method
    return label + (f"-w{workers}" if workers > 1 else "")


def parse_case_label(label: str) -> tuple[str, str, int]:
    """``(problem label, method, evaluation workers)`` of :func:`case_label`'s label."""
    size, _, rest = label.partition("-")
    problem, method = ((size, rest) if size.startswith("P") and size[1:].isdigit() and rest
                       else ("", label))
    stem, _, count = method.rpartition("-w")
    if stem and count.isdigit():
        return problem, stem, int(count)
    return problem, method, 1


def plan_tuning_cases(scenarios: Sequence[Any], backends: Sequence[str],
                      methods: Sequence[str], particles: int | None, device: str,
                      dtype: str, threads: int | None, directory: Path,
                      evaluation_workers: int = 1) -> list[Case]:
    """Every scenario problem (size variant) × method × backend, as cases of kind tuning;
    ``evaluation_workers`` > 1 gives the cases of a ``parallel`` method an evaluation pool
    of that many workers (:class:`harness.execution.cluster.EvaluationPool`)."""
    cases = []
    for scenario in scenarios:
        count = particles or scenario.tuning.particles or scenario.beam.particles
        for problem in problems(scenario):
            for method in methods:
                for backend in backends:
                    workers = evaluation_workers if METHODS[method].parallel else 1
                    label = case_label(problem.label, method, workers)
                    options: dict[str, Any] = {"label": label, "method": method,
                                               "problem": problem.label}
                    if workers > 1:
                        options["evaluation_workers"] = int(workers)
                    case = Case(scenario.name, str(scenario.source_file or scenario.name),
                                backend, int(count), device, dtype, repeat=1,
                                threads=threads, kind="tuning", options=options)
                    path = Path(directory).absolute() / trace_file(case.case_id)
                    cases.append(case.replace(options={**case.options,
                                                       "trace_path": str(path)}))
    return cases


def tuning_runner(directory: Path, limits, resume: bool = False,
                  on_row: Callable[[dict], None] | None = None,
                  on_start: Callable[[Case], None] | None = None):
    """The :class:`harness.runner.Runner` of a tuning run (its trace folder made)."""
    from harness.runner import Runner

    (Path(directory) / TRACE_DIR).mkdir(parents=True, exist_ok=True)
    return Runner(directory, limits, resume=resume, on_row=on_row, on_start=on_start)


def run_tuning(cases: Sequence[Case], scenarios: dict[str, Any], directory: Path,
               limits, resume: bool = False,
               on_row: Callable[[dict], None] | None = None,
               on_start: Callable[[Case], None] | None = None) -> list[dict[str, Any]]:
    """Run the tuning cases here, one after the other; the stored rows."""
    runner = tuning_runner(directory, limits, resume, on_row, on_start)
    rows = runner.run(cases, scenarios)
    runner.clear_cache()
    return rows


def _warm_up(value: Callable[[np.ndarray], float], start: np.ndarray) -> None:
    """One evaluation in a pool worker before the clock starts (imports, caches)."""
    value(start)


def _problem(scenario, label: str) -> TuningProblem:
    for problem in problems(scenario):
        if problem.label == label:
            return problem
    raise ValueError(f"scenario {scenario.name} has no tuning problem {label!r}")


def initial_particles(spec: CaseSpec, scenario) -> np.ndarray:
    """The case's initial particles (the scenario's seeded draw, as for every case kind),
    moved to the nominal moments when the block asks for ``exact_moments``."""
    from harness.case_support import initial_particles as drawn
    from harness.model.particles import beam_cholesky

    particles = drawn(spec, scenario)
    if scenario.tuning.exact_moments:
        centroid = scenario.beam.centroid
        particles = exact_moment_particles(particles, beam_cholesky(scenario.beam),
                                           None if centroid is None else centroid.vector())
    return particles


def target_fields(objective: TuningObjective) -> dict[str, Any]:
    """``reached``, ``evaluations_to_target`` and ``time_to_target_s`` of a finished
    optimisation: reached exactly when the reported (best) point meets the tolerance
    (:attr:`TuningObjective.reached`; a batch may have moved the best past it after an
    earlier point met it), the other two then from the evaluation that first made it so."""
    at = objective.reached_at if objective.reached else None
    return {"reached": at is not None, "evaluations_to_target": at[0] if at else None,
            "time_to_target_s": at[1] if at else None}


def tuning_case(spec: CaseSpec | dict[str, Any], clock: Clock | None = None
                ) -> list[dict[str, Any]]:
    """The row of one tuning case (see :data:`harness.tuning.rows.TUNING`); ``clock`` counts
    from the start of the case's process (:class:`harness.case_support.Clock`)."""
    from harness.case_support import load, peak_rss_bytes, set_threads
    from harness.tuning.objective import BlackBox, Differentiable, TuningObjective, observables_of

    spec = CaseSpec.coerce(spec)
    clock = clock or Clock.since(spec.launched_at)
    set_threads(spec.threads)
    options = spec.options
    loaded = load(spec)  # the parent's plan of the case (support decided once), else one here
    scenario, backend, support = loaded.scenario, loaded.backend, loaded.support
    problem = _problem(scenario, options.get("problem", ""))
    method = METHODS[options["method"]]
    row: dict[str, Any] = {
        "versions": loaded.versions, "method": method.name,
        "family": method.family, "library": method.library, "problem": problem.label,
        "n_params": problem.size, "parameters": list(problem.names),
        "budget": problem.budget(method.name), "trace_file": trace_file(spec.case_id),
        "tolerance_objective": problem.block.tolerance.objective,
        "tolerance_parameters": problem.block.tolerance.parameters,
        "start_distance": problem.distance(problem.start)}
    row["backend_version"] = row["versions"].get(loaded.backend_class.distribution)
    if loaded.unsupported:
        return [row | {"status": Status.UNSUPPORTED.value, "reason": support.reason}]
    row["model"] = support.model
    if method.max_parameters is not None and problem.size > method.max_parameters:
        return [row | {"status": Status.UNSUPPORTED.value, "reason": (
            f"{method.name} is run up to {method.max_parameters} parameters "
            f"(this problem has {problem.size})")}]
    row["import_s"] = clock.elapsed()
    setup_started = time.perf_counter()
    device, dtype = spec.device, spec.dtype
    initial = initial_particles(spec, scenario)
    initial_observables = observables_of(initial, list(problem.block.targets),
                                         scenario.reference_particle)
    value = gradient = None
    if method.needs_gradient:
        differentiable = Differentiable.build(backend, support, problem, initial,
                                              initial_observables, device, dtype)
        if differentiable is None:
            return [row | {"status": Status.UNSUPPORTED.value, "reason": (
                f"{method.name} needs the reverse-mode AD gradient; {spec.backend} gives "
                "none")}]
        gradient = differentiable.value_and_gradient
        gradient(problem.start)  # warm-up: caches, compilation, the first backward
    else:
        value = BlackBox(backend, support, problem, initial, initial_observables, device,
                         dtype)
        value(problem.start)  # warm-up: caches, compilation
    workers = int(options.get("evaluation_workers", 1))
    row["evaluation_workers"] = workers
    with ExitStack() as stack:
        pool = None
        if workers > 1:
            from harness.execution.cluster import EvaluationPool

            pool = stack.enter_context(EvaluationPool(workers))
            pool.on_every_worker(_warm_up, value, problem.start)
            row["evaluation_notes"] = "; ".join(pool.notes)
        setup_s = time.perf_counter() - setup_started
        trace_path = Path(options["trace_path"])
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        with trace_path.open("w", encoding="utf-8") as trace:
            objective = TuningObjective(problem, problem.budget(method.name), value,
                                        gradient, trace, pool)
            objective.start_clock()
            message = method.run(objective, problem)
    best = objective.best_x
    return [row | {
        "status": Status.OK.value, "reason": "", "stop": message, "setup_s": setup_s,
        "evaluations": objective.evaluations,
        "gradient_evaluations": objective.gradient_evaluations,
        "optimise_s": objective.elapsed} | target_fields(objective) | {
        "best_objective": objective.best_value,
        "final_parameters": dict(zip(problem.names, (float(v) for v in best), strict=True)),
        "final_distance": problem.distance(best),
        "peak_rss_bytes": peak_rss_bytes()}]
