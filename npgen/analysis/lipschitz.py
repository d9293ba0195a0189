"""Lipschitz constants of npgen networks, computed from their weights.

The paper estimates Lip(g) by the largest slope between the 1000 points of linspace(-10, 10)
(:func:`paper_grid_estimate`): a lower estimate, blind outside the window. From the weights
we can do better:

:func:`exact_lipschitz_1d`
    A network R -> R^d with identity / ReLU / LeakyReLU activations is continuous and piecewise
    linear. We find all its linear pieces and return max over pieces of ||slope||: the exact
    constant, up to float64 rounding.
:func:`lipschitz_enclosure_1d`
    Any activations (SiLU, tanh, sigmoid, mixed with piecewise-linear ones), input in R:
    interval branch and bound over the whole real line, tails included, encloses
    Lip(g) = sup_x ||g'(x)|| in [lower, upper] with upper - lower <= tol * upper.
:func:`lipschitz_bounds`
    Any input dimension: upper bounds from the weights (:func:`product_upper_bound`,
    :func:`split_slope_upper_bound`, :func:`interval_jacobian_upper_bound`), and a lower bound,
    the largest Jacobian norm ||J(x)||_2 found by search (:func:`jacobian_norm_search`).

Every function takes an :class:`npgen.MLP` or a list of :class:`AffineLayer` (a network seen as
a function of its input alone, e.g. the score network s(., sigma) at a fixed noise level) and
works on float64 copies of the weights, in evaluation semantics (spectral norm with its stored
vectors, no power iteration). Norms are Euclidean throughout.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from .. import kernels
from ..kernels import numpy_ref
from ..nn import DenseScoreNetwork, ScoreNetwork, read_network
from ..nn.layers import AffineLayer, gather_segments, scatter_segments, segment_spans
from ..nn.mlp import MLP
from ..util.checks import check_number
from ..util.progress import progress_bar

PIECEWISE_LINEAR = ("identity", "relu", "leaky_relu")

#: Breakpoints closer than this (relative to max(1, |x|)) are one breakpoint.
MERGE_RTOL = 1e-12
#: Adjacent pieces whose slopes agree to this relative precision are one piece.
SLOPE_RTOL = 1e-9


# --------------------------------------------------------------------------- the layers


def layers_of(net):
    """Return ``net`` as a list of float64 :class:`AffineLayer`.

    For an :class:`npgen.MLP` the weights are the effective ones (W_k / sigma_k with spectral
    norm, as evaluation mode applies them); a list of AffineLayer is checked and copied.
    """
    if isinstance(net, MLP):
        names = [net.activation] * (net.n_layers - 1) + [net.output_activation]
        return [AffineLayer(weight=np.array(net.effective_weight(k), dtype=np.float64),
                            bias=np.array(net.biases[k], dtype=np.float64),
                            activation=names[k], slope=float(net.slope),
                            inputs=tuple(tuple(seg) for seg in net.segments[k]))
                for k in range(net.n_layers)]
    if not isinstance(net, (list, tuple)) or not net or not all(
            isinstance(layer, AffineLayer) for layer in net):
        raise ValueError("expected an npgen.MLP or a non-empty list of AffineLayer,"
                         f" got {type(net).__name__}")
    layers = [replace(layer, weight=np.array(layer.weight, dtype=np.float64),
                      bias=np.array(layer.bias, dtype=np.float64), slope=float(layer.slope),
                      inputs=tuple(tuple(int(j) for j in seg) for seg in layer.inputs))
              for layer in net]
    _node_widths(layers)
    return layers


def _node_widths(layers):
    """Widths of nodes 0..L (input, then each layer's output); checks that the layers fit.

    Raises ValueError (one sentence) on a layer whose shapes or inputs do not match.
    """
    first = layers[0]
    if first.weight.ndim != 2 or not first.inputs or any(seg != (0,) for seg in first.inputs) \
            or first.weight.shape[1] % len(first.inputs):
        raise ValueError("layer 0 must read only the network input (inputs ((0,),)) with a 2-D weight")
    widths = [first.weight.shape[1] // len(first.inputs)]
    for k, layer in enumerate(layers):
        kernels.activation_code(layer.activation)
        W, b = layer.weight, layer.bias
        if W.ndim != 2 or b.shape != (W.shape[0],) or not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise ValueError(f"layer {k} needs a finite 2-D weight and a bias of matching length,"
                             f" got {W.shape} and {b.shape}")
        if not layer.inputs or any(not seg or min(seg) < 0 or max(seg) > k for seg in layer.inputs):
            raise ValueError(f"layer {k} inputs {layer.inputs} must name earlier nodes 0..{k}")
        fan_in = segment_spans(layer.inputs, widths)[-1][1]
        if fan_in != W.shape[1]:
            raise ValueError(f"layer {k} reads {fan_in} features but its weight has {W.shape[1]} columns")
        widths.append(W.shape[0])
    return widths


def _kink_slope(layer):
    """Slope left of 0 of a piecewise-linear activation (relu 0, leaky its slope, identity 1)."""
    return {"identity": 1.0, "relu": 0.0, "leaky_relu": layer.slope}[layer.activation]


# --------------------------------------------------------------------------- activations
# The activations' math is the reference kernels' (npgen.kernels.numpy_ref), defined on the
# extended reals: the tail boxes of the interval arithmetic reach z = -inf and z = +inf.


def _act(layer, z):
    """act(z) elementwise, with the limits at z = +-inf."""
    return numpy_ref.activation(kernels.activation_code(layer.activation), layer.slope, z)


def _act_prime(layer, z):
    """act'(z) elementwise (the left derivative at the kink of relu / leaky_relu, as npgen's kernels)."""
    return numpy_ref.activation_derivative(kernels.activation_code(layer.activation), layer.slope, z)


def _act_second(layer, z):
    """act''(z) elementwise (0 for the piecewise-linear activations away from their kink)."""
    return numpy_ref.activation_second_derivative(kernels.activation_code(layer.activation),
                                                  layer.slope, z)


def _silu(order, z):
    """silu's ``order``-th derivative (0, 1 or 2) at a float z."""
    functions = (numpy_ref.activation, numpy_ref.activation_derivative,
                 numpy_ref.activation_second_derivative)
    return float(functions[order](kernels.SILU, 0.0, np.float64(z)))


def _bisect(f, lo, hi):
    """The root of f in [lo, hi] (f changes sign there), to float64 precision."""
    flo = f(lo)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if (f(mid) > 0) == (flo > 0):
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


#: silu'' = s (1 - s) (2 - z tanh(z / 2)) vanishes at +-SILU_KNEE: silu' is largest there
#: (about 1.0998) and smallest at -SILU_KNEE (about -0.0998).
SILU_KNEE = _bisect(lambda z: _silu(2, z), 0.0, 5.0)
#: silu' vanishes at SILU_ARGMIN (about -1.2785), where silu is smallest (about -0.2785).
SILU_ARGMIN = _bisect(lambda z: _silu(1, z), -5.0, 0.0)
#: silu''' = s (1 - s) [(1 - 2s)(3 + z (1 - 2s)) - 2 z s (1 - s)] vanishes at 0 and +-SILU_KNEE2
#: (about 3.4358): silu'' (even) is largest at 0 (1/2), smallest at +-SILU_KNEE2.
SILU_KNEE2 = _bisect(lambda z: (lambda s: (1 - 2 * s) * (3 + z * (1 - 2 * s)) - 2 * z * s * (1 - s))(
    float(numpy_ref.activation(kernels.SIGMOID, 0.0, np.float64(z)))), 1.0, 6.0)
