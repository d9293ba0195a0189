"""``npgen reproduce``: the paper's Section 4.1, from training runs to figures and a report.

The study is a list of run configurations per figure (:func:`npgen.study.plans.plan`). Runs are
keyed by their configuration and executed by :mod:`npgen.study.sweep`, so an interrupted
reproduction resumes where it stopped and runs shared by several figures (Figure 2 reads
Figure 3's runs at m = 10) are trained once. Every figure is then drawn from the numbers on disk
(:mod:`npgen.study.figures`), and :mod:`npgen.study.report` writes report.md and report.html.
"""

import contextlib
import json
import os
import sys

from ..util.checks import check_choice, check_number
from ..util.io import atomic_write_json, check_own_folder
from .cluster import check_scheduler, dask_executor
from .plans import FIGURES, PLANS, plan, selected_figures
from .report import build_sections, write_report
from .runs import code_fingerprint, train_run
from .sweep import FAILURES_FILE, other_runs, read_failures, run_sweep, sweep_status

STUDY_FILE = "study.json"
#: The most worker processes ``--jobs`` starts (each imports numba and holds a few hundred MB).
MAX_JOBS = 256


def sweep_run(config, run_dir):
    """The sweep's run function: one training run (see :func:`npgen.study.runs.train_run`)."""
    return train_run(config, run_dir, quiet=True)


def cluster_run(config, run_dir):
    """:func:`sweep_run` on a cluster's worker, which refuses a configuration planned by other
    code than the npgen installed on the worker: its numbers would be stored under a key that
    names code which did not compute them."""
    if config.get("code") != code_fingerprint():
        raise ValueError(f"this worker runs npgen code {code_fingerprint()}, but the run was"
                         f" planned with {config.get('code')}; install the same npgen on every"
                         " worker as on the machine that runs npgen reproduce")
    return sweep_run(config, run_dir)


def study_preset(out):
    """The preset recorded in ``out/study.json``, or None when ``out`` holds no study.json.

    Raises ValueError with one sentence, naming the file, when it is a folder, cannot be read,
    is not valid JSON, is not a JSON object, or names no known preset.
    """
    study = os.path.join(out, STUDY_FILE)
    accepted = f'a JSON object {{"preset": NAME}} with NAME in {sorted(PLANS)}, as npgen reproduce writes it'
    if not os.path.lexists(study):
        return None
    if os.path.isdir(study):
        raise ValueError(f"{study} is a folder; expected a file holding {accepted}")
    try:
        with open(study, encoding="utf-8") as handle:
            content = json.load(handle)
    except OSError as err:
        raise ValueError(f"{study} cannot be read ({err.strerror}); expected {accepted}") from None
    except ValueError as err:  # undecodable bytes and invalid JSON alike
        raise ValueError(f"{study} is not valid JSON text ({err}); expected {accepted}") from None
    if not isinstance(content, dict):
        raise ValueError(f"{study} holds a JSON {type(content).__name__}; expected {accepted}")
    if content.get("preset") not in PLANS:
        raise ValueError(f"{study} names the preset {content.get('preset')!r}; expected {accepted}")
    return content["preset"]


def check_study_target(out, preset):
    """Refuse, in one sentence, an ``--out`` that ``npgen reproduce`` must not write into: a
    file or read-only place, a folder of other files (no study.json), or a study of another preset."""
    recorded = study_preset(out)
    check_own_folder("--out", out, lambda path: recorded is not None,
                     f"study of npgen reproduce (no {STUDY_FILE})")
    if recorded is not None and recorded != preset:
        raise ValueError(f"--out {out} holds a study of the {recorded} preset; give --preset"
                         f" {recorded} to resume it, or another --out for the {preset} preset")


class StudyIncomplete(ValueError):
    """Some runs of a reproduction failed: the report was written without them."""


