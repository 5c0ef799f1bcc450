"""Cheetah with its tracking ``torch.compile``'d: the "Cheetah: compiled" bars of NAPAC2025
TUP101 (Figs. 1-3), as a backend of its own, ``cheetah-compiled``.

The lattice, coordinates and maps are those of :mod:`backends.cheetah` (same classes, same
``cheetah.Segment``); only :meth:`CheetahCompiledPrepared.run` differs: it calls
``torch.compile(segment.track)`` (TorchDynamo traces Cheetah's Python element loop, inductor
generates C++/OpenMP on CPU and Triton on CUDA), as the paper's benchmark script does
(impactx-benchmarks tag ``napac25``, ``napac25/scenario_htu/run_cheetah_impactx.py.jinja``:
``torch.compile(segment.track, mode="default", backend="inductor")``, with inductor's
fast-math flags in its ``-fm`` configurations, compiled by one untimed call before the
timed one). ``mode="default"`` is
torch's default; it is left out here because torch refuses ``mode`` next to ``options``.

Compilation happens on the first track of each particle count, i.e. in the harness's untimed
warm-up. That track runs the compiled function twice: Cheetah caches each element's transfer
map on first use, so the second call takes another code path, which Dynamo compiles anew
(HTU, 10^4 particles, float64: the second call took 12 s, an eager track 0.9 s).
:attr:`CheetahCompiledPrepared.compile_s` is the wall time of both calls and ``compiled``
tells whether the timed tracks ran compiled code. If compilation fails (no C++ compiler, a graph
Dynamo cannot trace), the case runs eagerly and ``compile_error`` says why, as the in-house
tracker's compiled path does (:mod:`backends.inhouse.compiled`).

Math settings (the case's ``math``, :attr:`CheetahCompiledBackend.math_modes`): ``ieee``
compiles with inductor's default C++ flags (``-fno-unsafe-math-optimizations
-ffp-contract=off``, ``torch/_inductor/cpp_builder.py``); ``fast`` with the paper's ``-fm``
flags (``cpp.enable_unsafe_math_opt_flag``, ``cuda.use_fast_math``) and, as the in-house
compiled path, ``cpp.enable_floating_point_contract_flag = "fast"`` and Triton's
``use_fast_math`` (:data:`backends.inhouse.INDUCTOR_MATH`). The options are passed to
``torch.compile``, so they are part of inductor's cache key: a fast kernel is never reused
for an IEEE case.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from backends.base import IEEE, compile_failure
from backends.cheetah import CheetahBackend, CheetahPrepared

if TYPE_CHECKING:
    from backends.base import Plan
    from harness.model.scenario import Scenario

#: Dynamo compiles a frame once per guard set; Cheetah's ``Segment`` tracks each merged
#: linear section through the same method with another ``self``, so a long lattice needs one
#: specialisation per section. torch's default limit (8) would leave the rest eager.
RECOMPILE_LIMIT = 1024

def inductor_options(math: str = IEEE) -> dict[str, Any]:
    """Inductor options of the compilation for a math setting (``fast``: the paper's
    ``-fm`` flags with those of :data:`backends.inhouse.INDUCTOR_MATH`)."""
    from backends.inhouse import INDUCTOR_MATH

    return {**INDUCTOR_MATH[math], "cuda.use_fast_math": math != IEEE}


class CheetahCompiledPrepared(CheetahPrepared):
    """A scenario as a ``cheetah.Segment`` whose ``track`` is run ``torch.compile``'d.

    Attributes:
        compiled: whether the last run executed compiled code (None before the first run).
        compile_s: wall time [s] of the runs that compiled (tracing, code generation, the
            first execution), summed over particle counts; 0.0 if none compiled.
        compile_error: why the run fell back to eager tracking ("" if it did not).
    """

    def __init__(self, scenario: Scenario, device: str, dtype: str, model: str,
                 plans: tuple | None = None, math: str = IEEE):
        super().__init__(scenario, device, dtype, model, plans)
        self.math = math
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
                                                 dynamic=False,
                                                 options=inductor_options(self.math))
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
            self.compile_error = compile_failure(exc, first)
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
    #: Fast-math through inductor's flags (see the module docstring).
    math_modes: ClassVar[frozenset[str]] = frozenset({"ieee", "fast"})

    def prepare(self, scenario: Scenario | Plan, device: str = "cpu",
                dtype: str = "float64") -> CheetahCompiledPrepared:
        plan = self.planned(scenario, device, dtype)
        return CheetahCompiledPrepared(plan.scenario, plan.device, plan.dtype, plan.model,
                                       plan.lattice, plan.math)

    def prepare_single_use(self, scenario: Scenario | Plan, device: str = "cpu",
                           dtype: str = "float64") -> CheetahPrepared:
        """A lattice tracked once (finite differences) is not worth compiling: eager (an
        IEEE plan only: a fast plan runs compiled code)."""
        if getattr(scenario, "math", IEEE) != IEEE:
            raise ValueError("a fast-math plan runs compiled code; prepare it with prepare()")
        return super().prepare(scenario, device, dtype)


BACKEND = CheetahCompiledBackend
