"""Files npgen writes and reads: atomic writes, and readers that fail with one sentence.

A reader sees the old file or the new one, never half of one: each writer writes to a
temporary file in the destination folder, flushes it to disk, then renames it over the
destination (``os.replace`` is atomic on POSIX and Windows).
"""

import json
import os
import tempfile
import zipfile
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


def read_model_meta(path_dir, model_name):
    """Read ``path_dir/config.json`` of a saved npgen model and check it holds ``model_name``.

    Returns the parsed dict (with at least "model" and "config"). Raises ValueError with one
    sentence when the folder holds no saved model, another model, or a corrupt file.
    """
    config_path = os.path.join(os.fspath(path_dir), "config.json")
    try:
        with open(config_path, encoding="utf-8") as handle:
            meta = json.load(handle)
        saved = meta["model"]
        meta["config"]
    except FileNotFoundError:
        raise ValueError(f"{path_dir} has no config.json: it is not a saved npgen model") from None
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{config_path} is corrupt ({type(err).__name__}: {err})") from None
    if saved != model_name:
        raise ValueError(f"{path_dir} holds a saved {saved}, not a {model_name}")
    return meta


def read_npz(path):
    """Load every array of an .npz file into a dict, with ``allow_pickle=False``.

    Raises ValueError (one sentence) when the file is missing, not an .npz, or corrupt.
    """
    try:
        with open(path, "rb") as handle:
            header = handle.read(4)
    except FileNotFoundError:
        raise ValueError(f"no such file: {path}") from None
    except OSError as err:
        raise ValueError(f"cannot read {path} ({err.strerror})") from None
    if header != b"PK\x03\x04":
        raise ValueError(f"{path} is not a readable .npz file (it is not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as err:
        raise ValueError(f"{path} is not a readable .npz file ({type(err).__name__}: {err})") from None
