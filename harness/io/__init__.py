"""Lattices and beams in and out: importers and exporters.

Importers turn text (MAD-X, Bmad, elegant, PALS) or lattices built in Python (a Cheetah
``Segment``, a list of ImpactX elements) into a validated scenario whose ``lattice:`` is
PALS; every element that cannot be translated is named with its kind, count and the
reason (:class:`harness.io.model.Untranslatable`). Exporters write a scenario's lattice as a
standalone PALS file, and particles as openPMD files.

Modules (one job each):

* :mod:`harness.io.model` -- the translated element, the untranslatable one, the policy.
* :mod:`harness.io.pals_doc` -- elements -> PALS document -> validated scenario YAML.
* :mod:`harness.io.madx` -- MAD-X through cpymad.
* :mod:`harness.io.cheetah_segment` -- Cheetah ``Segment`` (and Bmad / elegant files).
* :mod:`harness.io.impactx_lattice` -- a list of ImpactX elements.
* :mod:`harness.io.pals_file` -- PALS files of other codes in, a scenario's lattice out.
* :mod:`harness.io.openpmd` -- openPMD particle files in and out.
* :mod:`harness.io.particles_out` -- ``trackbench run --write-particles openpmd`` files.
* :mod:`harness.io.importer` -- the format dispatch behind ``trackbench import``.
* :mod:`harness.io.commands` -- the ``import`` and ``export`` commands.
"""
