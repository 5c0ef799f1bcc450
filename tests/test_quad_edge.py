"""The extension kind ``ImpactX.QuadEdge`` (ImpactX ``src/elements/QuadEdge.H``: the
third-order hard-edge fringe map of a quadrupole): PALS reading, the in-house map and spin
push against ImpactX particle by particle (float64), gradients (reverse mode = forward
mode = finite differences) and the ImpactX-lattice importer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from derivative_checks import assert_three_agree, three_ways
from impactx_helpers import impactx_and_inhouse

from harness.model.errors import ScenarioError
from harness.model.lattice import Element
from harness.model.load import scenario_from_dict
from harness.model.reference_particle import ReferenceParticle

BEAM = {"species": "electron", "kinetic_energy_MeV": 2000.0, "bunch_charge_C": 0.0,
        "distribution": "gaussian",
        "twiss": {"beta_x": 20.0, "alpha_x": -1.0, "emittance_x": 2e-6,
                  "beta_y": 10.0, "alpha_y": 0.5, "emittance_y": 1e-6},
        "longitudinal": {"sigma_t": 1e-3, "sigma_pt": 1e-2}, "particles": 2000}


def scenario(edge: dict | None = None):
    facility = [
        {"q": {"kind": "Quadrupole", "length": 0.3, "MagneticMultipoleP": {"Kn1": 6.0}}},
        {"e1": {"kind": "ImpactX.QuadEdge", "ImpactXP": {"k": 6.0, "flag": "exit"},
                "BodyShiftP": {"x_offset": 1e-4, "z_rot": 0.1}}},
        {"e2": edge if edge is not None else {
            "kind": "ImpactX.QuadEdge", "ImpactXP": {"k": -600.0, "flag": 1}}},
        {"line": {"kind": "BeamLine", "line": ["q", "e1", "e2"]}}, {"use": "line"}]
    return scenario_from_dict({
        "name": "quad-edge", "beam": BEAM, "model": "linear",
        "lattice": {"PALS": {"facility": facility}},
        "observables": ["sigma_x", "emittance_x", "emittance_y"]}, "qe.yaml")


def test_pals_reading() -> None:
    (_, e1, e2) = scenario().elements
    assert e1.params == {"length": 0.0, "k": 6.0, "flag": -1.0, "x_offset": 1e-4,
                         "z_rot": 0.1}
    assert e2.params == {"length": 0.0, "k": -600.0, "flag": 1.0}


@pytest.mark.parametrize("own,match", [
    ({"k": 1.0, "flag": "middle"}, r"ImpactXP\.flag.*'entry' \(or 1\) or 'exit'"),
    ({"k": 1.0, "flag": 0.5}, r"ImpactXP\.flag"),
    ({"k": 1.0}, r"ImpactXP\.flag.*required"),
])
def test_bad_input_is_one_line(own, match) -> None:
    with pytest.raises(ScenarioError, match=match):
        scenario({"kind": "ImpactX.QuadEdge", "ImpactXP": own})


def test_inhouse_equals_impactx_particle_by_particle() -> None:
    pytest.importorskip("impactx")
    from harness.model.particles import generate

    s = scenario()
    particles = generate(s.beam, 2000)
    theirs, ours = impactx_and_inhouse(s, particles)
    deviation = float((np.abs(ours - theirs).max(axis=0) / theirs.std(axis=0)).max())
    print(f"QuadEdge: max |in-house - ImpactX| / sigma = {deviation:.2e}")
    assert deviation <= 1e-11


def _columns(array: np.ndarray) -> Any:
    return tuple(torch.from_numpy(np.ascontiguousarray(array.T)).unbind(0))


def _edge(k: float, flag: float, **shift: float) -> Element:
    return Element("e", "ImpactX.QuadEdge", {"length": 0.0, "k": k, "flag": flag, **shift},
                   "linear", "linear", 1, 1)


@pytest.mark.parametrize("energy", [("electron", 2000.0), ("proton", 800.0)])
def test_spin_equals_impactx(energy) -> None:
    """ImpactX's fringe reversibility pattern (quadrupole, exit edge, entry edge, shifted
    and rolled edges): spins within 1e-11 of ImpactX's particle by particle."""
    impactx_spin = pytest.importorskip("backends.impactx_spin")
    from backends.inhouse.spin import SpinTracker, sample_vmf

    reference = ReferenceParticle(*energy)
    quad = Element("q", "Quadrupole", {"length": 0.5, "Kn1": 6.0}, "linear", "linear", 1, 1)
    elements = [quad, _edge(6.0, -1.0), _edge(6.0, 1.0, x_offset=2e-4, z_rot=0.3),
                _edge(-600.0, -1.0)]
    rng = np.random.default_rng(3)
    particles = rng.standard_normal((2000, 6)) * np.array([1e-3, 1e-4, 1e-3, 1e-4, 1e-4,
                                                           1e-2])
    spins = sample_vmf((0.4, 0.9, 0.1), 2000, 4).numpy()
    theirs = impactx_spin.track_lattice_spin(elements, reference, particles, spins, False)
    state = SpinTracker(elements, reference).track(_columns(particles), _columns(spins))
    ours_p = torch.stack(state.columns, 1).numpy()[theirs.index]
    ours_s = torch.stack(state.spins, 1).numpy()[theirs.index]
    phase = float((np.abs(ours_p - theirs.particles).max(0) / theirs.particles.std(0)).max())
    spin = float(np.abs(ours_s - theirs.spins).max())
    turned = float(np.abs(theirs.spins - spins[theirs.index]).max())
    print(f"QuadEdge {energy[0]}: phase {phase:.1e} sigma, spin {spin:.1e} (turned "
          f"{turned:.1e})")
    assert turned > 1e-3
    assert phase <= 1e-11 and spin <= 1e-11


