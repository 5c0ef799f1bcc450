"""The scenario model: a scenario as data, and nothing else of the project.

A scenario file (YAML) is read by :mod:`~harness.model.yaml_load` (bounded, safe), checked
against the schema of :mod:`~harness.model.scenario` (the beam, model tier, space charge,
observables, gradients and the tuning block of :mod:`~harness.model.tuning`) with the
numeric bounds of :mod:`~harness.model.limits`, and its PALS lattice flattened into the list
of elements every backend reads (:mod:`~harness.model.lattice`, kinds and fields named in
:mod:`~harness.model.vocabulary`). The same layer draws and reads the initial particles
(:mod:`~harness.model.particles`, openPMD files in :mod:`~harness.model.openpmd`), names the
reference particle (:mod:`~harness.model.reference_particle`), resolves parameter paths
(:mod:`~harness.model.parameters`) and computes observables from final particles
(:mod:`~harness.model.observables`).

This package imports no other module of the project (``tests/test_layering.py``); the
backends import only this package.
"""
