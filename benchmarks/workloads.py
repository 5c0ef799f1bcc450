"""The workloads' headline figures (``docs/workloads.md``), tracked over time.

* ``BatchSettings``: the in-house tracker at K = :data:`SETTINGS` settings of
  ``fodo_channel`` (every quadrupole's Kn1 drawn as ``trackbench batch`` draws them,
  :data:`PARTICLES` particles per setting), one vectorised call without (``vectorised``)
  and with a backward pass (``vectorised+grad``): ``time_batch`` [s] times one call,
  ``track_settings_per_s`` [settings/s] is K over the fastest of three calls.
* ``BatchSpeedup.track_speedup_vs_impactx`` [1]: in-house ``vectorised`` settings/s at K =
  :data:`SETTINGS` over the settings/s of ImpactX looping over :data:`LOOP_SETTINGS` of the
  same settings (prepare + track each), measured side by side in one process.
* ``Reconstruction.track_time_to_target`` [s]: the quad-scan reconstruction of
  ``trackbench reconstruct`` (default problem), the wall time of an in-house method to
  reach the analytic answer to 1e-6 (for ``analytic``, its own time).
* ``GradMemory.track_backward_peak_bytes`` [bytes]: peak reverse-mode memory of the
  space-charge gradient of ``fodo_space_charge`` at the base point of ``trackbench
  grad-memory`` (1000 particles, 1 kick per element, 16^3 mesh), without and with per-kick
  checkpointing.

Every figure runs on one torch thread, float64, on the CPU, as the workload commands do by
default. The classes exist only in the full suite: the one-tiny-case grid
(``TRACKBENCH_ASV_QUICK=1``, :mod:`benchmarks.grid`) is the tracking case alone.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import grid

#: Settings per vectorised call (the acceptance figure of ``docs/workloads.md``).
SETTINGS = 1000
#: Particles per setting.
PARTICLES = 1000
#: Settings of the ImpactX loop the speed-up is measured against.
LOOP_SETTINGS = 20
#: The batch scenario, the reconstruction's and the memory figure's.
BATCH_SCENARIO = "fodo_channel"
QUAD_SCAN = "quad_scan"
MEMORY_SCENARIO = "fodo_space_charge"


def one_thread() -> None:
    """One torch thread (the workloads' ``--threads`` default)."""
    import torch

    torch.set_num_threads(1)


def batch_inputs(count: int) -> tuple[Any, list[str], Any, Any]:
    """``(scenario, parameter names, (count, P) settings, initial particles)`` as
    ``trackbench batch`` draws them (spread 0.01, seed 1)."""
    from harness.model.load import load_scenario
    from harness.model.particles import generate
    from harness.workloads import batch

    scenario = load_scenario(BATCH_SCENARIO)
    names = batch.default_parameters(scenario)
    settings = batch.draw_settings(scenario, names, count, 0.01, 1)
    return scenario, names, settings, generate(scenario.beam, PARTICLES)


def vectorised_rate(mode: str, scenario: Any, names: list[str], settings: Any,
                    initial: Any) -> float:
    """In-house settings/s of one vectorised call (fastest of three, after a warm-up)."""
    from harness.workloads import batch

    row, _ = batch.measure("inhouse", mode, scenario, names, settings, initial, 60.0, 3)
    if row["status"] != "ok":
        raise NotImplementedError(row["status"])
    return float(row["settings_per_s"])


class BatchSettings:
    """The in-house tracker's vectorised call at K settings."""

    params = (["vectorised", "vectorised+grad"],)
    param_names = ("mode",)
    number = 1
    warmup_time = 0.0
    timeout = 600.0

    def setup(self, mode: str) -> None:
        import torch

        from backends.registry import get_backend
        from harness.workloads import batch

        one_thread()
        scenario, names, settings, initial = batch_inputs(SETTINGS)
        g, _ = get_backend("inhouse").differentiable_observables(
            scenario, names, batch.OBSERVED, initial, "cpu", "float64")
        theta = torch.as_tensor(settings, dtype=torch.float64)

        def call() -> None:
            if mode == "vectorised":
                with torch.no_grad():
                    g(theta)
            else:
                leaf = theta.clone().requires_grad_(True)
                g(leaf)["sigma_x"].sum().backward()

        self.call = call
        call()  # warm-up

    def time_batch(self, mode: str) -> None:
        """Seconds of one call at K settings."""
        self.call()

    def track_settings_per_s(self, mode: str) -> float:
        """K over the fastest of three calls [settings/s]."""
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            self.call()
            best = min(best, time.perf_counter() - start)
        return SETTINGS / best

    track_settings_per_s.unit = "settings/s"  # type: ignore[attr-defined]


class BatchSpeedup:
    """In-house vectorised against ImpactX looping, side by side."""

    timeout = 600.0

    def setup(self) -> None:
        from backends.registry import get_backend

        one_thread()
        impactx = get_backend("impactx")
        if not impactx.availability().available:
            raise NotImplementedError("ImpactX is not installed")
        self.inputs = batch_inputs(SETTINGS)

    def track_speedup_vs_impactx(self) -> float:
        """In-house vectorised settings/s over ImpactX loop settings/s [1]."""
        from harness.workloads import batch

        scenario, names, settings, initial = self.inputs
        fast = vectorised_rate("vectorised", scenario, names, settings, initial)
        row, _ = batch.measure("impactx", "loop", scenario, names,
                               settings[:LOOP_SETTINGS], initial, 60.0, 1)
        if row["status"] != "ok":
            raise NotImplementedError(row["status"])
        return fast / float(row["settings_per_s"])

    track_speedup_vs_impactx.unit = "ratio"  # type: ignore[attr-defined]


class Reconstruction:
    """The quad-scan reconstruction through the in-house tracker."""

    params = (["analytic", "lbfgs", "gauss-newton"],)
    param_names = ("method",)
    timeout = 600.0

    def setup(self, method: str) -> None:
        import numpy as np

        from backends.registry import get_backend
        from harness.model.load import load_scenario
        from harness.workloads import fits
        from harness.workloads import quad_scan as qs

        one_thread()
        if not get_backend("impactx").availability().available:
            raise NotImplementedError("the measurements are made by ImpactX")
        self.problem = qs.make_problem(load_scenario(QUAD_SCAN), np.linspace(-8, 8, 11),
                                       0.01, 1, 1000, 10_000)
        reference = fits.run_analytic(self.problem).sigma
        if reference is None:
            raise NotImplementedError("the analytic answer failed")
        self.reference = reference

    def track_time_to_target(self, method: str) -> float:
        """Wall time [s] to the analytic answer to 1e-6 (NaN where not reached)."""
        from harness.workloads import fits

        if method == "analytic":
            return float(fits.run_analytic(self.problem).row["wall_s"])
        result = fits.run_method(self.problem, method, "inhouse", self.reference, 200)
        value = result.row.get("time_to_target_s")
        return float("nan") if value is None else float(value)

    track_time_to_target.unit = "seconds"  # type: ignore[attr-defined]


class GradMemory:
    """Peak backward memory of a space-charge gradient, in-house."""

    params = (["none", "kick"],)
    param_names = ("checkpoint",)
    timeout = 600.0

    def setup(self, checkpoint: str) -> None:
        from harness.model.load import load_scenario

        one_thread()
        self.scenario = load_scenario(MEMORY_SCENARIO)

    def track_backward_peak_bytes(self, checkpoint: str) -> float:
        """Peak tensor memory of one forward + backward [bytes]."""
        from harness.workloads import memory

        row = memory.point("inhouse", self.scenario, 1000, 1, 16, checkpoint)
        if row["status"] != "ok":
            raise NotImplementedError(row["status"])
        return float(row["backward_peak_bytes"])

    track_backward_peak_bytes.unit = "bytes"  # type: ignore[attr-defined]


if grid.quick():   # the tiny grid is the tracking case alone
    del BatchSettings, BatchSpeedup, Reconstruction, GradMemory
