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
"""

import collections
import copy
import hashlib
import json
import math
import multiprocessing
import os
import pickle
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from ..util.checks import check_bool, check_number
from ..util.io import TMP_PREFIX, atomic_directory, atomic_write_json, file_sizes
from ..util.locks import folder_lock
from ..util.progress import format_seconds
from ..util.threads import one_blas_thread

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
MARKER_FILE = "COMPLETE.json"
FAILURES_FILE = "failures.json"
CORRUPT_DIR = ".corrupt"
HASH_CHARS = 12
NAME_CHARS = 60

_RUN_DIR = re.compile(r"^[^.].*-([0-9a-f]{%d})$" % HASH_CHARS)
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


# --------------------------------------------------------------------------- keys and names

def _plain(obj, where):
    """``obj`` in plain JSON types: numpy scalars and arrays become numbers and lists, tuples lists."""
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str):
                raise ValueError(f"{where} keys must be strings, got {k!r}")
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist(), where)
    if isinstance(obj, np.generic):
        return _plain(obj.item(), where)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ValueError(f"{where} must be JSON-able (dict, list, str, number, bool or None), "
                     f"got {type(obj).__name__}")


def _canonical(obj):
    """``obj`` (plain JSON types) with integral floats as ints; NaN and inf are refused."""
    if isinstance(obj, dict):
        return {k: _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"configurations must hold finite numbers, got {obj!r}")
        return int(obj) if obj.is_integer() else obj
    return obj


def config_key(config):
    """The run's key: SHA-256 (64 hex digits) of the configuration's canonical JSON.

    Stable across dict order, Python sessions and machines; 4 and 4.0 give the same key,
    True and 1 do not.
    """
    canonical = _canonical(_plain(config, "config"))
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def run_name(config, fields=None):
    """The run directory's name: ``<readable part>-<first 12 hex digits of the key>``.

    The readable part joins the values of ``fields`` (default: the configuration's first three
    fields; fields it lacks are skipped): a string value as itself, any other as field name +
    value, e.g. ``gan-m4-seed0``. It is made filesystem-safe and cut to 60 characters.
    """
    plain = _plain(config, "config")
    fields = list(plain)[:3] if fields is None else fields
    parts = []
    for field in fields:
        if field in plain:
            value = _canonical(plain[field])
            parts.append(value if isinstance(value, str) else f"{field}{json.dumps(value)}")
    readable = _UNSAFE.sub("_", "-".join(parts))[:NAME_CHARS].strip("._-") or "run"
    return f"{readable}-{config_key(plain)[:HASH_CHARS]}"


def _unique(configs):
    """{key: configuration in plain JSON types}, in first-seen order (duplicates dropped)."""
    if isinstance(configs, dict) or not hasattr(configs, "__iter__"):
        raise ValueError(f"configs must be a list of dicts, got {type(configs).__name__}")
    unique = {}
    for i, config in enumerate(configs):
        if not isinstance(config, dict):
            raise ValueError(f"configs[{i}] must be a dict, got {type(config).__name__}")
        plain = _plain(config, f"configs[{i}]")
        unique.setdefault(config_key(plain), plain)
    return unique


# --------------------------------------------------------------------------- run directories

def _read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _load_run(path, key):
    """(metrics, None) if ``path`` is a finished run of ``key``, else (None, what is wrong)."""
    try:
        marker = _read_json(os.path.join(path, MARKER_FILE))
    except FileNotFoundError:
        return None, "no completion marker"
    except (OSError, ValueError):
        return None, "unreadable completion marker"
    if not isinstance(marker, dict) or marker.get("key") != key:
        return None, "completion marker of another configuration"
    files = marker.get("files")
    if not isinstance(files, dict) or not {CONFIG_FILE, METRICS_FILE} <= set(files):
        return None, "completion marker without its file list"
    for relpath, size in files.items():
        try:
            actual = os.path.getsize(os.path.join(path, relpath))
        except OSError:
            return None, f"{relpath} is missing"
        if actual != size:
            return None, f"{relpath} has {actual} bytes, the marker says {size}"
    try:
        config = _read_json(os.path.join(path, CONFIG_FILE))
        metrics = _read_json(os.path.join(path, METRICS_FILE))
    except (OSError, ValueError):
        return None, "unreadable config.json or metrics.json"
    if not isinstance(metrics, dict) or config_key(config) != key:
        return None, "config.json or metrics.json does not match the marker"
    return metrics, None


def _run_dirs_by_hash(out_dir):
    """{hash12: [run directory paths]} for the run directories in ``out_dir``."""
    found = {}
    if os.path.isdir(out_dir):
        for entry in os.scandir(out_dir):
            match = _RUN_DIR.match(entry.name)
            if match and entry.is_dir():
                found.setdefault(match.group(1), []).append(entry.path)
    return found


def _inspect(key, run_dirs):
    """(path, metrics) of the finished run of ``key`` or (None, None), and [(path, problem)]
    for its directories that fail the check."""
    broken = []
    for path in run_dirs.get(key[:HASH_CHARS], []):
        metrics, problem = _load_run(path, key)
        if problem is None:
            return (path, metrics), broken
        broken.append((path, problem))
    return (None, None), broken


def _temporaries(out_dir):
    """Paths of the temporary entries (runs in progress or left over) in ``out_dir``."""
    return [entry.path for entry in os.scandir(out_dir) if entry.name.startswith(TMP_PREFIX)]


def find_run_dir(config, out_dir):
    """The directory of ``config``'s finished run in ``out_dir``, or None."""
    key = config_key(config)
    return _inspect(key, _run_dirs_by_hash(out_dir))[0][0]


