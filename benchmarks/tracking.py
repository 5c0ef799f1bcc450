"""Speed and memory of tracking: scenario × backend × particles × device (float64).

What is timed (``time_track``): one ``Prepared.run`` of the injected initial particles
through the whole lattice, followed by ``Prepared.synchronize`` (CUDA). Translating the
scenario and a warm-up track happen once per benchmark process; asv re-runs ``setup``
before every timed call (``number = 1``), and ``setup`` re-injects the particles, so
injection and extraction are never timed. This is the ``time_*_s`` of ``trackbench run``.
"""

from __future__ import annotations

from benchmarks import cases, grid


class Tracking:
    """Track the scenario's seeded beam with one backend."""

    params = (grid.scenarios(), grid.backends(), grid.particle_counts(), grid.devices())
    param_names = ("scenario", "backend", "particles", "device")
    #: One call per sample, with ``setup`` (re-injection) before each.
    number = 1
    #: The warm-up is the track done in ``setup``; asv's own warm-up calls would re-run it.
    warmup_time = 0.0
    #: Per benchmark process [s]: imports, translation, warm-up and the samples.
    timeout = 600.0

    def setup(self, scenario: str, backend: str, particles: int, device: str) -> None:
        """Prepare once per process (cached), then inject the initial particles (not timed)."""
        self.case = cases.tracking_case(scenario, backend, particles, device, grid.DTYPE)
        self.handle = self.case.prepared.inject(self.case.initial)
        self.case.prepared.synchronize()

    def time_track(self, scenario: str, backend: str, particles: int, device: str) -> None:
        """Seconds of one track through the lattice (``run`` + device synchronisation)."""
        self.case.prepared.run(self.handle)
        self.case.prepared.synchronize()

    def peakmem_track(self, scenario: str, backend: str, particles: int, device: str) -> None:
        """Peak resident memory [bytes] of the benchmark process: imports, the prepared
        tracker and a full inject-run-extract track (host memory; CUDA memory not counted)."""
        self.case.prepared.track(self.case.initial)


class MemoryFloor:
    """The one-pass memory floor a fused track is measured against: the six float64
    coordinate columns of N particles each read, scaled and written back once, in place
    (torch, every thread the process has). A lattice fused into one loop over the particles
    cannot cost less (``fodo_linear`` of the in-house tracker is one such pass)."""

    params = (grid.particle_counts(),)
    param_names = ("particles",)
    number = 1
    warmup_time = 0.0

    def setup(self, particles: int) -> None:
        """Six contiguous columns of random coordinates, touched once (pages mapped)."""
        import torch

        generator = torch.Generator().manual_seed(1)
        self.columns = [torch.rand(particles, dtype=torch.float64, generator=generator)
                        for _ in range(6)]

    def time_one_pass(self, particles: int) -> None:
        """Seconds of one in-place pass over the six columns."""
        for column in self.columns:
            column.mul_(1.0000001)
