"""``trackbench reconstruct`` and ``trackbench batch``: the workloads differentiable codes
are for (:mod:`harness.workloads`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import (
    AvailableBackends,
    CodeThreads,
    app,
    console,
    fail,
    split_list,
)


def _out(out: Path | None, kind: str) -> Path:
    if out is not None:
        if out.exists() and not out.is_dir():
            fail(f"--out {out}: expected a directory (it is a file)")
        return out
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / "workloads" / f"{kind}-{stamp}"


def _threads(threads: int) -> None:
    """Every code on ``threads`` threads: torch's pool, and ``OMP_NUM_THREADS``, which the
    OpenMP codes (Xsuite, RF-Track, ImpactX builds with OpenMP) read when they start."""
    import os

    import torch

    if threads < 1:
        fail(f"--threads {threads}: expected a whole number >= 1")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def _command() -> str:
    """The command line as typed (``trackbench <command> <options>``), for the record."""
    import shlex
    import sys

    return shlex.join(["trackbench", *sys.argv[1:]])


def _scenario(name: str):
    from harness.model.errors import ScenarioError
    from harness.model.load import load_scenario

    try:
        return load_scenario(name)
    except ScenarioError as error:
        fail(str(error))


def _backends(text: str | None) -> list[str]:
    from backends.registry import available_backends

    available = available_backends()
    if text is None:
        return [b for b in available if b != "cheetah-compiled"]
    names = split_list(text)
    if not names:
        fail(f"--backends {text!r}: expected comma-separated backend ids")
    return names


def _positive(value: float, option: str, *, whole: bool = False) -> None:
    import math

    if not math.isfinite(value) or value <= 0 or (whole and value != int(value)):
        fail(f"{option} {value}: expected a {'whole number' if whole else 'number'} > 0")


@app.command()
def reconstruct(
    scenario: Annotated[str, typer.Argument(
        help="Quad-scan scenario (bundled name or file).")] = "quad_scan",
    strengths: Annotated[str | None, typer.Option(
        help="Scanned strengths [1/m^2]: a,b,c or start:stop:count (default -8:8:11).")] = None,
    parameter: Annotated[str | None, typer.Option(
        help="Scanned parameter (default: the first quadrupole's Kn1).")] = None,
    noise: Annotated[float, typer.Option(
        help="Relative rms noise on each measured size (seeded).")] = 0.01,
    noise_seed: Annotated[int, typer.Option(help="Seed of the noise.")] = 1,
    particles: Annotated[int, typer.Option(
        help="Particles of the model beam the fits track.")] = 1000,
    measure_particles: Annotated[int, typer.Option(
        help="Particles of the measured (known) beam.")] = 10000,
    methods: Annotated[str, typer.Option(
        help="Comma-separated: gauss-newton, lbfgs, neldermead, xopt-neldermead (the "
        "analytic answer always runs).")] = "gauss-newton,lbfgs,neldermead,xopt-neldermead",
    backends: AvailableBackends = None,
    max_evaluations: Annotated[int, typer.Option(
        help="Objective evaluations at most per method.")] = 2000,
    threads: CodeThreads = 1,
    out: Annotated[Path | None, typer.Option(
        help="Output directory (default: results/workloads/reconstruct-<UTC time>).")] = None,
) -> None:
    """Reconstruct a beam's initial sigma-matrix from a quadrupole scan, by every method."""
    from harness.workloads import reconstruct as workload
    _threads(threads)
    for value, option in ((particles, "--particles"), (measure_particles,
                          "--measure-particles"), (max_evaluations, "--max-evaluations")):
        _positive(value, option, whole=True)
    if noise < 0 or noise >= 0.5:
        fail(f"--noise {noise}: expected 0 <= noise < 0.5")
    loaded = _scenario(scenario)
    directory = _out(out, "reconstruct")
    _finish(lambda: workload.run(
        loaded, strengths=workload.parse_strengths(strengths), noise=noise,
        noise_seed=noise_seed, particles=particles, measure_particles=measure_particles,
        methods=split_list(methods), backends=_backends(backends),
        max_evaluations=max_evaluations, out=directory, parameter=parameter,
        say=console.print, command=_command()), directory, "summary.md",
        "reconstruct.csv, trace.csv, reconstruct.json, summary.md, reconstruction.png")


