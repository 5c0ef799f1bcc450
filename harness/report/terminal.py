"""The end of ``trackbench run`` on a terminal: the report's first table, read at a glance.

One implementation for both: the table is :func:`harness.report.summary.track_summaries`
(scenarios as rows, sorted; backends as columns, the reference first; each cell the median
time of one track · the speed-up over the reference backend · the agreement mark or the
status word), rendered for the terminal with the run's settings in its title. Then the
number of cases per status, and where the full table and the report are. Long reasons
(unsupported, stand-in, failure details) stay in ``results.csv`` and the report: a cell is
never wrapped over lines.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table as RichTable
from rich.text import Text

from harness.model.vocabulary import Status
from harness.names import printable
from harness.report.runs import Run, load_run, text
from harness.report.summary import track_summaries
from harness.results import RESULTS_CSV

#: The marks of a cell, as one line under the table.
LEGEND = "✓ agrees · ✗ differs · ≈ stand-in model · ref: the reference · ?: no reference"


def reference_backend(run: Run, preferred: str = "impactx") -> str:
    """The backend speed-ups refer to: ``preferred`` when the run has it, else the
    reference most of the run's cases were compared with, else the first backend by name."""
    backends = {text(row, "backend") for row in run.track} - {""}
    if preferred in backends:
        return preferred
    references = Counter(text(row, "reference") for row in run.track
                         if text(row, "reference") in backends)
    if references:
        return references.most_common(1)[0][0]
    return min(backends, default=preferred)


def status_counts(run: Run) -> str:
    """``3 ok · 1 unsupported · 1 failed``: cases per status, in :class:`Status` order."""
    counts = Counter(text(row, "status") or "?" for row in run.track)
    order = [status.value for status in Status]
    keys = sorted(counts, key=lambda s: (order.index(s) if s in order else len(order), s))
    return " · ".join(f"{counts[key]} {printable(key)}" for key in keys) or "no cases"


def where_files_are(directory: Path) -> str:
    """The full table and the report of a run directory (those that exist)."""
    paths = [directory / RESULTS_CSV, directory / "report" / "report.md",
             directory / "report" / "report.html"]
    present = [str(path) for path in paths if path.exists()]
    return "full table and report: " + (", ".join(present) if present else
                                        f"{directory}/results.jsonl")


def _rich(table: Any) -> RichTable:
    """A report :class:`harness.report.tables.Table` on the terminal: cells on one line
    (its title is printed above it, as a line of its own that the table's width does not
    wrap)."""
    out = RichTable()
    for column, align in zip(table.columns, table.align, strict=True):
        out.add_column(escape(printable(column)), justify="right" if align == "r" else "left",
                       no_wrap=True, overflow="ellipsis")
    for row in table.rows:
        out.add_row(*(escape(printable(value)) for value in row))
    return out


def end_of_run(directory: Path, settings: str = "", baseline: str = "impactx",
               case_ids: set[str] | None = None) -> RenderableType:
    """What ``trackbench run`` prints at its end: the summary table per measurement setting
    (title: the run and ``settings``, e.g. ``particles 1e3 · repeat 1 · serial``), the
    marks, the cases per status and where the files are. ``case_ids``: only these cases
    (the ones this command planned), when given."""
    directory = Path(directory)
    run = load_run(directory, directory.resolve().name or "run")
    if case_ids is not None:
        run.track = [row for row in run.track if row.get("case_id") in case_ids]
    reference = reference_backend(run, baseline)
    parts: list[RenderableType] = []
    for table in track_summaries(run, reference):
        title = f"{printable(table.title)}{' · ' + settings if settings else ''} " \
                f"(speed-up over {printable(reference)})"
        parts += [Text(title, style="bold"), _rich(table)]
    if parts:
        parts.append(Text(LEGEND, style="dim"))
    parts.append(Text(f"cases: {status_counts(run)}"))
    parts.append(Text(where_files_are(directory)))
    return Group(*parts)





def run_reference_backend(directory: Path, preferred: str = "impactx") -> str:
    """:func:`reference_backend` of a run directory (the report uses the same one)."""
    directory = Path(directory)
    return reference_backend(load_run(directory, directory.name or "run"), preferred)
__all__ = ["LEGEND", "end_of_run", "reference_backend", "run_reference_backend",
           "status_counts", "where_files_are"]
