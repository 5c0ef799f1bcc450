"""Cheetah's envelope tracking of a scenario: a ``cheetah.ParameterBeam`` (mean and 7x7
covariance) through the Cheetah elements that :mod:`backends.cheetah` builds.

Cheetah propagates a ``ParameterBeam`` through each element's first-order transfer map
(``cheetah.accelerator.element.Element._track_first_order``: ``cov_out = R cov R^T`` with
``R = first_order_transfer_map(energy, species)``), the same model as ImpactX's envelope
mode. Elements the particle adapter runs with a nonlinear tracking method
(``drift_kick_drift`` drifts, quadrupoles and bends, ``second_order`` sextupoles) are set
to ``tracking_method = "linear"``: Cheetah tracks a ``ParameterBeam`` only through first-order
maps. Whether that first-order map equals ImpactX's ``transport_map`` is what the
comparison measures (``tests/test_envelope.py``).

Coordinates: Cheetah's (x, px, y, py, tau, p, 1) with tau = ImpactX t and p = -pt
(:func:`backends.cheetah.to_cheetah_columns`), a linear map, so the covariance converts
exactly as ``Sigma_cheetah = J Sigma_impactx J^T`` with J = diag(1, 1, 1, 1, 1, -1) and a
seventh row and column of zeros (the constant coordinate 1 has no spread); the mean is
(0, 0, 0, 0, 0, 0, 1) (envelope about the reference orbit, as ImpactX). Units: ImpactX's
(x [m], px, y [m], py, t [m], pt). :class:`CheetahEnvelope` is the adapter's
:class:`backends.base.PreparedEnvelope` (``tracking: envelope``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from backends.base import Plan, PreparedEnvelope, Unsupported
from backends.cheetah import (  # noqa: F401 - the covariance helpers are used from here too
    CheetahBackend,
    J,
    _Factory,
    _piece,
    linearised,
    parameter_beam,
    plan_element,
    to_cheetah_covariance,
    to_impactx_covariance,
    track_group,
)

if TYPE_CHECKING:
    import torch

    from harness.model.scenario import Scenario


def supports(scenario: Scenario) -> Unsupported | str:
    """Unsupported with the reason, or the model label of the Cheetah particle adapter
    (``stand-in:cheetah(...)`` where its maps differ from ImpactX's)."""
    if scenario.space_charge is not None:
        return Unsupported("space_charge: Cheetah's ParameterBeam has no space-charge model "
                           "(SpaceChargeKick acts on a ParticleBeam)")
    verdict = CheetahBackend().supports(scenario)
    if isinstance(verdict, Unsupported):
        return verdict
    return verdict.model


def element_groups(scenario: Scenario, device: str = "cpu", dtype: str = "float64"
                   ) -> list[list[Any]]:
    """The Cheetah elements of each harness element (as :func:`backends.cheetah.
    build_elements` builds them without space charge), with first-order tracking."""
    make = _Factory(device, dtype)
    groups = []
    for index, element in enumerate(scenario.elements):
        plan = plan_element(element)
        if isinstance(plan, Unsupported):
            raise ValueError(plan.reason)
        pieces = _piece(element, plan, dict(element.params), 1.0, True, True,
                        f"{element.name}_{index}", make)
        groups.append([linearised(piece) for piece in pieces])
    return groups


def track_envelope(scenario: Scenario, sigma, device: str = "cpu",
                   dtype: str = "float64") -> torch.Tensor:
    """The final covariance of :func:`track_envelope_elements`."""
    return track_envelope_elements(scenario, sigma, device, dtype)[-1]


def track_envelope_elements(scenario: Scenario, sigma, device: str = "cpu",
                            dtype: str = "float64") -> list[torch.Tensor]:
    """Track the ImpactX covariance ``sigma`` ((6, 6), array or tensor) as a Cheetah
    ``ParameterBeam``: the (6, 6) ImpactX covariances at the entrance and after each
    harness element. Raises ValueError with the reason when the scenario
    cannot run (:func:`supports`)."""
    verdict = supports(scenario)
    if isinstance(verdict, Unsupported):
        raise ValueError(verdict.reason)
    beam = parameter_beam(scenario, sigma, device, dtype)
    states = [to_impactx_covariance(beam.cov)]
    for group in element_groups(scenario, device, dtype):
        beam = track_group(group, beam)
        states.append(to_impactx_covariance(beam.cov))
    return states


class CheetahEnvelope(PreparedEnvelope):
    """Cheetah's envelope tracking of a scenario with ``tracking: envelope``: the elements
    built once (first-order tracking), each :meth:`run` a ``ParameterBeam`` through them.

    The model is the scenario's own (:func:`harness.model.scenario.model_signature`): in
    envelope mode the first-order maps of Cheetah's particle-mode stand-ins (its
    drift-kick-drift quadrupole, its second-order sextupole) are ImpactX's transport maps
    (measured to round-off, ``docs/envelope.md``)."""

    def __init__(self, scenario: Scenario, device: str = "cpu", dtype: str = "float64"):
        import torch

        from harness.model.scenario import model_signature

        verdict = supports(scenario)
        if isinstance(verdict, Unsupported):
            raise ValueError(verdict.reason)
        self.scenario, self.device, self.dtype = scenario, device, dtype
        self.model = model_signature(scenario)
        self.threads = torch.get_num_threads()
        self.elements = [piece for group in element_groups(scenario, device, dtype)
                         for piece in group]

    @classmethod
    def from_plan(cls, plan: Plan) -> CheetahEnvelope:
        """The envelope tracker of the Cheetah adapter's plan."""
        return cls(plan.scenario, plan.device, plan.dtype)

    def run(self, sigma: np.ndarray) -> Any:
        """The final ParameterBeam's covariance (7, 7 Cheetah; a tensor)."""
        beam = parameter_beam(self.scenario, sigma, self.device, self.dtype)
        return track_group(self.elements, beam).cov

    def synchronize(self) -> None:
        """Wait for queued CUDA work."""
        from backends.torch_support import synchronize

        synchronize(self.device)

    def extract(self, result: Any) -> np.ndarray:
        """The final (6, 6) ImpactX covariance as float64 numpy."""
        return to_impactx_covariance(result.detach().cpu().double().numpy())
