"""The forward (no-autograd) track of a lattice compiled with ``torch.compile`` (inductor).

The step list of a :class:`~backends.inhouse.tracker.Tracker` is cut into segments
(:mod:`backends.inhouse.segments`): runs of consecutive maps of bounded size whose numbers
(coefficients, matrix entries) are inputs of the compiled code, not constants baked into it.
Each distinct segment signature is compiled once (inductor fuses its element-wise maps, and
the 6x6 products of fused linear sections written out as element-wise sums, into one loop
over the particles); a repeated segment (the next FODO cell, the next integrator step, a
quadrupole of another strength) reuses that code, so compile time is bounded per distinct
element sequence instead of growing with the lattice. The particle dimension is dynamic
(``mark_dynamic``): one compilation serves every particle count. On CPU, a lattice of
:data:`BLOCKED_FROM_SEGMENTS` segments or more is tracked in blocks of :data:`BLOCK`
particles copied into reused buffers (all segments per block, so a block's columns stay in
the core's cache between segments); on CUDA the whole beam is one block.

Inductor's on-disk caches (FX graphs, generated code) live in the project's ``.cache/inductor``
directory unless ``TORCHINDUCTOR_CACHE_DIR`` says otherwise, so that a second run of a lattice
in a fresh process starts warm.

The eager path, :func:`backends.inhouse.tracker.track_inplace`, evaluates the same step
functions and stays the fallback: with compilation disabled (``TRACKBENCH_INHOUSE_COMPILE=0``
or the adapter's ``compile=False``), below :data:`MIN_PARTICLES` particles in automatic mode,
or when compilation fails (e.g. no C++ compiler); :attr:`CompiledForward.compiled` then
tells which path ran and :attr:`CompiledForward.error` why compilation was not used.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from backends.base import compile_failure
from backends.inhouse import segments as seg
from backends.inhouse import vec_isa
from backends.inhouse.maps import Columns
from backends.inhouse.tracker import BLOCK as EAGER_BLOCK
from backends.inhouse.tracker import (
    KernelStep,
    LinearStep,
    Step,
    track_inplace,
)

#: Environment variable: ``0`` disables compilation, ``1`` compiles for every particle
#: count; unset (or ``auto``) compiles from :data:`MIN_PARTICLES` particles on.
ENV_VAR = "TRACKBENCH_INHOUSE_COMPILE"

#: Inductor's cache directory inside the project (git-ignored ``.cache/``).
CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "inductor"


def use_project_cache() -> str:
    """Point ``TORCHINDUCTOR_CACHE_DIR`` at :data:`CACHE_DIR` unless it is set already (or the
    project directory is not writable); returns the directory in use ("" for inductor's
    default)."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        try:
            CACHE_DIR.mkdir(parents=True, exist_ok=True)
        except OSError:
            return ""
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(CACHE_DIR)
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


#: Inductor settings of the compilation. Realizing every intermediate read more than once
#: (``realize_reads_threshold``) stops inductor from re-tracing shared sub-expressions into
#: each consumer, which dominated the compilation of long element-wise chains. Raising
#: ``max_fusion_size`` (default 64 nodes) keeps a whole segment in one loop over the
#: particles. Compiling in this process (``compile_threads=1``) avoids starting compile
#: worker processes.
INDUCTOR_OPTIONS: dict[str, int] = {"realize_reads_threshold": 1, "max_fusion_size": 4096,
                                    "compile_threads": 1}

#: Particle count from which automatic mode compiles. From 10^3 particles on, the eager path
#: is dominated by per-operation dispatch (fodo_exact, 10^4 particles: eager 14 ms, ImpactX
#: 3 ms) while the compiled track is far faster; compilation is reported apart from
#: tracking. Below, a track is cheap either way.
MIN_PARTICLES = 1_000

#: Particles per block of the compiled CPU track: the six float64 columns of a block
#: (1.5 MiB) stay in a core's L2 cache from one segment to the next.
BLOCK = 32768

#: Segments from which the CPU track runs block by block: with one or two segments the
#: copies into and out of the block buffers cost more than the cache reuse saves.
BLOCKED_FROM_SEGMENTS = 3


