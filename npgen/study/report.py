"""The reproduction report: for each figure, the paper's claim, what this run measured, and
whether the claim held, written as report.md and as a self-contained report.html.

Each section is built from the numbers on disk (metrics.json of every finished run); the
figures are redrawn from the same numbers. A claim's verdict is a stated, mechanical check
(for example "the mean Lip at the largest m exceeds the mean at the smallest m > 0"), never a
judgement call, so that a run that does not show the claim says so.
"""

import base64
import html
import os
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import spearmanr

from ..analysis.theory import (corollary2_log_lip_lower_bound, isoperimetric_profile,
                               mixture_mass_between)
from ..models.latents import LATENTS
from ..util.io import atomic_write_json, atomic_write_texts, read_npz
from . import figures
from .cauchy import CAUCHY_RECORDED, with_cauchy_numbers
from .particles import PARTICLE_RECORDED
from .plans import PLANS, aggregate, cauchy_m_values, collect
from .sweep import sweep_status
from .runs import MIN_MODE_SHARE, SPIKE_MASS, SPIKE_WIDTH, figure3_bound, read_samples
from .sampler import CLASSES, EXPANSION_SHARE, MASS_CONFIDENCE, TRACE_FILE


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
    the check rests on, and ``without_collapsed`` is (result, measured) with them left out."""

    rule: str
    result: str
    measured: str
    collapsed: list = field(default_factory=list)
    without_collapsed: tuple = None


@dataclass
class Section:
    """One figure of the report."""

    name: str
    title: str
    claim: str
    image: str = None
    header: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    checks: list = field(default_factory=list)       # [Check]
    collapsed: list = field(default_factory=list)    # ["GAN m=2 seed 3: one spike (...)"]
    notes: list = field(default_factory=list)

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
        without the collapsed runs when ``rows`` holds any."""
        result, measured = evaluate(rows)
        bad = [r for r in rows if r[1]["collapse"]]
        check = Check(rule, result, measured, [_run_name(r[0]) for r in bad])
        if bad:
            check.without_collapsed = evaluate([r for r in rows if not r[1]["collapse"]])
        self.checks.append(check)


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, tuple) and len(value) == 3:
        mean, std, n = value
        return _fmt(mean) if n is None else f"{_fmt(mean)} ± {_fmt(std)} (n={n})"
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.3e}"
    return f"{value:.4g}"


def _run_name(config):
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


def _collapse_notes(rows):
    """One line per collapsed run: its name, the rule it met and the numbers."""
    return [f"{_run_name(c)}: {mt['collapse']} (90% of the samples within {mt['narrowest_90pct_interval_width']:.3g}; "
            f"smaller mode's share {mt['smaller_mode_share']:.3g})" for c, mt, _ in rows if mt["collapse"]]


def _stats(values):
    """(mean, std, n) of a list of numbers, or None when empty."""
    values = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values)), len(values)


def _cell(rows, value):
    """'mean ± std (n)' over ``rows``, and over the runs that did not collapse when some did."""
    everything = _stats([value(mt) for _, mt, _ in rows])
    clean = [r for r in rows if not r[1]["collapse"]]
    if len(clean) == len(rows):
        return _fmt(everything)
    return f"{_fmt(everything)}; without collapsed: {_fmt(_stats([value(mt) for _, mt, _ in clean]))}"


def _less(a, b, name_a, name_b):
    """Is ``a`` below ``b``? Each is (mean, std, n) over seeds, or (value, 0, None) for an exact
    number. HELD when mean + std of a < mean - std of b with >= MIN_SEEDS seeds each, NOT_HELD
    when the bands are separated the other way, INCONCLUSIVE otherwise."""
    if a is None or b is None:
        return INCONCLUSIVE, f"no finished runs for {name_a if a is None else name_b}"
    shown = f"{name_a} {_fmt(a)} vs {name_b} {_fmt(b)}"
    if any(s[2] is not None and s[2] < MIN_SEEDS for s in (a, b)):
        return INCONCLUSIVE, f"{shown}: fewer than {MIN_SEEDS} seeds"
    if a[0] + a[1] < b[0] - b[1]:
        return HELD, shown
    if a[0] - a[1] > b[0] + b[1]:
        return NOT_HELD, shown
    return INCONCLUSIVE, f"{shown}: the bands overlap"


def _exact(value):
    return (float(value), 0.0, None)


def _scaled(stats, factor):
    return None if stats is None else (stats[0] * factor, stats[1] * factor, stats[2])


def _all(outcomes):
    """Combine (result, measured) pairs: NOT_HELD if any, HELD if all, else INCONCLUSIVE."""
    results = [r for r, _ in outcomes]
    result = NOT_HELD if NOT_HELD in results else HELD if results and all(r == HELD for r in results) else INCONCLUSIVE
    return result, "; ".join(m for _, m in outcomes) or "no finished runs"


def _every_run(rows, passes, describe, min_runs=1):
    """HELD when ``passes(config, metrics)`` for every one of >= ``min_runs`` runs, else NOT_HELD
    naming the runs that fail; INCONCLUSIVE with fewer runs."""
    if len(rows) < min_runs:
        return INCONCLUSIVE, f"{len(rows)} run(s); the rule needs {min_runs}"
    failing = [_run_name(c) for c, mt, _ in rows if not passes(c, mt)]
    return (NOT_HELD, f"fails in {', '.join(failing)}") if failing else (HELD, f"{len(rows)} runs, {describe}")


def _trend(rows, x, y, sign):
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


def _sampling_slack(mass, n):
    """Four binomial standard errors of a mass estimated from n samples (with a floor of 1/n)."""
    return 4 * np.sqrt(max(mass * (1 - mass), 1.0 / n) / n)


def _by_model(rows, model):
    return [r for r in rows if r[0]["model"] == model]


def _where(rows, **fields):
    return [r for r in rows if all(r[0][k] == v for k, v in fields.items())]


def _lip(metrics, scale="data"):
    """The constant the report compares: Lip(g) for GAN / VAE; for the SGM the score network's,
    on the data's own scale (``scale="data"``) or on the standardized one (the paper's)."""
    if "lipschitz" in metrics:
        return metrics["lipschitz"]
    return metrics["score_lipschitz_data_scale" if scale == "data" else "score_lipschitz_standardized"]


def _mw2(metrics):
    """MW2^2 from the two-component mixture fitted to a run's samples to nu (data units squared)."""
    return metrics["mw2_squared"]


MW2_NOTE = ("MW2^2 (data units squared) is the squared mixture-Wasserstein distance from a two-component Gaussian "
            "mixture fitted to the run's samples (EM, full covariances) to nu: the optimal transport cost between "
            "the components' weights with the squared W2 between Gaussians as costs. Weight the fit puts in excess "
            "on one mode must travel the 2m between the modes, so it grows with a missing or lopsided mode; mass "
            "between the modes widens or shifts the fitted components.")


def _meets(rows_):
    """'k of n runs' in which the sampler meets Theorem 1's demand (:func:`_meets_demand`)."""
    return f"{sum(_meets_demand(mt) for _, mt, _ in rows_)} of {len(rows_)}"


def _meets_demand(metrics):
    """Whether the sampler's certified lower bound on Lip(g) (searched or sampled, data units)
    exceeds the upper end of Theorem 1's demand (infinite, so never met, when no sample fell
    between the modes)."""
    upper = metrics["theorem1_required_lipschitz_upper"]
    return upper is not None and _certified_lower(metrics) > upper


