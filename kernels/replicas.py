"""The replica form of a backend that computes one replica at a time (``numpy`` and ``cpu``).

npgen's networks are written once, over arrays with a leading replica axis R (activations
(R, n, features), weights (R, out, in), biases (R, out)): the ``cuda`` backend computes R runs
of one architecture in one launch, and every other backend gets the same signatures here, by
calling its kernel on replica r's slices for r = 0 .. R-1 (on the CPU R is 1: one run).

The rule that turns a kernel of :mod:`cpu` into its replica form, argument for argument:

* every array argument gains the leading replica axis, and replica r's call receives
  ``array[r]`` (so an (R,) array of per-replica values becomes replica r's scalar);
* scalars (activation codes, slopes, flags) and None are passed to every call as they are;
* a kernel that returns a scalar (a loss, spectral norm's sigma) takes one more argument in
  its replica form, an (R,) float64 array that receives replica r's value at index r.

Kernels outside ``REPLICATED`` (Adam's elementwise step on a flat buffer) take no replica axis
and are the backend's own. The operations over a network's layers (``LAYER_KERNELS``) are the
replica form of their one-layer kernel, called layer after layer, and so are the score
network's noise-level path's (``score_embedding_forward``, ``score_embedding_backward``). The allocation helpers give the backend's arrays: host numpy
arrays here, device arrays in :mod:`cuda`.
"""

import numpy as np

from . import IDENTITY, LEAKY_RELU

#: Kernels a network's or a model's step calls in replica form: those whose every array is
#: per replica (the others, Adam's elementwise step on a flat buffer and kernels that read a
#: table shared by the replicas, run as the backend has them).
REPLICATED = ("linear_forward", "linear_backward", "linear_backward_input", "linear_jvp",
              "linear_jvp_backward", "put_columns", "take_columns", "gather_rows",
              "spectral_norm_forward", "spectral_norm_backward",
              "bce_with_logits", "hinge", "hinge_generator", "gradient_penalty",
              "vae_reparameterize", "vae_residual", "vae_code_gradient",
              "score_matching_noisy", "score_matching_loss")

#: The replicated kernels that return a scalar: their replica form writes it into a last (R,)
#: argument.
RETURNS_SCALAR = ("spectral_norm_forward", "bce_with_logits", "hinge", "hinge_generator",
                  "gradient_penalty", "vae_reparameterize", "vae_residual",
                  "score_matching_loss")


def _over_replicas(kernel, returns_scalar):
    """The replica form of ``kernel`` (module doc): one call per replica, on its slices."""
    def replicated(*args):
        if returns_scalar:
            *args, out = args
        replicas = next(a for a in args if isinstance(a, np.ndarray)).shape[0]
        for r in range(replicas):
            value = kernel(*[a[r] if isinstance(a, np.ndarray) else a for a in args])
            if returns_scalar:
                out[r] = value
    replicated.__name__ = kernel.__name__
    replicated.__doc__ = f"Replica form of {kernel.__module__}.{kernel.__name__} (see npgen.kernels.replicas)."
    return replicated


