"""``trackbench import``: a lattice file (MAD-X, Bmad, elegant, PALS) -> a scenario YAML.

The format comes from ``--format`` or the file name (``.madx``/``.seq``/``.mad`` MAD-X,
``.bmad``/``.lat`` Bmad, ``.lte`` elegant, ``.pals.yaml``/``.yaml``/``.yml`` PALS).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.io.model import ImportRefused, ImportResult, Translated, apply_policy
from harness.io.pals_doc import BeamSpec, scenario_dict, to_yaml, validated
from harness.io.sandbox import DEFAULT_MEMORY_LIMIT_GIB, DEFAULT_TIME_LIMIT_S, check_limits
from harness.io.source_file import check_regular
from harness.model.reference_particle import SPECIES

FORMATS: tuple[str, ...] = ("madx", "bmad", "elegant", "pals")
_SUFFIXES = {".madx": "madx", ".seq": "madx", ".mad": "madx", ".bmad": "bmad", ".lat": "bmad",
             ".lte": "elegant", ".yaml": "pals", ".yml": "pals"}


def detect_format(path: Path) -> str:
    """The format of a lattice file from its name."""
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ImportRefused(f"{path}: cannot tell the format from the name; give --format "
                            f"({'|'.join(FORMATS)})")
    return fmt


@dataclass
class Imported:
    """An imported scenario: its mapping (validated), the import result, the PALS line."""

    data: dict[str, Any]
    result: ImportResult | None
    line: str

    def header(self) -> str:
        """The header of the scenario file: the source and every rewrite."""
        lines = [f"Imported by `trackbench import` from {self.data['description']}"]
        if self.result is not None:
            lines += [f"note: {n}" for n in dict.fromkeys(self.result.notes)]
            lines += [f"replaced (--on-unsupported): {u.source_kind} {u.name}: {u.reason}"
                      for u in self.result.replaced]
        lines.append("The beam is a placeholder unless it came from the source file: edit it.")
        return "\n".join(lines)

    def yaml(self) -> str:
        """The scenario YAML with its header."""
        return to_yaml(self.data, self.header())


def _check_beam_options(species: str | None, energy_MeV: float | None) -> None:
    if species is not None and species not in SPECIES:
        raise ImportRefused(f"--species: expected one of {sorted(SPECIES)} (got {species!r})")
    if energy_MeV is not None and not (energy_MeV > 0 and energy_MeV < float("inf")):
        raise ImportRefused(f"--energy: expected a positive kinetic energy in MeV "
                            f"(got {energy_MeV!r})")


def import_lattice(file: str | Path, fmt: str | None = None, sequence: str | None = None,
                   on_unsupported: str = "error", species: str | None = None,
                   energy_MeV: float | None = None, name: str | None = None,
                   time_limit_s: float = DEFAULT_TIME_LIMIT_S,
                   memory_limit_gib: float = DEFAULT_MEMORY_LIMIT_GIB) -> Imported:
    """Import a lattice file into a validated scenario mapping (nothing written).

    The file is read as data (:mod:`harness.io.source_file`: a regular file, size-capped);
    MAD-X and the Bmad/elegant parsers run in their own process, stopped after
    ``time_limit_s`` s or when they need more than ``memory_limit_gib`` GiB
    (:mod:`harness.io.sandbox`)."""
    path = Path(file)
    if fmt is not None and fmt not in FORMATS:
        raise ImportRefused(f"--format: expected one of {list(FORMATS)} (got {fmt!r})")
    _check_beam_options(species, energy_MeV)
    check_limits(time_limit_s, memory_limit_gib)
    check_regular(path)
    fmt = fmt or detect_format(path)
    scenario_name = name or path.name.split(".")[0]
    description = f"{path.name} ({fmt})"
    if fmt == "pals":
        from harness.io.pals_file import line_name, read_pals

        document = read_pals(path)
        if species is None or energy_MeV is None:
            raise ImportRefused(f"{path}: a PALS lattice file has no beam; give --species and "
                                "--energy")
        beam = BeamSpec(species, energy_MeV)
        data = {"name": scenario_name, "description": description, "reference": "impactx",
                "beam": beam.as_dict(), "model": "linear", "space_charge": None,
                "lattice": document}
        validated(data, path)
        return Imported(data, None, line_name(document))
    if fmt == "madx":
        from harness.io.madx import import_madx

        result, beam, line = import_madx(path, sequence, species, energy_MeV, time_limit_s,
                                         memory_limit_gib)
    else:
        from harness.io.cheetah_segment import import_cheetah_file

        result, beam, line = import_cheetah_file(path, fmt, sequence, species, energy_MeV,
                                                 time_limit_s, memory_limit_gib)
    elements = apply_policy(result, on_unsupported)
    data = scenario_dict(scenario_name, elements, beam, description, line)
    validated(data, path)
    return Imported(data, result, line)


def import_elements(elements: list[Translated], beam: BeamSpec, name: str,
                    line: str = "beamline") -> dict[str, Any]:
    """A validated scenario mapping of translated elements (Python-built lattices)."""
    data = scenario_dict(name, elements, beam, f"{name} (Python)", line)
    validated(data)
    return data
