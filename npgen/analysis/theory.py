r"""The paper's lower bounds for push-forward models g#mu, as plain numeric functions.

Setting (Salmona et al., 2022, Section 3): mu = N(0, Id_p) is the latent Gaussian, g : R^p -> R^d
is Lipschitz with constant Lip(g), and g#mu is the generated distribution. nu is the data
distribution. Throughout,

    phi(x) = (2 pi)^(-1/2) exp(-x^2 / 2)        standard normal density
    Phi(x) = int_{-inf}^x phi(t) dt             standard normal CDF
    A_r    = {x : dist(x, A) <= r}              r-enlargement of a set A
    alpha_g(A, r) = Phi(r / Lip(g) + Phi^-1(g#mu(A)))      lower bound on g#mu(A_r)
    beta_g(A, r)  = alpha_g(A, r) - g#mu(A)                 lower bound on g#mu(A_r \ A)

Contents, in the paper's order:

* ``isoperimetric_profile``: phi(Phi^-1(t)) (Figure 1).
* Theorem 1: ``theorem1_surface_bound``, ``theorem1_enlargement_bound``, ``beta_bound``.
* Corollary 2: ``corollary2_lip_lower_bound``, ``corollary2_log_lip_lower_bound``.
* Corollary 3: ``monge_map_lipschitz``, ``monge_map_log_lipschitz`` (with ``GaussianMixture1D``).
* Theorem 4 and Corollaries 5, 6: ``theorem4_tv_bound``, ``corollary5_tv_bound``,
  ``corollary6_tv_bound``.
* Theorem 7 and Corollary 8: ``theorem7_kl_bound``, ``corollary8_kl_bound``.
* Figure 3: ``mass_between_modes_bound``, its inverse in Lip ``theorem1_required_lipschitz``,
  ``mixture_mass_between``.
* Figure 3's bound for other one-dimensional latents: ``half_line_mass_between_bound``
  (symmetric log-concave), ``cauchy_isoperimetric_profile``, ``cauchy_enlargement_bound``,
  ``cauchy_mass_between_bound`` (Cauchy).
* Bounds estimated from samples of g#mu: ``best_tv_bound``, ``best_kl_bound``.
* A summary for the command line: ``bounds_table``, ``format_bounds_table``.

Every function broadcasts over its array arguments and stays accurate in the far tails: Phi and
Phi^-1 near 0 and 1 go through ``scipy.special`` (ndtr, log_ndtr, ndtri, ndtri_exp), and a
difference Phi(b) - Phi(a) of two numbers close to 1 is taken as a difference of upper tails.
Masses are ordinary floats, so a mass can be no closer to 1 than about 1.1e-16; masses close
to 0 (down to the smallest float) are handled exactly. Bad input raises ValueError naming the
argument.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _as_real_array(name, x):
    try:
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond any float
        raise ValueError(f"{name} must be a real number or an array of real numbers, got {x!r}") from None


def _check_range(name, x, low=None, high=None, low_closed=True, high_closed=True, accepted=None):
    """Return ``x`` as a float array after checking low (<=|<) x (<=|<) high; NaN is rejected."""
    arr = _as_real_array(name, x)
    ok = ~np.isnan(arr)
    if low is not None:
        ok &= (arr >= low) if low_closed else (arr > low)
    if high is not None:
        ok &= (arr <= high) if high_closed else (arr < high)
    if not ok.all():
        bad = float(arr[~ok].flat[0])
        raise ValueError(f"{name} must be {accepted}, got {bad!r}")
    return arr


def _positive(name, x):
    return _check_range(name, x, 0.0, math.inf, False, False, "a finite number > 0")


def _nonnegative(name, x):
    return _check_range(name, x, 0.0, math.inf, True, False, "a finite number >= 0")


def _probability(name, x):
    return _check_range(name, x, 0.0, 1.0, True, True, "a probability in [0, 1]")


def _open_probability(name, x):
    return _check_range(name, x, 0.0, 1.0, False, False, "a probability in the open interval (0, 1)")


def _scalar_or_array(x):
    """Return a Python float for 0-d results and the array otherwise."""
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else x


# --------------------------------------------------------------------------------------------
# Standard normal helpers, stable in the tails
# --------------------------------------------------------------------------------------------


def _norm_ppf(p):
    """Phi^-1(p), using the exact complement 1 - p for p > 1/2 (Sterbenz: 1 - p is exact there)."""
    p = np.asarray(p, dtype=float)
    return np.where(p > 0.5, -special.ndtri(1.0 - p), special.ndtri(p))


#: Gauss-Legendre nodes and weights on [-1, 1] for the short integrals of _normal_quantile_gap.
_GAUSS_LEGENDRE_NODES, _GAUSS_LEGENDRE_WEIGHTS = np.polynomial.legendre.leggauss(24)
#: Newton steps allowed for that gap; it converges in under ten from its start (tests check).
_GAP_NEWTON_STEPS = 40


def _one_minus_sum(p, q):
    """1 - p - q for p, q in [0, 1], accurate relative to itself even when it is tiny: 1 - p is
    split exactly into its rounded value s and error e (Fast2Sum, as 1 >= p), and when q is
    close to s, s - q is exact (Sterbenz)."""
    s = 1.0 - p
    e = (1.0 - s) - p
    return (s - q) + e


def _normal_quantile_gap(p, q):
    r"""Phi^-1(p + q) - Phi^-1(p) for p, q >= 0 with p + q <= 1, to about 1e-15 relative even
    where q is tiny against p (forming p + q would round q away) or p + q is close to 1.

    * Mirror. With r = 1 - p - q (:func:`_one_minus_sum`) and Phi^-1(1 - u) = -Phi^-1(u), the
      gap is also Phi^-1(r + q) - Phi^-1(r); take the smaller outer mass a = min(p, r) <= 1/2
      and the larger b = max(p, r) = 1 - a - q, both known to a rounding of themselves.
    * q > a: x0 = Phi^-1(a) <= 0 and x1 = Phi^-1(a + q) (a + q <= 1/2) or -Phi^-1(b), each
      from its own tail, and the gap is x1 - x0. It is then at least
      Phi^-1(2a) - Phi^-1(a) >~ log(2) / |x0|, so the subtraction loses at most a factor
      ~ x0^2 <= 1.5e3 on the rounding of x0 and a + q is rounded relative to about q.
    * q <= a: the gap d solves q = int_{x0}^{x0 + d} phi = phi(x0) J(d) with
      J(d) = int_0^d exp(-x0 u - u^2 / 2) du, i.e. J(d) = c := (q / a) Phi(x0) / phi(x0), and
      Phi(x0) / phi(x0) = sqrt(pi / 2) erfcx(-x0 / sqrt(2)) (no underflow of phi(x0) even at
      the smallest a). J is a 24-point Gauss-Legendre sum: the exponent changes by
      (x0^2 - (x0 + d)^2) / 2 <= ~1 over [0, d] (the mass q <= a = Phi(x0) puts x0 + d below
      Phi^-1(2a)), where the rule is exact to rounding. Newton's steps
      d <- d - (J(d) - c) / exp(-x0 d - d^2 / 2) start from d = c; for q << a this is
      d = q / phi(x0) (1 + x0 d / 2 + ...), the series of Phi^-1 in q (its derivative is
      1 / phi(Phi^-1)).
    """
    p, q = np.broadcast_arrays(np.asarray(p, dtype=float), np.asarray(q, dtype=float))
    r = np.maximum(_one_minus_sum(p, q), 0.0)
    a, b = np.minimum(p, r), np.maximum(p, r)
    with np.errstate(divide="ignore", invalid="ignore"):
        x0 = special.ndtri(a)
        x1 = np.where(b >= 0.5, special.ndtri(np.minimum(a + q, 0.5)), -special.ndtri(b))
        subtracted = x1 - x0
        small = (q <= a) & (a > 0) & (q > 0)  # the Newton branch; elsewhere it runs on dummies
        base = np.where(small, x0, 0.0)
        target = np.where(small, q / np.where(small, a, 1.0), 0.0) * math.sqrt(0.5 * math.pi) * \
            special.erfcx(-base / math.sqrt(2.0))
        d = target
        for _ in range(_GAP_NEWTON_STEPS):
            u = 0.5 * d[..., None] * (1.0 + _GAUSS_LEGENDRE_NODES)
            integral = 0.5 * d * np.sum(_GAUSS_LEGENDRE_WEIGHTS * np.exp(-base[..., None] * u - 0.5 * u * u), axis=-1)
            step = (integral - target) / np.exp(-base * d - 0.5 * d * d)
            d = d - step
            if np.all(np.abs(step) <= 1e-16 * d):
                break
    return np.where(small, d, subtracted)


def _log_phi(x):
    """log phi(x)."""
    return -0.5 * np.square(x) - _LOG_SQRT_2PI


def _phi_interval(a, b):
    """Phi(b) - Phi(a), as a difference of upper tails when a > 0 so nothing cancels near 1."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    return np.where(a > 0, special.ndtr(-a) - special.ndtr(-b), special.ndtr(b) - special.ndtr(a))


def _logsumexp_last_axis(x):
    """log sum exp over the last axis (a lean version of scipy.special.logsumexp for small axes)."""
    top = np.max(x, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):  # every term -inf: the sum is 0 and its log is -inf
        return np.log(np.sum(np.exp(x - top), axis=-1)) + top[..., 0]


