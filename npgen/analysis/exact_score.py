"""The exact score of a blurred isotropic Gaussian mixture, and annealed Langevin driven by it.

Every data set of the univariate study (1/2 N(-m, 1) + 1/2 N(m, 1)) and Figure 7's two noisy
digits (1/2 N(c3, 0.15^2 I) + 1/2 N(c7, 0.15^2 I) in R^784) is a mixture
nu = sum_k w_k N(mu_k, s_k^2 I_d). Blurred by N(0, sigma^2 I_d), the noised data an SGM is
trained on at level sigma, it is again a mixture, with variances v_k = s_k^2 + sigma^2, so its
score is closed-form (:func:`npgen.kernels.numpy_ref.blurred_mixture_score`):

    log p_sigma(x) = logsumexp_k [log w_k - (d/2) log(2 pi v_k) - ||x - mu_k||^2 / (2 v_k)],
    s_sigma(x) = sum_k r_k(x) (mu_k - x) / v_k,     r_k = responsibilities (softmax of the above),
    and in 1-D s_sigma'(x) = sum_k r_k (a_k^2 - 1/v_k) - s_sigma(x)^2,  a_k = (mu_k - x) / v_k.

Units. The 1-D SGM trains on standardized data z = (x - mean) / scale (its levels sigma are in
those units), so the score its network learns is that of the standardized mixture
sum_k w_k N((mu_k - mean) / scale, (s_k / scale)^2) blurred by sigma:
    s_z(z, sigma) = scale * s_x(mean + scale z, scale sigma)
(:meth:`IsotropicMixture.standardized` gives that mixture). The 784-d SGM trains on pixels as
they are, so there the data's own mixture is the network's target.

**The same sampler with the exact score.** :func:`exact_langevin_1d` and
:func:`exact_langevin_nd` draw the start and the Langevin noise exactly as
:meth:`npgen.models.SGM.sample` and :meth:`npgen.models.VectorSGM.sample` do from a seed (the
counter-based stream of :mod:`npgen.kernels.numpy_ref`), and take the same levels, steps and
step sizes; only the score differs, and the chain runs in float64.
"""

from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..kernels import numpy_ref
from ..util.checks import check_number

#: Samples moved per kernel call of the 1-D exact chain (their noise block is n x T float64).
CHAIN_CHUNK = 1024


@dataclass(frozen=True)
class IsotropicMixture:
    """sum_k w_k N(mu_k, s_k^2 I_d): weights (K,), means (K, d), stds (K,) (float64)."""

    weights: np.ndarray
    means: np.ndarray
    stds: np.ndarray

    def __post_init__(self):
        weights = np.asarray(self.weights, np.float64).ravel()
        means = np.asarray(self.means, np.float64)
        means = means.reshape(-1, 1) if means.ndim == 1 else means
        stds = np.asarray(self.stds, np.float64).ravel()
        if (means.ndim != 2 or weights.shape != (means.shape[0],) or stds.shape != weights.shape
                or weights.size == 0):
            raise ValueError(f"an IsotropicMixture takes K weights, K means (K, d) and K stds; got"
                             f" shapes {weights.shape}, {means.shape}, {stds.shape}")
        if not (np.all(weights > 0) and np.all(stds >= 0) and np.isfinite(means).all()
                and np.isclose(weights.sum(), 1.0)):
            raise ValueError("mixture weights must be positive and sum to 1, stds >= 0, means finite")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "stds", stds)

    @classmethod
    def two_modes(cls, m, std=1.0):
        """1/2 N(-m, std^2) + 1/2 N(m, std^2): the univariate study's data (std 1)."""
        m = check_number("m", m, low=0)
        return cls([0.5, 0.5], [[-m], [m]], [std, std])

    @property
    def dim(self):
        return self.means.shape[1]

    def variances(self, sigmas):
        """V[l, k] = s_k^2 + sigma_l^2 (L, K) for the levels ``sigmas``."""
        return self.stds ** 2 + np.asarray(sigmas, np.float64).reshape(-1, 1) ** 2

    def standardized(self, mean, scale):
        """The mixture of z = (x - mean) / scale: means (mu_k - mean) / scale, stds s_k / scale."""
        scale = check_number("scale", scale, low=0, low_open=True)
        return IsotropicMixture(self.weights, (self.means - mean) / scale, self.stds / scale)

    def _check_points(self, x):
        x = np.asarray(x, np.float64)
        x = x.reshape(-1, 1) if x.ndim == 1 and self.dim == 1 else x
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"points must be an (n, {self.dim}) array, got shape {x.shape}")
        return x

    def _evaluate(self, x, sigma, need_slope=False):
        sigma = check_number("sigma", sigma, low=0)
        return numpy_ref.blurred_mixture_score(self._check_points(x), np.log(self.weights), self.means,
                                               self.variances([sigma])[0], need_slope)

    def log_density(self, x, sigma=0.0):
        """log p_sigma(x) (n,) of the mixture blurred by N(0, sigma^2 I)."""
        return self._evaluate(x, sigma)[1]

    def score(self, x, sigma=0.0):
        """s_sigma(x) = grad log p_sigma(x) (n, d)."""
        return self._evaluate(x, sigma)[0]

    def score_slope(self, x, sigma=0.0):
        """s_sigma'(x) (n,) in one dimension (closed form, module doc)."""
        if self.dim != 1:
            raise ValueError("score_slope is the derivative of a scalar score: the mixture must be 1-D")
        return self._evaluate(x, sigma, need_slope=True)[2]


