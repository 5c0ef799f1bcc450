"""The Cheetah adapter: analytic maps, particle order, dtypes, model labels, gradients and
particle-by-particle agreement with ImpactX.

Agreement is measured as max |dev| / std(coordinate) over all particles, worst coordinate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("cheetah")
torch = pytest.importorskip("torch")

from backends.cheetah import CheetahBackend  # noqa: E402
from backends.registry import get_backend  # noqa: E402
from harness.model.load import load_scenario, scenario_from_dict  # noqa: E402
from harness.model.particles import generate  # noqa: E402
from harness.model.scenario import model_signature  # noqa: E402

N = 4000
BEAM = {
    "species": "electron", "kinetic_energy_MeV": 2000.0, "bunch_charge_C": 1.0e-9,
    "distribution": "gaussian",
    "twiss": {"beta_x": 3.0, "alpha_x": -1.5, "emittance_x": 2e-9,
              "beta_y": 3.0, "alpha_y": 1.5, "emittance_y": 2e-9},
    "longitudinal": {"sigma_t": 1e-3, "sigma_pt": 2e-3},
    "particles": N, "seed": 7,
}


def make_scenario(elements: dict[str, dict], model: str = "linear", beam: dict | None = None,
                  **extra):
    """A scenario of one beamline through ``elements`` (name -> PALS fields) in order."""
    facility = [{name: fields} for name, fields in elements.items()]
    facility += [{"line": {"kind": "BeamLine", "line": list(elements)}}, {"use": "line"}]
    data = {"name": "test", "beam": {**BEAM, **(beam or {})}, "model": model,
            "lattice": {"PALS": {"version": None, "facility": facility}}, **extra}
    return scenario_from_dict(data)


def relative_deviation(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / std(b), worst coordinate."""
    return float((np.abs(a - b).max(axis=0) / b.std(axis=0)).max())


def track(scenario, particles, dtype: str = "float64", device: str = "cpu") -> np.ndarray:
    with CheetahBackend().prepare(scenario, device=device, dtype=dtype) as prepared:
        return prepared.track(particles)


def test_registered_and_differentiable() -> None:
    backend = get_backend("cheetah")
    assert isinstance(backend, CheetahBackend)
    assert backend.differentiable and backend.availability().available


def test_linear_drift_is_analytic() -> None:
    scenario = make_scenario({"d": {"kind": "Drift", "length": 2.5}})
    p0 = generate(scenario.beam, N)
    out = track(scenario, p0)
    ref = scenario.reference_particle
    expected = p0.copy()
    expected[:, 0] += 2.5 * p0[:, 1]
    expected[:, 2] += 2.5 * p0[:, 3]
    expected[:, 4] += 2.5 * p0[:, 5] / ref.beta_gamma**2  # ImpactX Drift.H: R56 = L/(bg)^2
    assert relative_deviation(out, expected) < 1e-13


def test_exact_drift_is_analytic() -> None:
    """Exact drift (time of flight along the straight path), 5 MeV so that t matters."""
    length = 1.5
    scenario = make_scenario({"d": {"kind": "Drift", "length": length}}, model="exact",
                             beam={"kinetic_energy_MeV": 5.0})
    p0 = generate(scenario.beam, N)
    out = track(scenario, p0)
    x, px, y, py, t, pt = p0.T
    inv_beta = 1.0 / scenario.reference_particle.beta
    pz = np.sqrt(1.0 - 2.0 * pt * inv_beta + pt**2 - px**2 - py**2)
    expected = np.stack([x + length * px / pz, px, y + length * py / pz, py,
                         t + length * ((inv_beta - pt) / pz - inv_beta), pt], axis=1)
    assert relative_deviation(out, expected) < 1e-11


def _thick_quad(length: float, k: float) -> np.ndarray:
    """2x2 transfer matrix of a thick quadrupole of strength k [1/m^2] (Wolski ch. 2)."""
    if k > 0:
        w = math.sqrt(k)
        c, s = math.cos(w * length), math.sin(w * length)
        return np.array([[c, s / w], [-w * s, c]])
    w = math.sqrt(-k)
    c, s = math.cosh(w * length), math.sinh(w * length)
    return np.array([[c, s / w], [w * s, c]])


