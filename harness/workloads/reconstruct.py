"""``trackbench reconstruct``: run the quad-scan reconstruction methods and write their
results (``reconstruct.csv``, ``trace.csv``, ``reconstruct.json``, ``summary.md``).

One process runs every method one after the other (torch on the threads given, one by
default, so the times are per-core figures); a method that fails or a backend that cannot
run the scan is a row with its reason.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.workloads import fits
from harness.workloads import quad_scan as qs
from harness.workloads.plots import plot_reconstruct
from harness.workloads.report import machine_line, run_metadata, write_csv

#: Default scanned strengths [1/m^2]: through a waist in both planes of quad_scan.yaml.
DEFAULT_STRENGTHS = tuple(float(v) for v in np.linspace(-8.0, 8.0, 11))
#: Default methods, each on the backends it runs on.
DEFAULT_METHODS = ("gauss-newton", "lbfgs", "neldermead", "xopt-neldermead")


def parse_strengths(text: str | None) -> np.ndarray:
    """``a,b,c`` or ``start:stop:count`` [1/m^2] -> array; WorkloadError on bad input."""
    if text is None:
        return np.array(DEFAULT_STRENGTHS)
    try:
        if ":" in text:
            start, stop, count = text.split(":")
            if int(count) < 1:
                raise ValueError
            values = np.linspace(float(start), float(stop), int(count))
        else:
            values = np.array([float(v) for v in text.split(",") if v.strip()])
    except ValueError:
        raise qs.WorkloadError(f"--strengths {text!r}: expected comma-separated numbers "
                               "or start:stop:count (e.g. -8:8:11)") from None
    if not np.all(np.isfinite(values)) or np.any(np.abs(values) > 1e4):
        raise qs.WorkloadError(f"--strengths {text!r}: expected finite values within "
                               "+-1e4 1/m^2")
    return values


def run(scenario, *, strengths: np.ndarray, noise: float, noise_seed: int, particles: int,
        measure_particles: int, methods: list[str], backends: list[str],
        max_evaluations: int, out: Path, parameter: str | None = None,
        say: Callable[[str], None] = print, command: str | None = None) -> dict[str, Any]:
    """Make the problem, run every (method, backend), write the results under ``out``
    (``command``: the command line, recorded in ``reconstruct.json``)."""
    unknown = [m for m in methods if m not in fits.METHODS]
    if unknown:
        raise qs.WorkloadError(f"--methods: unknown {unknown}; expected some of "
                               f"{sorted(fits.METHODS)}")
    problem = qs.make_problem(scenario, strengths, noise, noise_seed, particles,
                              measure_particles, parameter)
    say(f"measured {len(strengths)} settings with ImpactX "
        f"({measure_particles} particles, noise {noise:g}) in {problem.measure_seconds:.2f} s")
    analytic = fits.run_analytic(problem)
    assert analytic.sigma is not None
    answer: np.ndarray = analytic.sigma
    closed = problem.closed_form
    results = [analytic]
    for method in methods:
        for backend in backends:
            started = time.perf_counter()
            result = fits.run_method(problem, method, backend,
                                     answer if closed else None, max_evaluations)
            results.append(result)
            row = result.row
            say(f"{method:15s} {backend:9s} {row['status'][:70]:70s} "
                f"{time.perf_counter() - started:7.2f} s")
    reference, source = _reference(problem, analytic, results)
    if not closed:
        results = [fits.finish(r, problem, reference) for r in results]
    rows = [r.row for r in results]
    traces = [t for r in results for t in fits.trace_rows(r, problem, reference)]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "reconstruct.csv", rows)
    write_csv(out / "trace.csv", traces)
    document = {"problem": problem_summary(problem), "metadata": run_metadata(),
                "command": command,
                "analytic": answer.tolist(), "reference": reference.tolist(),
                "reference_source": source, "rows": rows}
    (out / "reconstruct.json").write_text(json.dumps(document, indent=1, default=_plain)
                                          + "\n")
    (out / "summary.md").write_text(summary(problem, rows, source))
    plot_reconstruct(out)
    return document


def _reference(problem: qs.Problem, analytic: fits.MethodResult,
               results: list[fits.MethodResult]) -> tuple[np.ndarray, str]:
    """The reference answer every method's time to target is measured against, and where
    it comes from: the analytic answer where the problem has the closed form (a linear
    model); otherwise the final point of the fit with the lowest objective among those
    through a code that runs the scenario's own model (no stand-in), every such fit of
    the same objective converging to the same optimum; the analytic answer (biased there)
    when no fit ran."""
    assert analytic.sigma is not None
    if problem.closed_form:
        return analytic.sigma, "analytic (closed form of the linear model)"
    fits_run = [r for r in results[1:] if r.trace and r.row["status"] == "ok"
                and not str(r.row.get("model", "")).startswith("stand-in")
                and math.isfinite(r.row["objective"])]
    if not fits_run:
        return analytic.sigma, ("analytic (linear model, biased: no fit through the "
                                "scenario's model ran)")
    best = min(fits_run, key=lambda r: r.row["objective"])
    sigma = qs.model_sigma(problem, qs.twiss_of(best.trace[-1][2]))
    return sigma, (f"best fit: {best.row['method']} through {best.row['backend']} "
                   f"(objective {best.row['objective']:.6g}; no closed form for the "
                   f"{problem.scenario.model} model)")


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def problem_summary(problem: qs.Problem) -> dict[str, Any]:
    """The problem as plain data (scenario, scan, noise, truth, measurements)."""
    return {"scenario": problem.scenario.name, "model": problem.scenario.model,
            "closed_form": problem.closed_form, "parameter": problem.parameter,
            "strengths": problem.strengths.tolist(), "noise": problem.noise,
            "noise_seed": problem.noise_seed, "particles": problem.particles,
            "measure_particles": problem.measure_particles,
            "measured_sigma_x_y": problem.measured.tolist(),
            "truth_s11_s12_s22_x_y": problem.truth.tolist(),
            "truth_twiss": qs.twiss_from_sigma(problem.truth), "start_twiss": qs.START,
            "target": qs.TARGET}


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def summary(problem: qs.Problem, rows: list[dict[str, Any]],
            source: str = "analytic (closed form of the linear model)") -> str:
    """The Markdown summary: the problem, the reference answer (``source``), one line per
    method, the acceptance ratio."""
    lines = [f"# Quad-scan reconstruction: {problem.scenario.name}", "",
             f"{machine_line()}", "",
             f"Scanned `{problem.parameter}` at K = {len(problem.strengths)} strengths "
             f"({problem.strengths[0]:g} … {problem.strengths[-1]:g} 1/m²); measured "
             f"σx, σy by ImpactX from {problem.measure_particles} particles, relative noise "
             f"{problem.noise:g} (seed {problem.noise_seed}); model beam "
             f"{problem.particles} particles, {problem.scenario.model} model. Errors are "
             "normalised (|Δσij| / sqrt(σii σjj)); 'vs reference' is the largest over the "
             f"six elements; time to target: first time within {qs.TARGET:g} of the "
             f"reference answer. Reference answer: {source}.", "",
             "| method | backend | model | status | evaluations | gradients | wall [s] | "
             "time to target [s] | max dev vs reference | max err vs known beam | "
             "ε_x err | ε_y err | β_x err | α_x err |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    skipped: dict[str, list[str]] = {}
    for row in rows:
        if row["status"].startswith("unsupported"):
            skipped.setdefault(row["status"], []).append(f"{row['method']} on "
                                                         f"{row['backend']}")
            continue
        lines.append(
            f"| {row['method']} | {row['backend']} | {row.get('model', '—')} | "
            f"{row['status'][:60]} | "
            f"{row['evaluations']} | {row['gradients']} | {_fmt(row['wall_s'])} | "
            f"{_fmt(row.get('time_to_target_s'))} | {_fmt(row.get('max_dev_analytic'))} | "
            f"{_fmt(row.get('max_err_truth'))} | {_fmt(row.get('err_emittance_x'))} | "
            f"{_fmt(row.get('err_emittance_y'))} | {_fmt(row.get('err_beta_x'))} | "
            f"{_fmt(row.get('err_alpha_x'))} |")
    if skipped:
        lines += ["", "Not run:"] + [f"- {', '.join(pairs)}: {reason}"
                                     for reason, pairs in skipped.items()]
    lines += ["", acceptance_line(rows, source.split(" ")[0]), ""]
    return "\n".join(lines)


def acceptance_line(rows: list[dict[str, Any]], reference: str = "analytic") -> str:
    """In-house gradient time to target vs the best gradient-free time on ImpactX
    (``reference``: the name of the reference answer, "analytic" or "best")."""
    def best(match: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        found = [r for r in rows if match(r) and r.get("time_to_target_s") is not None]
        return min(found, key=lambda r: r["time_to_target_s"]) if found else None

    grad = best(lambda r: r["backend"] == "inhouse" and r["kind"] == "gradient")
    free = best(lambda r: r["backend"] == "impactx" and r["kind"] == "gradient-free")
    if grad is None or free is None:
        return ("Acceptance (in-house gradient ≥ 10× faster to 1e-6 than the best "
                "gradient-free method on ImpactX): not measured (a method did not reach "
                "the target or did not run).")
    ratio = free["time_to_target_s"] / grad["time_to_target_s"]
    answer = "the analytic answer" if reference == "analytic" else "the best fit's answer"
    return (f"Acceptance: in-house {grad['method']} reached {answer} to "
            f"{qs.TARGET:g} in {grad['time_to_target_s']:.3g} s, ImpactX "
            f"{free['method']} in {free['time_to_target_s']:.3g} s: {ratio:.1f}× "
            f"({'met' if ratio >= 10 else 'not met'}: ≥ 10× asked).")


__all__ = ["DEFAULT_STRENGTHS", "parse_strengths", "run", "write_csv"]

