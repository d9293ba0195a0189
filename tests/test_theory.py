"""Evidence that the bounds of npgen.analysis.theory are true lower bounds.

The ground truth comes from explicit Lipschitz maps g(z) = a z + b tanh(c (z - s)), a > 0,
b >= 0, whose push-forward of N(0, 1) is known exactly: g is increasing with
Lip(g) = a + b c, g#mu((-inf, x]) = Phi(g^-1(x)), and TV / KL to a Gaussian mixture nu are
integrals over the latent variable z (no density of g#mu needs to be inverted):

    TV(g#mu, nu) = 1/2 int |phi(z) - f_nu(g(z)) g'(z)| dz,
    KL(g#mu || nu) = int phi(z) [log phi(z) - log g'(z) - log f_nu(g(z))] dz.

Everything used as ground truth here (normal CDFs, mixture densities, inverse maps) is computed
in this file with scipy.stats / bisection, independently of the module under test.
"""

import functools
import math
import time

import mpmath
import numpy as np
import pytest
from scipy import integrate, optimize
from scipy.special import ndtr
from scipy.stats import norm

from npgen import theory

RAISE_ON_BAD_FLOATS = dict(divide="raise", over="raise", invalid="raise")


# --------------------------------------------------------------------------------------------
# Independent ground truth
# --------------------------------------------------------------------------------------------


class TanhMap:
    """g(z) = a z + b tanh(c (z - shift)), increasing, Lip(g) = a + b c (a > 0, b, c >= 0)."""

    def __init__(self, a, b, c, shift=0.0):
        self.a, self.b, self.c, self.shift = float(a), float(b), float(c), float(shift)
        self.lip = self.a + self.b * self.c

    def __call__(self, z):
        return self.a * z + self.b * np.tanh(self.c * (z - self.shift))

    def slope(self, z):
        """g'(z) = a + b c sech^2(c (z - shift)), with sech^2(u) = 4 e^(-2|u|) / (1 + e^(-2|u|))^2."""
        decay = np.exp(-2.0 * np.abs(self.c * (z - self.shift)))
        return self.a + self.b * self.c * 4.0 * decay / (1.0 + decay) ** 2

    def inverse(self, x):
        """g^-1(x) by bisection; a z - b <= g(z) <= a z + b brackets the root."""
        x = np.asarray(x, dtype=float)
        lo, hi = (x - self.b) / self.a - 1.0, (x + self.b) / self.a + 1.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            below = self(mid) < x
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def mass_below(self, x):
        """g#mu((-inf, x])."""
        return norm.cdf(self.inverse(x))

    def mass_above(self, x):
        """g#mu([x, inf)), accurate when it is small."""
        return norm.sf(self.inverse(x))

    def mass_between(self, lo, hi):
        """g#mu([lo, hi]), as a difference of upper tails where that is more accurate."""
        zl, zh = self.inverse(lo), self.inverse(hi)
        return np.where(zl > 0, norm.sf(zl) - norm.sf(zh), norm.cdf(zh) - norm.cdf(zl))

    def __repr__(self):
        return f"TanhMap(a={self.a}, b={self.b}, c={self.c}, shift={self.shift})"


class Mixture:
    """sum_k w_k N(mean_k, sd_k^2), evaluated with scipy.stats."""

    def __init__(self, means, sds, weights):
        self.means, self.sds, self.weights = (np.asarray(v, dtype=float) for v in (means, sds, weights))

    @classmethod
    def symmetric(cls, m, sigma=1.0, weight=0.5):
        return cls([-m, m], [sigma, sigma], [weight, 1.0 - weight])

    def logpdf(self, x):
        x = np.asarray(x, dtype=float)
        terms = [math.log(w) - 0.5 * ((x - mean) / sd) ** 2 - math.log(sd * math.sqrt(2 * math.pi))
                 for mean, sd, w in zip(self.means, self.sds, self.weights)]
        return functools.reduce(np.logaddexp, terms)

    def cdf(self, x):
        return ndtr((np.asarray(x, dtype=float)[..., None] - self.means) / self.sds) @ self.weights

    def mass(self, lo, hi):
        lo, hi = (np.asarray(v, dtype=float)[..., None] for v in (lo, hi))
        return (norm.cdf(hi, self.means, self.sds) - norm.cdf(lo, self.means, self.sds)) @ self.weights

    def ppf(self, p):
        """F^-1(p) by bisection."""
        p = np.asarray(p, dtype=float)
        lo = np.full(p.shape, (self.means - 40 * self.sds).min())
        hi = np.full(p.shape, (self.means + 40 * self.sds).max())
        for _ in range(64):  # the bracket is < 2^10 wide: 64 halvings reach the float spacing
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < p
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return 0.5 * (lo + hi)


def true_divergences(gmap, target_logpdf, x_range):
    """(TV, KL) between g#N(0, 1) and the target density, by integration over the latent z."""
    lo = min(float(gmap.inverse(x_range[0])), -12.0)
    hi = max(float(gmap.inverse(x_range[1])), 12.0)
    # dense where phi and the tanh step live, coarser outside where only a smooth bump of nu remains
    z = np.unique(np.concatenate([np.linspace(lo, -12, 20_001), np.linspace(-12, 12, 120_001),
                                  np.linspace(12, hi, 20_001)]))
    pushed = norm.pdf(z)
    target = np.exp(target_logpdf(gmap(z))) * gmap.slope(z)
    tv = 0.5 * integrate.trapezoid(np.abs(pushed - target), z)
    zk = np.linspace(-12.0, 12.0, 60_001)
    integrand = norm.pdf(zk) * (norm.logpdf(zk) - np.log(gmap.slope(zk)) - target_logpdf(gmap(zk)))
    return float(tv), float(integrate.trapezoid(integrand, zk))


