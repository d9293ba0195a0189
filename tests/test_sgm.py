"""npgen.nn.score and npgen.models.sgm: the score network's gradients against central finite differences,
its fixed-sigma chain, the Langevin kernels against each other and against a known score,
learning a Gaussian, persistence and the errors a user sees."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from npgen import kernels
from npgen.kernels import cpu, numpy_backend, numpy_ref
from npgen.models.sgm import NOISE_LEVELS, SGM
from npgen.nn.score import ScoreNetwork, sinusoidal_features
from finite_differences import assert_matches_fd, central_difference

BACKENDS = sorted(kernels.BACKENDS)
LANGEVIN = {"numpy": numpy_backend.annealed_langevin, "cpu": cpu.annealed_langevin}


def check_parameter_gradients(net, grads, loss, per_block, seed=0):
    """Compare ``grads`` (name -> gradient block) with central differences of ``loss`` for a
    few entries of every parameter block, the embedding MLP's included."""
    rng = np.random.default_rng(seed)
    for name, block in net.weights.items():
        chosen = rng.choice(block.size, min(per_block, block.size), replace=False)
        assert_matches_fd(grads[name].flat[chosen], central_difference(loss, block, chosen))


# --------------------------------------------------------------------------- score network


def test_sinusoidal_features_match_the_published_formula():
    for sigma in (0.0, 0.0101, 0.36, 1.0, 7.5):
        freqs = [10000.0 ** (-k / 7) for k in range(8)]
        expected = [math.sin(sigma * f) for f in freqs] + [math.cos(sigma * f) for f in freqs]
        np.testing.assert_allclose(sinusoidal_features(sigma), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_score_backward_matches_finite_differences(backend):
    rng = np.random.default_rng(1)
    net = ScoreNetwork(dtype="float64", seed=4, backend=backend)
    x = rng.standard_normal((7, 1)) * 2
    weights = rng.standard_normal((7, 1))
    sigma = 0.36
    net.forward(x, sigma)
    grad_x = net.backward(weights)
    grads = {name: block.copy() for name, block in net.weight_grads.items()}

    def loss():
        return float(np.sum(net.forward(x, sigma) * weights))

    check_parameter_gradients(net, grads, loss, per_block=4)
    assert_matches_fd(grad_x.ravel(), central_difference(loss, x, range(x.size)))


@pytest.mark.parametrize("weighting", ["paper", "sigma2"])
def test_denoising_loss_and_gradient(weighting):
    rng = np.random.default_rng(2)
    model = SGM(weighting=weighting, dtype="float64", seed=5)
    x = rng.standard_normal((9, 1))
    eps = rng.standard_normal((9, 1))
    sigma = 0.6 ** 3
    loss = model.denoising_loss(x, eps, sigma)
    grads = {name: block.copy() for name, block in model.score.weight_grads.items()}
    noisy = x + sigma * eps
    weight = sigma if weighting == "paper" else sigma ** 2
    expected = weight * np.sum((model.score.forward(noisy, sigma) - (x - noisy) / sigma ** 2) ** 2)
    assert loss == pytest.approx(expected, rel=1e-12)
    check_parameter_gradients(model.score, grads, lambda: model.denoising_loss(x, eps, sigma),
                              per_block=3)


def evaluate_chain(layers, x):
    """Plain-numpy evaluation of a list of AffineLayer on inputs x (n, 1)."""
    nodes = [x]
    for layer in layers:
        h = np.concatenate([sum(nodes[j] for j in segment) for segment in layer.inputs], axis=1)
        z = h @ layer.weight.T + layer.bias
        if layer.activation == "leaky_relu":
            z = np.where(z > 0, z, layer.slope * z)
        else:
            assert layer.activation == "identity"
        nodes.append(z)
    return nodes[-1]


def test_layers_at_is_the_network_with_sigma_fixed():
    net = ScoreNetwork(dtype="float64", seed=6, backend="numpy")
    x = np.linspace(-10, 10, 2001)[:, None]
    for sigma in (0.0, *NOISE_LEVELS[[0, 4, 9]]):
        layers = net.layers_at(sigma)
        assert [layer.weight.shape for layer in layers] == [(96, 1), (196, 96), (1, 196)]
        np.testing.assert_allclose(evaluate_chain(layers, x), net.forward(x, sigma),
                                   rtol=1e-12, atol=1e-12)


def test_score_network_matches_torch_scorenet():
    """The published ScoreNet (rebuilt in torch, when torch is installed) computes the same
    function and the same gradients from the same state_dict."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    def embedding(sigma):
        freqs = torch.exp(torch.arange(8, dtype=torch.float64) * -(math.log(10000) / 7))
        angles = sigma[:, None] * freqs[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    net = ScoreNetwork(dtype="float64", seed=7, backend="numpy")
    p = {k: torch.tensor(v, requires_grad=True) for k, v in net.state_dict().items()}
    x = np.random.default_rng(3).standard_normal((20, 1)) * 3
    xt = torch.tensor(x, requires_grad=True)
    e = embedding(torch.full((20,), 0.13, dtype=torch.float64))
    e = F.leaky_relu(F.linear(e, p["sigma_emb_1.weight"], p["sigma_emb_1.bias"]), 0.2)
    e = F.leaky_relu(F.linear(e, p["sigma_emb_2.weight"], p["sigma_emb_2.bias"]), 0.2)
    h = F.leaky_relu(F.linear(xt, p["fc_1.weight"], p["fc_1.bias"]))
    h = F.linear(torch.cat([h, e], -1), p["fc_2.weight"], p["fc_2.bias"])
    s = F.linear(F.leaky_relu(torch.cat([h, e], -1), 0.2), p["fc_3.weight"], p["fc_3.bias"])
    s.sum().backward()
    np.testing.assert_allclose(net.forward(x, 0.13), s.detach().numpy(), rtol=1e-12, atol=1e-12)
    grad_x = net.backward(np.ones_like(x))
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    as_state = ScoreNetwork(dtype="float64", backend="numpy")
    as_state.params[...] = net.grads
    for key, value in as_state.state_dict().items():
        np.testing.assert_allclose(value, p[key].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=key)


def test_state_dict_round_trip_and_names():
    net = ScoreNetwork(seed=8, backend="numpy")
    state = net.state_dict()
    assert state["fc_2.weight"].shape == (196, 160) and state["fc_3.weight"].shape == (1, 260)
    other = ScoreNetwork(seed=9, backend="numpy")
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.params, net.params)
    bad = dict(state, **{"fc_1.bias": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="fc_1.bias"):
        other.load_state_dict(bad)


# --------------------------------------------------------------------------- Langevin kernels


def kernel_arguments(net, sigmas, step_lr=2e-5):
    w = net.weights
    beff2, beff3 = net.effective_biases(sigmas)
    alphas = (step_lr * np.asarray(sigmas) ** 2 / sigmas[-1] ** 2).astype(net.dtype)
    return w["fc_1.weight"], w["fc_1.bias"], w["fc_2.x"], beff2, w["fc_3.x"], beff3, alphas


def run_langevin(backend, x, args, n_steps, seed, first_step=0):
    x = x.copy()
    W1, b1, W2, beff2, W3, beff3, alphas = args
    LANGEVIN[backend](x, W1, b1, W2, beff2, W3, beff3, alphas, n_steps, seed, first_step, 0.01, 0.2)
    return x


@pytest.mark.parametrize("edge_units", [False, True])
def test_langevin_numba_matches_numpy_reference(edge_units):
    net = ScoreNetwork(seed=10, backend="numpy")
    if edge_units:  # a first-layer unit without a kink, and two units with the same kink
        w = net.weights
        w["fc_1.weight"][0] = 0
        w["fc_1.weight"][2], w["fc_1.bias"][2] = 2 * w["fc_1.weight"][1], 2 * w["fc_1.bias"][1]
    args = kernel_arguments(net, NOISE_LEVELS[[0, 5]])
    x0 = np.random.default_rng(4).standard_normal(500).astype(np.float32) * 3
    ref = run_langevin("numpy", x0, args, 5, seed=11)
    fast = run_langevin("cpu", x0, args, 5, seed=11)
    assert np.abs(ref - x0).max() > 0.1
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_langevin_is_a_function_of_seed_sample_and_step(backend):
    net = ScoreNetwork(seed=12, backend="numpy")
    args = kernel_arguments(net, NOISE_LEVELS[[1, 2, 3]])
    x0 = np.random.default_rng(5).standard_normal(64).astype(np.float32)
    once = run_langevin(backend, x0, args, 3, seed=13)
    np.testing.assert_array_equal(run_langevin(backend, x0, args, 3, seed=13), once)
    assert np.abs(run_langevin(backend, x0, args, 3, seed=14) - once).min() > 0
    # One level per call, with the step counter carried on, is the same run.
    by_level = x0.copy()
    for level in range(3):
        one = slice(level, level + 1)
        W1, b1, W2, beff2, W3, beff3, alphas = args
        by_level = run_langevin(backend, by_level, (W1, b1, W2, beff2[one], W3, beff3[one],
                                                    alphas[one]), 3, seed=13, first_step=3 * level)
    np.testing.assert_allclose(by_level, once, rtol=1e-6, atol=1e-6)
    # A sample's path does not depend on the other samples (nor on how they are grouped).
    moved = x0.copy()
    moved[::2] += 1.0
    np.testing.assert_array_equal(run_langevin(backend, moved, args, 3, seed=13)[1::2], once[1::2])


ROW_KERNELS = ("numpy_ref", "numpy", "cpu")


def run_on_rows(kernel, x, args, gradient, rows=None):
    """(x, and dx0, grad_sq where ``gradient`` is given) after 4 steps per level of ``kernel``
    (numpy_ref's textbook sampler or a backend's, in place on copies), chain j drawing the
    noise of sample rows[j]."""
    options = dict(n_steps_per_level=4, seed=17, first_step=0, slope1=0.01, slope2=0.2, rows=rows)
    if kernel == "numpy_ref":
        moved = numpy_ref.annealed_langevin(x, *args, **options, **dict(zip(("dx0", "grad_sq"), gradient)))
        return moved if gradient else (moved,)
    state = [x.copy(), *(array.copy() for array in gradient)]
    LANGEVIN[kernel](state[0], *args, **options, **dict(zip(("dx0", "grad_sq"), state[1:])))
    return state


@pytest.mark.parametrize("kernel", ROW_KERNELS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("tracked", [False, True])
def test_chains_given_their_rows_move_as_in_the_pass_over_all(kernel, dtype, tracked):
    """Chains x0[rows], told their sample indices, end where those samples end in the pass
    over all of x0, bit for bit, with the same gradient; without their indices they draw
    other noise."""
    net = ScoreNetwork(seed=12, dtype=dtype, backend="numpy")
    args = kernel_arguments(net, NOISE_LEVELS[[1, 4]], step_lr=2e-3)
    x0 = (np.random.default_rng(6).standard_normal(200) * 2).astype(dtype)
    gradient = (np.ones_like(x0), np.ones_like(x0)) if tracked else ()
    whole = run_on_rows(kernel, x0, args, gradient)
    assert np.abs(whole[0] - x0).min() > 0
    if tracked:
        assert np.abs(whole[2] - 1).max() > 0.1
    for rows in (np.array([199, 3, 57, 0, 120, 3]), np.array([57]), np.array([], np.int64)):
        part = run_on_rows(kernel, x0[rows], args, tuple(array[rows] for array in gradient), rows)
        for chains, all_chains in zip(part, whole):
            assert chains.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(chains, all_chains[rows])
    rows = np.array([199, 3, 57])
    unnamed = run_on_rows(kernel, x0[rows], args, tuple(array[rows] for array in gradient))
    assert np.abs(unnamed[0] - whole[0][rows]).min() > 0


@pytest.mark.parametrize("kernel", ROW_KERNELS)
@pytest.mark.parametrize("rows, shown", [
    (np.array([0, -1, 2]), "dtype int64 and shape (3,), values -1 to 2"),
    (np.array([0, 2 ** 63, 1], np.uint64), "dtype uint64 and shape (3,), values 0 to 9223372036854775808"),
    (np.array([0.0, 1.0, 2.0]), "dtype float64 and shape (3,)"),
    (np.array([True, False, True]), "dtype bool and shape (3,)"),
    (np.array([0, 1]), "dtype int64 and shape (2,), values 0 to 1"),
    (np.array([[0, 1, 2]]), "dtype int64 and shape (1, 3), values 0 to 2"),
    ([0, 1, 2], "type list")])
def test_rows_that_are_not_the_chains_sample_indices_are_refused(kernel, rows, shown):
    net = ScoreNetwork(seed=12, backend="numpy")
    args = kernel_arguments(net, NOISE_LEVELS[[1]])
    x0 = np.zeros(3, np.float32)
    with pytest.raises(ValueError) as refused:
        run_on_rows(kernel, x0, args, (), rows)
    message = str(refused.value)
    assert message.startswith("rows must be a 1-D integer array of the 3 chains' sample indices")
    assert message.endswith(shown) and "\n" not in message


def linear_score_weights(c, mu, dtype=np.float32):
    """Weights of the chain that computes s(x) = -c_l (x - mu) exactly at every level l.

    leaky(u) - leaky(-u) = (1 + slope) u, so two units of each hidden layer pass x through.
    """
    W1 = np.array([[1.0], [-1.0]], dtype)
    b1 = np.zeros(2, dtype)
    W2 = (np.array([[1.0, -1.0], [-1.0, 1.0]]) / 1.01).astype(dtype)
    W3 = (np.array([[-1.0, 1.0]]) / 1.2).astype(dtype)
    c = np.asarray(c, dtype)
    beff2 = np.zeros((c.size, 2), dtype)
    return W1, b1, W2, beff2, W3, c, (c * mu).astype(dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_langevin_samples_a_gaussian_from_its_score(backend):
    # Levels with target N(mu, 1/c_l): the last is N(1.5, 4). The chain
    # x' = x + (alpha/2)(-c (x - mu)) + sqrt(alpha) z has stationary variance 1 / (c (1 - alpha c / 4)).
    mu, c, alpha, steps = 1.5, np.array([1.0, 0.25]), 0.1, 400
    W1, b1, W2, beff2, W3, scale, shift = linear_score_weights(c, mu)
    W3_levels = [W3 * s for s in scale]
    x = np.zeros(20000, np.float32)
    for level in range(2):
        alphas = np.array([alpha], np.float32)
        LANGEVIN[backend](x, W1, b1, W2, beff2[level:level + 1], W3_levels[level],
                          shift[level:level + 1], alphas, steps, 15, level * steps, 0.01, 0.2)
    expected_std = 1 / math.sqrt(c[-1] * (1 - alpha * c[-1] / 4))
    assert abs(x.mean() - mu) < 0.06
    assert abs(x.std() / expected_std - 1) < 0.02


# --------------------------------------------------------------------------- the model


def test_paper_defaults():
    model = SGM()
    np.testing.assert_allclose(model.sigmas, [0.6 ** k for k in range(10)])
    assert model.weighting == "paper" and model.lr == 1e-4 and model.betas == (0.9, 0.999)
    assert model.score.n_params == 96 * 2 + 196 * 161 + 261 + 32 * 17 + 64 * 33


def test_sgm_learns_a_gaussian():
    """N(2, 0.5^2) on a small budget: five noise levels (1 to 0.06) instead of ten, Adam at
    lr 1e-3 for 50 epochs then 1e-4 for 30 (10 000 points, batch 1000), and a sampler with a
    larger step (step_lr 1e-3), 300 steps per level and the final denoising step."""
    data = (2 + 0.5 * np.random.default_rng(100).standard_normal((10000, 1))).astype(np.float32)
    model = SGM(lr=1e-3, sigmas=(1.0, 0.5, 0.25, 0.12, 0.06), seed=0)
    history = model.fit(data, epochs=50, batch_size=1000, quiet=True)
    model.optimizer.lr = 1e-4
    model.fit(data, epochs=30, batch_size=1000, quiet=True)
    assert len(history["loss"]) == 50
    samples = model.sample(2000, seed=0, step_lr=1e-3, n_steps_per_level=300, denoise=True,
                           quiet=True)
    assert samples.shape == (2000, 1) and samples.dtype == np.float32
    x = samples[:, 0].astype(np.float64)
    assert abs(x.mean() - 2) < 0.1
    assert abs(x.std() - 0.5) < 0.06
    assert stats.kstest(x, "norm", args=(2, 0.5)).pvalue > 1e-3


def trained_model(seed=1):
    data = np.random.default_rng(6).normal(3.0, 2.0, (400, 1)).astype(np.float32)
    model = SGM(lr=1e-3, seed=seed)
    model.fit(data, epochs=2, batch_size=100, quiet=True)
    return model


def test_training_and_sampling_are_deterministic():
    a, b = trained_model(), trained_model()
    np.testing.assert_array_equal(a.score.params, b.score.params)
    assert (a.mean, a.std) == (b.mean, b.std)
    kw = dict(n_steps_per_level=5, quiet=True)
    np.testing.assert_array_equal(a.sample(50, seed=3, **kw), b.sample(50, seed=3, **kw))
    assert not np.array_equal(a.sample(50, seed=3, **kw), a.sample(50, seed=4, **kw))
    assert not np.array_equal(a.score.params, trained_model(seed=2).score.params)


def test_save_and_load(tmp_path):
    model = trained_model()
    model.save(tmp_path / "sgm")
    with open(tmp_path / "sgm" / "config.json", encoding="utf-8") as handle:
        meta = json.load(handle)
    assert meta["standardization"] == {"mean": model.mean, "std": model.std}
    loaded = SGM.load(tmp_path / "sgm")
    np.testing.assert_array_equal(loaded.score.params, model.score.params)
    kw = dict(n_steps_per_level=5, quiet=True)
    np.testing.assert_array_equal(loaded.sample(30, seed=1, **kw), model.sample(30, seed=1, **kw))
    with pytest.raises(ValueError, match="config.json"):
        SGM.load(tmp_path / "nothing-here")


def test_sampler_step_sizes_follow_the_paper_rule():
    """With a zero score, x = x0 + sum over steps of sqrt(alpha_i) z, so
    Var x = 1 + T sum_i alpha_i with alpha_i = step_lr sigma_i^2 / sigma_L^2."""
    model = SGM(seed=3)
    model.score.weights["fc_3.x"][...] = 0
    model.score.weights["fc_3.e"][...] = 0
    model.score.weights["fc_3.bias"][...] = 0
    model.mean, model.std = 0.0, 1.0
    steps = 20
    x = model.sample(4000, seed=5, n_steps_per_level=steps, quiet=True)[:, 0]
    sigmas = 0.6 ** np.arange(10)
    expected = 1 + steps * np.sum(2e-5 * sigmas ** 2 / sigmas[-1] ** 2)
    assert abs(x.var() / expected - 1) < 0.08


def test_denoise_applies_tweedie_step():
    model = trained_model()
    kw = dict(seed=2, n_steps_per_level=5, quiet=True)
    plain, denoised = model.sample(40, **kw), model.sample(40, denoise=True, **kw)
    sigma = model.sigmas[-1]
    z = ((plain - model.mean) / model.std).astype(np.float32)
    expected = (z + sigma ** 2 * model.score.forward(z, sigma)) * model.std + model.mean
    np.testing.assert_allclose(denoised, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("call, name", [
    (lambda: SGM(weighting="sigma3"), "weighting"),
    (lambda: SGM(sigmas=[0.1, 0.5]), "sigmas"),
    (lambda: SGM(sigmas=[1.0, -0.5]), "sigmas"),
    (lambda: SGM(lr=0), "lr"),
    (lambda: SGM().fit(np.array([[1.0], [np.nan]]), epochs=1, batch_size=1), "data"),
    (lambda: SGM().fit(np.zeros((10, 2)), epochs=1, batch_size=5), "data"),
    (lambda: SGM().fit(np.ones((10, 1)), epochs=1, batch_size=5), "data"),
    (lambda: SGM().fit(np.random.rand(10, 1), epochs=1, batch_size=50), "batch_size"),
    (lambda: trained_model().sample(0), "n"),
    (lambda: trained_model().sample(10, seed=-1), "seed"),
    (lambda: trained_model().sample(10, step_lr=0), "step_lr"),
    (lambda: SGM().denoising_loss(np.zeros((3, 1), np.float32), np.zeros((2, 1), np.float32), 0.5),
     "eps"),
    (lambda: SGM().denoising_loss(np.zeros((3, 1), np.float32), np.zeros((3, 1), np.float32), 0),
     "sigma"),
    (lambda: ScoreNetwork().forward(np.zeros((3, 1), np.float32), -1.0), "sigma"),
    (lambda: ScoreNetwork().forward(np.zeros((3, 2), np.float32), 1.0), "x"),
])
def test_bad_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_sampling_needs_a_trained_model():
    with pytest.raises(RuntimeError, match="fit"):
        SGM().sample(10)
