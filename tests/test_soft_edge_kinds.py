"""The soft-edge extension kinds ``ImpactX.SoftQuadrupole`` and ``ImpactX.SoftSolenoid``
wired end to end: the integrator's ``nslice`` and ``mapsteps`` reach ImpactX and the
in-house map (particle by particle, float64, <= 1e-11 sigma), an ImpactX lattice built from
sampled field data (and a solenoid in tesla, ``unit=1``) imports to the same particles, the
scenario gradient is the same in reverse mode, forward mode and central differences, bad
profiles are refused in one line naming the field, and the in-house tracker refuses them
with space charge. (The plain cases and the other backends' refusals are in
``tests/test_extension_kinds.py``; the maps themselves in
``tests/test_inhouse_new_kinds_b.py``.)"""

from __future__ import annotations

import numpy as np
import pytest

from backends.base import Plan
from harness.model.errors import ScenarioError
from harness.model.load import scenario_from_dict
from harness.model.particles import generate

#: ImpactX ``SoftQuad.H``'s default profile (tanh edges), first 6 terms, and sine terms.
COS = [0.834166514794446, 0.598104328994702, 0.141852844428785, -0.118211272182381,
       -9.056149864743113e-2, 1.803476331179615e-2]
SIN = [0.0, 0.03, -0.01, 0.02, 0.0, -0.005]
SHIFT = {"x_offset": 2e-4, "y_offset": -1e-4, "z_rot": 0.2}
SCALE = {"ImpactX.SoftQuadrupole": "gscale", "ImpactX.SoftSolenoid": "bscale"}
BEAMS = {
    "e-2GeV": {"species": "electron", "kinetic_energy_MeV": 2000.0},
    "p-250MeV": {"species": "proton", "kinetic_energy_MeV": 250.0},
}


def beam(name: str = "e-2GeV", particles: int = 2000) -> dict:
    return {**BEAMS[name], "bunch_charge_C": 0.0, "distribution": "gaussian",
            "twiss": {"beta_x": 10.0, "alpha_x": -0.5, "emittance_x": 1e-8,
                      "beta_y": 8.0, "alpha_y": 0.3, "emittance_y": 1e-8},
            "longitudinal": {"sigma_t": 1e-4, "sigma_pt": 1e-3}, "particles": particles}


def body(kind: str, scale: float = 2.5, cos: list | None = None, sin: list | None = None,
         length: float = 1.2, shift: dict | None = None) -> dict:
    own: dict = {SCALE[kind]: scale, "cos_coefficients": list(cos or COS)}
    if sin is not None:
        own["sin_coefficients"] = list(sin)
    out = {"kind": kind, "length": length, "ImpactXP": own}
    if shift:
        out["BodyShiftP"] = dict(shift)
    return out


def scenario(element: dict, beam_name: str = "e-2GeV", **extra):
    facility = [{"d1": {"kind": "Drift", "length": 0.3}}, {"x1": element},
                {"line": {"kind": "BeamLine", "line": ["d1", "x1", "d1"]}}, {"use": "line"}]
    return scenario_from_dict({"name": "soft", "beam": beam(beam_name),
                               "lattice": {"PALS": {"facility": facility}}, **extra},
                              "soft.yaml")