#: tanh'' = -2 t (1 - t^2) (odd) is largest at -TANH_KNEE, smallest at +TANH_KNEE, where t^2 = 1/3.
TANH_KNEE = float(np.arctanh(1 / np.sqrt(3)))
#: sigmoid'' = s (1 - s) (1 - 2s) has the same shape, extremes where s = (3 -+ sqrt 3) / 6.
SIGMOID_KNEE = float(np.log((3 + np.sqrt(3)) / (3 - np.sqrt(3))))


def _derivative_range(layer):
    """[min, max] of act'(z) over all real z: the range every slope of the activation lies in."""
    name = layer.activation
    if name in PIECEWISE_LINEAR:
        s = _kink_slope(layer)
        return min(s, 1.0), max(s, 1.0)
    if name == "tanh":
        return 0.0, 1.0
    if name == "sigmoid":
        return 0.0, 0.25
    return _silu(1, -SILU_KNEE), _silu(1, SILU_KNEE)


# --------------------------------------------------------------------------- float64 passes


def _evaluate(layers, x, dx=None):
    """g(x) for rows x (n, d_in) in float64, and with ``dx`` also the tangent J_g(x) dx."""
    nodes, tangents = [x], [dx]
    for layer in layers:
        z = gather_segments(layer.inputs, nodes) @ layer.weight.T + layer.bias
        nodes.append(_act(layer, z))
        if dx is not None:
            tangents.append(_act_prime(layer, z) * (gather_segments(layer.inputs, tangents) @ layer.weight.T))
    return nodes[-1], tangents[-1]


def _jvp(layers, x, v):
    """J_g(x) v, row by row."""
    return _evaluate(layers, x, v)[1]


def _vjp(layers, x, u):
    """J_g(x)^T u, row by row: backprop of the cotangent u through :func:`npgen.nn.layers.scatter_segments`."""
    nodes, pre = [x], []
    for layer in layers:
        pre.append(gather_segments(layer.inputs, nodes) @ layer.weight.T + layer.bias)
        nodes.append(_act(layer, pre[-1]))
    grads = [np.zeros_like(node) for node in nodes]
    grads[-1] = u
    for k in reversed(range(len(layers))):
        grad_h = (grads[k + 1] * _act_prime(layers[k], pre[k])) @ layers[k].weight
        scatter_segments(layers[k].inputs, grad_h, grads)
    return grads[0]


def _require_1d_input(layers, what, alternative):
    if _node_widths(layers)[0] != 1:
        raise ValueError(f"{what} needs a network with input dimension 1, this one has"
                         f" {_node_widths(layers)[0]}: use {alternative}")


# --------------------------------------------------------------------------- exact, 1-D


@dataclass(frozen=True)
class LipschitzResult:
    """What is known of Lip(g) = sup over x of ||J_g(x)||_2: lower <= Lip(g) <= upper.

    What :func:`exact_lipschitz_1d`, :func:`lipschitz_enclosure_1d` and :func:`lipschitz_bounds`
    return. ``lower`` = ||J_g(location)||_2 is attained at ``location`` (found by
    ``lower_method``); ``upper`` comes from ``upper_method``. ``candidates`` holds every upper
    bound tried, by name (None where one does not apply). ``exact`` is the constant when the two
    ends are equal, else None.
    """

    lower: float
    upper: float
    location: object
    lower_method: str
    upper_method: str
    candidates: dict = field(default_factory=dict)

    @property
    def exact(self):
        return self.upper if self.lower == self.upper else None


@dataclass(frozen=True, kw_only=True)
class ExactLipschitz(LipschitzResult):
    """The exact Lipschitz constant of a piecewise-linear network g: R -> R^d (lower = upper =
    ``constant``).

    ``breakpoints`` t_1 < ... < t_{P-1} split R into the P = ``n_pieces`` linear pieces
    (-inf, t_1], [t_1, t_2], ..., [t_{P-1}, inf); ``slopes`` holds g' on each piece (shape (P,)
    for a scalar output, (P, d) otherwise). ``constant`` = max over pieces of ||slope||_2,
    attained on the piece ``piece`` = (left, right); ``location`` is its midpoint, or -inf / +inf
    when the steepest piece is an unbounded end piece (``note`` then says so).
    """

    piece: tuple
    n_pieces: int
    breakpoints: np.ndarray
    slopes: np.ndarray
    note: str

    @property
    def constant(self):
        return self.upper


def _piece_samples(t):
    """One point strictly inside each of the len(t) + 1 pieces cut by sorted breakpoints t."""
    reach = lambda x: max(1.0, abs(x))  # noqa: E731  (one step out of an end piece, never lost to rounding)
    return np.concatenate([[t[0] - reach(t[0])], 0.5 * (t[:-1] + t[1:]), [t[-1] + reach(t[-1])]])


def _zero_crossings(t, z, dz):
    """Points where some unit's pre-activation changes sign strictly inside a piece.

    ``z`` (m, w) holds the values at the breakpoints t (m,), ``dz`` (m + 1, w) the slopes on the
    pieces. Inside [t_i, t_{i+1}]: z_i and z_{i+1} of opposite signs, root t_i + (t_{i+1} - t_i)
    z_i / (z_i - z_{i+1}). Left end piece z(x) = z_0 + dz_0 (x - t_0): root t_0 - z_0 / dz_0,
    inside the piece when z_0 / dz_0 > 0; right end piece likewise when z_{m-1} / dz_m < 0.
    """
    sign, dsign = np.sign(z), np.sign(dz)
    i, j = np.nonzero(sign[:-1] * sign[1:] < 0)
    inner = t[i] + (t[i + 1] - t[i]) * (z[i, j] / (z[i, j] - z[i + 1, j]))
    left = np.nonzero(sign[0] * dsign[0] > 0)[0]
    right = np.nonzero(sign[-1] * dsign[-1] < 0)[0]
    return np.concatenate([inner, t[0] - z[0, left] / dz[0, left],
                           t[-1] - z[-1, right] / dz[-1, right]])


def _insert_breakpoints(t, candidates):
    """Sorted union of t and the candidates, a candidate within MERGE_RTOL of a kept point dropped."""
    c = np.sort(candidates[np.isfinite(candidates)])
    if c.size == 0:
        return t
    tol = MERGE_RTOL * np.maximum(1.0, np.abs(c))
    pos = np.searchsorted(t, c)
    near_left = (pos > 0) & (c - t[np.maximum(pos - 1, 0)] <= tol)
    near_right = (pos < t.size) & (t[np.minimum(pos, t.size - 1)] - c <= tol)
    c, tol = c[~(near_left | near_right)], tol[~(near_left | near_right)]
    keep = np.ones(c.size, bool)
    keep[1:] = np.diff(c) > tol[1:]
    return np.union1d(t, c[keep])


