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
from ..util.io import atomic_write_json, atomic_write_text
from . import figures
from .plans import PLANS, aggregate, collect
from .sweep import sweep_status
from .runs import MIN_MODE_SHARE, SPIKE_MASS, SPIKE_WIDTH, figure3_bound


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
    samples = {model: np.load(os.path.join(run_dir, "samples.npy")) for model, run_dir in first.items()}
    path = os.path.join(out, "fig2.png")
    figures.figure2(path, samples, m)
    seeds = sorted({c["seed"] for c, _, _ in rows})
    s = Section("fig2", f"Figure 2: histograms for m = {m:g}",
                "The VAE interpolates between the modes, the GAN does not interpolate but loses part "
                "of the support (mode collapse), and the SGM fits both modes with little mass between.",
                image=path, header=["model", "mass in [-m/2, m/2]", "true mass", "smaller mode's share",
                                    "TV estimate", "exact Lip (SGM: score net, data scale)"])
    s.notes.append(f"The histograms are seed {seeds[0] if seeds else '-'}; the table and the checks use every seed "
                   f"({len(seeds)}).")
    by = {model: _by_model(rows, model) for model in ("vae", "gan", "sgm")}
    for model, group in by.items():
        if group:
            s.rows.append([model.upper(), _cell(group, lambda mt: mt["mass_between"]),
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
                                    "true mass"])
    for m in m_values:
        cells = {model: _where(_by_model(rows, model), m=m) for model in ("gan", "vae", "sgm")}
        s.rows.append([_fmt(m), f"exp({float(corollary2_log_lip_lower_bound(2 * m)):.4g})"]
                      + [_cell(cells[mdl], _lip) for mdl in ("gan", "vae", "sgm")]
                      + [_cell(cells["sgm"], lambda mt: _lip(mt, "standardized"))]
                      + [_cell(cells[mdl], lambda mt: mt["mass_between"]) for mdl in ("gan", "vae", "sgm")]
                      + [_fmt(float(mixture_mass_between(m)))])
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
                   "levels; it is not the constant of the whole sampling dynamic. The network reads standardized "
                   "data z = (x - mu) / sd, so on the data's own scale its constant is the standardized one divided "
                   "by sd^2 (the variance used to standardize, about 1 + m^2). The data-scale number is the one "
                   "measured in the same coordinate x as the GAN's and VAE's constants, so it is the one to put "
                   "beside them (and the one the checks use); the standardized number is the paper's. A score "
                   "network's constant and a generator's are still different quantities (a slope of the score in x, "
                   "against a slope of x in the latent z), so the comparison is of sizes.")
    s.collapsed = _collapse_notes(rows)
    return s


def section_fig4(out, rows, m, histogram_levels=(5.0, 15.0, 25.0)):
    sn = [r for r in rows if r[0]["sn_generator"]]
    gp = [r for r in rows if r[0]["gp_lipschitz"] is not None]
    histos = []
    if sn:
        histos.append(("GAN, spectral norm on G", np.load(os.path.join(sn[0][2], "samples.npy"))))
    for L in histogram_levels:
        for config, _, run_dir in gp:
            if config["gp_lipschitz"] == L and config["seed"] == gp[0][0]["seed"]:
                histos.append((f"GAN, gradient penalty L = {L:g}", np.load(os.path.join(run_dir, "samples.npy"))))
                break
    lip_vs_L = aggregate(gp, ["gp_lipschitz"], lambda mt: mt["lipschitz"])
    balance_vs_L = aggregate(gp, ["gp_lipschitz"], lambda mt: mt["smaller_mode_share"])
    path = os.path.join(out, "fig4.png")
    figures.figure4(path, histos, m, lip_vs_L, balance_vs_L)
    s = Section("fig4", f"Figure 4: constraining the generator (m = {m:g})",
                "Spectral normalization keeps Lip(G) near 1, so the GAN drops a mode or interpolates massively; "
                "with a gradient penalty towards L, a larger L lets the GAN reach both modes but makes it "
                "more prone to mode collapse: Lipschitz constant trades against mode coverage.",
                image=path, header=["setting", "exact Lip", "mass between", "smaller mode's share"])
    settings = [("spectral norm on G", sn)] + [(f"gradient penalty L = {L:g}", _where(gp, gp_lipschitz=L))
                                               for (L,) in lip_vs_L]
    for label, group in settings:
        if group:
            s.rows.append([label, _cell(group, lambda mt: mt["lipschitz"]), _cell(group, lambda mt: mt["mass_between"]),
                           _cell(group, lambda mt: mt["smaller_mode_share"])])
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
        "fig4": lambda: section_fig4(out, rows("fig4"), p.fig4_m),
        "fig5": lambda: section_fig5(out, rows("fig5"), p.fig5_m),
        "fig6": lambda: section_fig6(out, rows("fig6")),
        "grid": lambda: section_grid(out, rows("grid")),
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
    atomic_write_text(os.path.join(out, "report.md"), render_markdown(sections, preset, failures, notes))
    atomic_write_text(os.path.join(out, "report.html"), render_html(sections, preset, failures, notes))
    atomic_write_json(os.path.join(out, "summary.json"), {
        s.name: {"title": s.title, "claim": s.claim, "verdict": s.verdict, "header": s.header, "rows": s.rows,
                 "checks": [{"rule": c.rule, "result": c.result, "measured": c.measured,
                             "collapsed_runs": c.collapsed, "without_collapsed": c.without_collapsed}
                            for c in s.checks],
                 "collapsed": s.collapsed} for s in sections})
    return os.path.join(out, "report.md")
