"""A scenario's tuning block resolved against its lattice: the
:class:`~harness.model.tuning.TuningProblem` s it describes, and the checks that need the
lattice (parameter names resolve, every parameter gets finite bounds around its start).
"""

from __future__ import annotations

import numpy as np

from harness.model.errors import ScenarioError
from harness.model.parameters import resolve_parameter
from harness.model.scenario import Scenario
from harness.model.tuning import TuningBlock, TuningProblem


def _resolved(scenario: Scenario, block: TuningBlock, file) -> list[tuple[str, float]]:
    out = []
    for name in block.parameters:
        try:
            out.append((name, resolve_parameter(scenario, name).value))
        except KeyError as error:
            raise ScenarioError(file, f"tuning.parameters.{name}", str(error.args[0]),
                                name) from None
    return out


def check_tuning(scenario: Scenario, file=None) -> None:
    """What the block alone cannot check: parameter names resolve in the lattice, and every
    parameter gets finite bounds around its start. Raises :class:`ScenarioError`."""
    if scenario.tuning is None:
        return
    problems(scenario, file)


def problems(scenario: Scenario, file=None) -> list[TuningProblem]:
    """The problems of a scenario's tuning block: one, or one per ``sizes`` entry."""
    block = scenario.tuning
    if block is None:
        return []
    file = file if file is not None else scenario.source_file
    values = _resolved(scenario, block, file)
    rng = np.random.default_rng(block.perturbation.seed if block.perturbation else 0)
    draws = rng.uniform(-1.0, 1.0, len(values))
    start, lower, upper, optimum = [], [], [], []
    for (name, value), draw in zip(values, draws, strict=True):
        spec = block.parameters[name]
        where = f"tuning.parameters.{name}"
        known = spec.optimum if spec.optimum is not None else value
        half = block.bounds_relative * abs(value) if block.bounds_relative else None
        lo = spec.lower if spec.lower is not None else (value - half if half else None)
        hi = spec.upper if spec.upper is not None else (value + half if half else None)
        if lo is None or hi is None:
            raise ScenarioError(file, where, "'lower' and 'upper' (or the block's "
                                "'bounds_relative')")
        if not lo < hi:
            raise ScenarioError(file, where, f"lower < upper (got {lo}, {hi})")
        if spec.start is not None:
            x0 = spec.start
        elif block.perturbation is not None:
            x0 = known * (1.0 + block.perturbation.relative * draw)
        else:
            x0 = value
        if not lo <= x0 <= hi:
            raise ScenarioError(file, f"{where}.start", f"a start within [{lo}, {hi}]", x0)
        start.append(x0)
        lower.append(lo)
        upper.append(hi)
        optimum.append(known)
    sizes = block.sizes or [len(values)]
    names = tuple(name for name, _ in values)
    out = []
    for size in sizes:
        label = f"P{size}" if block.sizes else ""
        out.append(TuningProblem(label, names[:size], np.array(start[:size]),
                                 np.array(lower[:size]), np.array(upper[:size]),
                                 np.array(optimum[:size]) if block.known_optimum else None,
                                 block))
    return out
