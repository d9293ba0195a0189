"""The typed records the report reads, a finished :class:`Run` and a :class:`Stat` over runs, and
the queries the sections ask of runs (:func:`by_model`, :func:`where`, :func:`lip`, ...).

A run's folder holds config.json, metrics.json and :data:`SAMPLES_FILE` (the generated samples,
one row per sample); :meth:`Run.samples` is the one place that opens the samples.
"""

import os
from typing import NamedTuple

import numpy as np

from ..util.io import read_npy

#: The generated samples of a run, one row per sample (float32).
SAMPLES_FILE = "samples.npy"


def samples_path(folder):
    """The path of the samples in a run's ``folder``."""
    return os.path.join(folder, SAMPLES_FILE)


def load_samples(folder, mmap_mode=None, width=1):
    """The samples array of the run in ``folder`` (``mmap_mode="r"`` maps it read-only), as
    the run wrote it: raises ValueError (one sentence naming the file) unless it holds n >= 1
    finite real numbers of shape (n,) or (n, width) (``width=None``: any). The header is read
    first (:func:`npgen.util.io.read_npy`), so a damaged file never makes numpy allocate what
    it declares."""
    path = samples_path(folder)
    samples = read_npy(path, mmap_mode=mmap_mode)
    retrain = "; delete that run's folder and rerun npgen reproduce to retrain it"
    shape = "(n,) or (n, d)" if width is None else f"(n,) or (n, {width})"
    if (samples.dtype.kind != "f" or samples.size == 0 or samples.ndim not in (1, 2)
            or (samples.ndim == 2 and width is not None and samples.shape[1] != width)):
        raise ValueError(f"{path} must hold n >= 1 real numbers of shape {shape}, got {samples.dtype.name}"
                         f" of shape {samples.shape}{retrain}")
    if not np.isfinite(samples).all():
        raise ValueError(f"{path} holds {int(np.sum(~np.isfinite(samples)))} NaN or inf samples{retrain}")
    return samples


class Run(NamedTuple):
    """One finished run: its configuration, the numbers of its metrics.json, and its folder.

    A tuple, so ``config, metrics, folder = run`` also reads it."""

    config: dict
    metrics: dict
    folder: str

    def samples(self, mmap_mode=None, width=1):
        """The run's generated samples (:func:`load_samples`; ``width``: the data's dimension,
        1 but for Figure 7's runs)."""
        return load_samples(self.folder, mmap_mode, width)

    def with_metrics(self, **extra):
        """The same run with ``extra`` numbers added to its metrics (the files are not touched)."""
        return self._replace(metrics=dict(self.metrics, **extra))


class Stat(NamedTuple):
    """A number over runs: the mean, the standard deviation (population, ddof 0) and the count
    n of the finite values, and their smallest and largest (``low``, ``high``); ``n`` is None
    for an exact number (its std is 0)."""

    mean: float
    std: float
    n: int = None
    low: float = None
    high: float = None

    @classmethod
    def of(cls, values):
        """mean, std, n, min and max of the finite numbers of ``values`` (None and NaN left
        out), or None when none is left."""
        values = [float(v) for v in values if v is not None and np.isfinite(v)]
        if not values:
            return None
        return cls(float(np.mean(values)), float(np.std(values)), len(values), min(values), max(values))

    @classmethod
    def exact(cls, value):
        """An exact number: std 0, no count."""
        return cls(float(value), 0.0, None, float(value), float(value))

    def scaled(self, factor):
        """Every number times ``factor`` >= 0."""
        return Stat(self.mean * factor, self.std * factor, self.n, *(None if v is None else v * factor
                                                                      for v in (self.low, self.high)))


# --------------------------------------------------------------------------- row queries


def drawing(function, *args):
    """``path -> function(path, *args)``: how a section's figure is drawn, once its folder is known."""
    return lambda path: function(path, *args)


def lip(metrics, scale="data"):
    """The constant the report compares: Lip(g) for GAN / VAE; for the SGM the score network's,
    on the data's own scale (``scale="data"``) or on the standardized one (the paper's)."""
    if "lipschitz" in metrics:
        return metrics["lipschitz"]
    return metrics["score_lipschitz_data_scale" if scale == "data" else "score_lipschitz_standardized"]


def mw2(metrics):
    """MW2^2 from the two-component mixture fitted to a run's samples to nu (data units squared)."""
    return metrics["mw2_squared"]


def mass(metrics):
    """The generated mass in [-m/2, m/2]."""
    return metrics["mass_between"]


def first_seed(rows, key):
    """{key(config): run} of the run with the smallest seed per value of ``key``."""
    first = {}
    for run in sorted(rows, key=lambda r: r.config["seed"]):
        first.setdefault(key(run.config), run)
    return first


def by_model(rows, model):
    """The runs of ``model``."""
    return [r for r in rows if r.config["model"] == model]


def where(rows, **fields):
    """The runs whose configuration has every one of ``fields``."""
    return [r for r in rows if all(r.config[k] == v for k, v in fields.items())]
