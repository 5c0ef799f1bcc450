"""A lattice built in Python as a list of ImpactX elements -> translated PALS elements.

ImpactX's element models (``impactx.elements``, sources ``src/elements/*.H``) map onto PALS
kinds; the model tier of an ImpactX element (``Drift``/``ChrDrift``/``ExactDrift``, ...) is
not a lattice property in PALS, it is the scenario's ``model`` (listed in the notes).

=======================================  ======================================================
ImpactX                                  PALS
=======================================  ======================================================
Drift, ChrDrift, ExactDrift (ds)         ``Drift`` length (ds < 0, the inverse element: length
                                         -ds with ``reverse: true``, also Quad, Sol, Sbend,
                                         ExactSbend, ExactMultipole)
Quad, ChrQuad, ExactQuad (ds, k, unit)   ``Quadrupole`` ``Kn1 = k`` (unit 1: the field
                                         ``Bn1 = k`` [T/m], divided by the local rigidity)
Sbend (ds, rc), CFbend (ds, rc, k)       ``SBend`` ``g_ref = 1 / rc`` (CFbend: ``Kn1 = k``);
                                         rc = 0 is ``g_ref = 0`` (ImpactX's drift map)
ExactSbend (ds, phi [deg], B = 0)        ``SBend`` ``g_ref = radians(phi) / ds``
ExactSbend (ds, phi [deg], B [T])        ``SBend`` ``bend_field_ref = B`` over the arc
                                         ``sign(ds) |rc phi|``, rc = (B rho) / B; in a
                                         lattice that accelerates, ``ImpactX.ExactSbend``
                                         (``ds``, ``phi`` in rad, ``B``)
DipEdge (psi, rc, g, K2), linear         the adjacent bend's free pole face (same rc and
                                         rotation; ``edge_int = g K2 / 2``), else, with
                                         g K2 = 0, a thin ``Multipole`` ``Kn1L = -tan(psi) /
                                         rc``, else ``ImpactX.DipEdge``
DipEdge, nonlinear model                 ``ImpactX.DipEdge`` (every parameter; ``nonlinear``
                                         and ``exit`` flags)
Multipole (m, K_normal, K_skew)          thin ``Multipole`` ``Kn{m-1}L``, ``Ks{m-1}L``
ExactMultipole (ds, k_normal, k_skew,    ``Sextupole`` (``Octupole``) with every component
unit)                                    when its top order is 2 (3) with a non-zero normal
                                         part, else the extension kind
                                         ``ImpactX.ExactMultipole`` (a pure quadrupole too:
                                         PALS ``Quadrupole`` is ImpactX's ``ExactQuad``, a
                                         different integrator); unit 1 divided by the
                                         signed rigidity; all zero: ``Drift``
SpinMap (v, A), ds = 0                   ``ImpactX.SpinMap`` (``v`` 3 numbers, ``A`` 3 rows)
ExactCFbend (ds, k_normal = [g, Kn1,     ``SBend`` ``g_ref = g`` with ``Kn1..Kn4``, ``Ks1..Ks4``
..., Kn4], k_skew = [0, Ks1, ...])       (ImpactX's ``ExactCFbend`` at the exact tier; without
                                         components ``ExactSbend``, noted); g = 0, a skew
                                         k_skew[0] or orders above 4 are untranslatable
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
Buncher, LinearMap, PRot, PlaneXYRot,    angles in rad, plasma lenses', SoftSolenoid's and
SoftQuadrupole, SoftSolenoid, QuadEdge,  QuadEdge's unit 1 divided by the signed rigidity,
RFCavity                                 LinearMap's R as 6 rows, the soft-edge and RF
                                         cavity profiles as their Fourier coefficients,
                                         also when built from sampled data, RFCavity's
                                         phase in rad, QuadEdge's flag 'entry' / 'exit')
=======================================  ======================================================

Misalignments ``dx``, ``dy`` [m] and ``rotation`` [deg] of a drift, quadrupole, solenoid or
sextupole are PALS ``BodyShiftP`` ``x_offset``, ``y_offset``, ``z_rot`` [rad] (ImpactX
``src/elements/mixin/alignment.H``). The ``rotation`` of a bend is its ``BendP.tilt_ref``
(the rotation of the body and both pole faces about s, as the ImpactX adapter builds it);
a ``DipEdge`` with a rotation joins only a bend of the same rotation; on its own it is
shifted like the elements above. On any other element they are not translated: such an
element is untranslatable. The pipe aperture ``aperture_x``, ``aperture_y`` [m] of a thick
element with ImpactX's ``PipeAperture`` mixin (drifts, quadrupoles, bends, ``Sol``, the
sextupole ``ExactMultipole``, ``ConstF``, ``ChrAcc``, ``ChrPlasmaLens``, the soft-edge
elements; ``src/elements/mixin/pipeaperture.H``) is a PALS ``ApertureP`` on the element
(``location: EVERYWHERE``, ``shape: ELLIPTICAL``, ``aperture_shifts_with_body`` when the
element is shifted); with one half-width 0 ImpactX applies none, and none is written (a
note says so). On any other element it is untranslatable.
:func:`element_settings` gives the integrator settings of an element (model tier, slices,
map steps, integration order) that a scenario states beside its lattice.
"""

