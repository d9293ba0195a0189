"""numba kernels: the signatures of :mod:`npgen.kernels.numpy_backend`, the math of ``numpy_ref``.

Each docstring gives the formula in short; ``numpy_ref`` has the full text. What differs is
how the work is done:

* matrix products go to BLAS ``?gemm`` (scipy's ``cython_blas``), with ``beta = 1`` where a
  gradient is accumulated, so no product is staged in a temporary;
* a thin layer skips BLAS: with one input, ``x W^T`` is an outer product computed in the
  elementwise pass; with one output, it is a dot product per row; their backward products
  are row loops;
* the elementwise work (bias, activation, its derivatives, bias-gradient sums) is one pass
  per kernel, compiled once per activation so that it vectorises, with an exp of its own
  (libm's is a scalar call);
* loss and spectral-norm reductions accumulate in float64.

Every public kernel is compiled ahead of use for float32 and float64 C-contiguous arrays (two
signatures each) and cached on disk. Nothing allocates: outputs are the caller's arrays.
Shapes are checked (the loops themselves do not bounds-check). Losses accept arrays of any
shape, as flat views.
"""

import math

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import get_cython_function_address, intrinsic

from . import IDENTITY, KERNELS, LEAKY_RELU, RELU, SIGMOID, SILU, TANH
from .cpu_noise import box_muller, normal_pair, sample_key, stream_base
from .langevin_tables import first_layer_pieces as _first_layer_pieces
from .numpy_ref import SPECTRAL_NORM_EPS, langevin_rows

__all__ = list(KERNELS)

_FLOAT_TYPES = (types.float32, types.float64)

# --------------------------------------------------------------------------- compilation


def _signatures(spec, ret=types.none):
    """One explicit signature per float type for an argument list written as ``spec``.

    ``rN`` / ``wN``: read-only / writable C-contiguous array of rank N (a writable array is
    accepted where a read-only one is declared); ``oN``: writable rank-N array or None;
    ``jN``: read-only C-contiguous int64 array of rank N; ``i``, ``f``, ``b``: int64, float64,
    bool.
    """
    scalars = {"i": types.int64, "f": types.float64, "b": types.boolean}
    signatures = []
    for dtype in _FLOAT_TYPES:
        args = []
        for code in spec.split():
            if code in scalars:
                args.append(scalars[code])
                continue
            if code[0] == "j":
                args.append(types.Array(types.int64, int(code[1]), "C", readonly=True))
                continue
            array = types.Array(dtype, int(code[1]), "C", readonly=code[0] == "r")
            args.append(types.Optional(array) if code[0] == "o" else array)
        signatures.append(ret(*args))
    return signatures


#: Options shared by every compiled function here: cached on disk, and numpy's error model
#: (a float division by zero gives inf or NaN instead of raising, which keeps the per-element
#: checks out of the loops so that they vectorise).
_OPTIONS = dict(cache=True, error_model="numpy")
_jit = njit(**_OPTIONS)


def _kernel(spec, ret=types.none, **options):
    """Decorator: compile eagerly for float32 and float64 only (see :func:`_signatures`).

    Also used for array helpers: their callers' arrays convert to the declared types, so each
    helper is compiled twice instead of once per mix of read-only and writable arguments.
    """
    return njit(_signatures(spec, ret), **_OPTIONS, **options)


def _flat(*arrays):
    """1-D views of C-contiguous arrays of one size (never copies: outputs are written to)."""
    size = arrays[0].size
    for array in arrays:
        if not array.flags.c_contiguous or array.size != size:
            raise ValueError("kernels need C-contiguous arrays of one size")
    return tuple(array.reshape(-1) for array in arrays)


@_jit
def _check(fits):
    """Raise for arrays whose shapes do not fit together (the loops do not bounds-check)."""
    if not fits:
        raise ValueError("array shapes do not fit together")


@intrinsic
def _like(typingctx, value, like):
    """``value`` converted to the float type of ``like`` (a scalar or an array's dtype)."""
    target = like.dtype if isinstance(like, types.Array) else like
    sig = target(value, like)

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], signature.args[0], signature.return_type)

    return sig, codegen


@intrinsic
def _present(typingctx, maybe):
    """The array held by an optional argument; a TypeError if it is None."""
    inner = maybe.type if isinstance(maybe, types.Optional) else maybe
    sig = inner(maybe)

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], signature.return_type)
        return impl_ret_borrowed(context, builder, signature.return_type, value)

    return sig, codegen


# --------------------------------------------------------------------------- BLAS

# The gemm of scipy's cython_blas, made known to LLVM under a fixed name so that compiled
# kernels refer to it by symbol (and stay cacheable) rather than by a process address.
_GEMM_SYMBOLS = {}
for _dtype, _name in ((types.float32, "sgemm"), (types.float64, "dgemm")):
    _GEMM_SYMBOLS[_dtype] = "npgen_cython_blas_" + _name
    llvm.add_symbol(_GEMM_SYMBOLS[_dtype],
                    get_cython_function_address("scipy.linalg.cython_blas", _name))


@intrinsic
def _fortran_gemm(typingctx, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """Fortran ``?gemm``: c = op(a) op(b) + beta c, column-major; op is set by 'N' / 'T' codes.

    Takes scalars by value and arrays (whose data pointers are passed) and hands BLAS the
    pointers it expects; the scalars live in stack slots of the calling kernel.
    """
    dtype = c.dtype
    if not (a.dtype == b.dtype == dtype and dtype in _GEMM_SYMBOLS):
        return None
    sig = types.none(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        float_type = context.get_value_type(dtype)

        def by_ref(i, to_type):
            value = context.cast(builder, args[i], signature.args[i], to_type)
            return cgutils.alloca_once_value(builder, value)

        def data(i):
            return context.make_array(signature.args[i])(context, builder, args[i]).data

        char_p = ir.IntType(8).as_pointer()
        int_p = ir.IntType(32).as_pointer()
        float_p = float_type.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [
            char_p, char_p, int_p, int_p, int_p, float_p, float_p, int_p, float_p, int_p,
            float_p, float_p, int_p])
        gemm = cgutils.get_or_insert_function(builder.module, fnty, _GEMM_SYMBOLS[dtype])
        alpha = cgutils.alloca_once_value(builder, float_type(1.0))
        builder.call(gemm, [
            by_ref(0, types.int8), by_ref(1, types.int8),
            by_ref(2, types.int32), by_ref(3, types.int32), by_ref(4, types.int32),
            alpha, data(5), by_ref(6, types.int32), data(7), by_ref(8, types.int32),
            by_ref(9, dtype), data(10), by_ref(11, types.int32)])
        return context.get_dummy_value()

    return sig, codegen


@_kernel("r2 b r2 b f w2")
def _gemm(a, trans_a, b, trans_b, beta, c):
    """c = op(a) op(b) + beta c for row-major matrices, op(m) = m^T when its flag is set.

    A row-major matrix is its transpose in column-major order, so BLAS is asked for
    c^T = op(b)^T op(a)^T: the operands swap places and keep their transpose flags.
    """
    k = b.shape[1] if trans_b else b.shape[0]
    _fortran_gemm(ord("T") if trans_b else ord("N"), ord("T") if trans_a else ord("N"),
                  c.shape[1], c.shape[0], k, b, b.shape[1], a, a.shape[1], beta, c, c.shape[1])


# --------------------------------------------------------------------------- exp, in vector form
#
# libm's exp and tanh are scalar calls that stop the elementwise loops from vectorising, so the
# activations use this exp: x = k ln2 + r with |r| <= ln2/2 (Cody-Waite), expm1(r) by its
# Taylor series to degree 13 (truncation below 2e-17 relative), and 2^k built from its bits.
# Accurate to a few units in the last place in float32 and float64; only x <= 0 is needed.


@intrinsic
def _is_single(typingctx, like):
    """Whether ``like`` (a float scalar) is float32, as a compile-time constant."""
    sig = types.boolean(like)

    def codegen(context, builder, signature, args):
        return context.get_constant(types.boolean, signature.args[0] == types.float32)

    return sig, codegen


@intrinsic
def _pow2(typingctx, k, like):
    """2^k in the type of ``like``, for a whole-valued float k in the normal exponent range."""
    sig = like(k, like)
    single = like == types.float32
    mantissa_bits, exponent_bias, width = (23, 127, 32) if single else (52, 1023, 64)

    def codegen(context, builder, signature, args):
        int_type = ir.IntType(width)
        # through int32, which AVX2 converts in vector form (it has no float64 -> int64)
        exponent = builder.sext(builder.fptosi(args[0], ir.IntType(32)), int_type)
        biased = builder.add(exponent, int_type(exponent_bias))
        bits = builder.shl(biased, int_type(mantissa_bits))
        return builder.bitcast(bits, context.get_value_type(like))

    return sig, codegen


_EXPM1_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(13, 0, -1))
_LOG2E = 1.4426950408889634
# Constants given as (float32, float64) pairs. ln 2 = hi + lo, hi short enough for k hi to be
# exact (fdlibm's split for float64); below "lowest", exp(x) rounds to 0.
_LN2_HI = (0.693359375, 6.93147180369123816490e-01)
_LN2_LO = (-2.12194440e-4, 1.90821492927058770002e-10)
_EXP_LOWEST = (-104.0, -746.0)
# 2^k is built as 2^(k + 64) 2^-64, so that both factors stay normal down to "lowest".
_POW2_SHIFT = 64.0


