"""ImpactX's example suite through trackbench: for every ``run_*.py`` of the installed
ImpactX's ``examples`` folder, whether trackbench can state it as a scenario and, where it
can, whether trackbench's ImpactX and in-house backends reproduce the example's own final
beam (at the example's own initial particles) within the tolerances of its analysis script.

Per example, in a fresh copy of its folder (named as ImpactX's ctest names the test, after
the example its test depends on has run in a sibling folder): the script runs in a child process
(:mod:`.capture`) under a time and memory limit; a stated scenario is then tracked by each
backend in a child process of its own (:mod:`.track`). The verdicts:

* ``reproduced``: both backends run the scenario's own model and every final-beam quantity
  the analysis checks (:mod:`.tolerances`) is within its tolerance of the example's value;
  an analysis that checks no such moment (kick ratios, tunes, per-particle invariants, a
  lost-particle count) is run itself on each backend's final particles (:mod:`.analysis`),
  and every ``assert`` it evaluates must hold, as it does on the example's own final beam;
* ``partly``: the scenario is stated, but a backend refuses it, runs a stand-in, fails or is
  outside a tolerance (the reason says which);
* ``not expressible``: the reasons the scenario cannot be stated.
"""

from __future__ import annotations

import csv
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.impactx_examples.tolerances import Check, analysis_for, read_checks
from benchmarks.impactx_examples.translate import category

BACKENDS = ("impactx", "inhouse")
#: Wall-clock limit of each child process (the example's run, each backend's run) [s].
TIMEOUT_S = 900.0
#: Address-space limit of each child process [bytes].
MEMORY_BYTES = 12 * 2**30
REPOSITORY = Path(__file__).resolve().parents[2]
STATUSES = ("reproduced", "partly", "not expressible")
CSV_COLUMNS = ("script", "status", "reason", "impactx", "inhouse", "worst_impactx",
               "worst_inhouse", "checked", "tolerance", "analysis", "seconds")


def examples_folder() -> Path:
    """The ``examples`` folder of the installed ImpactX wheel."""
    import importlib.util

    spec = importlib.util.find_spec("impactx")
    if spec is None or spec.origin is None:
        raise SystemExit("impactx is not installed (make setup)")
    return Path(spec.origin).parent / "examples"


def scripts(examples: Path, only: list[str] | None = None) -> list[Path]:
    """The example run scripts, sorted; ``only``: keep those whose relative path contains
    one of the strings."""
    found = sorted(examples.glob("*/run_*.py"))
    if only:
        found = [p for p in found if any(s in p.relative_to(examples).as_posix()
                                         for s in only)]
    return found


@dataclass
class Outcome:
    """The row of one example script."""

    script: str
    status: str = "not expressible"
    reasons: list[str] = field(default_factory=list)
    backends: dict[str, str] = field(default_factory=dict)
    worst: dict[str, float] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    tolerance: str = ""
    analysis: str = ""
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        """The CSV row."""
        return {"script": self.script, "status": self.status,
                "reason": "; ".join(self.reasons),
                **{b: self.backends.get(b, "") for b in BACKENDS},
                **{f"worst_{b}": (f"{self.worst[b]:.3g}" if b in self.worst else "")
                   for b in BACKENDS},
                "checked": " ".join(self.checked), "tolerance": self.tolerance,
                "analysis": self.analysis, "seconds": f"{self.seconds:.1f}"}


