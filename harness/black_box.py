"""The black-box objective of gradient and tuning cases: observables at the lattice end
for given parameter values, by preparing and tracking a copy of the scenario with any
backend (no derivatives; finite differences and derivative-free methods call it).

Each evaluation edits the scenario (:func:`harness.model.scenario_edit.with_values`),
prepares it once for a single track (:meth:`backends.base.Backend.prepare_single_use`;
an evaluation at the scenario's own values prepares from the case's plan, made once by the
parent, without deciding or translating again; an edited scenario is a new lattice, planned
once),
tracks the *same* initial particles (common random numbers) or, when a beam parameter
changed, particles drawn again from the edited beam with the scenario's seed
(:func:`harness.model.particles.generate`), and computes the observables of the
surviving particles (:func:`harness.model.observables.compute_survivors`). An envelope
scenario (``tracking: envelope``) propagates the edited beam's covariance
(:func:`harness.model.particles.beam_covariance`) through the backend's envelope mode
instead and gives the observables of the final covariance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class BlackBox:
    """Observables of a scenario for parameter values, from one track each.

    Args:
        backend: a backend instance; scenario: the unchanged scenario, or the case's
            :class:`backends.base.Plan` of it (the evaluations at its own values prepare
            from the plan).
        initial: ``(N, 6)`` initial particles (ImpactX coordinates).
        device, dtype: where and in which precision the backend tracks.

    Attributes:
        evaluations: tracks made so far.
    """

    def __init__(self, backend: Any, scenario: Any, initial: np.ndarray, device: str,
                 dtype: str):
        from backends.base import Plan

        self.backend = backend
        #: The case's plan (None: none handed over; the scenario is planned when prepared).
        self.plan: Plan | None = scenario if isinstance(scenario, Plan) else None
        scenario = scenario.scenario if isinstance(scenario, Plan) else scenario
        self.scenario = scenario
        self.initial = initial
        self.device = device
        self.dtype = dtype
        self.base_dir = Path(scenario.source_file).parent if scenario.source_file else None
        self.evaluations = 0

    def observables(self, values: dict[str, float] | None,
                    names: list[str]) -> dict[str, float]:
        """The observables ``names`` with ``values`` (parameter name -> value, units of the
        scenario file) replacing the scenario's."""
        from harness.model import observables
        from harness.model.particles import generate
        from harness.model.scenario_edit import changes_particles, with_values

        values = values or {}
        scenario = with_values(self.scenario, values) if self._edits(values) else self.scenario
        if scenario.tracking == "envelope":
            return self._envelope(scenario, names)
        particles = self.initial
        if changes_particles(list(values)):
            particles = generate(scenario.beam, len(self.initial), base_dir=self.base_dir)
        planned = self.plan if scenario is self.scenario and self.plan is not None else scenario
        prepared = self.backend.prepare_single_use(planned, self.device, self.dtype)
        try:
            final = prepared.track(particles)
        finally:
            prepared.close()
        self.evaluations += 1
        return observables.compute_survivors(final, list(names), scenario.reference_particle)

    def _edits(self, values: dict[str, float]) -> bool:
        """Whether ``values`` differ from the scenario's own (an evaluation at its own values
        tracks the case's lattice, from the case's plan)."""
        from harness.model.parameters import resolve_parameters

        if not values:
            return False
        own = resolve_parameters(self.scenario, list(values))
        return any(float(values[p.name]) != float(p.value) for p in own)

    def _envelope(self, scenario: Any, names: list[str]) -> dict[str, float]:
        """The observables ``names`` of the final covariance of an envelope scenario."""
        from harness.model import observables
        from harness.model.particles import beam_covariance

        plan = (self.plan if scenario is self.scenario and self.plan is not None
                else self.backend.planned(scenario, self.device, self.dtype))
        prepared = self.backend.prepare_planned(plan)
        try:
            final = prepared.track(beam_covariance(scenario.beam))
        finally:
            prepared.close()
        self.evaluations += 1
        reference = scenario.reference_particle
        return {k: float(v) for k, v in observables.observables_from_moments(
            np.zeros(6), final, [n for n in names if n != "survival"],
            reference.beta_gamma, reference.beta).items()} | (
            {"survival": 1.0} if "survival" in names else {})
