"""Gradient accuracy and cost: finite-difference sweeps, error metrics, timing and memory.

Central finite differences (FD) at a relative step ``s`` of a parameter with value ``v``:
the step is ``h = s * |v|`` (``h = s`` when ``v = 0``) and the derivative is
``(F(v + h) - F(v - h)) / ((v + h) - (v - h))``; dividing by the difference of the two
representable arguments (not by ``2h``) removes the rounding of ``v ± h`` from the estimate.
The truncation error falls as ``h^2`` and the rounding error grows as ``eps |F| / h``, so the
error against the exact derivative plotted over ``s`` is a V whose minimum sits near
``eps^(1/3)`` (about 1e-5 in float64; Nocedal & Wright, *Numerical Optimization*, 2nd ed.,
section 8.1). :func:`fd_sweep` evaluates one estimate per step, the V-curve of a report.

Backward-pass memory (:func:`backward_peak_bytes`), for one forward + backward: on CUDA
the rise of ``torch.cuda.max_memory_allocated`` over the memory allocated before the
forward; on CPU the peak of the tensor memory allocated (minus freed) during it, from the
PyTorch profiler's memory timeline (:func:`profiled_peak_bytes`), or, should that private
profiler API fail, the rise of the process's resident memory sampled every millisecond by a
thread (:class:`RssSampler`; coarse: the allocator reuses freed pages and sampling may miss
a short peak). :func:`saved_tensor_bytes`, the storage autograd keeps for the backward
(exact, any device), is recorded next to it.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

#: Relative FD steps of the default sweep: 1e-2, 1e-3, ..., 1e-10 (one per decade).
DEFAULT_FD_STEPS: tuple[float, ...] = tuple(10.0 ** -k for k in range(2, 11))


def fd_step(value: float, relative: float) -> float:
    """The absolute step of a relative step ``relative`` at ``value`` (``relative`` when
    ``value`` is 0)."""
    return relative * abs(value) if value != 0.0 else relative


def central_difference(evaluate: Callable[[float], float], value: float,
                       relative: float) -> float:
    """Central FD derivative of ``evaluate`` at ``value`` with relative step ``relative``."""
    h = fd_step(value, relative)
    upper, lower = value + h, value - h
    return (evaluate(upper) - evaluate(lower)) / (upper - lower)


def fd_sweep(evaluate: Callable[[float], float], value: float,
             steps: Sequence[float] = DEFAULT_FD_STEPS) -> list[tuple[float, float]]:
    """``[(relative step, central FD derivative), ...]`` for each step."""
    return [(float(s), central_difference(evaluate, value, s)) for s in steps]


def rel_error(value: float | None, reference: float | None) -> float | None:
    """``|value - reference| / |reference|`` (``|value - reference|`` when the reference is
    0; None when either is missing or not finite)."""
    if value is None or reference is None:
        return None
    if not (math.isfinite(value) and math.isfinite(reference)):
        return None
    difference = abs(value - reference)
    return difference / abs(reference) if reference != 0.0 else difference


def scaled_error(value: float | None, reference: float | None, parameter: float,
                 objective: float) -> float | None:
    """``|value - reference| * |parameter| / |objective|``: the error of the dimensionless
    sensitivity ``d ln F / d ln p``, meaningful also where the derivative is (nearly) zero
    (``|parameter|`` counts as 1 when it is 0; None when the objective is 0 or a value is
    missing)."""
    if value is None or reference is None:
        return None
    difference = rel_error(value, reference)
    if difference is None or objective == 0.0 or not math.isfinite(objective):
        return None
    absolute = abs(value - reference)
    return absolute * (abs(parameter) if parameter != 0.0 else 1.0) / abs(objective)


def best_step(errors: dict[float, float | None]) -> float | None:
    """The step with the smallest finite error (None when no error is known)."""
    known = {s: e for s, e in errors.items() if e is not None and math.isfinite(e)}
    if not known:
        return None
    return min(known, key=lambda s: (known[s], -s))


def timed(run: Callable[[], Any], repeat: int = 1,
          synchronize: Callable[[], None] | None = None) -> tuple[Any, float, list[float]]:
    """Run ``run`` ``repeat`` times (at least once), synchronising before each clock
    reading; returns the last result, the median time [s] and every time [s]."""
    times = []
    result = None
    for _ in range(max(1, int(repeat))):
        if synchronize:
            synchronize()
        start = time.perf_counter()
        result = run()
        if synchronize:
            synchronize()
        times.append(time.perf_counter() - start)
    return result, float(statistics.median(times)), times


def cuda_synchronizer(device: str) -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` for a CUDA device, else None."""
    from backends.torch_support import cuda_synchronizer as synchronizer

    return synchronizer(device)


