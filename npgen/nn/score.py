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
from .layout import ParameterLayout, ReplicatedParameters, as_given, with_replica_axis

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
    """Activations and gradients of the x path for one batch size, allocated once on the
    network's backend: (R, n, width) arrays."""

    def __init__(self, net, n):
        h1, h2 = HIDDEN_WIDTHS
        rows = lambda width: net.ops.zeros((net.replicas, n, width), net.dtype)  # noqa: E731
        self.n = n
        self.z1, self.h1, self.grad_z1, self.grad_h1 = (rows(h1) for _ in range(4))
        self.z2, self.h2, self.grad_z2, self.grad_h2 = (rows(h2) for _ in range(4))
        self.z3, self.s, self.grad_z3, self.grad_x = (rows(1) for _ in range(4))


#: The noise-level path's rows its forward keeps (numpy_ref.score_embedding_forward's
#: ``path``): (name, width); its backward's scratch is a row grad_NAME of each.
_PATH = (("z_e1", EMBED_WIDTHS[0]), ("a_e1", EMBED_WIDTHS[0]), ("z_e2", EMBED_WIDTHS[1]),
         ("e", EMBED_WIDTHS[1]), ("leaky_e", EMBED_WIDTHS[1]))
#: The noise-level path's arrays, one row per replica: (name, width).
_LEVEL_ROWS = _PATH + tuple((f"grad_{name}", width) for name, width in _PATH) + (
    ("beff2", HIDDEN_WIDTHS[1]), ("grad_beff2", HIDDEN_WIDTHS[1]), ("beff3", 1), ("grad_beff3", 1))
#: The noise-level path's parameters, in the order of numpy_ref.score_embedding_forward.
_EMBEDDING = ("sigma_emb_1.weight", "sigma_emb_1.bias", "sigma_emb_2.weight", "sigma_emb_2.bias",
              "fc_2.e", "fc_2.bias", "fc_3.e", "fc_3.bias")