from __future__ import annotations

import math
from typing import Any

from harness.io.model import ImportResult, Item, Translated, Untranslatable
from harness.model.kinds import SPECS
from harness.model.reference_particle import ReferenceParticle

_DRIFTS = ("Drift", "ChrDrift", "ExactDrift")
_QUADS = ("Quad", "ChrQuad", "ExactQuad")
#: ImpactX kinds whose misalignment is a PALS BodyShiftP (the backends honour it there).
_SHIFTABLE = (*_DRIFTS, *_QUADS, "Sol", "ExactMultipole", "ConstF", "ChrAcc",
              "ChrPlasmaLens", "TaperedPL", "NonlinearLens", "ThinDipole", "Buncher",
              "LinearMap", "SoftQuadrupole", "SoftSolenoid", "Aperture", "PolygonAperture",
              "DipEdge", "QuadEdge", "RFCavity")
#: ImpactX kinds whose pipe aperture (``aperture_x``, ``aperture_y``) is a PALS ``ApertureP``
#: on the translated element (their ImpactX elements have the ``PipeAperture`` mixin).
_PIPED = (*_DRIFTS, *_QUADS, "Sbend", "CFbend", "ExactSbend", "Sol", "ExactMultipole",
          "ConstF", "ChrAcc", "ChrPlasmaLens", "SoftQuadrupole", "SoftSolenoid", "RFCavity")
#: ImpactX elements whose ``to_dict`` takes ``in_degrees`` (their angles).
_DEGREES = ("ExactSbend", "ThinDipole", "PRot", "PlaneXYRot")
#: ImpactX elements written as extension kinds ``ImpactX.<class>``.
_EXTENSIONS = ("ConstF", "ChrAcc", "ChrPlasmaLens", "TaperedPL", "NonlinearLens",
               "ThinDipole", "Buncher", "LinearMap", "PRot", "PlaneXYRot", "SoftQuadrupole",
               "SoftSolenoid", "QuadEdge", "RFCavity")
#: ImpactX bends, whose ``rotation`` is translated (their ``tilt_ref``).
_ROTATED = ("Sbend", "CFbend", "ExactSbend")
#: ImpactX elements that change the reference particle's energy (``ChrAcc.H``,
#: ``ShortRF.H``, ``RFCavity.H``).
_ACCELERATING = ("ChrAcc", "ShortRF", "RFCavity")
#: Settings that keep a pole face from joining a bend (the bend has no field for them).
_ELSEWHERE = ("dx", "dy", "aperture_x", "aperture_y")
#: ImpactX's kick units of ``Kicker`` (``src/elements/Kicker.H``).
_KICK_UNITS = ("dimensionless", "T-m")


