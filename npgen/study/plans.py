"""The study's plan: which runs each figure needs under each preset, and how their results are read.

A figure's runs are configurations (:func:`npgen.study.runs.make_config`); :func:`plan` lists
them per figure for a preset (:data:`PLANS`). :func:`collect` reads back the runs that finished
and :func:`aggregate` summarizes them per group, for the figures and the report alike.
"""

from dataclasses import dataclass, field

import numpy as np

import os

from ..models.latents import LATENTS
from ..util.checks import check_choice
from .records import Run, Stat
from .metrics_schema import check_metrics
from .runs import MODELS, PRESETS, make_config
from .run_dirs import find_run_dir, load_results, refuse_damaged

FIGURES = ("fig1", "fig2", "fig3", "fig3b", "fig4", "fig5", "fig6", "grid", "cauchy", "particles")
#: Figure 7 (the MNIST experiments, :mod:`npgen.study.figure7`): its own runs and data.
FIG7 = "fig7"


@dataclass(frozen=True)
class StudyPlan:
    """The settings of one preset of the study (see README, "Presets")."""

    m_values: tuple
    seeds: tuple
    gp_values: tuple
    depths: tuple
    gan_depths: tuple
    arch_m_values: tuple
    arch_seeds: tuple
    fig4_seeds: tuple
    depth_seeds: tuple
    fig4_m: float = 5.0
    fig5_m: float = 5.0
    histogram_m: float = 10.0
    skips: tuple = field(default=("plain", "resnet", "densenet"))
    cauchy_seeds: tuple = (0,)
    #: The m of the Cauchy-latent study; None: Figure 3's and the histogram's.
    cauchy_m: tuple = None
    particle_counts: tuple = (200,)
    particle_seeds: tuple = (0,)
    #: The seeds of the runs that only draw a point of a figure, which no check compares across
    #: seeds or models: Figure 3 and the Cauchy study at m = 0 (one Gaussian, no gap to fill)
    #: and Figure 5's GAN at other depths than 3 (its checks read the VAE's depths and both
    #: models' epochs at depth 3). Their networks still enter the checks decided network by
    #: network (the grid estimate's). None: the figure's own seeds.
    figure_only_seeds: tuple = None

    def seeds_for(self, seeds, read_by_a_check):
        """``seeds``, or :attr:`figure_only_seeds` for runs that no check compares."""
        return seeds if read_by_a_check or self.figure_only_seeds is None else self.figure_only_seeds


PLANS = {
    "paper": StudyPlan(m_values=tuple(range(11)), seeds=tuple(range(10)),
                       gp_values=tuple(range(1, 24, 2)) + (25,), depths=(2, 3, 4, 5, 6),
                       gan_depths=(2, 3, 4, 5, 6), arch_m_values=tuple(range(11)),
                       arch_seeds=tuple(range(5)), fig4_seeds=tuple(range(10)), depth_seeds=tuple(range(10)),
                       cauchy_seeds=tuple(range(10)), particle_counts=(200, 50000), particle_seeds=(0, 1, 2)),
    # Deep networks dominate the cost: a GAN's discriminator deepens with its generator
    # (1-4096-...-1 at 6 layers, ~150x the 3-layer step) and a 6-layer VAE decoder is
    # 1-128-...-2048-1; the quick preset keeps GAN depths to 4 and VAE depths to 5. It runs
    # Figures 2-3 on 5 seeds, Figure 5 on 3 and Figures 4 and 6 on one, so the report can decide
    # the claims of Figures 2, 3 and 5 and says that those of Figures 4 and 6 rest on one seed.
    # The points no check compares take one seed (figure_only_seeds): 4 of 5 seeds at m = 0
    # and 2 of 3 at Cauchy m = 0 and GAN depths 2 and 4 cost 316 s of the 2 600 s of run time
    # the whole reproduction (Figure 7 included) took with every seed on two cores. To finish
    # in 20 minutes on two cores, it also leaves out the 4-layer GAN of Figure 5 (one run, 76 s,
    # read by no check) and the Cauchy study's m = 0 (no gap between modes) and m = 8 (3 runs,
    # 57 s, where 2 of 3 Cauchy runs collapsed, so the study's question had no 3 seeds to
    # compare there; its checks decided run by run keep m = 2, 5 and 10).
    "quick": StudyPlan(m_values=(0, 2, 5, 8, 10), seeds=(0, 1, 2, 3, 4), gp_values=(1, 5, 10, 15, 20, 25),
                       depths=(2, 3, 4, 5), gan_depths=(2, 3), arch_m_values=(2, 5, 10),
                       arch_seeds=(0,), fig4_seeds=(0,), depth_seeds=(0, 1, 2), cauchy_seeds=(0, 1, 2),
                       cauchy_m=(2, 5, 10), particle_counts=(200, 50000), figure_only_seeds=(0,)),
}


