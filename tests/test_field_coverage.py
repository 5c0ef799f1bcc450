"""No PALS field is silently dropped: every field of every translated PALS kind, as
pals-schema models it, is (a) honoured by every registered backend, (b) refused by validate
naming the field, or (c) accepted and, in each backend that does not honour it, the case is
unsupported with the field named. A new backend is covered by construction: it must declare
its :attr:`backends.base.Backend.honoured_fields`.

Also: every kind of the vocabulary is translated (a translator table entry) or declared
unsupported with a reason, in every backend.
"""

from __future__ import annotations

import re
import typing
import warnings
from typing import Any

import pydantic
import pytest

from backends.registry import backend_classes
from harness.model.errors import ScenarioError
from harness.model.kinds import (
    EXTENSION_GROUP,
    EXTENSION_KINDS,
    KIND_SPECS,
    LIST_FIELDS,
    SPECS,
)
from harness.model.lattice import _EXTRA_FIELDS, Refused, pals_disposition
from harness.model.load import scenario_from_dict
from harness.model.vocabulary import ELEMENT_FIELDS, ELEMENT_TIERS, LATTICE_KINDS, field_declared

BEAM = {"species": "electron", "kinetic_energy_MeV": 100.0, "bunch_charge_C": 0.0,
        "distribution": "gaussian",
        "twiss": {"beta_x": 2.0, "alpha_x": 0.0, "emittance_x": 1e-8,
                  "beta_y": 2.0, "alpha_y": 0.0, "emittance_y": 1e-8},
        "longitudinal": {"sigma_t": 1e-4, "sigma_pt": 1e-3}, "particles": 100}

#: A valid element of every translated PALS kind, from its spec (the fields are varied
#: from here).
BASE: dict[str, dict] = {spec.kind: dict(spec.example) for spec in KIND_SPECS if spec.reader}

#: Group fields that state one quantity in several ways (tested one at a time).
EXCLUSIVE = {"BendP": {"g_ref", "rho_ref", "bend_field_ref", "angle"},
             "SolenoidP": {"Ksol", "Bsol"}}

#: A value for fields whose default is not a number, by field name.
SAMPLES: dict[str, Any] = {
    "x_limits": [-2e-3, 2e-3], "y_limits": [-3e-3, 3e-3], "shape": "ELLIPTICAL",
    "location": "CENTER", "material": "Cu", "aperture_shifts_with_body": True,
    "aperture_active": False, "alias": "a", "ID": "i", "label": "l", "description": "d",
    "species_ref": "proton", "cavity_type": "STANDING_WAVE", "harmon": 3, "n_cell": 2,
}
APERTURE = {"x_limits": [-1e-3, 1e-3], "y_limits": [-1e-3, 1e-3]}


def _group_model(kind_class: type, group: str) -> type | None:
    annotation = kind_class.model_fields[group].annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, pydantic.BaseModel):
            return candidate
    return None


def _multipole_keys(group_model: type) -> list[str]:
    prefixes = ("Kn", "Ks", "Bn", "Bs") if "Magnetic" in group_model.__name__ else ("En", "Es")
    keys = []
    for order in range(4):
        for prefix in prefixes:
            keys += [f"{prefix}{order}", f"{prefix}{order}L"]
        keys.append(f"tilt{order}")
    return keys


def pals_fields() -> list[tuple[str, str, str | None]]:
    """``(kind, group or "", field)`` for every field pals-schema models for the kinds the
    harness translates (multipole groups: orders 0..3 of every prefix, with and without L),
    plus the extensions the lattice layer accepts (``BendP.angle``)."""
    import pals

    out = []
    for kind in ELEMENT_TIERS:
        if kind in EXTENSION_KINDS:
            out += extension_fields(kind)
            continue
        kind_class = getattr(pals, kind)
        for name in kind_class.model_fields:
            if name in ("name", "kind"):
                continue
            model = _group_model(kind_class, name)
            if model is None:
                out.append((kind, "", name))
                continue
            keys = (_multipole_keys(model) if model.model_config.get("extra") == "allow"
                    else list(model.model_fields))
            keys += [key for (k, group), key in _EXTRA_FIELDS.items()
                     if k == kind and group == name]
            out += [(kind, name, key) for key in keys]
    return out


