"""The in-house envelope tracker: the 6x6 beam covariance matrix carried through a lattice
as ``Sigma_out = R Sigma_in R^T``, with R each element's linear transport map.

This is ImpactX's envelope mode (``ImpactX::track_envelope``, ``src/tracking/envelope.cpp``):
every element map is replaced by its ``transport_map`` (``src/elements/mixin/
lineartransport.H``: ``cm = R * cm * R.transpose()``), the map linearised about the
reference orbit. Per ImpactX map (the maps of :mod:`backends.inhouse.translate`), R is

* the map's own 6x6 matrix for the linear maps (``Drift``, ``Quad``, ``Sbend``, ``CFbend``,
  ``DipEdge``, ``Sol``, thin quadrupole, rotations);
* ImpactX's analytic linear map for the paraxial, integrated and closed-form exact maps,
  exactly as their ``transport_map`` writes it: ``ChrDrift``/``ExactDrift`` -> ``Drift``
  (``src/elements/ChrDrift.H``, ``ExactDrift.H``), ``ChrQuad``/``ExactQuad`` -> ``Quad``
  (``ChrQuad.H``, ``ExactQuad.H``), ``ExactSbend`` -> ``Sbend`` (``ExactSbend.H``),
  ``ExactCFbend`` -> ``CFbend`` (``ExactCFbend.H``), ``ExactMultipole`` -> the
  quadrupole of its Kn1/Ks1 component, a drift without one (``ExactMultipole.H``). For
  the closed-form and paraxial maps this is their Jacobian at the reference orbit (to
  round-off, measured); for the integrated ones (``ExactQuad``, ``ExactCFbend``,
  ``ExactMultipole``) the Jacobian of the symplectic integrator would differ from it by
  the integrator's truncation error. (Forward-mode AD through ``ChrQuad`` also costs
  ~0.1 s per map on CPU, the analytic form microseconds.) ``Kicker``, ``Aperture`` and
  ``PolygonAperture`` are the identity (``Kicker.H``, ``Aperture.H``, ``PolygonAperture.H``);
* the Jacobian at the reference orbit (all six coordinates 0), by forward-mode AD of the
  in-house particle map, for every other nonlinear map: thin ``Multipole`` (only its
  quadrupole order survives, ``Multipole.H``), ``ShortRF`` (``ShortRF.H``: R22 = R44 =
  R66 = bg_i/bg_f, R65 = k V sin(phi)/bg_f), ``shift_in``/``shift_out`` (the rotation
  alone: ImpactX's ``rotate_aligned_map`` ignores the offsets dx, dy). These Jacobians
  equal ImpactX's ``transport_map`` to round-off (``tests/test_envelope.py``).

ImpactX applies ``transport_map`` per slice (``nslice`` slices of ``ds/nslice``); without
space charge the product of the slices is the element's map to round-off, so each map is
applied once here. With envelope space charge (:class:`EnvelopeSpaceCharge`), every thick
map is cut into its element's ``nslice`` slices and each slice is split in two halves with
the linear space-charge kick of the whole slice length ds between them (evaluated with the
covariance at the slice's middle), the kick of ImpactX's ``space_charge2D_push`` /
``space_charge3D_push`` (``src/envelope/spacecharge/EnvelopeSpaceChargePush.cpp``). The
placement is the one ImpactX 26.10 runs, measured (the covariance of a 1 mm drift agrees
to 1e-16 with the kick at the middle, and differs at first order in ds with the kick before
the slice, as the June 2026 ``src/tracking/envelope.cpp`` writes it):

* 2D (a coasting beam of current I): perveance K = |I / I_A| 2 / (beta gamma)^3 with
  I_A = 4 pi eps0 m c^3 / q; with s = sqrt(S11 S33 - S13^2) and
  D = (s + S11)(s + S33) - S13^2, the kick R21 = K ds (s + S33) / (2 D),
  R23 = R41 = -K ds S13 / (2 D), R43 = K ds (s + S11) / (2 D);
* 3D (a bunch of charge Q, uniform ellipsoid of the same second moments): with
  r_cN = |q Q| / (4 pi eps0 m c^2) and k = ds r_cN / ((beta gamma)^2 5 sqrt 5),
  x = S11, y = S33, z = (beta gamma)^2 S55: R21 = k R_D(y, z, x), R43 = k R_D(z, x, y),
  R65 = k (beta gamma)^2 R_D(x, y, z), R_D being Carlson's symmetric elliptic integral of
  the second kind (``src/envelope/spacecharge/Elliptic_Integral.H``, duplication with
  tolerance 1e-3 and the fifth-order series; :func:`elliptic_rd`). The 3D model assumes
  <xy> = <yt> = <tx> = 0, as ImpactX's.

Units: the covariance of (x [m], px, y [m], py, t [m], pt) in ImpactX's coordinates.
Element parameters named at construction may be given as tensors of any batch shape (with
``requires_grad`` or forward-mode dual numbers): the maps and the covariance then carry that
batch shape, ``batch + (6, 6)``, for reverse and forward mode alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import jacfwd

from backends.base import Plan, PreparedEnvelope
from backends.inhouse import alignment, bend, dipedge, quadrupole, rf_cavity
from backends.inhouse import numeric as nm
from backends.inhouse.drift import drift_entries
from backends.inhouse.maps import Entries, Kernel, assemble, broadcast_columns
from backends.inhouse.reference import RefState
from backends.inhouse.translate import (
    MapSpec,
    Params,
    changes_reference,
    checked_parameters,
    declared_values,
    field_scale,
    profile_values,
    reference_after,
    translate,
)
from harness.model import observables
from harness.model.kinds import FIELD_RIGIDITY
from harness.model.lattice import Element, thick_multipoles
from harness.model.parameters import resolve_parameters
from harness.model.particles import beam_cholesky
from harness.model.reference_particle import C_LIGHT, ReferenceParticle
from harness.model.scenario import Scenario

#: A parameter key: (element name, field), e.g. ("qf", "Kn1").
ParamKey = tuple[str, str]


def _quad_strength_turn(kn: nm.Scalar, ks: nm.Scalar) -> tuple[nm.Scalar, nm.Scalar]:
    """Normal gradient hypot(kn, ks) [1/m^2] and rotation -atan2(ks, kn)/2 [rad] of a
    quadrupole with a skew component (:func:`harness.model.lattice.rotated_normal`)."""
    if not (nm.is_tensor(kn) or nm.is_tensor(ks)) and ks == 0.0:
        return kn, 0.0
    if nm.is_tensor(kn) or nm.is_tensor(ks):
        kn_t, ks_t = torch.as_tensor(kn), torch.as_tensor(ks)
        return torch.sqrt(kn_t * kn_t + ks_t * ks_t), -0.5 * torch.atan2(ks_t, kn_t)
    return math.hypot(kn, ks), -0.5 * math.atan2(ks, kn)


def _matmul_entries(*factors: torch.Tensor) -> torch.Tensor:
    """``factors[-1] @ ... @ factors[0]`` (the first factor acts first)."""
    out = factors[0]
    for factor in factors[1:]:
        out = torch.matmul(factor, out)
    return out


def _rotated(entries: Entries, turn: nm.Scalar, device: torch.device,
             dtype: torch.dtype) -> torch.Tensor:
    """``rotation(turn)^-1 @ M @ rotation(turn)``: the map of ``entries`` inside ImpactX's
    ``shift_in``/``shift_out`` rotation (``src/elements/mixin/alignment.H``)."""
    body = assemble(entries, device, dtype)
    if not nm.is_tensor(turn) and turn == 0.0:
        return body
    enter = assemble(alignment.rotation_entries(turn), device, dtype)
    leave = assemble(alignment.rotation_entries(turn, inverse=True), device, dtype)
    return _matmul_entries(enter, body, leave)


#: ImpactX class -> its ``transport_map`` where it is not the Jacobian of the in-house map
#: at the reference orbit: ``(params, ref, device, dtype) -> (..., 6, 6)``.
AnalyticMap = Callable[[Params, RefState, torch.device, torch.dtype], torch.Tensor]


def _exact_quad(p: Params, ref: RefState, device: torch.device,
                dtype: torch.dtype) -> torch.Tensor:
    """``ExactQuad.H`` ``transport_map``: the linear ``Quad`` of the gradient hypot(Kn1,
    Ks1) (the rotation of a skew component is a map of its own in the translation), held
    against the local rigidity with ``field_rigidity`` (``field_scale``)."""
    k, _ = _quad_strength_turn(p["Kn1"], p.get("Ks1", 0.0))
    k = k * field_scale(p, ref) if FIELD_RIGIDITY in p else k
    return assemble(quadrupole.quad_entries(p["length"], k, ref), device, dtype)


def _exact_multipole(p: Params, ref: RefState, device: torch.device,
                     dtype: torch.dtype) -> torch.Tensor:
    """``ExactMultipole.H`` ``transport_map``: the quadrupole of the Kn1/Ks1 component
    (normal and skew), a drift without one."""
    kn, ks = thick_multipoles(p).get(1, (0.0, 0.0))
    zero = not (nm.is_tensor(kn) or nm.is_tensor(ks)) and kn == 0.0 and ks == 0.0
    if zero:
        return assemble(drift_entries(p["length"], ref), device, dtype)
    k, turn = _quad_strength_turn(kn, ks)
    return _rotated(quadrupole.quad_entries(p["length"], k, ref), turn, device, dtype)


def _exact_sbend(p: Params, ref: RefState, device: torch.device,
                 dtype: torch.dtype) -> torch.Tensor:
    """``ExactSbend.H`` ``transport_map``: the linear ``Sbend`` (rc = length/angle)."""
    return assemble(bend.sbend_entries(p["length"], p["angle"], ref), device, dtype)


def _exact_sbend_field(p: Params, ref: RefState, device: torch.device,
                       dtype: torch.dtype) -> torch.Tensor:
    """``ExactSbend.H`` ``transport_map`` given the field B: the linear ``Sbend`` of radius
    rc = (B rho)/B over ``ds`` (theta = ds / rc; not the particle map's angle |phi| when
    ds != rc |phi|)."""
    rigidity = ref.mass_eV * ref.beta_gamma / (C_LIGHT * ref.charge_qe)
    return assemble(bend.sbend_entries(p["length"], p["length"] * p["B"] / rigidity, ref),
                    device, dtype)


def _dipedge_nonlinear(p: Params, ref: RefState, device: torch.device,
                       dtype: torch.dtype) -> torch.Tensor:
    """``DipEdge.H`` ``transport_map`` of the nonlinear model: the linear model's matrix."""
    return assemble(dipedge.linear_entries(p["psi"], p["rc"], p["g"] * p["K2"]), device,
                    dtype)


