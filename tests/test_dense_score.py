"""npgen.nn.dense_score and npgen.models.sgm.VectorSGM: the d-dimensional score network's
gradients against central finite differences, its backends against each other, the
d-dimensional Langevin kernel against the textbook, the noise-level and step-size rules against
their definitions, and a small SGM that finds both modes of a mixture."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from npgen import kernels
from npgen.kernels import cpu, numpy_backend, numpy_ref
from npgen.models.sgm import (VectorSGM, geometric_noise_levels, langevin_step_size,
                              largest_distance, stationary_variance_ratio)
from npgen.nn import DenseScoreNetwork, load_network
from finite_differences import assert_matches_fd, central_difference

BACKENDS = sorted(kernels.BACKENDS)
SIGMAS = (2.0, 0.7, 0.2)
LANGEVIN = {"numpy": numpy_backend.annealed_langevin_mlp, "cpu": cpu.annealed_langevin_mlp}


def small_network(backend="numpy", dtype="float64", activation="silu", seed=3):
    return DenseScoreNetwork(5, SIGMAS, hidden_sizes=(7, 6), data_scale=0.7, activation=activation,
                             dtype=dtype, seed=seed, backend=backend)


@pytest.mark.parametrize("activation", ["silu", "leaky_relu", "tanh"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_matches_finite_differences(backend, activation):
    rng = np.random.default_rng(1)
    net = small_network(backend, activation=activation)
    x = rng.standard_normal((6, 5))
    levels = np.array([0, 2, 1, 1, 0, 2])
    weights = rng.standard_normal((6, 5))
    net.forward(x, levels)
    grad_x = net.backward(weights)
    grads = [block.copy() for block in net.mlp.weight_grads + net.mlp.bias_grads]

    def loss():
        return float(np.sum(net.forward(x, levels) * weights))

    for block, grad in zip(net.mlp.weights + net.mlp.biases, grads):
        chosen = rng.choice(block.size, min(12, block.size), replace=False)
        assert_matches_fd(grad.flat[chosen], central_difference(loss, block, chosen))
    # every entry of the level-embedding columns E1 of the first layer
    block = net.mlp.weights[0]
    indices = np.arange(block.size).reshape(block.shape)[:, 5:].ravel()
    assert_matches_fd(grads[0].flat[indices], central_difference(loss, block, indices))
    assert_matches_fd(grad_x.ravel(), central_difference(loss, x))


def test_the_score_is_the_formula_and_layers_at_is_the_chain():
    """s = (s_d c / sigma) r(c (x - mu)) - c^2 (x - mu), c = 1 / sqrt(s_d^2 + sigma^2), and
    layers_at is the same function (its last layer reads [h2; x])."""
    rng = np.random.default_rng(2)
    net = DenseScoreNetwork(5, SIGMAS, hidden_sizes=(7, 6), data_mean=0.4, data_scale=0.7,
                            dtype="float64", seed=3, backend="numpy")
    x = rng.standard_normal((4, 5))
    for level, sigma in enumerate(SIGMAS):
        c = 1 / np.sqrt(0.7 ** 2 + sigma ** 2)
        s = net.forward(x, level)
        (W1, W2, W3), (b1, b2, b3) = net.mlp.weights, net.mlp.biases
        act = lambda z: numpy_ref.activation(net.activation_code, 0.2, z)  # noqa: E731
        a1 = act(c * (x - 0.4) @ W1[:, :5].T + W1[:, 5 + level] + b1)
        a2 = act(a1 @ W2.T + b2)
        r = a2 @ W3.T + b3
        np.testing.assert_allclose(s, 0.7 * c / sigma * r - c ** 2 * (x - 0.4), rtol=1e-12, atol=1e-12)
        nodes = [x]
        for layer in net.layers_at(level):
            h = np.hstack([nodes[j] for (j,) in layer.inputs])
            nodes.append(numpy_ref.activation(kernels.activation_code(layer.activation), layer.slope,
                                              h @ layer.weight.T + layer.bias))
        np.testing.assert_allclose(nodes[-1], s, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-11), ("float32", 2e-5)])
def test_cpu_and_numpy_backends_agree(dtype, tol):
    rng = np.random.default_rng(4)
    nets = {b: small_network(b, dtype=dtype) for b in BACKENDS}
    x = rng.standard_normal((9, 5)).astype(dtype)
    levels = rng.integers(3, size=9)
    grad = rng.standard_normal((9, 5)).astype(dtype)
    out = {b: (n.forward(x, levels), n.backward(grad), n.grads.copy()) for b, n in nets.items()}
    for a, b in zip(out["cpu"], out["numpy"]):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_save_and_load_round_trip(tmp_path):
    net = small_network()
    net.save(tmp_path / "score.npz")
    loaded = load_network(tmp_path / "score.npz", backend="numpy")
    assert isinstance(loaded, DenseScoreNetwork) and loaded.config() == net.config()
    np.testing.assert_array_equal(loaded.params, net.params)


# --------------------------------------------------------------------------- Langevin in R^d


def langevin_arguments(dtype, rng, n=6, d=5, h1=7, h2=4, levels=3):
    """Samples and kernel arguments with three levels (random weights, scales and center)."""
    net = DenseScoreNetwork(d, np.geomspace(3, 0.3, levels), hidden_sizes=(h1, h2), dtype=dtype,
                            seed=5, backend="numpy")
    x = rng.standard_normal((n, d)).astype(dtype)
    shapes = ((h1, d), (levels, h1), (h2, h1), (levels, h2), (d, h2), (d,), (levels,), (levels,))
    arrays = [(rng.standard_normal(shape) * 0.5).astype(dtype) for shape in shapes]
    arrays[7] = np.abs(arrays[7])
    alphas = np.geomspace(0.05, 0.005, levels).astype(dtype)
    return net, x, (*arrays, 0.3, alphas)


@pytest.mark.parametrize("first_step", [0, 3])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_langevin_kernel_matches_the_textbook(backend, dtype, tol, first_step):
    rng = np.random.default_rng(6)
    net, x, chain = langevin_arguments(dtype, rng)
    expected = numpy_ref.annealed_langevin_mlp(x, *chain, 4, 99, first_step, net.activation_code, 0.2)
    moved = x.copy()
    LANGEVIN[backend](moved, *chain, 4, 99, first_step, net.activation_code, 0.2)
    np.testing.assert_allclose(moved, expected, rtol=tol, atol=tol)
    assert not np.allclose(moved, x)


def test_langevin_textbook_is_the_formula_step_by_step():
    """One level, two steps, written out: x + (alpha/2) s(x) + sqrt(alpha) z with z the 1-D
    sampler's normals at the flat indices i d + j."""
    rng = np.random.default_rng(7)
    net = small_network()
    net.params[...] = rng.standard_normal(net.params.size) * 0.3
    x = rng.standard_normal((6, 5))
    alpha = 0.02
    expected = x.copy()
    keys = numpy_ref.langevin_sample_keys(11, x.size)
    for step in (2, 3):
        score = net.forward(expected, 1)
        z = numpy_ref.langevin_noise(keys, step).reshape(x.shape)
        expected = expected + alpha / 2 * score + np.sqrt(alpha) * z
    moved = numpy_ref.annealed_langevin_mlp(x, *net.langevin_arguments(1), np.array([alpha]), 2, 11, 2,
                                            net.activation_code, 0.2)
    np.testing.assert_allclose(moved, expected, rtol=1e-12, atol=1e-12)


