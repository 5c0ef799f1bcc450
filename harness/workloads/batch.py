"""``trackbench batch``: many parameter settings per call, per backend.

K settings of named parameters (default: every quadrupole's ``Kn1`` of the scenario) are
drawn around the scenario's values, ``value * (1 + spread * N(0, 1))`` (seeded), and each
backend evaluates the beam's final observables at all of them, from the same initial
particles (the scenario's seeded draw):

* ``vectorised`` (in-house): one call of :meth:`~backends.base.Backend.
  differentiable_observables` with a ``(K, P)`` batch of parameter sets, without gradients
  (an all-linear lattice is one composed 6x6 map per setting there,
  :mod:`backends.inhouse.composed`);
* ``vectorised+grad`` (in-house): the same call and one backward pass (the gradient of the
  sum of sigma_x over the settings with respect to all K x P parameters);
* ``loop`` (every backend): per setting, :meth:`~backends.base.Backend.prepare` of the
  scenario with that setting and :meth:`~backends.base.Prepared.track`;
* ``loop+grad`` (differentiable backends without a batch, e.g. Cheetah): per setting, the
  backend's differentiable observables and one backward pass.

A loop stops after ``budget`` seconds; its rate is then over the settings it did
(``settings_timed``). Agreement: on a seeded sample of the settings, each backend's final
observables against ImpactX's (largest relative difference).
Rates: settings/s and particles x settings/s [1/s]; times [s].
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
from harness.model import observables
from harness.model.parameters import resolve_parameters
from harness.model.particles import generate
from harness.model.scenario import Scenario
from harness.model.scenario_edit import with_values
from harness.names import printable
from harness.workloads.plots import plot_batch
from harness.workloads.quad_scan import WorkloadError
from harness.workloads.report import machine_line, run_metadata, write_csv

#: Observables compared per setting (all of them well away from zero in a beamline).
OBSERVED = ["sigma_x", "sigma_px", "sigma_y", "sigma_py", "emittance_x", "emittance_y"]
#: The backends that evaluate a batch of parameter sets in one call through the public API
#: (``differentiable_observables`` accepting ``theta`` of shape ``(K, P)``).
BATCHED = ("inhouse",)


def default_parameters(scenario: Scenario) -> list[str]:
    """``<quad>.Kn1`` of every distinct quadrupole of the lattice."""
    names = [f"{e.name}.Kn1" for e in scenario.elements if e.kind == "Quadrupole"]
    names = list(dict.fromkeys(names))
    if not names:
        raise WorkloadError(f"scenario {scenario.name}: no Quadrupole to vary; name "
                            "--params")
    return names


def draw_settings(scenario: Scenario, names: list[str], count: int, spread: float,
                  seed: int) -> np.ndarray:
    """``(count, P)`` seeded settings: each value times ``1 + spread * N(0, 1)``."""
    try:
        resolved = resolve_parameters(scenario, names)
    except KeyError as error:
        raise WorkloadError(f"--params: expected {error.args[0]}") from None
    beam = [p.name for p in resolved if p.target != "element"]
    if beam:
        raise WorkloadError(f"--params {beam}: expected element fields (qf.Kn1); beam "
                            "parameters change the particles, not the lattice")
    base = np.array([p.value for p in resolved])
    rng = np.random.default_rng(seed)
    return base * (1.0 + spread * rng.standard_normal((count, len(names))))


class Budget:
    """Wall-clock budget of a loop [s]."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def spent(self) -> bool:
        return time.perf_counter() - self.start > self.seconds


def loop_observables(backend: Any, scenario: Scenario, names: list[str],
                     settings: np.ndarray, particles: np.ndarray,
                     budget: Budget | None = None) -> tuple[np.ndarray, int]:
    """``((done, len(OBSERVED)), done)``: prepare + track per setting, until the budget."""
    rows = []
    for setting in settings:
        case = with_values(scenario, dict(zip(names, setting.tolist(), strict=True)))
        with backend.prepare(case) as prepared:
            final = prepared.track(particles)
        values = observables.compute_survivors(final, OBSERVED, scenario.reference_particle)
        rows.append([values[name] for name in OBSERVED])
        if budget is not None and budget.spent():
            break
    return np.array(rows), len(rows)


def _torch_rows(out: dict[str, Any]) -> np.ndarray:
    import torch

    return torch.stack([out[name].detach() for name in OBSERVED], dim=-1).numpy()


