"""Backends for the tuning tests (loaded as ``fake_tuning_backends:X``): the beam is scaled
by the strength of the first quadrupole, so the objective depends on it, and one of them
kills its process part-way through a tuning case."""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from backends.base import Backend, Prepared, model_signature
from harness.model.vocabulary import LATTICE_KINDS


class _Scale(Prepared):
    """Multiplies every coordinate by the first quadrupole's Kn1."""

    tracks: ClassVar[int] = 0
    crash_on: ClassVar[int | None] = None

    def __init__(self, scenario):
        self.model = model_signature(scenario)
        quads = [e for e in scenario.elements if e.kind == "Quadrupole"]
        self.scale = float(quads[0].params["Kn1"]) if quads else 1.0

    def inject(self, particles: np.ndarray) -> np.ndarray:
        return np.array(particles, copy=True)

    def run(self, handle: np.ndarray) -> np.ndarray:
        type(self).tracks += 1
        if self.crash_on is not None and type(self).tracks >= self.crash_on:
            os.abort()
        return handle * self.scale

    def extract(self, handle: np.ndarray) -> np.ndarray:
        return handle


class ScaleBackend(Backend):
    """Scales the beam by the first quadrupole's strength (not differentiable)."""

    name = "fake-scale"
    distribution = "numpy"
    element_kinds: ClassVar[frozenset[str]] = LATTICE_KINDS
    prepared_class: ClassVar[type[_Scale]] = _Scale

    @classmethod
    def _import(cls) -> None:
        import numpy  # noqa: F401

    def prepare(self, scenario, device="cpu", dtype="float64") -> Prepared:
        return self.prepared_class(scenario)


class _CrashOnFourth(_Scale):
    tracks: ClassVar[int] = 0
    crash_on: ClassVar[int | None] = 4


class CrashingTuningBackend(ScaleBackend):
    """Aborts (SIGABRT) on its fourth track in a process: after the warm-up and two
    evaluations of a tuning case."""

    name = "fake-crashing-tuning"
    prepared_class = _CrashOnFourth
