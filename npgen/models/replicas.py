"""Batched replicas: R runs of one architecture trained in lockstep on the cuda backend.

The paper's runs are small and independent: many seeds and many values of m, one
architecture. :func:`fit_many` trains R of them at once. Every network becomes R copies on the
device, every array gains a leading replica axis, every product is one batched product and
every elementwise pass one launch (:mod:`npgen.kernels.cuda`).

What a replica shares with the same model trained alone on CPU, and what not:

* its initialization: the replicas are ordinary CPU models (``GAN(seed=...)``, ``VAE(...)``), whose weights
  are copied to the device, and copied back into them when training ends, so that a batched
  run is saved, sampled and measured exactly like a CPU run;
* its minibatches: each epoch's shuffle is drawn from the model's own stream, as on CPU;
* not its latents: they are drawn on the device, from xoroshiro128+ states seeded with the
  model's seed alone (:func:`npgen.kernels.cuda.rng_states`), so a run is the same whatever R
  it is batched with, but not the CPU run of that seed.

Every replica keeps its own losses. A replica whose loss stops being finite or runs away
(:data:`npgen.models.training.RUNAWAY_FACTOR`) is reported failed with the sentence a CPU run
would raise; in lockstep it cannot stop alone, and the others are not affected by it.

Batched training takes the GANs and VAEs of the univariate study with plain networks (any
depth; a GAN's generator with or without spectral norm, BCE loss, generator step first).
Other models and options are refused in one sentence by :func:`check_batchable`.
"""

import math
import time

import numpy as np

from .. import kernels
from ..util.checks import check_number
from .gan import GAN
from .training import TrainingDiverged, check_losses
from .vae import VAE


def check_batchable(models):
    """Raise ValueError (one sentence) unless ``models`` are untrained GANs or VAEs that
    fit_many can train together: one kind, one architecture and one set of hyperparameters
    (seeds differ freely)."""
    if not isinstance(models, (list, tuple)) or not models:
        raise ValueError(f"models must be a non-empty list of GANs or VAEs, got {models!r}")
    for model in models:
        if not isinstance(model, (GAN, VAE)):
            raise ValueError("fit_many trains the GANs and VAEs of the univariate study; got a"
                             f" {type(model).__name__} (train it on CPU with its fit)")
        if isinstance(model, GAN) and (model.gp_lipschitz is not None or model.loss != "bce"
                                       or model.discriminator_first):
            raise ValueError("fit_many trains GANs with the BCE loss, generator step first"
                             f" and no gradient penalty; got gp_lipschitz={model.gp_lipschitz!r},"
                             f" loss={model.loss!r}, discriminator_first={model.discriminator_first!r}")
        if model.skip != "plain":
            raise ValueError(f"fit_many trains plain networks (skip='plain'); got skip={model.skip!r}")
        if model.trained:
            raise ValueError("fit_many trains untrained models; a model was already trained")
    kind = type(models[0])
    shape = {key: value for key, value in models[0].config().items() if key != "seed"}
    for model in models[1:]:
        if type(model) is not kind:
            raise ValueError(f"models batched together must be of one kind, got {kind.__name__}"
                             f" and {type(model).__name__}")
        other = {key: value for key, value in model.config().items() if key != "seed"}
        if other != shape:
            differ = sorted(k for k in shape if shape[k] != other.get(k))
            raise ValueError(f"models batched together must share every setting but the seed;"
                             f" these differ: {differ}")
    return models


