"""What every command of the command line shares: the Typer app, the consoles, the one-line
error exit, option types and the parsing and checking of option values."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from harness.model.errors import ScenarioError

if TYPE_CHECKING:
    from harness.case_process import Limits
    from harness.execution import ExecutionConfig
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


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error and exit (no traceback for bad input); control characters
    in it are shown escaped (:func:`harness.names.printable`)."""
    from harness.names import printable

    err_console.print(f"[red]error:[/red] {escape(printable(message))}", highlight=False,
                      soft_wrap=True)
    raise typer.Exit(code)


def split_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def positive_whole_numbers(value: str | None, option: str, example: str) -> list[int]:
    """The comma-separated positive whole numbers of ``option`` (empty when not given)."""
    numbers = []
    for part in split_list(value):
        if not part.isdigit() or int(part) < 1:
            fail(f"{option}: expected positive whole numbers like {example} (got {part!r})")
        numbers.append(int(part))
    return numbers


def kick_count_list(value: str | None) -> list[int] | None:
    """Kicks per element of ``--kicks`` (None when not given)."""
    return positive_whole_numbers(value, "--kicks", "5,10,20") or None


def thread_count_list(value: str | None) -> list[int | None]:
    """Thread counts of ``--threads``; ``all`` (or nothing) is None: all the process is
    given."""
    counts: list[int | None] = []
    for part in split_list(value):
        counts.append(None if part == "all" else
                      positive_whole_numbers(part, "--threads", "all,1 or 1,2")[0])
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


def run_particle_counts(value: str | None) -> list[int] | str:
    """``run``'s ``--particles``: counts (``1e4,1e5``), or ``smallest`` (each scenario at
    the smallest of its own counts)."""
    from harness.cases import SMALLEST

    if value is not None and value.strip() == SMALLEST:
        return SMALLEST
    return particle_count_list(value)


def particle_count_list(value: str | None) -> list[int]:
    """The counts of ``--particles`` (``1e4,1e5``); one line for anything else."""
    counts = []
    for part in split_list(value):
        try:
            number = float(part)
        except ValueError:
            fail(f"--particles: expected numbers like 1e4,1e5 (got {part!r})")
        check_number(number, "--particles", minimum=1, inclusive=True, whole=True,
                     maximum=MAX_PARTICLES_OPTION)
        counts.append(int(number))
    return counts


def load_scenarios(names: list[str]):
    from harness.model.load import bundled_names, load_scenario

    try:
        if names:
            return [load_scenario(name) for name in names]
        return [s for s in map(load_scenario, bundled_names()) if s.run_by_default]
    except ScenarioError as error:
        fail(str(error))


def default_run_directory() -> Path:
    from datetime import UTC, datetime

    from harness.model.load import BUNDLED_DIR

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return BUNDLED_DIR.parent / "results" / "runs" / stamp


def point_latest(out: Path) -> None:
    """Make ``results/latest`` a link to the newest run directory under ``results/``."""
    from harness.model.load import BUNDLED_DIR

    results_dir = BUNDLED_DIR.parent / "results"
    try:
        relative = out.resolve().relative_to(results_dir.resolve())
    except ValueError:
        return
    latest = results_dir / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(relative, target_is_directory=True)


def check_backends(backends: str | None, available: list[str]) -> list[str]:
    """The backends of ``--backends`` (default: the available ones that run by default);
    exits on an unknown one."""
    from backends.registry import load_backend_class

    chosen = split_list(backends) or [name for name in available
                                      if load_backend_class(name).run_by_default]
    for name in chosen:
        try:
            load_backend_class(name)
        except KeyError as error:
            fail(str(error.args[0]))
    return chosen


