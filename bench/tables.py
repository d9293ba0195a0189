"""The tables of measured numbers in README.md, bench/README.md and docs/, built from bench/results.

    python bench/tables.py            rewrite every table between its markers, in place
    python bench/tables.py --check    change nothing; print a diff and exit 1 where a page differs

A page holds a generated table between two markers:

    <!-- table:fig3 -->
    ...what this script writes...
    <!-- /table -->

Each name is a function below that reads files under ``bench/results`` and returns the table with
a line naming its source. A marker with an unknown name is an error, and so is a table that no
page shows. Everything else on a page is left as written. The script needs only the standard
library, so it runs without npgen installed.
"""

import argparse
import difflib
import json
import math
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
_BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.DOTALL)
_STAT = re.compile(r"^\s*(?P<mean>[-+0-9.eE]+)\s*±\s*(?P<std>[-+0-9.eE]+)\s*\(n=(?P<n>\d+)\)\s*$")


def pages():
    """The pages that may hold generated tables, relative to the repository root."""
    found = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [path for path in found if path.is_file()]


# ---------------------------------------------------------------- number formatting

def sig(value, digits=3):
    """``value`` to ``digits`` significant figures, without trailing zeros, e.g. 0.0307, 193, 2.9e-07."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < -3 or magnitude >= 6:
        return f"{value:.{digits - 1}e}".replace("e-0", "e-").replace("e+0", "e")
    decimals = max(digits - 1 - magnitude, 0)
    text = f"{round(value, decimals):.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def mean_std(mean, std):
    """``mean ± std``, the std rounded as the Particle Data Group does and the mean to its last digit.

    The std keeps 2 significant figures when its first two are 10 to 35, else 1: 0.32, 6.6, 8, 0.004.
    """
    if not std:
        return sig(mean)
    magnitude = math.floor(math.log10(abs(std)))
    digits = 2 if int(abs(std) / 10 ** (magnitude - 1)) < 36 else 1
    if magnitude < -3 or (mean != 0 and abs(mean) >= 1e5):
        return f"{sig(mean, 2)} ± {sig(std, digits)}"
    decimals = digits - 1 - magnitude
    if decimals <= 0:
        step = 10 ** (-decimals)
        return f"{round(mean / step) * step:.0f} ± {round(std / step) * step:.0f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def parse_stat(text):
    """(mean, std, n) from a report cell ``4.751 ± 0.3229 (n=5)``; (x, 0, None) for a plain number."""
    match = _STAT.match(text)
    if match:
        return float(match["mean"]), float(match["std"]), int(match["n"])
    try:
        return float(text), 0.0, None
    except ValueError:
        return None


def cell(text, show_n=False):
    """A report cell, reformatted: ``4.75 ± 0.32``; a collapsed run's cell gives both means."""
    text = text.strip()
    if text in ("-", ""):
        return "-"
    if "; without collapsed:" in text:
        every, kept = text.split("; without collapsed:")
        kept = kept.strip()
        if kept == "-":
            return f"{cell(every)}, collapsed" if every.strip().endswith("(n=1)") else \
                f"{cell(every, show_n=True)}, every run collapsed"
        return f"{cell(every, show_n=True)}; {cell(kept, show_n=True)} without collapsed runs"
    if "exp(" in text or " of " in text:
        return text
    parsed = parse_stat(text)
    if parsed is None:
        return text
    mean, std, n = parsed
    if n == 1:
        return sig(mean)
    shown = mean_std(mean, std)
    return f"{shown} (n={n})" if show_n and n is not None else shown


def seeds(cells):
    """How many runs the report cells average: "mean ± std over 5 seeds", or over "3-5 seeds"."""
    counts = sorted({parsed[2] for parsed in map(parse_stat, cells) if parsed and parsed[2]})
    if not counts:
        return "one run each"
    if counts == [1]:
        return "one seed each"
    span = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"mean ± std over {span} seeds"


def _first_stat(text):
    return text.split(";")[0]


def table(header, rows):
    """A Markdown pipe table; a ``|`` inside a cell (``|grad g|``) is escaped."""
    def line(cells):
        return "| " + " | ".join(str(value).replace("|", "\\|") for value in cells) + " |"
    return "\n".join([line(header), "|" + "---|" * len(header)] + [line(row) for row in rows])


def source(*paths, note=""):
    """The line under a table that names the files it was built from."""
    names = ", ".join(f"`bench/results/{path}`" for path in paths)
    return f"\n\n*Built by `bench/tables.py` from {names}.{(' ' + note) if note else ''}*"


