"""What Figure 7 measures on a model's samples (:mod:`npgen.study.figure7`): each sample is
projected on the line through the clean 3 and 7, t = u . (x - c), so the two modes sit at
t = -m and t = +m; the masses below, between and above the modes, the shares classified as
each digit, and bounds on the generator's Lipschitz constant with Theorem 1's bound from each."""

import numpy as np

from ..analysis.lipschitz import layers_of, lipschitz_bounds
from ..analysis.theory import mass_between_modes_bound

#: Classifier digits of the two modes and the colours of Figure 7's bins.
DIGITS = (3, 7)


def projection_line(clean):
    """The line of the mixture: {"center" c, "direction" u, "m"} from the clean 3 and 7."""
    c3, c7 = (np.asarray(c, np.float64) for c in clean)
    gap = c7 - c3
    return {"center": (c3 + c7) / 2, "direction": gap / np.linalg.norm(gap),
            "m": float(np.linalg.norm(gap) / 2)}


def project(line, x):
    """t = u . (x - c) for the rows of x (float64)."""
    return (np.asarray(x, np.float64) - line["center"]) @ line["direction"]


def histogram_edges(t_data, bins):
    """``bins`` + 1 edges over the data's projections, widened by a quarter of their range on
    each side (the same edges for every model of a data set)."""
    lo, hi = float(t_data.min()), float(t_data.max())
    pad = 0.25 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, bins + 1)


def projection_metrics(line, samples, predicted, bins, data):
    """The numbers of one histogram: masses below, between and above the modes, the share
    classified as neither 3 nor 7, the spread of each side, and the 400-bin counts per class."""
    t = project(line, samples)
    m = line["m"]
    edges = histogram_edges(project(line, data), bins)
    classes = {"3": predicted == DIGITS[0], "7": predicted == DIGITS[1],
               "other": ~np.isin(predicted, DIGITS)}
    counts = {name: np.histogram(t[keep], edges)[0].tolist() for name, keep in classes.items()}
    sides = [t[t < 0], t[t >= 0]]
    near = {digit: np.abs(t - mode) <= m / 2 for digit, mode in (("3", -m), ("7", m))}
    return {"m": m, "n_samples": int(t.size), "p_left": float(np.mean(t <= -m / 2)),
            "near_3": float(np.mean(near["3"] & classes["3"])),
            "near_7": float(np.mean(near["7"] & classes["7"])),
            "p_right": float(np.mean(t > m / 2)),
            "mass_between": float(np.mean(np.abs(t) <= m / 2)) if t.size else 0.0,
            "share_other": float(np.mean(classes["other"])),
            "share_3": float(np.mean(classes["3"])), "share_7": float(np.mean(classes["7"])),
            "side_spread": float(np.mean([s.std() for s in sides if s.size > 1])) if t.size else 0.0,
            "projection_mean": float(t.mean()), "projection_std": float(t.std()),
            "edges": edges.tolist(), "counts": counts,
            "outside_edges": int(np.sum((t < edges[0]) | (t > edges[-1])))}


def theorem1_bound(m, lip, p_left):
    """Theorem 1's lower bound on the mass with |t| <= m / 2 (module doc); 0 when p_left is 0
    or 1 (every sample on one side)."""
    if not 0 < p_left < 1 or not np.isfinite(lip) or lip <= 0:
        return 0.0
    return float(mass_between_modes_bound(m, lip, p_left))


def lipschitz_metrics(network, config, m, p_left):
    """Certified upper and searched lower bounds of Lip(g) (l2, z -> x in pixel units) and
    Theorem 1's bound with each."""
    bounds = lipschitz_bounds(layers_of(network), n_starts=config["lipschitz_starts"],
                              steps=config["lipschitz_steps"], seed=config["seed"])
    return {"upper": bounds.upper, "upper_method": bounds.upper_method,
            "lower": bounds.lower, "lower_method": bounds.lower_method,
            "theorem1_with_upper": theorem1_bound(m, bounds.upper, p_left),
            "theorem1_with_lower": theorem1_bound(m, bounds.lower, p_left)}
