"""Generators of bundled scenarios whose numbers are derived from a published source
(field gradients from magnet calibrations, bend angles from a chicane setting): the
derivation is code, the scenario file is its output."""
