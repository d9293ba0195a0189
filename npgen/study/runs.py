"""One training run of the paper's univariate study, from a configuration to numbers on disk.

A run trains one model (GAN, VAE or SGM) on 50 000 fresh samples of
nu = 1/2 N(-m, 1) + 1/2 N(m, 1), draws samples from it, and measures what Section 4.1 reports:

* the exact Lipschitz constant of the generator / decoder (of the score network at every
  trained noise level for the SGM), and the paper's 1000-point grid estimate beside it;
* the generated mass in [-m/2, m/2] next to the true mass nu([-m/2, m/2]), and the Figure 3
  lower bound Phi(m / Lip + Phi^-1(p)) - p (p = generated mass left of -m/2);
* histogram estimates of TV and KL to nu, and the best Theorem 4 / Theorem 7 lower bounds;
* MW2^2 (``mw2_squared``, data units squared) between a two-component Gaussian mixture fitted
  to the samples and nu itself (:mod:`npgen.analysis.mixtures`): a mode-coverage number, as
  the mass a fit puts in excess on one mode must cross the 2m between the modes;
* for the SGM, the Lipschitz constant of its whole sampler beside Theorem 1's demand
  (:mod:`npgen.study.sampler`), and the exact score as a yardstick: the network's score error
  per level, the same sampler run on the exact score, and searched lower bounds on both
  samplers' Lip(g) (:mod:`npgen.study.exact_sampler`);
* whether the samples collapsed (:func:`collapse`: one spike, or one mode).

The SGM trains on standardized data z = (x - mu) / sd, so its score network is a function of z.
Its constant is reported on both scales: on the standardized one, as the paper does, and on the
data's own scale. The data's score is s_data(x) = s_std((x - mu) / sd) / sd, so
d s_data / dx = s_std'(z) / sd^2 and Lip(s_data) = Lip(s_std) / sd^2 (sd^2 = the variance used
to standardize, about 1 + m^2).

``train_run(config, run_dir)`` is both what ``npgen train`` calls and the function a sweep runs.

A configuration records the code that computes it (:func:`npgen.study.fingerprint.code_fingerprint`),
so a run's key changes with the math: after a fix, ``npgen reproduce`` trains again instead of
reusing old runs; a docstring or comment edit does not retrain anything.
"""

import json
import math
import os
import sys
import time

import numpy as np

from ..analysis.lipschitz import exact_lipschitz_1d, paper_grid_estimate
from ..analysis.mixtures import fit_mixture, mw2, target_mixture
from ..analysis.theory import (GaussianMixture1D, best_kl_bound, best_tv_bound,
                               cauchy_mass_between_bound, half_line_mass_between_bound,
                               mass_between_modes_bound, mixture_mass_between)
from ..data import two_gaussians
from ..models.gan import GAN, discriminator_sizes
from ..models.latents import check_latent
from ..models.particles import DIVERGENCES, Particles
from ..models.push_forward import check_layers, generator_sizes
from ..models.sgm import SGM, WEIGHTINGS
from ..models.training import TrainingDiverged  # noqa: F401 -- raised by train_run, caught by the CLI
from ..models.vae import KL_VARIANTS, VAE, encoder_sizes
from ..nn.layers import SKIP_STYLES
from ..nn.score import HIDDEN_WIDTHS
from ..util.checks import check_betas, check_bool, check_choice, check_number, check_seed
from ..util.io import (atomic_directory, atomic_save_npy, atomic_write_json, check_folder_target,
                       check_own_folder)
from ..util.locks import check_not_busy, claim_folder, clear_dead_writers, writer_prefix
from ..util.threads import one_blas_thread
from .figures import save_histogram
from .exact_sampler import exact_score_metrics
from .fingerprint import code_fingerprint
from .records import samples_path
from .sampler import sampler_metrics

MODELS = ("gan", "vae", "sgm")
#: Every model a run can train: the paper's three and the generative particles
#: (:class:`npgen.models.Particles`, beyond the paper).
RUN_MODELS = MODELS + ("particles",)

