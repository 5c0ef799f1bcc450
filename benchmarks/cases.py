"""Benchmark cases built with the harness's own set-up, cached per benchmark process.

asv re-runs ``setup`` before every timed call; the expensive part (translating the scenario,
the warm-up track, the reference track) is done once per process and kept here, so that a
repeated ``setup`` only re-injects particles. Every case uses the same steps as the harness's
isolated case (:mod:`harness.child`): :func:`harness.model.load.load_scenario`, the seeded
initial particles of :func:`harness.model.particles.generate`, ``Backend.supports`` /
``Backend.prepare``, and :func:`harness.agreement.particle_deviation` against the reference
chosen by :func:`harness.cases.reference_backend` (ImpactX, cpu, float64).

Anything a case cannot run (backend not installed, ``supports`` says no, no gradient
block, no differentiable objective) raises ``NotImplementedError``: asv's way of skipping.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import Backend, Prepared
from backends.registry import available_backends, get_backend
from harness.agreement import particle_deviation
from harness.cases import REFERENCE_DEVICE, REFERENCE_DTYPE, reference_backend
from harness.model.load import load_scenario
from harness.model.particles import generate
from harness.model.scenario import Scenario

#: The scenario files next to this suite: found also when the project is installed as a
#: wheel (``asv continuous`` virtualenvs), which holds no ``lattices/`` folder.
LATTICES = Path(__file__).resolve().parent.parent / "lattices"


@cache
def scenario(name: str) -> Scenario:
    """A bundled scenario, loaded and validated once per process."""
    path = LATTICES / f"{name}.yaml"
    return load_scenario(path if path.exists() else name)


@cache
def initial_particles(name: str, n: int) -> np.ndarray:
    """The seeded initial ``(n, 6)`` particles of a scenario, as the harness draws them."""
    loaded = scenario(name)
    base_dir = Path(loaded.source_file).parent if loaded.source_file else None
    return generate(loaded.beam, n, base_dir=base_dir)


def backend_or_skip(name: str, loaded: Scenario, device: str, dtype: str) -> Backend:
    """The backend, or ``NotImplementedError`` when it is missing or cannot run the case."""
    backend = get_backend(name)
    availability = backend.availability()
    if not availability.available:
        raise NotImplementedError(f"{name} is not installed: {availability.hint}")
    verdict = backend.supports(loaded, device, dtype)
    if not verdict:
        raise NotImplementedError(f"{name} does not support {loaded.name} on {device} "
                                  f"{dtype}: {verdict.reason}")
    return backend


def synchronize(device: str) -> None:
    """Wait for queued CUDA work (no-op on cpu)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


@dataclass
class TrackingCase:
    """A prepared (translated and warmed-up) tracker and its initial particles."""

    prepared: Prepared
    initial: np.ndarray


_TRACKING: dict[tuple[str, str, int, str, str], TrackingCase] = {}


def tracking_case(name: str, backend: str, n: int, device: str, dtype: str) -> TrackingCase:
    """Prepare once per process and track once as the warm-up (compilation, caches)."""
    key = (name, backend, n, device, dtype)
    if key not in _TRACKING:
        loaded = scenario(name)
        chosen = backend_or_skip(backend, loaded, device, dtype)
        prepared = chosen.prepare(loaded, device, dtype)
        initial = initial_particles(name, n)
        prepared.track(initial)
        _TRACKING[key] = TrackingCase(prepared, initial)
    return _TRACKING[key]


@cache
def reference_final(name: str, n: int) -> tuple[str, np.ndarray]:
    """The reference backend of a scenario and its final particles (cpu, float64), chosen as
    the harness chooses it; ``NotImplementedError`` without a particle reference."""
    loaded = scenario(name)
    reference, note = reference_backend(loaded, available_backends())
    if reference in ("analytic", "none"):
        raise NotImplementedError(f"{name} has no particle reference ({reference}: {note})")
    chosen = backend_or_skip(reference, loaded, REFERENCE_DEVICE, REFERENCE_DTYPE)
    with chosen.prepare_single_use(loaded, REFERENCE_DEVICE, REFERENCE_DTYPE) as prepared:
        final = prepared.track(initial_particles(name, n))
    return reference, final


