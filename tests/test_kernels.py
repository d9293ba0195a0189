"""Tests of the array kernels in ``kernels``.

Every backward is checked against central finite differences of its forward (float64), the
numba backend against the numpy reference on many shapes and both float types, and a few
results against values worked out by hand or computed by torch when it is installed.
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
from npgen.kernels import numpy_ref

BACKENDS = ["numpy", "cpu"]
ACTIVATIONS = sorted(kernels.ACTIVATIONS)
SMOOTH_AND_LEAKY = ["silu", "tanh", "sigmoid", "leaky_relu"]
SLOPE = 0.2

#: Relative tolerance of cpu against numpy_ref; absolute errors are scaled by the largest value.
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
    """cpu against numpy_ref: relative tolerance, and an absolute one scaled by ``scale``
    (by default max |expected|; give the size of the terms where they cancel)."""
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


def activation(backend, kind, z):
    out = np.empty_like(z)
    backend.activation_forward(kind, SLOPE, z, out)
    return out


def derivative(backend, kind, z, order=1):
    out = np.empty_like(z)
    name = "activation_derivative" if order == 1 else "activation_second_derivative"
    getattr(backend, name)(kind, SLOPE, z, activation(backend, kind, z), out)
    return out


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
def test_activation_values(backend, name):
    z = np.array([[-2.0, -0.5, 0.0, 0.5, 2.0]])
    expected = {
        "identity": z,
        "relu": np.maximum(z, 0),
        "leaky_relu": np.where(z > 0, z, SLOPE * z),
        "silu": z / (1 + np.exp(-z)),
        "tanh": np.tanh(z),
        "sigmoid": 1 / (1 + np.exp(-z)),
    }[name]
    np.testing.assert_allclose(activation(backend, code(name), z), expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_derivatives_match_finite_differences(backend, name):
    rng = np.random.default_rng(1)
    kind = code(name)
    z = sample_away_from_zero(rng, (4, 6))
    # activations are elementwise, so one shifted evaluation differentiates every entry
    numeric_d1 = (activation(backend, kind, z + EPS)
                  - activation(backend, kind, z - EPS)) / (2 * EPS)
    assert_matches_fd(derivative(backend, kind, z), numeric_d1)
    numeric_d2 = (derivative(backend, kind, z + EPS)
                  - derivative(backend, kind, z - EPS)) / (2 * EPS)
    assert_matches_fd(derivative(backend, kind, z, order=2), numeric_d2)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_is_chain_rule(backend, name):
    rng = np.random.default_rng(2)
    kind = code(name)
    z = sample_away_from_zero(rng, (3, 5))
    grad_a = rng.standard_normal(z.shape)
    grad_z = np.empty_like(z)
    backend.activation_backward(kind, SLOPE, z, activation(backend, kind, z), grad_a, grad_z)
    # d/dz of sum(act(z) * grad_a), elementwise
    numeric = (activation(backend, kind, z + EPS)
               - activation(backend, kind, z - EPS)) / (2 * EPS) * grad_a
    assert_matches_fd(grad_z, numeric)


def test_kink_uses_left_derivative(backend):
    z = np.zeros((1, 2))
    np.testing.assert_array_equal(derivative(backend, code("relu"), z), 0.0)
    np.testing.assert_array_equal(derivative(backend, code("leaky_relu"), z), SLOPE)


def test_unknown_activation_raises(backend):
    z = np.zeros((1, 2))
    with pytest.raises(ValueError):
        backend.activation_forward(17, SLOPE, z, np.empty_like(z))


# --------------------------------------------------------------------------- dense layer

FD_SHAPES = [(4, 3, 5), (4, 1, 3), (4, 3, 1)]


@pytest.mark.parametrize("shape", FD_SHAPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_linear_backward_matches_finite_differences(backend, name, shape):
    rng = np.random.default_rng(3)
    kind = code(name)
    x, W, b = make_layer(rng, *shape, margin=0.05)
    weights = rng.standard_normal((shape[0], shape[2]))

    def loss():
        return float(np.sum(forward(backend, x, W, b, kind)[1] * weights))

    z, a = forward(backend, x, W, b, kind)
    grad_z, grad_W, grad_b, grad_x = (np.empty_like(v) for v in (z, W, b, x))
    backend.linear_backward(x, W, z, a, weights, kind, SLOPE, grad_z, grad_W, grad_b, grad_x,
                            False, True)
    for analytic, param in ((grad_W, W), (grad_b, b), (grad_x, x)):
        assert_matches_fd(analytic, numerical_gradient(loss, param))
    input_only = np.empty_like(x)
    backend.linear_backward_input(W, z, a, weights, kind, SLOPE, np.empty_like(z), input_only)
    assert_matches_fd(input_only, numerical_gradient(loss, x))


@pytest.mark.parametrize("shape", FD_SHAPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_linear_jvp_is_directional_derivative(backend, name, shape):
    rng = np.random.default_rng(4)
    kind = code(name)
    x, W, b = make_layer(rng, *shape, margin=0.05)
    dx = rng.standard_normal(x.shape)
    z, a, dz, da = jvp(backend, x, dx, W, b, kind)
    z_ref, a_ref = forward(backend, x, W, b, kind)
    np.testing.assert_allclose(z, z_ref, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(a, a_ref, rtol=1e-15, atol=1e-15)
    z_up, a_up = forward(backend, x + EPS * dx, W, b, kind)
    z_down, a_down = forward(backend, x - EPS * dx, W, b, kind)
    assert_matches_fd(dz, (z_up - z_down) / (2 * EPS))
    assert_matches_fd(da, (a_up - a_down) / (2 * EPS))


@pytest.mark.parametrize("shape", FD_SHAPES)
@pytest.mark.parametrize("name", SMOOTH_AND_LEAKY)
def test_linear_jvp_backward_matches_finite_differences(backend, name, shape):
    rng = np.random.default_rng(5)
    kind = code(name)
    x, W, b = make_layer(rng, *shape, margin=0.05)
    dx = rng.standard_normal(x.shape)
    weights_a = rng.standard_normal((shape[0], shape[2]))
    weights_da = rng.standard_normal((shape[0], shape[2]))

    def loss():
        _, a, _, da = jvp(backend, x, dx, W, b, kind)
        return float(np.sum(a * weights_a) + np.sum(da * weights_da))

    z, a, dz, _ = jvp(backend, x, dx, W, b, kind)
    grad_z, grad_dz = np.empty_like(z), np.empty_like(z)
    grad_W, grad_b, grad_x, grad_dx = (np.empty_like(v) for v in (W, b, x, dx))
    backend.linear_jvp_backward(x, dx, W, z, a, dz, weights_a, weights_da, kind, SLOPE,
                                grad_z, grad_dz, grad_W, grad_b, grad_x, grad_dx, False, True)
    for analytic, param in ((grad_W, W), (grad_b, b), (grad_x, x), (grad_dx, dx)):
        assert_matches_fd(analytic, numerical_gradient(loss, param))


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
        backend.linear_backward(x, W, z, a, a, kind, SLOPE, grad_z, grad_W, grad_b, None,
                                False, False)
        backend.linear_backward(x, W, z, a, a, kind, SLOPE, grad_z, grad_W, grad_b, sentinel,
                                False, False)
        backend.linear_jvp_backward(x, dx, W, z, a, dz, a, a, kind, SLOPE, grad_z, grad_dz,
                                    grad_W, grad_b, None, None, False, False)
        backend.linear_jvp_backward(x, dx, W, z, a, dz, a, a, kind, SLOPE, grad_z, grad_dz,
                                    grad_W, grad_b, sentinel, sentinel, False, False)
        np.testing.assert_array_equal(sentinel, 7.0)


# --------------------------------------------------------------------------- losses


def _loss_inputs(rng, name, n):
    if name == "bce":
        return rng.uniform(0.05, 0.95, n), rng.uniform(0, 1, n)
    if name == "hinge":
        target = rng.choice([-1.0, 1.0], n)
        margin = sample_away_from_zero(rng, n, low=0.05, high=2.0)  # 1 - t s, away from 0
        return (1 - margin) * target, target
    return rng.normal(0, 2, n), rng.uniform(0, 1, n)


LOSSES = ["bce_with_logits", "bce", "hinge", "squared_error"]


@pytest.mark.parametrize("name", LOSSES)
def test_loss_gradient_matches_finite_differences(backend, name):
    rng = np.random.default_rng(7)
    pred, target = _loss_inputs(rng, name, 12)
    loss_fn = getattr(backend, name)
    scratch = np.empty_like(pred)
    grad = np.empty_like(pred)
    value = loss_fn(pred, target, grad)
    assert isinstance(value, float)
    assert_matches_fd(grad, numerical_gradient(lambda: loss_fn(pred, target, scratch), pred))


@pytest.mark.parametrize("name", LOSSES)
def test_loss_values(backend, name):
    rng = np.random.default_rng(8)
    pred, target = _loss_inputs(rng, name, 9)
    expected = {
        "bce_with_logits": lambda s, t: -(t * math.log(1 / (1 + math.exp(-s)))
                                          + (1 - t) * math.log(1 - 1 / (1 + math.exp(-s)))),
        "bce": lambda p, t: -(t * math.log(p) + (1 - t) * math.log(1 - p)),
        "hinge": lambda s, t: max(0.0, 1 - t * s),
        "squared_error": lambda p, t: (p - t) ** 2,
    }[name]
    mean = sum(expected(p, t) for p, t in zip(pred, target)) / pred.size
    value = getattr(backend, name)(pred, target, np.empty_like(pred))
    assert value == pytest.approx(mean, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
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


def test_bce_clamps_log_at_minus_100(backend):
    probs = np.array([0.0, 1.0])
    target = np.array([1.0, 0.0])
    grad = np.empty_like(probs)
    assert backend.bce(probs, target, grad) == pytest.approx(100.0)
    assert np.all(np.isfinite(grad))


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


def test_spectral_norm_backward_matches_finite_differences(backend):
    rng = np.random.default_rng(11)
    W = rng.standard_normal((5, 4))
    u, v = _normalized(rng, 5), _normalized(rng, 4)
    W_sn = np.empty_like(W)
    backend.spectral_norm_forward(W, u, v, 1, W_sn)  # u, v from one power iteration
    weights = rng.standard_normal(W.shape)

    def loss():  # u and v held fixed: zero power iterations
        backend.spectral_norm_forward(W, u, v, 0, W_sn)
        return float(np.sum(W_sn * weights))

    sigma = backend.spectral_norm_forward(W, u, v, 0, W_sn)
    grad_W = np.empty_like(W)
    backend.spectral_norm_backward(W, u, v, sigma, weights, grad_W, False)
    assert_matches_fd(grad_W, numerical_gradient(loss, W))


def test_spectral_norm_eps_is_shared():
    assert kernels.get_backend("cpu").SPECTRAL_NORM_EPS == numpy_ref.SPECTRAL_NORM_EPS


# --------------------------------------------------------------------------- cpu == numpy_ref

MATCH_SHAPES = [(1, 1, 1), (1, 3, 2), (7, 1, 5), (7, 5, 1), (6, 1, 1), (33, 17, 9)]
MATCH_CASES = ([(shape, name) for shape in MATCH_SHAPES for name in ACTIVATIONS]
               + [((1000, 512, 256), "leaky_relu"), ((1000, 512, 256), "tanh"),
                  ((1000, 1, 512), "silu"), ((1000, 256, 1), "identity")])
DTYPES = [np.float32, np.float64]


def _dense_layer_outputs(backend, inputs, kind):
    """Every output of the four dense-layer kernels, for all accumulate / need_grad_x flags."""
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
    for flags in [(False, False), (False, True), (True, False), (True, True)]:
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, name", MATCH_CASES)
def test_cpu_dense_layer_matches_numpy(cpu, shape, name, dtype):
    rng = np.random.default_rng(12)
    n, n_in, n_out = shape
    x, W, b = make_layer(rng, n, n_in, n_out, dtype)
    dx, grad_a, grad_da, grad_W0, grad_b0 = (
        rng.standard_normal(s).astype(dtype) for s in (x.shape, (n, n_out), (n, n_out), W.shape,
                                                         b.shape))
    inputs = (x, dx, W, b, grad_a, grad_da, grad_W0, grad_b0)
    expected = _dense_layer_outputs(numpy_ref, inputs, code(name))
    actual = _dense_layer_outputs(cpu, inputs, code(name))
    for key, value in expected.items():
        assert actual[key].dtype == dtype
        assert_match(actual[key], value, dtype, key)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_cpu_activations_match_numpy(cpu, name, dtype):
    rng = np.random.default_rng(13)
    kind = code(name)
    for shape in [(1, 1), (5, 3), (1000, 64), (17,)]:
        z = (3 * rng.standard_normal(shape)).astype(dtype)
        a = activation(numpy_ref, kind, z)
        grad_a = rng.standard_normal(shape).astype(dtype)
        for fn in ("activation_derivative", "activation_second_derivative"):
            expected, actual = np.empty_like(z), np.empty_like(z)
            getattr(numpy_ref, fn)(kind, SLOPE, z, a, expected)
            getattr(cpu, fn)(kind, SLOPE, z, a, actual)
            assert_match(actual, expected, dtype, fn)
        assert_match(activation(cpu, kind, z), a, dtype, "activation_forward")
        expected, actual = np.empty_like(z), np.empty_like(z)
        numpy_ref.activation_backward(kind, SLOPE, z, a, grad_a, expected)
        cpu.activation_backward(kind, SLOPE, z, a, grad_a, actual)
        assert_match(actual, expected, dtype, "activation_backward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["silu", "tanh", "sigmoid"])
def test_cpu_smooth_activations_on_extreme_inputs(cpu, name, dtype):
    """cpu evaluates exp itself: compare over the whole range, with NaN and infinities."""
    magnitudes = np.concatenate([np.logspace(-30, np.log10(800), 2001), [0.0, np.inf]])
    z = np.concatenate([magnitudes, -magnitudes, [np.nan]]).astype(dtype)
    kind = code(name)
    # silu(-inf) = -inf * 0 is NaN in both backends; numpy warns about it
    quiet = {"invalid": "ignore"}
    with np.errstate(**quiet):
        expected = activation(numpy_ref, kind, z)
    rtol = {np.float32: 1e-6, np.float64: 1e-14}[dtype]
    tiny = np.finfo(dtype).tiny  # results below it are subnormal, with fewer digits
    np.testing.assert_allclose(activation(cpu, kind, z), expected, rtol=rtol, atol=tiny)
    for order in (1, 2):
        reference, actual = np.empty_like(z), np.empty_like(z)
        name = "activation_derivative" if order == 1 else "activation_second_derivative"
        with np.errstate(**quiet):
            getattr(numpy_ref, name)(kind, SLOPE, z, expected, reference)
        getattr(cpu, name)(kind, SLOPE, z, expected, actual)
        np.testing.assert_allclose(actual, reference, rtol=100 * rtol, atol=tiny)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
def test_cpu_losses_match_numpy(cpu, name, dtype):
    rng = np.random.default_rng(14)
    for shape in [(1,), (7, 1), (1000, 1), (300,)]:
        pred, target = (v.reshape(shape).astype(dtype)
                        for v in _loss_inputs(rng, name, int(np.prod(shape))))
        expected_grad, grad = np.empty_like(pred), np.empty_like(pred)
        expected = getattr(numpy_ref, name)(pred, target, expected_grad)
        value = getattr(cpu, name)(pred, target, grad)
        assert isinstance(value, float)
        assert value == pytest.approx(expected, rel=MATCH_TOL[dtype])
        assert_match(grad, expected_grad, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_adam_matches_numpy(cpu, dtype):
    rng = np.random.default_rng(15)
    start = rng.standard_normal(1000).astype(dtype)
    state = {mod: [start.copy(), np.zeros_like(start), np.zeros_like(start)]
             for mod in (numpy_ref, cpu)}
    for step in range(1, 11):
        grad = rng.standard_normal(start.shape).astype(dtype)
        for mod, (param, m, v) in state.items():
            mod.adam_step(param, grad, m, v, step, 1e-3, 0.5, 0.9, 1e-8)
    for actual, expected, name in zip(state[cpu], state[numpy_ref], ("param", "m", "v")):
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
    for mod in (numpy_ref, cpu):
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
    term_scale = float(np.max(np.abs(grad_W_sn))) / abs(results[numpy_ref][0])
    for actual, expected, name in zip(results[cpu], results[numpy_ref], names):
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
        backend.squared_error(np.zeros(3), np.zeros(4), np.empty(3))


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
        assert allocations(cpu.activation_backward, 5, .1, p, g, m, v) <= 0
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
