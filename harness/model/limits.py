"""Bounds on every number of a scenario: the one table ``validate`` checks and
``docs/scenario-limits.md`` lists.

Each bound is far outside any accelerator (so no real scenario is refused) and far inside
float64 (so no backend overflows, divides by zero or loses every digit on a value that was
accepted). Scenario fields (``beam.*``, ``space_charge.*``, ...) are bounded in the pydantic
models of :mod:`harness.model.scenario` through :func:`bounded`; element fields
(:attr:`harness.model.lattice.Element.params`, names of
:data:`harness.model.vocabulary.ELEMENT_FIELDS`) are bounded after the PALS fields are
translated, by :func:`element_bound`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from pydantic import Field

TWO_PI = 2.0 * math.pi
HALF_PI = 0.5 * math.pi
#: Most particles a scenario (``beam.particles``, ``particle_counts``) or a beam file holds.
MAX_PARTICLES = 1_000_000_000


@dataclass(frozen=True)
class Bound:
    """A closed range ``low <= value <= high`` (``low_open``: ``low < value``; ``high_open``:
    ``value < high``; ``nonzero``: 0 excluded).

    Attributes:
        field: the scenario field (dotted path) or the element field (``Kn*`` patterns).
        low, high: the range, in ``unit``.
        unit: the field's unit.
        why: what the bound stands for.
        low_open: whether ``low`` itself is excluded.
        high_open: whether ``high`` itself is excluded.
        nonzero: whether 0 is excluded (a divisor).
    """

    field: str
    low: float
    high: float
    unit: str
    why: str
    low_open: bool = False
    high_open: bool = False
    nonzero: bool = False

    def contains(self, value: float) -> bool:
        """Whether ``value`` (finite) lies in the range."""
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below and not (self.nonzero and value == 0.0)

    def text(self) -> str:
        """The range as the documentation and the error messages write it."""
        low = "<" if self.low_open else "<="
        high = "<" if self.high_open else "<="
        nonzero = ", x != 0" if self.nonzero else ""
        return f"{_num(self.low)} {low} x {high} {_num(self.high)}{nonzero}"


def _num(value: float) -> str:
    if value == TWO_PI:
        return "2pi"
    if value == -TWO_PI:
        return "-2pi"
    if value == HALF_PI:
        return "pi/2"
    if value == -HALF_PI:
        return "-pi/2"
    return f"{value:g}"


#: Bounds of scenario fields (names as dotted paths of the scenario file).
SCENARIO_BOUNDS: dict[str, Bound] = {b.field: b for b in (
    Bound("beam.kinetic_energy_MeV", 1e-6, 1e8, "MeV",
          "1 eV (ion sources extract at keV; below, gamma - 1 loses its digits) to 100 TeV"),
    Bound("beam.mass_MeV", 0.5, 1e7, "MeV",
          "an ion: from the electron (0.511 MeV, the lightest charged particle) to ~40x "
          "uranium; a smaller mass overflows gamma"),
    Bound("beam.charge_qe", -1000.0, 1000.0, "e", "an ion's charge state (uranium: 92)"),
    Bound("beam.bunch_charge_C", 0.0, 1e-3, "C", "1 mC: a thousand times the largest "
          "bunch charges (~1 uC)"),
    Bound("beam.current_A", 0.0, 1e6, "A", "the current of a coasting beam (space_charge or "
          "envelope_space_charge kind 2d): 1 MA, far above any accelerator's (~1 kA)",
          low_open=True),
    Bound("particle_boundary.bucket_length", 0.0, 1e5, "m", "an RF bucket of at most "
          "100 km (the Fermilab Booster's is 5.7 m)", low_open=True),
    Bound("beam.twiss.beta", 1e-9, 1e6, "m", "beta functions of 1 nm to 1000 km (beta* of "
          "colliders: 0.1 mm; the largest ring beta: ~10 km)"),
    Bound("beam.twiss.alpha", -1e5, 1e5, "1", "alpha of a final focus reaches ~1e4"),
    Bound("beam.twiss.emittance", 0.0, 1.0, "m rad (m for t)", "rms emittances of real beams "
          "are below 1e-3 m rad"),
    Bound("beam.sigma_position", 0.0, 1e4, "m", "rms size of x, y or t = c dt: 10 km (a "
          "33 us bunch)"),
    Bound("beam.sigma_momentum", 0.0, 1.0, "1", "rms spread of px, py, pt (relative to the "
          "reference momentum): below 1"),
    Bound("beam.centroid.position", -1e4, 1e4, "m", "a centroid offset of x, y or t within "
          "the range of the rms sizes"),
    Bound("beam.sigma_matrix", -1e8, 1e8, "m^2, m, 1", "second moments: the squares of the "
          "rms bounds"),
    Bound("beam.dispersion", -1e4, 1e4, "m (x, y), 1 (px, py)", "dispersion with respect to "
          "-pt: rings reach tens of m"),
    Bound("beam.gaussian_cut", 0.0, 100.0, "1", "phase-space radius of a truncated Gaussian "
          "plane, in rms units (0: no cut)"),
    Bound("beam.thermal.k", 0.0, 1e6, "1/m", "focusing wavenumber of the matched channel",
          low_open=True),
    Bound("beam.thermal.kT", 0.0, 1.0, "1", "temperature k T as the variance of px, py "
          "(relative to the reference momentum): below 1", low_open=True),
    Bound("beam.thermal.normalize", 0.0, 1e6, "1", "normalisation constants of the core and "
          "halo populations", low_open=True),
    Bound("space_charge.kicks_per_element", 1, 10_000, "1", "space-charge kicks per element"),
    Bound("space_charge.domain_sigmas", 0, 1000, "1",
          "half-width of a +-k sigma mesh (Cheetah, Xsuite)", low_open=True),
    Bound("space_charge.prob_relative", 1, 10, "1",
          "mesh extent / beam extent per axis (ImpactX, in-house); below 1 the mesh misses "
          "particles"),
    Bound("space_charge.longitudinal_bins", 2, 100_000, "1",
          "bins of the line density of kinds 2p5d and gauss2p5d"),
    Bound("space_charge.gauss_nint", 3, 10_001, "1",
          "Simpson points of the Gaussian field integrals (odd)"),
    Bound("space_charge.gauss_taylor_delta", 0, 1, "1",
          "lower end of Gauss2p5D's Simpson range, in (0, 1)", low_open=True),
    Bound("space_charge.gauss_long_scale", 0, 1e4, "m",
          "Gauss2p5D's longitudinal scale L of the longitudinal kick", low_open=True),
    Bound("integrator.nslice", 1, 100_000, "1", "slices per element (also in overrides)"),
    Bound("integrator.mapsteps", 1, 100_000, "1", "integrator steps per slice (also in "
          "overrides)"),
    Bound("analytic.value", -1e100, 1e100, "unit of the observable", "a reference value "
          "(its square stays finite)"),
)}

#: Bounds of element fields (:data:`harness.model.vocabulary.ELEMENT_FIELDS`), first match wins.
ELEMENT_BOUNDS: tuple[Bound, ...] = (
    Bound("length", 0.0, 1e5, "m", "100 km: longer than any element (the LHC is 27 km)"),
    Bound("angle", -TWO_PI, TWO_PI, "rad", "at most one full turn in one bend"),
    Bound("e1", -1.5, 1.5, "rad", "pole faces below 86 deg (the edge focusing grows as "
          "tan(e) and diverges at 90 deg)"),
    Bound("e2", -1.5, 1.5, "rad", "as e1"),
    Bound("edge_int*", -10.0, 10.0, "m", "fringe-field integrals FINT*HGAP (a few cm in "
          "real magnets)"),
    Bound("h1", -1e4, 1e4, "1/m", "pole-face curvature radius of at least 0.1 mm"),
    Bound("h2", -1e4, 1e4, "1/m", "as h1"),
    Bound("tilt_ref", -TWO_PI, TWO_PI, "rad", "a rotation of at most one turn"),
    Bound("z_rot", -TWO_PI, TWO_PI, "rad", "a rotation of at most one turn"),
    Bound("x_offset", -1.0, 1.0, "m", "an element body 1 m off the beam sees no beam"),
    Bound("y_offset", -1.0, 1.0, "m", "as x_offset"),
    Bound("field_rigidity", -1e5, 1e5, "T m", "the beam's B rho at the start (the LHC's "
          "7 TeV protons: 2.3e4 T m)", nonzero=True),
    Bound("Ksol", -1e6, 1e6, "1/m", "B_s / (B rho): 20 T for a 20 uT m beam"),
    Bound("Kn0L", -1.0, 1.0, "rad", "a dipole kick below 1 rad (px, py are below 1)"),
    Bound("Ks0L", -1.0, 1.0, "rad", "as Kn0L"),
    Bound("K[ns]*L", -1e6, 1e6, "1/m^N", "integrated strength of order N: a 1 um focal "
          "length for N = 1"),
    Bound("K[ns]*", -1e6, 1e6, "1/m^(N+1)", "normalised strength of order N per metre "
          "(plasma lenses, the strongest quadrupoles, reach ~1e4 1/m^2)"),
    Bound("voltage", -1e10, 1e10, "V", "10 GV in one gap (a whole linac is a few GV)"),
    Bound("frequency", 0.0, 1e13, "Hz", "up to 10 THz (THz structures)"),
    Bound("phase", -1e3, 1e3, "rad", "an RF phase (any value is one of [-pi, pi))"),
    Bound("x_limit", 0.0, 10.0, "m", "an aperture half-width of 10 m (beam pipes: cm)",
          low_open=True),
    Bound("y_limit", 0.0, 10.0, "m", "as x_limit", low_open=True),
    Bound("elliptical", 0.0, 1.0, "1", "a flag: 1 elliptical, 0 rectangular"),
    Bound("aperture_x", 0.0, 10.0, "m", "a pipe aperture's half-axis on a thick element "
          "(as x_limit)", low_open=True),
    Bound("aperture_y", 0.0, 10.0, "m", "as aperture_x", low_open=True),
    Bound("absorb", 0.0, 1.0, "1", "a flag: 1 absorb, 0 transmit (ImpactX action)"),
    Bound("repeat_x", 0.0, 10.0, "m", "a mask period of 10 m (pepper-pots: mm)"),
    Bound("repeat_y", 0.0, 10.0, "m", "as repeat_x"),
    Bound("shift_odd_x", 0.0, 1.0, "1", "a flag: 1 shifts every odd row by repeat_x / 2"),
    Bound("vertex_[xy]*", -10.0, 10.0, "m", "a polygon aperture's vertex 10 m off axis"),
    Bound("min_radius2", 0.0, 100.0, "m^2", "the squared radius inside which a polygon "
          "aperture lets every particle through (10 m)"),
    # the ImpactX.* extension kinds (docs/scenario-format.md)
    Bound("kx", -1e5, 1e5, "1/m", "sign(K) sqrt(|K|) of a ConstF: K up to 1e10 1/m^2 (ImpactX's "
          "iota_lens examples slice a lens into ConstFs of 1.2e4 1/m)"),
    Bound("ky", -1e5, 1e5, "1/m", "as kx"),
    Bound("kt", 0.0, 1e5, "1/m", "ImpactX's ConstF refuses kt < 0 ('must have kt >= 0')"),
    Bound("ez", -1e6, 1e6, "1/m", "ChrAcc's gamma gain per metre (0: a chromatic "
          "solenoid, as impactx 26.10 tracks it)"),
    Bound("bz", -1e6, 1e6, "1/m", "q B_z / (m c) of a ChrAcc: a 20 T solenoid for MeV "
          "electrons is ~1e4"),
    Bound("k", -1e6, 1e6, "1/m^2 (ChrPlasmaLens) or 1/m (Buncher)", "a plasma-lens gradient "
          "per rigidity, or an RF wavenumber 2 pi f / c (1e6: 50 GHz)"),
    Bound("kL", -1e6, 1e6, "1/m", "integrated strength of a thin plasma lens"),
    Bound("taper", -1e6, 1e6, "1/m", "1 / horizontal dispersion of a tapered plasma lens"),
    Bound("knll", -1.0, 1.0, "m", "integrated strength of a nonlinear lens (IOTA: 4e-6)"),
    Bound("cnll", 0.0, 10.0, "m", "branch cuts at |x| >= cnll, y = 0: ImpactX's map is "
          "singular at cnll = 0", low_open=True),
    Bound("rc", -1e5, 1e5, "m", "bending radius of a thin dipole; ImpactX divides by it",
          nonzero=True),
    Bound("V", -1e3, 1e3, "1", "normalised buncher voltage q V / (p0 c)"),
    Bound("phi", -TWO_PI, TWO_PI, "rad", "ExactSbend's bend angle: at most one full turn "
          "(0 with a field is no bend)", nonzero=True),
    Bound("B", -1e3, 1e3, "T", "ExactSbend's field (the strongest magnets reach ~45 T); "
          "ImpactX divides by it", nonzero=True),
    Bound("psi", -1.5, 1.5, "rad", "as e1 (a DipEdge's pole face)"),
    Bound("g", 0.0, 10.0, "m", "a DipEdge's gap (magnet gaps: cm)"),
    Bound("R", 0.0, 1e5, "m", "a DipEdge's length scale; ImpactX divides by it",
          low_open=True),
    Bound("K[0-6]", -1e3, 1e3, "1", "a DipEdge's fringe-field integrals (K0 = pi^2/6, "
          "K2 = 1, K3 = 1/6 by default)"),
    Bound("nonlinear", 0.0, 1.0, "1", "a flag: 1 nonlinear, 0 linear fringe-field model"),
    Bound("exit", 0.0, 1.0, "1", "a flag: 1 exit, 0 entry face"),
    Bound("R*", -1e6, 1e6, "1 (m, 1/m)", "an entry Rij of a LinearMap's 6x6 matrix"),
    Bound("escale", -1e3, 1e3, "1/m", "RFCavity peak E_z [MV/m] per rest energy [MeV]: 1e3 "
          "is 0.5 GV/m for electrons, beyond any RF structure"),
    Bound("freq", 0.0, 1e13, "Hz", "RFCavity frequency up to 10 THz; ImpactX divides by the "
          "wavenumber", low_open=True),
    Bound("phi_in", -HALF_PI, HALF_PI, "rad", "PRot: the reference orbit crosses the "
          "frame's plane (ImpactX divides by cos phi)", low_open=True, high_open=True),
    Bound("phi_out", -HALF_PI, HALF_PI, "rad", "as phi_in", low_open=True, high_open=True),
    Bound("gscale", -1e6, 1e6, "1/m^2", "peak gradient per rigidity of a soft-edge "
          "quadrupole (as K[ns]* for N = 1)"),
    Bound("bscale", -1e6, 1e6, "1/m", "peak B_z / (B rho) of a soft-edge solenoid (as Ksol)"),
    Bound("cos*", -1e6, 1e6, "1", "Fourier coefficient of an on-axis profile (those of a profile "
          "normalised to 1 lie within -2 and 2)"),
    Bound("sin*", -1e6, 1e6, "1", "as cos*"),
    Bound("flag", -1.0, 1.0, "1", "a QuadEdge's side: +1 entry, -1 exit"),
    Bound("v[123]", -1e3, 1e3, "rad", "a SpinMap's design spin rotation (any angle is one "
          "of [-pi, pi))"),
    Bound("A*", -1e6, 1e6, "rad (per m, 1)", "a SpinMap's spin-orbit coupling "
          "entry Aij"),
)


def element_bound(field: str) -> Bound | None:
    """The bound of an element field (``Kn1``, ``Ks2L``, ``length``, ...), or None."""
    for bound in ELEMENT_BOUNDS:
        if fnmatchcase(field, bound.field):
            return bound
    return None


def within(name: str) -> Any:
    """The pydantic ``Field`` of the bound ``name`` of :data:`SCENARIO_BOUNDS`, for
    ``Annotated[float, within(name)]``."""
    bound = SCENARIO_BOUNDS[name]
    if bound.low_open:
        return Field(gt=bound.low, le=bound.high)
    return Field(ge=bound.low, le=bound.high)


def all_bounds() -> list[Bound]:
    """Every bound, scenario fields first."""
    return [*SCENARIO_BOUNDS.values(), *ELEMENT_BOUNDS]


def markdown_table() -> str:
    """The bounds as the Markdown table of ``docs/scenario-limits.md``."""
    rows = ["| field | range | unit | why |", "|---|---|---|---|"]
    for bound in all_bounds():
        rows.append(f"| `{bound.field}` | {bound.text()} | {bound.unit} | {bound.why} |")
    return "\n".join(rows)
