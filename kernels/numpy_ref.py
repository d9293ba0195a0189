"""The math of every npgen operation in plain numpy: arrays in, arrays out, written to be read.

Notation, for a batch of ``n`` rows (one sample a row):

* ``x``  (n, in)   layer input            ``W`` (out, in) weight     ``b`` (out,) bias
* ``z``  (n, out)  pre-activation          ``a`` (n, out)  activation, ``a = act(z)``
* ``grad_y`` is dL/dy for a scalar loss L ("the gradient flowing back into y").
* ``dx``, ``dz``, ``da`` are forward-mode tangents (a directional derivative pushed forward).
* ``kind`` is an activation code (``IDENTITY``, ``RELU``, ``LEAKY_RELU``, ``SILU``, ``TANH``,
  ``SIGMOID`` of :mod:`npgen.kernels`) and ``slope`` the negative slope of leaky_relu.

The file goes from the small pieces to the large: activations, the dense layer, the column
blocks of skip connections and minibatch rows, losses (the classifier's, then the pieces of the
GAN's, the VAE's and the SGM's), Adam, spectral norm, annealed Langevin sampling, and last the
exact score of a blurred Gaussian mixture with the Langevin chain driven by it (a yardstick for
the learned score). A forward returns what its backward needs, and a backward returns the
gradients of its inputs and
parameters. Nothing is written in place.

A 3-layer MLP, chained by hand
------------------------------
The network ``y = W3 tanh(W2 tanh(W1 x + b1) + b2) + b3`` trained as a classifier of logits::

    a1, z1 = dense_forward(x,  W1, b1, TANH, 0.0)        # each forward keeps z for its backward
    a2, z2 = dense_forward(a1, W2, b2, TANH, 0.0)
    y,  z3 = dense_forward(a2, W3, b3, IDENTITY, 0.0)
    loss, grad_y = bce_with_logits(y, labels)            # the loss starts the backward pass

    grad_a2, grad_W3, grad_b3 = dense_backward(a2, W3, z3, grad_y,  IDENTITY, 0.0)
    grad_a1, grad_W2, grad_b2 = dense_backward(a1, W2, z2, grad_a2, TANH, 0.0)
    _,       grad_W1, grad_b1 = dense_backward(x,  W1, z1, grad_a1, TANH, 0.0)

    W1, m_W1, v_W1 = adam_step(W1, grad_W1, m_W1, v_W1, t, lr, beta1, beta2, eps)   # and so on

Each layer's backward takes the layer's input, its weight, the ``z`` its forward returned and
the gradient of its output, and returns the gradient of its input: the next layer down's
``grad_a``. With spectral norm, layer k uses ``W_sn, sigma, u, v = spectral_norm_forward(W, u,
v, 1)`` in place of W, and ``spectral_norm_backward(W, u, v, sigma, grad_W_sn)`` turns the
gradient of W_sn that its dense_backward returns into that of W. A Jacobian-vector product
runs the same chain with :func:`dense_jvp`, carrying a tangent ``dx`` along (``da1`` feeds the
next layer's ``dx``), and :func:`dense_jvp_backward` differentiates through both paths.

The destination-passing backends (``numpy_backend``, built on this file, and the numba kernels
in ``cpu``) compute the same things into arrays that the caller owns; ``cpu`` is tested
against this file.
"""

import numpy as np

from . import ACTIVATIONS, IDENTITY, LEAKY_RELU, RELU, SIGMOID, SILU, TANH

# --------------------------------------------------------------------------- activations
#
# Each activation is defined on the extended reals: at z = -inf and z = +inf it takes its
# limits, and no finite or infinite z gives NaN or a numpy warning. Where a formula would
# multiply an infinity by a vanishing factor (-inf * 0 is NaN), z is first clipped to the
# finite floats, where the formula already equals its limit.


def _unknown_activation(kind):
    """The error for a code that is not one of npgen.kernels.ACTIVATIONS' values."""
    return ValueError(f"activation code must be one of {sorted(ACTIVATIONS.values())}, "
                      f"got {kind!r}")


def _sigmoid(z):
    """sigmoid(z) = 1 / (1 + exp(-z)), through e = exp(-|z|) so that nothing overflows."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def _clipped_to_finite(z):
    """z with -inf and +inf replaced by the most negative and the largest float of its type."""
    info = np.finfo(z.dtype)
    return np.clip(z, info.min, info.max)


def activation(kind, slope, z):
    """a = act(z), elementwise, in the float type of z.

    identity: z            relu: max(z, 0)           leaky_relu: z if z > 0 else slope z
    silu: z sigmoid(z)     tanh: tanh(z)             sigmoid: 1 / (1 + exp(-z))

    On the extended reals: act(+inf) = +inf for identity, relu, leaky_relu and silu, 1 for
    tanh and sigmoid; act(-inf) = -inf for identity, 0 for relu, silu and sigmoid, -1 for tanh,
    and for leaky_relu -inf when slope > 0 and 0 when slope = 0. No finite or infinite z gives
    NaN or a warning (for leaky_relu, |slope| <= 1, so that slope z cannot overflow).
    """
    z = np.asarray(z)
    slope = z.dtype.type(slope)
    if kind == IDENTITY:
        return z.copy()
    if kind == RELU or (kind == LEAKY_RELU and slope == 0):
        return np.maximum(z, 0)  # not slope z: 0 * -inf is NaN
    if kind == LEAKY_RELU:
        return np.where(z > 0, z, slope * z)
    if kind == SILU:  # z stops at the most negative float, where z sigmoid(z) is already 0
        return np.maximum(z, np.finfo(z.dtype).min) * _sigmoid(z)
    if kind == TANH:
        return np.tanh(z)
    if kind == SIGMOID:
        return _sigmoid(z)
    raise _unknown_activation(kind)


def activation_derivative(kind, slope, z):
    """act'(z), elementwise, in the float type of z.

    identity: 1    relu: [z > 0]    leaky_relu: 1 if z > 0 else slope
    silu: s (1 + z (1 - s)) with s = sigmoid(z)
    tanh: 1 - tanh(z)^2             sigmoid: s (1 - s)

    At the kink z = 0 of relu and leaky_relu the left derivative is used (0, slope), as torch
    does. On the extended reals: 1 at +inf and 0 at -inf for silu, 0 at both for tanh and
    sigmoid; relu and leaky_relu keep their one-sided values. No NaN, no warning, for any z.
    """
    z = np.asarray(z)
    slope = z.dtype.type(slope)
    if kind == IDENTITY:
        return np.ones_like(z)
    if kind in (RELU, LEAKY_RELU):
        return np.where(z > 0, 1, slope if kind == LEAKY_RELU else 0).astype(z.dtype)
    if kind == SILU:
        z = _clipped_to_finite(z)  # z (1 - s): inf * 0 at +inf
        s = _sigmoid(z)
        return s * (1 + z * (1 - s))
    if kind == TANH:
        a = np.tanh(z)
        return 1 - a * a
    if kind == SIGMOID:
        s = _sigmoid(z)
        return s * (1 - s)
    raise _unknown_activation(kind)


def activation_second_derivative(kind, slope, z):
    """act''(z), elementwise, in the float type of z.

    identity, relu, leaky_relu: 0 (piecewise linear; 0 at the kink too)
    silu: s (1 - s) (2 + z (1 - 2 s)) with s = sigmoid(z)
    tanh: -2 a (1 - a^2) with a = tanh(z)         sigmoid: s (1 - s) (1 - 2 s)

    On the extended reals every second derivative is 0 at -inf and +inf. No NaN, no warning,
    for any z.
    """
    z = np.asarray(z)
    if kind in (IDENTITY, RELU, LEAKY_RELU):
        return np.zeros_like(z)
    if kind == SILU:
        z = _clipped_to_finite(z)  # s (1 - s) z: 0 * inf at both ends
        s = _sigmoid(z)
        return s * (1 - s) * (2 + z * (1 - 2 * s))
    if kind == TANH:
        a = np.tanh(z)
        return -2 * a * (1 - a * a)
    if kind == SIGMOID:
        s = _sigmoid(z)
        return s * (1 - s) * (1 - 2 * s)
    raise _unknown_activation(kind)


def activation_backward(kind, slope, z, grad_a):
    """grad_z = grad_a * act'(z): the chain rule through an elementwise map."""
    return grad_a * activation_derivative(kind, slope, z)


