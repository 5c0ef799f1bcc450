"""The tuning benchmark: optimise a beamline with and without gradients.

A scenario's optional ``tuning:`` block (:mod:`harness.model.tuning`) names the parameters
to vary, the objective at the lattice end and the tolerance; :mod:`harness.tuning.methods`
is the one registry of optimisation methods (Xopt's generators driven by
:mod:`harness.tuning.xopt_driver`, which the reconstruction workload shares);
:mod:`harness.tuning.case` runs one problem × method × backend in its own process (through
:mod:`harness.runner`); rows are described in :mod:`harness.tuning.rows` and the report
section is :mod:`harness.tuning.report`.
"""
