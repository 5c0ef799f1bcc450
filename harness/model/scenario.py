"""The scenario schema: one YAML document = PALS lattice + beam + model + observables +
gradients (+ a tuning block), as pydantic models with their bounds.

Files are read and checked as a whole (lattice file, beam file, gradient parameters, tuning
block) by :mod:`harness.model.load`; every validation failure raises
:class:`harness.model.errors.ScenarioError` naming the file, the dotted field path and what was
expected.
"""

from __future__ import annotations

import math
import re
from functools import cached_property
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from harness.model.errors import ScenarioError
from harness.model.lattice import Element, ElementSettings, build_elements
from harness.model.limits import MAX_PARTICLES, SCENARIO_BOUNDS, within
from harness.model.observables import observable_names
from harness.model.reference_particle import SPECIES, ReferenceParticle
from harness.model.spin import GYROMAGNETIC_ANOMALY
from harness.model.tuning import TuningBlock
from harness.model.vocabulary import MODEL_TIERS

Tier = Literal["linear", "paraxial", "exact"]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
#: Bounded fields (:data:`harness.model.limits.SCENARIO_BOUNDS`).
Beta = Annotated[float, within("beam.twiss.beta")]
Alpha = Annotated[float, within("beam.twiss.alpha")]
Emittance = Annotated[float, within("beam.twiss.emittance")]
SigmaPosition = Annotated[float, within("beam.sigma_position")]
SigmaMomentum = Annotated[float, within("beam.sigma_momentum")]
CentroidPosition = Annotated[float, within("beam.centroid.position")]
DispersionValue = Annotated[float, within("beam.dispersion")]
CutValue = Annotated[float, within("beam.gaussian_cut")]
Slices = Annotated[int, within("integrator.nslice")]
Steps = Annotated[int, within("integrator.mapsteps")]
#: Orders of ImpactX's symplectic integrators (``int_order`` of ``ExactQuad``,
#: ``ExactMultipole``, ``ExactCFbend``; ``src/particles/integrators/Integrators.H``).
IntOrder = Literal[2, 4, 6]

#: Particle distributions of a beam (``file``: particles read from a file).
Distribution = Literal["gaussian", "waterbag", "kv", "semigaussian", "kurth6d", "kurth4d",
                       "triangle", "thermal", "file"]




#: Largest kinetic energy accepted [MeV] (100 TeV; beyond, no accelerator and no float64
#: momentum deviation is meaningful).
MAX_KINETIC_ENERGY_MEV = SCENARIO_BOUNDS["beam.kinetic_energy_MeV"].high
#: Most repetitions of the lattice (``periods``).
MAX_PERIODS = 100_000
#: Most tracked elements after ``periods`` are applied.
MAX_TRACKED_ELEMENTS = 1_000_000
#: Space-charge mesh: cells per dimension (at least 2) and in total.
MIN_GRID_CELLS = 2
MAX_GRID_CELLS_PER_DIM = 1024
MAX_GRID_CELLS = 256**3

#: Scenario names become parts of file names (particle files, reports): a letter or digit,
#: then letters, digits and ``_ . + -``, at most 100 characters, no ``..``.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")