def _refine(t, t_new, functions):
    """Re-express continuous piecewise-linear functions on finer breakpoints t_new (containing t).

    Each function is (values at t, slopes on the len(t) + 1 pieces). A new breakpoint x in old
    piece p gets value v(anchor) + slope_p (x - anchor); each new piece inherits the slope of
    the old piece that contains it.
    """
    piece = np.searchsorted(t, t_new, side="right")
    anchor = np.maximum(piece - 1, 0)
    offset = (t_new - t[anchor])[:, None]
    inherit = np.searchsorted(t, _piece_samples(t_new), side="right")
    return [(values[anchor] + slopes[piece] * offset, slopes[inherit]) for values, slopes in functions]


def _activate_pieces(layer, t, z, dz):
    """Node values act(z) at the breakpoints and slopes act'(z) dz on the pieces.

    No unit changes sign inside a piece any more, so act' is read at one interior point:
    the midpoint of an inner piece, a point one step out on an end piece.
    """
    reach = np.array([max(1.0, abs(t[0])), max(1.0, abs(t[-1]))])
    inside = np.concatenate([z[:1] - reach[0] * dz[:1], 0.5 * (z[:-1] + z[1:]),
                             z[-1:] + reach[1] * dz[-1:]])
    return _act(layer, z), _act_prime(layer, inside) * dz


def _last_use(layers):
    """For each node, the index of the last layer that reads it (the output node: len(layers))."""
    last = {len(layers): len(layers)}
    for k, layer in enumerate(layers):
        for seg in layer.inputs:
            last.update({j: k for j in seg})
    return last


def exact_lipschitz_1d(net):
    """Exact Lipschitz constant of a piecewise-linear network g: R -> R^d (see :class:`ExactLipschitz`).

    Every node is a continuous piecewise-linear function of x, held as its values at a shared
    sorted set of breakpoints plus its slopes on every piece, the two unbounded end pieces
    included. Layer by layer, in float64:

    1. z = W h + b at the breakpoints and dz = W dh on the pieces (h gathered from the nodes;
       the zero-padded columns of a widening skip are 0 with slope 0, affine on every piece);
    2. where a unit of a kinked activation changes sign inside a piece (end pieces included),
       the crossing becomes a new breakpoint, and every live node is re-expressed on the finer set;
    3. now each unit has one sign per piece: a = act(z), da = act'(sign) dz.

    Between breakpoints nothing bends, so g is linear on every piece and Lip(g) = max ||g'||.
    Adjacent pieces whose slopes agree to SLOPE_RTOL are merged (a kink that no path carries to
    the output, e.g. through dead ReLUs, is no breakpoint of g); breakpoints closer than
    MERGE_RTOL * max(1, |x|) are one. Raises ValueError for smooth activations
    (use :func:`lipschitz_enclosure_1d`) or an input dimension other than 1.
    """
    layers = layers_of(net)
    _require_1d_input(layers, "exact_lipschitz_1d", "lipschitz_bounds")
    for k, layer in enumerate(layers):
        if layer.activation not in PIECEWISE_LINEAR:
            raise ValueError(f"layer {k} uses the smooth activation {layer.activation!r}, so the"
                             " network is not piecewise linear: use lipschitz_enclosure_1d")
    last_use = _last_use(layers)
    t = np.zeros(1)  # a first breakpoint, merged away at the end if nothing bends there
    nodes = {0: (np.zeros((1, 1)), np.ones((2, 1)))}
    for k, layer in enumerate(layers):
        h = gather_segments(layer.inputs, {j: f[0] for j, f in nodes.items()})
        dh = gather_segments(layer.inputs, {j: f[1] for j, f in nodes.items()})
        z, dz = h @ layer.weight.T + layer.bias, dh @ layer.weight.T
        if _kink_slope(layer) != 1.0:
            t_new = _insert_breakpoints(t, _zero_crossings(t, z, dz))
            if t_new.size > t.size:
                keys = list(nodes)
                refined = _refine(t, t_new, [nodes[j] for j in keys] + [(z, dz)])
                nodes, (z, dz), t = dict(zip(keys, refined[:-1])), refined[-1], t_new
        nodes[k + 1] = _activate_pieces(layer, t, z, dz)
        nodes = {j: f for j, f in nodes.items() if last_use.get(j, k) > k}
    return _summarize(t, nodes[len(layers)][1])


#: How :func:`exact_lipschitz_1d` finds its constant.
EXACT_METHOD = "largest slope over the linear pieces"


def _summarize(t, slopes):
    """Merge neighbouring pieces of equal slope (each merged piece keeps the steepest of its
    slopes) and locate the steepest piece."""
    norms = np.linalg.norm(slopes, axis=1)
    constant = float(norms.max())
    change = np.linalg.norm(np.diff(slopes, axis=0), axis=1)
    bends = change > SLOPE_RTOL * np.maximum(norms[:-1], norms[1:]) + 1e-13 * constant
    group = np.concatenate([[0], np.cumsum(bends)])
    order = np.lexsort((-norms, group))
    steepest = order[np.concatenate([[True], np.diff(group[order]) > 0])]
    t, slopes = t[bends], slopes[steepest]
    best = int(np.argmax(norms[steepest]))
    edges = np.concatenate([[-np.inf], t, [np.inf]])
    left, right = float(edges[best]), float(edges[best + 1])
    if t.size == 0:
        location, note = 0.0, "g is affine: every x attains the constant"
    elif best == 0:
        location, note = -np.inf, f"steepest on the unbounded end piece x <= {right:.6g}"
    elif best == t.size:
        location, note = np.inf, f"steepest on the unbounded end piece x >= {left:.6g}"
    else:
        location, note = 0.5 * (left + right), f"steepest on the piece [{left:.6g}, {right:.6g}]"
    return ExactLipschitz(lower=constant, upper=constant, location=location, lower_method=EXACT_METHOD,
                          upper_method=EXACT_METHOD, piece=(left, right),
                          n_pieces=int(slopes.shape[0]), breakpoints=t,
                          slopes=slopes[:, 0] if slopes.shape[1] == 1 else slopes, note=note)


# --------------------------------------------------------------------------- enclosure, 1-D


def _interval_mul(al, ah, bl, bh):
    """[al, ah] * [bl, bh] elementwise; 0 * inf counts as 0 (a zero factor times an unbounded end)."""
    with np.errstate(invalid="ignore"):
        products = np.stack([al * bl, al * bh, ah * bl, ah * bh])
    products = np.nan_to_num(products, nan=0.0, posinf=np.inf, neginf=-np.inf)
    return products.min(axis=0), products.max(axis=0)


