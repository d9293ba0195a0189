"""Batched replicas: R runs of one architecture trained in lockstep on the cuda backend.

The paper's runs are small and independent: many seeds and many values of m, one
architecture. :func:`fit_many` trains R of them at once. Every network becomes R copies on the
device, every array gains a leading replica axis, every product is one batched product and
every elementwise pass one launch (:mod:`npgen.kernels.cuda`).

What a replica shares with the same model trained alone on CPU, and what not:

* its initialization: the replicas are ordinary CPU models (``GAN(seed=...)``, ``VAE(...)``,
  ``SGM(...)``), whose weights
  are copied to the device, and copied back into them when training ends, so that a batched
  run is saved, sampled and measured exactly like a CPU run;
* its minibatches: each epoch's shuffle is drawn from the model's own stream, as on CPU (and,
  for an SGM, the noise level of each of the epoch's steps, drawn after the shuffle);
* not its latents and noise: they are drawn on the device, from xoroshiro128+ states seeded
  with the model's seed alone (:func:`npgen.kernels.cuda.rng_states`), so a run is the same
  whatever R it is batched with, but not the CPU run of that seed.

Every replica keeps its own losses. A replica whose loss stops being finite or runs away
(:data:`npgen.models.training.RUNAWAY_FACTOR`) is reported failed with the sentence a CPU run
would raise; in lockstep it cannot stop alone, and the others are not affected by it.

Batched training takes the models of the univariate study: GANs and VAEs with plain, resnet or
densenet networks (any depth; a GAN's generator with or without spectral norm and with or
without the gradient penalty, BCE loss, generator step first) and SGMs (either weighting, any
noise levels). Other models and options (a GAN's hinge loss, the discriminator step first) are
refused in one sentence by :func:`check_batchable`.
"""

import time

import numpy as np

from .. import kernels
from ..util.checks import check_number
from ..nn import Adam, ScoreNetwork
from ..nn.score import FEATURES, sinusoidal_features
from .gan import GAN
from .sgm import SGM, WEIGHT_POWERS
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
        if isinstance(model, GAN) and (model.loss != "bce" or model.discriminator_first):
            raise ValueError("fit_many trains GANs with the BCE loss, generator step first;"
                             f" got loss={model.loss!r},"
                             f" discriminator_first={model.discriminator_first!r}")
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
    """R GANs or VAEs trained in lockstep: one model of R replicas (``replicas_of``) on the
    device, whose own step (:meth:`npgen.GAN._step`, :meth:`npgen.VAE._step`) takes each
    minibatch, gathered on the device from the replicas' shuffles. What :func:`fit_many` runs,
    and what bench/gpu.py times."""

    def __init__(self, models, ck, batch_size):
        self.models, self.ck = models, ck
        self.model = type(models[0]).replicas_of(models, ck.BACKEND_NAME)
        first = models[0]
        self.batch = ck.zeros((len(models), batch_size, first.data_dim), first.dtype)

    def start_epoch(self, steps):
        """Draw what an epoch of ``steps`` steps needs beyond the shuffles: nothing."""

    def step(self, data, order, start):
        """One step on the rows order[:, start:start + B] of data; returns the losses on the
        host, {name: (R,)}."""
        B = self.batch.shape[1]
        self.ck.gather_rows(data, order, start, self.batch, 0, B)
        return self.model._read_losses(self.model._step(self.batch), B)

    def copy_back(self, push_forward_only=False):
        """Copy the device weights (of the push-forward network only, if asked) into the models."""
        if push_forward_only:
            self.model.push_forward_network.copy_to([m.push_forward_network for m in self.models])
        else:
            self.model.copy_to(self.models)


class BatchedSGM:
    """The SGM step of :class:`npgen.SGM` on R replicas at once: each replica at the noise
    level its model drew for the step, one Adam step on the denoising score-matching sum;
    losses divided by the batch size (its module doc has the math)."""

    def __init__(self, models, ck, batch_size):
        self.models, self.ck, self.R = models, ck, len(models)
        first = models[0]
        self.score = ScoreNetwork.replicas_of([m.score for m in models], ck.BACKEND_NAME)
        self.optimizer = Adam(self.score, first.lr, first.betas)
        self.states = ck.rng_states([m.seed for m in models])
        R, B, L, dt = self.R, batch_size, first.sigmas.size, first.dtype
        self.weight_power = WEIGHT_POWERS[first.weighting]
        table = np.array([sinusoidal_features(sigma) for sigma in first.sigmas], dt)
        self.features_by_level = ck.to_device(np.broadcast_to(table, (R, L, FEATURES)))
        self.sigma_by_level = ck.to_device(np.broadcast_to(first.sigmas[:, None], (R, L, 1)))
        self.x, self.eps, self.noisy, self.grad_score = (
            ck.to_device(np.zeros((R, B, 1), dt)) for _ in range(4))
        self.features = ck.to_device(np.zeros((R, 1, FEATURES), dt))
        self.sigma = ck.to_device(np.zeros((R, 1, 1)))
        self.loss = ck.to_device(np.zeros(R))
        self.levels = None

    def start_epoch(self, steps):
        """Each model draws the noise level of each of the epoch's steps (after its shuffle)."""
        L = self.models[0].sigmas.size
        self.levels = self.ck.to_device(np.stack([m.rng.integers(L, size=steps)
                                                  for m in self.models]))

    def step(self, data, order, start):
        """One step on the rows order[:, start:start + B] of the standardized data, at the
        levels drawn for step start // B of the epoch; returns {'loss': (R,)} on the host."""
        ck, B = self.ck, self.x.shape[1]
        ck.gather_rows(data, order, start, self.x, 0, B)
        ck.gather_rows(self.features_by_level, self.levels, start // B, self.features, 0, 1)
        ck.gather_rows(self.sigma_by_level, self.levels, start // B, self.sigma, 0, 1)
        ck.standard_normal(self.states, self.eps)
        ck.score_matching_noisy(self.x, self.eps, self.sigma.reshape(self.R), self.noisy)
        score = self.score._forward(self.noisy, self.features)
        ck.score_matching_loss(score, self.eps, self.sigma.reshape(self.R), self.weight_power,
                               self.grad_score, self.loss)
        self.score._backward(self.grad_score, need_grad_x=False)
        self.optimizer.step()
        return {"loss": ck.to_host(self.loss) / B}

    def copy_back(self, push_forward_only=False):
        """Copy the device weights into the models."""
        self.score.copy_to([m.score for m in self.models])


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
    batched = (BatchedSGM if isinstance(models[0], SGM) else Lockstep)(models, ck, batch_size)
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