@functools.lru_cache(maxsize=None)
def mixture_truth(a, b, c, shift, m, sigma):
    """TV and KL of TanhMap(a, b, c, shift)#N(0, 1) to 1/2 N(-m, sigma^2) + 1/2 N(m, sigma^2)."""
    nu = Mixture.symmetric(m, sigma)
    return true_divergences(TanhMap(a, b, c, shift), nu.logpdf, (-m - 15 * sigma, m + 15 * sigma))


def map_family(m):
    """Generators of several shapes: interpolating, mode-dropping, shifted, nearly fitting."""
    return [
        TanhMap(0.3, m, 2.0),
        TanhMap(1.0, m, 0.5),
        TanhMap(0.1, 0.9 * m, 8.0),
        TanhMap(1.0, 0.0, 1.0),
        TanhMap(0.5, m, 1.0, shift=0.4),
        TanhMap(0.9, m, 12.0),
    ]


CASES = [(m, sigma, g) for m, sigma in [(1, 1), (2, 1), (4, 1), (7, 1), (10, 1), (3, 0.5), (6, 2)]
         for g in map_family(m)]


def truth(m, sigma, g):
    return mixture_truth(g.a, g.b, g.c, g.shift, m, sigma)


# --------------------------------------------------------------------------------------------
# The ground truth itself
# --------------------------------------------------------------------------------------------


def test_ground_truth_matches_closed_forms():
    """g(z) = z + d pushes N(0, 1) to N(d, 1): TV = 2 Phi(d/2) - 1 and KL = d^2 / 2 to N(0, 1)."""
    d = 1.7
    shifted = TanhMap(1.0, 0.0, 1.0)
    target = Mixture([-d], [1.0], [1.0])
    tv, kl = true_divergences(shifted, target.logpdf, (-d - 15, d + 15))
    assert tv == pytest.approx(2 * norm.cdf(d / 2) - 1, abs=1e-7)
    assert kl == pytest.approx(d * d / 2, abs=1e-7)


def test_ground_truth_matches_adaptive_quadrature():
    g, nu = TanhMap(0.3, 4.0, 2.0), Mixture.symmetric(4.0)
    tv, kl = true_divergences(g, nu.logpdf, (-19, 19))

    def density(z):  # standard normal density, scalar and fast for quad
        return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    def nu_density(x):
        return 0.5 * density(x + 4.0) + 0.5 * density(x - 4.0)

    def gap(z):
        return abs(density(z) - nu_density(float(g(z))) * float(g.slope(z)))

    def kl_integrand(z):
        log_ratio = math.log(density(z)) - math.log(float(g.slope(z))) - math.log(nu_density(float(g(z))))
        return density(z) * log_ratio

    breaks = [-0.5, 0.0, 0.5]
    tv_quad = 0.5 * integrate.quad(gap, -80, 80, points=breaks, limit=400, epsabs=1e-11)[0]
    kl_quad = integrate.quad(kl_integrand, -12, 12, points=breaks, limit=400, epsabs=1e-11)[0]
    assert tv == pytest.approx(tv_quad, abs=1e-6)
    assert kl == pytest.approx(kl_quad, abs=1e-6)


# --------------------------------------------------------------------------------------------
# Figure 1 and Theorem 1
# --------------------------------------------------------------------------------------------


def test_isoperimetric_profile_values():
    assert theory.isoperimetric_profile(0.0) == 0.0
    assert theory.isoperimetric_profile(1.0) == 0.0
    assert theory.isoperimetric_profile(0.5) == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-15)
    x = np.linspace(-6, 6, 25)
    assert np.allclose(theory.isoperimetric_profile(norm.cdf(x)), norm.pdf(x), rtol=1e-9)


def test_isoperimetric_profile_far_tail():
    """I(Phi(x)) = phi(x) with Phi(-37) ~ 1e-300 taken from erfc, accurate in that tail."""
    with np.errstate(**RAISE_ON_BAD_FLOATS):
        for x in (-20.0, -30.0, -37.0):
            t = 0.5 * math.erfc(-x / math.sqrt(2))
            assert theory.isoperimetric_profile(t) == pytest.approx(norm.pdf(x), rel=1e-9)
        assert 0 < theory.theorem1_surface_bound(1e-300, 1.0) < 1e-297


@pytest.mark.parametrize("m", [1, 4, 10])
def test_theorem1_enlargement_holds_for_explicit_maps(m):
    """g#mu(A_r) >= Phi(r / Lip + Phi^-1(g#mu(A))) for half-lines and intervals."""
    radii = np.array([0.05, 0.5, 1.0, m / 2, m, 2 * m])[:, None]
    ends = np.linspace(-m - 3, m + 3, 13)
    a_idx, b_idx = np.triu_indices(ends.size, k=1)
    for g in map_family(m):
        left = theory.theorem1_enlargement_bound(g.mass_below(ends), radii, g.lip)
        assert np.all(g.mass_below(ends + radii) >= left - 1e-12), g
        right = theory.theorem1_enlargement_bound(g.mass_above(ends), radii, g.lip)
        assert np.all(g.mass_above(ends - radii) >= right - 1e-12), g
        lo, hi = ends[a_idx], ends[b_idx]
        interval = theory.theorem1_enlargement_bound(g.mass_between(lo, hi), radii, g.lip)
        assert np.all(g.mass_between(lo - radii, hi + radii) >= interval - 1e-12), g
        shell = theory.beta_bound(g.mass_below(ends), radii, g.lip)
        assert np.all(g.mass_between(ends, ends + radii) >= shell - 1e-12), g


