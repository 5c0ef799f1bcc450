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


def unit_samples(distribution: str, n: int, seed: int) -> np.ndarray:
    """``(n, 6)`` float64 samples of a distribution shape with unit covariance (seeded)."""
    rng = np.random.default_rng(seed)
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
    raise ValueError(f"unknown distribution {distribution!r}")


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
    """The 6x6 factor L (L L^T = Sigma) of a beam; ``overrides`` maps ``twiss.beta_x`` etc. to
    values (floats or torch tensors, which makes L differentiable)."""
    overrides = overrides or {}
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
    ellipse = beam.ellipse
    assert ellipse is not None
    values = {f"ellipse.{k}": overrides.get(f"ellipse.{k}", float(getattr(ellipse, k)))
              for k in type(ellipse).model_fields}
    values, xp = _as_one_kind(values)
    blocks = [ellipse_factor(values[f"ellipse.lambda{u.upper()}"],
                             values[f"ellipse.lambdaP{u}"], values[f"ellipse.mu{u}p{u}"], xp)
              for u in ("x", "y", "t")]
    return _block_diag(blocks, xp)


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
    rms = beam.rms
    assert rms is not None
    values = {f"rms.{k}": overrides.get(f"rms.{k}", float(getattr(rms, k)))
              for k in type(rms).model_fields}
    values, xp = _as_one_kind(values)
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


def load_particle_file(path: str | Path, reference=None) -> np.ndarray:
    """Read ``(N, 6)`` particles from ``.npz`` (key ``particles`` or one key per coordinate),
    ``.csv`` (header x,px,y,py,t,pt) or openPMD HDF5 (``.h5``, converted for ``reference``,
    see :mod:`harness.model.openpmd`), each a regular file of bounded size, and check them
    (:func:`check_particles`). Every failure is one ScenarioError naming the file."""
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
    check_particles(out, path, reference)
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
        data = load_particle_file(path, beam.reference)
        if n > len(data):
            raise ScenarioError(path, "beam.particles", f"at most {len(data)} particles", n)
        particles = data[:n].copy()
    else:
        z = unit_samples(beam.distribution, n, beam.seed)
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

    z = torch.as_tensor(unit_samples(beam.distribution, n, beam.seed), dtype=dtype,
                        device=device)
    factor = beam_cholesky(beam, overrides)
    if not isinstance(factor, torch.Tensor):
        factor = torch.as_tensor(factor, dtype=dtype, device=device)
    particles = z @ factor.to(dtype=z.dtype).T
    if beam.centroid is not None:
        particles = particles + torch.as_tensor(beam.centroid.vector(), dtype=z.dtype,
                                                device=z.device)
    return particles
