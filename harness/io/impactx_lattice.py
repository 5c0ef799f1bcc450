"""A lattice built in Python as a list of ImpactX elements -> translated PALS elements.

ImpactX's element models (``impactx.elements``, sources ``src/elements/*.H``) map onto PALS
kinds; the model tier of an ImpactX element (``Drift``/``ChrDrift``/``ExactDrift``, ...) is
not a lattice property in PALS, it is the scenario's ``model`` (listed in the notes).

=======================================  ======================================================
ImpactX                                  PALS
=======================================  ======================================================
Drift, ChrDrift, ExactDrift (ds)         ``Drift`` length
Quad, ChrQuad, ExactQuad (ds, k, unit)   ``Quadrupole`` ``Kn1 = k`` (unit 1: the field
                                         ``Bn1 = k`` [T/m], divided by the local rigidity)
Sbend (ds, rc), CFbend (ds, rc, k)       ``SBend`` ``g_ref = 1 / rc`` (CFbend: ``Kn1 = k``)
ExactSbend (ds, phi [deg], B [T])        ``SBend`` ``g_ref = radians(phi) / ds`` (B = 0)
DipEdge (psi, rc, g, K2), g*K2 = 0       the adjacent bend's free pole face (same rc), else
                                         a thin ``Multipole`` ``Kn1L = -tan(psi) / rc``
Multipole (m, K_normal, K_skew)          thin ``Multipole`` ``Kn{m-1}L``, ``Ks{m-1}L``
ExactMultipole (k_normal = [0, 0, k2])   ``Sextupole`` ``Kn2``
Sol (ds, ks)                             ``Solenoid`` ``Ksol = ks``
ShortRF (V, freq, phase [deg])           ``RFCavity`` voltage ``V m c^2 / |q|`` [V], phase [rad]
Kicker (xkick, ykick, unit)              ``Kicker`` ``Kn0L = -xkick``, ``Ks0L = ykick`` (unit
                                         ``T-m``: divided by the signed rigidity)
Aperture                                 ``Marker`` with ``ApertureP`` (x/y limits, shape),
                                         ``ImpactXP`` (action, repeat_x/y, shift_odd_x)
                                         and a ``BodyShiftP`` that moves the aperture
                                         (``aperture_shifts_with_body``)
PolygonAperture                          ``ImpactX.PolygonAperture`` (vertices_x/y,
                                         min_radius2, the options of Aperture)
Marker, BeamMonitor                      ``Marker`` (a monitor only writes diagnostics)
ConstF, ChrAcc, ChrPlasmaLens,           the extension kind ``ImpactX.<class>`` with its
TaperedPL, NonlinearLens, ThinDipole,    fields in ``ImpactXP`` (``docs/scenario-format.md``;
Buncher, LinearMap, PRot, PlaneXYRot,    angles in rad, plasma lenses' and SoftSolenoid's
SoftQuadrupole, SoftSolenoid             unit 1 divided by the signed rigidity, LinearMap's R
                                         as 6 rows, the soft-edge profiles as their Fourier
                                         coefficients, also when built from sampled data)
=======================================  ======================================================

Misalignments ``dx``, ``dy`` [m] and ``rotation`` [deg] of a drift, quadrupole, solenoid or
sextupole are PALS ``BodyShiftP`` ``x_offset``, ``y_offset``, ``z_rot`` [rad] (ImpactX
``src/elements/mixin/alignment.H``); on any other element, and element apertures
(``aperture_x/y``), they are not translated: such an element is untranslatable.
:func:`element_settings` gives the integrator settings of an element (model tier, slices,
map steps, integration order) that a scenario states beside its lattice.
"""

from __future__ import annotations

import math
from typing import Any

from harness.io.model import ImportResult, Item, Translated, Untranslatable
from harness.model.reference_particle import ReferenceParticle