@app.command()
def batch(
    scenario: Annotated[str, typer.Argument(
        help="Scenario (bundled name or file).")] = "fodo_channel",
    params: Annotated[str | None, typer.Option(
        help="Comma-separated element parameters to vary (default: every quad's Kn1).")
    ] = None,
    settings: Annotated[str, typer.Option(
        help="Comma-separated numbers of settings K.")] = "1,10,100,1000",
    spread: Annotated[float, typer.Option(
        help="Relative rms spread of the draws around the scenario's values.")] = 0.01,
    seed: Annotated[int, typer.Option(help="Seed of the draws.")] = 1,
    particles: Annotated[int, typer.Option(help="Particles per setting.")] = 1000,
    backends: AvailableBackends = None,
    budget: Annotated[float, typer.Option(
        help="Seconds at most per loop (its rate is over the settings done).")] = 60.0,
    check: Annotated[int, typer.Option(
        help="Settings of the seeded sample compared with ImpactX.")] = 5,
    repeat: Annotated[int, typer.Option(
        help="Timed calls of a vectorised case (the fastest counts).")] = 3,
    threads: CodeThreads = 1,
    out: Annotated[Path | None, typer.Option(
        help="Output directory (default: results/workloads/batch-<UTC time>).")] = None,
) -> None:
    """Settings per second at K settings per backend: vectorised, looped, with gradients."""
    from harness.workloads import batch as workload
    _threads(threads)
    try:
        counts = [int(v) for v in split_list(settings)]
    except ValueError:
        fail(f"--settings {settings!r}: expected comma-separated whole numbers")
    if not counts or any(c < 1 or c > 100_000 for c in counts):
        fail(f"--settings {settings!r}: expected whole numbers from 1 to 100000")
    _positive(particles, "--particles", whole=True)
    _positive(budget, "--budget")
    _positive(repeat, "--repeat", whole=True)
    if check < 0:
        fail(f"--check {check}: expected a whole number >= 0")
    if not 0 <= spread < 1:
        fail(f"--spread {spread}: expected 0 <= spread < 1")
    loaded = _scenario(scenario)
    directory = _out(out, "batch")
    names = split_list(params) or None
    _finish(lambda: workload.run(
        loaded, names=names, counts=sorted(set(counts)), spread=spread, seed=seed,
        particles=particles, backends=_backends(backends), budget_s=budget, check=check,
        repeat=repeat, out=directory, say=console.print), directory, "batch.md",
        "batch.csv, batch.json, batch.md, settings_per_s.png")


def _finish(run: Callable[[], object], directory: Path, summary: str | None, files: str,
            key_errors: bool = False) -> None:
    """Run a workload: its ``WorkloadError`` (and, with ``key_errors``, a ``KeyError``) is
    one line; then the last line of its ``summary`` file and the ``files`` it wrote."""
    from harness.workloads.quad_scan import WorkloadError

    refused: tuple[type[Exception], ...] = (WorkloadError, KeyError) if key_errors else (
        WorkloadError,)
    try:
        run()
    except refused as error:
        fail(str(error.args[0] if isinstance(error, KeyError) else error))
    if summary is not None:
        console.print((directory / summary).read_text().splitlines()[-1])
    console.print(f"results: {directory}/ ({files})")


def _axis(text: str | None, option: str, default: list[int]) -> list[int]:
    if text is None:
        return default
    try:
        values = [int(v) for v in split_list(text)]
    except ValueError:
        fail(f"{option} {text!r}: expected comma-separated whole numbers")
    if not values or any(v < 1 for v in values):
        fail(f"{option} {text!r}: expected whole numbers >= 1")
    return values


@app.command("grad-memory")
def grad_memory(
    scenario: Annotated[str, typer.Argument(
        help="Space-charge scenario (bundled name or file).")] = "fodo_space_charge",
    backends: Annotated[str, typer.Option(
        help="Comma-separated differentiable backends.")] = "inhouse,cheetah",
    particles: Annotated[str | None, typer.Option(
        help="Particle counts of the N axis (default 500,1000,2000,4000).")] = None,
    kicks: Annotated[str | None, typer.Option(
        help="Kicks per element of the kicks axis (default 1,2,4,8).")] = None,
    grid: Annotated[str | None, typer.Option(
        help="Mesh cells per dimension of the grid axis (default 8,12,16,24).")] = None,
    base: Annotated[str, typer.Option(
        help="Base point particles,kicks,grid the other axes stay at.")] = "1000,1,16",
    checkpoint: Annotated[str, typer.Option(
        help="Comma-separated: none, kick.")] = "none,kick",
    threads: CodeThreads = 1,
    out: Annotated[Path | None, typer.Option(
        help="Output directory (default: results/workloads/grad-memory-<UTC time>).")] = None,
) -> None:
    """Peak backward memory against particles, kicks and mesh cells; fitted exponents."""
    from harness.model.scenario import MAX_GRID_CELLS_PER_DIM, MIN_GRID_CELLS
    from harness.workloads import memory as workload
    _threads(threads)
    axes = {"particles": _axis(particles, "--particles", workload.DEFAULT_AXES["particles"]),
            "kicks": _axis(kicks, "--kicks", workload.DEFAULT_AXES["kicks"]),
            "grid": _axis(grid, "--grid", workload.DEFAULT_AXES["grid"])}
    base_values = _axis(base, "--base", [])
    if len(base_values) != 3:
        fail(f"--base {base!r}: expected particles,kicks,grid (three whole numbers)")
    grids = axes["grid"] + [base_values[2]]
    if max(grids) > MAX_GRID_CELLS_PER_DIM or min(grids) < MIN_GRID_CELLS:
        fail(f"--grid: expected {MIN_GRID_CELLS} to {MAX_GRID_CELLS_PER_DIM} cells per "
             "dimension")
    modes = split_list(checkpoint)
    if not modes or any(m not in ("none", "kick") for m in modes):
        fail(f"--checkpoint {checkpoint!r}: expected none and/or kick")
    loaded = _scenario(scenario)
    directory = _out(out, "grad-memory")
    _finish(lambda: workload.run(
        loaded, backends=split_list(backends), axes=axes,
        base=dict(zip(("particles", "kicks", "grid"), base_values, strict=True)),
        checkpoints=modes, out=directory, say=console.print), directory, None,
        "memory.csv, exponents.csv, memory.json, memory.md, memory.png", key_errors=True)