def _element_matrix(length: float, k: float, beta_gamma: float) -> np.ndarray:
    m = np.eye(6)
    m[0:2, 0:2] = _thick_quad(length, k) if k else [[1.0, length], [0.0, 1.0]]
    m[2:4, 2:4] = _thick_quad(length, -k) if k else [[1.0, length], [0.0, 1.0]]
    m[4, 5] = length / beta_gamma**2
    return m


def test_linear_fodo_matches_thick_quad_matrix_product() -> None:
    scenario = load_scenario("fodo_linear")
    p0 = generate(scenario.beam, N)
    total = np.eye(6)
    for element in scenario.elements:
        total = _element_matrix(element.length, element.params.get("Kn1", 0.0),
                                scenario.reference_particle.beta_gamma) @ total
    assert relative_deviation(track(scenario, p0), p0 @ total.T) < 1e-12


def test_thin_quadrupole_multipole_is_a_linear_kick() -> None:
    scenario = make_scenario({"k": {"kind": "Multipole", "length": 0.0,
                                    "MagneticMultipoleP": {"Kn1L": 0.3, "Ks1L": 0.1}}})
    p0 = generate(scenario.beam, N)
    out = track(scenario, p0)
    expected = p0.copy()
    expected[:, 1] -= 0.3 * p0[:, 0] - 0.1 * p0[:, 2]
    expected[:, 3] += 0.3 * p0[:, 2] + 0.1 * p0[:, 0]
    assert relative_deviation(out, expected) < 1e-13


def test_particle_order_is_preserved() -> None:
    scenario = load_scenario("fodo_paraxial")
    p0 = generate(scenario.beam, N)
    order = np.random.default_rng(3).permutation(N)
    np.testing.assert_array_equal(track(scenario, p0[order]), track(scenario, p0)[order])


def test_aperture_marks_losses_in_place() -> None:
    scenario = make_scenario({
        "d": {"kind": "Drift", "length": 1.0},
        "ap": {"kind": "Marker", "ApertureP": {"x_limits": [-1e-4, 1e-4],
                                               "y_limits": [-1e-4, 1e-4]}}})
    p0 = generate(scenario.beam, N)
    with CheetahBackend().prepare(scenario) as prepared:
        out = prepared.track(p0)
        survival = prepared.survival
    at_aperture = track(make_scenario({"d": {"kind": "Drift", "length": 1.0}}), p0)
    inside = (np.abs(at_aperture[:, 0]) < 1e-4) & (np.abs(at_aperture[:, 2]) < 1e-4)
    assert 0 < inside.sum() < N
    np.testing.assert_array_equal(survival, inside.astype(float))
    np.testing.assert_array_equal(out[inside], at_aperture[inside])
    assert np.isnan(out[~inside]).all()


@pytest.mark.parametrize("name", ["fodo_linear", "chicane"])
def test_float32_is_close_to_float64(name: str) -> None:
    scenario = load_scenario(name)
    p0 = generate(scenario.beam, N)
    assert relative_deviation(track(scenario, p0, "float32"), track(scenario, p0)) < 1e-5


def test_float32_drift_kick_drift_loses_pt_to_absolute_energies() -> None:
    """Cheetah's drift_kick_drift converts through energies in eV: in float32 a 2 GeV
    reference leaves pt an absolute error ~ 1e-7 (here ~3e-4 of sigma_pt); the rest
    stays at float32 round-off."""
    scenario = load_scenario("fodo_paraxial")
    p0 = generate(scenario.beam, N)
    single, double = track(scenario, p0, "float32"), track(scenario, p0)
    assert relative_deviation(single[:, :5], double[:, :5]) < 1e-5
    assert np.abs(single[:, 5] - double[:, 5]).max() < 1e-6


def test_model_labels() -> None:
    backend = CheetahBackend()
    for name in ("fodo_linear", "chicane"):
        scenario = load_scenario(name)
        assert backend.supports(scenario).model == model_signature(scenario)
    for name in ("fodo_paraxial", "fodo_exact"):
        scenario = load_scenario(name)
        verdict = backend.supports(scenario)
        assert verdict and verdict.model.startswith("stand-in:cheetah(")
        with backend.prepare(scenario) as prepared:
            assert prepared.model == verdict.model


