"""``trackbench validate FILE`` says, per installed backend, what a run will do with the
scenario: runs (the model), stand-in (what runs instead) or unsupported (why)."""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

from backends.base import Supported
from harness.cli import app
from harness.model.load import BUNDLED_DIR

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

import fake_backends  # noqa: E402


class StandInBackend(fake_backends.IdentityBackend):
    """Runs a named stand-in of every scenario."""

    name = "fake-stand-in"

    def supports(self, scenario, device="cpu", dtype="float64"):
        return Supported("stand-in:drift only (no \x1b[31mquads)")


class RaisingCheckBackend(fake_backends.IdentityBackend):
    """Its support check itself fails."""

    name = "fake-raising-check"

    def supports(self, scenario, device="cpu", dtype="float64"):
        raise RuntimeError("adapter bug")


def _fakes(monkeypatch) -> None:
    import backends.registry

    fake = {"fake-identity": fake_backends.IdentityBackend,
            "fake-unsupported": fake_backends.UnsupportingBackend,
            "fake-stand-in": StandInBackend, "fake-raising-check": RaisingCheckBackend}
    monkeypatch.setattr(backends.registry, "backend_classes", lambda: fake)


def test_validate_prints_ok_then_one_line_per_installed_backend(monkeypatch) -> None:
    _fakes(monkeypatch)
    path = str(BUNDLED_DIR / "fodo_linear.yaml")
    result = CliRunner().invoke(app, ["validate", path], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"OK {path}",
        "  fake-identity: runs (linear)",
        "  fake-unsupported: unsupported (fake-unsupported runs no scenario)",
        "  fake-stand-in: stand-in (drift only (no \\x1b[31mquads))",
        "  fake-raising-check: unknown (its support check raised RuntimeError: adapter "
        "bug)"]


def test_no_backends_keeps_the_single_ok_line(monkeypatch) -> None:
    _fakes(monkeypatch)
    result = CliRunner().invoke(app, ["validate", "--no-backends", "fodo_linear"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["OK fodo_linear"]


def test_the_real_backends_say_what_they_do_with_a_bundled_scenario() -> None:
    """Each installed backend's line agrees with its own support check (pyAT, when here,
    runs fodo_linear as a named stand-in: it has no velocity slip)."""
    from backends.registry import backend_classes
    from harness.model.load import load_scenario

    result = CliRunner().invoke(app, ["validate", "fodo_linear"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "OK fodo_linear"
    scenario = load_scenario("fodo_linear")
    installed = [n for n, c in backend_classes().items() if c.availability().available]
    assert len(lines) == 1 + len(installed)
    for name, line in zip(installed, lines[1:], strict=True):
        support = backend_classes()[name]().supports(scenario)
        word = ("unsupported" if not support else "stand-in"
                if support.model.startswith("stand-in:") else "runs")
        assert line.startswith(f"  {name}: {word} ("), line
