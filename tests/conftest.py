"""Test-session setup: one BLAS thread.

The tests compare small products whose cost is dominated by thread start-up when BLAS runs
several threads on a small, shared machine; one thread also keeps results reproducible.
This runs before any test module imports numpy.
"""

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
