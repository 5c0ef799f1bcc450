"""Reading a lattice file in its own process, under a time and a memory limit.

Two ways, one policy:

* :func:`child_limits` -- a ``preexec_fn`` for :class:`subprocess.Popen` (MAD-X through
  cpymad): the child gets an address-space limit (``RLIMIT_AS``), a CPU-time limit
  (``RLIMIT_CPU``, so a runaway child stops even if the importer is gone), no core files and
  a file-size limit of 0 bytes (``RLIMIT_FSIZE``: it cannot write to any file; its output goes
  through a pipe). :class:`Watchdog` kills it once the wall-clock limit is over.
* :func:`run_limited` -- a function run in a forked child with the same limits (the Bmad and
  elegant parsers), its result sent back pickled.

A limit that is hit becomes one :class:`~harness.io.model.ImportRefused` line naming the limit
and the option that raises it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import select
import signal
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from harness.io.model import ImportRefused

#: Default wall-clock limit for reading one lattice file [s] (``--time-limit``).
DEFAULT_TIME_LIMIT_S = 5.0
#: Default memory (address space) a reader process may add [GiB] (``--memory-limit``).
DEFAULT_MEMORY_LIMIT_GIB = 1.0
#: Bounds accepted for the limits: [s] and [GiB].
TIME_LIMIT_RANGE_S = (0.1, 3600.0)
MEMORY_LIMIT_RANGE_GIB = (0.25, 64.0)
_GIB = 1024**3


def check_limits(time_limit_s: float, memory_limit_gib: float) -> None:
    """Refuse limits outside :data:`TIME_LIMIT_RANGE_S` / :data:`MEMORY_LIMIT_RANGE_GIB`."""
    low, high = TIME_LIMIT_RANGE_S
    if not low <= time_limit_s <= high:
        raise ImportRefused(f"--time-limit: expected seconds in [{low:g}, {high:g}] "
                            f"(got {time_limit_s!r})")
    low, high = MEMORY_LIMIT_RANGE_GIB
    if not low <= memory_limit_gib <= high:
        raise ImportRefused(f"--memory-limit: expected GiB in [{low:g}, {high:g}] "
                            f"(got {memory_limit_gib!r})")


def _vm_size_bytes() -> int:
    """This process's address-space size [bytes] (0 when /proc is not there)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _set_limits(address_space_bytes: int, cpu_s: float) -> None:
    """Apply the reader limits to the calling process (see the module docstring)."""
    resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))
    cpu = max(1, int(cpu_s) + 1)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def child_limits(memory_limit_gib: float, time_limit_s: float) -> Callable[[], None]:
    """A ``preexec_fn`` giving a new program ``memory_limit_gib`` GiB of address space in all
    and ``time_limit_s`` s of CPU time, no core file and no file writes."""
    address_space = int(memory_limit_gib * _GIB)

    def apply() -> None:
        _set_limits(address_space, time_limit_s)

    return apply


class Watchdog:
    """Kills process ``pid`` after ``seconds`` unless stopped first; ``fired`` says it did."""

    def __init__(self, pid: int, seconds: float):
        self.fired = False
        self._pid = pid
        self._timer = threading.Timer(max(seconds, 0.0), self._kill)
        self._timer.daemon = True
        self._timer.start()

    def _kill(self) -> None:
        self.fired = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop the timer (the process is left alone)."""
        self._timer.cancel()


def _child(function: Callable[..., Any], args: tuple, write_fd: int, address_space: int,
           time_limit_s: float) -> None:
    """The forked child: limits, the call, its pickled outcome to ``write_fd``; never returns."""
    code = 0
    try:
        _set_limits(address_space, time_limit_s)
        try:
            outcome: tuple[str, Any] = ("ok", function(*args))
        except ImportRefused as error:
            outcome = ("refused", str(error))
        except MemoryError:
            outcome = ("memory", "")
        except Exception as error:  # noqa: BLE001 - sent to the parent as one line
            outcome = ("error", f"{type(error).__name__}: {error}")
        data = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)
    except BaseException:  # noqa: BLE001 - the child must never return into the caller
        traceback.print_exc(limit=1)
        code = 1
    finally:
        os._exit(code)


def _read_all(read_fd: int, deadline: float) -> bytes | None:
    """Everything written to the pipe until it closes, or None at ``deadline``."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([read_fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(read_fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def run_limited(function: Callable[..., Any], args: tuple, what: str,
                time_limit_s: float = DEFAULT_TIME_LIMIT_S,
                memory_limit_gib: float = DEFAULT_MEMORY_LIMIT_GIB) -> Any:
    """``function(*args)`` in a forked child that may add ``memory_limit_gib`` GiB to this
    process's address space and run ``time_limit_s`` s; ``what`` names it in messages
    (e.g. the file). The function's :class:`ImportRefused` is re-raised here; any other
    failure, or a limit hit, is one :class:`ImportRefused` line."""
    address_space = _vm_size_bytes() + int(memory_limit_gib * _GIB)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits in _child
        os.close(read_fd)
        _child(function, args, write_fd, address_space, time_limit_s)
    os.close(write_fd)
    try:
        data = _read_all(read_fd, time.monotonic() + time_limit_s)
    finally:
        os.close(read_fd)
    if data is None:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if data is None:
        raise ImportRefused(f"{what}: reading it ran past the time limit of "
                            f"{time_limit_s:g} s (--time-limit); stopped")
    if not data:
        raise ImportRefused(f"{what}: the reader stopped ({_status_words(status)}): past its "
                            f"memory limit of {memory_limit_gib:g} GiB (--memory-limit) or "
                            "its time limit")
    kind, value = pickle.loads(data)  # noqa: S301 - written by our own forked child
    if kind == "ok":
        return value
    if kind == "refused":
        raise ImportRefused(value)
    if kind == "memory":
        raise ImportRefused(f"{what}: reading it needs more than the memory limit of "
                            f"{memory_limit_gib:g} GiB (--memory-limit)")
    raise ImportRefused(f"{what}: {value}")


def _status_words(status: int) -> str:
    """A wait status in words (``signal SIGKILL``, ``exit code 1``)."""
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
