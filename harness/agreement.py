"""Agreement between a case's final particles and its reference, and the physics verdict.

Particle-by-particle deviation of coordinate ``i`` is ``|x_i - x_ref,i| / sigma_ref,i`` with
``sigma_ref,i`` the rms of the reference's final coordinate ``i`` over its particles; the
maximum and the rms over particles are recorded per coordinate. Particles that did not
survive in either code (lost at an aperture or blown up, :func:`harness.observables.fates`)
are left out of the deviation; the reference's losses and the particles lost in one code
only (``lost_mismatch``) are counted, and a mismatch beyond the tolerance is a ``differs``.
When no particle survives in both codes the verdict compares the losses alone.

Verdicts (:class:`harness.vocabulary.Verdict`):

* ``model-mismatch`` when the case ran a different model than the reference (a stand-in,
  other tiers): deviations are still recorded, never counted as a disagreement;
* ``blow-up`` when particles of the case blew up numerically (the detail counts them);
* ``agrees`` when every deviation is within :func:`tolerances` for the case's dtype and
  physics, ``differs`` otherwise (the detail names the worst metric and its value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.observables import COORDINATES, fates
from harness.vocabulary import Status, Verdict


@dataclass(frozen=True)
class Tolerances:
    """Largest deviations still called ``agrees``.

    Attributes:
        particle_max: max over particles and coordinates of |Δ|/σ (dimensionless).
        particle_rms: rms over particles of |Δ|/σ, worst coordinate (dimensionless).
        observable: relative error of each observable (dimensionless).
        lost_fraction: fraction of the particles lost in one code only.
    """

    particle_max: float
    particle_rms: float
    observable: float
    lost_fraction: float = 0.0


def tolerances(dtype: str, space_charge: bool, analytic: bool) -> Tolerances:
    """Tolerances for a case.

    fp64 without space charge: the same maps agree to round-off (measured <= 1e-11 of σ for
    linear and paraxial maps, <= 1e-9 for exact integrators), so 1e-8 leaves margin without
    hiding a wrong map. fp32 carries about 1e-7 relative round-off per operation, grown
    through a lattice: 1e-3 of σ. Space-charge solvers with different grids differ by their
    discretisation (about 2 % of σ between ImpactX and a 64^3 FFT solver), and analytic
    references are idealisations (an expanding ball: 0.5 % on the final size).

    A particle at an aperture's edge may be kept by one precision and lost by the other:
    fp32 and space-charge cases allow 1e-3 of the particles lost in one code only.
    """
    if analytic:
        return Tolerances(np.inf, np.inf, 5e-3, 1e-3)
    if space_charge:
        return Tolerances(np.inf, 2e-2, 5e-3, 1e-3)
    if dtype == "float32":
        return Tolerances(1e-3, 1e-3, 1e-4, 1e-3)
    return Tolerances(1e-8, 1e-8, 1e-8, 0.0)


def particle_deviation(final: np.ndarray, reference: np.ndarray
                       ) -> dict[str, float | None]:
    """Max and rms over particles of |Δ|/σ_ref per coordinate (None when no particle
    survived in both), the reference's losses and the particles lost in one code only.

    Args:
        final, reference: ``(N, 6)`` arrays in ImpactX coordinates, same particle order.
    """
    final = np.asarray(final, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if final.shape != reference.shape:
        raise ValueError(f"particle arrays differ in shape: {final.shape} vs {reference.shape}")
    mine, theirs = fates(final), fates(reference)
    both = mine.alive & theirs.alive
    out: dict[str, float | None] = {
        "lost_reference": int(theirs.lost.sum()),
        "blown_up_reference": int(theirs.blown_up.sum()),
        "lost_mismatch": int((mine.alive != theirs.alive).sum()),
        "compared_particles": int(both.sum()),
    }
    if not both.any():
        for name in COORDINATES:
            out[f"dev_max_{name}"] = out[f"dev_rms_{name}"] = None
        out["dev_max"] = out["dev_rms"] = None
        return out
    ref = reference[both]
    sigma = ref.std(axis=0)
    delta = np.abs(final[both] - ref)
    maxima, rms = [], []
    for i, name in enumerate(COORDINATES):
        # a coordinate with no spread in the reference (a cold beam): absolute deviation
        scaled = delta[:, i] / sigma[i] if sigma[i] > 0 else delta[:, i]
        maxima.append(float(scaled.max()))
        rms.append(float(np.sqrt(np.mean(scaled**2))))
        out[f"dev_max_{name}"], out[f"dev_rms_{name}"] = maxima[-1], rms[-1]
    out["dev_max"], out["dev_rms"] = max(maxima), max(rms)
    return out


def observable_errors(values: dict[str, float], reference: dict[str, float]
                      ) -> dict[str, float]:
    """Relative error ``|v - v_ref| / |v_ref|`` of each observable (absolute when v_ref=0)."""
    out = {}
    for name, ref in reference.items():
        if name not in values or ref is None:
            continue
        value = values[name]
        if not (np.isfinite(value) and np.isfinite(ref)):
            continue  # no survivors in one code: the loss comparison decides
        scale = abs(ref) if ref != 0 else 1.0
        out[f"obs_err_{name}"] = abs(value - ref) / scale
    return out


def verdict(model: str, reference_model: str, deviations: dict[str, float | None],
            tolerance: Tolerances, particles: int | None = None) -> tuple[str, str]:
    """The verdict and its detail for one case (see the module docstring); ``deviations``
    holds the agreement columns (and ``blown_up``, the case's own blow-ups), ``particles``
    the particle count the loss tolerance refers to."""
    blown = deviations.get("blown_up") or 0
    if blown:
        return Verdict.BLOW_UP.value, (f"{int(blown)} particle(s) blew up numerically "
                                       "(non-finite or |coordinate| > 1e8)")
    if model != reference_model:
        return Verdict.MODEL_MISMATCH.value, f"{model} vs reference {reference_model}"
    worst: list[tuple[float, str]] = []
    mismatch = deviations.get("lost_mismatch")
    if mismatch and particles:
        fraction = mismatch / particles
        if fraction > tolerance.lost_fraction:
            # other particles survived: comparing their moments would hide the cause
            return Verdict.DIFFERS.value, (f"{int(mismatch)} of {particles} particles lost "
                                           "in one code only")
    checks = (("dev_max", tolerance.particle_max), ("dev_rms", tolerance.particle_rms))
    for key, limit in checks:
        value = deviations.get(key)
        if value is not None and np.isfinite(limit) and not value <= limit:
            worst.append((value / limit, f"{key}={value:.3g} > {limit:.0e}"))
    for key, value in deviations.items():
        if (key.startswith("obs_err_") and value is not None
                and not value <= tolerance.observable):
            worst.append((value / tolerance.observable,
                          f"{key[8:]} relative error {value:.3g} > {tolerance.observable:.0e}"))
    if worst:
        return Verdict.DIFFERS.value, max(worst)[1]
    if deviations.get("compared_particles") == 0:
        return Verdict.AGREES.value, "no particle survived in either code: the losses agree"
    return Verdict.AGREES.value, ""


def rejudge(row: dict) -> tuple[str, str] | None:
    """The verdict of a stored ``track`` row under today's :func:`tolerances`, from its
    stored deviations (no re-run); None for a row without a judged verdict (not ``ok``,
    a reference, no reference, or written before ``reference_model`` was recorded)."""
    stored = row.get("verdict")
    if row.get("status") != Status.OK or stored in (None, Verdict.NO_REFERENCE.value):
        return None
    if row.get("blown_up"):
        return verdict("", "", {"blown_up": row["blown_up"]}, tolerances("float64", False,
                                                                          False))
    if stored == Verdict.IS_REFERENCE.value or not row.get("reference_model"):
        return None
    analytic = row.get("reference") == "analytic" and any(
        key.startswith("ref_obs_") for key in row)
    tolerance = tolerances(str(row.get("dtype")), bool(row.get("space_charge")), analytic)
    deviations = {key: value for key, value in row.items()
                  if key in ("dev_max", "dev_rms", "lost_mismatch", "compared_particles")
                  or key.startswith("obs_err_")}
    return verdict(str(row.get("model")), str(row["reference_model"]), deviations,
                   tolerance, row.get("particles"))
