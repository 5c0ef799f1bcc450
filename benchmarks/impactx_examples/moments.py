"""Final-beam moments as ImpactX's example analyses compute them (``analysis_*.py``
``get_moments``: central moments with ddof 0, rms emittance ``sqrt(<x^2><px^2> - <x px>^2)``).

Particles are ``(N, 6)`` ImpactX coordinates ``x, px, y, py, t, pt`` (x, y [m], px, py [1],
t = c dt [m], pt [1]); rows with a non-finite value (particles lost in an aperture) are left
out, as ImpactX leaves lost particles out of its beam.
"""

from __future__ import annotations

import numpy as np

COORDINATES = ("x", "px", "y", "py", "t", "pt")


def moments(particles: np.ndarray) -> dict[str, float]:
    """``mean_<c>``, ``sigma_<c>`` for every coordinate, ``emittance_<x|y|t>`` and the number
    of particles left (``particles``)."""
    p = np.asarray(particles, dtype=np.float64)
    p = p[np.all(np.isfinite(p), axis=1)]
    out: dict[str, float] = {"particles": float(len(p))}
    if not len(p):
        return out
    mean = p.mean(axis=0)
    centred = p - mean
    cov = centred.T @ centred / len(p)
    for i, name in enumerate(COORDINATES):
        out[f"mean_{name}"] = float(mean[i])
        out[f"sigma_{name}"] = float(np.sqrt(cov[i, i]))
    for plane, i in (("x", 0), ("y", 2), ("t", 4)):
        det = cov[i, i] * cov[i + 1, i + 1] - cov[i, i + 1] ** 2
        out[f"emittance_{plane}"] = float(np.sqrt(max(det, 0.0)))
    return out
