"""The ``tuning:`` block of a scenario and the tuning problem it describes.

A tuning problem varies named parameters (:mod:`harness.model.parameters`: ``quad1.Kn1``,
``beam.twiss.beta_x``, ...) within bounds, from a start point, to minimise an objective
made of observables (:mod:`harness.model.observables`) of the beam at the end of the lattice::

    tuning:
      parameters:                      # name -> start, bounds, known optimum
        quad1.Kn1: {start: -3.0, lower: -5.0, upper: -2.0, optimum: -3.5}
        quad2.Kn1: {start: 3.0, lower: 1.5, upper: 4.0, optimum: 2.75}
      targets:                         # observable -> a term of the objective
        beta_x: {value: 0.55}          # weight * (beta_x - 0.55)**2
        sigma_x: {value: 1.0e-4, relative: true}   # weight * ((sigma_x - v) / v)**2
        emittance_x: {growth: true}    # weight * (emittance_x / initial emittance_x - 1)
      tolerance: {parameters: 1.0e-6}  # and/or {objective: 1.0e-10}
      budget: {evaluations: 2000, per_method: {xopt-bo: 40}}

Other fields: ``bounds_relative`` (bounds ``value ± r·|value|`` for parameters without
``lower``/``upper``), ``perturbation`` (``{relative: r, seed: s}``: the start of the
parameters without ``start`` is ``value · (1 + r·u)``, ``u`` uniform in [-1, 1], seeded),
``optimum: scenario`` (the scenario's own values are the known optimum, e.g. a matched
solution), ``sizes`` (variants with the first P parameters, one per P), ``exact_moments``
(the initial particles are transformed linearly so that their sample mean is zero and their
sample covariance is exactly the beam's nominal one; every backend tracks the same
particles), ``particles`` (macro-particles per evaluation) and ``adam_learning_rate``.

The optimisers work in normalised coordinates ``u = (x - lower) / (upper - lower)`` in
[0, 1]. The objective is the sum of the target terms; a problem reaches its tolerance at
the first evaluation whose objective is ``<= tolerance.objective`` and whose largest
relative distance to the known optimum, ``max_i |x_i - x*_i| / |x*_i|``, is
``<= tolerance.parameters`` (each only when given).

The pydantic model here validates each field (one line naming the field, as for every
other block of a scenario); :func:`harness.model.tuning_problems.check_tuning` checks what
needs the lattice (parameter names, the scenario's values inside the bounds) and
:func:`harness.model.tuning_problems.problems` resolves the block against its scenario.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, field_validator, model_validator

if TYPE_CHECKING:
    import torch

PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(ge=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParameterSpec(_Strict):
    """One varied parameter: start value, bounds and known optimum (scenario file units);
    each omitted one comes from the block (``perturbation``, ``bounds_relative``,
    ``optimum: scenario``) or the scenario's value."""

    start: FiniteFloat | None = None
    lower: FiniteFloat | None = None
    upper: FiniteFloat | None = None
    optimum: FiniteFloat | None = None

    @model_validator(mode="after")
    def _ordered(self):
        if self.lower is not None and self.upper is not None and not self.lower < self.upper:
            raise ValueError(f"lower < upper (got lower {self.lower}, upper {self.upper})")
        for name in ("start", "optimum"):
            value = getattr(self, name)
            if value is None:
                continue
            if (self.lower is not None and value < self.lower
                    or self.upper is not None and value > self.upper):
                raise ValueError(f"{name} within [lower, upper] (got {value})")
        return self


class Target(_Strict):
    """A term of the objective: ``value`` (match, squared difference, divided by ``|value|``
    when ``relative``) or ``growth`` (final over initial observable minus one)."""

    value: FiniteFloat | None = None
    growth: bool = False
    relative: bool = False
    weight: PositiveFinite = 1.0

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.value is None) == (not self.growth):
            raise ValueError("exactly one of 'value: <number>' or 'growth: true'")
        if self.relative and (self.value is None or self.value == 0.0):
            raise ValueError("'relative: true' with a non-zero 'value'")
        return self


class Tolerance(_Strict):
    """When a problem counts as solved: objective at most ``objective`` and/or largest
    relative distance to the known optimum at most ``parameters``."""

    objective: FiniteFloat | None = None
    parameters: PositiveFinite | None = None

    @model_validator(mode="after")
    def _some(self):
        if self.objective is None and self.parameters is None:
            raise ValueError("at least one of 'objective' or 'parameters'")
        return self


class Budget(_Strict):
    """Most evaluations a method may make (a gradient evaluation counts as one), and
    per-method overrides by registry name (:data:`harness.tuning.methods.METHODS`)."""

    evaluations: PositiveInt = 1000
    per_method: dict[str, PositiveInt] = {}

    @field_validator("per_method")
    @classmethod
    def _known_methods(cls, value: dict[str, int]) -> dict[str, int]:
        from harness.model.vocabulary import TUNING_METHODS

        for name in value:
            if name not in TUNING_METHODS:
                raise ValueError(f"method names from {sorted(TUNING_METHODS)}; got {name!r}")
        return value


class Perturbation(_Strict):
    """Start = value · (1 + relative · u), u uniform in [-1, 1] from ``seed``."""

    relative: PositiveFinite
    seed: int = 0


