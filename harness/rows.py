"""The columns of result rows, with units: the single description reports and users read.

Rows are flat JSON objects (``results.jsonl``). Columns absent from a row (e.g. timing of an
``unsupported`` case) mean "not measured", never zero.
"""

from __future__ import annotations

import errno
import re

from harness.model.vocabulary import Cause

#: Columns of every row.
COMMON: dict[str, str] = {
    "kind": "track | gradient",
    "case_id": "kind/scenario/backend/particles/device/dtype[/tTHREADS][/fast][/VARIANT]",
    "scenario": "scenario name",
    "backend": "backend id (or module:Class)",
    "particles": "number of macro-particles",
    "device": "cpu | cuda",
    "dtype": "float64 | float32",
    "math": "ieee (the code as built) | fast (its compiler's fast-math flags, where the code "
            "offers them at run time: the in-house compiled path and compiled Cheetah through "
            "inductor's cpp.enable_unsafe_math_opt_flag and ffp-contract=fast); kept apart "
            "from ieee in every comparison, judged against the ieee reference with the "
            "dtype's tolerances",
    "repeat": "timed repetitions after one warm-up",
    "threads_requested": "threads asked for (empty: all the process was given)",
    "threads": "threads the backend used",
    "role": "reference (the case others compare with) | case",
    "reference": "what the case is compared with: impactx | inhouse | analytic | none",
    "reference_note": "why that reference (e.g. ImpactX not installed)",
    "scenario_hash": "content hash of the scenario file (12 hex digits of its SHA-256)",
    "status": "ok | unsupported | failed | timeout | oom (harness.model.vocabulary.Status)",
    "cause": "why a case is not ok: exception | out-of-memory | memory-limit | kernel-oom | "
             "preflight | timeout | signal | crash | exit | harness "
             "(harness.model.vocabulary.Cause) | disk-full | lost-worker (harness.rows); empty "
             "when ok or unsupported",
    "reason": "why the status is not ok (the error's last line, the limit passed, ...)",
    "traceback": "the last frames of the exception of a failed case (text)",
    "model": "model run: tiers (linear, paraxial+exact, ...)[|sc:3d] or stand-in:<what>",
    "backend_version": "version of the backend's package",
    "versions": "versions of the backend and what it runs on (dict)",
    "started": "UTC start time, ISO 8601",
    "finished": "UTC end time, ISO 8601",
    "host": "name of the machine the case ran on",
    "worker": "who ran it: serial (the run's own process) or the Dask worker's name",
    "cores": "CPU ids the case's process could run on (comma-separated; its affinity)",
    "wall_s": "wall time of the whole child process [s] (start-up included), seen by the "
              "parent",
    "child_wall_s": "the child's own time from its start to its result [s]",
    "peak_rss_bytes": "high-water mark of the child's resident memory [bytes]",
    "parent_peak_rss_bytes": "largest resident memory of the child and its processes seen "
                             "by the parent's polls [bytes]",
    "import_s": "interpreter start-up and imports of the child, from the moment the parent "
                "started it [s] (not in throughput)",
    "case_rows": "number of rows the case wrote together (a torn write leaves fewer)",
}

#: Cause of a case that failed because the file system was full (ENOSPC) or the user's quota
#: spent (EDQUOT), wherever it happened: the case's own writes, its result file, the
#: harness's files for it. Status ``failed``, reason ``disk full: ...``.
DISK_FULL = Cause.DISK_FULL.value
#: Cause of a case whose cluster worker died (twice) while running it.
LOST_WORKER = Cause.LOST_WORKER.value
#: Causes outside the case: the same case may well succeed when run again, so ``--resume``
#: runs such a case again (a full disk, a signal sent from outside the harness, a lost
#: worker); every other recorded case is kept.
OUTSIDE_CAUSES: frozenset[str] = frozenset({DISK_FULL, LOST_WORKER, Cause.SIGNAL.value})
#: Error numbers of a full disk (``errno.h``; EDQUOT where the platform defines it).
DISK_FULL_ERRNOS: frozenset[int] = frozenset(
    {errno.ENOSPC, *([errno.EDQUOT] if hasattr(errno, "EDQUOT") else [])})
#: Exit status of a case process that could not write its result for a full disk.
DISK_FULL_EXIT = 75
#: What a full disk says in a process's error output (``strerror`` of the error numbers).
_DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded", "[Errno 28]",
                    "[Errno 122]")


