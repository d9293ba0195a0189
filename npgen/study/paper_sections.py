"""The report's sections of the paper's Section 4.1: Figures 1 to 6 and the grid estimate.

Each ``section_*`` reads finished runs (:class:`npgen.study.records.Run`), fills a
:class:`npgen.study.verdicts.Section` with a table, the checks of :mod:`npgen.study.verdicts`
and notes, and says how to draw its figure (``Section.draw``); it writes nothing. Figure 3b (the
SGM's sampler) is :mod:`npgen.study.sampler_sections`.
"""

import numpy as np

from ..analysis.theory import corollary2_log_lip_lower_bound, isoperimetric_profile, mixture_mass_between
from . import figures
from .plans import aggregate
from .records import Stat, by_model, drawing, first_seed, lip, mass, mw2, where
from .run_metrics import figure3_bound
from .sampler_sections import sampler_statements
from .verdicts import (BANDS, HELD, INCONCLUSIVE, NOT_HELD, TREND, MIN_SEEDS, Check, Section, all_of, cell,
                       collapse_notes, every_run, fmt, less, sampling_slack, scaled, trend)


MW2_NOTE = ("MW2^2 (data units squared) is the squared mixture-Wasserstein distance from a two-component Gaussian "
            "mixture fitted to the run's samples (EM, full covariances) to nu: the optimal transport cost between "
            "the components' weights with the squared W2 between Gaussians as costs. Weight the fit puts in excess "
            "on one mode must travel the 2m between the modes, so it grows with a missing or lopsided mode; mass "
            "between the modes widens or shifts the fitted components.")


# --------------------------------------------------------------------------- Figures 1 and 2


def section_fig1():
    """Figure 1: the Gaussian isoperimetric profile phi(Phi^-1(t)), its peak 1/sqrt(2 pi) at t = 1/2
    and its symmetry, on 10 001 points."""
    t = np.linspace(0, 1, 10001)
    prof = isoperimetric_profile(t)
    s = Section("fig1", "Figure 1: the Gaussian isoperimetric profile",
                "phi(Phi^-1(t)) is symmetric about 1/2, vanishes at 0 and 1, and peaks at 1/sqrt(2 pi).",
                image="fig1.png", header=["quantity", "value"],
                rows=[["max", fmt(float(prof.max()))], ["argmax", fmt(float(t[prof.argmax()]))],
                      ["1/sqrt(2 pi)", fmt(1 / np.sqrt(2 * np.pi))]], draw=figures.figure1)
    peak = abs(prof.max() - 1 / np.sqrt(2 * np.pi)) < 1e-9 and abs(t[prof.argmax()] - 0.5) < 1e-9
    s.checks.append(Check("the maximum is 1/sqrt(2 pi), at t = 1/2 (to 1e-9, on 10 001 points)",
                          HELD if peak else NOT_HELD, f"max {prof.max():.12g} at t = {t[prof.argmax()]:.4g}"))
    symmetric = np.allclose(prof, prof[::-1], atol=1e-12)
    s.checks.append(Check("symmetric about t = 1/2 (to 1e-12)", HELD if symmetric else NOT_HELD,
                          f"largest asymmetry {np.abs(prof - prof[::-1]).max():.3g}"))
    return s


