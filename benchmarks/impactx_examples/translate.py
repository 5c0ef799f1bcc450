"""What an ImpactX example built (recorded by :mod:`.capture`) -> a trackbench scenario, or
the reasons it cannot be stated.

Every reason is ``<category>: <detail>``; the category (``element ConstF``, ``envelope
tracking``, ...) is what the suite's table counts and ranks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.io.impactx_lattice import element_settings, import_impactx
from harness.io.model import Translated
from harness.io.pals_doc import pals_document
from harness.model.reference_particle import SPECIES, ReferenceParticle

#: ImpactX distribution classes -> the scenario's ``distribution`` (same sampling:
#: ``src/particles/distribution/*.H``; KV and Semigaussian as ImpactX draws them).
DISTRIBUTIONS = {"Gaussian": "gaussian", "Waterbag": "waterbag", "KVdist": "kv",
                 "Semigaussian": "semigaussian", "Kurth6D": "kurth6d", "Kurth4D": "kurth4d",
                 "Triangle": "triangle", "Thermal": "thermal"}
_ELLIPSE = ("lambdaX", "lambdaY", "lambdaT", "lambdaPx", "lambdaPy", "lambdaPt",
            "muxpx", "muypy", "mutpt")
_MEANS = {"meanX": "x", "meanPx": "px", "meanY": "y", "meanPy": "py", "meanT": "t",
          "meanPt": "pt"}
#: ImpactX's dispersion parameters -> the scenario's ``beam.dispersion`` fields.
_DISPERSION = {"dispX": "x", "dispPx": "px", "dispY": "y", "dispPy": "py"}
#: ImpactX ``Gaussian``'s truncation -> the scenario's ``beam.gaussian_cut`` fields.
_CUTS = {"cutX": "x", "cutY": "y", "cutT": "t"}
#: ImpactX ``Thermal``'s parameters (the scenario's ``beam.thermal`` keeps their names).
_THERMAL = ("k", "kT", "kT_halo", "normalize", "normalize_halo", "halo")
#: Kinds whose map does not depend on the model tier (thin kicks, markers).
_TIER_FREE = {"Marker", "Multipole", "Kicker", "RFCavity"}
#: ImpactX ``algo.space_charge`` (lower case) -> the scenario's ``space_charge.kind``
#: (``backends/impactx_space_charge.py`` ``MODELS``, inverted).
_KINDS = {"true": "3d", "3d": "3d", "2d": "2d", "2p5d": "2p5d", "gauss3d": "gauss3d",
          "gauss2p5d": "gauss2p5d"}
#: ImpactX's per-kind space-charge settings -> (scenario setting, the kinds ImpactX reads
#: it for, conversion) (docs/space-charge-2d.md, "In scenarios"; a setting ImpactX does not
#: read for the example's kind has no effect there and is not stated).
_KIND_SETTINGS: dict[str, tuple[str, tuple[str, ...], Any]] = {
    "space_charge_num_longitudinal_bins": ("longitudinal_bins", ("2p5d",), int),
    "space_charge_gauss_charge_z_bins": ("longitudinal_bins", ("gauss2p5d",), int),
    "space_charge_apply_longitudinal_kick": ("longitudinal_kick", ("2p5d", "gauss2p5d"),
                                             bool),
    "space_charge_gauss_nint": ("gauss_nint", ("gauss3d", "gauss2p5d"), int),
    "space_charge_gauss_taylor_delta": ("gauss_taylor_delta", ("gauss2p5d",), float),
    "space_charge_gauss_long_scale": ("gauss_long_scale", ("gauss2p5d",), float)}
#: ImpactX ``algo.particle_shape`` -> the scenario's deposition (AMReX shape order 1: CIC,
#: 2: TSC).
_SHAPES = {1: "cic", 2: "tsc"}


@dataclass
class Capture:
    """What an example set up before its first ``track_particles``.

    Attributes:
        settings: attributes the script set on the simulation object (``space_charge``,
            ``spin``, ``periods``, ``n_cell``, ...), as it set them.
        reference: ``mass_MeV``, ``charge_qe``, ``kin_energy_MeV`` of the reference particle.
        lattice: the ImpactX element objects of ``sim.lattice``.
        distribution: ``(class name, parameters)`` of the distribution passed to
            ``add_particles``, or None when the beam came another way.
        bunch_charge_C: the bunch charge [C] given to ``add_particles`` (0 if none).
        particles: number of initial particles.
        tracking: ``particles`` (``track_particles``) or ``envelope`` (``track_envelope``).
        intensity: the third argument of ``init_envelope`` (the current [A] under 2D space
            charge, the bunch charge [C] under 3D), None when not given.
        spin: ``(class name, parameters)`` of the spin distribution given to
            ``add_particles``, or None.
        initial: the example's initial particles ``(N, 6)`` (x, px, y, py, t, pt; spins
            after), or None when not recorded.
    """

    settings: dict[str, Any]
    reference: dict[str, float]
    lattice: list
    distribution: tuple[str, dict[str, float]] | None
    bunch_charge_C: float
    particles: int
    notes: list[str] = field(default_factory=list)
    tracking: str = "particles"
    intensity: float | None = None
    spin: tuple[str, dict[str, float]] | None = None
    initial: Any = None


def species_of(reference: dict[str, float]) -> dict[str, Any]:
    """The scenario's species fields of an ImpactX reference particle (a known species when
    mass and charge match to 1e-6, else ``ion`` with ``charge_qe`` and ``mass_MeV``)."""
    mass_eV = reference["mass_MeV"] * 1e6
    for name, (rest_eV, charge) in SPECIES.items():
        if charge == reference["charge_qe"] and abs(rest_eV - mass_eV) <= 1e-6 * rest_eV:
            return {"species": name}
    return {"species": "ion", "charge_qe": reference["charge_qe"],
            "mass_MeV": reference["mass_MeV"]}


def _probes(capture: Capture) -> bool:
    """Whether the example's initial particles include one that does not move forward
    (:func:`harness.model.particles.check_particles`), such as the unit vector pt = 1 that
    reads a transfer map: the scenario states them as ``beam.linear_probes``, which the
    scenario accepts over a lattice of linear maps only."""
    if capture.initial is None or not len(capture.initial):
        return False
    from harness.model.errors import ScenarioError
    from harness.model.particles import check_particles

    reference = ReferenceParticle("ion", capture.reference["kin_energy_MeV"],
                                  rest_energy_eV=capture.reference["mass_MeV"] * 1e6,
                                  charge=capture.reference["charge_qe"])
    try:
        check_particles(capture.initial[:, :6], None, reference)
    except ScenarioError:
        return True
    return False


def _beam(capture: Capture, reasons: list[str], particle_file: str) -> dict[str, Any]:
    """The scenario's ``beam`` (the example's distribution, else its particles as a file)."""
    beam: dict[str, Any] = {**species_of(capture.reference),
                            "kinetic_energy_MeV": capture.reference["kin_energy_MeV"],
                            "bunch_charge_C": abs(capture.bunch_charge_C),
                            "particles": capture.particles, "seed": 0}
    if capture.distribution is None:
        capture.notes.append("beam not from an ImpactX distribution: stated as the "
                             "example's particles (distribution: file)")
        if _probes(capture):
            capture.notes.append("particles that do not move forward (unit vectors reading "
                                 "a transfer map): beam.linear_probes")
            return {**beam, "distribution": "file", "file": particle_file,
                    "linear_probes": True}
        return {**beam, "distribution": "file", "file": particle_file}
    kind, params = capture.distribution
    if kind not in DISTRIBUTIONS:
        reasons.append(f"distribution {kind}: no such scenario distribution")
        return beam
    if kind == "Thermal":
        known: tuple[str, ...] = _THERMAL
    else:
        known = (*_ELLIPSE, *_MEANS, *_DISPERSION, *(_CUTS if kind == "Gaussian" else ()))
    unknown = sorted(set(params) - set(known))
    if unknown:   # a parameter the scenario would not carry is refused, never dropped
        reasons.append(f"distribution {kind}: parameters {', '.join(unknown)} cannot be "
                       "stated")
    beam["distribution"] = DISTRIBUTIONS[kind]
    if kind == "Thermal":
        beam["thermal"] = {k: float(params[k]) for k in _THERMAL if k in params}
        return beam
    beam["ellipse"] = {k: float(params[k]) for k in _ELLIPSE if k in params}
    for key, names in (("centroid", _MEANS), ("dispersion", _DISPERSION),
                       ("gaussian_cut", _CUTS)):
        given = {name: float(params[k]) for k, name in names.items()
                 if float(params.get(k, 0.0))}
        if given:
            beam[key] = given
    return beam


def _space_charge(capture: Capture, thick_slices: set[int], reasons: list[str]
                  ) -> dict[str, Any] | None:
    """The scenario's ``space_charge`` block (None when the example has none)."""
    s = capture.settings
    value = str(s.get("space_charge", False)).strip().lower()
    if value in ("false", "0", "none", "off"):
        return None
    kind = _KINDS.get(value)
    if kind is None:
        reasons.append(f"space charge {s['space_charge']}: no such space-charge model")
        return None
    if int(s.get("max_level", 0) or 0) > 0:
        reasons.append(f"mesh refinement: max_level {s['max_level']} (one mesh level only)")
    if len(thick_slices) > 1:
        reasons.append("space-charge slicing per element: one kicks_per_element for all "
                       f"(example: nslice {sorted(thick_slices)})")
    block: dict[str, Any] = {"kind": kind, "kicks_per_element": min(thick_slices or {1})}
    if kind in ("3d", "2d", "2p5d"):
        solver = str(s.get("poisson_solver", "fft")).lower()
        if solver != "fft":
            reasons.append(f"Poisson solver {solver}: only ImpactX's FFT solver can be "
                           "stated")
        shape = int(s.get("particle_shape", 1))
        if shape not in _SHAPES:
            reasons.append(f"particle_shape {shape}: deposition cic or tsc only")
        block["deposition"] = _SHAPES.get(shape, "cic")
        if "n_cell" in s:
            block["grid"] = [int(v) for v in s["n_cell"]]
        if "prob_relative" in s:
            relative = s["prob_relative"]
            block["prob_relative"] = float(relative[0] if isinstance(relative, list | tuple)
                                           else relative)
    for setting, (name, kinds, convert) in _KIND_SETTINGS.items():
        if setting in s and kind in kinds:
            block[name] = convert(s[setting])
    return block