def damaged_runs(configs, out_dir):
    """[(path, what is wrong)] for the run directories of ``configs`` in ``out_dir`` that fail the
    check while no directory of theirs passes it: runs that were finished once and were damaged
    since (a truncated or edited metrics.json, a file of another size than its marker says)."""
    run_dirs, found = _run_dirs_by_hash(out_dir), []
    for key in _unique(configs):
        (path, _), broken = _inspect(key, run_dirs)
        found += [] if path else broken
    return found


def load_results(configs, out_dir):
    """For each configuration (in order), the metrics of its finished run, or None."""
    run_dirs = _run_dirs_by_hash(out_dir)
    return [_inspect(config_key(config), run_dirs)[0][1] for config in configs]


def other_runs(configs, out_dir):
    """How many run directories in ``out_dir`` belong to none of ``configs``: runs of other
    configurations, or of the same ones computed by other code. They are never read or removed."""
    hashes = {key[:HASH_CHARS] for key in _unique(configs)}
    return sum(len(paths) for h, paths in _run_dirs_by_hash(out_dir).items() if h not in hashes)


def sweep_status(configs, out_dir):
    """Counts over the distinct configurations: {"total", "done", "missing", "corrupt", "temporary"}.

    Every configuration is done (a finished run), corrupt (a directory that fails the check) or
    missing (no directory). ``temporary`` counts the temporary directories of these
    configurations: runs in progress, or left by a killed sweep (the next run_sweep clears them).
    """
    keys = list(_unique(configs))
    run_dirs = _run_dirs_by_hash(out_dir)
    status = {"total": len(keys), "done": 0, "missing": 0, "corrupt": 0, "temporary": 0}
    for key in keys:
        (path, _), broken = _inspect(key, run_dirs)
        status["done" if path else "corrupt" if broken else "missing"] += 1
    if os.path.isdir(out_dir):
        hashes = {key[:HASH_CHARS] for key in keys}
        status["temporary"] = sum(os.path.basename(path)[len(TMP_PREFIX):][:HASH_CHARS] in hashes
                                  for path in _temporaries(out_dir))
    return status


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

