"""The paper's three generative models: GAN, VAE (push-forward models) and SGM (score-based),
and Lipschitz-regularized generative particles (:class:`Particles`), which transport samples
instead of pushing a latent through a network.

Built on :mod:`npgen.nn`; a model never imports :mod:`npgen.analysis` or :mod:`npgen.study`.
"""

from .gan import GAN
from .particles import Particles
from .sgm import SGM
from .vae import VAE

__all__ = ["GAN", "VAE", "SGM", "Particles"]
