"""npgen.GAN: gradients against central finite differences, learning a Gaussian, determinism,
persistence and the errors a user sees.

The models use the default kernel backend ($NPGEN_BACKEND, else 'cpu').
"""

import numpy as np
import pytest
from scipy import stats

from npgen.models.gan import GAN, discriminator_sizes
from npgen.models.push_forward import generator_sizes
from npgen.models.training import TrainingDiverged
from finite_differences import EPS, assert_matches_fd, central_difference


def tiny_gan(**kwargs):
    """A float64 GAN with generator [1, 4, 8, 1] and discriminator [1, 16, 8, 4, 1]."""
    return GAN(base_width=4, dtype="float64", seed=1, **kwargs)


def gaussian_data(n, mean, std, seed, dtype=np.float32):
    return (mean + std * np.random.default_rng(seed).standard_normal((n, 1))).astype(dtype)


def test_architectures_match_the_published_code():
    assert generator_sizes(3) == [1, 128, 256, 1]
    assert generator_sizes(6) == [1, 128, 256, 512, 1024, 2048, 1]
    assert discriminator_sizes(3) == [1, 512, 256, 128, 1]
    assert discriminator_sizes(2) == [1, 256, 128, 1]
    gan = GAN()
    assert gan.generator.sizes == (1, 128, 256, 1) and not gan.generator.spectral_norm
    assert gan.discriminator.sizes == (1, 512, 256, 128, 1) and gan.discriminator.spectral_norm
    assert gan.generator.activation == gan.discriminator.activation == "leaky_relu"
    assert gan.generator.slope == gan.discriminator.slope == 0.2
    assert gan.discriminator.output_activation == "identity"  # a logit: sigmoid is in the loss
    assert (gan.lr, gan.betas) == (1e-4, (0.9, 0.999))


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("loss", ["bce", "hinge"])
@pytest.mark.parametrize("sn_generator", [False, True])
def test_generator_gradient_matches_finite_differences(loss, sn_generator):
    gan = tiny_gan(loss=loss, sn_generator=sn_generator)
    gan.generator.eval()
    gan.discriminator.eval()  # spectral norm with u, v held fixed, as its backward assumes
    z = np.random.default_rng(0).standard_normal((6, 1))
    gan.generator_gradient(z)
    analytic = gan.generator.grads.copy()
    expected = central_difference(lambda: gan.generator_gradient(z)["generator"],
                                  gan.generator.params)
    assert_matches_fd(analytic, expected)


@pytest.mark.parametrize("data_dim", [1, 2])
@pytest.mark.parametrize("skip", ["plain", "resnet", "densenet"])
@pytest.mark.parametrize("target", [0.05, 3.0])
def test_gradient_penalty_gradient_matches_finite_differences(skip, target, data_dim):
    # target 0.05 is below every |dG/dz| (penalty pushes down), 3.0 above (pushes up).
    gan = tiny_gan(skip=skip, n_layers=4, gp_lipschitz=target, data_dim=data_dim)
    gan.discriminator.eval()
    z = np.random.default_rng(2).standard_normal((7, 1))
    losses = gan.generator_gradient(z)
    analytic = gan.generator.grads.copy()

    slopes = (gan.generator.forward(z + EPS) - gan.generator.forward(z - EPS)) / (2 * EPS)
    expected_penalty = 10 / target ** 2 * (np.linalg.norm(slopes, axis=1).max() - target) ** 2
    np.testing.assert_allclose(losses["penalty"], expected_penalty, rtol=1e-6)

    def total():
        losses = gan.generator_gradient(z)
        return losses["generator"] + losses["penalty"]

    assert_matches_fd(analytic, central_difference(total, gan.generator.params))


@pytest.mark.parametrize("loss", ["bce", "hinge"])
def test_discriminator_gradient_matches_finite_differences(loss):
    gan = tiny_gan(loss=loss)
    gan.discriminator.eval()
    rng = np.random.default_rng(3)
    real, z = rng.standard_normal((5, 1)) * 2, rng.standard_normal((5, 1))
    gan.discriminator_gradient(real, z)
    analytic = gan.discriminator.grads.copy()
    expected = central_difference(lambda: gan.discriminator_gradient(real, z)["discriminator"],
                                  gan.discriminator.params)
    assert_matches_fd(analytic, expected)


def test_discriminator_loss_is_the_mean_of_real_and_fake_terms():
    gan = tiny_gan()
    gan.discriminator.eval()
    rng = np.random.default_rng(4)
    real, z = rng.standard_normal((5, 1)), rng.standard_normal((5, 1))
    loss = gan.discriminator_gradient(real, z)["discriminator"]
    real_logits = gan.discriminator.forward(real)
    fake_logits = gan.discriminator.forward(gan.generator.forward(z))
    bce_real = np.mean(np.log1p(np.exp(-real_logits)))     # -log sigmoid(s)
    bce_fake = np.mean(np.log1p(np.exp(fake_logits)))      # -log (1 - sigmoid(s))
    np.testing.assert_allclose(loss, (bce_real + bce_fake) / 2, rtol=1e-12)


