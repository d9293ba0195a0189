"""The ``numpy`` backend: :mod:`numpy_ref`'s functions in the destination-passing form of the
fast backends.

npgen's models call a backend with the arrays they own: each kernel below calls the textbook
function, then copies its results into the caller's arrays (``out = result``, or ``out +=
result`` where ``accumulate`` is true: a network used twice in one loss, as the gradient
penalty does). Every output must have the shape of the result it receives; a mismatch raises
ValueError. The signatures are those of :mod:`cpu`, argument for argument:

* the activation ``a`` is accepted and not read (the textbook differentiates from ``z``);
* ``grad_z`` and ``grad_dz``, the numba kernels' buffers for dL/dz and dL/d(dz), are written
  here too, so that the two backends' outputs compare one for one;
* ``grad_x`` (and ``grad_dx``) is written only when ``need_grad_x`` is true, and may be None
  otherwise;
* losses return the loss as a Python float and write dL/dpred into ``grad`` (the KL term of
  ``vae_reparameterize`` and the penalty of ``gradient_penalty`` too);
* ``put_columns`` writes into the column block of ``h`` alone, ``gather_rows`` into the rows
  ``offset:offset + count`` of ``out`` alone;
* ``adam_step``, ``spectral_norm_forward`` (u, v), ``annealed_langevin`` (x, and dx0 and
  grad_sq where given) and ``annealed_langevin_mlp`` (x) update their arrays in place.
"""

from . import KERNELS, numpy_ref

__all__ = list(KERNELS)


def _store(out, result, accumulate=False):
    """out = result, or out += result when accumulating, into the caller's array."""
    if out.shape != result.shape:
        raise ValueError(f"an output of shape {out.shape} cannot hold a result of shape "
                         f"{result.shape}")
    if accumulate:
        out += result
    else:
        out[...] = result


def _returned(results, *outs):
    """The first of a textbook function's results (its loss), the others stored into outs."""
    first, *rest = results
    for out, result in zip(outs, rest):
        _store(out, result)
    return first


def linear_forward(x, W, b, kind, slope, z, a):
    """z = x W^T + b, a = act(z) (:func:`numpy_ref.dense_forward`)."""
    a_new, z_new = numpy_ref.dense_forward(x, W, b, kind, slope)
    _store(z, z_new)
    _store(a, a_new)


def linear_backward(x, W, z, a, grad_a, kind, slope, grad_z, grad_W, grad_b, grad_x,
                    accumulate, need_grad_x):
    """grad_z = grad_a act'(z), grad_W (+)= grad_z^T x, grad_b (+)= sum_rows grad_z,
    grad_x = grad_z W when need_grad_x (:func:`numpy_ref.dense_backward`)."""
    grad_x_new, grad_W_new, grad_b_new = numpy_ref.dense_backward(x, W, z, grad_a, kind, slope)
    _store(grad_z, numpy_ref.activation_backward(kind, slope, z, grad_a))
    _store(grad_W, grad_W_new, accumulate)
    _store(grad_b, grad_b_new, accumulate)
    if need_grad_x:
        _store(grad_x, grad_x_new)


def linear_backward_input(W, z, a, grad_a, kind, slope, grad_z, grad_x):
    """grad_z = grad_a act'(z), grad_x = grad_z W (:func:`numpy_ref.dense_backward_input`)."""
    _store(grad_z, numpy_ref.activation_backward(kind, slope, z, grad_a))
    _store(grad_x, numpy_ref.dense_backward_input(W, z, grad_a, kind, slope))


def linear_jvp(x, dx, W, b, kind, slope, z, a, dz, da):
    """z = x W^T + b, a = act(z), dz = dx W^T, da = act'(z) dz (:func:`numpy_ref.dense_jvp`)."""
    a_new, da_new, z_new, dz_new = numpy_ref.dense_jvp(x, dx, W, b, kind, slope)
    for out, result in ((z, z_new), (a, a_new), (dz, dz_new), (da, da_new)):
        _store(out, result)