@_jit
def _constant(pair, like):
    """The entry of a (float32, float64) pair for the type of ``like``, in that type."""
    return _like(pair[0] if _is_single(like) else pair[1], like)


@_jit
def _exp_reduced(x):
    """(scale, q) with exp(x) = scale (1 + q), scale = 2^k, q = expm1(x - k ln2); x <= 0."""
    lowest = _constant(_EXP_LOWEST, x)
    x_for_k = x if x >= lowest else lowest  # NaN too: k stays a finite number
    x_kept = lowest if x < lowest else x    # NaN stays NaN
    k = np.floor(x_for_k * _like(_LOG2E, x) + _like(0.5, x))
    r = (x_kept - k * _constant(_LN2_HI, x)) - k * _constant(_LN2_LO, x)
    p = _like(0.0, x)
    for c in _EXPM1_TAYLOR:
        p = p * r + _like(c, x)
    shift = _like(_POW2_SHIFT, x)
    return _pow2(k + shift, x) * _pow2(-shift, x), p * r


@_jit
def _exp_nonpositive(x):
    """exp(x) for x <= 0."""
    scale, q = _exp_reduced(x)
    return _like(0.0, x) if x < _constant(_EXP_LOWEST, x) else scale + scale * q


@_jit
def _expm1_nonpositive(x):
    """exp(x) - 1 for x <= 0, accurate near 0."""
    scale, q = _exp_reduced(x)
    return scale * q + (scale - _like(1.0, x))


# --------------------------------------------------------------------------- activations
#
# An activation is a pair of scalar rules, value(z, slope) = act(z) and
# derivatives(z, a, slope) = (act'(z), act''(z)), slope being of the array's float type.
# identity, relu and leaky_relu share one piecewise-linear pair, with slopes 1, 0 and slope.
# A loop over arrays is written once and takes the rules as arguments: _with_activation and
# the loops are inlined into each kernel, so every pair of rules gets its own compiled copy of
# the loop, free of branches on the activation, which vectorises.


@_jit
def _sigmoid_given(z, e):
    """sigmoid(z) from e = exp(-|z|), without overflow for any z."""
    one = _like(1.0, z)
    return one / (one + e) if z >= 0 else e / (one + e)


@_jit
def _sigmoid(z, slope):
    """1 / (1 + exp(-z))."""
    return _sigmoid_given(z, _exp_nonpositive(-abs(z)))


@_jit
def _sigmoid_derivatives(z, a, slope):
    """(a (1 - a), a (1 - a) (1 - 2 a))."""
    one = _like(1.0, z)
    d1 = a * (one - a)
    return d1, d1 * (one - _like(2.0, z) * a)


@_jit
def _linear_pieces(z, slope):
    """z above 0 (and for NaN), slope * z below, exactly 0 there when slope is 0 (relu)."""
    if z <= 0:
        return slope * z if slope != 0 else _like(0.0, z)
    return z


@_jit
def _linear_pieces_derivatives(z, a, slope):
    """(1 or slope, 0); the left derivative at the kink, as torch."""
    return (_like(1.0, z) if z > 0 else slope), _like(0.0, z)


@_jit
def _silu(z, slope):
    """z sigmoid(z)."""
    return z * _sigmoid(z, slope)


@_jit
def _silu_derivatives(z, a, slope):
    """(s (1 + z (1 - s)), s (1 - s) (2 + z (1 - 2 s))) with s = sigmoid(z)."""
    one, two = _like(1.0, z), _like(2.0, z)
    s = _sigmoid(z, slope)
    return s * (one + z * (one - s)), s * (one - s) * (two + z * (one - two * s))


@_jit
def _tanh(z, slope):
    """tanh(z) = -expm1(-2|z|) / (2 + expm1(-2|z|)), with the sign of z."""
    two = _like(2.0, z)
    em = _expm1_nonpositive(-two * abs(z))
    return math.copysign(-em / (two + em), z)


@_jit
def _tanh_derivatives(z, a, slope):
    """(1 - a^2, -2 a (1 - a^2))."""
    d1 = _like(1.0, z) - a * a
    return d1, -_like(2.0, z) * a * d1


@njit(inline="always")
def _with_activation(kind, slope, loop, args):
    """loop(value, derivatives, slope, args) with the scalar rules of activation ``kind``."""
    if kind == IDENTITY or kind == RELU or kind == LEAKY_RELU:
        piece_slope = 1.0 if kind == IDENTITY else (0.0 if kind == RELU else slope)
        loop(_linear_pieces, _linear_pieces_derivatives, piece_slope, args)
    elif kind == SILU:
        loop(_silu, _silu_derivatives, slope, args)
    elif kind == TANH:
        loop(_tanh, _tanh_derivatives, slope, args)
    elif kind == SIGMOID:
        loop(_sigmoid, _sigmoid_derivatives, slope, args)
    else:
        raise ValueError("unknown activation code")


@njit(inline="always")
def _chain_rule_loop(value, derivatives, slope, args):
    """grad_z = act'(z) grad_a, on flat arrays."""
    z, a, grad_a, grad_z = args
    s = _like(slope, z)
    for i in range(z.size):
        grad_z[i] = derivatives(z[i], a[i], s)[0] * grad_a[i]


@_kernel("i f r1 r1 r1 w1")
def _activation_backward(kind, slope, z, a, grad_a, grad_z):
    """grad_z = grad_a act'(z), elementwise on flat arrays."""
    _with_activation(kind, slope, _chain_rule_loop, (z, a, grad_a, grad_z))


# --------------------------------------------------------------------------- dense layer
#
# Products by shape. A thin layer, with one input or one output, gets row loops instead of
# BLAS: with in = 1, x W^T is an outer product, computed in the elementwise pass; with
# out = 1 it is a dot product per row. Anything else goes to BLAS.


@_jit
def _is_thin(W):
    """A layer with one input or one output."""
    return W.shape[0] == 1 or W.shape[1] == 1


@_kernel("r2 r2 w2", fastmath={"reassoc", "contract"})
def _product(x, W, z):
    """z = x W^T, except for in = 1, which the elementwise pass computes itself."""
    if x.shape[1] == 1:
        return
    if W.shape[0] == 1:  # a dot product per row
        for i in range(x.shape[0]):
            acc = _like(0.0, z)
            for k in range(x.shape[1]):
                acc += x[i, k] * W[0, k]
            z[i, 0] = acc
    else:
        _gemm(x, False, W, True, 0.0, z)


@_kernel("r2 r2 r2 w2 w2 f b", fastmath={"reassoc", "contract"})
def _thin_products(g, x, W, grad_W, grad_x, beta, need_grad_x):
    """:func:`_products` of a thin layer, as row loops (W and grad_W viewed as one row)."""
    w = W.reshape(1, W.size)
    grad_w = grad_W.reshape(1, W.size)
    if beta == 0:
        grad_w[:] = 0
    if x.shape[1] == 1:  # in = 1: grad_W[:, 0] += g_i x_i0,  grad_x_i0 = g_i . W[:, 0]
        for i in range(g.shape[0]):
            for j in range(g.shape[1]):
                grad_w[0, j] += g[i, j] * x[i, 0]
            if need_grad_x:
                acc = _like(0.0, w)
                for j in range(g.shape[1]):
                    acc += g[i, j] * w[0, j]
                grad_x[i, 0] = acc
    else:  # out = 1: grad_W[0] += g_i0 x_i,  grad_x_i = g_i0 W[0]
        for i in range(g.shape[0]):
            for k in range(x.shape[1]):
                grad_w[0, k] += g[i, 0] * x[i, k]
            if need_grad_x:
                for k in range(x.shape[1]):
                    grad_x[i, k] = g[i, 0] * w[0, k]


