"""Plain-numpy reference kernels: the math of every npgen operation, written to be read.

Notation, for a batch of ``n`` rows:

* ``x``  (n, in)   layer input            ``W`` (out, in) weight     ``b`` (out,) bias
* ``z``  (n, out)  pre-activation          ``a`` (n, out)  activation, ``a = act(z)``
* ``grad_y`` is dL/dy for a scalar loss L ("the gradient flowing back into y").
* ``dx``, ``dz``, ``da`` are forward-mode tangents (a directional derivative pushed forward).

Every function writes its results into arrays given by the caller and returns nothing, except
losses, which return the loss value. Parameter gradients are overwritten, or added to when
``accumulate`` is true (a network used twice in one loss, as the gradient penalty does).
The numba backend in ``cpu.py`` has the same names and signatures and is tested against this file.
"""

import numpy as np

from . import IDENTITY, LEAKY_RELU, RELU, SIGMOID, SILU, TANH

# --------------------------------------------------------------------------- activations


def _sigmoid(z):
    """sigmoid(z) = 1 / (1 + exp(-z)), evaluated without overflow for large |z|."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def activation_forward(kind, slope, z, out):
    """out = act(z).

    identity: z            relu: max(z, 0)           leaky_relu: z if z > 0 else slope * z
    silu: z * sigmoid(z)   tanh: tanh(z)             sigmoid: 1 / (1 + exp(-z))
    """
    if kind == IDENTITY:
        out[...] = z
    elif kind == RELU:
        out[...] = np.maximum(z, 0)
    elif kind == LEAKY_RELU:
        out[...] = np.where(z > 0, z, slope * z)
    elif kind == SILU:
        out[...] = z * _sigmoid(z)
    elif kind == TANH:
        out[...] = np.tanh(z)
    elif kind == SIGMOID:
        out[...] = _sigmoid(z)
    else:
        raise ValueError(f"unknown activation code {kind}")


def activation_derivative(kind, slope, z, a, out):
    """out = act'(z), given z and a = act(z).

    identity: 1    relu: [z > 0]    leaky_relu: 1 if z > 0 else slope
    silu: s (1 + z (1 - s)) with s = sigmoid(z)
    tanh: 1 - a^2                   sigmoid: a (1 - a)
    At the kink z = 0 of relu / leaky_relu the left derivative is used (as torch does).
    """
    if kind == IDENTITY:
        out[...] = 1
    elif kind == RELU:
        out[...] = z > 0
    elif kind == LEAKY_RELU:
        out[...] = np.where(z > 0, 1.0, slope)
    elif kind == SILU:
        s = _sigmoid(z)
        out[...] = s * (1 + z * (1 - s))
    elif kind == TANH:
        out[...] = 1 - a * a
    elif kind == SIGMOID:
        out[...] = a * (1 - a)
    else:
        raise ValueError(f"unknown activation code {kind}")


def activation_second_derivative(kind, slope, z, a, out):
    """out = act''(z), given z and a = act(z).

    identity, relu, leaky_relu: 0 (piecewise linear)
    silu: s (1 - s) (2 + z (1 - 2 s)) with s = sigmoid(z)
    tanh: -2 a (1 - a^2)            sigmoid: a (1 - a) (1 - 2 a)
    """
    if kind in (IDENTITY, RELU, LEAKY_RELU):
        out[...] = 0
    elif kind == SILU:
        s = _sigmoid(z)
        out[...] = s * (1 - s) * (2 + z * (1 - 2 * s))
    elif kind == TANH:
        out[...] = -2 * a * (1 - a * a)
    elif kind == SIGMOID:
        out[...] = a * (1 - a) * (1 - 2 * a)
    else:
        raise ValueError(f"unknown activation code {kind}")


def activation_backward(kind, slope, z, a, grad_a, grad_z):
    """grad_z = grad_a * act'(z)   (the chain rule through an elementwise map)."""
    activation_derivative(kind, slope, z, a, grad_z)
    grad_z *= grad_a


# --------------------------------------------------------------------------- dense layer


def linear_forward(x, W, b, kind, slope, z, a):
    """Dense layer with its activation.

    z = x W^T + b          (n, out)
    a = act(z)             (n, out)
    """
    np.dot(x, W.T, out=z)
    z += b
    activation_forward(kind, slope, z, a)


def linear_backward(x, W, z, a, grad_a, kind, slope, grad_z, grad_W, grad_b, grad_x,
                    accumulate, need_grad_x):
    """Backward of :func:`linear_forward`.

    grad_z = grad_a * act'(z)
    grad_W = grad_z^T x        (out, in)   (added to grad_W when ``accumulate``)
    grad_b = sum_rows grad_z   (out,)      (added to grad_b when ``accumulate``)
    grad_x = grad_z W          (n, in)     (only when ``need_grad_x``)
    """
    activation_backward(kind, slope, z, a, grad_a, grad_z)
    if accumulate:
        grad_W += grad_z.T @ x
        grad_b += grad_z.sum(axis=0)
    else:
        np.dot(grad_z.T, x, out=grad_W)
        grad_b[...] = grad_z.sum(axis=0)
    if need_grad_x:
        np.dot(grad_z, W, out=grad_x)


