"""npgen.analysis.lipschitz: hand-built networks with known constants, brute force on fine grids,
the paper's grid estimate, interval enclosures, bounds in dimension > 1 and the report."""

import time

import numpy as np
import pytest

from npgen import MLP
from npgen.analysis.lipschitz import (AffineLayer, LipschitzResult, lipschitz_enclosure_1d, exact_lipschitz_1d,
                             interval_jacobian_upper_bound, layers_of, lipschitz_bounds,
                             lipschitz_report, paper_grid_estimate, product_upper_bound,
                             split_slope_upper_bound)

SKIPS = ["plain", "resnet", "densenet"]


def layer(W, b, activation="identity", slope=0.0, inputs=None, k=0):
    W = np.atleast_2d(np.asarray(W, dtype=np.float64))
    return AffineLayer(W, np.asarray(b, dtype=np.float64).reshape(-1), activation, slope,
                       inputs if inputs is not None else ((k,),))


def evaluate(layers, x):
    """Reference forward pass of an AffineLayer list, written independently of the module
    (a segment sums its nodes, each padded with zero columns on the right to the widest)."""
    nodes = [x]
    for lay in layers:
        parts = []
        for seg in lay.inputs:
            width = max(nodes[j].shape[1] for j in seg)
            parts.append(sum(np.pad(nodes[j], ((0, 0), (0, width - nodes[j].shape[1])))
                             for j in seg))
        z = np.concatenate(parts, axis=1) @ lay.weight.T + lay.bias
        if lay.activation == "relu":
            z = np.maximum(z, 0)
        elif lay.activation == "leaky_relu":
            z = np.where(z > 0, z, lay.slope * z)
        elif lay.activation == "tanh":
            z = np.tanh(z)
        nodes.append(z)
    return nodes[-1]


def on_grid(f, x, chunk=200_000):
    """f applied to x (n,) in chunks; returns (n, d)."""
    return np.concatenate([f(x[i:i + chunk, None]) for i in range(0, x.size, chunk)])


def count_pieces(slopes, rtol=1e-7):
    """Linear pieces seen on a grid: runs of >= 2 consecutive cells with one slope.

    A cell holding a kink has a slope between its neighbours' and forms a run of one.
    """
    scale = np.abs(slopes).max()
    agree = np.abs(np.diff(slopes)) <= rtol * scale + 1e-12
    return int(np.sum(agree & np.concatenate([[True], ~agree[:-1]])))


def tent(center, half_width, height_slope=7.0, base_slope=0.0):
    """base_slope x plus a tent rising with slope height_slope on [c - w, c], falling on [c, c + w]."""
    s = height_slope
    return [layer([[1.0], [1.0], [1.0]], [half_width - center, -center, -half_width - center], "relu"),
            layer([[base_slope, s, -2 * s, s]], [0.0], inputs=((0,), (1,)))]


# --------------------------------------------------------------------------- exact, hand-built


def test_absolute_value_is_two_pieces_of_slope_one():
    net = [layer([[1.0], [-1.0]], [0.0, 0.0], "relu"), layer([[1.0, 1.0]], [0.0], k=1)]
    r = exact_lipschitz_1d(net)
    assert r.constant == 1.0 and r.n_pieces == 2
    np.testing.assert_array_equal(r.breakpoints, [0.0])
    np.testing.assert_array_equal(r.slopes, [-1.0, 1.0])


def test_steepest_piece_can_be_an_unbounded_end_piece():
    right = exact_lipschitz_1d([layer([[1.0], [1.0]], [0.0, -1.0], "relu"),
                                layer([[1.0, 2.0]], [0.0], k=1)])      # relu(x) + 2 relu(x - 1)
    assert right.constant == pytest.approx(3.0, rel=1e-15)
    assert right.location == np.inf and right.piece == (1.0, np.inf)
    left = exact_lipschitz_1d([layer([[1.0]], [0.0]), layer([[-1.0]], [-1.0], "relu", k=0),
                               layer([[1.0, 3.0]], [0.0], inputs=((0,), (2,)))])  # x + 3 relu(-x - 1)
    assert left.constant == pytest.approx(2.0, rel=1e-15)
    assert left.location == -np.inf and left.piece == (-np.inf, -1.0)
    assert left.n_pieces == 2


