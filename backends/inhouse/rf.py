"""Short RF gap (ImpactX ``src/elements/ShortRF.H``).

``V`` = maximum energy gain / (m c^2), k = 2 pi f / c, phase phi [rad] (0 on crest, -pi/2
bunching). The reference energy changes: pt_ref -> pt_ref - V cos(phi), i.e.
gamma -> gamma + V cos(phi); momenta are rescaled from the initial to the final reference
momentum (px, py, pt scaled by (beta gamma)_i / (beta gamma)_f).
"""

from __future__ import annotations

import math

import torch

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Columns, Kernel
from backends.inhouse.reference import RefState
from harness.model.reference_particle import C_LIGHT


def normalised_voltage(voltage: nm.Scalar, ref: RefState) -> nm.Scalar:
    """ImpactX's ``V`` of a gap voltage [V]: |q| voltage / (m c^2)."""
    return abs(ref.charge_qe) * voltage / ref.mass_eV


def reference_after(voltage: nm.Scalar, phase: nm.Scalar, ref: RefState) -> RefState:
    """The reference particle after the gap: gamma + V cos(phi)."""
    return ref.with_gamma(ref.gamma + normalised_voltage(voltage, ref) * nm.cos(phase))


def _short_rf_push(columns: Columns, coeffs: tuple) -> Columns:
    x, px, y, py, t, pt = columns
    v, k, phase, v_cos_phi, bgi, bgf = coeffs
    pt_out = (pt * bgi - v * torch.cos(k * t + phase) + v_cos_phi) / bgf
    return (x, px * bgi / bgf, y, py * bgi / bgf, t, pt_out)


def short_rf_kernel(voltage: nm.Scalar, frequency: nm.Scalar, phase: nm.Scalar,
                    ref: RefState) -> Kernel:
    """The gap map with ``ref`` the reference particle *before* the gap."""
    v = normalised_voltage(voltage, ref)
    after = reference_after(voltage, phase, ref)
    k = 2.0 * math.pi / C_LIGHT * frequency
    return Kernel(_short_rf_push, (v, k, phase, v * nm.cos(phase), ref.beta_gamma,
                                   after.beta_gamma))
