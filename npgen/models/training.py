"""The minibatch loop shared by every model: shuffling, progress, and a guard against runaways.

A model used here provides
  ``step(batch) -> dict``  one optimization step on a (batch_size, d) array, returning its losses;
  ``networks() -> dict``   name -> network (anything with a flat ``params`` array).
"""

import math
import time

import numpy as np

from ..util.checks import check_bool, check_number
from ..util.progress import advance, progress_bar
from ..util.threads import one_blas_thread


#: Training stops when a loss grows past RUNAWAY_FACTOR times its start: the absolute value
#: of that loss at the first step (before any update), or RUNAWAY_FLOOR if that is smaller, so
#: that a loss starting near 0 may still grow by ordinary amounts. A diverging GAN (lr 1e3:
#: generator loss 1e9) or SGM (loss 6e27) passes it at its second step; no run of the quick
#: preset comes within a factor 10^4 of it (the largest growth over the GAN, VAE and SGM quick
#: runs at m = 0, 5 and 10 was 50, the VAE's KL term at m = 10; README, "Nothing lost").
RUNAWAY_FACTOR = 1e6
RUNAWAY_FLOOR = 1.0


#: The most samples one ``sample`` call draws (10^8 float32 values are 400 MB): a larger n is
#: refused before anything is allocated.
MAX_SAMPLES = 10 ** 8


class TrainingDiverged(FloatingPointError):
    """A loss or a parameter became NaN or inf, or a loss ran away; the message names the step
    and the network."""


def _loss_name(model, name):
    """'the generator loss' for a loss named after a network, else "loss 'kl' (encoder/decoder)"."""
    networks = model.networks()
    return f"the {name} loss" if name in networks else f"loss {name!r} ({'/'.join(networks)})"


def check_step(model, step, losses, starts, label):
    """Raise :class:`TrainingDiverged` if, after ``step``, a loss or a parameter of ``model``
    is not finite, or a loss exceeds RUNAWAY_FACTOR times its start (``starts``: loss name ->
    start, filled in at the first step)."""
    check_losses(model, step, losses, starts, label)
    for name, net in model.networks().items():
        if not np.isfinite(net.params).all():
            raise TrainingDiverged(f"{label} training diverged at step {step}: the {name} has"
                                   " NaN or inf parameters")


def check_losses(model, step, losses, starts, label):
    """The loss half of :func:`check_step`: a loss that is not finite or that ran away."""
    for name, value in losses.items():
        if not math.isfinite(value):
            raise TrainingDiverged(f"{label} training diverged at step {step}:"
                                   f" {_loss_name(model, name)} is {value}")
        start = starts.setdefault(name, max(abs(value), RUNAWAY_FLOOR))
        if abs(value) > RUNAWAY_FACTOR * start:
            raise TrainingDiverged(
                f"{label} training ran away at step {step}: {_loss_name(model, name)} is"
                f" {value:.3g}, more than {RUNAWAY_FACTOR:g} times its start {start:.3g}; lower lr")


def minibatches(n, batch_size, rng):
    """Index arrays of one shuffled epoch: n // batch_size full batches (the remainder is dropped,
    as torch's DataLoader(drop_last=True)); with batch_size == n, one batch of everything."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


@one_blas_thread
def fit_loop(model, data, epochs, batch_size, rng, label, quiet=False, on_epoch=None, step=None):
    """Train ``model`` for ``epochs`` passes over ``data`` in shuffled minibatches, checking
    every step (:func:`check_step`; ``label`` names the model in its messages).

    Returns the history: a dict of per-epoch mean losses. ``on_epoch(epoch, history)``, if
    given, runs after each epoch (used for Lipschitz-vs-epoch curves). ``step(batch) ->
    losses`` trains on one minibatch (default ``model.step``); a model that checked ``data``
    once passes a step that does not check each minibatch again (the check of a 128 x 784
    float32 batch takes 0.6 ms, against 38 ms for a step of the MNIST GAN).
    """
    quiet = check_bool("quiet", quiet)
    epochs = check_number("epochs", epochs, low=1, integer=True)
    batch_size = check_number("batch_size", batch_size, low=1, integer=True)
    if batch_size > len(data):
        raise ValueError(f"batch_size must be at most the number of samples ({len(data)}), got {batch_size}")
    if on_epoch is not None and not callable(on_epoch):
        raise ValueError(f"on_epoch must be a function on_epoch(epoch, history), got {on_epoch!r}")
    step_on = model.step if step is None else step
    steps_per_epoch = len(data) // batch_size
    progress = progress_bar(epochs * steps_per_epoch, label=label, quiet=quiet)
    start = time.perf_counter()
    history = {}
    starts = {}
    n_steps = 0
    try:
        for epoch in range(epochs):
            sums = {}
            for index in minibatches(len(data), batch_size, rng):
                n_steps += 1
                # Overflow and NaN are reported by check_step in one sentence, not by numpy.
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    losses = step_on(data[index])
                check_step(model, n_steps, losses, starts, label)
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + value
                advance(progress, 1, **losses)
            for key, total in sums.items():
                history.setdefault(key, []).append(total / steps_per_epoch)
            if on_epoch is not None:
                on_epoch(epoch + 1, history)
    finally:
        progress.close()
    history["wall_time_s"] = time.perf_counter() - start
    return history
