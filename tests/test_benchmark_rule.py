"""The impactx-benchmarks validation rule (harness.benchmark_rule) and its published data."""

import math

import pytest

from harness import benchmark_rule as rule
from harness import published

REF = {"sigma_x": 1.0e-3, "sigma_y": 2.0e-3, "emit_x": 1.0e-9, "emit_y": 1.0e-9}


def _scaled(factor: float) -> dict[str, float]:
    return {k: v * (1.0 + factor if k == "sigma_x" else 1.0) for k, v in REF.items()}


def test_widened_tolerance_is_tol_plus_three_over_sqrt_n():
    assert rule.widened_tolerance(5e-3, 10_000) == pytest.approx(5e-3 + 0.03)
    assert rule.widened_tolerance(0.0, 1) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        rule.widened_tolerance(1e-3, 0)


def test_correct_within_widened_tolerance_incorrect_beyond():
    n = 1_000_000  # 3/sqrt(N) = 3e-3: fodo limit 8e-3
    assert rule.classify(_scaled(7.9e-3), REF, n, "fodo_chromatic").verdict == "correct"
    out = rule.classify(_scaled(8.1e-3), REF, n, "fodo_chromatic")
    assert (out.verdict, out.worst_moment) == ("incorrect", "sigma_x")
    assert out.worst_error == pytest.approx(8.1e-3)
    # the same deviation is correct at N = 1e4, where the sampling term is 3e-2
    assert rule.classify(_scaled(8.1e-3), REF, 10_000, "fodo_chromatic").verdict == "correct"


def test_unconverged_only_single_precision_with_correct_double_sibling():
    bad = _scaled(0.2)
    assert rule.classify(bad, REF, 10_000, "htu", precision="single",
                         double_sibling_correct=True).verdict == "unconverged"
    assert rule.classify(bad, REF, 10_000, "htu", precision="single").verdict == "incorrect"
    assert rule.classify(bad, REF, 10_000, "htu", precision="double",
                         double_sibling_correct=True).verdict == "incorrect"


def test_model_mismatch_takes_precedence_and_non_finite_fails():
    assert rule.classify(REF, REF, 1000, "fodo_exact",
                         model_mismatch=True).verdict == "model_mismatch"
    nan = dict(REF, emit_y=math.nan)
    out = rule.classify(nan, REF, 10_000, "htu")
    assert (out.verdict, out.worst_moment, out.worst_error) == ("incorrect", "emit_y", math.inf)


def test_no_shared_moment_is_not_correct_and_unknown_scenario_refused():
    assert rule.compare({"a": 1.0}, REF, rule.OBSERVABLES["htu"], 0.03, 100)[2] == \
        "no-shared-observables"
    with pytest.raises(ValueError, match="scenario"):
        rule.classify(REF, REF, 100, "drift")


def test_published_impactx_benchmarks_loads_with_its_verdicts():
    data = published.load("impactx-benchmarks")
    assert data.source.repository == "BLAST-ImpactX/impactx-benchmarks"
    assert data.source.machine["cores_per_socket"] == "64"
    fig = data.figures["htu_cpu_fp64_ieee"]
    assert fig.lattice == "bench_htu" and fig.threads is None
    impactx = next(s for s in fig.series if s.config == "impactx-cpu-simd-dp")
    point = next(p for p in impactx.points if p.particles == 1_000_000)
    assert (point.cores, point.physics) == ("32r x 2t", "correct")
    assert point.track_s == pytest.approx(77889747e-9)
    assert data.figures["htu_spin_cpu_fp64_ieee"].lattice == "bench_htu_spin"
    assert not data.figures["spacecharge_2p5d_cpu_fp64_ieee"].not_reproducible
    assert any(s.backend is None for s in data.figures["htu_cpu_fp64_ieee"].series)
    assert {s.math for s in data.figures["fodo_exact_cpu_fp64_fm"].series} == {"fast-math"}
    published.load("napac25")  # the older file still loads through the extended schema
