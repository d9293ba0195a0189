"""Run a sweep of training runs, one directory per configuration, and resume it after any stop.

A run is a call ``run_fn(config, run_dir) -> metrics``: ``run_fn`` trains one configuration
(a JSON-able dict), writes its files into ``run_dir`` and returns a dict of numbers.
``run_sweep`` runs every configuration of a list that is not already done, in this process or
in parallel, and ``load_results`` reads the numbers back from disk.

Layout of ``out_dir``::

    <name>-<hash12>/          one finished run (name from a few config fields, e.g. gan-m4-seed0)
        config.json           the configuration (written by the runner)
        metrics.json          what run_fn returned (written by the runner)
        ...                   whatever run_fn wrote (weights, samples.npy, ...)
        COMPLETE.json         the completion marker: the run's key and every file's size
    .tmp-<hash12>-<pid>-*/    a run in progress (or left by a killed sweep)
    .corrupt/                 run directories that failed the check, moved aside, never deleted
    failures.json             the runs of the latest sweep whose run_fn raised, with the error
    .lock                     held by the sweep running in this folder

Guarantees:

* A run directory appears whole or not at all. ``run_fn`` writes into a fresh temporary
  directory inside ``out_dir``; the runner then writes config.json, metrics.json and, last,
  COMPLETE.json (each atomically), fsyncs every file and the directory, and renames the
  directory into place (``os.rename`` is atomic within one filesystem).
* A run is done when its directory holds a marker whose key is the configuration's key, every
  file the marker lists has the recorded size, and config.json and metrics.json parse. Done runs
  are never recomputed, whatever happened to the sweep that made them.
* A sweep stopped by Ctrl-C, ``kill -9`` or a power cut loses at most the runs that were in
  flight: running it again reports and clears what was left (temporary directories are removed;
  run directories that fail the check are moved to ``.corrupt/``) and redoes only those runs.
* One sweep at a time per folder: ``run_sweep`` holds an exclusive lock on ``out_dir/.lock``
  (released by the operating system if the process dies), so clearing leftovers never touches a
  running sweep's work. Reading (``load_results``, ``sweep_status``) needs no lock.

Keys: a configuration's key is the SHA-256 of its canonical JSON (sorted keys, no spaces,
integral floats written as integers so that 4 and 4.0 are one key, numpy scalars and arrays as
plain numbers and lists). Configurations with the same key are run once. The directory name's
readable part is cosmetic: runs are found by the key's first 12 hex digits at the end of it.

Parallelism: ``jobs=1`` runs in this process (plain tracebacks, numba's compiled functions stay
warm from run to run); ``jobs > 1`` uses a ProcessPoolExecutor whose workers are *spawned*
(fresh interpreters): forking a process that already runs numba's or BLAS's worker threads can
deadlock or abort, and spawn behaves the same on Linux, macOS and Windows. Workers live for the
whole sweep, so each one compiles numba kernels once. Any other ``concurrent.futures.Executor``
(a ThreadPoolExecutor, dask.distributed's ``client.get_executor()``) can be passed as
``executor``. With process-based executors, ``run_fn`` must be a top-level function of an
importable module (functions are pickled by name), scripts need the ``if __name__ ==
"__main__":`` guard, and ``out_dir`` must be on a filesystem every worker sees, unless
``shared_filesystem=False``: then each worker computes its run in a temporary folder of its own
and sends the files back, and the sweep's process writes them into ``out_dir`` as above
(:mod:`npgen.study.cluster` runs sweeps on dask.distributed that way).

Keys, names and the reading of run directories are :mod:`npgen.study.run_dirs`; the progress
bars :mod:`npgen.study.sweep_progress`.
"""

import collections
import copy
import json
import multiprocessing
import os
import pickle
import shutil
import socket
import tempfile
import threading
import time
import traceback
import weakref
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, ProcessPoolExecutor, wait

from ..util.checks import check_bool, check_number
from ..util.io import TMP_PREFIX, atomic_directory, atomic_write_json, file_sizes
from ..util.locks import folder_lock
from ..util.threads import one_blas_thread
from .run_dirs import (CONFIG_FILE, CORRUPT_DIR, FAILURES_FILE, HASH_CHARS, LOCK_FILE, MARKER_FILE,  # noqa: F401
                       METRICS_FILE, _inspect, _plain, _run_dirs_by_hash, _temporaries, _unique, config_key,
                       find_run_dir, load_results, other_runs, run_name, sweep_status)
from .sweep_progress import SweepProgress


# --------------------------------------------------------------------------- one run