def extension_fields(kind: str) -> list[tuple[str, str, str]]:
    """``(kind, group or "", field)`` of an extension kind (``ImpactX.*``, no pals-schema
    class): ``length``, its own group's fields from its spec, and every BodyShiftP field."""
    spec = SPECS[kind]
    out = [(kind, "", "length")]
    out += [(kind, EXTENSION_GROUP, key.split(".", 1)[1]) for key in spec.pals_fields]
    out += [(kind, "BodyShiftP", key) for key in ("x_offset", "y_offset", "z_rot",
                                                   "x_rot", "y_rot", "z_offset")]
    return out


def _extension_with(kind: str, group: str, field: str) -> dict:
    body = {key: (dict(value) if isinstance(value, dict) else value)
            for key, value in BASE[kind].items()}
    if not group:
        body[field] = float(body.get(field, 0.0)) + 0.25
    elif field in ("vertices_x", "vertices_y"):
        vertices = [v + 1e-4 for v in body[group][field]]
        body[group] = {**body[group], field: vertices}
    elif field == "action":
        body[group] = {**body[group], field: "absorb"}
    elif field == "shift_odd_x":
        body[group] = {**body[group], field: True, "repeat_y": 1e-3}
    elif (field, kind) in (("R", "ImpactX.LinearMap"), ("A", "ImpactX.SpinMap")):
        matrix = [list(row) for row in body[group][field]]
        matrix[0][1] += 0.5
        body[group] = {**body[group], field: matrix}
    elif field in LIST_FIELDS:                          # a list: every entry moved
        target = dict(body.get(group) or {})
        count = len(target.get("cos_coefficients", [0.0]))
        target[field] = [float(v) + 0.05 for v in target.get(field, [0.0] * count)]
        body[group] = target
    elif isinstance(body.get(group, {}).get(field), list):   # k_normal, k_skew, v
        values = list(body[group][field])
        values[0] += 0.05
        body[group] = {**body[group], field: values}
    else:
        target = dict(body.get(group) or {})
        if field == "flag":                                # QuadEdge: entry -> exit
            target[field] = "exit"
        else:
            target[field] = float(target.get(field, 0.0)) + 0.05
        body[group] = target
    return {"kind": kind, **body}


def _sample(group_model: type | None, field: str) -> Any:
    if field in SAMPLES:
        return SAMPLES[field]
    if field == "length":
        return 0.25
    info = group_model.model_fields.get(field) if group_model is not None else None
    default = info.default if info is not None else 0.0
    return (default if isinstance(default, (int, float)) else 0.0) + 0.05


def _same_component(a: str, b: str) -> bool:
    """Two multipole keys that set the same component (Kn1, Bn1, Kn1L, Bn1L)."""
    pattern = re.compile(r"^(?:K|B|E)?([ns])(\d+)L?$")
    ma, mb = pattern.match(a[1:] if a.startswith("tilt") else a[1:]), pattern.match(b[1:])
    if a.startswith("tilt") or b.startswith("tilt"):
        return a == b
    return bool(ma and mb and ma.groups() == mb.groups())


def _with_field_to_tilt(kind: str, field: str) -> dict:
    """The base element plus a normal component of the order a ``tiltN`` rotates."""
    body = {key: (dict(value) if isinstance(value, dict) else value)
            for key, value in BASE[kind].items()}
    order = field.removeprefix("tilt")
    poles = dict(body.get("MagneticMultipoleP") or {})
    if not any(re.match(rf"^[KB][ns]{order}L?$", key) for key in poles):
        thin = kind in ("Multipole", "Kicker")
        poles[f"Kn{order}L" if thin else f"Kn{order}"] = 0.7
    body["MagneticMultipoleP"] = poles
    return body


