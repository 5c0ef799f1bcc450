"""The presentation of a reproduction (``trackbench reproduce``): the cells of each
figure's table from the run's rows, the Markdown tables and notes, the bar plots and the
README's headline table. :mod:`harness.reproduce` plans and runs the reproduction and
writes its outputs through this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from harness.published import Figure, Published

#: The backends of the comparison, in table order: the paper's three codes, then ours.
BACKENDS: tuple[str, ...] = ("cheetah", "cheetah-compiled", "impactx", "inhouse")
#: Labels of the table rows.
LABELS: dict[str, str] = {"cheetah": "Cheetah", "cheetah-compiled": "Cheetah: compiled",
                          "impactx": "ImpactX", "inhouse": "in-house (extra)"}
#: The normalisations of the ratio columns.
BASELINE, REFERENCE_CODE = "cheetah", "impactx"
#: Agreement of HTU final moments across codes that the benchmark accepts (stand-in maps).
CROSS_CODE_TOLERANCE = 0.03
#: The final moments compared across codes: rms sizes and emittances (relative errors of
#: centroids near zero say nothing).
MOMENT_ERRORS: tuple[str, ...] = ("obs_err_sigma_", "obs_err_emittance_")


@dataclass(frozen=True)
class FigurePlan:
    """The cases of one figure (or the agreement set), or why it is not run."""

    figure: str
    scenario: str
    device: str
    dtype: str
    threads: int | None
    particles: list[int]
    not_run: str = ""


# ------------------------------------------------------------------------------ tables

def _ok(row: dict | None) -> TypeGuard[dict]:
    if not row:
        return False
    return row.get("status") == "ok" and row.get("kind", "track") == "track"


class RowIndex:
    """Track rows by (scenario, backend, particles, device, dtype, threads requested) and
    math setting. A row written before the math setting existed has none: it answers for
    any setting (compiled Cheetah then compiled with inductor's fast-math flags)."""

    def __init__(self, rows: Sequence[dict]):
        self.rows: dict[tuple, dict] = {}
        for row in rows:
            if row.get("kind", "track") != "track":
                continue
            key = (row.get("scenario"), row.get("backend"), int(row.get("particles", 0)),
                   row.get("device"), row.get("dtype"), row.get("threads_requested"),
                   row.get("math"))
            if key not in self.rows or _ok(row):
                self.rows[key] = row

    def get(self, key: tuple, math: str = "ieee") -> dict | None:
        """The row of a cell at a math setting (``ieee`` or ``fast``), else a row that
        predates the setting."""
        return self.rows.get((*key, math)) or self.rows.get((*key, None))


def _index(rows: Sequence[dict]) -> RowIndex:
    return RowIndex(rows)


#: The math setting of each backend's cases in a napac25 figure: the paper's compiled
#: Cheetah configurations are its fast-math (``-fm``) builds.
NAPAC25_MATH: dict[str, str] = {"cheetah-compiled": "fast"}


def _find(index: RowIndex, fig: Figure | FigurePlan, backend: str, n: int,
          threads: int | None, math: str = "ieee") -> tuple[dict | None, list[str]]:
    """The row measuring a backend's cell of a figure, and footnote keys: ImpactX's PyPI
    wheel has no FP32, so its FP32 cells are its FP64 (reference) run."""
    row = index.get((fig.scenario, backend, n, fig.device, fig.dtype, threads), math)
    if backend == "impactx" and fig.dtype == "float32" and not _ok(row):
        fallback = index.get((fig.scenario, backend, n, fig.device, "float64", threads))
        if _ok(fallback):
            return fallback, ["impactx-fp64"]
    return row, []


def _rate(n: int, seconds: Any) -> float | None:
    if seconds is None or not isinstance(seconds, int | float) or seconds <= 0:
        return None
    return n / float(seconds)


def _status_text(row: dict | None) -> str:
    if row is None:
        return "not measured"
    if row.get("status") == "ok":
        return ""
    reason = str(row.get("reason") or "").split(";")[0][:80]
    return f"{row.get('status')}: {reason}" if reason else str(row.get("status"))


def figure_cells(fig_id: str, fig: Figure, plan: FigurePlan | None,
                 rows: Sequence[dict]) -> list[dict[str, Any]]:
    """The cells of one figure's table: per particle count and backend the published and
    measured particles per second (process time and wall time, least of the timed tracks),
    the speed-ups over eager Cheetah (published, here) and over ImpactX (here), status and
    footnote keys."""
    index = _index(rows)
    threads = fig.threads
    counts = plan.particles if plan else fig.particles
    out: list[dict[str, Any]] = []
    published = {s.backend: {p.particles: p for p in s.points} for s in fig.series}
    for n in counts:
        measured: dict[str, dict[str, Any]] = {}
        for backend in BACKENDS:
            row, notes = (None, []) if plan is not None and plan.not_run else _find(
                index, fig, backend, n, threads, NAPAC25_MATH.get(backend, "ieee"))
            measured[backend] = {
                "row": row, "notes": notes,
                "process": _rate(n, row.get("process_time_min_s")) if _ok(row) else None,
                "wall": _rate(n, row.get("time_min_s")) if _ok(row) else None,
            }
        pub_base = published.get(BASELINE, {}).get(n)
        for backend in BACKENDS:
            cell = measured[backend]
            row = cell["row"]
            pub = published.get(backend, {}).get(n)
            base, ref = measured[BASELINE]["process"], measured[REFERENCE_CODE]["process"]
            notes = list(cell["notes"])
            if row is not None and str(row.get("model", "")).startswith("stand-in"):
                notes.append("stand-in")
            if _ok(row) and row.get("compiled") is not None:
                notes.append("compiled" if row.get("compiled") else "eager-fallback")
            out.append({
                "figure": fig_id, "particles": n, "backend": backend,
                "label": LABELS[backend],
                "published_particles_per_s": pub.particles_per_s if pub else None,
                "published_track_s": pub.track_s if pub else None,
                "published_speedup_vs_cheetah": (pub.particles_per_s / pub_base.particles_per_s
                                                 if pub and pub_base else None),
                "here_particles_per_s_process": cell["process"],
                "here_particles_per_s_wall": cell["wall"],
                "here_process_time_s": row.get("process_time_min_s") if _ok(row) else None,
                "here_wall_time_s": row.get("time_min_s") if _ok(row) else None,
                "here_speedup_vs_cheetah": (cell["process"] / base
                                            if cell["process"] and base else None),
                "here_speedup_vs_impactx": (cell["process"] / ref
                                            if cell["process"] and ref else None),
                "here_over_published": (cell["process"] / pub.particles_per_s
                                        if cell["process"] and pub else None),
                "dtype_here": row.get("dtype") if row else None,
                "threads_here": row.get("threads") if row else None,
                "compile_s": row.get("compile_s") if _ok(row) else None,
                "peak_rss_bytes": row.get("peak_rss_bytes") if row else None,
                "status": plan.not_run if plan and plan.not_run else _status_text(row),
                "notes": notes,
            })
    return out


def agreement_cells(rows: Sequence[dict]) -> list[dict[str, Any]]:
    """HTU final moments of every backend against ImpactX float64 (same initial particles):
    verdict, largest particle deviation [sigma], largest relative moment error, and whether
    the rms sizes and emittances agree within the benchmark's cross-code tolerance (3 %)."""
    out = []
    for row in rows:
        if row.get("kind", "track") != "track" or row.get("role") == "reference":
            continue
        if row.get("status") != "ok" or row.get("reference") != "impactx":
            continue
        errors = [abs(v) for k, v in row.items()
                  if k.startswith(MOMENT_ERRORS) and isinstance(v, int | float)
                  and math.isfinite(v)]
        worst = max(errors) if errors else None
        out.append({"scenario": row.get("scenario"), "backend": row.get("backend"),
                    "particles": int(row.get("particles", 0)), "device": row.get("device"),
                    "dtype": row.get("dtype"), "model": row.get("model"),
                    "verdict": row.get("verdict"), "dev_max": row.get("dev_max"),
                    "verdict_detail": row.get("verdict_detail") or "",
                    "max_moment_rel_error": worst,
                    "within_3_percent": (worst <= CROSS_CODE_TOLERANCE
                                         if worst is not None else None)})
    out.sort(key=lambda c: (c["scenario"], c["dtype"] != "float64", c["particles"],
                            BACKENDS.index(c["backend"]) if c["backend"] in BACKENDS else 99))
    return out


def _num(value: Any, fmt: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, fmt)


def _ratio(value: Any) -> str:
    return "—" if value is None else f"{value:.2g}x"


FOOTNOTE_TEXT: dict[str, str] = {
    "impactx-fp64": "ImpactX's PyPI wheel is built FP64 only (no FP32 build): the cell is "
                    "its FP64 run.",
    "stand-in": "Cheetah has no paraxial (chromatic) quadrupole map: it runs its "
                "drift-kick-drift quadrupole, a labelled stand-in; the paper's Cheetah 0.7.5 "
                "ran its Bmad-X tracking (tracking_method='bmadx') for every element.",
    "compiled": "torch.compile'd code ran; compilation is in the untimed warm-up "
                "(compile_s).",
    "eager-fallback": "compilation was not used (disabled or failed: compile_error); the "
                      "timed tracks ran eagerly.",
}


def _figure_table(fig_id: str, fig: Figure, cells: list[dict], marks: dict[str, int]) -> str:
    lines = [f"### {fig_id}: {fig.title}", ""]
    lines.append(f"Published: {fig.hardware}; {fig.dtype}; "
                 f"{'1 thread' if fig.threads == 1 else 'all threads'}.")
    lines.append("")
    lines.append("| particles | code | published [particles/s] | here, process time "
                 "[particles/s] | here, wall time [particles/s] | speed-up vs eager Cheetah: "
                 "published / here | here vs ImpactX | notes |")
    lines.append("|---:|---|---:|---:|---:|---:|---:|---|")
    for cell in cells:
        notes = []
        for key in cell["notes"]:
            marks.setdefault(key, len(marks) + 1)
            notes.append(f"[{marks[key]}]")
        status = cell["status"]
        if cell["compile_s"]:
            notes.append(f"compile {cell['compile_s']:.0f} s")
        if cell["dtype_here"] and cell["dtype_here"] != fig.dtype:
            notes.append(cell["dtype_here"])
        if status:
            notes.append(status)
        lines.append(
            f"| {cell['particles']:.0e} | {cell['label']} | "
            f"{_num(cell['published_particles_per_s'])} | "
            f"{_num(cell['here_particles_per_s_process'])} | "
            f"{_num(cell['here_particles_per_s_wall'])} | "
            f"{_ratio(cell['published_speedup_vs_cheetah'])} / "
            f"{_ratio(cell['here_speedup_vs_cheetah'])} | "
            f"{_ratio(cell['here_speedup_vs_impactx'])} | {' '.join(notes)} |")
    return "\n".join(lines)


def _agreement_table(cells: list[dict]) -> str:
    lines = ["### Agreement with ImpactX float64 (same initial particles)", "",
             "| scenario | particles | code | dtype | model | verdict | max dev [σ] | "
             "max error of σ, ε | within 3 % |", "|---|---:|---|---|---|---|---:|---:|---|"]
    for c in cells:
        within = {True: "yes", False: "no", None: "—"}[c["within_3_percent"]]
        verdict = c["verdict"] or "—"
        if verdict == "differs" and c["verdict_detail"]:
            verdict += f" ({c['verdict_detail']})"
        lines.append(f"| {c['scenario']} | {c['particles']:.0e} | "
                     f"{LABELS.get(c['backend'], c['backend'])} | {c['dtype']} | {c['model']} | "
                     f"{verdict} | {_num(c['dev_max'], '.2g')} | "
                     f"{_num(c['max_moment_rel_error'], '.2g')} | {within} |")
    return "\n".join(lines)


def _htu_beam_note() -> str:
    """How the bundled HTU beam stands to the benchmark's 1 % mean momentum offset."""
    from harness.model.load import load_scenario

    centroid = load_scenario("htu").beam.centroid
    if centroid is not None and centroid.pt != 0.0:
        return (f"HTU beam: the benchmark's 1 % mean momentum offset is the scenario's "
                f"centroid (pt = {centroid.pt:g}, ImpactX's meanPt); ImpactX's own "
                "examples/htu_beamline runs a centred beam (the translation is checked "
                "against it centred).")
    return ("HTU beam: the benchmark's 1 % mean momentum offset is left out (the scenario "
            "has no centroid); ImpactX's own examples/htu_beamline runs a centred beam as well.")


def _versions_sentence(versions: dict[str, str], published: Published, label: str) -> str:
    """``Versions here: ...; <label>: ...``: the codes' versions of this run's rows beside
    those the published series name (first mention of each code wins)."""
    published_versions: dict[str, str] = {}
    for fig in published.figures.values():
        for series in fig.series:
            for key, value in series.versions.items():
                published_versions.setdefault(key, value)
    return ("Versions here: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
            + f"; {label}: " + ", ".join(f"{k} {v}" for k, v in
                                        sorted(published_versions.items())) + ".")


def setting_footnotes(published: Published, rows: Sequence[dict], machine: dict[str, Any],
                      load: dict[str, Any], repeat: int | None) -> list[str]:
    """Where this run's setting differs from the paper's, one sentence each (from the rows,
    the machine record and the published file)."""
    notes = []
    cpu = machine.get("cpu", "this machine's CPU")
    notes.append(f"Hardware: here {cpu}, {machine.get('cores_available', '?')} cores "
                 f"(shared with other work); the paper: "
                 f"{published.figures[next(iter(published.figures))].hardware}.")
    for run in load_runs(load or {}):
        what = ", ".join(run.get("figures", [])) or "the run"
        notes.append(f"Machine load (1/5/15-min load average) of {what}: {_load_span(run)}; "
                     "timings of a loaded machine are noisy, the process-time columns less "
                     "so than the wall-time ones.")
    versions: dict[str, str] = {}
    for row in rows:
        for key, value in (row.get("versions") or {}).items():
            versions.setdefault(key, str(value))
    notes.append(_versions_sentence(versions, published, "the paper"))
    notes.append("ImpactX here is the PyPI wheel (single-threaded, FP64 only, generic build); "
                 "the paper's CPU ImpactX was built with -march=native -ffast-math and SIMD "
                 "(ImpactX_SIMD=ON), FP32 for Figs. 1-2 and FP64 for Fig. 3.")
    repeats: dict[str, set[int]] = {}
    for row in rows:
        if _ok(row) and row.get("repeat"):
            repeats.setdefault(str(row.get("scenario")), set()).add(int(row["repeat"]))
    timer = ("min of " + ", ".join(f"{'/'.join(str(r) for r in sorted(v))} ({k})"
                                   for k, v in sorted(repeats.items())) + " timed tracks"
             if repeats else f"min of {repeat} timed tracks" if repeat
             else "min of the timed tracks")
    notes.append(f"Timer: here {timer} in one process after one untimed warm-up (which "
                 "holds compilation), as process CPU time (time.process_time, the paper's "
                 "timer) and as wall time; the paper: "
                 f"{published.source.timer}, {published.source.statistic}.")
    notes.append("Compiled Cheetah: torch.compile(segment.track) with inductor and its "
                 "fast-math flags, as the paper's -fm configurations.")
    notes.append(_htu_beam_note())
    notes.append("Space charge: every code here tracks the same Kurth6D particles (the "
                 "paper's Cheetah drew a uniform ellipsoid of the same radii); ImpactX's "
                 "mesh padding is trackbench's prob_relative 1.1 (the paper's script: 1.2).")
    inhouse = {row.get("compile_error") or ("compiled" if row.get("compiled") else "eager")
               for row in rows if row.get("backend") == "inhouse" and _ok(row)}
    if inhouse:  # from the rows alone: the tables re-render the same in any environment
        notes.append("In-house tracker: " + ", ".join(sorted(inhouse)) + ".")
    return notes


def load_runs(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The invocations of a ``load.json``: ``{"runs": [...]}``, or one ``before``/``after``
    pair (a record of a single invocation)."""
    if "runs" in record:
        return list(record["runs"])
    return [record] if record else []


def _load(entry: dict[str, Any]) -> str:
    if not entry:
        return "?"
    return f"{entry['load_1min']:.1f}/{entry['load_5min']:.1f}/{entry['load_15min']:.1f}"


def _load_span(run: dict[str, Any]) -> str:
    """``before <1/5/15-min load>, after <load>`` of one reproduction run's load record."""
    return f"before {_load(run.get('before', {}))}, after {_load(run.get('after', {}))}"


def render_markdown(published: Published, plans: Sequence[FigurePlan], rows: Sequence[dict],
                    machine: dict[str, Any] | None = None, load: dict[str, Any] | None = None,
                    repeat: int | None = None, plots: dict[str, str] | None = None) -> str:
    """The reproduction's tables: one per figure, the agreement table and the footnotes."""
    machine = machine or {}
    by_id = {p.figure: p for p in plans}
    src = published.source
    lines = [f"# Reproduction: {src.paper}", "",
             f"Published figures: {src.repository} tag {src.tag} (commit {src.commit[:12]}), "
             f"{src.file}, layout of {src.layout}; as data in results/published/.", "",
             "Ratios are same-run ratios of particles per second by process time; the paper's "
             "bar labels are speed-ups over eager Cheetah.", ""]
    marks: dict[str, int] = {}
    for fig_id, fig in published.figures.items():
        plan = by_id.get(fig_id)
        cells = figure_cells(fig_id, fig, plan, rows)
        lines += [_figure_table(fig_id, fig, cells, marks), ""]
        if plots and fig_id in plots:
            lines += [f"![{fig_id}]({plots[fig_id]})", ""]
    agreement = agreement_cells(rows)
    if agreement:
        lines += [_agreement_table(agreement), "",
                  "Cheetah's stand-in maps (drift-kick-drift quadrupoles) are compared on "
                  f"moments with the benchmark's cross-code tolerance of "
                  f"{CROSS_CODE_TOLERANCE:.0%}; the in-house tracker runs ImpactX's maps and "
                  "is held to round-off (the verdict).", ""]
    lines += ["### Notes", ""]
    for key, number in sorted(marks.items(), key=lambda kv: kv[1]):
        lines.append(f"[{number}] {FOOTNOTE_TEXT[key]}")
    lines.append("")
    for note in setting_footnotes(published, rows, machine, load or {}, repeat):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def write_plots(published: Published, plans: Sequence[FigurePlan], rows: Sequence[dict],
                directory: Path) -> dict[str, str]:
    """A bar plot per figure: published (hatched) and measured here (process time, solid)
    particles per second per code and particle count, log scale; returns relative paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_id = {p.figure: p for p in plans}
    directory.mkdir(parents=True, exist_ok=True)
    colors = {"cheetah": "tab:cyan", "cheetah-compiled": "tab:blue", "impactx": "tab:orange",
              "inhouse": "tab:green"}
    out = {}
    for fig_id, fig in published.figures.items():
        plan = by_id.get(fig_id)
        cells = figure_cells(fig_id, fig, plan, rows)
        counts = sorted({c["particles"] for c in cells})
        figure, ax = plt.subplots(figsize=(7.0, 3.2))
        width = 0.8 / (2 * len(BACKENDS))
        for i, backend in enumerate(BACKENDS):
            for j, (column, hatch, suffix) in enumerate((
                    ("published_particles_per_s", "///", "published"),
                    ("here_particles_per_s_process", "", "here"))):
                values = [next((c[column] for c in cells if c["particles"] == n
                                and c["backend"] == backend), None) for n in counts]
                x = [k + (2 * i + j - len(BACKENDS)) * width for k in range(len(counts))]
                ax.bar(x, [v or math.nan for v in values], width, color=colors[backend],
                       hatch=hatch, edgecolor="black", linewidth=0.5,
                       label=f"{LABELS[backend]}, {suffix}")
        ax.set_yscale("log")
        ax.set_xticks(range(len(counts)), [f"{n:.0e}" for n in counts])
        ax.set_xlabel("particles / beam")
        ax.set_ylabel("particles / second")
        ax.set_title(fig.title + ("" if not plan or not plan.not_run else f" ({plan.not_run})"),
                     fontsize=8)
        ax.legend(fontsize=6, ncols=2)
        figure.tight_layout()
        path = directory / f"{fig_id}.png"
        figure.savefig(path, dpi=120, metadata={"Software": None})
        plt.close(figure)
        out[fig_id] = f"plots/{fig_id}.png"
    return out


#: The cells of the README's headline table: (figure, particle count).
HEADLINE_CELLS: tuple[tuple[str, int], ...] = (("fig1", 1_000_000), ("fig3", 1_000_000))


def headline_markdown(directory: Path, published: Published | None = None) -> str:
    """The compact table of a reproduction run directory for the README: Fig. 1 and Fig. 3
    at 10^6 particles, published beside measured (process time and wall time)."""
    from harness import published as published_module
    from harness import results

    published = published or published_module.load("napac25")
    rows = results.read_rows(Path(directory))
    lines = ["| figure, 10^6 particles | code | published [particles/s] | here, process time "
             "[particles/s] | here, wall time [particles/s] | vs eager Cheetah: published / "
             "here | here vs ImpactX |", "|---|---|---:|---:|---:|---:|---:|"]
    for fig_id, n in HEADLINE_CELLS:
        fig = published.figures[fig_id]
        plan = FigurePlan(fig_id, fig.scenario, fig.device, fig.dtype, fig.threads, [n])
        for cell in figure_cells(fig_id, fig, plan, rows):
            here = _num(cell["here_particles_per_s_process"])
            if cell["status"]:
                here = cell["status"].split(":")[0]
            lines.append(f"| {fig_id} ({fig.scenario}, {fig.dtype}) | {cell['label']} | "
                         f"{_num(cell['published_particles_per_s'])} | {here} | "
                         f"{_num(cell['here_particles_per_s_wall'])} | "
                         f"{_ratio(cell['published_speedup_vs_cheetah'])} / "
                         f"{_ratio(cell['here_speedup_vs_cheetah'])} | "
                         f"{_ratio(cell['here_speedup_vs_impactx'])} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------ impactx-benchmarks (2026)

#: The backends of the impactx-benchmarks reproduction, in table order: the benchmark's
#: codes that trackbench runs, then ours (the in-house tracker, Ocelot, RF-Track).
IB_BACKENDS: tuple[str, ...] = ("impactx", "cheetah", "cheetah-compiled", "xsuite", "pyat",
                                "inhouse", "ocelot", "rftrack")
#: Run by default (compiled Cheetah only when named: its compilation takes minutes per case).
IB_DEFAULT_BACKENDS: tuple[str, ...] = tuple(b for b in IB_BACKENDS if b != "cheetah-compiled")
IB_LABELS: dict[str, str] = {"impactx": "ImpactX", "cheetah": "Cheetah",
                             "cheetah-compiled": "Cheetah: compiled", "xsuite": "Xsuite",
                             "pyat": "pyAT", "inhouse": "in-house (extra)",
                             "ocelot": "Ocelot (extra)", "rftrack": "RF-Track (extra)"}
#: Backends that offer a fast-math setting at run time here (``math_modes``: inductor's
#: fast-math flags of the compiled torch codes); the fast-math figures run them with
#: ``math: fast``.
IB_FAST_MATH: tuple[str, ...] = ("cheetah-compiled", "inhouse")


def ib_scenario(fig: Figure, fig_id: str) -> str:
    """The benchmark's scenario name of a figure (``htu``, ``fodo_exact``, ...): the id's
    prefix before ``_cpu_``/``_cuda_``."""
    for sep in ("_cpu_", "_cuda_"):
        if sep in fig_id:
            return fig_id.split(sep)[0]
    return fig.scenario


def _cores(fig: Figure) -> str:
    """The published machine's cores per socket from the figure's hardware line."""
    text = fig.hardware
    if "(" in text and " cores)" in text:
        return text.split("(", 1)[1].split(" cores)", 1)[0]
    return "?"


def _where(fig: Figure, layout: Any) -> str:
    """The cell's hardware, published and here: a many-core socket (with the published
    layout) against one core, or one GPU against one GPU."""
    if fig.device == "cuda":
        return "published: one GPU; here: one GPU"
    return (f"published: {_cores(fig)}-core socket{f' ({layout})' if layout else ''}; "
            "here: 1 core")


def _moments(row: dict) -> dict[str, float]:
    from harness.benchmark_rule import TRACKBENCH_NAMES

    out = {}
    for theirs, ours in TRACKBENCH_NAMES.items():
        value = row.get(f"obs_{ours}")
        if isinstance(value, int | float):
            out[theirs] = float(value)
    return out


def benchmark_verdict(scenario: str, row: dict | None, rows_index: RowIndex,
                      threads: int | None) -> tuple[str, float | None]:
    """The benchmark's class (:func:`harness.benchmark_rule.classify`) of a measured row
    against ImpactX float64 at the same N in the same run, and the worst relative moment
    error; a stand-in model is ``model_mismatch`` (declared, as the benchmark does) with the
    class its numbers alone would get in brackets; ``("", None)`` without a row or a
    reference."""
    from harness.benchmark_rule import TOLERANCES, classify

    if not _ok(row) or scenario not in TOLERANCES:
        return "", None
    n = int(row["particles"])
    ref = rows_index.get((row.get("scenario"), "impactx", n, "cpu", "float64", threads))
    if not _ok(ref):
        return "", None
    mismatch = str(row.get("model", "")).startswith("stand-in")
    single = row.get("dtype") == "float32"
    sibling_ok = False
    if single:
        sibling = rows_index.get((row.get("scenario"), row.get("backend"), n, row.get("device"),
                                  "float64", threads), row.get("math") or "ieee")
        if _ok(sibling):
            sibling_ok = classify(_moments(sibling), _moments(ref), n,
                                  scenario).verdict == "correct"
    judged = classify(_moments(row), _moments(ref), n, scenario,
                      precision="single" if single else "double",
                      double_sibling_correct=sibling_ok)
    worst = judged.worst_error if math.isfinite(judged.worst_error) else None
    if mismatch:  # declared, and it takes precedence; the numbers' class is kept beside it
        return f"model_mismatch (numbers: {judged.verdict})", worst
    return judged.verdict, worst


def _published_cell(series: Any, n: int, pub_base: Any) -> dict[str, Any]:
    """A series' published point at ``n``: value, layout, the benchmark's own verdict and
    the speed-up over the figure's baseline point ``pub_base``."""
    point = next((p for p in series.points if p.particles == n), None)
    missing = next((m for m in series.not_measured if m.particles == n), None)
    return {"published_config": series.config,
            "published_particles_per_s": point.particles_per_s if point else None,
            "published_track_s": point.track_s if point else None,
            "published_layout": point.cores if point else "",
            "published_verdict": (point.physics if point else
                                  (f"{missing.status}" if missing else "")),
            "published_speedup_vs_baseline": (
                point.particles_per_s / pub_base.particles_per_s
                if point and pub_base else None)}


def ib_figure_cells(fig_id: str, fig: Figure, plan: FigurePlan | None,
                    rows: Sequence[dict]) -> list[dict[str, Any]]:
    """The cells of one impactx-benchmarks figure: per particle count, one per backend of
    :data:`IB_BACKENDS` and one per published code trackbench does not run. Each holds the
    published particles per second with its layout and the benchmark's own verdict, the
    value measured here on one core (wall time, the benchmark's timer; process time
    beside), the speed-ups over the figure's own baseline (its first series, ImpactX),
    published and here, the benchmark's class of the measured moments and trackbench's
    particle-by-particle verdict, status and footnote keys."""
    index = _index(rows)
    threads = plan.threads if plan else 1
    here = set(plan.particles) if plan else set()
    counts = sorted(set(fig.particles) | here)
    fast_math = fig_id.endswith("_fm")
    scenario = ib_scenario(fig, fig_id)
    base_series = next((s for s in fig.series if s.config == fig.baseline), fig.series[0])
    base_backend = base_series.backend or "impactx"
    published = {s.backend: s for s in fig.series if s.backend}
    outsiders = [s for s in fig.series if not s.backend]
    out: list[dict[str, Any]] = []
    for n in counts:
        measured: dict[str, tuple[dict | None, list[str]]] = {}
        for backend in IB_BACKENDS:
            if plan is None or plan.not_run:
                measured[backend] = (None, [])
            else:
                measured[backend] = _find(
                    index, fig, backend, n, threads,
                    "fast" if fast_math and backend in IB_FAST_MATH else "ieee")
        base_row = measured[base_backend][0]
        base_wall = _rate(n, base_row.get("time_min_s")) if _ok(base_row) else None
        pub_base = next((p for p in base_series.points if p.particles == n), None)

        for backend in IB_BACKENDS:
            row, notes = measured[backend]
            series = published.get(backend)
            pub = _published_cell(series, n, pub_base) if series else {
                "published_config": "", "published_particles_per_s": None,
                "published_track_s": None, "published_layout": "", "published_verdict": "",
                "published_speedup_vs_baseline": None}
            status = plan.not_run if plan and plan.not_run else ""
            if not status and fast_math and backend not in IB_FAST_MATH:
                status, row, notes = "not run: no fast-math setting", None, []
            if not status and n not in here:
                status, row, notes = "not run: particle count not requested here", None, []
            if not status:
                status = _status_text(row)
                if row is None and backend == "cheetah-compiled":
                    status = "not run: compiled Cheetah runs when named (--backends)"
            notes = list(notes)
            if _ok(row) and str(row.get("model", "")).startswith("stand-in"):
                notes.append("ib-stand-in")
            if _ok(row) and backend == "cheetah-compiled":
                notes.append("compiled")
            wall = _rate(n, row.get("time_min_s")) if _ok(row) else None
            verdict, worst = benchmark_verdict(scenario, row, index, threads)
            layout = pub["published_layout"]
            out.append({
                "figure": fig_id, "particles": n, "backend": backend,
                "label": IB_LABELS[backend], **pub,
                "per_core": _where(fig, layout),
                "here_particles_per_s_wall": wall,
                "here_particles_per_s_process": (_rate(n, row.get("process_time_min_s"))
                                                 if _ok(row) else None),
                "here_wall_time_s": row.get("time_min_s") if _ok(row) else None,
                "here_speedup_vs_baseline": wall / base_wall if wall and base_wall else None,
                "here_over_published": (wall / float(pub["published_particles_per_s"])
                                        if wall and pub["published_particles_per_s"]
                                        else None),
                "dtype_here": row.get("dtype") if _ok(row) else None,
                "model_here": row.get("model") if _ok(row) else None,
                "benchmark_verdict_here": verdict,
                "worst_moment_error_here": worst,
                "trackbench_verdict": (row.get("verdict") or "") if _ok(row) else "",
                "status": status, "notes": notes,
            })
        for series in outsiders:
            pub = _published_cell(series, n, pub_base)
            layout = pub["published_layout"]
            out.append({
                "figure": fig_id, "particles": n, "backend": "",
                "label": series.label, **pub,
                "per_core": _where(fig, layout),
                "here_particles_per_s_wall": None, "here_particles_per_s_process": None,
                "here_wall_time_s": None, "here_speedup_vs_baseline": None,
                "here_over_published": None, "dtype_here": None, "model_here": None,
                "benchmark_verdict_here": "", "worst_moment_error_here": None,
                "trackbench_verdict": "",
                "status": f"not run: {series.code} is not a trackbench backend", "notes": []})
    return out


IB_FOOTNOTE_TEXT: dict[str, str] = {
    "impactx-fp64": FOOTNOTE_TEXT["impactx-fp64"],
    "ib-stand-in": "the code has no map of the scenario's model here and runs a labelled "
                   "stand-in (its model column); the benchmark's class is then "
                   "model_mismatch, as the benchmark declares it.",
    "ib-fast-math": "the compiled torch codes run with inductor's fast-math flags "
                    "(math: fast) in the fast-math figures, IEEE in the others.",
    "compiled": FOOTNOTE_TEXT["compiled"],
    "eager-fallback": FOOTNOTE_TEXT["eager-fallback"],
}


def _ib_figure_table(fig_id: str, fig: Figure, cells: list[dict], marks: dict[str, int]) -> str:
    lines = [f"### {fig_id}: {fig.title}", "",
             f"Published: {fig.hardware}; {fig.dtype}. Here: "
             f"{'one GPU' if fig.device == 'cuda' else 'one core, one thread'}. The ratio "
             f"columns are speed-ups over the figure's own baseline ({fig.baseline}; here "
             "ImpactX) in the same run.", "",
             "| particles | code | published [particles/s] | published verdict | here, wall "
             "[particles/s] | here, process [particles/s] | vs baseline: published / here | "
             "benchmark's rule here | trackbench verdict | cores | notes |",
             "|---:|---|---:|---|---:|---:|---:|---|---|---|---|"]
    for cell in cells:
        notes = []
        for key in cell["notes"]:
            marks.setdefault(key, len(marks) + 1)
            notes.append(f"[{marks[key]}]")
        if cell["dtype_here"] and cell["dtype_here"] != fig.dtype:
            notes.append(f"ran {cell['dtype_here']}")
        if cell["model_here"]:
            notes.append(f"model {cell['model_here']}")
        if cell["status"]:
            notes.append(cell["status"])
        rule = cell["benchmark_verdict_here"] or "—"
        if cell["worst_moment_error_here"] is not None:
            rule += f" ({cell['worst_moment_error_here']:.1e})"
        lines.append(
            f"| {cell['particles']:.0e} | {cell['label']} | "
            f"{_num(cell['published_particles_per_s'])} | {cell['published_verdict'] or '—'} | "
            f"{_num(cell['here_particles_per_s_wall'])} | "
            f"{_num(cell['here_particles_per_s_process'])} | "
            f"{_ratio(cell['published_speedup_vs_baseline'])} / "
            f"{_ratio(cell['here_speedup_vs_baseline'])} | {rule} | "
            f"{cell['trackbench_verdict'] or '—'} | {cell['per_core']} | {' '.join(notes)} |")
    return "\n".join(lines)


def ib_render_markdown(published: Published, plans: Sequence[FigurePlan],
                       rows: Sequence[dict], machine: dict[str, Any] | None = None,
                       load: dict[str, Any] | None = None,
                       repeat: int | None = None) -> str:
    """The impactx-benchmarks reproduction: one table per published figure, then notes on
    the hardware, load, versions, timer and the two judges."""
    from harness.benchmark_rule import SAMPLING_C, TOLERANCES

    machine = machine or {}
    by_id = {p.figure: p for p in plans}
    src = published.source
    lines = ["# Reproduction: impactx-benchmarks (2026)", "",
             f"Published numbers: {src.repository} commit {src.commit[:12]}, {src.file} "
             f"({src.host}, {src.machine.get('timestamp_utc', '?')}); as data in "
             "results/published/impactx-benchmarks.yaml.", "",
             "Every published CPU cell is one 64-core socket at the fastest MPI ranks x OpenMP "
             "threads layout the benchmark found (its `cores`): many-core. Every cell here "
             "ran on one core with one thread: a per-core figure. The two are not the same "
             "quantity; each row says so. Every published GPU cell is one GPU "
             f"({src.machine.get('gpu', '?')}); the GPU figures run here only where a GPU is "
             "present, at the published particle counts, and say 'not run: no GPU' "
             "otherwise.", "",
             "Two judges per measured cell: the benchmark's rule (harness/benchmark_rule.py: "
             "sigma_x, sigma_y, emit_x, emit_y, + sigma_t with space charge, against ImpactX "
             "float64 of the same run at the same N, within "
             + ", ".join(f"{k} {v:g}" for k, v in TOLERANCES.items())
             + f" widened by {SAMPLING_C:g}/sqrt(N); worst relative error in brackets) and "
             "trackbench's particle-by-particle verdict against the same ImpactX run.", ""]
    marks: dict[str, int] = {}
    for fig_id, fig in published.figures.items():
        cells = ib_figure_cells(fig_id, fig, by_id.get(fig_id), rows)
        lines += [_ib_figure_table(fig_id, fig, cells, marks), ""]
    lines += ["### Notes", ""]
    for key, number in sorted(marks.items(), key=lambda kv: kv[1]):
        lines.append(f"[{number}] {IB_FOOTNOTE_TEXT[key]}")
    lines.append("")
    cpu = machine.get("cpu", "this machine's CPU")
    lines.append(f"- Hardware: here {cpu}, {machine.get('cores_available', '?')} cores, each "
                 "case on one core with one thread (shared with other work); published: "
                 f"{src.machine.get('cpu_model', '?')}, one socket of "
                 f"{src.machine.get('cores_per_socket', '?')} cores per CPU cell, one GPU of "
                 f"{src.machine.get('gpu', '?')} per GPU cell.")
    for run in load_runs(load or {}):
        lines.append(f"- Machine load (1/5/15-min load average): {_load_span(run)} "
                     "(under load from concurrent jobs where above the core count; timings "
                     "of a loaded machine are noisy).")
    versions: dict[str, str] = {}
    for row in rows:
        if row.get("backend") and row.get("backend_version"):
            versions.setdefault(str(row["backend"]), str(row["backend_version"]))
    lines.append("- " + _versions_sentence(versions, published, "published"))
    lines.append("- ImpactX here is the PyPI wheel (sequential, FP64 only, generic build); "
                 "the benchmark's ImpactX was built with SIMD, in FP32 and FP64, IEEE and "
                 "fast-math.")
    lines.append(f"- Timer: here the least of {repeat or '?'} timed tracks after one untimed "
                 "warm-up in the same process, wall time (the benchmark's timer) and process "
                 f"CPU time; published: {src.timer}; {src.statistic}.")
    lines.append("- Fast-math figures: a backend without a fast-math setting at run time is "
                 "'not run: no fast-math setting'; the ratio baseline here is then ImpactX "
                 "IEEE.")
    lines.append("- Figures whose scenario no bundled file states say 'not stated: <why>'; "
                 "GPU figures say 'not run: no GPU' on a machine without CUDA.")
    return "\n".join(lines) + "\n"
