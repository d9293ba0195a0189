"""Batched replicas: grouping R runs of one architecture to train in lockstep on the cuda backend.

The paper's runs are small and independent: many seeds and many values of m, one
architecture. :func:`fit_many` trains R of them at once. There is no second implementation for
it: every network and every model's step is written once over a leading replica axis
(:mod:`npgen.nn.layout`, :mod:`npgen.models.replicated`), so the R models become one model of R
replicas on the device (``replicas_of``) whose own step runs, every product one batched product
and every elementwise pass one launch (:mod:`npgen.kernels.cuda`). What this module adds is the
batching alone: which models may share a batch (:func:`check_batchable`), how many bytes a
replica takes (:func:`replica_bytes`), and the training loop (:class:`Lockstep`, :func:`fit_many`).

What a replica shares with the same model trained alone on CPU, and what not:

* its initialization: the replicas are ordinary CPU models (``GAN(seed=...)``, ``VAE(...)``,
  ``SGM(...)``), whose weights are copied to the device, and copied back into them when
  training ends, so that a batched run is saved, sampled and measured exactly like a CPU run;
* for an SGM, the noise level of each step, drawn from the model's own stream as on CPU;
* not its shuffles, latents and noise: they are drawn on the device, from the model's seed
  alone, so a run is the same whatever R it is batched with, but not the CPU run of that seed.
  Epoch e visits the rows in the order :func:`npgen.kernels.numpy_ref.shuffle_order` (seed, e)
  (:func:`npgen.kernels.cuda.shuffle_orders`), and latents and noise come from xoroshiro128+
  states (:func:`npgen.kernels.cuda.rng_states`).

Every replica keeps its own losses. A replica whose loss stops being finite or runs away
(:data:`npgen.models.training.RUNAWAY_FACTOR`) is reported failed with the sentence a CPU run
would raise; in lockstep it cannot stop alone, and the others are not affected by it.

Batched training takes the GANs, VAEs and SGMs of the univariate study, with any of their
options but a latent law other than the Gaussian (drawn on the device); other models are
refused in one sentence by :func:`check_batchable`.
"""

import time

import numpy as np

from .. import kernels
from ..util.checks import check_number
from ..nn.score import FEATURES
from .gan import GAN
from .sgm import SGM
from .training import TrainingDiverged, check_losses
from .vae import VAE

#: The models fit_many trains.
BATCHABLE = (GAN, VAE, SGM)


def check_batchable(models):
    """Raise ValueError (one sentence) unless ``models`` are untrained GANs, VAEs or SGMs that
    fit_many can train together: one kind, one architecture and one set of hyperparameters
    (seeds differ freely, and so do the targets of GANs that all have the gradient penalty)."""
    if not isinstance(models, (list, tuple)) or not models:
        raise ValueError(f"models must be a non-empty list of GANs, VAEs or SGMs, got {models!r}")
    for model in models:
        if not isinstance(model, BATCHABLE):
            raise ValueError("fit_many trains the GANs, VAEs and SGMs of the univariate study; got"
                             f" a {type(model).__name__} (train it on CPU with its fit)")
        if isinstance(model, SGM):
            if model.mean is not None:
                raise ValueError("fit_many trains untrained models; an SGM was already trained")
            continue
        if model.latent != "gaussian":
            raise ValueError("fit_many draws Gaussian latents on the device; got"
                             f" latent={model.latent!r} (train it on CPU with its fit)")
        if model.trained:
            raise ValueError("fit_many trains untrained models; a model was already trained")
    kind = type(models[0])
    shape = _shared_settings(models[0])
    for model in models[1:]:
        if type(model) is not kind:
            raise ValueError(f"models batched together must be of one kind, got {kind.__name__}"
                             f" and {type(model).__name__}")
        other = _shared_settings(model)
        if other != shape:
            differ = sorted(k for k in shape if shape[k] != other.get(k))
            raise ValueError(f"models batched together must share every setting but the seed"
                             f" (and the penalty's target); these differ: {differ}")
    return models


def _shared_settings(model):
    """The settings the models of one batch share: the configuration but the seed and, of a
    GAN with the gradient penalty, its target (only whether it has one)."""
    settings = {key: value for key, value in model.config().items() if key != "seed"}
    if settings.get("gp_lipschitz") is not None:
        settings["gp_lipschitz"] = "any target"
    return settings


