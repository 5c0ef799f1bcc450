"""Pre-flight memory estimate of a case: refuse, before anything is allocated, a case that
cannot fit in its memory limit.

The estimate is a lower bound of what the case must hold at once, so that only cases that
certainly cannot fit are refused:

* the process itself: :data:`BASE_BYTES` (interpreter, numpy, torch and a backend loaded);
* particles: ``N × 6`` float64 coordinates (48 bytes per particle) times the copies the
  backend keeps alive at once (:data:`PARTICLE_COPIES`: the initial and final arrays plus
  the backend's own storage);
* space charge: the charge density on the doubled grid ``(2 nx)(2 ny)(2 nz)`` that the
  FFT convolution with the integrated Green function needs (Hockney's doubling: Qiang et
  al., *Phys. Rev. ST Accel. Beams* 9, 044204 (2006)), as complex128, for the density's
  transform, the Green function's transform and their product: 3 × 16 bytes per cell.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Resident memory of a child before it holds any particle [bytes] (measured: about 250 MB
#: of private data once torch is imported; 200 MB keeps the estimate a lower bound).
BASE_BYTES = 200 * 2**20
#: Bytes of one particle's six float64 coordinates.
PARTICLE_BYTES = 6 * 8
#: Copies of the particle array alive at once, per backend (others: the default).
PARTICLE_COPIES: dict[str, int] = {"impactx": 3, "cheetah": 3, "inhouse": 3}
DEFAULT_PARTICLE_COPIES = 2
#: Complex128 buffers of the doubled grid a space-charge solve holds at once.
DOUBLED_GRID_BUFFERS = 3


@dataclass(frozen=True)
class Estimate:
    """A case's memory estimate [bytes] and how it was reached (for the reason)."""

    bytes: int
    detail: str


def estimate(backend: str, particles: int, scenario) -> Estimate:
    """The lower-bound memory estimate of a case (see the module text)."""
    copies = PARTICLE_COPIES.get(backend, DEFAULT_PARTICLE_COPIES)
    particle_bytes = int(particles) * PARTICLE_BYTES * copies
    parts = [f"{particles:.3g} particles x {PARTICLE_BYTES} B x {copies} copies"]
    total = BASE_BYTES + particle_bytes
    settings = getattr(scenario, "space_charge", None)
    if settings is not None and settings.grid is not None:   # the Gauss kinds: no mesh
        nx, ny, nz = (int(n) for n in settings.grid)
        cells = 8 * nx * ny * nz
        grid_bytes = cells * 16 * DOUBLED_GRID_BUFFERS
        total += grid_bytes
        parts.append(f"space-charge grid {nx}x{ny}x{nz} doubled to {cells:.3g} cells x 16 B "
                     f"x {DOUBLED_GRID_BUFFERS} FFT buffers")
    return Estimate(total, " + ".join(parts) + f" + {BASE_BYTES / 2**20:.0f} MiB process")


def refusal(backend: str, particles: int, scenario, limit_bytes: int | None) -> str | None:
    """Why a case cannot fit in ``limit_bytes`` (None: it may fit, or no limit)."""
    if not limit_bytes:
        return None
    needed = estimate(backend, particles, scenario)
    if needed.bytes <= limit_bytes:
        return None
    return (f"needs at least {needed.bytes / 2**30:.3g} GiB ({needed.detail}), more than the "
            f"memory limit of {limit_bytes / 2**30:.3g} GiB; not started")
