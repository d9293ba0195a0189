"""Do particles transported by a Lipschitz discriminator escape the push-forward limit? The
generative particles (:class:`npgen.models.Particles`) on the bimodal task, beside Figure 3's
GAN, VAE and SGM.

Runs: :func:`npgen.study.plans.particle_configs`, every m of the preset with a small particle
count (the small-sample regime: N particles learning from N data points) and with N = 50 000.
For each finished run, metrics.json holds the masses, the histogram TV estimate, MW2^2 to the
target (data units^2), the discriminator's exact constant, the kinetic energy along the run and
the training time; the numbers of :data:`PARTICLE_RECORDED` are written to
``particles.json`` by :func:`write_particle_numbers` (a step of ``npgen reproduce``), and the
figure and the report's section (:func:`section_particles`) are drawn from the same numbers.
"""

import os

from ..analysis.theory import mixture_mass_between
from ..util.io import atomic_write_json
from . import figures
from .records import Stat, by_model, drawing, where
from .verdicts import BANDS, INCONCLUSIVE, MIN_SEEDS, Section, cell, collapse_notes, every_run, fmt

#: The file of every run's numbers, in the study's folder.
PARTICLES_FILE = "particles.json"
#: Both modes are kept when the smaller mode's share of the mass outside [-m/2, m/2] exceeds this.
BOTH_MODES_SHARE = 0.2
#: The run has converged when its last kinetic energy is below this fraction of the largest.
CONVERGED_FRACTION = 0.01
#: Slack on the discriminator's exact constant over its bound L (spectral norm's power iteration).
LIPSCHITZ_SLACK = 1.05

#: The numbers of each run that particles.json records.
PARTICLE_RECORDED = (
    "mass_between", "true_mass_between", "smaller_mode_share", "tv_estimate", "mw2_squared",
    "discriminator_lipschitz", "discriminator_lipschitz_bound", "final_kinetic_energy", "train_seconds",
    "collapse",
)


def particle_records(rows):
    """particles.json's content: per particles run, its settings, the kinetic energy along the run
    and the numbers of :data:`PARTICLE_RECORDED`."""
    return [dict({"n_particles": c["n_particles"], "n_data": c["n_data"], "m": c["m"], "seed": c["seed"],
                  "divergence": c["divergence"], "kinetic_energy_vs_step": mt["kinetic_energy_vs_step"]},
                 **{k: mt.get(k) for k in PARTICLE_RECORDED}) for c, mt, _ in by_model(rows, "particles")]


def write_particle_numbers(out, rows):
    """Write :data:`PARTICLES_FILE` into the study folder ``out`` from the study's runs ``rows``."""
    atomic_write_json(os.path.join(out, PARTICLES_FILE), particle_records(rows))


def peak_fraction(metrics):
    """The last kinetic energy over the largest one along the run."""
    energies = [e for _, e in metrics["kinetic_energy_vs_step"]]
    return metrics["final_kinetic_energy"] / max(max(energies), 1e-300)


def particles_drawing(rows, histogram_m):
    """The particles' figure: the first run at ``histogram_m`` per particle count, and the first
    seed's kinetic energy curves."""
    samples, kinetic = {}, {}
    for run in sorted(rows, key=lambda r: (r.config["seed"], r.config["m"])):
        n = run.config["n_particles"]
        if run.config["m"] == histogram_m and n not in samples:
            samples[n] = run.samples()
        if run.config["seed"] == min(r.config["seed"] for r in rows):
            kinetic.setdefault(n, []).append((run.config["m"], run.metrics["kinetic_energy_vs_step"]))
    return drawing(figures.figure_particles, samples, histogram_m, kinetic)


PARTICLE_COLUMNS = ("mw2_squared", "tv_estimate", "discriminator_lipschitz", "final_kinetic_energy", "train_seconds")


def particle_rows(rows, fig3_rows, m_values, counts):
    """The section's table: per m, Figure 3's masses, each particle count's mass, the true mass,
    then each count's :data:`PARTICLE_COLUMNS`."""
    table = []
    for m in m_values:
        cells = [cell(where(by_model(fig3_rows, model), m=m), lambda mt: mt["mass_between"]) if
                 where(by_model(fig3_rows, model), m=m) else "-" for model in ("gan", "vae", "sgm")]
        by_n = {n: where(rows, m=m, n_particles=n) for n in counts}
        cells += [cell(by_n[n], lambda mt: mt["mass_between"]) if by_n[n] else "-" for n in counts]
        cells.append(fmt(float(mixture_mass_between(m))))
        for n in counts:
            for key in PARTICLE_COLUMNS:
                cells.append(cell(by_n[n], lambda mt, key=key: mt[key]) if by_n[n] else "-")
        table.append([fmt(m)] + cells)
    return table


