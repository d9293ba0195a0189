"""npgen.study.sweep: resuming after kill -9, corrupt runs redone, parallel and custom executors,
failed and interrupted runs, configuration keys."""

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import npgen
from npgen.study import sweep
from npgen.study.sweep import (config_key, find_run_dir, load_results, run_name, run_sweep,
                         sweep_status)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
NPGEN_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(npgen.__file__)))
HOLD_ENV = "NPGEN_TEST_SWEEP_HOLD_SEED"


def toy_run(config, run_dir):
    """A stand-in for a training run; top level so that spawned workers can import it.

    Appends "<seed> <pid>" to config["log"] (one O_APPEND write, so lines from concurrent
    processes never mix), then writes samples.npy and returns numbers that depend on the seed
    only. The run whose seed is in $NPGEN_TEST_SWEEP_HOLD_SEED writes a partial file and hangs.
    """
    fd = os.open(config["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{config['seed']} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    if os.environ.get(HOLD_ENV) == str(config["seed"]):
        with open(os.path.join(run_dir, "partial.bin"), "wb") as handle:
            handle.write(b"half a run")
        time.sleep(3600)
    if config.get("raise") == "error":
        raise ValueError(f"seed {config['seed']} diverged")
    if config.get("raise") == "interrupt":
        raise KeyboardInterrupt
    time.sleep(config.get("sleep", 0.0))
    samples = np.random.default_rng(config["seed"]).normal(size=100)
    np.save(os.path.join(run_dir, "samples.npy"), samples)
    return {"mean": float(samples.mean()), "std": np.float32(samples.std()), "seed": config["seed"]}


def toy_configs(tmp_path, n, **options):
    return [{"model": "toy", "seed": seed, "log": str(tmp_path / "calls.log"), **options}
            for seed in range(n)]


def calls(tmp_path):
    """Counter {seed: number of toy_run calls} and the set of pids that made them."""
    path = tmp_path / "calls.log"
    lines = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return collections.Counter(int(seed) for seed, _ in lines), {int(pid) for _, pid in lines}


def is_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def temporaries(out):
    return sorted(name for name in os.listdir(out) if name.startswith(".tmp-"))


@pytest.fixture(autouse=True)
def no_hold(monkeypatch):
    monkeypatch.delenv(HOLD_ENV, raising=False)


# --------------------------------------------------------------------------- resuming

def start_sweep_process(configs, out, held, jobs=1):
    """A sweep in a real child process, where the run of seed ``held`` hangs once started."""
    script = textwrap.dedent(f"""
        import json, signal, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.path[:0] = [{TESTS_DIR!r}, {NPGEN_PARENT!r}]
        from npgen.study.sweep import run_sweep
        from test_sweep import toy_run
        if __name__ == "__main__":
            run_sweep(json.loads({json.dumps(configs)!r}), toy_run, {str(out)!r}, jobs={jobs})
    """)
    return subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **{HOLD_ENV: str(held)}))


def wait_for_held_run(process, out):
    """Wait until the held run has written its partial file into its temporary directory."""
    deadline = time.monotonic() + 30
    while not (out.exists() and any((out / name / "partial.bin").exists() for name in temporaries(out))):
        assert process.poll() is None, "the sweep ended before the held run started"
        assert time.monotonic() < deadline, "the held run never started"
        time.sleep(0.01)