def test_unsupported_cases_say_why() -> None:
    backend = CheetahBackend()
    rf = make_scenario({"rf": {"kind": "RFCavity", "length": 0.0, "RFP": {
        "voltage": 1e6, "frequency": 1.3e9, "phase": 0.0}}})
    assert "short RF" in backend.supports(rf).reason
    octupole = make_scenario({"k": {"kind": "Multipole", "length": 0.0,
                                    "MagneticMultipoleP": {"Kn3L": 1.0}}})
    assert "Kn3L" in backend.supports(octupole).reason
    sc = make_scenario({"d": {"kind": "Drift", "length": 1.0}},
                       space_charge={"kind": "2p5d"})
    assert "2p5d" in backend.supports(sc).reason
    if not torch.cuda.is_available():
        assert backend.supports(load_scenario("fodo_linear"), "cuda").reason.startswith(
            "CUDA requested but torch.cuda.is_available() is False")


def test_space_charge_interleaves_kicks() -> None:
    scenario = make_scenario({"d": {"kind": "Drift", "length": 1.0}},
                             space_charge={"kind": "3d", "grid": [8, 8, 8],
                                           "kicks_per_element": 3})
    with CheetahBackend().prepare(scenario) as prepared:
        kinds = [type(e).__name__ for e in prepared.segment.elements]
        assert kinds == ["Drift", "SpaceChargeKick", "Drift"] * 3
        assert prepared.model == "linear|sc:3d"
        out = prepared.track(generate(scenario.beam, 1000))
    assert np.isfinite(out).all()


@pytest.mark.parametrize(("name", "parameter", "objective"), [
    ("fodo_linear", "quad1.Kn1", "sigma_x"),
    ("fodo_linear", "drift2.length", "sigma_y"),
    ("fodo_paraxial", "quad2.Kn1", "emittance_x"),
    ("chicane", "b1.angle", "sigma_t"),
    ("fodo_linear", "beam.twiss.beta_x", "sigma_x"),
])
def test_gradient_matches_central_difference(name: str, parameter: str, objective: str
                                             ) -> None:
    scenario = load_scenario(name)
    particles = 2000 if parameter.startswith("beam.") else generate(scenario.beam, 2000)
    f, theta0 = CheetahBackend().differentiable_objective(
        scenario, [parameter], objective, particles)
    theta = theta0.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(f(theta), theta)
    h = 1e-4 * max(1.0, abs(float(theta0[0])))
    with torch.no_grad():
        fd = (f(theta0 + h) - f(theta0 - h)) / (2 * h)
    error = float(abs(gradient[0] - fd) / abs(fd))
    assert error < 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available here")
def test_cuda_matches_cpu() -> None:
    scenario = load_scenario("fodo_paraxial")
    p0 = generate(scenario.beam, N)
    assert relative_deviation(track(scenario, p0, device="cuda"), track(scenario, p0)) < 1e-12


def _impactx_linear(scenario, particles: np.ndarray) -> np.ndarray:
    """Track through ImpactX's linear maps (Drift, Quad, DipEdge + Sbend + DipEdge), with the
    injection and read-back of docs/conventions.md §2."""
    import amrex.space3d as amr
    from impactx import ImpactX, elements

    sim = ImpactX()
    sim.verbose, sim.tiny_profiler, sim.diagnostics, sim.space_charge = 0, False, False, False
    sim.init_grids()
    ref = scenario.reference_particle
    sim.beam.ref.set_species(ref.species).set_kin_energy_MeV(ref.kinetic_energy_MeV)
    qm = sim.beam.ref.charge_qe / (sim.beam.ref.mass_MeV * 1e6)
    x, px, y, py, t, pt = particles.T
    sim.beam.add_n_particles(x, y, t, px, py, pt, qm, bunch_charge=1e-9)
    for e in scenario.elements:
        p = e.params
        if e.kind == "Drift":
            sim.lattice.append(elements.Drift(name=e.name, ds=p["length"]))
        elif e.kind == "Quadrupole":
            sim.lattice.append(elements.Quad(name=e.name, ds=p["length"], k=p["Kn1"]))
        else:
            rc = p["length"] / p["angle"]
            sim.lattice.extend([
                elements.DipEdge(name=f"{e.name}_e1", psi=p["e1"], rc=rc, g=0.0),
                elements.Sbend(name=e.name, ds=p["length"], rc=rc),
                elements.DipEdge(name=f"{e.name}_e2", psi=p["e2"], rc=rc, g=0.0)])
    sim.track_particles()
    df = sim.beam.to_df(local=True)
    ids = np.asarray(amr.unpack_ids(df["idcpu"].values.astype(np.uint64)))
    df = df.iloc[np.argsort(ids, kind="stable")]
    out = np.stack([df.position_x, df.momentum_x, df.position_y, df.momentum_y,
                    df.position_t, df.momentum_t], axis=1)
    sim.finalize()
    return out


