"""The report's plots (matplotlib, Agg canvas, no pyplot state), saved as PNG and SVG.

* ``time-<scenario>``: median time per track and throughput vs N per backend (log-log);
* ``speedup-<scenario>``: speed-up over the baseline backend vs N;
* ``vcurve-<scenario>-<parameter>``: finite-difference error vs relative step, the
  reverse-mode error as a horizontal line;
* ``gradient-cost-<scenario>``: time of one gradient (AD and FD) vs number of parameters;
* ``backward-memory-<scenario>``: peak memory of the backward pass vs N.

A plot without data is not drawn; the reason is returned for the report. The SVG files are
byte-for-byte reproducible (fixed ``svg.hashsalt``, no date).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

from harness.display import format_count
from harness.model.vocabulary import Status
from harness.report.runs import (
    DEVICE_ORDER,
    DTYPE_ORDER,
    Run,
    machine_name,
    number,
    text,
)
from harness.report.tables import baseline_times, gradient_groups, rel_error, speedup

#: Colours of the backends (baseline first, then alphabetical), line styles, markers.
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
LINESTYLE = {"cpu": "-", "cuda": "--"}
MARKER = {"float64": "o", "float32": "s"}
#: Errors of exactly zero are drawn at this floor on log axes.
ERROR_FLOOR = 1e-17
#: Legend and margin sizes at 8 pt legend font [inch]: width of a character (DejaVu Sans
#: average), of the line sample and padding, height of a legend row; space for the x axis
#: label and tick labels, and for a two-line title.
LEGEND_CHAR_IN, LEGEND_HANDLE_IN, LEGEND_ROW_IN = 0.068, 0.6, 0.2
BOTTOM_IN, TOP_IN = 0.55, 0.7
RC: dict[RcKeyType, Any] = {"svg.hashsalt": "trackbench", "font.size": 9, "axes.titlesize": 10,
      "legend.fontsize": 8, "figure.dpi": 100}


#: Gradient methods in the cost plot: time column, legend name, line style.
COST_METHODS = {"reverse": ("time_gradient_s", "reverse AD", "-"),
                "forward": ("time_gradient_s", "forward AD", "-."),
                "fd": ("time_fd_s", "FD", "--")}
#: File-name prefixes of the plots (what a report may replace in its plot folder).
PLOT_PREFIXES = ("throughput-", "time-", "speedup-", "vcurve-", "gradient-cost-",
                 "backward-memory-")
#: Subplots per row of the one-page overview figures.
OVERVIEW_COLUMNS = 3


@dataclass(frozen=True)
class Plot:
    """A drawn plot: file stem (PNG and SVG under the plot folder), title and caption."""

    name: str
    title: str
    caption: str
    #: Whether the plot answers one of the report's headline questions (drawn in the
    #: "Figures" section before the appendix).
    headline: bool = False


@dataclass
class Series:
    """One line: a backend on one device, dtype and thread count, in one run."""

    label: str
    backend: str
    device: str
    dtype: str
    points: list[tuple[float, ...]]
    run_index: int = 0
    threads: float | None = None


def slug(value: str) -> str:
    """A file-name-safe lower-case form of a name (``fodo_linear`` -> ``fodo-linear``)."""
    from harness.names import file_name

    return file_name(re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "x")


def _series_key(row: dict[str, Any], run: Run, baseline: str) -> tuple:
    threads = number(row, "threads_requested")
    return (text(row, "backend") != baseline, text(row, "backend"),
            DEVICE_ORDER.get(text(row, "device"), 9), text(row, "device"),
            DTYPE_ORDER.get(text(row, "dtype"), 9), text(row, "dtype"),
            -1.0 if threads is None else threads, run.index)


def _label(row: dict[str, Any], run: Run, several_runs: bool, extra: str = "") -> str:
    label = f"{text(row, 'backend')} {text(row, 'device')} {text(row, 'dtype')}"
    threads = number(row, "threads_requested")
    if threads is not None:
        label += f" {int(threads)} thr."
    if extra:
        label += f" {extra}"
    if several_runs:
        label += f" [{run.label}]"
    return label


def _point(*values: float | None) -> tuple[float, ...] | None:
    """A point of a plot; None (the row is left out) when a coordinate was not measured."""
    point = tuple(value for value in values if value is not None)
    return point if len(point) == len(values) else None


def _quotient(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``; None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _floored(error: float | None) -> float | None:
    """An error as drawn on log axes: at least :data:`ERROR_FLOOR` (None stays None)."""
    return None if error is None else max(error, ERROR_FLOOR)


def _columns(*columns: str) -> Callable[[dict[str, Any]], tuple[float, ...] | None]:
    """A point function: the row's numbers in ``columns`` (see :func:`_point`)."""
    return lambda row: _point(*(number(row, column) for column in columns))


