"""A per-machine record of inductor's CPU vector-ISA probe, so that it runs once per machine
instead of once per process.

Before its first C++ kernel, every process running inductor (torch 2.x,
``torch/_inductor/cpu_vec_isa.py``) checks each vector instruction set the CPU reports
(AVX2, AVX-512, ...): it compiles a small test library per ISA (kept in the inductor cache)
and then, in every process, starts one Python child per ISA that loads it. On the 2-core
EPYC this cost 7-20 s of a cold compile and about 2 s of a warm one. The first process
runs the probe itself before compiling; when every ISA the CPU reports passes, it writes that
fact here, keyed by what the
check depends on (torch version, C++ compiler, the CPU's ISA flags); later processes then
set inductor's own switch ``config.cpp.vec_isa_ok = True``, which makes inductor accept
exactly that same list of ISAs without probing. If any ISA failed, nothing is recorded and
inductor keeps probing. ``TORCHINDUCTOR_VEC_ISA_OK`` set by the user is left to rule, and
:data:`ENV_VAR` ``=0`` turns the record off.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

#: Environment variable: ``0`` neither reads nor writes the record.
ENV_VAR = "TRACKBENCH_VEC_ISA_RECORD"

#: The record (in the project's git-ignored ``.cache/``).
RECORD = Path(__file__).resolve().parents[2] / ".cache" / "vec-isa.json"


def _enabled() -> bool:
    return (os.environ.get(ENV_VAR, "1").strip() != "0"
            and "TORCHINDUCTOR_VEC_ISA_OK" not in os.environ)


def _key() -> str:
    """What inductor's check depends on: torch version, compiler, the CPU's ISA flags."""
    import torch
    from torch._inductor import cpp_builder, cpu_vec_isa

    compiler = cpp_builder.get_cpp_compiler()
    parts = [torch.__version__, compiler, os.path.realpath(compiler),
             ",".join(cpu_vec_isa.x86_isa_checker())]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _candidates() -> list[str]:
    """The ISAs inductor would probe on this CPU (those whose flags the CPU reports)."""
    from torch._inductor import cpu_vec_isa

    flags = cpu_vec_isa.x86_isa_checker()
    return [str(isa) for isa in cpu_vec_isa.supported_vec_isa_list
            if all(flag in flags for flag in str(isa).split())]


def _read() -> dict:
    try:
        data = json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def apply() -> bool:
    """Before compiling: skip inductor's probe if this machine's record says every ISA
    passed, else run the probe and record a pass; returns whether inductor's switch is set
    (True once every ISA passed). Only x86-64 Linux is recorded."""
    import platform
    import sys

    if not _enabled() or sys.platform != "linux" or platform.machine() != "x86_64":
        return False
    from torch._inductor import config

    if config.cpp.vec_isa_ok is not None:
        return bool(config.cpp.vec_isa_ok)
    try:
        key = _key()
    except Exception:  # noqa: BLE001 - no compiler found: inductor reports it itself
        return False
    candidates = _candidates()
    if _read().get(key) != candidates:
        # probe now (what inductor would do before its first kernel) and record a pass, so
        # that this process compiles with the same configuration (part of inductor's cache
        # keys) as the later ones that read the record
        if not _probe_passes(candidates):
            return False
        _write(key, candidates)
    config.cpp.vec_isa_ok = True
    return True


def _probe_passes(candidates: list[str]) -> bool:
    """Run inductor's probe; whether every ISA the CPU reports passed it."""
    from torch._inductor import cpu_vec_isa

    try:
        passed = [str(isa) for isa in cpu_vec_isa.valid_vec_isa_list()]
    except Exception:  # noqa: BLE001 - the record is an optimisation only
        return False
    return bool(candidates) and passed == candidates


def _write(key: str, candidates: list[str]) -> None:
    data = _read()
    data[key] = candidates
    try:
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        tmp = RECORD.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, RECORD)
    except OSError:
        return
