"""The workloads' figures, drawn from their CSV files: reconstruction error against wall
time per method, settings/s against K per code, peak backward memory against each axis.

Each function reads the CSV a workload wrote in ``directory`` and writes a PNG beside it
(matplotlib, Agg); it returns the path, or None when the CSV has nothing to draw.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else float("nan")
    except ValueError:
        return float("nan")


def _series(rows: list[dict[str, str]], label: Callable[[dict[str, str]], str], x: str,
            y: str) -> dict[str, list[tuple[float, float]]]:
    """The ``(x, y)`` points of ``rows`` grouped by ``label(row)``, in row order."""
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        series.setdefault(label(row), []).append((_number(row[x]), _number(row[y])))
    return series


def _save(plt: Any, figure: Any, path: Path) -> Path:
    """Lay out ``figure``, write it to ``path`` (PNG, 120 dpi) and close it."""
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series_plot(rows: list[dict[str, str]], label: Callable[[dict[str, str]], str], x: str,
                 y: str, draw: Callable[[Any, str, list[tuple[float, float]]], Any]
                 ) -> tuple[Any, Any, Any]:
    """``(pyplot, figure, axes)``: one 7 x 4.5 inch axes with each series of
    :func:`_series` drawn by ``draw(axes, label, points)``."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, points in _series(rows, label, x, y).items():
        draw(axes, name, points)
    return plt, figure, axes


def plot_reconstruct(directory: Path) -> Path | None:
    """``reconstruction.png``: largest deviation from the reference answer (the analytic
    one where the problem has the closed form) against wall time [s], one line per method
    and backend (from ``trace.csv``)."""
    rows = _rows(directory / "trace.csv")
    if not rows:
        return None

    def draw(axes: Any, label: str, points: list[tuple[float, float]]) -> None:
        points = [(t, max(e, 1e-16)) for t, e in points if t > 0]
        if points:
            axes.step(*zip(*points, strict=True), where="post", label=label)

    plt, figure, axes = _series_plot(rows, lambda row: f"{row['method']} · {row['backend']}",
                                     "wall_s", "max_dev_analytic", draw)
    axes.axhline(1e-6, color="grey", linestyle=":", linewidth=1)
    axes.set(xscale="log", yscale="log", xlabel="wall time [s]",
             ylabel="max normalised deviation from the reference σ-matrix",
             title="Quad-scan reconstruction: error against time")
    axes.legend(fontsize=7)
    return _save(plt, figure, directory / "reconstruction.png")


def plot_batch(directory: Path) -> Path | None:
    """``settings_per_s.png``: settings/s against K, one line per code and mode."""
    rows = [r for r in _rows(directory / "batch.csv") if r.get("status") == "ok"]
    if not rows:
        return None
    plt, figure, axes = _series_plot(
        rows, lambda row: f"{row['backend']} {row['mode']}", "settings", "settings_per_s",
        lambda axes, label, points: axes.plot(*zip(*sorted(points), strict=True),
                                              marker="o", label=label))
    axes.set(xscale="log", yscale="log", xlabel="settings K",
             ylabel="settings / s", title="Many settings per call")
    axes.legend(fontsize=7)
    return _save(plt, figure, directory / "settings_per_s.png")


def plot_memory(directory: Path) -> Path | None:
    """``memory.png``: peak backward memory [MiB] against particles, kicks and cells, one
    panel per axis, one line per code and checkpoint mode."""
    rows = [r for r in _rows(directory / "memory.csv") if r.get("status") == "ok"]
    if not rows:
        return None
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter

    axes_names = [("particles", "particles"), ("kicks", "kicks"), ("grid", "cells")]
    figure, panels = plt.subplots(1, 3, figsize=(11, 3.8))
    for panel, (axis, column) in zip(panels, axes_names, strict=True):
        series: dict[str, list[tuple[float, float]]] = {}
        for row in rows:
            if row.get("axis") != axis:
                continue
            series.setdefault(f"{row['backend']} ckpt={row['checkpoint']}", []).append(
                (_number(row[column]), _number(row["backward_peak_bytes"]) / 2**20))
        for label, points in series.items():
            panel.plot(*zip(*sorted(points), strict=True), marker="o", label=label)
        panel.set(xscale="log", yscale="log", xlabel=column, ylabel="peak backward [MiB]")
        panel.xaxis.set_minor_formatter(NullFormatter())
        panel.yaxis.set_minor_formatter(NullFormatter())
    panels[0].legend(fontsize=7)
    figure.suptitle("Gradient memory with space charge")
    return _save(plt, figure, directory / "memory.png")
