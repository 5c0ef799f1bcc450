"""What the in-house tracker translates, importable without torch: the element kinds (the
lattice vocabulary's, one source) and the element fields it honours per kind (the same as
ImpactX's, whose maps it reproduces; see :mod:`backends.inhouse.translate`)."""

from __future__ import annotations

from backends.impactx import HONOURED_FIELDS as IMPACTX_FIELDS
from harness.model.vocabulary import LATTICE_KINDS

#: Harness element kinds with an in-house map (every kind of the lattice vocabulary).
KINDS: frozenset[str] = LATTICE_KINDS

#: Element fields the in-house tracker honours per kind: ImpactX's, whose maps it
#: reproduces element by element (one table, in the ImpactX adapter, which imports
#: without ImpactX).
HONOURED_FIELDS: dict[str, frozenset[str]] = IMPACTX_FIELDS
