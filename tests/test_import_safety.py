"""Importing a lattice file never runs it: one test per attack class.

Each test asserts that the attack did not happen (the file a command would have written does
not exist), that the refusal is one line naming the file, the line and the command, and that
it comes well within 10 s. Most refusals come from the statement check, before MAD-X starts.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from harness.io.importer import import_lattice
from harness.io.madx_scan import scan_madx
from harness.io.model import ImportRefused
from harness.io.sandbox import run_limited
from harness.io.source_file import MAX_FILE_BYTES

DATA = Path(__file__).parent / "data"
LATTICE = ("BEAM, PARTICLE=ELECTRON, ENERGY=2.0;\nD1: DRIFT, L=0.5;\nL1: LINE=(D1);\n"
           "USE, SEQUENCE=L1;\n")


def refusal(path: Path, **options) -> str:
    """The one-line refusal of importing ``path`` (asserts it comes within 10 s)."""
    start = time.monotonic()
    with pytest.raises(ImportRefused) as caught:
        import_lattice(path, **options)
    assert time.monotonic() - start < 10.0
    message = str(caught.value)
    assert "\n" not in message
    return message


def write(folder: Path, text: str, name: str = "t.madx") -> Path:
    path = folder / name
    path.write_text(text)
    return path


# --- commands that run code, write or read files: refused before MAD-X starts --------------

ATTACKS = {
    "system": ('system, "touch {ran}";', "SYSTEM"),
    "system upper case, no comma": ('SyStEm "touch {ran}";', "SYSTEM"),
    "assign echo": ('assign, echo="{ran}";\nvalue, 1;', "ASSIGN"),
    "labelled macro": ('m: macro = {{ system, "touch {ran}"; }};\nexec, m;', "MACRO"),
    "exec": ("exec, m;", "EXEC"),
    "while loop": ("while (1 < 2) {{ a = a + 1; }}", "WHILE"),
    "if block": ('if (1 < 2) {{ system, "touch {ran}"; }}', "IF"),
    "save": ('save, sequence=l1, file="{ran}";', "SAVE"),
    "write": ('write, table=summ, file="{ran}";', "WRITE"),
    "readtable": ('readtable, file="/etc/passwd";', "READTABLE"),
    "readmytable": ('readmytable, file="/etc/passwd", table=t;', "READMYTABLE"),
    "ptc": ('ptc_create_universe;', "PTC_CREATE_UNIVERSE"),
    "ptc twiss file": ('ptc_twiss, file="{ran}";', "PTC_TWISS"),
    "file attribute on a run command": ('select, flag=twiss, file="{ran}";', "FILE="),
    "string hides a statement": ("beam, particle='a;system,\"touch {ran}\"';", "';'"),
    "table read": ("x = table(summ, q1);", "TABLE"),
    "option outside the list": ("option, echosystem;", "OPTION ECHOSYSTEM"),
    "unknown command": ("copyfile, from=a, to=b;", "COPYFILE"),
    "macro call": ('mymacro(1);', "MYMACRO"),
    "label of a command name": ("system: drift, l=1;", "SYSTEM"),
    "call outside the folder": ('call, file="/etc/passwd";', "outside the lattice file"),
    "call of /dev/zero": ('call, file="/dev/zero";', "outside the lattice file"),
    "call upward": ('call, file="../elsewhere.madx";', "outside the lattice file"),
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=list(ATTACKS))
def test_an_attack_is_refused_before_madx_runs(attack, tmp_path):
    statement, named = attack
    ran = tmp_path / "ran"
    text = "D0: DRIFT, L=1;\n" + statement.format(ran=ran) + "\n" + LATTICE
    message = refusal(write(tmp_path, text))
    assert not ran.exists()
    assert re.match(rf"{re.escape(str(tmp_path / 't.madx'))}:2: ", message), message
    assert named in message
    assert "refused" in message


def test_the_pre_stop_check_file_is_refused_and_nothing_runs(tmp_path):
    ran = tmp_path / "ran"
    path = write(tmp_path, f'system, "touch {ran}";\n{LATTICE}')
    message = refusal(path)
    assert message.startswith(f"{path}:1: SYSTEM (runs a shell command) is refused")
    assert not ran.exists()


def test_a_statement_after_others_on_the_same_line_is_named_by_its_line(tmp_path):
    ran = tmp_path / "ran"
    path = write(tmp_path, f'! a comment\n/* a\n block */ D1: DRIFT, L=1; system, "touch {ran}";'
                           f"\n{LATTICE}")
    assert refusal(path).startswith(f"{path}:3: SYSTEM")
    assert not ran.exists()


def test_commands_in_comments_and_strings_do_not_run(tmp_path):
    ran = tmp_path / "ran"
    path = write(tmp_path, f'// system, "touch {ran}";\n! system, "touch {ran}";\n'
                           f'/* system, "touch {ran}"; */\ntitle, "system";\n{LATTICE}')
    imported = import_lattice(path)
    assert not ran.exists()
    assert [e for e in imported.data["lattice"]["PALS"]["facility"] if "d1" in e]


# --- analysis output is left out, not written ----------------------------------------------

def test_twiss_with_a_file_is_left_out_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, LATTICE + 'twiss, betx=1, bety=1, file="optics.tfs";\n'
                 "survey, file=survey.tfs;\n")
    imported = import_lattice(path)
    assert sorted(os.listdir(tmp_path)) == ["t.madx"]
    notes = imported.result.notes
    assert f"{path}:5: TWISS left out" in notes[0] and "not written" in notes[0]
    assert f"{path}:6: SURVEY left out" in notes[1]


def test_impactx_dogleg_imports_without_writing_its_twiss_file(tmp_path):
    source = DATA / "impactx_dogleg.madx"
    copy = write(tmp_path, source.read_text(), "dogleg.madx")
    import_lattice(copy)
    assert sorted(os.listdir(tmp_path)) == ["dogleg.madx"]


def test_every_bundled_madx_file_passes_the_check():
    venv = Path(__file__).parents[1] / ".venv"
    examples = venv.glob("lib/python3*/site-packages/impactx/examples/**/*.madx")
    files = [f for f in sorted(DATA.glob("*.madx")) if not f.name.startswith("hostile_")]
    files += sorted(examples)
    assert len(files) >= 6
    for file in files:
        assert scan_madx(file).has_beam, file


# --- calls: the lattice's folder only, regular files, depth cap ----------------------------

def test_call_in_the_folder_runs_the_checked_statements(tmp_path):
    (tmp_path / "optics").mkdir()
    write(tmp_path / "optics", "kq = 0.25;\n", "strengths.madx")
    path = write(tmp_path, 'call, file="optics/strengths.madx";\nBEAM, PARTICLE=ELECTRON, '
                           "ENERGY=2.0;\nQ: QUADRUPOLE, L=0.5, K1:=kq;\nL1: LINE=(Q);\n"
                           "USE, SEQUENCE=L1;\n")
    imported = import_lattice(path)
    quad = imported.data["lattice"]["PALS"]["facility"][0]["q"]
    assert quad["MagneticMultipoleP"]["Kn1"] == 0.25


def test_a_called_file_is_checked_too(tmp_path):
    ran = tmp_path / "ran"
    write(tmp_path, f'a = 1;\nsystem, "touch {ran}";\n', "inner.madx")
    path = write(tmp_path, f'call, file="inner.madx";\n{LATTICE}')
    assert refusal(path).startswith(f"{tmp_path / 'inner.madx'}:2: SYSTEM")
    assert not ran.exists()


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside.madx"
    outside.write_text("a = 1;\n")
    (tmp_path / "lattice").mkdir()
    (tmp_path / "lattice" / "link.madx").symlink_to(outside)
    path = write(tmp_path / "lattice", f'call, file="link.madx";\n{LATTICE}')
    assert "outside the lattice file's folder" in refusal(path)


def test_a_fifo_called_from_the_folder_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.madx")
    path = write(tmp_path, f'call, file="pipe.madx";\n{LATTICE}')
    assert "found a FIFO" in refusal(path)


def test_a_file_calling_itself_stops_at_the_depth_cap(tmp_path):
    path = write(tmp_path, f'call, file="t.madx";\n{LATTICE}')
    assert "nested deeper than" in refusal(path)


# --- files that are not lattice files: refused before reading, every format ---------------

@pytest.mark.parametrize("fmt", ["madx", "bmad", "elegant", "pals"])
def test_devices_fifos_directories_and_huge_files_are_refused_at_once(fmt, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    huge = tmp_path / "huge"
    with huge.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    options = {"fmt": fmt, "species": "electron", "energy_MeV": 100.0}
    for path, words in ((Path("/dev/zero"), "a character device"),
                        (tmp_path / "fifo", "a FIFO"), (tmp_path, "a directory"),
                        (huge, "is larger than")):
        start = time.monotonic()
        message = refusal(path, **options)
        assert time.monotonic() - start < 1.0
        assert message.startswith(f"{path}: ") and words in message, message


def test_bmad_call_outside_the_folder_is_refused(tmp_path):
    path = write(tmp_path, "parameter[particle] = electron\nbeginning[e_tot] = 10e6\n"
                           "call, file = /etc/hostname\nd: drift, L = 0.5\nlat: line = (d)\n"
                           "use, lat\n", "t.bmad")
    assert refusal(path).startswith(f"{path}:3: call of '/etc/hostname' is refused")


def test_bmad_line_expanding_past_the_cap_is_refused_before_expanding(tmp_path):
    lines = ["parameter[particle] = electron", "beginning[e_tot] = 10e6",
             "d: drift, L = 0.5", "l0: line = (" + ", ".join(["d"] * 10) + ")"]
    lines += [f"l{i}: line = (" + ", ".join([f"l{i - 1}"] * 10) + ")" for i in range(1, 9)]
    path = write(tmp_path, "\n".join(lines + ["use, l8"]) + "\n", "t.bmad")
    assert "more than 100000 elements" in refusal(path)


def test_pals_yaml_aliases_are_refused(tmp_path):
    path = write(tmp_path, "a: &a [1, 1]\nb: &b [*a, *a]\nPALS: {facility: [*b, *b]}\n",
                 "t.pals.yaml")
    message = refusal(path, species="electron", energy_MeV=1.0)
    assert message.startswith(f"{path}:2: a YAML alias")


# --- limits on the reader's own process ----------------------------------------------------

def test_madx_past_its_time_limit_is_stopped_with_one_line(tmp_path):
    # deferred expressions are re-evaluated without memoisation: 2**40 additions
    chain = "".join(f"a{i} := a{i - 1} + a{i - 1};\n" for i in range(1, 41))
    path = write(tmp_path, f"a0 := 1;\n{chain}BEAM, PARTICLE=ELECTRON, ENERGY=2.0;\n"
                           "D1: DRIFT, L:=a40*1e-12;\nL1: LINE=(D1);\nUSE, SEQUENCE=L1;\n")
    message = refusal(path, time_limit_s=2.5)
    assert message == f"{path}: MAD-X ran past the time limit of 2.5 s (--time-limit); stopped"


def test_a_reader_past_its_time_limit_is_killed():
    start = time.monotonic()
    with pytest.raises(ImportRefused, match="ran past the time limit of 0.5 s"):
        run_limited(time.sleep, (60,), "slow.bmad", time_limit_s=0.5)
    assert time.monotonic() - start < 3.0


def test_a_reader_past_its_memory_limit_is_stopped():
    with pytest.raises(ImportRefused, match="more than the memory limit of 0.25 GiB"):
        run_limited(bytearray, (2 * 1024**3,), "big.bmad", memory_limit_gib=0.25)


def test_limits_outside_their_range_are_refused(tmp_path):
    path = write(tmp_path, LATTICE)
    assert refusal(path, time_limit_s=1e300).startswith("--time-limit: expected seconds")
    assert refusal(path, memory_limit_gib=0.0).startswith("--memory-limit: expected GiB")


# --- the command line ----------------------------------------------------------------------

def test_cli_import_of_a_hostile_file_exits_nonzero_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    ran = tmp_path / "ran"
    path = write(tmp_path, (DATA / "hostile_system.madx").read_text().replace("RAN", str(ran)))
    out = tmp_path / "t.yaml"
    result = CliRunner().invoke(app, ["import", str(path), "--out", str(out)])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:3: SYSTEM"), result.output
    assert "Traceback" not in result.output
    assert not ran.exists() and not out.exists()