def _spelled(value: object) -> object:
    """true/false (and inside lists) as the text YAML read them, so that a number field
    refuses them with its own path instead of reading 1 or 0."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return [_spelled(v) for v in value]
    return value


def _is_number_field(annotation: object) -> bool:
    text = str(annotation)
    return ("int" in text or "float" in text) and "str" not in text and "bool" not in text


class _Strict(BaseModel):
    # allow_inf_nan=False: NaN and +-inf are refused in every float field of every group
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: _spelled(v) if k in fields and _is_number_field(fields[k].annotation)
                else v for k, v in data.items()}


Correlation = Annotated[float, Field(gt=-1, lt=1)]


class Twiss(_Strict):
    """Transverse Twiss parameters: beta [m] > 0, alpha [1], rms geometric emittance
    [m rad] >= 0 (0: a cold plane, all particles on the axis with zero angle)."""

    beta_x: Beta
    alpha_x: Alpha = 0.0
    emittance_x: Emittance
    beta_y: Beta
    alpha_y: Alpha = 0.0
    emittance_y: Emittance


class Longitudinal(_Strict):
    """Longitudinal plane, either rms spreads or Twiss parameters (one form, not both).

    * ``sigma_t`` = c*sigma_dt [m] >= 0, ``sigma_pt`` [1] >= 0 (0: a cold beam) and the
      ``correlation`` r = <t pt>/(sigma_t sigma_pt) in (-1, 1);
    * or ``beta_t`` [m] > 0, ``alpha_t`` [1], ``emittance_t`` [m] >= 0, read like the
      transverse Twiss block (ImpactX's ``twiss()`` helper takes ``beta_t, alpha_t,
      emitt_t``): sigma_t = sqrt(eps_t beta_t), sigma_pt = sqrt(eps_t gamma_t),
      r = -alpha_t / sqrt(1 + alpha_t^2).
    """

    sigma_t: SigmaPosition | None = None
    sigma_pt: SigmaMomentum | None = None
    correlation: Correlation | None = None
    beta_t: Beta | None = None
    alpha_t: Alpha | None = None
    emittance_t: Emittance | None = None

    @model_validator(mode="after")
    def _one_form(self):
        rms = [k for k in ("sigma_t", "sigma_pt", "correlation") if getattr(self, k) is not None]
        twiss = [k for k in ("beta_t", "alpha_t", "emittance_t") if getattr(self, k) is not None]
        if rms and twiss:
            raise ValueError("either sigma_t, sigma_pt (, correlation) or beta_t, emittance_t "
                             f"(, alpha_t), not both (got {rms + twiss})")
        if twiss:
            missing = [k for k in ("beta_t", "emittance_t") if getattr(self, k) is None]
        else:
            missing = [k for k in ("sigma_t", "sigma_pt") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"the field(s) {missing} of the longitudinal block")
        return self

    @property
    def is_twiss(self) -> bool:
        """Whether the plane is given by beta_t, alpha_t, emittance_t."""
        return self.beta_t is not None

    def given(self) -> dict[str, float]:
        """The fields of the chosen form, defaults filled in (``correlation``/``alpha_t``
        0)."""
        if self.beta_t is not None and self.emittance_t is not None:
            return {"beta_t": float(self.beta_t), "alpha_t": float(self.alpha_t or 0.0),
                    "emittance_t": float(self.emittance_t)}
        assert self.sigma_t is not None and self.sigma_pt is not None  # by _one_form
        return {"sigma_t": float(self.sigma_t), "sigma_pt": float(self.sigma_pt),
                "correlation": float(self.correlation or 0.0)}


#: A centroid offset in a momentum coordinate (px, py, pt, in units of the reference
#: momentum): below 1 in magnitude.
Offset = Annotated[float, Field(gt=-1, lt=1)]


class Centroid(_Strict):
    """Mean offsets of the generated beam from the reference particle, in the particle
    coordinates of ImpactX (``x``, ``y`` [m]; ``px``, ``py`` [1, p/p0]; ``t`` = c*dt [m];
    ``pt`` = -dE/(p0 c) [1]): every particle of the distribution is shifted by them, so
    every backend tracks the same off-centre particles. A mean momentum offset
    ``delta = dp/p0`` is ``pt = -beta0 * delta`` to first order (ImpactX's ``meanPt``)."""

    x: CentroidPosition = 0.0
    px: Offset = 0.0
    y: CentroidPosition = 0.0
    py: Offset = 0.0
    t: CentroidPosition = 0.0
    pt: Offset = 0.0

    def vector(self) -> tuple[float, float, float, float, float, float]:
        """``(x, px, y, py, t, pt)``, the column order of the particle arrays."""
        return (self.x, self.px, self.y, self.py, self.t, self.pt)


class Rms(_Strict):
    """Uncoupled rms sizes per coordinate and the position-momentum correlation per plane
    (ImpactX's lambda/mu input for uncorrelated beams); allows a cold beam (sigma_p* = 0)."""

    sigma_x: SigmaPosition
    sigma_px: SigmaMomentum
    sigma_y: SigmaPosition
    sigma_py: SigmaMomentum
    sigma_t: SigmaPosition
    sigma_pt: SigmaMomentum
    corr_x: Correlation = 0.0
    corr_y: Correlation = 0.0
    corr_t: Correlation = 0.0


class Ellipse(_Strict):
    """ImpactX's own phase-space ellipse input, spelled as in ImpactX's ``distribution``
    classes (``lambdaX, lambdaY, lambdaT, lambdaPx, lambdaPy, lambdaPt, muxpx, muypy,
    mutpt``; lengths [m], momenta [1]).

    ImpactX (``src/particles/distribution/Gaussian.H`` and the other distributions) turns
    unit samples (u, v) of each plane into ``x = lambdaX u / r``, ``px = lambdaPx (v -
    muxpx u / r)`` with ``r = sqrt(1 - muxpx^2)``, so the plane's moments are

        <x^2> = lambdaX^2 / r^2,  <px^2> = lambdaPx^2 / r^2,
        <x px> = -muxpx lambdaX lambdaPx / r^2,

    i.e. in Twiss form eps = lambdaX lambdaPx / r, beta = lambdaX / (lambdaPx r),
    alpha = +muxpx / r: **muxpx > 0 is a converging beam (alpha > 0, <x px> < 0)**. The
    inverse is ImpactX's ``twiss()`` helper: lambdaX = sqrt(eps/gamma), lambdaPx =
    sqrt(eps/beta), muxpx = alpha / sqrt(beta gamma). The same holds for (y, py) with
    muypy and (t, pt) with mutpt. A lambda of 0 gives a cold coordinate.
    """

    lambdaX: SigmaPosition
    lambdaY: SigmaPosition
    lambdaT: SigmaPosition
    lambdaPx: SigmaMomentum
    lambdaPy: SigmaMomentum
    lambdaPt: SigmaMomentum
    muxpx: Correlation = 0.0
    muypy: Correlation = 0.0
    mutpt: Correlation = 0.0


class Dispersion(_Strict):
    """Dispersion of the generated beam, as ImpactX states it (``dispX``, ``dispPx``,
    ``dispY``, ``dispPy`` of every ``src/particles/distribution/*.H``): after the
    distribution's shape and ellipse, before the centroid, each particle is moved along its
    own ``pt``:

        x -= x_D pt,  px -= px_D pt,  y -= y_D pt,  py -= py_D pt

    (``x``, ``y`` [m]; ``px``, ``py`` [1]). With ``pt = -beta0 delta`` to first order, the
    usual dispersion ``D = dx/d delta`` is ``beta0 x_D``. The covariance gains
    ``<x pt> = -x_D <pt^2>`` and ``<x^2> += x_D^2 <pt^2>`` (:func:`harness.model.particles.
    beam_covariance` carries them, also into envelope tracking)."""

    x: DispersionValue = 0.0
    px: DispersionValue = 0.0
    y: DispersionValue = 0.0
    py: DispersionValue = 0.0

    def vector(self) -> tuple[float, float, float, float]:
        """``(x, px, y, py)``."""
        return (self.x, self.px, self.y, self.py)


class GaussianCut(_Strict):
    """Truncation of a ``gaussian`` beam per plane, ImpactX ``Gaussian`` ``cutX``,
    ``cutY``, ``cutT`` (``src/particles/distribution/Gaussian.H``): each plane's unit pair
    (u, v) is drawn inside the phase-space circle of radius ``cut`` (in rms units of the
    untruncated normal) and scaled back to unit variance; 0 leaves the plane uncut."""

    x: CutValue = 0.0
    y: CutValue = 0.0
    t: CutValue = 0.0


class Thermal(_Strict):
    """ImpactX's stationary (bi-)thermal beam (``distribution.Thermal``,
    ``src/particles/distribution/Thermal.H``; J. Qiang et al., EPAC2004): a core and a halo
    population (weight ``halo``) in an isotropic linear focusing channel of wavenumber
    ``k`` [1/m], with temperatures ``kT``, ``kT_halo`` [1] (the variances of px, py in the
    beam frame) and normalisation constants ``normalize``, ``normalize_halo`` [1]. The
    radial profile solves Poisson's equation with the beam's own charge
    (``beam.bunch_charge_C`` and the reference particle); its particles are not an affine
    image of unit samples, so it has no ellipse input."""

    k: Annotated[float, within("beam.thermal.k")]
    kT: Annotated[float, within("beam.thermal.kT")]
    kT_halo: Annotated[float, within("beam.thermal.kT")]
    normalize: Annotated[float, within("beam.thermal.normalize")]
    normalize_halo: Annotated[float, within("beam.thermal.normalize")]
    halo: Annotated[float, Field(ge=0, le=1)] = 0.0


#: Species by name (case-insensitive), spelled as ImpactX's ``RefPart.set_species`` knows
#: them (electron, positron, proton, Hminus) plus the muons; ``ion`` takes ``charge_qe``
#: and ``mass_MeV``.
ION = "ion"


def canonical_species(name: str) -> str | None:
    """The canonical spelling of a species name (case-insensitive), or None."""
    lowered = name.strip().lower()
    for known in (*SPECIES, ION):
        if known.lower() == lowered:
            return known
    return None


class Spin(_Strict):
    """Initial spins (Thomas-BMT spin tracking; :mod:`harness.model.spin`): exactly one of

    * ``polarization`` ``[Px, Py, Pz]`` (dimensionless, 0 < |P| <= 1): spins drawn from
      ImpactX's von Mises-Fisher law (``SpinvMF``) around P/|P|, |P| = 1 all along P, with
      ``seed`` (default: a stream derived from the beam's seed);
    * ``file``: a ``.npy`` (N, 3) array or ``.csv`` (header ``sx,sy,sz``) of spins of length
      at most 1 (unit spins, or a macro-particle's polarization), one row per particle
      (stored as an absolute path, like ``beam.file``).

    ``push`` (default true): the elements turn the spins (Thomas-BMT, ImpactX ``sim.spin =
    True``); false: the particles carry their spins through the lattice unchanged, as
    ImpactX does with ``sim.spin = False`` (a lost particle's spin is lost with it).
    """

    polarization: tuple[Annotated[float, Field(ge=-1, le=1)],
                        Annotated[float, Field(ge=-1, le=1)],
                        Annotated[float, Field(ge=-1, le=1)]] | None = None
    file: str | None = None
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    push: StrictBool = True

    @model_validator(mode="after")
    def _one_source(self):
        if (self.polarization is None) == (self.file is None):
            raise ValueError("exactly one of 'polarization' ([Px, Py, Pz]) or 'file' (.npy or "
                             ".csv of (N, 3) spins, |s| <= 1)")
        if self.file is not None and self.seed is not None:
            raise ValueError("'seed' only with 'polarization' (a spin file is not drawn)")
        if self.polarization is not None:
            magnitude = math.sqrt(sum(v * v for v in self.polarization))
            if not 0.0 < magnitude <= 1.0 + 1e-15:
                raise ValueError(f"a polarization vector of magnitude in (0, 1] (got "
                                 f"|P| = {magnitude:.6g})")
        return self


class Beam(_Strict):
    """The initial beam.

    ``species``: a name of :data:`harness.model.reference_particle.SPECIES` (case-insensitive)
    or ``ion`` with ``charge_qe`` [elementary charges, signed, non-zero] and ``mass_MeV`` [MeV > 0].
    ``kinetic_energy_MeV`` from 1 eV to :data:`MAX_KINETIC_ENERGY_MEV`. Every number is
    bounded (:data:`harness.model.limits.SCENARIO_BOUNDS`); ``file`` is stored as an absolute
    path (resolved against the scenario file's folder when it is loaded).
    ``linear_probes`` (with ``file`` only): the file's particles probe a linear map (unit
    vectors such as pt = 1, as ImpactX's examples read transfer maps), not a physical beam:
    they need not move forward, and the lattice must be linear maps of the coordinates for
    any pt (``harness.model.kinds.KindSpec.linear_map`` at the linear tier, checked when the
    scenario is loaded); backends that take the particles' energy refuse it.
    """

    species: str
    charge_qe: Annotated[float, within("beam.charge_qe")] | None = None
    mass_MeV: Annotated[float, within("beam.mass_MeV")] | None = None
    kinetic_energy_MeV: Annotated[float, within("beam.kinetic_energy_MeV")]
    bunch_charge_C: Annotated[float, within("beam.bunch_charge_C")] = 0.0
    #: Current of a coasting beam [A]: the intensity of ``space_charge`` kind ``2d`` or
    #: ``envelope_space_charge`` kind ``2d`` (and only there; ImpactX's ``beam.current``).
    current_A: Annotated[float, within("beam.current_A")] | None = None
    distribution: Distribution
    twiss: Twiss | None = None
    ellipse: Ellipse | None = None
    rms: Rms | None = None
    sigma_matrix: list[list[float]] | None = None
    longitudinal: Longitudinal | None = None
    centroid: Centroid | None = None
    dispersion: Dispersion | None = None
    gaussian_cut: GaussianCut | None = None
    thermal: Thermal | None = None
    file: str | None = None
    particles: Annotated[int, Field(gt=0, le=MAX_PARTICLES)] = 10_000
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    spin: Spin | None = None
    linear_probes: bool = False

    @field_validator("species")
    @classmethod
    def _known_species(cls, value: str) -> str:
        canonical = canonical_species(value)
        if canonical is None:
            raise ValueError(f"one of {[*SPECIES, ION]} (case-insensitive)")
        return canonical

    @field_validator("sigma_matrix")
    @classmethod
    def _six_by_six(cls, value):
        if value is not None and (len(value) != 6 or any(len(r) != 6 for r in value)):
            raise ValueError("a 6x6 matrix (list of 6 rows of 6 numbers)")
        if value is not None:
            import numpy as np

            matrix = np.asarray(value, dtype=np.float64)
            bound = SCENARIO_BOUNDS["beam.sigma_matrix"]
            if not np.all(np.abs(matrix) <= bound.high):
                raise ValueError(f"entries with {bound.text()} [{bound.unit}] "
                                 f"({bound.why})")
            try:
                np.linalg.cholesky(matrix)
            except np.linalg.LinAlgError:
                raise ValueError("a symmetric positive-definite 6x6 matrix") from None
            if not np.allclose(matrix, matrix.T, rtol=1e-12, atol=0.0):
                raise ValueError("a symmetric positive-definite 6x6 matrix")
        return value

    @model_validator(mode="after")
    def _one_source(self):
        if self.species == ION:
            if self.charge_qe is None or self.mass_MeV is None:
                raise ValueError("'charge_qe' and 'mass_MeV' for species 'ion'")
            if self.charge_qe == 0:
                raise ValueError("a non-zero 'charge_qe' for species 'ion'")
        elif self.charge_qe is not None or self.mass_MeV is not None:
            raise ValueError(f"'charge_qe' and 'mass_MeV' only with species 'ion' (species "
                             f"{self.species!r} has its own)")
        _check_reference(self.reference)
        if self.spin is not None and self.species not in GYROMAGNETIC_ANOMALY:
            raise ValueError(f"spin: no gyromagnetic anomaly known for species "
                             f"{self.species!r} (spin tracking knows "
                             f"{', '.join(GYROMAGNETIC_ANOMALY)})")
        if self.gaussian_cut is not None and self.distribution != "gaussian":
            raise ValueError("'gaussian_cut' only with distribution 'gaussian' (got "
                             f"{self.distribution!r})")
        if self.linear_probes and (self.distribution != "file" or self.spin is not None):
            raise ValueError("'linear_probes' only with distribution 'file' and no 'spin' "
                             "(probe particles come from a file; a spin push takes each "
                             "particle's energy)")
        if (self.thermal is not None) != (self.distribution == "thermal"):
            raise ValueError("'thermal' (k, kT, kT_halo, normalize, normalize_halo, halo) "
                             "with distribution 'thermal', and only there")
        if self.distribution == "file":
            if not self.file:
                raise ValueError("distribution 'file' needs 'file: <path to .npz/.csv>'")
            if self.centroid is not None or self.dispersion is not None:
                raise ValueError("'centroid' and 'dispersion' only for a generated "
                                 "distribution (a particle file holds its own offsets and "
                                 "correlations)")
            return self
        given = [k for k in ("twiss", "ellipse", "rms", "sigma_matrix")
                 if getattr(self, k) is not None]
        if self.distribution == "thermal":
            if given or self.longitudinal is not None:
                raise ValueError("distribution 'thermal' takes its sizes from 'thermal' "
                                 "(the matched channel); no 'twiss', 'longitudinal', "
                                 "'ellipse', 'rms' or 'sigma_matrix' (got "
                                 f"{given or ['longitudinal']})")
            if self.current_A is not None:
                raise ValueError("distribution 'thermal': its matched radial profile is that "
                                 "of a bunch charge (ImpactX Thermal.H, 3D); 'current_A' "
                                 "(a coasting 2D beam) cannot set it")
            return self
        if len(given) != 1:
            raise ValueError("exactly one of 'twiss' (with 'longitudinal'), 'ellipse', 'rms' "
                             f"or 'sigma_matrix' (got {given or 'none'})")
        if self.twiss is not None and self.longitudinal is None:
            raise ValueError("'longitudinal' (sigma_t, sigma_pt or beta_t, emittance_t) next "
                             "to 'twiss'")
        if self.twiss is None and self.longitudinal is not None:
            raise ValueError("'longitudinal' only next to 'twiss' (the other forms hold the "
                             "longitudinal plane)")
        return self

    @property
    def reference(self) -> ReferenceParticle:
        """Reference particle of the beam."""
        if self.species == ION and self.mass_MeV is not None:
            return ReferenceParticle(ION, self.kinetic_energy_MeV,
                                     rest_energy_eV=self.mass_MeV * 1e6, charge=self.charge_qe)
        return ReferenceParticle(self.species, self.kinetic_energy_MeV)


def _check_reference(reference: ReferenceParticle) -> None:
    """The reference particle's relativistic quantities are finite and moving (ValueError
    otherwise: the bounds keep them so, this guards every conversion)."""
    values: tuple[float, ...]
    try:
        values = (reference.gamma, reference.beta_gamma, reference.beta,
                  reference.rigidity_Tm)
    except (OverflowError, ZeroDivisionError, ValueError):
        values = (math.nan,)
    if not all(math.isfinite(v) and v != 0.0 for v in values):
        raise ValueError("a species and kinetic energy whose gamma, beta and rigidity are "
                         "finite and non-zero")


#: The type of a space-charge kind (ImpactX's ``algo.space_charge``: ``3D``, ``2D``,
#: ``2p5D``, ``Gauss3D``, ``Gauss2p5D``; docs/space-charge-2d.md): the schema's one list.
SpaceChargeKind = Literal["3d", "2d", "2p5d", "gauss3d", "gauss2p5d"]
#: The space-charge kinds, in the order of :data:`SpaceChargeKind`.
SPACE_CHARGE_KINDS: tuple[str, ...] = get_args(SpaceChargeKind)
#: Kinds solved on a mesh (``grid``, ``deposition``, ``prob_relative``, ``blocking_factor``).
MESH_KINDS = frozenset({"3d", "2d", "2p5d"})
#: Kinds with a line density (``longitudinal_bins``, ``longitudinal_kick``).
LINE_DENSITY_KINDS = frozenset({"2p5d", "gauss2p5d"})
#: Kinds of ImpactX's analytic Gaussian kicks (``gauss_nint``).
GAUSS_KINDS = frozenset({"gauss3d", "gauss2p5d"})
#: Default bins of the line density per kind (ImpactX ``space_charge_num_longitudinal_bins``
#: and ``space_charge_gauss_charge_z_bins``).
DEFAULT_LONGITUDINAL_BINS = {"2p5d": 100, "gauss2p5d": 129}
#: Which kinds take each optional setting (a setting stated for another kind is refused).
SPACE_CHARGE_FIELD_KINDS: dict[str, frozenset[str]] = {
    "grid": MESH_KINDS, "deposition": MESH_KINDS, "prob_relative": MESH_KINDS,
    "domain_sigmas": frozenset({"3d"}), "blocking_factor": MESH_KINDS,
    "longitudinal_bins": LINE_DENSITY_KINDS, "longitudinal_kick": LINE_DENSITY_KINDS,
    "gauss_nint": GAUSS_KINDS, "gauss_taylor_delta": frozenset({"gauss2p5d"}),
    "gauss_long_scale": frozenset({"gauss2p5d"}),
}

Cells = Annotated[int, Field(ge=MIN_GRID_CELLS, le=MAX_GRID_CELLS_PER_DIM)]
ZCells = Annotated[int, Field(ge=1, le=MAX_GRID_CELLS_PER_DIM)]
Blocking = Annotated[int, Field(ge=1, le=MAX_GRID_CELLS_PER_DIM)]


class SpaceCharge(_Strict):
    """Space-charge model (docs/space-charge-2d.md): ``kind`` 3d, 2d, 2p5d, gauss3d or
    gauss2p5d (ImpactX's ``3D``, ``2D``, ``2p5D``, ``Gauss3D``, ``Gauss2p5D``), kicks per
    element, and the kind's numerical settings:

    * mesh kinds (3d, 2d, 2p5d): ``grid`` cells ``[nx, ny, nz]`` (2d: ``[nx, ny]`` or
      ``nz = 1``, one z cell as ImpactX solves it; 2p5d: ``nz`` 1 or more, ImpactX flattens
      the deposit over z, so the kick is the same), ``deposition`` (cic, tsc: ImpactX
      ``particle_shape`` 1, 2), ``prob_relative`` (mesh extent / beam extent per axis, ImpactX
      and in-house; default 1.1), ``domain_sigmas`` (3d only: the +-k sigma mesh of Cheetah),
      ``blocking_factor`` ``[bx, by, bz]`` (ImpactX's AMReX boxes: powers of two dividing the
      cells; a domain decomposition, not physics);
    * 2p5d, gauss2p5d: ``longitudinal_bins`` of the line density (default 100 and 129) and
      ``longitudinal_kick`` (default true);
    * gauss3d, gauss2p5d: ``gauss_nint`` (odd, default 101); gauss2p5d also
      ``gauss_taylor_delta`` (in (0, 1), default 0.01) and ``gauss_long_scale`` [m] (default
      ``1.103 beta gamma sigma_z`` at each kick).

    A setting stated for a kind that has no use for it is refused by name, and so is
    ``mesh_refinement: true`` (ImpactX's finer AMReX levels: neither the in-house solver nor
    ImpactX's 2D solvers have them). ``checkpoint``: ``"kick"`` recomputes each space-charge
    kick of the in-house tracker during its reverse-mode pass instead of keeping the kick's
    intermediates (gradient checkpointing, ``torch.utils.checkpoint``): less backward memory
    for more time; the physics and the results are unchanged, and the other backends ignore
    it.
    """

    kind: SpaceChargeKind = "3d"
    grid: tuple[Cells, Cells, ZCells] | None = None
    kicks_per_element: Annotated[int, within("space_charge.kicks_per_element")] = 1
    deposition: Literal["cic", "tsc"] | None = None
    domain_sigmas: Annotated[float, within("space_charge.domain_sigmas")] | None = None
    prob_relative: Annotated[float, within("space_charge.prob_relative")] | None = None
    blocking_factor: tuple[Blocking, Blocking, Blocking] | None = None
    mesh_refinement: bool = False
    longitudinal_bins: Annotated[int, within("space_charge.longitudinal_bins")] | None = None
    longitudinal_kick: bool | None = None
    gauss_nint: Annotated[int, within("space_charge.gauss_nint")] | None = None
    gauss_taylor_delta: Annotated[float, within("space_charge.gauss_taylor_delta")] | None = None
    gauss_long_scale: Annotated[float, within("space_charge.gauss_long_scale")] | None = None
    checkpoint: Literal["none", "kick"] = "none"

    @model_validator(mode="before")
    @classmethod
    def _defaults_per_kind(cls, data: object) -> object:
        """Each kind's defaults where the block states none (a setting of another kind stays
        None: stated, it is refused): 3d a 32^3 grid, 2d and 2p5d 32^2 x 1 (``[nx, ny]`` is
        read as ``[nx, ny, 1]``), mesh kinds cic deposition, 2p5d and gauss2p5d their bins
        (:data:`DEFAULT_LONGITUDINAL_BINS`) and the longitudinal kick on, the Gauss kinds 101
        Simpson points and gauss2p5d a Taylor delta of 0.01 (ImpactX's defaults)."""
        if not isinstance(data, dict):
            return data
        kind = data.get("kind", "3d")
        out = dict(data)

        def default(name: str, value: object) -> None:
            if out.get(name) is None:
                out[name] = value

        grid = out.get("grid")
        if kind in ("2d", "2p5d") and isinstance(grid, (list, tuple)) and len(grid) == 2:
            out["grid"] = [*grid, 1]
        if kind in MESH_KINDS:
            default("grid", [32, 32, 32] if kind == "3d" else [32, 32, 1])
            default("deposition", "cic")
        if kind in LINE_DENSITY_KINDS:
            default("longitudinal_bins", DEFAULT_LONGITUDINAL_BINS[kind])
            default("longitudinal_kick", True)
        if kind in GAUSS_KINDS:
            default("gauss_nint", 101)
        if kind == "gauss2p5d":
            default("gauss_taylor_delta", 0.01)
        return out

    @field_validator("grid")
    @classmethod
    def _grid_size(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is None:
            return value
        cells = value[0] * value[1] * value[2]
        if cells > MAX_GRID_CELLS:
            raise ValueError(f"at most {MAX_GRID_CELLS} cells in all (256^3); got "
                             f"{value[0]}x{value[1]}x{value[2]} = {cells}")
        return value

    @model_validator(mode="after")
    def _settings_of_the_kind(self):
        for name, kinds in SPACE_CHARGE_FIELD_KINDS.items():
            if getattr(self, name) is not None and self.kind not in kinds:
                why = " (an analytic field, no mesh)" if name == "grid" else ""
                raise ValueError(f"no '{name}' for kind {self.kind!r}{why} ('{name}' is a "
                                 f"setting of kind(s) {sorted(kinds)} only)")
        if self.mesh_refinement:
            raise ValueError("'mesh_refinement': false (true, ImpactX's finer AMReX levels, "
                             "amr.max_level > 0, is not supported: the in-house solvers have "
                             "no counterpart and ImpactX's 2D solvers run on one level)")
        if self.kind in MESH_KINDS:
            assert self.grid is not None  # by _defaults_per_kind
            if self.kind == "3d" and self.grid[2] < MIN_GRID_CELLS:
                raise ValueError(f"'grid' with at least {MIN_GRID_CELLS} cells along z for "
                                 f"kind 3d; got {list(self.grid)}")
            if self.kind == "2d" and self.grid[2] != 1:
                raise ValueError(f"'grid' of one z cell for kind 2d ([nx, ny] or [nx, ny, 1], "
                                 f"ImpactX n_cell [nx, ny, 1]); got {list(self.grid)}")
            if self.blocking_factor is not None:
                for axis, cells, factor in zip("xyz", self.grid, self.blocking_factor,
                                               strict=True):
                    if factor & (factor - 1) or cells % factor:
                        raise ValueError(f"'blocking_factor': a power of two dividing the "
                                         f"cells on each axis (AMReX); {factor} along {axis} "
                                         f"for {cells} cells")
        if self.gauss_nint is not None and self.gauss_nint % 2 == 0:
            raise ValueError(f"'gauss_nint': an odd number of Simpson points; got "
                             f"{self.gauss_nint}")
        if self.gauss_taylor_delta is not None and not self.gauss_taylor_delta < 1.0:
            raise ValueError("'gauss_taylor_delta' below 1")
        return self

    @property
    def bins(self) -> int | None:
        """Bins of the line density (None for the kinds without one)."""
        return self.longitudinal_bins


#: Tracking modes: particles, or the 6x6 covariance matrix (ImpactX ``track_envelope``).
Tracking = Literal["particles", "envelope"]


class EnvelopeSpaceCharge(_Strict):
    """Envelope space charge (``tracking: envelope`` only): ImpactX's linear envelope push
    (``src/envelope/spacecharge/EnvelopeSpaceChargePush.cpp``), ``kind`` ``2d`` (a coasting
    beam of current ``beam.current_A`` [A]) or ``3d`` (a bunch of charge
    ``beam.bunch_charge_C`` [C], the uniform ellipsoid of the same second moments); each
    thick element is cut into its ``nslice`` slices with one kick per slice."""

    kind: Literal["2d", "3d"]


class Integrator(_Strict):
    """Defaults for every element: ImpactX ``nslice`` and ``mapsteps`` (exact integrators),
    and ``int_order``, the order 2, 4 or 6 of the symplectic integrator of the exact
    elements that ImpactX integrates (``ExactQuad``, ``ExactMultipole``, ``ExactCFbend``:
    :attr:`harness.model.lattice.Element.integrated`), as ImpactX's ``int_order`` (default
    2; 4 and 6 are Yoshida's schemes)."""

    nslice: Slices = 1
    mapsteps: Steps = 10
    int_order: IntOrder = 2


class Override(_Strict):
    """Per-element override of the model tier, slicing and integrator order."""

    model: Tier | None = None
    nslice: Slices | None = None
    mapsteps: Steps | None = None
    int_order: IntOrder | None = None


class Gradients(_Strict):
    """Parameters (``element.field`` or ``beam.twiss.field``) and the objective observable."""

    parameters: list[str]
    objective: str


class AnalyticValue(_Strict):
    """A closed-form final observable: an absolute value or a multiple of the initial value."""

    value: Annotated[float, within("analytic.value")] | None = None
    times_initial: Annotated[float, within("analytic.value")] | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.value is None) == (self.times_initial is None):
            raise ValueError("exactly one of 'value' or 'times_initial'")
        return self


class ParticleBoundary(_Strict):
    """A longitudinal particle boundary, ImpactX's ``algo.particle_bc``
    (``src/particles/ParticleBoundary.cpp``). ``periodic``: after every slice of every
    element, t is wrapped into [-T/2, T/2) with T = ``bucket_length`` [m] / beta of the
    reference particle there (t' = fmod(fmod(t + T/2, T) + T, T) - T/2)."""

    kind: Literal["periodic"]
    bucket_length: Annotated[float, within("particle_boundary.bucket_length")]


class Scenario(_Strict):
    """One scenario: what to track, with which physics, and what to measure."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str
    description: str = ""
    reference: Literal["impactx", "analytic", "inhouse"] = "impactx"
    beam: Beam
    model: Tier = "linear"
    integrator: Integrator = Integrator()
    overrides: dict[str, Override] = {}
    space_charge: SpaceCharge | None = None
    particle_boundary: ParticleBoundary | None = None
    tracking: Tracking = "particles"
    envelope_space_charge: EnvelopeSpaceCharge | None = None
    lattice: dict
    lattice_file: str | None = Field(default=None, exclude=True)
    periods: Annotated[int, Field(ge=1, le=MAX_PERIODS)] = 1
    observables: list[str] = ["sigma_x", "sigma_y", "sigma_t", "emittance_x", "emittance_y"]
    analytic: dict[str, AnalyticValue] | None = None
    gradients: Gradients | None = None
    particle_counts: list[Annotated[int, Field(gt=0, le=MAX_PARTICLES)]] | None = None
    tuning: TuningBlock | None = None
    #: Whether ``trackbench run`` without scenario names runs it (the default comparison);
    #: the heavy benchmark scenarios (the paper's 256^3 space-charge case) say false and
    #: run when named.
    run_by_default: bool = True
    source_file: str | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if NAME_PATTERN.fullmatch(value) is None or ".." in value:
            raise ValueError("a name of 1 to 100 characters: a letter or digit, then letters, "
                             "digits, '_', '.', '+', '-' (no '/', no '..', no spaces or "
                             "control characters: the name is part of file names)")
        return value

    @field_validator("observables")
    @classmethod
    def _known_observables(cls, value: list[str]) -> list[str]:
        known = observable_names()
        for name in value:
            if name not in known:
                raise ValueError(f"observable names from {list(known)}; got {name!r}")
        return value

    @property
    def spin(self) -> bool:
        """Whether particles carry spins (the beam has a ``spin:`` block): then they are
        ``(N, 9)``, the six coordinates and ``(sx, sy, sz)``."""
        return self.beam.spin is not None

    @property
    def spin_push(self) -> bool:
        """Whether the elements turn the particles' spins (Thomas-BMT): a ``spin:`` block
        whose ``push`` is true; with ``push: false`` the spins are carried unchanged."""
        return self.beam.spin is not None and self.beam.spin.push
    @model_validator(mode="after")
    def _tracking_mode(self):
        envelope = self.tracking == "envelope"
        if envelope and self.space_charge is not None:
            raise ValueError("space_charge: the particle-mode space-charge block (Poisson "
                             "mesh, deposition) has no envelope counterpart; under 'tracking: "
                             "envelope' give 'envelope_space_charge: {kind: 2d | 3d}'")
        if not envelope and self.envelope_space_charge is not None:
            raise ValueError("envelope_space_charge: only with 'tracking: envelope' (particle "
                             "tracking takes 'space_charge')")
        if envelope and self.beam.centroid is not None \
                and any(v != 0.0 for v in self.beam.centroid.vector()):
            raise ValueError("beam.centroid: envelope tracking carries the covariance about "
                             "the reference orbit; a beam centroid is not part of it")
        if envelope and self.particle_boundary is not None:
            raise ValueError("particle_boundary: a boundary acts on each particle's t; "
                             "envelope tracking carries no particles")
        if envelope and self.beam.spin is not None:
            raise ValueError("beam.spin: envelope tracking carries the phase-space covariance "
                             "only; spin tracking needs 'tracking: particles'")
        if envelope and self.beam.distribution == "thermal":
            raise ValueError("beam.distribution: envelope tracking starts from the beam's "
                             "covariance; a 'thermal' beam's profile is a numerical "
                             "solution with no stated covariance")
        if envelope and self.beam.distribution == "file":
            raise ValueError("beam.distribution: envelope tracking starts from the beam's "
                             "covariance ('twiss', 'ellipse', 'rms' or 'sigma_matrix'), not "
                             "from a particle file")
        kind = None if self.envelope_space_charge is None else self.envelope_space_charge.kind
        if envelope and self.beam.current_A is not None and kind != "2d":
            raise ValueError("beam.current_A: the beam current is used only by "
                             "'envelope_space_charge: {kind: 2d}' (tracking: envelope)")
        if kind == "2d" and not self.beam.current_A:
            raise ValueError("envelope_space_charge: kind 2d needs a non-zero "
                             "'beam.current_A' [A]")
        if kind == "3d" and not self.beam.bunch_charge_C:
            raise ValueError("envelope_space_charge: kind 3d needs a non-zero "
                             "'beam.bunch_charge_C' [C]")
        return self

    @property
    def envelope_intensity(self) -> float | None:
        """The intensity of the envelope space-charge push: ``beam.current_A`` [A] for 2d,
        ``beam.bunch_charge_C`` [C] for 3d; None without envelope space charge."""
        if self.envelope_space_charge is None:
            return None
        if self.envelope_space_charge.kind == "2d":
            return float(self.beam.current_A or 0.0)
        return float(self.beam.bunch_charge_C)

    @cached_property
    def elements(self) -> list[Element]:
        """The flattened lattice with resolved model tiers, repeated ``periods`` times."""
        default = ElementSettings(self.model, self.integrator.nslice, self.integrator.mapsteps,
                                  self.integrator.int_order)
        overrides = {
            name: ElementSettings(o.model or self.model, o.nslice or self.integrator.nslice,
                                  o.mapsteps or self.integrator.mapsteps,
                                  o.int_order or self.integrator.int_order)
            for name, o in self.overrides.items()
        }
        one = build_elements(self.lattice, default, overrides,
                             _origin(self.source_file, self.lattice_file),
                             self.beam.reference.rigidity_Tm)
        if len(one) * self.periods > MAX_TRACKED_ELEMENTS:
            raise ScenarioError(self.source_file, "periods", f"at most "
                                f"{MAX_TRACKED_ELEMENTS} tracked elements in all "
                                f"({len(one)} elements x {self.periods} periods)",
                                self.periods)
        return one * self.periods

    @property
    def reference_particle(self) -> ReferenceParticle:
        """The beam's reference particle."""
        return self.beam.reference

    @property
    def length(self) -> float:
        """Total lattice length [m]."""
        return math.fsum(e.length for e in self.elements)

    @property
    def tiers(self) -> tuple[str, ...]:
        """Distinct effective model tiers used in the lattice, ordered."""
        return tuple(t for t in MODEL_TIERS if any(e.tier == t for e in self.elements))


def _origin(file, lattice_file: str | None) -> str | None:
    """How errors name a scenario whose lattice comes from another file."""
    if lattice_file is None:
        return None if file is None else str(file)
    return f"{file if file is not None else '<scenario>'} (lattice {lattice_file})"


def model_signature(scenario: Scenario) -> str:
    """The physics model a scenario asks for: its effective tiers (e.g. ``linear``,
    ``paraxial+exact``), the integrator orders other than 2 of its integrated elements
    (``|int_order:4``), the space-charge model when there is one, ``|spin`` when the
    particles' spins are pushed (``|spin:carried`` when they are carried unchanged), and
    ``|envelope`` (with ``|esc:2d`` or ``|esc:3d``) for envelope tracking, so that envelope
    results are compared only with envelope results."""
    label = "+".join(scenario.tiers) or "linear"
    orders = sorted({e.int_order for e in scenario.elements if e.integrated} - {2})
    if orders:
        label += "|int_order:" + ",".join(str(n) for n in orders)
    if scenario.space_charge is not None:
        label += f"|sc:{scenario.space_charge.kind}"
    if scenario.beam.spin is not None:
        label += "|spin" if scenario.beam.spin.push else "|spin:carried"
    if scenario.tracking == "envelope":
        label += "|envelope"
        if scenario.envelope_space_charge is not None:
            label += f"|esc:{scenario.envelope_space_charge.kind}"
    return label