def activation_jvp_backward(kind, slope, z, dz, grad_a, grad_da):
    """Backward of (a, da) = (act(z), act'(z) dz) to (z, dz); returns (grad_z, grad_dz).

    With d1 = act'(z) and d2 = act''(z):
    grad_z  = grad_da d2 dz + grad_a d1     (z moves both a and the slope that scales dz)
    grad_dz = grad_da d1
    """
    d1 = activation_derivative(kind, slope, z)
    d2 = activation_second_derivative(kind, slope, z)
    return d2 * (grad_da * dz) + grad_a * d1, grad_da * d1


# --------------------------------------------------------------------------- dense layer


def dense_forward(x, W, b, kind, slope):
    """Dense layer with its activation; returns (a, z).

    z = x W^T + b          (n, out)
    a = act(z)             (n, out)
    """
    z = x @ W.T + b
    return activation(kind, slope, z), z


def dense_backward(x, W, z, grad_a, kind, slope):
    """Backward of :func:`dense_forward`; returns (grad_x, grad_W, grad_b).

    grad_z = grad_a * act'(z)
    grad_x = grad_z W          (n, in)
    grad_W = grad_z^T x        (out, in)
    grad_b = sum_rows grad_z   (out,)
    """
    grad_z = activation_backward(kind, slope, z, grad_a)
    return grad_z @ W, grad_z.T @ x, grad_z.sum(axis=0)


def dense_backward_input(W, z, grad_a, kind, slope):
    """The grad_x of :func:`dense_backward` alone, the parameters held fixed.

    grad_x = (grad_a * act'(z)) W
    What a network needs when it only passes a gradient through (a GAN's discriminator
    during the generator's step): a third less work than the full backward.
    """
    return activation_backward(kind, slope, z, grad_a) @ W


def dense_jvp(x, dx, W, b, kind, slope):
    """Forward pass with a forward-mode tangent (a Jacobian-vector product); returns
    (a, da, z, dz).

    z  = x W^T + b,   a  = act(z)
    dz = dx W^T,      da = act'(z) * dz       (the bias does not move with x)
    """
    a, z = dense_forward(x, W, b, kind, slope)
    dz = dx @ W.T
    return a, activation_derivative(kind, slope, z) * dz, z, dz


def dense_jvp_backward(x, dx, W, z, dz, grad_a, grad_da, kind, slope):
    """Backward of :func:`dense_jvp`: cotangents of (a, da) to those of (x, dx, W, b);
    returns (grad_x, grad_dx, grad_W, grad_b).

    With d1 = act'(z) and d2 = act''(z) (:func:`activation_jvp_backward`):
    grad_z  = grad_a d1 + grad_da d2 dz,    grad_dz = grad_da d1
    grad_x  = grad_z W,                     grad_dx = grad_dz W
    grad_W  = grad_z^T x + grad_dz^T dx,    grad_b  = sum_rows grad_z
    This is what a gradient penalty on ||dG/dz|| needs: backprop through both the primal
    and the tangent path of the network.
    """
    grad_z, grad_dz = activation_jvp_backward(kind, slope, z, dz, grad_a, grad_da)
    return grad_z @ W, grad_dz @ W, grad_z.T @ x + grad_dz.T @ dx, grad_z.sum(axis=0)


# --------------------------------------------------------------------------- column blocks and rows
#
# A layer's input with skip connections (npgen.nn.mlp) is column blocks laid side by side, each
# the sum of some earlier nodes, a narrower node filling its block's leading columns
# (zero-padded); its gradient goes back to each node from its block's leading columns.
# Minibatches are rows of the data taken in the order of a shuffle.


def _check_block(h, start, width, w):
    if not (0 <= start and w <= width and start + width <= h.shape[1]):
        raise ValueError(f"a block of {width} columns from column {start} holding {w} must lie"
                         f" inside the {h.shape[1]} columns of the layer's input")


def put_columns(node, h, start, width, accumulate):
    """A node (n, w) into the column block h[:, start:start + width] of a layer's input h
    (n, in), w <= width; returns the new h:

        h'[:, start:start + w]         = node + (h[:, start:start + w] if accumulate else 0)
        h'[:, start + w:start + width] = h[:, start + w:start + width] if accumulate else 0
    and h' = h outside the block: a block is the first of its nodes put in (the zero-padding
    of a narrower node), plus the others added (``accumulate``).
    """
    _check_block(h, start, width, node.shape[1])
    h = h.copy()
    w = node.shape[1]
    if accumulate:
        h[:, start:start + w] += node
    else:
        h[:, start:start + w] = node
        h[:, start + w:start + width] = 0
    return h


def take_columns(grad_h, start, width):
    """A node's share of the gradient of a layer's input: grad_h[:, start:start + width].

    The adjoint of :func:`put_columns` in its node: for node -> h' = put_columns(node, h, start,
    W, accumulate), dh'/dnode copies the node into columns start .. start + w - 1, so
    grad_node = grad_h'[:, start:start + w] (what ``take_columns(grad_h', start, w)`` returns).
    """
    _check_block(grad_h, start, width, width)
    return grad_h[:, start:start + width].copy()


