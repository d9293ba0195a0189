"""The meter of bench/gpu.py: the FLOPs of each model's products, their own time, the GPU's
FP32 peak and whether the float32 products ran as TF32.

* FLOPs: a product of an (m, k) by a (k, n) matrix is 2 m k n FLOPs. A dense layer of fan-in i
  and fan-out o on r rows costs 2 r i o forward, as much again for its weight gradient, and as
  much again for the gradient with respect to its input. Backprop computes the input gradient
  of every layer but the first (the hidden layers' inputs) whenever it runs at all, and the
  first layer's only when the network's input gradient is asked for (:func:`product_flops`).
  Only the batched products (cuBLAS through :data:`npgen.kernels.cuda.xp_matmul`) are counted:
  spectral norm's power iteration (two matrix-vector products per layer per forward, 0.2% of
  the GAN step's product FLOPs at batch 1000), a one-input layer's outer products and the
  score network's noise-level embedding run in their own kernels.
* The products' time: :class:`ProductMeter` wraps ``xp_matmul`` and brackets every product
  with two CUDA events (``cupy.cuda.Event``), so their sum is the device time of the products
  alone; it also counts each product's FLOPs from its shapes, which checks the formulas.
  Without CuPy (the simulator, where the products are numpy's) it falls back to the host clock
  around each product and says so. When the host launches more slowly than the device works
  (small R), a product's start event can wait for the host, so the event time is then an upper
  bound on the products' own time.
* The peak: NVIDIA's datasheet FP32 (non-tensor-core) rate of the device, found by its name
  (:func:`fp32_peak`); an unknown device has no peak ("peak unknown"), never a guess.
* TF32: CuPy runs float32 products with cuBLAS's CUBLAS_COMPUTE_32F_FAST_TF32 (tensor cores,
  TF32 inputs) when the environment variable CUPY_TF32 is a positive integer at its first
  float32 product (``cupy._core._routines_linalg.get_compute_type``), else with
  CUBLAS_COMPUTE_32F; NVIDIA_TF32_OVERRIDE=0 turns TF32 off in every NVIDIA library
  (:func:`tf32_setting`).
"""

import os
import re
import time

import numpy as np

#: NVIDIA's datasheet FP32 peaks in FLOP/s, by a pattern of the device name (as CUDA reports
#: it: "NVIDIA H100 80GB HBM3" is the SXM5 board), tried in order.
FP32_PEAKS = (
    (r"H100.*PCIe", 51e12, "H100 PCIe"),
    (r"H100.*NVL", 60e12, "H100 NVL"),
    (r"H100.*(SXM|HBM3)", 67e12, "H100 SXM"),
    (r"H200.*NVL", 60e12, "H200 NVL"),
    (r"H200", 67e12, "H200 SXM"),
)


def fp32_peak(device_name):
    """(FP32 peak in FLOP/s, the datasheet entry) of a device name, or (None, 'peak unknown')."""
    for pattern, flops, entry in FP32_PEAKS:
        if re.search(pattern, device_name):
            return flops, f"{entry}, NVIDIA datasheet"
    return None, "peak unknown"


def product_flops(sizes, rows, weight_grads=False, input_grad=False, fused=True):
    """FLOPs of a dense network's products (layer widths ``sizes``) on ``rows`` rows: every
    layer forward; with a backward pass (``weight_grads`` or ``input_grad``), the input
    gradient of every layer but the first; each layer's weight gradient with ``weight_grads``;
    the first layer's input gradient with ``input_grad``. With ``fused``, a layer of one input
    (the univariate networks' first) launches no product for its forward and weight gradient:
    the cuda backend makes that outer product in its bias and column kernels (2 r o FLOPs,
    not counted); its input gradient stays a product."""
    total = 0
    backward = weight_grads or input_grad
    for k, (fan_in, out) in enumerate(zip(sizes[:-1], sizes[1:])):
        outer = fused and fan_in == 1
        passes = (not outer) * (1 + weight_grads) + (backward and (k > 0 or input_grad))
        total += 2 * rows * fan_in * out * passes
    return total


