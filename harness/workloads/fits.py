"""The reconstruction methods of the quad-scan workload, each timed and traced.

Every method returns a :class:`MethodResult`: its row (evaluations, wall time [s], the
reconstructed sigma-matrix and its errors, see :func:`harness.workloads.quad_scan.
error_columns`) and its trace (the best point so far against evaluations and wall time),
or a status saying why it did not run (``unsupported: ...``, ``failed: ...``), never a
traceback. Methods (the objective is that of :mod:`harness.workloads.quad_scan`):

* ``analytic``: the weighted linear least squares (the reference answer);
* ``gauss-newton``: Levenberg-Marquardt (Nocedal & Wright, *Numerical Optimization*, 2nd
  ed., sec. 10.3) on the 2K residuals, the Jacobian by reverse-mode AD through a
  differentiable backend; K settings as one batch where the backend takes one;
* ``lbfgs``: ``torch.optim.LBFGS`` with a strong-Wolfe line search on the same objective;
* ``neldermead``: ``scipy.optimize.minimize(method="Nelder-Mead", adaptive=True)`` through
  any backend, the model beam tracked at every setting;
* ``xopt-neldermead``: Xopt's ``NelderMeadGenerator`` (adaptive, the same initial simplex
  and the same stopping rule as ``neldermead``) through any backend, driven step by step
  by :func:`harness.tuning.xopt_driver.drive` as the tuning benchmark drives it.

Xopt's Bayesian optimisation (``xopt-bo`` of the tuning benchmark) is not a method here:
reaching the reference answer to :data:`~harness.workloads.quad_scan.TARGET` in six
dimensions takes it far more evaluations than the budget, each step refitting a Gaussian
process on every point so far (docs/workloads.md gives the measurement).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends.registry import get_backend
from harness.names import printable
from harness.workloads import quad_scan as qs

#: The fit methods and whether they need a differentiable backend.
METHODS = {"gauss-newton": True, "lbfgs": True, "neldermead": False,
           "xopt-neldermead": False}
#: Bounds of each fit-vector entry for Xopt (its variables need a box): ln(beta/beta0) and
#: ln(eps/eps0) within +-20 (a factor 5e8), alpha within +-20.
XOPT_BOUND = 20.0
#: Nelder-Mead's stopping rule, both implementations (scipy's ``xatol`` and ``fatol``): the
#: simplex spans under XATOL in every fit-vector entry and FATOL in objective.
XATOL, FATOL = 1e-8, 1e-14
#: Initial simplex step of both Nelder-Mead implementations, in each fit-vector entry.
SIMPLEX_STEP = 0.3


@dataclass
class MethodResult:
    """One method on one backend: its row and its trace ``(evaluations, wall_s, u)``."""

    row: dict[str, Any]
    trace: list[tuple[int, float, np.ndarray]] = field(default_factory=list)
    sigma: np.ndarray | None = None


def _base_row(method: str, backend: str, kind: str) -> dict[str, Any]:
    return {"method": method, "backend": backend, "kind": kind, "status": "ok",
            "evaluations": 0, "gradients": 0, "batched": False, "wall_s": float("nan"),
            "time_to_target_s": None, "objective": float("nan")}


def run_analytic(problem: qs.Problem) -> MethodResult:
    """The analytic linear least-squares answer."""
    row = _base_row("analytic", "-", "analytic")
    row["model"] = "linear"
    start = time.perf_counter()
    sigma = qs.analytic(problem)
    row["wall_s"] = time.perf_counter() - start
    row["evaluations"] = 1
    return finish(MethodResult(row, [], sigma), problem, sigma)


def finish(result: MethodResult, problem: qs.Problem, reference: np.ndarray) -> MethodResult:
    """Fill the row's sigma-matrix and errors (final point) against the ``reference``
    answer (the analytic one where the problem has the closed form), the time to reach it
    to :data:`~harness.workloads.quad_scan.TARGET` from the trace (a result without a
    trace, the analytic answer: its wall time if it is within the target)."""
    if result.sigma is None and result.trace:
        result.sigma = qs.model_sigma(problem, qs.twiss_of(result.trace[-1][2]))
    if result.sigma is None:
        return result
    for name, value in zip(qs.SIGMA_ELEMENTS, result.sigma.ravel(), strict=True):
        result.row[name] = float(value)
    result.row.update(qs.error_columns(result.sigma, problem, reference))
    if not result.trace:
        result.row["time_to_target_s"] = (result.row["wall_s"] if result.row[
            "max_dev_analytic"] <= qs.TARGET else None)
    for evaluations, wall, u in result.trace:
        sigma = qs.model_sigma(problem, qs.twiss_of(u))
        if np.max(qs.normalised_errors(sigma, reference)) <= qs.TARGET:
            result.row["time_to_target_s"] = wall
            result.row["evaluations_to_target"] = evaluations
            break
    return result


def trace_rows(result: MethodResult, problem: qs.Problem, reference: np.ndarray
               ) -> list[dict[str, Any]]:
    """The trace as rows: evaluations, wall_s, max deviation from the analytic answer and
    max error vs the known beam (normalised, see :func:`~harness.workloads.quad_scan.
    normalised_errors`)."""
    rows = []
    for evaluations, wall, u in result.trace:
        sigma = qs.model_sigma(problem, qs.twiss_of(u))
        rows.append({"method": result.row["method"], "backend": result.row["backend"],
                     "evaluations": evaluations, "wall_s": wall,
                     "max_dev_analytic": float(np.max(qs.normalised_errors(sigma, reference))),
                     "max_err_truth": float(np.max(qs.normalised_errors(sigma, problem.truth)))})
    return rows


def run_method(problem: qs.Problem, method: str, backend: str, reference: np.ndarray | None,
               max_evaluations: int) -> MethodResult:
    """One method through one backend; a failure is a status, never a traceback. With a
    ``reference`` the row's errors and time to target are filled (:func:`finish`); without
    one the caller finishes it once the reference is known."""
    kind = "gradient" if METHODS[method] else "gradient-free"
    row = _base_row(method, backend, kind)
    try:
        instance = get_backend(backend)
    except KeyError as error:
        row["status"] = f"unsupported: {error.args[0]}"
        return MethodResult(row)
    availability = instance.availability()
    if not availability.available:
        row["status"] = f"unsupported: {backend} is not installed ({availability.hint})"
        return MethodResult(row)
    verdict = instance.supports(problem.scenario)
    if not verdict:
        row["status"] = f"unsupported: {verdict.reason}"
        return MethodResult(row)
    row["model"] = verdict.model
    if METHODS[method] and not instance.differentiable:
        row["status"] = f"unsupported: {backend} gives no AD gradients"
        return MethodResult(row)
    try:
        if method == "neldermead":
            result = _neldermead(problem, instance, row, max_evaluations)
        elif method == "xopt-neldermead":
            result = _xopt_neldermead(problem, instance, row, max_evaluations)
        else:
            result = _gradient(problem, instance, row, method, max_evaluations)
    except Exception as error:  # noqa: BLE001 - a code's failure is a row, not a traceback
        row["status"] = f"failed: {type(error).__name__}: {printable(str(error))[:300]}"
        return MethodResult(row)
    return result if reference is None else finish(result, problem, reference)


class _Tracked:
    """The objective of the gradient-free methods through ``backend``: every evaluation
    draws the model beam and tracks it at all K settings (each setting prepared once,
    before the timed span, with one untimed warm-up track as the run's warm-up). Counts the
    evaluations and traces each new best point ``(evaluations, wall_s, u)``."""

    def __init__(self, problem: qs.Problem, backend: Any, row: dict[str, Any]):
        self.problem = problem
        self.trace: list[tuple[int, float, np.ndarray]] = []
        self.best = np.inf
        self.count = 0
        setup = time.perf_counter()
        self.prepared = [backend.prepare(setting) for setting in qs.scenario_settings(problem)]
        warm = qs.model_particles(problem, qs.twiss_of(qs.start_vector()))
        for handle in self.prepared:
            handle.track(warm)
        self.start = time.perf_counter()
        row["setup_s"] = self.start - setup

    def __call__(self, u: np.ndarray) -> float:
        """The objective at fit vector ``u``; inf where it is not finite or ``u`` is out
        of range (|u| > 50)."""
        self.count += 1
        if np.any(np.abs(u) > 50):
            return float("inf")
        particles = qs.model_particles(self.problem, qs.twiss_of(u))
        sizes = np.array([qs.sizes_of(p.track(particles), self.problem.scenario)
                          for p in self.prepared])
        value = qs.objective_from_sizes(self.problem, sizes)
        if not np.isfinite(value):
            return float("inf")
        if value < self.best:
            self.best = value
            self.trace.append((self.count, time.perf_counter() - self.start,
                               np.array(u, float)))
        return value

    def close(self) -> None:
        """Release every prepared setting."""
        for handle in self.prepared:
            handle.close()


def _initial_simplex() -> np.ndarray:
    """``(7, 6)``: the start and one step of :data:`SIMPLEX_STEP` along each entry."""
    return np.vstack([qs.start_vector()] + [SIMPLEX_STEP * np.eye(6)[i] for i in range(6)])


def _neldermead(problem: qs.Problem, backend: Any, row: dict[str, Any],
                max_evaluations: int) -> MethodResult:
    """scipy's Nelder-Mead through ``backend`` (:class:`_Tracked`)."""
    from scipy.optimize import minimize

    objective = _Tracked(problem, backend, row)
    try:
        found = minimize(objective, qs.start_vector(), method="Nelder-Mead",
                         options={"initial_simplex": _initial_simplex(), "xatol": XATOL,
                                  "fatol": FATOL, "maxfev": max_evaluations,
                                  "adaptive": True})
        row["wall_s"] = time.perf_counter() - objective.start
    finally:
        objective.close()
    row["evaluations"] = objective.count
    row["objective"] = float(found.fun)
    row["converged"] = bool(found.success)
    if not found.success:
        row["status"] = f"stopped: {printable(str(found.message))[:80]}"
    return MethodResult(row, objective.trace)


class _XoptStop(Exception):
    """Raised to the Xopt loop when the simplex has collapsed or the budget is spent."""


def _xopt_neldermead(problem: qs.Problem, backend: Any, row: dict[str, Any],
                     max_evaluations: int) -> MethodResult:
    """Xopt's NelderMeadGenerator through ``backend`` (:class:`_Tracked`): the initial
    simplex of ``neldermead``, within +-:data:`XOPT_BOUND`, stopped by scipy's rule
    (the simplex spans under :data:`XATOL` and :data:`FATOL`) or the budget. Xopt's own
    bookkeeping (its data table, one candidate per step) is inside the timed span."""
    from xopt.generators.sequential.neldermead import NelderMeadGenerator

    from harness.tuning import xopt_driver

    names = [f"u{i}" for i in range(6)]
    vocs = xopt_driver.vocs_for(names, [(-XOPT_BOUND, XOPT_BOUND)] * 6)
    simplex = _initial_simplex()
    generator = NelderMeadGenerator(
        vocs=vocs, adaptive=True, initial_point=dict.fromkeys(names, 0.0),
        initial_simplex={n: simplex[:, i].tolist() for i, n in enumerate(names)})
    objective = _Tracked(problem, backend, row)

    def function(inputs: dict) -> dict:
        value = objective(np.array([inputs[n] for n in names], dtype=np.float64))
        return {"f": value if np.isfinite(value) else 1e30}

    def check(running: Any) -> None:
        if objective.count >= max_evaluations:
            raise _XoptStop("stopped: the evaluation budget is spent")
        # the state of the last candidate; stage 1 (a reflection proposed) holds the
        # simplex sorted at the start of an iteration, where scipy tests its rule
        state = running.current_state
        sim, fsim = state.sim, state.fsim
        if (state.astg == 1 and sim is not None and fsim is not None
                and np.all(np.isfinite(fsim))
                and np.max(np.abs(sim[1:] - sim[0])) <= XATOL
                and np.max(np.abs(fsim[0] - fsim[1:])) <= FATOL):
            raise _XoptStop("ok")

    try:
        try:
            message = xopt_driver.drive(generator, function, record=lambda rows: None,
                                        check=check,
                                        remaining=lambda: max_evaluations - objective.count)
        except _XoptStop as stop:
            message = str(stop)
        row["wall_s"] = time.perf_counter() - objective.start
    finally:
        objective.close()
    row["evaluations"] = objective.count
    row["objective"] = float(objective.best)
    row["converged"] = message == "ok"
    if message != "ok":
        row["status"] = message
    return MethodResult(row, objective.trace)


def _gradient(problem: qs.Problem, backend: Any, row: dict[str, Any], method: str,
              max_evaluations: int) -> MethodResult:
    """A gradient-based fit through ``backend.differentiable_observables``."""
    import torch

    names = [problem.parameter] + [f"beam.twiss.{k}" for k in qs.TWISS_FIELDS]
    setup = time.perf_counter()
    dummy = np.zeros((problem.particles, 6))
    made = backend.differentiable_observables(problem.scenario, names, ["sigma_x", "sigma_y"],
                                              dummy, "cpu", "float64")
    if made is None:
        row["status"] = f"unsupported: {backend.name} gives no differentiable observables"
        return MethodResult(row)
    g, _ = made
    strengths = torch.as_tensor(problem.strengths, dtype=torch.float64)
    measured = torch.as_tensor(problem.measured, dtype=torch.float64)
    base = torch.tensor([qs.START[k] for k in qs.TWISS_FIELDS], dtype=torch.float64)
    log_scaled = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    batched = backend.name == "inhouse"
    row["batched"] = batched
    count: dict[str, Any] = {"evaluations": 0, "gradients": 0}

    def residuals(u: torch.Tensor) -> torch.Tensor:
        """``(2K,)``: sigma_model^2 / sigma_measured^2 - 1 for x then y."""
        count["evaluations"] += 1
        twiss = torch.where(log_scaled > 0, base * torch.exp(u), u)
        theta = torch.cat([strengths[:, None], twiss.expand(len(strengths), 6)], dim=1)
        if batched:
            out = g(theta)
            sizes = torch.stack([out["sigma_x"], out["sigma_y"]], dim=1)
        else:
            rows = [g(one) for one in theta.unbind(0)]
            sizes = torch.stack([torch.stack([r["sigma_x"], r["sigma_y"]]) for r in rows])
        return ((sizes / measured) ** 2 - 1.0).T.reshape(-1)

    trace: list[tuple[int, float, np.ndarray]] = []
    u = torch.zeros(6, dtype=torch.float64)
    warm = u.clone().requires_grad_(True)  # warm-up evaluation and gradient, not timed
    residuals(warm).sum().backward()
    if method == "gauss-newton":
        torch.func.jacfwd(residuals)(u)
    count["evaluations"] = 0
    start = time.perf_counter()
    row["setup_s"] = start - setup
    if method == "gauss-newton":
        u, value = _levenberg_marquardt(residuals, u, count, trace, start, max_evaluations)
    else:
        u, value = _lbfgs(residuals, u, count, trace, start, max_evaluations)
    row["wall_s"] = time.perf_counter() - start
    row["evaluations"] = count["evaluations"]
    row["gradients"] = count["gradients"]
    if method == "gauss-newton":
        row["jacobian"] = count.get("jacobian", "forward")
    row["objective"] = value
    return MethodResult(row, trace)


def _levenberg_marquardt(residuals, u, count, trace, start, max_evaluations):
    """Levenberg-Marquardt with the ``(2K, 6)`` Jacobian by forward-mode AD
    (``torch.func.jacfwd``: six tangents, fewer than the 2K residuals); stops when a step
    changes u by under 1e-13 relative."""
    import torch

    lam = 1e-3

    def jacobian(point: torch.Tensor):
        jac = None
        if count.get("jacobian", "forward") == "forward":
            jac = torch.func.jacfwd(residuals)(point)
            if not bool(torch.isfinite(jac).all()):
                # a code whose forward mode gives NaN somewhere (Cheetah's quadrupole at
                # Kn1 = 0) is differentiated in reverse mode from then on
                count["jacobian"] = "reverse (forward mode gave non-finite entries)"
                jac = None
        if jac is None:
            jac = torch.autograd.functional.jacobian(residuals, point)
        with torch.no_grad():
            r = residuals(point)
        count["gradients"] += 1
        return r, jac

    r, jac = jacobian(u)
    value = float(r @ r)
    trace.append((count["evaluations"], time.perf_counter() - start, u.numpy().copy()))
    while count["evaluations"] < max_evaluations:
        normal = jac.T @ jac
        gradient = jac.T @ r
        step = -torch.linalg.solve(normal + lam * torch.diag(torch.diagonal(normal)), gradient)
        trial = u + step
        with torch.no_grad():
            r_trial = residuals(trial)
        trial_value = float(r_trial @ r_trial)
        if np.isfinite(trial_value) and trial_value <= value:
            u, value = trial, trial_value
            lam = 1e-3
            trace.append((count["evaluations"], time.perf_counter() - start,
                          u.numpy().copy()))
            if float(torch.max(torch.abs(step))) < 1e-13 * (1 + float(torch.max(torch.abs(u)))):
                break
            r, jac = jacobian(u)
        else:
            lam *= 10
            if lam > 1e12:
                break
    return u, value


def _lbfgs(residuals, u, count, trace, start, max_evaluations):
    """``torch.optim.LBFGS`` (strong Wolfe) on the sum of squared residuals."""
    import torch

    u = u.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([u], lr=1.0, max_iter=max_evaluations,
                                  max_eval=max_evaluations, tolerance_grad=1e-15,
                                  tolerance_change=1e-18, history_size=20,
                                  line_search_fn="strong_wolfe")
    best = [float("inf")]

    def closure():
        optimiser.zero_grad()
        r = residuals(u)
        value = r @ r
        value.backward()
        count["gradients"] += 1
        if value.item() < best[0]:
            best[0] = value.item()
            trace.append((count["evaluations"], time.perf_counter() - start,
                          u.detach().numpy().copy()))
        return value

    optimiser.step(closure)
    return u.detach(), best[0]
