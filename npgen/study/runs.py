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
import os
import sys
import time

import numpy as np

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
from .phase_times import PhaseClock
from .records import samples_path
from .run_metrics import distribution_metrics, lipschitz_metrics, lipschitz_tracker, particle_metrics
from .sampler import sampler_draws, sampler_metrics

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


@one_blas_thread
def train_run(config, run_dir, quiet=True, backend=None):
    """Train, sample and measure one configuration; write everything into ``run_dir``.

    Files: model/ (weights), samples.npy, history.json, histogram.png. Returns the metrics
    dict (the caller writes metrics.json and config.json).
    """
    start, clock = time.perf_counter(), PhaseClock()
    with clock.phase("train"):
        data = run_data(config)
        model = build_model(config, backend)
        lipschitz_curve, on_epoch = lipschitz_tracker(model, config)
        if config["model"] == "particles":
            history = model.fit(data, n_steps=config["n_steps"], quiet=quiet)
        else:
            history = model.fit(data, epochs=config["epochs"], batch_size=config["batch_size"],
                                quiet=quiet, on_epoch=clock.timed("lipschitz_curve", on_epoch))
    return finish_run(model, history, lipschitz_curve, config, run_dir, start, quiet, clock=clock)


def run_data(config):
    """The training data of a run: n_data fresh samples of the mixture at its m, from its seed."""
    return two_gaussians(config["m"], n=config["n_data"], seed=config["seed"])


def sample_seed(config):
    """The seed a run's samples are drawn with (each sampling pass of an SGM's uses it)."""
    return config["seed"] + 1_000_003


def finish_run(model, history, lipschitz_curve, config, run_dir, start, quiet=True,
               train_seconds=None, draws=None, clock=None):
    """Sample and measure a trained model and write its files into ``run_dir`` (what
    :func:`train_run` does after training). ``start``: the perf_counter time the run began;
    ``train_seconds``: its training time, by default the time since ``start``; ``draws``: an
    SGM's :class:`npgen.study.sampler.SamplerDraws` when its batch was sampled together
    (:mod:`npgen.study.devices`), else the run samples here; ``clock``: the
    :class:`npgen.study.phase_times.PhaseClock` that timed the training, if any, which times the
    phases here as well (``metrics["phase_seconds"]``). Returns the metrics dict."""
    if train_seconds is None:
        train_seconds = time.perf_counter() - start
    clock = clock or PhaseClock()
    is_sgm = config["model"] == "sgm"
    sample_options = {"denoise": config["denoise"], "device": config.get("device", "cpu")} if is_sgm else {}
    seed = sample_seed(config)
    n_samples = min(config["n_samples"], config.get("n_particles", config["n_samples"]))
    with clock.phase("sample"):
        if draws is not None:
            samples = draws.samples
        elif is_sgm:  # the samples come with the sampler's gradient, in one pass
            samples, gradient = model.sample(n_samples, seed=seed, quiet=quiet, lipschitz=True,
                                             **sample_options)
        else:
            samples = model.sample(n_samples, seed=seed, quiet=quiet)
    metrics = {"train_seconds": train_seconds, "lipschitz_vs_epoch": lipschitz_curve}
    with clock.phase("lipschitz"):
        metrics.update(lipschitz_metrics(model, config))
    if config["model"] == "particles":
        metrics.update(particle_metrics(history))
    lip_for_bounds = None if is_sgm else metrics.get("lipschitz")
    with clock.phase("distribution"):
        metrics.update(distribution_metrics(samples, config["m"], lip_for_bounds,
                                            config.get("latent", "gaussian")))
    if is_sgm:
        os.makedirs(run_dir, exist_ok=True)
        if draws is None:
            with clock.phase("sampler_trace"):
                draws = sampler_draws(model, config, samples, gradient, seed, sample_options)
        metrics.update(sampler_metrics(model, config, run_dir, draws))
        with clock.phase("exact_score"):
            metrics.update(exact_score_metrics(model, config, run_data(config), seed,
                                               distribution_metrics, clock))
    metrics["final_losses"] = {k: v[-1] for k, v in history.items() if isinstance(v, list) and v}
    metrics["wall_seconds"] = time.perf_counter() - start
    with clock.phase("save"):
        os.makedirs(run_dir, exist_ok=True)
        model.save(os.path.join(run_dir, "model"))
        atomic_save_npy(samples_path(run_dir), samples.astype(np.float32))
        atomic_write_json(os.path.join(run_dir, "history.json"), history)
        save_histogram(os.path.join(run_dir, "histogram.png"), samples, config["m"],
                       title=f"{config['model'].upper()}, m = {config['m']:g}", model=config["model"])
    metrics["phase_seconds"] = clock.seconds
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
