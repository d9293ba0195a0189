"""The paper's three generative models: GAN, VAE (push-forward models) and SGM (score-based),
and the digit classifier that judges their MNIST samples.

Built on :mod:`npgen.nn`; a model never imports :mod:`npgen.analysis` or :mod:`npgen.study`.
"""

from .classifier import DigitClassifier
from .gan import GAN
from .sgm import SGM, VectorSGM
from .vae import VAE

__all__ = ["GAN", "VAE", "SGM", "VectorSGM", "DigitClassifier"]
