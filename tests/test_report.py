"""Reports: tables hold exactly the values of the result rows, every case is listed, the
output is reproducible byte for byte, plots are drawn and the HTML is self-contained."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.case_process import Limits
from harness.cases import Case
from harness.cli import app
from harness.display import format_count, format_rate, format_ratio, format_time
from harness.metadata import METADATA_JSON
from harness.model.load import load_scenario
from harness.report import write_report
from harness.results import append_rows
from harness.runner import Runner

SCENARIO = "fodo_linear"
ELEMENTS = 5
PARAMETERS = ("qf.Kn1", "qd.Kn1")
FD_STEPS = (1e-2, 1e-4, 1e-6, 1e-8, 1e-10)
FAKE = "fake_backends:"

#: One worker runs the module: its tests share the written runs and report.
pytestmark = pytest.mark.xdist_group("report")


def _metadata(cpu: str, gpus: list[dict]) -> dict:
    return {
        "machine": {"cpu": cpu, "logical_cores": 2, "physical_cores": 2, "cores_available": 2,
                    "memory_gib": 23.5, "gpus": gpus, "os": "Linux-6.1-x86_64",
                    "python": "3.11.7"},
        "backends": {"impactx": {"available": True, "version": "26.10"},
                     "cheetah": {"available": True, "version": "0.8.4"},
                     "inhouse": {"available": True, "version": "0.1.0"}},
        "git": {"commit": "0123456789abcdef0123", "dirty": False},
        "command": ["/some/where/bin/trackbench", "run", SCENARIO],
        "started": "2026-01-02T03:04:05+00:00", "finished": "2026-01-02T03:14:05+00:00",
    }


def _track(backend: str, particles: int, device: str = "cpu", dtype: str = "float64",
           status: str = "ok", reason: str = "", scale: float = 1.0, **extra) -> dict:
    """A track row as the runner writes it (times scale with N; deviations grow per backend)."""
    row = {"kind": "track", "scenario": SCENARIO, "backend": backend, "particles": particles,
           "device": device, "dtype": dtype, "status": status, "reason": reason,
           "repeat": 3, "threads": 2, "threads_requested": None, "model": "linear",
           "reference": "impactx", "role": "reference" if backend == "impactx" else "case",
           "case_id": f"track/{SCENARIO}/{backend}/{particles}/{device}/{dtype}"}
    if status == "ok":
        median = scale * 1e-7 * particles
        row.update(time_min_s=0.9 * median, time_median_s=median, time_max_s=1.3 * median,
                   time_spread=0.4, times_s=[0.9 * median, median, 1.3 * median],
                   throughput_particle_elements_per_s=particles * ELEMENTS / median,
                   n_elements=ELEMENTS, length_m=3.0)
        if backend == "impactx":
            row.update(verdict="reference")
        else:
            row.update(dev_max=3.5e-15 * scale, dev_rms=7.1e-16 * scale,
                       obs_err_sigma_x=2.25e-15 * scale, obs_err_emittance_x=9.5e-14 * scale,
                       obs_sigma_x=7.5e-5, verdict="agrees", verdict_detail="")
    row.update(extra)
    return row


def _gradient(backend: str, particles: int, method: str, parameter: str, n_params: int,
              **extra) -> dict:
    """A gradient row as harness.gradient_case writes it: the case's costs on every row,
    the method's own time in time_gradient_s (FD rows: the FD gradient's)."""
    time_forward, time_fd = 1e-3 * n_params ** 0.1, 1e-3 * (2 * n_params + 1)
    time_gradient = {"reverse": 3e-3 * n_params ** 0.2, "forward": 2e-3 * n_params}.get(
        method, time_fd)
    row = {"kind": "gradient", "scenario": SCENARIO, "backend": backend,
           "particles": particles, "device": "cpu", "dtype": "float64", "status": "ok",
           "reason": "", "parameter": parameter, "objective": "sigma_x", "method": method,
           "n_params": n_params, "reference_method": "forward-mode inhouse float64 cpu",
           "case_id": f"gradient/{SCENARIO}/{backend}/{particles}/cpu/float64/P{n_params}",
           "reference_value": 0.125, "time_forward_s": time_forward, "time_fd_s": time_fd}
    if method != "reference":
        row.update(time_gradient_s=time_gradient,
                   gradient_over_forward=time_gradient / time_forward,
                   fd_over_gradient=time_fd / time_gradient)
    if method == "reverse":
        row.update(backward_peak_bytes=4096 * particles * n_params,
                   backward_memory_method="torch_profiler")
    row.update(extra)
    return row


def _gradient_rows(backend: str, particles: int, methods=("reverse", "forward"),
                   failed_forward: bool = False) -> list[dict]:
    """Rows of two cases: P=2 with an FD sweep (a V: truncation ~ h², round-off ~ eps/h),
    and the P-scaling variants P=1, 4, 8 without FD."""
    rows = []
    for index, parameter in enumerate(PARAMETERS):
        errors = {step: 0.3 * step ** 2 + 2.2e-16 / step * (index + 1) for step in FD_STEPS}
        best = min(errors, key=errors.get)
        rows.append(_gradient(backend, particles, "reference", parameter, 2, value=0.125))
        for method in methods:
            error = 1e-15 * (index + 1) * (3 if method == "forward" else 1)
            if method == "forward" and failed_forward and index == 1:
                rows.append(_gradient(backend, particles, "forward", parameter, 2,
                                      status="failed", reason="RuntimeError: vmap failed"))
                continue
            rows.append(_gradient(backend, particles, method, parameter, 2,
                                  value=0.125 * (1 + error), rel_error=error,
                                  rel_error_vs_best_fd=errors[best] * 0.9))
        for step, error in errors.items():
            rows.append(_gradient(backend, particles, "fd", parameter, 2, fd_step=step,
                                  value=0.125 * (1 + error), rel_error=error, best_fd_step=best))
    for n_params in (1, 4, 8) if "reverse" in methods else ():
        for method in methods:
            rows.append(_gradient(backend, particles, method, PARAMETERS[0], n_params,
                                  value=0.125, rel_error=1e-15))
    return rows


def write_runs(directory: Path) -> list[Path]:
    """A CPU run (three backends, two N, non-ok cases, gradients) and a GPU run."""
    cpu, gpu = directory / "cpu-run", directory / "gpu-run"
    cpu_rows = [
        _track("impactx", 1000), _track("impactx", 10000),
        _track("cheetah", 1000, scale=300.0), _track("cheetah", 10000, scale=40.0),
        _track("inhouse", 1000, scale=200.0), _track("inhouse", 10000, scale=30.0),
        _track("inhouse", 1000, dtype="float32", scale=150.0, verdict="differs",
               verdict_detail="dev_max 3.1e-06 > 1e-08"),
        _track("cheetah", 1000, dtype="float32", status="failed",
               reason="RuntimeError: the element map diverged"),
        _track("inhouse", 10000, dtype="float32", status="timeout",
               reason="no result within 600 s"),
        _track("cheetah", 10000, dtype="float32", status="oom",
               reason="resident memory above 21.1 GiB"),
        _track("impactx", 1000, device="cuda", status="unsupported",
               reason="impactx-noacc is built without GPU support"),
        _track("cheetah", 2000, scale=2.0, model="paraxial+exact", verdict="model-mismatch",
               verdict_detail="case paraxial+exact vs reference linear"),
    ]
    for backend in ("inhouse", "cheetah"):
        for particles in (1000, 10000):
            cpu_rows += _gradient_rows(backend, particles, failed_forward=(
                backend, particles) == ("cheetah", 10000))
    cpu_rows += _gradient_rows("impactx", 10000, methods=())  # FD only
    cpu_rows.append({"kind": "gradient", "scenario": SCENARIO, "backend": "impactx",
                     "particles": 1000, "device": "cpu", "dtype": "float64",
                     "status": "unsupported", "reason": "impactx is not differentiable",
                     "case_id": f"gradient/{SCENARIO}/impactx/1000/cpu/float64"})
    gpu_rows = [_track("cheetah", n, device="cuda", dtype=dtype, scale=s)
                for n, s in ((1000, 50.0), (10000, 5.0)) for dtype in ("float64", "float32")]
    gpu_rows += [_track("impactx", 1000), _track("impactx", 10000)]
    append_rows(cpu, cpu_rows)
    append_rows(gpu, gpu_rows)
    (cpu / METADATA_JSON).write_text(json.dumps(_metadata(
        "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", [])))
    (gpu / METADATA_JSON).write_text(json.dumps(_metadata(
        "AMD EPYC 7R13 Processor", [{"name": "NVIDIA H100", "memory": "81559 MiB",
                                     "driver": "550.54"}])))
    return [cpu, gpu]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> list[Path]:
    return write_runs(tmp_path_factory.mktemp("runs"))


def _markdown_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """The tables of a Markdown report by section title, as header -> cell dicts."""
    tables = {}
    for section in re.split(r"^###? ", text, flags=re.MULTILINE)[1:]:
        title, _, body = section.partition("\n")
        lines = [line for line in body.splitlines() if line.startswith("| ")]
        if len(lines) < 2:
            continue
        split = [[cell.strip().replace("\\|", "|")
                  for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
        header, rows = split[0], split[2:]
        tables[title] = [dict(zip(header, row, strict=True)) for row in rows
                         if any(row)]
    return tables


def _rows(directory: Path, kind: str) -> list[dict]:
    return [json.loads(line) for line in (directory / "results.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == kind]


def _key(run: str, row: dict) -> tuple:
    return (run, row["scenario"], row["backend"], format_count(row["particles"]),
            row["device"], row["dtype"])


def _cell_key(cells: dict) -> tuple:
    return (cells["run"], cells["scenario"], cells["backend"], cells["N"], cells["device"],
            cells["dtype"])


@pytest.fixture(scope="module")
def report(run_dirs, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report")
    write_report(run_dirs, out)
    return out, _markdown_tables((out / "report.md").read_text())


def test_timing_table_holds_the_row_values(run_dirs, report):
    _, tables = report
    timing = {_cell_key(cells): cells for cells in tables["Timing"]}
    expected = 0
    for directory in run_dirs:
        rows = _rows(directory, "track")
        baseline = {(r["scenario"], r["particles"], r["device"], r["dtype"]): r["time_median_s"]
                    for r in rows if r["backend"] == "impactx" and r["status"] == "ok"}
        for row in rows:
            cells = timing[_key(directory.name, row)]
            expected += 1
            assert cells["status"] == row["status"]
            if row["status"] != "ok":
                assert cells["time (median)"] == "-"
                assert cells["reason"] == row["reason"]
                continue
            assert cells["time (median)"] == format_time(row["time_median_s"])
            assert cells["spread"] == f"{100 * row['time_spread']:.0f}%"
            assert cells["throughput [particle·elements/s]"] == format_rate(
                row["throughput_particle_elements_per_s"])
            same = (row["scenario"], row["particles"], row["device"], row["dtype"])
            cpu64 = (row["scenario"], row["particles"], "cpu", "float64")
            if same in baseline:
                expected_cell = format_ratio(baseline[same] / row["time_median_s"])
            elif cpu64 in baseline:  # impactx ran neither float32 nor on the GPU
                expected_cell = (format_ratio(baseline[cpu64] / row["time_median_s"])
                                 + " (vs cpu float64)")
            else:
                expected_cell = "-"
            assert cells["speed-up vs impactx"] == expected_cell
    assert len(tables["Timing"]) == expected
    assert any("(vs cpu float64)" in c["speed-up vs impactx"] for c in tables["Timing"])


def test_agreement_table_holds_the_row_values(run_dirs, report):
    _, tables = report
    agreement = {_cell_key(cells): cells for cells in tables["Agreement with the reference"]}
    for directory in run_dirs:
        for row in _rows(directory, "track"):
            cells = agreement[_key(directory.name, row)]
            assert cells["status"] == row["status"]
            assert cells["model"] == row["model"]
            if row["status"] != "ok":
                assert cells["detail"] == row["reason"]
                assert cells["verdict"] == "-"
                continue
            assert cells["verdict"] == row["verdict"]
            assert cells["detail"] == row.get("verdict_detail", "")
            if row["verdict"] == "reference":
                assert cells["max |Δ|/σ"] == "-"
                continue
            assert cells["max |Δ|/σ"] == format_ratio(row["dev_max"])
            assert cells["rms |Δ|/σ"] == format_ratio(row["dev_rms"])
            worst = max(("emittance_x", "sigma_x"), key=lambda n: row[f"obs_err_{n}"])
            assert cells["worst observable"] == worst
            assert cells["its rel. error"] == format_ratio(row[f"obs_err_{worst}"])
    mismatch = [c for c in agreement.values() if c["verdict"] == "model-mismatch"]
    assert mismatch and "reference linear" in mismatch[0]["detail"]


def test_gradient_table_holds_the_row_values(run_dirs, report):
    _, tables = report
    cells_by_key = {(*_cell_key(c), c["parameter"], c["P"]): c for c in tables["Gradients"]}
    groups: dict[tuple, list[dict]] = {}
    for row in _rows(run_dirs[0], "gradient"):
        key = (*_key(run_dirs[0].name, row), row.get("parameter", "-"),
               str(row.get("n_params", "-")))
        groups.setdefault(key, []).append(row)
    assert set(groups) == set(cells_by_key)
    seen = set()
    for key, group in groups.items():
        cells = cells_by_key[key]
        ok = {r["method"]: r for r in group if r["status"] == "ok" and "method" in r}
        failed = [r for r in group if r["status"] != "ok"]
        if not ok:
            assert (cells["status"], cells["reason"]) == (failed[0]["status"],
                                                          failed[0]["reason"])
            seen.add("not ok")
            continue
        assert cells["status"] == "ok"
        if failed:
            assert cells["reason"] == "forward: failed: RuntimeError: vmap failed"
            assert cells["forward vs reverse"] == "-"
            seen.add("method failed")
        reverse = ok.get("reverse")
        costs = reverse or ok.get("forward") or ok["fd"]
        suffix = "" if costs is reverse else " (fd)"
        assert cells["gradient / forward"] == format_ratio(costs["gradient_over_forward"]) + suffix
        assert cells["FD / gradient"] == format_ratio(costs["fd_over_gradient"]) + suffix
        if reverse is None:
            assert cells["reverse vs ref."] == cells["backward memory"] == "-"
            seen.add("fd only")
        else:
            assert cells["reverse vs ref."] == format_ratio(reverse["rel_error"])
            assert cells["backward memory"] == f"{reverse['backward_peak_bytes'] / 2**20:.3g} MiB"
        if "forward" in ok and reverse:
            assert cells["forward vs reverse"] == format_ratio(
                abs(ok["forward"]["value"] - reverse["value"]) / abs(reverse["value"]))
        fd = [r for r in group if r.get("method") == "fd"]
        if not fd:
            assert cells["best FD step"] == cells["FD error"] == "-"
            continue
        best = min(fd, key=lambda r: r["rel_error"])
        assert cells["best FD step"] == format_ratio(best["fd_step"])
        assert cells["FD error"] == format_ratio(best["rel_error"])
        if reverse:
            assert cells["reverse vs best FD"] == format_ratio(reverse["rel_error_vs_best_fd"])
    assert seen == {"not ok", "method failed", "fd only"}


def test_header_comes_from_metadata(report):
    out, tables = report
    header = {cells[""]: cells for cells in tables["Machine and versions"]}
    assert header["CPU"]["cpu-run"] == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert header["GPU"]["gpu-run"].startswith("NVIDIA H100")
    assert header["commit"]["cpu-run"] == "0123456789ab"
    assert header["command"]["cpu-run"] == "trackbench run fodo_linear"
    assert "impactx 26.10" in header["backends"]["gpu-run"]


def test_report_of_a_real_run_lists_every_case(tmp_path, monkeypatch):
    """Rows written by the runner (fake backends in child processes), reported by the CLI."""
    tests = Path(__file__).resolve().parent
    monkeypatch.setenv("PYTHONPATH", str(tests))
    monkeypatch.syspath_prepend(str(tests))
    scenario = load_scenario(SCENARIO)
    reference = Case(SCENARIO, scenario.source_file, FAKE + "IdentityBackend", 200, repeat=1,
                     role="reference", reference="fake-identity")
    cases = [reference] + [
        Case(SCENARIO, scenario.source_file, FAKE + name, 200, repeat=1,
             reference="fake-identity", reference_case=reference.case_id)
        for name in ("PerturbedBackend", "RaisingBackend", "UnsupportingBackend")]
    run = tmp_path / "run"
    Runner(run, Limits(timeout_s=60.0, memory_bytes=1 << 30)).run(cases, {SCENARIO: scenario})
    stale = run / "report" / "plots" / "time-removed-scenario.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier report")
    result = CliRunner().invoke(app, ["report", str(run), "--format", "md,tex",
                                      "--baseline", FAKE + "IdentityBackend"])
    assert result.exit_code == 0, result.output
    out = run / "report"
    printed = result.output.split()
    assert str(out / "report.md") in printed and str(out / "report.tex") in printed
    assert not (out / "report.html").exists()
    assert not stale.exists()
    tables = _markdown_tables((out / "report.md").read_text())
    rows = {row["backend"]: row for row in _rows(run, "track")}
    for name in ("Timing", "Agreement with the reference"):
        listed = {cells["backend"]: cells for cells in tables[name]}
        assert set(listed) == set(rows)
        for backend, row in rows.items():
            assert listed[backend]["status"] == row["status"]
    timing = {cells["backend"]: cells for cells in tables["Timing"]}
    raising = rows[FAKE + "RaisingBackend"]
    assert timing[FAKE + "RaisingBackend"]["reason"] == raising["reason"] != ""
    perturbed = rows[FAKE + "PerturbedBackend"]
    assert timing[FAKE + "PerturbedBackend"]["time (median)"] == format_time(
        perturbed["time_median_s"])
    assert tables["Gradients"] == []
    text = (out / "report.md").read_text()
    assert "No gradient cases in these runs" in text
    assert "V-curve" in text.split("Plots not drawn")[1]
    bad = CliRunner().invoke(app, ["report", str(run), "--format", "pdf"])
    assert bad.exit_code == 2


def test_same_results_give_identical_files(run_dirs, report, tmp_path):
    out, _ = report
    first = sorted(p for p in out.rglob("*") if p.is_file())
    second = write_report(run_dirs, tmp_path / "b")
    assert [p.relative_to(out) for p in first] == sorted(
        p.relative_to(tmp_path / "b") for p in second)
    for a, b in zip(first, sorted(second), strict=True):
        if a.suffix != ".png":  # PNG pixels may differ across font caches; SVG is checked
            assert a.read_bytes() == b.read_bytes(), a.name


def test_plots_are_written(report):
    out, _ = report
    names = {path.stem for path in (out / "plots").glob("*.png")}
    assert {"time-fodo-linear", "speedup-fodo-linear", "vcurve-fodo-linear-qf-kn1",
            "gradient-cost-fodo-linear", "backward-memory-fodo-linear"} <= names
    for name in names:
        png = (out / "plots" / f"{name}.png").read_bytes()
        svg = (out / "plots" / f"{name}.svg").read_text()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
        assert "<svg" in svg and len(svg) > 5000


def test_html_is_self_contained(report):
    out, _ = report
    html = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"url\(|@import|<script|<link", html, re.IGNORECASE)
    assert html.count("data:image/svg+xml;base64,") == len(
        list((out / "plots").glob("*.svg")))
    assert "impactx-noacc is built without GPU support" in html


def test_latex_uses_booktabs_and_escapes(report):
    out, _ = report
    tex = (out / "report.tex").read_text()
    summaries = len(re.findall(r"^### .*: (cpu|cuda), ", (out / "report.md").read_text(),
                               flags=re.MULTILINE))
    gradient_summaries = (out / "report.md").read_text().count(": gradient accuracy and cost\n")
    assert r"\usepackage{booktabs}" in tex
    assert tex.count(r"\toprule") == 4 + summaries + gradient_summaries
    assert r"fodo\_linear" in tex and "µ" not in tex and "|Δ|" not in tex
    assert r"\includegraphics[width=0.8\linewidth]{plots/time-fodo-linear.png}" in tex


#: The reference runs in the order of the Makefile's REFERENCE_RUNS.
REFERENCE_RUNS = ("comparison", "performance", "gradients", "gradient-scaling",
                  "space-charge-gradients")


def test_committed_reference_tables_regenerate_byte_for_byte():
    """The tables of the committed reference report (results/reference/*/report) come from
    its committed results: rendered again, each is found verbatim in report.md and
    report.tex (``make report-reference`` rewrites them; plots are not redrawn here)."""
    from harness.report import all_tables, load_runs, summary_tables
    from harness.report.render import latex_table, markdown_table

    root = Path(__file__).resolve().parent.parent / "results" / "reference"
    reports = sorted(root.glob("*/report/report.md"))
    assert reports, "no committed reference report"
    for report in reports:
        machine = report.parent.parent
        runs = load_runs([machine / name for name in REFERENCE_RUNS])
        markdown = report.read_text(encoding="utf-8")
        latex = (report.parent / "report.tex").read_text(encoding="utf-8")
        tables = [*summary_tables(runs), *all_tables(runs)]
        assert len(tables) >= 5
        for table in tables:
            assert markdown_table(table) in markdown, table.title
            assert latex_table(table, label=f"tab:{table.key}") in latex, table.title


def test_report_leads_with_the_summary(report):
    """The first section answers "which code is fastest where, and do they agree"; the long
    per-case tables come after it, in the appendix."""
    out, _ = report
    markdown = (out / "report.md").read_text()
    sections = re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)
    assert sections[0] == "Summary"
    assert sections.index("Summary") < sections.index("Appendix: every case")
    assert markdown.index("### Timing") > markdown.index("## Appendix: every case")
    assert markdown.index("plots/throughput-overview.png") < markdown.index("### Timing")