def section_fig2(rows, m):
    """Figure 2: the first seed's histograms at ``m``; masses, MW2^2 and the four checks over every seed."""
    samples = {model: run.samples() for model, run in first_seed(rows, lambda c: c["model"]).items()}
    seeds = sorted({r.config["seed"] for r in rows})
    s = Section("fig2", f"Figure 2: histograms for m = {m:g}",
                "The VAE interpolates between the modes, the GAN does not interpolate but loses part "
                "of the support (mode collapse), and the SGM fits both modes with little mass between.",
                image="fig2.png", header=["model", "mass in [-m/2, m/2]", "MW2^2 to nu", "true mass",
                                          "smaller mode's share", "TV estimate",
                                          "exact Lip (SGM: score net, data scale)"],
                draw=drawing(figures.figure2, samples, m))
    s.notes.append(f"The histograms are seed {seeds[0] if seeds else '-'}; the table and the checks use every seed "
                   f"({len(seeds)}).")
    by = {model: by_model(rows, model) for model in ("vae", "gan", "sgm")}
    for model, group in by.items():
        if group:
            s.rows.append([model.upper(), cell(group, mass), cell(group, mw2),
                           fmt(group[0].metrics["true_mass_between"]), cell(group, lambda mt: mt["smaller_mode_share"]),
                           cell(group, lambda mt: mt["tv_estimate"]), cell(group, lip)])
    true_mass = float(mixture_mass_between(m))

    def mass_of(rows_, model):
        return Stat.of([r.metrics["mass_between"] for r in by_model(rows_, model)])
    s.add(f"VAE mass in [-m/2, m/2] above max(5 x the true mass, 1%) = {max(5 * true_mass, 0.01):.3g} ({BANDS})",
          lambda r: less(Stat.exact(max(5 * true_mass, 0.01)), mass_of(r, "vae"), "threshold", "VAE"), by["vae"])
    s.add(f"GAN mass in [-m/2, m/2] below half the VAE's ({BANDS})",
          lambda r: less(mass_of(r, "gan"), scaled(mass_of(r, "vae"), 0.5), "GAN", "VAE / 2"), by["gan"] + by["vae"])
    s.add(f"SGM smaller mode's share above 20% ({BANDS})",
          lambda r: less(Stat.exact(0.2), Stat.of([r_.metrics["smaller_mode_share"] for r_ in by_model(r, "sgm")]),
                         "20%", "SGM"), by["sgm"])
    s.add(f"SGM mass in [-m/2, m/2] below the VAE's ({BANDS})",
          lambda r: less(mass_of(r, "sgm"), mass_of(r, "vae"), "SGM", "VAE"), by["sgm"] + by["vae"])
    s.collapsed = collapse_notes(rows)
    return s


# --------------------------------------------------------------------------- Figure 3


def lip_stats(rows, model, m, scale="data"):
    """:class:`Stat` of the compared constant (:func:`lip`) of ``model``'s runs at ``m``."""
    return Stat.of([lip(r.metrics, scale) for r in where(by_model(rows, model), m=m)])


def mass_stats(rows, model, m):
    """:class:`Stat` of the mass in [-m/2, m/2] of ``model``'s runs at ``m``."""
    return Stat.of([r.metrics["mass_between"] for r in where(by_model(rows, model), m=m)])


def with_figure3_bound(rows):
    """The runs with ``fig3_bound`` (Theorem 1 at the exact Lip and the left mass) added to the
    metrics of every GAN and VAE run at m > 0."""
    return [r.with_metrics(fig3_bound=figure3_bound(r.config["m"], r.metrics["lipschitz"], r.metrics["mass_left"]))
            if r.config["m"] > 0 and r.config["model"] != "sgm" else r for r in rows]


FIG3_HEADER = ["m", "Cor. 2 bound", "GAN Lip", "VAE Lip", "SGM score-net Lip (data scale)",
               "SGM score-net Lip (standardized)", "GAN mass", "VAE mass", "SGM mass", "true mass", "GAN MW2^2",
               "VAE MW2^2", "SGM MW2^2"]


