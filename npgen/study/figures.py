"""Figures drawn from numbers on disk (headless: the Agg backend, PNG and PDF)."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..analysis.theory import GaussianMixture1D, isoperimetric_profile  # noqa: E402

#: Colours of the paper's Figure 2: data in blue, VAE orange, GAN green, SGM purple.
MODEL_COLORS = {"data": "tab:blue", "vae": "tab:orange", "gan": "tab:green", "sgm": "tab:purple"}


def draw_histogram(ax, samples, m, model="gan", title=None, bins=200):
    """A Figure 2 panel: the histogram of generated samples over the data density."""
    x = np.asarray(samples).ravel()
    span = max(m + 5.0, float(np.quantile(np.abs(x), 0.999)) + 0.5)
    edges = np.linspace(-span, span, bins + 1)
    ax.hist(x, bins=edges, density=True, color=MODEL_COLORS.get(model, "gray"), alpha=0.75,
            label=f"{model.upper()} samples")
    grid = np.linspace(-span, span, 1000)
    ax.plot(grid, GaussianMixture1D.symmetric(m).pdf(grid), color=MODEL_COLORS["data"], lw=1.5, label="data density")
    ax.axvspan(-m / 2, m / 2, color="gray", alpha=0.08, lw=0)
    ax.set_xlabel("x")
    ax.set_title(title or f"{model.upper()}, m = {m:g}")
    ax.legend(fontsize=7, loc="upper right")


def save_figure(fig, path, pdf=True):
    """Write ``fig`` to ``path`` (PNG) and, with ``pdf``, beside it the same figure as PDF; close it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    stem, _ = os.path.splitext(path)
    fig.savefig(stem + ".png", dpi=130, bbox_inches="tight")
    if pdf:
        fig.savefig(stem + ".pdf", bbox_inches="tight")
    plt.close(fig)


def save_histogram(path, samples, m, title=None, model="gan"):
    """One histogram panel to ``path`` (.png only: every run draws one, and the study's
    figures, which hold them, come as PDF too)."""
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    draw_histogram(ax, samples, m, model=model, title=title)
    save_figure(fig, path, pdf=False)


# --------------------------------------------------------------------------- study figures
# Each function takes tables {(x,): Stat} (npgen.study.plans.aggregate) of finished runs.

#: What a shaded band spans, said in each panel that draws one.
BAND_CAPTION = "line: mean over seeds; shaded: min to max over seeds"


def _band(ax, table, label, color, marker="o", linestyle="-"):
    """Plot the mean of {(x,): Stat} as a line, shaded from the smallest to the largest run.

    The range over seeds, not mean +- std: on a log axis mean - std < 0 would draw the band
    down to the axis' floor, a spread no run has; every run lies inside [low, high]."""
    if not table:
        return
    xs = np.array([key[-1] for key in table])
    mean = np.array([v.mean for v in table.values()])
    low = np.array([v.low for v in table.values()])
    high = np.array([v.high for v in table.values()])
    ax.plot(xs, mean, marker=marker, ms=3, color=color, ls=linestyle, label=label)
    ax.fill_between(xs, low, high, color=color, alpha=0.2, lw=0)


def _caption(ax, text=BAND_CAPTION):
    """Write what the bands span in small type under the panel's axis label."""
    ax.annotate(text, xy=(0.5, 1.0), xycoords="axes fraction", xytext=(0, 3), textcoords="offset points",
                ha="center", va="bottom", fontsize=7, color="0.35")


def _mass_panel(ax, masses, bounds, m_grid, true_mass, caption=BAND_CAPTION):
    """Mass in [-m/2, m/2] against m: ``masses`` and ``bounds`` are [(table, label, colour)]
    (bounds dotted, with crosses), with the true mass nu([-m/2, m/2]) over ``m_grid``."""
    for table, label, color in masses:
        _band(ax, table, label, color)
    for table, label, color in bounds:
        _band(ax, table, label, color, marker="x", linestyle=":")
    ax.plot(m_grid, true_mass, color=MODEL_COLORS["data"], lw=2, label=r"$\nu([-m/2, m/2])$")
    ax.set_xlabel("m")
    ax.set_ylabel("mass in [-m/2, m/2]")
    ax.legend(fontsize=7)
    _caption(ax, caption)


def figure1(path):
    """Figure 1: the Gaussian isoperimetric profile t -> phi(Phi^-1(t))."""
    t = np.linspace(0, 1, 1001)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(t, isoperimetric_profile(t), color="k")
    ax.set_xlabel("t")
    ax.set_ylabel(r"$\varphi(\Phi^{-1}(t))$")
    ax.set_title("Gaussian isoperimetric profile")
    save_figure(fig, path)


