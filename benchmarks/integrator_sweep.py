"""Convergence sweep of the integrator steps: deviation from ImpactX against steps.

``python -m benchmarks.integrator_sweep [SCENARIO] [--steps 1,2,5,10,20,50,100]
[--backends xsuite,pyat,impactx] [--particles 2000] [--reference-steps 400]``

For every step count the scenario's ``integrator`` block is set to ``{nslice: 1,
mapsteps: steps}`` (the knob every adapter reads: ImpactX's ``nslice * mapsteps``, Xsuite's
Yoshida-4 steps, AT's ``NumIntSteps``), each backend tracks the scenario's seeded particles,
and the table gives max over particles of |dev| / sigma (worst coordinate) against ImpactX
with the same steps and against ImpactX with ``--reference-steps`` steps (the converged
exact map). Not an asv benchmark (no ``time_``/``track_`` names): a measurement to run by
hand, on one process, serially (``OMP_NUM_THREADS=1`` is set).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import yaml

LATTICES = Path(__file__).resolve().parent.parent / "lattices"


def with_steps(name: str, steps: int):
    """The bundled scenario ``name`` with ``integrator: {nslice: 1, mapsteps: steps}``."""
    from harness.model.load import scenario_from_dict

    path = LATTICES / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    data["integrator"] = {"nslice": 1, "mapsteps": int(steps)}
    return scenario_from_dict(data, path)


def track(backend: str, scenario, particles: np.ndarray) -> tuple[np.ndarray, str]:
    from backends.registry import get_backend

    with get_backend(backend).prepare(scenario) as prepared:
        return prepared.track(particles), prepared.model


def deviation(final: np.ndarray, reference: np.ndarray) -> float:
    """max |dev| / std(reference), worst coordinate, over particles alive in both."""
    both = np.isfinite(final).all(axis=1) & np.isfinite(reference).all(axis=1)
    return float((np.abs(final[both] - reference[both]).max(axis=0)
                  / reference[both].std(axis=0)).max())


def sweep(name: str, steps: list[int], backends: list[str], particles: int,
          reference_steps: int) -> list[dict]:
    """Rows ``{backend, steps, vs_impactx_same_steps, vs_impactx_converged, model}``."""
    from harness.model.particles import generate

    initial = generate(with_steps(name, 1).beam, particles)
    converged, _ = track("impactx", with_steps(name, reference_steps), initial)
    rows = []
    for n in steps:
        scenario = with_steps(name, n)
        same, _ = track("impactx", scenario, initial)
        for backend in backends:
            final, model = track(backend, scenario, initial)
            rows.append({"backend": backend, "steps": n,
                         "vs_impactx_same_steps": deviation(final, same),
                         "vs_impactx_converged": deviation(final, converged),
                         "model": model})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default="fodo_exact")
    parser.add_argument("--steps", default="1,2,5,10,20,50,100")
    parser.add_argument("--backends", default="xsuite,pyat,impactx")
    parser.add_argument("--particles", type=int, default=2000)
    parser.add_argument("--reference-steps", type=int, default=400)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = sweep(args.scenario, [int(s) for s in args.steps.split(",")],
                 args.backends.split(","), args.particles, args.reference_steps)
    print(f"{args.scenario}: max |dev|/sigma vs ImpactX, {args.particles} particles, "
          f"converged = ImpactX at {args.reference_steps} steps")
    print(f"{'backend':9s} {'steps':>5s} {'same steps':>11s} {'converged':>11s}  model")
    for row in rows:
        print(f"{row['backend']:9s} {row['steps']:5d} {row['vs_impactx_same_steps']:11.3e} "
              f"{row['vs_impactx_converged']:11.3e}  {row['model']}")


if __name__ == "__main__":
    main()