def test_langevin_split_into_calls_draws_what_one_call_draws():
    rng = np.random.default_rng(8)
    net, x, (W1, beff1, W2, beff2, W3, b3, out, skip, center, alphas) = langevin_arguments("float64", rng)
    whole = x.copy()
    cpu.annealed_langevin_mlp(whole, W1, beff1, W2, beff2, W3, b3, out, skip, center, alphas, 3, 5, 0,
                              net.activation_code, 0.2)
    parts = x.copy()
    for level in range(3):
        one = slice(level, level + 1)
        cpu.annealed_langevin_mlp(parts, W1, beff1[one], W2, beff2[one], W3, b3, out[one], skip[one],
                                  center, alphas[one], 3, 5, 3 * level, net.activation_code, 0.2)
    np.testing.assert_allclose(parts, whole, rtol=1e-13, atol=1e-13)


def _noise_moves(n, d, first_step, steps, seed):
    """x = 0 moved by the cpu kernel with a zero score and alpha = 1, which moves it by its
    noise alone: x = z_first_step (+ z_first_step+1 ...), each coordinate's, exactly."""
    zeros = np.zeros
    x = zeros((n, d))
    one = np.ones(1)
    cpu.annealed_langevin_mlp(x, zeros((3, d)), zeros((1, 3)), zeros((2, 3)), zeros((1, 2)), zeros((d, 2)),
                              zeros(d), 0 * one, 0 * one, 0.0, one, steps, seed, first_step, kernels.SILU, 0.2)
    return x