def step_noise(model):
    """(fills, width): the device noise one step of ``model`` draws, ``fills`` arrays of
    (batch, width) rows: a GAN's latents for its generator's and its discriminator's steps, a
    VAE's eps, an SGM's noise on its rows."""
    if isinstance(model, SGM):
        return 1, 1
    return (2 if isinstance(model, GAN) else 1), model.latent_dim


def replica_bytes(model, batch_size, n_data):
    """An upper estimate of the device bytes one replica of ``model`` takes in
    :func:`fit_many`: for each network its parameters, gradients and Adam's two moments, its
    per-replica state (``state_size``: spectral norm's, a score network's noise-level rows) and
    its workspace (``workspace_size``) for the rows it runs (B, and for a GAN's discriminator
    3B: the generator's B fakes and its own 2B rows; with the tangent path for a generator with
    the gradient penalty); plus the training data, the batch buffers, an SGM's per-level
    features, the epoch's losses, its orders and their sort keys, its noise (drawn ahead) and
    the RNG states."""
    itemsize = np.dtype(model.dtype).itemsize
    fills, width = step_noise(model)
    # The epoch's losses (at most 3 float64 a step) and its noise.
    epoch_arrays = 8 * 3 * (n_data // batch_size) + itemsize * fills * width * n_data
    if isinstance(model, SGM):
        net = model.score
        total = (n_data + 4 * net.n_params + net.workspace_size(batch_size) + net.state_size()
                 + model.sigmas.size * (FEATURES + 1) + 4 * batch_size)
        return itemsize * total + 16 * n_data + 16 * 64 + epoch_arrays
    total = n_data * model.data_dim + 8 * batch_size * (model.latent_dim + model.data_dim + 2)
    for name, net in model.networks().items():
        rows = 3 * batch_size if name == "discriminator" else batch_size
        tangents = name == "generator" and model.gp_lipschitz is not None
        total += 4 * net.n_params + net.state_size() + net.workspace_size(rows, tangents)
    return itemsize * total + 16 * n_data + 16 * 64 + epoch_arrays


class Lockstep:
    """R models trained in lockstep on ``n_rows`` rows each: one model of R replicas
    (``replicas_of``) on the device, whose own step (:meth:`npgen.GAN._step`,
    :meth:`npgen.VAE._step`, :meth:`npgen.SGM._step`) takes each minibatch, gathered on the
    device from the replicas' shuffles. What :func:`fit_many` runs, and what bench/gpu.py times.

    A step waits for nothing on the host and sends nothing to it: each epoch's orders and its
    steps' noise are drawn on the device when it starts (:func:`npgen.kernels.cuda.shuffle_orders`,
    :meth:`npgen.models.noise.DeviceNoise.draw_ahead`), and each loss kernel writes its
    (R,) losses straight into the epoch's row of a device array (losses, steps, R), which
    :meth:`epoch_losses` reads in one copy when the epoch ends.
    """

    def __init__(self, models, ck, batch_size, n_rows):
        self.models, self.ck = models, ck
        self.model = type(models[0]).replicas_of(models, ck.BACKEND_NAME)
        first, R = models[0], len(models)
        self.batch = ck.zeros((R, batch_size, getattr(first, "data_dim", 1)), first.dtype)
        self.names = self.model._loss_names()
        self.steps = n_rows // batch_size
        self.history = ck.zeros((len(self.names), self.steps, R), np.float64)
        self.seeds = ck.to_device(np.array([model.seed for model in models], np.uint64))
        self.keys = ck.zeros((R, n_rows), np.uint64)
        self.order = ck.zeros((R, n_rows), np.int64)
        self.epoch = -1
        self.levels = None
        fills, width = step_noise(first)
        self.noise = (fills * self.steps, (batch_size, width), first.dtype)

    def start_epoch(self):
        """Draw the next epoch's orders and noise on the device, and let each model draw what
        the epoch needs beyond them: an SGM, the noise level of each step (from its own
        stream)."""
        self.epoch += 1
        self.ck.shuffle_orders(self.seeds, self.epoch, self.keys, self.order)
        self.model.noise.draw_ahead(*self.noise)
        if isinstance(self.model, SGM):
            L = self.model.sigmas.size
            self.levels = self.ck.to_device(np.stack([m.rng.integers(L, size=self.steps)
                                                      for m in self.models]))

    def step(self, data, start):
        """One step on the rows order[:, start:start + B] of data, step start // B of the
        epoch; its losses go to that step's row of the epoch's losses."""
        B = self.batch.shape[1]
        losses = self.model._buffers(B).losses
        for j, name in enumerate(self.names):
            losses[name] = self.history[j, start // B]
        self.ck.gather_rows(data, self.order, start, self.batch, 0, B)
        self.model._step(self.batch, *(() if self.levels is None else (self.levels, start // B)))

    def epoch_losses(self):
        """The epoch's losses on the host, in one copy, as the model reports them:
        {name: (steps, R)}."""
        host = self.ck.to_host(self.history)
        return self.model._report_losses(dict(zip(self.names, host)), self.batch.shape[1])

    def copy_back(self, push_forward_only=False):
        """Copy the device weights (of the push-forward network only, if asked) into the models."""
        if push_forward_only and not isinstance(self.model, SGM):
            self.model.push_forward_network.copy_to([m.push_forward_network for m in self.models])
        else:
            self.model.copy_to(self.models)


def fit_many(models, datasets, epochs, batch_size, on_epoch=None, backend="cuda"):
    """Train ``models`` (untrained GANs, VAEs or SGMs of one architecture, see
    :func:`check_batchable`) on
    ``datasets`` (one (n, data_dim) array each, all of one n) in lockstep on ``backend``.

    Each replica takes the steps ``model.fit(data, epochs, batch_size)`` would (for an SGM
    with the same standardization and noise levels; shuffles, latents and noise drawn on the
    device, see the module doc). ``on_epoch``, if given, is a list of one callable per model, called
    as ``on_epoch[r](epoch, history)`` after each epoch with the model's push-forward (or
    score) network holding that epoch's weights. When training ends the weights are copied
    back into the models, which are then trained CPU models.

    Returns one entry per model: its history (as the model's ``fit`` returns it, with the
    batch's ``wall_time_s``) or, for a replica whose training diverged, the
    :class:`npgen.models.training.TrainingDiverged` it would have raised alone (that model
    stays untrained).
    """
    models = list(check_batchable(models))
    epochs = check_number("epochs", epochs, low=1, integer=True)
    batch_size = check_number("batch_size", batch_size, low=1, integer=True)
    if not isinstance(datasets, (list, tuple)) or len(datasets) != len(models):
        raise ValueError(f"datasets must be a list of one array per model ({len(models)}),"
                         f" got {type(datasets).__name__}")
    arrays, standardizations = zip(*(model.training_data(d) for model, d in zip(models, datasets)))
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("datasets batched together must have one number of rows, got"
                         f" {sorted({len(a) for a in arrays})}")
    if batch_size > n:
        raise ValueError(f"batch_size must be at most the number of samples ({n}), got {batch_size}")
    if on_epoch is not None and (len(on_epoch) != len(models) or not all(map(callable, on_epoch))):
        raise ValueError("on_epoch must be a list of one function on_epoch(epoch, history) per model")
    ck = kernels.get_replica_backend(backend)
    start_time = time.perf_counter()
    data = ck.to_device(np.stack(arrays))
    batched = Lockstep(models, ck, batch_size, n)
    label = type(models[0]).__name__
    histories = [{} for _ in models]
    outcome = [None] * len(models)
    starts = [{} for _ in models]
    steps_per_epoch = n // batch_size
    step = 0
    for epoch in range(epochs):
        batched.start_epoch()
        for s in range(steps_per_epoch):
            batched.step(data, s * batch_size)
        losses = batched.epoch_losses()
        sums = [{} for _ in models]
        for s in range(steps_per_epoch):
            step += 1
            for r, model in enumerate(models):
                if outcome[r] is not None:
                    continue
                mine = {name: float(values[s, r]) for name, values in losses.items()}
                try:
                    check_losses(model, step, mine, starts[r], label)
                except TrainingDiverged as err:
                    outcome[r] = err
                for name, value in mine.items():
                    sums[r][name] = sums[r].get(name, 0.0) + value
        for r in range(len(models)):
            for name, total in sums[r].items():
                histories[r].setdefault(name, []).append(total / steps_per_epoch)
        if on_epoch is not None:
            batched.copy_back(push_forward_only=True)
            for r in range(len(models)):
                if outcome[r] is None:
                    on_epoch[r](epoch + 1, histories[r])
    batched.copy_back()
    elapsed = time.perf_counter() - start_time
    for r, model in enumerate(models):
        if outcome[r] is None:
            if isinstance(model, SGM):  # an SGM is trained once it has its standardization
                model.mean, model.std = standardizations[r]
            else:
                model.trained = True
            histories[r]["wall_time_s"] = elapsed
            outcome[r] = histories[r]
    return outcome


