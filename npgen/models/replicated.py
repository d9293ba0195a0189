"""One model of R replicas: what lets a model's own step train R runs in lockstep.

A model (GAN, VAE, SGM) is built with one replica on a CPU backend, and its step is written over
arrays with a leading replica axis (:mod:`npgen.nn.layout`). :meth:`ReplicatedModel.replicas_of`
stacks R untrained models of one configuration into one model of R replicas on any backend:
replica r of each network starts from models[r]'s, each network gets its Adam, and the step's
latents and noise come from :func:`npgen.models.noise.noise_for` (the models' own streams on the
host, seeded device streams on the GPU). :meth:`ReplicatedModel.copy_to` writes the trained
replicas back, so a run trained in lockstep is saved, sampled and measured as one trained alone.
"""

import copy

from ..nn.adam import Adam
from .noise import noise_for


class ReplicatedModel:
    """The replica machinery of a model whose ``networks()`` each have an Adam in the attribute
    that ``OPTIMIZERS`` names (network name -> attribute)."""

    OPTIMIZERS = {}

    @property
    def ops(self):
        """The kernels of the model's backend, in replica form (:mod:`npgen.kernels.replicas`)."""
        return next(iter(self.networks().values())).ops

    @classmethod
    def replicas_of(cls, models, backend):
        """One model of R = len(models) replicas on ``backend`` (module doc); ``models`` are
        untrained models of one configuration but the seed (and a GAN's penalty target)."""
        stacked = copy.copy(models[0])
        stacked.replicas = len(models)
        for name, net in models[0].networks().items():
            setattr(stacked, name, type(net).replicas_of([getattr(m, name) for m in models], backend))
            setattr(stacked, cls.OPTIMIZERS[name], stacked._optimizer(getattr(stacked, name)))
        stacked.noise = noise_for(models, stacked.ops)
        stacked._buffers_by_size = {}
        return stacked

    def _optimizer(self, net):
        """Adam with the model's settings for ``net``."""
        return Adam(net, lr=self.lr, betas=self.betas)

    def copy_to(self, models):
        """Write replica r of every network into models[r] (see :meth:`replicas_of`)."""
        for name, net in self.networks().items():
            net.copy_to([getattr(model, name) for model in models])

    def _read_losses(self, losses, batch_size):
        """The losses of a step on ``batch_size`` rows ((R,) arrays on the backend) on the host,
        as the model reports them: {name: (R,) float64}."""
        return {name: self.ops.to_host(values) for name, values in losses.items()}
