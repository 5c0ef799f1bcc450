"""Thick RF cavity with its on-axis field (ImpactX ``src/elements/RFCavity.H``).

The on-axis field is E_z(z) = escale f(z) cos(k t_ref + phi) [1/m, in units of m c^2 / q
per metre], f(z) from the Fourier coefficients of :mod:`backends.inhouse.fourier_field`,
k = 2 pi freq / c, phi = phase [rad], and t_ref the reference particle's time [m, c times
the time since the start of the lattice] at the point of evaluation: the phase is the RF
phase seen by the reference particle, which depends on where the cavity sits in the line.

ImpactX integrates the reference particle and the 6x6 map together, slice by slice, with
``symp2_integrate_split3`` (``src/particles/integrators/Integrators.H``): per step dz,
map1(dz/2) map2(dz/2) map3(dz) map2(dz/2) map1(dz/2), where (``RFCavity.H``)

* map1(tau), z -> z + tau: the reference energy gain
  pt_ref -= escale (F(z + tau) - F(z)) cos(k t_ref + phi), and
  px += L x, py += L y, pt += M t with M = escale (F(z + tau) - F(z)) k sin(k t_ref + phi),
  L = escale (f'(z + tau) - f'(z)) sin(k t_ref + phi) / (2 k) + M / 2;
* map2(tau): with s = tau / (beta gamma)_ref and L = escale f'(z) sin(k t_ref + phi)/(2 k),
  (x, px) -> ((1 - s L) x + s px, -s L^2 x + (1 + s L) px), the same for (y, py);
* map3(tau): t_ref += tau / beta_ref, and t += tau pt / (beta gamma)_ref^3;

in "dynamic units" (momenta in units of the local reference momentum); at the end of each
slice the map is converted to ImpactX's static units, R_ij -> R_ij (beta gamma)_i^(j even)
/ (beta gamma)_f^(i even) (1-based indices). The reference particle's transverse position
is not followed (it stays on axis).

The reference integration is sequential (the phase depends on t_ref); the particle map
is then the ordered product of the step matrices. Every parameter may be a tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from backends.inhouse import numeric as nm
from backends.inhouse.fourier_field import as_coefficients, on_axis, ordered_product
from backends.inhouse.maps import Entries
from backends.inhouse.reference import RefState
from harness.model.reference_particle import C_LIGHT

Coefficients = Sequence[nm.Scalar] | torch.Tensor

#: The entries of the cavity map: x and y blocks and the longitudinal block.
_KEYS = ((0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (2, 3), (3, 2), (3, 3),
         (4, 4), (4, 5), (5, 4), (5, 5))


@dataclass(frozen=True)
class CavityMap:
    """A cavity's linear map and the reference particle after it.

    Attributes:
        entries: the 6x6 map (static units), floats or tensors.
        ref: the reference particle after the cavity (its new gamma).
        t_ref: the reference time after the cavity [m].
    """

    entries: Entries
    ref: RefState
    t_ref: nm.Scalar


def _tensor(value: nm.Scalar) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.tensor(float(value),
                                                                       dtype=torch.float64)


def _stack(rows: list[list[nm.Scalar]], shape: torch.Size) -> torch.Tensor:
    return torch.stack([torch.stack([_tensor(v).expand(shape) for v in row], dim=-1)
                        for row in rows], dim=-2)


def rf_cavity_map(length: nm.Scalar, escale: nm.Scalar, freq: nm.Scalar, phase: nm.Scalar,
                  cos_coef: Coefficients, sin_coef: Coefficients, ref: RefState,
                  t_ref: nm.Scalar = 0.0, mapsteps: int = 10, nslice: int = 1) -> CavityMap:
    """The ``RFCavity`` map: length [m], ``escale`` [1/m] (peak |q| E_z / (m c^2)), ``freq``
    [Hz], ``phase`` [rad], profile coefficients, the reference particle and its time
    ``t_ref`` [m] at the cavity's entrance (see the module docstring)."""
    slice_ds = length / nslice
    pieces = [(slice_ds * i, slice_ds, mapsteps) for i in range(nslice)]
    return rf_cavity_pieces(length, escale, freq, phase, cos_coef, sin_coef, ref, t_ref,
                            pieces, cumulative=True)[-1]


