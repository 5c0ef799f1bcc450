"""The run directories a report is made of: their rows (deduplicated) and their metadata.

Several directories (e.g. a CPU run and a GPU run) are concatenated; each keeps a label (its
directory name, made unique) so that rows measured on different machines stay apart.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import metadata as run_metadata
from harness.results import read_rows

#: Sort rank of devices and dtypes (CPU before GPU, double before single precision).
DEVICE_ORDER = {"cpu": 0, "cuda": 1}
DTYPE_ORDER = {"float64": 0, "float32": 1}


@dataclass
class Run:
    """One run directory: label, metadata and the rows of each kind."""

    label: str
    directory: Path
    metadata: dict[str, Any]
    track: list[dict[str, Any]] = field(default_factory=list)
    gradient: list[dict[str, Any]] = field(default_factory=list)
    index: int = 0


def missing(value: Any) -> bool:
    """Whether a cell holds nothing (absent, None, NaN or an empty string)."""
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def number(row: dict[str, Any], column: str) -> float | None:
    """A numeric cell of a row, or None when not measured."""
    value = row.get(column)
    if value is None or missing(value) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def text(row: dict[str, Any], column: str) -> str:
    """A text cell of a row ('' when absent)."""
    value = row.get(column)
    return "" if missing(value) else str(value)


def _last_by(rows: list[dict[str, Any]], key) -> list[dict[str, Any]]:
    """Rows with duplicate keys removed, keeping the last (a resumed run re-records a case)."""
    kept: dict[Any, dict[str, Any]] = {}
    for row in rows:
        kept.pop(key(row), None)
        kept[key(row)] = row
    return list(kept.values())


def _gradient_key(row: dict[str, Any]) -> tuple:
    return (text(row, "case_id"), text(row, "parameter"), text(row, "objective"),
            text(row, "method"), number(row, "fd_step"), number(row, "n_params"))


def load_run(directory: Path, label: str, index: int = 0) -> Run:
    """The rows and metadata of one run directory (``index``: its place in a report)."""
    rows = read_rows(directory)
    track = _last_by([r for r in rows if r.get("kind") == "track"], lambda r: r.get("case_id"))
    gradient = _last_by([r for r in rows if r.get("kind") == "gradient"], _gradient_key)
    return Run(label, Path(directory), run_metadata.read(directory), track, gradient, index)


def load_runs(directories: list[Path]) -> list[Run]:
    """The runs of several directories, labelled by directory name (suffixed when repeated)."""
    runs: list[Run] = []
    seen: dict[str, int] = {}
    for directory in directories:
        name = Path(directory).resolve().name or "run"
        seen[name] = seen.get(name, 0) + 1
        label = name if seen[name] == 1 else f"{name}#{seen[name]}"
        runs.append(load_run(Path(directory), label, len(runs)))
    return runs


def short_cpu(model: str) -> str:
    """A CPU model name without trademarks, clock and filler words.

    ``Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz`` becomes ``Intel Xeon Platinum 8375C``.
    """
    name = re.sub(r"\((R|TM|tm|r)\)", "", model or "")
    name = re.sub(r"@.*$", "", name)
    name = re.sub(r"\b(CPU|Processor|\d+-Core)\b", "", name)
    return " ".join(name.split()) or "unknown CPU"


def machine_name(run: Run, with_gpu: bool = False) -> str:
    """Short machine description for plot titles: CPU model and cores (and the GPU model
    when asked), e.g. ``AMD EPYC (2 cores)``."""
    machine = run.metadata.get("machine", {})
    name = short_cpu(machine.get("cpu", ""))
    cores = machine.get("cores_available") or machine.get("logical_cores")
    if cores:
        name += f" ({cores} cores)"
    gpus = machine.get("gpus") or []
    if with_gpu and gpus:
        name += " + " + str(gpus[0].get("name", "GPU"))
    return name


def sort_key(row: dict[str, Any], baseline: str) -> tuple:
    """Stable order of case rows: scenario, backend (baseline first), N, device, dtype."""
    threads = number(row, "threads_requested")
    return (text(row, "scenario"), text(row, "backend") != baseline, text(row, "backend"),
            number(row, "particles") or 0.0, DEVICE_ORDER.get(text(row, "device"), 9),
            text(row, "device"), DTYPE_ORDER.get(text(row, "dtype"), 9), text(row, "dtype"),
            -1.0 if threads is None else threads, text(row, "case_id"))
