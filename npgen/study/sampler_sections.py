"""The report's section of Figure 3b: the SGM's sampler g(x_0, z_1, ..., z_T) = x_T as a
push-forward, its measured constant beside Theorem 1's demand (:mod:`npgen.study.sampler`).
Like every section it reads finished runs and writes nothing."""

import os

import numpy as np

from ..util.io import read_npz
from . import figures
from .plans import aggregate
from .exact_sections import EXACT_COLUMNS, EXACT_NOTE, exact_columns, exact_score_statements, exact_series
from .exact_sections import meets_demand, searched
from .records import by_model, drawing, lip, mw2, where
from .sampler import CLASSES, EXPANSION_SHARE, MASS_CONFIDENCE, TRACE_FILE
from .verdicts import Section, cell, collapse_notes, every_run, fmt


def meets(rows):
    """'k of n runs' in which the sampler meets Theorem 1's demand (:func:`npgen.study.exact_sections.meets_demand`)."""
    return f"{sum(meets_demand(r.metrics) for r in rows)} of {len(rows)}"


def sampler_statements(rows, m_values):
    """For each m > 0, one sentence: does the SGM sampler's measured constant meet Theorem 1's demand?"""
    lines = []
    for m in m_values:
        group = where(by_model(rows, "sgm"), m=m)
        if m <= 0 or not group:
            continue
        met = sum(meets_demand(r.metrics) for r in group)
        verdict = ("meets it in every run" if met == len(group) else "falls short of it in every run" if met == 0
                   else f"meets it in {met} of {len(group)} runs")
        lines.append(f"m={m:g}: the SGM sampler's searched lower bound on Lip(g) (data units) is "
                     f"{cell(group, searched)}, beside the max over the samples of |grad g| "
                     f"{cell(group, lambda mt: mt['sampler_lipschitz'])}; Theorem 1 demands between "
                     f"{cell(group, lambda mt: mt['theorem1_required_lipschitz'])} and "
                     f"{cell(group, lambda mt: mt['theorem1_required_lipschitz_upper'])} for the mass it left between "
                     f"the modes, and it {verdict} (meeting it means the larger lower bound exceeds the upper end; "
                     "Figure 3b).")
    return lines


def sampler_trace(rows, m):
    """The arrays of sampler_trace.npz of the first seed's SGM run at ``m``, or None."""
    for run in sorted(where(by_model(rows, "sgm"), m=m), key=lambda r: r.config["seed"]):
        path = os.path.join(run.folder, TRACE_FILE)
        if os.path.exists(path):
            return read_npz(path)
    return None


def attribution_notes(sgm_rows, m):
    """Per-level attribution at ``m``: the factor each level's steps multiply |grad g|^2 by (median over the
    samples, and at the sample of the maximum; means over the runs), and how many steps carry most of the growth
    of log |grad g|^2 on the traced samples, by where they end."""
    group = where(sgm_rows, m=m)
    if not group:
        return []
    first = group[0].metrics
    steps_per_level, levels = first["sampler_steps_per_level"], first["sampler_levels"]

    def mean_of(k, key):
        return fmt(float(np.mean([r.metrics["sampler_levels"][k][key] for r in group])))
    factors = ", ".join(f"sigma {fmt(level['sigma_standardized'])}: {mean_of(k, 'grad_sq_factor_median')} "
                        f"(at the max {mean_of(k, 'grad_sq_factor_at_max')})" for k, level in enumerate(levels))
    steps = {name: [k for r in group for k in r.metrics["sampler_expansion_steps"][name]] for name in CLASSES}
    counts = "; ".join(f"ending {name}: median {fmt(float(np.median(v)))} steps ({len(v)} traced samples)"
                       if v else f"ending {name}: no traced sample" for name, v in steps.items())
    return [f"Per-level attribution at m={m:g} ({len(group)} runs): the factor by which each noise level's "
            f"{steps_per_level} steps multiply |grad g|^2, median over the samples (and at the sample of the maximum), "
            f"mean over the runs; sigma on the standardized scale: {factors}.",
            f"Steps that carry {EXPANSION_SHARE:.0%} of the growth of log |grad g|^2, of "
            f"{steps_per_level * len(levels)}: {counts}."]