def relative_score_errors(score_at_level, mixture, sigmas, clean, seed=0):
    """Per level l, E||s_theta(x~) - s(x~)||^2 / E||s(x~)||^2 over x~ = x + sigma_l eps (x the
    rows of ``clean`` (n, d), eps ~ N(0, I) from ``seed``): x~ is distributed as the data blurred
    at sigma_l, and s is the exact score of ``mixture`` blurred at sigma_l. Both scores must be
    in one unit system: ``mixture``, ``clean`` and ``sigmas`` in the units the network sees.
    ``score_at_level(x~, l)`` returns the network's (n, d) scores. Returns a list of floats."""
    clean = np.asarray(clean, np.float64)
    rng = np.random.default_rng(seed)
    errors = []
    for level, sigma in enumerate(np.asarray(sigmas, np.float64)):
        noisy = clean + sigma * rng.standard_normal(clean.shape)
        exact = mixture.score(noisy, sigma)
        learned = np.asarray(score_at_level(noisy, level), np.float64).reshape(exact.shape)
        errors.append(float(np.sum((learned - exact) ** 2) / np.sum(exact ** 2)))
    return errors


@dataclass(frozen=True)
class LangevinChain:
    """A 1-D annealed Langevin chain in float64 on given noise: levels ``sigmas`` (L,), step
    sizes ``alphas`` (L,), ``steps_per_level`` S, and a score that subclasses supply
    (:meth:`_move`). Calling it on starts x0 (n,) and noise (n, L S) returns x_T, and with
    ``track`` (x_T, d x_T / d x_0, |grad g|^2): the sampler g of the T + 1 = L S + 1 inputs
    and its gradient by the recursion of the Langevin kernels."""

    sigmas: np.ndarray
    alphas: np.ndarray
    steps_per_level: int

    @property
    def n_inputs(self):
        """T + 1 = L S + 1 Gaussian inputs (the start and one normal per step)."""
        return self.alphas.size * self.steps_per_level + 1

    def __call__(self, x0, noise, track=False):
        x = np.array(x0, np.float64)
        gradient = (np.ones_like(x), np.ones_like(x)) if track else ()
        self._move(x, np.ascontiguousarray(self.alphas, np.float64),
                   np.ascontiguousarray(noise, np.float64), gradient)
        return (x, *gradient) if track else x

    def _move(self, x, alphas, noise, gradient):
        raise NotImplementedError


def cpu_kernels():
    """:mod:`npgen.kernels.cpu`, imported at the first chain that needs it: the import compiles
    every CPU kernel when numba's cache is cold (about 30 s), which a process that only plans
    runs or writes a report (the reproduction's own) does not need to pay."""
    return kernels.get_backend("cpu")


