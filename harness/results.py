"""The results store: one JSON object per line, appended and flushed as each case finishes.

A run directory holds

* ``results.jsonl`` — the rows, in the order the cases finished (the source of truth; an
  interrupted run keeps every row written before the interruption);
* ``results.csv`` (and ``results.parquet`` when pyarrow is installed) — the same rows as a
  tidy table, written from the JSONL at the end of a run;
* ``metadata.json`` — the machine and versions (:mod:`harness.metadata`);
* ``results.quarantine.jsonl`` — what a torn write left behind, set aside on the next
  opening (:func:`repair`);
* ``.lock`` — the writer's lock (:mod:`harness.run_lock`).

Every row has ``kind`` (``track`` or ``gradient``), ``case_id`` and ``status``; see
:mod:`harness.rows` for the columns of each kind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"
RESULTS_QUARANTINE = "results.quarantine.jsonl"


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


class ResultsWriter:
    """Appends whole cases to ``directory/results.jsonl``, crash-consistently.

    On opening, :func:`repair` moves an incomplete tail (a torn last line, a case whose
    rows were cut short) to ``results.quarantine.jsonl``; :attr:`warnings` says so. Each
    case's rows are then written with one ``write`` and an ``fsync``, every row carrying
    ``case_rows`` (the number of rows of its case), so a torn write is recognised on the
    next opening and that case runs again. A failed write (a full disk) is cut back to the
    last whole case before the error is raised.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / RESULTS_JSONL
        self.warnings = repair(self.directory)

    def append(self, rows: Sequence[dict]) -> None:
        """Append the rows of one case, flushed and fsynced before returning."""
        rows = list(rows)
        data = "".join(json.dumps(_clean(row | {"case_rows": len(rows)}), sort_keys=True)
                       + "\n" for row in rows).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.fstat(fd).st_size
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)


def append_rows(directory: Path, rows: Iterable[dict]) -> None:
    """Append one case's rows to ``directory/results.jsonl`` (see :class:`ResultsWriter`)."""
    ResultsWriter(directory).append(list(rows))


def _batches(rows: list[tuple[bytes, dict]]) -> list[list[tuple[bytes, dict]]]:
    """Consecutive rows of one case written together (same case id and start time)."""
    batches: list[list[tuple[bytes, dict]]] = []
    for line, row in rows:
        key = (row.get("case_id"), row.get("started"))
        if batches and (batches[-1][0][1].get("case_id"), batches[-1][0][1].get("started")) \
                == key and len(batches[-1]) < int(batches[-1][0][1].get("case_rows") or 1):
            batches[-1].append((line, row))
        else:
            batches.append([(line, row)])
    return batches


def repair(directory: Path) -> list[str]:
    """Quarantine what a torn write left in ``directory/results.jsonl``: lines that are not
    JSON objects, and the rows of a case cut short (fewer than its ``case_rows``). They are
    appended to ``results.quarantine.jsonl`` and the results file is rewritten without
    them (atomically); returns one warning per repair (none when the file was whole)."""
    path = Path(directory) / RESULTS_JSONL
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    tail = lines.pop()  # after the last newline: empty unless the last line is torn
    bad: list[bytes] = [tail] if tail.strip() else []
    good: list[tuple[bytes, dict]] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad.append(line)
            continue
        if isinstance(row, dict):
            good.append((line, row))
        else:
            bad.append(line)
    kept: list[bytes] = []
    cut: list[str] = []
    for batch in _batches(good):
        expected = int(batch[0][1].get("case_rows") or len(batch))
        if len(batch) < expected:
            bad.extend(line for line, _ in batch)
            cut.append(str(batch[0][1].get("case_id")))
        else:
            kept.extend(line for line, _ in batch)
    if not bad:
        return []
    quarantine = Path(directory) / RESULTS_QUARANTINE
    with quarantine.open("ab") as stream:
        stream.write(b"".join(line + b"\n" for line in bad))
        stream.flush()
        os.fsync(stream.fileno())
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("wb") as stream:
        stream.write(b"".join(line + b"\n" for line in kept))
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(tmp, path)
    warnings = []
    if tail.strip():
        warnings.append(f"{path}: the last line was incomplete ({len(tail)} bytes, an "
                        f"interrupted write); moved to {quarantine}, its case runs again")
    other = len(bad) - (1 if tail.strip() else 0)
    if other:
        cases = f" (cases cut short: {', '.join(cut)})" if cut else ""
        warnings.append(f"{path}: {other} unreadable or incomplete row(s){cases} moved to "
                        f"{quarantine}; those cases run again")
    return warnings


def read_rows(directory: Path) -> list[dict]:
    """All rows of a run directory; lines that are not whole JSON objects are skipped."""
    path = Path(directory) / RESULTS_JSONL
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def load_table(directory: Path, kind: str | None = None) -> pd.DataFrame:
    """The rows of a run directory as a DataFrame (optionally of one ``kind``)."""
    rows = read_rows(directory)
    if kind is not None:
        rows = [row for row in rows if row.get("kind") == kind]
    return pd.DataFrame(rows)


def write_tables(directory: Path) -> list[Path]:
    """Write ``results.csv`` (and Parquet when pyarrow is present) from the JSONL."""
    frame = pd.DataFrame(read_rows(directory))
    written: list[Path] = []
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


#: Free space below which a run directory counts as full [bytes].
MIN_FREE_BYTES = 16 * 2**20


def unusable_directory(directory: Path) -> str | None:
    """Why ``directory`` cannot hold a run (one line), or None: checked before the first
    case by creating it, writing and fsyncing a probe file, and looking at the free space."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        return f"{directory}: exists and is not a directory"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"{directory}: cannot create the directory ({error.strerror or error})"
    probe = directory / f".probe-{os.getpid()}"
    try:
        with probe.open("wb") as stream:
            stream.write(b"\n" * 4096)
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as error:
        return f"{directory}: cannot write there ({error.strerror or error})"
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    with contextlib.suppress(OSError):
        import shutil

        free = shutil.disk_usage(directory).free
        if free < MIN_FREE_BYTES:
            return (f"{directory}: the file system is full ({free / 2**20:.1f} MiB free, "
                    f"at least {MIN_FREE_BYTES // 2**20} MiB needed)")
    return None
