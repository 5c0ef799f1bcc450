"""Sector-bend maps (angle [rad] = length / rc, rc the signed bending radius [m]).

* linear ``Sbend``: ImpactX ``src/elements/Sbend.H``;
* linear combined-function ``CFbend`` (sector bend plus quadrupole ``k`` [1/m^2]):
  ``src/elements/CFbend.H``;
* exact ``ExactSbend`` (exact map of a uniform field with hard edges normal to the
  reference orbit; D. L. Bruhwiler et al., EPAC 98, 1171; E. Forest et al., Part. Accel. 45,
  65 (1994)): ``src/elements/ExactSbend.H``. Particles outside the map's domain are lost;
  given its field B, the same map on the radius (B rho)/B (:func:`exact_sbend_field_kernel`);
* exact combined-function ``ExactCFbend``: ``src/elements/ExactCFbend.H``, symplectic
  splitting with the exact sector bend (map 1) and the curvilinear multipole kicks of
  orders 1 (quadrupole) to 4 (decapole), normal and skew (map 2);
* pole-face edge ``DipEdge`` (linear model, ``src/elements/DipEdge.H``): thin focusing
  px += tan(psi)/rc x, py += (g K2 (1 + sin^2 psi)/(rc^2 cos^3 psi) - tan(psi)/rc) y.

Bend matrices are written with sin(t)/t, (1 - cos t)/t and (t - sin t)/t^2
(:func:`backends.inhouse.numeric.sinc_functions`), equal to ImpactX's rc-based entries for
a non-zero angle and finite and differentiable at angle 0 (a drift).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch

from backends.inhouse import integrators
from backends.inhouse import numeric as nm
from backends.inhouse.drift import exact_drift_coeffs, exact_drift_push
from backends.inhouse.maps import Columns, Entries, Kernel
from backends.inhouse.reference import RefState
from harness.model.reference_particle import C_LIGHT


def sbend_entries(length: nm.Scalar, angle: nm.Scalar, ref: RefState) -> Entries:
    """Linear sector bend (``Sbend.H``, entries R11..R56 of its ``transport_map``)."""
    beta = ref.beta
    sinc, versinc, tsinc = nm.sinc_functions(angle)
    sin_t = nm.sin(angle)
    cos_t = nm.cos(angle)
    r16 = -length * versinc / beta
    r26 = -sin_t / beta
    return {
        (0, 0): cos_t, (0, 1): length * sinc, (0, 5): r16,
        (1, 0): -sin_t * angle / length, (1, 1): cos_t, (1, 5): r26,
        (2, 3): length,
        (4, 0): -r26, (4, 1): -r16,
        # ImpactX's rc (sin(t)/beta^2 - t), rewritten without its cancellation at small t
        (4, 5): length / (ref.beta_gamma**2) - length * angle * tsinc / (beta * beta),
    }


def cfbend_entries(length: nm.Scalar, angle: nm.Scalar, k: nm.Scalar,
                   ref: RefState) -> Entries:
    """Linear combined-function bend (``CFbend.H``): horizontal strength gx = k + 1/rc^2,
    vertical gy = -k."""
    beta = ref.beta
    h = angle / length  # 1/rc
    cx, sx, dx, ex = nm.focusing_functions(k + h * h, length)
    cy, sy = nm.focusing_functions(-k, length, derived=False)
    gx = k + h * h
    return {
        (0, 0): cx, (0, 1): sx, (0, 5): -dx * h / beta,
        (1, 0): -gx * sx, (1, 1): cx, (1, 5): -sx * h / beta,
        (2, 2): cy, (2, 3): sy, (3, 2): k * sy, (3, 3): cy,
        (4, 0): sx * h / beta, (4, 1): dx * h / beta,
        (4, 5): length / (ref.beta_gamma**2) - ex * h * h / (beta * beta),
    }


def dipedge_entries(psi: nm.Scalar, length: nm.Scalar, angle: nm.Scalar,
                    gap_k2: nm.Scalar = 0.0) -> Entries:
    """Linear pole-face map (``DipEdge.H`` linear model) with rc = length/angle of its bend;
    ``gap_k2`` = g K2 [m] (gap times fringe integral; 0 for a hard edge)."""
    h = angle / length  # 1/rc
    r21 = nm.tan(psi) * h
    sin_psi = nm.sin(psi)
    cos_psi = nm.cos(psi)
    vf = (1.0 + sin_psi * sin_psi) / (cos_psi**3) * gap_k2 * h * h
    return {(1, 0): r21, (3, 2): vf - r21}


def _exact_bend_core(columns: Columns, rc, sin_phi, cos_phi, slice_phi, ibeta):
    """ImpactX's exact sector-bend formulas (``ExactSbend.H``) for one slice; returns the
    new (x, px, y, t) and the domain mask (particles with |px| >= p_perp are outside).

    ImpactX writes pperp = sqrt(pt^2 - 2 pt/beta - py^2 + 1), pzi = sqrt(pperp^2 - px^2),
    pxf = px cos(phi) + (pzi - rho/rc) sin(phi), pzf = sqrt(pperp^2 - pxf^2),
    x_f = -rc + rho cos(phi) + rc (pzf + px sin(phi) - pzi cos(phi)),
    t_f = t - theta rc (pt - 1/beta) - phi rc/beta with rho = rc + x and
    theta = phi + asin(px/pperp) - asin(pxf/pperp). The same map is evaluated here with
    pz - 1 = (pperp^2 - 1 - px^2)/(1 + pz), so that no O(rc) or O(1) terms cancel:
    pxf = px cos(phi) + (pzi - 1 - x/rc) sin(phi),
    x_f = x cos(phi) + rc ((pzf - 1) - (pzi - 1) cos(phi) + px sin(phi)),
    t_f = t - theta rc pt + (theta - phi) rc/beta.
    """
    x, px, y, py, t, pt = columns
    pperp2_minus_one = pt * pt - 2.0 * ibeta * pt - py * py
    pperp2 = 1.0 + pperp2_minus_one
    ok1 = pperp2 > px * px
    pperp2_minus_one = torch.where(ok1, pperp2_minus_one, 0.0)
    pperp2 = torch.where(ok1, pperp2, 1.0)
    px_safe = torch.where(ok1, px, 0.0)
    pperp = torch.sqrt(pperp2)
    pzi_minus_one = nm.sqrt1p_minus_one(pperp2_minus_one - px_safe * px_safe)
    px_out = px_safe * cos_phi + (pzi_minus_one - x / rc) * sin_phi
    ok = ok1 & (pperp2 > px_out * px_out)
    px_out_safe = torch.where(ok, px_out, 0.0)
    pzf_minus_one = nm.sqrt1p_minus_one(pperp2_minus_one - px_out_safe * px_out_safe)
    dtheta = torch.asin(px_safe / pperp) - torch.asin(px_out_safe / pperp)
    theta = slice_phi + dtheta
    x_out = x * cos_phi + rc * (pzf_minus_one - pzi_minus_one * cos_phi + px_safe * sin_phi)
    y_out = y + theta * rc * py
    t_out = t - theta * rc * pt + dtheta * rc * ibeta
    return x_out, px_out, y_out, t_out, ok


def _exact_sbend_push(columns: Columns, coeffs: tuple):
    x, px, y, py, t, pt = columns
    rc, sin_phi, cos_phi, phi, ibeta = coeffs
    x_out, px_out, y_out, t_out, ok = _exact_bend_core(columns, rc, sin_phi, cos_phi, phi,
                                                       ibeta)
    # particles outside the domain keep their coordinates and are lost (ImpactX make_invalid)
    new = (torch.where(ok, x_out, x), torch.where(ok, px_out, px),
           torch.where(ok, y_out, y), py, torch.where(ok, t_out, t), pt)
    return new, ok


def _exact_sbend_or_drift_push(columns: Columns, coeffs: tuple):
    """Exact bend, or the exact drift where the (tensor) angle is exactly 0 (``ExactSbend.H``
    treats phi = 0 as an exact drift)."""
    bend_coeffs, drift_coeffs, straight = coeffs
    bent, ok = _exact_sbend_push(columns, bend_coeffs)
    drifted = exact_drift_push(columns, drift_coeffs)
    out = tuple(torch.where(straight, d, b) for d, b in zip(drifted, bent, strict=True))
    return out, ok | straight


def exact_sbend_kernel(length: nm.Scalar, angle: nm.Scalar, ref: RefState) -> Kernel:
    """Exact sector bend of ``angle`` [rad] over ``length`` [m] (``ExactSbend.H``). The map
    is exact, so ImpactX's slices compose to the one full-length map applied here."""
    ibeta = 1.0 / ref.beta
    drift_coeffs = exact_drift_coeffs(length, ref)
    straight = nm.is_zero(angle)
    if straight is True:
        return Kernel(exact_drift_push, drift_coeffs)
    angle_safe = nm.replace_where(straight, angle, 1.0)
    rc = length / angle_safe
    bend_coeffs = (rc, nm.sin(angle_safe), nm.cos(angle_safe), angle_safe, ibeta)
    if straight is False:
        return Kernel(_exact_sbend_push, bend_coeffs, loses_particles=True)
    return Kernel(_exact_sbend_or_drift_push, (bend_coeffs, drift_coeffs, straight),
                  loses_particles=True)