def _execute(run_fn, key, config, name, out_dir):
    """Run one configuration in a fresh temporary directory and move the finished run into place.

    Runs where the executor puts it (this process, a pool worker, a thread). If run_fn raises,
    its temporary directory is removed and the exception propagates.
    """
    start = time.perf_counter()
    with _run_directory(key, name, out_dir) as tmp:
        metrics = _checked_metrics(run_fn(copy.deepcopy(config), tmp))
        _finish(tmp, key, config, name, metrics, time.perf_counter() - start)


def _checked_metrics(metrics):
    if not isinstance(metrics, dict):
        raise TypeError(f"run_fn must return a dict of metrics, got {type(metrics).__name__}")
    return _plain(metrics, "metrics")


def _run_directory(key, name, out_dir):
    """:func:`atomic_directory` for the run directory ``out_dir/name`` (temporary name
    ``.tmp-<hash12>-<pid>-*``, which the next sweep clears if this one dies)."""
    prefix = f"{TMP_PREFIX}{key[:HASH_CHARS]}-{os.getpid()}-"
    return atomic_directory(os.path.join(out_dir, name), prefix=prefix)


def _finish(tmp, key, config, name, metrics, seconds):
    """Write config.json, metrics.json and, last, the completion marker into the run's
    temporary directory ``tmp``, which holds every other file of the run."""
    atomic_write_json(os.path.join(tmp, CONFIG_FILE), config)
    atomic_write_json(os.path.join(tmp, METRICS_FILE), metrics)
    marker = {"key": key, "name": name, "files": file_sizes(tmp), "seconds": seconds,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_json(os.path.join(tmp, MARKER_FILE), marker)


#: What a detached run sends back: its metrics, every file it wrote ({relative path: bytes}),
#: its seconds, the worker that ran it ("host:pid") and whether it was that worker's first run.
Shipped = collections.namedtuple("Shipped", "metrics files seconds worker first")

_runs_in_this_process = 0


@one_blas_thread
def _compute_detached(run_fn, key, config, name):
    """Run one configuration in a temporary folder of this process's own machine and return
    the run as a :data:`Shipped` instead of writing it into ``out_dir``.

    For executors whose workers cannot see the sweep's disk (a cluster's machines): the folder
    is removed before returning, and :func:`_commit` writes the run on the sweep's side. BLAS is
    pinned to one thread for the run, whatever the worker's environment says.
    """
    global _runs_in_this_process
    _runs_in_this_process += 1
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"npgen-{key[:HASH_CHARS]}-") as tmp:
        metrics = _checked_metrics(run_fn(copy.deepcopy(config), tmp))
        files = {}
        for relpath in file_sizes(tmp):
            with open(os.path.join(tmp, relpath), "rb") as handle:
                files[relpath] = handle.read()
    return Shipped(metrics, files, time.perf_counter() - start,
                   f"{socket.gethostname()}:{os.getpid()}", _runs_in_this_process == 1)


def _commit(task, shipped):
    """Write a run computed by :func:`_compute_detached` into ``task.out_dir``, with the same
    atomic layout and completion marker as a run computed in place."""
    with _run_directory(task.key, task.name, task.out_dir) as tmp:
        for relpath, content in shipped.files.items():
            parts = relpath.split("/")
            if not all(parts) or {".", ".."} & set(parts) or os.path.isabs(relpath):
                raise ValueError(f"the worker that ran {task.name} sent a file outside its run"
                                 f" directory ({relpath!r}); nothing of that run was written")
            path = os.path.join(tmp, *parts)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(content)
        _finish(tmp, task.key, task.config, task.name, shipped.metrics, shipped.seconds)


def _exit_with_parent(parent_pid):
    """Pool-worker initializer: exit as soon as the sweep's process is gone (``kill -9``).

    Without it an orphaned worker would wait forever for work; the run it was doing is left
    as a temporary directory, which the next sweep clears.
    """
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


# --------------------------------------------------------------------------- the sweep

_Task = collections.namedtuple("_Task", "run_fn key config name out_dir")  # _execute's arguments


def _failure(task, error):
    """failures.json's record of a run whose run_fn raised ``error``."""
    return {"name": task.name, "key": task.key, "config": task.config,
            "error": f"{type(error).__name__}: {error}",
            "traceback": "".join(traceback.format_exception(error))}


