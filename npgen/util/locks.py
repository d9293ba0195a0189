"""Which npgen command writes a folder: locks that the operating system releases when their
holder dies, so a lock never outlives its command (Ctrl-C, ``kill -9`` and power cuts included).

Two kinds of writers, one rule: while a command writes a folder, any other command that would
write it is refused in one sentence (:class:`FolderBusy`, a ValueError) before it writes anything.

* In place (``npgen reproduce``, a sweep): the folder's ``.lock`` file, held with ``flock``
  for the command's life (:func:`folder_lock`) and removed at its end. It names the holder's
  process id.
* Whole folders (``npgen train``): the temporary folder beside ``--out``, named
  ``.tmp-write-<hash of the name>-<pid>-*`` (:func:`writer_prefix`), held with ``flock`` on
  the folder itself (:func:`claim_folder`) until it is renamed into place.

A temporary folder of the second kind that nobody holds, and whose process is gone, was left by
a dead command (``kill -9``): the next command that writes beside it removes it
(:func:`clear_dead_writers`), as a sweep clears what a killed sweep left in its folder. A live
command's folder is never removed: it holds its lock, and its process id is alive.

Windows has no ``flock``: there, commands are not guarded against each other.
"""

import hashlib
import os
import shutil
from contextlib import contextmanager

from .io import TMP_PREFIX

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

#: The lock file of a folder written in place.
LOCK_FILE = ".lock"
#: Prefix of the temporary folders of whole-folder writers.
WRITER_PREFIX = f"{TMP_PREFIX}write-"


class FolderBusy(ValueError):
    """Another npgen command is writing the folder (one sentence, naming it)."""


def _try_lock(fd):
    """Take an exclusive lock on ``fd`` without waiting; whether it was free."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _is_held(path):
    """Whether a live process holds a lock on ``path`` (a lock file or a folder)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # gone, or unreadable: nobody we can see holds it
        return False
    try:
        return not _try_lock(fd)
    finally:
        os.close(fd)


def _holder(lock_path):
    """'process N' for the process id written in a lock file, else 'another process'."""
    try:
        with open(lock_path, encoding="ascii") as handle:
            return f"process {int(handle.read().strip())}"
    except (OSError, ValueError):
        return "another process"


def busy_message(name, path, holder):
    """The refusal of a command whose folder ``path`` (argument ``name``) another one writes."""
    return (f"{name} {os.fspath(path)} is being written by another npgen command ({holder});"
            f" wait for it to finish, or give another {name}")


def _take(lock_path, name, folder):
    """A descriptor of ``lock_path`` holding its lock, or :class:`FolderBusy`."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask applies
        if not _try_lock(fd):
            os.close(fd)
            raise FolderBusy(busy_message(name, folder, f"{_holder(lock_path)} holds {lock_path}"))
        try:
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder removed it as this process took it: take the new one


@contextmanager
def folder_lock(folder, name, create=False):
    """Hold ``folder/.lock`` for the block, or raise :class:`FolderBusy` naming the argument
    ``name`` when another command holds it. The lock file is removed when the block ends, and
    so is ``folder`` if ``create`` made it and it is still empty (a command refused after
    taking the lock leaves nothing behind)."""
    created = create and not os.path.lexists(folder)
    if created:
        os.makedirs(folder)
    try:
        if fcntl is None:
            yield
            return
        lock_path = os.path.join(folder, LOCK_FILE)
        fd = _take(lock_path, name, folder)
        try:
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            yield
        finally:
            try:
                os.remove(lock_path)  # while it is held: a command that opened it retries
            except FileNotFoundError:
                pass
            os.close(fd)
    finally:
        if created:
            try:
                os.rmdir(folder)
            except OSError:  # not empty: the command wrote into it
                pass


def writer_prefix(path):
    """The prefix of this process's temporary folder for writing the folder ``path`` whole."""
    return f"{_writers_of(path)}{os.getpid()}-"


def _writers_of(path):
    """The prefix of every whole-folder writer's temporary folder for ``path``."""
    name = os.path.basename(os.path.abspath(os.fspath(path)))
    return f"{WRITER_PREFIX}{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}-"


def _live_writers(path, exclude=None):
    """The temporary folders beside ``path`` of live commands writing ``path`` whole."""
    parent, prefix = os.path.dirname(os.path.abspath(os.fspath(path))), _writers_of(path)
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    return [entry.path for entry in entries if entry.name.startswith(prefix)
            and entry.path != exclude and _is_held(entry.path)]


def check_not_busy(name, path):
    """Refuse (:class:`FolderBusy`, naming the argument ``name``) a folder ``path`` that another
    npgen command is writing: in place (a held ``.lock`` in it or in a folder above it), or
    whole (a live temporary folder beside it). Writes nothing."""
    folder = os.path.abspath(os.fspath(path))
    while True:
        lock_path = os.path.join(folder, LOCK_FILE)
        if _is_held(lock_path):
            raise FolderBusy(busy_message(name, path, f"{_holder(lock_path)} holds {lock_path}"))
        if os.path.dirname(folder) == folder:
            break
        folder = os.path.dirname(folder)
    writers = _live_writers(path)
    if writers:
        raise FolderBusy(busy_message(name, path, f"its temporary folder is {writers[0]}"))


@contextmanager
def claim_folder(tmp, path, name):
    """Hold the temporary folder ``tmp`` (named with :func:`writer_prefix`) for the block, as
    the writer of the folder ``path``; raise :class:`FolderBusy` (argument ``name``) when
    another live command writes ``path`` too. Two commands that claim one folder in the same
    instant may both be refused; neither then writes it."""
    if fcntl is None:
        yield
        return
    fd = os.open(tmp, os.O_RDONLY)
    try:
        _try_lock(fd)
        others = _live_writers(path, exclude=tmp)
        if others:
            raise FolderBusy(busy_message(name, path, f"its temporary folder is {others[0]}"))
        yield
    finally:
        os.close(fd)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clear_dead_writers(parent, note=None):
    """Remove the temporary folders in ``parent`` that whole-folder writers left when they died:
    those nobody holds and whose process is gone. ``note(text)`` hears of each. Returns their paths."""
    if fcntl is None:
        return []
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    for entry in entries:
        if not (entry.name.startswith(WRITER_PREFIX) and entry.is_dir(follow_symlinks=False)):
            continue
        try:
            pid = int(entry.name[len(WRITER_PREFIX):].split("-")[1])
        except (IndexError, ValueError):
            continue
        if _is_held(entry.path) or _pid_alive(pid):
            continue
        if note is not None:
            note(f"removing {entry.name}, left by an npgen command that was killed")
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed
