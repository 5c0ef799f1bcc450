"""The ``trackbench`` command line."""

from __future__ import annotations

import math
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
    """Track a scenario once with one backend and print the final observables (of the
    surviving particles; exits 4 on a numerical blow-up)."""
    from backends.registry import get_backend
    from harness import observables
    from harness.particles import generate
    from harness.scenario import load_scenario

    check_number(particles, "--particles", minimum=1, inclusive=True, whole=True,
                 maximum=MAX_PARTICLES_OPTION)
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
    fate = observables.fates(final)
    before = observables.compute_survivors(initial, loaded.observables, reference)
    after = observables.compute_survivors(final, loaded.observables, reference)
    table = Table(title=f"{loaded.name} | {backend} {availability.version} | model {model} | "
                  f"N={len(initial)} | {device} {dtype}")
    for column in ("observable", "initial", "final (survivors)"):
        table.add_column(column)
    for name in loaded.observables:
        table.add_row(name, f"{float(before[name]):.10e}", f"{float(after[name]):.10e}")
    console.print(table)
    lost, blown = int(fate.lost.sum()), int(fate.blown_up.sum())
    if lost:
        console.print(f"{lost} of {len(final)} particles lost at apertures; the final moments "
                      f"are those of the {int(fate.alive.sum())} survivors", highlight=False)
    if blown:
        fail(f"numerical blow-up: {blown} of {len(final)} particles with non-finite or "
             f"|coordinate| > {observables.BLOW_UP_MAGNITUDE:g} final coordinates", code=4)


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


def check_number(value: float | None, option: str, *, minimum: float = 0.0,
                 inclusive: bool = False, whole: bool = False,
                 maximum: float | None = None) -> float | None:
    """``value`` of a numeric ``option`` if it is finite, above ``minimum`` (or equal when
    ``inclusive``), at most ``maximum`` and whole when asked; else one line and exit 2.
    None (an option not given) passes."""
    if value is None:
        return None
    low = "at least" if inclusive else "greater than"
    kind = "a whole number" if whole else "a finite number"
    bound = f" and at most {maximum:g}" if maximum is not None else ""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and (value >= minimum if inclusive else value > minimum)
          and (maximum is None or value <= maximum) and (not whole or value == int(value)))
    if not ok:
        fail(f"{option}: expected {kind} {low} {minimum:g}{bound} (got {value!r})")
    return value


#: Largest particle count accepted on the command line.
MAX_PARTICLES_OPTION = 1e9


def _counts(value: str | None) -> list[int]:
    counts = []
    for part in _split(value):
        try:
            number = float(part)
        except ValueError:
            fail(f"--particles: expected numbers like 1e4,1e5 (got {part!r})")
        check_number(number, "--particles", minimum=1, inclusive=True, whole=True,
                     maximum=MAX_PARTICLES_OPTION)
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
    from harness.run_lock import busy

    directory = resume or out or _default_out()
    if busy(directory):
        fail(busy(directory))
    if resume is None and (directory / "results.jsonl").exists():
        fail(f"{directory} already holds results; continue it with --resume {directory} "
             "or choose another --out")
    return directory


def _limits(timeout: float, memory_limit: float | None) -> Limits:
    """Per-case limits: ``timeout`` [s] and ``memory_limit`` [GiB] (default: 90 % of RAM)."""
    import psutil

    from harness.runner import Limits

    check_number(timeout, "--timeout")
    check_number(memory_limit, "--memory-limit")
    cap = (int(memory_limit * 2**30) if memory_limit
           else int(0.9 * psutil.virtual_memory().total))
    return Limits(timeout_s=timeout, memory_bytes=cap)


def _usable_out(directory: Path) -> None:
    """Exit with one line unless ``directory`` can hold a run (before the first case)."""
    from harness.results import unusable_directory

    problem = unusable_directory(directory)
    if problem:
        fail(f"--out {problem}")


