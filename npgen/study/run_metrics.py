"""What one run of the univariate study measures, from its trained model and its samples.

* :func:`lipschitz_metrics`: the exact Lipschitz constant of the generator / decoder (of the
  score network at every trained noise level for the SGM, on the standardized and on the data's
  scale), with the paper's 1000-point grid estimate beside it;
* :func:`distribution_metrics`: the generated mass in [-m/2, m/2] next to the true mass, the
  Figure 3 lower bound (:func:`figure3_bound`), histogram estimates of TV and KL to nu and the
  best Theorem 4 / Theorem 7 bounds, MW2^2 to the data's mixture, and whether the samples
  collapsed (:func:`collapse`: one spike, or one mode);
* :func:`particle_metrics`: the particles' energies along training.
"""

import numpy as np

from ..analysis.lipschitz import exact_lipschitz_1d, paper_grid_estimate
from ..analysis.mixtures import fit_mixture, mw2, target_mixture
from ..analysis.theory import (GaussianMixture1D, best_kl_bound, best_tv_bound,
                               cauchy_mass_between_bound, half_line_mass_between_bound,
                               mass_between_modes_bound, mixture_mass_between)

#: Collapse rules (see :func:`collapse`). SPIKE_WIDTH is in data units: one data mode N(+-m, 1)
#: needs 2 * 1.645 = 3.29 to hold 90% of its mass.
SPIKE_MASS = 0.9
SPIKE_WIDTH = 1.0
MIN_MODE_SHARE = 0.05
COLLAPSES = ("one spike", "one mode")

#: Components of the Gaussian mixture fitted to a run's samples for MW2 (those of the data).
MW2_COMPONENTS = 2

#: Histogram used for the masses and the TV / KL estimates (the paper's: 400 bins on [-20, 20]).
HIST_EDGES = np.linspace(-20.0, 20.0, 401)


def lipschitz_metrics(model, config):
    """Exact Lipschitz constant(s) and the paper's grid estimate for a trained model.

    GAN / VAE: ``lipschitz`` is Lip(g) of the generator / decoder, z -> x in data units.
    SGM: the score network's constant in its input, at every trained noise level, on the
    standardized scale (``*_standardized``, the paper's) and on the data's own scale
    (``*_data_scale`` = standardized / ``data_variance``); the ``score_lipschitz_*`` keys hold
    the maximum over the noise levels (sigma in standardized units).
    """
    if config["model"] == "particles":
        exact = exact_lipschitz_1d(model.discriminator)
        return {"discriminator_lipschitz": model.lipschitz * exact.constant,
                "discriminator_lipschitz_bound": model.lipschitz, "discriminator_lipschitz_pieces": exact.n_pieces}
    if config["model"] == "sgm":
        variance = model.std ** 2
        per_level = []
        for sigma in model.sigmas:
            layers = model.score.layers_at(float(sigma))
            exact = exact_lipschitz_1d(layers)
            per_level.append({"sigma_standardized": float(sigma), "exact_standardized": exact.constant,
                              "exact_data_scale": exact.constant / variance,
                              "grid_standardized": paper_grid_estimate(layers), "n_pieces": exact.n_pieces})
        worst = max(per_level, key=lambda row: row["exact_standardized"])
        return {"score_lipschitz_standardized": worst["exact_standardized"],
                "score_lipschitz_data_scale": worst["exact_data_scale"],
                "score_lipschitz_grid_standardized": worst["grid_standardized"],
                "score_lipschitz_sigma_standardized": worst["sigma_standardized"],
                "data_variance": variance, "score_lipschitz_per_sigma": per_level}
    net = model.push_forward_network
    exact = exact_lipschitz_1d(net)
    return {"lipschitz": exact.constant, "lipschitz_location": exact.location,
            "lipschitz_pieces": exact.n_pieces, "lipschitz_grid": paper_grid_estimate(net)}


def lipschitz_tracker(model, config, n_points=10):
    """An ``on_epoch`` callback recording the exact Lip(g) at ``n_points`` evenly spaced epochs
    (GAN and VAE), and the list it fills with ``[epoch, Lip]`` pairs."""
    curve = []
    if config["model"] in ("sgm", "particles"):
        return curve, None
    epochs = config["epochs"]
    checkpoints = {max(1, round(epochs * k / n_points)) for k in range(1, n_points + 1)}

    def on_epoch(epoch, history):
        if epoch in checkpoints:
            curve.append([epoch, exact_lipschitz_1d(model.push_forward_network).constant])
    return curve, on_epoch


def figure3_bound(m, lip, p_left):
    """Theorem 1's lower bound on the mass in [-m/2, m/2], Phi(m / Lip + Phi^-1(p)) - p, for
    p = g#mu((-inf, -m/2]); it is 0 when p is 0 or 1 (all the mass on one side)."""
    if not 0 < p_left < 1:
        return 0.0
    return float(mass_between_modes_bound(m, lip, p_left))


