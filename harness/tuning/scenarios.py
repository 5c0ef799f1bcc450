"""The bundled tuning scenarios (``lattices/tuning/``) and loading a scenario with a tuning
block."""

from __future__ import annotations

from pathlib import Path

from harness.model.errors import ScenarioError

#: Where the bundled tuning scenarios live (not part of the default ``trackbench run``).
TUNING_DIR = Path(__file__).resolve().parent.parent.parent / "lattices" / "tuning"


def tuning_names() -> list[str]:
    """Names of the bundled tuning scenarios."""
    return sorted(p.stem for p in TUNING_DIR.glob("*.yaml"))


def load_tuning_scenario(name_or_path: str):
    """A scenario with a tuning block: a bundled tuning name, a bundled name or a file;
    raises :class:`ScenarioError` (no block, bad block)."""
    from harness.model.load import load_scenario
    from harness.model.tuning_problems import check_tuning

    bundled = TUNING_DIR / f"{name_or_path}.yaml"
    scenario = load_scenario(bundled if bundled.exists() else name_or_path)
    if scenario.tuning is None:
        raise ScenarioError(scenario.source_file, "tuning", "a tuning block (parameters, "
                            "targets, tolerance); bundled tuning scenarios: "
                            + ", ".join(tuning_names()))
    check_tuning(scenario, scenario.source_file)
    return scenario
