"""Reading a scenario: a file (or a parsed mapping) in, a validated
:class:`~harness.model.scenario.Scenario` out.

Beyond the schema of :mod:`harness.model.scenario`, loading reads a ``lattice: <path>``
PALS file, makes a relative ``beam.file`` absolute and opens it (so ``validate`` sees its
particles), resolves the gradient parameters and checks the tuning block. Bundled scenarios
are found by name in ``lattices/``. Every failure is one
:class:`~harness.model.errors.ScenarioError` naming the file, the field and what was expected.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pydantic

from harness.model.errors import ScenarioError
from harness.model.kinds import SPECS
from harness.model.observables import observable_names
from harness.model.parameters import resolve_parameter
from harness.model.particles import load_particle_file
from harness.model.scenario import Beam, Scenario, _origin
from harness.model.spin import SPIN_OBSERVABLES, read_spin_file
from harness.model.tuning_problems import check_tuning
from harness.model.yaml_load import load_yaml_file

#: Where the bundled scenarios live.
BUNDLED_DIR = Path(__file__).resolve().parent.parent.parent / "lattices"


#: pydantic's range errors: the words and the key of the bound in the error's context.
_COMPARISONS = {"less_than_equal": ("less than or equal to", "le"),
                "less_than": ("less than", "lt"),
                "greater_than_equal": ("greater than or equal to", "ge"),
                "greater_than": ("greater than", "gt")}


def _error_from_pydantic(error: pydantic.ValidationError, file) -> ScenarioError:
    errors = error.errors()
    # a misspelt field gives "missing X" and "no such field x": the second says more
    first = next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0])
    loc = ""
    for part in first.get("loc", ()):
        if part in ("function-after",):
            continue
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    msg = first.get("msg", "a valid value").removeprefix("Value error, ")
    msg = msg.removeprefix("Input should be ")
    limit = _COMPARISONS.get(str(first.get("type")))
    if limit is not None:  # pydantic writes 1e100 with all its digits
        words, key = limit
        msg = f"{words} {float(first.get('ctx', {}).get(key, math.nan)):g}"
    if first.get("type") == "extra_forbidden":
        msg = "no such field (check the spelling)"
    if first.get("type") == "missing":
        msg = "this required field"
    got = first.get("input")
    if first.get("type") in ("missing", "model_type") or isinstance(got, dict):
        got = None  # a whole group is not worth echoing; the message says what is wrong
    return ScenarioError(file, loc or "<root>", msg, got)


def scenario_from_dict(data: object, file: str | Path | None = None) -> Scenario:
    """Validate a scenario mapping (already parsed YAML).

    ``lattice`` may be the PALS document itself or the path of a PALS YAML file (relative
    to the scenario file), read with the checks of :mod:`harness.model.yaml_load`.
    """
    if not isinstance(data, dict):
        raise ScenarioError(file, "<root>", "a mapping with name, beam, model, lattice, ...",
                            type(data).__name__)
    for key in data:
        if not isinstance(key, str):
            raise ScenarioError(file, "<root>", "field names that are strings (name, beam, "
                                "model, lattice, ...)", key)
    if "source_file" in data or "lattice_file" in data:
        key = "source_file" if "source_file" in data else "lattice_file"
        raise ScenarioError(file, key, "no such field (check the spelling)", key)
    data, lattice_file = _with_lattice_file(data, file)
    data = _with_absolute_beam_file(data, file)
    data = _with_absolute_spin_file(data, file)
    try:
        scenario = Scenario(**data, source_file=str(file) if file else None,
                            lattice_file=lattice_file)
    except pydantic.ValidationError as error:
        raise _error_from_pydantic(error, file) from None
    _ = scenario.elements  # validates the lattice
    _check_space_charge(scenario, file)
    _check_gradients(scenario, file)
    check_tuning(scenario, file)
    _check_particle_file(scenario.beam, file)
    _check_linear_probes(scenario, file)
    _check_spin_file(scenario.beam, file)
    _check_spin_observables(scenario, file)
    return scenario


def _with_absolute_beam_file(data: dict, file) -> dict:
    """``data`` with a relative ``beam.file`` made absolute: relative to the scenario file's
    folder (to the working directory without a file). The case processes run in the run
    directory, so the path must not depend on where they run."""
    beam = data.get("beam")
    if not isinstance(beam, dict) or not isinstance(beam.get("file"), str) or not beam["file"]:
        return data
    path = Path(beam["file"])
    if not path.is_absolute() and file is not None:
        path = Path(file).parent / path
    return {**data, "beam": {**beam, "file": os.path.abspath(path)}}


def _with_absolute_spin_file(data: dict, file) -> dict:
    """``data`` with a relative ``beam.spin.file`` made absolute (as ``beam.file``)."""
    beam = data.get("beam")
    spin = beam.get("spin") if isinstance(beam, dict) else None
    if not isinstance(spin, dict) or not isinstance(spin.get("file"), str) or not spin["file"]:
        return data
    path = Path(spin["file"])
    if not path.is_absolute() and file is not None:
        path = Path(file).parent / path
    assert isinstance(beam, dict)
    return {**data, "beam": {**beam, "spin": {**spin, "file": os.path.abspath(path)}}}


def _check_spin_observables(scenario: Scenario, file) -> None:
    """Spin observables only with a ``beam.spin`` block (the particles carry no spins
    otherwise)."""
    if scenario.beam.spin is not None:
        return
    for index, name in enumerate(scenario.observables):
        if name in SPIN_OBSERVABLES:
            raise ScenarioError(file, f"observables[{index}]", "a 'beam.spin' block (initial "
                                "spins) for a spin observable", name)


def _check_spin_file(beam: Beam, file) -> None:
    """A spin file holds at least one spin (|s| <= 1) per particle of the beam
    (:func:`harness.model.spin.read_spin_file`, read here so ``validate`` sees it)."""
    if beam.spin is None or beam.spin.file is None:
        return
    path = Path(beam.spin.file)
    if not path.exists():
        raise ScenarioError(file, "beam.spin.file", "an existing .npy or .csv file of (N, 3) "
                            "spins (|s| <= 1) (a relative path is relative to the scenario file)",
                            beam.spin.file)
    try:
        spins = read_spin_file(path)
    except ScenarioError as error:
        raise ScenarioError(file, "beam.spin.file", f"{error.expected} in {path}",
                            error.got) from None
    if beam.particles > len(spins):
        raise ScenarioError(file, "beam.spin.file", f"at least one spin per particle "
                            f"(beam.particles = {beam.particles})", f"{len(spins)} rows")


def _with_lattice_file(data: dict, file) -> tuple[dict, str | None]:
    """``data`` with a ``lattice: <path>`` replaced by the PALS document read from it."""
    reference = data.get("lattice")
    if not isinstance(reference, str):
        return data, None
    path = Path(reference)
    if not path.is_absolute() and file is not None:
        path = Path(file).parent / path
    if not path.name.endswith((".yaml", ".yml")) or not path.is_file():
        raise ScenarioError(file, "lattice", "a PALS document {PALS: ...} or the path of an "
                            "existing PALS .yaml file (relative to the scenario file)",
                            reference)
    try:
        document = load_yaml_file(path)
    except ScenarioError as error:
        raise ScenarioError(_origin(file, str(path)), error.field, error.expected,
                            error.got) from None
    return {**data, "lattice": document}, str(path)


def _check_particle_file(beam: Beam, file) -> None:
    """A ``file`` beam names a readable particle file whose particles pass the checks of
    :func:`harness.model.particles.load_particle_file` (read here, so ``validate`` sees them)."""
    if beam.distribution != "file":
        return
    path = Path(beam.file or "")
    if path.suffix not in (".npz", ".csv", ".h5", ".hdf5") or not path.exists():
        raise ScenarioError(file, "beam.file", "an existing .npz, .csv or openPMD .h5 file "
                            "(a relative path is relative to the scenario file)", beam.file)
    try:
        particles = load_particle_file(path, beam.reference, beam.linear_probes)
    except ScenarioError as error:
        raise ScenarioError(file, "beam.file", f"{error.expected} in {path}",
                            error.got) from None
    if beam.particles > len(particles):
        raise ScenarioError(file, "beam.particles", f"at most the {len(particles)} "
                            f"particles of {path.name}", beam.particles)


def _check_linear_probes(scenario: Scenario, file) -> None:
    """Probe particles (``beam.linear_probes``: unit vectors, pt = 1 and the like, energies
    no particle has) cross only maps that are affine in the six coordinates for any pt:
    every element of a kind whose :attr:`~harness.model.kinds.KindSpec.linear_map` is set,
    run at the linear tier (ImpactX ``Drift.H``, ``Quad.H``, ``Sbend.H``, ``Sol.H``,
    ``SoftSol.H``, ...: pt enters their matrices linearly, no square root of the particle
    energy is taken); no space charge (it takes the beam's physical charge density). Any
    other element is refused by name."""
    if not scenario.beam.linear_probes:
        return
    if scenario.space_charge is not None:
        raise ScenarioError(file, "beam.linear_probes", "no space charge (probe particles "
                            "are no beam)", "space_charge")
    for element in scenario.elements:
        if not SPECS[element.kind].linear_map or element.tier != "linear":
            raise ScenarioError(file, "beam.linear_probes", "a lattice of linear maps only "
                                f"(Drift, Quadrupole, SBend, Solenoid, ... at model "
                                f"'linear'): element {element.name!r} ({element.kind}, model "
                                f"{element.tier}) takes the particle's energy, which a probe "
                                "particle does not have", element.name)


def _check_space_charge(scenario: Scenario, file) -> None:
    """What the space-charge block asks of the rest of the scenario: the beam current for kind
    2d (and only there), and slices that are the space-charge kicks.

    Under space charge every element with a length is cut into
    ``space_charge.kicks_per_element`` slices, one kick each (ImpactX's ``nslice`` is the
    number of kicks; the in-house tracker slices the same way), so a different ``nslice``
    (``integrator.nslice`` or an override's) could not be honoured: it is refused by name."""
    sc = scenario.space_charge
    beam = scenario.beam
    envelope_2d = (scenario.envelope_space_charge is not None
                   and scenario.envelope_space_charge.kind == "2d")
    if (sc is None or sc.kind != "2d") and not envelope_2d:
        if beam.current_A is not None:
            raise ScenarioError(file, "beam.current_A", "only with space_charge or "
                                "envelope_space_charge kind 2d (a coasting beam; the other "
                                "kinds take bunch_charge_C)",
                                beam.current_A)
    else:
        if beam.current_A is None:
            raise ScenarioError(file, "beam.current_A", "the beam current [A] for "
                                "space_charge kind 2d (a coasting beam)")
        if beam.bunch_charge_C != 0.0:
            raise ScenarioError(file, "beam.bunch_charge_C", "none with space_charge kind 2d "
                                "(its intensity is beam.current_A)", beam.bunch_charge_C)
    if sc is None:
        return
    kicks = sc.kicks_per_element
    stated = "nslice" in scenario.integrator.model_fields_set
    if stated and scenario.integrator.nslice != kicks:
        raise ScenarioError(file, "integrator.nslice", f"{kicks} (space_charge."
                            f"kicks_per_element) or none: under space charge each element "
                            "is cut into one slice per kick", scenario.integrator.nslice)
    for name, override in scenario.overrides.items():
        if override.nslice is not None and override.nslice != kicks:
            raise ScenarioError(file, f"overrides.{name}.nslice", f"{kicks} (space_charge."
                                "kicks_per_element) or none: under space charge each element "
                                "is cut into one slice per kick", override.nslice)


def _check_gradients(scenario: Scenario, file) -> None:
    if scenario.gradients is None:
        return
    for index, name in enumerate(scenario.gradients.parameters):
        try:
            resolve_parameter(scenario, name)
        except KeyError as error:
            raise ScenarioError(file, f"gradients.parameters[{index}]", str(error.args[0]),
                                name) from None
    if scenario.gradients.objective not in observable_names():
        raise ScenarioError(file, "gradients.objective", "an observable name",
                            scenario.gradients.objective)


def scenario_to_bytes(scenario: Scenario) -> bytes:
    """A validated scenario, its flattened lattice included, as bytes for another process of
    the harness (pickle: only for data the harness wrote itself, never for user files)."""
    import pickle

    _ = scenario.elements
    return pickle.dumps(scenario, protocol=pickle.HIGHEST_PROTOCOL)


def scenario_from_bytes(data: bytes) -> Scenario:
    """The scenario of :func:`scenario_to_bytes`, without parsing or validating again
    (microseconds instead of the YAML read and the PALS flattening)."""
    import pickle

    scenario = pickle.loads(data)  # noqa: S301 - written by scenario_to_bytes
    if not isinstance(scenario, Scenario):
        raise TypeError(f"not a scenario: {type(scenario).__name__}")
    return scenario


def resolve_scenario_path(name_or_path: str | Path) -> Path:
    """A path as given, or a bundled scenario name (``fodo_linear`` -> lattices/fodo_linear.yaml).
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    bundled = BUNDLED_DIR / f"{name_or_path}.yaml"
    if bundled.exists():
        return bundled
    if path.exists():
        return path
    raise ScenarioError(path, "<file>", "an existing scenario file or a bundled name: "
                        + ", ".join(bundled_names()))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load and validate a scenario file (safe YAML)."""
    path = resolve_scenario_path(name_or_path)
    return scenario_from_dict(load_yaml_file(path), path)


def bundled_names() -> list[str]:
    """Names of the bundled scenarios."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))