def test_theorem1_check_detects_a_too_small_lipschitz_constant():
    """The same check fails when Lip(g) is understated, so it has teeth."""
    g = TanhMap(0.3, 5.0, 2.0)
    ends, r = np.linspace(-8, 8, 33), 2.0
    bound = theory.theorem1_enlargement_bound(g.mass_below(ends), r, g.lip / 3)
    assert np.any(g.mass_below(ends + r) < bound - 1e-3)


@pytest.mark.parametrize("m", [2, 10])
def test_theorem1_surface_bound_holds_for_explicit_maps(m):
    """The density of g#mu at t (the surface area of (-inf, t] and of [t, inf)) is >= I(mass) / Lip.

    The mass passed is that of the smaller side, so it is exact to the last digit; g = identity
    attains the bound.
    """
    t = np.linspace(-m - 3, m + 3, 201)
    for g in map_family(m):
        z = g.inverse(t)
        density = norm.pdf(z) / g.slope(z)
        smaller_side = np.where(z <= 0, norm.cdf(z), norm.sf(z))
        assert np.all(density >= theory.theorem1_surface_bound(smaller_side, g.lip) * (1 - 1e-12)), g


def test_beta_bound_is_accurate_near_one():
    """beta for g#mu(A) = 1 - 2^-40: the naive Phi(.) - mass loses 4 digits, the stable form none."""
    tail = 2.0 ** -40
    mass = 1.0 - tail
    a = optimize.brentq(lambda x: math.log(0.5 * math.erfc(x / math.sqrt(2))) - math.log(tail), 0, 10,
                        xtol=1e-15)
    delta = 0.75
    expected = tail - 0.5 * math.erfc((a + delta) / math.sqrt(2))
    with np.errstate(**RAISE_ON_BAD_FLOATS):
        assert theory.beta_bound(mass, delta * 3.0, 3.0) == pytest.approx(expected, rel=1e-9)
        assert theory.theorem1_enlargement_bound(mass, 1.0, 1.0) <= 1.0


def test_theorem1_functions_broadcast():
    masses = np.array([0.1, 0.5, 0.9])[:, None]
    radii = np.array([0.0, 1.0, 3.0, 10.0])
    grid = theory.theorem1_enlargement_bound(masses, radii, 2.0)
    assert grid.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert grid[i, j] == theory.theorem1_enlargement_bound(float(masses[i, 0]), float(radii[j]), 2.0)
    assert np.allclose(grid[:, 0], masses[:, 0])  # r = 0 gives g#mu(A) back
    assert isinstance(theory.beta_bound(0.3, 1.0, 1.0), float)


# --------------------------------------------------------------------------------------------
# Corollaries 2 and 3
# --------------------------------------------------------------------------------------------


def test_corollary2_log_is_fifty_at_m10():
    with np.errstate(**RAISE_ON_BAD_FLOATS):
        assert theory.corollary2_log_lip_lower_bound(20.0, 1.0, 0.5) == pytest.approx(50.0, rel=1e-12)
        assert theory.corollary2_lip_lower_bound(20.0) == pytest.approx(math.exp(50.0), rel=1e-12)
    with np.errstate(divide="raise", invalid="raise"):
        assert theory.corollary2_lip_lower_bound(200.0) == math.inf  # exp(5000) is beyond floats


def test_corollary2_formula_against_direct_expression():
    for d, sigma, lam in [(3.0, 0.7, 0.2), (10.0, 2.0, 0.9), (0.0, 1.5, 0.5)]:
        expected = sigma * math.exp(d * d / (8 * sigma * sigma) - norm.ppf(lam) ** 2 / 2)
        assert theory.corollary2_lip_lower_bound(d, sigma, lam) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("m", [0.5, 1.0, 2.0, 5.0, 10.0])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_corollary2_is_below_the_monge_map_lipschitz_constant(m, sigma):
    """Corollary 3: the Monge map is the least Lipschitz g with g#mu = nu, so Corollary 2 <= Lip(T)."""
    for lam in (0.1, 0.3, 0.5, 0.8):
        log_monge, _ = theory.monge_map_log_lipschitz([-m, m], [sigma, sigma], [lam, 1 - lam])
        log_cor2 = theory.corollary2_log_lip_lower_bound(2 * m, sigma, lam)
        assert log_cor2 <= log_monge + 1e-12
        if lam == 0.5:  # balanced: both equal phi(0) sigma / phi(m / sigma), attained at x = 0
            assert log_cor2 == pytest.approx(log_monge, rel=1e-10, abs=1e-12)


def test_monge_map_at_m10_is_exp50_at_the_midpoint():
    with np.errstate(**RAISE_ON_BAD_FLOATS):
        lip, x_at_max = theory.monge_map_lipschitz([-10, 10], [1, 1], [0.5, 0.5])
    assert lip == pytest.approx(math.exp(50.0), rel=1e-9)
    assert abs(x_at_max) < 1e-6