_DRIFTS = ("Drift", "ChrDrift", "ExactDrift")
_QUADS = ("Quad", "ChrQuad", "ExactQuad")
#: ImpactX kinds whose misalignment is a PALS BodyShiftP (the backends honour it there).
_SHIFTABLE = (*_DRIFTS, *_QUADS, "Sol", "ExactMultipole", "ConstF", "ChrAcc",
              "ChrPlasmaLens", "TaperedPL", "NonlinearLens", "ThinDipole", "Buncher",
              "LinearMap", "SoftQuadrupole", "SoftSolenoid", "Aperture", "PolygonAperture")
#: ImpactX elements whose ``to_dict`` takes ``in_degrees`` (their angles).
_DEGREES = ("ExactSbend", "ThinDipole", "PRot", "PlaneXYRot")
#: ImpactX elements written as extension kinds ``ImpactX.<class>``.
_EXTENSIONS = ("ConstF", "ChrAcc", "ChrPlasmaLens", "TaperedPL", "NonlinearLens",
               "ThinDipole", "Buncher", "LinearMap", "PRot", "PlaneXYRot", "SoftQuadrupole",
               "SoftSolenoid")
#: ImpactX's kick units of ``Kicker`` (``src/elements/Kicker.H``).
_KICK_UNITS = ("dimensionless", "T-m")


def _fields(element) -> dict[str, Any]:
    """The element's parameters (ImpactX ``to_dict``; angles in degrees)."""
    if type(element).__name__ in _DEGREES:
        return dict(element.to_dict(in_degrees=True))
    return dict(element.to_dict())


def _translate(element, index: int, reference: ReferenceParticle, notes: list[str]) -> Item:
    d = _fields(element)
    kind = str(d.get("type", type(element).__name__))
    name = str(d["name"]) if d.get("name") else f"{kind.lower()}_{index}"
    length = float(d.get("ds", 0.0))
    shift = _body_shift(d)
    misaligned = ("dx", "dy", "rotation") if kind not in _SHIFTABLE else ()
    apertures = ("aperture_x", "aperture_y") if kind not in ("Aperture",
                                                             "PolygonAperture") else ()
    for attribute in (*misaligned, *apertures):
        if float(d.get(attribute, 0.0) or 0.0):
            return Untranslatable(name, kind, length, f"{attribute} is not translated")
    item = _translate_kind(kind, name, length, d, reference, notes)
    if shift and isinstance(item, Translated) and kind == "Aperture":
        item.fields["ApertureP"]["aperture_shifts_with_body"] = True
    if shift and isinstance(item, Translated):
        return Translated(item.name, {**item.fields, "BodyShiftP": shift})
    return item


def _body_shift(d: dict[str, Any]) -> dict[str, float]:
    """PALS ``BodyShiftP`` of ImpactX's ``dx``, ``dy`` [m], ``rotation`` [deg -> rad]."""
    shift = {"x_offset": float(d.get("dx", 0.0) or 0.0),
             "y_offset": float(d.get("dy", 0.0) or 0.0),
             "z_rot": math.radians(float(d.get("rotation", 0.0) or 0.0))}
    return {k: v for k, v in shift.items() if v}