def linear_backward_input(W, z, a, grad_a, kind, slope, grad_z, grad_x):
    """Backward of :func:`linear_forward` to the input alone, the parameters held fixed.

    grad_z = grad_a * act'(z)
    grad_x = grad_z W          (n, in)
    What a network needs when it only passes a gradient through (a GAN's discriminator
    during the generator's step): a third less work than :func:`linear_backward`.
    """
    activation_backward(kind, slope, z, a, grad_a, grad_z)
    np.dot(grad_z, W, out=grad_x)


def linear_jvp(x, dx, W, b, kind, slope, z, a, dz, da):
    """Forward pass with a forward-mode tangent (a Jacobian-vector product).

    z  = x W^T + b,   a  = act(z)
    dz = dx W^T,      da = act'(z) * dz       (the bias does not move with x)
    """
    linear_forward(x, W, b, kind, slope, z, a)
    np.dot(dx, W.T, out=dz)
    activation_derivative(kind, slope, z, a, da)
    da *= dz


def linear_jvp_backward(x, dx, W, z, a, dz, grad_a, grad_da, kind, slope,
                        grad_z, grad_dz, grad_W, grad_b, grad_x, grad_dx,
                        accumulate, need_grad_x):
    """Backward of :func:`linear_jvp`: cotangents of (a, da) -> cotangents of (W, b, x, dx).

    With d1 = act'(z) and d2 = act''(z):
    grad_dz = grad_da * d1
    grad_z  = grad_a * d1 + grad_da * d2 * dz
    grad_W  = grad_z^T x + grad_dz^T dx,   grad_b = sum_rows grad_z
    grad_x  = grad_z W,                    grad_dx = grad_dz W
    This is what a gradient penalty on ||dG/dz|| needs: backprop through both the primal
    and the tangent path of the network.
    """
    d1 = np.empty_like(z)
    activation_derivative(kind, slope, z, a, d1)
    activation_second_derivative(kind, slope, z, a, grad_z)
    grad_z *= grad_da * dz
    grad_z += grad_a * d1
    np.multiply(grad_da, d1, out=grad_dz)
    step_W = grad_z.T @ x + grad_dz.T @ dx
    if accumulate:
        grad_W += step_W
        grad_b += grad_z.sum(axis=0)
    else:
        grad_W[...] = step_W
        grad_b[...] = grad_z.sum(axis=0)
    if need_grad_x:
        np.dot(grad_z, W, out=grad_x)
        np.dot(grad_dz, W, out=grad_dx)


# --------------------------------------------------------------------------- losses


def bce_with_logits(logits, target, grad):
    """Binary cross-entropy of sigmoid(logits) against targets in [0, 1], averaged.

    l_i = max(s_i, 0) - s_i t_i + log(1 + exp(-|s_i|))      (stable for any s_i)
    L = mean_i l_i,    dL/ds_i = (sigmoid(s_i) - t_i) / N
    """
    n = logits.size
    loss = np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))
    grad[...] = (_sigmoid(logits) - target) / n
    return float(loss.sum(dtype=np.float64) / n)


def bce(probs, target, grad):
    """Binary cross-entropy of probabilities p in [0, 1] against targets, averaged.

    l_i = -(t_i log p_i + (1 - t_i) log(1 - p_i)), each log clamped at -100 as torch.nn.BCELoss
    dL/dp_i = (p_i - t_i) / max(p_i (1 - p_i), 1e-12) / N
    """
    n = probs.size
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(probs), -100)
        log_1mp = np.maximum(np.log1p(-probs), -100)
    loss = -(target * log_p + (1 - target) * log_1mp)
    grad[...] = (probs - target) / np.maximum(probs * (1 - probs), 1e-12) / n
    return float(loss.sum(dtype=np.float64) / n)


def hinge(scores, target, grad):
    """Hinge loss with labels t_i in {-1, +1}, averaged.

    L = mean_i max(0, 1 - t_i s_i),    dL/ds_i = -t_i [1 - t_i s_i > 0] / N
    """
    n = scores.size
    margin = 1 - target * scores
    grad[...] = np.where(margin > 0, -target, 0) / n
    return float(np.maximum(margin, 0).sum(dtype=np.float64) / n)


def squared_error(pred, target, grad):
    """Mean squared error. L = mean_i (p_i - t_i)^2,    dL/dp_i = 2 (p_i - t_i) / N"""
    n = pred.size
    diff = pred - target
    grad[...] = 2 * diff / n
    return float((diff.astype(np.float64) ** 2).sum() / n)


# --------------------------------------------------------------------------- optimizer


