"""The ``gradient`` case kind, run inside the child process (:mod:`harness.child`).

For a scenario, backend, particle count, device and dtype, and the named parameters and
objective of ``spec.options`` (:class:`harness.case_spec.CaseSpec`), :func:`gradient_case`
measures the gradient of the objective at the lattice end, by every method the backend allows:

* ``reverse`` — ``torch.autograd.grad`` of the backend's differentiable objective
  (:meth:`backends.base.Backend.objective`), one forward + one backward for all parameters;
* ``forward`` — forward mode, ``torch.func.jacfwd`` (falling back to one ``torch.func.jvp``
  per parameter when the backend's objective cannot be vmapped);
* ``fd`` — central finite differences over the relative steps ``options["fd_steps"]``
  (default :data:`harness.gradients.DEFAULT_FD_STEPS`), for every backend, ImpactX
  included: each evaluation prepares and tracks a copy of the scenario with one parameter
  changed (:func:`harness.model.scenario_edit.with_values`) from the *same* initial particles
  (common random numbers); for beam parameters the particles are drawn again from the
  edited beam with the scenario's seed (:func:`harness.model.particles.generate`).

Reference gradient (``reference_method`` column), chosen in this order:

1. ``analytic`` — values given in ``options["analytic"]`` (parameter -> derivative);
2. ``forward-mode inhouse float64 cpu`` — the in-house tracker's forward-mode gradient
   on the same initial particles (the seeded draw of the same count), computed in the same
   child; for an in-house float64 CPU case it is that case's own forward-mode gradient;
3. none (``reference_method`` says why), and ``rel_error`` is left empty.

Computing the reference in the child keeps every case self-contained (no ordering between
cases, ``--resume`` safe) at the cost of one extra forward-mode pass per non-in-house case.

Rows (:data:`harness.rows.GRADIENT`): per parameter one ``reference`` row, one row per AD
method and one ``fd`` row per step; every row carries the case's costs. A method that
fails gets rows with status ``failed`` (or ``oom``) and its reason while the other
methods go on; an error outside the methods fails the whole case (one row). Rows of a
backend that runs a stand-in model (``model_matches_scenario`` false) compare a different
model's gradient with the reference: their ``rel_error`` includes the model difference.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from harness import gradients
from harness.black_box import BlackBox
from harness.case_spec import CaseSpec
from harness.case_support import (
    Clock,
    initial_particles,
    is_out_of_memory,
    last_line,
    load,
    peak_rss_bytes,
)
from harness.gradients import rel_error, scaled_error
from harness.model.vocabulary import Status

#: What the default reference gradient is.
INHOUSE_REFERENCE = "forward-mode inhouse float64 cpu"


class BlackBoxObjective(BlackBox):
    """The objective as any backend computes it (:class:`harness.black_box.BlackBox`): one
    observable of the surviving particles for parameter values.

    Args:
        backend: a backend instance; scenario: the unchanged scenario or the case's plan
            of it (:class:`harness.black_box.BlackBox`).
        objective: observable name; initial: ``(N, 6)`` initial particles.
        device, dtype: where and in which precision the backend tracks.
    """

    def __init__(self, backend, scenario, objective: str, initial: np.ndarray, device: str,
                 dtype: str):
        super().__init__(backend, scenario, initial, device, dtype)
        self.objective = objective

    def __call__(self, values: dict[str, float] | None = None) -> float:
        """The objective with ``values`` (parameter name -> value) replacing the scenario's."""
        return float(self.observables(values, [self.objective])[self.objective])


def reverse_gradient(f: Callable, theta0) -> Any:
    """``d f / d theta`` at ``theta0`` by reverse mode (one forward, one backward)."""
    import torch

    theta = theta0.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(theta), theta)
    return grad


def forward_gradient(f: Callable, theta0) -> tuple[Any, str]:
    """``d f / d theta`` at ``theta0`` by forward mode, and how (``jacfwd`` or ``jvp``)."""
    import torch

    theta = theta0.detach()
    try:
        return torch.func.jacfwd(f)(theta), "jacfwd"
    except Exception:  # noqa: BLE001 - objectives that cannot be vmapped: one jvp each
        columns = []
        for i in range(theta.numel()):
            tangent = torch.zeros_like(theta)
            tangent[i] = 1.0
            columns.append(torch.func.jvp(f, (theta,), (tangent,))[1])
        return torch.stack(columns), "jvp"


def _as_floats(tensor) -> list[float]:
    return [float(v) for v in tensor.detach().to("cpu").double().reshape(-1)]


def _failure(error: BaseException) -> dict[str, Any]:
    from harness.model.vocabulary import Cause

    oom = is_out_of_memory(error)
    return {"status": (Status.OOM if oom else Status.FAILED).value,
            "cause": (Cause.OUT_OF_MEMORY if oom else Cause.EXCEPTION).value,
            "reason": last_line(error)}


