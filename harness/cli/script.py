"""``trackbench script RUN_DIR CASE_ID``: a case of a run as a standalone Python script that
uses only its code's own API (:mod:`backends.scripts`), with its initial particles beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import app, console, fail


def _row(run_dir: Path, case_id: str) -> dict:
    """The last stored track row of ``case_id`` in the run directory."""
    from harness import results

    if not (run_dir / "results.jsonl").is_file():
        fail(f"{run_dir}: no results.jsonl (expected a run directory)")
    rows = [r for r in results.read_rows(run_dir) if r.get("case_id") == case_id]
    if not rows:
        known = sorted({str(r.get("case_id")) for r in results.read_rows(run_dir)
                        if r.get("kind", "track") == "track"})
        fail(f"{run_dir}: no case {case_id!r}; its track cases: "
             + (", ".join(known[:8]) + (" ..." if len(known) > 8 else "") or "none"))
    row = rows[-1]
    if row.get("kind", "track") != "track":
        fail(f"{case_id}: a {row.get('kind')} case; scripts are written for track cases")
    return row


def _initial_particles(run_dir: Path, scenario, count: int):
    """The case's initial particles: the run's ``particles/`` file when it wrote one
    (``--write-particles openpmd``), else drawn again from the scenario's beam with its seed
    (the same draw the case process made)."""
    from harness.io.particles_out import initial_file
    from harness.model.particles import generate

    stored = initial_file(run_dir, scenario.name, count)
    if stored.exists():
        from harness.model.openpmd import read_openpmd

        return read_openpmd(stored, scenario.reference_particle)
    base = Path(scenario.source_file).parent if scenario.source_file else None
    return generate(scenario.beam, count, base_dir=base)


@app.command()
def script(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (results.jsonl).")],
    case_id: Annotated[str, typer.Argument(
        help="A track case of the run, e.g. track/fodo_linear/pyat/1000/cpu/float64.")],
    scenario_file: Annotated[Path | None, typer.Option(
        "--scenario", help="The scenario file of the case (default: the bundled scenario "
        "of the row's name).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Script file to write (default RUN_DIR/scripts/<case>.py); the initial "
        "particles go beside it as <case>.npy.")] = None,
) -> None:
    """Write a case as a self-contained Python script of its code's own API (build the
    lattice, load the same initial particles, warm up, time the tracks, print the final
    moments), for the code's authors to read and run without trackbench."""
    import numpy as np

    from backends.registry import get_backend
    from backends.scripts import script as make_script
    from harness.cases import cache_name, scenario_hash
    from harness.model.errors import ScenarioError
    from harness.model.load import load_scenario

    row = _row(run_dir, case_id)
    if row.get("status") not in ("ok", None):
        console.print(f"note: the case's row says {row.get('status')}", highlight=False)
    try:
        scenario = load_scenario(scenario_file or str(row["scenario"]))
    except (ScenarioError, FileNotFoundError) as error:
        fail(f"{case_id}: its scenario {row.get('scenario')!r} could not be loaded ({error}); "
             "name its file with --scenario")
    stored_hash = row.get("scenario_hash")
    if stored_hash and scenario_hash(scenario) != stored_hash:
        fail(f"{scenario.source_file or scenario.name}: not the scenario the run used (its "
             f"content hash {scenario_hash(scenario)} differs from the row's {stored_hash})")
    backend = str(row["backend"])
    try:
        plan = get_backend(backend).plan(scenario, str(row.get("device", "cpu")),
                                         str(row.get("dtype", "float64")))
    except (KeyError, ImportError) as error:
        fail(f"{case_id}: backend {backend!r} is not available here ({error})")
    if not plan:
        fail(f"{case_id}: {backend} does not run this case: {plan.reason}")
    path = out or run_dir / "scripts" / f"{cache_name(case_id)}.py"
    particles_name = f"{path.stem}.npy"
    try:
        text = make_script(backend, plan, case_id=case_id, particles_file=particles_name,
                           repeat=int(row.get("repeat") or 1),
                           observables=list(scenario.observables))
    except ValueError as error:
        fail(f"{case_id}: {error}")
    particles = _initial_particles(run_dir, scenario, int(row["particles"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path.with_name(particles_name), np.ascontiguousarray(particles, dtype=np.float64))
    path.write_text(text)
    console.print(f"wrote {path} and {path.with_name(particles_name)}", highlight=False)
