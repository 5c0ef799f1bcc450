"""Beam observables from particle arrays: one implementation for every backend.

Works on numpy arrays and torch tensors (differentiable), with an optional leading batch
dimension: particles have shape ``(..., N, 6)`` in ImpactX order (x, px, y, py, t, pt).
Optional per-particle weights (e.g. a survival mask) weight every moment.

Definitions (rms, statistical; Wolski, *Beam Dynamics in High Energy Particle
Accelerators*, ch. 5):

* ``mean_c``, ``sigma_c``: first moment and rms spread of coordinate c.
* ``emittance_p`` = sqrt(<u^2><u'^2> - <u u'>^2) over the centred (u, u') pair of plane p,
  geometric [m rad] (for t: [m]); ``norm_emittance_p`` = beta0*gamma0 * emittance_p.
* ``beta_p``, ``alpha_p``: the Twiss functions of the beam as ImpactX reports them
  (``beta_x`` ... of its reduced beam characteristics, ``beam.beam_moments()``; ImpactX
  ``src/diagnostics/ReducedBeamCharacteristics.cpp``): for p = x, y the dispersive part is
  removed first. With centred moments and ImpactX's dispersion D_u = -<u pt>/<pt^2>,
  D_u' = -<u' pt>/<pt^2> (D = 0 when <pt^2> = 0)::

      <u^2>_d  = <u^2>  - <pt^2> D_u^2       = <u^2>  - <u pt>^2/<pt^2>
      <u'^2>_d = <u'^2> - <pt^2> D_u'^2      = <u'^2> - <u' pt>^2/<pt^2>
      <u u'>_d = <u u'> - <pt^2> D_u D_u'    = <u u'> - <u pt><u' pt>/<pt^2>
      eps_d    = sqrt(<u^2>_d <u'^2>_d - <u u'>_d^2)
      beta_p   = <u^2>_d / eps_d [m],   alpha_p = -<u u'>_d / eps_d

  For t (no dispersion) they are <t^2>/eps_t and -<t pt>/eps_t, as ImpactX's.
* ``beta_total_p``, ``alpha_total_p`` (p = x, y): the same from the total second moments
  of the plane, dispersive part included: <u^2>/eps_p [m] and -<u u'>/eps_p (Wolski
  eq. 5.13). They equal ``beta_p`` / ``alpha_p`` for a beam without u-pt correlation.
* ``dispersion_x`` = <x delta>/<delta^2> with delta ~= -pt/beta0 [m] (likewise px, y, py).
* ``mean_sx``, ``mean_sy``, ``mean_sz``, ``polarization`` = |<s>|, ``sigma_sx``,
  ``sigma_sy``, ``sigma_sz`` (dimensionless): the spin moments of particles ``(..., N, 9)``
  whose columns 6-8 are the spins (a beam with a ``spin:`` block, :mod:`harness.model.spin`;
  population standard deviations, as ImpactX's ``reduced_beam_characteristics``).
* ``survival``: weighted fraction of particles (1 without a mask); over the final particles
  of a case (:func:`compute_survivors`), the fraction that survived.

Fates of final particles (:func:`fates`): backends mark a particle lost at an aperture as a
row of six NaN; any other non-finite coordinate, or a magnitude above
:data:`BLOW_UP_MAGNITUDE`, is a numerical blow-up. Moments are taken over the survivors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.model.spin import SPIN_INDEX, SPIN_OBSERVABLES

if TYPE_CHECKING:
    import torch

#: The canonical coordinates (ImpactX's), in column order.
COORDINATES: tuple[str, ...] = ("x", "px", "y", "py", "t", "pt")

#: Largest |coordinate| of a particle that still counts as tracked (ImpactX units: m, rad,
#: dimensionless pt); any larger one is a numerical blow-up, not a position in a beamline.
BLOW_UP_MAGNITUDE = 1e8

INDEX = {"x": 0, "px": 1, "y": 2, "py": 3, "t": 4, "pt": 5}
PLANES = {"x": (0, 1), "y": (2, 3), "t": (4, 5)}


def _is_torch(a: Any) -> bool:
    return type(a).__module__.startswith("torch")


def _sum(a, axis: int):
    return a.sum(dim=axis) if _is_torch(a) else a.sum(axis=axis)


def moments(particles, weights=None):
    """Weighted mean ``(..., 6)`` and covariance ``(..., 6, 6)`` of particles ``(..., N, 6)``."""
    if weights is None:
        n = particles.shape[-2]
        mean = _sum(particles, -2) / n
        centred = particles - mean[..., None, :]
        cov = centred.swapaxes(-1, -2) @ centred / n
        return mean, cov
    total = _sum(weights, -1)
    mean = _sum(particles * weights[..., None], -2) / total[..., None]
    centred = particles - mean[..., None, :]
    cov = (centred * weights[..., None]).swapaxes(-1, -2) @ centred / total[..., None, None]
    return mean, cov


def _sqrt(a):
    return a.clamp_min(0.0).sqrt() if _is_torch(a) else np.sqrt(np.maximum(a, 0.0))


def observables_from_moments(mean, cov, names: list[str],
                             beta_gamma: float | torch.Tensor = 1.0,
                             beta0: float | torch.Tensor = 1.0, survival=None) -> dict[str, Any]:
    """Observables from first and second moments (see the module docstring); ``beta_gamma``
    and ``beta0`` of the reference are floats, or 0-d tensors when the reference energy
    depends on a differentiable parameter."""
    out: dict[str, Any] = {}
    for name in names:
        kind, _, arg = name.partition("_")
        plane = name.rsplit("_", 1)[-1]
        total = arg in ("total_x", "total_y") and kind in ("alpha", "beta")
        if name in SPIN_OBSERVABLES:
            out[name] = _spin_value(mean, cov, name)
            continue
        if (kind in ("mean", "sigma") and arg not in INDEX
                or kind == "dispersion" and arg not in ("x", "px", "y", "py")
                or kind in ("emittance", "alpha", "beta") and arg not in PLANES and not total
                or kind == "norm" and plane not in PLANES):
            raise KeyError(f"unknown observable {name!r}")
        if name == "survival":
            out[name] = 1.0 if survival is None else survival
        elif kind == "mean":
            out[name] = mean[..., INDEX[arg]]
        elif kind == "sigma":
            out[name] = _sqrt(cov[..., INDEX[arg], INDEX[arg]])
        elif name.startswith("norm_emittance_"):
            i, j = PLANES[name.rsplit("_", 1)[1]]
            out[name] = beta_gamma * _emittance(cov, i, j)
        elif kind == "emittance":
            out[name] = _emittance(cov, *PLANES[arg])
        elif kind in ("alpha", "beta"):
            i, j = PLANES[plane]
            uu, uv, vv = ((cov[..., i, i], cov[..., i, j], cov[..., j, j]) if total
                          or plane == "t" else _without_dispersion(cov, i, j))
            eps = _sqrt(uu * vv - uv**2)
            out[name] = uu / eps if kind == "beta" else -uv / eps
        elif kind == "dispersion":
            k = INDEX[arg]
            out[name] = -beta0 * cov[..., k, 5] / cov[..., 5, 5]
        else:
            raise KeyError(f"unknown observable {name!r}")
    return out


def _spin_value(mean, cov, name: str):
    """A spin observable from the moments of ``(..., N, 9)`` particles (columns 6-8 the spin
    components, :data:`harness.model.spin.SPIN_INDEX`): ``mean_s*``, ``sigma_s*`` and
    ``polarization`` = |<s>|."""
    if mean.shape[-1] < 9:
        raise KeyError(f"observable {name!r} needs particles with spins ((N, 9) columns)")
    if name == "polarization":
        s = mean[..., 6:9]
        return _sqrt(s[..., 0] ** 2 + s[..., 1] ** 2 + s[..., 2] ** 2)
    kind, _, axis = name.partition("_")
    k = SPIN_INDEX[axis]
    return mean[..., k] if kind == "mean" else _sqrt(cov[..., k, k])


def _without_dispersion(cov, i: int, j: int):
    """<u^2>_d, <u u'>_d, <u'^2>_d of the (i, j) plane with the dispersive part removed, as
    ImpactX's reduced beam characteristics (see the module docstring); unchanged where
    <pt^2> = 0 (ImpactX sets the dispersion to 0 there)."""
    spread = cov[..., 5, 5]
    if _is_torch(cov):
        import torch

        has_spread = spread > 0
        safe = torch.where(has_spread, spread, torch.ones_like(spread))
        weight = has_spread.to(cov.dtype) / safe
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = np.where(spread > 0, 1.0 / np.where(spread > 0, spread, 1.0), 0.0)
    ut, vt = cov[..., i, 5], cov[..., j, 5]
    return (cov[..., i, i] - ut * ut * weight, cov[..., i, j] - ut * vt * weight,
            cov[..., j, j] - vt * vt * weight)


def _emittance(cov, i: int, j: int):
    return _sqrt(cov[..., i, i] * cov[..., j, j] - cov[..., i, j] ** 2)


def compute(particles, names: list[str], beta_gamma: float | torch.Tensor = 1.0,
            beta0: float | torch.Tensor = 1.0, weights=None) -> dict[str, Any]:
    """Observables ``names`` of particles ``(..., N, 6)`` (numpy or torch, differentiable)."""
    mean, cov = moments(particles, weights)
    survival = None
    if weights is not None:
        survival = _sum(weights, -1) / weights.shape[-1]
    return observables_from_moments(mean, cov, names, beta_gamma, beta0, survival)


def compute_for(particles, names: list[str], reference, weights=None) -> dict[str, Any]:
    """:func:`compute` with beta0 and beta0*gamma0 of a reference particle
    (:class:`harness.model.reference_particle.ReferenceParticle`)."""
    return compute(particles, names, reference.beta_gamma, reference.beta, weights)


@dataclass(frozen=True)
class Fates:
    """What became of each final particle (boolean masks over rows).

    Attributes:
        alive: tracked to the end with finite, physical coordinates;
        lost: lost at an aperture (the backends' all-NaN row);
        blown_up: a numerical blow-up (inf, partial NaN, or |coordinate| >
            :data:`BLOW_UP_MAGNITUDE`).
    """

    alive: np.ndarray
    lost: np.ndarray
    blown_up: np.ndarray


def fates(particles) -> Fates:
    """The fates of final particles ``(N, 6)`` (numpy)."""
    particles = np.asarray(particles, dtype=np.float64)
    lost = np.isnan(particles).all(axis=1)
    with np.errstate(invalid="ignore"):
        physical = np.isfinite(particles).all(axis=1) & (
            np.abs(particles) <= BLOW_UP_MAGNITUDE).all(axis=1)
    return Fates(physical, lost, ~physical & ~lost)


def survivors(particles) -> np.ndarray:
    """The particles that survived (see :func:`fates`)."""
    particles = np.asarray(particles)
    return particles[fates(particles).alive]


def compute_survivors(particles, names: list[str], reference) -> dict[str, float]:
    """Observables of the surviving particles of ``(N, 6)`` final particles, with
    ``survival`` the surviving fraction; NaN moments when none survived."""
    particles = np.asarray(particles)
    alive = survivors(particles)
    fraction = len(alive) / len(particles) if len(particles) else 0.0
    if len(alive) == 0:
        return {name: (fraction if name == "survival" else float("nan")) for name in names}
    values = compute_for(alive, names, reference)
    out = {name: float(value) for name, value in values.items()}
    if "survival" in out:
        out["survival"] = fraction
    return out


def observable_names() -> tuple[str, ...]:
    """Every observable name a scenario may request (this module computes them)."""
    names = [f"mean_{c}" for c in COORDINATES] + [f"sigma_{c}" for c in COORDINATES]
    for plane in ("x", "y", "t"):
        names += [f"emittance_{plane}", f"norm_emittance_{plane}", f"alpha_{plane}",
                  f"beta_{plane}"]
        if plane != "t":
            names += [f"alpha_total_{plane}", f"beta_total_{plane}"]
    names += ["dispersion_x", "dispersion_px", "dispersion_y", "dispersion_py",
              "survival"]
    return tuple(names) + SPIN_OBSERVABLES
