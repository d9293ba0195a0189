"""The first layer's pieces (npgen.kernels.langevin_tables), the tables both Langevin kernels
walk: on every piece, A_p x + C_p is the network's layer-2 input, and R networks padded to one
size keep each network's own pieces."""

import numpy as np

from npgen.kernels import numpy_ref
from npgen.kernels.langevin_tables import first_layer_pieces, replica_pieces

SLOPE1, SLOPE2 = 0.01, 0.2


def _network(rng, h1=7, h2=5, dead=0):
    """W1 (h1, 1), b1, W2a (h2, h1) in float64, the first ``dead`` units with w1 = 0 (no kink)."""
    W1 = rng.standard_normal((h1, 1))
    W1[:dead] = 0
    return W1, rng.standard_normal(h1), rng.standard_normal((h2, h1))


def _layer2_input(x, W1, b1, W2a):
    """W2a leaky(W1 x + b1) for samples x (n,), written out."""
    z1 = x[:, None] * W1[:, 0] + b1
    return np.where(z1 > 0, z1, SLOPE1 * z1) @ W2a.T


def _on_pieces(x, kinks, A, C):
    """A_p x + C_p with p the number of kinks <= x (the kernels' walk)."""
    p = np.searchsorted(kinks, x, side="right")
    return A[p] * x[:, None] + C[p]


def test_on_each_piece_the_tables_are_the_first_two_layers():
    rng = np.random.default_rng(0)
    W1, b1, W2a = _network(rng, dead=2)
    kinks, A, C = first_layer_pieces(W1, b1, W2a, SLOPE1)
    assert kinks.size == 5 and A.shape == C.shape == (6, 5) and np.all(np.diff(kinks) > 0)
    x = np.concatenate([rng.uniform(-6, 6, 200), kinks, kinks - 1e-9, kinks + 1e-9])
    np.testing.assert_allclose(_on_pieces(x, kinks, A, C), _layer2_input(x, W1, b1, W2a),
                               rtol=1e-10, atol=1e-10)


def test_the_score_on_the_tables_is_numpy_refs():
    """w3 . leaky(A_p x + C_p + beff2) + beff3 is numpy_ref's score at a level."""
    rng = np.random.default_rng(1)
    W1, b1, W2a = _network(rng)
    beff2, W3a, beff3 = rng.standard_normal(5), rng.standard_normal((1, 5)), 0.3
    x = rng.uniform(-4, 4, 100)
    u = _on_pieces(x, *first_layer_pieces(W1, b1, W2a, SLOPE1)) + beff2
    score = np.where(u > 0, u, SLOPE2 * u) @ W3a[0] + beff3
    want, _ = numpy_ref._score_and_slope(x, W1, b1, W2a, beff2, W3a, beff3, SLOPE1, SLOPE2, False)
    np.testing.assert_allclose(score, want, rtol=1e-10)


def test_replicas_padded_to_one_size_keep_their_own_pieces():
    """Three networks with 7, 5 and 3 kinks: the padded kinks are +inf, which no finite x passes,
    so each replica's walk meets its own tables only."""
    rng = np.random.default_rng(2)
    nets = [_network(rng, dead=dead) for dead in (0, 2, 4)]
    kinks, A, C = replica_pieces(*(np.stack(arrays) for arrays in zip(*nets)), SLOPE1)
    assert kinks.shape == (3, 7) and A.shape == C.shape == (3, 8, 5)
    x = rng.uniform(-1e6, 1e6, 300)
    for r, net in enumerate(nets):
        own = first_layer_pieces(*net, SLOPE1)
        assert np.all(np.isposinf(kinks[r, own[0].size:]))
        np.testing.assert_array_equal(kinks[r, :own[0].size], own[0])
        np.testing.assert_allclose(_on_pieces(x, kinks[r], A[r], C[r]), _layer2_input(x, *net),
                                   rtol=1e-9, atol=1e-6)


def test_the_tables_come_in_the_network_dtype():
    W1, b1, W2a = (a.astype(np.float32) for a in _network(np.random.default_rng(3)))
    assert all(t.dtype == np.float32 for t in replica_pieces(W1[None], b1[None], W2a[None], SLOPE1))