def exact_sbend_field_kernel(length: nm.Scalar, phi: nm.Scalar, field: nm.Scalar,
                             ref: RefState) -> Kernel:
    """ImpactX ``ExactSbend`` given its field ``field`` = B [T] != 0 and angle ``phi`` [rad]
    (``ExactSbend.H`` ``rc()`` and ``compute_constants``): the radius rc = (B rho)/B with
    the reference particle's rigidity B rho = m c beta gamma / q (signed with the charge,
    ``ReferenceParticle.H`` ``rigidity_Tm``), the angle sign(ds rc) |phi|; the map is the
    exact bend of that angle on that radius, whose arc rc * angle is not ``length`` in
    general (ImpactX uses ``ds`` only for the sign and the s position)."""
    arc, angle = field_bend_geometry(length, phi, field, ref)
    return exact_sbend_kernel(arc, angle, ref)


def field_bend_geometry(length: nm.Scalar, phi: nm.Scalar, field: nm.Scalar, ref: RefState
                        ) -> tuple[nm.Scalar, nm.Scalar]:
    """The arc [m] and angle [rad] an ``ExactSbend`` given its field bends through
    (:func:`exact_sbend_field_kernel`): angle = sign(ds rc) |phi|, arc = rc angle,
    rc = (B rho)/B."""
    rigidity = ref.mass_eV * ref.beta_gamma / (C_LIGHT * ref.charge_qe)
    rc = rigidity / field
    angle = _sign(length * rc) * nm.absolute(phi)
    return rc * angle, angle


