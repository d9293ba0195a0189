"""Figure 7's numbers, figures and report section, from the finished runs on disk.

:func:`collect_fig7` reads the runs of :mod:`npgen.study.figure7`; :func:`write_fig7_numbers`
writes ``out/fig7/fig7.json`` (every number the section shows; a step of ``npgen reproduce``);
:func:`section_fig7` returns the report's section with its stated checks (the rules of
:mod:`npgen.study.verdicts`), which draws ``fig7.png`` (the histograms) and ``fig7_samples.png``
(a grid of samples per source). It computes nothing that a run's key depends on.
"""

import os

import numpy as np

from ..util.io import atomic_write_json
from . import figures
from .figure7 import DATASETS, FIG7_DIR, GRID_IMAGES, MODELS, PLANS, PREPARATION_STAGES, fig7_configs
from .records import Run
from .run_metrics import MIN_MODE_SHARE
from .sweep import find_run_dir, load_results
from .verdicts import HELD, INCONCLUSIVE, NOT_HELD, Check, Section, all_of, fmt, greater, sampling_slack

NUMBERS_FILE = "fig7.json"


def collect_fig7(out, preset, identity):
    """{(dataset, model): Run} of the finished runs, and the preparation stages' ({stage: Run})."""
    runs_dir = os.path.join(out, FIG7_DIR, "runs")
    configs = fig7_configs(preset, identity)
    found = {}
    for config, metrics in zip(configs, load_results(configs, runs_dir)):
        if metrics is not None:
            key = config["stage"] if config["stage"] in PREPARATION_STAGES else (config["dataset"], config["model"])
            found[key] = Run(config, metrics, find_run_dir(config, runs_dir))
    return found


def fig7_numbers(found):
    """The numbers of Figure 7 as one JSON-able dict (what fig7.json holds): per data set and
    source, the masses, shares, spreads, Lipschitz bounds and Theorem 1 bounds."""
    keep = ("m", "n_samples", "mass_between", "p_left", "p_right", "near_3", "near_7", "share_3", "share_7",
            "share_other", "outside_edges",
            "side_spread", "projection_std", "exact_mass_between", "lipschitz", "sigmas", "step_size",
            "variance_ratio", "train_seconds", "exact_score", "score_error_per_level")
    numbers = {name: {} for name in DATASETS}
    for key, run in found.items():
        if key not in PREPARATION_STAGES:
            numbers[key[0]][key[1]] = {k: run.metrics[k] for k in keep + ("pixel_line",) if k in run.metrics}
    for stage in PREPARATION_STAGES:
        if stage in found:
            numbers[stage] = {k: v for k, v in found[stage][1].items() if k != "wall_time_s"}
    return numbers


ROW_TITLES = {"mixture": "two noisy digits", "subset": "3s and 7s (embedding)"}
#: The share of samples each mode must hold for the SGM to "fit both modes" (the 1-D
#: report's collapse rule, MIN_MODE_SHARE of the 1-D study, on each mode's own samples).
MODE_SHARE = MIN_MODE_SHARE


def _mass_slack(*metrics):
    """The sum of four binomial standard errors of each source's mass between the modes."""
    return sum(sampling_slack(mt["mass_between"], mt["n_samples"]) for mt in metrics)


def _share_slack(*metrics):
    return sum(sampling_slack(mt["share_other"], mt["n_samples"]) for mt in metrics)


def _spread_slack(*metrics):
    """Four standard errors of each side spread (std / sqrt(2 n) for a standard deviation)."""
    return sum(4 * mt["side_spread"] / np.sqrt(2 * mt["n_samples"]) for mt in metrics)


