"""Where a training step's random numbers come from, for one replica or R replicas.

A step fills (R, n, p) arrays with latents or Gaussian noise through a noise source:

* :class:`HostNoise`: replica r draws from its model's own numpy stream (``rng``), so a seed
  gives the same run, bit for bit, on every CPU backend and whatever runs beside it;
* :class:`DeviceNoise`: replica r draws on the device from xoroshiro128+ states seeded with its
  model's seed alone (:func:`npgen.kernels.cuda.rng_states`), so a run is the same whatever R it
  is batched with (but not the CPU run of that seed). Its latents are Gaussian. An epoch's
  draws can be made ahead, in one launch, with the same numbers.
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
    """Replica r's draws from device streams seeded with ``seeds[r]`` (kernels module ``ck``).

    :meth:`draw_ahead` draws the next T fills of one shape in one launch; the next T draws of
    that shape then hand them out in turn, instead of filling their ``out`` (the numbers a draw
    would have filled it with: state by state, the stream goes on as it would have).
    """

    def __init__(self, ck, seeds):
        self.ck, self.states = ck, ck.rng_states(list(seeds))
        self.ahead, self.taken = None, 0

    def draw_ahead(self, fills, shape, dtype):
        """Draw the next ``fills`` fills of (R, *shape) arrays of ``dtype`` now, in one launch."""
        wanted = (fills, self.states.size // self.ck.RNG_STATES_PER_REPLICA, *shape)
        if self.ahead is None or self.ahead.shape != wanted or self.ahead.dtype != dtype:
            self.ahead = self.ck.zeros(wanted, dtype)
        self.ck.standard_normal_fills(self.states, self.ahead)
        self.taken = 0

    def normal(self, out):
        """Standard normals of the shape of ``out`` (R, n, p), a device array: the next fill
        drawn ahead, or else ``out`` filled now; return it."""
        if self.ahead is None or self.taken == len(self.ahead):
            self.ck.standard_normal(self.states, out)
            return out
        if self.ahead.shape[1:] != out.shape:
            raise RuntimeError(f"the noise was drawn ahead for arrays {self.ahead.shape[1:]},"
                               f" not {out.shape}")
        self.taken += 1
        return self.ahead[self.taken - 1]

    latents = normal


def noise_for(models, ops):
    """The noise source of ``models`` trained as replicas on a backend with kernels ``ops``:
    their own streams on the host, device streams from their seeds on a device."""
    if ops.on_device:
        return DeviceNoise(ops, [model.seed for model in models])
    return HostNoise(models, getattr(models[0], "latent", "gaussian"))
