"""``trackbench tune``: the tuning benchmark from the command line."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from harness.cli.common import (
    CaseTimeout,
    Cluster,
    ClusterConfig,
    Device,
    Dtype,
    MemoryLimit,
    Out,
    Resume,
    Scheduler,
    Workers,
    app,
    case_limits,
    check_backends,
    check_devices_and_dtypes,
    check_run_options,
    console,
    execute_runner,
    execution_config,
    fail,
    point_latest,
    run_directory_for,
    split_list,
)
from harness.model.errors import ScenarioError
from harness.tuning.scenarios import load_tuning_scenario, tuning_names


@app.command()
def tune(
    scenarios: Annotated[list[str] | None, typer.Argument(
        help="Tuning scenarios: bundled names (lattices/tuning/) or files with a tuning "
        "block (default: every bundled one).")] = None,
    methods: Annotated[str | None, typer.Option(
        help="Comma-separated methods (default: all of the registry).")] = None,
    backends: Annotated[str | None, typer.Option(
        help="Comma-separated backend ids (default: all available).")] = None,
    problems: Annotated[str | None, typer.Option(
        help="Comma-separated size variants to run, e.g. P4,P64 (default: all).")] = None,
    particles: Annotated[int | None, typer.Option(
        help="Macro-particles per evaluation (default: the block's, else the beam's).")] = None,
    device: Device = "cpu",
    dtype: Dtype = "float64",
    threads: Annotated[int | None, typer.Option(
        help="Threads per case (default: all the process is given).")] = None,
    timeout: CaseTimeout = 900.0,
    memory_limit: MemoryLimit = None,
    out: Out = None,
    resume: Resume = None,
    report: Annotated[bool, typer.Option(
        help="Write the tuning report (DIR/report/tuning.md and plots).")] = True,
    evaluation_workers: Annotated[int, typer.Option(
        help="Evaluations at once within a case, for the methods that propose several "
        "points per step (xopt-bo): a local Dask cluster of that many pinned single-core "
        "workers per case.")] = 1,
    workers: Workers = None,
    scheduler: Scheduler = None,
    cluster: Cluster = None,
    cluster_config: ClusterConfig = None,
) -> None:
    """Tune beamlines with gradient-based and gradient-free methods: every problem ×
    method × backend in its own process; rows in DIR/results.jsonl (kind ``tuning``),
    every evaluation in DIR/traces/."""
    check_run_options(backends=backends, workers=workers, scheduler=scheduler,
                      cluster=cluster, memory_limit=memory_limit, timeout=timeout,
                      resume=resume)
    from backends.registry import available_backends
    from harness import metadata
    from harness.tuning.case import plan_tuning_cases, tuning_runner
    from harness.tuning.methods import METHODS
    from harness.tuning.report import summary_frame, write_tuning_report

    started = metadata.now()
    try:
        loaded = [load_tuning_scenario(n) for n in (scenarios or tuning_names())]
    except ScenarioError as error:
        fail(str(error))
    chosen_methods = split_list(methods) or list(METHODS)
    for name in chosen_methods:
        if name not in METHODS:
            fail(f"--methods: expected names from {list(METHODS)} (got {name!r})")
    chosen = check_backends(backends, available_backends())
    check_devices_and_dtypes(device, dtype)
    if device not in ("cpu", "cuda") or dtype not in ("float64", "float32"):
        fail("--device/--dtype: one value each (cpu or cuda, float64 or float32)")
    if particles is not None and particles < 1:
        fail(f"--particles: a positive whole number (got {particles})")
    if evaluation_workers < 1:
        fail(f"--evaluation-workers: a positive whole number (got {evaluation_workers})")
    directory = run_directory_for(out, resume)
    cases = plan_tuning_cases(loaded, chosen, chosen_methods, particles, device, dtype,
                              threads, directory, evaluation_workers)
    wanted = split_list(problems)
    if wanted:
        known = sorted({c.options["problem"] for c in cases if c.options["problem"]})
        for name in wanted:
            if name not in known:
                fail(f"--problems: expected size variants from {known} (got {name!r})")
        cases = [c for c in cases if c.options["problem"] in wanted]

    def started_case(case) -> None:
        from harness.names import printable

        console.print(printable(case.case_id), highlight=False, markup=False)

    runner = tuning_runner(directory, case_limits(timeout, memory_limit),
                           resume=resume is not None, on_start=started_case)
    execute_runner(runner, cases, {s.name: s for s in loaded}, directory,
                   execution_config(workers, scheduler, cluster, cluster_config, [threads]))
    runner.clear_cache()
    metadata.write(directory, metadata.collect(sys.argv, started)
                   | {"execution": runner.execution})
    point_latest(directory)
    if report:
        write_tuning_report([directory], directory / "report")
    frame = summary_frame([directory])
    if not frame.empty:
        console.print(frame.to_string(index=False), highlight=False, soft_wrap=True)
    console.print(f"results: {directory}/results.jsonl, traces/", highlight=False)