def figure2(path, samples_by_model, m):
    """Figure 2: histograms of VAE, GAN and SGM samples for one m, over the data density."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
    for ax, model in zip(axes, ("vae", "gan", "sgm")):
        if model in samples_by_model:
            draw_histogram(ax, samples_by_model[model], m, model=model)
        else:
            ax.set_title(f"{model.upper()}: no finished run")
    save_figure(fig, path)


def figure3(path, lip_series, mass_by_model, bound_by_model, m_grid, true_mass, cor2_log_bound):
    """Figure 3: Lip against m with Corollary 2's bound (left); mass in [-m/2, m/2] against m
    with each model's Theorem 1 bound and the true mass (right). ``lip_series`` maps a legend
    label to (table, model, line style)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for label, (table, model, linestyle) in lip_series.items():
        _band(left, table, label, MODEL_COLORS[model], linestyle=linestyle)
    left.plot(m_grid, np.exp(np.minimum(cor2_log_bound, 700)), "k--", label="Corollary 2 lower bound")
    left.set_yscale("log")
    left.set_xlabel("m")
    left.set_ylabel("Lipschitz constant")
    left.legend(fontsize=7)
    _caption(left)
    _mass_panel(right, [(table, model.upper(), MODEL_COLORS[model]) for model, table in mass_by_model.items()],
                [(table, f"Theorem 1 bound ({model.upper()})", MODEL_COLORS[model])
                 for model, table in bound_by_model.items()], m_grid, true_mass)
    save_figure(fig, path)


def figure4(path, histograms, m, lip_vs_L, balance_vs_L):
    """Figure 4: histograms of the SN-generator GAN and of gradient-penalty GANs (top); measured
    Lip and mode balance against the penalty's target L (bottom)."""
    n = len(histograms)
    fig = plt.figure(figsize=(3.4 * max(n, 2), 6.4))
    for i, (title, samples) in enumerate(histograms):
        ax = fig.add_subplot(2, n, i + 1)
        draw_histogram(ax, samples, m, model="gan", title=title)
    ax_lip = fig.add_subplot(2, 2, 3)
    _band(ax_lip, lip_vs_L, "measured exact Lip(G)", MODEL_COLORS["gan"])
    if lip_vs_L:
        Ls = [key[-1] for key in lip_vs_L]
        ax_lip.plot(Ls, Ls, "k:", label="Lip = L")
    ax_lip.set_xlabel("penalty target L")
    ax_lip.set_ylabel("Lipschitz constant")
    ax_lip.legend(fontsize=7)
    _caption(ax_lip)
    ax_bal = fig.add_subplot(2, 2, 4)
    _band(ax_bal, balance_vs_L, "smaller mode's share", MODEL_COLORS["gan"])
    ax_bal.axhline(0.5, color=MODEL_COLORS["data"], ls="--", label="data (balanced)")
    ax_bal.set_xlabel("penalty target L")
    ax_bal.set_ylabel("mass of the smaller mode / mass of both")
    ax_bal.set_ylim(0, 0.55)
    ax_bal.legend(fontsize=7)
    _caption(ax_bal)
    fig.subplots_adjust(hspace=0.45)  # room for the captions under the histograms' x labels
    save_figure(fig, path)


def _lipschitz_panel(ax, tables, colors, xlabel, title=None):
    """Lip against ``xlabel`` (mean, shaded from min to max over seeds), one per entry of
    ``tables``, on a log axis."""
    for label, table in tables.items():
        _band(ax, table, label, colors[label])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Lipschitz constant")
    ax.set_yscale("log")
    if title:
        ax.set_title(title, pad=14)
    ax.legend(fontsize=7)
    _caption(ax)


def figure5(path, lip_vs_depth, lip_vs_epoch):
    """Figure 5: Lip against the number of layers (left) and against epochs (right)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"wspace": 0.3})
    colors = {model.upper(): MODEL_COLORS[model] for model in MODEL_COLORS}
    _lipschitz_panel(left, {m.upper(): t for m, t in lip_vs_depth.items()}, colors, "number of layers")
    _lipschitz_panel(right, {m.upper(): t for m, t in lip_vs_epoch.items()}, colors, "epoch")
    save_figure(fig, path)


def figure6(path, lip_by_model_and_skip):
    """Figure 6: Lip against m for plain, resnet and densenet generators (VAE left, GAN right)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"wspace": 0.3})
    colors = {"plain": "tab:gray", "resnet": "tab:red", "densenet": "tab:cyan"}
    for ax, model in zip(axes, ("vae", "gan")):
        _lipschitz_panel(ax, lip_by_model_and_skip.get(model, {}), colors, "m", title=model.upper())
    save_figure(fig, path)


