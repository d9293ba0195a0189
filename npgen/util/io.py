"""Files npgen writes and reads: atomic writes, and readers that fail with one sentence.

A reader sees the old file or the new one, never half of one: each writer writes to a
temporary file in the destination folder, flushes it to disk, then renames it over the
destination (``os.replace`` is atomic on POSIX and Windows). Folders are written the same way
(:func:`atomic_directory`): into a temporary folder beside the destination, renamed into place
once complete.
"""

import contextlib
import errno
import json
import os
import shutil
import tempfile
import zipfile
from contextlib import contextmanager

import numpy as np


#: Prefix of the temporary files and folders npgen writes before renaming them into place.
TMP_PREFIX = ".tmp-"


@contextmanager
def _atomic_path(path):
    """Yield a temporary path next to ``path``; on success, move it over ``path``.

    Raises ValueError (one sentence) when ``path`` is a folder or cannot be written there.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; give the path of a file to write")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=os.path.splitext(path)[1])
    except OSError as err:
        raise ValueError(f"cannot write {path} ({err.strerror or err})") from None
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a written file follows the umask
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk, a quota: the caller's write has no file name to give
        raise ValueError(f"cannot write {path} ({err.strerror or err}); nothing was replaced") from None
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
    atomic_write_text(path, _json_text(obj))


def _json_text(obj):
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def atomic_write_texts(texts):
    """Write several files all or none: ``texts`` maps each path to its text (UTF-8), or to a
    dict or list written as :func:`atomic_write_json` writes it. Every file is written to its
    temporary and flushed to disk first; only when all are there are they renamed into place,
    so a full disk leaves every one of them as it was."""
    with contextlib.ExitStack() as stack:
        for path, text in texts.items():
            tmp = stack.enter_context(_atomic_path(path))
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text if isinstance(text, str) else _json_text(text))
                handle.flush()
                os.fsync(handle.fileno())


#: Version of the saved-model folder layout (config.json beside one .npz per network).
MODEL_FORMAT_VERSION = 1


def write_model_meta(path_dir, model_name, config, **extra):
    """Write ``path_dir/config.json`` of a saved model: its name, the format version, its
    constructor arguments ``config`` and any ``extra`` entries. Written last by every save."""
    atomic_write_json(os.path.join(os.fspath(path_dir), "config.json"),
                      {"model": model_name, "format": MODEL_FORMAT_VERSION, "config": config,
                       **extra})


def read_model_meta(path_dir, model_name):
    """Read ``path_dir/config.json`` of a saved npgen model and check it holds ``model_name``.

    Returns the parsed dict (with at least "model", "format" and a "config" dict). Raises
    ValueError with one sentence when the folder holds no saved model, another model, a
    format version other than :data:`MODEL_FORMAT_VERSION`, or a corrupt file.
    """
    config_path = os.path.join(os.fspath(path_dir), "config.json")
    try:
        with open(config_path, encoding="utf-8") as handle:
            meta = json.load(handle)
        saved, version, config = meta["model"], meta["format"], meta["config"]
    except FileNotFoundError:
        raise ValueError(f"{path_dir} has no config.json: it is not a saved npgen model") from None
    except NotADirectoryError:
        raise ValueError(f"{path_dir} is not a folder: a saved npgen model is a folder") from None
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{config_path} is corrupt ({type(err).__name__}: {err})") from None
    if saved != model_name:
        raise ValueError(f"{path_dir} holds a saved {saved}, not a {model_name}")
    if version != MODEL_FORMAT_VERSION or isinstance(version, bool):
        raise ValueError(f"{config_path} has format version {version!r}; this npgen reads"
                         f" version {MODEL_FORMAT_VERSION}")
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} is corrupt: its \"config\" entry is not an object")
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
    except ValueError as err:
        if "pickle" in str(err) or "Object arrays" in str(err):
            raise ValueError(f"{path} holds Python objects (pickled arrays), which npgen never loads;"
                             " it reads arrays of numbers written by numpy.savez") from None
        raise ValueError(f"{path} is not a readable .npz file ({type(err).__name__}: {err})") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as err:
        raise ValueError(f"{path} is not a readable .npz file ({type(err).__name__}: {err})") from None


#: The most values :func:`read_npy` reads from one .npy file (8 GB of float64).
MAX_NPY_VALUES = 10 ** 9


def read_npy(path, mmap_mode=None):
    """Read the array of a .npy file with ``allow_pickle=False``, after checking its header.

    Raises ValueError (one sentence naming ``path``) when the file is missing, is not a .npy
    file, holds pickled Python objects, or declares more than :data:`MAX_NPY_VALUES` values or
    more bytes than it holds; so a damaged header never makes numpy allocate what it declares.
    """
    try:
        with open(path, "rb") as handle:
            try:
                version = np.lib.format.read_magic(handle)
                shape, _, dtype = (np.lib.format.read_array_header_1_0(handle) if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0(handle))
            except (ValueError, EOFError, SyntaxError, TypeError) as err:
                raise ValueError(f"{path} is not a .npy array file written by numpy.save ({err})") from None
            start = handle.tell()
            size = os.fstat(handle.fileno()).st_size
    except FileNotFoundError:
        raise ValueError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a .npy array file") from None
    except OSError as err:
        raise ValueError(f"cannot read {path} ({err.strerror})") from None
    if dtype.hasobject:
        raise ValueError(f"{path} holds Python objects (a pickled array), which npgen never loads;"
                         " it reads arrays of numbers written by numpy.save")
    count = int(np.prod(shape, dtype=object))
    if count > MAX_NPY_VALUES or count * dtype.itemsize > size - start:
        raise ValueError(f"{path} is damaged: its header declares {count:,} values of {dtype.name} in shape"
                         f" {shape}, but the file holds {size - start:,} bytes after the header")
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path} is not a readable .npy array file ({err})") from None


# --------------------------------------------------------------------------- whole folders

def fsync_path(path):
    """Flush a file, or a directory's entries (POSIX only), to disk."""
    if os.path.isdir(path) and os.name != "posix":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:  # a full disk shows here first when the writes were buffered
        raise ValueError(f"cannot write {path} ({err.strerror or err})") from None