def _sign(value: nm.Scalar) -> nm.Scalar:
    """+1 or -1 with the sign of ``value`` (a float or a tensor; never 0 here)."""
    if isinstance(value, torch.Tensor):
        return torch.where(value < 0, -1.0, 1.0).to(value.dtype)
    return math.copysign(1.0, value)


def _cfbend_map1_push(columns: Columns, coeffs: tuple) -> Columns:
    """Exact sector bend of one sub-step; outside the domain the particle is left unchanged
    and not lost (``ExactCFbend.H`` map1)."""
    x, px, y, py, t, pt = columns
    rc, sin_phi, cos_phi, slice_phi, ibeta = coeffs
    x_out, px_out, y_out, t_out, ok = _exact_bend_core(columns, rc, sin_phi, cos_phi,
                                                       slice_phi, ibeta)
    return (torch.where(ok, x_out, x), torch.where(ok, px_out, px),
            torch.where(ok, y_out, y), py, torch.where(ok, t_out, t), pt)


def _cfbend_map2_push(columns: Columns, coeffs: tuple) -> Columns:
    """Curvilinear quadrupole kick (``ExactCFbend.H`` map2, multipole order n = 2):
    dpx = -rho ln(rho) kn, dpy = (y/rc) kn with rho = 1 + x/rc, kn = rc k."""
    x, px, y, py, t, pt = columns
    tau, rc, kn = coeffs
    u = x / rc
    dpx = -(1.0 + u) * torch.log1p(u) * kn
    dpy = y / rc * kn
    return (x, px + tau * dpx, y, py + tau * dpy, t, pt)