def _log1mexp(x):
    """log(1 - exp(x)) for x <= 0, accurate for x near 0 and for x very negative."""
    x = np.asarray(x, dtype=float)
    near_zero = x > -math.log(2.0)
    with np.errstate(divide="ignore"):  # x == 0 gives log(0) = -inf, which is the right answer
        close = np.log(-np.expm1(np.minimum(x, 0.0)))
        far = np.log1p(-np.exp(np.minimum(x, -math.log(2.0))))
    return np.where(near_zero, close, far)


def _log_phi_interval(a, b):
    """log(Phi(b) - Phi(a)) for a <= b, accurate when the interval lies far in a tail.

    Uses log Phi(b) + log(1 - Phi(a)/Phi(b)) on the lower tail and the mirrored form on the
    upper tail; -inf when a == b.
    """
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    upper = a > 0
    lo = np.where(upper, -b, a)  # mirror the upper tail to the lower tail: (a, b) -> (-b, -a)
    hi = np.where(upper, -a, b)
    log_hi = special.log_ndtr(hi)
    log_lo = special.log_ndtr(lo)
    with np.errstate(invalid="ignore"):  # -inf - (-inf) only when both ends are -inf (empty set)
        ratio = np.where(np.isneginf(log_lo), -np.inf, log_lo - log_hi)
    return np.where(np.isneginf(log_hi), -np.inf, log_hi + _log1mexp(ratio))


# --------------------------------------------------------------------------------------------
# Figure 1 and Theorem 1
# --------------------------------------------------------------------------------------------


def isoperimetric_profile(t):
    r"""Gaussian isoperimetric profile I(t) = phi(Phi^-1(t)) (Figure 1 of the paper).

    I(t) is the smallest Gaussian surface area mu^+(\partial A) of a set A with mu(A) = t
    (Sudakov-Tsirelson); the minimizers are half-spaces. I(0) = I(1) = 0, I(1/2) = (2 pi)^(-1/2),
    and I(t) = I(1 - t).

    Parameters
    ----------
    t : float or array, in [0, 1]
        Gaussian mass of the set.
    """
    t = _probability("t", t)
    # I is symmetric, so evaluate at the smaller of t and 1 - t, where Phi^-1 is most accurate.
    z = special.ndtri(np.minimum(t, 1.0 - t))
    return _scalar_or_array(np.exp(_log_phi(z)))


def theorem1_surface_bound(mass, lip):
    r"""Theorem 1, inequality (1): lower bound on the g#mu-surface area of \partial A.

        (g#mu)^+(\partial A) >= phi(Phi^-1(g#mu(A))) / Lip(g)

    In one dimension with A = (-inf, t] the surface area is the density of g#mu at t, so this
    says a Lip(g)-Lipschitz push-forward of N(0, Id) cannot have a low density anywhere inside
    the bulk of its mass.

    Parameters
    ----------
    mass : float or array in [0, 1]
        g#mu(A), the generated mass of the set A.
    lip : float or array > 0
        Lipschitz constant of g (any upper bound on it also gives a valid bound).
    """
    mass = _probability("mass", mass)
    lip = _positive("lip", lip)
    return _scalar_or_array(isoperimetric_profile(mass) / lip)


def theorem1_enlargement_bound(mass, r, lip):
    r"""Theorem 1, inequality (2): alpha_g(A, r), the lower bound on g#mu(A_r).

        g#mu(A_r) >= alpha_g(A, r) = Phi(r / Lip(g) + Phi^-1(g#mu(A)))

    Parameters
    ----------
    mass : float or array in [0, 1]
        g#mu(A).
    r : float or array >= 0
        Enlargement radius, in data units.
    lip : float or array > 0
        Lipschitz constant of g.
    """
    mass = _probability("mass", mass)
    r = _nonnegative("r", r)
    lip = _positive("lip", lip)
    return _scalar_or_array(special.ndtr(r / lip + _norm_ppf(mass)))


def _beta_and_complement(mass, delta):
    """(beta, 1 - beta) for beta = Phi(delta + Phi^-1(mass)) - mass, both without cancellation."""
    a = _norm_ppf(mass)
    b = a + delta
    beta = _phi_interval(a, b)
    one_minus_beta = special.ndtr(-b) + mass  # 1 - alpha + g#mu(A)
    return beta, one_minus_beta


def _checked_beta(name, mass, r, lip):
    """Validate g#mu(A) (argument ``name``), r and Lip; return (g#mu(A), beta, 1 - beta) with
    beta = beta_g(A, r) of :func:`beta_bound`."""
    mass = _probability(name, mass)
    r = _nonnegative("r", r)
    lip = _positive("lip", lip)
    return (mass,) + _beta_and_complement(mass, r / lip)


def beta_bound(mass, r, lip):
    r"""beta_g(A, r) = alpha_g(A, r) - g#mu(A), the lower bound on g#mu(A_r \ A) (Section 3.2).

        g#mu(A_r \ A) >= Phi(r / Lip(g) + Phi^-1(g#mu(A))) - g#mu(A)
                       = int_{Phi^-1(g#mu(A))}^{Phi^-1(g#mu(A)) + r / Lip(g)} phi(t) dt

    It follows from Theorem 1 (2) since A \subset A_r. Computed as the Gaussian mass of the
    interval on the right, so it stays accurate when g#mu(A) is close to 0 or 1.

    Parameters
    ----------
    mass : float or array in [0, 1]
        g#mu(A).
    r : float or array >= 0
        Enlargement radius.
    lip : float or array > 0
        Lipschitz constant of g.
    """
    return _scalar_or_array(_checked_beta("mass", mass, r, lip)[1])


# --------------------------------------------------------------------------------------------
# Corollary 2: how large Lip(g) must be to push mu exactly onto a two-Gaussian mixture
# --------------------------------------------------------------------------------------------


def corollary2_log_lip_lower_bound(distance, sigma=1.0, lam=0.5):
    r"""Corollary 2, in log form: log of the smallest possible Lip(g) when g#mu = nu.

    For nu = lam N(m1, sigma^2 Id) + (1 - lam) N(m2, sigma^2 Id) and any Lipschitz g with
    g#mu = nu,

        Lip(g) >= sigma exp(||m2 - m1||^2 / (8 sigma^2) - Phi^-1(lam)^2 / 2),

    so this returns log(sigma) + D^2 / (8 sigma^2) - Phi^-1(lam)^2 / 2 with D = ||m2 - m1||.

    Derivation: apply Theorem 1 (1) to the half-space H whose boundary is the bisecting
    hyperplane of m1 and m2. Projected on u = (m2 - m1) / D, nu is lam N(-D/2, sigma^2) +
    (1 - lam) N(D/2, sigma^2), so nu^+(\partial H) = phi(D / (2 sigma)) / sigma and
    nu(H) = lam Phi(D/(2 sigma)) + (1 - lam) Phi(-D/(2 sigma)), which lies between lam and 1/2.
    Hence phi(Phi^-1(nu(H))) >= phi(Phi^-1(lam)) and
    Lip(g) >= phi(Phi^-1(nu(H))) / nu^+(\partial H) >= sigma phi(Phi^-1(lam)) / phi(D / (2 sigma)).
    (The first inequality is an equality when lam = 1/2.)

    The paper's univariate experiments use nu = 1/2 N(-m, 1) + 1/2 N(m, 1), i.e. distance = 2m;
    for m = 10 the bound is exp(50).

    Parameters
    ----------
    distance : float or array >= 0
        D = ||m2 - m1||, the distance between the two means (2m for N(-m, .) and N(m, .)).
    sigma : float or array > 0
        Common standard deviation of the two components.
    lam : float or array in (0, 1)
        Weight of the first component.
    """
    distance = _nonnegative("distance", distance)
    sigma = _positive("sigma", sigma)
    lam = _open_probability("lam", lam)
    value = np.log(sigma) + np.square(distance) / (8.0 * np.square(sigma)) - 0.5 * np.square(_norm_ppf(lam))
    return _scalar_or_array(value)


def corollary2_lip_lower_bound(distance, sigma=1.0, lam=0.5):
    r"""Corollary 2: Lip(g) >= sigma exp(D^2 / (8 sigma^2) - Phi^-1(lam)^2 / 2) whenever g#mu = nu.

    See ``corollary2_log_lip_lower_bound`` for the setting and the derivation. The value
    overflows to inf beyond about exp(709); use the log version for very separated modes.

    Parameters
    ----------
    distance : float or array >= 0
        D = ||m2 - m1|| (2m for the paper's 1/2 N(-m, 1) + 1/2 N(m, 1)).
    sigma : float or array > 0
        Common standard deviation of the two components.
    lam : float or array in (0, 1)
        Weight of the first component.
    """
    log_bound = corollary2_log_lip_lower_bound(distance, sigma, lam)
    with np.errstate(over="ignore"):
        return _scalar_or_array(np.exp(log_bound))