def test_kill_9_mid_sweep_then_resume_recomputes_nothing_and_loses_nothing(tmp_path, capsys):
    out = tmp_path / "runs"
    configs = toy_configs(tmp_path, 12, sleep=0.1)
    held = 6  # in flight when SIGKILL comes
    process = start_sweep_process(configs, out, held)
    try:
        wait_for_held_run(process, out)
    finally:
        process.kill()
        process.communicate()

    # What the killed sweep left: finished runs intact, one half-written temporary directory.
    done_before = {c["seed"] for c in configs if find_run_dir(c, out) is not None}
    started, _ = calls(tmp_path)
    in_flight = set(started) - done_before
    assert in_flight == {held}
    assert done_before and done_before == set(started) - {held}
    assert sweep_status(configs, out) == {"total": 12, "done": len(done_before), "corrupt": 0,
                                         "missing": 12 - len(done_before), "temporary": 1}
    leftover, = temporaries(out)
    assert leftover.startswith(f".tmp-{config_key(configs[held])[:12]}-")
    finished = {seed: os.stat(find_run_dir(configs[seed], out)).st_ino for seed in done_before}
    for seed in done_before:
        marker = json.loads((out / run_name(configs[seed]) / "COMPLETE.json").read_text())
        assert marker["key"] == config_key(configs[seed])
        assert set(marker["files"]) == {"config.json", "metrics.json", "samples.npy"}

    results = run_sweep(configs, toy_run, out)

    assert f"removing {leftover}" in capsys.readouterr().err
    assert [r["seed"] for r in results] == list(range(12))
    assert sweep_status(configs, out)["done"] == 12 and temporaries(out) == []
    # Finished runs were neither recomputed nor replaced; the run in flight ran once in each
    # process; every other run ran exactly once.
    assert {seed: os.stat(find_run_dir(configs[seed], out)).st_ino for seed in done_before} == finished
    started, _ = calls(tmp_path)
    assert started == {seed: 2 if seed in in_flight else 1 for seed in range(12)}


def test_ctrl_c_stops_the_worker_processes_at_once(tmp_path):
    out = tmp_path / "runs"
    configs = toy_configs(tmp_path, 6)
    process = start_sweep_process(configs, out, held=4, jobs=2)
    try:
        wait_for_held_run(process, out)
        process.send_signal(signal.SIGINT)  # to the sweep's process only, not its workers
        _, stderr = process.communicate(timeout=10)  # the held run never ends by itself
    finally:
        process.kill()
    assert process.returncode != 0 and "interrupted after" in stderr
    _, pids = calls(tmp_path)
    # Every worker that ran something (the one holding the hung run among them) is gone; how
    # many workers got a run before the interrupt depends on scheduling.
    assert 1 <= len(pids) <= 2 and not any(map(is_running, pids))
    assert [r is not None for r in run_sweep(configs, toy_run, out, quiet=True)] == [True] * 6


