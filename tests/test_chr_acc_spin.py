"""Spin through ``ImpactX.ChrAcc`` (bz = 0, bz != 0, ez = 0): the in-house spin push against
the impactx wheel particle by particle (through the backends' plan/prepare/track, over
several slices and with a quadrupole after it, whose spin push reads the raised reference
energy), and its gradients by AD (reverse and forward) against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.model.load import scenario_from_dict
from harness.model.particles import generate

BEAM = {"species": "proton", "kinetic_energy_MeV": 200.0, "bunch_charge_C": 0.0,
        "distribution": "gaussian", "spin": {"polarization": [0.4, 0.8, 0.2]},
        "twiss": {"beta_x": 2.0, "alpha_x": 0.0, "emittance_x": 1e-6,
                  "beta_y": 2.0, "alpha_y": 0.0, "emittance_y": 1e-6},
        "longitudinal": {"sigma_t": 1e-4, "sigma_pt": 1e-3}, "particles": 500}


def scenario(ez: float = 2.0, bz: float = 0.0, nslice: int = 3):
    facility = [{"acc": {"kind": "ImpactX.ChrAcc", "length": 0.5,
                         "ImpactXP": {"ez": ez, "bz": bz}}},
                {"q1": {"kind": "Quadrupole", "length": 0.3,
                        "MagneticMultipoleP": {"Kn1": 2.0}}},
                {"line": {"kind": "BeamLine", "line": ["acc", "q1"]}}, {"use": "line"}]
    return scenario_from_dict({
        "name": "chracc-spin", "beam": BEAM, "model": "linear",
        "integrator": {"nslice": nslice}, "lattice": {"PALS": {"facility": facility}},
        "observables": ["sigma_x"]}, "chracc.yaml")


@pytest.mark.parametrize(("ez", "bz", "nslice"), [(2.0, 0.0, 1), (2.0, 0.0, 3),
                                                  (2.0, 1.5, 1), (-0.3, -1.5, 3),
                                                  (0.0, 1.5, 2)])
def test_inhouse_spin_equals_impactx(ez: float, bz: float, nslice: int) -> None:
    """float64, 500 particles: spins equal to 1e-11, phase space to 1e-11 sigma."""
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(ez, bz, nslice)
    initial = generate(s.beam)
    finals = {}
    for backend in (IMPACTX(), INHOUSE()):
        plan = backend.plan(s)
        assert plan, plan
        with backend.prepare_planned(plan) as prepared:
            finals[backend.name] = prepared.track(initial)
    ours, theirs = finals["inhouse"], finals["impactx"]
    spin = float(np.abs(ours[:, 6:] - theirs[:, 6:]).max())
    orbit = float((np.abs(ours[:, :6] - theirs[:, :6]).max(axis=0)
                   / theirs[:, :6].std(axis=0)).max())
    turned = float(np.abs(theirs[:, 6:] - initial[:, 6:]).max())
    print(f"ChrAcc spin ez={ez} bz={bz} nslice={nslice}: max |spin in-house - ImpactX| = "
          f"{spin:.2e}, "
          f"orbit {orbit:.2e} sigma (spins turned by up to {turned:.2e})")
    assert turned > 1e-3
    assert spin <= 1e-11
    assert orbit <= 1e-11


@pytest.mark.parametrize("field", ["ez", "bz"])
def test_spin_gradient_equals_finite_differences(field: str) -> None:
    """d mean_sy / d ez and d bz (at bz = 1.5): reverse = forward mode to 1e-12, = fourth
    order central differences to 1e-7."""
    from backends.inhouse.spin import SpinTracker, spin_observables

    value0 = 2.0 if field == "ez" else 1.5
    s = scenario(bz=1.5, nslice=2)
    initial = torch.as_tensor(generate(s.beam), dtype=torch.float64)
    columns = tuple(initial[:, i] for i in range(6))
    spins = tuple(initial[:, i] for i in range(6, 9))
    tracker = SpinTracker(s.elements, s.reference_particle)

    def objective(value: torch.Tensor) -> torch.Tensor:
        state = tracker.track(columns, spins, {("acc", field): value})
        return spin_observables(state.spins, state.alive)["mean_sy"]

    value = torch.tensor(value0, dtype=torch.float64, requires_grad=True)
    (reverse,) = torch.autograd.grad(objective(value), value)
    _, forward = torch.func.jvp(objective, (torch.tensor(value0, dtype=torch.float64),),
                                (torch.tensor(1.0, dtype=torch.float64),))
    step = 1e-3

    def at(offset: float) -> float:
        with torch.no_grad():
            return float(objective(torch.tensor(value0 + offset, dtype=torch.float64)))

    fd = (8.0 * (at(step) - at(-step)) - (at(2 * step) - at(-2 * step))) / (12.0 * step)
    assert abs(float(reverse)) > 0.0
    assert abs(float(forward - reverse)) <= 1e-12 * abs(float(reverse))
    assert abs(fd - float(reverse)) <= 1e-7 * abs(float(reverse))
