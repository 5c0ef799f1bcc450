"""Generators of bundled scenarios whose numbers are derived from a published source
(field gradients from magnet calibrations, bend angles from a chicane setting): the
derivation is code, the scenario file is its output."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def write_or_check(description: str, out: Path, render: Callable[[], str],
                   argv: list[str] | None = None) -> int:
    """Write ``render()`` to ``out`` (or, with ``--check``, return 1 when the committed file
    differs from it); the command line of every generator."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed file differs")
    parser.add_argument("--out", type=Path, default=out)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = args.out.exists() and args.out.read_text() == text
        print(f"{args.out}: {'up to date' if same else 'differs from the generator'}")
        return 0 if same else 1
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0
