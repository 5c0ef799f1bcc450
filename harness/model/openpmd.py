"""openPMD particle files (HDF5, openPMD-beamphysics ``ParticleGroup``) <-> ImpactX
coordinates.

openPMD-beamphysics holds each particle's position x, y, z [m], time t [s] and momentum
p_x, p_y, p_z [eV/c]. With the reference particle's momentum p_ref c and total energy
E_ref (the scenario's species and kinetic energy, harness rest energies), ImpactX's
coordinates at the common position z are (ImpactX's conventions, ``src/particles``)::

    x  = x                    px = p_x / p_ref           y  = y      py = p_y / p_ref
    t  = c (t_particle - t_ref)  [m]   (later arrival: t > 0)
    pt = -(E - E_ref) / (p_ref c),    E = sqrt((p c)^2 + (m c^2)^2),  p^2 = p_x^2 + p_y^2 + p_z^2

with ``t_ref`` the weighted mean arrival time of the bunch (a file carries no reference
particle). A bunch given at one time (all t equal, z spread) is first drifted in free space
to its mean z (``ParticleGroup.drift_to_z``). Writing inverts these formulas at z = 0 and
t_ref = 0 (lost particles, rows with NaN, get ``particleStatus`` 0).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from harness.model.errors import ScenarioError
from harness.model.reference_particle import C_LIGHT, SPECIES, ReferenceParticle

#: File suffixes read as openPMD HDF5.
SUFFIXES: tuple[str, ...] = (".h5", ".hdf5")


#: Most bytes the datasets of an openPMD file may hold once read (compressed datasets
#: included): checked from the file's metadata before any dataset is read.
MAX_DATA_BYTES = 2**30


def _check_dataset_sizes(path: Path) -> None:
    """Refuse a file whose datasets would take more than :data:`MAX_DATA_BYTES` in memory
    (a small compressed file can hold an enormous dataset)."""
    import h5py

    total = 0

    def visit(_name: str, item) -> None:
        nonlocal total
        if isinstance(item, h5py.Dataset):
            total += int(item.size) * int(item.dtype.itemsize)

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(visit)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ScenarioError(path, "beam.file", "a readable openPMD HDF5 particle file "
                            f"({type(error).__name__}: {error})") from None
    if total > MAX_DATA_BYTES:
        raise ScenarioError(path, "beam.file", f"datasets of at most "
                            f"{MAX_DATA_BYTES // 2**20} MiB in all", f"{total:,} bytes")


def _particle_group(path: Path):
    from beamphysics import ParticleGroup

    _check_dataset_sizes(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ParticleGroup(h5=str(path))
    except KeyError as error:
        raise ScenarioError(path, "beam.file", "an openPMD particle file with position, "
                            f"momentum and time records (missing {error.args[0]!r})") from None
    except (OSError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise ScenarioError(path, "beam.file", "a readable openPMD HDF5 particle file "
                            f"({type(error).__name__}: {error})") from None


def _group_and_species(path: Path) -> tuple[Any, str]:
    """The file's particle group and its species, one the harness knows (else refused)."""
    group = _particle_group(path)
    species = str(group.species)
    if species not in SPECIES:
        raise ScenarioError(path, "beam.file", f"particles of a trackbench species "
                            f"{sorted(SPECIES)}", species)
    return group, species