def figure_grid_vs_exact(path, exact, grid, models):
    """How far the paper's 1000-point grid estimate falls below the exact constant."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    exact, grid = np.asarray(exact), np.asarray(grid)
    for model in sorted(set(models)):
        sel = np.asarray(models) == model
        ax.scatter(exact[sel], grid[sel], s=10, color=MODEL_COLORS[model], label=model.upper())
    lo = max(1e-3, float(min(exact.min(), grid.min()))) if exact.size else 1e-3
    hi = float(max(exact.max(), grid.max())) if exact.size else 1.0
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="grid = exact")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("exact Lipschitz constant (npgen)")
    ax.set_ylabel("grid estimate (paper: 1000 points in [-10, 10])")
    ax.legend(fontsize=7)
    save_figure(fig, path)


#: Colours of the samples a sampler trace ends with: in the left mode, between, in the right one.
END_COLORS = {"left": "tab:blue", "between": "tab:red", "right": "tab:green"}


def figure3b(path, constant_series, trace, m):
    """Figure 3b: the SGM's three constants against m with the GAN's and VAE's beside them
    (left; ``constant_series`` maps a legend label to (table, colour, line style, marker)),
    and one SGM run's |grad g| on the data scale against the step index, for traced samples
    coloured by where they end (right; ``trace`` holds the arrays of its sampler_trace.npz,
    or is None)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"wspace": 0.3})
    for label, (table, color, linestyle, marker) in constant_series.items():
        _band(left, table, label, color, marker=marker, linestyle=linestyle)
    left.set_yscale("log")
    left.set_xlabel("m")
    left.set_ylabel("Lipschitz constant (data units)")
    left.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.16))  # below: five long labels
    _caption(left)
    if trace is None:
        right.set_title("no SGM run with a sampler trace")
    else:
        norm = trace["data_std"] * np.sqrt(trace["grad_sq_by_step"].astype(np.float64))
        steps = np.arange(norm.shape[0])
        for name, color in END_COLORS.items():
            chosen = np.flatnonzero(trace["classes"] == name)
            for k, column in enumerate(chosen):
                right.plot(steps, norm[:, column], color=color, lw=0.8, alpha=0.7,
                           label=f"ends {name} ({chosen.size})" if k == 0 else None)
        for boundary in range(0, norm.shape[0], int(trace["steps_per_level"])):
            right.axvline(boundary, color="gray", lw=0.4, ls=":")
        right.set_yscale("log")
        right.set_xlabel("Langevin step (dotted: a new noise level)")
        right.set_ylabel(r"$|\nabla x_t|$ over $(x_0, z_1..z_t)$ (data units)")
        right.set_title(f"SGM sampler at m = {m:g}: where the expansion happens", fontsize=9)
        right.legend(fontsize=7)
    save_figure(fig, path)


#: Colours of the two latents in the Cauchy-latent figure.
LATENT_COLORS = {"gaussian": "tab:green", "cauchy": "tab:red"}


