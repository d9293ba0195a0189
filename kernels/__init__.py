"""Array kernels behind npgen: the math in one textbook module, and one module per backend.

``numpy_ref``
    Plain numpy, written to be read: functions that take arrays and return arrays, the math in
    their docstrings. It is the teaching text and the test oracle.
``numpy_backend`` (backend ``"numpy"``)
    ``numpy_ref`` in the destination-passing form below, by calling it and copying.
``cpu`` (backend ``"cpu"``)
    numba ``@njit`` kernels of the same math: fused loops, BLAS for the products, no
    allocation in the training hot loop.
``cuda`` (replica backend ``"cuda"``, :func:`get_replica_backend`)
    numba-cuda kernels of the same math batched over a leading replica axis, for R runs
    trained in lockstep on a GPU (npgen.models.fit_many); it needs ``npgen[cuda]``.
``replicas``
    The rule that gives the one-replica backends the cuda backend's signatures (a leading
    replica axis R on every array), so that npgen's networks are written once over that axis
    and run on every backend (:func:`replica_form`).

A backend provides the kernels named in ``KERNELS`` (its ``__all__``). They write into
output arrays that the caller allocates once, so the same signatures can be implemented on
device arrays by a CUDA backend. Arrays are C-contiguous, 2-D ``(batch, features)`` for
activations and ``(out, in)`` for weights (the layout of ``torch.nn.Linear``), 1-D for biases
and for the flat parameter buffers Adam updates. Scalar losses return a Python float and write
the gradient of that loss (a mean over the batch, or a sum where the model's loss is one: the
VAE's and the SGM's).

A kernel has one signature on every backend, up to the replica axis: the ``cuda`` form takes
the ``cpu`` form's arrays with a leading axis R, a scalar that differs between replicas (a
seed, the penalty's target, the SGM's noise level) as an (R,) array, and where the ``cpu`` form
returns a float (a loss, a KL term, a penalty, sigma) it writes one float64 per replica into a
last (R,) argument: the rule by which :mod:`replicas` gives the one-replica backends the
cuda form. ``cpu.bce_with_logits(logits, target, grad) -> float`` is
``cuda.bce_with_logits(logits, target, grad, loss)``.

This package never imports ``npgen``: data flows one way, from models to kernels.
"""

import importlib
import os
import sys

try:  # POSIX file locks; without them (Windows) a process compiles its CPU kernels itself
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms CI runs
    fcntl = None

#: Activation codes shared by every backend (numba kernels take an int, not a string).
IDENTITY, RELU, LEAKY_RELU, SILU, TANH, SIGMOID = range(6)

ACTIVATIONS = {
    "identity": IDENTITY,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "silu": SILU,
    "tanh": TANH,
    "sigmoid": SIGMOID,
}

#: The kernels every backend module provides, in the destination-passing form (its ``__all__``).
KERNELS = (
    "linear_forward", "linear_backward", "linear_backward_input", "linear_jvp",
    "linear_jvp_backward",
    "put_columns", "take_columns", "gather_rows",
    "bce_with_logits", "hinge", "softmax_cross_entropy",
    "hinge_generator", "gradient_penalty", "vae_reparameterize", "vae_residual",
    "vae_code_gradient", "score_matching_noisy", "score_matching_loss",
    "score_matching_noisy_levels", "score_matching_loss_levels",
    "adam_step",
    "spectral_norm_forward", "spectral_norm_backward",
    "annealed_langevin", "annealed_langevin_mlp",
    "kl_dual_loss", "alpha_dual_loss", "particle_step",
)

#: Operations over several layers of a network at once, in replica form (every array with the
#: replica axis first; tuples of them where the layers' shapes differ): spectral norm's
#: forward and backward of every layer (each layer what the kernel without ``_layers`` does),
#: the score network's noise-level path (numpy_ref.score_embedding_forward and _backward), and
#: Adam on several networks' flat buffers (tuples of them) at one step count.
#: The ``cuda`` module has each as one launch; :mod:`replicas` gives the one-replica backends
#: them as their layers' kernels called one after the other.
LAYER_KERNELS = ("spectral_norm_forward_layers", "spectral_norm_backward_layers",
                 "score_embedding_forward", "score_embedding_backward", "adam_step_groups")