@pytest.mark.parametrize("name", ["fodo_linear", "chicane"])
def test_agrees_with_impactx_particle_by_particle(name: str) -> None:
    pytest.importorskip("impactx", reason="ImpactX is not installed")
    scenario = load_scenario(name)
    p0 = generate(scenario.beam, N)
    assert relative_deviation(track(scenario, p0), _impactx_linear(scenario, p0)) < 1e-11


# ------------------------------------------------- fields against ImpactX's translation

def _impactx_backend_track(scenario, particles: np.ndarray) -> np.ndarray:
    from backends.impactx import ImpactXBackend

    with ImpactXBackend().prepare(scenario) as prepared:
        return prepared.track(particles)


#: Lattices with the fields added to the adapters: Cheetah's map equals ImpactX's.
FIELD_LATTICES = {
    "quad_offset_rotated_skew": {
        "q": {"kind": "Quadrupole", "length": 0.5, "MagneticMultipoleP": {"Kn1": 1.5,
                                                                          "Ks1": 0.4},
              "BodyShiftP": {"x_offset": 1e-4, "y_offset": -2e-4, "z_rot": 0.2}},
        "d": {"kind": "Drift", "length": 1.0}},
    "kickers": {
        "k1": {"kind": "Kicker", "length": 0.0, "MagneticMultipoleP": {"Kn0L": 1e-5,
                                                                        "Ks0L": -2e-5},
               "BodyShiftP": {"z_rot": 0.4}},
        "d": {"kind": "Drift", "length": 1.0},
        "k2": {"kind": "Kicker", "length": 0.3, "MagneticMultipoleP": {"Bs0L": 1e-4}}},
    "solenoid_offset_rotated": {
        "s": {"kind": "Solenoid", "length": 0.7, "SolenoidP": {"Ksol": 1.3},
              "BodyShiftP": {"x_offset": 2e-4, "y_offset": -1e-4, "z_rot": 0.5}}},
    "drift_offset": {"d": {"kind": "Drift", "length": 1.0,
                           "BodyShiftP": {"x_offset": 1e-3, "z_rot": 0.7}}},
    "bend_tilt_rect": {
        "b": {"kind": "SBend", "length": 0.5,
              "BendP": {"angle": 0.1, "e1_rect": 0.0, "e2": 0.03, "tilt_ref": 0.3}},
        "d": {"kind": "Drift", "length": 1.0}},
}


@pytest.mark.parametrize("case", [*FIELD_LATTICES, "bend_tilt_rect@exact"])
def test_new_fields_agree_with_impactx(case: str) -> None:
    """Linear maps to round-off; the exact (drift-kick-drift) tilted bend as the exact bend
    without tilt (1.4e-10, module docstring)."""
    pytest.importorskip("impactx", reason="ImpactX is not installed")
    name, _, model = case.partition("@")
    scenario = make_scenario(FIELD_LATTICES[name], model=model or "linear")
    verdict = CheetahBackend().supports(scenario)
    assert verdict and not verdict.model.startswith("stand-in"), verdict
    p0 = generate(scenario.beam, N)
    dev = relative_deviation(track(scenario, p0), _impactx_backend_track(scenario, p0))
    print(f"{case}: max |dev|/sigma = {dev:.2e}")
    assert dev < (1e-9 if model else 1e-11)


