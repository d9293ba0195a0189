"""Batched replicas: R runs of one architecture trained in lockstep on the cuda backend.

The paper's runs are small and independent: many seeds and many values of m, one
architecture. :func:`fit_many` trains R of them at once. Every network becomes R copies on the
device, every array gains a leading replica axis, every product is one batched product and
every elementwise pass one launch (:mod:`npgen.kernels.cuda`).

What a replica shares with the same model trained alone on CPU, and what not:

* its initialization: the replicas are ordinary CPU models (``GAN(seed=...)``, ``VAE(...)``,
  ``SGM(...)``), whose weights
  are copied to the device, and copied back into them when training ends, so that a batched
  run is saved, sampled and measured exactly like a CPU run;
* its minibatches: each epoch's shuffle is drawn from the model's own stream, as on CPU (and,
  for an SGM, the noise level of each of the epoch's steps, drawn after the shuffle);
* not its latents and noise: they are drawn on the device, from xoroshiro128+ states seeded
  with the model's seed alone (:func:`npgen.kernels.cuda.rng_states`), so a run is the same
  whatever R it is batched with, but not the CPU run of that seed.

Every replica keeps its own losses. A replica whose loss stops being finite or runs away
(:data:`npgen.models.training.RUNAWAY_FACTOR`) is reported failed with the sentence a CPU run
would raise; in lockstep it cannot stop alone, and the others are not affected by it.

Batched training takes the models of the univariate study: GANs and VAEs with plain, resnet or
densenet networks (any depth; a GAN's generator with or without spectral norm and with or
without the gradient penalty, BCE loss, generator step first) and SGMs (either weighting, any
noise levels). Other models and options (a GAN's hinge loss, the discriminator step first) are
refused in one sentence by :func:`check_batchable`.
"""

import math
import time

import numpy as np

from .. import kernels
from ..util.checks import check_number
from ..nn.layers import segment_width
from ..nn.score import EMBED_WIDTHS, FEATURES, HIDDEN_WIDTHS, SLOPE, SLOPE_X, sinusoidal_features
from .gan import GAN, PENALTY_WEIGHT
from .sgm import SGM, WEIGHT_POWERS
from .training import TrainingDiverged, check_losses
from .vae import VAE

#: The models fit_many trains.
BATCHABLE = (GAN, VAE, SGM)


def check_batchable(models):
    """Raise ValueError (one sentence) unless ``models`` are untrained GANs, VAEs or SGMs that
    fit_many can train together: one kind, one architecture and one set of hyperparameters
    (seeds differ freely, and so do the targets of GANs that all have the gradient penalty)."""
    if not isinstance(models, (list, tuple)) or not models:
        raise ValueError(f"models must be a non-empty list of GANs, VAEs or SGMs, got {models!r}")
    for model in models:
        if not isinstance(model, BATCHABLE):
            raise ValueError("fit_many trains the GANs, VAEs and SGMs of the univariate study; got"
                             f" a {type(model).__name__} (train it on CPU with its fit)")
        if isinstance(model, SGM):
            if model.mean is not None:
                raise ValueError("fit_many trains untrained models; an SGM was already trained")
            continue
        if isinstance(model, GAN) and (model.loss != "bce" or model.discriminator_first):
            raise ValueError("fit_many trains GANs with the BCE loss, generator step first;"
                             f" got loss={model.loss!r},"
                             f" discriminator_first={model.discriminator_first!r}")
        if model.trained:
            raise ValueError("fit_many trains untrained models; a model was already trained")
    kind = type(models[0])
    shape = _shared_settings(models[0])
    for model in models[1:]:
        if type(model) is not kind:
            raise ValueError(f"models batched together must be of one kind, got {kind.__name__}"
                             f" and {type(model).__name__}")
        other = _shared_settings(model)
        if other != shape:
            differ = sorted(k for k in shape if shape[k] != other.get(k))
            raise ValueError(f"models batched together must share every setting but the seed"
                             f" (and the penalty's target); these differ: {differ}")
    return models


def _shared_settings(model):
    """The settings the models of one batch share: the configuration but the seed and, of a
    GAN with the gradient penalty, its target (only whether it has one)."""
    settings = {key: value for key, value in model.config().items() if key != "seed"}
    if settings.get("gp_lipschitz") is not None:
        settings["gp_lipschitz"] = "any target"
    return settings


