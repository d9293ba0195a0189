"""Figure 7's numbers, figures and report section, from the finished runs on disk.

:func:`collect_fig7` reads the runs of :mod:`npgen.study.figure7`; :func:`write_fig7_numbers`
writes ``out/fig7/fig7.json`` (every number the section shows, per training seed; a step of
``npgen reproduce``); :func:`section_fig7` returns the report's section with its stated checks
(the rules of :mod:`npgen.study.figure7_checks`), which draws ``fig7.png`` (the histograms of
seed 0 with the other seeds' outlines) and ``fig7_samples.png`` (a grid of seed 0's samples per
source). It computes nothing that a run's key depends on.
"""

import os

import numpy as np

from ..util.io import atomic_write_json
from . import figures
from .figure7 import (DATASETS, FIG7_DIR, GRID_IMAGES, MODELS, PLANS, PREPARATION_STAGES, SEEDS, fig7_configs,
                      fig7_runs_dir)
from .figure7_checks import (ROW_TITLES, SEED_RULE, describe_failure, failure_of, fig7_checks, outside_share,
                             run_label, smaller_mode_share, theorem_line)
from .records import Run, Stat
from .run_dirs import refuse_damaged
from .sweep import find_run_dir, load_results
from .verdicts import Section, fmt

NUMBERS_FILE = "fig7.json"
SOURCE_ORDER = ("data",) + MODELS


def collect_fig7(out, preset, identity):
    """The finished runs: {stage: Run} of the classifier and the embedding, and {(dataset,
    source): [Run]} of the data rows and the models, in the order of their seeds; ValueError
    (naming the folder) if a run was damaged since it finished."""
    runs_dir = fig7_runs_dir(out)
    configs = fig7_configs(preset, identity)
    refuse_damaged(configs, runs_dir)
    found = {}
    for config, metrics in zip(configs, load_results(configs, runs_dir)):
        if metrics is None:
            continue
        run = Run(config, metrics, find_run_dir(config, runs_dir))
        if config["stage"] in PREPARATION_STAGES:
            found[config["stage"]] = run
        else:
            found.setdefault((config["dataset"], config["model"]), []).append(run)
    return {key: sorted(runs, key=lambda r: r.config["seed"]) if isinstance(runs, list) else runs
            for key, runs in found.items()}


#: The numbers of a run that fig7.json keeps.
KEPT = ("m", "n_samples", "mass_between", "p_left", "p_right", "near_3", "near_7", "share_3", "share_7",
        "share_other", "outside_edges", "side_spread", "projection_std", "exact_mass_between", "lipschitz",
        "sigmas", "step_size", "variance_ratio", "train_seconds", "exact_score", "score_error_per_level",
        "pixel_line")


def fig7_numbers(found):
    """The numbers of Figure 7 as one JSON-able dict (what fig7.json holds): per data set and
    source, a list of its runs' numbers (one per training seed: the seed, the masses, shares,
    spreads, Lipschitz and Theorem 1 bounds, the smaller mode's share and the run's failure,
    "collapsed", "diverged" or None, by :mod:`npgen.study.figure7_checks`'s rules)."""
    numbers = {name: {} for name in DATASETS}
    for key, runs in found.items():
        if key in PREPARATION_STAGES:
            numbers[key] = {k: v for k, v in runs.metrics.items() if k != "wall_time_s"}
            continue
        numbers[key[0]][key[1]] = [
            dict({k: run.metrics[k] for k in KEPT if k in run.metrics}, seed=run.config["seed"],
                 smaller_mode_share=smaller_mode_share(run.metrics),
                 failure=None if key[1] == "data" else failure_of(run.metrics)) for run in runs]
    return numbers


def write_fig7_numbers(out, found):
    """Write ``out/fig7/fig7.json``: :func:`fig7_numbers` of the runs ``found`` (:func:`collect_fig7`)."""
    atomic_write_json(os.path.join(out, FIG7_DIR, NUMBERS_FILE), fig7_numbers(found))


