"""GAN and VAE networks given layer by layer (the MNIST sizes) beside the n_layers / base_width
rule of the univariate study, which keeps its configuration and saved-model format."""

import json

import numpy as np
import pytest

from npgen import GAN, VAE
from npgen.models.gan import MNIST_DISCRIMINATOR_HIDDEN
from npgen.models.push_forward import MNIST_GENERATOR_HIDDEN
from npgen.models.vae import MNIST_ENCODER_HIDDEN

#: The keys of a univariate model's config.json before layer-by-layer sizes existed.
UNIVARIATE_GAN_KEYS = {"latent_dim", "data_dim", "n_layers", "skip", "base_width", "lr", "betas",
                       "dtype", "seed", "sn_generator", "gp_lipschitz", "loss", "discriminator_first",
                       "latent"}
UNIVARIATE_VAE_KEYS = {"latent_dim", "data_dim", "n_layers", "skip", "base_width", "lr", "betas",
                       "dtype", "seed", "kl", "decoder_variance"}


def test_the_univariate_networks_and_configs_are_unchanged():
    gan, vae = GAN(), VAE()
    assert gan.generator.sizes == (1, 128, 256, 1)
    assert gan.discriminator.sizes == (1, 512, 256, 128, 1)
    assert vae.encoder.sizes == (1, 256, 128, 2) and vae.decoder.sizes == (1, 128, 256, 1)
    assert set(gan.config()) == UNIVARIATE_GAN_KEYS and set(vae.config()) == UNIVARIATE_VAE_KEYS
    assert gan.config()["n_layers"] == 3 and gan.config()["base_width"] == 128
    assert GAN(n_layers=4, base_width=8).generator.sizes == (1, 8, 16, 32, 1)


def test_the_mnist_sizes():
    gan = GAN(latent_dim=784, data_dim=784, hidden_sizes=MNIST_GENERATOR_HIDDEN,
              discriminator_hidden_sizes=MNIST_DISCRIMINATOR_HIDDEN)
    assert gan.generator.sizes == (784, 256, 512, 1024, 784)
    assert gan.discriminator.sizes == (784, 512, 256, 128, 1) and gan.discriminator.spectral_norm
    assert gan.n_layers == 4 and gan.base_width is None
    vae = VAE(latent_dim=20, data_dim=784, hidden_sizes=MNIST_GENERATOR_HIDDEN,
              encoder_hidden_sizes=MNIST_ENCODER_HIDDEN)
    assert vae.decoder.sizes == (20, 256, 512, 1024, 784)
    assert vae.encoder.sizes == (784, 1024, 512, 256, 40)
    # the VAE's decoder is the GAN's generator architecture
    assert GAN(latent_dim=20, data_dim=784, hidden_sizes=MNIST_GENERATOR_HIDDEN).generator.sizes == vae.decoder.sizes


@pytest.mark.parametrize("model", ["gan", "vae"])
def test_layer_sizes_save_and_load(tmp_path, model):
    data = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    if model == "gan":
        m = GAN(latent_dim=3, data_dim=6, hidden_sizes=[5, 7], discriminator_hidden_sizes=[9],
                loss="hinge", discriminator_first=True, seed=1)
    else:
        m = VAE(latent_dim=3, data_dim=6, hidden_sizes=[5, 7], encoder_hidden_sizes=[8], seed=1)
    m.fit(data, epochs=2, batch_size=10, quiet=True)
    m.save(tmp_path / model)
    loaded = type(m).load(tmp_path / model)
    assert loaded.config() == m.config()
    z = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.generate(z), m.generate(z))


def test_a_saved_univariate_model_of_the_old_format_loads(tmp_path):
    gan = GAN(base_width=4, seed=2)
    gan.fit(np.linspace(-1, 1, 40, dtype=np.float32)[:, None], epochs=1, batch_size=10, quiet=True)
    gan.save(tmp_path / "gan")
    meta = json.loads((tmp_path / "gan" / "config.json").read_text())
    assert set(meta["config"]) == UNIVARIATE_GAN_KEYS
    loaded = GAN.load(tmp_path / "gan")
    assert loaded.generator.sizes == gan.generator.sizes