def replica_bytes(model, batch_size, n_data):
    """An upper estimate of the device bytes one replica of ``model`` (a GAN or a VAE) takes
    in :func:`fit_many`: for each network its parameters, gradients and Adam's two moments,
    with spectral norm the normalized weights and their gradients, and per layer the z, a,
    grad_z and node-gradient arrays of its batch (2B rows for a GAN's discriminator, B for the
    other networks); plus the training data, the batch buffers and the RNG states."""
    itemsize = np.dtype(model.dtype).itemsize
    total = n_data * model.data_dim + 8 * batch_size * (model.latent_dim + model.data_dim + 2)
    for name, net in model.networks().items():
        rows = 2 * batch_size if name == "discriminator" else batch_size
        weights = sum(o * i for o, i in zip(net.sizes[1:], net.sizes[:-1]))
        total += 4 * net.n_params + (2 * weights if net.spectral_norm else 0)
        total += rows * (3 * sum(net.sizes[1:]) + sum(net.sizes))
    return itemsize * total + 8 * n_data + 16 * 64


class _DeviceNetwork:
    """R copies of one plain MLP on the device.

    The flat parameter buffer holds layer after layer, each with the replica axis inside:
    W_0 (R, out, in), b_0 (R, out), W_1, ... so that a layer's weights are one contiguous
    (R, out, in) array and one Adam launch updates every replica's whole network.
    """

    def __init__(self, nets, ck):
        first = nets[0]
        self.ck, self.R, self.nets = ck, len(nets), nets
        self.sizes, self.codes, self.slope = first.sizes, first.activation_codes, first.slope
        self.spectral_norm, self.dtype = first.spectral_norm, first.dtype
        self.layout = [((out, fan_in), (out,)) for out, fan_in in
                       zip(first.sizes[1:], first.sizes[:-1])]
        self.params = ck.to_device(self._gather([net.params for net in nets]))
        self.grads = ck.to_device(np.zeros(self.params.shape, self.dtype))
        self.weights, self.biases = self._views(self.params)
        self.weight_grads, self.bias_grads = self._views(self.grads)
        if self.spectral_norm:
            R = self.R
            self.sn_u = [ck.to_device(np.stack([net.sn_u[k] for net in nets]))
                         for k in range(len(self.layout))]
            self.sn_v = [ck.to_device(np.stack([net.sn_v[k] for net in nets]))
                         for k in range(len(self.layout))]
            self.sn_weights = [ck.to_device(np.zeros((R, *w), self.dtype)) for w, _ in self.layout]
            self.sn_weight_grads = [ck.to_device(np.zeros((R, *w), self.dtype))
                                    for w, _ in self.layout]
            self.sn_sigma = [ck.to_device(np.ones(R)) for _ in self.layout]
        self._workspaces = {}

    def _segments(self):
        """(offset in one network's flat buffer, shape) of each weight and bias, in order."""
        offset = 0
        for w_shape, b_shape in self.layout:
            for shape in (w_shape, b_shape):
                yield offset, shape
                offset += math.prod(shape)

    def _gather(self, flats):
        """One host buffer in the device layout from the replicas' flat CPU buffers."""
        parts = [np.stack([flat[o:o + math.prod(s)] for flat in flats]).ravel()
                 for o, s in self._segments()]
        return np.concatenate(parts).astype(self.dtype)

    def _views(self, buffer):
        weights, biases, start = [], [], 0
        for index, (_, shape) in enumerate(self._segments()):
            size = self.R * math.prod(shape)
            view = buffer[start:start + size].reshape((self.R, *shape))
            (weights if index % 2 == 0 else biases).append(view)
            start += size
        return weights, biases

    def copy_to_models(self):
        """Write the device weights (and spectral-norm vectors) back into the CPU networks."""
        host = self.ck.to_host(self.params)
        start = 0
        for offset, shape in self._segments():
            size = math.prod(shape)
            block = host[start:start + self.R * size].reshape(self.R, size)
            for r, net in enumerate(self.nets):
                net.params[offset:offset + size] = block[r]
            start += self.R * size
        if self.spectral_norm:
            for k in range(len(self.layout)):
                for vectors, device in (("sn_u", self.sn_u[k]), ("sn_v", self.sn_v[k])):
                    values = self.ck.to_host(device)
                    for r, net in enumerate(self.nets):
                        getattr(net, vectors)[k][...] = values[r]

    def _workspace(self, n):
        if n not in self._workspaces:
            R, dt = self.R, self.dtype
            layers = [(R, n, w) for w in self.sizes[1:]]
            self._workspaces[n] = {
                "z": [self.ck.to_device(np.zeros(s, dt)) for s in layers],
                "a": [self.ck.to_device(np.zeros(s, dt)) for s in layers],
                "grad_z": [self.ck.to_device(np.zeros(s, dt)) for s in layers],
                "grad_node": [self.ck.to_device(np.zeros((R, n, w), dt)) for w in self.sizes],
            }
        return self._workspaces[n]

    def _layer_weight(self, k):
        if not self.spectral_norm:
            return self.weights[k]
        self.ck.spectral_norm_forward(self.weights[k], self.sn_u[k], self.sn_v[k], 1,
                                      self.sn_weights[k], self.sn_sigma[k])
        return self.sn_weights[k]

    def forward(self, x):
        """The training-mode forward pass (one power iteration per spectrally normed layer);
        returns the output, valid until the next call."""
        ws = self._workspace(x.shape[1])
        self._last = (ws, x)
        h = x
        for k in range(len(self.layout)):
            self.ck.linear_forward(h, self._layer_weight(k), self.biases[k], self.codes[k],
                                   self.slope, ws["z"][k], ws["a"][k])
            h = ws["a"][k]
        return h

    def backward(self, grad_out, need_grad_in, param_grads=True):
        """Backward of the last forward: writes (not adds) the parameter gradients when
        param_grads, else only passes the gradient through to the input; returns dL/dx."""
        ws, x = self._last
        for k in reversed(range(len(self.layout))):
            grad_a = grad_out if k == len(self.layout) - 1 else ws["grad_node"][k + 1]
            h = x if k == 0 else ws["a"][k - 1]
            W = self.sn_weights[k] if self.spectral_norm else self.weights[k]
            need_x = k > 0 or need_grad_in
            if not param_grads:
                self.ck.linear_backward_input(W, ws["z"][k], ws["a"][k], grad_a, self.codes[k],
                                              self.slope, ws["grad_z"][k], ws["grad_node"][k])
                continue
            grad_W = self.sn_weight_grads[k] if self.spectral_norm else self.weight_grads[k]
            self.ck.linear_backward(h, W, ws["z"][k], ws["a"][k], grad_a, self.codes[k],
                                    self.slope, ws["grad_z"][k], grad_W, self.bias_grads[k],
                                    ws["grad_node"][k] if need_x else None, False, need_x)
            if self.spectral_norm:
                self.ck.spectral_norm_backward(self.weights[k], self.sn_u[k], self.sn_v[k],
                                               self.sn_sigma[k], grad_W, self.weight_grads[k],
                                               False)
        return ws["grad_node"][0] if need_grad_in else None


