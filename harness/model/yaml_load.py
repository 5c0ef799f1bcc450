"""Safe, bounded YAML loading for scenario and PALS files.

Every scenario or lattice file the harness reads goes through :func:`load_yaml_file` (or
:func:`load_yaml_text`). On top of PyYAML's safe loader (no Python tags, the libyaml parser
when it is compiled in) it refuses, each with one :class:`harness.model.errors.ScenarioError` that
names the file, the line and column and the key path where known:

* anything but a regular file (``/dev/zero``, a FIFO, a directory: checked on the open
  descriptor, which is opened without blocking), and a file larger than :data:`MAX_BYTES`
  (at most ``MAX_BYTES + 1`` bytes are ever read);
* YAML syntax errors (the line and column of the parser's message are kept);
* nesting deeper than :data:`MAX_DEPTH` collections (``[`` x 100000 fails at once, in
  libyaml's own depth limit or in this one);
* aliases whose expansion would add more than :data:`MAX_ALIAS_NODES` nodes, or more than
  :data:`MAX_ALIASES` aliases (a "billion laughs" bomb fails after a few events);
* more than :data:`MAX_NODES` nodes;
* duplicate mapping keys (YAML 1.2 forbids them; PyYAML keeps the last one silently);
* mapping keys that are not strings (``1: x``, ``on: x``, ``[a]: x``; merge keys ``<<`` are
  allowed).

Plain scalars in the float forms of the YAML 1.2 core schema (``1e0``, ``2E-3``,
``1e+05``, ``.5e1``) are floats: YAML 1.1, PyYAML's schema, reads an exponent without a dot
or a sign (``1e0``) as a string. A quoted ``"1e0"`` stays a string.

The document is built straight from libyaml's event stream in one loop that checks as it
goes: nothing recursive ever sees the document, a bomb stops at the alias that crosses the
limit, and a large valid file is read several times faster than by PyYAML's own constructor
(each distinct plain scalar is resolved once). Scalars are constructed by the safe
loader's own constructors, so values are exactly those of ``yaml.safe_load``.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from harness.model.errors import ScenarioError

#: Largest scenario or lattice file read [bytes].
MAX_BYTES = 64 * 2**20
#: Deepest nesting of mappings and sequences.
MAX_DEPTH = 100
#: Most nodes (scalars, mappings, sequences, aliases) in one document: a lattice of 100 000
#: distinct elements has ~800 000; the reading stops at the node that crosses it, so a file
#: of a million elements is refused after a fraction of its parsing.
MAX_NODES = 1_000_000
#: Most alias references (``*name``) in one document.
MAX_ALIASES = 10_000
#: Most nodes that all aliases of a document may add when expanded.
MAX_ALIAS_NODES = 100_000

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: The float forms of the YAML 1.2 core schema that YAML 1.1 reads as strings (an exponent
#: without a decimal point or without a sign: ``1e0``, ``1E5``, ``.5e1``, ``-2e3``).
FLOAT_12 = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$")


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """The safe loader with the YAML 1.2 float forms (:data:`FLOAT_12`) added; PyYAML's own
    loaders are left as they are."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT_12, list("-+0123456789."))
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: Stands for the merge key ``<<`` while its mapping is read.
_MERGE_KEY = object()


def _where(mark: Any) -> str:
    """``line L, column C`` (1-based) of a PyYAML mark."""
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


class _Frame:
    """One open collection while the document is built."""

    __slots__ = ("anchor", "value", "is_mapping", "expect_key", "key", "size", "merges")

    def __init__(self, anchor: str | None, is_mapping: bool):
        self.anchor = anchor
        self.is_mapping = is_mapping
        self.value: Any = {} if is_mapping else []
        self.expect_key = is_mapping
        self.key: Any = None if is_mapping else 0  # current key, or index in a sequence
        self.size = 1  # nodes below, aliases expanded
        self.merges: list[Any] = []


def _path(stack: list[_Frame]) -> str:
    """Dotted key path of the node being read (``beam.twiss.beta_x``, ``facility[2]``)."""
    out = ""
    for frame in stack:
        if frame.is_mapping:
            if frame.key is None or frame.key is _MERGE_KEY:
                break
            out += f".{frame.key}" if out else str(frame.key)
        else:
            out += f"[{frame.key}]"
    if len(out) > 120:  # a path hundreds of levels deep keeps its two ends
        out = out[:50] + "..." + out[-50:]
    return out or "<root>"


