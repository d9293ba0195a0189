"""Networks with hand-written backprop: the MLP, the score network, their wiring, and Adam.

Built on :mod:`npgen.kernels`; imports nothing of npgen above it (models, analysis, study).
Every network is saved in one format (:mod:`npgen.nn.files`); :func:`load_network` reads
any of them.
"""

from .adam import Adam
from .dense_score import DenseScoreNetwork
from .files import build_network, read_network_file
from .mlp import MLP
from .score import ScoreNetwork

#: The classes a network file's ``kind`` names.
NETWORK_KINDS = {"MLP": MLP, "ScoreNetwork": ScoreNetwork, "DenseScoreNetwork": DenseScoreNetwork}


def read_network(path, backend=None):
    """(network, meta) of any npgen network file: an MLP, a ScoreNetwork or a
    DenseScoreNetwork, as its ``kind`` says, and the file's configuration entry (a score network's noise levels and data scale)."""
    meta, arrays = read_network_file(path, tuple(NETWORK_KINDS))
    return build_network(NETWORK_KINDS[meta["kind"]], path, meta, arrays, backend), meta


def load_network(path, backend=None):
    """The network saved at ``path`` by :meth:`MLP.save` or :meth:`ScoreNetwork.save`."""
    return read_network(path, backend)[0]


__all__ = ["MLP", "ScoreNetwork", "DenseScoreNetwork", "Adam", "load_network", "read_network"]