def test_the_vector_sampler_draws_the_noise_pair_bit_for_bit():
    """The exact-score sampler in d dimensions reads langevin_noise_pair; the kernel's normals
    are the same numbers, on a call's first step (even or odd) and from the kept odd half, and
    numpy_ref's stream to rounding."""
    n, d, seed, pair = 7, 9, 2 ** 62 + 5, 5
    even, odd = np.empty(n * d), np.empty(n * d)
    cpu.langevin_noise_pair(seed, 0, pair, even, odd)
    np.testing.assert_array_equal(_noise_moves(n, d, 2 * pair, 1, seed).ravel(), even)
    np.testing.assert_array_equal(_noise_moves(n, d, 2 * pair + 1, 1, seed).ravel(), odd)
    np.testing.assert_array_equal(_noise_moves(n, d, 2 * pair, 2, seed).ravel(), even + odd)
    keys = numpy_ref.langevin_sample_keys(seed, n * d)
    for step, drawn in ((2 * pair, even), (2 * pair + 1, odd)):
        np.testing.assert_allclose(drawn, numpy_ref.langevin_noise(keys, step), rtol=0, atol=1e-14)


def test_the_noise_pair_is_standard_normal_over_many_draws():
    """A million normals of the vectorised draw: mean 0, variance 1, and the quantiles of
    N(0, 1) (Kolmogorov-Smirnov distance well below its 1% critical value, 1.63 / sqrt(n))."""
    from scipy import stats
    n = 500_000
    even, odd = np.empty(n), np.empty(n)
    cpu.langevin_noise_pair(17, 0, 12, even, odd)
    z = np.concatenate([even, odd])
    assert abs(z.mean()) < 5 / np.sqrt(z.size) and abs(z.var() - 1) < 5 * np.sqrt(2 / z.size)
    assert stats.kstest(z, "norm").statistic < 1.63 / np.sqrt(z.size)
    assert abs(np.corrcoef(even, odd)[0, 1]) < 5 / np.sqrt(n)


_THREADS_PROBE = textwrap.dedent("""
    import sys
    import numpy as np
    from npgen import kernels
    from npgen.kernels import cpu
    rng = np.random.default_rng(0)
    n, d, h1, h2, L = 64, 20, 16, 12, 2
    x = rng.standard_normal((n, d)).astype(np.float32)
    W1, W2, W3 = (rng.standard_normal(s).astype(np.float32) * 0.3 for s in ((h1, d), (h2, h1), (d, h2)))
    B1, B2 = rng.standard_normal((L, h1)).astype(np.float32), rng.standard_normal((L, h2)).astype(np.float32)
    b3, scales, alphas = np.zeros(d, np.float32), np.ones(L, np.float32), np.full(L, 1e-2, np.float32)
    cpu.annealed_langevin_mlp(x, W1, B1, W2, B2, W3, b3, scales, scales, 0.1, alphas, 3, 42, 1,
                              kernels.SILU, 0.2)
    np.save(sys.argv[1], x)
""")


