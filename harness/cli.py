"""The ``trackbench`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import ScenarioError

if TYPE_CHECKING:
    from harness.runner import Limits

app = typer.Typer(
    help="Run one beamline description through several tracking codes; compare speed, "
    "agreement and gradients.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
#: Tables printed to a pipe or a CI log keep their columns readable (rich uses 80 otherwise).
console = Console(width=None if sys.stdout.isatty() else 180)
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit (no traceback for bad input)."""
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command("list")
def list_command() -> None:
    """Show the bundled scenarios and the backends with their availability."""
    from backends.registry import backend_classes
    from harness.scenario import bundled_names, load_scenario

    rows = []
    for name in bundled_names():
        try:
            scenario = load_scenario(name)
        except ScenarioError as error:
            rows.append((name, "invalid", "", "", "", str(error)))
            continue
        sc = scenario.space_charge.kind if scenario.space_charge else "-"
        rows.append((name, "+".join(scenario.tiers), sc, str(len(scenario.elements)),
                     f"{scenario.length:g}", scenario.reference))
    table = Table(title="Bundled scenarios (lattices/)")
    for index, column in enumerate(("name", "model", "space charge", "elements", "length \\[m]",
                                    "reference")):
        # name and model are never cut (the name is what `track` takes); other cells wrap
        whole = index < 2
        table.add_column(column, overflow="fold", no_wrap=whole,
                         min_width=max((len(r[index]) for r in rows), default=4) if whole
                         else None)
    for row in rows:
        table.add_row(*row)
    console.print(table)

    table = Table(title="Backends")
    for column in ("backend", "available", "version", "differentiable", "note"):
        table.add_column(column)
    for name, cls in backend_classes().items():
        availability = cls.availability()
        table.add_row(name, "yes" if availability.available else "[red]no[/red]",
                      availability.version or "-", "yes" if cls.differentiable else "no",
                      availability.hint)
    console.print(table)


@app.command()
def validate(
    files: Annotated[list[str], typer.Argument(help="Scenario files or bundled names.")],
) -> None:
    """Validate scenario files: prints ``OK <file>`` or the error; exits non-zero on errors."""
    from harness.scenario import load_scenario

    failures = 0
    for file in files:
        try:
            load_scenario(file)
            console.print(f"OK {escape(file)}", highlight=False, soft_wrap=True)
        except ScenarioError as error:
            failures += 1
            err_console.print(f"[red]INVALID[/red] {escape(str(error))}", highlight=False,
                              soft_wrap=True)
    if failures:
        raise typer.Exit(1)


@app.command()
def track(
    scenario: Annotated[str, typer.Argument(help="Bundled scenario name or file.")],
    backend: Annotated[str, typer.Option(help="Backend id (see `trackbench list`).")] = "inhouse",
    particles: Annotated[float, typer.Option(help="Number of particles.")] = 1e4,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="float64 or float32.")] = "float64",
) -> None:
    """Track a scenario once with one backend and print the final observables."""
    import numpy as np

    from backends.registry import get_backend
    from harness import observables
    from harness.particles import generate
    from harness.scenario import load_scenario

    try:
        loaded = load_scenario(scenario)
        chosen = get_backend(backend)
    except (ScenarioError, KeyError) as error:
        fail(str(error.args[0] if isinstance(error, KeyError) else error))
    availability = chosen.availability()
    if not availability.available:
        fail(f"backend {backend} is not available: {availability.hint}")
    verdict = chosen.supports(loaded, device, dtype)
    if not verdict:
        fail(f"unsupported: {verdict.reason}", code=3)
    base_dir = Path(loaded.source_file).parent if loaded.source_file else None
    initial = generate(loaded.beam, int(particles), base_dir=base_dir)
    with chosen.prepare_single_use(loaded, device, dtype) as prepared:
        final = prepared.track(initial)
        model = prepared.model
    reference = loaded.reference_particle
    before = observables.compute_for(initial, loaded.observables, reference)
    after = observables.compute_for(final, loaded.observables, reference)
    table = Table(title=f"{loaded.name} | {backend} {availability.version} | model {model} | "
                  f"N={len(initial)} | {device} {dtype}")
    for column in ("observable", "initial", "final"):
        table.add_column(column)
    for name in loaded.observables:
        table.add_row(name, f"{float(before[name]):.10e}", f"{float(after[name]):.10e}")
    console.print(table)
    if not np.all(np.isfinite(final)):
        fail("non-finite final coordinates", code=4)


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _positive_whole_numbers(value: str | None, option: str, example: str) -> list[int]:
    """The comma-separated positive whole numbers of ``option`` (empty when not given)."""
    numbers = []
    for part in _split(value):
        if not part.isdigit() or int(part) < 1:
            fail(f"{option}: expected positive whole numbers like {example} (got {part!r})")
        numbers.append(int(part))
    return numbers