def _fields(element) -> dict[str, Any]:
    """The element's parameters (ImpactX ``to_dict``; angles in degrees)."""
    if type(element).__name__ in _DEGREES:
        return dict(element.to_dict(in_degrees=True))
    return dict(element.to_dict())


def _translate(element, index: int, reference: ReferenceParticle, notes: list[str],
               accelerating: bool = False) -> Item:
    d = _fields(element)
    kind = str(d.get("type", type(element).__name__))
    name = str(d["name"]) if d.get("name") else f"{kind.lower()}_{index}"
    length = float(d.get("ds", 0.0))
    shift = _body_shift(d)
    misaligned = (("dx", "dy") if kind in _ROTATED else
                  ("dx", "dy", "rotation") if kind not in _SHIFTABLE else ())
    apertures = ("aperture_x", "aperture_y") if kind not in ("Aperture", "PolygonAperture",
                                                             *_PIPED) else ()
    for attribute in (*misaligned, *apertures):
        if float(d.get(attribute, 0.0) or 0.0):
            return Untranslatable(name, kind, length, f"{attribute} is not translated")
    if kind in ("Sbend", "CFbend", "ExactSbend"):
        item = _bend(kind, name, length, d, reference, notes, accelerating)
        shift = {}  # a bend's rotation is its tilt_ref (_bend); dx, dy are refused above
    else:
        item = _translate_kind(kind, name, length, d, reference, notes)
    if shift and isinstance(item, Translated) and kind == "Aperture":
        item.fields["ApertureP"]["aperture_shifts_with_body"] = True
    if length < 0.0 and isinstance(item, Translated):
        # ImpactX tracks a negative ds as the element's inverse; PALS lengths are >= 0, so
        # the scenario states it as ``reverse: true`` (harness.model.kinds, ``reversible``)
        spec = SPECS.get(str(item.fields["kind"]))
        if spec is None or not spec.reversible:
            return Untranslatable(name, kind, length, "a negative length (ImpactX's inverse "
                                  f"element) is stated as reverse: true only on "
                                  f"{sorted(k for k, s in SPECS.items() if s.reversible)}")
        item = Translated(item.name, {**item.fields, "length": -length, "reverse": True})
    if kind in _PIPED and isinstance(item, Translated):
        item = _with_pipe(item, d, bool(shift), notes)
    if shift and isinstance(item, Translated):
        return Translated(item.name, {**item.fields, "BodyShiftP": shift})
    return item


def _with_pipe(item: Translated, d: dict[str, Any], shifted: bool, notes: list[str]
               ) -> Translated:
    """``item`` with the element's pipe aperture (``src/elements/mixin/pipeaperture.H``:
    lost where (x/a_x)^2 + (y/a_y)^2 > 1 after each slice, in the element's frame) as a PALS
    ``ApertureP`` (``harness.model.lattice.pipe_aperture``); ImpactX skips an aperture with
    a half-width <= 0, so then none is written."""
    ax = float(d.get("aperture_x", 0.0) or 0.0)
    ay = float(d.get("aperture_y", 0.0) or 0.0)
    if ax <= 0.0 and ay <= 0.0:
        return item
    if ax <= 0.0 or ay <= 0.0:
        notes.append(f"{item.name}: aperture_x {ax:g}, aperture_y {ay:g}: ImpactX applies "
                     "no pipe aperture with a half-width <= 0, none written")
        return item
    aperture: dict[str, Any] = {"x_limits": [-ax, ax], "y_limits": [-ay, ay],
                                "shape": "ELLIPTICAL", "location": "EVERYWHERE"}
    if shifted:
        aperture["aperture_shifts_with_body"] = True
    return Translated(item.name, {**item.fields, "ApertureP": aperture})


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
    if kind == "DipEdge":
        return _dipedge(name, d)
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
        return _exact_multipole(name, length, d, reference, notes)
    if kind == "ExactCFbend":
        return _exact_cfbend(name, length, d, reference, notes)
    if kind == "SpinMap":
        if length:
            return Untranslatable(name, kind, length, "a SpinMap with a bookkeeping length "
                                  "ds is not translated (ImpactX does not move the "
                                  "reference particle through it)")
        return Translated(name, {"kind": "ImpactX.SpinMap", "ImpactXP": {
            "v": [float(d["v"][i, 1]) for i in range(1, 4)],
            "A": [[float(d["A"][i, j]) for j in range(1, 7)] for i in range(1, 4)]}})
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


