"""The report's tables, built from result rows (never from hand-typed numbers).

Every cell is a string formatted with the terminal's number formats
(:mod:`harness.display`), so a report and ``trackbench compare`` print the same numbers.
Rows are sorted by scenario, backend (the baseline first), N, device (CPU before GPU) and
dtype (float64 before float32), so the same results always give the same tables. Cases that
did not finish (``unsupported``, ``failed``, ``timeout``, ``oom``) keep their row, with their
status and reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.display import format_count, format_rate, format_ratio, format_time
from harness.model.vocabulary import Status
from harness.report.runs import Run, missing, number, short_cpu, sort_key, text

#: Longest reason or detail kept in a cell [characters].
MAX_REASON = 160


@dataclass(frozen=True)
class Table:
    """A titled table of strings; ``align`` holds ``l`` or ``r`` per column."""

    key: str
    title: str
    columns: tuple[str, ...]
    align: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()


def format_percent(fraction: float | None) -> str:
    """A fraction as a whole percentage (``0.22`` -> ``22%``), as the terminal prints spread."""
    return "-" if fraction is None or missing(fraction) else f"{100 * fraction:.0f}%"


def format_bytes(size: float | None) -> str:
    """A memory size in binary units with 3 significant digits (``1.5 GiB``)."""
    if size is None or missing(size):
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size:.0f} B"


def format_reason(reason: str) -> str:
    """A reason or detail on one line, cut to :data:`MAX_REASON` characters."""
    line = " ".join(str(reason).split())
    return line if len(line) <= MAX_REASON else line[:MAX_REASON - 1] + "…"


def _cell(value: float | None, formatter) -> str:
    return formatter(value) if value is not None else "-"


def _case_cells(row: dict[str, Any]) -> list[str]:
    """Scenario, backend, N, device and dtype of a row."""
    particles = number(row, "particles")
    return [text(row, "scenario") or "-", text(row, "backend") or "-",
            format_count(particles) if particles is not None else "-",
            text(row, "device") or "-", text(row, "dtype") or "-"]


def _with_run(runs: list[Run], columns: list[str], align: list[str]):
    """Prefix a ``run`` column when the report concatenates several runs."""
    if len(runs) > 1:
        return ["run", *columns], ["l", *align]
    return columns, align


def _row(runs: list[Run], run: Run, cells: list[str]) -> tuple[str, ...]:
    return tuple([run.label, *cells] if len(runs) > 1 else cells)


def not_ok_reason(row: dict[str, Any]) -> str:
    """The reason of a case that did not finish ('' for an ``ok`` case)."""
    if text(row, "status") == Status.OK:
        return ""
    return format_reason(text(row, "reason") or "no reason recorded")


# --------------------------------------------------------------------------- machine header

def _cores(machine: dict[str, Any]) -> str:
    parts = [f"{machine[key]} {word}" for key, word in (
        ("logical_cores", "logical"), ("physical_cores", "physical"),
        ("cores_available", "available")) if not missing(machine.get(key))]
    return ", ".join(parts) or "-"


def _gpus(machine: dict[str, Any]) -> str:
    gpus = machine.get("gpus") or []
    return "; ".join(f"{g.get('name', '?')} ({g.get('memory', '?')}, driver "
                     f"{g.get('driver', '?')})" for g in gpus) or "none"


def _backends(metadata: dict[str, Any]) -> str:
    parts = []
    for name, info in sorted((metadata.get("backends") or {}).items()):
        if info.get("available"):
            parts.append(f"{name} {info.get('version') or '?'}")
        else:
            parts.append(f"{name} (not available)")
    return ", ".join(parts) or "-"


def _commit(metadata: dict[str, Any]) -> str:
    git = metadata.get("git") or {}
    commit = git.get("commit")
    if not commit:
        return "-"
    return commit[:12] + (" (with local changes)" if git.get("dirty") else "")


def _command(metadata: dict[str, Any]) -> str:
    """The command line, with the program reduced to its name (no machine paths)."""
    command = metadata.get("command") or []
    if not command:
        return "-"
    program = str(command[0]).replace("\\", "/").rsplit("/", 1)[-1]
    return " ".join([program, *map(str, command[1:])])


HEADER_FIELDS: tuple[tuple[str, Any], ...] = (
    ("CPU", lambda m: (m.get("machine") or {}).get("cpu") or "-"),
    ("cores", lambda m: _cores(m.get("machine") or {})),
    ("memory", lambda m: f"{(m.get('machine') or {}).get('memory_gib', '-')} GiB"),
    ("GPU", lambda m: _gpus(m.get("machine") or {})),
    ("OS", lambda m: (m.get("machine") or {}).get("os") or "-"),
    ("Python", lambda m: (m.get("machine") or {}).get("python") or "-"),
    ("backends", _backends),
    ("commit", _commit),
    ("command", _command),
    ("started (UTC)", lambda m: m.get("started") or "-"),
    ("finished (UTC)", lambda m: m.get("finished") or "-"),
)


def machine_table(runs: list[Run]) -> Table:
    """What the runs were measured on, one column per run (from ``metadata.json``)."""
    columns = ("", *(run.label for run in runs))
    rows = []
    for name, getter in HEADER_FIELDS:
        rows.append((name, *(str(getter(run.metadata)) if run.metadata else "-"
                             for run in runs)))
    notes = tuple(f"{run.label}: no metadata.json" for run in runs if not run.metadata)
    return Table("machine", "Machine and versions", columns, ("l",) * len(columns),
                 tuple(rows), notes)


# --------------------------------------------------------------------------- timing

def baseline_times(run: Run, baseline: str) -> dict[tuple, float]:
    """Median time of the baseline backend's ok cases, by scenario/N/device/dtype/threads."""
    times = {}
    for row in run.track:
        median = number(row, "time_median_s")
        if text(row, "backend") == baseline and text(row, "status") == Status.OK and median:
            times[_speedup_key(row)] = median
    return times


