"""A multilayer perceptron with hand-written backprop, forward-mode tangents and spectral norm.

Layer k (k = 0 .. L-1) computes ``a_k = act_k(W_k h_k + b_k)``. Its input ``h_k`` is built
from the earlier *nodes* (node 0 is the network input x, node k+1 is a_k) by the skip style:

``plain``      h_k = node k                                   (a feed-forward chain)
``resnet``     h_k = node k + h_{k-1}  when hidden layer k-1 (not the first) does not narrow
               its input, else node k                          (additive skips, He et al. 2016;
               a narrower h_{k-1} is zero-padded, the parameter-free "option A" shortcut)
``densenet``   h_k = concat(node 0, node 1, ..., node k)       (concatenation skips, Huang et al. 2017)

Each h_k is written as a list of *segments* (:func:`npgen.nn.layers.layer_segments`) laid side
by side, each segment the sum of some nodes (a narrower node adds into the segment's leading
columns); that one description drives the forward pass, the backward pass (the gradient of a
segment is added to every node in it) and the tangent pass alike.

With ``spectral_norm=True`` every layer uses W_k / sigma_k, sigma_k = u_k . W_k v_k, with one
power iteration per forward in training mode, as ``torch.nn.utils.spectral_norm`` does.
All parameters live in one flat buffer ``params`` (gradients in ``grads``), so that one
optimizer call updates a whole network.
"""

import numpy as np

from .. import kernels
from ..util.checks import check_bool, check_choice, check_matrix, check_number, check_seed, dtype_of
from .files import build_network, read_network_file, write_network_file
from .layers import SKIP_STYLES, layer_segments, segment_spans
from .layout import ParameterLayout, ReplicatedParameters, as_given, with_replica_axis

#: The most parameters one network may have (2^28: 1 GiB of float32 weights, and as much
#: again for their gradients); checked before anything is allocated. The paper's largest
#: network, the discriminator of a 7-layer GAN, has about 45 million.
MAX_PARAMS = 2 ** 28


class _Workspace:
    """Arrays for one batch size, allocated once on the network's backend and reused by every
    later call; each has the replica axis first: (R, n, width)."""

    def __init__(self, net, n):
        self.n = n
        self.z = net._activations(n, net.sizes[1:])
        self.a = net._activations(n, net.sizes[1:])
        self.h = net._activations(n, net.fan_in, skip=[net._aliased(k) for k in range(net.n_layers)])
        self.grad_z = net._activations(n, net.sizes[1:])
        self.grad_h = net._activations(n, net.fan_in, skip=[s is not None for s in net._sole_input])
        self.grad_node = net._activations(n, net.sizes)
        self.tangents = None

    def with_tangents(self, net):
        """Allocate (once) the extra arrays a Jacobian-vector product and its backward need."""
        if self.tangents is None:
            n, L = self.n, net.n_layers
            self.tangents = {
                "dz": net._activations(n, net.sizes[1:]),
                "da": net._activations(n, net.sizes[1:]),
                "dh": net._activations(n, net.fan_in, skip=[net._aliased(k) for k in range(L)]),
                "grad_dz": net._activations(n, net.sizes[1:]),
                "grad_dh": net._activations(n, net.fan_in,
                                            skip=[s is not None for s in net._sole_input]),
                "grad_dnode": net._activations(n, net.sizes),
            }
        return self.tangents


