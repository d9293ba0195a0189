"""npgen.MLP: gradients against central finite differences, backends against each other,
persistence and the errors a user sees."""

import json

import numpy as np
import pytest

from npgen import kernels
from npgen import MLP, Adam
from finite_differences import EPS, assert_matches_fd, central_difference

BACKENDS = sorted(kernels.BACKENDS)
ACTIVATIONS = ["relu", "leaky_relu", "silu", "tanh", "sigmoid", "identity"]
SKIPS = ["plain", "resnet", "densenet"]


def every_network(activations):
    """Parametrize a test over every backend, skip style, spectral-norm setting and activation."""
    def decorate(test):
        for name, values in (("activation", activations), ("spectral_norm", [False, True]),
                             ("skip", SKIPS), ("backend", BACKENDS)):
            test = pytest.mark.parametrize(name, values)(test)
        return test
    return decorate


def small_net(skip="plain", activation="tanh", spectral_norm=False, backend="numpy", seed=3,
              sizes=(3, 4, 6, 6, 2)):
    return MLP(list(sizes), activation=activation, slope=0.1, spectral_norm=spectral_norm,
               skip=skip, dtype="float64", seed=seed, backend=backend)


def settled_eval_net(*args, **kwargs):
    """A small float64 network in evaluation mode, after one training forward.

    The training forward runs a power iteration, so that spectral norm divides by a sensible
    sigma rather than by u . W v for the random initial u, v (which can be tiny and make the
    effective weights, and the finite-difference error, huge).
    """
    net = small_net(*args, **kwargs)
    net.forward(np.random.default_rng(99).standard_normal((8, net.sizes[0])))
    return net.eval()


@every_network(ACTIVATIONS)
def test_backward_matches_finite_differences(backend, skip, spectral_norm, activation):
    rng = np.random.default_rng(0)
    net = small_net(skip, activation, spectral_norm, backend)
    x = rng.standard_normal((4, 3))
    weights = rng.standard_normal((4, 2))
    # A training forward moves the spectral-norm vectors; the gradient is then taken with
    # them held fixed, which is what evaluation mode computes.
    net.zero_grad()
    net.forward(x)
    grad_x = net.backward(weights)
    net.eval()

    def loss():
        return float(np.sum(net.forward(x) * weights))

    expected_params = central_difference(loss, net.params, range(net.n_params))
    assert_matches_fd(net.grads, expected_params)
    expected_x = central_difference(loss, x, range(x.size)).reshape(x.shape)
    assert_matches_fd(grad_x, expected_x)


@every_network(ACTIVATIONS)
def test_jvp_matches_finite_differences(backend, skip, spectral_norm, activation):
    rng = np.random.default_rng(1)
    net = settled_eval_net(skip, activation, spectral_norm, backend)
    x, dx = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    y, dy = net.jvp(x, dx)
    np.testing.assert_allclose(y, net.forward(x), rtol=1e-12)
    expected = (net.forward(x + EPS * dx) - net.forward(x - EPS * dx)) / (2 * EPS)
    assert_matches_fd(dy, expected)


@every_network(["leaky_relu", "silu", "tanh", "sigmoid"])
def test_jvp_backward_matches_finite_differences(backend, skip, spectral_norm, activation):
    """Gradient of a loss of (g(x), J_g(x) dx) wrt the parameters, x and dx."""
    rng = np.random.default_rng(2)
    net = settled_eval_net(skip, activation, spectral_norm, backend)
    x, dx = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    r_y, r_dy = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    net.zero_grad()
    net.jvp(x, dx)
    grad_x, grad_dx = net.jvp_backward(r_y, r_dy)

    def loss():
        y, dy = net.jvp(x, dx)
        return float(np.sum(y * r_y) + np.sum(dy * r_dy))

    assert_matches_fd(net.grads, central_difference(loss, net.params, range(net.n_params)))
    assert_matches_fd(grad_x, central_difference(loss, x, range(x.size)).reshape(x.shape))
    assert_matches_fd(grad_dx, central_difference(loss, dx, range(dx.size)).reshape(dx.shape))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("skip", SKIPS)