def _merged(frame: _Frame, fail) -> dict:
    """A mapping with merge keys: explicit keys win, earlier merged mappings win over later."""
    out: dict = {}
    for source in reversed(frame.merges):
        for item in source if isinstance(source, list) else [source]:
            if not isinstance(item, dict):
                fail("a mapping (or list of mappings) after the merge key <<")
        for item in reversed(source if isinstance(source, list) else [source]):
            out.update(item)
    out.update(frame.value)
    return out


_CONSTRUCTOR = yaml.SafeLoader("")
#: Constructors of the standard scalar tags (the safe loader's own).
_SCALARS = {f"tag:yaml.org,2002:{t}": yaml.SafeLoader.yaml_constructors[f"tag:yaml.org,2002:{t}"]
            for t in ("str", "int", "float", "bool", "null", "timestamp", "binary")}


def _build(loader: Any, file: str | Path | None) -> Any:
    """Build the document from the event stream, checking as it goes (raises)."""
    stack: list[_Frame] = []
    anchors: dict[str, tuple[Any, int]] = {}
    aliases = 0
    alias_nodes = 0
    documents = 0
    nodes = 0
    resolve = loader.resolve
    cache: dict[tuple[str, Any], Any] = {}
    plain_tags: dict[str, str] = {}
    result: Any = None
    event: Any = None

    def fail(what: str, got: object = None) -> None:
        raise ScenarioError(file, _path(stack) if stack else "<yaml>",
                            f"{what} ({_where(event.start_mark)})", got)

    def scalar_value(value: str, tag: str) -> Any:
        if tag == _STR_TAG:
            return value
        key = (tag, value)
        if key in cache:
            return cache[key]
        if tag not in _SCALARS:
            fail("valid YAML without application tags (such as !!python/...)", tag)
        node = yaml.ScalarNode(tag, value, event.start_mark, event.end_mark)
        out = _SCALARS[tag](_CONSTRUCTOR, node)
        if not isinstance(out, bytes):
            cache[key] = out
        return out

    def add(value: Any, size: int) -> None:
        """A complete node (scalar, alias or closed collection) of ``size`` nodes."""
        nonlocal result
        if not stack:
            result = value
            return
        parent = stack[-1]
        parent.size += size
        if not parent.is_mapping:
            parent.value.append(value)
            parent.key += 1
        elif parent.expect_key:
            parent.expect_key = False
        else:
            if parent.key is _MERGE_KEY:
                parent.merges.append(value)
            else:
                parent.value[parent.key] = value
            parent.expect_key = True

    get_event = loader.get_event
    check_event = loader.check_event
    while check_event():
        event = get_event()
        kind = type(event)
        if kind is not yaml.MappingEndEvent and kind is not yaml.SequenceEndEvent:
            nodes += 1
            if nodes > MAX_NODES:
                fail(f"at most {MAX_NODES:,} YAML nodes in a file (a lattice of at most "
                     "~100,000 element definitions)")
        if kind is yaml.ScalarEvent:
            tag = event.tag
            if tag is None and event.implicit[0]:  # plain: resolved once per distinct text
                tag = plain_tags.get(event.value)
                if tag is None:
                    tag = resolve(yaml.ScalarNode, event.value, (True, False))
                    if len(event.value) < 64:
                        plain_tags[event.value] = tag
            elif tag is None or tag == "!":
                tag = _STR_TAG
            top = stack[-1] if stack else None
            if top is not None and top.is_mapping and top.expect_key:
                top.key = None
                if tag == _MERGE_TAG:
                    top.key = _MERGE_KEY
                elif tag != _STR_TAG:
                    fail("a string mapping key (quote it: '\"...\"')", event.value)
                else:
                    top.key = event.value
                    if event.value in top.value:
                        fail("each key once in a mapping (duplicate key)", event.value)
                value: Any = event.value
            elif tag == _STR_TAG:
                value = event.value
            else:
                value = scalar_value(event.value, tag)
            if event.anchor is not None:
                anchors[event.anchor] = (value, 1)
            if top is None:
                result = value
            else:  # add(value, 1), inlined: most events are scalars
                top.size += 1
                if not top.is_mapping:
                    top.value.append(value)
                    top.key += 1
                elif top.expect_key:
                    top.expect_key = False
                elif top.key is _MERGE_KEY:
                    top.merges.append(value)
                    top.expect_key = True
                else:
                    top.value[top.key] = value
                    top.expect_key = True
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            if stack and stack[-1].is_mapping and stack[-1].expect_key:
                stack[-1].key = None
                fail("a string mapping key, not a mapping or list")
            if len(stack) >= MAX_DEPTH:
                fail(f"at most {MAX_DEPTH} levels of nesting")
            tag = event.tag
            if tag not in (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
                fail("valid YAML without application tags (such as !!python/...)", tag)
            stack.append(_Frame(event.anchor, kind is yaml.MappingStartEvent))
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            frame = stack[-1]
            value = _merged(frame, fail) if frame.merges else frame.value
            stack.pop()
            if frame.anchor is not None:
                anchors[frame.anchor] = (value, frame.size)
            add(value, frame.size)
        elif kind is yaml.AliasEvent:
            top = stack[-1] if stack else None
            if top is not None and top.is_mapping and top.expect_key:
                top.key = None
                fail("a string mapping key, not an alias", f"*{event.anchor}")
            if event.anchor not in anchors:
                fail("an alias to an anchor defined before it", f"*{event.anchor}")
            value, size = anchors[event.anchor]
            aliases += 1
            alias_nodes += size
            if aliases > MAX_ALIASES or alias_nodes > MAX_ALIAS_NODES:
                fail(f"aliases that expand to at most {MAX_ALIAS_NODES} nodes and at "
                     f"most {MAX_ALIASES} aliases (an alias bomb?)", f"*{event.anchor}")
            add(value, size)
        elif kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                fail("a single YAML document (found a second '---')")
    return result



def load_yaml_text(text: str, file: str | Path | None = None) -> Any:
    """Parse one YAML document with the checks of this module (raises ScenarioError)."""
    if len(text) > MAX_BYTES:
        raise ScenarioError(file, "<file>", f"a file of at most {MAX_BYTES // 2**20} MiB",
                            f"{len(text) / 2**20:.0f} MiB")
    loader = _Loader(text)
    try:
        return _build(loader, file)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        raise ScenarioError(file, "<yaml>", f"valid YAML: {problem} ({_where(mark)})") from None
    except yaml.YAMLError as error:
        raise ScenarioError(file, "<yaml>",
                            f"valid YAML ({str(error).splitlines()[0]})") from None
    finally:
        loader.dispose()


def _size_text(size: int) -> str:
    """A size in MiB (or bytes below one MiB) for messages."""
    return f"{size / 2**20:.0f} MiB" if size >= 2**20 else f"{size} bytes"


def _kind_of(mode: int) -> str:
    """What a file that is not a regular file is, for messages."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular_file(path: str | Path, max_bytes: int = MAX_BYTES, field: str = "<file>",
                       file: str | Path | None = None) -> None:
    """Refuse (one ScenarioError) anything at ``path`` but a regular file of at most
    ``max_bytes`` bytes, without opening it (``os.stat``: a FIFO, a device or a directory is
    never opened). ``file`` names the file in the message (default: ``path``)."""
    name = path if file is None else file
    try:
        info = os.stat(path)
    except OSError as error:
        raise ScenarioError(name, field, f"a readable file ({error.strerror or error})"
                            ) from None
    limit = f"a regular file of at most {_size_text(max_bytes)}"
    if not stat.S_ISREG(info.st_mode):
        raise ScenarioError(name, field, limit, _kind_of(info.st_mode))
    if info.st_size > max_bytes:
        raise ScenarioError(name, field, limit, f"{info.st_size:,} bytes")


def read_regular_file(path: str | Path, max_bytes: int = MAX_BYTES, field: str = "<file>",
                      file: str | Path | None = None) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` bytes, or one ScenarioError.

    The file is checked by :func:`check_regular_file` before it is opened, opened with
    ``O_NONBLOCK`` (a FIFO swapped in meanwhile cannot block), checked again on the
    descriptor, and read with at most ``max_bytes + 1`` bytes requested: a file that grows
    while read is refused, never read whole."""
    check_regular_file(path, max_bytes, field, file)
    name = path if file is None else file
    limit = f"a regular file of at most {_size_text(max_bytes)}"
    try:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        descriptor = os.open(path, flags)
        with os.fdopen(descriptor, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ScenarioError(name, field, limit, _kind_of(mode))
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise ScenarioError(name, field, f"a readable file ({error.strerror or error})"
                            ) from None
    if len(data) > max_bytes:
        raise ScenarioError(name, field, limit, f"more than {max_bytes:,} bytes")
    return data


def load_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file (a regular file, UTF-8, at most :data:`MAX_BYTES`) with
    the checks above."""
    path = Path(path)
    data = read_regular_file(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ScenarioError(path, "<file>", f"a readable UTF-8 text file ({error})") from None
    return load_yaml_text(text, path)
