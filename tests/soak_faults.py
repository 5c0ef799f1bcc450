"""Soak check of the runner under random faults: ``python tests/soak_faults.py [--cases 200]``.

Plans ``--cases`` cases of the fake ``FaultyBackend`` (its fault follows the particle
count: ok, an exception, a crash or a hang past the time limit), then runs them in
worker processes (``--resume`` each time) while injecting faults at random moments:
SIGKILL of the worker (the parent), SIGKILL of the running case process from outside,
and, after a parent kill, a torn last line of ``results.jsonl``. A case killed from outside
is recorded ``failed`` (cause ``signal``) and run again by the next ``--resume``. At the end
every case must be recorded exactly once with a cause of its own (its fault's status and
cause), as its last record, after nothing but outside-cause records, and no case process
may be left running. Prints a JSON summary; exits 1 when anything is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SCENARIO = "fodo_linear"
BACKEND = "fake_backends:FaultyBackend"
#: Status and cause of each injected fault kind.
EXPECTED = {"ok": ("ok", None), "failed": ("failed", "exception"),
            "crash": ("failed", "crash"), "timeout": ("timeout", "timeout")}


def planned(n_cases: int):
    """The soak's cases (particle counts 100, 101, ...)."""
    from harness.cases import Case
    from harness.model.load import load_scenario

    scenario = load_scenario(SCENARIO)
    return scenario, [Case(SCENARIO, scenario.source_file, BACKEND, 100 + i, repeat=1)
                      for i in range(n_cases)]


def worker(out: Path, n_cases: int, timeout_s: float) -> None:
    """One run (resumed) of every case into ``out``."""
    from harness.case_process import Limits
    from harness.runner import Runner
    scenario, cases = planned(n_cases)
    Runner(out, Limits(timeout_s=timeout_s, memory_bytes=2 << 30), resume=True,
           on_warning=lambda message: None).run(cases, {SCENARIO: scenario})


def _children(out: Path) -> list[dict]:
    from harness.run_lock import LOCK_FILE, read_owner

    return (read_owner(out / LOCK_FILE) or {}).get("children", [])


def _tear_last_line(path: Path, rng: random.Random) -> bool:
    data = path.read_bytes() if path.exists() else b""
    lines = data.splitlines(keepends=True)
    if not lines or len(lines[-1]) < 10:
        return False
    path.write_bytes(data[: len(data) - rng.randint(2, len(lines[-1]) - 2)])
    return True


def _leftovers(out: Path) -> list[int]:
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if "harness.child" in cmdline and str(out) in cmdline:
            found.append(process.info["pid"])
    return found


def soak(out: Path, n_cases: int, seed: int, timeout_s: float = 5.0,
         budget_s: float = 3600.0) -> dict:
    """Run the soak (see the module text); its summary with ``problems`` (empty: passed)."""
    from fake_backends import FaultyBackend

    from harness.results import read_rows
    from harness.rows import OUTSIDE_CAUSES

    rng = random.Random(seed)
    _, cases = planned(n_cases)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    counts = {"rounds": 0, "parent_kills": 0, "child_kills": 0, "torn_lines": 0}
    killed_cases: set[str] = set()
    started = time.time()
    ids = {c.case_id for c in cases}
    while time.time() - started < budget_s:
        last = {r.get("case_id"): r for r in read_rows(out)}
        done = {key for key, r in last.items() if r.get("cause") not in OUTSIDE_CAUSES}
        if ids <= done:
            break
        counts["rounds"] += 1
        process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "worker",
                                    str(out), str(n_cases), str(timeout_s)], env=env)
        while process.poll() is None:  # faults at random moments of this worker's life
            deadline = time.time() + rng.uniform(1.0, 6.0)
            while time.time() < deadline and process.poll() is None:
                time.sleep(0.05)
            if process.poll() is not None:
                break
            fault = rng.choice(["none", "parent", "child", "child"])
            if fault == "child":
                running = _children(out)
                if running:
                    try:
                        os.kill(running[0]["pid"], signal.SIGKILL)
                        killed_cases.add(running[0].get("case_id", ""))
                        counts["child_kills"] += 1
                    except ProcessLookupError:
                        pass
            elif fault == "parent":
                process.send_signal(signal.SIGKILL)
                process.wait()
                counts["parent_kills"] += 1
                if rng.random() < 0.4 and _tear_last_line(out / "results.jsonl", rng):
                    counts["torn_lines"] += 1
        process.wait()
    time.sleep(0.5)
    rows = read_rows(out)
    problems = []
    records: dict[str, list[dict]] = {}
    for row in rows:
        records.setdefault(row["case_id"], []).append(row)
    for case in cases:
        own = [r for r in records.get(case.case_id, []) if r.get("cause") not in OUTSIDE_CAUSES]
        if len(own) != 1 or records[case.case_id][-1] is not own[0]:
            problems.append(f"{case.case_id}: {len(own)} records of its own, "
                            f"{len(records.get(case.case_id, []))} in all")
    for row in rows:
        want = EXPECTED[FaultyBackend.fault(int(row["particles"]))]
        got = (row["status"], row.get("cause"))
        allowed = {want}
        if row["case_id"] in killed_cases:
            allowed.add(("failed", "signal"))
        if got not in allowed:
            problems.append(f"{row['case_id']}: {got} instead of {sorted(allowed, key=str)} "
                            f"({row.get('reason')})")
    leftovers = _leftovers(out)
    if leftovers:
        problems.append(f"case processes left running: {leftovers}")
    return counts | {"cases": n_cases, "rows": len(rows), "recorded": len(records),
                     "seconds": time.time() - started,
                     "problems": problems}


def main(argv: list[str]) -> int:
    """Command line (see the module text)."""
    if argv and argv[0] == "worker":
        sys.path.insert(0, str(TESTS))
        worker(Path(argv[1]), int(argv[2]), float(argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="time limit per case [s]")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(TESTS))
    out = args.out or Path(tempfile.mkdtemp(prefix="trackbench-soak-"))
    summary = soak(out, args.cases, args.seed, args.timeout)
    print(json.dumps(summary | {"out": str(out)}, indent=1))
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
