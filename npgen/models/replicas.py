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
from ..nn import Adam
from ..nn.score import FEATURES, sinusoidal_features
from .gan import GAN, PENALTY_WEIGHT
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


class _BatchedModel:
    """What the batched models share: the device copies of the networks named NETWORKS (the
    push-forward network first, or the score network), one Adam each, and the replicas' RNG
    states."""

    NETWORKS = ()

    def __init__(self, models, ck):
        self.models, self.ck, self.R = models, ck, len(models)
        first = models[0]
        self.networks = [self.device_network([getattr(m, name) for m in models])
                         for name in self.NETWORKS]
        self.optimizers = [Adam(net, first.lr, first.betas) for net in self.networks]
        self.states = ck.rng_states([m.seed for m in models])

    def start_epoch(self, steps):
        """Draw from each model's stream what an epoch of ``steps`` steps needs beyond its
        shuffle (nothing, but for the SGM)."""

    def device_network(self, nets):
        """R copies of the networks ``nets`` on the device, one a replica."""
        return type(nets[0]).replicas_of(nets, self.ck.BACKEND_NAME)

    def copy_back(self, names=None):
        """Copy the device weights of the networks ``names`` (default: all) into the models."""
        for name, net in zip(self.NETWORKS, self.networks):
            if names is None or name in names:
                net.copy_to([getattr(model, name) for model in self.models])


class BatchedGAN(_BatchedModel):
    """The GAN step of :class:`npgen.GAN` (generator first, BCE, with or without the
    generator's gradient penalty) on R replicas at once: the step :func:`fit_many` takes, and
    what bench/gpu.py times."""

    NETWORKS = ("generator", "discriminator")

    def __init__(self, models, ck, batch_size):
        super().__init__(models, ck)
        self.generator, self.discriminator = self.networks
        first = models[0]
        R, B, dt = self.R, batch_size, first.dtype
        self.z = ck.to_device(np.zeros((R, B, first.latent_dim), dt))
        self.ones = ck.to_device(np.ones((R, B, 1), dt))
        self.grad_logits = ck.to_device(np.zeros((R, B, 1), dt))
        self.real_and_fake = ck.to_device(np.zeros((R, 2 * B, first.data_dim), dt))
        self.labels = ck.to_device(np.concatenate([np.ones((R, B, 1), dt),
                                                   np.zeros((R, B, 1), dt)], axis=1))
        self.grad_logits_both = ck.to_device(np.zeros((R, 2 * B, 1), dt))
        self.same_rows = ck.to_device(np.tile(np.arange(B), (R, 1)))
        self.loss = ck.to_device(np.zeros(R))
        self.penalized = first.gp_lipschitz is not None
        if self.penalized:
            self.penalty_targets = ck.to_device(np.array([m.gp_lipschitz for m in models], float))
            self.unit_tangent = ck.to_device(np.ones((R, B, first.latent_dim), dt))
            self.grad_tangent = ck.to_device(np.zeros((R, B, first.data_dim), dt))
            self.penalty = ck.to_device(np.zeros(R))

    def step(self, data, order, start):
        """One generator and one discriminator step on the rows order[:, start:start + B] of
        data; returns {'generator': (R,), ['penalty': (R,),] 'discriminator': (R,)} losses on
        the host."""
        ck, G, D = self.ck, self.generator, self.discriminator
        ck.standard_normal(self.states, self.z)
        if not self.penalized:
            fake = G._forward(self.z)
        else:
            fake, tangent = G._jvp(self.z, self.unit_tangent)
        ck.bce_with_logits(D._forward(fake), self.ones, self.grad_logits, self.loss)
        losses = {"generator": ck.to_host(self.loss)}
        grad_fake = D._backward(self.grad_logits, True, param_grads=False)
        G.zero_grad()
        if not self.penalized:
            G._backward(grad_fake, False)
        else:
            ck.gradient_penalty(tangent, self.penalty_targets, PENALTY_WEIGHT, self.grad_tangent,
                                self.penalty)
            losses["penalty"] = ck.to_host(self.penalty)
            G._jvp_backward(grad_fake, self.grad_tangent, need_grad_in=False)
        self.optimizers[0].step()
        ck.standard_normal(self.states, self.z)
        B = self.z.shape[1]
        ck.gather_rows(data, order, start, self.real_and_fake, 0, B)
        ck.gather_rows(G._forward(self.z), self.same_rows, 0, self.real_and_fake, B, B)
        logits = D._forward(self.real_and_fake)
        ck.bce_with_logits(logits, self.labels, self.grad_logits_both, self.loss)
        losses["discriminator"] = ck.to_host(self.loss)
        D.zero_grad()
        D._backward(self.grad_logits_both, False)
        self.optimizers[1].step()
        return losses

