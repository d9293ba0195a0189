"""npgen: push-forward generative models (GAN, VAE) and score-based models in numpy + numba.

A reimplementation of "Can Push-forward Generative Models Fit Multimodal Distributions?"
(Salmona, De Bortoli, Delon, Desolneux, NeurIPS 2022) with hand-written networks, so that
Lipschitz constants can be computed exactly from the weights.

The package is layered; each layer imports only the ones before it:

``npgen.kernels``   array kernels: the plain-numpy reference and the numba backend
``npgen.util``      argument checks, atomic file io, progress lines, one BLAS thread
``npgen.data``      the data sets
``npgen.nn``        MLP, score network, their wiring, Adam          (kernels <- nn)
``npgen.models``    GAN, VAE, SGM                                    (nn <- models)
``npgen.analysis``  exact Lipschitz constants, the paper's theory    (nn <- analysis)
``npgen.study``     presets, runs, sweeps, figures, the report       (models, analysis <- study)
``npgen.cli``       the ``npgen`` command
"""

from .analysis import lipschitz, theory
from .models import GAN, SGM, VAE
from .nn import MLP, Adam, ScoreNetwork

__all__ = ["MLP", "Adam", "ScoreNetwork", "GAN", "VAE", "SGM", "lipschitz", "theory"]
__version__ = "0.1.0"