def figure3_drawing(rows, m_values):
    """Figure 3's draw: the constants' and masses' tables per model against m, and the bounds."""
    def table(model, value):
        return aggregate(by_model(rows, model), ["m"], value)
    lips = {model: table(model, lip) for model in ("vae", "gan", "sgm")}
    masses = {model: table(model, mass) for model in ("vae", "gan", "sgm")}
    bounds = {model: table(model, lambda mt: mt.get("fig3_bound")) for model in ("vae", "gan")}
    m_grid = np.linspace(0, max(m_values), 101)
    lip_series = {"GAN (exact Lip of G)": (lips["gan"], "gan", "-"), "VAE (exact Lip of the decoder)": (lips["vae"], "vae", "-"),
                  "SGM score net, data scale": (lips["sgm"], "sgm", "-"),
                  "SGM score net, standardized (paper)": (table("sgm", lambda mt: lip(mt, "standardized")), "sgm", "--")}
    return drawing(figures.figure3, lip_series, masses, bounds, m_grid, mixture_mass_between(m_grid),
                   corollary2_log_lip_lower_bound(2 * m_grid))


def figure3_rows(rows, m_values):
    """Figure 3's table: one row per m (:data:`FIG3_HEADER`)."""
    table = []
    for m in m_values:
        cells = {model: where(by_model(rows, model), m=m) for model in ("gan", "vae", "sgm")}
        table.append([fmt(m), f"exp({float(corollary2_log_lip_lower_bound(2 * m)):.4g})"]
                     + [cell(cells[mdl], lip) for mdl in ("gan", "vae", "sgm")]
                     + [cell(cells["sgm"], lambda mt: lip(mt, "standardized"))]
                     + [cell(cells[mdl], mass) for mdl in ("gan", "vae", "sgm")]
                     + [fmt(float(mixture_mass_between(m)))]
                     + [cell(cells[mdl], mw2) for mdl in ("gan", "vae", "sgm")])
    return table


def figure3_checks(s, rows, m_values):
    """Figure 3's checks: Lip grows with m, Theorem 1 bounds every run, and at m >= 5 the VAE
    interpolates, both push-forwards stay below Corollary 2, and the SGM is tamer than both."""
    positive = [m for m in m_values if m > 0]
    if len(positive) >= 2:
        lo, hi = positive[0], positive[-1]
        s.add(f"GAN's Lip at m={hi:g} above its Lip at m={lo:g} ({BANDS})",
              lambda r: less(lip_stats(r, "gan", lo), lip_stats(r, "gan", hi), f"m={lo:g}", f"m={hi:g}"),
              [x for x in by_model(rows, "gan") if x.config["m"] in (lo, hi)])
    bounded = [x for x in rows if "fig3_bound" in x.metrics]
    s.add("Theorem 1 with the exact Lip is a true lower bound on the generated mass in [-m/2, m/2], in every GAN/VAE "
          "run at m > 0, up to 4 binomial standard errors of the sample estimate (decided run by run)",
          lambda r: every_run([x for x in r if "fig3_bound" in x.metrics],
                              lambda c, mt: mt["mass_between"] + sampling_slack(mt["fig3_bound"], c["n_samples"])
                              >= mt["fig3_bound"], "none below its bound"), bounded)
    big = [m for m in m_values if m >= 5]
    if not big:
        return
    s.add(f"VAE mass in [-m/2, m/2] above max(5 x the true mass, 1%) at every m >= 5 ({BANDS})",
          lambda r: all_of([less(Stat.exact(max(5 * float(mixture_mass_between(m)), 0.01)), mass_stats(r, "vae", m),
                                 "threshold", f"VAE at m={m:g}") for m in big]),
          [x for x in by_model(rows, "vae") if x.config["m"] in big])
    s.add(f"GAN and VAE constants below exp(Corollary 2's exponent - 1) at every m >= 5 ({BANDS})",
          lambda r: all_of([less(lip_stats(r, mdl, m), Stat.exact(np.exp(float(corollary2_log_lip_lower_bound(2 * m)) - 1)),
                                 f"{mdl.upper()} at m={m:g}", "bound / e") for mdl in ("gan", "vae") for m in big]),
          [x for x in rows if x.config["model"] != "sgm" and x.config["m"] in big])
    m = big[-1]
    s.add(f"SGM's score-network Lip on the data scale below the GAN's Lip at m={m:g} ({BANDS})",
          lambda r: less(lip_stats(r, "sgm", m), lip_stats(r, "gan", m), "SGM", "GAN"),
          [x for x in where(rows, m=m) if x.config["model"] != "vae"])
    s.add(f"SGM's mass in [-m/2, m/2] below the VAE's at m={m:g} ({BANDS})",
          lambda r: less(mass_stats(r, "sgm", m), mass_stats(r, "vae", m), "SGM", "VAE"),
          [x for x in where(rows, m=m) if x.config["model"] != "gan"])


