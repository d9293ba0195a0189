"""The CUDA kernels, batched over replicas, against numpy_ref applied to each replica alone.

These run under numba-cuda's simulator, which must be switched on before numba is imported:
tests/test_cuda.py starts them in a fresh process with NUMBA_ENABLE_CUDASIM=1 (as stumpy tests
its GPU code). On a machine with a GPU, NPGEN_CUDA_DEVICE=1 runs them on the device instead.
Shapes are tiny and launches use a few threads, so the simulator stays fast.
"""

import math
import os

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numba import config

if not (config.ENABLE_CUDASIM or os.environ.get("NPGEN_CUDA_DEVICE") == "1"):
    pytest.skip("runs in the CUDA simulator, in the subprocess tests/test_cuda.py starts"
                " (or on a GPU with NPGEN_CUDA_DEVICE=1)", allow_module_level=True)

from npgen.kernels import ACTIVATIONS, IDENTITY
from npgen.kernels import cuda as ck
from npgen.kernels import numpy_ref as ref
from numba import cuda

if config.ENABLE_CUDASIM:
    ck.configure(threads=4, max_blocks=2)

R = 3
TOLERANCE = {np.float32: {"rtol": 2e-5, "atol": 2e-6}, np.float64: {"rtol": 1e-11, "atol": 1e-13}}
DTYPES = (np.float32, np.float64)
#: Units in the last place an activation on the device may differ from numpy's: CUDA's float64
#: exp and tanh are within 1 ulp of the true value (as numpy's are), and the sigmoid and silu
#: add the rounding of a division and a product.
ACTIVATION_ULPS = 4
#: The same for the derivatives, which cancel: 1 - tanh(z)^2 at z = 3 turns tanh's 1 ulp into
#: about 200 ulp of the result.
DERIVATIVE_ULPS = 512


def _draw(rng, dtype, *shape):
    return rng.standard_normal(shape).astype(dtype)


def _device(*arrays):
    return [cuda.to_device(np.ascontiguousarray(a)) for a in arrays]


def _close(actual, expected, dtype):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64),
                               **TOLERANCE[dtype])


def _match_replicas(dtype, results, reference):
    """Replica r of each device array in ``results`` against the r-th textbook results
    ``reference(r)``, in order."""
    host = [array.copy_to_host() for array in results]
    for r in range(R):
        for actual, expected in zip(host, reference(r)):
            _close(actual[r], expected, dtype)


