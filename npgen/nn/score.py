"""The score network s(x, sigma) of the paper's univariate experiments, with hand-written backprop.

The architecture is the published code's ``ScoreNet`` for d = 1. With leaky_c(z) = z for
z > 0 and c z otherwise:

    p(sigma) = [sin(sigma f_0), ..., sin(sigma f_7), cos(sigma f_0), ..., cos(sigma f_7)],
               f_k = exp(-k ln(10000) / 7)                         sinusoidal features (16)
    e(sigma) = leaky_0.2(V2 leaky_0.2(V1 p(sigma) + c1) + c2)      noise-level embedding (64)
    h1 = leaky_0.01(W1 x + b1)                                     (96)
    z2 = W2 [h1; e] + b2                                           (196)
    s  = W3 leaky_0.2([z2; e]) + b3                                (1)

(the features are those of the tensor2tensor / DDPM "timestep embedding", applied to sigma
itself). Splitting W2 = [W2x | W2e] and W3 = [W3x | W3e] into the columns that meet the
x path and those that meet e, the noise level enters the x path only through two biases:

    z2 = W2x h1 + beff2(sigma),    beff2 = b2 + W2e e(sigma)
    s  = W3x leaky_0.2(z2) + beff3(sigma),    beff3 = b3 + W3e leaky_0.2(e(sigma))

so with sigma fixed the network is the plain chain 1 -> 96 -> 196 -> 1 of :meth:`layers_at`.
A training minibatch uses one sigma, so e(sigma) is computed once per batch (a batch of one),
and its gradient is the sum over the batch of what flows back into the two biases:

    dL/dbeff2 = sum_i dL/dz2_i,   dL/dbeff3 = sum_i dL/ds_i
    dL/dW2e = dL/dbeff2 e^T,      dL/dW3e = dL/dbeff3 leaky_0.2(e)^T
    dL/de = W2e^T dL/dbeff2 + leaky_0.2'(e) * (W3e^T dL/dbeff3)

and dL/de is then backpropagated through the two embedding layers.
"""

import numpy as np

from .. import kernels
from ..kernels import numpy_ref
from ..util.checks import check_matrix, check_number, check_seed, dtype_of
from .files import build_network, check_state, read_network_file, write_network_file
from .layers import AffineLayer

#: Number of sinusoidal features of sigma (half sines, half cosines).
FEATURES = 16
#: Widths of the embedding MLP, of the x path's two hidden layers, and of the output (d = 1).
EMBED_WIDTHS = (32, 64)
HIDDEN_WIDTHS = (96, 196)
#: Negative slopes: the first hidden layer uses torch's default leaky_relu slope, the rest 0.2.
SLOPE_X = 0.01
SLOPE = 0.2

#: The linear layers under the published code's names: (name, out, in), in the layout of
#: torch.nn.Linear; ``fc_2`` and ``fc_3`` take the embedding as their last 64 inputs.
LAYERS = (
    ("fc_1", HIDDEN_WIDTHS[0], 1),
    ("fc_2", HIDDEN_WIDTHS[1], HIDDEN_WIDTHS[0] + EMBED_WIDTHS[1]),
    ("fc_3", 1, HIDDEN_WIDTHS[1] + EMBED_WIDTHS[1]),
    ("sigma_emb_1", EMBED_WIDTHS[0], FEATURES),
    ("sigma_emb_2", EMBED_WIDTHS[1], EMBED_WIDTHS[0]),
)


def sinusoidal_features(sigma, dim=FEATURES):
    """p(sigma) = [sin(sigma f_k)]_k ++ [cos(sigma f_k)]_k with f_k = exp(-k ln(10000) / (dim/2 - 1)).

    k = 0 .. dim/2 - 1; computed in float64. Returns an array of shape (dim,).
    """
    half = dim // 2
    freqs = np.exp(-np.arange(half) * (np.log(10000.0) / (half - 1)))
    angles = float(sigma) * freqs
    return np.concatenate([np.sin(angles), np.cos(angles)])


