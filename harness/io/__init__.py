"""Lattices and beams in and out: importers and exporters.

Importers turn text (MAD-X, Bmad, elegant, PALS) or lattices built in Python (a Cheetah
``Segment``, a list of ImpactX elements) into a validated scenario whose ``lattice:`` is
PALS; every element that cannot be translated is named with its kind, count and the
reason (:class:`harness.io.model.Untranslatable`). Importing a file never runs it: every
file is read as data, and MAD-X and the Bmad/elegant parsers run in their own process under
time and memory limits. Exporters write a scenario's lattice as a
standalone PALS file, and particles as openPMD files.

Modules (one job each):

* :mod:`harness.io.model` -- the translated element, the untranslatable one, the policy.
* :mod:`harness.io.pals_doc` -- elements -> PALS document -> validated scenario YAML.
* :mod:`harness.io.madx` -- MAD-X through cpymad (what a MAD-X file may do: its docstring).
* :mod:`harness.io.madx_scan` -- a MAD-X file's statements checked before MAD-X sees them.
* :mod:`harness.io.source_file` -- lattice files read as data: regular files, size caps.
* :mod:`harness.io.sandbox` -- readers in their own process under time and memory limits.
* :mod:`harness.io.cheetah_segment` -- Cheetah ``Segment`` (and Bmad / elegant files).
* :mod:`harness.io.impactx_lattice` -- a list of ImpactX elements.
* :mod:`harness.io.pals_file` -- PALS files of other codes in, a scenario's lattice out.
* :mod:`harness.io.particles_out` -- ``trackbench run --write-particles openpmd`` files.
* :mod:`harness.io.importer` -- the format dispatch behind ``trackbench import``.

The ``import`` and ``export`` commands themselves are :mod:`harness.cli.lattice_io`;
openPMD particle files are read and written by :mod:`harness.model.openpmd` (the model
layer).
"""
