"""ImpactX's longitudinal particle boundary ``periodic`` (``algo.particle_bc``,
``src/particles/ParticleBoundary.cpp``): t wrapped into one RF bucket.

ImpactX applies it after every slice of every element (``src/tracking/particles.cpp``:
push, then ``ParticleBoundary``), with the bucket duration T = bucket_length / beta of the
reference particle there:

    ttest = fmod(t + T/2, T),  t' = fmod(ttest + T, T) - T/2

(C's ``fmod``, truncated toward zero, is ``torch.fmod``). The in-house tracker applies it
after every element: an element's slices compose to the element because no thick map reads
t (the t-dependent maps, ShortRF and Buncher, are thin), so the wraps in between change t
only by whole buckets, to round-off.
"""

from __future__ import annotations

import torch

from backends.inhouse.maps import Columns, Kernel
from backends.inhouse.reference import RefState


def _wrap_push(columns: Columns, coeffs: tuple) -> Columns:
    x, px, y, py, t, pt = columns
    (duration,) = coeffs
    half = duration * 0.5
    ttest = torch.fmod(t + half, duration)
    return (x, px, y, py, torch.fmod(ttest + duration, duration) - half, pt)


def periodic_kernel(bucket_length: float, ref: RefState) -> Kernel:
    """The periodic wrap of t for a bucket of ``bucket_length`` [m] with the reference
    particle ``ref`` (T = bucket_length / beta [m], ImpactX's ``bucket_duration``)."""
    return Kernel(_wrap_push, (bucket_length / ref.beta,))