#: Training budgets. ``paper`` is the published code's: 400 epochs of 50 steps (20 000 Adam
#: steps at lr 1e-4, batch 1000), Adam betas (0.9, 0.999) for every network. ``quick`` keeps the
#: data but takes 2 000 steps of batch 250 (10 epochs of 200 steps), about 4% of the paper's
#: compute per run, and draws 20 000 samples instead of 50 000. The VAE and the SGM take lr 1e-3
#: (lr x steps = 2, as the paper). The GAN takes lr 5e-4 and betas (0.5, 0.999) (beta1 = 0.5 is
#: Radford et al. 2016's GAN setting): with lr 1e-3 and beta1 = 0.9 it collapsed at m = 2 in every
#: seed checked, to one mode or to one spike between the modes (which of the two depends on the
#: BLAS kernels' rounding), and with lr 1e-3 and beta1 = 0.5 it still collapsed to a spike at
#: m = 0 (bench/results/quick_robustness.md). See README, "Presets".
#: A run's config holds the Adam settings its model trains with: ``lr`` and ``betas`` are the
#: preset's ``gan_lr`` and ``gan_betas`` for a GAN, its ``lr`` and ADAM_BETAS for the others.
ADAM_BETAS = (0.9, 0.999)
PRESETS = {
    "paper": {"epochs": 400, "batch_size": 1000, "lr": 1e-4, "gan_lr": 1e-4, "gan_betas": [0.9, 0.999],
              "n_data": 50000, "n_samples": 50000},
    "quick": {"epochs": 10, "batch_size": 250, "lr": 1e-3, "gan_lr": 5e-4, "gan_betas": [0.5, 0.999],
              "n_data": 50000, "n_samples": 20000},
}

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


#: The options each model takes, with their defaults. An option of another model is refused,
#: not recorded: a run's config.json holds exactly what shaped the run.
MODEL_OPTIONS = {
    "gan": {"n_layers": 3, "skip": "plain", "sn_generator": False, "gp_lipschitz": None, "latent": "gaussian"},
    "vae": {"n_layers": 3, "skip": "plain", "kl": "correct"},
    "sgm": {"weighting": "paper", "denoise": False},
    "particles": {"n_particles": 50000, "divergence": "kl"},
}

#: The particles' budgets: particle steps, then the discriminator's Adam settings and
#: minibatch (both presets: 5 discriminator steps per particle step, Lip bound 1, dt = 0.1,
#: see :class:`npgen.models.Particles`). They replace the preset's epochs and learning rates
#: in a particles run's config; its data and sample counts are the preset's.
PARTICLE_PRESETS = {
    "paper": {"n_steps": 1000, "batch_size": 1000, "lr": 1e-3, "betas": [0.5, 0.999]},
    "quick": {"n_steps": 400, "batch_size": 1000, "lr": 1e-3, "betas": [0.5, 0.999]},
}


#: Largest accepted m (the modes sit at +-m; the paper's reach 10) and largest counts of
#: epochs, rows and samples: beyond them a run could not finish or fit in memory on any
#: machine npgen targets, and is refused before anything is written.
MAX_M = 1000.0
MAX_COUNT = 10 ** 8


def _positive_integer(name, value):
    return check_number(name, value, low=1, high=MAX_COUNT, integer=True)


#: The check of every option and preset field: (name, value) -> the value to record.
OPTION_CHECKS = {
    "n_layers": lambda name, v: check_layers(v, name),
    "skip": lambda name, v: check_choice(name, v, SKIP_STYLES),
    "sn_generator": check_bool,
    "gp_lipschitz": lambda name, v: None if v is None else check_number(name, v, low=0, low_open=True),
    "kl": lambda name, v: check_choice(name, v, KL_VARIANTS),
    "weighting": lambda name, v: check_choice(name, v, WEIGHTINGS),
    "denoise": check_bool,
    "latent": lambda name, v: check_latent(v, name),
    # two at least: a run's metrics fit a two-component mixture to its particles
    "n_particles": lambda name, v: check_number(name, v, low=2, high=MAX_COUNT, integer=True),
    "divergence": lambda name, v: check_choice(name, v, DIVERGENCES),
    "n_steps": _positive_integer,
    "epochs": _positive_integer,
    "batch_size": _positive_integer,
    "lr": lambda name, v: check_number(name, v, low=0, low_open=True),
    "betas": lambda name, v: list(check_betas(v)),
    "n_data": _positive_integer,
    "n_samples": _positive_integer,
}