def test_tent_with_slope_seven_on_a_short_interval():
    r = exact_lipschitz_1d(tent(3.01, 0.01))
    assert r.constant == pytest.approx(7.0, rel=1e-12)
    assert r.n_pieces == 4
    np.testing.assert_allclose(r.breakpoints, [3.0, 3.01, 3.02], rtol=1e-14)
    np.testing.assert_allclose(r.slopes, [0.0, 7.0, -7.0, 0.0], atol=1e-12)
    assert 3.0 < r.location < 3.01
    check_pieces(lambda x: evaluate(tent(3.01, 0.01), x), r)


def test_leaky_slopes_and_a_kink_found_in_the_end_piece():
    # leaky_0.5(2 leaky_0.2(-x) + 1): slope -2 for x < 0, -0.4 up to x = 2.5, then -0.2
    net = [layer([[-1.0]], [0.0], "leaky_relu", 0.2), layer([[2.0]], [1.0], "leaky_relu", 0.5, k=1)]
    r = exact_lipschitz_1d(net)
    check_pieces(lambda x: evaluate(net, x), r)
    np.testing.assert_allclose(r.breakpoints, [0.0, 2.5], rtol=1e-14)
    np.testing.assert_allclose(r.slopes, [-2.0, -0.4, -0.2], rtol=1e-14)
    assert r.constant == pytest.approx(2.0) and r.location == -np.inf
    # a negative leaky slope steeper than 1
    steep = exact_lipschitz_1d([layer([[1.0]], [0.0], "leaky_relu", -3.0)])
    assert steep.constant == pytest.approx(3.0) and steep.location == -np.inf


def _set(net, weights, biases):
    for k, (W, b) in enumerate(zip(weights, biases)):
        net.weights[k][...] = W
        net.biases[k][...] = b
    return net


def test_resnet_and_densenet_skips_by_hand():
    # resnet: node1 = relu(x), node2 = relu(2 node1), output = -1.5 (node2 + node1) = -4.5 relu(x)
    res = _set(MLP([1, 1, 1, 1], activation="relu", skip="resnet", dtype="float64", backend="numpy"),
               [[[1.0]], [[2.0]], [[-1.5]]], [[0.0], [0.0], [0.0]])
    r = exact_lipschitz_1d(res)
    assert r.constant == pytest.approx(4.5) and r.n_pieces == 2
    np.testing.assert_allclose(r.slopes, [0.0, -4.5])
    # densenet: output = -x + node1 + node2 = -x + 3 relu(x)
    dense = _set(MLP([1, 1, 1, 1], activation="relu", skip="densenet", dtype="float64",
                     backend="numpy"),
                 [[[1.0]], [[0.0, 2.0]], [[-1.0, 1.0, 1.0]]], [[0.0], [0.0], [0.0]])
    r = exact_lipschitz_1d(dense)
    np.testing.assert_allclose(r.slopes, [-1.0, 2.0])
    assert r.constant == pytest.approx(2.0) and r.location == np.inf


def widening_by_hand():
    """MLP 1-1-2-1, resnet, relu; layer 2 reads a_2 + pad(a_1), a_1 in the first column:
    a_1 = relu(x), a_2 = (2 relu(x), relu(1 - relu(x))), h_2 = (3 relu(x), relu(1 - relu(x))),
    g = 3 relu(x) + 5 relu(1 - relu(x)): slopes 0, -2, 3 on x < 0, 0 < x < 1, x > 1."""
    net = MLP([1, 1, 2, 1], activation="relu", skip="resnet", dtype="float64", backend="numpy")
    assert net.segments[2] == [(2, 1)]
    return _set(net, [[[1.0]], [[2.0], [-1.0]], [[1.0, 5.0]]], [[0.0], [0.0, 1.0], [0.0]])


