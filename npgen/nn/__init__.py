"""Networks with hand-written backprop: the MLP, the score network, their wiring, and Adam.

Built on :mod:`npgen.kernels`; imports nothing of npgen above it (models, analysis, study).
"""

from .adam import Adam
from .mlp import MLP
from .score import ScoreNetwork

__all__ = ["MLP", "ScoreNetwork", "Adam"]
