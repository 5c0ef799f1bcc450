"""The standalone RF-Track script of a case: the plan's elements as ``RF_Track`` constructor
calls (as :meth:`backends.rftrack.ElementSpec.build` makes them, strengths over the
reference P/q [MV/c]), a ``Bunch6d`` of the initial particles, and the adapter's coordinate
conversion (``backends/rftrack.py`` ``to_rftrack``/``from_rftrack``: x [mm], x' [mrad],
y [mm], y' [mrad], t [mm/c], P [MeV/c]; at the end t - S/beta0)."""

from __future__ import annotations

from typing import Any

from backends.base import Plan
from backends.scripts.common import frame, literal


def _element(spec: Any) -> str:
    v = spec.values
    length = literal(float(spec.length))
    if spec.kind == "drift":
        return f"rft.Drift({length})"
    if spec.kind == "quadrupole":
        return f"rft.Quadrupole({length}, P_OVER_Q, {literal(v['k1'])})"
    if spec.kind == "sbend":
        return (f"rft.SBend({length}, {literal(v['angle'])}, P_OVER_Q, {literal(v['e1'])}, "
                f"{literal(v['e2'])})")
    if spec.kind == "thin":
        return f"rft.Multipole(0.0, P_OVER_Q, np.array({literal(list(v['knl']))}, complex))"
    raise ValueError(f"rftrack: element kind {spec.kind!r} (integrator settings, apertures) "
                     "is not written by the script generator")


def script(plan: Plan, *, case_id: str, particles_file: str, repeat: int,
           observables: list[str]) -> str:
    """The script's text; raises ``ValueError`` (the reason) for what it cannot state."""
    scenario: Any = plan.scenario
    reference = scenario.reference_particle
    p0 = float(reference.mass_MeV * reference.beta_gamma)
    elements = "".join(f"\n    element = {_element(spec)}\n    element.set_name({name!r})"
                       "\n    LATTICE.append(element)" for name, spec in plan.lattice)
    body = f'''
BETA0 = {literal(reference.beta)}
BETA_GAMMA0 = {literal(reference.beta_gamma)}
MASS_MEV = {literal(reference.mass_MeV)}
CHARGE_QE = {literal(reference.charge_qe)}
P0_MEV = {literal(p0)}  # reference momentum P0 c [MeV]
P_OVER_Q = P0_MEV / CHARGE_QE  # [MV/c]
LATTICE = rft.Lattice()
LENGTH = 0.0


def build():
    global LENGTH
    rft.number_of_threads = 1{elements}
    LATTICE.set_tt_nsteps(0)
    LENGTH = float(LATTICE.get_length())


def inject(p):
    """ImpactX (x, px, y, py, t, pt) -> RF-Track (x, x', y, y', t, P) at S = 0."""
    pt = p[:, 5]
    momentum = np.sqrt(1.0 - 2.0 * pt / BETA0 + pt * pt)
    pz = np.sqrt(momentum * momentum - p[:, 1] ** 2 - p[:, 3] ** 2)
    rows = np.column_stack([1e3 * p[:, 0], 1e3 * p[:, 1] / pz, 1e3 * p[:, 2],
                            1e3 * p[:, 3] / pz, 1e3 * p[:, 4], P0_MEV * momentum])
    return rft.Bunch6d(MASS_MEV, float(max(len(rows), 1)), CHARGE_QE, rows), len(rows)


def track(handle):
    bunch, count = handle
    return LATTICE.track(bunch), count


def extract(handle):
    """RF-Track at S = LENGTH -> ImpactX (N, 6), in RF-Track's particle-id order."""
    bunch, count = handle
    table = np.asarray(bunch.get_phase_space("%x %xp %y %yp %t %Pc %id", "all"),
                       dtype=np.float64).reshape(-1, 7)
    momentum = table[:, 5] / P0_MEV
    xp, yp = 1e-3 * table[:, 1], 1e-3 * table[:, 3]
    pz = momentum / np.sqrt(1.0 + xp * xp + yp * yp)
    pt = 1.0 / BETA0 - np.sqrt(momentum * momentum + 1.0 / BETA_GAMMA0**2)
    out = np.full((count, 6), np.nan)
    out[table[:, 6].astype(np.int64)] = np.column_stack(
        [1e-3 * table[:, 0], xp * pz, 1e-3 * table[:, 2], yp * pz,
         1e-3 * table[:, 4] - LENGTH / BETA0, pt])
    return out
'''
    return frame(code="RF-Track", case_id=case_id, particles_file=particles_file,
                 repeat=repeat, observables=observables, imports="import RF_Track as rft",
                 body=body)