def _translate_kind(kind: str, name: str, length: float, d: dict[str, Any],
                    reference: ReferenceParticle, notes: list[str]) -> Item:
    """The PALS element of one aligned ImpactX element of kind ``kind``."""
    if kind in ("Marker", "BeamMonitor"):
        return Translated(name, {"kind": "Marker"})
    if kind == "Kicker":
        return _kicker(name, length, d, reference)
    if kind == "Aperture":
        return _aperture(name, d)
    if kind == "PolygonAperture":
        return Translated(name, {"kind": "ImpactX.PolygonAperture", "ImpactXP": {
            "vertices_x": [float(v) for v in d["vertices_x"]],
            "vertices_y": [float(v) for v in d["vertices_y"]],
            "min_radius2": float(d.get("min_radius2", 0.0) or 0.0), **_aperture_options(d)}})
    if kind in _DRIFTS:
        return Translated(name, {"kind": "Drift", "length": length})
    if kind in _QUADS:
        # unit 1: k is the gradient [T/m], which ImpactX divides by the local rigidity
        # (src/elements/ChrQuad.H, ExactQuad.H); PALS Bn1 (the scenario keeps the field
        # where the lattice changes the reference energy)
        key = "Bn1" if int(d.get("unit", 0)) == 1 else "Kn1"
        return Translated(name, {"kind": "Quadrupole", "length": length,
                                 "MagneticMultipoleP": {key: float(d["k"])}})
    if kind in ("Sbend", "CFbend", "ExactSbend"):
        if kind == "ExactSbend":
            if float(d.get("B", 0.0)):
                return Untranslatable(name, kind, length, "ExactSbend with a field B is not "
                                      "translated (give phi)")
            g_ref = math.radians(float(d["phi"])) / length
        elif not float(d["rc"]):
            return Untranslatable(name, kind, length, "a bend radius rc = 0 is not "
                                  "translated")
        else:
            g_ref = 1.0 / float(d["rc"])
        fields: dict[str, Any] = {"kind": "SBend", "length": length,
                                  "BendP": {"g_ref": g_ref, "e1": 0.0, "e2": 0.0}}
        if kind == "CFbend" and float(d["k"]):
            fields["MagneticMultipoleP"] = {"Kn1": float(d["k"])}
        return Translated(name, fields)
    if kind == "DipEdge":
        if float(d["g"]) * float(d["K2"]) or d.get("model", "linear") != "linear":
            return Untranslatable(name, kind, 0.0, "fringe field g*K2 != 0 (or a nonlinear "
                                  "edge model) needs the PALS BendP.edge_int fields, not read "
                                  "by trackbench yet")
        return Translated(name, {"kind": "Multipole", "length": 0.0, "MagneticMultipoleP": {
            "Kn1L": -math.tan(float(d["psi"])) / float(d["rc"])}})
    if kind == "Multipole":
        order = int(d["multipole"]) - 1
        strengths = {}
        if float(d["K_normal"]):
            strengths[f"Kn{order}L"] = float(d["K_normal"])
        if float(d["K_skew"]):
            strengths[f"Ks{order}L"] = float(d["K_skew"])
        if not strengths:
            notes.append(f"Multipole {name}: zero strength, written as a Marker")
            return Translated(name, {"kind": "Marker"})
        return Translated(name, {"kind": "Multipole", "length": 0.0,
                                 "MagneticMultipoleP": strengths})
    if kind == "ExactMultipole":
        normal = [float(v) for v in d["k_normal"]]
        skew = [float(v) for v in d["k_skew"]]
        if int(d.get("unit", 0)) == 0 and len(normal) == 3 and not any(skew) \
                and not normal[0] and not normal[1]:
            return Translated(name, {"kind": "Sextupole", "length": length,
                                     "MagneticMultipoleP": {"Kn2": normal[2]}})
        return Untranslatable(name, kind, length, "only a pure normal sextupole "
                              "ExactMultipole is translated")
    if kind == "Sol":
        return Translated(name, {"kind": "Solenoid", "length": length,
                                 "SolenoidP": {"Ksol": float(d["ks"])}})
    if kind in _EXTENSIONS:
        return _extension(kind, name, length, d, reference)
    if kind == "ShortRF":
        voltage = float(d["V"]) * reference.mass_eV / abs(reference.charge_qe)
        return Translated(name, {"kind": "RFCavity", "length": 0.0, "RFP": {
            "voltage": voltage, "frequency": float(d["freq"]),
            "phase": math.radians(float(d["phase"]))}})
    return Untranslatable(name, kind, length, f"ImpactX {kind} has no trackbench translation")


