"""What ``trackbench validate FILE`` reads: regular files only, size-capped before reading;
large and deeply nested lattices; beam files opened and checked; relative beam files that
the case processes find from any working directory; bounds listed in the docs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.model.errors import ScenarioError
from harness.model.load import BUNDLED_DIR, load_scenario, scenario_from_dict
from tests.test_bad_input import one_line
from tests.test_bad_input import validate_in_process as validate

REPO = Path(__file__).resolve().parent.parent
FODO = BUNDLED_DIR / "fodo_linear.yaml"


def fodo() -> dict:
    return yaml.safe_load(FODO.read_text())




def console_script() -> list[str]:
    script = Path(sys.executable).parent / "trackbench"
    return [str(script)] if script.exists() else [
        sys.executable, "-c", "from harness.cli import main; main()"]


# -- only regular files, refused before reading ---------------------------------------------


@pytest.mark.parametrize("special, kind", [("/dev/zero", "character device"),
                                           ("/dev/urandom", "character device")])
def test_devices_are_refused_at_once(special: str, kind: str) -> None:
    if not os.path.exists(special):
        pytest.skip(f"no {special}")
    result, seconds = validate(special)
    line = one_line(result.stderr)
    assert result.exit_code == 1
    assert special in line and "<file>" in line and "a regular file" in line and kind in line
    assert seconds < 1.0


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "scenario.yaml"
    os.mkfifo(fifo)
    done = subprocess.run([*console_script(), "validate", str(fifo)], capture_output=True,
                          text=True, timeout=30, cwd=REPO)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert str(fifo) in line and "FIFO" in line, line


def test_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "scenario.yaml"
    folder.mkdir()
    result, seconds = validate(str(folder))
    line = one_line(result.stderr)
    assert str(folder) in line and "directory" in line
    assert seconds < 1.0


def test_read_regular_file_reads_at_most_the_cap_plus_one(tmp_path: Path,
                                                          monkeypatch) -> None:
    """A file that grows after its size was checked is refused, never read whole."""
    import harness.model.yaml_load as yl

    path = tmp_path / "grows.yaml"
    path.write_bytes(b"a" * 10)
    asked: list[int] = []
    real_fdopen = os.fdopen

    class Spy:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            path.write_bytes(b"a" * 1000)  # grows between stat and read
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def fileno(self):
            return self.handle.fileno()

        def read(self, n):
            asked.append(n)
            return self.handle.read(n)

    monkeypatch.setattr(yl.os, "fdopen", lambda fd, mode: Spy(real_fdopen(fd, mode)))
    with pytest.raises(ScenarioError, match="more than 100 bytes"):
        yl.read_regular_file(path, 100)
    assert asked == [101]


def test_lattice_file_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "lattice.yaml"
    os.mkfifo(fifo)
    data = fodo()
    data["lattice"] = "lattice.yaml"
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(data))
    result, seconds = validate(str(scenario))
    line = one_line(result.stderr)
    assert str(scenario) in line and "lattice" in line
    assert seconds < 2.0


def test_beam_file_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "beam.npz"
    os.mkfifo(fifo)
    path = write_beam_scenario(tmp_path, "beam.npz")
    result, seconds = validate(str(path))
    line = one_line(result.stderr)
    assert str(path) in line and "beam.file" in line and "FIFO" in line
    assert seconds < 2.0


# -- large and deeply nested lattices -------------------------------------------------------


def many_elements(n: int) -> str:
    """A scenario text with ``n`` distinct drifts in one line."""
    head = FODO.read_text().split("lattice:")[0]
    head = head.replace("[quad1.Kn1, quad2.Kn1, drift2.length, ", "[")
    body = "".join(f"      - d{i}: {{kind: Drift, length: 0.001}}\n" for i in range(n))
    names = ", ".join(f"d{i}" for i in range(n))
    return (f"{head}lattice:\n  PALS:\n    facility:\n{body}      - cell:\n"
            f"          kind: BeamLine\n          line: [{names}]\n      - use: cell\n")


@pytest.mark.xdist_group("processes")  # a wall-clock budget: never beside the busiest tests
def test_a_million_distinct_elements_is_refused_within_seconds(tmp_path: Path) -> None:
    """Parsing stops at the node cap (measured: ~2.5 s of CPU for the 55 MB file, against
    a minute and more to read it whole)."""
    from harness.model.yaml_load import MAX_NODES

    path = tmp_path / "million.yaml"
    path.write_text(many_elements(1_000_000))
    start = time.perf_counter()
    done = subprocess.run([*console_script(), "validate", str(path)], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    seconds = time.perf_counter() - start
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert str(path) in line and f"at most {MAX_NODES:,} YAML nodes" in line, line
    assert seconds < 10.0


def test_many_definitions_are_refused_by_the_stated_cap(monkeypatch) -> None:
    import harness.model.lattice as lattice

    monkeypatch.setattr(lattice, "MAX_DEFINITIONS", 50)
    data = yaml.safe_load(many_elements(60))
    with pytest.raises(ScenarioError, match="at most 50 element definitions"):
        scenario_from_dict(data, "many.yaml")
    assert len(scenario_from_dict(yaml.safe_load(many_elements(40)), "ok.yaml").elements) == 40


def nested(levels: int, circular: bool = False) -> dict:
    data = fodo()
    facility = [{"d": {"kind": "Drift", "length": 0.5}},
                {"l0": {"kind": "BeamLine", "line": [f"l{levels - 1}" if circular else "d"]}}]
    facility += [{f"l{i}": {"kind": "BeamLine", "line": [f"l{i - 1}", "d"]}}
                 for i in range(1, levels)]
    facility.append({"use": f"l{levels - 1}"})
    data["lattice"] = {"PALS": {"facility": facility}}
    data["gradients"]["parameters"] = ["beam.twiss.beta_x"]
    return data


def test_seventy_nested_beamlines_validate() -> None:
    """70 levels were refused as "circular references" (the depth cap was 64)."""
    scenario = scenario_from_dict(nested(70), "nested.yaml")
    assert len(scenario.elements) == 70
    assert scenario.length == pytest.approx(35.0)


def test_a_real_cycle_is_still_refused() -> None:
    with pytest.raises(ScenarioError, match="circular references"):
        scenario_from_dict(nested(5, circular=True), "cycle.yaml")


# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "a/b/c", "n" * 10_000, "bad\0name",
                                  "\x1b[31mred", "..", ".hidden", "two words", ""])
def test_unsafe_scenario_names_are_refused(name: str) -> None:
    data = fodo()
    data["name"] = name
    with pytest.raises(ScenarioError) as error:
        scenario_from_dict(data, "s.yaml")
    assert error.value.field == "name"
    assert "\n" not in str(error.value) and "\x1b" not in str(error.value)


@pytest.mark.parametrize("name", ["fodo_linear", "htu", "a.b-c+d_1", "9x"])
def test_safe_scenario_names_validate(name: str) -> None:
    data = fodo()
    data["name"] = name
    assert scenario_from_dict(data, "s.yaml").name == name


def test_every_bundled_name_is_safe() -> None:
    from harness.model.load import bundled_names
    from harness.model.scenario import NAME_PATTERN

    for bundled in bundled_names():
        assert NAME_PATTERN.fullmatch(load_scenario(bundled).name)


# -- numbers --------------------------------------------------------------------------------


def test_ion_of_tiny_mass_is_one_line_not_an_overflow() -> None:
    """``OverflowError: Numerical result out of range`` came from gamma**2."""
    data = fodo()
    data["beam"].update(species="ion", charge_qe=1, mass_MeV=1e-300)
    with pytest.raises(ScenarioError) as error:
        scenario_from_dict(data, "ion.yaml")
    assert error.value.field == "beam.mass_MeV"


def test_zero_length_quadrupole_without_strength_is_a_marker() -> None:
    """Only a strength on a zero-length thick element is lost; an empty one is harmless."""
    data = fodo()
    data["lattice"]["PALS"]["facility"][1] = {
        "quad1": {"kind": "Quadrupole", "length": 0.0, "MagneticMultipoleP": {"Kn1": 0.0}}}
    scenario = scenario_from_dict(data, "q0.yaml")
    assert scenario.elements[1].params == {"length": 0.0, "Kn1": 0.0}


def test_every_element_field_has_a_bound() -> None:
    from harness.model.limits import element_bound
    from harness.model.vocabulary import ELEMENT_FIELDS

    for kind, fields in ELEMENT_FIELDS.items():
        for name in fields:
            probe = name.replace("*", "3")
            assert element_bound(probe) is not None, (kind, name)


def test_bounds_do_not_refuse_the_bundled_scenarios() -> None:
    from harness.model.load import bundled_names

    for bundled in bundled_names():
        assert load_scenario(bundled).elements


def test_docs_list_every_bound() -> None:
    """docs/scenario-limits.md holds the table :func:`harness.model.limits.markdown_table` makes."""
    from harness.model.limits import all_bounds, markdown_table

    doc = (REPO / "docs" / "scenario-limits.md").read_text()
    assert markdown_table() in doc
    for bound in all_bounds():
        assert f"`{bound.field}`" in doc


# -- beam files -----------------------------------------------------------------------------


GOOD = np.array([[1e-3, 1e-4, -2e-3, 0.0, 1e-4, 1e-3]] * 8) * np.arange(1, 9)[:, None]


def write_beam_scenario(folder: Path, beam_file: str, particles: int = 4) -> Path:
    data = fodo()
    data.pop("gradients")
    data["beam"] = {"species": "electron", "kinetic_energy_MeV": 2000.0,
                    "distribution": "file", "file": beam_file, "particles": particles}
    path = folder / "beam_scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def refused(folder: Path, beam_file: str, particles: int = 4) -> str:
    path = write_beam_scenario(folder, beam_file, particles)
    result, seconds = validate(str(path))
    assert result.exit_code == 1, result.output
    line = one_line(result.stderr)
    assert str(path) in line and "beam.file" in line or "beam.particles" in line, line
    assert seconds < 3.0
    return line


def test_a_good_npz_validates(tmp_path: Path) -> None:
    np.savez(tmp_path / "p.npz", particles=GOOD)
    result, _ = validate(str(write_beam_scenario(tmp_path, "p.npz")))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("case, expected", [
    ("nan", "finite coordinates"), ("inf", "finite coordinates"), ("shape", "(N, 6)"),
    ("strings", "real numbers"), ("objects", "readable .npz"), ("complex", "real numbers"),
    ("empty", "1 to"), ("at rest", "moving forward"), ("backward", "moving forward"),
    ("truncated", "readable .npz"), ("not a zip", "readable .npz"),
    ("missing columns", "'particles'"), ("too few", "beam.particles")])
def test_bad_npz_is_one_line(tmp_path: Path, case: str, expected: str) -> None:
    path = tmp_path / "p.npz"
    particles = GOOD.copy()
    if case == "nan":
        particles[3, 2] = np.nan
    elif case == "inf":
        particles[0, 0] = np.inf
    elif case == "at rest":   # energy = the rest energy: pt = T / p0c
        from harness.model.reference_particle import ReferenceParticle

        reference = ReferenceParticle("electron", 2000.0)
        particles[2, 5] = 2000.0e6 / reference.p0c_eV
    elif case == "backward":  # |px| above the particle's own momentum
        particles[1, 1] = 1.5
    arrays = {"particles": particles}
    if case == "shape":
        arrays = {"particles": particles[:, :5]}
    elif case == "strings":
        arrays = {"particles": np.array([["a"] * 6] * 4)}
    elif case == "objects":
        arrays = {"particles": np.array([[object()] * 6] * 4, dtype=object)}
    elif case == "complex":
        arrays = {"particles": particles.astype(complex)}
    elif case == "empty":
        arrays = {"particles": np.zeros((0, 6))}
    elif case == "missing columns":
        arrays = {"x": particles[:, 0]}
    if case == "objects":
        np.savez(path, allow_pickle=True, **arrays)
    else:
        np.savez(path, **arrays)
    if case == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif case == "not a zip":
        path.write_bytes(b"\x00" * 100)
    line = refused(tmp_path, "p.npz", particles=20 if case == "too few" else 4)
    assert expected in line, line


def test_npz_that_decompresses_beyond_the_cap_is_refused_unread(tmp_path: Path,
                                                                 monkeypatch) -> None:
    import harness.model.particles as particles

    np.savez_compressed(tmp_path / "bomb.npz", particles=np.zeros((100_000, 6)))
    assert (tmp_path / "bomb.npz").stat().st_size < 100_000
    monkeypatch.setattr(particles, "MAX_PARTICLE_FILE_BYTES", 1_000_000)
    line = refused(tmp_path, "bomb.npz")
    assert "once decompressed" in line and "4,800" in line, line


def test_oversized_beam_file_is_refused_before_reading(tmp_path: Path) -> None:
    from harness.model.particles import MAX_PARTICLE_FILE_BYTES

    with (tmp_path / "big.npz").open("wb") as handle:  # sparse
        handle.truncate(MAX_PARTICLE_FILE_BYTES + 1)
    line = refused(tmp_path, "big.npz")
    assert "a regular file of at most 1024 MiB" in line, line


@pytest.mark.parametrize("text, expected", [
    ("x,px,y,py,t,pt\n1,0,0,0,0,nan\n", "finite coordinates"),
    ("x,px,y,py\n1,0,0,0\n", "the columns"),
    ("x,px,y,py,t,pt\n1,0,0,0,0,abc\n", "numbers in every column"),
    ("", "readable .csv"),
    ("x,px,y,py,t,pt\n\"1,0\n", "readable .csv")])
def test_bad_csv_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "p.csv").write_text(text)
    assert expected in refused(tmp_path, "p.csv", particles=1)


def openpmd_file(path: Path, species: str = "electron", **changes) -> Path:
    from harness.model.openpmd import write_openpmd
    from harness.model.reference_particle import ReferenceParticle

    write_openpmd(path, GOOD, ReferenceParticle(species, 2000.0))
    if changes:
        import h5py

        with h5py.File(path, "r+") as handle:
            for record, value in changes.items():
                def edit(name, item, record=record, value=value):
                    if isinstance(item, h5py.Dataset) and name.endswith(record):
                        item[...] = value
                handle.visititems(edit)
    return path


@pytest.mark.parametrize("case, expected", [
    ("truncated", "readable openPMD"), ("species", "species"),
    ("nan", "finite"), ("at rest", "moving forward"), ("garbage", "readable openPMD")])
def test_bad_openpmd_is_one_line(tmp_path: Path, case: str, expected: str) -> None:
    path = tmp_path / "p.h5"
    if case == "species":
        openpmd_file(path, species="proton")
    elif case == "nan":
        openpmd_file(path, **{"momentum/x": np.nan})
    elif case == "at rest":
        openpmd_file(path, **{"momentum/x": 0.0, "momentum/y": 0.0, "momentum/z": 0.0})
    else:
        openpmd_file(path)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2] if case == "truncated" else b"\x89HDF" * 50)
    assert expected in refused(tmp_path, "p.h5"), case


def test_a_good_openpmd_file_validates(tmp_path: Path) -> None:
    openpmd_file(tmp_path / "p.h5")
    result, _ = validate(str(write_beam_scenario(tmp_path, "p.h5")))
    assert result.exit_code == 0, result.output


# -- a relative beam.file, found by the case process from the run directory --------------


def test_relative_beam_file_is_found_from_another_directory(tmp_path: Path,
                                                            monkeypatch) -> None:
    """The case process runs in the run directory and reads the pickled scenario: a relative
    ``beam.file`` gave ``FileNotFoundError: 'particles/fodo.csv'`` in every case."""
    from harness.case_spec import CaseSpec
    from harness.case_support import initial_particles
    from harness.model.load import scenario_from_bytes, scenario_to_bytes

    folder = tmp_path / "scenarios"
    (folder / "particles").mkdir(parents=True)
    header = "x,px,y,py,t,pt\n"
    rows = "".join(",".join(f"{v:.17g}" for v in row) + "\n" for row in GOOD)
    (folder / "particles" / "fodo.csv").write_text(header + rows)
    path = write_beam_scenario(folder, "particles/fodo.csv")
    monkeypatch.chdir(folder)
    scenario = load_scenario("beam_scenario.yaml")   # relative scenario path as well
    blob = scenario_to_bytes(scenario)
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    child = scenario_from_bytes(blob)
    spec = CaseSpec(scenario_path=str(path), backend="inhouse", particles=4)
    got = initial_particles(spec, child)
    np.testing.assert_array_equal(got, GOOD[:4])
    assert Path(child.beam.file or "").is_absolute()
