"""Tests of the array kernels in ``kernels``.

The textbook ``numpy_ref``: every backward against central finite differences of its forward
(float64), and the activations on the extended reals. The backends: ``numpy`` stores the
textbook's results in the caller's arrays, with the accumulate / need_grad_x semantics; ``cpu``
(numba) matches it on many shapes and both float types. A few results are checked against
values worked out by hand, or computed by torch when it is installed.
"""

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from npgen import kernels
from finite_differences import EPS, assert_matches_fd, central_difference
from npgen.kernels import numpy_backend, numpy_ref

BACKENDS = ["numpy", "cpu"]
ACTIVATIONS = sorted(kernels.ACTIVATIONS)
SLOPE = 0.2
DTYPES = [np.float32, np.float64]

#: Relative tolerance of cpu against the numpy backend; absolute errors are scaled by the
#: largest value.
MATCH_TOL = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.fixture(params=BACKENDS)
def backend(request):
    return kernels.get_backend(request.param)


@pytest.fixture(scope="module")
def cpu():
    return kernels.get_backend("cpu")


def code(name):
    return kernels.activation_code(name)


# --------------------------------------------------------------------------- helpers


def numerical_gradient(loss, values):
    """Central differences of the scalar ``loss()`` with respect to every entry of ``values``."""
    return central_difference(loss, values).reshape(values.shape)


def assert_match(actual, expected, dtype, name="", scale=None):
    """cpu against the numpy backend: relative tolerance, and an absolute one scaled by
    ``scale`` (by default max |expected|; give the size of the terms where they cancel)."""
    tol = MATCH_TOL[dtype]
    expected = np.asarray(expected)
    if scale is None:
        scale = float(np.max(np.abs(expected))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * max(scale, 1e-30),
                               err_msg=name)


def sample_away_from_zero(rng, shape, low=0.1, high=3.0):
    """Values with |v| in [low, high] and random signs: away from the kinks of relu."""
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


def make_layer(rng, n, n_in, n_out, dtype=np.float64, margin=0.0):
    """x (n, in), W (out, in), b (out,), redrawn until every z = x W^T + b has |z| > margin."""
    while True:
        x = rng.standard_normal((n, n_in))
        W = rng.standard_normal((n_out, n_in)) / math.sqrt(n_in)
        b = 0.5 * rng.standard_normal(n_out)
        if margin == 0 or np.min(np.abs(x @ W.T + b)) > margin:
            return x.astype(dtype), W.astype(dtype), b.astype(dtype)


#: The textbook's act, act' and act'' (orders 0, 1, 2).
ACTIVATION_ORDERS = (numpy_ref.activation, numpy_ref.activation_derivative,
                     numpy_ref.activation_second_derivative)


def act(name, z, order=0, slope=SLOPE):
    """The textbook's act(z), act'(z) or act''(z) (order 0, 1, 2)."""
    return ACTIVATION_ORDERS[order](code(name), slope, z)


def forward(backend, x, W, b, kind):
    z = np.empty((x.shape[0], W.shape[0]), x.dtype)
    a = np.empty_like(z)
    backend.linear_forward(x, W, b, kind, SLOPE, z, a)
    return z, a


def jvp(backend, x, dx, W, b, kind):
    z, a, dz, da = (np.empty((x.shape[0], W.shape[0]), x.dtype) for _ in range(4))
    backend.linear_jvp(x, dx, W, b, kind, SLOPE, z, a, dz, da)
    return z, a, dz, da