def rf_cavity_pieces(length: nm.Scalar, escale: nm.Scalar, freq: nm.Scalar,
                     phase: nm.Scalar, cos_coef: Coefficients, sin_coef: Coefficients,
                     ref: RefState, t_ref: nm.Scalar,
                     pieces: Sequence[tuple[nm.Scalar, nm.Scalar, int]],
                     cumulative: bool = False) -> list[CavityMap]:
    """The cavity integrated over consecutive ``pieces`` ``(zin [m from the entrance],
    ds [m], steps)`` (ImpactX's ``symp2_integrate_split3`` from zin to zin + ds in
    ``steps`` steps, one reference push of ``RFCavity.H`` each); per piece its own map
    (``cumulative``: the map from the first piece's start to its end), the reference
    particle and time after it. :func:`rf_cavity_map` is the last cumulative one of the
    element's ``nslice`` slices; ImpactX's envelope space charge pushes half slices
    (:class:`backends.inhouse.envelope.InhouseEnvelope`)."""
    floats = not nm.any_tensor(length, escale, freq, phase, cos_coef, sin_coef, ref.gamma, t_ref)
    cos_t, sin_t = as_coefficients(cos_coef), as_coefficients(sin_coef)
    zlen = nm.absolute(length)
    k = (2.0 * math.pi / C_LIGHT) * freq
    e0 = escale

    # the points z at which ImpactX evaluates the field, accumulated as it does
    points: list[nm.Scalar] = []
    for zin, slice_ds, mapsteps in pieces:
        dz = (zin + slice_ds - zin) / mapsteps
        tau1 = dz * 0.5
        zeval = zin
        for _ in range(mapsteps):
            points.append(zeval)
            zeval = zeval + tau1          # map1: z -> z + dz/2 (the midpoint)
            points.append(zeval)
            zeval = zeval + tau1          # map1: midpoint -> end of the step
            points.append(zeval)
    z = torch.stack([_tensor(p) for p in points])
    field = on_axis(z, zlen, cos_t, sin_t, outside_integral=True)
    f_prime, f_int = field[1], field[2]
    if floats:
        fp_list: list[nm.Scalar] = f_prime.tolist()
        fi_list: list[nm.Scalar] = f_int.tolist()
    else:
        fp_list, fi_list = list(f_prime.unbind(0)), list(f_int.unbind(0))

    # sequential reference integration, recording each sub-map's coefficients
    pt: nm.Scalar = -ref.gamma
    t: nm.Scalar = t_ref
    trans: list[tuple[nm.Scalar, ...]] = []   # per sub-map (kind, a, b, c, d) of (x,px)
    longi: list[tuple[nm.Scalar, ...]] = []
    scale: list[tuple[nm.Scalar, nm.Scalar, int]] = []   # (bg_in, bg_out, index) per slice
    after: list[tuple[nm.Scalar, nm.Scalar]] = []        # (pt, t) after each piece
    index = 0
    for zin, slice_ds, mapsteps in pieces:
        dz = (zin + slice_ds - zin) / mapsteps   # as in the first loop
        tau1 = dz * 0.5
        bgi = nm.sqrt(pt * pt - 1.0)
        for _ in range(mapsteps):
            p0, pm, p1 = 3 * index, 3 * index + 1, 3 * index + 2
            index += 1
            for a, b in ((p0, pm), (pm, p1)):
                if b == p1:  # map2(dz/2), map3(dz), map2(dz/2) between the two map1
                    lens = _map2(tau1, pt, fp_list[pm], e0, k, t, phase)
                    trans.append(lens)
                    longi.append((1.0, 0.0, 0.0, 1.0))
                    bg = nm.sqrt(pt * pt - 1.0)
                    t = t + dz / nm.sqrt(1.0 - 1.0 / (pt * pt))
                    trans.append((1.0, 0.0, 0.0, 1.0))
                    longi.append((1.0, dz / (bg * bg * bg), 0.0, 1.0))
                    lens = _map2(tau1, pt, fp_list[pm], e0, k, t, phase)
                    trans.append(lens)
                    longi.append((1.0, 0.0, 0.0, 1.0))
                # map1(dz/2) from point a to point b
                delta = fi_list[b] - fi_list[a]
                arg = k * t + phase
                sin_arg = nm.sin(arg)
                m = e0 * delta * k * sin_arg
                big_l = e0 * (fp_list[b] - fp_list[a]) * sin_arg / (2.0 * k) + m * 0.5
                pt = pt - e0 * delta * nm.cos(arg)
                trans.append((1.0, 0.0, big_l, 1.0))
                longi.append((1.0, 0.0, m, 1.0))
        scale.append((bgi, nm.sqrt(pt * pt - 1.0), len(trans)))
        after.append((pt, t))

    shape = torch.broadcast_shapes(*(v.shape for row in trans + longi for v in row
                                     if isinstance(v, torch.Tensor)))
    x_steps = _stack_2x2(trans, shape)
    z_steps = _stack_2x2(longi, shape)
    # per slice: the product in dynamic units, then the static-unit conversion
    identity = torch.eye(2, dtype=torch.float64).expand(shape + (2, 2))
    x_map, z_map = identity, identity
    start = 0
    out: list[CavityMap] = []
    for (bgi, bgf, stop), (pt_after, t_after) in zip(scale, after, strict=True):
        conv_in = _stack([[1.0, 0.0], [0.0, bgi]], shape)
        conv_out = _stack([[1.0, 0.0], [0.0, 1.0 / bgf]], shape)
        if not cumulative:
            x_map, z_map = identity, identity
        x_map = conv_out @ ordered_product(x_steps[start:stop]) @ conv_in @ x_map
        z_map = conv_out @ ordered_product(z_steps[start:stop]) @ conv_in @ z_map
        start = stop
        entries: Entries = {}
        for offset, block in ((0, x_map), (2, x_map), (4, z_map)):
            for i in range(2):
                for j in range(2):
                    value = block[..., i, j]
                    entries[(offset + i, offset + j)] = float(value) if floats else value
        out.append(CavityMap(entries, ref.with_gamma(-pt_after), t_after))
    return out


def _map2(tau: nm.Scalar, pt: nm.Scalar, f_prime: nm.Scalar, e0: nm.Scalar, k: nm.Scalar,
          t: nm.Scalar, phase: nm.Scalar) -> tuple[nm.Scalar, ...]:
    """map2(tau) of the (x, px) block as (a, b, c, d) of [[a, b], [c, d]]."""
    s = tau / nm.sqrt(pt * pt - 1.0)
    big_l = e0 * f_prime * nm.sin(k * t + phase) / (2.0 * k)
    return (1.0 - s * big_l, s, -s * big_l * big_l, 1.0 + s * big_l)


def _stack_2x2(items: list[tuple[nm.Scalar, ...]], shape: torch.Size) -> torch.Tensor:
    """``(n,) + shape + (2, 2)`` from (a, b, c, d) per item."""
    return torch.stack([_stack([[a, b], [c, d]], shape) for a, b, c, d in items])