def linear_jvp_backward(x, dx, W, z, a, dz, grad_a, grad_da, kind, slope,
                        grad_z, grad_dz, grad_W, grad_b, grad_x, grad_dx,
                        accumulate, need_grad_x):
    """Cotangents of (a, da) to those of (W, b, x, dx) (:func:`numpy_ref.dense_jvp_backward`):
    grad_W and grad_b (+)=, grad_x and grad_dx when need_grad_x."""
    grad_x_new, grad_dx_new, grad_W_new, grad_b_new = numpy_ref.dense_jvp_backward(
        x, dx, W, z, dz, grad_a, grad_da, kind, slope)
    grad_z_new, grad_dz_new = numpy_ref.activation_jvp_backward(kind, slope, z, dz, grad_a,
                                                                grad_da)
    _store(grad_z, grad_z_new)
    _store(grad_dz, grad_dz_new)
    _store(grad_W, grad_W_new, accumulate)
    _store(grad_b, grad_b_new, accumulate)
    if need_grad_x:
        _store(grad_x, grad_x_new)
        _store(grad_dx, grad_dx_new)


def put_columns(node, h, start, width, accumulate):
    """node into the column block h[:, start:start + width], in place: its leading columns
    (+)= node, the rest zeroed unless accumulating (:func:`numpy_ref.put_columns`)."""
    _store(h, numpy_ref.put_columns(node, h, start, width, accumulate))


def take_columns(grad_h, start, grad_node, accumulate):
    """grad_node (+)= grad_h[:, start:start + w], w = grad_node's width
    (:func:`numpy_ref.take_columns`)."""
    _store(grad_node, numpy_ref.take_columns(grad_h, start, grad_node.shape[1]), accumulate)


def gather_rows(source, index, start, out, offset, count):
    """out[offset:offset + count] = source[index[start:start + count]]
    (:func:`numpy_ref.gather_rows`)."""
    _store(out[offset:offset + count], numpy_ref.gather_rows(source, index[start:start + count]))


def bce_with_logits(logits, target, grad):
    """Mean binary cross-entropy of sigmoid(logits); grad = dL/dlogits (returns the loss)."""
    return _returned(numpy_ref.bce_with_logits(logits, target), grad)


def hinge(scores, target, grad):
    """Mean hinge loss for labels in {-1, +1}; grad = dL/dscores (returns the loss)."""
    return _returned(numpy_ref.hinge(scores, target), grad)


def softmax_cross_entropy(logits, target, grad):
    """Mean over rows of -sum_j t_ij log softmax(s_i)_j; grad = dL/dlogits (returns the loss)
    (:func:`numpy_ref.softmax_cross_entropy`)."""
    return _returned(numpy_ref.softmax_cross_entropy(logits, target), grad)


def hinge_generator(scores, grad):
    """The hinge GAN's generator loss -mean(scores); grad = -1 / N (returns the loss)
    (:func:`numpy_ref.hinge_generator`)."""
    return _returned(numpy_ref.hinge_generator(scores), grad)


def gradient_penalty(tangent, target, scale, grad_tangent):
    """The generator's gradient penalty towards Lip ``target``; writes dP/dtangent, returns P
    (:func:`numpy_ref.gradient_penalty`)."""
    return _returned(numpy_ref.gradient_penalty(tangent, target, scale), grad_tangent)


def vae_reparameterize(code, eps, kl_power, z, std):
    """z = mu + exp(lv / 2) eps and std = exp(lv / 2) from code = [mu, lv]; returns the KL
    term (:func:`numpy_ref.vae_reparameterize`)."""
    return _returned(numpy_ref.vae_reparameterize(code, eps, kl_power), z, std)


def vae_residual(reconstruction, x, variance, residual):
    """residual = (g(z) - x) / c; returns sum |g(z) - x|^2 / (2c)
    (:func:`numpy_ref.vae_residual`)."""
    return _returned(numpy_ref.vae_residual(reconstruction, x, variance), residual)


def vae_code_gradient(code, eps, std, grad_z, kl_power, grad_code):
    """grad_code = dL/d[mu, lv] from dL/dz (:func:`numpy_ref.vae_code_gradient`)."""
    _store(grad_code, numpy_ref.vae_code_gradient(code, eps, std, grad_z, kl_power))


def score_matching_noisy(x, eps, sigma, noisy):
    """noisy = x + sigma eps (:func:`numpy_ref.score_matching_noisy`)."""
    _store(noisy, numpy_ref.score_matching_noisy(x, eps, sigma))


def score_matching_loss(score, eps, sigma, weight_power, grad):
    """grad = 2 w (s + eps / sigma); returns w sum (s + eps / sigma)^2, w = sigma^k
    (:func:`numpy_ref.score_matching_loss`)."""
    return _returned(numpy_ref.score_matching_loss(score, eps, sigma, weight_power), grad)


