"""What the GAN and the VAE share: a push-forward model x = g(z), z ~ N(0, I_p) (or another
latent law of :mod:`npgen.models.latents`).

A push-forward model generates x = g(z) with a network g (the GAN's generator, the VAE's
decoder). :class:`PushForwardModel` holds what every such model needs: a seeded random stream,
training by minibatches, sampling, saving and loading. :func:`generator_sizes` is the one
architecture of g that both models use, so that the paper's comparison of GAN and VAE is a
comparison of training methods and not of networks.
"""

import numpy as np

from ..nn.layers import SKIP_STYLES
from ..nn.mlp import MLP
from ..util.checks import (as_real_array, check_betas, check_bool, check_choice, check_matrix,
                           check_number, check_seed, dtype_of)
from ..util.progress import progress_bar
from ..util.threads import one_blas_thread
from .latents import check_latent, draw_latents
from .noise import HostNoise
from .replicated import ReplicatedModel
from .saved import load_model, save_model
from .training import MAX_SAMPLES, fit_loop

#: Allowed numbers of linear layers of the generator (the paper's Figure 5 uses 2 to 6).
MIN_LAYERS, MAX_LAYERS = 2, 7
#: Rows pushed through the network at once when sampling (one reusable workspace).
SAMPLE_CHUNK = 1024
#: Hidden widths of the MNIST generator / VAE decoder (Section 4.2): p -> 256 -> 512 -> 1024 ->
#: 784, leaky ReLU 0.2, linear output (the mixture's noisy images leave [0, 1], so no sigmoid).
#: The published generator is convolutional; these are the widths of the classic MLP generator
#: for MNIST (Goodfellow et al. 2014's successors, the PyTorch GAN examples), with 1.66 million
#: parameters at latent dimension 784 and 1.46 million at 20: the size of a small DCGAN-style
#: generator for 28 x 28 images (about 1 to 4 million), and three hidden layers widening
#: towards the output like the univariate generator's 128 -> 256. The discriminator
#: (784 -> 512 -> 256 -> 128 -> 1) is the published one.
MNIST_GENERATOR_HIDDEN = (256, 512, 1024)


def check_layers(n_layers, name="n_layers"):
    """Return ``n_layers`` if it is an integer in [MIN_LAYERS, MAX_LAYERS], else raise,
    naming the argument ``name``."""
    return check_number(name, n_layers, low=MIN_LAYERS, high=MAX_LAYERS, integer=True)


def generator_sizes(n_layers=3, latent_dim=1, data_dim=1, base_width=128):
    """Widths of the generator (and VAE decoder) with ``n_layers`` linear layers.

    [latent_dim, w, 2w, 4w, ..., 2^(n-2) w, data_dim] with w = base_width: the published
    Linear 1->128, 128->256, 256->1 for n_layers = 3; each extra layer doubles the width.

    >>> generator_sizes(3)
    [1, 128, 256, 1]
    >>> generator_sizes(5, base_width=8)
    [1, 8, 16, 32, 64, 1]
    """
    n_layers = check_layers(n_layers)
    base_width = check_number("base_width", base_width, low=1, integer=True)
    hidden = [base_width * 2 ** k for k in range(n_layers - 1)]
    return [latent_dim] + hidden + [data_dim]


def check_hidden_sizes(name, sizes):
    """Return ``sizes`` as a list if it holds 1 to MAX_LAYERS - 1 positive integers (the hidden
    widths of a network given layer by layer), else raise, naming the argument ``name``."""
    if not isinstance(sizes, (list, tuple)) or not 1 <= len(sizes) <= MAX_LAYERS - 1:
        raise ValueError(f"{name} must be a list of 1 to {MAX_LAYERS - 1} positive integers"
                         f" (hidden widths), got {sizes!r}")
    return [check_number(f"{name}[{i}]", width, low=1, high=2 ** 20, integer=True)
            for i, width in enumerate(sizes)]


