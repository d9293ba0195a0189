"""The exact score of a blurred Gaussian mixture against finite differences of its log-density,
the Langevin chains on given noise (exact score and network) against the textbook, the
counter-based stream and central finite differences of the whole chain, and the searched
steep set against closed forms."""

import numpy as np
import pytest

from npgen.analysis.exact_score import (ExactChain, IsotropicMixture, exact_langevin_1d,
                                        exact_langevin_nd, relative_score_errors)
from npgen.analysis.sampler_search import NetworkChain, search_steep_set
from npgen.kernels import cpu, numpy_ref
from npgen.models.sgm import NOISE_LEVELS
from npgen.nn.score import ScoreNetwork
from finite_differences import EPS, assert_matches_fd, central_difference
from test_sgm import kernel_arguments

SLOPES = (0.01, 0.2)


def skewed_mixture(d=1):
    rng = np.random.default_rng(3)
    return IsotropicMixture([0.2, 0.5, 0.3], rng.standard_normal((3, d)) * 3, [0.5, 1.0, 2.0])


@pytest.mark.parametrize("d", [1, 5])
def test_score_is_the_gradient_of_the_log_density(d):
    mixture = skewed_mixture(d)
    x = np.random.default_rng(4).standard_normal((6, d)) * 3
    for sigma in (0.0, 0.7):
        score = mixture.score(x, sigma)
        for i in range(len(x)):
            row = x[i].copy()
            fd = central_difference(lambda: mixture.log_density(row[None], sigma)[0], row)
            assert_matches_fd(score[i], fd)


def test_log_density_is_the_mixture_formula():
    mixture = skewed_mixture(2)
    x = np.random.default_rng(5).standard_normal((4, 2))
    sigma = 0.4
    v = mixture.stds ** 2 + sigma ** 2
    dens = sum(w * np.exp(-np.sum((x - mu) ** 2, axis=1) / (2 * vk)) / (2 * np.pi * vk)
               for w, mu, vk in zip(mixture.weights, mixture.means, v))
    np.testing.assert_allclose(mixture.log_density(x, sigma), np.log(dens), rtol=1e-12)


def test_score_slope_is_the_derivative_of_the_score():
    mixture = skewed_mixture(1)
    x = np.linspace(-6, 6, 9)
    slope = mixture.score_slope(x, 0.3)
    point = np.zeros(1)
    for xi, si in zip(x, slope):
        point[0] = xi
        assert_matches_fd(np.array([si]), central_difference(lambda: mixture.score(point, 0.3)[0, 0], point))


def test_far_apart_components_stay_finite():
    mixture = IsotropicMixture.two_modes(1e4, std=1.0)
    x = np.array([-1e4 + 0.5, -3.0, 0.0, 2.0, 1e4 - 0.5, 3e4])
    score, slope = mixture.score(x)[:, 0], mixture.score_slope(x)
    assert np.isfinite(score).all() and np.isfinite(slope).all()
    # off the middle each point is the nearer component's alone: s = (mu - x) / 1, s' = -1;
    # at the middle the two pulls cancel
    nearer = np.where(x < 0, -1e4, 1e4)
    np.testing.assert_allclose(score[[0, 1, 3, 4, 5]], (nearer - x)[[0, 1, 3, 4, 5]], atol=1e-9)
    assert score[2] == 0.0
    np.testing.assert_allclose(slope[[0, 1, 3, 4, 5]], -1.0, atol=1e-9)
    assert slope[2] > 1e7  # at the middle, the responsibilities swap over a width of 1e-4


def test_standardized_score_is_the_data_score_in_other_units():
    mixture = IsotropicMixture.two_modes(3.0)
    mean, scale, sigma = 0.2, 3.1, 0.25
    z = np.linspace(-2, 2, 7)
    standardized = mixture.standardized(mean, scale).score(z, sigma)[:, 0]
    data = mixture.score(mean + scale * z, scale * sigma)[:, 0]
    np.testing.assert_allclose(standardized, scale * data, rtol=1e-12)


def test_bad_mixtures_are_refused():
    with pytest.raises(ValueError, match="weights"):
        IsotropicMixture([0.5, 0.6], [[0.0], [1.0]], [1.0, 1.0])
    with pytest.raises(ValueError, match="K weights"):
        IsotropicMixture([0.5, 0.5], [[0.0], [1.0]], [1.0])
    with pytest.raises(ValueError, match="points"):
        skewed_mixture(2).score(np.zeros((3, 3)))