def _speedup_key(row: dict[str, Any], device: str | None = None,
                 dtype: str | None = None) -> tuple:
    return (text(row, "scenario"), number(row, "particles"), device or text(row, "device"),
            dtype or text(row, "dtype"), number(row, "threads_requested"))


def speedup(row: dict[str, Any], times: dict[tuple, float]) -> tuple[float | None, str]:
    """Baseline median time over this case's (> 1: faster than the baseline), and what it
    was compared with: '' for the baseline on the same device and dtype; else, when the
    baseline did not run there (ImpactX has no float32 or, as a CPU build, no GPU), its
    float64 case on the same device, then its CPU float64 case, named (``cpu float64``)."""
    median = number(row, "time_median_s")
    if not median or text(row, "status") != Status.OK:
        return None, ""
    device, dtype = text(row, "device"), text(row, "dtype")
    for other_device, other_dtype in ((device, dtype), (device, "float64"), ("cpu", "float64")):
        reference = times.get(_speedup_key(row, other_device, other_dtype))
        if reference is not None:
            same = (other_device, other_dtype) == (device, dtype)
            return reference / median, "" if same else f"{other_device} {other_dtype}"
    return None, ""


def format_speedup(value: float | None, against: str) -> str:
    """A speed-up, with the baseline case it refers to when not the same device/dtype."""
    if value is None:
        return "-"
    return format_ratio(value) + (f" (vs {against})" if against else "")


def particles_per_s(row: dict) -> float | None:
    """Particles through the whole lattice per second (recorded, or particles / median
    time for rows written before it was)."""
    rate = number(row, "throughput_particles_per_s")
    if rate is None:
        n, median = number(row, "particles"), number(row, "time_median_s")
        rate = n / median if n and median else None
    return rate


