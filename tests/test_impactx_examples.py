"""ImpactX's example suite through trackbench (benchmarks/impactx_examples): a few fast
example scripts end to end, the analysis tolerances read from their scripts, the reasons an
example cannot be stated, and the ImpactX element kinds the lattice import reads."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

impactx = pytest.importorskip("impactx")

from benchmarks.impactx_examples.moments import moments  # noqa: E402
from benchmarks.impactx_examples.suite import examples_folder, run_example  # noqa: E402
from benchmarks.impactx_examples.tolerances import (  # noqa: E402
    analysis_for,
    moment_key,
    read_checks,
)
from benchmarks.impactx_examples.translate import Capture, scenario_of  # noqa: E402
from harness.io.impactx_lattice import element_settings, import_impactx  # noqa: E402
from harness.model.reference_particle import ReferenceParticle  # noqa: E402

ix = impactx.elements
ELECTRON_2GEV = {"mass_MeV": 0.51099895069, "charge_qe": -1.0, "kin_energy_MeV": 2000.0}
WATERBAG = ("Waterbag", {"lambdaX": 4e-5, "lambdaY": 4e-5, "lambdaT": 1e-3, "lambdaPx": 2e-5,
                         "lambdaPy": 2e-5, "lambdaPt": 2e-3, "muxpx": 0.5})


@pytest.mark.parametrize("script", ["fodo/run_fodo.py", "chicane/run_chicane.py",
                                    "kicker/run_kicker.py"])
def test_example_reproduced_within_its_own_tolerance(script: str) -> None:
    """The example's own run, restated as a scenario and tracked from its own particles by
    the ImpactX and in-house backends, lands within its analysis's tolerance (here: far
    within, at round-off)."""
    examples = examples_folder()
    outcome = run_example(examples / script, examples, timeout=60)
    assert outcome.status == "reproduced", outcome.reasons
    assert {"sigma_x", "emittance_y"} <= set(outcome.checked)
    assert outcome.backends == {"impactx": "within", "inhouse": "within"}
    assert max(outcome.worst.values()) < 1e-6


def test_envelope_example_reproduced_from_its_own_covariance() -> None:
    """``track_envelope``: stated as ``tracking: envelope``, tracked by both backends'
    envelope modes from the example's own initial covariance; the analysis's final sigmas
    and emittances (``sigma_xf``, ...) are read from the final covariance."""
    examples = examples_folder()
    outcome = run_example(examples / "fodo/run_fodo_envelope.py", examples, timeout=60)
    assert outcome.status == "reproduced", outcome.reasons
    assert set(outcome.checked) == {"sigma_x", "sigma_y", "sigma_t", "emittance_x",
                                    "emittance_y", "emittance_t"}
    assert max(outcome.worst.values()) < 1e-9


def test_spin_example_reproduced_with_its_polarization() -> None:
    """``sim.spin`` with a ``SpinvMF``: stated as ``beam.spin.polarization``, tracked from
    the example's own particles and spins; the analysis's final polarization is the mean
    spin."""
    examples = examples_folder()
    outcome = run_example(examples / "spin_tracking/run_quad_spin.py", examples, timeout=60)
    assert outcome.status == "reproduced", outcome.reasons
    assert outcome.checked == ["mean_sx", "mean_sy", "mean_sz"]
    assert max(outcome.worst.values()) < 1e-9


def test_envelope_and_space_charge_kinds_stated() -> None:
    """``init_envelope``'s intensity under 2D envelope space charge is the beam current;
    ImpactX's Gauss2p5D settings map to the scenario's by name; a 2D particle run's
    add_particles charge is the current."""
    drift = [ix.Drift(name="d", ds=1.0, nslice=2)]
    envelope = _capture(drift, {"space_charge": "2D"})
    envelope.tracking, envelope.intensity = "envelope", 0.5
    data, reasons = scenario_of(envelope, "x")
    assert reasons == [] and data is not None
    assert data["tracking"] == "envelope" and data["envelope_space_charge"] == {"kind": "2d"}
    assert data["beam"]["current_A"] == 0.5 and "bunch_charge_C" not in data["beam"]
    gauss = {"space_charge": "Gauss2p5D", "space_charge_gauss_charge_z_bins": 51,
             "space_charge_gauss_nint": 101, "space_charge_num_longitudinal_bins": 7,
             "space_charge_apply_longitudinal_kick": False}
    data, _ = scenario_of(_capture(drift, gauss), "x")
    assert data is not None and data["space_charge"] == {
        "kind": "gauss2p5d", "kicks_per_element": 2, "longitudinal_bins": 51,
        "gauss_nint": 101, "longitudinal_kick": False}
    data, _ = scenario_of(_capture(drift, {"space_charge": "2D", "n_cell": [16, 16, 1]}), "x")
    assert data is not None and data["beam"]["current_A"] == 1e-9
    assert data["space_charge"]["grid"] == [16, 16, 1]


def test_analysis_tolerances_read_from_the_script(tmp_path: Path) -> None:
    """rtol from num_particles, an atol computed from the final moments, numpy's default
    rtol where a call gives none; only the checks after the final beam's moments."""
    analysis = tmp_path / "analysis_x.py"
    analysis.write_text(
        "import numpy as np\nnum_particles = 10000\n"
        "sigx, emittance_x = get_moments(initial)\n"
        "assert np.allclose([sigx], [1.0], rtol=0.5)\n"
        "sigx, sigy, emittance_x, meanpx, s_ref = get_moments(final)\n"
        "rtol = 2.2 * num_particles**-0.5\natol = rtol * emittance_x / sigx\n"
        "assert np.allclose([sigx, sigy, s_ref], [1, 2, 3], rtol=rtol, atol=0.0)\n"
        "assert np.allclose([meanpx], [2.0e-3], atol=atol)\n")
    checks, unread = read_checks(analysis, {"sigma_x": 2.0, "emittance_x": 4.0})
    assert [(c.key, c.rtol, c.atol) for c in checks] == [
        ("sigma_x", pytest.approx(0.022), 0.0), ("sigma_y", pytest.approx(0.022), 0.0),
        ("mean_px", 1e-5, pytest.approx(0.044))]
    assert unread == ["s_ref"]
    assert checks[0].allowed(-2.0) == pytest.approx(0.044)