def _group(items: list[tuple[Run, dict[str, Any]]], baseline: str, several_runs: bool,
           point: Callable[[dict[str, Any]], tuple[float, ...] | None],
           extra: Callable[[dict[str, Any]], str] = lambda row: "",
           extra_key: Callable[[dict[str, Any]], tuple] = lambda row: ()) -> list[Series]:
    """Rows gathered into series (sorted), each series' points sorted by x."""
    series: dict[tuple, Series] = {}
    for run, row in items:
        value = point(row)
        if value is None:
            continue
        key = (*_series_key(row, run, baseline), *extra_key(row))
        if key not in series:
            series[key] = Series(_label(row, run, several_runs, extra(row)),
                                 text(row, "backend"), text(row, "device"), text(row, "dtype"),
                                 [], run.index, number(row, "threads_requested"))
        series[key].points.append(value)
    out = []
    for key in sorted(series):
        line = series[key]
        line.points = sorted(set(line.points))
        out.append(line)
    return out


class _Style:
    """Colour per backend, line style per device (dotted: CPU with 1 thread), marker per
    dtype; hollow markers for the second, fourth, ... run of a report."""

    def __init__(self, backends: list[str]):
        self.colour = {b: COLOURS[i % len(COLOURS)] for i, b in enumerate(backends)}

    def __call__(self, line: Series) -> dict[str, Any]:
        single_thread = line.threads == 1 and line.device == "cpu"
        return {"color": self.colour.get(line.backend, "black"),
                "linestyle": ":" if single_thread else LINESTYLE.get(line.device, ":"),
                "marker": MARKER.get(line.dtype, "^"), "markersize": 5 if line.run_index % 2
                else 4, "markerfacecolor": "white" if line.run_index % 2 else None}


def _backends(runs: list[Run], baseline: str) -> list[str]:
    names = {text(r, "backend") for run in runs for r in [*run.track, *run.gradient]}
    return sorted(names, key=lambda b: (b != baseline, b))


def _machine(runs: list[Run], rows: list[tuple[Run, dict[str, Any]]]) -> str:
    """Machines of the runs the rows come from (GPU named when a row ran on one)."""
    names = []
    for run in runs:
        mine = [row for owner, row in rows if owner is run]
        if not mine:
            continue
        name = machine_name(run, with_gpu=any(text(r, "device") == "cuda" for r in mine))
        if name not in names:
            names.append(name)
    return " / ".join(names)


def _log_axes(axes, xlabel: str, ylabel: str, title: str, xbase: float = 10) -> None:
    """Log-log axes with labels, title and a light major grid (every plot of the report)."""
    axes.set_xscale("log", base=xbase)
    axes.set_yscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)


def _legend_below(figure: Figure, axes, top: float = TOP_IN) -> None:
    """One legend under the axes, in as many columns as its labels fit; the figure grows
    by the legend's height so the axes keep theirs; ``top``: space for titles [inch]."""
    handles, labels = axes.get_legend_handles_labels()
    _place_legend(figure, handles, labels, top, max_columns=3)