def agreement(final: np.ndarray, reference: np.ndarray) -> float:
    """Max over particles and coordinates of |Δ|/σ_ref: the harness's ``dev_max``."""
    return particle_deviation(final, reference)["dev_max"]


@dataclass
class GradientCase:
    """A differentiable objective ``f(theta)`` of a scenario's gradient block."""

    f: Any
    theta0: Any
    parameters: list[str]
    objective: str


_GRADIENT: dict[tuple[str, str, int, str, str], GradientCase] = {}


def gradient_case(name: str, backend: str, n: int, device: str, dtype: str) -> GradientCase:
    """The scenario's objective from ``Backend.objective`` (parameters and objective from its
    ``gradients`` block), with one reverse-mode gradient as the warm-up."""
    key = (name, backend, n, device, dtype)
    if key not in _GRADIENT:
        loaded = scenario(name)
        if loaded.gradients is None:
            raise NotImplementedError(f"{name} has no gradients block")
        chosen = backend_or_skip(backend, loaded, device, dtype)
        build = getattr(chosen, "objective", None)
        if not chosen.differentiable or build is None:
            raise NotImplementedError(f"{backend} gives no automatic-differentiation gradient")
        parameters = list(loaded.gradients.parameters)
        made = build(loaded, parameters, loaded.gradients.objective,
                     initial_particles(name, n), device, dtype)
        if made is None:
            raise NotImplementedError(f"{backend} has no differentiable objective for {name}")
        f, theta0 = made
        case = GradientCase(f, theta0.detach(), parameters, loaded.gradients.objective)
        reverse_gradient(case)
        synchronize(device)
        _GRADIENT[key] = case
    return _GRADIENT[key]


def reverse_gradient(case: GradientCase):
    """d objective / d theta at theta0 by reverse mode (the harness's
    :func:`harness.gradient_case.reverse_gradient`), a ``(P,)`` tensor."""
    from harness.gradient_case import reverse_gradient as harness_reverse

    return harness_reverse(case.f, case.theta0)


@cache
def reference_gradient(name: str, n: int) -> tuple[float, ...]:
    """The harness's reference gradient of a scenario's gradient block: forward mode of the
    in-house tracker in float64 on cpu, from the same seeded initial particles
    (:data:`harness.gradient_case.INHOUSE_REFERENCE`)."""
    from harness.gradient_case import forward_gradient

    loaded = scenario(name)
    if loaded.gradients is None:
        raise NotImplementedError(f"{name} has no gradients block")
    inhouse = backend_or_skip("inhouse", loaded, "cpu", "float64")
    made = inhouse.objective(loaded, list(loaded.gradients.parameters),
                             loaded.gradients.objective, initial_particles(name, n), "cpu",
                             "float64")
    if made is None:
        raise NotImplementedError("the in-house backend gives no differentiable objective")
    f, theta0 = made
    jacobian, _how = forward_gradient(f, theta0)
    return tuple(float(v) for v in jacobian.detach().cpu().double().reshape(-1))


def gradient_error(gradient, reference: tuple[float, ...]) -> float:
    """Max over parameters of the harness's ``rel_error`` (|g - g_ref| / |g_ref|, absolute
    where g_ref = 0) of a gradient against the reference."""
    from harness.gradients import rel_error

    values = [float(v) for v in gradient.detach().cpu().double().reshape(-1)]
    errors = [rel_error(v, r) for v, r in zip(values, reference, strict=True)]
    known = [e for e in errors if e is not None]
    return max(known) if len(known) == len(errors) else float("nan")
