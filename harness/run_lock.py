"""One writer per run directory: an exclusive ``fcntl`` lock on ``DIR/.lock``.

The lock file holds the owner (pid, host, start time) and the case processes it has
running (pid and start time), as JSON. A second writer is refused with one line naming
the owner. The kernel releases the lock when its owner dies, however it dies; the next
owner (a ``--resume``) then reads the processes the dead owner recorded and kills those
still running (their whole process group), before the first case.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import psutil

LOCK_FILE = ".lock"


class RunDirectoryBusy(RuntimeError):
    """Another process writes into the run directory (the message names it)."""


class RunLock:
    """The held lock of a run directory; :meth:`acquire` takes it, :meth:`release` frees it.

    Attributes:
        path: the lock file; reaped: ``pid`` of each leftover process of a dead owner killed
            on acquisition.
    """

    def __init__(self, path: Path, fd: int, reaped: list[int]):
        self.path = path
        self._fd = fd
        self.reaped = reaped
        self._state: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname(),
                                       "since": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                              time.gmtime()),
                                       "children": []}
        self._write()

    @classmethod
    def acquire(cls, directory: Path) -> RunLock:
        """Take the lock of ``directory`` (created if needed); raise :class:`RunDirectoryBusy`
        naming the owner when another process holds it. Leftover case processes of a dead
        owner on this host are killed first."""
        path = Path(directory) / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = read_owner(path)
            os.close(fd)
            raise RunDirectoryBusy(
                f"{directory} is in use by {describe(owner)} (lock {path}); wait for that "
                "run to end or choose another --out") from None
        previous = read_owner(path)
        reaped = reap(previous) if previous else []
        return cls(path, fd, reaped)

    def _write(self) -> None:
        data = json.dumps(self._state).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def add_child(self, pid: int, case_id: str = "") -> None:
        """Record a running case process (reaped by the next owner if this one dies)."""
        with contextlib.suppress(psutil.Error):
            started = psutil.Process(pid).create_time()
            self._state["children"].append({"pid": pid, "create_time": started,
                                            "case_id": case_id})
            self._write()

    def remove_child(self, pid: int) -> None:
        """Forget a case process that ended."""
        self._state["children"] = [c for c in self._state["children"] if c["pid"] != pid]
        self._write()

    def release(self) -> None:
        """Free the lock (the file stays, with no running child)."""
        if self._fd < 0:
            return
        self._state["children"] = []
        with contextlib.suppress(OSError):
            self._write()
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def busy(directory: Path) -> str | None:
    """The one-line refusal when another process holds ``directory``'s lock, else None
    (looks only: nothing is taken or reaped)."""
    path = Path(directory) / LOCK_FILE
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return (f"{directory} is in use by {describe(read_owner(path))} (lock {path}); wait "
                "for that run to end or choose another --out")
    finally:
        os.close(fd)
    return None


def read_owner(path: Path) -> dict[str, Any] | None:
    """The owner recorded in a lock file (None: empty or unreadable)."""
    try:
        return json.loads(Path(path).read_text() or "null")
    except (OSError, ValueError):
        return None


def describe(owner: dict[str, Any] | None) -> str:
    """``pid 123 on host h since T`` (or ``another process`` when unknown)."""
    if not owner:
        return "another process"
    return (f"pid {owner.get('pid')} on host {owner.get('host')} since "
            f"{owner.get('since', '?')}")


def reap(owner: dict[str, Any]) -> list[int]:
    """Kill the case processes (and their process groups) a dead owner recorded, if still
    running on this host with the same start time (a reused pid is left alone)."""
    if owner.get("host") != socket.gethostname():
        return []
    killed = []
    for child in owner.get("children", []):
        pid = int(child.get("pid", 0))
        try:
            process = psutil.Process(pid)
            if abs(process.create_time() - float(child.get("create_time", 0))) > 0.01:
                continue
        except psutil.Error:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            process.kill()
            process.wait(5)
        killed.append(pid)
    return killed
