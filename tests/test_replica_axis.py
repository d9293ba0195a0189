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
from npgen.kernels import numpy_ref
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


# npgen.kernels.LAYER_KERNELS on a one-replica backend, replica r by replica r, are numpy_ref's
# twins (which the cuda module's one-launch forms are tested against).


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_spectral_norm_of_every_layer_in_replica_form_is_numpy_refs(backend):
    ops, rng = kernels.replica_form(backend), np.random.default_rng(3)
    shapes = [(4, 1), (3, 4)]
    Ws = [rng.standard_normal((R, *shape)) for shape in shapes]
    us, vs = ([rng.standard_normal((R, shape[side])) for shape in shapes] for side in (0, 1))
    grad_W_sns = [rng.standard_normal((R, *shape)) for shape in shapes]
    W_sns, grad_Ws = ([np.zeros((R, *shape)) for shape in shapes] for _ in range(2))
    sigmas = [np.zeros(R) for _ in shapes]
    u0, v0 = [u.copy() for u in us], [v.copy() for v in vs]
    ops.spectral_norm_forward_layers(Ws, us, vs, 1, W_sns, sigmas)
    ops.spectral_norm_backward_layers(Ws, us, vs, sigmas, grad_W_sns, grad_Ws, False)
    for r in range(R):
        W_sn, sigma, u, v = numpy_ref.spectral_norm_forward_layers(
            [W[r] for W in Ws], [u[r] for u in u0], [v[r] for v in v0], 1)
        grads = numpy_ref.spectral_norm_backward_layers([W[r] for W in Ws], u, v, sigma,
                                                        [g[r] for g in grad_W_sns])
        for got, want in ((W_sns, W_sn), (sigmas, sigma), (us, u), (vs, v), (grad_Ws, grads)):
            for k in range(len(shapes)):
                _same(got[k][r], want[k])


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_the_noise_level_path_in_replica_form_is_numpy_refs(backend):
    ops, rng = kernels.replica_form(backend), np.random.default_rng(4)
    shapes = [(4, 3), (4,), (5, 4), (5,), (6, 5), (6,), (1, 5), (1,)]
    params = [rng.standard_normal((R, *shape)) for shape in shapes]
    features = rng.standard_normal((R, 1, 3))
    path = [np.zeros((R, 1, width)) for width in (4, 4, 5, 5, 5)]
    beff2, beff3 = np.zeros((R, 1, 6)), np.zeros((R, 1, 1))
    grad_beff2, grad_beff3 = rng.standard_normal((R, 1, 6)), rng.standard_normal((R, 1, 1))
    given = grad_beff2.copy(), grad_beff3.copy()
    grads = [np.zeros_like(param) for param in params]
    ops.score_embedding_forward(features, params, 0.3, path, beff2, beff3)
    ops.score_embedding_backward(features, params, 0.3, path, grad_beff2, grad_beff3,
                                 [np.zeros_like(row) for row in path], grads)
    for r in range(R):
        mine = [param[r] for param in params]
        want2, want3, want_path = numpy_ref.score_embedding_forward(features[r], mine, 0.3)
        want_grads = numpy_ref.score_embedding_backward(features[r], mine, 0.3, want_path,
                                                        given[0][r], given[1][r])
        wants = [want2, want3, *want_path, *want_grads]
        for got, want in zip([beff2, beff3, *path, *grads], wants):
            _same(got[r], want)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_adam_on_several_buffers_in_replica_form_is_numpy_refs(backend):
    ops, rng = kernels.replica_form(backend), np.random.default_rng(5)
    params, grads, ms = ([rng.standard_normal(size) for size in (7, 3)] for _ in range(3))
    vs = [np.abs(rng.standard_normal(size)) for size in (7, 3)]
    want = numpy_ref.adam_step_groups(params, grads, ms, vs, 3, 1e-2, 0.9, 0.99, 1e-8)
    ops.adam_step_groups(params, grads, ms, vs, 3, 1e-2, 0.9, 0.99, 1e-8)
    for got, expected in zip((params, ms, vs), want):
        for g, e in zip(got, expected):
            _same(g, e)


def test_adam_steps_together_as_each_optimizer_alone():
    """Adam.step_together: each network's update as its own step() makes it, bit for bit;
    optimizers of different settings are refused in one sentence."""
    nets = [MLP([1, 3, 1], dtype="float64", seed=s) for s in range(2)]
    alone = [MLP([1, 3, 1], dtype="float64", seed=s) for s in range(2)]
    rng = np.random.default_rng(6)
    for net, other in zip(nets, alone):
        net.grads[...] = other.grads[...] = rng.standard_normal(net.n_params)
    together = [Adam(net, lr=0.1) for net in nets]
    Adam.step_together(together)
    for net in alone:
        Adam(net, lr=0.1).step()
    for net, other, opt in zip(nets, alone, together):
        np.testing.assert_array_equal(net.params, other.params)
        assert opt.t == 1
    with pytest.raises(ValueError, match="must share their backend, step count, lr"):
        Adam.step_together([Adam(nets[0], lr=0.1), Adam(nets[1], lr=0.2)])
