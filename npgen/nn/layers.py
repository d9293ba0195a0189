"""How a network's layers are wired: the skip styles, and a layer seen as an affine map.

Layer k (k = 0 .. L-1) of an npgen network computes ``a_k = act_k(W_k h_k + b_k)``. Its input
``h_k`` is built from the earlier *nodes* (node 0 is the network input x, node k+1 is a_k) as a
list of *segments* laid side by side, each segment the sum of some nodes (a narrower node adds
into the segment's leading columns, a zero-padded, parameter-free shortcut). One description,
:func:`layer_segments`, drives the forward, backward and tangent passes of :class:`npgen.MLP`
and the float64 analysis of :mod:`npgen.analysis.lipschitz` alike.
"""

from dataclasses import dataclass

import numpy as np

from ..util.checks import check_choice

SKIP_STYLES = ("plain", "resnet", "densenet")


def layer_segments(sizes, skip):
    """Return, for each layer k, its input as a list of segments (tuples of node indices).

    >>> layer_segments([1, 8, 8, 1], "resnet")
    [[(0,)], [(1,)], [(2, 1)]]
    >>> layer_segments([1, 8, 8, 1], "densenet")
    [[(0,)], [(0,), (1,)], [(0,), (1,), (2,)]]
    """
    check_choice("skip", skip, SKIP_STYLES)
    n_layers = len(sizes) - 1
    if skip == "plain":
        return [[(k,)] for k in range(n_layers)]
    if skip == "densenet":
        return [[(j,) for j in range(k + 1)] for k in range(n_layers)]
    segments, members = [], (0,)
    for k in range(n_layers):
        if k > 0:
            residual = k >= 2 and sizes[k] >= sizes[k - 1]
            members = (k,) + members if residual else (k,)
        segments.append([members])
    return segments


def segment_width(sizes, segment):
    """Width of a segment: that of its widest node (narrower nodes are zero-padded)."""
    return max(sizes[j] for j in segment)


def segment_spans(segments, widths):
    """Columns [start, stop) of each segment of a layer input, given the node widths.

    Segments lie side by side, each as wide as its widest node (:func:`segment_width`); node j
    of a segment occupies its leading columns start .. start + widths[j].
    """
    spans, start = [], 0
    for seg in segments:
        stop = start + segment_width(widths, seg)
        spans.append((start, stop))
        start = stop
    return spans


def gather_segments(segments, nodes):
    """A layer input h = [s_1; ...; s_S] from 2-D node arrays (rows are samples), each
    s = sum_j P_j a_j over its segment's nodes (P_j zero-pads node j into the segment's leading
    columns). The same map builds values, tangents, Jacobians and interval ends: the padded
    columns are exactly 0, a constant with zero derivative."""
    if len(segments) == 1 and len(segments[0]) == 1:
        return nodes[segments[0][0]]
    widths = {j: nodes[j].shape[1] for seg in segments for j in seg}
    spans = segment_spans(segments, widths)
    h = np.zeros((nodes[segments[0][0]].shape[0], spans[-1][1]))
    for (start, _), seg in zip(spans, segments):
        for j in seg:
            h[:, start:start + widths[j]] += nodes[j]
    return h


def scatter_segments(segments, grad_h, grads):
    """Add the gradient of a layer input to its nodes' gradients ``grads`` (2-D arrays, replaced
    by new ones): the adjoint of :func:`gather_segments`, P_j^T keeps the leading widths[j]
    columns of the segment's block."""
    widths = {j: grads[j].shape[1] for seg in segments for j in seg}
    for (start, _), seg in zip(segment_spans(segments, widths), segments):
        for j in seg:
            grads[j] = grads[j] + grad_h[:, start:start + widths[j]]


@dataclass(frozen=True)
class AffineLayer:
    """One layer ``a = act(W h + b)`` of a network seen as a function of its input alone.

    ``inputs`` lists the segments that build h from earlier nodes (node 0 is the network input,
    node k+1 the output of layer k), as :func:`layer_segments` does: segments are laid
    side by side and each is the sum of the nodes it names, ``s = sum_j P_j a_j``. A segment is
    as wide as its widest node (:func:`segment_width`); P_j zero-pads a narrower node
    into the segment's leading columns (the parameter-free shortcut of a widening resnet layer),
    so ``weight`` has as many columns as the segment widths add up to. Inputs held fixed (the
    noise-level embedding of a score network) are folded into ``bias``.
    """

    weight: np.ndarray
    bias: np.ndarray
    activation: str
    slope: float
    inputs: tuple
