"""Scenario files: one YAML document = PALS lattice + beam + model + observables + gradients.

Loading uses ``yaml.safe_load`` only. Every validation failure raises
:class:`harness.errors.ScenarioError` naming the file, the dotted field path and what was
expected.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.errors import ScenarioError
from harness.lattice import Element, ElementSettings, build_elements
from harness.reference import SPECIES, Reference
from harness.tuning.problem import TuningBlock
from harness.vocabulary import MODEL_TIERS

#: Where the bundled scenarios live.
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "lattices"

Tier = Literal["linear", "paraxial", "exact"]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]

COORDINATES: tuple[str, ...] = ("x", "px", "y", "py", "t", "pt")
DISTRIBUTIONS: tuple[str, ...] = ("gaussian", "waterbag", "kv", "semigaussian", "kurth6d",
                                  "file")


def observable_names() -> tuple[str, ...]:
    """Every observable name a scenario may request (see :mod:`harness.observables`)."""
    names = [f"mean_{c}" for c in COORDINATES] + [f"sigma_{c}" for c in COORDINATES]
    for plane in ("x", "y", "t"):
        names += [f"emittance_{plane}", f"norm_emittance_{plane}", f"alpha_{plane}",
                  f"beta_{plane}"]
    names += ["dispersion_x", "dispersion_px", "dispersion_y", "dispersion_py",
              "survival"]
    return tuple(names)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Twiss(_Strict):
    """Transverse Twiss parameters: beta [m], alpha [1], rms geometric emittance [m rad]."""

    beta_x: Positive
    alpha_x: float = 0.0
    emittance_x: Positive
    beta_y: Positive
    alpha_y: float = 0.0
    emittance_y: Positive


class Longitudinal(_Strict):
    """Longitudinal rms spreads: sigma_t = c*sigma_dt [m], sigma_pt [1], correlation in (-1, 1)."""

    sigma_t: Positive
    sigma_pt: Positive
    correlation: Annotated[float, Field(gt=-1, lt=1)] = 0.0


class Rms(_Strict):
    """Uncoupled rms sizes per coordinate and the position-momentum correlation per plane
    (ImpactX's lambda/mu input for uncorrelated beams); allows a cold beam (sigma_p* = 0)."""

    sigma_x: NonNegative
    sigma_px: NonNegative
    sigma_y: NonNegative
    sigma_py: NonNegative
    sigma_t: NonNegative
    sigma_pt: NonNegative
    corr_x: Annotated[float, Field(gt=-1, lt=1)] = 0.0
    corr_y: Annotated[float, Field(gt=-1, lt=1)] = 0.0
    corr_t: Annotated[float, Field(gt=-1, lt=1)] = 0.0


class Beam(_Strict):
    """The initial beam."""

    species: str
    kinetic_energy_MeV: Positive
    bunch_charge_C: NonNegative = 0.0
    distribution: Literal["gaussian", "waterbag", "kv", "semigaussian", "kurth6d", "file"]
    twiss: Twiss | None = None
    rms: Rms | None = None
    sigma_matrix: list[list[float]] | None = None
    longitudinal: Longitudinal | None = None
    file: str | None = None
    particles: Annotated[int, Field(gt=0)] = 10_000
    seed: int = 0

    @field_validator("species")
    @classmethod
    def _known_species(cls, value: str) -> str:
        if value not in SPECIES:
            raise ValueError(f"one of {sorted(SPECIES)}")
        return value

    @field_validator("sigma_matrix")
    @classmethod
    def _six_by_six(cls, value):
        if value is not None and (len(value) != 6 or any(len(r) != 6 for r in value)):
            raise ValueError("a 6x6 matrix (list of 6 rows of 6 numbers)")
        if value is not None:
            import numpy as np

            matrix = np.asarray(value, dtype=np.float64)
            try:
                np.linalg.cholesky(matrix)
            except np.linalg.LinAlgError:
                raise ValueError("a symmetric positive-definite 6x6 matrix") from None
            if not np.allclose(matrix, matrix.T, rtol=1e-12, atol=0.0):
                raise ValueError("a symmetric positive-definite 6x6 matrix")
        return value

    @model_validator(mode="after")
    def _one_source(self):
        if self.distribution == "file":
            if not self.file:
                raise ValueError("distribution 'file' needs 'file: <path to .npz/.csv>'")
            return self
        given = [k for k in ("twiss", "rms", "sigma_matrix") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("exactly one of 'twiss' (with 'longitudinal'), 'rms' or "
                             f"'sigma_matrix' (got {given or 'none'})")
        if self.twiss is not None and self.longitudinal is None:
            raise ValueError("'longitudinal' (sigma_t, sigma_pt) next to 'twiss'")
        return self

    @property
    def reference(self) -> Reference:
        """Reference particle of the beam."""
        return Reference(self.species, self.kinetic_energy_MeV)


class SpaceCharge(_Strict):
    """Space-charge model: ``kind`` 3d or 2p5d, mesh cells, kicks per element.

    ``checkpoint``: ``"kick"`` recomputes each space-charge kick of the in-house tracker
    during its reverse-mode pass instead of keeping the kick's intermediates (gradient
    checkpointing, ``torch.utils.checkpoint``): less backward memory for more time; the
    physics and the results are unchanged, and the other backends ignore it.
    """

    kind: Literal["3d", "2p5d"] = "3d"
    grid: tuple[int, int, int] = (32, 32, 32)
    kicks_per_element: Annotated[int, Field(ge=1)] = 1
    deposition: Literal["cic", "tsc"] = "cic"
    domain_sigmas: Positive = 3.0
    checkpoint: Literal["none", "kick"] = "none"


class Integrator(_Strict):
    """Defaults for every element: ImpactX ``nslice`` and ``mapsteps`` (exact integrators)."""

    nslice: Annotated[int, Field(ge=1)] = 1
    mapsteps: Annotated[int, Field(ge=1)] = 10


class Override(_Strict):
    """Per-element override of the model tier and slicing."""

    model: Tier | None = None
    nslice: Annotated[int, Field(ge=1)] | None = None
    mapsteps: Annotated[int, Field(ge=1)] | None = None


class Gradients(_Strict):
    """Parameters (``element.field`` or ``beam.twiss.field``) and the objective observable."""

    parameters: list[str]
    objective: str


class AnalyticValue(_Strict):
    """A closed-form final observable: an absolute value or a multiple of the initial value."""

    value: float | None = None
    times_initial: float | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.value is None) == (self.times_initial is None):
            raise ValueError("exactly one of 'value' or 'times_initial'")
        return self


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
    lattice: dict
    observables: list[str] = ["sigma_x", "sigma_y", "sigma_t", "emittance_x", "emittance_y"]
    analytic: dict[str, AnalyticValue] | None = None
    gradients: Gradients | None = None
    particle_counts: list[Annotated[int, Field(gt=0)]] | None = None
    tuning: TuningBlock | None = None
    source_file: str | None = Field(default=None, exclude=True)

    @field_validator("observables")
    @classmethod
    def _known_observables(cls, value: list[str]) -> list[str]:
        known = observable_names()
        for name in value:
            if name not in known:
                raise ValueError(f"observable names from {list(known)}; got {name!r}")
        return value

    @cached_property
    def elements(self) -> list[Element]:
        """The flattened lattice with resolved model tiers."""
        default = ElementSettings(self.model, self.integrator.nslice, self.integrator.mapsteps)
        overrides = {
            name: ElementSettings(o.model or self.model, o.nslice or self.integrator.nslice,
                                  o.mapsteps or self.integrator.mapsteps)
            for name, o in self.overrides.items()
        }
        return build_elements(self.lattice, default, overrides, self.source_file)

    @property
    def reference_particle(self) -> Reference:
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


def _error_from_pydantic(error: pydantic.ValidationError, file) -> ScenarioError:
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()) if p not in ("function-after",))
    msg = first.get("msg", "a valid value").removeprefix("Value error, ")
    msg = msg.removeprefix("Input should be ")
    if first.get("type") == "extra_forbidden":
        msg = "no such field (check the spelling)"
    if first.get("type") == "missing":
        msg = "this required field"
    got = first.get("input")
    if first.get("type") in ("missing", "model_type") or isinstance(got, dict):
        got = None  # a whole group is not worth echoing; the message says what is wrong
    return ScenarioError(file, loc or "<root>", msg, got)