def architecture(n_layers, base_width, hidden_sizes):
    """(n_layers, base_width, hidden_sizes) of a generator given either way.

    Without ``hidden_sizes`` the widths follow :func:`generator_sizes` (n_layers defaults to 3,
    base_width to 128). With ``hidden_sizes`` (the MNIST networks) the generator is
    [latent_dim] + hidden_sizes + [data_dim]: n_layers is then len(hidden_sizes) + 1 (giving
    another is refused) and base_width does not apply (giving one is refused).
    """
    if hidden_sizes is None:
        return (check_layers(3 if n_layers is None else n_layers),
                check_number("base_width", 128 if base_width is None else base_width, low=1,
                             integer=True), None)
    hidden_sizes = check_hidden_sizes("hidden_sizes", hidden_sizes)
    if n_layers is not None and n_layers != len(hidden_sizes) + 1:
        raise ValueError(f"n_layers={n_layers!r} does not match hidden_sizes {hidden_sizes}"
                         f" ({len(hidden_sizes) + 1} layers); give one or the other")
    if base_width is not None:
        raise ValueError(f"base_width does not apply when hidden_sizes is given (got base_width="
                         f"{base_width!r}); give one or the other")
    return len(hidden_sizes) + 1, None, hidden_sizes


def generator_network(n_layers, latent_dim, data_dim, base_width, skip, spectral_norm, dtype,
                      seed, backend, hidden_sizes=None):
    """The generator / decoder MLP: :func:`generator_sizes` (or [latent_dim] + hidden_sizes +
    [data_dim]), leaky ReLU 0.2, linear output."""
    sizes = (generator_sizes(n_layers, latent_dim, data_dim, base_width) if hidden_sizes is None
             else [latent_dim] + list(hidden_sizes) + [data_dim])
    return MLP(sizes, activation="leaky_relu", slope=0.2, spectral_norm=spectral_norm, skip=skip,
               dtype=dtype, seed=seed, backend=backend)