def gather_rows(source, index):
    """The rows source[index[k]] of source (N, d), k = 0 .. len(index) - 1: out (len(index), d).

    A minibatch: the rows of the data that a shuffle's slice ``index`` names (integers in
    [0, N)).
    """
    index = np.asarray(index)
    if index.ndim != 1 or index.dtype.kind not in "iu" or (
            index.size and not 0 <= index.min() <= index.max() < len(source)):
        raise ValueError(f"index must be a 1-D array of row numbers in [0, {len(source)})")
    return source[index]


# --------------------------------------------------------------------------- losses


def _check_targets(pred, target):
    if pred.shape != target.shape:
        raise ValueError(f"target must have the shape of the predictions {pred.shape}, "
                         f"got {target.shape}")


def bce_with_logits(logits, target):
    """Binary cross-entropy of sigmoid(logits) against targets in [0, 1], averaged; returns
    (loss, grad) with grad = dL/dlogits.

    l_i = max(s_i, 0) - s_i t_i + log(1 + exp(-|s_i|))      (stable for any s_i)
    L = mean_i l_i,    dL/ds_i = (sigmoid(s_i) - t_i) / N
    The loss is summed in float64 and returned as a Python float.
    """
    _check_targets(logits, target)
    n = logits.size
    loss = np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))
    return float(loss.sum(dtype=np.float64) / n), (_sigmoid(logits) - target) / n


def hinge(scores, target):
    """Hinge loss with labels t_i in {-1, +1}, averaged; returns (loss, grad = dL/dscores).

    L = mean_i max(0, 1 - t_i s_i),    dL/ds_i = -t_i [1 - t_i s_i > 0] / N
    """
    _check_targets(scores, target)
    n = scores.size
    margin = 1 - target * scores
    return (float(np.maximum(margin, 0).sum(dtype=np.float64) / n),
            np.where(margin > 0, -target, 0) / n)


