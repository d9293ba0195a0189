"""``python tests/held_cli.py GATE ARGV...``: npgen's command line with the tiny presets, whose
first training run waits until the file GATE exists (it writes GATE.started when it begins to
wait). A test starts it, waits for GATE.started, and meanwhile runs a second command on the same
folder: the first one is then, for certain, in the middle of writing. GATE "-" waits for nothing.
"""

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tiny_study import ONE_RUN_PLAN, register  # noqa: E402

from npgen import cli  # noqa: E402
from npgen.study import reproduce, runs  # noqa: E402


def held(train_run, gate):
    """``train_run`` that first waits for the file ``gate``."""
    def waiting(config, run_dir, *args, **kwargs):
        with open(gate + ".started", "w", encoding="utf-8"):
            pass
        while not os.path.exists(gate):
            time.sleep(0.05)
        return train_run(config, run_dir, *args, **kwargs)
    return waiting


def main(gate, argv):
    patch = pytest.MonkeyPatch()
    register(patch, ONE_RUN_PLAN)
    if gate != "-":
        patch.setattr(runs, "train_run", held(runs.train_run, gate))
        patch.setattr(reproduce, "train_run", held(reproduce.train_run, gate))
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
