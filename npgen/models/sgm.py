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

import os
from dataclasses import dataclass

import numpy as np

from ..nn.adam import Adam
from ..nn.files import read_network_file
from ..nn.score import SLOPE, SLOPE_X, ScoreNetwork
from ..util.checks import (as_real_array, check_betas, check_bool, check_choice, check_matrix,
                           check_number, dtype_of)
from ..util.io import check_model_folder, read_model_meta, write_model_meta
from ..util.progress import Progress
from ..util.threads import one_blas_thread
from .training import MAX_SAMPLES, fit_loop

#: The paper's noise levels, largest first.
NOISE_LEVELS = 0.6 ** np.arange(10)
#: Loss weights w(sigma) by name.
WEIGHTINGS = {"paper": lambda sigma: sigma, "sigma2": lambda sigma: sigma * sigma}
#: Annealed Langevin defaults: base step size and steps per noise level.
STEP_LR = 2e-5
STEPS_PER_LEVEL = 100
#: Rows evaluated at once by the final denoising step (one reusable workspace).
DENOISE_CHUNK = 4096


def check_noise_levels(sigmas):
    """Return ``sigmas`` as a float64 array if it is a strictly decreasing sequence of positive numbers."""
    try:
        levels = np.asarray(sigmas, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"sigmas must be a sequence of positive numbers, got {sigmas!r}") from None
    if levels.ndim != 1 or levels.size == 0 or not np.isfinite(levels).all() or (levels <= 0).any():
        raise ValueError(f"sigmas must be a non-empty 1-D sequence of positive finite numbers, got {sigmas!r}")
    if (np.diff(levels) >= 0).any():
        raise ValueError(f"sigmas must be strictly decreasing (largest level first), got {sigmas!r}")
    return levels


def _check_trace(trace, n, lipschitz):
    """The sample indices of ``trace`` as an int64 array (None for no trace)."""
    if trace is None:
        return None
    if not lipschitz:
        raise ValueError("trace records the sampler's gradient, so it needs lipschitz=True")
    indices = np.asarray(trace)
    if indices.ndim != 1 or indices.size == 0 or indices.dtype.kind not in "iu":
        raise ValueError(f"trace must be a non-empty 1-D sequence of sample indices (ints), got {trace!r}")
    if indices.min() < 0 or indices.max() >= n:
        raise ValueError(f"trace indices must lie in [0, n - 1] = [0, {n - 1}], got {indices.min()}"
                         f" to {indices.max()}")
    return indices.astype(np.int64)


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


