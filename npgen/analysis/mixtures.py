"""Distances between Gaussian mixtures: MW2 (Delon & Desolneux, 2020) and MGW2 (Salmona, Delon
& Desolneux, 2024), a mode-coverage number for generated samples.

A mixture mu = sum_k w_k N(m_k, S_k) is a :class:`Mixture`. Between two Gaussians the squared
2-Wasserstein distance has the closed (Bures-Wasserstein) form

    W2^2(N(m, S), N(n, T)) = |m - n|^2 + tr S + tr T - 2 tr (S^1/2 T S^1/2)^1/2.

* MW2 restricts the couplings of the 2-Wasserstein problem to Gaussian mixtures; it reduces
  to the discrete optimal transport problem between the component weights with those costs,

      MW2^2(mu, nu) = min_{omega in Pi(w, v)} sum_{k,l} omega_kl W2^2(mu_k, nu_l),

  the problem ``ot.gmm.gmm_ot_loss`` solves (it returns this squared value, as :func:`mw2`
  does). MW2 >= W2, and both vanish only for equal mixtures.
* MGW2 is its Gromov form: it compares each mixture's own geometry, the matrix of W2^2 between
  its components, so it is invariant to isometries of either space and compares mixtures in
  different dimensions:

      MGW2^2(mu, nu) = min_{omega in Pi(w, v)} sum_{i,j,k,l}
                       (W2^2(mu_i, mu_k) - W2^2(nu_j, nu_l))^2 omega_ij omega_kl,

  a small discrete Gromov-Wasserstein problem (``ot.gromov.gromov_wasserstein2``, square loss).

Fitting a mixture to samples (:func:`fit_mixture`) uses scikit-learn's ``GaussianMixture`` with
full covariances. :func:`target_mixture` is the paper's two-Gaussian target, the law that
``npgen.data.two_gaussians`` samples.
"""

from dataclasses import dataclass

import numpy as np

from ..util.checks import as_real_array, check_number, check_seed
from ..util.environment import import_kept
from ..util.threads import threadpool_limits

#: Random starting couplings tried by :func:`mgw2` besides the independent one.
MGW2_RESTARTS = 20
#: How far the weights of a :class:`Mixture` may sum from 1 before they are refused.
WEIGHT_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class Mixture:
    """A Gaussian mixture sum_k weights[k] N(means[k], covariances[k]) in R^d.

    weights (K,) non-negative, summing to 1 (renormalised exactly); means (K, d); covariances
    (K, d, d) symmetric positive semi-definite (a singular one is a Gaussian on a subspace, as
    the image of a lower-dimensional mixture under an embedding). Stored as read-only float64
    arrays; a mistake raises ValueError naming the field.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    def __post_init__(self):
        weights = as_real_array("weights", self.weights, np.float64, "(K,)")
        means = as_real_array("means", self.means, np.float64, "(K, d)")
        covariances = as_real_array("covariances", self.covariances, np.float64, "(K, d, d)")
        if weights.ndim != 1 or weights.size == 0:
            raise ValueError(f"weights must be a non-empty 1-D array (K,), got shape {weights.shape}")
        k = weights.size
        if means.ndim != 2 or means.shape[0] != k or means.shape[1] == 0:
            raise ValueError(f"means must have shape (K, d) = ({k}, d) with d >= 1, got {means.shape}")
        d = means.shape[1]
        if covariances.shape != (k, d, d):
            raise ValueError(f"covariances must have shape (K, d, d) = {(k, d, d)}, got {covariances.shape}")
        if (weights < 0).any() or abs(weights.sum() - 1) > WEIGHT_SUM_TOLERANCE:
            raise ValueError(f"weights must be non-negative and sum to 1, got {weights.tolist()}")
        scale = max(1.0, float(np.abs(covariances).max()))
        if np.abs(covariances - covariances.transpose(0, 2, 1)).max() > 1e-9 * scale:
            raise ValueError("covariances must be symmetric matrices")
        if np.linalg.eigvalsh(covariances).min() < -1e-9 * scale:
            raise ValueError("covariances must be positive semi-definite")
        for name, value in (("weights", weights / weights.sum()), ("means", means),
                            ("covariances", (covariances + covariances.transpose(0, 2, 1)) / 2)):
            value = np.array(value, np.float64)
            value.flags.writeable = False
            object.__setattr__(self, name, value)

    @property
    def n_components(self):
        """K, the number of components."""
        return self.weights.size

    @property
    def dimension(self):
        """d, the dimension of the space the mixture lives in."""
        return self.means.shape[1]


def target_mixture(m, sigma=1.0, weight=0.5, d=1):
    """The paper's target weight N(-m 1_d, sigma^2 I) + (1 - weight) N(m 1_d, sigma^2 I), the
    law of ``npgen.data.two_gaussians(m, sigma, d=d, weight=weight)``."""
    m = check_number("m", m, low=0)
    sigma = check_number("sigma", sigma, low=0, low_open=True)
    weight = check_number("weight", weight, low=0, high=1)
    d = check_number("d", d, low=1, integer=True)
    means = np.array([[-m] * d, [m] * d], np.float64)
    covariances = np.repeat(sigma ** 2 * np.eye(d)[None], 2, axis=0)
    return Mixture(np.array([weight, 1 - weight]), means, covariances)


def fit_mixture(samples, n_components, seed=0):
    """The maximum-likelihood Gaussian mixture of ``n_components`` full-covariance components
    fitted to ``samples`` (n,) or (n, d) by EM (scikit-learn's ``GaussianMixture``, k-means
    start, seeded by ``seed``, its default covariance floor of 1e-6 on the diagonal).

    EM runs with one thread for every thread pool, so the fit is the same whatever the
    caller's thread settings."""
    x = as_real_array("samples", samples, np.float64, "(n,) or (n, d)")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"samples must have shape (n,) or (n, d), got {x.shape}")
    n_components = check_number("n_components", n_components, low=1, integer=True)
    if x.shape[0] < n_components:
        raise ValueError(f"samples must hold at least n_components={n_components} rows to fit "
                         f"that many components, got {x.shape[0]}")
    seed = check_number("seed", seed, low=0, high=2 ** 32 - 1, integer=True)
    GaussianMixture = import_kept("sklearn.mixture").GaussianMixture
    model = GaussianMixture(n_components, covariance_type="full", random_state=seed)
    with threadpool_limits(limits=1):
        model.fit(x)
    return Mixture(model.weights_, model.means_, model.covariances_)


