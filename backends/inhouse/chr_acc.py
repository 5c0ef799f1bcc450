"""Uniform acceleration in a solenoid, chromatic (ImpactX ``src/elements/ChrUniformAcc.H``,
class ``ChrAcc``): a constant on-axis electric field with an overlapping uniform solenoid
field, the Hamiltonian expanded to second order in the transverse variables with the exact
pt dependence.

Strengths follow ImpactX: ``ez`` [1/m] = q E_z / (m c^2) (the gain of gamma per metre; 0:
a chromatic solenoid, ImpactX's formula taken at its limit), ``bz`` [1/m] = q B_z / (m c)
(alpha = bz/2 is the solenoid focusing constant).
The reference particle gains energy: gamma -> gamma + ez L. Inside, ImpactX converts the
momenta to "dynamic" units (normalised by m c instead of the reference momentum): px, py, pt
are multiplied by the initial (beta gamma) before the slice and divided by the final one
after it.
"""

from __future__ import annotations

import torch

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Columns, Kernel
from backends.inhouse.reference import RefState


def reference_after(length: nm.Scalar, ez: nm.Scalar, ref: RefState) -> RefState:
    """The reference particle after the element: gamma + ez L (``ChrUniformAcc.H``
    reference push, ``refpart.pt = pt - ez ds``)."""
    return ref.with_gamma(ref.gamma + ez * length)


def _sin_over_alpha(theta: torch.Tensor, drift_log: torch.Tensor, alpha: nm.Scalar,
                    mode: str) -> torch.Tensor:
    """sin(theta)/alpha with theta = alpha * drift_log: the direct quotient for a constant
    alpha != 0 (ImpactX's formula), drift_log for alpha = 0 (its limit) and
    drift_log * sin(theta)/theta, finite at 0, for a differentiable alpha."""
    if mode == "direct":
        return torch.sin(theta) / alpha
    if mode == "zero":
        return drift_log
    small = theta.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(theta), theta)
    sinc = torch.where(small, 1.0 - theta * theta / 6.0, torch.sin(safe) / safe)
    return drift_log * sinc