def timing_table(runs: list[Run], baseline: str = "impactx") -> Table:
    """Median time per track, spread, throughput and speed-up over the baseline backend."""
    columns, align = _with_run(runs, [
        "scenario", "backend", "N", "device", "dtype", "threads", "status", "time (median)",
        "spread", "throughput [particles/s]", "throughput [particle·elements/s]",
        f"speed-up vs {baseline}", "compile", "reason"],
        ["l", "l", "r", "l", "l", "r", "l", "r", "r", "r", "r", "r", "r", "l"])
    rows = []
    found_baseline = False
    for run in runs:
        times = baseline_times(run, baseline)
        found_baseline |= bool(times)
        for row in sorted(run.track, key=lambda r: sort_key(r, baseline)):
            threads = number(row, "threads")
            rows.append(_row(runs, run, [
                *_case_cells(row), "-" if threads is None else str(int(threads)),
                text(row, "status") or "-",
                _cell(number(row, "time_median_s"), format_time),
                format_percent(number(row, "time_spread")),
                _cell(particles_per_s(row), format_rate),
                _cell(number(row, "throughput_particle_elements_per_s"), format_rate),
                format_speedup(*speedup(row, times)),
                _cell(number(row, "compile_s") if row.get("compiled") else None, format_time),
                not_ok_reason(row) or text(row, "timing_warning") or ""]))
    notes = ["time: median of the timed tracks after one untimed warm-up (start-up, lattice "
             "set-up and warm-up excluded); spread: (max - min) / median; throughput: "
             "particles through the whole lattice / median time, and particles × elements "
             "of the lattice as written (not as fused) / median time; reason of an ok case: "
             "why its timing may not be the code's speed (spread, machine load); speed-up: "
             "the baseline's median time over "
             f"the case's, same scenario, N, threads, device and dtype ({baseline} = 1); "
             f"where {baseline} did not run on that device or dtype, the cell names the "
             f"{baseline} case it refers to (e.g. vs cpu float64); compile: time spent "
             "compiling (torch.compile) inside the untimed warm-up, for backends that "
             "compile."]
    if rows and not found_baseline:
        notes.append(f"No ok case of the baseline backend {baseline}: no speed-up.")
    if not rows:
        notes.append("No tracking cases in these runs.")
    return Table("timing", "Timing", tuple(columns), tuple(align), tuple(rows), tuple(notes))


# --------------------------------------------------------------------------- agreement

def worst_observable(row: dict[str, Any]) -> tuple[str, float | None]:
    """The observable with the largest relative error vs the reference, and that error."""
    worst, error = "", None
    for column in sorted(row):
        if column.startswith("obs_err_"):
            value = number(row, column)
            if value is not None and (error is None or value > error):
                worst, error = column.removeprefix("obs_err_"), value
    return worst, error


def agreement_table(runs: list[Run], baseline: str = "impactx") -> Table:
    """Particle-by-particle deviation and observable errors vs the reference, with verdict."""
    columns, align = _with_run(runs, [
        "scenario", "backend", "N", "device", "dtype", "model", "reference", "status",
        "max |Δ|/σ", "rms |Δ|/σ", "worst observable", "its rel. error", "verdict", "detail"],
        ["l", "l", "r", "l", "l", "l", "l", "l", "r", "r", "l", "r", "l", "l"])
    rows = []
    for run in runs:
        for row in sorted(run.track, key=lambda r: sort_key(r, baseline)):
            observable, error = worst_observable(row)
            verdict = text(row, "verdict")
            detail = not_ok_reason(row) or format_reason(text(row, "verdict_detail"))
            rows.append(_row(runs, run, [
                *_case_cells(row), text(row, "model") or "-", text(row, "reference") or "-",
                text(row, "status") or "-", _cell(number(row, "dev_max"), format_ratio),
                _cell(number(row, "dev_rms"), format_ratio), observable or "-",
                _cell(error, format_ratio), verdict or "-", detail]))
    notes = ["|Δ|/σ: particle-by-particle difference to the reference case divided by the "
             "reference beam's rms size in that coordinate (max and rms over particles, "
             "largest over x, px, y, py, t, pt); observable error: relative error vs the "
             "reference; model-mismatch: the case ran another physics model than its "
             "reference (detail names both), so differences are expected."]
    if not rows:
        notes.append("No tracking cases in these runs.")
    return Table("agreement", "Agreement with the reference", tuple(columns), tuple(align),
                 tuple(rows), tuple(notes))