def _settings_reasons(capture: Capture, reasons: list[str]) -> None:
    """Reasons from simulation settings the scenario has no field for."""
    s = capture.settings
    for key, label in (("csr", "CSR"), ("isr", "ISR")):
        if str(s.get(key, False)).lower() in ("true", "1"):
            reasons.append(f"{label}: not a scenario setting")


def _particle_boundary(capture: Capture, reasons: list[str]) -> dict[str, Any] | None:
    """The scenario's ``particle_boundary`` (ImpactX ``algo.particle_bc`` with the particle
    container's bucket length, ``src/particles/ParticleBoundary.cpp``), None for ImpactX's
    default ``open``; ``absorbing`` and ``reflecting`` are refused."""
    s = capture.settings
    boundary = str(s.get("particle_bc", "open")).strip().lower()
    if boundary == "open":   # ImpactX's default: no longitudinal boundary
        return None
    if boundary != "periodic":
        reasons.append(f"particle boundary {boundary}: only 'periodic' is a scenario "
                       "setting")
        return None
    length = float(s.get("bucket_length", 0.0) or 0.0)
    if length <= 0.0:
        reasons.append("particle boundary periodic: no bucket length set "
                       "(set_bucket_length)")
        return None
    return {"kind": "periodic", "bucket_length": length}