def _layer(rng, dtype, n=5, fan_in=3, out=4):
    return _draw(rng, dtype, R, n, fan_in), _draw(rng, dtype, R, out, fan_in), _draw(
        rng, dtype, R, out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("fan_in", [3, 1])
def test_forward_and_backward_match_each_replica_alone(activation, dtype, fan_in):
    """A layer of one input makes its outer product in the bias kernel and its weight
    gradient in the column kernel, with no product launched: the same numbers."""
    rng = np.random.default_rng(1)
    kind, slope = ACTIVATIONS[activation], 0.2
    x, W, b = _layer(rng, dtype, fan_in=fan_in)
    grad_a = _draw(rng, dtype, R, 5, 4)
    old_W, old_b = _draw(rng, dtype, *W.shape), _draw(rng, dtype, *b.shape)
    z, a, grad_z = (cuda.device_array((R, 5, 4), dtype) for _ in range(3))
    grad_x = cuda.device_array(x.shape, dtype)
    dx, dW, db, dga, dgW, dgb = _device(x, W, b, grad_a, old_W, old_b)
    ck.linear_forward(dx, dW, db, kind, slope, z, a)
    ck.linear_backward(dx, dW, z, a, dga, kind, slope, grad_z, dgW, dgb, grad_x, True, True)
    for r in range(R):
        a_ref, z_ref = ref.dense_forward(x[r], W[r], b[r], kind, slope)
        _close(z.copy_to_host()[r], z_ref, dtype)
        _close(a.copy_to_host()[r], a_ref, dtype)
        gx, gW, gb = ref.dense_backward(x[r], W[r], z_ref, grad_a[r], kind, slope)
        _close(grad_x.copy_to_host()[r], gx, dtype)
        _close(dgW.copy_to_host()[r], old_W[r] + gW, dtype)  # accumulated
        _close(dgb.copy_to_host()[r], old_b[r] + gb, dtype)
    only_x = cuda.device_array(x.shape, dtype)
    ck.linear_backward_input(dW, z, a, dga, kind, slope, grad_z, only_x)
    _close(only_x.copy_to_host(), grad_x.copy_to_host(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_jvp_and_its_backward_match_each_replica_alone(activation, dtype):
    rng = np.random.default_rng(2)
    kind, slope = ACTIVATIONS[activation], 0.2
    x, W, b = _layer(rng, dtype)
    tangent = _draw(rng, dtype, *x.shape)
    grad_a, grad_da = _draw(rng, dtype, R, 5, 4), _draw(rng, dtype, R, 5, 4)
    z, a, dz, da, grad_z, grad_dz = (cuda.device_array((R, 5, 4), dtype) for _ in range(6))
    grad_W, grad_b = cuda.device_array(W.shape, dtype), cuda.device_array(b.shape, dtype)
    grad_x, grad_dx = cuda.device_array(x.shape, dtype), cuda.device_array(x.shape, dtype)
    dx, dtan, dW, db, dga, dgda = _device(x, tangent, W, b, grad_a, grad_da)
    ck.linear_jvp(dx, dtan, dW, db, kind, slope, z, a, dz, da)
    ck.linear_jvp_backward(dx, dtan, dW, z, a, dz, dga, dgda, kind, slope, grad_z, grad_dz,
                           grad_W, grad_b, grad_x, grad_dx, False, True)
    for r in range(R):
        a_ref, da_ref, z_ref, dz_ref = ref.dense_jvp(x[r], tangent[r], W[r], b[r], kind, slope)
        for got, want in ((a, a_ref), (da, da_ref), (z, z_ref), (dz, dz_ref)):
            _close(got.copy_to_host()[r], want, dtype)
        expected = ref.dense_jvp_backward(x[r], tangent[r], W[r], z_ref, dz_ref, grad_a[r],
                                          grad_da[r], kind, slope)
        for got, want in zip((grad_x, grad_dx, grad_W, grad_b), expected):
            _close(got.copy_to_host()[r], want, dtype)


def test_activations_on_the_extended_reals():
    """inf, -inf and 0 (the kink) give numpy_ref's values and derivatives to a few ulp (the
    device's math library is not numpy's), never NaN."""
    z = np.array([[[-np.inf, -1e30, -2.0, 0.0, 3.0, 1e30, np.inf]]] * R)
    for name, kind in ACTIVATIONS.items():
        a, da = cuda.device_array(z.shape), cuda.device_array(z.shape)
        z_device, bias, ones = _device(z, np.zeros((R, 7)), np.ones(z.size))
        ck._bias_activation[ck._grid(z.size)](z_device, z_device, False, bias, kind, 0.2,
                                              z_device, a)
        ck._tangent[ck._grid(z.size)](kind, 0.2, z_device.reshape(z.size), ones,
                                      da.reshape(z.size))
        for got, want, ulps in ((a, ref.activation(kind, 0.2, z[0, 0]), ACTIVATION_ULPS),
                                (da, ref.activation_derivative(kind, 0.2, z[0, 0]), DERIVATIVE_ULPS)):
            got = got.copy_to_host()[0, 0]
            assert not np.isnan(got).any(), name
            infinite = np.isinf(want)  # exact: one ulp from the largest float is inf
            np.testing.assert_array_equal(got[infinite], want[infinite], err_msg=name)
            np.testing.assert_array_max_ulp(got, want, maxulp=ulps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_losses_match_each_replica_alone(dtype):
    rng = np.random.default_rng(3)
    logits = _draw(rng, dtype, R, 6, 1) * 4
    labels = rng.integers(0, 2, (R, 6, 1)).astype(dtype)
    signs = (2 * labels - 1).astype(dtype)
    for kernel, reference, target in ((ck.bce_with_logits, ref.bce_with_logits, labels),
                                      (ck.hinge, ref.hinge, signs)):
        grad, loss = cuda.device_array(logits.shape, dtype), cuda.device_array(R, np.float64)
        kernel(*_device(logits, target), grad, loss)
        for r in range(R):
            want, want_grad = reference(logits[r], target[r])
            _close(loss.copy_to_host()[r], want, dtype)
            _close(grad.copy_to_host()[r], want_grad, dtype)
    grad, loss = cuda.device_array(logits.shape, dtype), cuda.device_array(R, np.float64)
    ck.hinge_generator(*_device(logits), grad, loss)
    _match_replicas(dtype, (loss, grad), lambda r: ref.hinge_generator(logits[r]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_vae_pieces_match_each_replica_alone(dtype):
    rng = np.random.default_rng(20)
    B, p, d = 4, 2, 3
    code, eps, grad_z = _draw(rng, dtype, R, B, 2 * p), _draw(rng, dtype, R, B, p), _draw(
        rng, dtype, R, B, p)
    reconstruction, x = _draw(rng, dtype, R, B, d), _draw(rng, dtype, R, B, d)
    dcode, deps, dgrad_z = _device(code, eps, grad_z)
    for k in (1, 2):
        z, std = cuda.device_array((R, B, p), dtype), cuda.device_array((R, B, p), dtype)
        kl, grad_code = cuda.device_array(R, np.float64), cuda.device_array(code.shape, dtype)
        ck.vae_reparameterize(dcode, deps, k, z, std, kl)
        ck.vae_code_gradient(dcode, deps, std, dgrad_z, k, grad_code)

        def reference(r):
            kl_r, z_r, std_r = ref.vae_reparameterize(code[r], eps[r], k)
            return kl_r, z_r, std_r, ref.vae_code_gradient(code[r], eps[r], std_r, grad_z[r], k)

        _match_replicas(dtype, (kl, z, std, grad_code), reference)
    residual, loss = cuda.device_array(x.shape, dtype), cuda.device_array(R, np.float64)
    ck.vae_residual(*_device(reconstruction, x), 0.1, residual, loss)
    _match_replicas(dtype, (loss, residual),
                    lambda r: ref.vae_residual(reconstruction[r], x[r], 0.1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_score_matching_and_penalty_match_each_replica_alone(dtype):
    """Each replica at its own noise level and with its own penalty target; the penalty's
    tangents of replica 1 have two rows of the largest norm (the first counts)."""
    rng = np.random.default_rng(21)
    x, eps, score = (_draw(rng, dtype, R, 5, 1) for _ in range(3))
    sigma, targets = np.array([1.0, 0.6, 0.36]), np.array([0.5, 1.0, 2.0])
    tangent = _draw(rng, dtype, R, 5, 2)
    tangent[1, 3] = tangent[1, 1] = 3
    dx, deps, dscore, dsigma, dtargets, dtangent = _device(x, eps, score, sigma, targets, tangent)
    noisy = cuda.device_array(x.shape, dtype)
    ck.score_matching_noisy(dx, deps, dsigma, noisy)
    _match_replicas(dtype, (noisy,),
                    lambda r: (ref.score_matching_noisy(x[r], eps[r], sigma[r]),))
    for k in (1, 2):
        grad, loss = cuda.device_array(x.shape, dtype), cuda.device_array(R, np.float64)
        ck.score_matching_loss(dscore, deps, dsigma, k, grad, loss)
        _match_replicas(dtype, (loss, grad),
                        lambda r: ref.score_matching_loss(score[r], eps[r], sigma[r], k))
    grad, penalty = cuda.device_array(tangent.shape, dtype), cuda.device_array(R, np.float64)
    ck.gradient_penalty(dtangent, dtargets, 10.0, grad, penalty)
    _match_replicas(dtype, (penalty, grad),
                    lambda r: ref.gradient_penalty(tangent[r], targets[r], 10.0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_score_matching_with_levels_matches_each_replica_alone(dtype):
    """A level per row, each replica with its own tables and center."""
    rng = np.random.default_rng(22)
    x, eps, raw = (_draw(rng, dtype, R, 4, 2) for _ in range(3))
    levels = rng.integers(0, 3, (R, 4))
    sigmas, scales, skips = (rng.uniform(0.2, 2, (R, 3)).astype(dtype) for _ in range(3))
    center = np.array([0.0, 0.5, -1.0])
    dx, deps, draw_, dlevels = _device(x, eps, raw, levels)
    noisy = cuda.device_array(x.shape, dtype)
    ck.score_matching_noisy_levels(dx, deps, dlevels, *_device(sigmas), noisy)
    want_noisy = [ref.score_matching_noisy_levels(x[r], eps[r], levels[r], sigmas[r])
                  for r in range(R)]
    _match_replicas(dtype, (noisy,), lambda r: (want_noisy[r],))
    grad, loss = cuda.device_array(x.shape, dtype), cuda.device_array(R, np.float64)
    ck.score_matching_loss_levels(draw_, noisy, deps, dlevels, *_device(scales, skips, center),
                                  grad, loss)
    _match_replicas(dtype, (loss, grad), lambda r: ref.score_matching_loss_levels(
        raw[r], want_noisy[r], eps[r], levels[r], scales[r], skips[r], center[r]))


def _loss_kernel_calls(rng, dtype):
    """Arguments of the models' loss kernels and of the row and column kernels in their
    replica form (R replicas), outputs last: {kernel: arguments}."""
    B, p, d = 4, 2, 3

    def draw(*shape):
        return _draw(rng, dtype, R, *shape)

    def out(*shape, dt=dtype):
        return np.full((R, *shape), np.nan, dt)

    sigma = np.array([1.0, 0.6, 0.36])
    code, eps = draw(B, 2 * p), draw(B, p)
    return {
        "hinge_generator": (draw(B, 1), out(B, 1), out(dt=np.float64)),
        "gradient_penalty": (draw(B, d), np.array([0.5, 1.0, 2.0]), 10.0, out(B, d),
                             out(dt=np.float64)),
        "vae_reparameterize": (code, eps, 2, out(B, p), out(B, p), out(dt=np.float64)),
        "vae_residual": (draw(B, d), draw(B, d), 0.1, out(B, d), out(dt=np.float64)),
        "vae_code_gradient": (code, eps, np.exp(code[:, :, p:] / 2), draw(B, p), 1,
                              out(B, 2 * p)),
        "score_matching_noisy": (draw(B, 1), draw(B, 1), sigma, out(B, 1)),
        "score_matching_loss": (draw(B, 1), draw(B, 1), sigma, 2, out(B, 1),
                                out(dt=np.float64)),
        "gather_rows": (draw(6, d), np.stack([rng.permutation(6) for _ in range(R)]), 1,
                        out(5, d), 2, 3),
        "put_columns": (draw(B, 2), draw(B, 7), 3, 4, False),
        "take_columns": (draw(B, 7), 4, draw(B, 3), True),
    }


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_cpu_kernels_in_replica_form_are_the_cuda_kernels(dtype):
    """One call, argument for argument, on the cpu backend's replica form (one call per
    replica, npgen.kernels.replicas) and on the cuda backend: the same results, every output
    and every per-replica value."""
    from npgen import kernels

    host = kernels.replica_form("cpu")
    for name, arguments in _loss_kernel_calls(np.random.default_rng(23), dtype).items():
        on_host = [a.copy() if isinstance(a, np.ndarray) else a for a in arguments]
        on_device = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in arguments]
        getattr(host, name)(*on_host)
        getattr(ck, name)(*on_device)
        for expected, actual in zip(on_host, on_device):
            if isinstance(expected, np.ndarray):
                np.testing.assert_allclose(actual.copy_to_host(), expected, err_msg=name,
                                           **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_matches_each_replica_alone(dtype):
    rng = np.random.default_rng(4)
    param, grad, m = (_draw(rng, dtype, R, 7) for _ in range(3))
    v = np.abs(_draw(rng, dtype, R, 7))
    arrays = _device(param, grad, m, v)
    ck.adam_step(*arrays, 3, 1e-2, 0.5, 0.999, 1e-8)
    for r in range(R):
        expected = ref.adam_step(param[r], grad[r], m[r], v[r], 3, 1e-2, 0.5, 0.999, 1e-8)
        for got, want in zip((arrays[0], arrays[2], arrays[3]), expected):
            _close(got.copy_to_host()[r], want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("iterations", [0, 2])
def test_spectral_norm_matches_each_replica_alone(iterations, dtype):
    rng = np.random.default_rng(5)
    W = _draw(rng, dtype, R, 4, 3)
    u, v = _draw(rng, dtype, R, 4), _draw(rng, dtype, R, 3)
    grad_W_sn, old = _draw(rng, dtype, *W.shape), _draw(rng, dtype, *W.shape)
    dW, du, dv, dgsn, dgW = _device(W, u, v, grad_W_sn, old)
    W_sn, sigma = cuda.device_array(W.shape, dtype), cuda.device_array(R, np.float64)
    ck.spectral_norm_forward(dW, du, dv, iterations, W_sn, sigma)
    ck.spectral_norm_backward(dW, du, dv, sigma, dgsn, dgW, True)
    for r in range(R):
        want_W_sn, want_sigma, want_u, want_v = ref.spectral_norm_forward(
            W[r], u[r], v[r], iterations)
        _close(sigma.copy_to_host()[r], want_sigma, dtype)
        for got, want in ((W_sn, want_W_sn), (du, want_u), (dv, want_v)):
            _close(got.copy_to_host()[r], want, dtype)
        want_grad = ref.spectral_norm_backward(W[r], want_u, want_v, want_sigma, grad_W_sn[r])
        _close(dgW.copy_to_host()[r], old[r] + want_grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("iterations", [0, 1])
def test_spectral_norm_of_every_layer_in_one_launch_is_numpy_refs(iterations, dtype):
    """Three layers of different shapes, R replicas, one launch each way: each (layer,
    replica) is numpy_ref's spectral_norm_forward_layers / spectral_norm_backward_layers."""
    rng = np.random.default_rng(6)
    shapes = [(4, 1), (3, 4), (1, 3)]
    W = [_draw(rng, dtype, R, *shape) for shape in shapes]
    u = [_draw(rng, dtype, R, rows) for rows, _ in shapes]
    v = [_draw(rng, dtype, R, cols) for _, cols in shapes]
    grad_W_sn, old = ([_draw(rng, dtype, R, *shape) for shape in shapes] for _ in range(2))
    dW, du, dv, dgsn, dgW = ([cuda.to_device(a) for a in arrays]
                             for arrays in (W, u, v, grad_W_sn, old))
    W_sn = [cuda.device_array(w.shape, dtype) for w in W]
    sigma = [cuda.device_array(R, np.float64) for _ in W]
    ck.spectral_norm_forward_layers(dW, du, dv, iterations, W_sn, sigma)
    ck.spectral_norm_backward_layers(dW, du, dv, sigma, dgsn, dgW, True)
    for r in range(R):
        want_W_sn, want_sigma, want_u, want_v = ref.spectral_norm_forward_layers(
            [w[r] for w in W], [a[r] for a in u], [a[r] for a in v], iterations)
        want_grad = ref.spectral_norm_backward_layers(
            [w[r] for w in W], want_u, want_v, want_sigma, [g[r] for g in grad_W_sn])
        for k in range(len(shapes)):
            _close(sigma[k].copy_to_host()[r], want_sigma[k], dtype)
            for got, want in ((W_sn, want_W_sn), (du, want_u), (dv, want_v)):
                _close(got[k].copy_to_host()[r], want[k], dtype)
            _close(dgW[k].copy_to_host()[r], old[k][r] + want_grad[k], dtype)


def _score_networks(rng, dtype, levels=2, h1=5, h2=4):
    return (_draw(rng, dtype, R, h1, 1), _draw(rng, dtype, R, h1), _draw(rng, dtype, R, h2, h1),
            _draw(rng, dtype, R, levels, h2), _draw(rng, dtype, R, 1, h2) / 2,
            _draw(rng, dtype, R, levels))


@pytest.mark.parametrize("dtype", DTYPES)
def test_langevin_matches_each_replica_alone(dtype):
    rng = np.random.default_rng(6)
    nets = _score_networks(rng, dtype)
    x = _draw(rng, dtype, R, 4)
    alphas = np.array([[0.02, 0.01]] * R, dtype)
    seeds = [11, 12, 13]
    moved = cuda.to_device(x)
    ck.annealed_langevin(moved, *_device(*nets), cuda.to_device(alphas), 3, seeds, 5, 0.01, 0.2)
    for r in range(R):
        want = ref.annealed_langevin(x[r], *(p[r] for p in nets), alphas[r], 3, seeds[r], 5,
                                     0.01, 0.2)
        _close(moved.copy_to_host()[r], want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_langevin_gradient_matches_each_replica_alone(dtype):
    """dx0 and grad_sq, updated in place from given starts, as numpy_ref returns them."""
    rng = np.random.default_rng(8)
    nets = _score_networks(rng, dtype)
    x = _draw(rng, dtype, R, 4)
    dx0, grad_sq = 1 + _draw(rng, dtype, R, 4) / 4, np.ones((R, 4), dtype)
    alphas = np.array([[0.03, 0.01]] * R, dtype)
    seeds = [21, 22, 23]
    moved, d_dx0, d_grad_sq = _device(x, dx0, grad_sq)
    ck.annealed_langevin(moved, *_device(*nets), cuda.to_device(alphas), 2, seeds, 1, 0.01, 0.2,
                         d_dx0, d_grad_sq)
    for r in range(R):
        want = ref.annealed_langevin(x[r], *(p[r] for p in nets), alphas[r], 2, seeds[r], 1,
                                     0.01, 0.2, dx0[r], grad_sq[r])
        for got, expected in zip((moved, d_dx0, d_grad_sq), want):
            _close(got.copy_to_host()[r], expected, dtype)


def test_langevin_gradient_is_the_derivative_of_the_chain():
    """dx0 is d x_T / d x_0 (central differences, float64: the noise is a function of the
    seed), and grad_sq = dx0^2 + sum over steps of alpha times the squared derivative of x_T
    by that step's noise, which for one level and one step is dx0^2 + alpha."""
    rng = np.random.default_rng(7)
    nets = [cuda.to_device(p) for p in _score_networks(rng, np.float64, levels=1)]
    x = rng.standard_normal((R, 4))
    alphas = cuda.to_device(np.full((R, 1), 0.05))

    def run(start, steps, with_gradient):
        moved = cuda.to_device(start)
        ones = [cuda.to_device(np.ones_like(start)) for _ in range(2)] if with_gradient else []
        ck.annealed_langevin(moved, *nets, alphas, steps, [1, 2, 3], 0, 0.01, 0.2, *ones)
        return [moved.copy_to_host()] + [o.copy_to_host() for o in ones]

    h = 1e-6
    for steps in (1, 4):
        _, dx0, grad_sq = run(x, steps, True)
        slope = (run(x + h, steps, False)[0] - run(x - h, steps, False)[0]) / (2 * h)
        np.testing.assert_allclose(dx0, slope, rtol=1e-6, atol=1e-8)
        if steps == 1:
            np.testing.assert_allclose(grad_sq, dx0 ** 2 + 0.05, rtol=1e-12)
        else:
            assert (grad_sq >= dx0 ** 2 + 0.05).all()


def _mlp_score_networks(rng, dtype, d, levels, h1=5, h2=3):
    """W1, beff1, W2, beff2, W3, b3, out_scales, skip_scales of R different score networks."""
    return (_draw(rng, dtype, R, h1, d), _draw(rng, dtype, R, levels, h1),
            _draw(rng, dtype, R, h2, h1) / 2, _draw(rng, dtype, R, levels, h2),
            _draw(rng, dtype, R, d, h2) / 2, _draw(rng, dtype, R, d),
            (1 + rng.random((R, levels))).astype(dtype), rng.random((R, levels)).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_langevin_mlp_matches_each_replica_alone(dtype):
    """Two levels of two steps from an odd first step (the second normal of a Box-Muller pair
    first), each replica with its own network, center, step sizes and seed."""
    rng = np.random.default_rng(9)
    d, levels = 4, 2
    nets = _mlp_score_networks(rng, dtype, d, levels)
    x = _draw(rng, dtype, R, 3, d)
    alphas = np.array([[0.05, 0.02], [0.04, 0.01], [0.03, 0.02]], dtype)
    center, seeds = [0.5, -1.0, 0.0], [31, 32, 2 ** 63 + 3]
    moved = cuda.to_device(x)
    ck.annealed_langevin_mlp(moved, *_device(*nets[:6]), *_device(*nets[6:]), center,
                             cuda.to_device(alphas), 2, seeds, 3, ACTIVATIONS["silu"], 0.2)
    for r in range(R):
        want = ref.annealed_langevin_mlp(x[r], *(p[r] for p in nets), center[r], alphas[r], 2,
                                         seeds[r], 3, ACTIVATIONS["silu"], 0.2)
        assert np.abs(want - x[r]).min() > 1e-3  # every coordinate moved
        _close(moved.copy_to_host()[r], want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_matches_each_replica_alone(dtype):
    """One-hot rows (replica 0) and rows that are not distributions (mass 0 to 2)."""
    rng = np.random.default_rng(10)
    logits = _draw(rng, dtype, R, 5, 3) * 3
    target = (rng.random((R, 5, 3)) * [[[0.0]], [[1.0]], [[0.7]]]).astype(dtype)
    target[0] = np.eye(3, dtype=dtype)[rng.integers(0, 3, 5)]
    grad, loss = cuda.device_array(logits.shape, dtype), cuda.device_array(R, np.float64)
    ck.softmax_cross_entropy(*_device(logits, target), grad, loss)
    for r in range(R):
        want, want_grad = ref.softmax_cross_entropy(logits[r], target[r])
        _close(loss.copy_to_host()[r], want, dtype)
        _close(grad.copy_to_host()[r], want_grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dual_losses_match_each_replica_alone(dtype):
    """KL and alpha = 1.5 duals on scores of different sizes: for the KL, one replica's data
    scores near 800, where exp overflows unless shifted by their max; for alpha, each replica
    at its own shift nu (some data scores below it, where f* is flat)."""
    rng = np.random.default_rng(11)
    phi_p, phi_q = _draw(rng, dtype, R, 5, 1), _draw(rng, dtype, R, 7, 1) * 2
    nu = np.array([-0.5, 0.0, 0.7])
    arrays = _device(phi_p, phi_q)
    grad_p, grad_q = cuda.device_array(phi_p.shape, dtype), cuda.device_array(phi_q.shape, dtype)
    loss, grad_nu = cuda.device_array(R, np.float64), cuda.device_array(R, np.float64)
    large = (phi_q + np.array([0, 0, 800], dtype)[:, None, None]).astype(dtype)
    ck.kl_dual_loss(arrays[0], cuda.to_device(large), grad_p, grad_q, loss)
    for r in range(R):
        want = ref.kl_dual_loss(phi_p[r], large[r])
        for got, expected in zip((loss.copy_to_host()[r], grad_p.copy_to_host()[r],
                                  grad_q.copy_to_host()[r]), want):
            _close(got, expected, dtype)
    ck.alpha_dual_loss(*arrays, cuda.to_device(nu), 1.5, grad_p, grad_q, grad_nu, loss)
    for r in range(R):
        assert (phi_q[r] < nu[r]).any() and (phi_q[r] > nu[r]).any()
        want = ref.alpha_dual_loss(phi_p[r], phi_q[r], nu[r], 1.5)
        for got, expected in zip((loss.copy_to_host()[r], grad_p.copy_to_host()[r],
                                  grad_q.copy_to_host()[r], grad_nu.copy_to_host()[r]), want):
            _close(got, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_particle_step_matches_each_replica_alone(dtype):
    rng = np.random.default_rng(12)
    y, velocity = _draw(rng, dtype, R, 5, 2), _draw(rng, dtype, R, 5, 2)
    moved, kinetic = cuda.to_device(y), cuda.device_array(R, np.float64)
    ck.particle_step(moved, cuda.to_device(velocity), 0.3, kinetic)
    for r in range(R):
        want_y, want_kinetic = ref.particle_step(y[r], velocity[r], 0.3)
        _close(moved.copy_to_host()[r], want_y, dtype)
        _close(kinetic.copy_to_host()[r], want_kinetic, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_column_blocks_and_rows_match_each_replica_alone(dtype):
    """A layer input of two blocks, [a + pad(b), pad(c)] (widths 3 and 4; b, c narrower and
    zero-padded), written over NaN; then the gradients of a, b and c taken back from it, c's
    added to what it holds; then rows gathered in each replica's own order."""
    rng = np.random.default_rng(13)
    a, b, c = _draw(rng, dtype, R, 2, 3), _draw(rng, dtype, R, 2, 1), _draw(rng, dtype, R, 2, 2)
    blocks = ((a, 0, 3, False), (b, 0, 3, True), (c, 3, 4, False))
    h = cuda.to_device(np.full((R, 2, 7), np.nan, dtype))
    for node, start, width, accumulate in blocks:
        ck.put_columns(cuda.to_device(node), h, start, width, accumulate)
    grad_h, held = _draw(rng, dtype, R, 2, 7), _draw(rng, dtype, R, 2, 2)
    grads = _device(np.full(a.shape, np.nan, dtype), np.full(b.shape, np.nan, dtype), held)
    for grad, start, accumulate in zip(grads, (0, 0, 3), (False, False, True)):
        ck.take_columns(cuda.to_device(grad_h), start, grad, accumulate)
    source, order = _draw(rng, dtype, R, 6, 2), np.stack([rng.permutation(6) for _ in range(R)])
    rows = cuda.to_device(np.full((R, 5, 2), np.nan, dtype))
    ck.gather_rows(*_device(source, order), 1, rows, 2, 3)
    for r in range(R):
        want = np.full((2, 7), np.nan, dtype)
        for node, start, width, accumulate in blocks:
            want = ref.put_columns(node[r], want, start, width, accumulate)
        np.testing.assert_array_equal(h.copy_to_host()[r], want)
        wants = (ref.take_columns(grad_h[r], 0, 3), ref.take_columns(grad_h[r], 0, 1),
                 held[r] + ref.take_columns(grad_h[r], 3, 2))
        for grad, expected in zip(grads, wants):
            np.testing.assert_array_equal(grad.copy_to_host()[r], expected)
        np.testing.assert_array_equal(rows.copy_to_host()[r, 2:],
                                      ref.gather_rows(source[r], order[r, 1:4]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_normals_are_the_same_stream_whatever_the_batch(dtype):
    """Replica r of a batch draws what a batch of that seed alone draws, and the stream is
    numba-cuda's xoroshiro128+ (a numpy transcription of it gives the same bits)."""
    seeds = [5, 6, 7]
    together = ck.standard_normal(ck.rng_states(seeds), cuda.device_array((R, 70, 2), dtype))
    for r, seed in enumerate(seeds):
        alone = ck.standard_normal(ck.rng_states([seed]), cuda.device_array((1, 70, 2), dtype))
        np.testing.assert_array_equal(together.copy_to_host()[r], alone.copy_to_host()[0])
    first = together.copy_to_host()[0].reshape(-1)
    np.testing.assert_allclose(first[0], _xoroshiro_first_normal(seeds[0]), rtol=1e-6)
    draws = together.copy_to_host()
    assert abs(draws.mean()) < 0.15 and abs(draws.std() - 1) < 0.15


@pytest.mark.parametrize("dtype", DTYPES)
def test_fills_drawn_in_one_launch_are_the_fills_drawn_one_by_one(dtype):
    """standard_normal_fills on (T, R, ...) draws what T calls of standard_normal would, in
    turn, bit for bit; so does DeviceNoise, whether or not it drew the epoch ahead."""
    from npgen.models.noise import DeviceNoise

    seeds = [5, 6, 7]
    ahead = ck.standard_normal_fills(ck.rng_states(seeds), cuda.device_array((3, R, 70, 2), dtype))
    states = ck.rng_states(seeds)
    for t in range(3):
        one = ck.standard_normal(states, cuda.device_array((R, 70, 2), dtype))
        np.testing.assert_array_equal(ahead.copy_to_host()[t], one.copy_to_host())
    drawn, plain = DeviceNoise(ck, seeds), DeviceNoise(ck, seeds)
    drawn.draw_ahead(2, (70, 2), dtype)
    for t in range(3):  # the third draw is past what was drawn ahead: drawn then
        got = drawn.normal(cuda.device_array((R, 70, 2), dtype)).copy_to_host()
        want = plain.normal(cuda.device_array((R, 70, 2), dtype)).copy_to_host()
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, ahead.copy_to_host()[t])


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_noise_level_path_in_one_launch_is_numpy_refs(dtype):
    """score_embedding_forward and _backward, one block per replica, against numpy_ref's."""
    rng = np.random.default_rng(8)
    shapes = [(4, 3), (4,), (5, 4), (5,), (6, 5), (6,), (1, 5), (1,)]
    params = [_draw(rng, dtype, R, *shape) for shape in shapes]
    features, grad_beff2, grad_beff3 = (_draw(rng, dtype, R, 1, w) for w in (3, 6, 1))
    path = [cuda.device_array((R, 1, w), dtype) for w in (4, 4, 5, 5, 5)]
    work = [cuda.device_array((R, 1, w), dtype) for w in (4, 4, 5, 5, 5)]
    beff2, beff3 = cuda.device_array((R, 1, 6), dtype), cuda.device_array((R, 1, 1), dtype)
    grads = [cuda.device_array(param.shape, dtype) for param in params]
    on_device = _device(features, *params, grad_beff2, grad_beff3)
    ck.score_embedding_forward(on_device[0], on_device[1:9], 0.3, path, beff2, beff3)
    ck.score_embedding_backward(on_device[0], on_device[1:9], 0.3, path, *on_device[9:], work,
                                grads)
    for r in range(R):
        mine = [param[r] for param in params]
        want2, want3, want_path = ref.score_embedding_forward(features[r], mine, 0.3)
        want_grads = ref.score_embedding_backward(features[r], mine, 0.3, want_path,
                                                  grad_beff2[r], grad_beff3[r])
        wants = [want2, want3, *want_path, *want_grads]
        for got, want in zip([beff2, beff3, *path, *grads], wants):
            _close(got.copy_to_host()[r], want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_on_several_buffers_in_one_launch_is_numpy_refs(dtype):
    rng = np.random.default_rng(9)
    params, grads, ms = ([_draw(rng, dtype, R * size) for size in (7, 2)] for _ in range(3))
    vs = [np.abs(_draw(rng, dtype, R * size)) for size in (7, 2)]
    want = ref.adam_step_groups(params, grads, ms, vs, 4, 1e-2, 0.5, 0.999, 1e-8)
    on_device = [_device(*group) for group in (params, grads, ms, vs)]
    ck.adam_step_groups(*on_device, 4, 1e-2, 0.5, 0.999, 1e-8)
    for got, expected in zip((on_device[0], on_device[2], on_device[3]), want):
        for g, e in zip(got, expected):
            _close(g.copy_to_host(), e, dtype)


def _column_major_gemm(args, A, B, alpha, beta, C):
    """cuBLAS's strided-batched gemm as its documentation defines it, in numpy, on flat
    buffers: matrix i of an operand starts at i * stride, entry (p, q) at p + q * ld;
    C_i = alpha op(A_i) op(B_i) + beta C_i, with op(X) = X ('N', 0) or X^T ('T', 1)."""
    m, n, k = args["m"], args["n"], args["k"]

    def matrix(buffer, start, ld, rows, cols):
        return np.array([[buffer[start + p + q * ld] for q in range(cols)] for p in range(rows)])

    for i in range(args["batchCount"]):
        a = matrix(A, i * args["strideA"], args["lda"], *((k, m) if args["transa"] else (m, k)))
        b = matrix(B, i * args["strideB"], args["ldb"], *((n, k) if args["transb"] else (k, n)))
        product = (a.T if args["transa"] else a) @ (b.T if args["transb"] else b)
        for p in range(m):
            for q in range(n):
                at = i * args["strideC"] + p + q * args["ldc"]
                C[at] = alpha * product[p, q] + beta * C[at]


@pytest.mark.parametrize("transpose_a, transpose_b, shapes", [
    (False, True, ((R, 5, 3), (R, 4, 3))),    # a layer's forward: z = x W^T
    (True, False, ((R, 5, 4), (R, 5, 3))),    # its weight gradient: grad_z^T x
    (False, False, ((R, 5, 4), (R, 4, 3))),   # its input gradient: grad_z W
    (False, True, ((R, 1, 16), (R, 32, 16))),  # a noise-level row through a layer
    (True, False, ((R, 6, 1), (R, 6, 7)))])   # the weight gradient of a layer of one output
def test_the_cublas_call_computes_the_batched_product(transpose_a, transpose_b, shapes):
    """gemm_arguments, the call cupy_matmul makes on a GPU, computes on the C-contiguous
    buffers what host_matmul (the simulator's numpy product) computes, accumulated or not."""
    rng = np.random.default_rng(10)
    a, b = (rng.standard_normal(shape) for shape in shapes)
    want = cuda.device_array((R, *np.matmul(a.transpose(0, 2, 1) if transpose_a else a,
                                            b.transpose(0, 2, 1) if transpose_b else b).shape[1:]))
    old = rng.standard_normal(want.shape)
    args = ck.gemm_arguments(a.shape, b.shape, transpose_a, transpose_b)
    for accumulate in (False, True):
        want.copy_to_device(old)
        ck.host_matmul(a, b, want, transpose_a, transpose_b, accumulate)
        got = old.ravel().copy()
        _column_major_gemm(args, b.ravel(), a.ravel(), 1.0, float(accumulate), got)
        np.testing.assert_allclose(got.reshape(want.shape), want.copy_to_host(), rtol=1e-12)


def _xoroshiro_first_normal(seed):
    """The first normal of numba's first state for ``seed``: splitmix64 seeding, two
    xoroshiro128+ outputs as float32 uniforms, Box-Muller's cosine."""
    mask = 2 ** 64 - 1
    z = (seed + ref.LANGEVIN_GOLDEN) & mask
    z = ((z ^ (z >> 30)) * ref.LANGEVIN_MIX[0]) & mask
    z = ((z ^ (z >> 27)) * ref.LANGEVIN_MIX[1]) & mask
    s0 = s1 = z ^ (z >> 31)
    uniforms = []
    for _ in range(2):
        result = (s0 + s1) & mask
        s1 ^= s0
        s0 = (((s0 << 55) | (s0 >> 9)) & mask) ^ s1 ^ ((s1 << 14) & mask)
        s1 = ((s1 << 36) | (s1 >> 28)) & mask
        uniforms.append(float(np.float32((result >> 11) * 2.0 ** -53)))
    return math.sqrt(-2 * math.log(uniforms[0])) * math.cos(2 * math.pi * uniforms[1])


def test_shapes_that_do_not_fit_are_one_sentence():
    z = cuda.device_array((R, 5, 4))
    with pytest.raises(ValueError, match="linear_forward: array shapes do not fit"):
        ck.linear_forward(cuda.device_array((R, 5, 2)), cuda.device_array((R, 4, 3)),
                          cuda.device_array((R, 4)), IDENTITY, 0.0, z, z)
    R2, R3 = cuda.device_array((R, 2)), cuda.device_array((R, 3))
    L1 = cuda.device_array((R, 1))
    misfits = {
        "softmax_cross_entropy": lambda: ck.softmax_cross_entropy(
            z, cuda.device_array((R, 5, 3)), z, cuda.device_array(R)),
        "kl_dual_loss": lambda: ck.kl_dual_loss(R2, R3, R2, R2, cuda.device_array(R)),
        "alpha_dual_loss": lambda: ck.alpha_dual_loss(R2, R3, cuda.device_array(2), 1.5, R2, R3,
                                                      cuda.device_array(R), cuda.device_array(R)),
        "particle_step": lambda: ck.particle_step(z, z, 0.1, cuda.device_array(R + 1)),
        "put_columns": lambda: ck.put_columns(z, cuda.device_array((R, 5, 6)), 3, 4, False),
        "take_columns": lambda: ck.take_columns(z, 1, cuda.device_array((R, 5, 4)), True),
        "annealed_langevin": lambda: ck.annealed_langevin(
            R2, cuda.device_array((R, 5, 1)), cuda.device_array((R, 5)),
            cuda.device_array((R, 3, 5)), cuda.device_array((R, 1, 3)),
            cuda.device_array((R, 1, 3)), L1, L1, 1, [0] * R, 0, 0.01, 0.2, R2, R2,
            by_level=cuda.device_array((R, 2, 2))),
        "annealed_langevin_mlp": lambda: ck.annealed_langevin_mlp(
            cuda.device_array((R, 2, 4)), cuda.device_array((R, 5, 3)),
            cuda.device_array((R, 1, 5)), cuda.device_array((R, 3, 5)),
            cuda.device_array((R, 1, 3)), cuda.device_array((R, 4, 3)), cuda.device_array((R, 4)),
            L1, L1, [0.0] * R, L1, 1, [0] * R, 0, IDENTITY, 0.0),
    }
    for name, call in misfits.items():
        with pytest.raises(ValueError, match=f"^{name}: array shapes do not fit together$"):
            call()