def log_softmax(logits):
    """log softmax of each row: s_ij - lse_i = (s_ij - m_i) - log sum_k exp(s_ik - m_i), with
    m_i = max_k s_ik (the shift keeps every exp in (0, 1], so nothing overflows, and the
    differences s_ij - m_i keep their digits however large the logits)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits):
    """softmax of each row: exp(s_ij) / sum_k exp(s_ik) = exp(log_softmax(s)_ij)."""
    return np.exp(log_softmax(logits))


def softmax_cross_entropy(logits, target):
    """Cross-entropy of softmax(logits) against target distributions, row by row, averaged
    over the N rows; returns (loss, grad) with grad = dL/dlogits.

    l_i = -sum_j t_ij log softmax(s_i)_j = sum_j t_ij (lse_i - s_ij)
    L = mean_i l_i,    dL/ds_ij = (softmax(s_i)_j sum_k t_ik - t_ij) / N
    With one-hot rows t_i (a label) it is the classifier's loss, torch's cross_entropy; with
    rows that are distributions it is KL(t_i || softmax(s_i)) plus the entropy of t_i, which
    does not depend on s (a decoder that outputs a distribution over pixels). Targets must be
    >= 0. The loss is summed in float64 and returned as a Python float.
    """
    _check_targets(logits, target)
    n = logits.shape[0]
    log_p = log_softmax(logits)
    loss = -(target * log_p).sum(dtype=np.float64) / n
    mass = target.sum(axis=1, keepdims=True)
    return float(loss), (np.exp(log_p) * mass - target) / n


# --------------------------------------------------------------------------- the models' losses
#
# The parts of the GAN's, the VAE's and the SGM's losses that are not a network (npgen.models
# gan, vae and sgm have the models' math). Each returns its loss first, as a Python float summed
# in float64, then the arrays the model passes on; elementwise results keep the float type of
# their inputs and are computed in it, operation by operation as written.


def hinge_generator(scores):
    """The hinge GAN's generator loss on the discriminator's scores s_i = D(G(z_i)); returns
    (loss, grad) with grad = dL/dscores:

        L = -mean_i s_i,    dL/ds_i = -1 / N
    """
    n = scores.size
    return -float(scores.sum(dtype=np.float64)) / n, np.full(scores.shape, -1.0 / n, scores.dtype)


def gradient_penalty(tangent, target, scale):
    """The generator's gradient penalty (Figure 4 right) on the tangents t_i = dG/dz (z_i), the
    rows of tangent (B, d), towards the Lipschitz constant L = target > 0; returns
    (penalty, grad) with grad = dP/dtangent:

        P = w (|t_i*| - L)^2,   w = scale / L^2,   i* = argmax_i |t_i|   (the first, on ties)
        dP/dt_i* = 2 w (|t_i*| - L) t_i* / |t_i*|   (0 when t_i* = 0),   dP/dt_i = 0 for i != i*

    |t_i| is the Euclidean norm, in float64; the factor 2 w (|t_i*| - L) / |t_i*| is rounded to
    the tangent's type before it scales t_i*.
    """
    values = tangent.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", values, values))
    row = int(np.argmax(norms))
    weight = scale / target ** 2
    gap = float(norms[row]) - target
    grad = np.zeros_like(tangent)
    if norms[row] > 0:
        grad[row] = tangent[row] * tangent.dtype.type(2 * weight * gap / float(norms[row]))
    return weight * gap ** 2, grad


def vae_reparameterize(code, eps, kl_power):
    """The VAE's latent draw and KL term from the encoder's output code = [mu, lv] (B, 2p)
    (means, then log-variances) and standard normals eps (B, p); returns (kl, z, std):

        std = exp(lv / 2),   z = mu + std eps            (the reparameterization trick)
        kl  = 1/2 sum_ij (mu_ij^2 + std_ij^(2k) - lv_ij - 1)
    with k = kl_power: 1 is KL(N(mu, std^2) || N(0, 1)) summed over the batch, 2 the
    published code's term (exp(lv)^2 for exp(lv)). std^(2k) is (std std)^k in the float type.
    """
    p = eps.shape[1]
    mu, lv = code[:, :p], code[:, p:]
    std = np.exp(lv * code.dtype.type(0.5))
    variance = std * std
    term = variance if kl_power == 1 else variance * variance
    parts = [a.astype(np.float64) for a in (mu, term, lv)]
    kl = 0.5 * float(np.sum(parts[0] * parts[0] + parts[1] - parts[2] - 1))
    return kl, std * eps + mu, std


def vae_residual(reconstruction, x, variance):
    """The VAE's reconstruction term for decoder outputs g(z_i) and data x_i (B, d) under the
    decoder variance c; returns (loss, residual) with residual = dL/dg:

        L = sum_i |g(z_i) - x_i|^2 / (2c),   dL/dg = (g - x) / c
    (g - x times 1/c rounded to the float type).
    """
    difference = reconstruction - x
    values = difference.astype(np.float64)
    return (float(np.sum(values * values)) / (2 * variance),
            difference * difference.dtype.type(1 / variance))


def vae_code_gradient(code, eps, std, grad_z, kl_power):
    """The gradient of the VAE's loss with respect to the encoder's output code = [mu, lv]
    (B, 2p), given dL/dz = grad_z (B, p) from the decoder, eps and std = exp(lv / 2) of
    :func:`vae_reparameterize`; returns grad_code (B, 2p):

        dL/dmu = dL/dz + mu                                  (z = mu + std eps, KL's mu^2 / 2)
        dL/dlv = dL/dz eps std / 2 + (k std^(2k) - 1) / 2     (d std / d lv = std / 2)
    """
    p = eps.shape[1]
    half = std.dtype.type(0.5)
    variance = std * std
    term = variance if kl_power == 1 else variance * variance
    grad_lv = grad_z * eps * std * half + (term * std.dtype.type(0.5 * kl_power) - half)
    return np.concatenate([grad_z + code[:, :p], grad_lv], axis=1)


def score_matching_noisy(x, eps, sigma):
    """The noisy rows of denoising score matching: x~ = x + sigma eps, for clean rows x,
    standard normals eps (B, d) and the noise level sigma (rounded to the float type)."""
    return x + x.dtype.type(sigma) * eps


def score_matching_loss(score, eps, sigma, weight_power):
    """The SGM's denoising score-matching loss at level sigma, for the network's scores
    s_i = s(x~_i, sigma) of the noisy rows x~ = x + sigma eps (B, d); returns (loss, grad)
    with grad = dL/dscore:

        L = w sum_i |s_i + eps_i / sigma|^2,   dL/ds_i = 2 w (s_i + eps_i / sigma),   w = sigma^k
    (k = weight_power: 1 the published code's weight, 2 Song & Ermon's). The regression target
    -eps / sigma = (x - x~) / sigma^2 is the score of the Gaussian kernel N(x~; x, sigma^2); the
    loss is a sum over the batch, as the published code's.
    """
    residual = score + eps / score.dtype.type(sigma)
    weight = sigma if weight_power == 1 else sigma * sigma
    values = residual.astype(np.float64)
    return weight * float(np.sum(values * values)), (2 * weight) * residual


def score_matching_noisy_levels(x, eps, levels, sigmas):
    """The noisy rows of denoising score matching with a noise level per row:
    x~_i = x_i + sigma_{l_i} eps_i, for clean rows x, standard normals eps (B, d), level
    indices levels (B,) and the levels sigmas (L,) in the float type of x."""
    return x + eps * gather_rows(sigmas[:, None], levels)


def score_matching_loss_levels(raw, noisy, eps, levels, raw_scales, skips, center):
    """The denoising score-matching loss of npgen.models.VectorSGM, a level l_i per row, for a
    score network sigma s(x~, sigma_l) = A_l r(x~) - K_l (x~ - mu) (npgen.nn.DenseScoreNetwork:
    A_l = s_d c_l, K_l = sigma_l c_l^2) given its raw output r (B, d), the noisy rows x~ and
    their noise eps (B, d); returns (loss, grad) with grad = dL/draw:

        R_i = A_{l_i} r_i - K_{l_i} (x~_i - mu) + eps_i     (= sigma_i s(x~_i, sigma_i) + eps_i)
        L = 1 / (2B) sum_i |R_i|^2,    dL/dr_i = A_{l_i} R_i / B
    with raw_scales = (A_l), skips = (K_l) (L,) in the float type, center = mu; R_i is
    computed as ((x~_i - mu) (-K) + eps_i) + r_i A, dL/dr_i as (R_i A) (1 / B) rounded.
    This is Song & Ermon's weight sigma^2 on the score's residual, averaged over the batch.
    """
    n = len(raw)
    scale, skip = (gather_rows(table[:, None], levels) for table in (raw_scales, skips))
    residual = (noisy - noisy.dtype.type(center)) * -skip + eps + raw * scale
    values = residual.astype(np.float64)
    return (float(np.sum(values * values)) / (2 * n),
            residual * scale * residual.dtype.type(1.0 / n))


# --------------------------------------------------------------------------- the noise-level path
#
# npgen.nn.score's embedding of the noise level, one row a replica: the sinusoidal features
# p (1, F) through two leaky layers, folded into the x path's two biases. ``params`` are its
# parameters (V1, c1, V2, c2, W2e, b2, W3e, b3) and ``path`` what the forward keeps for the
# backward (z1, h, z2, e, leaky_e).


def score_embedding_forward(p, params, slope):
    """The noise-level path with c = slope; returns (beff2, beff3, path):
        z1 = p V1^T + c1,   h = leaky_c(z1)
        z2 = h V2^T + c2,   e = leaky_c(z2),   leaky_e = leaky_c(e) = leaky_{c^2}(z2)
        beff2 = e W2e^T + b2,   beff3 = leaky_e W3e^T + b3
    """
    V1, c1, V2, c2, W2e, b2, W3e, b3 = params
    h, z1 = dense_forward(p, V1, c1, LEAKY_RELU, slope)
    e, z2 = dense_forward(h, V2, c2, LEAKY_RELU, slope)
    leaky_e = activation(LEAKY_RELU, slope * slope, z2)
    beff2, _ = dense_forward(e, W2e, b2, IDENTITY, 0.0)
    beff3, _ = dense_forward(leaky_e, W3e, b3, IDENTITY, 0.0)
    return beff2, beff3, (z1, h, z2, e, leaky_e)


def score_embedding_backward(p, params, slope, path, grad_beff2, grad_beff3):
    """Backward of :func:`score_embedding_forward` from dL/dbeff2 (1, H2) and dL/dbeff3 (1, 1);
    returns the gradients of ``params``, in their order:
        dL/dW2e = dL/dbeff2^T e,   dL/db2 = dL/dbeff2,
        dL/dW3e = dL/dbeff3^T leaky_e,   dL/db3 = dL/dbeff3,
        dL/dz2 = leaky_c'(z2) (dL/dbeff2 W2e) + leaky_{c^2}'(z2) (dL/dbeff3 W3e),
        dL/dV2 = dL/dz2^T h,   dL/dc2 = dL/dz2,
        dL/dz1 = leaky_c'(z1) (dL/dz2 V2),   dL/dV1 = dL/dz1^T p,   dL/dc1 = dL/dz1.
    """
    V1, _, V2, _, W2e, _, W3e, _ = params
    z1, h, z2, e, leaky_e = path
    grad_z2 = (activation_backward(LEAKY_RELU, slope, z2, grad_beff2 @ W2e)
               + activation_backward(LEAKY_RELU, slope * slope, z2, grad_beff3 @ W3e))
    grad_z1 = activation_backward(LEAKY_RELU, slope, z1, grad_z2 @ V2)
    return (grad_z1.T @ p, grad_z1.sum(axis=0), grad_z2.T @ h, grad_z2.sum(axis=0),
            grad_beff2.T @ e, grad_beff2.sum(axis=0), grad_beff3.T @ leaky_e,
            grad_beff3.sum(axis=0))


# --------------------------------------------------------------------------- f-divergence duals
#
# Variational (dual) form of an f-divergence between the particles' law P and the data's law Q
# over discriminators phi (Nguyen, Wainwright & Jordan 2010; with a Lipschitz bound on phi,
# the Lipschitz-regularized divergences of Dupuis & Mao 2022):
#     D_f(P || Q) = sup_phi  E_P[phi] - inf_nu { nu + E_Q[f*(phi - nu)] },
# estimated on particles y_1..y_N (phi_p = phi(y_i)) and data x_1..x_M (phi_q = phi(x_j)).
# Each kernel returns the *loss* -D (what the discriminator minimizes) and its gradient with
# respect to phi_p and phi_q.


def kl_dual_loss(phi_p, phi_q):
    """KL (f = x log x, f*(y) = exp(y - 1)); the inner inf is at nu = log E_Q[e^phi] - 1, which
    leaves the Donsker-Varadhan form. Returns (loss, grad_p, grad_q):

        loss = -[mean_i phi_p_i - log mean_j exp(phi_q_j)]
        d loss / d phi_p_i = -1 / N,   d loss / d phi_q_j = softmax(phi_q)_j
    The log-mean-exp is shifted by max_j phi_q_j (no overflow); sums in float64.
    """
    p = phi_p.astype(np.float64)
    q = phi_q.astype(np.float64)
    top = q.max()
    weights = np.exp(q - top)
    total = weights.sum()
    loss = -(p.mean() - (np.log(total / q.size) + top))
    return float(loss), np.full(phi_p.shape, -1.0 / p.size), weights / total


def alpha_conjugate(y, alpha):
    """f_alpha*(y) for f_alpha(x) = (x^alpha - 1) / (alpha (alpha - 1)), alpha > 1, and its
    derivative: f*(y) = ((alpha - 1) y_+)^(alpha / (alpha - 1)) / alpha + 1 / (alpha (alpha - 1)),
    f*'(y) = ((alpha - 1) y_+)^(1 / (alpha - 1)) (the maximizer x of x y - f(x) over x >= 0)."""
    base = (alpha - 1.0) * np.maximum(y, 0.0)
    return (base ** (alpha / (alpha - 1.0)) / alpha + 1.0 / (alpha * (alpha - 1.0)),
            base ** (1.0 / (alpha - 1.0)))


def alpha_dual_loss(phi_p, phi_q, nu, alpha):
    """The alpha-divergence (alpha > 1) at the shift nu; returns (loss, grad_p, grad_q, grad_nu):

        loss = -[mean_i phi_p_i - nu - mean_j f*(phi_q_j - nu)]
        d loss / d phi_p_i = -1 / N,   d loss / d phi_q_j = f*'(phi_q_j - nu) / M,
        d loss / d nu = 1 - mean_j f*'(phi_q_j - nu)
    (the loss is minimized over nu where mean_j f*'(phi_q_j - nu) = 1).
    """
    p = phi_p.astype(np.float64)
    conj, slope = alpha_conjugate(phi_q.astype(np.float64) - nu, alpha)
    loss = -(p.mean() - nu - conj.mean())
    return float(loss), np.full(phi_p.shape, -1.0 / p.size), slope / slope.size, float(1.0 - slope.mean())


def particle_step(y, velocity, dt):
    """One explicit Euler step of the particles along -velocity (velocity = grad phi(y)):
    returns (y - dt velocity, kinetic) with kinetic = mean_i |velocity_i|^2, the particles'
    kinetic energy (the regularized Fisher information of the flow), summed in float64."""
    v = velocity.astype(np.float64)
    return y - dt * velocity, float(np.einsum("ij,ij->", v, v) / v.shape[0])


# --------------------------------------------------------------------------- optimizer


def adam_step(param, grad, m, v, step, lr, beta1, beta2, eps):
    """One Adam update with torch.optim.Adam's semantics; returns the new (param, m, v).

    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) g^2
    param <- param - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    ``step`` is t, counted from 1; eps is added after the square root.
    """
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    bias1 = 1 - beta1 ** step
    bias2 = 1 - beta2 ** step
    return param - (lr / bias1) * m / (np.sqrt(v) / np.sqrt(bias2) + eps), m, v


def adam_step_groups(params, grads, ms, vs, step, lr, beta1, beta2, eps):
    """:func:`adam_step` of every group g on (params[g], grads[g], ms[g], vs[g]), with one
    step count and one set of rates (the networks of one model); returns the lists of new
    params, ms and vs."""
    results = [adam_step(*group, step, lr, beta1, beta2, eps)
               for group in zip(params, grads, ms, vs)]
    return tuple(list(column) for column in zip(*results))


# --------------------------------------------------------------------------- spectral norm

SPECTRAL_NORM_EPS = 1e-12


def spectral_norm_forward(W, u, v, n_power_iterations):
    """Spectral normalization as torch.nn.utils.spectral_norm computes it; returns
    (W_sn, sigma, u, v).

    Training (n_power_iterations >= 1), with u (out,) and v (in,) carried between calls:
        v <- W^T u / max(||W^T u||, eps),   u <- W v / max(||W v||, eps)
    Evaluation (n_power_iterations = 0) keeps u and v as they are. Then
        sigma = u . W v      (an estimate of the largest singular value of W, a Python float)
        W_sn  = W / sigma
    """
    for _ in range(n_power_iterations):
        wu = W.T @ u
        v = wu / max(np.linalg.norm(wu), SPECTRAL_NORM_EPS)
        wv = W @ v
        u = wv / max(np.linalg.norm(wv), SPECTRAL_NORM_EPS)
    sigma = float(u @ (W @ v))
    return W / sigma, sigma, u, v


def spectral_norm_backward(W, u, v, sigma, grad_W_sn):
    """Backward of W_sn = W / sigma(W) with sigma = u^T W v, u and v held constant; returns
    grad_W.

    d sigma / dW = u v^T, so
    grad_W = grad_W_sn / sigma - (<grad_W_sn, W> / sigma^2) u v^T
    """
    coupling = float(np.sum(grad_W_sn * W, dtype=np.float64)) / sigma ** 2
    return grad_W_sn / sigma - coupling * np.outer(u, v)


def spectral_norm_forward_layers(Ws, us, vs, n_power_iterations):
    """:func:`spectral_norm_forward` of every layer k of a network, each on its own (W_k, u_k,
    v_k); returns the lists (W_sns, sigmas, us, vs). The layers do not interact: a network's
    layers in one call, which the batched backend runs as one launch."""
    results = [spectral_norm_forward(W, u, v, n_power_iterations) for W, u, v in zip(Ws, us, vs)]
    return tuple(list(column) for column in zip(*results))


def spectral_norm_backward_layers(Ws, us, vs, sigmas, grad_W_sns):
    """:func:`spectral_norm_backward` of every layer k of a network; returns the list of
    grad_W_k = grad_W_sn_k / sigma_k - (<grad_W_sn_k, W_k> / sigma_k^2) u_k v_k^T."""
    return [spectral_norm_backward(*layer) for layer in zip(Ws, us, vs, sigmas, grad_W_sns)]


# --------------------------------------------------------------------------- annealed Langevin
#
# Langevin noise is a pure function of (seed, sample index i, step t), so a run is reproducible
# from its seed however the samples are grouped or ordered, and every backend draws the same
# numbers. Step pair q = t // 2 of sample i gets 64 random bits
#     key_i = mix(mix(seed + G) + (i + 1) G),     bits = mix(key_i + (q + 1) G)     (mod 2^64)
# with G = 0x9E3779B97F4A7C15 and mix the splitmix64 finalizer: each sample reads the splitmix64
# sequence seeded with key_i. The two 32-bit halves give uniforms in (0, 1),
#     u1 = (bits_high + 1/2) / 2^32,    u2 = (bits_low + 1/2) / 2^32,
# and Box-Muller turns them into two independent standard normals, for steps 2q and 2q + 1:
#     z_2q = sqrt(-2 ln u1) cos(2 pi u2),    z_2q+1 = sqrt(-2 ln u1) sin(2 pi u2).

LANGEVIN_GOLDEN = 0x9E3779B97F4A7C15
LANGEVIN_MIX = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def _mix64(z):
    """splitmix64's finalizer on a uint64 array (a bijection that spreads every bit):
    z ^= z >> 30; z *= M1; z ^= z >> 27; z *= M2; z ^= z >> 31   (mod 2^64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(LANGEVIN_MIX[0])
    z = (z ^ (z >> np.uint64(27))) * np.uint64(LANGEVIN_MIX[1])
    return z ^ (z >> np.uint64(31))


def langevin_sample_keys(seed, n, rows=None):
    """key_i = mix(mix(seed + G) + (i + 1) G) (uint64) for samples i = 0 .. n-1, or, with
    ``rows`` (n,) given, for the sample indices i = rows[0] .. rows[n-1]."""
    golden = np.uint64(LANGEVIN_GOLDEN)
    base = _mix64(np.array([seed], np.uint64) + golden)
    indices = np.arange(n, dtype=np.uint64) if rows is None else rows.astype(np.uint64)
    return _mix64(base + (indices + np.uint64(1)) * golden)


def langevin_rows(rows, n):
    """The sample indices of n chains as an int64 array (n,): 0 .. n-1 when ``rows`` is None,
    else ``rows`` itself, a 1-D integer array of n indices in [0, 2^63 - 1]. A chain draws the
    noise of its sample index, so chains x0[rows] moved with ``rows`` draw, step by step, what
    those samples draw in the pass over all of x0."""
    if rows is None:
        return np.arange(n, dtype=np.int64)
    if (not isinstance(rows, np.ndarray) or rows.dtype.kind not in "iu" or rows.shape != (n,)
            or (n and (int(rows.min()) < 0 or int(rows.max()) > np.iinfo(np.int64).max))):
        raise ValueError(f"rows must be a 1-D integer array of the {n} chains' sample indices,"
                         f" each in [0, 2^63 - 1], got {_described(rows)}")
    return rows.astype(np.int64)


def _described(rows):
    """What ``rows`` is, in a few words, for the error of :func:`langevin_rows`."""
    if not isinstance(rows, np.ndarray):
        return f"rows of type {type(rows).__name__}"
    shown = f"rows of dtype {rows.dtype} and shape {rows.shape}"
    return shown if rows.size == 0 or rows.dtype.kind not in "iu" else \
        f"{shown}, values {rows.min()} to {rows.max()}"


def langevin_noise(keys, step):
    """The standard normals z(seed, i, step) of the samples with these keys (float64)."""
    bits = _mix64(keys + np.uint64((step // 2 + 1) * LANGEVIN_GOLDEN % 2 ** 64))
    u1 = ((bits >> np.uint64(32)).astype(np.float64) + 0.5) * 2.0 ** -32
    u2 = ((bits & np.uint64(0xFFFFFFFF)).astype(np.float64) + 0.5) * 2.0 ** -32
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = 2.0 * np.pi * u2
    return radius * (np.cos(angle) if step % 2 == 0 else np.sin(angle))


def shuffle_keys(seed, epoch, n):
    """The sort keys of rows i = 0 .. n-1 in epoch ``epoch`` (from 0) of the run seeded ``seed``:
    k_i = mix(mix(mix(seed + G) + (epoch + 1) G) + (i + 1) G) (uint64), the sample keys of
    :func:`langevin_sample_keys` with the epoch's own seed mix(seed + G) + (epoch + 1) G."""
    golden = np.uint64(LANGEVIN_GOLDEN)
    base = _mix64(np.array([seed], np.uint64) + golden)
    epoch_seed = base + np.uint64((epoch + 1) * LANGEVIN_GOLDEN % 2 ** 64)
    return _mix64(_mix64(epoch_seed) + (np.arange(n, dtype=np.uint64) + np.uint64(1)) * golden)


def shuffle_order(seed, epoch, n):
    """The order in which the device visits rows 0 .. n-1 in an epoch: the rows sorted by
    :func:`shuffle_keys` (ties, which 64-bit keys almost never have, by row). A counter-based
    permutation: a pure function of (seed, epoch, n), whatever else is computed beside it."""
    return np.argsort(shuffle_keys(seed, epoch, n), kind="stable")


def _score_and_slope(x, W1, b1, W2a, beff2_l, W3a, beff3_l, slope1, slope2, need_slope):
    """The score s_l(x) of samples x (n,) at one level, and when ``need_slope`` its derivative
        s_l'(x) = W3a (leaky_slope2'(z2) * (W2a (leaky_slope1'(z1) * w1)))
    with z1 = W1 x + b1, z2 = W2a leaky_slope1(z1) + beff2[l] (left derivatives at the kinks,
    as :func:`activation_derivative`); None in its place otherwise.

    The products are einsum's, not BLAS's: einsum sums each sample's row in one order however
    many rows there are, so a chain's path does not depend on the chains run beside it (BLAS
    blocks a product by its shape), which :func:`annealed_langevin`'s ``rows`` relies on."""
    w1, w3 = W1[:, 0], W3a[0]
    z1 = x[:, None] * w1 + b1
    h1 = np.where(z1 > 0, z1, slope1 * z1).astype(x.dtype)
    z2 = np.einsum("nj,kj->nk", h1, W2a) + beff2_l
    h2 = np.where(z2 > 0, z2, slope2 * z2).astype(x.dtype)
    score = np.einsum("nk,k->n", h2, w3) + beff3_l
    if not need_slope:
        return score, None
    dz2 = np.einsum("nj,kj->nk", (np.where(z1 > 0, 1, slope1) * w1).astype(x.dtype), W2a)
    return score, np.einsum("nk,k->n", (np.where(z2 > 0, 1, slope2) * dz2).astype(x.dtype), w3)


def annealed_langevin_given_noise(x, W1, b1, W2a, beff2, W3a, beff3, alphas, noise, slope1,
                                  slope2, dx0=None, grad_sq=None):
    """:func:`annealed_langevin` with its Gaussian inputs given: ``noise`` (L, S, n) holds the
    z of step s of level l for each sample, and S = ``noise.shape[1]`` steps run per level.

    The whole sampler is then a function g(x_0, z_1, ..., z_T) = x_T of its Gaussian inputs,
    a push-forward of N(0, I_{T+1}) for each sample. Its gradient follows a forward recursion:
    a step x' = x + (alpha_l / 2) s_l(x) + sqrt(alpha_l) z has dx'/dx = f = 1 + (alpha_l / 2)
    s_l'(x), at the x before the step, and dx'/dz = sqrt(alpha_l); so, per step,
        dx0     <- f dx0                   (d x_T / d x_0; 1 at the start)
        grad_sq <- f^2 grad_sq + alpha_l   (|grad g|^2 over (x_0, z_1..z_T); 1 at the start)
    Returns x when ``dx0`` and ``grad_sq`` are both None, else (x, dx0, grad_sq), new arrays
    (the arguments, where given, are their values before the first step; one that is None
    starts at 1). No input is changed.
    """
    track = dx0 is not None or grad_sq is not None
    x = x.copy()
    if track:
        dx0, grad_sq = (np.ones_like(x) if start is None else np.array(start, x.dtype)
                        for start in (dx0, grad_sq))
    for level in range(alphas.size):
        alpha = x.dtype.type(alphas[level])
        half_alpha = x.dtype.type(alphas[level] / 2)
        root_alpha = x.dtype.type(np.sqrt(alphas[level]))
        for z in noise[level]:
            score, slope_of_score = _score_and_slope(x, W1, b1, W2a, beff2[level], W3a,
                                                     beff3[level], slope1, slope2, track)
            if track:
                f = 1 + half_alpha * slope_of_score
                dx0 = f * dx0
                grad_sq = f * f * grad_sq + alpha
            x += half_alpha * score + root_alpha * z.astype(x.dtype)
    return (x, dx0, grad_sq) if track else x


def annealed_langevin(x, W1, b1, W2a, beff2, W3a, beff3, alphas, n_steps_per_level, seed,
                      first_step, slope1, slope2, dx0=None, grad_sq=None, rows=None):
    """Annealed Langevin dynamics (Song & Ermon, 2019) with the score network of a scalar x;
    returns the moved samples (x itself is left as it is).

    At noise level l the score network is the chain
        s_l(x) = W3a leaky_slope2(W2a leaky_slope1(W1 x + b1) + beff2[l]) + beff3[l]
    with W1 (H1, 1), b1 (H1,), W2a (H2, H1), beff2 (L, H2), W3a (1, H2), beff3 (L,): the
    noise-level embedding is folded into the biases beff2, beff3. For each level l = 0 .. L-1
    in turn, ``n_steps_per_level`` times,
        x <- x + (alpha_l / 2) s_l(x) + sqrt(alpha_l) z
    for samples x (n,). Step t of the run (t = first_step, first_step + 1, ...) gives
    sample i the normal z(seed, i, t) described above, so a run split into several calls
    (one per level, say, each with its ``first_step``) draws what a single call would. The
    chain x[j] is sample rows[j] (``rows``: see :func:`langevin_rows`; sample j by default),
    so a call on some of a run's chains, with their indices, moves them as the whole run does.

    With ``dx0`` or ``grad_sq`` (n,) given, the sampler's gradient with respect to its
    Gaussian inputs is tracked as well and (x, dx0, grad_sq) returned, as by
    :func:`annealed_langevin_given_noise`, which runs the steps here, one level at a time.
    """
    track = dx0 is not None or grad_sq is not None
    keys = langevin_sample_keys(seed, x.size, langevin_rows(rows, x.size))
    state = (x.copy(), dx0, grad_sq)
    for level in range(alphas.size):
        start = first_step + level * n_steps_per_level
        noise = np.array([[langevin_noise(keys, step)
                           for step in range(start, start + n_steps_per_level)]])
        one = slice(level, level + 1)
        moved = annealed_langevin_given_noise(state[0], W1, b1, W2a, beff2[one], W3a,
                                              beff3[one], alphas[one], noise, slope1, slope2,
                                              *state[1:])
        state = moved if track else (moved, None, None)
    return state if track else state[0]


def annealed_langevin_mlp(x, W1, beff1, W2, beff2, W3, b3, out_scales, skip_scales, center,
                          alphas, n_steps_per_level, seed, first_step, kind, slope):
    """Annealed Langevin dynamics in d dimensions with a two-hidden-layer score network;
    returns the moved samples (x itself is left as it is).

    At noise level l the score is (:class:`npgen.nn.DenseScoreNetwork`)
        s_l(x) = out_scales[l] (W3 act(W2 act(W1 x + beff1[l]) + beff2[l]) + b3)
                 - skip_scales[l] (x - center)
    with x (n, d), W1 (H1, d), beff1 (L, H1), W2 (H2, H1), beff2 (L, H2), W3 (d, H2), b3 (d,),
    out_scales and skip_scales (L,) and a scalar center: the level's embedding is folded into
    the hidden biases, and the score is a network plus a linear pull towards ``center``. For
    each level l = 0 .. L-1 in turn, ``n_steps_per_level`` times,
        x <- x + (alpha_l / 2) s_l(x) + sqrt(alpha_l) z
    Coordinate j of sample i is number i d + j of the 1-D sampler's noise
    (:func:`annealed_langevin`): z_ij at step t is z(seed, i d + j, t), so a run split into
    several calls (each with its ``first_step``) draws what a single call would.
    """
    x = x.copy()
    keys = langevin_sample_keys(seed, x.size)
    step = first_step
    for level in range(alphas.size):
        half_alpha = x.dtype.type(alphas[level] / 2)
        root_alpha = x.dtype.type(np.sqrt(alphas[level]))
        out_scale, skip_scale = x.dtype.type(out_scales[level]), x.dtype.type(skip_scales[level])
        for _ in range(n_steps_per_level):
            h1 = activation(kind, slope, x @ W1.T + beff1[level])
            h2 = activation(kind, slope, h1 @ W2.T + beff2[level])
            score = out_scale * (h2 @ W3.T + b3) - skip_scale * (x - x.dtype.type(center))
            noise = langevin_noise(keys, step).reshape(x.shape).astype(x.dtype)
            x += half_alpha * score + root_alpha * noise
            step += 1
    return x


# --------------------------------------------------------------------------- the exact score of a blurred mixture
#
# A mixture sum_k w_k N(mu_k, s_k^2 I_d) blurred by N(0, sigma^2 I_d) is the mixture
# sum_k w_k N(mu_k, v_k I_d) with v_k = s_k^2 + sigma^2. With the log-weights
#     l_k(x) = log w_k - (d / 2) log(2 pi v_k) - ||x - mu_k||^2 / (2 v_k),
# log p(x) = logsumexp_k l_k(x), the responsibilities r_k = exp(l_k - log p) and
#     s(x) = grad log p(x) = sum_k r_k a_k,    a_k = (mu_k - x) / v_k.
# In one dimension d r_k / dx = r_k (a_k - s), so
#     s'(x) = sum_k r_k (a_k^2 - 1 / v_k) - s(x)^2.
# Subtracting max_k l_k before exponentiating keeps far-apart components finite.


def blurred_mixture_score(x, log_weights, means, variances, need_slope=False):
    """The score of sum_k w_k N(mu_k, v_k I_d) at the rows of x (n, d), float64.

    ``log_weights`` (K,) log w_k, ``means`` (K, d), ``variances`` (K,) v_k (already blurred:
    v_k = s_k^2 + sigma^2). Returns (score (n, d), log p (n,)), and with ``need_slope`` (d = 1
    only) also s'(x) (n,). ||x - mu_k||^2 is expanded as ||x||^2 - 2 x . mu_k + ||mu_k||^2, so
    the cost is one (n, d) x (d, K) product; the score is
        s(x) = sum_k (r_k / v_k) mu_k - x sum_k r_k / v_k.
    """
    x = np.asarray(x, np.float64)
    means = np.asarray(means, np.float64)
    variances = np.asarray(variances, np.float64)
    d = x.shape[1]
    squares = (np.einsum("ij,ij->i", x, x)[:, None] - 2 * (x @ means.T)
               + np.einsum("kj,kj->k", means, means))
    logits = (np.asarray(log_weights, np.float64) - 0.5 * d * np.log(2 * np.pi * variances)
              - np.maximum(squares, 0) / (2 * variances))
    top = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - top)
    total = e.sum(axis=1, keepdims=True)
    r = e / total
    log_p = top[:, 0] + np.log(total[:, 0])
    precision = r / variances
    score = precision @ means - x * precision.sum(axis=1, keepdims=True)
    if not need_slope:
        return score, log_p
    if d != 1:
        raise ValueError("blurred_mixture_score: s'(x) is computed for d = 1 only")
    a = (means[:, 0] - x) / variances
    slope = np.sum(r * (a * a - 1 / variances), axis=1) - score[:, 0] ** 2
    return score, log_p, slope


