"""The exact score as the report's yardstick: the same sampler on the exact score beside the
trained SGM's (:mod:`npgen.study.exact_sampler`), and the searched lower bound on a sampler's
Lip(g) (:mod:`npgen.analysis.sampler_search`). Figure 3b's extra lines and columns and its
statements, read from finished runs; nothing is written."""

import numpy as np

from ..analysis.theory import mixture_mass_between
from .records import where
from .verdicts import cell, fmt


def searched(metrics, sampler="trained"):
    """The searched lower bound on Lip(g) of the trained (or exact-score) sampler, data units,
    or None when the search found no pair of chains ending on both sides of the gap."""
    return metrics["sampler_search"][sampler]["largest"]


def certified_lower(metrics):
    """The larger of the two lower bounds on the trained sampler's Lip(g) (data units): the
    searched one and the max of |grad g| over the samples."""
    return max(metrics["sampler_lipschitz"], searched(metrics) or 0.0)


def meets_demand(metrics):
    """Whether the sampler's certified lower bound on Lip(g) exceeds the upper end of Theorem 1's
    demand (infinite, so never met, when no sample fell between the modes)."""
    upper = metrics["theorem1_required_lipschitz_upper"]
    return upper is not None and certified_lower(metrics) > upper


def _exact_sampler(metrics, key):
    """A number of the exact-score sampler (metrics.json's ``exact_sampler``)."""
    return metrics["exact_sampler"][key]


#: Figure 3b's lines of the exact-score yardstick: label -> (value, colour, line style, marker).
EXACT_SERIES = {
    "SGM sampler: searched steep set (lower bound on Lip(g))": (searched, "tab:purple", "-", "^"),
    "exact-score sampler: max |grad g| over the samples": (lambda mt: _exact_sampler(mt, "lipschitz"), "tab:red", "-", "s"),
    "exact-score sampler: searched steep set": (lambda mt: searched(mt, "exact"), "tab:red", "-", "^"),
}
#: Figure 3b's table columns of the yardstick, and the value of each.
EXACT_COLUMNS = {
    "SGM sampler searched Lip(g) (lower bound)": searched,
    "exact-score sampler: mass between": lambda mt: _exact_sampler(mt, "mass_between"),
    "its smaller mode's share": lambda mt: _exact_sampler(mt, "smaller_mode_share"),
    "its MW2^2": lambda mt: _exact_sampler(mt, "mw2_squared"),
    "its max |grad g|": lambda mt: _exact_sampler(mt, "lipschitz"),
    "its searched Lip(g)": lambda mt: searched(mt, "exact"),
    "its Theorem 1 demand": lambda mt: _exact_sampler(mt, "theorem1_required_lipschitz"),
}


def exact_series(table):
    """Figure 3b's yardstick lines, ``table(value)`` aggregating a metric of the SGM runs over m."""
    return {label: (table(value), color, style, marker) for label, (value, color, style, marker) in EXACT_SERIES.items()}


def exact_columns(group):
    """The yardstick's cells of one m's SGM runs (the order of EXACT_COLUMNS)."""
    return [cell(group, value) for value in EXACT_COLUMNS.values()]


def _mean(group, value):
    values = [v for v in (value(r.metrics) for r in group) if v is not None]
    return float(np.mean(values)) if values else None


def _steepness_words(trained, exact):
    """How the exact-score sampler's searched constant compares with the trained one's."""
    if trained is None or exact is None:
        return "cannot be compared (a search found no pair of chains ending on both sides of the gap)"
    ratio = exact / trained
    if 0.5 <= ratio <= 2:
        return f"is as steep as the trained one, within a factor 2 (ratio {ratio:.3g})"
    return f"is {'steeper' if ratio > 2 else 'less steep'} than the trained one (ratio {ratio:.3g})"


def exact_score_statements(sgm_rows, m_values):
    """Per m: how much of the SGM's mass between the modes the sampler alone leaves there (the
    exact-score sampler's) and how much the network's error adds; whether the exact-score sampler
    is as steep as the trained one (searched and sampled constants, data units); and the score
    error per level (means over the runs)."""
    lines = []
    for m in m_values:
        group = where(sgm_rows, m=m)
        if not group:
            continue
        trained, alone = _mean(group, lambda mt: mt["mass_between"]), _mean(group, lambda mt: _exact_sampler(mt, "mass_between"))
        lines.append(
            f"m={m:g} ({len(group)} runs): the SGM leaves a mass of {fmt(trained)} (share of its samples) in "
            f"[-m/2, m/2]; the same sampler on the exact score leaves {fmt(alone)} there (the data: "
            f"{fmt(float(mixture_mass_between(m)))}), so the sampler alone accounts for {fmt(alone)} and the "
            f"network's score error adds {fmt(trained - alone)}. The exact-score sampler "
            f"{_steepness_words(_mean(group, searched), _mean(group, lambda mt: searched(mt, 'exact')))}: searched "
            f"Lip(g) {cell(group, lambda mt: searched(mt, 'exact'))} against {cell(group, searched)} (data units; "
            f"max |grad g| over the samples {cell(group, lambda mt: _exact_sampler(mt, 'lipschitz'))} against "
            f"{cell(group, lambda mt: mt['sampler_lipschitz'])}; Theorem 1's demand for each sampler's own mass "
            f"between the modes: {cell(group, lambda mt: _exact_sampler(mt, 'theorem1_required_lipschitz'))} and "
            f"{cell(group, lambda mt: mt['theorem1_required_lipschitz'])}).")
        levels = group[0].metrics["score_error_per_level"]
        errors = ", ".join(f"sigma {fmt(level['sigma_standardized'])}: "
                           f"{fmt(_mean(group, lambda mt, k=k: mt['score_error_per_level'][k]['relative_error']))}"
                           for k, level in enumerate(levels))
        lines.append(f"m={m:g}: the network's relative score error E|s_theta - s|^2 / E|s|^2 on noised training "
                     f"data, per level (sigma in standardized units; a ratio): {errors}.")
    return lines


EXACT_NOTE = ("The exact score is the yardstick: the data blurred at every level is a Gaussian mixture, so its score is "
              "closed-form, and the exact-score sampler is the SGM's own sampler (same levels, steps, step sizes, start "
              "and noise, sample for sample) with the network swapped for it. The searched Lip(g) bisects great circles "
              "cos(t) u + sin(t) v between the full inputs u, v = (x_0, z_1..z_T) of chains ending on opposite sides of "
              "x = 0 to the crossing of the gap's middle, and carries the gradient there: each value is a certified lower "
              "bound on Lip(g). Whether the sampler meets Theorem 1's demand is decided on the larger of the searched and "
              "the sampled bounds.")
