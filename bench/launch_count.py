"""Launches and copies of one batched training step, counted under numba-cuda's simulator.

A step of :class:`npgen.models.replicas.Lockstep` on the ``cuda`` backend should be a short,
fixed list of device work that never waits for the host. :class:`LaunchCounter` patches the
simulator (``NUMBA_ENABLE_CUDASIM=1`` must be set before numba is imported) and counts, while it
is active:

* ``kernels``: numba-cuda kernel launches from the host (a kernel body's own calls are not
  launches);
* ``products``: calls of :data:`npgen.kernels.cuda.xp_matmul` (one cuBLAS call each on a GPU);
* ``fills``: assignments into a device array from the host (``array[...] = 0``), which
  numba-cuda turns into a copy to the device and a kernel;
* ``to_host`` and ``to_device``: copies between host and device outside the products (the
  simulator's stand-in for cuBLAS copies its operands, a GPU does not).

``launches`` is kernels + products + fills. :func:`step_counts` counts one step of a GAN, a VAE
or an SGM at R replicas; with ``execute=False`` the kernel bodies and products are not run
(their outputs are then meaningless, but no step branches on a device value, so the counts are
those of a real step), which makes R = 330 affordable. bench/gpu.py prints these counts with
``--dry-run`` and tests/test_cuda_replicas.py holds them to :data:`BUDGET`.
"""

import numpy as np

#: The most launches (kernels + products + fills) one training step may take, per model.
BUDGET = {"GAN": 60, "VAE": 30, "SGM": 30}

COUNTS = ("kernels", "products", "fills", "to_host", "to_device")


class LaunchCounter:
    """Counts (module doc) while active; ``with LaunchCounter() as counts:`` gives a dict."""

    def __init__(self, execute=True):
        self.execute = execute
        self.counts = dict.fromkeys(COUNTS, 0)
        self._inside = 0  # inside a kernel body or a product: nothing there is counted

    def _count(self, key):
        if not self._inside:
            self.counts[key] += 1

    def __enter__(self):
        from numba import cuda
        from numba.cuda.simulator import kernel
        from numba.cuda.simulator.cudadrv import devicearray

        from npgen.kernels import cuda as ck

        counter = self
        fake = devicearray.FakeCUDAArray
        patched = [(kernel.FakeCUDAKernel, "__call__"), (fake, "__setitem__"),
                   (fake, "copy_to_host"), (fake, "copy_to_device"), (cuda, "to_device"),
                   (ck, "xp_matmul")]
        self._saved = [(owner, name, getattr(owner, name)) for owner, name in patched]
        real = {name: value for _, name, value in self._saved}

        def launch(fake, *args):
            if fake._device or kernel._kernel_context:
                return real["__call__"](fake, *args)
            counter._count("kernels")
            return counter._run(real["__call__"], fake, *args)

        def product(*args, **options):
            counter._count("products")
            return counter._run(real["xp_matmul"], *args, **options)

        def watched(key, function):
            def call(*args, **options):
                counter._count(key)
                return function(*args, **options)
            return call

        kernel.FakeCUDAKernel.__call__ = launch
        devicearray.FakeCUDAArray.__setitem__ = watched("fills", real["__setitem__"])
        devicearray.FakeCUDAArray.copy_to_host = watched("to_host", real["copy_to_host"])
        devicearray.FakeCUDAArray.copy_to_device = watched("to_device", real["copy_to_device"])
        cuda.to_device = watched("to_device", real["to_device"])
        ck.xp_matmul = product
        return self.counts

    def _run(self, function, *args, **options):
        if not self.execute:
            return None
        self._inside += 1
        try:
            return function(*args, **options)
        finally:
            self._inside -= 1

    def __exit__(self, *exc):
        for owner, name, value in self._saved:
            setattr(owner, name, value)
        self.counts["launches"] = sum(self.counts[k] for k in ("kernels", "products", "fills"))
        return False


def _models(kind, replicas):
    """Untrained models of the paper's architecture at tiny widths, seeds 0 .. R-1."""
    from npgen import GAN, SGM, VAE

    if kind == "SGM":
        return [SGM(seed=seed) for seed in range(replicas)]
    return [{"GAN": GAN, "VAE": VAE}[kind](seed=seed, base_width=2) for seed in range(replicas)]


def step_counts(kind, replicas, execute=True, batch=4):
    """The counts (module doc) of one training step of ``kind`` ('GAN', 'VAE' or 'SGM') at
    ``replicas`` replicas, taken after a first step (which allocates the step's buffers)."""
    from npgen.kernels import cuda as ck
    from npgen.models.replicas import Lockstep

    models = _models(kind, replicas)
    n = 2 * batch
    rows = np.random.default_rng(0).standard_normal((replicas, n, 1)).astype(np.float32)
    data = ck.to_device(rows)
    with LaunchCounter(execute):
        batched = Lockstep(models, ck, batch, n)
        batched.start_epoch()
        batched.step(data, 0)
    with LaunchCounter(execute) as counts:
        batched.step(data, batch)
    return counts
