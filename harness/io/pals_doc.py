"""Translated elements -> a PALS document -> a validated scenario (and its YAML text).

The PALS document has one facility entry per distinct element definition, a ``BeamLine``
listing the elements by name in beamline order, and a final ``use``. An element name used
for two different definitions (a Cheetah segment may repeat names) gets a ``__2``, ``__3``
suffix on the later ones. Everything written is validated with
:func:`harness.model.load.scenario_from_dict` first, so an import never writes an invalid
scenario.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.io.model import Translated
from harness.model.load import scenario_from_dict
from harness.model.reference_particle import SPECIES, ReferenceParticle
from harness.model.scenario import Scenario

#: The placeholder beam of an imported scenario when the source gives none (edit it): a
#: Gaussian beam with these Twiss parameters and spreads.
DEFAULT_TWISS = {"beta_x": 10.0, "alpha_x": 0.0, "emittance_x": 1.0e-9,
                 "beta_y": 10.0, "alpha_y": 0.0, "emittance_y": 1.0e-9}
DEFAULT_LONGITUDINAL = {"sigma_t": 1.0e-4, "sigma_pt": 1.0e-4}


def pals_document(elements: list[Translated], line_name: str = "beamline") -> dict[str, Any]:
    """``{"PALS": {"version": None, "facility": [...]}}`` of a beamline (names made unique)."""
    definitions: dict[str, dict[str, Any]] = {}
    line: list[str] = []
    for element in elements:
        name = element.name
        suffix = 1
        while name in definitions and definitions[name] != element.fields:
            suffix += 1
            name = f"{element.name}__{suffix}"
        definitions.setdefault(name, copy.deepcopy(element.fields))
        line.append(name)
    while line_name in definitions or line_name == "use":
        line_name += "_line"
    facility: list[dict[str, Any]] = [{name: fields} for name, fields in definitions.items()]
    facility.append({line_name: {"kind": "BeamLine", "line": line}})
    facility.append({"use": line_name})
    return {"PALS": {"version": None, "facility": facility}}


@dataclass
class BeamSpec:
    """The beam of an imported scenario: species, kinetic energy [MeV], optional Twiss."""

    species: str
    kinetic_energy_MeV: float
    twiss: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TWISS))
    longitudinal: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LONGITUDINAL))
    particles: int = 10_000

    def as_dict(self) -> dict[str, Any]:
        """The scenario's ``beam:`` mapping."""
        return {"species": self.species, "kinetic_energy_MeV": self.kinetic_energy_MeV,
                "bunch_charge_C": 0.0, "distribution": "gaussian", "twiss": dict(self.twiss),
                "longitudinal": dict(self.longitudinal), "particles": self.particles,
                "seed": 0}


def beam_from_momentum(species: str, p0c_eV: float) -> BeamSpec:
    """A beam whose reference momentum is ``p0c_eV`` [eV] (kinetic energy from the harness's
    rest energy of ``species``)."""
    mass = SPECIES[species][0]
    kinetic = ((p0c_eV**2 + mass**2) ** 0.5 - mass) * 1e-6
    return BeamSpec(species, kinetic)


def beam_from_gamma(species: str, gamma: float) -> BeamSpec:
    """A beam with the Lorentz factor ``gamma``: kinetic energy ``(gamma - 1) m c^2`` with the
    harness's rest energy. Another code's rest energy may differ in the 10th digit; keeping
    gamma (hence beta) keeps its optics exactly, R56 included, while normalised strengths
    (K1, ANGLE/L, ...) do not depend on the momentum."""
    return BeamSpec(species, (gamma - 1.0) * SPECIES[species][0] * 1e-6)


def scenario_dict(name: str, elements: list[Translated], beam: BeamSpec,
                  description: str = "", line_name: str = "beamline",
                  model: str = "linear") -> dict[str, Any]:
    """The scenario mapping of an imported beamline."""
    return {"name": name, "description": description, "reference": "impactx",
            "beam": beam.as_dict(), "model": model, "space_charge": None,
            "lattice": pals_document(elements, line_name)}


def validated(data: dict[str, Any], file: str | Path | None = None) -> Scenario:
    """The scenario of ``data``, validated (raises :class:`harness.model.errors.ScenarioError`)."""
    return scenario_from_dict(copy.deepcopy(data), file)


def to_yaml(data: dict[str, Any], header: str = "") -> str:
    """YAML text of a scenario or PALS mapping (floats written exactly: Python's repr)."""
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    return ("\n".join(lines) + "\n" if lines else "") + text


def write_scenario(data: dict[str, Any], out: Path, header: str = "") -> Scenario:
    """Validate ``data`` and write it to ``out`` as YAML; returns the loaded scenario."""
    from harness.model.load import load_scenario

    validated(data, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_yaml(data, header))
    return load_scenario(out)


def reference_of(beam: BeamSpec) -> ReferenceParticle:
    """The reference particle of a beam spec."""
    return ReferenceParticle(beam.species, beam.kinetic_energy_MeV)
