"""The ``trackbench`` command line."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from harness.errors import ScenarioError

app = typer.Typer(
    help="Run one beamline description through several tracking codes; compare speed, "
    "agreement and gradients.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit (no traceback for bad input)."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command("list")
def list_command() -> None:
    """Show the bundled scenarios and the backends with their availability."""
    from backends.registry import backend_classes
    from harness.scenario import bundled_names, load_scenario

    table = Table(title="Bundled scenarios (lattices/)")
    for column in ("name", "model", "space charge", "elements", "length [m]", "reference"):
        table.add_column(column)
    for name in bundled_names():
        try:
            scenario = load_scenario(name)
        except ScenarioError as error:
            table.add_row(name, "[red]invalid[/red]", "", "", "", str(error))
            continue
        sc = scenario.space_charge.kind if scenario.space_charge else "-"
        table.add_row(name, "+".join(scenario.tiers), sc, str(len(scenario.elements)),
                      f"{scenario.length:g}", scenario.reference)
    console.print(table)

    table = Table(title="Backends")
    for column in ("backend", "available", "version", "differentiable", "note"):
        table.add_column(column)
    for name, cls in backend_classes().items():
        availability = cls.availability()
        table.add_row(name, "yes" if availability.available else "[red]no[/red]",
                      availability.version or "-", "yes" if cls.differentiable else "no",
                      availability.hint)
    console.print(table)


@app.command()
def validate(
    files: Annotated[list[str], typer.Argument(help="Scenario files or bundled names.")],
) -> None:
    """Validate scenario files: prints ``OK <file>`` or the error; exits non-zero on errors."""
    from harness.scenario import load_scenario

    failures = 0
    for file in files:
        try:
            load_scenario(file)
            console.print(f"OK {file}", highlight=False)
        except ScenarioError as error:
            failures += 1
            err_console.print(f"[red]INVALID[/red] {error}", highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(1)


@app.command()
def track(
    scenario: Annotated[str, typer.Argument(help="Bundled scenario name or file.")],
    backend: Annotated[str, typer.Option(help="Backend id (see `trackbench list`).")] = "inhouse",
    particles: Annotated[float, typer.Option(help="Number of particles.")] = 1e4,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="float64 or float32.")] = "float64",
) -> None:
    """Track a scenario once with one backend and print the final observables."""
    import numpy as np

    from backends.registry import get_backend
    from harness import observables
    from harness.particles import generate
    from harness.scenario import load_scenario

    try:
        loaded = load_scenario(scenario)
        chosen = get_backend(backend)
    except (ScenarioError, KeyError) as error:
        fail(str(error.args[0] if isinstance(error, KeyError) else error))
    availability = chosen.availability()
    if not availability.available:
        fail(f"backend {backend} is not available: {availability.hint}")
    verdict = chosen.supports(loaded, device, dtype)
    if not verdict:
        fail(f"unsupported: {verdict.reason}", code=3)
    initial = generate(loaded.beam, int(particles))
    with chosen.prepare(loaded, device, dtype) as prepared:
        final = prepared.track(initial)
        model = prepared.model
    reference = loaded.reference_particle
    before = observables.compute_for(initial, loaded.observables, reference)
    after = observables.compute_for(final, loaded.observables, reference)
    table = Table(title=f"{loaded.name} | {backend} {availability.version} | model {model} | "
                  f"N={len(initial)} | {device} {dtype}")
    for column in ("observable", "initial", "final"):
        table.add_column(column)
    for name in loaded.observables:
        table.add_row(name, f"{float(before[name]):.10e}", f"{float(after[name]):.10e}")
    console.print(table)
    if not np.all(np.isfinite(final)):
        fail("non-finite final coordinates", code=4)


def main() -> None:
    """Entry point that turns bad input into one line (no traceback)."""
    try:
        app()
    except ScenarioError as error:
        err_console.print(f"[red]error:[/red] {error}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()

__all__ = ["app", "main"]
