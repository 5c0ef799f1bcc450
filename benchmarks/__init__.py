"""asv (airspeed velocity) suite of trackbench.

Speed (``time_*``), memory (``peakmem_*``) and accuracy (``track_*``) of every backend on the
bundled scenarios, parameterised over scenario × backend × particle count (× device where
CUDA exists). Set-up comes from the harness (:mod:`harness.model.load`,
:mod:`harness.model.particles`, :mod:`backends.registry`, :mod:`harness.agreement`); the
grid is in :mod:`benchmarks.grid`.
Run it with ``trackbench asv quick`` (see :mod:`harness.asv_tools`).
"""
