"""Scenarios built in tests: a beam of known moments around a PALS facility list."""

from __future__ import annotations

from typing import Any

from harness.model.load import scenario_from_dict

#: A Gaussian beam of known Twiss parameters (the energy and species are set per test).
TWISS_BEAM: dict[str, Any] = {
    "bunch_charge_C": 1e-12, "distribution": "gaussian",
    "twiss": {"beta_x": 3.0, "alpha_x": 0.5, "emittance_x": 1e-8,
              "beta_y": 2.0, "alpha_y": -0.5, "emittance_y": 1e-8},
    "longitudinal": {"sigma_t": 1e-3, "sigma_pt": 1e-3}, "seed": 7}


def facility_scenario(facility: list[dict], name: str = "test", model: str = "linear",
                      energy_MeV: float = 2000.0, species: str = "electron",
                      **extra: Any) -> Any:
    """A scenario of :data:`TWISS_BEAM` (``species`` at ``energy_MeV`` [MeV] kinetic)
    around a PALS facility list whose last entry is ``use``; ``extra`` top-level fields."""
    return scenario_from_dict({
        "name": name,
        "beam": {"species": species, "kinetic_energy_MeV": energy_MeV, **TWISS_BEAM},
        "model": model,
        "lattice": {"PALS": {"version": None, "facility": facility}},
        **extra,
    })


def line_scenario(elements: list[tuple[str, dict]], name: str = "test",
                  model: str = "linear", **settings: Any) -> Any:
    """A scenario of one beamline through ``elements`` (name, PALS fields) in order."""
    facility: list[dict[str, Any]] = [{element: body} for element, body in elements]
    facility.append({"line": {"kind": "BeamLine", "line": [n for n, _ in elements]}})
    facility.append({"use": "line"})
    return facility_scenario(facility, name, model, **settings)
