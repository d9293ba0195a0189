"""The minibatch loop shared by every model: shuffling, progress, and a guard against NaN.

A model used here provides
  ``step(batch) -> dict``  one optimization step on a (batch_size, d) array, returning its losses;
  ``networks() -> dict``   name -> network (anything with a flat ``params`` array).
"""

import math

import numpy as np

from ..util.checks import check_number
from ..util.progress import Progress
from ..util.threads import one_blas_thread


class TrainingDiverged(FloatingPointError):
    """A loss or a parameter became NaN or inf; the message names the step and the network."""


def check_finite_step(model, step, losses):
    """Raise :class:`TrainingDiverged` if a loss or a parameter of ``model`` is not finite."""
    for name, value in losses.items():
        if not math.isfinite(value):
            raise TrainingDiverged(f"training diverged at step {step}: loss {name!r} is {value}")
    for name, net in model.networks().items():
        if not np.isfinite(net.params).all():
            raise TrainingDiverged(f"training diverged at step {step}: the {name} has NaN or inf parameters")


def minibatches(n, batch_size, rng):
    """Index arrays of one shuffled epoch: n // batch_size full batches (the remainder is dropped,
    as torch's DataLoader(drop_last=True)); with batch_size == n, one batch of everything."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


@one_blas_thread
def fit_loop(model, data, epochs, batch_size, rng, label, quiet=False, on_epoch=None):
    """Train ``model`` for ``epochs`` passes over ``data`` in shuffled minibatches.

    Returns the history: a dict of per-epoch mean losses. ``on_epoch(epoch, history)``, if
    given, runs after each epoch (used for Lipschitz-vs-epoch curves).
    """
    epochs = check_number("epochs", epochs, low=1, integer=True)
    batch_size = check_number("batch_size", batch_size, low=1, integer=True)
    if batch_size > len(data):
        raise ValueError(f"batch_size must be at most the number of samples ({len(data)}), got {batch_size}")
    steps_per_epoch = len(data) // batch_size
    progress = Progress(epochs * steps_per_epoch, label=label, quiet=quiet)
    history = {}
    step = 0
    try:
        for epoch in range(epochs):
            sums = {}
            for index in minibatches(len(data), batch_size, rng):
                step += 1
                losses = model.step(data[index])
                check_finite_step(model, step, losses)
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + value
                progress.update(1, **losses)
            for key, total in sums.items():
                history.setdefault(key, []).append(total / steps_per_epoch)
            if on_epoch is not None:
                on_epoch(epoch + 1, history)
    finally:
        progress.close()
    history["wall_time_s"] = progress.elapsed
    return history