def _exact_multipole(name: str, length: float, d: dict[str, Any],
                     reference: ReferenceParticle, notes: list[str]) -> Item:
    """ImpactX ``ExactMultipole`` (``src/elements/ExactMultipole.H``: ``k_normal[N]``,
    ``k_skew[N]`` per metre of order N, unit 1 in T/m^N divided by the rigidity): the PALS
    ``Sextupole``/``Octupole`` of every component when the top order is 2/3 with a non-zero
    normal part (both run ImpactX's ExactMultipole), else ``ImpactX.ExactMultipole``."""
    scale = 1.0 / reference.rigidity_Tm if int(d.get("unit", 0)) == 1 else 1.0
    normal = [float(v) * scale for v in d["k_normal"]]
    skew = [float(v) * scale for v in d["k_skew"]]
    orders = [n for n in range(len(normal)) if normal[n] or skew[n]]
    if not orders:
        notes.append(f"ExactMultipole {name}: zero strength, written as a Drift")
        return Translated(name, {"kind": "Drift", "length": length})
    top = orders[-1]
    main = {2: "Sextupole", 3: "Octupole"}.get(top)
    if main is not None and normal[top]:
        poles = {f"K{letter}{n}": values[n] for n in orders
                 for letter, values in (("n", normal), ("s", skew)) if values[n]}
        return Translated(name, {"kind": main, "length": length,
                                 "MagneticMultipoleP": poles})
    return Translated(name, {"kind": "ImpactX.ExactMultipole", "length": length,
                             "ImpactXP": {"k_normal": normal[:top + 1],
                                          "k_skew": skew[:top + 1]}})


def _exact_cfbend(name: str, length: float, d: dict[str, Any],
                  reference: ReferenceParticle, notes: list[str]) -> Item:
    """ImpactX ``ExactCFbend`` (``src/elements/ExactCFbend.H``: curvature ``k_normal[0]``
    [1/m], curvilinear multipoles of orders 1 to 4 per metre, unit 1 in T/m^N divided by
    the rigidity) as a PALS ``SBend`` with ``g_ref`` and the components."""
    scale = 1.0 / reference.rigidity_Tm if int(d.get("unit", 0)) == 1 else 1.0
    normal = [float(v) * scale for v in d["k_normal"]]
    skew = [float(v) * scale for v in d["k_skew"]]
    if not normal or not normal[0]:
        return Untranslatable(name, "ExactCFbend", length, "a zero curvature k_normal[0] "
                              "is not translated (ImpactX's map divides by the radius)")
    if skew[0]:
        return Untranslatable(name, "ExactCFbend", length, "a skew dipole k_skew[0] is not "
                              "translated (ImpactX's orbit push ignores it)")
    high = [n for n in range(5, len(normal)) if normal[n] or skew[n]]
    if high:
        return Untranslatable(name, "ExactCFbend", length, f"order {high[0]} is not "
                              "translated (ImpactX's ExactCFbend kicks orders 1 to 4 only)")
    poles = {f"K{letter}{n}": values[n] for n in range(1, len(normal))
             for letter, values in (("n", normal), ("s", skew)) if values[n]}
    fields: dict[str, Any] = {"kind": "SBend", "length": length,
                              "BendP": {"g_ref": normal[0], "e1": 0.0, "e2": 0.0}}
    if poles:
        fields["MagneticMultipoleP"] = poles
    else:
        notes.append(f"ExactCFbend {name}: no multipole component, written as an SBend "
                     "(ImpactX ExactSbend at the exact tier: the same exact bend, closed "
                     "form instead of integrated)")
    return Translated(name, fields)