#: After compiling, a track of up to :data:`SETTLE_PARTICLES` particles is run
#: :data:`SETTLE_RUNS` more times on a scratch copy, inside the (untimed) first call: the
#: first few calls of freshly compiled code are slower (fodo_linear, 10^4 particles, 1 thread:
#: 580, 289, 254, 206, 185 us for the first five timed tracks, then 83 us), which would
#: otherwise land in the timed repeats of small beams.
SETTLE_PARTICLES = 200_000
SETTLE_RUNS = 5


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


def elementwise_steps(steps: Sequence[Step]) -> list[Step | Callable[..., Any]]:
    """Steps with every constant 2-d :class:`LinearStep` replaced by a function computing its
    product element-wise (:func:`backends.inhouse.segments.linear_push`)."""
    out: list[Step | Callable[..., Any]] = []
    for step in steps:
        if isinstance(step, LinearStep) and step.matrix.dim() == 2:
            pattern = seg.linear_pattern(step.matrix)

            def linear(columns, alive, pattern=pattern):
                return seg.linear_push(columns, pattern), alive

            out.append(linear)
        else:
            out.append(step)
    return out


def _guards_skipped(skip: bool):
    """Context in which compiled segments run without dynamo's guard evaluation (``skip``)
    or as usual. Safe here: a segment function has one compiled entry per device and dtype
    (the particle dimension is dynamic) and runs this way only after that entry has run for
    the device and dtype at hand; inductor still checks sizes and strides. It cuts the
    per-call overhead of a compiled segment about threefold (fodo_linear, 10^4 particles:
    250 -> 80 us per track on a loaded 2-core machine)."""
    if not skip:
        return contextlib.nullcontext()
    return torch.compiler.set_stance(skip_guard_eval_unsafe=True)


def _parts_of(steps: Sequence[Step], cost: int) -> list:
    """The steps as segments of at most ``cost`` sub-maps (:func:`segments.segment_steps`)
    between the steps that are not compiled (kept as they are)."""
    parts: list = []
    run: list[Step] = []
    for step in [*steps, None]:
        if step is None or not isinstance(step, LinearStep | KernelStep):
            if run:
                parts.extend(seg.segment_steps(run, cost))
                run = []
            if step is not None:
                parts.append(step)
        else:
            run.append(step)
    return parts


def _split_unique(parts: list) -> list:
    """``parts`` with every segment of several sub-maps whose signature occurs once cut into
    segments of one sub-map: what repeats keeps its larger compiled segments, what does not
    shares one kernel per distinct map."""
    counts = Counter(p.signature for p in parts if isinstance(p, seg.Segment))
    out: list = []
    for part in parts:
        if isinstance(part, seg.Segment) and len(part.subs) > 1 and counts[part.signature] == 1:
            out.extend(seg.single_segments(part))
        else:
            out.append(part)
    return out


def _fewest_kernels(steps: Sequence[Step], cost: int) -> list:
    """The segmentation whose compiled kernels are fewest, among: segments of up to
    ``cost`` sub-maps; segments of single steps; and the first with its segments that occur
    once split into single steps (:func:`_split_unique`). Compile time grows with the
    distinct kernels, so this bounds it by the number of distinct element maps. Candidates
    within one kernel of the fewest are then ranked by their segment calls (fewer calls
    mean longer kernels, whose maps share sub-expressions such as a quadrupole's phase).

    HTU, 10^6 particles, 1 thread (AMD EPYC core): single steps: 5 kernels, cold compile
    21.6 s, warm 5.0 s, track 0.55 s; split unique (chosen), up to 8 maps: 6 kernels, cold
    35.6 s, track 0.37 s."""
    grouped = _parts_of(steps, cost)
    candidates = [grouped]
    if cost > 1:
        candidates += [_split_unique(grouped), _parts_of(steps, 1)]

    def kernels(parts: list) -> int:
        return len({p.signature for p in parts if isinstance(p, seg.Segment)})

    fewest = min(kernels(parts) for parts in candidates)
    close = [parts for parts in candidates if kernels(parts) <= fewest + 1]
    return min(close, key=len)  # ties keep the earlier (larger segments)


#: Argument names of a compiled segment function (:func:`segments.segment_source`).
SEGMENT_ARGUMENTS = ("x", "px", "y", "py", "t", "pt", "c")


