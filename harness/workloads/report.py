"""Small writers shared by the workloads: CSV tables, the metadata and the machine line of
a summary."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from harness import metadata


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows as CSV; the columns are the union of the rows' keys in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def run_metadata() -> dict[str, Any]:
    """Time, machine (with its load average now), commit and backend versions."""
    import torch

    return {"time": metadata.now(), "machine": metadata.machine(),
            "torch_threads": torch.get_num_threads(), "git": metadata.git_commit(),
            "backends": metadata.backend_versions()}


def machine_line(recorded: dict[str, Any] | None = None) -> str:
    """CPU model, cores, memory, torch threads and the 1-minute load average, of the
    :func:`run_metadata` ``recorded`` with a run, else now."""
    import torch

    machine = recorded["machine"] if recorded else metadata.machine()
    threads = recorded["torch_threads"] if recorded else torch.get_num_threads()
    load = (machine["load_average"] or {}).get("1min", float("nan"))
    return (f"Machine: {machine['cpu']}, {machine['cores_available']} cores available, "
            f"{machine['memory_gib']} GiB, no GPU used (CPU, float64), torch threads "
            f"{threads}; load average {load:.1f} when recorded (other jobs running make "
            "times slower and spread).")