@pytest.mark.parametrize("model", ["linear", "exact"])
def test_edge_fringe_is_a_labelled_stand_in_close_to_impactx(model: str) -> None:
    """Cheetah's edge uses -h tan(e - psi), ImpactX's linear DipEdge -h tan(e) + psi h /
    cos^2(e) (its first order in psi): a labelled stand-in whose difference is second order
    in psi = 2 edge_int h (1 + sin^2 e)/cos(e)."""
    pytest.importorskip("impactx", reason="ImpactX is not installed")
    lattice = {"b": {"kind": "SBend", "length": 0.5,
                     "BendP": {"g_ref": 0.4, "e1": 0.1, "e2": 0.05, "edge_int1": 0.03,
                               "edge_int2": 0.02}},
               "d": {"kind": "Drift", "length": 1.0}}
    scenario = make_scenario(lattice, model=model)
    verdict = CheetahBackend().supports(scenario)
    assert verdict and "DipEdge fringe" in verdict.model
    p0 = generate(scenario.beam, N)
    theirs = _impactx_backend_track(scenario, p0)
    dev = relative_deviation(track(scenario, p0), theirs)
    without = make_scenario({"b": {**lattice["b"], "BendP": {"g_ref": 0.4, "e1": 0.1,
                                                            "e2": 0.05}}, "d": lattice["d"]},
                            model=model)
    fringe_effect = relative_deviation(_impactx_backend_track(without, p0), theirs)
    print(f"{model}: stand-in max |dev|/sigma = {dev:.2e}; the fringe itself {fringe_effect:.2e}")
    assert dev < 5e-3 * fringe_effect   # measured 1.9e-3 of the fringe effect (psi = 0.05)


#: A lattice with the fields added to the adapters, and its parameters for gradients.
FIELD_GRADIENT_LATTICE = {
    "q": {"kind": "Quadrupole", "length": 0.5, "MagneticMultipoleP": {"Kn1": 1.5, "Ks1": 0.3},
          "BodyShiftP": {"x_offset": 1e-4, "z_rot": 0.2}},
    "b": {"kind": "SBend", "length": 0.5,
          "BendP": {"angle": 0.1, "edge_int1": 0.02, "tilt_ref": 0.1}},
    "k": {"kind": "Kicker", "length": 0.0, "MagneticMultipoleP": {"Kn0L": 1e-4}},
    "d": {"kind": "Drift", "length": 1.0}}
FIELD_GRADIENT_PARAMETERS = ["q.x_offset", "q.z_rot", "q.Ks1", "b.edge_int1", "b.tilt_ref",
                             "k.Kn0L"]


def check_field_gradients(backend, scenario, particles) -> None:
    """Reverse-mode gradients of mean_x and sigma_y in the new fields against central
    differences (measured agreement 1e-5 relative or better, the FD error).

    A gradient that is zero (sigma_y in x_offset) is compared within the rounding error
    of the difference quotient itself, 16 eps |f| / h, not within a fixed absolute bound:
    that error depends on the machine's summation order (6.8e-12 and 1.4e-11 seen)."""
    eps = float(torch.finfo(torch.float64).eps)
    for objective in ("mean_x", "sigma_y"):
        f, theta0 = backend.objective(scenario, FIELD_GRADIENT_PARAMETERS, objective,
                                      particles, "cpu", "float64")
        theta = theta0.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(f(theta), theta)
        value = abs(float(f(theta0)))
        for i in range(len(theta0)):
            h = 1e-6 * max(abs(float(theta0[i])), 1e-3)
            step = torch.zeros_like(theta0)
            step[i] = h
            fd = float((f(theta0 + step) - f(theta0 - step)) / (2 * h))
            rounding = 16 * eps * value / h
            assert float(grad[i]) == pytest.approx(fd, rel=1e-4, abs=rounding), \
                (objective, FIELD_GRADIENT_PARAMETERS[i])


def test_gradients_in_the_new_fields_match_central_differences() -> None:
    scenario = make_scenario(FIELD_GRADIENT_LATTICE)
    check_field_gradients(CheetahBackend(), scenario, generate(scenario.beam, 1000))


def test_inhouse_gradients_in_the_new_fields_match_central_differences() -> None:
    from backends.inhouse import InhouseBackend

    scenario = make_scenario(FIELD_GRADIENT_LATTICE)
    check_field_gradients(InhouseBackend(), scenario, generate(scenario.beam, 1000))
