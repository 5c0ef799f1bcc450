"""The tuning section of the report: convergence plots and the time-to-target table.

From the ``tuning`` rows of run directories and their trace files
(:mod:`harness.tuning.case`):

* per problem, one figure with the convergence of every method × backend: the best value
  so far against evaluations and against wall time (the relative distance of the best point
  to the known optimum where the tolerance is on the parameters, else the objective);
* a table with, per case, the evaluations and wall time to reach the tolerance (or
  ``not reached`` with the best value), the final distance to the known optimum and the
  status;
* a speed-up table per problem: the time to target of the best gradient-based case over
  that of the best gradient-free case. When no gradient-free case reached the tolerance the
  speed-up is a lower bound, ``> x``: each such case spent at least its recorded time
  without reaching it.

A case that crashed or ran out of time keeps its trace: its best value comes from there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.report.render import markdown_table
from harness.report.tables import Table, format_reason
from harness.results import read_rows
from harness.tuning.objective import read_trace

PLOT_DIR = "plots"


def tuning_rows(run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """The tuning rows of the runs (last row per case), each with ``run_dir``."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for directory in run_dirs:
        for row in read_rows(Path(directory)):
            if row.get("kind") == "tuning":
                rows[(str(directory), row["case_id"])] = row | {"run_dir": str(directory)}
    return sorted(rows.values(), key=_order)


def _order(row: dict[str, Any]) -> tuple:
    problem = row.get("problem") or ""
    size = int(problem[1:]) if problem.startswith("P") and problem[1:].isdigit() else 0
    return (row.get("scenario", ""), size, row.get("method", ""), row.get("backend", ""))