# --------------------------------------------------------------------------- chains on given noise


def chain_setup(n=5, levels=3, steps=4, seed=6):
    rng = np.random.default_rng(seed)
    mixture = skewed_mixture(1)
    sigmas = np.array([2.0, 0.8, 0.3])[:levels]
    alphas = np.array([0.6, 0.2, 0.05])[:levels]
    return (ExactChain(sigmas, alphas, steps, mixture), rng.standard_normal(n) * 3,
            rng.standard_normal((n, levels * steps)))


def test_exact_chain_kernel_matches_the_textbook():
    chain, x0, noise = chain_setup()
    m = chain.mixture
    expected = numpy_ref.exact_score_langevin_given_noise(
        x0, np.log(m.weights), m.means[:, 0], m.variances(chain.sigmas), chain.alphas, noise,
        np.ones_like(x0), np.ones_like(x0))
    for got, want in zip(chain(x0, noise, track=True), expected):
        np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_allclose(chain(x0, noise), expected[0], rtol=1e-12)


def test_exact_chain_gradient_matches_finite_differences_of_the_chain():
    chain, x0, noise = chain_setup()
    x, dx0, grad_sq = chain(x0, noise, track=True)
    inputs = np.hstack([x0[:, None], noise])
    rows = []
    for j in range(inputs.shape[1]):  # every sample's input j at once (samples are independent)
        up, down = inputs.copy(), inputs.copy()
        up[:, j] += EPS
        down[:, j] -= EPS
        rows.append((chain(up[:, 0], up[:, 1:]) - chain(down[:, 0], down[:, 1:])) / (2 * EPS))
    fd = np.array(rows)
    assert np.abs(fd[0] - 1).max() > 0.05
    assert_matches_fd(dx0, fd[0])
    assert_matches_fd(grad_sq, np.sum(fd ** 2, axis=0))


def test_noise_block_is_the_stream():
    out = np.empty((7, 5))
    cpu.langevin_noise_block(99, 3, 4, out)
    keys = numpy_ref.langevin_sample_keys(99, 10)[3:]
    np.testing.assert_array_equal(out, np.stack([numpy_ref.langevin_noise(keys, t) for t in range(4, 9)], 1))
    np.testing.assert_array_equal(numpy_ref.langevin_noise_block(99, 10, 4, 5)[3:], out)
    even, odd = np.empty(7), np.empty(7)
    cpu.langevin_noise_pair(99, 3, 3, even, odd)  # steps 6 and 7, without libm: to rounding
    np.testing.assert_allclose(np.stack([even, odd], 1), out[:, 2:4], rtol=0, atol=1e-14)


def test_network_chain_on_the_stream_is_the_sampler_kernel():
    net = ScoreNetwork(seed=20, dtype="float64", backend="numpy")
    sigmas = NOISE_LEVELS[[0, 3, 6]]
    W1, b1, W2, beff2, W3, beff3, alphas = kernel_arguments(net, sigmas, step_lr=2e-3)
    n, steps, seed = 6, 5, 17
    x0 = np.random.default_rng(8).standard_normal(n)
    expected = [x0.copy(), np.ones(n), np.ones(n)]
    cpu.annealed_langevin(expected[0], W1, b1, W2, beff2, W3, beff3, alphas, steps, seed, 0,
                          *SLOPES, expected[1], expected[2])
    noise = np.empty((n, 3 * steps))
    cpu.langevin_noise_block(seed, 0, 0, noise)
    chain = NetworkChain(sigmas, alphas, steps, net)
    for got, want in zip(chain(x0, noise, track=True), expected):
        np.testing.assert_allclose(got, want, rtol=1e-9)
    textbook = numpy_ref.annealed_langevin_given_noise(x0, W1, b1, W2, beff2, W3, beff3, alphas,
                                                       noise.T.reshape(3, steps, n), *SLOPES)
    np.testing.assert_allclose(chain(x0, noise), textbook, rtol=1e-9)


def test_given_noise_kernels_refuse_bad_arrays():
    chain, x0, noise = chain_setup()
    m = chain.mixture
    args = (np.log(m.weights), m.means[:, 0], m.variances(chain.sigmas), chain.alphas)
    with pytest.raises(ValueError, match="float64"):
        cpu.exact_score_langevin_given_noise(x0.astype(np.float32), *args, noise)
    with pytest.raises(ValueError, match="shapes"):
        cpu.exact_score_langevin_given_noise(x0, *args, np.ascontiguousarray(noise[:, :-1]))
    with pytest.raises(ValueError, match="both or neither"):
        cpu.exact_score_langevin_given_noise(x0, *args, noise, np.ones_like(x0))


def test_exact_sampler_draws_the_sgm_stream():
    chain, _, _ = chain_setup(levels=3, steps=3)
    n, seed = 1500, 12  # more than one chunk
    x, dx0, grad_sq = exact_langevin_1d(chain, n, seed)
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(n, dtype=np.float32).astype(np.float64)
    noise = numpy_ref.langevin_noise_block(int(rng.integers(2 ** 63)), n, 0, 9)
    m = chain.mixture
    expected = numpy_ref.exact_score_langevin_given_noise(
        x0, np.log(m.weights), m.means[:, 0], m.variances(chain.sigmas), chain.alphas, noise,
        np.ones(n), np.ones(n))
    for got, want in zip((x, dx0, grad_sq), expected):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_exact_sampler_with_denoising_step():
    chain, _, _ = chain_setup()
    x, dx0, grad_sq = exact_langevin_1d(chain, 50, 3)
    y, dy0, grad_sq_y = exact_langevin_1d(chain, 50, 3, denoise=True)
    s2 = chain.sigmas[-1] ** 2
    f = 1 + s2 * chain.mixture.score_slope(x, chain.sigmas[-1])
    np.testing.assert_allclose(y, x + s2 * chain.mixture.score(x, chain.sigmas[-1])[:, 0])
    np.testing.assert_allclose(dy0, f * dx0)
    np.testing.assert_allclose(grad_sq_y, f * f * grad_sq)


def test_exact_sampler_recovers_the_mixture():
    """Levels from above the modes' distance, with steps alpha_l = 0.1 sigma_l^2 long enough to
    reach each level's equilibrium, on the exact score of 0.3 N(-1.3, 0.33^2) + 0.7 N(1.3,
    0.33^2) (about standardized): the shares of the two modes within 4 binomial standard
    errors, the modes' spread about 0.33."""
    mixture = IsotropicMixture([0.3, 0.7], [[-1.3], [1.3]], [0.33, 0.33])
    sigmas = np.geomspace(3, 0.02, 12)
    chain = ExactChain(sigmas, 0.1 * sigmas ** 2, 100, mixture)
    x, _, _ = exact_langevin_1d(chain, 4000, 1)
    share = np.mean(x < 0)
    assert abs(share - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 4000)
    assert 0.3 < x[x > 0].std() < 0.36


def test_exact_sampler_in_d_dimensions_draws_the_vector_stream():
    """The d-dim chain reads z(seed + c, i d + j, step) in chunk c, as the 784-d kernel does."""
    mixture = skewed_mixture(3)
    sigmas, alphas, steps, n, chunk, seed = np.array([3.0, 1.0]), np.array([0.5, 0.1]), 2, 5, 3, 4
    x = exact_langevin_nd(mixture, sigmas, alphas, steps, n, seed, start_mean=0.5, chunk=chunk)
    rng = np.random.default_rng(seed)
    y = (rng.standard_normal((n, 3)) * 3.0 + 0.5).astype(np.float32).astype(np.float64)
    noise_seed = int(rng.integers(2 ** 62))
    for c, first in enumerate(range(0, n, chunk)):
        rows = y[first:first + chunk]
        keys = numpy_ref.langevin_sample_keys(noise_seed + c, rows.size)
        for level in range(2):
            for step in range(level * steps, (level + 1) * steps):
                s = mixture.score(rows, sigmas[level])
                rows += alphas[level] / 2 * s + np.sqrt(alphas[level]) * numpy_ref.langevin_noise(
                    keys, step).reshape(rows.shape)
    np.testing.assert_allclose(x, y, rtol=1e-12)


def test_relative_score_errors():
    mixture = skewed_mixture(2)
    clean = np.random.default_rng(1).standard_normal((300, 2))
    sigmas = [1.0, 0.1]
    assert relative_score_errors(lambda x, l: mixture.score(x, sigmas[l]), mixture, sigmas, clean) == [0.0, 0.0]
    np.testing.assert_allclose(relative_score_errors(lambda x, l: np.zeros_like(x), mixture, sigmas, clean), 1.0)
    doubled = relative_score_errors(lambda x, l: 2 * mixture.score(x, sigmas[l]), mixture, sigmas, clean)
    np.testing.assert_allclose(doubled, 1.0)