@pytest.mark.parametrize("spectral_norm", [False, True])
def test_input_only_backward_matches_full_backward(backend, skip, spectral_norm):
    """param_grads=False passes the same dL/dx back and leaves the parameter gradients alone."""
    rng = np.random.default_rng(6)
    net = settled_eval_net(skip, "leaky_relu", spectral_norm, backend)
    x, g = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    net.zero_grad()
    net._forward(x)
    full = net._backward(g).copy()
    before = net.grads.copy()
    net._forward(x)
    passed = net._backward(g, param_grads=False)
    np.testing.assert_allclose(passed, full, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(net.grads, before)


def _backward_pass(net, kind, x, g):
    """One forward and backward of ``kind``: 'backward' (g = dL/dy) or 'jvp_backward'
    (cotangents g of y and of the tangent along a fixed dx)."""
    if kind == "backward":
        net.forward(x)
        net.backward(g)
    else:
        net.jvp(x, np.ones_like(x))
        net.jvp_backward(g, 0.5 * g)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spectral_norm", [False, True])
@pytest.mark.parametrize("kind", ["backward", "jvp_backward"])
def test_gradients_accumulate_until_zero_grad(backend, spectral_norm, kind):
    """Two passes without zero_grad leave the sum of their gradients in every weight and bias."""
    rng = np.random.default_rng(3)
    net = settled_eval_net(activation="tanh", spectral_norm=spectral_norm, backend=backend)
    x1, x2 = rng.standard_normal((5, 3)), rng.standard_normal((7, 3))
    g1, g2 = rng.standard_normal((5, 2)), rng.standard_normal((7, 2))
    single = []
    for x, g in ((x1, g1), (x2, g2)):
        net.zero_grad()
        _backward_pass(net, kind, x, g)
        single.append([(W.copy(), b.copy()) for W, b in zip(net.weight_grads, net.bias_grads)])
    net.zero_grad()
    for x, g in ((x1, g1), (x2, g2)):
        _backward_pass(net, kind, x, g)
    for k, (W, b) in enumerate(zip(net.weight_grads, net.bias_grads)):
        np.testing.assert_allclose(W, single[0][k][0] + single[1][k][0], rtol=1e-12, atol=1e-15,
                                   err_msg=f"weight gradient of layer {k}")
        np.testing.assert_allclose(b, single[0][k][1] + single[1][k][1], rtol=1e-12, atol=1e-15,
                                   err_msg=f"bias gradient of layer {k}")


@pytest.mark.parametrize("skip", SKIPS)
@pytest.mark.parametrize("spectral_norm", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cpu_backend_matches_numpy_reference(skip, spectral_norm, dtype):
    rng = np.random.default_rng(4)
    nets = {b: MLP([1, 128, 256, 1] if skip == "plain" else [2, 16, 16, 8, 3], skip=skip,
                   spectral_norm=spectral_norm, dtype=dtype, seed=9, backend=b) for b in BACKENDS}
    n_in, n_out = nets["numpy"].sizes[0], nets["numpy"].sizes[-1]
    x = rng.standard_normal((257, n_in)).astype(dtype)
    dx = rng.standard_normal((257, n_in)).astype(dtype)
    g = rng.standard_normal((257, n_out)).astype(dtype)
    results = {}
    for name, net in nets.items():
        net.zero_grad()
        y = net.forward(x)
        gx = net.backward(g)
        _, dy = net.jvp(x, dx)
        results[name] = (y, gx, net.grads.copy(), dy)
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    for ref, fast in zip(results["numpy"], results["cpu"]):
        np.testing.assert_allclose(fast, ref, **tol)


def test_initialization_matches_torch_linear_bounds():
    net = MLP([4, 300, 2], seed=0)
    for W, b in zip(net.weights, net.biases):
        bound = 1 / np.sqrt(W.shape[1])
        assert np.abs(W).max() <= bound and np.abs(b).max() <= bound
        # uniform on [-bound, bound]: the std is bound / sqrt(3)
        assert abs(W.std() - bound / np.sqrt(3)) < 0.05 * bound
    assert np.array_equal(MLP([4, 300, 2], seed=0).params, net.params)
    assert not np.array_equal(MLP([4, 300, 2], seed=1).params, net.params)


def test_resnet_zero_pads_narrower_skips():
    """[1, 4, 8, 8, 1]: layer 2 reads a_2 + pad(a_1) (4 -> 8 wide), layer 3 reads a_3 + that."""
    net = MLP([1, 4, 8, 8, 1], skip="resnet", activation="relu", dtype="float64", seed=0)
    assert net.segments == [[(0,)], [(1,)], [(2, 1)], [(3, 2, 1)]]
    assert [W.shape for W in net.weights] == [(4, 1), (8, 4), (8, 8), (1, 8)]
    x = np.array([[0.7], [-1.3]])
    a1 = np.maximum(x @ net.weights[0].T + net.biases[0], 0)
    a2 = np.maximum(a1 @ net.weights[1].T + net.biases[1], 0)
    h2 = a2 + np.pad(a1, ((0, 0), (0, 4)))
    a3 = np.maximum(h2 @ net.weights[2].T + net.biases[2], 0)
    np.testing.assert_allclose(net.forward(x), (a3 + h2) @ net.weights[3].T + net.biases[3], rtol=1e-12)


def test_densenet_widths_and_resnet_skips():
    dense = MLP([1, 128, 256, 1], skip="densenet")
    assert [W.shape for W in dense.weights] == [(128, 1), (256, 129), (1, 385)]
    res = MLP([1, 64, 64, 64, 1], skip="resnet", activation="relu", dtype="float64")
    res.params[...] = 0          # zero hidden layers: the skips carry the first layer's output
    res.biases[0][...] = 1.0
    res.weights[3][...] = 1.0
    y = res.forward(np.zeros((2, 1)))
    np.testing.assert_allclose(y, 64.0)   # relu(1) summed over 64 units, carried by two skips


def test_adam_reduces_a_regression_loss():
    rng = np.random.default_rng(5)
    x = rng.uniform(-2, 2, (512, 1)).astype(np.float32)
    target = np.sin(2 * x)
    net = MLP([1, 32, 32, 1], activation="tanh", seed=0)
    opt = Adam(net, lr=1e-2)
    losses = []
    for _ in range(300):
        y = net.forward(x)
        losses.append(float(np.mean((y - target) ** 2)))
        net.zero_grad()
        net.backward(2 * (y - target) / y.size)
        opt.step()
    assert losses[-1] < 0.05 * losses[0]


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_save_load_round_trip_with_torch_names(tmp_path, spectral_norm):
    net = MLP([2, 8, 4, 1], skip="densenet", spectral_norm=spectral_norm, seed=7)
    net.forward(np.ones((3, 2), np.float32))          # moves u, v when spectral_norm
    path = tmp_path / "net.npz"
    net.save(path)
    with np.load(path, allow_pickle=False) as data:
        names = set(data.files)
    layer_names = {"0", "2", "4"}
    suffixes = {"weight_orig", "weight_u", "weight_v", "bias"} if spectral_norm else {"weight", "bias"}
    assert {f"{i}.{s}" for i in layer_names for s in suffixes} <= names
    loaded = MLP.load(path)
    assert loaded.config() == net.config()
    x = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    np.testing.assert_array_equal(loaded.eval().forward(x), net.eval().forward(x))


def test_load_rejects_bad_files(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="not a readable .npz"):
        MLP.load(garbage)
    with pytest.raises(ValueError, match="no such file"):
        MLP.load(tmp_path / "missing.npz")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.ones(3))
    with pytest.raises(ValueError, match="not an npgen network"):
        MLP.load(foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{"__npgen_mlp__": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError):
        MLP.load(pickled)
    net = MLP([1, 4, 1])
    path = tmp_path / "net.npz"
    net.save(path)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["2.weight"] = np.ones((1, 5), np.float32)   # wrong shape
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(ValueError, match=r"2\.weight.*shape"):
        MLP.load(tmp_path / "shape.npz")
    arrays["__npgen_mlp__"] = np.array("{not json")
    np.savez(tmp_path / "config.npz", **arrays)
    with pytest.raises(ValueError, match="corrupt npgen configuration"):
        MLP.load(tmp_path / "config.npz")
    meta = json.loads(str(np.load(path)["__npgen_mlp__"]))
    with pytest.raises(ValueError):
        MLP(**{**{k: meta[k] for k in ("sizes", "activation", "slope", "skip")}, "dtype": "int8"})


@pytest.mark.parametrize("bad, message", [
    (np.ones((4, 3), np.float32), r"x must have shape \(n, 2\)"),
    (np.ones(4, np.float32), r"x must have shape \(n, 2\)"),
    (np.ones((4, 2), np.float64), "dtype float32"),
    (np.full((4, 2), np.nan, np.float32), "NaN or inf"),
    (np.full((4, 2), np.inf, np.float32), "NaN or inf"),
    ([[1.0, 2.0]], "numpy array"),
])
def test_forward_rejects_bad_input(bad, message):
    net = MLP([2, 4, 1])
    with pytest.raises(ValueError, match=message):
        net.forward(bad)


@pytest.mark.parametrize("kwargs, message", [
    (dict(sizes=[1]), "sizes"),
    (dict(sizes=[1, 0, 1]), "sizes"),
    (dict(sizes=[1, 4, 1], activation="gelu"), "activation must be one of"),
    (dict(sizes=[1, 4, 1], skip="unet"), "skip must be one of"),
    (dict(sizes=[1, 4, 1], dtype="float16"), "dtype must be"),
    (dict(sizes=[1, 4, 1], backend="gpu"), "backend must be one of"),
    (dict(sizes=[1, 4, 1], seed=-1), "seed"),
])
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(**kwargs)


def test_backward_checks_its_gradient():
    net = MLP([2, 4, 1])
    with pytest.raises(RuntimeError, match="preceding forward"):
        net.backward(np.ones((3, 1), np.float32))
    net.forward(np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="3 rows"):
        net.backward(np.ones((4, 1), np.float32))