def replica_bytes(model, batch_size, n_data):
    """An upper estimate of the device bytes one replica of ``model`` takes in
    :func:`fit_many`: for each network its parameters, gradients and Adam's two moments,
    with spectral norm the normalized weights, their gradients, u, v and sigma, and per layer
    the z, a, grad_z and node-gradient arrays of each batch it runs (B rows, and for a GAN's
    discriminator 2B rows more: it runs the generator's B fakes and its own 2B rows), with
    skip connections the layers' input buffers and their gradients, all as much again for the
    tangent path of a generator with the gradient penalty; plus the training data, the batch
    buffers and the RNG states. An SGM's
    score network counts its x path's four arrays per layer and, per noise level, its
    features."""
    itemsize = np.dtype(model.dtype).itemsize
    if isinstance(model, SGM):
        net = model.score
        total = (n_data + 4 * net.n_params + 4 * batch_size * (sum(HIDDEN_WIDTHS) + 2)
                 + model.sigmas.size * (FEATURES + 1) + 8 * sum(HIDDEN_WIDTHS + EMBED_WIDTHS))
        return itemsize * total + 8 * n_data + 16 * 64
    total = n_data * model.data_dim + 8 * batch_size * (model.latent_dim + model.data_dim + 2)
    for name, net in model.networks().items():
        rows = 3 * batch_size if name == "discriminator" else batch_size
        weights = sum(o * i for o, i in zip(net.sizes[1:], net.fan_in))
        total += 4 * net.n_params
        if net.spectral_norm:  # sigma in float64: two float32 items
            total += 2 * weights + sum(net.sizes[1:]) + sum(net.fan_in) + 2 * net.n_layers
        inputs = (sum(w for k, w in enumerate(net.fan_in) if not net._aliased(k))
                  + sum(w for w, sole in zip(net.fan_in, net._sole_input) if sole is None))
        paths = 2 if name == "generator" and model.gp_lipschitz is not None else 1
        total += paths * rows * (3 * sum(net.sizes[1:]) + sum(net.sizes) + inputs)
    return itemsize * total + 8 * n_data + 16 * 64


def _laid_end_to_end(shapes):
    """(offset, shape) of blocks of these shapes laid one after the other in a flat buffer."""
    offsets = np.cumsum([0] + [math.prod(shape) for shape in shapes])
    return [(int(offset), shape) for offset, shape in zip(offsets, shapes)]


class _DeviceParameters:
    """R copies of one network's flat parameter buffer on the device, and its gradients.

    The CPU buffer is a sequence of blocks (``segments``: offset and shape of each weight and
    bias, in order). The device buffer holds the same blocks in the same order, each with the
    replica axis inside: block k is one contiguous (R, *shape_k) array, so that a layer's
    weights are one batched operand and one Adam launch updates every replica's network.
    """

    def __init__(self, flats, segments, dtype, ck):
        self.ck, self.R, self.dtype, self.segments = ck, len(flats), dtype, list(segments)
        parts = [np.stack([flat[o:o + math.prod(shape)] for flat in flats]).ravel()
                 for o, shape in self.segments]
        self.params = ck.to_device(np.concatenate(parts).astype(dtype))
        self.grads = ck.to_device(np.zeros(self.params.shape, dtype))
        self.blocks, self.grad_blocks = self._views(self.params), self._views(self.grads)

    def _views(self, buffer):
        views, start = [], 0
        for _, shape in self.segments:
            size = self.R * math.prod(shape)
            views.append(buffer[start:start + size].reshape((self.R, *shape)))
            start += size
        return views

    def copy_to(self, flats):
        """Write the device parameters back into the replicas' flat CPU buffers."""
        host = self.ck.to_host(self.params)
        start = 0
        for offset, shape in self.segments:
            size = math.prod(shape)
            block = host[start:start + self.R * size].reshape(self.R, size)
            for r, flat in enumerate(flats):
                flat[offset:offset + size] = block[r]
            start += self.R * size


