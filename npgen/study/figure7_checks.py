"""Figure 7's rules: when a run has collapsed or diverged, when the SGM fits both modes, and how
a claim checked in each training seed becomes one verdict.

Of a run's samples (:func:`npgen.study.figure7_metrics.projection_metrics`), near_3 is the share
that lies within m/2 of the 3's mode and is classified 3, near_7 the same for the 7, and
outside the share that lies outside the histogram's range (the data's range widened by a
quarter on each side). With s = min(near_3, near_7) / (near_3 + near_7), the smaller mode's
share of the samples near a mode and classified as its digit (0 when there are none):

* a run has *collapsed* when s < :data:`COLLAPSE_SHARE` (the 1-D report's rule);
* a run has *diverged* when outside > :data:`MAX_OUTSIDE`;
* the SGM *fits both modes* in one run when s exceeds :data:`BOTH_MODES_SHARE` by more than
  four binomial standard errors of s over the near_3 + near_7 samples, and outside <=
  :data:`MAX_OUTSIDE`; it does not when s is below by as much or outside > MAX_OUTSIDE.

Every claim is checked in each training seed on its own (against the data rows, a single run),
then :func:`across_seeds` decides: held when it held in every seed counted and at least
:data:`MIN_SEEDS_LEFT` are counted; did not hold when it did not hold in a majority of them;
otherwise inconclusive, saying why. A comparison between models leaves out the seeds where a
model it reads collapsed or diverged (a collapsed GAN is narrow for the wrong reason); the
SGM's check counts them, since a collapse or a divergence is its claim failing.
"""

import numpy as np

from .run_metrics import MIN_MODE_SHARE
from .verdicts import HELD, INCONCLUSIVE, NOT_HELD, Check, all_of, greater, sampling_slack

#: Under this smaller mode's share a run has collapsed onto one digit.
COLLAPSE_SHARE = MIN_MODE_SHARE
#: The smaller mode's share the SGM needs to fit both modes.
BOTH_MODES_SHARE = 0.25
#: More samples than this share outside the histogram's range: a diverged run.
MAX_OUTSIDE = 0.01
#: A claim checked over seeds needs at least this many seeds counted to be held or refuted.
MIN_SEEDS_LEFT = 2
ROW_TITLES = {"mixture": "two noisy digits", "subset": "3s and 7s (embedding)"}
#: How the report states the rule of :func:`across_seeds`.
SEED_RULE = (f"Each check is decided in every training seed on its own (against the data rows), then over the"
             f" training seeds: held when it held in every seed counted and at least {MIN_SEEDS_LEFT} seeds are"
             " counted; did not hold when it did not hold in a majority of the seeds counted; otherwise"
             " inconclusive. A comparison between models does not count the seeds where a model it reads"
             " collapsed or diverged (a collapsed GAN is narrow for the wrong reason); the SGM's check counts"
             " them, as failures of its claim.")


def smaller_mode_share(mt):
    """s = min(near_3, near_7) / (near_3 + near_7), 0 without samples near either mode."""
    near = mt["near_3"] + mt["near_7"]
    return min(mt["near_3"], mt["near_7"]) / near if near > 0 else 0.0


def outside_share(mt):
    """The share of the samples outside the histogram's range."""
    return mt["outside_edges"] / mt["n_samples"]


def run_label(dataset, model, seed):
    """'two noisy digits, SGM, seed 1'."""
    return f"{ROW_TITLES[dataset]}, {model.upper()}, seed {seed}"


def failure_of(mt):
    """'collapsed', 'diverged' (a divergence named first: its samples are off the line) or None."""
    if outside_share(mt) > MAX_OUTSIDE:
        return "diverged"
    if smaller_mode_share(mt) < COLLAPSE_SHARE:
        return "collapsed"
    return None


def describe_failure(mt):
    """The numbers that made a run collapsed or diverged, and the rule."""
    if failure_of(mt) == "diverged":
        return (f"{mt['outside_edges']} of {mt['n_samples']} samples outside the range (the rule: more than"
                f" {MAX_OUTSIDE:.0%})")
    return (f"smaller mode's share {smaller_mode_share(mt):.3g} (near the 3 {mt['near_3']:.3g}, near the 7"
            f" {mt['near_7']:.3g}; the rule: under {COLLAPSE_SHARE:.0%})")


def fits_both_modes(mt):
    """(result, measured) of one SGM run: the smaller mode's share against BOTH_MODES_SHARE and
    the share outside the range against MAX_OUTSIDE (module doc)."""
    share, n_near = smaller_mode_share(mt), round((mt["near_3"] + mt["near_7"]) * mt["n_samples"])
    shares = greater(share, BOTH_MODES_SHARE, sampling_slack(share, max(n_near, 1)), "smaller mode's share",
                     "threshold")
    outside = (NOT_HELD if outside_share(mt) > MAX_OUTSIDE else HELD,
               f"{mt['outside_edges']} of {mt['n_samples']} outside the range")
    return all_of([shares, outside])


def across_seeds(outcomes):
    """One verdict from ``outcomes`` {seed: (result, measured)} of the seeds counted (module doc)."""
    measured = "; ".join(f"seed {seed}: {result} ({text})" for seed, (result, text) in sorted(outcomes.items()))
    counts = {r: sum(result == r for result, _ in outcomes.values()) for r in (HELD, NOT_HELD, INCONCLUSIVE)}
    n = len(outcomes)
    if n < MIN_SEEDS_LEFT:
        return INCONCLUSIVE, f"{n} seed(s) counted, the rule needs {MIN_SEEDS_LEFT}" + (f": {measured}" if n else "")
    if counts[HELD] == n:
        return HELD, f"held in {n} of {n} seeds: {measured}"
    if counts[NOT_HELD] > n / 2:
        return NOT_HELD, f"did not hold in {counts[NOT_HELD]} of {n} seeds: {measured}"
    return INCONCLUSIVE, (f"held in {counts[HELD]}, did not hold in {counts[NOT_HELD]}, inconclusive in "
                          f"{counts[INCONCLUSIVE]} of {n} seeds: {measured}")


