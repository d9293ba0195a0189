"""One BLAS thread around the code whose numbers must not depend on the caller's thread settings.

npgen's matrix products are small (widths of a few hundred). There several BLAS threads per
process cost more than they bring, and a threaded BLAS may split a product's work differently
and change the last bits of a result, which training then amplifies. Parallel work runs as
processes instead (``--jobs``). :func:`one_blas_thread` pins every BLAS library loaded in the
process (numpy's and scipy's OpenBLAS, or MKL) to one thread while the decorated function runs,
through threadpoolctl, and restores the caller's setting afterwards. The environment is never
changed, so child processes inherit nothing they did not ask for.
"""

import functools

from .environment import OPENMP_SWITCHES, environment_kept

with environment_kept(*OPENMP_SWITCHES):
    from threadpoolctl import threadpool_limits


def one_blas_thread(function):
    """Decorator: run ``function`` with BLAS limited to one thread, then restore the limits."""

    @functools.wraps(function)
    def pinned(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return pinned