def test_moment_names_and_the_analysis_of_a_madx_variant() -> None:
    assert [moment_key(n) for n in ("sigx", "sig_pt", "emittance_t", "meanpy", "eps_x",
                                    "emittance_px", "s_ref", "sigma_xf", "emittance_yf",
                                    "polarization_z")] == [
        "sigma_x", "sigma_pt", "emittance_t", "mean_py", "emittance_x", None, None,
        "sigma_x", "emittance_y", "mean_sz"]
    examples = examples_folder()
    analysis = analysis_for(examples / "fodo/run_fodo_madx.py", examples)
    assert analysis is not None and analysis.name == "analysis_fodo.py"


def test_moments_as_the_analyses_compute_them() -> None:
    rng = np.random.default_rng(1)
    p = rng.normal(size=(1000, 6))
    p[:, 1] += 0.5 * p[:, 0]
    p[3] = np.nan
    m = moments(p)
    kept = np.delete(p, 3, axis=0)
    cov = np.cov(kept[:, 0], kept[:, 1], ddof=0)
    assert m["particles"] == 999
    assert m["sigma_x"] == pytest.approx(kept[:, 0].std())
    assert m["emittance_x"] == pytest.approx(math.sqrt(np.linalg.det(cov)))


def _capture(lattice: list, settings: dict | None = None,
             distribution: tuple | None = WATERBAG) -> Capture:
    return Capture(settings=settings or {}, reference=dict(ELECTRON_2GEV), lattice=lattice,
                   distribution=distribution, bunch_charge_C=1e-9, particles=100)


