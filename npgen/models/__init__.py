"""The paper's three generative models: GAN, VAE (push-forward models) and SGM (score-based),
Lipschitz-regularized generative particles (:class:`Particles`), which transport samples
instead of pushing a latent through a network, the digit classifier that judges MNIST
samples, and the Wasserstein embedding in which the subset of 3s and 7s is seen.

Built on :mod:`npgen.nn`; a model never imports :mod:`npgen.analysis` or :mod:`npgen.study`.
"""

from .classifier import DigitClassifier
from .gan import GAN
from .particles import Particles
from .replicas import fit_many
from .sgm import SGM, VectorSGM
from .sgm_device import sample_many
from .vae import VAE
from .wasserstein_embedding import WassersteinEmbedding

__all__ = ["GAN", "VAE", "SGM", "VectorSGM", "Particles", "DigitClassifier", "WassersteinEmbedding",
           "fit_many", "sample_many"]
