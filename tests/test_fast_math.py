"""The ``math`` setting of a case (``ieee`` | ``fast``): the ``--math`` option, case ids,
the refusals of codes without a fast-math setting at run time, the in-house fast-math case
judged against ImpactX, and inductor's cache keeping the two settings apart."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.base import MATH_MODES, Backend, Unsupported
from harness.cases import Case, plan
from harness.model.load import load_scenario

ROOT = Path(__file__).resolve().parent.parent
needs_compiler = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                    reason="inductor needs a C++ compiler")


def test_ieee_case_ids_are_unchanged_and_fast_ones_end_with_fast() -> None:
    ieee = Case("fodo_linear", "f.yaml", "inhouse", 1000, threads=1)
    assert ieee.math == "ieee"
    assert ieee.case_id == "track/fodo_linear/inhouse/1000/cpu/float64/t1"
    fast = ieee.replace(math="fast")
    assert fast.case_id == "track/fodo_linear/inhouse/1000/cpu/float64/t1/fast"
    assert Case.model_validate(fast.as_dict()) == fast   # a row's cell reads back
    with pytest.raises(ValueError, match="math"):
        ieee.replace(math="fastest")


def test_math_is_a_dimension_of_the_matrix_with_an_ieee_reference() -> None:
    scenario = load_scenario("fodo_linear")
    cases = plan([scenario], ["inhouse", "xsuite"], [1000], ["cpu"], ["float64"], 1,
                 ["impactx", "inhouse", "xsuite"], 1, ["ieee", "fast"])
    ids = [c.case_id for c in cases]
    assert ids[0] == "track/fodo_linear/impactx/1000/cpu/float64/t1"   # the reference
    assert cases[0].role == "reference" and cases[0].math == "ieee"
    assert {i.removeprefix("track/fodo_linear/") for i in ids[1:]} == {
        "inhouse/1000/cpu/float64/t1", "inhouse/1000/cpu/float64/t1/fast",
        "xsuite/1000/cpu/float64/t1", "xsuite/1000/cpu/float64/t1/fast"}
    assert all(c.reference_case == ids[0] for c in cases[1:])
    # without --math: the cases of before
    assert [c.case_id for c in plan([scenario], ["inhouse"], [1000], ["cpu"], ["float64"], 1,
                                    ["impactx", "inhouse"], 1)] == ids[:1] + [
        "track/fodo_linear/inhouse/1000/cpu/float64/t1"]


def test_the_option_refuses_a_bad_value_in_one_line_before_heavy_imports(tmp_path) -> None:
    from harness.cli.runs import MATH_SETTINGS

    assert MATH_SETTINGS == MATH_MODES
    probe = ("import json, sys\nfrom typer.testing import CliRunner\nfrom harness.cli import app\n"
             "r = CliRunner().invoke(app, sys.argv[1:])\n"
             "print(json.dumps({'code': r.exit_code, 'stderr': r.stderr,"
             " 'torch': 'torch' in sys.modules}))")
    out = tmp_path / "out"
    for value in ("fastest", "ieee,x87", " , "):
        done = subprocess.run([sys.executable, "-c", probe, "run", "fodo_linear", "--math",
                               value, "--out", str(out)], capture_output=True, text=True,
                              cwd=ROOT, timeout=120,
                              env=dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="300"))
        result = json.loads(done.stdout)
        lines = [line for line in result["stderr"].splitlines() if line.strip()]
        assert result["code"] == 2 and not result["torch"], result
        assert len(lines) == 1 and "--math: expected a comma-separated list of" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("name", ["impactx", "xsuite", "cheetah", "pyat"])
def test_codes_without_a_run_time_fast_math_setting_refuse_it(name: str) -> None:
    from backends.registry import load_backend_class

    cls = load_backend_class(name)
    if not cls.availability().available:
        pytest.skip(f"{name} is not installed")
    scenario = load_scenario("fodo_linear")
    backend = cls()
    assert backend.plan_case(scenario, "cpu", "float64", "ieee")   # as plan()
    refused = backend.plan_case(scenario, "cpu", "float64", "fast")
    assert isinstance(refused, Unsupported)
    assert refused.reason.startswith("math 'fast': ")
    assert backend.common_checks(scenario, "cpu", "float64", math="fast") == refused
    if name == "impactx":
        assert "compiled once" in refused.reason
    if name == "xsuite":
        assert "no run-time compile-flag setting" in refused.reason


def test_the_default_refusal_comes_from_the_declaration_alone() -> None:
    class Plain(Backend):
        name = "plain"
        distribution = "plain"

        @classmethod
        def _import(cls) -> None:
            return None

        def prepare(self, scenario, device="cpu", dtype="float64"):
            raise NotImplementedError

    assert Plain.math_refused("ieee") is None
    assert Plain.math_refused("fast") == Unsupported(
        "math 'fast': plain has no fast-math setting at run time (it runs ['ieee'])")
    unknown = Plain.math_refused("x87")
    assert unknown is not None and "expected one of" in unknown.reason


def test_inhouse_and_compiled_cheetah_declare_fast_where_their_track_is_compiled() -> None:
    from backends.cheetah_compiled import CheetahCompiledBackend, inductor_options
    from backends.inhouse import INDUCTOR_MATH, InhouseBackend

    assert InhouseBackend.math_modes == CheetahCompiledBackend.math_modes == set(MATH_MODES)
    assert set(INDUCTOR_MATH) == set(MATH_MODES)
    assert inductor_options("ieee")["cpp.enable_unsafe_math_opt_flag"] is False
    assert inductor_options("fast") | {} == {**INDUCTOR_MATH["fast"], "cuda.use_fast_math": True}
    backend = InhouseBackend()
    fast = backend.plan_case(load_scenario("fodo_exact"), "cpu", "float64", "fast")
    assert fast and fast.math == "fast"
    for name, words in (("fodo_envelope", "envelope tracker runs eagerly"),
                        ("htu_spin", "spin tracker runs eagerly")):
        refused = backend.plan_case(load_scenario(name), "cpu", "float64", "fast")
        assert isinstance(refused, Unsupported) and words in refused.reason, refused


@needs_compiler
def test_a_fast_inhouse_case_agrees_with_impactx_within_float64_tolerance(tmp_path) -> None:
    """fodo_linear, 10^3 particles: the row of a fast in-house case (the child's case
    function, in this process) is compiled, says math fast and agrees with ImpactX."""
    pytest.importorskip("impactx")
    from backends.impactx import ImpactXBackend
    from harness.model.particles import generate
    from harness.track_case import track_case

    scenario = load_scenario("fodo_linear")
    initial = generate(scenario.beam, 1000)
    np.save(tmp_path / "initial.npy", initial)
    prepared = ImpactXBackend().prepare_planned(ImpactXBackend().planned(scenario))
    np.save(tmp_path / "reference.npy", prepared.track(initial))
    prepared.close()
    case = Case("fodo_linear", str(scenario.source_file), "inhouse", 1000, repeat=1,
                reference="impactx", reference_case="impactx", math="fast",
                initial_path=str(tmp_path / "initial.npy"),
                reference_final_path=str(tmp_path / "reference.npy"))
    [row] = track_case(case)
    assert row["status"] == "ok" and row["math"] == "fast" and row["compiled"] is True, row
    assert row["verdict"] == "agrees", (row["verdict"], row["verdict_detail"])
    assert row["dev_max"] < 1e-12
    # a code without the setting: the case's row is unsupported, with the reason
    [refused] = track_case(case.replace(backend="xsuite"))
    assert refused["status"] == "unsupported" and refused["math"] == "fast"
    assert refused["reason"].startswith("math 'fast': Xsuite has no run-time compile-flag")


@needs_compiler
def test_inductor_never_reuses_a_kernel_across_math_settings(tmp_path, monkeypatch) -> None:
    """The fast flags reach the C++ compiler, and inductor's FX-graph cache misses for the
    fast setting after the IEEE kernels were compiled (then hits for IEEE again)."""
    import torch._inductor.cpp_builder as builder
    from torch._dynamo.utils import counters

    from backends.inhouse import InhouseBackend
    from harness.model.particles import generate

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setenv("TRACKBENCH_INHOUSE_COMPILE", "1")   # the IEEE cases compile too
    flags: list[str] = []
    original = builder._get_ffast_math_flags

    def recorded() -> list[str]:
        made = original()
        flags.extend(made)
        return made

    monkeypatch.setattr(builder, "_get_ffast_math_flags", recorded)
    scenario = load_scenario("fodo_exact")
    initial = generate(scenario.beam, 1000)
    backend = InhouseBackend()
    finals: dict[str, np.ndarray] = {}
    seen: dict[str, list] = {}
    for math in ("ieee", "fast", "ieee"):
        before = dict(counters["inductor"])
        flags.clear()
        made = backend.plan_case(scenario, "cpu", "float64", math)
        assert not isinstance(made, Unsupported)
        prepared = backend.prepare_planned(made)
        finals.setdefault(math, prepared.track(initial))
        assert prepared.compiled is True, prepared.compile_error
        seen.setdefault(math, []).append(
            ({k: counters["inductor"][k] - before.get(k, 0) for k in ("fxgraph_cache_hit",
                                                                      "fxgraph_cache_miss")},
             set(flags)))
    (first_ieee, ieee_flags), (again, _) = seen["ieee"]
    [(fast, fast_flags)] = seen["fast"]
    assert "-fno-unsafe-math-optimizations" in {f"-{f}" for f in ieee_flags}
    assert "ffp-contract=off" in ieee_flags and "ffp-contract=fast" in fast_flags
    assert "fno-unsafe-math-optimizations" not in fast_flags
    assert first_ieee["fxgraph_cache_miss"] > 0
    assert fast["fxgraph_cache_hit"] == 0 and fast["fxgraph_cache_miss"] > 0
    assert again["fxgraph_cache_hit"] > 0
    # the two kernels are not the same code, and agree to round-off
    assert not np.array_equal(finals["fast"], finals["ieee"])
    scale = np.nanmax(np.abs(finals["ieee"]), axis=0)
    assert np.nanmax(np.abs(finals["fast"] - finals["ieee"]) / scale) < 1e-12
