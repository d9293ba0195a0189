"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Each writer writes to a temporary file in the destination folder, flushes it to disk, then
renames it over the destination (``os.replace`` is atomic on POSIX and Windows).
"""

import json
import os
import tempfile
from contextlib import contextmanager

import numpy as np


@contextmanager
def _atomic_path(path):
    """Yield a temporary path next to ``path``; on success, move it over ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_savez(path, **arrays):
    """``numpy.savez`` to ``path`` atomically (``path`` should end in .npz)."""
    with _atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def atomic_save_npy(path, array):
    """``numpy.save`` to ``path`` atomically."""
    with _atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with _atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)


def atomic_write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
