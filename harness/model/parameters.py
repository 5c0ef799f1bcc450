"""Named parameters of a scenario: ``<element>.<field>`` or ``beam.<group>.<field>``.

These are the names used in gradient blocks and on the command line (``--params``).
Element fields are those of :class:`harness.model.lattice.Element.params` (e.g. ``qf.Kn1``,
``b1.angle``, ``d1.length``); beam fields are ``beam.twiss.<beta_x|alpha_x|emittance_x|...>``
and ``beam.longitudinal.<sigma_t|sigma_pt|correlation>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.model.scenario import Scenario

BEAM_GROUPS = ("twiss", "longitudinal", "rms", "ellipse")


@dataclass(frozen=True)
class Parameter:
    """A resolved parameter: where it lives and its value in the scenario."""

    name: str
    target: str  # "element" or "beam"
    owner: str  # element name, or the beam group ("twiss", "longitudinal")
    field: str
    value: float


def resolve_parameter(scenario: Scenario, name: str) -> Parameter:
    """Resolve a parameter name; raises KeyError with what was expected."""
    parts = name.split(".")
    if parts[0] == "beam":
        if len(parts) != 3 or parts[1] not in BEAM_GROUPS:
            raise KeyError("beam parameters as beam.<twiss|longitudinal|rms|ellipse>.<field>")
        group = getattr(scenario.beam, parts[1])
        values = _group_values(group)
        if parts[2] not in values:
            raise KeyError(f"a field of beam.{parts[1]}: {sorted(values)}")
        return Parameter(name, "beam", parts[1], parts[2], values[parts[2]])
    if len(parts) != 2:
        raise KeyError("<element name>.<field> (e.g. qf.Kn1) or beam.twiss.<field>")
    element_name, field = parts
    matches = [e for e in scenario.elements if e.name == element_name]
    if not matches:
        names = sorted({e.name for e in scenario.elements})
        raise KeyError(f"an element name of the lattice: {names}")
    if field not in matches[0].params:
        fields = sorted(matches[0].params)
        raise KeyError(f"a field of {element_name} ({matches[0].kind}): {fields}")
    return Parameter(name, "element", element_name, field, float(matches[0].params[field]))


def _group_values(group) -> dict[str, float]:
    """The fields of a beam group that hold a value (the longitudinal block has two
    forms)."""
    if group is None:
        return {}
    if hasattr(group, "given"):
        return group.given()
    return {k: float(getattr(group, k)) for k in type(group).model_fields}


def resolve_parameters(scenario: Scenario, names: list[str]) -> list[Parameter]:
    """Resolve several names (see :func:`resolve_parameter`)."""
    return [resolve_parameter(scenario, n) for n in names]