def _argument(name: str) -> str:
    """The segment-function argument a dynamo placeholder stands for (``l_x_`` -> ``x``), or
    "" for any other placeholder."""
    argument = name[2:-1] if name.startswith("l_") and name.endswith("_") else ""
    return argument if argument in SEGMENT_ARGUMENTS else ""


def _hint(size) -> int | None:
    """The concrete value of a (symbolic) size at tracing time, or None."""
    if isinstance(size, int):
        return size
    hint = getattr(getattr(size, "node", None), "hint", None)
    return int(hint) if isinstance(hint, int) else None


class KernelCapture:
    """A ``torch.compile`` backend that compiles with inductor and keeps what it compiled,
    per device and dtype, so that the timed track can call inductor's code directly,
    without dynamo's frame evaluation and guard machinery around every call (about 30-60 us
    per call on CPU, most of a small beam's track: 138 calls per HTU track).

    The compiled callable takes the graph's placeholders in order; each is either an
    argument of the segment function (dynamo names it ``l_<name>_``) or a symbolic size:
    the particle count or, when dynamo made it dynamic, the coefficient vector's length
    (told apart by their values at tracing time). A graph with any other input, or sizes
    that cannot be told apart, is not called directly. :class:`CompiledForward` checks the
    direct call against the dynamo call (bitwise) before it uses it.
    """

    def __init__(self, options: dict):
        self.options = dict(options)
        self.kernels: dict[tuple, tuple[Callable, list]] = {}

    def __call__(self, gm, example_inputs):
        """Called by dynamo with the traced graph: compile it with inductor, keep it."""
        from torch._inductor import config
        from torch._inductor.compile_fx import compile_fx

        with config.patch(self.options):
            compiled = compile_fx(gm, example_inputs)
        names = [node.name for node in gm.graph.nodes if node.op == "placeholder"]
        tensors = {_argument(name): value
                   for name, value in zip(names, example_inputs, strict=True)
                   if _argument(name) and isinstance(value, torch.Tensor)}
        columns = [v for a, v in tensors.items() if a != "c"]
        if not columns or "c" not in tensors:
            return compiled
        sizes = {"n": _hint(columns[0].shape[0]), "c": _hint(tensors["c"].shape[0])}
        plan: list = []
        for name, value in zip(names, example_inputs, strict=True):
            argument = _argument(name)
            if argument in tensors:
                plan.append(SEGMENT_ARGUMENTS.index(argument))
                continue
            # a symbolic size: the particle count or the coefficient vector's length
            hint = _hint(value) if isinstance(value, torch.SymInt) else None
            matches = [k for k, size in sizes.items() if hint is not None and size == hint]
            if len(matches) != 1:
                return compiled
            plan.append(matches[0])
        self.kernels[(columns[0].device, columns[0].dtype)] = (compiled, plan)
        return compiled

    def direct(self, key: tuple) -> Callable | None:
        """``call(columns, vector) -> alive | None`` for a device and dtype, or None."""
        kept = self.kernels.get(key)
        if kept is None:
            return None
        compiled, plan = kept

        def call(columns: Columns, vector: torch.Tensor):
            arguments = (*columns, vector)
            sizes = {"n": columns[0].shape[-1], "c": vector.shape[0]}
            out = compiled(*[sizes[index] if isinstance(index, str) else arguments[index]
                             for index in plan])
            return out[0] if out else None

        return call


def _through_dynamo(function):
    """A compiled segment function as a ``call(columns, vector)``."""
    return lambda columns, vector: function(*columns, vector)


def _apply(calls, columns: Columns) -> torch.Tensor | None:
    """Run ``(call, vector)`` pairs on the columns in place; the combined survival mask or
    None when no call can lose particles."""
    alive_all = None
    for call, vector in calls:
        alive = call(columns, vector)
        if alive is not None:
            alive_all = alive if alive_all is None else alive_all & alive
    return alive_all


def _opaque(step):
    """A step that is not compiled into a segment (e.g. a space-charge kick, which needs
    every particle at once) as a call of the segment form: ``call(*columns, None)``
    updates the columns in place and returns the survival mask or None."""

    def call(*args):
        rows = args[:6]
        columns, alive = step(rows, None)
        for row, column in zip(rows, columns, strict=True):
            if column is not row:
                row.copy_(column)
        return alive

    return call