def check_devices_and_dtypes(device: str, dtype: str) -> None:
    """Exit with a clear message unless ``--device``/``--dtype`` name known values."""
    for value, allowed, option in ((device, ("cpu", "cuda"), "--device"),
                                   (dtype, ("float64", "float32"), "--dtype")):
        for part in split_list(value):
            if part not in allowed:
                fail(f"{option}: expected a comma-separated list of {allowed} (got {part!r})")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count`` where the
    platform has no affinity)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine_memory_bytes() -> int | None:
    """This machine's physical memory [bytes] (None where the platform does not say)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


#: Largest ``--memory-limit`` [GiB] for cases that run elsewhere (a scheduler or cluster,
#: whose machines this one cannot see): 1 PiB.
MAX_REMOTE_MEMORY_GIB = 2.0**20


def check_run_options(*, backends: str | None = None, workers: int | None = None,
                      scheduler: str | None = None, cluster: str | None = None,
                      memory_limit: float | None = None, timeout: float | None = None,
                      resume: Path | None = None, repeat: int | None = None) -> None:
    """The options ``run``, ``grad``, ``tune`` and ``reproduce`` share, checked with the
    standard library only, before any heavy import (a refusal takes a fraction of a
    second): one line and exit 2 for

    * ``--backends`` given but naming none (``""``, ``","``);
    * ``--workers`` above the cores this process may use (its affinity mask), unless the
      cases run elsewhere (``--scheduler``/``--cluster``);
    * ``--memory-limit`` [GiB] not positive and finite, or above this machine's memory
      (cases run here) or :data:`MAX_REMOTE_MEMORY_GIB`;
    * ``--timeout`` [s] not positive and finite; ``--repeat`` not a whole number >= 1;
    * ``--resume DIR`` of a directory that does not exist.
    """
    if backends is not None and not split_list(backends):
        fail(f"--backends: expected comma-separated backend ids, e.g. impactx,inhouse "
             f"(got {backends!r}); leave it out to run every available backend")
    remote = scheduler is not None or cluster is not None
    if workers is not None and not remote:
        cores = available_cores()
        if not 1 <= workers <= cores:
            fail(f"--workers: a whole number from 1 to {cores}, the cores this process may "
                 f"use (got {workers}); run more on a cluster with --scheduler or --cluster")
    if memory_limit is not None:
        check_number(memory_limit, "--memory-limit")
        total = None if remote else machine_memory_bytes()
        bound = MAX_REMOTE_MEMORY_GIB if total is None else total / 2**30
        if memory_limit > bound:
            what = "this machine's memory" if total is not None else "1 PiB"
            fail(f"--memory-limit: at most {bound:.4g} GiB, {what} (got {memory_limit:g} "
                 "GiB)")
    check_number(timeout, "--timeout")
    check_number(repeat, "--repeat", minimum=1, inclusive=True, whole=True)
    if resume is not None and not Path(resume).is_dir():
        fail(f"--resume {resume}: no such run directory (start a new run with --out "
             f"{resume})")


def run_directory_for(out: Path | None, resume: Path | None) -> Path:
    """The run directory: ``--resume`` DIR, ``--out`` DIR (which must not hold results yet)
    or a new time-stamped one."""
    from harness.run_lock import busy

    directory = resume or out or default_run_directory()
    held = busy(directory)
    if held:
        fail(held)
    if resume is None and (directory / "results.jsonl").exists():
        fail(f"{directory} already holds results; continue it with --resume {directory} "
             "or choose another --out")
    return directory


def case_limits(timeout: float, memory_limit: float | None) -> Limits:
    """Per-case limits: ``timeout`` [s] and ``memory_limit`` [GiB] (default: 90 % of RAM)."""
    import psutil

    from harness.case_process import Limits
    check_number(timeout, "--timeout")
    check_number(memory_limit, "--memory-limit", maximum=MAX_REMOTE_MEMORY_GIB)
    cap = (int(memory_limit * 2**30) if memory_limit
           else int(0.9 * psutil.virtual_memory().total))
    return Limits(timeout_s=timeout, memory_bytes=cap)


def usable_out(directory: Path) -> None:
    """Exit with one line unless ``directory`` can hold a run (before the first case)."""
    from harness.results import unusable_directory

    problem = unusable_directory(directory)
    if problem:
        fail(f"--out {problem}")


def resume_command(directory: Path) -> str:
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


def execution_config(workers: int | None, scheduler: str | None, cluster: str | None,
                     cluster_config: Path | None,
                     threads: list[int | None] | None = None) -> ExecutionConfig:
    """Where the cases run, from the command line's options (checked, one line if not)."""
    from harness.execution import ExecutionConfig

    chosen = [name for name, value in (("--workers", workers), ("--scheduler", scheduler),
                                       ("--cluster", cluster)) if value is not None]
    if len(chosen) > 1:
        fail(f"{' and '.join(chosen)}: choose one way to run the cases")
    if workers is not None and not 1 <= workers <= 4096:
        fail(f"--workers: a whole number of workers from 1 to 4096 (got {workers})")
    if cluster is not None:
        if cluster not in ("slurm", "pbs"):
            fail(f"--cluster: slurm or pbs (got {cluster!r})")
        if cluster_config is None or not Path(cluster_config).is_file():
            fail(f"--cluster {cluster} needs --cluster-config FILE (a YAML of dask-jobqueue "
                 f"options; got {cluster_config})")
    elif cluster_config is not None:
        fail("--cluster-config: only with --cluster slurm|pbs")
    counts = [t for t in (threads or []) if t]
    return ExecutionConfig(workers=workers, scheduler=scheduler, cluster=cluster,
                           cluster_config=cluster_config,
                           cores_per_worker=max(counts) if counts else 1)