class MLP(ReplicatedParameters):
    """Multilayer perceptron ``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` (see the module doc).

    Parameters
    ----------
    sizes : sequence of int
        Widths of the input, the hidden layers and the output, e.g. ``[1, 128, 256, 1]``.
    activation : str
        Hidden activation: 'identity', 'relu', 'leaky_relu', 'silu', 'tanh' or 'sigmoid'.
    slope : float
        Negative slope of 'leaky_relu' (ignored by the others).
    spectral_norm : bool
        Divide every weight by its spectral-norm estimate (one power iteration per training forward).
    skip : str
        'plain', 'resnet' or 'densenet'.
    output_activation : str
        Activation of the last layer ('identity' by default: networks output logits or values).
    dtype : str
        'float32' (default) or 'float64'.
    seed : int
        Seed of the initialization: weights and biases uniform in +-1/sqrt(fan_in), as
        torch.nn.Linear; spectral-norm vectors u, v normalized standard normals, as torch.
    backend : str or None
        Kernel backend: 'cpu' (numba, default), 'numpy' (reference); None reads $NPGEN_BACKEND.
    """

    #: The constructor arguments a network file records (see :mod:`npgen.nn.files`).
    FILE_FIELDS = ("sizes", "activation", "slope", "spectral_norm", "skip", "output_activation",
                   "dtype", "seed")

    def __init__(self, sizes, activation="leaky_relu", slope=0.2, spectral_norm=False,
                 skip="plain", output_activation="identity", dtype="float32", seed=0,
                 backend=None):
        sizes = list(sizes) if isinstance(sizes, (list, tuple)) else sizes
        if not isinstance(sizes, list) or len(sizes) < 2 or not all(
                isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in sizes):
            raise ValueError(f"sizes must be a list of at least two positive integers, got {sizes!r}")
        self.sizes = tuple(int(s) for s in sizes)
        self.activation = activation
        self.output_activation = output_activation
        self.activation_codes = [kernels.activation_code(activation)] * (len(sizes) - 2) + [
            kernels.activation_code(output_activation)]
        self.slope = check_number("slope", slope)
        self.spectral_norm = check_bool("spectral_norm", spectral_norm)
        self.skip = check_choice("skip", skip, SKIP_STYLES)
        self.dtype = dtype_of(dtype)
        self.seed = check_seed(seed)
        self.n_layers = len(self.sizes) - 1
        self.segments = layer_segments(self.sizes, self.skip)
        #: Columns [start, stop) of each segment of each layer's input (laid out once).
        self.spans = [segment_spans(segs, self.sizes) for segs in self.segments]
        self.fan_in = [spans[-1][1] for spans in self.spans]
        self.layout = ParameterLayout(
            [block for k, (out, fan_in) in enumerate(zip(self.sizes[1:], self.fan_in))
             for block in ((f"{k}.weight", (out, fan_in)), (f"{k}.bias", (out,)))])
        if self.layout.size > MAX_PARAMS:
            raise ValueError(f"sizes {list(self.sizes)} ask for {self.layout.size:.3g} parameters;"
                             f" an npgen network has at most {MAX_PARAMS} (2^28)")
        self._sole_input = self._sole_inputs()
        self._place(kernels.backend_name(backend), 1)
        self._initialize(np.random.default_rng(self.seed))

    # ----------------------------------------------------------------- parameters

    def _place(self, backend, replicas):
        super()._place(backend, replicas)
        self.training = True
        self._grads_fresh = True

    def _allocate_state(self):
        """Spectral norm's per-replica state: u, v, W / sigma, its gradient and sigma."""
        if self.spectral_norm:
            R, zeros = self.replicas, self.ops.zeros
            shapes = list(zip(self.sizes[1:], self.fan_in))
            self._u = [zeros((R, out), self.dtype) for out, _ in shapes]
            self._v = [zeros((R, fan_in), self.dtype) for _, fan_in in shapes]
            self._W_sn = [zeros((R, out, fan_in), self.dtype) for out, fan_in in shapes]
            self._grad_W_sn = [zeros((R, out, fan_in), self.dtype) for out, fan_in in shapes]
            self._sigma = [self.ops.to_device(np.ones(R)) for _ in shapes]

    def _replica_state(self):
        return ("_u", "_v") if self.spectral_norm else ()

    def _bind_parameters(self):
        """The (R, *shape) views of every block of ``params`` and ``grads``, and for a network of
        one host replica the 2-D views users read (``weights``, ``biases``, ``sn_u``, ...)."""
        R, L = self.replicas, self.n_layers
        p, g = self.layout.views(self.params, R), self.layout.views(self.grads, R)
        self._W = [p[f"{k}.weight"] for k in range(L)]
        self._b = [p[f"{k}.bias"] for k in range(L)]
        self._grad_W = [g[f"{k}.weight"] for k in range(L)]
        self._grad_b = [g[f"{k}.bias"] for k in range(L)]
        if self.on_host:
            self.weights, self.biases = [W[0] for W in self._W], [b[0] for b in self._b]
            self.weight_grads = [W[0] for W in self._grad_W]
            self.bias_grads = [b[0] for b in self._grad_b]
            if self.spectral_norm:
                self.sn_u, self.sn_v = [u[0] for u in self._u], [v[0] for v in self._v]
        else:  # replicas are read through their one-replica networks (copy_to)
            self.weights = self.biases = self.weight_grads = self.bias_grads = None
            self.sn_u = self.sn_v = None

    def _initialize(self, rng):
        for W, b in zip(self.weights, self.biases):
            bound = 1.0 / np.sqrt(W.shape[1])
            W[...] = rng.uniform(-bound, bound, W.shape)
            b[...] = rng.uniform(-bound, bound, b.shape)
        if self.spectral_norm:
            for u, v in zip(self.sn_u, self.sn_v):
                for vec in (u, v):
                    draw = rng.standard_normal(vec.shape)
                    vec[...] = draw / max(np.linalg.norm(draw), 1e-12)

    def effective_weight(self, k):
        """The weight layer k applies in evaluation mode, in float64: W_k, or W_k / (u . W_k v)
        with spectral norm."""
        W = self.weights[k].astype(np.float64)
        if not self.spectral_norm:
            return W
        u, v = self.sn_u[k].astype(np.float64), self.sn_v[k].astype(np.float64)
        return W / float(u @ (W @ v))

    def zero_grad(self):
        """Set the parameter gradients to zero: the next backward writes them instead of adding
        to them. On a device, where nothing reads them in between, only that (no fill is
        launched: every backward writes every gradient)."""
        if not self.ops.on_device:
            self.grads[...] = 0
        self._grads_fresh = True

    def train(self, mode=True):
        """Training mode (power iteration at every forward) or evaluation mode (``mode=False``)."""
        self.training = check_bool("mode", mode)
        return self

    def eval(self):
        """Evaluation mode: spectral norm uses the stored u, v without iterating."""
        return self.train(False)

    # ----------------------------------------------------------------- wiring helpers

    def _aliased(self, k):
        """Layer k reads one node as it is (no copy into an input buffer)."""
        return len(self.segments[k]) == 1 and len(self.segments[k][0]) == 1

    def _sole_inputs(self):
        """For each layer k: the node it reads as is, when layer k is that node's only reader
        (its input gradient can then be written straight into the node's gradient); else None."""
        readers = [0] * (self.n_layers + 1)
        for segs in self.segments:
            for seg in segs:
                for j in seg:
                    readers[j] += 1
        return [self.segments[k][0][0] if self._aliased(k) and readers[self.segments[k][0][0]] == 1
                else None for k in range(self.n_layers)]

    def _activations(self, n, widths, skip=None):
        """Zero arrays (R, n, w) on the backend for each width w (None where ``skip[i]``)."""
        return [None if skip is not None and skip[i] else
                self.ops.zeros((self.replicas, n, w), self.dtype) for i, w in enumerate(widths)]

    def workspace_size(self, n, tangents=False):
        """Elements one replica's workspace of n rows holds: per layer z, a, grad_z, the node
        gradients, the input buffers of layers that build their input and the input gradients
        of layers that do not write into a node's own; all twice with the tangent path."""
        inputs = (sum(w for k, w in enumerate(self.fan_in) if not self._aliased(k))
                  + sum(w for w, sole in zip(self.fan_in, self._sole_input) if sole is None))
        return (2 if tangents else 1) * n * (3 * sum(self.sizes[1:]) + sum(self.sizes) + inputs)

    def state_size(self):
        """Elements of one replica's spectral-norm state (W / sigma and its gradient, u, v, and
        sigma in float64 counted as two items of the network's float32), 0 without it."""
        if not self.spectral_norm:
            return 0
        weights = sum(o * i for o, i in zip(self.sizes[1:], self.fan_in))
        return 2 * weights + sum(self.sizes[1:]) + sum(self.fan_in) + 2 * self.n_layers

    def _workspace(self, n):
        ws = self._workspaces.get(n)
        if ws is None:
            ws = self._workspaces[n] = _Workspace(self, n)
        return ws

    def _gather(self, k, nodes, buffers):
        """Build the input h_k of layer k from ``nodes`` (into ``buffers[k]`` unless aliased):
        each segment's first node is written into its column block (zero-padded), the others
        are added."""
        if self._aliased(k):
            return nodes[self.segments[k][0][0]]
        h = buffers[k]
        for (start, stop), seg in zip(self.spans[k], self.segments[k]):
            for position, j in enumerate(seg):
                self.ops.put_columns(nodes[j], h, start, stop - start, position > 0)
        return h

    def _scatter(self, k, grad_h, grad_nodes, written):
        """Add the gradient of layer k's input to the gradient of every node it was built from
        (write it to a node not ``written`` yet, and mark it written)."""
        for (start, _), seg in zip(self.spans[k], self.segments[k]):
            for j in seg:
                self.ops.take_columns(grad_h, start, grad_nodes[j], written[j])
                written[j] = True

    def _layer_weights(self):
        """The weights the layers use in this pass: W_k, or W_k / sigma_k with spectral norm,
        every layer's power iteration (in training mode) in one call."""
        if not self.spectral_norm:
            return self._W
        self.ops.spectral_norm_forward_layers(self._W, self._u, self._v, 1 if self.training else 0,
                                              self._W_sn, self._sigma)
        return self._W_sn

    def _used_weight(self, k):
        """The weight layer k used in the last pass (W / sigma with spectral norm)."""
        return self._W_sn[k] if self.spectral_norm else self._W[k]

    def _param_grad_targets(self, k):
        """Where the kernel writes layer k's weight gradient, and whether it adds to its targets.

        The kernel's one ``accumulate`` flag covers the weight and the bias gradient alike, and
        after a backward without ``zero_grad`` both must be added to. With spectral norm the
        kernel's weight target is dL/dW_sn, a scratch buffer that then starts from zero:
        :meth:`_finish_weight_grads` adds its contribution to dL/dW.
        """
        accumulate = not self._grads_fresh
        if self.spectral_norm:
            if accumulate:
                self._grad_W_sn[k][...] = 0
            return self._grad_W_sn[k], accumulate
        return self._grad_W[k], accumulate

    def _finish_weight_grads(self):
        """With spectral norm, dL/dW of every layer from its dL/dW_sn, in one call; then the
        gradients are no longer fresh (a later backward adds to them)."""
        if self.spectral_norm:
            self.ops.spectral_norm_backward_layers(self._W, self._u, self._v, self._sigma,
                                                   self._grad_W_sn, self._grad_W,
                                                   not self._grads_fresh)
        self._grads_fresh = False

    # ----------------------------------------------------------------- passes (unchecked)
    #
    # The passes take and return arrays with the replica axis first, (R, n, width); a network
    # of one replica also takes (n, width) arrays and then returns (n, width) views.

    def _forward(self, x):
        """Forward pass without argument checks; returns a view valid until the next call."""
        x, one = with_replica_axis(x)
        ws = self._workspace(x.shape[1])
        nodes = [x] + ws.a
        weights = self._layer_weights()
        for k in range(self.n_layers):
            h = self._gather(k, nodes, ws.h)
            self.ops.linear_forward(h, weights[k], self._b[k],
                                    self.activation_codes[k], self.slope, ws.z[k], ws.a[k])
        self._last = (ws, nodes, False, one)
        return as_given(ws.a[-1], one)

    def _backward(self, grad_out, need_grad_in=True, param_grads=True):
        """Backward pass of the last ``_forward``; returns dL/dx.

        Adds the parameter gradients to ``grads``, unless ``param_grads`` is False: then only
        the gradient is passed through to the input (``need_grad_in`` must be True).
        """
        ws, nodes, _, one = self._last
        grad_out, _ = with_replica_axis(grad_out)
        written = [False] * (self.n_layers + 1)
        grad_nodes = ws.grad_node
        for k in reversed(range(self.n_layers)):
            grad_a = grad_out if k == self.n_layers - 1 else grad_nodes[k + 1]
            need_x = k > 0 or need_grad_in
            sole = self._sole_input[k]
            grad_h = ws.grad_h[k] if sole is None else grad_nodes[sole]
            if param_grads:
                grad_W, accumulate = self._param_grad_targets(k)
                self.ops.linear_backward(
                    self._gathered(k, nodes, ws.h), self._used_weight(k), ws.z[k], ws.a[k],
                    grad_a, self.activation_codes[k], self.slope, ws.grad_z[k], grad_W,
                    self._grad_b[k], grad_h if need_x else None, accumulate, need_x)
            else:
                self.ops.linear_backward_input(
                    self._used_weight(k), ws.z[k], ws.a[k], grad_a, self.activation_codes[k],
                    self.slope, ws.grad_z[k], grad_h)
            if need_x and sole is None:
                self._scatter(k, grad_h, grad_nodes, written)
        if param_grads:
            self._finish_weight_grads()
        return as_given(grad_nodes[0], one) if need_grad_in else None

    def _gathered(self, k, nodes, buffers):
        """Layer k's input as built by the last forward (no recomputation)."""
        return nodes[self.segments[k][0][0]] if self._aliased(k) else buffers[k]

    def _jvp(self, x, dx):
        """Forward pass with tangent dx; returns views (y, dy) = (g(x), Jg(x) dx)."""
        x, one = with_replica_axis(x)
        dx, _ = with_replica_axis(dx)
        ws = self._workspace(x.shape[1])
        tan = ws.with_tangents(self)
        nodes, dnodes = [x] + ws.a, [dx] + tan["da"]
        weights = self._layer_weights()
        for k in range(self.n_layers):
            h = self._gather(k, nodes, ws.h)
            dh = self._gather(k, dnodes, tan["dh"])
            self.ops.linear_jvp(h, dh, weights[k], self._b[k],
                                self.activation_codes[k], self.slope,
                                ws.z[k], ws.a[k], tan["dz"][k], tan["da"][k])
        self._last = (ws, nodes, dnodes, one)
        return as_given(ws.a[-1], one), as_given(tan["da"][-1], one)

    def _jvp_backward(self, grad_y, grad_dy, need_grad_in=True):
        """Backward of the last ``_jvp`` through both the primal and the tangent path."""
        ws, nodes, dnodes, one = self._last
        if dnodes is False:
            raise RuntimeError("jvp_backward needs a preceding jvp, not a forward")
        grad_y, _ = with_replica_axis(grad_y)
        grad_dy, _ = with_replica_axis(grad_dy)
        tan = ws.tangents
        written = [False] * (self.n_layers + 1)
        dwritten = [False] * (self.n_layers + 1)
        for k in reversed(range(self.n_layers)):
            last = k == self.n_layers - 1
            grad_a = grad_y if last else ws.grad_node[k + 1]
            grad_da = grad_dy if last else tan["grad_dnode"][k + 1]
            need_x = k > 0 or need_grad_in
            grad_W, accumulate = self._param_grad_targets(k)
            sole = self._sole_input[k]
            grad_h, grad_dh = ((ws.grad_h[k], tan["grad_dh"][k]) if sole is None
                               else (ws.grad_node[sole], tan["grad_dnode"][sole]))
            self.ops.linear_jvp_backward(
                self._gathered(k, nodes, ws.h), self._gathered(k, dnodes, tan["dh"]),
                self._used_weight(k), ws.z[k], ws.a[k], tan["dz"][k], grad_a, grad_da,
                self.activation_codes[k], self.slope, ws.grad_z[k], tan["grad_dz"][k],
                grad_W, self._grad_b[k], grad_h, grad_dh, accumulate, need_x)
            if need_x and sole is None:
                self._scatter(k, grad_h, ws.grad_node, written)
                self._scatter(k, grad_dh, tan["grad_dnode"], dwritten)
        self._finish_weight_grads()
        if need_grad_in:
            return as_given(ws.grad_node[0], one), as_given(tan["grad_dnode"][0], one)
        return None, None

    # ----------------------------------------------------------------- public API (checked)

    def forward(self, x):
        """Return g(x) for x of shape (n, sizes[0]); keeps what backward needs."""
        x = check_matrix("x", x, self.sizes[0], self.dtype)
        return self._forward(x).copy()

    __call__ = forward

    def backward(self, grad_out, need_grad_in=True):
        """Backprop dL/dy (shape (n, sizes[-1])) through the last forward.

        Adds dL/dtheta to ``grads`` (call ``zero_grad`` first) and returns dL/dx.
        """
        if self._last is None:
            raise RuntimeError("backward needs a preceding forward")
        grad_out = check_matrix("grad_out", grad_out, self.sizes[-1], self.dtype)
        if grad_out.shape[0] != self._last[0].n:
            raise ValueError(f"grad_out must have {self._last[0].n} rows like the last forward's"
                             f" input, got {grad_out.shape[0]}")
        grad_in = self._backward(grad_out, need_grad_in)
        return None if grad_in is None else grad_in.copy()

    def jvp(self, x, dx):
        """Return (g(x), J_g(x) dx): the output and its directional derivative along dx."""
        x = check_matrix("x", x, self.sizes[0], self.dtype)
        dx = check_matrix("dx", dx, self.sizes[0], self.dtype)
        if dx.shape != x.shape:
            raise ValueError(f"dx must have the shape of x {x.shape}, got {dx.shape}")
        y, dy = self._jvp(x, dx)
        return y.copy(), dy.copy()

    def jvp_backward(self, grad_y, grad_dy, need_grad_in=True):
        """Backprop cotangents of (y, dy) from the last ``jvp``; returns (dL/dx, dL/ddx)."""
        if self._last is None or self._last[2] is False:
            raise RuntimeError("jvp_backward needs a preceding jvp")
        n = self._last[0].n
        grads = [check_matrix(name, g, self.sizes[-1], self.dtype)
                 for name, g in (("grad_y", grad_y), ("grad_dy", grad_dy))]
        if any(g.shape[0] != n for g in grads):
            raise ValueError(f"grad_y and grad_dy must have {n} rows like the last jvp's input")
        gx, gdx = self._jvp_backward(grads[0], grads[1], need_grad_in)
        return (None, None) if gx is None else (gx.copy(), gdx.copy())

    # ----------------------------------------------------------------- persistence

    def config(self):
        """The constructor arguments, as a JSON-able dict."""
        return {"sizes": list(self.sizes), "activation": self.activation, "slope": self.slope,
                "spectral_norm": self.spectral_norm, "skip": self.skip,
                "output_activation": self.output_activation, "dtype": self.dtype.name,
                "seed": self.seed}

    def state_dict(self):
        """Arrays under torch.nn.Sequential(Linear, act, Linear, ...) names.

        Linear layer k is Sequential entry 2k: '0.weight', '0.bias', '2.weight', ...
        With spectral norm the names are those of torch.nn.utils.spectral_norm:
        '0.weight_orig', '0.weight_u', '0.weight_v' (and '0.bias').
        """
        state = {}
        for k in range(self.n_layers):
            name = str(2 * k)
            if self.spectral_norm:
                state[f"{name}.weight_orig"] = self.weights[k].copy()
                state[f"{name}.weight_u"] = self.sn_u[k].copy()
                state[f"{name}.weight_v"] = self.sn_v[k].copy()
            else:
                state[f"{name}.weight"] = self.weights[k].copy()
            state[f"{name}.bias"] = self.biases[k].copy()
        return state

    def load_state_dict(self, state):
        """Copy arrays from ``state`` (names and shapes as in :meth:`state_dict`)."""
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        if missing:
            raise ValueError(f"state is missing {missing[:3]} for this network; expected keys {sorted(expected)}")
        targets = {}
        for k in range(self.n_layers):
            name = str(2 * k)
            targets[f"{name}.weight_orig" if self.spectral_norm else f"{name}.weight"] = self.weights[k]
            targets[f"{name}.bias"] = self.biases[k]
            if self.spectral_norm:
                targets[f"{name}.weight_u"] = self.sn_u[k]
                targets[f"{name}.weight_v"] = self.sn_v[k]
        for key, target in targets.items():
            value = np.asarray(state[key])
            if value.shape != target.shape or value.dtype.kind != "f":
                raise ValueError(f"state[{key!r}] must be a float array of shape {target.shape},"
                                 f" got {value.dtype.name} {value.shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"state[{key!r}] contains NaN or inf values")
            target[...] = value

    def save(self, path):
        """Write the network to ``path`` (.npz): its state_dict plus its configuration
        (kind "MLP", see :mod:`npgen.nn.files`)."""
        write_network_file(path, "MLP", self.config(), self.state_dict())

    @classmethod
    def load(cls, path, backend=None):
        """Read a network written by :meth:`save` (loaded with ``allow_pickle=False``).

        Any other file, a score network's included, is refused in one sentence (see
        :func:`npgen.nn.files.read_network_file`; :func:`npgen.nn.load_network` reads both).
        """
        return build_network(cls, path, *read_network_file(path, ("MLP",)), backend)