def file_sizes(folder):
    """{path relative to ``folder`` (with /): size in bytes} for every file under ``folder``."""
    sizes = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            sizes[os.path.relpath(path, folder).replace(os.sep, "/")] = os.path.getsize(path)
    return sizes


def check_folder_target(name, path):
    """Check that the folder ``path`` could be created or replaced, without creating anything.

    Raises ValueError with one sentence, naming the argument ``name``, when ``path`` is an
    existing file, lies under a file, or its nearest existing folder is not writable.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"{name} must be a folder path, got {path!r}")
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f"{name} {path} is an existing file, not a folder; give a folder path")
    parent = os.path.dirname(path)
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{name} {path} lies under the file {parent}; give a folder path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {path} cannot be written: the folder {parent} is read-only")


def check_own_folder(name, path, holds, what):
    """:func:`check_folder_target`, then refuse a folder that is not empty and of which
    ``holds(path)`` is false: npgen writes only into new or empty folders, or into one that
    already holds ``what`` (its own kind of output). Returns whether ``path`` holds ``what``."""
    check_folder_target(name, path)
    if not os.path.isdir(path) or not os.listdir(path):
        return False
    if not holds(path):
        raise ValueError(f"{name} {os.fspath(path)} is a folder that holds no {what}; npgen never"
                         " writes into it, give a new or empty folder")
    return True


def holds_model(path_dir, model_name):
    """Whether ``path_dir`` holds a saved ``model_name`` that :func:`read_model_meta` accepts."""
    try:
        read_model_meta(path_dir, model_name)
    except ValueError:
        return False
    return True


def check_model_folder(path_dir, model_name):
    """Check that a model may be saved into the folder ``path_dir``: a new or empty folder, or
    one holding a saved ``model_name`` (which the save replaces). Anything else, a user's
    folder of other files included, is refused in one sentence; nothing is created."""
    check_own_folder("path_dir", path_dir, lambda p: holds_model(p, model_name), f"saved {model_name}")


def _umask():
    """The process's file-mode creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_directory(path, replace=False, prefix=TMP_PREFIX):
    """Write the folder ``path`` whole or not at all.

    Yields a fresh temporary folder (``prefix`` + random) beside ``path``, created with its
    missing parents. When the block ends normally, every file in it is flushed to disk and it
    is renamed to ``path``; if the block raises (Ctrl-C included), the temporary folder is
    removed and ``path`` is left exactly as it was. ``path`` must not exist or be an empty
    folder, unless ``replace``: then an existing ``path`` is replaced whole, once the new
    folder is complete (renamed aside, the new one renamed in, the old one deleted).
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a run folder follows the umask
    try:
        yield tmp
        for relpath in file_sizes(tmp):
            fsync_path(os.path.join(tmp, relpath))
        fsync_path(tmp)
        if replace and os.path.lexists(path):
            aside = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}old-", dir=parent)
            os.rename(path, os.path.join(aside, "old"))
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(os.path.join(aside, "old"), path)
                os.rmdir(aside)
                raise
            shutil.rmtree(aside)
        else:
            try:
                os.rename(tmp, path)
            except OSError as err:
                if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise ValueError(f"{path} was created by someone else while npgen wrote it;"
                                     " nothing was replaced") from None
                raise ValueError(f"{path} cannot be replaced by the folder npgen wrote beside it"
                                 f" ({err.strerror}); nothing was replaced") from None
        fsync_path(parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