def _integrator(names: list[str], lattice: list, items: list, reasons: list[str]
                ) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]], set[int]]:
    """Default model tier and integrator, per-name overrides, and the slices of the thick
    elements."""
    wanted: dict[str, dict[str, Any]] = {}
    thick: set[int] = set()
    for name, element, item in zip(names, lattice, items, strict=True):
        settings = element_settings(element)
        if item.length:
            thick.add(settings["nslice"])
        want = {"model": None if item.kind in _TIER_FREE else settings["tier"],
                "nslice": settings["nslice"] if item.length else None,
                "mapsteps": settings["mapsteps"], "int_order": settings["int_order"]}
        if wanted.setdefault(name, want) != want:
            reasons.append(f"element name {name}: one name with different integrator "
                           "settings")
    tiers = Counter(w["model"] for w in wanted.values() if w["model"])
    slices = Counter(w["nslice"] for w in wanted.values() if w["nslice"])
    steps = Counter(w["mapsteps"] for w in wanted.values() if w["mapsteps"])
    orders = Counter(w["int_order"] for w in wanted.values() if w["int_order"])
    model = tiers.most_common(1)[0][0] if tiers else "linear"
    integrator = {"nslice": slices.most_common(1)[0][0] if slices else 1,
                  "mapsteps": steps.most_common(1)[0][0] if steps else 10}
    if orders and orders.most_common(1)[0][0] != 2:   # stated only when not the default
        integrator["int_order"] = orders.most_common(1)[0][0]
    overrides: dict[str, dict[str, Any]] = {}
    for name, want in wanted.items():
        override = {k: v for k, v in (("model", want["model"]), ("nslice", want["nslice"]),
                                      ("mapsteps", want["mapsteps"]),
                                      ("int_order", want["int_order"]))
                    if v is not None and v != ({"model": model, "int_order": 2} | integrator)[k]}
        if override:
            overrides[name] = override
    return model, integrator, overrides, thick


