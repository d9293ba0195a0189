"""Two commands on one folder, and what a killed command leaves.

The first command is a real second process (tests/held_cli.py) caught in the middle of its
training; the second runs in this process. The second must stop in one sentence with exit status
2, naming the folder and what to do, and change nothing; the first must finish unharmed. A
``kill -9`` leaves a temporary folder beside --out, which the next ``npgen train`` there
removes, while a live command's folder is never touched.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from npgen import cli
from npgen.util import locks
from test_bad_inputs import tree_digest
from tiny_study import ONE_RUN_PLAN, register

HELD_CLI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "held_cli.py")


class Held:
    """A command of tests/held_cli.py, started in ``folder`` and held in its first training run."""

    def __init__(self, folder, argv, gate="gate"):
        self.gate = str(folder / gate)
        self.process = subprocess.Popen([sys.executable, HELD_CLI, self.gate, *argv], cwd=folder,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 600
        while not os.path.exists(self.gate + ".started"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"the first command never started training: {self.process.communicate()}")
            time.sleep(0.05)

    def finish(self):
        """Let it go on; its exit status and stderr."""
        open(self.gate, "w", encoding="utf-8").close()
        _, err = self.process.communicate(timeout=600)
        return self.process.returncode, err

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=60)  # reaped: its process id is gone


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    register(monkeypatch, ONE_RUN_PLAN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(argv, capsys, folder, fragment):
    """``argv`` ends in exit status 2 and one line naming ``fragment``, with ``folder`` unchanged."""
    before = tree_digest(folder)
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "is being written by another npgen command" in lines[0], err
    assert fragment in lines[0] and "wait for it to finish" in lines[0], lines[0]
    assert tree_digest(folder) == before
    return lines[0]


REPRODUCE = ["reproduce", "--preset", "tiny", "--only", "fig3", "--jobs", "1"]
TRAIN = ["train", "gan", "--m", "5", "--preset", "tiny"]


def test_two_reproductions_in_one_folder_as_two_processes(tmp_path):
    first = Held(tmp_path, [*REPRODUCE, "--out", "study"])
    before = tree_digest(tmp_path / "study")
    second = subprocess.run([sys.executable, HELD_CLI, "-", *REPRODUCE, "--out", "study"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 2, second.stderr
    assert second.stderr.splitlines() == [
        f"npgen reproduce: error: --out study is being written by another npgen command (process"
        f" {first.process.pid} holds {tmp_path / 'study' / '.lock'}); wait for it to finish, or give another --out"]
    assert tree_digest(tmp_path / "study") == before
    status, err = first.finish()
    assert status == 0, err
    assert (tmp_path / "study" / "report.md").exists()


def test_every_writing_command_is_refused_while_a_reproduction_writes(tiny, capsys):
    first = Held(tiny, [*REPRODUCE, "--out", "study"])
    try:
        refused(["reproduce", "--preset", "tiny", "--only", "fig7", "--out", "study"], capsys, tiny, "--out study")
        refused(["reproduce", "--preset", "tiny", "--only", "fig4", "--jobs", "1", "--out", "study"], capsys,
                tiny, "--out study")
        refused([*TRAIN, "--out", "study/runs/mine"], capsys, tiny, "--out study/runs/mine")
        refused(["figure", "3", "--from", "study"], capsys, tiny, "--from study")
    finally:
        status, err = first.finish()
    assert status == 0, err


def test_a_second_train_into_the_same_folder_is_refused(tiny, capsys):
    first = Held(tiny, [*TRAIN, "--out", "run"])
    try:
        refused([*TRAIN, "--out", "run"], capsys, tiny, "--out run")
        refused([*TRAIN, "--out", "run", "--force", "--seed", "1"], capsys, tiny, "--out run")
        refused([*REPRODUCE, "--out", "run"], capsys, tiny, "--out run")
        assert cli.main([*TRAIN, "--out", "other"]) == 0  # beside it, another folder: no conflict
    finally:
        status, err = first.finish()
    assert status == 0, err
    assert (tiny / "run" / "metrics.json").exists()


def test_kill_9_leftovers_are_cleared_by_the_next_train_and_live_ones_kept(tiny, capsys):
    killed = Held(tiny, [*TRAIN, "--out", "dead-run"], gate="gate-dead")
    leftover, = [name for name in os.listdir(tiny) if name.startswith(locks.WRITER_PREFIX)]
    killed.kill()
    assert os.path.isdir(tiny / leftover)                           # nothing removed it yet
    alive = Held(tiny, [*TRAIN, "--out", "live-run"], gate="gate-live")
    assert not os.path.exists(tiny / leftover)                      # the next train cleared it
    live, = [name for name in os.listdir(tiny) if name.startswith(locks.WRITER_PREFIX)]
    try:
        assert cli.main([*TRAIN, "--out", "next-run"]) == 0
        assert "removing" not in capsys.readouterr().err
        assert os.path.isdir(tiny / live)                           # a live command's folder stays
    finally:
        status, err = alive.finish()
    assert status == 0, err
    assert f"removing {leftover}, left by an npgen command that was killed" in err
    assert sorted(name for name in os.listdir(tiny) if not name.startswith("gate")) == ["live-run", "next-run"]


def test_a_leftover_whose_process_lives_is_kept(tmp_path):
    """Unheld but named after a live process (this one, between creating its folder and locking
    it): not a dead command's, so it stays."""
    mine = tmp_path / f"{locks.writer_prefix(tmp_path / 'x')}abc"
    mine.mkdir()
    assert locks.clear_dead_writers(tmp_path) == []
    assert mine.is_dir()