#: The ``npgen train`` flag of each model option (named in the messages).
OPTION_FLAGS = {"n_layers": "--layers", "skip": "--skip", "sn_generator": "--sn-generator",
                "gp_lipschitz": "--gp", "kl": "--kl", "weighting": "--weighting",
                "denoise": "--denoise", "latent": "--latent", "n_particles": "--particles",
                "divergence": "--divergence"}

def make_config(model, m, preset="quick", seed=0, **options):
    """A complete, validated run configuration (a JSON-able dict; its hash keys the run).

    ``options``: the model's options (:data:`MODEL_OPTIONS`; None means the default) and
    overrides of the preset's fields. Every value is checked here, before anything is written;
    an option of another model is refused. The configuration ends with ``code``, the
    :func:`code_fingerprint` of the code that will compute it.
    """
    check_choice("model", model, RUN_MODELS)
    check_choice("preset", preset, PRESETS)
    budget = dict(PRESETS[preset])
    gan_adam = {"lr": budget.pop("gan_lr"), "betas": budget.pop("gan_betas")}
    own_adam = gan_adam if model == "gan" else {}
    if model == "particles":
        own_adam = dict(PARTICLE_PRESETS[preset])
        budget = {"n_data": budget["n_data"], "n_samples": budget["n_samples"]}
    config = {"model": model, "m": check_number("m", m, low=0, high=MAX_M),
              "seed": check_seed(seed, "seed (--seed)"), **budget,
              "betas": list(ADAM_BETAS), **own_adam}
    run_fields = list(config)[3:]
    accepted = MODEL_OPTIONS[model]
    given = {key: value for key, value in options.items() if value is not None}
    for key in given:
        if key in accepted or key in run_fields:
            continue
        takes = ", ".join(f"{k} ({OPTION_FLAGS[k]})" for k in accepted)
        if key in OPTION_FLAGS:
            raise ValueError(f"option {key} ({OPTION_FLAGS[key]}) does not apply to the {model};"
                             f" the {model} takes {takes}")
        raise ValueError(f"unknown run option {key!r}; the {model} takes {takes}"
                         f" and the run fields {sorted(run_fields)}")
    config.update(accepted)
    config.update(given)
    for key in list(config)[3:]:
        name = f"{key} ({OPTION_FLAGS[key]})" if key in OPTION_FLAGS else key
        config[key] = OPTION_CHECKS[key](name, config[key])
    if config["batch_size"] > config["n_data"]:
        raise ValueError(f"batch_size must be at most n_data ({config['n_data']}),"
                         f" got {config['batch_size']}")
    config["code"] = code_fingerprint()
    return config


def build_model(config, backend=None):
    """The model a configuration describes (untrained)."""
    common = {"seed": config["seed"], "backend": backend}
    if config["model"] == "gan":
        return GAN(n_layers=config["n_layers"], skip=config["skip"], sn_generator=config["sn_generator"],
                   gp_lipschitz=config["gp_lipschitz"], lr=config["lr"], betas=tuple(config["betas"]),
                   latent=config["latent"], **common)
    if config["model"] == "vae":
        return VAE(n_layers=config["n_layers"], skip=config["skip"], kl=config["kl"], lr=config["lr"],
                   betas=tuple(config["betas"]), **common)
    if config["model"] == "particles":
        return Particles(n_particles=config["n_particles"], divergence=config["divergence"], lr=config["lr"],
                         betas=tuple(config["betas"]), batch_size=config["batch_size"], **common)
    return SGM(weighting=config["weighting"], lr=config["lr"], betas=tuple(config["betas"]), **common)


def _multiply_adds(sizes):
    """Multiply-adds per row of a dense network's forward pass: sum of in x out."""
    return sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))


#: Per-sample Langevin steps of one SGM run's sampling (3 passes: the samples, the sampler's
#: gradient, the traces; 10 levels of 100 steps) and multiply-adds of one such step with the
#: first layer tabulated (npgen.kernels.cpu.annealed_langevin).
SGM_SAMPLING_STEPS = 3 * 1000
LANGEVIN_STEP_MULTIPLY_ADDS = 300


