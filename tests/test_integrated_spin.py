"""Spin through ImpactX's integrated maps (``ExactQuad``, ``ExactMultipole``,
``ExactCFbend``), stepped as ImpactX's integrator with spin steps them
(``src/particles/integrators/Integrators.H``, ``symp*_integrate_particle_spin_step``):
the in-house spin push against ImpactX particle by particle (float64, orders 2, 4 and 6,
slices, skew components) and its gradients (reverse mode = forward mode = finite
differences)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from derivative_checks import assert_three_agree, three_ways

from backends.inhouse.spin import SpinTracker, sample_vmf, spin_observables, spin_step_sequence
from harness.model.lattice import Element
from harness.model.reference_particle import ReferenceParticle


def _element(name: str, kind: str, nslice: int = 1, mapsteps: int = 3, int_order: int = 2,
             **params: float) -> Element:
    element = Element(name, kind, params, "exact", "exact", nslice, mapsteps)
    object.__setattr__(element, "int_order", int_order)
    return element


def _columns(array: np.ndarray) -> Any:
    return tuple(torch.from_numpy(np.ascontiguousarray(array.T)).unbind(0))


CASES = {
    "exact_quad": [_element("q", "Quadrupole", length=0.5, Kn1=3.0)],
    "exact_quad_order4_skew_2_slices": [_element("q", "Quadrupole", nslice=2, int_order=4,
                                                 length=0.5, Kn1=3.0, Ks1=1.0)],
    "exact_multipole": [_element("m", "Sextupole", length=0.3, Kn2=80.0, Kn1=1.0, Ks1=-0.5,
                                 Ks2=20.0)],
    "exact_multipole_order6": [_element("m", "ImpactX.ExactMultipole", int_order=6,
                                        length=0.3, Kn0=1e-3, Kn1=1.0, Kn3=300.0)],
    "exact_cfbend": [_element("b", "SBend", length=0.5, angle=0.05, e1=0.0, e2=0.0,
                              Kn1=0.7)],
    "exact_cfbend_components_order4": [_element(
        "b", "SBend", nslice=2, int_order=4, length=0.5, angle=0.05, e1=0.0, e2=0.0,
        Kn1=0.7, Ks1=0.2, Kn2=-5.0, Ks2=3.0)],
}

#: Phase-space bound: ExactCFbend's sextupole kick carries ImpactX's round-off (eps rc^2
#: |Kn2| per metre; ``tests/test_exact_cfbend.py``).
PHASE_BOUND = {"exact_cfbend_components_order4": 1e-9}


def test_step_sequences() -> None:
    """Order 2 is M1(dz/2) M2(dz/2) S(dz) M2(dz/2) M1(dz/2); the spin sub-steps of orders
    4 and 6 add up to dz, with 3 and 9 spin maps."""
    assert spin_step_sequence(2, 1.0) == [(1, 0.5), (2, 0.5), (3, 1.0), (2, 0.5), (1, 0.5)]
    for order, count in ((4, 3), (6, 9)):
        spin = [tau for index, tau in spin_step_sequence(order, 1.0) if index == 3]
        assert len(spin) == count and sum(spin) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("energy", [("electron", 2000.0), ("proton", 800.0)])
@pytest.mark.parametrize("case", list(CASES))
def test_integrated_spin_equals_impactx(case, energy) -> None:
    impactx_spin = pytest.importorskip("backends.impactx_spin")
    reference = ReferenceParticle(*energy)
    rng = np.random.default_rng(2)
    particles = rng.standard_normal((1000, 6)) * np.array([1e-3, 2e-4, 1e-3, 2e-4, 1e-4,
                                                           1e-3])
    spins = sample_vmf((0.3, 0.5, 0.6), 1000, 3).numpy()
    elements = CASES[case]
    theirs = impactx_spin.track_lattice_spin(elements, reference, particles, spins, False)
    state = SpinTracker(elements, reference).track(_columns(particles), _columns(spins))
    ours_p = torch.stack(state.columns, 1).numpy()[theirs.index]
    ours_s = torch.stack(state.spins, 1).numpy()[theirs.index]
    phase = float((np.abs(ours_p - theirs.particles).max(0) / theirs.particles.std(0)).max())
    spin = float(np.abs(ours_s - theirs.spins).max())
    turned = float(np.abs(theirs.spins - spins[theirs.index]).max())
    print(f"{case} {energy[0]}: phase {phase:.1e} sigma, spin {spin:.1e} (turned "
          f"{turned:.1e})")
    assert turned > 1e-3
    assert spin <= 1e-11
    assert phase <= PHASE_BOUND.get(case, 2e-11)


GRAD_LATTICE = [
    _element("m", "Sextupole", length=0.3, Kn2=80.0, Kn1=1.0),
    _element("b", "SBend", length=0.5, angle=0.05, e1=0.0, e2=0.0, Kn1=0.7, Kn2=-5.0),
    _element("q", "Quadrupole", length=0.4, Kn1=-2.0),
]


@pytest.mark.parametrize("key", [("m", "Kn2"), ("b", "angle"), ("b", "Kn2"), ("q", "Kn1")])
def test_integrated_spin_gradients(key) -> None:
    """d sigma_sx / d parameter: reverse mode = forward mode = finite differences
    (fourth-order central differences, step 1e-3 of the value; relative 1e-7)."""
    reference = ReferenceParticle("electron", 100.0)
    rng = np.random.default_rng(9)
    particles = rng.standard_normal((500, 6)) * np.array([1e-3, 2e-4, 1e-3, 2e-4, 1e-4,
                                                          1e-3])
    spins = sample_vmf((0.3, 0.5, 0.6), 500, 4).numpy()
    tracker = SpinTracker(GRAD_LATTICE, reference)
    value0 = float(next(e for e in GRAD_LATTICE if e.name == key[0]).params[key[1]])

    def objective(value: torch.Tensor) -> torch.Tensor:
        state = tracker.track(_columns(particles), _columns(spins), {key: value})
        return spin_observables(state.spins, state.alive)["sigma_sx"]

    assert_three_agree(str(key), three_ways(objective, value0),
                       fd_rtol=1e-7)