class _SweepLine:
    """The sweep's one progress line: runs done/total, runs/min, ETA, failures, last run.

    Rewritten in place on a terminal; elsewhere (a log file) printed at most every
    ``log_interval`` seconds and after the last run. Notes go on their own lines above it.
    ``done`` counts finished runs, those found on disk included; the rate counts this sweep's.
    Runs computed on workers that report themselves (:data:`Shipped`) add the number of
    workers seen and the mean seconds of a worker's first run, which pays numba's compile (or
    its cache load), beside the mean of later runs.
    """

    def __init__(self, total, quiet, log_interval=30.0):
        self.total, self.quiet, self.log_interval = total, quiet, log_interval
        self.done = self.failed = self.finished = 0
        self.last = ""
        self.workers = set()
        self.first_seconds, self.later_seconds = [], []
        self.stream = sys.stderr
        self.tty = self.stream.isatty()
        self.start = self._logged = time.perf_counter()
        self._open = False  # a progress line without its newline is on the terminal

    def note(self, message):
        if not self.quiet:
            erase = "\r\x1b[K" if self._open else ""
            self.stream.write(f"{erase}sweep: {message}\n" + (self._line() if self._open else ""))
            self.stream.flush()

    def shipped(self, name, shipped):
        """Count a run computed on a worker that reported itself; note a worker's first run."""
        self.workers.add(shipped.worker)
        (self.first_seconds if shipped.first else self.later_seconds).append(shipped.seconds)
        if shipped.first:
            self.note(f"{name}: first run on worker {shipped.worker},"
                      f" {format_seconds(shipped.seconds)} with numba's compile or cache load")

    def advance(self, name, failed):
        self.finished += 1
        self.failed += failed
        self.done += not failed
        self.last = name
        now = time.perf_counter()
        at_end = self.done + self.failed >= self.total
        if self.quiet or not (self.tty or at_end or now - self._logged >= self.log_interval):
            return
        self._logged = now
        erase = "\r\x1b[K" if self._open else ""
        self._open = self.tty and not at_end
        self.stream.write(erase + self._line() + ("" if self._open else "\n"))
        self.stream.flush()

    def _line(self):
        per_minute = 60.0 * self.finished / max(time.perf_counter() - self.start, 1e-9)
        remaining = self.total - self.done - self.failed
        failed = f"  {self.failed} failed" if self.failed else ""
        workers = ""
        if self.workers:
            first = format_seconds(sum(self.first_seconds) / len(self.first_seconds))
            later = (format_seconds(sum(self.later_seconds) / len(self.later_seconds))
                     if self.later_seconds else "-")
            workers = f"  {len(self.workers)} workers, first run {first} (compile), later {later}"
        return (f"sweep {self.done}/{self.total} runs  {per_minute:.1f} runs/min  "
                f"ETA {format_seconds(remaining * 60.0 / per_minute)}{failed}{workers}"
                f"  last {self.last}")


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
              name_fields=None, shared_filesystem=True, cost=None):
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
        line = _SweepLine(len(unique), quiet)
        todo = _clear_leftovers(out_dir, unique, line.note)
        line.done = len(unique) - len(todo)
        line.note(f"{len(unique)} runs, {line.done} already done, {len(todo)} to run in {out_dir}")
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
            if executor is not None:
                _run_with_executor(tasks, executor, record, detached)
            elif jobs > 1:
                with _spawn_pool(run_fn, jobs) as pool:
                    try:
                        _run_with_executor(tasks, pool, record, detached)
                    except KeyboardInterrupt:
                        _stop_workers(pool)
                        raise
            else:
                for task in tasks:
                    try:
                        shipped = _compute_detached(*task[:4]) if detached else _execute(*task)
                    except Exception as error:  # noqa: BLE001 -- recorded, re-raised if fail_fast
                        record(task, error)
                    else:
                        record(task, None, shipped)
        except KeyboardInterrupt:
            line.note(f"interrupted after {line.finished} of {len(tasks)} runs; "
                      "run the same sweep again to resume")
            raise
        if failures:
            line.note(f"{len(failures)} of {len(tasks)} runs failed; see {failures_path}")
        return load_results(configs, out_dir)


def _spawn_pool(run_fn, jobs):
    """A pool of ``jobs`` spawned worker processes that exit if the sweep's process dies."""
    try:
        pickle.dumps(run_fn)
    except Exception as error:  # noqa: BLE001 -- every pickling failure means the same thing
        raise ValueError("with jobs > 1, run_fn must be a top-level function of an importable "
                         f"module, got {run_fn!r} ({error})") from None
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(os.getpid(),))


def _stop_workers(pool):
    """Terminate a pool's worker processes, so that Ctrl-C stops the runs in flight at once.

    (Their temporary directories are cleared by the next sweep.) Without this, shutting the
    pool down would first run every call already queued to the workers.
    """
    for process in list((pool._processes or {}).values()):  # Python >= 3.14: terminate_workers()
        process.terminate()


def _run_with_executor(tasks, executor, record, detached=False):
    """Submit every task, ``record`` each as it completes; cancel the ones pending on any exit.
    ``detached``: the tasks compute their runs away from out_dir and ship them back.

    A finished future is dropped at once: a cluster's scheduler keeps a result while its
    future lives, and would recompute it if the worker holding it died.
    """
    futures = {(executor.submit(_compute_detached, *task[:4]) if detached else
                executor.submit(_execute, *task)): task for task in tasks}
    try:
        for future in as_completed(futures):
            task, error = futures.pop(future), future.exception()
            if error is not None and not isinstance(error, Exception):
                raise error  # KeyboardInterrupt or SystemExit inside a worker ends the sweep
            shipped = None if error is not None else future.result()
            del future
            record(task, error, shipped)
    finally:
        for future in futures:
            future.cancel()
