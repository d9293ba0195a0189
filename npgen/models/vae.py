"""Variational autoencoder (Kingma & Welling, 2014) with a Gaussian decoder of fixed variance.

Generative model: z ~ N(0, I_p), x | z ~ N(g(z), c I_d) with c = 0.1; the decoder g is the
GAN's generator architecture (:func:`npgen.models.push_forward.generator_sizes`). Samples are g(z), without
decoder noise, so the VAE is a push-forward model like the GAN.

Encoder q(z | x) = N(mu(x), diag exp(lv(x))): Linear d->256, ReLU, 256->128, ReLU, then two
heads 128->p for the mean mu and the log-variance lv (the published code). Here the heads are
one linear layer 128 -> 2p whose first p outputs are mu and last p are lv: with
W = [W_mu; W_lv] and b = [b_mu; b_lv] stacked, it is the same function, and the
initialization of each head (uniform in +-1/sqrt(128)) is that of the stacked layer.

Loss of a minibatch x_1..x_B: the negative ELBO *summed* over the batch, as in the published
code (constant terms log(2 pi c) dropped), with z_i = mu_i + exp(lv_i / 2) * eps_i,
eps_i ~ N(0, I_p) (the reparameterization trick):

    L = sum_i ||x_i - g(z_i)||^2 / (2c)  +  sum_i KL_i
    kl='correct' (the default, the textbook KL):
                  KL_i = 1/2 sum_j (mu_ij^2 + exp(lv_ij) - lv_ij - 1) = KL(q(z | x_i) || N(0, I))
    kl='paper':   KL_i = 1/2 sum_j (mu_ij^2 + exp(lv_ij)^2 - lv_ij - 1)   (the published code)

The published term squares the variance. Its prior part 1/2 (sigma^4 - log sigma^2 - 1) is
minimized where d/dlv [exp(2 lv) - lv] = 2 exp(2 lv) - 1 = 0, i.e. sigma^2 = 1/sqrt(2) ~ 0.707:
it pulls the posterior variances towards 0.707 instead of 1 (and is negative there, so it is
not a divergence). Summing rather than averaging over the batch scales the gradient by B,
which changes Adam's steps only through its eps.

Training: Adam, lr 1e-4, betas (0.9, 0.999), on encoder and decoder (one Adam per network,
which is the same as one Adam over both: Adam acts on each parameter separately); batch 1000,
400 epochs.
"""

import numpy as np

from ..nn.adam import Adam
from ..nn.mlp import MLP
from ..util.checks import check_choice, check_number
from .push_forward import PushForwardModel, check_hidden_sizes, generator_network

KL_VARIANTS = ("correct", "paper")
#: Hidden widths of the MNIST encoder: the decoder's (:data:`MNIST_GENERATOR_HIDDEN`) in reverse,
#: 784 -> 1024 -> 512 -> 256 -> 2p, ReLU, as the univariate encoder mirrors its decoder.
MNIST_ENCODER_HIDDEN = (1024, 512, 256)


def encoder_sizes(data_dim=1, latent_dim=1, base_width=128):
    """Widths of the encoder, heads stacked: [data_dim, 2w, w, 2 latent_dim], w = base_width.

    >>> encoder_sizes()
    [1, 256, 128, 2]
    """
    base_width = check_number("base_width", base_width, low=1, integer=True)
    return [data_dim, 2 * base_width, base_width, 2 * latent_dim]


class _VAEBuffers:
    """Arrays for one batch size B, allocated once on the model's backend and reused by every
    step: (R, ...) with the replica axis first, and one (R,) float64 array per loss."""

    def __init__(self, model, n):
        ops, R, dt, p, d = model.ops, model.replicas, model.dtype, model.latent_dim, model.data_dim
        self.eps, self.std, self.z = (ops.zeros((R, n, p), dt) for _ in range(3))
        self.residual = ops.zeros((R, n, d), dt)
        self.grad_code = ops.zeros((R, n, 2 * p), dt)
        self.losses = {name: ops.zeros(R, np.float64) for name in ("reconstruction", "kl")}