class _DeviceNetwork:
    """R copies of one MLP (:class:`npgen.MLP`, any skip style) on the device: its parameters
    W_0 (R, out, in), b_0 (R, out), W_1, ... (:class:`_DeviceParameters`), and its forward,
    backward, jvp and jvp-backward passes.

    A layer's input is built from the earlier nodes as the CPU network builds it, from the
    same segments (:func:`npgen.nn.layers.layer_segments`): a layer that reads one node as it
    is reads it in place, any other gets an input buffer h_k (R, n, fan_in_k) whose column
    blocks are filled with :func:`npgen.kernels.cuda.put_columns`; backward sends each block's
    gradient back to its nodes with :func:`npgen.kernels.cuda.take_columns`, or writes it
    straight into the node's gradient when the layer is that node's only reader. The tangent
    path of a jvp is wired the same way, in its own buffers.
    """

    def __init__(self, nets, ck):
        first = nets[0]
        self.ck, self.R, self.nets = ck, len(nets), nets
        self.sizes, self.codes, self.slope = first.sizes, first.activation_codes, first.slope
        self.spectral_norm, self.dtype = first.spectral_norm, first.dtype
        self.segments, self.fan_in = first.segments, first.fan_in
        self.aliased = [first._aliased(k) for k in range(first.n_layers)]
        self.sole_input = first._sole_input
        self.layout = [((out, fan_in), (out,)) for out, fan_in in
                       zip(first.sizes[1:], first.fan_in)]
        shapes = [shape for layer in self.layout for shape in layer]
        self.parameters = _DeviceParameters([net.params for net in nets], _laid_end_to_end(shapes),
                                            self.dtype, ck)
        self.weights = self.parameters.blocks[0::2]
        self.biases = self.parameters.blocks[1::2]
        self.weight_grads = self.parameters.grad_blocks[0::2]
        self.bias_grads = self.parameters.grad_blocks[1::2]
        if self.spectral_norm:
            R = self.R
            self.sn_u = [ck.to_device(np.stack([net.sn_u[k] for net in nets]))
                         for k in range(len(self.layout))]
            self.sn_v = [ck.to_device(np.stack([net.sn_v[k] for net in nets]))
                         for k in range(len(self.layout))]
            self.sn_weights = [ck.to_device(np.zeros((R, *w), self.dtype)) for w, _ in self.layout]
            self.sn_weight_grads = [ck.to_device(np.zeros((R, *w), self.dtype))
                                    for w, _ in self.layout]
            self.sn_sigma = [ck.to_device(np.ones(R)) for _ in self.layout]
        self._workspaces = {}

    def copy_to_models(self):
        """Write the device weights (and spectral-norm vectors) back into the CPU networks."""
        self.parameters.copy_to([net.params for net in self.nets])
        if self.spectral_norm:
            for k in range(len(self.layout)):
                for vectors, device in (("sn_u", self.sn_u[k]), ("sn_v", self.sn_v[k])):
                    values = self.ck.to_host(device)
                    for r, net in enumerate(self.nets):
                        getattr(net, vectors)[k][...] = values[r]

    def _workspace(self, n):
        if n not in self._workspaces:
            R, dt = self.R, self.dtype
            layers = [(R, n, w) for w in self.sizes[1:]]
            inputs = [(R, n, w) for w in self.fan_in]
            self._workspaces[n] = {
                "z": [self.ck.to_device(np.zeros(s, dt)) for s in layers],
                "a": [self.ck.to_device(np.zeros(s, dt)) for s in layers],
                "grad_z": [self.ck.to_device(np.zeros(s, dt)) for s in layers],
                "grad_node": [self.ck.to_device(np.zeros((R, n, w), dt)) for w in self.sizes],
                "h": [None if aliased else self.ck.to_device(np.zeros(s, dt))
                      for s, aliased in zip(inputs, self.aliased)],
                "grad_h": [None if sole is not None else self.ck.to_device(np.zeros(s, dt))
                           for s, sole in zip(inputs, self.sole_input)],
            }
        return self._workspaces[n]

    def _gather(self, k, nodes, buffers):
        """Build the input h_k of layer k from ``nodes`` (into ``buffers[k]`` unless aliased)."""
        if self.aliased[k]:
            return nodes[self.segments[k][0][0]]
        h, start = buffers[k], 0
        for segment in self.segments[k]:
            width = segment_width(self.sizes, segment)
            for position, j in enumerate(segment):
                self.ck.put_columns(nodes[j], h, start, width, position > 0)
            start += width
        return h

    def _gathered(self, k, nodes, buffers):
        """Layer k's input as built by the last forward (no recomputation)."""
        return nodes[self.segments[k][0][0]] if self.aliased[k] else buffers[k]

    def _scatter(self, k, grad_h, grad_nodes, written):
        """Add the gradient of layer k's input to the gradient of every node it was built from
        (write it to a node not ``written`` yet, and mark it written)."""
        start = 0
        for segment in self.segments[k]:
            for j in segment:
                self.ck.take_columns(grad_h, start, grad_nodes[j], written[j])
                written[j] = True
            start += segment_width(self.sizes, segment)

    def _layer_weight(self, k):
        if not self.spectral_norm:
            return self.weights[k]
        self.ck.spectral_norm_forward(self.weights[k], self.sn_u[k], self.sn_v[k], 1,
                                      self.sn_weights[k], self.sn_sigma[k])
        return self.sn_weights[k]

    def forward(self, x):
        """The training-mode forward pass (one power iteration per spectrally normed layer);
        returns the output, valid until the next call."""
        ws = self._workspace(x.shape[1])
        self._last = (ws, x)
        nodes = [x] + ws["a"]
        for k in range(len(self.layout)):
            self.ck.linear_forward(self._gather(k, nodes, ws["h"]), self._layer_weight(k),
                                   self.biases[k], self.codes[k], self.slope, ws["z"][k],
                                   ws["a"][k])
        return ws["a"][-1]

    def _tangent_workspace(self, n):
        """The workspace of n rows with the tangent path's arrays added."""
        ws = self._workspace(n)
        if "dz" not in ws:
            R, dt = self.R, self.dtype
            layers = [(R, n, w) for w in self.sizes[1:]]
            for name in ("dz", "da", "grad_dz"):
                ws[name] = [self.ck.to_device(np.zeros(shape, dt)) for shape in layers]
            ws["grad_dnode"] = [self.ck.to_device(np.zeros((R, n, w), dt)) for w in self.sizes]
            for name, primal in (("dh", "h"), ("grad_dh", "grad_h")):
                ws[name] = [None if h is None else self.ck.to_device(np.zeros(h.shape, dt))
                            for h in ws[primal]]
        return ws

    def jvp(self, x, dx):
        """The training-mode forward pass with tangent dx: returns (g(x), J_g(x) dx), both
        valid until the next call (the CPU network's ``_jvp``)."""
        ws = self._tangent_workspace(x.shape[1])
        self._last = (ws, x, dx)
        nodes, dnodes = [x] + ws["a"], [dx] + ws["da"]
        for k in range(len(self.layout)):
            self.ck.linear_jvp(self._gather(k, nodes, ws["h"]), self._gather(k, dnodes, ws["dh"]),
                               self._layer_weight(k), self.biases[k], self.codes[k], self.slope,
                               ws["z"][k], ws["a"][k], ws["dz"][k], ws["da"][k])
        return ws["a"][-1], ws["da"][-1]

    def jvp_backward(self, grad_y, grad_dy):
        """Backward of the last :meth:`jvp` through its primal and its tangent path: writes
        (not adds) the parameter gradients; the input's gradient is not computed."""
        ws, x, dx = self._last
        nodes, dnodes = [x] + ws["a"], [dx] + ws["da"]
        written, dwritten = [False] * len(nodes), [False] * len(nodes)
        last = len(self.layout) - 1
        for k in reversed(range(len(self.layout))):
            grad_a = grad_y if k == last else ws["grad_node"][k + 1]
            grad_da = grad_dy if k == last else ws["grad_dnode"][k + 1]
            sole = self.sole_input[k]
            grad_h, grad_dh = ((ws["grad_h"][k], ws["grad_dh"][k]) if sole is None
                               else (ws["grad_node"][sole], ws["grad_dnode"][sole]))
            self.ck.linear_jvp_backward(
                self._gathered(k, nodes, ws["h"]), self._gathered(k, dnodes, ws["dh"]),
                self._used_weight(k), ws["z"][k], ws["a"][k], ws["dz"][k], grad_a, grad_da,
                self.codes[k], self.slope, ws["grad_z"][k], ws["grad_dz"][k],
                self._weight_grad_target(k), self.bias_grads[k], grad_h, grad_dh, False, k > 0)
            self._finish_weight_grad(k)
            if k > 0 and sole is None:
                self._scatter(k, grad_h, ws["grad_node"], written)
                self._scatter(k, grad_dh, ws["grad_dnode"], dwritten)

    def _used_weight(self, k):
        """The weight layer k used in the last pass (W / sigma with spectral norm)."""
        return self.sn_weights[k] if self.spectral_norm else self.weights[k]

    def _weight_grad_target(self, k):
        """Where layer k's kernels write its weight gradient: dL/dW, or dL/dW_sn with
        spectral norm (which :meth:`_finish_weight_grad` turns into dL/dW)."""
        return self.sn_weight_grads[k] if self.spectral_norm else self.weight_grads[k]

    def _finish_weight_grad(self, k):
        if self.spectral_norm:
            self.ck.spectral_norm_backward(self.weights[k], self.sn_u[k], self.sn_v[k],
                                           self.sn_sigma[k], self.sn_weight_grads[k],
                                           self.weight_grads[k], False)

    def backward(self, grad_out, need_grad_in, param_grads=True):
        """Backward of the last forward: writes (not adds) the parameter gradients when
        param_grads, else only passes the gradient through to the input; returns dL/dx."""
        ws, x = self._last
        nodes, grad_nodes = [x] + ws["a"], ws["grad_node"]
        written = [False] * len(nodes)
        for k in reversed(range(len(self.layout))):
            grad_a = grad_out if k == len(self.layout) - 1 else grad_nodes[k + 1]
            W = self._used_weight(k)
            need_x = k > 0 or need_grad_in
            sole = self.sole_input[k]
            grad_h = ws["grad_h"][k] if sole is None else grad_nodes[sole]
            if param_grads:
                self.ck.linear_backward(self._gathered(k, nodes, ws["h"]), W, ws["z"][k],
                                        ws["a"][k], grad_a, self.codes[k], self.slope,
                                        ws["grad_z"][k], self._weight_grad_target(k),
                                        self.bias_grads[k], grad_h if need_x else None, False,
                                        need_x)
                self._finish_weight_grad(k)
            else:
                self.ck.linear_backward_input(W, ws["z"][k], ws["a"][k], grad_a, self.codes[k],
                                              self.slope, ws["grad_z"][k], grad_h)
            if need_x and sole is None:
                self._scatter(k, grad_h, grad_nodes, written)
        return grad_nodes[0] if need_grad_in else None


