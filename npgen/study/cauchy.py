"""Does a heavy-tailed latent change what a Lipschitz generator can do? The GAN with a Gaussian
and with a Cauchy latent, on the same data, seeds and budget.

Runs: :func:`npgen.study.plans.cauchy_configs` (the GAN of Figure 3 with ``latent`` in both laws, every m of the
preset and :attr:`StudyPlan.cauchy_seeds`; the Gaussian ones are Figure 3's own runs). For each
finished run, :func:`with_cauchy_numbers` reads the exact Lipschitz constant, the masses, the
latent's bound and MW2 (``mw2_squared``, in data units squared, between a two-component Gaussian
mixture fitted to the samples and the target) from metrics.json; they are written to
``cauchy.json`` by :func:`write_cauchy_numbers` (a step of ``npgen reproduce``), and the figure
and the report's section (:func:`section_cauchy`) are drawn from the same numbers.

The bound is, for each latent, the smallest mass between the modes any Lip-Lipschitz map can
leave given the generated masses on the two sides (:func:`npgen.study.run_metrics.latent_mass_between_bound`):
the Gaussian's F(F^-1(p) + m / Lip) - p, and for the Cauchy
:func:`npgen.analysis.theory.cauchy_mass_between_bound`, which allows preimages made of
several intervals. Beside each Cauchy run's bound, the Gaussian bound at the same constant and
side masses says what the heavy tail would allow the same network.
"""

import os

import numpy as np

from ..analysis.theory import mixture_mass_between
from ..models.latents import LATENTS
from ..util.io import atomic_write_json
from . import figures
from .plans import aggregate
from .records import Stat, by_model, drawing, first_seed, where
from .run_metrics import latent_mass_between_bound
from .verdicts import (BANDS, INCONCLUSIVE, Section, all_of, cell, collapse_notes, every_run, fmt, less,
                       sampling_slack)

#: The file of every run's numbers, in the study's folder.
CAUCHY_FILE = "cauchy.json"


def with_cauchy_numbers(rows):
    """The runs with each one's metrics extended, at m > 0, by ``gaussian_bound_same_lip`` (the
    Gaussian bound at the run's constant and masses)."""
    return [run.with_metrics(gaussian_bound_same_lip=latent_mass_between_bound(
                run.config["m"], run.metrics["lipschitz"], run.metrics["mass_left"], run.metrics["mass_right"],
                "gaussian")) if run.config["m"] > 0 else run.with_metrics() for run in rows]


#: The numbers of each run that cauchy.json records.
CAUCHY_RECORDED = (
    "lipschitz", "mass_between", "mass_left", "mass_right", "mass_between_bound", "gaussian_bound_same_lip",
    "mw2_squared", "collapse",
)


def cauchy_records(rows):
    """cauchy.json's content: per GAN run, its latent, m, seed and the numbers of :data:`CAUCHY_RECORDED`."""
    return [dict({"latent": c["latent"], "m": c["m"], "seed": c["seed"]}, **{k: mt.get(k) for k in CAUCHY_RECORDED})
            for c, mt, _ in with_cauchy_numbers(by_model(rows, "gan"))]


def write_cauchy_numbers(out, rows):
    """Write :data:`CAUCHY_FILE` into the study folder ``out`` from the study's runs ``rows``."""
    atomic_write_json(os.path.join(out, CAUCHY_FILE), cauchy_records(rows))


def latent_table(rows, latent, key):
    """{(m,): Stat of ``metrics[key]``} over the runs of ``latent`` at m > 0."""
    return aggregate([r for r in where(rows, latent=latent) if r.config["m"] > 0], ["m"], lambda mt: mt[key])


def cauchy_drawing(rows, m_values, histogram_m):
    """The Cauchy figure's draw: the first seed's histograms at ``histogram_m`` per latent, and the
    masses and bounds against m."""
    samples = {latent: run.samples() for latent, run in
               first_seed(where(rows, m=histogram_m), lambda c: c["latent"]).items()}
    m_grid = np.linspace(0.5, max(m_values), 100)
    return drawing(figures.figure_cauchy, samples, histogram_m,
                   {latent: latent_table(rows, latent, "mass_between") for latent in LATENTS},
                   {latent: latent_table(rows, latent, "mass_between_bound") for latent in LATENTS},
                   m_grid, mixture_mass_between(m_grid))


def cauchy_rows(rows, m_values):
    """The section's table: one row per m and latent."""
    table = []
    for m in m_values:
        for latent in LATENTS:
            group = where(rows, m=m, latent=latent)
            if group:
                table.append([fmt(m), latent] + [cell(group, lambda mt, k=k: mt.get(k)) for k in
                             ("lipschitz", "mass_between", "mass_between_bound", "gaussian_bound_same_lip",
                              "mw2_squared")] + [fmt(float(mixture_mass_between(m)))])
    return table


