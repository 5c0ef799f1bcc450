"""The beam distributions kurth4d, triangle, thermal and the truncated gaussian, and the
beam's dispersion: their moments against the analytic ones, their marginals against
ImpactX's own draws from the same input, the dispersion terms of the covariance (also as
the envelope's initial matrix, and differentiable), the schema's refusals, and how an
ImpactX example's distribution is stated.

Statistical tolerances: a sample mean or second moment of N draws must lie within 5
standard errors (estimated from the sample) of its expectation; marginals against
ImpactX's draws: two-sample Kolmogorov-Smirnov p > 1e-3 per coordinate.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.model.errors import ScenarioError
from harness.model.particles import (
    beam_cholesky,
    beam_covariance,
    generate,
    generate_torch,
    thermal_radial_cdfs,
    unit_samples,
)
from harness.model.scenario import Beam

N = 10_000
REPOSITORY = Path(__file__).resolve().parent.parent
ELLIPSE = {"lambdaX": 4.0e-5, "lambdaY": 3.0e-5, "lambdaT": 1.0e-3, "lambdaPx": 2.6e-5,
           "lambdaPy": 2.0e-5, "lambdaPt": 2.0e-3, "muxpx": -0.5, "muypy": 0.3, "mutpt": 0.2}
#: The thermal beam of ImpactX's examples/epac2004_benchmarks/run_bithermal.py.
BITHERMAL = {"k": 6.283185307179586, "kT": 36.0e-6, "kT_halo": 900.0e-6,
             "normalize": 0.54226, "normalize_halo": 0.08195, "halo": 0.05}
BITHERMAL_CHARGE_C = 1.4285714285714285714e-10


def within_standard_errors(samples: np.ndarray, expected: float) -> float:
    """|mean(samples) - expected| in standard errors of the mean."""
    return abs(float(samples.mean()) - expected) / (samples.std() / math.sqrt(len(samples)))


def unit_moment_deviation(z: np.ndarray) -> float:
    """Largest deviation of the first and second raw moments of ``z`` from 0 and the
    identity, in standard errors."""
    worst = max(within_standard_errors(z[:, i], 0.0) for i in range(6))
    for i in range(6):
        for j in range(i, 6):
            worst = max(worst, within_standard_errors(z[:, i] * z[:, j], float(i == j)))
    return worst


# -- shapes: analytic moments and supports -------------------------------------------------

@pytest.mark.parametrize("distribution", ["kurth4d", "triangle"])
def test_unit_shapes_have_zero_mean_and_unit_covariance(distribution: str) -> None:
    assert unit_moment_deviation(unit_samples(distribution, N, 3)) < 5.0


def test_kurth4d_support_and_invariant() -> None:
    """ImpactX Kurth4D.H: (x, y)/2 in the unit disk, t uniform on +-sqrt(3), and the 4D
    Kurth invariant r^2 + p^2 - L_z^2 <= 1 (unit scaling), reached at its edge."""
    z = unit_samples("kurth4d", N, 4)
    r = z[:, [0, 2]] / 2.0
    p = z[:, [1, 3]] / 2.0
    assert np.linalg.norm(r, axis=1).max() <= 1.0 + 1e-12
    assert np.abs(z[:, 4]).max() <= math.sqrt(3.0)
    lz = r[:, 0] * p[:, 1] - r[:, 1] * p[:, 0]
    invariant = np.sum(r * r, 1) + np.sum(p * p, 1) - lz * lz
    assert invariant.max() <= 1.0 + 1e-12 and invariant.max() > 0.99
    assert np.abs(z[:, 5]).max() > 3.0   # pt normal


def test_triangle_ramp_and_ball() -> None:
    """ImpactX Triangle.H: (x, px, y, py) in the 4D ball of radius sqrt(6) (E[rho^2] = 4);
    t on [-sqrt(2), 2 sqrt(2)] with density (2 sqrt(2) - t)/9, so E[t^3] = 2 sqrt(2)/5."""
    z = unit_samples("triangle", N, 5)
    rho2 = np.sum(z[:, :4] ** 2, 1)
    assert math.sqrt(rho2.max()) <= math.sqrt(6.0) + 1e-12
    assert within_standard_errors(rho2, 4.0) < 5.0
    t = z[:, 4]
    assert t.min() >= -math.sqrt(2.0) - 1e-12 and t.max() <= 2.0 * math.sqrt(2.0) + 1e-12
    assert within_standard_errors(t**3, 2.0 * math.sqrt(2.0) / 5.0) < 5.0


def test_gaussian_cut_radius_and_unit_variance() -> None:
    """ImpactX Gaussian.H cutX/Y/T: each cut plane's pair lies inside radius
    cut / sqrt(s), s = 1 - f e^-f / (1 - e^-f), f = cut^2/2, and keeps unit variance."""
    cut = (2.0, 3.0, 1.0)
    z = unit_samples("gaussian", N, 6, cut)
    assert unit_moment_deviation(z) < 5.0
    for plane, radius in enumerate(cut):
        f = radius * radius / 2.0
        scale = 1.0 - f * math.exp(-f) / (1.0 - math.exp(-f))
        pair = np.linalg.norm(z[:, 2 * plane:2 * plane + 2], axis=1)
        assert pair.max() <= radius / math.sqrt(scale) * (1 + 1e-12)
        assert pair.max() > 0.99 * radius / math.sqrt(scale)
    np.testing.assert_array_equal(unit_samples("gaussian", 50, 6, (0.0, 0.0, 0.0)),
                                  unit_samples("gaussian", 50, 6))


# -- thermal -------------------------------------------------------------------------------

def thermal_beam(charge: float = 0.0, n: int = N, beam: dict | None = None,
                 **fields) -> Beam:
    """run_bithermal.py's beam with ``fields`` of its ``thermal`` block and ``beam`` fields
    changed."""
    return Beam.model_validate(dict(
        species="proton", kinetic_energy_MeV=0.1, bunch_charge_C=charge,
        distribution="thermal", thermal={**BITHERMAL, **fields}, particles=n, seed=9,
        **(beam or {})))


def test_thermal_without_charge_is_the_gaussian_of_its_temperature() -> None:
    """Without space charge the stationary profile is exp(-k^2 r^2 / (2 kT)): x, y normal
    with variance kT/k^2 per population, px, py with variance kT; t = -z/(beta gamma) and
    pt = -p_z beta gamma; the halo (weight w) adds its own: <x^2> = ((1-w) kT + w kT_h)/k^2."""
    beam = thermal_beam()
    particles = generate(beam)
    bg = beam.reference.beta_gamma
    w, k = BITHERMAL["halo"], BITHERMAL["k"]
    kt = (1 - w) * BITHERMAL["kT"] + w * BITHERMAL["kT_halo"]
    expected = (kt / k**2, kt, kt / k**2, kt, kt / (k * bg) ** 2, kt * bg**2)
    for column, value in enumerate(expected):
        assert within_standard_errors(particles[:, column] ** 2, value) < 5.0
    core = generate(thermal_beam(halo=0.0))
    from scipy import stats
    assert stats.kurtosis(core[:, 0], fisher=False) == pytest.approx(3.0, abs=0.25)


def test_thermal_cdf_is_impactx_tabulation() -> None:
    """ImpactX's table: 2001 entries from 0, normalised by the last one (kept as is), on
    [1e-10, 10] r_s; space charge widens the matched profile."""
    cold, _, rmin, rmax = thermal_radial_cdfs(thermal_beam())
    assert len(cold) == 2001 and cold[0] == 0.0 and cold[-2] == pytest.approx(1.0)
    assert cold[-1] != pytest.approx(1.0)   # the raw total, as ImpactX leaves it
    assert np.all(np.diff(cold[:-1]) >= 0.0)
    r_scale = math.sqrt(0.95 * 36e-6 + 0.05 * 900e-6) / BITHERMAL["k"]
    assert rmin == pytest.approx(1e-10 * r_scale) and rmax == pytest.approx(10 * r_scale)
    wide = generate(thermal_beam(BITHERMAL_CHARGE_C))
    assert wide[:, 0].std() > 2.0 * generate(thermal_beam())[:, 0].std()


def test_thermal_refuses_ellipse_input_envelope_and_gradients() -> None:
    proton = {"species": "proton", "kinetic_energy_MeV": 0.1}
    with pytest.raises(ValueError, match="'thermal'"):
        Beam.model_validate({**proton, "distribution": "thermal", "ellipse": ELLIPSE})
    with pytest.raises(ValueError, match="'thermal'"):
        Beam.model_validate({**proton, "distribution": "gaussian", "ellipse": ELLIPSE,
                             "thermal": BITHERMAL})
    with pytest.raises(ValueError, match="current_A"):
        Beam.model_validate({**proton, "distribution": "thermal", "thermal": BITHERMAL,
                             "current_A": 0.1})
    with pytest.raises(ScenarioError):
        beam_cholesky(thermal_beam())
    with pytest.raises(ScenarioError):
        generate_torch(thermal_beam(), 10, {"twiss.beta_x": torch.tensor(1.0)})
    np.testing.assert_array_equal(generate_torch(thermal_beam(), 10, {}).numpy(),
                                  generate(thermal_beam(), 10))


# -- dispersion ----------------------------------------------------------------------------

DISPERSION = {"x": -0.27, "px": 0.012, "y": 0.05, "py": -0.003}


def dispersed_beam(distribution: str = "gaussian", **fields) -> Beam:
    data = {"species": "electron", "kinetic_energy_MeV": 5000.0, "distribution": distribution,
            "ellipse": ELLIPSE, "dispersion": DISPERSION, "particles": N, "seed": 11}
    return Beam.model_validate({**data, **fields})


def test_dispersion_covariance_terms() -> None:
    """Sigma' = D Sigma D^T with D = 1 - d e_pt^T: <u pt> = <u pt>_0 - d_u <pt^2>,
    <u v> = <u v>_0 - d_u <v pt>_0 - d_v <u pt>_0 + d_u d_v <pt^2> (u, v in x, px, y, py),
    the longitudinal block unchanged."""
    plain = beam_covariance(dispersed_beam(dispersion=None))
    sigma = beam_covariance(dispersed_beam())
    d = np.array([DISPERSION[k] for k in ("x", "px", "y", "py")])
    ptpt = plain[5, 5]
    for i in range(4):
        assert sigma[i, 5] == pytest.approx(plain[i, 5] - d[i] * ptpt, rel=1e-12)
        assert sigma[i, 4] == pytest.approx(plain[i, 4] - d[i] * plain[5, 4], rel=1e-12)
        for j in range(4):
            expected = (plain[i, j] - d[i] * plain[j, 5] - d[j] * plain[i, 5]
                        + d[i] * d[j] * ptpt)
            assert sigma[i, j] == pytest.approx(expected, rel=1e-12, abs=1e-30)
    np.testing.assert_array_equal(sigma[4:, 4:], plain[4:, 4:])
    assert sigma[0, 5] == pytest.approx(-DISPERSION["x"] * ptpt, rel=1e-12) and ptpt > 0


@pytest.mark.parametrize("distribution", ["gaussian", "waterbag", "kurth4d", "triangle"])
def test_dispersed_particles_have_that_covariance(distribution: str) -> None:
    beam = dispersed_beam(distribution)
    particles = generate(beam)
    whitened = particles @ np.linalg.inv(np.linalg.cholesky(beam_covariance(beam))).T
    assert unit_moment_deviation(whitened) < 5.0
    undispersed = generate(dispersed_beam(distribution, dispersion=None))
    np.testing.assert_allclose(particles[:, 0], undispersed[:, 0]
                               - DISPERSION["x"] * undispersed[:, 5], rtol=0, atol=1e-18)


def test_dispersion_applies_before_the_centroid_and_to_thermal() -> None:
    centroid = {"x": 1e-3, "pt": 2e-3}
    shifted = generate(dispersed_beam(centroid=centroid), 100)
    plain = generate(dispersed_beam(), 100)
    np.testing.assert_allclose(shifted[:, 0] - plain[:, 0], 1e-3, rtol=1e-9)
    np.testing.assert_allclose(shifted[:, 5] - plain[:, 5], 2e-3, rtol=1e-9)
    thermal = generate(thermal_beam(beam={"dispersion": {"x": 0.5}}), 100)
    np.testing.assert_allclose(thermal[:, 0], generate(thermal_beam(), 100)[:, 0]
                               - 0.5 * thermal[:, 5], rtol=1e-12, atol=1e-18)


def test_dispersion_is_differentiable() -> None:
    """d<x pt>/d D_x = -<pt^2> through the factor (reparameterised sampling)."""
    value = torch.tensor(DISPERSION["x"], dtype=torch.float64, requires_grad=True)
    factor = beam_cholesky(dispersed_beam(), {"dispersion.x": value})
    sigma = factor @ factor.T
    sigma[0, 5].backward()
    ptpt = beam_covariance(dispersed_beam())[5, 5]
    assert value.grad is not None and value.grad.item() == pytest.approx(-ptpt, rel=1e-12)
    particles = generate_torch(dispersed_beam(), 200, {"dispersion.x": value.detach()})
    np.testing.assert_allclose(particles.numpy(), generate(dispersed_beam(), 200),
                               rtol=1e-12, atol=1e-20)


def test_dispersion_refused_on_a_particle_file_and_cut_on_other_shapes() -> None:
    with pytest.raises(ValueError, match="dispersion"):
        Beam.model_validate({"species": "electron", "kinetic_energy_MeV": 5000.0,
                             "distribution": "file", "file": "x.npz",
                             "dispersion": DISPERSION})
    with pytest.raises(ValueError, match="gaussian_cut"):
        dispersed_beam("waterbag", gaussian_cut={"x": 2.0})


def test_envelope_scenario_starts_from_the_dispersed_covariance() -> None:
    from harness.model.load import scenario_from_dict

    facility = [{"d": {"kind": "Drift", "length": 1.0}},
                {"line": {"kind": "BeamLine", "line": ["d"]}}, {"use": "line"}]
    data = {"name": "envelope", "tracking": "envelope",
            "lattice": {"PALS": {"version": None, "facility": facility}},
            "beam": {"species": "electron", "kinetic_energy_MeV": 5000.0,
                     "distribution": "waterbag", "ellipse": ELLIPSE,
                     "dispersion": DISPERSION}}
    scenario = scenario_from_dict(data)
    sigma = beam_covariance(scenario.beam)
    assert sigma[0, 5] == pytest.approx(-DISPERSION["x"] * sigma[5, 5], rel=1e-12)
    data["beam"] = {"species": "proton", "kinetic_energy_MeV": 0.1,
                    "distribution": "thermal", "thermal": BITHERMAL}
    with pytest.raises(ScenarioError, match="thermal"):
        scenario_from_dict(data)


# -- against ImpactX's own draws ------------------------------------------------------------

IMPACTX_DRAW = """
import json, sys
import numpy as np
from impactx import ImpactX, distribution
from backends.impactx import _read_particles
sim = ImpactX()
sim.particle_shape = 2
sim.space_charge = False
sim.slice_step_diagnostics = False
sim.init_grids()
species, energy, charge, kind, params, n, out = json.loads(sys.argv[1])
sim.beam.ref.set_species(species).set_kin_energy_MeV(energy)
sim.add_particles(charge, getattr(distribution, kind)(**params), n)
np.save(out, _read_particles(sim.beam)[1])
sim.finalize()
"""


def impactx_draw(tmp_path: Path, species: str, energy: float, charge: float, kind: str,
                 params: dict) -> np.ndarray:
    """``N`` particles of ImpactX's own ``distribution.<kind>(**params)``."""
    out = tmp_path / "impactx.npy"
    subprocess.run([sys.executable, "-c", IMPACTX_DRAW, json.dumps(
        [species, energy, charge, kind, params, N, str(out)])], check=True,
        capture_output=True, timeout=300, cwd=REPOSITORY)
    return np.load(out)


