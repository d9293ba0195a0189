"""Score-based generative model (Song & Ermon, 2019) of the paper's univariate experiments.

The settings are the published code's (``REFERENCE.md``, "Univariate setting"):

* data standardized by its global mean and standard deviation; samples are mapped back;
* noise levels sigma_k = 0.6^k, k = 0 .. 9 (1 down to about 0.0101);
* denoising score matching: for each minibatch x_1..x_B one level sigma drawn uniformly,
  x~_i = x_i + sigma eps_i with eps_i ~ N(0, 1), and the loss

      L = w(sigma) sum_i (s(x~_i, sigma) - (x_i - x~_i) / sigma^2)^2,
      dL/ds_i = 2 w(sigma) (s(x~_i, sigma) - (x_i - x~_i) / sigma^2),

  a *sum* over the batch, as the published code (``sigma * 2 * (1/2) mse(reduction='sum')``);
  w(sigma) = sigma there ('paper'), sigma^2 in Song & Ermon ('sigma2'). The regression target
  (x - x~) / sigma^2 = -eps / sigma is the score of the Gaussian kernel N(x~; x, sigma^2).
  Adam follows the gradient of that sum, as the published code does; :meth:`SGM.step` and the
  training history report L / B, the per-sample mean, like the GAN's and the VAE's losses;
* Adam, lr 1e-4, betas (0.9, 0.999), batch 1000, 400 epochs;
* annealed Langevin sampling: x ~ N(0, 1), then for each level i, largest sigma first,
  alpha_i = step_lr sigma_i^2 / sigma_L^2 (step_lr = 2e-5, sigma_L the smallest level) and
  100 steps of x <- x + (alpha_i / 2) s(x, sigma_i) + sqrt(alpha_i) z, z ~ N(0, 1); no final
  denoising step unless asked (``denoise=True``: x <- x + sigma_L^2 s(x, sigma_L), Tweedie's
  formula for E[clean | noisy]);
* the sampler as a push-forward: ``sample(..., lipschitz=True)`` also returns the gradient of
  x_T with respect to all of the sampler's Gaussian inputs, sample by sample
  (:class:`SamplerGradient`).
"""

from dataclasses import dataclass, replace

import numpy as np

from ..nn.adam import Adam
from ..nn.dense_score import ACTIVATION, HIDDEN_SIZES, DenseScoreNetwork, check_noise_levels
from ..nn.score import FEATURES, SLOPE, SLOPE_X, ScoreNetwork, sinusoidal_features
from ..util.checks import (as_real_array, check_betas, check_bool, check_choice, check_matrix,
                           check_number, check_seed, dtype_of)
from ..util.progress import advance, progress_bar
from ..util.threads import one_blas_thread
from .noise import HostNoise
from .replicated import ReplicatedModel
from .langevin_options import STEP_LR, STEPS_PER_LEVEL, check_sampling, check_trace
from .saved import check_recorded, load_model, save_model
from .sgm_device import sample_checked
from .training import MAX_SAMPLES, fit_loop

#: The paper's noise levels, largest first.
NOISE_LEVELS = 0.6 ** np.arange(10)
#: Loss weights w(sigma) by name.
WEIGHTINGS = {"paper": lambda sigma: sigma, "sigma2": lambda sigma: sigma * sigma}
#: The same weights as powers, w(sigma) = sigma^k (how the batched kernels take them).
WEIGHT_POWERS = {"paper": 1, "sigma2": 2}
#: Sample-steps per call of the CPU Langevin kernel (samples x steps; a fraction of a second):
#: a long chain runs as a series of calls, so that Ctrl-C stops it between two of them.
CHAIN_CALL_WORK = 2 ** 23
#: Rows evaluated at once by the final denoising step (one reusable workspace).
DENOISE_CHUNK = 4096
#: Where the Langevin chain of :meth:`SGM.sample` can run.
SAMPLING_DEVICES = ("cpu", "cuda")


class _HostChain:
    """The Langevin chain of one sampling pass on the score network's own (CPU) kernels: the
    samples x (k,) and the gradient arrays (dx0, grad_sq, or none) move in place; chain j is
    sample rows[j] of the pass (sample j when ``rows`` is None), whose noise it draws. (On a
    GPU, :func:`npgen.models.sgm_device.sample_many` runs whole chains in one launch instead.)"""

    def __init__(self, score, x, gradient, beff2, beff3, alphas, noise_seed, rows=None):
        w = score.weights
        self.kernels, self.x, self.gradient, self.noise_seed = score.backend, x, gradient, noise_seed
        self.rows = rows
        self.layers = (w["fc_1.weight"], w["fc_1.bias"], w["fc_2.x"], w["fc_3.x"])
        self.levels = [(beff2[level:level + 1], beff3[level:level + 1], alphas[level:level + 1])
                       for level in range(alphas.size)]

    def run(self, level, n_steps, first_step):
        """n_steps steps at noise level ``level``, the first being step ``first_step``."""
        W1, b1, W2x, W3x = self.layers
        beff2, beff3, alpha = self.levels[level]
        self.kernels.annealed_langevin(self.x, W1, b1, W2x, beff2, W3x, beff3, alpha, n_steps,
                                       self.noise_seed, first_step, SLOPE_X, SLOPE, *self.gradient,
                                       rows=self.rows)