def measure(backend_name: str, mode: str, scenario: Scenario, names: list[str],
            settings: np.ndarray, particles: np.ndarray, budget_s: float, repeat: int,
            ) -> tuple[dict[str, Any], Callable[[np.ndarray], np.ndarray] | None]:
    """One backend, mode and K: its row, and a function giving its observables at given
    settings (for the agreement check), or None where it did not run."""
    import torch

    count = len(settings)
    row: dict[str, Any] = {"backend": backend_name, "mode": mode, "settings": count,
                           "particles": len(particles), "parameters": len(names),
                           "status": "ok", "settings_timed": 0, "wall_s": float("nan"),
                           "settings_per_s": float("nan"),
                           "particle_settings_per_s": float("nan")}
    backend = get_backend(backend_name)
    availability = backend.availability()
    if not availability.available:
        row["status"] = f"unsupported: {backend_name} is not installed ({availability.hint})"
        return row, None
    verdict = backend.supports(scenario)
    if not verdict:
        row["status"] = f"unsupported: {verdict.reason}"
        return row, None
    row["model"] = verdict.model
    if mode.startswith("vectorised") and backend_name not in BATCHED:
        row["status"] = (f"unsupported: {backend_name} takes one parameter set per call "
                         "through differentiable_observables")
        return row, None
    if mode != "loop" and not backend.differentiable:
        row["status"] = f"unsupported: {backend_name} gives no AD gradients"
        return row, None

    if mode == "loop":
        def evaluate(values: np.ndarray) -> np.ndarray:
            return loop_observables(backend, scenario, names, values, particles)[0]

        loop_observables(backend, scenario, names, settings[:1], particles)  # warm-up
        start = time.perf_counter()
        _, done = loop_observables(backend, scenario, names, settings, particles,
                                   Budget(budget_s))
        wall = time.perf_counter() - start
        return _rates(row, done, wall), evaluate

    made = backend.differentiable_observables(scenario, names, OBSERVED, particles, "cpu",
                                              "float64")
    if made is None:
        row["status"] = f"unsupported: {backend_name} gives no differentiable observables"
        return row, None
    g, _ = made

    def evaluate_ad(values: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            if backend_name in BATCHED:
                return _torch_rows(g(torch.as_tensor(values, dtype=torch.float64)))
            return np.array([_torch_rows(g(torch.as_tensor(v, dtype=torch.float64)))
                             for v in values])

    theta = torch.as_tensor(settings, dtype=torch.float64)
    if mode.startswith("vectorised"):
        def once() -> None:
            if mode == "vectorised":
                with torch.no_grad():
                    g(theta)
            else:
                batch = theta.clone().requires_grad_(True)
                g(batch)["sigma_x"].sum().backward()

        once()  # warm-up
        best = math.inf
        for _ in range(max(1, repeat)):
            start = time.perf_counter()
            once()
            best = min(best, time.perf_counter() - start)
        row["repeat"] = repeat
        return _rates(row, count, best), evaluate_ad

    # loop+grad: one parameter set per call, with a backward pass each
    def one(values: torch.Tensor) -> None:
        values = values.clone().requires_grad_(True)
        g(values)["sigma_x"].backward()

    one(theta[0])  # warm-up
    budget = Budget(budget_s)
    start = time.perf_counter()
    done = 0
    for values in theta:
        one(values)
        done += 1
        if budget.spent():
            break
    return _rates(row, done, time.perf_counter() - start), evaluate_ad


def _rates(row: dict[str, Any], done: int, wall: float) -> dict[str, Any]:
    row["settings_timed"] = done
    row["wall_s"] = wall
    row["settings_per_s"] = done / wall if wall > 0 else float("nan")
    row["particle_settings_per_s"] = row["settings_per_s"] * row["particles"]
    return row


#: Modes per backend: the batched backends vectorise; the differentiable others also loop
#: with a gradient; every backend loops.
def modes_for(backend_name: str) -> list[str]:
    """The modes measured for a backend (see the module docstring)."""
    try:
        cls = get_backend(backend_name)
    except KeyError as error:
        raise WorkloadError(f"--backends: {error.args[0]}") from None
    if backend_name in BATCHED:
        return ["vectorised", "vectorised+grad", "loop"]
    if cls.differentiable:
        return ["loop", "loop+grad"]
    return ["loop"]


def run(scenario: Scenario, *, names: list[str] | None, counts: list[int], spread: float,
        seed: int, particles: int, backends: list[str], budget_s: float, check: int,
        repeat: int, out: Path, say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every backend, mode and K; the rows, also written under ``out``."""
    if scenario.space_charge is not None:
        raise WorkloadError(f"scenario {scenario.name}: the batch workload tracks without "
                            "space charge (expected space_charge: null)")
    names = names or default_parameters(scenario)
    largest = max(counts)
    all_settings = draw_settings(scenario, names, largest, spread, seed)
    initial = generate(scenario.beam, particles)
    rng = np.random.default_rng(seed + 1)
    sample = np.sort(rng.choice(largest, size=min(check, largest), replace=False))
    reference = None
    impactx = get_backend("impactx")
    if impactx.availability().available and impactx.supports(scenario):
        reference = loop_observables(impactx, scenario, names, all_settings[sample],
                                     initial)[0]
    rows = []
    for backend_name in backends:
        for mode in modes_for(backend_name):
            evaluate = None
            for count in counts:
                try:
                    row, evaluate = measure(backend_name, mode, scenario, names,
                                            all_settings[:count], initial, budget_s, repeat)
                except Exception as error:  # noqa: BLE001 - a code's failure is a row
                    row = {"backend": backend_name, "mode": mode, "settings": count,
                           "particles": particles, "status": f"failed: {type(error).__name__}"
                           f": {printable(str(error))[:300]}"}
                rows.append(row)
                say(f"{backend_name:9s} {mode:16s} K={count:<5d} {row['status'][:60]:60s} "
                    f"{row.get('settings_per_s', float('nan')):10.1f} settings/s")
            if evaluate is not None and reference is not None and len(sample):
                try:
                    values = evaluate(all_settings[sample])
                    difference = float(np.max(np.abs(values / reference - 1.0)))
                except Exception as error:  # noqa: BLE001 - recorded, never a traceback
                    difference = float("nan")
                    say(f"{backend_name} {mode}: agreement check failed: {error}")
                for row in rows:
                    if row["backend"] == backend_name and row["mode"] == mode:
                        row["max_rel_diff_vs_impactx"] = difference
                        row["checked_settings"] = len(sample)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "batch.csv", rows)
    document = {"scenario": scenario.name, "parameters": names, "spread": spread,
                "seed": seed, "particles": particles, "counts": counts,
                "budget_s": budget_s, "checked_settings": sample.tolist(),
                "metadata": run_metadata(), "rows": rows}
    (out / "batch.json").write_text(json.dumps(document, indent=1, default=str) + "\n")
    (out / "batch.md").write_text(summary(scenario, names, spread, particles, rows))
    plot_batch(out)
    return rows


def summary(scenario: Scenario, names: list[str], spread: float, particles: int,
            rows: list[dict[str, Any]]) -> str:
    """The Markdown summary: one line per backend, mode and K; the acceptance ratio."""
    lines = [f"# Many settings per call: {scenario.name}", "", machine_line(), "",
             f"{len(names)} parameters varied ({', '.join(names[:4])}"
             f"{', ...' if len(names) > 4 else ''}), each value × (1 + {spread:g} N(0,1)), "
             f"{particles} particles per setting, float64 on the CPU. Loops stop after their "
             "time budget (settings timed < K).", "",
             "| backend | mode | K | settings timed | wall [s] | settings/s | "
             "particles·settings/s | max rel. diff vs ImpactX | status |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['backend']} | {row['mode']} | {row['settings']} | "
            f"{row.get('settings_timed', 0)} | {_fmt(row.get('wall_s'))} | "
            f"{_fmt(row.get('settings_per_s'))} | {_fmt(row.get('particle_settings_per_s'))} | "
            f"{_fmt(row.get('max_rel_diff_vs_impactx'))} | {row['status'][:60]} |")
    lines += ["", acceptance_line(rows), ""]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, ".3g") if isinstance(value, float) else str(value)


def acceptance_line(rows: list[dict[str, Any]]) -> str:
    """In-house vectorised vs looping ImpactX at the largest K both ran."""
    def rate(backend: str, mode: str) -> dict[int, float]:
        return {r["settings"]: r["settings_per_s"] for r in rows
                if r["backend"] == backend and r["mode"] == mode and r["status"] == "ok"}

    fast, slow = rate("inhouse", "vectorised"), rate("impactx", "loop")
    common = sorted(set(fast) & set(slow))
    if not common:
        return "Acceptance (in-house vectorised ≥ 50× looping ImpactX): not measured."
    k = common[-1]
    ratio = fast[k] / slow[k]
    return (f"Acceptance: at K = {k}, in-house vectorised {fast[k]:.4g} settings/s, ImpactX "
            f"loop {slow[k]:.4g} settings/s: {ratio:.1f}× "
            f"({'met' if ratio >= 50 else 'not met'}: ≥ 50× asked).")