#: Multipole orders N (k_normal[N], k_skew[N]) whose curvilinear kick ImpactX's
#: ``ExactCFbend`` map2 implements: quadrupole to decapole (higher ones it ignores).
CFBEND_ORDERS: tuple[int, ...] = (1, 2, 3, 4)


class _Poly:
    """Exact polynomial in u = x/rc, v = y/rc and L = ln(1 + u) (L at most linearly):
    ``{(power of u, power of v, power of L): Fraction}``. ImpactX's map2 formulas are
    written with it once, at import, to derive their series in u."""

    def __init__(self, terms: dict[tuple[int, int, int], Fraction]):
        self.terms = {k: c for k, c in terms.items() if c}

    @staticmethod
    def of(value) -> _Poly:
        return value if isinstance(value, _Poly) else _Poly({(0, 0, 0): Fraction(value)})

    def __add__(self, other) -> _Poly:
        out = dict(self.terms)
        for k, c in _Poly.of(other).terms.items():
            out[k] = out.get(k, Fraction(0)) + c
        return _Poly(out)

    __radd__ = __add__

    def __neg__(self) -> _Poly:
        return _Poly({k: -c for k, c in self.terms.items()})

    def __sub__(self, other) -> _Poly:
        return self + (-_Poly.of(other))

    def __rsub__(self, other) -> _Poly:
        return _Poly.of(other) - self

    def __mul__(self, other) -> _Poly:
        out: dict[tuple[int, int, int], Fraction] = {}
        for (i, j, k), c in self.terms.items():
            for (a, b, d), e in _Poly.of(other).terms.items():
                if k + d > 1:
                    raise ValueError("L enters ImpactX's kicks at most linearly")
                key = (i + a, j + b, k + d)
                out[key] = out.get(key, Fraction(0)) + c * e
        return _Poly(out)

    __rmul__ = __mul__


def _kick_polynomials() -> dict[int, tuple[_Poly, ...]]:
    """ImpactX ``ExactCFbend.H`` map2 per order n (1 quadrupole ... 4 decapole): the
    factors of kn and ks in dpx, then in dpy, as written there (rho = 1 + u)."""
    u = _Poly({(1, 0, 0): Fraction(1)})
    v = _Poly({(0, 1, 0): Fraction(1)})
    ln = _Poly({(0, 0, 1): Fraction(1)})
    rho = 1 + u
    r2 = rho * rho
    v2 = v * v
    q = Fraction
    return {
        1: (-1 * rho * ln, v * rho, v, q(1, 2) * (r2 - 1)),
        2: (q(1, 4) * rho * (1 + 2 * v2 - r2 + 2 * ln), v * rho * ln,
            q(1, 2) * v * (r2 - 1), q(1, 4) * (1 - 2 * v2 - r2 + 2 * r2 * ln)),
        3: (q(-1, 4) * (rho - rho * r2 + (rho - 2 * v2 * rho + rho * r2) * ln),
            q(-1, 12) * v * rho * (3 + 2 * v2 - 3 * r2 + 6 * ln),
            q(-1, 12) * v * (-3 + 2 * v2 + 3 * r2 - 6 * r2 * ln),
            q(-1, 16) * ((-1 + 4 * v2 - r2) * (-1 + r2) + 4 * r2 * ln)),
        4: (q(-1, 192) * rho * (8 * v2 * v2 - 24 * v2 * (-1 + r2) + 3 * (-5 + 4 * r2 + r2 * r2)
                                + 12 * (-1 + 4 * v2 - 2 * r2) * ln),
            q(1, 12) * v * rho * (3 * (-1 + r2) + (2 * v2 - 3 * (1 + r2)) * ln),
            q(-1, 48) * v * ((-1 + r2) * (4 * v2 - 3 * (1 + r2)) + 12 * r2 * ln),
            q(1, 192) * (3 + 8 * v2 * v2 + 12 * r2 - 15 * r2 * r2 + 24 * v2 * (-1 + r2)
                         + 12 * r2 * (2 - 4 * v2 + r2) * ln)),
    }