def adam_step(param, grad, m, v, step, lr, beta1, beta2, eps):
    """One Adam update of a flat parameter buffer, with torch.optim.Adam's semantics.

    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) g^2
    param <- param - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    ``step`` is t, counted from 1; eps is added after the square root.
    """
    m *= beta1
    m += (1 - beta1) * grad
    v *= beta2
    v += (1 - beta2) * grad * grad
    bias1 = 1 - beta1 ** step
    bias2 = 1 - beta2 ** step
    param -= (lr / bias1) * m / (np.sqrt(v) / np.sqrt(bias2) + eps)


# --------------------------------------------------------------------------- spectral norm

SPECTRAL_NORM_EPS = 1e-12


def spectral_norm_forward(W, u, v, n_power_iterations, W_sn):
    """Spectral normalization as torch.nn.utils.spectral_norm computes it.

    Training (n_power_iterations >= 1), with u (out,) and v (in,) kept between calls:
        v <- W^T u / max(||W^T u||, eps),   u <- W v / max(||W v||, eps)
    Evaluation (n_power_iterations = 0) leaves u and v as they are. Then
        sigma = u . W v      (an estimate of the largest singular value of W)
        W_sn  = W / sigma
    Returns sigma.
    """
    for _ in range(n_power_iterations):
        wu = W.T @ u
        v[...] = wu / max(np.linalg.norm(wu), SPECTRAL_NORM_EPS)
        wv = W @ v
        u[...] = wv / max(np.linalg.norm(wv), SPECTRAL_NORM_EPS)
    sigma = float(u @ (W @ v))
    np.divide(W, sigma, out=W_sn)
    return sigma


def spectral_norm_backward(W, u, v, sigma, grad_W_sn, grad_W, accumulate):
    """Backward of W_sn = W / sigma(W) with sigma = u^T W v, u and v held constant.

    d sigma / dW = u v^T, so
    grad_W = grad_W_sn / sigma - (<grad_W_sn, W> / sigma^2) u v^T
    """
    coupling = float(np.sum(grad_W_sn * W, dtype=np.float64)) / sigma ** 2
    step_W = grad_W_sn / sigma - coupling * np.outer(u, v)
    if accumulate:
        grad_W += step_W
    else:
        grad_W[...] = step_W


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


def langevin_sample_keys(seed, n):
    """key_i = mix(mix(seed + G) + (i + 1) G) for samples i = 0 .. n-1 (uint64)."""
    golden = np.uint64(LANGEVIN_GOLDEN)
    base = _mix64(np.array([seed], np.uint64) + golden)
    return _mix64(base + (np.arange(n, dtype=np.uint64) + np.uint64(1)) * golden)


def langevin_noise(keys, step):
    """The standard normals z(seed, i, step) of the samples with these keys (float64)."""
    bits = _mix64(keys + np.uint64((step // 2 + 1) * LANGEVIN_GOLDEN % 2 ** 64))
    u1 = ((bits >> np.uint64(32)).astype(np.float64) + 0.5) * 2.0 ** -32
    u2 = ((bits & np.uint64(0xFFFFFFFF)).astype(np.float64) + 0.5) * 2.0 ** -32
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = 2.0 * np.pi * u2
    return radius * (np.cos(angle) if step % 2 == 0 else np.sin(angle))


def annealed_langevin(x, W1, b1, W2a, beff2, W3a, beff3, alphas, n_steps_per_level, seed,
                      first_step, slope1, slope2):
    """Annealed Langevin dynamics (Song & Ermon, 2019) with the score network of a scalar x.

    At noise level l the score network is the chain
        s_l(x) = W3a leaky_slope2(W2a leaky_slope1(W1 x + b1) + beff2[l]) + beff3[l]
    with W1 (H1, 1), b1 (H1,), W2a (H2, H1), beff2 (L, H2), W3a (1, H2), beff3 (L,): the
    noise-level embedding is folded into the biases beff2, beff3. For each level l = 0 .. L-1
    in turn, ``n_steps_per_level`` times,
        x <- x + (alpha_l / 2) s_l(x) + sqrt(alpha_l) z
    updates ``x`` (n,) in place. Step t of the run (t = first_step, first_step + 1, ...) gives
    sample i the normal z(seed, i, t) described above, so a run split into several calls
    (one per level, say, each with its ``first_step``) draws what a single call would.
    """
    keys = langevin_sample_keys(seed, x.size)
    w1, w3 = W1[:, 0], W3a[0]
    step = first_step
    for level in range(alphas.size):
        half_alpha = x.dtype.type(alphas[level] / 2)
        root_alpha = x.dtype.type(np.sqrt(alphas[level]))
        for _ in range(n_steps_per_level):
            z1 = x[:, None] * w1 + b1
            h1 = np.where(z1 > 0, z1, slope1 * z1).astype(x.dtype)
            z2 = h1 @ W2a.T + beff2[level]
            h2 = np.where(z2 > 0, z2, slope2 * z2).astype(x.dtype)
            score = h2 @ w3 + beff3[level]
            noise = langevin_noise(keys, step).astype(x.dtype)
            x += half_alpha * score + root_alpha * noise
            step += 1