def plan(preset):
    """Run configurations per figure: {figure: [config, ...]} (figures 1 and grid need none of their own).

    ``cauchy`` is the Cauchy-latent study (:mod:`npgen.study.cauchy`), ``particles`` the
    generative particles (:mod:`npgen.study.particles`)."""
    check_choice("preset", preset, PLANS)
    p = PLANS[preset]
    runs = {"fig1": []}
    runs["fig3"] = [make_config(model, m, preset, seed)
                    for model in MODELS for m in p.m_values for seed in p.seeds_for(p.seeds, m > 0)]
    runs["fig3b"] = runs["fig3"]  # the same runs, read for the SGM's sampler
    runs["fig2"] = [make_config(model, p.histogram_m, preset, seed) for model in MODELS for seed in p.seeds]
    runs["fig4"] = ([make_config("gan", p.fig4_m, preset, seed, sn_generator=True) for seed in p.fig4_seeds]
                    + [make_config("gan", p.fig4_m, preset, seed, gp_lipschitz=float(L))
                       for L in p.gp_values for seed in p.fig4_seeds])
    runs["fig5"] = [make_config(model, p.fig5_m, preset, seed, n_layers=depth)
                    for model, depths in (("vae", p.depths), ("gan", p.gan_depths))
                    for depth in depths for seed in p.seeds_for(p.depth_seeds, model == "vae" or depth == 3)]
    runs["fig6"] = [make_config(model, m, preset, seed, skip=skip)
                    for model in ("vae", "gan") for skip in p.skips
                    for m in p.arch_m_values for seed in p.arch_seeds]
    runs["grid"] = []
    runs["cauchy"] = cauchy_configs(p, preset)
    runs["particles"] = particle_configs(p, preset)
    return runs


def cauchy_m_values(plan):
    """The m of the Cauchy-latent study: ``plan.cauchy_m``, else the preset's Figure 3 values
    and the histogram's m."""
    if plan.cauchy_m is not None:
        return tuple(plan.cauchy_m)
    return tuple(sorted(set(plan.m_values) | {plan.histogram_m}))


def cauchy_configs(plan, preset):
    """The Cauchy-latent study's GAN runs: both latents, every m of :func:`cauchy_m_values`, the
    seeds ``plan.cauchy_seeds`` (at m = 0 those of ``plan.seeds_for``; the Gaussian runs are
    Figure 3's, same key)."""
    return [make_config("gan", m, preset, seed, latent=latent)
            for latent in LATENTS for m in cauchy_m_values(plan)
            for seed in plan.seeds_for(plan.cauchy_seeds, m > 0)]


def particle_configs(plan, preset):
    """The generative particles' runs: every m of the preset's Figure 3 and every particle count N
    of ``plan.particle_counts``. N below the preset's n_data is the small-sample regime: the
    particles then learn from N data points as well (and the discriminator's minibatch is N)."""
    configs = []
    for n in plan.particle_counts:
        small = {} if n >= PRESETS[preset]["n_data"] else {"n_data": n, "batch_size": min(n, 1000)}
        configs += [make_config("particles", m, preset, seed, n_particles=n, **small)
                    for m in plan.m_values for seed in plan.particle_seeds]
    return configs


def selected_figures(only):
    """Parse ``--only fig3,fig4`` into a tuple of figure names (every figure, Figure 7
    included, without ``--only``)."""
    if not only:
        return FIGURES + (FIG7,)
    names = tuple(name.strip() for name in only.split(",") if name.strip())
    for name in names:
        check_choice("--only entries", name, FIGURES + (FIG7,))
    return names


def collect(configs, runs_dir):
    """[Run(config, metrics, folder)] for the configurations that finished; ValueError (naming
    the file) if a finished run's metrics.json lacks a key the report reads or holds a wrong type,
    or (naming the folder) if a run's folder was damaged since it finished: a figure is never
    drawn without a run it should show."""
    refuse_damaged(configs, runs_dir)
    rows = []
    for config, metrics in zip(configs, load_results(configs, runs_dir)):
        if metrics is not None:
            run_dir = find_run_dir(config, runs_dir)
            check_metrics(metrics, config["model"], os.path.join(run_dir, "metrics.json"))
            rows.append(Run(config, metrics, run_dir))
    return rows


def aggregate(rows, by, value):
    """Group rows by the config fields ``by``; mean, std and count of ``value(metrics)`` per group.

    Returns {group_key: Stat(mean, std, n)} with groups in sorted order.
    """
    groups = {}
    for config, metrics, _ in rows:
        key = tuple(config[k] for k in by)
        v = value(metrics)
        if v is not None and np.isfinite(v):
            groups.setdefault(key, []).append(float(v))
    return {key: Stat.of(vals)
            for key, vals in sorted(groups.items(), key=lambda kv: tuple(map(_sortable, kv[0])))}


def _sortable(value):
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))
