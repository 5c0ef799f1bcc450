"""One declaration per element kind: :class:`KindSpec`, the single source of every table
about kinds.

A kind's spec states its model tiers (those ImpactX implements for the family, ImpactX
``impactx/element_models.py``), the fields of :attr:`harness.model.lattice.Element.params`
it carries (unit and meaning; those always present are ``required``), where its own PALS
fields go, how the PALS reader builds its fields (``reader``), whether a strength on it is
per metre (refused at length 0) and a minimal valid PALS element (``example``, used by the
tests and the documentation). :mod:`harness.model.vocabulary` derives ``ELEMENT_TIERS``,
``ELEMENT_FIELDS`` and ``REQUIRED_FIELDS`` from :data:`KIND_SPECS`; the PALS reader
(:mod:`harness.model.lattice`) its per-kind field dispositions and readers; the
field-coverage test its elements; ``docs/architecture.md`` the table of
:func:`markdown_table`.

Adding a kind starts here: one :class:`KindSpec` in :data:`KIND_SPECS` (see the recipe in
``docs/architecture.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: Model tiers, least to most faithful (ImpactX ``element_models.MODEL_TIERS``).
MODEL_TIERS: tuple[str, ...] = ("linear", "paraxial", "exact")


@dataclass(frozen=True)
class FieldInfo:
    """One field of :attr:`harness.model.lattice.Element.params`: its unit and meaning."""

    unit: str
    meaning: str


@dataclass(frozen=True)
class Refused:
    """A PALS field the reader refuses when it is set (differs from its default)."""

    reason: str


#: Where a PALS field goes: an element field name, None (no effect on tracking) or refused.
Disposition = str | None | Refused

ALIGNMENT: Mapping[str, FieldInfo] = MappingProxyType({
    "x_offset": FieldInfo("m", "horizontal offset of the element body (PALS BodyShiftP; "
                          "ImpactX dx)"),
    "y_offset": FieldInfo("m", "vertical offset of the element body (PALS BodyShiftP; "
                          "ImpactX dy)"),
    "z_rot": FieldInfo("rad", "rotation of the element body about s (PALS BodyShiftP; "
                       "ImpactX rotation, sign of MAD-X TILT)"),
})

#: Multipole fields (order N = 0, 1, 2, ...): ``KnN``/``KsN`` per metre of a thick element
#: [1/m^(N+1)], ``KnNL``/``KsNL`` integrated [1/m^N] on thin ones. Field strengths (``BnN``
#: [T/m^N]) are converted with the beam's rigidity and ``tiltN`` is folded into the two
#: components, so params hold normalised, untilted strengths only.
MULTIPOLE_PATTERNS: Mapping[str, FieldInfo] = MappingProxyType({
    "Kn*": FieldInfo("1/m^(N+1)", "normal multipole of order N per metre (MAD-X KN/L)"),
    "Ks*": FieldInfo("1/m^(N+1)", "skew multipole of order N per metre (MAD-X KS/L)"),
})

THIN_PATTERNS: Mapping[str, FieldInfo] = MappingProxyType({
    "Kn*L": FieldInfo("1/m^N", "integrated normal strength of order N (MAD-X KNL)"),
    "Ks*L": FieldInfo("1/m^N", "integrated skew strength of order N (MAD-X KSL)"),
})

_LENGTH = FieldInfo("m", "length")

#: ImpactX's aperture options beyond PALS's ``ApertureP`` (``src/elements/Aperture.H``,
#: ``src/elements/PolygonAperture.H``): present only when set (non-zero).
APERTURE_OPTIONS: Mapping[str, FieldInfo] = MappingProxyType({
    "absorb": FieldInfo("1", "1: lose the particles inside the boundary (ImpactX action "
                        "'absorb'); absent: lose those outside ('transmit')"),
    "repeat_x": FieldInfo("m", "horizontal period of a repeated mask (ImpactX repeat_x; "
                          "absent: no repetition)"),
    "repeat_y": FieldInfo("m", "vertical period of a repeated mask (ImpactX repeat_y)"),
    "shift_odd_x": FieldInfo("1", "1: every odd row of periods shifted by repeat_x / 2 "
                             "(hexagonal patterns; needs repeat_y)"),
})

#: ImpactX's pipe aperture of a thick element (``src/elements/mixin/pipeaperture.H``,
#: ``aperture_x``, ``aperture_y``): a particle is lost where (x/a_x)^2 + (y/a_y)^2 > 1 in
#: the element's own (shifted, rotated) frame at the exit of each of its ``nslice`` slices.
#: Written as a PALS ``ApertureP`` (``location: EVERYWHERE``, ``shape: ELLIPTICAL``) on
#: the element; present only when set.
PIPE_APERTURE: Mapping[str, FieldInfo] = MappingProxyType({
    "aperture_x": FieldInfo("m", "horizontal half-axis of the elliptical pipe aperture "
                            "(PALS ApertureP.x_limits on a thick element, location "
                            "EVERYWHERE; ImpactX aperture_x)"),
    "aperture_y": FieldInfo("m", "vertical half-axis of the pipe aperture (ApertureP."
                            "y_limits; ImpactX aperture_y)"),
})


@dataclass(frozen=True)
class KindSpec:
    """Everything the project declares about one element kind.

    Attributes:
        kind: the PALS ``kind`` (``Aperture`` is the harness's own: a PALS ``ApertureP``
            on a Marker or Instrument).
        tiers: model tiers ImpactX implements for the family (thin or tier-independent
            maps list all three); a requested tier is a floor (ImpactX's ``select_model``).
        fields: element field (name or ``fnmatch`` pattern such as ``Kn*L``) -> unit and
            meaning.
        required: fields every element of the kind carries; the others appear only when
            the lattice sets them (non-zero).
        pals_fields: this kind's own PALS fields, ``Group.field`` or a whole ``Group`` ->
            the element field, None (no effect) or :class:`Refused` (the fields shared by
            every kind are :data:`harness.model.lattice.PALS_FIELDS`).
        reader: how :mod:`harness.model.lattice` reads the kind's PALS fields: ``drift``,
            ``thick_multipole`` (with ``main_order``), ``bend``, ``thin_multipole``,
            ``solenoid``, ``rf``, ``marker``, ``kicker``, ``extension`` (a kind PALS does
            not have, :data:`EXTENSION_NAMESPACE`); empty for ``Aperture``.
        main_order: the required normal multipole order N of a ``thick_multipole`` kind
            (``KnN`` per metre).
        main_name: words for that strength, for messages (``gradient``).
        thick: whether its strengths are per metre, so a zero length is refused with a
            strength set (ImpactX's map is then the identity).
        integrated: whether ImpactX tracks it with a symplectic integrator at the exact
            tier (``mapsteps``, ``int_order`` act on it).
        linear_map: whether its map at the linear tier is an affine map of the six
            coordinates for any pt (ImpactX's linear elements: no square root of the particle
            energy is taken), so that a beam of probes (``beam.linear_probes``) may cross it.
        accelerates: whether its map changes the reference energy (ImpactX ``ShortRF.H``,
            ``ChrUniformAcc.H`` push ``refpart.pt``): downstream, a strength per rigidity
            is taken against the local reference (see :data:`FIELD_RIGIDITY`).
        example: a minimal valid PALS element of the kind, without ``kind``.
        reversible: whether ``reverse: true`` may state the inverse element: ImpactX tracks
            the kind with a negative length ``ds`` through its usual formulas, and that is
            the element's inverse (``src/elements/Drift.H``, ``ChrDrift.H``,
            ``ExactDrift.H``, ``Quad.H``, ``ChrQuad.H``, ``ExactQuad.H``, ``Sol.H``,
            ``Sbend.H``, ``CFbend.H``, ``ExactSbend.H``, ``ExactCFbend.H``,
            ``ExactMultipole.H``; the elements' ``reverse()`` is ds -> -ds; an integrated
            map's step is a symmetric composition of exact flows, M(-tau) = M(tau)^-1;
            ``ExactSbend`` given its field B bends by sign(ds rc) |phi|). The element's
            ``length`` (and a bend's ``angle``, the curvature kept) then carries the sign:
            the backends that declare the kind in ``reversible_kinds`` track it so, every
            other refuses the element by name. A reversed bend has no pole faces (ImpactX's
            DipEdges are not inverted).
        pipe_aperture: whether the element takes ImpactX's pipe aperture
            (:data:`PIPE_APERTURE`: its ImpactX elements have the ``PipeAperture`` mixin).
    """

    kind: str
    tiers: tuple[str, ...]
    fields: Mapping[str, FieldInfo]
    required: frozenset[str]
    pals_fields: Mapping[str, Disposition] = field(default_factory=dict)
    reader: str = ""
    main_order: int | None = None
    main_name: str = ""
    thick: bool = False
    integrated: bool = False
    linear_map: bool = False
    accelerates: bool = False
    example: Mapping[str, Any] = field(default_factory=dict)
    reversible: bool = False
    pipe_aperture: bool = False

    def unit_of(self, name: str) -> str:
        """Unit of the (exact) field ``name`` of this kind, or ``""``."""
        info = self.fields.get(name)
        return info.unit if info is not None else ""


#: The element field of a Quadrupole whose gradient is a field (PALS ``Bn1``/``Bs1`` [T/m])
#: in a lattice with an element that :attr:`~KindSpec.accelerates`: the signed rigidity
#: B rho [T m] of the beam at the start of the lattice, that ``Kn1``/``Ks1`` are normalised
#: with. The field (Kn1, Ks1) x field_rigidity is held; where the element sits the strength
#: is that field / the local B rho (ImpactX ``unit = 1``, ``src/elements/ChrQuad.H``
#: ``m_g = m_k / refpart.rigidity_Tm()``). Absent, Kn1 is normalised to the local reference.
FIELD_RIGIDITY = "field_rigidity"

_FIELD_RIGIDITY_INFO = FieldInfo("T m", "B rho at the start that Kn1/Ks1 are normalised with "
                                 "when given as the field Bn1/Bs1 in a lattice that changes "
                                 "the reference energy: the field is held, the strength is "
                                 "field / local B rho (ImpactX unit 1)")


def _thick_multipole(kind: str, order: int, name: str, unit: str, mad: str,
                     tiers: tuple[str, ...], example: float, skew: str = "",
                     reversible: bool = False,
                     extra: Mapping[str, FieldInfo] | None = None,
                     linear_map: bool = False) -> KindSpec:
    """A kind whose body is a thick multipole with the normal component of ``order``
    required (Quadrupole, Sextupole, Octupole): every other component is optional
    (``skew``: the MAD-X name of the skew component, listed by name; ``extra``: further
    optional fields)."""
    main = f"Kn{order}"
    named = {f"Ks{order}": FieldInfo(unit, f"skew {name} (MAD-X {skew})")} if skew else {}
    return KindSpec(
        kind, tiers,
        {"length": _LENGTH, main: FieldInfo(unit, f"normalised {name} (MAD-X {mad})"),
         **named, **(extra or {}), **ALIGNMENT, **MULTIPOLE_PATTERNS, **PIPE_APERTURE},
        frozenset({"length", main}), reader="thick_multipole", main_order=order,
        main_name=name, thick=True, integrated=True, pipe_aperture=True,
        linear_map=linear_map,
        example={"length": 0.3, "MagneticMultipoleP": {main: example}}, reversible=reversible)


_BEND_PALS: dict[str, Disposition] = {
    "BendP.g_ref": "angle", "BendP.rho_ref": "angle", "BendP.bend_field_ref": "angle",
    "BendP.angle": "angle", "BendP.e1": "e1", "BendP.e2": "e2", "BendP.e1_rect": "e1",
    "BendP.e2_rect": "e2", "BendP.edge_int1": "edge_int1", "BendP.edge_int2": "edge_int2",
    "BendP.h1": "h1", "BendP.h2": "h2", "BendP.tilt_ref": "tilt_ref",
    "BendP.L_chord": Refused("give the arc length 'length' (L_chord is derived)"),
    "BendP.L_sagitta": Refused("an output parameter of PALS"),
}

#: Every element kind of the harness's flat lattice, in the order tables list them.
KIND_SPECS: tuple[KindSpec, ...] = (
    KindSpec("Drift", MODEL_TIERS, {"length": _LENGTH, **ALIGNMENT, **PIPE_APERTURE},
             frozenset({"length"}), reader="drift", linear_map=True, example={"length": 0.3},
             pipe_aperture=True, reversible=True),
    _thick_multipole("Quadrupole", 1, "gradient", "1/m^2", "K1, > 0 focuses x", MODEL_TIERS,
                     1.0, reversible=True, extra={FIELD_RIGIDITY: _FIELD_RIGIDITY_INFO},
                     linear_map=True),
    KindSpec("SBend", ("linear", "exact"), {
        "length": FieldInfo("m", "arc length"),
        "angle": FieldInfo("rad", "bend angle = g_ref * length"),
        "e1": FieldInfo("rad", "entrance pole-face angle (sector convention)"),
        "e2": FieldInfo("rad", "exit pole-face angle (sector convention)"),
        "Kn1": FieldInfo("1/m^2", "combined-function gradient"),
        "edge_int1": FieldInfo("m", "entrance fringe-field integral (MAD-X FINT*HGAP)"),
        "edge_int2": FieldInfo("m", "exit fringe-field integral (MAD-X FINTX*HGAP)"),
        "h1": FieldInfo("1/m", "entrance pole-face curvature"),
        "h2": FieldInfo("1/m", "exit pole-face curvature"),
        "tilt_ref": FieldInfo("rad", "rotation of the bend (and its plane) about s (MAD-X "
                              "TILT of a bend; ImpactX rotation)"),
        **ALIGNMENT, **MULTIPOLE_PATTERNS, **PIPE_APERTURE},
        frozenset({"length", "angle", "e1", "e2"}), _BEND_PALS, reader="bend", linear_map=True,
        example={"length": 0.3, "BendP": {"g_ref": 0.1}}, pipe_aperture=True,
        reversible=True),
    _thick_multipole("Sextupole", 2, "sextupole strength", "1/m^3", "K2", ("exact",), 10.0,
                     "K2S", reversible=True),
    _thick_multipole("Octupole", 3, "octupole strength", "1/m^4", "K3", ("exact",), 100.0,
                     "K3S", reversible=True),
    KindSpec("Multipole", MODEL_TIERS, {"length": FieldInfo("m", "0 (thin kick)"),
                                        **THIN_PATTERNS, **ALIGNMENT},
             frozenset({"length"}), reader="thin_multipole",
             example={"length": 0.0, "MagneticMultipoleP": {"Kn1L": 0.1}}),
    KindSpec("Solenoid", ("linear",), {
        "length": _LENGTH, "Ksol": FieldInfo("1/m", "B_s / (B rho) (ImpactX ks)"),
        **ALIGNMENT, **MULTIPOLE_PATTERNS, **PIPE_APERTURE},
        frozenset({"length", "Ksol"}), {"SolenoidP.Ksol": "Ksol", "SolenoidP.Bsol": "Ksol"},
        reader="solenoid", thick=True, linear_map=True,
        example={"length": 0.3, "SolenoidP": {"Ksol": 0.5}},
        pipe_aperture=True, reversible=True),
    KindSpec("RFCavity", MODEL_TIERS, {
        "length": FieldInfo("m", "0 (short RF gap)"),
        "voltage": FieldInfo("V", "peak voltage"),
        "frequency": FieldInfo("Hz", "RF frequency"),
        "phase": FieldInfo("rad", "RF phase (ImpactX ShortRF: 0 on crest)")},
        frozenset({"length", "voltage", "frequency", "phase"}), {
            "RFP.voltage": "voltage", "RFP.frequency": "frequency", "RFP.phase": "phase",
            "RFP.cavity_type": None,
            "RFP.gradient": Refused("short RF gaps take 'voltage' (length 0)"),
            "RFP.harmon": Refused("give 'frequency' [Hz] (no ring to take harmonics of)"),
            "RFP.multipass_phase": Refused("no multipass lattices"),
            "RFP.n_cell": Refused("short RF gaps have no cells"),
            "SolenoidP": Refused("no backend models a solenoid field in an RF cavity"),
            "MagneticMultipoleP": Refused("no backend models multipoles in an RF cavity"),
            "BodyShiftP": Refused("no backend shifts a short RF gap")},
        reader="rf", accelerates=True,
        example={"length": 0.0, "RFP": {"voltage": 1e5, "frequency": 1e9, "phase": 0.0}}),
    KindSpec("Marker", MODEL_TIERS, {"length": FieldInfo("m", "0")}, frozenset({"length"}),
             {"BodyShiftP": Refused("a Marker (or aperture) has no body to shift")},
             reader="marker", linear_map=True, example={}),
    KindSpec("Instrument", MODEL_TIERS, {"length": FieldInfo("m", "length (a drift)")},
             frozenset({"length"}),
             {"BodyShiftP": Refused("an Instrument is a drift; no body to shift"),
              "MagneticMultipoleP": Refused("an Instrument is a drift; give the multipole "
                                            "its own element")},
             reader="marker", linear_map=True, example={"length": 0.0}),
    KindSpec("Kicker", MODEL_TIERS, {
        "length": FieldInfo("m", "length (drift halves around a thin kick)"),
        "Kn0L": FieldInfo("rad", "integrated dipole kick, dpx = -Kn0L (MAD-X KNL[0])"),
        "Ks0L": FieldInfo("rad", "integrated skew dipole kick, dpy = +Ks0L"),
        "Kn*L": FieldInfo("1/m^N", "integrated normal multipole of order N"),
        "Ks*L": FieldInfo("1/m^N", "integrated skew multipole of order N"),
        **ALIGNMENT},
        frozenset({"length", "Kn0L", "Ks0L"}), reader="kicker",
        example={"length": 0.2, "MagneticMultipoleP": {"Kn0L": 1e-4}}),
    KindSpec("Aperture", MODEL_TIERS, {
        "length": FieldInfo("m", "0"),
        "x_limit": FieldInfo("m", "horizontal half-width"),
        "y_limit": FieldInfo("m", "vertical half-width"),
        "elliptical": FieldInfo("1", "1 elliptical, 0 rectangular"),
        **APERTURE_OPTIONS, **ALIGNMENT},
        frozenset({"length", "x_limit", "y_limit", "elliptical"})),
)

# --------------------------------------------------------------------------- extensions

#: The namespace of the element kinds PALS does not have: ImpactX's own elements, written
#: ``kind: ImpactX.<ImpactX class>`` in a PALS lattice (see ``docs/scenario-format.md``).
EXTENSION_NAMESPACE = "ImpactX."

#: The parameter group of an extension kind's own fields (ImpactX's constructor names).
EXTENSION_GROUP = "ImpactXP"

#: The extension kind of ImpactX's ``PolygonAperture``.
POLYGON_APERTURE = f"{EXTENSION_NAMESPACE}PolygonAperture"

#: The 36 entries ``Rij`` (1-based row i, column j, ImpactX ``Map6x6``) of a LinearMap.
MATRIX_ENTRIES: tuple[str, ...] = tuple(f"R{i}{j}" for i in range(1, 7) for j in range(1, 7))


#: The 18 entries ``Aij`` (1-based row i of 3, column j of 6, ImpactX ``Map3x6``) of a
#: SpinMap's spin-orbit coupling matrix, and the 3 components of its design rotation.
SPIN_MATRIX_ENTRIES: tuple[str, ...] = tuple(f"A{i}{j}" for i in range(1, 4)
                                             for j in range(1, 7))
SPIN_VECTOR_ENTRIES: tuple[str, ...] = ("v1", "v2", "v3")

#: Extension kinds whose list-valued ImpactX arguments are read into several element fields:
#: ImpactXP key -> the element fields' pattern.
_LIST_FIELDS: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "LinearMap": {"R": "R*"},
    "ExactMultipole": {"k_normal": "Kn*", "k_skew": "Ks*"},
    "SpinMap": {"v": "v*", "A": "A*"},
})


def _extension(name: str, fields: Mapping[str, FieldInfo], example: Mapping[str, Any],
               thick: bool = False, aligned: bool = True,
               tiers: tuple[str, ...] = MODEL_TIERS,
               lists: Mapping[str, str] | None = None, integrated: bool = False,
               accelerates: bool = False, linear_map: bool = False,
               reversible: bool = False) -> KindSpec:
    """An ImpactX element PALS does not have (``ImpactX.<name>``): every field but
    ``length`` and the alignment comes from the :data:`EXTENSION_GROUP` group under its own
    name (LinearMap's ``R`` is a 6x6 list of rows, read into :data:`MATRIX_ENTRIES`;
    ExactMultipole's ``k_normal``/``k_skew`` lists into ``KnN``/``KsN``; SpinMap's ``v`` and
    ``A`` into :data:`SPIN_VECTOR_ENTRIES` and :data:`SPIN_MATRIX_ENTRIES`; ``lists``: a
    list field of the group -> the pattern ``<prefix>*`` of its entries, read into
    ``<prefix>0``, ``<prefix>1``, ..., see :data:`LIST_FIELDS`). Patterns are not required,
    except a list's first one (``cos*``: at least one coefficient). ``integrated``: the
    exact tier only (ImpactX's symplectic integrators)."""
    listed = dict(lists or {})
    own = {key: key for key in fields if key != "length" and key not in listed.values()}
    own.update(listed)
    if name in _LIST_FIELDS:
        own = dict(_LIST_FIELDS[name])
    length = ({"length": FieldInfo("m", "length")} if thick else
              {"length": FieldInfo("m", "0 (thin)")})
    if name == "LinearMap":
        length = {"length": FieldInfo("m", "length the reference particle advances (never "
                                      "sliced)")}
    all_fields = {**length, **fields, **(ALIGNMENT if aligned else {}),
                  **(PIPE_APERTURE if thick else {})}
    required = frozenset({"length", *(k for k in fields if "*" not in k),
                          *list(listed.values())[:1]})
    if name == "SpinMap":
        required = frozenset({"length", *SPIN_VECTOR_ENTRIES})
    return KindSpec(
        f"{EXTENSION_NAMESPACE}{name}", ("exact",) if integrated else tiers,
        all_fields, required,
        {f"{EXTENSION_GROUP}.{key}": where for key, where in own.items()},
        reader="extension", thick=thick, integrated=integrated, accelerates=accelerates,
        linear_map=linear_map, example=example, pipe_aperture=thick, reversible=reversible)


#: The list fields of the extension kinds: ``ImpactXP`` list -> the pattern of its entries
#: in :attr:`harness.model.lattice.Element.params` (entry j of ``cos_coefficients`` is
#: ``cos<j>``).
LIST_FIELDS: Mapping[str, str] = MappingProxyType({
    "cos_coefficients": "cos*", "sin_coefficients": "sin*"})

#: Most Fourier coefficients of one on-axis profile (ImpactX's examples use up to 35).
MAX_COEFFICIENTS = 200

#: The on-axis profile of ImpactX's soft-edge elements and RF cavity
#: (``src/elements/SoftQuad.H``, ``SoftSol.H``, ``RFCavity.H``): f(z) = c_0/2 + sum_j c_j
#: cos(2 pi j u/L) + s_j sin(2 pi j u/L), u = z - L/2, over the element's length L
#: (``backends/inhouse/fourier_field.py``).
_PROFILE: Mapping[str, FieldInfo] = MappingProxyType({
    "cos*": FieldInfo("1", f"cosine coefficient c_j of the on-axis profile (ImpactXP."
                      f"cos_coefficients, 1 to {MAX_COEFFICIENTS} entries; ImpactX "
                      "cos_coefficients)"),
    "sin*": FieldInfo("1", "sine coefficient s_j (ImpactXP.sin_coefficients, as many as "
                      "the cosines; zeros when not given)")})

#: ImpactX's elements PALS does not have (ImpactX ``src/elements/*.H``, the 26.10 wheel's
#: constructors; ``docs/new-kinds-a.md``, ``docs/new-kinds-b.md``): the in-house tracker
#: ports each map. The soft-edge elements take ``nslice`` and ``mapsteps`` from the
#: scenario's ``integrator`` and ``overrides`` (their map integrates nslice*mapsteps steps
#: along the profile at every tier).
EXTENSION_SPECS: tuple[KindSpec, ...] = (
    _extension("ConstF", {
        "kx": FieldInfo("1/m", "horizontal focusing: sign(K) sqrt(|K|), K the strength "
                        "[1/m^2] (ImpactX ConstF kx; < 0 defocuses)"),
        "ky": FieldInfo("1/m", "vertical focusing, as kx"),
        "kt": FieldInfo("1/m", "longitudinal focusing (>= 0)")},
        {"length": 0.5, EXTENSION_GROUP: {"kx": 1.0, "ky": 1.0, "kt": 0.5}}, thick=True,
        linear_map=True),
    _extension("ChrAcc", {
        "ez": FieldInfo("1/m", "q E_z / (m c^2): the gain of gamma per metre"),
        "bz": FieldInfo("1/m", "q B_z / (m c): the solenoid field")},
        {"length": 0.5, EXTENSION_GROUP: {"ez": 2.0, "bz": 1.5}}, thick=True,
        accelerates=True),
    _extension("ChrPlasmaLens", {
        "k": FieldInfo("1/m^2", "gradient / (B rho) (ImpactX unit 0; > 0 focuses x and y)")},
        {"length": 0.3, EXTENSION_GROUP: {"k": 3.0}}, thick=True),
    _extension("TaperedPL", {
        "kL": FieldInfo("1/m", "integrated gradient / (B rho) (ImpactX k, unit 0)"),
        "taper": FieldInfo("1/m", "horizontal taper: 1 / the horizontal dispersion")},
        {EXTENSION_GROUP: {"kL": 0.5, "taper": 300.0}}),
    _extension("NonlinearLens", {
        "knll": FieldInfo("m", "integrated strength (MAD-X NLLENS KNLL)"),
        "cnll": FieldInfo("m", "distance of the branch cuts from the axis (> 0; MAD-X "
                          "CNLL)")},
        {EXTENSION_GROUP: {"knll": 4e-6, "cnll": 0.01}}),
    _extension("ThinDipole", {
        "angle": FieldInfo("rad", "bending angle (ImpactX theta, in degrees)"),
        "rc": FieldInfo("m", "bending radius (non-zero)")},
        {EXTENSION_GROUP: {"angle": 0.01, "rc": 1.0}}),
    _extension("ExactSbend", {
        "phi": FieldInfo("rad", "bend angle magnitude |phi| (ImpactX phi, in degrees; its "
                         "sign comes from the field and the charge)"),
        "B": FieldInfo("T", "the bend's field: radius (B rho)/B with the rigidity of the "
                       "reference particle at the bend, signed with its charge (non-zero; "
                       "a bend given by its angle is an SBend)")},
        {"length": 0.5, EXTENSION_GROUP: {"phi": 0.1, "B": 0.5}}, thick=True, reversible=True),
    _extension("DipEdge", {
        "psi": FieldInfo("rad", "pole-face angle"),
        "rc": FieldInfo("m", "radius of the bend the face belongs to (non-zero)"),
        "g": FieldInfo("m", "gap (ImpactX DipEdge g)"),
        "R": FieldInfo("m", "length scale of the nonlinear model's K4..K6 terms (> 0)"),
        **{f"K{n}": FieldInfo("1", f"fringe-field integral K{n} (ImpactX DipEdge)")
           for n in range(7)},
        "nonlinear": FieldInfo("1", "1: the nonlinear fringe-field model, 0: the linear one "
                               "(ImpactX model)"),
        "exit": FieldInfo("1", "1: the exit face, 0: the entry face (ImpactX location; the "
                          "nonlinear model's sign)")},
        {EXTENSION_GROUP: {"psi": 0.3, "rc": 10.0, "g": 1e-3, "R": 1.0,
                           "K0": 1.6449340668482264, "K1": 0.0, "K2": 1.0,
                           "K3": 0.16666666666666666, "K4": 0.0, "K5": 0.0, "K6": 0.0,
                           "nonlinear": 1, "exit": 0}}),
    _extension("Buncher", {
        "V": FieldInfo("1", "normalised voltage q V_peak / (p0 c) (ImpactX Buncher V)"),
        "k": FieldInfo("1/m", "RF wavenumber 2 pi f / c")},
        {EXTENSION_GROUP: {"V": 0.01, "k": 15.0}}, linear_map=True),
    _extension("LinearMap", {
        "R*": FieldInfo("1 (m, 1/m)", "the 6x6 matrix on (x, px, y, py, t, pt), Rij = row "
                        "i, column j (1-based, ImpactX Map6x6); all 36 always present")},
        {"length": 0.3, EXTENSION_GROUP: {"R": [[1.0 if i == j else 0.0 for j in range(6)]
                                                for i in range(6)]}},
        linear_map=True),
    _extension("PRot", {
        "phi_in": FieldInfo("rad", "angle of the reference orbit in the incoming frame "
                            "(|phi| < pi/2; ImpactX takes degrees)"),
        "phi_out": FieldInfo("rad", "angle of the reference orbit in the outgoing frame")},
        {EXTENSION_GROUP: {"phi_in": 0.0, "phi_out": 0.05}}, aligned=False),
    _extension("RFCavity", {
        "escale": FieldInfo("1/m", "peak on-axis |q| E_z / (m c^2): the peak E_z [MV/m] "
                            "divided by the rest energy [MeV] (ImpactX escale)"),
        "freq": FieldInfo("Hz", "RF frequency"),
        "phase": FieldInfo("rad", "RF phase at the reference particle's time since the "
                           "start of the lattice (ImpactX takes degrees)"),
        **_PROFILE},
        {"length": 1.0, EXTENSION_GROUP: {"escale": 0.05, "freq": 7e8, "phase": 0.3,
                                          "cos_coefficients": [0.5, 0.3, -0.1]}},
        thick=True, lists=LIST_FIELDS, accelerates=True),
    KindSpec(POLYGON_APERTURE, MODEL_TIERS, {
        "length": FieldInfo("m", "0 (thin)"),
        "vertex_x*": FieldInfo("m", "x of vertex N (0-based) of the closed polygon, the "
                               "first vertex repeated last (ImpactX vertices_x)"),
        "vertex_y*": FieldInfo("m", "y of vertex N (ImpactX vertices_y)"),
        "min_radius2": FieldInfo("m^2", "every particle with x^2 + y^2 below it is inside"),
        **APERTURE_OPTIONS, **ALIGNMENT},
        frozenset({"length", "min_radius2"}),
        {f"{EXTENSION_GROUP}.{key}": where for key, where in (
            ("vertices_x", "vertex_x*"), ("vertices_y", "vertex_y*"),
            ("min_radius2", "min_radius2"), ("action", "absorb"), ("repeat_x", "repeat_x"),
            ("repeat_y", "repeat_y"), ("shift_odd_x", "shift_odd_x"))},
        reader="extension",
        example={EXTENSION_GROUP: {"vertices_x": [1e-3, -1e-3, -1e-3, 1e-3, 1e-3],
                                   "vertices_y": [1e-3, 1e-3, -1e-3, -1e-3, 1e-3]}}),
    _extension("PlaneXYRot", {
        "angle": FieldInfo("rad", "rotation of the transverse plane about s (ImpactX "
                           "takes degrees)")},
        {EXTENSION_GROUP: {"angle": 0.3}}, aligned=False, linear_map=True),
    _extension("SoftQuadrupole", {
        "gscale": FieldInfo("1/m^2", "gradient / (B rho) where the profile is 1 (ImpactX "
                            "gscale; > 0 focuses x, MAD-X K1 sign)"), **_PROFILE},
        {"length": 1.0, EXTENSION_GROUP: {"gscale": 1.0, "cos_coefficients": [2.0]}},
        thick=True, tiers=("linear",), lists=LIST_FIELDS, linear_map=True),
    _extension("SoftSolenoid", {
        "bscale": FieldInfo("1/m", "B_z / (B rho) where the profile is 1 (ImpactX bscale, "
                            "unit 0)"), **_PROFILE},
        {"length": 1.0, EXTENSION_GROUP: {"bscale": 1.0, "cos_coefficients": [2.0]}},
        thick=True, tiers=("linear",), lists=LIST_FIELDS, linear_map=True),
    _extension("ExactMultipole", {
        "Kn*": FieldInfo("1/m^(N+1)", "normal multipole of order N per metre (ImpactX "
                         "k_normal[N], unit 0; N = 0 dipole, 1 quadrupole, ...)"),
        "Ks*": FieldInfo("1/m^(N+1)", "skew multipole of order N per metre (k_skew[N])")},
        {"length": 0.5, EXTENSION_GROUP: {"k_normal": [0.0, 1.0], "k_skew": [0.0, 0.0]}},
        thick=True, integrated=True, reversible=True),
    _extension("QuadEdge", {
        "k": FieldInfo("1/m^2", "gradient of the quadrupole whose hard edge this is (ImpactX "
                       "k, unit 0; > 0 focuses x)"),
        "flag": FieldInfo("1", "+1 the entry edge, -1 the exit edge (ImpactX flag 'entry' "
                          "/ 'exit'; the scenario may write either)")},
        {EXTENSION_GROUP: {"k": 60.0, "flag": "entry"}}),
    _extension("SpinMap", {
        "v1": FieldInfo("rad", "design spin rotation vector, x component (ImpactX v[1]: "
                        "angle |v| about v / |v|)"),
        "v2": FieldInfo("rad", "design spin rotation vector, y component"),
        "v3": FieldInfo("rad", "design spin rotation vector, z component"),
        "A*": FieldInfo("rad (per m, 1)", "spin-orbit coupling Aij: row i of 3 (x, y, z "
                        "generator), column j of 6 (x, px, y, py, t, pt), 1-based as ImpactX "
                        "Map3x6; all 18 always present")},
        {EXTENSION_GROUP: {"v": [0.0, 0.0, 0.1],
                           "A": [[0.0] * 6, [0.0, 0.0, 0.0, 1.0, 0.0, 0.0], [0.0] * 6]}},
        aligned=False),
)

KIND_SPECS = KIND_SPECS + EXTENSION_SPECS

#: The extension kinds (``ImpactX.*``).
EXTENSION_KINDS: frozenset[str] = frozenset(spec.kind for spec in EXTENSION_SPECS)

#: The kinds that take ImpactX's pipe aperture (:data:`PIPE_APERTURE`).
PIPE_APERTURE_KINDS: frozenset[str] = frozenset(
    spec.kind for spec in KIND_SPECS if spec.pipe_aperture)

#: The specs by kind.
SPECS: Mapping[str, KindSpec] = MappingProxyType({spec.kind: spec for spec in KIND_SPECS})

#: The kinds a PALS element declares (every spec with a reader; ``Aperture`` comes from an
#: ``ApertureP``).
PALS_KINDS: tuple[str, ...] = tuple(spec.kind for spec in KIND_SPECS if spec.reader)


def markdown_table() -> str:
    """The kinds as a Markdown table: tiers, required fields, optional fields with units."""
    rows = ["| kind | tiers (ImpactX) | required fields | optional fields |",
            "|---|---|---|---|"]
    for spec in KIND_SPECS:
        def named(names: list[str], spec: KindSpec = spec) -> str:
            return ", ".join(f"`{n}` [{spec.fields[n].unit}]" for n in names)
        required = [n for n in spec.fields if n in spec.required]
        optional = [n for n in spec.fields if n not in spec.required]
        rows.append(f"| {spec.kind} | {', '.join(spec.tiers)} | {named(required)} | "
                    f"{named(optional)} |")
    return "\n".join(rows)