def sampler_statements(rows, m_values):
    """For each m > 0, one sentence: does the SGM sampler's measured constant meet Theorem 1's demand?"""
    lines = []
    for m in m_values:
        group = _where(_by_model(rows, "sgm"), m=m)
        if m <= 0 or not group:
            continue
        met = sum(_meets_demand(mt) for _, mt, _ in group)
        verdict = ("meets it in every run" if met == len(group) else "falls short of it in every run" if met == 0
                   else f"meets it in {met} of {len(group)} runs")
        lines.append(f"m={m:g}: the SGM sampler's searched lower bound on Lip(g) (data units) is "
                     f"{_cell(group, _searched)}, beside the max over the samples of |grad g| "
                     f"{_cell(group, lambda mt: mt['sampler_lipschitz'])}; Theorem 1 demands between "
                     f"{_cell(group, lambda mt: mt['theorem1_required_lipschitz'])} and "
                     f"{_cell(group, lambda mt: mt['theorem1_required_lipschitz_upper'])} for the mass it left between "
                     f"the modes, and it {verdict} (meeting it means the larger lower bound exceeds the upper end; "
                     "Figure 3b).")
    return lines


# --------------------------------------------------------------------------- sections


def section_fig1(out):
    path = os.path.join(out, "fig1.png")
    figures.figure1(path)
    t = np.linspace(0, 1, 10001)
    prof = isoperimetric_profile(t)
    s = Section("fig1", "Figure 1: the Gaussian isoperimetric profile",
                "phi(Phi^-1(t)) is symmetric about 1/2, vanishes at 0 and 1, and peaks at 1/sqrt(2 pi).",
                image=path, header=["quantity", "value"],
                rows=[["max", _fmt(float(prof.max()))], ["argmax", _fmt(float(t[prof.argmax()]))],
                      ["1/sqrt(2 pi)", _fmt(1 / np.sqrt(2 * np.pi))]])
    peak = abs(prof.max() - 1 / np.sqrt(2 * np.pi)) < 1e-9 and abs(t[prof.argmax()] - 0.5) < 1e-9
    s.checks.append(Check("the maximum is 1/sqrt(2 pi), at t = 1/2 (to 1e-9, on 10 001 points)",
                          HELD if peak else NOT_HELD, f"max {prof.max():.12g} at t = {t[prof.argmax()]:.4g}"))
    symmetric = np.allclose(prof, prof[::-1], atol=1e-12)
    s.checks.append(Check("symmetric about t = 1/2 (to 1e-12)", HELD if symmetric else NOT_HELD,
                          f"largest asymmetry {np.abs(prof - prof[::-1]).max():.3g}"))
    return s


def section_fig2(out, rows, m):
    first = {}
    for config, _, run_dir in sorted(rows, key=lambda r: r[0]["seed"]):
        first.setdefault(config["model"], run_dir)
    samples = {model: read_samples(run_dir) for model, run_dir in first.items()}
    path = os.path.join(out, "fig2.png")
    figures.figure2(path, samples, m)
    seeds = sorted({c["seed"] for c, _, _ in rows})
    s = Section("fig2", f"Figure 2: histograms for m = {m:g}",
                "The VAE interpolates between the modes, the GAN does not interpolate but loses part "
                "of the support (mode collapse), and the SGM fits both modes with little mass between.",
                image=path, header=["model", "mass in [-m/2, m/2]", "MW2^2 to nu", "true mass", "smaller mode's share",
                                    "TV estimate", "exact Lip (SGM: score net, data scale)"])
    s.notes.append(f"The histograms are seed {seeds[0] if seeds else '-'}; the table and the checks use every seed "
                   f"({len(seeds)}).")
    by = {model: _by_model(rows, model) for model in ("vae", "gan", "sgm")}
    for model, group in by.items():
        if group:
            s.rows.append([model.upper(), _cell(group, lambda mt: mt["mass_between"]), _cell(group, _mw2),
                           _fmt(group[0][1]["true_mass_between"]), _cell(group, lambda mt: mt["smaller_mode_share"]),
                           _cell(group, lambda mt: mt["tv_estimate"]), _cell(group, _lip)])
    true_mass = float(mixture_mass_between(m))

    def mass(rows_, model):
        return _stats([mt["mass_between"] for _, mt, _ in _by_model(rows_, model)])
    s.add(f"VAE mass in [-m/2, m/2] above max(5 x the true mass, 1%) = {max(5 * true_mass, 0.01):.3g} ({BANDS})",
          lambda r: _less(_exact(max(5 * true_mass, 0.01)), mass(r, "vae"), "threshold", "VAE"), by["vae"])
    s.add(f"GAN mass in [-m/2, m/2] below half the VAE's ({BANDS})",
          lambda r: _less(mass(r, "gan"), _scaled(mass(r, "vae"), 0.5), "GAN", "VAE / 2"), by["gan"] + by["vae"])
    s.add(f"SGM smaller mode's share above 20% ({BANDS})",
          lambda r: _less(_exact(0.2), _stats([mt["smaller_mode_share"] for _, mt, _ in _by_model(r, "sgm")]),
                          "20%", "SGM"), by["sgm"])
    s.add(f"SGM mass in [-m/2, m/2] below the VAE's ({BANDS})",
          lambda r: _less(mass(r, "sgm"), mass(r, "vae"), "SGM", "VAE"), by["sgm"] + by["vae"])
    s.collapsed = _collapse_notes(rows)
    return s