def _kicks(value: str | None) -> list[int] | None:
    """Kicks per element of ``--kicks`` (None when not given)."""
    return _positive_whole_numbers(value, "--kicks", "5,10,20") or None


def _thread_counts(value: str | None) -> list[int | None]:
    """Thread counts of ``--threads``; ``all`` (or nothing) is None: all the process is
    given."""
    counts: list[int | None] = []
    for part in _split(value):
        counts.append(None if part == "all" else
                      _positive_whole_numbers(part, "--threads", "all,1 or 1,2")[0])
    return counts or [None]


def _counts(value: str | None) -> list[int]:
    counts = []
    for part in _split(value):
        try:
            number = float(part)
        except ValueError:
            fail(f"--particles: expected numbers like 1e4,1e5 (got {part!r})")
        if number < 1 or number != int(number):
            fail(f"--particles: expected positive whole numbers (got {part!r})")
        counts.append(int(number))
    return counts


def _load_scenarios(names: list[str]):
    from harness.scenario import bundled_names, load_scenario

    try:
        return [load_scenario(name) for name in (names or bundled_names())]
    except ScenarioError as error:
        fail(str(error))


def _default_out() -> Path:
    from datetime import UTC, datetime

    from harness.scenario import BUNDLED_DIR

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return BUNDLED_DIR.parent / "results" / "runs" / stamp


def _point_latest(out: Path) -> None:
    """Make ``results/latest`` a link to the newest run directory under ``results/``."""
    from harness.scenario import BUNDLED_DIR

    results_dir = BUNDLED_DIR.parent / "results"
    try:
        relative = out.resolve().relative_to(results_dir.resolve())
    except ValueError:
        return
    latest = results_dir / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(relative, target_is_directory=True)


def _check_backends(backends: str | None, available: list[str]) -> list[str]:
    """The backends of ``--backends`` (default: all available); exits on an unknown one."""
    from backends.registry import load_backend_class

    chosen = _split(backends) or available
    for name in chosen:
        try:
            load_backend_class(name)
        except KeyError as error:
            fail(str(error.args[0]))
    return chosen


def _check_devices_and_dtypes(device: str, dtype: str) -> None:
    """Exit with a clear message unless ``--device``/``--dtype`` name known values."""
    for value, allowed, option in ((device, ("cpu", "cuda"), "--device"),
                                   (dtype, ("float64", "float32"), "--dtype")):
        for part in _split(value):
            if part not in allowed:
                fail(f"{option}: expected a comma-separated list of {allowed} (got {part!r})")


def _run_directory(out: Path | None, resume: Path | None) -> Path:
    """The run directory: ``--resume`` DIR, ``--out`` DIR (which must not hold results yet)
    or a new time-stamped one."""
    directory = resume or out or _default_out()
    if resume is None and (directory / "results.jsonl").exists():
        fail(f"{directory} already holds results; continue it with --resume {directory} "
             "or choose another --out")
    return directory


def _limits(timeout: float, memory_limit: float | None) -> Limits:
    """Per-case limits: ``timeout`` [s] and ``memory_limit`` [GiB] (default: 90 % of RAM)."""
    import psutil

    from harness.runner import Limits

    cap = (int(memory_limit * 2**30) if memory_limit
           else int(0.9 * psutil.virtual_memory().total))
    return Limits(timeout_s=timeout, memory_bytes=cap)


Devices = Annotated[str, typer.Option("--device", help="Comma-separated: cpu,cuda.")]
Dtypes = Annotated[str, typer.Option("--dtype", help="Comma-separated: float64,float32.")]
MemoryLimit = Annotated[float | None, typer.Option(
    help="Resident-memory limit per case [GiB] (default: 90% of this machine's).")]
Threads = Annotated[str | None, typer.Option(
    help="Threads per case, comma-separated for a per-core comparison, e.g. all,1 "
    "(default: all, every thread the process is given).")]
Out = Annotated[Path | None, typer.Option(
    help="Run directory (default: results/runs/<UTC time>).")]
Resume = Annotated[Path | None, typer.Option(
    help="Continue an interrupted run in this directory, skipping finished cases.")]


