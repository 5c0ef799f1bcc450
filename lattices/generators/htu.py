"""Write ``lattices/htu.yaml``: the BELLA Hundred-Terawatt Undulator (HTU) beamline of the
NAPAC2025 paper TUP101 (Huebl et al., "Towards Differentiable Beam Dynamics Modeling in
BLAST/ImpactX"), as run by its benchmark.

Source: repository BLAST-ImpactX/impactx-benchmarks, tag ``napac25``, files
``napac25/scenario_htu/htu_lattice.py`` (the lattice) and
``napac25/scenario_htu/run_cheetah_impactx.py.jinja`` (the beam); the same beamline ships
with ImpactX as ``examples/htu_beamline/`` (``htu_lattice.py``, ``run_impactx.py``). Beamline
references there: doi:10.1103/vh62-gz1p, doi:10.1117/12.3056776.

What the source gives and how it becomes the scenario:

* Quadrupoles are given by field. The permanent-magnet triplet (PMQ) and the undulator's
  FODO quadrupoles by the pole-tip field ``B`` [T] at bore radius ``r`` [m]: ``G = B / r``
  [T/m]; the electromagnet triplet (EMQ) by its current ``I`` [A] through the magnet's
  calibration line ``G = a I + b`` (design EMQD-113-394: a = 2.9217 T/(A m), b = 0.0965 T/m;
  EMQD-113-949: a = 2.9318, b = 0.0077). The source's ``G`` is stated for the electron: the
  field gradient is ``-G`` (ImpactX ``ChrQuad(k = -G, unit = 1)``; ImpactX's own example
  writes ``Bgradient = -1.0 * B / r``), and its normalised strength is
  ``k1 = G / |B rho|`` (Cheetah ``k1 = G / rigidity``). The scenario states the field
  gradient, PALS ``Bn1 = -G`` [T/m]; the harness normalises it with the beam's signed
  rigidity, ``Kn1 = Bn1 / (B rho)`` with ``B rho = p / q < 0``, which is the source's k1.
* The chicane: four 0.175 m sector bends at the angle of the control-system setting
  R56 = 200 um, ``theta = 1.438389904456e-3 * sqrt(R56 / um)`` [rad], signs (-, +, +, -)
  (bends 1 and 4 negated); pole faces normal to the reference orbit (ImpactX ``ExactSbend``,
  no edge angles). The source also gives the bend field ``B = -|B rho| theta / L``: the
  scenario states both, ``g_ref = theta / L`` and ``bend_field_ref = B`` (the harness checks
  that they agree at the beam's rigidity).
* The spectrometer dipole MagSpec is a 0.4826 m bend at zero angle (field off).
* Steering kickers S1-S4 and the undulator's VS1-VS8 (PALS ``Kicker``) with the integrated
  fields of their currents, ``current * max_integrated_field / max_current`` [T m]
  (1970e-6 T m at 5 A; the undulator's halved); the benchmark runs them at zero current.
* Screens become markers (the benchmark's ``screens_as_markers=True``).

Model tiers as the benchmark ran ImpactX: exact drifts (``ExactDrift``) and bends
(``ExactSbend``), chromatic (paraxial) quadrupoles (``ChrQuad``), one slice each.

The benchmark's mean momentum offset of the beam, ``mu_p = 1e-2`` (ImpactX ``meanPt =
-mu_p``, Cheetah ``incoming.p += mu_p``), is the beam's ``centroid: {pt: -1e-2}``; ImpactX's
own ``examples/htu_beamline/run_impactx.py`` runs a centred beam.

Run ``python -m lattices.generators.htu`` (from the repository root) to rewrite the file;
``--check`` exits 1 when the committed file differs from what this script writes.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import yaml

from harness.model.reference_particle import ReferenceParticle
from lattices.generators import write_or_check

OUT = Path(__file__).resolve().parent.parent / "htu.yaml"

#: Beam of the benchmark: 100 MeV total energy electrons.
TOTAL_ENERGY_MEV = 100.0
NORMALISED_EMITTANCE = 1.5e-6  # m rad, both planes
BETA = 2.0e-3  # m, both planes (alpha = 0)
SIGMA_T = 1.0e-6  # m
SIGMA_P = 2.5e-2  # relative momentum spread
MU_P = 1.0e-2  # relative mean momentum offset (ImpactX meanPt = -MU_P)
BUNCH_CHARGE_C = 25.0e-12

#: Whether the scenario states the magnets by field (PALS ``Bn1`` [T/m], ``bend_field_ref``
#: [T], ``Kicker`` with ``Bn0L``/``Bs0L`` [T m]); False writes normalised strengths only
#: (``Kn1 = Bn1 / (B rho)`` [1/m^2], ``g_ref``) and the zero-current kickers as markers (the
#: identity), for a harness whose lattice model has no field strengths.
FIELD_STRENGTHS = True

#: EMQ currents [A] of the benchmark (``get_lattice`` defaults).
EMQ_CURRENTS = (0.683822195172598, -0.882403221217054, 1.085116293768873)
#: Calibration lines G = a I + b [T/m] per EMQ design (the source's test reports).
EMQ_CALIBRATION = {"EMQD-113-394": (2.9217, 0.0965), "EMQD-113-949": (2.9318, 0.0077)}
#: Steering magnets: integrated field at the largest current [T m], that current [A], and
#: the benchmark's currents (horizontal, vertical) [A].
STEERING_MAX_FIELD_TM, STEERING_MAX_CURRENT_A = 1970e-6, 5.0
UNDULATOR_STEERING_SCALE = 0.5
STEERING_CURRENTS = (0.0, 0.0)
#: Chicane setting R56 [um] and the source's angle-vs-setting relation.
CHICANE_R56_UM = 200.0
CHICANE_ANGLE_PER_SQRT_UM = 0.001438389904456


def reference() -> ReferenceParticle:
    """The design electron: 100 MeV total energy."""
    mass_MeV = ReferenceParticle("electron", 1.0).mass_MeV
    return ReferenceParticle("electron", TOTAL_ENERGY_MEV - mass_MeV)


def gradient_from_tip_field(tip_field_T: float, bore_radius_m: float) -> float:
    """Quadrupole gradient G = B / r [T/m] from the pole-tip field at the bore radius."""
    return tip_field_T / bore_radius_m


def gradient_from_current(current_A: float, design: str) -> float:
    """Quadrupole gradient [T/m] from the current through the design's calibration line."""
    a, b = EMQ_CALIBRATION[design]
    return a * current_A + b


