"""The standalone ImpactX script of a case: the plan's ``impactx.elements`` constructor calls
(:class:`backends.impactx.ElementSpec`), the reference particle and the particles handed to
``ImpactX.beam.add_n_particles`` as the adapter does (``backends/impactx.py``
``ImpactXPrepared.inject``): ImpactX's own coordinates, no conversion."""

from __future__ import annotations

from backends.base import Plan
from backends.scripts.common import call, frame, literal, planned_scenario


def script(plan: Plan, *, case_id: str, particles_file: str, repeat: int,
           observables: list[str]) -> str:
    """The script's text; raises ``ValueError`` (the reason) for what it cannot state."""
    from harness.model.reference_particle import IMPACTX_SPECIES

    scenario = planned_scenario(plan, "impactx", "space-charge settings (mesh, solver)")
    if plan.device != "cpu" or plan.dtype != "float64":
        raise ValueError("impactx: the script runs the CPU float64 wheel only")
    reference = scenario.reference_particle
    elements = ",\n        ".join(call(f"elements.{spec.cls}", (), spec.kwargs)
                                  for spec in plan.lattice)
    if reference.species in IMPACTX_SPECIES:
        species = f"ref.set_species({reference.species!r})"
    else:
        species = (f"ref.set_charge_qe({literal(reference.charge_qe)})"
                   f".set_mass_MeV({literal(reference.mass_MeV)})")
    charge = float(scenario.beam.bunch_charge_C)
    add = ("beam.add_n_particles(x, y, t, px, py, pt, qm, bunch_charge=BUNCH_CHARGE_C)"
           if charge > 0 else
           "beam.add_n_particles(x, y, t, px, py, pt, qm, w=np.ones(len(particles)))")
    body = f'''
KINETIC_ENERGY_MEV = {literal(reference.kinetic_energy_MeV)}
BUNCH_CHARGE_C = {literal(charge)}
SIM = None


def lattice():
    """The elements, built afresh per track (ImpactX finalises element data after one)."""
    return [
        {elements}
    ]


def build():
    global SIM
    SIM = ImpactX()
    SIM.verbose = 0
    SIM.tiny_profiler = False
    SIM.diagnostics = False
    SIM.slice_step_diagnostics = False
    SIM.init_grids()


def inject(particles):
    SIM.lattice.clear()
    SIM.lattice.extend(lattice())
    beam = SIM.beam
    beam.clear_particles()
    ref = beam.ref
    ref.reset()
    {species}
    ref.set_kin_energy_MeV(KINETIC_ENERGY_MEV)
    qm = ref.charge_qe / (ref.mass_MeV * 1e6)  # q / (m c^2) [1/eV]
    x, px, y, py, t, pt = (np.ascontiguousarray(particles[:, i]) for i in range(6))
    {add}
    return len(particles)


def track(handle):
    SIM.track_particles()
    return handle


def extract(handle):
    """Final (N, 6) particles ordered by ImpactX's particle id (the injection order)."""
    beam = SIM.beam
    names = list(beam.real_soa_names)
    index = [names.index(n) for n in ("position_x", "momentum_x", "position_y",
                                      "momentum_y", "position_t", "momentum_t")]
    ids, blocks = [], []
    for level in range(beam.finest_level + 1):
        for tile in ImpactXParIter(beam, level):
            soa = tile.soa()
            idcpu = np.array(soa.get_idcpu_data().to_numpy(), copy=True)
            ids.append(np.asarray(amr.unpack_ids(idcpu), dtype=np.int64))
            blocks.append(np.stack([np.array(soa.get_real_data(i).to_numpy(), copy=True)
                                    for i in index], axis=1))
    ids, columns = np.concatenate(ids), np.concatenate(blocks)
    return columns[np.argsort(ids, kind="stable")]
'''
    return frame(code="ImpactX", case_id=case_id, particles_file=particles_file,
                 repeat=repeat, observables=observables,
                 imports="import amrex.space3d as amr\n"
                         "from impactx import ImpactX, ImpactXParIter, elements", body=body)
