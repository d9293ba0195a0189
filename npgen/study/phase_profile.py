"""Where a reproduction's time went: the phases of its runs (:mod:`npgen.study.phase_times`)
summed per figure, per model, or per figure and model.

:func:`phase_table` sums ``metrics["phase_seconds"]`` over runs, and :func:`format_profile`
prints them for the runs of a reproduction (:func:`reproduction_rows`), as
``bench/profile_reproduce.py`` does.
"""

import json
import os

from .phase_times import INSIDE
from .plans import FIGURES, plan
from .reproduce import study_preset
from .run_dirs import CONFIG_FILE, MARKER_FILE, METRICS_FILE


def phase_table(rows, group, clock="cpu"):
    """{group(config): {phase: seconds}} summed over ``rows`` of (config, metrics), with
    ``"runs"`` (how many) and ``"total"`` (the sum of the outermost phases) per group; runs
    without ``phase_seconds`` (written before phases were timed) are counted under ``"untimed"``."""
    table = {}
    for config, metrics in rows:
        entry = table.setdefault(group(config), {"runs": 0, "untimed": 0, "total": 0.0})
        entry["runs"] += 1
        phases = metrics.get("phase_seconds")
        if not phases:
            entry["untimed"] += 1
            continue
        for name, seconds in phases.items():
            entry[name] = entry.get(name, 0.0) + seconds[clock]
            if name not in INSIDE:
                entry["total"] += seconds[clock]
    return table


def _without_code(config):
    """A run's configuration without the fingerprint of the code that ran it."""
    return json.dumps({k: v for k, v in config.items() if k != "code"}, sort_keys=True)


def _finished_runs(runs_dir):
    """{configuration without code: (config, metrics)} of the finished runs in ``runs_dir``."""
    found = {}
    for entry in sorted(os.scandir(runs_dir), key=lambda e: e.name) if os.path.isdir(runs_dir) else ():
        files = [os.path.join(entry.path, name) for name in (CONFIG_FILE, METRICS_FILE, MARKER_FILE)]
        if entry.is_dir() and all(os.path.isfile(path) for path in files):
            with open(files[0], encoding="utf-8") as config, open(files[1], encoding="utf-8") as metrics:
                run = json.load(config), json.load(metrics)
            found[_without_code(run[0])] = run
    return found


def reproduction_rows(out):
    """[(figure, config, metrics)] of the finished runs of the reproduction in ``out`` (its
    runs/ folder, whichever code version ran them), each run under the first figure of
    :data:`npgen.study.plans.FIGURES` that needs it (Figure 3's runs serve Figures 2, 3b and
    the Cauchy study as well). ValueError, one sentence, when ``out`` holds no reproduction."""
    preset = study_preset(out)
    if preset is None:
        raise ValueError(f"{out} holds no study.json; give the --out folder of an npgen reproduce")
    finished, rows = _finished_runs(os.path.join(out, "runs")), []
    for figure, configs in ((f, plan(preset)[f]) for f in FIGURES):
        for config in configs:
            run = finished.pop(_without_code(config), None)
            if run is not None:
                rows.append((figure, *run))
    return rows


def format_profile(rows, clock="cpu"):
    """The text table of :func:`phase_table` for ``rows`` of :func:`reproduction_rows`, per
    figure, per model and per figure and model, each with the seconds of every phase."""
    phases = sorted({name for _, _, m in rows for name in m.get("phase_seconds", {})},
                    key=lambda name: (name in INSIDE, name))
    columns = ["runs", "total"] + phases
    lines = [f"Seconds of {'process CPU' if clock == 'cpu' else 'wall'} time per group, summed over its runs"
             f" ({len(rows)} runs; phases marked * lie inside another: "
             + ", ".join(f"{inner} in {outer}" for inner, outer in INSIDE.items()) + ")."]
    header = f"{'group':<26}" + "".join(f"{name + ('*' if name in INSIDE else ''):>17}" for name in columns)
    groupings = (("all runs", lambda f, c: "all"), ("figure", lambda f, c: f), ("model", lambda f, c: c["model"]),
                 ("figure, model", lambda f, c: f"{f} {c['model']}"))
    pairs = [((figure, config), metrics) for figure, config, metrics in rows]
    for title, group in groupings:
        table = phase_table(pairs, lambda key: group(*key), clock)
        lines += ["", f"by {title}:", header]
        for name, entry in sorted(table.items(), key=lambda item: -item[1]["total"]):
            cells = [f"{entry['runs']:>17d}"] + [f"{entry.get(c, 0.0):>17.1f}" for c in columns[1:]]
            lines.append(f"{name:<26}" + "".join(cells))
        untimed = sum(entry["untimed"] for entry in table.values())
        if untimed:
            lines.append(f"({untimed} runs carry no phase_seconds and add nothing above)")
    return "\n".join(lines)