# --------------------------------------------------------------------------------------------
# One-dimensional Gaussian mixtures
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GaussianMixture1D:
    r"""A one-dimensional Gaussian mixture nu = sum_k w_k N(mean_k, sigma_k^2).

    Parameters
    ----------
    means : sequence of floats
        Component means.
    sigmas : sequence of floats > 0
        Component standard deviations.
    weights : sequence of floats in (0, 1]
        Component weights; they must sum to 1 (within 1e-9).

    All methods broadcast over their array arguments; log versions stay finite far in the tails.
    """

    means: tuple
    sigmas: tuple
    weights: tuple

    def __post_init__(self):
        means = _check_range("means", np.atleast_1d(self.means), -math.inf, math.inf, False, False, "finite")
        sigmas = _positive("sigmas", np.atleast_1d(self.sigmas))
        weights = _check_range("weights", np.atleast_1d(self.weights), 0.0, 1.0, False, True, "in (0, 1]")
        if not (means.ndim == sigmas.ndim == weights.ndim == 1 and means.size == sigmas.size == weights.size):
            raise ValueError(
                f"means, sigmas and weights must be 1-D and of one length, got sizes "
                f"{means.size}, {sigmas.size}, {weights.size}"
            )
        if abs(weights.sum() - 1.0) > 1e-9:
            raise ValueError(f"weights must sum to 1, got {weights.sum()!r}")
        object.__setattr__(self, "means", tuple(float(v) for v in means))
        object.__setattr__(self, "sigmas", tuple(float(v) for v in sigmas))
        object.__setattr__(self, "weights", tuple(float(v) for v in weights / weights.sum()))

    @classmethod
    def symmetric(cls, m, sigma=1.0, weight=0.5):
        """The paper's mixture weight N(-m, sigma^2) + (1 - weight) N(m, sigma^2)."""
        m = float(_nonnegative("m", m))
        sigma = float(_positive("sigma", sigma))
        weight = float(_open_probability("weight", weight))
        return cls((-m, m), (sigma, sigma), (weight, 1.0 - weight))

    def _standardized(self, x):
        """(x - mean_k) / sigma_k with the component index on a new last axis."""
        x = _check_range("x", x, accepted="a real number (not NaN)")
        return (x[..., None] - np.asarray(self.means)) / np.asarray(self.sigmas)

    @property
    def _log_weights(self):
        return np.log(np.asarray(self.weights))

    def logpdf(self, x):
        """log of the density: log sum_k w_k phi((x - mean_k) / sigma_k) / sigma_k."""
        u = self._standardized(x)
        terms = self._log_weights + _log_phi(u) - np.log(np.asarray(self.sigmas))
        return _scalar_or_array(_logsumexp_last_axis(terms))

    def pdf(self, x):
        """Density of the mixture at x."""
        return _scalar_or_array(np.exp(self.logpdf(x)))

    def logcdf(self, x):
        """log nu((-inf, x])."""
        u = self._standardized(x)
        return _scalar_or_array(_logsumexp_last_axis(self._log_weights + special.log_ndtr(u)))

    def logsf(self, x):
        """log nu((x, inf))."""
        u = self._standardized(x)
        return _scalar_or_array(_logsumexp_last_axis(self._log_weights + special.log_ndtr(-u)))

    def cdf(self, x):
        """nu((-inf, x])."""
        u = self._standardized(x)
        return _scalar_or_array(special.ndtr(u) @ np.asarray(self.weights))

    def sf(self, x):
        """nu((x, inf)) = 1 - cdf(x), accurate in the upper tail."""
        u = self._standardized(x)
        return _scalar_or_array(special.ndtr(-u) @ np.asarray(self.weights))

    def mass(self, a, b):
        """nu([a, b]) for a <= b (negative if b < a), accurate when [a, b] lies in a tail."""
        ua, ub = self._standardized(a), self._standardized(b)
        return _scalar_or_array(_phi_interval(ua, ub) @ np.asarray(self.weights))

    def log_mass(self, a, b):
        """log nu([a, b]) for a <= b, finite even when the mass is below the smallest float."""
        ua, ub = self._standardized(a), self._standardized(b)
        ua, ub = np.minimum(ua, ub), np.maximum(ua, ub)
        return _scalar_or_array(_logsumexp_last_axis(self._log_weights + _log_phi_interval(ua, ub)))


# --------------------------------------------------------------------------------------------
# Corollary 3: the Monge map has the smallest Lipschitz constant in one dimension
# --------------------------------------------------------------------------------------------


def _log_monge_slope(mixture, x):
    r"""log T'(z) at the latent point z = T^-1(x), for T = F_nu^-1 o Phi.

    T'(z) = phi(z) / f_nu(T(z)), and with x = T(z), z = Phi^-1(F_nu(x)). z is taken from
    log F_nu(x) on the left of the median and from log(1 - F_nu(x)) on the right, so it is
    exact even where F_nu(x) rounds to 0 or 1.
    """
    log_cdf = np.asarray(mixture.logcdf(x))
    log_sf = np.asarray(mixture.logsf(x))
    left = log_cdf <= log_sf
    z = np.where(left, special.ndtri_exp(np.minimum(log_cdf, -math.log(2.0))),
                 -special.ndtri_exp(np.minimum(log_sf, -math.log(2.0))))
    return _log_phi(z) - np.asarray(mixture.logpdf(x))


def monge_map_log_lipschitz(means, sigmas, weights):
    r"""Corollary 3, in log form: log Lip(T) for the Monge map T = F_nu^-1 o Phi of a 1-D mixture.

    Corollary 3 says that any Lipschitz g : R^p -> R with g#mu = nu has Lip(g) >= Lip(T), where
    T = F_nu^-1 o Phi is the monotone (optimal transport) map from N(0, 1) to nu. Writing
    x = T(z), i.e. z = Phi^-1(F_nu(x)),

        Lip(T) = sup_z T'(z) = sup_x phi(Phi^-1(F_nu(x))) / f_nu(x).

    The supremum is found on a grid in x (a wide uniform grid, a dense grid around each
    component and between each pair of neighbouring means, where the valleys of f_nu are), then
    refined with a bounded scalar search around the best grid point; all in log space. In both
    tails T'(z) tends to max_k sigma_k (from above when there are several components, so the
    supremum is then attained at a finite x); the result is never below that limit. For a single
    Gaussian T' = sigma everywhere and x_at_max is arbitrary.

    Parameters
    ----------
    means, sigmas, weights : sequences of floats
        The mixture nu = sum_k weights[k] N(means[k], sigmas[k]^2); weights sum to 1.

    Returns
    -------
    (log_lip, x_at_max) : (float, float)
        log Lip(T) and the data-space point x = T(z) where the slope is largest (inf when the
        supremum is only reached in the tails, i.e. equals max_k sigma_k).
    """
    mixture = GaussianMixture1D(means, sigmas, weights)
    mu, sd = np.asarray(mixture.means), np.asarray(mixture.sigmas)
    order = np.argsort(mu)
    pieces = [np.linspace((mu - 40.0 * sd).min(), (mu + 40.0 * sd).max(), 4001)]
    pieces += [np.linspace(mu_k - 12.0 * sd_k, mu_k + 12.0 * sd_k, 801) for mu_k, sd_k in zip(mu, sd)]
    pieces += [np.linspace(lo, hi, 801) for lo, hi in zip(mu[order][:-1], mu[order][1:]) if hi > lo]
    grid = np.unique(np.concatenate(pieces))
    log_slopes = _log_monge_slope(mixture, grid)
    best = int(np.argmax(log_slopes))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    log_lip, x_at_max = float(log_slopes[best]), float(grid[best])
    if hi > lo:
        refined = optimize.minimize_scalar(
            lambda x: -float(_log_monge_slope(mixture, x)), bounds=(lo, hi), method="bounded",
            options={"xatol": 1e-10 * max(1.0, abs(x_at_max))},
        )
        if -refined.fun > log_lip:
            log_lip, x_at_max = float(-refined.fun), float(refined.x)
    tail_limit = math.log(sd.max())
    if tail_limit > log_lip:
        return tail_limit, math.inf
    return log_lip, x_at_max


def monge_map_lipschitz(means, sigmas, weights):
    r"""Corollary 3: Lip(T) for the Monge map T = F_nu^-1 o Phi from N(0, 1) to a 1-D mixture nu.

        Lip(T) = sup_x phi(Phi^-1(F_nu(x))) / f_nu(x)  <=  Lip(g) for every g with g#mu = nu.

    See ``monge_map_log_lipschitz`` for the method. For the paper's 1/2 N(-m, 1) + 1/2 N(m, 1)
    the supremum is at x = 0 and equals phi(0) / f_nu(0) = exp(m^2 / 2), which is exactly
    Corollary 2's bound (distance 2m, lam = 1/2): in one dimension that bound is attained.

    Parameters
    ----------
    means, sigmas, weights : sequences of floats
        The mixture nu = sum_k weights[k] N(means[k], sigmas[k]^2).

    Returns
    -------
    (lip, x_at_max) : (float, float)
        Lip(T) (inf once it exceeds the float range) and the point x = T(z) where the slope is
        largest.
    """
    log_lip, x_at_max = monge_map_log_lipschitz(means, sigmas, weights)
    with np.errstate(over="ignore"):
        return float(np.exp(log_lip)), x_at_max


# --------------------------------------------------------------------------------------------
# Total variation: Theorem 4, Corollaries 5 and 6
# --------------------------------------------------------------------------------------------


def theorem4_tv_bound(g_mass_A, nu_mass_A, nu_mass_shell, r, lip):
    r"""Theorem 4: lower bound on d_TV(g#mu, nu) from one set A and one radius r.

        d_TV(g#mu, nu) >= alpha_g(A, r) - min{g#mu(A), nu(A)} - nu(A_r \ A)

    with alpha_g(A, r) = Phi(r / Lip(g) + Phi^-1(g#mu(A))). It holds because
    d_TV >= g#mu(A_r) - nu(A_r) >= alpha - nu(A) - nu(A_r \ A) and
    d_TV >= g#mu(A_r \ A) - nu(A_r \ A) >= alpha - g#mu(A) - nu(A_r \ A).
    It is computed as beta_g(A, r) + max(g#mu(A) - nu(A), 0) - nu(A_r \ A), which avoids
    cancellation. A negative value means the bound says nothing for this (A, r).

    Parameters
    ----------
    g_mass_A : float or array in [0, 1]
        g#mu(A), the generated mass of A.
    nu_mass_A : float or array in [0, 1]
        nu(A), the data mass of A.
    nu_mass_shell : float or array in [0, 1]
        nu(A_r \ A), the data mass of the shell added by the enlargement.
    r : float or array >= 0
        Enlargement radius.
    lip : float or array > 0
        Lipschitz constant of g.
    """
    nu_mass_A = _probability("nu_mass_A", nu_mass_A)
    nu_mass_shell = _probability("nu_mass_shell", nu_mass_shell)
    if np.any(nu_mass_A + nu_mass_shell > 1.0 + 1e-12):
        raise ValueError("nu_mass_A + nu_mass_shell must be <= 1, since A and A_r \\ A are disjoint")
    g_mass_A, beta, _ = _checked_beta("g_mass_A", g_mass_A, r, lip)
    return _scalar_or_array(beta + np.maximum(g_mass_A - nu_mass_A, 0.0) - nu_mass_shell)


