#!/usr/bin/env python
"""The 784-d annealed Langevin step, whole and by part, against torch and the sgemm peak.

    python bench/langevin784.py [--repeats 3] [--out bench/results/langevin784.txt]

Times, on one thread and in process CPU seconds (the machine may be shared), in one run:
bench/run.py's ``langevin784_step`` rows (numba, the numpy reference, torch) and the numba
step's parts: the three products (each with its bias and activation pass), the move on a step
that draws the Box-Muller pairs and on the odd step that reads the kept half, and the draw of
n d pairs alone, by cpu_noise.normal_pair and by libm's log, cos and sin (the former draw).
A kernel call's first step always draws, so the bench row (one step per call) is a drawing
step; a sampler's level of S steps draws on about S / 2 of them.
"""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run as bench  # noqa: E402  (sets one thread before numpy loads)

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

import npgen  # noqa: E402
from npgen import kernels  # noqa: E402
from npgen.kernels import cpu, cpu_noise  # noqa: E402


@njit(error_model="numpy")
def _draw_normal_pair(seed, pair, even, odd):
    base = cpu_noise.stream_base(seed)
    for i in range(even.size):
        even[i], odd[i] = cpu_noise.normal_pair(cpu_noise.sample_key(base, i), pair)


@njit(error_model="numpy")
def _draw_libm(seed, pair, even, odd):
    base = cpu_noise.stream_base(seed)
    for i in range(even.size):
        radius, angle = cpu_noise.box_muller(cpu_noise.sample_key(base, i), pair)
        even[i] = radius * math.cos(angle)
        odd[i] = radius * math.sin(angle)


def step_parts(level=10):
    """{part: callable} of one numba step on the bench's 5000 x 784 samples."""
    net = npgen.nn.DenseScoreNetwork(784, np.geomspace(15.0, 0.01, bench.SCORE_LEVELS_784), data_mean=0.13,
                                     data_scale=0.3, seed=0, backend="cpu")
    W1, beff1, W2, beff2, W3, b3, out_scales, skip_scales, center = net.langevin_arguments(level)
    x = bench.mnist_like(bench.LANGEVIN_BATCH_784)
    n, d = x.shape
    z1, a1 = np.empty((n, W1.shape[0]), x.dtype), np.empty((n, W1.shape[0]), x.dtype)
    z2, a2 = np.empty((n, W2.shape[0]), x.dtype), np.empty((n, W2.shape[0]), x.dtype)
    raw, z_odd = np.zeros((n, d), x.dtype), np.zeros((n, d), x.dtype)
    even, odd = np.empty(n * d), np.empty(n * d)
    alpha = 1e-4
    move = (x, raw, alpha / 2 * float(out_scales[0]), alpha / 2 * float(skip_scales[0]), float(center),
            math.sqrt(alpha), 7)
    two_steps = np.full(1, alpha, x.dtype)
    return {
        "product 1 (784 -> 768) + bias + SiLU": lambda: cpu.linear_forward(x, W1, beff1[0], kernels.SILU, 0.2, z1, a1),
        "product 2 (768 -> 768) + bias + SiLU": lambda: cpu.linear_forward(a1, W2, beff2[0], kernels.SILU, 0.2, z2, a2),
        "product 3 (768 -> 784) + bias": lambda: cpu.linear_forward(a2, W3, b3, kernels.IDENTITY, 0.0, raw, raw),
        "move, drawing step (pairs drawn)": lambda: cpu._langevin_move(*move, 4, 4, z_odd),
        "move, odd step (kept half read)": lambda: cpu._langevin_move(*move, 5, 4, z_odd),
        "noise alone: n d pairs, cpu_noise.normal_pair": lambda: _draw_normal_pair(7, 3, even, odd),
        "noise alone: n d pairs, libm Box-Muller": lambda: _draw_libm(7, 3, even, odd),
        "whole kernel, 2 steps per call (per step)": lambda: cpu.annealed_langevin_mlp(
            x, W1, beff1, W2, beff2, W3, b3, out_scales, skip_scales, center, two_steps, 2, 7, 0,
            kernels.SILU, 0.2),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "langevin784.txt"))
    args = parser.parse_args(argv)
    bench.clock = bench.CLOCK["cpu"]
    table = bench.run({"langevin784_step"}, args.repeats)
    peak = table["sgemm_peak_gflops"]
    lines = [bench.format_table(table), "", "numba step by part (ms per call, process CPU seconds):"]
    numba_ms = next(r["ms"] for r in table["rows"] if r["backend"] == "cpu")
    flops = bench.langevin784_step_flops()
    for name, call in step_parts().items():
        ms = 1e3 * bench.time_call(call, args.repeats)
        if name.startswith("whole"):
            ms /= 2
        lines.append(f"  {name:<46} {ms:9.2f} ms  ({100 * ms / numba_ms:5.1f}% of the bench step)")
    lines.append(f"  the three products' flops at the sgemm peak ({peak:.1f} GFLOP/s): {1e3 * flops / peak / 1e9:.2f} ms")
    text = "\n".join(lines) + "\n"
    print(text)
    from npgen.util.io import atomic_write_text
    atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
