"""One case, run in a fresh process: ``python -m harness.child SPEC.json OUT.json``.

The child loads the scenario and backend, prepares, tracks once as a warm-up (not timed:
it also pays for compilation and caches), then tracks ``repeat`` times from the identical
initial particles, synchronising the device before each clock reading. It writes one
result row (or, for a gradient case, several) as JSON to ``OUT.json``; a child that dies
writes nothing and the parent records why.

Recorded separately from the tracking time, never mixed into throughput: the start-up
(interpreter and imports), the preparation and the warm-up, in seconds.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from harness import timing_quality

START = time.perf_counter()


def last_line(error: BaseException) -> str:
    """``Type: last line of the message`` of an exception."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}".strip()


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an exception means memory ran out (host or CUDA)."""
    if isinstance(error, MemoryError):
        return True
    text = f"{type(error).__name__} {error}".lower()
    return any(s in text for s in ("out of memory", "outofmemory", "can't allocate memory",
                                   "cannot allocate memory", "bad_alloc"))


def peak_rss_bytes() -> int:
    """High-water mark of this process's resident memory [bytes] (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def finite_rows(particles: np.ndarray) -> np.ndarray:
    """The particles that survived (rows without NaN)."""
    return particles[np.isfinite(particles).all(axis=1)]


def track_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one tracking case; returns its row (status ``ok`` or ``unsupported``)."""
    from backends.base import Unsupported
    from backends.registry import load_backend_class
    from harness import observables
    from harness.scenario import load_scenario

    threads = spec.get("threads")
    timing_quality.default_threads()
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    scenario = load_scenario(spec["scenario_path"])
    cls = load_backend_class(spec["backend"])
    backend = cls()
    availability = cls.availability()
    row: dict[str, Any] = {"versions": availability.versions or cls.dependency_versions(),
                           "backend_version": availability.version}
    import_s = time.perf_counter() - START
    support = backend.supports(scenario, spec["device"], spec["dtype"])
    if isinstance(support, Unsupported):
        return row | {"status": "unsupported", "reason": support.reason}
    initial = np.load(spec["initial_path"])
    n_elements = len(scenario.elements)

    t0 = time.perf_counter()
    prepared = backend.prepare(scenario, spec["device"], spec["dtype"])
    prepare_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    final = prepared.track(initial)
    warmup_s = time.perf_counter() - t0
    times = [warmup_s] if int(spec["repeat"]) == 0 else []
    load_probe = timing_quality.LoadProbe()
    for _ in range(int(spec["repeat"])):
        handle = prepared.inject(initial)
        prepared.synchronize()
        t0 = time.perf_counter()
        handle = prepared.run(handle)
        prepared.synchronize()
        times.append(time.perf_counter() - t0)
        final = prepared.extract(handle)
    row |= {"model": prepared.model, "threads": prepared.threads,
            "support_note": getattr(support, "note", "")}
    if getattr(prepared, "compiled", None) is not None:
        row |= {"compiled": bool(prepared.compiled), "compile_s": float(prepared.compile_s),
                "compile_error": prepared.compile_error}
    prepared.close()

    median = float(np.median(times))
    n = len(initial)
    row |= {
        "status": "ok", "reason": "",
        "time_min_s": float(np.min(times)), "time_median_s": median,
        "time_max_s": float(np.max(times)),
        "time_spread": float((np.max(times) - np.min(times)) / median) if median else None,
        "times_s": times,
        "throughput_particles_per_s": n / median if median else None,
        "throughput_particle_elements_per_s": n * n_elements / median if median else None,
        "throughput_particle_m_per_s": n * scenario.length / median if median else None,
        "import_s": import_s, "prepare_s": prepare_s, "warmup_s": warmup_s,
        "n_elements": n_elements, "length_m": scenario.length,
        "peak_rss_bytes": peak_rss_bytes(),
    } | timing_quality.quality_fields(times, load_probe)
    if spec["device"] == "cuda":
        import torch

        row["cuda_max_allocated_bytes"] = int(torch.cuda.max_memory_allocated())

    reference_particle = scenario.reference_particle
    alive = finite_rows(final)
    values = observables.compute_for(alive, scenario.observables, reference_particle)
    values = {k: float(v) for k, v in values.items()}
    row |= {f"obs_{k}": v for k, v in values.items()}
    row["lost"] = int(n - len(alive))
    row |= compare(spec, scenario, initial, final, values, row["model"])
    if spec["role"] == "reference" and spec.get("final_path"):
        np.save(spec["final_path"], final)
    return row


def compare(spec: dict[str, Any], scenario, initial: np.ndarray, final: np.ndarray,
            values: dict[str, float], model: str) -> dict[str, Any]:
    """Agreement columns and the verdict of a case against its reference."""
    from backends.base import model_signature
    from harness import agreement, observables
    from harness.vocabulary import Verdict

    expected_model = model_signature(scenario)
    space_charge = scenario.space_charge is not None
    analytic = spec["reference"] == "analytic" and scenario.analytic
    if spec["role"] == "reference" and not analytic:
        return {"verdict": Verdict.IS_REFERENCE.value, "verdict_detail": ""}
    reference_file = spec.get("reference_final_path")
    if analytic:
        initial_values = observables.compute_for(initial, list(scenario.analytic),
                                                 scenario.reference_particle)
        expected = {}
        for name, target in scenario.analytic.items():
            expected[name] = (target.value if target.value is not None
                              else target.times_initial * float(initial_values[name]))
        out: dict[str, Any] = {f"ref_obs_{k}": v for k, v in expected.items()}
        out |= agreement.observable_errors(values, expected)
        if reference_file and Path(reference_file).exists():
            # the reference code's particles: a cross-check recorded beside the verdict
            out |= agreement.particle_deviation(final, np.load(reference_file))
        tolerance = agreement.tolerances(spec["dtype"], space_charge, analytic=True)
        verdict, detail = agreement.verdict(model, expected_model, out, tolerance)
        return out | {"verdict": verdict, "verdict_detail": detail}
    if not reference_file or not Path(reference_file).exists():
        return {"verdict": Verdict.NO_REFERENCE.value,
                "verdict_detail": spec.get("reference_missing", "no reference result")}
    reference_final = np.load(reference_file)
    out = agreement.particle_deviation(final, reference_final)
    ref_values = observables.compute_for(finite_rows(reference_final), list(values),
                                         scenario.reference_particle)
    out |= agreement.observable_errors(values, {k: float(v) for k, v in ref_values.items()})
    tolerance = agreement.tolerances(spec["dtype"], space_charge, analytic=False)
    verdict, detail = agreement.verdict(model, spec.get("reference_model", expected_model),
                                        out, tolerance)
    return out | {"verdict": verdict, "verdict_detail": detail}


def run_spec(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of one case; errors become ``failed`` or ``oom`` rows."""
    try:
        if spec["kind"] == "gradient":
            from harness.gradient_case import gradient_case

            return gradient_case(spec)
        return [track_case(spec)]
    except BaseException as error:  # noqa: BLE001 - every failure is recorded, none escapes
        status = "oom" if is_out_of_memory(error) else "failed"
        return [{"status": status, "reason": last_line(error),
                 "traceback": traceback.format_exc(limit=8)[-4000:],
                 "peak_rss_bytes": peak_rss_bytes()}]


def main(argv: list[str]) -> int:
    """Read the spec, run the case, write the rows atomically."""
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text())
    rows = run_spec(spec)
    for row in rows:
        row["child_wall_s"] = time.perf_counter() - START
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, default=float))
    os.replace(tmp, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
