"""Driving an Xopt generator step by step: the one loop that the tuning benchmark
(:mod:`harness.tuning.methods`) and the quad-scan reconstruction
(:mod:`harness.workloads.fits`) run Xopt's optimisers through.

Xopt (Roussel et al., *Xopt: A simplified framework for optimization of accelerator
problems using advanced algorithms*, IPAC 2023) proposes points with a generator and
evaluates them with an evaluator; the caller here keeps the stopping rule and the record
of every evaluation: before each step :func:`drive` calls ``check`` with the generator
Xopt runs (Xopt holds its own copy of the one given, whose state is what a stopping rule
reads; ``check`` raises the caller's own exception to stop: tolerance reached, budget
spent, simplex collapsed), asks
the generator for ``min(workers, remaining())`` candidates, evaluates them (on an executor's
workers when given) and hands the evaluated rows to ``record``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def vocs_for(names: Sequence[str], bounds: Sequence[tuple[float, float]]) -> Any:
    """Xopt's ``VOCS``: the named variables within their bounds and one objective ``f``
    to minimise."""
    from xopt import VOCS

    return VOCS(variables={n: [float(lo), float(hi)] for n, (lo, hi)
                           in zip(names, bounds, strict=True)},
                objectives={"f": "MINIMIZE"})


def drive(generator: Any, function: Callable[[dict], dict], *,
          record: Callable[[list[dict]], None], check: Callable[[Any], None],
          remaining: Callable[[], int], start: dict[str, float] | None = None,
          random_points: int = 0, seed: int | None = None, workers: int = 1,
          executor: Any = None) -> str:
    """Run ``generator`` with ``function`` (``{name: value} -> {"f": ..., ...}``) until
    ``check(generator)`` raises (the caller catches its own exception) or the generator
    proposes no point (the message returned). With ``random_points``: ``start`` is
    evaluated first, then that many random points of the box (``seed``). With ``workers``
    > 1 and an ``executor``, batches of candidates are evaluated at once on its
    workers."""
    from xopt import Evaluator, Xopt

    evaluator = (Evaluator(function=function, executor=executor, max_workers=workers)
                 if workers > 1 and executor is not None else Evaluator(function=function))
    xopt = Xopt(evaluator=evaluator, generator=generator)
    if random_points:
        if start is not None:
            record(xopt.evaluate_data({n: [v] for n, v in start.items()}).to_dict("records"))
            check(xopt.generator)
        record(xopt.random_evaluate(min(random_points, remaining()), seed=seed)
               .to_dict("records"))
    while True:
        check(xopt.generator)
        candidates = xopt.generator.suggest(min(workers, remaining()))
        if candidates is None or len(candidates) == 0:
            return "ended: the generator proposed no new point"
        record(xopt.evaluate_data(candidates).to_dict("records"))


__all__ = ["drive", "vocs_for"]
