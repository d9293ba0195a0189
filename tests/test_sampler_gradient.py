"""The annealed Langevin sampler's gradient with respect to its Gaussian inputs (x_0, z_1..z_T):
the textbook recursion against central finite differences of the whole sampler, a closed form,
and every backend against the textbook."""

import numpy as np
import pytest

from npgen import kernels
from npgen.kernels import numpy_ref
from npgen.models.sgm import NOISE_LEVELS
from npgen.nn.score import ScoreNetwork
from finite_differences import EPS, assert_matches_fd
from test_sgm import LANGEVIN, kernel_arguments, linear_score_weights

BACKENDS = sorted(kernels.BACKENDS)
SLOPES = (0.01, 0.2)


def steep_arguments(dtype="float64", seed=20):
    """A random score network at three levels with step sizes large enough that the
    per-step factors f = 1 + (alpha / 2) s'(x) are far from 1."""
    net = ScoreNetwork(seed=seed, dtype=dtype, backend="numpy")
    return kernel_arguments(net, NOISE_LEVELS[[0, 3, 6]], step_lr=2e-3)


def sampler_gradient_by_fd(args, x0, noise):
    """d x_T / d (x_0, z_1..z_T) for every sample, by central differences of the whole
    sampler with its noise given: rows are the T + 1 inputs, columns the samples (samples
    are independent, so one input of every sample is perturbed at once)."""
    def run(x, z):
        return numpy_ref.annealed_langevin_given_noise(x, *args, z, *SLOPES)

    rows = []
    for step in range(-1, noise[..., 0].size):
        values = x0 if step < 0 else noise.reshape(-1, x0.size)[step]
        keep = values.copy()
        values += EPS
        up = run(x0, noise)
        values[...] = keep - EPS
        down = run(x0, noise)
        values[...] = keep
        rows.append((up - down) / (2 * EPS))
    return np.array(rows)


def test_gradient_recursion_matches_finite_differences_of_the_sampler():
    args = steep_arguments()
    rng = np.random.default_rng(21)
    x0 = rng.standard_normal(4) * 2
    noise = rng.standard_normal((3, 6, 4))  # 3 levels x 6 steps x 4 samples
    x, dx0, grad_sq = numpy_ref.annealed_langevin_given_noise(x0, *args, noise, *SLOPES,
                                                              np.ones(4), np.ones(4))
    np.testing.assert_array_equal(x, numpy_ref.annealed_langevin_given_noise(x0, *args, noise,
                                                                             *SLOPES))
    fd = sampler_gradient_by_fd(args, x0, noise)
    assert np.abs(fd[0] - 1).max() > 0.05  # the map is not close to the identity in x_0
    assert_matches_fd(dx0, fd[0])
    assert_matches_fd(grad_sq, np.sum(fd ** 2, axis=0))