@_kernel("w2 r2 r2 w2 o2 f b")
def _products(g, x, W, grad_W, grad_x, beta, need_grad_x):
    """grad_W = g^T x + beta grad_W, and grad_x = g W when need_grad_x (grad_x may be None
    otherwise): the backward products of a layer, g being the gradient of its z or dz."""
    grad_x = _present(grad_x) if need_grad_x else g  # g stands in for None, unwritten
    _check(grad_W.shape == W.shape and (grad_x.shape == x.shape or not need_grad_x))
    if _is_thin(W):
        _thin_products(g, x, W, grad_W, grad_x, beta, need_grad_x)
        return
    _gemm(g, True, x, False, beta, grad_W)
    if need_grad_x:
        _gemm(g, False, W, False, 0.0, grad_x)


@njit(inline="always")
def _forward_rows(value, derivatives, slope, args):
    """z += b (z = x W^T + b for in = 1), a = act(z)."""
    x, W, b, z, a = args
    s = _like(slope, z)
    outer = x.shape[1] == 1
    for i in range(z.shape[0]):
        xi = x[i, 0]
        for j in range(z.shape[1]):
            zij = (xi * W[j, 0] if outer else z[i, j]) + b[j]
            z[i, j] = zij
            a[i, j] = value(zij, s)


@njit(inline="always")
def _tangent_rows(value, derivatives, slope, args):
    """da = act'(z) dz (after dz = dx W^T for in = 1)."""
    dx, W, z, a, dz, da = args
    s = _like(slope, z)
    outer = dx.shape[1] == 1
    for i in range(z.shape[0]):
        dxi = dx[i, 0]
        for j in range(z.shape[1]):
            dzij = dxi * W[j, 0] if outer else dz[i, j]
            dz[i, j] = dzij
            da[i, j] = derivatives(z[i, j], a[i, j], s)[0] * dzij


@njit(inline="always")
def _backward_rows(value, derivatives, slope, args):
    """grad_z = grad_a act'(z), grad_b (+)= sum_rows grad_z."""
    z, a, grad_a, grad_z, grad_b, accumulate = args
    s = _like(slope, z)
    if not accumulate:
        grad_b[:] = 0
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            gij = grad_a[i, j] * derivatives(z[i, j], a[i, j], s)[0]
            grad_z[i, j] = gij
            grad_b[j] += gij


@njit(inline="always")
def _jvp_backward_rows(value, derivatives, slope, args):
    """grad_dz = grad_da d1, grad_z = grad_a d1 + grad_da d2 dz, grad_b (+)= sum_rows grad_z."""
    z, a, dz, grad_a, grad_da, grad_z, grad_dz, grad_b, accumulate = args
    s = _like(slope, z)
    if not accumulate:
        grad_b[:] = 0
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            d1, d2 = derivatives(z[i, j], a[i, j], s)
            gij = d2 * (grad_da[i, j] * dz[i, j]) + grad_a[i, j] * d1
            grad_dz[i, j] = grad_da[i, j] * d1
            grad_z[i, j] = gij
            grad_b[j] += gij


@_kernel("r2 r2 r1 r2")
def _check_layer(x, W, b, z):
    """Raise unless x is (n, in), W (out, in), b (out,) and z (n, out)."""
    _check(W.shape[1] == x.shape[1] and b.shape[0] == W.shape[0]
           and z.shape[0] == x.shape[0] and z.shape[1] == W.shape[0])


@_kernel("r2 r2 r1 i f w2 w2")
def linear_forward(x, W, b, kind, slope, z, a):
    """z = x W^T + b, a = act(z)."""
    _check_layer(x, W, b, z)
    _check(a.shape == z.shape)
    _product(x, W, z)
    _with_activation(kind, slope, _forward_rows, (x, W, b, z, a))


@_kernel("r2 r2 r2 r2 r2 i f w2 w2 w1 o2 b b")
def linear_backward(x, W, z, a, grad_a, kind, slope, grad_z, grad_W, grad_b, grad_x,
                    accumulate, need_grad_x):
    """grad_z = grad_a act'(z), grad_W (+)= grad_z^T x, grad_b (+)= sum_rows grad_z,
    grad_x = grad_z W when need_grad_x (grad_x may be None otherwise)."""
    _check_layer(x, W, grad_b, z)
    _check(a.shape == z.shape and grad_a.shape == z.shape and grad_z.shape == z.shape)
    _with_activation(kind, slope, _backward_rows, (z, a, grad_a, grad_z, grad_b, accumulate))
    _products(grad_z, x, W, grad_W, grad_x, 1.0 if accumulate else 0.0, need_grad_x)


def linear_backward_input(W, z, a, grad_a, kind, slope, grad_z, grad_x):
    """grad_z = grad_a act'(z), grad_x = grad_z W: the backward to the input alone."""
    _check(a.shape == z.shape and grad_a.shape == z.shape and grad_z.shape == z.shape
           and W.shape[0] == z.shape[1] and grad_x.shape[0] == z.shape[0]
           and grad_x.shape[1] == W.shape[1])
    _activation_backward(kind, slope, *_flat(z, a, grad_a, grad_z))
    _gemm(grad_z, False, W, False, 0.0, grad_x)


@_kernel("r2 r2 r2 r1 i f w2 w2 w2 w2")
def linear_jvp(x, dx, W, b, kind, slope, z, a, dz, da):
    """z = x W^T + b, a = act(z), dz = dx W^T, da = act'(z) dz."""
    _check(dx.shape == x.shape and dz.shape == z.shape and da.shape == z.shape)
    linear_forward(x, W, b, kind, slope, z, a)
    _product(dx, W, dz)
    _with_activation(kind, slope, _tangent_rows, (dx, W, z, a, dz, da))


@_kernel("r2 r2 r2 r2 r2 r2 r2 r2 i f w2 w2 w2 w1 o2 o2 b b")
def linear_jvp_backward(x, dx, W, z, a, dz, grad_a, grad_da, kind, slope,
                        grad_z, grad_dz, grad_W, grad_b, grad_x, grad_dx,
                        accumulate, need_grad_x):
    """Cotangents of (a, da) to those of (W, b, x, dx); with d1 = act'(z), d2 = act''(z):
    grad_dz = grad_da d1, grad_z = grad_a d1 + grad_da d2 dz,
    grad_W (+)= grad_z^T x + grad_dz^T dx, grad_b (+)= sum_rows grad_z,
    grad_x = grad_z W and grad_dx = grad_dz W when need_grad_x (else they may be None)."""
    _check_layer(x, W, grad_b, z)
    _check(dx.shape == x.shape and a.shape == z.shape and dz.shape == z.shape
           and grad_a.shape == z.shape and grad_da.shape == z.shape
           and grad_z.shape == z.shape and grad_dz.shape == z.shape)
    _with_activation(kind, slope, _jvp_backward_rows,
                     (z, a, dz, grad_a, grad_da, grad_z, grad_dz, grad_b, accumulate))
    _products(grad_z, x, W, grad_W, grad_x, 1.0 if accumulate else 0.0, need_grad_x)
    _products(grad_dz, dx, W, grad_W, grad_dx, 1.0, need_grad_x)


# --------------------------------------------------------------------------- column blocks and rows


@_kernel("r2 i w2 i i i b")
def _copy_columns(source, source_start, out, out_start, width, count, accumulate):
    """For c < width: out[i, out_start + c] (+)= source[i, source_start + c] when c < count,
    and, unless accumulate, out[i, out_start + c] = 0 for count <= c."""
    for i in range(out.shape[0]):
        for c in range(count):
            value = source[i, source_start + c]
            out[i, out_start + c] = out[i, out_start + c] + value if accumulate else value
        if not accumulate:
            for c in range(count, width):
                out[i, out_start + c] = 0


