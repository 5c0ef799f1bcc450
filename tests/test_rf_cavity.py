"""``ImpactX.RFCavity`` end to end: a line of every kind of reference push before and
between two cavities (so the second cavity's RF phase depends on the reference time through
each of them), ImpactX against the in-house tracker particle by particle and in envelope
mode (with 3D envelope space charge too), the scenario gradient on escale and phase
(reverse = forward = central differences), the refusals, the bad-input messages and the
ImpactX-lattice importer."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from backends.registry import available_backends, get_backend
from harness.model.errors import ScenarioError
from harness.model.lattice import profile_coefficients
from harness.model.load import scenario_from_dict
from harness.model.particles import beam_covariance, generate

BACKENDS = available_backends()
needs_impactx = pytest.mark.skipif("impactx" not in BACKENDS, reason="needs ImpactX")

#: The profile of ImpactX examples/epac2004_benchmarks (first 8 cosine terms) with sines.
COS = [0.120864178375839, -0.044057987631337, -0.209107290958498, -0.019831226655815,
       0.290428111491964, 0.381974267375227, 0.276801212694382, 0.148265085353012]
SIN = [0.0, 0.02, -0.01, 0.0, 0.005, 0.0, 0.0, 0.001]


def cavity(escale: float, phase: float, length: float = 1.0, **shift: float) -> dict:
    body = {"kind": "ImpactX.RFCavity", "length": length,
            "ImpactXP": {"escale": escale, "freq": 7e8, "phase": phase,
                         "cos_coefficients": list(COS), "sin_coefficients": list(SIN)}}
    if shift:
        body["BodyShiftP"] = dict(shift)
    return body


#: Elements before, between and after the cavities: each kind of reference-time push
#: (drift, bend arc, quadrupole, thick kicker halves, solenoid, ConstF, LinearMap).
LINE = {
    "d1": {"kind": "Drift", "length": 0.4},
    "b1": {"kind": "SBend", "length": 0.5, "BendP": {"g_ref": 0.2}},
    "q1": {"kind": "Quadrupole", "length": 0.2, "MagneticMultipoleP": {"Kn1": 1.5}},
    "k1": {"kind": "Kicker", "length": 0.3, "MagneticMultipoleP": {"Kn0L": 1e-4}},
    "s1": {"kind": "Solenoid", "length": 0.3, "SolenoidP": {"Ksol": 0.4}},
    "f1": {"kind": "ImpactX.ConstF", "length": 0.25,
           "ImpactXP": {"kx": 0.5, "ky": 0.6, "kt": 0.2}},
    "m1": {"kind": "ImpactX.LinearMap", "length": 0.35,
           "ImpactXP": {"R": [[1.0 if i == j else (0.2 if (i, j) == (0, 1) else 0.0)
                               for j in range(6)] for i in range(6)]}},
    "c1": cavity(0.04, 0.6, z_rot=0.1),
    "a1": {"kind": "ImpactX.ChrAcc", "length": 0.3, "ImpactXP": {"ez": 0.05, "bz": 0.2}},
    "c2": cavity(0.03, -0.9),
    "c3": cavity(0.04, 0.6),
}


def scenario(line: list[str], model: str = "linear", spin: bool = False, **extra: Any):
    facility: list[dict[str, Any]] = [{name: LINE[name]} for name in dict.fromkeys(line)]
    facility += [{"line": {"kind": "BeamLine", "line": line}}, {"use": "line"}]
    return scenario_from_dict({
        "name": "rf_cavity", "model": model, "integrator": {"nslice": 2, "mapsteps": 25},
        "beam": {"species": "proton", "kinetic_energy_MeV": 250.0, "bunch_charge_C": 1e-9,
                 "distribution": "gaussian",
                 "twiss": {"beta_x": 3.0, "alpha_x": -0.4, "emittance_x": 1e-7,
                           "beta_y": 4.0, "alpha_y": 0.3, "emittance_y": 1e-7},
                 "longitudinal": {"sigma_t": 2e-3, "sigma_pt": 2e-4}, "particles": 2000,
                 **({"spin": {"polarization": [0.0, 0.0, 1.0]}} if spin else {})},
        "observables": ["sigma_x", "sigma_t", "sigma_pt"],
        "lattice": {"PALS": {"facility": facility}}, **extra}, "rf.yaml")


FULL = ["d1", "b1", "q1", "k1", "s1", "f1", "m1", "c1", "d1", "c2", "q1", "d1"]


def _track(s) -> tuple[np.ndarray, np.ndarray]:
    particles = generate(s.beam, 2000)
    out = []
    for name in ("impactx", "inhouse"):
        backend = get_backend(name)
        plan = backend.plan(s)
        assert plan, plan
        with backend.prepare_planned(plan) as prepared:
            out.append(prepared.track(particles))
    return out[0], out[1]


@needs_impactx
@pytest.mark.parametrize("model", ["linear", "exact"])
def test_inhouse_equals_impactx_through_every_reference_push(model: str) -> None:
    """Two cavities after drifts, a bend, a quadrupole, a thick kicker, a solenoid, a ConstF
    and a LinearMap (exact tier: ExactDrift, ExactSbend, ExactQuad): the same 2000 protons
    agree to <= 1e-11 sigma in every coordinate (measured 7.0e-15 linear, 4.2e-12 exact: the
    exact-tier elements alone give 4.6e-12, without the cavities)."""
    theirs, ours = _track(scenario(FULL, model))
    sigma = theirs.std(axis=0)
    deviation = np.abs(ours - theirs).max(axis=0) / sigma
    print(f"{model}: max |in-house - ImpactX| / sigma = {deviation.max():.2e}")
    assert np.isfinite(ours).all() and (deviation <= 1e-11).all(), deviation


@needs_impactx
def test_cavity_after_chr_acc_sees_its_time() -> None:
    """A ChrAcc before the second cavity: its reference time (bg_f - bg_i) / ez carries into
    the cavity's RF phase (t: ImpactX's own round-off in ChrAcc, ~eps gamma / ez; measured
    2.3e-12 sigma in t, 1.5e-14 in x, px, y, py)."""
    theirs, ours = _track(scenario(["d1", "c1", "a1", "c2", "d1"]))
    sigma = theirs.std(axis=0)
    deviation = np.abs(ours - theirs).max(axis=0) / sigma
    print(f"with ChrAcc: per coordinate {np.array2string(deviation, precision=1)}")
    assert (deviation <= 1e-10).all(), deviation


def test_the_cavity_reads_the_reference_time() -> None:
    """The same cavity 0.4 m further down the line has another RF phase: the map differs."""
    from backends.inhouse.tracker import LinearStep, Tracker

    near = scenario(["c2", "d1"])
    far = scenario(["d1", "c2"])
    m_near = Tracker(near.elements, near.reference_particle).steps()[0]
    m_far = Tracker(far.elements, far.reference_particle).steps()[-1]
    assert isinstance(m_near, LinearStep) and isinstance(m_far, LinearStep)
    assert not torch.allclose(m_near.matrix, m_far.matrix, rtol=1e-6, atol=0.0)


@needs_impactx
@pytest.mark.parametrize("space_charge", [False, True])
def test_envelope_equals_impactx(space_charge: bool) -> None:
    """Envelope mode: the cavity's linear map (ImpactX ``RFCavity::transport_map``); with 3D
    envelope space charge its own half slices around each slice's kick. Final covariance
    to <= 1e-12 of its largest entry (measured 3.5e-16 without, 5.0e-15 with)."""
    extra: dict[str, Any] = {"tracking": "envelope"}
    if space_charge:
        extra["envelope_space_charge"] = {"kind": "3d"}
    s = scenario(["d1", "q1", "c3", "d1", "c2", "d1"], **extra)
    sigma = beam_covariance(s.beam)
    finals = {}
    for name in ("impactx", "inhouse"):
        backend = get_backend(name)
        plan = backend.plan(s)
        assert plan, plan
        finals[name] = backend.prepare_planned(plan).track(sigma)
    scale = np.abs(finals["impactx"]).max()
    deviation = np.abs(finals["inhouse"] - finals["impactx"]).max() / scale
    print(f"envelope (space charge {space_charge}): {deviation:.2e} of the largest entry")
    assert deviation <= 1e-12


def test_gradient_on_escale_and_phase_equals_forward_mode_and_differences() -> None:
    """d (sigma_pt, sigma_t, sigma_x) / d (escale, phase of both cavities): reverse mode =
    forward mode to round-off, = five-point central differences to 1e-7 (measured at most
    3.3e-10; the second cavity's map depends on the first's through gamma and the
    reference time)."""
    s = scenario(["d1", "c1", "q1", "d1", "c2", "d1"])
    names = ["c1.escale", "c1.phase", "c2.escale", "c2.phase"]
    particles = generate(s.beam, 300)
    made = get_backend("inhouse").differentiable_observables(
        s, names, ["sigma_x", "sigma_t", "sigma_pt"], particles, "cpu", "float64")
    assert made is not None
    g, theta0 = made

    def f(theta: torch.Tensor) -> torch.Tensor:
        values = g(theta)
        return values["sigma_pt"] * 1e3 + values["sigma_t"] * 10.0 + values["sigma_x"] * 1e2

    theta = theta0.clone().requires_grad_(True)
    (reverse,) = torch.autograd.grad(f(theta), theta)
    for index, name in enumerate(names):
        tangent = torch.zeros_like(theta0)
        tangent[index] = 1.0
        forward = torch.func.jvp(f, (theta0,), (tangent,))[1]
        h = 1e-4 * abs(float(theta0[index]))

        def at(step: float, index: int = index) -> float:
            shifted = theta0.clone()
            shifted[index] += step
            with torch.no_grad():
                return float(f(shifted))

        fd = (8.0 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12.0 * h)
        print(f"d/d{name}: reverse {float(reverse[index]):.12e} forward "
              f"{float(forward):.12e} fd {fd:.12e}")
        assert float(reverse[index]) != 0.0
        assert abs(float(reverse[index]) - float(forward)) <= 1e-12 * abs(fd)
        assert abs(float(reverse[index]) - fd) <= 1e-7 * abs(fd)


def test_other_backends_refuse_the_cavity_by_name() -> None:
    s = scenario(["d1", "c1", "d1"])
    for name in BACKENDS:
        if name in ("impactx", "inhouse"):
            continue
        verdict = get_backend(name).plan(s)
        assert not verdict and "ImpactX.RFCavity" in verdict.reason, (name, verdict)


def test_inhouse_refuses_particle_space_charge_and_spin_through_a_cavity() -> None:
    """Particle space charge (the tracker would cut the cavity into shorter cavities) and
    spin (ImpactX's RFCavity spin push is not ported) are refused by name."""
    s = scenario(["d1", "c2", "d1"], space_charge={"kind": "3d", "grid": [16, 16, 16],
                                                   "kicks_per_element": 2})
    verdict = get_backend("inhouse").plan(s)
    assert not verdict and "ImpactX.RFCavity with space charge (c2)" in verdict.reason
    verdict = get_backend("inhouse").plan(scenario(["d1", "c2", "d1"], spin=True))
    assert not verdict and "RFCavity" in verdict.reason, verdict


#: An elliptical pipe aperture over the whole cavity (PALS ApertureP, ImpactX aperture_x/y).
PIPE = {"x_limits": [-2e-3, 2e-3], "y_limits": [-1.5e-3, 1.5e-3], "shape": "ELLIPTICAL",
        "location": "EVERYWHERE"}


@needs_impactx
def test_a_pipe_aperture_loses_the_same_particles_in_both_codes() -> None:
    """A cavity with a pipe aperture and nslice 1: the same particles lost in ImpactX and
    the in-house tracker, the survivors equal to round-off; with nslice 2 the in-house
    tracker refuses it by name (its map reads the whole profile, it cannot check the
    aperture between slices)."""
    LINE["cp"] = {**cavity(0.04, 0.6), "ApertureP": PIPE}
    try:
        s = scenario(["d1", "cp", "d1"])
        one = scenario(["d1", "cp", "d1"], integrator={"nslice": 1, "mapsteps": 25})
    finally:
        del LINE["cp"]
    verdict = get_backend("inhouse").plan(s)
    assert not verdict and "pipe aperture and nslice 2" in verdict.reason, verdict
    theirs, ours = _track(one)
    _same_losses(theirs, ours)


@needs_impactx
def test_a_sliced_piped_drift_advances_the_cavitys_reference_time() -> None:
    """A drift with a pipe aperture cut into 3 slices before the cavity: each slice moves
    the reference time by a third of the drift, so the cavity's RF phase is ImpactX's."""
    LINE["dp"] = {"kind": "Drift", "length": 0.9, "ApertureP": PIPE}
    try:
        s = scenario(["dp", "c2", "d1"], integrator={"nslice": 3, "mapsteps": 25},
                     overrides={"c2": {"nslice": 1}})
    finally:
        del LINE["dp"]
    _same_losses(*_track(s))


def _same_losses(theirs: np.ndarray, ours: np.ndarray) -> None:
    """The same particles lost (all-NaN rows), some but not all, and the survivors equal
    to 1e-11 sigma."""
    lost = np.isnan(theirs).all(axis=1)
    assert np.array_equal(lost, np.isnan(ours).all(axis=1))
    assert 0 < lost.sum() < len(lost)
    deviation = np.abs(ours[~lost] - theirs[~lost]).max(axis=0) / theirs[~lost].std(axis=0)
    print(f"pipe aperture: {lost.sum()} of {len(lost)} lost in both; max |in-house - "
          f"ImpactX| / sigma = {deviation.max():.2e}")
    assert deviation.max() <= 1e-11


BAD = [
    ({"cos_coefficients": []}, r"ImpactXP\.cos_coefficients: expected a list of 1 to 200"),
    ({"cos_coefficients": 0.5}, r"ImpactXP\.cos_coefficients: expected a list of 1 to 200"),
    ({"cos_coefficients": None}, r"ImpactXP\.cos_coefficients: expected this required"),
    ({"sin_coefficients": [0.0]},
     r"ImpactXP\.sin_coefficients: expected as many entries as cos_coefficients \(8\)"),
    ({"cos_coefficients": [0.1, "a"], "sin_coefficients": None},
     r"ImpactXP\.cos_coefficients\[1\]: expected a number"),
    ({"cos_coefficients": [0.1, 2e6], "sin_coefficients": None},
     r"ImpactXP\.cos_coefficients\[1\]: expected"),
    ({"freq": 0.0}, r"ImpactXP\.freq: expected 0 < x"),
    ({"escale": 2e3}, r"ImpactXP\.escale: expected -1000 <= x <= 1000"),
    ({"aperture_x": 1e-3}, r"ImpactXP\.aperture_x: expected one of the fields"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_input_is_one_line_naming_the_field(change: dict, message: str) -> None:
    body = cavity(0.04, 0.6)
    own = {**body["ImpactXP"], **change}
    body["ImpactXP"] = {k: v for k, v in own.items() if v is not None}
    LINE["bad"] = body
    try:
        with pytest.raises(ScenarioError, match=message) as caught:
            scenario(["d1", "bad"])
    finally:
        del LINE["bad"]
    assert "\n" not in str(caught.value) and str(caught.value).startswith("rf.yaml: ")


def test_zero_length_is_refused() -> None:
    LINE["bad"] = cavity(0.04, 0.6, length=0.0)
    try:
        with pytest.raises(ScenarioError, match=r"bad\.length: expected a positive length"):
            scenario(["d1", "bad"])
    finally:
        del LINE["bad"]


def test_observables_are_tracked_map_by_map_through_a_cavity() -> None:
    """The composed-matrix path (one reference for every map) is not taken through a
    cavity, which changes the reference energy and reads its time: the observables equal
    the map-by-map track's."""
    from backends.inhouse.objective import make_observables

    s = scenario(["d1", "c1", "d1", "c2", "q1", "d1"])
    values = []
    for composed in (True, False):
        observe, theta0 = make_observables(s, ["c2.escale"], ["sigma_x", "sigma_pt"], 500,
                                           composed=composed)
        values.append(observe(theta0))
    for name in ("sigma_x", "sigma_pt"):
        assert float(values[0][name]) == float(values[1][name]), name


@needs_impactx
def test_an_impactx_cavity_imports_with_its_profile() -> None:
    """ImpactX ``RFCavity`` -> ``ImpactX.RFCavity`` (phase to rad, the coefficient lists,
    the misalignment); its ``mapsteps`` is the importer's integrator setting."""
    from impactx import elements as ix

    from harness.io.impactx_lattice import element_settings, import_impactx
    from harness.io.model import Translated

    s = scenario(["d1"])
    element = ix.RFCavity(name="rf", ds=1.2, escale=62.0, freq=1.3e9, phase=85.5,
                          cos_coefficients=COS, sin_coefficients=SIN, mapsteps=40, nslice=3,
                          dx=1e-4, rotation=2.0)
    result = import_impactx([element], s.reference_particle)
    (item,) = result.items
    assert isinstance(item, Translated)
    LINE["rf"] = item.fields
    try:
        loaded = scenario(["d1", "rf"])
    finally:
        del LINE["rf"]
    params = loaded.elements[1].params
    assert params["escale"] == 62.0 and params["freq"] == 1.3e9
    assert params["phase"] == pytest.approx(math.radians(85.5), rel=1e-15)
    assert profile_coefficients(params) == (COS, SIN)
    assert params["x_offset"] == 1e-4 and params["z_rot"] == pytest.approx(math.radians(2.0))
    settings = element_settings(element)
    assert settings["mapsteps"] == 40 and settings["nslice"] == 3
