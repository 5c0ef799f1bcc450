"""Commands on run directories: run the case matrix, compare runs, write reports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from harness.cli.common import (
    CaseTimeout,
    Cluster,
    ClusterConfig,
    Devices,
    Dtypes,
    MemoryLimit,
    NoFail,
    Out,
    Resume,
    Scheduler,
    Threads,
    Workers,
    app,
    case_limits,
    check_backends,
    check_devices_and_dtypes,
    check_number,
    check_run_options,
    console,
    err_console,
    execute_runner,
    execution_config,
    exit_status,
    fail,
    kick_count_list,
    load_scenarios,
    particle_count_list,
    point_latest,
    run_directory_for,
    run_particle_counts,
    split_list,
    thread_count_list,
    usable_out,
)
from harness.names import printable


@app.command()
def run(
    scenarios: Annotated[list[str] | None, typer.Argument(
        help="Bundled scenario names or files (default: all bundled).")] = None,
    backends: Annotated[str | None, typer.Option(
        help="Comma-separated backend ids or module:Class (default: all available).")] = None,
    particles: Annotated[str | None, typer.Option(
        help="Comma-separated particle counts, e.g. 1e3,1e4, or 'smallest' (each scenario "
        "at the smallest of its own counts; default: the scenario's, else 1e4,1e5).")] = None,
    device: Devices = "cpu",
    dtype: Dtypes = "float64",
    math: Annotated[str, typer.Option(
        help="Comma-separated math settings: ieee (the code as built) and fast (its "
        "compiler's fast-math flags, where the code offers them at run time; the others "
        "are unsupported with the reason).")] = "ieee",
    repeat: Annotated[int, typer.Option(help="Timed tracks per case, after one warm-up.")] = 5,
    timeout: CaseTimeout = 600.0,
    memory_limit: MemoryLimit = None,
    threads: Threads = None,
    out: Out = None,
    resume: Resume = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print each row as one JSON line; no progress bar or table.")] = False,
    report: Annotated[bool, typer.Option(
        help="Write the report (Markdown and HTML) into the run directory.")] = True,
    keep_particles: Annotated[bool, typer.Option(
        help="Keep the cached reference particles after a complete run.")] = False,
    no_fail: NoFail = False,
    write_particles: Annotated[str, typer.Option(
        help="none|openpmd: write the initial (per scenario and N) and final particles of "
        "every case to DIR/particles/ (not timed).")] = "none",
    workers: Workers = None,
    scheduler: Scheduler = None,
    cluster: Cluster = None,
    cluster_config: ClusterConfig = None,
) -> None:
    """Run the matrix scenario × backend × particles × device × dtype × math, each case in its
    own process; append every finished case to DIR/results.jsonl. Exits 1 when a case failed,
    timed out or ran out of memory (--no-fail: 0), 130 on Ctrl-C."""
    check_run_options(backends=backends, workers=workers, scheduler=scheduler,
                      cluster=cluster, memory_limit=memory_limit, timeout=timeout,
                      resume=resume, repeat=repeat)
    check_devices_and_dtypes(device, dtype)
    maths = math_list(math)
    counts = run_particle_counts(particles)
    thread_counts = thread_count_list(threads)
    execution = execution_config(workers, scheduler, cluster, cluster_config, thread_counts)
    from harness.io.particles_out import PARTICLE_FORMATS

    if write_particles not in PARTICLE_FORMATS:
        fail(f"--write-particles: expected one of {list(PARTICLE_FORMATS)} "
             f"(got {write_particles!r})")
    import json

    from backends.registry import available_backends
    from harness import metadata
    from harness.cases import plan, scenario_map
    from harness.display import CaseCount, progress_line, running_line
    from harness.runner import Runner

    started = metadata.now()
    loaded = load_scenarios(scenarios or [])
    available = available_backends()
    chosen = check_backends(backends, available)
    cases = plan(loaded, chosen, counts, split_list(device), split_list(dtype), repeat,
                 available, thread_counts, maths)
    directory = run_directory_for(out, resume)
    usable_out(directory)
    limits = case_limits(timeout, memory_limit)
    scenarios_by_label = scenario_map(loaded)
    runner = Runner(directory, limits, resume=resume is not None, fresh=resume is None)
    runner.write_particles = write_particles
    count = CaseCount(len(runner.pending(cases)),
                      slots=1 if execution.serial else execution.workers)

    def log_start(case, stream=sys.stderr) -> None:
        count.start()
        print(running_line(count, case.case_id), file=stream, flush=True)

    def log_progress(row: dict, stream=sys.stderr) -> None:
        count.finish()
        print(progress_line(count, row), file=stream, flush=True)

    if json_output:
        def on_row(row: dict) -> None:
            print(json.dumps(row, default=str), flush=True)
            log_progress(row)

        runner.on_row = on_row
        runner.on_start = log_start
        execute_runner(runner, cases, scenarios_by_label, directory, execution)
    elif not console.is_terminal:
        # a log: one flushed line per case started and finished
        runner.on_row = lambda row: log_progress(row, sys.stdout)
        runner.on_start = lambda case: log_start(case, sys.stdout)
        execute_runner(runner, cases, scenarios_by_label, directory, execution)
    else:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(count.prefix(), total=count.total)

            def on_start(case) -> None:
                count.start()
                progress.update(task, description=f"{count.prefix()} "
                                f"{printable(case.case_id)}")

            def on_row(row: dict) -> None:
                count.finish()
                progress.console.print(progress_line(count, row), highlight=False,
                                       markup=False, soft_wrap=True)
                progress.update(task, advance=1, description=count.prefix())

            runner.on_start = on_start
            runner.on_row = on_row
            execute_runner(runner, cases, scenarios_by_label, directory, execution)
    finish_run_directory(directory, runner, started)
    if not keep_particles:
        runner.clear_cache()
    from harness.report.terminal import end_of_run, run_reference_backend

    reference = run_reference_backend(directory)
    if report:
        try:
            from harness.report import write_report

            write_report([directory], directory / "report", formats=("md", "html"),
                         baseline=reference)
        except OSError as error:
            err_console.print(f"report not written: {error.strerror or error}",
                              highlight=False)
    if not json_output:
        settings = run_settings(particles, repeat, execution)
        console.print(end_of_run(directory, settings, reference,
                                 {case.case_id for case in cases}))
    exit_status(directory, cases, no_fail)


#: The values of ``--math``: ``backends.base.MATH_MODES``, written out so that a bad value
#: is refused before the backends are imported (a test checks that the two agree).
MATH_SETTINGS: tuple[str, ...] = ("ieee", "fast")


def math_list(value: str) -> list[str]:
    """The math settings of ``--math`` (each of :data:`MATH_SETTINGS` once, in the order
    given), or exit with one line saying what was expected."""
    parts = split_list(value)
    if not parts or any(part not in MATH_SETTINGS for part in parts):
        fail(f"--math: expected a comma-separated list of {list(MATH_SETTINGS)} "
             f"(got {value!r})")
    return list(dict.fromkeys(parts))


def finish_run_directory(directory: Path, runner: Any, started: str) -> None:
    """Write the run's metadata.json (with the runner's execution, ``started`` the ISO 8601
    UTC start) and point results/latest at the run; a file-system error is one line on
    stderr, not a failure of the run."""
    from harness import metadata

    try:
        metadata.write(directory, metadata.collect(sys.argv, started)
                       | {"execution": runner.execution})
        point_latest(directory)
    except OSError as error:
        err_console.print(f"metadata.json not written: {error.strerror or error}",
                          highlight=False)


def run_settings(particles: str | None, repeat: int, execution) -> str:
    """The settings of a run not in the summary's per-setting title (device, dtype and
    threads are): ``particles 1e3 · repeat 1 · serial``."""
    if execution.serial:
        where = "serial"
    elif execution.workers is not None:
        where = f"{execution.workers} workers"
    else:
        where = f"on {execution.scheduler or execution.cluster}"
    counts = ",".join(split_list(particles)) or "each scenario's"
    return f"particles {printable(counts)} · repeat {repeat} · {where}"


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="One run directory, or two (old new).")],
    threshold: Annotated[float, typer.Option(
        help="Slow-down that counts as a regression (0.1 = 10 %).")] = 0.1,
    fail_on_regression: Annotated[bool, typer.Option(
        help="Exit with status 1 when a regression is found.")] = False,
    rejudge: Annotated[bool, typer.Option(
        help="Judge one run's verdicts again from its stored deviations under today's "
        "tolerances (nothing re-run, nothing rewritten).")] = False,
) -> None:
    """Show one run's table, or two runs side by side with speed-ups and regressions."""
    from harness.compare import changed_verdicts, rejudged, side_by_side, summary
    from harness.display import cell, comparison_table, summary_table

    check_number(threshold, "--threshold", inclusive=True)
    for directory in runs:
        if not (directory / "results.jsonl").exists():
            fail(f"{directory}: no results.jsonl (not a run directory)")
    if rejudge:
        if len(runs) != 1:
            fail("--rejudge takes one run directory")
        frame = rejudged(runs[0])
        changed = changed_verdicts(frame)
        console.print(summary_table(frame, f"Run {cell(runs[0])} (verdicts judged again)"))
        for row in changed.itertuples(index=False):
            console.print(f"{cell(row.scenario)} {cell(row.backend)} N={row.particles} "
                          f"{cell(row.dtype)}: {cell(row.stored_verdict) or '-'} -> "
                          f"{cell(row.verdict) or '-'}", highlight=False)
        console.print(f"{len(changed)} verdict(s) changed", highlight=False)
        return
    if len(runs) == 1:
        console.print(summary_table(summary(runs[0]), f"Run {cell(runs[0])}"))
        return
    if len(runs) != 2:
        fail("compare takes one or two run directories")
    frame = side_by_side(runs[0], runs[1], threshold)
    console.print(comparison_table(frame, f"{runs[0]} -> {runs[1]}"))
    regressions = int(frame["regression"].sum())
    console.print(f"{regressions} regression(s) beyond {threshold:.0%}", highlight=False)
    if regressions and fail_on_regression:
        raise typer.Exit(1)


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(
        help="Run directories; several are concatenated (e.g. a CPU run and a GPU run).")],
    formats: Annotated[str, typer.Option(
        "--format", help="Comma-separated report formats: md,html,tex.")] = "md,html,tex",
    out: Annotated[Path | None, typer.Option(
        help="Report directory (default: the first run's DIR/report).")] = None,
    baseline: Annotated[str, typer.Option(
        help="Backend that speed-ups refer to.")] = "impactx",
) -> None:
    """Write the report of run directories: tables and plots; prints the paths written.

    Timing, agreement and gradient tables with a machine header (Markdown, LaTeX, one
    self-contained HTML file) and plots (PNG, SVG) under DIR/report or --out."""
    from harness.report import FORMATS, write_report

    for directory in runs:
        if not (directory / "results.jsonl").exists():
            fail(f"{directory}: no results.jsonl (not a run directory)")
    chosen = split_list(formats)
    if not chosen or any(f not in FORMATS for f in chosen):
        fail(f"--format: expected a comma-separated list of {FORMATS} (got {formats!r})")
    for path in write_report(runs, out or runs[0] / "report", chosen, baseline):
        console.print(str(path), highlight=False, soft_wrap=True)


