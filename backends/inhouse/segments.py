"""A step list cut into segments that share compiled code: the unit of compilation of
:mod:`backends.inhouse.compiled`.

Compiling a whole lattice as one ``torch.compile`` graph costs time that grows faster than
the lattice (a 150-element paraxial line did not compile in 900 s). Here compilation is
bounded per element instead:

* **Parameters as inputs.** The numbers of a step (a kernel's coefficients, the entries of a
  linear matrix) are *lifted* out of it (:func:`lift`): every Python float becomes a slot in
  one float64 vector per segment, passed to the compiled code as a tensor, while what shapes
  the code (the push function, integer step counts, sign flags, the sparsity pattern of a
  matrix) stays in the step's *signature*. Two quadrupoles of different strength, or the
  ten identical steps of an exact integrator, have one signature. Within one segment,
  equal values share one slot (part of the segment's signature), so that inductor
  computes the sub-expressions they have in common once.
* **Segments.** Consecutive steps are grouped into segments of at most
  :data:`SEGMENT_COST` cost units (one unit per sub-map; an integrator counts each of its
  sub-steps). A segment that repeats (the cells of a periodic line, the steps of an
  integrator) is cut at its period (:func:`segment_steps`), so the segment of the next cell
  has the signature of the first and reuses its compiled code.

Precision: lifted constants are float64 0-d values, which combine with the particle columns
exactly as the Python floats of the eager path do (a 0-d tensor does not promote a
dimensioned one), so the compiled and eager tracks agree to round-off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from backends.inhouse import integrators
from backends.inhouse.maps import Columns
from backends.inhouse.tracker import KernelStep, LinearStep

#: Largest cost (sub-maps) of one segment. Compile time of a segment grows with its size
#: and the compiled code of a repeated segment is reused. Larger segments pass over the
#: particles fewer times but inductor's code for them is slower per map: long_fodo, 10^6
#: particles, 1 thread (one FODO cell = 7 maps): 24 -> 2.6-3.0 s per track, 16 -> 2.6 s,
#: 8 -> 1.6-1.7 s, 4 -> 1.9 s; fodo_paraxial's 5 maps stay one segment.
SEGMENT_COST = 8


@dataclass(frozen=True)
class Slot:
    """Position of a lifted constant in a segment's coefficient vector."""

    index: int


def lift(tree: Any, values: list[float], shared: dict[str, int] | None = None) -> Any:
    """``tree`` with every float (and every 0-d tensor without grad) replaced by a
    :class:`Slot` into ``values`` (appended to); bools, ints, strings, None and callables are kept
    (they are part of the signature). With ``shared`` (a map from a value's bits to its slot,
    filled here), equal values share one slot. Raises TypeError for anything else (a batched
    tensor), which the caller runs uncompiled."""
    if isinstance(tree, bool | int | str) or tree is None or callable(tree):
        return tree
    if isinstance(tree, torch.Tensor):
        if tree.dim() != 0 or tree.requires_grad or tree.dtype == torch.bool:
            raise TypeError(f"cannot lift a tensor of shape {tuple(tree.shape)} "
                            f"(dtype {tree.dtype}) into a compiled segment")
        tree = float(tree)
    if isinstance(tree, float):
        key = tree.hex()  # tells -0.0 from 0.0
        if shared is not None and key in shared:
            return Slot(shared[key])
        values.append(tree)
        if shared is not None:
            shared[key] = len(values) - 1
        return Slot(len(values) - 1)
    if isinstance(tree, tuple | list):
        return type(tree)(lift(item, values, shared) for item in tree)
    raise TypeError(f"cannot lift {type(tree).__name__} into a compiled segment")


def rebuild(structure: Any, coeffs: torch.Tensor | Sequence[float]) -> Any:
    """The inverse of :func:`lift`: slots replaced by ``coeffs[index]`` (0-d tensors)."""
    if isinstance(structure, Slot):
        return coeffs[structure.index]
    if isinstance(structure, tuple | list):
        return type(structure)(rebuild(item, coeffs) for item in structure)
    return structure


def _signature(structure: Any, indexed: bool = False) -> Any:
    """Hashable signature of a lifted structure: slots by kind only, or with ``indexed`` by
    their index (which slots share a value)."""
    if isinstance(structure, Slot):
        return structure if indexed else Slot
    if isinstance(structure, tuple | list):
        return tuple(_signature(item, indexed) for item in structure)
    return structure


