"""One compile of the CPU kernels for a whole reproduction, in a process that runs nothing else.

Importing :mod:`npgen.kernels.cpu` compiles every kernel when numba's on-disk cache is cold
(about 30 s on one core) and loads them from it otherwise (about 2 s). Code that numba compiled
in the process that runs it and the same code loaded from the cache can round float32 results
differently: the 1-D SGM sampler's gradient (|grad g|^2, d x_T / d x_0) differed in its last
bits between a process that compiled its kernels and one that loaded them. If a reproduction's
workers compiled for themselves, a run's numbers would depend on which worker ran it and on
the cache's state.

:func:`kernels_compiled_apart` therefore starts one process that only imports the kernels
(compiling them into the cache when it is cold) and holds a lock file while it does; every
process of the reproduction that needs the kernels waits for that lock
(:func:`npgen.kernels.wait_for_kernel_cache`) and then loads them from the cache. Work that
needs no kernel (the OT costs of Figure 7's embedding) goes on meanwhile, so the compile
costs one core, not the whole machine.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

from .. import kernels
from ..util.environment import environment_kept

try:
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms CI runs
    fcntl = None

#: What the compiling process runs.
COMPILE = "import npgen.kernels.cpu"


@contextlib.contextmanager
def kernels_compiled_apart():
    """Within the block, a separate process compiles (or loads) the CPU kernels into numba's
    cache, and $NPGEN_KERNEL_CACHE_LOCK makes this process and those it starts wait for it
    before they load them. Where files cannot be locked, or no temporary folder or process can
    be made, nothing is started (each process then compiles what it needs). Yields the process
    (a ``subprocess.Popen``), or None; it is stopped if the block ends first (an error, Ctrl-C)."""
    compiler = folder = None
    if fcntl is not None:
        try:
            folder = tempfile.mkdtemp(prefix="npgen-kernels-")
            path = os.path.join(folder, "compiling.lock")
            compiler = _start_compiler(path)
        except OSError:
            compiler = None
    try:
        if compiler is None:
            yield None
            return
        with environment_kept(kernels.CACHE_LOCK_ENV):
            os.environ[kernels.CACHE_LOCK_ENV] = path
            yield compiler
    finally:
        if compiler is not None:
            if compiler.poll() is None:
                compiler.terminate()
            compiler.wait()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _start_compiler(path):
    """The process that imports the CPU kernels, holding an exclusive lock on ``path`` (taken
    here, before it starts, so that no process can pass early) until it exits."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # run in the lock's folder: ``-c`` puts the working folder first on sys.path, and a
        # source checkout there would shadow the installed npgen
        return subprocess.Popen([sys.executable, "-c", COMPILE], pass_fds=(fd,), cwd=os.path.dirname(path),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        os.close(fd)  # the lock lives on in the child's copy, until the child exits