class ReplicaForm:
    """The kernels of a one-replica backend ``module`` in replica form (module doc).

    Attributes are the module's kernels: those in ``REPLICATED`` looped over the replica axis,
    the others as the module has them.
    """

    #: Host arrays: the CPU backends compute where the data already is.
    on_device = False

    def __init__(self, module):
        self.module = module
        for name in REPLICATED:
            setattr(self, name, _over_replicas(getattr(module, name), name in RETURNS_SCALAR))

    def __getattr__(self, name):
        return getattr(self.module, name)

    def adam_step_groups(self, params, grads, ms, vs, step, lr, beta1, beta2, eps):
        """adam_step of every group g on (params[g], grads[g], ms[g], vs[g]), one after the other
        (npgen.kernels.LAYER_KERNELS)."""
        for group in zip(params, grads, ms, vs):
            self.adam_step(*group, step, lr, beta1, beta2, eps)

    def spectral_norm_forward_layers(self, Ws, us, vs, n_power_iterations, W_sns, sigmas):
        """spectral_norm_forward of every layer k on (Ws[k], us[k], vs[k]) into W_sns[k] and
        sigmas[k], layer after layer (npgen.kernels.LAYER_KERNELS)."""
        for layer in zip(Ws, us, vs, W_sns, sigmas):
            self.spectral_norm_forward(*layer[:3], n_power_iterations, *layer[3:])

    def spectral_norm_backward_layers(self, Ws, us, vs, sigmas, grad_W_sns, grad_Ws, accumulate):
        """spectral_norm_backward of every layer k into grad_Ws[k], layer after layer
        (npgen.kernels.LAYER_KERNELS)."""
        for layer in zip(Ws, us, vs, sigmas, grad_W_sns, grad_Ws):
            self.spectral_norm_backward(*layer, accumulate)

    def score_embedding_forward(self, features, params, slope, path, beff2, beff3):
        """numpy_ref.score_embedding_forward into ``path`` (z1, h, z2, e, leaky_e) and beff2,
        beff3, layer after layer (linear_forward; leaky_e as a second pass of the layer that
        gives e, at slope^2)."""
        V1, c1, V2, c2, W2e, b2, W3e, b3 = params
        z1, h, z2, e, leaky_e = path
        self.linear_forward(features, V1, c1, LEAKY_RELU, slope, z1, h)
        for a, branch_slope in ((e, slope), (leaky_e, slope * slope)):
            self.linear_forward(h, V2, c2, LEAKY_RELU, branch_slope, z2, a)
        self.linear_forward(e, W2e, b2, IDENTITY, 0.0, beff2, beff2)
        self.linear_forward(leaky_e, W3e, b3, IDENTITY, 0.0, beff3, beff3)

    def score_embedding_backward(self, features, params, slope, path, grad_beff2, grad_beff3,
                                 work, grads):
        """numpy_ref.score_embedding_backward into ``grads`` (the gradients of ``params``),
        ``work`` (grad_z1, grad_h, grad_z2, grad_e, grad_leaky_e) its scratch, layer after
        layer: the two bias layers, then the embedding's two layers once for each branch, e
        and leaky_e, the second adding to the first."""
        V1, _, V2, _, W2e, _, W3e, _ = params
        z1, h, z2, e, leaky_e = path
        grad_z1, grad_h, grad_z2, grad_e, grad_leaky_e = work
        grad_V1, grad_c1, grad_V2, grad_c2, grad_W2e, grad_b2, grad_W3e, grad_b3 = grads
        for x, W, grad, grad_W, grad_b, grad_x in (
                (e, W2e, grad_beff2, grad_W2e, grad_b2, grad_e),
                (leaky_e, W3e, grad_beff3, grad_W3e, grad_b3, grad_leaky_e)):
            self.linear_backward(x, W, grad, grad, grad, IDENTITY, 0.0, grad, grad_W, grad_b,
                                 grad_x, False, True)
        branches = ((e, grad_e, slope), (leaky_e, grad_leaky_e, slope * slope))
        for branch, (a, grad_a, branch_slope) in enumerate(branches):
            self.linear_backward(h, V2, z2, a, grad_a, LEAKY_RELU, branch_slope, grad_z2, grad_V2,
                                 grad_c2, grad_h, branch > 0, True)
            self.linear_backward(features, V1, z1, h, grad_h, LEAKY_RELU, slope, grad_z1, grad_V1,
                                 grad_c1, None, branch > 0, False)

    @staticmethod
    def zeros(shape, dtype):
        """A zero array of the backend (a host array)."""
        return np.zeros(shape, dtype)

    @staticmethod
    def to_device(array):
        """The array as the backend holds it (a host array: itself, made contiguous)."""
        return np.ascontiguousarray(array)

    @staticmethod
    def to_host(array):
        """A host copy of a backend array."""
        return np.array(array)