def test_gradient_recursion_continues_from_given_values():
    """Two calls, the second started from the first one's (x, dx0, grad_sq), are one run."""
    args = steep_arguments()
    rng = np.random.default_rng(22)
    x0, noise = rng.standard_normal(5), rng.standard_normal((3, 4, 5))
    whole = numpy_ref.annealed_langevin_given_noise(x0, *args, noise, *SLOPES, np.ones(5), None)
    W1, b1, W2, beff2, W3, beff3, alphas = args
    state = (x0, None, np.ones(5))
    for part in (slice(0, 1), slice(1, 3)):
        state = numpy_ref.annealed_langevin_given_noise(
            state[0], W1, b1, W2, beff2[part], W3, beff3[part], alphas[part], noise[part],
            *SLOPES, *state[1:])
    for joined, single in zip(state, whole):
        np.testing.assert_allclose(joined, single, rtol=1e-14, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_of_a_linear_score_has_its_closed_form(backend):
    """With s(x) = -c (x - mu) every step has f = 1 - alpha c / 2, so after S steps
    dx0 = f^S and grad_sq = f^(2S) + alpha (1 - f^(2S)) / (1 - f^2)."""
    mu, c, alpha, steps = 0.5, np.array([0.8]), 0.3, 40
    W1, b1, W2, beff2, W3, scale, shift = linear_score_weights(c, mu, np.float64)
    weights = (W1, b1, W2, beff2, W3 * scale[0], shift)
    x = np.random.default_rng(23).standard_normal(50)
    dx0, grad_sq = np.ones(50), np.ones(50)
    LANGEVIN[backend](x, *weights, np.array([alpha]), steps, 3, 0, *SLOPES, dx0, grad_sq)
    f = 1 - alpha * c[0] / 2
    np.testing.assert_allclose(dx0, f ** steps, rtol=1e-12)
    np.testing.assert_allclose(grad_sq, f ** (2 * steps) + alpha * (1 - f ** (2 * steps))
                               / (1 - f ** 2), rtol=1e-12)


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-11), ("float32", 2e-4)])
def test_cpu_gradient_matches_the_textbook(dtype, tolerance):
    args = steep_arguments(dtype)
    x0 = (np.random.default_rng(24).standard_normal(300) * 2).astype(dtype)
    ref = numpy_ref.annealed_langevin(x0, *args, 7, 11, 0, *SLOPES, np.ones_like(x0),
                                      np.ones_like(x0))
    assert np.abs(ref[2] - 1).max() > 0.5
    x, dx0, grad_sq = x0.copy(), np.ones_like(x0), np.ones_like(x0)
    LANGEVIN["cpu"](x, *args, 7, 11, 0, *SLOPES, dx0, grad_sq)
    for fast, slow in zip((x, dx0, grad_sq), ref):
        assert fast.dtype == np.dtype(dtype)
        np.testing.assert_allclose(fast, slow, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_is_carried_across_calls_and_optional(backend):
    """One level per call with the step counter and the gradient carried on is one run; the
    samples do not depend on whether the gradient is tracked; either array may come alone."""
    args = steep_arguments()
    x0 = np.random.default_rng(25).standard_normal(40)
    once = [x0.copy(), np.ones(40), np.ones(40)]
    LANGEVIN[backend](once[0], *args, 5, 13, 0, *SLOPES, once[1], once[2])
    state = [x0.copy(), np.ones(40), np.ones(40)]
    W1, b1, W2, beff2, W3, beff3, alphas = args
    for level in range(3):
        one = slice(level, level + 1)
        LANGEVIN[backend](state[0], W1, b1, W2, beff2[one], W3, beff3[one], alphas[one], 5, 13,
                          5 * level, *SLOPES, state[1], state[2])
    for carried, single in zip(state, once):
        np.testing.assert_allclose(carried, single, rtol=1e-13, atol=1e-13)
    untracked = x0.copy()
    LANGEVIN[backend](untracked, *args, 5, 13, 0, *SLOPES)
    np.testing.assert_allclose(untracked, once[0], rtol=1e-13, atol=1e-13)
    for alone in ("dx0", "grad_sq"):
        x, values = x0.copy(), np.ones(40)
        LANGEVIN[backend](x, *args, 5, 13, 0, *SLOPES, **{alone: values})
        np.testing.assert_allclose(values, once[1 if alone == "dx0" else 2], rtol=1e-13)


def test_textbook_sampler_returns_new_gradient_arrays():
    args = steep_arguments()
    x0, dx0, grad_sq = np.random.default_rng(26).standard_normal(6), np.ones(6), np.ones(6)
    x, new_dx0, new_grad_sq = numpy_ref.annealed_langevin(x0, *args, 3, 1, 0, *SLOPES, dx0,
                                                          grad_sq)
    np.testing.assert_array_equal(dx0, 1)
    np.testing.assert_array_equal(grad_sq, 1)
    for new, old in ((x, x0), (new_dx0, dx0), (new_grad_sq, grad_sq)):
        assert np.abs(new - old).min() > 0
