"""VectorSGM's annealed Langevin sampler in 784 dimensions against the exact score of a Gaussian
mixture: the kernel path of :meth:`VectorSGM.sample` draws, from a seed, what
:func:`npgen.analysis.exact_score.exact_langevin_nd` draws with the exact score; with the exact
score of Figure 7's kind of mixture (two modes 0.15 wide, about 11 apart) the sampler recovers
both modes in the mixture's proportions and stays within the data's range; and the score network
is confining, so that no chain can run off (the way SiLU networks' chains did)."""

import numpy as np
import pytest

from npgen.analysis.exact_score import IsotropicMixture, exact_langevin_nd
from npgen.models.sgm import (VECTOR_SAMPLE_CHUNK, VectorSGM, geometric_noise_levels,
                              largest_distance)
from npgen.nn import DenseScoreNetwork
from npgen.study.figure7_metrics import histogram_edges, projection_line, project

D = 784


def digit_like_means(seed=0):
    """Two sparse images in [0, 1]^784, about 11 apart like MNIST's first 3 and 7."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.3, 1.0, D) * (rng.random(D) < 0.2) for _ in range(2)]


def test_sample_with_a_gaussian_network_is_the_exact_score_chain():
    """With W3 = 0 and b3 = 0 (the MLP's last layer) the network's score is its skip alone, the exact score of
    N(mu, s_d^2 I) blurred at sigma_l, so VectorSGM.sample (the Langevin kernel, its start, its
    noise stream, its step sizes) must draw what exact_langevin_nd draws on that Gaussian."""
    sigmas = geometric_noise_levels(8.0, 0.01, 12)
    model = VectorSGM(D, sigmas, hidden_sizes=(8, 8), data_mean=0.2, data_scale=0.4,
                      n_steps_per_level=3, seed=0, backend="cpu")
    model.score.mlp.weights[2][...] = 0
    model.score.mlp.biases[2][...] = 0
    model.trained = True
    samples = model.sample(50, seed=7, quiet=True)
    gaussian = IsotropicMixture([1.0], np.full((1, D), 0.2), [0.4])
    exact = exact_langevin_nd(gaussian, sigmas, model.alphas.astype(model.dtype), 3, 50, 7, 0.2,
                              VECTOR_SAMPLE_CHUNK, dtype=model.dtype)
    np.testing.assert_allclose(samples, exact, rtol=0, atol=2e-4)


def test_the_exact_score_sampler_recovers_both_modes_in_proportion_and_stays_in_range():
    """Figure 7's schedule (geometric levels from the largest distance down to 0.01, 5 steps of
    technique 4's step size per level) on 0.3 N(c3, 0.15^2 I) + 0.7 N(c7, 0.15^2 I): the share
    of each mode is its weight within 4 binomial standard deviations, nothing lies between the
    modes, and no sample leaves the data's projected range widened by a quarter on each side."""
    rng = np.random.default_rng(1)
    means = digit_like_means()
    weights = np.array([0.3, 0.7])
    mixture = IsotropicMixture(weights, np.stack(means), [0.15, 0.15])
    labels = rng.random(4000) < weights[1]
    data = np.where(labels[:, None], means[1], means[0]) + 0.15 * rng.standard_normal((4000, D))
    sigmas = geometric_noise_levels(largest_distance(data), 0.01, 30)
    model = VectorSGM(D, sigmas, hidden_sizes=(4, 4), n_steps_per_level=5)
    n = 400
    samples = exact_langevin_nd(mixture, sigmas, model.alphas, 5, n, 3, float(data.mean()),
                                VECTOR_SAMPLE_CHUNK)
    line = projection_line(means)
    t, m = project(line, samples), line["m"]
    share_7 = np.mean(t > m / 2)
    assert abs(share_7 - 0.7) < 4 * np.sqrt(0.21 / n), share_7
    assert np.mean(np.abs(t) <= m / 2) == 0
    edges = histogram_edges(project(line, data), 10)
    assert edges[0] <= t.min() and t.max() <= edges[-1], (t.min(), t.max(), edges[[0, -1]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_score_network_is_confining_far_from_the_data(seed):
    """s(mu + R v, sigma_l) . v < 0 for unit v and large R at every level, whatever the weights
    (here the initial ones times 30): the bounded activation keeps r bounded, so the skip
    -c_l^2 (x - mu) wins. An SiLU network with the same weights is not confining, which is how a
    quarter of Figure 7's chains ran off to norms of 1e8."""
    rng = np.random.default_rng(seed)
    sigmas = geometric_noise_levels(13.0, 0.01, 10)
    directions = rng.standard_normal((64, D))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    outward = {}
    for activation in ("tanh", "silu"):
        net = DenseScoreNetwork(D, sigmas, hidden_sizes=(32, 32), data_mean=0.15, data_scale=0.36,
                                activation=activation, dtype="float64", seed=seed, backend="numpy")
        net.params *= 30
        radius = 1e3 * net.data_scale * (np.abs(net.mlp.weights[2]).sum() + np.abs(net.mlp.biases[2]).sum())
        outward[activation] = [np.sum(net.forward(0.15 + radius * directions, level) * directions, 1).max()
                               for level in range(sigmas.size)]
    assert max(outward["tanh"]) < 0, outward["tanh"]
    assert max(outward["silu"]) > 0, outward["silu"]
