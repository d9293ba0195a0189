"""Adam on a network's flat parameter buffer, with torch.optim.Adam's semantics."""

import numpy as np

from ..util.checks import check_betas, check_number


class Adam:
    """Adam (Kingma & Ba, 2015) as torch.optim.Adam computes it (no weight decay, no amsgrad).

    For step t = 1, 2, ... and gradient g:
        m <- beta1 m + (1 - beta1) g,          v <- beta2 v + (1 - beta2) g^2
        theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``net`` is anything with flat arrays ``params`` and ``grads`` of the same shape and a
    replica-form kernel backend ``ops`` (an npgen network, of one replica or of R replicas on
    any backend: the update is elementwise); the state m, v is kept per parameter.
    """

    def __init__(self, net, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        params, grads = getattr(net, "params", None), getattr(net, "grads", None)
        if not (hasattr(net, "ops") and all(hasattr(a, "shape") and hasattr(a, "dtype")
                                            for a in (params, grads))
                and len(params.shape) == 1 and np.dtype(params.dtype).kind == "f"
                and grads.shape == params.shape and grads.dtype == params.dtype):
            raise ValueError("Adam needs a network with flat float arrays params and grads of one"
                             f" shape and a kernel backend (an npgen MLP or ScoreNetwork), got"
                             f" {type(net).__name__}")
        self.net = net
        self.lr = check_number("lr", lr, low=0, low_open=True)
        self.beta1, self.beta2 = check_betas(betas)
        self.eps = check_number("eps", eps, low=0, low_open=True)  # eps = 0 divides 0 by 0
        self.m = net.ops.zeros(params.shape, params.dtype)
        self.v = net.ops.zeros(params.shape, params.dtype)
        self.t = 0

    def step(self):
        """Apply one update from ``net.grads``."""
        self.t += 1
        self.net.ops.adam_step(self.net.params, self.net.grads, self.m, self.v, self.t,
                               self.lr, self.beta1, self.beta2, self.eps)

    @staticmethod
    def step_together(optimizers):
        """Apply one update of each of ``optimizers`` (the networks of one model, on one backend,
        with one step count and one set of rates) in one backend call: the updates
        :meth:`step` would make, one optimizer after the other."""
        first = optimizers[0]
        shared = (first.t, first.lr, first.beta1, first.beta2, first.eps, first.net.ops)
        if any((opt.t, opt.lr, opt.beta1, opt.beta2, opt.eps, opt.net.ops) != shared
               for opt in optimizers):
            raise ValueError("optimizers stepped together must share their backend, step count,"
                             " lr, betas and eps")
        for opt in optimizers:
            opt.t += 1
        first.net.ops.adam_step_groups([opt.net.params for opt in optimizers],
                                       [opt.net.grads for opt in optimizers],
                                       [opt.m for opt in optimizers], [opt.v for opt in optimizers],
                                       first.t, first.lr, first.beta1, first.beta2, first.eps)

    def state_dict(self):
        """Optimizer state as arrays: first and second moments and the step count."""
        return {"m": self.m.copy(), "v": self.v.copy(), "t": np.array(self.t)}

    def load_state_dict(self, state):
        """Restore the state written by :meth:`state_dict`: m and v of the parameters' shape,
        finite, v >= 0 (a mean of squares), and a step count t >= 0 (an integer)."""
        if not isinstance(state, dict) or not {"m", "v", "t"} <= set(state):
            raise ValueError("optimizer state must be a dict with the keys 'm', 'v' and 't', got"
                             f" {sorted(state) if isinstance(state, dict) else type(state).__name__}")
        moments = {}
        for key in ("m", "v"):
            value = np.asarray(state[key])
            if value.shape != self.m.shape or value.dtype.kind not in "iuf":
                raise ValueError(f"optimizer state {key!r} must be a real array of shape"
                                 f" {self.m.shape}, got {value.dtype.name} {value.shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"optimizer state {key!r} contains NaN or inf values")
            moments[key] = value
        if (moments["v"] < 0).any():
            raise ValueError("optimizer state 'v' must be >= 0 (a running mean of squared gradients)")
        t = np.asarray(state["t"])
        if t.shape != () or t.dtype.kind not in "iu" or int(t) < 0:
            raise ValueError(f"optimizer state 't' must be a step count, an integer >= 0, got {state['t']!r}")
        self.m[...], self.v[...] = moments["m"], moments["v"]
        self.t = int(t)