class PushForwardModel(ReplicatedModel):
    """What the GAN and the VAE share: x = g(z), z ~ N(0, I_p), with g the network
    :attr:`push_forward_network`.

    One ``numpy.random.Generator`` seeded with ``seed`` drives everything random: the network
    initializations (each network gets a seed drawn from it), the latent and noise draws of
    every step and the shuffling of :meth:`fit`. The same seed therefore gives the same run,
    bit for bit on a given backend. Subclasses provide ``networks()``, ``step(batch)`` and
    ``push_forward_network``. A model samples once it is trained: after :meth:`fit` returns,
    or when it was loaded (:meth:`load`). ``latent`` names the law of z (:data:`LATENTS
    <npgen.models.latents.LATENTS>`): training and sampling draw z from it alike.
    """

    def __init__(self, latent_dim, data_dim, n_layers, skip, base_width, lr, betas, dtype,
                 seed, latent="gaussian", hidden_sizes=None):
        self.latent_dim = check_number("latent_dim", latent_dim, low=1, integer=True)
        self.data_dim = check_number("data_dim", data_dim, low=1, integer=True)
        self.n_layers, self.base_width, self.hidden_sizes = architecture(n_layers, base_width,
                                                                         hidden_sizes)
        self.skip = check_choice("skip", skip, SKIP_STYLES)
        self.lr = check_number("lr", lr, low=0, low_open=True)
        self.betas = check_betas(betas)
        self.dtype = dtype_of(dtype)
        self.seed = check_seed(seed)
        self.latent = check_latent(latent)
        self.rng = np.random.default_rng(self.seed)
        self.replicas = 1
        self.noise = HostNoise([self], self.latent)
        self._buffers_by_size = {}
        self.trained = False

    def _buffers(self, n):
        """The step's arrays for batch size n (``buffer_type(model, n)``), allocated once."""
        if n not in self._buffers_by_size:
            self._buffers_by_size[n] = self.buffer_type(self, n)
        return self._buffers_by_size[n]

    def _network_seed(self):
        """A seed for one network's initialization, drawn from the model's stream."""
        return int(self.rng.integers(2 ** 32))

    def config(self):
        """The constructor arguments (without the backend), as a JSON-able dict."""
        config = {"latent_dim": self.latent_dim, "data_dim": self.data_dim,
                  "n_layers": self.n_layers, "skip": self.skip, "base_width": self.base_width,
                  "lr": self.lr, "betas": list(self.betas), "dtype": self.dtype.name,
                  "seed": self.seed}
        return config if self.hidden_sizes is None else dict(config, hidden_sizes=self.hidden_sizes)

    # ----------------------------------------------------------------- training

    def step(self, batch):
        """One training step on a minibatch (n, data_dim); returns its losses as floats."""
        return self._checked_step(self._as_array("batch", batch, self.data_dim))

    def _checked_step(self, batch):
        """:meth:`step` on a minibatch already checked: a finite C-contiguous (n, data_dim)
        array of the model's dtype, as every minibatch of data that :meth:`fit` checked once."""
        losses = self._read_losses(self._step(batch[None]), len(batch))
        return {name: float(values[0]) for name, values in losses.items()}

    def fit(self, data, epochs=400, batch_size=1000, quiet=False, on_epoch=None):
        """Train on ``data`` (n, data_dim) for ``epochs`` shuffled passes of ``batch_size``.

        The data must be finite; it is cast to the model's dtype. Returns the per-epoch mean
        losses (see :func:`npgen.models.training.fit_loop`, which also documents ``on_epoch``).
        Raises :class:`npgen.models.training.TrainingDiverged` if a loss or parameter stops being finite.
        """
        data = self._as_array("data", data, self.data_dim)
        history = fit_loop(self, data, epochs, batch_size, self.rng, type(self).__name__,
                           quiet=quiet, on_epoch=on_epoch, step=self._checked_step)
        self.trained = True
        return history

    def _as_array(self, name, values, n_cols):
        """``values`` as a finite (n, n_cols) C-contiguous array of the model's dtype (no copy
        when it already is one), else a ValueError naming ``name`` (see
        :func:`npgen.util.checks.as_real_array` for what is refused)."""
        values = as_real_array(name, values, self.dtype, f"(n, {n_cols})")
        return check_matrix(name, values, n_cols, self.dtype)

    def training_data(self, data):
        """(the array the model trains on, its standardization): ``data`` checked, and None (a
        push-forward model trains on the data as it is)."""
        return self._as_array("data", data, self.data_dim), None

    # ----------------------------------------------------------------- sampling

    @one_blas_thread
    def generate(self, z, on_chunk=None):
        """g(z) for latents z of shape (n, latent_dim), with the network in evaluation mode.

        ``on_chunk()``, if given, is called after each chunk of :data:`SAMPLE_CHUNK` rows."""
        z = self._as_array("z", z, self.latent_dim)
        net = self.push_forward_network
        out = np.empty((len(z), net.sizes[-1]), self.dtype)
        # Fixed-size chunks keep one workspace whatever n is; rows are independent, so the
        # padding rows of the last chunk do not affect the others.
        chunk = np.zeros((SAMPLE_CHUNK, self.latent_dim), self.dtype)
        was_training = net.training
        net.eval()
        try:
            for start in range(0, len(z), SAMPLE_CHUNK):
                rows = min(SAMPLE_CHUNK, len(z) - start)
                chunk[:rows] = z[start:start + rows]
                out[start:start + rows] = net._forward(chunk)[:rows]
                if on_chunk is not None:
                    on_chunk()
        finally:
            net.train(was_training)
        return out

    def sample(self, n, seed=None, quiet=False):
        """n samples g(z), z drawn from the latent law with ``numpy.random.default_rng(seed)``:
        (n, data_dim).

        Without a seed every call draws fresh samples; a seed gives the same samples every
        time. Sampling uses its own stream, so it never changes the course of training.
        ``quiet=False`` prints a progress line over the chunks of :data:`SAMPLE_CHUNK` rows, as
        the SGM's sampler does over its noise levels. Raises RuntimeError if the model is untrained.
        """
        if not self.trained:
            raise RuntimeError("sample needs a trained model: call fit first (or load a saved model)")
        n = check_number("n", n, low=1, high=MAX_SAMPLES, integer=True)
        if seed is not None:
            seed = check_seed(seed)
        quiet = check_bool("quiet", quiet)
        z = draw_latents(np.random.default_rng(seed), np.empty((n, self.latent_dim), self.dtype),
                         self.latent)
        progress = progress_bar(-(-n // SAMPLE_CHUNK), label=f"{type(self).__name__} sampling",
                            unit="chunk", quiet=quiet)
        try:
            return self.generate(z, progress.update)
        finally:
            progress.close()

    # ----------------------------------------------------------------- persistence

    def save(self, path_dir):
        """Write the model to the directory ``path_dir``: one ``<name>.npz`` per network
        (see :meth:`npgen.MLP.save`) and ``config.json`` (written last). Optimizer state and
        the random stream are not saved: a loaded model samples exactly like the saved one.
        A folder that is not empty and holds no saved model of this kind is refused
        (:func:`npgen.models.saved.save_model`).
        """
        save_model(self, path_dir)

    @classmethod
    def load(cls, path_dir, backend=None):
        """Read a model written by :meth:`save` (:func:`npgen.models.saved.load_model`)."""
        return load_model(cls, path_dir, backend)