def execute_runner(runner, cases, scenarios, directory: Path,
                   execution: ExecutionConfig | None = None) -> None:
    """Run the cases here or on the cluster ``execution`` names; a busy directory, a write
    error or Ctrl-C ends in one line (with the cases kept and the exact ``--resume``
    command). What ran where is kept in ``runner.execution`` (for the metadata)."""
    from harness.results import read_rows
    from harness.rows import disk_full_error, disk_full_reason
    from harness.run_lock import RunDirectoryBusy

    executor = None
    runner.execution = {"executor": "serial (this process)"}
    try:
        if execution is not None and not execution.serial:
            from harness.execution import make_executor

            try:
                executor = make_executor(execution)
            except (OSError, ValueError, ImportError) as error:
                fail(f"cannot start the Dask cluster: {error}")
            runner.executor = executor
            runner.execution = {"executor": executor.description,
                                "dashboard": getattr(executor, "dashboard", None),
                                "shared_cores": getattr(executor, "shared_cores", False),
                                "notes": list(execution.notes)}
            err_console.print(f"running on {executor.description}; Dask dashboard: "
                              f"{runner.execution['dashboard']}", highlight=False,
                              soft_wrap=True, markup=False)
        runner.run(cases, scenarios)
    except RunDirectoryBusy as error:
        fail(str(error))
    except (KeyboardInterrupt, OSError) as error:
        planned = {c.case_id for c in cases}
        kept = len(planned & {r.get("case_id") for r in read_rows(directory)})
        full = None if isinstance(error, KeyboardInterrupt) else disk_full_error(error)
        what = ("interrupted" if isinstance(error, KeyboardInterrupt)
                else f"cannot write results, {disk_full_reason(full)}" if full is not None
                else f"cannot write results ({error.strerror or error})")
        err_console.print(f"{what}: {kept} of {len(planned)} cases kept in "
                          f"{directory}/results.jsonl; continue with:\n  "
                          f"{resume_command(directory)}", highlight=False, soft_wrap=True,
                          markup=False)
        raise typer.Exit(130 if isinstance(error, KeyboardInterrupt) else 1) from None
    finally:
        if executor is not None:
            executor.close()


def exit_status(directory: Path, cases, no_fail: bool) -> None:
    """Exit 1 when a case of this run failed, timed out or ran out of memory (unless
    ``--no-fail``)."""
    from harness.model.vocabulary import Status
    from harness.results import read_rows

    planned = {c.case_id for c in cases}
    last: dict = {}  # each case's last record (a resumed run records a case again)
    for row in read_rows(directory):
        if row.get("case_id") in planned:
            last[row["case_id"]] = row
    bad = {case_id for case_id, r in last.items()
           if r.get("status") in (Status.FAILED, Status.TIMEOUT, Status.OOM)}
    if bad and not no_fail:
        err_console.print(f"{len(bad)} case(s) failed, timed out or ran out of memory "
                          "(exit status 1; --no-fail keeps 0)", highlight=False)
        raise typer.Exit(1)


Workers = Annotated[int | None, typer.Option(
    help="Run the cases on a local Dask cluster of N workers, each pinned to its own cores "
    "(default: one after the other in this process).")]
Scheduler = Annotated[str | None, typer.Option(
    help="Run the cases on an existing Dask scheduler, e.g. tcp://host:8786.")]
Cluster = Annotated[str | None, typer.Option(
    help="slurm|pbs: start Dask workers as batch jobs (dask-jobqueue) from --cluster-config.")]
ClusterConfig = Annotated[Path | None, typer.Option(
    help="YAML of dask-jobqueue options for --cluster (e.g. docs/cluster/slurm.yaml).")]
Devices = Annotated[str, typer.Option("--device", help="Comma-separated: cpu,cuda.")]
Dtypes = Annotated[str, typer.Option("--dtype", help="Comma-separated: float64,float32.")]
Device = Annotated[str, typer.Option(help="cpu or cuda.")]
Dtype = Annotated[str, typer.Option(help="float64 or float32.")]
CaseTimeout = Annotated[float, typer.Option(help="Time limit per case [s].")]
AvailableBackends = Annotated[str | None, typer.Option(
    help="Comma-separated backend ids (default: every available one).")]
CodeThreads = Annotated[int, typer.Option(
    help="Threads of every code (torch and OMP_NUM_THREADS).")]
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


__all__ = [
    "Cluster",
    "ClusterConfig",
    "Devices",
    "Dtypes",
    "MAX_PARTICLES_OPTION",
    "MemoryLimit",
    "NoFail",
    "Out",
    "Resume",
    "Scheduler",
    "Threads",
    "Workers",
    "app",
    "case_limits",
    "check_backends",
    "check_devices_and_dtypes",
    "check_number",
    "check_run_options",
    "available_cores",
    "machine_memory_bytes",
    "console",
    "default_run_directory",
    "err_console",
    "execute_runner",
    "execution_config",
    "exit_status",
    "fail",
    "kick_count_list",
    "load_scenarios",
    "particle_count_list",
    "point_latest",
    "positive_whole_numbers",
    "resume_command",
    "run_particle_counts",
    "run_directory_for",
    "split_list",
    "thread_count_list",
    "usable_out",
]