def _place_legend(figure: Figure, handles: list, labels: list[str], top: float,
                  max_columns: int, **spacing: float) -> None:
    """The legend of ``handles`` and ``labels`` under the axes in at most ``max_columns``
    columns, as many as its labels fit; the figure grows by the legend's height [inch];
    ``top``: space for titles [inch]; ``spacing``: ``hspace``/``wspace`` of the grid."""
    width, height = figure.get_size_inches()
    longest = max((len(label) for label in labels), default=1)
    column_width = LEGEND_CHAR_IN * longest + LEGEND_HANDLE_IN  # [inch]
    columns = max(1, min(max_columns, len(labels), int(0.95 * width // column_width)))
    rows = -(-len(labels) // columns)
    legend_height = LEGEND_ROW_IN * rows + 0.1  # [inch]
    total = height + legend_height
    figure.set_size_inches(width, total)
    figure.legend(handles, labels, loc="lower center", ncol=columns, frameon=False)
    figure.subplots_adjust(bottom=(BOTTOM_IN + legend_height) / total, top=1 - top / total,
                           **spacing)


def _save(figure: Figure, directory: Path, name: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.png", directory / f"{name}.svg"]
    with matplotlib.rc_context(RC):
        figure.savefig(paths[0], dpi=150, metadata={"Software": None})
        figure.savefig(paths[1], metadata={"Date": None})
    return paths


def _figure(width: float = 6.4, height: float = 4.6, ncols: int = 1):
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(width, height))
        axes = figure.subplots(1, ncols)
    return figure, axes


def _log_figure(draw: Callable[[Any], None], xlabel: str, ylabel: str, title: str,
                xbase: float = 10, finish: Callable[[Any], Any] | None = None) -> Figure:
    """A figure of one log-log axes: ``draw(axes)`` its lines, then its labels, title and
    grid (:func:`_log_axes`), ``finish(axes)`` where given, and the legend below it."""
    with matplotlib.rc_context(RC):
        figure, axes = _figure()
        draw(axes)
        _log_axes(axes, xlabel, ylabel, title, xbase=xbase)
        if finish is not None:
            finish(axes)
        _legend_below(figure, axes)
    return figure


# --------------------------------------------------------------------------- tracking

def _ok_track(runs: list[Run]) -> list[tuple[Run, dict[str, Any]]]:
    return [(run, row) for run in runs for row in run.track
            if text(row, "status") == Status.OK and number(row, "time_median_s")
            and number(row, "particles")]


def _scenarios(items: list[tuple[Run, dict[str, Any]]]) -> list[str]:
    return sorted({text(row, "scenario") for _, row in items})


def _shared_legend(figure: Figure, axes_list, top: float = TOP_IN) -> None:
    """One legend under a grid of axes holding every label of every axes once."""
    handles, labels = [], []
    for axes in axes_list:
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    _place_legend(figure, handles, labels, top, max_columns=4, hspace=0.55, wspace=0.3)


def throughput_overview(runs: list[Run], directory: Path, baseline: str,
                        style: _Style) -> tuple[list[Plot], list[Path], list[str]]:
    """Throughput in particles/s through the whole lattice vs N, every scenario on one page
    (one panel per scenario, one legend)."""
    items = _ok_track(runs)
    if not items:
        return [], [], ["throughput overview: no ok tracking case."]
    scenarios = _scenarios(items)
    columns = min(OVERVIEW_COLUMNS, len(scenarios))
    grid_rows = -(-len(scenarios) // columns)
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(3.6 * columns + 0.6, 3.0 * grid_rows + 0.4))
        grid = figure.subplots(grid_rows, columns, squeeze=False)
        used = []
        for index, scenario in enumerate(scenarios):
            axes = grid[index // columns][index % columns]
            used.append(axes)
            rows = [(run, row) for run, row in items if text(row, "scenario") == scenario]
            lines = _group(rows, baseline, len(runs) > 1, lambda r: _point(
                number(r, "particles"),
                _quotient(number(r, "particles"), number(r, "time_median_s"))))
            for line in lines:
                axes.plot([p[0] for p in line.points], [p[1] for p in line.points],
                          label=line.label, **style(line))
            _log_axes(axes, "particles N", "particles/s", scenario)
        for index in range(len(scenarios), grid_rows * columns):
            grid[index // columns][index % columns].set_visible(False)
        figure.suptitle(f"Throughput through the whole lattice vs N\n{_machine(runs, items)}")
        _shared_legend(figure, used, top=TOP_IN + 0.1)
    name = "throughput-overview"
    paths = _save(figure, directory, name)
    return [Plot(name, "Throughput vs N, every scenario",
                 "Particles tracked through the whole lattice per second (N / median time of "
                 "one track) vs number of particles, one panel per scenario; colour: backend, "
                 "line: device (solid CPU, dotted CPU with 1 thread, dashed GPU), marker: "
                 "dtype (circle float64, square float32).", headline=True)], paths, []


def time_plots(runs: list[Run], directory: Path, baseline: str,
               style: _Style) -> tuple[list[Plot], list[Path], list[str]]:
    """Time per track and throughput vs N, one figure per scenario."""
    items = _ok_track(runs)
    if not items:
        return [], [], ["time and throughput vs N: no ok tracking case."]
    plots, paths = [], []
    several = len(runs) > 1
    for scenario in _scenarios(items):
        rows = [(run, row) for run, row in items if text(row, "scenario") == scenario]
        times = _group(rows, baseline, several, lambda r: _point(
            number(r, "particles"), number(r, "time_median_s"),
            number(r, "time_min_s") or number(r, "time_median_s"),
            number(r, "time_max_s") or number(r, "time_median_s")))
        rates = _group(rows, baseline, several, lambda r: _point(
            number(r, "particles"), _quotient(number(r, "particles"),
                                              number(r, "time_median_s"))))
        with matplotlib.rc_context(RC):
            figure, (left, right) = _figure(10.0, 4.8, ncols=2)
            for line in times:
                xs = [p[0] for p in line.points]
                ys = [p[1] for p in line.points]
                low = [p[1] - p[2] for p in line.points]
                high = [p[3] - p[1] for p in line.points]
                left.errorbar(xs, ys, yerr=[low, high], capsize=2, label=line.label,
                              **style(line))
            for line in rates:
                right.plot([p[0] for p in line.points], [p[1] for p in line.points],
                           label=line.label, **style(line))
            for axes, ylabel, title in (
                    (left, "median time per track [s]", "time per track (bars: min to max)"),
                    (right, "throughput [particles/s]", "throughput")):
                _log_axes(axes, "particles N", ylabel, title)
            figure.suptitle(f"{scenario}: tracking time vs N\n{_machine(runs, rows)}")
            _legend_below(figure, left, top=TOP_IN + 0.2)
            figure.subplots_adjust(wspace=0.3)
        name = f"time-{slug(scenario)}"
        paths += _save(figure, directory, name)
        plots.append(Plot(name, f"{scenario}: time per track and throughput vs N",
                          "Median time of one track (error bars: fastest to slowest timed "
                          "track) and throughput (particles through the lattice / median time) vs "
                          "number of particles; colour: backend, line: device (solid CPU, "
                          "dotted CPU with 1 thread, dashed GPU), marker: dtype (circle "
                          "float64, square float32)."))
    return plots, paths, []


def speedup_plots(runs: list[Run], directory: Path, baseline: str,
                  style: _Style) -> tuple[list[Plot], list[Path], list[str]]:
    """Speed-up over the baseline backend vs N, one figure per scenario."""
    items = []
    for run in runs:
        times = baseline_times(run, baseline)
        for row in run.track:
            value, against = speedup(row, times)
            if value is not None and text(row, "backend") != baseline:
                items.append((run, {**row, "_speedup": value, "_against": against}))
    if not items:
        return [], [], [f"speed-up vs {baseline}: no case with an ok {baseline} case at the "
                        "same scenario, N, device and dtype."]
    plots, paths = [], []
    for scenario in _scenarios(items):
        rows = [(run, row) for run, row in items if text(row, "scenario") == scenario]
        lines = _group(rows, baseline, len(runs) > 1,
                       lambda r: _point(number(r, "particles"), r["_speedup"]),
                       extra=lambda r: f"(vs {baseline} {r['_against']})" if r["_against"]
                       else "", extra_key=lambda r: (r["_against"],))
        def draw(axes, lines=lines) -> None:
            axes.axhline(1.0, color="black", linewidth=1, label=f"{baseline} (= 1)")
            for line in lines:
                axes.plot([p[0] for p in line.points], [p[1] for p in line.points],
                          label=line.label, **style(line))

        name = f"speedup-{slug(scenario)}"
        paths += _save(_log_figure(
            draw, "particles N", f"speed-up vs {baseline} (time {baseline} / time backend)",
            f"{scenario}: speed-up vs {baseline}\n{_machine(runs, rows)}"), directory, name)
        plots.append(Plot(name, f"{scenario}: speed-up vs {baseline}",
                          f"Median time of {baseline} over the backend's, same N, device and "
                          f"dtype (> 1: faster than the baseline); where {baseline} did not "
                          "run on that device or dtype, the legend names the case compared "
                          "with."))
    return plots, paths, []


# --------------------------------------------------------------------------- gradients

def _gradient_items(runs: list[Run]) -> list[tuple[Run, dict[str, Any]]]:
    return [(run, row) for run in runs for row in run.gradient
            if text(row, "status") in ("", Status.OK)]


def _scaling_case(row: dict[str, Any]) -> bool:
    """Whether a row belongs to a P-scaling case (variant ``P<count>``, maybe ``-k..``)."""
    variant = text(row, "variant").split("-")[0]
    return variant[:1] == "P" and variant[1:].isdigit()


def vcurve_plots(runs: list[Run], directory: Path, baseline: str,
                 style: _Style) -> tuple[list[Plot], list[Path], list[str]]:
    """FD error vs step with the reverse-mode error as a line, per scenario and parameter.

    Cases of a P-scaling sweep (variant ``P<count>``) are left out: they measure cost, and
    their parameters' V-curves would add one figure per quadrupole."""
    items = [(run, row) for run, row in _gradient_items(runs)
             if text(row, "method") == "fd" and number(row, "fd_step")
             and rel_error(row) is not None and not _scaling_case(row)]
    if not items:
        return [], [], ["FD error vs step (V-curve): no gradient rows with method fd "
                        "(outside P-scaling cases)."]
    reverse = {}
    for run in runs:
        for group in gradient_groups(run, baseline):
            for row in group:
                if text(row, "method") == "reverse" and rel_error(row) is not None:
                    reverse[_reverse_key(run, row)] = rel_error(row)
    plots, paths = [], []
    keys = sorted({(text(r, "scenario"), text(r, "parameter")) for _, r in items})
    for scenario, parameter in keys:
        rows = [(run, row) for run, row in items
                if (text(row, "scenario"), text(row, "parameter")) == (scenario, parameter)]
        lines = _group(rows, baseline, len(runs) > 1,
                       lambda r: _point(number(r, "fd_step"), _floored(rel_error(r))),
                       extra=_curve_extra, extra_key=_curve_key)
        ad_lines = {}
        for run, row in rows:
            value = reverse.get(_reverse_key(run, row))
            if value is not None:
                ad_lines[_label(row, run, len(runs) > 1, _curve_extra(row))] = value
        def draw(axes, lines=lines, ad_lines=ad_lines) -> None:
            for line in lines:
                shown = style(line)
                axes.plot([p[0] for p in line.points], [p[1] for p in line.points],
                          label=f"FD {line.label}", **shown)
                if line.label in ad_lines:
                    axes.axhline(max(ad_lines[line.label], ERROR_FLOOR), color=shown["color"],
                                 linestyle=":", linewidth=1.5,
                                 label=f"reverse AD {line.label}")

        name = f"vcurve-{slug(scenario)}-{slug(parameter)}"
        paths += _save(_log_figure(
            draw, "relative finite-difference step",
            "relative error of d objective / d parameter",
            f"{scenario}: gradient error vs FD step, {parameter}\n{_machine(runs, rows)}"),
            directory, name)
        plots.append(Plot(name, f"{scenario}: FD error vs step for {parameter}",
                          "Relative error of the central finite-difference gradient vs its "
                          "relative step (truncation error falls, round-off error rises); "
                          "dotted: reverse-mode AD error; errors of exactly 0 are drawn at "
                          f"{ERROR_FLOOR:g}."))
    return plots, paths, []


def _reverse_key(run: Run, row: dict[str, Any]) -> tuple:
    """The case and parameter a reverse-mode error belongs to."""
    return (run.index, text(row, "case_id"), text(row, "parameter"), text(row, "objective"))


def _curve_key(row: dict[str, Any]) -> tuple:
    return (text(row, "scenario"), text(row, "parameter"), text(row, "objective"),
            number(row, "particles") or 0.0, number(row, "n_params") or 0.0)


def _curve_extra(row: dict[str, Any]) -> str:
    particles = number(row, "particles")
    return f"N={format_count(particles)}" if particles else ""


def gradient_cost_plots(runs: list[Run], directory: Path, baseline: str,
                        style: _Style) -> tuple[list[Plot], list[Path], list[str]]:
    """Time of one gradient (reverse AD, forward AD, FD) vs number of parameters."""
    items = [(run, row) for run, row in _gradient_items(runs)
             if number(row, "n_params") and any(_cost_rows([row], method)
                                                for method in COST_METHODS)]
    scenarios = [s for s in _scenarios(items)
                 if len({number(r, "n_params") for _, r in items
                         if text(r, "scenario") == s}) > 1]
    if not scenarios:
        return [], [], ["gradient cost vs number of parameters: no scenario with gradient "
                        "rows at several n_params."]
    plots, paths = [], []
    for scenario in scenarios:
        rows = [(run, row) for run, row in items if text(row, "scenario") == scenario]
        def draw(axes, rows=rows) -> None:
            for method, (column, name, linestyle) in COST_METHODS.items():
                mine = [(run, r) for run, r in rows if _cost_rows([r], method)]
                for line in _group(mine, baseline, len(runs) > 1,
                                   _columns("n_params", column),
                                   extra=_curve_extra, extra_key=_particles_key):
                    points = _per_x(line.points)
                    axes.plot([p[0] for p in points], [p[1] for p in points],
                              label=f"{name} {line.label}",
                              **{**style(line), "linestyle": linestyle})

        name = f"gradient-cost-{slug(scenario)}"
        paths += _save(_log_figure(
            draw, "number of parameters P", "time of one gradient of all P parameters [s]",
            f"{scenario}: gradient cost vs P\n{_machine(runs, rows)}", xbase=2,
            finish=lambda axes: axes.xaxis.set_major_formatter(
                ticker.FuncFormatter(lambda value, _: f"{value:g}"))), directory, name)
        plots.append(Plot(name, f"{scenario}: gradient cost vs number of parameters",
                          "Time of one gradient of all P parameters: solid, reverse-mode "
                          "AD; dash-dot, forward-mode AD; dashed, central finite differences "
                          "(2P+1 objective evaluations).", headline=True))
    return plots, paths, []


def _cost_rows(rows: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    """Rows that time a method's gradient: AD rows of that method; for FD, every row of a
    case carries the FD gradient's time (``time_fd_s``)."""
    column = COST_METHODS[method][0]
    return [row for row in rows if number(row, column)
            and (method == "fd" or text(row, "method") == method)]


def _per_x(points: list[tuple[float, ...]]) -> list[tuple[float, float]]:
    """One point per x (the median y), for per-case columns repeated on parameter rows."""
    by_x: dict[float, list[float]] = {}
    for x, y in points:
        by_x.setdefault(x, []).append(y)
    return [(x, sorted(ys)[len(ys) // 2]) for x, ys in sorted(by_x.items())]


def _particles_key(row: dict[str, Any]) -> tuple:
    return (number(row, "particles") or 0.0,)


def _memory_extra(row: dict[str, Any]) -> str:
    """``P=<n_params> <variant>`` of a memory curve (either part left out when absent)."""
    n_params = number(row, "n_params")
    return " ".join(part for part in (f"P={int(n_params)}" if n_params else "",
                                      text(row, "variant")) if part)


def memory_plots(runs: list[Run], directory: Path, baseline: str,
                 style: _Style) -> tuple[list[Plot], list[Path], list[str]]:
    """Peak memory of the backward pass vs N, per scenario."""
    items = [(run, row) for run, row in _gradient_items(runs)
             if text(row, "method") == "reverse" and number(row, "backward_peak_bytes")
             and number(row, "particles")]
    if not items:
        return [], [], ["backward memory vs N: no reverse-mode gradient rows with "
                        "backward_peak_bytes."]
    plots, paths = [], []
    for scenario in _scenarios(items):
        rows = [(run, row) for run, row in items if text(row, "scenario") == scenario]
        lines = _group(rows, baseline, len(runs) > 1, lambda r: _point(
            number(r, "particles"), _quotient(number(r, "backward_peak_bytes"), 2**20)),
            extra=_memory_extra,
            extra_key=lambda r: (number(r, "n_params") or 0.0, text(r, "variant")))
        def draw(axes, lines=lines) -> None:
            for line in lines:
                points = _per_x(line.points)
                axes.plot([p[0] for p in points], [p[1] for p in points], label=line.label,
                          **style(line))

        name = f"backward-memory-{slug(scenario)}"
        paths += _save(_log_figure(
            draw, "particles N", "peak memory of the backward pass [MiB]",
            f"{scenario}: backward-pass memory vs N\n{_machine(runs, rows)}"), directory, name)
        plots.append(Plot(name, f"{scenario}: backward-pass memory vs N",
                          "Peak memory of one backward pass (reverse-mode gradient) vs number "
                          "of particles, per number of parameters P and case variant (k<n>: "
                          "space-charge kicks per element, ckpt: per-kick checkpointing).",
                          headline=len({number(r, "particles") for _, r in rows}) > 1))
    return plots, paths, []


def draw_all(runs: list[Run], directory: Path,
             baseline: str = "impactx") -> tuple[list[Plot], list[Path], list[str]]:
    """Every plot the runs have data for: (plots, files written, notes on plots skipped)."""
    style = _Style(_backends(runs, baseline))
    plots, paths, notes = [], [], []
    for draw in (throughput_overview, gradient_cost_plots, memory_plots, time_plots,
                 speedup_plots, vcurve_plots):
        drawn, written, skipped = draw(runs, directory, baseline, style)
        plots += drawn
        paths += written
        notes += skipped
    _remove_stale(directory, paths)
    return plots, paths, notes


def _remove_stale(directory: Path, written: list[Path]) -> None:
    """Delete plots of an earlier report in the folder that this report did not redraw."""
    if not directory.is_dir():
        return
    keep = {path.name for path in written}
    for path in directory.iterdir():
        if (path.suffix in (".png", ".svg") and path.name.startswith(PLOT_PREFIXES)
                and path.name not in keep):
            path.unlink()


__all__ = ["Plot", "draw_all"]
