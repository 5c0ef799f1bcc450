"""The workloads differentiable codes are for, measured: beam reconstruction from a
quadrupole scan (:mod:`harness.workloads.reconstruct`) and many parameter settings per call
(:mod:`harness.workloads.batch`). See ``docs/workloads.md``."""