def per_seed(by):
    """{seed: {source: numbers}} of one data set's sources ``by`` ({source: [numbers]}), the
    data rows' single run in every seed."""
    seeds = sorted({mt["seed"] for model in MODELS for mt in by.get(model, [])})
    data = by.get("data", [None])[0]
    return {seed: {**({"data": data} if data else {}),
                   **{model: mt for model in MODELS for mt in by.get(model, []) if mt["seed"] == seed}}
            for seed in seeds}


# --------------------------------------------------------------------------- the figures


def _outline(mt):
    """The total counts of a run's histogram (every class)."""
    return np.sum([mt["counts"][name] for name in mt["counts"]], axis=0).tolist()


def fig7_drawing(found):
    """Figure 7's draw (None without runs): the histograms of each source's first seed, the
    other seeds' totals as outlines, to ``path``, and beside it fig7_samples.png, a grid of
    evenly spaced samples of the first seed per data set and source."""
    panels, grids = {name: {} for name in DATASETS}, {name: {} for name in DATASETS}
    for key, runs in found.items():
        if key in PREPARATION_STAGES:
            continue
        first, *others = runs
        panels[key[0]][key[1]] = dict(first.metrics, outlines=[_outline(run.metrics) for run in others])
        samples = first.samples(mmap_mode="r", width=None)
        # evenly spaced rows: the data rows are in the data set's order (3s first)
        grids[key[0]][key[1]] = samples[np.linspace(0, len(samples) - 1, GRID_IMAGES).astype(int)]
    panels = {n: {k: panels[n][k] for k in SOURCE_ORDER if k in panels[n]} for n in DATASETS if panels[n]}
    grids = {n: {k: grids[n][k] for k in SOURCE_ORDER if k in grids[n]} for n in DATASETS if grids[n]}
    if not panels:
        return None

    def draw(path):
        figures.figure7(path, panels, ROW_TITLES)
        figures.image_grid(os.path.join(os.path.dirname(path), "fig7_samples.png"), grids, ROW_TITLES)
    return draw


# --------------------------------------------------------------------------- the table


def over_runs(values):
    """One value as itself, several as 'mean ± std (n=k)' (population std over the runs)."""
    values = [v for v in values if v is not None]
    if len(values) == 1:
        return fmt(values[0])
    return fmt(Stat.of(values))


def failures_cell(runs):
    """'none of 3', or 'collapsed in 1 of 3 (seed 2)' and the like."""
    parts = []
    for kind in ("collapsed", "diverged"):
        seeds = [str(mt["seed"]) for mt in runs if mt["failure"] == kind]
        if seeds:
            parts.append(f"{kind} in {len(seeds)} of {len(runs)} (seed {', '.join(seeds)})")
    return "; ".join(parts) or f"none of {len(runs)}"


def fig7_row(name, model, runs):
    """One row of the table: a data set's source and its numbers over its runs."""
    def column(value):
        return over_runs([value(mt) for mt in runs])

    def lip(key):
        return column(lambda mt: mt.get("lipschitz", {}).get(key))

    return [ROW_TITLES[name], model.upper() if model != "data" else "data",
            failures_cell(runs) if model != "data" else "-",
            column(lambda mt: mt["mass_between"]), column(lambda mt: mt.get("exact_mass_between")),
            column(lambda mt: mt["share_other"]), column(smaller_mode_share),
            column(outside_share), column(lambda mt: mt["side_spread"]), lip("upper"), lip("lower"),
            column(lambda mt: theorem_line(mt)["mass_between"]), lip("theorem1_with_upper"),
            lip("theorem1_with_lower")]


FIG7_HEADER = ["data set", "source", "collapsed or diverged (runs)", "mass between the modes (|t| <= m/2)",
               "exact (Gaussian model)", "share neither 3 nor 7", "smaller mode's share s",
               "share outside the range", "side spread (t units)", "Lip upper (certified)", "Lip lower (searched)",
               "mass between on Theorem 1's line", "Thm 1 bound, certified Lip (valid)",
               "Thm 1 bound, searched Lip (not guaranteed)"]


