"""Generative adversarial network (Goodfellow et al., 2014).

The GAN of the paper's univariate experiments (Section 4.1), with the settings of the published
code (``REFERENCE.md``, "Univariate setting"):

* generator G = :func:`generator_sizes` ([1, 128, 256, 1], leaky ReLU 0.2);
* discriminator D = :func:`discriminator_sizes` ([1, 512, 256, 128, 1], leaky ReLU 0.2),
  every layer spectrally normalized (Miyato et al., 2018). D outputs a logit s = D(x); the
  published code ends with a sigmoid and uses BCELoss on p = sigmoid(s), which is the same
  function as the binary cross-entropy with logits computed here, only evaluated without
  overflow: -log sigmoid(s) = log(1 + exp(-s)) = max(-s, 0) + log(1 + exp(-|s|));
* losses, for a minibatch x_1..x_B and latents z_1..z_B:
      L_G = mean_i BCE(D(G(z_i)), 1) = mean_i -log sigmoid(D(G(z_i)))   (non-saturating)
      L_D = [mean_i BCE(D(x_i), 1) + mean_i BCE(D(G(z_i)), 0)] / 2
* per minibatch one generator step, then one discriminator step with fresh latents;
  Adam, lr 1e-4, betas (0.9, 0.999), for both networks.
"""

import numpy as np

from ..nn.mlp import MLP
from ..util.checks import check_bool, check_choice, check_number
from .push_forward import PushForwardModel, check_hidden_sizes, check_layers, generator_network

#: Weight of the generator gradient penalty is PENALTY_WEIGHT / L^2.
PENALTY_WEIGHT = 10.0
GAN_LOSSES = ("bce", "hinge")
#: The discriminator of the published MNIST code (Section 4.2): an MLP 784 -> 512 -> 256 -> 128
#: -> 1, spectrally normalized (566 000 parameters at d = 784).
MNIST_DISCRIMINATOR_HIDDEN = (512, 256, 128)


def discriminator_sizes(n_layers=3, data_dim=1, base_width=128):
    """Widths of the discriminator that goes with a generator of ``n_layers`` layers.

    The discriminator mirrors the generator: its hidden widths are the generator's in reverse
    order, preceded by one layer twice as wide as the generator's widest, so it has
    n_layers + 1 linear layers:
    [data_dim, 2^(n-1) w, ..., 2w, w, 1] with w = base_width. For n_layers = 3 this is the
    published Linear 1->512, 512->256, 256->128, 128->1; that the discriminator deepens with
    the generator is the published code's, this doubling rule is npgen's.

    >>> discriminator_sizes(3)
    [1, 512, 256, 128, 1]
    >>> discriminator_sizes(2, base_width=8)
    [1, 16, 8, 1]
    """
    n_layers = check_layers(n_layers)
    base_width = check_number("base_width", base_width, low=1, integer=True)
    hidden = [base_width * 2 ** k for k in reversed(range(n_layers))]
    return [data_dim] + hidden + [1]


class _GANBuffers:
    """Arrays for one batch size B, allocated once on the model's backend and reused by every
    step: (R, ...) with the replica axis first, and one (R,) float64 array per loss."""

    def __init__(self, model, n):
        ops, R, dt, p, d = model.ops, model.replicas, model.dtype, model.latent_dim, model.data_dim
        self.z = ops.zeros((R, n, p), dt)
        self.ones = ops.to_device(np.ones((R, n, 1), dt))
        self.grad_logits = ops.zeros((R, n, 1), dt)
        self.real_and_fake = ops.zeros((R, 2 * n, d), dt)
        self.same_rows = ops.to_device(np.tile(np.arange(n), (R, 1)))
        fake_label = 0 if model.loss == "bce" else -1
        self.labels = ops.to_device(np.concatenate([np.ones((R, n, 1), dt),
                                                    np.full((R, n, 1), fake_label, dt)], axis=1))
        self.grad_logits_both = ops.zeros((R, 2 * n, 1), dt)
        self.losses = {name: ops.zeros(R, np.float64)
                       for name in ("generator", "penalty", "discriminator")}
        if model.gp_lipschitz is not None:
            self.unit_tangent = ops.to_device(np.ones((R, n, p), dt))
            self.grad_tangent = ops.zeros((R, n, d), dt)


