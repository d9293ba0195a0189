"""A searched lower bound on the Lipschitz constant of a 1-D annealed Langevin sampler.

The sampler is a map g(w) = x_T of its T + 1 Gaussian inputs w = (x_0, z_1, ..., z_T). The
largest |grad g| over drawn samples is a lower bound on Lip(g), but the inputs where g is steep
(those whose chains end in the gap between the modes) have Gaussian measure about the mass
the sampler puts there, so a sampler that leaves little mass there hides its steepness from
the samples. This module looks for the steep set instead:

* draw a pool of inputs, run their chains, and pair inputs u whose chains end below the
  ``threshold`` (the gap's middle) with inputs v whose chains end above it;
* along the great circle w(theta) = cos(theta) u + sin(theta) v, theta in [0, pi/2], x_T is
  continuous (the score is), below the threshold at theta = 0 and above it at pi/2: bisect
  theta to the crossing;
* at the crossing, carry the gradient with the sampler's recursion (dx0 and grad_sq, see
  :func:`npgen.kernels.numpy_ref.annealed_langevin_given_noise`): |grad g(w)| = sqrt(grad_sq).

Every |grad g(w)| at an input w where g is differentiable is a certified lower bound on Lip(g)
(Lip(g) = sup_w |grad g(w)|), computed in float64; the search only chooses where to look.
Near the crossing the chain balances on the unstable point between the modes, and float
rounding is amplified as much as the gradient is; the value stays a lower bound because the
noise enters every step additively: a rounding error d in x' = x + (alpha/2) s(x) + sqrt(alpha) z
is the exact step with z + d / sqrt(alpha), so the computed chain is the exact chain of an input
within about 1e-13 of w, and the recursion's factors f = 1 + (alpha/2) s'(x) are evaluated on
that chain: the result is |grad g| there, to the recursion's own rounding.
Varying the start x_0 alone would not do: the first levels forget the start, so with the noise
held fixed the chain may end on the same side whatever x_0 is.
"""

import functools
from dataclasses import dataclass

import numpy as np

from ..nn.score import SLOPE, SLOPE_X
from ..util.checks import check_number
from .exact_score import LangevinChain, cpu_kernels

#: Inputs drawn to find pairs, pairs searched, and bisection steps: 50 halvings of pi/2 reach
#: the spacing of float64 angles, so the crossing is found as closely as the chain can resolve
#: it (the closer, the longer a chain balances in the gap and the steeper g is found there).
POOL = 1000
PAIRS = 100
BISECTIONS = 50


@dataclass(frozen=True)
class SteepSearch:
    """The result of :func:`search_steep_set`, in the chain's units.

    gradient_norm : (k,) |grad g| at the k crossings found (one per pair).
    dx0 : (k,) d x_T / d x_0 there (the start's part; the noise's part is the rest in squares).
    theta : (k,) the crossings' angles.
    n_pool, n_below, n_above : the pool's size and how many of its chains ended on each side.
    """

    gradient_norm: np.ndarray
    dx0: np.ndarray
    theta: np.ndarray
    n_pool: int
    n_below: int
    n_above: int

    @property
    def largest(self):
        """The largest |grad g| found (nan when no pair was found)."""
        return float(self.gradient_norm.max()) if self.gradient_norm.size else float("nan")

    def summary(self, scale=1.0):
        """A JSON-able dict: the largest value, its x_0 and noise parts, the 10/50/90%
        quantiles over the pairs, all times ``scale`` (data_std to give data units), and the
        counts. Values are None when no pair was found."""
        norms = self.gradient_norm * scale
        if not norms.size:
            return {"largest": None, "largest_x0": None, "largest_noise": None, "quantiles": None,
                    "n_pairs": 0, "n_pool": self.n_pool, "n_below": self.n_below, "n_above": self.n_above}
        top = int(np.argmax(norms))
        x0_part = abs(float(self.dx0[top])) * scale
        return {"largest": float(norms[top]), "largest_x0": x0_part,
                "largest_noise": float(np.sqrt(max(norms[top] ** 2 - x0_part ** 2, 0.0))),
                "quantiles": {str(q): float(np.quantile(norms, q)) for q in (0.1, 0.5, 0.9)},
                "n_pairs": int(norms.size), "n_pool": self.n_pool, "n_below": self.n_below,
                "n_above": self.n_above}


def search_steep_set(chain, n_inputs, threshold, seed=0, pool=POOL, pairs=PAIRS,
                     bisections=BISECTIONS):
    """Bisect great circles between inputs whose chains end on opposite sides of ``threshold``
    (module doc). ``chain(x0 (n,), noise (n, T), track)`` returns x_T, or with ``track``
    (x_T, dx0, grad_sq); ``n_inputs`` = T + 1. The pool's inputs are standard normals from
    ``seed``; up to ``pairs`` pairs are searched, all at once. Returns a :class:`SteepSearch`."""
    n_inputs = check_number("n_inputs", n_inputs, low=2, integer=True)
    pool = check_number("pool", pool, low=2, integer=True)
    pairs = check_number("pairs", pairs, low=1, integer=True)
    bisections = check_number("bisections", bisections, low=1, integer=True)
    inputs = np.random.default_rng(seed).standard_normal((pool, n_inputs))
    ends = chain(inputs[:, 0].copy(), np.ascontiguousarray(inputs[:, 1:]), False)
    below, above = np.flatnonzero(ends < threshold), np.flatnonzero(ends >= threshold)
    k = min(below.size, above.size, pairs)
    u, v = inputs[below[:k]], inputs[above[:k]]

    def run(theta, track=False):
        w = np.cos(theta)[:, None] * u + np.sin(theta)[:, None] * v
        return chain(w[:, 0].copy(), np.ascontiguousarray(w[:, 1:]), track)

    low, high = np.zeros(k), np.full(k, np.pi / 2)
    for _ in range(bisections if k else 0):
        middle = (low + high) / 2
        ends_below = run(middle) < threshold
        low, high = np.where(ends_below, middle, low), np.where(ends_below, high, middle)
    theta = (low + high) / 2
    _, dx0, grad_sq = run(theta, track=True) if k else (None, np.empty(0), np.empty(0))
    return SteepSearch(gradient_norm=np.sqrt(grad_sq), dx0=dx0, theta=theta, n_pool=pool,
                       n_below=int(below.size), n_above=int(above.size))


@dataclass(frozen=True)
class NetworkChain(LangevinChain):
    """:class:`LangevinChain <npgen.analysis.exact_score.LangevinChain>` on a trained
    :class:`npgen.nn.ScoreNetwork` ``score`` (standardized units): its weights and the effective
    biases of the levels, in float64 (:func:`npgen.kernels.cpu.network_langevin_given_noise`)."""

    score: object = None

    @functools.cached_property
    def tables(self):
        """The network's piece tables at the chain's levels (computed on first use)."""
        w = self.score.weights
        beff2, beff3 = self.score.effective_biases(self.sigmas)
        return cpu_kernels().network_chain_tables(w["fc_1.weight"], w["fc_1.bias"], w["fc_2.x"], beff2,
                                                  w["fc_3.x"], beff3, SLOPE_X, SLOPE)

    def _move(self, x, alphas, noise, gradient):
        cpu_kernels().network_langevin_on_tables(x, self.tables, alphas, noise, *gradient)