class _DeviceScore:
    """R copies of the score network s(x, sigma) (:class:`npgen.nn.ScoreNetwork`, whose module
    doc has the math) on the device, each replica at its own noise level.

    The parameters keep the CPU network's blocks (fc_2 and fc_3 split into their x-path and
    embedding columns). A pass runs the embedding MLP on each replica's features p(sigma_r)
    (a batch of one row per replica), folds it into the x path's biases

        beff2 = W2e e + b2,   beff3 = W3e leaky_0.2(e) + b3,   e = leaky_0.2(z_e2),

    as two identity layers on the rows e and leaky_0.2(e), then runs the x path
    1 -> 96 -> 196 -> 1 on the batch with those biases. Since leaky_c(leaky_c(z)) =
    leaky_{c^2}(z), the row leaky_0.2(e) is the second embedding layer with slope 0.04; the
    backward pass takes the two branches (through e and through leaky(e)) back through the
    embedding one after the other, the second accumulating into the same gradients.
    """

    def __init__(self, nets, ck):
        first = nets[0]
        self.ck, self.R, self.nets, self.dtype = ck, len(nets), nets, first.dtype
        blocks = first._blocks()  # the order of the CPU buffer, block after block
        self.parameters = _DeviceParameters([net.params for net in nets],
                                            _laid_end_to_end([shape for _, shape in blocks]),
                                            self.dtype, ck)
        names = [name for name, _ in blocks]
        self.w = dict(zip(names, self.parameters.blocks))
        self.g = dict(zip(names, self.parameters.grad_blocks))
        R, dt = self.R, self.dtype
        row = {name: ck.to_device(np.zeros((R, 1, width), dt)) for name, width in (
            ("z_e1", EMBED_WIDTHS[0]), ("a_e1", EMBED_WIDTHS[0]), ("grad_z_e1", EMBED_WIDTHS[0]),
            ("grad_a_e1", EMBED_WIDTHS[0]), ("z_e2", EMBED_WIDTHS[1]), ("e", EMBED_WIDTHS[1]),
            ("z_leaky_e", EMBED_WIDTHS[1]), ("leaky_e", EMBED_WIDTHS[1]),
            ("grad_z_e2", EMBED_WIDTHS[1]), ("grad_e", EMBED_WIDTHS[1]),
            ("grad_leaky_e", EMBED_WIDTHS[1]), ("beff2", HIDDEN_WIDTHS[1]),
            ("beff2_a", HIDDEN_WIDTHS[1]), ("grad_z_beff2", HIDDEN_WIDTHS[1]),
            ("grad_beff2", HIDDEN_WIDTHS[1]), ("beff3", 1), ("beff3_a", 1), ("grad_z_beff3", 1),
            ("grad_beff3", 1))}
        self.row = row
        self.beff2, self.beff3 = (row[n].reshape(R, row[n].shape[2]) for n in ("beff2", "beff3"))
        self.grad_beff2, self.grad_beff3 = (row[n].reshape(R, row[n].shape[2])
                                            for n in ("grad_beff2", "grad_beff3"))
        self._workspaces = {}

    def _workspace(self, n):
        if n not in self._workspaces:
            R, dt = self.R, self.dtype
            widths = {"1": HIDDEN_WIDTHS[0], "2": HIDDEN_WIDTHS[1], "3": 1}
            self._workspaces[n] = {f"{part}{k}": self.ck.to_device(np.zeros((R, n, width), dt))
                                   for k, width in widths.items()
                                   for part in ("z", "a", "grad_z", "grad_a")}
        return self._workspaces[n]

    def forward(self, x, features):
        """s(x_ri, sigma_r) for x (R, n, 1) and each replica's features p(sigma_r) (R, 1, 16);
        returns the scores (R, n, 1), valid until the next call."""
        ck, w, row, leaky = self.ck, self.w, self.row, kernels.LEAKY_RELU
        ck.linear_forward(features, w["sigma_emb_1.weight"], w["sigma_emb_1.bias"], leaky, SLOPE,
                          row["z_e1"], row["a_e1"])
        for z, a, slope in (("z_e2", "e", SLOPE), ("z_leaky_e", "leaky_e", SLOPE * SLOPE)):
            ck.linear_forward(row["a_e1"], w["sigma_emb_2.weight"], w["sigma_emb_2.bias"], leaky,
                              slope, row[z], row[a])
        ck.linear_forward(row["e"], w["fc_2.e"], w["fc_2.bias"], kernels.IDENTITY, 0.0,
                          row["beff2"], row["beff2_a"])
        ck.linear_forward(row["leaky_e"], w["fc_3.e"], w["fc_3.bias"], kernels.IDENTITY, 0.0,
                          row["beff3"], row["beff3_a"])
        ws = self._workspace(x.shape[1])
        self._last = (ws, x, features)
        h = x
        for k, (weight, bias, kind, slope) in enumerate(self._x_path(), start=1):
            ck.linear_forward(h, weight, bias, kind, slope, ws[f"z{k}"], ws[f"a{k}"])
            h = ws[f"a{k}"]
        return h

    def _x_path(self):
        """(weight, bias, activation, slope) of the x path's layers, the biases beff folded in."""
        w, leaky = self.w, kernels.LEAKY_RELU
        return ((w["fc_1.weight"], w["fc_1.bias"], leaky, SLOPE_X),
                (w["fc_2.x"], self.beff2, leaky, SLOPE),
                (w["fc_3.x"], self.beff3, kernels.IDENTITY, 0.0))

    def backward(self, grad_s):
        """Backprop dL/ds (R, n, 1) through the last forward: writes every parameter gradient."""
        ck, w, g, row, leaky = self.ck, self.w, self.g, self.row, kernels.LEAKY_RELU
        ws, x, features = self._last
        weight_grads = (g["fc_1.weight"], g["fc_2.x"], g["fc_3.x"])
        bias_grads = (g["fc_1.bias"], self.grad_beff2, self.grad_beff3)
        grad_a, path = grad_s, self._x_path()
        for k in (3, 2, 1):
            weight, _, kind, slope = path[k - 1]
            h = x if k == 1 else ws[f"a{k - 1}"]
            ck.linear_backward(h, weight, ws[f"z{k}"], ws[f"a{k}"], grad_a, kind, slope,
                               ws[f"grad_z{k}"], weight_grads[k - 1], bias_grads[k - 1],
                               ws[f"grad_a{k - 1}"] if k > 1 else None, False, k > 1)
            grad_a = ws[f"grad_a{k - 1}"] if k > 1 else None
        for beff, source, block in (("beff2", "e", "fc_2"), ("beff3", "leaky_e", "fc_3")):
            ck.linear_backward(row[source], w[f"{block}.e"], row[beff], row[f"{beff}_a"],
                               row[f"grad_{beff}"], kernels.IDENTITY, 0.0, row[f"grad_z_{beff}"],
                               g[f"{block}.e"], g[f"{block}.bias"], row[f"grad_{source}"], False,
                               True)
        for branch, (z, a, slope) in enumerate((("z_e2", "e", SLOPE),
                                                ("z_leaky_e", "leaky_e", SLOPE * SLOPE))):
            ck.linear_backward(row["a_e1"], w["sigma_emb_2.weight"], row[z], row[a],
                               row[f"grad_{a}"], leaky, slope, row["grad_z_e2"],
                               g["sigma_emb_2.weight"], g["sigma_emb_2.bias"], row["grad_a_e1"],
                               branch > 0, True)
            ck.linear_backward(features, w["sigma_emb_1.weight"], row["z_e1"], row["a_e1"],
                               row["grad_a_e1"], leaky, SLOPE, row["grad_z_e1"],
                               g["sigma_emb_1.weight"], g["sigma_emb_1.bias"], None, branch > 0,
                               False)

    def copy_to_models(self):
        """Write the device parameters back into the CPU score networks."""
        self.parameters.copy_to([net.params for net in self.nets])


