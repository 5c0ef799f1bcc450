"""Running particles through an ImpactX simulation in tests: inject, track, read back in
the order they were injected."""

from __future__ import annotations

from typing import Any

import numpy as np


def track_sorted(sim: Any, initial: np.ndarray, species: str, energy_MeV: float,
                 bunch_charge_C: float, lattice: list) -> np.ndarray:
    """Inject ``(N, 6)`` particles (ImpactX's x, px, y, py, t, pt) into ``sim`` (grids
    initialised) as ``species`` of kinetic energy ``energy_MeV`` [MeV] and bunch charge
    ``bunch_charge_C`` [C], track them through ``lattice`` and return the final ``(N, 6)``
    particles ordered by particle id (the injection order)."""
    import amrex.space3d as amr

    ref = sim.beam.ref
    ref.set_species(species).set_kin_energy_MeV(energy_MeV)
    x, px, y, py, t, pt = initial.T
    sim.beam.add_n_particles(x, y, t, px, py, pt, ref.charge_qe / (ref.mass_MeV * 1e6),
                             bunch_charge=bunch_charge_C)
    sim.lattice.extend(lattice)
    sim.track_particles()
    frame = sim.beam.to_df(local=True)
    ids = np.asarray(amr.unpack_ids(frame["idcpu"].values.astype(np.uint64)))
    frame = frame.iloc[np.argsort(ids, kind="stable")]
    return np.stack([frame.position_x, frame.momentum_x, frame.position_y,
                     frame.momentum_y, frame.position_t, frame.momentum_t], axis=1)


def quiet_simulation(species: str, kinetic_energy_MeV: float) -> Any:
    """An ImpactX simulation without output or diagnostics, grids initialised, its reference
    particle ``species`` at ``kinetic_energy_MeV`` [MeV] kinetic energy."""
    from impactx import ImpactX

    sim = ImpactX()
    sim.verbose = 0
    sim.tiny_profiler = False
    sim.diagnostics = False
    sim.init_grids()
    sim.beam.ref.set_species(species).set_kin_energy_MeV(kinetic_energy_MeV)
    return sim


def impactx_and_inhouse(scenario: Any, particles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(theirs, ours)``: the same particles tracked by the ImpactX backend and by the
    in-house backend (eager), final coordinates [x, px, y, py, t, pt] per particle."""
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    with IMPACTX().prepare(scenario) as prepared:
        theirs = np.asarray(prepared.track(particles))
    with INHOUSE().prepare(scenario, compile=False) as prepared:
        ours = np.asarray(prepared.track(particles))
    return theirs, ours