def _exact_cfbend(p: Params, ref: RefState, device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor:
    """``ExactCFbend.H`` ``transport_map``: the linear ``CFbend`` (gx = k + 1/rc^2,
    gy = -k) of the normal quadrupole component k = k_normal[1] (0 without one; ImpactX's
    linearisation leaves the skew and higher components out)."""
    return assemble(bend.cfbend_entries(p["length"], p["angle"], p.get("Kn1", 0.0), ref),
                    device, dtype)


def _identity(p: Params, ref: RefState, device: torch.device,
              dtype: torch.dtype) -> torch.Tensor:
    """``Kicker.H``, ``Aperture.H`` ``transport_map``: the identity (a constant kick and a
    particle mask have no linear part about the reference orbit)."""
    return torch.eye(6, device=device, dtype=dtype)


ANALYTIC_MAPS: dict[str, AnalyticMap] = {
    "Kicker": _identity,
    "Aperture": _identity,
    "PolygonAperture": _identity,
    "ChrQuad": _exact_quad,
    "ExactQuad": _exact_quad,
    "ExactMultipole": _exact_multipole,
    "ExactSbend": _exact_sbend,
    "ExactSbendB": _exact_sbend_field,
    "DipEdgeNL": _dipedge_nonlinear,
    "ExactCFbend": _exact_cfbend,
}

#: Nonlinear drifts whose ``transport_map`` is the linear ``Drift`` of the kernel's length.
DRIFTS = frozenset({"ChrDrift", "ExactDrift"})


def _has_tensor(tree: object) -> bool:
    if isinstance(tree, torch.Tensor):
        return True
    if isinstance(tree, tuple | list):
        return any(_has_tensor(item) for item in tree)
    return False


def _push_columns(kernel: Kernel, columns: tuple, coeffs: tuple) -> tuple:
    out = kernel.push(columns, coeffs)
    return out[0] if kernel.loses_particles else out


def kernel_jacobian(kernel: Kernel, device: torch.device | str,
                    dtype: torch.dtype) -> torch.Tensor:
    """The ``batch + (6, 6)`` Jacobian of a kernel's push at the reference orbit (all six
    coordinates 0), by forward-mode AD; ``batch`` is the shape of its tensor coefficients.

    Constant coefficients: one pass of six particles at the origin carrying dual numbers
    (particle j's tangent is the unit vector e_j, so output k's tangent at particle j is
    dR_kj; every map acts on each particle alone). Tensor coefficients (differentiable
    parameters, any batch): ``torch.func.jacfwd``, which composes with reverse mode,
    ``jvp`` and ``vmap``.
    """
    if not _has_tensor(kernel.coeffs):
        with torch.no_grad(), fwAD.dual_level():
            eye = torch.eye(6, device=device, dtype=dtype)
            zero = torch.zeros(6, device=device, dtype=dtype)
            columns = tuple(fwAD.make_dual(zero, eye[i]) for i in range(6))
            out = _push_columns(kernel, columns, kernel.coeffs)
            rows = []
            for column in out:
                tangent = fwAD.unpack_dual(column).tangent if isinstance(
                    column, torch.Tensor) else None
                rows.append(torch.zeros(6, device=device, dtype=dtype) if tangent is None
                            else tangent.expand(6).clone())
            return torch.stack(rows, dim=0)
    coeffs = nm.broadcast_ready(kernel.coeffs)

    def push(vector: torch.Tensor) -> torch.Tensor:
        # one particle (N = 1) at ``vector``; coefficients broadcast as batch + (1,)
        columns = tuple(vector[i:i + 1] for i in range(6))
        out = _push_columns(kernel, columns, coeffs)
        stacked = torch.stack(broadcast_columns(tuple(torch.as_tensor(c) for c in out)), -1)
        return stacked[..., 0, :]

    origin = torch.zeros(6, device=device, dtype=dtype)
    return jacfwd(push)(origin)


#: Vacuum permittivity [F/m] (CODATA 2022) and speed of light [m/s]: the values ImpactX
#: 26.10 computes with (its envelope kicks differ from ones computed with CODATA 2018's
#: 8.8541878128e-12 by that ratio, 6.8e-10, measured; ablastr ``constant.H``).
EPSILON_0 = 8.8541878188e-12
SPEED_OF_LIGHT = 299792458.0

#: Duplication steps of :func:`elliptic_rd`: each divides the spread of the arguments by
#: about 4, so 40 steps take any arguments within 1e24 of each other below ImpactX's
#: tolerance; past it the series changes the value by less than round-off.
RD_STEPS = 40


def elliptic_rd(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Carlson's R_D(x, y, z) = 3/2 int_0^inf dt / ((t + x)^(1/2) (t + y)^(1/2)
    (t + z)^(3/2)), by ImpactX's algorithm (``src/envelope/spacecharge/
    Elliptic_Integral.H``: duplication, then the fifth-order series once the relative
    spread is below 1e-3), with a fixed number of duplication steps (:data:`RD_STEPS`) so
    that it has no data-dependent branch (reverse mode, ``jvp`` and ``vmap`` apply);
    the series is taken at the last step.
    """
    xn, yn, zn = x, y, z
    sigma = torch.zeros_like(x + y + z)
    power4 = 1.0
    for _ in range(RD_STEPS):
        xr, yr, zr = torch.sqrt(xn), torch.sqrt(yn), torch.sqrt(zn)
        lamda = xr * (yr + zr) + yr * zr
        sigma = sigma + power4 / (zr * (zn + lamda))
        power4 *= 0.25
        xn, yn, zn = (xn + lamda) * 0.25, (yn + lamda) * 0.25, (zn + lamda) * 0.25
    mu = (xn + yn + 3.0 * zn) * 0.2
    xd, yd, zd = (mu - xn) / mu, (mu - yn) / mu, (mu - zn) / mu
    c1, c2, c3, c4 = 3.0 / 14.0, 1.0 / 6.0, 9.0 / 22.0, 3.0 / 26.0
    ea = xd * yd
    eb = zd * zd
    ec = ea - eb
    ed = ea - 6.0 * eb
    ef = ed + ec + ec
    s1 = ed * (-c1 + 0.25 * c3 * ed - 1.5 * c4 * zd * ef)
    s2 = zd * (c2 * ef + zd * (-c3 * ec + zd * c4 * ea))
    return 3.0 * sigma + power4 * (1.0 + s1 + s2) / (mu * torch.sqrt(mu))


@dataclass(frozen=True)
class EnvelopeSpaceCharge:
    """ImpactX's envelope space charge.

    Attributes:
        kind: ``"2D"`` (coasting beam) or ``"3D"`` (bunch), ImpactX's ``algo.space_charge``.
        intensity: beam current [A] for 2D, bunch charge [C] for 3D (the ``intensity``
            of ImpactX's ``init_envelope``).
    """

    kind: str
    intensity: float

    def __post_init__(self) -> None:
        if self.kind not in ("2D", "3D"):
            raise ValueError(f"envelope space charge kind must be '2D' or '3D', got "
                             f"{self.kind!r}")


def _unit_with(sigma: torch.Tensor, entries: dict[tuple[int, int], torch.Tensor]
               ) -> torch.Tensor:
    """The identity of ``sigma``'s batch shape with ``entries`` set (stacked, no in-place
    writes, so every AD mode applies)."""
    shape = sigma.shape[:-2]
    rows = []
    for i in range(6):
        row = []
        for j in range(6):
            value = entries.get((i, j))
            if value is None:
                value = torch.full(shape, 1.0 if i == j else 0.0, dtype=sigma.dtype,
                                   device=sigma.device)
            row.append(value.expand(shape))
        rows.append(torch.stack(row, dim=-1))
    return torch.stack(rows, dim=-2)


def space_charge_2d_map(sigma: torch.Tensor, ref: RefState, current: float,
                        ds: nm.Scalar) -> torch.Tensor:
    """ImpactX ``space_charge2D_push``: the linear kick of a coasting beam of current
    ``current`` [A] over ``ds`` [m] for covariance ``sigma`` (``(..., 6, 6)``)."""
    bg = ref.beta_gamma
    alfven = 4.0 * math.pi * EPSILON_0 * ref.mass_eV * SPEED_OF_LIGHT / ref.charge_qe
    perveance = abs(current / alfven) * 2.0 / bg**3
    s11, s33, s13 = sigma[..., 0, 0], sigma[..., 2, 2], sigma[..., 0, 2]
    root = torch.sqrt(s11 * s33 - s13 * s13)
    d = (root + s11) * (root + s33) - s13 * s13
    coeff = perveance * ds / (2.0 * d)
    cross = coeff * -s13
    return _unit_with(sigma, {(1, 0): coeff * (root + s33), (1, 2): cross, (3, 0): cross,
                              (3, 2): coeff * (root + s11)})


def space_charge_3d_map(sigma: torch.Tensor, ref: RefState, bunch_charge: float,
                        ds: nm.Scalar) -> torch.Tensor:
    """ImpactX ``space_charge3D_push``: the linear kick of a bunch of charge
    ``bunch_charge`` [C] over ``ds`` [m] for covariance ``sigma`` (``(..., 6, 6)``)."""
    bg2 = ref.beta_gamma**2
    rcn = abs(ref.charge_qe * bunch_charge) / (4.0 * math.pi * EPSILON_0 * ref.mass_eV)
    coeff = ds * rcn / bg2 * (1.0 / (5.0 * math.sqrt(5.0)))
    x, y, z = sigma[..., 0, 0], sigma[..., 2, 2], bg2 * sigma[..., 4, 4]
    rd = elliptic_rd(torch.stack([y, z, x], -1), torch.stack([z, x, y], -1),
                     torch.stack([x, y, z], -1))
    return _unit_with(sigma, {(1, 0): coeff * rd[..., 0], (3, 2): coeff * rd[..., 1],
                              (5, 4): coeff * bg2 * rd[..., 2]})


def space_charge_map(space_charge: EnvelopeSpaceCharge, sigma: torch.Tensor,
                     ref: RefState, ds: nm.Scalar) -> torch.Tensor:
    """The space-charge kick of :class:`EnvelopeSpaceCharge` over ``ds`` [m]."""
    if space_charge.kind == "2D":
        return space_charge_2d_map(sigma, ref, space_charge.intensity, ds)
    return space_charge_3d_map(sigma, ref, space_charge.intensity, ds)


#: ImpactX maps with a length, cut into ``nslice`` slices under space charge (ConstF and
#: ChrPlasmaLens: the flow of an s-independent Hamiltonian, so a half slice is the map of
#: half the slice length; ``ConstF.H``, ``ChrPlasmaLens.H``).
THICK = frozenset({"Drift", "ChrDrift", "ExactDrift", "Quad", "ChrQuad", "ExactQuad",
                   "Sbend", "CFbend", "ExactSbend", "ExactSbendB", "ExactCFbend", "Sol",
                   "ExactMultipole", "ConstF", "ChrPlasmaLens"})


@dataclass(frozen=True)
class ElementMap:
    """The linear transport map of one harness element (its ImpactX maps multiplied)."""

    index: int
    name: str
    matrix: torch.Tensor  # (6, 6) or batch + (6, 6)


class EnvelopeTracker:
    """A lattice as per-element linear transport maps for one device and dtype.

    Args:
        elements: the harness element list (:attr:`harness.model.scenario.Scenario.elements`).
        reference: reference particle at the lattice entrance.
        device, dtype: where and in which precision the covariance is propagated.
        parameters: ``(element name, field)`` keys that :meth:`maps` and :meth:`track` may
            receive as tensors; every map that depends on one (or sits downstream of an RF
            gap that does) is rebuilt per call, all others once here.
        space_charge: envelope space charge (each thick map cut into its element's
            ``nslice`` slices, a space-charge kick before each); None: none.
    """

    def __init__(self, elements: Sequence[Element], reference: ReferenceParticle | RefState,
                 *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64,
                 parameters: Iterable[ParamKey] = (),
                 space_charge: EnvelopeSpaceCharge | None = None):
        self.space_charge = space_charge
        self.elements = list(elements)
        self.device = torch.device(device)
        self.dtype = dtype
        self.parameters = checked_parameters(self.elements, parameters)
        self.reference = RefState.coerce(reference)
        self.specs: list[list[MapSpec]] = []
        for element in self.elements:
            fields = frozenset(f for n, f in self.parameters if n == element.name)
            self.specs.append(translate(element, fields))
            if space_charge is not None:
                refused = _sliced_refusal(element, self.specs[-1])
                if refused is not None:
                    raise ValueError(refused)
        dynamic_names = {n for n, _ in self.parameters}
        self._dynamic: list[bool] = []
        upstream = self.reference.dynamic
        timed = any(s.reads_time for specs in self.specs for s in specs)
        for element, specs in zip(self.elements, self.specs, strict=True):
            dynamic = upstream or element.name in dynamic_names
            self._dynamic.append(dynamic)
            if dynamic and any(changes_reference(s, timed) for s in specs):
                upstream = True
        self._constant: dict[int, torch.Tensor] = {}
        ref = self.reference
        for index in range(len(self.elements)):
            matrix, ref_out = self._element_map(index, ref, {})
            if not self._dynamic[index]:
                self._constant[index] = matrix.detach()
            ref = ref_out

    # -- maps --------------------------------------------------------------------------------
    def _params(self, element: Element, values: Mapping[ParamKey, torch.Tensor]) -> Params:
        params: dict[str, nm.Scalar] = dict(element.params)
        for (name, field), value in values.items():
            if name == element.name:
                params[field] = value
        return params

    def spec_map(self, spec: MapSpec, params: Params, ref: RefState) -> torch.Tensor:
        """The ``transport_map`` of one ImpactX map at reference ``ref`` (before the map)."""
        if spec.impactx in ANALYTIC_MAPS:
            return ANALYTIC_MAPS[spec.impactx](params, ref, self.device, self.dtype)
        made = spec.make(params, ref)
        if isinstance(made, Kernel) and spec.impactx in DRIFTS:
            # ChrDrift.H, ExactDrift.H transport_map: the linear Drift of the kernel's
            # length (its first coefficient; a kicker's drift halves have half the length)
            return assemble(drift_entries(made.coeffs[0], ref), self.device, self.dtype)
        if isinstance(made, Kernel):
            return kernel_jacobian(made, self.device, self.dtype)
        return assemble(made, self.device, self.dtype)

    def _element_map(self, index: int, ref: RefState,
                     values: Mapping[ParamKey, torch.Tensor]
                     ) -> tuple[torch.Tensor, RefState]:
        element = self.elements[index]
        params = self._params(element, values)
        matrix = torch.eye(6, device=self.device, dtype=self.dtype)
        for spec in self.specs[index]:
            # ImpactX pushes the reference particle first, then the covariance
            # (src/tracking/envelope.cpp); the in-house maps take the reference before the
            # map, the RF gap's own map reads both (ShortRF.H)
            matrix = torch.matmul(self.spec_map(spec, params, ref), matrix)
            ref = reference_after(spec, params, ref)
        return matrix, ref

    def maps(self, values: Mapping[ParamKey, torch.Tensor] | None = None
             ) -> list[ElementMap]:
        """Every element's map for parameter ``values`` (tensors of one common batch shape,
        keys among the ``parameters`` given at construction)."""
        values = declared_values(values, self.parameters, self.device, self.dtype)
        out = []
        ref = self.reference
        for index, element in enumerate(self.elements):
            if index in self._constant:
                matrix = self._constant[index]
                for spec in self.specs[index]:
                    ref = reference_after(spec, self._params(element, values), ref)
            else:
                matrix, ref = self._element_map(index, ref, values)
            out.append(ElementMap(index, element.name, matrix))
        return out

    def transfer_matrix(self, values: Mapping[ParamKey, torch.Tensor] | None = None
                        ) -> torch.Tensor:
        """The one-pass linear map of the whole lattice (``(6, 6)`` or ``batch + (6, 6)``)."""
        total = torch.eye(6, device=self.device, dtype=self.dtype)
        for element_map in self.maps(values):
            total = torch.matmul(element_map.matrix, total)
        return total

    def track(self, sigma: torch.Tensor,
              values: Mapping[ParamKey, torch.Tensor] | None = None
              ) -> torch.Tensor:
        """The final covariance ``(..., 6, 6)`` from the initial ``sigma`` (``(6, 6)`` or
        batched)."""
        return self.track_elements(sigma, values)[-1]

    def track_elements(self, sigma: torch.Tensor,
                       values: Mapping[ParamKey, torch.Tensor] | None = None
                       ) -> list[torch.Tensor]:
        """The covariance at the lattice entrance and after every element:
        ``len(elements) + 1`` matrices."""
        sigma = torch.as_tensor(sigma).to(device=self.device, dtype=self.dtype)
        if self.space_charge is not None:
            return self._track_sliced(sigma, values)
        out = [sigma]
        for element_map in self.maps(values):
            r = element_map.matrix
            sigma = torch.matmul(torch.matmul(r, sigma), r.transpose(-1, -2))
            out.append(sigma)
        return out


    def _track_sliced(self, sigma: torch.Tensor,
                      values: Mapping[ParamKey, torch.Tensor] | None) -> list[torch.Tensor]:
        """:meth:`track_elements` with space charge: per thick map, ``nslice`` times half a
        slice, the space-charge kick of one slice length, half a slice."""
        assert self.space_charge is not None
        values = {k: torch.as_tensor(v).to(device=self.device, dtype=self.dtype)
                  for k, v in (values or {}).items()}
        unknown = sorted(k for k in values if k not in self.parameters)
        if unknown:
            raise KeyError(f"{unknown} were not declared as parameters of this tracker")
        out = [sigma]
        ref = self.reference
        for element, specs in zip(self.elements, self.specs, strict=True):
            params = self._params(element, values)
            for spec in specs:
                if spec.impactx == "RFCavity":
                    sigma, ref = _sliced_cavity(self.space_charge, element, params, ref,
                                                sigma, self.device, self.dtype)
                    continue
                if spec.impactx in THICK and element.length > 0.0:
                    n = element.nslice
                    half = dict(params)
                    half["length"] = params["length"] / (2 * n)
                    if "angle" in params:
                        half["angle"] = params["angle"] / (2 * n)
                    r = self.spec_map(spec, half, ref)
                    ds = params["length"] / n
                    for _ in range(n):
                        sigma = r @ sigma @ r.transpose(-1, -2)
                        kick = space_charge_map(self.space_charge, sigma, ref, ds)
                        sigma = kick @ sigma @ kick.transpose(-1, -2)
                        sigma = r @ sigma @ r.transpose(-1, -2)
                else:
                    r = self.spec_map(spec, params, ref)
                    sigma = r @ sigma @ r.transpose(-1, -2)
                ref = reference_after(spec, params, ref)
            out.append(sigma)
        return out


def _sliced_cavity(space_charge: EnvelopeSpaceCharge, element: Element, params: Params,
                   ref: RefState, sigma: torch.Tensor, device: torch.device,
                   dtype: torch.dtype) -> tuple[torch.Tensor, RefState]:
    """An ``RFCavity`` under envelope space charge: per slice of ds = length / nslice, the
    cavity's own half slices (its profile integrated from zin to zin + ds/2 and on, each
    half in the element's ``mapsteps`` steps, the reference pushed through each) with the
    kick of the whole slice between them at the reference after the first half. This is
    what ImpactX 26.10 runs: measured on a 250 MeV proton cavity with 3D envelope space
    charge, nslice 2 and 3, the final covariance agrees with it to 3.4e-15 relative (a kick
    before each slice differs by 5e-2, half slices of mapsteps/2 steps by 2e-3)."""
    n = element.nslice
    ds = params["length"] / n
    pieces = [(ds * i + ds * 0.5 * half, ds * 0.5, element.mapsteps)
              for i in range(n) for half in (0, 1)]
    maps = rf_cavity.rf_cavity_pieces(
        params["length"], params["escale"], params["freq"], params["phase"],
        *profile_values(element, params), ref, ref.t, pieces)
    for index, piece in enumerate(maps):
        r = assemble(piece.entries, device, dtype)
        sigma = r @ sigma @ r.transpose(-1, -2)
        ref = piece.ref.with_time(piece.t_ref)
        if index % 2 == 0:
            kick = space_charge_map(space_charge, sigma, ref, ds)
            sigma = kick @ sigma @ kick.transpose(-1, -2)
    return sigma, ref


def _sliced_refusal(element: Element, specs: list[MapSpec]) -> str | None:
    """Why an element cannot be sliced for envelope space charge (None when it can):
    ImpactX rotates each slice of a misaligned element, a thick kicker is three ImpactX
    elements here, ChrAcc gains energy within each slice, a LinearMap is one unsliced map
    with the kick of its whole length (``LinearMap.H`` ``nslice() == 1``) and a soft-edge
    element's profile spans its whole length; none is modelled."""
    if any(spec.impactx == "Alignment" for spec in specs):
        return (f"{element.kind} {element.name}: offsets and rotations (x_offset, "
                f"y_offset, z_rot, tilt_ref, skew Ks1) are not modelled with envelope "
                f"space charge")
    if element.kind == "Kicker" and element.length > 0.0:
        return (f"Kicker {element.name}: a kicker with a length is not modelled with "
                f"envelope space charge")
    why = {"ImpactX.ChrAcc": "its energy gain within each space-charge slice",
           "ImpactX.LinearMap": "the space-charge kick of its whole length around one map",
           "ImpactX.SoftQuadrupole": "its profile over the whole length (cut pieces would "
           "rescale it)",
           "ImpactX.SoftSolenoid": "its profile over the whole length (cut pieces would "
           "rescale it)"}
    if element.kind in why and element.length > 0.0:
        return (f"{element.kind} {element.name}: {why[element.kind]} is not modelled with "
                f"envelope space charge")
    return None


