"""Reports of run directories: paper-style tables and plots in Markdown, LaTeX and HTML.

The report leads with a summary (per run, scenarios x backends: time, speed-up, agreement
mark), then the headline figures, then an appendix with every case and per-scenario plots.
``write_report([run_dir, ...], out)`` writes ``out/report.md``, ``out/report.tex`` and
``out/report.html`` (one self-contained file) and the plots ``out/plots/*.png|svg``. Every
number comes from the runs' ``results.jsonl`` and every header from their ``metadata.json``;
the same results give byte-identical files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.report.html import html_document
from harness.report.layout import Section, report_sections
from harness.report.plots import Plot, draw_all
from harness.report.render import latex_document, markdown_document
from harness.report.runs import Run, load_runs
from harness.report.summary import summary_intro, summary_tables
from harness.report.tables import Table, all_tables, machine_summary

FORMATS: tuple[str, ...] = ("md", "html", "tex")
PLOT_DIR = "plots"


def report_title(runs: list[Run]) -> str:
    """The report's title: the runs and the machines they were measured on."""
    labels = ", ".join(run.label for run in runs)
    machines = machine_summary(runs)
    return f"trackbench report: {labels}" + (f" ({machines})" if machines else "")


def write_report(run_dirs: Sequence[Path], out: Path, formats: Sequence[str] = FORMATS,
                 baseline: str = "impactx") -> list[Path]:
    """Write the report of the run directories into ``out``; returns the files written.

    ``formats`` picks among ``md``, ``html`` and ``tex``; the plots (PNG and SVG) are always
    drawn, since every format shows them. ``baseline`` is the backend speed-ups refer to.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown report format(s) {unknown}; expected some of {FORMATS}")
    runs = load_runs([Path(d) for d in run_dirs])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_dir = out / PLOT_DIR
    plots, written, plot_notes = draw_all(runs, plot_dir, baseline)
    sections = report_sections(summary_tables(runs, baseline), all_tables(runs, baseline),
                               plots, summary_intro(baseline))
    title = report_title(runs)
    documents = {
        "md": lambda: markdown_document(title, sections, plot_notes, PLOT_DIR),
        "tex": lambda: latex_document(title, sections, plot_notes, PLOT_DIR),
        "html": lambda: html_document(title, sections, plot_notes, plot_dir),
    }
    for fmt in FORMATS:
        if fmt in formats:
            path = out / f"report.{fmt}"
            path.write_text(documents[fmt](), encoding="utf-8")
            written.append(path)
    from harness.tuning.report import tuning_rows, write_tuning_report

    if tuning_rows(run_dirs):  # the tuning section: out/tuning.md, plots/tuning-*
        written += write_tuning_report(run_dirs, out)
    return sorted(written, key=lambda p: (p.parent != out, str(p)))


__all__ = ["FORMATS", "Plot", "Run", "Section", "Table", "all_tables", "load_runs",
           "summary_tables", "write_report"]
