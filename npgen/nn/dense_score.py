"""A score network s(x, sigma) for data in R^d (d = 784 for MNIST), with hand-written backprop.

An :class:`npgen.nn.MLP` with two hidden layers, conditioned on the noise level after Song &
Ermon (2019, 2020) and preconditioned after Karras et al. (2022). For the levels
sigma_0 > ... > sigma_{L-1} it is trained on, the data's mean mu and standard deviation s_d
(scalars), and e_l the one-hot vector of level l:

    u  = c_l (x - mu),          c_l = 1 / sqrt(s_d^2 + sigma_l^2)           (d)
    h1 = act(W1 u + E1 e_l + b1)                                            (H1)
    h2 = act(W2 h1 + b2)                                                    (H2)
    r  = W3 h2 + b3                                                         (d)
    s(x, sigma_l) = (s_d c_l / sigma_l) r - c_l^2 (x - mu)

* r is the plain MLP d + L -> H1 -> H2 -> d on [u; e_l]: its first weight is [W1 | E1], and
  E1 e_l is a learned embedding of the level added to the first pre-activation (a per-level
  bias: NCSN's conditional shift without its scale). Feeding e_l to the second hidden layer as
  well ([h1; e_l], a second embedding E2) does no better: on Figure 7's two noisy digits (width
  256, 30 levels from 13.4 to 0.01, 10 epochs, the same seed) the relative score error per level
  differs by at most 0.03 (at sigma = 0.01: 1.67 with e_l in the first layer only, 1.70 with
  both), and the sampler puts 51.6% / 48.4% of 1000 samples on the two modes (50.9% / 49.1%
  with both), none between them.
* c_l gives the blurred data x + sigma_l eps about unit variance at every level, from
  sigma_1 ~ 20 down to 0.01, so that one set of weights serves them all (Karras et al.'s c_in).
* -c_l^2 (x - mu) is the exact score of N(mu, s_d^2 I) blurred by N(0, sigma_l^2 I): the
  network learns what the data's score adds to that Gaussian one (Karras et al.'s skip
  connection, c_skip, written for the score). Without it the network would have to carry the
  identity map x -> x through hidden layers narrower than d, which it learns slowly: in a trial
  on the two-digit mixture (30 levels, 470 Adam steps), a network without it reached a cosine
  of 0.6 between its output and the true noise at the largest level, and annealed Langevin
  never left the starting scale.
* s_d c_l / sigma_l is the output scale: the true score has a norm of about sqrt(d) / sigma at
  small sigma (Song & Ermon 2020's technique 3: s = net / sigma) and tends to the Gaussian one
  at large sigma, so r stays of order sqrt(d) at every level.

**Far from the data.** With a bounded activation (tanh), ||r|| <= ||W3||_2 sqrt(H2) + ||b3|| at
every x, so for ||x - mu|| large the skip term wins and s(x, sigma_l) . (x - mu) < 0: the score
field is confining at every level and no Langevin chain can run off to infinity. With an
unbounded one (SiLU, leaky ReLU) r is affine far from the data, W3 D2 W2 D1 W1 c_l (x - mu)
plus a constant for fixed activation patterns D1, D2, a map the training never constrains
there; where it has an eigenvalue lambda with s_d lambda > sigma_l, the Langevin step
multiplies a chain's distance by about 1 + (alpha_l / 2) c_l^2 (s_d lambda / sigma_l - 1) per
step. Measured on Figure 7's two noisy digits (levels from 13.4 to 0.01, 10 epochs, 1000
chains): with SiLU, chains leave the data at sigma ~ 0.5 (where alpha_l c_l^2 s_d / sigma_l is
largest) and grow at every later level, to norms of 1e8 (width 768) and 1e13 (width 256) with
30 levels of 5 steps, and of 5e3 and 4e5 with 100 levels of 1 and 2 steps (width 256); 24%
(768) and 1% (256) of the 30-level samples end outside the data's projected range widened by
a quarter on each side. With tanh and 30 levels of 5 steps the largest norm falls steadily to
15 (768) or 19 (256) at the last level, and at most 0.2% end outside (0 to 10 of 5000 in
Figure 7's quick runs); with 100 levels of 1 step it stays at 22 and 5.8% end outside.

At one level the network is the chain of :meth:`DenseScoreNetwork.langevin_arguments`, what the
Langevin kernel (:func:`npgen.kernels.numpy_ref.annealed_langevin_mlp`) evaluates: c_l and mu
fold into W1 and its bias, E1 e_l into the first bias.

Backward, row by row, with a_l = s_d c_l / sigma_l: dL/dr = a_l dL/ds, then the MLP's backward
to dL/d[u; e_l], and dL/dx = c_l dL/du - c_l^2 dL/ds; the gradient reaching the one-hot columns
is dropped (e_l is not a variable).
"""

