"""The order of the exact integrators (``integrator.int_order``, ``overrides.<name>.int_order``):
the field validates 2, 4 and 6 and refuses anything else in one line; it reaches ImpactX's
``ExactQuad``/``ExactMultipole``/``ExactCFbend`` and the in-house maps, which agree particle
by particle to round-off at every order; the adapters that run their own integrators name it
in their stand-in label."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from backends.inhouse.segments import expand
from backends.inhouse.tracker import Tracker
from backends.registry import backend_classes
from harness.model.errors import ScenarioError
from harness.model.load import scenario_from_dict
from harness.model.scenario import model_signature

#: An exact line with every integrated element: a quadrupole (ExactQuad), a sextupole
#: (ExactMultipole) and a combined-function bend (ExactCFbend), plus closed-form maps.
SCENARIO = {
    "name": "int_order",
    "beam": {"species": "proton", "kinetic_energy_MeV": 800.0, "distribution": "gaussian",
             "twiss": {"beta_x": 3.0, "alpha_x": 0.5, "emittance_x": 4e-8,
                       "beta_y": 2.0, "alpha_y": -0.4, "emittance_y": 4e-8},
             "longitudinal": {"sigma_t": 1e-3, "sigma_pt": 2e-3}, "particles": 2000,
             "seed": 7},
    "model": "exact",
    "integrator": {"nslice": 1, "mapsteps": 2},
    "lattice": {"PALS": {"version": None, "facility": [
        {"d": {"kind": "Drift", "length": 0.3}},
        {"q": {"kind": "Quadrupole", "length": 0.8, "MagneticMultipoleP": {"Kn1": 2.5}}},
        {"s": {"kind": "Sextupole", "length": 0.3, "MagneticMultipoleP": {"Kn2": 60.0}}},
        {"b": {"kind": "SBend", "length": 1.0, "BendP": {"angle": 0.3},
               "MagneticMultipoleP": {"Kn1": -1.2}}},
        {"cell": {"kind": "BeamLine", "line": ["d", "q", "d", "s", "b", "d"]}},
        {"use": "cell"}]}},
}


def _scenario(int_order: object = None, override: object = None):
    data = copy.deepcopy(SCENARIO)
    if int_order is not None:
        data["integrator"]["int_order"] = int_order
    if override is not None:
        data["overrides"] = {"q": {"int_order": override}}
    return scenario_from_dict(data, "int_order.yaml")


# --------------------------------------------------------------------------- the field


@pytest.mark.parametrize("order", [2, 4, 6])
def test_int_order_reaches_every_integrated_element(order):
    scenario = _scenario(order)
    orders = {e.name: e.int_order for e in scenario.elements if e.integrated}
    assert orders == {"q": order, "s": order, "b": order}
    assert model_signature(scenario) == ("exact" if order == 2 else f"exact|int_order:{order}")


def test_default_is_second_order_and_override_wins():
    assert {e.int_order for e in _scenario().elements} == {2}
    scenario = _scenario(4, override=6)
    assert {e.name: e.int_order for e in scenario.elements if e.integrated} == {
        "q": 6, "s": 4, "b": 4}
    assert model_signature(scenario) == "exact|int_order:4,6"


def test_closed_form_elements_are_not_integrated():
    scenario = _scenario(4)
    assert not any(e.integrated for e in scenario.elements if e.kind == "Drift")
    data = copy.deepcopy(SCENARIO)
    data["model"] = "paraxial"
    data["integrator"]["int_order"] = 4
    paraxial = scenario_from_dict(data, "int_order.yaml")
    assert not any(e.integrated for e in paraxial.elements if e.kind == "Quadrupole")


@pytest.mark.parametrize(("where", "value"), [("integrator", 3), ("integrator", 8),
                                              ("integrator", "four"), ("override", 5),
                                              ("integrator", True)])
def test_other_orders_are_refused_in_one_line(where, value):
    with pytest.raises(ScenarioError) as caught:
        if where == "integrator":
            _scenario(value)
        else:
            _scenario(override=value)
    message = str(caught.value)
    assert "\n" not in message
    field = "integrator.int_order" if where == "integrator" else "overrides.q.int_order"
    assert "int_order.yaml" in message and field in message
    assert "2, 4 or 6" in message


# --------------------------------------------------------------------------- in-house vs ImpactX


def _deviation(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs| / std(theirs), worst coordinate (as tests/test_inhouse_vs_impactx)."""
    return float((np.abs(ours - theirs).max(axis=0) / theirs.std(axis=0)).max())