def ks_p_min(ours: np.ndarray, theirs: np.ndarray) -> float:
    from scipy import stats

    return min(float(stats.ks_2samp(ours[:, i], theirs[:, i]).pvalue) for i in range(6))


needs_impactx = pytest.mark.skipif(importlib.util.find_spec("impactx") is None,
                                   reason="needs ImpactX")


@needs_impactx
@pytest.mark.parametrize(("kind", "distribution", "extra"), [
    ("Kurth4D", "kurth4d", {}),
    ("Triangle", "triangle", {}),
    ("Gaussian", "gaussian", {"cutX": 2.0, "cutY": 3.0, "cutT": 1.0}),
    ("Waterbag", "waterbag", {"dispX": -0.27, "dispPx": 0.012, "dispY": 0.05,
                              "dispPy": -0.003}),
])
def test_marginals_match_impactx_own_draw(tmp_path: Path, kind: str, distribution: str,
                                          extra: dict) -> None:
    """Ours and ImpactX's, both whitened by our factor (dispersion included): every
    coordinate's marginal agrees (KS), and so do the second moments."""
    fields: dict = {"ellipse": ELLIPSE}
    if "cutX" in extra:
        fields["gaussian_cut"] = {"x": 2.0, "y": 3.0, "t": 1.0}
    if "dispX" in extra:
        fields["dispersion"] = DISPERSION
    beam = Beam.model_validate(dict(species="electron", kinetic_energy_MeV=5000.0,
                                    distribution=distribution, particles=N, seed=13,
                                    **fields))
    theirs = impactx_draw(tmp_path, "electron", 5000.0, 1e-9, kind, {**ELLIPSE, **extra})
    inverse = np.linalg.inv(beam_cholesky(beam)).T
    assert ks_p_min(generate(beam) @ inverse, theirs @ inverse) > 1e-3
    assert unit_moment_deviation(theirs @ np.linalg.inv(
        np.linalg.cholesky(beam_covariance(beam))).T) < 5.0