def exact_score_rows(name, by):
    """The table row of the SGM's sampler run on the exact score (the two noisy digits only):
    the columns of a source's row over the SGM's seeds, '-' where a column describes a network."""
    exact = [mt["exact_score"] for mt in by.get("sgm", []) if "exact_score" in mt]
    if not exact:
        return []

    def column(value):
        return over_runs([value(mt) for mt in exact])
    return [[ROW_TITLES[name], f"SGM sampler on the exact score ({exact[0]['n_samples']} samples per seed)", "-",
             column(lambda mt: mt["mass_between"]), "-", column(lambda mt: mt["share_other"]),
             column(smaller_mode_share), column(outside_share), column(lambda mt: mt["side_spread"]),
             "-", "-", column(lambda mt: mt["mass_between"]), "-", "-"]]


# --------------------------------------------------------------------------- the section


def name_failures(s, name, by):
    """Name every collapsed run of data set ``name`` in ``s.collapsed`` and every diverged one in
    ``s.diverged``, with its numbers and the rule."""
    for model in MODELS:
        for mt in by.get(model, []):
            if mt["failure"] is not None:
                getattr(s, mt["failure"]).append(f"{run_label(name, model, mt['seed'])}: {describe_failure(mt)}")


def section_fig7(found, identity, preset):
    """Figure 7's section from the runs ``found`` (:func:`collect_fig7`): the table over seeds,
    the checks per data set, the collapsed and diverged runs, and how to draw the figure."""
    numbers = fig7_numbers(found)
    draw = fig7_drawing(found)
    s = Section("fig7", "Figure 7: MNIST in dimension 784 (two noisy digits; the 3s and 7s in a Wasserstein embedding)",
                "The VAE interpolates between the 3 and the 7 (mass between the modes, samples classified as other "
                "digits), the GAN does not interpolate but gives a narrower histogram, and the SGM fits both modes "
                "(without their proportions).",
                image="fig7.png" if draw else None, header=list(FIG7_HEADER), draw=draw)
    for name in DATASETS:
        by = numbers[name]
        s.rows += [fig7_row(name, model, by[model]) for model in SOURCE_ORDER if model in by]
        s.rows += exact_score_rows(name, by)
        s.checks += fig7_checks(name, per_seed(by))
        name_failures(s, name, by)
    s.notes += _notes(numbers, identity, preset) + exact_score_notes(numbers)
    return s