def load(path):
    return json.loads((RESULTS / path).read_text())


def section(name):
    """One section of the quick preset's ``summary.json``: its header and rows."""
    return load("quick/summary.json")[name]


def pct(value):
    return f"{100 * value:.1f}%"


# ---------------------------------------------------------------- Section 4.1, quick preset

def fig3_summary():
    """README's table: Lipschitz constants and mass between the modes against m."""
    part = section("fig3")
    index = {name: i for i, name in enumerate(part["header"])}
    columns = [("m", "m"), ("Cor. 2 bound on Lip", "Cor. 2 bound"), ("GAN exact Lip", "GAN Lip"),
               ("VAE exact Lip", "VAE Lip"),
               ("SGM score-net Lip, data scale", "SGM score-net Lip (data scale)"),
               ("SGM score-net Lip, standardized", "SGM score-net Lip (standardized)"),
               ("GAN mass in [-m/2, m/2]", "GAN mass"), ("VAE mass", "VAE mass"),
               ("SGM mass", "SGM mass"), ("true mass", "true mass")]
    rows = [[cell(row[index[key]]) for _, key in columns] for row in part["rows"]]
    spread = seeds(row[index["GAN Lip"]] for row in part["rows"])
    return table([title for title, _ in columns], rows) + source(
        "quick/summary.json", note=f"{spread.capitalize()}; constants of z -> x in data units.")


def _summary_table(name, rename=None, drop=(), note=""):
    """A section's table as the report has it, its cells rounded.

    ``{seeds}`` in ``note`` becomes how many runs a cell averages, ``{m}`` the section title's m.
    """
    part = section(name)
    rename = rename or {}
    keep = [i for i, title in enumerate(part["header"]) if title not in drop]
    header = [rename.get(part["header"][i], part["header"][i]) for i in keep]
    rows = [[cell(row[i]) for i in keep] for row in part["rows"]]
    spread = seeds(_first_stat(row[i]) for row in part["rows"] for i in keep)
    at = re.search(r"m = [\d.]+", part["title"])
    return table(header, rows) + source("quick/summary.json",
                                        note=note.format(seeds=spread, m=at[0] if at else ""))


def fig3_mw2():
    part = section("fig3")
    index = {name: i for i, name in enumerate(part["header"])}
    keys = ["m", "GAN MW2^2", "VAE MW2^2", "SGM MW2^2"]
    header = ["m", "GAN MW2^2 (data units^2)", "VAE MW2^2 (data units^2)", "SGM MW2^2 (data units^2)"]
    rows = [[cell(row[index[key]]) for key in keys] for row in part["rows"]]
    spread = seeds(row[index[key]] for row in part["rows"] for key in keys[1:])
    return table(header, rows) + source("quick/summary.json", note=f"{spread.capitalize()}.")


def fig2():
    return _summary_table("fig2", rename={"MW2^2 to nu": "MW2^2 to nu (data units^2)"},
                          note="{m}; {seeds}.")


def fig4():
    return _summary_table("fig4", rename={"MW2^2 to nu": "MW2^2 to nu (data units^2)"},
                          note="{m}; {seeds}.")


def fig5():
    return _summary_table("fig5", note="{m}; {seeds}.")


def fig6():
    return _summary_table("fig6", note="Exact Lip of z -> x (data units); {seeds}.")


def grid():
    return _summary_table("grid", rename={"networks": "networks measured"},
                          note="Grid estimate: the largest slope between 1000 points in [-10, 10].")


def checks_quick():
    """Every stated check of the quick preset's report, with its rule, measurement and verdict."""
    summary = load("quick/summary.json")
    rows = []
    for name in ("fig1", "fig2", "fig3", "fig3b", "fig4", "fig5", "fig6", "grid", "cauchy", "particles"):
        for check in summary[name]["checks"]:
            rows.append([name, check["rule"], check["measured"], f"**{check['result']}**"])
    return table(["section", "rule", "measured", "verdict"], rows) + source("quick/summary.json")


def verdicts_quick():
    """One line per section of the quick preset's report: its title and overall verdict."""
    summary = load("quick/summary.json")
    rows = [[summary[name]["title"], summary[name]["verdict"]] for name in sorted(summary)]
    return table(["section", "verdict"], rows) + source("quick/summary.json")


# ---------------------------------------------------------------- beyond the paper

def fig3b():
    return _summary_table("fig3b", drop=("GAN Lip", "VAE Lip", "SGM MW2^2"),
                          note="SGM, {seeds}; |grad g| in data units.")


