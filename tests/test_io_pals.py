"""PALS files of other codes in, a scenario's lattice out: ImpactX's examples/pals file loads
unchanged, exports are read by pals-schema and ImpactX, import -> export -> import is the
identity."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import yaml

from backends.inhouse.transfer_map import linear_map
from harness.io.importer import import_lattice
from harness.io.model import ImportRefused
from harness.io.pals_file import export_pals, read_pals, write_pals
from harness.model.load import bundled_names, load_scenario, scenario_from_dict
from tests.io_helpers import DATA, madx_file_matrix

IMPACTX_PALS = DATA / "impactx_fodo.pals.yaml"


def test_impactx_pals_file_loads_unchanged_as_a_scenario_lattice():
    document = yaml.safe_load(IMPACTX_PALS.read_text())
    fodo = load_scenario("fodo_linear").model_dump(exclude={"source_file"})
    scenario = scenario_from_dict({**fodo, "lattice": copy.deepcopy(document)})
    assert scenario.lattice == document
    bundled = load_scenario("fodo_linear")
    assert [(e.name, e.kind, e.params) for e in scenario.elements] == \
        [(e.name, e.kind, e.params) for e in bundled.elements]


def test_impactx_pals_file_imports_unchanged():
    imported = import_lattice(IMPACTX_PALS, species="electron", energy_MeV=2000.0)
    assert imported.data["lattice"] == read_pals(IMPACTX_PALS)
    assert imported.line == "fodo_lattice"
    assert len(scenario_from_dict(imported.data).elements) == 5


def test_pals_import_needs_a_beam():
    with pytest.raises(ImportRefused, match="a PALS lattice file has no beam"):
        import_lattice(IMPACTX_PALS)


@pytest.mark.parametrize("name", bundled_names())
def test_export_of_every_bundled_scenario_is_read_by_pals_schema(name, tmp_path):
    import pals

    out = write_pals(export_pals(name), tmp_path / f"{name}.pals.yaml", name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = pals.PALSroot(**yaml.safe_load(out.read_text())["PALS"])
    assert root.facility


def test_exported_drift_quad_lattice_is_read_by_impactx(tmp_path):
    """ImpactX's PALS reader (Drift and Quadrupole so far) reads the export, element by
    element the same lattice."""
    impactx = pytest.importorskip("impactx")
    import pals
    from impactx.pals_to_impactx import read_lattice

    out = write_pals(export_pals("fodo_linear"), tmp_path / "fodo.pals.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = pals.PALSroot(**yaml.safe_load(out.read_text())["PALS"])
    lattice = read_lattice(root)
    # its cheapest quadrupole tier is the paraxial ChrQuad (pals_to_impactx.py)
    assert [type(e).__name__ for e in lattice] == ["Drift", "ChrQuad", "Drift", "ChrQuad",
                                                   "Drift"]
    ours = load_scenario("fodo_linear").elements
    assert [e.ds for e in lattice] == [e.length for e in ours]
    assert [e.k for e in lattice if hasattr(e, "k")] == [1.0, -1.0]
    assert impactx is not None


@pytest.mark.parametrize("source", ["impactx_chicane.madx", "impactx_fodo.madx",
                                    "impactx_solenoid.madx"])
def test_import_export_import_is_the_same_lattice(source, tmp_path):
    first = import_lattice(DATA / source)
    scenario = scenario_from_dict(first.data)
    exported = write_pals(export_pals(scenario), tmp_path / "lattice.pals.yaml")
    beam = scenario.beam
    again = import_lattice(exported, species=beam.species,
                           energy_MeV=beam.kinetic_energy_MeV)
    assert again.data["lattice"] == first.data["lattice"]
    second = scenario_from_dict(again.data)
    assert [(e.name, e.kind, e.params) for e in second.elements] == \
        [(e.name, e.kind, e.params) for e in scenario.elements]
    assert np.max(np.abs(linear_map(second).numpy() - madx_file_matrix(DATA / source))) < 1e-10


def test_cli_import_and_export(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    runner = CliRunner()
    target = tmp_path / "chicane.yaml"
    result = runner.invoke(app, ["import", str(DATA / "impactx_chicane.madx"), "--out",
                                 str(target)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "14 elements" in result.output
    assert target.read_text().startswith("# Imported by `trackbench import`")
    assert load_scenario(target).name == "impactx_chicane"
    pals_out = tmp_path / "chicane.pals.yaml"
    result = runner.invoke(app, ["export", str(target), "--out", str(pals_out)])
    assert result.exit_code == 0, result.output
    assert read_pals(pals_out) == load_scenario(target).lattice


def test_cli_import_refusal_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["import", str(DATA / "impactx_sbbooster.madx"),
                                      "--sequence", "booster", "--out",
                                      str(tmp_path / "b.yaml")])
    assert result.exit_code == 2
    assert "SBEND x96 (K2 is not translated for bends" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "b.yaml").exists()
    bad = CliRunner().invoke(app, ["import", str(DATA / "impactx_fodo.madx"), "--species",
                                   "graviton"])
    assert bad.exit_code == 2 and "--species: expected one of" in bad.output
