"""Reference-particle state seen by each element map.

ImpactX stores the reference energy as ``refpart.pt = -gamma`` and derives
``beta = sqrt(1 - 1/gamma^2)`` and ``beta*gamma = sqrt(gamma^2 - 1)`` from it
(``src/particles/ReferenceParticle.H``). Only a short RF gap changes it (``ShortRF.H``), so
``gamma`` is a float, or a tensor downstream of an RF gap whose voltage or phase is a
differentiable parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

from backends.inhouse import numeric as nm
from harness.model.reference_particle import ReferenceParticle


@dataclass(frozen=True)
class RefState:
    """Reference particle: Lorentz factor plus species data.

    Attributes:
        gamma: Lorentz factor (ImpactX ``-refpart.pt``), float or tensor.
        mass_eV: rest energy m c^2 [eV].
        charge_qe: charge [elementary charges], signed.
    """

    gamma: nm.Scalar
    mass_eV: float
    charge_qe: float

    @classmethod
    def from_reference(cls, reference: ReferenceParticle) -> RefState:
        """The state of a harness :class:`~harness.model.reference_particle.ReferenceParticle`."""
        return cls(reference.gamma, reference.mass_eV, reference.charge_qe)

    @classmethod
    def coerce(cls, reference: ReferenceParticle | RefState) -> RefState:
        """``reference`` itself when already a state, else :meth:`from_reference` of it."""
        return reference if isinstance(reference, RefState) else cls.from_reference(reference)

    @property
    def beta(self) -> nm.Scalar:
        """v/c = sqrt(1 - 1/gamma^2)."""
        return nm.sqrt(1.0 - 1.0 / (self.gamma * self.gamma))

    @property
    def beta_gamma(self) -> nm.Scalar:
        """beta*gamma = sqrt(gamma^2 - 1)."""
        return nm.sqrt(self.gamma * self.gamma - 1.0)

    @property
    def dynamic(self) -> bool:
        """Whether the state depends on a tensor (an upstream differentiable RF gap)."""
        return nm.is_tensor(self.gamma)

    def with_gamma(self, gamma: nm.Scalar) -> RefState:
        """The same species with another Lorentz factor."""
        return RefState(gamma, self.mass_eV, self.charge_qe)
