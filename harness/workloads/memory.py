"""``trackbench grad-memory``: peak reverse-mode memory of a space-charge gradient against
particles N, kicks per element and mesh cells, per differentiable backend, with and
without per-kick checkpointing, and the fitted scaling exponent of each axis.

Each point is one forward + backward of the objective (``sigma_x`` at the lattice end)
with respect to the scenario's gradient parameters, through
:meth:`~backends.base.Backend.objective`; its memory is measured by
:func:`harness.gradients.backward_peak_bytes` (on the CPU the peak of the tensor memory
allocated during it, from the PyTorch profiler's memory timeline) next to
:func:`harness.gradients.saved_tensor_bytes` (the storage autograd keeps for the
backward). One axis varies at a time around a base point; the exponent is the slope of a
least-squares line through log(peak) against log(axis value) (cells: nx * ny * nz).
Memory in bytes, times in seconds.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from backends.registry import get_backend
from harness import gradients
from harness.model.particles import generate
from harness.model.scenario import Scenario
from harness.names import printable
from harness.workloads.plots import plot_memory
from harness.workloads.quad_scan import WorkloadError
from harness.workloads.report import machine_line, run_metadata, write_csv

#: The default axes (each with at least 4 points) and the base point they vary around.
DEFAULT_AXES: dict[str, list[int]] = {"particles": [500, 1000, 2000, 4000],
                                      "kicks": [1, 2, 4, 8],
                                      "grid": [8, 12, 16, 24]}
DEFAULT_BASE = {"particles": 1000, "kicks": 1, "grid": 16}
#: Backends that checkpoint each space-charge kick when the scenario asks for it.
CHECKPOINTING = ("inhouse",)


def variant(scenario: Scenario, kicks: int, grid: int, checkpoint: str) -> Scenario:
    """The scenario with ``kicks`` per element, a ``grid``^3 mesh and the checkpoint mode."""
    sc = scenario.space_charge
    if sc is None:
        raise WorkloadError(f"scenario {scenario.name}: expected a space_charge block")
    changed = sc.model_copy(update={"kicks_per_element": int(kicks),
                                    "grid": (int(grid),) * 3, "checkpoint": checkpoint})
    return scenario.model_copy(update={"space_charge": changed})


def point(backend_name: str, scenario: Scenario, particles: int, kicks: int, grid: int,
          checkpoint: str) -> dict[str, Any]:
    """One measurement: peak backward memory, saved-tensor bytes and the time of one
    forward + backward (after a warm-up)."""
    import torch

    row: dict[str, Any] = {"backend": backend_name, "checkpoint": checkpoint,
                           "particles": particles, "kicks": kicks, "grid": grid,
                           "cells": grid**3, "status": "ok"}
    backend = get_backend(backend_name)
    if checkpoint != "none" and backend_name not in CHECKPOINTING:
        row["status"] = f"unsupported: {backend_name} has no per-kick checkpointing"
        return row
    case = variant(scenario, kicks, grid, checkpoint)
    verdict = backend.supports(case)
    if not verdict:
        row["status"] = f"unsupported: {verdict.reason}"
        return row
    row["model"] = verdict.model
    params = list(case.gradients.parameters) if case.gradients else []
    if not params:
        raise WorkloadError(f"scenario {scenario.name}: expected gradients.parameters")
    made = backend.objective(case, params, "sigma_x", generate(case.beam, particles), "cpu",
                             "float64")
    if made is None:
        row["status"] = f"unsupported: {backend_name} gives no AD gradient"
        return row
    f, theta0 = made
    theta = theta0.clone().requires_grad_(True)

    def forward_backward() -> Any:
        return torch.autograd.grad(f(theta), theta)

    forward_backward()  # warm-up
    start = time.perf_counter()
    forward_backward()
    row["time_s"] = time.perf_counter() - start
    peak, how = gradients.backward_peak_bytes(forward_backward, "cpu")
    row["backward_peak_bytes"] = peak
    row["memory_measure"] = how
    row["saved_tensor_bytes"] = gradients.saved_tensor_bytes(lambda: f(theta))
    return row


def exponent(values: list[float], peaks: list[float]) -> float:
    """Slope of log(peak) over log(value) (least squares); NaN with fewer than 2 points."""
    pairs = [(v, p) for v, p in zip(values, peaks, strict=True) if v > 0 and p > 0]
    if len(pairs) < 2:
        return float("nan")
    x = np.log([v for v, _ in pairs])
    y = np.log([p for _, p in pairs])
    return float(np.polyfit(x, y, 1)[0])


def linear_fit(values: list[float], peaks: list[float]) -> tuple[float, float]:
    """``(intercept, slope)`` of peak = intercept + slope * value (least squares) [bytes,
    bytes per unit]; NaN with fewer than 2 points."""
    if len(values) < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.asarray(values, float), np.asarray(peaks, float), 1)
    return float(intercept), float(slope)


def fit_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per backend, checkpoint mode and axis: the points, the exponent and the line."""
    groups: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for row in rows:
        if row.get("status") != "ok":
            continue
        axis = row["axis"]
        x = float(row["cells"] if axis == "grid" else row[axis])
        key = (row["backend"], row["checkpoint"], "cells" if axis == "grid" else axis)
        groups.setdefault(key, []).append((x, float(row["backward_peak_bytes"])))
    fits = []
    for (backend, checkpoint, axis), points in groups.items():
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        intercept, slope = linear_fit(xs, ys)
        fits.append({"backend": backend, "checkpoint": checkpoint, "axis": axis,
                     "points": len(points), "exponent": exponent(xs, ys),
                     "intercept_bytes": intercept, "slope_bytes_per_unit": slope})
    return fits