class _DeviceAdam:
    """torch.optim.Adam over a device parameter buffer (every replica in one launch)."""

    def __init__(self, parameters, lr, betas, eps=1e-8):
        self.parameters, self.lr, (self.beta1, self.beta2), self.eps = parameters, lr, betas, eps
        zeros = np.zeros(parameters.params.shape, parameters.dtype)
        self.m, self.v = parameters.ck.to_device(zeros), parameters.ck.to_device(zeros)
        self.t = 0

    def step(self):
        self.t += 1
        p = self.parameters
        p.ck.adam_step(p.params, p.grads, self.m, self.v, self.t, self.lr, self.beta1,
                       self.beta2, self.eps)


class _BatchedModel:
    """What the batched models share: the device copies of the networks named NETWORKS (the
    push-forward network first, or the score network), one Adam each, and the replicas' RNG
    states."""

    NETWORKS = ()
    DEVICE_NETWORK = _DeviceNetwork

    def __init__(self, models, ck):
        self.models, self.ck, self.R = models, ck, len(models)
        first = models[0]
        self.networks = [self.DEVICE_NETWORK([getattr(m, name) for m in models], ck)
                         for name in self.NETWORKS]
        self.optimizers = [_DeviceAdam(net.parameters, first.lr, first.betas)
                           for net in self.networks]
        self.states = ck.rng_states([m.seed for m in models])

    def start_epoch(self, steps):
        """Draw from each model's stream what an epoch of ``steps`` steps needs beyond its
        shuffle (nothing, but for the SGM)."""

    def finish(self):
        """Copy every network's weights back into the CPU models."""
        for net in self.networks:
            net.copy_to_models()

    @property
    def push_forward(self):
        return self.networks[0]


