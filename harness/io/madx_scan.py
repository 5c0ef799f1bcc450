"""A MAD-X file read as data: every statement checked before MAD-X sees any of it.

:func:`scan_madx` splits the file into statements (``;``-terminated, ``!``/``//``/``/* */``
comments dropped, ``"..."``/``'...'`` strings kept whole, case-insensitive) and sorts each
into one of three groups (the policy is described in :mod:`harness.io.madx`):

* run -- the statements that define a lattice (assignments, element, ``LINE`` and
  ``SEQUENCE`` definitions, ``BEAM``, ``USE``, sequence editing, harmless ``OPTION`` flags);
  a ``CALL`` is replaced by the checked statements of the file it calls;
* left out -- analysis commands that do not change the lattice (``TWISS``, ``SURVEY``,
  ``VALUE``, ...), each named in a note;
* refused -- anything else: :class:`~harness.io.model.ImportRefused` naming the file, the
  line and the command.

What MAD-X then runs is the text of the "run" statements only (:attr:`ScannedMadx.text`):
it never opens a file of its own.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.io.model import ImportRefused
from harness.io.source_file import MAX_CALL_DEPTH, MAX_TOTAL_BYTES, inside, read_source


def _words(text: str) -> frozenset[str]:
    """The set of the space-separated words of ``text``."""
    return frozenset(text.split())


#: MAD-X element types (MAD-X manual, "Element types").
ELEMENT_TYPES = _words(
    "drift quadrupole sextupole octupole sbend rbend dipedge multipole hkicker vkicker "
    "kicker tkicker solenoid rfcavity crabcavity twcavity rfmultipole marker monitor hmonitor "
    "vmonitor blmonitor imonitor instrument placeholder collimator ecollimator rcollimator "
    "elseparator srotation xrotation yrotation translation changeref changerefp0 beambeam "
    "matrix nllens wire thinwire hacdipole vacdipole")
#: Commands that define or arrange the lattice and neither read nor write files: run.
RUN_COMMANDS = _words(
    "beam resbeam use select deselect set option endsequence seqedit flatten cycle reflect "
    "install remove move replace extract endedit")
#: Analysis and printing commands that do not change the lattice: left out (not run).
LEFT_OUT = _words(
    "twiss survey emit value show print printf help title plot setplot resplot savebeta "
    "coguess dumpsequ")
#: ``OPTION`` flags that only change printing or the physics model MAD-X uses while
#: building the lattice (``echo`` is MAD-X's default and prints to the importer's pipe).
OPTION_FLAGS = _words(
    "echo echomacro info warn debug verbose verify trace tell reset rbarc thin_foc sympl "
    "threader no_fatal_stop twiss_print keep_exp_move bborbit thin_cf cfsbend "
    "update_from_parent emittance_update")
#: Why the commands that can run code, read or write files are refused (one phrase each).
DANGEROUS = {
    "system": "runs a shell command",
    "assign": "redirects MAD-X output into a file",
    "exec": "runs a macro",
    "macro": "defines a macro (code run later)",
    "while": "a loop (can run forever)",
    "if": "a conditional block (code)",
    "elseif": "a conditional block (code)",
    "else": "a conditional block (code)",
    "readtable": "reads a file",
    "readmytable": "reads a file",
    "sddsin": "reads a file",
    "sxfread": "reads a file",
    "save": "writes a file",
    "write": "writes a file",
    "sddsout": "writes a file",
    "sxfwrite": "writes a file",
    "esave": "writes a file",
    "copyfile": "copies a file",
    "renamefile": "renames a file",
    "removefile": "deletes a file",
    "chdir": "changes MAD-X's directory",
    "create": "creates a table (written out by WRITE)",
    "fill": "fills a table",
    "use_macro": "runs a macro",
    "match": "a matching run (changes strengths by computation)",
    "track": "a tracking run (writes files)",
    "makethin": "rewrites the lattice into thin slices",
    "sixtrack": "writes SixTrack input files",
    "stop": "",
}
#: Every MAD-X command name (MAD-X 5.09 ``madx.command``): not usable as an element label.
COMMANDS = frozenset(DANGEROUS) | RUN_COMMANDS | LEFT_OUT | _words(
    "add2expr aperture beta0 call constraint coption correct couple delete distribution "
    "dynap ealign efcomp endmatch endtrack eoption eprint etable exit fill_knob fix getdisp "
    "getkick getorbit global gweight ibs jacobian level lmdif migrad observe putdisp putkick "
    "putorbit quit readcorr return ripple rmatrix run rviewer save_state sequence setcorr "
    "seterr setvars setvars_const setvars_knob setvars_lin shrink siman simplex sixmarker "
    "sodd start taper tmatrix touschek usekick usemonitor vary weight line")

_TOKENS = re.compile(r'"[^"\n]*"|\'[^\'\n]*\'|/\*.*?\*/|//[^\n]*|![^\n]*|;|\n'
                     r'|[^"\';/!\n]+|.', re.DOTALL)
_NAME = r"[a-z_][\w.$]*"
_QUALIFIERS = re.compile(r"((const|real|int|shared)\s+)+")
_ASSIGNMENT = re.compile(rf"({_NAME})\s*(->\s*[a-z_]\w*\s*(\[\s*\d+\s*\])?)?\s*:?=")
_LABELLED = re.compile(rf"({_NAME})\s*:\s*({_NAME})\s*(,|=|$)")
_HEAD = re.compile(rf"({_NAME})\s*(,|$)")
_WORD = re.compile(r"[a-z_][\w.$]*")
_CALL_FILE = re.compile(r'file\s*=\s*("([^"]*)"|\'([^\']*)\'|([^,\s]+))', re.IGNORECASE)
_ATTRIBUTE = re.compile(r"(?:^|,)\s*(-?)\s*([a-z_]\w*)\s*(:?=\s*([^,]*))?")


@dataclass(frozen=True)
class Statement:
    """One MAD-X statement: its text (comments removed, original case, no ``;``), the file
    and the line it starts on."""

    text: str
    file: Path
    line: int

    @property
    def masked(self) -> str:
        """Lower-case text with every string replaced by ``""`` (for matching)."""
        return re.sub(r'"[^"]*"|\'[^\']*\'', '""', self.text).lower().strip()

    def where(self) -> str:
        """``file:line`` for messages."""
        return f"{self.file}:{self.line}"


def split_statements(text: str, file: Path) -> Iterator[Statement]:
    """The statements of a MAD-X text in order (an unterminated last statement included)."""
    line, start_line = 1, 0
    parts: list[str] = []
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ('"', "'") or (token == "/" and text.startswith("/*", match.start())):
            raise ImportRefused(f"{file}:{line}: an unterminated string or /* comment")
        if token.startswith(("/*", "//", "!")):
            line += token.count("\n")
            continue
        if token == ";":
            body = "".join(parts).strip()
            if body:
                yield Statement(body, file, start_line or line)
            parts, start_line = [], 0
            continue
        if not start_line and token.strip():
            start_line = line
        line += token.count("\n")
        parts.append(token)
    body = "".join(parts).strip()
    if body:
        yield Statement(body, file, start_line or line)


@dataclass
class ScannedMadx:
    """What :func:`scan_madx` found: the statements MAD-X may run, the notes, the files read.

    Attributes:
        run: the statements MAD-X runs, calls replaced by the called files' statements.
        notes: one line per statement left out.
        files: every file read (the lattice file first).
        has_beam: whether a ``BEAM`` command is among ``run``.
        lines: every ``LINE`` defined (lower case, in order) -> the names it lists.
        beam_attributes: the attributes the ``BEAM`` commands state (lower case), per
            sequence they name with ``SEQUENCE=`` (``""``: the default beam); a
            ``RESBEAM`` forgets them, as MAD-X resets the beam to its defaults.
    """

    run: list[Statement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    has_beam: bool = False
    lines: dict[str, list[str]] = field(default_factory=dict)
    beam_attributes: dict[str, set[str]] = field(default_factory=dict)

    def stated_beam(self, sequence: str) -> set[str]:
        """The BEAM attributes the file states for ``sequence`` (its own BEAM, else the
        default beam: MAD-X ``attach_beam`` in ``src/mad_beam.c``)."""
        own = self.beam_attributes.get(sequence.lower())
        return set(own if own is not None else self.beam_attributes.get("", set()))

    @property
    def text(self) -> str:
        """The MAD-X input of the ``run`` statements."""
        return "".join(f"{s.text};\n" for s in self.run)


class _Stop(Exception):
    """A ``STOP``/``EXIT``/``QUIT``: MAD-X reads nothing after it."""


class MadxScanner:
    """Checks MAD-X statements against the policy of :mod:`harness.io.madx`."""

    def __init__(self, top: Path):
        self.top = top
        self.folder = top.resolve().parent
        self.labels: set[str] = set()
        self.result = ScannedMadx()
        self.total_bytes = 0

    def refuse(self, statement: Statement, what: str) -> ImportRefused:
        """The refusal of ``statement`` (one line: file:line, the command, why)."""
        shown = " ".join(statement.text.split())
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return ImportRefused(f"{statement.where()}: {what} is refused: a lattice import reads "
                             f"the file as data, it does not run it ({shown!r})")

    def scan_file(self, file: Path, depth: int = 0) -> None:
        """Check ``file`` and every file it calls; append what runs to :attr:`result`."""
        text = read_source(file)
        self.total_bytes += len(text)
        if self.total_bytes > MAX_TOTAL_BYTES:
            raise ImportRefused(f"{file}: the lattice and the files it calls are larger than "
                                f"{MAX_TOTAL_BYTES} bytes in all")
        self.result.files.append(file)
        for statement in split_statements(text, file):
            if self.statement(statement, depth) == "return":
                return

    def statement(self, s: Statement, depth: int) -> str:
        """Check one statement; ``"return"`` ends the current file."""
        body = _QUALIFIERS.sub("", s.masked, count=1) if _QUALIFIERS.match(s.masked) \
            else s.masked
        word = _WORD.match(body)
        name = word.group() if word else (body.split() or [body])[0]
        labelled = _LABELLED.match(body)
        kind = labelled.group(2) if labelled else ""
        if kind == "macro" or kind in DANGEROUS:
            raise self.refuse(s, self.command_words(kind))
        if name in DANGEROUS and not labelled:
            raise self.refuse(s, self.command_words(name))
        self.check_text(s, body)
        assignment = _ASSIGNMENT.match(body)
        if assignment:
            if assignment.group(1) in COMMANDS and not assignment.group(2):
                raise self.refuse(s, f"an assignment to {assignment.group(1)!r} (a MAD-X "
                                     "command name)")
            self.result.run.append(s)
            return "run"
        if labelled:
            return self.definition(s, labelled.group(1), kind)
        head = _HEAD.match(body)
        if head is None:
            raise self.refuse(s, self.command_words(name))
        return self.command(s, name, body[head.end(1):], depth)

    def command_words(self, name: str) -> str:
        """``SYSTEM (runs a shell command)`` or the statement head in words."""
        reason = DANGEROUS.get(name)
        return f"{name.upper()} ({reason})" if reason else f"{name.upper()!r}: not a " \
            "statement of a lattice file"

    def check_text(self, s: Statement, body: str) -> None:
        """Refuse braces that are not array values, ``;`` in strings and table reads."""
        if "table(" in body.replace(" ", ""):
            raise self.refuse(s, "TABLE(...) in an expression (reads the result of an "
                                 "analysis command, which is not run)")
        if re.search(r'"[^"]*;|\'[^\']*;', s.text):
            raise self.refuse(s, "a ';' inside a string")
        depth = 0
        for index, char in enumerate(body):
            if char == "{":
                if depth or not re.search(r"=\s*$", body[:index]):
                    raise self.refuse(s, "a { block } (code)")
                depth += 1
            elif char == "}":
                depth -= 1
                if depth < 0:
                    raise self.refuse(s, "a { block } (code)")
        if depth:
            raise self.refuse(s, "a { block } (code)")

    def definition(self, s: Statement, label: str, kind: str) -> str:
        """``label: kind, ...``: an element, LINE or SEQUENCE definition runs; a labelled
        analysis command is left out; anything else is refused."""
        if kind in LEFT_OUT:
            return self.leave_out(s, kind)
        if kind not in ELEMENT_TYPES and kind not in ("line", "sequence") and \
                kind not in self.labels:
            raise self.refuse(s, f"{label.upper()}: {kind.upper()} ({kind.upper()} is not a "
                                 "MAD-X element type or an element defined before)")
        if label in COMMANDS:
            raise self.refuse(s, f"the label {label.upper()} (a MAD-X command name)")
        self.check_attributes(s, s.masked[s.masked.index(":") + 1:])
        if kind == "line":
            body = s.masked[s.masked.index(":") + 1:]
            members = body[body.find("=") + 1:] if "=" in body else ""
            self.result.lines[label] = _WORD.findall(members)
        self.labels.add(label)
        self.result.run.append(s)
        return "run"

    def command(self, s: Statement, name: str, rest: str, depth: int) -> str:
        """An unlabelled statement ``name, attributes``."""
        if name == "call":
            return self.call(s, depth)
        if name == "return":
            return "return"
        if name in ("stop", "exit", "quit"):
            raise _Stop
        if name in LEFT_OUT:
            return self.leave_out(s, name)
        if name == "option":
            self.check_option(s, rest)
        elif name not in RUN_COMMANDS and name not in ELEMENT_TYPES and name not in self.labels:
            if name.startswith("ptc_"):
                raise self.refuse(s, f"{name.upper()} (a PTC run; it can write files)")
            raise self.refuse(s, self.command_words(name))
        self.check_attributes(s, rest)
        self.result.has_beam |= name == "beam"
        if name in ("beam", "resbeam"):
            self.beam_statement(name, rest)
        self.result.run.append(s)
        return "run"

    def beam_statement(self, name: str, rest: str) -> None:
        """Record the attributes a ``BEAM`` states (``RESBEAM`` forgets them)."""
        stated = {a.group(2): (a.group(4) or "").strip() for a in _ATTRIBUTE.finditer(rest)}
        sequence = stated.pop("sequence", "").strip("\"' ")
        if name == "resbeam":
            self.result.beam_attributes.pop(sequence, None)
            return
        self.result.beam_attributes.setdefault(sequence, set()).update(stated)

    def check_attributes(self, s: Statement, rest: str) -> None:
        """Refuse file-naming attributes (``FILE=``, ``ECHO=``) on a statement that runs."""
        for attribute in _ATTRIBUTE.finditer(rest):
            if attribute.group(2) in ("file", "echo", "filename", "echofile") and \
                    attribute.group(3):
                raise self.refuse(s, f"{attribute.group(2).upper()}= (names a file)")

    def check_option(self, s: Statement, rest: str) -> None:
        """``OPTION`` with the flags of :data:`OPTION_FLAGS` only."""
        for attribute in _ATTRIBUTE.finditer(rest):
            flag = attribute.group(2)
            if flag not in OPTION_FLAGS:
                raise self.refuse(s, f"OPTION {flag.upper()} (not a flag a lattice needs)")

    def leave_out(self, s: Statement, name: str) -> str:
        """Note an analysis command that is not run."""
        wrote = _CALL_FILE.search(s.masked)
        written = " and its file is not written" if wrote else ""
        self.result.notes.append(f"{s.where()}: {name.upper()} left out (an analysis command "
                                 f"that does not change the lattice{written})")
        return "left out"

    def call(self, s: Statement, depth: int) -> str:
        """``CALL, FILE=...``: a regular file in the lattice file's folder (or below), its
        statements checked and run in place of the call (a relative name is MAD-X's:
        relative to the lattice file's folder, where MAD-X ran before; unquoted, lowered)."""
        raw = _CALL_FILE.search(s.text)
        if raw is None:
            raise self.refuse(s, "CALL without FILE=")
        quoted = raw.group(2) if raw.group(2) is not None else raw.group(3)
        name = quoted if quoted is not None else raw.group(4).lower()
        if depth + 1 > MAX_CALL_DEPTH:
            raise self.refuse(s, f"CALL nested deeper than {MAX_CALL_DEPTH} files")
        target = Path(name) if Path(name).is_absolute() else self.folder / name
        if not inside(self.folder, target):
            raise self.refuse(s, f"CALL of {name!r} (outside the lattice file's folder "
                                 f"{self.folder})")
        self.scan_file(target, depth + 1)
        return "run"


def scan_madx(file: Path) -> ScannedMadx:
    """Check ``file`` and the files it calls (see the module docstring)."""
    scanner = MadxScanner(file)
    with contextlib.suppress(_Stop):
        scanner.scan_file(file)
    return scanner.result