def score_matching_noisy_levels(x, eps, levels, sigmas, noisy):
    """noisy_i = x_i + sigma_{l_i} eps_i (:func:`numpy_ref.score_matching_noisy_levels`)."""
    _store(noisy, numpy_ref.score_matching_noisy_levels(x, eps, levels, sigmas))


def score_matching_loss_levels(raw, noisy, eps, levels, raw_scales, skips, center, grad):
    """grad = dL/draw; returns the loss of a level per row
    (:func:`numpy_ref.score_matching_loss_levels`)."""
    return _returned(numpy_ref.score_matching_loss_levels(raw, noisy, eps, levels, raw_scales,
                                                          skips, center), grad)


def kl_dual_loss(phi_p, phi_q, grad_p, grad_q):
    """Donsker-Varadhan loss of the KL (:func:`numpy_ref.kl_dual_loss`); writes both gradients."""
    loss, gp, gq = numpy_ref.kl_dual_loss(phi_p, phi_q)
    _store(grad_p, gp)
    _store(grad_q, gq)
    return loss


def alpha_dual_loss(phi_p, phi_q, nu, alpha, grad_p, grad_q, grad_nu):
    """Dual loss of the alpha-divergence at the shift nu (:func:`numpy_ref.alpha_dual_loss`);
    writes the gradients, d loss / d nu into grad_nu[0]."""
    loss, gp, gq, gnu = numpy_ref.alpha_dual_loss(phi_p, phi_q, nu, alpha)
    _store(grad_p, gp)
    _store(grad_q, gq)
    grad_nu[0] = gnu
    return loss


def particle_step(y, velocity, dt):
    """y <- y - dt velocity in place; returns the kinetic energy (:func:`numpy_ref.particle_step`)."""
    y_new, kinetic = numpy_ref.particle_step(y, velocity, dt)
    _store(y, y_new)
    return kinetic


def adam_step(param, grad, m, v, step, lr, beta1, beta2, eps):
    """One Adam update of param, m and v in place (:func:`numpy_ref.adam_step`)."""
    for out, result in zip((param, m, v),
                           numpy_ref.adam_step(param, grad, m, v, step, lr, beta1, beta2, eps)):
        _store(out, result)


def spectral_norm_forward(W, u, v, n_power_iterations, W_sn):
    """W_sn = W / sigma, u and v updated in place by the power iterations; returns sigma
    (:func:`numpy_ref.spectral_norm_forward`)."""
    W_sn_new, sigma, u_new, v_new = numpy_ref.spectral_norm_forward(W, u, v, n_power_iterations)
    for out, result in ((W_sn, W_sn_new), (u, u_new), (v, v_new)):
        _store(out, result)
    return sigma


def spectral_norm_backward(W, u, v, sigma, grad_W_sn, grad_W, accumulate):
    """grad_W (+)= the gradient through W_sn = W / sigma
    (:func:`numpy_ref.spectral_norm_backward`)."""
    _store(grad_W, numpy_ref.spectral_norm_backward(W, u, v, sigma, grad_W_sn), accumulate)


def annealed_langevin(x, W1, b1, W2a, beff2, W3a, beff3, alphas, n_steps_per_level, seed,
                      first_step, slope1, slope2, dx0=None, grad_sq=None, rows=None):
    """The samples x moved in place by :func:`numpy_ref.annealed_langevin`; ``dx0`` and
    ``grad_sq``, where given, carry the sampler's gradient on in place (d x / d x_0 and its
    squared norm over all the Gaussian inputs); ``rows``, where given, are the chains' sample
    indices (:func:`numpy_ref.langevin_rows`)."""
    args = (x, W1, b1, W2a, beff2, W3a, beff3, alphas, n_steps_per_level, seed, first_step,
            slope1, slope2)
    if dx0 is None and grad_sq is None:
        _store(x, numpy_ref.annealed_langevin(*args, rows=rows))
        return
    results = numpy_ref.annealed_langevin(*args, dx0, grad_sq, rows)
    for out, result in zip((x, dx0, grad_sq), results):
        if out is not None:
            _store(out, result)


def annealed_langevin_mlp(x, W1, beff1, W2, beff2, W3, b3, out_scales, skip_scales, center,
                          alphas, n_steps_per_level, seed, first_step, kind, slope):
    """The samples x (n, d) moved in place by :func:`numpy_ref.annealed_langevin_mlp`."""
    _store(x, numpy_ref.annealed_langevin_mlp(x, W1, beff1, W2, beff2, W3, b3, out_scales,
                                              skip_scales, center, alphas, n_steps_per_level,
                                              seed, first_step, kind, slope))