def _interval_affine(lo, hi, W, b):
    """Enclosure of {W h + b : lo <= h <= hi}; bounds may be infinite.

    Lower end: W+ lo + W- hi + b, upper end: W+ hi + W- lo + b (W+ = max(W, 0), W- = min(W, 0));
    an end is infinite where a nonzero weight meets an infinite bound of the right side.
    """
    Wp, Wn = np.maximum(W, 0).T, np.minimum(W, 0).T
    flo, fhi = np.where(np.isfinite(lo), lo, 0.0), np.where(np.isfinite(hi), hi, 0.0)
    zlo, zhi = flo @ Wp + fhi @ Wn + b, fhi @ Wp + flo @ Wn + b
    down = np.isneginf(lo) @ (Wp > 0) + np.isposinf(hi) @ (Wn < 0)
    up = np.isposinf(hi) @ (Wp > 0) + np.isneginf(lo) @ (Wn < 0)
    return np.where(down > 0, -np.inf, zlo), np.where(up > 0, np.inf, zhi)


def _interval_linear(lo, hi, W):
    """Enclosure of {W d : lo <= d <= hi} for finite bounds, in center-radius form."""
    center, radius = 0.5 * (lo + hi) @ W.T, 0.5 * (hi - lo) @ np.abs(W).T
    return center - radius, center + radius


def _range_on(f, lo, hi, maxima=(), minima=()):
    """Enclosure of f([lo, hi]) for f monotone between its local extremes ``maxima``, ``minima``:
    the extreme values among the ends and the extremes that lie inside."""
    a, b = f(lo), f(hi)
    low, high = np.minimum(a, b), np.maximum(a, b)
    for m in maxima:
        high = np.where((lo <= m) & (m <= hi), np.maximum(high, f(np.float64(m))), high)
    for m in minima:
        low = np.where((lo <= m) & (m <= hi), np.minimum(low, f(np.float64(m))), low)
    return low, high


def _interval_act(layer, lo, hi):
    """Enclosure of act([lo, hi]): relu / leaky may bend at 0, silu has its minimum at SILU_ARGMIN."""
    f = lambda z: _act(layer, z)  # noqa: E731
    if layer.activation in ("relu", "leaky_relu"):
        return _range_on(f, lo, hi, maxima=(0.0,), minima=(0.0,))
    return _range_on(f, lo, hi, minima=(SILU_ARGMIN,) if layer.activation == "silu" else ())


def _interval_act_prime(layer, lo, hi):
    """Enclosure of act'([lo, hi]).

    relu / leaky: 1 on z >= 0, slope on z <= 0, both across 0. tanh' and sigmoid' are even and
    largest at 0; silu' has its minimum at -SILU_KNEE and its maximum at +SILU_KNEE.
    """
    name = layer.activation
    if name in PIECEWISE_LINEAR:
        s = _kink_slope(layer)
        across = (lo < 0) & (hi > 0)
        one_side = np.where(hi <= 0, s, 1.0)
        return np.where(across, min(s, 1.0), one_side), np.where(across, max(s, 1.0), one_side)
    f = lambda z: _act_prime(layer, z)  # noqa: E731
    if name == "silu":
        return _range_on(f, lo, hi, maxima=(SILU_KNEE,), minima=(-SILU_KNEE,))
    return _range_on(f, lo, hi, maxima=(0.0,))


def _interval_act_second(layer, lo, hi):
    """Enclosure of act''([lo, hi]); unbounded for a relu / leaky unit across its kink (act' jumps)."""
    name = layer.activation
    if name in PIECEWISE_LINEAR:
        across = (lo < 0) & (hi > 0) & (_kink_slope(layer) != 1.0)
        return np.where(across, -np.inf, 0.0), np.where(across, np.inf, 0.0)
    f = lambda z: _act_second(layer, z)  # noqa: E731
    if name == "silu":
        return _range_on(f, lo, hi, maxima=(0.0,), minima=(-SILU_KNEE2, SILU_KNEE2))
    knee = TANH_KNEE if name == "tanh" else SIGMOID_KNEE
    return _range_on(f, lo, hi, maxima=(-knee,), minima=(knee,))


def _interval_square(lo, hi):
    """Enclosure of {d^2 : lo <= d <= hi}."""
    a, b = lo * lo, hi * hi
    return np.where((lo < 0) & (hi > 0), 0.0, np.minimum(a, b)), np.maximum(a, b)


def _kink_columns(layers):
    """Where each kinked layer's units sit in the table of forced unit states, and the table width.

    Kinked layers are relu / leaky_relu with slope != 1; other layers get offset None.
    """
    offsets, total = [], 0
    for layer in layers:
        kinked = layer.activation in ("relu", "leaky_relu") and _kink_slope(layer) != 1.0
        offsets.append(total if kinked else None)
        total += layer.weight.shape[0] if kinked else 0
    return offsets, total


def _box_bounds(layers, offsets, lo, hi, x0, forced):
    """Bounds for sub-problems (box [lo_i, hi_i] of the input line, forced unit states).

    Returns an upper bound of ||g'|| over the points of each box where every forced unit is in
    its forced state (0 where no point is), the value ||g'(x0_i)|| at a point x0_i of the box,
    and which free kinked units straddle their kink on the box.

    Each node carries intervals of its value v, first derivative v' and second derivative v''
    in x; a narrower node enters a skip sum zero-padded, [0, 0] in all three. For a
    pre-activation z = W h + b, plain interval arithmetic gives enclosures of z, z'
    and z''; the mean-value forms

        z(X)  in  z(x0)  + z'(X)  (X - x0),        z'(X)  in  z'(x0) + z''(X) (X - x0)

    give others, and each is intersected with its plain enclosure. The mean-value forms keep
    the correlation between units, so the bound on g' tightens like the square of the box width
    (and the far tails, where z is nearly linear in x, close). Through the activation:
    a' = act'(z) z',  a'' = act''(z) z'^2 + act'(z) z''. These enclosures hold on the whole
    box. The bound is carried by a second chain of first derivatives for the forced region: a
    unit forced on (state 1) has z >= 0, forced off (state 0) z <= 0, so its slope there is one
    number instead of [min(slope, 1), max(slope, 1)]; that chain takes plain interval
    arithmetic inside the whole box's enclosures, not the mean-value forms, whose anchor x0 may
    lie across a kink from the forced region.
    """
    x = x0[:, None]
    one, zero = np.ones_like(x), np.zeros_like(x)
    nodes = [((lo[:, None], hi[:, None]), (one, one), (zero, zero))]
    forced_slopes = [(one, one)]
    points = [(x, one)]
    shift = (lo - x0)[:, None], (hi - x0)[:, None]
    empty = np.zeros(lo.size, bool)
    straddle = np.zeros(forced.shape, bool)
    for layer, col in zip(layers, offsets):
        W, b = layer.weight, layer.bias
        ends = [[gather_segments(layer.inputs, [node[order][end] for node in nodes]) for end in (0, 1)]
                for order in range(3)]
        zp = gather_segments(layer.inputs, [p[0] for p in points]) @ W.T + b
        dzp = gather_segments(layer.inputs, [p[1] for p in points]) @ W.T
        ddz = _interval_affine(*ends[2], W, 0.0)
        dz = _intersect(_interval_linear(*ends[1], W), dzp, _interval_mul(*ddz, *shift))
        z = _intersect(_interval_affine(*ends[0], W, b), zp, _interval_mul(*dz, *shift))
        # The derivative on the forced region: plain interval arithmetic on the forced chain,
        # inside the whole box's enclosure (the mean-value forms hold on the whole box only:
        # the anchor x0 may lie outside the forced region, across a kink from it).
        forced_ends = [gather_segments(layer.inputs, [d[end] for d in forced_slopes]) for end in (0, 1)]
        plain = _interval_linear(*forced_ends, W)
        forced_dz = (np.maximum(plain[0], dz[0]), np.minimum(plain[1], dz[1]))
        forced_z = z
        if col is not None:
            state = forced[:, col:col + W.shape[0]]
            straddle[:, col:col + W.shape[0]] = (state < 0) & (z[0] < 0) & (z[1] > 0)
            forced_z = (np.where(state == 1, np.maximum(z[0], 0.0), z[0]),
                        np.where(state == 0, np.minimum(z[1], 0.0), z[1]))
            empty |= (forced_z[0] > forced_z[1]).any(axis=1)
        slope = _interval_act_prime(layer, *z)
        bend = _interval_mul(*_interval_act_second(layer, *z), *_interval_square(*dz))
        carry = _interval_mul(*slope, *ddz)
        nodes.append((_interval_act(layer, *z), _interval_mul(*slope, *dz),
                      (bend[0] + carry[0], bend[1] + carry[1])))
        forced_slopes.append(_interval_mul(*_interval_act_prime(layer, *forced_z), *forced_dz))
        points.append((_act(layer, zp), _act_prime(layer, zp) * dzp))
    d_lo, d_hi = forced_slopes[-1]
    upper = np.sqrt((np.maximum(np.abs(d_lo), np.abs(d_hi)) ** 2).sum(axis=1))
    return np.where(empty, 0.0, upper), np.linalg.norm(points[-1][1], axis=1), straddle