class VAE(PushForwardModel):
    """Gaussian VAE with the paper's settings (see the module doc).

    Parameters
    ----------
    latent_dim, data_dim, n_layers, skip, base_width, lr, betas, dtype, seed, backend, hidden_sizes
        As for :class:`npgen.GAN`; ``n_layers``, ``skip`` and ``hidden_sizes`` shape the decoder,
        the encoder is :func:`encoder_sizes`, or [data_dim] + encoder_hidden_sizes + [2 latent_dim]
        when ``encoder_hidden_sizes`` is given.
    kl : str
        'correct' (default, the true KL divergence) or 'paper' (the published code's term).
    decoder_variance : float
        The fixed variance c of x | z (0.1).
    """

    buffer_type = _VAEBuffers
    OPTIMIZERS = {"encoder": "encoder_optimizer", "decoder": "decoder_optimizer"}

    def __init__(self, latent_dim=1, data_dim=1, n_layers=None, skip="plain", base_width=None,
                 kl="correct", decoder_variance=0.1, lr=1e-4, betas=(0.9, 0.999),
                 dtype="float32", seed=0, backend=None, hidden_sizes=None,
                 encoder_hidden_sizes=None):
        super().__init__(latent_dim, data_dim, n_layers, skip, base_width, lr, betas, dtype,
                         seed, hidden_sizes=hidden_sizes)
        if encoder_hidden_sizes is None:
            e_sizes = encoder_sizes(self.data_dim, self.latent_dim, self.base_width or 128)
        else:
            encoder_hidden_sizes = check_hidden_sizes("encoder_hidden_sizes", encoder_hidden_sizes)
            e_sizes = [self.data_dim] + encoder_hidden_sizes + [2 * self.latent_dim]
        self.encoder_hidden_sizes = encoder_hidden_sizes
        self.kl = check_choice("kl", kl, KL_VARIANTS)
        self.decoder_variance = check_number("decoder_variance", decoder_variance, low=0,
                                             low_open=True)
        self.encoder = MLP(e_sizes, activation="relu", dtype=self.dtype, seed=self._network_seed(),
                           backend=backend)
        self.decoder = generator_network(
            self.n_layers, self.latent_dim, self.data_dim, self.base_width, self.skip, False,
            self.dtype, self._network_seed(), backend, self.hidden_sizes)
        self.encoder_optimizer = self._optimizer(self.encoder)
        self.decoder_optimizer = self._optimizer(self.decoder)

    def config(self):
        config = dict(super().config(), kl=self.kl, decoder_variance=self.decoder_variance)
        if self.encoder_hidden_sizes is not None:
            config["encoder_hidden_sizes"] = self.encoder_hidden_sizes
        return config

    def networks(self):
        return {"encoder": self.encoder, "decoder": self.decoder}

    @property
    def push_forward_network(self):
        return self.decoder


    def negative_elbo_gradient(self, x, eps):
        """The batch loss L (module doc) for data x (B, d) and noise eps (B, p); writes
        dL/dtheta into encoder.grads and decoder.grads.

        Backward, row by row (c the decoder variance, sigma = exp(lv / 2)):
            r     = (g(z) - x) / c                     dL/dg(z)
            dL/dz = J_g(z)^T r                         (decoder backward)
            dL/dmu = dL/dz + mu
            dL/dlv = dL/dz * eps * sigma / 2 + dKL/dlv,
                     dKL/dlv = (sigma^2 - 1) / 2 ('correct')  or  sigma^4 - 1/2 ('paper'),
                     i.e. (k exp(k lv) - 1) / 2 with k = 1 or 2
        then the encoder backward from (dL/dmu, dL/dlv). The backend's kernels
        vae_reparameterize, vae_residual and vae_code_gradient compute the pieces between the
        networks (:mod:`npgen.kernels.numpy_ref` has their math).
        Returns {'loss': L, 'reconstruction': sum of the first term, 'kl': sum of KL_i}.
        """
        x = self._as_array("x", x, self.data_dim)
        eps = self._as_array("eps", eps, self.latent_dim)
        if len(eps) != len(x):
            raise ValueError(f"eps must have as many rows as x ({len(x)}), got {len(eps)}")
        losses = self._sums_on_host(self._negative_elbo_gradient(x[None], eps[None]))
        return {name: float(values[0]) for name, values in losses.items()}

    def _negative_elbo_gradient(self, x, eps):
        """:meth:`negative_elbo_gradient` on arrays with the replica axis first (R, B, width);
        writes each loss into its (R,) array of the buffers and returns them."""
        buf, ops = self._buffers(x.shape[1]), self.ops
        # The variance term of KL_i is exp(k lv) = sigma^(2k), k = 1 ('correct') or 2 ('paper').
        k = 1 if self.kl == "correct" else 2
        code = self.encoder._forward(x)
        ops.vae_reparameterize(code, eps, k, buf.z, buf.std, buf.losses["kl"])
        ops.vae_residual(self.decoder._forward(buf.z), x, self.decoder_variance, buf.residual,
                         buf.losses["reconstruction"])
        self.decoder.zero_grad()
        grad_z = self.decoder._backward(buf.residual, need_grad_in=True)
        ops.vae_code_gradient(code, eps, buf.std, grad_z, k, buf.grad_code)
        self.encoder.zero_grad()
        self.encoder._backward(buf.grad_code, need_grad_in=False)
        return dict(buf.losses)

    def _loss_names(self):
        """The (R,) losses a step writes."""
        return ("reconstruction", "kl")

    def _sums_on_host(self, losses):
        """{'loss', 'reconstruction', 'kl'}: (R,) float64 sums on the host, L = reconstruction + KL."""
        return self._report_losses({name: self.ops.to_host(values) for name, values in losses.items()}, 1)

    def _step(self, batch):
        """One Adam step on the batch loss with fresh noise eps, on a minibatch (R, B, d)."""
        losses = self._negative_elbo_gradient(batch, self.noise.normal(self._buffers(batch.shape[1]).eps))
        Adam.step_together([self.encoder_optimizer, self.decoder_optimizer])
        return losses

    def _report_losses(self, losses, batch_size):
        """The step's sums divided by the batch size (per-sample values, comparable across batch
        sizes): {'loss': (reconstruction + KL) / B, 'reconstruction', 'kl'}."""
        total = losses["reconstruction"] + losses["kl"]
        return {name: values / batch_size for name, values in
                (("loss", total), ("reconstruction", losses["reconstruction"]), ("kl", losses["kl"]))}