@dataclass(frozen=True, eq=False)
class SamplerGradient:
    """The gradient of the whole sampler, sample by sample (from :meth:`SGM.sample`).

    The sampler is a map g(x_0, z_1, ..., z_T) = x_T of T + 1 = L S + 1 independent standard
    normals (L levels of S steps): a push-forward of N(0, I_{T+1}), so Theorem 1 of the paper
    applies to it, with Lip(g) >= |grad g| at every input. In standardized units a step
    x' = x + (alpha / 2) s(x) + sqrt(alpha) z has dx'/dx = f = 1 + (alpha / 2) s'(x) and
    dx'/dz = sqrt(alpha), so |grad g|^2 follows n <- f^2 n + alpha from n = 1 (the
    Langevin kernels' ``grad_sq``) and d x_T / d x_0 follows d <- f d from 1 (``dx0``).
    Samples are x_data = data_std x_T + mean, so on the data's own scale every gradient is
    ``data_std`` times the standardized one.

    Attributes (standardized units unless said):
    data_std : float, the standardization's sd.
    dx0 : (n,) d x_T / d x_0.
    grad_sq : (n,) |grad g|^2 over (x_0, z_1..z_T).
    grad_sq_by_level : (L + 1, n) |grad g|^2 after 0, 1, .., L levels (row 0 is 1; the
        denoising step, when taken, is in ``grad_sq`` only).
    steps_per_level : int, S.
    traced : (k,) sample indices, or None.
    grad_sq_by_step : (T + 1, k) |grad g|^2 of the traced samples after 0, 1, .., T steps, or None.
    """

    data_std: float
    dx0: np.ndarray
    grad_sq: np.ndarray
    grad_sq_by_level: np.ndarray
    steps_per_level: int
    traced: np.ndarray = None
    grad_sq_by_step: np.ndarray = None

    @property
    def norm(self):
        """(n,) |grad g| on the data's scale: data_std sqrt(grad_sq) (float64)."""
        return self.data_std * np.sqrt(self.grad_sq.astype(np.float64))

    @property
    def x0_part(self):
        """(n,) |d x_data / d x_0| = data_std |dx0|, the start's share of :attr:`norm`."""
        return self.data_std * np.abs(self.dx0.astype(np.float64))

    @property
    def noise_part(self):
        """(n,) the Langevin noise's share, data_std sqrt(grad_sq - dx0^2):
        norm^2 = x0_part^2 + noise_part^2."""
        rest = self.grad_sq.astype(np.float64) - self.dx0.astype(np.float64) ** 2
        return self.data_std * np.sqrt(np.maximum(rest, 0))


class _SGMBuffers:
    """Arrays for one batch size B, allocated once on the model's backend: the step's (R, B, 1)
    arrays, each replica's level as its features (R, 1, 16) and sigma (R, 1, 1; float64), the
    per-level tables they are taken from, and the (R,) loss (in ``losses``)."""

    def __init__(self, model, n):
        ops, R, dt, L = model.ops, model.replicas, model.dtype, model.sigmas.size
        self.eps, self.noisy, self.grad = (ops.zeros((R, n, 1), dt) for _ in range(3))
        table = np.array([sinusoidal_features(sigma) for sigma in model.sigmas], dt)
        self.features_by_level = ops.to_device(np.broadcast_to(table, (R, L, FEATURES)))
        self.sigma_by_level = ops.to_device(np.broadcast_to(model.sigmas[:, None], (R, L, 1)))
        self.features = ops.zeros((R, 1, FEATURES), dt)
        self.sigma = ops.zeros((R, 1, 1), np.float64)
        self.sigma_of_replica = self.sigma.reshape(R)
        self.losses = {"loss": ops.zeros(R, np.float64)}


