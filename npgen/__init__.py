"""npgen: push-forward generative models (GAN, VAE) and score-based models in numpy + numba.

A reimplementation of "Can Push-forward Generative Models Fit Multimodal Distributions?"
(Salmona, De Bortoli, Delon, Desolneux, NeurIPS 2022) with hand-written networks, so that
Lipschitz constants can be computed exactly from the weights.
"""

from .mlp import MLP
from .optim import Adam

__all__ = ["MLP", "Adam"]
__version__ = "0.1.0"