class _DeviceAdam:
    """torch.optim.Adam over a device network's flat buffer (every replica in one launch)."""

    def __init__(self, net, lr, betas, eps=1e-8):
        self.net, self.lr, (self.beta1, self.beta2), self.eps = net, lr, betas, eps
        zeros = np.zeros(net.params.shape, net.dtype)
        self.m, self.v = net.ck.to_device(zeros), net.ck.to_device(zeros)
        self.t = 0

    def step(self):
        self.t += 1
        self.net.ck.adam_step(self.net.params, self.net.grads, self.m, self.v, self.t, self.lr,
                              self.beta1, self.beta2, self.eps)


class _BatchedModel:
    """What the batched models share: the device copies of the networks named NETWORKS (the
    push-forward network first), one Adam each, and the replicas' RNG states."""

    NETWORKS = ()

    def __init__(self, models, ck):
        self.models, self.ck, self.R = models, ck, len(models)
        first = models[0]
        self.networks = [_DeviceNetwork([getattr(m, name) for m in models], ck)
                         for name in self.NETWORKS]
        self.optimizers = [_DeviceAdam(net, first.lr, first.betas) for net in self.networks]
        self.states = ck.rng_states([m.seed for m in models])

    def finish(self):
        """Copy every network's weights back into the CPU models."""
        for net in self.networks:
            net.copy_to_models()

    @property
    def push_forward(self):
        return self.networks[0]


