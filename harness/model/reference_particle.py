"""Reference particle: species, energy and the derived relativistic quantities.

Masses are ImpactX's (its SI constants, see docs/conventions.md §1) so that every backend is handed
bit-identical reference data; Cheetah is given the same mass explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Speed of light [m/s] (exact, SI).
C_LIGHT = 299_792_458.0

#: Species: rest energy [eV] and charge [elementary charges]. The first four are the species
#: ImpactX's ``RefPart.set_species`` knows, with its values (electron, positron, proton,
#: Hminus: ``ref.mass_MeV`` of impactx 26.10 times 1e6); the muons have the CODATA 2018 muon
#: rest energy 105.6583755 MeV.
SPECIES: dict[str, tuple[float, float]] = {
    "electron": (510_998.950691753, -1.0),
    "positron": (510_998.950691753, 1.0),
    "proton": (938_272_089.428257, 1.0),
    "Hminus": (939_294_087.3296409, -1.0),
    "muon": (105_658_375.5, -1.0),
    "antimuon": (105_658_375.5, 1.0),
}

#: The species ImpactX sets by name; others are given to it by mass and charge.
IMPACTX_SPECIES = ("electron", "positron", "proton", "Hminus")


@dataclass(frozen=True)
class ReferenceParticle:
    """The reference particle of a beam.

    Attributes:
        species: one of :data:`SPECIES`, or a label (``ion``) when ``rest_energy_eV`` and
            ``charge`` are given.
        kinetic_energy_MeV: kinetic energy [MeV].
        rest_energy_eV: rest energy [eV] of a species not in :data:`SPECIES`.
        charge: charge [elementary charges, signed] of a species not in :data:`SPECIES`.
    """

    species: str
    kinetic_energy_MeV: float
    rest_energy_eV: float | None = None
    charge: float | None = None

    @property
    def mass_eV(self) -> float:
        """Rest energy m c^2 [eV]."""
        return self._stated_or_species(self.rest_energy_eV, 0)

    @property
    def mass_MeV(self) -> float:
        """Rest energy m c^2 [MeV]."""
        return self.mass_eV * 1e-6

    @property
    def charge_qe(self) -> float:
        """Charge [elementary charges], signed."""
        return self._stated_or_species(self.charge, 1)

    def _stated_or_species(self, stated: float | None, column: int) -> float:
        """A stated value, else column ``column`` of the species' row in :data:`SPECIES`
        (0: rest energy [eV], 1: charge [e])."""
        return stated if stated is not None else SPECIES[self.species][column]

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