def _extension(kind: str, name: str, length: float, d: dict[str, Any],
               reference: ReferenceParticle) -> Item:
    """An ImpactX element PALS has no kind for: ``ImpactX.<kind>``, its own fields in
    ``ImpactXP`` (``harness.model.kinds.EXTENSION_SPECS``)."""
    own: dict[str, Any]
    if kind == "LinearMap":
        matrix = d["R"]
        own = {"R": [[float(matrix[i, j]) for j in range(1, 7)] for i in range(1, 7)]}
    elif kind == "QuadEdge":
        k = float(d["k"])
        if int(d.get("unit", 0)) == 1:
            k = k / reference.rigidity_Tm
        own = {"k": k, "flag": str(d["flag"])}
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
    elif kind == "RFCavity":
        # src/elements/RFCavity.H: escale [1/m], freq [Hz], phase [deg]; the profile's
        # coefficients (the script's z/field_on_axis/ncoef are already coefficients here)
        own = {"escale": float(d["escale"]), "freq": float(d["freq"]),
               "phase": math.radians(float(d["phase"])),
               "cos_coefficients": [float(v) for v in d["cos_coefficients"]],
               "sin_coefficients": [float(v) for v in d["sin_coefficients"]]}
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


def _rotation(d: dict[str, Any]) -> float:
    """ImpactX's ``rotation`` [deg] of an element in rad (0 when unset)."""
    return math.radians(float(d.get("rotation", 0.0) or 0.0))


def _bend(kind: str, name: str, length: float, d: dict[str, Any],
          reference: ReferenceParticle, notes: list[str], accelerating: bool) -> Item:
    """ImpactX ``Sbend``/``CFbend`` (``src/elements/Sbend.H``, ``CFbend.H``: rc = 0 is the
    drift map, every entry taking its h = 0 branch) or ``ExactSbend`` (``ExactSbend.H``)
    as a PALS ``SBend``; the element's ``rotation`` is its ``tilt_ref``.

    ``ExactSbend`` with a field B != 0 bends on the radius rc = (B rho) / B (B rho the
    reference particle's rigidity, signed with its charge) through the angle
    ``sign(ds rc) |phi|`` (``compute_constants``); its map never uses ``ds`` otherwise, so
    the arc it tracks is ``sign(ds) |rc phi|``, stated as the length with
    ``bend_field_ref = B`` (the PALS reader gives angle = B length / (B rho), the same
    angle). A ``ds`` that differs from that arc is noted. In a lattice that changes the
    reference energy (``accelerating``: ChrAcc, ShortRF, RFCavity) the rigidity at the bend
    is not the beam's, so the bend is the extension kind ``ImpactX.ExactSbend`` with its
    ``ds``, ``phi`` and ``B``, the radius taken at the bend as ImpactX does. A negative
    ``ds`` (ImpactX's inverse element) keeps its sign here: the caller states it as
    ``reverse: true``.
    """
    if length == 0.0:
        return Untranslatable(name, kind, length, "a bend of length 0 is not a PALS bend")
    bend: dict[str, Any] = {"e1": 0.0, "e2": 0.0}
    field = float(d.get("B", 0.0) or 0.0) if kind == "ExactSbend" else 0.0
    if field and not float(d["phi"]):
        return Untranslatable(name, kind, length, "an ExactSbend with a field B and phi = 0 "
                              "bends by 0 on a radius (B rho)/B: no PALS bend")
    if field and accelerating:
        own: dict[str, Any] = {"phi": math.radians(float(d["phi"])), "B": field}
        fields_b: dict[str, Any] = {"kind": "ImpactX.ExactSbend", "length": length,
                                    "ImpactXP": own}
        if _rotation(d):
            fields_b["BodyShiftP"] = {"z_rot": _rotation(d)}
        return Translated(name, fields_b)
    if field:
        rc = reference.rigidity_Tm / field
        arc = math.copysign(abs(rc * math.radians(float(d["phi"]))), length)
        if abs(arc - length) > 1e-9 * abs(length):
            notes.append(f"ExactSbend {name}: with B = {field:g} T ImpactX's map bends "
                         f"{abs(float(d['phi'])):g} deg on rc = {rc:.12g} m, an arc of "
                         f"{arc:.12g} m (ds = {length:g} m is not used by the map); stated "
                         "as that arc")
        length = arc
        bend["bend_field_ref"] = field
    elif kind == "ExactSbend":
        bend["g_ref"] = math.radians(float(d["phi"])) / length
    elif not float(d["rc"]):
        notes.append(f"{kind} {name}: rc = 0 is ImpactX's drift map ({kind}.H), stated as "
                     "g_ref = 0")
        bend["g_ref"] = 0.0
    else:
        bend["g_ref"] = 1.0 / float(d["rc"])
    tilt = _rotation(d)
    if tilt:
        bend["tilt_ref"] = tilt
    fields: dict[str, Any] = {"kind": "SBend", "length": length,
                              "BendP": {key: bend[key] for key in sorted(bend, key=_bend_order)}}
    if kind == "CFbend" and float(d["k"]):
        fields["MagneticMultipoleP"] = {"Kn1": float(d["k"])}
    return Translated(name, fields)


