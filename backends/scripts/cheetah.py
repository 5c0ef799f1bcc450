"""The standalone Cheetah script of a case: the adapter's ``cheetah.Segment``
(``backends/cheetah.py`` ``build_elements`` of the plan) serialised by Cheetah itself
(``Segment.to_lattice_json``, the lattice-JSON convention) and rebuilt by
``Segment.from_lattice_json``; ImpactX's rest energy and charge as a ``cheetah.Species``; the
adapter's coordinate conversion (``to_cheetah_columns``: (x, px, y, py, tau = t, p = -pt,
1)); tracked eagerly without autograd."""

from __future__ import annotations

import tempfile
from pathlib import Path

from backends.base import Plan
from backends.scripts.common import frame, literal, planned_scenario


def script(plan: Plan, *, case_id: str, particles_file: str, repeat: int,
           observables: list[str]) -> str:
    """The script's text; raises ``ValueError`` (the reason) for what it cannot state."""
    import cheetah

    from backends.cheetah import build_elements

    scenario = planned_scenario(plan, "cheetah", "space-charge kicks")
    reference = scenario.reference_particle
    segment = cheetah.Segment(build_elements(scenario, plan.device, plan.dtype,
                                             plans=plan.lattice), name=scenario.name)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "lattice.json"
        segment.to_lattice_json(str(path), title=scenario.name,
                                info=f"trackbench case {case_id}")
        text = path.read_text()
    body = f'''
DEVICE = torch.device({plan.device!r})
DTYPE = torch.{plan.dtype}
ENERGY_EV = {literal(reference.total_energy_eV)}  # total energy of the reference [eV]
BUNCH_CHARGE_C = {literal(abs(float(scenario.beam.bunch_charge_C)))}
LATTICE_JSON = {text!r}
SEGMENT = None
SPECIES = None


def build():
    global SEGMENT, SPECIES
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "lattice.json"
        path.write_text(LATTICE_JSON)
        SEGMENT = cheetah.Segment.from_lattice_json(str(path), device=DEVICE, dtype=DTYPE)
    SPECIES = cheetah.Species({literal(reference.species + "_impactx")},
                              num_elementary_charges=torch.tensor(
                                  {literal(reference.charge_qe)}, device=DEVICE, dtype=DTYPE),
                              mass_eV=torch.tensor({literal(reference.mass_eV)}, device=DEVICE,
                                                   dtype=DTYPE),
                              device=DEVICE, dtype=DTYPE)


def inject(p):
    """ImpactX (x, px, y, py, t, pt) -> Cheetah (x, px, y, py, tau, p = -pt, 1)."""
    columns = np.ones((p.shape[0], 7))
    columns[:, :6] = p
    columns[:, 5] = -p[:, 5]
    columns = torch.from_numpy(columns).to(device=DEVICE, dtype=DTYPE)
    n = columns.shape[0]
    charges = torch.full((n,), BUNCH_CHARGE_C / n, device=DEVICE, dtype=DTYPE)
    return cheetah.ParticleBeam(columns, energy=torch.tensor(ENERGY_EV, device=DEVICE,
                                                             dtype=DTYPE),
                                particle_charges=charges, species=SPECIES, device=DEVICE,
                                dtype=DTYPE)


def track(beam):
    with torch.no_grad():
        return SEGMENT.track(beam)


def extract(beam):
    columns = beam.particles.detach().to("cpu", torch.float64).numpy()
    out = columns[:, :6].copy()
    out[:, 5] = -out[:, 5]
    out[beam.survival_probabilities.detach().cpu().numpy() == 0.0] = np.nan
    return out
'''
    return frame(code="Cheetah", case_id=case_id, particles_file=particles_file,
                 repeat=repeat, observables=observables,
                 imports="import tempfile\n\nimport cheetah\nimport torch", body=body)
