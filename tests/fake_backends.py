"""Deliberately misbehaving backends for the runner's tests (loaded as ``fake_backends:X``).

Each returns the initial particles unchanged, after its own kind of trouble.
"""

from __future__ import annotations

import os
import time
from typing import ClassVar

import numpy as np

from backends.base import Backend, Prepared, model_signature
from harness.vocabulary import LATTICE_KINDS


class _Identity(Prepared):
    def __init__(self, scenario, scale: float = 1.0):
        self.model = model_signature(scenario)
        self.scale = scale

    def inject(self, particles: np.ndarray) -> np.ndarray:
        return np.array(particles, copy=True)

    def run(self, handle: np.ndarray) -> np.ndarray:
        self.trouble()
        return handle * self.scale

    def extract(self, handle: np.ndarray) -> np.ndarray:
        return handle

    def trouble(self) -> None:
        """What goes wrong while tracking (nothing, here)."""


class IdentityBackend(Backend):
    """Returns the particles unchanged (a lattice of nothing): the reference of the tests."""

    name = "fake-identity"
    distribution = "numpy"
    element_kinds: ClassVar[frozenset[str]] = LATTICE_KINDS
    prepared_class: ClassVar[type[_Identity]] = _Identity
    scale: ClassVar[float] = 1.0

    @classmethod
    def _import(cls) -> None:
        import numpy  # noqa: F401

    def prepare(self, scenario, device="cpu", dtype="float64") -> Prepared:
        return self.prepared_class(scenario, self.scale)


class PerturbedBackend(IdentityBackend):
    """Scales every coordinate by 1 + 1e-6: disagrees with the identity by 1e-6 of sigma."""

    name = "fake-perturbed"
    scale = 1.0 + 1e-6


class _Sleep(_Identity):
    def trouble(self) -> None:
        time.sleep(0.01)


class SleepBackend(IdentityBackend):
    """Sleeps 10 ms per track."""

    name = "fake-sleep"
    prepared_class = _Sleep


class _Crash(_Identity):
    def trouble(self) -> None:
        os.abort()


class CrashBackend(IdentityBackend):
    """Kills its own process with SIGABRT while tracking."""

    name = "fake-crash"
    prepared_class = _Crash


class _Hang(_Identity):
    def trouble(self) -> None:
        time.sleep(3600)


class HangBackend(IdentityBackend):
    """Never finishes tracking."""

    name = "fake-hang"
    prepared_class = _Hang


class _Hog(_Identity):
    def trouble(self) -> None:
        hoard = []
        for _ in range(64):  # up to 8 GiB, 128 MiB at a time, each page touched
            hoard.append(np.ones(2**24))
            time.sleep(0.02)


class MemoryHogBackend(IdentityBackend):
    """Allocates memory until stopped."""

    name = "fake-hog"
    prepared_class = _Hog


class _Raise(_Identity):
    def trouble(self) -> None:
        raise RuntimeError("first line\nthe element map diverged")


class RaisingBackend(IdentityBackend):
    """Raises an exception while tracking."""

    name = "fake-raise"
    prepared_class = _Raise


class UnsupportingBackend(IdentityBackend):
    """Supports nothing."""

    name = "fake-unsupported"

    def supports(self, scenario, device="cpu", dtype="float64"):
        from backends.base import Unsupported

        return Unsupported("fake-unsupported runs no scenario")
