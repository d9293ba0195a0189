"""The score network's first layer in pieces: the tables that both Langevin kernels walk.

The univariate score network's x path starts with h1 = leaky_c(w1 x + b1) for a *scalar* x.
Each unit is affine in x on either side of its kink t_k = -b1_k / w1_k (a unit with w1_k = 0
has none), so with the kinks sorted, h1 is affine in x on each piece between two of them:
on piece p, h1 = d_p * (w1 x + b1) with d_p,k = 1 or c according to the side of kink k the
piece lies on. The first two layers then collapse to

    W2a h1(x) = A_p x + C_p,    A_p = W2a (d_p * w1),    C_p = W2a (d_p * b1),

and a Langevin step costs w3 . leaky(A_p x + C_p + beff2[l]) + beff3[l] (about 600 flops for
the 96-196 network) instead of the H1 x H2 product (about 19 000). Piece p holds
kinks[p-1] <= x < kinks[p] (kinks[-1] = -inf, kinks[K] = +inf): the piece of x is the number
of kinks <= x. :mod:`cpu` walks the tables of one network, :mod:`cuda` those of R networks
padded to one size (:func:`replica_pieces`).
"""

import numpy as np


def first_layer_pieces(W1, b1, W2a, slope1):
    """(kinks (K,), A (K+1, H2), C (K+1, H2)) of one network (module doc): W1 (H1, 1),
    b1 (H1,), W2a (H2, H1). Computed in float64, returned in W1's dtype."""
    w1, b = W1[:, 0].astype(np.float64), b1.astype(np.float64)
    moving = w1 != 0
    kinks = np.sort(-b[moving] / w1[moving])
    if kinks.size == 0:
        inside = np.zeros(1)
    else:
        inside = np.concatenate([[kinks[0] - 1], (kinks[:-1] + kinks[1:]) / 2, [kinks[-1] + 1]])
    d = np.where(inside[:, None] * w1 + b > 0, 1.0, slope1)
    W2 = W2a.astype(np.float64)
    dtype = W1.dtype
    return (kinks.astype(dtype), np.ascontiguousarray((d * w1) @ W2.T, dtype),
            np.ascontiguousarray((d * b) @ W2.T, dtype))


def replica_pieces(W1, b1, W2a, slope1):
    """The tables of R networks, W1 (R, H1, 1), b1 (R, H1), W2a (R, H2, H1), as arrays of one
    shape: kinks (R, K) and A, C (R, K + 1, H2) with K the most kinks of any network. A network
    with fewer kinks has +inf in its last kinks, which no finite x reaches, and zero rows in
    the pieces past them."""
    tables = [first_layer_pieces(W1[r], b1[r], W2a[r], slope1) for r in range(W1.shape[0])]
    K = max(kinks.size for kinks, _, _ in tables)
    R, H2 = W1.shape[0], W2a.shape[1]
    kinks = np.full((R, K), np.inf, W1.dtype)
    A, C = (np.zeros((R, K + 1, H2), W1.dtype) for _ in range(2))
    for r, (own_kinks, own_A, own_C) in enumerate(tables):
        kinks[r, :own_kinks.size] = own_kinks
        A[r, :len(own_A)], C[r, :len(own_C)] = own_A, own_C
    return kinks, A, C