@_kernel("r2 w2 i i b")
def put_columns(node, h, start, width, accumulate):
    """The block h[:, start:start + width]: its leading w columns (+)= node (n, w); unless
    accumulate, its other columns = 0."""
    count = node.shape[1]
    _check(h.shape[0] == node.shape[0] and 0 <= start and count <= width
           and start + width <= h.shape[1])
    _copy_columns(node, 0, h, start, width, count, accumulate)


@_kernel("r2 i w2 b")
def take_columns(grad_h, start, grad_node, accumulate):
    """grad_node (+)= grad_h[:, start:start + w], w = grad_node's width."""
    width = grad_node.shape[1]
    _check(grad_h.shape[0] == grad_node.shape[0] and 0 <= start
           and start + width <= grad_h.shape[1])
    _copy_columns(grad_h, start, grad_node, 0, width, width, accumulate)


@_kernel("r2 j1 i w2 i i")
def gather_rows(source, index, start, out, offset, count):
    """out[offset + k] = source[index[start + k]] for k < count (int64 row numbers)."""
    _check(out.shape[1] == source.shape[1] and 0 <= offset and 0 <= count
           and offset + count <= out.shape[0] and 0 <= start and start + count <= index.size)
    for k in range(count):
        row = index[start + k]
        _check(0 <= row < source.shape[0])
        for c in range(out.shape[1]):
            out[offset + k, c] = source[row, c]


# --------------------------------------------------------------------------- losses
#
# Each loss is a scalar rule (p, t) -> (l, dl/dp) evaluated in float64; the kernel averages.

_BCE_WITH_LOGITS, _HINGE, _HINGE_GENERATOR = range(3)


@_jit
def _bce_with_logits_rule(s, t):
    """l = max(s, 0) - s t + log(1 + exp(-|s|)),  dl/ds = sigmoid(s) - t."""
    e = math.exp(-abs(s))
    return max(s, 0.0) - s * t + math.log1p(e), _sigmoid_given(s, e) - t


@_jit
def _hinge_rule(s, t):
    """l = max(0, 1 - t s),  dl/ds = -t [1 - t s > 0]."""
    margin = 1 - t * s
    return max(margin, 0.0), -t if margin > 0 else 0.0


@_jit
def _hinge_generator_rule(s, t):
    """l = -s,  dl/ds = -1 (t is not read)."""
    return -s, -1.0


@njit(inline="always")
def _mean_of(rule, pred, target, grad):
    """mean_i l_i, with grad_i = (dl/dp)_i / N, for the scalar rule (p, t) -> (l, dl/dp)."""
    n = pred.size
    total = 0.0
    for i in range(n):
        loss, slope = rule(float(pred[i]), float(target[i]))
        grad[i] = slope / n
        total += loss
    return total / n


@_kernel("i r1 r1 w1", ret=types.float64)
def _mean_loss(which, pred, target, grad):
    """L = mean_i l(p_i, t_i); grad = dL/dp (each rule's derivative / N)."""
    if which == _BCE_WITH_LOGITS:
        return _mean_of(_bce_with_logits_rule, pred, target, grad)
    if which == _HINGE:
        return _mean_of(_hinge_rule, pred, target, grad)
    return _mean_of(_hinge_generator_rule, pred, target, grad)


def bce_with_logits(logits, target, grad):
    """Mean of max(s, 0) - s t + log(1 + exp(-|s|)); grad = (sigmoid(s) - t) / N."""
    return _mean_loss(_BCE_WITH_LOGITS, *_flat(logits, target, grad))


def hinge(scores, target, grad):
    """Mean of max(0, 1 - t s) for t in {-1, +1}; grad = -t [1 - t s > 0] / N."""
    return _mean_loss(_HINGE, *_flat(scores, target, grad))


def hinge_generator(scores, grad):
    """-mean(s): the hinge GAN's generator loss; grad = -1 / N."""
    return _mean_loss(_HINGE_GENERATOR, *_flat(scores, scores, grad))


@_kernel("r2 r2 w2", ret=types.float64)
def softmax_cross_entropy(logits, target, grad):
    """Mean over rows of sum_j t_ij (lse_i - s_ij), lse_i = log sum_j exp(s_ij);
    grad_ij = (exp(s_ij - lse_i) sum_k t_ik - t_ij) / N. Per row in float64: the max, the
    shifted exps (all <= 1) and their log, the loss, then the gradient."""
    _check(target.shape == logits.shape and grad.shape == logits.shape)
    n, k = logits.shape
    total = 0.0
    for i in range(n):
        shift = float(logits[i, 0])
        for j in range(1, k):
            shift = max(shift, float(logits[i, j]))
        exps = 0.0
        for j in range(k):
            exps += _exp_nonpositive(float(logits[i, j]) - shift)
        lse = shift + math.log(exps)
        mass = 0.0
        for j in range(k):
            t = float(target[i, j])
            mass += t
            total += t * (lse - float(logits[i, j]))
        for j in range(k):
            grad[i, j] = (_exp_nonpositive(float(logits[i, j]) - lse) * mass
                          - float(target[i, j])) / n
    return total / n


# --------------------------------------------------------------------------- the models' losses
#
# numpy_ref's pieces of the GAN's, the VAE's and the SGM's losses. Elementwise results are
# computed in the arrays' float type, operation by operation in numpy_ref's order, so that a
# step on this backend gives numpy's numbers to the bit; losses are summed in float64, in order.


@_kernel("r2 f f w2", ret=types.float64)
def gradient_penalty(tangent, target, scale, grad_tangent):
    """P = w (|t_i*| - L)^2 with w = scale / L^2, L = target, i* the first row of largest norm
    (norms in float64); grad_tangent = 2 w (|t_i*| - L) t_i* / |t_i*| in row i* (when
    |t_i*| > 0), zero elsewhere. Returns P."""
    _check(grad_tangent.shape == tangent.shape and tangent.shape[0] >= 1)
    best, row = -1.0, 0
    for i in range(tangent.shape[0]):
        squares = 0.0
        for j in range(tangent.shape[1]):
            squares += np.float64(tangent[i, j]) * tangent[i, j]
        norm = math.sqrt(squares)
        if norm > best or (math.isnan(norm) and not math.isnan(best)):  # numpy's argmax
            best, row = norm, i
    grad_tangent[:, :] = 0
    weight = scale / target ** 2
    gap = best - target
    if best > 0:
        factor = _like(2 * weight * gap / best, tangent)
        for j in range(tangent.shape[1]):
            grad_tangent[row, j] = tangent[row, j] * factor
    return weight * (gap * gap)


@_jit
def _variance_term(std, kl_power):
    """std^(2k) in the float type of std: (std std)^k, k = kl_power (1 or 2)."""
    variance = std * std
    return variance if kl_power == 1 else variance * variance


@_kernel("r2 r2 r2 r2")
def _check_code(code, eps, z, std):
    """Raise unless code is (B, 2p) and eps, z and std are (B, p)."""
    _check(code.shape[0] == eps.shape[0] and code.shape[1] == 2 * eps.shape[1]
           and z.shape == eps.shape and std.shape == eps.shape)


@_kernel("r2 r2 i w2 r2", ret=types.float64)
def _vae_sample(code, eps, kl_power, z, std):
    """z = std eps + mu; returns 1/2 sum (mu^2 + std^(2k) - lv - 1), summed in float64."""
    batch, p = eps.shape
    total = 0.0
    for i in range(batch):
        for j in range(p):
            mu, s = code[i, j], std[i, j]
            z[i, j] = s * eps[i, j] + mu
            total += (np.float64(mu) * mu + _variance_term(s, kl_power) - np.float64(code[i, p + j])
                      - 1.0)
    return total / 2


def vae_reparameterize(code, eps, kl_power, z, std):
    """std = exp(lv / 2), z = mu + std eps from code = [mu, lv] (B, 2p); returns the KL term
    1/2 sum (mu^2 + std^(2k) - lv - 1), k = kl_power (1 or 2), summed in float64.

    The exponential is numpy's, into ``std`` (no allocation): a CPU run keeps the numbers it
    had with numpy's vectorised exp, which rounds many float32 arguments differently from
    libm's, the exp numba would call."""
    _check_code(code, eps, z, std)
    if kl_power not in (1, 2):
        raise ValueError(f"kl_power must be 1 or 2, got {kl_power!r}")
    np.multiply(code[:, eps.shape[1]:], 0.5, out=std)
    np.exp(std, out=std)
    return _vae_sample(code, eps, kl_power, z, std)


