"""Bad scenario input gives one ScenarioError naming the file, the field path and what was
expected; ``trackbench validate`` reports it in one line without a traceback; a PALS lattice
written for ImpactX is accepted as is."""

from __future__ import annotations

import copy
import importlib.util
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app
from harness.model.errors import ScenarioError
from harness.model.load import BUNDLED_DIR, load_scenario, scenario_from_dict
from harness.model.vocabulary import ELEMENT_TIERS

REPO = Path(__file__).resolve().parent.parent


def fodo() -> dict:
    """The bundled fodo_linear scenario as a plain mapping (a fresh copy)."""
    return yaml.safe_load((BUNDLED_DIR / "fodo_linear.yaml").read_text())


def facility_entry(data: dict, name: str) -> dict:
    """The raw fields of the facility entry ``name`` of a scenario mapping."""
    for entry in data["lattice"]["PALS"]["facility"]:
        if name in entry:
            return entry[name]
    raise KeyError(name)


def write(tmp_path: Path, data: object, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _del_species(d):
    del d["beam"]["species"]


def _del_beta_x(d):
    del d["beam"]["twiss"]["beta_x"]


def _str_beta_x(d):
    d["beam"]["twiss"]["beta_x"] = "large"


def _str_particles(d):
    d["beam"]["particles"] = "many"


def _typo_kn1(d):
    facility_entry(d, "quad1")["MagneticMultipoleP"] = {"Kn1x": 1.0}


def _kn1_at_top(d):
    quad = facility_entry(d, "quad1")
    quad["Kn1"] = quad.pop("MagneticMultipoleP")["Kn1"]


def _str_kn1(d):
    facility_entry(d, "quad1")["MagneticMultipoleP"] = {"Kn1": "strong"}


def _quad_without_kn1(d):
    facility_entry(d, "quad1")["MagneticMultipoleP"] = {"Kn2": 1.0}


def _negative_length(d):
    facility_entry(d, "drift1")["length"] = -0.25


def _bad_tier(d):
    d["model"] = "fast"


def _bad_override_tier(d):
    d["overrides"] = {"quad1": {"model": "symplectic"}}


def _override_unknown_element(d):
    d["overrides"] = {"quadX": {"model": "exact"}}


def _twiss_and_rms(d):
    d["beam"]["rms"] = {k: 1e-3 for k in ("sigma_x", "sigma_px", "sigma_y", "sigma_py",
                                          "sigma_t", "sigma_pt")}


def _twiss_and_sigma_matrix(d):
    d["beam"]["sigma_matrix"] = [[1e-6 * (i == j) for j in range(6)] for i in range(6)]


def _not_positive_definite(d):
    del d["beam"]["twiss"]
    del d["beam"]["longitudinal"]
    d["beam"]["sigma_matrix"] = [[-1e-6 * (i == j) for j in range(6)] for i in range(6)]


def _unknown_top_field(d):
    d["space_charg"] = None


def _unknown_observable(d):
    d["observables"] = ["sigma_x", "sigma_q"]


def _bad_gradient_parameter(d):
    d["gradients"]["parameters"] = ["quad1.Kn2"]


def _undefined_line_entry(d):
    facility_entry(d, "fodo_cell")["line"].append("quad9")


def _bad_species(d):
    d["beam"]["species"] = "tachyon"


def _negative_energy(d):
    d["beam"]["kinetic_energy_MeV"] = -1.0


#: mutation -> (field path the message must name, words of what was expected)
CASES: dict[str, tuple[Callable[[dict], None], str, str]] = {
    "missing beam field": (_del_species, "beam.species", "required field"),
    "missing twiss field": (_del_beta_x, "beam.twiss.beta_x", "required field"),
    "wrong type (number)": (_str_beta_x, "beam.twiss.beta_x", "valid number"),
    "wrong type (integer)": (_str_particles, "beam.particles", "valid integer"),
    "typo in multipole field": (_typo_kn1, "lattice.quad1.MagneticMultipoleP.Kn1x",
                                "a multipole name KnN"),
    "field outside its group": (_kn1_at_top, "lattice.quad1.Kn1", "MagneticMultipoleP"),
    "wrong type (multipole)": (_str_kn1, "lattice.quad1.MagneticMultipoleP.Kn1", "a number"),
    "quadrupole without Kn1": (_quad_without_kn1, "lattice.quad1.MagneticMultipoleP.Kn1",
                               "Kn1 [1/m^2]"),
    "negative length": (_negative_length, "lattice.drift1.length",
                        "greater than or equal to 0"),
    "unknown model tier": (_bad_tier, "model", "'linear', 'paraxial' or 'exact'"),
    "unknown override tier": (_bad_override_tier, "overrides.quad1.model",
                              "'linear', 'paraxial' or 'exact'"),
    "override of a missing element": (_override_unknown_element, "overrides.quadX",
                                      "name of an element"),
    "twiss and rms": (_twiss_and_rms, "beam", "exactly one of 'twiss'"),
    "twiss and sigma matrix": (_twiss_and_sigma_matrix, "beam", "exactly one of 'twiss'"),
    "sigma matrix not positive definite": (_not_positive_definite, "beam.sigma_matrix",
                                           "positive-definite"),
    "unknown top-level field": (_unknown_top_field, "space_charg", "no such field"),
    "unknown observable": (_unknown_observable, "observables", "sigma_q"),
    "unknown gradient parameter": (_bad_gradient_parameter, "gradients.parameters[0]",
                                   "a field of quad1 (Quadrupole): ['Kn1', 'length']"),
    "undefined beamline entry": (_undefined_line_entry, "lattice.fodo_cell.line[5]",
                                 "name of an element defined"),
    "unknown species": (_bad_species, "beam.species", "electron"),
    "negative energy": (_negative_energy, "beam.kinetic_energy_MeV",
                        "greater than or equal to 1e-06"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_scenario_names_file_field_and_expectation(case: str, tmp_path: Path) -> None:
    mutate, field, expected = CASES[case]
    data = fodo()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    error = info.value
    message = str(error)
    assert error.field == field, message
    assert message.startswith(f"{path}: {field}: expected "), message
    assert expected in message, message
    assert "\n" not in message


def test_unknown_kind_names_the_kind_and_the_supported_kinds(tmp_path: Path) -> None:
    data = fodo()
    facility_entry(data, "quad1")["kind"] = "Quadrupol"
    path = write(tmp_path, data)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert info.value.field == "lattice.quad1.kind"
    assert "'Quadrupol'" in message
    for kind in ELEMENT_TIERS:   # the extension kinds by their ImpactX class
        assert kind.removeprefix("ImpactX.") in message


def test_untranslated_pals_kind_names_backends_supporting_it(tmp_path: Path) -> None:
    from backends.registry import backends_supporting_kind

    data = fodo()
    facility_entry(data, "quad1")["kind"] = "Wiggler"
    path = write(tmp_path, data)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: lattice.quad1.kind: expected ")
    assert "'Wiggler' is supported by:" in message
    for backend in backends_supporting_kind("Wiggler"):
        assert backend in message
    for kind in ELEMENT_TIERS:   # a PALS kind: the PALS kinds are listed
        if not kind.startswith("ImpactX."):
            assert kind in message


def test_unsafe_yaml_tag_is_rejected_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "unsafe.yaml"
    path.write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.field == "<yaml>"
    assert str(info.value).startswith(f"{path}: <yaml>: expected valid YAML")
    assert not marker.exists()


@pytest.mark.parametrize("content", ["", "- just\n- a list\n", "name: [unclosed\n"])
def test_not_a_scenario_mapping(content: str, tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(content)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}: ")


def test_missing_file_lists_bundled_names(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "nowhere.yaml")
    assert "fodo_linear" in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    with pytest.raises(ScenarioError) as info:
        load_scenario(folder)
    assert info.value.field == "<file>"


# -- a PALS lattice written for ImpactX --------------------------------------------------

#: ImpactX examples/pals/fodo.pals.yaml (26.10), used when the wheel is not installed.
IMPACTX_FODO_PALS = """
PALS:
  version: null
  facility:
    - fodo_cell:
        kind: BeamLine
        line:
          - drift1: {kind: Drift, length: 0.25}
          - quad1: {MagneticMultipoleP: {Kn1: 1.0}, kind: Quadrupole, length: 1.0}
          - drift2: {kind: Drift, length: 0.5}
          - quad2: {MagneticMultipoleP: {Kn1: -1.0}, kind: Quadrupole, length: 1.0}
          - drift3: {kind: Drift, length: 0.25}
    - fodo_lattice:
        kind: Lattice
        branches:
          - fodo_cell
    - use: fodo_lattice
"""


def impactx_fodo_pals() -> dict:
    """The PALS FODO file shipped with ImpactX (found without importing impactx)."""
    spec = importlib.util.find_spec("impactx")
    for location in (spec.submodule_search_locations or []) if spec else []:
        shipped = Path(location) / "examples" / "pals" / "fodo.pals.yaml"
        if shipped.exists():
            return yaml.safe_load(shipped.read_text())
    return yaml.safe_load(IMPACTX_FODO_PALS)


def test_impactx_pals_file_is_accepted_as_the_lattice(tmp_path: Path) -> None:
    data = fodo()
    data["lattice"] = impactx_fodo_pals()
    path = write(tmp_path, data, "impactx_fodo.yaml")
    scenario = load_scenario(path)
    bundled = load_scenario("fodo_linear")
    assert [(e.name, e.kind, e.params) for e in scenario.elements] == [
        (e.name, e.kind, e.params) for e in bundled.elements]
    assert scenario.length == pytest.approx(3.0, abs=1e-15)


# -- trackbench validate ------------------------------------------------------------------


def good_and_bad(tmp_path: Path) -> tuple[Path, Path]:
    good = write(tmp_path, fodo(), "good.yaml")
    data = fodo()
    _typo_kn1(data)
    return good, write(tmp_path, data, "bad.yaml")


def test_validate_reports_ok_and_errors(tmp_path: Path) -> None:
    good, bad = good_and_bad(tmp_path)
    result = CliRunner().invoke(app, ["validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert f"OK {good}" in result.stdout
    assert f"OK {bad}" not in result.output
    assert f"{bad}: lattice.quad1.MagneticMultipoleP.Kn1x: expected" in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_validate_passes_every_bundled_scenario() -> None:
    files = sorted(str(p) for p in BUNDLED_DIR.glob("*.yaml"))
    result = CliRunner().invoke(app, ["validate", *files])
    assert result.exit_code == 0, result.output
    for file in files:
        assert f"OK {file}" in result.stdout


def test_validate_console_script_has_no_traceback(tmp_path: Path) -> None:
    good, bad = good_and_bad(tmp_path)
    script = Path(sys.executable).parent / "trackbench"
    command = [str(script)] if script.exists() else [
        sys.executable, "-c", "from harness.cli import main; main()"]
    done = subprocess.run([*command, "validate", str(good), str(bad)], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert done.returncode != 0
    assert f"OK {good}" in done.stdout
    assert f"{bad}: lattice.quad1.MagneticMultipoleP.Kn1x: expected" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr



# -- any junk value anywhere: a ScenarioError or a valid scenario, never another exception --

JUNK = (None, "text", -1, [], {}, True, [1, 2], {"a": 1})


def leaf_paths(obj, path=()):
    """Paths to every value of a nested mapping/list (containers included)."""
    children = obj.items() if isinstance(obj, dict) else (
        enumerate(obj) if isinstance(obj, list) else ())
    for key, value in children:
        yield path + (key,)
        yield from leaf_paths(value, path + (key,))


@pytest.mark.parametrize("name", ["fodo_linear", "chicane"])
def test_junk_anywhere_gives_a_scenario_error(name: str) -> None:
    base = yaml.safe_load((BUNDLED_DIR / f"{name}.yaml").read_text())
    unexpected = []
    for path in leaf_paths(base):
        for junk in JUNK:
            data = copy.deepcopy(base)
            target = data
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = copy.deepcopy(junk)
            try:
                scenario_from_dict(data, "junk.yaml")
            except ScenarioError:
                pass
            except Exception as error:  # noqa: BLE001 - collecting what should not happen
                unexpected.append((path, junk, repr(error)))
    assert not unexpected, unexpected[:5]


# -- beam input: species, ions; lattice by file; periods ----------------------------------

DATA = REPO / "tests" / "data"


@pytest.mark.parametrize(("given", "canonical"), [
    ("Electron", "electron"), ("POSITRON", "positron"), ("proton", "proton"),
    ("hminus", "Hminus"), ("Muon", "muon"), ("antimuon", "antimuon")])
def test_species_by_name_case_insensitive(given: str, canonical: str) -> None:
    from harness.model.reference_particle import SPECIES

    data = fodo()
    data["beam"]["species"] = given
    scenario = scenario_from_dict(data)
    assert scenario.beam.species == canonical
    reference = scenario.reference_particle
    assert (reference.mass_eV, reference.charge_qe) == SPECIES[canonical]


def test_muon_rest_energy_is_codata() -> None:
    from harness.model.reference_particle import SPECIES

    assert SPECIES["muon"] == (105.6583755e6, -1.0)  # CODATA 2018, m_mu c^2 [eV]


def test_ion_by_charge_and_mass() -> None:
    data = fodo()
    data["beam"].update(species="Ion", charge_qe=6, mass_MeV=11177.9292)  # 12C6+
    reference = scenario_from_dict(data).reference_particle
    assert reference.mass_eV == pytest.approx(11177.9292e6, rel=1e-15)
    assert reference.charge_qe == 6.0
    gamma = 1.0 + 2000.0 / 11177.9292
    assert reference.gamma == pytest.approx(gamma, rel=1e-15)
    # B rho = p / q: six charges at the same momentum need a sixth of the field
    p0c = 11177.9292e6 * math.sqrt(gamma**2 - 1.0)
    assert reference.rigidity_Tm == pytest.approx(p0c / 299_792_458.0 / 6.0, rel=1e-14)


def test_impactx_fodo_pals_file_is_the_committed_copy() -> None:
    spec = importlib.util.find_spec("impactx")
    for location in (spec.submodule_search_locations or []) if spec else []:
        shipped = Path(location) / "examples" / "pals" / "fodo.pals.yaml"
        if shipped.exists():
            assert shipped.read_bytes() == (DATA / "fodo.pals.yaml").read_bytes()
            return
    pytest.skip("ImpactX's examples are not installed")


def test_lattice_by_reference_to_impactx_pals_file(tmp_path: Path) -> None:
    data = fodo()
    data["lattice"] = "fodo.pals.yaml"
    path = write(tmp_path, data, "by_file.yaml")
    (tmp_path / "fodo.pals.yaml").write_bytes((DATA / "fodo.pals.yaml").read_bytes())
    scenario = load_scenario(path)
    bundled = load_scenario("fodo_linear")
    assert [(e.name, e.kind, e.params) for e in scenario.elements] == [
        (e.name, e.kind, e.params) for e in bundled.elements]
    assert scenario.lattice_file == str(tmp_path / "fodo.pals.yaml")


def test_lattice_file_errors_name_both_files(tmp_path: Path) -> None:
    data = fodo()
    data["lattice"] = "cell.pals.yaml"
    path = write(tmp_path, data, "by_file.yaml")
    pals = impactx_fodo_pals()
    pals["PALS"]["facility"][0]["fodo_cell"]["line"][0]["drift1"]["length"] = -1.0
    (tmp_path / "cell.pals.yaml").write_text(yaml.safe_dump(pals))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path} (lattice {tmp_path / 'cell.pals.yaml'}): lattice.")
    assert "length" in message and "-1.0" in message


def test_periods_repeat_the_line_and_every_backend_sees_it() -> None:
    """periods: N is the line written out N times: the element list, the length and the
    in-house track (which reads the same element list as every backend)."""
    from backends.inhouse.tracker import Tracker
    from harness.model.particles import generate

    data = fodo()
    data["periods"] = 3
    repeated = scenario_from_dict(data)
    written = fodo()
    facility = written["lattice"]["PALS"]["facility"]
    facility.insert(-1, {"three": {"kind": "BeamLine", "line": ["fodo_cell"] * 3}})
    facility[-1] = {"use": "three"}
    spelled_out = scenario_from_dict(written)
    assert repeated.elements == spelled_out.elements
    assert repeated.length == pytest.approx(9.0, abs=1e-14)
    import torch

    initial = torch.as_tensor(generate(repeated.beam, 200))
    final = [Tracker(s.elements, s.reference_particle).track(initial.clone())[0].numpy()
             for s in (repeated, spelled_out)]
    np.testing.assert_array_equal(final[0], final[1])
    assert not np.allclose(final[0], initial.numpy())


def test_validated_scenario_travels_without_reparsing() -> None:
    from harness.model.load import scenario_from_bytes, scenario_to_bytes

    scenario = load_scenario("fodo_linear")
    copy_ = scenario_from_bytes(scenario_to_bytes(scenario))
    assert copy_ == scenario
    assert "elements" in copy_.__dict__  # the flattened lattice came along
    assert copy_.elements == scenario.elements


def test_twiss_with_cold_longitudinal_plane_and_zero_emittance_validate() -> None:
    data = fodo()
    data["beam"]["longitudinal"] = {"sigma_t": 1.0e-3, "sigma_pt": 0.0}
    data["beam"]["twiss"]["emittance_y"] = 0.0
    scenario = scenario_from_dict(data)
    assert scenario.beam.longitudinal.sigma_pt == 0.0


# -- the YAML loader reads what yaml.safe_load reads (plus the YAML 1.2 floats) -----------

VALID_YAML = """
a: [1, -2, 0x1f, 1_000, 2.5, 1.0e-9, 1e-9, .inf, -.nan, null, ~, true, False, on, 'on', "x"]
when: 2026-12-02
anchor: &base {x: 1, y: [1, 2]}
copy: *base
merged: {<<: *base, y: 3}
two_merged: {<<: [{p: 1}, {p: 2, q: 2}], r: 3}
text: |
  two
  lines
? long key
: value
"""


def test_loader_reads_what_safe_load_reads() -> None:
    from harness.model.yaml_load import load_yaml_file, load_yaml_text

    expected = yaml.safe_load(VALID_YAML)
    assert expected["a"][6] == "1e-9"  # YAML 1.1 reads it as text; YAML 1.2 as a float
    expected["a"][6] = 1e-9
    got = load_yaml_text(VALID_YAML)
    assert repr(got) == repr(expected)  # repr: nan != nan
    assert got["copy"] is got["anchor"]  # aliases share, as in PyYAML
    for path in sorted(BUNDLED_DIR.glob("*.yaml")):
        assert load_yaml_file(path) == yaml.safe_load(path.read_text())


@pytest.mark.parametrize("text, value", [
    ("1e0", 1.0), ("2E-3", 2e-3), ("1e+05", 1e5), (".5e1", 5.0), ("-3e2", -300.0),
    ("+1E1", 10.0), ("7e-0", 7.0), ("1.e3", 1000.0)])
def test_yaml_12_float_forms_are_floats(text: str, value: float) -> None:
    from harness.model.yaml_load import load_yaml_text

    got = load_yaml_text(f"x: {text}\ny: [{text}]\nq: '{text}'\n")
    assert got["x"] == value and type(got["x"]) is float
    assert got["y"] == [value]
    assert got["q"] == text  # a quoted number stays text
    assert yaml.safe_load("x: 1e0")["x"] == "1e0"  # PyYAML's own loaders unchanged


def test_kn1_written_1e0_validates_as_the_number_one() -> None:
    """``Kn1: 1e0`` was refused as "not a number" (YAML 1.1 text) while 2e3 passed."""
    text = (BUNDLED_DIR / "fodo_linear.yaml").read_text().replace("Kn1: 1.0}", "Kn1: 1e0}")
    assert "Kn1: 1e0}" in text
    from harness.model.yaml_load import load_yaml_text

    scenario = scenario_from_dict(load_yaml_text(text), "fodo_1e0.yaml")
    assert scenario.elements[1].params["Kn1"] == 1.0


def test_error_values_are_abbreviated_in_bounded_time() -> None:
    import time

    from harness.model.errors import MAX_VALUE_CHARS

    level = ["lol"] * 9
    for _ in range(12):  # 9**12 leaves when expanded; shared, as an alias bomb builds it
        level = [level] * 9
    start = time.perf_counter()
    message = str(ScenarioError("f.yaml", "beam.species", "a name", level))
    assert time.perf_counter() - start < 0.1
    assert len(message) < len("f.yaml: beam.species: expected a name (got )") + \
        MAX_VALUE_CHARS + 1
    assert "\n" not in str(ScenarioError("f.yaml", "x", "a\nb", "line\nbreak" * 1000))


def test_shared_huge_value_in_a_dict_gives_a_short_error() -> None:
    data = fodo()
    level = ["lol"] * 9
    for _ in range(12):
        level = [level] * 9
    data["beam"]["species"] = level
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data, "bomb.yaml")
    assert info.value.field == "beam.species"
    assert len(str(info.value)) < 300