class SGM(ReplicatedModel):
    """Score-based generative model of scalar data (d = 1), see the module doc.

    Parameters
    ----------
    weighting : str
        'paper' (w(sigma) = sigma, the published code) or 'sigma2' (Song & Ermon's sigma^2).
    sigmas : sequence of float or None
        Noise levels, largest first; None for the paper's 0.6^k, k = 0 .. 9.
    lr, betas : Adam's settings.
    dtype : str
        'float32' (default) or 'float64'.
    seed : int
        Seeds the one random stream of training: the network initialization, the level and
        noise draws of every step, and the shuffling. Sampling has its own seed.
    backend : str or None
        Kernel backend ('cpu', 'numpy'); None reads $NPGEN_BACKEND.
    """

    def __init__(self, weighting="paper", sigmas=None, lr=1e-4, betas=(0.9, 0.999),
                 dtype="float32", seed=0, backend=None):
        self.weighting = check_choice("weighting", weighting, WEIGHTINGS)
        self.sigmas = check_noise_levels(NOISE_LEVELS if sigmas is None else sigmas)
        self.lr = check_number("lr", lr, low=0, low_open=True)
        self.betas = check_betas(betas)
        self.dtype = dtype_of(dtype)
        self.seed = check_seed(seed)
        self.rng = np.random.default_rng(self.seed)
        self.score = ScoreNetwork(dtype=self.dtype, seed=int(self.rng.integers(2 ** 32)),
                                  backend=backend)
        self.optimizer = self._optimizer(self.score)
        self.mean = None
        self.std = None
        self.replicas = 1
        self.noise = HostNoise([self])
        self._buffers_by_size = {}

    def config(self):
        """The constructor arguments (without the backend), as a JSON-able dict."""
        return {"weighting": self.weighting, "sigmas": self.sigmas.tolist(), "lr": self.lr,
                "betas": list(self.betas), "dtype": self.dtype.name, "seed": self.seed}

    def networks(self):
        """The trained networks by name (one: the score network)."""
        return {"score": self.score}

    OPTIMIZERS = {"score": "optimizer"}

    def _buffers(self, n):
        if n not in self._buffers_by_size:
            self._buffers_by_size[n] = _SGMBuffers(self, n)
        return self._buffers_by_size[n]

    # ----------------------------------------------------------------- training

    def _check_data(self, data):
        """``data`` as a finite (n, 1) array of the model's dtype (the model is univariate)."""
        return check_matrix("data", as_real_array("data", data, self.dtype, "(n, 1)"), 1, self.dtype)

    def denoising_loss(self, x, eps, sigma):
        """The denoising score-matching loss of clean rows x (n, 1), noise eps (n, 1), level sigma.

        L = w(sigma) sum_i (s(x_i + sigma eps_i, sigma) + eps_i / sigma)^2. Writes dL/dtheta
        into ``score.grads`` and returns L (a float).
        """
        x = check_matrix("x", x, 1, self.dtype)
        eps = check_matrix("eps", eps, 1, self.dtype)
        if eps.shape != x.shape:
            raise ValueError(f"eps must have the shape of x {x.shape}, got {eps.shape}")
        sigma = check_number("sigma", sigma, low=0, low_open=True)
        loss = self._denoising_loss(x[None], eps[None], np.array([float(sigma)]),
                                    self.score._features(sigma))
        return float(self.ops.to_host(loss)[0])

    def _denoising_loss(self, x, eps, sigma, features):
        """L of every replica, x and eps (R, n, 1) at the levels sigma (R,) given by their
        features p(sigma) (R, 1, 16): the backend's score_matching_noisy and score_matching_loss
        (:mod:`npgen.kernels.numpy_ref` has their math). Writes dL/dtheta; returns the (R,) L."""
        buf, ops = self._buffers(x.shape[1]), self.ops
        ops.score_matching_noisy(x, eps, sigma, buf.noisy)
        loss = buf.losses["loss"]
        ops.score_matching_loss(self.score._forward(buf.noisy, features), eps, sigma,
                                WEIGHT_POWERS[self.weighting], buf.grad, loss)
        self.score._backward(buf.grad, need_grad_x=False)
        return loss

    def step(self, batch):
        """One Adam step on a minibatch of *standardized* data (n, 1); returns {'loss': L / n}.

        The step follows the gradient of the batch sum L (:meth:`denoising_loss`, the published
        code's loss); the reported loss is its per-sample mean L / n, comparable with the GAN's
        and the VAE's and across batch sizes. The level is drawn from the model's stream, then
        the noise.
        """
        batch = check_matrix("batch", batch, 1, self.dtype)
        level = np.array([[self.rng.integers(self.sigmas.size)]])
        losses = self._read_losses(self._step(batch[None], level, 0), len(batch))
        return {"loss": float(losses["loss"][0])}

    def _step(self, batch, levels, column):
        """One Adam step of every replica on a minibatch (R, B, 1), replica r at the level
        levels[r, column] (levels (R, steps), an index into ``sigmas``), with fresh noise."""
        buf, ops = self._buffers(batch.shape[1]), self.ops
        ops.gather_rows(buf.features_by_level, levels, column, buf.features, 0, 1)
        ops.gather_rows(buf.sigma_by_level, levels, column, buf.sigma, 0, 1)
        loss = self._denoising_loss(batch, self.noise.normal(buf.eps), buf.sigma_of_replica,
                                    buf.features)
        self.optimizer.step()
        return {"loss": loss}

    def _loss_names(self):
        """The (R,) losses a step writes."""
        return ("loss",)

    def _report_losses(self, losses, batch_size):
        """The step's loss per sample, {'loss': L / B}."""
        return {"loss": losses["loss"] / batch_size}

    def fit(self, data, epochs=400, batch_size=1000, quiet=False, on_epoch=None):
        """Train on ``data`` (n, 1) for ``epochs`` shuffled passes of ``batch_size``.

        The first call fixes the standardization (mean and std of ``data``, kept afterwards);
        the model trains on (data - mean) / std. Returns the per-epoch mean losses (see
        :func:`npgen.models.training.fit_loop`, which also documents ``on_epoch``).
        """
        standardized, (self.mean, self.std) = self.training_data(data)
        return fit_loop(self, standardized, epochs, batch_size, self.rng, "SGM", quiet=quiet,
                        on_epoch=on_epoch)

    def training_data(self, data):
        """(the array the model trains on, its standardization): ((data - mean) / std in the
        model's dtype, (mean, std)) for ``data`` (n, 1), checked: the model's mean and std once
        fixed, else those of ``data`` (the caller keeps them)."""
        data = self._check_data(data)
        mean, std = self.mean, self.std
        if mean is None:
            values = data.astype(np.float64)
            mean, std = float(values.mean()), float(values.std())
            if std == 0:
                raise ValueError("data must not be constant: its standard deviation is 0")
        return ((data - mean) / std).astype(self.dtype), (mean, std)

    # ----------------------------------------------------------------- sampling

    @one_blas_thread
    def sample(self, n, seed=None, denoise=False, step_lr=STEP_LR,
               n_steps_per_level=STEPS_PER_LEVEL, quiet=False, lipschitz=False, trace=None,
               device="cpu"):
        """n samples of annealed Langevin dynamics, in data coordinates: shape (n, 1).

        The start x ~ N(0, 1) and the Langevin noise come from ``seed`` alone (see
        ``npgen.kernels.numpy_ref.annealed_langevin``), so a seed gives the same samples on every
        backend, to float rounding; without a seed every call draws fresh samples.
        ``quiet=False`` prints a progress line over the levels. A step size that makes the
        samples NaN or inf raises ValueError, naming the level where it happened.
        ``n_steps_per_level`` is at most
        :data:`npgen.models.langevin_options.MAX_STEPS_PER_LEVEL`. On the CPU a level's steps
        run in calls of about :data:`CHAIN_CALL_WORK` sample-steps, so Ctrl-C stops a long
        chain within a fraction of a second; the noise is indexed by the step, so the samples
        are those of one call per level, bit for bit.

        ``lipschitz=True`` also tracks the gradient of the whole sampler, a map
        g(x_0, z_1, ..., z_T) of its T + 1 standard normal inputs, for each sample, and returns
        ``(samples, SamplerGradient)`` (see :class:`SamplerGradient`). ``trace``, a sequence of
        sample indices (with ``lipschitz=True`` only), also records those samples' squared
        gradient norm after every step; the samples are the same (on the CPU the traced samples'
        chains run once more on their own, as :meth:`trace` runs them).

        ``device="cuda"`` runs the whole chain on a CUDA GPU (``npgen[cuda]``) in one launch
        (:func:`npgen.models.sgm_device.sample_many`, which samples many runs at once; no
        progress line), with the same noise: the samples and gradients are those of the CPU
        chain to float rounding.
        """
        n, seed, options, traced, on_cuda = self._checked("sample", n, seed, denoise, quiet, lipschitz,
                                                          step_lr, n_steps_per_level, trace, device)
        if on_cuda:
            [result] = sample_checked([self], n, [seed], [traced], **options)
            if isinstance(result, Exception):
                raise result
            return result
        if traced is not None and seed is None:  # the traced chains' pass starts where this one does
            seed = int(np.random.default_rng().integers(2 ** 63))
        result = self._sample_on_host(n, seed, None, **options)
        if traced is None:
            return result
        samples, gradient = result
        _, traced_gradient = self._sample_on_host(n, seed, traced, **options)
        return samples, replace(gradient, traced=traced,
                                grad_sq_by_step=traced_gradient.grad_sq_by_step)

    @one_blas_thread
    def trace(self, n, trace, seed=None, denoise=False, step_lr=STEP_LR,
              n_steps_per_level=STEPS_PER_LEVEL, quiet=False, device="cpu"):
        """The samples ``trace`` (k indices) of ``sample(n, seed, ...)`` and their squared
        gradient norm step by step: (samples (k, 1), the rows ``trace`` of :meth:`sample`'s samples
        exactly, and grad_sq_by_step (T + 1, k), |grad g|^2 of each after 0, 1, .., T steps,
        standardized, as :class:`SamplerGradient`'s). On the CPU only those k chains run,
        from the same start (the n starts drawn, the k kept) with their own samples' noise, one
        kernel call per step; ``device="cuda"`` traces them in :meth:`sample`'s one launch.
        The other arguments are :meth:`sample`'s."""
        n, seed, options, traced, on_cuda = self._checked("trace", n, seed, denoise, quiet, True, step_lr,
                                                          n_steps_per_level, trace, device)
        if on_cuda:
            samples, gradient = self.sample(n, seed, trace=traced, device=device, **options)
            return samples[traced], gradient.grad_sq_by_step
        samples, gradient = self._sample_on_host(n, seed, traced, **options)
        return samples, gradient.grad_sq_by_step

    def _checked(self, method, n, seed, denoise, quiet, lipschitz, step_lr, n_steps_per_level, trace,
                 device):
        """The arguments of :meth:`sample` or :meth:`trace` (``method``), checked: (n, seed,
        the chain's options, the traced indices or None, whether it runs on cuda)."""
        if self.mean is None:
            raise RuntimeError(f"{method} needs a trained model: call fit first (or load a saved model)")
        n, seed, options = check_sampling(n, seed, denoise, quiet, lipschitz, step_lr, n_steps_per_level)
        traced = check_trace(trace, n, lipschitz)
        return n, seed, options, traced, check_choice("device", device, SAMPLING_DEVICES) == "cuda"

    def _sample_on_host(self, n, seed, traced, denoise, quiet, lipschitz, step_lr,
                        n_steps_per_level):
        """:meth:`sample` on the score network's own kernels (arguments checked); with
        ``traced`` (k,), the chains of those samples alone, one step per kernel call, whose
        (samples (k, 1), SamplerGradient) record grad_sq after every step."""
        x, noise_seed = self._chain_start(n, seed)
        if traced is not None:
            x = x[traced]
        beff2, beff3, alphas = self._chain_levels(step_lr)
        gradient = (np.ones_like(x), np.ones_like(x)) if lipschitz else ()
        chain = _HostChain(self.score, x, gradient, beff2, beff3, alphas, noise_seed, traced)
        by_level = [gradient[1].copy()] if lipschitz else None
        steps = [gradient[1].copy()] if traced is not None else None
        steps_per_call = 1 if traced is not None else max(1, CHAIN_CALL_WORK // n)
        progress = progress_bar(self.sigmas.size, label="SGM sampling", unit="level", quiet=quiet)
        try:
            for level in range(self.sigmas.size):
                for first in range(0, n_steps_per_level, steps_per_call):
                    chain.run(level, min(steps_per_call, n_steps_per_level - first),
                              level * n_steps_per_level + first)
                    if steps is not None:
                        steps.append(gradient[1].copy())
                if not np.isfinite(x).all():
                    raise self._diverged(step_lr, level)
                if lipschitz:
                    by_level.append(gradient[1].copy())
                advance(progress, 1, sigma=float(self.sigmas[level]))
        finally:
            progress.close()
        return self._finish_chain(x, gradient, denoise, n_steps_per_level, by_level, traced,
                                  None if steps is None else np.array(steps))

    def _chain_start(self, n, seed):
        """(x_0 (n,) ~ N(0, 1) in the model's dtype, the Langevin noise's seed), both from
        ``seed``: what every device starts a chain from."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(n, dtype=self.dtype)
        return x, int(rng.integers(2 ** 63))

    def _chain_levels(self, step_lr):
        """(beff2 (L, 196), beff3 (L,), alphas (L,)) of the chain: the per-level biases of the
        score network and alpha_l = step_lr sigma_l^2 / sigma_L^2, in the model's dtype."""
        beff2, beff3 = self.score.effective_biases(self.sigmas)
        return beff2, beff3, (step_lr * self.sigmas ** 2 / self.sigmas[-1] ** 2).astype(self.dtype)

    def _diverged(self, step_lr, level):
        """The ValueError of a chain whose samples are NaN or inf after noise level ``level``."""
        return ValueError(
            f"step_lr={step_lr:g} made the samples NaN or inf at noise level {level}"
            f" (sigma={self.sigmas[level]:.3g}); use a smaller step_lr (default {STEP_LR:g})")

    def _finish_chain(self, x, gradient, denoise, n_steps_per_level, by_level, traced, by_step):
        """The result of :meth:`sample` from the chain's end: x (n,) and ``gradient`` (dx0,
        grad_sq, or ()) are denoised in place where asked, x is mapped to data coordinates,
        and with a gradient a :class:`SamplerGradient` of ``by_level`` ((L + 1, n) rows),
        ``traced`` and ``by_step`` ((T + 1, k), or None) comes with the samples."""
        if denoise:
            self._denoise(x, *gradient)
        samples = (x.astype(np.float64) * self.std + self.mean).astype(self.dtype)[:, None]
        if not gradient:
            return samples
        return samples, SamplerGradient(
            data_std=self.std, dx0=gradient[0], grad_sq=gradient[1],
            grad_sq_by_level=np.asarray(by_level), steps_per_level=n_steps_per_level,
            traced=traced, grad_sq_by_step=by_step)

    def _denoise(self, x, dx0=None, grad_sq=None):
        """x <- x + sigma_L^2 s(x, sigma_L) in place, in fixed-size chunks; with dx0 and grad_sq,
        the gradient is carried through the step: f = 1 + sigma_L^2 s'(x), dx0 <- f dx0,
        grad_sq <- f^2 grad_sq (the step adds no noise). s'(x) is the score network's backward
        pass of the chunk's sum (samples are independent); it overwrites ``score.grads``."""
        sigma = float(self.sigmas[-1])
        scale = self.dtype.type(sigma ** 2)
        chunk = np.zeros((DENOISE_CHUNK, 1), self.dtype)
        ones = np.ones((DENOISE_CHUNK, 1), self.dtype)
        for start in range(0, x.size, DENOISE_CHUNK):
            rows = min(DENOISE_CHUNK, x.size - start)
            part = slice(start, start + rows)
            chunk[:rows, 0] = x[part]
            step = scale * self.score._forward(chunk, sigma)[:rows, 0]
            if dx0 is not None:
                f = 1 + scale * self.score._backward(ones, need_grad_x=True)[:rows, 0]
                dx0[part] *= f
                grad_sq[part] *= f * f
            x[part] += step

    # ----------------------------------------------------------------- persistence

    def save(self, path_dir):
        """Write the trained model to the folder ``path_dir``, whole or not at all
        (:func:`npgen.models.saved.save_model`): ``score.npz`` (the score network in npgen's
        one network-file format, with its noise levels and the data's std, so that ``npgen
        lipschitz`` reads it; see :meth:`npgen.ScoreNetwork.save`) and ``config.json``
        (constructor arguments and standardization, written last). Optimizer state and the
        training stream are not saved. A folder that is not empty and holds no saved SGM is
        refused."""
        if self.mean is None:
            raise RuntimeError("save needs a trained model: call fit first")
        save_model(self, path_dir, network_extras={"score": {"noise_levels": self.sigmas,
                                                             "data_std": self.std}},
                   standardization={"mean": self.mean, "std": self.std})

    @classmethod
    def load(cls, path_dir, backend=None):
        """Read a model written by :meth:`save`. Refused in one sentence naming the field: a
        config.json without the standardization its network was trained with, or a score.npz
        whose noise levels or data std are not config.json's."""
        return load_model(cls, path_dir, backend, kinds=("ScoreNetwork",), restore=_restore_standardization)


def _restore_standardization(model, meta, files):
    """:func:`npgen.models.saved.load_model`'s ``restore`` for the SGM: the data's mean and
    std from config.json, checked against score.npz."""
    path, recorded = files["score"]
    source = f"{path[:-len('score.npz')]}config.json"
    standardization = meta.get("standardization")
    for field in ("mean", "std"):
        if not isinstance(standardization, dict) or standardization.get(field) is None:
            raise ValueError(f"{source} records no standardization.{field}, but {path} holds a trained"
                             " score network: a saved SGM records the mean and std of the data it"
                             " was trained on")
    try:
        model.mean = check_number("standardization.mean", standardization["mean"])
        model.std = check_number("standardization.std", standardization["std"], low=0, low_open=True)
    except ValueError as err:
        raise ValueError(f"{source} is corrupt ({err})") from None
    check_recorded(path, recorded, {"noise_levels": model.sigmas.tolist()}, f"{source} (its sigmas)")
    check_recorded(path, recorded, {"data_std": model.std}, f"{source} (its standardization.std)")


# --------------------------------------------------------------------------- data in R^d

#: Song & Ermon (2020)'s defaults for images in [0, 1] that npgen takes for 784-d data: the
#: smallest noise level, the number of levels (technique 2 asks for a ratio gamma with
#: Phi(sqrt(2d)(gamma - 1) + 3 gamma) - Phi(sqrt(2d)(gamma - 1) - 3 gamma) ~ 0.5, which is
#: gamma ~ 1.08 at d = 784: about 100 levels from sigma_1 ~ 20 down to 0.01) and the Langevin
#: steps per level (technique 4's T; 5 in their image experiments).
SIGMA_MIN = 0.01
N_LEVELS = 100
VECTOR_STEPS_PER_LEVEL = 5
#: Rows used to estimate the largest distance between data points (technique 1).
DISTANCE_ROWS = 2000
#: Samples moved by one kernel call (each chunk has its own noise stream, see VectorSGM.sample).
VECTOR_SAMPLE_CHUNK = 5000


def largest_distance(data, rows=DISTANCE_ROWS, seed=0):
    """max ||x_i - x_j|| over ``rows`` rows of ``data`` (n, d) drawn without replacement (all
    rows when n <= rows): Song & Ermon (2020)'s technique 1 sets sigma_1 to the largest pairwise
    distance of the data; on a subsample this is a lower estimate of it. Float64; one Gram
    product, ||x_i - x_j||^2 = ||x_i||^2 + ||x_j||^2 - 2 x_i . x_j."""
    data = np.asarray(data)
    if len(data) > rows:
        data = data[np.sort(np.random.default_rng(seed).choice(len(data), rows, replace=False))]
    x = data.astype(np.float64)
    squares = np.einsum("ij,ij->i", x, x)
    gram = squares[:, None] + squares[None, :] - 2 * (x @ x.T)
    return float(np.sqrt(max(gram.max(), 0.0)))


def geometric_noise_levels(sigma_max, sigma_min=SIGMA_MIN, n_levels=N_LEVELS):
    """sigma_l = sigma_max (sigma_min / sigma_max)^(l / (L - 1)), l = 0 .. L-1: the geometric
    sequence of Song & Ermon (2019, 2020), largest first."""
    sigma_max = check_number("sigma_max", sigma_max, low=0, low_open=True)
    sigma_min = check_number("sigma_min", sigma_min, low=0, high=sigma_max, low_open=True, high_open=True)
    n_levels = check_number("n_levels", n_levels, low=2, high=10 ** 4, integer=True)
    return np.geomspace(sigma_max, sigma_min, n_levels)


def stationary_variance_ratio(a, gamma, n_steps):
    """Song & Ermon (2020)'s technique 4: the variance after T steps at one level, over
    sigma_l^2, of Langevin on the score of N(0, sigma_l^2 I) started from N(0, sigma_{l-1}^2 I).

    Their step x <- x + alpha' s(x) + sqrt(2 alpha') z is npgen's x <- x + (alpha / 2) s(x) +
    sqrt(alpha) z with alpha' = alpha / 2; with alpha_l = eps sigma_l^2 / sigma_L^2 (npgen's
    step_size eps) it is x <- (1 - a) x + sqrt(2 a) sigma_l z, a = eps / (2 sigma_L^2), whose
    variance v <- (1 - a)^2 v + 2 a sigma_l^2 from v = gamma^2 sigma_l^2 (gamma = sigma_{l-1} /
    sigma_l) is, after T steps,
        v / sigma_l^2 = (1 - a)^(2T) (gamma^2 - 2 / (2 - a)) + 2 / (2 - a),
    which technique 4 wants about 1."""
    return (1 - a) ** (2 * n_steps) * (gamma ** 2 - 2 / (2 - a)) + 2 / (2 - a)


def langevin_step_size(sigmas, n_steps):
    """npgen's step_size eps (alpha_l = eps sigma_l^2 / sigma_L^2) by technique 4: the
    a = eps / (2 sigma_L^2) in (0, 1) that brings :func:`stationary_variance_ratio` closest to 1
    (with the ratio gamma of the first two levels; every ratio, for geometric levels), found on
    a fine grid. Returns (eps, the ratio reached)."""
    sigmas = check_noise_levels(sigmas)
    n_steps = check_number("n_steps_per_level", n_steps, low=1, integer=True)
    gamma = sigmas[0] / sigmas[1] if sigmas.size > 1 else 1.0
    a = np.geomspace(1e-6, 0.999, 20001)
    ratio = stationary_variance_ratio(a, gamma, n_steps)
    best = int(np.argmin(np.abs(ratio - 1)))
    return float(2 * a[best] * sigmas[-1] ** 2), float(ratio[best])


class _VectorSGMBuffers:
    """Arrays of one training batch size, allocated once."""

    def __init__(self, model, n):
        d, dt = model.data_dim, model.dtype
        self.levels = np.empty(n, np.int64)
        self.eps = np.empty((n, d), dt)
        self.noisy = np.empty((n, d), dt)
        self.grad_raw = np.empty((n, d), dt)


class VectorSGM:
    """Score-based generative model of data in R^d (the MNIST experiments: d = 784).

    The model of Song & Ermon (2019) with the techniques of Song & Ermon (2020):

    * noise levels ``sigmas``, largest first; :func:`largest_distance` and
      :func:`geometric_noise_levels` give technique 1's sigma_1 (the largest distance between
      data points) and its geometric sequence down to :data:`SIGMA_MIN`;
    * the score network :class:`npgen.nn.DenseScoreNetwork` (preconditioned, and confining far
      from the data so that no chain runs off);
    * denoising score matching with Song & Ermon's weight lambda(sigma) = sigma^2, one level
      drawn uniformly per row: for clean rows x_i, eps_i ~ N(0, I), x~_i = x_i + sigma_i eps_i,
          L = 1 / (2B) sum_i sigma_i^2 ||s(x~_i, sigma_i) + eps_i / sigma_i||^2
            = 1 / (2B) sum_i ||sigma_i s(x~_i, sigma_i) + eps_i||^2;
      a mean over the batch with a level per row, where the univariate :class:`SGM` keeps the
      published code's one level per batch and sum. Measured on Figure 7's two noisy digits
      (width 256, 30 levels, 10 epochs of batch 128, the same seed and steps): with a level per
      batch and the sum, the relative score error is 0.41 / 1.16 / 17.2 at sigma = 0.20 / 0.044 /
      0.01 against 0.39 / 0.65 / 1.77 with a level per row and the mean, and the sampler puts
      65.8% / 14.7% / 19.5% of 1000 samples below / between / above the modes (25% outside the
      data's widened range) against 51.4% / 0% / 48.6% (0.2%): consecutive Adam steps on one
      level each mix gradients of very different scales in the moment estimates;
      the data are used as they are (no standardization: the levels are in the data's units);
    * annealed Langevin sampling from x ~ N(mu, sigma_1^2 I), ``n_steps_per_level`` steps per
      level of x <- x + (alpha_l / 2) s(x, sigma_l) + sqrt(alpha_l) z with
      alpha_l = step_size sigma_l^2 / sigma_L^2; ``step_size=None`` takes technique 4's
      (:func:`langevin_step_size`). No final denoising step, as the paper's sampler.

    Parameters: ``data_dim``, ``sigmas``, ``hidden_sizes``, ``data_mean``, ``data_scale`` and
    ``activation`` (of the score network: the data's mean and standard deviation precondition it),
    ``n_steps_per_level``, ``step_size``, ``lr`` and ``betas`` (Adam), ``dtype``, ``seed`` (the
    training stream: initialization, levels, noise, shuffling) and ``backend``.
    """

    buffer_type = _VectorSGMBuffers

    def __init__(self, data_dim, sigmas, hidden_sizes=HIDDEN_SIZES, data_mean=0.0, data_scale=1.0,
                 activation=ACTIVATION, n_steps_per_level=VECTOR_STEPS_PER_LEVEL, step_size=None,
                 lr=2e-4, betas=(0.9, 0.999), dtype="float32", seed=0, backend=None):
        self.data_dim = check_number("data_dim", data_dim, low=1, integer=True)
        self.sigmas = check_noise_levels(sigmas)
        self.n_steps_per_level = check_number("n_steps_per_level", n_steps_per_level, low=1,
                                              high=10 ** 6, integer=True)
        if step_size is None:
            step_size, self.variance_ratio = langevin_step_size(self.sigmas, self.n_steps_per_level)
        else:
            self.variance_ratio = None
        self.step_size = check_number("step_size", step_size, low=0, low_open=True)
        self.lr = check_number("lr", lr, low=0, low_open=True)
        self.betas = check_betas(betas)
        self.dtype = dtype_of(dtype)
        self.seed = check_seed(seed)
        self.rng = np.random.default_rng(self.seed)
        self.score = DenseScoreNetwork(self.data_dim, self.sigmas, hidden_sizes, data_mean,
                                       data_scale, activation, dtype=self.dtype, seed=int(self.rng.integers(2 ** 32)),
                                       backend=backend)
        self.optimizer = Adam(self.score, lr=self.lr, betas=self.betas)
        self._buffers_by_size = {}
        self.trained = False
        # per level: sigma_l, A = s_d c_l and K = sigma_l c_l^2 (see _denoising_loss)
        net = self.score
        self._level_sigmas = self.sigmas.astype(self.dtype)
        self._raw_scales = (net.data_scale * net.in_scales).astype(self.dtype)
        self._skips = (self.sigmas * net.skip_scales).astype(self.dtype)

    def config(self):
        """The constructor arguments (without the backend), as a JSON-able dict."""
        return {"data_dim": self.data_dim, "sigmas": self.sigmas.tolist(),
                "hidden_sizes": list(self.score.hidden_sizes), "data_mean": self.score.data_mean,
                "data_scale": self.score.data_scale,
                "activation": self.score.activation,
                "n_steps_per_level": self.n_steps_per_level, "step_size": self.step_size,
                "lr": self.lr, "betas": list(self.betas), "dtype": self.dtype.name, "seed": self.seed}

    def networks(self):
        """The trained networks by name (one: the score network)."""
        return {"score": self.score}

    @property
    def alphas(self):
        """alpha_l = step_size sigma_l^2 / sigma_L^2 (float64)."""
        return self.step_size * self.sigmas ** 2 / self.sigmas[-1] ** 2

    # ----------------------------------------------------------------- training

    def _buffers(self, n):
        if n not in self._buffers_by_size:
            self._buffers_by_size[n] = self.buffer_type(self, n)
        return self._buffers_by_size[n]

    def denoising_loss(self, x, eps, levels):
        """L of the class doc for clean rows x (n, d), noise eps (n, d) and level indices (n,);
        writes dL/dtheta into ``score.grads`` and returns L (a float)."""
        x = check_matrix("x", x, self.data_dim, self.dtype)
        eps = check_matrix("eps", eps, self.data_dim, self.dtype)
        if eps.shape != x.shape:
            raise ValueError(f"eps must have the shape of x {x.shape}, got {eps.shape}")
        levels = self.score._check_levels(levels, len(x))
        buf = self._buffers(len(x))
        buf.levels[...] = levels
        buf.eps[...] = eps
        return self._denoising_loss(x, buf)

    def _denoising_loss(self, x, buf):
        """With sigma s = A r - K (x~ - mu) (A = s_d c_l, K = sigma_l c_l^2, the network's module
        doc), the residual is R = A r - K (x~ - mu) + eps, L = ||R||^2 / (2B), dL/dr = A R / B:
        the backend's score_matching_noisy_levels and score_matching_loss_levels
        (:mod:`npgen.kernels.numpy_ref` has their math)."""
        score = self.score
        backend = score.backend
        backend.score_matching_noisy_levels(x, buf.eps, buf.levels, self._level_sigmas, buf.noisy)
        raw = score._forward_raw(buf.noisy, buf.levels)
        loss = backend.score_matching_loss_levels(raw, buf.noisy, buf.eps, buf.levels,
                                                  self._raw_scales, self._skips, score.data_mean,
                                                  buf.grad_raw)
        score._backward_raw(buf.grad_raw, need_grad_x=False)
        return loss

    def step(self, batch):
        """One Adam step on a minibatch (n, d) with fresh levels and noise; returns {'loss': L}."""
        batch = check_matrix("batch", batch, self.data_dim, self.dtype)
        buf = self._buffers(len(batch))
        buf.levels[...] = self.rng.integers(self.sigmas.size, size=len(batch))
        self.rng.standard_normal(out=buf.eps, dtype=self.dtype)
        loss = self._denoising_loss(batch, buf)
        self.optimizer.step()
        return {"loss": loss}

    def fit(self, data, epochs=100, batch_size=128, quiet=False, on_epoch=None):
        """Train on ``data`` (n, d) for ``epochs`` shuffled passes of ``batch_size``; returns the
        per-epoch mean losses (:func:`npgen.models.training.fit_loop`)."""
        data = check_matrix("data", as_real_array("data", data, self.dtype, f"(n, {self.data_dim})"),
                            self.data_dim, self.dtype)
        history = fit_loop(self, data, epochs, batch_size, self.rng, "SGM", quiet=quiet,
                           on_epoch=on_epoch)
        self.trained = True
        return history

    # ----------------------------------------------------------------- sampling

    @one_blas_thread
    def sample(self, n, seed=None, quiet=False):
        """n samples (n, d) of annealed Langevin dynamics (class doc).

        The start and the noise come from ``seed`` alone: chunk c of :data:`VECTOR_SAMPLE_CHUNK`
        rows starts from its rows of one N(mu, sigma_1^2 I) draw (mu the network's ``data_mean``;
        the data blurred at sigma_1 is about that) and moves with the noise stream
        noise_seed + c, so a seed gives the same samples on every backend, to float rounding.
        A step size that makes the samples NaN or inf raises ValueError naming the level.
        """
        if not self.trained:
            raise RuntimeError("sample needs a trained model: call fit first (or load a saved model)")
        n = check_number("n", n, low=1, high=MAX_SAMPLES // self.data_dim, integer=True)
        if seed is not None:
            seed = check_seed(seed)
        quiet = check_bool("quiet", quiet)
        rng = np.random.default_rng(seed)
        x = (rng.standard_normal((n, self.data_dim)) * self.sigmas[0] + self.score.data_mean).astype(self.dtype)
        noise_seed = int(rng.integers(2 ** 62))
        alphas = self.alphas.astype(self.dtype)
        steps = self.n_steps_per_level
        progress = progress_bar(self.sigmas.size, label="SGM sampling", unit="level", quiet=quiet)
        try:
            for level in range(self.sigmas.size):
                arguments = self.score.langevin_arguments(level)
                for chunk, start in enumerate(range(0, n, VECTOR_SAMPLE_CHUNK)):
                    self.score.backend.annealed_langevin_mlp(
                        x[start:start + VECTOR_SAMPLE_CHUNK], *arguments, alphas[level:level + 1],
                        steps, noise_seed + chunk, level * steps, self.score.activation_code,
                        self.score.slope)
                self._check_finite(x, level)
                advance(progress, 1, sigma=float(self.sigmas[level]))
        finally:
            progress.close()
        return x

    def _check_finite(self, x, level):
        """One ValueError, naming the step size and the level, when x is no longer finite."""
        if not np.isfinite(x).all():
            raise ValueError(f"step_size={self.step_size:g} made the samples NaN or inf at noise"
                             f" level {level} (sigma={self.sigmas[level]:.3g}); use a smaller step_size")

    # ----------------------------------------------------------------- persistence

    def save(self, path_dir):
        """Write the model to the folder ``path_dir``, whole or not at all: ``score.npz`` (the
        network, :meth:`npgen.nn.DenseScoreNetwork.save`) and ``config.json``
        (:func:`npgen.models.saved.save_model`). Optimizer state and the training stream are
        not saved. A folder that is not empty and holds no saved VectorSGM is refused."""
        save_model(self, path_dir)

    @classmethod
    def load(cls, path_dir, backend=None):
        """Read a model written by :meth:`save`."""
        return load_model(cls, path_dir, backend, kinds=("DenseScoreNetwork",))
