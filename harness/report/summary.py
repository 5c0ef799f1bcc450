"""The report's first screen: per run, scenarios as rows and backends as columns.

A reader of a paper asks two questions first — which code is fastest on which scenario, and
do the codes agree — so each run gets one compact table per measurement setting (device,
dtype, thread count): one row per scenario at the largest particle count the run has for
it, one column per backend, each cell the median time of one track, the speed-up over the
baseline code and a mark for the agreement verdict. Gradient runs get one compact table of
the gradient's accuracy and cost. The long per-case tables follow in the appendix.
"""

from __future__ import annotations

from typing import Any

from harness.display import format_count, format_ratio, format_time
from harness.model.vocabulary import Status, Verdict
from harness.report.runs import DEVICE_ORDER, DTYPE_ORDER, Run, number, text
from harness.report.tables import (
    Table,
    baseline_times,
    cost_row,
    gradient_groups,
    rel_error,
    speedup,
)

#: Mark of each verdict in a summary cell.
VERDICT_MARKS: dict[str, str] = {
    Verdict.AGREES: "✓",
    Verdict.DIFFERS: "✗",
    Verdict.MODEL_MISMATCH: "≈",
    Verdict.IS_REFERENCE: "ref",
    Verdict.NO_REFERENCE: "?",
}

MARK_NOTE = ("✓ agrees with the reference, ✗ differs, ≈ ran a named stand-in model "
             "(model-mismatch, never counted as a disagreement), ref: the reference case "
             "itself, ?: no reference; a status word (unsupported, failed, timeout, oom) "
             "where the case did not finish, - where it was not run")


def _setting_key(row: dict[str, Any]) -> tuple:
    threads = number(row, "threads_requested")
    return (DEVICE_ORDER.get(text(row, "device"), 9), text(row, "device"),
            DTYPE_ORDER.get(text(row, "dtype"), 9), text(row, "dtype"),
            -1.0 if threads is None else threads)


def _setting_label(key: tuple) -> str:
    _, device, _, dtype, threads = key
    thread_word = "all threads" if threads < 0 else f"{int(threads)} thread" + (
        "s" if threads != 1 else "")
    return f"{device}, {dtype}, {thread_word}"


def backend_order(rows: list[dict[str, Any]], baseline: str) -> list[str]:
    """Backends of the rows, the baseline first, then alphabetically."""
    names = {text(row, "backend") for row in rows if text(row, "backend")}
    return sorted(names, key=lambda name: (name != baseline, name))


def track_cell(row: dict[str, Any] | None, times: dict[tuple, float], baseline: str) -> str:
    """One backend's cell: ``time · speed-up mark`` for an ok case, else its status."""
    if row is None:
        return "-"
    status = text(row, "status")
    if status != Status.OK:
        return status or "-"
    median = number(row, "time_median_s")
    cell = format_time(median) if median else "-"
    value, against = speedup(row, times)
    if value is not None and text(row, "backend") != baseline:
        cell += f" · {format_ratio(value)}x" + (f" (vs {against})" if against else "")
    mark = VERDICT_MARKS.get(text(row, "verdict"), "")
    return f"{cell} {mark}".rstrip()


def track_summaries(run: Run, baseline: str = "impactx") -> list[Table]:
    """One compact table per measurement setting of the run's tracking cases."""
    settings: dict[tuple, list[dict[str, Any]]] = {}
    for row in run.track:
        settings.setdefault(_setting_key(row), []).append(row)
    times = baseline_times(run, baseline)
    tables = []
    for key in sorted(settings):
        rows = settings[key]
        backends = backend_order(rows, baseline)
        lines = []
        for scenario in sorted({text(row, "scenario") for row in rows}):
            mine = [row for row in rows if text(row, "scenario") == scenario]
            largest = max(number(row, "particles") or 0.0 for row in mine)
            at_n = {text(row, "backend"): row for row in mine
                    if (number(row, "particles") or 0.0) == largest}
            lines.append((scenario, format_count(largest) if largest else "-",
                          *(track_cell(at_n.get(b), times, baseline) for b in backends)))
        label = _setting_label(key)
        slug = label.replace(", ", "-").replace(" ", "")
        tables.append(Table(f"summary-{run.label}-{slug}", f"{run.label}: {label}",
                            ("scenario", "N", *backends), ("l", "r", *("r",) * len(backends)),
                            tuple(lines)))
    return tables


def gradient_cell(group_rows: list[list[dict[str, Any]]]) -> str:
    """Worst reverse-mode (else forward / FD) relative error over the parameters of one
    scenario and backend, with the cost of one gradient over one forward evaluation."""
    worst, cost, method = None, None, ""
    for group in group_rows:
        row, chosen = cost_row(group)
        if row is None:
            continue
        method = method or chosen
        error = rel_error(row)
        if error is not None and (worst is None or error > worst):
            worst = error
        ratio = number(row, "gradient_over_forward")
        if ratio is not None:
            cost = ratio if cost is None else max(cost, ratio)
    if worst is None and cost is None:
        statuses = sorted({text(r, "status") for g in group_rows for r in g} - {"", "ok"})
        return ", ".join(statuses) or "-"
    cell = "-" if worst is None else format_ratio(worst)
    if cost is not None:
        cell += f" · {format_ratio(cost)}x fwd"
    return cell + ("" if method in ("reverse", "") else f" ({method})")


def gradient_summary(run: Run, baseline: str = "impactx") -> list[Table]:
    """One compact table of gradient accuracy and cost (scenarios x backends)."""
    if not run.gradient:
        return []
    groups = gradient_groups(run, baseline)
    backends = backend_order(run.gradient, baseline)
    by_cell: dict[tuple[str, str], list[list[dict[str, Any]]]] = {}
    for group in groups:
        head = group[0]
        by_cell.setdefault((text(head, "scenario"), text(head, "backend")), []).append(group)
    lines = []
    for scenario in sorted({scenario for scenario, _ in by_cell}):
        lines.append((scenario, *(gradient_cell(by_cell.get((scenario, b), []))
                                  for b in backends)))
    notes = ("Cell: the largest relative error of the gradient against its reference over "
             "the scenario's parameters (reverse-mode AD; the method named otherwise, e.g. "
             "fd for a backend without AD) · the largest cost of one gradient of all "
             "parameters over one forward evaluation. Per-parameter values are in the "
             "appendix.",)
    return [Table(f"summary-{run.label}-gradients", f"{run.label}: gradient accuracy and cost",
                  ("scenario", *backends), ("l", *("r",) * len(backends)), tuple(lines),
                  notes)]


def summary_intro(baseline: str = "impactx") -> str:
    """What a summary cell holds (printed once above the summary tables)."""
    return ("Which code is fastest on which scenario, and do they agree: one table per run "
            "and measurement setting (device, dtype, threads), scenarios as rows, backends "
            "as columns. Tracking cell: median time of one track at the largest N of the "
            f"scenario in the run · speed-up over {baseline} (its time / the backend's, same "
            "scenario, N and setting, else the case named), then the agreement mark: "
            f"{MARK_NOTE}. Every case, with its reason, is in the appendix.")


def summary_tables(runs: list[Run], baseline: str = "impactx") -> list[Table]:
    """The summary tables of every run, in run order."""
    out: list[Table] = []
    for run in runs:
        out += track_summaries(run, baseline)
        out += gradient_summary(run, baseline)
    return out


__all__ = ["VERDICT_MARKS", "gradient_summary", "summary_intro", "summary_tables",
           "track_summaries"]