def disk_full_error(error: BaseException | None) -> OSError | None:
    """The full-disk ``OSError`` behind an exception (itself or what it was raised from),
    or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return error
        error = error.__cause__ or error.__context__
    return None


def disk_full_reason(error: OSError) -> str:
    """``disk full: No space left on device (writing /run/results.jsonl)``."""
    where = f" (writing {error.filename})" if error.filename else ""
    return f"disk full: {error.strerror or error}{where}"


def says_disk_full(text: str) -> bool:
    """Whether a process's error output reports a full disk."""
    return any(words in text for words in _DISK_FULL_WORDS)


#: Columns of ``track`` rows.
TRACK: dict[str, str] = {
    "time_min_s": "fastest timed track [s]",
    "time_median_s": "median timed track [s]",
    "time_max_s": "slowest timed track [s]",
    "time_spread": "(max - min) / median of the timed tracks",
    "times_s": "every timed track [s] (list)",
    "process_times_s": "CPU time of the process (all its threads) in every timed track [s] "
                       "(time.process_time; the timer of NAPAC2025 TUP101's figures)",
    "process_time_min_s": "least process CPU time of the timed tracks [s]",
    "process_time_median_s": "median process CPU time of the timed tracks [s]",
    "throughput_particles_per_s": "particles through the whole lattice / median time [1/s] "
                                  "(the primary throughput)",
    "throughput_particle_elements_per_s": "particles × elements of the lattice as written "
                                          "(not as fused) / median time [1/s]",
    "throughput_particle_m_per_s": "particles × lattice length / median time [m/s]",
    "prepare_s": "lattice translation and set-up [s] (not in throughput)",
    "warmup_s": "the untimed first track [s] (compilation, caches)",
    "compiled": "whether the timed tracks ran torch.compile'd code (backends that compile)",
    "compile_s": "time spent compiling, inside warmup_s [s]",
    "compile_error": "why compilation fell back to the eager path (empty if it did not)",
    "load_1min_start": "one-minute load average when the timed repeats began",
    "load_1min_end": "one-minute load average when they ended",
    "cores_available": "CPUs the child could run on (its affinity mask)",
    "busy_cores_start": "cores of the child's affinity mask other processes kept busy when "
                        "a case asking for all threads started (its threads are the rest); "
                        "empty when the thread count was given",
    "timing_warning": "why the timing may not be the code's speed (repeats spread > 50 %, "
                      "load above the available cores); empty when clean",
    "n_elements": "elements in the lattice",
    "length_m": "lattice length [m]",
    "cuda_max_allocated_bytes": "torch.cuda.max_memory_allocated of the child [bytes]",
    "support_note": "what the backend says about how it runs the case (empty: nothing)",
    "lost": "particles lost at apertures (the backends' all-NaN rows)",
    "blown_up": "particles that blew up numerically: non-finite coordinates other than an "
                "aperture loss, or |coordinate| > 1e8 (harness.model.observables.fates)",
    "survival": "fraction of the particles that survived (neither lost nor blown up)",
    "lost_reference": "particles the reference lost at apertures",
    "blown_up_reference": "particles that blew up in the reference",
    "lost_mismatch": "particles that survived in one code only (case vs reference)",
    "compared_particles": "particles that survived in both codes (the deviations' sample)",
    "reference_model": "model signature the case is judged against (re-judging uses it)",
    "space_charge": "whether the scenario has space charge (chooses the tolerances)",
    "obs_<name>": "final observable <name> (SI units: m, rad, m·rad, ...)",
    "ref_obs_<name>": "the analytic value of observable <name>",
    "obs_err_<name>": "relative error of observable <name> vs the reference",
    "dev_max_<coordinate>": "max over particles of |Δ|/σ_ref for x, px, y, py, t, pt",
    "dev_rms_<coordinate>": "rms over particles of |Δ|/σ_ref",
    "dev_max": "largest dev_max_<coordinate>",
    "dev_rms": "largest dev_rms_<coordinate>",
    "verdict": "agrees | differs | model-mismatch | no-reference | reference | blow-up "
               "(harness.model.vocabulary.Verdict)",
    "verdict_detail": "the metric that decided a differs / the models of a mismatch",
    # envelope cases (tracking: envelope; harness.track_case.envelope_case)
    "tracking": "envelope for an envelope case (absent: particles)",
    "final_covariance": "final 6x6 covariance of (x, px, y, py, t, pt) [m^2, m, 1] (list of "
                        "rows; envelope cases)",
    "cov_max_rel_dev": "max over the 36 entries of |Σ - Σ_ref| / max |Σ_ref| (envelope)",
    "particles_model": "model of the particle-mode track of the same scenario beside an "
                       "envelope case",
    "particles_cov_rel_dev": "max |Σ_particles - Σ_envelope| / max |Σ_envelope|: the "
                             "particle-mode final covariance (the case's particle count) "
                             "against the envelope's",
    "particles_obs_<name>": "final observable <name> of the particle-mode track beside an "
                            "envelope case",
    "particles_reason": "why no particle-mode result is beside an envelope case",
}