def chicane_angle() -> float:
    """Bend angle [rad] of the chicane dipoles for the R56 setting (source's relation)."""
    return CHICANE_ANGLE_PER_SQRT_UM * math.sqrt(CHICANE_R56_UM)


def _quad(length: float, gradient: float, rigidity: float) -> dict:
    """A quadrupole of the source's gradient ``G`` (stated for the electron, see above):
    field gradient Bn1 = -G, or Kn1 = -G / (B rho) = G / |B rho| with the signed rigidity."""
    field_gradient = -gradient
    strength = ({"Bn1": field_gradient} if FIELD_STRENGTHS
                else {"Kn1": field_gradient / rigidity})
    return {"kind": "Quadrupole", "length": length, "MagneticMultipoleP": strength}


def steering_field(current_A: float, scale: float = 1.0) -> float:
    """Integrated field [T m] of a steering magnet at a current (linear in the current)."""
    return current_A * STEERING_MAX_FIELD_TM * scale / STEERING_MAX_CURRENT_A


def _kicker(scale: float) -> dict:
    horizontal, vertical = (steering_field(i, scale) for i in STEERING_CURRENTS)
    if horizontal or vertical:
        # the benchmark runs every steering magnet at zero current; the sign of its
        # ImpactX Kicker(xkick, ykick, unit="T-m") against PALS Bn0L/Bs0L is not checked here
        raise ValueError("non-zero steering currents: the kick signs of the translation are "
                         "checked for zero currents only")
    if FIELD_STRENGTHS:
        return {"kind": "Kicker", "length": 0.0,
                "MagneticMultipoleP": {"Bn0L": horizontal, "Bs0L": vertical}}
    return {"kind": "Marker"}