def element_with(kind: str, group: str, field: str) -> dict:
    """The base element of ``kind`` with ``group.field`` set to a sample value (a ``tiltN``
    comes with a field of order N to rotate; see :func:`base_for`)."""
    import pals

    if kind in EXTENSION_KINDS:
        return _extension_with(kind, group, field)
    body = {key: (dict(value) if isinstance(value, dict) else value)
            for key, value in base_for(kind, group, field).items() if key != "kind"}
    kind_class = getattr(pals, kind)
    model = _group_model(kind_class, group) if group else None
    if not group:
        body[field] = _sample(None, field)
        return {"kind": kind, **body}
    target = dict(body.get(group) or {})
    if group == "ApertureP":
        target = {**APERTURE, **target}
    if group in EXCLUSIVE and field in EXCLUSIVE[group]:
        target = {k: v for k, v in target.items() if k not in EXCLUSIVE[group]}
    if group == "MagneticMultipoleP":
        target = {k: v for k, v in target.items() if not _same_component(k, field)}
        if kind == "Multipole" and not target:
            target = {"Kn2L": 1.0}
    target[field] = 0.5 if model is None or field not in model.model_fields \
        else _sample(model, field)
    body[group] = target
    return {"kind": kind, **body}


def base_for(kind: str, group: str, field: str) -> dict:
    """The element a field's effect is measured against."""
    if group == "MagneticMultipoleP" and field.startswith("tilt"):
        return {"kind": kind, **_with_field_to_tilt(kind, field)}
    return {"kind": kind, **BASE[kind]}


def scenario_of(element: dict):
    facility = [{"e": element}, {"line": {"kind": "BeamLine", "line": ["e"]}},
                {"use": "line"}]
    return scenario_from_dict({"name": "coverage", "beam": BEAM,
                               "lattice": {"PALS": {"facility": facility}}}, "cov.yaml")


def _params(element: dict) -> tuple[str, dict[str, float]]:
    (only,) = scenario_of(element).elements
    return only.kind, only.params


FIELDS = pals_fields()


def test_the_enumeration_covers_the_groups_that_matter() -> None:
    names = {f"{kind}.{group}.{field}" for kind, group, field in FIELDS}
    for expected in ("SBend.BendP.edge_int1", "SBend.BendP.e1_rect", "SBend.BendP.angle",
                     "Quadrupole.BodyShiftP.x_offset", "Quadrupole.MagneticMultipoleP.tilt1",
                     "Solenoid.MagneticMultipoleP.Kn1", "Drift.ApertureP.x_limits",
                     "Quadrupole.ElectricMultipoleP.En1", "RFCavity.RFP.harmon",
                     "Kicker.MagneticMultipoleP.Ks0L"):
        assert expected in names
    assert len(FIELDS) > 400


@pytest.mark.parametrize(("kind", "group", "field"), FIELDS,
                         ids=[f"{k}.{g}.{f}" if g else f"{k}.{f}" for k, g, f in FIELDS])
