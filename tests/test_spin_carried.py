"""Spins carried, not pushed (``beam.spin.push: false``, ImpactX with ``sim.spin = False``),
spin files of vectors shorter than 1 (a macro-particle's polarization), and the example
suite's statement of an example's own spins."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from harness.model.errors import ScenarioError
from harness.model.load import scenario_from_dict

SCENARIO: dict[str, Any] = {
    "name": "spin_carried",
    "beam": {"species": "proton", "kinetic_energy_MeV": 800.0, "distribution": "gaussian",
             "twiss": {"beta_x": 5.0, "emittance_x": 1e-6, "beta_y": 5.0,
                       "emittance_y": 1e-6},
             "longitudinal": {"sigma_t": 1e-3, "sigma_pt": 1e-3},
             "particles": 800, "seed": 7,
             "spin": {"polarization": [0.7, 0.0, 0.0], "seed": 11, "push": False}},
    "model": "linear",
    "observables": ["mean_sx", "polarization", "sigma_x"],
    "lattice": {"PALS": {"facility": [
        {"q1": {"kind": "Quadrupole", "length": 0.4, "MagneticMultipoleP": {"Kn1": 2.0}}},
        {"b1": {"kind": "SBend", "length": 1.0, "BendP": {"g_ref": 0.2}}},
        {"c1": {"kind": "ImpactX.ConstF", "length": 2.0,
                "ImpactXP": {"kx": 1.0, "ky": 1.0, "kt": 1e-4}}},
        {"a1": {"kind": "Marker",
                "ApertureP": {"x_limits": [-2e-3, 2e-3], "y_limits": [-2e-3, 2e-3]}}},
        {"line": {"kind": "BeamLine", "line": ["q1", "b1", "c1", "a1"]}},
        {"use": "line"}]}},
}


def _scenario(**spin):
    beam = {**SCENARIO["beam"], "spin": {**SCENARIO["beam"]["spin"], **spin}}
    return scenario_from_dict({**SCENARIO, "beam": beam}, "spin_carried.yaml")


def test_push_false_is_read_and_labelled() -> None:
    from backends.base import model_signature

    carried, pushed = _scenario(), _scenario(push=True)
    assert carried.spin and not carried.spin_push
    assert pushed.spin and pushed.spin_push
    assert model_signature(carried).endswith("|spin:carried")
    assert model_signature(pushed).endswith("|spin")
    with pytest.raises(ScenarioError, match="push"):
        _scenario(push="no")


def test_carried_spins_inhouse_equals_impactx_and_are_unchanged() -> None:
    """ImpactX (``sim.spin`` off) and in-house: the same phase space as without spins, the
    survivors' spins exactly their initial ones, the lost particles' rows NaN."""
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE
    from harness.model.particles import generate

    scenario = _scenario()
    initial = generate(scenario.beam)
    assert initial.shape == (800, 9)
    plain = scenario_from_dict({**SCENARIO, "observables": ["sigma_x"], "beam": {
        k: v for k, v in SCENARIO["beam"].items() if k != "spin"}}, "plain.yaml")
    finals = {}
    for backend in (IMPACTX(), INHOUSE()):
        plan = backend.plan(scenario)
        assert plan, plan
        assert plan.model.endswith("|spin:carried")
        with backend.prepare_planned(plan) as prepared:
            finals[backend.name] = prepared.track(initial)
        with backend.prepare(plain) as prepared:
            finals[backend.name + "_plain"] = prepared.track(initial[:, :6])
    for name in ("impactx", "inhouse"):
        final = finals[name]
        lost = np.isnan(final).all(axis=1)
        assert 0 < lost.sum() < len(final), lost.sum()   # the aperture takes some
        np.testing.assert_array_equal(final[~lost, 6:], initial[~lost, 6:])
        np.testing.assert_array_equal(np.isnan(finals[name + "_plain"]).all(axis=1), lost)
        survivors = finals[name + "_plain"][~lost]
        np.testing.assert_allclose(final[~lost, :6], survivors, rtol=0, atol=1e-15)
    lost = np.isnan(finals["impactx"]).all(axis=1)
    np.testing.assert_array_equal(np.isnan(finals["inhouse"]).all(axis=1), lost)
    sigma = finals["impactx"][~lost, :6].std(axis=0)
    deviation = np.abs(finals["inhouse"][~lost, :6] - finals["impactx"][~lost, :6]).max(0)
    assert float((deviation / sigma).max()) <= 1e-11


def test_carried_spins_are_refused_by_the_codes_without_spins() -> None:
    from backends.registry import backend_classes

    facility = [*SCENARIO["lattice"]["PALS"]["facility"][:2],
                {"line": {"kind": "BeamLine", "line": ["q1", "b1"]}}, {"use": "line"}]
    scenario = scenario_from_dict({**SCENARIO, "lattice": {"PALS": {"facility": facility}}},
                                  "pals_only.yaml")
    for name, cls in backend_classes().items():
        if cls.spin_tracking:
            continue
        verdict = cls().supports(scenario)
        assert not verdict and "beam.spin" in verdict.reason, (name, verdict)


def test_spin_file_takes_vectors_up_to_unit_length(tmp_path) -> None:
    from harness.model.spin import read_spin_file

    spins = np.tile([0.5, 0.8, -0.3], (4, 1))   # |s| = 0.98995 (ImpactX's own example)
    np.save(tmp_path / "short.npy", spins)
    np.testing.assert_array_equal(read_spin_file(tmp_path / "short.npy"), spins)
    np.save(tmp_path / "long.npy", spins * 1.02)
    with pytest.raises(ScenarioError, match=r"beam\.spin\.file.*at most 1"):
        read_spin_file(tmp_path / "long.npy")


def _capture(settings: dict, spin, initial):
    from benchmarks.impactx_examples.translate import Capture

    return Capture(settings=settings, reference={"mass_MeV": 938.27208816, "charge_qe": 1.0,
                                                  "kin_energy_MeV": 2000.0},
                   lattice=[], distribution=None, bunch_charge_C=0.0, particles=3,
                   spin=spin, initial=initial)


def test_example_spins_are_stated_as_a_file_or_carried() -> None:
    from benchmarks.impactx_examples.translate import _spin

    initial = np.zeros((3, 9))
    initial[:, 6:] = [0.5, 0.8, -0.3]
    beam: dict = {}
    reasons: list[str] = []
    capture = _capture({"spin": True}, None, initial)   # add_n_particles(sx=, sy=, sz=)
    _spin(capture, beam, reasons, "spins.npy")
    assert not reasons and beam["spin"] == {"file": "spins.npy"}
    beam = {}
    capture = _capture({}, ("SpinvMF", {"mux": 0.7, "muy": 0.0, "muz": 0.0}), initial)
    _spin(capture, beam, reasons)
    assert not reasons
    assert beam["spin"] == {"polarization": [0.7, 0.0, 0.0], "push": False}
    assert any("push: false" in note for note in capture.notes)
    beam = {}
    _spin(_capture({"spin": True}, None, initial[:, :6]), beam, reasons)
    assert "spin" not in beam and reasons[0].startswith("spin tracking:")


def test_carried_spins_with_space_charge_inhouse() -> None:
    """The in-house space-charge tracker under carried spins: the same phase space as
    without spins, the spins unchanged."""
    from backends.inhouse import BACKEND as INHOUSE
    from harness.model.particles import generate

    facility = [*SCENARIO["lattice"]["PALS"]["facility"][:2],
                {"line": {"kind": "BeamLine", "line": ["q1", "b1"]}}, {"use": "line"}]
    data = {**SCENARIO, "lattice": {"PALS": {"facility": facility}},
            "space_charge": {"kind": "gauss3d"},
            "beam": {**SCENARIO["beam"], "bunch_charge_C": 1e-9}}
    scenario = scenario_from_dict(data, "sc.yaml")
    plain = scenario_from_dict({**data, "observables": ["sigma_x"], "beam": {
        k: v for k, v in data["beam"].items() if k != "spin"}}, "sc_plain.yaml")
    initial = generate(scenario.beam)
    with INHOUSE().prepare(scenario) as prepared:
        carried = prepared.track(initial)
    with INHOUSE().prepare(plain) as prepared:
        reference = prepared.track(initial[:, :6])
    np.testing.assert_array_equal(carried[:, :6], reference)
    np.testing.assert_array_equal(carried[:, 6:], initial[:, 6:])
    assert np.abs(reference - initial[:, :6]).max() > 0.0