def _bend(length: float, angle: float, rigidity: float) -> dict:
    bend = {"g_ref": angle / length, "e1": 0.0, "e2": 0.0}
    if FIELD_STRENGTHS:
        bend["bend_field_ref"] = angle / length * rigidity  # B = g B rho (signed rigidity)
    return {"kind": "SBend", "length": length, "BendP": bend}


def facility() -> list[dict]:
    """The PALS facility: element definitions, the source's sub-lines, ``use: htu``."""
    brho = reference().rigidity_Tm
    theta = chicane_angle()
    elements: dict[str, dict] = {}

    def drift(name: str, length: float) -> str:
        elements[name] = {"kind": "Drift", "length": length}
        return name

    def marker(name: str) -> str:
        elements[name] = {"kind": "Marker"}
        return name

    def kicker(name: str, scale: float = 1.0) -> str:
        elements[name] = _kicker(scale)
        return name

    def pm_quad(name: str, length: float, tip_field: float, bore_radius: float) -> str:
        elements[name] = _quad(length, gradient_from_tip_field(tip_field, bore_radius), brho)
        return name

    def em_quad(name: str, length: float, current: float, design: str) -> str:
        elements[name] = _quad(length, gradient_from_current(current, design), brho)
        return name

    def bend(name: str, length: float, angle: float) -> str:
        elements[name] = _bend(length, angle, brho)
        return name

    lines: dict[str, list[str]] = {}
    lines["pmq_triplet"] = [
        pm_quad("PMQ1V", 0.02903, -1.242, 0.006), drift("L1", 0.029035),
        pm_quad("PMQ2H", 0.02890, 1.242, 0.006), drift("L2", 0.0473895),
        pm_quad("PMQ3V", 0.016321, -1.107, 0.006)]
    lines["chicane"] = [
        bend("BEND1", 0.175, -theta), drift("L12", 0.125), bend("BEND2", 0.175, theta),
        drift("L23", 0.15), marker("ChicaneSlit"), "L23", bend("BEND3", 0.175, theta), "L12",
        bend("BEND4", 0.175, -theta)]
    lines["emq_triplet"] = [
        em_quad("EMQ1H", 0.1408, EMQ_CURRENTS[0], "EMQD-113-394"), drift("EMQL1", 0.112735),
        em_quad("EMQ2V", 0.28141, EMQ_CURRENTS[1], "EMQD-113-949"), drift("EMQL2", 0.112735),
        em_quad("EMQ3H", 0.1409, EMQ_CURRENTS[2], "EMQD-113-394")]
    lines["aline"] = [
        drift("DriftToAline1", 0.4009), marker("UC_ALineEbeam1"),
        drift("DriftToAline2", 0.3825), marker("UC_ALineEBeam2"),
        drift("DriftToAline3", 0.4191), marker("UC_ALineEBeam3"),
        drift("DriftToUndulator", 0.2945)]
    lines["transport"] = [
        drift("SrcToPMQ1", 0.052), "pmq_triplet", drift("PMQTripToTCPhos", 0.2158),
        marker("TCPhosphor"), drift("TCPhosToChicane", 0.42), kicker("S1"), "chicane",
        kicker("S2"), drift("DriftToDCPhos", 0.27), marker("DCPhosphor"),
        drift("DriftToEMQTrip", 0.405), "emq_triplet", kicker("S3"),
        drift("DriftToPhos1", 0.084325), marker("Phosphor1"), drift("DriftToSpec", 0.28),
        bend("MagSpec", 0.4826, 0.0), kicker("S4"), "aline"]
    drift("VD", 0.018)
    segments = []
    for segment in range(4):
        focusing, defocusing = f"VQ{2 * segment + 1}", f"VQ{2 * segment + 2}"
        pm_quad(focusing, 0.0504, 0.132, 0.004)
        pm_quad(defocusing, 0.0504, -0.132, 0.004)
        cell = f"fodo_cell{segment + 1}"
        lines[cell] = [focusing, focusing, "VD", defocusing, defocusing, "VD"]
        first, second = 2 * segment + 1, 2 * segment + 2
        name = f"undulator_segment{segment + 1}"
        scale = UNDULATOR_STEERING_SCALE
        lines[name] = [cell, kicker(f"VS{first}", scale), marker(f"UC_VisaEBeam{first}"),
                       cell, cell, kicker(f"VS{second}", scale),
                       marker(f"UC_VisaEBeam{second}"), cell]
        segments.append(name)
    lines["undulator"] = segments
    lines["htu"] = ["transport", "undulator"]

    out: list[dict] = [{name: fields} for name, fields in elements.items()]
    out += [{name: {"kind": "BeamLine", "line": line}} for name, line in lines.items()]
    out.append({"use": "htu"})
    return out


