"""Exact optimal-transport costs between images, and a set of image pairs with their costs
cached on disk: the training data of the Wasserstein embedding.

An image x (784 pixels >= 0, not all 0) is the distribution of mass a = x / sum(x) on the
28 x 28 grid. Between two images the cost is the exact optimal-transport cost with the
squared Euclidean ground cost, in pixels^2 (Courty, Flamary & Ducoffe 2018):

    W(a, b) = min_{P >= 0, P 1 = a, P^T 1 = b} sum_{kl} P_kl ||g_k - g_l||^2,

g_k = (row, column) of pixel k, solved by network simplex (POT's ``ot.emd2``). A pixel without
mass carries no flow, so the problem restricted to the pixels with mass (the supports of a and
b: about 150 of 784 for an MNIST digit) has the same optimum; it is what is solved.

The pair set (:func:`pair_costs`): pair p joins image ``first[p]`` and image ``second[p] !=
first[p]``, drawn in blocks of :data:`PAIR_BLOCK` pairs, block k from
``numpy.random.default_rng([seed, k])``. So a request for more pairs begins with the pairs of
a smaller one, and a cache computed for the quick preset is the start of a larger run's.
The cache is one .npz file: the pairs, their costs (NaN where not yet computed) and a key
(format, ground cost, the images' SHA-256, the seed). It is written atomically every
:data:`SAVE_EVERY_S` seconds while costs are computed, and once more when the work stops:
Ctrl-C, or the SIGTERM with which a sweep stops its worker processes on Ctrl-C, saves every
cost computed so far, and the next call resumes; a file that is not such a cache, is damaged, or holds the pairs of
other images or another seed is refused in one sentence and left as it is.
"""

import hashlib
import json
import contextlib
import os
import signal
import threading
import time
import warnings

import numpy as np

from ..util.checks import check_bool, check_number, check_seed
from ..util.environment import import_kept
from ..util.io import atomic_savez, read_npz
from ..util.progress import progress_bar

SIDE = 28
PIXELS = SIDE * SIDE

#: Pairs drawn per block of the pair stream (the unit in which pair sets are prefix-stable).
PAIR_BLOCK = 1000
#: While costs are computed, the cache is rewritten at most this often (seconds): the work
#: that Ctrl-C can lose.
SAVE_EVERY_S = 30.0
#: The most pairs one request may ask for (10^7 pairs: 240 MB of pairs and costs; the
#: reference used 700 000).
MAX_PAIRS = 10 ** 7
#: Network-simplex iterations allowed per problem; an MNIST pair needs a few thousand, and a
#: problem that stops before optimality raises instead of returning a wrong cost.
EMD_MAX_ITERATIONS = 10 ** 7

CACHE_KIND = "npgen OT pair costs"
CACHE_FORMAT = 1
CACHE_KEY = "__npgen_pairs__"
GROUND_COST = "squared Euclidean distance between pixel centres of the 28 x 28 grid, pixels^2"


def _emd2():
    """POT's ``ot.emd2``, imported on first use (``import ot`` takes about 1.5 s) with the
    environment left as it was."""
    return import_kept("ot").emd2


def ground_cost():
    """The (784, 784) matrix ||g_k - g_l||^2 between pixel centres (row-major pixel order)."""
    rows, cols = np.divmod(np.arange(PIXELS), SIDE)
    return ((rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2).astype(
        np.float64)


def distributions(images, name="images"):
    """Images (n, 784) as float64 distributions of mass (rows / row sums).

    Raises ValueError naming ``name`` unless images is a finite real (n, 784) array with no
    negative pixel and no row without mass.
    """
    images = np.asarray(images)
    if images.ndim != 2 or images.shape[1] != PIXELS or images.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a real array of shape (n, {PIXELS}), got"
                         f" {images.dtype.name} {images.shape}")
    images = images.astype(np.float64)
    if not np.isfinite(images).all() or (images < 0).any():
        raise ValueError(f"{name} must hold finite pixel values >= 0 (masses on the grid)")
    mass = images.sum(axis=1, keepdims=True)
    if (mass <= 0).any():
        raise ValueError(f"{name} row {int(np.flatnonzero(mass[:, 0] <= 0)[0])} has no mass"
                         " (all its pixels are 0); an image must hold some mass")
    return images / mass