def cauchy():
    return _summary_table("cauchy", rename={"mass in [-m/2, m/2]": "mass in [-m/2, m/2]"},
                          note="GAN, {seeds}, the same seeds and data for both latents.")


def particles():
    part = section("particles")
    keep = ["m", "GAN mass", "particles N=200 mass", "particles N=50000 mass", "true mass",
            "N=200: MW2^2 (data units^2)", "N=50000: MW2^2 (data units^2)",
            "N=200: exact Lip of phi", "N=50000: exact Lip of phi",
            "N=200: final kinetic energy", "N=50000: final kinetic energy",
            "N=200: train seconds", "N=50000: train seconds"]
    rename = {"N=200: train seconds": "N=200: training (s)", "N=50000: train seconds": "N=50000: training (s)"}
    index = {name: i for i, name in enumerate(part["header"])}
    rows = [[cell(row[index[key]]) for key in keep] for row in part["rows"]]
    particles_runs = seeds(row[index["particles N=200 mass"]] for row in part["rows"])
    gan_runs = seeds(row[index["GAN mass"]] for row in part["rows"])
    return table([rename.get(key, key) for key in keep], rows) + source(
        "quick/summary.json", note=f"KL divergence; particles: {particles_runs}; GAN: Figure 3's runs, {gan_runs}.")


# ---------------------------------------------------------------- presets

def depth_steps():
    times = {}
    for line in (RESULTS / "depth_step_times.txt").read_text().splitlines():
        model, depth, ms, _ = line.split()
        times[(model, int(depth))] = float(ms)
    depths = sorted({depth for _, depth in times})
    rows = []
    for depth in depths:
        row = [depth]
        for model in ("GAN", "VAE"):
            ms = times[(model, depth)]
            row += [f"{sig(ms)} ms", f"{sig(ms * 20_000 / 60_000)} min"]
        rows.append(row)
    return table(["layers", "GAN step", "GAN run (20 000 steps)", "VAE step", "VAE run (20 000 steps)"],
                 rows) + source("depth_step_times.txt", note="One thread; batch 1000.")


def robustness():
    """Collapsed runs of the quick preset's Figures 2-3 under each GAN setting and OpenBLAS kernel set."""
    rows, lr, betas = [], "", ""
    for setting, groups in load("quick_robustness.json").items():
        lr = (re.search(r"lr ([\d.e-]+)", setting) or [None, lr])[1]
        betas = (re.search(r"betas (\([\d., ]+\))", setting) or [None, betas])[1]
        kernels = re.search(r"(Haswell|SkylakeX|Sandybridge)", setting)[1]
        kinds = [kind for group in groups for kind in group["collapsed"].values()]
        runs = sum(len(group["seeds"]) for group in groups)
        models = ", ".join(sorted({group["model"].upper() for group in groups}))
        ms = ", ".join(sig(m) for m in sorted({group["m"] for group in groups}))
        rows.append([lr, betas, kernels, f"{models}; m = {ms}", runs,
                     f"{len(kinds)} ({kinds.count('one mode')} one mode, {kinds.count('one spike')} one spike)"])
    return table(["GAN lr", "GAN betas", "OpenBLAS kernels", "runs of", "runs", "collapsed"],
                 rows) + source("quick_robustness.json", note="The quick preset's other settings.")


# ---------------------------------------------------------------- Figure 7

_FIG7_RUN = "fig7_quick_3seeds"
_FIG7_DATASETS = [("mixture", "two noisy digits"), ("subset", "3s and 7s (embedding)")]
_FIG7_SOURCES = [("data", "data"), ("vae", "VAE"), ("gan", "GAN"), ("sgm", "SGM")]


def _over_seeds(runs, value):
    """``mean ± std`` of ``value(run)`` over ``runs`` (population std, as the report takes it)."""
    values = [value(run) for run in runs]
    if len(values) == 1:
        return sig(values[0])
    return mean_std(statistics.fmean(values), statistics.pstdev(values))


def _failures(runs):
    """'none', or 'collapsed: seed 0; diverged: seed 2': every failed run named by its seed."""
    parts = []
    for kind in ("collapsed", "diverged"):
        failed = [str(run["seed"]) for run in runs if run["failure"] == kind]
        if failed:
            parts.append(f"{kind}: seed{'s' if len(failed) > 1 else ''} {', '.join(failed)}")
    return "; ".join(parts) or "none"


