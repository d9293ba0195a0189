"""Environment variables put back as they were: npgen leaves os.environ as it found it.

Importing threadpoolctl, POT or scikit-learn sets Intel OpenMP switches in os.environ
(:data:`OPENMP_SWITCHES`); Figure 7 names its MNIST folder in $NPGEN_MNIST_DIR for the runs it
spawns. Both happen inside :func:`environment_kept`.
"""

import contextlib
import importlib
import os

#: The Intel OpenMP switches that the imports of threadpoolctl, POT and scikit-learn set.
OPENMP_SWITCHES = ("KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK")


@contextlib.contextmanager
def environment_kept(*names):
    """Within the block the variables ``names`` may change; after it each is as it was before
    (set to its old value, or removed if it was not set)."""
    before = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def import_kept(name):
    """Module ``name`` imported with the OpenMP switches left as they were: for POT and
    scikit-learn, imported where they are used so that npgen loads without them."""
    with environment_kept(*OPENMP_SWITCHES):
        return importlib.import_module(name)