def corollary5_tv_bound(distance, lip, lam):
    r"""Corollary 5: d_TV lower bound when nu lives on two disconnected sets M1, M2.

    For nu with nu(M1) = lam, nu(M2) = 1 - lam, lam in [1/2, 1), and d(M1, M2) = distance,

        d_TV(g#mu, nu) >= int_{Phi^-1(lam)}^{Phi^-1(lam) + d(M1, M2) / (2 Lip(g))} phi(t) dt.

    Why it holds: let p_i = g#mu(M_i). By Theorem 1 (2) with A = M1 and any r < d(M1, M2),
    (M1)_r misses M2, so 1 - p2 >= Phi(r / Lip + Phi^-1(p1)), i.e.
    Phi^-1(p1) + Phi^-1(p2) <= -d(M1, M2) / Lip. Also d_TV >= (lam - p1)^+ + (1 - lam - p2)^+
    (take A = the M_i with a deficit). Minimizing over the allowed (p1, p2) gives
    d_TV >= Phi(Phi^-1(lam) + d/Lip) - lam, which is at least the paper's expression (its upper
    limit uses d / (2 Lip)); this function returns the paper's expression. It is positive for
    every Lipschitz g, and tends to 1 - lam as d / Lip grows.

    Parameters
    ----------
    distance : float or array >= 0
        d(M1, M2), the distance between the two supports.
    lip : float or array > 0
        Lipschitz constant of g.
    lam : float or array in [1/2, 1)
        nu(M1), the mass of the heavier support.
    """
    distance = _nonnegative("distance", distance)
    lip = _positive("lip", lip)
    lam = _check_range("lam", lam, 0.5, 1.0, True, False, "in [1/2, 1)")
    start = _norm_ppf(lam)
    return _scalar_or_array(_phi_interval(start, start + distance / (2.0 * lip)))


def _half_gap_shell_mass(distance, sigma, r):
    r"""nu((0, r]) along the axis of 1/2 N(-D/2, sigma^2) + 1/2 N(D/2, sigma^2).

    = (1/2) int_{(D/2 - r)/sigma}^{(D/2 + r)/sigma} phi(t) dt, and its log.
    """
    lo, hi = (distance / 2.0 - r) / sigma, (distance / 2.0 + r) / sigma
    return 0.5 * _phi_interval(lo, hi), _log_phi_interval(lo, hi) - math.log(2.0)


def _corollary_shell_radius(distance, sigma, r):
    if r is None:
        return distance / (4.0 * sigma)
    return _nonnegative("r", r)


def _corollary_arguments(distance, sigma, lip, r):
    """Validate the arguments of Corollaries 6 and 8; r defaults to the paper's D / (4 sigma)."""
    distance = _nonnegative("distance", distance)
    sigma = _positive("sigma", sigma)
    lip = _positive("lip", lip)
    return distance, sigma, lip, _corollary_shell_radius(distance, sigma, r)


def corollary6_tv_bound(distance, sigma, lip, r=None):
    r"""Corollary 6: d_TV lower bound for the balanced mixture of two isotropic Gaussians.

    nu = 1/2 N(m1, sigma^2 Id) + 1/2 N(m2, sigma^2 Id), D = ||m2 - m1||. For every r > 0,

        d_TV(g#mu, nu) >= int_0^{r / Lip(g)} phi(t) dt
                          - (1/2) int_{(D/2 - r)/sigma}^{(D/2 + r)/sigma} phi(t) dt.

    With the paper's choice r = D / (4 sigma) (the default) this reads

        d_TV >= int_0^{D / (4 sigma Lip(g))} phi(t) dt
                - (1/2) int_{D (2 sigma - 1) / (4 sigma^2)}^{D (2 sigma + 1) / (4 sigma^2)} phi(t) dt.

    Derivation (Theorem 4 with a half-space). Let u = (m2 - m1) / D and
    H = {x : <x - (m1 + m2)/2, u> <= 0}, H' = {x : <x - (m1 + m2)/2, u> >= 0}. They cover
    R^d, so g#mu(H) >= 1/2 or g#mu(H') >= 1/2; by the symmetry of nu take H (the other case is
    its mirror image and gives the same numbers). Then nu(H) = 1/2,
    alpha_g(H, r) >= Phi(r / Lip + Phi^-1(1/2)) = Phi(r / Lip), min{g#mu(H), nu(H)} = 1/2, and
    H_r \ H = {0 < <x - (m1 + m2)/2, u> <= r}, a slab whose nu-mass is, projecting nu on u onto
    1/2 N(-D/2, sigma^2) + 1/2 N(D/2, sigma^2),
    1/2 [Phi((r - D/2)/sigma) - Phi(-D/(2 sigma))] + 1/2 [Phi((r + D/2)/sigma) - Phi(D/(2 sigma))]
    = (1/2) [Phi((D/2 + r)/sigma) - Phi((D/2 - r)/sigma)]. Theorem 4 gives the formula above.

    The extracted text of the paper prints the lower limit of the second integral as
    ||m2 - m1|| / (2 sigma - 1) / 4 sigma^2; the derivation gives ||m2 - m1|| (2 sigma - 1) / (4 sigma^2),
    which is the same symbol sequence with a misplaced bracket. Note that r = D / (4 sigma) is
    not scale-invariant (it equals the natural r = D/4 when sigma = 1, the paper's experiments);
    pass ``r`` to use another radius, e.g. r = D / 4. A negative value means the bound is vacuous.

    Parameters
    ----------
    distance : float or array >= 0
        D = ||m2 - m1|| (2m for 1/2 N(-m, sigma^2) + 1/2 N(m, sigma^2)).
    sigma : float or array > 0
        Common standard deviation of the two components.
    lip : float or array > 0
        Lipschitz constant of g.
    r : float or array >= 0, optional
        Width of the slab H_r \ H; defaults to the paper's D / (4 sigma).
    """
    distance, sigma, lip, r = _corollary_arguments(distance, sigma, lip, r)
    shell_mass = _half_gap_shell_mass(distance, sigma, r)[0]
    return _scalar_or_array(_phi_interval(0.0, r / lip) - shell_mass)


# --------------------------------------------------------------------------------------------
# Kullback-Leibler: Theorem 7 and Corollary 8
# --------------------------------------------------------------------------------------------


def _binary_kl_lower_bound(beta, one_minus_beta, log_q, log_one_minus_q):
    r"""kl(beta || q) = beta log(beta / q) + (1 - beta) log((1 - beta) / (1 - q)) if beta > q, else 0.

    q is passed through log q and log(1 - q) so that shell masses below the float range still
    give finite bounds; beta > q is decided in log space.
    """
    inputs = (beta, one_minus_beta, log_q, log_one_minus_q)
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in inputs))
    shape = arrays[0].shape
    beta, one_minus_beta, log_q, log_one_minus_q = (np.ravel(v) for v in arrays)
    result = np.zeros(beta.size)
    active = beta > 0
    active[active] = np.log(beta[active]) > log_q[active]
    b, c = beta[active], one_minus_beta[active]
    result[active] = b * (np.log(b) - log_q[active]) + special.xlogy(c, c) - c * log_one_minus_q[active]
    return result.reshape(shape)


def theorem7_kl_bound(g_mass_A, nu_mass_shell, r, lip):
    r"""Theorem 7: lower bound on d_KL(g#mu || nu) from one set A and one radius r.

    With beta = beta_g(A, r) = Phi(r / Lip(g) + Phi^-1(g#mu(A))) - g#mu(A) and
    q = nu(A_r \ A),

        d_KL(g#mu || nu) >= beta log(beta / q) + (1 - beta) log((1 - beta) / (1 - q))   if beta > q,
                            0                                                           otherwise.

    Why: with S = A_r \ A and P = g#mu(S), the Donsker-Varadhan formula with f = zeta 1_S gives
    d_KL >= sup_{zeta} zeta P - log(1 + (e^zeta - 1) q) = kl(P || q), the binary KL (the same
    as the data-processing inequality on the partition {S, not S}). kl(P || q) increases in P
    for P >= q, and P >= beta by Theorem 1, so kl(beta || q) is a lower bound when beta >= q.
    When beta < q nothing can be said (g#mu = nu is possible), hence 0. The paper states the
    bound without this case distinction; without it the bound would be false (kl is never
    negative, so it cannot "become negative" as the paper's text suggests).

    Parameters
    ----------
    g_mass_A : float or array in [0, 1]
        g#mu(A).
    nu_mass_shell : float or array in [0, 1]
        q = nu(A_r \ A); 0 gives +inf whenever beta > 0.
    r : float or array >= 0
        Enlargement radius.
    lip : float or array > 0
        Lipschitz constant of g.
    """
    q = _probability("nu_mass_shell", nu_mass_shell)
    _, beta, one_minus_beta = _checked_beta("g_mass_A", g_mass_A, r, lip)
    with np.errstate(divide="ignore"):
        log_q, log_one_minus_q = np.log(q), np.log1p(-q)
    return _scalar_or_array(_binary_kl_lower_bound(beta, one_minus_beta, log_q, log_one_minus_q))