@pytest.fixture(scope="module")
def tracked() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """ImpactX (through its adapter) and in-house final particles per order."""
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND
    from harness.model.particles import generate

    out = {}
    for order in (2, 4, 6):
        scenario = _scenario(order)
        particles = generate(scenario.beam, scenario.beam.particles)
        with BACKEND().prepare(scenario, "cpu", "float64") as prepared:
            theirs = prepared.track(particles)
        ours, alive = Tracker(scenario.elements, scenario.reference_particle).track(
            torch.from_numpy(particles))
        assert alive is None or bool(alive.all())
        out[order] = (ours.numpy(), theirs)
    return out


@pytest.mark.parametrize("order", [4, 6])
def test_inhouse_equals_impactx_at_order(order, tracked):
    ours, theirs = tracked[order]
    print(f"int_order {order}: max |in-house - ImpactX| / sigma = {_deviation(ours, theirs):.2e}")
    assert _deviation(ours, theirs) <= 1e-11


@pytest.mark.parametrize("order", [4, 6])
def test_order_changes_the_result_in_both_codes(order, tracked):
    """Against the second-order result the change is far above round-off: the setting
    really reaches both codes."""
    ours, theirs = tracked[order]
    ours2, theirs2 = tracked[2]
    print(f"int_order {order} vs 2: ImpactX {_deviation(theirs, theirs2):.2e}, in-house "
          f"{_deviation(ours, ours2):.2e} of sigma")
    assert _deviation(theirs, theirs2) > 1e-6
    assert _deviation(ours, ours2) > 1e-6


@pytest.mark.parametrize(("order", "substeps"), [(2, 3), (4, 7), (6, 15)])
def test_compiled_path_runs_the_order(order, substeps):
    """The compiled tracker unrolls each integrator step into its sub-maps
    (:func:`backends.inhouse.segments.expand`): 3, 7 or 15 per step for orders 2, 4, 6."""
    scenario = _scenario(order)
    tracker = Tracker(scenario.elements, scenario.reference_particle)
    integrated = [s for s in tracker.steps() if s.label == "ExactQuad(q)"]
    assert integrated
    subs = [sub for step in integrated for sub in expand(step)]
    assert len(subs) == substeps * scenario.integrator.mapsteps


# --------------------------------------------------------------------------- other adapters


@pytest.mark.parametrize("name", sorted(set(backend_classes()) - {"impactx", "inhouse"}))
def test_other_backends_name_int_order(name):
    """An adapter with its own integrator runs another scheme: a stated order 4 is a
    labelled stand-in naming ``int_order`` (or unsupported naming it), never the
    requested model."""
    backend = backend_classes()[name]
    if not backend.availability().available:
        pytest.skip(f"{name} is not installed")
    data = copy.deepcopy(SCENARIO)
    data["lattice"]["PALS"]["facility"][-2]["cell"]["line"] = ["d", "q", "d", "s", "d"]
    data["integrator"]["int_order"] = 4
    verdict = backend().supports(scenario_from_dict(data, "int_order.yaml"))
    text = verdict.model if verdict else verdict.reason
    assert "int_order 4" in text
    if verdict:
        assert text.startswith("stand-in:")


# --------------------------------------------------------------------------- ImpactX's examples


def test_an_example_with_int_order_is_stated_with_it():
    """An example whose exact elements run ImpactX's fourth- and sixth-order integrators
    (``examples/fodo/run_fodo_exact.py``, ``symplectic_integration/run_sextupole.py``)
    becomes a scenario with the same orders: the most common one in ``integrator``, the
    others as overrides."""
    ix = pytest.importorskip("impactx").elements
    from benchmarks.impactx_examples.translate import Capture, scenario_of

    lattice = [ix.Drift(name="d", ds=1.0),
               ix.ExactQuad(name="q1", ds=0.5, k=2.0, mapsteps=5, int_order=4),
               ix.ExactQuad(name="q2", ds=0.5, k=-2.0, mapsteps=5, int_order=4),
               ix.ExactQuad(name="q3", ds=0.5, k=1.0, mapsteps=5, int_order=6)]
    capture = Capture(settings={}, lattice=lattice, bunch_charge_C=0.0, particles=100,
                      reference={"mass_MeV": 0.51099895069, "charge_qe": -1.0,
                                 "kin_energy_MeV": 2000.0},
                      distribution=("Waterbag", {
                          "lambdaX": 4e-5, "lambdaY": 4e-5, "lambdaT": 1e-3,
                          "lambdaPx": 2e-5, "lambdaPy": 2e-5, "lambdaPt": 2e-3}))
    data, reasons = scenario_of(capture, "x")
    assert reasons == [] and data is not None
    assert data["integrator"]["int_order"] == 4
    assert data["overrides"]["q3"]["int_order"] == 6
    scenario = scenario_from_dict(data, "x.yaml")
    assert {e.name: e.int_order for e in scenario.elements if e.integrated} == {
        "q1": 4, "q2": 4, "q3": 6}