class BatchedGAN(_BatchedModel):
    """The GAN step of :class:`npgen.GAN` (generator first, BCE, with or without the
    generator's gradient penalty) on R replicas at once: the step :func:`fit_many` takes, and
    what bench/gpu.py times."""

    NETWORKS = ("generator", "discriminator")

    def __init__(self, models, ck, batch_size):
        super().__init__(models, ck)
        self.generator, self.discriminator = self.networks
        first = models[0]
        R, B, dt = self.R, batch_size, first.dtype
        self.z = ck.to_device(np.zeros((R, B, first.latent_dim), dt))
        self.ones = ck.to_device(np.ones((R, B, 1), dt))
        self.grad_logits = ck.to_device(np.zeros((R, B, 1), dt))
        self.real_and_fake = ck.to_device(np.zeros((R, 2 * B, first.data_dim), dt))
        self.labels = ck.to_device(np.concatenate([np.ones((R, B, 1), dt),
                                                   np.zeros((R, B, 1), dt)], axis=1))
        self.grad_logits_both = ck.to_device(np.zeros((R, 2 * B, 1), dt))
        self.same_rows = ck.to_device(np.tile(np.arange(B), (R, 1)))
        self.loss = ck.to_device(np.zeros(R))
        self.penalized = first.gp_lipschitz is not None
        if self.penalized:
            self.penalty_targets = ck.to_device(np.array([m.gp_lipschitz for m in models], float))
            self.unit_tangent = ck.to_device(np.ones((R, B, first.latent_dim), dt))
            self.grad_tangent = ck.to_device(np.zeros((R, B, first.data_dim), dt))
            self.penalty = ck.to_device(np.zeros(R))

    def step(self, data, order, start):
        """One generator and one discriminator step on the rows order[:, start:start + B] of
        data; returns {'generator': (R,), ['penalty': (R,),] 'discriminator': (R,)} losses on
        the host."""
        ck, G, D = self.ck, self.generator, self.discriminator
        ck.standard_normal(self.states, self.z)
        if not self.penalized:
            fake = G.forward(self.z)
        else:
            fake, tangent = G.jvp(self.z, self.unit_tangent)
        ck.bce_with_logits(D.forward(fake), self.ones, self.grad_logits, self.loss)
        losses = {"generator": ck.to_host(self.loss)}
        grad_fake = D.backward(self.grad_logits, True, param_grads=False)
        if not self.penalized:
            G.backward(grad_fake, False)
        else:
            ck.gradient_penalty(tangent, self.penalty_targets, PENALTY_WEIGHT, self.grad_tangent,
                                self.penalty)
            losses["penalty"] = ck.to_host(self.penalty)
            G.jvp_backward(grad_fake, self.grad_tangent)
        self.optimizers[0].step()
        ck.standard_normal(self.states, self.z)
        B = self.z.shape[1]
        ck.gather_rows(data, order, start, self.real_and_fake, 0, B)
        ck.gather_rows(G.forward(self.z), self.same_rows, 0, self.real_and_fake, B, B)
        logits = D.forward(self.real_and_fake)
        ck.bce_with_logits(logits, self.labels, self.grad_logits_both, self.loss)
        losses["discriminator"] = ck.to_host(self.loss)
        D.backward(self.grad_logits_both, False)
        self.optimizers[1].step()
        return losses