# --------------------------------------------------------------------------- gradient

def _ok(row: dict[str, Any]) -> bool:
    return text(row, "status") in ("", Status.OK)


def _method(rows: list[dict[str, Any]], method: str) -> dict[str, Any] | None:
    """The ok row of a method in a group (None when the method did not run or failed)."""
    for row in rows:
        if text(row, "method") == method and _ok(row):
            return row
    return None


def rel_error(row: dict[str, Any] | None) -> float | None:
    """A gradient row's relative error vs its reference (recomputed from ``value`` and
    ``reference_value`` when the row does not carry it)."""
    if row is None:
        return None
    error = number(row, "rel_error")
    value, reference = number(row, "value"), number(row, "reference_value")
    if error is None and value is not None and reference:
        error = abs(value - reference) / abs(reference)
    return error


def best_fd(rows: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """The FD step with the smallest error among ``fd`` rows (the rows' ``best_fd_step``
    when they carry it), and that step's error."""
    fd = [row for row in rows if text(row, "method") == "fd" and _ok(row)]
    chosen = next((number(row, "best_fd_step") for row in fd
                   if number(row, "best_fd_step") is not None), None)
    best_step, best_error = None, None
    for row in fd:
        step, error = number(row, "fd_step"), rel_error(row)
        if chosen is not None:
            if step == chosen:
                return step, error
        elif error is not None and (best_error is None or error < best_error):
            best_step, best_error = step, error
    return best_step, best_error


def forward_vs_reverse(rows: list[dict[str, Any]]) -> float | None:
    """|forward - reverse| / |reverse| of the gradient values."""
    forward, reverse = _method(rows, "forward"), _method(rows, "reverse")
    if forward is None or reverse is None:
        return None
    f, r = number(forward, "value"), number(reverse, "value")
    if f is None or r is None:
        return None
    if r == 0:
        return 0.0 if f == 0 else None
    return abs(f - r) / abs(r)


def cost_row(rows: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The row whose cost ratios describe the case's gradient: reverse mode, else forward
    mode, else finite differences (a backend without AD); and that method's name."""
    for method in ("reverse", "forward", "fd"):
        row = _method(rows, method)
        if row is not None:
            return row, method
    return None, ""


def gradient_groups(run: Run, baseline: str = "impactx") -> list[list[dict[str, Any]]]:
    """Gradient rows grouped by case, objective, number of parameters and parameter."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in run.gradient:
        key = (text(row, "case_id"), text(row, "objective"), number(row, "n_params"),
               text(row, "parameter"))
        groups.setdefault(key, []).append(row)

    def order(group: list[dict[str, Any]]) -> tuple:
        row = group[0]
        return (*sort_key(row, baseline), text(row, "objective"),
                number(row, "n_params") or 0.0, text(row, "parameter"))

    return sorted(groups.values(), key=order)


def group_status(group: list[dict[str, Any]]) -> tuple[str, str]:
    """Status and reason of a case/parameter: ``ok`` when a method ran, with the methods
    that did not (``forward: failed: ...``) as reason; else the failure's status."""
    failures = [row for row in group if not _ok(row)]
    if not failures:
        return text(group[0], "status") or "-", ""
    if len(failures) == len(group):
        return text(failures[0], "status"), not_ok_reason(failures[0])
    reasons = [f"{text(row, 'method') or '?'}: {text(row, 'status')}: "
               f"{text(row, 'reason') or 'no reason recorded'}" for row in failures]
    return Status.OK.value, format_reason("; ".join(reasons))


def _with_method(value: float | None, method: str) -> str:
    """A cost ratio, naming the method when it is not reverse mode (``41 (fd)``)."""
    if value is None:
        return "-"
    return format_ratio(value) + ("" if method == "reverse" else f" ({method})")


def gradient_table(runs: list[Run], baseline: str = "impactx") -> Table:
    """AD vs reference, forward vs reverse, best FD step, cost ratios, backward memory."""
    columns, align = _with_run(runs, [
        "scenario", "backend", "N", "device", "dtype", "parameter", "objective", "P",
        "variant", "status", "reverse vs ref.", "forward vs reverse", "reverse vs best FD",
        "best FD step", "FD error", "gradient / forward", "FD / gradient", "backward memory",
        "reason"],
        ["l", "l", "r", "l", "l", "l", "l", "r", "l", "l", "r", "r", "r", "r", "r", "r", "r",
         "r", "l"])
    rows = []
    references: set[str] = set()
    memory_methods: set[str] = set()
    for run in runs:
        for group in gradient_groups(run, baseline):
            head = group[0]
            status, reason = group_status(group)
            reverse = _method(group, "reverse")
            step, fd_error = best_fd(group)
            costs, method = cost_row(group)
            n_params = number(head, "n_params")
            references.update(text(r, "reference_method") for r in group
                              if text(r, "reference_method"))
            memory = number(reverse, "backward_peak_bytes") if reverse else None
            memory_method = text(reverse, "backward_memory_method") if reverse else ""
            if memory is not None and memory_method:
                memory_methods.add(memory_method)
            rows.append(_row(runs, run, [
                *_case_cells(head), text(head, "parameter") or "-",
                text(head, "objective") or "-",
                "-" if n_params is None else str(int(n_params)),
                text(head, "variant") or "-", status,
                _cell(rel_error(reverse), format_ratio),
                _cell(forward_vs_reverse(group), format_ratio),
                _cell(number(reverse, "rel_error_vs_best_fd") if reverse else None,
                      format_ratio),
                _cell(step, format_ratio), _cell(fd_error, format_ratio),
                _with_method(number(costs, "gradient_over_forward") if costs else None,
                             method),
                _with_method(number(costs, "fd_over_gradient") if costs else None, method),
                _cell(memory, format_bytes), reason]))
    if not rows:
        notes = ["No gradient cases in these runs: the table is empty."]
    else:
        reference = "; ".join(sorted(references)) or "the rows' reference_value"
        notes = [f"reverse vs ref.: |reverse-mode AD - reference| / |reference| (reference: "
                 f"{reference}); forward vs reverse: |forward - reverse| / |reverse|; reverse "
                 "vs best FD: the same against the FD value at the best step; best FD step: "
                 "the relative central-difference step with the smallest error vs the "
                 "reference (FD error); gradient / forward: time of one gradient of all P "
                 "parameters over one forward evaluation; FD / gradient: the FD gradient "
                 "(2P+1 evaluations) over the AD gradient; both from reverse mode, else the "
                 "method named; variant: P<count> (first quadrupoles, --scaling), "
                 "k<kicks> (space-charge kicks per element), ckpt (per-kick gradient "
                 "checkpointing); backward memory: peak memory of one forward + backward pass"
                 + (f" (measured as {', '.join(sorted(memory_methods))})."
                    if memory_methods else ".")]
    return Table("gradient", "Gradients", tuple(columns), tuple(align), tuple(rows),
                 tuple(notes))


def all_tables(runs: list[Run], baseline: str = "impactx") -> list[Table]:
    """Machine header, timing, agreement and gradient tables, in report order."""
    return [machine_table(runs), timing_table(runs, baseline), agreement_table(runs, baseline),
            gradient_table(runs, baseline)]


def machine_summary(runs: list[Run]) -> str:
    """One line naming the machines of the runs (short CPU names), for titles."""
    names = []
    for run in runs:
        cpu = (run.metadata.get("machine") or {}).get("cpu")
        name = short_cpu(cpu) if cpu else ""
        if name and name not in names:
            names.append(name)
    return " / ".join(names)