class GAN(PushForwardModel):
    """Generative adversarial network with the paper's settings (see the module doc).

    Parameters
    ----------
    latent_dim, data_dim : int
        Dimensions p of z and d of x (1 and 1 in the univariate experiments).
    n_layers : int
        Linear layers of the generator, 2..7 (default 3, the paper's); the discriminator has one
        more (:func:`generator_sizes`, :func:`discriminator_sizes`).
    skip : str
        Generator skip connections (Figure 6): 'plain', 'resnet' or 'densenet'.
    base_width : int
        Narrowest hidden width (default 128, the paper's); every hidden width is base_width
        times a power of two.
    hidden_sizes, discriminator_hidden_sizes : list of int or None
        The hidden widths of the generator and of the discriminator, layer by layer, in place
        of the rule of n_layers and base_width (the MNIST networks: :data:`npgen.models.push_forward.MNIST_GENERATOR_HIDDEN`,
        :data:`MNIST_DISCRIMINATOR_HIDDEN`; see :func:`npgen.models.push_forward.architecture`).
    sn_generator : bool
        Spectral normalization on the generator too (Figure 4 left).
    gp_lipschitz : float or None
        Target Lipschitz constant L of the generator gradient penalty (Figure 4 right), see
        :meth:`generator_gradient`; latent_dim must be 1.
    loss : str
        'bce' (the univariate experiments) or 'hinge' (the published MNIST code):
        L_D = [mean_i max(0, 1 - D(x_i)) + mean_i max(0, 1 + D(G(z_i)))] / 2,
        L_G = -mean_i D(G(z_i)). L_D is halved like the BCE one (the usual hinge loss is the
        plain sum); a constant factor does not change Adam's steps (up to its eps).
    discriminator_first : bool
        Take the discriminator step before the generator step (the published MNIST code);
        False: generator first (the univariate code).
    lr, betas : float, (float, float)
        Adam settings of both networks (1e-4, (0.9, 0.999)).
    dtype : str
        'float32' (the paper) or 'float64' (gradient checks).
    latent : str
        Law of the latent z: 'gaussian' (N(0, I), the paper) or 'cauchy' (the multivariate
        Cauchy, :mod:`npgen.models.latents`).
    seed : int
        Seed of the model's random stream (see :class:`PushForwardModel`).
    backend : str or None
        Kernel backend, see :class:`npgen.MLP`.

    Spectral normalization runs one power iteration per training forward of D. The published
    code evaluates D twice in its discriminator step (D(x), then D(G(z))), hence two
    iterations there; here real and fake rows go through D as one batch of 2B rows (one
    forward, one backward, one iteration). The losses are the same: with labels t = 1 for the
    B real rows and t = 0 for the B fake rows,
        mean over 2B rows of BCE = [sum_real + sum_fake] / (2B)
                                 = [mean_real + mean_fake] / 2 = L_D.
    In the generator step D also runs one power iteration, as in the published code.
    """

    buffer_type = _GANBuffers
    OPTIMIZERS = {"generator": "generator_optimizer", "discriminator": "discriminator_optimizer"}

    def __init__(self, latent_dim=1, data_dim=1, n_layers=None, skip="plain", base_width=None,
                 sn_generator=False, gp_lipschitz=None, loss="bce", discriminator_first=False,
                 lr=1e-4, betas=(0.9, 0.999), dtype="float32", seed=0, backend=None,
                 latent="gaussian", hidden_sizes=None, discriminator_hidden_sizes=None):
        super().__init__(latent_dim, data_dim, n_layers, skip, base_width, lr, betas, dtype,
                         seed, latent=latent, hidden_sizes=hidden_sizes)
        if discriminator_hidden_sizes is None:
            d_sizes = discriminator_sizes(self.n_layers, self.data_dim, self.base_width or 128)
        else:
            discriminator_hidden_sizes = check_hidden_sizes("discriminator_hidden_sizes",
                                                            discriminator_hidden_sizes)
            d_sizes = [self.data_dim] + discriminator_hidden_sizes + [1]
        self.discriminator_hidden_sizes = discriminator_hidden_sizes
        self.sn_generator = check_bool("sn_generator", sn_generator)
        if gp_lipschitz is not None:
            gp_lipschitz = check_number("gp_lipschitz", gp_lipschitz, low=0, low_open=True)
            if self.latent_dim != 1:
                raise ValueError("gp_lipschitz needs latent_dim == 1 (the penalty uses the exact"
                                 " derivative dG/dz, a single tangent), got"
                                 f" latent_dim={self.latent_dim}")
        self.gp_lipschitz = gp_lipschitz
        self.loss = check_choice("loss", loss, GAN_LOSSES)
        self.discriminator_first = check_bool("discriminator_first", discriminator_first)
        self.generator = generator_network(
            self.n_layers, self.latent_dim, self.data_dim, self.base_width, self.skip,
            self.sn_generator, self.dtype, self._network_seed(), backend, self.hidden_sizes)
        self.discriminator = MLP(
            d_sizes, activation="leaky_relu", slope=0.2, spectral_norm=True, dtype=self.dtype,
            seed=self._network_seed(), backend=backend)
        self._penalty_targets = None if gp_lipschitz is None else np.array([gp_lipschitz])
        self.generator_optimizer = self._optimizer(self.generator)
        self.discriminator_optimizer = self._optimizer(self.discriminator)

    def config(self):
        config = dict(super().config(), sn_generator=self.sn_generator,
                      gp_lipschitz=self.gp_lipschitz, loss=self.loss,
                      discriminator_first=self.discriminator_first, latent=self.latent)
        if self.discriminator_hidden_sizes is not None:
            config["discriminator_hidden_sizes"] = self.discriminator_hidden_sizes
        return config

    def networks(self):
        return {"generator": self.generator, "discriminator": self.discriminator}

    @property
    def push_forward_network(self):
        return self.generator


    # ----------------------------------------------------------------- losses and gradients

    def generator_gradient(self, z):
        """Generator loss on latents z (B, latent_dim); writes dL/dtheta_G into generator.grads.

        L = L_G(z) [+ P(z)], with the gradient penalty of the Lipschitz experiment (Figure 4
        right) when ``gp_lipschitz`` = L_target is set:
            P = (10 / L_target^2) (max_i |t_i| - L_target)^2,   t_i = dG/dz (z_i),
        |t_i| the Euclidean norm of the d-vector t_i (|dG/dz| for d = 1). This is the published
        code's term; the paper's text writes the squared norm ||grad_z g||^2 instead.

        Backward: L_G reaches G's output y_i through D: dL_G/dy_i = D'(y_i)^T dL_G/ds_i,
        s_i = D(y_i), passed back through D with its parameters held fixed (no gradient of D's
        weights is computed: a third less work than a full backward). The tangents t = J_G(z) 1 come from a forward-mode
        pass of G, and P depends on them through the maximizing row i* alone:
            dP/dt_{i*} = (20 / L_target^2) (|t_{i*}| - L_target) t_{i*} / |t_{i*}|,
        zero for the other rows. One backward of G through both its primal and its tangent
        path then gives dL/dtheta_G. Returns {'generator': L_G} [+ {'penalty': P}].
        """
        z = self._as_array("z", z, self.latent_dim)
        return self._first(self._generator_gradient(z[None]))

    def discriminator_gradient(self, real, z):
        """Discriminator loss on real rows and fakes G(z); writes dL_D/dtheta_D into
        discriminator.grads. Real and fake rows go through D as one batch (see the class doc).
        Returns {'discriminator': L_D}.
        """
        real = self._as_array("real", real, self.data_dim)
        z = self._as_array("z", z, self.latent_dim)
        if len(z) != len(real):
            raise ValueError(f"z must have as many rows as real ({len(real)}), got {len(z)}")
        return self._first(self._discriminator_gradient(real[None], z[None]))

    def _first(self, losses):
        """The losses of a one-replica model as floats."""
        return {name: float(self.ops.to_host(values)[0]) for name, values in losses.items()}

    # The passes below take and return arrays with the replica axis first (R, B, width) and
    # write each loss into its (R,) array of the buffers.

    def _generator_gradient(self, z):
        buffers = self._buffers(z.shape[1])
        G, D, ops, losses = self.generator, self.discriminator, self.ops, buffers.losses
        if self.gp_lipschitz is None:
            fake = G._forward(z)
        else:
            fake, tangent = G._jvp(z, buffers.unit_tangent)
        logits = D._forward(fake)
        if self.loss == "bce":
            ops.bce_with_logits(logits, buffers.ones, buffers.grad_logits, losses["generator"])
        else:
            ops.hinge_generator(logits, buffers.grad_logits, losses["generator"])
        grad_fake = D._backward(buffers.grad_logits, need_grad_in=True, param_grads=False)
        G.zero_grad()
        if self.gp_lipschitz is None:
            G._backward(grad_fake, need_grad_in=False)
            return {"generator": losses["generator"]}
        ops.gradient_penalty(tangent, self._penalty_targets, PENALTY_WEIGHT, buffers.grad_tangent,
                             losses["penalty"])
        G._jvp_backward(grad_fake, buffers.grad_tangent, need_grad_in=False)
        return {"generator": losses["generator"], "penalty": losses["penalty"]}

    def _discriminator_gradient(self, real, z):
        n = real.shape[1]
        buffers, ops = self._buffers(n), self.ops
        ops.gather_rows(real, buffers.same_rows, 0, buffers.real_and_fake, 0, n)
        ops.gather_rows(self.generator._forward(z), buffers.same_rows, 0, buffers.real_and_fake,
                        n, n)
        logits = self.discriminator._forward(buffers.real_and_fake)
        criterion = ops.bce_with_logits if self.loss == "bce" else ops.hinge
        criterion(logits, buffers.labels, buffers.grad_logits_both, buffers.losses["discriminator"])
        self.discriminator.zero_grad()
        self.discriminator._backward(buffers.grad_logits_both, need_grad_in=False)
        return {"discriminator": buffers.losses["discriminator"]}

    # ----------------------------------------------------------------- training step

    @classmethod
    def replicas_of(cls, models, backend):
        stacked = super().replicas_of(models, backend)
        if stacked.gp_lipschitz is not None:
            stacked._penalty_targets = stacked.ops.to_device(
                np.array([model.gp_lipschitz for model in models], np.float64))
        return stacked


    def _step(self, batch):
        """One generator step and one discriminator step (order: ``discriminator_first``),
        each with fresh latents, on a minibatch (R, B, data_dim). Returns the losses of both."""
        if self.discriminator_first:
            losses = self._discriminator_step(batch)
            losses.update(self._generator_step(batch.shape[1]))
        else:
            losses = self._generator_step(batch.shape[1])
            losses.update(self._discriminator_step(batch))
        return losses

    def _generator_step(self, n):
        losses = self._generator_gradient(self.noise.latents(self._buffers(n).z))
        self.generator_optimizer.step()
        return losses

    def _discriminator_step(self, batch):
        losses = self._discriminator_gradient(batch, self.noise.latents(self._buffers(batch.shape[1]).z))
        self.discriminator_optimizer.step()
        return losses