# --------------------------------------------------------------------------- the steep set


def test_search_on_an_affine_sampler_finds_its_constant():
    """One Gaussian component: s_l(x) = (mu - x) / v_l is affine, so g is affine with
    d x_T / d x_0 = prod_l f_l^S and d x_T / d z (step t) = sqrt(alpha_l) times the f of the
    later steps, f_l = 1 - alpha_l / (2 v_l): Lip(g) = |grad g|, the same at every input."""
    mixture = IsotropicMixture([1.0], [[0.3]], [0.5])
    sigmas, alphas, steps = np.array([1.5, 0.6, 0.2]), np.array([0.4, 0.15, 0.03]), 5
    chain = ExactChain(sigmas, alphas, steps, mixture)
    f = np.repeat(1 - alphas / (2 * mixture.variances(sigmas)[:, 0]), steps)
    later = np.append(np.cumprod(f[::-1])[::-1][1:], 1.0)  # product of the f after step t
    gradient = np.concatenate([[np.prod(f)], np.repeat(np.sqrt(alphas), steps) * later])
    lip = np.linalg.norm(gradient)
    found = search_steep_set(chain, chain.n_inputs, threshold=0.3, pool=200, pairs=50)
    assert found.gradient_norm.size == 50
    assert found.largest <= lip * (1 + 1e-12)
    np.testing.assert_allclose(found.gradient_norm, lip, rtol=1e-10)
    np.testing.assert_allclose(np.abs(found.dx0), np.prod(f), rtol=1e-10)


def test_search_finds_the_steep_set_the_samples_hide():
    """Two far modes and a short, cold schedule: the chains commit to a mode early and hardly
    any sample ends near the gap, where g is steep. The sampled maximum of |grad g| misses
    it; the search, which crosses the gap, does not."""
    mixture = IsotropicMixture.two_modes(6.0, std=0.3)
    sigmas = np.array([3.0, 1.0, 0.3, 0.1])
    chain = ExactChain(sigmas, 0.2 * sigmas ** 2 / sigmas[-1] ** 2 * 0.1 ** 2, 10, mixture)
    x, _, grad_sq = exact_langevin_1d(chain, 2000, 5)
    assert np.mean(np.abs(x) < 3) < 0.01
    sampled = np.sqrt(grad_sq).max()
    found = search_steep_set(chain, chain.n_inputs, threshold=0.0, pool=400, pairs=40)
    assert found.n_below > 100 and found.n_above > 100
    assert found.largest >= sampled
    assert found.largest > 10 * sampled
    summary = found.summary(scale=2.0)
    assert summary["largest"] == pytest.approx(2 * found.largest)
    assert summary["largest_x0"] <= summary["largest"]
    assert summary["quantiles"]["0.1"] <= summary["quantiles"]["0.9"] <= summary["largest"]


def test_search_without_both_sides_finds_nothing():
    mixture = IsotropicMixture([1.0], [[0.0]], [0.5])
    chain = ExactChain(np.array([1.0]), np.array([0.1]), 3, mixture)
    found = search_steep_set(chain, chain.n_inputs, threshold=100.0, pool=50)
    assert found.gradient_norm.size == 0 and np.isnan(found.largest)
    assert found.summary()["largest"] is None and found.summary()["n_pairs"] == 0