def test_capture_stated_as_a_scenario_with_its_tiers_and_slices() -> None:
    lattice = [ix.BeamMonitor("m", backend="h5"), ix.Drift(name="d", ds=1.0, nslice=4),
               ix.ExactQuad(name="q", ds=0.5, k=2.0, nslice=3, mapsteps=5),
               ix.Drift(name="d", ds=1.0, nslice=4)]
    data, reasons = scenario_of(_capture(lattice), "x")
    assert reasons == [] and data is not None
    assert data["model"] == "linear" and data["integrator"] == {"nslice": 4, "mapsteps": 5}
    assert data["overrides"] == {"q": {"model": "exact", "nslice": 3}}
    assert data["beam"]["distribution"] == "waterbag"
    assert data["beam"]["ellipse"]["muxpx"] == 0.5 and data["beam"]["species"] == "electron"


@pytest.mark.parametrize(("lattice", "settings", "distribution", "expected"), [
    ([ix.Multipole(name="f", multipole=2, K_normal=0.1, K_skew=0.0, aperture_x=1e-3,
                   aperture_y=1e-3)], {}, WATERBAG,
     "element Multipole: aperture_x is not translated"),
    ([ix.Drift(name="d", ds=1.0)], {"space_charge": "4D"}, WATERBAG,
     "space charge 4D: no such space-charge model"),
    ([ix.Drift(name="d", ds=1.0)], {"spin": True}, WATERBAG, "spin tracking: initial spins "
     "neither from a SpinvMF distribution nor recorded"),
    ([ix.Drift(name="d", ds=1.0)], {}, ("Empty", {}),
     "distribution Empty: no such scenario distribution"),
    ([ix.Drift(name="d", ds=1.0)], {}, ("Waterbag", {**WATERBAG[1], "cutX": 2.0}),
     "distribution Waterbag: parameters cutX cannot be stated"),
])
def test_what_cannot_be_stated_names_its_reason(lattice, settings, distribution, expected):
    data, reasons = scenario_of(_capture(lattice, settings, distribution), "x")
    assert data is None and reasons == [expected]


def test_impactx_import_reads_kickers_apertures_monitors_and_misalignments() -> None:
    reference = ReferenceParticle("electron", 2000.0)
    lattice = [ix.Kicker(name="k", xkick=1e-3, ykick=2e-3, unit="dimensionless"),
               ix.Kicker(name="kt", xkick=0.0, ykick=reference.rigidity_Tm * 1e-3,
                         unit="T-m"),
               ix.Aperture(name="a", aperture_x=1e-3, aperture_y=2e-3, shape="elliptical"),
               ix.Aperture(name="ab", aperture_x=1e-3, aperture_y=2e-3, action="absorb"),
               ix.BeamMonitor("m", backend="h5"),
               ix.Quad(name="q", ds=1.0, k=1.0, dx=1e-3, rotation=90.0),
               ix.Sbend(name="zero", ds=1.0, rc=0.0)]
    items: dict[str, Any] = {i.name: i for i in import_impactx(lattice, reference).items}
    assert items["k"].fields["MagneticMultipoleP"] == {"Kn0L": -1e-3, "Ks0L": 2e-3}
    assert items["kt"].fields["MagneticMultipoleP"]["Ks0L"] == pytest.approx(1e-3, rel=1e-15)
    assert items["a"].fields["ApertureP"] == {"x_limits": [-1e-3, 1e-3],
                                              "y_limits": [-2e-3, 2e-3],
                                              "shape": "ELLIPTICAL"}
    assert items["ab"].fields["ImpactXP"] == {"action": "absorb"}
    assert items["m"].fields == {"kind": "Marker"}
    assert items["q"].fields["BodyShiftP"] == {"x_offset": 1e-3, "z_rot": math.pi / 2}
    assert element_settings(lattice[5])["tier"] == "linear"
    assert items["zero"].fields["BendP"]["g_ref"] == 0.0   # Sbend.H: rc = 0 is a drift
