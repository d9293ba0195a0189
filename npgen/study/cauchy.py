"""Does a heavy-tailed latent change what a Lipschitz generator can do? The GAN with a Gaussian
and with a Cauchy latent, on the same data, seeds and budget.

Runs: :func:`npgen.study.plans.cauchy_configs` (the GAN of Figure 3 with ``latent`` in both laws, every m of the
preset and :attr:`StudyPlan.cauchy_seeds`; the Gaussian ones are Figure 3's own runs). For each
finished run, :func:`with_cauchy_numbers` reads the exact Lipschitz constant, the masses and the
latent's bound from metrics.json and adds MW2 (squared, in data units squared) between a
two-component Gaussian mixture fitted to the samples and the target; they are written to
``cauchy.json`` before the figure and the report section
(:func:`npgen.study.report.section_cauchy`) are drawn from them.

The bound is, for each latent, the smallest mass between the modes any Lip-Lipschitz map can
leave given the generated masses on the two sides (:func:`npgen.study.runs.latent_mass_between_bound`):
the Gaussian's F(F^-1(p) + m / Lip) - p, and for the Cauchy
:func:`npgen.analysis.theory.cauchy_mass_between_bound`, which allows preimages made of
several intervals. Beside each Cauchy run's bound, the Gaussian bound at the same constant and
side masses says what the heavy tail would allow the same network.
"""

import os

import numpy as np

from .runs import latent_mass_between_bound


def squared_mw2_to_target(samples, m, seed=0):
    """MW2^2 (data units squared) between a 2-component mixture fitted to the samples and
    1/2 N(-m, 1) + 1/2 N(m, 1).

    :mod:`npgen.analysis.mixtures` is imported here, when first needed: scikit-learn sets
    environment variables (KMP_*) when imported, and importing npgen must leave them alone."""
    from ..analysis.mixtures import fit_mixture, mw2, target_mixture

    return mw2(fit_mixture(np.asarray(samples, np.float64).reshape(-1, 1), 2, seed=seed), target_mixture(m))


def with_cauchy_numbers(rows):
    """The rows with each run's metrics extended by ``mw2_squared`` (MW2^2 to the target) and,
    at m > 0, ``gaussian_bound_same_lip`` (the Gaussian bound at the run's constant and masses)."""
    extended = []
    for config, metrics, run_dir in rows:
        extra = {"mw2_squared": float(squared_mw2_to_target(np.load(os.path.join(run_dir, "samples.npy")),
                                                            config["m"]))}
        if config["m"] > 0:
            extra["gaussian_bound_same_lip"] = latent_mass_between_bound(
                config["m"], metrics["lipschitz"], metrics["mass_left"], metrics["mass_right"], "gaussian")
        extended.append((config, dict(metrics, **extra), run_dir))
    return extended


#: The numbers of each run that cauchy.json records.
CAUCHY_RECORDED = (
    "lipschitz", "mass_between", "mass_left", "mass_right", "mass_between_bound", "gaussian_bound_same_lip",
    "mw2_squared", "collapse",
)
