"""2D and 2.5D space charge (transverse integrated Green function) and ImpactX's analytic
Gaussian space-charge kicks (``Gauss3D``, ``Gauss2p5D``), as differentiable torch kicks.

ImpactX (``src/particles/spacecharge/HandleSpacecharge.cpp``) dispatches on
``algo.space_charge``; this module ports the four models other than ``3D`` (which is
:mod:`backends.inhouse.space_charge`):

**2D** (``"2D"``, a coasting beam of current ``I``) and **2.5D** (``"2p5D"``, a bunch). Unlike
3D, the particles stay in fixed-s coordinates ``(x, px, y, py, t, pt)`` (no ``ToFixedT``):

1. **Mesh.** ``n_cell = (nx, ny, 1)``: the nodal mesh spans the particles' bounding box in
   ``x``, ``y`` (and ``t``) widened by ``(prob_relative - 1) / 2`` of its width on each side
   (``ImpactX::ResizeMesh``, ``initialization/InitMeshRefinement.cpp``).
2. **Deposition** of each particle's charge with the B-spline shape of ``particle_shape``
   (1 CIC, 2 TSC) on the 3D nodal mesh, then summed over z, guards included
   (``particles/ChargeDeposition.cpp``: ``flatten_charge_to_2D``, ``ReduceToPlaneMF2``): the
   z weights sum to one, so this is the 2D deposition on the ``(nx + 1) x (ny + 1)`` nodes
   divided by ``dx dy dz``; charge deposited on transverse guard nodes, outside the domain,
   is dropped ("open transverse boundary").
3. **Poisson solve** (``PoissonSolve.cpp`` -> ablastr ``computePhiIGF`` with
   ``is_igf_2d_slices``): the convolution of the 2D density with the integrated Green
   function of ``-ln(r) / (2 pi eps0)`` over a ``dx x dy`` cell, ablastr
   ``SumOfIntegratedPotential2D`` (``fields/IntegratedGreenFunctionSolver.H``), with
   ``IntegratedPotential2D(x, y) = 3 x y - x^2 atan(y/x) - y^2 atan(x/y) - x y ln(x^2 + y^2)``
   (minus Eq. 58 of J. Qiang et al., J. Comput. Phys. 197, 2004; it is
   ``-int int ln(x^2 + y^2) dx dy``), summed over the four cell corners and divided by
   ``4 pi eps0``; open boundaries by Hockney's doubled grid, on the valid nodes only (the
   potential on the guard nodes stays zero).
4. **Field** ``E = -grad phi`` by central differences on the nodes (``ForceFromSelfFields.cpp``,
   the ``True_2D`` branch; the edge nodes see the zero guard potential), gathered
   **bilinearly** at ``(x, y)`` (``GatherAndPush.cpp``: ``doGatherVectorFieldNodal<2>`` with
   ``z = 0``).
5. **Push** (``GatherAndPush.cpp``), with ``push = dt q / (gamma^2 p_ref)``, ``dt = ds/(beta
   c)``; the ``dz`` of the deposit's volume cancels against the ``dr[2]`` factor of the push,
   so with ``E_lambda`` the field of the particles' charges taken as line densities [C/m]:

   * 2D: ``px += E_lambda,x push / (beta c)``; the particles' "charges" are the beam
     current ``I`` [A] shared among them (ImpactX reads ``beam.current`` for ``"2D"``,
     ``InitDistribution.cpp``), so ``E_lambda / (beta c)`` is the field of the line density
     ``I / (beta c)``. No longitudinal kick.
   * 2.5D: ``px += E_lambda,x F_xy push / beta`` with the particles' charges the bunch charge
     ``Q``, and ``pt -= phi_lambda F_z push / beta`` when ``apply_longitudinal_kick`` (the
     potential gathered bilinearly, its additive constant set by the IGF and the cell),
     where ``F_xy = lambda(t) / Q`` and ``F_z = |q| lambda'(t) / (q_e Q)`` come from a
     histogram of ``t`` in ``space_charge_num_longitudinal_bins`` bins over ``[t_min,
     t_max]`` (``Deposit1D.cpp``, ``wakefields/ChargeBinning.cpp``: ``DepositCharge1D``
     nearest-bin counts, ``DerivativeCharge1D`` forward differences), read at the particle's
     bin ``int((t - t_min) / bin)`` and interpolated linearly to the next bin
     (:data:`PROFILE_INTERPOLATION`).

**Gauss3D** (``Gauss3dPush.cpp``): in fixed-t coordinates, the field of a 3D Gaussian bunch
centred at the origin with the beam's rms sizes ``sigma_x, sigma_y, sigma_z`` (weighted,
about the mean; ``diagnostics/ReducedBeamCharacteristics.cpp``): J. Qiang et al., "A
two-and-a-half dimensional symplectic space-charge solver", LBNL-2001674 (2025), Eqs. 45-47,
the integrals over ``[0, 1]`` by Simpson's rule on ``gauss_nint`` points (``efldgauss``);
``p_i += i int_i push 2 (sigma_x/sigma_y) Q c^2 1e-7 / (sigma_i^2 sigma_z sqrt(2 pi))``.

**Gauss2p5D** (``Gauss2p5dPush.cpp``): the transverse field of a 2D
Gaussian (same report, Eqs. 25, 31, 32; ``potInt``: Simpson on ``[delta, 1]`` plus a
trapezoid on ``[0, delta]``) scaled by the line density ``lambda(z)`` of a
``gauss_charge_z_bins`` histogram, and a longitudinal kick from ``lambda'(z)`` with the
constant ``-ln 2 + 0.577216 - 2 ln((sigma_x + sigma_y) / (2 L))``, ``L`` =
``gauss_long_scale`` (default ``1.103 beta gamma sigma_z``). J. Qiang, Phys. Rev. Accel.
Beams 28, 114602 (2025), Eqs. 31-32 give the closed form for a round beam that ImpactX's
``examples/space_charge_gaussian_kick`` checks. Measured against impactx 26.10, whose
behaviour differs from the 26.06 source in three places (the wheel is trusted): the
particles stay in fixed-s coordinates ``(x, y, t)`` (sizes, bins and the kicked ``pt``),
the push carries ``1/beta`` (``push_consts = c^2 1e-7 dt q / (beta gamma^2 p_ref)``), and
``space_charge_apply_longitudinal_kick`` switches the ``pt`` kick off; the line density is
read in the particle's own bin (no interpolation). ``potInt`` adds its ``[0, delta]``
trapezoid term before dividing the Simpson sums by 3, and so does this port.

Pure functions of tensors with a leading batch shape (``batch + (N,)`` columns); histograms
carry no gradient through the bin counts (piecewise constant), only through the bin width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from backends.inhouse import numeric as nm
from backends.inhouse.maps import Columns
from backends.inhouse.reference import RefState
from backends.inhouse.space_charge import (
    DEFAULT_PROB_RELATIVE,
    EPSILON_0,
    SHAPE_ORDER,
    _axis_stencil,
    _bounds,
    _fft_length,
    _mirror,
    _per_batch,
    check_mesh,
    to_fixed_s,
    to_fixed_t,
)

#: Speed of light [m/s] (ImpactX ``c0_SI``).
C_LIGHT = 2.99792458e8

#: ``1 / (4 pi eps0)`` as ImpactX's Gaussian kicks write it: ``c^2 1e-7`` [m/F]
#: (``rfpiepslon`` in ``Gauss3dPush.cpp`` / ``Gauss2p5dPush.cpp``).
RFPIEPSLON = C_LIGHT * C_LIGHT * 1.0e-7

#: Elementary charge [C] (ablastr ``constant::SI::q_e``).
Q_E = 1.602176634e-19

#: The space-charge kinds of this module and ImpactX's ``algo.space_charge`` names.
KINDS: dict[str, str] = {"2d": "2D", "2p5d": "2p5D", "gauss3d": "Gauss3D",
                         "gauss2p5d": "Gauss2p5D"}

#: How the line densities of 2p5D and Gauss2p5D are read at a particle: ``"nearest"``, the
#: value of its own bin ``int((t - t_min)/bin)`` (ImpactX 26.10, measured: round-off
#: agreement), or ``"linear"``, blended to the next bin (a later ImpactX source,
#: ``GatherAndPush.cpp`` "Interpolation"; not what the wheel runs).
PROFILE_INTERPOLATION = "nearest"


@dataclass(frozen=True)
class TransverseMesh:
    """Numerical settings of the 2D / 2.5D solver.

    Attributes:
        grid: transverse cells ``(nx, ny)`` (ImpactX ``n_cell = [nx, ny, 1]``).
        deposition: ``"cic"`` or ``"tsc"`` (ImpactX ``particle_shape`` 1 or 2).
        prob_relative: mesh extent / beam extent per axis (ImpactX ``prob_relative[0]``).
        longitudinal_bins: bins of the 2.5D line density
            (``space_charge_num_longitudinal_bins``, ImpactX default 100).
        longitudinal_kick: 2.5D only: apply the ``pt`` kick
            (``space_charge_apply_longitudinal_kick``, default True).
    """

    grid: tuple[int, int] = (32, 32)
    deposition: str = "cic"
    prob_relative: float = DEFAULT_PROB_RELATIVE
    longitudinal_bins: int = 100
    longitudinal_kick: bool = True

    def __post_init__(self):
        check_mesh(self.grid, 2, self.deposition, self.prob_relative)
        if self.longitudinal_bins < 2:
            raise ValueError("longitudinal_bins must be >= 2")

    @property
    def order(self) -> int:
        """B-spline order of the deposition."""
        return SHAPE_ORDER[self.deposition]


@dataclass(frozen=True)
class GaussSettings:
    """Settings of the analytic Gaussian kicks (ImpactX ``space_charge_gauss_*``).

    Attributes:
        nint: Simpson points of the field integrals (``gauss_nint``, default 101; made odd).
        taylor_delta: Gauss2p5D: lower end of the Simpson range (``gauss_taylor_delta``).
        charge_z_bins: Gauss2p5D: bins of the line density (``gauss_charge_z_bins``, 129).
        long_scale: Gauss2p5D: longitudinal scale ``L`` [m] (``gauss_long_scale``); None:
            ``1.103 beta gamma sigma_z`` from the beam at each kick.
        longitudinal_kick: Gauss2p5D: apply the ``pz`` kick.
    """

    nint: int = 101
    taylor_delta: float = 0.01
    charge_z_bins: int = 129
    long_scale: float | None = None
    longitudinal_kick: bool = True

    def __post_init__(self):
        if self.nint < 3:
            raise ValueError("nint must be >= 3")
        if not 0.0 < self.taylor_delta < 1.0:
            raise ValueError("taylor_delta must be in (0, 1)")
        if self.charge_z_bins < 2:
            raise ValueError("charge_z_bins must be >= 2")
        if self.long_scale is not None and not self.long_scale > 0.0:
            raise ValueError("long_scale must be > 0 [m]")


# -- 2D integrated Green function and Poisson solve ---------------------------------------
def _integrated_potential_2d(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ablastr ``IntegratedPotential2D``: ``-int int ln(x^2 + y^2) dx dy`` (x, y nonzero)."""
    return (3.0 * x * y - x * x * torch.atan(y / x) - y * y * torch.atan(x / y)
            - x * y * torch.log(x * x + y * y))


