"""CUDA kernels (numba-cuda) of every npgen operation, batched over a leading replica axis.

R runs of one architecture are trained in lockstep: every array of :mod:`npgen.kernels.cpu`
gains a leading axis of length R, replica r holding run r's copy, and one call does the work
of all of them. Activations are (R, n, features), weights (R, out, in), biases (R, out), flat
parameter buffers (R, P). Arrays are C-contiguous device arrays (numba-cuda device arrays or
CuPy arrays: anything with ``__cuda_array_interface__``); the caller allocates them once.

How the work is done:

* matrix products go to a vendor BLAS through :data:`xp_matmul`: on a GPU one cuBLAS
  strided-batched gemm through CuPy's bindings, with transposes as cuBLAS's flags (no operand
  copied), on numba-cuda's arrays in place through ``__cuda_array_interface__``; under
  numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1``, where CuPy cannot run) a numpy
  stand-in with the same interface;
* the elementwise work (bias, activation and its derivatives, bias-gradient sums, the column
  blocks of skip connections), the losses, Adam, spectral norm and annealed Langevin are
  numba-cuda kernels with grid-stride loops, so any launch size covers any array
  (:func:`configure` sets it; the tests use a few threads);
* reductions (losses, norms, sigma, the spectral-norm coupling) take one block per replica and
  accumulate in float64;
* the operations over several layers (``npgen.kernels.LAYER_KERNELS``: spectral norm of every
  layer, the score network's noise-level path, Adam on several networks) are one launch each,
  a block per (layer, replica) or per replica, their per-layer arrays passed as tuples.

Where the CPU kernel returns a Python float, the batched one writes one float64 per replica
into an (R,) device array the caller passes last: the losses' ``loss``, vae_reparameterize's
``kl``, gradient_penalty's ``penalty``, spectral norm's ``sigma``, particle_step's ``kinetic``
(and alpha_dual_loss's ``grad_nu``). Scalars (activation code, slopes, Adam's step and rates,
Langevin's step count, alpha, dt, the penalty's scale) are shared by the replicas of a batch,
which differ only in data and seed; values that differ between replicas (seeds, Langevin's
centers, the alpha-divergence's shift nu, the penalty's target, the SGM's noise level) are
(R,) arrays where the CPU kernel takes a number. Derivatives are
computed from z; the activation values ``a`` are accepted for the CPU signatures.

Random numbers come from the device: :func:`rng_states` gives each replica
``RNG_STATES_PER_REPLICA`` xoroshiro128+ states seeded from that replica's seed alone, and
:func:`standard_normal` has state s of a replica fill elements s, s + S, s + 2S, ... of that
replica's rows (S = RNG_STATES_PER_REPLICA), so a run draws the same numbers whatever R and
whatever the launch size. Langevin noise is numpy_ref's counter-based generator, bit for bit.

This module needs numba-cuda (``pip install "npgen[cuda]"``); importing it does not need a
GPU, so that its kernels compile to PTX anywhere.
"""

import importlib.util
import math

import numpy as np

from . import IDENTITY, KERNELS, LAYER_KERNELS, LEAKY_RELU, RELU, SILU, TANH, langevin_tables
from .numpy_ref import LANGEVIN_GOLDEN, LANGEVIN_MIX, SPECTRAL_NORM_EPS

#: The one sentence for a machine without the CUDA libraries.
INSTALL_HINT = ('backend "cuda" needs numba-cuda and CuPy (and an NVIDIA GPU):'
                ' pip install "npgen[cuda]"')

if importlib.util.find_spec("numba_cuda") is None:
    raise ImportError(INSTALL_HINT)

from numba import config, cuda, float64, uint32, uint64
from numba.cuda.random import (
    xoroshiro128p_dtype,
    xoroshiro128p_normal_float32,
    xoroshiro128p_normal_float64,
)

__all__ = list(KERNELS) + list(LAYER_KERNELS) + [
    "standard_normal", "standard_normal_fills", "rng_states", "shuffle_orders", "zeros",
    "to_device", "to_host", "free_bytes", "synchronize"]

#: Whether numba-cuda runs its simulator (NUMBA_ENABLE_CUDASIM=1) instead of a GPU.
SIMULATOR = bool(config.ENABLE_CUDASIM)

#: xoroshiro128+ states per replica (fixed: a run's random stream depends on it).
RNG_STATES_PER_REPLICA = 64

#: Width of the shared-memory array of a block reduction: the most threads of a reduction block.
REDUCE_WIDTH = 128

#: Launch sizes of the grid-stride kernels (see :func:`configure`).
LAUNCH = {"threads": 256, "max_blocks": 4096}


def configure(threads=None, max_blocks=None):
    """Set the threads per block (a power of two) and the most blocks of a launch.

    Results do not depend on them; the simulator's tests use a few threads to stay fast.
    """
    if threads is not None:
        if not (isinstance(threads, int) and threads >= 1 and threads & (threads - 1) == 0):
            raise ValueError(f"threads must be a power of two, got {threads!r}")
        LAUNCH["threads"] = threads
    if max_blocks is not None:
        if not (isinstance(max_blocks, int) and max_blocks >= 1):
            raise ValueError(f"max_blocks must be a positive integer, got {max_blocks!r}")
        LAUNCH["max_blocks"] = max_blocks


def require():
    """Raise ValueError (one sentence) unless this machine can run the batched kernels: the
    simulator, or a GPU with CuPy."""
    if SIMULATOR:
        return
    if importlib.util.find_spec("cupy") is None or not cuda.is_available():
        raise ValueError(INSTALL_HINT)


def free_bytes():
    """Free device memory in bytes, or None under the simulator (which has no such limit)."""
    return None if SIMULATOR else cuda.current_context().get_memory_info()[0]


def _grid(count):
    """(blocks, threads) of a grid-stride launch over ``count`` items."""
    threads = LAUNCH["threads"]
    return max(1, min(LAUNCH["max_blocks"], -(-count // threads))), threads


def _reduction_grid(replicas):
    """(blocks, threads) of a launch with one block per replica."""
    return max(1, min(LAUNCH["max_blocks"], replicas)), min(LAUNCH["threads"], REDUCE_WIDTH)


def _check(fits, what):
    if not fits:
        raise ValueError(f"{what}: array shapes do not fit together")


# --------------------------------------------------------------------------- products


def _host(array):
    """A numpy copy of a device array (or the array itself, for a numpy array)."""
    return array if isinstance(array, np.ndarray) else array.copy_to_host()


def host_matmul(a, b, out, transpose_a=False, transpose_b=False, accumulate=False):
    """out[r] (+)= op(a[r]) op(b[r]) for every replica r, op a transpose where asked, with
    numpy on host copies: the stand-in for :func:`cupy_matmul` where CuPy cannot run."""
    A, B = _host(a), _host(b)
    product = np.matmul(A.transpose(0, 2, 1) if transpose_a else A,
                        B.transpose(0, 2, 1) if transpose_b else B).astype(out.dtype)
    if accumulate:
        product += _host(out)
    if isinstance(out, np.ndarray):
        out[...] = product
    else:
        out.copy_to_device(product)


def gemm_arguments(a_shape, b_shape, transpose_a=False, transpose_b=False):
    """The arguments of the cuBLAS strided-batched gemm (column-major) that computes
    out[r] = op(a[r]) op(b[r]) for C-contiguous row-major a (R, ., .), b (R, ., .) and out
    (R, M, N), op a transpose where asked, with no operand copied.

    cuBLAS reads a row-major matrix as its transpose, so it is asked for
    out^T = op(b)^T op(a)^T (m = N, n = M, k = K): b's buffer is its first operand (transposed
    by cuBLAS where b is not, ``transa``), a's its second (``transb``); each leading dimension
    is its buffer's row length, each stride its matrix's size. Returns a dict with transa,
    transb (0 for 'N', 1 for 'T'), m, n, k, lda, strideA (b's), ldb, strideB (a's), ldc,
    strideC and batchCount."""
    R, rows_a, cols_a = a_shape
    _, rows_b, cols_b = b_shape
    M, K = (cols_a, rows_a) if transpose_a else (rows_a, cols_a)
    N = rows_b if transpose_b else cols_b
    return {"transa": int(transpose_b), "transb": int(transpose_a), "m": N, "n": M, "k": K,
            "lda": cols_b, "strideA": rows_b * cols_b, "ldb": cols_a, "strideB": rows_a * cols_a,
            "ldc": N, "strideC": M * N, "batchCount": R}


def cupy_matmul(a, b, out, transpose_a=False, transpose_b=False, accumulate=False):
    """out[r] (+)= op(a[r]) op(b[r]) for every replica r: one cuBLAS strided-batched gemm
    (:func:`gemm_arguments`) through CuPy's bindings, on the device arrays in place
    (``__cuda_array_interface__``), the transposes as cuBLAS's flags and the accumulation as its
    beta = 1; operands that are not C-contiguous go through cupy.matmul."""
    import cupy
    from cupy.cuda import cublas, device

    A, B, C = cupy.asarray(a), cupy.asarray(b), cupy.asarray(out)
    if not (all(x.flags.c_contiguous for x in (A, B, C)) and A.dtype == B.dtype == C.dtype
            and C.dtype in (np.float32, np.float64)):
        A = A.transpose(0, 2, 1) if transpose_a else A
        B = B.transpose(0, 2, 1) if transpose_b else B
        if accumulate:
            C += cupy.matmul(A, B)
        else:
            cupy.matmul(A, B, out=C)
        return
    gemm = cublas.sgemmStridedBatched if C.dtype == np.float32 else cublas.dgemmStridedBatched
    args = gemm_arguments(A.shape, B.shape, transpose_a, transpose_b)
    one, beta = np.array(1, C.dtype), np.array(1 if accumulate else 0, C.dtype)
    gemm(device.get_cublas_handle(), args["transa"], args["transb"], args["m"], args["n"],
         args["k"], one.ctypes.data, B.data.ptr, args["lda"], args["strideA"], A.data.ptr,
         args["ldb"], args["strideB"], beta.ctypes.data, C.data.ptr, args["ldc"],
         args["strideC"], args["batchCount"])


#: The batched product every kernel here uses: CuPy on a GPU, numpy under the simulator.
xp_matmul = host_matmul if SIMULATOR else cupy_matmul


# --------------------------------------------------------------------------- activations
#
# Scalar rules of numpy_ref's activations on the extended reals, evaluated in float64.


@cuda.jit(device=True)
def _sigmoid(z):
    e = math.exp(-abs(z))
    return 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)


@cuda.jit(device=True)
def _value(kind, slope, z):
    """act(z): z, max(z, 0), leaky, z sigmoid(z), tanh(z), sigmoid(z)."""
    z = float64(z)
    if kind == IDENTITY:
        return z
    if kind == RELU or kind == LEAKY_RELU:
        if z <= 0:  # NaN stays NaN below
            return slope * z if (kind == LEAKY_RELU and slope != 0) else 0.0
        return z
    if kind == SILU:
        return 0.0 if z == -math.inf else z * _sigmoid(z)
    if kind == TANH:
        return math.tanh(z)
    return _sigmoid(z)


@cuda.jit(device=True)
def _derivative(kind, slope, z):
    """act'(z): the left derivative at the kinks; silu 1 at +inf and 0 at -inf."""
    z = float64(z)
    if kind == IDENTITY:
        return 1.0
    if kind == RELU or kind == LEAKY_RELU:
        return 1.0 if z > 0 else (slope if kind == LEAKY_RELU else 0.0)
    if kind == SILU:
        if math.isinf(z):
            return 1.0 if z > 0 else 0.0
        s = _sigmoid(z)
        return s * (1.0 + z * (1.0 - s))
    if kind == TANH:
        t = math.tanh(z)
        return 1.0 - t * t
    s = _sigmoid(z)
    return s * (1.0 - s)


@cuda.jit(device=True)
def _second_derivative(kind, slope, z):
    """act''(z): 0 for the piecewise-linear ones, and 0 at -inf and +inf for all."""
    z = float64(z)
    if kind == IDENTITY or kind == RELU or kind == LEAKY_RELU or math.isinf(z):
        return 0.0
    if kind == SILU:
        s = _sigmoid(z)
        return s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))
    if kind == TANH:
        t = math.tanh(z)
        return -2.0 * t * (1.0 - t * t)
    s = _sigmoid(z)
    return s * (1.0 - s) * (1.0 - 2.0 * s)


