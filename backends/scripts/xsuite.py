"""The standalone Xsuite script of a case: the adapter's ``xtrack.Line``
(``backends/xsuite.py`` ``build_line``: a run of linear-tier elements is one
``FirstOrderTaylorMap``) serialised by Xsuite itself (``Line.to_dict``, its elements and
names) and rebuilt by ``xtrack.Line.from_dict``; the reference particle by mass, charge and
gamma0; the adapter's coordinate conversion (``to_xsuite``/``from_xsuite``:
zeta = -beta0 t, ptau = -pt); tracked serially on the CPU context."""

from __future__ import annotations

from typing import Any

from backends.base import Plan
from backends.scripts.common import frame, literal


def script(plan: Plan, *, case_id: str, particles_file: str, repeat: int,
           observables: list[str]) -> str:
    """The script's text; raises ``ValueError`` (the reason) for what it cannot state."""
    from backends.xsuite import build_line

    scenario: Any = plan.scenario
    if plan.device != "cpu":
        raise ValueError("xsuite: the script tracks on the CPU context only")
    reference = scenario.reference_particle
    line = build_line(scenario, plan.lattice)
    data = line.to_dict()
    serial = {"elements": data["elements"], "element_names": list(data["element_names"])}
    body = f'''
MASS0_EV = {literal(reference.mass_eV)}
Q0 = {literal(reference.charge_qe)}
GAMMA0 = {literal(reference.gamma)}
BETA0 = {literal(reference.beta)}
LINE_DICT = {literal(serial)}
LINE = None
CONTEXT = None


def build():
    global LINE, CONTEXT
    CONTEXT = xo.ContextCpu()  # serial
    LINE = xt.Line.from_dict(LINE_DICT)
    LINE.particle_ref = xt.Particles(mass0=MASS0_EV, q0=Q0, gamma0=GAMMA0)
    LINE.build_tracker(_context=CONTEXT)


def inject(p):
    """ImpactX (x, px, y, py, t, pt) -> Xsuite x, px, y, py, zeta = -beta0 t, ptau = -pt."""
    particles = xt.Particles(_context=CONTEXT, mass0=MASS0_EV, q0=Q0, gamma0=GAMMA0,
                             x=p[:, 0].copy(), px=p[:, 1].copy(), y=p[:, 2].copy(),
                             py=p[:, 3].copy(), zeta=-BETA0 * p[:, 4], ptau=-p[:, 5])
    return particles, len(p)


def track(handle):
    LINE.track(handle[0])
    return handle


def extract(handle):
    """Final (N, 6) in injection order (by particle_id); lost particles NaN."""
    particles, count = handle
    get = lambda name: np.asarray(CONTEXT.nparray_from_context_array(  # noqa: E731
        getattr(particles, name)))
    ids = get("particle_id")
    keep = (ids >= 0) & (ids < count)
    columns = np.stack([get("x"), get("px"), get("y"), get("py"), -get("zeta") / BETA0,
                        -get("ptau")], axis=1)
    out = np.full((count, 6), np.nan)
    alive = keep & (get("state") > 0)
    out[ids[alive]] = columns[alive]
    return out
'''
    return frame(code="Xsuite", case_id=case_id, particles_file=particles_file,
                 repeat=repeat, observables=observables,
                 imports="import xobjects as xo\nimport xtrack as xt", body=body)