def _notes(numbers, identity, preset):
    plan = PLANS[preset]
    seeds = ", ".join(map(str, SEEDS))
    notes = [f"Data: {identity['source']} ({identity['n_images']} training images, SHA-256 {identity['sha256']}); "
             f"5000 samples per run. Each model is trained at the seeds {seeds}; the data rows, the classifier "
             "and the embedding are single runs. A model's cells are mean ± std over its runs (population std, "
             "n = number of runs), collapsed and diverged runs included: they are named below, and the checks "
             f"say which of them they leave out. {SEED_RULE}",
             "t is the projection on the line through the two modes (pixel units for the two noisy digits, code "
             "units in the embedding); the modes sit at t = -m and t = m, and 'between' is |t| <= m / 2. Side "
             "spread: the mean over t < 0 and t >= 0 of the std of t. s: of the samples within m / 2 of a mode and "
             "classified as its digit, the smaller mode's share, min(near 3, near 7) / (near 3 + near 7). A run has "
             "collapsed when s < 5%, and diverged when more than 1% of its samples lie outside the histogram's "
             "range (the data's range widened by a quarter on each side).",
             "fig7.png: the filled bars are the first seed's histogram (split by the classifier's digit); the "
             "black outlines are the other seeds' histograms (every digit). fig7_samples.png: the first seed's "
             "samples.",
             f"Settings ({preset} preset): {plan.mixture_epochs} epochs on the two noisy digits "
             f"({2 * plan.mixture_repeats + 2} images), {plan.subset_epochs} on the 3s and 7s, batch {plan.batch_size},"
             f" Adam lr {plan.lr:g} (the GAN's betas {tuple(plan.gan_betas)}); the SGM has {plan.n_levels} noise "
             f"levels with {plan.steps_per_level} Langevin steps each. The SGM is not a push-forward model: "
             "Theorem 1 does not apply to it.",
             "Lip: l2 Lipschitz constant of the generator / decoder z -> x in pixel units; 'upper' is certified from "
             "the weights, 'lower' is the largest Jacobian norm a search found. Theorem 1's bound falls as Lip grows, "
             "so only the certified column is a bound; the searched column shows how much larger it could be. For "
             "the 3s and 7s, Theorem 1 is evaluated on the line through the pixel-space barycentres of the 3s and "
             "the 7s (its own column of measured mass), not in the embedding: the embedding reads x / sum(x), which "
             "has no Lipschitz bound from the weights (it is unbounded as sum(x) -> 0)."]
    notes += [training_time_note(numbers)] if any(numbers[n] for n in DATASETS) else []
    if "classifier" in numbers:
        c = numbers["classifier"]
        notes.append(f"Classifier: {c['held_out_accuracy']:.1%} accuracy on {c['n_held_out']} held-out images.")
    if "embedding" in numbers:
        e = numbers["embedding"]
        notes.append(f"Wasserstein embedding: trained on {e['train_pairs']} pairs with exact OT costs; on "
                     f"{e['held_out_pairs']} held-out pairs the squared code distance has a median relative error "
                     f"of {e['held_out_relative_error']:.1%} against the OT cost and a correlation of "
                     f"{e['held_out_correlation']:.3f}.")
    return notes


def training_time_note(numbers):
    """The training seconds of each model's runs (mean ± std over seeds) and their total."""
    cells, total = [], 0.0
    for name in DATASETS:
        for model in MODELS:
            seconds = [mt["train_seconds"] for mt in numbers[name].get(model, []) if "train_seconds" in mt]
            if seconds:
                cells.append(f"{ROW_TITLES[name]}, {model.upper()}: {over_runs(seconds)} s")
                total += sum(seconds)
    return (f"Training time per run (wall seconds of the training loop, without sampling and metrics): "
            f"{'; '.join(cells)}; {total:.0f} s in all.")


def exact_score_notes(numbers):
    """What the exact score says of the SGM on the two noisy digits, over the SGM's seeds: the
    score error per level and how much of the SGM's mass between the modes the sampler alone
    leaves there."""
    runs = [mt for mt in numbers["mixture"].get("sgm", []) if "exact_score" in mt]
    if not runs:
        return []
    errors = np.mean([mt["score_error_per_level"] for mt in runs], axis=0)
    levels = ", ".join(f"sigma {fmt(sigma)}: {fmt(float(error))}" for sigma, error in zip(runs[0]["sigmas"], errors))
    exact = [mt["exact_score"]["mass_between"] for mt in runs]
    trained = [mt["mass_between"] for mt in runs]
    added = [t - e for t, e in zip(trained, exact)]
    return [f"The two noisy digits are a Gaussian mixture, so the SGM's score has an exact yardstick. Its network's "
            f"relative score error E||s_theta - s||^2 / E||s||^2 on noised training rows, per level (sigma in pixel "
            f"units; a ratio; mean over {len(runs)} seed(s)): {levels}.",
            f"The same sampler (levels, steps, step size, start and noise of each run's first "
            f"{runs[0]['exact_score']['n_samples']} samples) on the exact score leaves a mass of {over_runs(exact)} "
            f"between the modes, with {over_runs([mt['exact_score']['outside_edges'] for mt in runs])} samples "
            f"outside the histogram's range; the trained SGM leaves {over_runs(trained)}, so the sampler alone "
            f"accounts for {over_runs(exact)} and the network's error adds {over_runs(added)}."]
