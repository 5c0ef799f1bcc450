"""Commands on scenarios: list the bundled ones and the backends, validate files, track once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.common import (
    MAX_PARTICLES_OPTION,
    Device,
    Dtype,
    app,
    check_number,
    console,
    err_console,
    fail,
)
from harness.model.errors import ScenarioError
from harness.names import printable


@app.command("list")
def list_command() -> None:
    """Show the bundled scenarios and the backends with their availability."""
    from backends.registry import backend_classes
    from harness.model.load import bundled_names, load_scenario

    rows = []
    for name in bundled_names():
        try:
            scenario = load_scenario(name)
        except ScenarioError as error:
            rows.append((name, "invalid", "", "", "", str(error), ""))
            continue
        sc = scenario.space_charge.kind if scenario.space_charge else "-"
        rows.append((name, "+".join(scenario.tiers), sc, str(len(scenario.elements)),
                     f"{scenario.length:g}", scenario.reference,
                     "yes" if scenario.run_by_default else "when named"))
    table = Table(title="Bundled scenarios (lattices/)")
    for index, column in enumerate(("name", "model", "space charge", "elements", "length \\[m]",
                                    "reference", "default run")):
        # name and model are never cut (the name is what `track` takes); other cells wrap
        whole = index < 2
        table.add_column(column, overflow="fold", no_wrap=whole,
                         min_width=max((len(r[index]) for r in rows), default=4) if whole
                         else None)
    for row in rows:
        table.add_row(*row)
    console.print(table)

    table = Table(title="Backends")
    for column in ("backend", "available", "version", "differentiable", "default run",
                   "note"):
        table.add_column(column)
    for name, cls in backend_classes().items():
        availability = cls.availability()
        table.add_row(name, "yes" if availability.available else "[red]no[/red]",
                      availability.version or "-", "yes" if cls.differentiable else "no",
                      "yes" if cls.run_by_default else "when named", availability.hint)
    console.print(table)


def backend_verdicts(scenario, device: str = "cpu",
                     dtype: str = "float64") -> list[tuple[str, str, str]]:
    """What each installed backend does with ``scenario``: ``(backend, word, why)`` with
    word ``runs`` (why: the model), ``stand-in`` (why: the stand-in it runs) or
    ``unsupported`` (why: the backend's reason), from the backends' own
    :meth:`backends.base.Backend.supports`, the check the runner makes before starting a
    case (:func:`harness.runner.precheck`). Backends not installed are left out."""
    from backends.base import Unsupported
    from backends.registry import backend_classes

    verdicts = []
    for name, cls in backend_classes().items():
        if not cls.availability().available:
            continue
        try:
            support = cls().supports(scenario, device, dtype)
        except Exception as error:  # noqa: BLE001 - one line, the case would record it
            verdicts.append((name, "unknown", f"its support check raised "
                             f"{type(error).__name__}: {error}"))
            continue
        if isinstance(support, Unsupported):
            verdicts.append((name, "unsupported", support.reason))
        elif support.model.startswith("stand-in:"):
            verdicts.append((name, "stand-in", support.model.removeprefix("stand-in:")))
        else:
            verdicts.append((name, "runs", support.model))
    return verdicts


@app.command()
def validate(
    files: Annotated[list[str], typer.Argument(help="Scenario files or bundled names.")],
    backends: Annotated[bool, typer.Option(
        help="After OK, one indented line per installed backend: runs (model), stand-in "
        "(what it runs instead) or unsupported (why).")] = True,
) -> None:
    """Validate scenario files: prints ``OK <file>`` (then what each installed backend will
    do with it) or one line naming the error; exits non-zero on errors."""
    from harness.model.load import load_scenario

    failures = 0
    for file in files:
        try:
            scenario = load_scenario(file)
            console.print(f"OK {escape(printable(file))}", highlight=False, soft_wrap=True)
        except ScenarioError as error:
            failures += 1
            err_console.print(f"[red]INVALID[/red] {escape(printable(str(error)))}",
                              highlight=False, soft_wrap=True)
            continue
        for name, word, why in backend_verdicts(scenario) if backends else []:
            console.print(f"  {escape(printable(name))}: {word} ({escape(printable(why))})",
                          highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(1)


@app.command()
def track(
    scenario: Annotated[str, typer.Argument(help="Bundled scenario name or file.")],
    backend: Annotated[str, typer.Option(help="Backend id (see `trackbench list`).")] = "inhouse",
    particles: Annotated[float, typer.Option(help="Number of particles.")] = 1e4,
    device: Device = "cpu",
    dtype: Dtype = "float64",
) -> None:
    """Track a scenario once with one backend and print the final observables (of the
    surviving particles; exits 4 on a numerical blow-up)."""
    from backends.registry import get_backend
    from harness.model import observables
    from harness.model.load import load_scenario
    from harness.model.particles import generate

    check_number(particles, "--particles", minimum=1, inclusive=True, whole=True,
                 maximum=MAX_PARTICLES_OPTION)
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
    base_dir = Path(loaded.source_file).parent if loaded.source_file else None
    initial = generate(loaded.beam, int(particles), base_dir=base_dir)
    with chosen.prepare_single_use(loaded, device, dtype) as prepared:
        final = prepared.track(initial)
        model = prepared.model
    reference = loaded.reference_particle
    fate = observables.fates(final)
    before = observables.compute_survivors(initial, loaded.observables, reference)
    after = observables.compute_survivors(final, loaded.observables, reference)
    table = Table(title=escape(printable(f"{loaded.name} | {backend} {availability.version} | "
                                         f"model {model} | N={len(initial)} | {device} "
                                         f"{dtype}")))
    for column in ("observable", "initial", "final (survivors)"):
        table.add_column(column)
    for name in loaded.observables:
        table.add_row(name, f"{float(before[name]):.10e}", f"{float(after[name]):.10e}")
    console.print(table)
    lost, blown = int(fate.lost.sum()), int(fate.blown_up.sum())
    if lost:
        console.print(f"{lost} of {len(final)} particles lost at apertures; the final moments "
                      f"are those of the {int(fate.alive.sum())} survivors", highlight=False)
    if blown:
        fail(f"numerical blow-up: {blown} of {len(final)} particles with non-finite or "
             f"|coordinate| > {observables.BLOW_UP_MAGNITUDE:g} final coordinates", code=4)
