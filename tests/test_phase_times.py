"""The phases of a run are timed into its metrics, and the profile table sums them."""

import time

import numpy as np
import pytest

from npgen.models.sgm import SGM
from npgen.study import runs
from npgen.study.phase_profile import phase_table
from npgen.study.phase_times import INSIDE, PhaseClock
from tiny_study import register

SGM_PHASES = {"train", "sample", "lipschitz", "distribution", "sampler_trace", "exact_score",
              "sampler_search", "save"}


def test_a_phase_adds_up_over_its_entries_and_counts_cpu_apart_from_waiting():
    clock = PhaseClock()
    for _ in range(2):
        with clock.phase("wait"):
            time.sleep(0.05)
    busy = clock.timed("busy", lambda n: sum(i * i for i in range(n)))
    busy(300_000)
    assert clock.timed("none", None) is None
    assert clock.seconds["wait"]["wall"] >= 0.1
    assert clock.seconds["wait"]["cpu"] < 0.05  # sleeping takes no CPU
    assert clock.seconds["busy"]["cpu"] > 0


def test_an_sgm_run_records_each_phase_within_its_wall_time(tmp_path, monkeypatch):
    """Also: the run samples once with the sampler's gradient; its samples are those of a plain
    sampling pass with the run's sample seed."""
    register(monkeypatch)
    config, metrics = runs.train_command("sgm", 4, "tiny", 0, str(tmp_path / "run"))
    model = SGM.load(str(tmp_path / "run" / "model"))
    plain = model.sample(config["n_samples"], seed=config["seed"] + 1_000_003, quiet=True, denoise=config["denoise"])
    np.testing.assert_array_equal(np.load(tmp_path / "run" / "samples.npy"), plain)
    phases = metrics["phase_seconds"]
    assert set(phases) == SGM_PHASES
    outer = sum(p["wall"] for name, p in phases.items() if name not in {*INSIDE, "save"})
    assert 0 < outer <= metrics["wall_seconds"]  # the run's time before its files are saved
    assert phases["sampler_search"]["wall"] <= phases["exact_score"]["wall"]


def test_phase_table_sums_runs_per_group_and_counts_untimed_runs():
    def timed(train, inner):
        return {"phase_seconds": {"train": {"wall": 9.0, "cpu": train},
                                  "lipschitz_curve": {"wall": 9.0, "cpu": inner}}}
    rows = [({"model": "gan"}, timed(2.0, 0.5)), ({"model": "gan"}, timed(3.0, 1.0)),
            ({"model": "gan"}, {}), ({"model": "vae"}, timed(1.0, 0.25))]
    table = phase_table(rows, lambda config: config["model"])
    assert table["gan"] == {"runs": 3, "untimed": 1, "total": 5.0, "train": 5.0, "lipschitz_curve": 1.5}
    assert table["vae"]["total"] == pytest.approx(1.0)