def _extension(kind: str, name: str, length: float, d: dict[str, Any],
               reference: ReferenceParticle) -> Item:
    """An ImpactX element PALS has no kind for: ``ImpactX.<kind>``, its own fields in
    ``ImpactXP`` (``harness.model.kinds.EXTENSION_SPECS``)."""
    own: dict[str, Any]
    if kind == "LinearMap":
        matrix = d["R"]
        own = {"R": [[float(matrix[i, j]) for j in range(1, 7)] for i in range(1, 7)]}
    elif kind in ("ChrPlasmaLens", "TaperedPL"):
        k = float(d["k"])
        if int(d.get("unit", 0)) == 1:
            k = k / reference.rigidity_Tm
        own = {"k": k} if kind == "ChrPlasmaLens" else {"kL": k, "taper": float(d["taper"])}
    elif kind == "ThinDipole":
        own = {"angle": math.radians(float(d["theta"])), "rc": float(d["rc"])}
    elif kind == "PRot":
        own = {"phi_in": math.radians(float(d["phi_in"])),
               "phi_out": math.radians(float(d["phi_out"]))}
    elif kind == "PlaneXYRot":
        own = {"angle": math.radians(float(d["angle"]))}
    elif kind in ("SoftQuadrupole", "SoftSolenoid"):
        # src/elements/SoftSol.H: unit 1 gives bscale in T (B_z/(B rho) with the rigidity)
        scale = "gscale" if kind == "SoftQuadrupole" else "bscale"
        value = float(d[scale])
        if int(d.get("unit", 0)) == 1:
            value = value / reference.rigidity_Tm
        own = {scale: value, "cos_coefficients": [float(v) for v in d["cos_coefficients"]],
               "sin_coefficients": [float(v) for v in d["sin_coefficients"]]}
    else:
        names = {"ConstF": ("kx", "ky", "kt"), "ChrAcc": ("ez", "bz"),
                 "NonlinearLens": ("knll", "cnll"), "Buncher": ("V", "k")}[kind]
        own = {key: float(d[key]) for key in names}
    fields: dict[str, Any] = {"kind": f"ImpactX.{kind}", "ImpactXP": own}
    if length:
        fields["length"] = length
    return Translated(name, fields)


def _kicker(name: str, length: float, d: dict[str, Any], reference: ReferenceParticle) -> Item:
    """ImpactX ``Kicker`` (``src/elements/Kicker.H``: px += xkick, py += ykick, in units of
    the reference momentum, or [T m] divided by the rigidity) as a PALS ``Kicker``."""
    unit = str(d.get("unit", "dimensionless"))
    if unit not in _KICK_UNITS or length:
        return Untranslatable(name, "Kicker", length, f"a thick Kicker or unit {unit!r} is "
                              "not translated")
    scale = 1.0 / reference.rigidity_Tm if unit == "T-m" else 1.0
    return Translated(name, {"kind": "Kicker", "length": 0.0, "MagneticMultipoleP": {
        "Kn0L": 0.0 - float(d["xkick"]) * scale, "Ks0L": 0.0 + float(d["ykick"]) * scale}})


def _aperture_options(d: dict[str, Any]) -> dict[str, Any]:
    """The ``ImpactXP`` aperture options of an ImpactX ``Aperture`` or ``PolygonAperture``
    (``src/elements/Aperture.H``): those that differ from ImpactX's defaults."""
    options: dict[str, Any] = {}
    if d.get("action", "transmit") != "transmit":
        options["action"] = str(d["action"])
    for key in ("repeat_x", "repeat_y"):
        if float(d.get(key, 0.0) or 0.0):
            options[key] = float(d[key])
    if d.get("shift_odd_x"):
        options["shift_odd_x"] = True
    return options


def _aperture(name: str, d: dict[str, Any]) -> Item:
    """ImpactX ``Aperture`` (``src/elements/Aperture.H``) as a PALS ``Marker`` with
    ``ApertureP`` (half widths ``aperture_x/y`` [m], shape) and ImpactX's options in
    ``ImpactXP``."""
    ax, ay = float(d["aperture_x"]), float(d["aperture_y"])
    shape = "ELLIPTICAL" if d.get("shape", "rectangular") == "elliptical" else "RECTANGULAR"
    fields: dict[str, Any] = {"kind": "Marker", "ApertureP": {
        "x_limits": [-ax, ax], "y_limits": [-ay, ay], "shape": shape}}
    options = _aperture_options(d)
    if options:
        fields["ImpactXP"] = options
    return Translated(name, fields)


