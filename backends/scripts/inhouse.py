"""The standalone script of the in-house tracker: its own API (``backends.inhouse``:
``Tracker``, ``RefState``, ``CompiledForward``), the lattice as plain element records with
the fields the tracker reads (name, kind, params in SI units, tier, nslice, mapsteps,
int_order), ImpactX's coordinates (no conversion), tracked as the adapter does
(``backends/inhouse/__init__.py``: six columns in place, compiled from 10^3 particles)."""

from __future__ import annotations

from backends.base import Plan
from backends.scripts.common import frame, literal, planned_scenario


def script(plan: Plan, *, case_id: str, particles_file: str, repeat: int,
           observables: list[str]) -> str:
    """The script's text; raises ``ValueError`` (the reason) for what it cannot state."""
    scenario = planned_scenario(plan, "inhouse", "the space-charge tracker's settings")
    reference = scenario.reference_particle
    records = ",\n    ".join(
        f"Element({literal(e.name)}, {literal(e.kind)}, {literal(dict(e.params))}, "
        f"{literal(e.tier)}, {literal(e.requested_tier)}, {e.nslice}, {e.mapsteps}, "
        f"{e.int_order}, {literal(bool(e.integrated))})" for e in scenario.elements)
    body = f'''
DEVICE = {plan.device!r}
DTYPE = torch.{plan.dtype}
REFERENCE = RefState(gamma={literal(reference.gamma)}, mass_eV={literal(reference.mass_eV)},
                     charge_qe={literal(reference.charge_qe)})


class Element:
    """One lattice element as the tracker reads it (fields in SI units)."""

    def __init__(self, name, kind, params, tier, requested_tier, nslice, mapsteps,
                 int_order, integrated):
        self.name, self.kind, self.params = name, kind, params
        self.tier, self.requested_tier = tier, requested_tier
        self.nslice, self.mapsteps, self.int_order = nslice, mapsteps, int_order
        self.integrated = integrated
        self.length = float(params.get("length", 0.0))
        self.integrator_steps = nslice * mapsteps


ELEMENTS = [
    {records}
]
FORWARD = None


def build():
    global FORWARD
    tracker = Tracker(ELEMENTS, REFERENCE, device=DEVICE, dtype=DTYPE)
    FORWARD = CompiledForward(tracker.steps(), None)  # compiled from 10^3 particles on


def inject(particles):
    return tuple(torch.tensor(np.ascontiguousarray(particles[:, i]), dtype=DTYPE,
                              device=DEVICE) for i in range(6))


def track(columns):
    alive = FORWARD(columns)  # tracks the columns in place
    if DEVICE != "cpu":
        torch.cuda.synchronize()
    return columns, alive


def extract(handle):
    columns, alive = handle
    out = torch.stack(columns, dim=-1).to("cpu", torch.float64).numpy().copy()
    if alive is not None:
        out[~alive.cpu().numpy()] = np.nan
    return out
'''
    return frame(code="the in-house tracker", case_id=case_id, particles_file=particles_file,
                 repeat=repeat, observables=observables,
                 imports="import torch\n\nfrom backends.inhouse.compiled import CompiledForward"
                         "\nfrom backends.inhouse.reference import RefState\n"
                         "from backends.inhouse.tracker import Tracker", body=body)
