"""Agreement between a case's final particles and its reference, and the physics verdict.

Particle-by-particle deviation of coordinate ``i`` is ``|x_i - x_ref,i| / sigma_ref,i`` with
``sigma_ref,i`` the rms of the reference's final coordinate ``i`` over its particles; the
maximum and the rms over particles are recorded per coordinate. Particles lost in either
code (NaN rows) are left out of the deviation and counted.

Verdicts (:class:`harness.vocabulary.Verdict`):

* ``model-mismatch`` when the case ran a different model than the reference (a stand-in,
  other tiers): deviations are still recorded, never counted as a disagreement;
* ``agrees`` when every deviation is within :func:`tolerances` for the case's dtype and
  physics, ``differs`` otherwise (the detail names the worst metric and its value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.vocabulary import Verdict

COORDINATES = ("x", "px", "y", "py", "t", "pt")


@dataclass(frozen=True)
class Tolerances:
    """Largest deviations still called ``agrees``.

    Attributes:
        particle_max: max over particles and coordinates of |Δ|/σ (dimensionless).
        particle_rms: rms over particles of |Δ|/σ, worst coordinate (dimensionless).
        observable: relative error of each observable (dimensionless).
    """

    particle_max: float
    particle_rms: float
    observable: float


def tolerances(dtype: str, space_charge: bool, analytic: bool) -> Tolerances:
    """Tolerances for a case.

    fp64 without space charge: the same maps agree to round-off (measured <= 1e-11 of σ for
    linear and paraxial maps, <= 1e-9 for exact integrators), so 1e-8 leaves margin without
    hiding a wrong map. fp32 carries about 1e-7 relative round-off per operation, grown
    through a lattice: 1e-3 of σ. Space-charge solvers with different grids differ by their
    discretisation (about 2 % of σ between ImpactX and a 64^3 FFT solver), and analytic
    references are idealisations (an expanding ball: 0.5 % on the final size).
    """
    if analytic:
        return Tolerances(np.inf, np.inf, 5e-3)
    if space_charge:
        return Tolerances(np.inf, 2e-2, 5e-3)
    if dtype == "float32":
        return Tolerances(1e-3, 1e-3, 1e-4)
    return Tolerances(1e-8, 1e-8, 1e-8)


def particle_deviation(final: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Max and rms over particles of |Δ|/σ_ref per coordinate, and the lost counts.

    Args:
        final, reference: ``(N, 6)`` arrays in ImpactX coordinates, same particle order.
    """
    final = np.asarray(final, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if final.shape != reference.shape:
        raise ValueError(f"particle arrays differ in shape: {final.shape} vs {reference.shape}")
    both = np.isfinite(final).all(axis=1) & np.isfinite(reference).all(axis=1)
    out: dict[str, float] = {
        "lost": int((~np.isfinite(final).all(axis=1)).sum()),
        "lost_reference": int((~np.isfinite(reference).all(axis=1)).sum()),
    }
    ref = reference[both]
    sigma = ref.std(axis=0)
    delta = np.abs(final[both] - ref)
    for i, name in enumerate(COORDINATES):
        if sigma[i] > 0 and len(ref):
            scaled = delta[:, i] / sigma[i]
            out[f"dev_max_{name}"] = float(scaled.max())
            out[f"dev_rms_{name}"] = float(np.sqrt(np.mean(scaled**2)))
        else:
            # a coordinate with no spread in the reference (a cold beam): absolute deviation
            out[f"dev_max_{name}"] = float(delta[:, i].max()) if len(ref) else float("nan")
            out[f"dev_rms_{name}"] = (float(np.sqrt(np.mean(delta[:, i] ** 2)))
                                      if len(ref) else float("nan"))
    out["dev_max"] = max(out[f"dev_max_{n}"] for n in COORDINATES)
    out["dev_rms"] = max(out[f"dev_rms_{n}"] for n in COORDINATES)
    return out


def observable_errors(values: dict[str, float], reference: dict[str, float]
                      ) -> dict[str, float]:
    """Relative error ``|v - v_ref| / |v_ref|`` of each observable (absolute when v_ref=0)."""
    out = {}
    for name, ref in reference.items():
        if name not in values or ref is None:
            continue
        value = values[name]
        scale = abs(ref) if ref != 0 else 1.0
        out[f"obs_err_{name}"] = abs(value - ref) / scale
    return out


def verdict(model: str, reference_model: str, deviations: dict[str, float],
            tolerance: Tolerances) -> tuple[str, str]:
    """The verdict and its detail for one case (see the module docstring)."""
    if model != reference_model:
        return Verdict.MODEL_MISMATCH.value, f"{model} vs reference {reference_model}"
    worst: list[tuple[float, str]] = []
    checks = (("dev_max", tolerance.particle_max), ("dev_rms", tolerance.particle_rms))
    for key, limit in checks:
        value = deviations.get(key)
        if value is not None and np.isfinite(limit) and not value <= limit:
            worst.append((value / limit, f"{key}={value:.3g} > {limit:.0e}"))
    for key, value in deviations.items():
        if key.startswith("obs_err_") and not value <= tolerance.observable:
            worst.append((value / tolerance.observable,
                          f"{key[8:]} relative error {value:.3g} > {tolerance.observable:.0e}"))
    if worst:
        return Verdict.DIFFERS.value, max(worst)[1]
    return Verdict.AGREES.value, ""
