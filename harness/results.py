"""The results store: one JSON object per line, appended and flushed as each case finishes.

A run directory holds

* ``results.jsonl`` — the rows, in the order the cases finished (the source of truth; an
  interrupted run keeps every row written before the interruption);
* ``results.csv`` (and ``results.parquet`` when pyarrow is installed) — the same rows as a
  tidy table, written from the JSONL at the end of a run;
* ``metadata.json`` — the machine and versions (:mod:`harness.metadata`).

Every row has ``kind`` (``track`` or ``gradient``), ``case_id`` and ``status``; see
:mod:`harness.rows` for the columns of each kind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"


def _clean(value: Any) -> Any:
    """JSON-safe value: numpy scalars to Python, non-finite floats to None."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        with contextlib.suppress(ValueError, AttributeError):
            value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def append_rows(directory: Path, rows: Iterable[dict]) -> None:
    """Append rows to ``directory/results.jsonl``, flushed and fsynced before returning."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / RESULTS_JSONL
    with path.open("a", encoding="utf-8") as stream:
        for row in rows:
            stream.write(json.dumps(_clean(row), sort_keys=True) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def read_rows(directory: Path) -> list[dict]:
    """All rows of a run directory; a truncated last line (a killed writer) is skipped."""
    path = Path(directory) / RESULTS_JSONL
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def done_case_ids(directory: Path) -> set[str]:
    """Case ids already recorded in a run directory (what ``--resume`` skips)."""
    return {row["case_id"] for row in read_rows(directory) if "case_id" in row}


def load_table(directory: Path, kind: str | None = None) -> pd.DataFrame:
    """The rows of a run directory as a DataFrame (optionally of one ``kind``)."""
    frame = pd.DataFrame(read_rows(directory))
    if kind is not None and not frame.empty:
        frame = frame[frame["kind"] == kind].reset_index(drop=True)
    return frame


def write_tables(directory: Path) -> list[Path]:
    """Write ``results.csv`` (and Parquet when pyarrow is present) from the JSONL."""
    frame = pd.DataFrame(read_rows(directory))
    written = []
    if frame.empty:
        return written
    flat = frame.copy()
    for column in flat.columns:
        if flat[column].map(lambda v: isinstance(v, (list, dict))).any():
            flat[column] = flat[column].map(
                lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    csv_path = Path(directory) / RESULTS_CSV
    flat.to_csv(csv_path, index=False)
    written.append(csv_path)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return written
    parquet_path = Path(directory) / RESULTS_PARQUET
    flat.to_parquet(parquet_path, index=False)
    written.append(parquet_path)
    return written