def _limits() -> None:
    """In the child: bound its address space."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def _child(args: list[str], cwd: Path, timeout: float, log: Path) -> str | None:
    """Run ``python -m <args>`` in ``cwd``; None when it ended, else why not."""
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1",
           "MPLBACKEND": "Agg"}
    with log.open("ab") as out:
        try:
            done = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                  preexec_fn=_limits, check=False)
        except subprocess.TimeoutExpired:
            return f"longer than the budget: over {timeout:.0f} s"
    if done.returncode < 0:
        return f"killed: signal {-done.returncode} (memory limit {MEMORY_BYTES >> 30} GiB?)"
    return None


def _deviation(checks: list[Check], ours: dict[str, float], example: dict[str, float]
               ) -> float:
    """The largest ratio |ours - example| / allowed over the checks (inf: a particle count
    or a quantity differs where nothing is allowed)."""
    worst = 0.0 if ours.get("particles") == example.get("particles") else float("inf")
    for check in checks:
        if check.key not in ours or check.key not in example:
            return float("inf")
        deviation = abs(ours[check.key] - example[check.key])
        allowed = check.allowed(example[check.key])
        worst = max(worst, deviation / allowed if allowed else
                    (0.0 if deviation == 0 else float("inf")))
    return worst


def _judge(outcome: Outcome, out: Path, checks: list[Check], example: dict[str, float]
           ) -> None:
    """Fill the backends' verdicts and the status from their records in ``out``."""
    reasons = []
    for backend in BACKENDS:
        path = out / f"{backend}.json"
        record: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {
            "status": "failed", "reason": "no result written"}
        if record["status"] != "ok":
            outcome.backends[backend] = f"{record['status']}: {record.get('reason', '')}"
            reasons.append(f"{backend} {record['status']}: {record.get('reason', '')}")
            continue
        worst = _deviation(checks, record["final"], example)
        outcome.worst[backend] = worst
        within = worst <= 1.0
        outcome.backends[backend] = "within" if within else "outside"
        if record.get("stand_in"):
            outcome.backends[backend] += f" ({record['stand_in']})"
            reasons.append(f"{backend} stand-in: {record['stand_in']}")
        elif not within:
            reasons.append(f"{backend} outside tolerance: {worst:.3g} x the allowed deviation")
    outcome.status = "partly" if reasons else "reproduced"
    outcome.reasons = reasons


def _analysis_record(out: Path, who: str) -> dict[str, Any]:
    """``OUT/<who>_analysis.json`` (:mod:`.analysis`), or a record saying why there is none."""
    path = out / f"{who}_analysis.json"
    return json.loads(path.read_text()) if path.is_file() else {
        "error": "the analysis run wrote no record"}


def _judge_analysis(outcome: Outcome, out: Path, analysis: str) -> bool:
    """Judge each backend by the example's own analysis script run on its final particles
    (:mod:`.analysis`): within when every ``assert`` the script evaluates holds, *worst* the
    largest ``allclose`` deviation as a multiple of the allowed one. The same run on the
    example's own final beam must pass (else the analysis's reading here is in doubt, and
    the example is partly). Returns whether any check was evaluated."""
    example = _analysis_record(out, "example")
    if "error" in example or not example["checks"]:
        if "error" in example:
            outcome.reasons.append(f"analysis run: {example['error']}")
        elif example["skipped"]:
            causes = [f"{analysis}:{s['line']}: {s['reason']}" for s in example["skipped"]
                      if not s["reason"].startswith("needs ")][:2]
            outcome.reasons.append(f"analysis: no assert evaluated here ({'; '.join(causes)})")
        return False
    outcome.checked = [f"{analysis}:{c['line']}" for c in example["checks"]]
    parts = [f":{c['line']}" + (f" rtol={c['rtol']:.3g} atol={c['atol']:.3g}"
                                if "rtol" in c else " assert")
             for c in example["checks"]]
    skipped = [f":{s['line']} ({s['reason']})" for s in example["skipped"] if s["assert"]]
    outcome.tolerance = (f"{analysis}" + ", ".join(parts)
                         + (f" (not evaluated: {'; '.join(skipped)})" if skipped else ""))
    failed = [c["line"] for c in example["checks"] if not c["holds"]]
    reasons = [f"the analysis fails on the example's own final beam at line(s) {failed}"
               ] if failed else []
    for backend in BACKENDS:
        if outcome.backends.get(backend, "").split(" ")[0] not in ("within", "outside"):
            reasons.append(f"{backend} {outcome.backends.get(backend, 'not run')}")
            continue
        record = _analysis_record(out, backend)
        if "error" in record:
            outcome.backends[backend] = f"failed: analysis run: {record['error']}"
            reasons.append(f"{backend} analysis run failed: {record['error']}")
            continue
        lines = {c["line"]: c for c in record["checks"]}
        missing = [c["line"] for c in example["checks"] if c["line"] not in lines]
        failing = sorted(line for line, c in lines.items() if not c["holds"])
        worst = max((c.get("worst", 0.0) for c in lines.values()), default=0.0)
        within = not (missing or failing)
        # a failing plain assert (a count, a bound) has no ratio: inf, as a count mismatch
        outcome.worst[backend] = worst if within or worst > 1.0 else float("inf")
        stand_in = outcome.backends[backend].partition(" ")[2]
        outcome.backends[backend] = ("within" if within else "outside") + (
            f" {stand_in}" if stand_in else "")
        if stand_in:
            reasons.append(f"{backend} stand-in: {stand_in.strip('()')}")
        elif not within:
            reasons.append(f"{backend} fails the analysis at line(s) {failing + missing}"
                           f" (worst {worst:.3g} x the allowed deviation)")
    outcome.status = "partly" if reasons else "reproduced"
    outcome.reasons = [r for r in outcome.reasons if r.split(" ")[0] not in BACKENDS
                       ] + reasons
    return True