#: Backend name -> module name inside this package.
BACKENDS = {"numpy": "numpy_backend", "cpu": "cpu"}

#: Backends that train R runs at once, on device arrays with a leading replica axis (backend
#: name -> module name): imported on first use, since they need optional libraries.
REPLICA_BACKENDS = {"cuda": "cuda"}

#: Environment variable that picks the default backend.
BACKEND_ENV = "NPGEN_BACKEND"
DEFAULT_BACKEND = "cpu"


def activation_code(name):
    """Return the integer code of activation ``name`` (one of ``ACTIVATIONS``)."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}"
        ) from None


def backend_name(name=None):
    """Resolve a backend name: the argument, else ``$NPGEN_BACKEND``, else ``'cpu'``."""
    if name is None:
        name = os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND
    if name in REPLICA_BACKENDS:
        raise ValueError(f"backend {name!r} trains batched replicas (npgen.models.fit_many), not"
                         f" one network; a network's backend is one of {sorted(BACKENDS)}")
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {name!r}")
    return name


#: The path of a lock file that a process compiling the CPU kernels into numba's on-disk cache
#: holds while it compiles (``npgen reproduce`` starts one before its runs, see
#: :func:`npgen.study.reproduce`). A process that imports :mod:`cpu` first waits for it, then
#: loads the kernels from the cache. Code that numba compiled in the process that runs it and
#: the same code loaded from its cache can round float32 results differently (the SGM sampler's
#: gradient differed in its last bits), so the runs of a reproduction all run the cached code,
#: whether the cache was cold or warm when it started.
CACHE_LOCK_ENV = "NPGEN_KERNEL_CACHE_LOCK"


def wait_for_kernel_cache():
    """Block while the process named by $NPGEN_KERNEL_CACHE_LOCK compiles the CPU kernels
    (a shared lock on its file waits for its exclusive one); return at once without it, once
    :mod:`cpu` is loaded, or where files cannot be locked."""
    path = os.environ.get(CACHE_LOCK_ENV)
    if not path or fcntl is None or f"{__name__}.cpu" in sys.modules:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # the reproduction that made it has ended: nothing to wait for
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)


def get_backend(name=None):
    """Return the kernel module for backend ``name`` (see :func:`backend_name`); the ``cpu``
    module after :func:`wait_for_kernel_cache`."""
    module = BACKENDS[backend_name(name)]
    if module == "cpu":
        wait_for_kernel_cache()
    return importlib.import_module(f"{__name__}.{module}")


_REPLICA_FORMS = {}


def replica_form(name=None):
    """The kernels of backend ``name`` over a leading replica axis (:mod:`replicas` has the
    rule): the ``cuda`` module itself, or the replica form of a one-replica backend (``name``
    as :func:`backend_name` resolves it)."""
    if name in REPLICA_BACKENDS:
        return get_replica_backend(name)
    name = backend_name(name)
    if name not in _REPLICA_FORMS:
        # loaded as the backends are: it reads this package's activation codes
        replicas = importlib.import_module(f"{__name__}.replicas")
        _REPLICA_FORMS[name] = replicas.ReplicaForm(get_backend(name))
    return _REPLICA_FORMS[name]


def get_replica_backend(name="cuda"):
    """Return the batched kernel module ``name`` (one of ``REPLICA_BACKENDS``), or raise
    ValueError in one sentence when its libraries or its device are missing."""
    if name not in REPLICA_BACKENDS:
        raise ValueError(f"replica backend must be one of {sorted(REPLICA_BACKENDS)}, got {name!r}")
    try:
        module = importlib.import_module(f"{__name__}.{REPLICA_BACKENDS[name]}")
    except ImportError as err:
        raise ValueError(str(err)) from None
    module.require()
    return module