def corollary8_kl_bound(distance, sigma, lip, lam, r=None):
    r"""Corollary 8: d_KL lower bound for the balanced mixture of two isotropic Gaussians.

    nu = 1/2 N(m1, sigma^2 Id) + 1/2 N(m2, sigma^2 Id), D = ||m2 - m1||,
    H = {x : <x - (m1 + m2)/2, m2 - m1> <= 0} (the half-space on the m1 side) and
    lam = g#mu(H). With lam' = min(lam, 1 - lam), r = D / (4 sigma) (the paper's choice, the
    default) and

        A = int_{Phi^-1(lam')}^{Phi^-1(lam') + r / Lip(g)} phi(t) dt          (= beta_g(H, r))
        B = (1/2) int_{(D/2 - r)/sigma}^{(D/2 + r)/sigma} phi(t) dt          (= nu(H_r \ H)),

        d_KL(g#mu || nu) >= A log(A / B) + (1 - A) log((1 - A) / (1 - B))   if A > B, else 0.

    Derivation: Theorem 7 with the half-space H (if lam <= 1/2) or its mirror
    H' = {x : <x - (m1 + m2)/2, m2 - m1> > 0} with g#mu(H') = 1 - lam (if lam > 1/2). nu is
    symmetric about the bisecting hyperplane, so the shell of either half-space (a slab of width
    r next to the hyperplane) has the nu-mass B computed in ``corollary6_tv_bound``, and
    beta = Phi(r / Lip + Phi^-1(lam')) - lam' = A since -Phi^-1(1 - lam') = Phi^-1(lam'). Using
    lam' <= 1/2 gives the larger of the two available bounds.

    With r = D / (4 sigma) the limits of B are D (2 sigma -+ 1) / (4 sigma^2). The extracted
    text of the paper prints the lower limit as D / (4 sigma^2); the two agree for sigma = 1
    (the paper's experiments), and the derivation gives D (2 sigma - 1) / (4 sigma^2).

    Parameters: ``distance``, ``sigma``, ``lip`` and ``r`` as in :func:`corollary6_tv_bound`;
    ``lam`` (float or array in (0, 1)) is g#mu(H), the generated mass on the m1 side of the
    bisecting hyperplane.
    """
    lam = _open_probability("lam", lam)
    distance, sigma, lip, r = _corollary_arguments(distance, sigma, lip, r)
    beta, one_minus_beta = _beta_and_complement(np.minimum(lam, 1.0 - lam), r / lip)
    shell_mass, log_shell_mass = _half_gap_shell_mass(distance, sigma, r)
    bound = _binary_kl_lower_bound(beta, one_minus_beta, log_shell_mass, np.log1p(-shell_mass))
    return _scalar_or_array(bound)


# --------------------------------------------------------------------------------------------
# Figure 3: mass between the modes
# --------------------------------------------------------------------------------------------


def mass_between_modes_bound(m, lip, p_left):
    r"""Figure 3's bound (Theorem 1 (2)) on the generated mass between the modes -m and m.

        g#mu((-m/2, m/2]) >= Phi(m / Lip(g) + Phi^-1(p)) - p,   p = g#mu((-inf, -m/2]).

    This is Theorem 1 (2) with A = (-inf, -m/2] and r = m: A_r = (-inf, m/2], so
    A_r \ A = (-m/2, m/2] and its mass is at least beta_g(A, m).

    Parameters
    ----------
    m : float or array >= 0
        Half the distance between the modes of 1/2 N(-m, sigma^2) + 1/2 N(m, sigma^2).
    lip : float or array > 0
        Lipschitz constant of g.
    p_left : float or array in [0, 1]
        p = g#mu((-inf, -m/2]), the generated mass left of -m/2.
    """
    m = _nonnegative("m", m)
    lip = _positive("lip", lip)
    p_left = _probability("p_left", p_left)
    return _scalar_or_array(_beta_and_complement(p_left, m / lip)[0])