def figure_cauchy(path, samples_by_latent, m, mass_by_latent, bound_by_latent, m_grid, true_mass):
    """The Cauchy-latent study: GAN histograms at one m under each latent, side by side, and
    the mass in [-m/2, m/2] against m with each latent's bound (mean, shaded from min to max
    over seeds) on a log axis, where a run with no mass between the modes sits below the axis."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for ax, latent in zip(axes[:2], ("gaussian", "cauchy")):
        if latent in samples_by_latent:
            draw_histogram(ax, samples_by_latent[latent], m, model="gan", title=f"GAN, {latent} latent, m = {m:g}")
        else:
            ax.set_title(f"{latent} latent: no finished run")
    _mass_panel(axes[2], [(table, f"GAN, {latent} latent", LATENT_COLORS[latent])
                          for latent, table in mass_by_latent.items()],
                [(table, f"bound, {latent} latent", LATENT_COLORS[latent]) for latent, table in bound_by_latent.items()],
                m_grid, true_mass, BAND_CAPTION + "\n(a run with mass 0 takes its band down to the axis' floor)")
    axes[2].set_yscale("log")
    axes[2].set_ylim(1e-7, 1.5)  # a run with no sample between the modes has mass 0: below the axis
    save_figure(fig, path)


def figure_particles(path, samples_by_count, m, kinetic_by_count):
    """The generative particles: histograms at one m for each particle count N, and the kinetic
    energy against the step for every run (``kinetic_by_count``: N -> [(m, [[step, energy]])])."""
    counts = sorted(set(samples_by_count) | set(kinetic_by_count))
    fig, axes = plt.subplots(1, len(counts) + 1, figsize=(4.6 * (len(counts) + 1), 3.6), squeeze=False)
    axes = axes[0]
    for ax, n in zip(axes, counts):
        if n in samples_by_count:
            draw_histogram(ax, samples_by_count[n], m, model="particles", title=f"particles, N = {n}, m = {m:g}",
                           bins=int(np.clip(len(samples_by_count[n]) // 10, 20, 200)))
        else:
            ax.set_title(f"N = {n}: no finished run at m = {m:g}")
    ax = axes[-1]
    styles = ["-", "--", ":", "-."]
    for i, n in enumerate(counts):
        for m_run, curve in kinetic_by_count.get(n, []):
            steps, energy = np.array(curve, float).T if curve else (np.zeros(0), np.zeros(0))
            ax.plot(steps, np.maximum(energy, 1e-12), ls=styles[i % len(styles)], label=f"N = {n}, m = {m_run:g}")
    ax.set_yscale("log")
    ax.set_xlabel("particle step")
    ax.set_ylabel(r"kinetic energy mean $|\nabla\phi|^2$")
    ax.legend(fontsize=6, ncol=2)
    save_figure(fig, path)


# --------------------------------------------------------------------------- Figure 7 (784-d)

#: Figure 7's bin colours by the classifier's digit: blue for 3, green for 7, red for any other.
DIGIT_COLORS = {"3": "tab:blue", "7": "tab:green", "other": "tab:red"}


def _panel_grid(cells, row_titles, width, height):
    """(figure, [(axis, value)]) for ``cells[row][column]``: one row per data set, one column per
    source; an axis without a value is switched off, every other one titled 'row: SOURCE'."""
    rows = list(cells)
    columns = max((list(cells[r]) for r in rows), key=len)
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(width * len(columns), height * len(rows)),
                             squeeze=False)
    filled = []
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            value = cells[row].get(column)
            if value is None:
                axes[i, j].set_axis_off()
                continue
            axes[i, j].set_title(f"{row_titles[row]}: {column.upper() if column != 'data' else 'data'}",
                                 fontsize=9)
            filled.append((axes[i, j], value))
    return fig, filled


def figure7(path, panels, row_titles):
    """Figure 7: one row per data set, one column per source (data, VAE, GAN, SGM); each panel
    the histogram of the projections, every bin split into the samples the classifier calls
    3, 7 or another digit (stacked, :data:`DIGIT_COLORS`), the modes at -m and m and the band
    |t| <= m / 2 shaded. ``panels[row][column]`` holds a run's "edges", "counts" and "m", and
    may hold "outlines": the total counts of other runs on the same edges, drawn as black steps."""
    fig, filled = _panel_grid(panels, row_titles, 3.4, 2.8)
    outlines_named = False
    for k, (ax, panel) in enumerate(filled):
        edges = np.asarray(panel["edges"])
        width = np.diff(edges)
        bottom = np.zeros(width.size)
        n = max(1, sum(sum(c) for c in panel["counts"].values()))
        for name, color in DIGIT_COLORS.items():
            top = bottom + np.asarray(panel["counts"][name]) / (n * width)
            # one filled step outline per digit, not a patch per bin: 400 bins x 3 digits x
            # 8 panels of bars made this figure's PDF the slowest file of a reproduction
            ax.stairs(top, edges, baseline=bottom, fill=True, color=color, lw=0, label=f"classified {name}")
            bottom = top
        for k_outline, counts in enumerate(panel.get("outlines", [])):
            total = np.asarray(counts, np.float64)
            ax.stairs(total / (max(1.0, total.sum()) * width), edges, color="k", lw=0.6,
                      label="other seeds" if k_outline == 0 else None)
        m = panel["m"]
        ax.axvspan(-m / 2, m / 2, color="gray", alpha=0.12, lw=0)
        for mode in (-m, m):
            ax.axvline(mode, color="k", lw=0.6, ls=":")
        ax.set_xlabel("projection t")
        if k == 0 or (panel.get("outlines") and not outlines_named):
            ax.legend(fontsize=6, loc="upper center")
            outlines_named = outlines_named or bool(panel.get("outlines"))
    fig.tight_layout()
    save_figure(fig, path)


def image_grid(path, images, row_titles, side=8):
    """``images[row][column]``: up to side^2 images of 784 pixels each, drawn as a side x side
    grid (pixels clipped to [0, 1]), one grid per data set and source."""
    fig, filled = _panel_grid(images, row_titles, 2.6, 2.8)
    for ax, block in filled:
        ax.set_axis_off()
        block = np.clip(np.asarray(block, np.float64)[:side * side], 0, 1)
        tiles = np.ones((side * side, 28, 28))
        tiles[:len(block)] = block.reshape(-1, 28, 28)
        grid = tiles.reshape(side, side, 28, 28).transpose(0, 2, 1, 3).reshape(side * 28, side * 28)
        ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    fig.tight_layout()
    save_figure(fig, path)