# --------------------------------------------------------------------------- elementwise kernels


@cuda.jit
def _bias_activation(x, W, outer, b, kind, slope, z, a):
    """z[r, i, j] += b[r, j]; a = act(z). With ``outer`` (a layer of one input) the product
    is made here too: z[r, i, j] = x[r, i, 0] W[r, j, 0] + b[r, j] (z is not read)."""
    R, n, out = z.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for index in range(start, R * n * out, stride):
        r, rest = index // (n * out), index % (n * out)
        i, j = rest // out, rest % out
        product = x[r, i, 0] * W[r, j, 0] if outer else z[r, i, j]
        value = product + b[r, j]
        z[r, i, j] = value
        a[r, i, j] = _value(kind, slope, value)


@cuda.jit
def _tangent(kind, slope, z, dz, da):
    """da = act'(z) dz, on flat arrays."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, z.size, stride):
        da[i] = _derivative(kind, slope, z[i]) * dz[i]


@cuda.jit
def _chain_rule(kind, slope, z, grad_a, grad_z):
    """grad_z = act'(z) grad_a, on flat arrays."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, z.size, stride):
        grad_z[i] = _derivative(kind, slope, z[i]) * grad_a[i]


@cuda.jit
def _backward_columns(kind, slope, z, dz, grad_a, grad_da, grad_z, grad_dz, grad_b, accumulate,
                      tangents, x, grad_W, outer):
    """One thread per (replica, unit j), down column j, with d1 = act'(z), d2 = act''(z):
    grad_z = grad_a d1, plus grad_da d2 dz and grad_dz = grad_da d1 when ``tangents`` (else
    dz, grad_da and grad_dz are not touched); grad_b[r, j] (+)= sum_rows grad_z, and with
    ``outer`` (a layer of one input x) grad_W[r, j, 0] (+)= sum_rows grad_z x (in float64; else
    x and grad_W are not touched)."""
    R, n, out = z.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for index in range(start, R * out, stride):
        r, j = index // out, index % out
        total, weight_total = 0.0, 0.0
        for i in range(n):
            d1 = _derivative(kind, slope, z[r, i, j])
            g = grad_a[r, i, j] * d1
            if tangents:
                grad_dz[r, i, j] = grad_da[r, i, j] * d1
                g += _second_derivative(kind, slope, z[r, i, j]) * (grad_da[r, i, j] * dz[r, i, j])
            grad_z[r, i, j] = g
            total += grad_z[r, i, j]
            if outer:
                weight_total += float64(grad_z[r, i, j]) * x[r, i, 0]
        grad_b[r, j] = grad_b[r, j] + total if accumulate else total
        if outer:
            grad_W[r, j, 0] = grad_W[r, j, 0] + weight_total if accumulate else weight_total


def _flat(array):
    return array.reshape(array.size)


# --------------------------------------------------------------------------- dense layer


def _check_layer(x, W, b, z, what):
    R, n = x.shape[:2]
    _check(x.ndim == 3 and W.shape == (R, W.shape[1], x.shape[2]) and b.shape == W.shape[:2]
           and z.shape == (R, n, W.shape[1]), what)


def linear_forward(x, W, b, kind, slope, z, a):
    """z = x W^T + b, a = act(z), for every replica: x (R, n, in), W (R, out, in), b (R, out),
    z and a (R, n, out). One launch: the bias and the activation in the product's epilogue, a
    kernel after cuBLAS's product; a layer of one input (the univariate networks' first) has its
    outer product x W^T made in that kernel too, with no product launched."""
    _check_layer(x, W, b, z, "linear_forward")
    _check(a.shape == z.shape, "linear_forward")
    outer = x.shape[2] == 1
    if not outer:
        xp_matmul(x, W, z, transpose_b=True)
    _bias_activation[_grid(z.size)](x, W, outer, b, kind, float(slope), z, a)


def linear_backward(x, W, z, a, grad_a, kind, slope, grad_z, grad_W, grad_b, grad_x,
                    accumulate, need_grad_x):
    """grad_z = grad_a act'(z), grad_W (+)= grad_z^T x, grad_b (+)= sum_rows grad_z,
    grad_x = grad_z W when need_grad_x (grad_x may be None otherwise); per replica. The
    column kernel that applies act' also sums grad_b, and for a layer of one input grad_W."""
    _check_layer(x, W, grad_b, z, "linear_backward")
    _check(a.shape == z.shape and grad_a.shape == z.shape and grad_z.shape == z.shape
           and grad_W.shape == W.shape, "linear_backward")
    outer = x.shape[2] == 1
    _backward_columns[_grid(z.shape[0] * z.shape[2])](
        kind, float(slope), z, z, grad_a, grad_a, grad_z, grad_z, grad_b, bool(accumulate), False,
        x, grad_W, outer)
    _parameter_products(grad_z, x, W, grad_W, grad_x, accumulate, need_grad_x, not outer)


def _parameter_products(grad_z, x, W, grad_W, grad_x, accumulate, need_grad_x, weights=True):
    """grad_W (+)= grad_z^T x (unless not ``weights``: a layer of one input has it from its
    column kernel) and, when need_grad_x, grad_x = grad_z W."""
    if weights:
        xp_matmul(grad_z, x, grad_W, transpose_a=True, accumulate=bool(accumulate))
    if need_grad_x:
        _check(grad_x is not None and grad_x.shape == x.shape, "linear_backward")
        xp_matmul(grad_z, W, grad_x)


def linear_backward_input(W, z, a, grad_a, kind, slope, grad_z, grad_x):
    """grad_z = grad_a act'(z), grad_x = grad_z W: the backward to the input alone."""
    R, n, out = z.shape
    _check(a.shape == z.shape and grad_a.shape == z.shape and grad_z.shape == z.shape
           and W.shape[:2] == (R, out) and grad_x.shape == (R, n, W.shape[2]),
           "linear_backward_input")
    _chain_rule[_grid(z.size)](kind, float(slope), _flat(z), _flat(grad_a), _flat(grad_z))
    xp_matmul(grad_z, W, grad_x)


def linear_jvp(x, dx, W, b, kind, slope, z, a, dz, da):
    """z = x W^T + b, a = act(z), dz = dx W^T, da = act'(z) dz; per replica."""
    _check(dx.shape == x.shape and dz.shape == z.shape and da.shape == z.shape, "linear_jvp")
    linear_forward(x, W, b, kind, slope, z, a)
    xp_matmul(dx, W, dz, transpose_b=True)
    _tangent[_grid(z.size)](kind, float(slope), _flat(z), _flat(dz), _flat(da))


def linear_jvp_backward(x, dx, W, z, a, dz, grad_a, grad_da, kind, slope,
                        grad_z, grad_dz, grad_W, grad_b, grad_x, grad_dx,
                        accumulate, need_grad_x):
    """Cotangents of (a, da) to those of (W, b, x, dx); with d1 = act'(z), d2 = act''(z):
    grad_dz = grad_da d1, grad_z = grad_a d1 + grad_da d2 dz,
    grad_W (+)= grad_z^T x + grad_dz^T dx, grad_b (+)= sum_rows grad_z,
    grad_x = grad_z W and grad_dx = grad_dz W when need_grad_x; per replica."""
    _check_layer(x, W, grad_b, z, "linear_jvp_backward")
    _check(dx.shape == x.shape and all(t.shape == z.shape for t in (
        a, dz, grad_a, grad_da, grad_z, grad_dz)) and grad_W.shape == W.shape,
        "linear_jvp_backward")
    _backward_columns[_grid(z.shape[0] * z.shape[2])](
        kind, float(slope), z, dz, grad_a, grad_da, grad_z, grad_dz, grad_b, bool(accumulate), True,
        x, grad_W, False)
    _parameter_products(grad_z, x, W, grad_W, grad_x, accumulate, need_grad_x)
    _parameter_products(grad_dz, dx, W, grad_W, grad_dx, True, need_grad_x)


# --------------------------------------------------------------------------- reductions


@cuda.jit(device=True)
def _block_reduce(shared, value, largest):
    """The sum (the max when ``largest``) over the block's threads of ``value`` (a tree in
    shared memory; the block size is a power of two); every thread gets it."""
    t = cuda.threadIdx.x
    shared[t] = value
    cuda.syncthreads()
    width = cuda.blockDim.x // 2
    while width > 0:
        if t < width:
            other = shared[t + width]
            shared[t] = max(shared[t], other) if largest else shared[t] + other
        cuda.syncthreads()
        width //= 2
    total = shared[0]
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def _block_sum(shared, value):
    """The sum over the block's threads of ``value``; every thread gets it."""
    return _block_reduce(shared, value, False)


# --------------------------------------------------------------------------- losses

_BCE_WITH_LOGITS, _HINGE, _HINGE_GENERATOR = range(3)