#: Terms of the series in u kept below :data:`_SERIES_U` (0.1^22 < 1e-22).
_SERIES_TERMS = 22
#: |u| below which a kick factor is summed from its series in u.
_SERIES_U = 0.1


@dataclass(frozen=True)
class _Factor:
    """One factor of kn or ks in a kick, by power of v: ``{power of v: (polynomial part
    in u, coefficient of L in u, lowest power m of the series, the series from u^m)}``
    (coefficients low to high, floats)."""

    by_v: tuple[tuple[int, tuple[float, ...], tuple[float, ...], int, tuple[float, ...]], ...]


def _factor(poly: _Poly) -> _Factor:
    """The series in u of each v-power's coefficient, exact (``Fraction``) then rounded:
    P(u) + Q(u) ln(1 + u) with ln(1 + u) = sum (-1)^(i+1) u^i / i; its O(1) terms cancel
    down to u^m (the straight multipole's power), which the series keeps exactly."""
    log_series = [Fraction(0)] + [Fraction((-1) ** (i + 1), i) for i in range(1, 40)]
    out = []
    for power in sorted({j for (_, j, _) in poly.terms}):
        p = [Fraction(0)] * 8
        qq = [Fraction(0)] * 8
        for (i, j, k), c in poly.terms.items():
            if j == power:
                (qq if k else p)[i] += c
        series = list(p) + [Fraction(0)] * 40
        for i, c in enumerate(qq):
            for jj, d in enumerate(log_series):
                if i + jj < len(series):
                    series[i + jj] += c * d
        m = next(i for i, c in enumerate(series) if c)
        out.append((power, tuple(float(c) for c in p), tuple(float(c) for c in qq), m,
                    tuple(float(c) for c in series[m:m + _SERIES_TERMS])))
    return _Factor(tuple(out))


#: Order n -> the factors of (kn, ks) in dpx and (kn, ks) in dpy.
_KICKS: dict[int, tuple[_Factor, ...]] = {
    n: tuple(_factor(poly) for poly in polys) for n, polys in _kick_polynomials().items()}


def _horner(coeffs: Sequence[float], u):
    out = coeffs[-1] + 0.0 * u
    for c in reversed(coeffs[:-1]):
        out = out * u + c
    return out


def _evaluate(factor: _Factor, u: torch.Tensor, v: torch.Tensor, small: torch.Tensor,
              u_far: torch.Tensor, ln_far: torch.Tensor) -> torch.Tensor:
    """A kick factor at (u, v): below :data:`_SERIES_U` from its series (accurate to
    round-off, where the closed form cancels to u^m), else from the closed form."""
    total = torch.zeros_like(u)
    for power, p, q, m, series in factor.by_v:
        near = u ** m * _horner(series, u) if m else _horner(series, u)
        far = _horner(p, u_far) + _horner(q, u_far) * ln_far
        term = torch.where(small, near, far)
        total = total + (v ** power * term if power else term)
    return total


