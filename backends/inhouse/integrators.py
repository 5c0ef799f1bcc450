"""Symplectic splitting integrators of ImpactX (``src/particles/integrators/Integrators.H``).

For a Hamiltonian split as H = H_1 + H_2 with exactly solvable maps M_1(tau), M_2(tau), one
step of size dz is

* order 2 (``symp2_integrate_particle``, generalised leapfrog; Hairer et al., *Geometric
  Numerical Integration*, 2nd ed.): M_1(dz/2) M_2(dz) M_1(dz/2);
* order 4 (``symp4_integrate_particle``; H. Yoshida, Phys. Lett. A 150, 262 (1990), in the
  form of E. Forest and R. D. Ruth, Physica D 43, 105 (1990));
* order 6 (``symp6_integrate_particle``; Yoshida section 5, Hairer et al. V.3.2).

An element with ``nslice`` slices and ``mapsteps`` steps per slice takes
``nslice * mapsteps`` steps of dz = ds / (nslice * mapsteps) (ImpactX: each slice of
``ds/nslice`` is integrated with ``mapsteps`` steps).
"""

from __future__ import annotations

from collections.abc import Callable

from backends.inhouse.maps import Columns
from backends.inhouse.numeric import Scalar

#: alpha = 1 - 2^(1/3) of the fourth-order scheme (ImpactX's literal).
_ALPHA4 = -0.2599210498948732
#: Yoshida's sixth-order weights w0..w3 (ImpactX's literals).
_W6 = (1.31518632068391121888424973, -1.17767998417887100694641568,
       0.23557321335935813368479318, 0.78451361047755726381949763)


def step_sequence(order: int, dz: Scalar) -> tuple[tuple[int, Scalar], ...]:
    """One integration step as ``((map index 1 or 2, tau), ...)`` for step size dz [m]
    (a float, or a tensor when the element's length is a differentiable parameter)."""
    if order == 2:
        return ((1, dz * 0.5), (2, dz), (1, dz * 0.5))
    if order == 4:
        tau2 = dz / (1.0 + _ALPHA4)
        tau1 = tau2 * 0.5
        tau3 = _ALPHA4 * tau1
        tau4 = (_ALPHA4 - 1.0) * tau2
        return ((1, tau1), (2, tau2), (1, tau3), (2, tau4), (1, tau3), (2, tau2), (1, tau1))
    if order == 6:
        w0, w1, w2, w3 = _W6
        taus = (w3 * dz / 2.0, w3 * dz, (w3 + w2) * dz / 2.0, w2 * dz, (w2 + w1) * dz / 2.0,
                w1 * dz, (w1 + w0) * dz / 2.0, w0 * dz)
        half = [(1 + (i % 2), tau) for i, tau in enumerate(taus)]
        return tuple(half + half[-2::-1])
    raise ValueError(f"symplectic integration order must be 2, 4 or 6, got {order}")


def build_sequence(order: int, dz: Scalar,
                   map_coeffs: Callable[[int, Scalar], tuple[Callable, tuple]]) -> tuple:
    """The step as ``((push, coeffs), ...)``; ``map_coeffs(index, tau)`` gives the push
    function and coefficients of map ``index`` for step ``tau`` (called once per distinct
    (index, tau), so coefficients are shared between repeated sub-steps)."""
    cache: dict[tuple[int, Scalar], tuple[Callable, tuple]] = {}
    out = []
    for index, tau in step_sequence(order, dz):
        key = (index, tau)
        if key not in cache:
            cache[key] = map_coeffs(index, tau)
        out.append(cache[key])
    return tuple(out)


def integrate_push(columns: Columns, coeffs: tuple) -> Columns:
    """Apply ``nsteps`` integration steps: ``coeffs = (nsteps, ((push, c), ...))``."""
    nsteps, sequence = coeffs
    for _ in range(nsteps):
        for push, sub in sequence:
            columns = push(columns, sub)
    return columns
