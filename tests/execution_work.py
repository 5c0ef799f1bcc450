"""Work functions for the execution-layer tests (importable by Dask workers)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any


def echo(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """A row holding the payload's value, after an optional sleep [s]."""
    time.sleep(payload.get("sleep", 0.0))
    return [{"status": "ok", "value": payload["value"], "pid": os.getpid()}]


def die_once(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Kill this worker's process the first time (a marker file remembers), then succeed."""
    marker = Path(payload["marker"])
    if not marker.exists():
        marker.write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return [{"status": "ok", "value": payload["value"]}]


def always_die(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Kill this worker's process every time (a lost node)."""
    os.kill(os.getpid(), signal.SIGKILL)
    return []