def _check_mixture(name, value):
    if not isinstance(value, Mixture):
        raise ValueError(f"{name} must be an npgen.analysis.mixtures.Mixture, got {type(value).__name__}")
    return value


def _sqrtm_psd(covariances):
    """Symmetric square roots of positive semi-definite matrices (..., d, d), from their
    eigendecompositions with rounding's tiny negative eigenvalues taken as 0."""
    values, vectors = np.linalg.eigh(covariances)
    return (vectors * np.sqrt(np.clip(values, 0, None))[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def component_w2_squared(a, b):
    """W2^2(a_k, b_l) for every pair of components (K_a, K_b), by the Bures-Wasserstein closed
    form of the module doc (the costs of ``ot.gmm.dist_bures_squared``, with square roots
    that also accept singular covariances). ``a`` and ``b`` live in one dimension."""
    a, b = _check_mixture("a", a), _check_mixture("b", b)
    if a.dimension != b.dimension:
        raise ValueError(f"a and b must live in one dimension for W2, got {a.dimension} and "
                         f"{b.dimension} (mgw2 compares mixtures across dimensions)")
    root_a = _sqrtm_psd(a.covariances)
    cross = _sqrtm_psd(np.einsum("ikl,jlm,imn->ijkn", root_a, b.covariances, root_a))
    means = np.sum((a.means[:, None, :] - b.means[None, :, :]) ** 2, axis=-1)
    traces = (np.trace(a.covariances, axis1=1, axis2=2)[:, None]
              + np.trace(b.covariances, axis1=1, axis2=2)[None, :])
    return np.maximum(means + traces - 2 * np.trace(cross, axis1=2, axis2=3), 0)


def mw2(a, b):
    """MW2^2(a, b), the *squared* mixture-Wasserstein distance (data units squared): the
    optimal transport cost between the component weights with costs
    :func:`component_w2_squared`, solved exactly by ``ot.emd2``, the problem and solver of
    ``ot.gmm.gmm_ot_loss``. Its square root is MW2, an upper bound on W2(a, b)."""
    costs = component_w2_squared(a, b)
    return float(import_kept("ot").emd2(a.weights, b.weights, costs))


def mgw2(a, b, seed=0):
    """MGW2^2(a, b), the *squared* mixture Gromov-Wasserstein distance (data units to the
    fourth power, as the squared differences of W2^2): the discrete Gromov-Wasserstein
    problem of the module doc between the component weights, with each mixture's matrix of
    W2^2 between its own components. ``a`` and ``b`` may live in different dimensions.

    The problem is not convex: ``ot.gromov.gromov_wasserstein2`` (conditional gradient)
    starts from the independent coupling and from ``MGW2_RESTARTS`` random vertices of the
    coupling polytope (the ``ot.emd`` plans of random costs, drawn from ``seed``), and the
    smallest local minimum is returned. It is an upper bound on MGW2^2, equal to it when one
    of the starts reaches the global minimum (as it does for a mixture and its image under an
    isometry, where 0 is reached)."""
    a, b = _check_mixture("a", a), _check_mixture("b", b)
    seed = check_seed(seed)
    own_a = component_w2_squared(a, a)
    own_b = component_w2_squared(b, b)
    rng = np.random.default_rng(seed)
    ot = import_kept("ot")
    starts = [np.outer(a.weights, b.weights)]
    starts += [ot.emd(a.weights, b.weights, rng.random((a.n_components, b.n_components)))
               for _ in range(MGW2_RESTARTS)]
    return min(max(float(ot.gromov.gromov_wasserstein2(own_a, own_b, a.weights, b.weights,
                                                        "square_loss", G0=start)), 0.0)
               for start in starts)