class BatchedVAE(_BatchedModel):
    """The VAE step of :class:`npgen.VAE` on R replicas at once: one Adam step of encoder and
    decoder on the summed negative ELBO, with fresh eps; losses divided by the batch size."""

    NETWORKS = ("decoder", "encoder")

    def __init__(self, models, ck, batch_size):
        super().__init__(models, ck)
        self.decoder, self.encoder = self.networks
        first = models[0]
        self.kl_power = 1 if first.kl == "correct" else 2
        self.variance = first.decoder_variance
        R, B, p, d, dt = self.R, batch_size, first.latent_dim, first.data_dim, first.dtype
        self.x, self.residual = (ck.to_device(np.zeros((R, B, d), dt)) for _ in range(2))
        self.eps, self.z, self.std = (ck.to_device(np.zeros((R, B, p), dt)) for _ in range(3))
        self.grad_code = ck.to_device(np.zeros((R, B, 2 * p), dt))
        self.kl, self.reconstruction = ck.to_device(np.zeros(R)), ck.to_device(np.zeros(R))

    def step(self, data, order, start):
        """One step on the rows order[:, start:start + B] of data; returns {'loss',
        'reconstruction', 'kl'}: (R,) per-sample losses on the host."""
        ck, E, D = self.ck, self.encoder, self.decoder
        B = self.x.shape[1]
        ck.standard_normal(self.states, self.eps)
        ck.gather_rows(data, order, start, self.x, 0, B)
        code = E._forward(self.x)
        ck.vae_reparameterize(code, self.eps, self.kl_power, self.z, self.std, self.kl)
        ck.vae_residual(D._forward(self.z), self.x, self.variance, self.residual,
                        self.reconstruction)
        D.zero_grad()
        grad_z = D._backward(self.residual, True)
        ck.vae_code_gradient(code, self.eps, self.std, grad_z, self.kl_power, self.grad_code)
        E.zero_grad()
        E._backward(self.grad_code, False)
        for optimizer in self.optimizers:
            optimizer.step()
        reconstruction, kl = ck.to_host(self.reconstruction) / B, ck.to_host(self.kl) / B
        return {"loss": reconstruction + kl, "reconstruction": reconstruction, "kl": kl}


class BatchedSGM(_BatchedModel):
    """The SGM step of :class:`npgen.SGM` on R replicas at once: each replica at the noise
    level its model drew for the step, one Adam step on the denoising score-matching sum;
    losses divided by the batch size (its module doc has the math)."""

    NETWORKS = ("score",)

    def __init__(self, models, ck, batch_size):
        super().__init__(models, ck)
        first = models[0]
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
        score = self.networks[0]._forward(self.noisy, self.features)
        ck.score_matching_loss(score, self.eps, self.sigma.reshape(self.R), self.weight_power,
                               self.grad_score, self.loss)
        self.networks[0]._backward(self.grad_score, need_grad_x=False)
        self.optimizers[0].step()
        return {"loss": ck.to_host(self.loss) / B}


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
    batched = {GAN: BatchedGAN, VAE: BatchedVAE, SGM: BatchedSGM}[type(models[0])](
        models, ck, batch_size)
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
            batched.copy_back(batched.NETWORKS[:1])
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