def trace_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The evaluations of a case (empty when it made none)."""
    name = row.get("trace_file")
    if not name:
        from harness.tuning.case import trace_file

        name = trace_file(row["case_id"])
    return read_trace(Path(row["run_dir"]) / name)


def _method(row: dict[str, Any]) -> str:
    """The method of a row (from the case id for rows the runner wrote alone)."""
    if row.get("method"):
        return row["method"]
    from harness.tuning.case import parse_case_label

    return parse_case_label(row["case_id"].rsplit("/", 1)[-1])[1]


def _workers(row: dict[str, Any]) -> int:
    """Evaluations the case ran at once (1 unless it had an evaluation pool)."""
    from harness.tuning.case import parse_case_label

    return int(row.get("evaluation_workers")
               or parse_case_label(row["case_id"].rsplit("/", 1)[-1])[2])


def _method_label(row: dict[str, Any]) -> str:
    """The method as tables and plots name it: ``xopt-bo ×2`` with 2 evaluation workers."""
    workers = _workers(row)
    return _method(row) + (f" ×{workers}" if workers > 1 else "")


def _family(row: dict[str, Any]) -> str:
    from harness.tuning.methods import METHODS

    method = METHODS.get(_method(row))
    return row.get("family") or (method.family if method else "")


def _best_from_trace(trace: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """Best objective of a trace and the distance of that point."""
    best, distance = None, None
    for line in trace:
        value = line.get("objective")
        if value is not None and (best is None or value < best):
            best, distance = value, line.get("distance")
    return best, distance


def summary_frame(run_dirs: Sequence[Path]) -> pd.DataFrame:
    """One line per tuning case: what it reached, in how many evaluations and how long."""
    lines = []
    for row in tuning_rows(run_dirs):
        trace = trace_of(row)
        best, distance = row.get("best_objective"), row.get("final_distance")
        if best is None and trace:
            best, distance = _best_from_trace(trace)
        spent = row.get("optimise_s")
        if spent is None and trace:
            spent = trace[-1]["wall_s"]
        lines.append({
            "scenario": row["scenario"], "problem": row.get("problem") or "",
            "P": row.get("n_params"), "method": _method_label(row), "family": _family(row),
            "backend": row["backend"], "status": row["status"],
            "reached": bool(row.get("reached")),
            "evaluations_to_target": row.get("evaluations_to_target"),
            "time_to_target_s": row.get("time_to_target_s"),
            "evaluations": row.get("evaluations", len(trace) if trace else None),
            "time_s": spent, "best_objective": best, "final_distance": distance,
            "reason": row.get("reason") or "", "stop": row.get("stop") or ""})
    return pd.DataFrame(lines)


def _number(value: Any, digits: int = 3) -> str:
    if value is None or isinstance(value, float) and math.isnan(value):
        return "-"
    return f"{value:.{digits}g}"


def _time(value: Any) -> str:
    if value is None or isinstance(value, float) and math.isnan(value):
        return "-"
    return f"{value:.3g} s"


def case_table(frame: pd.DataFrame) -> Table:
    """Evaluations and time to target per case."""
    columns = ("scenario", "problem", "method", "family", "backend", "evaluations to target",
               "time to target", "evaluations", "time", "best objective",
               "distance to optimum", "status")
    rows = []
    for line in frame.to_dict("records"):
        status = line["status"]
        if status != "ok":
            status = f"{status}: {format_reason(line['reason'])}"
        reached = line["reached"]
        missed = "-" if line["status"] == "unsupported" else "not reached"
        rows.append((
            line["scenario"], line["problem"] or "-", line["method"], line["family"],
            line["backend"],
            str(int(line["evaluations_to_target"])) if reached else missed,
            _time(line["time_to_target_s"]) if reached else missed,
            _number(line["evaluations"], 6), _time(line["time_s"]),
            _number(line["best_objective"], 4), _number(line["final_distance"], 3), status))
    return Table("tuning-cases", "Tuning: evaluations and wall time to the tolerance",
                 columns, ("l", "l", "l", "l", "l", "r", "r", "r", "r", "r", "r", "l"),
                 tuple(rows), notes=(
                     "A gradient evaluation (objective and its reverse-mode gradient) counts "
                     "as one evaluation; its full cost is in the times. Times are from the "
                     "start of the optimisation (set-up and warm-up excluded). The distance "
                     "is the largest relative distance of the best point to the known "
                     "optimum.",))


def speedups(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per problem: the best gradient-based and gradient-free cases and the speed-up."""
    out: list[dict[str, Any]] = []
    if frame.empty:
        return out
    for (scenario, problem), group in frame.groupby(["scenario", "problem"], sort=False):
        entry: dict[str, Any] = {"scenario": scenario, "problem": problem,
                                 "P": group["P"].dropna().max()}
        for family in ("gradient", "gradient-free"):
            cases = group[(group["family"] == family) & (group["status"] != "unsupported")]
            reached = cases[cases["reached"]]
            if not reached.empty:
                best = reached.loc[reached["time_to_target_s"].idxmin()]
                entry[family] = (best["method"], best["backend"],
                                 float(best["time_to_target_s"]), True)
            elif not cases.empty and cases["time_s"].notna().any():
                # none reached: the best one needs more than the least time any one spent
                spent = cases.loc[cases["time_s"].idxmin()]
                entry[family] = (spent["method"], spent["backend"], float(spent["time_s"]),
                                 False)
        grad, free = entry.get("gradient"), entry.get("gradient-free")
        if grad and free and grad[3]:
            entry["speedup"] = free[2] / grad[2]
            entry["bound"] = not free[3]
        out.append(entry)
    return out


def speedup_table(frame: pd.DataFrame) -> Table:
    """The speed-up of the best gradient-based method over the best gradient-free one."""
    rows = []
    for entry in speedups(frame):
        cells = [entry["scenario"], entry["problem"] or "-",
                 _number(entry["P"], 3)]
        for family in ("gradient", "gradient-free"):
            best = entry.get(family)
            if best is None:
                cells += ["-", "-"]
            else:
                cells += [f"{best[0]} ({best[1]})",
                          _time(best[2]) if best[3] else f"not reached in {_time(best[2])}"]
        speed = entry.get("speedup")
        cells.append("-" if speed is None else
                     (f"> {speed:.3g}" if entry.get("bound") else f"{speed:.3g}"))
        rows.append(tuple(cells))
    return Table("tuning-speedup", "Tuning: best gradient-based vs best gradient-free",
                 ("scenario", "problem", "P", "best gradient-based", "time to target",
                  "best gradient-free", "time to target", "speed-up"),
                 ("l", "l", "r", "l", "r", "l", "r", "r"), tuple(rows), notes=(
                     "Speed-up: gradient-free time to target / gradient-based time to "
                     "target; '> x' when no gradient-free case reached the tolerance (x uses "
                     "the least time a gradient-free case spent without reaching it).",))