def _bend_order(key: str) -> int:
    """BendP keys in the order they are written (strength first)."""
    order = ("g_ref", "bend_field_ref", "e1", "e2", "edge_int1", "edge_int2", "tilt_ref")
    return order.index(key)


def _dipedge(name: str, d: dict[str, Any]) -> Item:
    """ImpactX ``DipEdge`` (``src/elements/DipEdge.H``) on its own (:func:`merge_edges`
    first folds a linear one into the adjacent bend's pole face): the linear model without
    fringe term (g K2 = 0; px += tan(psi)/rc x, py -= tan(psi)/rc y) is a thin quadrupole
    ``Kn1L = -tan(psi)/rc``; any other is the extension kind ``ImpactX.DipEdge`` with all
    its parameters (the model and the location as the flags ``nonlinear`` and ``exit``).
    ``modify_ref_part`` (the nonlinear model moving the reference orbit) is not
    translated."""
    if not float(d["rc"]):
        return Untranslatable(name, "DipEdge", 0.0, "rc = 0 (ImpactX's edge kick is "
                              "tan(psi)/rc)")
    if d.get("modify_ref_part"):
        return Untranslatable(name, "DipEdge", 0.0, "modify_ref_part (the edge moving the "
                              "reference particle) is not translated")
    model = str(d.get("model", "linear"))
    if model == "linear" and not float(d["g"]) * float(d["K2"]):
        return Translated(name, {"kind": "Multipole", "length": 0.0, "MagneticMultipoleP": {
            "Kn1L": -math.tan(float(d["psi"])) / float(d["rc"])}})
    own: dict[str, Any] = {key: float(d[key]) for key in ("psi", "rc", "g", "R", "K0", "K1",
                                                          "K2", "K3", "K4", "K5", "K6")}
    own["nonlinear"] = 1 if model == "nonlinear" else 0
    own["exit"] = 1 if str(d.get("location", "entry")) == "exit" else 0
    return Translated(name, {"kind": "ImpactX.DipEdge", "ImpactXP": own})


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


#: A pole face to fold into a bend: (psi [rad], rc [m], g K2 [m], rotation [rad]).
Edge = tuple[float, float, float, float]