@dataclass(frozen=True)
class ExactChain(LangevinChain):
    """:class:`LangevinChain` on the exact score of ``mixture`` (1-D, in the chain's units)
    (:func:`npgen.kernels.cpu.exact_score_langevin_given_noise`)."""

    mixture: IsotropicMixture = None

    def _move(self, x, alphas, noise, gradient):
        m = self.mixture
        cpu_kernels().exact_score_langevin_given_noise(x, np.log(m.weights), m.means[:, 0],
                                                       m.variances(self.sigmas), alphas, noise, *gradient)


def exact_langevin_1d(chain, n, seed, dtype=np.float32, denoise=False):
    """:meth:`npgen.models.SGM.sample`'s chain with the exact score: from ``seed``, the start
    x0 = rng.standard_normal(n, dtype) and the noise stream's seed rng.integers(2^63), as there,
    then ``chain`` (an :class:`ExactChain`) on the stream's normals, CHAIN_CHUNK samples at a
    time. ``denoise``: the final step x <- x + sigma_L^2 s(x), f = 1 + sigma_L^2 s'(x). Returns
    (x_T, dx0, grad_sq) (n,) float64, in standardized units."""
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(n, dtype=dtype).astype(np.float64)
    noise_seed = int(rng.integers(2 ** 63))
    out = [np.empty(n) for _ in range(3)]
    noise = np.empty((min(n, CHAIN_CHUNK), chain.n_inputs - 1))
    for first in range(0, n, CHAIN_CHUNK):
        rows = slice(first, min(n, first + CHAIN_CHUNK))
        block = noise[:rows.stop - first]
        cpu_kernels().langevin_noise_block(noise_seed, first, 0, block)
        for target, value in zip(out, chain(start[rows], block, track=True)):
            target[rows] = value
    if denoise:
        x, dx0, grad_sq = out
        sigma2 = float(chain.sigmas[-1]) ** 2
        f = 1 + sigma2 * chain.mixture.score_slope(x, chain.sigmas[-1])
        out = [x + sigma2 * chain.mixture.score(x, chain.sigmas[-1])[:, 0], f * dx0, f * f * grad_sq]
    return tuple(out)


def exact_langevin_nd(mixture, sigmas, alphas, steps_per_level, n, seed, start_mean, chunk,
                      dtype=np.float32, n_drawn=None):
    """:meth:`npgen.models.VectorSGM.sample`'s chain with the exact score, in the data's units:
    from ``seed``, x0 = rng.standard_normal((n_drawn, d)) sigma_1 + start_mean (rounded to
    ``dtype``; n_drawn defaults to n) and the stream seed rng.integers(2^62), of which the first
    n rows move, so with ``n_drawn`` the samples of a run that drew n_drawn, these are its first
    n rows' chains; rows of chunk c (``chunk`` rows each) read the
    normals z(seed + c, i d + j, step) of the stream, as the 784-d kernel does. Each step is
    x <- x + (alpha_l / 2) s_l(x) + sqrt(alpha_l) z with s_l the score of ``mixture`` blurred at
    sigma_l (float64). Returns x (n, d) float64."""
    d = mixture.dim
    sigmas, alphas = np.asarray(sigmas, np.float64), np.asarray(alphas, np.float64)
    rng = np.random.default_rng(seed)
    n_drawn = n if n_drawn is None else check_number("n_drawn", n_drawn, low=n, integer=True)
    x = (rng.standard_normal((n_drawn, d))[:n] * sigmas[0] + start_mean).astype(dtype).astype(np.float64)
    noise_seed = int(rng.integers(2 ** 62))
    noise = np.empty((2, min(n, chunk) * d))
    log_weights, variances = np.log(mixture.weights), mixture.variances(sigmas)
    for c, first in enumerate(range(0, n, chunk)):
        rows = x[first:first + chunk]
        even, odd = noise[:, :rows.size]
        for step in range(alphas.size * steps_per_level):
            level = step // steps_per_level
            if step % 2 == 0:
                cpu_kernels().langevin_noise_pair(noise_seed + c, 0, step // 2, even, odd)
            score, _ = numpy_ref.blurred_mixture_score(rows, log_weights, mixture.means, variances[level])
            z = (odd if step % 2 else even).reshape(rows.shape)
            rows += alphas[level] / 2 * score + np.sqrt(alphas[level]) * z
    return x