class RssSampler:
    """Peak resident memory of this process above its value at start [bytes], sampled by a
    background thread every ``interval_s`` seconds while the ``with`` block runs."""

    def __init__(self, interval_s: float = 1e-3):
        import psutil

        self.process = psutil.Process()
        self.interval_s = interval_s
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.start = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)
        self._stop.set()
        self._thread.join()

    @property
    def rise(self) -> int:
        """Peak minus the value at start [bytes]."""
        return int(self.peak - self.start)


def backward_peak_bytes(forward_backward: Callable[[], Any], device: str) -> tuple[int, str]:
    """Peak memory of one forward + backward above the memory in use before it [bytes], and
    how it was measured (``cuda_max_allocated`` or ``rss_sampled``; see the module text)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        forward_backward()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - before), "cuda_max_allocated"
    try:
        return profiled_peak_bytes(forward_backward), "torch_profiler"
    except Exception:  # noqa: BLE001 - a private profiler API: fall back to the coarse RSS
        with RssSampler() as sampler:
            forward_backward()
        return sampler.rise, "rss_sampled"


def profiled_peak_bytes(run: Callable[[], Any]) -> int:
    """Peak of the CPU memory allocated while ``run`` runs minus what it frees [bytes], from
    the PyTorch profiler's memory timeline (every tensor allocation created and destroyed,
    in order; ``torch.profiler._memory_profiler``, the data behind
    ``profile.export_memory_timeline``)."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as profiler:
        run()
    current = peak = 0
    for _, action, _, size in profiler._memory_profile().timeline:
        if action == Action.CREATE:
            current += size
        elif action == Action.DESTROY:
            current -= size
        peak = max(peak, current)
    return int(peak)


def saved_tensor_bytes(forward: Callable[[], Any]) -> int:
    """Bytes of the distinct storages autograd saves for the backward while ``forward``
    runs (the memory reverse mode keeps beyond a plain forward)."""
    import torch

    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward()
    return int(sum(seen.values()))


# --------------------------------------------------------------------------- planning

#: Numbers of quadrupoles differentiated together in the P-scaling (``grad --scaling``).
SCALING_COUNTS: tuple[int, ...] = (1, 4, 16, 64)
#: The single relative FD step of the P-scaling cases (the cost of FD does not depend on it).
SCALING_FD_STEPS: tuple[float, ...] = (1e-5,)


def quadrupole_parameters(scenario) -> list[str]:
    """``<quad>.Kn1`` of each distinct quadrupole name, in lattice order."""
    names: list[str] = []
    for element in scenario.elements:
        if element.kind == "Quadrupole" and element.name not in names:
            names.append(element.name)
    return [f"{name}.Kn1" for name in names]


def gradient_options(scenario, parameters: Sequence[str] | None, objective: str | None,
                     fd_steps: Sequence[float] | None) -> dict[str, Any]:
    """Case options: the given parameters/objective, else the scenario's gradients block
    (``ValueError`` when neither names them)."""
    block = scenario.gradients
    names = list(parameters or (block.parameters if block else []))
    target = objective or (block.objective if block else None)
    if not names or not target:
        raise ValueError(f"{scenario.name}: no gradients block; give --params and --objective")
    return {"parameters": names, "objective": target,
            "fd_steps": [float(s) for s in (fd_steps or DEFAULT_FD_STEPS)]}


#: Values of ``space_charge.checkpoint`` (see :class:`harness.model.scenario.SpaceCharge`).
CHECKPOINTS: tuple[str, ...] = ("none", "kick")


def space_charge_variants(kicks: Sequence[int] | None, checkpoints: Sequence[str] | None
                          ) -> list[tuple[str, dict[str, Any]]]:
    """``(label, options)`` per combination of kicks per element and checkpointing (one
    ``("", {})`` when neither is given); labels like ``k20``, ``k20-ckpt``, ``ckpt``."""
    variants: list[tuple[str, dict[str, Any]]] = []
    kick_counts: list[int | None] = list(kicks) if kicks else [None]
    modes: list[str | None] = list(checkpoints) if checkpoints else [None]
    for k in kick_counts:
        for mode in modes:
            parts: list[str] = []
            options: dict[str, Any] = {}
            if k is not None:
                parts.append(f"k{int(k)}")
                options["kicks"] = int(k)
            if mode is not None:
                if mode not in CHECKPOINTS:
                    raise ValueError(f"checkpoint: one of {list(CHECKPOINTS)} (got {mode!r})")
                if mode != "none":
                    parts.append("ckpt")
                options["checkpoint"] = mode
            variants.append(("-".join(parts), options))
    return variants