def _series(trace: list[dict[str, Any]], use_distance: bool) -> tuple[list, list, list]:
    """Evaluations, times and the best-so-far value (or its distance) of a trace."""
    evaluations, times, values = [], [], []
    best, distance = math.inf, None
    for line in trace:
        value = line.get("objective")
        if value is not None and value < best:
            best, distance = value, line.get("distance")
        shown = distance if use_distance else (best if math.isfinite(best) else None)
        if shown is None or shown <= 0:
            continue
        evaluations.append(line["evaluation"])
        times.append(max(line["wall_s"], 1e-4))
        values.append(shown)
    return evaluations, times, values


def convergence_plots(run_dirs: Sequence[Path], directory: Path) -> list[Path]:
    """One PNG and SVG per problem: best so far vs evaluations and vs wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = "trackbench"  # the same SVG for the same results

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in tuning_rows(run_dirs):
        groups.setdefault((row["scenario"], row.get("problem") or ""), []).append(row)
    for (scenario, problem), rows in groups.items():
        use_distance = any(r.get("tolerance_parameters") for r in rows)
        figure, (by_count, by_time) = plt.subplots(1, 2, figsize=(11, 4.4))
        drawn = 0
        for row in rows:
            trace = trace_of(row)
            evaluations, times, values = _series(trace, use_distance)
            if not values:
                continue
            style = "-" if _family(row) == "gradient" else "--"
            label = f"{_method_label(row)} / {row['backend']}"
            by_count.plot(evaluations, values, style, label=label, linewidth=1.2)
            by_time.plot(times, values, style, label=label, linewidth=1.2)
            drawn += 1
        if not drawn:
            plt.close(figure)
            continue
        what = ("relative distance of the best point to the optimum" if use_distance
                else "best objective so far")
        tolerance = next((r.get("tolerance_parameters") if use_distance
                          else r.get("tolerance_objective") for r in rows), None)
        for axes, xlabel in ((by_count, "evaluations"), (by_time, "wall time [s]")):
            axes.set_yscale("log")
            axes.set_xscale("log")
            axes.set_xlabel(xlabel)
            axes.set_ylabel(what)
            axes.grid(True, which="major", alpha=0.3)
            if tolerance:
                axes.axhline(tolerance, color="grey", linewidth=0.8, linestyle=":")
        title = f"{scenario}" + (f" {problem}" if problem else "")
        figure.suptitle(f"Tuning {title}: solid gradient-based, dashed gradient-free, "
                        "dotted the tolerance", fontsize=10)
        by_time.legend(fontsize=7, loc="best")
        figure.tight_layout()
        stem = f"tuning-{scenario}{'-' + problem if problem else ''}".replace("_", "-")
        for suffix in ("png", "svg"):
            path = directory / f"{stem}.{suffix}"
            metadata = {"Date": None} if suffix == "svg" else {"Software": None}
            figure.savefig(path, dpi=110, metadata=metadata)
            written.append(path)
        plt.close(figure)
    return written


def tuning_markdown(run_dirs: Sequence[Path], plots: Sequence[Path],
                    plot_prefix: str = PLOT_DIR) -> str:
    """The tuning section as Markdown (tables and plot links)."""
    frame = summary_frame(run_dirs)
    parts = ["## Tuning: gradient-based vs gradient-free optimisation", ""]
    if frame.empty:
        return "\n".join(parts + ["No tuning cases.", ""])
    from harness.report.runs import load_runs
    from harness.report.tables import machine_table

    parts += [markdown_table(machine_table(load_runs([Path(d) for d in run_dirs]))), ""]
    for table in (speedup_table(frame), case_table(frame)):
        parts += [f"### {table.title}", "", markdown_table(table), ""]
    for path in plots:
        if path.suffix == ".png":
            parts += [f"![{path.stem}]({plot_prefix}/{path.name})", ""]
    return "\n".join(parts)


def write_tuning_report(run_dirs: Sequence[Path], out: Path) -> list[Path]:
    """Write ``out/tuning.md`` and the convergence plots ``out/plots/tuning-*``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = convergence_plots(run_dirs, out / PLOT_DIR)
    path = out / "tuning.md"
    path.write_text(tuning_markdown(run_dirs, plots), encoding="utf-8")
    return [path, *plots]
