"""Spin tracking: the in-house spin maps (backends.inhouse.spin) against the analytic spin
precession in a uniform dipole field, against ImpactX particle by particle (float64) on
single elements, the HTU line and the lattices of ImpactX's spin examples, and their
gradients (reverse mode = forward mode = finite differences)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backends.inhouse.spin import (
    GYROMAGNETIC_ANOMALY,
    SpinTracker,
    SpinUnsupported,
    sample_vmf,
    spin_observables,
)
from harness.model.lattice import Element
from harness.model.reference_particle import ReferenceParticle

N_PARTICLES = 2000

#: Bound on |in-house - ImpactX| of each spin component (a unit vector), any particle.
SPIN_BOUND = 1e-11


def _element(name, kind, tier="linear", nslice=1, mapsteps=10, **params) -> Element:
    return Element(name, kind, params, tier, tier, nslice, mapsteps)


def _columns(array: np.ndarray) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(array.T)).unbind(0))


def _track(elements, reference, particles, spins, values=None, anomaly=None):
    tracker = SpinTracker(elements, reference, anomaly=anomaly)
    return tracker.track(_columns(particles), _columns(spins), values)


# ----------------------------------------------------------------------------- analytic


@pytest.mark.parametrize("tier", ["linear", "exact"])
@pytest.mark.parametrize("species,energy", [("electron", 2000.0), ("proton", 800.0)])
def test_uniform_dipole_precession(tier, species, energy):
    """Thomas-BMT in a uniform magnetic field B perpendicular to the velocity (Jackson,
    Classical Electrodynamics, 3rd ed., §11.11, eq. 11.171 with E = 0): the spin turns
    (1 + G gamma) times as fast as the velocity, so over an orbit deflection theta it turns
    by G gamma theta relative to the velocity, i.e. in the Frenet-Serret frame of the
    reference orbit, about the field (y) axis and in the sense the orbit turns (towards -x
    for theta > 0 in ImpactX's frame). The reference particle (all coordinates 0) through
    a sector bend of angle theta: s_x = -sin(G gamma theta), s_z = cos(G gamma theta) from
    s = e_z; G gamma theta = 2 pi returns the spin (ImpactX example ``run_sbend_spin.py``)."""
    reference = ReferenceParticle(species, energy)
    g_gamma = GYROMAGNETIC_ANOMALY[species] * reference.gamma
    particles = np.zeros((4, 6))
    spins = np.tile([0.0, 0.0, 1.0], (4, 1))
    for turn in (0.1, 0.25, 1.0):
        angle = 2.0 * math.pi * turn / g_gamma
        length = abs(angle) * 1.5  # rc = 1.5 m
        bend = _element("b", "SBend", tier, nslice=3, length=length, angle=angle, e1=0.0,
                        e2=0.0)
        state = _track([bend], reference, particles, spins)
        sx, sy, sz = (s.numpy() for s in state.spins)
        phase = g_gamma * angle
        np.testing.assert_allclose(sx, -math.sin(phase), atol=1e-12)
        np.testing.assert_allclose(sy, 0.0, atol=1e-15)
        np.testing.assert_allclose(sz, math.cos(phase), atol=1e-12)


def test_vmf_polarization():
    """ImpactX's SpinvMF law: unit spins whose mean is close to the polarisation vector for
    a concentrated distribution (|P| = 0.9 -> mean within 3 sigma/sqrt(N)); +z exactly."""
    spins = sample_vmf((0.0, 0.0, 1.0), 100, 1).numpy()
    np.testing.assert_array_equal(spins, np.tile([0.0, 0.0, 1.0], (100, 1)))
    spins = sample_vmf((0.4, 0.7, 0.3), 20000, 2).numpy()
    np.testing.assert_allclose(np.linalg.norm(spins, axis=1), 1.0, atol=1e-14)
    direction = np.array([0.4, 0.7, 0.3]) / np.linalg.norm([0.4, 0.7, 0.3])
    assert abs(spins.mean(0) @ direction - np.linalg.norm([0.4, 0.7, 0.3])) < 0.05


def test_refusals():
    reference = ReferenceParticle("electron", 100.0)
    with pytest.raises(SpinUnsupported, match="ShortRF"):
        SpinTracker([_element("rf", "RFCavity", length=0.0, voltage=1e6, frequency=1e9,
                              phase=0.0)], reference)
    with pytest.raises(SpinUnsupported, match="DipEdge"):
        SpinTracker([_element("b", "SBend", length=1.0, angle=0.1, e1=0.1, e2=0.0)],
                    reference)


# ----------------------------------------------------------------------------- vs ImpactX

impactx_spin = pytest.importorskip("backends.impactx_spin")


def _compare(elements, reference, particles, spins, kickers_as_markers=False):
    theirs = impactx_spin.track_lattice_spin(elements, reference, particles, spins,
                                             kickers_as_markers)
    state = _track(elements, reference, particles, spins)
    ours_p = torch.stack(state.columns, 1).numpy()
    ours_s = torch.stack(state.spins, 1).numpy()
    if state.alive is not None:
        np.testing.assert_array_equal(np.flatnonzero(state.alive.numpy()), theirs.index)
    ours_p, ours_s = ours_p[theirs.index], ours_s[theirs.index]
    phase = float((np.abs(ours_p - theirs.particles).max(0)
                   / theirs.particles.std(0)).max())
    spin = float(np.abs(ours_s - theirs.spins).max())
    return phase, spin, ours_s, theirs


ELEMENT_CASES = {
    "drifts": [_element("d1", "Drift", length=1.0), _element("d2", "Drift", "paraxial",
                                                             length=0.5),
               _element("d3", "Drift", "exact", length=0.7)],
    "quad": [_element("q", "Quadrupole", length=0.5, Kn1=3.0),
             _element("q2", "Quadrupole", length=0.4, Kn1=-2.0)],
    "chr_quad_3_slices": [_element("q", "Quadrupole", "paraxial", length=0.5, Kn1=3.0),
                          _element("q2", "Quadrupole", "paraxial", nslice=3, length=0.4,
                                   Kn1=-2.0)],
    "sbend_2_slices": [_element("b", "SBend", nslice=2, length=0.5, angle=0.2, e1=0.0,
                                e2=0.0)],
    "cfbend": [_element("b", "SBend", length=0.5, angle=0.1, e1=0.0, e2=0.0, Kn1=0.7)],
    "exact_sbend_3_slices": [_element("b", "SBend", "exact", nslice=3, length=0.5,
                                      angle=-0.2, e1=0.0, e2=0.0)],
    "solenoid": [_element("s", "Solenoid", length=0.7, Ksol=1.3)],
    "thin_multipoles": [_element("m", "Multipole", length=0.0, Kn0L=1e-3, Kn1L=0.3,
                                 Ks1L=0.1, Kn2L=50.0, Ks3L=1000.0)],
    "kickers": [_element("k", "Kicker", length=0.0, Kn0L=2e-3, Ks0L=-1e-3),
                _element("k2", "Kicker", "paraxial", length=0.3, Kn0L=-1e-3, Ks0L=3e-3)],
    "shifted_rolled_quad": [_element("q", "Quadrupole", length=0.5, Kn1=3.0, z_rot=0.3,
                                     x_offset=1e-4, y_offset=-2e-4)],
    "aperture": [_element("d", "Drift", length=1.0),
                 _element("a", "Aperture", length=0.0, x_limit=1.5e-3, y_limit=1e-3,
                          elliptical=1.0)],
}

ENERGIES = {"e-2GeV": ReferenceParticle("electron", 2000.0),
            "p800MeV": ReferenceParticle("proton", 800.0)}


@pytest.fixture(scope="module")
def beam() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20251125)
    particles = rng.standard_normal((N_PARTICLES, 6)) * np.array([1e-3, 2e-4, 1e-3, 2e-4,
                                                                  1e-4, 1e-3])
    return particles, sample_vmf((0.3, 0.5, 0.6), N_PARTICLES, 3).numpy()


@pytest.mark.parametrize("energy", list(ENERGIES))
@pytest.mark.parametrize("case", list(ELEMENT_CASES))
def test_element_spin_vs_impactx(case, energy, beam):
    particles, spins = beam
    phase, spin, ours, _ = _compare(ELEMENT_CASES[case], ENERGIES[energy], particles, spins)
    print(f"{case} @ {energy}: phase {phase:.1e} sigma, spin {spin:.1e}")
    assert phase <= 1e-9
    assert spin <= SPIN_BOUND
    if case not in ("drifts", "aperture"):
        assert np.abs(ours - spins[:len(ours)]).max() > 1e-4 or case == "aperture"


def _spin_example_lattices() -> dict:
    """The lattices of ImpactX's ``examples/spin_tracking/run_*.py`` that the in-house
    spin maps cover, as harness elements, with their reference particle and beam sigmas
    (x, px, y, py, t, pt)."""
    electron_2gev = ReferenceParticle("electron", 2000.0)
    g_gamma = GYROMAGNETIC_ANOMALY["electron"] * electron_2gev.gamma
    sbend_length = 2.0 * math.pi / g_gamma
    proton = ReferenceParticle("proton", 2000.0)
    sol_length = 2.0 * math.pi / GYROMAGNETIC_ANOMALY["proton"]
    fodo = [_element("d1", "Drift", "paraxial", length=0.25),
            _element("qf", "Quadrupole", "paraxial", length=1.0, Kn1=1.0),
            _element("d2", "Drift", "paraxial", length=0.5),
            _element("qd", "Quadrupole", "paraxial", length=1.0, Kn1=-1.0),
            _element("d3", "Drift", "paraxial", length=0.25)]
    big = [3e-3, 0.2, 3e-3, 0.2, 1e-6, 0.2]
    return {
        # run_sbend_spin.py: one design spin period in a sector bend, rc = 1 m
        "sbend_spin": ([_element("bend1", "SBend", length=sbend_length,
                                 angle=sbend_length, e1=0.0, e2=0.0)],
                       electron_2gev, big),
        # run_quad_spin.py: one betatron period of a k = 100 quadrupole, 100 MeV electrons
        "quad_spin": ([_element("quad1", "Quadrupole", length=2.0 * math.pi / 10.0,
                                Kn1=100.0)],
                      ReferenceParticle("electron", 100.0), [3e-4, 2e-4, 3e-4, 2e-4, 1e-6,
                                                             1e-6]),
        # run_sol_spin.py: one spin period of a ks = 1 solenoid, 2 GeV protons
        "sol_spin": ([_element("sol1", "Solenoid", length=sol_length, Ksol=1.0)], proton,
                     big),
        # run_fodo_channel_spin.py: ChrDrift/ChrQuad FODO, 101 periods, 10 GeV electrons
        "fodo_channel_spin": (fodo * 101, ReferenceParticle("electron", 10.0e3),
                              [2e-2, 1e-2, 2e-2, 1e-2, 3e-3, 6e-3]),
        # run_reversibility_spin.py: Quad, ChrQuad and Sol forward then backward (ds < 0),
        # with k = 6 instead of the example's 60: at k = 60 the defocusing plane grows by
        # cosh(sqrt(60) 1.5)^2 ~ 1e10 and back, which amplifies round-off in either code to
        # 5e-2 of the px spread and 9e-10 in the spin (measured)
        "reversibility_spin": ([
            _element("quad1", "Quadrupole", length=1.5, Kn1=6.0),
            _element("iquad1", "Quadrupole", length=-1.5, Kn1=6.0),
            _element("sol1", "Solenoid", length=1.5, Ksol=1.0),
            _element("isol1", "Solenoid", length=-1.5, Ksol=1.0),
            _element("quad2", "Quadrupole", "paraxial", length=1.5, Kn1=-6.0),
            _element("iquad2", "Quadrupole", "paraxial", length=-1.5, Kn1=-6.0)],
            electron_2gev, [5e-6, 2.6e-9, 8e-6, 1.6e-9, 6e-2, 9e-4]),
        # run_cfbend_spin.py: CFbend against Quad and Sbend, forward then backward (k = 6
        # instead of 60, as above)
        "cfbend_spin": ([
            _element("cfbend1", "SBend", length=1.5, angle=1.5e-8, e1=0.0, e2=0.0, Kn1=6.0),
            _element("iquad1", "Quadrupole", length=-1.5, Kn1=6.0),
            _element("cfbend2", "SBend", length=1.5, angle=0.15, e1=0.0, e2=0.0, Kn1=1e-8),
            _element("isbend1", "SBend", length=-1.5, angle=-0.15, e1=0.0, e2=0.0)],
            electron_2gev, [5e-6, 2.6e-9, 8e-6, 1.6e-9, 6e-2, 9e-4]),
        # run_multipole_spin.py, its thin-multipole part (quadrupole and sextupole kicks)
        "multipole_spin": ([_element("thin", "Multipole", length=0.0, Kn1L=0.2, Ks1L=-0.1,
                                     Kn2L=-1.0, Ks2L=0.5)],
                           electron_2gev, [4e-4, 2.7e-4, 4e-4, 2.7e-4, 1e-3, 2e-3]),
    }


SPIN_EXAMPLES = _spin_example_lattices()


@pytest.mark.parametrize("name", list(SPIN_EXAMPLES))
def test_spin_examples_vs_impactx(name):
    elements, reference, sigmas = SPIN_EXAMPLES[name]
    rng = np.random.default_rng(7)
    particles = rng.standard_normal((1000, 6)) * np.array(sigmas)
    spins = sample_vmf((0.4, 0.9, 0.1), 1000, 8).numpy()
    phase, spin, ours, theirs = _compare(elements, reference, particles, spins)
    print(f"{name}: phase {phase:.1e} sigma, spin {spin:.1e}")
    assert spin <= SPIN_BOUND
    # the reversibility lattices' momentum spreads are ~2e-9: round-off of the transverse
    # positions (5e-6) reaches 1e-8 of them
    assert phase <= (1e-8 if name in ("reversibility_spin", "cfbend_spin") else 1e-9)
    ours_obs = spin_observables(tuple(torch.from_numpy(ours.T.copy())))
    for i, axis in enumerate("xyz"):
        assert abs(float(ours_obs[f"mean_s{axis}"]) - theirs.spins[:, i].mean()) <= 1e-13
        assert abs(float(ours_obs[f"sigma_s{axis}"]) - theirs.spins[:, i].std()) <= 1e-12


def test_htu_spin_vs_impactx():
    """The HTU line as impactx-benchmarks' htu_spin runs it: zero-current kickers as
    markers, spins along +z, 1e4 particles of the scenario's beam."""
    from harness.model.load import load_scenario
    from harness.model.particles import generate

    scenario = load_scenario("htu")
    particles = generate(scenario.beam, 10_000)
    spins = np.tile([0.0, 0.0, 1.0], (len(particles), 1))
    phase, spin, ours, theirs = _compare(scenario.elements, scenario.reference_particle,
                                         particles, spins, kickers_as_markers=True)
    print(f"htu_spin: phase {phase:.1e} sigma, spin {spin:.1e}")
    assert phase <= 1e-9
    assert spin <= SPIN_BOUND
    ours_obs = spin_observables(tuple(torch.from_numpy(ours.T.copy())))
    for i, axis in enumerate("xyz"):
        sigma = theirs.spins[:, i].std()
        assert abs(float(ours_obs[f"sigma_s{axis}"]) - sigma) <= 1e-11 * max(sigma, 1e-3)
    assert float(ours_obs["sigma_sx"]) > 1e-3   # the chicane depolarises


# ----------------------------------------------------------------------------- gradients

GRAD_LATTICE = [
    _element("q1", "Quadrupole", "paraxial", length=0.3, Kn1=4.0),
    _element("b1", "SBend", "exact", length=0.4, angle=0.3, e1=0.0, e2=0.0),
    _element("d1", "Drift", "exact", length=0.5),
    _element("s1", "Solenoid", length=0.5, Ksol=2.0),
    _element("m1", "Multipole", length=0.0, Kn2L=40.0),
    _element("b2", "SBend", length=0.4, angle=-0.3, e1=0.0, e2=0.0, Kn1=0.5),
]


@pytest.mark.parametrize("key", [("q1", "Kn1"), ("b1", "angle"), ("s1", "Ksol"),
                                 ("m1", "Kn2L"), ("b2", "Kn1")])
def test_spin_gradients(key, beam):
    """d sigma_sx / d parameter: reverse mode = forward mode (torch.func.jvp) = finite
    differences (fourth-order central differences, step 1e-3 of the value; relative
    1e-7)."""
    particles, spins = beam
    reference = ReferenceParticle("electron", 100.0)
    name, field = key
    value0 = float(next(e for e in GRAD_LATTICE if e.name == name).params[field])

    def objective(value: torch.Tensor) -> torch.Tensor:
        state = _track(GRAD_LATTICE, reference, particles, spins, {key: value})
        return spin_observables(state.spins, state.alive)["sigma_sx"]

    value = torch.tensor(value0, dtype=torch.float64, requires_grad=True)
    (reverse,) = torch.autograd.grad(objective(value), value)
    _, forward = torch.func.jvp(objective, (torch.tensor(value0, dtype=torch.float64),),
                                (torch.tensor(1.0, dtype=torch.float64),))
    step = 1e-3 * abs(value0)

    def at(offset: float) -> float:
        with torch.no_grad():
            return float(objective(torch.tensor(value0 + offset, dtype=torch.float64)))

    fd = (8.0 * (at(step) - at(-step)) - (at(2 * step) - at(-2 * step))) / (12.0 * step)
    print(f"{key}: reverse {float(reverse):.12e} forward {float(forward):.12e} "
          f"fd {float(fd):.12e}")
    assert abs(float(reverse)) > 0.0
    assert abs(float(forward - reverse)) <= 1e-12 * abs(float(reverse))
    assert abs(float(fd - reverse)) <= 1e-7 * abs(float(reverse))


def test_batched_parameters(beam):
    """A batch of parameter values tracks as the values one by one."""
    particles, spins = beam
    reference = ReferenceParticle("electron", 100.0)
    values = torch.tensor([3.0, 4.0, 5.0], dtype=torch.float64)
    batched = SpinTracker(GRAD_LATTICE, reference).track(
        _columns(particles), _columns(spins), {("q1", "Kn1"): values})
    for i, value in enumerate(values):
        single = _track(GRAD_LATTICE, reference, particles, spins, {("q1", "Kn1"): value})
        for b, s in zip(batched.spins, single.spins, strict=True):
            torch.testing.assert_close(b[i], s, rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------- scenarios

SPIN_SCENARIO = {
    "name": "spin_line",
    "beam": {"species": "proton", "kinetic_energy_MeV": 800.0, "distribution": "gaussian",
             "twiss": {"beta_x": 5.0, "emittance_x": 1e-7, "beta_y": 5.0,
                       "emittance_y": 1e-7},
             "longitudinal": {"sigma_t": 1e-3, "sigma_pt": 1e-3},
             "particles": 500, "seed": 7,
             "spin": {"polarization": [0.3, 0.5, 0.6], "seed": 11}},
    "model": "linear",
    "observables": ["sigma_sx", "mean_sz", "polarization", "sigma_x"],
    "lattice": {"PALS": {"facility": [
        {"q1": {"kind": "Quadrupole", "length": 0.4, "MagneticMultipoleP": {"Kn1": 2.0}}},
        {"b1": {"kind": "SBend", "length": 1.0, "BendP": {"g_ref": 0.2}}},
        {"s1": {"kind": "Solenoid", "length": 0.5, "SolenoidP": {"Ksol": 1.5}}},
        {"line": {"kind": "BeamLine", "line": ["q1", "b1", "s1"]}},
        {"use": "line"}]}},
}


def _spin_scenario(**beam):
    from harness.model.load import scenario_from_dict

    data = {**SPIN_SCENARIO, "beam": {**SPIN_SCENARIO["beam"], **beam}}
    return scenario_from_dict(data)


def test_spin_particles_carry_nine_columns():
    """A beam with a spin block draws (N, 9) particles: the six coordinates of the beam
    without spins, then unit spins of the von Mises-Fisher law with |<s>| near |P|."""
    from harness.model.particles import generate

    scenario = _spin_scenario(particles=20_000)
    particles = generate(scenario.beam)
    assert particles.shape == (20_000, 9)
    plain = generate(scenario.beam.model_copy(update={"spin": None}))
    np.testing.assert_array_equal(particles[:, :6], plain)
    np.testing.assert_allclose(np.linalg.norm(particles[:, 6:], axis=1), 1.0, atol=1e-15)
    mean = particles[:, 6:].mean(axis=0)
    assert abs(np.linalg.norm(mean) - np.linalg.norm([0.3, 0.5, 0.6])) < 2e-2
    np.testing.assert_allclose(mean / np.linalg.norm(mean),
                               np.array([0.3, 0.5, 0.6]) / np.linalg.norm([0.3, 0.5, 0.6]),
                               atol=2e-2)


def test_spin_file_beam(tmp_path):
    """Spins from a .npy file are the particles' columns 6-8, the first N rows."""
    from harness.model.particles import generate

    spins = sample_vmf([0.0, 0.6, 0.6], 600, 3).numpy()
    np.save(tmp_path / "spins.npy", spins)
    data = {**SPIN_SCENARIO, "beam": {**SPIN_SCENARIO["beam"],
                                      "spin": {"file": "spins.npy"}}}
    import yaml

    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    from harness.model.load import load_scenario

    scenario = load_scenario(tmp_path / "s.yaml")
    particles = generate(scenario.beam)
    np.testing.assert_array_equal(particles[:, 6:], spins[:500])


def test_spin_scenario_impactx_vs_inhouse_through_prepare():
    """A spin scenario through the backends' plan/prepare/track: (N, 9) particles in and
    out, in-house = ImpactX to 1e-11 in each spin component, phase space within the
    fp64 agreement tolerance, and the spin observables equal."""
    pytest.importorskip("impactx")
    from backends.impactx import ImpactXBackend
    from backends.inhouse import InhouseBackend
    from harness import agreement
    from harness.model import observables
    from harness.model.particles import generate

    scenario = _spin_scenario()
    initial = generate(scenario.beam)
    finals = {}
    for backend in (ImpactXBackend(), InhouseBackend()):
        plan = backend.plan(scenario)
        assert plan, plan
        assert plan.model.endswith("|spin")
        with backend.prepare_planned(plan) as prepared:
            finals[backend.name] = prepared.track(initial)
    ours, theirs = finals["inhouse"], finals["impactx"]
    assert ours.shape == theirs.shape == (500, 9)
    deviation = agreement.particle_deviation(ours, theirs)
    assert max(deviation[f"dev_max_{c}"] for c in ("sx", "sy", "sz")) <= SPIN_BOUND
    assert deviation["dev_max"] <= 1e-8
    assert np.abs(theirs[:, 6:] - initial[:, 6:]).max() > 1e-2   # the spins turned
    names = ["mean_sx", "mean_sy", "mean_sz", "polarization", "sigma_sx", "sigma_sy",
             "sigma_sz"]
    mine = observables.compute_survivors(ours, names, scenario.reference_particle)
    reference = observables.compute_survivors(theirs, names, scenario.reference_particle)
    for name in names:
        assert abs(mine[name] - reference[name]) <= 1e-12, name


@pytest.mark.slow
def test_htu_spin_bundled_impactx_vs_inhouse():
    """The bundled htu_spin scenario (1e3 particles) through ImpactX and the in-house
    backend: spins agree to 1e-11, phase space within 1e-8 sigma."""
    pytest.importorskip("impactx")
    from backends.impactx import ImpactXBackend
    from backends.inhouse import InhouseBackend
    from harness import agreement
    from harness.model.load import load_scenario
    from harness.model.particles import generate

    scenario = load_scenario("htu_spin")
    initial = generate(scenario.beam, 1000)
    assert np.array_equal(initial[:, 6:], np.tile([0.0, 0.0, 1.0], (1000, 1)))
    finals = [backend.prepare(scenario).track(initial)
              for backend in (ImpactXBackend(), InhouseBackend())]
    deviation = agreement.particle_deviation(finals[1], finals[0])
    print({k: v for k, v in deviation.items() if k.startswith("dev_max")})
    assert max(deviation[f"dev_max_{c}"] for c in ("sx", "sy", "sz")) <= SPIN_BOUND
    assert deviation["dev_max"] <= 1e-8


@pytest.mark.parametrize("name,expected", [
    ("cheetah", "beam.spin: cheetah: no spin tracking"),
    ("pyat", "beam.spin: pyat: no spin tracking"),
    ("ocelot", "beam.spin: ocelot: no spin tracking"),
    ("xsuite", "beam.spin: xsuite: Xsuite's spin tracking (Line.configure_spin) is not wired"),
])
def test_codes_without_spin_refuse(name, expected):
    """Codes without (compared) spin tracking refuse a spin scenario by their declared
    capability, with the reason."""
    from backends.registry import get_backend
    from harness.model.load import scenario_from_dict

    backend = get_backend(name)
    quads = {"PALS": {"facility": [
        {"d1": {"kind": "Drift", "length": 0.5}},
        {"q1": {"kind": "Quadrupole", "length": 0.4, "MagneticMultipoleP": {"Kn1": 2.0}}},
        {"line": {"kind": "BeamLine", "line": ["d1", "q1", "d1"]}}, {"use": "line"}]}}
    verdict = backend.plan(scenario_from_dict({**SPIN_SCENARIO, "lattice": quads}))
    assert not verdict
    assert verdict.reason.startswith(expected)


def test_inhouse_refuses_unported_spin_maps():
    """The in-house backend refuses a spin scenario with a map whose spin push is not
    ported (a bend's pole-face DipEdge) naming the element, and spin with space charge;
    ImpactX runs both."""
    from backends.impactx import ImpactXBackend
    from backends.inhouse import InhouseBackend
    from harness.model.load import scenario_from_dict

    facility = [dict(item) for item in SPIN_SCENARIO["lattice"]["PALS"]["facility"]]
    facility[1] = {"b1": {"kind": "SBend", "length": 1.0,
                          "BendP": {"g_ref": 0.2, "e1": 0.1}}}
    exact = scenario_from_dict({**SPIN_SCENARIO, "model": "exact",
                                "lattice": {"PALS": {"facility": facility}}})
    verdict = InhouseBackend().plan(exact)
    assert not verdict
    assert "'b1'" in verdict.reason and "DipEdge" in verdict.reason
    sc = scenario_from_dict({**SPIN_SCENARIO, "space_charge": {"grid": [8, 8, 8]},
                             "beam": {**SPIN_SCENARIO["beam"], "bunch_charge_C": 1e-12}})
    verdict = InhouseBackend().plan(sc)
    assert not verdict and "space charge" in verdict.reason
    if ImpactXBackend.availability().available:
        assert ImpactXBackend().plan(exact)