def element_settings(element) -> dict[str, Any]:
    """The integrator settings of an ImpactX element: ``tier`` (ImpactX's model of the
    family: ``Exact*`` exact, ``Chr*`` paraxial, else linear), ``nslice`` [1], ``mapsteps``
    [1] and ``int_order`` (the order of the exact integrators, ``src/elements/ExactQuad.H``;
    None where the element has none)."""
    kind = type(element).__name__
    d = _fields(element)
    return {"tier": "exact" if kind.startswith("Exact") else
            "paraxial" if kind.startswith("Chr") else "linear",
            "nslice": int(getattr(element, "nslice", 1) or 1),
            "mapsteps": int(d["mapsteps"]) if "mapsteps" in d else None,
            "int_order": int(d["int_order"]) if "int_order" in d else None}


def merge_edges(items: list[Item], edges: dict[int, tuple[float, float]],
                notes: list[str]) -> list[Item]:
    """Fold thin edge kicks (index -> (psi, rc)) into the free pole face of the adjacent bend
    with the same radius (exit face of the bend before, else entry face of the bend after)."""
    out: list[Item | None] = list(items)
    for index, (psi, rc) in edges.items():
        for neighbour, face in ((index - 1, "e2"), (index + 1, "e1")):
            bend = out[neighbour] if 0 <= neighbour < len(out) else None
            if not (isinstance(bend, Translated) and bend.kind == "SBend"):
                continue
            bend_p = bend.fields["BendP"]
            if abs(bend_p["g_ref"] * rc - 1.0) > 1e-12 or bend_p[face]:
                continue
            out[neighbour] = Translated(bend.name, {**bend.fields,
                                                    "BendP": {**bend_p, face: psi}})
            notes.append(f"DipEdge {out[index].name} merged into {bend.name} as {face}")  # type: ignore[union-attr]
            out[index] = None
            break
    return [item for item in out if item is not None]


#: ImpactX elements that change the reference energy (``ChrUniformAcc.H``, ``ShortRF.H``).
_ACCELERATING = ("ChrAcc", "ShortRF")


def _per_start_rigidity(element) -> bool:
    """Whether the translation divided a field strength of ``element`` by the starting
    rigidity (plasma lenses and soft-edge elements with ``unit = 1``, a Kicker in T-m):
    exact only while the reference energy stays the starting one."""
    kind = type(element).__name__
    d = _fields(element)
    if kind == "Kicker":
        return str(d.get("unit", "dimensionless")) == "T-m"
    return kind in ("ChrPlasmaLens", "TaperedPL", "SoftQuadrupole", "SoftSolenoid") \
        and int(d.get("unit", 0)) == 1


def import_impactx(lattice: list, reference: ReferenceParticle,
                   source: str = "<ImpactX lattice>") -> ImportResult:
    """A list of ImpactX elements as translated elements (``reference``: the beam's reference
    particle, for field strengths given in SI units)."""
    notes: list[str] = []
    items: list[Item] = []
    edges: dict[int, tuple[float, float]] = {}
    tiers = set()
    accelerating = [type(e).__name__ for e in lattice if type(e).__name__ in _ACCELERATING]
    for index, element in enumerate(lattice):
        item = _translate(element, index, reference, notes)
        kind = type(element).__name__
        if accelerating and isinstance(item, Translated) and _per_start_rigidity(element):
            item = Untranslatable(item.name, kind, float(_fields(element).get("ds", 0.0)),
                                  f"a field strength (unit 1 / T-m) in a lattice whose "
                                  f"reference energy changes ({accelerating[0]}): ImpactX "
                                  "divides it by the local rigidity, which only a "
                                  "quadrupole's field (PALS Bn1) carries")
        if kind not in _EXTENSIONS:   # one model each, at every tier
            tiers.add("exact" if kind.startswith("Exact") else
                      "paraxial" if kind.startswith("Chr") else "linear")
        if kind == "DipEdge" and isinstance(item, Translated):
            d = _fields(element)
            edges[index] = (float(d["psi"]), float(d["rc"]))
        items.append(item)
    if len(tiers) > 1:
        notes.append(f"the lattice mixes ImpactX model tiers {sorted(tiers)}; the scenario's "
                     "model (and overrides) choose them")
    return ImportResult(merge_edges(items, edges, notes), source, notes)
