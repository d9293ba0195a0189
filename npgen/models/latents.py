r"""The latent distributions of a push-forward model: the standard Gaussian and the Cauchy.

* ``"gaussian"``: z ~ N(0, I_p), the paper's latent.
* ``"cauchy"``: z ~ the standard multivariate Cauchy distribution on R^p, the multivariate
  Student t with one degree of freedom: z = y / |u| with y ~ N(0, I_p) and u ~ N(0, 1)
  independent. Its density is Gamma((p + 1) / 2) / pi^((p + 1) / 2) (1 + |z|^2)^(-(p + 1) / 2);
  for p = 1 it is the standard Cauchy 1 / (pi (1 + z^2)). Each coordinate is standard Cauchy.
  It is 1-stable: its characteristic function is exp(-|s|) (|s| the Euclidean norm), so for
  independent z_1, z_2 and a, b >= 0, a z_1 + b z_2 has the law of (a + b) z_1.

Both laws are spherically symmetric, so z = |z| theta with theta uniform on the sphere and
independent of the radius |z|, whose law is given by |z|^2 ~ chi^2_p (Gaussian) and
|z|^2 / p ~ F(p, 1) (Cauchy: |y|^2 / p over u^2 / 1). :func:`radius_law` is the
radius's law and :func:`coordinate_law` that of one coordinate (N(0, 1) or standard Cauchy),
each with the cdf, sf, ppf and isf of a scipy law.
"""

import numpy as np
from scipy import stats

from ..util.checks import check_choice, check_number

LATENTS = ("gaussian", "cauchy")


def check_latent(latent, name="latent"):
    """Return ``latent`` if it names one of :data:`LATENTS`, else raise ValueError naming ``name``."""
    return check_choice(name, latent, LATENTS)


def draw_latents(rng, out, latent):
    """Fill ``out`` (n, p), a float array, with n independent draws of the latent law; return it.

    Gaussian: ``rng.standard_normal`` in place. Cauchy: y ~ N(0, I_p) in place, then each row is
    divided by |u|, u ~ N(0, 1) drawn after all of y (one extra normal per row)."""
    latent = check_latent(latent)
    rng.standard_normal(out=out, dtype=out.dtype)
    if latent == "cauchy":
        u = rng.standard_normal((len(out), 1), dtype=out.dtype)
        np.abs(u, out=u)
        out /= u
    return out


class RadiusLaw:
    """The law of |z| on R^dim: |z|^2 / scale has the scipy law ``squared`` (chi^2_dim with
    scale 1, or F(dim, 1) with scale dim). Has the cdf, sf, ppf and isf of a scipy law."""

    def __init__(self, squared, scale):
        self.squared, self.scale = squared, scale

    def cdf(self, r):
        return self.squared.cdf(np.square(r) / self.scale)

    def sf(self, r):
        return self.squared.sf(np.square(r) / self.scale)

    def ppf(self, q):
        return np.sqrt(self.squared.ppf(q) * self.scale)

    def isf(self, q):
        return np.sqrt(self.squared.isf(q) * self.scale)


def radius_law(latent, dim):
    """The law of the radius |z| of the latent on R^dim (see the module doc), as a
    :class:`RadiusLaw`."""
    dim = check_number("dim", dim, low=1, integer=True)
    if check_latent(latent) == "gaussian":
        return RadiusLaw(stats.chi2(dim), 1.0)
    return RadiusLaw(stats.f(dim, 1), float(dim))


def coordinate_law(latent):
    """The law of one coordinate of z, as a scipy law: N(0, 1), or the standard Cauchy
    (CDF 1/2 + arctan(x) / pi)."""
    return stats.norm if check_latent(latent) == "gaussian" else stats.cauchy
