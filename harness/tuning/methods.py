"""The one registry of optimisation methods of the tuning benchmark.

Each entry is a named :class:`Method`: its family (``gradient``: needs the backend's
reverse-mode AD gradient; ``gradient-free``: objective values only, every backend), the
library it comes from and the function that runs it on a
:class:`harness.tuning.objective.TuningObjective` in normalised coordinates ``u`` in
[0, 1]^P, starting from the problem's start point. A method runs until the objective tells
it to stop (:class:`~harness.tuning.objective.Stop`: tolerance reached or budget spent) or
until it ends by its own rule (its message is recorded).

* ``lbfgs`` — ``scipy.optimize.minimize(method="L-BFGS-B")`` with the AD gradient
  (``jac=True``; the bounds are the unit box; its own tolerances set to zero so that only
  the problem's tolerance stops it).
* ``adam`` — ``torch.optim.Adam`` on ``u`` with the AD gradient, the learning rate of the
  block (``adam_learning_rate``) halved by ``ReduceLROnPlateau`` when the objective stalls
  for :data:`ADAM_PATIENCE` steps; ``u`` clipped to the box after each step.
* ``neldermead`` — ``scipy.optimize.minimize(method="Nelder-Mead")``, adaptive parameters
  (Gao and Han 2012), bounded to the box; the baseline.
* ``xopt-neldermead`` — Xopt's ``NelderMeadGenerator`` (adaptive), one evaluation per step.
* ``xopt-bo`` — Bayesian optimisation with Xopt's ``ExpectedImprovementGenerator``
  (BoTorch Gaussian process) inside a trust region (Xopt's ``OptimizeTurboController``,
  TuRBO: Eriksson et al., NeurIPS 2019) that shrinks about the best point down to
  :data:`BO_TRUST_REGION_MIN` of the box, so that BO can end as precisely as a local
  method: the start point and ``min(2P, 8)`` random points (seeded, :data:`BO_SEED`), then
  one candidate per step, or K per step (q-EI) with an evaluation pool of K workers; the
  GP models ``log10(F)`` when the objective cannot be negative (no growth term: matching
  objectives span orders of magnitude); not run above :data:`BO_MAX_PARAMETERS`
  parameters.

Evaluations run one after the other, except for a method marked ``parallel`` given an
evaluation pool (:class:`harness.execution.cluster.EvaluationPool`, Dask workers of the
execution layer): its batches of points are evaluated at once, one per worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from harness.model.vocabulary import TUNING_METHODS

if TYPE_CHECKING:
    from harness.model.tuning import TuningProblem
    from harness.tuning.objective import TuningObjective

#: Above this many parameters the Gaussian-process method is not run (each step refits a
#: GP in P dimensions and optimises the acquisition: minutes per step on 2 cores).
BO_MAX_PARAMETERS = 16
#: Smallest side of the BO trust region (fraction of the box): small enough for the
#: 1e-6 relative tolerance on the parameters.
BO_TRUST_REGION_MIN = 1.0e-9
#: Successive successes (failures) after which the trust region grows (shrinks).
BO_TRUST_REGION_STEPS = 2
#: Steps without improvement before Adam's learning rate is halved.
ADAM_PATIENCE = 50


@dataclass(frozen=True)
class Method:
    """A registered method (see the module text)."""

    name: str
    family: Literal["gradient", "gradient-free"]
    library: str
    description: str
    run: Callable[[TuningObjective, TuningProblem], str]
    max_parameters: int | None = None
    #: Whether it proposes several points at once, so that an evaluation pool runs them in
    #: parallel (``trackbench tune --evaluation-workers K``).
    parallel: bool = False

    @property
    def needs_gradient(self) -> bool:
        """Whether the method needs the AD gradient."""
        return self.family == "gradient"


def _stopped(call: Callable[[], str]) -> str:
    """Run a method until its own end (its message) or a :class:`Stop` (its reason)."""
    from harness.tuning.objective import Stop

    try:
        return call()
    except Stop as stop:
        return str(stop)


def run_lbfgs(objective: TuningObjective, problem: TuningProblem) -> str:
    """scipy L-BFGS-B with the AD gradient."""
    from scipy.optimize import minimize

    def call() -> str:
        result = minimize(objective.value_and_gradient, problem.to_unit(problem.start),
                          jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * problem.size,
                          options={"maxiter": objective.budget, "maxfun": objective.budget,
                                   "ftol": 0.0, "gtol": 0.0, "maxcor": 20})
        return f"ended: {result.message}"

    return _stopped(call)


def run_adam(objective: TuningObjective, problem: TuningProblem) -> str:
    """torch Adam with a plateau-halved learning rate."""
    import torch

    def call() -> str:
        u = torch.tensor(problem.to_unit(problem.start), dtype=torch.float64,
                         requires_grad=True)
        optimiser = torch.optim.Adam([u], lr=problem.block.adam_learning_rate)
        schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5,
                                                              patience=ADAM_PATIENCE)
        while True:
            value, grad = objective.value_and_gradient(u.detach().numpy())
            optimiser.zero_grad()
            u.grad = torch.as_tensor(grad, dtype=torch.float64)
            optimiser.step()
            schedule.step(value)
            with torch.no_grad():
                u.clamp_(0.0, 1.0)

    return _stopped(call)


def run_neldermead(objective: TuningObjective, problem: TuningProblem) -> str:
    """scipy Nelder-Mead (adaptive), bounded to the box."""
    from scipy.optimize import minimize

    def call() -> str:
        result = minimize(objective.value, problem.to_unit(problem.start),
                          method="Nelder-Mead", bounds=[(0.0, 1.0)] * problem.size,
                          options={"maxfev": objective.budget, "maxiter": objective.budget,
                                   "xatol": 1e-15, "fatol": 0.0, "adaptive": True})
        return f"ended: {result.message}"

    return _stopped(call)


#: Seed of the random initial points of the Bayesian optimisation (reproducible runs).
BO_SEED = 20251125


@dataclass(frozen=True)
class XoptFunction:
    """What Xopt's evaluator calls with a point ``{u0: ..., u1: ...}`` of the unit box:
    ``{"f": what the generator minimises, "objective": F, "process": "host:pid"}``, ``F``
    the black-box objective (non-finite: :data:`~harness.tuning.objective.PENALTY` for the
    generator), ``f`` either ``F`` or ``log10(F)`` (``logarithm``) and ``process`` where it
    was evaluated. Picklable (it holds the black box), so
    it runs in the pool's workers as well as here."""

    value: Callable[[np.ndarray], float]
    problem: TuningProblem
    names: tuple[str, ...]
    logarithm: bool

    def __call__(self, inputs: dict) -> dict:
        import math
        import os
        import socket

        from harness.tuning.objective import PENALTY

        u = np.array([inputs[n] for n in self.names], dtype=np.float64)
        value = float(self.value(self.problem.from_unit(u)))
        seen = value if math.isfinite(value) else PENALTY
        return {"f": math.log10(max(seen, 1e-300)) if self.logarithm else seen,
                "objective": value, "process": f"{socket.gethostname()}:{os.getpid()}"}


