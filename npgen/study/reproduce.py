"""``npgen reproduce``: the paper's Section 4.1, from training runs to figures and a report.

The study is a list of run configurations per figure (:func:`npgen.study.plans.plan`). Runs are
keyed by their configuration and executed by :mod:`npgen.study.sweep`, so an interrupted
reproduction resumes where it stopped and runs shared by several figures (Figure 2 reads
Figure 3's runs at m = 10) are trained once. Every figure is then drawn from the numbers on disk
(:mod:`npgen.study.figures`), and :mod:`npgen.study.report` writes report.md and report.html.
"""

import json
import os

from ..util.checks import check_choice
from ..util.io import atomic_write_json
from .plans import FIGURES, PLANS, plan, selected_figures
from .report import build_sections, write_report
from .runs import train_run
from .sweep import run_sweep


def sweep_run(config, run_dir):
    """The sweep's run function: one training run (see :func:`npgen.study.runs.train_run`)."""
    return train_run(config, run_dir, quiet=True)


def reproduce(preset="quick", only=None, jobs=1, out="npgen-results", quiet=False, executor=None):
    """Run what is missing for the selected figures, draw them, write the report.

    Returns the path of report.md.
    """
    figures = selected_figures(only)
    runs = plan(preset)
    needed = [config for name in figures for config in runs[name]]
    if "grid" in figures:
        needed += [c for name in ("fig3", "fig4", "fig5", "fig6") for c in runs[name]]
    runs_dir = os.path.join(out, "runs")
    atomic_write_json(os.path.join(out, "study.json"), {"preset": preset})
    if needed:
        run_sweep(needed, sweep_run, runs_dir, executor=executor, jobs=jobs, quiet=quiet)
    return write_report(out, preset, figures, runs)


def study_preset(out):
    """The preset recorded in ``out/study.json``; ValueError (one sentence naming the file) when the
    file is missing, a folder, unreadable, not a JSON object, or names no known preset."""
    study = os.path.join(out, "study.json")
    accepted = f'a JSON object {{"preset": NAME}} with NAME in {sorted(PLANS)}, as npgen reproduce writes it'
    if not os.path.lexists(study):
        raise ValueError(f"{out} is not a folder written by npgen reproduce (no study.json)")
    if os.path.isdir(study):
        raise ValueError(f"{study} is a folder; expected a file holding {accepted}")
    try:
        with open(study, encoding="utf-8") as handle:
            content = json.load(handle)
    except OSError as err:
        raise ValueError(f"{study} cannot be read ({err.strerror}); expected {accepted}") from None
    except ValueError as err:
        raise ValueError(f"{study} is not valid JSON text ({err}); expected {accepted}") from None
    if not isinstance(content, dict):
        raise ValueError(f"{study} holds a JSON {type(content).__name__}; expected {accepted}")
    if content.get("preset") not in PLANS:
        raise ValueError(f"{study} names the preset {content.get('preset')!r}; expected {accepted}")
    return content["preset"]


def redraw_figure(number, out):
    """Redraw figure ``number`` ('1'..'6' or 'grid') from the runs stored in ``out``; no training.
    A figure none of whose runs finished raises ValueError instead of drawing an empty figure."""
    name = "grid" if str(number) == "grid" else f"fig{number}"
    check_choice("figure number", name, FIGURES)
    preset = study_preset(out)
    section, = build_sections(out, preset, [name], plan(preset), require_runs=True)
    return section.image