@app.command()
def run(
    scenarios: Annotated[list[str] | None, typer.Argument(
        help="Bundled scenario names or files (default: all bundled).")] = None,
    backends: Annotated[str | None, typer.Option(
        help="Comma-separated backend ids or module:Class (default: all available).")] = None,
    particles: Annotated[str | None, typer.Option(
        help="Comma-separated particle counts, e.g. 1e3,1e4 (default: the scenario's, "
        "else 1e4,1e5).")] = None,
    device: Devices = "cpu",
    dtype: Dtypes = "float64",
    repeat: Annotated[int, typer.Option(help="Timed tracks per case, after one warm-up.")] = 5,
    timeout: Annotated[float, typer.Option(help="Time limit per case [s].")] = 600.0,
    memory_limit: MemoryLimit = None,
    threads: Threads = None,
    out: Out = None,
    resume: Resume = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print each row as one JSON line; no progress bar or table.")] = False,
    report: Annotated[bool, typer.Option(
        help="Write the report (Markdown and HTML) into the run directory.")] = True,
    keep_particles: Annotated[bool, typer.Option(
        help="Keep the cached initial/reference particles after a complete run.")] = False,
) -> None:
    """Run the matrix scenario × backend × particles × device × dtype, each case in its own
    process; append every finished case to DIR/results.jsonl."""
    import json

    from backends.registry import available_backends
    from harness import metadata
    from harness.cases import plan
    from harness.compare import summary
    from harness.display import summary_table
    from harness.runner import Runner

    started = metadata.now()
    loaded = _load_scenarios(scenarios or [])
    available = available_backends()
    chosen = _check_backends(backends, available)
    _check_devices_and_dtypes(device, dtype)
    cases = plan(loaded, chosen, _counts(particles), _split(device), _split(dtype), repeat,
                 available, _thread_counts(threads))
    directory = _run_directory(out, resume)
    limits = _limits(timeout, memory_limit)
    scenario_map = {s.name: s for s in loaded}
    runner = Runner(directory, limits, resume=resume is not None)
    pending = runner.pending(cases)
    if json_output:
        runner.on_row = lambda row: print(json.dumps(row, default=str), flush=True)
        runner.run(cases, scenario_map)
    else:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("cases", total=len(pending))
            runner.on_start = lambda case: progress.update(
                task, description=f"{case.scenario} {case.backend} N={case.particles} "
                f"{case.device} {case.dtype}")
            runner.on_row = lambda row: progress.advance(task)
            runner.run(cases, scenario_map)
    metadata.write(directory, metadata.collect(sys.argv, started))
    _point_latest(directory)
    if not keep_particles:
        runner.clear_cache()
    if report:
        try:
            from harness.report import write_report
        except ImportError:
            write_report = None
        if write_report is not None:
            write_report([directory], directory / "report", formats=("md", "html"))
    if not json_output:
        console.print(summary_table(summary(directory), f"Run {directory}"))
        console.print(f"results: {directory}/results.jsonl, results.csv, metadata.json",
                      highlight=False)


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="One run directory, or two (old new).")],
    threshold: Annotated[float, typer.Option(
        help="Slow-down that counts as a regression (0.1 = 10 %).")] = 0.1,
    fail_on_regression: Annotated[bool, typer.Option(
        help="Exit with status 1 when a regression is found.")] = False,
) -> None:
    """Show one run's table, or two runs side by side with speed-ups and regressions."""
    from harness.compare import side_by_side, summary
    from harness.display import comparison_table, summary_table

    for directory in runs:
        if not (directory / "results.jsonl").exists():
            fail(f"{directory}: no results.jsonl (not a run directory)")
    if len(runs) == 1:
        console.print(summary_table(summary(runs[0]), f"Run {runs[0]}"))
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
    chosen = _split(formats)
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
    timeout: Annotated[float, typer.Option(help="Time limit per case [s].")] = 1800.0,
    memory_limit: MemoryLimit = None,
    threads: Threads = None,
    out: Out = None,
    resume: Resume = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print each row as one JSON line; no table.")] = False,
) -> None:
    """Gradient accuracy and cost: reverse- and forward-mode AD and a finite-difference step
    sweep per parameter, against the forward-mode in-house fp64 reference; each case in its
    own process, rows appended to DIR/results.jsonl (kind ``gradient``)."""
    import json

    from backends.registry import available_backends
    from harness import gradients, metadata
    from harness.results import read_rows
    from harness.runner import Runner

    started = metadata.now()
    if scenarios:
        loaded = _load_scenarios(scenarios)
    else:
        loaded = [s for s in _load_scenarios([]) if s.gradients is not None]
    chosen = _check_backends(backends, available_backends())
    _check_devices_and_dtypes(device, dtype)
    try:
        steps = [float(s) for s in _split(fd_steps)] or None
    except ValueError:
        fail(f"--fd-steps: expected numbers like 1e-4,1e-6 (got {fd_steps!r})")
    try:
        from harness.parameters import resolve_parameter
        from harness.scenario import observable_names

        if objective and objective not in observable_names():
            fail(f"--objective: an observable name, e.g. sigma_x (got {objective!r})")
        for scenario in loaded if not scaling else []:
            options = gradients.gradient_options(scenario, _split(params), objective, steps)
            for name in options["parameters"]:
                try:
                    resolve_parameter(scenario, name)
                except KeyError as error:
                    fail(f"--params: {name!r} in scenario {scenario.name}: expected "
                         f"{error.args[0]}")
        kick_counts = _kicks(kicks)
        checkpoints = _split(checkpoint) or None
        for mode in checkpoints or []:
            if mode not in gradients.CHECKPOINTS:
                fail(f"--checkpoint: a comma-separated list of {list(gradients.CHECKPOINTS)} "
                     f"(got {mode!r})")
        if kick_counts or checkpoints:
            for scenario in loaded:
                if scenario.space_charge is None:
                    fail(f"--kicks/--checkpoint: {scenario.name} has no space charge")
        cases = gradients.plan_gradient_cases(
            loaded, chosen, _counts(particles), _split(device), _split(dtype), repeat,
            _split(params) or None, objective, steps, scaling, _thread_counts(threads),
            kick_counts,
            checkpoints)
    except (KeyError, ValueError) as error:
        fail(str(error.args[0]) if error.args else str(error))
    directory = _run_directory(out, resume)
    runner = Runner(directory, _limits(timeout, memory_limit), resume=resume is not None)
    if json_output:
        runner.on_row = lambda row: print(json.dumps(row, default=str), flush=True)
    else:
        runner.on_start = lambda case: console.print(
            f"{case.case_id} ({len(case.options['parameters'])} parameters)", highlight=False)
    runner.run(cases, {s.name: s for s in loaded})
    metadata.write(directory, metadata.collect(sys.argv, started))
    _point_latest(directory)
    runner.clear_cache()
    if json_output:
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
        if line.get("status") != "ok":
            cells[-1] = f"{line['status']}: {line['reason']}"
        table.add_row(*("-" if v is None else f"{v:.2e}" if isinstance(v, float) else str(v)
                        for v in cells))
    console.print(table)
    console.print(f"results: {directory}/results.jsonl, results.csv, metadata.json",
                  highlight=False)


