"""Initial particles in ImpactX's canonical coordinates (x, px, y, py, t, pt).

Particles are drawn in two steps, so that the same code serves plain numpy sampling and
differentiable (reparameterised) sampling in torch:

1. :func:`unit_samples` draws ``(N, 6)`` samples of the distribution's *shape* with unit
   covariance (seeded numpy ``Generator``, so identical for every backend).
2. :func:`beam_cholesky` builds the lower-triangular 6x6 ``L`` with ``L L^T = Sigma`` from the
   Twiss / longitudinal parameters (or the given sigma matrix); particles are ``z @ L.T``.

For Twiss input ``L`` is block-diagonal with the per-plane factor
``[[sqrt(eps*beta), 0], [-alpha*sqrt(eps/beta), sqrt(eps/beta)]]``, which is exactly ImpactX's
transform with ``lambdaX = sqrt(eps/gamma)``, ``lambdaPx = sqrt(eps/beta)``,
``muxpx = alpha/sqrt(beta*gamma)`` (``src/particles/distribution/*.H``).

Shapes (unit covariance in each coordinate):

* ``gaussian``: 6D normal.
* ``waterbag``: uniform in the 6D ball of radius sqrt(8) (ImpactX ``Waterbag``).
* ``kv``: ImpactX ``KVdist`` (``src/particles/distribution/KVdist.H``): transverse
  Kapchinskij-Vladimirskij, (x, y) uniform in the disk of radius 2 and (px, py) on the
  circle of radius 2 sqrt(1 - r^2/4) (uniform on the 4D sphere of radius 2); t uniform in
  [-sqrt(3), sqrt(3)]; pt normal.
* ``semigaussian``: ImpactX ``Semigaussian`` (``src/particles/distribution/Semigaussian.H``):
  (x, y) uniform in the disk of radius 2 (a cylinder in (x, y, t)), t uniform in
  [-sqrt(3), sqrt(3)]; (px, py, pt) normal.
* ``kurth6d``: R. Kurth, Q. Appl. Math. 32, 325 (1978); C. Mitchell et al., IPAC2021
  WEPAB248; the algorithm of ImpactX ``Kurth6D.H`` (positions uniform in a ball, a
  stationary 6D distribution), scaled by sqrt(5).
* ``kurth4d``: ImpactX ``Kurth4D.H``: the 4D Kurth distribution transversely ((x, y)
  uniform in the disk of radius 2, (px, py) = 2 (p_r, L_z/r) with the Kurth invariant
  r^2 + p^2 - L_z^2 <= 1 in unit scaling), t uniform in [-sqrt(3), sqrt(3)], pt normal.
* ``triangle``: ImpactX ``Triangle.H``: (x, px, y, py) uniform in the 4D ball of radius
  sqrt(6); t = sqrt(2) (2 - 3 sqrt(u)) with u uniform, a linear ramp of density
  (2 sqrt(2) - t) / 9 on [-sqrt(2), 2 sqrt(2)] (mean 0, variance 1, third moment
  +2 sqrt(2)/5); pt normal.
* ``gaussian`` with ``gaussian_cut``: ImpactX ``Gaussian.H``: the pair (u, v) of a cut plane
  is drawn uniformly in angle with radius r^2 = -2 ln(1 - w (1 - e^-f)) / s, f = cut^2 / 2,
  s = 1 - f e^-f / (1 - e^-f) (w uniform): the normal truncated to the phase-space circle
  of radius ``cut``, at unit variance.

Two more transforms follow ImpactX's order (every ``src/particles/distribution/*.H``):
the beam's ``dispersion`` (x -= D_x pt, px -= D_px pt, y -= D_y pt, py -= D_py pt), which
:func:`beam_cholesky` folds into the factor (then no longer triangular: ``D L``), and the
``centroid``.

``thermal`` is not an affine image of unit samples: :func:`thermal_particles` draws ImpactX's
``Thermal.H`` from the beam's ``thermal`` block, its charge and its reference particle.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.model.errors import ScenarioError

if TYPE_CHECKING:
    from harness.model.scenario import Beam

COLUMNS = ("x", "px", "y", "py", "t", "pt")


def _ball(rng: np.random.Generator, n: int, dim: int, radius: float) -> np.ndarray:
    """Uniform samples in the ``dim``-ball of the given radius."""
    direction = rng.standard_normal((n, dim))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    r = rng.random(n) ** (1.0 / dim)
    return radius * r[:, None] * direction


def _kurth6d(rng: np.random.Generator, n: int) -> np.ndarray:
    """ImpactX ``Kurth6D.H`` algorithm (vectorised), returns columns x, px, y, py, t, pt."""
    v, costheta, phi, lr, alpha, beta = rng.random((6, n))
    costheta = 2.0 * (costheta - 0.5)
    sintheta = np.sqrt(1.0 - costheta**2)
    phi = 2.0 * math.pi * phi
    r = v ** (1.0 / 3.0)
    x = r * sintheta * np.cos(phi)
    y = r * sintheta * np.sin(phi)
    t = r * costheta
    L = r * np.sqrt(lr)
    pmax = np.sqrt(np.clip(1.0 - (L / r) ** 2 - r**2 + L**2, 0.0, None))
    pr = pmax * np.cos(math.pi * alpha)
    p1 = L / r * np.cos(2.0 * math.pi * beta)
    p2 = L / r * np.sin(2.0 * math.pi * beta)
    px = pr * sintheta * np.cos(phi) + p2 * costheta * np.cos(phi) - p1 * np.sin(phi)
    py = pr * sintheta * np.sin(phi) + p2 * costheta * np.sin(phi) + p1 * np.cos(phi)
    pt = pr * costheta - p2 * sintheta
    return math.sqrt(5.0) * np.stack([x, px, y, py, t, pt], axis=1)


def _kurth4d(rng: np.random.Generator, n: int) -> np.ndarray:
    """ImpactX ``Kurth4D.H`` (vectorised), unit covariance: (x, y) = 2 sqrt(v) (cos, sin)
    phi; L_z = r (2 u - 1), p_r = sqrt((1 - r^2)(1 - L_z^2/r^2)) cos(pi a), p_phi = L_z / r,
    (px, py) = 2 (p_r cos phi - p_phi sin phi, p_r sin phi + p_phi cos phi);
    t = sqrt(3) (2 w - 1); pt normal (Box-Muller there, normal here)."""
    v, phi, u, alpha, t = rng.random((5, n))
    phi = 2.0 * math.pi * phi
    r = np.sqrt(v)
    lz = r * (2.0 * u - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(r > 0.0, lz / r, 0.0)
    pmax = np.sqrt(np.clip(1.0 - ratio**2 - r**2 + lz**2, 0.0, None))
    pr = pmax * np.cos(math.pi * alpha)
    z = np.empty((n, 6))
    z[:, 0], z[:, 2] = 2.0 * r * np.cos(phi), 2.0 * r * np.sin(phi)
    z[:, 1] = 2.0 * (pr * np.cos(phi) - ratio * np.sin(phi))
    z[:, 3] = 2.0 * (pr * np.sin(phi) + ratio * np.cos(phi))
    z[:, 4] = math.sqrt(3.0) * (2.0 * t - 1.0)
    z[:, 5] = rng.standard_normal(n)
    return z


def _triangle(rng: np.random.Generator, n: int) -> np.ndarray:
    """ImpactX ``Triangle.H`` (vectorised), unit covariance: (x, y, px, py) uniform in the
    4D ball of radius sqrt(d + 2) = sqrt(6); t = sqrt(2) (2 - 3 sqrt(u)); pt normal."""
    z = np.empty((n, 6))
    z[:, 4] = math.sqrt(2.0) * (2.0 - 3.0 * np.sqrt(rng.random(n)))
    z[:, 5] = rng.standard_normal(n)
    z[:, :4] = _ball(rng, n, 4, math.sqrt(6.0))
    return z


def _cut_normal_pair(rng: np.random.Generator, n: int, cut: float) -> np.ndarray:
    """``(n, 2)`` samples of ImpactX ``Gaussian.H``'s truncated plane: the 2D normal
    restricted to the circle of radius ``cut`` (rms units), scaled to unit variance."""
    w, angle = rng.random((2, n))
    f = cut * cut / 2.0
    ef = math.exp(-f)
    scale = 1.0 - f * ef / (1.0 - ef)
    radius = np.sqrt(-2.0 * np.log1p(-w * (1.0 - ef)) / scale)
    angle = 2.0 * math.pi * angle
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def _kv(rng: np.random.Generator, n: int) -> np.ndarray:
    """ImpactX ``KVdist.H`` (vectorised), unit covariance: (x, y) = 2 sqrt(v) (cos, sin) phi,
    (px, py) = 2 sqrt(1 - v) (cos, sin) beta, t = sqrt(3) (2 u - 1), pt normal."""
    v, phi, beta, t = rng.random((4, n))
    r = np.sqrt(v)
    p = np.sqrt(1.0 - v)
    phi, beta = 2.0 * math.pi * phi, 2.0 * math.pi * beta
    z = np.empty((n, 6))
    z[:, 0], z[:, 2] = 2.0 * r * np.cos(phi), 2.0 * r * np.sin(phi)
    z[:, 1], z[:, 3] = 2.0 * p * np.cos(beta), 2.0 * p * np.sin(beta)
    z[:, 4] = math.sqrt(3.0) * (2.0 * t - 1.0)
    z[:, 5] = rng.standard_normal(n)
    return z


def _semigaussian(rng: np.random.Generator, n: int) -> np.ndarray:
    """ImpactX ``Semigaussian.H`` (vectorised), unit covariance: (x, y) = 2 sqrt(v)
    (cos, sin) phi, t = sqrt(3) (2 u - 1), (px, py, pt) normal."""
    phi, v, t = rng.random((3, n))
    r = 2.0 * np.sqrt(v)
    phi = 2.0 * math.pi * phi
    z = np.empty((n, 6))
    z[:, 0], z[:, 2] = r * np.cos(phi), r * np.sin(phi)
    z[:, 4] = math.sqrt(3.0) * (2.0 * t - 1.0)
    z[:, [1, 3, 5]] = rng.standard_normal((n, 3))
    return z


def unit_samples(distribution: str, n: int, seed: int,
                 cut: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """``(n, 6)`` float64 samples of a distribution shape with unit covariance (seeded);
    ``cut``: a ``gaussian``'s truncation radius per plane (x, y, t; 0: uncut)."""
    rng = np.random.default_rng(seed)
    if distribution == "gaussian" and any(cut):
        z = rng.standard_normal((n, 6))
        for plane, radius in enumerate(cut):
            if radius > 0.0:
                z[:, 2 * plane:2 * plane + 2] = _cut_normal_pair(rng, n, radius)
        return z
    if distribution == "gaussian":
        return rng.standard_normal((n, 6))
    if distribution == "waterbag":
        return _ball(rng, n, 6, math.sqrt(8.0))
    if distribution == "kv":
        return _kv(rng, n)
    if distribution == "semigaussian":
        return _semigaussian(rng, n)
    if distribution == "kurth6d":
        return _kurth6d(rng, n)
    if distribution == "kurth4d":
        return _kurth4d(rng, n)
    if distribution == "triangle":
        return _triangle(rng, n)
    if distribution == "thermal":
        raise ValueError("distribution 'thermal' is drawn from its parameters "
                         "(thermal_particles), not from unit samples")
    raise ValueError(f"unknown distribution {distribution!r}")