SCORE_SCALE_NOTE = (
    "SGM: the constant is the score network's in its input x, maximised over the ten trained noise "
    "levels; it is not the constant of the whole sampling dynamic (Figure 3b measures that one). The network reads standardized "
    "data z = (x - mu) / sd, so on the data's own scale its constant is the standardized one divided "
    "by sd^2 (the variance used to standardize, about 1 + m^2). The data-scale number is the one "
    "measured in the same coordinate x as the GAN's and VAE's constants, so it is the one to put "
    "beside them (and the one the checks use); the standardized number is the paper's. A score "
    "network's constant and a generator's are still different quantities (a slope of the score in x, "
    "against a slope of x in the latent z), so the comparison is of sizes.")


def section_fig3(rows, m_values):
    """Figure 3: Lip and the mass between the modes against m, beside Corollary 2 and Theorem 1."""
    rows = with_figure3_bound(rows)
    s = Section("fig3", "Figure 3: Lipschitz constant and mass between the modes against m",
                "Push-forward generators must have Lip(g) >= exp(m^2/2) (Corollary 2) to fit the mixture; "
                "the GAN's and VAE's constants grow with m but fall far below that bound, so they put mass "
                "between the modes as Theorem 1 predicts; the SGM keeps a modest score-network constant and "
                "little mass between the modes.",
                image="fig3.png", header=list(FIG3_HEADER), rows=figure3_rows(rows, m_values),
                draw=figure3_drawing(rows, m_values))
    figure3_checks(s, rows, m_values)
    s.notes += [SCORE_SCALE_NOTE, MW2_NOTE] + sampler_statements(rows, m_values)
    s.collapsed = collapse_notes(rows)
    return s


# --------------------------------------------------------------------------- Figures 4 to 6, grid


def figure4_histograms(sn, gp, levels):
    """[(title, samples)]: the first spectral-norm run, then the first seed's run at each penalty level."""
    histos = [("GAN, spectral norm on G", sn[0].samples())] if sn else []
    for L in levels:
        for run in gp:
            if run.config["gp_lipschitz"] == L and run.config["seed"] == gp[0].config["seed"]:
                histos.append((f"GAN, gradient penalty L = {L:g}", run.samples()))
                break
    return histos