# ----------------------------------------------------------------------------- training


def test_learns_a_gaussian():
    """Budget: generator [1, 16, 32, 1], discriminator [1, 64, 32, 16, 1], N(0, 1) data,
    batch 100, 1200 steps, lr 2e-4 and Adam betas (0, 0.9) (the SN-GAN setting of Miyato et
    al., 2018). With the paper's betas (0.9, 0.999) the generator's mean keeps circling the
    data mean (the rotation of unregularized GAN dynamics) too widely for a short test."""
    data = gaussian_data(4000, 0.0, 1.0, seed=10)
    gan = GAN(base_width=16, lr=2e-4, betas=(0.0, 0.9), seed=0)
    history = gan.fit(data, epochs=30, batch_size=100, quiet=True)
    assert len(history["generator"]) == len(history["discriminator"]) == 30
    samples = gan.sample(2000, seed=1)[:, 0]
    assert abs(samples.mean()) < 0.2
    assert abs(samples.std() - 1.0) < 0.2
    assert stats.kstest(samples, "norm").statistic < 0.1


@pytest.mark.parametrize("discriminator_first", [False, True])
def test_step_order(discriminator_first):
    """One step is one update of each network, in the chosen order, each with its own latent
    draw: generator first, the discriminator step sees the updated generator."""
    batch = gaussian_data(100, 1.0, 1.0, seed=6)
    gan = GAN(base_width=8, lr=1e-3, seed=4, discriminator_first=discriminator_first)
    replay = GAN(base_width=8, lr=1e-3, seed=4)
    losses = gan.step(batch)
    assert set(losses) == {"generator", "discriminator"}

    first, second = (replay.rng.standard_normal((100, 1), dtype=np.float32) for _ in range(2))
    if discriminator_first:
        replay.discriminator_gradient(batch, first)
        replay.discriminator_optimizer.step()
        replay.generator_gradient(second)
        replay.generator_optimizer.step()
    else:
        replay.generator_gradient(first)
        replay.generator_optimizer.step()
        replay.discriminator_gradient(batch, second)
        replay.discriminator_optimizer.step()
    for name, net in gan.networks().items():
        np.testing.assert_array_equal(net.params, replay.networks()[name].params, err_msg=name)


def test_load_rejects_what_is_not_a_saved_gan(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        GAN.load(tmp_path)
    (tmp_path / "config.json").write_text('{"model": "VAE", "format": 1, "config": {}}')
    with pytest.raises(ValueError, match="not a GAN"):
        GAN.load(tmp_path)


def test_sample_is_deterministic_given_a_seed_and_fresh_without_one():
    gan = GAN(base_width=8)
    gan.fit(gaussian_data(200, 0.0, 1.0, seed=1), epochs=1, batch_size=100, quiet=True)
    first = gan.sample(1500, seed=2, quiet=True)
    assert first.shape == (1500, 1) and first.dtype == np.float32
    np.testing.assert_array_equal(first, gan.sample(1500, seed=2, quiet=True))
    assert not np.array_equal(first, gan.sample(1500, seed=3, quiet=True))
    assert not np.array_equal(gan.sample(1500, quiet=True), gan.sample(1500, quiet=True))


def test_divergence_is_reported_with_its_step():
    data = gaussian_data(400, 0.0, 1.0, seed=8)
    gan = GAN(base_width=8, lr=1e15)
    with pytest.raises(TrainingDiverged, match=r"at step \d+"), np.errstate(all="ignore"):
        gan.fit(data, epochs=50, batch_size=100, quiet=True)


# ----------------------------------------------------------------------------- user errors


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": -1e-4}, "lr"),
    ({"lr": 0}, "lr"),
    ({"gp_lipschitz": 0}, "gp_lipschitz"),
    ({"gp_lipschitz": -5}, "gp_lipschitz"),
    ({"gp_lipschitz": 5, "latent_dim": 2}, "gp_lipschitz needs latent_dim == 1"),
    ({"loss": "wasserstein"}, "loss"),
    ({"n_layers": 1}, "n_layers"),
    ({"n_layers": 2.5}, "n_layers"),
    ({"n_layers": 9}, "n_layers"),
    ({"skip": "highway"}, "skip"),
    ({"betas": (0.9,)}, "betas"),
    ({"dtype": "float16"}, "dtype"),
    ({"seed": -1}, "seed"),
])
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GAN(**kwargs)