@pytest.mark.parametrize("means, sds, weights", [
    ([-1.0, 1.0], [1.0, 1.0], [0.5, 0.5]),
    ([-1.5, 1.5], [1.0, 1.0], [0.3, 0.7]),
    ([-1.0, 2.0], [0.6, 1.0], [0.5, 0.5]),
    ([-2.0, 0.0, 2.0], [0.5, 0.5, 0.5], [0.3, 0.3, 0.4]),
    ([-0.2, 0.2], [1.0, 3.0], [0.5, 0.5]),  # steepest on the flank of the wide component
])
def test_monge_map_lipschitz_matches_finite_differences(means, sds, weights):
    nu = Mixture(means, sds, weights)
    z = np.linspace(-7, 7, 14_001)
    transport = nu.ppf(ndtr(z))
    slopes = np.diff(transport) / np.diff(z)
    lip, x_at_max = theory.monge_map_lipschitz(means, sds, weights)
    assert lip == pytest.approx(slopes.max(), rel=2e-4)
    assert x_at_max == pytest.approx(transport[np.argmax(slopes)], abs=5e-3)


def test_monge_map_of_one_gaussian_is_its_sigma():
    assert theory.monge_map_lipschitz([3.0], [2.5], [1.0])[0] == pytest.approx(2.5, rel=1e-9)


# --------------------------------------------------------------------------------------------
# Total variation: Theorem 4, Corollaries 5 and 6
# --------------------------------------------------------------------------------------------


#: The two corollaries as bound(m, sigma, g, lip, r), each with the index of the divergence it
#: bounds in truth(m, sigma, g) = (tv, kl). Corollary 8's lam is g#mu of the half-space on the
#: -m side.
COROLLARIES = {
    "corollary6_tv": (0, lambda m, sigma, g, lip, r: theory.corollary6_tv_bound(2 * m, sigma, lip, r=r)),
    "corollary8_kl": (1, lambda m, sigma, g, lip, r: theory.corollary8_kl_bound(
        2 * m, sigma, lip, float(g.mass_below(0.0)), r=r)),
}


@pytest.mark.parametrize("name", sorted(COROLLARIES))
def test_corollaries_are_below_the_true_divergence(name):
    which, bound_of = COROLLARIES[name]
    informative = 0
    for m, sigma, g in CASES:
        true_value = truth(m, sigma, g)[which]
        for lip in (g.lip, 1.5 * g.lip):  # any upper bound on Lip(g) is allowed
            for r in (None, m / 2, m):  # the paper's D / (4 sigma), and other radii
                bound = bound_of(m, sigma, g, lip, r)
                assert bound <= true_value + 1e-6, (m, sigma, g, lip, r, bound, true_value)
                informative += bound > 0.05
    assert informative >= 20


def exact_mass_setting(m, sigma):
    """The data nu, the enlargement radii (a column) and the half-line ends t of the exact-mass checks."""
    return (Mixture.symmetric(m, sigma), np.array([0.5, m / 2, m, 2 * m])[:, None],
            np.array([-m, -m / 2, 0.0, m / 2]))


def test_theorem4_with_exact_masses_is_below_the_true_tv():
    informative = 0
    for m, sigma, g in CASES:
        tv, _ = truth(m, sigma, g)
        nu, radii, t = exact_mass_setting(m, sigma)
        left = theory.theorem4_tv_bound(g.mass_below(t), nu.cdf(t), nu.mass(t, t + radii), radii, g.lip)
        right = theory.theorem4_tv_bound(g.mass_above(t), 1 - nu.cdf(t), nu.mass(t - radii, t), radii, g.lip)
        lo, hi = np.array([-m - 1, -m / 2, -1.0]), np.array([-m + 1, m / 2, 1.0])
        shell = nu.mass(lo - radii, lo) + nu.mass(hi, hi + radii)
        interval = theory.theorem4_tv_bound(g.mass_between(lo, hi), nu.mass(lo, hi), shell, radii, g.lip)
        for bound in (left, right, interval):
            assert np.all(bound <= tv + 1e-6), (m, sigma, g, bound, tv)
            informative += np.sum(bound > 0.05)
    assert informative >= 50


def test_corollary5_is_below_the_true_tv_for_disconnected_supports():
    """nu = lam U[-m-1, -m+1] + (1 - lam) U[m-1, m+1]: supports at distance 2m - 2."""
    for m in (2.0, 4.0, 8.0):
        for lam in (0.5, 0.7, 0.9):
            def target_logpdf(x, m=m, lam=lam):
                left = np.where(np.abs(x + m) <= 1, lam / 2, 0.0)
                right = np.where(np.abs(x - m) <= 1, (1 - lam) / 2, 0.0)
                with np.errstate(divide="ignore"):
                    return np.log(left + right)

            for g in (TanhMap(0.3, m, 2.0), TanhMap(0.05, m, 10.0), TanhMap(1.0, 0.0, 1.0)):
                tv, _ = true_divergences(g, target_logpdf, (-m - 2, m + 2))
                bound = theory.corollary5_tv_bound(2 * m - 2, g.lip, lam)
                assert 0 < bound <= tv + 2e-3, (m, lam, g, bound, tv)


def test_tv_bounds_vanish_or_turn_vacuous_as_lip_grows():
    lips = np.geomspace(0.1, 1e9, 60)
    cor6 = theory.corollary6_tv_bound(20.0, 1.0, lips)
    assert cor6[0] > 0.3 and cor6[-1] <= 0
    assert np.all(np.diff(cor6) <= 1e-15)
    # the limit is minus the slab mass (1/2) [Phi(15) - Phi(5)] for r = D / (4 sigma) = 5
    assert cor6[-1] == pytest.approx(-0.5 * norm.sf(5.0), abs=5e-9)  # + Phi(5e-9) - 1/2 ~ 2e-9
    cor5 = theory.corollary5_tv_bound(4.0, lips, 0.6)
    assert np.all(cor5 > 0) and np.all(np.diff(cor5) <= 0) and cor5[-1] < 1e-5
    assert cor5[0] == pytest.approx(0.4, rel=1e-12)  # saturates at 1 - lam for tiny Lip
    th4 = theory.theorem4_tv_bound(0.5, 0.5, 1e-4, 5.0, lips)
    assert th4[0] > 0.45 and th4[-1] < 0


