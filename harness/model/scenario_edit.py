"""A copy of a scenario with some named parameters set to new values.

Finite differences need the objective at perturbed parameter values from *any* backend,
including codes that cannot differentiate (ImpactX). Every adapter reads the lattice from
the flat :class:`~harness.model.lattice.Element` list
:attr:`harness.model.scenario.Scenario.elements` and the beam from
:attr:`~harness.model.scenario.Scenario.beam`, so a copy whose element list and beam carry
the new values is tracked by every backend exactly like a scenario file with
those values written in.

Parameter names are those of :mod:`harness.model.parameters`: ``<element>.<field>`` (every
occurrence of the element changes, as for a family of magnets on one power supply) and
``beam.<twiss|longitudinal|rms>.<field>``. Values are in the units of the scenario file.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.model.lattice import with_params
from harness.model.parameters import resolve_parameter
from harness.model.scenario import Scenario


def _edited_beam(scenario: Scenario, beam_values: dict[tuple[str, str], float]):
    """The beam with ``(group, field) -> value`` replaced (groups: twiss, longitudinal, rms)."""
    beam = scenario.beam
    groups: dict[str, dict[str, float]] = {}
    for (group, field), value in beam_values.items():
        groups.setdefault(group, {})[field] = float(value)
    updates = {group: getattr(beam, group).model_copy(update=fields)
               for group, fields in groups.items()}
    return beam.model_copy(update=updates)


def with_values(scenario: Scenario, values: Mapping[str, float]) -> Scenario:
    """A copy of ``scenario`` with each named parameter set to its value.

    Args:
        scenario: the scenario (left unchanged).
        values: parameter name (``qf.Kn1``, ``beam.twiss.beta_x``, ...) -> new value, in the
            scenario file's units.

    Returns:
        A scenario whose ``elements`` and ``beam`` hold the new values; everything else
        (model tiers, slicing, observables, the raw PALS document) is shared with the
        original. Raises ``KeyError`` for a name :func:`harness.model.parameters.resolve_parameter`
        does not know.
    """
    element_values: dict[tuple[str, str], float] = {}
    beam_values: dict[tuple[str, str], float] = {}
    for name, value in values.items():
        parameter = resolve_parameter(scenario, name)
        key = (parameter.owner, parameter.field)
        if parameter.target == "beam":
            beam_values[key] = float(value)
        else:
            element_values[key] = float(value)
    elements = with_params(scenario.elements, element_values)
    update = {"beam": _edited_beam(scenario, beam_values)} if beam_values else {}
    edited = scenario.model_copy(update=update)
    # ``elements`` is a cached property of the (frozen) scenario: the copy's cache holds the
    # edited list, which is what every backend reads.
    edited.__dict__["elements"] = elements
    return edited


def changes_particles(names: list[str]) -> bool:
    """Whether any of the named parameters is a beam parameter (the initial particles must
    then be drawn again from the edited beam, with the same seed)."""
    return any(name.startswith("beam.") for name in names)
