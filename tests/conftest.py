"""Test-session setup: the tests import the installed npgen, and BLAS runs one thread.

``kernels/`` is installed as ``npgen.kernels`` (setup.cfg's ``package_dir``), so the source
folder ``npgen/`` is not importable as it stands: the repository root is taken off
``sys.path`` (``python -m pytest`` puts it there) and the tests see the package that
``pip install .`` installed.

The tests compare small products whose cost is dominated by thread start-up when BLAS runs
several threads on a small, shared machine; one thread also keeps results reproducible.
This runs before any test module imports numpy.
"""

import os
import sys

_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _REPOSITORY]

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