class BatchedVAE(_BatchedModel):
    """The VAE step of :class:`npgen.VAE` on R replicas at once: one Adam step of encoder and
    decoder on the summed negative ELBO, with fresh eps; losses divided by the batch size."""

    NETWORKS = ("decoder", "encoder")

    def __init__(self, models, ck, batch_size):
        super().__init__(models, ck)
        self.decoder, self.encoder = self.networks
        first = models[0]
        self.kl_power = 1 if first.kl == "correct" else 2
        self.variance = first.decoder_variance
        R, B, p, d, dt = self.R, batch_size, first.latent_dim, first.data_dim, first.dtype
        self.x, self.residual = (ck.to_device(np.zeros((R, B, d), dt)) for _ in range(2))
        self.eps, self.z, self.std = (ck.to_device(np.zeros((R, B, p), dt)) for _ in range(3))
        self.grad_code = ck.to_device(np.zeros((R, B, 2 * p), dt))
        self.kl, self.reconstruction = ck.to_device(np.zeros(R)), ck.to_device(np.zeros(R))

    def step(self, data, order, start):
        """One step on the rows order[:, start:start + B] of data; returns {'loss',
        'reconstruction', 'kl'}: (R,) per-sample losses on the host."""
        ck, E, D = self.ck, self.encoder, self.decoder
        B = self.x.shape[1]
        ck.standard_normal(self.states, self.eps)
        ck.gather_rows(data, order, start, self.x, 0, B)
        code = E.forward(self.x)
        ck.vae_reparameterize(code, self.eps, self.kl_power, self.z, self.std, self.kl)
        ck.vae_residual(D.forward(self.z), self.x, self.variance, self.residual,
                        self.reconstruction)
        grad_z = D.backward(self.residual, True)
        ck.vae_code_gradient(code, self.eps, self.std, grad_z, self.kl_power, self.grad_code)
        E.backward(self.grad_code, False)
        for optimizer in self.optimizers:
            optimizer.step()
        reconstruction, kl = ck.to_host(self.reconstruction) / B, ck.to_host(self.kl) / B
        return {"loss": reconstruction + kl, "reconstruction": reconstruction, "kl": kl}


