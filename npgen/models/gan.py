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
from .latents import draw_latents
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
    """Arrays for one batch size B, allocated once and reused by every step."""

    def __init__(self, model, n):
        dt, p, d = model.dtype, model.latent_dim, model.data_dim
        self.z = np.empty((n, p), dt)
        self.ones = np.ones((n, 1), dt)
        self.grad_logits = np.empty((n, 1), dt)
        self.real_and_fake = np.empty((2 * n, d), dt)
        fake_label = 0 if model.loss == "bce" else -1
        self.labels = np.concatenate([np.ones((n, 1), dt), np.full((n, 1), fake_label, dt)])
        self.grad_logits_both = np.empty((2 * n, 1), dt)
        if model.gp_lipschitz is not None:
            self.unit_tangent = np.ones((n, p), dt)
            self.grad_tangent = np.zeros((n, d), dt)


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
        self.backend = self.generator.backend
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
        buffers = self._buffers(len(z))
        G, D = self.generator, self.discriminator
        if self.gp_lipschitz is None:
            fake = G._forward(z)
        else:
            fake, tangent = G._jvp(z, buffers.unit_tangent)
        logits = D._forward(fake)
        losses = {"generator": self._generator_criterion(logits, buffers)}
        grad_fake = D._backward(buffers.grad_logits, need_grad_in=True, param_grads=False)
        G.zero_grad()
        if self.gp_lipschitz is None:
            G._backward(grad_fake, need_grad_in=False)
        else:
            losses["penalty"] = self._gradient_penalty(tangent, buffers.grad_tangent)
            G._jvp_backward(grad_fake, buffers.grad_tangent, need_grad_in=False)
        return losses

    def discriminator_gradient(self, real, z):
        """Discriminator loss on real rows and fakes G(z); writes dL_D/dtheta_D into
        discriminator.grads. Real and fake rows go through D as one batch (see the class doc).
        Returns {'discriminator': L_D}.
        """
        real = self._as_array("real", real, self.data_dim)
        z = self._as_array("z", z, self.latent_dim)
        if len(z) != len(real):
            raise ValueError(f"z must have as many rows as real ({len(real)}), got {len(z)}")
        n = len(real)
        buffers = self._buffers(n)
        buffers.real_and_fake[:n] = real
        buffers.real_and_fake[n:] = self.generator._forward(z)
        logits = self.discriminator._forward(buffers.real_and_fake)
        if self.loss == "bce":
            loss = self.backend.bce_with_logits(logits, buffers.labels, buffers.grad_logits_both)
        else:
            loss = self.backend.hinge(logits, buffers.labels, buffers.grad_logits_both)
        self.discriminator.zero_grad()
        self.discriminator._backward(buffers.grad_logits_both, need_grad_in=False)
        return {"discriminator": loss}

    def _generator_criterion(self, logits, buffers):
        """L_G from the logits s_i = D(G(z_i)); writes dL_G/ds into buffers.grad_logits."""
        if self.loss == "bce":
            return self.backend.bce_with_logits(logits, buffers.ones, buffers.grad_logits)
        return self.backend.hinge_generator(logits, buffers.grad_logits)

    def _gradient_penalty(self, tangent, grad_tangent):
        """P of :meth:`generator_gradient` from the tangents t (B, d); writes dP/dt."""
        return self.backend.gradient_penalty(tangent, self.gp_lipschitz, PENALTY_WEIGHT,
                                             grad_tangent)

    # ----------------------------------------------------------------- training step

    def step(self, batch):
        """One generator step and one discriminator step (order: ``discriminator_first``),
        each with fresh latents. Returns the losses of both."""
        batch = self._as_array("batch", batch, self.data_dim)
        if self.discriminator_first:
            losses = self._discriminator_step(batch)
            losses.update(self._generator_step(len(batch)))
        else:
            losses = self._generator_step(len(batch))
            losses.update(self._discriminator_step(batch))
        return losses

    def _draw_latents(self, n):
        return draw_latents(self.rng, self._buffers(n).z, self.latent)

    def _generator_step(self, n):
        losses = self.generator_gradient(self._draw_latents(n))
        self.generator_optimizer.step()
        return losses

    def _discriminator_step(self, batch):
        losses = self.discriminator_gradient(batch, self._draw_latents(len(batch)))
        self.discriminator_optimizer.step()
        return losses
