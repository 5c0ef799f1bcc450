"""ImpactX's own envelope tracking (``ImpactX.track_envelope``) of a scenario: the 6x6 beam
covariance matrix through the lattice that :mod:`backends.impactx` builds.

ImpactX's envelope mode (``src/tracking/envelope.cpp``) pushes, per element and slice, the
reference particle and then the covariance matrix through the element's linear
``transport_map`` (``src/elements/mixin/lineartransport.H``: ``cm = R * cm * R^T``). The
covariance is set directly on the simulation's envelope (``ImpactX.envelope.envelope``, a
``Map6x6``) after ``init_envelope(ref, distribution)``, which needs a distribution only to
exist; each harness element is then tracked as its own lattice, so the covariance after
every element is read back (ImpactX keeps the envelope and its reference particle between
``track_envelope`` calls).

Units: the covariance of ImpactX's (x [m], px, y [m], py, t [m], pt). Envelope space charge
(``algo.space_charge = 2D | 3D`` in envelope mode, ``src/envelope/spacecharge/``) is the
scenario's ``envelope_space_charge`` (:func:`space_charge_of`) or is given apart from it
(``space_charge``: kind and intensity, as :class:`backends.inhouse.envelope.
EnvelopeSpaceCharge`); each element then runs its own ``nslice`` slices. A scenario's
particle-mode ``space_charge`` block is refused. :class:`ImpactXEnvelope` is the adapter's
:class:`backends.base.PreparedEnvelope` (``tracking: envelope``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from backends.base import Plan, PreparedEnvelope, Unsupported
from backends.impactx import (
    _SHARED,
    ImpactXBackend,
    MeshSettings,
    RunSettings,
    translate,
)

if TYPE_CHECKING:
    from harness.model.scenario import Scenario


class EnvelopePush(NamedTuple):
    """ImpactX's envelope space charge: ``kind`` ``"2D"`` or ``"3D"`` (``algo.space_charge``)
    and ``intensity``, the beam current [A] (2D) or bunch charge [C] (3D)."""

    kind: str
    intensity: float


def space_charge_of(scenario: Scenario) -> EnvelopePush | None:
    """The envelope space charge of a scenario's ``envelope_space_charge`` (None without)."""
    block = getattr(scenario, "envelope_space_charge", None)
    if block is None:
        return None
    return EnvelopePush(block.kind.upper(), float(scenario.envelope_intensity or 0.0))


def supports(scenario: Scenario) -> Unsupported | None:
    """Why ImpactX's envelope mode cannot run ``scenario`` through this module (None when
    it can): the ImpactX adapter's own check (kinds, fields), and no space charge."""
    if scenario.space_charge is not None:
        return Unsupported("space_charge: ImpactX's envelope space charge (2D/3D envelope "
                           "push) is not driven from a scenario's space_charge block")
    verdict = ImpactXBackend().supports(scenario)
    return verdict if isinstance(verdict, Unsupported) else None


def _set_reference(ref, scenario: Scenario) -> None:
    """ImpactX's reference particle of the scenario (as :meth:`backends.impactx.
    ImpactXPrepared.inject` sets it)."""
    from harness.model.reference_particle import IMPACTX_SPECIES

    reference = scenario.reference_particle
    ref.reset()
    if reference.species in IMPACTX_SPECIES:
        ref.set_species(reference.species)
    else:
        ref.set_charge_qe(reference.charge_qe).set_mass_MeV(reference.mass_MeV)
    ref.set_kin_energy_MeV(reference.kinetic_energy_MeV)


def track_envelope(scenario: Scenario, sigma: ArrayLike, space_charge: Any = None
                   ) -> np.ndarray:
    """The final covariance of the whole lattice tracked as one ImpactX lattice (one
    ``track_envelope`` call)."""
    return track_envelope_elements(scenario, sigma, space_charge, each=False)[-1]


def track_envelope_elements(scenario: Scenario, sigma: ArrayLike, space_charge: Any = None,
                            each: bool = True) -> list[np.ndarray]:
    """Track the covariance ``sigma`` ((6, 6), ImpactX units; an array or a CPU tensor) with
    ImpactX's ``track_envelope``: the matrices at the entrance and after each harness
    element (``len(elements) + 1``; ``each=False``: the entrance and the end, the lattice
    tracked in one call). ``space_charge``: None, or an object with ``kind``
    (``"2D"``, ``"3D"``) and ``intensity`` (beam current [A] for 2D, bunch charge [C] for
    3D), ImpactX's ``algo.space_charge`` and ``init_envelope`` intensity.

    Raises ValueError with the reason when the scenario cannot run (:func:`supports`).
    """
    import impactx
    from impactx import distribution, elements

    refused = supports(scenario)
    if refused is not None:
        raise ValueError(refused.reason)
    sigma = np.array(sigma, dtype=np.float64)
    if sigma.shape != (6, 6):
        raise ValueError(f"sigma must have shape (6, 6), got {sigma.shape}")
    sim = _SHARED.acquire(MeshSettings())
    _SHARED.apply(RunSettings())
    _SHARED.owner = None  # any injected particle beam is no longer the loaded one
    sim.lattice.clear()
    ref = sim.beam.ref
    _set_reference(ref, scenario)
    # the distribution only creates the envelope; the covariance is set right after
    kind = None if space_charge is None else str(space_charge.kind)
    if kind not in (None, "2D", "3D"):
        raise ValueError(f"envelope space charge kind must be '2D' or '3D', got {kind!r}")
    intensity = None if space_charge is None else float(space_charge.intensity)
    sim.init_envelope(ref, distribution.Gaussian(
        lambdaX=1.0, lambdaY=1.0, lambdaT=1.0, lambdaPx=1.0, lambdaPy=1.0, lambdaPt=1.0),
        intensity)
    sim.envelope.envelope = impactx.Map6x6(sigma)
    states = [sim.envelope.envelope.to_numpy().copy()]
    reference = scenario.reference_particle
    sim.space_charge = kind or False
    groups = [[element] for element in scenario.elements] if each else [scenario.elements]
    try:
        for group in groups:
            sim.lattice.clear()
            # built afresh per track: ImpactX finalises element data after each track
            sim.lattice.extend([spec.build(elements) for element in group
                                for spec in translate(element, reference)])
            sim.track_envelope()
            states.append(sim.envelope.envelope.to_numpy().copy())
    finally:
        sim.space_charge = False  # process-global in ImpactX
        sim.lattice.clear()
    return states


class ImpactXEnvelope(PreparedEnvelope):
    """ImpactX's envelope mode for a scenario with ``tracking: envelope``: each
    :meth:`run` tracks the covariance through the whole lattice in one ``track_envelope``
    call (the lattice rebuilt each time, as ImpactX finalises element data after a track)."""

    def __init__(self, scenario: Scenario, model: str):
        self.scenario = scenario
        self.model = model
        self.threads = 1
        self.space_charge = space_charge_of(scenario)

    @classmethod
    def from_plan(cls, plan: Plan) -> ImpactXEnvelope:
        """The envelope tracker of the ImpactX adapter's plan."""
        return cls(plan.scenario, plan.model)

    def run(self, sigma: np.ndarray) -> np.ndarray:
        """The final covariance (6, 6) [ImpactX units]."""
        return track_envelope(self.scenario, sigma, self.space_charge)
