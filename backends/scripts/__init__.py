"""Standalone scripts of cases: one generator module per code (``impactx``, ``cheetah``,
``xsuite``, ``pyat``, ``ocelot``, ``rftrack``, ``inhouse``), each turning a backend's
:class:`~backends.base.Plan` (its translated lattice) into the text of a Python script that
uses only that code's own API (no trackbench import; the in-house tracker's own API is
``backends.inhouse``) to build the lattice, load the initial particles from a ``.npy`` file
beside it, warm up, time the tracks and print the final moments (:mod:`.common`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from backends.base import Plan

#: Backend name -> generator module.
GENERATORS: dict[str, str] = {"impactx": "impactx", "cheetah": "cheetah", "xsuite": "xsuite",
                              "pyat": "pyat", "ocelot": "ocelot", "rftrack": "rftrack",
                              "inhouse": "inhouse"}


def script(backend: str, plan: Plan, *, case_id: str, particles_file: str, repeat: int,
           observables: Sequence[str]) -> str:
    """The standalone script of ``backend``'s plan of a case. Raises ``ValueError`` (one
    line: why) for a backend without a generator or a case its generator cannot state."""
    if backend == "cheetah-compiled":
        raise ValueError("cheetah-compiled: no script generator for the torch.compile'd "
                         "path; the cheetah case's script tracks the same segment eagerly")
    if backend not in GENERATORS:
        raise ValueError(f"{backend}: no script generator (known: {', '.join(GENERATORS)})")
    module = importlib.import_module(f"backends.scripts.{GENERATORS[backend]}")
    text: str = module.script(plan, case_id=case_id, particles_file=particles_file,
                              repeat=int(repeat), observables=list(observables))
    return text
