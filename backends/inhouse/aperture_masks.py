"""Thin apertures with every option of ImpactX's ``Aperture`` and ``PolygonAperture``
(``src/elements/Aperture.H``, ``src/elements/PolygonAperture.H``): rectangular,
elliptical or polygonal boundary, ``transmit`` or ``absorb``, periodic repetition
(``repeat_x``, ``repeat_y`` [m], with ``shift_odd_x`` for hexagonal patterns) and the
element's misalignment (``dx``, ``dy`` [m], ``rotation`` [rad]).

Per particle (ImpactX's order of operations):

1. into the element's frame (``src/elements/mixin/alignment.H`` ``shift_in``):
   x' = (x - dx) cos r + (y - dy) sin r, y' = -(x - dx) sin r + (y - dy) cos r;
2. with ``shift_odd_x``, x' += repeat_x / 2 in every odd row, floor((y' + repeat_y/2) /
   repeat_y) odd;
3. with a period, the fold into the fundamental cell:
   u = fmod(|x'| + repeat_x/2, repeat_x) - repeat_x/2 (the same for v with repeat_y);
4. inside: (u/a_x)^2 <= 1 and (v/a_y)^2 <= 1 (rectangular), (u/a_x)^2 + (v/a_y)^2 <= 1
   (elliptical), or for a polygon u^2 + v^2 < min_radius2 or a winding number
   |sum_i arg((w - V_{i+1}) conj(w - V_i))| / (2 pi) > 1e-12 about w = u + i v, over the
   closed list of vertices V (first vertex repeated last);
5. ``transmit`` keeps the particles inside, ``absorb`` those outside.

Coordinates are unchanged (ImpactX's ``shift_out`` undoes ``shift_in``). A lost particle is
a False in the survival mask, which the tracker carries to the end (NaN rows in
``backends.base.final_particles``). The mask is piecewise constant: no gradient flows
through it, and the aperture parameters have zero derivative wherever it is defined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Columns, Kernel

ACTIONS = ("transmit", "absorb")
SHAPES = ("rectangular", "elliptical")


def _frame(x: torch.Tensor, y: torch.Tensor, align: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-3 of the module docstring: (u, v) in the fundamental cell."""
    dx, dy, cos_r, sin_r, repeat_x, repeat_y, shift_odd_x = align
    xc = x - dx
    yc = y - dy
    sx = xc * cos_r + yc * sin_r
    sy = -xc * sin_r + yc * cos_r
    # a period of None is no repetition (a structural choice: the compiled path keeps None
    # as a constant, while a float period is one of its inputs)
    if shift_odd_x:
        odd = torch.fmod(torch.floor((sy + repeat_y * 0.5) / repeat_y), 2.0) != 0.0
        sx = torch.where(odd, sx + repeat_x * 0.5, sx)
    u = sx if repeat_x is None else torch.fmod(sx.abs() + repeat_x * 0.5, repeat_x) \
        - repeat_x * 0.5
    v = sy if repeat_y is None else torch.fmod(sy.abs() + repeat_y * 0.5, repeat_y) \
        - repeat_y * 0.5
    return u, v


def _box_push(columns: Columns, coeffs: tuple):
    x, _, y, _, _, _ = columns
    inv_x, inv_y, elliptical, absorb, align = coeffs
    u, v = _frame(x, y, align)
    u = u * inv_x
    v = v * inv_y
    inside = u * u + v * v <= 1.0 if elliptical else (u * u <= 1.0) & (v * v <= 1.0)
    return columns, ~inside if absorb else inside


def _polygon_push(columns: Columns, coeffs: tuple):
    x, _, y, _, _, _ = columns
    vertices_x, vertices_y, min_radius2, absorb, align = coeffs
    u, v = _frame(x, y, align)
    thetasum = torch.zeros_like(u)
    for i in range(len(vertices_x) - 1):
        a1, b1 = u - vertices_x[i], v - vertices_y[i]
        a2, b2 = u - vertices_x[i + 1], v - vertices_y[i + 1]
        # arg of (a2 + i b2)(a1 - i b1)
        thetasum = thetasum + torch.atan2(b2 * a1 - a2 * b1, a2 * a1 + b2 * b1)
    inside = ((u * u + v * v) < min_radius2) | \
        ((thetasum / (2.0 * math.pi)).abs() > 1.0e-12)
    return columns, ~inside if absorb else inside


def _alignment(dx: nm.Scalar, dy: nm.Scalar, rotation: nm.Scalar, repeat_x: float,
               repeat_y: float, shift_odd_x: bool) -> tuple:
    if shift_odd_x and repeat_y == 0.0:
        raise ValueError("shift_odd_x needs repeat_y > 0")
    if repeat_x < 0.0 or repeat_y < 0.0:
        raise ValueError("repeat_x and repeat_y must be >= 0")
    return (dx, dy, nm.cos(rotation), nm.sin(rotation), float(repeat_x) or None,
            float(repeat_y) or None, bool(shift_odd_x))


def _action(action: str) -> bool:
    if action not in ACTIONS:
        raise ValueError(f"aperture action must be one of {ACTIONS}, got {action!r}")
    return action == "absorb"


def aperture_kernel(x_limit: nm.Scalar, y_limit: nm.Scalar, shape: str = "rectangular",
                    action: str = "transmit", repeat_x: float = 0.0, repeat_y: float = 0.0,
                    shift_odd_x: bool = False, dx: nm.Scalar = 0.0, dy: nm.Scalar = 0.0,
                    rotation: nm.Scalar = 0.0) -> Kernel:
    """ImpactX ``Aperture``: half-widths ``x_limit``, ``y_limit`` [m] (> 0), ``shape``
    rectangular or elliptical, ``action`` transmit or absorb, periods [m] (0: none),
    misalignment ``dx``, ``dy`` [m] and ``rotation`` [rad]."""
    if shape not in SHAPES:
        raise ValueError(f"aperture shape must be one of {SHAPES}, got {shape!r}")
    # ImpactX multiplies by the stored inverse half-widths
    inv_x = 1.0 / x_limit
    inv_y = 1.0 / y_limit
    return Kernel(_box_push, (inv_x, inv_y, shape == "elliptical", _action(action),
                              _alignment(dx, dy, rotation, repeat_x, repeat_y, shift_odd_x)),
                  loses_particles=True)


def polygon_aperture_kernel(vertices_x: Sequence[float], vertices_y: Sequence[float],
                            min_radius2: float = 0.0, action: str = "transmit",
                            repeat_x: float = 0.0, repeat_y: float = 0.0,
                            shift_odd_x: bool = False, dx: nm.Scalar = 0.0,
                            dy: nm.Scalar = 0.0, rotation: nm.Scalar = 0.0) -> Kernel:
    """ImpactX ``PolygonAperture``: the closed polygon of vertices [m] (first == last, as
    ImpactX requires), ``min_radius2`` [m^2] inside which every particle is inside, and the
    options of :func:`aperture_kernel`."""
    xs = [float(v) for v in vertices_x]
    ys = [float(v) for v in vertices_y]
    if len(xs) != len(ys) or len(xs) < 4:
        raise ValueError("a polygon needs equally many x and y vertices, at least 3 distinct "
                         "plus the first repeated last")
    if xs[0] != xs[-1] or ys[0] != ys[-1]:
        raise ValueError("the first and last polygon vertex must be equal")
    return Kernel(_polygon_push, (tuple(xs), tuple(ys), float(min_radius2), _action(action),
                                  _alignment(dx, dy, rotation, repeat_x, repeat_y,
                                             shift_odd_x)),
                  loses_particles=True)
