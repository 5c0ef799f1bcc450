"""Markdown and LaTeX (booktabs) renderings of report tables and of the whole report."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from harness.report.layout import Section, render_sections
from harness.report.tables import Table

# --------------------------------------------------------------------------- Markdown


def markdown_cell(value: str) -> str:
    """A cell safe inside a Markdown table row (pipes escaped, one line)."""
    return " ".join(str(value).split()).replace("|", "\\|")


def markdown_table(table: Table) -> str:
    """A GitHub-flavoured Markdown table, with its notes below."""
    lines = ["| " + " | ".join(markdown_cell(c) for c in table.columns) + " |",
             "| " + " | ".join("---:" if a == "r" else ":---" for a in table.align) + " |"]
    lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in table.rows]
    out = "\n".join(lines) + "\n"
    if table.notes:
        out += "\n" + "\n\n".join(f"*{markdown_cell(note)}*" for note in table.notes) + "\n"
    return out


def markdown_document(title: str, sections: Sequence[Section], plot_notes: Sequence[str],
                      plot_dir: str = "plots") -> str:
    """The whole report in Markdown; plots are linked as relative PNG files."""
    parts = [f"# {title}\n"] + render_sections(
        sections, lambda section: [f"## {section.title}\n"], lambda intro: [f"{intro}\n"],
        lambda table: [f"### {table.title}\n\n{markdown_table(table)}"],
        lambda plot: [f"### {plot.title}\n\n![{plot.title}]({plot_dir}/{plot.name}.png)\n\n"
                      f"*{markdown_cell(plot.caption)}*\n"])
    if plot_notes:
        parts.append("Plots not drawn:\n\n" + "\n".join(f"- {n}" for n in plot_notes) + "\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- LaTeX

LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}",
}
LATEX_UNICODE = {
    "µ": r"\textmu{}", "μ": r"\textmu{}", "×": r"$\times$", "·": r"$\cdot$",
    "Δ": r"$\Delta$", "σ": r"$\sigma$", "…": r"\dots{}", "–": "--", "—": "---",
    "≠": r"$\neq$", "≤": r"$\leq$", "≥": r"$\geq$", "−": "-", "✓": r"$\checkmark$",
    "✗": r"$\times$", "≈": r"$\approx$",
}


def latex_escape(value: str) -> str:
    """Text safe for pdfLaTeX: specials escaped, known symbols as macros, other non-ASCII
    reduced to its ASCII base letter (or dropped)."""
    out = []
    for char in str(value):
        if char in LATEX_SPECIAL:
            out.append(LATEX_SPECIAL[char])
        elif char in LATEX_UNICODE:
            out.append(LATEX_UNICODE[char])
        elif ord(char) < 128:
            out.append(char)
        else:
            out.append(unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode())
    return "".join(out)


def latex_table(table: Table, label: str | None = None) -> str:
    """A booktabs ``table`` float, shrunk to the line width when wider (adjustbox), notes
    below."""
    spec = "".join(table.align)
    lines = [r"\begin{table}[htbp]", r"\centering", r"\scriptsize",
             rf"\caption{{{latex_escape(table.title)}}}"]
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [r"\begin{adjustbox}{max width=\linewidth}",
              rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
              " & ".join(latex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in table.rows]
    if not table.rows:
        lines.append(rf"\multicolumn{{{len(table.columns)}}}{{c}}{{(no rows)}} \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{adjustbox}"]
    for note in table.notes:
        lines.append(rf"\par\smallskip\parbox{{\linewidth}}{{\emph{{{latex_escape(note)}}}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def latex_document(title: str, sections: Sequence[Section], plot_notes: Sequence[str],
                   plot_dir: str = "plots") -> str:
    """A stand-alone pdfLaTeX document (booktabs, graphicx); each table float can also be
    copied into a paper on its own."""
    parts = [r"\documentclass[a4paper,landscape]{article}",
             r"\usepackage[margin=1.5cm]{geometry}", r"\usepackage{booktabs}",
             r"\usepackage{graphicx}", r"\usepackage{textcomp}", r"\usepackage{amssymb}",
             r"\usepackage{adjustbox}",
             rf"\title{{{latex_escape(title)}}}", r"\date{}", r"\begin{document}",
             r"\maketitle", ""]
    parts += render_sections(
        sections, lambda section: [rf"\section*{{{latex_escape(section.title)}}}"],
        lambda intro: [latex_escape(intro), ""],
        lambda table: [latex_table(table, label=f"tab:{table.key}")],
        lambda plot: [r"\begin{figure}[htbp]", r"\centering",
                      rf"\includegraphics[width=0.8\linewidth]{{{plot_dir}/{plot.name}.png}}",
                      rf"\caption{{{latex_escape(plot.title)}. {latex_escape(plot.caption)}}}",
                      rf"\label{{fig:{plot.name}}}", r"\end{figure}", ""],
        lambda _: [r"\clearpage"])
    if plot_notes:
        parts.append(r"\paragraph{Plots not drawn}")
        parts.append(r"\begin{itemize}")
        parts += [rf"\item {latex_escape(note)}" for note in plot_notes]
        parts.append(r"\end{itemize}")
    parts.append(r"\end{document}")
    return "\n".join(parts) + "\n"
