"""The order of a report: summary first, then the headline figures, then the appendix.

Every renderer (Markdown, LaTeX, HTML) draws the same :class:`Section` list, so the three
formats always hold the same tables and plots in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.report.plots import Plot
from harness.report.tables import Table


@dataclass(frozen=True)
class Section:
    """A titled part of the report: an introduction, tables, then plots."""

    title: str
    tables: tuple[Table, ...] = ()
    plots: tuple[Plot, ...] = ()
    intro: str = ""


def render_sections(sections: Sequence[Section], head: Callable[[Section], list[str]],
                    intro: Callable[[str], list[str]], table: Callable[[Table], list[str]],
                    plot: Callable[[Plot], list[str]],
                    tail: Callable[[Section], list[str]] = lambda _: []) -> list[str]:
    """The parts of every section in one format, in order: ``head(section)``,
    ``intro(text)`` where it has one, ``table(t)`` per table, ``plot(p)`` per plot,
    ``tail(section)``."""
    parts: list[str] = []
    for section in sections:
        parts += head(section)
        if section.intro:
            parts += intro(section.intro)
        for item in section.tables:
            parts += table(item)
        for figure in section.plots:
            parts += plot(figure)
        parts += tail(section)
    return parts


FIGURES_INTRO = "One figure per question: throughput vs N, gradient cost vs P, backward memory."
APPENDIX_INTRO = ("Every case of the runs, with its status and reason, and the per-scenario "
                  "plots. The same rows are in each run's results.csv.")


def report_sections(summary: Sequence[Table], appendix: Sequence[Table],
                    plots: Sequence[Plot], summary_intro: str = "") -> list[Section]:
    """Summary tables, headline figures, then every table and the remaining plots."""
    headline = tuple(plot for plot in plots if plot.headline)
    rest = tuple(plot for plot in plots if not plot.headline)
    sections = [Section("Summary", tuple(summary), (), summary_intro)]
    if headline:
        sections.append(Section("Figures", (), headline, FIGURES_INTRO))
    sections.append(Section("Appendix: every case", tuple(appendix), rest, APPENDIX_INTRO))
    return sections


__all__ = ["Section", "report_sections"]