def reproduce(preset="quick", only=None, jobs=None, out="npgen-results", quiet=False, executor=None,
              scheduler=None):
    """Run what is missing for the selected figures, draw them, write the report.

    The runs go to ``jobs`` worker processes of this machine (default 1: this process), to a
    concurrent.futures ``executor``, or to the dask cluster ``scheduler`` (an address, or
    'local'; see :mod:`npgen.study.cluster`), whose workers need not see ``out``.

    Every argument is checked before anything is written. Finished runs of the same
    configuration and code (the key covers :func:`npgen.study.runs.code_fingerprint`) are
    reused; unless ``quiet``, a line says how many runs were reused and how many trained, and
    how many other runs in ``out/runs`` (other figures, settings or code) were left as they are.
    Returns the path of report.md.
    """
    check_choice("--preset", preset, PLANS)
    if only is not None and not str(only).strip(" ,"):
        raise ValueError(f"--only must name at least one figure of {list(FIGURES)}, got {only!r}")
    figures = selected_figures(only)
    if scheduler is not None:
        if jobs is not None:
            raise ValueError("--jobs sizes this machine's process pool and does not apply with"
                             " --scheduler: the cluster's workers run the runs (--scheduler local"
                             " starts one per CPU core)")
        if executor is not None:
            raise ValueError("give either an executor or --scheduler, not both")
        check_scheduler(scheduler)
    elif executor is None:
        jobs = check_number("--jobs", 1 if jobs is None else jobs, low=1, high=MAX_JOBS, integer=True)
    check_study_target(out, preset)
    runs = plan(preset)
    needed = [config for name in figures for config in runs[name]]
    if "grid" in figures:
        needed += [c for name in ("fig3", "fig4", "fig5", "fig6") for c in runs[name]]
    runs_dir = os.path.join(out, "runs")
    before = sweep_status(needed, runs_dir)
    reused = before["done"]
    with _cluster(scheduler if reused < before["total"] else None, quiet) as cluster_executor:
        atomic_write_json(os.path.join(out, STUDY_FILE), {"preset": preset})
        failures = []
        if needed:
            run_sweep(needed, sweep_run if scheduler is None else cluster_run, runs_dir,
                      executor=cluster_executor or executor,
                      jobs=1 if jobs is None else jobs, quiet=quiet,
                      shared_filesystem=scheduler is None)
            failures = [(record["name"], record["error"]) for record in read_failures(runs_dir)]
    if not quiet:
        status = sweep_status(needed, runs_dir)
        print(f"reproduce: reused {reused} finished runs, trained {status['done'] - reused},"
              f" {len(failures)} failed; {other_runs(needed, runs_dir)} other"
              " runs in runs/ (other figures, settings or code versions) were left as they are",
              file=sys.stderr)
    report = write_report(out, preset, figures, runs, failures)
    if failures:
        raise StudyIncomplete(f"{len(failures)} of {len(needed)} runs failed (first: {failures[0][0]}:"
                              f" {failures[0][1]}); {report} lists them and"
                              f" {os.path.join(runs_dir, FAILURES_FILE)} holds their tracebacks")
    return report


@contextlib.contextmanager
def _cluster(scheduler, quiet):
    """The dask executor of ``scheduler`` (a line names the cluster unless ``quiet``), or None."""
    if scheduler is None:
        yield None
        return
    with dask_executor(scheduler) as (executor, description):
        if not quiet:
            print(f"reproduce: {description}", file=sys.stderr)
        yield executor


def redraw_figure(number, out):
    """Redraw figure ``number`` ('1'..'6' or 'grid') from the runs stored in ``out``; no training.
    A figure none of whose runs finished raises ValueError instead of drawing an empty figure."""
    numbers = {name[3:] if name.startswith("fig") else name: name for name in FIGURES}
    if str(number) not in numbers:
        raise ValueError(f"figure number must be one of {', '.join(numbers)}, got {str(number)!r}")
    name = numbers[str(number)]
    preset = study_preset(out)
    if preset is None:
        raise ValueError(f"{out} is not a folder written by npgen reproduce (no {STUDY_FILE})")
    section, = build_sections(out, preset, [name], plan(preset), require_runs=True)
    return section.image