def quadrupole_overrides() -> dict[str, dict]:
    """Quadrupoles run paraxial (ImpactX ``ChrQuad``), every other element exact."""
    return {name: {"model": "paraxial"} for entry in facility()
            for name, fields in entry.items()
            if isinstance(fields, dict) and fields.get("kind") == "Quadrupole"}


def scenario() -> dict:
    """The scenario mapping."""
    ref = reference()
    emittance = NORMALISED_EMITTANCE / ref.beta_gamma
    return {
        "name": "htu",
        "description": ("BELLA HTU beamline (NAPAC2025 TUP101): PMQ triplet, R56 = 200 um "
                        "chicane, EMQ triplet, 4x4-cell FODO undulator line; 100 MeV "
                        "(total) electrons."),
        "reference": "impactx",
        "beam": {
            "species": "electron",
            "kinetic_energy_MeV": ref.kinetic_energy_MeV,
            "bunch_charge_C": BUNCH_CHARGE_C,
            "distribution": "gaussian",
            "twiss": {"beta_x": BETA, "alpha_x": 0.0, "emittance_x": emittance,
                      "beta_y": BETA, "alpha_y": 0.0, "emittance_y": emittance},
            # ImpactX t = c dt [m]; pt ~ -delta at this energy (beta = 0.99999)
            "longitudinal": {"sigma_t": SIGMA_T, "sigma_pt": SIGMA_P},
            "centroid": {"pt": -MU_P},
            "particles": 10_000,
            "seed": 20251125,
        },
        "model": "exact",
        "integrator": {"nslice": 1, "mapsteps": 10},
        "overrides": quadrupole_overrides(),
        "space_charge": None,
        "particle_counts": [10_000, 100_000],
        "observables": ["sigma_x", "sigma_y", "sigma_t", "sigma_px", "sigma_py", "sigma_pt",
                        "emittance_x", "emittance_y", "emittance_t", "mean_x", "mean_t"],
        "lattice": {"PALS": {"version": None, "facility": facility()}},
    }


HEADER = """\
# htu: the BELLA Hundred-Terawatt Undulator beamline of NAPAC2025 TUP101 (Huebl et al.),
# translated from BLAST-ImpactX/impactx-benchmarks tag napac25, napac25/scenario_htu/.
# GENERATED by lattices/generators/htu.py (python -m lattices.generators.htu): edit that
# script, not this file. It documents every conversion (quadrupole gradients from pole-tip
# fields and calibration currents, chicane angles from the R56 setting).
# Magnet strengths: {strengths}.
# The beam's 1 % mean momentum offset is its centroid (pt = -1e-2, ImpactX meanPt).
"""


def render() -> str:
    """The scenario file's text."""
    brho = abs(reference().rigidity_Tm)
    strengths = ("by field (quadrupole Bn1 [T/m], bend_field_ref [T] beside g_ref, kicker\n"
                 "# Bn0L/Bs0L [T m]), normalised by the harness with the beam's rigidity"
                 if FIELD_STRENGTHS else
                 "Kn1 = G / |B rho| [1/m^2] with G the source's gradient and\n"
                 f"# |B rho| = {brho:.12g} T m (100 MeV total energy); zero-current "
                 "steering kickers are markers")
    strengths += f" (|B rho| = {brho:.12g} T m)" if FIELD_STRENGTHS else ""
    body = yaml.safe_dump(scenario(), sort_keys=False, width=100, default_flow_style=None)
    return HEADER.format(strengths=strengths) + body


def main(argv: list[str] | None = None) -> int:
    """Write (or ``--check``) the scenario file."""
    return write_or_check(__doc__.splitlines()[0], OUT, render, argv)


if __name__ == "__main__":
    sys.exit(main())
