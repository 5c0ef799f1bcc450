"""Final-beam moments as ImpactX's example analyses compute them (``analysis_*.py``
``get_moments``: central moments with ddof 0, rms emittance ``sqrt(<x^2><px^2> - <x px>^2)``).

Particles are ``(N, 6)`` ImpactX coordinates ``x, px, y, py, t, pt`` (x, y [m], px, py [1],
t = c dt [m], pt [1]), or ``(N, 9)`` with the spin ``sx, sy, sz`` [1] after them (its mean is
the polarization, as the spin analyses' ``get_polarization``); rows with a non-finite value
(particles lost in an aperture) are left out, as ImpactX leaves lost particles out of its
beam. An envelope (the 6x6 covariance of the same coordinates) gives the same second moments
(:func:`covariance_moments`; the envelope is about the reference orbit: means 0), as
ImpactX's reduced beam characteristics of an envelope run do.
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
    centred = p[:, :6] - mean[:6]
    cov = centred.T @ centred / len(p)
    for i, name in enumerate(COORDINATES):
        out[f"mean_{name}"] = float(mean[i])
        out[f"sigma_{name}"] = float(np.sqrt(cov[i, i]))
    for i, name in enumerate(("sx", "sy", "sz"), 6):
        if p.shape[1] > i:
            out[f"mean_{name}"] = float(mean[i])
    return out | _emittances(cov)


def covariance_moments(sigma: np.ndarray) -> dict[str, float]:
    """``sigma_<c>`` and ``emittance_<x|y|t>`` of a 6x6 covariance matrix, ``mean_<c>`` 0."""
    cov = np.asarray(sigma, dtype=np.float64)
    out = {f"mean_{name}": 0.0 for name in COORDINATES}
    for i, name in enumerate(COORDINATES):
        out[f"sigma_{name}"] = float(np.sqrt(max(cov[i, i], 0.0)))
    return out | _emittances(cov)


def _emittances(cov: np.ndarray) -> dict[str, float]:
    """rms emittances ``sqrt(<u^2><pu^2> - <u pu>^2)`` of the three planes."""
    out = {}
    for plane, i in (("x", 0), ("y", 2), ("t", 4)):
        det = cov[i, i] * cov[i + 1, i + 1] - cov[i, i + 1] ** 2
        out[f"emittance_{plane}"] = float(np.sqrt(max(det, 0.0)))
    return out
