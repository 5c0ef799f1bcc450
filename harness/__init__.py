"""trackbench harness: scenarios, particles, observables, runner, metrics, reports, CLI."""

__version__ = "0.1.0"
