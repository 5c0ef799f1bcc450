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


#: The 2 GeV electron beam of the adapters' cross-checks against ImpactX (2000 particles,
#: seed 7), and a wider transverse setting of it (``{**beam, **WIDE_TWISS}``).
CROSS_CHECK_BEAM: dict[str, Any] = {
    "species": "electron", "kinetic_energy_MeV": 2000.0, "bunch_charge_C": 1e-9,
    "distribution": "gaussian",
    "twiss": {"beta_x": 3.0, "alpha_x": -1.5, "emittance_x": 2e-9,
              "beta_y": 3.0, "alpha_y": 1.5, "emittance_y": 2e-9},
    "longitudinal": {"sigma_t": 1e-3, "sigma_pt": 2e-3}, "particles": 2000, "seed": 7}
WIDE_TWISS: dict[str, Any] = {"twiss": {"beta_x": 30.0, "alpha_x": 0.0, "emittance_x": 1e-8,
                                        "beta_y": 30.0, "alpha_y": 0.0, "emittance_y": 1e-8}}

#: A thin and a thick steering kicker around a drift (PALS fields).
KICKERS: dict[str, dict] = {
    "k1": {"kind": "Kicker", "length": 0.0,
           "MagneticMultipoleP": {"Kn0L": 2e-5, "Ks0L": -3e-5}},
    "d": {"kind": "Drift", "length": 1.0},
    "k2": {"kind": "Kicker", "length": 0.4,
           "MagneticMultipoleP": {"Kn0L": -1e-5, "Ks0L": 4e-5}}}


def cross_check_scenario(elements: dict[str, dict], model: str = "linear",
                         beam: dict | None = None, *, name: str = "cross_check",
                         **extra: Any) -> Any:
    """A scenario of :data:`CROSS_CHECK_BEAM` (updated by ``beam``) through one beamline of
    ``elements`` (name -> PALS fields) in order; ``extra`` top-level fields."""
    facility: list[dict[str, Any]] = [{n: f} for n, f in elements.items()]
    facility += [{"line": {"kind": "BeamLine", "line": list(elements)}}, {"use": "line"}]
    return scenario_from_dict({"name": name, "beam": {**CROSS_CHECK_BEAM, **(beam or {})},
                               "model": model, **extra,
                               "lattice": {"PALS": {"version": None, "facility": facility}}})