def _resume_command(directory: Path) -> str:
    """The command line that continues this run: ``--out``/``--resume`` replaced."""
    import shlex

    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg in ("--out", "--resume"):
            skip = True
            continue
        if arg.startswith(("--out=", "--resume=")):
            continue
        args.append(arg)
    return shlex.join(["trackbench", *args, "--resume", str(directory)])


def _execute(runner, cases, scenarios, directory: Path) -> None:
    """Run the cases; a busy directory, a write error or Ctrl-C ends in one line (with
    the cases kept and the exact ``--resume`` command)."""
    from harness.results import read_rows
    from harness.run_lock import RunDirectoryBusy

    try:
        runner.run(cases, scenarios)
    except RunDirectoryBusy as error:
        fail(str(error))
    except (KeyboardInterrupt, OSError) as error:
        planned = {c.case_id for c in cases}
        kept = len(planned & {r.get("case_id") for r in read_rows(directory)})
        what = ("interrupted" if isinstance(error, KeyboardInterrupt)
                else f"cannot write results ({error.strerror or error})")
        err_console.print(f"{what}: {kept} of {len(planned)} cases kept in "
                          f"{directory}/results.jsonl; continue with:\n  "
                          f"{_resume_command(directory)}", highlight=False, soft_wrap=True,
                          markup=False)
        raise typer.Exit(130 if isinstance(error, KeyboardInterrupt) else 1) from None


