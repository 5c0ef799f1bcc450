"""Initial spins of a beam with a ``spin:`` block: drawn from a polarisation vector or read
from a file, as the three extra particle columns ``(sx, sy, sz)``.

A scenario whose beam has a ``spin:`` block tracks particles of nine columns,
``(x, px, y, py, t, pt, sx, sy, sz)``: the six canonical coordinates of ImpactX, then the
unit spin vector in the Frenet-Serret frame of the reference orbit (x horizontal, y
vertical, z along the orbit; dimensionless). Without a ``spin:`` block particles keep their
six columns.

* ``polarization: [Px, Py, Pz]``, 0 < |P| <= 1: spins drawn from ImpactX's von Mises-Fisher
  law (``src/particles/distribution/SpinvMF.H``; :func:`sample_vmf`) with the block's own
  ``seed`` (default: a stream derived from the beam's seed, never the phase-space one);
* ``file: spins.npy | spins.csv``: per-particle ``(N, 3)`` spin vectors (a ``.csv`` with the
  header ``sx,sy,sz``), the first ``N`` rows used for ``N`` particles: unit vectors, or of
  length |s| < 1 for a macro-particle that stands for partly polarised particles (its
  polarization vector). ImpactX takes any vector (``add_n_particles``) and every spin map
  is a rotation, so the length is carried unchanged.

The gyromagnetic anomaly G = (g - 2)/2 of each species (:data:`GYROMAGNETIC_ANOMALY`) is
ImpactX's (``RefPart.set_species`` of the impactx 26.10 wheel).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.model.errors import ScenarioError

#: Gyromagnetic anomaly G = (g - 2)/2 per species, as ImpactX's ``set_species`` sets it
#: (electron and positron: CODATA 2018).
GYROMAGNETIC_ANOMALY: dict[str, float] = {
    "electron": 0.00115965218062,
    "positron": 0.00115965218062,
    "proton": 1.7928473446,
    "Hminus": 1.7928473446,
}

#: Spin columns after the six coordinates.
SPIN_COLUMNS: tuple[str, ...] = ("sx", "sy", "sz")

#: Column index of each spin component in a ``(N, 9)`` particle array.
SPIN_INDEX: dict[str, int] = {"sx": 6, "sy": 7, "sz": 8}

#: Spin observables (dimensionless): means, |<s>| and population standard deviations.
SPIN_OBSERVABLES: tuple[str, ...] = ("mean_sx", "mean_sy", "mean_sz", "polarization",
                                     "sigma_sx", "sigma_sy", "sigma_sz")

#: Largest excess of a spin's length over 1 accepted in a spin file.
UNIT_TOLERANCE = 1e-12

#: Largest spin file read [bytes].
MAX_SPIN_FILE_BYTES = 2**30

#: Added to the beam's seed for the default spin stream (distinct from the phase-space one).
SPIN_STREAM = 0x5350494E


def sample_vmf(polarization: Sequence[float], n: int, seed: int | Sequence[int]
               ) -> np.ndarray:
    """``(n, 3)`` unit spins from ImpactX's von Mises-Fisher distribution
    (``src/particles/distribution/SpinvMF.H``): mean direction P/|P|, concentration kappa
    from ImpactX's approximate inverse Langevin function
    kappa = 3|P| + |P|^2/5 sin(7|P|/2) + |P|^3/(1 - |P|); cos(angle to the mean)
    t = 1 + log1p(u (exp(-2 kappa) - 1))/kappa, azimuth uniform; |P| = 1 gives every spin
    along P. The same law as ImpactX's, drawn with numpy's generator for ``seed`` (not
    ImpactX's random stream)."""
    mux, muy, muz = (float(v) for v in polarization)
    pmag = math.sqrt(mux * mux + muy * muy + muz * muz)
    if not 0.0 < pmag <= 1.0:
        raise ValueError(f"spin polarization magnitude must be in (0, 1], got {pmag}")
    rng = np.random.default_rng(seed)
    x1, x2 = rng.random(n), rng.random(n)
    mux, muy, muz = mux / pmag, muy / pmag, muz / pmag
    muperp = math.hypot(mux, muy)
    a = 0.0 if muperp == 0 else mux / muperp
    b = 1.0 if muperp == 0 else muy / muperp
    if pmag == 1.0:
        t = np.ones(n)
    else:
        kappa = 3 * pmag + pmag**2 / 5 * math.sin(3.5 * pmag) + pmag**3 / (1 - pmag)
        t = 1.0 + np.log1p(x2 * np.expm1(-2.0 * kappa)) / kappa
    u = np.sqrt(np.maximum(1.0 - t * t, 0.0))
    c, s = np.cos(2 * np.pi * x1), np.sin(2 * np.pi * x1)
    sx = u * (b * c + a * muz * s) + t * mux
    sy = u * (-a * c + b * muz * s) + t * muy
    sz = u * (-muperp * s) + t * muz
    return np.stack([sx, sy, sz], axis=1)


def read_spin_file(path: str | Path) -> np.ndarray:
    """``(N, 3)`` spins of length |s| <= 1 (unit spins, or a macro-particle's polarization;
    see the module docstring) from a ``.npy`` (an ``(N, 3)`` array) or ``.csv`` (header
    ``sx,sy,sz``) file; one ScenarioError naming the file and ``beam.spin.file`` otherwise."""
    from harness.model.yaml_load import read_regular_file

    path = Path(path)
    field = "beam.spin.file"
    if path.suffix not in (".npy", ".csv"):
        raise ScenarioError(path, field, "a .npy or .csv file of (N, 3) unit spins",
                            path.suffix)
    data = read_regular_file(path, MAX_SPIN_FILE_BYTES, field)
    try:
        if path.suffix == ".npy":
            spins = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            text = data.decode("utf-8").splitlines()
            header = [h.strip() for h in text[0].split(",")] if text else []
            if header != list(SPIN_COLUMNS):
                raise ScenarioError(path, field, "a .csv header 'sx,sy,sz'",
                                    text[0] if text else "an empty file")
            spins = np.loadtxt(text[1:], delimiter=",", ndmin=2, dtype=np.float64)
    except ScenarioError:
        raise
    except (ValueError, UnicodeDecodeError, OSError) as error:
        raise ScenarioError(path, field, "a readable (N, 3) array of numbers",
                            str(error)) from None
    if spins.dtype.kind not in "fiu":
        raise ScenarioError(path, field, "real numbers", str(spins.dtype))
    spins = np.asarray(spins, dtype=np.float64)
    if spins.ndim != 2 or spins.shape[1] != 3 or len(spins) == 0:
        raise ScenarioError(path, field, "an (N, 3) array of spins (sx, sy, sz), N >= 1",
                            spins.shape)
    if not np.isfinite(spins).all():
        raise ScenarioError(path, field, "finite numbers", "NaN or inf")
    norm = np.sqrt((spins * spins).sum(axis=1))
    worst = int(np.argmax(norm))
    if norm[worst] > 1.0 + UNIT_TOLERANCE:
        raise ScenarioError(path, field, f"spin vectors of length at most 1 (within "
                            f"{UNIT_TOLERANCE:g})", f"|s| = {norm[worst]:.15g} in row {worst}")
    return spins


def spin_seed(spin: Any, beam_seed: int) -> int | list[int]:
    """The seed of the spin draw: the block's ``seed``, else the beam's seed with the spin
    stream's tag (a stream distinct from the phase space's)."""
    return int(spin.seed) if spin.seed is not None else [int(beam_seed), SPIN_STREAM]


def initial_spins(beam: Any, n: int, base_dir: Path | None = None) -> np.ndarray:
    """``(n, 3)`` initial spins of a beam with a ``spin:`` block (see the module docstring)."""
    spin = beam.spin
    if spin.file is not None:
        path = Path(spin.file)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        spins = read_spin_file(path)
        if n > len(spins):
            raise ScenarioError(path, "beam.spin.file", f"at least {n} spins (one per "
                                "particle)", f"{len(spins)} rows")
        return spins[:n].copy()
    return sample_vmf(spin.polarization, n, spin_seed(spin, beam.seed))


def with_spins(particles: np.ndarray, spins: np.ndarray) -> np.ndarray:
    """``(N, 9)`` particles: the six coordinates, then the spins."""
    return np.concatenate([np.asarray(particles, dtype=np.float64),
                           np.asarray(spins, dtype=np.float64)], axis=1)