# --------------------------------------------------------------------------------------------
# Kullback-Leibler: Theorem 7 and Corollary 8
# --------------------------------------------------------------------------------------------


def test_theorem7_with_exact_masses_is_below_the_true_kl():
    informative = 0
    for m, sigma, g in CASES:
        _, kl = truth(m, sigma, g)
        nu, radii, t = exact_mass_setting(m, sigma)
        left = theory.theorem7_kl_bound(g.mass_below(t), nu.mass(t, t + radii), radii, g.lip)
        lo, hi = np.array([-m - 1, -m / 2]), np.array([-m + 1, m / 2])
        shell = nu.mass(lo - radii, lo) + nu.mass(hi, hi + radii)
        interval = theory.theorem7_kl_bound(g.mass_between(lo, hi), shell, radii, g.lip)
        for bound in (left, interval):
            assert np.all(bound <= kl + 1e-6), (m, sigma, g, bound, kl)
            informative += np.sum(bound > 0.05)
    assert informative >= 30


def test_theorem7_needs_the_case_beta_below_shell_mass():
    """If g#mu = nu (KL = 0) and beta < nu(shell), the unconditioned kl(beta || q) would be > 0.

    g = 2 z, nu = N(0, 4), A = [-1, 1]: an interval is not a half-space, so Theorem 1 is strict
    and the shell [-1 - r, -1) U (1, 1 + r] holds more than beta.
    """
    g, r = TanhMap(2.0, 0.0, 1.0), 1.0
    g_mass = float(g.mass_between(-1.0, 1.0))
    beta = norm.cdf(r / g.lip + norm.ppf(g_mass)) - g_mass
    q = 2 * (norm.cdf((1 + r) / 2) - norm.cdf(1 / 2))
    assert beta < q and beta * math.log(beta / q) + (1 - beta) * math.log((1 - beta) / (1 - q)) > 0
    assert theory.theorem7_kl_bound(g_mass, q, r, g.lip) == 0.0


def test_theorem7_is_the_binary_kl_when_it_applies():
    beta = theory.beta_bound(0.3, 2.0, 1.0)
    q = 0.01
    expected = beta * math.log(beta / q) + (1 - beta) * math.log((1 - beta) / (1 - q))
    assert theory.theorem7_kl_bound(0.3, q, 2.0, 1.0) == pytest.approx(expected, rel=1e-12)
    assert theory.theorem7_kl_bound(0.3, 0.0, 2.0, 1.0) == math.inf
    assert theory.theorem7_kl_bound(0.0, 0.0, 2.0, 1.0) == 0.0


def test_kl_bounds_vanish_as_lip_grows():
    lips = np.geomspace(0.1, 1e9, 60)
    cor8 = theory.corollary8_kl_bound(20.0, 1.0, lips, 0.5)
    # beta ~ 2 / (sqrt(2 pi) Lip) falls below nu(slab) ~ 1.4e-7 once Lip > ~1.4e7
    assert cor8[0] > 1.0 and np.all(cor8[lips > 2e7] == 0.0) and np.all(cor8[lips < 1e7] > 0)
    assert np.all(np.diff(cor8) <= 1e-12)
    # lam and 1 - lam give the same bound (mirror half-space); lam = 1/2 gives the largest
    mirrored = theory.corollary8_kl_bound(20.0, 1.0, 5.0, 0.8)
    assert theory.corollary8_kl_bound(20.0, 1.0, 5.0, 0.2) == pytest.approx(mirrored, rel=1e-12)
    assert theory.corollary8_kl_bound(20.0, 1.0, 5.0, 1e-12) == 0.0  # no generated mass on one side


def test_corollary8_stays_finite_when_the_shell_mass_underflows():
    """D = 200, r = 50: nu(shell) ~ exp(-1250) is below the float range, its log is not."""
    with np.errstate(**RAISE_ON_BAD_FLOATS):
        bound = theory.corollary8_kl_bound(200.0, 1.0, 10.0, 0.5, r=50.0)
    beta = norm.cdf(5.0) - 0.5
    log_q = norm.logsf(50.0) - math.log(2.0)  # the other end of the slab adds e^-11250 only
    assert bound == pytest.approx(beta * (math.log(beta) - log_q) + (1 - beta) * math.log(1 - beta), rel=1e-9)


# --------------------------------------------------------------------------------------------
# Figure 3
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [1, 3, 6, 10])
def test_mass_between_modes_bound_holds(m):
    for g in map_family(m):
        p = float(g.mass_below(-m / 2))
        generated = float(g.mass_between(-m / 2, m / 2))
        assert theory.mass_between_modes_bound(m, g.lip, p) <= generated + 1e-12, g


def test_mixture_mass_between_against_quadrature():
    for m, sigma, weight in [(1.0, 1.0, 0.5), (4.0, 0.7, 0.2), (10.0, 1.0, 0.5)]:
        nu = Mixture.symmetric(m, sigma, weight)
        expected = integrate.quad(lambda x: math.exp(nu.logpdf(x)), -m / 2, m / 2,
                                  epsabs=1e-14, epsrel=1e-11)[0]
        assert theory.mixture_mass_between(m, sigma, weight) == pytest.approx(expected, rel=1e-8)