@_kernel("r1 r1 f w1", ret=types.float64)
def _vae_residual(reconstruction, x, variance, residual):
    """residual = (g - x) times 1/c in the float type; returns sum (g - x)^2 / (2c)."""
    scale = _like(1 / variance, residual)
    total = 0.0
    for i in range(x.size):
        difference = reconstruction[i] - x[i]
        total += np.float64(difference) * difference
        residual[i] = difference * scale
    return total / (2 * variance)


def vae_residual(reconstruction, x, variance, residual):
    """residual = (g(z) - x) / c; returns sum |g(z) - x|^2 / (2c) (float64 sum)."""
    g, data, out = _flat(reconstruction, x, residual)
    return _vae_residual(g, data, float(variance), out)


@_kernel("r2 r2 r2 r2 i w2")
def vae_code_gradient(code, eps, std, grad_z, kl_power, grad_code):
    """grad_code = [dL/dmu, dL/dlv] from dL/dz: dL/dmu = dL/dz + mu,
    dL/dlv = dL/dz eps std / 2 + (k std^(2k) - 1) / 2, in the float type."""
    batch, p = std.shape
    _check(code.shape[0] == batch and code.shape[1] == 2 * p and grad_code.shape == code.shape
           and eps.shape == std.shape and grad_z.shape == std.shape)
    half, kl_slope = _like(0.5, std), _like(0.5 * kl_power, std)
    for i in range(batch):
        for j in range(p):
            s, g = std[i, j], grad_z[i, j]
            grad_code[i, j] = g + code[i, j]
            grad_code[i, p + j] = g * eps[i, j] * s * half + (_variance_term(s, kl_power) * kl_slope
                                                             - half)


@_kernel("r1 r1 f w1")
def _score_matching_noisy(x, eps, sigma, noisy):
    level = _like(sigma, x)
    for i in range(x.size):
        noisy[i] = x[i] + level * eps[i]


def score_matching_noisy(x, eps, sigma, noisy):
    """noisy = x + sigma eps (sigma rounded to the float type)."""
    clean, noise, out = _flat(x, eps, noisy)
    _score_matching_noisy(clean, noise, float(sigma), out)


@_kernel("r1 r1 f i w1", ret=types.float64)
def _score_matching_loss(score, eps, sigma, weight_power, grad):
    level = _like(sigma, score)
    weight = sigma if weight_power == 1 else sigma * sigma
    slope = _like(2 * weight, score)
    total = 0.0
    for i in range(score.size):
        residual = score[i] + eps[i] / level
        total += np.float64(residual) * residual
        grad[i] = slope * residual
    return weight * total


def score_matching_loss(score, eps, sigma, weight_power, grad):
    """grad = 2 w (s + eps / sigma); returns w sum (s + eps / sigma)^2 (float64 sum),
    w = sigma^k, k = weight_power (1 or 2)."""
    if weight_power not in (1, 2):
        raise ValueError(f"weight_power must be 1 or 2, got {weight_power!r}")
    s, noise, out = _flat(score, eps, grad)
    return _score_matching_loss(s, noise, float(sigma), weight_power, out)


@_kernel("r2 r2 j1 r1 w2")
def score_matching_noisy_levels(x, eps, levels, sigmas, noisy):
    """noisy_i = x_i + eps_i sigma_{l_i}, in the float type."""
    _check(eps.shape == x.shape and noisy.shape == x.shape and levels.size == x.shape[0])
    for i in range(x.shape[0]):
        _check(0 <= levels[i] < sigmas.size)
        level = sigmas[levels[i]]
        for j in range(x.shape[1]):
            noisy[i, j] = x[i, j] + eps[i, j] * level


@_kernel("r2 r2 r2 j1 r1 r1 f w2", ret=types.float64)
def score_matching_loss_levels(raw, noisy, eps, levels, raw_scales, skips, center, grad):
    """R_i = ((x~_i - mu) (-K_l) + eps_i) + r_i A_l, grad_i = (R_i A_l) (1 / B) in the float
    type, l = l_i; returns sum |R_i|^2 / (2B) (float64 sum)."""
    n = raw.shape[0]
    _check(noisy.shape == raw.shape and eps.shape == raw.shape and grad.shape == raw.shape
           and levels.size == n and skips.size == raw_scales.size)
    mu, share = _like(center, raw), _like(1.0 / n, raw)
    total = 0.0
    for i in range(n):
        _check(0 <= levels[i] < raw_scales.size)
        scale, skip = raw_scales[levels[i]], -skips[levels[i]]
        for j in range(raw.shape[1]):
            residual = (noisy[i, j] - mu) * skip + eps[i, j] + raw[i, j] * scale
            total += np.float64(residual) * residual
            grad[i, j] = residual * scale * share
    return total / (2 * n)


# --------------------------------------------------------------------------- f-divergence duals


@_kernel("r1 r1 w1 w1", ret=types.float64)
def _kl_dual_loss(phi_p, phi_q, grad_p, grad_q):
    """The loss and gradients of :func:`kl_dual_loss` on flat arrays."""
    n, m = phi_p.size, phi_q.size
    _check(grad_p.size == n and grad_q.size == m and n > 0 and m > 0)
    top = -math.inf
    for j in range(m):
        top = max(top, float(phi_q[j]))
    total = 0.0
    for j in range(m):
        total += math.exp(float(phi_q[j]) - top)
    for j in range(m):
        grad_q[j] = math.exp(float(phi_q[j]) - top) / total
    mean_p = 0.0
    for i in range(n):
        mean_p += float(phi_p[i])
        grad_p[i] = -1.0 / n
    return -(mean_p / n - (math.log(total / m) + top))


def kl_dual_loss(phi_p, phi_q, grad_p, grad_q):
    """-[mean phi_p - log mean exp(phi_q)]; grad_p = -1/N, grad_q = softmax(phi_q) (float64 sums)."""
    p, gp = _flat(phi_p, grad_p)
    q, gq = _flat(phi_q, grad_q)
    return _kl_dual_loss(p, q, gp, gq)


@_kernel("r1 r1 f f w1 w1 w1", ret=types.float64)
def _alpha_dual_loss(phi_p, phi_q, nu, alpha, grad_p, grad_q, grad_nu):
    """The loss and gradients of :func:`alpha_dual_loss` on flat arrays."""
    n, m = phi_p.size, phi_q.size
    _check(grad_p.size == n and grad_q.size == m and grad_nu.size == 1 and n > 0 and m > 0)
    power, inverse = alpha / (alpha - 1.0), 1.0 / (alpha - 1.0)
    constant = 1.0 / (alpha * (alpha - 1.0))
    conj_sum, slope_sum = 0.0, 0.0
    for j in range(m):
        base = (alpha - 1.0) * max(float(phi_q[j]) - nu, 0.0)
        slope = base ** inverse
        conj_sum += base ** power / alpha + constant
        slope_sum += slope
        grad_q[j] = slope / m
    mean_p = 0.0
    for i in range(n):
        mean_p += float(phi_p[i])
        grad_p[i] = -1.0 / n
    grad_nu[0] = 1.0 - slope_sum / m
    return -(mean_p / n - nu - conj_sum / m)


def alpha_dual_loss(phi_p, phi_q, nu, alpha, grad_p, grad_q, grad_nu):
    """-[mean phi_p - nu - mean f_alpha*(phi_q - nu)]; gradients as :func:`numpy_ref.alpha_dual_loss`."""
    p, gp = _flat(phi_p, grad_p)
    q, gq = _flat(phi_q, grad_q)
    return _alpha_dual_loss(p, q, float(nu), float(alpha), gp, gq, grad_nu)


@_kernel("w2 r2 f", ret=types.float64)
def particle_step(y, velocity, dt):
    """y <- y - dt velocity in place; returns mean_i |velocity_i|^2 (float64 sum)."""
    _check(velocity.shape == y.shape)
    total = 0.0
    for i in range(y.shape[0]):
        for k in range(y.shape[1]):
            v = float(velocity[i, k])
            y[i, k] -= _like(dt * v, y)
            total += v * v
    return total / y.shape[0]


