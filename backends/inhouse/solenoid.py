"""Hard-edge solenoid (ImpactX ``src/elements/Sol.H``): strength ks = B_z/(B rho) [1/m]."""

from __future__ import annotations

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Entries
from backends.inhouse.reference import RefState


def sol_entries(length: nm.Scalar, ks: nm.Scalar, ref: RefState) -> Entries:
    """Linear solenoid map R = R_rotation(theta) R_focusing(alpha), alpha = ks/2,
    theta = alpha L (``Sol.H`` ``transport_map``), multiplied out."""
    alpha = ks * 0.5
    theta = alpha * length
    c = nm.cos(theta)
    s = nm.sin(theta)
    sinc, _, _ = nm.sinc_functions(theta)
    s_over_alpha = length * sinc  # sin(theta)/alpha, finite at ks = 0
    a_s = alpha * s
    cc, cs = c * c, c * s
    return {
        (0, 0): cc, (0, 1): c * s_over_alpha, (0, 2): cs, (0, 3): s * s_over_alpha,
        (1, 0): -a_s * c, (1, 1): cc, (1, 2): -a_s * s, (1, 3): cs,
        (2, 0): -cs, (2, 1): -s * s_over_alpha, (2, 2): cc, (2, 3): c * s_over_alpha,
        (3, 0): a_s * s, (3, 1): -cs, (3, 2): -a_s * c, (3, 3): cc,
        (4, 5): length / (ref.beta_gamma**2),
    }