# --------------------------------------------------------------------------------------------
# Bounds searched from samples
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sampled_cases():
    rng = np.random.default_rng(20220)
    cases = []
    maps = [(10.0, TanhMap(0.3, 10.0, 2.0)), (5.0, TanhMap(1.0, 5.0, 1.0)), (4.0, TanhMap(0.9, 4.0, 12.0))]
    for m, g in maps:
        samples = g(rng.standard_normal(50_000))
        tv, kl = truth(m, 1.0, g)
        cases.append((m, g, samples, tv, kl))
    return cases


def test_best_tv_bound_is_below_the_true_tv(sampled_cases):
    for m, g, samples, tv, _ in sampled_cases:
        mixture = theory.GaussianMixture1D.symmetric(m)
        start = time.process_time()  # CPU time, so a busy machine does not fail the test
        estimate = theory.best_tv_bound(samples, mixture, g.lip)
        assert time.process_time() - start < 2.0
        certified = theory.best_tv_bound(samples[:, None], mixture, g.lip, confidence=0.95)
        assert estimate.value <= tv + 0.01, (g, estimate, tv)
        assert certified.value <= tv, (g, certified, tv)
        # the half-space of Corollary 6 is among the sets searched, with the true g#mu mass
        assert estimate.value >= theory.corollary6_tv_bound(2 * m, 1.0, g.lip) - 0.02
        assert estimate.value > 0.05


def test_best_kl_bound_is_below_the_true_kl(sampled_cases):
    for m, g, samples, _, kl in sampled_cases:
        mixture = theory.GaussianMixture1D.symmetric(m)
        start = time.process_time()
        estimate = theory.best_kl_bound(samples, mixture, g.lip)
        assert time.process_time() - start < 2.0
        certified = theory.best_kl_bound(samples, mixture, g.lip, confidence=0.95)
        assert estimate.value <= kl * 1.02 + 0.01, (g, estimate, kl)
        assert certified.value <= kl, (g, certified, kl)
        assert estimate.value >= theory.corollary8_kl_bound(2 * m, 1.0, g.lip, 0.5) - 0.05


def test_best_bound_reports_the_set_it_used(sampled_cases):
    m, g, samples, _, _ = sampled_cases[0]
    result = theory.best_tv_bound(samples, theory.GaussianMixture1D.symmetric(m), g.lip)
    nu = Mixture.symmetric(m)
    if result.kind == "left half-line":
        (t,), g_mass = result.endpoints, np.mean(samples <= result.endpoints[0])
        nu_mass, shell = nu.cdf(t), nu.mass(t, t + result.r)
    elif result.kind == "right half-line":
        (t,), g_mass = result.endpoints, np.mean(samples >= result.endpoints[0])
        nu_mass, shell = 1 - nu.cdf(t), nu.mass(t - result.r, t)
    else:
        lo, hi = result.endpoints
        g_mass = np.mean((samples >= lo) & (samples <= hi))
        nu_mass, shell = nu.mass(lo, hi), nu.mass(lo - result.r, lo) + nu.mass(hi, hi + result.r)
    assert result.g_mass_A == pytest.approx(g_mass, abs=1e-12)
    assert result.nu_mass_A == pytest.approx(nu_mass, abs=1e-9)
    assert result.nu_mass_shell == pytest.approx(shell, abs=1e-9)
    recomputed = theory.theorem4_tv_bound(g_mass, nu_mass, shell, result.r, g.lip)
    assert result.value == pytest.approx(recomputed, abs=1e-9)


def test_gaussian_mixture_methods_against_scipy():
    means, sds, weights = [-3.0, 0.5, 4.0], [1.0, 0.3, 2.0], [0.2, 0.5, 0.3]
    ours, ref = theory.GaussianMixture1D(means, sds, weights), Mixture(means, sds, weights)
    x = np.linspace(-10, 12, 57)
    assert np.allclose(ours.logpdf(x), ref.logpdf(x), rtol=1e-12)
    assert np.allclose(ours.pdf(x), np.exp(ref.logpdf(x)), rtol=1e-12)
    assert np.allclose(ours.cdf(x), ref.cdf(x), rtol=1e-12, atol=1e-15)
    assert np.allclose(ours.mass(x[:-1], x[1:]), ref.mass(x[:-1], x[1:]), rtol=1e-9, atol=1e-15)
    assert np.allclose(ours.log_mass(x[:-1], x[1:]), np.log(ref.mass(x[:-1], x[1:])), rtol=1e-9)
    far = theory.GaussianMixture1D.symmetric(10.0)
    with np.errstate(**RAISE_ON_BAD_FLOATS):
        log_far = far.log_mass(-60.0, -50.0)  # ~ exp(-800): no float holds it
    assert log_far == pytest.approx(norm.logcdf(-40.0) + math.log(0.5), rel=1e-9)


# --------------------------------------------------------------------------------------------
# Summary table
# --------------------------------------------------------------------------------------------


