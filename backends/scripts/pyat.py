"""The standalone pyAT script of a case: the plan's ``at`` constructor calls
(:class:`backends.pyat.ElementSpec`; a linear-tier element replaced by its
``at.find_elem_m66`` matrix in an ``at.M66``, as the adapter does), ImpactX's rest energy
and charge as an ``at.Particle``, and the adapter's coordinate conversion
(``backends/pyat.py`` ``to_at``/``from_at``: delta = sqrt(1 - 2 pt/beta0 + pt^2) - 1,
ct = beta0 t)."""

from __future__ import annotations

from typing import Any

from backends.base import Plan
from backends.scripts.common import call, frame, literal


def script(plan: Plan, *, case_id: str, particles_file: str, repeat: int,
           observables: list[str]) -> str:
    """The script's text; raises ``ValueError`` (the reason) for what it cannot state."""
    scenario: Any = plan.scenario
    reference = scenario.reference_particle
    lines = []
    for name, spec in plan.lattice:
        element = call(f"at.{spec.cls}", (name, *spec.args), spec.kwargs)
        if spec.linearise:
            element = f"linearised({element})"
        lines.append(element)
    elements = ",\n        ".join(lines) or 'at.Marker("start")'
    body = f'''
BETA0 = {literal(reference.beta)}
BETA_GAMMA0 = {literal(reference.beta_gamma)}
LATTICE = None


def linearised(element):
    """The element's linear map at the reference orbit (``Matrix66Pass``)."""
    m66 = np.asarray(at.find_elem_m66(element))
    return at.M66(element.FamName, m66=m66, Length=float(getattr(element, "Length", 0.0)))


def build():
    global LATTICE
    elements = [
        {elements}
    ]
    particle = at.Particle({literal(reference.species + "_impactx")},
                           rest_energy={literal(reference.mass_eV)},
                           charge={literal(reference.charge_qe)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LATTICE = at.Lattice(elements, energy={literal(reference.total_energy_eV)},
                             particle=particle, name={literal(scenario.name)})


def inject(p):
    """ImpactX (x, px, y, py, t, pt) -> AT (6, N): x, px, y, py, delta, ct."""
    pt = p[:, 5]
    delta = np.sqrt(1.0 - 2.0 * pt / BETA0 + pt * pt) - 1.0
    return np.asfortranarray(np.vstack([p[:, 0], p[:, 1], p[:, 2], p[:, 3], delta,
                                        BETA0 * p[:, 4]]))


def track(r):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        at.lattice_track(LATTICE, r, in_place=True)
    return r


def extract(r):
    """AT (6, N) -> ImpactX (N, 6)."""
    pt = -(np.sqrt((1.0 + r[4]) ** 2 + 1.0 / BETA_GAMMA0**2) - 1.0 / BETA0)
    return np.stack([r[0], r[1], r[2], r[3], r[5] / BETA0, pt], axis=1)
'''
    return frame(code="pyAT", case_id=case_id, particles_file=particles_file, repeat=repeat,
                 observables=observables, imports="import warnings\n\nimport at", body=body)
