"""npgen.VAE: the loss and its gradient against direct computation and central finite
differences, learning a Gaussian, determinism, persistence and the errors a user sees.

The models use the default kernel backend ($NPGEN_BACKEND, else 'cpu').
"""

import numpy as np
import pytest
from scipy import stats

from npgen.models.training import TrainingDiverged
from npgen.models.vae import VAE, encoder_sizes
from finite_differences import assert_matches_fd, central_difference


def tiny_vae(**kwargs):
    """A float64 VAE with encoder [1, 8, 4, 2] and decoder [1, 4, 8, 1]."""
    return VAE(base_width=4, dtype="float64", seed=1, **kwargs)


def standard_normal_data(n, seed):
    return np.random.default_rng(seed).standard_normal((n, 1)).astype(np.float32)


def test_architecture_matches_the_published_code():
    assert encoder_sizes() == [1, 256, 128, 2]
    vae = VAE()
    assert vae.encoder.sizes == (1, 256, 128, 2)
    assert vae.encoder.activation == "relu" and vae.encoder.output_activation == "identity"
    assert vae.decoder.sizes == (1, 128, 256, 1)
    assert vae.decoder.activation == "leaky_relu" and vae.decoder.slope == 0.2
    assert (vae.kl, vae.decoder_variance, vae.lr, vae.betas) == ("correct", 0.1, 1e-4, (0.9, 0.999))


@pytest.mark.parametrize("kl", ["correct", "paper"])
def test_loss_matches_a_direct_computation(kl):
    vae = tiny_vae(kl=kl, latent_dim=2, data_dim=3)
    rng = np.random.default_rng(0)
    x, eps = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    losses = vae.negative_elbo_gradient(x, eps)
    code = vae.encoder.forward(x)
    mu, logvar = code[:, :2], code[:, 2:]
    z = mu + np.exp(logvar / 2) * eps
    reconstruction = np.sum((x - vae.decoder.forward(z)) ** 2) / (2 * 0.1)
    variance_term = np.exp(logvar) if kl == "correct" else np.exp(logvar) ** 2
    divergence = 0.5 * np.sum(mu ** 2 + variance_term - logvar - 1)
    np.testing.assert_allclose(losses["reconstruction"], reconstruction, rtol=1e-12)
    np.testing.assert_allclose(losses["kl"], divergence, rtol=1e-12)
    np.testing.assert_allclose(losses["loss"], reconstruction + divergence, rtol=1e-12)


@pytest.mark.parametrize("skip", ["plain", "resnet"])
@pytest.mark.parametrize("kl", ["correct", "paper"])
def test_gradient_matches_finite_differences(kl, skip):
    vae = tiny_vae(kl=kl, skip=skip, n_layers=4)
    rng = np.random.default_rng(1)
    x, eps = rng.standard_normal((6, 1)) * 2, rng.standard_normal((6, 1))
    vae.negative_elbo_gradient(x, eps)
    analytic = {name: net.grads.copy() for name, net in vae.networks().items()}
    for name, net in vae.networks().items():
        expected = central_difference(lambda: vae.negative_elbo_gradient(x, eps)["loss"],
                                      net.params)
        assert_matches_fd(analytic[name], expected)


def test_paper_kl_pulls_the_variance_to_one_over_sqrt_two():
    """With mu = 0, dKL/dlv = 0 at exp(lv) = 1 ('correct') and at exp(lv) = 2^-1/2 ('paper')."""
    for kl, variance in (("correct", 1.0), ("paper", 2 ** -0.5)):
        vae = tiny_vae(kl=kl)
        head_weight, head_bias = vae.encoder.weights[-1], vae.encoder.biases[-1]
        head_weight[...] = 0
        head_bias[...] = [0.0, np.log(variance)]
        x = np.ones((1, 1))
        vae.negative_elbo_gradient(x, np.zeros((1, 1)))  # eps = 0: no reconstruction term in lv
        assert abs(vae.encoder.bias_grads[-1][1]) < 1e-12


# ----------------------------------------------------------------------------- training


def test_learns_a_gaussian():
    """Budget: encoder [1, 32, 16, 2], decoder [1, 16, 32, 1], lr 3e-3, N(0, 1) data,
    batch 250, 600 steps. The samples g(z) omit the decoder noise of variance c = 0.1, so at
    the optimum their variance is about 1 - c: the expected std is about 0.95."""
    data = standard_normal_data(5000, seed=10)
    vae = VAE(base_width=16, lr=3e-3, seed=0)
    history = vae.fit(data, epochs=30, batch_size=250, quiet=True)
    assert len(history["loss"]) == 30 and history["loss"][-1] < history["loss"][0]
    samples = vae.sample(2000, seed=1)[:, 0]
    assert abs(samples.mean()) < 0.1
    assert 0.85 < samples.std() < 1.05
    assert stats.kstest(samples, "norm").statistic < 0.06


def test_divergence_is_reported_with_its_step():
    data = np.full((200, 1), 1e30, np.float32)  # finite, but its squared error overflows
    with pytest.raises(TrainingDiverged, match=r"at step 1\b"), np.errstate(all="ignore"):
        VAE(base_width=8).fit(data, epochs=1, batch_size=100, quiet=True)


# ----------------------------------------------------------------------------- user errors


def test_gradient_rejects_mismatched_noise():
    with pytest.raises(ValueError, match="eps must have as many rows as x"):
        tiny_vae().negative_elbo_gradient(np.zeros((3, 1)), np.zeros((2, 1)))


@pytest.mark.parametrize("kwargs, message", [
    ({"kl": "analytic"}, "kl"),
    ({"decoder_variance": 0}, "decoder_variance"),
    ({"lr": -1.0}, "lr"),
    ({"n_layers": 0}, "n_layers"),
    ({"latent_dim": 0}, "latent_dim"),
    ({"base_width": 0}, "base_width"),
])
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAE(**kwargs)
