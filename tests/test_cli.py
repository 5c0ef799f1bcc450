"""The ``trackbench`` command line: help, list, track (and its one-line errors)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

from backends.base import Backend
from backends.registry import backend_classes
from harness.cli import app
from harness.model import observables
from harness.model.load import bundled_names, load_scenario
from harness.model.particles import generate

WIDE = {"COLUMNS": "200"}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env=WIDE)


COMMANDS = sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("command", [[]] + [[name] for name in COMMANDS])
def test_help(command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert "Traceback" not in result.output


def test_no_arguments_shows_the_commands() -> None:
    result = invoke()
    for command in ("list", "validate", "track", *COMMANDS):
        assert command in result.output


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run calls the README's test command exactly, and that command runs ruff + pytest."""
    repo = Path(__file__).resolve().parent.parent
    readme_commands = [line.split("#")[0].strip() for line in
                       (repo / "README.md").read_text().splitlines()
                       if line.startswith("make ")]
    assert "make test" in readme_commands
    ci_commands = [line.strip() for line in (repo / ".ci" / "run").read_text().splitlines()
                   if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci_commands == ["make test"]
    makefile = (repo / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "ruff check ." in recipe and "-m pytest" in recipe


def test_list_shows_scenarios_and_backends() -> None:
    result = invoke("list")
    assert result.exit_code == 0, result.output
    for name in bundled_names():
        scenario = load_scenario(name)
        row = next(line for line in result.stdout.splitlines() if f" {name} " in line)
        cells = [c.strip() for c in row.split("│")[1:-1]]
        assert cells[0] == name
        assert cells[1] == "+".join(scenario.tiers)
        assert cells[3] == str(len(scenario.elements))
        assert float(cells[4]) == pytest.approx(scenario.length, rel=1e-5)
    assert "length [m]" in result.stdout
    backend_table = result.stdout.split("Backends", 1)[1].splitlines()
    for name, cls in backend_classes().items():
        row = next(line for line in backend_table if f" {name} " in line)
        availability = cls.availability()
        assert ("yes" if availability.available else "no") in row
        if availability.version:
            assert availability.version in row


def test_list_narrow_terminal_keeps_scenario_names_whole() -> None:
    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    for name in bundled_names():
        assert name in result.stdout


class MissingPackageBackend(Backend):
    """A backend whose distribution is not installed."""

    name = "not-installed"
    distribution = "trackbench-no-such-distribution"
    install_hint = "pip install trackbench-no-such-distribution"

    @classmethod
    def _import(cls) -> None:
        raise ImportError("never imported")

    def prepare(self, scenario, device="cpu", dtype="float64"):
        raise AssertionError("an unavailable backend is never prepared")


class BrokenImportBackend(MissingPackageBackend):
    """Installed (its distribution exists) but the import fails."""

    name = "broken-import"
    distribution = "numpy"


def test_list_shows_unavailable_backends_with_hint(monkeypatch) -> None:
    import backends.registry

    fake = {**backend_classes(), "not-installed": MissingPackageBackend,
            "broken-import": BrokenImportBackend}
    monkeypatch.setattr(backends.registry, "backend_classes", lambda: fake)
    result = invoke("list")
    assert result.exit_code == 0, result.output
    backend_table = result.stdout.split("Backends", 1)[1].splitlines()
    row = next(line for line in backend_table if " not-installed " in line)
    assert " no " in row and "pip install trackbench-no-such-distribution" in row
    row = next(line for line in backend_table if " broken-import " in line)
    assert " no " in row and "never imported" in row


def available_backends_for_fodo() -> list[str]:
    scenario = load_scenario("fodo_linear")
    return [name for name, cls in backend_classes().items()
            if cls.availability().available and cls().supports(scenario)]


def table_values(output: str) -> dict[str, tuple[float, float]]:
    """observable -> (initial, final) from the table `track` prints."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 3 and re.fullmatch(r"-?\d\.\d+e[+-]\d+", cells[1]):
            rows[cells[0]] = (float(cells[1]), float(cells[2]))
    return rows


def fodo_linear_map() -> np.ndarray:
    """4x4 transverse matrix of the FODO cell: drift 0.25, quad k=+1 (1 m), drift 0.5,
    quad k=-1 (1 m), drift 0.25 (thick-lens matrices, Wolski eqs. 3.36-3.38)."""
    def drift(length):
        return np.array([[1.0, length], [0.0, 1.0]])

    def quad(k, length):
        s = math.sqrt(abs(k))
        if k > 0:
            return np.array([[math.cos(s * length), math.sin(s * length) / s],
                             [-s * math.sin(s * length), math.cos(s * length)]])
        return np.array([[math.cosh(s * length), math.sinh(s * length) / s],
                         [s * math.sinh(s * length), math.cosh(s * length)]])

    def plane(sign):
        m = np.eye(2)
        for element in (drift(0.25), quad(sign, 1.0), drift(0.5), quad(-sign, 1.0),
                        drift(0.25)):
            m = element @ m
        return m

    full = np.zeros((4, 4))
    full[:2, :2], full[2:, 2:] = plane(+1.0), plane(-1.0)
    return full


def test_track_fodo_linear_agrees_with_the_transfer_matrix() -> None:
    names = available_backends_for_fodo()
    if not names:
        pytest.skip("no backend is available here to track fodo_linear")
    backend = "inhouse" if "inhouse" in names else names[0]
    result = invoke("track", "fodo_linear", "--backend", backend, "--particles", "1000")
    assert result.exit_code == 0, result.output
    assert f"fodo_linear | {backend}" in result.stdout
    assert "N=1000" in result.stdout
    values = table_values(result.stdout)
    scenario = load_scenario("fodo_linear")
    assert set(values) == set(scenario.observables)
    initial = generate(scenario.beam, 1000)
    final = initial.copy()
    final[:, :4] = initial[:, :4] @ fodo_linear_map().T
    expected = observables.compute(final, ["sigma_x", "sigma_y", "sigma_px", "sigma_py",
                                           "emittance_x", "emittance_y"])
    for name, value in expected.items():
        assert values[name][1] == pytest.approx(value, rel=1e-9), name


def test_track_unknown_backend_is_one_line() -> None:
    result = invoke("track", "fodo_linear", "--backend", "nosuch")
    assert result.exit_code == 2
    assert "unknown backend 'nosuch'; known:" in result.stderr
    assert "Traceback" not in result.output
    assert result.stderr.count("\n") == 1


def test_track_bad_scenario_is_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\n")
    result = invoke("track", str(bad))
    assert result.exit_code == 2
    assert f"{bad}: beam: expected this required field" in result.stderr
    assert "Traceback" not in result.output


def test_track_reads_a_particle_file_beside_the_scenario(tmp_path) -> None:
    """A relative ``beam.file`` is found next to the scenario, whatever the working directory."""
    import yaml

    from harness.model.load import BUNDLED_DIR

    names = available_backends_for_fodo()
    if not names:
        pytest.skip("no backend is available here to track fodo_linear")
    backend = "inhouse" if "inhouse" in names else names[0]
    initial = generate(load_scenario("fodo_linear").beam, 200)
    np.savez(tmp_path / "beam.npz", particles=initial)
    data = yaml.safe_load((BUNDLED_DIR / "fodo_linear.yaml").read_text())
    data["beam"] = {"species": "electron", "kinetic_energy_MeV": 2000.0,
                    "distribution": "file", "file": "beam.npz", "particles": 200}
    data["gradients"] = None
    scenario = tmp_path / "from_file.yaml"
    scenario.write_text(yaml.safe_dump(data))
    result = invoke("track", str(scenario), "--backend", backend, "--particles", "200")
    assert result.exit_code == 0, result.output
    final = initial.copy()
    final[:, :4] = initial[:, :4] @ fodo_linear_map().T
    expected = observables.compute(final, ["sigma_x"])["sigma_x"]
    assert table_values(result.stdout)["sigma_x"][1] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("command", "option", "value"), [
    ("run", "--threads", "0"), ("run", "--threads", "two"), ("grad", "--threads", "1,x"),
    ("run", "--device", "tpu"), ("grad", "--dtype", "float16"),
    ("run", "--particles", "1e4,lots")])
def test_run_and_grad_reject_bad_matrix_options(command, option, value, tmp_path) -> None:
    out = tmp_path / "run"
    result = invoke(command, "fodo_linear", option, value, "--out", str(out))
    assert result.exit_code == 2
    assert option in result.stderr and repr(value.split(",")[-1]) in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_thread_counts_accept_all_and_numbers() -> None:
    from harness.cli.common import thread_count_list as _thread_counts

    assert _thread_counts(None) == [None]
    assert _thread_counts("all,1") == [None, 1]
    assert _thread_counts("2, 1") == [2, 1]


def test_smallest_particle_count_is_each_scenarios_own() -> None:
    """``--particles smallest`` runs every scenario at the smallest of its own counts (the
    analytic expanding beam keeps its 1e5, a scenario naming none gets the default 1e4)."""
    from harness.cases import SMALLEST, plan
    from harness.model.load import load_scenario

    scenarios = [load_scenario("expanding_beam"), load_scenario("fodo_linear")]
    cases = plan(scenarios, ["inhouse"], SMALLEST, ["cpu"], ["float64"], 1, ["inhouse"])
    counts = {(c.scenario, c.particles) for c in cases}
    assert counts == {("expanding_beam", 100_000), ("fodo_linear", 10_000)}
