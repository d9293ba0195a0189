"""The reproduction report: for each figure, the paper's claim, what this run measured, and
whether the claim held, written as report.md and as a self-contained report.html.

Each section is built from the numbers on disk (metrics.json of every finished run, read as
:class:`npgen.study.records.Run`) by its study's module: :mod:`npgen.study.paper_sections`
(Figures 1-6, the grid estimate), :mod:`npgen.study.sampler_sections` (Figure 3b),
:mod:`npgen.study.cauchy`, :mod:`npgen.study.particles` and :mod:`npgen.study.figure7_report`.
A claim's verdict is a stated, mechanical check of :mod:`npgen.study.verdicts` (for example "the
mean Lip at the largest m exceeds the mean at the smallest m > 0"), never a judgement call, so
that a run that does not show the claim says so. Building a section writes nothing; this module
draws the figures and writes report.md, report.html (:mod:`npgen.study.render`) and summary.json.
"""

import os

from ..util.io import atomic_write_texts
from .cauchy import section_cauchy
from .paper_sections import (section_fig1, section_fig2, section_fig3, section_fig4, section_fig5, section_fig6,
                             section_grid)
from .particles import section_particles
from .plans import PLANS, cauchy_m_values, collect
from .render import render_html, render_markdown
from .sampler_sections import section_fig3b
from .sweep import sweep_status


def section_runs(runs):
    """The planned configurations each section reads: its figure's, and for the grid estimate
    those of Figures 3 to 6."""
    return dict(runs, grid=[c for name in ("fig3", "fig4", "fig5", "fig6") for c in runs[name]])


def study_rows(out, preset, name, configs, require_runs=False):
    """The finished runs ([Run]) of ``configs`` in ``out/runs``; with ``require_runs``, none
    raises ValueError (one sentence) naming what was planned and how to train it."""
    runs_dir = os.path.join(out, "runs")
    found = collect(configs, runs_dir)
    if require_runs and not found:
        status = sweep_status(configs, runs_dir)
        raise ValueError(f"{runs_dir} holds no finished run of {name} ({status['total']} planned: "
                         f"{status['corrupt']} corrupt, {status['missing']} missing); run npgen reproduce "
                         f"--preset {preset} --only {name} --out {out} to train them")
    return found


def build_sections(out, preset, names, runs, require_runs=False):
    """The report's sections for the figures ``names``; with ``require_runs`` a figure with no
    finished run raises ValueError (one sentence) instead of drawing an empty figure."""
    p = PLANS[preset]
    needs = section_runs(runs)

    def rows(name):
        return study_rows(out, preset, name, needs[name], require_runs)
    builders = {
        "fig1": lambda: section_fig1(),
        "fig2": lambda: section_fig2(rows("fig2"), p.histogram_m),
        "fig3": lambda: section_fig3(rows("fig3"), p.m_values),
        "fig3b": lambda: section_fig3b(rows("fig3b"), p.m_values),
        "fig4": lambda: section_fig4(rows("fig4"), p.fig4_m),
        "fig5": lambda: section_fig5(rows("fig5"), p.fig5_m),
        "fig6": lambda: section_fig6(rows("fig6")),
        "grid": lambda: section_grid(rows("grid")),
        "cauchy": lambda: section_cauchy(rows("cauchy"), cauchy_m_values(p), p.histogram_m),
        "particles": lambda: section_particles(rows("particles"), collect(runs["fig3"], os.path.join(out, "runs")),
                                               p.m_values, p.histogram_m),
    }
    return [builders[name]() for name in names]


def draw_figures(out, sections):
    """Draw each section's figure into ``out`` (PNG and PDF); the paths of the PNGs."""
    paths = []
    for s in sections:
        if s.draw is not None and s.image:
            s.draw(os.path.join(out, s.image))
            paths.append(os.path.join(out, s.image))
    return paths


def summary(sections):
    """summary.json's content: per section its title, claim, verdict, table, checks and collapsed runs."""
    return {s.name: {"title": s.title, "claim": s.claim, "verdict": s.verdict, "header": s.header, "rows": s.rows,
                     "checks": [{"rule": c.rule, "result": c.result, "measured": c.measured,
                                 "collapsed_runs": c.collapsed, "without_collapsed": c.without_collapsed}
                                for c in s.checks],
                     "collapsed": s.collapsed, "diverged": s.diverged} for s in sections}


def write_report(out, preset, names, runs, failures=(), extra=(), notes=()):
    """Draw the figures and write report.md, report.html and summary.json into ``out``.

    ``failures``: (run name, error) of the runs that failed; both reports list them first.
    ``extra``: sections built elsewhere (Figure 7), after those of ``names``; ``notes``: lines
    under the report's title (a figure that was skipped, and why).
    """
    sections = build_sections(out, preset, names, runs) + list(extra)
    draw_figures(out, sections)
    text = render_markdown(sections, preset, failures, notes)
    atomic_write_texts({  # the three files all or none: never a report.md beside an old report.html
        os.path.join(out, "report.md"): text,
        os.path.join(out, "report.html"): render_html(text, f"npgen reproduction report ({preset} preset)", out),
        os.path.join(out, "summary.json"): summary(sections)})
    return os.path.join(out, "report.md")
