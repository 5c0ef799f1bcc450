"""ImpactX with spin tracking (Thomas-BMT) for a harness lattice: initial spins in, final
particles and spins out.

The lattice is the ImpactX adapter's translation (:func:`backends.impactx.translate`), run
with ``sim.spin = True`` (ImpactX pushes each element's ``spin_and_phasespace_push``). The
initial spins are given per particle (``add_n_particles(..., sx=, sy=, sz=)``), e.g. drawn
once by :func:`backends.inhouse.spin.sample_vmf` from a polarisation vector with ImpactX's
``SpinvMF`` law, so every code tracks the same spins. Particles are carried through ImpactX
with the weights 1..N as their index (no space charge: the weights enter nothing) and read
back in injection order with ``to_df`` (columns ``spin_x``, ``spin_y``, ``spin_z``).

``kickers_as_markers``: zero-strength ``Kicker`` elements become ``Marker`` elements, as the
impactx-benchmarks ``htu_spin`` scenario builds its lattice (its run script: "Kicker has no
spin map; kick is 0"); a non-zero kicker is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.impactx import ElementSpec, translate
from harness.model.lattice import Element
from harness.model.reference_particle import IMPACTX_SPECIES, ReferenceParticle


@dataclass(frozen=True)
class SpinResult:
    """Final particles and spins of surviving particles, in injection order.

    Attributes:
        particles: ``(n, 6)`` columns x, px, y, py, t, pt.
        spins: ``(n, 3)`` sx, sy, sz.
        index: ``(n,)`` indices of the survivors into the initial arrays.
    """

    particles: np.ndarray
    spins: np.ndarray
    index: np.ndarray


def lattice_specs(elements: Sequence[Element], reference: ReferenceParticle,
                  kickers_as_markers: bool = False) -> list[ElementSpec]:
    """The ImpactX elements of a harness lattice (the adapter's translation), with
    zero-strength kickers as markers when ``kickers_as_markers``."""
    specs = [spec for e in elements for spec in translate(e, reference)]
    if not kickers_as_markers:
        return specs
    return [ElementSpec("Marker", {"name": spec.kwargs.get("name", "kicker")})
            if spec.cls == "Kicker" and spec.kwargs.get("xkick", 0.0) == 0.0
            and spec.kwargs.get("ykick", 0.0) == 0.0 else spec for spec in specs]


def track_spin(specs: Sequence[ElementSpec] | Sequence[object], reference: ReferenceParticle,
               particles: np.ndarray, spins: np.ndarray, periods: int = 1) -> SpinResult:
    """Track ``(N, 6)`` particles and ``(N, 3)`` spins with ImpactX.

    ``specs`` are adapter :class:`~backends.impactx.ElementSpec` or ImpactX elements already
    built (after AMReX is initialised: pass a callable returning them). ``periods`` sets
    ImpactX's ``periods`` (lattice repetitions).
    """
    from impactx import ImpactX, elements

    particles = np.ascontiguousarray(particles, dtype=np.float64)
    spins = np.ascontiguousarray(spins, dtype=np.float64)
    if particles.ndim != 2 or particles.shape[1] != 6:
        raise ValueError(f"particles must have shape (N, 6), got {particles.shape}")
    if spins.shape != (len(particles), 3):
        raise ValueError(f"spins must have shape ({len(particles)}, 3), got {spins.shape}")
    sim = ImpactX()
    sim.verbose = 0
    sim.tiny_profiler = False
    sim.diagnostics = False
    sim.slice_step_diagnostics = False
    sim.space_charge = False
    sim.spin = True
    sim.init_grids()
    try:
        built = specs() if callable(specs) else specs
        lattice = [s.build(elements) if isinstance(s, ElementSpec) else s for s in built]
        ref = sim.beam.ref
        if reference.species in IMPACTX_SPECIES:
            ref.set_species(reference.species)
        else:
            raise ValueError(f"spin: ImpactX needs the gyromagnetic anomaly of species "
                             f"{reference.species!r}; only {sorted(IMPACTX_SPECIES)} are set")
        ref.set_kin_energy_MeV(reference.kinetic_energy_MeV)
        qm_eev = ref.charge_qe / (ref.mass_MeV * 1e6)
        x, px, y, py, t, pt = (particles[:, i].copy() for i in range(6))
        weights = np.arange(1.0, len(particles) + 1.0)
        sim.beam.add_n_particles(x, y, t, px, py, pt, qm_eev, w=weights,
                                 sx=spins[:, 0].copy(), sy=spins[:, 1].copy(),
                                 sz=spins[:, 2].copy())
        sim.lattice.extend(lattice)
        sim.periods = periods
        sim.track_particles()
        frame = sim.beam.to_df(local=True)
    finally:
        sim.finalize()
    out, index, frame = weight_ordered(frame)
    spin_out = np.stack([frame.spin_x, frame.spin_y, frame.spin_z], axis=1)
    return SpinResult(out, spin_out, index)


def weight_ordered(frame: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    """ImpactX's particle frame (``beam.to_df``) of particles injected with the weights
    1..N, which its maps never change without space charge: ``(survivors' (n, 6) x [m], px,
    y [m], py, t [m], pt in injection order, their indices into the injected particles, the
    frame's rows in that order)``."""
    index = np.rint(frame["weighting"].to_numpy()).astype(np.int64) - 1
    order = np.argsort(index, kind="stable")
    frame = frame.iloc[order]
    out = np.stack([frame.position_x, frame.momentum_x, frame.position_y, frame.momentum_y,
                    frame.position_t, frame.momentum_t], axis=1)
    return out, index[order], frame


def track_lattice_spin(elements: Sequence[Element], reference: ReferenceParticle,
                       particles: np.ndarray, spins: np.ndarray,
                       kickers_as_markers: bool = False) -> SpinResult:
    """Track a harness lattice with spin (:func:`lattice_specs`, :func:`track_spin`)."""
    return track_spin(lattice_specs(elements, reference, kickers_as_markers), reference,
                      particles, spins)