#: Marker of a matrix entry equal to 1 (added without a multiplication).
ONE = "one"


def linear_pattern(matrix: torch.Tensor) -> tuple:
    """Per row, ``((column, value or ONE), ...)`` of the non-zero entries in column order."""
    rows = []
    for row in matrix.detach().cpu().tolist():
        rows.append(tuple((j, ONE if value == 1.0 else float(value))
                          for j, value in enumerate(row) if value != 0.0))
    return tuple(rows)


def linear_push(columns: Columns, pattern: tuple) -> Columns:
    """``M @ columns`` as element-wise sums over the non-zero entries of each row, columns
    in index order (the order of a dot product); ``pattern`` as :func:`linear_pattern`
    with the values rebuilt."""
    out = []
    for row in pattern:
        total = None
        for j, value in row:
            term = columns[j] if isinstance(value, str) else value * columns[j]
            total = term if total is None else total + term
        out.append(total if total is not None else torch.zeros_like(columns[0]))
    return tuple(out)


@dataclass(frozen=True)
class SubStep:
    """One element-wise map of a segment: ``push(columns, coeffs)`` with its coefficients
    lifted (``structure``), and whether it also returns a survival mask."""

    push: Any
    structure: Any
    loses_particles: bool
    label: str

    @property
    def signature(self) -> tuple:
        """What its code depends on: the push, the structure with its slot indices (equal
        values share a slot within a segment) and whether it loses particles."""
        return (self.push, _signature(self.structure, indexed=True), self.loses_particles)


def expand(step) -> list[tuple[Any, Any, bool, str]]:
    """A step as ``(push, coeffs, loses_particles, label)`` sub-maps: a linear step as one
    :func:`linear_push`, an integrator (:func:`integrators.integrate_push`) as its
    ``nsteps`` times repeated sub-maps, any other kernel as itself."""
    if isinstance(step, LinearStep):
        if step.matrix.dim() != 2:
            raise TypeError("a batched matrix cannot be compiled into a segment")
        return [(linear_push, linear_pattern(step.matrix), False, step.label)]
    if not isinstance(step, KernelStep):
        raise TypeError(f"cannot compile a {type(step).__name__} into a segment")
    if step.push is integrators.integrate_push and not step.loses_particles:
        nsteps, sequence = step.coeffs
        return [(push, coeffs, False, f"{step.label}[{k}]")
                for k in range(int(nsteps)) for push, coeffs in sequence]
    return [(step.push, step.coeffs, step.loses_particles, step.label)]


@dataclass
class Segment:
    """Consecutive sub-maps compiled as one function.

    Attributes:
        subs: the sub-maps, coefficients lifted into ``values``.
        values: the lifted constants (float64), the segment's coefficient vector.
    """

    subs: list[SubStep]
    values: list[float]
    signature: tuple = ()

    def __post_init__(self):
        #: what the compiled code depends on: equal signatures share one compilation
        self.signature = tuple(sub.signature for sub in self.subs)

    @property
    def loses_particles(self) -> bool:
        return any(sub.loses_particles for sub in self.subs)

    @property
    def label(self) -> str:
        return "+".join(sub.label for sub in self.subs)


def _segment_of(items: Sequence[tuple[Any, Any, bool, str]]) -> Segment:
    values: list[float] = []
    shared: dict[str, int] = {}
    subs = [SubStep(push, lift(coeffs, values, shared), loses, label)
            for push, coeffs, loses, label in items]
    return Segment(subs, values)


def single_segments(segment: Segment) -> list[Segment]:
    """The segment as segments of one sub-map each (same maps and values)."""
    return [_segment_of([(sub.push, rebuild(sub.structure, segment.values),
                          sub.loses_particles, sub.label)]) for sub in segment.subs]