def _checks(section, name, by):
    """The three stated checks of one data set (module doc of the report section)."""
    data, vae, gan, sgm = (by.get(k) for k in ("data", "vae", "gan", "sgm"))
    label = ROW_TITLES[name]
    if data and vae:
        section.checks.append(Check(
            f"{label}: the VAE interpolates: its mass between the modes and its share classified as neither 3"
            " nor 7 both exceed the data's (by more than 4 binomial standard errors each)",
            *all_of([greater(vae["mass_between"], data["mass_between"], _mass_slack(vae, data),
                            "VAE mass between", "data"),
                   greater(vae["share_other"], data["share_other"], _share_slack(vae, data),
                            "VAE share neither 3 nor 7", "data")])))
    if data and vae and gan:
        section.checks.append(Check(
            f"{label}: the GAN avoids the gap with a narrower histogram: less mass between the modes than the VAE,"
            " and a smaller spread of each side's projections than the data's (mean of the two sides' std)",
            *all_of([greater(vae["mass_between"], gan["mass_between"], _mass_slack(vae, gan),
                            "VAE mass between", "GAN"),
                   greater(data["side_spread"], gan["side_spread"], _spread_slack(data, gan),
                            "data side spread", "GAN")])))
    if sgm:
        share = min(sgm["near_3"], sgm["near_7"])
        section.checks.append(Check(
            f"{label}: the SGM fits both modes: at least {MODE_SHARE:.0%} of its samples lie within m/2 of the 3's"
            f" mode and are classified 3, and as many within m/2 of the 7's mode classified 7",
            *greater(share, MODE_SHARE, sampling_slack(share, sgm["n_samples"]),
                      "SGM min(near 3, near 7)", "threshold")))
    for model in ("vae", "gan"):
        mt = by.get(model)
        if mt and "lipschitz" in mt:
            bound, measured = mt["lipschitz"]["theorem1_with_upper"], theorem_line(mt)["mass_between"]
            slack = sampling_slack(measured, mt["n_samples"])
            result = HELD if bound <= measured + slack else NOT_HELD
            section.checks.append(Check(
                f"{label}: Theorem 1's bound with the certified Lip upper bound does not exceed the {model.upper()}'s"
                " measured mass between the modes on the same line (up to 4 binomial standard errors)",
                result, f"bound {bound:.4g} vs measured {measured:.4g} (slack {slack:.2g})"))


def theorem_line(metrics):
    """The projection Theorem 1 is evaluated on: the mixture's line, or for the subset the line
    through the pixel-space barycentres of the 3s and 7s (``pixel_line``)."""
    return metrics.get("pixel_line", metrics)


def write_fig7_numbers(out, found):
    """Write ``out/fig7/fig7.json``: :func:`fig7_numbers` of the runs ``found`` (:func:`collect_fig7`)."""
    atomic_write_json(os.path.join(out, FIG7_DIR, NUMBERS_FILE), fig7_numbers(found))


SOURCE_ORDER = ("data",) + MODELS


def fig7_drawing(found):
    """Figure 7's draw (None without runs): the histograms to ``path`` and, beside it,
    fig7_samples.png, a grid of evenly spaced samples per data set and source."""
    panels = {name: {} for name in DATASETS}
    grids = {name: {} for name in DATASETS}
    for key, run in found.items():
        if key not in PREPARATION_STAGES:
            panels[key[0]][key[1]] = run.metrics
            samples = run.samples(mmap_mode="r", width=None)
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


def fig7_row(name, model, mt):
    """One row of the table: a data set's source and its numbers."""
    lip = mt.get("lipschitz", {})
    return [ROW_TITLES[name], model.upper() if model != "data" else "data",
            fmt(mt["mass_between"]), fmt(mt.get("exact_mass_between")), fmt(mt["share_other"]),
            f"{fmt(mt['near_3'])} / {fmt(mt['near_7'])}", fmt(mt["side_spread"]), fmt(lip.get("upper")),
            fmt(lip.get("lower")), fmt(theorem_line(mt)["mass_between"]),
            fmt(lip.get("theorem1_with_upper")), fmt(lip.get("theorem1_with_lower"))]


def collapse_and_range_notes(s, name, by):
    """The sources of data set ``name`` that hold under MODE_SHARE near either digit (collapsed),
    and those with samples outside the histogram's range (notes)."""
    for model in MODELS:
        mt = by.get(model)
        if mt is None:
            continue
        if min(mt["near_3"], mt["near_7"]) < MODE_SHARE:
            s.collapsed.append(f"{ROW_TITLES[name]}, {model.upper()}: one mode (near the 3 {mt['near_3']:.3g},"
                               f" near the 7 {mt['near_7']:.3g}; the rule: under {MODE_SHARE:.0%} near either)")
        if mt.get("outside_edges"):
            s.notes.append(f"{ROW_TITLES[name]}, {model.upper()}: {mt['outside_edges']} of {mt['n_samples']} samples lie"
                           " outside the histogram's range (the data's range widened by a quarter on each side)")


FIG7_HEADER = ["data set", "source", "mass between the modes (|t| <= m/2)", "exact (Gaussian model)",
               "share neither 3 nor 7", "near the 3 / near the 7 (classified so)", "side spread (t units)",
               "Lip upper (certified)", "Lip lower (searched)", "mass between on Theorem 1's line",
               "Thm 1 bound, certified Lip (valid)", "Thm 1 bound, searched Lip (not guaranteed)"]