def test_summary_cells_hold_time_speedup_and_verdict(run_dirs, report):
    """Each summary cell is the row at the scenario's largest N: its median time, the
    speed-up over ImpactX at the same setting and the verdict's mark."""
    from harness.report.summary import VERDICT_MARKS

    _, tables = report
    checked = 0
    for directory in run_dirs:
        rows = _rows(directory, "track")
        for row in rows:
            threads = row.get("threads_requested")
            title = (f"{directory.name}: {row['device']}, {row['dtype']}, "
                     + ("all threads" if threads is None else
                        f"{threads} thread{'s' if threads != 1 else ''}"))
            same = [r for r in rows if r["scenario"] == row["scenario"]
                    and r["device"] == row["device"] and r["dtype"] == row["dtype"]
                    and r.get("threads_requested") == threads]
            if row["particles"] != max(r["particles"] for r in same):
                continue
            line = next(c for c in tables[title] if c["scenario"] == row["scenario"])
            cell = line[row["backend"]]
            if row["status"] != "ok":
                assert cell == row["status"]
            else:
                assert cell.startswith(format_time(row["time_median_s"]))
                mark = VERDICT_MARKS.get(row.get("verdict") or "", "")
                assert cell.endswith(mark)
                baseline = next((r for r in same if r["backend"] == "impactx"
                                 and r["particles"] == row["particles"]
                                 and r["status"] == "ok"), None)
                if baseline is not None and row["backend"] != "impactx":
                    ratio = format_ratio(baseline["time_median_s"] / row["time_median_s"])
                    assert f" · {ratio}x" in cell
            checked += 1
    assert checked > 0


def test_html_report_renders_in_a_browser(report, tmp_path):
    """The HTML report as a reader sees it: headless Chromium renders it to a screenshot
    (skipped where no Chromium is installed)."""
    from harness import dashboard

    if dashboard.find_chromium() is None:
        pytest.skip("no Chromium (apt-get install chromium) to render the report")
    out, _ = report
    shot = dashboard.screenshot_page(out / "report.html", tmp_path / "report.png")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
