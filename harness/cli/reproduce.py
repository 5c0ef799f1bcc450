"""``trackbench reproduce``: a published comparison run again on this machine."""

from __future__ import annotations

from typing import Annotated

import typer

from harness.cli.common import (
    CaseTimeout,
    Out,
    Resume,
    app,
    case_limits,
    check_run_options,
    console,
    fail,
    particle_count_list,
    run_directory_for,
    split_list,
)


@app.command()
def reproduce(
    paper: Annotated[str, typer.Argument(
        help="Published comparison: napac25 or impactx-benchmarks.")] = "napac25",
    figures: Annotated[str | None, typer.Option(
        help="Comma-separated figure ids (default: all), e.g. fig1,fig3.")] = None,
    particles: Annotated[str | None, typer.Option(
        help="Override the figures' particle counts, e.g. 1e3,1e4.")] = None,
    backends: Annotated[str | None, typer.Option(
        help="Comma-separated backends (default napac25: cheetah,cheetah-compiled,impactx,"
        "inhouse; impactx-benchmarks: impactx,cheetah,xsuite,pyat,inhouse,ocelot,rftrack, "
        "cheetah-compiled when named).")] = None,
    repeat: Annotated[int, typer.Option(help="Timed tracks per case (the paper: 5).")] = 5,
    timeout: CaseTimeout = 3600.0,
    memory_limit: Annotated[float, typer.Option(
        help="Resident-memory limit per case [GiB].")] = 8.0,
    out: Out = None,
    resume: Resume = None,
) -> None:
    """Run a published comparison here at its settings and write its tables beside the
    published figures (DIR/reproduce.md, reproduce.csv; napac25 also plots/)."""
    check_run_options(backends=backends, memory_limit=memory_limit, timeout=timeout,
                      resume=resume, repeat=repeat)
    from harness import published
    from harness import reproduce as rp

    try:
        data = published.load(paper)
    except FileNotFoundError:
        fail(f"no published figures named {paper!r} in results/published/")
    try:
        plans = rp.figure_plans(data, split_list(figures), particle_count_list(particles) or None)
    except KeyError as error:
        fail(str(error.args[0]))
    reproduction = rp.plan_reproduction(data, plans, repeat, split_list(backends) or None)
    directory = run_directory_for(out, resume)
    console.print(f"{len(reproduction.cases)} cases into {directory}", highlight=False)
    rp.run_reproduction(reproduction, directory, case_limits(timeout, memory_limit),
                        resume is not None,
                        on_row=lambda row: console.print(
                            f"{row['case_id']}: {row['status']} "
                            f"{row.get('time_min_s') or ''}", highlight=False))
    path = rp.write_outputs(directory, reproduction, repeat)
    console.print(f"tables: {path}", highlight=False)
