"""The extension kinds ``ImpactX.ExactMultipole`` (every normal/skew order, ImpactX
``src/elements/ExactMultipole.H``) and ``ImpactX.SpinMap`` (``src/elements/SpinMap.H``):
PALS reading, the in-house maps against ImpactX particle by particle (float64), gradients
(reverse mode = forward mode = finite differences), the ImpactX-lattice importer and the
other backends' refusal by name."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from derivative_checks import assert_three_agree, three_ways
from impactx_helpers import impactx_and_inhouse

from backends.registry import backend_classes
from harness.model.errors import ScenarioError
from harness.model.lattice import Element
from harness.model.load import scenario_from_dict
from harness.model.particles import generate
from harness.model.reference_particle import ReferenceParticle

BEAM = {"species": "electron", "kinetic_energy_MeV": 2000.0, "bunch_charge_C": 0.0,
        "distribution": "gaussian",
        "twiss": {"beta_x": 20.0, "alpha_x": -1.0, "emittance_x": 2e-7,
                  "beta_y": 10.0, "alpha_y": 0.5, "emittance_y": 1e-7},
        "longitudinal": {"sigma_t": 1e-3, "sigma_pt": 1e-3}, "particles": 2000}

#: Every order up to 5, normal and skew, with a body shift and roll.
MULTIPOLE = {"kind": "ImpactX.ExactMultipole", "length": 0.5,
             "ImpactXP": {"k_normal": [1e-3, 1.0, -20.0, 300.0, 0.0, 1e5],
                          "k_skew": [0.0, -0.5, 14.0, 0.0, 0.0, 0.0]},
             "BodyShiftP": {"x_offset": 1e-4, "z_rot": 0.1}}
SPIN_MAP = {"kind": "ImpactX.SpinMap", "ImpactXP": {
    "v": [0.1, 0.2, 2.0],
    "A": [[0.0, 0.0, 27.8, 12.9, 0.0, 0.0], [19.9, 10.9, 0.0, 0.0, 0.0, 0.3],
          [0.0, 0.0, 0.0, -0.77, 0.0, 0.0]]}}


def scenario(body: dict | None = None, spin: bool = False):
    facility = [{"d1": {"kind": "Drift", "length": 0.5}},
                {"m1": body if body is not None else MULTIPOLE},
                {"line": {"kind": "BeamLine", "line": ["d1", "m1"]}}, {"use": "line"}]
    beam = {**BEAM, **({"spin": {"polarization": [0.4, 0.9, 0.1]}} if spin else {})}
    return scenario_from_dict({
        "name": "exact-multipole", "beam": beam, "model": "exact",
        "integrator": {"mapsteps": 7, "int_order": 4},
        "lattice": {"PALS": {"facility": facility}},
        "observables": ["sigma_x", "sigma_px", "emittance_x", "emittance_y"]}, "em.yaml")


def test_pals_reading() -> None:
    (_, m1) = scenario().elements
    assert m1.kind == "ImpactX.ExactMultipole" and m1.tier == "exact" and m1.integrated
    assert m1.params == {"length": 0.5, "Kn0": 1e-3, "Kn1": 1.0, "Kn2": -20.0, "Kn3": 300.0,
                         "Kn5": 1e5, "Ks1": -0.5, "Ks2": 14.0, "x_offset": 1e-4,
                         "z_rot": 0.1}
    (_, s1) = scenario(SPIN_MAP).elements
    assert s1.params["v3"] == 2.0 and s1.params["A13"] == 27.8 and s1.params["A36"] == 0.0


@pytest.mark.parametrize("body,match", [
    ({"kind": "ImpactX.ExactMultipole", "length": 0.5,
      "ImpactXP": {"k_normal": [0.0, 0.0]}}, r"k_normal.*at least one non-zero"),
    ({"kind": "ImpactX.ExactMultipole", "length": 0.5, "ImpactXP": {"k_normal": 1.0}},
     r"k_normal.*list of 1 to 21 numbers"),
    ({"kind": "ImpactX.ExactMultipole", "length": 0.0, "ImpactXP": {"k_normal": [1.0]}},
     "positive length"),
    ({"kind": "ImpactX.SpinMap", "ImpactXP": {"v": [0.0, 1.0]}}, r"ImpactXP\.v.*3 numbers"),
    ({"kind": "ImpactX.SpinMap", "ImpactXP": {"v": [0, 0, 1], "A": [[0.0] * 6]}},
     r"ImpactXP\.A.*3x6 matrix"),
    ({"kind": "ImpactX.SpinMap", "ImpactXP": {"A": [[0.0] * 6] * 3}},
     r"ImpactXP\.v1.*required"),
])
def test_bad_input_is_one_line(body, match) -> None:
    with pytest.raises(ScenarioError, match=match):
        scenario(body)


def test_impactx_translation() -> None:
    from backends.impactx import translate

    s = scenario()
    (spec,) = translate(s.elements[1], s.reference_particle)
    assert spec.cls == "ExactMultipole"
    assert spec.kwargs["k_normal"] == [1e-3, 1.0, -20.0, 300.0, 0.0, 1e5]
    assert spec.kwargs["k_skew"] == [0.0, -0.5, 14.0, 0.0, 0.0, 0.0]
    assert spec.kwargs["mapsteps"] == 7 and spec.kwargs["int_order"] == 4


def test_inhouse_equals_impactx_particle_by_particle() -> None:
    """float64, the same 2000 particles: max |in-house - ImpactX| / sigma <= 1e-11."""
    pytest.importorskip("impactx")

    s = scenario()
    particles = generate(s.beam, 2000)
    theirs, ours = impactx_and_inhouse(s, particles)
    moved = np.abs(theirs - particles[:, :6]).max(axis=0) / theirs.std(axis=0)
    assert moved[1] > 1e-3
    deviation = float((np.abs(ours - theirs).max(axis=0) / theirs.std(axis=0)).max())
    print(f"ExactMultipole: max |in-house - ImpactX| / sigma = {deviation:.2e}")
    assert deviation <= 1e-11


@pytest.mark.parametrize("field", ["Kn0", "Kn1", "Ks2", "Kn3"])
def test_gradients_reverse_forward_fd(field) -> None:
    """d observable / d strength: reverse mode = forward mode (torch.func.jvp) = central
    finite differences."""
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario()
    particles = generate(s.beam, 1000)
    made = INHOUSE().differentiable_observables(s, [f"m1.{field}"], ["emittance_x"],
                                                particles, "cpu", "float64")
    assert made is not None
    g, theta0 = made

    assert_three_agree(field, three_ways(lambda theta: g(theta)["emittance_x"], theta0),
                       fd_rtol=1e-6)


def test_other_backends_refuse_by_name() -> None:
    for body, kind in ((MULTIPOLE, "ImpactX.ExactMultipole"), (SPIN_MAP, "ImpactX.SpinMap")):
        s = scenario(body)
        for name, cls in backend_classes().items():
            if kind in cls.element_kinds:
                continue
            verdict = cls().supports(s)
            assert not verdict, name
            assert kind in verdict.reason, (name, verdict.reason)


# ----------------------------------------------------------------------------- SpinMap


def _spin_map_element(**entries: float) -> Element:
    s = scenario(SPIN_MAP)
    (_, element) = s.elements
    if entries:
        element = Element(element.name, element.kind, {**element.params, **entries},
                          element.tier, element.requested_tier, element.nslice,
                          element.mapsteps)
    return element


def _columns(array: np.ndarray) -> Any:
    """Columns (phase space or spins) of an array of shape (N, 6) or (N, 3)."""
    return tuple(torch.from_numpy(np.ascontiguousarray(array.T)).unbind(0))


@pytest.fixture(scope="module")
def beam() -> tuple[np.ndarray, np.ndarray]:
    from backends.inhouse.spin import sample_vmf

    rng = np.random.default_rng(11)
    particles = rng.standard_normal((2000, 6)) * np.array([1e-3, 2e-4, 1e-3, 2e-4, 1e-4,
                                                           1e-3])
    return particles, sample_vmf((0.4, 0.9, 0.1), 2000, 5).numpy()


def test_spin_map_spin_equals_impactx(beam) -> None:
    """A SpinMap between two quadrupoles (ImpactX's ``run_spin_map.py`` pattern): spins
    within 1e-11 of ImpactX's, particle by particle."""
    impactx_spin = pytest.importorskip("backends.impactx_spin")
    from backends.inhouse.spin import SpinTracker

    particles, spins = beam
    reference = ReferenceParticle("electron", 10.0e3)
    quad = Element("q", "Quadrupole", {"length": 1.0, "Kn1": 1.0}, "linear", "linear", 1, 1)
    elements = [_spin_map_element(), quad, _spin_map_element(A26=0.0961, v1=0.0, v2=0.0)]
    theirs = impactx_spin.track_lattice_spin(elements, reference, particles, spins, False)
    state = SpinTracker(elements, reference).track(_columns(particles), _columns(spins))
    ours_p = torch.stack(state.columns, 1).numpy()[theirs.index]
    ours_s = torch.stack(state.spins, 1).numpy()[theirs.index]
    phase = float((np.abs(ours_p - theirs.particles).max(0) / theirs.particles.std(0)).max())
    spin = float(np.abs(ours_s - theirs.spins).max())
    print(f"SpinMap: phase {phase:.1e} sigma, spin {spin:.1e}")
    assert np.abs(ours_s - spins[theirs.index]).max() > 1e-2
    assert phase <= 1e-11 and spin <= 1e-11


@pytest.mark.parametrize("field", ["v3", "A13", "A26"])
def test_spin_map_gradients(field, beam) -> None:
    """d sigma_sx / d entry: reverse = forward = finite differences (relative 1e-7)."""
    from backends.inhouse.spin import SpinTracker, spin_observables

    particles, spins = beam
    reference = ReferenceParticle("electron", 10.0e3)
    element = _spin_map_element(A26=0.3)
    tracker = SpinTracker([element], reference)
    value0 = float(element.params[field])

    def objective(value: torch.Tensor) -> torch.Tensor:
        state = tracker.track(_columns(particles), _columns(spins), {("m1", field): value})
        return spin_observables(state.spins)["sigma_sx"]

    assert_three_agree(field, three_ways(objective, value0),
                       fd_rtol=1e-7)


# ----------------------------------------------------------------------------- importer


def test_importer_reads_every_exact_multipole_and_spin_maps() -> None:
    """ImpactX ``ExactMultipole`` -> Sextupole/Octupole with every component when its top
    order is 2/3 with a normal part, else ``ImpactX.ExactMultipole``; ``SpinMap`` ->
    ``ImpactX.SpinMap``."""
    pytest.importorskip("impactx")
    from impactx import Map3x6, Vector3, elements

    from harness.io.impactx_lattice import import_impactx
    from harness.io.model import Translated, Untranslatable

    reference = ReferenceParticle("electron", 2000.0)
    v, a = Vector3(), Map3x6()
    v[2] = 2.2
    a[1, 4] = 1.6
    a[2, 6] = 0.09
    lattice = [
        elements.ExactMultipole(name="q", ds=1.0, k_normal=[0.0, 1.2], k_skew=[0.0, 0.0],
                                unit=0, mapsteps=5),
        elements.ExactMultipole(name="s", ds=1e-5, k_normal=[0.0, -0.2e5, 1e5],
                                k_skew=[0.0, 0.1e5, -0.5e5], unit=0),
        elements.ExactMultipole(name="o", ds=0.5, k_normal=[0.0, 0.0, 0.0, 30.0],
                                k_skew=[0.0, 0.0, 0.0, 0.0], unit=1),
        elements.ExactMultipole(name="z", ds=0.5, k_normal=[0.0], k_skew=[0.0], unit=0),
        elements.SpinMap(v=v, A=a, name="sm"),
        elements.SpinMap(v=v, A=a, ds=0.1, name="sm_thick"),
    ]
    result = import_impactx(lattice, reference)
    q, s, o, z, sm, thick = result.items
    assert isinstance(q, Translated) and q.fields == {
        "kind": "ImpactX.ExactMultipole", "length": 1.0,
        "ImpactXP": {"k_normal": [0.0, 1.2], "k_skew": [0.0, 0.0]}}
    assert isinstance(s, Translated) and s.fields == {
        "kind": "Sextupole", "length": 1e-5, "MagneticMultipoleP": {
            "Kn1": -0.2e5, "Ks1": 0.1e5, "Kn2": 1e5, "Ks2": -0.5e5}}
    assert isinstance(o, Translated) and o.fields["kind"] == "Octupole"
    assert o.fields["MagneticMultipoleP"]["Kn3"] == pytest.approx(30.0 / reference.rigidity_Tm,
                                                                  rel=1e-15)
    assert isinstance(z, Translated) and z.fields == {"kind": "Drift", "length": 0.5}
    assert isinstance(sm, Translated) and sm.fields["kind"] == "ImpactX.SpinMap"
    assert sm.fields["ImpactXP"]["v"] == [0.0, 2.2, 0.0]
    assert sm.fields["ImpactXP"]["A"][0][3] == 1.6 and sm.fields["ImpactXP"]["A"][1][5] == 0.09
    assert isinstance(thick, Untranslatable) and "bookkeeping length" in thick.reason