def integrated_green_function_2d(nodes: tuple[int, int], dx: torch.Tensor, dy: torch.Tensor
                                 ) -> torch.Tensor:
    """Cell-integrated 2D Green function ``G[i, j]`` [m^2 / (F/m)] of ``-ln(r)/(2 pi eps0)``
    at node offsets ``(i dx, j dy)`` for ``(B, 1)`` cell sizes; ``(B,) + nodes`` float64
    (ablastr ``SumOfIntegratedPotential2D``: the antiderivative at the four corners
    ``(i +- 1/2) dx, (j +- 1/2) dy``)."""
    corners = []
    for n, d in zip(nodes, (dx, dy), strict=True):
        steps = torch.arange(n + 1, dtype=torch.float64, device=d.device) - 0.5
        corners.append(steps * d.to(torch.float64))
    cx, cy = corners
    potential = _integrated_potential_2d(cx[:, :, None], cy[:, None, :])
    return potential.diff(dim=1).diff(dim=2) / (4.0 * math.pi * EPSILON_0)


def solve_potential_2d(density: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor
                       ) -> torch.Tensor:
    """Potential [V] on the nodes of a 2D nodal density ``(B, nx + 1, ny + 1)`` [C/m^3, read
    as C/m per m^2] with open boundaries (Hockney's doubled grid, as ablastr
    ``computePhiIGF`` with ``is_igf_2d_slices``)."""
    _, nx, ny = density.shape
    green = integrated_green_function_2d((nx, ny), dx, dy).to(density.dtype)
    lengths = [_fft_length(2 * n - 1) for n in (nx, ny)]
    for dim, length in zip((1, 2), lengths, strict=True):
        green = _mirror(green, dim, length)
    padded = torch.nn.functional.pad(density, (0, lengths[1] - ny, 0, lengths[0] - nx))
    spectrum = torch.fft.rfftn(padded, dim=(1, 2)) * torch.fft.rfftn(green, dim=(1, 2))
    return torch.fft.irfftn(spectrum, s=lengths, dim=(1, 2))[:, :nx, :ny]


