"""``ImpactX.ChrAcc`` with ``ez = 0`` (a chromatic solenoid, as ImpactX's ``run_chracc_sol.py``
example uses it): accepted by the scenario, and the in-house map (the ez -> 0 limit of
ImpactX's ``ChrUniformAcc.H`` formula) equals the impactx wheel particle by particle."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_extension_kinds import _track, element


@pytest.mark.parametrize("bz", [1.5, 0.0])
def test_inhouse_equals_impactx_without_electric_field(bz: float) -> None:
    """float64, 2000 particles, ez = 0: max |in-house - ImpactX| / sigma <= 1e-11."""
    pytest.importorskip("impactx")
    _, theirs, ours = _track("ImpactX.ChrAcc", element("ImpactX.ChrAcc",
                                                        {"ez": 0.0, "bz": bz}))
    assert np.isfinite(theirs).all() and np.isfinite(ours).all()
    deviation = np.abs(ours - theirs).max(axis=0) / theirs.std(axis=0)
    print(f"ChrAcc ez=0 bz={bz}: max |in-house - ImpactX| / sigma = {deviation.max():.2e}")
    assert deviation.max() <= 1e-11, deviation


def test_the_reference_time_through_a_zero_field_chracc_is_the_drift_limit() -> None:
    """ez = 0: the reference keeps its energy and advances t by L / beta (the limit of
    (bg_f - bg_i) / ez), as a drift of the same length."""
    from backends.inhouse.reference import RefState
    from backends.inhouse.translate import _chr_acc_reference
    from harness.model.reference_particle import ReferenceParticle

    ref = RefState.from_reference(ReferenceParticle("electron", 100.0))
    after = _chr_acc_reference(0.7, 0.0, ref)
    assert after.gamma == ref.gamma
    assert after.t == ref.advanced(0.7).t
    # continuous at ez -> 0 (ImpactX's quotient loses digits as ez shrinks: 1e-3 keeps 1e-11)
    near = _chr_acc_reference(0.7, 1e-3, ref)
    assert abs(near.t - after.t) <= 1e-8 * abs(after.t)