def run(scenario: Scenario, *, backends: list[str], axes: dict[str, list[int]],
        base: dict[str, int], checkpoints: list[str], out: Path,
        say: Callable[[str], None] = print) -> dict[str, Any]:
    """Every backend x checkpoint x axis point; rows, exponents, written under ``out``."""
    if scenario.space_charge is None:
        raise WorkloadError(f"scenario {scenario.name}: expected a space_charge block")
    rows: list[dict[str, Any]] = []
    for backend_name in backends:
        for checkpoint in checkpoints:
            for axis, values in axes.items():
                for value in values:
                    settings = dict(base) | {axis: value}
                    try:
                        row = point(backend_name, scenario, settings["particles"],
                                    settings["kicks"], settings["grid"], checkpoint)
                    except WorkloadError:
                        raise
                    except Exception as error:  # noqa: BLE001 - a code's failure is a row
                        row = {"backend": backend_name, "checkpoint": checkpoint, **settings,
                               "status": f"failed: {type(error).__name__}: "
                               f"{printable(str(error))[:300]}"}
                    row["axis"] = axis
                    rows.append(row)
                    say(f"{backend_name:8s} ckpt={checkpoint:4s} {axis:9s}={value:<5d} "
                        f"{row['status'][:50]:50s} "
                        f"{row.get('backward_peak_bytes', float('nan')) / 2**20:9.1f} MiB")
    fits = fit_rows(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "memory.csv", rows)
    write_csv(out / "exponents.csv", fits)
    recorded = run_metadata()
    document: dict[str, Any] = {"scenario": scenario.name, "axes": axes, "base": base,
                                "metadata": recorded, "rows": rows, "exponents": fits}
    (out / "memory.json").write_text(json.dumps(document, indent=1, default=str) + "\n")
    (out / "memory.md").write_text(summary(scenario.name, axes, base, rows, fits,
                                           recorded))
    plot_memory(out)
    return document


def rewrite(out: Path) -> dict[str, Any]:
    """Refit and rewrite ``exponents.csv``, ``memory.json``, ``memory.md`` and the figure
    of a run directory from its recorded rows (the machine line as recorded)."""
    document = json.loads((out / "memory.json").read_text())
    fits = fit_rows(document["rows"])
    document["exponents"] = fits
    write_csv(out / "exponents.csv", fits)
    (out / "memory.json").write_text(json.dumps(document, indent=1, default=str) + "\n")
    (out / "memory.md").write_text(summary(document["scenario"], document["axes"],
                                           document["base"], document["rows"], fits,
                                           document["metadata"]))
    plot_memory(out)
    return document


def summary(name: str, axes: dict[str, list[int]], base: dict[str, int],
            rows: list[dict[str, Any]], fits: list[dict[str, Any]],
            recorded: dict[str, Any] | None = None) -> str:
    """The Markdown summary: the exponents and lines, then every point."""
    lines = [f"# Gradient memory scaling: {name}", "", machine_line(recorded), "",
             f"Base point: {base['particles']} particles, {base['kicks']} kick(s) per "
             f"element, {base['grid']}³ mesh; one axis varied at a time ("
             + "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in axes.items())
             + "). Peak: tensor memory allocated during one forward + backward (PyTorch "
             "profiler), float64 on the CPU. Exponent: slope of log(peak) over log(axis).",
             "Line: peak = intercept + slope × axis value (least squares).", "",
             "| backend | checkpoint | axis | points | exponent | intercept [MiB] | "
             "slope [KiB per unit] |", "|---|---|---|---|---|---|---|"]
    for fit in fits:
        lines.append(f"| {fit['backend']} | {fit['checkpoint']} | {fit['axis']} | "
                     f"{fit['points']} | {_fmt(fit['exponent'])} | "
                     f"{_fmt(fit['intercept_bytes'] / 2**20)} | "
                     f"{_fmt(fit['slope_bytes_per_unit'] / 2**10)} |")
    lines += ["", "| backend | checkpoint | particles | kicks | grid | peak [MiB] | "
              "saved [MiB] | time [s] | status |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['backend']} | {row['checkpoint']} | {row['particles']} | "
            f"{row['kicks']} | {row['grid']} | "
            f"{_fmt(row.get('backward_peak_bytes', math.nan) / 2**20)} | "
            f"{_fmt(row.get('saved_tensor_bytes', math.nan) / 2**20)} | "
            f"{_fmt(row.get('time_s'))} | {row['status'][:50]} |")
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, ".3g") if isinstance(value, float) else str(value)