def with_space_charge_options(scenario, options: dict[str, Any]):
    """The scenario with ``options["kicks"]`` (kicks per element) and
    ``options["checkpoint"]`` replacing its ``space_charge`` settings (unchanged when the
    options name neither; ``ValueError`` when they do and it has no space charge)."""
    update: dict[str, int | str] = {}
    if options.get("kicks") is not None:
        update["kicks_per_element"] = int(options["kicks"])
    if options.get("checkpoint") is not None:
        update["checkpoint"] = str(options["checkpoint"])
    if not update:
        return scenario
    if scenario.space_charge is None:
        raise ValueError(f"{scenario.name}: kicks/checkpoint options need a scenario with "
                         "space charge")
    from harness.model.scenario import SpaceCharge

    settings = SpaceCharge(**(scenario.space_charge.model_dump() | update))
    return scenario.model_copy(update={"space_charge": settings})


def plan_gradient_cases(scenarios: Sequence, backends: Sequence[str], counts: Sequence[int],
                        devices: Sequence[str], dtypes: Sequence[str], repeat: int,
                        parameters: Sequence[str] | None = None, objective: str | None = None,
                        fd_steps: Sequence[float] | None = None, scaling: bool = False,
                        threads: int | Sequence[int | None] | None = None,
                        kicks: Sequence[int] | None = None,
                        checkpoints: Sequence[str] | None = None) -> list:
    """Gradient cases (:class:`harness.cases.Case` with ``kind="gradient"``).

    Each case computes its own reference gradient (see :mod:`harness.gradient_case`), so
    there are no reference cases. With ``scaling`` every scenario gets one case per
    :data:`SCALING_COUNTS` entry P (up to its number of quadrupoles) with the first P
    quadrupoles' ``Kn1`` as parameters, labelled ``P<P>`` in the case id. ``kicks``
    (space-charge kicks per element) and ``checkpoints`` (``none``/``kick``) multiply the
    cases, one per combination (:func:`space_charge_variants`), applied in the child by
    :func:`with_space_charge_options`. ``threads``: one thread count or several (one case
    each; None: all the process is given).
    """
    from harness.cases import Case

    thread_counts = list(threads) if isinstance(threads, Sequence) else [threads]
    sc_variants = space_charge_variants(kicks, checkpoints)
    cases = []
    for scenario in scenarios:
        # absolute: the case process runs in the run's cache directory
        path = os.path.abspath(scenario.source_file) if scenario.source_file else scenario.name
        variants: list[tuple[str, dict[str, Any]]] = []
        if scaling:
            quads = quadrupole_parameters(scenario)
            target = objective or (scenario.gradients.objective if scenario.gradients
                                   else "sigma_x")
            steps = [float(s) for s in (fd_steps or SCALING_FD_STEPS)]
            for count in [c for c in SCALING_COUNTS if c <= len(quads)]:
                variants.append((f"P{count}", {"parameters": quads[:count],
                                               "objective": target, "fd_steps": steps}))
        else:
            variants.append(("", gradient_options(scenario, parameters, objective, fd_steps)))
        variants = [("-".join(p for p in (label, sc_label) if p), options | sc_options)
                    for label, options in variants for sc_label, sc_options in sc_variants]
        for n in counts:
            for backend in backends:
                for device, dtype, thread_count in itertools.product(devices, dtypes,
                                                                     thread_counts):
                    for label, options in variants:
                        cases.append(Case(
                            scenario.name, path, backend, int(n), device, dtype, repeat,
                            thread_count, reference="inhouse",
                            reference_note="forward-mode inhouse float64 cpu, computed "
                            "in the case (analytic where given)",
                            kind="gradient",
                            options=options | ({"label": label} if label else {})))
    return cases


def summary_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per case and parameter: the AD errors, the best FD step and its error, the
    cost ratios (for the command's table)."""
    lines: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = (row.get("case_id"), row.get("parameter"))
        line = lines.setdefault(key, {"case_id": row.get("case_id"),
                                      "scenario": row.get("scenario"),
                                      "backend": row.get("backend"),
                                      "particles": row.get("particles"),
                                      "dtype": row.get("dtype"),
                                      "variant": row.get("variant") or "-",
                                      "parameter": row.get("parameter") or "-",
                                      "status": row.get("status"),
                                      "reason": row.get("reason") or ""})
        method = row.get("method")
        if method in ("reverse", "forward"):
            line[method] = row.get("rel_error") if row.get("status") == "ok" else row.get(
                "status")
            if method == "reverse":
                line["gradient_over_forward"] = row.get("gradient_over_forward")
                line["fd_over_gradient"] = row.get("fd_over_gradient")
                peak = row.get("backward_peak_bytes")
                line["backward_peak_mb"] = None if peak is None else peak / 1e6
        elif method == "fd" and row.get("fd_step") == row.get("best_fd_step"):
            line["best_fd_step"] = row.get("fd_step")
            line["best_fd_error"] = row.get("rel_error")
        line.setdefault("n_params", row.get("n_params"))
    return list(lines.values())
