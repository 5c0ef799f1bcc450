"""``trackbench reproduce napac25|impactx-benchmarks``: a published comparison, measured
here beside its published figures.

The published figures (:mod:`harness.published`, ``results/published/<paper>.yaml``) say
what each figure measured: scenario, device, precision, threads and particle counts. This
module turns them into cases of the ordinary runner (:mod:`harness.runner`, each case a
fresh process with time and memory limits, as ``trackbench run``), adds an agreement set
(every backend in float64 against ImpactX float64 with the same initial particles), runs
them into one run directory, and writes, per figure, the published value beside the value
measured here, with same-run ratios:

* speed-up over eager Cheetah (the paper's normalisation, its bar labels), published and
  here, and over ImpactX (here);
* the in-house tracker as an extra row per particle count;
* both timers: process CPU time (the paper's ``time.process_time_ns``) and wall time;
* footnotes wherever the setting here differs from the paper's (precision, build,
  versions, hardware and machine load, timer statistic, beam).

Figures on a GPU are run when CUDA is available, otherwise their table says ``not run: no
GPU``. Outputs in the run directory: ``results.jsonl`` / ``results.csv`` (the runner's rows),
``metadata.json``, ``load.json`` (load average before and after), ``reproduce.md`` (the
tables), ``reproduce.csv`` (the same cells as data) and ``plots/<figure>.png``.

``impactx-benchmarks`` (the benchmark's 2026 record, :func:`is_benchmark`) is planned and
presented its own way: every published figure is a table; figures whose scenario no bundled
file states say ``not stated: <why>``, GPU figures ``not run: no GPU`` without CUDA; the CPU
figures run on one core with one thread (the published cells are a 64-core socket, stated
in every cell) with the backends of :data:`IB_DEFAULT_BACKENDS` (compiled Cheetah when
named); fast-math figures measure only backends with a fast-math setting; each measured
cell carries the benchmark's class (:mod:`harness.benchmark_rule`) beside trackbench's
particle-by-particle verdict. No plots.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.published import Published
from harness.report.reproduction import (  # noqa: F401 - the reproduction's names
    BACKENDS,
    CROSS_CODE_TOLERANCE,
    HEADLINE_CELLS,
    IB_BACKENDS,
    IB_DEFAULT_BACKENDS,
    IB_FAST_MATH,
    LABELS,
    NAPAC25_MATH,
    FigurePlan,
    agreement_cells,
    benchmark_verdict,
    figure_cells,
    headline_markdown,
    ib_figure_cells,
    ib_render_markdown,
    load_runs,
    render_markdown,
    setting_footnotes,
    write_plots,
)

#: Particle count of the float64 agreement set.
AGREEMENT_PARTICLES = 10_000


@dataclass
class Reproduction:
    """A planned reproduction: figure plans, the runner's cases and the scenarios."""

    published: Published
    plans: list[FigurePlan]
    cases: list = field(default_factory=list)
    scenarios: dict[str, Any] = field(default_factory=dict)


def is_benchmark(published: Published) -> bool:
    """Whether the published file is a per-machine record of impactx-benchmarks (its
    ``history/<utc>_<machine>/<machine>.yaml``) rather than a paper's figures."""
    return published.source.file.startswith("history/")


def _benchmark_plans(published: Published, chosen: Sequence[str],
                     particles: Sequence[int] | None, cuda: bool) -> list[FigurePlan]:
    """impactx-benchmarks: one plan per figure, one thread per case (a per-core figure)."""
    plans = []
    for name in chosen:
        fig = published.figures[name]
        not_run = ""
        if fig.not_reproducible:
            not_run = f"not stated: {fig.not_reproducible}"
        elif fig.device == "cuda" and not cuda:
            not_run = "not run: no GPU"
        # a figure that does not run keeps its published counts (nothing is overridden)
        counts = (sorted({int(n) for n in particles}) if particles and not not_run
                  else list(fig.particles))
        plans.append(FigurePlan(name, fig.scenario, fig.device, fig.dtype, 1, counts, not_run))
    return plans


