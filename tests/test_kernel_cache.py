"""The CPU kernels compiled apart: the lock that makes a reproduction's processes wait for the
compiling one, so that every run loads the same cached code."""

import fcntl
import os
import subprocess
import sys
import time

import pytest

from npgen import kernels
from npgen.study.kernel_cache import kernels_compiled_apart


def test_a_process_importing_the_cpu_kernels_waits_for_the_lock(tmp_path):
    path = tmp_path / "compiling.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    code = ("import time; from npgen import kernels; kernels.get_backend('cpu'); print(time.time())")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                             env={**os.environ, kernels.CACHE_LOCK_ENV: str(path)})
    time.sleep(4)  # long enough for the child to load numba and the kernels, were it not waiting
    assert child.poll() is None
    released = time.time()
    os.close(fd)
    loaded, _ = child.communicate(timeout=120)
    assert child.returncode == 0 and float(loaded) >= released


def test_without_the_lock_file_nothing_waits(tmp_path, monkeypatch):
    monkeypatch.setenv(kernels.CACHE_LOCK_ENV, str(tmp_path / "gone.lock"))
    kernels.wait_for_kernel_cache()  # returns: the reproduction that made it has ended


def test_the_compiling_process_holds_the_lock_until_it_has_loaded_the_kernels(monkeypatch):
    monkeypatch.delenv(kernels.CACHE_LOCK_ENV, raising=False)
    with kernels_compiled_apart() as compiler:
        path = os.environ[kernels.CACHE_LOCK_ENV]
        fd = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # importing numba alone takes over a second
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_SH)  # ... then the compiling process ends and lets go
        finally:
            os.close(fd)
        # it loaded the installed npgen's kernels, even from a source checkout's root
        assert compiler.wait() == 0
    assert kernels.CACHE_LOCK_ENV not in os.environ and not os.path.exists(path)


def test_without_a_temporary_folder_the_block_runs_and_each_process_compiles_for_itself(monkeypatch):
    from npgen.study import kernel_cache

    def no_folder(**_):
        raise PermissionError(13, "Permission denied")
    monkeypatch.delenv(kernels.CACHE_LOCK_ENV, raising=False)
    monkeypatch.setattr(kernel_cache.tempfile, "mkdtemp", no_folder)
    ran = []
    with kernels_compiled_apart():
        ran.append(os.environ.get(kernels.CACHE_LOCK_ENV))
    assert ran == [None]