@needs_impactx
def test_thermal_matches_impactx_own_draw_with_space_charge(tmp_path: Path) -> None:
    """run_bithermal.py's beam (0.1 MeV protons, 0.143 nC): ImpactX's Thermal and ours
    agree marginal by marginal, core and halo and the space-charge-widened profile."""
    beam = thermal_beam(BITHERMAL_CHARGE_C)
    theirs = impactx_draw(tmp_path, "proton", 0.1, BITHERMAL_CHARGE_C, "Thermal", BITHERMAL)
    ours = generate(beam)
    assert ks_p_min(ours, theirs) > 1e-3
    # second moments: heavy-tailed (kurtosis ~20 in the momenta), compared within 5 of the
    # two samples' combined standard errors
    a, b = ours**2, theirs**2
    error = np.sqrt(a.var(0) / len(a) + b.var(0) / len(b))
    assert np.all(np.abs(a.mean(0) - b.mean(0)) < 5.0 * error)


# -- ImpactX examples: how their distributions are stated -----------------------------------

def _capture(distribution: tuple, settings: dict | None = None, spin: tuple | None = None):
    from impactx import elements

    from benchmarks.impactx_examples.translate import Capture

    return Capture(settings=settings or {}, reference={
        "mass_MeV": 938.27208943, "charge_qe": 1.0, "kin_energy_MeV": 0.1},
        lattice=[elements.Drift(name="d", ds=1.0)], distribution=distribution,
        bunch_charge_C=BITHERMAL_CHARGE_C, particles=100, spin=spin)