def _leaky(z, slope):
    """leaky_slope(z) = z if z > 0 else slope * z, by the reference kernels (for the embedding's
    vectors, one row per noise level)."""
    return numpy_ref.activation(kernels.LEAKY_RELU, slope, z)


class _Workspace:
    """Activations and gradients of the x path for one batch size, allocated once."""

    def __init__(self, n, dtype):
        h1, h2 = HIDDEN_WIDTHS
        self.n = n
        self.z1, self.h1, self.grad_z1, self.grad_h1 = (np.empty((n, h1), dtype) for _ in range(4))
        self.z2, self.h2, self.grad_z2, self.grad_h2 = (np.empty((n, h2), dtype) for _ in range(4))
        self.z3, self.s, self.grad_z3, self.grad_x = (np.empty((n, 1), dtype) for _ in range(4))


class ScoreNetwork:
    """s(x, sigma) for x in R (see the module doc), parameters in one flat buffer.

    Parameters
    ----------
    dtype : str
        'float32' (default, as the paper trained) or 'float64' (gradient checks).
    seed : int
        Seed of the initialization: every weight and bias uniform in +-1/sqrt(fan_in), as
        torch.nn.Linear.
    backend : str or None
        Kernel backend ('cpu', 'numpy'); None reads $NPGEN_BACKEND.

    ``params`` / ``grads`` hold every parameter / gradient, so that one :class:`npgen.Adam`
    trains the whole network. Internally ``fc_2`` and ``fc_3`` are stored as their x-path and
    embedding column blocks (``weights['fc_2.x']``, ``weights['fc_2.e']``, ...), each
    contiguous; :meth:`state_dict` reassembles the torch-shaped matrices.
    """

    #: The constructor arguments a network file records (see :mod:`npgen.nn.files`).
    FILE_FIELDS = ("dtype", "seed")

    def __init__(self, dtype="float32", seed=0, backend=None):
        self.dtype = dtype_of(dtype)
        self.seed = check_seed(seed)
        self.backend_name = kernels.backend_name(backend)
        self.backend = kernels.get_backend(self.backend_name)
        self._allocate_parameters()
        self._initialize(np.random.default_rng(self.seed))
        self._workspaces = {}
        self._features_cache = {}
        self._last = None

    # ----------------------------------------------------------------- parameters

    def _blocks(self):
        """(name, shape) of every parameter block, in the order of the flat buffer."""
        blocks = []
        for name, out, fan_in in LAYERS:
            if name in ("fc_2", "fc_3"):
                x_width = fan_in - EMBED_WIDTHS[1]
                blocks += [(f"{name}.x", (out, x_width)), (f"{name}.e", (out, EMBED_WIDTHS[1]))]
            else:
                blocks.append((f"{name}.weight", (out, fan_in)))
            blocks.append((f"{name}.bias", (out,)))
        return blocks

    def _allocate_parameters(self):
        blocks = self._blocks()
        total = sum(int(np.prod(shape)) for _, shape in blocks)
        self.params = np.zeros(total, self.dtype)
        self.grads = np.zeros(total, self.dtype)
        self.weights, self.weight_grads = {}, {}
        offset = 0
        for name, shape in blocks:
            size = int(np.prod(shape))
            self.weights[name] = self.params[offset:offset + size].reshape(shape)
            self.weight_grads[name] = self.grads[offset:offset + size].reshape(shape)
            offset += size

    def _initialize(self, rng):
        for name, out, fan_in in LAYERS:
            bound = 1.0 / np.sqrt(fan_in)
            weight = rng.uniform(-bound, bound, (out, fan_in))
            self._set_weight(name, weight)
            self.weights[f"{name}.bias"][...] = rng.uniform(-bound, bound, out)

    def _set_weight(self, name, weight):
        """Store a torch-shaped (out, in) weight into its block(s)."""
        if f"{name}.weight" in self.weights:
            self.weights[f"{name}.weight"][...] = weight
        else:
            x_width = self.weights[f"{name}.x"].shape[1]
            self.weights[f"{name}.x"][...] = weight[:, :x_width]
            self.weights[f"{name}.e"][...] = weight[:, x_width:]

    @property
    def n_params(self):
        """Number of trainable parameters."""
        return self.params.size

    # ----------------------------------------------------------------- the noise-level path

    def _features(self, sigma):
        """p(sigma) as a (1, 16) array of the network's dtype, cached per noise level."""
        features = self._features_cache.get(sigma)
        if features is None:
            features = sinusoidal_features(sigma).astype(self.dtype)[None, :]
            self._features_cache[sigma] = features
        return features

    def _embed(self, sigma):
        """e(sigma) for one sigma: the embedding MLP on a batch of one; keeps what backward needs."""
        w, dt, leaky = self.weights, self.dtype, kernels.LEAKY_RELU
        p = self._features(sigma)
        z_e1, a_e1 = np.empty((1, EMBED_WIDTHS[0]), dt), np.empty((1, EMBED_WIDTHS[0]), dt)
        z_e2, e = np.empty((1, EMBED_WIDTHS[1]), dt), np.empty((1, EMBED_WIDTHS[1]), dt)
        self.backend.linear_forward(p, w["sigma_emb_1.weight"], w["sigma_emb_1.bias"],
                                    leaky, SLOPE, z_e1, a_e1)
        self.backend.linear_forward(a_e1, w["sigma_emb_2.weight"], w["sigma_emb_2.bias"],
                                    leaky, SLOPE, z_e2, e)
        return {"p": p, "z_e1": z_e1, "a_e1": a_e1, "z_e2": z_e2, "e": e,
                "leaky_e": _leaky(e, SLOPE).astype(dt)}

    def _effective_biases(self, emb):
        """beff2 = b2 + W2e e (196,) and beff3 = b3 + W3e leaky_0.2(e) (1,)."""
        w = self.weights
        beff2 = w["fc_2.bias"] + w["fc_2.e"] @ emb["e"][0]
        beff3 = w["fc_3.bias"] + w["fc_3.e"] @ emb["leaky_e"][0]
        return beff2.astype(self.dtype), beff3.astype(self.dtype)

    def _biases_float64(self, sigma):
        """beff2 (196,) and beff3 (1,) at ``sigma``, in float64 (an evaluation: nothing kept)."""
        w = {name: value.astype(np.float64) for name, value in self.weights.items()}
        hidden = _leaky(w["sigma_emb_1.weight"] @ sinusoidal_features(sigma) + w["sigma_emb_1.bias"],
                        SLOPE)
        e = _leaky(w["sigma_emb_2.weight"] @ hidden + w["sigma_emb_2.bias"], SLOPE)
        return w["fc_2.bias"] + w["fc_2.e"] @ e, w["fc_3.bias"] + w["fc_3.e"] @ _leaky(e, SLOPE)

    def effective_biases(self, sigmas):
        """The per-level biases of the x path: beff2 (L, 196) and beff3 (L,) for L noise levels.

        With them, s(x, sigma_l) = W3x leaky_0.2(W2x leaky_0.01(W1 x + b1) + beff2[l]) + beff3[l]:
        what the Langevin kernels evaluate. Computed in float64, returned in the network's dtype.
        """
        pairs = [self._biases_float64(check_number("sigma", s, low=0)) for s in sigmas]
        return (np.array([b2 for b2, _ in pairs], self.dtype),
                np.array([b3[0] for _, b3 in pairs], self.dtype))

    # ----------------------------------------------------------------- passes (unchecked)

    def _workspace(self, n):
        ws = self._workspaces.get(n)
        if ws is None:
            ws = self._workspaces[n] = _Workspace(n, self.dtype)
        return ws

    def _forward(self, x, sigma):
        """s(x, sigma) for x (n, 1) and one sigma; returns a view valid until the next call."""
        w, be = self.weights, self.backend
        ws = self._workspace(x.shape[0])
        emb = self._embed(sigma)
        beff2, beff3 = self._effective_biases(emb)
        be.linear_forward(x, w["fc_1.weight"], w["fc_1.bias"], kernels.LEAKY_RELU, SLOPE_X,
                          ws.z1, ws.h1)
        be.linear_forward(ws.h1, w["fc_2.x"], beff2, kernels.LEAKY_RELU, SLOPE, ws.z2, ws.h2)
        be.linear_forward(ws.h2, w["fc_3.x"], beff3, kernels.IDENTITY, 0.0, ws.z3, ws.s)
        self._last = (ws, x, emb)
        return ws.s

    def _backward(self, grad_s, need_grad_x):
        """Backprop dL/ds through the last ``_forward``; overwrites ``grads``, returns dL/dx."""
        ws, x, emb = self._last
        w, g, be = self.weights, self.weight_grads, self.backend
        leaky = kernels.LEAKY_RELU
        be.linear_backward(ws.h2, w["fc_3.x"], ws.z3, ws.s, grad_s, kernels.IDENTITY, 0.0,
                           ws.grad_z3, g["fc_3.x"], g["fc_3.bias"], ws.grad_h2, False, True)
        be.linear_backward(ws.h1, w["fc_2.x"], ws.z2, ws.h2, ws.grad_h2, leaky, SLOPE,
                           ws.grad_z2, g["fc_2.x"], g["fc_2.bias"], ws.grad_h1, False, True)
        be.linear_backward(x, w["fc_1.weight"], ws.z1, ws.h1, ws.grad_h1, leaky, SLOPE_X,
                           ws.grad_z1, g["fc_1.weight"], g["fc_1.bias"], ws.grad_x,
                           False, need_grad_x)
        # The embedding's share: the bias gradients are the batch sums of dL/dz2 and dL/ds.
        grad_beff2, grad_beff3 = g["fc_2.bias"], g["fc_3.bias"]
        np.multiply(grad_beff2[:, None], emb["e"], out=g["fc_2.e"])
        np.multiply(grad_beff3[:, None], emb["leaky_e"], out=g["fc_3.e"])
        grad_e = (grad_beff2 @ w["fc_2.e"]
                  + numpy_ref.activation_derivative(kernels.LEAKY_RELU, SLOPE, emb["e"][0].astype(np.float64))
                  * (grad_beff3 @ w["fc_3.e"]))
        grad_e = np.ascontiguousarray(grad_e, dtype=self.dtype).reshape(1, -1)
        grad_z_e2 = np.empty_like(grad_e)
        grad_a_e1, grad_z_e1 = (np.empty((1, EMBED_WIDTHS[0]), self.dtype) for _ in range(2))
        be.linear_backward(emb["a_e1"], w["sigma_emb_2.weight"], emb["z_e2"], emb["e"], grad_e,
                           leaky, SLOPE, grad_z_e2, g["sigma_emb_2.weight"],
                           g["sigma_emb_2.bias"], grad_a_e1, False, True)
        be.linear_backward(emb["p"], w["sigma_emb_1.weight"], emb["z_e1"], emb["a_e1"],
                           grad_a_e1, leaky, SLOPE, grad_z_e1, g["sigma_emb_1.weight"],
                           g["sigma_emb_1.bias"], None, False, False)
        return ws.grad_x if need_grad_x else None

    # ----------------------------------------------------------------- public API (checked)

    def forward(self, x, sigma):
        """Return s(x, sigma) (shape (n, 1)) for x of shape (n, 1) and a scalar sigma >= 0.

        Keeps what :meth:`backward` needs.
        """
        x = check_matrix("x", x, 1, self.dtype)
        sigma = check_number("sigma", sigma, low=0)
        return self._forward(x, sigma).copy()

    __call__ = forward

    def backward(self, grad_s, need_grad_x=True):
        """Backprop dL/ds (shape (n, 1)) through the last forward.

        *Overwrites* ``grads`` with dL/dtheta (the network is used once per loss) and returns
        dL/dx (n, 1), or None when ``need_grad_x`` is false.
        """
        if self._last is None:
            raise RuntimeError("backward needs a preceding forward")
        grad_s = check_matrix("grad_s", grad_s, 1, self.dtype)
        if grad_s.shape[0] != self._last[0].n:
            raise ValueError(f"grad_s must have {self._last[0].n} rows like the last forward's"
                             f" input, got {grad_s.shape[0]}")
        grad_x = self._backward(grad_s, need_grad_x)
        return None if grad_x is None else grad_x.copy()

    def layers_at(self, sigma):
        """The network as a function of x alone, sigma fixed: three :class:`AffineLayer` (float64).

        leaky_0.01(W1 x + b1) -> leaky_0.2(W2x h1 + beff2) -> W3x h2 + beff3, with the
        embedding folded into the biases beff2, beff3 (see the module doc).
        """
        beff2, beff3 = self._biases_float64(check_number("sigma", sigma, low=0))
        w = {name: self.weights[name].astype(np.float64) for name in ("fc_1.weight", "fc_1.bias",
                                                                      "fc_2.x", "fc_3.x")}
        return [
            AffineLayer(w["fc_1.weight"], w["fc_1.bias"], "leaky_relu", SLOPE_X, ((0,),)),
            AffineLayer(w["fc_2.x"], beff2, "leaky_relu", SLOPE, ((1,),)),
            AffineLayer(w["fc_3.x"], beff3, "identity", 0.0, ((2,),)),
        ]

    # ----------------------------------------------------------------- persistence

    def config(self):
        """The constructor arguments, as a JSON-able dict."""
        return {"dtype": self.dtype.name, "seed": self.seed}

    def state_dict(self):
        """Arrays under the published ``ScoreNet``'s names: 'fc_1.weight', ..., 'sigma_emb_2.bias'."""
        state = {}
        for name, _, _ in LAYERS:
            if f"{name}.weight" in self.weights:
                state[f"{name}.weight"] = self.weights[f"{name}.weight"].copy()
            else:
                state[f"{name}.weight"] = np.concatenate(
                    [self.weights[f"{name}.x"], self.weights[f"{name}.e"]], axis=1)
            state[f"{name}.bias"] = self.weights[f"{name}.bias"].copy()
        return state

    def load_state_dict(self, state):
        """Copy arrays from ``state`` (names and shapes as in :meth:`state_dict`)."""
        check_state(state, {key: shape for name, out, fan_in in LAYERS
                            for key, shape in ((f"{name}.weight", (out, fan_in)), (f"{name}.bias", (out,)))})
        for name, _, _ in LAYERS:
            self._set_weight(name, np.asarray(state[f"{name}.weight"]))
            self.weights[f"{name}.bias"][...] = state[f"{name}.bias"]

    def save(self, path, noise_levels=None, data_std=None):
        """Write the network to ``path`` (.npz) in the format of :meth:`npgen.MLP.save`: its
        state_dict plus its configuration (kind "ScoreNetwork", see :mod:`npgen.nn.files`).

        ``noise_levels`` (the sigmas it was trained on) and ``data_std`` (the standard deviation
        the data was divided by) make the file self-describing: ``npgen lipschitz`` reports the
        constant of s(., sigma) at those levels, on the standardized and on the data's scale.
        """
        extra = {"noise_levels": None if noise_levels is None
                 else [check_number("noise level", s, low=0, low_open=True) for s in noise_levels],
                 "data_std": None if data_std is None
                 else check_number("data_std", data_std, low=0, low_open=True)}
        write_network_file(path, "ScoreNetwork", dict(self.config(), **extra), self.state_dict())

    @classmethod
    def load(cls, path, backend=None):
        """Read a network written by :meth:`save`; any other file is refused in one sentence."""
        return build_network(cls, path, *read_network_file(path, ("ScoreNetwork",)), backend)