asv_app = typer.Typer(help="The asv suite (benchmarks/): run, compare, publish and check the "
                      "dashboard (results/asv, results/html).", no_args_is_help=True)
app.add_typer(asv_app, name="asv")
AsvConfig = Annotated[Path | None, typer.Option(
    "--config", help="asv configuration (default: asv.conf.json of the repository).")]
AsvBench = Annotated[str | None, typer.Option(
    "--bench", "-b", help="Regular expression selecting benchmarks.")]
AsvFactor = Annotated[float, typer.Option(
    help="Slow-down factor that counts as a regression (1.5: 50 % slower).")]


def _asv_config(config: Path | None) -> Path:
    from harness.asv_tools import CONFIG

    return config or CONFIG


def _asv_gate(base: str | None, head: str | None, factor: float, config: Path) -> int:
    """Print the time/peakmem regressions of head vs base; 1 when there are any."""
    from harness import asv_tools

    head = head or asv_tools.head_commit()
    machine = asv_tools.machine_name()
    base = base or asv_tools.previous_commit(asv_tools.config_path(config, "results_dir"),
                                             machine, head)
    if base is None:
        console.print(f"no earlier results on machine {machine}: nothing to compare",
                      highlight=False)
        return 0
    try:
        changes = asv_tools.regressions(base, head, factor, config, machine)
    except ValueError as error:
        fail(str(error))
    for change in changes:
        console.print(f"[red]REGRESSION[/red] {escape(change.name)}: {change.before:.4g} -> "
                      f"{change.after:.4g} {change.unit} (x{change.ratio:.2f})", soft_wrap=True)
    console.print(f"{len(changes)} regression(s) beyond x{factor:g} of {base[:8]} -> "
                  f"{head[:8]} (time_*, peakmem_*; machine {machine})", highlight=False)
    return 1 if changes else 0


