"""``trackbench asv``: the asv suite of benchmarks/ and its dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from harness.cli.common import app, console, fail

asv_app = typer.Typer(help="The asv suite (benchmarks/): run, compare, publish and check the "
                      "dashboard (results/asv, results/html).", no_args_is_help=True)
app.add_typer(asv_app, name="asv")
AsvConfig = Annotated[Path | None, typer.Option(
    "--config", help="asv configuration (default: asv.conf.json of the repository).")]
AsvBench = Annotated[str | None, typer.Option(
    "--bench", "-b", help="Regular expression selecting benchmarks.")]
AsvFactor = Annotated[float, typer.Option(
    help="Slow-down factor that counts as a regression (1.5: 50 % slower).")]


def _asv_config(config: Path | None) -> Path:
    from harness.asv_tools import CONFIG

    return config or CONFIG


def _asv_gate(base: str | None, head: str | None, factor: float, config: Path) -> int:
    """Print the time/peakmem regressions of head vs base; 1 when there are any."""
    from harness import asv_tools

    head = head or asv_tools.head_commit()
    machine = asv_tools.machine_name()
    base = base or asv_tools.previous_commit(asv_tools.config_path(config, "results_dir"),
                                             machine, head)
    if base is None:
        console.print(f"no earlier results on machine {machine}: nothing to compare",
                      highlight=False)
        return 0
    try:
        changes = asv_tools.regressions(base, head, factor, config, machine)
    except ValueError as error:
        fail(str(error))
    for change in changes:
        console.print(f"[red]REGRESSION[/red] {escape(change.name)}: {change.before:.4g} -> "
                      f"{change.after:.4g} {change.unit} (x{change.ratio:.2f})", soft_wrap=True)
    console.print(f"{len(changes)} regression(s) beyond x{factor:g} of {base[:8]} -> "
                  f"{head[:8]} (time_*, peakmem_*; machine {machine})", highlight=False)
    return 1 if changes else 0


@asv_app.command("quick")
def asv_quick(
    tiny: Annotated[bool, typer.Option(
        help="One tiny case (TRACKBENCH_ASV_QUICK=1) instead of the default grid.")] = False,
    bench: AsvBench = None,
    publish: Annotated[bool, typer.Option(help="Publish the dashboard afterwards.")] = True,
    config: AsvConfig = None,
) -> None:
    """Run every benchmark once (asv --quick) in this Python, recorded under HEAD."""
    from harness import asv_tools

    config = _asv_config(config)
    status = asv_tools.run_current(config, quick=True, tiny=tiny, bench=bench)
    if publish:
        status = asv_tools.publish(config) or status
    raise typer.Exit(status)


@asv_app.command("run")
def asv_run(bench: AsvBench = None, config: AsvConfig = None) -> None:
    """Run the suite with asv's statistics in this Python, recorded under HEAD."""
    from harness import asv_tools

    raise typer.Exit(asv_tools.run_current(_asv_config(config), quick=False, bench=bench))


@asv_app.command("continuous")
def asv_continuous(
    base: Annotated[str, typer.Argument(help="Base commit, e.g. HEAD~1 or main.")],
    head: Annotated[str, typer.Argument(help="Commit to test.")] = "HEAD",
    factor: AsvFactor = 1.5,
    bench: AsvBench = None,
    config: AsvConfig = None,
) -> None:
    """asv continuous: both commits in virtualenvs from asv.conf.json; fails on a regression."""
    from harness import asv_tools

    raise typer.Exit(asv_tools.continuous(base, head, factor, _asv_config(config), bench))


@asv_app.command("compare")
def asv_compare(
    base: Annotated[str | None, typer.Option(
        help="Base commit (default: the latest other commit with results).")] = None,
    head: Annotated[str | None, typer.Option(help="Commit to test (default: HEAD).")] = None,
    factor: AsvFactor = 1.5,
    config: AsvConfig = None,
) -> None:
    """Regression gate on recorded results: exit 1 when a time/peakmem value got worse."""
    raise typer.Exit(_asv_gate(base, head, factor, _asv_config(config)))


@asv_app.command("publish")
def asv_publish(config: AsvConfig = None) -> None:
    """asv publish: write the HTML dashboard (results/html)."""
    from harness import asv_tools

    raise typer.Exit(asv_tools.publish(_asv_config(config)))


@asv_app.command("preview")
def asv_preview(port: Annotated[int, typer.Option(help="Port.")] = 8080,
                config: AsvConfig = None) -> None:
    """asv preview: serve the dashboard at http://127.0.0.1:PORT (Ctrl-C stops)."""
    from harness import asv_tools

    raise typer.Exit(asv_tools.preview(port, _asv_config(config)))


@asv_app.command("nightly")
def asv_nightly(factor: AsvFactor = 1.5, config: AsvConfig = None) -> None:
    """The nightly flow: full run on HEAD, publish, then the regression gate."""
    from harness import asv_tools

    config = _asv_config(config)
    status = asv_tools.run_current(config, quick=False)
    published = asv_tools.publish(config)
    gate = _asv_gate(None, None, factor, config)
    raise typer.Exit(status or published or gate)


@asv_app.command("dashboard-check")
def asv_dashboard_check(
    html_dir: Annotated[Path | None, typer.Option(
        help="Published dashboard (default: html_dir of the configuration).")] = None,
    screenshot: Annotated[Path | None, typer.Option(
        help="Screenshot PNG (default: results/html-screenshot.png).")] = None,
    config: AsvConfig = None,
) -> None:
    """Load the dashboard in headless Chromium: benchmark list, a graph, screenshots."""

    from harness.dashboard import dashboard_check

    check = dashboard_check(html_dir, screenshot, _asv_config(config))
    if check.skipped:
        console.print(f"[yellow]SKIPPED[/yellow] {escape(check.skipped)}", soft_wrap=True)
        return
    state = "[green]OK[/green]" if check.ok else "[red]FAILED[/red]"
    console.print(f"{state} {escape(check.detail)}", soft_wrap=True)
    for path in check.screenshots:
        console.print(f"screenshot: {path}", highlight=False, soft_wrap=True)
    if not check.ok:
        raise typer.Exit(1)
