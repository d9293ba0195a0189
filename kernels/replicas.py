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
and are the backend's own. The allocation helpers give the backend's arrays: host numpy
arrays here, device arrays in :mod:`cuda`.
"""

import numpy as np

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
