"""The case as the child process receives it: :class:`harness.cases.Case`, one type for
parent and child.

The parent (:mod:`harness.runner`) adds what the process needs (files, limits, the plan)
and writes it as JSON; the child (:mod:`harness.child`) validates it back, so a misspelt or
missing field fails at once with its name instead of as a ``KeyError`` deep inside a case.
``CaseSpec`` is the name the case kinds use for it.
"""

from __future__ import annotations

from harness.cases import Case

#: The case a child process runs (the same type as the parent's cases).
CaseSpec = Case

__all__ = ["CaseSpec"]
