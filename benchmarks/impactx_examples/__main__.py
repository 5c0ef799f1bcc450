"""``python -m benchmarks.impactx_examples [--only S ...]``: run ImpactX's example suite
through trackbench (:mod:`.suite`) and write the table (docs and CSV)."""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

from benchmarks.impactx_examples.suite import (
    REPOSITORY,
    TIMEOUT_S,
    examples_folder,
    markdown,
    run_example,
    scripts,
    write_csv,
)


def _machine() -> str:
    """The CPU model and core count, as the table states them."""
    import os

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (OSError, ValueError):
        pass
    return f"{os.cpu_count()} cores, {model}{memory}"


def _load() -> str:
    """The 1-minute load average now (how busy the machine is besides this run)."""
    import os

    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    """Run the suite; exit status 0 when every script got a row."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.impactx_examples")
    parser.add_argument("--only", nargs="*", help="scripts whose path contains one of these")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S,
                        help="seconds per child process")
    parser.add_argument("--md", type=Path, default=REPOSITORY / "docs" / "impactx-examples.md")
    parser.add_argument("--csv", type=Path,
                        default=REPOSITORY / "results" / "reference" / "impactx-examples.csv")
    parser.add_argument("--machine", default=None, help="how the table names the machine")
    parser.add_argument("--load-note", default="",
                        help="what else ran on the machine, as the table states it")
    args = parser.parse_args(argv)
    import impactx

    examples = examples_folder()
    found = scripts(examples, args.only)
    outcomes = []
    load_start = _load()
    for i, script in enumerate(found, 1):
        outcome = run_example(script, examples, args.timeout)
        outcomes.append(outcome)
        print(f"[{i}/{len(found)}] {outcome.script}: {outcome.status} "
              f"({outcome.seconds:.1f} s) {'; '.join(outcome.reasons)[:160]}", flush=True)
    write_csv(outcomes, args.csv)
    machine = (args.machine or _machine()) + (
        f"; 1-minute load average {load_start} at the start, {_load()} at the end"
        + (f"; {args.load_note}" if args.load_note else ""))
    args.md.write_text(markdown(outcomes, machine,
                                getattr(impactx, "__version__", "?")))
    print(f"wrote {args.md} and {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