# --------------------------------------------------------------------------- optimizer


@_kernel("w1 r1 w1 w1 i f f f f")
def adam_step(param, grad, m, v, step, lr, beta1, beta2, eps):
    """torch.optim.Adam on a flat buffer, step t counted from 1:
    m <- beta1 m + (1 - beta1) g,  v <- beta2 v + (1 - beta2) g^2,
    param <- param - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)."""
    _check(grad.size == param.size and m.size == param.size and v.size == param.size)
    step_size = lr / (1 - beta1 ** float(step))
    root_bias2 = math.sqrt(1 - beta2 ** float(step))
    for i in range(param.size):
        g = grad[i]
        m[i] = beta1 * m[i] + (1 - beta1) * g
        v[i] = beta2 * v[i] + (1 - beta2) * g * g
        param[i] -= step_size * m[i] / (math.sqrt(v[i]) / root_bias2 + eps)


# --------------------------------------------------------------------------- spectral norm


@_kernel("r2 i r2 i", ret=types.float64, fastmath={"reassoc", "contract"})
def _dot(a, i, b, j):
    """a[i] . b[j] (rows of 2-D arrays), accumulated in float64 in any order."""
    acc = 0.0
    for k in range(a.shape[1]):
        acc += float(a[i, k]) * b[j, k]
    return acc


@_jit
def _normalize(u):
    """u <- u / max(||u||, eps), the norm taken in float64."""
    row = u.reshape(1, u.size)
    scale = 1.0 / max(math.sqrt(_dot(row, 0, row, 0)), SPECTRAL_NORM_EPS)
    for i in range(u.size):
        u[i] *= scale


@_kernel("r2 w1 w1 i w2", ret=types.float64)
def spectral_norm_forward(W, u, v, n_power_iterations, W_sn):
    """Power iterations v <- W^T u / ||W^T u||, u <- W v / ||W v|| (none in evaluation),
    then sigma = u . W v (in float64) and W_sn = W / sigma. Returns sigma."""
    rows, cols = W.shape
    _check(u.size == rows and v.size == cols and W_sn.shape == W.shape)
    v_row = v.reshape(1, cols)
    for _ in range(n_power_iterations):
        v[:] = 0
        for i in range(rows):
            for j in range(cols):
                v[j] += u[i] * W[i, j]
        _normalize(v)
        for i in range(rows):
            u[i] = _dot(W, i, v_row, 0)
        _normalize(u)
    sigma = 0.0
    for i in range(rows):
        sigma += u[i] * _dot(W, i, v_row, 0)
    for i in range(rows):
        for j in range(cols):
            W_sn[i, j] = W[i, j] / sigma
    return sigma


@_kernel("r2 r1 r1 f r2 w2 b")
def spectral_norm_backward(W, u, v, sigma, grad_W_sn, grad_W, accumulate):
    """grad_W (+)= grad_W_sn / sigma - (<grad_W_sn, W> / sigma^2) u v^T, the inner product
    in float64."""
    _check(u.size == W.shape[0] and v.size == W.shape[1] and grad_W_sn.shape == W.shape
           and grad_W.shape == W.shape)
    coupling = _dot(grad_W_sn.reshape(1, W.size), 0, W.reshape(1, W.size), 0) / sigma ** 2
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            step = grad_W_sn[i, j] / sigma - coupling * (u[i] * v[j])
            grad_W[i, j] = grad_W[i, j] + step if accumulate else step


# --------------------------------------------------------------------------- annealed Langevin
#
# The noise is numpy_ref's counter-based generator (:mod:`cpu_noise`); the score is evaluated
# through the pieces of the first layer.

@njit(**_OPTIONS, fastmath={"reassoc", "contract", "nsz"})
def _piece_score(xi, a, c, w3, b3, slope2):
    """w3 . leaky_slope2(a xi + c) + b3, for one piece's rows a, c (the hot loop, vectorized)."""
    acc = b3
    for j in range(a.size):
        u = a[j] * xi + c[j]
        acc += w3[j] * max(u, slope2 * u)
    return acc


@njit(**_OPTIONS, fastmath={"reassoc", "contract", "nsz"})
def _piece_score_and_slope(xi, a, c, w3, b3, slope2):
    """(s, s') on one piece: s = w3 . leaky_slope2(u) + b3 and s' = w3 . (leaky_slope2'(u) * a)
    with u = a xi + c (a is d u / d xi on the piece; the left derivative at u = 0)."""
    acc = b3
    dacc = _like(0.0, b3)
    for j in range(a.size):
        u = a[j] * xi + c[j]
        acc += w3[j] * max(u, slope2 * u)
        dacc += w3[j] * a[j] * (_like(1.0, b3) if u > 0 else slope2)
    return acc, dacc


