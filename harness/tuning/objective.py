"""The objective of a tuning problem as one backend computes it, with the evaluation trace.

Two ways to evaluate the objective ``F(x)`` (:func:`harness.model.tuning.objective_terms`
of the final observables):

* :class:`BlackBox` — every backend: a copy of the scenario with the parameter values
  (:func:`harness.model.scenario_edit.with_values`) is prepared and tracked from the case's
  initial particles, and every target observable comes from that one track;
* :class:`Differentiable` — the backends with reverse-mode AD
  (:meth:`backends.base.Backend.differentiable_observables`): ``F`` and ``dF/dx`` from
  one track that gives every target observable and one ``torch.autograd.grad`` back
  through it.

:class:`TuningObjective` is what the methods call, in normalised coordinates
``u = (x - lower) / (upper - lower)``: it counts evaluations (a gradient evaluation is one
evaluation of kind ``gradient``, its whole cost in the recorded time), appends one line
per evaluation to the trace file as it happens (nothing is lost when the process dies),
and tells the method to stop once the tolerance is reached or the budget is spent. The
tolerance is reached when the best point so far, the one a case reports, meets it
(:attr:`TuningObjective.reached`): an evaluation within the parameter tolerance whose
objective is not the lowest does not count.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from harness.black_box import BlackBox as SharedBlackBox
from harness.model.tuning import TuningProblem, objective_terms

#: What a non-finite objective (a lost beam, an overflow) is replaced with for the method
#: (the trace records it as empty).
PENALTY = 1.0e30


class Stop(Exception):
    """Raised to a method when the tolerance is reached or the budget is spent."""


def observables_of(particles: np.ndarray, names: list[str], reference) -> dict[str, float]:
    """Observables of the surviving particles (floats)."""
    from harness.model import observables

    values = observables.compute_for(observables.survivors(particles), names, reference)
    return {k: float(v) for k, v in values.items()}


class BlackBox(SharedBlackBox):
    """``F(x)`` by preparing and tracking a scenario copy (any backend;
    :class:`harness.black_box.BlackBox`; ``scenario`` the scenario or the case's plan)."""

    def __init__(self, backend, scenario, problem: TuningProblem, initial: np.ndarray,
                 initial_observables: dict[str, float], device: str, dtype: str):
        super().__init__(backend, scenario, initial, device, dtype)
        self.problem = problem
        self.initial_observables = initial_observables
        self.names = list(problem.block.targets)

    def __call__(self, x: np.ndarray) -> float:
        """The objective at parameter values ``x`` (scenario file units)."""
        values = dict(zip(self.problem.names, (float(v) for v in x), strict=True))
        observed = self.observables(values, self.names)
        return float(objective_terms(self.problem.block, observed, self.initial_observables))


class Differentiable:
    """``F(x)`` and ``dF/dx`` through a backend's differentiable objective; None from
    :meth:`build` when the backend gives none."""

    def __init__(self, observe: Callable, theta0, problem: TuningProblem,
                 initial_observables: dict[str, float]):
        self.observe = observe
        self.theta0 = theta0
        self.problem = problem
        self.initial_observables = initial_observables

    @classmethod
    def build(cls, backend, scenario, problem: TuningProblem, initial: np.ndarray,
              initial_observables: dict[str, float], device: str,
              dtype: str) -> Differentiable | None:
        """The target observables as one differentiable function (None: no AD);
        ``scenario`` the scenario or the case's plan of it (not decided again)."""
        made = backend.differentiable_observables(scenario, list(problem.names),
                                                  list(problem.block.targets), initial,
                                                  device, dtype)
        if made is None:
            return None
        observe, theta0 = made
        return cls(observe, theta0, problem, initial_observables)

    def _objective(self, theta):
        return objective_terms(self.problem.block, self.observe(theta),
                               self.initial_observables)

    def value(self, x: np.ndarray) -> float:
        """The objective at ``x`` without a gradient (no graph kept)."""
        import torch

        with torch.no_grad():
            return float(self._objective(self._theta(x)))

    def value_and_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The objective at ``x`` and its gradient in x (reverse mode)."""
        import torch

        theta = self._theta(x).requires_grad_(True)
        value = self._objective(theta)
        (grad,) = torch.autograd.grad(value, theta)
        return float(value.detach()), grad.detach().to("cpu").double().numpy()

    def _theta(self, x: np.ndarray):
        import torch

        return torch.as_tensor(np.asarray(x, dtype=np.float64)).to(
            dtype=self.theta0.dtype, device=self.theta0.device)


class TuningObjective:
    """What a method calls: ``value(u)`` and ``value_and_gradient(u)`` in normalised
    coordinates, with the trace, the best point and the stop rule.

    Args:
        problem: the problem; budget: most evaluations.
        value: ``x -> F`` (None: the method cannot run without gradients here).
        value_and_gradient: ``x -> (F, dF/dx)`` (None: no gradient).
        trace: a text stream the trace lines go to (JSON per line), or None.
    """

    def __init__(self, problem: TuningProblem, budget: int,
                 value: Callable[[np.ndarray], float] | None,
                 value_and_gradient: Callable[[np.ndarray], tuple[float, np.ndarray]] | None,
                 trace: IO[str] | None = None, pool: Any = None):
        self.problem = problem
        self.budget = budget
        #: :class:`harness.execution.cluster.EvaluationPool` for the parallel evaluations of
        #: a method that proposes several points at once, or None (one after the other).
        self.pool = pool
        self._value = value
        self._value_and_gradient = value_and_gradient
        self.trace = trace
        self.evaluations = 0
        self.gradient_evaluations = 0
        self.best_value = math.inf
        self.best_x: np.ndarray = problem.start.copy()
        self.reached_at: tuple[int, float] | None = None
        self.stop_reason: str | None = None
        self.started = time.perf_counter()
        self.elapsed = 0.0
        self.process = f"{socket.gethostname()}:{os.getpid()}"

    def start_clock(self) -> None:
        """Time zero of the optimisation (after the set-up)."""
        self.started = time.perf_counter()

    def _record(self, kind: str, x: np.ndarray, value: float, process: str = "",
                elapsed: float | None = None) -> float:
        self.elapsed = time.perf_counter() - self.started if elapsed is None else elapsed
        self.evaluations += 1
        finite = math.isfinite(value)
        if finite and value < self.best_value:
            self.best_value, self.best_x = value, np.array(x, dtype=np.float64)
        if not self.reached:
            self.reached_at = None   # a new best outside the tolerance
        elif self.reached_at is None:
            self.reached_at = (self.evaluations, self.elapsed)
            self.stop_reason = "reached"
        if self.evaluations >= self.budget and self.stop_reason is None:
            self.stop_reason = "budget"
        if self.trace is not None:
            line = {"evaluation": self.evaluations, "kind": kind, "wall_s": self.elapsed,
                    "objective": value if finite else None,
                    "best": self.best_value if math.isfinite(self.best_value) else None,
                    "distance": self.problem.distance(x),
                    "process": process or self.process}
            self.trace.write(json.dumps(line) + "\n")
            self.trace.flush()
        return value if finite else PENALTY

    @property
    def reached(self) -> bool:
        """Whether the best point so far (the one the case reports) meets the tolerance:
        the one definition of ``reached`` (:meth:`TuningProblem.reached` of the best
        objective and parameters), so that a case never says reached while its final
        distance is above the tolerance."""
        return (math.isfinite(self.best_value)
                and self.problem.reached(self.best_value, self.best_x))

    def check(self) -> None:
        """Raise :class:`Stop` once the method must stop (tolerance reached, budget spent)."""
        if self.stop_reason is not None:
            raise Stop(self.stop_reason)

    @property
    def remaining(self) -> int:
        """Evaluations left in the budget."""
        return max(self.budget - self.evaluations, 0)

    @property
    def evaluation_workers(self) -> int:
        """How many evaluations may run at once (the pool's workers, else 1)."""
        return 1 if self.pool is None else self.pool.workers

    @property
    def function(self) -> Callable[[np.ndarray], float]:
        """``x -> F`` (scenario file units), the black-box evaluation itself: what a method
        that evaluates elsewhere (the pool's workers) ships there; it records nothing."""
        if self._value is None:
            raise RuntimeError("no objective evaluation for this backend")
        return self._value

    def value(self, u: np.ndarray) -> float:
        """``F`` at normalised ``u``; raises :class:`Stop` once the method must stop."""
        self.check()
        x = self.problem.from_unit(u)
        return self._record("value", x, float(self.function(x)))

    def record_values(self, points: list[np.ndarray], values: list[float],
                      processes: list[str]) -> None:
        """Record evaluations made elsewhere (a batch from the pool), in order, at the
        time they came back (``points`` in scenario file units; ``processes``: where each
        ran, ``host:pid``)."""
        came_back = time.perf_counter() - self.started
        for x, value, process in zip(points, values, processes, strict=True):
            self._record("value", x, float(value), process, came_back)

    def value_and_gradient(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        """``F`` and ``dF/du`` at normalised ``u``; raises :class:`Stop` as :meth:`value`."""
        self.check()
        if self._value_and_gradient is None:
            raise RuntimeError("no gradient for this backend")
        x = self.problem.from_unit(u)
        value, grad = self._value_and_gradient(x)
        self.gradient_evaluations += 1
        recorded = self._record("gradient", x, float(value))
        grad = np.asarray(grad, dtype=np.float64) * (self.problem.upper - self.problem.lower)
        if not np.all(np.isfinite(grad)):
            grad = np.zeros_like(grad)
        return recorded, grad


def read_trace(path: Path) -> list[dict[str, Any]]:
    """The lines of a trace file; a truncated last line (a killed writer) is skipped."""
    lines: list[dict[str, Any]] = []
    if not Path(path).exists():
        return lines
    for text in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            continue
    return lines
