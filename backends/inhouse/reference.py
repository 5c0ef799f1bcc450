"""Reference-particle state seen by each element map.

ImpactX stores the reference energy as ``refpart.pt = -gamma`` and derives
``beta = sqrt(1 - 1/gamma^2)`` and ``beta*gamma = sqrt(gamma^2 - 1)`` from it
(``src/particles/ReferenceParticle.H``). Only the RF elements change it (``ShortRF.H``,
``ChrUniformAcc.H``, ``RFCavity.H``), so ``gamma`` is a float, or a tensor downstream of
one whose parameters are differentiable.

The reference time ``t`` [m, c times the time] counts from the start of the lattice
(ImpactX starts its reference particle at ``refpart.t = 0``); every thick element advances
it by its length / beta (``Drift.H``, ``Quad.H``, ...: ``refpart.t = t - step*pt`` with
``step = slice_ds / sqrt(pt^2 - 1)``; a bend by its arc length / beta, ``Sbend.H``). Only
``RFCavity`` reads it: its RF phase is ``k t + phase`` (``RFCavity.H``).
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
        t: reference time [m] since the start of the lattice (c times the time), float
            or tensor.
    """

    gamma: nm.Scalar
    mass_eV: float
    charge_qe: float
    t: nm.Scalar = 0.0

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
        """The same species at the same time with another Lorentz factor."""
        return RefState(gamma, self.mass_eV, self.charge_qe, self.t)

    def with_time(self, t: nm.Scalar) -> RefState:
        """The same reference particle at time ``t`` [m]."""
        return RefState(self.gamma, self.mass_eV, self.charge_qe, t)

    def advanced(self, length: nm.Scalar) -> RefState:
        """After a path of ``length`` [m] at constant energy: t + length / beta."""
        return self.with_time(self.t + length / self.beta)