@asv_app.command("quick")
def asv_quick(
    tiny: Annotated[bool, typer.Option(
        help="One tiny case (TRACKBENCH_ASV_QUICK=1) instead of the default grid.")] = False,
    bench: AsvBench = None,
    publish: Annotated[bool, typer.Option(help="Publish the dashboard afterwards.")] = True,
    config: AsvConfig = None,
) -> None:
    """Run every benchmark once (asv --quick) in this Python, recorded under HEAD."""
    from harness import asv_tools

    config = _asv_config(config)
    status = asv_tools.run_current(config, quick=True, tiny=tiny, bench=bench)
    if publish:
        status = asv_tools.publish(config) or status
    raise typer.Exit(status)


@asv_app.command("run")
def asv_run(bench: AsvBench = None, config: AsvConfig = None) -> None:
    """Run the suite with asv's statistics in this Python, recorded under HEAD."""
    from harness import asv_tools

    raise typer.Exit(asv_tools.run_current(_asv_config(config), quick=False, bench=bench))


@asv_app.command("continuous")
def asv_continuous(
    base: Annotated[str, typer.Argument(help="Base commit, e.g. HEAD~1 or main.")],
    head: Annotated[str, typer.Argument(help="Commit to test.")] = "HEAD",
    factor: AsvFactor = 1.5,
    bench: AsvBench = None,
    config: AsvConfig = None,
) -> None:
    """asv continuous: both commits in virtualenvs from asv.conf.json; fails on a regression."""
    from harness import asv_tools

    raise typer.Exit(asv_tools.continuous(base, head, factor, _asv_config(config), bench))


@asv_app.command("compare")
def asv_compare(
    base: Annotated[str | None, typer.Option(
        help="Base commit (default: the latest other commit with results).")] = None,
    head: Annotated[str | None, typer.Option(help="Commit to test (default: HEAD).")] = None,
    factor: AsvFactor = 1.5,
    config: AsvConfig = None,
) -> None:
    """Regression gate on recorded results: exit 1 when a time/peakmem value got worse."""
    raise typer.Exit(_asv_gate(base, head, factor, _asv_config(config)))


@asv_app.command("publish")
def asv_publish(config: AsvConfig = None) -> None:
    """asv publish: write the HTML dashboard (results/html)."""
    from harness import asv_tools

    raise typer.Exit(asv_tools.publish(_asv_config(config)))


@asv_app.command("preview")
def asv_preview(port: Annotated[int, typer.Option(help="Port.")] = 8080,
                config: AsvConfig = None) -> None:
    """asv preview: serve the dashboard at http://127.0.0.1:PORT (Ctrl-C stops)."""
    from harness import asv_tools

    raise typer.Exit(asv_tools.preview(port, _asv_config(config)))


@asv_app.command("nightly")
def asv_nightly(factor: AsvFactor = 1.5, config: AsvConfig = None) -> None:
    """The nightly flow: full run on HEAD, publish, then the regression gate."""
    from harness import asv_tools

    config = _asv_config(config)
    status = asv_tools.run_current(config, quick=False)
    published = asv_tools.publish(config)
    gate = _asv_gate(None, None, factor, config)
    raise typer.Exit(status or published or gate)


@asv_app.command("dashboard-check")
def asv_dashboard_check(
    html_dir: Annotated[Path | None, typer.Option(
        help="Published dashboard (default: html_dir of the configuration).")] = None,
    screenshot: Annotated[Path | None, typer.Option(
        help="Screenshot PNG (default: results/html-screenshot.png).")] = None,
    config: AsvConfig = None,
) -> None:
    """Load the dashboard in headless Chromium: benchmark list, a graph, screenshots."""
    from harness import asv_tools

    check = asv_tools.dashboard_check(html_dir, screenshot, _asv_config(config))
    if check.skipped:
        console.print(f"[yellow]SKIPPED[/yellow] {escape(check.skipped)}", soft_wrap=True)
        return
    state = "[green]OK[/green]" if check.ok else "[red]FAILED[/red]"
    console.print(f"{state} {escape(check.detail)}", soft_wrap=True)
    for path in check.screenshots:
        console.print(f"screenshot: {path}", highlight=False, soft_wrap=True)
    if not check.ok:
        raise typer.Exit(1)


from harness.tuning.command import tune  # noqa: E402 - needs the helpers above

app.command("tune")(tune)


def main() -> None:
    """Entry point that turns bad input into one line (no traceback)."""
    try:
        app()
    except ScenarioError as error:
        err_console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()

__all__ = ["app", "main"]