# ---------------------------------------------------------------------- scenario level


def check_scenario(scenario: Scenario) -> str | None:
    """Why the in-house envelope tracker cannot run ``scenario`` (None when it can): a
    particle-mode space-charge block, or with envelope space charge an element it cannot
    slice (:func:`_sliced_refusal`)."""
    if scenario.space_charge is not None:
        return ("space_charge: the particle-mode space-charge block (Poisson grid, "
                "deposition) has no envelope counterpart; envelope space charge is "
                "ImpactX's 2D/3D envelope push (EnvelopeSpaceCharge)")
    if getattr(scenario, "envelope_space_charge", None) is not None:
        for element in scenario.elements:
            refused = _sliced_refusal(element, translate(element, frozenset()))
            if refused is not None:
                return refused
    return None


def scenario_space_charge(scenario: Scenario) -> EnvelopeSpaceCharge | None:
    """The :class:`EnvelopeSpaceCharge` of a scenario's ``envelope_space_charge`` (kind
    ``2d``: ``beam.current_A`` [A]; ``3d``: ``beam.bunch_charge_C`` [C]), or None."""
    block = getattr(scenario, "envelope_space_charge", None)
    if block is None:
        return None
    return EnvelopeSpaceCharge(block.kind.upper(), float(scenario.envelope_intensity or 0.0))