def fig7():
    """Figure 7 over the training seeds: per data set and source, mean ± std of each run's numbers."""
    data = load(f"{_FIG7_RUN}/fig7.json")
    rows = []
    for dataset, title in _FIG7_DATASETS:
        for key, label in _FIG7_SOURCES:
            runs = data[dataset][key]
            seeds = ", ".join(str(run["seed"]) for run in runs)
            failed = "-" if key == "data" else _failures(runs)
            mass = _over_seeds(runs, lambda run: run["mass_between"])
            if key == "data" and "exact_mass_between" in runs[0]:
                mass += f" (exact: {sig(runs[0]['exact_mass_between'], 2)})"
            if "lipschitz" in runs[0]:
                theorem1 = (f"{_over_seeds(runs, lambda run: run['lipschitz']['theorem1_with_upper'])} / "
                            f"{_over_seeds(runs, lambda run: run.get('pixel_line', run)['mass_between'])}")
            else:
                theorem1 = "-"
            rows.append([title, label, f"{len(runs)} ({seeds})", failed, mass,
                         _over_seeds(runs, lambda run: run["share_3"]) + " / "
                         + _over_seeds(runs, lambda run: run["share_7"]),
                         _over_seeds(runs, lambda run: run["share_other"]),
                         _over_seeds(runs, lambda run: run["smaller_mode_share"]),
                         _over_seeds(runs, lambda run: run["outside_edges"] / run["n_samples"]), theorem1])
    header = ["data set", "source", "runs (seeds)", "collapsed or diverged", "mass between the modes",
              "classified 3 / 7", "classified neither", "smaller mode's share s", "share outside the range",
              "Thm 1 bound, certified Lip / mass on its line"]
    return table(header, rows) + source(
        f"{_FIG7_RUN}/fig7.json",
        note="Mean ± std over the runs (population std), failed runs included; masses and shares are "
             "fractions of the samples. A run has collapsed when s < 5% and diverged when more than 1% "
             "of its samples lie outside the range.")


def _fig7_timing():
    """Wall time, CPU time, peak memory and load of the run, from its ``timing.txt``."""
    timing = (RESULTS / _FIG7_RUN / "timing.txt").read_text()
    wall = re.search(r"Elapsed \(wall clock\) time(?: \(h:mm:ss or m:ss\))?: (\S+)", timing)[1]
    user = float(re.search(r"User time \(seconds\): (\S+)", timing)[1])
    system = float(re.search(r"System time \(seconds\): (\S+)", timing)[1])
    memory = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", timing)[1])
    load_line = re.search(r"mean ([\d.]+),(?: min [\d.]+,)? max ([\d.]+)", timing)
    minutes, seconds = wall.split(":")
    return [
        ["wall time, `npgen reproduce --only fig7`, cold numba cache",
         f"{int(minutes)} min {float(seconds):02.0f} s"],
        ["CPU time, user / system", f"{sig(user / 60)} min / {sig(system / 60, 2)} min"],
        ["peak memory", f"{sig(memory / 1024)} MB"],
        ["1-min load average, mean / max (2 cores)", f"{load_line[1]} / {load_line[2]}"],
    ]


def fig7_settings():
    data = load(f"{_FIG7_RUN}/fig7.json")
    classifier, embedding = data["classifier"], data["embedding"]
    rows = _fig7_timing()
    for dataset, title in _FIG7_DATASETS:
        times = [f"{label} {_over_seeds(data[dataset][key], lambda run: run['train_seconds'])}"
                 for key, label in _FIG7_SOURCES if key != "data"]
        rows.append([f"training seconds per run, {title}", ", ".join(times)])
    rows += [
        ["classifier, held-out accuracy",
         f"{pct(classifier['held_out_accuracy'])} of {classifier['n_held_out']} images"],
        ["embedding, training pairs", f"{embedding['train_pairs']:,}".replace(",", " ")],
        ["embedding, held-out relative error",
         f"{pct(embedding['held_out_relative_error'])} on {embedding['held_out_pairs']} pairs"],
        ["embedding, held-out correlation", sig(embedding["held_out_correlation"])],
    ]
    return table(["quantity", "value"], rows) + source(
        f"{_FIG7_RUN}/fig7.json", f"{_FIG7_RUN}/timing.txt",
        note="Training seconds: the training loop's wall time, mean ± std over the seeds.")


