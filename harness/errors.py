"""Errors the user can act on. No traceback for bad input reaches the command line."""

from __future__ import annotations

from pathlib import Path


class ScenarioError(ValueError):
    """A scenario file is malformed or inconsistent.

    The message always names the file, the dotted path of the field and what was expected.
    """

    def __init__(self, file: str | Path | None, field: str, expected: str, got: object = None):
        self.file = str(file) if file is not None else "<scenario>"
        self.field = field
        self.expected = expected
        self.got = got
        got_text = "" if got is None else f" (got {got!r})"
        super().__init__(f"{self.file}: {field}: expected {expected}{got_text}")


class BackendUnavailable(RuntimeError):
    """A backend's package is not installed; the message carries the install hint."""