def section_fig3(out, rows, m_values):
    def table(rows_, model, value):
        return aggregate(_by_model(rows_, model), ["m"], value)

    def lip_stats(rows_, model, m, scale="data"):
        return _stats([_lip(mt, scale) for _, mt, _ in _where(_by_model(rows_, model), m=m)])

    def mass_stats(rows_, model, m):
        return _stats([mt["mass_between"] for _, mt, _ in _where(_by_model(rows_, model), m=m)])

    lip = {model: table(rows, model, _lip) for model in ("vae", "gan", "sgm")}
    sgm_std = table(rows, "sgm", lambda mt: _lip(mt, "standardized"))
    mass = {model: table(rows, model, lambda mt: mt["mass_between"]) for model in ("vae", "gan", "sgm")}
    rows = [(c, dict(mt, fig3_bound=figure3_bound(c["m"], mt["lipschitz"], mt["mass_left"])) if c["m"] > 0
             and c["model"] != "sgm" else mt, d) for c, mt, d in rows]
    bound = {model: table(rows, model, lambda mt: mt.get("fig3_bound")) for model in ("vae", "gan")}
    m_grid = np.linspace(0, max(m_values), 101)
    log_cor2 = corollary2_log_lip_lower_bound(2 * m_grid)
    path = os.path.join(out, "fig3.png")
    lip_series = {"GAN (exact Lip of G)": (lip["gan"], "gan", "-"), "VAE (exact Lip of the decoder)": (lip["vae"], "vae", "-"),
                  "SGM score net, data scale": (lip["sgm"], "sgm", "-"),
                  "SGM score net, standardized (paper)": (sgm_std, "sgm", "--")}
    figures.figure3(path, lip_series, mass, bound, m_grid, mixture_mass_between(m_grid), log_cor2)
    s = Section("fig3", "Figure 3: Lipschitz constant and mass between the modes against m",
                "Push-forward generators must have Lip(g) >= exp(m^2/2) (Corollary 2) to fit the mixture; "
                "the GAN's and VAE's constants grow with m but fall far below that bound, so they put mass "
                "between the modes as Theorem 1 predicts; the SGM keeps a modest score-network constant and "
                "little mass between the modes.",
                image=path, header=["m", "Cor. 2 bound", "GAN Lip", "VAE Lip", "SGM score-net Lip (data scale)",
                                    "SGM score-net Lip (standardized)", "GAN mass", "VAE mass", "SGM mass",
                                    "true mass", "GAN MW2^2", "VAE MW2^2", "SGM MW2^2"])
    for m in m_values:
        cells = {model: _where(_by_model(rows, model), m=m) for model in ("gan", "vae", "sgm")}
        s.rows.append([_fmt(m), f"exp({float(corollary2_log_lip_lower_bound(2 * m)):.4g})"]
                      + [_cell(cells[mdl], _lip) for mdl in ("gan", "vae", "sgm")]
                      + [_cell(cells["sgm"], lambda mt: _lip(mt, "standardized"))]
                      + [_cell(cells[mdl], lambda mt: mt["mass_between"]) for mdl in ("gan", "vae", "sgm")]
                      + [_fmt(float(mixture_mass_between(m)))]
                      + [_cell(cells[mdl], _mw2) for mdl in ("gan", "vae", "sgm")])
    positive = [m for m in m_values if m > 0]
    if len(positive) >= 2:
        lo, hi = positive[0], positive[-1]
        s.add(f"GAN's Lip at m={hi:g} above its Lip at m={lo:g} ({BANDS})",
              lambda r: _less(lip_stats(r, "gan", lo), lip_stats(r, "gan", hi), f"m={lo:g}", f"m={hi:g}"),
              [x for x in _by_model(rows, "gan") if x[0]["m"] in (lo, hi)])
    s.add("Theorem 1 with the exact Lip is a true lower bound on the generated mass in [-m/2, m/2], in every GAN/VAE "
          "run at m > 0, up to 4 binomial standard errors of the sample estimate (decided run by run)",
          lambda r: _every_run([x for x in r if "fig3_bound" in x[1]],
                               lambda c, mt: mt["mass_between"] + _sampling_slack(mt["fig3_bound"], c["n_samples"])
                               >= mt["fig3_bound"], "none below its bound"), [x for x in rows if "fig3_bound" in x[1]])
    big = [m for m in m_values if m >= 5]
    if big:
        s.add(f"VAE mass in [-m/2, m/2] above max(5 x the true mass, 1%) at every m >= 5 ({BANDS})",
              lambda r: _all([_less(_exact(max(5 * float(mixture_mass_between(m)), 0.01)), mass_stats(r, "vae", m),
                                    "threshold", f"VAE at m={m:g}") for m in big]),
              [x for x in _by_model(rows, "vae") if x[0]["m"] in big])
        s.add(f"GAN and VAE constants below exp(Corollary 2's exponent - 1) at every m >= 5 ({BANDS})",
              lambda r: _all([_less(lip_stats(r, mdl, m), _exact(np.exp(float(corollary2_log_lip_lower_bound(2 * m)) - 1)),
                                    f"{mdl.upper()} at m={m:g}", "bound / e") for mdl in ("gan", "vae") for m in big]),
              [x for x in rows if x[0]["model"] != "sgm" and x[0]["m"] in big])
        m = big[-1]
        s.add(f"SGM's score-network Lip on the data scale below the GAN's Lip at m={m:g} ({BANDS})",
              lambda r: _less(lip_stats(r, "sgm", m), lip_stats(r, "gan", m), "SGM", "GAN"),
              [x for x in _where(rows, m=m) if x[0]["model"] != "vae"])
        s.add(f"SGM's mass in [-m/2, m/2] below the VAE's at m={m:g} ({BANDS})",
              lambda r: _less(mass_stats(r, "sgm", m), mass_stats(r, "vae", m), "SGM", "VAE"),
              [x for x in _where(rows, m=m) if x[0]["model"] != "gan"])
    s.notes.append("SGM: the constant is the score network's in its input x, maximised over the ten trained noise "
                   "levels; it is not the constant of the whole sampling dynamic (Figure 3b measures that one). The network reads standardized "
                   "data z = (x - mu) / sd, so on the data's own scale its constant is the standardized one divided "
                   "by sd^2 (the variance used to standardize, about 1 + m^2). The data-scale number is the one "
                   "measured in the same coordinate x as the GAN's and VAE's constants, so it is the one to put "
                   "beside them (and the one the checks use); the standardized number is the paper's. A score "
                   "network's constant and a generator's are still different quantities (a slope of the score in x, "
                   "against a slope of x in the latent z), so the comparison is of sizes.")
    s.notes.append(MW2_NOTE)
    s.notes += sampler_statements(rows, m_values)
    s.collapsed = _collapse_notes(rows)
    return s


def _sampler_trace(rows, m):
    """The arrays of sampler_trace.npz of the first seed's SGM run at ``m``, or None."""
    for config, _, run_dir in sorted(_where(_by_model(rows, "sgm"), m=m), key=lambda r: r[0]["seed"]):
        path = os.path.join(run_dir, TRACE_FILE)
        if os.path.exists(path):
            return read_npz(path)
    return None


