"""Every file npgen writes follows the umask, the atomically written ones (report.md, study.json,
metrics.json, config.json, the weights) like the figures: no 0600 files among 0644 ones."""

import os
import stat

import numpy as np
import pytest

from npgen import cli
from npgen.util import io
from tiny_study import ONE_RUN_PLAN, register


@pytest.fixture(params=[0o022, 0o002, 0o077], ids=["umask-022", "umask-002", "umask-077"])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def modes(folder):
    """{relative path: permission bits} of every file and folder under ``folder``."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def expect_umask(folder, mask):
    for path, mode in modes(folder).items():
        wanted = (0o777 if os.path.isdir(os.path.join(folder, path)) else 0o666) & ~mask
        assert mode == wanted, f"{path}: {oct(mode)}, expected {oct(wanted)}"


def test_the_atomic_writers_follow_the_umask(tmp_path, umask):
    io.atomic_write_text(tmp_path / "report.md", "# report\n")
    io.atomic_write_json(tmp_path / "study.json", {"preset": "quick"})
    io.atomic_savez(tmp_path / "weights.npz", w=np.ones(3))
    io.atomic_save_npy(tmp_path / "samples.npy", np.ones(3))
    assert len(modes(tmp_path)) == 4
    expect_umask(tmp_path, umask)


@pytest.mark.parametrize("umask", [0o002], ids=["umask-002"], indirect=True)
def test_a_training_run_and_a_study_follow_the_umask(tmp_path, monkeypatch, umask):
    register(monkeypatch, ONE_RUN_PLAN)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "gan", "--m", "5", "--preset", "tiny", "--out", "run"]) == 0
    expect_umask(tmp_path / "run", umask)
    assert cli.main(["reproduce", "--preset", "tiny", "--only", "fig3", "--jobs", "1", "--out", "study"]) == 0
    assert {"report.md", "study.json", "fig3.png"} <= set(os.listdir(tmp_path / "study"))
    expect_umask(tmp_path / "study", umask)
