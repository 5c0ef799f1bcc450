"""The bad-input corpus: every file in ``tests/bad_input/`` is refused by ``trackbench
validate`` with a non-zero exit and exactly one line that names the file and the field, no
traceback, in under 3 s.

Each corpus file starts with a comment line ``# <what it tests>; expect: <field>``; the text
after ``expect:`` must appear in the message (a dotted field path such as
``beam.twiss.beta_x``, or ``<yaml>``/``<root>``/``<file>``, or ``line L, column C`` for a
YAML syntax error). Files are named by class: ``yaml_*`` (the YAML layer),
``scenario_*`` (scenario, beam and numeric ranges), ``lattice_*`` (PALS lattice fields).

Validation runs in-process (typer's runner) for speed; the hostile files that once hung or
overflowed the stack are also run as real processes. Command-line options with bad numbers
are a table here.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app
from harness.model.load import BUNDLED_DIR

CORPUS = Path(__file__).resolve().parent / "bad_input"
REPO = CORPUS.parent.parent
FILES = sorted(CORPUS.glob("*.yaml"))
#: Seconds one file may take to be refused.
LIMIT_S = 3.0


def expectation(path: Path) -> str:
    """The field the message must name: ``expect: <field>`` on the file's first line."""
    first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace")
    match = re.search(r"expect:\s*(\S.*?)\s*$", first)
    assert first.startswith("#") and match, f"{path.name}: first line must be " \
        "'# <what it tests>; expect: <field>'"
    return match.group(1)


def validate_in_process(*args: str):
    """``trackbench validate ARGS`` in this process: (result, seconds)."""
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["validate", *args])
    return result, time.perf_counter() - start


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, lines[:5]
    return lines[0]


def test_corpus_is_large_and_every_file_has_an_expectation() -> None:
    ours = [p for p in FILES if p.name.startswith(("scenario_", "yaml_"))]
    assert len(ours) >= 45
    for path in FILES:
        assert expectation(path)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_file_gives_one_line_naming_file_and_field(path: Path) -> None:
    field = expectation(path)
    result, seconds = validate_in_process(str(path))
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout.strip() == ""
    line = one_line(result.stderr)
    assert str(path) in line, line
    assert field in line, f"{field!r} not in {line!r}"
    assert len(line) < 600, line
    assert seconds < LIMIT_S, f"{seconds:.2f} s"


def console_script() -> list[str]:
    script = Path(sys.executable).parent / "trackbench"
    return [str(script)] if script.exists() else [
        sys.executable, "-c", "from harness.cli import main; main()"]


@pytest.mark.parametrize("name", ["yaml_alias_bomb", "yaml_unclosed_brackets",
                                  "yaml_deep_nesting", "yaml_duplicate_key"])
def test_hostile_files_in_a_real_process(name: str) -> None:
    path = CORPUS / f"{name}.yaml"
    done = subprocess.run([*console_script(), "validate", str(path)], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    line = one_line(done.stderr)
    assert str(path) in line and expectation(path) in line, line


def test_valid_and_invalid_together_still_one_line_per_bad_file() -> None:
    good = str(BUNDLED_DIR / "fodo_linear.yaml")
    bad = [str(p) for p in FILES[:5]]
    result, _ = validate_in_process(good, *bad)
    assert result.exit_code == 1
    assert f"OK {good}" in result.stdout
    assert len([x for x in result.stderr.splitlines() if x.strip()]) == len(bad)


def test_duplicate_key_names_the_line() -> None:
    result, _ = validate_in_process(str(CORPUS / "yaml_duplicate_key.yaml"))
    assert re.search(r"duplicate key\) \(line 5, column 3\)", result.stderr), result.stderr


def test_grid_validates_whatever_codes_are_installed(tmp_path: Path, monkeypatch) -> None:
    """A 16x16x20 mesh (ImpactX's own expanding_beam example runs a 20-cell z grid) is a
    valid scenario: validation never looks at which codes are installed (a backend that
    cannot run a grid reports the case unsupported)."""
    import importlib.util

    data = yaml.safe_load((BUNDLED_DIR / "fodo_space_charge.yaml").read_text())
    data["space_charge"]["grid"] = [16, 16, 20]
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    real_find_spec = importlib.util.find_spec
    for installed in (True, False):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, _i=installed, **k:
                            (real_find_spec("math") if _i else None) if name == "impactx"
                            else real_find_spec(name, *a, **k))
        result, _ = validate_in_process(str(path))
        assert result.exit_code == 0, result.output
        assert f"OK {path}" in result.stdout


#: command line -> the option the one-line error must name
BAD_OPTIONS: dict[str, tuple[list[str], str]] = {
    "timeout nan": (["run", "fodo_linear", "--timeout", "nan"], "--timeout"),
    "timeout inf": (["run", "fodo_linear", "--timeout", "inf"], "--timeout"),
    "timeout negative": (["run", "fodo_linear", "--timeout", "-5"], "--timeout"),
    "memory limit nan": (["run", "fodo_linear", "--memory-limit", "nan"], "--memory-limit"),
    "memory limit zero": (["run", "fodo_linear", "--memory-limit", "0"], "--memory-limit"),
    "repeat negative": (["run", "fodo_linear", "--repeat", "-1"], "--repeat"),
    "repeat zero": (["run", "fodo_linear", "--repeat", "0"], "--repeat"),
    "particles nan": (["run", "fodo_linear", "--particles", "nan"], "--particles"),
    "particles inf": (["run", "fodo_linear", "--particles", "inf"], "--particles"),
    "particles negative": (["run", "fodo_linear", "--particles", "-1e4"], "--particles"),
    "particles huge": (["run", "fodo_linear", "--particles", "1e30"], "--particles"),
    "track particles nan": (["track", "fodo_linear", "--particles", "nan"], "--particles"),
    "track particles negative": (["track", "fodo_linear", "--particles", "-3"], "--particles"),
    "grad repeat negative": (["grad", "fodo_linear", "--repeat", "-2"], "--repeat"),
    "grad timeout nan": (["grad", "fodo_linear", "--timeout", "nan"], "--timeout"),
    "grad fd step nan": (["grad", "fodo_linear", "--fd-steps", "1e-4,nan"], "--fd-steps"),
    "grad fd step negative": (["grad", "fodo_linear", "--fd-steps", "-1e-4"], "--fd-steps"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_numeric_option_gives_one_line(case: str, tmp_path: Path) -> None:
    args, option = BAD_OPTIONS[case]
    out = tmp_path / "run"
    extra = ["--out", str(out)] if args[0] in ("run", "grad") else []
    result = CliRunner().invoke(app, [*args, *extra])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    line = one_line(result.stderr)
    assert option in line and "expected" in line, line
    assert not (out / "results.jsonl").exists()


def test_compare_threshold_nan(tmp_path: Path) -> None:
    (tmp_path / "results.jsonl").write_text("")
    result = CliRunner().invoke(app, ["compare", str(tmp_path), "--threshold", "nan"])
    assert result.exit_code == 2
    assert "--threshold" in one_line(result.stderr)


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    from harness.model.yaml_load import MAX_BYTES

    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:  # sparse: no disk space, no read
        handle.truncate(MAX_BYTES + 1)
    result, seconds = validate_in_process(str(path))
    line = one_line(result.stderr)
    assert result.exit_code == 1
    assert str(path) in line and "<file>" in line and "MiB" in line
    assert seconds < LIMIT_S