def _slice_push(columns: Columns, coeffs: tuple):
    """One slice (``ChrUniformAcc.H`` ``operator()``), with the survival mask of ImpactX's
    domain check: a particle with (pt_ref + pt)^2 <= 1 before or after the slice (no
    longitudinal momentum left) is lost; its coordinates are then NaN."""
    x, px, y, py, t, pt = columns
    pti_ref, ptf_ref, bgi, bgf, ez, slice_ds, alpha, mode = coeffs
    px = px * bgi
    py = py * bgi
    pt = pt * bgi
    pti_tot = pti_ref + pt
    ptf_tot = ptf_ref + pt
    wi = pti_tot * pti_tot - 1.0
    wf = ptf_tot * ptf_tot - 1.0
    ok = (wi > 0.0) & (wf > 0.0)
    # double-where guard: lost particles are evaluated at a harmless point, then set to NaN
    pzi_tot = torch.sqrt(torch.where(ok, wi, torch.ones_like(wi)))
    pzf_tot = torch.sqrt(torch.where(ok, wf, torch.ones_like(wf)))
    # ImpactX: drift_log = log(numer/denom)/ez, numer = pz_tot,f - pt_tot,f,
    # denom = pz_tot,i - pt_tot,i. For a small gain ez ds/gamma the ratio is near 1 and the
    # logarithm loses eps/(ez ds/gamma) relative; here log1p of
    # numer/denom - 1 = ez ds [1 - (pt_f + pt_i)/(pz_f + pz_i)]/denom (pz_f^2 - pz_i^2 =
    # pt_f^2 - pt_i^2 and pt_f - pt_i = -ez ds), which keeps it.
    denom = -pti_tot + pzi_tot
    pz_sum = pzf_tot + pzi_tot
    slope = 1.0 - (ptf_tot + pti_tot) / pz_sum
    if isinstance(ez, float) and ez == 0.0:
        # no electric field: the limit ez -> 0 of log1p(ez c)/ez is c (= ds/pz_tot, the
        # solenoid's own "drift" in these units), as the impactx 26.10 wheel tracks ez = 0
        # (measured against it, tests/test_chr_acc_zero_field.py)
        drift_log = slice_ds * slope / denom
    else:
        drift_log = torch.log1p(ez * slice_ds * slope / denom) / ez
    theta = alpha * drift_log
    cos_t = torch.cos(theta)
    sin_t = torch.sin(theta)
    s_over_a = _sin_over_alpha(theta, drift_log, alpha, mode)
    # focusing
    xf = cos_t * x + s_over_a * px
    pxf = -alpha * sin_t * x + cos_t * px
    yf = cos_t * y + s_over_a * py
    pyf = -alpha * sin_t * y + cos_t * py
    # the symplectic update of t (from the particle's initial x, px, y, py). ImpactX writes
    # (pz_tot,f - pz_ref,f - pz_tot,i + pz_ref,i)/ez, in which pz_tot - pz_ref (pz ~ gamma)
    # and then the two differences cancel: about eps gamma/|ez| of t (3e-13 m at
    # gamma = 4000, ez = 2/m). With pz_f^2 - pz_i^2 = pt_f^2 - pt_i^2 and pt_f - pt_i =
    # -ez ds, (pz_f - pz_i)/ez = -ds (pt_f + pt_i)/(pz_f + pz_i) for the particle and for the
    # reference, so the same quantity is -ds [(pt_f + pt_i)/(pz_f + pz_i)]_ref^tot, whose
    # remaining cancellation (first order in pt) costs eps ds.
    ratio_ref = (ptf_ref + pti_ref) / (bgf + bgi)
    t_out = t - slice_ds * ((ptf_tot + pti_tot) / pz_sum - ratio_ref)
    # (1/pz_i - 1/pz_f)/(2 ez) = (pz_f - pz_i)/(2 ez pz_i pz_f) = -ds (pt_f + pt_i)/(2 (pz_f +
    # pz_i) pz_i pz_f), without ImpactX's cancellation and division by ez
    inverse_gap = -slice_ds * (ptf_tot + pti_tot) / (2.0 * pz_sum * pzi_tot * pzf_tot)
    t_out = t_out + inverse_gap * ((py - alpha * x) ** 2 + (px + alpha * y) ** 2)
    # rotation
    x_out = cos_t * xf + sin_t * yf
    px_out = cos_t * pxf + sin_t * pyf
    y_out = -sin_t * xf + cos_t * yf
    py_out = -sin_t * pxf + cos_t * pyf
    nan = torch.full_like(x_out, float("nan"))
    out = (x_out, px_out / bgf, y_out, py_out / bgf, t_out, pt / bgf)
    return tuple(torch.where(ok, c, nan) for c in out), ok


def _push(columns: Columns, coeffs: tuple):
    alive = None
    for slice_coeffs in coeffs:
        columns, ok = _slice_push(columns, slice_coeffs)
        alive = ok if alive is None else alive & ok
    return columns, alive


def chr_acc_kernel(length: nm.Scalar, ez: nm.Scalar, bz: nm.Scalar, ref: RefState,
                   nslice: int = 1) -> Kernel:
    """``ChrAcc`` of ``length`` [m], ``ez`` [1/m], ``bz`` [1/m], with ``ref`` the
    reference particle before the element.

    ImpactX pushes ``nslice`` slices of L/nslice, each with the reference energy at its own
    start and end (``compute_constants``: pt_ref,f = refpart.pt after the slice,
    pt_ref,i = pt_ref,f + ez ds, (beta gamma)_i,f = sqrt(pt_ref^2 - 1)); the slices are
    pushed the same way here.
    """
    mode = "series" if nm.is_tensor(bz) else "direct" if bz != 0.0 else "zero"
    slice_ds = length / nslice
    alpha = 0.5 * bz
    slices = []
    state = ref
    for _ in range(nslice):
        after = reference_after(slice_ds, ez, state)
        # as ImpactX: pt_ref,f = refpart.pt after the slice, pt_ref,i = pt_ref,f + ez ds
        ptf_ref = -after.gamma
        pti_ref = ptf_ref + ez * slice_ds
        bgi = nm.sqrt(pti_ref * pti_ref - 1.0)
        bgf = nm.sqrt(ptf_ref * ptf_ref - 1.0)
        slices.append((pti_ref, ptf_ref, bgi, bgf, ez, slice_ds, alpha, mode))
        state = after
    return Kernel(_push, tuple(slices), loses_particles=True)