class TuningBlock(_Strict):
    """The ``tuning:`` block of a scenario (see the module text)."""

    parameters: dict[str, ParameterSpec]
    targets: dict[str, Target]
    tolerance: Tolerance
    budget: Budget = Budget()
    bounds_relative: PositiveFinite | None = None
    perturbation: Perturbation | None = None
    optimum: Literal["scenario"] | None = None
    sizes: list[PositiveInt] | None = None
    exact_moments: bool = False
    particles: PositiveInt | None = None
    adam_learning_rate: PositiveFinite = 0.02

    @field_validator("parameters")
    @classmethod
    def _some_parameters(cls, value: dict[str, ParameterSpec]) -> dict[str, ParameterSpec]:
        if not value:
            raise ValueError("at least one parameter (name: {start, lower, upper})")
        return value

    @field_validator("targets")
    @classmethod
    def _observable_targets(cls, value: dict[str, Target]) -> dict[str, Target]:
        from harness.model.observables import observable_names

        if not value:
            raise ValueError("at least one target (observable: {value: ...})")
        known = observable_names()
        for name in value:
            if name not in known:
                raise ValueError(f"observable names from {list(known)}; got {name!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        given = [spec.optimum is not None for spec in self.parameters.values()]
        if any(given) and not all(given):
            raise ValueError("an 'optimum' for every parameter or for none")
        if any(given) and self.optimum == "scenario":
            raise ValueError("either 'optimum: scenario' or per-parameter optima, not both")
        if self.tolerance.parameters is not None and not (any(given) or self.optimum):
            raise ValueError("tolerance.parameters needs a known optimum ('optimum: scenario' "
                             "or an 'optimum' per parameter)")
        for size in self.sizes or []:
            if size > len(self.parameters):
                raise ValueError(f"sizes at most the number of parameters "
                                 f"({len(self.parameters)}); got {size}")
        return self

    @property
    def known_optimum(self) -> bool:
        """Whether the problem states its optimum."""
        return self.optimum == "scenario" or all(
            s.optimum is not None for s in self.parameters.values())


@dataclass(frozen=True)
class TuningProblem:
    """One tuning problem, resolved against its scenario (values in scenario file units).

    Attributes:
        label: ``""`` or ``P<size>`` for a size variant.
        names: parameter names; ``start``, ``lower``, ``upper`` arrays of the same length;
        optimum: the known optimum (None: unknown).
    """

    label: str
    names: tuple[str, ...]
    start: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    optimum: np.ndarray | None
    block: TuningBlock

    @property
    def size(self) -> int:
        """Number of parameters P."""
        return len(self.names)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Normalised coordinates u in [0, 1] of parameter values x."""
        return (np.asarray(x, dtype=np.float64) - self.lower) / (self.upper - self.lower)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Parameter values x of normalised coordinates u (clipped to the bounds)."""
        u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
        return self.lower + u * (self.upper - self.lower)

    def distance(self, x: np.ndarray) -> float | None:
        """Largest relative distance to the known optimum (absolute where it is 0)."""
        if self.optimum is None:
            return None
        scale = np.where(self.optimum != 0.0, np.abs(self.optimum), 1.0)
        return float(np.max(np.abs(np.asarray(x) - self.optimum) / scale))

    def reached(self, objective: float, x: np.ndarray) -> bool:
        """Whether an evaluation meets the tolerance."""
        tolerance = self.block.tolerance
        if tolerance.objective is not None and not objective <= tolerance.objective:
            return False
        if tolerance.parameters is not None:
            distance = self.distance(x)
            if distance is None or not distance <= tolerance.parameters:
                return False
        return True

    def budget(self, method: str) -> int:
        """Evaluation budget of a method."""
        return self.block.budget.per_method.get(method, self.block.budget.evaluations)


def objective_terms(block: TuningBlock, final: Mapping[str, float | torch.Tensor],
                    initial: Mapping[str, float]) -> float | torch.Tensor:
    """The objective: the sum of the target terms (see :class:`Target`) from the final
    observables (floats or differentiable tensors) and the initial ones (floats)."""
    total: float | torch.Tensor = 0.0
    for name, target in block.targets.items():
        value = final[name]
        if target.growth:
            total = total + target.weight * (value / initial[name] - 1.0)
        else:
            match = target.value
            assert match is not None  # a target without growth has a value (Target._one_kind)
            scale = abs(match) if target.relative else 1.0
            total = total + target.weight * ((value - match) / scale) ** 2
    return total


def exact_moment_particles(particles: np.ndarray, cholesky: np.ndarray,
                           mean: np.ndarray | None = None) -> np.ndarray:
    """Particles moved linearly so that their mean is exactly ``mean`` (default zero; the
    beam's centroid) and their covariance (1/N, as :func:`harness.model.observables.moments`)
    exactly ``cholesky @ cholesky.T``."""
    centred = particles - particles.mean(axis=0)
    covariance = centred.T @ centred / len(centred)
    whitened = np.linalg.solve(np.linalg.cholesky(covariance), centred.T).T
    moved = whitened @ np.asarray(cholesky).T
    return moved if mean is None else moved + np.asarray(mean, dtype=np.float64)


def finite(value: float) -> bool:
    """Whether an objective value is a finite number."""
    return isinstance(value, float) and math.isfinite(value)
