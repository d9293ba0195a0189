"""Where a network's parameters live: named blocks laid end to end in one flat buffer.

Every npgen network keeps its parameters in one flat buffer ``params`` (and its gradients in
``grads``), so that one optimizer call updates the whole network. The buffer is a sequence of
blocks (a weight (out, in), a bias (out,), ...) in a fixed order. With R replicas (R runs of one
architecture trained in lockstep) each block holds the replica axis inside it: block k is one
contiguous (R, *shape_k) array starting at R * offset_k, so that a layer's weights of every
replica are one batched operand. With R = 1 that is the single network's buffer:

    params = [W_0 (out_0 x in_0) | b_0 (out_0) | W_1 | b_1 | ...],  offset_k = sum_{j<k} size_j
"""

import math

import numpy as np


class ParameterLayout:
    """Named blocks of given shapes laid end to end (module doc).

    ``blocks`` is a sequence of (name, shape) pairs in buffer order.
    """

    def __init__(self, blocks):
        self.names = [name for name, _ in blocks]
        self.shapes = [tuple(int(s) for s in shape) for _, shape in blocks]
        sizes = [math.prod(shape) for shape in self.shapes]
        self.offsets = [int(o) for o in np.cumsum([0] + sizes[:-1])]
        self.sizes = sizes
        #: Parameters of one replica.
        self.size = int(sum(sizes))

    def views(self, buffer, replicas=1):
        """The blocks of a flat buffer of ``replicas`` replicas, as (R, *shape) views by name."""
        return {name: buffer[replicas * offset:replicas * (offset + size)].reshape(
                    (replicas, *shape))
                for name, shape, offset, size in zip(self.names, self.shapes, self.offsets,
                                                     self.sizes)}

    def blocks(self, buffer):
        """The blocks of a one-replica flat buffer, as views of their own shapes by name."""
        return {name: view[0] for name, view in self.views(buffer).items()}

    def stack(self, flats):
        """The flat buffer of R replicas (host, float as ``flats[0]``) whose replica r holds the
        one-replica buffer ``flats[r]``."""
        return np.concatenate([np.stack([flat[offset:offset + size] for flat in flats]).ravel()
                               for offset, size in zip(self.offsets, self.sizes)])

    def unstack(self, buffer, flats):
        """Write replica r of the host buffer ``buffer`` into the one-replica buffer flats[r]."""
        R = len(flats)
        for offset, size in zip(self.offsets, self.sizes):
            block = buffer[R * offset:R * (offset + size)].reshape(R, size)
            for r, flat in enumerate(flats):
                flat[offset:offset + size] = block[r]