def figure_plans(published: Published, figures: Sequence[str] | None = None,
                 particles: Sequence[int] | None = None,
                 cuda: bool | None = None) -> list[FigurePlan]:
    """One plan per published figure (its scenario, device, dtype, threads and particle
    counts, or ``particles`` to override them), then the float64 agreement set on HTU
    (napac25; impactx-benchmarks judges every cell against its ImpactX reference case)."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    chosen = list(figures) if figures else list(published.figures)
    unknown = [f for f in chosen if f not in published.figures]
    if unknown:
        raise KeyError(f"unknown figure {unknown[0]!r}; known: {', '.join(published.figures)}")
    if is_benchmark(published):
        return _benchmark_plans(published, chosen, particles, cuda)
    plans = []
    for name in chosen:
        fig = published.figures[name]
        counts = sorted({int(n) for n in particles}) if particles else list(fig.particles)
        not_run = "not run: no GPU" if fig.device == "cuda" and not cuda else ""
        plans.append(FigurePlan(name, fig.scenario, fig.device, fig.dtype, fig.threads,
                                counts, not_run))
    htu = [p for p in plans if p.scenario == "htu" and not p.not_run]
    if htu:
        n = min([AGREEMENT_PARTICLES, *(particles or [])]) if particles else AGREEMENT_PARTICLES
        plans.append(FigurePlan("agreement", "htu", "cpu", "float64", 1, [n]))
    return plans


def plan_reproduction(published: Published, plans: Sequence[FigurePlan], repeat: int,
                      backends: Sequence[str] | None = None,
                      available: Sequence[str] | None = None) -> Reproduction:
    """The runner's cases of the figure plans (reference cases first, duplicates once)."""
    from backends.registry import available_backends
    from harness.cases import plan
    from harness.model.load import load_scenario

    available = list(available if available is not None else available_backends())
    default = IB_DEFAULT_BACKENDS if is_benchmark(published) else BACKENDS
    chosen = [b for b in (backends or default) if b in available]
    out = Reproduction(published, list(plans))
    seen: set[str] = set()
    for fig in plans:
        if fig.not_run:
            continue
        # (backends, math setting) groups: a fast-math figure of the benchmark runs only the
        # codes with a fast-math setting here, with it (the others: "not run: no fast-math
        # setting"); napac25's compiled Cheetah is the paper's fast-math build
        if is_benchmark(published):
            groups = ([([b for b in chosen if b in IB_FAST_MATH], "fast")]
                      if fig.figure.endswith("_fm") else [(chosen, "ieee")])
        else:
            groups = [([b for b in chosen if b not in NAPAC25_MATH], "ieee"),
                      ([b for b in chosen if b in NAPAC25_MATH], "fast")]
        scenario = out.scenarios.get(fig.scenario) or load_scenario(fig.scenario)
        out.scenarios[fig.scenario] = scenario
        for mine, math in groups:
            if not mine:
                continue
            for case in plan([scenario], mine, fig.particles, [fig.device], [fig.dtype],
                             repeat, available, [fig.threads], maths=(math,)):
                if case.case_id not in seen:
                    seen.add(case.case_id)
                    out.cases.append(case)
    return out


def load_average() -> dict[str, Any]:
    """The machine's load: ``os.getloadavg`` and the ``uptime`` line."""
    try:
        line = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        line = ""
    one, five, fifteen = os.getloadavg()
    return {"load_1min": one, "load_5min": five, "load_15min": fifteen,
            "uptime": line.strip(), "cpus": os.cpu_count()}


def write_outputs(directory: Path, reproduction: Reproduction, repeat: int | None) -> Path:
    """``reproduce.md``, ``reproduce.csv`` and the plots from the run directory's rows."""
    import json

    from harness import results

    rows = results.read_rows(directory)
    # every figure gets its table: the ones this invocation did not run show the rows an
    # earlier invocation stored in the directory (``--resume``), or "not measured"
    plans = {p.figure: p for p in figure_plans(reproduction.published, None, None)}
    plans |= {p.figure: p for p in reproduction.plans}
    reproduction = Reproduction(reproduction.published, list(plans.values()),
                                reproduction.cases, reproduction.scenarios)
    meta_path = directory / "metadata.json"
    machine = json.loads(meta_path.read_text()).get("machine", {}) if meta_path.exists() else {}
    load_path = directory / "load.json"
    load = json.loads(load_path.read_text()) if load_path.exists() else {}
    if is_benchmark(reproduction.published):
        text = ib_render_markdown(reproduction.published, reproduction.plans, rows, machine,
                                  load, repeat)
        return _write_report(directory, reproduction, rows, text, ib_figure_cells)
    plots = write_plots(reproduction.published, reproduction.plans, rows, directory / "plots")
    text = render_markdown(reproduction.published, reproduction.plans, rows, machine, load,
                           repeat, plots)
    return _write_report(directory, reproduction, rows, text, figure_cells)


def _write_report(directory: Path, reproduction: Reproduction, rows: Sequence[dict],
                  text: str, cells_of: Callable[..., list[dict[str, Any]]]) -> Path:
    """Write ``reproduce.md`` (``text``) and ``reproduce.csv`` (the cells ``cells_of``
    gives each published figure, its notes joined) into ``directory``."""
    import pandas as pd

    (directory / "reproduce.md").write_text(text)
    by_plan = {p.figure: p for p in reproduction.plans}
    cells = [c | {"notes": " ".join(c["notes"])}
             for fig_id, fig in reproduction.published.figures.items()
             for c in cells_of(fig_id, fig, by_plan.get(fig_id), rows)]
    pd.DataFrame(cells).to_csv(directory / "reproduce.csv", index=False)
    return directory / "reproduce.md"


def run_reproduction(reproduction: Reproduction, directory: Path, limits, resume: bool,
                     on_row=None, on_start=None) -> None:
    """Run the cases through the runner, recording the machine load before and after."""
    import json
    import sys

    from harness import metadata
    from harness.runner import Runner

    directory.mkdir(parents=True, exist_ok=True)
    started = metadata.now()
    runner = Runner(directory, limits, resume=resume, on_row=on_row, on_start=on_start)
    if not runner.pending(reproduction.cases):
        return  # nothing to run: the record of the earlier run stays as it is
    load_path = directory / "load.json"
    runs = load_runs(json.loads(load_path.read_text())) if load_path.exists() else []
    entry = {"figures": [p.figure for p in reproduction.plans if not p.not_run],
             "started": started, "before": load_average()}
    runner.run(reproduction.cases, reproduction.scenarios)
    runner.clear_cache()
    entry |= {"finished": metadata.now(), "after": load_average()}
    load_path.write_text(json.dumps({"runs": [*runs, entry]}, indent=1) + "\n")
    metadata.write(directory, metadata.collect(sys.argv, started))


if __name__ == "__main__":
    import sys

    print(headline_markdown(Path(sys.argv[1])), end="")
