r"""Interpolations between two latent codes z_1, z_2 (Lesniak, Sieradzki and Podolak, 2018).

For independent draws z_1, z_2 of the latent law mu and t in [0, 1]:

* :func:`linear`: (1 - t) z_1 + t z_2. For mu = N(0, I_p) the midpoint has law N(0, I_p / 2),
  not mu: it lands where training almost never sampled (|z|^2 concentrates around p / 2
  instead of p). For the multivariate Cauchy it has law mu for every t, since the Cauchy is
  1-stable (:mod:`npgen.models.latents`).
* :func:`cauchy_linear`: the Cauchy-linear interpolation, coordinate by coordinate,
      h(x_1, x_2, t) = F^-1(C((1 - t) C^-1(F(x_1)) + t C^-1(F(x_2)))),
  with F the CDF of one coordinate of mu and C the standard Cauchy CDF. C^-1(F(x_i)) are
  independent standard Cauchy variables, so their convex combination is standard Cauchy,
  C of it is uniform and F^-1 of that has law F: the interpolant has the law of mu whenever
  mu has independent coordinates of CDF F (N(0, I_p); for the multivariate Cauchy only at
  p = 1, where it is the linear interpolation).
* :func:`spherical_cauchy_linear`: z = |z| theta; the radius is interpolated by the
  Cauchy-linear rule with F the radius's CDF (:func:`npgen.models.latents.radius_law`) and the
  direction by spherical linear interpolation on the great circle through theta_1 and theta_2,
      theta(t) = [sin((1 - t) w) theta_1 + sin(t w) theta_2] / sin(w),  cos(w) = theta_1 . theta_2.
  For a spherically symmetric mu (N(0, I_p) and the multivariate Cauchy alike), the radius
  keeps its law as above, and the direction's law is invariant under rotations (rotating
  theta_1 and theta_2 rotates theta(t)), hence uniform, and independent of the radius: the
  interpolant has law mu. Needs p >= 2.

All three take z_1, z_2 of shape (n, p) (one pair per row) and a scalar t, and return (n, p)
float64 arrays; t = 0 and t = 1 give back z_1 and z_2 (up to rounding in the non-linear ones).
The transforms to and from the Cauchy scale work on the nearer tail (F(-|x|)), so they stay
accurate far out in the tails, as long as the tail mass is a normal float (|x| up to about 37
for a Gaussian coordinate, a little less for the radius of a Gaussian code of dimension p > 1).
"""

import numpy as np

from ..util.checks import as_real_array, check_number
from .latents import check_latent, coordinate_law, radius_law

#: Directions closer than this angle (radians) are interpolated linearly (then normalized).
PARALLEL_ANGLE = 1e-7


def _pair(z1, z2):
    z1 = as_real_array("z1", z1, np.float64, "(n, p)")
    z2 = as_real_array("z2", z2, np.float64, "(n, p)")
    for name, z in (("z1", z1), ("z2", z2)):
        if z.ndim != 2:
            raise ValueError(f"{name} must be a 2-d array (n, p) of latent codes, got shape {z.shape}")
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {z1.shape} and {z2.shape}")
    return z1, z2


def _weight(t):
    return check_number("t", t, low=0, high=1)


def linear(z1, z2, t):
    """(1 - t) z_1 + t z_2."""
    z1, z2 = _pair(z1, z2)
    t = _weight(t)
    return (1 - t) * z1 + t * z2


def _cauchy_lower(q):
    """C^-1(q) for q in [0, 1/2]: -cot(pi q), -inf at 0."""
    with np.errstate(divide="ignore"):
        return -1.0 / np.tan(np.pi * q)


def _cauchy_lower_cdf(y):
    """C(-|y|) = arctan(1 / |y|) / pi, exact in the far tail."""
    with np.errstate(divide="ignore"):
        return np.arctan(1.0 / np.abs(y)) / np.pi


def _cauchy_linear_1d(x1, x2, t, law):
    """The Cauchy-linear rule for the 1-d law ``law`` (cdf, sf, ppf, isf). Each value goes to
    the Cauchy scale from its nearer tail, C^-1(F(x)) = -C^-1(1 - F(x)), and back the same
    way, so nothing rounds to 0 or 1 in the tails."""
    def to_cauchy(x):
        lower, upper = law.cdf(x), law.sf(x)
        return np.where(lower <= upper, _cauchy_lower(lower), -_cauchy_lower(upper))

    y = (1 - t) * to_cauchy(x1) + t * to_cauchy(x2)
    tail = _cauchy_lower_cdf(y)
    return np.where(y <= 0, law.ppf(tail), law.isf(tail))


def cauchy_linear(z1, z2, t, latent):
    """The coordinate-wise Cauchy-linear interpolation for the latent law ``latent``
    ('gaussian' or 'cauchy'); see the module doc."""
    z1, z2 = _pair(z1, z2)
    t = _weight(t)
    return _cauchy_linear_1d(z1, z2, t, coordinate_law(latent))


def slerp(theta1, theta2, t):
    """Spherical linear interpolation of unit vectors (rows), see the module doc.

    Rows of exactly opposite directions have no unique great circle and are refused."""
    cos_w = np.clip(np.einsum("ij,ij->i", theta1, theta2), -1.0, 1.0)
    w = np.arccos(cos_w)
    if np.any(np.pi - w < PARALLEL_ANGLE):
        raise ValueError("z1 and z2 have rows of opposite directions: the great circle between"
                         " them is not unique, so the spherical interpolation is undefined there")
    near = w < PARALLEL_ANGLE
    sin_w = np.where(near, 1.0, np.sin(w))
    a = np.where(near, 1 - t, np.sin((1 - t) * w) / sin_w)[:, None]
    b = np.where(near, t, np.sin(t * w) / sin_w)[:, None]
    theta = a * theta1 + b * theta2
    return theta / np.linalg.norm(theta, axis=1, keepdims=True)


def spherical_cauchy_linear(z1, z2, t, latent):
    """Radius by the Cauchy-linear rule of the radius's law, direction by :func:`slerp`
    (see the module doc); p >= 2 and no zero rows."""
    z1, z2 = _pair(z1, z2)
    t = _weight(t)
    latent = check_latent(latent)
    dim = z1.shape[1]
    if dim < 2:
        raise ValueError("spherical_cauchy_linear needs latent codes of dimension p >= 2 (a"
                         f" direction in R^1 is a sign, with no great circle), got p = {dim}")
    r1, r2 = np.linalg.norm(z1, axis=1), np.linalg.norm(z2, axis=1)
    if np.any(r1 == 0) or np.any(r2 == 0):
        raise ValueError("z1 and z2 must have no zero rows: a zero code has no direction")
    radius = _cauchy_linear_1d(r1, r2, t, radius_law(latent, dim))
    return radius[:, None] * slerp(z1 / r1[:, None], z2 / r2[:, None], t)
