"""Entry point of one case's process: ``python -m harness.child SPEC.json OUT.json``.

Reads the :class:`harness.case_spec.CaseSpec`, arranges to die with the parent
(``PR_SET_PDEATHSIG``) and sets the hard memory limit, runs the case module of its kind
(:data:`harness.case_kinds.KINDS`) and writes its rows as JSON to ``OUT.json``
(atomically). A child that dies writes nothing and the parent records why.
"""

from __future__ import annotations

import time

_PERF_AT_IMPORT, _WALL_AT_IMPORT = time.perf_counter(), time.time()

import contextlib  # noqa: E402 - the clock readings above come first
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

from harness.case_kinds import KINDS  # noqa: E402 - the case kinds' one table


def run_spec(spec, clock) -> list[dict]:
    """Rows of one case; errors become ``failed`` or ``oom`` rows."""
    import importlib

    from harness.case_support import failure_row

    try:
        kind = KINDS[spec.kind]
        return getattr(importlib.import_module(kind.module), kind.function)(spec, clock)
    except BaseException as error:  # noqa: BLE001 - every failure is recorded, none escapes
        return [failure_row(error, traceback.format_exc(limit=8))]


def main(argv: list[str]) -> int:
    """Read the spec, run the case, write the rows atomically."""
    from harness.case_spec import CaseSpec
    from harness.case_support import Clock, apply_limits, die_with_parent

    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = CaseSpec.model_validate_json(spec_path.read_text())
    die_with_parent(spec.parent_pid)
    apply_limits(spec)
    clock = Clock.since(spec.launched_at, _PERF_AT_IMPORT, _WALL_AT_IMPORT)
    rows = run_spec(spec, clock)
    for row in rows:
        row["child_wall_s"] = clock.elapsed()
    return write_rows(out_path, rows)


def write_rows(out_path: Path, rows: list[dict]) -> int:
    """Write the rows atomically; 0, or :data:`harness.rows.DISK_FULL_EXIT` with one line
    on stderr when the disk is full (the parent records the cause ``disk-full``)."""
    from harness.rows import DISK_FULL_EXIT, disk_full_error, disk_full_reason

    tmp = out_path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(rows, default=float))
        os.replace(tmp, out_path)
    except OSError as error:
        full = disk_full_error(error)
        if full is None:
            raise
        with contextlib.suppress(OSError):
            tmp.unlink()
        print(disk_full_reason(full), file=sys.stderr, flush=True)
        return DISK_FULL_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