class SGM:
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
        self.seed = check_number("seed", seed, low=0, integer=True)
        self.rng = np.random.default_rng(self.seed)
        self.score = ScoreNetwork(dtype=self.dtype, seed=int(self.rng.integers(2 ** 32)),
                                  backend=backend)
        self.optimizer = Adam(self.score, lr=self.lr, betas=self.betas)
        self.mean = None
        self.std = None

    def config(self):
        """The constructor arguments (without the backend), as a JSON-able dict."""
        return {"weighting": self.weighting, "sigmas": self.sigmas.tolist(), "lr": self.lr,
                "betas": list(self.betas), "dtype": self.dtype.name, "seed": self.seed}

    def networks(self):
        """The trained networks by name (one: the score network)."""
        return {"score": self.score}

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
        return self._denoising_loss(x, eps, sigma)

    def _denoising_loss(self, x, eps, sigma):
        noisy = x + self.dtype.type(sigma) * eps
        residual = self.score._forward(noisy, sigma) + eps / self.dtype.type(sigma)
        weight = WEIGHTINGS[self.weighting](sigma)
        loss = weight * float(np.sum(residual.astype(np.float64) ** 2))
        self.score._backward((2 * weight) * residual, need_grad_x=False)
        return loss

    def step(self, batch):
        """One Adam step on a minibatch of *standardized* data (n, 1); returns {'loss': L / n}.

        The step follows the gradient of the batch sum L (:meth:`denoising_loss`, the published
        code's loss); the reported loss is its per-sample mean L / n, comparable with the GAN's
        and the VAE's and across batch sizes.
        """
        batch = check_matrix("batch", batch, 1, self.dtype)
        sigma = float(self.sigmas[self.rng.integers(self.sigmas.size)])
        eps = self.rng.standard_normal(batch.shape, dtype=self.dtype)
        loss = self._denoising_loss(batch, eps, sigma)
        self.optimizer.step()
        return {"loss": loss / len(batch)}

    def fit(self, data, epochs=400, batch_size=1000, quiet=False, on_epoch=None):
        """Train on ``data`` (n, 1) for ``epochs`` shuffled passes of ``batch_size``.

        The first call fixes the standardization (mean and std of ``data``, kept afterwards);
        the model trains on (data - mean) / std. Returns the per-epoch mean losses (see
        :func:`npgen.models.training.fit_loop`, which also documents ``on_epoch``).
        """
        data = self._check_data(data)
        if self.mean is None:
            values = data.astype(np.float64)
            std = float(values.std())
            if std == 0:
                raise ValueError("data must not be constant: its standard deviation is 0")
            self.mean, self.std = float(values.mean()), std
        standardized = ((data - self.mean) / self.std).astype(self.dtype)
        return fit_loop(self, standardized, epochs, batch_size, self.rng, "SGM", quiet=quiet,
                        on_epoch=on_epoch)

    # ----------------------------------------------------------------- sampling

    @one_blas_thread
    def sample(self, n, seed=None, denoise=False, step_lr=STEP_LR,
               n_steps_per_level=STEPS_PER_LEVEL, quiet=False, lipschitz=False, trace=None):
        """n samples of annealed Langevin dynamics, in data coordinates: shape (n, 1).

        The start x ~ N(0, 1) and the Langevin noise come from ``seed`` alone (see
        ``npgen.kernels.numpy_ref.annealed_langevin``), so a seed gives the same samples on every
        backend, to float rounding; without a seed every call draws fresh samples.
        ``quiet=False`` prints a progress line over the levels. A step size that makes the
        samples NaN or inf raises ValueError, naming the level where it happened.

        ``lipschitz=True`` also tracks the gradient of the whole sampler, a map
        g(x_0, z_1, ..., z_T) of its T + 1 standard normal inputs, for each sample, and returns
        ``(samples, SamplerGradient)`` (see :class:`SamplerGradient`). ``trace``, a sequence of
        sample indices (with ``lipschitz=True`` only), also records those samples' squared
        gradient norm after every step; the samples are the same, the steps then run one kernel
        call each.
        """
        if self.mean is None:
            raise RuntimeError("sample needs a trained model: call fit first (or load a saved model)")
        n = check_number("n", n, low=1, high=MAX_SAMPLES, integer=True)
        if seed is not None:
            seed = check_number("seed", seed, low=0, integer=True)
        denoise = check_bool("denoise", denoise)
        quiet = check_bool("quiet", quiet)
        lipschitz = check_bool("lipschitz", lipschitz)
        step_lr = check_number("step_lr", step_lr, low=0, low_open=True)
        n_steps_per_level = check_number("n_steps_per_level", n_steps_per_level, low=1,
                                         integer=True)
        traced = _check_trace(trace, n, lipschitz)
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(n, dtype=self.dtype)
        noise_seed = int(rng.integers(2 ** 63))
        w = self.score.weights
        beff2, beff3 = self.score.effective_biases(self.sigmas)
        alphas = (step_lr * self.sigmas ** 2 / self.sigmas[-1] ** 2).astype(self.dtype)
        gradient = (np.ones_like(x), np.ones_like(x)) if lipschitz else ()
        by_level = [gradient[1].copy()] if lipschitz else None
        steps = [gradient[1][traced].copy()] if traced is not None else None
        n_calls, steps_per_call = (n_steps_per_level, 1) if traced is not None else (1, n_steps_per_level)
        progress = Progress(self.sigmas.size, label="SGM sampling", unit="level", quiet=quiet)
        try:
            for level in range(self.sigmas.size):
                one = slice(level, level + 1)
                for call in range(n_calls):
                    self.score.backend.annealed_langevin(
                        x, w["fc_1.weight"], w["fc_1.bias"], w["fc_2.x"], beff2[one], w["fc_3.x"],
                        beff3[one], alphas[one], steps_per_call, noise_seed,
                        level * n_steps_per_level + call, SLOPE_X, SLOPE, *gradient)
                    if steps is not None:
                        steps.append(gradient[1][traced].copy())
                if not np.isfinite(x).all():
                    raise ValueError(
                        f"step_lr={step_lr:g} made the samples NaN or inf at noise level {level}"
                        f" (sigma={self.sigmas[level]:.3g}); use a smaller step_lr (default {STEP_LR:g})")
                if lipschitz:
                    by_level.append(gradient[1].copy())
                progress.update(1, sigma=float(self.sigmas[level]))
        finally:
            progress.close()
        if denoise:
            self._denoise(x, *gradient)
        samples = (x.astype(np.float64) * self.std + self.mean).astype(self.dtype)[:, None]
        if not lipschitz:
            return samples
        return samples, SamplerGradient(
            data_std=self.std, dx0=gradient[0], grad_sq=gradient[1],
            grad_sq_by_level=np.array(by_level), steps_per_level=n_steps_per_level,
            traced=traced, grad_sq_by_step=None if steps is None else np.array(steps))

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
        """Write the model to the directory ``path_dir``: ``score.npz`` (the score network in
        npgen's one network-file format, with its noise levels and the data's std, so that
        ``npgen lipschitz`` reads it; see :meth:`npgen.ScoreNetwork.save`) and ``config.json``
        (constructor arguments and standardization, written last). Optimizer state and the
        training stream are not saved. A folder that is not empty and holds no saved SGM is
        refused."""
        check_model_folder(path_dir, "SGM")
        path_dir = os.fspath(path_dir)
        os.makedirs(path_dir, exist_ok=True)
        self.score.save(os.path.join(path_dir, "score.npz"), noise_levels=self.sigmas,
                        data_std=self.std)
        write_model_meta(path_dir, "SGM", self.config(),
                         standardization={"mean": self.mean, "std": self.std})

    @classmethod
    def load(cls, path_dir, backend=None):
        """Read a model written by :meth:`save`."""
        meta = read_model_meta(path_dir, "SGM")
        try:
            model = cls(**meta["config"], backend=backend)
            mean, std = meta["standardization"]["mean"], meta["standardization"]["std"]
            if mean is not None:
                model.mean = check_number("standardization mean", mean)
                model.std = check_number("standardization std", std, low=0, low_open=True)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path_dir}/config.json is corrupt ({type(err).__name__}: {err})") from None
        path = os.path.join(os.fspath(path_dir), "score.npz")
        _, arrays = read_network_file(path, ("ScoreNetwork",))
        model.score.load_state_dict(arrays)
        return model
