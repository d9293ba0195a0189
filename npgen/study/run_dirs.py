"""Run directories on disk: a configuration's key and name, where its finished run is, and
whether it is done (the layout and guarantees are :mod:`npgen.study.sweep`'s).

A run is done when its directory's completion marker holds the configuration's key, every file
the marker lists has the recorded size, and config.json and metrics.json parse.
"""

import hashlib
import json
import math
import os
import re

import numpy as np

from ..util.io import TMP_PREFIX
from ..util.locks import LOCK_FILE  # noqa: F401 -- the sweep's lock, re-exported with the run files' names

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


def refuse_damaged(configs, out_dir):
    """Raise ValueError (naming the first damaged folder, and how many more) when a run of
    ``configs`` in ``out_dir`` was damaged since it finished (:func:`damaged_runs`): a figure is
    never drawn without a run it should show."""
    damaged = damaged_runs(configs, out_dir)
    if damaged:
        path, problem = damaged[0]
        raise ValueError(f"{path} is a damaged run ({problem}){f' and {len(damaged) - 1} more' * (len(damaged) > 1)};"
                         " npgen reproduce with the same --preset and --out moves damaged runs to"
                         " runs/.corrupt/ and trains them again")


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
