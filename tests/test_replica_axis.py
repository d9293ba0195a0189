"""One network code for one run and for R runs: a network of R replicas (``replicas_of``) on a
CPU backend computes, replica by replica, what each one-replica network computes alone.

The CPU backends reach the replica form through npgen.kernels.replicas (one kernel call per
replica), so the comparisons hold to float64 rounding (a BLAS product's last bit may depend on
where its operands lie in memory); the cuda backend runs the same network code, checked under
the simulator in tests/test_cuda_replicas.py.
"""

import numpy as np
import pytest

from npgen import kernels
from npgen.nn import MLP, Adam, ScoreNetwork
from npgen.nn.layout import ParameterLayout

R = 3


def _same(actual, desired):
    np.testing.assert_allclose(actual, desired, rtol=1e-12, atol=1e-14)


def _nets(skip, spectral_norm):
    return [MLP([2, 6, 5, 6, 1], skip=skip, spectral_norm=spectral_norm, dtype="float64", seed=s)
            for s in range(R)]


def _rows(rng, width, n=4):
    return rng.standard_normal((R, n, width))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("skip", ["plain", "resnet", "densenet"])
@pytest.mark.parametrize("spectral_norm", [False, True])
def test_an_mlp_of_replicas_is_each_network_alone(backend, skip, spectral_norm):
    """Forward, backward, jvp, jvp-backward and an Adam step of R replicas equal those of the
    R networks run alone: outputs, input gradients, parameters and spectral-norm vectors."""
    rng = np.random.default_rng(0)
    alone = _nets(skip, spectral_norm)
    batch = MLP.replicas_of(_nets(skip, spectral_norm), backend)
    x, dx, grad_y, grad_dy = (_rows(rng, w) for w in (2, 2, 1, 1))
    y = batch._forward(x).copy()
    batch.zero_grad()
    grad_x = batch._backward(grad_y).copy()
    y_t, dy = (a.copy() for a in batch._jvp(x, dx))
    gx, gdx = (a.copy() for a in batch._jvp_backward(grad_y, grad_dy))
    Adam(batch, lr=0.1).step()
    for r, net in enumerate(alone):
        _same(y[r], net._forward(x[r]))
        net.zero_grad()
        _same(grad_x[r], net._backward(grad_y[r]))
        y_r, dy_r = net._jvp(x[r], dx[r])
        _same(y_t[r], y_r)
        _same(dy[r], dy_r)
        gx_r, gdx_r = net._jvp_backward(grad_y[r], grad_dy[r])
        _same(gx[r], gx_r)
        _same(gdx[r], gdx_r)
        Adam(net, lr=0.1).step()
    copies = _nets(skip, spectral_norm)
    batch.copy_to(copies)
    for net, copy in zip(alone, copies):
        _same(copy.params, net.params)
        if spectral_norm:
            for k in range(net.n_layers):
                _same(copy.sn_u[k], net.sn_u[k])
                _same(copy.sn_v[k], net.sn_v[k])


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_a_score_network_of_replicas_is_each_network_alone(backend):
    """R score networks, each replica at its own noise level: scores, input gradients and
    parameter gradients equal those of each network at its level alone."""
    rng = np.random.default_rng(1)
    sigmas = [1.0, 0.3, 0.05]
    alone = [ScoreNetwork(dtype="float64", seed=s) for s in range(R)]
    batch = ScoreNetwork.replicas_of([ScoreNetwork(dtype="float64", seed=s) for s in range(R)],
                                     backend)
    features = np.concatenate([net._features(sigma) for net, sigma in zip(alone, sigmas)])
    x, grad_s = _rows(rng, 1), _rows(rng, 1)
    s = batch._forward(x, features).copy()
    grad_x = batch._backward(grad_s, need_grad_x=True).copy()
    grads = batch.layout.stack([np.zeros(net.n_params) for net in alone]) + batch.grads
    copies = [np.zeros(net.n_params) for net in alone]
    batch.layout.unstack(grads, copies)
    for r, (net, sigma) in enumerate(zip(alone, sigmas)):
        _same(s[r], net._forward(x[r], sigma))
        _same(grad_x[r], net._backward(grad_s[r], need_grad_x=True))
        _same(copies[r], net.grads)


def test_replicas_of_refuses_networks_of_different_architectures():
    with pytest.raises(ValueError, match="one architecture"):
        MLP.replicas_of([MLP([1, 4, 1]), MLP([1, 5, 1])], "cpu")


def test_the_layout_of_one_replica_is_the_blocks_end_to_end():
    """R = 1: block k starts where block k - 1 ends; R = 2: block k is (2, *shape) at twice the
    offset, and stack / unstack are inverse."""
    layout = ParameterLayout([("w", (2, 3)), ("b", (2,))])
    flat = np.arange(8.0)
    blocks = layout.blocks(flat)
    np.testing.assert_array_equal(blocks["w"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(blocks["b"], [6, 7])
    stacked = layout.stack([flat, flat + 10])
    views = layout.views(stacked, 2)
    np.testing.assert_array_equal(views["w"][1], blocks["w"] + 10)
    np.testing.assert_array_equal(views["b"][0], [6, 7])
    back = [np.zeros(8), np.zeros(8)]
    layout.unstack(stacked, back)
    np.testing.assert_array_equal(back[1], flat + 10)


def test_the_replica_form_writes_a_returned_scalar_per_replica():
    """A kernel that returns a scalar (a loss) writes replica r's value at index r of its
    replica form's last argument."""
    ops = kernels.replica_form("numpy")
    rng = np.random.default_rng(2)
    logits, target = rng.standard_normal((R, 5, 1)), (rng.random((R, 5, 1)) > 0.5) * 1.0
    grad, loss = np.zeros_like(logits), np.zeros(R)
    ops.bce_with_logits(logits, target, grad, loss)
    single = kernels.get_backend("numpy")
    for r in range(R):
        g = np.zeros_like(logits[r])
        assert loss[r] == single.bce_with_logits(logits[r], target[r], g)
        np.testing.assert_array_equal(grad[r], g)
