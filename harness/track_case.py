"""The ``track`` case kind, run inside the child process (:mod:`harness.child`).

The child loads the scenario and backend with the parent's plan of the case (support and
translation decided once, :func:`harness.case_support.load`), prepares from it, tracks
once as a warm-up (not timed: it also pays for compilation and caches), then tracks
``repeat`` times from the identical initial particles, synchronising the device before
each clock reading. Recorded apart
from the tracking time, never mixed into throughput: the start-up (interpreter and
imports, from the moment the parent started the process), the preparation and the
warm-up, in seconds.

The case's math setting (``ieee`` or ``fast``, :attr:`harness.cases.Case.math`) is put on
the backend's plan before preparing (:meth:`backends.base.Backend.with_math`): a backend
without it, or a scenario its fast path does not reach, makes the row ``unsupported`` with
the reason; a ``fast`` case is judged against the (IEEE) reference with the dtype's
tolerances like any other.

Final particles are sorted by fate (:func:`harness.model.observables.fates`): ``lost`` counts
aperture losses, ``blown_up`` numerical blow-ups; observables are those of the survivors
(``survival`` their fraction), and a blow-up gives the verdict ``blow-up``.

An envelope scenario (``tracking: envelope``) runs :func:`envelope_case`: the beam's 6x6
covariance (:func:`harness.model.particles.beam_covariance`) through the backend's
:class:`backends.base.PreparedEnvelope`, timed as above; the observables are those of the
final covariance (mean 0); agreement is the covariance element by element against the
reference's (``cov_max_rel_dev``); beside it, the particle-mode result of the same scenario
with the same backend (the case's particle count, untimed): ``particles_obs_*`` and
``particles_cov_rel_dev``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness import timing_quality
from harness.case_spec import CaseSpec
from harness.case_support import Clock, initial_particles, load, peak_rss_bytes


def track_case(spec: CaseSpec | dict[str, Any], clock: Clock | None = None) -> list[dict]:
    """Run one tracking case; its row (status ``ok`` or ``unsupported``) in a list."""
    from harness.model import observables
    from harness.model.vocabulary import Status

    spec = CaseSpec.coerce(spec)
    clock = clock or Clock.since(None)
    busy = timing_quality.default_threads()  # before a backend is imported
    loaded = load(spec)
    scenario = loaded.scenario
    row: dict[str, Any] = {"versions": loaded.versions,
                           "backend_version": loaded.backend_version,
                           "busy_cores_start": busy, "math": spec.math}
    import_s = clock.elapsed()
    if not loaded.unsupported:   # the case's math setting on the plan, or why not
        loaded.support = loaded.backend.with_math(loaded.support, spec.math)
    if loaded.unsupported:
        return [row | {"status": Status.UNSUPPORTED.value, "reason": loaded.support.reason}]
    if scenario.tracking == "envelope":
        return [envelope_case(spec, loaded, row | {"import_s": import_s})]
    initial = initial_particles(spec, scenario)
    n_elements = len(scenario.elements)

    prepared, final, prepare_s, warmup_s = _prepare_and_warm_up(loaded, initial)
    final, times, cpu_times, load_probe = _timed_tracks(
        prepared, spec.repeat, warmup_s, lambda: prepared.inject(initial), final)
    row |= {"model": prepared.model, "threads": prepared.threads,
            "support_note": getattr(loaded.support, "note", "")}
    if prepared.compiled is not None:
        row |= {"compiled": bool(prepared.compiled), "compile_s": float(prepared.compile_s),
                "compile_error": prepared.compile_error}
    prepared.close()

    median = float(np.median(times))
    n = len(initial)
    row |= {"status": Status.OK.value, "reason": ""} | timing_fields(times, cpu_times) | {
        "throughput_particles_per_s": n / median if median else None,
        "throughput_particle_elements_per_s": n * n_elements / median if median else None,
        "throughput_particle_m_per_s": n * scenario.length / median if median else None,
        "import_s": import_s, "prepare_s": prepare_s, "warmup_s": warmup_s,
        "n_elements": n_elements, "length_m": scenario.length,
        "peak_rss_bytes": peak_rss_bytes(),
    } | timing_quality.quality_fields(times, load_probe)
    if spec.device == "cuda":
        import torch

        row["cuda_max_allocated_bytes"] = int(torch.cuda.max_memory_allocated())

    fate = observables.fates(final)
    values = observables.compute_survivors(final, list(scenario.observables),
                                           scenario.reference_particle)
    row |= {f"obs_{k}": v for k, v in values.items()}
    row |= {"lost": int(fate.lost.sum()), "blown_up": int(fate.blown_up.sum()),
            "survival": float(fate.alive.mean()) if n else None}
    row |= compare_case(spec, scenario, initial, final, values, row["model"],
                        row["blown_up"])
    if spec.write_particles not in (None, "none"):  # after the timed tracks
        from harness.io.particles_out import write_final, write_initial

        write_initial(spec.write_particles, Path(spec.run_directory or "."), scenario,
                      spec.particles, initial)
        write_final(spec.write_particles, spec.run_directory, spec.case_id, scenario, final)
    if spec.role == "reference" and spec.final_path:
        np.save(spec.final_path, final)
    return [row]


def _timed_tracks(prepared: Any, repeat: int, warmup_s: float, start: Callable[[], Any],
                  final: Any) -> tuple[Any, list[float], list[float], Any]:
    """The ``repeat`` timed tracks of a case: each from ``start()`` (the injected particles,
    or the initial covariance; not timed), the code's ``run`` between two synchronisations.
    ``(final of the last track, or ``final`` of the warm-up when there is none, wall times
    [s] (the warm-up's alone when ``repeat`` is 0), process times [s], the load probe)``."""
    times = [warmup_s] if repeat == 0 else []
    cpu_times: list[float] = []  # process time, the timer of the NAPAC2025 figures
    load_probe = timing_quality.LoadProbe()
    for _ in range(repeat):
        handle = start()
        prepared.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        handle = prepared.run(handle)
        prepared.synchronize()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        final = prepared.extract(handle)
    return final, times, cpu_times, load_probe


def compare_case(spec: CaseSpec, scenario, initial: np.ndarray, final: np.ndarray,
                 values: dict[str, float], model: str, blown_up: int = 0) -> dict[str, Any]:
    """Agreement columns and the verdict of a case against its reference."""
    from harness import agreement
    from harness.model import observables
    from harness.model.scenario import model_signature
    from harness.model.vocabulary import Verdict

    expected_model = model_signature(scenario)
    space_charge = scenario.space_charge is not None
    analytic = spec.reference == "analytic" and bool(scenario.analytic)
    n = len(final)
    common: dict[str, Any] = {"space_charge": space_charge}
    if spec.role == "reference" and not analytic:
        if blown_up:
            verdict, detail = agreement.verdict(model, model, {"blown_up": blown_up},
                                                agreement.tolerances(spec.dtype, False, False))
            return common | {"verdict": verdict, "verdict_detail": detail}
        return common | {"verdict": Verdict.IS_REFERENCE.value, "verdict_detail": ""}
    reference_file = spec.reference_final_path
    if analytic:
        initial_values = observables.compute_for(initial, list(scenario.analytic),
                                                 scenario.reference_particle)
        expected = {}
        for name, target in scenario.analytic.items():
            expected[name] = (target.value if target.value is not None
                              else target.times_initial * float(initial_values[name]))
        out: dict[str, Any] = common | {f"ref_obs_{k}": v for k, v in expected.items()}
        out |= agreement.observable_errors(values, expected)
        if reference_file and Path(reference_file).exists():
            # the reference code's particles: a cross-check recorded beside the verdict
            out |= agreement.particle_deviation(final, np.load(reference_file))
        out["reference_model"] = expected_model
        tolerance = agreement.tolerances(spec.dtype, space_charge, analytic=True)
        verdict, detail = agreement.verdict(model, expected_model,
                                            out | {"blown_up": blown_up}, tolerance, n)
        return out | {"verdict": verdict, "verdict_detail": detail}
    if not reference_file or not Path(reference_file).exists():
        if blown_up:
            verdict, detail = agreement.verdict(model, model, {"blown_up": blown_up},
                                                agreement.tolerances(spec.dtype, False, False))
            return common | {"verdict": verdict, "verdict_detail": detail}
        return common | {"verdict": Verdict.NO_REFERENCE.value,
                         "verdict_detail": spec.reference_missing or "no reference result"}
    reference_final = np.load(reference_file)
    out = common | agreement.particle_deviation(final, reference_final)
    ref_values = observables.compute_survivors(reference_final, list(values),
                                               scenario.reference_particle)
    out |= agreement.observable_errors(values, ref_values)
    reference_model = spec.reference_model or expected_model
    out["reference_model"] = reference_model
    tolerance = agreement.tolerances(spec.dtype, space_charge, analytic=False)
    verdict, detail = agreement.verdict(model, reference_model, out | {"blown_up": blown_up},
                                        tolerance, n)
    return out | {"verdict": verdict, "verdict_detail": detail}


def _prepare_and_warm_up(loaded: Any, start: Any) -> tuple[Any, Any, float, float]:
    """Prepare the planned backend and run one untimed track of ``start`` (particles or a
    covariance matrix): the prepared object, the warm-up's result, and the prepare and
    warm-up wall times [s]."""
    t0 = time.perf_counter()
    prepared = loaded.backend.prepare_planned(loaded.support)
    prepare_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    final = prepared.track(start)
    warmup_s = time.perf_counter() - t0
    return prepared, final, prepare_s, warmup_s


def timing_fields(times: list[float], cpu_times: list[float]) -> dict[str, Any]:
    """A row's timing columns from the timed tracks' wall times and process times [s]:
    least, median, most, relative spread and the lists themselves."""
    median = float(np.median(times))
    return {
        "time_min_s": float(np.min(times)), "time_median_s": median,
        "time_max_s": float(np.max(times)),
        "time_spread": float((np.max(times) - np.min(times)) / median) if median else None,
        "times_s": times, "process_times_s": cpu_times,
        "process_time_min_s": min(cpu_times, default=None),
        "process_time_median_s": float(np.median(cpu_times)) if cpu_times else None,
    }


def envelope_case(spec: CaseSpec, loaded: Any, row: dict[str, Any]) -> dict[str, Any]:
    """The row of an envelope case (see the module docstring)."""
    from harness.model import observables
    from harness.model.particles import beam_covariance
    from harness.model.vocabulary import Status

    scenario = loaded.scenario
    sigma0 = beam_covariance(scenario.beam)
    prepared, final, prepare_s, warmup_s = _prepare_and_warm_up(loaded, sigma0)
    final, times, cpu_times, load_probe = _timed_tracks(
        prepared, spec.repeat, warmup_s, lambda: sigma0, final)
    prepared.close()
    reference = scenario.reference_particle
    names = [n for n in scenario.observables if n != "survival"]
    values = {k: float(v) for k, v in observables.observables_from_moments(
        np.zeros(6), final, names, reference.beta_gamma, reference.beta).items()}
    row |= ({"model": prepared.model, "threads": prepared.threads,
             "support_note": getattr(loaded.support, "note", ""),
             "status": Status.OK.value, "reason": "", "tracking": "envelope"}
            | timing_fields(times, cpu_times)
            | {"prepare_s": prepare_s, "warmup_s": warmup_s,
               "n_elements": len(scenario.elements), "length_m": scenario.length,
               "peak_rss_bytes": peak_rss_bytes(), "final_covariance": final.tolist()}
            | timing_quality.quality_fields(times, load_probe))
    row |= {f"obs_{k}": v for k, v in values.items()}
    row |= envelope_agreement(spec, scenario, final, values, prepared.model)
    row |= particles_beside(spec, loaded, final)
    if spec.role == "reference" and spec.final_path:
        np.save(spec.final_path, final)
    return row


def envelope_agreement(spec: CaseSpec, scenario, final: np.ndarray, values: dict[str, float],
                       model: str) -> dict[str, Any]:
    """Agreement of an envelope case's final covariance with the reference's: the largest
    |difference| of the 36 entries over the largest |entry| of the reference
    (``cov_max_rel_dev``), the observables' errors, and the verdict (the tolerance of
    ``obs_max_rel_err`` in the dtype's precision)."""
    from harness import agreement
    from harness.model import observables
    from harness.model.scenario import model_signature
    from harness.model.vocabulary import Verdict

    expected_model = model_signature(scenario)
    common: dict[str, Any] = {"space_charge": scenario.envelope_space_charge is not None}
    if spec.role == "reference":
        return common | {"verdict": Verdict.IS_REFERENCE.value, "verdict_detail": ""}
    reference_file = spec.reference_final_path
    if not reference_file or not Path(reference_file).exists():
        return common | {"verdict": Verdict.NO_REFERENCE.value,
                         "verdict_detail": spec.reference_missing or "no reference result"}
    expected = np.load(reference_file)
    scale = float(np.max(np.abs(expected))) or 1.0
    deviation = float(np.max(np.abs(final - expected))) / scale
    reference = scenario.reference_particle
    ref_values = {k: float(v) for k, v in observables.observables_from_moments(
        np.zeros(6), expected, list(values), reference.beta_gamma, reference.beta).items()}
    out = common | {"cov_max_rel_dev": deviation, "reference_model": spec.reference_model
                    or expected_model}
    out |= agreement.observable_errors(values, ref_values)
    tolerance = agreement.tolerances(spec.dtype, False, analytic=False)
    verdict, detail = agreement.verdict(model, out["reference_model"],
                                        out | {"obs_err_covariance": deviation}, tolerance, 0)
    return out | {"verdict": verdict, "verdict_detail": detail}


def particles_beside(spec: CaseSpec, loaded: Any, envelope: np.ndarray) -> dict[str, Any]:
    """The particle-mode result of the same scenario with the same backend (the case's
    particle count, drawn as a particle case draws them; untimed): its observables
    (``particles_obs_*``) and how far its final covariance is from the envelope's
    (``particles_cov_rel_dev``, relative to the envelope's largest entry), or
    ``particles_reason`` when particle mode cannot run it (envelope space charge has no
    particle-mode counterpart)."""
    from harness.model import observables

    scenario = loaded.scenario
    if scenario.envelope_space_charge is not None:
        return {"particles_reason": "envelope space charge has no particle-mode counterpart"}
    particle_scenario = scenario.model_copy(update={"tracking": "particles"})
    plan = loaded.backend.plan(particle_scenario, spec.device, spec.dtype)
    if not plan:
        return {"particles_reason": plan.reason}
    initial = initial_particles(spec, scenario)
    # tracked once: no compilation (prepare_single_use)
    prepared = loaded.backend.prepare_single_use(particle_scenario, spec.device, spec.dtype)
    try:
        final = prepared.track(initial)
    finally:
        prepared.close()
    alive = observables.survivors(final)
    _, cov = observables.moments(alive)
    scale = float(np.max(np.abs(envelope))) or 1.0
    values = observables.compute_survivors(final, list(scenario.observables),
                                           scenario.reference_particle)
    return {"particles_model": plan.model,
            "particles_cov_rel_dev": float(np.max(np.abs(cov - envelope))) / scale} | {
        f"particles_obs_{k}": v for k, v in values.items()}