def test_bounds_table_rows_and_format():
    rows = theory.bounds_table(10.0, sigma=1.0, lip=25.0, lam=0.5)
    values = {name: value for name, value, _ in rows}
    assert values["Corollary 2: log Lip(g) >="] == pytest.approx(50.0, rel=1e-12)
    assert values["Corollary 6: TV >="] == theory.corollary6_tv_bound(20.0, 1.0, 25.0)
    assert values["Corollary 8: KL >="] == theory.corollary8_kl_bound(20.0, 1.0, 25.0, 0.5)
    assert values["nu([-m/2, m/2])"] == pytest.approx(Mixture.symmetric(10.0).mass(-5.0, 5.0), rel=1e-9)
    assert values["Corollary 3: log Lip(Monge map)"] >= values["Corollary 2: log Lip(g) >="] - 1e-9
    text = theory.format_bounds_table(rows)
    lines = text.splitlines()
    assert len(lines) == len(rows) + 2
    name_width = max([len("bound")] + [len(name) for name, _, _ in rows])
    value_width = max([len("value")] + [len(f"{value:.6g}") for _, value, _ in rows])
    for line, (name, value, note) in zip(lines[2:], rows):  # columns line up
        assert line[:name_width].rstrip() == name
        assert line[name_width + 2:name_width + 2 + value_width].strip() == f"{value:.6g}"
        assert line[name_width + 4 + value_width:] == note

    short = theory.bounds_table(3.0)
    assert all(not name.startswith(("Corollary 6", "Corollary 8")) for name, _, _ in short)
    unbalanced = {name: value for name, value, _ in theory.bounds_table(3.0, lip=2.0, lam=0.3)}
    assert unbalanced["Corollary 6: TV >="] is None
    assert "n/a" in theory.format_bounds_table(theory.bounds_table(3.0, lip=2.0, lam=0.3))


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


MIX = theory.GaussianMixture1D.symmetric(2.0)
GOOD_SAMPLES = np.linspace(-3, 3, 100)

BAD_CALLS = [
    ("lip", lambda: theory.theorem1_surface_bound(0.5, -1.0)),
    ("mass", lambda: theory.theorem1_surface_bound(1.5, 1.0)),
    ("t", lambda: theory.isoperimetric_profile(-0.1)),
    ("r", lambda: theory.theorem1_enlargement_bound(0.5, -1.0, 1.0)),
    ("mass", lambda: theory.beta_bound(float("nan"), 1.0, 1.0)),
    ("sigma", lambda: theory.corollary2_lip_lower_bound(2.0, 0.0)),
    ("lam", lambda: theory.corollary2_log_lip_lower_bound(2.0, 1.0, 1.0)),
    ("distance", lambda: theory.corollary2_lip_lower_bound(-2.0)),
    ("sigmas", lambda: theory.monge_map_lipschitz([0, 1], [1, -1], [0.5, 0.5])),
    ("weights", lambda: theory.monge_map_lipschitz([0, 1], [1, 1], [0.7, 0.7])),
    ("weights", lambda: theory.monge_map_lipschitz([0, 1], [1, 1], [1.2, -0.2])),
    ("means", lambda: theory.monge_map_lipschitz([0, float("nan")], [1, 1], [0.5, 0.5])),
    ("nu_mass_shell", lambda: theory.theorem4_tv_bound(0.5, 0.5, 2.0, 1.0, 1.0)),
    ("g_mass_A", lambda: theory.theorem4_tv_bound(-0.5, 0.5, 0.1, 1.0, 1.0)),
    ("lam", lambda: theory.corollary5_tv_bound(2.0, 1.0, 0.3)),
    ("sigma", lambda: theory.corollary6_tv_bound(2.0, -1.0, 1.0)),
    ("lip", lambda: theory.corollary6_tv_bound(2.0, 1.0, 0.0)),
    ("nu_mass_shell", lambda: theory.theorem7_kl_bound(0.5, -0.1, 1.0, 1.0)),
    ("lam", lambda: theory.corollary8_kl_bound(2.0, 1.0, 1.0, 0.0)),
    ("r", lambda: theory.corollary8_kl_bound(2.0, 1.0, 1.0, 0.5, r=-1.0)),
    ("p_left", lambda: theory.mass_between_modes_bound(2.0, 1.0, 1.5)),
    ("m", lambda: theory.mass_between_modes_bound(-2.0, 1.0, 0.5)),
    ("weight", lambda: theory.mixture_mass_between(2.0, 1.0, 1.0)),
    ("samples", lambda: theory.best_tv_bound(np.array([0.0, np.nan, 1.0]), MIX, 1.0)),
    ("samples", lambda: theory.best_kl_bound(np.zeros((10, 2)), MIX, 1.0)),
    ("mixture", lambda: theory.best_tv_bound(GOOD_SAMPLES, (0.0, 1.0), 1.0)),
    ("lip", lambda: theory.best_kl_bound(GOOD_SAMPLES, MIX, -1.0)),
    ("confidence", lambda: theory.best_tv_bound(GOOD_SAMPLES, MIX, 1.0, confidence=1.0)),
    ("m", lambda: theory.bounds_table(0.0)),
    ("lip", lambda: theory.bounds_table(2.0, lip=-2.0)),
    ("lam", lambda: theory.bounds_table(2.0, lam=1.5)),
    ("sigma", lambda: theory.bounds_table(2.0, sigma=0.0)),
    ("x", lambda: MIX.cdf(float("nan"))),
]


@pytest.mark.parametrize("name, call", BAD_CALLS, ids=[f"{k}-{name}" for k, (name, _) in enumerate(BAD_CALLS)])
def test_bad_input_raises_value_error_naming_the_argument(name, call):
    with pytest.raises(ValueError) as error:
        call()
    message = str(error.value)
    assert message.startswith(name + " "), message


def test_error_message_shape():
    with pytest.raises(ValueError, match=r"^lip must be a finite number > 0, got -1\.0$"):
        theory.theorem1_surface_bound(0.5, -1.0)


# --------------------------------------------------------------------------- Theorem 1 inverted


@pytest.mark.parametrize("m, p_left, mass", [(5.0, 0.4, 0.01), (2.0, 1e-30, 0.3), (3.0, 0.49, 0.5),
                                             (10.0, 1 - 1e-6, 1e-7), (8.0, 0.2, 1e-4), (1.0, 0.7, 0.29)])
