"""An ImpactX example's own ``analysis_*.py`` run on a backend's final particles
(benchmarks/impactx_examples/analysis.py): the stand-in monitor series, every assert by
line with its allclose deviation, statements that need what is not recorded, the IOTA
invariants, and two examples judged end to end by their own analysis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.impactx_examples.analysis import invariants, run_analysis

ANALYSIS = '''\
import numpy as np
import openpmd_api as io

series = io.Series("diags/openPMD/monitor.h5", io.Access.read_only)
last_step = list(series.iterations)[-1]
initial = series.iterations[1].particles["beam"].to_df().set_index("id")
final = series.iterations[last_step].particles["beam"].to_df().set_index("id")
assert len(final) == 3
dpx = (final["momentum_x"] - 2.0 * initial["position_x"]).abs().max()
assert np.allclose([dpx], [0.0], atol=1e-3)
dx = 5.0
lost = io.Series("diags/openPMD/particles_lost.h5", io.Access.read_only)
dx = lost.iterations[0].particles["beam"].to_df()["position_x"].max()
assert np.greater_equal(dx, 0.0)
assert np.allclose(final["position_y"], 1.0, rtol=0.1)
'''


def test_every_assert_is_judged_by_line_and_missing_data_skips_its_statements(
        tmp_path: Path) -> None:
    analysis = tmp_path / "analysis_x.py"
    analysis.write_text(ANALYSIS)
    initial = np.zeros((4, 6))
    initial[:, 0] = [1.0, 2.0, 3.0, 4.0]
    final = initial.copy()
    final[:, 1] = 2.0 * initial[:, 0] + np.array([0.0, 5e-4, 0.0, 0.0])
    final[:, 2] = [1.0, 1.05, 1.2, 1.0]
    final[3] = np.nan                       # lost: left out of the final beam, as ImpactX
    record = run_analysis(analysis, initial, final)
    checks = {c["line"]: c for c in record["checks"]}
    assert set(checks) == {8, 10, 15}
    assert checks[8]["holds"] and "worst" not in checks[8]
    assert checks[10]["holds"] and checks[10]["worst"] == pytest.approx(0.5)
    assert checks[10]["atol"] == 1e-3
    assert not checks[15]["holds"]          # 1.2 is outside rtol 0.1 of 1.0
    assert checks[15]["worst"] == pytest.approx(0.2 / (1e-8 + 0.1))
    skipped = {s["line"]: s for s in record["skipped"]}
    assert "not recorded" in skipped[12]["reason"]
    # the assignment that needed the lost particles is skipped, and the assert after it
    # does not read the earlier dx = 5.0
    assert skipped[13]["reason"].startswith("needs lost")
    assert skipped[14]["assert"] and 14 not in checks


def test_iota_invariants_reduce_to_the_quadratic_form_without_the_insert() -> None:
    """tn = 0: H = (xn^2 + yn^2 + pxn^2 + pyn^2)/2, I = Jz^2 + pxn^2 + xn^2 (ImpactX
    ``NonlinearLensInvariants.H``); with tn != 0 the potentials add."""
    rng = np.random.default_rng(1)
    p = rng.normal(scale=1e-3, size=(50, 6))
    alpha, beta, cn = 0.3, 2.0, 0.01
    h, i = invariants(p, alpha, beta, 0.0, cn)
    xn, yn = p[:, 0] / (cn * np.sqrt(beta)), p[:, 2] / (cn * np.sqrt(beta))
    pxn = p[:, 1] * np.sqrt(beta) / cn + alpha * xn
    pyn = p[:, 3] * np.sqrt(beta) / cn + alpha * yn
    assert np.allclose(h, (xn**2 + yn**2 + pxn**2 + pyn**2) / 2, rtol=1e-14)
    assert np.allclose(i, (xn * pyn - yn * pxn) ** 2 + pxn**2 + xn**2, rtol=1e-14)
    h4, _ = invariants(p, alpha, beta, 0.4, cn)
    assert np.all(np.abs(h4 - h) > 0)


@pytest.mark.parametrize("script", ["multipole/run_sextupole_kick.py",
                                    "iota_lens/run_iotalens.py"])
def test_examples_without_moment_checks_judged_by_their_own_analysis(script: str) -> None:
    """The sextupole kick (kick ratios, atol 5.1e-12) and the IOTA lens (per-particle
    invariants H, I from the monitor's own parameters): both backends pass every assert
    of the example's analysis, as the example's own final beam does."""
    pytest.importorskip("impactx")
    from benchmarks.impactx_examples.suite import examples_folder, run_example

    examples = examples_folder()
    outcome = run_example(examples / script, examples, timeout=120)
    assert outcome.status == "reproduced", outcome.reasons
    assert outcome.checked and all(c.startswith("analysis_") for c in outcome.checked)
    assert outcome.backends == {"impactx": "within", "inhouse": "within"}
    assert max(outcome.worst.values()) <= 1.0