def beam_unit_samples(beam: Beam, n: int) -> np.ndarray:
    """:func:`unit_samples` of a beam's shape (its ``gaussian_cut`` included), its seed."""
    cut = beam.gaussian_cut
    return unit_samples(beam.distribution, n, beam.seed,
                        (0.0, 0.0, 0.0) if cut is None else (cut.x, cut.y, cut.t))


#: Vacuum permittivity [F/m], the value ImpactX 26.10 computes with (CODATA 2022; ablastr
#: ``constant.H``).
EPSILON_0 = 8.8541878188e-12


def thermal_radial_cdfs(beam: Beam) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The tabulated radial CDFs of the core and the halo of a ``thermal`` beam and the
    radii ``(r_min, r_max)`` [m] they span: ImpactX ``Thermal.H`` ``ThermalData``
    (``generate_radial_dist``), step by step. With C = q Q / (beta gamma^2 E_rest eps0)
    (Q the bunch charge [C], E_rest [eV]), the matched scale r_s = sqrt(kT_eff + (a k)^(2/3))
    / k, a = C / (20 pi sqrt(5)), kT_eff = (1 - w) kT + w kT_halo; on r in [1e-10, 10] r_s
    (2000 Strang-split steps) the cumulative charges f_i and potentials phi_i obey

        dphi_i/dr = -f_i / (4 pi r^2),
        df_i/dr = 4 pi r^2 p_i exp(-(k^2 r^2 / 2 + C ((1 - w) phi_1 + w phi_2)) / kT_i),

    p_i = normalize_i / (r_s sqrt(2 pi))^3. Each CDF is divided by its last entry, all but
    that entry itself (as ImpactX leaves it)."""
    thermal = beam.thermal
    assert thermal is not None
    reference = beam.reference
    bg = reference.beta_gamma
    intensity = (reference.charge_qe * beam.bunch_charge_C
                 / (bg**2 * reference.mass_eV * EPSILON_0))
    k, t1, t2, w = thermal.k, thermal.kT, thermal.kT_halo, thermal.halo
    a = intensity / (4.0 * math.pi * 5.0 * math.sqrt(5.0))
    r_scale = math.sqrt((1.0 - w) * t1 + w * t2 + (a * k) ** (2.0 / 3.0)) / k
    rmin, rmax, steps = 1.0e-10 * r_scale, 10.0 * r_scale, 2000
    p_scale = (r_scale * math.sqrt(2.0 * math.pi)) ** -3
    p1, p2 = thermal.normalize * p_scale, thermal.normalize_halo * p_scale
    c1, c2 = (1.0 - w) * intensity, w * intensity
    tau = (rmax - rmin) / steps
    half = 0.5 * tau
    four_pi = 4.0 * math.pi
    f1 = f2 = phi1 = phi2 = 0.0
    r = rmin
    cdf1, cdf2 = np.zeros(steps + 1), np.zeros(steps + 1)
    for j in range(steps):
        for stage in range(3):
            if stage == 1:   # map2 (a full step): the charges grow at fixed r
                potential = (k * r) ** 2 * 0.5 + c1 * phi1 + c2 * phi2
                f1 += tau * four_pi * r * r * p1 * math.exp(-potential / t1)
                f2 += tau * four_pi * r * r * p2 * math.exp(-potential / t2)
            else:            # map1 (a half step): r advances, the potentials follow
                moved = r + half
                phi1 += f1 / (four_pi * moved) - f1 / (four_pi * r)
                phi2 += f2 / (four_pi * moved) - f2 / (four_pi * r)
                r = moved
        cdf1[j + 1], cdf2[j + 1] = f1, f2
    cdf1[:-1] /= cdf1[-1]
    cdf2[:-1] /= cdf2[-1]
    return cdf1, cdf2, rmin, rmax


def thermal_particles(beam: Beam, n: int) -> np.ndarray:
    """``(n, 6)`` particles of a ``thermal`` beam (seeded), ImpactX ``Thermal.H``: halo with
    probability ``halo`` (u <= w), momenta (px, py, p_z) = sqrt(kT_i) (normal), position
    r (cos, sin) on the unit sphere with r from that population's radial CDF
    (:func:`thermal_radial_cdfs`, linear inside a bin); then t = -z / (beta gamma),
    pt = -p_z beta gamma (the beam frame to the laboratory)."""
    thermal = beam.thermal
    assert thermal is not None
    cdf1, cdf2, rmin, rmax = thermal_radial_cdfs(beam)
    rng = np.random.default_rng(beam.seed)
    halo = rng.random(n) <= thermal.halo
    normals = rng.standard_normal((n, 6))
    kt = np.where(halo, thermal.kT_halo, thermal.kT)
    momenta = np.sqrt(kt)[:, None] * normals[:, 3:]
    direction = normals[:, :3] / np.linalg.norm(normals[:, :3], axis=1, keepdims=True)
    u = rng.random(n)
    bins = len(cdf1) - 1
    radius = np.empty(n)
    for cdf, chosen in ((cdf1, ~halo), (cdf2, halo)):
        below = np.searchsorted(cdf, u[chosen], side="left")   # std::lower_bound
        off = np.clip(below - 1, 0, bins - 1)
        tv = (u[chosen] - cdf[off]) / (cdf[off + 1] - cdf[off])
        radius[chosen] = rmin + (rmax - rmin) * (off + tv) / bins
    position = direction * radius[:, None]
    bg = beam.reference.beta_gamma
    out = np.empty((n, 6))
    out[:, 0], out[:, 2], out[:, 4] = position[:, 0], position[:, 1], -position[:, 2] / bg
    out[:, 1], out[:, 3], out[:, 5] = momenta[:, 0], momenta[:, 1], -momenta[:, 2] * bg
    return out


def dispersion_factor(beam: Beam, overrides: dict[str, Any] | None = None, xp=np):
    """The 6x6 map of the beam's ``dispersion`` (identity without one): x -= D_x pt,
    px -= D_px pt, y -= D_y pt, py -= D_py pt (ImpactX's ``dispX`` ... of every
    ``src/particles/distribution/*.H``, applied before the centroid); ``overrides`` maps
    ``dispersion.x`` etc. to values (tensors: differentiable)."""
    overrides = overrides or {}
    dispersion = beam.dispersion
    names = ("x", "px", "y", "py")
    values = {f"dispersion.{k}": overrides.get(f"dispersion.{k}", float(
        getattr(dispersion, k) if dispersion is not None else 0.0)) for k in names}
    if xp is np and all(isinstance(v, float) for v in values.values()):
        out = np.eye(6)
        for row, name in enumerate(names):
            out[row, 5] = -values[f"dispersion.{name}"]
        return out
    values, xp = _as_one_kind(values)
    ref = next(iter(values.values()))
    one, zero = ref * 0.0 + 1.0, ref * 0.0
    rows = []
    for row in range(6):
        entries = [one if column == row else zero for column in range(6)]
        if row < 4:
            entries[5] = -values[f"dispersion.{names[row]}"]
        rows.append(xp.stack(entries))
    return xp.stack(rows)


def _namespace(values: list[Any]):
    """torch if any value is a tensor, else numpy."""
    for value in values:
        if type(value).__module__.startswith("torch"):
            import torch

            return torch
    return np


def plane_factor(beta, alpha, emittance, xp=np):
    """Lower-triangular 2x2 factor of eps*[[beta, -alpha], [-alpha, gamma]] (beta [m])."""
    a = (emittance * beta) ** 0.5
    b = (emittance / beta) ** 0.5
    zero = a * 0.0
    return xp.stack([xp.stack([a, zero]), xp.stack([-alpha * b, b])])


def longitudinal_factor(sigma_t, sigma_pt, correlation, xp=np):
    """Lower-triangular 2x2 factor of a (u, p_u) covariance with rms sizes and correlation r."""
    zero = sigma_t * 0.0
    return xp.stack([
        xp.stack([sigma_t, zero]),
        xp.stack([correlation * sigma_pt, (1.0 - correlation**2) ** 0.5 * sigma_pt]),
    ])


def beam_covariance(beam: Beam) -> np.ndarray:
    """The beam's 6x6 covariance L L^T (L = :func:`beam_cholesky`, the factor that shapes
    the sampler's unit-covariance draws, so generated particles have it in expectation), in
    ImpactX units: the initial matrix of envelope tracking."""
    factor = np.asarray(beam_cholesky(beam), dtype=np.float64)
    return factor @ factor.T


def beam_cholesky(beam: Beam, overrides: dict[str, Any] | None = None):
    """The 6x6 factor F (F F^T = Sigma) of a beam that maps its unit samples to particles:
    lower triangular (L) without ``dispersion``, ``D L`` with it (:func:`dispersion_factor`);
    ``overrides`` maps ``twiss.beta_x``, ``dispersion.x`` etc. to values (floats or torch
    tensors, which makes F differentiable). A ``thermal`` beam has none (ScenarioError)."""
    overrides = overrides or {}
    if beam.distribution == "thermal":
        raise ScenarioError(None, "beam.distribution", "a distribution with a stated "
                            "covariance ('thermal' is a numerical profile with none)",
                            "thermal")
    factor = _undispersed_factor(beam, overrides)
    if beam.dispersion is None and not any(k.startswith("dispersion.") for k in overrides):
        return factor
    dispersion = dispersion_factor(beam, overrides, _namespace([factor]))
    if _namespace([factor, dispersion]) is np:
        return dispersion @ factor
    import torch

    ref = factor if isinstance(factor, torch.Tensor) else dispersion
    return (torch.as_tensor(dispersion, dtype=ref.dtype, device=ref.device)
            @ torch.as_tensor(factor, dtype=ref.dtype, device=ref.device))


def _undispersed_factor(beam: Beam, overrides: dict[str, Any]):
    """The lower-triangular factor L (L L^T = Sigma) of a beam's ellipse, before dispersion."""
    if beam.sigma_matrix is not None:
        sigma = np.asarray(beam.sigma_matrix, dtype=np.float64)
        try:
            return np.linalg.cholesky(sigma)
        except np.linalg.LinAlgError:
            raise ScenarioError(None, "beam.sigma_matrix", "a symmetric positive-definite "
                                "matrix") from None

    if beam.rms is not None:
        return _rms_cholesky(beam, overrides)
    if beam.ellipse is not None:
        return _ellipse_cholesky(beam, overrides)

    twiss, plane = beam.twiss, beam.longitudinal
    if twiss is None or plane is None:
        raise ScenarioError(None, "beam", "'twiss' with 'longitudinal', 'ellipse', 'rms' or "
                            "'sigma_matrix'")
    values = {f"twiss.{k}": overrides.get(f"twiss.{k}", float(getattr(twiss, k)))
              for k in type(twiss).model_fields}
    values.update({f"longitudinal.{k}": overrides.get(f"longitudinal.{k}", v)
                   for k, v in plane.given().items()})
    values, xp = _as_one_kind(values)
    if plane.is_twiss:
        longitudinal = plane_factor(values["longitudinal.beta_t"],
                                    values["longitudinal.alpha_t"],
                                    values["longitudinal.emittance_t"], xp)
    else:
        longitudinal = longitudinal_factor(values["longitudinal.sigma_t"],
                                           values["longitudinal.sigma_pt"],
                                           values["longitudinal.correlation"], xp)
    blocks = [
        plane_factor(values["twiss.beta_x"], values["twiss.alpha_x"],
                     values["twiss.emittance_x"], xp),
        plane_factor(values["twiss.beta_y"], values["twiss.alpha_y"],
                     values["twiss.emittance_y"], xp),
        longitudinal,
    ]
    return _block_diag(blocks, xp)


def ellipse_factor(lam, lam_p, mu, xp=np):
    """ImpactX's per-plane transform of unit samples (u, v) as a lower-triangular 2x2 factor:
    ``x = lam u / r``, ``p = lam_p (v - mu u / r)``, ``r = sqrt(1 - mu^2)``
    (``src/particles/distribution/Gaussian.H``); it is the Cholesky factor of the plane's
    covariance [[lam^2, -mu lam lam_p], [-mu lam lam_p, lam_p^2]] / r^2."""
    root = (1.0 - mu * mu) ** 0.5
    zero = lam * 0.0
    return xp.stack([xp.stack([lam / root, zero]), xp.stack([-mu * lam_p / root, lam_p])])


def ellipse_to_twiss(lam, lam_p, mu) -> tuple[float, float, float]:
    """ImpactX's (lambda, lambda_p, mu) of one plane as Twiss (beta [m], alpha, eps [m rad]):
    eps = lam lam_p / r, beta = lam / (lam_p r), alpha = mu / r with r = sqrt(1 - mu^2)
    (the inverse of ImpactX's ``twiss()`` helper); needs lam_p > 0."""
    root = math.sqrt(1.0 - mu * mu)
    return lam / (lam_p * root), mu / root, lam * lam_p / root


def _ellipse_cholesky(beam: Beam, overrides: dict[str, Any]):
    """Block-diagonal factor of ImpactX's lambda/mu input (see :class:`Ellipse`)."""
    values, xp = _group_values(beam.ellipse, "ellipse", overrides)
    blocks = [ellipse_factor(values[f"ellipse.lambda{u.upper()}"],
                             values[f"ellipse.lambdaP{u}"], values[f"ellipse.mu{u}p{u}"], xp)
              for u in ("x", "y", "t")]
    return _block_diag(blocks, xp)


def _group_values(group: Any, prefix: str, overrides: dict[str, Any]
                  ) -> tuple[dict[str, Any], Any]:
    """The fields of a beam's ``group`` (its ``rms`` or ``ellipse`` block) as
    ``{"<prefix>.<field>": value}``, each from ``overrides`` where it has one (gradient
    parameters), else the scenario's float; :func:`_as_one_kind` of them."""
    assert group is not None
    return _as_one_kind({f"{prefix}.{k}": overrides.get(f"{prefix}.{k}",
                                                        float(getattr(group, k)))
                         for k in type(group).model_fields})


def _as_one_kind(values: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Parameter values as all floats (numpy) or all tensors on the first tensor's device and
    dtype (torch), with the array namespace to build the factor in."""
    xp = _namespace(list(values.values()))
    if xp is not np:
        ref = next(v for v in values.values() if type(v).__module__.startswith("torch"))
        values = {k: v if type(v).__module__.startswith("torch")
                  else xp.tensor(v, dtype=ref.dtype, device=ref.device)
                  for k, v in values.items()}
    return values, xp


def _rms_cholesky(beam: Beam, overrides: dict[str, Any]):
    """Block-diagonal factor from rms sizes and per-plane correlations (cold beams allowed)."""
    values, xp = _group_values(beam.rms, "rms", overrides)
    blocks = [longitudinal_factor(values[f"rms.sigma_{u}"], values[f"rms.sigma_p{u}"],
                                  values[f"rms.corr_{u}"], xp) for u in ("x", "y", "t")]
    return _block_diag(blocks, xp)


def _block_diag(blocks, xp):
    if xp is np:
        out = np.zeros((6, 6))
        for i, block in enumerate(blocks):
            out[2 * i:2 * i + 2, 2 * i:2 * i + 2] = block
        return out
    return xp.block_diag(*blocks)


#: Largest binary particle file read (.npz, openPMD .h5) [bytes]; also the most an .npz
#: archive may hold once decompressed.
MAX_PARTICLE_FILE_BYTES = 2**30
#: Largest .csv particle file read [bytes] (parsing takes a few times its size in memory).
MAX_CSV_BYTES = 256 * 2**20


def load_particle_file(path: str | Path, reference=None, probes: bool = False) -> np.ndarray:
    """Read ``(N, 6)`` particles from ``.npz`` (key ``particles`` or one key per coordinate),
    ``.csv`` (header x,px,y,py,t,pt) or openPMD HDF5 (``.h5``, converted for ``reference``,
    see :mod:`harness.model.openpmd`), each a regular file of bounded size, and check them
    (:func:`check_particles`; ``probes``: a beam's ``linear_probes``, no forward-motion
    check). Every failure is one ScenarioError naming the file."""
    path = Path(path)
    from harness.model.openpmd import SUFFIXES, read_openpmd
    from harness.model.yaml_load import check_regular_file, read_regular_file

    if path.suffix in SUFFIXES and reference is not None:
        check_regular_file(path, MAX_PARTICLE_FILE_BYTES, "beam.file")  # h5py takes a path
        out = read_openpmd(path, reference)
    elif path.suffix == ".npz":
        out = _read_npz(path, read_regular_file(path, MAX_PARTICLE_FILE_BYTES, "beam.file"))
    elif path.suffix == ".csv":
        out = _read_csv(path, read_regular_file(path, MAX_CSV_BYTES, "beam.file"))
    else:
        raise ScenarioError(path, "beam.file", "a .npz or .csv particle file (or an openPMD "
                            ".h5 file with the beam's reference particle)", path.suffix)
    check_particles(out, path, None if probes else reference)
    return out


def _numbers(path: Path, name: str, array: np.ndarray) -> np.ndarray:
    """An array of real numbers as float64 (ScenarioError for text, objects, complex)."""
    if array.dtype.kind not in "fiu":
        raise ScenarioError(path, "beam.file", f"real numbers in {name!r}", str(array.dtype))
    return np.asarray(array, dtype=np.float64)


def _read_npz(path: Path, data: bytes) -> np.ndarray:
    """The particles of an ``.npz`` archive's bytes (no pickles; the decompressed size is
    checked before anything is decompressed)."""
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
        if unpacked > MAX_PARTICLE_FILE_BYTES:
            raise ScenarioError(path, "beam.file", "an .npz archive of at most "
                                f"{MAX_PARTICLE_FILE_BYTES // 2**20} MiB once decompressed",
                                f"{unpacked:,} bytes")
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            if "particles" in archive:
                return _numbers(path, "particles", archive["particles"])
            missing = [c for c in COLUMNS if c not in archive]
            if missing:
                raise ScenarioError(path, "beam.file", "an .npz archive with 'particles' "
                                    f"(N, 6) or the arrays {list(COLUMNS)}", sorted(archive))
            columns = [_numbers(path, c, archive[c]) for c in COLUMNS]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
        raise ScenarioError(path, "beam.file", "a readable .npz archive of numbers "
                            f"({type(error).__name__}: {error})") from None
    if len({c.shape for c in columns}) != 1 or columns[0].ndim != 1:
        raise ScenarioError(path, "beam.file", "one-dimensional coordinate arrays of one "
                            "length", [c.shape for c in columns])
    return np.stack(columns, 1)


def _read_csv(path: Path, data: bytes) -> np.ndarray:
    """The particles of a ``.csv`` file's bytes (header x,px,y,py,t,pt)."""
    import io

    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(data))
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as error:
        raise ScenarioError(path, "beam.file", "a readable .csv file with the header "
                            f"x,px,y,py,t,pt ({type(error).__name__})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ScenarioError(path, "beam.file", f"the columns {list(COLUMNS)}", missing)
    try:
        return frame[list(COLUMNS)].to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise ScenarioError(path, "beam.file", "numbers in every column") from None


def check_particles(particles: np.ndarray, path: str | Path | None = None,
                    reference=None) -> None:
    """Particles a tracker can take (ScenarioError naming ``path`` otherwise): an ``(N, 6)``
    array, 1 <= N <= the scenario cap, finite, and, with the ``reference`` particle, each
    moving forward: its energy E = E_ref - pt p0c above its rest energy and its momentum
    along s, p_s^2 = p^2 - (px^2 + py^2) p0^2, positive (ImpactX's coordinates)."""
    from harness.model.limits import MAX_PARTICLES

    if particles.ndim != 2 or particles.shape[1] != 6:
        raise ScenarioError(path, "beam.file", "an (N, 6) array", particles.shape)
    if not 1 <= len(particles) <= MAX_PARTICLES:
        raise ScenarioError(path, "beam.file", f"1 to {MAX_PARTICLES:,} particles",
                            len(particles))
    finite = np.isfinite(particles)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        raise ScenarioError(path, "beam.file", f"finite coordinates (particle {row}, "
                            f"{COLUMNS[column]} is {particles[row, column]})")
    if reference is None:
        return
    p0c = reference.p0c_eV
    energy = reference.total_energy_eV - particles[:, 5] * p0c
    momentum2 = (energy / p0c) ** 2 - (reference.mass_eV / p0c) ** 2   # (p / p0)^2
    forward2 = momentum2 - particles[:, 1] ** 2 - particles[:, 3] ** 2
    with np.errstate(invalid="ignore"):
        bad = ~(forward2 > 0.0)
    if bad.any():
        row = int(np.argmax(bad))
        raise ScenarioError(path, "beam.file", "particles moving forward (energy above the "
                            f"rest energy and p_s > 0; particle {row} is at rest or moves "
                            "backward or sideways)", particles[row].tolist())


def generate(beam: Beam, n: int | None = None, base_dir: Path | None = None) -> np.ndarray:
    """Draw the initial particles of a beam: ``(n, 6)`` float64, deterministic for its seed,
    shifted by the beam's ``centroid`` when it has one; ``(n, 9)`` with the spins
    ``(sx, sy, sz)`` appended when the beam has a ``spin:`` block (:mod:`harness.model.spin`)."""
    n = beam.particles if n is None else int(n)
    if beam.distribution == "file":
        path = Path(beam.file or "")
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        data = load_particle_file(path, beam.reference, beam.linear_probes)
        if n > len(data):
            raise ScenarioError(path, "beam.particles", f"at most {len(data)} particles", n)
        particles = data[:n].copy()
    elif beam.distribution == "thermal":
        particles = thermal_particles(beam, n) @ dispersion_factor(beam).T
        if beam.centroid is not None:
            particles += np.asarray(beam.centroid.vector(), dtype=np.float64)
    else:
        z = beam_unit_samples(beam, n)
        particles = z @ beam_cholesky(beam).T
        if beam.centroid is not None:
            particles += np.asarray(beam.centroid.vector(), dtype=np.float64)
    if beam.spin is None:
        return particles
    from harness.model.spin import initial_spins, with_spins

    return with_spins(particles, initial_spins(beam, n, base_dir))


def generate_torch(beam: Beam, n: int, overrides: dict[str, Any], dtype=None, device=None):
    """Reparameterised sampling: the same particles as :func:`generate`, built in the torch
    graph from beam parameter tensors in ``overrides`` (e.g. ``{"twiss.beta_x": t}``)."""
    import torch

    if beam.distribution == "thermal":
        if overrides:
            raise ScenarioError(None, "gradients", "beam parameters of a distribution with a "
                                "stated covariance ('thermal' has none)", sorted(overrides))
        return torch.as_tensor(generate(beam, n)[:, :6], dtype=dtype, device=device)
    z = torch.as_tensor(beam_unit_samples(beam, n), dtype=dtype, device=device)
    factor = beam_cholesky(beam, overrides)
    if not isinstance(factor, torch.Tensor):
        factor = torch.as_tensor(factor, dtype=dtype, device=device)
    particles = z @ factor.to(dtype=z.dtype).T
    if beam.centroid is not None:
        particles = particles + torch.as_tensor(beam.centroid.vector(), dtype=z.dtype,
                                                device=z.device)
    return particles
