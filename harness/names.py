"""Names from scenario files as file names and as terminal text: the one place each is made.

A scenario's ``name`` is text a user (or a colleague's file) chose. Everything the harness
writes under a run directory that is named after it goes through :func:`file_name` (a safe,
single path component) and :func:`path_inside` (which refuses a path that would leave the
directory); everything printed goes through :func:`printable` (control characters and
escape sequences shown as ``\\x1b``-style escapes, never sent to the terminal raw).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

#: Characters kept as they are in a file name; every other one is written ``%XX`` (its
#: UTF-8 bytes), so distinct names stay distinct.
_SAFE = re.compile(r"[A-Za-z0-9._+=@-]")
#: Longest file name made from a name [characters]; a longer one keeps its head and gets a
#: hash of the whole (most file systems allow 255 bytes per component).
MAX_FILE_NAME = 120


def file_name(name: str) -> str:
    """``name`` as one safe path component: letters, digits and ``._+=@-`` kept, anything
    else (``/``, ``\\``, NUL, spaces, escape sequences, non-ASCII) percent-encoded, a
    leading dot encoded (no ``.``, ``..`` or hidden files), at most :data:`MAX_FILE_NAME`
    characters (a long name keeps its head and a 12-digit hash of the whole)."""
    text = str(name)
    out = "".join(c if _SAFE.fullmatch(c) else
                  "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
                  for c in text)
    if out.startswith("."):
        out = "%2E" + out[1:]
    if not out:
        out = "%00"
    if len(out) > MAX_FILE_NAME:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        out = f"{out[:MAX_FILE_NAME - 13]}~{digest}"
    return out


def path_inside(directory: Path | str, *names: str) -> Path:
    """``directory / file_name(n1) / file_name(n2) ...``, checked to stay inside
    ``directory`` (ValueError otherwise; with :func:`file_name` it always does)."""
    root = Path(directory)
    path = root.joinpath(*(file_name(n) for n in names))
    resolved_root = root.resolve()
    if resolved_root not in path.resolve().parents:
        raise ValueError(f"{path} is not inside {root}")
    return path


def printable(text: object) -> str:
    """``text`` safe to print: control characters (C0, DEL, C1, including ESC and
    newlines), and the invisible format characters (bidirectional overrides) shown as
    ``\\x1b``-style escapes; everything else unchanged."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() or (c == " ") else _escape(c) for c in value)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
        return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    return char


__all__ = ["MAX_FILE_NAME", "file_name", "path_inside", "printable"]