class BatchedSGM(_BatchedModel):
    """The SGM step of :class:`npgen.SGM` on R replicas at once: each replica at the noise
    level its model drew for the step, one Adam step on the denoising score-matching sum;
    losses divided by the batch size (its module doc has the math)."""

    NETWORKS = ("score",)
    DEVICE_NETWORK = _DeviceScore

    def __init__(self, models, ck, batch_size):
        super().__init__(models, ck)
        first = models[0]
        R, B, L, dt = self.R, batch_size, first.sigmas.size, first.dtype
        self.weight_power = WEIGHT_POWERS[first.weighting]
        table = np.array([sinusoidal_features(sigma) for sigma in first.sigmas], dt)
        self.features_by_level = ck.to_device(np.broadcast_to(table, (R, L, FEATURES)))
        self.sigma_by_level = ck.to_device(np.broadcast_to(first.sigmas[:, None], (R, L, 1)))
        self.x, self.eps, self.noisy, self.grad_score = (
            ck.to_device(np.zeros((R, B, 1), dt)) for _ in range(4))
        self.features = ck.to_device(np.zeros((R, 1, FEATURES), dt))
        self.sigma = ck.to_device(np.zeros((R, 1, 1)))
        self.loss = ck.to_device(np.zeros(R))
        self.levels = None

    def start_epoch(self, steps):
        """Each model draws the noise level of each of the epoch's steps (after its shuffle)."""
        L = self.models[0].sigmas.size
        self.levels = self.ck.to_device(np.stack([m.rng.integers(L, size=steps)
                                                  for m in self.models]))

    def step(self, data, order, start):
        """One step on the rows order[:, start:start + B] of the standardized data, at the
        levels drawn for step start // B of the epoch; returns {'loss': (R,)} on the host."""
        ck, B = self.ck, self.x.shape[1]
        ck.gather_rows(data, order, start, self.x, 0, B)
        ck.gather_rows(self.features_by_level, self.levels, start // B, self.features, 0, 1)
        ck.gather_rows(self.sigma_by_level, self.levels, start // B, self.sigma, 0, 1)
        ck.standard_normal(self.states, self.eps)
        ck.score_matching_noisy(self.x, self.eps, self.sigma.reshape(self.R), self.noisy)
        score = self.networks[0].forward(self.noisy, self.features)
        ck.score_matching_loss(score, self.eps, self.sigma.reshape(self.R), self.weight_power,
                               self.grad_score, self.loss)
        self.networks[0].backward(self.grad_score)
        self.optimizers[0].step()
        return {"loss": ck.to_host(self.loss) / B}


def fit_many(models, datasets, epochs, batch_size, on_epoch=None, backend="cuda"):
    """Train ``models`` (untrained GANs, VAEs or SGMs of one architecture, see
    :func:`check_batchable`) on
    ``datasets`` (one (n, data_dim) array each, all of one n) in lockstep on ``backend``.

    Each replica takes the steps ``model.fit(data, epochs, batch_size)`` would (the same
    shuffles and, for an SGM, the same standardization; latents and noise drawn on the device,
    see the module doc). ``on_epoch``, if given, is a list of one callable per model, called
    as ``on_epoch[r](epoch, history)`` after each epoch with the model's push-forward (or
    score) network holding that epoch's weights. When training ends the weights are copied
    back into the models, which are then trained CPU models.

    Returns one entry per model: its history (as the model's ``fit`` returns it, with the
    batch's ``wall_time_s``) or, for a replica whose training diverged, the
    :class:`npgen.models.training.TrainingDiverged` it would have raised alone (that model
    stays untrained).
    """
    models = list(check_batchable(models))
    epochs = check_number("epochs", epochs, low=1, integer=True)
    batch_size = check_number("batch_size", batch_size, low=1, integer=True)
    if not isinstance(datasets, (list, tuple)) or len(datasets) != len(models):
        raise ValueError(f"datasets must be a list of one array per model ({len(models)}),"
                         f" got {type(datasets).__name__}")
    arrays, standardizations = zip(*(_training_array(model, d) for model, d in zip(models, datasets)))
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("datasets batched together must have one number of rows, got"
                         f" {sorted({len(a) for a in arrays})}")
    if batch_size > n:
        raise ValueError(f"batch_size must be at most the number of samples ({n}), got {batch_size}")
    if on_epoch is not None and (len(on_epoch) != len(models) or not all(map(callable, on_epoch))):
        raise ValueError("on_epoch must be a list of one function on_epoch(epoch, history) per model")
    ck = kernels.get_replica_backend(backend)
    start_time = time.perf_counter()
    data = ck.to_device(np.stack(arrays))
    batched = {GAN: BatchedGAN, VAE: BatchedVAE, SGM: BatchedSGM}[type(models[0])](
        models, ck, batch_size)
    label = type(models[0]).__name__
    histories = [{} for _ in models]
    outcome = [None] * len(models)
    starts = [{} for _ in models]
    steps_per_epoch = n // batch_size
    step = 0
    for epoch in range(epochs):
        order = ck.to_device(np.stack([model.rng.permutation(n) for model in models]))
        batched.start_epoch(steps_per_epoch)
        sums = [{} for _ in models]
        for s in range(steps_per_epoch):
            step += 1
            losses = batched.step(data, order, s * batch_size)
            for r, model in enumerate(models):
                if outcome[r] is not None:
                    continue
                mine = {name: float(values[r]) for name, values in losses.items()}
                try:
                    check_losses(model, step, mine, starts[r], label)
                except TrainingDiverged as err:
                    outcome[r] = err
                for name, value in mine.items():
                    sums[r][name] = sums[r].get(name, 0.0) + value
        for r in range(len(models)):
            for name, total in sums[r].items():
                histories[r].setdefault(name, []).append(total / steps_per_epoch)
        if on_epoch is not None:
            batched.push_forward.copy_to_models()
            for r in range(len(models)):
                if outcome[r] is None:
                    on_epoch[r](epoch + 1, histories[r])
    batched.finish()
    elapsed = time.perf_counter() - start_time
    for r, model in enumerate(models):
        if outcome[r] is None:
            if isinstance(model, SGM):  # an SGM is trained once it has its standardization
                model.mean, model.std = standardizations[r]
            else:
                model.trained = True
            histories[r]["wall_time_s"] = elapsed
            outcome[r] = histories[r]
    return outcome


def _training_array(model, data):
    """(the array a model trains on, its standardization): ``data`` checked and, for an SGM,
    standardized as its fit would ((mean, std), which the model keeps once trained; None for
    the push-forward models)."""
    if isinstance(model, SGM):
        return model._standardized(data)
    return model._as_array("data", data, model.data_dim), None