def scenario_of(capture: Capture, name: str, particle_file: str = "initial.npz",
                spin_file: str = "spins.npy") -> tuple[dict[str, Any] | None, list[str]]:
    """The scenario mapping of a captured example and the reasons it cannot be stated
    (the mapping is None when there is any); ``particle_file``, ``spin_file``: the names the
    scenario gives the example's particles and spins (when it states them as files)."""
    reasons: list[str] = []
    _settings_reasons(capture, reasons)
    ref = ReferenceParticle("ion", capture.reference["kin_energy_MeV"],
                            rest_energy_eV=capture.reference["mass_MeV"] * 1e6,
                            charge=capture.reference["charge_qe"])
    result = import_impactx(list(capture.lattice), ref, name)
    for item in result.untranslatable:
        reasons.append(f"element {item.source_kind}: {item.reason}")
    beam = _beam(capture, reasons, particle_file)
    if reasons:
        return None, _unique(reasons)
    items = [i for i in result.items if isinstance(i, Translated)]
    document = pals_document(items)
    names = next(v["line"] for entry in document["PALS"]["facility"]
                 for v in entry.values() if isinstance(v, dict) and v.get("kind") == "BeamLine")
    elements = _sources(items, capture.lattice)
    model, integrator, overrides, thick = _integrator(names, elements, items, reasons)
    periods = int(capture.settings.get("periods", 1) or 1)
    extra: dict[str, Any] = {}
    if capture.tracking == "envelope":
        extra = {"tracking": "envelope"}
        envelope_sc = _envelope_space_charge(capture, beam, reasons)
        if envelope_sc:
            extra["envelope_space_charge"] = envelope_sc
        space_charge = None
    else:
        space_charge = _space_charge(capture, thick, reasons)
        if space_charge and space_charge["kind"] == "2d":
            # ImpactX's 2D model reads add_particles' "charge" as the beam current [A]
            beam["current_A"] = beam.pop("bunch_charge_C")
    _spin(capture, beam, reasons, spin_file)
    boundary = _particle_boundary(capture, reasons)
    if boundary is not None:
        extra["particle_boundary"] = boundary
    if reasons:
        return None, _unique(reasons)
    return {"name": name, "description": f"ImpactX example {name}", "reference": "impactx",
            "beam": beam, "model": model, "integrator": integrator, "overrides": overrides,
            "space_charge": space_charge, "lattice": document, "periods": periods,
            **extra}, []