class CompiledForward:
    """The in-place forward track of a step list, compiled segment by segment on first use.

    Args:
        steps: the constant steps of a tracker (``Tracker.steps()``).
        compile: True (always compile), False (eager), None (compile from
            :data:`MIN_PARTICLES` particles on), before :func:`compile_mode` is applied.
        block: particles per block on CPU (:data:`BLOCK`).
        segment_cost: largest segment (:data:`backends.inhouse.segments.SEGMENT_COST`).

    Attributes:
        compiled: whether the last call ran compiled code (None before the first call).
        compile_s: wall time [s] of the segment calls that compiled (tracing, code
            generation and the first execution), summed; 0.0 when nothing was compiled.
        error: why compilation fell back to eager ("" when it did not).
        segments: the segments of the step list (empty before the first compiled call).
        kernels: distinct compiled segment signatures.
    """

    def __init__(self, steps: Sequence[Step], compile: bool | None = None,
                 block: int = BLOCK, segment_cost: int = seg.SEGMENT_COST):
        self.steps = list(steps)
        self.segment_cost = int(segment_cost)
        self.mode = compile_mode(compile)
        self.block = int(block)
        self.compiled: bool | None = None
        self.compile_s = 0.0
        self.error = ""
        self.segments: list[seg.Segment] = []
        self._parts: list = []
        # steps not compiled into segments (space-charge kicks) need every particle at once
        # and, with particles lost upstream, the survival mask: eager then
        opaque = [s for s in self.steps if not isinstance(s, LinearStep | KernelStep)]
        self._whole_beam = bool(opaque)
        if opaque and any(getattr(s, "loses_particles", False) for s in self.steps):
            self.mode = False
        self._functions: dict[tuple, object] = {}
        self._captures: dict[tuple, KernelCapture] = {}
        #: per (device, dtype): the plan with direct kernel calls, once checked
        self._direct: dict[tuple, list] = {}
        self._plans: dict[tuple, list] = {}
        self._ready: set[tuple] = set()
        self._buffers: dict[tuple, Columns] = {}

    @property
    def kernels(self) -> int:
        """Distinct compiled segment signatures so far."""
        return len(self._functions)

    def _wants_compile(self, columns: Columns) -> bool:
        if self.error or self.mode is False:
            return False
        n = columns[0].shape[-1]
        if columns[0].dim() != 1 or n < 2:
            return False
        return self.mode is True or n >= MIN_PARTICLES

    def _prepare(self, like: torch.Tensor) -> list:
        if not self.segments:
            use_project_cache()
            vec_isa.apply()
            self._parts = _fewest_kernels(self.steps, self.segment_cost)
            self.segments = [p for p in self._parts if isinstance(p, seg.Segment)]
            for segment in self.segments:
                signature = segment.signature
                if signature not in self._functions:
                    capture = KernelCapture(INDUCTOR_OPTIONS)
                    self._captures[signature] = capture
                    self._functions[signature] = torch.compile(
                        seg.segment_function(segment), fullgraph=True, backend=capture)
        key = (like.device, like.dtype)
        if key not in self._plans:
            self._plans[key] = [
                (self._functions[part.signature],
                 torch.tensor(part.values or [0.0], dtype=torch.float64,
                              device=like.device), part.signature)
                if isinstance(part, seg.Segment)
                else (_opaque(part), None, ("opaque", type(part).__name__))
                for part in self._parts]
        return self._plans[key]

    def _segments_in_place(self, part: Columns, plan: list) -> torch.Tensor | None:
        like = part[0]
        key = (like.device, like.dtype)
        alive_all = None
        direct = self._direct.get(key)
        if direct is not None:  # the timed path, inductor's code called directly
            return _apply(direct, part)
        if key in self._ready:  # the timed path through dynamo
            with _guards_skipped(len(self._parts) == len(self.segments)):
                return _apply([(_through_dynamo(f), v) for f, v, _ in plan], part)
        for column in part:
            torch._dynamo.mark_dynamic(column, 0)
        done: set[tuple] = set()
        for function, vector, signature in plan:
            t0 = time.perf_counter() if signature not in done else None
            alive = function(*part, vector)
            if t0 is not None:
                if like.device.type == "cuda":
                    torch.cuda.synchronize(like.device)
                self.compile_s += time.perf_counter() - t0
                done.add(signature)
            if alive is not None:
                alive_all = alive if alive_all is None else alive_all & alive
        self._ready.add(key)
        return alive_all

    def _check_direct(self, initial: Columns, particles: int = 4096) -> None:
        """Use direct kernel calls (:class:`KernelCapture`) for this device and dtype when
        every part is a compiled segment and the direct track of (up to) ``particles`` of
        the ``initial`` columns equals the dynamo track bit for bit."""
        like = initial[0]
        key = (like.device, like.dtype)
        plan = self._plans.get(key)
        if plan is None or len(self._parts) != len(self.segments):
            return
        calls = []
        for _, vector, signature in plan:
            capture = self._captures.get(signature)
            call = capture.direct(key) if capture is not None else None
            if call is None:
                return
            calls.append((call, vector))
        m = min(particles, like.shape[-1])
        through_dynamo = tuple(column[:m].clone() for column in initial)
        direct = tuple(column[:m].clone() for column in initial)
        with torch.no_grad():
            alive_dynamo = self._segments_in_place(through_dynamo, plan)
            alive_direct = _apply(calls, direct)
        same = all(torch.equal(a, b) for a, b in zip(through_dynamo, direct, strict=True))
        same = same and ((alive_dynamo is None and alive_direct is None)
                         or (alive_dynamo is not None and alive_direct is not None
                             and torch.equal(alive_dynamo, alive_direct)))
        if same:
            self._direct[key] = calls

    def _run(self, columns: Columns) -> torch.Tensor | None:
        like = columns[0]
        plan = self._prepare(like)
        n = like.shape[-1]
        if (like.device.type == "cuda" or n <= self.block
                or len(self.segments) < BLOCKED_FROM_SEGMENTS
                or len(self._parts) > len(self.segments)):
            return self._segments_in_place(columns, plan)
        key = (like.device, like.dtype)
        if key not in self._buffers:
            self._buffers[key] = tuple(torch.empty(self.block, dtype=like.dtype,
                                                   device=like.device) for _ in range(6))
        buffers = self._buffers[key]
        alive_all = None
        for start in range(0, n, self.block):
            stop = min(start + self.block, n)
            m = stop - start
            for buffer, column in zip(buffers, columns, strict=True):
                buffer[:m].copy_(column[start:stop])
            alive = self._segments_in_place(buffers, plan)
            for buffer, column in zip(buffers, columns, strict=True):
                column[start:stop].copy_(buffer[:m])
            if alive is not None:
                if alive_all is None:
                    alive_all = torch.ones(n, dtype=torch.bool, device=like.device)
                alive_all[start:stop] = alive[:m]
        return alive_all

    def _eager(self, columns: Columns) -> torch.Tensor | None:
        block = max(1, columns[0].shape[-1]) if self._whole_beam else EAGER_BLOCK
        return track_inplace(self.steps, columns, block=block)

    def __call__(self, columns: Columns) -> torch.Tensor | None:
        """Track six contiguous ``(N,)`` columns (separate tensors) in place; returns the
        survival mask or None."""
        if not self._wants_compile(columns):
            self.compiled = False
            return self._eager(columns)
        first = (columns[0].device, columns[0].dtype) not in self._ready
        backup = tuple(column.clone() for column in columns) if first else None
        try:
            with torch.no_grad():
                alive = self._run(columns)
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager
            self.error = compile_failure(exc, first)
            self.compiled = False
            assert backup is not None  # taken on every first run
            for column, saved in zip(columns, backup, strict=True):
                column.copy_(saved)
            return self._eager(columns)
        if first and backup is not None:
            try:
                self._check_direct(backup)
            except Exception:  # noqa: BLE001 - the dynamo call stays in use
                self._direct.pop((columns[0].device, columns[0].dtype), None)
        if first and not self._whole_beam and columns[0].shape[-1] <= SETTLE_PARTICLES:
            scratch = tuple(column.clone() for column in columns)
            with torch.no_grad():
                for _ in range(SETTLE_RUNS):
                    self._run(scratch)
        self.compiled = True
        return alive