def section_fig3b(out, rows, m_values):
    def table(model, value):
        return aggregate(_by_model(rows, model), ["m"], value)

    sgm = _by_model(rows, "sgm")
    positive = [m for m in m_values if m > 0]
    m_trace = positive[-1] if positive else (m_values[-1] if m_values else 0)
    trace = _sampler_trace(rows, m_trace)
    colors = figures.MODEL_COLORS
    series = {"SGM sampler: max |grad g| over the samples (lower bound on Lip(g))":
              (table("sgm", lambda mt: mt["sampler_lipschitz"]), colors["sgm"], "-", "s"),
              "Theorem 1's demand for the SGM's mass between the modes (lower end of its interval)":
              (table("sgm", lambda mt: mt["theorem1_required_lipschitz"] if mt["theorem1_required_lipschitz"] > 0
                     else None), "k", "--", "x"),
              "SGM score net, data scale": (table("sgm", _lip), colors["sgm"], ":", "o"),
              "GAN (exact Lip of G)": (table("gan", _lip), colors["gan"], "-", "o"),
              "VAE (exact Lip of the decoder)": (table("vae", _lip), colors["vae"], "-", "o"),
              **exact_series(lambda value: table("sgm", value))}
    path = os.path.join(out, "fig3b.png")
    figures.figure3b(path, series, trace, m_trace)
    s = Section("fig3b", "Figure 3b: the SGM's sampler is a push-forward too",
                "Annealed Langevin sampling is a map g(x_0, z_1, ..., z_T) = x_T of T + 1 standard normals, so "
                "Theorem 1 (dimension-free) applies to it: if the SGM leaves almost no mass between the modes, the "
                "sampler as a whole must be steep, however tame each score evaluation is.",
                image=path, header=["m", "SGM score-net Lip (data scale)", "SGM sampler max |grad g| (lower bound on Lip(g))",
                                    "its x_0 part", "its noise part", "median |grad g|",
                                    "Theorem 1 demand, lower end", "upper end", "sampler exceeds the upper end",
                                    "SGM mass between", "SGM MW2^2", "GAN Lip", "VAE Lip", *EXACT_COLUMNS])
    for m in m_values:
        group = _where(sgm, m=m)
        if not group:
            continue
        s.rows.append([_fmt(m), _cell(group, _lip), _cell(group, lambda mt: mt["sampler_lipschitz"]),
                       _cell(group, lambda mt: mt["sampler_lipschitz_x0"]),
                       _cell(group, lambda mt: mt["sampler_lipschitz_noise"]),
                       _cell(group, lambda mt: mt["sampler_gradient_median"]),
                       _cell(group, lambda mt: mt["theorem1_required_lipschitz"]),
                       _cell(group, lambda mt: mt["theorem1_required_lipschitz_upper"]), _meets(group),
                       _cell(group, lambda mt: mt["mass_between"]), _cell(group, _mw2),
                       _cell(_where(_by_model(rows, "gan"), m=m), _lip), _cell(_where(_by_model(rows, "vae"), m=m), _lip),
                       *exact_columns(group)])
    at_positive = [r for r in sgm if r[0]["m"] > 0]
    s.add("at every m > 0, the SGM sampler's certified lower bound on Lip(g) (searched or sampled) exceeds the "
          "upper end of Theorem 1's demand (decided run by run)",
          lambda r: _every_run(r, lambda c, mt: _meets_demand(mt), "each above its demand's upper end"),
          at_positive)
    s.notes += sampler_statements(rows, m_values)
    s.notes.append("The sampler's gradient is exact, not estimated: the Langevin kernel carries d x_t / d x_0 and the "
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
    s.notes += attribution_notes(sgm, m_trace)
    s.notes += exact_score_statements(sgm, m_values) + [EXACT_NOTE]
    s.collapsed = _collapse_notes(rows)
    return s


def attribution_notes(sgm_rows, m):
    """Per-level attribution at ``m``: the factor each level's steps multiply |grad g|^2 by (median over the
    samples, and at the sample of the maximum; means over the runs), and how many steps carry most of the growth
    of log |grad g|^2 on the traced samples, by where they end."""
    group = _where(sgm_rows, m=m)
    if not group:
        return []
    first = group[0][1]
    steps_per_level, levels = first["sampler_steps_per_level"], first["sampler_levels"]

    def mean_of(k, key):
        return _fmt(float(np.mean([mt["sampler_levels"][k][key] for _, mt, _ in group])))
    factors = ", ".join(f"sigma {_fmt(level['sigma_standardized'])}: {mean_of(k, 'grad_sq_factor_median')} "
                        f"(at the max {mean_of(k, 'grad_sq_factor_at_max')})" for k, level in enumerate(levels))
    steps = {name: [k for _, mt, _ in group for k in mt["sampler_expansion_steps"][name]] for name in CLASSES}
    counts = "; ".join(f"ending {name}: median {_fmt(float(np.median(v)))} steps ({len(v)} traced samples)"
                       if v else f"ending {name}: no traced sample" for name, v in steps.items())
    return [f"Per-level attribution at m={m:g} ({len(group)} runs): the factor by which each noise level's "
            f"{steps_per_level} steps multiply |grad g|^2, median over the samples (and at the sample of the maximum), "
            f"mean over the runs; sigma on the standardized scale: {factors}.",
            f"Steps that carry {EXPANSION_SHARE:.0%} of the growth of log |grad g|^2, of "
            f"{steps_per_level * len(levels)}: {counts}."]


# --------------------------------------------------------------------------- the exact score as a yardstick


def _searched(metrics, sampler="trained"):
    """The searched lower bound on Lip(g) of the trained (or exact-score) sampler, data units,
    or None when the search found no pair of chains ending on both sides of the gap."""
    return metrics["sampler_search"][sampler]["largest"]


def _certified_lower(metrics):
    """The larger of the two lower bounds on the trained sampler's Lip(g) (data units): the
    searched one and the max of |grad g| over the samples."""
    return max(metrics["sampler_lipschitz"], _searched(metrics) or 0.0)


def _exact_sampler(metrics, key):
    """A number of the exact-score sampler (metrics.json's ``exact_sampler``)."""
    return metrics["exact_sampler"][key]


#: Figure 3b's lines of the exact-score yardstick: label -> (value, colour, line style, marker).
EXACT_SERIES = {
    "SGM sampler: searched steep set (lower bound on Lip(g))": (_searched, "tab:purple", "-", "^"),
    "exact-score sampler: max |grad g| over the samples": (lambda mt: _exact_sampler(mt, "lipschitz"), "tab:red", "-", "s"),
    "exact-score sampler: searched steep set": (lambda mt: _searched(mt, "exact"), "tab:red", "-", "^"),
}
#: Figure 3b's table columns of the yardstick, and the value of each.
EXACT_COLUMNS = {
    "SGM sampler searched Lip(g) (lower bound)": _searched,
    "exact-score sampler: mass between": lambda mt: _exact_sampler(mt, "mass_between"),
    "its smaller mode's share": lambda mt: _exact_sampler(mt, "smaller_mode_share"),
    "its MW2^2": lambda mt: _exact_sampler(mt, "mw2_squared"),
    "its max |grad g|": lambda mt: _exact_sampler(mt, "lipschitz"),
    "its searched Lip(g)": lambda mt: _searched(mt, "exact"),
    "its Theorem 1 demand": lambda mt: _exact_sampler(mt, "theorem1_required_lipschitz"),
}


def exact_series(table):
    """Figure 3b's yardstick lines, ``table(value)`` aggregating a metric of the SGM runs over m."""
    return {label: (table(value), color, style, marker) for label, (value, color, style, marker) in EXACT_SERIES.items()}


def exact_columns(group):
    """The yardstick's cells of one m's SGM runs (the order of EXACT_COLUMNS)."""
    return [_cell(group, value) for value in EXACT_COLUMNS.values()]


def _mean(group, value):
    values = [v for v in (value(mt) for _, mt, _ in group) if v is not None]
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
        group = _where(sgm_rows, m=m)
        if not group:
            continue
        trained, alone = _mean(group, lambda mt: mt["mass_between"]), _mean(group, lambda mt: _exact_sampler(mt, "mass_between"))
        lines.append(
            f"m={m:g} ({len(group)} runs): the SGM leaves a mass of {_fmt(trained)} (share of its samples) in "
            f"[-m/2, m/2]; the same sampler on the exact score leaves {_fmt(alone)} there (the data: "
            f"{_fmt(float(mixture_mass_between(m)))}), so the sampler alone accounts for {_fmt(alone)} and the "
            f"network's score error adds {_fmt(trained - alone)}. The exact-score sampler "
            f"{_steepness_words(_mean(group, _searched), _mean(group, lambda mt: _searched(mt, 'exact')))}: searched "
            f"Lip(g) {_cell(group, lambda mt: _searched(mt, 'exact'))} against {_cell(group, _searched)} (data units; "
            f"max |grad g| over the samples {_cell(group, lambda mt: _exact_sampler(mt, 'lipschitz'))} against "
            f"{_cell(group, lambda mt: mt['sampler_lipschitz'])}; Theorem 1's demand for each sampler's own mass "
            f"between the modes: {_cell(group, lambda mt: _exact_sampler(mt, 'theorem1_required_lipschitz'))} and "
            f"{_cell(group, lambda mt: mt['theorem1_required_lipschitz'])}).")
        levels = group[0][1]["score_error_per_level"]
        errors = ", ".join(f"sigma {_fmt(level['sigma_standardized'])}: "
                           f"{_fmt(_mean(group, lambda mt: mt['score_error_per_level'][k]['relative_error']))}"
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


def section_fig4(out, rows, m, histogram_levels=(5.0, 15.0, 25.0)):
    sn = [r for r in rows if r[0]["sn_generator"]]
    gp = [r for r in rows if r[0]["gp_lipschitz"] is not None]
    histos = []
    if sn:
        histos.append(("GAN, spectral norm on G", read_samples(sn[0][2])))
    for L in histogram_levels:
        for config, _, run_dir in gp:
            if config["gp_lipschitz"] == L and config["seed"] == gp[0][0]["seed"]:
                histos.append((f"GAN, gradient penalty L = {L:g}", read_samples(run_dir)))
                break
    lip_vs_L = aggregate(gp, ["gp_lipschitz"], lambda mt: mt["lipschitz"])
    balance_vs_L = aggregate(gp, ["gp_lipschitz"], lambda mt: mt["smaller_mode_share"])
    path = os.path.join(out, "fig4.png")
    figures.figure4(path, histos, m, lip_vs_L, balance_vs_L)
    s = Section("fig4", f"Figure 4: constraining the generator (m = {m:g})",
                "Spectral normalization keeps Lip(G) near 1, so the GAN drops a mode or interpolates massively; "
                "with a gradient penalty towards L, a larger L lets the GAN reach both modes but makes it "
                "more prone to mode collapse: Lipschitz constant trades against mode coverage.",
                image=path, header=["setting", "exact Lip", "mass between", "MW2^2 to nu", "smaller mode's share"])
    settings = [("spectral norm on G", sn)] + [(f"gradient penalty L = {L:g}", _where(gp, gp_lipschitz=L))
                                               for (L,) in lip_vs_L]
    for label, group in settings:
        if group:
            s.rows.append([label, _cell(group, lambda mt: mt["lipschitz"]), _cell(group, lambda mt: mt["mass_between"]),
                           _cell(group, _mw2), _cell(group, lambda mt: mt["smaller_mode_share"])])
    if sn:
        s.add("with spectral norm on G, Lip(G) <= 1.05 in every run (decided run by run)",
              lambda r: _every_run(r, lambda c, mt: mt["lipschitz"] <= 1.05,
                                   f"max Lip {max(mt['lipschitz'] for _, mt, _ in r):.3g}" if r else ""), sn)
        s.add(f"with spectral norm on G, the GAN drops a mode (smaller mode's share < 20%) or puts > 10% of its mass "
              f"between the modes, in every one of >= {MIN_SEEDS} seeds",
              lambda r: _every_run(r, lambda c, mt: mt["smaller_mode_share"] < 0.2 or mt["mass_between"] > 0.1,
                                   "each drops a mode or interpolates", MIN_SEEDS), sn)
    if gp:
        s.add(f"measured Lip grows with L ({TREND})",
              lambda r: _trend(r, lambda c: c["gp_lipschitz"], lambda mt: mt["lipschitz"], +1), gp)
        s.add(f"the smaller mode's share falls as L grows ({TREND})",
              lambda r: _trend(r, lambda c: c["gp_lipschitz"], lambda mt: mt["smaller_mode_share"], -1), gp)
    s.collapsed = _collapse_notes(rows)
    return s


def section_fig5(out, rows, m):
    depth = {model: aggregate(_by_model(rows, model), ["n_layers"], lambda mt: mt["lipschitz"]) for model in ("vae", "gan")}

    def epoch_curve(rows_, model):
        curve = {}
        for config, mt, _ in _where(_by_model(rows_, model), n_layers=3):
            for e, value in mt["lipschitz_vs_epoch"]:
                curve.setdefault(e, []).append(value)
        return {e: _stats(v) for e, v in sorted(curve.items())}
    epoch_curves = {model: {(e,): v for e, v in epoch_curve(rows, model).items()} for model in ("vae", "gan")}
    path = os.path.join(out, "fig5.png")
    figures.figure5(path, depth, epoch_curves)
    s = Section("fig5", f"Figure 5: depth and training time (m = {m:g})",
                "The VAE decoder's Lipschitz constant grows with its depth; for both models it grows with the "
                "number of epochs (slowly for the VAE); deeper GANs are less stable.",
                image=path, header=["model", "layers", "exact Lip"])
    for model in ("vae", "gan"):
        for (layers,) in depth[model]:
            s.rows.append([model.upper(), str(layers), _cell(_where(_by_model(rows, model), n_layers=layers),
                                                             lambda mt: mt["lipschitz"])])
    vae = _by_model(rows, "vae")
    if vae:
        s.add(f"VAE Lip grows with depth ({TREND})",
              lambda r: _trend(r, lambda c: c["n_layers"], lambda mt: mt["lipschitz"], +1), vae)
    for model in ("vae", "gan"):
        group = _where(_by_model(rows, model), n_layers=3)
        if group:
            def first_last(r, model=model):
                curve = list(epoch_curve(r, model).items())
                if len(curve) < 2:
                    return INCONCLUSIVE, "fewer than two checkpoints"
                (e0, first), (e1, last) = curve[0], curve[-1]
                return _less(first, last, f"epoch {e0}", f"epoch {e1}")
            s.add(f"{model.upper()} Lip at the last epoch above Lip at the first checkpoint ({BANDS})", first_last, group)
    s.collapsed = _collapse_notes(rows)
    return s


def section_fig6(out, rows):
    tables = {model: {skip: aggregate([r for r in _by_model(rows, model) if r[0]["skip"] == skip],
                                      ["m"], lambda mt: mt["lipschitz"])
                      for skip in ("plain", "resnet", "densenet")} for model in ("vae", "gan")}
    path = os.path.join(out, "fig6.png")
    figures.figure6(path, tables)
    s = Section("fig6", "Figure 6: generator architectures",
                "Resnet or densenet skips do not let the VAE decoder or the GAN generator reach larger "
                "Lipschitz constants than the plain feed-forward backbone.",
                image=path, header=["model", "m", "plain", "resnet", "densenet"])
    for model, by_skip in tables.items():
        for m in sorted({k[0] for table in by_skip.values() for k in table}):
            s.rows.append([model.upper(), _fmt(m)] + [_cell(_where(_by_model(rows, model), m=m, skip=k),
                                                            lambda mt: mt["lipschitz"]) for k in ("plain", "resnet", "densenet")])

    def below_twice_plain(r):
        outcomes, ratios = [], []
        for model in ("vae", "gan"):
            for m in sorted({c["m"] for c, _, _ in _by_model(r, model)}):
                plain = _stats([mt["lipschitz"] for _, mt, _ in _where(_by_model(r, model), m=m, skip="plain")])
                for skip in ("resnet", "densenet"):
                    other = _stats([mt["lipschitz"] for _, mt, _ in _where(_by_model(r, model), m=m, skip=skip)])
                    if plain and other:
                        ratios.append((other[0] / max(plain[0], 1e-12), f"{model.upper()} {skip} at m={m:g}"))
                        outcomes.append(_less(other, _scaled(plain, 2.0), f"{model.upper()} {skip} at m={m:g}",
                                              "twice plain"))
        result, measured = _all(outcomes)
        if ratios:
            worst = max(ratios)
            measured = f"largest ratio of means to plain {worst[0]:.2f} ({worst[1]}); " + measured
        return result, measured
    if rows:
        s.add(f"every skip style's Lip below twice the plain network's, for each model and m ({BANDS})",
              below_twice_plain, rows)
    s.collapsed = _collapse_notes(rows)
    return s


def section_grid(out, rows):
    exact, grid, models = [], [], []
    for config, mt, _ in rows:
        if config["model"] == "sgm":
            for level in mt["score_lipschitz_per_sigma"]:
                exact.append(level["exact_standardized"])
                grid.append(level["grid_standardized"])
                models.append("sgm")
        else:
            exact.append(mt["lipschitz"])
            grid.append(mt["lipschitz_grid"])
            models.append(config["model"])
    path = os.path.join(out, "grid.png")
    figures.figure_grid_vs_exact(path, exact, grid, models)
    s = Section("grid", "Exact constants against the paper's grid estimate",
                "The paper estimated Lip(g) as the largest slope between 1000 grid points in [-10, 10]; that "
                "is a lower estimate, and npgen's exact constant shows how far below it can fall.",
                image=path, header=["model", "networks", "median grid/exact", "min grid/exact"])
    exact, grid = np.asarray(exact), np.asarray(grid)
    for model in sorted(set(models)):
        sel = np.asarray(models) == model
        ratio = grid[sel] / np.maximum(exact[sel], 1e-300)
        s.rows.append([model.upper(), str(int(sel.sum())), _fmt(float(np.median(ratio))), _fmt(float(ratio.min()))])
    if exact.size:
        above = int(np.sum(grid > exact * (1 + 1e-6) + 1e-9))
        s.checks.append(Check("the grid estimate never exceeds the exact constant (to 1e-6 relative; decided network "
                              "by network)", NOT_HELD if above else HELD,
                              f"{above} of {exact.size} networks above" if above else f"{exact.size} networks"))
    s.notes.append("SGM rows: the score network at each trained noise level, on the standardized scale.")
    return s


# --------------------------------------------------------------------------- beyond the paper

CAUCHY_FILE = "cauchy.json"
PARTICLES_FILE = "particles.json"
#: Both modes are kept when the smaller mode's share of the mass outside [-m/2, m/2] exceeds this.
BOTH_MODES_SHARE = 0.2
#: The run has converged when its last kinetic energy is below this fraction of the largest.
CONVERGED_FRACTION = 0.01
#: Slack on the discriminator's exact constant over its bound L (spectral norm's power iteration).
LIPSCHITZ_SLACK = 1.05


def _latent_table(rows, latent, key):
    groups = {}
    for config, metrics, _ in rows:
        if config["latent"] == latent and config["m"] > 0:
            groups.setdefault((config["m"],), []).append(metrics[key])
    return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in sorted(groups.items())}


def section_cauchy(out, rows, m_values, histogram_m):
    """The report section of the Cauchy-latent study (writes cauchy.json, then cauchy.png)."""
    rows = with_cauchy_numbers(_by_model(rows, "gan"))
    atomic_write_json(os.path.join(out, CAUCHY_FILE), [
        dict({"latent": c["latent"], "m": c["m"], "seed": c["seed"]}, **{k: mt.get(k) for k in CAUCHY_RECORDED})
        for c, mt, _ in rows])
    first = {}
    for config, _, run_dir in sorted(rows, key=lambda r: r[0]["seed"]):
        if config["m"] == histogram_m:
            first.setdefault(config["latent"], run_dir)
    samples = {latent: read_samples(d) for latent, d in first.items()}
    path = os.path.join(out, "cauchy.png")
    m_grid = np.linspace(0.5, max(m_values), 100)
    figures.figure_cauchy(path, samples, histogram_m,
                          {latent: _latent_table(rows, latent, "mass_between") for latent in LATENTS},
                          {latent: _latent_table(rows, latent, "mass_between_bound") for latent in LATENTS},
                          m_grid, mixture_mass_between(m_grid))
    s = Section("cauchy", "Beyond the paper: a Cauchy latent",
                "Theorem 1 rests on the Gaussian's isoperimetry. With a one-dimensional Cauchy latent, half-lines are "
                "not extremal and an L-Lipschitz map can leave less mass between the modes than with a Gaussian "
                "latent at the same L (npgen.analysis.theory.cauchy_mass_between_bound). Does a GAN trained with a "
                "Cauchy latent put less mass between the modes at the same constant?",
                image=path, header=["m", "latent", "exact Lip", "mass in [-m/2, m/2]", "latent's bound",
                                    "Gaussian bound at the same Lip", "MW2^2 to the target (data units^2)",
                                    "true mass"])
    for m in m_values:
        for latent in LATENTS:
            group = _where(rows, m=m, latent=latent)
            if group:
                s.rows.append([_fmt(m), latent] + [_cell(group, lambda mt, k=k: mt.get(k)) for k in
                              ("lipschitz", "mass_between", "mass_between_bound", "gaussian_bound_same_lip",
                               "mw2_squared")] + [_fmt(float(mixture_mass_between(m)))])
    positive = [r for r in rows if r[0]["m"] > 0]
    s.add("each latent's bound is a true lower bound on the generated mass in [-m/2, m/2], in every run at m > 0, "
          "up to 4 binomial standard errors of the sample estimate (decided run by run)",
          lambda r: _every_run(r, lambda c, mt: mt["mass_between"] + _sampling_slack(mt["mass_between_bound"],
                                                                                      c["n_samples"])
                               >= mt["mass_between_bound"], "none below its bound"), positive)
    s.add("at every Cauchy run's exact Lip and side masses, the Cauchy bound is below the Gaussian one, or both are 0 "
          "(all the mass on one side): the heavy tail allows less mass between the modes at the same constant "
          "(decided run by run)",
          lambda r: _every_run(r, lambda c, mt: mt["mass_between_bound"] < mt["gaussian_bound_same_lip"]
                               or mt["mass_between_bound"] == mt["gaussian_bound_same_lip"] == 0,
                               "the Cauchy bound below the Gaussian one in each"),
          [r for r in positive if r[0]["latent"] == "cauchy"])
    kept = [r for r in positive if not r[1]["collapse"]]

    def less_mass_at_every_m(r):
        outcomes = []
        for m in sorted({c["m"] for c, _, _ in r}):
            found = {latent: _stats([mt["mass_between"] for _, mt, _ in _where(r, m=m, latent=latent)])
                     for latent in LATENTS}
            outcomes.append(_less(found["cauchy"], found["gaussian"], f"Cauchy at m={m:g}", f"Gaussian at m={m:g}"))
        return _all(outcomes)
    s.add(f"the question: at every m > 0, the Cauchy-latent GAN runs that kept both modes put less mass in [-m/2, m/2] "
          f"than the Gaussian-latent ones ({BANDS}, per m)", less_mass_at_every_m, kept)
    largest = max((m for m in m_values if m > 0), default=None)
    if largest is not None:
        def stats(r, latent, key):
            return _stats([mt[key] for _, mt, _ in _where(r, m=largest, latent=latent)])
        s.add(f"at m = {largest:g} the Cauchy-latent GAN has a smaller exact Lip than the Gaussian-latent GAN ({BANDS})",
              lambda r: _less(stats(r, "cauchy", "lipschitz"), stats(r, "gaussian", "lipschitz"), "Cauchy",
                              "Gaussian"), _where(rows, m=largest))
    s.collapsed = _collapse_notes(rows)
    s.notes.append(_cauchy_answer(rows, m_values, s.checks[2].result if len(s.checks) > 2 else INCONCLUSIVE))
    s.notes.append(f"Histograms: the first seed at m = {histogram_m:g}. MW2^2: the squared mixture-Wasserstein "
                   "distance between a 2-component Gaussian mixture fitted to the samples and the target; "
                   f"every run's numbers are in {CAUCHY_FILE}.")
    return s


def _cauchy_answer(rows, m_values, verdict):
    """The study's answer in words: the question's check, then per m > 0 the collapsed runs and
    the two latents' exact Lip, mass between, bound and MW2^2 over the runs that kept both modes."""
    parts = []
    for m in [m for m in m_values if m > 0]:
        cells = []
        for latent in LATENTS:
            found = [mt for _, mt, _ in _where(rows, m=m, latent=latent)]
            kept = [mt for mt in found if not mt["collapse"]]
            numbers = ", ".join(f"{name} {_fmt(_stats([mt[key] for mt in kept]))}" for name, key in (
                ("Lip", "lipschitz"), ("mass", "mass_between"), ("bound", "mass_between_bound"),
                ("MW2^2", "mw2_squared"))) if kept else "no run kept both modes"
            cells.append(f"{latent}: {len(found) - len(kept)} of {len(found)} collapsed; {numbers}")
        parts.append(f"m = {m:g}: " + "; ".join(cells))
    return (f"Answer to the question: {verdict}. Per m, over the runs that kept both modes: " + " | ".join(parts)
            + ". A heavy tail lowers the bound at a given constant; whether training uses that room is what the "
            "question's check decides.")


def _peak_fraction(metrics):
    energies = [e for _, e in metrics["kinetic_energy_vs_step"]]
    return metrics["final_kinetic_energy"] / max(max(energies), 1e-300)


def section_particles(out, rows, fig3_rows, m_values, histogram_m):
    """The report section of the generative particles (writes particles.json, then particles.png)."""
    rows = _by_model(rows, "particles")
    atomic_write_json(os.path.join(out, PARTICLES_FILE), [
        dict({"n_particles": c["n_particles"], "n_data": c["n_data"], "m": c["m"], "seed": c["seed"],
              "divergence": c["divergence"], "kinetic_energy_vs_step": mt["kinetic_energy_vs_step"]},
             **{k: mt.get(k) for k in PARTICLE_RECORDED}) for c, mt, _ in rows])
    counts = sorted({c["n_particles"] for c, _, _ in rows})
    samples, kinetic = {}, {}
    for config, metrics, run_dir in sorted(rows, key=lambda r: (r[0]["seed"], r[0]["m"])):
        n = config["n_particles"]
        if config["m"] == histogram_m and n not in samples:
            samples[n] = read_samples(run_dir)
        if config["seed"] == min(c["seed"] for c, _, _ in rows):
            kinetic.setdefault(n, []).append((config["m"], metrics["kinetic_energy_vs_step"]))
    path = os.path.join(out, "particles.png")
    figures.figure_particles(path, samples, histogram_m, kinetic)
    header = (["m", "GAN mass", "VAE mass", "SGM mass"] + [f"particles N={n} mass" for n in counts]
              + ["true mass"] + [f"N={n}: {what}" for n in counts for what in (
                  "MW2^2 (data units^2)", "TV estimate", "exact Lip of phi", "final kinetic energy", "train seconds")])
    s = Section("particles", "Beyond the paper: Lipschitz-regularized generative particles",
                "Particles moved along the gradient of an L-Lipschitz discriminator of a Lipschitz-regularized "
                "divergence (KL) are not a push-forward of a fixed latent law, so Theorem 1 does not bind them: they "
                "can fit both modes with little mass between them, even from few samples.", image=path, header=header)
    for m in m_values:
        cells = [_cell(_where(_by_model(fig3_rows, model), m=m), lambda mt: mt["mass_between"]) if
                 _where(_by_model(fig3_rows, model), m=m) else "-" for model in ("gan", "vae", "sgm")]
        by_n = {n: _where(rows, m=m, n_particles=n) for n in counts}
        cells += [_cell(by_n[n], lambda mt: mt["mass_between"]) if by_n[n] else "-" for n in counts]
        cells.append(_fmt(float(mixture_mass_between(m))))
        for n in counts:
            for key in ("mw2_squared", "tv_estimate", "discriminator_lipschitz", "final_kinetic_energy",
                        "train_seconds"):
                cells.append(_cell(by_n[n], lambda mt, key=key: mt[key]) if by_n[n] else "-")
        s.rows.append([_fmt(m)] + cells)
    positive = [r for r in rows if r[0]["m"] > 0]
    s.add(f"every particles run at m > 0 keeps both modes: the smaller mode's share of the mass outside [-m/2, m/2] "
          f"is above {BOTH_MODES_SHARE:.0%} (decided run by run)",
          lambda r: _every_run(r, lambda c, mt: mt["smaller_mode_share"] > BOTH_MODES_SHARE, "both modes in each"),
          positive)
    largest = max((m for m in m_values if m > 0), default=None)
    if largest is not None:
        gan = _stats([mt["mass_between"] for _, mt, _ in _where(_by_model(fig3_rows, "gan"), m=largest)])

        def below_gan(r):
            if gan is None or gan[2] < MIN_SEEDS:
                return INCONCLUSIVE, f"Figure 3's GAN at m = {largest:g}: {_fmt(gan)}, fewer than {MIN_SEEDS} seeds"
            return _every_run(r, lambda c, mt: mt["mass_between"] < gan[0] - gan[1],
                              f"each below the GAN's {_fmt(gan)} band")
        s.add(f"at m = {largest:g} every particles run puts less mass in [-m/2, m/2] than the low edge of Figure 3's "
              f"GAN band (mean - std over its seeds; {BANDS})", below_gan, _where(rows, m=largest))
    s.add(f"the particles converge: the last kinetic energy is below {CONVERGED_FRACTION:.0%} of its largest value "
          "along the run (decided run by run)",
          lambda r: _every_run(r, lambda c, mt: _peak_fraction(mt) < CONVERGED_FRACTION, "converged"), rows)
    s.add(f"the discriminator's exact constant is at most {LIPSCHITZ_SLACK:g} L (spectral norm's estimate; decided "
          "run by run)",
          lambda r: _every_run(r, lambda c, mt: mt["discriminator_lipschitz"]
                               <= LIPSCHITZ_SLACK * mt["discriminator_lipschitz_bound"], "within the bound"), rows)
    s.collapsed = _collapse_notes(rows)
    s.notes.append(_cost_note(rows, counts))
    s.notes.append(f"Divergence: KL. L = 1, dt = 0.1 (L dt = 0.1 = the resolution h: the stability condition holds "
                   "with equality), 5 discriminator steps per particle step. TV: the histogram estimate on the "
                   "paper's 400 bins (biased upwards for a few hundred particles). The GAN/VAE/SGM columns are "
                   f"Figure 3's runs (mean ± std over its seeds). Every run's numbers are in {PARTICLES_FILE}.")
    return s


def _cost_note(rows, counts):
    """What the particles cost, per particle count (training seconds, per run)."""
    if not rows:
        return f"Cost: {INCONCLUSIVE} (no finished run)."
    parts = []
    for n in counts:
        group = [mt for c, mt, _ in rows if c["n_particles"] == n]
        steps = sorted({c["n_steps"] for c, _, _ in rows if c["n_particles"] == n})
        parts.append(f"N = {n}: {_fmt(_stats([mt['train_seconds'] for mt in group]))} s per run of "
                     f"{', '.join(map(str, steps))} particle steps")
    return "Cost (training seconds on this machine, shared with other work): " + "; ".join(parts) + "."


# --------------------------------------------------------------------------- assembly


def build_sections(out, preset, names, runs, require_runs=False):
    """The report's sections for the figures ``names``; with ``require_runs`` a figure with no
    finished run raises ValueError (one sentence) instead of drawing an empty figure."""
    p = PLANS[preset]
    runs_dir = os.path.join(out, "runs")
    needs = dict(runs, grid=[c for name in ("fig3", "fig4", "fig5", "fig6") for c in runs[name]])

    def rows(name):
        found = collect(needs[name], runs_dir)
        if require_runs and not found:
            status = sweep_status(needs[name], runs_dir)
            raise ValueError(f"{runs_dir} holds no finished run of {name} ({status['total']} planned: "
                             f"{status['corrupt']} corrupt, {status['missing']} missing); run npgen reproduce "
                             f"--preset {preset} --only {name} --out {out} to train them")
        return found
    builders = {
        "fig1": lambda: section_fig1(out),
        "fig2": lambda: section_fig2(out, rows("fig2"), p.histogram_m),
        "fig3": lambda: section_fig3(out, rows("fig3"), p.m_values),
        "fig3b": lambda: section_fig3b(out, rows("fig3b"), p.m_values),
        "fig4": lambda: section_fig4(out, rows("fig4"), p.fig4_m),
        "fig5": lambda: section_fig5(out, rows("fig5"), p.fig5_m),
        "fig6": lambda: section_fig6(out, rows("fig6")),
        "grid": lambda: section_grid(out, rows("grid")),
        "cauchy": lambda: section_cauchy(out, rows("cauchy"), cauchy_m_values(p), p.histogram_m),
        "particles": lambda: section_particles(out, rows("particles"), collect(runs["fig3"], runs_dir),
                                               p.m_values, p.histogram_m),
    }
    return [builders[name]() for name in names]


def _check_lines(check):
    """The check as text: its verdict, its rule, what was measured, and the collapsed runs."""
    lines = [f"**{check.result}**: {check.rule}. Measured: {check.measured}."]
    if check.collapsed:
        result, measured = check.without_collapsed
        lines.append(f"Rests on {len(check.collapsed)} collapsed run(s) ({', '.join(check.collapsed)}); "
                     f"without them: {result} ({measured}).")
    return lines


def _failure_lines(failures):
    """The runs that failed, one line each, or nothing when none did."""
    if not failures:
        return []
    return [f"{len(failures)} runs failed and are missing from every table and figure below"
            " (their errors and tracebacks are in runs/failures.json):"] + [
        f"{name}: {error}" for name, error in failures]


def render_markdown(sections, preset, failures=(), notes=()):
    lines = [f"# npgen reproduction report ({preset} preset)", "", *[f"{note}\n" for note in notes],
             "Each section: the paper's claim, what this run measured (mean ± std over seeds, n = number "
             "of runs), and each check's rule beside its verdict. A check is \"held\" only when its rule has "
             "the evidence to decide; otherwise it is \"inconclusive\", with the reason.", "",
             f"Collapse: {COLLAPSE_RULES}. Collapsed runs are named in each section; table cells that "
             "include one also give the mean without them, and a check that rests on one says so.", ""]
    failed = _failure_lines(failures)
    if failed:
        lines += ["## Failed runs", "", failed[0], ""] + [f"- {line}" for line in failed[1:]] + [""]
    for s in sections:
        lines += [f"## {s.title}", "", f"**Paper's claim.** {s.claim}", ""]
        if s.image:
            lines += [f"![{s.name}]({os.path.basename(s.image)})", ""]
        if s.rows:
            lines += ["| " + " | ".join(s.header) + " |", "|" + "---|" * len(s.header)]
            lines += ["| " + " | ".join(row) + " |" for row in s.rows]
            lines.append("")
        lines.append(f"**Verdict: {s.verdict}.**")
        for check in s.checks:
            first, *rest = _check_lines(check)
            lines += [f"- {first}"] + [f"  {line}" for line in rest]
        lines += [f"- collapsed: {name}" for name in s.collapsed]
        lines += [f"- note: {note}" for note in s.notes]
        lines.append("")
    return "\n".join(lines)


def render_html(sections, preset, failures=(), notes=()):
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>npgen report ({preset})</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}.held{color:#060}.no{color:#a00}"
             ".open{color:#850}</style>",
             f"</head><body><h1>npgen reproduction report ({html.escape(preset)} preset)</h1>",
             f"<p>A check is \"held\" only when its rule has the evidence to decide. Collapse: "
             f"{html.escape(COLLAPSE_RULES)}.</p>", *[f"<p>{html.escape(note)}</p>" for note in notes]]
    failed = _failure_lines(failures)
    if failed:
        parts.append(f"<h2>Failed runs</h2><p class='no'>{html.escape(failed[0])}</p><ul>"
                     + "".join(f"<li>{html.escape(line)}</li>" for line in failed[1:]) + "</ul>")
    css = {HELD: "held", NOT_HELD: "no", INCONCLUSIVE: "open"}
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2><p><b>Paper's claim.</b> {html.escape(s.claim)}</p>")
        if s.image and os.path.exists(s.image):
            with open(s.image, "rb") as handle:
                data = base64.b64encode(handle.read()).decode()
            parts.append(f"<img style='max-width:100%' src='data:image/png;base64,{data}'>")
        if s.rows:
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in s.header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in s.rows]
            parts.append("</table>")
        parts.append(f"<p><b>Verdict: {html.escape(s.verdict)}.</b></p><ul>")
        for check in s.checks:
            text = " ".join(_check_lines(check)).replace("**", "")
            parts.append(f"<li class='{css[check.result]}'>{html.escape(text)}</li>")
        parts += [f"<li>collapsed: {html.escape(name)}</li>" for name in s.collapsed]
        parts += [f"<li>note: {html.escape(n)}</li>" for n in s.notes]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out, preset, names, runs, failures=(), extra=(), notes=()):
    """Draw the figures and write report.md, report.html and summary.json into ``out``.

    ``failures``: (run name, error) of the runs that failed; both reports list them first.
    ``extra``: sections built elsewhere (Figure 7), after those of ``names``; ``notes``: lines
    under the report's title (a figure that was skipped, and why).
    """
    sections = build_sections(out, preset, names, runs) + list(extra)
    atomic_write_texts({  # the three files all or none: never a report.md beside an old report.html
        os.path.join(out, "report.md"): render_markdown(sections, preset, failures, notes),
        os.path.join(out, "report.html"): render_html(sections, preset, failures, notes),
        os.path.join(out, "summary.json"): {
            s.name: {"title": s.title, "claim": s.claim, "verdict": s.verdict, "header": s.header, "rows": s.rows,
                     "checks": [{"rule": c.rule, "result": c.result, "measured": c.measured,
                                 "collapsed_runs": c.collapsed, "without_collapsed": c.without_collapsed}
                                for c in s.checks],
                     "collapsed": s.collapsed} for s in sections}})
    return os.path.join(out, "report.md")
