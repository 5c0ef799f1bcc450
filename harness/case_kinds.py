"""The case kinds, registered in one table (:data:`KINDS`): for each kind, the function run
in the case's process and the scenario a case of the kind runs.

A case runs the named scenario, or a copy made from it with the case's options (a gradient
case's space-charge kicks and checkpointing): :func:`case_scenario` makes that copy. The
parent plans it (:func:`harness.runner.precheck`) and the child runs the plan's scenario,
so that support and translation are decided once per case, in the parent.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple


class CaseKind(NamedTuple):
    """One case kind.

    Attributes:
        module, function: what runs a case of the kind in the child
            (``function(spec, clock) -> rows``).
        scenario: ``module:function`` making the scenario the case runs from the named
            scenario and the case's options (``function(scenario, options)``); None: the
            named scenario as it is.
    """

    module: str
    function: str
    scenario: str | None = None


#: The case kinds, by the ``kind`` of a :class:`harness.cases.Case`.
KINDS: dict[str, CaseKind] = {
    "track": CaseKind("harness.track_case", "track_case"),
    "gradient": CaseKind("harness.gradient_case", "gradient_case",
                         "harness.gradients:with_space_charge_options"),
    "tuning": CaseKind("harness.tuning.case", "tuning_case"),
}


def case_scenario(kind: str, scenario: Any, options: dict[str, Any] | None) -> Any:
    """The scenario a case of ``kind`` with ``options`` runs (see :class:`CaseKind`);
    ``ValueError`` when its options do not fit the scenario."""
    entry = KINDS.get(kind)
    if entry is None or entry.scenario is None:
        return scenario
    module, _, name = entry.scenario.partition(":")
    return getattr(importlib.import_module(module), name)(scenario, dict(options or {}))