def _exit_status(directory: Path, cases, no_fail: bool) -> None:
    """Exit 1 when a case of this run failed, timed out or ran out of memory (unless
    ``--no-fail``)."""
    from harness.results import read_rows
    from harness.vocabulary import Status

    planned = {c.case_id for c in cases}
    bad = {r.get("case_id") for r in read_rows(directory) if r.get("case_id") in planned
           and r.get("status") in (Status.FAILED, Status.TIMEOUT, Status.OOM)}
    if bad and not no_fail:
        err_console.print(f"{len(bad)} case(s) failed, timed out or ran out of memory "
                          "(exit status 1; --no-fail keeps 0)", highlight=False)
        raise typer.Exit(1)


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
NoFail = Annotated[bool, typer.Option(
    "--no-fail", help="Exit 0 even when cases failed, timed out or ran out of memory "
    "(nightly jobs that only record); by default such a run exits 1.")]


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
        help="Keep the cached reference particles after a complete run.")] = False,
    no_fail: NoFail = False,
    write_particles: Annotated[str, typer.Option(
        help="none|openpmd: write the initial (per scenario and N) and final particles of "
        "every case to DIR/particles/ (not timed).")] = "none",
) -> None:
    """Run the matrix scenario × backend × particles × device × dtype, each case in its own
    process; append every finished case to DIR/results.jsonl. Exits 1 when a case failed,
    timed out or ran out of memory (--no-fail: 0), 130 on Ctrl-C."""
    import json

    from backends.registry import available_backends
    from harness import metadata
    from harness.cases import plan, scenario_map
    from harness.compare import summary
    from harness.display import progress_line, running_line, summary_table
    from harness.runner import Runner

    started = metadata.now()
    check_number(repeat, "--repeat", minimum=1, inclusive=True, whole=True)
    loaded = _load_scenarios(scenarios or [])
    available = available_backends()
    chosen = _check_backends(backends, available)
    _check_devices_and_dtypes(device, dtype)
    cases = plan(loaded, chosen, _counts(particles), _split(device), _split(dtype), repeat,
                 available, _thread_counts(threads))
    directory = _run_directory(out, resume)
    _usable_out(directory)
    limits = _limits(timeout, memory_limit)
    scenarios_by_label = scenario_map(loaded)
    runner = Runner(directory, limits, resume=resume is not None, fresh=resume is None)
    if write_particles not in ("none", "openpmd"):
        fail(f"--write-particles: expected none or openpmd (got {write_particles!r})")
    runner.write_particles = write_particles
    pending = runner.pending(cases)
    finished = [0]

    def log_progress(row: dict, stream=sys.stderr) -> None:
        finished[0] += 1
        print(progress_line(finished[0], len(pending), row), file=stream, flush=True)

    if json_output:
        def on_row(row: dict) -> None:
            print(json.dumps(row, default=str), flush=True)
            log_progress(row)

        runner.on_row = on_row
        runner.on_start = lambda case: print(running_line(finished[0], len(pending),
                                                          case.case_id),
                                             file=sys.stderr, flush=True)
        _execute(runner, cases, scenarios_by_label, directory)
    elif not console.is_terminal:
        # a log: one flushed line per case started and finished
        runner.on_row = lambda row: log_progress(row, sys.stdout)
        runner.on_start = lambda case: print(running_line(finished[0], len(pending),
                                                          case.case_id), flush=True)
        _execute(runner, cases, scenarios_by_label, directory)
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
            def on_row(row: dict) -> None:
                finished[0] += 1
                progress.console.print(progress_line(finished[0], len(pending), row),
                                       highlight=False, markup=False, soft_wrap=True)
                progress.advance(task)

            runner.on_row = on_row
            _execute(runner, cases, scenarios_by_label, directory)
    try:
        metadata.write(directory, metadata.collect(sys.argv, started))
        _point_latest(directory)
    except OSError as error:
        err_console.print(f"metadata.json not written: {error.strerror or error}",
                          highlight=False)
    if not keep_particles:
        runner.clear_cache()
    if report:
        try:
            from harness.report import write_report
        except ImportError:
            write_report = None
        if write_report is not None:
            try:
                write_report([directory], directory / "report", formats=("md", "html"))
            except OSError as error:
                err_console.print(f"report not written: {error.strerror or error}",
                                  highlight=False)
    if not json_output:
        console.print(summary_table(summary(directory), f"Run {directory}"))
        console.print(f"results: {directory}/results.jsonl, results.csv, metadata.json",
                      highlight=False)
    _exit_status(directory, cases, no_fail)


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
    from harness.compare import rejudged, side_by_side, summary
    from harness.display import comparison_table, summary_table

    check_number(threshold, "--threshold", inclusive=True)
    for directory in runs:
        if not (directory / "results.jsonl").exists():
            fail(f"{directory}: no results.jsonl (not a run directory)")
    if rejudge:
        if len(runs) != 1:
            fail("--rejudge takes one run directory")
        frame = rejudged(runs[0])
        changed = frame[frame["verdict"].astype(str) != frame["stored_verdict"].astype(str)]
        console.print(summary_table(frame, f"Run {runs[0]} (verdicts judged again)"))
        for row in changed.itertuples(index=False):
            console.print(f"{row.scenario} {row.backend} N={row.particles} {row.dtype}: "
                          f"{row.stored_verdict} -> {row.verdict}", highlight=False)
        console.print(f"{len(changed)} verdict(s) changed", highlight=False)
        return
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
    no_fail: NoFail = False,
) -> None:
    """Gradient accuracy and cost: reverse- and forward-mode AD and a finite-difference step
    sweep per parameter, against the forward-mode in-house fp64 reference; each case in its
    own process, rows appended to DIR/results.jsonl (kind ``gradient``)."""
    import json

    from backends.registry import available_backends
    from harness import gradients, metadata
    from harness.display import progress_line, running_line
    from harness.results import read_rows
    from harness.runner import Runner
    from harness.vocabulary import Status

    started = metadata.now()
    check_number(repeat, "--repeat", minimum=1, inclusive=True, whole=True)
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
    for step in steps or []:
        check_number(step, "--fd-steps")
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
    _usable_out(directory)
    runner = Runner(directory, _limits(timeout, memory_limit), resume=resume is not None,
                    fresh=resume is None)
    pending = runner.pending(cases)
    finished: dict[str, None] = {}

    def progress(row: dict) -> None:
        if row.get("case_id") not in finished:  # one line per case (the first of its rows)
            finished[row.get("case_id")] = None
            print(progress_line(len(finished), len(pending), row),
                  file=sys.stderr if json_output else sys.stdout, flush=True)

    if json_output:
        def on_row(row: dict) -> None:
            print(json.dumps(row, default=str), flush=True)
            progress(row)

        runner.on_row = on_row
    else:
        runner.on_row = progress
        runner.on_start = lambda case: console.print(
            f"{running_line(len(finished), len(pending), case.case_id)} "
            f"({len(case.options['parameters'])} parameters)", highlight=False)
    _execute(runner, cases, loaded, directory)
    try:
        metadata.write(directory, metadata.collect(sys.argv, started))
        _point_latest(directory)
    except OSError as error:
        err_console.print(f"metadata.json not written: {error.strerror or error}",
                          highlight=False)
    runner.clear_cache()
    if json_output:
        _exit_status(directory, cases, no_fail)
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
    _exit_status(directory, cases, no_fail)