def _xopt(objective: TuningObjective, problem: TuningProblem, generator_factory,
          random_points: int = 0, logarithm: bool = False, batch: bool = False) -> str:
    """Run an Xopt generator over the unit box until the objective says stop
    (:func:`harness.tuning.xopt_driver.drive`); with ``logarithm`` the generator sees
    ``log10(F)`` (a non-negative objective). With ``batch`` and an evaluation pool, the
    random points and then ``objective.evaluation_workers`` candidates per step are
    evaluated at once on the pool's workers (Xopt's ``Evaluator`` with the pool's
    executor); the evaluations are recorded here when their batch comes back."""
    from harness.tuning import xopt_driver
    from harness.tuning.objective import Stop

    names = [f"u{i}" for i in range(problem.size)]
    vocs = xopt_driver.vocs_for(names, [(0.0, 1.0)] * problem.size)
    function = XoptFunction(objective.function, problem, tuple(names), logarithm)
    workers = objective.evaluation_workers if batch else 1
    start = dict(zip(names, (float(v) for v in problem.to_unit(problem.start)), strict=True))

    def record(rows: list[dict]) -> None:
        objective.record_values(
            [problem.from_unit(np.array([row[n] for n in names])) for row in rows],
            [float(row.get("objective", float("nan"))) for row in rows],
            [str(row.get("process", "")) for row in rows])

    try:
        return xopt_driver.drive(
            generator_factory(vocs, start), function, record=record,
            check=lambda _generator: objective.check(),
            remaining=lambda: objective.remaining, start=start, random_points=random_points,
            seed=BO_SEED, workers=workers,
            executor=objective.pool.executor if workers > 1 else None)
    except Stop as stop:
        return str(stop)


def run_xopt_neldermead(objective: TuningObjective, problem: TuningProblem) -> str:
    """Xopt's NelderMeadGenerator."""
    from xopt.generators.sequential.neldermead import NelderMeadGenerator

    return _xopt(objective, problem, lambda vocs, start: NelderMeadGenerator(
        vocs=vocs, initial_point=start, adaptive=True))


def run_xopt_bo(objective: TuningObjective, problem: TuningProblem) -> str:
    """Xopt's ExpectedImprovementGenerator (BoTorch) in a TuRBO trust region."""
    from xopt.generators.bayesian.expected_improvement import ExpectedImprovementGenerator
    from xopt.generators.bayesian.turbo import OptimizeTurboController

    non_negative = not any(t.growth for t in problem.block.targets.values())

    def generator(vocs, start):
        turbo = OptimizeTurboController(vocs=vocs, length_min=BO_TRUST_REGION_MIN,
                                        success_tolerance=BO_TRUST_REGION_STEPS,
                                        failure_tolerance=BO_TRUST_REGION_STEPS)
        return ExpectedImprovementGenerator(vocs=vocs, turbo_controller=turbo)

    return _xopt(objective, problem, generator, random_points=min(2 * problem.size, 8),
                 logarithm=non_negative, batch=True)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("lbfgs", "gradient", "scipy", "L-BFGS-B with the reverse-mode AD gradient",
           run_lbfgs),
    Method("adam", "gradient", "torch", "Adam with the reverse-mode AD gradient", run_adam),
    Method("neldermead", "gradient-free", "scipy", "Nelder-Mead (adaptive)", run_neldermead),
    Method("xopt-neldermead", "gradient-free", "xopt", "Xopt NelderMeadGenerator",
           run_xopt_neldermead),
    Method("xopt-bo", "gradient-free", "xopt",
           "Xopt ExpectedImprovementGenerator (BoTorch GP) in a TuRBO trust region",
           run_xopt_bo, max_parameters=BO_MAX_PARAMETERS, parallel=True),
)}
if tuple(METHODS) != TUNING_METHODS:  # one list of names, in the vocabulary
    raise RuntimeError(f"tuning registry {tuple(METHODS)} != vocabulary {TUNING_METHODS}")
