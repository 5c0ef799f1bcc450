"""Element misalignment (ImpactX ``src/elements/mixin/alignment.H``) and the thin kicker.

ImpactX moves a particle into the frame of a shifted and rotated element before its map
(``shift_in``: subtract the offsets dx, dy [m], then rotate (x, y) and (px, py) by the
rotation angle) and back after it (``shift_out``: the inverse rotation, then add the
offsets). A rotation alone is linear and is given as 6x6 entries; with offsets the maps
are affine kernels.

The thin kicker is ImpactX ``src/elements/Kicker.H`` with ``unit = dimensionless``:
px += xkick, py += ykick, independent of every coordinate.
"""

from __future__ import annotations

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Columns, Entries, Kernel


def rotation_entries(angle: nm.Scalar, inverse: bool = False) -> Entries:
    """``shift_in`` (or, ``inverse``, ``shift_out``) without offsets: x' = x cos + y sin,
    y' = -x sin + y cos, and the same for (px, py)."""
    c, s = nm.cos(angle), nm.sin(angle)
    if inverse:
        s = -s
    return {(0, 0): c, (0, 2): s, (2, 0): -s, (2, 2): c,
            (1, 1): c, (1, 3): s, (3, 1): -s, (3, 3): c}


def _shift_in_push(columns: Columns, coeffs: tuple) -> Columns:
    x, px, y, py, t, pt = columns
    dx, dy, c, s = coeffs
    xc = x - dx
    yc = y - dy
    return (xc * c + yc * s, px * c + py * s, -xc * s + yc * c, -px * s + py * c, t, pt)


def _shift_out_push(columns: Columns, coeffs: tuple) -> Columns:
    x, px, y, py, t, pt = columns
    dx, dy, c, s = coeffs
    return (x * c - y * s + dx, px * c - py * s, x * s + y * c + dy, px * s + py * c, t, pt)


def shift_kernel(dx: nm.Scalar, dy: nm.Scalar, angle: nm.Scalar, out: bool) -> Kernel:
    """ImpactX ``shift_in`` (``out`` False) or ``shift_out`` with offsets [m] and rotation
    ``angle`` [rad]."""
    coeffs = (dx, dy, nm.cos(angle), nm.sin(angle))
    return Kernel(_shift_out_push if out else _shift_in_push, coeffs)


def _kick_push(columns: Columns, coeffs: tuple) -> Columns:
    x, px, y, py, t, pt = columns
    xkick, ykick = coeffs
    return (x, px + xkick, y, py + ykick, t, pt)


def kicker_kernel(xkick: nm.Scalar, ykick: nm.Scalar) -> Kernel:
    """ImpactX ``Kicker`` (dimensionless): px += xkick, py += ykick."""
    return Kernel(_kick_push, (xkick, ykick))
