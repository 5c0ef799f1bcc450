"""Deliberately misbehaving backends for the runner's tests (loaded as ``fake_backends:X``).

Each returns the initial particles unchanged (or marked lost / blown up), after its own
kind of trouble. Sizes and delays that tests tune come from environment variables
(``FAKE_SPIKE_BYTES``, ``FAKE_SLEEP_S``) so that the child processes see them.
"""

from __future__ import annotations

import errno
import os
import time
from typing import ClassVar

import numpy as np

from backends.base import Backend, Plan, Prepared, model_signature
from harness.model.vocabulary import LATTICE_KINDS


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


class _Spike(_Identity):
    def trouble(self) -> None:
        size = int(os.environ.get("FAKE_SPIKE_BYTES", str(768 * 2**20)))
        spike = np.ones(size // 8)  # every page touched, freed at once: a short spike
        del spike


class SpikeBackend(IdentityBackend):
    """Allocates ``FAKE_SPIKE_BYTES`` (default 768 MiB) for an instant while tracking."""

    name = "fake-spike"
    prepared_class = _Spike


class _Slow(_Identity):
    def trouble(self) -> None:
        time.sleep(float(os.environ.get("FAKE_SLEEP_S", "1.0")))


class SlowBackend(IdentityBackend):
    """Sleeps ``FAKE_SLEEP_S`` seconds (default 1) per track."""

    name = "fake-slow"
    prepared_class = _Slow


class _Losses(_Identity):
    #: fraction of the particles lost at an aperture (all-NaN rows)
    lost_fraction = 0.3
    blown_fraction = 0.0

    def run(self, handle: np.ndarray) -> np.ndarray:
        out = np.array(handle, copy=True)
        n = len(out)
        out[: int(self.lost_fraction * n)] = np.nan
        blown = int(self.blown_fraction * n)
        if blown:
            out[n - blown:, 0] = np.inf
        return out


class LossBackend(IdentityBackend):
    """Loses the first 30 % of the particles at an aperture (NaN rows)."""

    name = "fake-loss"
    prepared_class = _Losses


class _AllLost(_Losses):
    lost_fraction = 1.0


class AllLostBackend(IdentityBackend):
    """Loses every particle at an aperture."""

    name = "fake-all-lost"
    prepared_class = _AllLost


class _BlowUp(_Losses):
    lost_fraction = 0.1
    blown_fraction = 0.05


class BlowUpBackend(IdentityBackend):
    """Loses 10 % at an aperture and sends 5 % to infinity (a numerical blow-up)."""

    name = "fake-blow-up"
    prepared_class = _BlowUp


class _Faulty(_Identity):
    kind = "ok"

    def inject(self, particles: np.ndarray) -> np.ndarray:
        self.kind = FaultyBackend.fault(len(particles))
        return super().inject(particles)

    def trouble(self) -> None:
        if self.kind == "timeout":
            time.sleep(3600)
        elif self.kind == "failed":
            raise RuntimeError("injected fault")
        elif self.kind == "crash":
            os.abort()
        time.sleep(float(os.environ.get("FAKE_SLEEP_S", "0.0")))


class FaultyBackend(IdentityBackend):
    """Its fault depends on the particle count (:meth:`fault`): a soak test's mix."""

    name = "fake-faulty"
    prepared_class = _Faulty

    @staticmethod
    def fault(particles: int) -> str:
        """``timeout``, ``failed``, ``crash`` or ``ok`` for a particle count."""
        return {0: "timeout", 1: "failed", 2: "crash"}.get(particles % 9, "ok")


class _DiskFull(_Identity):
    def trouble(self) -> None:
        if os.environ.get("FAKE_DISK_FULL", "1") == "1":
            raise OSError(errno.ENOSPC, "No space left on device", "particles/final.h5")


class DiskFullBackend(IdentityBackend):
    """A write of the case fails for a full disk (ENOSPC) while ``FAKE_DISK_FULL`` is 1
    (the default); tracks like the identity otherwise."""

    name = "fake-disk-full"
    prepared_class = _DiskFull


class _DiskFullResult(_Identity):
    def trouble(self) -> None:
        def full(source, target, *args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))

        os.replace = full  # this case process only: its result file cannot be written


class DiskFullResultBackend(IdentityBackend):
    """Tracks, then the disk is full when the case process writes its result file."""

    name = "fake-disk-full-result"
    prepared_class = _DiskFullResult


class _HangIfAsked(_Identity):
    def trouble(self) -> None:
        if os.environ.get("FAKE_HANG") == "1":
            time.sleep(3600)


class HangIfAskedBackend(IdentityBackend):
    """Hangs while ``FAKE_HANG`` is 1; tracks like the identity otherwise."""

    name = "fake-hang-if-asked"
    prepared_class = _HangIfAsked


def lattice_key(scenario) -> str:
    """A short fingerprint of a scenario's lattice (its elements and their values)."""
    import hashlib

    return hashlib.sha256(repr(list(scenario.elements)).encode()).hexdigest()[:12]


def _count(what: str, scenario) -> None:
    """Append ``<pid> <what> <lattice key>`` to the file named by ``FAKE_COUNT_FILE`` (if
    set)."""
    path = os.environ.get("FAKE_COUNT_FILE")
    if path:
        with open(path, "a", encoding="ascii") as out:
            out.write(f"{os.getpid()} {what} {lattice_key(scenario)}\n")


class CountingBackend(IdentityBackend):
    """An identity that plans (decides and "translates") and prepares from its plan,
    counting each call in ``FAKE_COUNT_FILE``: support and translation once per case."""

    name = "fake-counting"
    takes_plans: ClassVar[bool] = True

    def plan(self, scenario, device="cpu", dtype="float64"):
        _count("decide", scenario)
        refused = self.common_checks(scenario, device, dtype)
        if refused is not None:
            return refused
        _count("translate", scenario)
        lattice = tuple(element.kind for element in scenario.elements)
        return Plan(model_signature(scenario), "", scenario, device, dtype, lattice)

    def supports(self, scenario, device="cpu", dtype="float64"):
        return self.plan(scenario, device, dtype)

    def prepare(self, scenario, device="cpu", dtype="float64") -> Prepared:
        plan = self.planned(scenario, device, dtype)
        if plan.lattice is None:
            raise RuntimeError("prepared without a translated lattice")
        _count("prepare", plan.scenario)
        return self.prepared_class(plan.scenario, self.scale)
