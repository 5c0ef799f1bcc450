"""Accuracy tracked over time, next to speed: agreement with the reference and gradient error.

``track_agreement`` [sigma] is the harness's ``dev_max`` for the same case: the maximum over
particles and the six coordinates of |x - x_ref| / σ_ref, where the reference is ImpactX on
cpu in float64 (the harness's choice, :func:`harness.cases.reference_backend`) tracking the
identical seeded particles. Skipped for the reference backend itself (always 0).

``track_gradient_error`` [relative] is max over the scenario's gradient parameters of the
harness's ``rel_error`` of the reverse-mode gradient, |g_rev - g_ref| / |g_ref|, where
``g_ref`` is the harness's reference gradient: forward mode of the in-house tracker, cpu,
float64, on the same seeded particles (:mod:`harness.gradient_case`); ``trackbench grad``
records the same numbers per parameter (method ``reverse``, column ``rel_error``).
``time_gradient`` times one reverse-mode gradient (forward pass + backward pass, all
parameters). Both need ``Backend.objective`` and the scenario's ``gradients`` block.
"""

from __future__ import annotations

from benchmarks import cases, grid


class Agreement:
    """Particle-by-particle agreement with the reference code."""

    params = (grid.scenarios(), grid.backends(), grid.particle_counts(), grid.devices())
    param_names = ("scenario", "backend", "particles", "device")
    timeout = 600.0

    def setup(self, scenario: str, backend: str, particles: int, device: str) -> None:
        """Reference first (ImpactX holds one simulation per process), then the backend."""
        reference, self.reference = cases.reference_final(scenario, particles)
        if backend == reference and device == cases.REFERENCE_DEVICE:
            raise NotImplementedError(f"{backend} on {device} is the reference of {scenario}")
        self.case = cases.tracking_case(scenario, backend, particles, device, grid.DTYPE)

    def track_agreement(self, scenario: str, backend: str, particles: int,
                        device: str) -> float:
        """max |Δ|/σ over particles and coordinates vs the reference (dimensionless)."""
        final = self.case.prepared.track(self.case.initial)
        return cases.agreement(final, self.reference)

    track_agreement.unit = "sigma"


class GradientCost:
    """Time of the reverse-mode gradient of the scenario's objective."""

    params = (grid.scenarios(), grid.backends(), grid.gradient_particle_counts(), grid.devices())
    param_names = ("scenario", "backend", "particles", "device")
    number = 1
    warmup_time = 0.0
    timeout = 600.0

    def setup(self, scenario: str, backend: str, particles: int, device: str) -> None:
        """Build the objective once per process; one gradient as the warm-up."""
        self.case = cases.gradient_case(scenario, backend, particles, device, grid.DTYPE)

    def time_gradient(self, scenario: str, backend: str, particles: int, device: str) -> None:
        """Seconds of one reverse-mode gradient with respect to all parameters."""
        cases.reverse_gradient(self.case)
        cases.synchronize(device)


class GradientAccuracy:
    """Relative error of the reverse-mode gradient against the harness's reference."""

    params = (grid.scenarios(), grid.backends(), grid.gradient_particle_counts(), grid.devices())
    param_names = ("scenario", "backend", "particles", "device")
    timeout = 600.0

    def setup(self, scenario: str, backend: str, particles: int, device: str) -> None:
        """The reference gradient (in-house forward mode), then the backend's objective."""
        self.reference = cases.reference_gradient(scenario, particles)
        self.case = cases.gradient_case(scenario, backend, particles, device, grid.DTYPE)

    def track_gradient_error(self, scenario: str, backend: str, particles: int,
                             device: str) -> float:
        """max over parameters of |g_rev - g_ref| / |g_ref| (dimensionless)."""
        return cases.gradient_error(cases.reverse_gradient(self.case), self.reference)

    track_gradient_error.unit = "relative"
