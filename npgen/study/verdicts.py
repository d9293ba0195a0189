"""The report's rules: how a claim is checked, how checks make a verdict, what counts as a
collapsed run. Every study's section (the paper's figures, Figure 7, Cauchy, particles) decides
with these functions, so that one rule reads the same everywhere.

A check compares numbers with a stated rule and gives :data:`HELD`, :data:`NOT_HELD` or
:data:`INCONCLUSIVE`:

* bands (:func:`less`): a is below b when mean_a + std_a < mean_b - std_b, with at least
  :data:`MIN_SEEDS` seeds on each side; the opposite separation is NOT_HELD; overlap, or fewer
  seeds, is INCONCLUSIVE;
* a trend (:func:`trend`): Spearman's rho between a setting and a number over every run,
  decided when its p-value is below :data:`TREND_P`;
* run by run (:func:`every_run`): a predicate that must hold in every run;
* a difference of two estimates (:func:`greater`): decided when |a - b| exceeds a sampling
  slack, for example four binomial standard errors (:func:`sampling_slack`).

A section's verdict (:attr:`Section.verdict`) is "held" only when every check held.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import spearmanr

from .records import Stat
from .run_metrics import MIN_MODE_SHARE, SPIKE_MASS, SPIKE_WIDTH

#: Verdicts of one check.
HELD, NOT_HELD, INCONCLUSIVE = "held", "did not hold", "inconclusive"
#: A claim about a model's typical behaviour needs this many seeds per group to be decided.
MIN_SEEDS = 3
#: A monotone trend is decided when Spearman's test over the runs has p below this.
TREND_P = 0.05
BANDS = f"rule: the mean ± std bands over >= {MIN_SEEDS} seeds must not overlap, else inconclusive"
TREND = f"rule: Spearman's rho over every run, with p < {TREND_P:g}, else inconclusive"
COLLAPSE_RULES = (f"a run has collapsed to one spike when the narrowest interval holding {SPIKE_MASS:.0%} of its "
                  f"samples is under {SPIKE_WIDTH:g} wide (data units; one data mode needs 3.29), and to one mode "
                  f"when m > 0 and the smaller mode's share min(p_left, p_right) / (p_left + p_right) is under "
                  f"{MIN_MODE_SHARE:.0%} (p_left: mass below -m/2, p_right: mass above m/2)")


@dataclass
class Check:
    """One stated rule and what the runs gave: ``result`` is HELD, NOT_HELD or INCONCLUSIVE,
    ``measured`` the numbers (or why it is inconclusive). ``collapsed`` names the collapsed runs
    the check rests on, and ``without_collapsed`` is (result, measured) with them left out; when
    it is None, the result already leaves them out (Figure 7's checks over seeds)."""

    rule: str
    result: str
    measured: str
    collapsed: list = field(default_factory=list)
    without_collapsed: tuple = None

    def lines(self):
        """The check as text: its verdict, its rule, what was measured, and the collapsed runs."""
        lines = [f"**{self.result}**: {self.rule}. Measured: {self.measured}."]
        failed = "collapsed or diverged" if any("diverged" in name for name in self.collapsed) else "collapsed"
        if self.collapsed and self.without_collapsed is None:
            lines.append(f"Leaves out {len(self.collapsed)} {failed} run(s) "
                         f"({', '.join(self.collapsed)}): the verdict counts the other runs.")
        elif self.collapsed:
            result, measured = self.without_collapsed
            lines.append(f"Rests on {len(self.collapsed)} {failed} run(s) ({', '.join(self.collapsed)}); "
                         f"without them: {result} ({measured}).")
        return lines


@dataclass
class Section:
    """One figure of the report: the paper's claim, a table, the checks and notes. ``image``
    is the figure's file name in the study folder and ``draw(path)`` draws it there (None for
    a section without a figure); building a section writes nothing."""

    name: str
    title: str
    claim: str
    image: str = None
    header: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    checks: list = field(default_factory=list)       # [Check]
    collapsed: list = field(default_factory=list)    # ["GAN m=2 seed 3: one spike (...)"]
    diverged: list = field(default_factory=list)     # ["two noisy digits, SGM, seed 1: 1129 of 5000 ..."]
    notes: list = field(default_factory=list)
    draw: object = None

    @property
    def verdict(self):
        """'held' only when every check held; 'inconclusive' when none was decided; 'did not
        hold' when every decided check failed; else 'partly held'. Counts of the rest follow."""
        if not self.checks:
            return "not checked (no finished runs)"
        counts = {r: sum(c.result == r for c in self.checks) for r in (HELD, NOT_HELD, INCONCLUSIVE)}
        if counts[HELD] == len(self.checks):
            return HELD
        if counts[INCONCLUSIVE] == len(self.checks):
            return INCONCLUSIVE
        word = NOT_HELD if not counts[HELD] else "partly held"
        return word + f" ({counts[HELD]} held, {counts[NOT_HELD]} did not hold, {counts[INCONCLUSIVE]} inconclusive)"

    def add(self, rule, evaluate, rows):
        """Add the check ``rule``: ``evaluate(rows) -> (result, measured)``, evaluated again
        without the collapsed runs when ``rows`` ([Run]) holds any."""
        result, measured = evaluate(rows)
        bad = [r for r in rows if r.metrics["collapse"]]
        check = Check(rule, result, measured, [run_name(r.config) for r in bad])
        if bad:
            check.without_collapsed = evaluate([r for r in rows if not r.metrics["collapse"]])
        self.checks.append(check)


def fmt(value):
    """A number as the report prints it ('-' for None; a :class:`Stat` as 'mean ± std (n=k)')."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, Stat):
        return fmt(value.mean) if value.n is None else f"{fmt(value.mean)} ± {fmt(value.std)} (n={value.n})"
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.3e}"
    return f"{value:.4g}"


def run_name(config):
    """'GAN m=2 seed 3', with the options that differ from the defaults (a config holds only
    the options of its model)."""
    extras = []
    if config.get("sn_generator"):
        extras.append("spectral norm on G")
    if config.get("gp_lipschitz") is not None:
        extras.append(f"gradient penalty L={config['gp_lipschitz']:g}")
    if config.get("n_layers", 3) != 3:
        extras.append(f"{config['n_layers']} layers")
    if config.get("skip", "plain") != "plain":
        extras.append(config["skip"])
    if config.get("latent", "gaussian") != "gaussian":
        extras.append(f"{config['latent']} latent")
    if "n_particles" in config:
        extras.append(f"N={config['n_particles']} {config['divergence']}")
    return " ".join([f"{config['model'].upper()} m={config['m']:g} seed {config['seed']}"] + extras)


def collapse_notes(rows):
    """One line per collapsed run: its name, the rule it met and the numbers."""
    return [f"{run_name(c)}: {mt['collapse']} (90% of the samples within {mt['narrowest_90pct_interval_width']:.3g}; "
            f"smaller mode's share {mt['smaller_mode_share']:.3g})" for c, mt, _ in rows if mt["collapse"]]


def cell(rows, value):
    """'mean ± std (n)' of ``value(metrics)`` over ``rows``, and over the runs that did not
    collapse when some did."""
    everything = Stat.of([value(r.metrics) for r in rows])
    clean = [r for r in rows if not r.metrics["collapse"]]
    if len(clean) == len(rows):
        return fmt(everything)
    return f"{fmt(everything)}; without collapsed: {fmt(Stat.of([value(r.metrics) for r in clean]))}"


def less(a, b, name_a, name_b):
    """Is ``a`` below ``b``? Each is a :class:`Stat` over seeds, or :meth:`Stat.exact`. HELD
    when mean_a + std_a < mean_b - std_b with >= MIN_SEEDS seeds each, NOT_HELD when the bands
    are separated the other way, INCONCLUSIVE otherwise."""
    if a is None or b is None:
        return INCONCLUSIVE, f"no finished runs for {name_a if a is None else name_b}"
    shown = f"{name_a} {fmt(a)} vs {name_b} {fmt(b)}"
    if any(s.n is not None and s.n < MIN_SEEDS for s in (a, b)):
        return INCONCLUSIVE, f"{shown}: fewer than {MIN_SEEDS} seeds"
    if a.mean + a.std < b.mean - b.std:
        return HELD, shown
    if a.mean - a.std > b.mean + b.std:
        return NOT_HELD, shown
    return INCONCLUSIVE, f"{shown}: the bands overlap"


def scaled(stat, factor):
    """``stat`` times ``factor`` (None stays None)."""
    return None if stat is None else stat.scaled(factor)


def all_of(outcomes):
    """Combine (result, measured) pairs: NOT_HELD if any, HELD if all, else INCONCLUSIVE."""
    results = [r for r, _ in outcomes]
    result = NOT_HELD if NOT_HELD in results else HELD if results and all(r == HELD for r in results) else INCONCLUSIVE
    return result, "; ".join(m for _, m in outcomes) or "no finished runs"


def every_run(rows, passes, describe, min_runs=1):
    """HELD when ``passes(config, metrics)`` for every one of >= ``min_runs`` runs, else NOT_HELD
    naming the runs that fail; INCONCLUSIVE with fewer runs."""
    if len(rows) < min_runs:
        return INCONCLUSIVE, f"{len(rows)} run(s); the rule needs {min_runs}"
    failing = [run_name(c) for c, mt, _ in rows if not passes(c, mt)]
    return (NOT_HELD, f"fails in {', '.join(failing)}") if failing else (HELD, f"{len(rows)} runs, {describe}")


def trend(rows, x, y, sign):
    """Spearman's rho between x(config) and y(metrics) over the runs; HELD when its sign is
    ``sign`` and p < TREND_P, NOT_HELD when the opposite sign is significant, else INCONCLUSIVE."""
    xs = [x(c) for c, _, _ in rows]
    ys = [y(mt) for _, mt, _ in rows]
    if len(set(xs)) < 3 or len(set(ys)) < 2:
        return INCONCLUSIVE, f"{len(rows)} runs at {len(set(xs))} levels: too few to test a trend"
    test = spearmanr(xs, ys)
    rho, p = float(test.statistic), float(test.pvalue)
    shown = f"rho = {rho:.2f}, p = {p:.2g} over {len(rows)} runs"
    if p < TREND_P:
        return (HELD if rho * sign > 0 else NOT_HELD), shown
    return INCONCLUSIVE, f"{shown}: not significant"


def greater(a, b, slack, name_a, name_b, unit=""):
    """HELD when a - b exceeds ``slack``, NOT_HELD when b - a does, else INCONCLUSIVE."""
    shown = f"{name_a} {a:.4g}{unit} vs {name_b} {b:.4g}{unit} (sampling slack {slack:.2g})"
    if a - b > slack:
        return HELD, shown
    if b - a > slack:
        return NOT_HELD, shown
    return INCONCLUSIVE, f"{shown}: the difference is within the sampling slack"


def sampling_slack(mass, n):
    """Four binomial standard errors of a mass p estimated from n samples, 4 sqrt(p (1 - p) / n),
    with p (1 - p) floored at 1/n."""
    return 4 * np.sqrt(max(mass * (1 - mass), 1.0 / n) / n)