def ot_cost(a, b, cost=None):
    """The exact OT cost between distributions a and b (784,) with ground cost ``cost``
    (default :func:`ground_cost`), solved on their supports only. Raises RuntimeError if the
    solver stops before optimality."""
    cost = ground_cost() if cost is None else cost
    support_a, support_b = np.flatnonzero(a), np.flatnonzero(b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the result code below says what a warning would
        value, log = _emd2()(a[support_a], b[support_b], cost[np.ix_(support_a, support_b)],
                             numItermax=EMD_MAX_ITERATIONS, log=True)
    if log["result_code"] != 1:
        raise RuntimeError(f"the OT solver did not reach the optimum ({log['warning']})")
    return float(value)


def ot_costs(images_a, images_b):
    """The exact OT cost of each pair of rows (images (n, 784) >= 0, normalised here), float64."""
    a, b = distributions(images_a, "images_a"), distributions(images_b, "images_b")
    if a.shape != b.shape:
        raise ValueError(f"images_a and images_b must have the same shape, got {a.shape} and"
                         f" {b.shape}")
    cost = ground_cost()
    return np.array([ot_cost(a[p], b[p], cost) for p in range(len(a))])


# --------------------------------------------------------------------------- the pair set


def draw_pairs(n_images, n_pairs, seed):
    """(first, second) int64 (n_pairs,): the pair stream of the module doc, second != first."""
    n_blocks = -(-n_pairs // PAIR_BLOCK)
    first, second = [], []
    for block in range(n_blocks):
        rng = np.random.default_rng([seed, block])
        i = rng.integers(0, n_images, PAIR_BLOCK)
        first.append(i)
        second.append((i + rng.integers(1, n_images, PAIR_BLOCK)) % n_images)
    return np.concatenate(first)[:n_pairs], np.concatenate(second)[:n_pairs]


def images_digest(images):
    """SHA-256 of the images as float32 (n, 784) C-ordered bytes: the cache's key to the images."""
    data = np.ascontiguousarray(np.asarray(images, np.float32))
    return hashlib.sha256(data.tobytes()).hexdigest()


def _cache_key(images, seed):
    return {"kind": CACHE_KIND, "format": CACHE_FORMAT, "ground_cost": GROUND_COST,
            "images_sha256": images_digest(images), "n_images": len(images), "seed": seed}


def _read_cache(path, key):
    """(first, second, costs) from the cache at ``path`` if it holds ``key``'s pairs, else a
    ValueError (one sentence naming the file)."""
    arrays = read_npz(path)
    if CACHE_KEY not in arrays:
        raise ValueError(f"{path} is not an npgen pair cache (no {CACHE_KEY} entry); give"
                         " another cache path")
    try:
        stored = json.loads(str(arrays[CACHE_KEY]))
        first, second, costs = arrays["first"], arrays["second"], arrays["cost"]
    except (ValueError, KeyError) as err:
        raise ValueError(f"{path} is a damaged npgen pair cache ({type(err).__name__}: {err})"
                         ) from None
    if not isinstance(stored, dict) or stored.get("format") != CACHE_FORMAT:
        raise ValueError(f"{path} is a pair cache of another format"
                         f" ({stored.get('format') if isinstance(stored, dict) else stored!r});"
                         f" this npgen reads format {CACHE_FORMAT}")
    if stored != key:
        differs = sorted(k for k in key if stored.get(k) != key[k])
        raise ValueError(f"{path} holds the OT costs of other pairs (its {', '.join(differs)}"
                         " differ from this request's); give another cache path")
    n = len(costs)
    if not (first.shape == second.shape == (n,) and first.dtype.kind == second.dtype.kind == "i"
            and costs.dtype == np.float64):
        raise ValueError(f"{path} is a damaged npgen pair cache (its arrays do not fit together)")
    if n and not np.array_equal(np.stack(draw_pairs(key["n_images"], n, key["seed"])),
                                np.stack([first, second])):
        raise ValueError(f"{path} is a damaged npgen pair cache (its pairs are not those of its"
                         " seed)")
    if ((costs < 0) | np.isinf(costs)).any():
        raise ValueError(f"{path} is a damaged npgen pair cache (a cost is negative or inf)")
    return first, second, costs


def _write_cache(path, key, first, second, costs):
    atomic_savez(path, first=first, second=second, cost=costs,
                 **{CACHE_KEY: np.array(json.dumps(key, sort_keys=True))})


def pair_costs(images, n_pairs, seed=0, cache=None, quiet=False):
    """(first, second, costs): ``n_pairs`` pairs of rows of ``images`` (n, 784), pixels >= 0,
    and their exact OT costs (float64, pixels^2), computed or read from the cache file.

    ``cache`` (a path to an .npz, or None for no cache): costs already there are reused, new
    ones are added and saved as they come (see the module doc); a larger cache with the same
    key serves a smaller request and keeps its other pairs. Raises ValueError, one sentence,
    for a foreign or damaged cache, or one of other images or another seed, which is left as
    it is.
    """
    quiet = check_bool("quiet", quiet)
    dists = distributions(images)
    if len(dists) < 2:
        raise ValueError(f"images must hold at least 2 images to make pairs, got {len(dists)}")
    n_pairs = check_number("n_pairs", n_pairs, low=1, high=MAX_PAIRS, integer=True)
    seed = check_seed(seed)
    key = _cache_key(images, seed)
    stored = np.empty(0)
    if cache is not None:
        cache = os.fspath(cache)
        if os.path.isdir(cache):
            raise ValueError(f"cache {cache} is a folder; give the path of an .npz file")
        if os.path.exists(cache):
            stored = _read_cache(cache, key)[2]
    n_all = max(n_pairs, len(stored))
    first, second = draw_pairs(len(dists), n_all, seed)
    costs = np.full(n_all, np.nan)
    costs[:len(stored)] = stored
    todo = np.flatnonzero(np.isnan(costs[:n_pairs]))
    if todo.size:
        _fill_costs(dists, first, second, costs, todo, cache, key, quiet)
    return first[:n_pairs], second[:n_pairs], costs[:n_pairs].copy()


def _fill_costs(dists, first, second, costs, todo, cache, key, quiet):
    """Compute ``costs[todo]`` in place; the cache is saved every SAVE_EVERY_S seconds and when
    the work ends, finished or not: Ctrl-C, and SIGTERM (how a sweep stops its workers on
    Ctrl-C), stop the loop, and the last save completes before either signal acts again."""
    ground = ground_cost()
    progress = progress_bar(todo.size, label="OT pair costs", unit="pair", quiet=quiet)
    last_save = time.monotonic()
    with _sigterm_interrupts(cache is not None):
        try:
            for p in todo:
                costs[p] = ot_cost(dists[first[p]], dists[second[p]], ground)
                progress.update(1)
                if cache is not None and time.monotonic() - last_save >= SAVE_EVERY_S:
                    _write_cache(cache, key, first, second, costs)
                    last_save = time.monotonic()
        finally:
            progress.close()
            if cache is not None:
                with _signals_deferred():
                    _write_cache(cache, key, first, second, costs)


def _interrupted(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_interrupts(active):
    """Within the block (when ``active``, in the main thread), SIGTERM raises KeyboardInterrupt
    as Ctrl-C does, so that ``finally`` clauses save the work; the old handler comes back after."""
    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_deferred():
    """SIGINT and SIGTERM wait until the block ends (POSIX; elsewhere nothing is deferred)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def emd_seconds_per_pair(images, n_pairs=200, seed=0):
    """Measured wall time of one exact OT cost on this machine, seconds per pair (the mean
    over ``n_pairs`` pairs of the pair stream); what the presets' pair counts are sized by."""
    dists = distributions(images)
    first, second = draw_pairs(len(dists), n_pairs, seed)
    ground = ground_cost()
    start = time.perf_counter()
    for i, j in zip(first, second):
        ot_cost(dists[i], dists[j], ground)
    return (time.perf_counter() - start) / n_pairs