@app.command()
def grad(
    scenarios: Annotated[list[str] | None, typer.Argument(
        help="Bundled scenario names or files (default: the bundled ones with a gradients "
        "block).")] = None,
    backends: Annotated[str | None, typer.Option(
        help="Comma-separated backend ids (default: all available; FD for every one, AD "
        "where the backend is differentiable).")] = None,
    particles: Annotated[str, typer.Option(
        help="Comma-separated particle counts, e.g. 1e3,1e4.")] = "1e4",
    device: Devices = "cpu",
    dtype: Dtypes = "float64",
    params: Annotated[str | None, typer.Option(
        help="Comma-separated parameters, e.g. qf.Kn1,beam.twiss.beta_x (default: the "
        "scenario's gradients block).")] = None,
    objective: Annotated[str | None, typer.Option(
        help="Objective observable at the lattice end (default: the scenario's).")] = None,
    fd_steps: Annotated[str | None, typer.Option(
        help="Comma-separated relative FD steps (default 1e-2,...,1e-10).")] = None,
    scaling: Annotated[bool, typer.Option(
        help="P-scaling: cases with the first 1, 4, 16, 64 quadrupoles' Kn1 as parameters "
        "(one FD step, 1e-5, unless --fd-steps).")] = False,
    kicks: Annotated[str | None, typer.Option(
        help="Comma-separated space-charge kicks per element, e.g. 5,10,20, replacing the "
        "scenario's kicks_per_element (one case variant each, labelled k<K>).")] = None,
    checkpoint: Annotated[str | None, typer.Option(
        help="Comma-separated none,kick: per-kick gradient checkpointing of the in-house "
        "space-charge tracker (one case variant each, 'kick' labelled ckpt).")] = None,
    repeat: Annotated[int, typer.Option(help="Timed repetitions of each method.")] = 3,
    timeout: CaseTimeout = 1800.0,
    memory_limit: MemoryLimit = None,
    threads: Threads = None,
    out: Out = None,
    resume: Resume = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print each row as one JSON line; no table.")] = False,
    no_fail: NoFail = False,
    workers: Workers = None,
    scheduler: Scheduler = None,
    cluster: Cluster = None,
    cluster_config: ClusterConfig = None,
) -> None:
    """Gradient accuracy and cost: reverse- and forward-mode AD and a finite-difference step
    sweep per parameter, against the forward-mode in-house fp64 reference; each case in its
    own process, rows appended to DIR/results.jsonl (kind ``gradient``)."""
    check_run_options(backends=backends, workers=workers, scheduler=scheduler,
                      cluster=cluster, memory_limit=memory_limit, timeout=timeout,
                      resume=resume, repeat=repeat)
    import json

    from backends.registry import available_backends
    from harness import gradients, metadata
    from harness.display import CaseCount, progress_line, running_line
    from harness.model.vocabulary import Status
    from harness.results import read_rows
    from harness.runner import Runner

    started = metadata.now()
    check_number(repeat, "--repeat", minimum=1, inclusive=True, whole=True)
    if scenarios:
        loaded = load_scenarios(scenarios)
    else:
        loaded = [s for s in load_scenarios([]) if s.gradients is not None]
    chosen = check_backends(backends, available_backends())
    check_devices_and_dtypes(device, dtype)
    try:
        steps = [float(s) for s in split_list(fd_steps)] or None
    except ValueError:
        fail(f"--fd-steps: expected numbers like 1e-4,1e-6 (got {fd_steps!r})")
    for step in steps or []:
        check_number(step, "--fd-steps")
    try:
        from harness.model.parameters import resolve_parameter
        from harness.model.scenario import observable_names

        if objective and objective not in observable_names():
            fail(f"--objective: an observable name, e.g. sigma_x (got {objective!r})")
        for scenario in loaded if not scaling else []:
            options = gradients.gradient_options(scenario, split_list(params), objective, steps)
            for name in options["parameters"]:
                try:
                    resolve_parameter(scenario, name)
                except KeyError as error:
                    fail(f"--params: {name!r} in scenario {scenario.name}: expected "
                         f"{error.args[0]}")
        kick_counts = kick_count_list(kicks)
        checkpoints = split_list(checkpoint) or None
        for mode in checkpoints or []:
            if mode not in gradients.CHECKPOINTS:
                fail(f"--checkpoint: a comma-separated list of {list(gradients.CHECKPOINTS)} "
                     f"(got {mode!r})")
        if kick_counts or checkpoints:
            for scenario in loaded:
                if scenario.space_charge is None:
                    fail(f"--kicks/--checkpoint: {scenario.name} has no space charge")
        cases = gradients.plan_gradient_cases(
            loaded, chosen, particle_count_list(particles), split_list(device),
            split_list(dtype), repeat, split_list(params) or None, objective, steps, scaling,
            thread_count_list(threads), kick_counts, checkpoints)
    except (KeyError, ValueError) as error:
        fail(str(error.args[0]) if error.args else str(error))
    directory = run_directory_for(out, resume)
    usable_out(directory)
    runner = Runner(directory, case_limits(timeout, memory_limit), resume=resume is not None,
                    fresh=resume is None)
    execution = execution_config(workers, scheduler, cluster, cluster_config,
                                 thread_count_list(threads))
    count = CaseCount(len(runner.pending(cases)),
                      slots=1 if execution.serial else execution.workers)
    finished: set[str | None] = set()

    def progress(row: dict) -> None:
        case_id = row.get("case_id")
        if case_id not in finished:  # one line per case (the first of its rows)
            finished.add(case_id)
            count.finish()
            print(progress_line(count, row),
                  file=sys.stderr if json_output else sys.stdout, flush=True)

    def on_start(case) -> None:
        count.start()
        if not json_output:
            console.print(f"{running_line(count, case.case_id)} "
                          f"({len(case.options['parameters'])} parameters)",
                          highlight=False, markup=False)

    runner.on_start = on_start
    if json_output:
        def on_row(row: dict) -> None:
            print(json.dumps(row, default=str), flush=True)
            progress(row)

        runner.on_row = on_row
    else:
        runner.on_row = progress
    execute_runner(runner, cases, loaded, directory, execution)
    finish_run_directory(directory, runner, started)
    runner.clear_cache()
    if json_output:
        exit_status(directory, cases, no_fail)
        return
    ids = {c.case_id for c in cases}
    table = Table(title=f"Gradients {directory} (relative errors vs the reference)")
    columns = ("scenario", "backend", "particles", "dtype", "variant", "n_params", "parameter",
               "reverse", "forward", "best_fd_step", "best_fd_error", "gradient_over_forward",
               "fd_over_gradient", "backward_peak_mb", "status")
    headers = ("scenario", "backend", "N", "dtype", "variant", "P", "parameter", "reverse",
               "forward", "best FD step", "best FD error", "gradient / forward",
               "FD / gradient", "backward peak \\[MB]", "status")
    for header in headers:
        table.add_column(header, overflow="fold")
    for line in gradients.summary_rows([r for r in read_rows(directory)
                                        if r.get("case_id") in ids]):
        cells = [line.get(c) for c in columns]
        if line.get("status") != Status.OK:
            cells[-1] = f"{line['status']}: {line['reason']}"
        table.add_row(*("-" if v is None else f"{v:.2e}" if isinstance(v, float) else str(v)
                        for v in cells))
    console.print(table)
    console.print(f"results: {directory}/results.jsonl, results.csv, metadata.json",
                  highlight=False)
    exit_status(directory, cases, no_fail)