def test_every_pals_field_is_honoured_refused_or_unsupported(kind, group, field) -> None:
    path = f"{group}.{field}" if group else field
    try:
        base_kind, base = _params(base_for(kind, group, field))
    except ScenarioError as error:                     # the field to tilt is refused itself
        assert field.startswith("tilt"), str(error)
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            new_kind, params = _params(element_with(kind, group, field))
    except ScenarioError as error:                     # (b) refused, naming the field
        assert error.field.startswith(f"lattice.e.{group or field}"), str(error)
        assert str(error).startswith("cov.yaml: lattice.e.")
        assert "\n" not in str(error)
        return
    changed = sorted(k for k, v in params.items() if base.get(k) != v or new_kind != base_kind)
    if not changed:                                     # no effect on tracking, by design
        assert group != "MagneticMultipoleP" and pals_disposition(kind, path) is None, \
            f"{kind}.{path} validated but changed no element field"
        return
    if group != "MagneticMultipoleP":
        assert not isinstance(pals_disposition(kind, path), Refused)
    scenario = None
    for name in changed:
        assert field_declared(ELEMENT_FIELDS[new_kind], name), (new_kind, name)
    for backend_name, cls in backend_classes().items():
        if new_kind not in cls.element_kinds:           # the whole kind is refused, with its
            scenario = scenario or scenario_of(element_with(kind, group, field))
            assert not cls().supports(scenario)         # reason (the kind test below)
            continue
        declared = cls.declared_fields(new_kind)
        missing = [n for n in changed if not field_declared(declared, n)]
        scenario = scenario or scenario_of(element_with(kind, group, field))
        verdict = cls().supports(scenario)
        if not missing:                                 # (a) honoured (or, at this tier,
            if not verdict and any(f"'{n}'" in verdict.reason for n in changed):
                continue                                #     unsupported naming the field)
            base_verdict = cls().supports(scenario_of(base_for(kind, group, field)))
            assert bool(verdict) == bool(base_verdict), (backend_name, verdict)
            continue
        # (c) unsupported, naming it
        assert not verdict, f"{backend_name} accepts {kind}.{path} -> {missing} unhonoured"
        assert any(f"'{n}'" in verdict.reason for n in missing), verdict.reason


@pytest.mark.parametrize("backend_name", list(backend_classes()))
def test_every_vocabulary_kind_is_translated_or_refused_with_a_reason(backend_name) -> None:
    cls = backend_classes()[backend_name]
    for kind in sorted(LATTICE_KINDS):
        if kind in cls.element_kinds:
            assert cls.honoured_fields is None or kind in cls.honoured_fields, (backend_name,
                                                                                kind)
            continue
        element = {"kind": kind, **BASE.get(kind, {})}
        verdict = cls().supports(scenario_of(element))
        assert not verdict and kind in verdict.reason


def test_translator_tables_match_the_declared_kinds() -> None:
    """One table per adapter, kind -> translator, for exactly the kinds it claims."""
    from backends import cheetah, impactx
    from backends.inhouse import InhouseBackend, translate

    assert set(impactx.TRANSLATORS) == impactx.ImpactXBackend.element_kinds == LATTICE_KINDS
    assert set(cheetah.TRANSLATORS) == cheetah.CheetahBackend.element_kinds
    assert cheetah.CheetahBackend.element_kinds == LATTICE_KINDS - {"Octupole"} - \
        EXTENSION_KINDS
    assert set(translate.TRANSLATORS) == InhouseBackend.element_kinds == LATTICE_KINDS
    assert set(impactx.HONOURED_FIELDS) == LATTICE_KINDS
    assert set(cheetah.HONOURED_FIELDS) == cheetah.CheetahBackend.element_kinds


def test_every_honoured_field_is_a_field_of_the_vocabulary() -> None:
    for name, cls in backend_classes().items():
        for kind in cls.element_kinds:
            for field in cls.declared_fields(kind):
                assert field in ELEMENT_FIELDS[kind] or field_declared(ELEMENT_FIELDS[kind],
                                                                       field), (name, kind,
                                                                                field)


def test_the_kinds_table_of_the_docs_is_the_specs() -> None:
    """docs/architecture.md lists the kinds as :func:`harness.model.kinds.markdown_table`
    writes them (regenerate it from the specs when a kind changes)."""
    from pathlib import Path

    from harness.model.kinds import markdown_table

    text = (Path(__file__).resolve().parent.parent / "docs" / "architecture.md").read_text()
    start, end = "<!-- kinds table: start -->\n", "\n<!-- kinds table: end -->"
    assert text[text.index(start) + len(start):text.index(end)] == markdown_table()
