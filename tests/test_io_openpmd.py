"""openPMD particle files (openPMD-beamphysics) as beams and as output: the conversion to
ImpactX coordinates against its formula, write -> read round trip, clear errors."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import yaml

from harness.model.errors import ScenarioError
from harness.model.load import load_scenario
from harness.model.openpmd import file_reference, read_openpmd, write_openpmd
from harness.model.particles import generate
from harness.model.reference_particle import C_LIGHT, ReferenceParticle

beamphysics = pytest.importorskip("beamphysics")

REFERENCE = ReferenceParticle("electron", 100.0)


def group(n: int = 5, species: str = "electron", **overrides):
    """A ParticleGroup at z = 0 with known momenta around the reference."""
    p0 = REFERENCE.p0c_eV
    data = {"x": np.linspace(-1e-3, 1e-3, n), "px": np.linspace(-1e-4, 2e-4, n) * p0,
            "y": np.linspace(2e-4, -2e-4, n), "py": np.linspace(3e-5, -1e-5, n) * p0,
            "z": np.zeros(n), "pz": p0 * (1 + np.linspace(-1e-3, 2e-3, n)),
            "t": np.linspace(-1e-12, 3e-12, n), "status": np.ones(n, dtype=int),
            "weight": np.full(n, 1e-12), "species": species}
    data.update(overrides)
    return beamphysics.ParticleGroup(data=data)


def test_conversion_is_the_documented_formula(tmp_path):
    source = group()
    path = tmp_path / "beam.h5"
    source.write(str(path))
    out = read_openpmd(path, REFERENCE)
    p0, m = REFERENCE.p0c_eV, REFERENCE.mass_eV
    energy = np.sqrt(source.px**2 + source.py**2 + source.pz**2 + m**2)
    np.testing.assert_array_equal(out[:, 0], source.x)
    np.testing.assert_allclose(out[:, 1], source.px / p0, rtol=1e-15)
    np.testing.assert_allclose(out[:, 4], C_LIGHT * (source.t - np.mean(source.t)),
                               rtol=1e-12, atol=1e-20)
    np.testing.assert_allclose(out[:, 5], -(energy - REFERENCE.total_energy_eV) / p0,
                               rtol=1e-12)
    # a particle with higher momentum has more energy: pt < 0 (ImpactX's sign)
    assert out[-1, 5] < 0 < out[0, 5]


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    particles = rng.normal(size=(1000, 6)) * [1e-3, 1e-4, 1e-3, 1e-4, 1e-4, 1e-3]
    particles[:, 4] -= particles[:, 4].mean()
    path = write_openpmd(tmp_path / "final.h5", particles, REFERENCE, charge_C=1e-9)
    back = read_openpmd(path, REFERENCE)
    scale = np.abs(particles).max(axis=0)
    assert np.max(np.abs(back - particles) / scale) < 1e-12
    # the mean kinetic energy of a beam with a 1e-3 rms energy spread around 100 MeV
    assert file_reference(path).kinetic_energy_MeV == pytest.approx(100.0, rel=1e-4)


def test_lost_particles_are_written_with_status_zero(tmp_path):
    particles = np.zeros((3, 6))
    particles[1] = np.nan
    path = write_openpmd(tmp_path / "lost.h5", particles, REFERENCE)
    assert list(beamphysics.ParticleGroup(str(path)).status) == [1, 0, 1]
    with pytest.raises(ScenarioError, match="only live particles"):
        read_openpmd(path, REFERENCE)


def test_a_bunch_at_one_time_is_drifted_to_one_position(tmp_path):
    source = group(z=np.linspace(0.0, 1e-3, 5), t=np.zeros(5))
    path = tmp_path / "snapshot.h5"
    source.write(str(path))
    out = read_openpmd(path, REFERENCE)
    drifted = source.copy()
    drifted.drift_to_z()
    np.testing.assert_allclose(out[:, 0], drifted.x, rtol=1e-15)
    assert np.ptp(out[:, 4]) > 0


def test_species_must_match(tmp_path):
    path = tmp_path / "protons.h5"
    group(species="proton").write(str(path))
    with pytest.raises(ScenarioError, match="beam.species: expected the file's species"):
        read_openpmd(path, REFERENCE)


def test_missing_momentum_is_one_clear_line(tmp_path):
    path = tmp_path / "nomomentum.h5"
    group().write(str(path))
    with h5py.File(path, "a") as f:
        name = f.visit(lambda n: n if n.endswith("momentum") else None)
        assert name is not None
        del f[name]
    with pytest.raises(ScenarioError) as error:
        read_openpmd(path, REFERENCE)
    assert "\n" not in str(error.value) and "beam.file" in str(error.value)


def test_scenario_beam_from_an_openpmd_file(tmp_path):
    path = tmp_path / "beam.h5"
    group(n=20).write(str(path))
    data = load_scenario("fodo_linear").model_dump(exclude={"source_file"})
    data["beam"] = {"species": "electron", "kinetic_energy_MeV": 100.0,
                    "distribution": "file", "file": "beam.h5", "particles": 20}
    data.pop("gradients")
    scenario_file = tmp_path / "scenario.yaml"
    scenario_file.write_text(yaml.safe_dump(data))
    scenario = load_scenario(scenario_file)
    particles = generate(scenario.beam, base_dir=tmp_path)
    np.testing.assert_array_equal(particles, read_openpmd(path, REFERENCE))
    assert math.isclose(particles[0, 1], -1e-4, rel_tol=1e-14)


def test_run_writes_initial_and_final_particles(tmp_path):
    """``trackbench run --write-particles openpmd``: one initial file per scenario and N,
    one final file per case, the final one equal to the tracked particles."""
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.io.particles_out import final_file, initial_file
    from tests.io_helpers import track

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "fodo_linear", "--backends", "inhouse",
                                      "--particles", "64", "--repeat", "1", "--no-report",
                                      "--json", "--write-particles", "openpmd",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    scenario = load_scenario("fodo_linear")
    initial = read_openpmd(initial_file(out, "fodo_linear", 64), scenario.reference_particle)
    expected_initial = generate(scenario.beam, 64)
    # the file's t is relative to its mean arrival time (openPMD carries no reference time)
    centred = expected_initial.copy()
    centred[:, 4] -= centred[:, 4].mean()
    scale = np.abs(centred).max(axis=0)
    assert np.max(np.abs(initial - centred) / scale) < 1e-12
    # the in-house case and its reference case (ImpactX, run for the agreement columns)
    finals = {p.name.split("__")[2]: p for p in (out / "particles").glob("*__final.h5")}
    assert set(finals) <= {"inhouse", "impactx"} and "inhouse" in finals
    case_id = finals["inhouse"].name.removesuffix("__final.h5").replace("__", "/")
    assert final_file(out, case_id) == finals["inhouse"]
    final = read_openpmd(finals["inhouse"], scenario.reference_particle)
    tracked = track(scenario, "inhouse", expected_initial)
    tracked[:, 4] -= tracked[:, 4].mean()
    scale = np.abs(tracked).max(axis=0)
    assert np.max(np.abs(final - tracked) / scale) < 1e-11


def test_run_writes_no_particles_by_default(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "fodo_linear", "--backends", "inhouse",
                                      "--particles", "16", "--repeat", "1", "--no-report",
                                      "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not (out / "particles").exists()
