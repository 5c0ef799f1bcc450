"""Shared helpers of the tests/test_io_*.py files: MAD-X's own transfer matrix and
particle-by-particle tracking of a scenario with two backends."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.model.particles import generate

DATA = Path(__file__).resolve().parent / "data"


def data_copy(name: str, directory: Path) -> Path:
    """A copy of a tests/data file in ``directory`` (MAD-X writes its outputs beside it)."""
    target = directory / name
    target.write_bytes((DATA / name).read_bytes())
    return target

#: ImpactX (t, pt) = -MAD-X (T, PT): the matrix in ImpactX coordinates is S R S.
SIGNS = np.diag([1.0, 1.0, 1.0, 1.0, -1.0, -1.0])


def madx_matrix(madx, sequence: str) -> np.ndarray:
    """MAD-X's 6x6 transfer matrix of a whole beamline (TWISS RMATRIX at its end), in
    ImpactX's coordinates."""
    table = madx.twiss(sequence=sequence, betx=1.0, bety=1.0, rmatrix=True)
    r = np.array([[table[f"re{i}{j}"][-1] for j in range(1, 7)] for i in range(1, 7)])
    return SIGNS @ r @ SIGNS


def madx_file_matrix(file: Path, sequence: str | None = None) -> np.ndarray:
    """MAD-X's transfer matrix of the (USEd) sequence of a file (MAD-X runs in the file's
    directory, where the file's own TWISS output lands)."""
    from cpymad.madx import Madx

    madx = Madx(stdout=False, cwd=str(file.resolve().parent))
    try:
        madx.call(str(file.resolve()))
        if sequence:
            madx.use(sequence=sequence)
        return madx_matrix(madx, madx.sequence().name)
    finally:
        madx.quit()


def track(scenario, backend: str, particles: np.ndarray) -> np.ndarray:
    """Final particles of one backend (float64, CPU)."""
    from backends.registry import get_backend

    with get_backend(backend).prepare_single_use(scenario, "cpu", "float64") as prepared:
        return prepared.track(particles.copy())


def max_relative_deviation(a: np.ndarray, b: np.ndarray) -> float:
    """max over particles and coordinates of |a - b| / std(b) (coordinates with spread)."""
    spread = np.std(b, axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    return float(np.max(np.abs(a - b) / spread))


def impactx_vs_inhouse(scenario, n: int = 256) -> float:
    """Agreement of the in-house tracker with ImpactX on a scenario's own beam."""
    initial = generate(scenario.beam, n)
    return max_relative_deviation(track(scenario, "inhouse", initial),
                                  track(scenario, "impactx", initial))
