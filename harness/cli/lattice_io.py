"""``trackbench import`` and ``trackbench export``: lattices from and to other codes' files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import app, console, fail
from harness.io.model import POLICIES, ImportRefused
from harness.io.sandbox import DEFAULT_MEMORY_LIMIT_GIB, DEFAULT_TIME_LIMIT_S
from harness.model.errors import ScenarioError
from harness.names import file_name


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="Lattice file: MAD-X, Bmad, elegant or PALS.")],
    fmt: Annotated[str | None, typer.Option(
        "--format", help="madx|bmad|elegant|pals (default: from the file name).")] = None,
    sequence: Annotated[str | None, typer.Option(
        help="MAD-X sequence/line or Bmad/elegant line (default: the USEd one).")] = None,
    on_unsupported: Annotated[str, typer.Option(
        help=f"What to do with elements that cannot be translated: {'|'.join(POLICIES)}.")]
        = "error",
    out: Annotated[Path | None, typer.Option(
        help="Scenario YAML to write (default: <file stem>.yaml here).")] = None,
    energy: Annotated[float | None, typer.Option(
        help="Kinetic energy [MeV] of the reference particle (default: the file's).")] = None,
    species: Annotated[str | None, typer.Option(
        help="electron|positron|proton (default: the file's).")] = None,
    name: Annotated[str | None, typer.Option(help="Scenario name (default: file stem).")]
        = None,
    time_limit: Annotated[float, typer.Option(
        help="Seconds MAD-X (or the Bmad/elegant parser) may run before it is stopped.")]
        = DEFAULT_TIME_LIMIT_S,
    memory_limit: Annotated[float, typer.Option(
        help="GiB of memory MAD-X (or the Bmad/elegant parser) may use.")]
        = DEFAULT_MEMORY_LIMIT_GIB,
) -> None:
    """Import a lattice into a scenario YAML whose lattice is PALS; prints what was done.

    The file is read as data, never run: MAD-X commands that run code or read or write files
    are refused before MAD-X starts (see harness/io/madx.py), and MAD-X runs in its own
    process under --time-limit and --memory-limit. Every element that cannot be translated
    exactly is named with its kind, count and the reason; --on-unsupported marker|drift
    replaces them (listed in the file's header)."""
    from harness.io.importer import import_lattice
    from harness.io.pals_doc import write_scenario

    try:
        imported = import_lattice(file, fmt, sequence, on_unsupported, species, energy, name,
                                  time_limit, memory_limit)
        target = out or Path(file_name(imported.data["name"]) + ".yaml")
        scenario = write_scenario(imported.data, target, imported.header())
    except (ImportRefused, ScenarioError) as error:
        fail(str(error))
    result = imported.result
    for note in dict.fromkeys(result.notes) if result else []:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    for item in result.replaced if result else []:
        console.print(f"replaced ({on_unsupported}): {item.source_kind} {item.name}: "
                      f"{item.reason}", highlight=False, soft_wrap=True)
    console.print(f"wrote {target}: {len(scenario.elements)} elements, "
                  f"{scenario.length:.12g} m, {scenario.beam.species} "
                  f"{scenario.beam.kinetic_energy_MeV:.12g} MeV", highlight=False,
                  soft_wrap=True)


@app.command("export")
def export_command(
    scenario: Annotated[str, typer.Argument(help="Scenario file or bundled name.")],
    out: Annotated[Path | None, typer.Option(
        help="PALS file to write (default: <scenario name>.pals.yaml here).")] = None,
) -> None:
    """Write a scenario's lattice as a standalone PALS file (read by pals-schema and ImpactX).
    """
    from harness.io.pals_file import export_pals, write_pals
    from harness.model.load import load_scenario

    try:
        loaded = load_scenario(scenario)
        target = write_pals(export_pals(loaded), out or Path(file_name(loaded.name) + ".pals.yaml"),
                            loaded.name)
    except (ImportRefused, ScenarioError) as error:
        fail(str(error))
    console.print(f"wrote {target}", highlight=False, soft_wrap=True)