def section_fig4(rows, m, histogram_levels=(5.0, 15.0, 25.0)):
    """Figure 4: the GAN under spectral normalization and under gradient penalties towards L."""
    sn = [r for r in rows if r.config["sn_generator"]]
    gp = [r for r in rows if r.config["gp_lipschitz"] is not None]
    lip_vs_L = aggregate(gp, ["gp_lipschitz"], lambda mt: mt["lipschitz"])
    balance_vs_L = aggregate(gp, ["gp_lipschitz"], lambda mt: mt["smaller_mode_share"])
    s = Section("fig4", f"Figure 4: constraining the generator (m = {m:g})",
                "Spectral normalization keeps Lip(G) near 1, so the GAN drops a mode or interpolates massively; "
                "with a gradient penalty towards L, a larger L lets the GAN reach both modes but makes it "
                "more prone to mode collapse: Lipschitz constant trades against mode coverage.",
                image="fig4.png", header=["setting", "exact Lip", "mass between", "MW2^2 to nu", "smaller mode's share"],
                draw=drawing(figures.figure4, figure4_histograms(sn, gp, histogram_levels), m, lip_vs_L, balance_vs_L))
    settings = [("spectral norm on G", sn)] + [(f"gradient penalty L = {L:g}", where(gp, gp_lipschitz=L))
                                               for (L,) in lip_vs_L]
    for label, group in settings:
        if group:
            s.rows.append([label, cell(group, lambda mt: mt["lipschitz"]), cell(group, mass),
                           cell(group, mw2), cell(group, lambda mt: mt["smaller_mode_share"])])
    if sn:
        s.add("with spectral norm on G, Lip(G) <= 1.05 in every run (decided run by run)",
              lambda r: every_run(r, lambda c, mt: mt["lipschitz"] <= 1.05,
                                  f"max Lip {max(x.metrics['lipschitz'] for x in r):.3g}" if r else ""), sn)
        s.add(f"with spectral norm on G, the GAN drops a mode (smaller mode's share < 20%) or puts > 10% of its mass "
              f"between the modes, in every one of >= {MIN_SEEDS} seeds",
              lambda r: every_run(r, lambda c, mt: mt["smaller_mode_share"] < 0.2 or mt["mass_between"] > 0.1,
                                  "each drops a mode or interpolates", MIN_SEEDS), sn)
    if gp:
        s.add(f"measured Lip grows with L ({TREND})",
              lambda r: trend(r, lambda c: c["gp_lipschitz"], lambda mt: mt["lipschitz"], +1), gp)
        s.add(f"the smaller mode's share falls as L grows ({TREND})",
              lambda r: trend(r, lambda c: c["gp_lipschitz"], lambda mt: mt["smaller_mode_share"], -1), gp)
    s.collapsed = collapse_notes(rows)
    return s


def epoch_curve(rows, model):
    """{epoch: Stat of Lip over the 3-layer runs of ``model``} from their ``lipschitz_vs_epoch``."""
    curve = {}
    for run in where(by_model(rows, model), n_layers=3):
        for e, value in run.metrics["lipschitz_vs_epoch"]:
            curve.setdefault(e, []).append(value)
    return {e: Stat.of(v) for e, v in sorted(curve.items())}


def first_last(rows, model):
    """Is Lip at the first checkpoint below Lip at the last (:func:`npgen.study.verdicts.less`)?"""
    curve = list(epoch_curve(rows, model).items())
    if len(curve) < 2:
        return INCONCLUSIVE, "fewer than two checkpoints"
    (e0, first), (e1, last) = curve[0], curve[-1]
    return less(first, last, f"epoch {e0}", f"epoch {e1}")


def section_fig5(rows, m):
    """Figure 5: Lip against the depth, and against the epochs at depth 3."""
    depth = {model: aggregate(by_model(rows, model), ["n_layers"], lambda mt: mt["lipschitz"]) for model in ("vae", "gan")}
    epoch_curves = {model: {(e,): v for e, v in epoch_curve(rows, model).items()} for model in ("vae", "gan")}
    s = Section("fig5", f"Figure 5: depth and training time (m = {m:g})",
                "The VAE decoder's Lipschitz constant grows with its depth; for both models it grows with the "
                "number of epochs (slowly for the VAE); deeper GANs are less stable.",
                image="fig5.png", header=["model", "layers", "exact Lip"],
                draw=drawing(figures.figure5, depth, epoch_curves))
    for model in ("vae", "gan"):
        for (layers,) in depth[model]:
            s.rows.append([model.upper(), str(layers), cell(where(by_model(rows, model), n_layers=layers),
                                                            lambda mt: mt["lipschitz"])])
    vae = by_model(rows, "vae")
    if vae:
        s.add(f"VAE Lip grows with depth ({TREND})",
              lambda r: trend(r, lambda c: c["n_layers"], lambda mt: mt["lipschitz"], +1), vae)
    for model in ("vae", "gan"):
        group = where(by_model(rows, model), n_layers=3)
        if group:
            s.add(f"{model.upper()} Lip at the last epoch above Lip at the first checkpoint ({BANDS})",
                  lambda r, model=model: first_last(r, model), group)
    s.collapsed = collapse_notes(rows)
    return s


