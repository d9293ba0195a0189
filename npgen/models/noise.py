"""Where a training step's random numbers come from, for one replica or R replicas.

A step fills (R, n, p) arrays with latents or Gaussian noise through a noise source:

* :class:`HostNoise`: replica r draws from its model's own numpy stream (``rng``), so a seed
  gives the same run, bit for bit, on every CPU backend and whatever runs beside it;
* :class:`DeviceNoise`: replica r draws on the device from xoroshiro128+ states seeded with its
  model's seed alone (:func:`npgen.kernels.cuda.rng_states`), so a run is the same whatever R it
  is batched with (but not the CPU run of that seed). Its latents are Gaussian.
"""

from .latents import draw_latents


class HostNoise:
    """Replica r's draws from ``models[r].rng``, the numpy stream of its model as it is at each
    draw (latents of law ``latent``, :mod:`npgen.models.latents`)."""

    def __init__(self, models, latent="gaussian"):
        self.models, self.latent = list(models), latent

    def latents(self, out):
        """Fill ``out`` (R, n, p) with latents; return it."""
        for model, rows in zip(self.models, out):
            draw_latents(model.rng, rows, self.latent)
        return out

    def normal(self, out):
        """Fill ``out`` (R, n, p) with standard normals; return it."""
        for model, rows in zip(self.models, out):
            model.rng.standard_normal(out=rows, dtype=rows.dtype)
        return out


class DeviceNoise:
    """Replica r's draws from device streams seeded with ``seeds[r]`` (kernels module ``ck``)."""

    def __init__(self, ck, seeds):
        self.ck, self.states = ck, ck.rng_states(list(seeds))

    def normal(self, out):
        """Fill ``out`` (R, n, p), a device array, with standard normals; return it."""
        self.ck.standard_normal(self.states, out)
        return out

    latents = normal


def noise_for(models, ops):
    """The noise source of ``models`` trained as replicas on a backend with kernels ``ops``:
    their own streams on the host, device streams from their seeds on a device."""
    if ops.on_device:
        return DeviceNoise(ops, [model.seed for model in models])
    return HostNoise(models, getattr(models[0], "latent", "gaussian"))
