"""The options of annealed Langevin sampling that every SGM sampler checks alike: the step
size rule's base eps (alpha_l = eps sigma_l^2 / sigma_L^2), the steps per noise level, the
number of samples and their seed, and the indices of traced samples.
"""

import numpy as np

from ..util.checks import check_bool, check_number, check_seed
from .training import MAX_SAMPLES

#: Annealed Langevin defaults: base step size and steps per noise level.
STEP_LR = 2e-5
STEPS_PER_LEVEL = 100
#: The most Langevin steps per noise level a sampler takes (1000 times the default).
MAX_STEPS_PER_LEVEL = 100_000


def check_trace(trace, n, lipschitz):
    """The sample indices of ``trace`` as an int64 array (None for no trace)."""
    if trace is None:
        return None
    if not lipschitz:
        raise ValueError("trace records the sampler's gradient, so it needs lipschitz=True")
    indices = np.asarray(trace)
    if indices.ndim != 1 or indices.size == 0 or indices.dtype.kind not in "iu":
        raise ValueError(f"trace must be a non-empty 1-D sequence of sample indices (ints), got {trace!r}")
    if indices.min() < 0 or indices.max() >= n:
        raise ValueError(f"trace indices must lie in [0, n - 1] = [0, {n - 1}], got {indices.min()}"
                         f" to {indices.max()}")
    return indices.astype(np.int64)


def check_sampling(n, seed, denoise, quiet, lipschitz, step_lr, n_steps_per_level):
    """(n, seed, the other options as a dict) of :meth:`SGM.sample`, each checked."""
    n = check_number("n", n, low=1, high=MAX_SAMPLES, integer=True)
    if seed is not None:
        seed = check_seed(seed)
    return n, seed, {
        "denoise": check_bool("denoise", denoise), "quiet": check_bool("quiet", quiet),
        "lipschitz": check_bool("lipschitz", lipschitz),
        "step_lr": check_number("step_lr", step_lr, low=0, low_open=True),
        "n_steps_per_level": check_number("n_steps_per_level", n_steps_per_level, low=1,
                                          high=MAX_STEPS_PER_LEVEL, integer=True)}
