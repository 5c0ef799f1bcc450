"""The forward (no-autograd) track of a lattice compiled with ``torch.compile`` (inductor).

The whole step list of a :class:`~backends.inhouse.tracker.Tracker` is traced as one
function of the six particle columns (separate ``(N,)`` tensors), updated in place;
inductor fuses the
element-wise maps (and the 6x6 products of fused linear sections, written out as
element-wise sums) into a few loops over the particles, so that a lattice costs about one
pass over memory per kernel instead of one per arithmetic operation. CPU and CUDA are
compiled alike (C++/OpenMP or Triton). Compilation is specialised to the particle count and
dtype (``dynamic=False``); inductor's on-disk FX-graph cache (on by default, in
``TORCHINDUCTOR_CACHE_DIR``) makes the compilation of a lattice seen before cheaper in a
fresh process.

The eager path, :func:`backends.inhouse.tracker.track_inplace`, evaluates the same step
functions and stays the fallback: with compilation disabled (``TRACKBENCH_INHOUSE_COMPILE=0``
or the adapter's ``compile=False``), below :data:`MIN_PARTICLES` particles in automatic mode,
or when compilation fails (e.g. no C++ compiler); :attr:`CompiledForward.compiled` then
tells which path ran and :attr:`CompiledForward.error` why compilation was not used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import torch

from backends.inhouse.maps import Columns
from backends.inhouse.tracker import LinearStep, Step, run_steps_into, track_inplace

#: Environment variable: ``0`` disables compilation, ``1`` compiles for every particle
#: count; unset (or ``auto``) compiles from :data:`MIN_PARTICLES` particles on.
ENV_VAR = "TRACKBENCH_INHOUSE_COMPILE"

#: Inductor settings of the compilation. Realizing every intermediate read more than once
#: (``realize_reads_threshold``) stops inductor from re-tracing shared sub-expressions into
#: each consumer, which dominated the compilation of long element-wise chains (fodo_paraxial,
#: cold cache, 1 thread: 31 s -> 14 s of CPU). Raising ``max_fusion_size`` (default 64 nodes)
#: keeps the whole lattice in one loop over the particles, so that realized intermediates
#: stay in registers instead of being stored and re-read by the next loop (fodo_exact, 10^6
#: particles, 2 threads: 4 loops and 62 ms -> 1 loop and 51 ms). Compiling in this process
#: (``compile_threads=1``) avoids starting compile worker processes.
INDUCTOR_OPTIONS: dict[str, object] = {"realize_reads_threshold": 1, "max_fusion_size": 4096,
                                       "compile_threads": 1}

#: Particle count from which automatic mode compiles. From 10^3 particles on, the eager path
#: is dominated by per-operation dispatch (fodo_exact, 10^4 particles: eager 14 ms, ImpactX
#: 3 ms) while the compiled track is far faster; compilation (2-5 s with a warm inductor
#: cache) is reported apart from tracking. Below, a track is cheap either way.
MIN_PARTICLES = 1_000


def compile_mode(option: bool | None = None) -> bool | None:
    """The compile setting: the adapter option if given, else :data:`ENV_VAR`
    (True: always, False: never, None: automatic by particle count)."""
    if option is not None:
        return bool(option)
    value = os.environ.get(ENV_VAR, "auto").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    return None


def _linear_sum(matrix: Sequence[Sequence[float]], columns: tuple, row: int) -> torch.Tensor:
    """Row ``row`` of ``matrix @ columns`` as an element-wise sum over its non-zero entries
    (columns in index order, the order of a dot product)."""
    out = None
    for j, value in enumerate(matrix[row]):
        if value == 0.0:
            continue
        term = columns[j] if value == 1.0 else value * columns[j]
        out = term if out is None else out + term
    return out if out is not None else torch.zeros_like(columns[0])


def elementwise_steps(steps: Sequence[Step]) -> list:
    """Steps with every constant 2-d :class:`LinearStep` replaced by a function computing its
    product element-wise (fusable by inductor; no matrix-product library call)."""
    out = []
    for step in steps:
        if isinstance(step, LinearStep) and step.matrix.dim() == 2:
            matrix = step.matrix.detach().cpu().tolist()

            def linear(columns, alive, matrix=matrix):
                return tuple(_linear_sum(matrix, columns, i) for i in range(6)), alive

            out.append(linear)
        else:
            out.append(step)
    return out


def forward_function(steps: Sequence):
    """``forward(*columns)``: track six separate ``(N,)`` columns in place through
    ``steps`` (separate storages, so each update is a plain in-place store); returns the
    survival mask or None."""

    def forward(*rows: torch.Tensor) -> torch.Tensor | None:
        return run_steps_into(steps, rows)

    return forward


class CompiledForward:
    """The in-place forward track of a step list, compiled on first use per particle count.

    Args:
        steps: the constant steps of a tracker (``Tracker.steps()``).
        compile: True (always compile), False (eager), None (compile from
            :data:`MIN_PARTICLES` particles on), before :func:`compile_mode` is applied.

    Attributes:
        compiled: whether the last call ran compiled code (None before the first call).
        compile_s: wall time [s] of the calls that compiled (tracing, code generation and
            the first execution), summed; 0.0 when nothing was compiled.
        error: why compilation fell back to eager ("" when it did not).
    """

    def __init__(self, steps: Sequence[Step], compile: bool | None = None):
        self.steps = list(steps)
        self.mode = compile_mode(compile)
        self.compiled: bool | None = None
        self.compile_s = 0.0
        self.error = ""
        self._compiled_fn = None
        self._shapes: set[tuple] = set()

    def _wants_compile(self, columns: Columns) -> bool:
        if self.error or self.mode is False:
            return False
        return self.mode is True or columns[0].shape[-1] >= MIN_PARTICLES

    def __call__(self, columns: Columns) -> torch.Tensor | None:
        """Track six contiguous ``(N,)`` columns (separate tensors) in place; returns the
        survival mask or None."""
        if not self._wants_compile(columns):
            self.compiled = False
            return track_inplace(self.steps, columns)
        if self._compiled_fn is None:
            self._compiled_fn = torch.compile(forward_function(elementwise_steps(self.steps)),
                                              dynamic=False, fullgraph=True,
                                              options=dict(INDUCTOR_OPTIONS))
        first_column = columns[0]
        key = (tuple(first_column.shape), first_column.dtype, first_column.device)
        first = key not in self._shapes
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                alive = self._compiled_fn(*columns)
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager
            if not first:
                raise
            self.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            self.compiled = False
            return track_inplace(self.steps, columns)
        if first:
            if first_column.device.type == "cuda":
                torch.cuda.synchronize(first_column.device)
            self.compile_s += time.perf_counter() - t0
            self._shapes.add(key)
        self.compiled = True
        return alive
