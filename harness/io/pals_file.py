"""PALS files in (as written by other codes, e.g. ImpactX's ``examples/pals``) and a
scenario's lattice out as a standalone PALS file.

An imported PALS lattice is kept unchanged as the scenario's ``lattice:`` (validated by the
harness like any scenario). The exported file is the scenario's PALS document exactly,
``{PALS: {version, facility}}``, which ``pals-schema`` (``pals.PALSroot``) and ImpactX's
``read_lattice`` read.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from harness.io.model import ImportRefused
from harness.io.pals_doc import to_yaml
from harness.io.source_file import read_source
from harness.model.load import load_scenario
from harness.model.scenario import Scenario


class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases (``*name``): a lattice file needs none, and nested
    aliases expand exponentially in whatever walks the document ("billion laughs")."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ImportRefused(f"{self.name}:{mark.line + 1}: a YAML alias (*name) is "
                                "refused in a lattice file (write the value out)")
        return super().compose_node(parent, index)


def read_pals(path: str | Path) -> dict[str, Any]:
    """The PALS document of a ``.pals.yaml`` (or ``.yaml``/``.json``) file, unchanged (read
    as data: a regular, size-capped file, :func:`harness.io.source_file.read_source`)."""
    path = Path(path)
    text = read_source(path)
    try:
        loader = _NoAliasLoader(text)
        loader.name = str(path)
        try:
            document = loader.get_single_data()
        finally:
            loader.dispose()
    except RecursionError:
        raise ImportRefused(f"{path}: nested too deeply to be a lattice file") from None
    except yaml.YAMLError as error:
        raise ImportRefused(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(document, dict) or "PALS" not in document:
        raise ImportRefused(f"{path}: expected a PALS document (a top-level 'PALS:' key)")
    return document


def line_name(document: dict[str, Any]) -> str:
    """The name the PALS document ``use``s (or its only entry's name)."""
    facility = document.get("PALS", {}).get("facility") or []
    last = facility[-1] if facility else {}
    if isinstance(last, dict) and isinstance(last.get("use"), str):
        return str(last["use"])
    return str(next(iter(last), "beamline")) if isinstance(last, dict) else "beamline"


def export_pals(scenario: str | Path | Scenario) -> dict[str, Any]:
    """The lattice of a scenario (file, bundled name or loaded) as a PALS document."""
    loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    document = copy.deepcopy(loaded.lattice)
    document["PALS"].setdefault("version", None)
    return document


def write_pals(document: dict[str, Any], out: str | Path, source: str = "") -> Path:
    """Write a PALS document after checking that pals-schema reads it back."""
    import warnings

    import pals

    out = Path(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pals.PALSroot(**copy.deepcopy(document["PALS"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    header = f"PALS lattice exported by trackbench{f' from {source}' if source else ''}"
    out.write_text(to_yaml(document, header))
    return out