def mnist_embedding():
    data = load("mnist_helpers.json")["embedding"]
    rows = []
    for run in data["runs"]:
        held, digits = run["held_out"], run["held_out_3s_7s"]
        rows.append([f"{run['n_pairs']:,}".replace(",", " "), run["epochs"], f"{sig(run['train']['cpu_s'], 2)} s",
                     f"{pct(held['relative_error'])}, {sig(held['pearson'])}",
                     f"{pct(digits['relative_error'])}, {sig(digits['pearson'])}"])
    costs = data["ot_costs"]
    note = (f"OT costs: {sig(costs['cpu_ms_per_pair'], 2)} ms of CPU per pair "
            f"({costs['n_pairs']} pairs from a cold cache: {sig(costs['cpu_s'], 2)} s CPU, "
            f"{sig(costs['wall_s'], 3)} s wall).")
    return table(["training pairs", "epochs", "training CPU", "held-out: relative error, Pearson",
                  "held-out 3s and 7s"], rows) + source("mnist_helpers.json", note=note)


def mnist_classifier():
    runs = load("mnist_helpers.json")["classifier"]
    rows = [[run["seed"], run["n_train"], run["n_held_out"], pct(run["held_out_accuracy"]),
             f"{sig(run['cpu_s'], 2)} s", f"{sig(run['wall_s'], 2)} s"] for run in runs]
    return table(["seed", "training images", "held out", "held-out accuracy", "CPU", "wall"],
                 rows) + source("mnist_helpers.json")


# ---------------------------------------------------------------- cluster

def cluster_projection():
    projection = load("cluster.json")["paper_projection"]
    cores = [c for c in sorted(projection["wall_h"], key=int) if int(c) >= 8]
    orders = [("figure order", "wall_h_figure_order"), ("the sweep's order (run_cost)", "wall_h"),
              ("measured longest first", "wall_h_longest_first")]
    rows = [[f"wall time, {label}"] + [f"{sig(projection[key][c])} h" for c in cores]
            for label, key in orders]
    note = (f"{projection['runs']} runs, {sig(projection['core_hours'])} core-hours, longest run "
            f"{sig(projection['longest_run_h'])} h, {sig(1000 * projection['overhead_per_run_s'], 2)} ms "
            "of scheduler overhead per run.")
    return table(["cores"] + cores, rows) + source("cluster.json", note=note)


def _load(values):
    return sig(values[0])


def cluster_scaling():
    data = load("cluster.json")
    rows = []
    for sweep in data["sweeps"]:
        workers = "worker" if sweep["workers"] == 1 else "workers"
        rows.append([f"{sweep['engine']}, {sweep['workers']} {workers}", f"{sig(sweep['wall_s'])} s",
                     f"{sig(sweep['runs_own_s'])} s", f"{sig(sweep['lost_per_run_s'], 2)} s",
                     f"{_load(sweep['load_before'])} -> {_load(sweep['load_after'])}"])
    summary = data["summary"]
    note = (f"{data['short_runs']} GAN runs of 200 steps per sweep. Fastest sweeps: dask with 2 workers "
            f"took {sig(summary['dask_vs_pool'])} of the pool's wall time; 2 dask workers against 1: "
            f"{sig(summary['speedup_2_vs_1'])}x.")
    return table(["engine", "wall", "runs' own time (sum)", "lost per run", "1-min load before -> after"],
                 rows) + source("cluster.json", note=note)


def cluster_overhead():
    data = load("cluster.json")
    rows = []
    for sweep in data["noop"]:
        rows.append([sweep["engine"], sweep["workers"], sweep["runs"], f"{sig(sweep['wall_s'])} s",
                     f"{sig(1000 * sweep['wall_s'] / sweep['runs'], 2)} ms",
                     f"{sig(sweep['cluster_start_s'], 2)} s" if "cluster_start_s" in sweep else "(in wall)"])
    return table(["engine", "workers", "runs that do nothing", "wall", "wall per run", "cluster start"],
                 rows) + source("cluster.json")


# ---------------------------------------------------------------- speed

def _ms(ms):
    return f"{sig(ms / 1000)} s" if ms >= 1000 else f"{sig(ms)} ms"


def _bench_rows():
    data = load("bench.json")
    by = {}
    for row in data["rows"]:
        by.setdefault(row["workload"], {"title": row["title"]})[row["backend"]] = row
    return data, by