def below_twice_plain(rows):
    """Every skip style's Lip below twice the plain network's, per model and m, by bands."""
    outcomes, ratios = [], []
    for model in ("vae", "gan"):
        for m in sorted({r.config["m"] for r in by_model(rows, model)}):
            plain = Stat.of([r.metrics["lipschitz"] for r in where(by_model(rows, model), m=m, skip="plain")])
            for skip in ("resnet", "densenet"):
                other = Stat.of([r.metrics["lipschitz"] for r in where(by_model(rows, model), m=m, skip=skip)])
                if plain and other:
                    ratios.append((other.mean / max(plain.mean, 1e-12), f"{model.upper()} {skip} at m={m:g}"))
                    outcomes.append(less(other, scaled(plain, 2.0), f"{model.upper()} {skip} at m={m:g}",
                                         "twice plain"))
    result, measured = all_of(outcomes)
    if ratios:
        worst = max(ratios)
        measured = f"largest ratio of means to plain {worst[0]:.2f} ({worst[1]}); " + measured
    return result, measured


def section_fig6(rows):
    """Figure 6: Lip against m for plain, resnet and densenet generators."""
    skips = ("plain", "resnet", "densenet")
    tables = {model: {skip: aggregate(where(by_model(rows, model), skip=skip), ["m"], lambda mt: mt["lipschitz"])
                      for skip in skips} for model in ("vae", "gan")}
    s = Section("fig6", "Figure 6: generator architectures",
                "Resnet or densenet skips do not let the VAE decoder or the GAN generator reach larger "
                "Lipschitz constants than the plain feed-forward backbone.",
                image="fig6.png", header=["model", "m", "plain", "resnet", "densenet"],
                draw=drawing(figures.figure6, tables))
    for model, by_skip in tables.items():
        for m in sorted({k[0] for table in by_skip.values() for k in table}):
            s.rows.append([model.upper(), fmt(m)] + [cell(where(by_model(rows, model), m=m, skip=k),
                                                          lambda mt: mt["lipschitz"]) for k in skips])
    if rows:
        s.add(f"every skip style's Lip below twice the plain network's, for each model and m ({BANDS})",
              below_twice_plain, rows)
    s.collapsed = collapse_notes(rows)
    return s


def grid_pairs(rows):
    """(exact, grid, model) per network: a GAN's or VAE's generator, or an SGM's score network at
    each trained noise level (standardized scale)."""
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
    return exact, grid, models


def section_grid(rows):
    """The paper's grid estimate of Lip against the exact constant, network by network."""
    exact, grid, models = grid_pairs(rows)
    s = Section("grid", "Exact constants against the paper's grid estimate",
                "The paper estimated Lip(g) as the largest slope between 1000 grid points in [-10, 10]; that "
                "is a lower estimate, and npgen's exact constant shows how far below it can fall.",
                image="grid.png", header=["model", "networks", "median grid/exact", "min grid/exact"],
                draw=drawing(figures.figure_grid_vs_exact, exact, grid, models))
    exact, grid = np.asarray(exact), np.asarray(grid)
    for model in sorted(set(models)):
        sel = np.asarray(models) == model
        ratio = grid[sel] / np.maximum(exact[sel], 1e-300)
        s.rows.append([model.upper(), str(int(sel.sum())), fmt(float(np.median(ratio))), fmt(float(ratio.min()))])
    if exact.size:
        above = int(np.sum(grid > exact * (1 + 1e-6) + 1e-9))
        s.checks.append(Check("the grid estimate never exceeds the exact constant (to 1e-6 relative; decided network "
                              "by network)", NOT_HELD if above else HELD,
                              f"{above} of {exact.size} networks above" if above else f"{exact.size} networks"))
    s.notes.append("SGM rows: the score network at each trained noise level, on the standardized scale.")
    return s
