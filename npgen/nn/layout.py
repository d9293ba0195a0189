"""Where a network's parameters live: named blocks laid end to end in one flat buffer.

Every npgen network keeps its parameters in one flat buffer ``params`` (and its gradients in
``grads``), so that one optimizer call updates the whole network. The buffer is a sequence of
blocks (a weight (out, in), a bias (out,), ...) in a fixed order. With R replicas (R runs of one
architecture trained in lockstep) each block holds the replica axis inside it: block k is one
contiguous (R, *shape_k) array starting at R * offset_k, so that a layer's weights of every
replica are one batched operand. With R = 1 that is the single network's buffer:

    params = [W_0 (out_0 x in_0) | b_0 (out_0) | W_1 | b_1 | ...],  offset_k = sum_{j<k} size_j
"""

import copy
import math

import numpy as np

from .. import kernels


def with_replica_axis(x):
    """(x with the replica axis first, whether it was given without one): an (n, w) array is
    the one replica's (1, n, w) view."""
    return (x[None], True) if x.ndim == 2 else (x, False)


def as_given(x, one):
    """A pass's (R, n, w) result in the form its input was given: (n, w) for one replica."""
    return x[0] if one else x


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


class ReplicatedParameters:
    """What every npgen network shares: its ``layout``'s parameters (and their gradients) in flat
    buffers on a kernel backend, for R replicas of one architecture (module doc).

    A network is built with one replica on a CPU backend; :meth:`replicas_of` stacks R such
    networks into one of R replicas on any backend (``"cuda"`` included), whose passes take and
    return arrays with the replica axis first, and :meth:`copy_to` writes the trained replicas
    back. A subclass sets ``layout`` and ``dtype``, names in :meth:`_replica_state` the lists of
    per-replica arrays it keeps besides the parameters (copied along), allocates them in
    :meth:`_allocate_state` and binds its views of the buffers in :meth:`_bind_parameters`.
    """

    def _place(self, backend, replicas):
        """Put R = ``replicas`` zero-filled copies of the parameters, their gradients and the
        per-replica state on ``backend``."""
        self.backend_name = backend
        self.ops = kernels.replica_form(backend)
        self.backend = self.ops if self.ops.on_device else kernels.get_backend(backend)
        self.replicas = replicas
        self.params = self.ops.zeros(replicas * self.layout.size, self.dtype)
        self.grads = self.ops.zeros(replicas * self.layout.size, self.dtype)
        self._allocate_state()
        self._bind_parameters()
        self._workspaces = {}
        self._last = None

    def _allocate_state(self):
        """Allocate the per-replica arrays besides the parameters (none by default)."""

    def _replica_state(self):
        """Names of the lists of per-replica arrays that replicas_of and copy_to carry along."""
        return ()

    def _bind_parameters(self):
        """Bind the views of ``params`` and ``grads`` the passes use."""
        raise NotImplementedError

    @property
    def on_host(self):
        """Whether this is one replica in host memory: the network users read directly."""
        return self.replicas == 1 and not self.ops.on_device

    @property
    def n_params(self):
        """Number of trainable parameters (of one replica)."""
        return self.layout.size

    @classmethod
    def replicas_of(cls, nets, backend):
        """One network of R = len(nets) replicas on ``backend``, replica r starting from nets[r]
        (one-replica networks of one architecture; seeds may differ)."""
        first = nets[0]
        if any(type(net) is not type(first) or net.config() | {"seed": 0} != first.config() | {"seed": 0}
               or net.replicas != 1 for net in nets):
            raise ValueError("replicas_of needs one-replica networks of one architecture")
        stacked = copy.copy(first)
        stacked._place(backend, len(nets))
        stacked.params = stacked.ops.to_device(first.layout.stack([net.params for net in nets]))
        stacked._bind_parameters()
        for name in first._replica_state():
            setattr(stacked, name, [stacked.ops.to_device(np.concatenate(parts))
                                    for parts in zip(*(getattr(net, name) for net in nets))])
        return stacked

    def copy_to(self, nets):
        """Write replica r's parameters (and per-replica state) into the one-replica nets[r]."""
        self.layout.unstack(self.ops.to_host(self.params), [net.params for net in nets])
        for name in self._replica_state():
            for k, array in enumerate(getattr(self, name)):
                values = self.ops.to_host(array)
                for r, net in enumerate(nets):
                    getattr(net, name)[k][...] = values[r:r + 1]
