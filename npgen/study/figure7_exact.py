"""The exact score as a yardstick for Figure 7's SGM on the two noisy digits.

The data set is 1/2 N(c3, 0.15^2 I) + 1/2 N(c7, 0.15^2 I) in R^784 (pixel units; the two clean
images it also holds, 2 of its 2 repeats + 2 rows, are left out of the model). The 784-d SGM
trains on pixels as they are, so its score s_theta(x, sigma_l) and the exact score of that
mixture blurred at sigma_l are in the same units. For the SGM run this measures:

* the relative score error per level, E||s_theta - s||^2 / E||s||^2 over x~ = x + sigma_l eps,
  on SCORE_ERROR_ROWS of the training rows (a ratio);
* EXACT_SAMPLES samples of the same sampler on the exact score
  (:func:`npgen.analysis.exact_score.exact_langevin_nd`): the same levels, steps, step sizes
  (rounded to the model's dtype, as its sampler takes them),
  and the start and noise of the run's first EXACT_SAMPLES samples, row for row. Their
  projections are measured as the model's samples are (:mod:`npgen.study.figure7`).
"""

import time

import numpy as np

from ..analysis.exact_score import IsotropicMixture, exact_langevin_nd, relative_score_errors
from ..models.sgm import VECTOR_SAMPLE_CHUNK

#: Training rows noised per level for the score error (each row gives 784 coordinates).
SCORE_ERROR_ROWS = 256
#: Samples of the exact-score sampler (the first rows of the run's own sampling): a share of
#: 1000 samples has a binomial standard deviation of at most 1.6 points.
EXACT_SAMPLES = 1000


def digit_mixture(clean, sigma):
    """1/2 N(c3, sigma^2 I) + 1/2 N(c7, sigma^2 I) from the clean images (c3, c7)."""
    return IsotropicMixture([0.5, 0.5], np.stack([np.asarray(c, np.float64) for c in clean]), [sigma, sigma])


def exact_score_run(model, data, clean, sigma, n_samples, sample_seed, seed=0):
    """(per-level score errors, exact-score samples (EXACT_SAMPLES, 784) float32, seconds) for a
    trained :class:`npgen.models.VectorSGM` on the two noisy digits; ``n_samples`` and
    ``sample_seed``: those of the run's own :meth:`sample` call."""
    start = time.perf_counter()
    mixture = digit_mixture(clean, sigma)
    rows = np.random.default_rng(seed).choice(len(data), min(SCORE_ERROR_ROWS, len(data)), replace=False)
    errors = relative_score_errors(lambda x, level: model.score.forward(x.astype(model.dtype), level),
                                   mixture, model.sigmas, data[np.sort(rows)], seed=seed)
    samples = exact_langevin_nd(mixture, model.sigmas, model.alphas.astype(model.dtype), model.n_steps_per_level,
                                min(EXACT_SAMPLES, n_samples), sample_seed, model.score.data_mean,
                                VECTOR_SAMPLE_CHUNK, dtype=model.dtype, n_drawn=n_samples)
    return errors, samples.astype(np.float32), time.perf_counter() - start