def test_gradients_reverse_forward_fd() -> None:
    """d emittance_x / d k and d sigma_sx / d k of an edge: reverse = forward = finite
    differences."""
    from backends.inhouse.spin import SpinTracker, sample_vmf, spin_observables

    reference = ReferenceParticle("electron", 2000.0)
    rng = np.random.default_rng(5)
    particles = rng.standard_normal((1000, 6)) * np.array([3e-3, 1e-4, 3e-3, 1e-4, 1e-4,
                                                           1e-2])
    spins = sample_vmf((0.4, 0.9, 0.1), 1000, 6).numpy()
    tracker = SpinTracker([_edge(-600.0, 1.0)], reference)

    def objective(value: torch.Tensor) -> torch.Tensor:
        state = tracker.track(_columns(particles), _columns(spins), {("e", "k"): value})
        columns = torch.stack(state.columns, 0)
        x, px = columns[0], columns[1]
        emittance = torch.sqrt(x.var() * px.var() - ((x - x.mean()) * (px - px.mean())
                                                     ).mean() ** 2)
        return emittance * 1e6 + spin_observables(state.spins)["sigma_sx"]

    value0 = -600.0
    assert_three_agree("k", three_ways(objective, value0),
                       fd_rtol=1e-7)


def test_importer_reads_quad_edges() -> None:
    pytest.importorskip("impactx")
    from impactx import elements

    from harness.io.impactx_lattice import import_impactx
    from harness.io.model import Translated

    reference = ReferenceParticle("electron", 2000.0)
    result = import_impactx([elements.QuadEdge(name="a", k=60.0, flag="entry"),
                             elements.QuadEdge(name="b", k=60.0, flag="exit", unit=1,
                                               dx=1e-4)], reference)
    a, b = result.items
    assert isinstance(a, Translated) and a.fields == {
        "kind": "ImpactX.QuadEdge", "ImpactXP": {"k": 60.0, "flag": "entry"}}
    assert isinstance(b, Translated) and b.fields["ImpactXP"]["flag"] == "exit"
    assert b.fields["ImpactXP"]["k"] == pytest.approx(60.0 / reference.rigidity_Tm,
                                                      rel=1e-15)
    assert b.fields["BodyShiftP"] == {"x_offset": 1e-4}
