"""A digit classifier for 28 x 28 images: the judge that colours Figure 7's histograms.

The published setting (REFERENCE.md, "MNIST setting"): an MLP 784 -> 1024 -> 50 -> 10 with
ReLU, trained with the softmax cross-entropy

    L = mean_i -log softmax(f(x_i))_{y_i}          (kernel ``softmax_cross_entropy``)

by Adam for 10 epochs in batches of 128. The learning rate is not given there; torch's
default 1e-3 (betas 0.9, 0.999) is used. The prediction is the argmax of the logits f(x).
"""

import numpy as np

from ..nn.adam import Adam
from ..nn.mlp import MLP
from ..util.checks import as_real_array, check_betas, check_matrix, check_number, check_seed, dtype_of
from ..util.threads import one_blas_thread
from .saved import load_model, save_model
from .training import fit_loop

PIXELS = 784
N_CLASSES = 10
#: Rows pushed through the network at once by :meth:`DigitClassifier.logits`.
PREDICT_CHUNK = 1024


class _Buffers:
    """One batch's images and one-hot targets, allocated once per batch size."""

    def __init__(self, model, n):
        self.x = np.empty((n, PIXELS), model.dtype)
        self.target = np.empty((n, N_CLASSES), model.dtype)
        self.grad = np.empty((n, N_CLASSES), model.dtype)


class DigitClassifier:
    """MLP 784 -> hidden... -> 10, ReLU, softmax cross-entropy, Adam (see the module doc).

    Parameters
    ----------
    hidden : tuple of int
        Hidden widths, (1024, 50) as published.
    lr, betas : Adam's settings (1e-3, (0.9, 0.999)).
    dtype : 'float32' (default) or 'float64'.
    seed : int
        Seeds the initialization and the shuffling of :meth:`fit`.
    backend : kernel backend name, or None for $NPGEN_BACKEND / 'cpu'.
    """

    def __init__(self, hidden=(1024, 50), lr=1e-3, betas=(0.9, 0.999), dtype="float32", seed=0,
                 backend=None):
        if not isinstance(hidden, (tuple, list)) or not hidden:
            raise ValueError(f"hidden must be a non-empty tuple of widths, got {hidden!r}")
        self.hidden = tuple(check_number(f"hidden[{i}]", w, low=1, integer=True)
                            for i, w in enumerate(hidden))
        self.lr = check_number("lr", lr, low=0, low_open=True)
        self.betas = check_betas(betas)
        self.dtype = dtype_of(dtype)
        self.seed = check_seed(seed)
        self.rng = np.random.default_rng(self.seed)
        self.network = MLP([PIXELS, *self.hidden, N_CLASSES], activation="relu",
                           dtype=self.dtype, seed=int(self.rng.integers(2 ** 32)),
                           backend=backend)
        self.optimizer = Adam(self.network, lr=self.lr, betas=self.betas)
        self.trained = False
        self._buffers = {}
        self._images = self._onehot = None

    def config(self):
        """The constructor arguments (without the backend), as a JSON-able dict."""
        return {"hidden": list(self.hidden), "lr": self.lr, "betas": list(self.betas),
                "dtype": self.dtype.name, "seed": self.seed}

    def networks(self):
        return {"classifier": self.network}

    # ----------------------------------------------------------------- inputs

    def _as_images(self, name, images):
        """``images`` as a finite (n, 784) C-contiguous array of the model's dtype."""
        images = as_real_array(name, images, self.dtype, f"(n, {PIXELS})")
        return check_matrix(name, images, PIXELS, self.dtype)

    @staticmethod
    def _as_labels(labels, n):
        labels = np.asarray(labels)
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be an integer array of shape ({n},), one per image,"
                             f" got {labels.dtype.name} {labels.shape}")
        if n and (labels.min() < 0 or labels.max() >= N_CLASSES):
            raise ValueError(f"labels must be digits 0 to {N_CLASSES - 1}")
        return labels.astype(np.int64)

    def one_hot(self, labels):
        """(n, 10) rows e_{y_i} in the model's dtype."""
        target = np.zeros((len(labels), N_CLASSES), self.dtype)
        target[np.arange(len(labels)), labels] = 1
        return target

    # ----------------------------------------------------------------- training

    def loss_gradient(self, x, target):
        """L = mean_i -sum_j t_ij log softmax(f(x_i))_j for images x (n, 784) and target rows
        (n, 10); writes dL/dtheta into ``network.grads`` and returns L."""
        grad = self._buffer(len(x)).grad
        logits = self.network._forward(x)
        loss = self.network.backend.softmax_cross_entropy(logits, target, grad)
        self.network.zero_grad()
        self.network._backward(grad, need_grad_in=False)
        return loss

    def _buffer(self, n):
        if n not in self._buffers:
            self._buffers[n] = _Buffers(self, n)
        return self._buffers[n]

    def step(self, rows):
        """One Adam step on the training images of ``rows`` (an (n, 1) array of row numbers
        into the set that :meth:`fit` holds). Returns {'loss': L}."""
        rows = rows[:, 0]
        buf = self._buffer(len(rows))
        np.take(self._images, rows, axis=0, out=buf.x)
        np.take(self._onehot, rows, axis=0, out=buf.target)
        loss = self.loss_gradient(buf.x, buf.target)
        self.optimizer.step()
        return {"loss": loss}

    def fit(self, images, labels, epochs=10, batch_size=128, quiet=False):
        """Train on images (n, 784) in [0, 1] with labels (n,) in 0..9 for ``epochs`` shuffled
        passes in batches of ``batch_size`` (the last partial batch of each epoch is dropped).

        Returns the per-epoch mean losses and the wall time (see
        :func:`npgen.models.training.fit_loop`)."""
        images = self._as_images("images", images)
        labels = self._as_labels(labels, len(images))
        self._images, self._onehot = images, self.one_hot(labels)
        rows = np.arange(len(images)).reshape(-1, 1)
        try:
            history = fit_loop(self, rows, epochs, batch_size, self.rng, "DigitClassifier",
                               quiet=quiet)
        finally:
            self._images = self._onehot = None
        self.trained = True
        return history

    # ----------------------------------------------------------------- prediction

    @one_blas_thread
    def logits(self, images):
        """f(x) for images (n, 784): the (n, 10) logits, in chunks of :data:`PREDICT_CHUNK`.
        Raises RuntimeError if the classifier is untrained."""
        if not self.trained:
            raise RuntimeError("a DigitClassifier predicts once trained: call fit first (or load"
                               " a saved one)")
        images = self._as_images("images", images)
        out = np.empty((len(images), N_CLASSES), self.dtype)
        for start in range(0, len(images), PREDICT_CHUNK):
            chunk = np.ascontiguousarray(images[start:start + PREDICT_CHUNK])
            out[start:start + len(chunk)] = self.network._forward(chunk)
        return out

    def predict(self, images):
        """The predicted digit of each image, int64 (n,)."""
        return self.logits(images).argmax(axis=1).astype(np.int64)

    def accuracy(self, images, labels):
        """The fraction of ``images`` whose predicted digit is their label, in [0, 1]."""
        predicted = self.predict(images)
        return float(np.mean(predicted == self._as_labels(labels, len(predicted))))

    # ----------------------------------------------------------------- persistence

    def save(self, path_dir):
        """Write the classifier to the folder ``path_dir``, whole or not at all:
        ``classifier.npz`` and ``config.json`` (:func:`npgen.models.saved.save_model`)."""
        save_model(self, path_dir)

    @classmethod
    def load(cls, path_dir, backend=None):
        """Read a classifier written by :meth:`save`."""
        return load_model(cls, path_dir, backend)