def _period(signatures: Sequence[Any], start: int, limit: int) -> int | None:
    """Smallest p <= limit such that the p signatures from ``start`` repeat right after."""
    for p in range(1, min(limit, (len(signatures) - start) // 2) + 1):
        if all(signatures[start + i] == signatures[start + p + i] for i in range(p)):
            return p
    return None


def _repeats(signatures: Sequence[Any], start: int, period: int) -> int:
    """How many times the ``period`` signatures from ``start`` occur back to back."""
    unit = tuple(signatures[start:start + period])
    count = 1
    while tuple(signatures[start + count * period:start + (count + 1) * period]) == unit:
        count += 1
    return count


def segment_steps(steps: Sequence, limit: int = SEGMENT_COST) -> list[Segment]:
    """Cut the steps into segments of at most ``limit`` sub-maps.

    From each position, in this order: a run of sub-maps with the signature of an earlier
    segment is that segment again (its compiled code is reused); a unit of ``p <= limit``
    sub-maps repeated ``R`` times back to back (FODO cells, integrator steps) becomes
    ``R / k`` segments of ``k`` units, ``k`` the largest divisor of ``R`` with
    ``k p <= limit`` (one signature for the whole run); anything else is gathered into
    segments of up to ``limit`` sub-maps. Raises TypeError for a step that cannot be
    compiled.
    """
    items = [item for step in steps for item in expand(step)]
    signatures = [(push, _signature(lift(coeffs, [])), loses)
                  for push, coeffs, loses, _ in items]
    known: list[tuple] = []
    out: list[Segment] = []

    def emit(start: int, stop: int) -> None:
        out.append(_segment_of(items[start:stop]))
        signature = tuple(signatures[start:stop])
        if signature not in known:
            known.append(signature)
            known.sort(key=len, reverse=True)

    pending = 0  # start of the sub-maps gathered so far (none when == position)
    position = 0
    while position < len(items):
        match = next((len(sig) for sig in known if len(sig) > 1
                      and tuple(signatures[position:position + len(sig)]) == sig), 0)
        period = None if match else _period(signatures, position, limit)
        if match or period:
            if pending < position:
                emit(pending, position)
            if period is None:  # a known segment again
                emit(position, position + match)
                position += match
            else:
                repeats = _repeats(signatures, position, period)
                per = max(k for k in range(1, repeats + 1)
                          if repeats % k == 0 and k * period <= limit)
                for _ in range(repeats // per):
                    emit(position, position + per * period)
                    position += per * period
            pending = position
            continue
        position += 1
        if position - pending >= limit:
            emit(pending, position)
            pending = position
    if pending < position:
        emit(pending, position)
    return out


def _source(structure: Any, namespace: dict[str, Any]) -> str:
    """Python source of a lifted structure: slots as ``c[i]``, callables by a name bound in
    ``namespace``, other constants by their repr."""
    if isinstance(structure, Slot):
        return f"c[{structure.index}]"
    if isinstance(structure, tuple):
        return "(" + "".join(_source(item, namespace) + ", " for item in structure) + ")"
    if isinstance(structure, list):
        return "[" + ", ".join(_source(item, namespace) for item in structure) + "]"
    if callable(structure):
        return _name(structure, namespace)
    return repr(structure)


def _name(function: Any, namespace: dict[str, Any]) -> str:
    for name, value in namespace.items():
        if value is function:
            return name
    name = f"f{len(namespace)}"
    namespace[name] = function
    return name


def segment_source(segment: Segment) -> tuple[str, dict[str, Any]]:
    """Source of the segment function and the namespace it runs in (see
    :func:`segment_function`)."""
    namespace: dict[str, Any] = {}
    lines = ["def segment(x, px, y, py, t, pt, c):",
             "    cols = (x, px, y, py, t, pt)",
             "    alive = None"]
    for sub in segment.subs:
        call = f"{_name(sub.push, namespace)}(cols, {_source(sub.structure, namespace)})"
        if sub.loses_particles:
            lines += [f"    cols, ok = {call}",
                      "    alive = ok if alive is None else alive & ok"]
        else:
            lines.append(f"    cols = {call}")
    lines += ["    for row, col in zip((x, px, y, py, t, pt), cols):",
              "        if col is not row:",
              "            row.copy_(col)",
              "    return alive"]
    return "\n".join(lines) + "\n", namespace


def segment_function(segment: Segment):
    """``fn(x, px, y, py, t, pt, c) -> alive | None``: the segment's sub-maps applied to six
    ``(N,)`` columns, written back into them in place (pass contiguous tensors, not views:
    in-place updates of views cost a slow path in the compiled call); ``c`` is the
    segment's float64 coefficient vector. The function is generated as source with every
    structural constant written out, so that ``torch.compile`` guards only on the tensors
    and the push functions, and each segment signature has its own code object (one cache
    entry)."""
    source, namespace = segment_source(segment)
    exec(compile(source, "<segment>", "exec"), namespace)  # noqa: S102 - generated above
    return namespace["segment"]