def figure3b_series(rows):
    """Figure 3b's left panel: legend label -> (table over m, colour, line style, marker)."""
    def table(model, value):
        return aggregate(by_model(rows, model), ["m"], value)
    colors = figures.MODEL_COLORS
    return {"SGM sampler: max |grad g| over the samples (lower bound on Lip(g))":
            (table("sgm", lambda mt: mt["sampler_lipschitz"]), colors["sgm"], "-", "s"),
            "Theorem 1's demand for the SGM's mass between the modes (lower end of its interval)":
            (table("sgm", lambda mt: mt["theorem1_required_lipschitz"] if mt["theorem1_required_lipschitz"] > 0
                   else None), "k", "--", "x"),
            "SGM score net, data scale": (table("sgm", lip), colors["sgm"], ":", "o"),
            "GAN (exact Lip of G)": (table("gan", lip), colors["gan"], "-", "o"),
            "VAE (exact Lip of the decoder)": (table("vae", lip), colors["vae"], "-", "o"),
            **exact_series(lambda value: table("sgm", value))}


FIG3B_HEADER = ["m", "SGM score-net Lip (data scale)", "SGM sampler max |grad g| (lower bound on Lip(g))",
                "its x_0 part", "its noise part", "median |grad g|", "Theorem 1 demand, lower end", "upper end",
                "sampler exceeds the upper end", "SGM mass between", "SGM MW2^2", "GAN Lip", "VAE Lip",
                *EXACT_COLUMNS]


def figure3b_rows(rows, m_values):
    """Figure 3b's table: one row per m with SGM runs (:data:`FIG3B_HEADER`)."""
    table = []
    for m in m_values:
        group = where(by_model(rows, "sgm"), m=m)
        if not group:
            continue
        table.append([fmt(m), cell(group, lip)]
                     + [cell(group, lambda mt, k=k: mt[k]) for k in (
                         "sampler_lipschitz", "sampler_lipschitz_x0", "sampler_lipschitz_noise",
                         "sampler_gradient_median", "theorem1_required_lipschitz",
                         "theorem1_required_lipschitz_upper")]
                     + [meets(group), cell(group, lambda mt: mt["mass_between"]), cell(group, mw2),
                        cell(where(by_model(rows, "gan"), m=m), lip), cell(where(by_model(rows, "vae"), m=m), lip)]
                     + exact_columns(group))
    return table


SAMPLER_NOTE = (
    "The sampler's gradient is exact, not estimated: the Langevin kernel carries d x_t / d x_0 and the "
    "squared norm of the gradient over (x_0, z_1..z_t) through every step (n <- f^2 n + alpha with "
    "f = 1 + (alpha / 2) s'(x)), checked against finite differences of the whole sampler. Its maximum "
    "over the run's samples is a lower bound on Lip(g), the supremum over all inputs. Theorem 1's "
    "demand is the smallest Lip(g) with which any push-forward of a Gaussian leaves as little mass "
    "between the modes (the larger of the demands read from the left and from the right side); it is "
    f"given as an interval, the demands at the one-sided {MASS_CONFIDENCE:.0%} Clopper-Pearson upper "
    "and lower limits of that mass from the run's samples (the upper end is infinite when no sample "
    "fell between: such runs are left out of its mean, and '-' means every run had none). The "
    "sampler meets the demand only when its constant exceeds the upper end; inside the interval the "
    "data allow a true demand above it. A sampler that falls short of the demand does not contradict "
    "the theorem: Lip(g) must reach it at inputs the samples did not visit. Both numbers are on the "
    "data's own scale, the score network's as well (the standardized-scale constant divided by sd^2).")


def section_fig3b(rows, m_values):
    """Figure 3b: the SGM sampler's measured constant against Theorem 1's demand, per m, and
    one run's |grad g| along the Langevin steps at the largest m."""
    sgm = by_model(rows, "sgm")
    positive = [m for m in m_values if m > 0]
    m_trace = positive[-1] if positive else (m_values[-1] if m_values else 0)
    s = Section("fig3b", "Figure 3b: the SGM's sampler is a push-forward too",
                "Annealed Langevin sampling is a map g(x_0, z_1, ..., z_T) = x_T of T + 1 standard normals, so "
                "Theorem 1 (dimension-free) applies to it: if the SGM leaves almost no mass between the modes, the "
                "sampler as a whole must be steep, however tame each score evaluation is.",
                image="fig3b.png", header=list(FIG3B_HEADER), rows=figure3b_rows(rows, m_values),
                draw=drawing(figures.figure3b, figure3b_series(rows), sampler_trace(rows, m_trace), m_trace))
    s.add("at every m > 0, the SGM sampler's certified lower bound on Lip(g) (searched or sampled) exceeds the "
          "upper end of Theorem 1's demand (decided run by run)",
          lambda r: every_run(r, lambda c, mt: meets_demand(mt), "each above its demand's upper end"),
          [r for r in sgm if r.config["m"] > 0])
    s.notes += sampler_statements(rows, m_values) + [SAMPLER_NOTE] + attribution_notes(sgm, m_trace)
    s.notes += exact_score_statements(sgm, m_values) + [EXACT_NOTE]
    s.collapsed = collapse_notes(rows)
    return s
