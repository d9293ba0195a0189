"""The exact score as a yardstick for one SGM run of the univariate study.

The data nu = 1/2 N(-m, 1) + 1/2 N(m, 1) blurred at any level is a Gaussian mixture, so the
score the network is trained to learn is known (:mod:`npgen.analysis.exact_score`). For one
trained SGM this module measures, in metrics.json:

* ``score_error_per_level``: E|s_theta(x~) - s(x~)|^2 / E|s(x~)|^2 at every trained level, over
  x~ = x + sigma_l eps with x the run's own training rows (the first SCORE_ERROR_ROWS), in the
  standardized units the network sees (s is the score of the standardized mixture blurred at
  sigma_l; a ratio, so unitless);
* ``exact_sampler``: the same sampler (levels, steps, step sizes, start and noise stream of the
  run's sampling seed, sample for sample) with the network swapped for the exact score, in
  float64: its mass between the modes and on each side, the smaller mode's share, MW2^2 (data
  units squared), its sampled max |grad g| with the x_0 and noise parts and Theorem 1's demand
  for its own mass between the modes (data units);
* ``sampler_search``: the searched lower bound on Lip(g) (:mod:`npgen.analysis.sampler_search`)
  of the trained sampler and of the exact-score sampler, crossing x = 0 (the gap's middle, data
  units): the largest value, its parts and quantiles over the pairs, in data units
  (data_std times the standardized gradient).

So the SGM's mass between the modes splits into what the sampler alone leaves there (the
exact-score sampler's) and what the network's error adds (the rest).
"""

import time

import numpy as np

from ..analysis.exact_score import ExactChain, IsotropicMixture, exact_langevin_1d, relative_score_errors
from ..analysis.sampler_search import NetworkChain, search_steep_set
from ..models.sgm import STEP_LR, STEPS_PER_LEVEL
from .sampler import required_lipschitz

#: Training rows noised per level for the score error.
SCORE_ERROR_ROWS = 10000
#: The exact-score chain's samples: the run's n_samples, up to this many.
EXACT_SAMPLES = 20000
#: Keys of :func:`npgen.study.run_metrics.distribution_metrics` kept for the exact-score sampler.
DISTRIBUTION_KEYS = ("mass_between", "mass_left", "mass_right", "smaller_mode_share", "mw2_squared", "collapse")


def sampler_chains(model, mixture):
    """The trained sampler and the exact-score sampler as given-noise chains (standardized
    units, float64), with :meth:`npgen.models.SGM.sample`'s levels, steps and step sizes (the
    alphas rounded to the model's dtype, as there)."""
    sigmas = np.asarray(model.sigmas, np.float64)
    alphas = (STEP_LR * sigmas ** 2 / sigmas[-1] ** 2).astype(model.dtype).astype(np.float64)
    common = dict(sigmas=sigmas, alphas=alphas, steps_per_level=STEPS_PER_LEVEL)
    return NetworkChain(**common, score=model.score), ExactChain(**common, mixture=mixture)


def exact_score_metrics(model, config, clean, sample_seed, distribution_metrics, clock):
    """The numbers of the module doc for a trained SGM ``model`` of the run ``config``;
    ``clean`` (n, 1): the run's training data (data units); ``sample_seed``: the seed of the
    run's samples; ``distribution_metrics``: :func:`npgen.study.run_metrics.distribution_metrics`;
    ``clock`` (:class:`npgen.study.phase_times.PhaseClock`) times the steep-set searches as the
    phase ``sampler_search``."""
    start = time.perf_counter()
    m, mean, std = config["m"], model.mean, model.std
    mixture = IsotropicMixture.two_modes(m).standardized(mean, std)
    sigmas = np.asarray(model.sigmas, np.float64)
    rows = (np.asarray(clean[:SCORE_ERROR_ROWS], np.float64) - mean) / std
    errors = relative_score_errors(
        lambda x, level: model.score.forward(x.astype(model.dtype), sigmas[level]), mixture, sigmas, rows,
        seed=config["seed"])
    trained_chain, exact_chain = sampler_chains(model, mixture)
    n = min(config["n_samples"], EXACT_SAMPLES)
    x, dx0, grad_sq = exact_langevin_1d(exact_chain, n, sample_seed, dtype=model.dtype,
                                        denoise=config["denoise"])
    samples = x * std + mean
    measured = distribution_metrics(samples, m)
    norm = std * np.sqrt(grad_sq)
    top = int(np.argmax(norm))
    x0_part = std * abs(float(dx0[top]))
    exact = {key: measured[key] for key in DISTRIBUTION_KEYS}
    exact.update(n_samples=n, lipschitz=float(norm[top]), lipschitz_x0=x0_part,
                 lipschitz_noise=float(np.sqrt(max(norm[top] ** 2 - x0_part ** 2, 0.0))),
                 theorem1_required_lipschitz=required_lipschitz(m, samples)[0],
                 seconds=time.perf_counter() - start)
    searched = time.perf_counter()
    threshold = -mean / std  # x = 0 in data units
    with clock.phase("sampler_search"):
        search = {name: search_steep_set(chain, chain.n_inputs, threshold, seed=config["seed"]).summary(std)
                  for name, chain in (("trained", trained_chain), ("exact", exact_chain))}
    search["seconds"] = time.perf_counter() - searched
    return {"score_error_per_level": [{"sigma_standardized": float(s), "relative_error": e}
                                      for s, e in zip(sigmas, errors)],
            "exact_sampler": exact, "sampler_search": search,
            "exact_score_seconds": time.perf_counter() - start}
