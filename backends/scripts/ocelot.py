"""The standalone Ocelot script of a case: the plan's ``ocelot`` constructor calls
(:class:`backends.ocelot.ElementSpec`: class, keywords, transfer-map method) after a leading
``Marker``, an empty method table (each element keeps its own), the reference energy
E = gamma0 m_e c^2 [GeV] (Ocelot's ``ParticleArray.E``), and the adapter's coordinate
conversion (``backends/ocelot.py`` ``to_ocelot``/``from_ocelot``: the transposed array with
p = -pt)."""

from __future__ import annotations

from typing import Any

from backends.base import Plan
from backends.scripts.common import frame, literal


def script(plan: Plan, *, case_id: str, particles_file: str, repeat: int,
           observables: list[str]) -> str:
    """The script's text; raises ``ValueError`` (the reason) for what it cannot state."""
    scenario: Any = plan.scenario
    lines = []
    for name, spec in plan.lattice:
        kwargs = ", ".join(f"{k}={literal(v)}" for k, v in spec.kwargs.items())
        method = f", tm=ocelot.{spec.method}" if spec.method else ""
        sep = ", " if kwargs else ""
        lines.append(f"ocelot.{spec.cls}(eid={literal(name)}{sep}{kwargs}{method})")
    elements = "".join(f",\n        {line}" for line in lines)
    apertures = any(spec.cls == "Aperture" for _, spec in plan.lattice)
    body = f'''
GAMMA0 = {literal(scenario.reference_particle.gamma)}
LATTICE = None


def build():
    global LATTICE
    sequence = [
        ocelot.Marker(eid="start"){elements}
    ]
    LATTICE = ocelot.MagneticLattice(sequence, method={{}})


def inject(p):
    """ImpactX (x, px, y, py, t, pt) -> Ocelot (6, N): x, x', y, y', tau, p = -pt."""
    array = ParticleArray(n=len(p))
    rows = np.array(p.T, dtype=np.float64, order="C", copy=True)
    rows[5] = -rows[5]
    array.rparticles = rows
    array.E = GAMMA0 * m_e_GeV  # [GeV]
    return array


def track(array):
    navigator = Navigator(LATTICE)
    {"navigator.activate_apertures()" if apertures else "pass"}
    ocelot.track(LATTICE, array, navigator, print_progress=False, calc_tws=False)
    return array


def extract(array):
    count = array.rparticles.shape[1] + len(array.lost_particle_recorder.lost_particles)
    lost = np.zeros(count, bool)
    lost[np.asarray(array.lost_particle_recorder.lost_particles, int)] = True
    out = np.full((count, 6), np.nan)
    out[~lost] = np.asarray(array.rparticles, dtype=np.float64).T
    out[:, 5] = -out[:, 5]
    return out
'''
    return frame(code="Ocelot", case_id=case_id, particles_file=particles_file,
                 repeat=repeat, observables=observables,
                 imports="import ocelot\nfrom ocelot import Navigator, ParticleArray\n"
                         "from ocelot.common.globals import m_e_GeV", body=body)
