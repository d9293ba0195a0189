"""numba's draws of numpy_ref's counter-based Langevin noise: z(seed, i, step).

The stream is numpy_ref's (the comment above ``numpy_ref.LANGEVIN_GOLDEN``): sample i has the
key key_i = mix(mix(seed + G) + (i + 1) G), steps 2q and 2q + 1 share the bits
mix(key_i + (q + 1) G), whose halves give u1, u2 in (0, 1), and Box-Muller gives
    z_2q = sqrt(-2 ln u1) cos(2 pi u2),    z_2q+1 = sqrt(-2 ln u1) sin(2 pi u2).

Two forms of Box-Muller are here. :func:`box_muller` calls libm (log, cos, sin), a scalar call
each: the 1-D samplers draw one pair per sample at a time with it. :func:`normal_pair` computes
the same two normals with polynomials of its own (fdlibm's log, sin and cos kernels on reduced
arguments, within a few units in the last place of libm's), from multiplies, adds, a division,
a square root and selects only, so that a loop drawing a row of pairs vectorises: the
d-dimensional sampler draws n d pairs per step with it.

numba inlines these functions into cpu.py's kernels, whose on-disk cache is checked against
cpu.py's own time stamp only: after a change here, touch cpu.py (or empty its cache) so that
its kernels are compiled again.
"""

import math

import llvmlite.ir as ir
import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from .numpy_ref import LANGEVIN_GOLDEN, LANGEVIN_MIX

_jit = njit(cache=True, error_model="numpy", inline="always")

GOLDEN = np.uint64(LANGEVIN_GOLDEN)
_MIX1, _MIX2 = np.uint64(LANGEVIN_MIX[0]), np.uint64(LANGEVIN_MIX[1])
_LOW32 = np.uint64(0xFFFFFFFF)


@_jit
def mix64(z):
    """splitmix64's finalizer on one uint64 (see numpy_ref._mix64)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@_jit
def stream_base(seed):
    """mix(seed + G), the part of every key that depends on the seed alone."""
    return mix64(np.uint64(seed) + GOLDEN)


@_jit
def sample_key(base, i):
    """key_i = mix(base + (i + 1) G) of sample i, with base = :func:`stream_base` (seed)."""
    return mix64(base + (np.uint64(i) + np.uint64(1)) * GOLDEN)


@_jit
def _uniforms(key, pair):
    """(u1, u2) in (0, 1) of step pair ``pair`` of the sample with ``key``."""
    bits = mix64(key + (np.uint64(pair) + np.uint64(1)) * GOLDEN)
    return ((float(bits >> np.uint64(32)) + 0.5) * 2.0 ** -32,
            (float(bits & _LOW32) + 0.5) * 2.0 ** -32)


@_jit
def box_muller(key, pair):
    """(radius, angle) of step pair ``pair`` of the sample with ``key``, through libm: the
    normals of steps 2 pair and 2 pair + 1 are radius cos(angle) and radius sin(angle)."""
    u1, u2 = _uniforms(key, pair)
    return math.sqrt(-2.0 * math.log(u1)), 2.0 * math.pi * u2


# --------------------------------------------------------------------------- vectorisable Box-Muller

@intrinsic
def _bits(typingctx, x):
    """The IEEE bits of a float64, as uint64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.uint64(types.float64), codegen


@intrinsic
def _float(typingctx, bits):
    """The float64 with these IEEE bits (uint64)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.uint64), codegen


_MANTISSA = np.uint64((1 << 52) - 1)
_ONE_BITS = np.uint64(1023 << 52)
_SQRT2 = math.sqrt(2.0)
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_LG = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
       2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
       1.479819860511658591e-01)
_SIN = (-1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04,
        2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10)
_COS = (4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05,
        -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11)


@_jit
def _log(u):
    """ln u for a positive normal float64 (fdlibm's __ieee754_log): u = 2^e m with m in
    [sqrt(2)/2, sqrt(2)), f = m - 1, s = f / (2 + f), and
    ln u = e ln 2 + f - f^2/2 + s (f^2/2 + R(s^2)), R a minimax polynomial of degree 7."""
    bits = _bits(u)
    e = float(np.int64(bits >> np.uint64(52))) - 1023.0
    m = _float((bits & _MANTISSA) | _ONE_BITS)
    high = m > _SQRT2
    m = 0.5 * m if high else m
    e = e + 1.0 if high else e
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = (z * (_LG[0] + w * (_LG[2] + w * (_LG[4] + w * _LG[6])))
         + w * (_LG[1] + w * (_LG[3] + w * _LG[5])))
    half_f2 = 0.5 * f * f
    return e * _LN2_HI - ((half_f2 - (s * (half_f2 + r) + e * _LN2_LO)) - f)


@_jit
def _cos_sin_turn(u):
    """(cos 2 pi u, sin 2 pi u) for u in [0, 1]: u = q / 4 + r exactly with q = round(4 u) and
    |r| <= 1/8, then fdlibm's sin and cos kernels at x = 2 pi r (|x| <= pi / 4), turned by q
    quarter turns."""
    q = np.floor(4.0 * u + 0.5)
    x = (u - 0.25 * q) * (2.0 * math.pi)
    z = x * x
    sin_x = x + x * z * (_SIN[0] + z * (_SIN[1] + z * (_SIN[2] + z * (_SIN[3] + z * (_SIN[4] + z * _SIN[5])))))
    cos_x = 1.0 - 0.5 * z + z * z * (_COS[0] + z * (_COS[1] + z * (_COS[2] + z * (_COS[3] + z * (_COS[4] + z * _COS[5])))))
    turn = np.int64(q) & 3
    c = sin_x if turn & 1 else cos_x
    s = cos_x if turn & 1 else sin_x
    return (-c if turn == 1 or turn == 2 else c), (-s if turn >= 2 else s)


@_jit
def normal_pair(key, pair):
    """(z_2pair, z_2pair+1) of the sample with ``key``: :func:`box_muller`'s normals, computed
    without libm (module doc)."""
    u1, u2 = _uniforms(key, pair)
    radius = math.sqrt(-2.0 * _log(u1))
    c, s = _cos_sin_turn(u2)
    return radius * c, radius * s