def section_fig7(found, identity, preset):
    """Figure 7's section from the runs ``found`` (:func:`collect_fig7`): the table, the checks per
    data set, the collapsed sources, and how to draw the figure."""
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
        _checks(s, name, by)
        collapse_and_range_notes(s, name, by)
    for check in s.checks:  # a check that reads a collapsed source says so
        check.collapsed = [c.split(":")[0] for c in s.collapsed
                           if c.split(",")[0] in check.rule and c.split(",")[1].split(":")[0].strip() in check.rule]
        if check.collapsed:
            check.without_collapsed = (INCONCLUSIVE, "one training run per model: none is left to decide it")
    s.notes += _notes(numbers, identity, preset) + exact_score_notes(numbers)
    return s


def _notes(numbers, identity, preset):
    plan = PLANS[preset]
    notes = [f"Data: {identity['source']} ({identity['n_images']} training images, SHA-256 {identity['sha256']}); "
             f"5000 samples per source, one training run per model (seed 0): every check decides from the sampling "
             f"error of 5000 samples, not from the spread over training runs.",
             "t is the projection on the line through the two modes (pixel units for the two noisy digits, code "
             "units in the embedding); the modes sit at t = -m and t = m, and 'between' is |t| <= m / 2. Side "
             "spread: the mean over t < 0 and t >= 0 of the std of t.",
             f"Settings ({preset} preset): {plan.mixture_epochs} epochs on the two noisy digits "
             f"({2 * plan.mixture_repeats + 2} images), {plan.subset_epochs} on the 3s and 7s, batch {plan.batch_size},"
             f" Adam lr {plan.lr:g}; the SGM has {plan.n_levels} noise levels with {plan.steps_per_level} Langevin "
             "steps each. The SGM is not a push-forward model: Theorem 1 does not apply to it.",
             "Lip: l2 Lipschitz constant of the generator / decoder z -> x in pixel units; 'upper' is certified from "
             "the weights, 'lower' is the largest Jacobian norm a search found. Theorem 1's bound falls as Lip grows, "
             "so only the certified column is a bound; the searched column shows how much larger it could be. For "
             "the 3s and 7s, Theorem 1 is evaluated on the line through the pixel-space barycentres of the 3s and "
             "the 7s (its own column of measured mass), not in the embedding: the embedding reads x / sum(x), which "
             "has no Lipschitz bound from the weights (it is unbounded as sum(x) -> 0)."]
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




def exact_score_rows(name, by):
    """The table row of the SGM's sampler run on the exact score (the two noisy digits only):
    the columns of a source's row, with '-' where a column describes a trained network."""
    mt = (by.get("sgm") or {}).get("exact_score")
    if mt is None:
        return []
    return [[ROW_TITLES[name], f"SGM sampler on the exact score ({mt['n_samples']} samples)", fmt(mt["mass_between"]),
             "-", fmt(mt["share_other"]), f"{fmt(mt['near_3'])} / {fmt(mt['near_7'])}", fmt(mt["side_spread"]),
             "-", "-", fmt(mt["mass_between"]), "-", "-"]]


def exact_score_notes(numbers):
    """What the exact score says of the SGM on the two noisy digits: the score error per level
    and how much of the SGM's mass between the modes the sampler alone leaves there."""
    sgm = numbers["mixture"].get("sgm")
    if not sgm or "exact_score" not in sgm:
        return []
    exact = sgm["exact_score"]
    errors = ", ".join(f"sigma {fmt(sigma)}: {fmt(error)}"
                       for sigma, error in zip(sgm["sigmas"], sgm["score_error_per_level"]))
    return [f"The two noisy digits are a Gaussian mixture, so the SGM's score has an exact yardstick. Its network's "
            f"relative score error E||s_theta - s||^2 / E||s||^2 on noised training rows, per level (sigma in pixel "
            f"units; a ratio): {errors}.",
            f"The same sampler (levels, steps, step size, start and noise of the run's first {exact['n_samples']} "
            f"samples) on the exact score leaves a mass of {fmt(exact['mass_between'])} between the modes, "
            f"{fmt(exact['near_3'])} near the 3 and {fmt(exact['near_7'])} near the 7 (classified so), with "
            f"{exact['outside_edges']} samples outside the histogram's range; the trained SGM leaves "
            f"{fmt(sgm['mass_between'])} between the modes, so the sampler alone accounts for "
            f"{fmt(exact['mass_between'])} and the network's error adds {fmt(sgm['mass_between'] - exact['mass_between'])}."]
