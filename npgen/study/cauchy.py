"""Does a heavy-tailed latent change what a Lipschitz generator can do? The GAN with a Gaussian
and with a Cauchy latent, on the same data, seeds and budget.

Runs: :func:`npgen.study.plans.cauchy_configs` (the GAN of Figure 3 with ``latent`` in both laws, every m of the
preset and :attr:`StudyPlan.cauchy_seeds`; the Gaussian ones are Figure 3's own runs). For each
finished run, :func:`with_cauchy_numbers` reads the exact Lipschitz constant, the masses, the
latent's bound and MW2 (``mw2_squared``, in data units squared, between a two-component Gaussian
mixture fitted to the samples and the target) from metrics.json; they are written to
``cauchy.json`` before the figure and the report section
(:func:`npgen.study.report.section_cauchy`) are drawn from them.

The bound is, for each latent, the smallest mass between the modes any Lip-Lipschitz map can
leave given the generated masses on the two sides (:func:`npgen.study.runs.latent_mass_between_bound`):
the Gaussian's F(F^-1(p) + m / Lip) - p, and for the Cauchy
:func:`npgen.analysis.theory.cauchy_mass_between_bound`, which allows preimages made of
several intervals. Beside each Cauchy run's bound, the Gaussian bound at the same constant and
side masses says what the heavy tail would allow the same network.
"""

from .runs import latent_mass_between_bound


def with_cauchy_numbers(rows):
    """The rows with each run's metrics extended, at m > 0, by ``gaussian_bound_same_lip`` (the
    Gaussian bound at the run's constant and masses)."""
    extended = []
    for config, metrics, run_dir in rows:
        extra = {}
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