import numpy as np

from .. import kernels
from ..util.checks import check_matrix, check_number, check_seed, dtype_of
from .files import build_network, read_network_file, write_network_file
from .layers import AffineLayer
from .mlp import MLP

#: Hidden widths of the MNIST score network: 2 x 768 gives 1.82 million parameters at d = 784
#: and 30 levels, about the GAN generator's 1.66 / 1.46 million (latent dimension 784 / 20).
HIDDEN_SIZES = (768, 768)
#: Hidden activation: tanh, smooth (so that the learned score field is, as the true one, smooth)
#: and bounded, so that the score is confining (module doc, "Far from the data").
ACTIVATION = "tanh"


class _Workspace:
    """The MLP's input [u; e_l] and the per-row scales for one batch size, allocated once."""

    def __init__(self, net, n):
        d, L, dt = net.data_dim, net.n_levels, net.dtype
        self.n = n
        self.inputs = np.zeros((n, d + L), dt)
        self.grad_x = np.empty((n, d), dt)
        self.scale, self.in_scale, self.skip = (np.empty((n, 1), dt) for _ in range(3))
        self.rows = np.arange(n)
        self.columns = np.empty(n, np.int64)
        self.levels = np.zeros(n, np.int64)


class DenseScoreNetwork:
    """s(x, sigma_l) for x in R^d and the trained levels sigma_l (see the module doc).

    Parameters
    ----------
    data_dim : int
        d, the dimension of the data.
    sigmas : sequence of float
        The noise levels, largest first (strictly decreasing, positive).
    hidden_sizes : (int, int)
        H1 and H2 (:data:`HIDDEN_SIZES`).
    data_mean, data_scale : float
        mu and s_d of the module doc: the data's mean and standard deviation (scalars over every
        coordinate; 0 and 1 by default).
    activation, slope : str, float
        Hidden activation (any of ``npgen.kernels.ACTIVATIONS``; :data:`ACTIVATION` by default)
        and leaky_relu's slope.
    dtype : str
        'float32' (default) or 'float64' (gradient checks).
    seed : int
        Seed of the MLP's initialization (every weight and bias uniform in +-1/sqrt(fan_in), the
        one-hot columns counted in the first layer's fan_in, as torch.nn.Linear).
    backend : str or None
        Kernel backend ('cpu', 'numpy'); None reads $NPGEN_BACKEND.

    ``mlp`` is the :class:`npgen.nn.MLP` d + L -> H1 -> H2 -> d; ``params`` / ``grads`` are its
    flat buffers, which an optimizer updates.
    """

    #: The constructor arguments a network file records (see :mod:`npgen.nn.files`).
    FILE_FIELDS = ("data_dim", "sigmas", "hidden_sizes", "data_mean", "data_scale", "activation",
                   "slope", "dtype", "seed")

    def __init__(self, data_dim, sigmas, hidden_sizes=HIDDEN_SIZES, data_mean=0.0, data_scale=1.0,
                 activation=ACTIVATION, slope=0.2, dtype="float32", seed=0, backend=None):
        self.data_dim = check_number("data_dim", data_dim, low=1, integer=True)
        self.sigmas = check_noise_levels(sigmas)
        if not isinstance(hidden_sizes, (list, tuple)) or len(hidden_sizes) != 2:
            raise ValueError(f"hidden_sizes must be two positive integers (H1, H2), got {hidden_sizes!r}")
        self.hidden_sizes = tuple(check_number(f"hidden_sizes[{i}]", h, low=1, integer=True)
                                  for i, h in enumerate(hidden_sizes))
        self.n_levels = self.sigmas.size
        self.data_mean = check_number("data_mean", data_mean)
        self.data_scale = check_number("data_scale", data_scale, low=0, low_open=True)
        self.seed = check_seed(seed)
        self.mlp = MLP([self.data_dim + self.n_levels, *self.hidden_sizes, self.data_dim],
                       activation=activation, slope=slope, dtype=dtype, seed=self.seed, backend=backend)
        self.activation, self.slope, self.dtype = activation, self.mlp.slope, dtype_of(dtype)
        self.activation_code = kernels.activation_code(activation)
        self.backend_name, self.backend, self.ops = self.mlp.backend_name, self.mlp.backend, self.mlp.ops
        self.params, self.grads = self.mlp.params, self.mlp.grads
        #: Per level (float64, (L,)): c_l, the output scale a_l = s_d c_l / sigma_l, and the
        #: skip scale c_l^2 of the module doc.
        self.in_scales = 1.0 / np.sqrt(self.data_scale ** 2 + self.sigmas ** 2)
        self.out_scales = self.data_scale * self.in_scales / self.sigmas
        self.skip_scales = self.in_scales ** 2
        self._scales = {name: getattr(self, name).astype(self.dtype)
                        for name in ("in_scales", "out_scales", "skip_scales")}
        self._workspaces = {}
        self._last = None

    @property
    def n_params(self):
        """Number of trainable parameters."""
        return self.params.size

    # ----------------------------------------------------------------- the chain at one level

    def _level_chain(self, level):
        """(c_l W1, its bias, W2, b2, W3, b3) in float64: the x path at level l, with u =
        c_l (x - mu) and e_l folded into the first layer (W1 u = c_l W1 x - c_l mu W1 1)."""
        d = self.data_dim
        (W1full, W2, W3), (b1, b2, b3) = ([a.astype(np.float64) for a in arrays]
                                          for arrays in (self.mlp.weights, self.mlp.biases))
        W1 = self.in_scales[level] * W1full[:, :d]
        return W1, b1 + W1full[:, d + level] - self.data_mean * W1.sum(axis=1), W2, b2, W3, b3

    def langevin_arguments(self, level):
        """The arguments W1, beff1, W2, beff2, W3, b3, out_scales, skip_scales, center of
        :func:`npgen.kernels.numpy_ref.annealed_langevin_mlp` that make its score s(., sigma_l)
        (one level: beff1, beff2 of one row, the scales of one entry), in the network's dtype."""
        level = int(self._check_levels(level, 1)[0])
        W1, b1, W2, b2, W3, b3 = self._level_chain(level)
        arrays = (W1, b1[None, :], W2, b2[None, :], W3, b3, self.out_scales[level:level + 1],
                  self.skip_scales[level:level + 1])
        return tuple(np.ascontiguousarray(a, self.dtype) for a in arrays) + (self.data_mean,)

    def layers_at(self, level):
        """The network at level index ``level`` as a function of x alone, three float64
        :class:`AffineLayer`: act(c_l W1 x + .) -> act(W2 h1 + b2) -> a_l (W3 h2 + b3) - c_l^2 (x - mu),
        the last reading [h2; x] (the skip), for :mod:`npgen.analysis.lipschitz`."""
        level = int(self._check_levels(level, 1)[0])
        W1, b1, W2, b2, W3, b3 = self._level_chain(level)
        out, skip = self.out_scales[level], self.skip_scales[level]
        last = np.hstack([out * W3, -skip * np.eye(self.data_dim)])
        return [AffineLayer(W1, b1, self.activation, self.slope, ((0,),)),
                AffineLayer(W2, b2, self.activation, self.slope, ((1,),)),
                AffineLayer(last, out * b3 + skip * self.data_mean, "identity", 0.0, ((2,), (0,)))]

    # ----------------------------------------------------------------- passes (unchecked)

    def _workspace(self, n):
        ws = self._workspaces.get(n)
        if ws is None:
            ws = self._workspaces[n] = _Workspace(self, n)
        return ws

    def _forward_raw(self, x, levels):
        """r (n, d) of the module doc for x (n, d) and level indices (n,): the MLP on
        [c_l (x - mu); e_l]. Returns a view valid until the next call."""
        d, ws = self.data_dim, self._workspace(x.shape[0])
        ws.levels[...] = levels
        np.take(self._scales["in_scales"], ws.levels, out=ws.in_scale[:, 0])
        np.subtract(x, self.dtype.type(self.data_mean), out=ws.inputs[:, :d])
        ws.inputs[:, :d] *= ws.in_scale
        ws.inputs[:, d:] = 0
        np.add(ws.levels, d, out=ws.columns)
        ws.inputs[ws.rows, ws.columns] = 1
        self._last = ws
        return self.mlp._forward(ws.inputs)

    def _backward_raw(self, grad_raw, need_grad_x):
        """Backprop dL/dr through the last ``_forward_raw``; *overwrites* ``grads``; returns the
        gradient through the network alone, c_l dL/du (a view), when ``need_grad_x``."""
        ws = self._last
        self.mlp.zero_grad()
        grad_inputs = self.mlp._backward(grad_raw, need_grad_x)
        if not need_grad_x:
            return None
        np.multiply(grad_inputs[:, :self.data_dim], ws.in_scale, out=ws.grad_x)
        return ws.grad_x

    # ----------------------------------------------------------------- public API (checked)

    def _check_levels(self, levels, n):
        """Level indices as an (n,) int array; an int is every row's level."""
        values = np.asarray(levels)
        if values.ndim == 0:
            values = np.full(n, values)
        if values.shape != (n,) or values.dtype.kind not in "iu" or (
                values.size and (values.min() < 0 or values.max() >= self.n_levels)):
            raise ValueError(f"levels must be an integer or {n} integers in [0, {self.n_levels - 1}]"
                             f" (indices of the noise levels), got {levels!r}")
        return values

    def forward(self, x, levels):
        """Return s(x_i, sigma_{levels_i}) (n, d) for x (n, d) and level indices (an int for
        every row, or one per row). Keeps what :meth:`backward` needs."""
        x = check_matrix("x", x, self.data_dim, self.dtype)
        levels = self._check_levels(levels, x.shape[0])
        raw = self._forward_raw(x, levels)
        ws = self._last
        np.take(self._scales["out_scales"], ws.levels, out=ws.scale[:, 0])
        np.take(self._scales["skip_scales"], ws.levels, out=ws.skip[:, 0])
        return raw * ws.scale - ws.skip * (x - self.dtype.type(self.data_mean))

    __call__ = forward

    def backward(self, grad_s, need_grad_x=True):
        """Backprop dL/ds (n, d) through the last forward: *overwrites* ``grads`` with
        dL/dtheta and returns dL/dx (n, d), or None when ``need_grad_x`` is false."""
        if self._last is None:
            raise RuntimeError("backward needs a preceding forward")
        grad_s = check_matrix("grad_s", grad_s, self.data_dim, self.dtype)
        ws = self._last
        if grad_s.shape[0] != ws.n:
            raise ValueError(f"grad_s must have {ws.n} rows like the last forward's input, got"
                             f" {grad_s.shape[0]}")
        grad_x = self._backward_raw(grad_s * ws.scale, need_grad_x)
        return None if grad_x is None else grad_x - ws.skip * grad_s

    # ----------------------------------------------------------------- persistence

    def config(self):
        """The constructor arguments, as a JSON-able dict."""
        return {"data_dim": self.data_dim, "sigmas": self.sigmas.tolist(),
                "hidden_sizes": list(self.hidden_sizes), "data_mean": self.data_mean,
                "data_scale": self.data_scale, "activation": self.activation,
                "slope": self.slope, "dtype": self.dtype.name, "seed": self.seed}

    def state_dict(self):
        """The MLP's arrays ('0.weight' (H1, d + L), '0.bias', '2.weight', '2.bias', '4.weight',
        '4.bias'): torch.nn.Sequential(Linear(d + L, H1), act, Linear(H1, H2), act,
        Linear(H2, d)) on [u; e_l]."""
        return self.mlp.state_dict()

    def load_state_dict(self, state):
        """Copy arrays from ``state`` (names and shapes as in :meth:`state_dict`)."""
        self.mlp.load_state_dict(state)

    def save(self, path, **extra):
        """Write the network to ``path`` (.npz) in npgen's one network-file format (kind
        "DenseScoreNetwork"); ``extra`` (JSON-able) joins its configuration entry."""
        write_network_file(path, "DenseScoreNetwork", dict(self.config(), **extra), self.state_dict())

    @classmethod
    def load(cls, path, backend=None):
        """Read a network written by :meth:`save`; any other file is refused in one sentence."""
        return build_network(cls, path, *read_network_file(path, ("DenseScoreNetwork",)), backend)


def check_noise_levels(sigmas):
    """``sigmas`` as a float64 array if it is a non-empty, strictly decreasing sequence of
    positive finite numbers, else one ValueError naming ``sigmas``."""
    try:
        levels = np.asarray(sigmas, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"sigmas must be a sequence of positive numbers, got {sigmas!r}") from None
    if levels.ndim != 1 or levels.size == 0 or not np.isfinite(levels).all() or (levels <= 0).any():
        raise ValueError(f"sigmas must be a non-empty 1-D sequence of positive finite numbers, got {sigmas!r}")
    if (np.diff(levels) >= 0).any():
        raise ValueError(f"sigmas must be strictly decreasing (largest level first), got {sigmas!r}")
    return levels
