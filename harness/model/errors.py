"""Errors the user can act on. No traceback for bad input reaches the command line."""

from __future__ import annotations

import reprlib
from pathlib import Path

#: Longest echo of a bad value in a message [characters].
MAX_VALUE_CHARS = 80

_REPR = reprlib.Repr()
for _name, _limit in (("maxlevel", 2), ("maxtuple", 4), ("maxlist", 4), ("maxarray", 4),
                      ("maxdict", 3), ("maxset", 4), ("maxfrozenset", 4), ("maxdeque", 4),
                      ("maxstring", 60), ("maxlong", 40), ("maxother", 60)):
    setattr(_REPR, _name, _limit)


def abbreviate(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """A short repr of ``value``: bounded in time and length for any size or nesting (an
    expanded YAML alias bomb costs a few nested levels, never the whole value)."""
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is named by its type
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class ScenarioError(ValueError):
    """A scenario file is malformed or inconsistent.

    The message always names the file, the dotted path of the field and what was expected;
    the offending value, when given, is echoed abbreviated (:func:`abbreviate`), and the
    message is one line.
    """

    def __init__(self, file: str | Path | None, field: str, expected: str, got: object = None):
        self.file = str(file) if file is not None else "<scenario>"
        self.field = field
        self.expected = " ".join(str(expected).split())
        self.got = got
        got_text = "" if got is None else f" (got {abbreviate(got)})"
        super().__init__(f"{self.file}: {field}: expected {self.expected}{got_text}")