def _curvilinear_kick(u: torch.Tensor, v: torch.Tensor, n: int, kn, ks
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(dpx, dpy) per unit length of the curvilinear multipole of order ``n`` (``n`` = 1
    quadrupole ... 4 decapole; ``ExactCFbend.H`` map2, ``case n + 1``), with u = x/rc,
    v = y/rc and kn, ks the strengths times rc^n.

    The published formulas are polynomials in rho = 1 + u and ln(rho) whose O(1) terms
    cancel down to u^n (the straight multipole): evaluated as written they lose
    eps / u^n of the kick (all of it for a nearly straight bend, rc = 1e7 m in ImpactX's
    ``run_exact_cfbend_multipole.py``). The impactx 26.10 wheel keeps the straight limit
    (measured), so here each is summed from its exact series in u below |u| = 0.1."""
    if n not in _KICKS:
        raise ValueError(f"ExactCFbend: no curvilinear kick of order {n} (ImpactX "
                         f"implements orders {CFBEND_ORDERS})")
    small = torch.abs(u) < _SERIES_U
    u_far = torch.where(small, torch.full_like(u, 0.5), u)
    ln_far = torch.log1p(u_far)
    fxn, fxs, fyn, fys = (_evaluate(f, u, v, small, u_far, ln_far) for f in _KICKS[n])
    return fxn * kn + fxs * ks, fyn * kn + fys * ks


def _cfbend_multipole_push(columns: Columns, coeffs: tuple) -> Columns:
    """Curvilinear multipole kick of every order (``ExactCFbend.H`` map2)."""
    x, px, y, py, t, pt = columns
    tau, rc, scaled = coeffs
    u = x / rc
    v = y / rc
    dpx: nm.Scalar = 0.0
    dpy: nm.Scalar = 0.0
    for n, kn, ks in scaled:
        kx, ky = _curvilinear_kick(u, v, n, kn, ks)
        dpx = dpx + kx
        dpy = dpy + ky
    return (x, px + tau * dpx, y, py + tau * dpy, t, pt)


def exact_cfbend_maps(length: nm.Scalar, angle: nm.Scalar, k: nm.Scalar, ref: RefState,
                      strengths: tuple[tuple[int, nm.Scalar, nm.Scalar], ...] | None = None):
    """``(map_coeffs, rc)``: ``map_coeffs(index, tau) -> (push, coefficients)`` of
    ``ExactCFbend.H``'s two maps (1 the exact sector bend, 2 the curvilinear kicks; also
    stepped by the spin integrator, :mod:`backends.inhouse.spin`) and the radius [m]
    (arguments as :func:`exact_cfbend_kernel`)."""
    ibeta = 1.0 / ref.beta
    # with components, rc = 1 / (angle / length) as ImpactX computes it from k_normal[0]
    rc = length / angle if strengths is None else 1.0 / (angle / length)
    kn = rc * k
    scaled = None if strengths is None else tuple(
        (n, rc ** n * kn_n, rc ** n * ks_n) for n, kn_n, ks_n in strengths)

    def map_coeffs(index: int, tau):
        if index == 1:
            slice_phi = tau / rc
            return _cfbend_map1_push, (rc, nm.sin(slice_phi), nm.cos(slice_phi), slice_phi,
                                       ibeta)
        if scaled is not None:
            return _cfbend_multipole_push, (tau, rc, scaled)
        return _cfbend_map2_push, (tau, rc, kn)

    return map_coeffs, rc


def curvilinear_field(x, y, rc, strengths) -> tuple:
    """(Bx, By) [1/m], normalised by the rigidity, of ``ExactCFbend.H`` map3 without its
    factor beta gamma / rho: the dipole 1/rc (times rho) plus, per order n >= 1, the kick
    factors of :func:`_curvilinear_kick` (Bx = dpy, By = -dpx per unit length)."""
    u = x / rc
    v = y / rc
    bx: nm.Scalar = 0.0
    by = (1.0 + u) / rc
    for n, kn_n, ks_n in strengths:
        fx, fy = _curvilinear_kick(u, v, n, rc ** n * kn_n, rc ** n * ks_n)
        bx = bx + fy
        by = by - fx
    return bx, by


def exact_cfbend_kernel(length: nm.Scalar, angle: nm.Scalar, k: nm.Scalar, ref: RefState,
                        nsteps: int, order: int = 2,
                        strengths: tuple[tuple[int, nm.Scalar, nm.Scalar], ...] | None = None
                        ) -> Kernel:
    """Exact combined-function bend (``ExactCFbend.H`` with k_normal = [1/rc, k]),
    ``nsteps`` symplectic steps of ``order``. The angle must be non-zero. ``strengths``
    (order N, KnN, KsN) [1/m^(N+1)], orders in :data:`CFBEND_ORDERS`, replace ``k`` with
    every component: k_normal = [1/rc, Kn1, Kn2, ...], k_skew = [0, Ks1, Ks2, ...]."""
    map_coeffs, _ = exact_cfbend_maps(length, angle, k, ref, strengths)
    sequence = integrators.build_sequence(order, length / nsteps, map_coeffs)
    return Kernel(integrators.integrate_push, (nsteps, sequence))