class BatchedGAN(_BatchedModel):
    """The GAN step of :class:`npgen.GAN` (generator first, BCE) on R replicas at once: the
    step :func:`fit_many` takes, and what bench/gpu.py times."""

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

    def step(self, data, order, start):
        """One generator and one discriminator step on the rows order[:, start:start + B] of
        data; returns {'generator': (R,), 'discriminator': (R,)} losses on the host."""
        ck, G, D = self.ck, self.generator, self.discriminator
        ck.standard_normal(self.states, self.z)
        logits = D.forward(G.forward(self.z))
        ck.bce_with_logits(logits, self.ones, self.grad_logits, self.loss)
        losses = {"generator": ck.to_host(self.loss)}
        G.backward(D.backward(self.grad_logits, True, param_grads=False), False)
        self.optimizers[0].step()
        ck.standard_normal(self.states, self.z)
        B = self.z.shape[1]
        ck.gather_rows(data, order, start, self.real_and_fake, 0, B)
        ck.gather_rows(G.forward(self.z), self.same_rows, 0, self.real_and_fake, B, B)
        logits = D.forward(self.real_and_fake)
        ck.bce_with_logits(logits, self.labels, self.grad_logits_both, self.loss)
        losses["discriminator"] = ck.to_host(self.loss)
        D.backward(self.grad_logits_both, False)
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
        code = E.forward(self.x)
        ck.vae_reparameterize(code, self.eps, self.kl_power, self.z, self.std, self.kl)
        ck.vae_residual(D.forward(self.z), self.x, self.variance, self.residual,
                        self.reconstruction)
        grad_z = D.backward(self.residual, True)
        ck.vae_code_gradient(code, self.eps, self.std, grad_z, self.kl_power, self.grad_code)
        E.backward(self.grad_code, False)
        for optimizer in self.optimizers:
            optimizer.step()
        reconstruction, kl = ck.to_host(self.reconstruction) / B, ck.to_host(self.kl) / B
        return {"loss": reconstruction + kl, "reconstruction": reconstruction, "kl": kl}


def fit_many(models, datasets, epochs, batch_size, on_epoch=None, backend="cuda"):
    """Train ``models`` (untrained GANs or VAEs of one architecture, see :func:`check_batchable`) on
    ``datasets`` (one (n, data_dim) array each, all of one n) in lockstep on ``backend``.

    Each replica takes the steps ``model.fit(data, epochs, batch_size)`` would (the same
    shuffles; latents and noise drawn on the device, see the module doc). ``on_epoch``, if given, is a
    list of one callable per model, called as ``on_epoch[r](epoch, history)`` after each epoch
    with the model's push-forward network holding that epoch's weights. When training ends
    the weights are copied back into the models, which are then trained CPU models.

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
    arrays = [model._as_array("data", d, model.data_dim) for model, d in zip(models, datasets)]
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
    batched = (BatchedGAN if isinstance(models[0], GAN) else BatchedVAE)(models, ck, batch_size)
    label = type(models[0]).__name__
    histories = [{} for _ in models]
    outcome = [None] * len(models)
    starts = [{} for _ in models]
    steps_per_epoch = n // batch_size
    step = 0
    for epoch in range(epochs):
        order = ck.to_device(np.stack([model.rng.permutation(n) for model in models]))
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
            batched.push_forward.copy_to_models()
            for r in range(len(models)):
                if outcome[r] is None:
                    on_epoch[r](epoch + 1, histories[r])
    batched.finish()
    elapsed = time.perf_counter() - start_time
    for r, model in enumerate(models):
        if outcome[r] is None:
            model.trained = True
            histories[r]["wall_time_s"] = elapsed
            outcome[r] = histories[r]
    return outcome