def scenario_from_dict(data: object, file: str | Path | None = None) -> Scenario:
    """Validate a scenario mapping (already parsed YAML)."""
    if not isinstance(data, dict):
        raise ScenarioError(file, "<root>", "a mapping with name, beam, model, lattice, ...",
                            type(data).__name__)
    try:
        scenario = Scenario(**data, source_file=str(file) if file else None)
    except pydantic.ValidationError as error:
        raise _error_from_pydantic(error, file) from None
    _ = scenario.elements  # validates the lattice
    _check_gradients(scenario, file)
    _check_particle_file(scenario.beam, file)
    return scenario


def _check_particle_file(beam: Beam, file) -> None:
    """A ``file`` beam names an existing .npz/.csv (relative to the scenario file)."""
    if beam.distribution != "file":
        return
    path = Path(beam.file)
    if not path.is_absolute() and file is not None:
        path = Path(file).parent / path
    if path.suffix not in (".npz", ".csv") or not path.is_file():
        raise ScenarioError(file, "beam.file", "an existing .npz or .csv particle file "
                            "(a relative path is relative to the scenario file)", beam.file)


def _check_gradients(scenario: Scenario, file) -> None:
    if scenario.gradients is None:
        return
    from harness.parameters import resolve_parameter

    for index, name in enumerate(scenario.gradients.parameters):
        try:
            resolve_parameter(scenario, name)
        except KeyError as error:
            raise ScenarioError(file, f"gradients.parameters[{index}]", str(error.args[0]),
                                name) from None
    if scenario.gradients.objective not in observable_names():
        raise ScenarioError(file, "gradients.objective", "an observable name",
                            scenario.gradients.objective)


def resolve_scenario_path(name_or_path: str | Path) -> Path:
    """A path as given, or a bundled scenario name (``fodo_linear`` -> lattices/fodo_linear.yaml).
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    bundled = BUNDLED_DIR / f"{name_or_path}.yaml"
    if bundled.exists():
        return bundled
    if path.exists():
        return path
    raise ScenarioError(path, "<file>", "an existing scenario file or a bundled name: "
                        + ", ".join(bundled_names()))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load and validate a scenario file (safe YAML)."""
    path = resolve_scenario_path(name_or_path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(path, "<file>", f"a readable UTF-8 text file ({error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ScenarioError(path, "<yaml>", f"valid YAML ({str(error).splitlines()[0]})") from None
    return scenario_from_dict(data, path)


def bundled_names() -> list[str]:
    """Names of the bundled scenarios."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))
