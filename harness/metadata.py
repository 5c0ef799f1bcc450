"""What a run was measured on: machine, operating system, Python, backend versions, commit."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

REPOSITORY = Path(__file__).resolve().parent.parent
METADATA_JSON = "metadata.json"


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gpu_info() -> list[dict[str, str]]:
    """Name, memory and driver of each NVIDIA GPU (empty without one)."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = "--query-gpu=name,memory.total,driver_version"
    try:
        output = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in output.strip().splitlines():
        name, memory, driver = (part.strip() for part in line.split(","))
        gpus.append({"name": name, "memory": memory, "driver": driver})
    return gpus


def git_commit() -> dict[str, Any]:
    """The project's git commit and whether the tree had local changes."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPOSITORY, capture_output=True,
                                  text=True, timeout=20, check=True).stdout.strip()
        except (subprocess.SubprocessError, OSError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def backend_versions() -> dict[str, dict[str, Any]]:
    """Availability and versions of every registered backend."""
    from backends.registry import backend_classes

    out = {}
    for name, cls in backend_classes().items():
        availability = cls.availability()
        out[name] = {"available": availability.available, "version": availability.version,
                     "versions": availability.versions, "hint": availability.hint}
    return out


def load_average() -> dict[str, float] | None:
    """The 1, 5 and 15-minute load averages now (None where the platform has none): a
    loaded machine makes timings slow and spread."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return {"1min": one, "5min": five, "15min": fifteen}


def machine() -> dict[str, Any]:
    """The machine: CPU, cores, memory, GPUs, operating system, Python."""
    memory = psutil.virtual_memory().total
    return {
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_bytes": memory,
        "memory_gib": round(memory / 2**30, 1),
        "gpus": gpu_info(),
        "load_average": load_average(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
    }


def portable_command(command: list[str]) -> list[str]:
    """The command line with the program reduced to its name (no paths of this machine in
    what a run directory records)."""
    if not command:
        return []
    return [Path(str(command[0])).name, *map(str, command[1:])]


def collect(command: list[str], started: str) -> dict[str, Any]:
    """The metadata of a run that began at ``started`` with ``command``."""
    return {
        "machine": machine(),
        "backends": backend_versions(),
        "git": git_commit(),
        "command": portable_command(command),
        "started": started,
        "finished": now(),
    }


def write(directory: Path, metadata: dict[str, Any]) -> Path:
    """Write ``metadata.json``; an earlier run's start time and commands are kept (resume)."""
    path = Path(directory) / METADATA_JSON
    if path.exists():
        previous = json.loads(path.read_text())
        metadata["started"] = previous.get("started", metadata["started"])
        commands = previous.get("commands", [previous.get("command")])
        metadata["commands"] = [c for c in commands if c] + [metadata["command"]]
    path.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return path


def read(directory: Path) -> dict[str, Any]:
    """The metadata of a run directory (empty when missing)."""
    path = Path(directory) / METADATA_JSON
    return json.loads(path.read_text()) if path.exists() else {}