def test_the_vector_sampler_draws_the_same_numbers_on_any_number_of_threads(tmp_path):
    runs = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        path = tmp_path / f"x{threads}.npy"
        result = subprocess.run([sys.executable, "-c", _THREADS_PROBE, str(path)], env=env,
                                cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr
        runs.append(np.load(path))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_langevin_kernel_refuses_shapes_that_do_not_fit():
    rng = np.random.default_rng(9)
    _, x, chain = langevin_arguments("float64", rng)
    with pytest.raises(ValueError, match="shapes do not fit"):
        cpu.annealed_langevin_mlp(x[:, :4].copy(), *chain, 1, 0, 0, kernels.SILU, 0.2)


_ALLOCATION_PROBE = textwrap.dedent("""
    import numpy as np
    from numba.core.runtime import rtsys
    from npgen.kernels import cpu
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        n, d, h1, h2, L = 20, 6, 8, 5, 2
        x, raw, z_odd = rng.random((3, n, d)).astype(dtype)
        z1, a1 = rng.random((2, n, h1)).astype(dtype)
        z2, a2 = rng.random((2, n, h2)).astype(dtype)
        W1, W2, W3 = (rng.random(s).astype(dtype) for s in ((h1, d), (h2, h1), (d, h2)))
        B1, B2 = rng.random((L, h1)).astype(dtype), rng.random((L, h2)).astype(dtype)
        b3, out, al = rng.random(d).astype(dtype), np.ones(L, dtype), np.full(L, 1e-3, dtype)
        args = (x, W1, B1, W2, B2, W3, b3, out, out, 0.5, al, 3, 7, 0, 4, 0.2, z1, a1, z2, a2, raw, z_odd)
        cpu._langevin_mlp_loop(*args)
        before = rtsys.get_allocation_stats().alloc
        cpu._langevin_mlp_loop(*args)
        arrays = sum(isinstance(a, np.ndarray) for a in args)
        assert rtsys.get_allocation_stats().alloc - before - arrays <= 0
""")


def test_langevin_loop_allocates_nothing():
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    result = subprocess.run([sys.executable, "-c", _ALLOCATION_PROBE], env=env,
                            cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- the SGM's settings


def test_largest_distance_is_the_brute_force_maximum():
    rng = np.random.default_rng(10)
    data = rng.standard_normal((60, 7))
    brute = max(np.linalg.norm(a - b) for a in data for b in data)
    assert largest_distance(data) == pytest.approx(brute, rel=1e-12)
    # on a subsample it can only be smaller
    assert largest_distance(data, rows=20) <= brute * (1 + 1e-12)


def test_geometric_levels_run_from_the_largest_to_the_smallest():
    levels = geometric_noise_levels(20.0, 0.01, 5)
    np.testing.assert_allclose(levels, [20 * (0.01 / 20) ** (k / 4) for k in range(5)], rtol=1e-13)
    with pytest.raises(ValueError, match="sigma_min"):
        geometric_noise_levels(1.0, 2.0, 5)


@pytest.mark.parametrize("gamma, steps, a", [(1.1, 5, 0.05), (1.46, 10, 0.2), (3.0, 1, 0.5)])
def test_stationary_variance_ratio_is_the_variance_of_npgen_steps(gamma, steps, a):
    """npgen's step on the score -x / s^2 of N(0, s^2), alpha = eps s^2 / sigma_L^2 with
    eps = 2 a sigma_L^2, is x <- (1 - alpha / (2 s^2)) x + sqrt(alpha) z: iterate its variance
    from (gamma s)^2 and compare with the closed form."""
    s = 0.37
    alpha = 2 * a * s ** 2
    v = (gamma * s) ** 2
    for _ in range(steps):
        v = (1 - alpha / (2 * s ** 2)) ** 2 * v + alpha
    assert stationary_variance_ratio(a, gamma, steps) == pytest.approx(v / s ** 2, rel=1e-12)


def test_step_size_brings_the_ratio_closest_to_one():
    sigmas = np.geomspace(10, 0.01, 30)
    eps, ratio = langevin_step_size(sigmas, 5)
    gamma = sigmas[0] / sigmas[1]
    assert ratio == pytest.approx(stationary_variance_ratio(eps / (2 * sigmas[-1] ** 2), gamma, 5))
    grid = np.linspace(1e-4, 0.99, 5000)
    assert abs(ratio - 1) <= np.abs(stationary_variance_ratio(grid, gamma, 5) - 1).min() + 1e-6


# --------------------------------------------------------------------------- the model


def test_denoising_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(11)
    model = VectorSGM(4, [1.5, 0.5, 0.1], hidden_sizes=(6, 5), data_mean=0.2, data_scale=1.3,
                      dtype="float64", seed=2, backend="numpy")
    x = rng.standard_normal((5, 4))
    eps = rng.standard_normal((5, 4))
    levels = np.array([0, 1, 2, 2, 1])
    model.denoising_loss(x, eps, levels)
    grads = model.score.grads.copy()

    def loss():
        return model.denoising_loss(x, eps, levels)

    chosen = rng.choice(model.score.params.size, 40, replace=False)
    assert_matches_fd(grads[chosen], central_difference(loss, model.score.params, chosen))
    # the definition: 1/(2B) sum_i sigma_i^2 ||s(x_i + sigma_i eps_i) + eps_i / sigma_i||^2
    sig = np.array([1.5, 0.5, 0.1])[levels][:, None]
    s = model.score.forward(x + sig * eps, levels)
    assert loss() == pytest.approx(float(np.sum(sig ** 2 * (s + eps / sig) ** 2)) / 10, rel=1e-12)


def test_a_small_sgm_puts_mass_in_both_modes_of_a_mixture():
    """Two modes at -+3 (1, 1, 1, 1) in R^4, noise 0.3: the sampler must put at least a quarter
    of its samples near each and few in between."""
    rng = np.random.default_rng(12)
    centre = np.full(4, 3.0) / 2
    signs = rng.choice([-1.0, 1.0], 4000)
    data = (signs[:, None] * centre + 0.3 * rng.standard_normal((4000, 4))).astype(np.float32)
    sigmas = geometric_noise_levels(largest_distance(data), 0.05, 10)
    model = VectorSGM(4, sigmas, hidden_sizes=(64, 64), data_mean=float(data.mean()),
                      data_scale=float(data.std()), n_steps_per_level=20, lr=2e-3, seed=0)
    model.fit(data, epochs=30, batch_size=128, quiet=True)
    samples = model.sample(2000, seed=1, quiet=True)
    projection = samples @ centre / np.linalg.norm(centre)
    left, right = np.mean(projection < -1.5), np.mean(projection > 1.5)
    assert left > 0.25 and right > 0.25, (left, right)
    assert np.mean(np.abs(projection) < 0.75) < 0.05


def test_save_load_samples_the_same(tmp_path):
    data = np.random.default_rng(13).standard_normal((64, 3)).astype(np.float32)
    model = VectorSGM(3, [2.0, 0.5, 0.1], hidden_sizes=(8, 8), seed=1)
    model.fit(data, epochs=1, batch_size=32, quiet=True)
    model.save(tmp_path / "sgm")
    loaded = VectorSGM.load(tmp_path / "sgm")
    np.testing.assert_array_equal(loaded.sample(7, seed=3, quiet=True), model.sample(7, seed=3, quiet=True))
    assert loaded.config() == model.config()


def test_npgen_lipschitz_reads_a_dense_score_network(tmp_path):
    from npgen.analysis.lipschitz import jacobian_norm_search, lipschitz_report
    net = small_network(dtype="float32")
    net.save(tmp_path / "score.npz")
    text = lipschitz_report(tmp_path / "score.npz")
    rows = [line.split() for line in text.splitlines()[3:]]
    assert [float(r[0]) for r in rows] == pytest.approx(list(SIGMAS), rel=1e-3)
    for level, (_, upper, lower) in enumerate(rows):
        assert 0 < float(lower) <= float(upper)
        # the searched lower bound is a Jacobian norm the network really has
        found, _ = jacobian_norm_search(net.layers_at(level), n_starts=4, steps=20)
        assert found <= float(upper) * (1 + 1e-6)
    assert len(lipschitz_report(tmp_path / "score.npz", sigmas=[0.7]).splitlines()) == 4
    with pytest.raises(ValueError, match="--sigma 0.5 is not a noise level"):
        lipschitz_report(tmp_path / "score.npz", sigmas=[0.5])
