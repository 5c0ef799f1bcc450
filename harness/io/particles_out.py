"""Particles out of a run (``trackbench run --write-particles openpmd``): the initial
particles once per scenario and particle count, the final particles of every case, as
openPMD HDF5 files under ``DIR/particles/`` (written after the timed tracks, never timed).

* ``DIR/particles/<scenario>__N<count>__initial.h5``
* ``DIR/particles/<case id with / as __>__final.h5``

(names made safe file names by :func:`harness.names.file_name`: nothing is written
outside ``DIR/particles/``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: Formats of ``--write-particles``.
PARTICLE_FORMATS: tuple[str, ...] = ("none", "openpmd")


def particles_dir(run_directory: Path) -> Path:
    """Where a run's particle files go."""
    return Path(run_directory) / "particles"


def initial_file(run_directory: Path, scenario: str, count: int) -> Path:
    """The initial-particle file of a scenario and particle count (the name made safe by
    :func:`harness.names.file_name`; always inside ``particles/``)."""
    from harness.names import path_inside

    return path_inside(particles_dir(run_directory), f"{scenario}__N{count}__initial.h5")


def final_file(run_directory: Path, case_id: str) -> Path:
    """The final-particle file of a case (always inside ``particles/``)."""
    from harness.cases import cache_name
    from harness.names import path_inside

    return path_inside(particles_dir(run_directory), f"{cache_name(case_id)}__final.h5")


def write_initial(fmt: str | None, run_directory: Path, scenario, count: int,
                  particles: np.ndarray) -> Path | None:
    """Write the initial particles of ``scenario`` (once: an existing file is kept)."""
    if fmt in (None, "none"):
        return None
    from harness.model.openpmd import write_openpmd

    path = initial_file(run_directory, scenario.name, count)
    if path.exists():
        return path
    # cases may run at the same time (a cluster): write aside, then rename atomically
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.h5")
    # the six coordinates: spins ((N, 9) particles) have no openPMD record here yet
    write_openpmd(partial, particles[:, :6], scenario.reference_particle,
                  scenario.beam.bunch_charge_C)
    os.replace(partial, path)
    return path


def write_final(fmt: str | None, run_directory: str | Path | None, case_id: str, scenario,
                final: np.ndarray) -> Path | None:
    """Write a case's final particles when its run asks for them (``--write-particles``)."""
    if fmt in (None, "none") or not run_directory:
        return None
    from harness.model.openpmd import write_openpmd

    return write_openpmd(final_file(Path(run_directory), case_id), final[:, :6],
                         scenario.reference_particle, scenario.beam.bunch_charge_C)
