"""The SGM's sampler as a push-forward: its measured Lipschitz constant beside Theorem 1's demand.

Annealed Langevin sampling is a map g(x_0, z_1, ..., z_T) = x_T of T + 1 standard normals
(:class:`npgen.models.sgm.SamplerGradient`), so Theorem 1 applies to it as to a GAN's
generator. For one SGM run this module measures, on the data's own scale:

* ``sampler_lipschitz``: the largest |grad g| over the run's samples. Lip(g) is the supremum of
  |grad g| over all inputs, so this is a *lower bound* on Lip(g). Its split at that sample into
  the start's part |d x / d x_0| (``sampler_lipschitz_x0``) and the Langevin noise's part
  (``sampler_lipschitz_noise``; the two add in squares);
* ``theorem1_required_lipschitz`` and ``theorem1_required_lipschitz_upper``: the two ends of
  an interval for Theorem 1's demand, the smallest Lip(g) with which any push-forward of a
  Gaussian can leave as little mass between the modes as the run did
  (:func:`npgen.analysis.theory.theorem1_required_lipschitz`, the larger of the left and right
  demands). The demand falls as the mass between grows, so the lower end is the demand at the
  one-sided 95% Clopper-Pearson *upper* limit of that mass and the upper end the demand at its
  one-sided 95% *lower* limit (null, i.e. infinite, when no sample fell between the modes):
  the true demand lies below the upper end with 95% confidence, above the lower end with 95%
  confidence, and inside the interval with 90%. The plug-in value, from the sample mass itself,
  is ``theorem1_required_lipschitz_plugin`` (null when it is infinite);
* ``sampler_meets_theorem1``: true only when the measured constant exceeds the *upper* end.
  Then, with 95% confidence, the steepness seen at the run's own inputs already reaches what
  Theorem 1 demands for the mass left between the modes, so the theorem asks nothing of Lip(g)
  beyond what was measured. This is agreement with a lower bound, not an explanation of the
  small mass: a map can be that steep and still leave much more between. When the measured
  constant is below the upper end (inside the interval too: the data cannot rule out the larger
  demands there), Lip(g) must still reach the true demand (the theorem holds for every
  push-forward), possibly at inputs the samples did not visit, and the sample maximum does not
  show where;
* per-level attribution: for each noise level, the factor by which its steps multiply
  |grad g|^2 (median over the samples, and at the sample of the maximum), and, on a few traced
  samples ending left of, between and right of the modes, how many steps carry 90% of the
  growth of log |grad g|^2 (``sampler_expansion_steps``). The traces go to
  ``sampler_trace.npz`` in the run folder, for the report's figure.
"""

import os
from dataclasses import replace
from typing import NamedTuple

import numpy as np
from scipy import stats

from ..analysis.theory import theorem1_required_lipschitz
from ..util.io import atomic_savez

#: One-sided confidence of the upper limit on the mass between the modes.
MASS_CONFIDENCE = 0.95
#: Traced samples per class (ending left of, between and right of the modes).
TRACED_PER_CLASS = 10
#: Share of the growth of log |grad g|^2 whose carrying steps are counted.
EXPANSION_SHARE = 0.9
CLASSES = ("left", "between", "right")
TRACE_FILE = "sampler_trace.npz"


def mass_upper_limit(count, n, confidence=MASS_CONFIDENCE):
    """One-sided Clopper-Pearson upper limit on a probability seen ``count`` times in ``n``:
    the Beta(count + 1, n - count) quantile at ``confidence`` (1 when count = n)."""
    return 1.0 if count >= n else float(stats.beta.ppf(confidence, count + 1, n - count))


def mass_lower_limit(count, n, confidence=MASS_CONFIDENCE):
    """One-sided Clopper-Pearson lower limit on a probability seen ``count`` times in ``n``:
    the Beta(count, n - count + 1) quantile at 1 - ``confidence`` (0 when count = 0)."""
    return 0.0 if count <= 0 else float(stats.beta.ppf(1.0 - confidence, count, n - count + 1))


class Theorem1Demand(NamedTuple):
    """Theorem 1's demand on Lip(g) for one run's samples (see the module docstring).

    ``low`` and ``high`` are the demands at the upper and the lower confidence limit of the
    mass between the modes (``high`` is inf when no sample fell between), ``plugin`` the demand
    at the sample mass itself (low <= plugin <= high)."""
    low: float
    high: float
    plugin: float

    def met_by(self, measured):
        """The conservative verdict: ``measured`` > high. A measured constant inside
        [low, high] does not meet the demand, since the data allow a true demand above it."""
        return bool(measured > self.high)


def required_lipschitz(m, x):
    """Theorem1Demand for samples x of a 1-D push-forward: at each mass between the modes q
    (upper limit, lower limit, plug-in), the larger of the demands read from the left and from
    the right, a side's mass being capped at 1 - q (the three masses sum to 1)."""
    n = x.size
    left, right = int(np.sum(x < -m / 2)), int(np.sum(x > m / 2))
    between = n - left - right

    def demand(q):
        return max(float(theorem1_required_lipschitz(m, min(count / n, 1.0 - q), q)) for count in (left, right))
    return Theorem1Demand(low=demand(mass_upper_limit(between, n)), high=demand(mass_lower_limit(between, n)),
                          plugin=demand(between / n))