def theorem1_required_lipschitz(m, p_left, mass_between):
    r"""The inverse of :func:`mass_between_modes_bound` in Lip: the smallest Lipschitz constant
    that any push-forward g#mu of a Gaussian needs to put only ``mass_between`` in (-m/2, m/2]
    while putting ``p_left`` left of -m/2.

    The bound Phi(m / L + Phi^-1(p)) - p falls as L grows, so Theorem 1 allows the mass q
    between the modes only to maps with

        Lip(g) >= m / (Phi^-1(p + q) - Phi^-1(p)),

    the value returned: the bound at that constant is exactly q. The gap of the two quantiles
    is taken without forming p + q where q is small against p (:func:`_normal_quantile_gap`),
    so the demand keeps its relative precision down to the smallest q (it is +inf only where the
    true demand, about m phi(Phi^-1(p)) / q, exceeds the largest float). It is +inf when q = 0 and
    0 < p < 1 (no Lipschitz map leaves the gap empty), and 0 when p = 0, p + q = 1 or m = 0
    (the theorem then asks nothing). By the mirror image (A = [m/2, inf)), the same function
    of p_right = g#mu((m/2, inf)) gives a second demand; both hold.

    Parameters
    ----------
    m : float or array >= 0
        Half the distance between the modes.
    p_left : float or array in [0, 1]
        g#mu((-inf, -m/2]).
    mass_between : float or array in [0, 1 - p_left]
        g#mu((-m/2, m/2]).
    """
    m = _nonnegative("m", m)
    p = _probability("p_left", p_left)
    q = _probability("mass_between", mass_between)
    if np.any(p + q > 1 + 1e-12):
        raise ValueError(f"p_left + mass_between must be at most 1 (they are masses of disjoint sets), "
                         f"got {float(np.max(p + q))!r}")
    right = np.maximum(_one_minus_sum(p, q), 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # q = 0: gap 0; p = 0: gap inf
        demand = m / _normal_quantile_gap(p, q)
    demand = np.where((p == 0) | (right == 0) | (m == 0), 0.0, np.where(q == 0, np.inf, demand))
    return _scalar_or_array(demand)


def mixture_mass_between(m, sigma=1.0, weight=0.5):
    r"""nu([-m/2, m/2]) for nu = weight N(-m, sigma^2) + (1 - weight) N(m, sigma^2) (Figure 3).

    Both components put the same mass int_{m / (2 sigma)}^{3m / (2 sigma)} phi(t) dt on
    [-m/2, m/2], so the result does not depend on the weight.

    Parameters
    ----------
    m : float or array >= 0
        Position of the modes at -m and m.
    sigma : float or array > 0
        Common standard deviation.
    weight : float or array in (0, 1)
        Weight of the component at -m.
    """
    m = _nonnegative("m", m)
    sigma = _positive("sigma", sigma)
    weight = _open_probability("weight", weight)
    mass = _phi_interval(m / (2.0 * sigma), 3.0 * m / (2.0 * sigma))
    return _scalar_or_array(mass * np.ones_like(weight))


# --------------------------------------------------------------------------------------------
# Figure 3's question for other one-dimensional latents: symmetric log-concave, and Cauchy
# --------------------------------------------------------------------------------------------
#
# Setting: a latent law mu on R (CDF F, density f), g : R -> R L-Lipschitz, the modes' sets
# A = (-inf, -m/2] and B = [m/2, inf), and delta = m / L. The preimages S_A = g^-1(A) and
# S_B = g^-1(B) lie at least delta apart: for z in S_A and |z' - z| < delta,
# |g(z') - g(z)| < m, so g(z') < m/2. Hence the open enlargement
# S_A^delta = {z : dist(z, S_A) < delta} misses S_B, and the mass between the modes is
#     g#mu((-m/2, m/2)) >= mu(S_A^delta) - mu(S_A),
# with equality for the map g(z) = -m/2 + L min(dist(z, S), delta), which is L-Lipschitz,
# has S_A = S and sends everything at distance >= delta from S to m/2. So the smallest mass
# an L-Lipschitz map with g#mu(A) = p leaves between the modes is
#     E_mu(p, delta) = inf {mu(S^delta) - p : mu(S) = p},
# an isoperimetric (enlargement) problem for mu, over sets S that may be unions of several
# intervals (g need not be monotone). The same holds with A and B exchanged, so given both
# masses the mass between the modes is at least max(E_mu(p_left), E_mu(p_right)).
#
# Enlargements from the isoperimetric profile. Let I_mu(t) = inf {mu^+(S) : mu(S) = t}, the
# boundary mass (the sum of f over the end points of a finite union of intervals S). Then
# r -> mu(S^r) is absolutely continuous with derivative mu^+(S^r) >= I_mu(mu(S^r)), so by
# comparison with the solution Y of Y' = I_mu(Y), Y(0) = p,
#     mu(S^delta) >= Y_mu(p, delta)  and  E_mu(p, delta) >= Y_mu(p, delta) - p.
# Writing P for a primitive of 1 / I_mu, Y_mu(p, r) = P^-1(P(p) + r).
#
# * Symmetric log-concave mu (the Gaussian among them): half-lines are extremal (Bobkov,
#   1996), I_mu(t) = f(F^-1(t)), P = F^-1, and Y = F(F^-1(p) + delta), attained by the
#   half-lines, which stay half-lines as they grow: E_mu(p, delta) = F(F^-1(p) + delta) - p
#   exactly (:func:`half_line_mass_between_bound`; for the Gaussian this is Figure 3's
#   :func:`mass_between_modes_bound`).
# * Cauchy mu, f(z) = 1 / (pi (1 + z^2)): see :func:`cauchy_isoperimetric_profile` (half-lines
#   are not extremal: two tails are), :func:`cauchy_enlargement_bound` (the ODE solved in
#   closed form) and :func:`cauchy_mass_between_bound`.


#: scipy.stats families whose every member (any loc, scale > 0) is symmetric and log-concave:
#: log f is -x^2 / 2, -x - 2 log(1 + e^-x), -|x| and -log cosh x up to constants, each concave
#: and even. They are the latents :func:`half_line_mass_between_bound` accepts.
SYMMETRIC_LOG_CONCAVE_LAWS = (stats.norm, stats.logistic, stats.laplace, stats.hypsecant)


def _symmetric_log_concave_law(law):
    """``law`` (default: the standard normal) if it is one of SYMMETRIC_LOG_CONCAVE_LAWS, plain
    or frozen with a loc and a scale > 0; ValueError otherwise."""
    if law is None:
        return stats.norm
    family = getattr(law, "dist", law)  # a frozen law keeps its family in .dist
    kwds = getattr(law, "kwds", {})
    args = getattr(law, "args", ())
    scale = kwds.get("scale", args[1] if len(args) > 1 else 1.0)
    allowed = any(type(family) is type(known) for known in SYMMETRIC_LOG_CONCAVE_LAWS)
    if not allowed or not (np.isscalar(scale) and scale > 0 and np.isfinite(scale)):
        names = ", ".join(f"scipy.stats.{known.name}" for known in SYMMETRIC_LOG_CONCAVE_LAWS)
        shown = repr(getattr(family, "name", law)) + ("" if not allowed else f" with scale {scale!r}")
        raise ValueError(f"law must be one of {names} (plain, or frozen with any loc and a scale > 0), the "
                         f"symmetric log-concave laws for which half-lines are extremal, got {shown} "
                         f"(for a Cauchy latent use cauchy_mass_between_bound)")
    return law


def half_line_mass_between_bound(m, lip, p_left, law=None):
    r"""F(F^-1(p) + m / Lip) - p: the smallest mass between the modes -m and m that an
    Lip-Lipschitz map of a symmetric log-concave latent of CDF F can leave, given
    p = g#mu((-inf, -m/2]) (see the comment above this function in the source).

    ``law`` is one of :data:`SYMMETRIC_LOG_CONCAVE_LAWS` (normal, logistic, Laplace,
    hyperbolic secant), plain or frozen with any loc and scale (default: the standard normal,
    for which this is :func:`mass_between_modes_bound`). Other laws are refused: the formula
    rests on half-lines being extremal, which needs symmetry and log-concavity, and for a
    heavy-tailed law it can exceed the least mass by far (for the Cauchy latent, where two
    tails beat a half-line, see :func:`cauchy_mass_between_bound`). The result is computed as
    the latent mass of the interval [F^-1(p), F^-1(p) + m / Lip], from whichever tail is
    nearer, so it stays accurate for p close to 0 or 1.
    """
    law = _symmetric_log_concave_law(law)
    m = _nonnegative("m", m)
    lip = _positive("lip", lip)
    p_left = _probability("p_left", p_left)
    with np.errstate(divide="ignore"):
        x = np.where(p_left > 0.5, law.isf(1.0 - p_left), law.ppf(p_left))
    y = x + m / lip
    with np.errstate(invalid="ignore"):  # p = 0 or 1: x is -inf or inf and the mass is 0
        mass = np.where(x > 0, law.sf(x) - law.sf(y), law.cdf(y) - law.cdf(x))
    return _scalar_or_array(np.where(np.isfinite(x), mass, 0.0))


def cauchy_isoperimetric_profile(t):
    r"""I(t) = (2 / pi) sin^2(pi min(t, 1 - t) / 2): the smallest Cauchy boundary mass
    mu^+(S) = sum of f over the end points of S, over finite unions of intervals S with
    mu(S) = t; attained by the two symmetric tails (t <= 1/2) and the symmetric interval
    (t >= 1/2).

    Derivation. Map R onto the circle by z = tan(phi / 2), phi in (-pi, pi): mu becomes the
    uniform law, intervals become arcs, z = +-inf the point N at phi = pi, and
    f(z) = cos^2(phi / 2) / pi = sin^2(rho / 2) / pi with rho = pi - |phi| the angle from N.
    A set of mass t is a union of disjoint closed arcs, apart from one another, of total angle
    s = 2 pi t, and by complement (same end points) we may take t <= 1/2, so s <= pi. In units
    of 1 / pi an end at angle rho from N costs w(rho) = sin^2(rho / 2), which increases on
    [0, pi]. The claim is that the ends cost at least g(s) = 1 - cos(s / 2) = 2 sin^2(s / 4).
    Write O for the point opposite N (rho = pi) and use sin^2 x + sin^2 y = 1 - cos(x + y) cos(x - y).
    * Some arc contains O. If it avoids N, its ends lie at angles pi - u and pi - v from N on
      the two sides of O, with u + v <= s <= pi, and cost
      cos^2(u/2) + cos^2(v/2) = 1 + cos((u+v)/2) cos((u-v)/2) >= 1 >= g(s). If it contains N
      too, it is the half-circle from N to O (its angle is at most pi), whose end at O costs 1.
    * No arc contains O. At most one arc, C_0, contains N; its ends lie at angles a and b from N
      on the two sides (a = b = 0 when there is no C_0). Every other arc lies in one of the two
      open half-circles from N to O, outside C_0: those on b's side lie in the angles (b, pi)
      from N, are disjoint, and so the farthest of their ends is at an angle b' >= b + s_b,
      s_b being their total angle; with no such arc, b' = b is C_0's end (an end at angle 0
      costs nothing). Likewise a' >= a + s_a on the other side, so a' + b' >= s, and the two
      ends are distinct (they lie on different sides, short of O). Keeping only them,
          cost >= sin^2(a'/2) + sin^2(b'/2) = 1 - cos((a' + b')/2) cos((a' - b')/2).
      If a' + b' <= pi, cos((a' + b')/2) >= 0 and cos((a' - b')/2) <= 1 give
      cost >= 1 - cos((a' + b')/2) = g(a' + b') >= g(s), g increasing on [0, 2 pi]. If
      a' + b' > pi, cos((a' + b')/2) < 0 <= cos((a' - b')/2) (|a' - b'| <= pi) give cost >= 1 >= g(s).
    So the boundary mass is at least g(2 pi t) / pi = (2 / pi) sin^2(pi t / 2), the cost of the
    single arc centred on N (a = b = s/2): the two tails |z| >= cot(pi t / 2). (Adding the
    arcs' costs one by one does not work: the cost 1 - cos(s_j / 2) of one arc centred on N is
    convex in s_j, so several small arcs would be bounded by less than one large one; the
    argument above uses that only one arc can sit at N.) A half-line of mass t costs
    sin^2(pi t) / pi, more than 2 sin^2(pi t / 2) / pi whenever t < 1/2 (equal at 1/2).
    """
    t = _probability("t", t)
    return _scalar_or_array(2.0 / math.pi * np.sin(0.5 * math.pi * np.minimum(t, 1.0 - t)) ** 2)


def _cauchy_potential(p):
    """P with P' = 1 / I (I the Cauchy profile), P(1/2) = -1: -cot(pi p / 2) for p <= 1/2,
    cot(pi (1 - p) / 2) - 2 above; -inf at 0 and inf at 1."""
    with np.errstate(divide="ignore"):
        low = -1.0 / np.tan(0.5 * math.pi * np.minimum(p, 0.5))
        high = 1.0 / np.tan(0.5 * math.pi * np.minimum(1.0 - p, 0.5)) - 2.0
    return np.where(p <= 0.5, low, high)


def _cauchy_potential_inverse(u):
    """P^-1: (2 / pi) arctan(-1 / u) for u <= -1, 1 - (2 / pi) arctan(1 / (u + 2)) above."""
    with np.errstate(divide="ignore"):
        low = 2.0 / math.pi * np.arctan(-1.0 / np.minimum(u, -1.0))
        high = 1.0 - 2.0 / math.pi * np.arctan(1.0 / (np.maximum(u, -1.0) + 2.0))
    return np.where(u <= -1.0, low, high)


def cauchy_enlargement_bound(mass, r):
    r"""Y(p, r): a lower bound on mu(S^r) for every S of Cauchy mass mu(S) = p (r >= 0).

    Y solves Y' = I(Y), Y(0) = p, with I the Cauchy profile (:func:`cauchy_isoperimetric_profile`);
    see the comment above :func:`half_line_mass_between_bound` for why that bounds mu(S^r).
    With u = pi Y / 2, I = (2 / pi) sin^2 u gives u' = sin^2 u, i.e. (-cot u)' = 1 while
    Y <= 1/2, and likewise (cot(pi (1 - Y) / 2))' = 1 above 1/2:
        Y(p, r) = P^-1(P(p) + r),  P(y) = -cot(pi y / 2) (y <= 1/2),  cot(pi (1 - y) / 2) - 2 (y >= 1/2).
    Attained: while Y <= 1/2 (cot(pi p / 2) - r >= 1) by the two symmetric tails
    |z| >= cot(pi p / 2), whose enlargement |z| > cot(pi p / 2) - r stays two symmetric tails;
    for p >= 1/2 by the symmetric interval |z| <= cot(pi (1 - p) / 2), which grows to
    |z| < cot(pi (1 - p) / 2) + r. When the path crosses 1/2 from below, no single family
    of sets follows it (the tails' enlargement then runs through the centre, the densest
    part), and Y is a lower bound only.

    Parameters
    ----------
    mass : float or array in [0, 1]
        p = mu(S).
    r : float or array >= 0
        Enlargement radius, in latent units.
    """
    mass = _probability("mass", mass)
    r = _nonnegative("r", r)
    return _scalar_or_array(_cauchy_potential_inverse(_cauchy_potential(mass) + r))


def cauchy_mass_between_bound(m, lip, p_left, p_right=None):
    r"""The least mass between the modes -m and m of g#mu, mu the standard Cauchy on R and g
    Lip-Lipschitz, given p_left = g#mu((-inf, -m/2]) (and p_right = g#mu([m/2, inf))):

        g#mu((-m/2, m/2)) >= E(p_left),  E(p) = Y(p, m / Lip) - p   (and >= E(p_right)),

    Y being :func:`cauchy_enlargement_bound`. The derivation is in the comment above
    :func:`half_line_mass_between_bound`: the preimage S of the left mode has mass p and its
    open (m / Lip)-enlargement lies outside the preimage of the right mode, so the mass between
    is at least mu(S^(m / Lip)) - p, over sets S made of any number of intervals, and that
    is at least Y(p, m / Lip) - p. E(p) is the exact minimum over all Lip-Lipschitz maps when
    p >= 1/2 or cot(pi p / 2) - m / Lip >= 1 (the maps min(-m/2 + Lip dist(z, S), m/2) with
    S the symmetric interval or the two symmetric tails of mass p attain it); otherwise it is a
    lower bound. There, the best of the maps whose left preimage is a half-line, two tails or
    one interval leaves at most 18% more than E(p) when m / Lip <= 1, and at most 35% more
    for any m / Lip (measured over p in (0, 1/2), the largest gaps near p = 0.35, m / Lip = 1
    and p = 0.15, m / Lip = 4): the smallest mass possible lies between the two.

    Parameters
    ----------
    m : float or array >= 0
        The modes sit at -m and m.
    lip : float or array > 0
        Lipschitz constant of g.
    p_left, p_right : float or array in [0, 1]
        Generated masses left of -m/2 and right of m/2; p_right may be omitted.
    """
    m = _nonnegative("m", m)
    lip = _positive("lip", lip)
    masses = [_probability("p_left", p_left)]
    if p_right is not None:
        masses.append(_probability("p_right", p_right))
    delta = m / lip
    bound = np.max([_cauchy_potential_inverse(_cauchy_potential(p) + delta) - p
                    for p in np.broadcast_arrays(*masses)], axis=0)
    return _scalar_or_array(np.maximum(bound, 0.0))


# --------------------------------------------------------------------------------------------
# Bounds estimated from samples of g#mu: best set A and radius r
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoundSearchResult:
    """The best Theorem 4 / Theorem 7 bound found over sets A and radii r.

    Attributes
    ----------
    value : float
        The bound (a TV or KL lower bound, estimated: g#mu(A) comes from samples).
    divergence : str
        "tv" or "kl".
    kind : str
        "left half-line" for A = (-inf, t], "right half-line" for A = [t, inf), "interval" for
        A = [a, b].
    endpoints : tuple of float
        (t,) for a half-line, (a, b) for an interval.
    r : float
        Enlargement radius.
    g_mass_A : float
        Empirical g#mu(A).
    nu_mass_A : float
        nu(A).
    nu_mass_shell : float
        nu(A_r \\ A).
    confidence : float or None
        The DKW confidence level used, or None for the plug-in estimate.
    """

    value: float
    divergence: str
    kind: str
    endpoints: tuple
    r: float
    g_mass_A: float
    nu_mass_A: float
    nu_mass_shell: float
    confidence: object = None


def _set_masses(kind, params, r, sorted_samples, mixture):
    r"""Empirical g#mu(A), nu(A) and log nu(A_r \ A) for a family of sets, broadcast over params and r.

    left half-line A = (-inf, t]:  A_r = (-inf, t + r], shell (t, t + r]
    right half-line A = [t, inf):  A_r = [t - r, inf),  shell [t - r, t)
    interval A = [a, b]:           A_r = [a - r, b + r], shell [a - r, a) U (b, b + r]
    """
    n = sorted_samples.size
    if kind == "left half-line":
        (t,) = params
        g_mass = np.searchsorted(sorted_samples, t, side="right") / n
        return g_mass, mixture.cdf(t), mixture.log_mass(t, t + r)
    if kind == "right half-line":
        (t,) = params
        g_mass = 1.0 - np.searchsorted(sorted_samples, t, side="left") / n
        return g_mass, mixture.sf(t), mixture.log_mass(t - r, t)
    a, b = params
    g_mass = (np.searchsorted(sorted_samples, b, side="right")
              - np.searchsorted(sorted_samples, a, side="left")) / n
    log_shell = np.logaddexp(mixture.log_mass(a - r, a), mixture.log_mass(b, b + r))
    return g_mass, mixture.mass(a, b), log_shell


def _grid_masses(points, radii, sorted_samples, mixture):
    r"""``_set_masses`` for every kind on a grid of endpoints x radii, sharing the shell masses.

    An interval's shell [a - r, a) U (b, b + r] is a right half-line's shell at a plus a left
    half-line's shell at b, so nu's shell masses are computed once per (endpoint, radius).
    Yields (kind, params, g#mu(A) and nu(A) of shape (sets, 1), log nu(A_r \ A) of shape
    (sets, radii)).
    """
    n = sorted_samples.size
    at_or_below = np.searchsorted(sorted_samples, points, side="right") / n
    below = np.searchsorted(sorted_samples, points, side="left") / n
    log_shell_up = mixture.log_mass(points[:, None], points[:, None] + radii)  # (t, t + r]
    log_shell_down = mixture.log_mass(points[:, None] - radii, points[:, None])  # [t - r, t)
    yield "left half-line", (points,), at_or_below[:, None], mixture.cdf(points)[:, None], log_shell_up
    yield "right half-line", (points,), 1.0 - below[:, None], mixture.sf(points)[:, None], log_shell_down
    a, b = np.triu_indices(points.size, k=1)
    keep = (a % 2 == 0) & (b % 2 == 0)  # every other endpoint keeps the pair count moderate
    a, b = a[keep], b[keep]
    g_mass = (at_or_below[b] - below[a])[:, None]
    nu_mass = mixture.mass(points[a], points[b])[:, None]
    log_shell = np.logaddexp(log_shell_down[a], log_shell_up[b])
    yield "interval", (points[a], points[b]), g_mass, nu_mass, log_shell


def _tv_score(g_mass, band, nu_mass, log_shell, delta):
    """Theorem 4, minimized over g#mu(A) in [g_mass - band, g_mass + band].

    f(x) = alpha(x) - min(x, nu(A)) is concave on [0, nu(A)] and increasing beyond, so its
    minimum over an interval is at an end or at nu(A) clipped into the interval.
    """
    lo, hi = np.clip(g_mass - band, 0.0, 1.0), np.clip(g_mass + band, 0.0, 1.0)
    candidates = (g_mass,) if np.all(band == 0) else (lo, np.clip(nu_mass, lo, hi), hi)
    worst = None
    for x in candidates:
        value = _beta_and_complement(x, delta)[0] + np.maximum(x - nu_mass, 0.0)
        worst = value if worst is None else np.minimum(worst, value)
    return worst - np.exp(log_shell)


def _kl_score(g_mass, band, nu_mass, log_shell, delta):
    """Theorem 7, minimized over g#mu(A) in [g_mass - band, g_mass + band] (nu_mass is unused).

    beta(x) is concave in x and kl(beta || q) increases in beta, so the ends of the band suffice.
    """
    lo, hi = np.clip(g_mass - band, 0.0, 1.0), np.clip(g_mass + band, 0.0, 1.0)
    beta, one_minus_beta = _beta_and_complement(lo, delta)
    if not np.all(band == 0):
        beta_hi, one_minus_beta_hi = _beta_and_complement(hi, delta)
        use_hi = beta_hi < beta
        beta = np.where(use_hi, beta_hi, beta)
        one_minus_beta = np.where(use_hi, one_minus_beta_hi, one_minus_beta)
    with np.errstate(divide="ignore"):  # a shell holding all of nu's mass gives log(0) = -inf
        log_one_minus_q = np.log1p(-np.minimum(np.exp(log_shell), 1.0))
    return _binary_kl_lower_bound(beta, one_minus_beta, log_shell, log_one_minus_q)


def _prepare_samples(samples):
    x = _as_real_array("samples", samples)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"samples must have shape (n,) or (n, 1) with n >= 2, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("samples must be finite (no NaN or inf)")
    return np.sort(x)


def _dkw_half_width(n, confidence):
    """Dvoretzky-Kiefer-Wolfowitz: sup_t |F_n(t) - F(t)| <= eps with probability >= confidence."""
    return math.sqrt(math.log(2.0 / (1.0 - confidence)) / (2.0 * n))


def _candidate_points(sorted_samples, mixture):
    """Endpoints to try: sample quantiles plus a grid over the mixture, its means and midpoints."""
    levels = np.linspace(0.002, 0.998, 150)
    quantiles = np.quantile(sorted_samples, levels)
    mu, sd = np.asarray(mixture.means), np.asarray(mixture.sigmas)
    mixture_grid = np.linspace((mu - 4.0 * sd).min(), (mu + 4.0 * sd).max(), 150)
    mu_sorted = np.sort(mu)
    midpoints = 0.5 * (mu_sorted[1:] + mu_sorted[:-1])
    return np.unique(np.concatenate([quantiles, mixture_grid, mu, midpoints]))


def _best_bound(samples, mixture, lip, confidence, divergence):
    if not isinstance(mixture, GaussianMixture1D):
        raise ValueError(f"mixture must be a GaussianMixture1D, got {type(mixture).__name__}")
    lip = float(_positive("lip", lip))
    if confidence is not None:
        confidence = float(_open_probability("confidence", confidence))
    x = _prepare_samples(samples)
    score = _tv_score if divergence == "tv" else _kl_score
    eps = 0.0 if confidence is None else _dkw_half_width(x.size, confidence)

    points = _candidate_points(x, mixture)
    span = max(points[-1] - points[0], 1e-12)
    radii = np.geomspace(1e-4 * span, 1e3 * span, 48)

    def band(kind):  # an interval's empirical mass is a difference of two CDF values
        return 2.0 * eps if kind == "interval" else eps

    def evaluate(kind, params, r):
        g_mass, nu_mass, log_shell = _set_masses(kind, params, r, x, mixture)
        return score(g_mass, band(kind), nu_mass, log_shell, r / lip)

    starts = []
    for kind, params, g_mass, nu_mass, log_shell in _grid_masses(points, radii, x, mixture):
        values = score(g_mass, band(kind), nu_mass, log_shell, radii / lip)
        i, j = np.unravel_index(np.argmax(values), values.shape)
        starts.append((float(values[i, j]), kind, tuple(float(p[i]) for p in params), float(radii[j])))

    best = max(starts, key=lambda s: s[0])
    step = span / points.size
    for _, kind, params, r in starts:
        theta0 = np.array(params + (math.log(r),))

        def negative_score(theta, kind=kind):
            *ends, log_r = theta
            if kind == "interval" and ends[1] <= ends[0]:
                return math.inf
            return -float(evaluate(kind, tuple(np.asarray(e) for e in ends), math.exp(log_r)))

        simplex = np.tile(theta0, (theta0.size + 1, 1))
        for k in range(theta0.size):
            simplex[k + 1, k] += step if k < theta0.size - 1 else 0.1
        result = optimize.minimize(negative_score, theta0, method="Nelder-Mead",
                                   options={"initial_simplex": simplex, "maxiter": 120, "xatol": 1e-6,
                                            "fatol": 1e-10})
        if -result.fun > best[0]:
            *ends, log_r = result.x
            best = (float(-result.fun), kind, tuple(float(e) for e in ends), float(math.exp(log_r)))

    value, kind, params, r = best
    g_mass, nu_mass, log_shell = _set_masses(kind, tuple(np.asarray(p) for p in params), r, x, mixture)
    return BoundSearchResult(
        value=float(value), divergence=divergence, kind=kind, endpoints=params, r=r,
        g_mass_A=float(g_mass), nu_mass_A=float(nu_mass), nu_mass_shell=float(np.exp(log_shell)),
        confidence=confidence,
    )


_SEARCH_DOC = r"""
    The search runs over A in {(-inf, t]}, {[t, inf)} and {[a, b]} and r > 0: endpoints from
    sample quantiles and a grid over the mixture (its means and the midpoints between them
    included), r on a log grid from 1e-4 to 1e3 times the width of the data (so the limits
    r -> 0 and r -> inf, where Theorem 4 reduces to |g#mu(A) - nu(A)|, are covered), then a
    Nelder-Mead refinement of the best grid point of each kind of set.
    nu(A) and nu(A_r \ A) are exact; g#mu(A) is the empirical mass of the samples.

    With ``confidence=None`` the result is a plug-in estimate of a lower bound: sampling error
    in g#mu(A) (about 1/sqrt(n)), amplified where Phi^-1(g#mu(A)) is far in a tail and by the
    maximization over A, can push it slightly above the true bound. With ``confidence=c`` the
    empirical mass is replaced by the worst value within the Dvoretzky-Kiefer-Wolfowitz band
    (eps = sqrt(log(2 / (1 - c)) / (2 n)) for half-lines, 2 eps for intervals), which holds for
    all A simultaneously; the result is then a lower bound with probability at least c, provided
    the samples are i.i.d. from g#mu.

    Parameters
    ----------
    samples : array of shape (n,) or (n, 1)
        Samples of g#mu.
    mixture : GaussianMixture1D
        The data distribution nu.
    lip : float > 0
        Lipschitz constant of g.
    confidence : float in (0, 1) or None
        See above.

    Returns
    -------
    BoundSearchResult
"""


def best_tv_bound(samples, mixture, lip, confidence=None):
    return _best_bound(samples, mixture, lip, confidence, "tv")


def best_kl_bound(samples, mixture, lip, confidence=None):
    return _best_bound(samples, mixture, lip, confidence, "kl")


best_tv_bound.__doc__ = (
    "Theorem 4 maximized over sets A and radii r: estimated lower bound on d_TV(g#mu, nu).\n\n"
    "    d_TV(g#mu, nu) >= sup_{A, r} alpha_g(A, r) - min{g#mu(A), nu(A)} - nu(A_r \\ A)\n"
    + _SEARCH_DOC
)
best_kl_bound.__doc__ = (
    "Theorem 7 maximized over sets A and radii r: estimated lower bound on d_KL(g#mu || nu).\n\n"
    "    d_KL(g#mu || nu) >= sup_{A, r} kl(beta_g(A, r) || nu(A_r \\ A))  (0 when beta <= nu(A_r \\ A))\n"
    + _SEARCH_DOC
)


# --------------------------------------------------------------------------------------------
# Summary table (``npgen bounds``)
# --------------------------------------------------------------------------------------------


def bounds_table(m, sigma=1.0, lip=None, lam=0.5):
    r"""Every bound above for nu = lam N(-m, sigma^2) + (1 - lam) N(m, sigma^2) in 1-D.

    The distance between the means is D = 2m. Rows that depend on a generator need ``lip``;
    where a bound also needs a generated mass, the table uses the mass nu gives the same set
    (the situation of a generator that fits nu's proportions), and says so in the note.

    Parameters
    ----------
    m : float > 0
        The modes sit at -m and m.
    sigma : float > 0
        Standard deviation of both components.
    lip : float > 0 or None
        Lipschitz constant of a generator g; without it only Corollaries 2 and 3 are reported.
    lam : float in (0, 1)
        Weight of the component at -m. Corollaries 6 and 8 are stated for lam = 1/2 only.

    Returns
    -------
    list of (name, value, note)
        value is a float, or None where the bound does not apply.
    """
    m = float(_positive("m", m))
    sigma = float(_positive("sigma", sigma))
    lam = float(_open_probability("lam", lam))
    if lip is not None:
        lip = float(_positive("lip", lip))
    distance = 2.0 * m
    mixture = GaussianMixture1D.symmetric(m, sigma, lam)
    log_cor2 = corollary2_log_lip_lower_bound(distance, sigma, lam)
    log_monge, x_monge = monge_map_log_lipschitz(mixture.means, mixture.sigmas, mixture.weights)
    with np.errstate(over="ignore"):
        rows = [
            ("Corollary 2: Lip(g) >=", float(np.exp(log_cor2)), "every g with g#mu = nu; D = 2m"),
            ("Corollary 2: log Lip(g) >=", log_cor2, ""),
            ("Corollary 3: Lip(Monge map)", float(np.exp(log_monge)),
             f"smallest Lip(g) with g#mu = nu in 1-D; steepest at x = {x_monge:.4g}"),
            ("Corollary 3: log Lip(Monge map)", log_monge, ""),
        ]
    rows.append(("nu([-m/2, m/2])", mixture_mass_between(m, sigma, lam), "true mass between the modes"))
    if lip is None:
        return rows

    mass_left_of_0 = float(mixture.cdf(0.0))
    mass_left_of_gap = float(mixture.cdf(-m / 2.0))
    rows.append(("Theorem 1 (1): density of g#mu at 0 >=", theorem1_surface_bound(mass_left_of_0, lip),
                 f"if g#mu((-inf, 0]) = {mass_left_of_0:.4g}; nu's density at 0 is {mixture.pdf(0.0):.4g}"))
    rows.append(("Figure 3: g#mu([-m/2, m/2]) >=", mass_between_modes_bound(m, lip, mass_left_of_gap),
                 f"Theorem 1 (2), if g#mu((-inf, -m/2]) = {mass_left_of_gap:.4g}"))
    rows.append(("Corollary 5: TV >=", corollary5_tv_bound(distance, lip, max(lam, 1.0 - lam)),
                 "reference only: needs disconnected supports at distance 2m, which Gaussians are not"))
    balanced = lam == 0.5
    note_balanced = "" if balanced else "stated for lam = 1/2 only"
    rows.append(("Corollary 6: TV >=", corollary6_tv_bound(distance, sigma, lip) if balanced else None,
                 note_balanced or "r = D / (4 sigma); <= 0 means vacuous"))
    rows.append(("Corollary 8: KL >=", corollary8_kl_bound(distance, sigma, lip, 0.5) if balanced else None,
                 note_balanced or "if g#mu((-inf, 0]) = 1/2; r = D / (4 sigma)"))
    return rows


def format_bounds_table(rows):
    """Render ``bounds_table`` rows as an aligned plain-text table (name, value, note)."""
    header = ("bound", "value", "note")
    cells = [header] + [(name, "n/a" if value is None else f"{value:.6g}", note)
                        for name, value, note in rows]
    widths = [max(len(row[k]) for row in cells) for k in range(2)]
    lines = []
    for k, (name, value, note) in enumerate(cells):
        lines.append(f"{name:<{widths[0]}}  {value:>{widths[1]}}  {note}".rstrip())
        if k == 0:
            lines.append(f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * 4}")
    return "\n".join(lines)