def _intersect(plain, center, spread):
    """``plain`` intersected with center + spread, widened to contain center (against rounding)."""
    return (np.minimum(np.maximum(plain[0], center + spread[0]), center),
            np.maximum(np.minimum(plain[1], center + spread[1]), center))


def _anchors(lo, hi):
    """A point of each box: the midpoint, or the finite end of an unbounded box."""
    return np.where(np.isneginf(lo), hi, np.where(np.isposinf(hi), lo, 0.5 * (lo + hi)))


def _split(lo, hi):
    """Halve finite boxes; cut [a, inf) into [a, a + r] and [a + r, inf), r = max(1, |a|) (mirrored
    for (-inf, b]), so the tails are explored at geometrically growing distances."""
    with np.errstate(invalid="ignore"):  # the unused branches of np.where may meet inf - inf
        cut = np.where(np.isposinf(hi), lo + np.maximum(1.0, np.abs(lo)),
                       np.where(np.isneginf(lo), hi - np.maximum(1.0, np.abs(hi)), 0.5 * (lo + hi)))
    return np.concatenate([lo, cut]), np.concatenate([cut, hi])


def _initial_boxes(layers, n_inner=64):
    """(-inf, -R], [-R, R] cut into n_inner boxes, [R, inf); R = twice the farthest first-layer kink."""
    w = layers[0].weight.sum(axis=1)
    centers = np.abs(layers[0].bias[w != 0] / w[w != 0])
    R = float(min(1e6, max(1.0, 2 * centers.max(initial=0.0))))
    edges = np.linspace(-R, R, n_inner + 1)
    return (np.concatenate([[-np.inf], edges[:-1], [R]]),
            np.concatenate([[-R], edges[1:], [np.inf]]))


#: A sub-problem with at most this many straddling kinked units branches on their states.
BRANCH_UNITS = 2


def lipschitz_enclosure_1d(net, tol=1e-3, max_boxes=2_000_000, chunk=4096):
    """An enclosure lower <= Lip(g) <= upper for a network g: R -> R^d of any activations.

    Lip(g) = sup over x in R of ||g'(x)||_2. Branch and bound over sub-problems of the extended
    line: for each an upper bound of ||g'|| from interval arithmetic (:func:`_box_bounds`) and a
    lower bound ||g'(x0)|| at a point of its box. A sub-problem whose upper bound is within
    ``tol`` (relative) of the best lower bound so far is retired; the others are split:

    * in x: halves, and for the tails (-inf, -R] and [R, inf), which are boxes like any other,
      a finite piece and a farther tail;
    * on a unit, when at most BRANCH_UNITS relu / leaky units straddle their kink on the box:
      one copy with the unit forced on, one forced off (every point of the box is in one of the
      two). Interval arithmetic alone cannot close the gap at a kink: one uncertain slope
      [slope, 1] feeding many downstream units is counted independently by each of them.

    On return ``upper - lower <= tol * upper``, lower = ||g'(location)|| is attained, and upper
    is the largest upper bound of sub-problems that cover R. The enclosure is exact in real
    arithmetic but not certified: it is computed in float64 rounded to nearest, not rounded
    outward, so its ends carry rounding errors (of order 1e-15 relative, far below ``tol``).

    Returns a :class:`LipschitzResult` (lower, upper, location). Raises RuntimeError when more
    than ``max_boxes`` sub-problems were needed (loosen ``tol``).
    """
    layers = layers_of(net)
    _require_1d_input(layers, "lipschitz_enclosure_1d", "lipschitz_bounds")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol!r}")
    offsets, n_kinked = _kink_columns(layers)
    lo, hi = _initial_boxes(layers)
    forced = np.full((lo.size, n_kinked), -1, np.int8)
    lower, location, upper, spent = 0.0, 0.0, 0.0, 0
    while lo.size:
        spent += lo.size
        if spent > max_boxes:
            raise RuntimeError(f"lipschitz_enclosure_1d used {max_boxes} boxes without closing the"
                               f" gap (lower {lower:.6g}); retry with a larger tol")
        x0 = _anchors(lo, hi)
        parts = [_box_bounds(layers, offsets, lo[i:i + chunk], hi[i:i + chunk], x0[i:i + chunk],
                             forced[i:i + chunk]) for i in range(0, lo.size, chunk)]
        bound, at_x0, straddle = (np.concatenate([p[j] for p in parts]) for j in range(3))
        best = int(np.argmax(at_x0))
        if at_x0[best] > lower:
            lower, location = float(at_x0[best]), float(x0[best])
        done = bound - lower <= tol * bound
        upper = max(upper, float(bound[done].max(initial=0.0)))
        lo, hi, forced, straddle = lo[~done], hi[~done], forced[~done], straddle[~done]
        count = straddle.sum(axis=1)
        branch = (count >= 1) & (count <= BRANCH_UNITS)
        unit = straddle[branch].argmax(axis=1) if branch.any() else np.zeros(0, int)
        off, on = forced[branch].copy(), forced[branch].copy()
        off[np.arange(unit.size), unit], on[np.arange(unit.size), unit] = 0, 1
        split_lo, split_hi = _split(lo[~branch], hi[~branch])
        lo = np.concatenate([lo[branch], lo[branch], split_lo])
        hi = np.concatenate([hi[branch], hi[branch], split_hi])
        forced = np.concatenate([off, on, forced[~branch], forced[~branch]])
    return LipschitzResult(lower, max(upper, lower), location, "||g'(x)||_2 at the best box's anchor",
                           "interval branch and bound, float64")