def read_openpmd(path: str | Path, reference: ReferenceParticle) -> np.ndarray:
    """``(N, 6)`` ImpactX coordinates of an openPMD particle file for ``reference``."""
    path = Path(path)
    group, species = _group_and_species(path)
    if species != reference.species:
        raise ScenarioError(path, "beam.species", f"the file's species {species!r}",
                            reference.species)
    if len(group) == 0:
        raise ScenarioError(path, "beam.file", "at least one particle", 0)
    if not np.all(group.status == 1):
        raise ScenarioError(path, "beam.file", "only live particles (particleStatus 1)",
                            int(np.sum(group.status != 1)))
    weight = np.asarray(group.weight, dtype=np.float64)
    if not np.allclose(weight, weight[0], rtol=1e-12, atol=0.0):
        raise ScenarioError(path, "beam.file", "equal macro-particle weights (trackbench "
                            "particles are unweighted)")
    z = np.asarray(group.z, dtype=np.float64)
    if np.ptp(z) > 0:
        if np.ptp(np.asarray(group.t)) > 0:
            raise ScenarioError(path, "beam.file", "particles at one position z (or at one "
                                "time t, which are drifted to their mean z)")
        group = group.copy()
        group.drift_to_z()
    columns = {k: np.asarray(getattr(group, k), dtype=np.float64)
               for k in ("x", "px", "y", "py", "pz", "t")}
    for key, value in columns.items():
        if not np.all(np.isfinite(value)):
            raise ScenarioError(path, "beam.file", f"finite {key} values (no NaN or inf)")
    p0c = reference.p0c_eV
    mass = reference.mass_eV
    pc = np.sqrt(columns["px"] ** 2 + columns["py"] ** 2 + columns["pz"] ** 2)
    energy = np.sqrt(pc**2 + mass**2)
    t_ref = float(np.average(columns["t"], weights=weight))
    return np.stack([columns["x"], columns["px"] / p0c, columns["y"], columns["py"] / p0c,
                     C_LIGHT * (columns["t"] - t_ref),
                     -(energy - reference.total_energy_eV) / p0c], axis=1)


def file_reference(path: str | Path) -> ReferenceParticle:
    """The species and mean kinetic energy of an openPMD particle file (harness masses)."""
    path = Path(path)
    group, species = _group_and_species(path)
    mass = SPECIES[species][0]
    pc = np.sqrt(np.asarray(group.px) ** 2 + np.asarray(group.py) ** 2
                 + np.asarray(group.pz) ** 2)
    kinetic = float(np.average(np.sqrt(pc**2 + mass**2) - mass, weights=group.weight))
    return ReferenceParticle(species, kinetic * 1e-6)


def write_openpmd(path: str | Path, particles: np.ndarray, reference: ReferenceParticle,
                  charge_C: float = 0.0) -> Path:
    """Write ``(N, 6)`` ImpactX coordinates as an openPMD HDF5 file at z = 0, t_ref = 0.

    ``charge_C``: the bunch charge; macro-particle weights are ``charge_C / N`` (1/N
    when it is 0, so that weighted statistics stay defined)."""
    from beamphysics import ParticleGroup

    path = Path(path)
    particles = np.asarray(particles, dtype=np.float64)
    if particles.ndim != 2 or particles.shape[1] != 6:
        raise ValueError(f"particles: expected an (N, 6) array, got {particles.shape}")
    alive = np.all(np.isfinite(particles), axis=1)
    safe = np.where(alive[:, None], particles, 0.0)
    x, px, y, py, t, pt = safe.T
    p0c = reference.p0c_eV
    energy = reference.total_energy_eV - pt * p0c
    pc = np.sqrt(np.maximum(energy**2 - reference.mass_eV**2, 0.0))
    p_x, p_y = px * p0c, py * p0c
    pz = np.sqrt(np.maximum(pc**2 - p_x**2 - p_y**2, 0.0))
    n = len(particles)
    weight = (charge_C / n if charge_C > 0 else 1.0 / max(n, 1)) * np.ones(n)
    data = {"x": x, "px": p_x, "y": y, "py": p_y, "z": np.zeros(n), "pz": pz,
            "t": t / C_LIGHT, "status": alive.astype(np.int64), "weight": weight,
            "species": reference.species}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ParticleGroup(data=data).write(str(path))
    return path


def describe_conversion() -> str:
    """The conversion formula (for help texts)."""
    return ("x, px = p_x/p_ref, y, py = p_y/p_ref, t = c (t - t_ref) [m], "
            "pt = -(E - E_ref)/(p_ref c)")


__all__ = ["SUFFIXES", "describe_conversion", "file_reference", "read_openpmd",
           "write_openpmd"]
