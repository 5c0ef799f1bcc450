"""Backends: adapters that translate a scenario for one tracking code (see :mod:`backends.base`).

Every module in this package that defines a module-level ``BACKEND`` class is registered
automatically (and third-party packages can register through the ``trackbench.backends``
entry-point group), so adding a backend needs no edit elsewhere.
"""
