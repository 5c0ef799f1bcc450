"""Track a captured example's scenario with one trackbench backend (child process).

``python -m benchmarks.impactx_examples.track OUT BACKEND`` loads ``OUT/scenario.yaml``
and the example's initial particles ``OUT/initial.npz``, tracks them with ``BACKEND`` in
float64 on the CPU (an envelope scenario: the example's initial covariance through the
backend's envelope mode) and writes ``OUT/<BACKEND>.json``: the final moments
(:func:`.moments.moments`), or why the backend does not run the scenario, and whether it
runs a stand-in model; a particle run also writes its final particles,
``OUT/<BACKEND>_final.npz`` (for the example's own analysis, :mod:`.analysis`).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.impactx_examples.moments import covariance_moments, moments


def track(out: Path, backend_name: str) -> dict[str, Any]:
    """The record of one backend's run of the scenario in ``out``."""
    from backends.registry import get_backend
    from harness.model.load import load_scenario

    scenario = load_scenario(out / "scenario.yaml")
    backend = get_backend(backend_name)
    if getattr(scenario, "tracking", "particles") == "envelope":
        return _track_envelope(scenario, backend, np.load(out / "initial.npz")["covariance"])
    initial = np.load(out / "initial.npz")["particles"]
    support = backend.supports(scenario, "cpu", "float64")
    if not support:
        return {"status": "unsupported", "reason": getattr(support, "reason", "")}
    record: dict[str, Any] = {"status": "ok", "model": support.model}
    if support.model.startswith("stand-in"):
        record["stand_in"] = f"{support.model} {getattr(support, 'note', '')}".strip()
    start = time.perf_counter()
    prepared = backend.prepare_single_use(scenario, "cpu", "float64")
    try:
        final = prepared.track(initial)
    finally:
        prepared.close()
    record["seconds"] = time.perf_counter() - start
    record["final"] = moments(final)
    np.savez(out / f"{backend_name}_final.npz", particles=np.asarray(final, dtype=np.float64))
    return record


def _track_envelope(scenario: Any, backend: Any, sigma: np.ndarray) -> dict[str, Any]:
    """The record of an envelope scenario: the example's initial covariance ``sigma``
    through the backend's envelope mode; the final covariance's moments."""
    plan = backend.plan(scenario, "cpu", "float64")
    if not plan:
        return {"status": "unsupported", "reason": getattr(plan, "reason", "")}
    record: dict[str, Any] = {"status": "ok", "model": plan.model}
    start = time.perf_counter()
    prepared = backend.prepare_planned(plan)
    try:
        final = prepared.extract(prepared.run(sigma))
    finally:
        prepared.close()
    record["seconds"] = time.perf_counter() - start
    record["final"] = covariance_moments(final)
    return record


def main(out: str, backend_name: str) -> int:
    """Write ``out/<backend>.json`` (a failure is recorded with its last line)."""
    folder = Path(out)
    try:
        record = track(folder, backend_name)
    except Exception as error:  # noqa: BLE001 - recorded for the table
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        record = {"status": "failed", "reason": last[:300]}
    (folder / f"{backend_name}.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
