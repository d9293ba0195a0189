"""npgen: push-forward generative models (GAN, VAE) and score-based models in numpy + numba.

A reimplementation of "Can Push-forward Generative Models Fit Multimodal Distributions?"
(Salmona, De Bortoli, Delon, Desolneux, NeurIPS 2022) with hand-written networks, so that
Lipschitz constants can be computed exactly from the weights.

npgen's matrix products are small (widths of a few hundred), where several BLAS threads per
process cost more than they bring; parallel work runs as processes instead (``--jobs``). So,
unless the environment already says otherwise, npgen asks for one BLAS thread; this takes
effect only when npgen is imported before numpy.
"""

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

from .gan import GAN  # noqa: E402
from .mlp import MLP  # noqa: E402
from .optim import Adam  # noqa: E402
from .sgm import SGM  # noqa: E402
from .vae import VAE  # noqa: E402

__all__ = ["MLP", "Adam", "GAN", "VAE", "SGM"]
__version__ = "0.1.0"