def ctest_names(examples: Path) -> tuple[dict[str, str], dict[str, str]]:
    """ImpactX's ``examples/CMakeLists.txt`` as ``(script -> test name, test name -> test
    it depends on)``: ``add_impactx_test(<name> <input> ...)`` and ``set_property(TEST
    <name>.run APPEND PROPERTY DEPENDS "<other>.run")`` (ctest runs each test in a folder
    named after it, a dependency first, e.g. ``solenoid_restart`` reads
    ``../solenoid.py/diags/openPMD/m1.h5``); scripts relative to ``examples``."""
    cmake = examples / "CMakeLists.txt"
    text = re.sub(r"#[^\n]*", "", cmake.read_text()) if cmake.is_file() else ""
    names = {m.group(2).removeprefix("examples/"): m.group(1) for m in re.finditer(
        r"add_impactx_test\(\s*(\S+)\s+(\S+)", text)}
    depends = {m.group(1): m.group(2) for m in re.finditer(
        r"set_property\(\s*TEST\s+(\S+)\.run\s+APPEND\s+PROPERTY\s+DEPENDS\s+"
        r"\"(\S+)\.run\"", text)}
    return names, depends


def _run_dependency(script: Path, folder: Path, timeout: float, log: Path) -> str | None:
    """Run the example ``script`` as it is (no recording) in ``folder``, a copy of its
    example folder named as ctest names its test; None when it ended with status 0."""
    shutil.copytree(script.parent, folder, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    with log.open("ab") as out:
        try:
            done = subprocess.run([sys.executable, script.name], cwd=folder, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                  preexec_fn=_limits, check=False)
        except subprocess.TimeoutExpired:
            return f"longer than the budget: over {timeout:.0f} s"
    return None if done.returncode == 0 else f"exit status {done.returncode}"


def run_example(script: Path, examples: Path, timeout: float = TIMEOUT_S) -> Outcome:
    """Capture, track and judge one example script (after the example its ctest depends
    on, run in a sibling folder as ctest runs it: :func:`ctest_names`)."""
    name = script.relative_to(examples).as_posix()
    outcome = Outcome(name)
    start = time.perf_counter()
    tests, depends = ctest_names(examples)
    test = tests.get(name)
    with tempfile.TemporaryDirectory(prefix="ixexample-") as tmp:
        work, out = Path(tmp) / (test or "work"), Path(tmp) / "out"
        dependency = depends.get(test or "")
        scripts_of = {v: k for k, v in tests.items()}
        if dependency and scripts_of.get(dependency, "").endswith(".py"):
            failed = _run_dependency(examples / scripts_of[dependency], Path(tmp) / dependency,
                                     timeout, Path(tmp) / "log")
            if failed:
                outcome.reasons = [f"dependency {scripts_of[dependency]}: {failed}"]
                outcome.seconds = time.perf_counter() - start
                return outcome
        shutil.copytree(script.parent, work, ignore=shutil.ignore_patterns("__pycache__"))
        out.mkdir()
        label = name.removesuffix(".py").replace("/", ".")
        problem = _child(["benchmarks.impactx_examples.capture", script.name, str(out),
                          label], work, timeout, Path(tmp) / "log")
        record = _capture_record(out, problem)
        outcome.reasons = record["reasons"]
        if record["status"] == "tracked":
            analysis = analysis_for(script, examples)
            checks, unread = (read_checks(analysis, record["example"]) if analysis
                              else ([], []))
            outcome.analysis = analysis.name if analysis else ""
            outcome.checked = [c.key for c in checks]
            outcome.tolerance = _tolerance_text(checks, unread)
            for backend in BACKENDS:
                failed = _child(["benchmarks.impactx_examples.track", str(out), backend],
                                work, timeout, Path(tmp) / "log")
                if failed:
                    (out / f"{backend}.json").write_text(json.dumps(
                        {"status": "failed", "reason": failed}))
            _judge(outcome, out, checks, record["example"])
            if not checks and analysis and (out / "final.npz").is_file():
                for who in ("example", *BACKENDS):
                    if who == "example" or (out / f"{who}_final.npz").is_file():
                        _child(["benchmarks.impactx_examples.analysis", str(out), who,
                                str(analysis)], work, timeout, Path(tmp) / "log")
                checks_run = _judge_analysis(outcome, out, analysis.name)
            else:
                checks_run = bool(checks)
            if not checks_run:
                outcome.status = "partly"
                outcome.reasons.append("analysis: no final-beam check read")
            outcome.reasons.extend(record.get("notes", []))
    outcome.seconds = time.perf_counter() - start
    return outcome


def _capture_record(out: Path, problem: str | None) -> dict[str, Any]:
    """The capture's record, or a not-expressible one naming why none was written."""
    path = out / "capture.json"
    record = json.loads(path.read_text()) if path.is_file() else None
    if record is None or (problem and record.get("status") != "tracked"):
        reason = problem or "script error: the example wrote no record"
        return {"status": "not expressible", "reasons": [reason]}
    if problem:  # tracked, then the script ran out of its budget: the capture stands
        record.setdefault("notes", []).append(f"the script's remainder: {problem}")
    return record


def _tolerance_text(checks: list[Check], unread: list[str]) -> str:
    """``rtol=.. atol=..`` per distinct pair, plus the names not compared."""
    pairs = dict.fromkeys((c.rtol, c.atol) for c in checks)
    text = ", ".join(f"rtol={r:.3g} atol={a:.3g}" for r, a in pairs)
    return text + (f" (not compared: {' '.join(unread)})" if unread else "")


def write_csv(outcomes: list[Outcome], path: Path) -> None:
    """The machine-readable table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, CSV_COLUMNS)
        writer.writeheader()
        for outcome in outcomes:
            writer.writerow(outcome.row())


def ranked_categories(outcomes: list[Outcome]) -> list[tuple[str, int]]:
    """Reason categories of the not-expressible scripts, by how many scripts they block."""
    counts: Counter[str] = Counter()
    for outcome in outcomes:
        if outcome.status == "not expressible":
            counts.update(set(category(r) for r in outcome.reasons))
    return counts.most_common()


def markdown(outcomes: list[Outcome], machine: str, version: str) -> str:
    """The documentation page of a suite run."""
    counts = Counter(o.status for o in outcomes)
    lines = [
        "# ImpactX's examples through trackbench", "",
        f"ImpactX {version}: {len(outcomes)} example run scripts of the wheel "
        f"(`impactx/examples/*/run_*.py`). **{counts['reproduced']} reproduced, "
        f"{counts['partly']} partly, {counts['not expressible']} not expressible.**", "",
        "Written by `make examples` (`python -m benchmarks.impactx_examples`; the machine "
        f"of this run: {machine}). For each script, its own run (ImpactX as the example "
        "calls it) is recorded up to its first `track_particles` or `track_envelope`: the "
        "lattice, beam (with its spins under `sim.spin`) and settings become a trackbench "
        "scenario (`tracking: envelope` for an envelope run), or the reasons they cannot; a "
        "stated scenario is tracked by trackbench's ImpactX and in-house backends (float64, "
        "CPU) from the example's own initial particles (an envelope run: its own initial "
        "covariance matrix, the final moments from the final one), and every final-beam "
        "quantity the example's `analysis_*.py` checks (moments, emittances, the "
        "polarization as the mean spin) is compared with the example's own final value "
        "within the analysis's own `rtol`/`atol`. *worst*: the largest deviation as a "
        "multiple of the allowed one (<= 1 passes). Limits per child process: "
        f"{TIMEOUT_S:.0f} s and {MEMORY_BYTES >> 30} GiB.", "",
        "## Why examples are not expressible (scripts blocked per reason)", "",
        "| reason | scripts |", "|---|---|"]
    lines += [f"| {name} | {count} |" for name, count in ranked_categories(outcomes)]
    lines += ["", "## Every script", "",
              "| script | status | reason / deviation | ImpactX worst | in-house worst | "
              "tolerance (analysis) |", "|---|---|---|---|---|---|"]
    for o in outcomes:
        row = o.row()
        reason = row["reason"].replace("|", "/") or "within tolerance"
        tolerance = f"{o.tolerance} ({o.analysis})" if o.analysis else ""
        lines.append(f"| `{o.script}` | {o.status} | {reason} | {row['worst_impactx']} | "
                     f"{row['worst_inhouse']} | {tolerance.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
