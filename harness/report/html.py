"""The report as one self-contained HTML file: inline CSS, plots embedded as base64 SVG.

The file references nothing outside itself (no scripts, style sheets, fonts or images to
fetch), so it opens offline and can be mailed or attached as it is.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path

from harness.report.layout import Section, render_sections
from harness.report.tables import Table

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 2em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
thead th { border-top: 2px solid #222; border-bottom: 1px solid #222; }
tbody tr:last-child td { border-bottom: 2px solid #222; }
th, td { padding: 0.25em 0.6em; vertical-align: top; }
td.r, th.r { text-align: right; white-space: nowrap; } td.l, th.l { text-align: left; }
tbody tr:nth-child(even) { background: #f4f6f8; }
.scroll { overflow-x: auto; }
.note { font-size: 0.85em; color: #555; max-width: 70em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #555; max-width: 60em; }
.status-failed, .status-timeout, .status-oom, .verdict-differs { color: #b00020; }
.status-unsupported, .verdict-model-mismatch { color: #8a6d00; }
.status-ok, .verdict-agrees { color: #1b7a1b; }
"""

#: Columns whose cells get a class (for colour) from their value.
CLASSED_COLUMNS = {"status": "status", "verdict": "verdict"}


def _cell(tag: str, value: str, align: str, column: str) -> str:
    classes = [align]
    prefix = CLASSED_COLUMNS.get(column)
    if prefix and value and value != "-":
        classes.append(f"{prefix}-{value.replace(' ', '-')}")
    return f'<{tag} class="{" ".join(classes)}">{escape(value)}</{tag}>'


def html_table(table: Table) -> str:
    """A table element (with a header row) and its notes."""
    head = "".join(_cell("th", c, a, c) for c, a in zip(table.columns, table.align,
                                                        strict=True))
    body = []
    for row in table.rows:
        cells = "".join(_cell("td", v, a, c) for v, a, c in zip(row, table.align,
                                                                table.columns, strict=True))
        body.append(f"<tr>{cells}</tr>")
    if not table.rows:
        body.append(f'<tr><td colspan="{len(table.columns)}">(no rows)</td></tr>')
    notes = "".join(f'<p class="note">{escape(note)}</p>' for note in table.notes)
    return (f'<div class="scroll"><table id="{escape(table.key)}"><thead><tr>{head}</tr>'
            f'</thead>\n<tbody>\n' + "\n".join(body) + f"\n</tbody></table></div>\n{notes}\n")


def _image(svg: Path) -> str:
    data = base64.b64encode(svg.read_bytes()).decode("ascii")
    return f"data:image/svg+xml;base64,{data}"


def html_document(title: str, sections: Sequence[Section], plot_notes: Sequence[str],
                  plot_dir: Path) -> str:
    """The whole report; plots are read from ``plot_dir/<name>.svg`` and embedded."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{escape(title)}</title>", f"<style>{STYLE}</style>", "</head>",
             "<body>", f"<h1>{escape(title)}</h1>"]
    parts += render_sections(
        sections, lambda section: [f"<h2>{escape(section.title)}</h2>"],
        lambda intro: [f'<p class="note">{escape(intro)}</p>'],
        lambda table: [f"<h3>{escape(table.title)}</h3>", html_table(table)],
        lambda plot: [f'<figure id="{escape(plot.name)}"><h3>{escape(plot.title)}</h3>'
                      f'<img alt="{escape(plot.title)}" '
                      f'src="{_image(plot_dir / f"{plot.name}.svg")}">'
                      f"<figcaption>{escape(plot.caption)}</figcaption></figure>"])
    if plot_notes:
        items = "".join(f"<li>{escape(note)}</li>" for note in plot_notes)
        parts.append(f'<p class="note">Plots not drawn:</p><ul class="note">{items}</ul>')
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