@njit(inline="always")
def _langevin_loop(x, kinks, A, C, beff2, w3, beff3, alphas, n_steps_per_level, seed,
                   first_step, slope2, dx0, grad_sq, rows, track):
    """The loop of :func:`_langevin_on_pieces`; inlined once per value of ``track``, so that
    the compiler removes the gradient's work from the samples-only copy."""
    slope = _like(slope2, x)
    base = stream_base(seed)
    for level in range(alphas.size):
        B = C + beff2[level]
        b3 = beff3[level]
        alpha = _like(alphas[level], x)
        half_alpha = _like(alphas[level] / 2, x)
        root_alpha = _like(math.sqrt(alphas[level]), x)
        start = first_step + level * n_steps_per_level
        for i in range(x.size):
            key = sample_key(base, rows[i])
            xi = x[i]
            di = dx0[i]
            ni = grad_sq[i]
            p = 0
            z_odd = 0.0
            for t in range(start, start + n_steps_per_level):
                while p > 0 and xi < kinks[p - 1]:
                    p -= 1
                while p < kinks.size and xi >= kinks[p]:
                    p += 1
                if track:
                    score, slope_of_score = _piece_score_and_slope(xi, A[p], B[p], w3, b3,
                                                                   slope)
                    f = _like(1.0, x) + half_alpha * slope_of_score
                    di = f * di
                    ni = f * f * ni + alpha
                else:
                    score = _piece_score(xi, A[p], B[p], w3, b3, slope)
                if t % 2 == 0 or t == start:
                    radius, angle = box_muller(key, t // 2)
                    z = radius * math.cos(angle)
                    z_odd = radius * math.sin(angle)
                if t % 2 == 1:
                    z = z_odd
                xi = xi + (half_alpha * score + root_alpha * _like(z, x))
            x[i] = xi
            if track:
                dx0[i] = di
                grad_sq[i] = ni


@_kernel("w1 r1 r2 r2 r2 r1 r1 r1 i i i f o1 o1 j1")
def _langevin_on_pieces(x, kinks, A, C, beff2, w3, beff3, alphas, n_steps_per_level, seed,
                        first_step, slope2, dx0, grad_sq, rows):
    """The loop of :func:`annealed_langevin` on the tables of :func:`_first_layer_pieces`;
    chain i draws the noise of sample rows[i].

    Samples are independent: each keeps x in a register for the steps of a level, walking
    from piece to piece as it moves (a step moves it across few kinks). With ``dx0`` and
    ``grad_sq`` (both or neither), each step also applies f = 1 + (alpha / 2) s'(x),
    dx0 <- f dx0 and grad_sq <- f^2 grad_sq + alpha, with s'(x) from the same piece's rows.
    """
    if dx0 is None:  # x stands in for the arrays, unwritten
        _langevin_loop(x, kinks, A, C, beff2, w3, beff3, alphas, n_steps_per_level, seed,
                       first_step, slope2, x, x, rows, False)
    else:
        _langevin_loop(x, kinks, A, C, beff2, w3, beff3, alphas, n_steps_per_level, seed,
                       first_step, slope2, _present(dx0), _present(grad_sq), rows, True)


def annealed_langevin(x, W1, b1, W2a, beff2, W3a, beff3, alphas, n_steps_per_level, seed,
                      first_step, slope1, slope2, dx0=None, grad_sq=None, rows=None):
    """x <- x + (alpha_l / 2) s_l(x) + sqrt(alpha_l) z, n_steps_per_level times per level l,
    in place, with s_l(x) = W3a leaky(W2a leaky(W1 x + b1) + beff2[l]) + beff3[l] (see
    numpy_ref.annealed_langevin for the arguments and the noise). ``dx0`` and ``grad_sq``
    (n,), where given, carry the sampler's gradient on in place: per step, with
    f = 1 + (alpha_l / 2) s_l'(x), dx0 <- f dx0 and grad_sq <- f^2 grad_sq + alpha_l.
    ``rows``, where given, are the chains' sample indices (numpy_ref.langevin_rows).

    A plain-Python front: it tabulates the first layer's pieces (:func:`_first_layer_pieces`),
    so that a step costs s_l(x) = W3a leaky(A_p x + C_p + beff2[l]) + beff3[l], about 600
    flops instead of the 19 000 of the H1 x H2 product, then runs the compiled loop. On a
    piece, s_l'(x) = W3a (leaky'(A_p x + C_p + beff2[l]) * A_p): one more multiply-add per
    unit of the same pass.
    """
    n_levels, (n_hidden2, n_hidden1) = alphas.size, W2a.shape
    if (x.ndim != 1 or W1.shape != (n_hidden1, 1) or b1.shape != (n_hidden1,)
            or beff2.shape != (n_levels, n_hidden2) or W3a.shape != (1, n_hidden2)
            or beff3.shape != (n_levels,)
            or any(a is not None and a.shape != x.shape for a in (dx0, grad_sq))):
        raise ValueError("annealed_langevin: array shapes do not fit together")
    if (dx0 is None) != (grad_sq is None):  # the loop updates both or neither
        given = dx0 if grad_sq is None else grad_sq
        other = np.ones_like(x)
        pair = (given, other) if grad_sq is None else (other, given)
        annealed_langevin(x, W1, b1, W2a, beff2, W3a, beff3, alphas, n_steps_per_level, seed,
                          first_step, slope1, slope2, *pair, rows)
        return
    rows = langevin_rows(rows, x.size)
    kinks, A, C = _first_layer_pieces(W1, b1, W2a, slope1)
    _langevin_on_pieces(x, kinks, A, C, beff2, np.ascontiguousarray(W3a[0]), beff3, alphas,
                        n_steps_per_level, seed, first_step, slope2, dx0, grad_sq, rows)


# --------------------------------------------------------------------------- annealed Langevin, d dimensions
#
# A step is three products (linear_forward: BLAS, then bias and activation in one pass) and one
# pass that scales the score, draws the noise and moves x. Coordinate j of sample i reads the
# noise of flat index i d + j, as numpy_ref.annealed_langevin_mlp does, drawn by
# cpu_noise.normal_pair, whose loop vectorises (libm's Box-Muller cost more than the three
# products' elementwise work together).


@_kernel("w2 r2 f f f f i i i w2")
def _langevin_move(x, raw, scale, shrink, center, root_alpha, seed, step, start, z_odd):
    """x <- x + scale raw - shrink (x - center) + root_alpha z(seed, i d + j, step), in one
    pass over x.

    The normals of steps 2q and 2q + 1 are one Box-Muller pair: an even step (or the first
    step of a call) draws the pair of every coordinate, uses the half of its step and keeps the
    sine half in z_odd, which the odd step that follows reads.
    """
    flat_x, flat_raw, flat_odd = x.reshape(-1), raw.reshape(-1), z_odd.reshape(-1)
    s = _like(scale, x)
    k = _like(shrink, x)
    c = _like(center, x)
    r = _like(root_alpha, x)
    if step % 2 == 0 or step == start:
        base = stream_base(seed)
        odd = step % 2 == 1
        for flat in range(flat_x.size):
            z_even, z_next = normal_pair(sample_key(base, flat), step // 2)
            flat_odd[flat] = _like(z_next, x)
            noise = flat_odd[flat] if odd else _like(z_even, x)
            xf = flat_x[flat]
            flat_x[flat] = xf + ((s * flat_raw[flat] - k * (xf - c)) + r * noise)
    else:
        for flat in range(flat_x.size):
            xf = flat_x[flat]
            flat_x[flat] = xf + ((s * flat_raw[flat] - k * (xf - c)) + r * flat_odd[flat])


@_kernel("w2 r2 r2 r2 r2 r2 r1 r1 r1 f r1 i i i i f w2 w2 w2 w2 w2 w2")
def _langevin_mlp_loop(x, W1, beff1, W2, beff2, W3, b3, out_scales, skip_scales, center, alphas,
                       n_steps_per_level, seed, first_step, kind, slope, z1, a1, z2, a2, raw,
                       z_odd):
    """The loop of :func:`annealed_langevin_mlp` on the caller's scratch arrays."""
    step = first_step
    for level in range(alphas.size):
        half_alpha = alphas[level] / 2
        root_alpha = math.sqrt(alphas[level])
        scale, shrink = half_alpha * out_scales[level], half_alpha * skip_scales[level]
        for _ in range(n_steps_per_level):
            linear_forward(x, W1, beff1[level], kind, slope, z1, a1)
            linear_forward(a1, W2, beff2[level], kind, slope, z2, a2)
            linear_forward(a2, W3, b3, IDENTITY, 0.0, raw, raw)
            _langevin_move(x, raw, scale, shrink, center, root_alpha, seed, step, first_step, z_odd)
            step += 1


def annealed_langevin_mlp(x, W1, beff1, W2, beff2, W3, b3, out_scales, skip_scales, center,
                          alphas, n_steps_per_level, seed, first_step, kind, slope):
    """x (n, d) <- x + (alpha_l / 2) s_l(x) + sqrt(alpha_l) z in place, n_steps_per_level
    times per level l, with s_l(x) = out_scales[l] (W3 act(W2 act(W1 x + beff1[l]) + beff2[l])
    + b3) - skip_scales[l] (x - center) (see numpy_ref.annealed_langevin_mlp for the arguments
    and the noise).

    A plain-Python front that checks the shapes and allocates the activations once per call
    (n x (H1 + H1 + H2 + H2 + 2 d) floats); the compiled loop then allocates nothing.
    """
    n_levels = alphas.size
    n, d = x.shape if x.ndim == 2 else (0, 0)
    h1, h2 = W1.shape[0], W2.shape[0]
    if (x.ndim != 2 or W1.shape != (h1, d) or beff1.shape != (n_levels, h1)
            or W2.shape != (h2, h1) or beff2.shape != (n_levels, h2) or W3.shape != (d, h2)
            or b3.shape != (d,) or out_scales.shape != (n_levels,)
            or skip_scales.shape != (n_levels,)):
        raise ValueError("annealed_langevin_mlp: array shapes do not fit together")
    z1, a1 = np.empty((n, h1), x.dtype), np.empty((n, h1), x.dtype)
    z2, a2 = np.empty((n, h2), x.dtype), np.empty((n, h2), x.dtype)
    raw, z_odd = np.empty((n, d), x.dtype), np.empty((n, d), x.dtype)
    _langevin_mlp_loop(x, W1, beff1, W2, beff2, W3, b3, out_scales, skip_scales, float(center),
                       alphas, n_steps_per_level, seed, first_step, kind, slope, z1, a1, z2, a2,
                       raw, z_odd)


# --------------------------------------------------------------------------- annealed Langevin on given noise
#
# The chains below take their Gaussian inputs as arrays, so that a caller can move along paths
# in the input space (the sampler's steep set, npgen.analysis.sampler_search) or feed the
# counter-based stream (langevin_noise_block) to a score other than the network's. They run in
# float64 and move x, dx0 and grad_sq in place.


@_jit
def langevin_noise_block(seed, first_sample, first_step, out):
    """out[i, t] = z(seed, first_sample + i, first_step + t) (out (n, T) float64): the normals
    :func:`annealed_langevin` draws for those samples and steps (numpy_ref.langevin_noise_block)."""
    base = stream_base(seed)
    for i in range(out.shape[0]):
        key = sample_key(base, first_sample + i)
        z_odd = 0.0
        for t in range(out.shape[1]):
            step = first_step + t
            if step % 2 == 0 or t == 0:  # one Box-Muller draw serves steps 2q and 2q + 1
                radius, angle = box_muller(key, step // 2)
                z_odd = radius * math.sin(angle)
                out[i, t] = z_odd if step % 2 else radius * math.cos(angle)
            else:
                out[i, t] = z_odd


@_jit
def langevin_noise_pair(seed, first_sample, pair, even, odd):
    """even[i] = z(seed, first_sample + i, 2 pair) and odd[i] = z(seed, first_sample + i,
    2 pair + 1) (float64 (n,)): the two halves of one Box-Muller draw per sample, so two steps
    cost one draw. They are the normals :func:`annealed_langevin_mlp` draws, bit for bit (both
    through cpu_noise.normal_pair)."""
    base = stream_base(seed)
    for i in range(even.size):
        even[i], odd[i] = normal_pair(sample_key(base, first_sample + i), pair)


@_jit
def _mixture_score_and_slope(xi, level, tables, need_slope):
    """(s_l(x), s_l'(x)) of the scalar mixture sum_k w_k N(mu_k, V[l, k]) at x (the formulas of
    numpy_ref.blurred_mixture_score), from the tables c[l, k] = log w_k - log(2 pi V_lk) / 2 and
    P[l, k] = 1 / V_lk: with l_k = c_lk - P_lk (x - mu_k)^2 / 2, e_k = exp(l_k - max_j l_j) and
    a_k = P_lk (mu_k - x), s = sum e_k a_k / sum e_k and s' = sum e_k (a_k^2 - P_lk) / sum e_k - s^2."""
    means, offsets, precisions = tables
    c, p = offsets[level], precisions[level]
    top = -np.inf
    for k in range(means.size):
        u = xi - means[k]
        top = max(top, c[k] - 0.5 * p[k] * u * u)
    total = 0.0
    first = 0.0
    second = 0.0
    for k in range(means.size):
        u = xi - means[k]
        e = math.exp(c[k] - 0.5 * p[k] * u * u - top)
        a = -p[k] * u
        total += e
        first += e * a
        second += e * (a * a - p[k])
    score = first / total
    return score, (second / total - score * score) if need_slope else 0.0


@_jit
def _network_score_and_slope(xi, level, tables, need_slope):
    """(s_l(x), s_l'(x)) of the score network on the first layer's pieces (see
    :func:`_first_layer_pieces`): the piece p of x is the number of kinks <= x, and on it
    s_l(x) = w3 . leaky(A_p x + B[l, p]) + beff3[l], B[l] = C + beff2[l]."""
    kinks, A, B, w3, beff3, slope2 = tables
    p = np.searchsorted(kinks, xi, side="right")
    if need_slope:
        return _piece_score_and_slope(xi, A[p], B[level, p], w3, beff3[level], slope2)
    return _piece_score(xi, A[p], B[level, p], w3, beff3[level], slope2), 0.0


@njit(inline="always")
def _given_noise_loop(x, noise, alphas, dx0, grad_sq, track, score_and_slope, tables):
    """The chain of numpy_ref.annealed_langevin_given_noise on samples x (n,) with noise
    (n, L S), for any score_and_slope(x, level, tables, need_slope) -> (s, s')."""
    n_levels = alphas.size
    steps = noise.shape[1] // n_levels
    for i in range(x.size):
        xi, di, ni = x[i], dx0[i], grad_sq[i]
        for level in range(n_levels):
            alpha = alphas[level]
            half_alpha, root_alpha = alpha / 2, math.sqrt(alpha)
            for t in range(level * steps, (level + 1) * steps):
                score, slope = score_and_slope(xi, level, tables, track)
                if track:
                    f = 1.0 + half_alpha * slope
                    di = f * di
                    ni = f * f * ni + alpha
                xi = xi + (half_alpha * score + root_alpha * noise[i, t])
        x[i] = xi
        if track:
            dx0[i] = di
            grad_sq[i] = ni


@_jit
def _exact_given_noise(x, tables, alphas, noise, dx0, grad_sq, track):
    _given_noise_loop(x, noise, alphas, dx0, grad_sq, track, _mixture_score_and_slope, tables)


@_jit
def _network_given_noise(x, tables, alphas, noise, dx0, grad_sq, track):
    _given_noise_loop(x, noise, alphas, dx0, grad_sq, track, _network_score_and_slope, tables)


def _given_noise_arrays(x, alphas, noise, dx0, grad_sq):
    """Check the float64 chain arrays of the given-noise kernels; returns (dx0, grad_sq, track)
    with x standing in for untracked gradient arrays (unwritten)."""
    arrays = [a for a in (x, alphas, noise, dx0, grad_sq) if a is not None]
    if any(a.dtype != np.float64 or not a.flags.c_contiguous for a in arrays):
        raise ValueError("the given-noise Langevin kernels take C-contiguous float64 arrays")
    if (x.ndim != 1 or noise.ndim != 2 or noise.shape[0] != x.size or alphas.ndim != 1
            or alphas.size == 0 or noise.shape[1] % alphas.size
            or any(a is not None and a.shape != x.shape for a in (dx0, grad_sq))
            or (dx0 is None) != (grad_sq is None)):
        raise ValueError("given-noise Langevin: array shapes do not fit together (x (n,), noise"
                         " (n, L S), alphas (L,), dx0 and grad_sq (n,) both or neither)")
    return (x, x, False) if dx0 is None else (dx0, grad_sq, True)


def exact_score_langevin_given_noise(x, log_weights, means, variances, alphas, noise,
                                     dx0=None, grad_sq=None):
    """numpy_ref.exact_score_langevin_given_noise in place: x (n,) moves through the levels
    with the exact score of sum_k w_k N(mu_k, V[l, k]) and the given noise (n, L S); dx0 and
    grad_sq (n,), both or neither, carry the sampler's gradient on. Float64 throughout."""
    dx0, grad_sq, track = _given_noise_arrays(x, alphas, noise, dx0, grad_sq)
    log_weights, means, variances = (np.asarray(a, np.float64) for a in (log_weights, means, variances))
    if variances.shape != (alphas.size, means.size) or log_weights.shape != means.shape or means.ndim != 1:
        raise ValueError("exact_score_langevin_given_noise: log_weights and means (K,), variances (L, K)")
    tables = (np.ascontiguousarray(means), np.ascontiguousarray(log_weights - 0.5 * np.log(2 * np.pi * variances)),
              np.ascontiguousarray(1 / variances))
    _exact_given_noise(x, tables, alphas, noise, dx0, grad_sq, track)


def network_chain_tables(W1, b1, W2a, beff2, W3a, beff3, slope1, slope2):
    """The score network's tables for :func:`network_langevin_on_tables`, in float64: the
    first layer's kinks and pieces A (:func:`_first_layer_pieces`), B[l] = C + beff2[l] for
    each level, w3 = W3a[0], beff3 and slope2. Computed once per network and set of levels."""
    if beff2.shape != (beff3.size, W2a.shape[0]) or beff3.ndim != 1:
        raise ValueError("network_chain_tables: beff2 (L, H2) and beff3 (L,) for L levels")
    kinks, A, C = _first_layer_pieces(*(np.asarray(a, np.float64) for a in (W1, b1, W2a)), slope1)
    B = np.ascontiguousarray(C[None] + np.asarray(beff2, np.float64)[:, None, :])
    return (kinks, A, B, np.ascontiguousarray(W3a[0], np.float64),
            np.ascontiguousarray(beff3, np.float64), float(slope2))


def network_langevin_on_tables(x, tables, alphas, noise, dx0=None, grad_sq=None):
    """:func:`network_langevin_given_noise` on tables made by :func:`network_chain_tables`."""
    dx0, grad_sq, track = _given_noise_arrays(x, alphas, noise, dx0, grad_sq)
    if tables[2].shape[0] != alphas.size:
        raise ValueError("network_langevin_on_tables: the tables' levels and alphas differ in number")
    _network_given_noise(x, tables, alphas, noise, dx0, grad_sq, track)


def network_langevin_given_noise(x, W1, b1, W2a, beff2, W3a, beff3, alphas, noise, slope1, slope2,
                                 dx0=None, grad_sq=None):
    """numpy_ref.annealed_langevin_given_noise in place, with noise laid out (n, L S) (row i:
    sample i's z of steps 0 .. L S - 1): the score network's chain (the weights of
    :func:`annealed_langevin`, taken in float64) on given noise; dx0 and grad_sq (n,), both or
    neither, carry the sampler's gradient on."""
    network_langevin_on_tables(x, network_chain_tables(W1, b1, W2a, beff2, W3a, beff3, slope1, slope2),
                               alphas, noise, dx0, grad_sq)
