"""Cheetah with its tracking ``torch.compile``'d: the "Cheetah: compiled" bars of NAPAC2025
TUP101 (Figs. 1-3), as a backend of its own, ``cheetah-compiled``.

The lattice, coordinates and maps are those of :mod:`backends.cheetah` (same classes, same
``cheetah.Segment``); only :meth:`CheetahCompiledPrepared.run` differs: it calls
``torch.compile(segment.track)`` (TorchDynamo traces Cheetah's Python element loop, inductor
generates C++/OpenMP on CPU and Triton on CUDA), as the paper's benchmark script does
(impactx-benchmarks tag ``napac25``, ``napac25/scenario_htu/run_cheetah_impactx.py.jinja``:
``torch.compile(segment.track, mode="default", backend="inductor")`` with inductor's
fast-math flags, compiled by one untimed call before the timed one). ``mode="default"`` is
torch's default; it is left out here because torch refuses ``mode`` next to ``options``.

Compilation happens on the first track of each particle count, i.e. in the harness's untimed
warm-up. That track runs the compiled function twice: Cheetah caches each element's transfer
map on first use, so the second call takes another code path, which Dynamo compiles anew
(HTU, 10^4 particles, float64: the second call took 12 s, an eager track 0.9 s).
:attr:`CheetahCompiledPrepared.compile_s` is the wall time of both calls and ``compiled``
tells whether the timed tracks ran compiled code. If compilation fails (no C++ compiler, a graph
Dynamo cannot trace), the case runs eagerly and ``compile_error`` says why, as the in-house
tracker's compiled path does (:mod:`backends.inhouse.compiled`).

``FAST_MATH`` mirrors the paper's ``-fm`` configurations (``cpp.enable_unsafe_math_opt_flag``,
``cuda.use_fast_math``); set ``TRACKBENCH_CHEETAH_FAST_MATH=0`` for IEEE-strict code.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, ClassVar

from backends.cheetah import CheetahBackend, CheetahPrepared

if TYPE_CHECKING:
    from backends.base import Plan
    from harness.model.scenario import Scenario

#: Dynamo compiles a frame once per guard set; Cheetah's ``Segment`` tracks each merged
#: linear section through the same method with another ``self``, so a long lattice needs one
#: specialisation per section. torch's default limit (8) would leave the rest eager.
RECOMPILE_LIMIT = 1024

#: Environment variable: ``0`` compiles without inductor's fast-math flags.
FAST_MATH_ENV = "TRACKBENCH_CHEETAH_FAST_MATH"


def fast_math() -> bool:
    """Whether inductor compiles with fast-math flags (the paper's setting, default on)."""
    return os.environ.get(FAST_MATH_ENV, "1").strip().lower() not in ("0", "false", "no",
                                                                       "off")


def inductor_options() -> dict[str, Any]:
    """Inductor options of the compilation (fast-math as in the paper's ``-fm`` runs)."""
    flag = fast_math()
    return {"cpp.enable_unsafe_math_opt_flag": flag, "cuda.use_fast_math": flag}


class CheetahCompiledPrepared(CheetahPrepared):
    """A scenario as a ``cheetah.Segment`` whose ``track`` is run ``torch.compile``'d.

    Attributes:
        compiled: whether the last run executed compiled code (None before the first run).
        compile_s: wall time [s] of the runs that compiled (tracing, code generation, the
            first execution), summed over particle counts; 0.0 if none compiled.
        compile_error: why the run fell back to eager tracking ("" if it did not).
    """

    def __init__(self, scenario: Scenario, device: str, dtype: str, model: str,
                 plans: tuple | None = None):
        super().__init__(scenario, device, dtype, model, plans)
        self.compiled = None
        self._compiled_track = None
        self._seen: set[tuple] = set()

    def run(self, handle):
        import torch

        if self.compile_error:
            self.compiled = False
            return super().run(handle)
        if self._compiled_track is None:
            self._compiled_track = torch.compile(self.segment.track, backend="inductor",
                                                 dynamic=False, options=inductor_options())
        particles = handle.particles
        key = (tuple(particles.shape), particles.dtype, particles.device)
        first = key not in self._seen
        t0 = time.perf_counter()
        try:
            with torch.no_grad(), torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
                out = self._compiled_track(handle)
                if first:  # Cheetah's transfer-map cache is filled now: compile that path too
                    out = self._compiled_track(handle)
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager
            if not first:
                raise
            self.compile_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            self.compiled = False
            return super().run(handle)
        if first:
            self.synchronize()
            self.compile_s += time.perf_counter() - t0
            self._seen.add(key)
        self.compiled = True
        return out


class CheetahCompiledBackend(CheetahBackend):
    """Cheetah with ``torch.compile``'d tracking (inductor), compiled in the warm-up."""

    name: ClassVar[str] = "cheetah-compiled"
    #: Each case compiles for 40-300 s (measured): run when named (``--backends``), as
    #: ``trackbench reproduce`` does, not in the default comparison.
    run_by_default: ClassVar[bool] = False
    tracking_modes: ClassVar[frozenset[str]] = frozenset({"particles"})
    envelope_refusal: ClassVar[str] = (
        "cheetah-compiled compiles the particle track only; Cheetah's envelope mode (a "
        "ParameterBeam through first-order maps) runs as backend 'cheetah'")

    def prepare(self, scenario: Scenario | Plan, device: str = "cpu",
                dtype: str = "float64") -> CheetahCompiledPrepared:
        plan = self.planned(scenario, device, dtype)
        return CheetahCompiledPrepared(plan.scenario, plan.device, plan.dtype, plan.model,
                                       plan.lattice)

    def prepare_single_use(self, scenario: Scenario | Plan, device: str = "cpu",
                           dtype: str = "float64") -> CheetahPrepared:
        """A lattice tracked once (finite differences) is not worth compiling: eager."""
        return super().prepare(scenario, device, dtype)


BACKEND = CheetahCompiledBackend
