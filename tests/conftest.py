"""Test-wide settings.

The in-house tracker tracks eagerly in the tests (also in the case processes they start)
unless a test asks for compilation: compiling every lattice would cost seconds per test.
``tests/test_inhouse_compiled.py`` checks the compiled path against the eager one; set
``TRACKBENCH_INHOUSE_COMPILE=1`` to run the whole suite compiled.
"""

import os

os.environ.setdefault("TRACKBENCH_INHOUSE_COMPILE", "0")