def _envelope_space_charge(capture: Capture, beam: dict[str, Any], reasons: list[str]
                           ) -> dict[str, str] | None:
    """The ``envelope_space_charge`` block of an envelope example (None without space
    charge); ``init_envelope``'s intensity goes to ``beam.current_A`` (2D) or
    ``beam.bunch_charge_C`` (3D), as ImpactX's ``EnvelopeSpaceChargePush.cpp`` reads it."""
    value = str(capture.settings.get("space_charge", False)).strip().lower()
    intensity = abs(float(capture.intensity or 0.0))
    if value in ("false", "0", "none", "off"):
        beam["bunch_charge_C"] = intensity
        return None
    kind = {"2d": "2d", "3d": "3d", "true": "3d"}.get(value)
    if kind is None:
        reasons.append(f"envelope space charge {capture.settings['space_charge']}: "
                       "ImpactX's envelope mode has 2D and 3D space charge only")
        return None
    if kind == "2d":
        beam.pop("bunch_charge_C", None)
        beam["current_A"] = intensity
    else:
        beam["bunch_charge_C"] = intensity
    return {"kind": kind}


def _spin(capture: Capture, beam: dict[str, Any], reasons: list[str],
          spin_file: str = "spins.npy") -> None:
    """``beam.spin`` of an example that tracks spin (``sim.spin = True``): the polarization
    of its ``SpinvMF`` (ImpactX ``src/particles/distribution/SpinvMF.H``: mean direction and
    length of the mean spin); spins given another way (``add_n_particles(..., sx=, sy=,
    sz=)``) are the example's own, stated as ``spin_file`` (:mod:`.capture` writes it). An
    example that gives spins without tracking them (``sim.spin`` off) has them carried
    unchanged, ``push: false``."""
    pushed = str(capture.settings.get("spin", False)).lower() in ("true", "1")
    if not pushed and capture.spin is None:
        return
    if capture.tracking == "envelope":
        reasons.append("spin with envelope tracking: ImpactX's envelope carries no spin")
        return
    if not pushed and capture.spin is not None:   # stated, never dropped: carried as is
        capture.notes.append(f"spin distribution {capture.spin[0]} without spin tracking "
                             "(sim.spin off): the spins are carried unchanged (beam.spin."
                             "push: false)")
    if capture.spin is None or capture.spin[0] != "SpinvMF":
        if capture.initial is None or np.shape(capture.initial)[1:] != (9,):
            reasons.append("spin tracking: initial spins neither from a SpinvMF "
                           "distribution nor recorded")
            return
        source = ("not from a spin distribution" if capture.spin is None
                  else f"from a {capture.spin[0]} distribution")
        capture.notes.append(f"initial spins {source}: stated as the example's own spins "
                             "(beam.spin.file)")
        beam["spin"] = {"file": spin_file}
    else:
        params = capture.spin[1]
        beam["spin"] = {"polarization": [float(params.get(k, 0.0))
                                         for k in ("mux", "muy", "muz")]}
    if not pushed:
        beam["spin"]["push"] = False


def _sources(items: list[Translated], lattice: list) -> list:
    """The ImpactX element each translated item came from (items are the lattice in order,
    less the pole faces merged into their bends)."""
    out = []
    position = 0
    for item in items:
        while True:
            element = lattice[position]
            d = element.to_dict()
            kind = str(d.get("type", type(element).__name__))
            position += 1
            if (str(d["name"]) if d.get("name") else f"{kind.lower()}_{position - 1}") \
                    == item.name:
                out.append(element)
                break
    return out


def _unique(reasons: list[str]) -> list[str]:
    """Reasons in order, each once."""
    return list(dict.fromkeys(reasons))


def category(reason: str) -> str:
    """The category of a reason (the text before its first ':')."""
    return reason.split(":", 1)[0]