def merge_edges(items: list[Item], edges: dict[int, Edge], notes: list[str],
                rigidity_Tm: float = math.inf) -> list[Item]:
    """Fold pole faces (index -> :data:`Edge`) of ImpactX's linear ``DipEdge`` into the free
    face of the adjacent bend with the same radius and rotation (exit face of the bend
    before, else entry face of the bend after): ``e1``/``e2 = psi``, ``edge_int = g K2 / 2``
    (the ImpactX adapter builds the face back as ``DipEdge(psi, rc, g = 2 edge_int,
    K2 = 1)``; the linear map depends on g K2 only, ``DipEdge.H``). An edge left over is
    the item it was translated to, or untranslatable when it has none (``rigidity_Tm``:
    the signed rigidity [T m] that turns a bend's ``bend_field_ref`` into its curvature)."""
    out: list[Item | None] = list(items)
    taken: set[tuple[int, str]] = set()
    for index, (psi, rc, gap_k2, tilt) in edges.items():
        for neighbour, face in ((index - 1, "2"), (index + 1, "1")):
            bend = out[neighbour] if 0 <= neighbour < len(out) else None
            if not (isinstance(bend, Translated) and bend.kind == "SBend"):
                continue
            bend_p = bend.fields["BendP"]
            g_ref = (bend_p["g_ref"] if "g_ref" in bend_p else
                     bend_p["bend_field_ref"] / rigidity_Tm)
            if (abs(g_ref * rc - 1.0) > 1e-12 or (neighbour, face) in taken
                    or bend_p.get("tilt_ref", 0.0) != tilt):
                continue
            merged = {**bend_p, f"e{face}": psi}
            if gap_k2:
                merged[f"edge_int{face}"] = gap_k2 / 2.0
            merged = {key: merged[key] for key in sorted(merged, key=_bend_order)}
            out[neighbour] = Translated(bend.name, {**bend.fields, "BendP": merged})
            taken.add((neighbour, face))
            notes.append(f"DipEdge {out[index].name} merged into {bend.name} as e{face}"  # type: ignore[union-attr]
                         + (f" with edge_int{face}" if gap_k2 else ""))
            out[index] = None
            break
    return [item for item in out if item is not None]


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
    edges: dict[int, Edge] = {}
    tiers = set()
    accelerating = [type(e).__name__ for e in lattice if type(e).__name__ in _ACCELERATING]
    for index, element in enumerate(lattice):
        item = _translate(element, index, reference, notes, bool(accelerating))
        kind = type(element).__name__
        if accelerating and isinstance(item, Translated) and _per_start_rigidity(element):
            item = Untranslatable(item.name, kind, float(_fields(element).get("ds", 0.0)),
                                  f"a field strength (unit 1 / T-m) in a lattice whose "
                                  f"reference energy changes ({accelerating[0]}): ImpactX "
                                  "divides it by the local rigidity, which only a "
                                  "quadrupole's field (PALS Bn1) carries")
        if kind not in (*_EXTENSIONS, "SpinMap"):   # one model each, at every tier
            tiers.add("exact" if kind.startswith("Exact") else
                      "paraxial" if kind.startswith("Chr") else "linear")
        d = _fields(element)
        if kind == "DipEdge" and d.get("model", "linear") == "linear" and float(d["rc"]) \
                and not any(float(d.get(a, 0.0) or 0.0) for a in _ELSEWHERE):
            edges[index] = (float(d["psi"]), float(d["rc"]), float(d["g"]) * float(d["K2"]),
                            _rotation(d))
        items.append(item)
    if len(tiers) > 1:
        notes.append(f"the lattice mixes ImpactX model tiers {sorted(tiers)}; the scenario's "
                     "model (and overrides) choose them")
    return ImportResult(merge_edges(items, edges, notes, reference.rigidity_Tm), source,
                        notes)
