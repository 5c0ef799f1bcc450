"""The per-machine record of inductor's vector-ISA probe (backends/inhouse/vec_isa.py) and a
case process that imports torch only for a backend that uses it."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from backends.inhouse import vec_isa

pytestmark = pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64",
                                reason="the record is kept on x86-64 Linux only")


def test_record_is_written_after_a_passing_probe_and_read_after(tmp_path, monkeypatch):
    from torch._inductor import config

    record = tmp_path / "vec-isa.json"
    monkeypatch.setattr(vec_isa, "RECORD", record)
    monkeypatch.delenv("TORCHINDUCTOR_VEC_ISA_OK", raising=False)
    monkeypatch.delenv(vec_isa.ENV_VAR, raising=False)
    monkeypatch.setattr(config.cpp, "vec_isa_ok", None)
    monkeypatch.setattr(vec_isa, "_probe_passes", lambda candidates: False)
    assert not vec_isa.apply()  # an ISA failed: nothing recorded, inductor probes itself
    assert config.cpp.vec_isa_ok is None and not record.exists()
    monkeypatch.setattr(vec_isa, "_probe_passes", lambda candidates: True)
    assert vec_isa.apply()
    assert config.cpp.vec_isa_ok is True
    assert json.loads(record.read_text()) == {vec_isa._key(): vec_isa._candidates()}

    def no_probe(candidates):
        raise AssertionError("probed although the record matches")

    monkeypatch.setattr(config.cpp, "vec_isa_ok", None)
    monkeypatch.setattr(vec_isa, "_probe_passes", no_probe)
    assert vec_isa.apply()  # the record matches: no probe
    record.write_text(json.dumps({vec_isa._key(): ["no-such-isa"]}))
    monkeypatch.setattr(config.cpp, "vec_isa_ok", None)
    monkeypatch.setattr(vec_isa, "_probe_passes", lambda candidates: False)
    assert not vec_isa.apply()  # another list of ISAs: probe again
    monkeypatch.setenv(vec_isa.ENV_VAR, "0")
    assert not vec_isa.apply()  # turned off
    assert config.cpp.vec_isa_ok is None


def test_a_case_without_torch_does_not_import_it():
    code = ("import sys\n"
            "from harness.case_support import set_threads\n"
            "set_threads(1, imported_only=True)\n"
            "assert 'torch' not in sys.modules\n"
            "import torch\n"
            "set_threads(1, imported_only=True)\n"
            "assert torch.get_num_threads() == 1\n")
    subprocess.run([sys.executable, "-c", code], check=True)
