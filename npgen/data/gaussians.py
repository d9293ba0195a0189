"""The paper's univariate data: a mixture of two Gaussians, weight N(-m, sigma^2) + (1 - weight) N(m, sigma^2)."""

import numpy as np

from ..util.checks import check_number, check_seed


def two_gaussians(m, sigma=1.0, n=50000, d=1, weight=0.5, seed=0, dtype="float32"):
    """n samples of weight * N(-m 1_d, sigma^2 I_d) + (1 - weight) * N(m 1_d, sigma^2 I_d).

    In 1-D (the paper's Section 4.1) the modes sit at -m and +m, a distance 2m apart; in R^d
    they sit at -m and +m along every axis. Returns an array of shape (n, d).
    """
    m = check_number("m", m, low=0)
    sigma = check_number("sigma", sigma, low=0, low_open=True)
    n = check_number("n", n, low=1, integer=True)
    d = check_number("d", d, low=1, integer=True)
    weight = check_number("weight", weight, low=0, high=1)
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)
    left = rng.random(n) < weight
    centers = np.where(left, -m, m)[:, None]
    return (centers + sigma * rng.standard_normal((n, d))).astype(dtype)