def initial_covariance(scenario: Scenario, overrides: Mapping[str, object] | None = None,
                       ) -> np.ndarray | torch.Tensor:
    """The scenario beam's 6x6 covariance L L^T (L = :func:`harness.model.particles.
    beam_cholesky`, the factor that shapes the unit-covariance samples), in ImpactX units;
    a tensor (differentiable) when ``overrides`` holds tensors (``twiss.beta_x``, ...)."""
    factor = beam_cholesky(scenario.beam, dict(overrides or {}))
    if isinstance(factor, torch.Tensor):
        return factor @ factor.transpose(-1, -2)
    return np.asarray(factor) @ np.asarray(factor).T


def envelope_tracker(scenario: Scenario, parameters: Iterable[ParamKey] = (),
                     device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float64,
                     space_charge: EnvelopeSpaceCharge | None = None) -> EnvelopeTracker:
    """The :class:`EnvelopeTracker` of a scenario; raises ValueError naming the field when
    the scenario asks for something it does not model (its particle-mode
    ``space_charge`` block: envelope space charge is given as ``space_charge``)."""
    reason = check_scenario(scenario)
    if reason is not None:
        raise ValueError(reason)
    return EnvelopeTracker(scenario.elements, scenario.reference_particle, device=device,
                           dtype=dtype, parameters=parameters, space_charge=space_charge)


