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
* its minibatches: each epoch's shuffle is drawn from the model's own stream, as on CPU (and,
  for an SGM, the noise level of each of the epoch's steps, drawn after the shuffle);
* not its latents and noise: they are drawn on the device, from xoroshiro128+ states seeded
  with the model's seed alone (:func:`npgen.kernels.cuda.rng_states`), so a run is the same
  whatever R it is batched with, but not the CPU run of that seed.

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


def replica_bytes(model, batch_size, n_data):
    """An upper estimate of the device bytes one replica of ``model`` takes in
    :func:`fit_many`: for each network its parameters, gradients and Adam's two moments, its
    per-replica state (``state_size``: spectral norm's, a score network's noise-level rows) and
    its workspace (``workspace_size``) for the rows it runs (B, and for a GAN's discriminator
    3B: the generator's B fakes and its own 2B rows; with the tangent path for a generator with
    the gradient penalty); plus the training data, the batch buffers, an SGM's per-level
    features and the RNG states."""
    itemsize = np.dtype(model.dtype).itemsize
    if isinstance(model, SGM):
        net = model.score
        total = (n_data + 4 * net.n_params + net.workspace_size(batch_size) + net.state_size()
                 + model.sigmas.size * (FEATURES + 1) + 4 * batch_size)
        return itemsize * total + 8 * n_data + 16 * 64
    total = n_data * model.data_dim + 8 * batch_size * (model.latent_dim + model.data_dim + 2)
    for name, net in model.networks().items():
        rows = 3 * batch_size if name == "discriminator" else batch_size
        tangents = name == "generator" and model.gp_lipschitz is not None
        total += 4 * net.n_params + net.state_size() + net.workspace_size(rows, tangents)
    return itemsize * total + 8 * n_data + 16 * 64


class Lockstep:
    """R models trained in lockstep: one model of R replicas (``replicas_of``) on the device,
    whose own step (:meth:`npgen.GAN._step`, :meth:`npgen.VAE._step`, :meth:`npgen.SGM._step`)
    takes each minibatch, gathered on the device from the replicas' shuffles. What
    :func:`fit_many` runs, and what bench/gpu.py times."""

    def __init__(self, models, ck, batch_size):
        self.models, self.ck = models, ck
        self.model = type(models[0]).replicas_of(models, ck.BACKEND_NAME)
        first = models[0]
        data_dim = getattr(first, "data_dim", 1)
        self.batch = ck.zeros((len(models), batch_size, data_dim), first.dtype)
        self.levels = None

    def start_epoch(self, steps):
        """Each model draws what an epoch of ``steps`` steps needs beyond its shuffle: an SGM,
        the noise level of each step (after the shuffle, from its own stream)."""
        if isinstance(self.model, SGM):
            L = self.model.sigmas.size
            self.levels = self.ck.to_device(np.stack([m.rng.integers(L, size=steps)
                                                      for m in self.models]))

    def step(self, data, order, start):
        """One step on the rows order[:, start:start + B] of data; returns the losses on the
        host, {name: (R,)}."""
        B = self.batch.shape[1]
        self.ck.gather_rows(data, order, start, self.batch, 0, B)
        levels = () if self.levels is None else (self.levels, start // B)
        return self.model._read_losses(self.model._step(self.batch, *levels), B)

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

    Each replica takes the steps ``model.fit(data, epochs, batch_size)`` would (the same
    shuffles and, for an SGM, the same standardization; latents and noise drawn on the device,
    see the module doc). ``on_epoch``, if given, is a list of one callable per model, called
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
    batched = Lockstep(models, ck, batch_size)
    label = type(models[0]).__name__
    histories = [{} for _ in models]
    outcome = [None] * len(models)
    starts = [{} for _ in models]
    steps_per_epoch = n // batch_size
    step = 0
    for epoch in range(epochs):
        order = ck.to_device(np.stack([model.rng.permutation(n) for model in models]))
        batched.start_epoch(steps_per_epoch)
        sums = [{} for _ in models]
        for s in range(steps_per_epoch):
            step += 1
            losses = batched.step(data, order, s * batch_size)
            for r, model in enumerate(models):
                if outcome[r] is not None:
                    continue
                mine = {name: float(values[r]) for name, values in losses.items()}
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


