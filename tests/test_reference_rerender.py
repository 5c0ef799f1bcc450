"""A committed reference reproduction re-renders from its committed rows byte for byte:
``reproduce.md``, ``reproduce.csv`` and the plots written again from ``results.jsonl``, with
the settings of the command that made it (``metadata.json``), equal the committed files,
whatever the environment of the process that renders them.
(The committed report's tables are checked the same way by ``tests/test_report.py``.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: A small committed reproduction (one figure run here, plots included: about 3 s).
REPRODUCTION = ROOT / "results" / "reference" / "cpu-2core-xeon" / "napac25"


def _option(argv: list[str], name: str) -> str | None:
    """The value given to ``--name`` on a recorded command line, or None."""
    return argv[argv.index(name) + 1] if name in argv else None


def test_committed_reproduction_rerenders_byte_for_byte(tmp_path: Path) -> None:
    from harness import published
    from harness import reproduce as rp
    from harness.cli.common import particle_count_list, split_list

    argv = json.loads((REPRODUCTION / "metadata.json").read_text())["command"]
    paper = argv[argv.index("reproduce") + 1]
    repeat = int(_option(argv, "--repeat") or 5)
    data = published.load(paper)
    plans = rp.figure_plans(data, split_list(_option(argv, "--figures")) or None,
                            particle_count_list(_option(argv, "--particles")) or None)
    reproduction = rp.Reproduction(data, plans)  # the tables need no cases, only the rows
    copy = tmp_path / "reproduction"
    shutil.copytree(REPRODUCTION, copy)
    outputs = [copy / "reproduce.md", copy / "reproduce.csv", *sorted(copy.glob("plots/*"))]
    for path in outputs:
        path.unlink()
    rp.write_outputs(copy, reproduction, repeat)
    for path in outputs:
        committed = REPRODUCTION / path.relative_to(copy)
        assert path.read_bytes() == committed.read_bytes(), path.relative_to(copy)
    written = {p.relative_to(copy) for p in copy.rglob("*") if p.is_file()}
    assert written == {p.relative_to(REPRODUCTION) for p in REPRODUCTION.rglob("*")
                       if p.is_file()}
