"""Which runs collapsed, per group of run folders: the evidence behind the quick preset.

    python bench/robustness.py --group "LABEL" "GLOB" [--group ...] --md OUT.md --json OUT.json

Each GLOB matches run folders (from ``npgen train`` or a study's ``runs/``) holding config.json
and samples.npy. For every run the script recomputes npgen's two collapse rules from the
samples (:func:`npgen.study.run_metrics.collapse`: one spike, or one mode) and tabulates, per group,
model and m, how many seeds collapsed and which. Only the runs of Figures 2-3 count (3 layers,
plain, no spectral norm on G, no gradient penalty); the variants of Figures 4-6 are skipped.
"""

import argparse
import glob
import json
import os

import numpy as np

from npgen.study.run_metrics import collapse, narrowest_interval_width, smaller_mode_share


def run_row(folder):
    """The collapse numbers of one run folder, or None for a run outside Figures 2-3."""
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    if (config.get("n_layers", 3), config.get("skip", "plain"), config.get("sn_generator", False),
            config.get("gp_lipschitz")) != (3, "plain", False, None):
        return None
    x = np.load(os.path.join(folder, "samples.npy")).astype(np.float64).ravel()
    m = config["m"]
    width, share = narrowest_interval_width(x), smaller_mode_share(np.mean(x < -m / 2), np.mean(x > m / 2))
    return {"model": config["model"], "m": m, "seed": config["seed"], "width90": width, "smaller_mode_share": share,
            "mass_between": float(np.mean(np.abs(x) <= m / 2)), "collapse": collapse(m, width, share)}


def table(groups):
    """{label: [row per (model, m)]} with the seeds and the collapsed ones."""
    out = {}
    for label, pattern in groups:
        runs = [run_row(f) for f in sorted(glob.glob(pattern)) if os.path.exists(os.path.join(f, "samples.npy"))]
        runs = [run for run in runs if run is not None]
        cells = {}
        for run in runs:
            cells.setdefault((run["model"], run["m"]), []).append(run)
        out[label] = [{"model": model, "m": m, "seeds": sorted(r["seed"] for r in rows),
                       "collapsed": {str(r["seed"]): r["collapse"] for r in rows if r["collapse"]},
                       "smaller_mode_share": {str(r["seed"]): round(r["smaller_mode_share"], 4) for r in rows},
                       "width90": {str(r["seed"]): round(r["width90"], 3) for r in rows},
                       "mass_between": {str(r["seed"]): round(r["mass_between"], 4) for r in rows}}
                      for (model, m), rows in sorted(cells.items())]
    return out


def markdown(result):
    lines = []
    for label, rows in result.items():
        total = sum(len(r["seeds"]) for r in rows)
        bad = sum(len(r["collapsed"]) for r in rows)
        lines += [f"### {label}", "", f"{bad} of {total} runs collapsed.", "",
                  "| model | m | seeds | collapsed (seed: rule) | smaller mode's share per seed | "
                  "90% interval width per seed | mass in [-m/2, m/2] per seed |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            collapsed = ", ".join(f"{s}: {c}" for s, c in r["collapsed"].items()) or "none"
            lines.append(f"| {r['model'].upper()} | {r['m']:g} | {len(r['seeds'])} | {collapsed} | "
                         + " | ".join(" ".join(f"{v:.3g}" for v in r[k].values())
                                      for k in ("smaller_mode_share", "width90", "mass_between")) + " |")
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", nargs=2, action="append", metavar=("LABEL", "GLOB"), required=True)
    parser.add_argument("--md", required=True)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    result = table(args.group)
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
    with open(args.md, "w", encoding="utf-8") as handle:
        handle.write(markdown(result))


if __name__ == "__main__":
    main()