@needs_impactx
def test_example_distributions_are_stated() -> None:
    from benchmarks.impactx_examples.translate import scenario_of

    data, reasons = scenario_of(_capture(("Thermal", BITHERMAL)), "x")
    assert reasons == [] and data is not None
    assert data["beam"]["distribution"] == "thermal" and data["beam"]["thermal"] == BITHERMAL
    for kind, name in (("Kurth4D", "kurth4d"), ("Triangle", "triangle")):
        data, reasons = scenario_of(_capture((kind, {**ELLIPSE, "dispX": -0.27,
                                                     "dispPy": 0.01, "meanX": 1e-3})), "x")
        assert reasons == [] and data is not None
        beam = data["beam"]
        assert beam["distribution"] == name and beam["ellipse"] == ELLIPSE
        assert beam["dispersion"] == {"x": -0.27, "py": 0.01} and beam["centroid"] == {
            "x": 1e-3}
    data, _ = scenario_of(_capture(("Gaussian", {**ELLIPSE, "cutX": 2.0, "cutT": 1.0})), "x")
    assert data is not None and data["beam"]["gaussian_cut"] == {"x": 2.0, "t": 1.0}


@needs_impactx
@pytest.mark.parametrize(("distribution", "settings", "spin", "expected"), [
    (("Thermal", {**BITHERMAL, "meanX": 1e-3}), {}, None,
     "distribution Thermal: parameters meanX cannot be stated"),
    # periodic is a scenario setting (particle_boundary) once the bucket length is known
    (("Kurth4D", ELLIPSE), {"particle_bc": "periodic"}, None,
     "particle boundary periodic: no bucket length set (set_bucket_length)"),
    (("Kurth4D", ELLIPSE), {"particle_bc": "reflecting"}, None,
     "particle boundary reflecting: only 'periodic' is a scenario setting"),
])
def test_example_settings_refused_by_name(distribution, settings, spin, expected) -> None:
    from benchmarks.impactx_examples.translate import scenario_of

    data, reasons = scenario_of(_capture(distribution, settings, spin), "x")
    assert data is None and reasons == [expected]


@needs_impactx
def test_identity_lattice_and_the_envelope_analysis_final_check() -> None:
    from impactx import elements

    from benchmarks.impactx_examples.capture import identity_lattice
    from benchmarks.impactx_examples.suite import examples_folder
    from benchmarks.impactx_examples.tolerances import read_checks

    monitor = elements.BeamMonitor("m", backend="h5")
    assert identity_lattice([elements.Drift(ds=0.0), monitor, monitor])
    assert not identity_lattice([elements.Drift(ds=0.1), monitor])
    assert not identity_lattice([elements.Drift(ds=0.0, dx=1e-3)])
    checks, unread = read_checks(
        examples_folder() / "dogleg" / "analysis_dogleg_reverse_envelope.py", {})
    assert [c.key for c in checks] == ["sigma_x", "sigma_y", "sigma_t", "emittance_x",
                                       "emittance_y", "emittance_t"]
    assert {c.rtol for c in checks} == {0.025} and unread == []