def particle_checks(s, rows, fig3_rows, m_values):
    """Both modes in every run, less mass than Figure 3's GAN, convergence, the discriminator's constant."""
    s.add(f"every particles run at m > 0 keeps both modes: the smaller mode's share of the mass outside [-m/2, m/2] "
          f"is above {BOTH_MODES_SHARE:.0%} (decided run by run)",
          lambda r: every_run(r, lambda c, mt: mt["smaller_mode_share"] > BOTH_MODES_SHARE, "both modes in each"),
          [r for r in rows if r.config["m"] > 0])
    largest = max((m for m in m_values if m > 0), default=None)
    if largest is not None:
        gan = Stat.of([r.metrics["mass_between"] for r in where(by_model(fig3_rows, "gan"), m=largest)])

        def below_gan(r):
            if gan is None or gan.n < MIN_SEEDS:
                return INCONCLUSIVE, f"Figure 3's GAN at m = {largest:g}: {fmt(gan)}, fewer than {MIN_SEEDS} seeds"
            return every_run(r, lambda c, mt: mt["mass_between"] < gan.mean - gan.std,
                             f"each below the GAN's {fmt(gan)} band")
        s.add(f"at m = {largest:g} every particles run puts less mass in [-m/2, m/2] than the low edge of Figure 3's "
              f"GAN band (mean - std over its seeds; {BANDS})", below_gan, where(rows, m=largest))
    s.add(f"the particles converge: the last kinetic energy is below {CONVERGED_FRACTION:.0%} of its largest value "
          "along the run (decided run by run)",
          lambda r: every_run(r, lambda c, mt: peak_fraction(mt) < CONVERGED_FRACTION, "converged"), rows)
    s.add(f"the discriminator's exact constant is at most {LIPSCHITZ_SLACK:g} L (spectral norm's estimate; decided "
          "run by run)",
          lambda r: every_run(r, lambda c, mt: mt["discriminator_lipschitz"]
                              <= LIPSCHITZ_SLACK * mt["discriminator_lipschitz_bound"], "within the bound"), rows)


def section_particles(rows, fig3_rows, m_values, histogram_m):
    """The report's section of the generative particles (its numbers: :func:`write_particle_numbers`)."""
    rows = by_model(rows, "particles")
    counts = sorted({r.config["n_particles"] for r in rows})
    header = (["m", "GAN mass", "VAE mass", "SGM mass"] + [f"particles N={n} mass" for n in counts]
              + ["true mass"] + [f"N={n}: {what}" for n in counts for what in (
                  "MW2^2 (data units^2)", "TV estimate", "exact Lip of phi", "final kinetic energy", "train seconds")])
    s = Section("particles", "Beyond the paper: Lipschitz-regularized generative particles",
                "Particles moved along the gradient of an L-Lipschitz discriminator of a Lipschitz-regularized "
                "divergence (KL) are not a push-forward of a fixed latent law, so Theorem 1 does not bind them: they "
                "can fit both modes with little mass between them, even from few samples.", image="particles.png",
                header=header, rows=particle_rows(rows, fig3_rows, m_values, counts),
                draw=particles_drawing(rows, histogram_m))
    particle_checks(s, rows, fig3_rows, m_values)
    s.collapsed = collapse_notes(rows)
    s.notes.append(cost_note(rows, counts))
    s.notes.append(f"Divergence: KL. L = 1, dt = 0.1 (L dt = 0.1 = the resolution h: the stability condition holds "
                   "with equality), 5 discriminator steps per particle step. TV: the histogram estimate on the "
                   "paper's 400 bins (biased upwards for a few hundred particles). The GAN/VAE/SGM columns are "
                   f"Figure 3's runs (mean ± std over its seeds). Every run's numbers are in {PARTICLES_FILE}.")
    return s


def cost_note(rows, counts):
    """What the particles cost, per particle count (training seconds, per run)."""
    if not rows:
        return f"Cost: {INCONCLUSIVE} (no finished run)."
    parts = []
    for n in counts:
        group = [r.metrics for r in rows if r.config["n_particles"] == n]
        steps = sorted({r.config["n_steps"] for r in rows if r.config["n_particles"] == n})
        parts.append(f"N = {n}: {fmt(Stat.of([mt['train_seconds'] for mt in group]))} s per run of "
                     f"{', '.join(map(str, steps))} particle steps")
    return "Cost (training seconds on this machine, shared with other work): " + "; ".join(parts) + "."