def test_the_searched_trained_chain_is_the_sgms_own_sampler():
    """sampler_chains' network chain, fed the start and the stream of a sampling seed, draws
    the SGM's samples and their gradients (float64 model: the same arithmetic)."""
    from npgen.data import two_gaussians
    from npgen.models.sgm import SGM
    from npgen.study.exact_sampler import sampler_chains

    model = SGM(dtype="float64", seed=1, backend="cpu")
    model.fit(two_gaussians(3.0, n=400, seed=0), epochs=1, batch_size=100, quiet=True)
    n, seed = 40, 9
    samples, gradient = model.sample(n, seed=seed, quiet=True, lipschitz=True)
    trained, exact = sampler_chains(model, IsotropicMixture.two_modes(3.0).standardized(model.mean, model.std))
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(n)
    noise = np.empty((n, trained.n_inputs - 1))
    cpu.langevin_noise_block(int(rng.integers(2 ** 63)), 0, 0, noise)
    x, dx0, grad_sq = trained(x0, noise, track=True)
    np.testing.assert_allclose(x * model.std + model.mean, samples[:, 0], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(dx0, gradient.dx0, rtol=1e-7)
    np.testing.assert_allclose(grad_sq, gradient.grad_sq, rtol=1e-7)
    assert exact.n_inputs == trained.n_inputs and np.array_equal(exact.alphas, trained.alphas)


# --------------------------------------------------------------------------- the report's sentences


def _sgm_row(m, mass, exact_mass, searched, exact_searched, sampled=5.0, demand=50.0,
             demand_upper=80.0):
    from npgen.study.records import Run

    metrics = {"mass_between": mass, "collapse": None, "sampler_lipschitz": sampled,
               "theorem1_required_lipschitz": demand,
               "theorem1_required_lipschitz_upper": demand_upper,
               "sampler_search": {"trained": {"largest": searched}, "exact": {"largest": exact_searched}},
               "exact_sampler": {"mass_between": exact_mass, "lipschitz": 1.0, "theorem1_required_lipschitz": 70.0},
               "score_error_per_level": [{"sigma_standardized": 1.0, "relative_error": 0.5},
                                         {"sigma_standardized": 0.1, "relative_error": 0.25}]}
    return Run({"model": "sgm", "m": m, "seed": 0}, metrics, None)


def test_report_splits_the_mass_between_and_compares_steepness():
    from npgen.study import exact_sections, sampler_sections

    rows = [_sgm_row(4.0, 0.03, 0.01, 100.0, 120.0), _sgm_row(8.0, 0.02, 0.0, 1e6, 10.0)]
    lines = exact_sections.exact_score_statements(rows, [4.0, 8.0])
    assert "the sampler alone accounts for 0.01 and the network's score error adds 0.02" in lines[0]
    assert "as steep as the trained one, within a factor 2 (ratio 1.2)" in lines[0]
    assert "sigma 1: 0.5, sigma 0.1: 0.25" in lines[1]
    assert "less steep than the trained one (ratio 1e-05)" in lines[2]
    # Theorem 1's demand is met on the searched bound, not on the sampled one
    assert sampler_sections.meets(rows) == "2 of 2"
    assert exact_sections.certified_lower(rows[0].metrics) == 100.0
    none_found = _sgm_row(4.0, 0.0, 0.0, None, None)
    assert sampler_sections.meets([none_found]) == "0 of 1"
    # inside the demand's interval is not meeting it; an infinite upper end is never met
    assert sampler_sections.meets([_sgm_row(4.0, 0.03, 0.01, 60.0, 120.0)]) == "0 of 1"
    assert sampler_sections.meets([_sgm_row(4.0, 0.0, 0.01, 1e9, 120.0, demand_upper=None)]) == "0 of 1"
    assert "cannot be compared" in exact_sections.exact_score_statements([none_found], [4.0])[0]


def test_figure7_table_and_notes_show_the_exact_score_sampler():
    from npgen.study import figure7_report

    exact = {"n_samples": 2000, "mass_between": 0.01, "share_other": 0.02, "near_3": 0.49, "near_7": 0.48,
             "side_spread": 0.2, "outside_edges": 0}
    sgm = {"mass_between": 0.39, "exact_score": exact, "sigmas": [10.0, 0.01], "score_error_per_level": [1e-4, 2.1]}
    rows = figure7_report.exact_score_rows("mixture", {"sgm": [sgm]})
    assert rows[0][1] == "SGM sampler on the exact score (2000 samples per seed)" and rows[0][3] == "0.01"
    assert figure7_report.exact_score_rows("subset", {"sgm": [{"mass_between": 0.3}]}) == []
    notes = figure7_report.exact_score_notes({"mixture": {"sgm": [sgm]}})
    assert "sigma 10: 1.000e-04, sigma 0.01: 2.1" in notes[0]
    assert "the sampler alone accounts for 0.01 and the network's error adds 0.38" in notes[1]
    # over seeds: the per-level errors are averaged and every mass is mean ± std (n runs)
    other = dict(sgm, mass_between=0.41, exact_score=dict(exact, mass_between=0.03), score_error_per_level=[3e-4, 1.9])
    rows = figure7_report.exact_score_rows("mixture", {"sgm": [sgm, other]})
    assert rows[0][3] == "0.02 ± 0.01 (n=2)"
    notes = figure7_report.exact_score_notes({"mixture": {"sgm": [sgm, other]}})
    assert "mean over 2 seed(s)): sigma 10: 2.000e-04, sigma 0.01: 2" in notes[0]
    assert "the network's error adds 0.38 ± 0 (n=2)" in notes[1]