# --------------------------------------------------------------------------- activations


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_values(name):
    z = np.array([[-2.0, -0.5, 0.0, 0.5, 2.0]])
    expected = {
        "identity": z,
        "relu": np.maximum(z, 0),
        "leaky_relu": np.where(z > 0, z, SLOPE * z),
        "silu": z / (1 + np.exp(-z)),
        "tanh": np.tanh(z),
        "sigmoid": 1 / (1 + np.exp(-z)),
    }[name]
    np.testing.assert_allclose(act(name, z), expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_derivatives_match_finite_differences(name):
    z = sample_away_from_zero(np.random.default_rng(1), (4, 6))
    # activations are elementwise, so one shifted evaluation differentiates every entry
    for order in (1, 2):
        numeric = (act(name, z + EPS, order - 1) - act(name, z - EPS, order - 1)) / (2 * EPS)
        assert_matches_fd(act(name, z, order), numeric)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backwards_match_finite_differences(name):
    rng = np.random.default_rng(2)
    kind = code(name)
    z = sample_away_from_zero(rng, (3, 5))
    dz, grad_a, grad_da = rng.standard_normal((3, *z.shape))

    def weighted(z, dz):  # the entries of grad_a a + grad_da da, (a, da) = (act(z), act'(z) dz)
        return grad_a * act(name, z) + grad_da * act(name, z, 1) * dz

    grad_z, grad_dz = numpy_ref.activation_jvp_backward(kind, SLOPE, z, dz, grad_a, grad_da)
    assert_matches_fd(grad_z, (weighted(z + EPS, dz) - weighted(z - EPS, dz)) / (2 * EPS))
    assert_matches_fd(grad_dz, (weighted(z, dz + EPS) - weighted(z, dz - EPS)) / (2 * EPS))
    numeric = (act(name, z + EPS) - act(name, z - EPS)) / (2 * EPS) * grad_a
    assert_matches_fd(numpy_ref.activation_backward(kind, SLOPE, z, grad_a), numeric)


def test_kink_uses_left_derivative():
    z = np.zeros((1, 2))
    np.testing.assert_array_equal(act("relu", z, 1), 0.0)
    np.testing.assert_array_equal(act("leaky_relu", z, 1), SLOPE)
    for name in ("relu", "leaky_relu"):
        np.testing.assert_array_equal(act(name, z, 2), 0.0)


@pytest.mark.parametrize("function", ACTIVATION_ORDERS, ids=lambda f: f.__name__)
def test_unknown_activation_raises(function):
    with pytest.raises(ValueError, match="activation code must be one of"):
        function(17, SLOPE, np.zeros(2))


def test_backends_reject_an_unknown_activation(backend):
    x, W, b = make_layer(np.random.default_rng(22), 2, 3, 4)
    with pytest.raises(ValueError):
        forward(backend, x, W, b, 17)


def limits_on_the_extended_reals(name, slope, big):
    """(act, act', act'') at z = (-inf, -big, big, inf), big a large finite float of big's type.

    At -inf and +inf, the limits; at -big and +big, the values that the limits are reached by
    in floating point (act(z) itself where it grows without bound).
    """
    inf, slope = np.inf, big.dtype.type(slope)
    values = {
        "identity": [-inf, -big, big, inf],
        "relu": [0, 0, big, inf],
        "leaky_relu": [-inf if slope > 0 else 0, slope * -big, big, inf],
        "silu": [0, 0, big, inf],
        "tanh": [-1, -1, 1, 1],
        "sigmoid": [0, 0, 1, 1],
    }[name]
    first = {
        "identity": [1, 1, 1, 1],
        "relu": [0, 0, 1, 1],
        "leaky_relu": [slope, slope, 1, 1],
        "silu": [0, 0, 1, 1],
        "tanh": [0, 0, 0, 0],
        "sigmoid": [0, 0, 0, 0],
    }[name]
    return [np.array(row, big.dtype) for row in (values, first, [0, 0, 0, 0])]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", [0.0, SLOPE])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_on_the_extended_reals(name, slope, dtype):
    largest = np.finfo(dtype).max
    strict = dict(divide="raise", over="raise", invalid="raise")  # underflow to 0 is expected
    for big in (largest, dtype(1e300 if dtype is np.float64 else 1e30)):
        z = np.array([-np.inf, -big, big, np.inf], dtype)
        with np.errstate(**strict):
            results = [act(name, z, order, slope) for order in range(3)]
        for order, (result, expected) in enumerate(
                zip(results, limits_on_the_extended_reals(name, slope, big))):
            assert result.dtype == dtype
            np.testing.assert_array_equal(result, expected, err_msg=f"order {order}, z = {z}")
    # and in between, from 1e-30 to the largest float, no NaN and no warning either
    magnitudes = np.append(np.geomspace(1e-30, float(largest) / 2, 4000), largest)
    z = np.concatenate([-magnitudes, [0.0], magnitudes]).astype(dtype)
    with np.errstate(**strict):
        for order in range(3):
            result = act(name, z, order, slope)
            assert result.dtype == dtype and not np.isnan(result).any()


# --------------------------------------------------------------------------- dense layer

FD_SHAPES = [(4, 3, 5), (4, 1, 3), (4, 3, 1)]


@pytest.mark.parametrize("tangent", [False, True], ids=["dense_backward", "dense_jvp_backward"])
@pytest.mark.parametrize("shape", FD_SHAPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_dense_backward_matches_finite_differences(name, shape, tangent):
    """The loss weighs a (and da, along the tangent dx, for the jvp's backward)."""
    rng = np.random.default_rng(3)
    kind = code(name)
    x, W, b = make_layer(rng, *shape, margin=0.05)
    dx = rng.standard_normal(x.shape)
    weights_a, weights_da = rng.standard_normal((2, shape[0], shape[2]))

    def loss():
        if tangent:
            a, da, _, _ = numpy_ref.dense_jvp(x, dx, W, b, kind, SLOPE)
            return float(np.sum(a * weights_a) + np.sum(da * weights_da))
        return float(np.sum(numpy_ref.dense_forward(x, W, b, kind, SLOPE)[0] * weights_a))

    if tangent:
        _, _, z, dz = numpy_ref.dense_jvp(x, dx, W, b, kind, SLOPE)
        grads = numpy_ref.dense_jvp_backward(x, dx, W, z, dz, weights_a, weights_da, kind, SLOPE)
        wrt = (x, dx, W, b)
    else:
        _, z = numpy_ref.dense_forward(x, W, b, kind, SLOPE)
        grads = numpy_ref.dense_backward(x, W, z, weights_a, kind, SLOPE)
        wrt = (x, W, b)
        np.testing.assert_array_equal(
            numpy_ref.dense_backward_input(W, z, weights_a, kind, SLOPE), grads[0])
    assert len(grads) == len(wrt)
    for analytic, values in zip(grads, wrt):
        assert_matches_fd(analytic, numerical_gradient(loss, values))


@pytest.mark.parametrize("shape", FD_SHAPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_dense_jvp_is_directional_derivative(name, shape):
    rng = np.random.default_rng(4)
    kind = code(name)
    x, W, b = make_layer(rng, *shape, margin=0.05)
    dx = rng.standard_normal(x.shape)
    a, da, z, dz = numpy_ref.dense_jvp(x, dx, W, b, kind, SLOPE)
    a_ref, z_ref = numpy_ref.dense_forward(x, W, b, kind, SLOPE)
    np.testing.assert_array_equal(z, z_ref)
    np.testing.assert_array_equal(a, a_ref)
    a_up, z_up = numpy_ref.dense_forward(x + EPS * dx, W, b, kind, SLOPE)
    a_down, z_down = numpy_ref.dense_forward(x - EPS * dx, W, b, kind, SLOPE)
    assert_matches_fd(dz, (z_up - z_down) / (2 * EPS))
    assert_matches_fd(da, (a_up - a_down) / (2 * EPS))


def test_need_grad_x_false_accepts_none_and_leaves_grad_x(backend):
    rng = np.random.default_rng(6)
    kind = code("tanh")
    for shape in FD_SHAPES:
        x, W, b = make_layer(rng, *shape)
        dx = rng.standard_normal(x.shape)
        z, a, dz, _ = jvp(backend, x, dx, W, b, kind)
        grad_z, grad_dz = np.empty_like(z), np.empty_like(z)
        grad_W, grad_b = np.empty_like(W), np.empty_like(b)
        sentinel = np.full_like(x, 7.0)
        for grad_x in (None, sentinel):
            backend.linear_backward(x, W, z, a, a, kind, SLOPE, grad_z, grad_W, grad_b, grad_x,
                                    False, False)
            backend.linear_jvp_backward(x, dx, W, z, a, dz, a, a, kind, SLOPE, grad_z, grad_dz,
                                        grad_W, grad_b, grad_x, grad_x, False, False)
        np.testing.assert_array_equal(sentinel, 7.0)


#: (accumulate, need_grad_x) of the backward kernels.
FLAGS = [(False, False), (False, True), (True, False), (True, True)]


def _dense_layer_inputs(rng, shape, dtype):
    """x, dx, W, b, grad_a, grad_da and the starting grad_W, grad_b of a layer of this shape."""
    n, n_in, n_out = shape
    x, W, b = make_layer(rng, n, n_in, n_out, dtype)
    dx, grad_a, grad_da, grad_W0, grad_b0 = (
        rng.standard_normal(s).astype(dtype)
        for s in (x.shape, (n, n_out), (n, n_out), W.shape, b.shape))
    return x, dx, W, b, grad_a, grad_da, grad_W0, grad_b0


def _dense_layer_outputs(backend, inputs, kind):
    """Every output of the five dense-layer kernels, for all accumulate / need_grad_x flags."""
    x, dx, W, b, grad_a, grad_da, grad_W0, grad_b0 = inputs
    out = dict(zip(["z", "a"], forward(backend, x, W, b, kind)))
    z, a, dz, da = jvp(backend, x, dx, W, b, kind)
    out.update({"jvp z": z, "jvp a": a, "jvp dz": dz, "jvp da": da})

    def fresh():  # in linear_jvp_backward's argument order
        return {"grad_z": np.empty_like(z), "grad_dz": np.empty_like(z), "grad_W": grad_W0.copy(),
                "grad_b": grad_b0.copy(), "grad_x": np.zeros_like(x), "grad_dx": np.zeros_like(x)}

    grad_z, grad_x = np.empty_like(z), np.empty_like(x)
    backend.linear_backward_input(W, z, a, grad_a, kind, SLOPE, grad_z, grad_x)
    out.update({"backward_input grad_z": grad_z, "backward_input grad_x": grad_x})
    for flags in FLAGS:
        g = fresh()
        backend.linear_backward(x, W, z, a, grad_a, kind, SLOPE, g["grad_z"], g["grad_W"],
                                g["grad_b"], g["grad_x"], *flags)
        out.update({f"backward {name} {flags}": g[name]
                    for name in ("grad_z", "grad_W", "grad_b", "grad_x")})
        g = fresh()
        backend.linear_jvp_backward(x, dx, W, z, a, dz, grad_a, grad_da, kind, SLOPE,
                                    *g.values(), *flags)
        out.update({f"jvp_backward {name} {flags}": value for name, value in g.items()})
    return out


@pytest.mark.parametrize("shape", FD_SHAPES)
def test_numpy_backend_stores_the_textbook_results(shape):
    inputs = _dense_layer_inputs(np.random.default_rng(20), shape, np.float64)
    x, dx, W, b, grad_a, grad_da, grad_W0, grad_b0 = inputs
    kind = code("tanh")
    a, da, z, dz = numpy_ref.dense_jvp(x, dx, W, b, kind, SLOPE)
    grad_z = numpy_ref.activation_backward(kind, SLOPE, z, grad_a)
    expected = {"z": z, "a": a, "jvp z": z, "jvp a": a, "jvp dz": dz, "jvp da": da,
                "backward_input grad_z": grad_z,
                "backward_input grad_x": numpy_ref.dense_backward_input(W, z, grad_a, kind, SLOPE)}
    backward = dict(zip(("grad_x", "grad_W", "grad_b"),
                        numpy_ref.dense_backward(x, W, z, grad_a, kind, SLOPE)), grad_z=grad_z)
    jvp_backward = dict(
        zip(("grad_x", "grad_dx", "grad_W", "grad_b"),
            numpy_ref.dense_jvp_backward(x, dx, W, z, dz, grad_a, grad_da, kind, SLOPE)),
        **dict(zip(("grad_z", "grad_dz"),
                   numpy_ref.activation_jvp_backward(kind, SLOPE, z, dz, grad_a, grad_da))))
    start = {"grad_W": grad_W0, "grad_b": grad_b0, "grad_x": 0.0, "grad_dx": 0.0}
    for kernel, results in (("backward", backward), ("jvp_backward", jvp_backward)):
        for accumulate, need_grad_x in FLAGS:
            for name, result in results.items():
                if name in ("grad_W", "grad_b") and accumulate:
                    result = start[name] + result
                if name in ("grad_x", "grad_dx") and not need_grad_x:
                    result = np.full_like(result, start[name])  # left as it was
                expected[f"{kernel} {name} {(accumulate, need_grad_x)}"] = result
    stored = _dense_layer_outputs(numpy_backend, inputs, kind)
    assert stored.keys() == expected.keys()
    for key, value in stored.items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)


# --------------------------------------------------------------------------- losses


def _loss_inputs(rng, name, n):
    if name == "hinge":
        target = rng.choice([-1.0, 1.0], n)
        margin = sample_away_from_zero(rng, n, low=0.05, high=2.0)  # 1 - t s, away from 0
        return (1 - margin) * target, target
    return rng.normal(0, 2, n), rng.uniform(0, 1, n)


LOSSES = ["bce_with_logits", "hinge"]


@pytest.mark.parametrize("name", LOSSES)
def test_loss_gradient_matches_finite_differences(name):
    pred, target = _loss_inputs(np.random.default_rng(7), name, 12)
    loss_fn = getattr(numpy_ref, name)
    value, grad = loss_fn(pred, target)
    assert isinstance(value, float)
    assert_matches_fd(grad, numerical_gradient(lambda: loss_fn(pred, target)[0], pred))


@pytest.mark.parametrize("name", LOSSES)
def test_loss_values(name):
    pred, target = _loss_inputs(np.random.default_rng(8), name, 9)
    expected = {
        "bce_with_logits": lambda s, t: -(t * math.log(1 / (1 + math.exp(-s)))
                                          + (1 - t) * math.log(1 - 1 / (1 + math.exp(-s)))),
        "hinge": lambda s, t: max(0.0, 1 - t * s),
    }[name]
    mean = sum(expected(p, t) for p, t in zip(pred, target)) / pred.size
    assert getattr(numpy_ref, name)(pred, target)[0] == pytest.approx(mean, rel=1e-12)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_rejects_targets_of_another_shape(name):
    with pytest.raises(ValueError, match="target must have the shape"):
        getattr(numpy_ref, name)(np.zeros((3, 1)), np.zeros(3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("magnitude", [100.0, 1e4])
def test_bce_with_logits_is_stable_for_large_logits(backend, dtype, magnitude):
    logits = np.array([magnitude, -magnitude, magnitude, -magnitude, 0.0], dtype)
    target = np.array([1.0, 0.0, 0.0, 1.0, 0.5], dtype)
    grad = np.empty_like(logits)
    value = backend.bce_with_logits(logits, target, grad)
    s, t = logits.astype(np.float64), target.astype(np.float64)
    per_item = [max(si, 0.0) - si * ti + math.log1p(math.exp(-abs(si))) for si, ti in zip(s, t)]
    sigmoid = [1 / (1 + math.exp(-si)) if si >= 0 else math.exp(si) / (1 + math.exp(si))
               for si in s]
    expected_grad = (np.array(sigmoid) - t) / s.size
    assert math.isfinite(value) and np.all(np.isfinite(grad))
    assert value == pytest.approx(sum(per_item) / s.size, rel=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-12)


# --------------------------------------------------------------------------- optimizer


def test_adam_matches_hand_computation(backend):
    lr, beta1, beta2, eps = 0.1, 0.9, 0.999, 1e-8
    grads = [0.5, -1.0, 2.0]
    # torch.optim.Adam's arithmetic, step by step in plain Python
    p, m, v = 1.0, 0.0, 0.0
    expected = []
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        bias1, bias2 = 1 - beta1 ** t, 1 - beta2 ** t
        torch_step = (lr / bias1) * m / (math.sqrt(v) / math.sqrt(bias2) + eps)
        textbook_step = lr * (m / bias1) / (math.sqrt(v / bias2) + eps)  # m_hat / sqrt(v_hat)
        assert abs(torch_step - textbook_step) < 1e-15  # the same formula, rounded differently
        # Kingma & Ba's faster variant (their Section 2) adds eps to sqrt(v): visibly different
        efficient_step = lr * math.sqrt(bias2) / bias1 * m / (math.sqrt(v) + eps)
        assert abs(efficient_step - torch_step) > 1e-10
        p -= torch_step
        expected.append(p)
    # worked by hand: m_hat = 0.5, -0.28947, 0.55535; sqrt(v_hat) = 0.5, 0.79069, 1.32335
    np.testing.assert_allclose(expected, [0.900000002, 0.93661035, 0.89464479], rtol=1e-8)

    param, grad, m_buf, v_buf = np.ones(1), np.empty(1), np.zeros(1), np.zeros(1)
    for t, (g, want) in enumerate(zip(grads, expected), start=1):
        grad[0] = g
        backend.adam_step(param, grad, m_buf, v_buf, t, lr, beta1, beta2, eps)
        assert param[0] == pytest.approx(want, rel=1e-14)


# --------------------------------------------------------------------------- spectral norm


def _normalized(rng, n, dtype=np.float64):
    u = rng.standard_normal(n)
    return (u / np.linalg.norm(u)).astype(dtype)


@pytest.mark.parametrize("shape", [(64, 32), (512, 256)])
def test_spectral_norm_converges_to_largest_singular_value(backend, shape):
    rng = np.random.default_rng(9)
    W = rng.standard_normal(shape)
    u, v = _normalized(rng, shape[0]), _normalized(rng, shape[1])
    W_sn = np.empty_like(W)
    top = np.linalg.svd(W, compute_uv=False)[0]
    sigmas = []
    while len(sigmas) < 1000 and (len(sigmas) < 5 or abs(sigmas[-5] - top) / top > 1e-4):
        sigmas.append(backend.spectral_norm_forward(W, u, v, 1, W_sn))
    # u . W v with unit u and v never exceeds the largest singular value
    assert max(sigmas) <= top * (1 + 1e-12)
    assert all(abs(sigma - top) / top < 1e-4 for sigma in sigmas[-5:])
    np.testing.assert_allclose(W_sn, W / sigmas[-1], rtol=1e-14)


def test_spectral_norm_evaluation_keeps_u_and_v(backend):
    rng = np.random.default_rng(10)
    W = rng.standard_normal((6, 4))
    u, v = _normalized(rng, 6), _normalized(rng, 4)
    u0, v0 = u.copy(), v.copy()
    W_sn = np.empty_like(W)
    sigma = backend.spectral_norm_forward(W, u, v, 0, W_sn)
    np.testing.assert_array_equal(u, u0)
    np.testing.assert_array_equal(v, v0)
    assert sigma == pytest.approx(float(u0 @ W @ v0), rel=1e-14)
    np.testing.assert_allclose(W_sn, W / sigma, rtol=1e-14)


def test_spectral_norm_backward_matches_finite_differences():
    rng = np.random.default_rng(11)
    W = rng.standard_normal((5, 4))
    # u, v from one power iteration, then held fixed: zero power iterations
    _, _, u, v = numpy_ref.spectral_norm_forward(W, _normalized(rng, 5), _normalized(rng, 4), 1)
    weights = rng.standard_normal(W.shape)

    def loss():
        return float(np.sum(numpy_ref.spectral_norm_forward(W, u, v, 0)[0] * weights))

    _, sigma, _, _ = numpy_ref.spectral_norm_forward(W, u, v, 0)
    grad_W = numpy_ref.spectral_norm_backward(W, u, v, sigma, weights)
    assert_matches_fd(grad_W, numerical_gradient(loss, W))


def test_spectral_norm_of_every_layer_matches_finite_differences():
    """spectral_norm_backward_layers is the gradient of sum_k <G_k, W_k / sigma_k(W_k)> (u_k,
    v_k held), layer by layer; spectral_norm_forward_layers is each layer's forward."""
    rng = np.random.default_rng(12)
    shapes = [(5, 1), (3, 5), (1, 3)]
    Ws = [rng.standard_normal(shape) for shape in shapes]
    us = [_normalized(rng, rows) for rows, _ in shapes]
    vs = [_normalized(rng, cols) for _, cols in shapes]
    _, _, us, vs = numpy_ref.spectral_norm_forward_layers(Ws, us, vs, 1)
    weights = [rng.standard_normal(shape) for shape in shapes]

    def loss():
        W_sns = numpy_ref.spectral_norm_forward_layers(Ws, us, vs, 0)[0]
        return float(sum(np.sum(W_sn * G) for W_sn, G in zip(W_sns, weights)))

    W_sns, sigmas, _, _ = numpy_ref.spectral_norm_forward_layers(Ws, us, vs, 0)
    for W, u, v, W_sn, sigma in zip(Ws, us, vs, W_sns, sigmas):
        np.testing.assert_allclose(W_sn, W / float(u @ W @ v), rtol=1e-14)
        assert sigma == pytest.approx(float(u @ W @ v), rel=1e-14)
    grads = numpy_ref.spectral_norm_backward_layers(Ws, us, vs, sigmas, weights)
    for W, grad in zip(Ws, grads):
        assert_matches_fd(grad, numerical_gradient(loss, W))


def _embedding_params(rng, widths=(3, 4, 5, 6, 1)):
    """Parameters (V1, c1, V2, c2, W2e, b2, W3e, b3) of a noise-level path of these widths
    (features, embedding layers, x path's two biases), in float64."""
    F, H, E, H2, out3 = widths
    shapes = [(H, F), (H,), (E, H), (E,), (H2, E), (H2,), (out3, E), (out3,)]
    return [rng.standard_normal(shape) for shape in shapes]


def test_the_noise_level_path_is_the_score_networks_float64_biases():
    """numpy_ref.score_embedding_forward, on a score network's parameters, gives the biases
    ScoreNetwork.effective_biases computes on its own (in float64, with plain numpy)."""
    from npgen.nn.score import SLOPE, ScoreNetwork, _EMBEDDING, sinusoidal_features

    net = ScoreNetwork(dtype="float64", seed=4)
    params = [net.weights[name] for name in _EMBEDDING]
    for sigma in (0.01, 1.0, 7.5):
        beff2, beff3, _ = numpy_ref.score_embedding_forward(sinusoidal_features(sigma)[None],
                                                            params, SLOPE)
        want2, want3 = net.effective_biases([sigma])
        np.testing.assert_allclose(beff2[0], want2[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(beff3[0], want3, rtol=1e-12, atol=1e-14)


def test_the_noise_level_paths_backward_matches_finite_differences():
    """The gradient of <G2, beff2> + <G3, beff3> with respect to every parameter of the path,
    at a leaky slope where both branches (e and leaky_e) carry gradient."""
    rng = np.random.default_rng(13)
    params = _embedding_params(rng)
    p = rng.standard_normal((1, 3))
    G2, G3 = rng.standard_normal((1, 6)), rng.standard_normal((1, 1))

    def loss():
        beff2, beff3, _ = numpy_ref.score_embedding_forward(p, params, 0.3)
        return float(np.sum(beff2 * G2) + np.sum(beff3 * G3))

    _, _, path = numpy_ref.score_embedding_forward(p, params, 0.3)
    assert (path[2] < 0).any() and (path[2] > 0).any()  # both sides of the kink
    grads = numpy_ref.score_embedding_backward(p, params, 0.3, path, G2, G3)
    for param, grad in zip(params, grads):
        assert_matches_fd(grad, numerical_gradient(loss, param))


def test_spectral_norm_eps_is_shared():
    assert kernels.get_backend("cpu").SPECTRAL_NORM_EPS == numpy_ref.SPECTRAL_NORM_EPS


# --------------------------------------------------------------------------- the models' losses


def _model_loss_inputs(rng, dtype, batch=9, p=2, d=3):
    """The inputs of each of the models' loss kernels by name, before its outputs, and the
    shapes of the outputs it writes: {case: (kernel, inputs, output shapes)}."""
    def draw(*shape):
        return rng.standard_normal(shape).astype(dtype)

    code, eps = draw(batch, 2 * p), draw(batch, p)
    std = np.exp(code[:, p:] / 2)
    cases = {}
    for k in (1, 2):
        cases[f"vae_reparameterize k={k}"] = ("vae_reparameterize", (code, eps, k),
                                              [(batch, p), (batch, p)])
        cases[f"vae_code_gradient k={k}"] = ("vae_code_gradient",
                                             (code, eps, std, draw(batch, p), k), [code.shape])
        cases[f"score_matching_loss k={k}"] = ("score_matching_loss",
                                               (draw(batch, 1), draw(batch, 1), 0.36, k),
                                               [(batch, 1)])
    cases["vae_residual"] = ("vae_residual", (draw(batch, d), draw(batch, d), 0.1), [(batch, d)])
    cases["score_matching_noisy"] = ("score_matching_noisy",
                                     (draw(batch, 1), draw(batch, 1), 0.36), [(batch, 1)])
    cases["gradient_penalty"] = ("gradient_penalty", (draw(batch, d), 1.5, 10.0), [(batch, d)])
    cases["gradient_penalty d=1"] = ("gradient_penalty", (draw(batch, 1), 0.7, 10.0),
                                     [(batch, 1)])
    cases["hinge_generator"] = ("hinge_generator", (draw(batch, 1),), [(batch, 1)])
    levels, tables = rng.integers(0, 4, batch), rng.uniform(0.2, 2, (3, 4)).astype(dtype)
    cases["score_matching_noisy_levels"] = ("score_matching_noisy_levels",
                                            (draw(batch, d), draw(batch, d), levels, tables[0]),
                                            [(batch, d)])
    cases["score_matching_loss_levels"] = ("score_matching_loss_levels",
                                           (draw(batch, d), draw(batch, d), draw(batch, d), levels,
                                            tables[1], tables[2], 0.3), [(batch, d)])
    return cases


def _run_model_loss(backend, kernel, inputs, shapes, dtype):
    """(returned value, outputs) of one call, the outputs first filled with NaN."""
    outputs = [np.full(shape, np.nan, dtype) for shape in shapes]
    return getattr(backend, kernel)(*inputs, *outputs), outputs


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_model_losses_match_numpy(cpu, dtype):
    """cpu computes the elementwise results in numpy_ref's float type and order, so they are
    numpy's to the bit (a CPU training run keeps its numbers); the losses, float64 sums in
    another order, agree to rounding. The penalty's row norms (float64 sums over d) may
    differ in their last bit, hence a tolerance there."""
    for case, (kernel, inputs, shapes) in _model_loss_inputs(np.random.default_rng(22),
                                                             dtype).items():
        expected, expected_outputs = _run_model_loss(numpy_backend, kernel, inputs, shapes, dtype)
        value, outputs = _run_model_loss(cpu, kernel, inputs, shapes, dtype)
        assert type(value) is type(expected), case
        if expected is not None:
            assert isinstance(value, float) and value == pytest.approx(expected, rel=1e-12), case
        for actual, wanted in zip(outputs, expected_outputs):
            if kernel == "gradient_penalty":
                assert_match(actual, wanted, dtype, case)
            else:
                np.testing.assert_array_equal(actual, wanted, err_msg=case)


def test_vae_code_gradient_matches_finite_differences():
    """vae_code_gradient is d/dcode of <G, z(code)> + kl(code) for a fixed dL/dz = G."""
    rng = np.random.default_rng(23)
    code, eps, grad_z = (rng.standard_normal(shape) for shape in ((4, 6), (4, 3), (4, 3)))
    for k in (1, 2):
        def loss():
            kl, z, _ = numpy_ref.vae_reparameterize(code, eps, k)
            return float(np.sum(grad_z * z)) + kl

        _, _, std = numpy_ref.vae_reparameterize(code, eps, k)
        grad = numpy_ref.vae_code_gradient(code, eps, std, grad_z, k)
        assert_matches_fd(grad, numerical_gradient(loss, code))


def test_vae_kl_is_the_gaussian_kl():
    """k = 1: the KL term is the sum of KL(N(mu, s^2) || N(0, 1))
    = log(1 / s) + (s^2 + mu^2 - 1) / 2."""
    mu, s = np.array([[0.3, -1.2]]), np.array([[0.5, 2.0]])
    kl, z, std = numpy_ref.vae_reparameterize(np.hstack([mu, np.log(s ** 2)]), np.ones((1, 2)), 1)
    expected = float(np.sum(np.log(1 / s) + (s ** 2 + mu ** 2 - 1) / 2))
    assert kl == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(std, s, rtol=1e-15)
    np.testing.assert_allclose(z, mu + s, rtol=1e-15)


@pytest.mark.parametrize("kernel", ["vae_residual", "score_matching_loss", "gradient_penalty",
                                    "hinge_generator", "score_matching_loss_levels"])
def test_model_loss_gradients_match_finite_differences(kernel):
    """The array each loss returns next to the loss is d loss / d (its first input)."""
    for case, (name, inputs, _) in _model_loss_inputs(np.random.default_rng(24),
                                                      np.float64).items():
        if name != kernel:
            continue
        inputs = list(inputs)
        function = getattr(numpy_ref, kernel)
        loss, grad = function(*inputs)
        assert isinstance(loss, float), case
        assert_matches_fd(grad, numerical_gradient(lambda: function(*inputs)[0], inputs[0]))


def test_gradient_penalty_by_hand():
    """Rows of norms 5, 13 and 13 towards L = 10: row 1 (the first of the two largest),
    P = 0.1 (13 - 10)^2 = 0.9, dP/dt_1 = 0.2 (13 - 10) t_1 / 13."""
    tangent = np.array([[3.0, 4.0], [5.0, 12.0], [12.0, 5.0]])
    penalty, grad = numpy_ref.gradient_penalty(tangent, 10.0, 10.0)
    assert penalty == pytest.approx(0.9, rel=1e-14)
    np.testing.assert_allclose(grad, [[0, 0], [0.6 * 5 / 13, 0.6 * 12 / 13], [0, 0]], rtol=1e-14)


def test_score_matching_loss_by_hand():
    """At sigma = 0.5, score 1 and eps 0.25: residual 1.5, L = w 1.5^2, dL/ds = 2 w 1.5."""
    for k, weight in ((1, 0.5), (2, 0.25)):
        loss, grad = numpy_ref.score_matching_loss(np.ones((1, 1)), np.full((1, 1), 0.25), 0.5,
                                                   k)
        assert loss == pytest.approx(weight * 2.25, rel=1e-15)
        np.testing.assert_allclose(grad, [[2 * weight * 1.5]], rtol=1e-15)
    noisy = numpy_ref.score_matching_noisy(np.ones((1, 1)), np.full((1, 1), 2.0), 0.5)
    np.testing.assert_array_equal(noisy, [[2.0]])


def test_score_matching_with_levels_by_hand():
    """Rows at levels 1 and 0 of A = (2, 3), K = (0.5, 0.25), mu = 1: with r = 1, x~ = 3 and
    eps = 0.5, R = (3 - 0.5 + 0.5, 2 - 1 + 0.5) = (3, 1.5), L = (9 + 2.25) / 4,
    dL/dr = (3 * 3, 2 * 1.5) / 2; and x + sigma_l eps at sigmas (1, 4)."""
    ones, levels = np.ones((2, 1)), np.array([1, 0])
    loss, grad = numpy_ref.score_matching_loss_levels(ones, 3 * ones, 0.5 * ones, levels,
                                                      np.array([2.0, 3.0]),
                                                      np.array([0.5, 0.25]), 1.0)
    assert loss == pytest.approx(11.25 / 4, rel=1e-15)
    np.testing.assert_allclose(grad, [[4.5], [1.5]], rtol=1e-15)
    noisy = numpy_ref.score_matching_noisy_levels(ones, ones, levels, np.array([1.0, 4.0]))
    np.testing.assert_array_equal(noisy, [[5.0], [2.0]])


# --------------------------------------------------------------------------- column blocks and rows


def test_put_columns_builds_the_blocks_by_hand():
    """A layer input of two blocks, [a + pad(b), pad(c)] (widths 3 and 4; b, c narrower and
    zero-padded), put over NaN; the columns outside a block are left as they are."""
    rng = np.random.default_rng(25)
    a, b, c = (rng.standard_normal((2, width)) for width in (3, 1, 2))
    h = np.full((2, 8), np.nan)
    for node, start, width, accumulate in ((a, 0, 3, False), (b, 0, 3, True), (c, 3, 4, False)):
        h = numpy_ref.put_columns(node, h, start, width, accumulate)
    want = np.zeros((2, 8))
    want[:, :3] = a
    want[:, :1] += b
    want[:, 3:5] = c
    want[:, 7] = np.nan
    np.testing.assert_array_equal(h, want)


@pytest.mark.parametrize("accumulate", [False, True])
def test_take_columns_is_the_adjoint_of_put_columns(accumulate):
    """d/dnode sum(G * put_columns(node, h, ...)) = take_columns(G, start, w), by central
    differences."""
    rng = np.random.default_rng(26)
    node, h, weights = (rng.standard_normal(shape) for shape in ((4, 2), (4, 9), (4, 9)))
    grad = numpy_ref.take_columns(weights, 3, 2)
    loss = lambda: float(np.sum(weights * numpy_ref.put_columns(node, h, 3, 5, accumulate)))
    assert_matches_fd(grad, numerical_gradient(loss, node))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_column_blocks_and_rows_match_numpy(cpu, dtype):
    rng = np.random.default_rng(27)
    h0 = rng.standard_normal((5, 9)).astype(dtype)
    node, held = rng.standard_normal((2, 5, 2)).astype(dtype)
    index = rng.permutation(7)
    source = rng.standard_normal((7, 9)).astype(dtype)
    results = {}
    for backend in (numpy_backend, cpu):
        h, grad_node, out = h0.copy(), held.copy(), np.full((6, 9), np.nan, dtype)
        backend.put_columns(node, h, 4, 3, False)
        backend.put_columns(node[:, :1].copy(), h, 0, 4, True)
        backend.take_columns(h0, 6, grad_node, True)
        backend.gather_rows(source, index, 2, out, 1, 4)
        results[backend] = (h, grad_node, out)
    for actual, wanted in zip(results[cpu], results[numpy_backend]):
        np.testing.assert_array_equal(actual, wanted)
    np.testing.assert_array_equal(results[cpu][2][1:5], source[index[2:6]])


@pytest.mark.parametrize("call", [
    lambda b: b.put_columns(np.ones((2, 3)), np.ones((2, 5)), 3, 3, False),
    lambda b: b.put_columns(np.ones((2, 3)), np.ones((2, 5)), 0, 2, False),
    lambda b: b.take_columns(np.ones((2, 5)), 4, np.ones((2, 2)), False),
    lambda b: b.gather_rows(np.ones((3, 2)), np.array([0, 3]), 0, np.ones((2, 2)), 0, 2),
    lambda b: b.gather_rows(np.ones((3, 2)), np.array([0, 1]), 1, np.ones((2, 2)), 0, 2),
    lambda b: b.vae_code_gradient(np.ones((2, 4)), np.ones((2, 2)), np.ones((2, 2)),
                                  np.ones((2, 3)), 1, np.ones((2, 4))),
    lambda b: b.score_matching_noisy_levels(np.ones((2, 2)), np.ones((2, 2)), np.array([0, 3]),
                                            np.ones(3), np.ones((2, 2))),
], ids=["past the end", "node wider than its block", "take past the end", "row out of range",
        "index too short", "grad_z of another shape", "level out of range"])
def test_column_row_and_loss_kernels_refuse_shapes_that_do_not_fit(backend, call):
    with pytest.raises(ValueError):
        call(backend)


# --------------------------------------------------------------------------- the textbook's form


def test_textbook_leaves_its_inputs_as_they_are():
    """The functions whose backend forms update arrays in place return new ones instead."""
    rng = np.random.default_rng(21)
    W = rng.standard_normal((6, 4))
    param, grad, m = rng.standard_normal((3, 10))
    v = rng.random(10)  # a second moment
    x = rng.standard_normal(8)
    langevin = (rng.standard_normal((5, 1)), rng.standard_normal(5), rng.standard_normal((3, 5)),
                rng.standard_normal((2, 3)), rng.standard_normal((1, 3)), rng.standard_normal(2),
                np.array([0.1, 0.01]))
    arrays = (W, param, grad, m, v, x, *langevin)
    u_sn, v_sn = _normalized(rng, 6), _normalized(rng, 4)
    arrays += (u_sn, v_sn)
    before = [array.copy() for array in arrays]
    _, _, new_u_sn, new_v_sn = numpy_ref.spectral_norm_forward(W, u_sn, v_sn, 2)
    new_param, new_m, new_v = numpy_ref.adam_step(param, grad, m, v, 1, 0.1, 0.9, 0.99, 1e-8)
    moved = numpy_ref.annealed_langevin(x, *langevin, 3, 5, 0, 0.01, 0.2)
    for array, copy in zip(arrays, before):
        np.testing.assert_array_equal(array, copy)
    for new, old in ((new_u_sn, u_sn), (new_v_sn, v_sn), (new_param, param), (new_m, m),
                     (new_v, v), (moved, x)):
        assert np.abs(new - old).max() > 0


# --------------------------------------------------------------------------- annealed Langevin

#: z(seed 7, sample i, step t), rows t = 0 .. 3, columns i = 0 .. 3, as float.hex: the numbers
#: every run of every backend has drawn since the generator was written.
PINNED_LANGEVIN_NOISE = [
    ["-0x1.7759457ad11a4p-1", "0x1.ea164bce77660p-1", "-0x1.56302292364a7p-3",
     "0x1.2bf3a3eebaac6p+0"],
    ["0x1.58a7e3494743fp-1", "-0x1.a0dc513856888p+0", "-0x1.4da19e4b2c19fp+0",
     "0x1.8cf5e8c5c8673p-1"],
    ["-0x1.9f109245dcff9p-2", "0x1.ea66143460aecp-2", "0x1.b5288ccc03895p-1",
     "0x1.4316b68c578d6p+0"],
    ["-0x1.46207681eae2ap+0", "0x1.30c2f0c598401p+1", "-0x1.c4bff42cd131ep-1",
     "-0x1.479916077ab92p-4"],
]


def test_langevin_noise_is_pinned():
    keys = numpy_ref.langevin_sample_keys(7, 4)
    for step, row in enumerate(PINNED_LANGEVIN_NOISE):
        assert [float(z).hex() for z in numpy_ref.langevin_noise(keys, step)] == row


# --------------------------------------------------------------------------- cpu == numpy

MATCH_SHAPES = [(1, 1, 1), (1, 3, 2), (7, 1, 5), (7, 5, 1), (6, 1, 1), (33, 17, 9)]
MATCH_CASES = ([(shape, name) for shape in MATCH_SHAPES for name in ACTIVATIONS]
               + [((1000, 512, 256), "leaky_relu"), ((1000, 512, 256), "tanh"),
                  ((1000, 1, 512), "silu"), ((1000, 256, 1), "identity")])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, name", MATCH_CASES)
def test_cpu_dense_layer_matches_numpy(cpu, shape, name, dtype):
    inputs = _dense_layer_inputs(np.random.default_rng(12), shape, dtype)
    expected = _dense_layer_outputs(numpy_backend, inputs, code(name))
    actual = _dense_layer_outputs(cpu, inputs, code(name))
    for key, value in expected.items():
        assert actual[key].dtype == dtype
        assert_match(actual[key], value, dtype, key)


def _cpu_activation(cpu, name, z, order):
    """act(z), act'(z) or act''(z) from the cpu dense-layer kernels, through one unit with
    weight 1 and bias 0 (so that the kernels' z is z exactly), for z of shape (n,)."""
    kind, x = code(name), z.reshape(-1, 1)
    W, b = np.ones((1, 1), z.dtype), np.zeros(1, z.dtype)
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    z_out, a, grad_z, grad_dz = (np.empty_like(x) for _ in range(4))
    grad_W, grad_b = np.empty_like(W), np.empty_like(b)
    cpu.linear_forward(x, W, b, kind, SLOPE, z_out, a)
    if order == 1:  # grad_z = grad_a act'(z), grad_a = 1
        cpu.linear_backward(x, W, z_out, a, ones, kind, SLOPE, grad_z, grad_W, grad_b, None,
                            False, False)
    if order == 2:  # grad_z = grad_da act''(z) dz + grad_a act'(z), grad_da = dz = 1, grad_a = 0
        cpu.linear_jvp_backward(x, x, W, z_out, a, ones, zeros, ones, kind, SLOPE, grad_z,
                                grad_dz, grad_W, grad_b, None, None, False, False)
    return (a if order == 0 else grad_z).reshape(-1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_cpu_activations_match_the_textbook(cpu, name, dtype):
    """cpu evaluates exp itself: compare act, act' and act'' over the whole float range, with
    zero, the infinities and NaN."""
    magnitudes = np.concatenate([np.geomspace(1e-30, 800, 2001), [0.0, np.finfo(dtype).max]])
    z = np.concatenate([magnitudes, -magnitudes, [np.nan, -np.inf, np.inf]]).astype(dtype)
    # cpu's silu is -inf * 0 = NaN at the infinities (its kernels are given finite z); the
    # textbook's limits there are tested on their own above
    compared = np.isfinite(z) | np.isnan(z) if name == "silu" else np.ones(z.shape, bool)
    rtol = {np.float32: 1e-6, np.float64: 1e-14}[dtype]
    info = np.finfo(dtype)
    # act(z): to rtol, down to the subnormal results (below tiny), which have fewer digits.
    # act' and act'' of tanh and sigmoid take 1 - a from an a that each backend rounds on its
    # own: where |a| nears 1 they agree to a few eps, absolutely
    atol = (info.tiny, 4 * info.eps, 4 * info.eps)
    for order in range(3):
        expected = act(name, z, order)
        actual = _cpu_activation(cpu, name, z, order)
        np.testing.assert_allclose(actual[compared], expected[compared],
                                   rtol=rtol if order == 0 else 100 * rtol, atol=atol[order],
                                   err_msg=f"order {order}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
def test_cpu_losses_match_numpy(cpu, name, dtype):
    rng = np.random.default_rng(14)
    for shape in [(1,), (7, 1), (1000, 1), (300,)]:
        pred, target = (v.reshape(shape).astype(dtype)
                        for v in _loss_inputs(rng, name, int(np.prod(shape))))
        expected_grad, grad = np.empty_like(pred), np.empty_like(pred)
        expected = getattr(numpy_backend, name)(pred, target, expected_grad)
        value = getattr(cpu, name)(pred, target, grad)
        assert isinstance(value, float)
        assert value == pytest.approx(expected, rel=MATCH_TOL[dtype])
        assert_match(grad, expected_grad, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_adam_matches_numpy(cpu, dtype):
    rng = np.random.default_rng(15)
    start = rng.standard_normal(1000).astype(dtype)
    state = {mod: [start.copy(), np.zeros_like(start), np.zeros_like(start)]
             for mod in (numpy_backend, cpu)}
    for step in range(1, 11):
        grad = rng.standard_normal(start.shape).astype(dtype)
        for mod, (param, m, v) in state.items():
            mod.adam_step(param, grad, m, v, step, 1e-3, 0.5, 0.9, 1e-8)
    for actual, expected, name in zip(state[cpu], state[numpy_backend], ("param", "m", "v")):
        assert_match(actual, expected, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (16, 9), (512, 256)])
@pytest.mark.parametrize("n_power_iterations", [0, 1, 2])
def test_cpu_spectral_norm_matches_numpy(cpu, shape, n_power_iterations, dtype):
    rng = np.random.default_rng(16)
    W = rng.standard_normal(shape).astype(dtype)
    u0, v0 = _normalized(rng, shape[0], dtype), _normalized(rng, shape[1], dtype)
    grad_W_sn = rng.standard_normal(shape).astype(dtype)
    grad_W0 = rng.standard_normal(shape).astype(dtype)
    results = {}
    for mod in (numpy_backend, cpu):
        u, v, W_sn = u0.copy(), v0.copy(), np.empty_like(W)
        sigma = mod.spectral_norm_forward(W, u, v, n_power_iterations, W_sn)
        assert isinstance(sigma, float)
        grads = []
        for accumulate in (False, True):
            grad_W = grad_W0.copy()
            mod.spectral_norm_backward(W, u, v, sigma, grad_W_sn, grad_W, accumulate)
            grads.append(grad_W)
        results[mod] = (sigma, u, v, W_sn, *grads)
    names = ("sigma", "u", "v", "W_sn", "grad_W", "grad_W accumulated")
    # the two terms of grad_W cancel exactly for a 1 x 1 W: compare on the scale of the first
    term_scale = float(np.max(np.abs(grad_W_sn))) / abs(results[numpy_backend][0])
    for actual, expected, name in zip(results[cpu], results[numpy_backend], names):
        scale = term_scale if name == "grad_W" else None
        assert_match(actual, expected, dtype, name, scale)


def test_mismatched_shapes_raise(backend):
    x, W, b = make_layer(np.random.default_rng(19), 4, 3, 5)
    wrong = np.empty((4, 6))
    with pytest.raises(ValueError):
        backend.linear_forward(x, W, b, code("relu"), SLOPE, wrong, wrong)
    z, a = forward(backend, x, W, b, code("relu"))
    with pytest.raises(ValueError):
        backend.linear_backward(x, W, z, a, a, code("relu"), SLOPE, np.empty_like(z),
                                np.empty((5, 2)), np.empty_like(b), None, False, False)
    with pytest.raises(ValueError):
        backend.bce_with_logits(np.zeros(3), np.zeros(4), np.empty(3))


def test_backends_list_their_kernels():
    for name in BACKENDS:
        backend = kernels.get_backend(name)
        assert backend.__all__ == list(kernels.KERNELS)
        assert all(callable(getattr(backend, kernel)) for kernel in backend.__all__)


_ALLOCATION_PROBE = textwrap.dedent("""
    import numpy as np
    from numba.core.runtime import rtsys
    from npgen.kernels import cpu

    def allocations(kernel, *args):
        kernel(*args)
        before = rtsys.get_allocation_stats().alloc
        kernel(*args)
        # numba wraps each array argument in one record when it enters a kernel
        arrays = sum(isinstance(arg, np.ndarray) for arg in args)
        return rtsys.get_allocation_stats().alloc - before - arrays

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for n_in, n_out in [(8, 6), (1, 6), (8, 1)]:
            x, dx = rng.random((2, 50, n_in)).astype(dtype)
            W, gW = rng.random((2, n_out, n_in)).astype(dtype)
            b, gb = rng.random((2, n_out)).astype(dtype)
            z, a, dz, da, ga, gda, gz, gdz = rng.random((8, 50, n_out)).astype(dtype)
            gx, gdx = rng.random((2, 50, n_in)).astype(dtype)
            for kind in (2, 4):
                assert allocations(cpu.linear_forward, x, W, b, kind, .1, z, a) <= 0
                assert allocations(cpu.linear_jvp, x, dx, W, b, kind, .1, z, a, dz, da) <= 0
                assert allocations(cpu.linear_backward, x, W, z, a, ga, kind, .1, gz, gW, gb,
                                   gx, True, True) <= 0
                assert allocations(cpu.linear_jvp_backward, x, dx, W, z, a, dz, ga, gda, kind,
                                   .1, gz, gdz, gW, gb, gx, gdx, False, True) <= 0
            u, v = rng.random(n_out).astype(dtype), rng.random(n_in).astype(dtype)
            assert allocations(cpu.spectral_norm_forward, W, u, v, 1, gW) <= 0
            assert allocations(cpu.spectral_norm_backward, W, u, v, 2.0, W, gW, True) <= 0
        p, g, m, v = rng.random((4, 100)).astype(dtype)
        assert allocations(cpu.adam_step, p, g, m, v, 3, 1e-3, .9, .99, 1e-8) <= 0
        assert allocations(cpu.bce_with_logits, p, g, m) <= 0
        assert allocations(cpu._mean_loss, 2, p, p, g) <= 0  # hinge_generator
        assert allocations(cpu.vae_residual, p, g, 0.1, m) <= 0
        assert allocations(cpu.score_matching_noisy, p, g, 0.5, m) <= 0
        assert allocations(cpu.score_matching_loss, p, g, 0.5, 2, m) <= 0
        code, h = rng.random((50, 4)).astype(dtype), rng.random((50, 9)).astype(dtype)
        eps, z, std, grad_z, node = rng.random((5, 50, 2)).astype(dtype)
        assert allocations(cpu._vae_sample, code, eps, 2, z, std) <= 0
        assert allocations(cpu.vae_code_gradient, code, eps, std, grad_z, 2, code.copy()) <= 0
        assert allocations(cpu.gradient_penalty, eps, 1.5, 10.0, z) <= 0
        levels, table = rng.integers(0, 3, 50), p[:3].copy()
        assert allocations(cpu.score_matching_noisy_levels, eps, z, levels, table, std) <= 0
        assert allocations(cpu.score_matching_loss_levels, eps, z, std, levels, table, table,
                           0.2, grad_z) <= 0
        assert allocations(cpu.put_columns, node, h, 3, 4, False) <= 0
        assert allocations(cpu.take_columns, h, 3, node, True) <= 0
        rows = np.arange(50)[::-1].copy()
        assert allocations(cpu.gather_rows, h, rows, 5, h.copy(), 0, 30) <= 0
        # the elementwise pass of linear_backward_input (whose gemm is the caller's BLAS call)
        assert allocations(cpu._activation_backward, 5, .1, p, g, m, v) <= 0
""")


def test_cpu_kernels_allocate_nothing(cpu):
    """In numba's allocation statistics (a fresh process, the compiled kernels loaded from the
    cache that the ``cpu`` fixture filled), no kernel allocates beyond argument passing."""
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    result = subprocess.run([sys.executable, "-c", _ALLOCATION_PROBE], env=env,
                            cwd=Path(__file__).resolve().parent, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr


def test_cpu_rejects_mixed_float_types(cpu):
    x = np.ones((2, 3))
    with pytest.raises(TypeError):
        cpu.linear_forward(x, np.ones((4, 3), np.float32), np.ones(4), 0, SLOPE,
                           np.empty((2, 4)), np.empty((2, 4)))


# --------------------------------------------------------------------------- torch


def test_adam_matches_torch(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(17)
    lr, betas, eps = 3e-3, (0.5, 0.999), 1e-8
    param = rng.standard_normal(50)
    reference = torch.tensor(param.copy(), requires_grad=True)
    optimizer = torch.optim.Adam([reference], lr=lr, betas=betas, eps=eps)
    m, v, grad = np.zeros_like(param), np.zeros_like(param), np.empty_like(param)
    for step in range(1, 21):
        grad[...] = rng.standard_normal(param.shape)
        reference.grad = torch.tensor(grad.copy())
        optimizer.step()
        backend.adam_step(param, grad, m, v, step, lr, *betas, eps)
    state = optimizer.state[reference]
    np.testing.assert_allclose(param, reference.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m, state["exp_avg"].numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(v, state["exp_avg_sq"].numpy(), rtol=1e-12, atol=1e-14)


def test_spectral_norm_matches_torch(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(18)
    n_out, n_in = 7, 5
    layer = torch.nn.utils.spectral_norm(torch.nn.Linear(n_in, n_out).double())
    W = layer.weight_orig.detach().numpy().copy()
    u, v = _normalized(rng, n_out), _normalized(rng, n_in)
    with torch.no_grad():
        layer.weight_u.copy_(torch.from_numpy(u))
        layer.weight_v.copy_(torch.from_numpy(v))
    weights = rng.standard_normal(W.shape)
    W_sn = np.empty_like(W)
    for training in (True, True, False):
        layer.train(training)
        layer.weight_orig.grad = None
        # a call recomputes layer.weight, with a power iteration when training
        layer(torch.zeros(1, n_in, dtype=torch.float64))
        loss = (layer.weight * torch.from_numpy(weights)).sum()
        loss.backward()
        sigma = backend.spectral_norm_forward(W, u, v, 1 if training else 0, W_sn)
        grad_W = np.empty_like(W)
        backend.spectral_norm_backward(W, u, v, sigma, weights, grad_W, False)
        np.testing.assert_allclose(u, layer.weight_u.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(v, layer.weight_v.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(W_sn, layer.weight.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(grad_W, layer.weight_orig.grad.numpy(), rtol=1e-10,
                                   atol=1e-12)