def test_required_lipschitz_inverts_the_figure3_bound(m, p_left, mass):
    """At the demanded constant the bound gives back the mass (to the rounding of the two
    normal quantiles both functions take near p), and any smaller constant forces more mass."""
    demand = theory.theorem1_required_lipschitz(m, p_left, mass)
    assert 0 < demand < np.inf
    assert theory.mass_between_modes_bound(m, demand, p_left) == pytest.approx(mass, rel=1e-9)
    assert theory.mass_between_modes_bound(m, demand * (1 - 1e-6), p_left) > mass


def test_required_lipschitz_is_monotone_and_has_its_limits():
    masses = np.geomspace(1e-12, 0.49, 200)
    demands = theory.theorem1_required_lipschitz(5.0, 0.5, masses)
    assert np.all(np.diff(demands) < 0)  # less mass between the modes demands a steeper map
    by_m = theory.theorem1_required_lipschitz(np.linspace(0.5, 10, 50), 0.3, 0.05)
    assert np.all(np.diff(by_m) > 0)  # and so do modes further apart (linearly in m)
    np.testing.assert_allclose(by_m / np.linspace(0.5, 10, 50), by_m[0] / 0.5, rtol=1e-12)
    assert theory.theorem1_required_lipschitz(5.0, 0.5, 0.0) == np.inf
    assert theory.theorem1_required_lipschitz(5.0, 0.0, 0.2) == 0.0
    assert theory.theorem1_required_lipschitz(5.0, 0.6, 0.4) == 0.0
    assert theory.theorem1_required_lipschitz(0.0, 0.3, 0.1) == 0.0


def _mp_normal_quantile(u):
    """Phi^-1(u) at mpmath's working precision: the root of log Phi(x) = log u, by symmetry above 1/2."""
    if u > mpmath.mpf(1) / 2:
        return -_mp_normal_quantile(1 - u)
    guess = float(norm.ppf(float(u))) if float(u) > 0 else -38.0
    return mpmath.findroot(lambda x: mpmath.log(mpmath.ncdf(x)) - mpmath.log(u), guess)


def _mp_required_lipschitz(m, p_left, mass):
    """m / (Phi^-1(p + q) - Phi^-1(p)) with p + q formed exactly (digits enough for q against p)."""
    digits = 40 + max(0, math.ceil(math.log10(p_left) - math.log10(mass))) if p_left > 0 else 40
    with mpmath.workdps(digits):
        p, q = mpmath.mpf(p_left), mpmath.mpf(mass)
        demand = m / (_mp_normal_quantile(p + q) - _mp_normal_quantile(p))
        return float(demand) if demand < np.finfo(float).max else math.inf


def _demand_grid():
    """(p, q) over tiny, moderate and near-1 p; q from 1e-320 and 1e-17 up to a few ulps below 1 - p."""
    for p in (5e-324, 1e-300, 1e-30, 1e-8, 0.01, 0.2, 0.4, 0.5, 0.6, 0.9, 1 - 1e-9, 1 - 2 ** -52):
        room = float(mpmath.mpf(1) - mpmath.mpf(p))
        for q in (1e-320, 1e-17, 1e-15, 1e-10, 1e-4 * room, 0.3 * room, 0.999999 * room,
                  np.nextafter(np.nextafter(room, 0), 0)):
            if q > 0 and mpmath.mpf(p) + mpmath.mpf(q) < 1:
                yield p, float(q)


#: Relative tolerance of the demand against mpmath (the worst case measured is about 1e-15).
DEMAND_RTOL = 1e-12


def test_required_lipschitz_matches_high_precision_values(monkeypatch):
    """Against mpmath on a grid where subtracting two double quantiles fails (q = 1e-17 next to
    p = 0.4 gave inf, q = 1e-15 was 1.4% off); ten Newton steps are enough everywhere. The
    demand is inf only where the true one exceeds the largest float (q = 1e-320, p not tiny)."""
    monkeypatch.setattr(theory, "_GAP_NEWTON_STEPS", 10)
    grid = list(_demand_grid())
    assert len(grid) > 80
    for p, q in grid:
        want = _mp_required_lipschitz(3.0, p, q)
        assert theory.theorem1_required_lipschitz(3.0, p, q) == pytest.approx(want, rel=DEMAND_RTOL, abs=0), (p, q)
    ps, qs = np.array(grid).T
    np.testing.assert_allclose(theory.theorem1_required_lipschitz(3.0, ps, qs),
                               [_mp_required_lipschitz(3.0, p, q) for p, q in grid], rtol=DEMAND_RTOL)


def test_required_lipschitz_for_tiny_masses_is_the_first_order_series():
    """For q << p the gap Phi^-1(p + q) - Phi^-1(p) is q / phi(Phi^-1(p)) (the derivative of
    Phi^-1 is 1 / phi(Phi^-1)), with a relative correction of order q / phi."""
    p = 0.4
    for q in (1e-17, 1e-15, 1e-13):
        slope = 1.0 / norm.pdf(norm.ppf(p))
        assert theory.theorem1_required_lipschitz(1.0, p, q) == pytest.approx(1.0 / (q * slope), rel=1e-12)


def test_required_lipschitz_is_the_least_constant_the_theorem_allows():
    """Brute force: on a fine grid of constants, the bound stays above the mass exactly below the demand."""
    m, p_left, mass = 4.0, 0.45, 0.02
    grid = np.geomspace(1, 1e4, 20001)
    allowed = grid[theory.mass_between_modes_bound(m, grid, p_left) <= mass]
    demand = theory.theorem1_required_lipschitz(m, p_left, mass)
    assert allowed.min() >= demand and allowed.min() / demand < 1 + 1e-3