def narrowest_interval_width(samples, mass=SPIKE_MASS):
    """Width of the narrowest interval [x_(i), x_(i+k-1)] holding k = ceil(mass * n) of the samples."""
    x = np.sort(np.asarray(samples, np.float64).ravel())
    k = max(1, int(np.ceil(mass * x.size)))
    return float(np.min(x[k - 1:] - x[:x.size - k + 1]))


def smaller_mode_share(mass_left, mass_right):
    """min(p_left, p_right) / (p_left + p_right): the smaller mode's share of the mass outside
    [-m/2, m/2] (0 when no sample lies outside)."""
    outside = mass_left + mass_right
    return min(mass_left, mass_right) / outside if outside > 0 else 0.0


def collapse(m, width90, share):
    """Which collapse the samples show, or None. The two rules:

    * ``"one spike"``: the narrowest interval holding 90% of the samples is under SPIKE_WIDTH = 1.0
      wide (data units; one data mode needs 3.29);
    * ``"one mode"`` (m > 0 only): the smaller mode's share, min(p_left, p_right) / (p_left +
      p_right) with p_left = mass below -m/2 and p_right = mass above m/2, is under
      MIN_MODE_SHARE = 5%.
    """
    if width90 < SPIKE_WIDTH:
        return "one spike"
    if m > 0 and share < MIN_MODE_SHARE:
        return "one mode"
    return None


def latent_mass_between_bound(m, lip, mass_left, mass_right, latent):
    """The least mass between the modes an Lip-Lipschitz map of the 1-d ``latent`` can leave,
    given the generated masses left of -m/2 and right of m/2 (the larger of the two sides'
    bounds): F(F^-1(p) + m / Lip) - p for the Gaussian, :func:`cauchy_mass_between_bound
    <npgen.analysis.theory.cauchy_mass_between_bound>` for the Cauchy."""
    if latent == "cauchy":
        return float(cauchy_mass_between_bound(m, lip, mass_left, mass_right))
    return float(max(half_line_mass_between_bound(m, lip, mass_left),
                     half_line_mass_between_bound(m, lip, mass_right)))


def distribution_metrics(samples, m, lip=None, latent="gaussian"):
    """Masses, histogram TV / KL estimates, the collapse rules' numbers and (given Lip) the
    lower bounds: ``mass_between_bound`` under the run's ``latent`` (see
    :func:`latent_mass_between_bound`), and for the Gaussian latent the paper's Figure 3,
    Theorem 4 and Theorem 7 bounds, which rest on the Gaussian's isoperimetry and are not
    reported for the Cauchy latent."""
    x = np.asarray(samples, np.float64).ravel()
    mixture = GaussianMixture1D.symmetric(m)
    counts, _ = np.histogram(np.clip(x, HIST_EDGES[0], HIST_EDGES[-1]), HIST_EDGES)
    generated = counts / x.size
    target = mixture.mass(HIST_EDGES[:-1], HIST_EDGES[1:])
    target[0] += mixture.cdf(HIST_EDGES[0])
    target[-1] += mixture.sf(HIST_EDGES[-1])
    positive = generated > 0
    out = {
        "mass_between": float(np.mean(np.abs(x) <= m / 2)),
        "true_mass_between": float(mixture_mass_between(m)),
        "mass_left": float(np.mean(x < -m / 2)),
        "mass_right": float(np.mean(x > m / 2)),
        "tv_estimate": float(0.5 * np.abs(generated - target).sum()),
        "kl_estimate": float(np.sum(generated[positive] * np.log(generated[positive] / target[positive]))),
        "sample_mean": float(x.mean()),
        "sample_std": float(x.std()),
        "narrowest_90pct_interval_width": narrowest_interval_width(x),
    }
    out["smaller_mode_share"] = smaller_mode_share(out["mass_left"], out["mass_right"])
    out["mw2_squared"] = mw2(fit_mixture(x, MW2_COMPONENTS), target_mixture(m))
    out["collapse"] = collapse(m, out["narrowest_90pct_interval_width"], out["smaller_mode_share"])
    if lip is not None and m > 0:
        out["mass_between_bound"] = latent_mass_between_bound(m, lip, out["mass_left"], out["mass_right"],
                                                              latent)
    if lip is not None and m > 0 and latent == "gaussian":
        out["fig3_bound"] = figure3_bound(m, lip, out["mass_left"])
        out["best_tv_bound"] = best_tv_bound(x, mixture, lip).value
        out["best_kl_bound"] = best_kl_bound(x, mixture, lip).value
    return out


def particle_metrics(history, n_points=20):
    """The particles' kinetic energy mean_i |grad phi(y_i)|^2 (data units^2 per unit time^2) and
    dual divergence estimate at ``n_points`` evenly spaced steps, and their last values."""
    n = len(history["kinetic_energy"])
    steps = sorted({max(1, round(n * k / n_points)) for k in range(1, n_points + 1)})
    return {"kinetic_energy_vs_step": [[s, history["kinetic_energy"][s - 1]] for s in steps],
            "divergence_vs_step": [[s, history["divergence"][s - 1]] for s in steps],
            "final_kinetic_energy": history["kinetic_energy"][-1], "final_divergence": history["divergence"][-1]}