def test_a_sweep_beside_another_on_a_stopped_pool_ends_interrupted_recording_no_failure(tmp_path):
    """Two sweeps share one pool (``npgen reproduce`` runs Figure 7's first phase beside the
    other figures); when Ctrl-C stops the pool's workers under the other sweep, this one's runs
    in flight were interrupted, not failed."""
    import threading
    configs = toy_configs(tmp_path, 2, sleep=60)
    pool, outcome = sweep.spawn_pool(2, toy_run), {}

    def beside():
        try:
            run_sweep(configs, toy_run, tmp_path / "beside", executor=pool, quiet=True)
        except BaseException as error:  # noqa: BLE001 -- what the sweep raised is the result
            outcome["error"] = error

    thread = threading.Thread(target=beside)
    thread.start()
    deadline = time.monotonic() + 60
    while sum(calls(tmp_path)[0].values()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    sweep.stop_workers(pool)
    thread.join(30)
    pool.shutdown()
    assert isinstance(outcome.get("error"), KeyboardInterrupt)
    assert sweep.read_failures(tmp_path / "beside") == []
    assert not any(map(is_running, calls(tmp_path)[1]))


def damage_marker_deleted(run_dir):
    os.remove(run_dir / "COMPLETE.json")


def damage_marker_of_another_key(run_dir):
    marker = json.loads((run_dir / "COMPLETE.json").read_text())
    (run_dir / "COMPLETE.json").write_text(json.dumps(dict(marker, key="0" * 64)))


def damage_marker_unreadable(run_dir):
    (run_dir / "COMPLETE.json").write_text('{"key": "')


def damage_metrics_truncated(run_dir):
    text = (run_dir / "metrics.json").read_text()
    (run_dir / "metrics.json").write_text(text[: len(text) // 2])


def damage_listed_file_deleted(run_dir):
    os.remove(run_dir / "samples.npy")


def damage_listed_file_truncated(run_dir):
    data = (run_dir / "samples.npy").read_bytes()
    (run_dir / "samples.npy").write_bytes(data[:-8])


@pytest.mark.parametrize("damage", [damage_marker_deleted, damage_marker_of_another_key,
                                    damage_marker_unreadable, damage_metrics_truncated,
                                    damage_listed_file_deleted, damage_listed_file_truncated])
def test_a_damaged_run_directory_is_moved_aside_and_redone(tmp_path, damage):
    out = tmp_path / "runs"
    configs = toy_configs(tmp_path, 3)
    expected = run_sweep(configs, toy_run, out, quiet=True)
    damage(out / run_name(configs[1]))

    assert load_results(configs, out) == [expected[0], None, expected[2]]
    assert sweep_status(configs, out) == {"total": 3, "done": 2, "corrupt": 1, "missing": 0,
                                         "temporary": 0}
    assert run_sweep(configs, toy_run, out, quiet=True) == expected
    assert calls(tmp_path)[0] == {0: 1, 1: 2, 2: 1}
    assert sweep_status(configs, out)["done"] == 3
    aside, = os.listdir(out / ".corrupt")
    assert aside.startswith(run_name(configs[1]) + ".")


# --------------------------------------------------------------------------- executors

def test_two_worker_processes_give_the_results_of_one_process(tmp_path):
    configs = toy_configs(tmp_path, 6, sleep=0.1)
    serial = run_sweep(configs, toy_run, tmp_path / "serial", quiet=True)
    _, serial_pids = calls(tmp_path)
    os.remove(tmp_path / "calls.log")

    parallel = run_sweep(configs, toy_run, tmp_path / "parallel", jobs=2, quiet=True)

    counts, pids = calls(tmp_path)
    assert serial_pids == {os.getpid()} and os.getpid() not in pids
    assert counts == {seed: 1 for seed in range(6)}
    assert parallel == serial
    for config in configs:
        assert (np.load(find_run_dir(config, tmp_path / "serial") + "/samples.npy").tobytes()
                == np.load(find_run_dir(config, tmp_path / "parallel") + "/samples.npy").tobytes())


class CountingThreadPool(ThreadPoolExecutor):
    submitted = 0

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_a_given_executor_is_used_and_left_open(tmp_path):
    configs = toy_configs(tmp_path, 4)
    with CountingThreadPool(2) as executor:
        results = run_sweep(configs, toy_run, tmp_path / "threads", executor=executor, quiet=True)
        assert executor.submitted == 4
        assert executor.submit(sum, [1, 2]).result() == 3
    assert results == run_sweep(configs, toy_run, tmp_path / "serial", quiet=True)


def test_a_process_pool_refuses_a_run_fn_it_cannot_send(tmp_path):
    with pytest.raises(ValueError, match="top-level function"):
        run_sweep(toy_configs(tmp_path, 2), lambda config, run_dir: {}, tmp_path, jobs=2, quiet=True)


# --------------------------------------------------------------------------- failures

def test_a_failing_run_is_recorded_and_the_others_complete(tmp_path, capsys):
    out = tmp_path / "runs"
    configs = toy_configs(tmp_path, 4)
    configs[1]["raise"] = "error"

    results = run_sweep(configs, toy_run, out)

    assert results[1] is None and [r["seed"] for r in results if r] == [0, 2, 3]
    failure, = json.loads((out / "failures.json").read_text())
    assert failure["name"] == run_name(configs[1]) and failure["config"] == configs[1]
    assert failure["error"] == "ValueError: seed 1 diverged" and "toy_run" in failure["traceback"]
    assert "1 of 4 runs failed" in capsys.readouterr().err
    assert temporaries(out) == [] and sweep_status(configs, out)["missing"] == 1

    del configs[1]["raise"]
    run_sweep(configs, toy_run, out, quiet=True)
    assert json.loads((out / "failures.json").read_text()) == []
    assert sweep_status(configs, out)["done"] == 4


@pytest.mark.parametrize("jobs", [1, 2])
def test_fail_fast_re_raises_the_first_error(tmp_path, jobs):
    out = tmp_path / "runs"
    configs = toy_configs(tmp_path, 4)
    configs[0]["raise"] = "error"
    with pytest.raises(ValueError, match="seed 0 diverged"):
        run_sweep(configs, toy_run, out, jobs=jobs, quiet=True, fail_fast=True)
    assert [f["name"] for f in json.loads((out / "failures.json").read_text())] == [run_name(configs[0])]
    assert temporaries(out) == []
    if jobs == 1:
        assert calls(tmp_path)[0] == {0: 1}


@pytest.mark.parametrize("threads", [False, True])
def test_an_interrupt_stops_the_sweep_and_keeps_finished_runs(tmp_path, threads):
    out = tmp_path / "runs"
    configs = toy_configs(tmp_path, 8, sleep=0.2)
    configs[2]["raise"] = "interrupt"
    with ThreadPoolExecutor(1) as pool, pytest.raises(KeyboardInterrupt):
        run_sweep(configs, toy_run, out, executor=pool if threads else None, quiet=True)
    assert temporaries(out) == []
    assert [r["seed"] for r in load_results(configs[:2], out)] == [0, 1]
    # In this process nothing runs after the interrupt; the one-thread pool may have started
    # the next run (kept if it finishes), the later ones were cancelled.
    assert set(calls(tmp_path)[0]) <= ({0, 1, 2, 3} if threads else {0, 1, 2})


def test_a_second_sweep_in_the_same_folder_is_refused(tmp_path):
    with sweep._sweep_lock(str(tmp_path)):
        with pytest.raises(ValueError, match="is being written by another npgen command"):
            run_sweep(toy_configs(tmp_path, 1), toy_run, tmp_path, quiet=True)


# --------------------------------------------------------------------------- keys and names

def test_duplicate_configurations_run_once(tmp_path):
    config = {"model": "toy", "seed": 0, "m": 4, "log": str(tmp_path / "calls.log")}
    results = run_sweep([config, dict(reversed(list(config.items())), m=4.0), dict(config, seed=1)],
                        toy_run, tmp_path / "runs", quiet=True)
    assert calls(tmp_path)[0] == {0: 1, 1: 1}
    assert results[0] == results[1] != results[2]


@pytest.mark.parametrize("through_executor", [False, True])
def test_a_cost_starts_the_longest_runs_first_and_keeps_the_results_in_order(tmp_path,
                                                                            through_executor):
    """In this process, and handed to an executor (one worker, so that it starts the runs in
    the order it was given them): largest cost first, ties in the given order."""
    costs = {0: 1.0, 1: 5.0, 2: 3.0, 3: 5.0}
    configs = toy_configs(tmp_path, 4)
    with ThreadPoolExecutor(1) as pool:
        results = run_sweep(configs, toy_run, tmp_path / "runs", quiet=True,
                            executor=pool if through_executor else None,
                            cost=lambda config: costs[config["seed"]])
    started = [int(line.split()[0]) for line in (tmp_path / "calls.log").read_text().splitlines()]
    assert started == [1, 3, 2, 0]
    assert [r["seed"] for r in results] == [0, 1, 2, 3]


def test_config_key_is_canonical():
    base = {"model": "gan", "m": 4, "seed": 0, "layers": [3, 32.0], "opt": {"lr": 1e-3, "betas": (0.5, 0.9)}}
    same = {"opt": {"betas": [np.float64(0.5), 0.9], "lr": 0.001}, "layers": np.array([3, 32]),
            "seed": np.int64(0), "m": 4.0, "model": "gan"}
    assert config_key(base) == config_key(same)
    assert len(config_key(base)) == 64 and config_key(base) == config_key(json.loads(json.dumps(base)))
    variants = [dict(base, m=4.5), dict(base, seed=1), dict(base, extra=None), dict(base, m="4"),
                dict(base, m=True), {k: v for k, v in base.items() if k != "opt"}]
    keys = {config_key(v) for v in variants} | {config_key(base)}
    assert len(keys) == len(variants) + 1
    assert config_key({"flag": True}) != config_key({"flag": 1})
    with pytest.raises(ValueError, match="finite"):
        config_key({"m": float("nan")})
    with pytest.raises(ValueError, match="JSON-able"):
        config_key({"m": object()})


def test_run_names_are_readable_and_filesystem_safe():
    config = {"model": "gan", "m": 4.0, "seed": 0, "epochs": 40}
    assert run_name(config) == f"gan-m4-seed0-{config_key(config)[:12]}"
    assert run_name(config, ["model", "epochs", "absent"]) == f"gan-epochs40-{config_key(config)[:12]}"
    odd = {"model": "../a b/c", "x": 0.25}
    assert run_name(odd) == f"a_b_c-x0.25-{config_key(odd)[:12]}"
    assert run_name({}) == f"run-{config_key({})[:12]}"
