"""Lattice source files read as data: only regular files, size-capped before reading.

Every importer (MAD-X, Bmad, elegant, PALS) reads its file, and every file that file calls,
through :func:`read_source`: the path is ``stat``-ed first (a FIFO would block ``open``, a
device such as ``/dev/zero`` never ends), only a regular file no larger than the cap is
opened (non-blocking, and checked again on the open descriptor, so a file swapped between
the two checks is still refused), and at most cap + 1 bytes are read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from harness.io.model import ImportRefused

#: Largest lattice source file read [bytes] (the largest public MAD-X sequence files, e.g.
#: the LHC's, are a few MiB).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Largest total of a file and everything it calls [bytes].
MAX_TOTAL_BYTES = 32 * 1024 * 1024
#: Deepest chain of ``call``/``include`` statements followed.
MAX_CALL_DEPTH = 8

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def kind_of(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words."""
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def check_regular(path: Path, max_bytes: int = MAX_FILE_BYTES) -> os.stat_result:
    """``path``'s stat when it is a regular file of at most ``max_bytes`` bytes (symlinks
    followed); else :class:`ImportRefused` naming what it is."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImportRefused(f"{path}: no such file") from None
    except OSError as error:
        raise ImportRefused(f"{path}: cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImportRefused(f"{path}: expected a regular lattice file, found "
                            f"{kind_of(info.st_mode)}")
    if info.st_size > max_bytes:
        raise ImportRefused(f"{path}: {info.st_size} bytes is larger than the "
                            f"{max_bytes} bytes a lattice file may have")
    return info


def read_source(path: Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The text of the regular file ``path`` (at most ``max_bytes`` bytes, UTF-8)."""
    check_regular(path, max_bytes)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise ImportRefused(f"{path}: cannot be read ({error.strerror})") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ImportRefused(f"{path}: expected a regular lattice file (it changed while "
                                "being opened)")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImportRefused(f"{path}: larger than the {max_bytes} bytes a lattice file may "
                            "have")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ImportRefused(f"{path}: not a UTF-8 text file (byte {error.start})") from None


def inside(folder: Path, target: Path) -> bool:
    """Whether ``target`` (resolved, symlinks followed) lies in ``folder`` (resolved) or
    one of its subfolders."""
    return target.resolve().is_relative_to(folder.resolve())
