"""Linear transfer maps of a lattice section: the Jacobian of the tracking map at the
reference orbit (all six coordinates 0), by forward-mode AD (``torch.func.jacfwd``).

For linear maps this is the product of the element matrices; for paraxial and exact maps
it is their linearisation (ImpactX's ``ChrQuad``/``ExactQuad``/``ExactSbend`` linearise to
``Quad``/``Sbend`` at the reference orbit). The matrix acts on ImpactX's
(x, px, y, py, t, pt) and is differentiable with respect to tracker parameters passed in
``values``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.func import jacfwd

from backends.inhouse.tracker import ParamKey, Tracker
from harness.model.scenario import Scenario


def linear_map(tracker_or_scenario: Tracker | Scenario, start: int = 0, stop: int | None = None,
               values: Mapping[ParamKey, torch.Tensor] | None = None,
               device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The ``(6, 6)`` linear map of ``elements[start:stop]`` at the reference orbit.

    Args:
        tracker_or_scenario: a :class:`Tracker`, or a scenario (a tracker is built on
            ``device`` in ``dtype``).
        start, stop: element indices of the section (Python slice semantics).
        values: tracker parameter values (0-d tensors) to evaluate the map at; values of
            elements outside the section are ignored (a section is entered with the
            scenario's reference particle at ``start``).
    """
    if isinstance(tracker_or_scenario, Tracker):
        tracker = tracker_or_scenario
    else:
        tracker = Tracker(tracker_or_scenario.elements,
                          tracker_or_scenario.reference_particle, device=device, dtype=dtype)
    if start != 0 or stop is not None:
        tracker = tracker.section(start, stop)
    values = {key: value for key, value in (values or {}).items() if key in tracker.parameters}

    def one_particle(vector: torch.Tensor) -> torch.Tensor:
        out, _ = tracker.track(vector[None, :], values)
        return out[0]

    orbit = torch.zeros(6, device=tracker.device, dtype=tracker.dtype)
    return jacfwd(one_particle)(orbit)