def classes_of(x, m):
    """'left', 'between' or 'right' of each sample (between: |x| <= m/2)."""
    return np.where(x < -m / 2, "left", np.where(x > m / 2, "right", "between"))


def traced_indices(x, m, argmax):
    """The first TRACED_PER_CLASS samples of each class, and the sample of the maximum."""
    labels = classes_of(x, m)
    chosen = [np.flatnonzero(labels == name)[:TRACED_PER_CLASS] for name in CLASSES]
    return np.unique(np.concatenate(chosen + [[argmax]])).astype(np.int64)


def expansion_steps(grad_sq_by_step, share=EXPANSION_SHARE):
    """Per traced sample, the fewest steps whose increases of log |grad g|^2 sum to ``share`` of
    all its increases (0 when it never grows)."""
    rises = np.maximum(np.diff(np.log(grad_sq_by_step.astype(np.float64)), axis=0), 0)
    ordered = -np.sort(-rises, axis=0)
    total = ordered.sum(axis=0)
    reached = np.cumsum(ordered, axis=0) >= share * total
    return np.where(total > 0, np.argmax(reached, axis=0) + 1, 0)


class SamplerDraws(NamedTuple):
    """A run's sampling passes, all from its sample seed: ``samples`` (n, 1) with the sampler's
    gradient (``gradient``, a SamplerGradient; on a GPU a plain pass and a gradient pass that
    draws the same samples), then the samples of :func:`traced_for` traced step by step
    (``traced``: the SamplerGradient with their indices and grad_sq_by_step filled in)."""
    samples: np.ndarray
    gradient: object
    traced: object


def traced_for(samples, gradient, m):
    """The samples to trace for one run (:func:`traced_indices` at the largest |grad g|)."""
    return traced_indices(samples[:, 0].astype(np.float64), m, int(np.argmax(gradient.norm)))


def check_same_samples(drawn, samples, what):
    """Raise RuntimeError unless the ``what`` pass drew the run's ``samples`` exactly."""
    if not np.array_equal(drawn, samples):
        raise RuntimeError(f"the {what} pass drew other samples than the run's; its metrics would"
                           " not describe them")


def sampler_draws(model, config, samples, gradient, sample_seed, sample_options):
    """:class:`SamplerDraws` of one run sampled on its own: the run's ``samples`` and their
    ``gradient`` (one pass with the sampler's gradient, drawn with ``sample_seed`` and
    ``sample_options``), then the chains of the traced samples alone (:meth:`SGM.trace`),
    checked to end at those samples exactly."""
    indices = traced_for(samples, gradient, config["m"])
    ends, by_step = model.trace(config["n_samples"], indices, seed=sample_seed, quiet=True,
                                **sample_options)
    check_same_samples(ends, samples[indices], "traced sampling")
    return SamplerDraws(samples, gradient, replace(gradient, traced=indices, grad_sq_by_step=by_step))


def sampler_metrics(model, config, run_dir, draws):
    """The metrics above from one run's :class:`SamplerDraws`; writes TRACE_FILE into
    ``run_dir``."""
    samples, gradient, traced_gradient = draws
    x, m = samples[:, 0].astype(np.float64), config["m"]
    norm = gradient.norm
    top = int(np.argmax(norm))
    traced = traced_gradient.traced
    by_step = traced_gradient.grad_sq_by_step
    labels = classes_of(x[traced], m)
    steps = expansion_steps(by_step)
    demand = required_lipschitz(m, x)
    levels = gradient.grad_sq_by_level.astype(np.float64)
    factors = levels[1:] / levels[:-1]
    atomic_savez(os.path.join(run_dir, TRACE_FILE), grad_sq_by_step=by_step, classes=labels,
                 final_x=x[traced], indices=traced, steps_per_level=gradient.steps_per_level,
                 data_std=gradient.data_std, sigmas=model.sigmas)
    return {
        "sampler_lipschitz": float(norm[top]),
        "sampler_lipschitz_x0": float(gradient.x0_part[top]),
        "sampler_lipschitz_noise": float(gradient.noise_part[top]),
        "sampler_lipschitz_standardized": float(norm[top] / gradient.data_std),
        "sampler_gradient_median": float(np.median(norm)),
        "theorem1_required_lipschitz": demand.low,
        "theorem1_required_lipschitz_upper": demand.high if np.isfinite(demand.high) else None,
        "theorem1_required_lipschitz_plugin": demand.plugin if np.isfinite(demand.plugin) else None,
        "sampler_meets_theorem1": demand.met_by(norm[top]),
        "sampler_steps_per_level": gradient.steps_per_level,
        "sampler_levels": [{"sigma_standardized": float(sigma), "grad_sq_factor_median": float(np.median(f)),
                            "grad_sq_factor_at_max": float(f[top])}
                           for sigma, f in zip(model.sigmas, factors)],
        "sampler_expansion_steps": {name: [int(k) for k in steps[labels == name]] for name in CLASSES},
    }
