"""The latent laws (npgen.models.latents), their interpolations (npgen.models.interpolation)
and the Cauchy-latent GAN.

Kolmogorov-Smirnov tests use fixed seeds and 20 000 pairs: a wrong law fails by a p-value below
1e-30, a right one passes with p > 1e-3, so the verdicts are decisive and the same every run.
"""

import numpy as np
import pytest
from scipy import stats

from npgen import GAN
from npgen.models import interpolation
from npgen.models.latents import coordinate_law, draw_latents, radius_law

N_PAIRS = 20000
PASS, FAIL = 1e-3, 1e-30


def pairs(latent, dim, seed):
    rng = np.random.default_rng(seed)
    z1 = draw_latents(rng, np.empty((N_PAIRS, dim)), latent)
    z2 = draw_latents(rng, np.empty((N_PAIRS, dim)), latent)
    return z1, z2


def ks_pvalues(z, latent):
    """KS p-values of the first coordinate and of the radius against the latent law."""
    p_coord = stats.kstest(z[:, 0], coordinate_law(latent).cdf).pvalue
    p_radius = stats.kstest(np.linalg.norm(z, axis=1), radius_law(latent, z.shape[1]).cdf).pvalue
    return p_coord, p_radius


@pytest.mark.parametrize("latent, dim", [("gaussian", 1), ("gaussian", 5), ("cauchy", 1), ("cauchy", 5)])
def test_draws_follow_the_law(latent, dim):
    z1, _ = pairs(latent, dim, seed=10)
    assert min(ks_pvalues(z1, latent)) > PASS


def test_cauchy_draws_are_not_gaussian_and_reject_unknown_laws():
    z1, _ = pairs("cauchy", 1, seed=11)
    assert stats.kstest(z1[:, 0], stats.norm.cdf).pvalue < FAIL
    with pytest.raises(ValueError, match="latent must be one of"):
        draw_latents(np.random.default_rng(0), np.empty((3, 1)), "uniform")


@pytest.mark.parametrize("dim", [1, 5])
def test_cauchy_latent_keeps_its_law_under_linear_interpolation(dim):
    z1, z2 = pairs("cauchy", dim, seed=1)
    assert min(ks_pvalues(interpolation.linear(z1, z2, 0.5), "cauchy")) > PASS
    assert min(ks_pvalues(interpolation.linear(z1, z2, 0.2), "cauchy")) > PASS


@pytest.mark.parametrize("dim", [1, 5])
def test_gaussian_latent_loses_its_law_under_linear_interpolation_and_keeps_it_under_cauchy_linear(dim):
    z1, z2 = pairs("gaussian", dim, seed=2)
    assert max(ks_pvalues(interpolation.linear(z1, z2, 0.5), "gaussian")) < FAIL
    assert min(ks_pvalues(interpolation.cauchy_linear(z1, z2, 0.5, "gaussian"), "gaussian")) > PASS


@pytest.mark.parametrize("latent", ["gaussian", "cauchy"])
def test_spherical_cauchy_linear_keeps_the_law(latent):
    z1, z2 = pairs(latent, 5, seed=3)
    z = interpolation.spherical_cauchy_linear(z1, z2, 0.5, latent)
    assert min(ks_pvalues(z, latent)) > PASS
    # the direction is uniform: its first coordinate has the law of theta_1 = z_1 / |z_1|
    theta = z / np.linalg.norm(z, axis=1, keepdims=True)
    reference = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
    assert stats.ks_2samp(theta[:, 0], reference[:, 0]).pvalue > PASS


def test_cauchy_linear_of_the_cauchy_in_one_dimension_is_linear():
    z1, z2 = pairs("cauchy", 1, seed=4)
    np.testing.assert_allclose(interpolation.cauchy_linear(z1, z2, 0.3, "cauchy"),
                               interpolation.linear(z1, z2, 0.3), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", ["cauchy_linear", "spherical_cauchy_linear"])
def test_end_points_are_the_codes_and_far_tails_stay_finite(method):
    rng = np.random.default_rng(5)
    z1, z2 = rng.standard_normal((50, 3)), rng.standard_normal((50, 3))
    z1[0] = [20.0, -15.0, 12.0]  # far in the Gaussian tail: its CDF rounds to 1, its radius law too
    f = getattr(interpolation, method)
    np.testing.assert_allclose(f(z1, z2, 0.0, "gaussian"), z1, rtol=1e-7)
    np.testing.assert_allclose(f(z1, z2, 1.0, "gaussian"), z2, rtol=1e-7)
    assert np.isfinite(f(z1, z2, 0.5, "gaussian")).all()


@pytest.mark.parametrize("call, message", [
    (lambda: interpolation.linear(np.ones((3, 2)), np.ones((3, 1)), 0.5), "same shape"),
    (lambda: interpolation.linear(np.ones(3), np.ones(3), 0.5), "2-d array"),
    (lambda: interpolation.linear(np.ones((3, 1)), np.ones((3, 1)), 1.5), "t must be"),
    (lambda: interpolation.linear(np.full((3, 1), np.nan), np.ones((3, 1)), 0.5), "z1 contains NaN"),
    (lambda: interpolation.cauchy_linear(np.ones((3, 1)), np.ones((3, 1)), 0.5, "uniform"), "latent must be"),
    (lambda: interpolation.spherical_cauchy_linear(np.ones((3, 1)), np.ones((3, 1)), 0.5, "gaussian"),
     "dimension p >= 2"),
    (lambda: interpolation.spherical_cauchy_linear(np.zeros((3, 2)), np.ones((3, 2)), 0.5, "gaussian"),
     "no zero rows"),
    (lambda: interpolation.spherical_cauchy_linear(np.ones((3, 2)), -np.ones((3, 2)), 0.5, "gaussian"),
     "opposite directions"),
])
def test_interpolation_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------------------------
# The Cauchy-latent GAN
# --------------------------------------------------------------------------------------------


def small_gan(**options):
    return GAN(base_width=4, n_layers=2, seed=3, **options)


def test_gaussian_default_samples_as_before():
    gan = small_gan()
    gan.trained = True
    z = np.random.default_rng(7).standard_normal((100, 1), dtype=np.float32)
    np.testing.assert_array_equal(gan.sample(100, seed=7, quiet=True), gan.generate(z))


def test_cauchy_gan_trains_samples_from_the_cauchy_and_saves_its_latent(tmp_path):
    gan = small_gan(latent="cauchy")
    data = np.random.default_rng(0).standard_normal((200, 1)).astype(np.float32)
    gan.fit(data, epochs=1, batch_size=100, quiet=True)
    z = draw_latents(np.random.default_rng(9), np.empty((300, 1), np.float32), "cauchy")
    samples = gan.sample(300, seed=9, quiet=True)
    np.testing.assert_array_equal(samples, gan.generate(z))
    gan.save(tmp_path / "model")
    loaded = GAN.load(tmp_path / "model")
    assert loaded.latent == "cauchy" and loaded.config() == gan.config()
    np.testing.assert_array_equal(loaded.sample(300, seed=9, quiet=True), samples)


def test_cauchy_training_draws_cauchy_latents():
    gan = small_gan(latent="cauchy")
    z = gan.noise.latents(np.empty((1, 5000, 1), np.float32))[0]
    assert stats.kstest(z[:, 0], stats.cauchy.cdf).pvalue > PASS


def test_gan_refuses_an_unknown_latent():
    with pytest.raises(ValueError, match="latent must be one of"):
        small_gan(latent="laplace")