def read_failures(out_dir):
    """The failed runs of the latest sweep in ``out_dir``: failures.json's records (see
    :func:`_failure`), [] when there is none."""
    path = os.path.join(out_dir, FAILURES_FILE)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _sweep_lock(out_dir):
    """Hold ``out_dir/.lock``; a second sweep in the same folder is refused in one sentence
    (:class:`npgen.util.locks.FolderBusy`)."""
    return folder_lock(out_dir, "out_dir")


def _clear_leftovers(out_dir, unique, note):
    """Remove temporary entries, move failing run directories aside; return the keys to run."""
    for path in _temporaries(out_dir):
        note(f"removing {os.path.basename(path)}, left by an interrupted sweep")
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    run_dirs = _run_dirs_by_hash(out_dir)
    todo = []
    for key in unique:
        (done, _), broken = _inspect(key, run_dirs)
        for path, problem in broken:
            aside = os.path.join(out_dir, CORRUPT_DIR, f"{os.path.basename(path)}.{time.time_ns()}")
            note(f"{os.path.basename(path)}: {problem}; moved to {os.path.relpath(aside, out_dir)}"
                 " and running it again")
            os.makedirs(os.path.dirname(aside), exist_ok=True)
            os.rename(path, aside)
        if done is None:
            todo.append(key)
    return todo


def run_sweep(configs, run_fn, out_dir, executor=None, jobs=1, quiet=False, fail_fast=False,
              name_fields=None, shared_filesystem=True, cost=None, on_submitted=None):
    """Run every configuration of ``configs`` that ``out_dir`` does not hold finished yet.

    ``run_fn(config, run_dir) -> dict`` does one run (see the module docstring for what the
    runner guarantees around it). ``executor``: any concurrent.futures.Executor, used as is and
    left open; without one, ``jobs=1`` runs in this process and ``jobs > 1`` in that many
    spawned worker processes. A run whose run_fn raises is recorded in ``out_dir/failures.json``
    (name, key, config, error, traceback) and the sweep goes on; ``fail_fast=True`` re-raises
    the first such error instead, once the runs already handed to workers have ended.
    Ctrl-C (KeyboardInterrupt) cancels the runs not started and stops the ones running in this
    process or in the sweep's own workers at once (a given executor's are left to it); finished
    runs are kept, and the interrupt is re-raised.
    ``name_fields``: the fields whose values name the run directories (see ``run_name``).
    ``shared_filesystem=False``: the workers need not see ``out_dir`` (a cluster's machines).
    Each run is computed in a temporary folder of its worker's own (:func:`_compute_detached`,
    one BLAS thread), its files come back to this process as bytes, and this process writes
    them into ``out_dir`` with the same atomic layout and marker as a run computed in place.
    ``cost(config) -> number``, if given, estimates a run's work: the runs start largest cost
    first (ties in the order of ``configs``), so that the longest runs of a parallel sweep do
    not start last and leave the other workers idle at the end.
    ``on_submitted()``, if given, is called once every run to do has been handed to the
    executor (at the start, for runs in this process): a sweep started beside this one on the
    same executor, in another thread, then queues its runs behind these.

    Returns, for each configuration in order, the metrics of its run (None for a failed run).
    """
    unique = _unique(configs)
    if not callable(run_fn):
        raise ValueError(f"run_fn must be a function run_fn(config, run_dir), got {run_fn!r}")
    jobs = check_number("jobs", jobs, low=1, integer=True)
    if executor is not None and jobs != 1:
        raise ValueError("give either executor or jobs, not both (jobs sizes the sweep's own pool)")
    detached = not check_bool("shared_filesystem", shared_filesystem)
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    with _sweep_lock(out_dir):
        line = SweepProgress(len(unique), quiet)
        todo = _clear_leftovers(out_dir, unique, line.note)
        line.done = len(unique) - len(todo)
        line.note(f"{len(unique)} runs, {line.done} already done, {len(todo)} to run in {out_dir}")
        line.open(min(len(todo), jobs if executor is None else getattr(executor, "_max_workers", 1)) or 1)
        failures_path = os.path.join(out_dir, FAILURES_FILE)
        failures = []
        atomic_write_json(failures_path, failures)
        if cost is not None:
            todo = sorted(todo, key=lambda key: -cost(unique[key]))
        tasks = [_Task(run_fn, key, unique[key], run_name(unique[key], name_fields), out_dir)
                 for key in todo]

        def record(task, error, shipped=None):
            """Count a finished run; a failed one goes to failures.json (and ends a fail-fast sweep).
            A run computed detached (``shipped``) is written into out_dir first."""
            if shipped is not None:
                try:
                    _commit(task, shipped)
                except ValueError as refused:  # the worker's files cannot be this run's
                    error = refused
                else:
                    line.shipped(task.name, shipped)
            if error is not None:
                failures.append(_failure(task, error))
                atomic_write_json(failures_path, failures)
                line.note(f"{task.name} failed: {type(error).__name__}: {error}")
            line.advance(task.name, failed=error is not None)
            if error is not None and fail_fast:
                raise error

        try:
            _run_tasks(tasks, run_fn, executor, jobs, detached, record, line.running,
                       on_submitted or (lambda: None))
        except KeyboardInterrupt:
            line.note(f"interrupted after {line.finished} of {len(tasks)} runs; "
                      "run the same sweep again to resume")
            raise
        finally:
            line.close()
        if failures:
            line.note(f"{len(failures)} of {len(tasks)} runs failed; see {failures_path}")
        return load_results(configs, out_dir)