def seed_check(rule, dataset, per_seed, evaluate, sources, counts_failures=False):
    """The Check of ``rule``: ``evaluate(by)`` in each seed of ``per_seed`` ({seed: {source:
    metrics}}) holding every one of ``sources``, combined by :func:`across_seeds`. A seed where
    a model of ``sources`` collapsed or diverged is left out, and the check names those runs,
    unless ``counts_failures`` (then they count, and the verdict without them is shown). None
    when no seed holds every source (no finished runs to check)."""
    outcomes, failed = {}, {}
    models = [source for source in sources if source != "data"]
    for seed, by in per_seed.items():
        if any(source not in by for source in sources):
            continue
        outcomes[seed] = evaluate(by)
        failed.update({(seed, model): failure_of(by[model]) for model in models if failure_of(by[model])})
    if not outcomes:
        return None
    names = [f"{run_label(dataset, model, seed)} ({why})" for (seed, model), why in failed.items()]
    if counts_failures:
        check = Check(f"{rule} (over the seeds, collapsed and diverged runs counted)", *across_seeds(outcomes), names)
        if names:
            check.without_collapsed = across_seeds({s: o for s, o in outcomes.items()
                                                    if not any(key[0] == s for key in failed)})
        return check
    seeds_out = {seed for seed, _ in failed}
    return Check(f"{rule} (over the seeds; a seed where a model it reads collapsed or diverged is not counted)",
                 *across_seeds({s: o for s, o in outcomes.items() if s not in seeds_out}), names)


def _mass_slack(*metrics):
    """The sum of four binomial standard errors of each source's mass between the modes."""
    return sum(sampling_slack(mt["mass_between"], mt["n_samples"]) for mt in metrics)


def _share_slack(*metrics):
    return sum(sampling_slack(mt["share_other"], mt["n_samples"]) for mt in metrics)


def _spread_slack(*metrics):
    """Four standard errors of each side spread (std / sqrt(2 n) for a standard deviation)."""
    return sum(4 * mt["side_spread"] / np.sqrt(2 * mt["n_samples"]) for mt in metrics)


def theorem_line(metrics):
    """The projection Theorem 1 is evaluated on: the mixture's line, or for the subset the line
    through the pixel-space barycentres of the 3s and 7s (``pixel_line``)."""
    return metrics.get("pixel_line", metrics)


def _vae_interpolates(by):
    vae, data = by["vae"], by["data"]
    return all_of([greater(vae["mass_between"], data["mass_between"], _mass_slack(vae, data),
                           "VAE mass between", "data"),
                   greater(vae["share_other"], data["share_other"], _share_slack(vae, data),
                           "VAE share neither 3 nor 7", "data")])


def _gan_is_narrower(by):
    vae, gan, data = by["vae"], by["gan"], by["data"]
    return all_of([greater(vae["mass_between"], gan["mass_between"], _mass_slack(vae, gan),
                           "VAE mass between", "GAN"),
                   greater(data["side_spread"], gan["side_spread"], _spread_slack(data, gan),
                           "data side spread", "GAN")])


def _theorem1_holds(model):
    def evaluate(by):
        mt = by[model]
        bound, measured = mt["lipschitz"]["theorem1_with_upper"], theorem_line(mt)["mass_between"]
        slack = sampling_slack(measured, mt["n_samples"])
        return (HELD if bound <= measured + slack else NOT_HELD,
                f"bound {bound:.4g} vs measured {measured:.4g} (slack {slack:.2g})")
    return evaluate


def fig7_checks(dataset, per_seed):
    """The stated checks of one data set from ``per_seed`` {seed: {source: metrics}} (the data
    rows' metrics in every seed): the VAE interpolates, the GAN is narrower, the SGM fits both
    modes, and Theorem 1's bound with the certified Lip stays below each push-forward's mass."""
    label = ROW_TITLES[dataset]
    checks = [
        seed_check(f"{label}: the VAE interpolates: its mass between the modes and its share classified as"
                   " neither 3 nor 7 both exceed the data's (by more than 4 binomial standard errors each)",
                   dataset, per_seed, _vae_interpolates, ("data", "vae")),
        seed_check(f"{label}: the GAN avoids the gap with a narrower histogram: less mass between the modes than"
                   " the VAE, and a smaller spread of each side's projections than the data's (mean of the two"
                   " sides' std)", dataset, per_seed, _gan_is_narrower, ("data", "vae", "gan")),
        seed_check(f"{label}: the SGM fits both modes: of its samples near a mode (within m/2) and classified as"
                   f" its digit, each mode holds at least {BOTH_MODES_SHARE:.0%} (beyond 4 binomial standard"
                   f" errors), and at most {MAX_OUTSIDE:.0%} of its samples lie outside the histogram's range",
                   dataset, per_seed, lambda by: fits_both_modes(by["sgm"]), ("sgm",), counts_failures=True)]
    for model in ("vae", "gan"):
        if any("lipschitz" in by.get(model, {}) for by in per_seed.values()):
            checks.append(seed_check(
                f"{label}: Theorem 1's bound with the certified Lip upper bound does not exceed the"
                f" {model.upper()}'s measured mass between the modes on the same line (up to 4 binomial"
                " standard errors)", dataset, per_seed, _theorem1_holds(model), (model,)))
    return [check for check in checks if check is not None]
