"""Reference particle: species, energy and the derived relativistic quantities.

Masses are ImpactX's (its SI constants, see PHYSICS.md §1) so that every backend is handed
bit-identical reference data; Cheetah is given the same mass explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Speed of light [m/s] (exact, SI).
C_LIGHT = 299_792_458.0

#: Species: rest energy [eV] and charge [elementary charges].
SPECIES: dict[str, tuple[float, float]] = {
    "electron": (510_998.950691753, -1.0),
    "positron": (510_998.950691753, 1.0),
    "proton": (938_272_089.428257, 1.0),
}


@dataclass(frozen=True)
class Reference:
    """The reference particle of a beam.

    Attributes:
        species: one of :data:`SPECIES`.
        kinetic_energy_MeV: kinetic energy [MeV].
    """

    species: str
    kinetic_energy_MeV: float

    @property
    def mass_eV(self) -> float:
        """Rest energy m c^2 [eV]."""
        return SPECIES[self.species][0]

    @property
    def mass_MeV(self) -> float:
        """Rest energy m c^2 [MeV]."""
        return self.mass_eV * 1e-6

    @property
    def charge_qe(self) -> float:
        """Charge [elementary charges], signed."""
        return SPECIES[self.species][1]

    @property
    def gamma(self) -> float:
        """Lorentz factor gamma = 1 + Ek / (m c^2)."""
        return 1.0 + self.kinetic_energy_MeV * 1e6 / self.mass_eV

    @property
    def beta_gamma(self) -> float:
        """beta*gamma = sqrt(gamma^2 - 1)."""
        return math.sqrt(self.gamma**2 - 1.0)

    @property
    def beta(self) -> float:
        """v/c of the reference particle."""
        return self.beta_gamma / self.gamma

    @property
    def total_energy_eV(self) -> float:
        """Total energy E = gamma m c^2 [eV]."""
        return self.gamma * self.mass_eV

    @property
    def p0c_eV(self) -> float:
        """Reference momentum times c [eV]."""
        return self.beta_gamma * self.mass_eV

    @property
    def rigidity_Tm(self) -> float:
        """Magnetic rigidity B*rho = p/q [T m], signed with the charge (ImpactX's convention)."""
        return self.p0c_eV / C_LIGHT / self.charge_qe