def _field_2d(potential: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """``-grad phi`` [V/m] on the nodes by central differences with a zero potential on the
    guard nodes (ImpactX ``ForceFromSelfFields.cpp``, ``True_2D``); ``(B, nx+1, ny+1, 2)``."""
    padded = torch.nn.functional.pad(potential, (1, 1, 1, 1))
    ex = (padded[:, :-2, 1:-1] - padded[:, 2:, 1:-1]) / (2.0 * dx.view(-1, 1, 1))
    ey = (padded[:, 1:-1, :-2] - padded[:, 1:-1, 2:]) / (2.0 * dy.view(-1, 1, 1))
    return torch.stack([ex, ey], dim=-1)


def _bilinear(values: torch.Tensor, ux: torch.Tensor, uy: torch.Tensor, cells: tuple[int, int]
              ) -> torch.Tensor:
    """Bilinear interpolation of nodal ``(B, nx+1, ny+1, C)`` values at node coordinates
    ``(B, N)`` (ablastr ``compute_weights`` / ``interp_field_nodal``); ``(B, N, C)``."""
    batch, n = ux.shape
    nodes_y = values.shape[2]
    flat = values.reshape(batch, -1, values.shape[-1])
    result = None
    ix0 = torch.floor(ux).clamp(0, cells[0] - 1)
    iy0 = torch.floor(uy).clamp(0, cells[1] - 1)
    fx, fy = ux - ix0, uy - iy0
    for ox, wx in ((0, 1.0 - fx), (1, fx)):
        for oy, wy in ((0, 1.0 - fy), (1, fy)):
            index = ((ix0.long() + ox) * nodes_y + iy0.long() + oy)
            picked = torch.gather(flat, 1, index.unsqueeze(-1).expand(batch, n, flat.shape[-1]))
            term = picked * (wx * wy).unsqueeze(-1)
            result = term if result is None else result + term
    assert result is not None
    return result


def transverse_field(x: torch.Tensor, y: torch.Tensor, charge: torch.Tensor,
                     mesh: TransverseMesh, alive: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Field and potential at ``(B, N)`` positions of particles whose ``charge`` ``(B, N)``
    is read as line densities [C/m]: ``(E_x, E_y)`` [V/m] and ``phi`` [V], each ``(B, N)``,
    as ImpactX's 2D solver computes them (times ``dz``; see the module docstring)."""
    nx, ny = mesh.grid
    order, guard = mesh.order, mesh.order
    low_x, ext_x = _bounds(x, alive, mesh.prob_relative)
    low_y, ext_y = _bounds(y, alive, mesh.prob_relative)
    dx, dy = ext_x / nx, ext_y / ny
    ux, uy = (x - low_x) / dx, (y - low_y) / dy
    idx_x, w_x = _axis_stencil(ux, nx, guard, order)
    idx_y, w_y = _axis_stencil(uy, ny, guard, order)
    full = (nx + 1 + 2 * guard, ny + 1 + 2 * guard)
    batch = x.shape[0]
    offset = torch.arange(batch, device=x.device).view(batch, 1, 1, 1) * (full[0] * full[1])
    index = offset + idx_x[..., :, None] * full[1] + idx_y[..., None, :]
    source = charge[..., None, None] * w_x[..., :, None] * w_y[..., None, :]
    flat = torch.zeros(batch * full[0] * full[1], dtype=x.dtype, device=x.device)
    nodal = flat.index_add(0, index.reshape(-1), source.reshape(-1)).view((batch,) + full)
    nodal = nodal[:, guard:guard + nx + 1, guard:guard + ny + 1]  # guard charge dropped
    density = nodal / (dx * dy).view(-1, 1, 1)
    potential = solve_potential_2d(density, dx, dy)
    field = _field_2d(potential, dx, dy)
    gathered = _bilinear(torch.cat([field, potential.unsqueeze(-1)], dim=-1), ux, uy,
                         (nx, ny))
    return gathered[..., 0], gathered[..., 1], gathered[..., 2]


# -- line density ----------------------------------------------------------------------
def _line_density(t: torch.Tensor, weight: torch.Tensor, bins: int,
                  alive: torch.Tensor | None):
    """Histogram of ``(B, N)`` positions ``t`` over ``[t_min, t_max]`` in ``bins`` bins of
    width ``(t_max - t_min)/(bins - 1)`` (ImpactX ``DepositCharge1D``: bin ``floor((t -
    t_min)/bin)``, ``bins + 1`` slots): returns ``(profile, slope, position, bin)`` with the
    profile normalised to unit integral [1/m] ``(B, bins + 1)``, its forward-difference slope
    [1/m^2] ``(B, bins + 1)`` (a zero appended: ImpactX reads one slot past its ``bins``
    slopes for the particle at ``t_max``), the particles' fractional bin position ``(B, N)``
    and the bin width ``(B, 1)``."""
    low, extent = _bounds(t, alive, 1.0)
    width = extent / (bins - 1)
    position = (t - low) / width
    index = torch.floor(position).detach().long().clamp(0, bins)
    counts = torch.zeros(t.shape[0], bins + 1, dtype=t.dtype, device=t.device)
    counts = counts.scatter_add(1, index, weight)
    profile = counts / (weight.sum(-1, keepdim=True) * width)
    slope = torch.nn.functional.pad(profile.diff(dim=1) / width, (0, 1))
    return profile, slope, position, width


def _read_profile(values: torch.Tensor, position: torch.Tensor, shift: float = 0.0
                  ) -> torch.Tensor:
    """Value of a ``(B, bins + 1)`` binned quantity at fractional bin positions ``(B, N)``:
    the particle's bin ``int(position)`` and, with :data:`PROFILE_INTERPOLATION` = "linear",
    the linear blend to the next slot with ``lambda = position - int(position) - shift``."""
    bins = values.shape[1] - 1
    index = torch.floor(position).detach().long().clamp(0, bins - 1)
    here = torch.gather(values, 1, index)
    if PROFILE_INTERPOLATION == "nearest":
        return here
    nxt = torch.gather(torch.nn.functional.pad(values, (0, 1)), 1, index + 1)
    lam = position - index.to(position.dtype) - shift
    return (1.0 - lam) * here + lam * nxt


# -- the kicks ---------------------------------------------------------------------------
def _flat(columns: Columns, alive: torch.Tensor | None):
    columns = torch.broadcast_tensors(*columns)
    like = columns[0]
    batch, n = like.shape[:-1], like.shape[-1]
    flat = [c.reshape(-1, n) for c in columns]
    mask = None if alive is None else alive.expand(batch + (n,)).reshape(-1, n)
    weight = torch.ones_like(flat[0]) if mask is None else mask.to(like.dtype)
    return flat, batch, n, mask, weight


def _push_constant(ref: RefState, ds, batch: torch.Size):
    """``dt q / (gamma^2 p_ref)`` [m/V] with ``dt = ds / (beta c)`` (ImpactX
    ``push_consts``), and ``gamma`` and ``beta``, each a float or ``(B, 1)``."""
    gamma = ref.gamma.unsqueeze(-1) if nm.is_tensor(ref.gamma) else ref.gamma
    gamma = _per_batch(gamma, batch)
    beta = nm.sqrt(1.0 - 1.0 / (gamma * gamma))
    ds_flat = _per_batch(ds.unsqueeze(-1) if nm.is_tensor(ds) else ds, batch)
    return ds_flat * ref.charge_qe / (beta * beta * gamma**3 * ref.mass_eV), gamma, beta


def kick_2d(columns: Columns, ref: RefState, ds: torch.Tensor | float, current_A: float,
            mesh: TransverseMesh = TransverseMesh(), alive: torch.Tensor | None = None
            ) -> Columns:
    """ImpactX ``"2D"`` space-charge kick over ``ds`` [m] of a coasting beam of current
    ``current_A`` [A] (magnitude; the sign is the species'): ``(x, px, y, py, t, pt)``
    columns ``batch + (N,)`` in, kicked columns out (only px, py change)."""
    flat, batch, n, mask, weight = _flat(columns, alive)
    charge = weight * (math.copysign(abs(current_A), ref.charge_qe)
                       / weight.sum(-1, keepdim=True))
    ex, ey, _ = transverse_field(flat[0], flat[2], charge, mesh, mask)
    push, _, beta = _push_constant(ref, ds, batch)
    push = push / (beta * C_LIGHT)
    kicked = (flat[0], flat[1] + push * ex, flat[2], flat[3] + push * ey, flat[4], flat[5])
    return tuple(c.reshape(batch + (n,)) for c in kicked)


def kick_2p5d(columns: Columns, ref: RefState, ds: torch.Tensor | float,
              bunch_charge_C: float, mesh: TransverseMesh = TransverseMesh(),
              alive: torch.Tensor | None = None) -> Columns:
    """ImpactX ``"2p5D"`` space-charge kick over ``ds`` [m] of a bunch of charge
    ``bunch_charge_C`` [C]: the 2D field scaled by the local line density ``lambda(t)/Q``,
    and (``mesh.longitudinal_kick``) ``pt -= phi lambda'(t) |q|/(q_e Q) push / beta``."""
    flat, batch, n, mask, weight = _flat(columns, alive)
    charge = weight * (math.copysign(abs(bunch_charge_C), ref.charge_qe)
                       / weight.sum(-1, keepdim=True))
    ex, ey, phi = transverse_field(flat[0], flat[2], charge, mesh, mask)
    profile, slope, position, _ = _line_density(flat[4], weight, mesh.longitudinal_bins, mask)
    f_xy = _read_profile(profile, position)
    push, _, beta = _push_constant(ref, ds, batch)
    push = push / beta
    px = flat[1] + push * ex * f_xy
    py = flat[3] + push * ey * f_xy
    pt = flat[5]
    if mesh.longitudinal_kick:
        f_z = _read_profile(slope, position) * abs(ref.charge_qe)
        pt = pt - push * phi * f_z
    kicked = (flat[0], px, flat[2], py, flat[4], pt)
    return tuple(c.reshape(batch + (n,)) for c in kicked)


def _moments(columns, weight):
    """Weighted mean and population rms of each of x, y, z ``(B, 1)`` (ImpactX
    ``reduced_beam_characteristics``: two passes)."""
    total = weight.sum(-1, keepdim=True)
    sigmas = []
    for c in columns:
        mean = (c * weight).sum(-1, keepdim=True) / total
        sigmas.append(torch.sqrt(((c - mean) ** 2 * weight).sum(-1, keepdim=True) / total))
    return sigmas


def _simpson_nodes(nint: int, low: float, dtype, device):
    """Abscissae and Simpson weights ``h/3 (1, 4, 2, ..., 4, 1)`` on ``[low, 1]`` with ``nint``
    points (made odd, as ImpactX)."""
    if nint % 2 == 0:
        nint += 1
    h = (1.0 - low) / (nint - 1)
    i = torch.arange(nint, dtype=dtype, device=device)
    x = low + i * h
    w = torch.where(i % 2 == 0, 2.0, 4.0).to(dtype)
    w = torch.cat([w[:1] - 1.0, w[1:-1], w[-1:] - 1.0]) * (h / 3.0)
    return x, w


def gauss3d_fields(x, y, z, sigx, sigy, sigz, gamma, nint: int):
    """ImpactX ``efldgauss`` (``Gauss3dPush.cpp``): the integrals ``(I_x, I_y, I_z)`` of the
    3D Gaussian field (LBNL-2001674 Eqs. 45-47) at ``(B, N)`` positions for ``(B, 1)`` rms
    sizes; Simpson on ``[0, 1]``."""
    s, w = _simpson_nodes(nint, 0.0, x.dtype, x.device)
    asp, basp = sigx / sigy, sigx / (sigz * gamma)
    xp2, yp2, zp2 = ((x / sigx) ** 2)[..., None], ((y / sigy) ** 2)[..., None], \
        ((z / sigz) ** 2)[..., None]
    t2 = (asp * asp)[..., None] + (1.0 - asp * asp)[..., None] * s * s
    bt2 = (basp * basp)[..., None] + (1.0 - basp * basp)[..., None] * s * s
    root = torch.sqrt(t2) * torch.sqrt(bt2)
    f1 = s * s * torch.exp(-s * s * (xp2 + yp2 / t2 + zp2 / bt2) / 2.0)
    return ((f1 / root * w).sum(-1), (f1 / (t2 * root) * w).sum(-1),
            (f1 / (bt2 * root) * w).sum(-1))


def kick_gauss3d(columns: Columns, ref: RefState, ds: torch.Tensor | float,
                 bunch_charge_C: float, settings: GaussSettings = GaussSettings(),
                 alive: torch.Tensor | None = None) -> Columns:
    """ImpactX ``"Gauss3D"`` kick over ``ds`` [m] (``Gauss3dPush.cpp``) of a bunch of charge
    ``bunch_charge_C`` [C]: the field of a 3D Gaussian with the beam's rms sizes, centred at
    the origin, in fixed-t coordinates."""
    columns = torch.broadcast_tensors(*columns)
    gamma = ref.gamma.unsqueeze(-1) if nm.is_tensor(ref.gamma) else ref.gamma
    fixed_t = to_fixed_t(columns, gamma)
    flat, batch, n, _, weight = _flat(fixed_t, alive)
    sigx, sigy, sigz = _moments((flat[0], flat[2], flat[4]), weight)
    push, gamma_b, _ = _push_constant(ref, ds, batch)
    ix, iy, iz = gauss3d_fields(flat[0], flat[2], flat[4], sigx, sigy, sigz, gamma_b,
                                settings.nint)
    charge = abs(bunch_charge_C)  # q * Q > 0: the species' sign is in push
    common = push * 2.0 * (sigx / sigy) * charge * RFPIEPSLON * math.copysign(
        1.0, ref.charge_qe) / math.sqrt(2.0 * math.pi)
    kicked = (flat[0], flat[1] + flat[0] * ix * common / (sigx * sigx * sigz),
              flat[2], flat[3] + flat[2] * iy * common / (sigy * sigy * sigz),
              flat[4], flat[5] + flat[4] * iz * common / (sigz * sigz * sigz))
    fixed_s = to_fixed_s(kicked, _per_batch(gamma, batch))
    return tuple(c.reshape(batch + (n,)) for c in fixed_s)


def gauss2p5d_integrals(x, y, sigx, sigy, delta: float, nint: int):
    """ImpactX ``potInt`` (``Gauss2p5dPush.cpp``): ``(E_x, E_y, E_z)`` integrals of a 2D
    Gaussian (LBNL-2001674 Eqs. 25, 31, 32, incl. the ``2A`` of Eq. 25) at ``(B, N)``
    positions for ``(B, 1)`` rms sizes: Simpson on ``[delta, 1]`` plus the trapezoid /
    Taylor term on ``[0, delta]``."""
    s, w = _simpson_nodes(nint, delta, x.dtype, x.device)
    xp, yp, asp = x / sigx, y / sigy, sigx / sigy
    xp2, yp2 = (xp * xp)[..., None], (yp * yp)[..., None]
    a2 = (asp * asp)[..., None]
    t2 = a2 + (1.0 - a2) * s * s
    root = torch.sqrt(t2)
    f1 = torch.exp(-s * s * (xp2 + yp2 / t2) / 2.0)
    sum_z = ((f1 - 1.0) / (s * root) * w).sum(-1)
    sum_x = (s * f1 / root * w).sum(-1)
    sum_y = (s * f1 / (t2 * root) * w).sum(-1)
    # [0, delta]: ImpactX's trapezoid term at x = delta, added to the Simpson sums before
    # their division by 3 (so it enters with weight 1/3, as in potInt)
    t2d = asp * asp + (1.0 - asp * asp) * delta * delta
    rootd = torch.sqrt(t2d)
    exparg = -(xp * xp + yp * yp / t2d) / 2.0
    sum_z = sum_z + delta * (delta * exparg) / rootd / 2.0 / 3.0
    f1d = delta * torch.exp(delta * delta * exparg)
    sum_x = sum_x + delta * f1d / rootd / 2.0 / 3.0
    sum_y = sum_y + delta * f1d / (t2d * rootd) / 2.0 / 3.0
    return (2.0 * asp * xp * sum_x / sigx, 2.0 * asp * yp * sum_y / sigy,
            2.0 * asp * sum_z)


def kick_gauss2p5d(columns: Columns, ref: RefState, ds: torch.Tensor | float,
                   bunch_charge_C: float, settings: GaussSettings = GaussSettings(),
                   alive: torch.Tensor | None = None) -> Columns:
    """ImpactX ``"Gauss2p5D"`` kick over ``ds`` [m] (``Gauss2p5dPush.cpp``) of a bunch of
    charge ``bunch_charge_C`` [C], in fixed-s coordinates as impactx 26.10 runs it:
    ``px += E_x lambda(t) sgn(q) push'``, ``pt -= (E_z + C_L) lambda'(t) sgn(q) push'`` with
    ``push' = c^2 1e-7 push / beta``; ``lambda`` in C/m from a ``charge_z_bins`` histogram
    of ``t`` scaled to ``Q``."""
    flat, batch, n, mask, weight = _flat(columns, alive)
    sigx, sigy, sigz = _moments((flat[0], flat[2], flat[4]), weight)
    push, gamma_b, beta = _push_constant(ref, ds, batch)
    push = push * RFPIEPSLON / beta
    ex, ey, ez = gauss2p5d_integrals(flat[0], flat[2], sigx, sigy, settings.taylor_delta,
                                     settings.nint)
    profile, slope, position, _ = _line_density(flat[4], weight, settings.charge_z_bins, mask)
    charge = abs(bunch_charge_C)
    f_xy = (_read_profile(profile, position, 0.5) * charge
            * math.copysign(1.0, ref.charge_qe) / abs(ref.charge_qe))
    px = flat[1] + ex * f_xy * push
    py = flat[3] + ey * f_xy * push
    pz = flat[5]
    if settings.longitudinal_kick:
        long_scale = (1.103 * gamma_b * beta * sigz if settings.long_scale is None
                      else settings.long_scale)
        constant = (-math.log(2.0) + 0.577216
                    - 2.0 * torch.log((sigx + sigy) / long_scale / 2.0))
        f_z = _read_profile(slope, position, 0.5) * charge * math.copysign(1.0, ref.charge_qe)
        pz = pz - (ez + constant) * f_z * push
    kicked = (flat[0], px, flat[2], py, flat[4], pz)
    return tuple(c.reshape(batch + (n,)) for c in kicked)