def less_mass_at_every_m(rows):
    """At every m, the Cauchy runs' mass in [-m/2, m/2] below the Gaussian runs' (bands)."""
    outcomes = []
    for m in sorted({r.config["m"] for r in rows}):
        found = {latent: Stat.of([r.metrics["mass_between"] for r in where(rows, m=m, latent=latent)])
                 for latent in LATENTS}
        outcomes.append(less(found["cauchy"], found["gaussian"], f"Cauchy at m={m:g}", f"Gaussian at m={m:g}"))
    return all_of(outcomes)


def cauchy_checks(s, rows, m_values):
    """The four checks: each bound holds, the Cauchy bound is the lower one, the question, and Lip."""
    positive = [r for r in rows if r.config["m"] > 0]
    s.add("each latent's bound is a true lower bound on the generated mass in [-m/2, m/2], in every run at m > 0, "
          "up to 4 binomial standard errors of the sample estimate (decided run by run)",
          lambda r: every_run(r, lambda c, mt: mt["mass_between"] + sampling_slack(mt["mass_between_bound"],
                                                                                    c["n_samples"])
                              >= mt["mass_between_bound"], "none below its bound"), positive)
    s.add("at every Cauchy run's exact Lip and side masses, the Cauchy bound is below the Gaussian one, or both are 0 "
          "(all the mass on one side): the heavy tail allows less mass between the modes at the same constant "
          "(decided run by run)",
          lambda r: every_run(r, lambda c, mt: mt["mass_between_bound"] < mt["gaussian_bound_same_lip"]
                              or mt["mass_between_bound"] == mt["gaussian_bound_same_lip"] == 0,
                              "the Cauchy bound below the Gaussian one in each"),
          [r for r in positive if r.config["latent"] == "cauchy"])
    s.add(f"the question: at every m > 0, the Cauchy-latent GAN runs that kept both modes put less mass in [-m/2, m/2] "
          f"than the Gaussian-latent ones ({BANDS}, per m)", less_mass_at_every_m,
          [r for r in positive if not r.metrics["collapse"]])
    largest = max((m for m in m_values if m > 0), default=None)
    if largest is not None:
        def stats(r, latent, key):
            return Stat.of([x.metrics[key] for x in where(r, m=largest, latent=latent)])
        s.add(f"at m = {largest:g} the Cauchy-latent GAN has a smaller exact Lip than the Gaussian-latent GAN ({BANDS})",
              lambda r: less(stats(r, "cauchy", "lipschitz"), stats(r, "gaussian", "lipschitz"), "Cauchy",
                             "Gaussian"), where(rows, m=largest))


def section_cauchy(rows, m_values, histogram_m):
    """The report's section of the Cauchy-latent study (its numbers: :func:`write_cauchy_numbers`)."""
    rows = with_cauchy_numbers(by_model(rows, "gan"))
    s = Section("cauchy", "Beyond the paper: a Cauchy latent",
                "Theorem 1 rests on the Gaussian's isoperimetry. With a one-dimensional Cauchy latent, half-lines are "
                "not extremal and an L-Lipschitz map can leave less mass between the modes than with a Gaussian "
                "latent at the same L (npgen.analysis.theory.cauchy_mass_between_bound). Does a GAN trained with a "
                "Cauchy latent put less mass between the modes at the same constant?",
                image="cauchy.png", header=["m", "latent", "exact Lip", "mass in [-m/2, m/2]", "latent's bound",
                                            "Gaussian bound at the same Lip", "MW2^2 to the target (data units^2)",
                                            "true mass"],
                rows=cauchy_rows(rows, m_values), draw=cauchy_drawing(rows, m_values, histogram_m))
    cauchy_checks(s, rows, m_values)
    s.collapsed = collapse_notes(rows)
    s.notes.append(cauchy_answer(rows, m_values, s.checks[2].result if len(s.checks) > 2 else INCONCLUSIVE))
    s.notes.append(f"Histograms: the first seed at m = {histogram_m:g}. MW2^2: the squared mixture-Wasserstein "
                   "distance between a 2-component Gaussian mixture fitted to the samples and the target; "
                   f"every run's numbers are in {CAUCHY_FILE}.")
    return s


def cauchy_answer(rows, m_values, verdict):
    """The study's answer in words: the question's check, then per m > 0 the collapsed runs and
    the two latents' exact Lip, mass between, bound and MW2^2 over the runs that kept both modes."""
    parts = []
    for m in [m for m in m_values if m > 0]:
        cells = []
        for latent in LATENTS:
            found = [r.metrics for r in where(rows, m=m, latent=latent)]
            kept = [mt for mt in found if not mt["collapse"]]
            numbers = ", ".join(f"{name} {fmt(Stat.of([mt[key] for mt in kept]))}" for name, key in (
                ("Lip", "lipschitz"), ("mass", "mass_between"), ("bound", "mass_between_bound"),
                ("MW2^2", "mw2_squared"))) if kept else "no run kept both modes"
            cells.append(f"{latent}: {len(found) - len(kept)} of {len(found)} collapsed; {numbers}")
        parts.append(f"m = {m:g}: " + "; ".join(cells))
    return (f"Answer to the question: {verdict}. Per m, over the runs that kept both modes: " + " | ".join(parts)
            + ". A heavy tail lowers the bound at a given constant; whether training uses that room is what the "
            "question's check decides.")