def _reference(spec: CaseSpec, scenario, names: list[str], objective: str,
               initial: np.ndarray, own_forward: list[float] | None
               ) -> tuple[list[float] | None, str]:
    """The reference gradient and what it is (see the module text)."""
    analytic = spec.options.get("analytic")
    if analytic:
        missing = [n for n in names if n not in analytic]
        if not missing:
            return [float(analytic[n]) for n in names], "analytic"
    own_is_reference = (spec.backend == "inhouse" and spec.dtype == "float64"
                        and spec.device == "cpu")
    if own_is_reference and own_forward is not None:
        return own_forward, INHOUSE_REFERENCE
    try:
        from backends.registry import load_backend_class

        inhouse = load_backend_class("inhouse")()
        plan = inhouse.plan(scenario, "cpu", "float64")  # once, handed to its objective
        if not plan:
            return None, f"none: inhouse cannot run the scenario ({plan.reason})"
        made = inhouse.objective(plan, names, objective, initial, "cpu", "float64")
        if made is None:
            return None, "none: the in-house backend gives no differentiable objective"
        f, theta0 = made
        jacobian, _ = forward_gradient(f, theta0)
        return _as_floats(jacobian), INHOUSE_REFERENCE
    except Exception as error:  # noqa: BLE001 - the case goes on without a reference
        return None, f"none: the in-house reference failed ({last_line(error)})"


def _ad_methods(backend, plan, names, objective, initial, device, dtype, repeat,
                ) -> tuple[dict[str, dict[str, Any]], float | None]:
    """Reverse- and forward-mode results of a differentiable backend from the case's plan
    (:class:`backends.base.Plan`, not decided again), and the time of one forward
    evaluation of its objective [s] (None: no AD objective)."""
    import torch

    try:
        made = backend.objective(plan, names, objective, initial, device, dtype)
        if made is None:
            return {}, None
        f, theta0 = made

        def plain_forward():
            with torch.no_grad():
                return f(theta0)

        plain_forward()  # warm-up (caches, compilation)
        sync = gradients.cuda_synchronizer(device)
        _, time_forward, _ = gradients.timed(plain_forward, repeat, sync)
    except Exception as error:  # noqa: BLE001 - no AD rows, the FD sweep still runs
        failure = _failure(error)
        return {"reverse": failure, "forward": failure}, None
    methods: dict[str, dict[str, Any]] = {}

    try:
        start = time.perf_counter()
        reverse_gradient(f, theta0)
        warmup = time.perf_counter() - start
        grad, seconds, _ = gradients.timed(lambda: reverse_gradient(f, theta0), repeat, sync)
        peak, how = gradients.backward_peak_bytes(lambda: reverse_gradient(f, theta0), device)
        theta = theta0.detach().clone().requires_grad_(True)
        saved = gradients.saved_tensor_bytes(lambda: f(theta))
        methods["reverse"] = {"values": _as_floats(grad), "time_gradient_s": seconds,
                              "time_gradient_warmup_s": warmup, "backward_peak_bytes": peak,
                              "backward_memory_method": how, "saved_tensor_bytes": saved}
    except Exception as error:  # noqa: BLE001 - recorded on the method's rows
        methods["reverse"] = _failure(error)
    try:
        start = time.perf_counter()
        forward_gradient(f, theta0)
        warmup = time.perf_counter() - start
        (jacobian, how), seconds, _ = gradients.timed(lambda: forward_gradient(f, theta0),
                                                      repeat, sync)
        methods["forward"] = {"values": _as_floats(jacobian), "time_gradient_s": seconds,
                              "time_gradient_warmup_s": warmup, "forward_mode": how}
    except Exception as error:  # noqa: BLE001 - recorded on the method's rows
        methods["forward"] = _failure(error)
    return methods, time_forward


