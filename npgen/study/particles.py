"""Do particles transported by a Lipschitz discriminator escape the push-forward limit? The
generative particles (:class:`npgen.models.Particles`) on the bimodal task, beside Figure 3's
GAN, VAE and SGM.

Runs: :func:`npgen.study.plans.particle_configs`, every m of the preset with a small particle
count (the small-sample regime: N particles learning from N data points) and with N = 50 000.
For each finished run, metrics.json holds the masses, the histogram TV estimate, MW2^2 to the
target (data units^2), the discriminator's exact constant, the kinetic energy along the run and
the training time; the numbers of :data:`PARTICLE_RECORDED` are written to
``particles.json`` before the figure and the report section
(:func:`npgen.study.report.section_particles`) are drawn from them.
"""

#: The numbers of each run that particles.json records.
PARTICLE_RECORDED = (
    "mass_between", "true_mass_between", "smaller_mode_share", "tv_estimate", "mw2_squared",
    "discriminator_lipschitz", "discriminator_lipschitz_bound", "final_kinetic_energy", "train_seconds",
    "collapse",
)