def run_cost(config):
    """An estimate of a run's work, in multiply-adds of its training products (a backward pass
    taken at twice its forward), to hand the longest runs to workers first:

    * GAN: per row of a step, the generator 3 times (its step, forward and backward; the
      discriminator step's fakes), 6 times with the gradient penalty's tangents, and the
      discriminator 7 times (forward and input gradient in the generator step; forward and
      backward on 2B rows in its own);
    * VAE: encoder and decoder forward and backward (3 times each);
    * SGM: the score network's x path 3 times, plus its sampling (SGM_SAMPLING_STEPS steps of
      each of n_samples samples);
    * particles: per particle step, the discriminator's forward and backward on a batch of
      particles and one of data in each of its 5 Adam steps, then its gradient at every
      particle.

    Skip connections and spectral norm are taken at the plain network's cost."""
    model = config["model"]
    if model == "particles":
        per_step = 5 * 2 * 3 * config["batch_size"] + 3 * config["n_particles"]
        return config["n_steps"] * per_step * _multiply_adds([1, 64, 64, 64, 1])
    steps = config["epochs"] * (config["n_data"] // config["batch_size"]) * config["batch_size"]
    if model == "sgm":
        return (3 * steps * _multiply_adds([1, *HIDDEN_WIDTHS, 1])
                + config["n_samples"] * SGM_SAMPLING_STEPS * LANGEVIN_STEP_MULTIPLY_ADDS)
    generator = _multiply_adds(generator_sizes(config["n_layers"]))
    if model == "vae":
        return 3 * steps * (generator + _multiply_adds(encoder_sizes()))
    tangents = 2 if config["gp_lipschitz"] is not None else 1
    return steps * (3 * tangents * generator
                    + 7 * _multiply_adds(discriminator_sizes(config["n_layers"])))


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


@one_blas_thread
def train_run(config, run_dir, quiet=True, backend=None):
    """Train, sample and measure one configuration; write everything into ``run_dir``.

    Files: model/ (weights), samples.npy, history.json, histogram.png. Returns the metrics
    dict (the caller writes metrics.json and config.json).
    """
    start = time.perf_counter()
    data = run_data(config)
    model = build_model(config, backend)
    lipschitz_curve, on_epoch = lipschitz_tracker(model, config)
    if config["model"] == "particles":
        history = model.fit(data, n_steps=config["n_steps"], quiet=quiet)
    else:
        history = model.fit(data, epochs=config["epochs"], batch_size=config["batch_size"],
                            quiet=quiet, on_epoch=on_epoch)
    return finish_run(model, history, lipschitz_curve, config, run_dir, start, quiet)


def run_data(config):
    """The training data of a run: n_data fresh samples of the mixture at its m, from its seed."""
    return two_gaussians(config["m"], n=config["n_data"], seed=config["seed"])


def finish_run(model, history, lipschitz_curve, config, run_dir, start, quiet=True,
               train_seconds=None):
    """Sample and measure a trained model and write its files into ``run_dir`` (what
    :func:`train_run` does after training). ``start``: the perf_counter time the run began;
    ``train_seconds``: its training time, by default the time since ``start``.
    Returns the metrics dict."""
    if train_seconds is None:
        train_seconds = time.perf_counter() - start
    sample_options = ({"denoise": config["denoise"], "device": config.get("device", "cpu")}
                      if config["model"] == "sgm" else {})
    sample_seed = config["seed"] + 1_000_003
    n_samples = min(config["n_samples"], config.get("n_particles", config["n_samples"]))
    samples = model.sample(n_samples, seed=sample_seed, quiet=quiet, **sample_options)
    metrics = {"train_seconds": train_seconds, "lipschitz_vs_epoch": lipschitz_curve}
    metrics.update(lipschitz_metrics(model, config))
    if config["model"] == "particles":
        metrics.update(particle_metrics(history))
    lip_for_bounds = metrics.get("lipschitz") if config["model"] != "sgm" else None
    metrics.update(distribution_metrics(samples, config["m"], lip_for_bounds,
                                        config.get("latent", "gaussian")))
    if config["model"] == "sgm":
        os.makedirs(run_dir, exist_ok=True)
        metrics.update(sampler_metrics(model, config, run_dir, samples, sample_seed, sample_options))
        metrics.update(exact_score_metrics(model, config, run_data(config), sample_seed, distribution_metrics))
    metrics["final_losses"] = {k: v[-1] for k, v in history.items() if isinstance(v, list) and v}
    metrics["wall_seconds"] = time.perf_counter() - start
    os.makedirs(run_dir, exist_ok=True)
    model.save(os.path.join(run_dir, "model"))
    atomic_save_npy(samples_path(run_dir), samples.astype(np.float32))
    atomic_write_json(os.path.join(run_dir, "history.json"), history)
    save_histogram(os.path.join(run_dir, "histogram.png"), samples, config["m"],
                   title=f"{config['model'].upper()}, m = {config['m']:g}", model=config["model"])
    return metrics


def is_run_folder(path):
    """Whether ``path`` holds an npgen run: a config.json naming one of :data:`RUN_MODELS`."""
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(config, dict) and config.get("model") in RUN_MODELS and "m" in config


def check_run_target(out, force):
    """Refuse, in one sentence, a run folder ``out`` that ``npgen train`` must not write.

    ``out`` may be new or an empty folder. A folder holding an npgen run is replaced only with
    ``force``; any other folder, a user's, is never replaced. Files and read-only places are
    refused by :func:`npgen.util.io.check_folder_target`.
    """
    check_folder_target("--out", out)
    check_not_busy("--out", out)
    if os.path.ismount(out):
        raise ValueError(f"--out {out} is a mount point, which npgen train cannot replace by the"
                         " finished run folder; give a new folder inside it")
    here = os.path.abspath(os.getcwd())
    if os.path.commonpath([here, os.path.abspath(out)]) == os.path.abspath(out):
        raise ValueError(f"--out {out} is the current folder or holds it; npgen train replaces"
                         " its --out folder whole, give a new folder inside it instead")
    if check_own_folder("--out", out, is_run_folder, "npgen run (no run's config.json)") and not force:
        raise ValueError(f"--out {out} already holds an npgen run; give --force to replace it"
                         " (the old run stays until the new one is complete) or another --out")


def train_command(model, m, preset, seed, out, force=False, **options):
    """``npgen train``: one run into ``out`` (config.json, weights, samples, metrics, histogram).

    Everything is checked before anything is written (:func:`make_config`,
    :func:`check_run_target`). The run is written into a temporary folder beside ``out`` and
    renamed into place once complete, so ``out`` holds a whole run or what it held before:
    an error or Ctrl-C leaves it untouched, and ``force`` replaces an old run only at the end.
    """
    config = make_config(model, m, preset, seed, **options)
    check_run_target(out, check_bool("force", force))
    clear_dead_writers(os.path.dirname(os.path.abspath(out)),
                       lambda text: print(f"train: {text}", file=sys.stderr))
    with atomic_directory(out, replace=force, prefix=writer_prefix(out)) as tmp, \
            claim_folder(tmp, out, "--out"):
        atomic_write_json(os.path.join(tmp, "config.json"), config)
        metrics = train_run(config, tmp, quiet=False)
        atomic_write_json(os.path.join(tmp, "metrics.json"), metrics)
    return config, metrics


def _is_number(value):
    """A finite int or float: NaN or inf in a metric the report reads means a damaged run."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_number_or_inf(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _is_epoch_curve(value):
    return isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 and all(map(_is_number, p))
                                           for p in value)


def _is_sigma_table(value):
    return isinstance(value, list) and bool(value) and all(
        isinstance(row, dict) and _is_number(row.get("exact_standardized")) and _is_number(row.get("grid_standardized"))
        for row in value)


def _is_level_table(value):
    return isinstance(value, list) and bool(value) and all(
        isinstance(row, dict) and all(_is_number(row.get(key)) for key in
                                      ("sigma_standardized", "grad_sq_factor_median", "grad_sq_factor_at_max"))
        for row in value)


def _is_steps_by_end(value):
    return isinstance(value, dict) and all(
        isinstance(value.get(name), list) and all(isinstance(k, int) and not isinstance(k, bool) for k in value[name])
        for name in ("left", "between", "right"))


def _is_score_error_table(value):
    return isinstance(value, list) and bool(value) and all(
        isinstance(row, dict) and _is_number(row.get("sigma_standardized")) and _is_number(row.get("relative_error"))
        for row in value)


def _is_search(value):
    return isinstance(value, dict) and all(
        isinstance(value.get(name), dict) and (value[name].get("largest") is None or _is_number(value[name]["largest"]))
        for name in ("trained", "exact"))


#: The exact-score sampler's numbers the report reads.
EXACT_SAMPLER_NUMBERS = ("mass_between", "smaller_mode_share", "mw2_squared", "lipschitz",
                         "theorem1_required_lipschitz")
_NUMBER = ("a finite number", _is_number)
#: The metrics.json keys the report and the figures read, per model: key -> (what is accepted, test).
METRICS_READ = {
    "any": {key: _NUMBER for key in ("mass_between", "true_mass_between", "mass_left", "mass_right",
                                     "tv_estimate", "narrowest_90pct_interval_width", "smaller_mode_share",
                                     "mw2_squared")},
    "push_forward": {"lipschitz": _NUMBER, "lipschitz_grid": _NUMBER,
                     "lipschitz_vs_epoch": ("a list of [epoch, Lip] number pairs", _is_epoch_curve)},
    "particles": {"discriminator_lipschitz": _NUMBER, "train_seconds": _NUMBER,
                  "kinetic_energy_vs_step": ("a list of [step, energy] number pairs", _is_epoch_curve)},
    "sgm": {"score_lipschitz_standardized": _NUMBER, "score_lipschitz_data_scale": _NUMBER,
            "sampler_lipschitz": _NUMBER, "sampler_lipschitz_x0": _NUMBER, "sampler_lipschitz_noise": _NUMBER,
            "sampler_gradient_median": _NUMBER, "sampler_steps_per_level": _NUMBER,
            "theorem1_required_lipschitz": ("a number or Infinity (no mass between the modes)", _is_number_or_inf),
            "theorem1_required_lipschitz_upper": ("a number or null", lambda v: v is None or _is_number(v)),
            "sampler_meets_theorem1": ("true or false", lambda v: isinstance(v, bool)),
            "sampler_levels": ("a list of objects with numbers 'sigma_standardized', 'grad_sq_factor_median' and "
                               "'grad_sq_factor_at_max'", _is_level_table),
            "sampler_expansion_steps": ("an object of integer lists 'left', 'between' and 'right'", _is_steps_by_end),
            "score_lipschitz_per_sigma": ("a list of objects with numbers 'exact_standardized' and "
                                          "'grid_standardized'", _is_sigma_table),
            "score_error_per_level": ("a list of objects with numbers 'sigma_standardized' and 'relative_error'",
                                      _is_score_error_table),
            "exact_sampler": ("an object with numbers " + ", ".join(map(repr, EXACT_SAMPLER_NUMBERS)),
                              lambda v: isinstance(v, dict) and all(_is_number(v.get(k)) for k in EXACT_SAMPLER_NUMBERS)),
            "sampler_search": ("an object 'trained' and 'exact', each with 'largest' a number or null",
                               _is_search)},
}
METRICS_READ["any"]["collapse"] = (f"null or one of {list(COLLAPSES)}", lambda v: v is None or v in COLLAPSES)


def check_metrics(metrics, model, path):
    """Raise ValueError (one sentence naming ``path``) unless ``metrics`` holds every key the report
    reads for ``model``, each of the accepted type."""
    kind = model if model in ("sgm", "particles") else "push_forward"
    expected = {**METRICS_READ["any"], **METRICS_READ[kind]}
    for key, (accepted, test) in expected.items():
        if key not in metrics:
            raise ValueError(f"{path} lacks the key {key!r} ({accepted}); delete that run's folder and rerun "
                             "npgen reproduce to retrain it")
        if not test(metrics[key]):
            shown = repr(metrics[key])
            raise ValueError(f"{path}: {key!r} must be {accepted}, not {shown[:40] + '...' * (len(shown) > 40)}; "
                             "delete that run's folder and rerun npgen reproduce to retrain it")


def summarize_metrics(metrics):
    """A few lines for the terminal."""
    keys = ["lipschitz", "lipschitz_grid", "score_lipschitz_standardized", "score_lipschitz_data_scale",
            "score_lipschitz_grid_standardized", "sampler_lipschitz", "theorem1_required_lipschitz",
            "mass_between", "true_mass_between", "fig3_bound", "mass_between_bound", "mw2_squared",
            "discriminator_lipschitz", "final_kinetic_energy",
            "tv_estimate", "kl_estimate", "best_tv_bound", "best_kl_bound", "wall_seconds"]
    lines = [f"{k:>33}: {metrics[k]:.6g}" for k in keys if k in metrics]
    return "\n".join(lines + [f"{'collapse':>33}: {metrics.get('collapse') or 'none'}"])

