"""The presets' run lists: which seeds each point of a figure gets."""

import collections

from npgen.study.plans import PLANS, plan


def seeds_per_point(configs):
    """{(model, m, n_layers, latent): sorted seeds} of a figure's configurations."""
    points = collections.defaultdict(set)
    for c in configs:
        points[(c["model"], c["m"], c.get("n_layers"), c.get("latent"))].add(c["seed"])
    return {point: sorted(seeds) for point, seeds in points.items()}


def test_the_quick_preset_gives_every_point_a_check_compares_all_its_seeds_and_the_others_one():
    p, runs = PLANS["quick"], plan("quick")
    fig3 = seeds_per_point(runs["fig3"])
    for (model, m, _, _), seeds in fig3.items():
        assert seeds == (list(p.seeds) if m > 0 else [0]), (model, m)
    fig5 = seeds_per_point(runs["fig5"])
    for (model, _, layers, _), seeds in fig5.items():
        read = model == "vae" or layers == 3
        assert seeds == (list(p.depth_seeds) if read else [0]), (model, layers)
    assert {layers for (model, _, layers, _) in fig5 if model == "gan"} == set(p.gan_depths)
    cauchy = seeds_per_point(runs["cauchy"])
    for (_, m, _, latent), seeds in cauchy.items():
        assert seeds == (list(p.cauchy_seeds) if m > 0 else [0]), (latent, m)
    # every seed-comparing check needs at least 3 seeds (the bands' rule)
    assert min(len(p.seeds), len(p.depth_seeds), len(p.cauchy_seeds)) >= 3


def test_the_paper_preset_runs_every_point_on_all_its_seeds():
    p, runs = PLANS["paper"], plan("paper")
    assert p.figure_only_seeds is None
    assert all(seeds == list(p.seeds) for seeds in seeds_per_point(runs["fig3"]).values())
    assert all(seeds == list(p.depth_seeds) for seeds in seeds_per_point(runs["fig5"]).values())
    assert all(seeds == list(p.cauchy_seeds) for seeds in seeds_per_point(runs["cauchy"]).values())