def _run_tasks(tasks, run_fn, executor, jobs, detached, record, on_running, on_submitted):
    """Run ``tasks`` on ``executor``, on ``jobs`` > 1 spawned workers, or one by one in this
    process; ``record(task, error, shipped)`` hears each as it ends, ``on_running(names)`` the
    runs in flight, ``on_submitted()`` when all are handed out."""
    if executor is not None:
        _run_with_executor(tasks, executor, record, detached, on_running, on_submitted)
    elif jobs > 1:
        with spawn_pool(jobs, run_fn) as pool:
            try:
                _run_with_executor(tasks, pool, record, detached, on_running, on_submitted)
            except KeyboardInterrupt:
                stop_workers(pool)
                raise
    else:
        on_submitted()
        for task in tasks:
            on_running([task.name])
            try:
                shipped = _compute_detached(*task[:4]) if detached else _execute(*task)
            except Exception as error:  # noqa: BLE001 -- recorded, re-raised if fail_fast
                record(task, error)
            else:
                record(task, None, shipped)


def spawn_pool(jobs, *run_fns):
    """A pool of ``jobs`` spawned worker processes that exit if the sweep's process dies, for
    sweeps of the functions ``run_fns`` (each checked to be picklable: a top-level function)."""
    for run_fn in run_fns:
        try:
            pickle.dumps(run_fn)
        except Exception as error:  # noqa: BLE001 -- every pickling failure means the same thing
            raise ValueError("with jobs > 1, run_fn must be a top-level function of an importable "
                             f"module, got {run_fn!r} ({error})") from None
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(os.getpid(),))


#: The pools whose workers :func:`stop_workers` terminated: a run that another sweep had on
#: them was interrupted, not failed.
_STOPPED_POOLS = weakref.WeakSet()


def stop_workers(pool):
    """Terminate a pool's worker processes, so that Ctrl-C stops the runs in flight at once.

    (Their temporary directories are cleared by the next sweep.) Without this, shutting the
    pool down would first run every call already queued to the workers. Another sweep still
    waiting on the pool (in another thread) then stops as if interrupted, recording no failure.
    """
    _STOPPED_POOLS.add(pool)
    for process in list((pool._processes or {}).values()):  # Python >= 3.14: terminate_workers()
        process.terminate()


def _run_with_executor(tasks, executor, record, detached, on_running, on_submitted):
    """Submit every task (then call ``on_submitted()``), ``record`` each as it
    completes; cancel the ones pending on any exit.
    ``detached``: the tasks compute their runs away from out_dir and ship them back.
    ``on_running(names)``, if given, hears the names of the runs in flight about every second.

    A finished future is dropped at once: a cluster's scheduler keeps a result while its
    future lives, and would recompute it if the worker holding it died.
    """
    futures = {(executor.submit(_compute_detached, *task[:4]) if detached else
                executor.submit(_execute, *task)): task for task in tasks}
    on_submitted()
    try:
        while futures:
            finished, _ = wait(futures, timeout=1.0, return_when=FIRST_COMPLETED)
            if on_running is not None:
                on_running([task.name for future, task in futures.items()
                            if future not in finished and future.running()])
            while finished:
                future = finished.pop()
                task, error = futures.pop(future), future.exception()
                if error is not None and not isinstance(error, Exception):
                    raise error  # KeyboardInterrupt or SystemExit inside a worker ends the sweep
                if isinstance(error, BrokenExecutor) and executor in _STOPPED_POOLS:
                    raise KeyboardInterrupt  # the pool was stopped under the sweep
                shipped = None if error is not None else future.result()
                del future
                record(task, error, shipped)
    finally:
        for future in futures:
            future.cancel()