from harness.io.commands import export_command, import_command  # noqa: E402

app.command("import")(import_command)
app.command("export")(export_command)


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

    from harness.dashboard import dashboard_check

    check = dashboard_check(html_dir, screenshot, _asv_config(config))
    if check.skipped:
        console.print(f"[yellow]SKIPPED[/yellow] {escape(check.skipped)}", soft_wrap=True)
        return
    state = "[green]OK[/green]" if check.ok else "[red]FAILED[/red]"
    console.print(f"{state} {escape(check.detail)}", soft_wrap=True)
    for path in check.screenshots:
        console.print(f"screenshot: {path}", highlight=False, soft_wrap=True)
    if not check.ok:
        raise typer.Exit(1)


@app.command()
def reproduce(
    paper: Annotated[str, typer.Argument(help="Published comparison: napac25.")] = "napac25",
    figures: Annotated[str | None, typer.Option(
        help="Comma-separated figure ids (default: all), e.g. fig1,fig3.")] = None,
    particles: Annotated[str | None, typer.Option(
        help="Override the figures' particle counts, e.g. 1e3,1e4.")] = None,
    backends: Annotated[str | None, typer.Option(
        help="Comma-separated backends (default: cheetah,cheetah-compiled,impactx,"
        "inhouse).")] = None,
    repeat: Annotated[int, typer.Option(help="Timed tracks per case (the paper: 5).")] = 5,
    timeout: Annotated[float, typer.Option(help="Time limit per case [s].")] = 3600.0,
    memory_limit: Annotated[float, typer.Option(
        help="Resident-memory limit per case [GiB].")] = 8.0,
    out: Out = None,
    resume: Resume = None,
) -> None:
    """Run a paper's comparison here at its settings and write its tables beside the
    published figures (DIR/reproduce.md, reproduce.csv, plots/)."""
    from harness import published
    from harness import reproduce as rp

    try:
        data = published.load(paper)
    except FileNotFoundError:
        fail(f"no published figures named {paper!r} in results/published/")
    try:
        plans = rp.figure_plans(data, _split(figures), _counts(particles) or None)
    except KeyError as error:
        fail(str(error.args[0]))
    reproduction = rp.plan_reproduction(data, plans, repeat, _split(backends) or None)
    directory = _run_directory(out, resume)
    console.print(f"{len(reproduction.cases)} cases into {directory}", highlight=False)
    rp.run_reproduction(reproduction, directory, _limits(timeout, memory_limit),
                        resume is not None,
                        on_row=lambda row: console.print(
                            f"{row['case_id']}: {row['status']} "
                            f"{row.get('time_min_s') or ''}", highlight=False))
    path = rp.write_outputs(directory, reproduction, repeat)
    console.print(f"tables: {path}", highlight=False)


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