def gan_step_flops(model, batch):
    """One GAN step: the generator step (G forward and backward with weight gradients, D
    forward and backward to its input) and the discriminator step (G forward, D forward and
    backward with weight gradients on the 2B real and fake rows). With the gradient penalty,
    G runs its jvp instead: the primal forward as a plain forward, then the tangents' forward
    and both paths' weight and hidden input gradients, all products (the jvp backward fuses no
    outer product)."""
    G, D = model.generator.sizes, model.discriminator.sizes
    generator = product_flops(G, batch, weight_grads=True)
    if model.gp_lipschitz is not None:
        whole = product_flops(G, batch, weight_grads=True, fused=False)
        generator = product_flops(G, batch) + 2 * whole - product_flops(G, batch, fused=False)
    return (generator + product_flops(D, batch, input_grad=True)
            + product_flops(G, batch) + product_flops(D, 2 * batch, weight_grads=True))


def vae_step_flops(model, batch):
    """One VAE step: encoder forward and backward (no input gradient), decoder forward and
    backward down to its input z."""
    return (product_flops(model.encoder.sizes, batch, weight_grads=True)
            + product_flops(model.decoder.sizes, batch, weight_grads=True, input_grad=True))


def sgm_step_flops(model, batch):
    """One SGM step: the score network's x path 1-96-196-1 forward and backward (no input
    gradient). The noise-level embedding (one row per replica) runs in its own two kernels
    (``score_embedding_forward`` and ``_backward``), not as products."""
    from npgen.nn.score import HIDDEN_WIDTHS

    return product_flops([1, *HIDDEN_WIDTHS, 1], batch, weight_grads=True)


def step_flops(model, batch):
    """Product FLOPs of one step of ``model`` (a GAN, VAE or SGM) at ``batch`` rows."""
    kind = type(model).__name__
    return {"GAN": gan_step_flops, "VAE": vae_step_flops, "SGM": sgm_step_flops}[kind](model, batch)


def tf32_setting():
    """How this process's float32 products run: the two environment variables, the compute
    type CuPy resolves for float32, and ``tf32`` (True, False, or None without CuPy)."""
    setting = {name: os.environ.get(name) for name in ("CUPY_TF32", "NVIDIA_TF32_OVERRIDE")}
    try:
        from cupy._core import _routines_linalg as linalg
    except ImportError:
        return dict(setting, cupy_compute_type=None, tf32=None,
                    how="no CuPy: no cuBLAS product ran (the simulator's products are numpy's)")
    compute = linalg.get_compute_type(np.float32)
    tf32_code = getattr(linalg, "COMPUTE_TYPE_TF32", None)
    tf32 = None if tf32_code is None else (compute == tf32_code
                                           and setting["NVIDIA_TF32_OVERRIDE"] != "0")
    how = ("CuPy's float32 compute type" + ("" if tf32_code is None else
                                             f" ({'TF32' if compute == tf32_code else 'FP32'})")
           + ", with NVIDIA_TF32_OVERRIDE")
    return dict(setting, cupy_compute_type=int(compute), tf32=tf32, how=how)


class ProductMeter:
    """While active (``with``), every product of the cuda backend is counted (FLOPs from its
    shapes) and timed (CUDA events around it, or the host clock without CuPy)."""

    def __init__(self, ck):
        self.ck, self.flops, self._pairs, self._host_seconds = ck, 0, [], 0.0
        self._event = None
        if not ck.SIMULATOR:
            import cupy
            self._event, self._elapsed_ms = cupy.cuda.Event, cupy.cuda.get_elapsed_time
        self.timer = ("CUDA events (cupy.cuda.Event) around each product" if self._event else
                      "host clock around each product (no CuPy: the simulator's products are"
                      " numpy's; not a device time)")

    def __enter__(self):
        self._real = self.ck.xp_matmul
        self.ck.xp_matmul = self._product
        return self

    def __exit__(self, *exc):
        self.ck.xp_matmul = self._real

    def _product(self, a, b, out, transpose_a=False, transpose_b=False, accumulate=False):
        replicas, m, n = out.shape
        inner = a.shape[1] if transpose_a else a.shape[2]
        self.flops += 2 * replicas * m * n * inner
        arguments = (a, b, out, transpose_a, transpose_b, accumulate)
        if self._event is None:
            start = time.perf_counter()
            self._real(*arguments)
            self._host_seconds += time.perf_counter() - start
            return
        start, end = self._event(), self._event()
        start.record()
        self._real(*arguments)
        end.record()
        self._pairs.append((start, end))

    def seconds(self):
        """The products' time so far, in seconds (waits for the device)."""
        if self._event is None:
            return self._host_seconds
        self.ck.synchronize()
        return sum(self._elapsed_ms(start, end) for start, end in self._pairs) / 1e3