def track_envelope_elements(scenario: Scenario,
                            sigma: np.ndarray | torch.Tensor | None = None,
                            values: Mapping[ParamKey, torch.Tensor] | None = None,
                            device: torch.device | str = "cpu",
                            dtype: torch.dtype = torch.float64,
                            space_charge: EnvelopeSpaceCharge | None = None,
                            ) -> list[torch.Tensor]:
    """Propagate the covariance ``sigma`` (default: :func:`initial_covariance`) through the
    scenario's lattice: the matrices at the entrance and after each element
    (``len(elements) + 1``). ``values`` (element parameters as tensors, ``(name, field)``
    keys) make them differentiable in those parameters; ``space_charge`` adds ImpactX's
    envelope space charge."""
    tracker = envelope_tracker(scenario, list(values or {}), device, dtype, space_charge)
    if sigma is None:
        sigma = initial_covariance(scenario)
    return tracker.track_elements(torch.as_tensor(sigma), values)


def track_envelope(scenario: Scenario, sigma: np.ndarray | torch.Tensor | None = None,
                   values: Mapping[ParamKey, torch.Tensor] | None = None,
                   device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float64,
                   space_charge: EnvelopeSpaceCharge | None = None) -> torch.Tensor:
    """The final covariance of :func:`track_envelope_elements`."""
    return track_envelope_elements(scenario, sigma, values, device, dtype,
                                   space_charge)[-1]


