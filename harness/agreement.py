"""Agreement between a case's final particles and its reference, and the physics verdict.

Particle-by-particle deviation of coordinate ``i`` is ``|x_i - x_ref,i| / sigma_ref,i`` with
``sigma_ref,i`` the rms of the reference's final coordinate ``i`` over its particles; the
maximum and the rms over particles are recorded per coordinate. Particles with spins
(``(N, 9)``, :mod:`harness.model.spin`) add the columns ``sx``, ``sy``, ``sz`` with the
absolute deviation of each spin component (spins are unit vectors), within the same
tolerances (fp64: 1e-8; in-house and ImpactX agree to about 1e-14). Particles that did not
survive in either code (lost at an aperture or blown up, :func:`harness.model.observables.fates`)
are left out of the deviation; the reference's losses and the particles lost in one code
only (``lost_mismatch``) are counted, and a mismatch beyond the tolerance is a ``differs``.
When no particle survives in both codes the verdict compares the losses alone (aperture
losses only: a blow-up in either code is a ``blow-up``).

Verdicts (:class:`harness.model.vocabulary.Verdict`):

* ``model-mismatch`` when the case ran a different model than the reference (a stand-in,
  other tiers): deviations are still recorded, never counted as a disagreement;
* ``blow-up`` when particles of the case or of its reference blew up numerically (the
  detail counts them): a blow-up is never judged as agreeing losses, whatever the other
  code did with the particle;
* the details of ``blow-up`` and ``model-mismatch`` go on with the deviation of the
  particles that survived in both codes and the worst tolerance it exceeds (a stand-in
  4 sigma away is shown, not hidden behind its verdict);
* ``agrees`` when every deviation is within :func:`tolerances` for the case's dtype and
  physics, ``differs`` otherwise (the detail names the worst metric and its value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.model.observables import BLOW_UP_MAGNITUDE, COORDINATES, fates
from harness.model.spin import SPIN_COLUMNS
from harness.model.vocabulary import Status, Verdict


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
    columns = COORDINATES + (SPIN_COLUMNS if final.shape[1] == 9 else ())
    if not both.any():
        for name in columns:
            out[f"dev_max_{name}"] = out[f"dev_rms_{name}"] = None
        out["dev_max"] = out["dev_rms"] = None
        return out
    ref = reference[both]
    sigma = ref.std(axis=0)
    delta = np.abs(final[both] - ref)
    maxima, rms = [], []
    for i, name in enumerate(columns):
        # a coordinate with no spread in the reference (a cold beam), and a spin component
        # (a unit vector's, dimensionless): absolute deviation
        scaled = delta[:, i] / sigma[i] if sigma[i] > 0 and i < 6 else delta[:, i]
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
    """The verdict and its detail for one case (see the module docstring).

    Args:
        model, reference_model: what the case and its reference ran.
        deviations: the agreement columns (:func:`particle_deviation`,
            :func:`observable_errors`) and ``blown_up``, the case's own blow-ups.
        tolerance: the case's :class:`Tolerances`.
        particles: the particle count the loss tolerance refers to.

    A blow-up in either code is ``blow-up`` (never "the losses agree"); ``blow-up`` and
    ``model-mismatch`` details go on with the survivors' deviation (:func:`survivors_detail`).
    """
    excess = exceedances(deviations, tolerance, particles)
    blown = int(deviations.get("blown_up") or 0)
    blown_reference = int(deviations.get("blown_up_reference") or 0)
    if blown or blown_reference:
        causes = []
        if blown:
            causes.append(f"{blown} particle(s) blew up numerically (non-finite or "
                          f"|coordinate| > {BLOW_UP_MAGNITUDE:.0e})")
        if blown_reference:
            causes.append(f"{blown_reference} particle(s) blew up in the reference")
        return Verdict.BLOW_UP.value, "; ".join(causes) + survivors_detail(deviations, excess)
    if model != reference_model:
        return Verdict.MODEL_MISMATCH.value, (f"{model} vs reference {reference_model}"
                                              + survivors_detail(deviations, excess))
    if excess:
        return Verdict.DIFFERS.value, excess[0]
    if deviations.get("compared_particles") == 0:
        return Verdict.AGREES.value, "no particle survived in either code: the losses agree"
    return Verdict.AGREES.value, ""


def exceedances(deviations: dict[str, float | None], tolerance: Tolerances,
                particles: int | None = None) -> list[str]:
    """Every tolerance the deviations exceed, worst first; a loss mismatch beyond
    ``tolerance.lost_fraction`` comes first and alone (the other particles survived:
    comparing their moments would hide the cause)."""
    mismatch = deviations.get("lost_mismatch")
    if mismatch and particles and mismatch / particles > tolerance.lost_fraction:
        return [f"{int(mismatch)} of {particles} particles lost in one code only"]
    worst: list[tuple[float, str]] = []
    for key, limit in (("dev_max", tolerance.particle_max),
                       ("dev_rms", tolerance.particle_rms)):
        value = deviations.get(key)
        if value is not None and np.isfinite(limit) and not value <= limit:
            worst.append((value / limit, f"{key}={value:.3g} > {limit:.0e}"))
    for key, value in deviations.items():
        if (key.startswith("obs_err_") and value is not None
                and not value <= tolerance.observable):
            worst.append((value / tolerance.observable,
                          f"{key[8:]} relative error {value:.3g} > {tolerance.observable:.0e}"))
    return [text for _, text in sorted(worst, key=lambda item: -item[0])]


def survivors_detail(deviations: dict[str, float | None], excess: list[str]) -> str:
    """``"; survivors: dev_max=4.3 dev_rms=1.1 (…)"``: the deviation of the particles that
    survived in both codes (in sigma of the reference, :func:`particle_deviation`) and the
    worst tolerance they exceed, so that a ``blow-up`` or ``model-mismatch`` verdict does
    not hide it; "" when the case has no particle deviation (no reference particles)."""
    compared = deviations.get("compared_particles")
    if compared is None:
        return "; survivors: " + excess[0] if excess else ""
    if compared == 0:
        return "; no particle survived in both codes"
    dev_max, dev_rms = (np.nan if deviations.get(key) is None else float(deviations[key] or 0)
                        for key in ("dev_max", "dev_rms"))
    text = f"; {int(compared)} survivors: dev_max={dev_max:.3g} dev_rms={dev_rms:.3g} sigma"
    return text + (f" ({excess[0]})" if excess else " (within tolerance)")


def rejudge(row: dict) -> tuple[str, str] | None:
    """The verdict of a stored ``track`` row under today's :func:`tolerances`, from its
    stored deviations (no re-run); None for a row without a judged verdict (not ``ok``,
    a reference, no reference, or written before ``reference_model`` was recorded)."""
    stored = row.get("verdict")
    if row.get("status") != Status.OK or stored in (None, Verdict.NO_REFERENCE.value):
        return None
    if stored == Verdict.IS_REFERENCE.value or not row.get("reference_model"):
        if row.get("blown_up"):  # a reference, or a case without one, that blew up
            return verdict("", "", {"blown_up": row["blown_up"]},
                           tolerances("float64", False, False))
        return None
    analytic = row.get("reference") == "analytic" and any(
        key.startswith("ref_obs_") for key in row)
    tolerance = tolerances(str(row.get("dtype")), bool(row.get("space_charge")), analytic)
    deviations = {key: value for key, value in row.items()
                  if key in ("dev_max", "dev_rms", "lost_mismatch", "compared_particles",
                             "blown_up", "blown_up_reference")
                  or key.startswith("obs_err_")}
    return verdict(str(row.get("model")), str(row["reference_model"]), deviations,
                   tolerance, row.get("particles"))
