"""Run one ImpactX example script as it is, recording what it builds (child process).

``python -m benchmarks.impactx_examples.capture SCRIPT OUT`` runs ``SCRIPT`` (from the
working folder, a copy of its example folder) with ``impactx.ImpactX`` replaced by a
subclass that records the settings the script assigns, the distribution and bunch charge
given to ``add_particles`` and, at the first ``track_particles``, the lattice, the reference
particle and the initial particles. It then either stops (the example cannot be stated as a
scenario: ``OUT/capture.json`` says why) or writes ``OUT/scenario.yaml`` and
``OUT/initial.npz``, lets ImpactX track (the example's own result, ``OUT/final.npz``) and
lets the script go on; a second tracking call stops it (a staged run), unless the first
ran over zero-length drifts and monitors only: then the second is recorded instead. With
``sim.spin`` the particles carry their spins (columns 7 to 9) and ``add_particles``' spin
distribution is recorded; the scenario's particle file is then ``OUT/beam.npz`` (the six
coordinates) and the example's spins are ``OUT/spins.npy``. ``track_envelope`` is recorded
the same way: the distribution and intensity of ``init_envelope``, the example's initial
covariance (``OUT/initial.npz`` ``covariance``) and its final one (``OUT/final.npz``).
``track_reference`` stops the script. The script's files are written in the working folder.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from benchmarks.impactx_examples.moments import covariance_moments, moments
from benchmarks.impactx_examples.translate import Capture, scenario_of

#: The columns of ImpactX's ``to_df`` in trackbench's order x, px, y, py, t, pt.
_COLUMNS = ("position_x", "momentum_x", "position_y", "momentum_y", "position_t",
            "momentum_t")


class Stop(BaseException):
    """Ends the example script early (raised from a recorded call)."""


def _parameter_names(cls: type) -> list[str]:
    """Keyword names of a pybind11 constructor, read from its signature line."""
    text = cls.__init__.__doc__  # type: ignore[misc]
    doc = text.splitlines()[0] if text else ""
    return [n for n in re.findall(r"(\w+): ", doc) if n != "self"]


class Recorder:
    """Everything recorded from one script run; written to ``OUT/capture.json``."""

    def __init__(self, name: str, out: Path) -> None:
        self.name = name
        self.out = out
        self.record: dict[str, Any] = {"name": name, "status": "", "reasons": [],
                                       "notes": [], "track_calls": 0}
        self.distributions: dict[int, tuple[str, dict[str, float]]] = {}
        self.added: list[tuple[float, int, tuple[str, dict[str, float]] | None,
                               tuple[str, dict[str, float]] | None]] = []
        self.envelope: tuple[tuple[str, dict[str, float]] | None, float | None] | None = None
        self.settings: dict[str, Any] = {}
        #: Whether the first tracking call ran over an identity lattice
        #: (:func:`identity_lattice`), so that a second one may be stated instead.
        self.identity_first = False

    def write(self) -> None:
        """Write the record."""
        (self.out / "capture.json").write_text(json.dumps(self.record, indent=1,
                                                          default=str))

    def refuse(self, reasons: list[str]) -> NoReturn:
        """Record the example as not expressible and stop the script."""
        self.record.update(status="not expressible", reasons=reasons)
        self.write()
        raise Stop


def _distribution_wrapper(recorder: Recorder, cls: type):
    names = _parameter_names(cls)

    def make(*args, **kwargs):
        obj = cls(*args, **kwargs)
        params = dict(zip(names, args, strict=False)) | kwargs
        recorder.distributions[id(obj)] = (cls.__name__, {
            k: float(v) for k, v in params.items() if isinstance(v, int | float)})
        return obj

    return make


def _particles(sim, spin: bool = False) -> np.ndarray:
    """The beam of ``sim`` as ``(N, 6)`` ImpactX coordinates, ``(N, 9)`` with the spins
    (empty when there is none)."""
    columns = _COLUMNS + (("spin_x", "spin_y", "spin_z") if spin else ())
    df = sim.beam.to_df(local=True)
    if df is None or not len(df):
        return np.zeros((0, len(columns)))
    return np.stack([df[c].to_numpy(np.float64) for c in columns], axis=1)


def _spin_on(recorder: Recorder) -> bool:
    """Whether the particles carry spins: ``sim.spin`` (pushed), or a spin distribution
    given to ``add_particles`` (carried unchanged without ``sim.spin``)."""
    return (str(recorder.settings.get("spin", False)).lower() in ("true", "1")
            or any(added[3] is not None for added in recorder.added))


def _state(recorder: Recorder, capture: Capture, **files: str) -> None:
    """Write ``OUT/scenario.yaml`` for ``capture``, or refuse with the reasons (``files``:
    the file names :func:`.translate.scenario_of` states, written in ``OUT``)."""
    try:
        data, reasons = scenario_of(capture, recorder.name, **files)
    except Exception as error:  # noqa: BLE001 - a translation failure is a row, not a crash
        recorder.refuse([f"translation error: {type(error).__name__}: {error}"[:200]])
    recorder.record["notes"].extend(capture.notes)
    if reasons or data is None:
        recorder.refuse(reasons or ["translation error: no scenario and no reason"])
    from harness.io.pals_doc import to_yaml, validated
    from harness.model.errors import ScenarioError

    try:
        validated(data, recorder.out / "scenario.yaml")
    except ScenarioError as error:
        recorder.refuse([f"schema {error.field}: expected {error.expected}"
                         + (f" (got {error.got})" if error.got is not None else "")])
    (recorder.out / "scenario.yaml").write_text(to_yaml(data))


def _reference(sim) -> dict[str, float]:
    ref = sim.beam.ref
    return {"mass_MeV": ref.mass_MeV, "charge_qe": ref.charge_qe,
            "kin_energy_MeV": ref.kin_energy_MeV}


def _reference_state(sim) -> dict[str, float]:
    """``gamma_ref``, ``beta_gamma_ref``, ``beta_ref`` [1] of the reference particle now
    (gamma = -pt), as ImpactX's monitor writes them as attributes (read by the analysis
    run, :mod:`.analysis`)."""
    gamma = -float(sim.beam.ref.pt)
    beta_gamma = max(gamma * gamma - 1.0, 0.0) ** 0.5
    return {"gamma_ref": gamma, "beta_gamma_ref": beta_gamma, "beta_ref": beta_gamma / gamma}


def _first_envelope(recorder: Recorder, sim, base: Any) -> None:
    """At the first ``track_envelope``: state the scenario or refuse; then track."""
    distribution, intensity = recorder.envelope or (None, None)
    if recorder.envelope is None:
        recorder.refuse(["envelope tracking: no init_envelope before track_envelope"])
    capture = Capture(settings=recorder.settings, reference=_reference(sim),
                      lattice=list(sim.lattice), distribution=distribution,
                      bunch_charge_C=0.0, particles=1, tracking="envelope",
                      intensity=intensity)
    recorder.record["lattice"] = [type(e).__name__ for e in capture.lattice]
    recorder.record["settings"] = {k: v for k, v in recorder.settings.items()
                                   if isinstance(v, int | float | str | bool | list)}
    initial = np.array(sim.envelope.envelope.to_numpy(), dtype=np.float64)
    np.savez(recorder.out / "initial.npz", covariance=initial)
    _state(recorder, capture)
    base.track_envelope(sim)
    final = np.array(sim.envelope.envelope.to_numpy(), dtype=np.float64)
    np.savez(recorder.out / "final.npz", covariance=final)
    recorder.record.update(status="tracked", example=covariance_moments(final),
                           initial=covariance_moments(initial))
    recorder.write()


def _invariants_monitor(lattice: list) -> dict[str, float] | None:
    """The ``alpha``, ``beta`` [m], ``tn``, ``cn`` [m^1/2] of the first ``BeamMonitor`` that
    computes the IOTA nonlinear-lens invariants (read by the analysis run,
    :mod:`.analysis`), or None."""
    for element in lattice:
        if type(element).__name__ != "BeamMonitor":
            continue
        try:  # ImpactX raises on reading a parameter the script left unset
            if element.nonlinear_lens_invariants:
                return {k: float(getattr(element, k)) for k in ("alpha", "beta", "tn", "cn")}
        except RuntimeError:
            continue
    return None


def _first_track(recorder: Recorder, sim, base: Any) -> None:
    """At the first ``track_particles``: state the scenario or refuse; then track."""
    spin = _spin_on(recorder)
    initial = _particles(sim, spin)
    weights = sim.beam.to_df(local=True)["weighting"].to_numpy() if len(initial) else []
    charge, count, distribution, spins = (recorder.added[-1] if len(recorder.added) == 1
                                          else (0.0, len(initial), None, None))
    if len(recorder.added) > 1:
        recorder.record["notes"].append("add_particles called more than once")
    capture = Capture(settings=recorder.settings, reference=_reference(sim),
                      lattice=list(sim.lattice), distribution=distribution,
                      bunch_charge_C=charge, particles=max(len(initial), 1), spin=spins,
                      initial=initial)
    if distribution is None and len(recorder.added) != 1:
        capture.bunch_charge_C = float(np.sum(weights)) * 1.602176634e-19 if len(
            initial) else 0.0
    recorder.record["lattice"] = [type(e).__name__ for e in capture.lattice]
    recorder.record["settings"] = {k: v for k, v in recorder.settings.items()
                                   if isinstance(v, int | float | str | bool | list)}
    monitor = _invariants_monitor(capture.lattice)
    if monitor:
        recorder.record["monitor"] = monitor
    np.savez(recorder.out / "initial.npz", particles=initial)
    if not len(initial):
        recorder.refuse(["no particles: the beam is empty when tracking starts"])
    if len(weights) and np.ptp(weights) > 1e-12 * abs(float(np.max(weights))):
        recorder.refuse(["particle weights: unequal macro-particle weights"])
    files: dict[str, str] = {}
    if spin:   # a scenario's particle file has six columns, its spins a file of their own
        np.savez(recorder.out / "beam.npz", particles=initial[:, :6])
        np.save(recorder.out / "spins.npy", initial[:, 6:9])
        files = {"particle_file": "beam.npz", "spin_file": "spins.npy"}
    _state(recorder, capture, **files)
    recorder.record["reference_initial"] = _reference_state(sim)
    base.track_particles(sim)
    recorder.record["reference_final"] = _reference_state(sim)
    final = _particles(sim, spin)
    np.savez(recorder.out / "final.npz", particles=final)
    recorder.record.update(status="tracked", example=moments(final),
                           initial=moments(initial))
    recorder.write()


#: Element types that leave the beam as it is when they have no length (ImpactX drifts) or
#: always (monitors).
_IDENTITY_TYPES = {"BeamMonitor", "Marker"}
_DRIFT_TYPES = {"Drift", "ExactDrift", "ChrDrift"}


def identity_lattice(lattice) -> bool:
    """Whether a lattice leaves every particle where it is: only monitors, markers and
    unshifted drifts of zero length (an example's first ``track_particles`` that writes its
    initial diagnostics before it tracks its real lattice)."""
    for element in lattice:
        d = element.to_dict()
        kind = str(d.get("type", type(element).__name__))
        if kind in _IDENTITY_TYPES:
            continue
        if kind in _DRIFT_TYPES and float(d.get("ds", 0.0)) == 0.0 and not any(
                float(d.get(k, 0.0) or 0.0) for k in ("dx", "dy", "rotation")):
            continue
        return False
    return True


def install(recorder: Recorder) -> None:
    """Replace ``impactx.ImpactX`` and the distribution classes by recording ones."""
    import impactx
    distributions = impactx.distribution

    for name in dir(distributions):
        cls = getattr(distributions, name)
        if isinstance(cls, type) and not name.startswith("_"):
            setattr(distributions, name, _distribution_wrapper(recorder, cls))
    container = impactx.ImpactXParticleContainer
    set_bucket_length = container.set_bucket_length

    def recorded_bucket_length(self, bucket_length, *args, **kwargs):
        recorder.settings["bucket_length"] = bucket_length
        return set_bucket_length(self, bucket_length, *args, **kwargs)

    container.set_bucket_length = recorded_bucket_length
    base = impactx.ImpactX

    class Recording(base):  # type: ignore[misc, valid-type]
        def __setattr__(self, key: str, value: Any) -> None:
            if not key.startswith("_"):
                recorder.settings[key] = value
            super().__setattr__(key, value)

        def add_particles(self, charge_C, distr, npart, *args, **kwargs):
            spin = args[0] if args else kwargs.get("spin_distr")
            recorder.added.append((float(charge_C), int(npart),
                                   recorder.distributions.get(id(distr)),
                                   None if spin is None else
                                   recorder.distributions.get(id(spin), ("unknown", {}))))
            return super().add_particles(charge_C, distr, npart, *args, **kwargs)

        def init_envelope(self, ref, distr, *args, **kwargs):
            intensity = args[0] if args else kwargs.get("intensity")
            recorder.envelope = (recorder.distributions.get(id(distr)),
                                 None if intensity is None else float(intensity))
            return super().init_envelope(ref, distr, *args, **kwargs)

        def track_particles(self, *args, **kwargs):
            recorder.record["track_calls"] += 1
            calls = recorder.record["track_calls"]
            if calls > 2 or (calls == 2 and not recorder.identity_first):
                recorder.refuse(["staged run: the script tracks more than once"])
            if args or kwargs:
                recorder.refuse(["track_particles arguments: not a scenario setting"])
            if calls == 2:   # the first only wrote the initial diagnostics: state this one
                recorder.record.update(status="", reasons=[], notes=[
                    "a first track_particles over zero-length drifts and monitors only (the "
                    "example's initial diagnostics) left the beam as it was; the second is "
                    "stated"])
            recorder.identity_first = calls == 1 and identity_lattice(self.lattice)
            if not recorder.identity_first:
                _first_track(recorder, self, base)
                return
            try:
                _first_track(recorder, self, base)
            except Stop:   # refused before tracking: the real lattice may follow
                base.track_particles(self)

        def track_envelope(self, *args, **kwargs):
            recorder.record["track_calls"] += 1
            if recorder.record["track_calls"] > 1:
                recorder.refuse(["staged run: the script tracks more than once"])
            if args or kwargs:
                recorder.refuse(["track_envelope arguments: not a scenario setting"])
            _first_envelope(recorder, self, base)

        def track_reference(self, *args, **kwargs):
            recorder.refuse(["reference-orbit tracking: not a tracking mode of trackbench"])

    impactx.ImpactX = Recording  # type: ignore[misc]


def main(script: str, out: str, name: str) -> int:
    """Run ``script`` recording into ``out``; returns the exit status (0: recorded)."""
    recorder = Recorder(name, Path(out))
    install(recorder)
    sys.argv = [script]
    sys.path.insert(0, str(Path.cwd()))
    try:
        runpy.run_path(script, run_name="__main__")
    except Stop:
        pass
    except BaseException as error:  # noqa: BLE001 - any failure of the example is recorded
        if recorder.record["status"] != "tracked":
            last = traceback.format_exception_only(type(error), error)[-1].strip()
            recorder.record.update(status="not expressible",
                                   reasons=[f"script error: {last.splitlines()[0][:200]}"])
    if not recorder.record["status"]:
        recorder.record.update(status="not expressible", reasons=[
            "no tracking: the script calls neither track_particles nor track_envelope"])
    recorder.write()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