def _fd(evaluate: BlackBoxObjective, names: list[str], values0: list[float],
        steps: list[float], repeat: int) -> dict[str, Any]:
    """FD estimates per parameter and step, the objective at theta0, and the timings."""
    base, time_evaluation, _ = gradients.timed(lambda: evaluate({}), repeat)
    step_seconds = dict.fromkeys(steps, 0.0)
    estimates: dict[str, dict[float, tuple[float, float]]] = {}
    for name, value in zip(names, values0, strict=True):
        estimates[name] = {}
        for step in steps:
            start = time.perf_counter()

            def along(v: float, name: str = name) -> float:
                return evaluate({name: v})

            derivative = gradients.central_difference(along, value, step)
            step_seconds[step] += time.perf_counter() - start
            estimates[name][step] = (derivative, gradients.fd_step(value, step))
    per_step = float(np.median(list(step_seconds.values())))
    return {"objective_value": base, "time_fd_evaluation_s": time_evaluation,
            "time_fd_s": time_evaluation + per_step, "estimates": estimates}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _parameter_rows(common: dict[str, Any], name: str, index: int, value0: float,
                    ref: float | None, methods: dict[str, dict[str, Any]],
                    fd: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one parameter: reference, each AD method, each FD step."""
    objective_value = fd["objective_value"]
    time_forward = common["time_forward_s"]
    base = common | {"parameter": name, "parameter_value": value0, "reference_value": ref}
    estimates = fd["estimates"][name]
    fd_errors = {s: rel_error(d, ref) for s, (d, _) in estimates.items()}
    best = gradients.best_step(fd_errors)
    best_value = estimates[best][0] if best is not None else None
    rows: list[dict[str, Any]] = []
    if ref is not None:
        rows.append(base | {"method": "reference", "value": ref})
    for method, result in methods.items():
        row = base | {"method": method}
        if "values" not in result:
            rows.append(row | result)
            continue
        value = result["values"][index]
        extra = {k: v for k, v in result.items() if k != "values"}
        rows.append(row | extra | {
            "value": value, "rel_error": rel_error(value, ref),
            "scaled_error": scaled_error(value, ref, value0, objective_value),
            "rel_error_vs_best_fd": rel_error(value, best_value),
            "scaled_error_vs_best_fd": scaled_error(value, best_value, value0,
                                                    objective_value),
            "gradient_over_forward": _ratio(result["time_gradient_s"], time_forward),
            "fd_over_gradient": _ratio(fd["time_fd_s"], result["time_gradient_s"])})
    for step, (derivative, h) in estimates.items():
        rows.append(base | {
            "method": "fd", "fd_step": step, "fd_h": h, "value": derivative,
            "rel_error": fd_errors[step],
            "scaled_error": scaled_error(derivative, ref, value0, objective_value),
            "best_fd_step": best, "time_gradient_s": fd["time_fd_s"],
            "gradient_over_forward": _ratio(fd["time_fd_s"], time_forward),
            "fd_over_gradient": 1.0})
    return rows


def gradient_case(spec: CaseSpec | dict[str, Any], clock: Clock | None = None
                  ) -> list[dict[str, Any]]:
    """Rows of one gradient case (see the module text); ``spec`` as the runner writes it
    (a dict is validated into a :class:`CaseSpec`), ``clock`` the child's (None: from now),
    with ``options`` holding ``parameters``, ``objective`` and optionally ``fd_steps``,
    ``analytic``, and ``kicks`` / ``checkpoint`` replacing the scenario's space-charge
    ``kicks_per_element`` / ``checkpoint``
    (:func:`harness.gradients.with_space_charge_options`)."""
    from harness.model.parameters import resolve_parameters
    from harness.model.scenario import model_signature

    spec = CaseSpec.coerce(spec)
    clock = clock or Clock.since(None)
    options = spec.options or {}
    # the parent's plan of the scenario with the case's options applied
    # (harness.case_kinds.case_scenario), else one plan made here
    loaded = load(spec)
    scenario = loaded.scenario
    gradient_block = scenario.gradients
    names = list(options.get("parameters") or (gradient_block.parameters
                                               if gradient_block else []))
    objective = options.get("objective") or (gradient_block.objective if gradient_block
                                             else None)
    if not names or not objective:
        raise ValueError("no parameters or objective: give them in the case options or the "
                         "scenario's gradients block")
    steps = [float(s) for s in (options.get("fd_steps") or gradients.DEFAULT_FD_STEPS)]
    backend = loaded.backend
    common: dict[str, Any] = {"versions": loaded.versions, "objective": objective,
                              "n_params": len(names), "variant": options.get("label", "")}
    settings = scenario.space_charge
    common["kicks_per_element"] = settings.kicks_per_element if settings else None
    common["checkpoint"] = settings.checkpoint if settings else None
    common["backend_version"] = loaded.versions.get(loaded.backend_class.distribution)
    support = loaded.support
    if loaded.unsupported:
        return [common | {"status": Status.UNSUPPORTED.value, "reason": support.reason}]
    common["model"] = support.model
    common["import_s"] = clock.elapsed()
    values0 = [p.value for p in resolve_parameters(scenario, names)]
    initial = initial_particles(spec, scenario)
    repeat = max(1, spec.repeat)
    device, dtype = spec.device, spec.dtype

    methods, time_forward = _ad_methods(backend, support, names, objective, initial, device,
                                        dtype, repeat)
    evaluate = BlackBoxObjective(backend, support, objective, initial, device, dtype)
    fd = _fd(evaluate, names, values0, steps, repeat)
    if time_forward is None:
        time_forward = fd["time_fd_evaluation_s"]
    forward = methods.get("forward", {})
    reference, reference_method = _reference(spec, scenario, names, objective, initial,
                                             forward.get("values"))
    common |= {"time_forward_s": time_forward, "time_fd_s": fd["time_fd_s"],
               "time_fd_evaluation_s": fd["time_fd_evaluation_s"],
               "fd_evaluations": evaluate.evaluations, "objective_value": fd["objective_value"],
               "reference_method": reference_method, "status": Status.OK.value,
               "reason": "",
               "model_matches_scenario": support.model == model_signature(scenario)}

    rows: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        ref = reference[i] if reference is not None else None
        rows += _parameter_rows(common, name, i, values0[i], ref, methods, fd)
    peak = peak_rss_bytes()
    if device.startswith("cuda"):
        with contextlib.suppress(Exception):
            import torch

            peak_cuda = int(torch.cuda.max_memory_allocated())
            rows = [row | {"cuda_max_allocated_bytes": peak_cuda} for row in rows]
    return [row | {"peak_rss_bytes": peak} for row in rows]