class ScoreNetwork(ReplicatedParameters):
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
        self.layout = ParameterLayout(self._blocks())
        self._features_cache = {}
        self._place(kernels.backend_name(backend), 1)
        self._initialize(np.random.default_rng(self.seed))

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

    def _allocate_state(self):
        """The noise-level path's rows (R, 1, width), one per replica (:data:`_LEVEL_ROWS`)."""
        R = self.replicas
        self._rows = {name: self.ops.zeros((R, 1, width), self.dtype) for name, width in _LEVEL_ROWS}
        # The x path's effective biases and their gradients: the same memory seen as (R, width).
        for name in ("beff2", "beff3", "grad_beff2", "grad_beff3"):
            self._rows[f"{name}_bias"] = self._rows[name].reshape(R, self._rows[name].shape[2])

    def _bind_parameters(self):
        """The (R, *shape) views of every block, and for one host replica the blocks users read
        (``weights``, ``weight_grads``: dicts by name)."""
        self._w = self.layout.views(self.params, self.replicas)
        self._g = self.layout.views(self.grads, self.replicas)
        if self.on_host:
            self.weights, self.weight_grads = self.layout.blocks(self.params), self.layout.blocks(self.grads)
        else:
            self.weights = self.weight_grads = None

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

    # ----------------------------------------------------------------- the noise-level path

    def _features(self, sigma):
        """p(sigma) as a (1, 1, 16) array of the network's dtype (one replica's row), cached per
        noise level."""
        features = self._features_cache.get(sigma)
        if features is None:
            features = sinusoidal_features(sigma).astype(self.dtype)[None, None, :]
            self._features_cache[sigma] = features
        return features

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
    #
    # Arrays have the replica axis first: x (R, n, 1), each replica at its own noise level, given
    # as its features p(sigma_r) (R, 1, 16). A network of one replica also takes x (n, 1) with a
    # float sigma, and then returns (n, 1) views.

    def workspace_size(self, n):
        """Elements one replica's workspace of n rows holds (z, a and their gradients per layer
        of the x path)."""
        return 4 * n * (sum(HIDDEN_WIDTHS) + 1)

    def state_size(self):
        """Elements of one replica's noise-level rows (:data:`_LEVEL_ROWS`)."""
        return sum(width for _, width in _LEVEL_ROWS)

    def _workspace(self, n):
        ws = self._workspaces.get(n)
        if ws is None:
            ws = self._workspaces[n] = _Workspace(self, n)
        return ws

    def _forward(self, x, sigma):
        """s(x, sigma) without argument checks (``sigma``: a float, or the replicas' features
        (R, 1, 16)); returns a view valid until the next call.

        The embedding runs on each replica's row and is folded into the x path's biases as two
        identity layers on the rows e and leaky_0.2(e); since leaky_c(leaky_c(z)) =
        leaky_{c^2}(z), the row leaky_0.2(e) is the second embedding layer with slope 0.04
        (numpy_ref.score_embedding_forward, one call).
        """
        features = self._features(sigma) if np.isscalar(sigma) else sigma
        x, one = with_replica_axis(x)
        ops, row = self.ops, self._rows
        ops.score_embedding_forward(features, self._embedding(self._w), SLOPE,
                                    [row[name] for name, _ in _PATH], row["beff2"], row["beff3"])
        ws = self._workspace(x.shape[1])
        self._last = (ws, x, features, one)
        h = x
        for (weight, bias, kind, slope), z, a in zip(self._x_path(), (ws.z1, ws.z2, ws.z3),
                                                     (ws.h1, ws.h2, ws.s)):
            ops.linear_forward(h, weight, bias, kind, slope, z, a)
            h = a
        return as_given(ws.s, one)

    @staticmethod
    def _embedding(blocks):
        """The noise-level path's blocks of ``blocks`` (parameter or gradient views), in the
        order of numpy_ref.score_embedding_forward."""
        return [blocks[name] for name in _EMBEDDING]

    def _x_path(self):
        """(weight, bias, activation, slope) of the x path's layers, the biases beff folded in."""
        w, leaky = self._w, kernels.LEAKY_RELU
        return ((w["fc_1.weight"], w["fc_1.bias"], leaky, SLOPE_X),
                (w["fc_2.x"], self._rows["beff2_bias"], leaky, SLOPE),
                (w["fc_3.x"], self._rows["beff3_bias"], kernels.IDENTITY, 0.0))

    def _backward(self, grad_s, need_grad_x):
        """Backprop dL/ds through the last ``_forward``; overwrites ``grads``, returns dL/dx.

        The x path's bias gradients dL/dbeff are the batch sums of dL/dz2 and dL/ds; they go
        back through the two identity layers to e and leaky(e), and from both through the
        embedding (numpy_ref.score_embedding_backward, one call).
        """
        ops, g, row = self.ops, self._g, self._rows
        ws, x, features, one = self._last
        grad_s, _ = with_replica_axis(grad_s)
        weight_grads = (g["fc_1.weight"], g["fc_2.x"], g["fc_3.x"])
        bias_grads = (g["fc_1.bias"], row["grad_beff2_bias"], row["grad_beff3_bias"])
        inputs, grad_inputs = (x, ws.h1, ws.h2), (ws.grad_x, ws.grad_h1, ws.grad_h2)
        grad_a = grad_s
        for k, ((weight, _, kind, slope), z, a) in reversed(list(enumerate(zip(
                self._x_path(), (ws.z1, ws.z2, ws.z3), (ws.h1, ws.h2, ws.s))))):
            need_x = k > 0 or need_grad_x
            ops.linear_backward(inputs[k], weight, z, a, grad_a, kind, slope,
                                (ws.grad_z1, ws.grad_z2, ws.grad_z3)[k], weight_grads[k],
                                bias_grads[k], grad_inputs[k] if need_x else None, False, need_x)
            grad_a = grad_inputs[k]
        ops.score_embedding_backward(features, self._embedding(self._w), SLOPE,
                                     [row[name] for name, _ in _PATH], row["grad_beff2"],
                                     row["grad_beff3"], [row[f"grad_{name}"] for name, _ in _PATH],
                                     self._embedding(g))
        return as_given(ws.grad_x, one) if need_grad_x else None

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