def test_widening_resnet_skip_by_hand():
    net = widening_by_hand()
    r = exact_lipschitz_1d(net)
    assert r.constant == pytest.approx(3.0, rel=1e-15) and r.location == np.inf
    np.testing.assert_allclose(r.breakpoints, [0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(r.slopes, [0.0, -2.0, 3.0], atol=1e-15)
    check_pieces(net.forward, r)
    enclosure = lipschitz_enclosure_1d(net, tol=1e-6)
    lower, upper, _ = enclosure.lower, enclosure.upper, enclosure.location
    assert lower <= 3.0 * (1 + 1e-12) and 3.0 <= upper * (1 + 1e-12)
    b = lipschitz_bounds(net, n_starts=4, steps=10)
    assert b.lower == pytest.approx(3.0, rel=1e-12) and b.upper >= 3.0 * (1 - 1e-12)
    # the same network as a hand-built list: the widening segment is accepted, the layer reads
    # 2 columns; a weight laid out as if the segment were 3 columns wide is refused
    layers = layers_of(net)
    assert layers[2].inputs == ((2, 1),)
    again = [layer(L.weight, L.bias, L.activation, 0.0, inputs=L.inputs) for L in layers]
    assert exact_lipschitz_1d(again).constant == pytest.approx(3.0, rel=1e-15)
    np.testing.assert_allclose(evaluate(again, np.array([[-2.0], [0.5], [4.0]])), [[5.0], [4.0], [12.0]])
    with pytest.raises(ValueError, match="columns"):
        layers_of(again[:2] + [layer([[1.0, 5.0, 0.0]], [0.0], inputs=((2, 1),))])


def widens(net):
    """True when some segment of the network sums nodes of different widths."""
    return any(len({net.sizes[j] for j in seg}) > 1 for segs in net.segments for seg in segs)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
@pytest.mark.parametrize("spectral_norm", [False, True])
def test_exact_on_a_widening_resnet_matches_a_fine_grid(activation, spectral_norm):
    net = MLP([1, 4, 8, 16, 1], activation=activation, slope=0.1, skip="resnet",
              spectral_norm=spectral_norm, dtype="float64", seed=12, backend="numpy").eval()
    assert net.segments[3] == [(3, 2, 1)] and widens(net)
    r = exact_lipschitz_1d(net)
    assert r.n_pieces >= 3
    check_pieces(net.forward, r)
    check_grid(net.forward, r)
    assert paper_grid_estimate(net) == pytest.approx(paper_grid_estimate(net.forward), rel=1e-12)


def test_exact_on_the_widening_paper_generator():
    net = MLP([1, 128, 256, 1], skip="resnet", dtype="float64", seed=3, backend="numpy")
    assert net.segments[2] == [(2, 1)]
    r = exact_lipschitz_1d(net)
    assert r.n_pieces > 100
    check_pieces(net.forward, r)
    check_grid(net.forward, r, n=50_001, count=False)
    x = np.linspace(-30, 30, 1001)[:, None]
    np.testing.assert_allclose(evaluate(layers_of(net), x), net.forward(x), rtol=1e-12, atol=1e-12)


def test_spectral_norm_networks_use_the_effective_weight():
    net = MLP([1, 8, 8, 1], spectral_norm=True, dtype="float64", seed=4, backend="numpy")
    net.forward(np.zeros((1, 1)))  # a training forward moves u, v away from their initial draw
    by_hand = []
    for k in range(net.n_layers):
        W, u, v = net.weights[k], net.sn_u[k], net.sn_v[k]
        by_hand.append(layer(W / (u @ W @ v), net.biases[k],
                             "leaky_relu" if k < 2 else "identity", 0.2, k=k))
    raw = [layer(net.weights[k], net.biases[k], by_hand[k].activation, 0.2, k=k) for k in range(3)]
    expected = exact_lipschitz_1d(by_hand).constant
    assert exact_lipschitz_1d(net).constant == pytest.approx(expected, rel=1e-12)
    assert abs(exact_lipschitz_1d(raw).constant - expected) > 1e-3 * expected


# --------------------------------------------------------------------------- exact, brute force


def check_pieces(f, r, seed=0):
    """f is affine on every reported piece with the reported slope, end pieces included, and
    the slope changes at every reported breakpoint.

    On an inner piece [a, b], f is sampled at a, b and two random points in between; on an end
    piece at its breakpoint and 1, 10 and 1000 times max(1, |t|) beyond it.
    """
    rng = np.random.default_rng(seed)
    t, slopes = r.breakpoints, np.atleast_1d(r.slopes)
    scale = np.abs(slopes).max()
    assert np.all(np.abs(np.diff(slopes)) > 1e-9 * scale)
    assert len(slopes) == r.n_pieces == t.size + 1
    if t.size:
        inner = np.sort(rng.uniform(0.02, 0.98, (t.size - 1, 2)), axis=1)
        points = [np.column_stack([t[:-1], t[:-1] + inner[:, 0] * np.diff(t),
                                   t[:-1] + inner[:, 1] * np.diff(t), t[1:]])]
        reach = np.array([1.0, 10.0, 1000.0])
        left = t[0] - reach[::-1] * max(1.0, abs(t[0]))
        right = t[-1] + reach * max(1.0, abs(t[-1]))
        samples = [np.append(left, t[0])] + list(points[0]) + [np.insert(right, 0, t[-1])]
    else:
        samples = [np.array([-1000.0, -1.0, 1.0, 1000.0])]
    x = np.stack(samples)
    y = f(x.reshape(-1, 1))[:, 0].reshape(x.shape)
    chords = np.diff(y, axis=1) / np.diff(x, axis=1)
    np.testing.assert_allclose(chords, np.repeat(slopes[:, None], 3, axis=1), rtol=1e-6,
                               atol=1e-9 * scale)


def check_grid(f, r, n=500_001, count=True):
    """Slopes between neighbours of a grid: n points on [-20, 20], plus n / 5 points spread
    over [-S, S] outside it, S = 1.5 max |breakpoint|, when that reaches farther. None is above the constant;
    if the grid meets the steepest piece, one is within 1e-6 of it. With ``count``: when every
    piece holds at least two whole cells, the grid sees exactly n_pieces pieces."""
    reach = 1.5 * np.abs(r.breakpoints).max(initial=0.0)
    x = np.linspace(-20.0, 20.0, n)
    if reach > 20.0:
        coarse = np.linspace(-reach, reach, n // 5)
        x = np.concatenate([coarse[coarse < -20.0], x, coarse[coarse > 20.0]])
    slopes = np.diff(on_grid(f, x)[:, 0]) / np.diff(x)
    assert np.abs(slopes).max() <= r.constant * (1 + 1e-9)
    inside = np.searchsorted(x, r.piece[1]) - np.searchsorted(x, r.piece[0], side="right")
    if inside >= 2:
        assert np.abs(slopes).max() >= r.constant * (1 - 1e-6)
    if count:
        per_piece = np.diff(np.searchsorted(x, r.breakpoints))
        assert per_piece.min(initial=3) >= 3
        assert count_pieces(slopes) == r.n_pieces


@pytest.mark.parametrize("skip", SKIPS)
@pytest.mark.parametrize("spectral_norm", [False, True])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_exact_matches_a_fine_grid(skip, spectral_norm, activation):
    net = MLP([1, 6, 6, 6, 1], activation=activation, slope=0.1, skip=skip,
              spectral_norm=spectral_norm, dtype="float64", seed=11, backend="numpy").eval()
    r = exact_lipschitz_1d(net)
    assert r.n_pieces >= 3
    check_pieces(net.forward, r)
    check_grid(net.forward, r)


def score_like(seed=0):
    """A score network s(x, sigma) at one fixed sigma, and its AffineLayer chain.

    x -> Linear 1->96 -> leaky(0.01) -> concat e -> Linear 160->196 -> concat e -> leaky(0.2)
    -> Linear 260->1; as a function of x the embedding e folds into the biases.
    """
    rng = np.random.default_rng(seed)
    draw = lambda shape, fan: rng.uniform(-1, 1, shape) / np.sqrt(fan)  # noqa: E731
    W1, b1 = draw((96, 1), 1), draw(96, 1)
    W2, b2 = draw((196, 160), 160), draw(196, 160)
    W3, b3 = draw((1, 260), 260), draw(1, 260)
    e = rng.uniform(-1, 1, 64)
    leaky = lambda z, s: np.where(z > 0, z, s * z)  # noqa: E731

    def full(x):
        h1 = leaky(x @ W1.T + b1, 0.01)
        z2 = np.concatenate([h1, np.broadcast_to(e, (x.shape[0], 64))], axis=1) @ W2.T + b2
        h2 = leaky(np.concatenate([z2, np.broadcast_to(e, (x.shape[0], 64))], axis=1), 0.2)
        return h2 @ W3.T + b3

    chain = [layer(W1, b1, "leaky_relu", 0.01),
             layer(W2[:, :96], b2 + W2[:, 96:] @ e, "leaky_relu", 0.2, k=1),
             layer(W3[:, :196], b3 + W3[:, 196:] @ leaky(e, 0.2), k=2)]
    return full, chain


def test_score_network_at_a_fixed_noise_level():
    full, chain = score_like()
    start = time.perf_counter()
    r = exact_lipschitz_1d(chain)
    assert time.perf_counter() - start < 1.0
    assert r.n_pieces > 100
    check_pieces(full, r)
    check_grid(full, r, n=50_001, count=False)


def test_float32_network_has_the_constant_of_its_float64_copy():
    net32 = MLP([1, 32, 32, 1], dtype="float32", seed=5, backend="numpy")
    net64 = MLP([1, 32, 32, 1], dtype="float64", seed=99, backend="numpy")
    net64.load_state_dict({k: v.astype(np.float64) for k, v in net32.state_dict().items()})
    a, b = exact_lipschitz_1d(net32), exact_lipschitz_1d(net64)
    assert a.constant == pytest.approx(b.constant, rel=1e-13) and a.n_pieces == b.n_pieces


def test_paper_generator_is_fast_and_the_grid_estimate_is_below_it():
    net = MLP([1, 128, 256, 1], backend="numpy")
    start = time.perf_counter()
    r = exact_lipschitz_1d(net)
    assert time.perf_counter() - start < 1.0
    assert r.n_pieces > 100
    assert paper_grid_estimate(net) <= r.constant * (1 + 1e-9)


def test_grid_estimate_misses_a_steep_piece_outside_the_window():
    net = tent(15.0, 0.01, height_slope=7.0, base_slope=0.5)
    assert exact_lipschitz_1d(net).constant == pytest.approx(7.5)
    assert paper_grid_estimate(net) == pytest.approx(0.5)
    assert paper_grid_estimate(lambda x: evaluate(net, x)) == pytest.approx(0.5)


def test_grid_estimate_is_the_largest_neighbour_slope():
    net = MLP([1, 16, 16, 2], activation="tanh", dtype="float64", seed=2, backend="numpy")
    z = np.linspace(-10, 10, 1000)[:, None]
    y = net.forward(z)
    neighbours = (np.linalg.norm(np.diff(y, axis=0), axis=1) / np.diff(z[:, 0])).max()
    assert paper_grid_estimate(net) == pytest.approx(neighbours, rel=1e-9)
    assert paper_grid_estimate(lambda x: net.forward(x)) == pytest.approx(neighbours, rel=1e-9)
    assert paper_grid_estimate(lambda x: 3 * x, -1, 1, 7) == pytest.approx(3.0)


def test_exact_refuses_smooth_activations_and_wide_inputs():
    with pytest.raises(ValueError, match="tanh.*lipschitz_enclosure_1d"):
        exact_lipschitz_1d(MLP([1, 4, 1], activation="tanh", backend="numpy"))
    with pytest.raises(ValueError, match="lipschitz_bounds"):
        exact_lipschitz_1d(MLP([3, 4, 1], backend="numpy"))
    with pytest.raises(ValueError, match="columns"):
        layers_of([layer([[1.0]], [0.0], "relu"), layer([[1.0, 1.0]], [0.0], k=1)])


# --------------------------------------------------------------------------- enclosure, 1-D


def check_enclosure(f, lower, upper, location, tol):
    """lower <= max chord slope on a fine grid <= upper, lower = |g'(location)|, gap <= tol."""
    assert upper - lower <= tol * upper
    span = max(60.0, 2 * abs(location))
    x = np.linspace(-span, span, 400_001)
    y = on_grid(f, x)
    chords = np.linalg.norm(np.diff(y, axis=0), axis=1) / (x[1] - x[0])
    assert chords.max() <= upper * (1 + 1e-12)
    assert lower <= chords.max() * (1 + 1e-6)
    h = 1e-5
    ends = f(np.array([[location - h], [location + h]]))
    assert np.linalg.norm(ends[1] - ends[0]) / (2 * h) == pytest.approx(lower, rel=1e-6)


@pytest.mark.parametrize("activation", ["tanh", "silu", "sigmoid"])
@pytest.mark.parametrize("skip", ["plain", "densenet"])
def test_enclosure_enclosure_of_smooth_networks(activation, skip):
    net = MLP([1, 12, 12, 1], activation=activation, skip=skip, dtype="float64", seed=6,
              backend="numpy")
    enclosure = lipschitz_enclosure_1d(net, tol=1e-3)
    lower, upper, location = enclosure.lower, enclosure.upper, enclosure.location
    check_enclosure(net.forward, lower, upper, location, 1e-3)


def test_enclosure_enclosure_of_a_widening_tanh_resnet():
    net = MLP([1, 4, 8, 16, 1], activation="tanh", skip="resnet", dtype="float64", seed=6,
              backend="numpy")
    assert widens(net)
    enclosure = lipschitz_enclosure_1d(net, tol=1e-3)
    lower, upper, location = enclosure.lower, enclosure.upper, enclosure.location
    check_enclosure(net.forward, lower, upper, location, 1e-3)


def test_enclosure_with_a_supremum_only_reached_at_infinity():
    # g(x) = 2x - tanh(x): g' = 1 + tanh(x)^2 < 2 = Lip(g)
    net = [layer([[1.0]], [0.0], "tanh"), layer([[2.0, -1.0]], [0.0], inputs=((0,), (1,)))]
    enclosure = lipschitz_enclosure_1d(net, tol=1e-4)
    lower, upper, location = enclosure.lower, enclosure.upper, enclosure.location
    assert lower <= 2.0 <= upper and upper - lower <= 1e-4 * upper
    assert abs(location) > 3


def test_enclosure_finds_the_maximum_slope_of_silu():
    silu_prime = lambda z: (lambda s: s * (1 + z * (1 - s)))(1 / (1 + np.exp(-z)))  # noqa: E731
    z = np.linspace(2.0, 3.0, 1_000_001)
    true = silu_prime(z).max()
    enclosure = lipschitz_enclosure_1d([layer([[1.0]], [0.0], "silu")], tol=1e-6)
    lower, upper, location = enclosure.lower, enclosure.upper, enclosure.location
    assert lower <= true * (1 + 1e-12) and true <= upper * (1 + 1e-12)
    assert location == pytest.approx(z[np.argmax(silu_prime(z))], abs=1e-2)


def test_enclosure_agrees_with_exact_on_piecewise_linear_and_mixed_networks():
    pl = MLP([1, 16, 16, 1], dtype="float64", seed=7, backend="numpy")
    exact = exact_lipschitz_1d(pl).constant
    enclosure = lipschitz_enclosure_1d(pl, tol=1e-6)
    lower, upper, _ = enclosure.lower, enclosure.upper, enclosure.location
    assert lower <= exact * (1 + 1e-12) and exact <= upper * (1 + 1e-12)
    mixed = MLP([1, 16, 16, 1], output_activation="sigmoid", dtype="float64", seed=8,
                backend="numpy")
    enclosure = lipschitz_enclosure_1d(mixed, tol=1e-3)
    lower, upper, location = enclosure.lower, enclosure.upper, enclosure.location
    check_enclosure(mixed.forward, lower, upper, location, 1e-3)


# --------------------------------------------------------------------------- bounds, d > 1


def random_pair_slopes(f, d, n=1000, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * rng.uniform(0.25, 4.0, (n, 1))
    step = rng.standard_normal((n, d))
    near = 1e-3 * step / np.linalg.norm(step, axis=1, keepdims=True)
    far = rng.standard_normal((n, d))
    slope = lambda a, b: np.linalg.norm(f(a) - f(b), axis=1) / np.linalg.norm(a - b, axis=1)  # noqa: E731
    return slope(x + near, x).max(), slope(x + far, x).max()


@pytest.mark.parametrize("skip", SKIPS)
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
def test_bounds_bracket_random_finite_differences(skip, activation):
    net = MLP([4, 12, 12, 12, 3], activation=activation, skip=skip, dtype="float64", seed=3,
              backend="numpy")
    b = lipschitz_bounds(net)
    near, far = random_pair_slopes(net.forward, 4)
    assert b.lower >= near * (1 - 1e-6)
    assert b.upper >= b.lower and b.upper >= far
    assert b.upper <= b.candidates["layer-product bound"] and b.exact is None
    assert b.location.shape == (4,)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "silu"])
def test_bounds_bracket_random_finite_differences_on_a_widening_resnet(activation):
    net = MLP([3, 4, 8, 8, 2], activation=activation, skip="resnet", dtype="float64", seed=5,
              backend="numpy")
    assert net.segments[2] == [(2, 1)] and net.segments[3] == [(3, 2, 1)]
    b = lipschitz_bounds(net)
    near, far = random_pair_slopes(net.forward, 3)
    assert b.lower >= near * (1 - 1e-6)
    assert b.upper >= b.lower and b.upper >= far
    assert b.candidates["split-slope chain bound"] is None


@pytest.mark.parametrize("sizes, skip", [([5, 7, 7, 7, 3], s) for s in SKIPS]
                         + [([3, 4, 8, 8, 2], "resnet")])
def test_bounds_of_a_linear_network_are_its_spectral_norm(sizes, skip):
    net = MLP(sizes, activation="identity", skip=skip, dtype="float64", seed=2,
              backend="numpy")
    d = sizes[0]
    J = (net.forward(np.eye(d)) - net.forward(np.zeros((1, d)))).T
    norm = np.linalg.norm(J, 2)
    b = lipschitz_bounds(net, n_starts=4, steps=10)
    assert interval_jacobian_upper_bound(net) == pytest.approx(norm, rel=1e-10)
    assert b.upper == pytest.approx(norm, rel=1e-10)
    assert b.lower == pytest.approx(norm, rel=1e-10)


def test_bounds_bracket_the_exact_constant_in_one_dimension():
    net = MLP([1, 24, 24, 1], activation="leaky_relu", dtype="float64", seed=9, backend="numpy")
    exact = exact_lipschitz_1d(net).constant
    b = lipschitz_bounds(net)
    assert b.lower <= exact * (1 + 1e-12) <= b.upper * (1 + 1e-12)
    assert b.lower >= 0.99 * exact


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "silu", "sigmoid"])
def test_split_slope_bound_is_never_above_the_layer_product(activation):
    layers = layers_of(MLP([6, 20, 20, 20, 4], activation=activation, dtype="float64", seed=1,
                           backend="numpy"))
    assert split_slope_upper_bound(layers) <= product_upper_bound(layers) * (1 + 1e-12)