def exact_score_langevin_given_noise(x, log_weights, means, variances, alphas, noise,
                                     dx0=None, grad_sq=None):
    """Annealed Langevin dynamics of scalar samples x (n,) on the exact score of a mixture:
    :func:`annealed_langevin_given_noise` with s_l(x) the score of sum_k w_k N(mu_k, V[l, k])
    (:func:`blurred_mixture_score`, d = 1) in place of the network, float64.

    ``log_weights`` (K,), ``means`` (K,), ``variances`` V (L, K): the blurred variances at each
    level, V[l, k] = s_k^2 + sigma_l^2; ``alphas`` (L,); ``noise`` (n, L S): row i holds sample
    i's z of steps 0 .. L S - 1, S = L S / L steps per level. Per step, with s' in closed form,
        f = 1 + (alpha_l / 2) s_l'(x),  dx0 <- f dx0,  grad_sq <- f^2 grad_sq + alpha_l,
        x <- x + (alpha_l / 2) s_l(x) + sqrt(alpha_l) z.
    Returns x, or (x, dx0, grad_sq) when either is given (one that is None starts at 1); no
    input is changed.
    """
    track = dx0 is not None or grad_sq is not None
    x = np.array(x, np.float64)
    noise = np.asarray(noise, np.float64)
    n_levels = alphas.size
    steps = noise.shape[1] // n_levels
    means = np.asarray(means, np.float64).reshape(-1, 1)
    if track:
        dx0, grad_sq = (np.ones_like(x) if start is None else np.array(start, np.float64)
                        for start in (dx0, grad_sq))
    for level in range(n_levels):
        alpha = float(alphas[level])
        for t in range(level * steps, (level + 1) * steps):
            score, _, slope = blurred_mixture_score(x[:, None], log_weights, means, variances[level],
                                                    need_slope=True)
            if track:
                f = 1 + alpha / 2 * slope
                dx0 = f * dx0
                grad_sq = f * f * grad_sq + alpha
            x = x + alpha / 2 * score[:, 0] + np.sqrt(alpha) * noise[:, t]
    return (x, dx0, grad_sq) if track else x


def langevin_noise_block(seed, n, first_step, n_steps):
    """(n, n_steps) float64: entry (i, t) is z(seed, i, first_step + t) of
    :func:`annealed_langevin`'s stream, so a chain fed this block draws what the kernels draw."""
    keys = langevin_sample_keys(seed, n)
    return np.stack([langevin_noise(keys, step) for step in range(first_step, first_step + n_steps)],
                    axis=1)
