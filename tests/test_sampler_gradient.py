"""The annealed Langevin sampler's gradient with respect to its Gaussian inputs (x_0, z_1..z_T):
the textbook recursion against central finite differences of the whole sampler, a closed form,
every backend against the textbook; the SGM's sampler gradient on the data scale, its traces and
its denoising step; the study's numbers made from it."""

import numpy as np
import pytest
from scipy import stats

from npgen import kernels, theory
from npgen.kernels import numpy_ref
from npgen.models.sgm import NOISE_LEVELS, SGM
from npgen.study import sampler
from npgen.nn.score import SLOPE, SLOPE_X, ScoreNetwork
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


# --------------------------------------------------------------------------- the model's sampler


def untrained_sgm(backend, sigmas=None):
    """A float64 SGM with its random network and a standardization set by hand (mean 0.3, sd 2)."""
    model = SGM(seed=5, dtype="float64", sigmas=sigmas, backend=backend)
    model.mean, model.std = 0.3, 2.0
    return model


SAMPLING = {"n_steps_per_level": 6, "step_lr": 2e-3, "quiet": True}


def test_sampler_gradient_is_the_kernels_on_the_data_scale():
    fast, slow = untrained_sgm("cpu"), untrained_sgm("numpy")
    plain = fast.sample(300, seed=4, **SAMPLING)
    samples, gradient = fast.sample(300, seed=4, lipschitz=True, **SAMPLING)
    np.testing.assert_array_equal(samples, plain)
    reference_samples, reference = slow.sample(300, seed=4, lipschitz=True, **SAMPLING)
    np.testing.assert_allclose(samples, reference_samples, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(gradient.grad_sq, reference.grad_sq, rtol=1e-10)
    np.testing.assert_allclose(gradient.dx0, reference.dx0, rtol=1e-10, atol=1e-12)
    assert np.abs(gradient.grad_sq - 1).max() > 0.5
    np.testing.assert_allclose(gradient.norm, 2.0 * np.sqrt(gradient.grad_sq), rtol=1e-15)
    np.testing.assert_allclose(gradient.x0_part ** 2 + gradient.noise_part ** 2, gradient.norm ** 2, rtol=1e-12)
    assert gradient.grad_sq_by_level.shape == (NOISE_LEVELS.size + 1, 300)
    np.testing.assert_array_equal(gradient.grad_sq_by_level[0], 1)
    np.testing.assert_array_equal(gradient.grad_sq_by_level[-1], gradient.grad_sq)


@pytest.mark.parametrize("backend", BACKENDS)
def test_traced_samples_follow_the_same_run_step_by_step(backend):
    model = untrained_sgm(backend)
    samples, gradient = model.sample(50, seed=6, lipschitz=True, **SAMPLING)
    traced = [0, 7, 49]
    again, by_step = model.sample(50, seed=6, lipschitz=True, trace=traced, **SAMPLING)
    np.testing.assert_array_equal(again, samples)
    assert by_step.grad_sq_by_step.shape == (NOISE_LEVELS.size * 6 + 1, 3)
    np.testing.assert_array_equal(by_step.grad_sq_by_step[::6], gradient.grad_sq_by_level[:, traced])


@pytest.mark.parametrize("seed", [6, None])
def test_a_traced_sample_ends_its_trace(seed):
    """sample(..., trace=...) runs the traced chains apart from the others; they are the same
    chains, a fresh seed's too: the last step of a trace is the sample's own |grad g|^2."""
    model = untrained_sgm("cpu")
    traced = np.array([5, 80, 299])
    _, gradient = model.sample(300, seed=seed, lipschitz=True, trace=traced, **SAMPLING)
    np.testing.assert_array_equal(gradient.traced, traced)
    np.testing.assert_array_equal(gradient.grad_sq_by_step[-1], gradient.grad_sq[traced])
    assert np.abs(gradient.grad_sq[traced] - 1).min() > 0


def traced_pass_over_all_chains(model, n, seed, traced):
    """grad_sq (T + 1, k) of the samples ``traced``, recorded after every step of a pass that
    moves all n chains one step per kernel call (as a pass with trace=... once did)."""
    x, noise_seed = model._chain_start(n, seed)
    beff2, beff3, alphas = model._chain_levels(SAMPLING["step_lr"])
    w = model.score.weights
    dx0, grad_sq = np.ones_like(x), np.ones_like(x)
    steps, S = [grad_sq[traced].copy()], SAMPLING["n_steps_per_level"]
    for level in range(alphas.size):
        for step in range(S):
            one = slice(level, level + 1)
            model.score.backend.annealed_langevin(
                x, w["fc_1.weight"], w["fc_1.bias"], w["fc_2.x"], beff2[one], w["fc_3.x"], beff3[one],
                alphas[one], 1, noise_seed, level * S + step, SLOPE_X, SLOPE, dx0, grad_sq)
            steps.append(grad_sq[traced].copy())
    return np.array(steps)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("denoise", [False, True])
def test_tracing_runs_the_traced_chains_alone_as_the_whole_pass_runs_them(backend, denoise):
    model = untrained_sgm(backend)
    samples, gradient = model.sample(300, seed=6, lipschitz=True, denoise=denoise, **SAMPLING)
    traced = np.array([299, 0, 7, 150])
    ends, by_step = model.trace(300, traced, seed=6, denoise=denoise, **SAMPLING)
    np.testing.assert_array_equal(ends, samples[traced])
    np.testing.assert_array_equal(by_step, traced_pass_over_all_chains(model, 300, 6, traced))
    np.testing.assert_array_equal(by_step[::6], gradient.grad_sq_by_level[:, traced])
    assert np.ptp(by_step, axis=0).min() > 0  # every trace moves


def test_denoising_step_carries_the_gradient():
    """x <- x + sigma_L^2 s(x) multiplies d x / d x_0 by f = 1 + sigma_L^2 s'(x) and |grad g|^2 by f^2;
    s' here by central differences of the score network."""
    model = untrained_sgm("cpu", sigmas=[1.0, 0.5])  # a large last level: f far from 1
    samples, plain = model.sample(20, seed=8, lipschitz=True, **SAMPLING)
    _, denoised = model.sample(20, seed=8, lipschitz=True, denoise=True, **SAMPLING)
    x = (samples.astype(np.float64) - model.mean) / model.std
    sigma = model.sigmas[-1]
    slope = (model.score.forward(x + EPS, sigma) - model.score.forward(x - EPS, sigma))[:, 0] / (2 * EPS)
    f = 1 + sigma ** 2 * slope
    assert np.abs(f - 1).min() > 1e-3
    assert_matches_fd(denoised.dx0 / plain.dx0 - 1, f - 1)
    assert_matches_fd(denoised.grad_sq / plain.grad_sq - 1, f ** 2 - 1)


# --------------------------------------------------------------------------- the study's sampler numbers


def test_mass_upper_limit_is_clopper_pearsons():
    assert sampler.mass_upper_limit(0, 1000) == pytest.approx(1 - 0.05 ** (1 / 1000), rel=1e-10)
    assert sampler.mass_upper_limit(1000, 1000) == 1.0
    # The limit covers: a mass of 0.01 gives 0 of 100 draws with probability 0.366 > 5%, so 0.01 < limit.
    assert 0.01 < sampler.mass_upper_limit(0, 100) < 0.03


def test_mass_lower_limit_is_clopper_pearsons():
    # count = n: P(n of n | p) = p^n = 5% at the limit; count = 1: P(X >= 1 | p) = 1 - (1 - p)^n = 5%.
    assert sampler.mass_lower_limit(1000, 1000) == pytest.approx(0.05 ** (1 / 1000), rel=1e-10)
    assert sampler.mass_lower_limit(1, 1000) == pytest.approx(1 - 0.95 ** (1 / 1000), rel=1e-10)
    assert sampler.mass_lower_limit(0, 1000) == 0.0
    assert sampler.mass_lower_limit(10, 1000) < 0.01 < sampler.mass_upper_limit(10, 1000)


def test_required_lipschitz_reads_both_sides():
    x = np.concatenate([np.full(700, -5.0), np.full(10, 0.1), np.full(290, 5.0)])
    demand = sampler.required_lipschitz(4.0, x)
    sides = [theory.theorem1_required_lipschitz(4.0, p, 0.01) for p in (0.7, 0.29)]
    assert demand.plugin == pytest.approx(max(sides), rel=1e-12)
    # The upper limit on the mass between asks for less, the lower limit for more.
    assert 0 < demand.low < demand.plugin < demand.high < np.inf
    lower_mass = stats.beta.ppf(0.05, 10, 991)
    assert demand.high == pytest.approx(theory.theorem1_required_lipschitz(4.0, 0.7, lower_mass), rel=1e-12)
    no_gap = sampler.required_lipschitz(4.0, np.concatenate([np.full(500, -5.0), np.full(500, 5.0)]))
    assert no_gap.plugin == no_gap.high == np.inf and np.isfinite(no_gap.low)
    assert not no_gap.met_by(1e300)  # no sample between: no finite constant is shown to meet it


def test_theorem1_verdict_is_conservative_in_simulation():
    """Samples of a push-forward with known masses (0.49, 0.02, 0.49) and so a known demand:
    the plug-in demand falls below the truth in about half the runs, the upper end of the
    interval in at most about 5%. A measured constant equal to the true demand lies inside the
    interval in such a run; the old reading (at or above the lower end) called that 'meets',
    the verdict does not, and only a constant above the upper end meets it."""
    m, n, masses = 4.0, 1000, (0.49, 0.02, 0.49)
    truth = float(theory.theorem1_required_lipschitz(m, masses[0], masses[1]))
    rng = np.random.default_rng(7)
    demands = [sampler.required_lipschitz(m, rng.choice([-5.0, 0.0, 5.0], size=n, p=masses)) for _ in range(400)]
    low, high, plugin = np.array(demands).T
    assert 0.35 < np.mean(plugin < truth) < 0.65
    slack = 3 * np.sqrt(0.05 * 0.95 / len(demands))
    assert np.mean(high < truth) <= 0.05 + slack and np.mean(low > truth) <= 0.05 + slack
    run = next(d for d in demands if d.plugin < truth)
    assert run.low <= truth <= run.high
    assert not run.met_by(truth)
    assert not run.met_by(run.high) and run.met_by(run.high * (1 + 1e-9))


def test_expansion_steps_count_the_steps_that_carry_the_growth():
    grad_sq = np.ones((11, 3))
    grad_sq[4:, 0] *= 10.0        # one step of growth
    grad_sq[2:, 1] *= 2.0         # two doublings and one thousandfold step: log 1000 is 83% of
    grad_sq[3:, 1] *= 2.0         # the growth, so 90% needs two steps
    grad_sq[8:, 1] *= 1000.0
    grad_sq[:, 2] = np.linspace(1, 0.5, 11)  # contraction only
    np.testing.assert_array_equal(sampler.expansion_steps(grad_sq), [1, 2, 0])
    np.testing.assert_array_equal(sampler.expansion_steps(grad_sq, share=0.8), [1, 1, 0])
    np.testing.assert_array_equal(sampler.expansion_steps(grad_sq, share=0.99), [1, 3, 0])


def test_sampler_draws_traces_the_run_samples_and_refuses_a_trace_of_others(monkeypatch):
    """The study's traced draws are what the whole traced pass records, and a trace whose
    chains end elsewhere than the run's samples stops the run."""
    model, config = untrained_sgm("cpu"), {"n_samples": 300, "m": 0.5}
    options = {key: SAMPLING[key] for key in ("n_steps_per_level", "step_lr")}
    samples, gradient = model.sample(300, seed=6, lipschitz=True, **SAMPLING)
    draws = sampler.sampler_draws(model, config, samples, gradient, 6, options)
    traced = sampler.traced_for(samples, gradient, config["m"])
    assert traced.size > 3
    np.testing.assert_array_equal(draws.traced.traced, traced)
    np.testing.assert_array_equal(draws.traced.grad_sq_by_step,
                                  traced_pass_over_all_chains(model, 300, 6, traced))
    np.testing.assert_array_equal(draws.traced.grad_sq, gradient.grad_sq)
    trace = model.trace

    def trace_ending_elsewhere(*args, **kwargs):
        ends, by_step = trace(*args, **kwargs)
        return np.nextafter(ends, np.inf), by_step
    monkeypatch.setattr(model, "trace", trace_ending_elsewhere)
    with pytest.raises(RuntimeError, match="the traced sampling pass drew other samples"):
        sampler.sampler_draws(model, config, samples, gradient, 6, options)


@pytest.mark.parametrize("trace, message", [
    ([3, 300], r"trace indices must lie in \[0, n - 1\] = \[0, 299\], got 3 to 300"),
    ([-1], r"trace indices must lie in \[0, n - 1\] = \[0, 299\], got -1 to -1"),
    ([0.5], "trace must be a non-empty 1-D sequence of sample indices"),
    ([], "trace must be a non-empty 1-D sequence of sample indices")])
def test_sgm_trace_refuses_indices_that_are_not_samples_in_one_sentence(trace, message):
    with pytest.raises(ValueError, match=message) as refused:
        untrained_sgm("cpu").trace(300, trace, seed=1, **SAMPLING)
    assert "\n" not in str(refused.value)