#: Columns of ``gradient`` rows (one row per case, parameter and method).
GRADIENT: dict[str, str] = {
    "parameter": "parameter name (qf.Kn1, beam.twiss.beta_x, ...)",
    "objective": "objective observable at the lattice end (sigma_x, ...)",
    "method": "reverse | forward | fd | reference",
    "fd_step": "relative finite-difference step (method fd)",
    "value": "d objective / d parameter (SI units of objective per parameter)",
    "reference_value": "the reference gradient (forward-mode in-house fp64 by default)",
    "reference_method": "what the reference gradient is",
    "rel_error": "|value - reference_value| / |reference_value|",
    "best_fd_step": "FD step with the smallest rel_error (method fd rows)",
    "n_params": "number of parameters differentiated together",
    "time_forward_s": "one forward evaluation of the objective [s]",
    "time_gradient_s": "one gradient of all parameters [s]",
    "time_fd_s": "the FD gradient of all parameters, 2P+1 forwards [s]",
    "gradient_over_forward": "time_gradient_s / time_forward_s",
    "fd_over_gradient": "time_fd_s / time_gradient_s",
    "backward_peak_bytes": "peak memory of the backward pass [bytes]",
    # added by harness.gradient_case (see its module text and harness.gradients)
    "parameter_value": "the parameter's value in the scenario (scenario file units)",
    "objective_value": "the objective at the scenario's values (this backend, FD path)",
    "scaled_error": "|value - reference_value| * |parameter_value| / |objective_value| "
                    "(error of d ln F / d ln p; meaningful where the derivative is ~0)",
    "rel_error_vs_best_fd": "|value - best-step FD| / |best-step FD| (reverse, forward rows)",
    "scaled_error_vs_best_fd": "scaled_error against the best-step FD value",
    "fd_h": "absolute finite-difference step: fd_step * |parameter_value| (fd_step if 0)",
    "time_fd_evaluation_s": "one FD evaluation: prepare + track + objective [s] (median)",
    "fd_evaluations": "objective evaluations the FD sweep made (every step)",
    "time_gradient_warmup_s": "the untimed first gradient of the method [s] (compilation)",
    "forward_mode": "how forward mode ran: jacfwd (vmapped) | jvp (one per parameter)",
    "backward_memory_method": "cuda_max_allocated | torch_profiler (CPU allocations) | "
                              "rss_sampled (CPU resident-memory rise, 1 ms samples, coarse)",
    "variant": "label of a case variant (P-scaling: P<number of parameters>; k<kicks>, "
               "ckpt: space-charge kicks per element, per-kick checkpointing)",
    "kicks_per_element": "space-charge kicks per element with a length (empty: no space "
                         "charge)",
    "checkpoint": "reverse-mode checkpointing of the in-house space-charge kicks: none | kick "
                  "(empty: no space charge)",
    "model_matches_scenario": "whether the backend runs the scenario's model (not a "
                              "stand-in): only then is rel_error vs the reference a "
                              "gradient error rather than a model difference",
    "saved_tensor_bytes": "storage autograd saves for the backward, distinct [bytes]",
    "cuda_max_allocated_bytes": "torch.cuda.max_memory_allocated of the child [bytes]",
}


#: Columns of each row kind (besides :data:`COMMON`).
BY_KIND: dict[str, dict[str, str]] = {"track": TRACK, "gradient": GRADIENT}


def _pattern(name: str) -> re.Pattern[str]:
    """A column name with ``<placeholder>`` parts as a regular expression."""
    parts = re.split(r"<[a-z]+>", name)
    return re.compile("^" + "[A-Za-z0-9_]+".join(re.escape(p) for p in parts) + "$")


def undocumented(row: dict) -> set[str]:
    """The keys of a row that :data:`COMMON` and its kind's columns do not describe."""
    columns = COMMON | BY_KIND.get(str(row.get("kind")), {})
    patterns = [_pattern(name) for name in columns if "<" in name]
    return {key for key in row
            if key not in columns and not any(p.match(key) for p in patterns)}