# --------------------------------------------------------------------------- bounds, d > 1


def product_upper_bound(net):
    """Lip(g) <= the layer-product bound, propagated node by node through skips.

    With L_j a bound for node j (L_0 = 1): a segment s = sum_j P_j a_j has Lip <= sum of their
    L_j, since the zero-padding P_j preserves norms (||P_j v|| = ||v||); the layer input
    h = [s_1; ...; s_S] stacks segments, and
    ||W (h(x) - h(y))|| <= min(||W||_2 sqrt(sum_s L_s^2), sum_s ||W_s||_2 L_s) ||x - y||
    (the first since ||h(x) - h(y)||^2 = sum_s ||s_s(x) - s_s(y)||^2, the second by the triangle
    inequality over the column blocks W_s, each as wide as its segment: :func:`segment_spans`).
    The activation multiplies by max |act'|.
    """
    layers = layers_of(net)
    bounds, widths = [1.0], _node_widths(layers)
    for layer in layers:
        seg = [sum(bounds[j] for j in s) for s in layer.inputs]
        norm = np.linalg.norm(layer.weight, 2)
        whole = norm * np.sqrt(sum(v * v for v in seg))
        if len(seg) > 1:
            blocks = sum(np.linalg.norm(layer.weight[:, a:b], 2) * v
                         for (a, b), v in zip(segment_spans(layer.inputs, widths), seg))
            whole = min(whole, blocks)
        lo, hi = _derivative_range(layer)
        bounds.append(max(abs(lo), abs(hi)) * whole)
    return float(bounds[-1])


def _is_chain(layers):
    """True when every layer reads only the previous node (no skips)."""
    return all(layer.inputs == ((k,),) for k, layer in enumerate(layers))


def split_slope_upper_bound(net):
    """A Lip(g) upper bound for a chain (no skips), after Combettes and Pesquet (2020).

    The Jacobian is J = A_{L-1} W_{L-1} ... A_1 W_1 A_0 W_0 with A_k = diag(act_k'(z_k)) and
    every slope in [c_k - r_k, c_k + r_k]; so A_k = c_k I + r_k E_k with E_k diagonal, ||E_k|| <= 1.
    Expand the hidden A_0 .. A_{L-2}: one term per set S of layers that take r_k E_k. In a term,
    the weights between consecutive members of S multiply into one matrix P(i, j) = W_j ... W_i,
    so with N(i, j) = ||P(i, j)||_2

        ||J|| <= m_{L-1} sum_S prod_{k not in S} |c_k| prod_{k in S} r_k prod_blocks N(block),

    m_{L-1} = |c_{L-1}| + r_{L-1} for the output activation. The sum over the 2^(L-1) sets is a
    recursion over where the last block starts: F(j) = sum_i F(i-1) r_{i-1} N(i, j) prod_{i<=k<j} |c_k|
    (F(-1) r_{-1} = 1), and the bound is m_{L-1} F(L-1). Replacing each N by the product of the
    norms returns the layer-product bound, so this one is never larger; with identity
    activations (r = 0) it is ||W_{L-1} ... W_0||, the exact constant. Skips, the zero-padded
    ones of a widening resnet included, break the product form of J: such networks are refused.
    """
    layers = layers_of(net)
    if not _is_chain(layers):
        raise ValueError("split_slope_upper_bound needs a network without skips (a chain):"
                         " use product_upper_bound or interval_jacobian_upper_bound")
    n = len(layers)
    ranges = [_derivative_range(layer) for layer in layers]
    c = [abs(0.5 * (lo + hi)) for lo, hi in ranges]
    r = [0.5 * (hi - lo) for lo, hi in ranges]
    norms = {}
    for i in range(n):
        P = layers[i].weight
        for j in range(i, n):
            if j > i:
                P = layers[j].weight @ P
            norms[i, j] = np.linalg.norm(P, 2)
    F = []
    for j in range(n):
        F.append(sum((F[i - 1] * r[i - 1] if i > 0 else 1.0) * norms[i, j] * float(np.prod(c[i:j]))
                     for i in range(j + 1)))
    return float((c[-1] + r[-1]) * F[-1])


def interval_jacobian_upper_bound(net):
    """Lip(g) <= max over x of ||J(x)||_2 <= a bound from an interval matrix holding every J(x).

    Node j's Jacobian lies in C_j +- R_j elementwise (C_0 = I, R_0 = 0). Sums and stacks of
    nodes add and stack (C, R); a narrower node enters a sum zero-padded by P_j, a 0/1 matrix
    with at most one 1 per row, so J_j in C_j +- R_j gives P_j J_j in P_j C_j +- P_j R_j (the
    padded rows are 0 in all three): every enclosure still holds every J(x). z = W h gives (W C, |W| R); an activation whose slopes lie in
    [c - r, c + r] multiplies by D = c I + r E with E diagonal, |E| <= 1, hence
    C' = c W C,  R' = |c| |W| R + r (|W C| + |W| R).
    For J = C + Delta with |Delta| <= R: ||J|| <= ||C|| + ||Delta|| <= ||C||_2 + ||R||_2, and
    ||J|| <= || |C| + R ||_2 because |J| <= |C| + R elementwise and ||A||_2 <= || |A| ||_2 <= ||B||_2
    whenever |A| <= B (||Ax|| <= || |A| |x| || <= ||B |x| ||). The smaller of the two is returned.
    With identity activations R = 0 and the bound is ||W_L ... W_1||, the exact constant.
    """
    layers = layers_of(net)
    d_in = _node_widths(layers)[0]
    centers, radii = [np.eye(d_in)], [np.zeros((d_in, d_in))]
    for layer in layers:
        C = gather_segments(layer.inputs, [c.T for c in centers]).T
        R = gather_segments(layer.inputs, [r.T for r in radii]).T
        Cz, Rz = layer.weight @ C, np.abs(layer.weight) @ R
        lo, hi = _derivative_range(layer)
        c, r = 0.5 * (lo + hi), 0.5 * (hi - lo)
        centers.append(c * Cz)
        radii.append(abs(c) * Rz + r * (np.abs(Cz) + Rz))
    C, R = centers[-1], radii[-1]
    return float(min(np.linalg.norm(C, 2) + np.linalg.norm(R, 2),
                     np.linalg.norm(np.abs(C) + R, 2)))


def _unit_rows(v, fallback):
    """Rows of v scaled to unit norm; a zero row is replaced by the row of ``fallback``."""
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return np.where(norm > 0, v / np.where(norm > 0, norm, 1.0), fallback)


def _power_step(layers, x, v):
    """One power-iteration step on J(x)^T J(x) per row: v <- J^T J v / ||.||; returns (v, J v).

    J v comes from forward tangents, J^T u from backprop; ||J v|| never decreases under the step.
    """
    v = _unit_rows(_vjp(layers, x, _jvp(layers, x, v)), v)
    return v, _jvp(layers, x, v)