class InhouseEnvelope(PreparedEnvelope):
    """The in-house envelope tracker of a scenario with ``tracking: envelope`` (a
    :class:`backends.base.PreparedEnvelope`): the maps built once (:class:`EnvelopeTracker`,
    with the scenario's envelope space charge), each :meth:`run` one propagation."""

    def __init__(self, scenario: Scenario, model: str, device: str = "cpu",
                 dtype: torch.dtype = torch.float64):
        self.model = model
        self.device = torch.device(device)
        self.threads = torch.get_num_threads()
        self.tracker = envelope_tracker(scenario, (), device, dtype,
                                        scenario_space_charge(scenario))

    @classmethod
    def from_plan(cls, plan: Plan) -> InhouseEnvelope:
        """The envelope tracker of the in-house adapter's plan."""
        from backends.torch_support import torch_dtype

        return cls(plan.scenario, plan.model, plan.device, torch_dtype(plan.dtype))

    def run(self, sigma: np.ndarray) -> torch.Tensor:
        """The final covariance (a tensor on the tracker's device)."""
        with torch.no_grad():
            return self.tracker.track(torch.as_tensor(sigma))

    def extract(self, result: torch.Tensor) -> np.ndarray:
        """The final covariance as (6, 6) float64 numpy."""
        return result.detach().to(device="cpu", dtype=torch.float64).numpy()

    def synchronize(self) -> None:
        """Wait for queued CUDA work."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        """Nothing to release."""
        return None

    def track(self, sigma: np.ndarray) -> np.ndarray:
        """run -> synchronize -> extract."""
        result = self.run(sigma)
        self.synchronize()
        return self.extract(result)


def make_envelope_observables(scenario: Scenario, parameters: Sequence[str],
                              names: Sequence[str], device: torch.device | str = "cpu",
                              dtype: torch.dtype = torch.float64,
                              ) -> tuple[Callable[[torch.Tensor], dict[str, torch.Tensor]],
                                         torch.Tensor]:
    """``(g, theta0)`` of an envelope scenario, as :func:`backends.inhouse.objective.
    make_observables` for particles: ``g(theta)`` propagates the beam's covariance
    (:func:`initial_covariance`, differentiable in beam parameters) through the lattice
    (element parameters as tensors) and gives the observables ``names`` of the final
    covariance (:func:`harness.model.observables.observables_from_moments`, mean 0: the
    envelope is about the reference orbit). ``theta`` ``(P,)`` -> 0-d values, ``(B, P)`` ->
    ``(B,)``; reverse and forward mode."""
    from backends.inhouse.tracker import Tracker

    resolved = resolve_parameters(scenario, list(parameters))
    element_slots = [(i, (p.owner, p.field)) for i, p in enumerate(resolved)
                     if p.target == "element"]
    beam_slots = [(i, f"{p.owner}.{p.field}") for i, p in enumerate(resolved)
                  if p.target == "beam"]
    keys = [key for _, key in element_slots]
    tracker = envelope_tracker(scenario, keys, device, dtype, scenario_space_charge(scenario))
    reference = Tracker(scenario.elements, scenario.reference_particle, device=device,
                        dtype=dtype, parameters=keys)
    fixed = None if beam_slots else torch.as_tensor(initial_covariance(scenario)).to(
        device=device, dtype=dtype)

    def g(theta: torch.Tensor) -> dict[str, torch.Tensor]:
        if theta.shape[-1] != len(resolved) or theta.dim() not in (1, 2):
            raise ValueError(f"theta must have shape (P,) or (B, P) with P = {len(resolved)}, "
                             f"got {tuple(theta.shape)}")
        if theta.dim() == 2 and (beam_slots or tracker.space_charge is not None):
            rows = [g(row) for row in theta.unbind(0)]
            return {name: torch.stack([row[name] for row in rows]) for name in names}
        values = {key: theta[..., i] for i, key in element_slots}
        sigma = fixed if fixed is not None else torch.as_tensor(initial_covariance(
            scenario, {key: theta[i] for i, key in beam_slots})).to(device=device,
                                                                   dtype=dtype)
        final = tracker.track(sigma, values)
        end = reference.reference_at_end(values)
        mean = torch.zeros(final.shape[:-1], dtype=final.dtype, device=final.device)
        return observables.observables_from_moments(mean, final, list(names),
                                                    end.beta_gamma, end.beta)

    theta0 = torch.tensor([p.value for p in resolved], dtype=dtype, device=device)
    return g, theta0