def _deviation(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    return np.abs(ours - theirs).max(axis=0) / theirs.std(axis=0)


@pytest.mark.parametrize("beam_name", list(BEAMS))
@pytest.mark.parametrize("kind", sorted(SCALE))
def test_nslice_and_mapsteps_reach_both_codes(kind: str, beam_name: str) -> None:
    """overrides.x1 (nslice 3, mapsteps 23) reach ImpactX's element and the in-house map;
    the particles agree to <= 1e-11 sigma and differ from the default steps' by more."""
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.impactx import translate
    from backends.inhouse import BACKEND as INHOUSE

    element = body(kind, -1.7 if beam_name == "e-2GeV" else 1.1, sin=SIN, shift=SHIFT)
    s = scenario(element, beam_name, overrides={"x1": {"nslice": 3, "mapsteps": 23}})
    coarse = scenario(element, beam_name, integrator={"mapsteps": 1})
    (spec,) = translate(s.elements[1], s.reference_particle)
    assert spec.cls == kind.removeprefix("ImpactX.")
    assert (spec.kwargs["nslice"], spec.kwargs["mapsteps"]) == (3, 23)
    assert spec.kwargs["sin_coefficients"] == SIN and spec.kwargs["cos_coefficients"] == COS
    particles = generate(s.beam, 2000)
    with IMPACTX().prepare(s) as prepared:
        theirs = prepared.track(particles)
    with INHOUSE().prepare(s, compile=False) as prepared:
        ours = prepared.track(particles)
    with INHOUSE().prepare(coarse, compile=False) as prepared:
        one_step = prepared.track(particles)
    deviation = _deviation(ours, theirs)
    print(f"{kind} {beam_name}: max |in-house - ImpactX| / sigma = {deviation.max():.2e}")
    assert deviation.max() <= 1e-11, deviation
    assert _deviation(one_step, theirs).max() > 1e-6


def test_an_impactx_lattice_from_field_data_imports_to_the_same_particles() -> None:
    """ImpactX elements built from sampled data (``z``, ``gradient_on_axis``, ``ncoef``)
    and a SoftSolenoid in tesla (``unit=1``) import, through the example translation,
    as coefficients, bscale / (B rho), nslice and mapsteps; the in-house track of the
    imported scenario is ImpactX's track of the original elements (<= 1e-11 sigma)."""
    pytest.importorskip("impactx")
    from impactx import elements as ix

    from backends.inhouse import BACKEND as INHOUSE
    from benchmarks.impactx_examples.translate import Capture, scenario_of
    from tests.test_inhouse_vs_impactx import run_impactx

    ref = scenario(body("ImpactX.SoftSolenoid"), "p-250MeV").reference_particle
    z = np.linspace(-0.5, 0.5, 201)
    gradient = 0.5 * (np.tanh((z + 0.3) / 0.05) - np.tanh((z - 0.3) / 0.05))
    field = 1.0 / (1.0 + (z / 0.1) ** 2)
    tesla = 0.8 * ref.rigidity_Tm

    def lattice() -> list:
        return [ix.Drift(name="d", ds=0.25),
                ix.SoftQuadrupole(name="q", ds=1.0, gscale=1.3, z=z, gradient_on_axis=gradient,
                                  ncoef=15, mapsteps=40, nslice=2, dx=1e-4, rotation=5.0),
                ix.SoftSolenoid(name="s", ds=0.8, bscale=tesla, unit=1, z=z,
                                field_on_axis=field, ncoef=12, mapsteps=30),
                ix.Drift(name="d", ds=0.25)]

    from impactx import ImpactX

    sim = ImpactX()
    sim.verbose = 0
    sim.tiny_profiler = False
    sim.init_grids()
    try:
        built = lattice()
        capture = Capture(settings={}, reference={"mass_MeV": ref.mass_eV / 1e6,
                                                  "charge_qe": 1.0,
                                                  "kin_energy_MeV": 250.0},
                          lattice=built, distribution=("Gaussian", {}), bunch_charge_C=0.0,
                          particles=1000)
        data, reasons = scenario_of(capture, "soft")
        expected_cos = [list(e.to_dict()["cos_coefficients"]) for e in built[1:3]]
    finally:
        sim.finalize()
    assert not reasons and data is not None, reasons
    data["beam"] = beam("p-250MeV", 1000)
    s = scenario_from_dict(data, "imported.yaml")
    q, sol = s.elements[1], s.elements[2]
    assert q.kind == "ImpactX.SoftQuadrupole" and sol.kind == "ImpactX.SoftSolenoid"
    assert [q.params[f"cos{j}"] for j in range(15)] == expected_cos[0]
    assert [sol.params[f"cos{j}"] for j in range(12)] == expected_cos[1]
    assert sol.params["bscale"] == pytest.approx(0.8, rel=1e-14)
    assert (q.nslice, q.mapsteps, sol.nslice, sol.mapsteps) == (2, 40, 1, 30)
    particles = generate(s.beam, 1000)
    theirs, kept = run_impactx(lattice, s.reference_particle,  # type: ignore[arg-type]
                               particles)              # (built once AMReX is initialised)
    assert len(kept) == len(particles)
    with INHOUSE().prepare(s, compile=False) as prepared:
        ours = prepared.track(particles)
    deviation = _deviation(ours, theirs)
    print(f"imported soft-edge lattice: max |in-house - ImpactX| / sigma = "
          f"{deviation.max():.2e}")
    assert deviation.max() <= 1e-11, deviation


#: (kind, field) of the derivative checks (element x1).
AD_FIELDS = [("ImpactX.SoftQuadrupole", f) for f in ("gscale", "length", "cos1", "sin2")] + \
    [("ImpactX.SoftSolenoid", f) for f in ("bscale", "length", "cos0", "sin1")]


@pytest.mark.parametrize(("kind", "field"), AD_FIELDS)
def test_reverse_mode_equals_forward_mode_and_differences(kind: str, field: str) -> None:
    """d sigma_x / d field through the scenario's in-house track: reverse mode = forward
    mode (1e-12 relative) = a central difference (h = 1e-4 relative; 1e-6 relative)."""
    import torch
    from torch.func import jvp

    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(body(kind, 1.9, sin=SIN, shift=SHIFT))
    particles = generate(s.beam, 500)
    made = INHOUSE().differentiable_observables(s, [f"x1.{field}"], ["sigma_x"], particles,
                                                "cpu", "float64")
    assert made is not None
    g, theta0 = made
    theta = theta0.clone().requires_grad_(True)
    (ad,) = torch.autograd.grad(g(theta)["sigma_x"], theta)
    forward = jvp(lambda t: g(t)["sigma_x"], (theta0,), (torch.ones_like(theta0),))[1]
    h = 1e-4 * max(abs(float(theta0[0])), 1e-2)
    with torch.no_grad():
        fd = (g(theta0 + h)["sigma_x"] - g(theta0 - h)["sigma_x"]) / (2 * h)
    ad_v, fwd_v, fd_v = float(ad[0]), float(forward), float(fd)
    print(f"{kind}.{field}: AD {ad_v:.10e} forward {fwd_v:.10e} FD {fd_v:.10e}")
    assert ad_v != 0.0
    assert abs(ad_v - fwd_v) <= 1e-12 * abs(ad_v)
    assert abs(ad_v - fd_v) <= 1e-6 * abs(fd_v)


BAD = [
    ({"gscale": 1.0}, r"x1\.ImpactXP\.cos_coefficients: expected this required field"),
    ({"gscale": 1.0, "cos_coefficients": []},
     r"ImpactXP\.cos_coefficients: expected a list of 1 to 200 numbers"),
    ({"gscale": 1.0, "cos_coefficients": [1.0] * 201},
     r"ImpactXP\.cos_coefficients: expected a list of 1 to 200 numbers"),
    ({"gscale": 1.0, "cos_coefficients": [2.0, 0.1], "sin_coefficients": [0.0]},
     r"ImpactXP\.sin_coefficients: expected as many entries as cos_coefficients \(2\)"),
    ({"gscale": 1.0, "cos_coefficients": [2.0, "a"]},
     r"ImpactXP\.cos_coefficients\[1\]: expected a number"),
    ({"gscale": 1.0, "cos_coefficients": [2.0, 1e7]},
     r"ImpactXP\.cos_coefficients\[1\]: expected -1e\+06 <= x <= 1e\+06"),
    ({"gscale": 1e7, "cos_coefficients": [2.0]}, r"ImpactXP\.gscale: expected -1e\+06"),
    ({"gscale": 1.0, "cos_coefficients": [2.0], "aperture_x": 1e-3},
     r"ImpactXP\.aperture_x: expected one of the fields of ImpactX\.SoftQuadrupole"),
    ({"gscale": 1.0, "cos_coefficients": [2.0], "mapsteps": 20},
     r"ImpactXP\.mapsteps: expected one of the fields of ImpactX\.SoftQuadrupole"),
    ({"bscale": 1.0, "cos_coefficients": [2.0]},
     r"ImpactXP\.bscale: expected one of the fields of ImpactX\.SoftQuadrupole"),
]


@pytest.mark.parametrize(("own", "message"), BAD, ids=[m[:50] for _, m in BAD])
def test_bad_profile_is_one_line_naming_the_field(own: dict, message: str) -> None:
    element = {"kind": "ImpactX.SoftQuadrupole", "length": 1.0, "ImpactXP": own}
    with pytest.raises(ScenarioError, match=message) as caught:
        scenario(element)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("soft.yaml: ")


def test_zero_length_is_refused() -> None:
    with pytest.raises(ScenarioError, match=r"x1\.length: expected a positive length"):
        scenario(body("ImpactX.SoftSolenoid", length=0.0))


@pytest.mark.parametrize("kind", sorted(SCALE))
def test_inhouse_refuses_them_with_space_charge_by_name(kind: str) -> None:
    from backends.inhouse import BACKEND as INHOUSE

    s = scenario(body(kind), space_charge={"kind": "3d", "grid": [16, 16, 16]})
    verdict = INHOUSE().supports(s)
    assert not verdict and kind in verdict.reason and "x1" in verdict.reason


@pytest.mark.parametrize("kind", sorted(SCALE))
def test_envelope_tracking_agrees_and_envelope_space_charge_is_refused(kind: str) -> None:
    """tracking: envelope: the in-house covariance is ImpactX's (1e-14 of its largest
    entry); with envelope space charge the in-house tracker refuses the kind by name (it
    would cut the element into pieces that rescale the profile)."""
    pytest.importorskip("impactx")
    from backends.impactx import BACKEND as IMPACTX
    from backends.inhouse import BACKEND as INHOUSE
    from backends.inhouse.envelope import initial_covariance

    s = scenario(body(kind, 1.7, sin=SIN), tracking="envelope")
    sigma = np.asarray(initial_covariance(s))
    finals = []
    for backend in (IMPACTX(), INHOUSE()):
        plan = backend.plan(s)
        assert isinstance(plan, Plan), plan
        finals.append(backend.prepare_planned(plan).track(sigma))
    scale = np.abs(finals[0]).max()
    assert np.abs(finals[0] - sigma).max() > 1e-3 * scale
    assert np.abs(finals[1] - finals[0]).max() <= 1e-14 * scale
    facility = [{"x1": body(kind)}, {"line": {"kind": "BeamLine", "line": ["x1"]}},
                {"use": "line"}]
    charged = scenario_from_dict({
        "name": "esc", "beam": {**beam(), "bunch_charge_C": 1e-10}, "tracking": "envelope",
        "envelope_space_charge": {"kind": "3d"},
        "lattice": {"PALS": {"facility": facility}}}, "esc.yaml")
    verdict = INHOUSE().supports(charged)
    assert not verdict and kind in verdict.reason and "envelope space charge" in \
        verdict.reason