#: Screening sizes: as many points as SCREEN_BUDGET multiply-adds per pass allow, within bounds.
SCREEN_BUDGET, SCREEN_MAX, CHUNK = 1e8, 16384, 256


def _screen_size(layers, n_starts):
    """How many random points :func:`jacobian_norm_search` screens (more for smaller networks)."""
    cost = sum(layer.weight.size for layer in layers)
    return int(np.clip(SCREEN_BUDGET // cost, 32 * n_starts, max(SCREEN_MAX, 32 * n_starts)))


def jacobian_norm_search(net, n_starts=32, steps=200, seed=0, progress=None):
    """Lower bound max_x ||J(x)||_2 <= Lip(g), by search; returns (value, x).

    Screening: :func:`_screen_size` points x ~ N(0, s^2 I), scales s from 0.25 to 4
    (geometric), each with 8 power-iteration steps from a random unit v; the n_starts best
    become starts. Ascent: each step proposes a move of x, on even steps along the gradient of
    sigma(x) = u . J(x) v (u = J v / ||J v||), which is the Hessian-vector product
    H_{u.g}(x) v, taken as a central difference of J^T u along v; on odd steps in a random
    direction (piecewise-linear nets have zero gradient almost everywhere, and there the
    screening does most of the work). The trial point takes one power step from the current v
    and is kept when its ||J v|| is larger; the step length then grows 1.5x, else it halves.
    Every value is ||J(x) v|| for a unit v: a true lower bound. ``progress`` (a
    bar of :func:`npgen.util.progress.progress_bar`, optional) advances by one per block of screened
    points and per ascent step.
    """
    layers = layers_of(net)
    advance = progress.update if progress is not None else lambda: None
    rng = np.random.default_rng(seed)
    d = _node_widths(layers)[0]
    scales = np.geomspace(0.25, 4.0, _screen_size(layers, n_starts))
    x = rng.standard_normal((scales.size, d)) * scales[:, None]
    v = _unit_rows(rng.standard_normal(x.shape), 1.0)
    jv = np.empty((x.shape[0], _node_widths(layers)[-1]))
    for i in range(0, x.shape[0], CHUNK):  # blocks: bounded memory, and small BLAS products
        for _ in range(8):
            v[i:i + CHUNK], jv[i:i + CHUNK] = _power_step(layers, x[i:i + CHUNK], v[i:i + CHUNK])
        advance()
    top = np.argsort(-np.linalg.norm(jv, axis=1))[:n_starts]
    x, v, jv, scales = x[top], v[top], jv[top], scales[top]
    step = 0.1 * scales
    for i in range(steps):
        direction = _unit_rows(rng.standard_normal(x.shape), 1.0)
        if i % 2 == 0:
            u = _unit_rows(jv, 0.0)
            eps = (1e-4 * (1 + np.abs(x).max(axis=1)))[:, None]
            grad = (_vjp(layers, x + eps * v, u) - _vjp(layers, x - eps * v, u)) / (2 * eps)
            direction = _unit_rows(grad, direction)
        trial = x + step[:, None] * direction
        v_trial, jv_trial = _power_step(layers, trial, v)
        better = np.linalg.norm(jv_trial, axis=1) > np.linalg.norm(jv, axis=1)
        x, v, jv = (np.where(better[:, None], new, old)
                    for new, old in ((trial, x), (v_trial, v), (jv_trial, jv)))
        step = np.where(better, 1.5 * step, 0.5 * step)
        step = np.where(step < 1e-8 * scales, 0.1 * scales, step)
        advance()
    sigma = np.linalg.norm(jv, axis=1)
    best = int(np.argmax(sigma))
    return float(sigma[best]), x[best].copy()


def lipschitz_bounds(net, n_starts=32, steps=200, seed=0, quiet=True):
    """Upper bounds (from the weights) and a searched lower bound of Lip(g) (l2 norms) for any input dimension.

    Returns a :class:`LipschitzResult`: ``upper``, the smallest of :func:`product_upper_bound`,
    :func:`interval_jacobian_upper_bound` and, for chains, :func:`split_slope_upper_bound`
    (each in ``candidates``, None where it does not apply), ``upper_method`` naming it; ``lower``
    and ``location`` from :func:`jacobian_norm_search`, ``lower_method`` (for input dimension 1,
    :func:`exact_lipschitz_1d` or :func:`lipschitz_enclosure_1d` give the constant itself).
    Unless ``quiet``, a progress line on stderr counts the three upper bounds, the screened
    blocks and the ascent steps (minutes for Figure 7's 784-dimensional networks).
    """
    layers = layers_of(net)
    blocks = -(-_screen_size(layers, n_starts) // CHUNK)
    progress = progress_bar(3 + blocks + steps, label="Lipschitz bounds", unit="stage", quiet=quiet)
    progress.update(0)  # the line appears before the first bound, which alone can take a minute
    candidates = {}
    for name, bound in (("layer-product bound", product_upper_bound),
                        ("interval Jacobian bound", interval_jacobian_upper_bound),
                        ("split-slope chain bound", split_slope_upper_bound if _is_chain(layers) else None)):
        candidates[name] = bound(layers) if bound is not None else None
        progress.update()
    method = min((name for name, value in candidates.items() if value is not None), key=candidates.get)
    lower, where = jacobian_norm_search(layers, n_starts, steps, seed, progress)
    progress.close()
    return LipschitzResult(lower, candidates[method], where,
                           f"largest ||J(x)||_2 found by power iteration, screening"
                           f" {_screen_size(layers, n_starts)} random points and ascent from the best"
                           f" {n_starts}", method, candidates)


# --------------------------------------------------------------------------- the paper's estimate


def paper_grid_estimate(g, low=-10.0, high=10.0, n=1000):
    """The paper's estimate: max over i < j of ||g(z_i) - g(z_j)|| / |z_i - z_j|, z = linspace(low, high, n).

    ``g`` is an MLP or a list of AffineLayer (evaluated in float64), or a callable taking an
    (n, 1) float64 array. A lower estimate of Lip(g): each chord slope is an average of g'
    between its ends. By the triangle inequality the largest chord is between neighbours, so
    this equals the largest slope between consecutive grid points; all pairs are computed
    anyway, as the paper does.
    """
    z = np.linspace(low, high, n)
    if callable(g) and not isinstance(g, MLP):
        y = np.asarray(g(z[:, None]), dtype=np.float64).reshape(n, -1)
    else:
        layers = layers_of(g)
        _require_1d_input(layers, "paper_grid_estimate", "lipschitz_bounds")
        y = _evaluate(layers, z[:, None])[0]
    rows = max(1, 4_000_000 // (n * y.shape[1]))
    best = 0.0
    for start in range(0, n - 1, rows):
        stop = min(n, start + rows)
        rise = np.linalg.norm(y[start:stop, None, :] - y[None, :, :], axis=2)
        run = np.abs(z[start:stop, None] - z[None, :])
        upper_pairs = np.arange(n)[None, :] > np.arange(start, stop)[:, None]
        best = max(best, float((rise[upper_pairs] / run[upper_pairs]).max()))
    return best


# --------------------------------------------------------------------------- report


def _describe(net):
    act = net.activation + (f"({net.slope:g})" if net.activation == "leaky_relu" else "")
    return (f"MLP {'-'.join(map(str, net.sizes))}, {act}, output {net.output_activation},"
            f" skip {net.skip}, spectral norm {'on' if net.spectral_norm else 'off'}")


def lipschitz_report(path, sigmas=None, quiet=True):
    """Text report of the Lipschitz constant of the npgen network saved at ``path``.

    An MLP with input dimension 1: the exact constant (piecewise-linear activations) or an
    interval enclosure (smooth ones), beside the paper's grid estimate. Otherwise: upper bounds
    from the weights and searched lower bounds.

    A score network (the ``score.npz`` of a saved SGM): the exact constant of x -> s(x, sigma)
    at each noise level ``sigmas``, by default the levels it was trained on (stored in the
    file). Each is given on the standardized scale the network works in (the paper's number)
    and, when the file records the data's standard deviation std, on the data's own scale:
    the score of the data is s((y - mean) / std, sigma) / std, so its constant is the
    standardized one divided by std^2; that is the number to compare with a GAN's or a VAE's.

    Raises ValueError (one sentence) for a file :func:`npgen.nn.read_network` refuses, for
    ``sigmas`` given with an MLP, or for a score network without stored levels and no ``sigmas``.
    Unless ``quiet``, work that takes long (bounds in many dimensions, many noise levels)
    shows a progress line with its ETA on stderr.
    """
    net, meta = read_network(path, backend="numpy")
    if isinstance(net, ScoreNetwork):
        return _score_report(path, net, meta, sigmas, quiet)
    if isinstance(net, DenseScoreNetwork):
        return _dense_score_report(path, net, sigmas, quiet)
    if sigmas is not None:
        raise ValueError(f"--sigma applies to score networks only, and {path} holds an MLP")
    layers = layers_of(net)
    lines = [f"{path}: {_describe(net)}"]
    if net.sizes[0] == 1:
        if all(layer.activation in PIECEWISE_LINEAR for layer in layers):
            exact = exact_lipschitz_1d(layers)
            lines += [f"Lipschitz constant (exact, piecewise linear): {exact.constant:.10g}",
                      f"  {exact.note}; x* = {exact.location:.6g}; {exact.n_pieces} linear pieces"]
        else:
            enclosure = lipschitz_enclosure_1d(layers)
            lines += [f"Lipschitz constant (enclosure, interval branch and bound in float64):"
                      f" [{enclosure.lower:.8g}, {enclosure.upper:.8g}]",
                      f"  lower bound attained at x = {enclosure.location:.6g}"]
        lines.append("paper's grid estimate (largest slope between 1000 points of [-10, 10]):"
                     f" {paper_grid_estimate(layers):.10g}")
    else:
        bounds = lipschitz_bounds(layers, quiet=quiet)
        lines += [f"Lipschitz constant (l2), upper bound from the weights: {bounds.upper:.8g}"
                  f" ({bounds.upper_method})",
                  f"Lipschitz constant (l2), lower bound: {bounds.lower:.8g}"
                  f" ({bounds.lower_method})",
                  f"paper's grid estimate: not applicable (input dimension {net.sizes[0]} > 1)"]
    return "\n".join(lines)


def _score_report(path, net, meta, sigmas, quiet):
    """The per-noise-level table of :func:`lipschitz_report` for a score network."""
    source = "--sigma"
    if sigmas is None:
        sigmas, source = meta.get("noise_levels"), f"the noise_levels entry of {path}"
        if sigmas is None:
            raise ValueError(f"{path} is a score network saved without its noise levels; give"
                             " them with --sigma (e.g. --sigma 1,0.1)")
    if isinstance(sigmas, (str, bytes)) or not hasattr(sigmas, "__len__") or len(sigmas) == 0:
        raise ValueError(f"{source} must be a non-empty list of noise levels > 0, got {sigmas!r}")
    sigmas = [check_number(source, sigma, low=0, low_open=True) for sigma in sigmas]
    std = meta.get("data_std")
    if std is not None:
        std = check_number(f"the data_std entry of {path}", std, low=0, low_open=True)
    lines = [f"{path}: score network s(x, sigma), x -> 96 -> 196 -> 1 at each sigma",
             "Lipschitz constant of x -> s(x, sigma) (exact, piecewise linear):",
             "       sigma    standardized scale" + ("    data scale" if std else "")]
    constants = []
    progress = progress_bar(len(sigmas), label="noise levels", unit="level", quiet=quiet or len(sigmas) < 100)
    for sigma in sigmas:
        constant = exact_lipschitz_1d(net.layers_at(sigma)).constant
        constants.append(constant)
        progress.update()
        lines.append(f"  {sigma:10.4g}    {constant:18.8g}" + (f"    {constant / std ** 2:10.6g}" if std else ""))
    worst = int(np.argmax(constants))
    lines.append(f"largest: {constants[worst]:.8g} at sigma = {sigmas[worst]:.4g} (standardized scale)")
    if std:
        lines.append(f"the data scale divides by std^2 = {std ** 2:.6g} (the data was divided by"
                     f" std = {std:.6g}): it is in the data's own units, as a GAN's or a VAE's is")
    else:
        lines.append("the file does not record the data's scale: these are standardized-scale numbers")
    return "\n".join(lines)


def _dense_score_report(path, net, sigmas, quiet):
    """Bounds on Lip(x -> s(x, sigma)) of a d-dimensional score network at its trained levels
    (``--sigma`` names levels it was trained on; others are refused: the level embedding is
    learned per level)."""
    levels = range(net.n_levels)
    if sigmas is not None:
        trained = [float(s) for s in net.sigmas]
        missing = [s for s in sigmas if not any(abs(s - t) <= 1e-9 * t for t in trained)]
        if missing:
            raise ValueError(f"--sigma {missing[0]:g} is not a noise level {path} was trained on; its"
                             f" levels are {', '.join(f'{t:.4g}' for t in trained)}")
        levels = [min(range(len(trained)), key=lambda i: abs(trained[i] - s)) for s in sigmas]
    lines = [f"{path}: score network s(x, sigma), x -> {' -> '.join(map(str, net.hidden_sizes))}"
             f" -> {net.data_dim} ({net.activation}) at each trained sigma",
             "Lipschitz constant (l2) of x -> s(x, sigma): upper bound from the weights, searched lower bound",
             "       sigma           upper           lower"]
    progress = progress_bar(len(levels), label="noise levels", unit="level", quiet=quiet)
    for level in levels:
        bounds = lipschitz_bounds(net.layers_at(level), n_starts=4, steps=20)
        progress.update()
        lines.append(f"  {net.sigmas[level]:10.4g}  {bounds.upper:14.6g}  {bounds.lower:14.6g}")
    return "\n".join(lines)