@cuda.jit
def _mean_loss(which, pred, target, grad, loss):
    """One block per replica r: loss[r] = mean_i l(p_ri, t_ri), grad = dl/dp / N, for
    l = bce with logits (which 0), hinge (which 1) or -p (which 2, t not read), in float64."""
    shared = cuda.shared.array(REDUCE_WIDTH, float64)
    R, N = pred.shape
    for r in range(cuda.blockIdx.x, R, cuda.gridDim.x):
        partial = 0.0
        for i in range(cuda.threadIdx.x, N, cuda.blockDim.x):
            s, t = float64(pred[r, i]), float64(target[r, i])
            if which == _BCE_WITH_LOGITS:
                e = math.exp(-abs(s))
                partial += max(s, 0.0) - s * t + math.log1p(e)
                slope = (1.0 / (1.0 + e) if s >= 0 else e / (1.0 + e)) - t
            elif which == _HINGE:
                margin = 1.0 - t * s
                partial += max(margin, 0.0)
                slope = -t if margin > 0 else 0.0
            else:
                partial -= s
                slope = -1.0
            grad[r, i] = slope / N
        total = _block_sum(shared, partial)
        if cuda.threadIdx.x == 0:
            loss[r] = total / N


def _loss(which, what, pred, target, grad, loss):
    R = pred.shape[0]
    _check(target.shape == pred.shape and grad.shape == pred.shape and loss.shape == (R,),
           what)
    rows = (R, pred.size // R)
    _mean_loss[_reduction_grid(R)](which, pred.reshape(rows), target.reshape(rows),
                                   grad.reshape(rows), loss)
    return loss


def bce_with_logits(logits, target, grad, loss):
    """loss[r] = mean of max(s, 0) - s t + log(1 + exp(-|s|)) over replica r's logits;
    grad = (sigmoid(s) - t) / N. Arrays (R, ...); loss (R,) float64. Returns loss."""
    return _loss(_BCE_WITH_LOGITS, "bce_with_logits", logits, target, grad, loss)


def hinge(scores, target, grad, loss):
    """loss[r] = mean of max(0, 1 - t s) over replica r's scores, t in {-1, +1};
    grad = -t [1 - t s > 0] / N. Returns loss."""
    return _loss(_HINGE, "hinge", scores, target, grad, loss)


def hinge_generator(scores, grad, loss):
    """loss[r] = -mean of replica r's scores (the hinge GAN's generator loss); grad = -1 / N.
    scores, grad (R, ...); loss (R,) float64. Returns loss."""
    return _loss(_HINGE_GENERATOR, "hinge_generator", scores, scores, grad, loss)


# --------------------------------------------------------------------------- the GAN's gradient penalty
#
# P = w (max_i |t_i| - L)^2 of npgen.models.gan (generator_gradient has the math), w = c / L^2,
# for each replica's tangents t (R, B, d) and its own target L: one block per replica, norms in
# float64. The maximizing row is numpy's argmax (the first NaN, else the first of the largest),
# carried with its norm through the block's reduction, so the row written is always one of
# the replica's.


@cuda.jit(device=True)
def _row_norm(t, r, i):
    total = 0.0
    for j in range(t.shape[2]):
        total += float64(t[r, i, j]) * t[r, i, j]
    return math.sqrt(total)


@cuda.jit(device=True)
def _argmax_before(value, index, other, other_index):
    """Whether (value, index) precedes (other, other_index) in numpy's argmax order: a NaN
    first, then the larger value, then the smaller index."""
    if value != value or other != other:
        return value != value and (other == other or index < other_index)
    return value > other or (value == other and index < other_index)


@cuda.jit(device=True)
def _block_argmax(values, indices, value, index):
    """The (value, index) of the block's threads first in :func:`_argmax_before`'s order (a
    tree in shared memory; the block size is a power of two); every thread gets it."""
    t = cuda.threadIdx.x
    values[t], indices[t] = value, index
    cuda.syncthreads()
    width = cuda.blockDim.x // 2
    while width > 0:
        if t < width and _argmax_before(values[t + width], indices[t + width], values[t], indices[t]):
            values[t], indices[t] = values[t + width], indices[t + width]
        cuda.syncthreads()
        width //= 2
    value, index = values[0], indices[0]
    cuda.syncthreads()
    return value, index


@cuda.jit
def _gradient_penalty(tangent, targets, scale, grad_tangent, penalty):
    """penalty[r] = w_r (|t_r,i*| - L_r)^2, grad_tangent = dP/dt (row i* only)."""
    norms = cuda.shared.array(REDUCE_WIDTH, float64)
    rows = cuda.shared.array(REDUCE_WIDTH, np.int64)
    R, B, d = tangent.shape
    for r in range(cuda.blockIdx.x, R, cuda.gridDim.x):
        target = targets[r]
        weight = scale / (target * target)
        largest, row = -1.0, B  # below every norm: a thread without rows never wins
        for i in range(cuda.threadIdx.x, B, cuda.blockDim.x):
            norm = _row_norm(tangent, r, i)
            if _argmax_before(norm, i, largest, row):
                largest, row = norm, i
            for j in range(d):
                grad_tangent[r, i, j] = 0
        best, row = _block_argmax(norms, rows, largest, row)
        if cuda.threadIdx.x == 0:
            gap = best - target
            penalty[r] = weight * gap * gap
            if best > 0:
                for j in range(d):
                    grad_tangent[r, row, j] = tangent[r, row, j] * (2 * weight * gap / best)


def gradient_penalty(tangent, targets, scale, grad_tangent, penalty):
    """penalty[r] = w_r (|t_i*| - L_r)^2 with i* the row of replica r's largest tangent norm
    |t_i| (numpy's argmax: the first on ties, the first NaN if any), L_r = targets[r] and
    w_r = scale / L_r^2; grad_tangent = dP/dt: w_r 2 (|t_i*| - L_r) t_i* / |t_i*| in row i*
    (when |t_i*| > 0), zero elsewhere. tangent, grad_tangent (R, B, d) with B >= 1; targets
    and penalty (R,) float64. Returns penalty."""
    R = tangent.shape[0]
    _check(tangent.ndim == 3 and tangent.shape[1] >= 1 and grad_tangent.shape == tangent.shape
           and penalty.shape == (R,) and targets.shape == (R,), "gradient_penalty")
    _gradient_penalty[_reduction_grid(R)](tangent, targets, float(scale), grad_tangent, penalty)
    return penalty


# --------------------------------------------------------------------------- the VAE's loss
#
# The elementwise parts of npgen.models.vae's negative ELBO (its module doc has the math),
# one block per replica, sums in float64. code (R, B, 2p) holds mu then lv; k = kl_power is
# 1 for the textbook KL and 2 for the published code's term.


@cuda.jit
def _vae_reparameterize(code, eps, kl_power, z, std, kl):
    """std = exp(lv / 2), z = mu + std eps; kl[r] = 1/2 sum(mu^2 + exp(k lv) - lv - 1)."""
    shared = cuda.shared.array(REDUCE_WIDTH, float64)
    R, B, p = z.shape
    for r in range(cuda.blockIdx.x, R, cuda.gridDim.x):
        partial = 0.0
        for index in range(cuda.threadIdx.x, B * p, cuda.blockDim.x):
            i, j = index // p, index % p
            mu, lv = float64(code[r, i, j]), float64(code[r, i, p + j])
            std[r, i, j] = math.exp(lv / 2)
            variance = float64(std[r, i, j]) * std[r, i, j]
            z[r, i, j] = mu + std[r, i, j] * eps[r, i, j]
            term = variance if kl_power == 1 else variance * variance
            partial += mu * mu + term - lv - 1.0
        total = _block_sum(shared, partial)
        if cuda.threadIdx.x == 0:
            kl[r] = total / 2


@cuda.jit
def _vae_residual(reconstruction, x, variance, residual, loss):
    """residual = (g(z) - x) / c; loss[r] = sum (g(z) - x)^2 / (2 c)."""
    shared = cuda.shared.array(REDUCE_WIDTH, float64)
    R, B, d = x.shape
    for r in range(cuda.blockIdx.x, R, cuda.gridDim.x):
        partial = 0.0
        for index in range(cuda.threadIdx.x, B * d, cuda.blockDim.x):
            i, j = index // d, index % d
            difference = reconstruction[r, i, j] - x[r, i, j]
            partial += float64(difference) * difference
            residual[r, i, j] = difference * (1 / variance)
        total = _block_sum(shared, partial)
        if cuda.threadIdx.x == 0:
            loss[r] = total / (2 * variance)


@cuda.jit
def _vae_code_gradient(code, eps, std, grad_z, kl_power, grad_code):
    """grad_mu = grad_z + mu; grad_lv = grad_z eps std / 2 + (k exp(k lv) - 1) / 2."""
    R, B, p = std.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for index in range(start, R * B * p, stride):
        r, rest = index // (B * p), index % (B * p)
        i, j = rest // p, rest % p
        variance = float64(std[r, i, j]) * std[r, i, j]
        term = variance if kl_power == 1 else variance * variance
        grad_code[r, i, j] = grad_z[r, i, j] + code[r, i, j]
        grad_code[r, i, p + j] = (grad_z[r, i, j] * eps[r, i, j] * std[r, i, j] * 0.5
                                  + (kl_power * term - 1.0) * 0.5)


def vae_reparameterize(code, eps, kl_power, z, std, kl):
    """z = mu + exp(lv / 2) eps (and std = exp(lv / 2)) from code = [mu, lv] (R, B, 2p);
    kl[r] = replica r's summed KL term (k = kl_power: 1 textbook, 2 published). Returns kl."""
    R, B, p = z.shape
    _check(code.shape == (R, B, 2 * p) and eps.shape == z.shape and std.shape == z.shape
           and kl.shape == (R,) and kl_power in (1, 2), "vae_reparameterize")
    _vae_reparameterize[_reduction_grid(R)](code, eps, int(kl_power), z, std, kl)
    return kl


def vae_residual(reconstruction, x, variance, residual, loss):
    """residual = (g(z) - x) / c and loss[r] = replica r's sum of (g(z) - x)^2 / (2 c), for
    the decoder variance c. Returns loss."""
    _check(reconstruction.shape == x.shape and residual.shape == x.shape
           and loss.shape == (x.shape[0],), "vae_residual")
    _vae_residual[_reduction_grid(x.shape[0])](reconstruction, x, float(variance), residual, loss)
    return loss


def vae_code_gradient(code, eps, std, grad_z, kl_power, grad_code):
    """The loss's gradient with respect to code = [mu, lv], from dL/dz = grad_z."""
    R, B, p = std.shape
    _check(code.shape == (R, B, 2 * p) and grad_code.shape == code.shape
           and eps.shape == std.shape and grad_z.shape == std.shape, "vae_code_gradient")
    _vae_code_gradient[_grid(R * B * p)](code, eps, std, grad_z, int(kl_power), grad_code)


# --------------------------------------------------------------------------- denoising score matching
#
# The elementwise parts of npgen.models.sgm's loss (its module doc has the math): replica r
# trains at its own noise level sigma[r] (float64, (R,)) on clean rows x and noise eps
# (R, B, d), with the weight w = sigma^k (k = weight_power: 1 the published code's, 2
# Song & Ermon's).


@cuda.jit
def _score_matching_noisy(x, eps, sigma, noisy):
    """noisy = x + sigma_r eps."""
    R, B, d = x.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for index in range(start, R * B * d, stride):
        r, rest = index // (B * d), index % (B * d)
        i, j = rest // d, rest % d
        noisy[r, i, j] = x[r, i, j] + sigma[r] * eps[r, i, j]


@cuda.jit
def _score_matching_loss(score, eps, sigma, weight_power, grad, loss):
    """residual = s + eps / sigma_r; loss[r] = w sum residual^2; grad = 2 w residual."""
    shared = cuda.shared.array(REDUCE_WIDTH, float64)
    R, B, d = score.shape
    for r in range(cuda.blockIdx.x, R, cuda.gridDim.x):
        level = sigma[r]
        weight = level if weight_power == 1 else level * level
        partial = 0.0
        for index in range(cuda.threadIdx.x, B * d, cuda.blockDim.x):
            i, j = index // d, index % d
            residual = score[r, i, j] + eps[r, i, j] / level
            partial += float64(residual) * residual
            grad[r, i, j] = (2 * weight) * residual
        total = _block_sum(shared, partial)
        if cuda.threadIdx.x == 0:
            loss[r] = weight * total


def score_matching_noisy(x, eps, sigma, noisy):
    """noisy = x + sigma_r eps for every replica r: x, eps, noisy (R, B, d), sigma (R,)."""
    R = x.shape[0]
    _check(eps.shape == x.shape and noisy.shape == x.shape and sigma.shape == (R,),
           "score_matching_noisy")
    _score_matching_noisy[_grid(x.size)](x, eps, sigma, noisy)


def score_matching_loss(score, eps, sigma, weight_power, grad, loss):
    """loss[r] = w_r sum (s + eps / sigma_r)^2 over replica r's rows, w_r = sigma_r^k
    (k = weight_power, 1 or 2), and grad = dloss/ds = 2 w_r (s + eps / sigma_r): the loss of
    npgen.models.SGM, a sum over the batch. score, eps, grad (R, B, d); sigma and loss (R,)
    float64. Returns loss."""
    R = score.shape[0]
    _check(eps.shape == score.shape and grad.shape == score.shape and sigma.shape == (R,)
           and loss.shape == (R,) and weight_power in (1, 2), "score_matching_loss")
    _score_matching_loss[_reduction_grid(R)](score, eps, sigma, int(weight_power), grad, loss)
    return loss


# The same with a level per row (npgen.models.VectorSGM's loss, numpy_ref's *_levels): row i of
# replica r at level levels[r, i] of that replica's tables (R, L); center (R,) float64.


@cuda.jit(device=True)
def _entry(index, shape):
    """(r, i, j), the entry number ``index`` of a C-ordered array of this (R, B, d) shape."""
    rows, columns = shape[1], shape[2]
    return index // (rows * columns), index // columns % rows, index % columns


@cuda.jit
def _score_matching_noisy_levels(x, eps, levels, sigmas, noisy):
    """noisy[r, i] = x[r, i] + eps[r, i] sigmas[r, levels[r, i]]."""
    for index in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        r, i, j = _entry(index, x.shape)
        noisy[r, i, j] = x[r, i, j] + eps[r, i, j] * sigmas[r, levels[r, i]]


@cuda.jit
def _score_matching_loss_levels(raw, noisy, eps, levels, raw_scales, skips, center, grad, loss):
    """One block per replica r, l = levels[r, i]: R_ri = A_l r_ri - K_l (x~_ri - mu_r) + eps_ri,
    grad = A_l R / B; loss[r] = sum R^2 / (2B), in float64."""
    shared = cuda.shared.array(REDUCE_WIDTH, float64)
    B = raw.shape[1]
    for r in range(cuda.blockIdx.x, raw.shape[0], cuda.gridDim.x):
        partial = 0.0
        for index in range(cuda.threadIdx.x, B * raw.shape[2], cuda.blockDim.x):
            _, i, j = _entry(index, raw.shape)  # of replica 0: (0, i, j)
            scale, skip = raw_scales[r, levels[r, i]], skips[r, levels[r, i]]
            residual = (noisy[r, i, j] - center[r]) * -skip + eps[r, i, j] + raw[r, i, j] * scale
            partial += float64(residual) * residual
            grad[r, i, j] = residual * scale / B
        total = _block_sum(shared, partial)
        if cuda.threadIdx.x == 0:
            loss[r] = total / (2 * B)


def score_matching_noisy_levels(x, eps, levels, sigmas, noisy):
    """noisy[r, i] = x[r, i] + sigma_l eps[r, i], l = levels[r, i], sigma_l = sigmas[r, l]:
    x, eps, noisy (R, B, d); levels (R, B) integers; sigmas (R, L)."""
    R, B = x.shape[:2]
    _check(x.ndim == 3 and eps.shape == x.shape and noisy.shape == x.shape
           and levels.shape == (R, B) and sigmas.ndim == 2 and sigmas.shape[0] == R,
           "score_matching_noisy_levels")
    _score_matching_noisy_levels[_grid(x.size)](x, eps, levels, sigmas, noisy)


def score_matching_loss_levels(raw, noisy, eps, levels, raw_scales, skips, center, grad, loss):
    """loss[r] = sum_i |A_l r_i - K_l (x~_i - mu_r) + eps_i|^2 / (2B) over replica r's rows,
    l = levels[r, i], A = raw_scales[r], K = skips[r], mu_r = center[r]; grad = dloss/draw =
    A_l (A_l r_i - K_l (x~_i - mu_r) + eps_i) / B. raw, noisy, eps, grad (R, B, d); levels
    (R, B) integers; raw_scales and skips (R, L); center and loss (R,) float64. Returns loss."""
    R, B = raw.shape[:2]
    _check(raw.ndim == 3 and all(a.shape == raw.shape for a in (noisy, eps, grad))
           and levels.shape == (R, B) and raw_scales.ndim == 2 and raw_scales.shape[0] == R
           and skips.shape == raw_scales.shape and center.shape == (R,) and loss.shape == (R,),
           "score_matching_loss_levels")
    _score_matching_loss_levels[_reduction_grid(R)](raw, noisy, eps, levels, raw_scales, skips,
                                                    center, grad, loss)
    return loss


# --------------------------------------------------------------------------- the noise-level path
#
# numpy_ref.score_embedding_forward and _backward with a leading replica axis: one block per
# replica walks the path's small layers (one row each), waiting between layers; products in
# float64, one thread per output entry.


@cuda.jit(device=True)
def _row_affine(x, W, b, r, z):
    """z[r, 0] = x[r, 0] W[r]^T + b[r]; then the block waits."""
    for j in range(cuda.threadIdx.x, z.shape[2], cuda.blockDim.x):
        acc = 0.0
        for k in range(x.shape[2]):
            acc += float64(W[r, j, k]) * x[r, 0, k]
        z[r, 0, j] = acc + b[r, j]
    cuda.syncthreads()


@cuda.jit(device=True)
def _row_outer(grad, x, r, grad_W, grad_b):
    """grad_W[r] = grad[r, 0]^T x[r, 0], grad_b[r] = grad[r, 0]."""
    for j in range(cuda.threadIdx.x, grad.shape[2], cuda.blockDim.x):
        g = grad[r, 0, j]
        grad_b[r, j] = g
        for k in range(x.shape[2]):
            grad_W[r, j, k] = g * x[r, 0, k]


@cuda.jit
def _score_embedding(p, V1, c1, V2, c2, W2e, b2, W3e, b3, slope, z1, h, z2, e, leaky_e,
                     beff2, beff3):
    """Block r: the forward of numpy_ref.score_embedding_forward on replica r."""
    for r in range(cuda.blockIdx.x, p.shape[0], cuda.gridDim.x):
        _row_affine(p, V1, c1, r, z1)
        for j in range(cuda.threadIdx.x, z1.shape[2], cuda.blockDim.x):
            h[r, 0, j] = _value(LEAKY_RELU, slope, z1[r, 0, j])
        cuda.syncthreads()
        _row_affine(h, V2, c2, r, z2)
        for j in range(cuda.threadIdx.x, z2.shape[2], cuda.blockDim.x):
            e[r, 0, j] = _value(LEAKY_RELU, slope, z2[r, 0, j])
            leaky_e[r, 0, j] = _value(LEAKY_RELU, slope * slope, z2[r, 0, j])
        cuda.syncthreads()
        _row_affine(e, W2e, b2, r, beff2)
        _row_affine(leaky_e, W3e, b3, r, beff3)


@cuda.jit
def _score_embedding_backward(p, V2, W2e, W3e, slope, z1, h, z2, e, leaky_e, grad_beff2,
                              grad_beff3, grad_z1, grad_h, grad_z2, grad_e, grad_leaky_e,
                              grad_V1, grad_c1, grad_V2, grad_c2, grad_W2e, grad_b2, grad_W3e,
                              grad_b3):
    """Block r: numpy_ref.score_embedding_backward on replica r, with grad_e = dL/dbeff2 W2e,
    grad_leaky_e = dL/dbeff3 W3e and grad_h = dL/dz2 V2 kept in the scratch rows."""
    for r in range(cuda.blockIdx.x, p.shape[0], cuda.gridDim.x):
        _row_outer(grad_beff2, e, r, grad_W2e, grad_b2)
        _row_outer(grad_beff3, leaky_e, r, grad_W3e, grad_b3)
        for m in range(cuda.threadIdx.x, z2.shape[2], cuda.blockDim.x):
            from_e, from_leaky_e = 0.0, 0.0
            for j in range(grad_beff2.shape[2]):
                from_e += float64(grad_beff2[r, 0, j]) * W2e[r, j, m]
            for j in range(grad_beff3.shape[2]):
                from_leaky_e += float64(grad_beff3[r, 0, j]) * W3e[r, j, m]
            grad_e[r, 0, m], grad_leaky_e[r, 0, m] = from_e, from_leaky_e
            z = z2[r, 0, m]
            grad_z2[r, 0, m] = (_derivative(LEAKY_RELU, slope, z) * from_e
                                + _derivative(LEAKY_RELU, slope * slope, z) * from_leaky_e)
        cuda.syncthreads()
        _row_outer(grad_z2, h, r, grad_V2, grad_c2)
        for q in range(cuda.threadIdx.x, z1.shape[2], cuda.blockDim.x):
            acc = 0.0
            for m in range(z2.shape[2]):
                acc += float64(grad_z2[r, 0, m]) * V2[r, m, q]
            grad_h[r, 0, q] = acc
            grad_z1[r, 0, q] = _derivative(LEAKY_RELU, slope, z1[r, 0, q]) * acc
        cuda.syncthreads()
        _row_outer(grad_z1, p, r, grad_V1, grad_c1)
        cuda.syncthreads()


def _check_embedding(features, params, path, beff2, beff3, what):
    R, _, F = features.shape
    V1, c1, V2, c2, W2e, b2, W3e, b3 = params
    H, E, H2, out3 = V1.shape[1], V2.shape[1], W2e.shape[1], W3e.shape[1]
    _check(V1.shape == (R, H, F) and c1.shape == (R, H) and V2.shape == (R, E, H)
           and c2.shape == (R, E) and W2e.shape == (R, H2, E) and b2.shape == (R, H2)
           and W3e.shape == (R, out3, E) and b3.shape == (R, out3)
           and [a.shape for a in path] == [(R, 1, H)] * 2 + [(R, 1, E)] * 3
           and beff2.shape == (R, 1, H2) and beff3.shape == (R, 1, out3), what)


def score_embedding_forward(features, params, slope, path, beff2, beff3):
    """numpy_ref.score_embedding_forward for every replica, in one launch: features (R, 1, F),
    params (V1, c1, V2, c2, W2e, b2, W3e, b3) with the replica axis first, path (z1, h, z2, e,
    leaky_e) (R, 1, width) and beff2, beff3 (R, 1, width) written."""
    _check_embedding(features, params, path, beff2, beff3, "score_embedding_forward")
    _score_embedding[_reduction_grid(features.shape[0])](features, *params, float(slope), *path,
                                                         beff2, beff3)


def score_embedding_backward(features, params, slope, path, grad_beff2, grad_beff3, work, grads):
    """numpy_ref.score_embedding_backward for every replica, in one launch, into ``grads`` (the
    gradients of ``params``, their shapes); ``work`` (grad_z1, grad_h, grad_z2, grad_e,
    grad_leaky_e) has the shapes of ``path`` and is scratch."""
    _check_embedding(features, params, path, grad_beff2, grad_beff3, "score_embedding_backward")
    _check([a.shape for a in work] == [a.shape for a in path]
           and [a.shape for a in grads] == [a.shape for a in params], "score_embedding_backward")
    _, _, V2, _, W2e, _, W3e, _ = params
    _score_embedding_backward[_reduction_grid(features.shape[0])](
        features, V2, W2e, W3e, float(slope), *path, grad_beff2, grad_beff3, *work, *grads)


# --------------------------------------------------------------------------- optimizer


@cuda.jit
def _adam(params, grads, ms, vs, step_size, root_bias2, beta1, beta2, eps):
    """Adam's update of every entry of every group g (params[g], grads[g], ms[g], vs[g])."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for g in range(len(params)):
        param, grad, m, v = params[g], grads[g], ms[g], vs[g]
        for i in range(start, param.size, stride):
            gradient = float64(grad[i])
            m[i] = beta1 * m[i] + (1 - beta1) * gradient
            v[i] = beta2 * v[i] + (1 - beta2) * gradient * gradient
            param[i] -= step_size * m[i] / (math.sqrt(float64(v[i])) / root_bias2 + eps)


def adam_step(param, grad, m, v, step, lr, beta1, beta2, eps):
    """torch.optim.Adam on the flat buffers of every replica at once, step t from 1:
    m <- beta1 m + (1 - beta1) g,  v <- beta2 v + (1 - beta2) g^2,
    param <- param - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)."""
    adam_step_groups((param,), (grad,), (m,), (v,), step, lr, beta1, beta2, eps)


def adam_step_groups(params, grads, ms, vs, step, lr, beta1, beta2, eps):
    """:func:`adam_step` on every group g (params[g], grads[g], ms[g], vs[g]: tuples of flat
    buffers, a network's each) at one step count and one set of rates, in one launch."""
    params, grads, ms, vs = map(tuple, (params, grads, ms, vs))
    _check(len(params) >= 1 and all(len(t) == len(params) for t in (grads, ms, vs))
           and all(g.shape == p.shape and m.shape == p.shape and v.shape == p.shape
                   for p, g, m, v in zip(params, grads, ms, vs)), "adam_step")
    step_size = lr / (1 - beta1 ** float(step))
    root_bias2 = math.sqrt(1 - beta2 ** float(step))
    flat = [tuple(_flat(a) for a in group) for group in (params, grads, ms, vs)]
    _adam[_grid(max(p.size for p in params))](*flat, step_size, root_bias2, float(beta1),
                                              float(beta2), float(eps))


# --------------------------------------------------------------------------- spectral norm
#
# One launch covers every layer of a network and every replica: block (k, r) (k = b // R,
# r = b % R, for b over a grid of blocks) works on layer k of replica r, its arrays taken from
# tuples of per-layer arrays (the layers' shapes differ, their types do not). Sums in float64.


@cuda.jit(device=True)
def _matrix_vector(W, r, transposed, vector, out):
    """out[r] = W[r]^T vector[r] (transposed) or W[r] vector[r], the block's threads taking
    entries in turn; then the block waits."""
    inner = W.shape[1] if transposed else W.shape[2]
    for k in range(cuda.threadIdx.x, out.shape[1], cuda.blockDim.x):
        acc = 0.0
        for m in range(inner):
            acc += float64(W[r, m, k] if transposed else W[r, k, m]) * vector[r, m]
        out[r, k] = acc
    cuda.syncthreads()


@cuda.jit(device=True)
def _normalize(shared, u, r):
    """u[r] <- u[r] / max(||u[r]||, eps); then the block waits."""
    partial = 0.0
    for i in range(cuda.threadIdx.x, u.shape[1], cuda.blockDim.x):
        partial += float64(u[r, i]) * u[r, i]
    scale = 1.0 / max(math.sqrt(_block_sum(shared, partial)), SPECTRAL_NORM_EPS)
    for i in range(cuda.threadIdx.x, u.shape[1], cuda.blockDim.x):
        u[r, i] = u[r, i] * scale
    cuda.syncthreads()


@cuda.jit
def _spectral_norm_layers(Ws, us, vs, n_power_iterations, W_sns, sigmas):
    """Block (k, r): the power iterations on W_k[r], then sigma_k[r] = u . W v and
    W_sn_k[r] = W_k[r] / sigma_k[r]."""
    shared = cuda.shared.array(REDUCE_WIDTH, float64)
    R = sigmas[0].shape[0]
    for block in range(cuda.blockIdx.x, len(Ws) * R, cuda.gridDim.x):
        k, r = block // R, block % R
        W, u, v, W_sn = Ws[k], us[k], vs[k], W_sns[k]
        rows, cols = W.shape[1], W.shape[2]
        for _ in range(n_power_iterations):
            _matrix_vector(W, r, True, u, v)
            _normalize(shared, v, r)
            _matrix_vector(W, r, False, v, u)
            _normalize(shared, u, r)
        partial = 0.0
        for i in range(cuda.threadIdx.x, rows, cuda.blockDim.x):
            acc = 0.0
            for j in range(cols):
                acc += float64(W[r, i, j]) * v[r, j]
            partial += u[r, i] * acc
        value = _block_sum(shared, partial)
        if cuda.threadIdx.x == 0:
            sigmas[k][r] = value
        for index in range(cuda.threadIdx.x, rows * cols, cuda.blockDim.x):
            i, j = index // cols, index % cols
            W_sn[r, i, j] = W[r, i, j] / value


@cuda.jit
def _spectral_norm_backward_layers(Ws, us, vs, sigmas, grad_W_sns, grad_Ws, accumulate):
    """Block (k, r): c = <grad_W_sn, W> / sigma^2, then grad_W (+)= grad_W_sn / sigma - c u v^T,
    on layer k of replica r."""
    shared = cuda.shared.array(REDUCE_WIDTH, float64)
    R = sigmas[0].shape[0]
    for block in range(cuda.blockIdx.x, len(Ws) * R, cuda.gridDim.x):
        k, r = block // R, block % R
        W, u, v, grad_W_sn, grad_W = Ws[k], us[k], vs[k], grad_W_sns[k], grad_Ws[k]
        rows, cols = W.shape[1], W.shape[2]
        partial = 0.0
        for index in range(cuda.threadIdx.x, rows * cols, cuda.blockDim.x):
            i, j = index // cols, index % cols
            partial += float64(grad_W_sn[r, i, j]) * W[r, i, j]
        s = sigmas[k][r]
        coupling = _block_sum(shared, partial) / (s * s)
        for index in range(cuda.threadIdx.x, rows * cols, cuda.blockDim.x):
            i, j = index // cols, index % cols
            step = grad_W_sn[r, i, j] / s - coupling * (u[r, i] * v[r, j])
            grad_W[r, i, j] = grad_W[r, i, j] + step if accumulate else step


def _layers_grid(layers, replicas):
    """(blocks, threads) of a launch with one block per (layer, replica)."""
    return _reduction_grid(layers * replicas)


def _check_spectral_norm(Ws, us, vs, sigmas, others, what):
    R = sigmas[0].shape[0] if sigmas else 0
    _check(len(Ws) >= 1 and all(len(t) == len(Ws) for t in (us, vs, sigmas, *others))
           and all(W.shape[0] == R and u.shape == (R, W.shape[1]) and v.shape == (R, W.shape[2])
                   and sigma.shape == (R,) and all(t[k].shape == W.shape for t in others)
                   for k, (W, u, v, sigma) in enumerate(zip(Ws, us, vs, sigmas))), what)


def spectral_norm_forward_layers(Ws, us, vs, n_power_iterations, W_sns, sigmas):
    """:func:`spectral_norm_forward` of every layer k of a network (tuples of per-layer arrays:
    Ws[k] and W_sns[k] (R, out_k, in_k), us[k] (R, out_k), vs[k] (R, in_k), sigmas[k] (R,)
    float64), in one launch."""
    Ws, us, vs, W_sns, sigmas = map(tuple, (Ws, us, vs, W_sns, sigmas))
    _check_spectral_norm(Ws, us, vs, sigmas, (W_sns,), "spectral_norm_forward_layers")
    _spectral_norm_layers[_layers_grid(len(Ws), sigmas[0].shape[0])](
        Ws, us, vs, int(n_power_iterations), W_sns, sigmas)


def spectral_norm_backward_layers(Ws, us, vs, sigmas, grad_W_sns, grad_Ws, accumulate):
    """:func:`spectral_norm_backward` of every layer k of a network (tuples of per-layer arrays,
    as :func:`spectral_norm_forward_layers`), in one launch."""
    Ws, us, vs, sigmas, grad_W_sns, grad_Ws = map(tuple, (Ws, us, vs, sigmas, grad_W_sns, grad_Ws))
    _check_spectral_norm(Ws, us, vs, sigmas, (grad_W_sns, grad_Ws), "spectral_norm_backward_layers")
    _spectral_norm_backward_layers[_layers_grid(len(Ws), sigmas[0].shape[0])](
        Ws, us, vs, sigmas, grad_W_sns, grad_Ws, bool(accumulate))


def spectral_norm_forward(W, u, v, n_power_iterations, W_sn, sigma):
    """Per replica: power iterations v <- W^T u / ||W^T u||, u <- W v / ||W v|| (none in
    evaluation), then sigma = u . W v and W_sn = W / sigma. W, W_sn (R, out, in), u (R, out),
    v (R, in), sigma (R,) float64. Returns sigma."""
    spectral_norm_forward_layers((W,), (u,), (v,), n_power_iterations, (W_sn,), (sigma,))
    return sigma


def spectral_norm_backward(W, u, v, sigma, grad_W_sn, grad_W, accumulate):
    """Per replica: grad_W (+)= grad_W_sn / sigma - (<grad_W_sn, W> / sigma^2) u v^T, the
    inner product in float64; sigma (R,) as spectral_norm_forward wrote it."""
    spectral_norm_backward_layers((W,), (u,), (v,), (sigma,), (grad_W_sn,), (grad_W,), accumulate)


# --------------------------------------------------------------------------- random numbers


_MASK64 = 2 ** 64 - 1
#: xoroshiro128+'s jump polynomial: 2^64 steps ahead.
_XOROSHIRO_JUMP = (0xBEAC0467EBA5FACB, 0xD86B048B86AA9922)


def _xoroshiro_next(s0, s1):
    """The state after one xoroshiro128+ step (Python integers)."""
    s1 ^= s0
    rotated = ((s0 << 55) | (s0 >> 9)) & _MASK64
    return rotated ^ s1 ^ ((s1 << 14) & _MASK64), ((s1 << 36) | (s1 >> 28)) & _MASK64


def _seeded_states(seed, count):
    """numba-cuda's init_xoroshiro128p_states_cpu(states, seed, 0), in Python integers: state 0
    is splitmix64's first output for ``seed`` (twice), and each next state jumps 2^64 steps."""
    z = (seed + LANGEVIN_GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * LANGEVIN_MIX[0]) & _MASK64
    z = ((z ^ (z >> 27)) * LANGEVIN_MIX[1]) & _MASK64
    s0 = s1 = z ^ (z >> 31)
    states = [(s0, s1)]
    for _ in range(count - 1):
        j0 = j1 = 0
        for word in _XOROSHIRO_JUMP:
            for bit in range(64):
                if word >> bit & 1:
                    j0, j1 = j0 ^ s0, j1 ^ s1
                s0, s1 = _xoroshiro_next(s0, s1)
        s0, s1 = j0, j1
        states.append((s0, s1))
    return states


def rng_states(seeds):
    """Device xoroshiro128+ states for replicas with these seeds: replica r owns states
    r S .. r S + S - 1 (S = RNG_STATES_PER_REPLICA), seeded from seed r alone as numba-cuda's
    ``init_xoroshiro128p_states`` seeds an array of S states."""
    states = np.array([state for seed in seeds
                       for state in _seeded_states(int(seed), RNG_STATES_PER_REPLICA)],
                      xoroshiro128p_dtype)
    return cuda.to_device(states)


@cuda.jit
def _standard_normal(states, single, out):
    """State s of replica r fills out[t, r, s], out[t, r, s + S], ... with standard normals, for
    t = 0, 1, ... in turn."""
    fills, R, size = out.shape
    S = states.size // R
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for index in range(start, R * S, stride):
        r, s = index // S, index % S
        for t in range(fills):
            for i in range(s, size, S):
                if single:
                    out[t, r, i] = xoroshiro128p_normal_float32(states, index)
                else:
                    out[t, r, i] = xoroshiro128p_normal_float64(states, index)


def standard_normal(states, out):
    """Fill out (R, ...) with standard normals from :func:`rng_states` states, replica r's
    from its own states (the same numbers whatever R)."""
    return standard_normal_fills(states, out.reshape(1, *out.shape))[0]


def standard_normal_fills(states, out):
    """out[t] for t = 0 .. T-1 (out (T, R, ...)) as T calls of :func:`standard_normal` on
    out[0], out[1], ... in turn would fill them, in one launch."""
    T, R = out.shape[:2]
    _check(states.size == R * RNG_STATES_PER_REPLICA, "standard_normal")
    _standard_normal[_grid(states.size)](states, out.dtype == np.float32,
                                         out.reshape(T, R, out.size // (T * R)))
    return out


# --------------------------------------------------------------------------- annealed Langevin
#
# numpy_ref's noise generator: splitmix64's finalizer over (seed, sample, step pair), then
# Box-Muller. Shifts are uint32 so that uint64 arithmetic stays unsigned.

_GOLDEN = np.uint64(LANGEVIN_GOLDEN)
_MIX1, _MIX2 = np.uint64(LANGEVIN_MIX[0]), np.uint64(LANGEVIN_MIX[1])
_LOW32 = np.uint64(0xFFFFFFFF)


@cuda.jit(device=True)
def _mix64(z):
    """splitmix64's finalizer (see numpy_ref._mix64)."""
    z = (z ^ (z >> uint32(30))) * _MIX1
    z = (z ^ (z >> uint32(27))) * _MIX2
    return z ^ (z >> uint32(31))


@cuda.jit(device=True)
def _sample_key(seed, i):
    """key_i = mix(mix(seed + G) + (i + 1) G): the noise key of sample i (numpy_ref's
    langevin_sample_keys)."""
    return _mix64(_mix64(uint64(seed) + _GOLDEN) + (uint64(i) + uint64(1)) * _GOLDEN)


@cuda.jit(device=True)
def _noise(key, step):
    """The standard normal z(seed, i, step) of the sample with ``key`` (float64)."""
    bits = _mix64(key + (uint64(step // 2) + uint64(1)) * _GOLDEN)
    u1 = (float64(bits >> uint32(32)) + 0.5) * 2.0 ** -32
    u2 = (float64(bits & _LOW32) + 0.5) * 2.0 ** -32
    radius = math.sqrt(-2.0 * math.log(u1))
    angle = 2.0 * math.pi * u2
    return radius * (math.cos(angle) if step % 2 == 0 else math.sin(angle))


@cuda.jit
def _langevin(x, kinks, A, C, beff2, w3, beff3, rates, n_steps_per_level, seeds, first_step,
              numbers, with_gradient, dx0, grad_sq, by_level, trace_slot, traces, bad_level):
    """One thread per (replica r, sample i): the loop of annealed_langevin on replica r's
    tables (kernels.langevin_tables), with its seed. The score is computed in x's type, as
    the CPU kernel does: rates[r, l] = (alpha, alpha / 2, sqrt(alpha)) and numbers = (slope2,
    0, 1) come in that type, and each step's new x is rounded to that type (the noise is
    float64), in a register. with_gradient also carries dx0 and grad_sq, writes grad_sq after
    each level into by_level (when it has L rows) and after each step into
    traces[r, step, trace_slot[r, i]] (for slots in 0 .. k-1). bad_level[r] falls to the first
    level after which a sample of replica r is NaN or inf."""
    R, n = x.shape
    K, H2 = kinks.shape[1], w3.shape[1]
    n_levels = rates.shape[1]
    slope, zero, one = numbers[0], numbers[1], numbers[2]
    rounded = cuda.local.array(1, x.dtype)  # a register of x's type
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for index in range(start, R * n, stride):
        r, i = index // n, index % n
        key = _sample_key(seeds[r], i)
        slot = trace_slot[r, i] if trace_slot.shape[1] == n else -1
        xi = x[r, i]
        di, ni = (dx0[r, i], grad_sq[r, i]) if with_gradient else (zero, zero)
        step = first_step
        p = 0
        for level in range(n_levels):
            alpha, half_alpha = rates[r, level, 0], rates[r, level, 1]
            root_alpha = rates[r, level, 2]
            for _ in range(n_steps_per_level):
                while p > 0 and xi < kinks[r, p - 1]:
                    p -= 1
                while p < K and xi >= kinks[r, p]:
                    p += 1
                score, dscore = beff3[r, level], zero
                for k in range(H2):
                    a = A[r, p, k]
                    u = a * xi + (C[r, p, k] + beff2[r, level, k])
                    score += w3[r, k] * max(u, slope * u)
                    if with_gradient:
                        dscore += w3[r, k] * a * (one if u > 0 else slope)
                if with_gradient:
                    f = one + half_alpha * dscore
                    di = f * di
                    ni = f * f * ni + alpha
                    if 0 <= slot < traces.shape[2]:
                        traces[r, step - first_step, slot] = ni
                rounded[0] = xi + (half_alpha * score + root_alpha * _noise(key, step))
                xi = rounded[0]
                step += 1
            if with_gradient and by_level.shape[1] == n_levels:
                by_level[r, level, i] = ni
            if not math.isfinite(xi):
                cuda.atomic.min(bad_level, r, level)
        x[r, i] = xi
        if with_gradient:
            dx0[r, i], grad_sq[r, i] = di, ni


def annealed_langevin(x, W1, b1, W2a, beff2, W3a, beff3, alphas, n_steps_per_level, seeds,
                      first_step, slope1, slope2, dx0=None, grad_sq=None, by_level=None,
                      trace_slot=None, traces=None, bad_level=None):
    """x <- x + (alpha_l / 2) s_l(x) + sqrt(alpha_l) z, n_steps_per_level times per level l,
    in place, for every replica r with its own score network and seed (numpy_ref's
    annealed_langevin, arrays with a leading replica axis): x (R, n), W1 (R, H1, 1), b1 (R, H1),
    W2a (R, H2, H1), beff2 (R, L, H2), W3a (R, 1, H2), beff3 (R, L), alphas (R, L), seeds (R,)
    integers. With dx0 and grad_sq (R, n) given, also, with f = 1 + (alpha_l / 2) s_l'(x) at
    the x before each step: dx0 <- f dx0 and grad_sq <- f^2 grad_sq + alpha_l.

    One launch runs every level of every replica. The first layer is tabulated on the host
    (:func:`npgen.kernels.langevin_tables.replica_pieces`, the CPU kernel's tables), so a
    step costs one pass over the H2 units of the sample's piece. Optional outputs, with the
    gradient only: ``by_level`` (R, L, n) receives grad_sq after each level; ``trace_slot``
    (R, n) int64, a slot in 0 .. k-1 for each traced sample and -1 elsewhere (a slot outside
    0 .. k-1 traces nothing), has ``traces`` (R, T, k) receive a traced sample's grad_sq after
    each of the T = L n_steps_per_level steps. ``bad_level`` (R,) int64, where given, is
    lowered to the first level after which one of replica r's samples is NaN or inf (left as
    it is otherwise).
    """
    what = "annealed_langevin"
    R, n = x.shape
    H2, H1 = W2a.shape[1:]
    L = alphas.shape[1]
    seeds = np.asarray(seeds, np.uint64)
    _check(W1.shape == (R, H1, 1) and b1.shape == (R, H1) and W2a.shape[0] == R
           and beff2.shape == (R, L, H2) and W3a.shape == (R, 1, H2) and beff3.shape == (R, L)
           and alphas.shape == (R, L) and seeds.shape == (R,), what)
    with_gradient = dx0 is not None or grad_sq is not None
    if with_gradient:
        _check(dx0 is not None and grad_sq is not None and dx0.shape == x.shape
               and grad_sq.shape == x.shape, what)
    _check((trace_slot is None) == (traces is None) and (with_gradient or (
        by_level is None and traces is None)), what)
    if by_level is not None:
        _check(by_level.shape == (R, L, n), what)
    if traces is not None:
        _check(trace_slot.shape == (R, n) and traces.shape[:2] == (R, L * int(n_steps_per_level)),
               what)
    dtype = x.dtype
    kinks, A, C = langevin_tables.replica_pieces(_host(W1), _host(b1), _host(W2a), float(slope1))
    alpha = _host(alphas).astype(np.float64)
    rates = np.stack([alpha, alpha / 2, np.sqrt(alpha)], axis=2).astype(dtype)
    numbers = np.array([slope2, 0, 1], dtype)
    empty = cuda.device_array((R, 0, 0), dtype)
    _langevin[_grid(R * n)](
        x, to_device(kinks), to_device(A), to_device(C), beff2,
        to_device(_host(W3a)[:, 0]), beff3, to_device(rates), int(n_steps_per_level), seeds,
        int(first_step), to_device(numbers), with_gradient,
        dx0 if with_gradient else x, grad_sq if with_gradient else x,
        empty if by_level is None else by_level,
        cuda.device_array((R, 0), np.int64) if trace_slot is None else trace_slot,
        empty if traces is None else traces,
        cuda.to_device(np.full(R, L, np.int64)) if bad_level is None else bad_level)


# --------------------------------------------------------------------------- annealed Langevin in d dimensions
#
# numpy_ref.annealed_langevin_mlp with a leading replica axis. A step is three batched products
# through xp_matmul (cuBLAS on a GPU), the first two followed by linear_forward's bias and
# activation kernel, then one grid-stride kernel that scales the score, draws the noise and
# moves x.


@cuda.jit
def _langevin_mlp_move(x, raw, b3, out_scales, skip_scales, center, alphas, level, seeds, step):
    """x[r, i, j] += (alpha / 2) (c_out (raw + b3[r, j]) - c_skip (x - center[r]))
    + sqrt(alpha) z(seeds[r], i d + j, step), with alpha, c_out and c_skip replica r's at
    ``level``; in float64."""
    R, n, d = x.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for index in range(start, R * n * d, stride):
        r, flat = index // (n * d), index % (n * d)
        i, j = flat // d, flat % d
        alpha = float64(alphas[r, level])
        xij = float64(x[r, i, j])
        score = (out_scales[r, level] * (float64(raw[r, i, j]) + b3[r, j])
                 - skip_scales[r, level] * (xij - center[r]))
        noise = _noise(_sample_key(seeds[r], flat), step)
        x[r, i, j] = xij + (alpha / 2 * score + math.sqrt(alpha) * noise)


def annealed_langevin_mlp(x, W1, beff1, W2, beff2, W3, b3, out_scales, skip_scales, center,
                          alphas, n_steps_per_level, seeds, first_step, kind, slope):
    """x[r] <- x[r] + (alpha_l / 2) s_l(x[r]) + sqrt(alpha_l) z, in place, n_steps_per_level
    times per level l, for every replica r with its own score network, center and seed
    (numpy_ref's annealed_langevin_mlp with a leading replica axis), where
        s_l(x) = out_scales[l] (W3 act(W2 act(W1 x + beff1[l]) + beff2[l]) + b3)
                 - skip_scales[l] (x - center).

    Shapes: x (R, n, d), W1 (R, H1, d), beff1 (R, L, H1), W2 (R, H2, H1), beff2 (R, L, H2),
    W3 (R, d, H2), b3 (R, d), out_scales, skip_scales and alphas (R, L); center and seeds
    R numbers (host sequences). ``kind`` and ``slope`` (the hidden activation) and the step
    counts are shared. Coordinate j of sample i of replica r draws z(seeds[r], i d + j, t) at
    step t = first_step, first_step + 1, ..., numpy_ref's noise bit for bit.

    The products go to the vendor BLAS (:data:`xp_matmul`, three batched products a step) and
    the elementwise work between them to grid-stride kernels; the call allocates its
    activations once, R n (H1 + H2 + d) floats of x's type.
    """
    what = "annealed_langevin_mlp"
    _check(x.ndim == 3 and W1.ndim == 3 and W2.ndim == 3 and alphas.ndim == 2, what)
    R, n, d = x.shape
    H1, H2, L = W1.shape[1], W2.shape[1], alphas.shape[1]
    seeds = np.asarray(seeds, np.uint64)
    center = np.asarray(center, np.float64)
    _check(W1.shape == (R, H1, d) and beff1.shape == (R, L, H1) and W2.shape == (R, H2, H1)
           and beff2.shape == (R, L, H2) and W3.shape == (R, d, H2) and b3.shape == (R, d)
           and out_scales.shape == (R, L) and skip_scales.shape == (R, L)
           and seeds.shape == (R,) and center.shape == (R,), what)
    h1 = cuda.device_array((R, n, H1), x.dtype)
    h2 = cuda.device_array((R, n, H2), x.dtype)
    raw = cuda.device_array((R, n, d), x.dtype)
    step = int(first_step)
    for level in range(L):
        for _ in range(int(n_steps_per_level)):
            linear_forward(x, W1, beff1[:, level], kind, slope, h1, h1)
            linear_forward(h1, W2, beff2[:, level], kind, slope, h2, h2)
            xp_matmul(h2, W3, raw, transpose_b=True)
            _langevin_mlp_move[_grid(x.size)](x, raw, b3, out_scales, skip_scales, center,
                                              alphas, level, seeds, step)
            step += 1


# --------------------------------------------------------------------------- the classifier's loss


@cuda.jit
def _softmax_cross_entropy(logits, target, grad, loss):
    """One block per replica r, a thread per row i, in float64: lse_i = m_i + log sum_j
    exp(s_ij - m_i) with m_i the row's max, l_i = sum_j t_ij (lse_i - s_ij),
    grad_ij = (exp(s_ij - lse_i) sum_k t_ik - t_ij) / N; loss[r] = mean_i l_i."""
    shared = cuda.shared.array(REDUCE_WIDTH, float64)
    R, N, K = logits.shape
    for r in range(cuda.blockIdx.x, R, cuda.gridDim.x):
        partial = 0.0
        for i in range(cuda.threadIdx.x, N, cuda.blockDim.x):
            shift = float64(logits[r, i, 0])
            for j in range(1, K):
                shift = max(shift, float64(logits[r, i, j]))
            exps = 0.0
            for j in range(K):
                exps += math.exp(logits[r, i, j] - shift)
            lse = shift + math.log(exps)
            mass = 0.0
            for j in range(K):
                t = float64(target[r, i, j])
                mass += t
                partial += t * (lse - logits[r, i, j])
            for j in range(K):
                grad[r, i, j] = (math.exp(logits[r, i, j] - lse) * mass - target[r, i, j]) / N
        total = _block_sum(shared, partial)
        if cuda.threadIdx.x == 0:
            loss[r] = total / N


def softmax_cross_entropy(logits, target, grad, loss):
    """loss[r] = mean over replica r's rows i of -sum_j t_ij log softmax(s_i)_j;
    grad = (softmax(s_i)_j sum_k t_ik - t_ij) / N. logits, target, grad (R, N, K) (K >= 1
    classes); loss (R,) float64. Returns loss."""
    _check(logits.ndim == 3 and logits.shape[2] >= 1 and target.shape == logits.shape
           and grad.shape == logits.shape and loss.shape == (logits.shape[0],),
           "softmax_cross_entropy")
    _softmax_cross_entropy[_reduction_grid(logits.shape[0])](logits, target, grad, loss)
    return loss


# --------------------------------------------------------------------------- f-divergence duals and particles
#
# numpy_ref's dual losses of the particles' discriminator and the particles' Euler step, one
# block per replica, sums in float64. phi_p holds a replica's N particle scores, phi_q its M
# data scores.

_KL, _ALPHA = range(2)


@cuda.jit
def _dual_loss(which, phi_p, phi_q, nu, alpha, grad_p, grad_q, grad_nu, loss):
    """One block per replica r: grad_p = -1 / N, and
    KL (which 0): with top = max_j phi_q_j and S = sum_j exp(phi_q_j - top),
        grad_q = exp(phi_q - top) / S,   loss[r] = -(mean phi_p - log(S / M) - top);
    alpha (which 1), at the shift nu[r], with b_j = (alpha - 1) max(phi_q_j - nu[r], 0):
        grad_q = b^(1 / (alpha - 1)) / M,   grad_nu[r] = 1 - mean_j b_j^(1 / (alpha - 1)),
        loss[r] = -(mean phi_p - nu[r] - mean_j b_j^(alpha / (alpha - 1)) / alpha
                    - 1 / (alpha (alpha - 1)))."""
    shared = cuda.shared.array(REDUCE_WIDTH, float64)
    R, N = phi_p.shape
    M = phi_q.shape[1]
    for r in range(cuda.blockIdx.x, R, cuda.gridDim.x):
        partial = 0.0
        for i in range(cuda.threadIdx.x, N, cuda.blockDim.x):
            partial += float64(phi_p[r, i])
            grad_p[r, i] = -1.0 / N
        mean_p = _block_sum(shared, partial) / N
        if which == _KL:
            partial = -math.inf
            for j in range(cuda.threadIdx.x, M, cuda.blockDim.x):
                partial = max(partial, float64(phi_q[r, j]))
            top = _block_reduce(shared, partial, True)
            partial = 0.0
            for j in range(cuda.threadIdx.x, M, cuda.blockDim.x):
                partial += math.exp(phi_q[r, j] - top)
            total = _block_sum(shared, partial)
            for j in range(cuda.threadIdx.x, M, cuda.blockDim.x):
                grad_q[r, j] = math.exp(phi_q[r, j] - top) / total
            value = -(mean_p - (math.log(total / M) + top))
        else:
            shift = float64(nu[r])
            power, inverse = alpha / (alpha - 1.0), 1.0 / (alpha - 1.0)
            partial = 0.0
            slopes = 0.0
            for j in range(cuda.threadIdx.x, M, cuda.blockDim.x):
                base = (alpha - 1.0) * max(float64(phi_q[r, j]) - shift, 0.0)
                slope = base ** inverse
                partial += base ** power / alpha
                slopes += slope
                grad_q[r, j] = slope / M
            conjugate = _block_sum(shared, partial) / M + 1.0 / (alpha * (alpha - 1.0))
            slope_mean = _block_sum(shared, slopes) / M
            if cuda.threadIdx.x == 0:
                grad_nu[r] = 1.0 - slope_mean
            value = -(mean_p - shift - conjugate)
        if cuda.threadIdx.x == 0:
            loss[r] = value


def _dual(which, what, phi_p, phi_q, nu, alpha, grad_p, grad_q, grad_nu, loss):
    R = phi_p.shape[0]
    _check(phi_p.size > 0 and phi_q.size > 0 and phi_q.shape[0] == R
           and grad_p.shape == phi_p.shape and grad_q.shape == phi_q.shape
           and nu.shape == (R,) and grad_nu.shape == (R,) and loss.shape == (R,), what)
    _dual_loss[_reduction_grid(R)](which, phi_p.reshape(R, phi_p.size // R),
                                   phi_q.reshape(R, phi_q.size // R), nu, float(alpha),
                                   grad_p.reshape(R, phi_p.size // R),
                                   grad_q.reshape(R, phi_q.size // R), grad_nu, loss)
    return loss


def kl_dual_loss(phi_p, phi_q, grad_p, grad_q, loss):
    """loss[r] = -[mean phi_p[r] - log mean exp(phi_q[r])] (Donsker-Varadhan, the max of
    phi_q[r] shifted out); grad_p = -1/N, grad_q[r] = softmax(phi_q[r]). phi_p, grad_p (R, N...),
    phi_q, grad_q (R, M...); loss (R,) float64. Returns loss."""
    return _dual(_KL, "kl_dual_loss", phi_p, phi_q, loss, 0.0, grad_p, grad_q, loss, loss)


def alpha_dual_loss(phi_p, phi_q, nu, alpha, grad_p, grad_q, grad_nu, loss):
    """loss[r] = -[mean phi_p[r] - nu[r] - mean f_alpha*(phi_q[r] - nu[r])] at replica r's
    shift nu[r], alpha > 1 shared; grad_p = -1/N, grad_q = f_alpha*'(phi_q - nu) / M,
    grad_nu[r] = 1 - mean f_alpha*'(phi_q[r] - nu[r]). phi_p, grad_p (R, N...), phi_q, grad_q
    (R, M...); nu (R,) (any float type); grad_nu and loss (R,) float64. Returns loss."""
    return _dual(_ALPHA, "alpha_dual_loss", phi_p, phi_q, nu, alpha, grad_p, grad_q, grad_nu,
                 loss)


@cuda.jit
def _particle_step(y, velocity, dt, kinetic):
    """One block per replica r: y[r] <- y[r] - dt velocity[r]; kinetic[r] = sum of
    velocity[r]^2 / n, in float64."""
    shared = cuda.shared.array(REDUCE_WIDTH, float64)
    R, n, d = y.shape
    for r in range(cuda.blockIdx.x, R, cuda.gridDim.x):
        partial = 0.0
        for index in range(cuda.threadIdx.x, n * d, cuda.blockDim.x):
            i, k = index // d, index % d
            v = float64(velocity[r, i, k])
            y[r, i, k] = y[r, i, k] - dt * v
            partial += v * v
        total = _block_sum(shared, partial)
        if cuda.threadIdx.x == 0:
            kinetic[r] = total / n


def particle_step(y, velocity, dt, kinetic):
    """y <- y - dt velocity in place (dt shared); kinetic[r] = mean_i |velocity[r, i]|^2, replica
    r's kinetic energy. y, velocity (R, n, d); kinetic (R,) float64. Returns kinetic."""
    _check(y.ndim == 3 and y.shape[1] >= 1 and velocity.shape == y.shape
           and kinetic.shape == (y.shape[0],), "particle_step")
    _particle_step[_reduction_grid(y.shape[0])](y, velocity, float(dt), kinetic)
    return kinetic


# --------------------------------------------------------------------------- column blocks
#
# The skip connections of npgen.nn.mlp: a layer's input h is column blocks laid side by side,
# each the sum of some earlier nodes, a narrower node adding into the block's leading columns
# (zero-padded); the gradient of h goes back to each node from its block's leading columns.


@cuda.jit
def _copy_columns(source, source_start, out, out_start, width, count, accumulate):
    """For c < width: out[r, i, out_start + c] (+)= source[r, i, source_start + c] when c < count,
    and, unless accumulate, out[r, i, out_start + c] = 0 for count <= c."""
    R, n = out.shape[:2]
    first, stride = cuda.grid(1), cuda.gridsize(1)
    for flat in range(first, R * n * width, stride):
        r, rest = flat // (n * width), flat % (n * width)
        i, c = rest // width, rest % width
        if c < count:
            value = source[r, i, source_start + c]
            out[r, i, out_start + c] = out[r, i, out_start + c] + value if accumulate else value
        elif not accumulate:
            out[r, i, out_start + c] = 0.0


def put_columns(node, h, start, width, accumulate):
    """A node into the column block h[:, :, start:start + width] of a layer's input, for every
    replica: the block's leading node.shape[2] columns (+)= node; unless ``accumulate``, the
    block's other columns are set to zero (the zero-padding of a narrower node). node (R, n, w)
    with w <= width, h (R, n, in) with start + width <= in."""
    R, n, count = node.shape
    _check(h.ndim == 3 and h.shape[:2] == (R, n) and 0 <= start and count <= width
           and start + width <= h.shape[2], "put_columns")
    _copy_columns[_grid(R * n * width)](node, 0, h, int(start), int(width), int(count),
                                        bool(accumulate))


def take_columns(grad_h, start, grad_node, accumulate):
    """grad_node (+)= grad_h[:, :, start:start + w]: a node's share of the gradient of a layer's
    input, for every replica. grad_h (R, n, in), grad_node (R, n, w) with start + w <= in."""
    R, n, width = grad_node.shape
    _check(grad_h.ndim == 3 and grad_h.shape[:2] == (R, n) and 0 <= start
           and start + width <= grad_h.shape[2], "take_columns")
    _copy_columns[_grid(R * n * width)](grad_h, int(start), grad_node, 0, int(width), int(width),
                                        bool(accumulate))


# --------------------------------------------------------------------------- rows and arrays


@cuda.jit
def _gather_rows(source, index, start, out, offset, count):
    """out[r, offset + i] = source[r, index[r, start + i]] for i < count."""
    R, _, width = out.shape
    first, stride = cuda.grid(1), cuda.gridsize(1)
    for flat in range(first, R * count * width, stride):
        r, rest = flat // (count * width), flat % (count * width)
        i, c = rest // width, rest % width
        out[r, offset + i, c] = source[r, index[r, start + i], c]


def gather_rows(source, index, start, out, offset, count):
    """out[r, offset:offset + count] = source[r, index[r, start:start + count]]: minibatches
    taken on the device from per-replica orderings. source (R, N, d), index (R, M) integers,
    out (R, B, d)."""
    R, rows, width = out.shape
    _check(source.shape[0] == R and source.shape[2] == width and index.shape[0] == R
           and offset >= 0 and count >= 0 and offset + count <= rows
           and start + count <= index.shape[1], "gather_rows")
    _gather_rows[_grid(R * count * width)](source, index, int(start), out, int(offset),
                                           int(count))


@cuda.jit
def _shuffle_keys(seeds, epoch, keys):
    """keys[r, i] = numpy_ref.shuffle_keys(seeds[r], epoch, n)[i]."""
    R, n = keys.shape
    epoch_step = (uint64(epoch) + uint64(1)) * _GOLDEN
    for index in range(cuda.grid(1), R * n, cuda.gridsize(1)):
        r, i = index // n, index % n
        epoch_seed = _mix64(uint64(seeds[r]) + _GOLDEN) + epoch_step
        keys[r, i] = _mix64(_mix64(epoch_seed) + (uint64(i) + uint64(1)) * _GOLDEN)


def host_argsort(keys, out):
    """out[r] = the stable argsort of keys[r], with numpy on a host copy: the stand-in for
    :func:`cupy_argsort` where CuPy cannot run."""
    out.copy_to_device(np.argsort(keys.copy_to_host(), axis=1, kind="stable"))


def cupy_argsort(keys, out):
    """out[r] = the stable argsort of keys[r] (CuPy's sort on the device, in place)."""
    import cupy

    cupy.asarray(out)[...] = cupy.argsort(cupy.asarray(keys), axis=1)


#: The row sort shuffle_orders uses: CuPy on a GPU, numpy under the simulator.
xp_argsort = host_argsort if SIMULATOR else cupy_argsort


def shuffle_orders(seeds, epoch, keys, out):
    """out[r] = numpy_ref.shuffle_order(seeds[r], epoch, n): replica r's order of its n rows in
    this epoch, a counter-based permutation drawn on the device (hashed keys, then a sort), so
    the same whatever R. seeds (R,) uint64, keys (R, n) uint64 scratch, out (R, n) int64."""
    _check(keys.shape == out.shape and seeds.shape == (out.shape[0],), "shuffle_orders")
    _shuffle_keys[_grid(keys.size)](seeds, int(epoch), keys)
    xp_argsort(keys, out)


def synchronize():
    """Wait for every launched kernel and product to finish (for timing)."""
    cuda.synchronize()


#: This backend's name (npgen.kernels.REPLICA_BACKENDS), and where its arrays live.
BACKEND_NAME, on_device = "cuda", True


def zeros(shape, dtype):
    """A zero device array."""
    return cuda.to_device(np.zeros(shape, dtype))


def to_device(array):
    """A device copy of a host array."""
    return cuda.to_device(np.ascontiguousarray(array))


def to_host(array):
    """A host copy of a device array."""
    return array.copy_to_host()