def bench_cpu():
    data, by = _bench_rows()
    rows = []
    for workload, entry in by.items():
        if workload.startswith("lip_"):
            continue
        cpu, numpy, torch = entry.get("cpu"), entry.get("numpy"), entry.get("torch")
        peak = f"{cpu['pct_peak']:.1f}%" if cpu.get("pct_peak") is not None else "-"
        speedup = f"{sig(cpu['speedup_vs_torch'])}x" if cpu.get("speedup_vs_torch") else "-"
        rows.append([entry["title"], _ms(cpu["ms"]), peak, _ms(numpy["ms"]) if numpy else "-",
                     _ms(torch["ms"]) if torch else "-", speedup])
    machine = data["machine"]
    note = (f"One thread; sgemm peak {sig(data['sgemm_peak_gflops'], 4)} GFLOP/s (float32 numpy matmul "
            f"2048^3); numba {machine['numba']}, numpy {machine['numpy']}, torch {machine['torch']}; "
            f"1-min load average {sig(machine['load_average_at_start'][0], 2)} at the start, "
            f"{sig(machine['load_average_at_end'][0], 2)} at the end (2 cores).")
    return table(["workload", "numba (`cpu`)", "% of sgemm peak", "numpy reference", "torch",
                  "numba vs torch"], rows) + source("bench.json", note=note)


def bench_lipschitz():
    _, by = _bench_rows()
    rows = []
    for workload, entry in by.items():
        if workload.startswith("lip_"):
            exact, estimate = entry["exact"], entry["grid"]
            rows.append([entry["title"], _ms(exact["ms"]), sig(exact["value"], 4), _ms(estimate["ms"]),
                         sig(estimate["value"], 4)])
    return table(["network", "exact: time", "exact: Lip", "paper's grid: time", "paper's grid: Lip"],
                 rows) + source("bench.json")


def profile():
    rows = []
    step = None
    for line in (RESULTS / "profile.txt").read_text().splitlines():
        head = re.match(r"(\w+): ([\d.]+) ms per step", line)
        if head:
            step = f"{head[1]} ({sig(float(head[2]))} ms)"
            continue
        part = re.match(r"\s+(.+?)\s+([\d.]+) ms\s+([\d.]+)%", line)
        if part:
            rows.append([step, part[1], f"{part[2]} ms", f"{part[3]}%"])
    return table(["step", "where", "time per step", "share"], rows) + source("profile.txt")


TABLES = {
    "fig3": fig3_summary, "fig3-mw2": fig3_mw2, "fig2": fig2, "fig4": fig4, "fig5": fig5, "fig6": fig6,
    "grid": grid, "checks-quick": checks_quick, "verdicts-quick": verdicts_quick,
    "fig3b": fig3b, "cauchy": cauchy, "particles": particles,
    "depth-steps": depth_steps, "robustness": robustness,
    "fig7": fig7, "fig7-settings": fig7_settings, "mnist-embedding": mnist_embedding,
    "mnist-classifier": mnist_classifier,
    "cluster-projection": cluster_projection, "cluster-scaling": cluster_scaling,
    "cluster-overhead": cluster_overhead,
    "bench-cpu": bench_cpu, "bench-lipschitz": bench_lipschitz, "profile": profile,
}


# ---------------------------------------------------------------- rewriting pages

def render(text, where="page"):
    """``text`` with every marked table regenerated; ValueError on an unknown table name."""
    def replace(match):
        name = match["name"]
        if name not in TABLES:
            raise ValueError(f"{where}: unknown table {name!r}; known: {', '.join(sorted(TABLES))}")
        return f"{match[1]}{TABLES[name]()}\n{match[4]}"
    return _BLOCK.sub(replace, text)


def names_in(text):
    return [match["name"] for match in _BLOCK.finditer(text)]


def run(check, paths=None):
    """Rewrite (or with ``check``, compare) every page; the differences as unified-diff text."""
    every_page = paths is None
    paths = pages() if every_page else paths
    differences, shown = [], set()
    for path in paths:
        text = path.read_text()
        shown.update(names_in(text))
        name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        new = render(text, where=name)
        if new != text:
            differences.append("".join(difflib.unified_diff(
                text.splitlines(True), new.splitlines(True), name, f"{name} (generated)")))
            if not check:
                path.write_text(new)
    unused = sorted(set(TABLES) - shown)
    if every_page and unused:
        raise ValueError(f"tables that no page shows: {', '.join(unused)}")
    return differences


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; print a diff and exit 1 where a page differs")
    args = parser.parse_args(argv)
    differences = run(args.check)
    if args.check and differences:
        sys.stdout.write("\n".join(differences))
        print(f"\n{len(differences)} page(s) differ from bench/results; run python bench/tables.py")
        return 1
    print(f"{len(differences)} page(s) {'differ' if args.check else 'rewritten'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