# --------------------------------------------------------------------------- report


def test_report_on_saved_networks(tmp_path):
    pl = MLP([1, 16, 16, 1], seed=1, backend="numpy")
    pl.save(tmp_path / "pl.npz")
    text = lipschitz_report(tmp_path / "pl.npz")
    assert "exact" in text and f"{exact_lipschitz_1d(pl).constant:.10g}" in text
    assert "grid estimate" in text and "pieces" in text
    MLP([1, 8, 1], activation="tanh", seed=1, backend="numpy").save(tmp_path / "smooth.npz")
    assert "enclosure, interval branch and bound" in lipschitz_report(tmp_path / "smooth.npz")
    MLP([3, 8, 2], seed=1, backend="numpy").save(tmp_path / "wide.npz")
    text = lipschitz_report(tmp_path / "wide.npz")
    assert "upper bound" in text and "lower bound" in text and "not applicable" in text


def test_report_rejects_files_that_are_not_networks(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not an npgen network"):
        lipschitz_report(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError):
        lipschitz_report(tmp_path / "text.npz")


def test_the_three_entry_points_return_one_result_type():
    net = MLP([1, 24, 24, 1], activation="leaky_relu", dtype="float64", seed=9, backend="numpy")
    exact = exact_lipschitz_1d(net)
    results = (exact, lipschitz_enclosure_1d(net, tol=1e-6), lipschitz_bounds(net, n_starts=4, steps=10))
    for result in results:
        assert isinstance(result, LipschitzResult) and result.lower_method and result.upper_method
        assert result.lower <= exact.constant * (1 + 1e-12) and exact.constant <= result.upper * (1 + 1e-12)
    assert exact.exact == exact.constant == exact.lower == exact.upper
    assert results[2].upper == min(v for v in results[2].candidates.values() if v is not None)


def test_the_enclosure_holds_the_slope_of_an_unbounded_end_piece():
    """On this network |g'| = 0.2106 for every x >= 8.94, beyond the first layer's kinks, where
    a unit of the second layer turns on: a box forced to that side has its anchor across the
    kink, and the enclosure once ended at 0.2078."""
    net = MLP([1, 8, 8, 1], activation="relu", dtype="float64", seed=4, backend="numpy")
    far = float(np.abs(np.diff(net.forward(np.array([[1e3], [1e3 + 1.0]])), axis=0)[0, 0]))
    assert exact_lipschitz_1d(net).constant == pytest.approx(far, rel=1e-9)
    assert lipschitz_enclosure_1d(net, tol=1e-6).upper >= far * (1 - 1e-9)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_the_enclosure_contains_the_exact_constant_of_many_networks(activation):
    """The exact piecewise-linear constant lies inside the enclosure for 24 random networks of
    two and three hidden layers, plain and with skips."""
    for seed in range(24):
        sizes = [1, 8, 8, 1] if seed % 2 else [1, 6, 6, 6, 1]
        net = MLP(sizes, activation=activation, skip=("plain", "resnet", "densenet")[seed % 3],
                  dtype="float64", seed=seed, backend="numpy")
        exact = exact_lipschitz_1d(net).constant
        enclosure = lipschitz_enclosure_1d(net, tol=1e-6)
        assert enclosure.lower <= exact * (1 + 1e-9) and exact <= enclosure.upper * (1 + 1e-9), (seed, exact,
                                                                                                  enclosure)
