"""A scenario's observables as differentiable functions of its named parameters.

:func:`make_observables` returns ``g(theta)``, a dict of observables from one track, and
:func:`make_objective` the one-observable ``f(theta)``: element parameters (``qf.Kn1``,
``d1.length``, ``b1.angle``, ...) enter the :class:`~backends.inhouse.tracker.Tracker` as
tensors, and beam parameters (``beam.twiss.beta_x``, ``beam.longitudinal.sigma_pt``, ...)
enter the initial particles, which are generated *inside* the graph by the reparameterised
sampler :func:`harness.model.particles.generate_torch` (fixed seed: the same unit samples at every
theta, i.e. common random numbers, so ``f`` is a smooth deterministic function of theta).
The observables are
:mod:`harness.model.observables` names evaluated at the end of the lattice.

``f`` and ``g`` accept ``theta`` of shape ``(P,)`` (returns a 0-d tensor) or ``(B, P)``
(returns ``(B,)``: B parameter sets tracked in one batched pass; one after the other with
space charge), and works with reverse mode (``backward``, ``torch.autograd.grad``) and
forward mode (``torch.func.jvp``, ``jacfwd``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from backends.inhouse.composed import composed_map, track_moments
from backends.inhouse.tracker import Tracker
from backends.torch_support import torch_dtype
from harness.model import observables
from harness.model.parameters import Parameter, resolve_parameters
from harness.model.particles import generate_torch
from harness.model.scenario import Scenario, observable_names

if TYPE_CHECKING:
    from backends.inhouse.sc_tracking import SpaceChargeTracker


def make_objective(scenario: Scenario, parameters: Sequence[str], objective: str, n: int,
                   device: torch.device | str = "cpu",
                   dtype: torch.dtype | str = torch.float64,
                   particles: np.ndarray | None = None,
                   ) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """``(f, theta0)``: the one observable ``objective`` of :func:`make_observables`."""
    observe, theta0 = make_observables(scenario, parameters, [objective], n, device, dtype,
                                       particles)
    return (lambda theta: observe(theta)[objective]), theta0


def make_observables(scenario: Scenario, parameters: Sequence[str], names: Sequence[str],
                     n: int, device: torch.device | str = "cpu",
                     dtype: torch.dtype | str = torch.float64,
                     particles: np.ndarray | None = None, composed: bool = True,
                     ) -> tuple[Callable[[torch.Tensor], dict[str, torch.Tensor]],
                                torch.Tensor]:
    """``(g, theta0)`` for the named parameters and observables: ``g(theta)`` tracks once
    and gives every observable of ``names``.

    Args:
        scenario: the scenario; with ``space_charge`` the tracker of
            ``backends.inhouse.sc_tracking`` is used (a batch of thetas is then evaluated
            one row at a time), each kick checkpointed when ``space_charge.checkpoint`` is
            ``"kick"``.
        parameters: names as in :mod:`harness.model.parameters` (``qf.Kn1``, ``beam.twiss.beta_x``).
        names: observable names of :mod:`harness.model.observables` (at the lattice end).
        n: number of particles.
        device, dtype: where and in which precision to track.
        particles: optional ``(n, 6)`` initial particles (ImpactX coordinates) to track when
            no beam parameter is among ``parameters``; by default (and whenever a beam
            parameter is) they are drawn with :func:`harness.model.particles.generate_torch`.
        composed: where every map is linear (and there is no space charge), track with the
            lattice's composed 6x6 matrix per setting
            (:class:`backends.inhouse.composed.ComposedLinear`, equal to the map-by-map
            track to round-off); False tracks map by map.

    Returns:
        ``g(theta) -> {name: observable}`` and ``theta0``, the ``(P,)`` tensor of the
        scenario's values of the parameters (in the units of the scenario file).
    """
    unknown = [name for name in names if name not in observable_names()]
    if unknown or not names:
        raise KeyError(f"objectives must be observable names, got {list(names)!r}")
    dtype = torch_dtype(dtype)
    device = torch.device(device)
    resolved: list[Parameter] = resolve_parameters(scenario, list(parameters))
    element_slots = [(i, (p.owner, p.field)) for i, p in enumerate(resolved)
                     if p.target == "element"]
    beam_slots = [(i, f"{p.owner}.{p.field}") for i, p in enumerate(resolved)
                  if p.target == "beam"]
    keys = [key for _, key in element_slots]
    # the plain tracker also gives the reference particle at the end (space charge does not
    # change it)
    boundary = scenario.particle_boundary
    plain = Tracker(scenario.elements, scenario.reference_particle, device=device,
                    dtype=dtype, parameters=keys,
                    bucket_length=None if boundary is None else boundary.bucket_length)
    tracker: Tracker | SpaceChargeTracker = plain
    if scenario.space_charge is not None:
        from backends.inhouse.sc_tracking import build_space_charge_tracker

        tracker = build_space_charge_tracker(
            scenario, device, dtype, parameters=keys,
            use_checkpoint=scenario.space_charge.checkpoint == "kick")
    whole = None
    if composed and tracker is plain:
        whole = composed_map(plain.specs, plain.reference, plain.parameters, device, dtype)
    beam = scenario.beam
    fixed_particles = None
    if not beam_slots and particles is not None:
        fixed_particles = torch.as_tensor(np.asarray(particles, dtype=np.float64)).to(
            device=device, dtype=dtype)
    elif not beam_slots:
        fixed_particles = generate_torch(beam, n, {}, dtype=dtype, device=device)

    def initial_particles(theta: torch.Tensor) -> torch.Tensor:
        """``(N, 6)`` for theta ``(P,)``, ``(B, N, 6)`` for ``(B, P)``."""
        if fixed_particles is not None:
            return fixed_particles

        def sample(one: torch.Tensor) -> torch.Tensor:
            overrides = {key: one[i] for i, key in beam_slots}
            return generate_torch(beam, n, overrides, dtype=dtype, device=device)

        return sample(theta) if theta.dim() == 1 else torch.vmap(sample)(theta)

    def g(theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """The observables at ``theta`` (``(P,)`` -> 0-d each, ``(B, P)`` -> ``(B,)``)."""
        if theta.shape[-1] != len(resolved) or theta.dim() not in (1, 2):
            raise ValueError(f"theta must have shape (P,) or (B, P) with P = {len(resolved)}, "
                             f"got {tuple(theta.shape)}")
        if theta.dim() == 2 and tracker is not plain:
            # the space-charge kick works on one bunch at a time
            rows = [g(row) for row in theta.unbind(0)]
            return {name: torch.stack([row[name] for row in rows]) for name in names}
        values = {key: theta[..., i] for i, key in element_slots}
        if whole is not None:
            end = plain.reference_at_end(values)
            mean, cov = track_moments(whole.matrix(values), initial_particles(theta))
            return observables.observables_from_moments(mean, cov, list(names),
                                                        end.beta_gamma, end.beta)
        particles, alive = tracker.track(initial_particles(theta), values)
        end = plain.reference_at_end(values)
        weights = None if alive is None else alive.to(particles.dtype)
        return observables.compute(particles, list(names), end.beta_gamma, end.beta, weights)

    theta0 = torch.tensor([p.value for p in resolved], dtype=dtype, device=device)
    return g, theta0
