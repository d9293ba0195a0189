"""npgen.study.cluster: sweeps on a dask.distributed LocalCluster on loopback (2 workers x 1
thread), checked against the process pool; a worker closed mid-sweep, a client stopped mid-sweep
(Ctrl-C and kill -9), runs that fail on a worker, BLAS pinned inside the task, and
``npgen reproduce --scheduler local``.

Every test is small (toy runs of a fraction of a second, tiny training runs) and bounded: a
sweep that hangs ends the test session after :data:`HANG_SECONDS` with every thread's stack.
"""

import faulthandler
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request

import pytest

distributed = pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")  # a dependency of distributed

from test_sweep import calls, temporaries, toy_configs, toy_run
from threadpoolctl import threadpool_info
from tiny_study import ONE_RUN_PLAN, register

from npgen import cli
from npgen.study import cluster, sweep
from npgen.study.reproduce import cluster_run, sweep_run
from npgen.study.runs import make_config
from npgen.study.sweep import find_run_dir, read_failures, run_sweep, sweep_status

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
HANG_SECONDS = 240
#: The workers' environment asks for 2 BLAS threads; the tasks must run with one.
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}


@pytest.fixture(autouse=True)
def bounded():
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def local_cluster():
    """(LocalCluster, Client): 2 single-threaded worker processes on 127.0.0.1."""
    local = cluster.start_local_cluster(2, env=WORKER_ENV)
    client = distributed.Client(local, timeout=30)
    yield local, client
    client.close(timeout=20)
    local.close(timeout=20)


def on_dask(client, configs, run_fn, out, **options):
    return run_sweep(configs, run_fn, out, executor=client.get_executor(pure=False),
                     shared_filesystem=False, quiet=True, **options)


def blas_run(config, run_dir):
    """A run that reports the BLAS threads it runs with and the environment's setting."""
    threads = {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
    return {"blas_threads": sorted(threads), "env": os.environ.get("OPENBLAS_NUM_THREADS")}


def blas_threads_outside_a_task():
    return sorted({info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"})


# --------------------------------------------------------------------------- the local cluster


def listening_addresses(pid):
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections("inet")
            if c.status == psutil.CONN_LISTEN}


def http_status(host, port, route):
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{route}", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_the_local_cluster_listens_on_loopback_only(local_cluster):
    local, client = local_cluster
    worker_pids = list(client.run(os.getpid).values())
    assert len(worker_pids) == 2 and client.nthreads() == dict.fromkeys(client.nthreads(), 1)
    for pid in [os.getpid(), *worker_pids]:  # scheduler and nannies live in this process
        addresses = listening_addresses(pid)
        assert addresses and {ip for ip, _ in addresses} == {"127.0.0.1"}, (pid, addresses)
    http = local.scheduler.http_server
    assert http.address == "127.0.0.1" and http.port != 8787
    assert http_status(http.address, http.port, "/health") == 200       # health checks answer
    assert http_status(http.address, http.port, "/status") == 404       # the dashboard is off
    for address, port in client.run(lambda dask_worker: (dask_worker.http_server.address,
                                                         dask_worker.http_server.port)).values():
        assert address == "127.0.0.1" and http_status(address, port, "/health") == 200


def test_blas_is_pinned_to_one_thread_inside_the_task(local_cluster, tmp_path):
    _, client = local_cluster
    assert all(2 in threads for threads in client.run(blas_threads_outside_a_task).values())
    results = on_dask(client, [{"seed": seed} for seed in range(2)], blas_run, tmp_path)
    assert [r["blas_threads"] for r in results] == [[1], [1]]
    assert {r["env"] for r in results} == {"2"}


# --------------------------------------------------------------------------- same runs, same files


def run_files(run_dir):
    """{relative path: bytes} of a finished run, with what depends on the clock set apart: the
    completion marker's times, the seconds in metrics.json and history.json, the PDF's date."""
    files = {}
    for relpath in sorted(sweep.file_sizes(run_dir)):
        with open(os.path.join(run_dir, relpath), "rb") as handle:
            files[relpath] = handle.read()
    marker = json.loads(files.pop(sweep.MARKER_FILE))
    timings = {}
    for name, clock in ((sweep.METRICS_FILE, "_seconds"), ("history.json", "wall_time_s")):
        numbers = json.loads(files[name])
        timings.update({k: numbers.pop(k) for k in list(numbers) if k.endswith(clock)})
        files[name] = json.dumps(numbers, sort_keys=True).encode()
    for name in [name for name in files if name.endswith(".pdf")]:
        files[name] = re.sub(rb"/CreationDate \(D:[0-9Z+\-']+\)", b"", files[name])
    return files, (marker["key"], marker["name"], sorted(marker["files"])), timings


def test_a_tiny_sweep_on_dask_gives_the_process_pools_files(local_cluster, tmp_path, monkeypatch):
    register(monkeypatch)
    _, client = local_cluster
    configs = [make_config(model, 5, "tiny", seed=0) for model in ("gan", "vae", "sgm")]
    configs.append(make_config("gan", 0, "tiny", seed=1))
    on_dask(client, configs, cluster_run, tmp_path / "dask")
    run_sweep(configs, sweep_run, tmp_path / "pool", jobs=2, quiet=True)
    for config in configs:
        dask_files, dask_marker, dask_times = run_files(find_run_dir(config, tmp_path / "dask"))
        pool_files, pool_marker, _ = run_files(find_run_dir(config, tmp_path / "pool"))
        assert {"samples.npy", "config.json", "metrics.json", "history.json", "histogram.png"} <= set(dask_files)
        assert any(path.startswith("model/") for path in dask_files)
        assert dask_files == pool_files and dask_marker == pool_marker
        assert set(dask_times) == {"train_seconds", "wall_seconds", "wall_time_s"}
    assert not temporaries(tmp_path / "dask")


# --------------------------------------------------------------------------- failures


def test_a_run_that_fails_on_a_worker_is_reported_and_the_sweep_goes_on(local_cluster, tmp_path):
    _, client = local_cluster
    configs = toy_configs(tmp_path, 4)
    configs[1]["raise"] = "error"
    results = on_dask(client, configs, toy_run, tmp_path / "out")
    assert [r is None for r in results] == [False, True, False, False]
    failure, = read_failures(tmp_path / "out")
    assert failure["config"] == configs[1]
    assert failure["error"] == "ValueError: seed 1 diverged"
    assert "toy_run" in failure["traceback"]


def test_a_worker_with_other_npgen_code_refuses_the_run(local_cluster, tmp_path, monkeypatch):
    register(monkeypatch)
    _, client = local_cluster
    config = dict(make_config("vae", 5, "tiny"), code="0.0.0+0123456789abcdef")
    assert on_dask(client, [config], cluster_run, tmp_path) == [None]
    failure, = read_failures(tmp_path)
    assert "the run was planned with 0.0.0+0123456789abcdef" in failure["error"]
    assert failure["config"]["code"] == "0.0.0+0123456789abcdef"


def test_closing_a_worker_mid_sweep_loses_no_run(tmp_path):
    local = cluster.start_local_cluster(2)
    client = distributed.Client(local, timeout=30)
    out = tmp_path / "out"
    configs = toy_configs(tmp_path, 10, sleep=0.5)
    finished_before = []

    def close_one_worker():
        deadline = time.monotonic() + 60
        while sweep_status(configs, out)["done"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        finished_before.extend(seed for seed, config in enumerate(configs) if find_run_dir(config, out))
        time.sleep(0.3)  # the sweep has released those runs' results before the worker goes
        local.sync(local.workers[next(iter(local.workers))].close)

    closer = threading.Thread(target=close_one_worker)
    try:
        closer.start()
        results = on_dask(client, configs, toy_run, out)
        closer.join(60)
        assert len(client.nthreads()) == 1
    finally:
        client.close(timeout=20)
        local.close(timeout=20)
    assert 3 <= len(finished_before) < len(configs)
    assert [r["seed"] for r in results] == list(range(10)) and read_failures(out) == []
    counts, _ = calls(tmp_path)
    assert all(counts[seed] == 1 for seed in finished_before), counts   # nothing finished is redone
    assert not temporaries(out)


def test_a_scheduler_without_workers_is_one_sentence():
    empty = cluster.start_local_cluster(0)
    try:
        with pytest.raises(ValueError, match=r"has no worker after 1 s; start workers with dask worker"), \
                cluster.dask_executor(empty.scheduler_address, timeout=1):
            pass
    finally:
        empty.close(timeout=20)


def test_files_from_a_worker_stay_inside_the_run_directory(tmp_path):
    task = sweep._Task(toy_run, "0" * 64, {"seed": 0}, "toy-000000000000", str(tmp_path))
    shipped = sweep.Shipped({"x": 1}, {"../outside.txt": b"x"}, 0.1, "host:1", True)
    with pytest.raises(ValueError, match=r"sent a file outside its run directory \('../outside.txt'\)"):
        sweep._commit(task, shipped)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- the client killed


CLIENT_SCRIPT = textwrap.dedent("""
    import json, signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even if started in the background
    sys.path.insert(0, {tests!r})
    import distributed
    from npgen.study.sweep import run_sweep
    from test_sweep import toy_run

    if __name__ == "__main__":
        client = distributed.Client({address!r}, timeout=30)
        run_sweep(json.loads({configs!r}), toy_run, {out!r}, executor=client.get_executor(pure=False),
                  shared_filesystem=False)
""")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_a_client_stopped_mid_sweep_resumes_without_redoing_finished_runs(local_cluster, tmp_path, stop):
    local, client = local_cluster
    out = tmp_path / "out"
    configs = toy_configs(tmp_path, 8, sleep=0.4)
    script = CLIENT_SCRIPT.format(tests=TESTS_DIR, address=local.scheduler_address,
                                  configs=json.dumps(configs), out=str(out))
    process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                               cwd=tmp_path)  # not the checkout: its npgen/ is not the installed package
    try:
        deadline = time.monotonic() + 90
        while sweep_status(configs, out)["done"] < 2 and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.05)
        finished = [seed for seed, config in enumerate(configs) if find_run_dir(config, out)]
        process.send_signal(stop)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    if stop == signal.SIGINT:
        assert "run the same sweep again to resume" in err and "KeyboardInterrupt" in err
    assert 2 <= len(finished) < len(configs)
    results = on_dask(client, configs, toy_run, out)
    assert [r["seed"] for r in results] == list(range(8))
    counts, _ = calls(tmp_path)
    assert all(counts[seed] == 1 for seed in finished), counts
    assert not temporaries(out)


# --------------------------------------------------------------------------- the command line


def test_npgen_reproduce_on_a_local_cluster(tmp_path, monkeypatch, capsys):
    register(monkeypatch, ONE_RUN_PLAN)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # --scheduler local: one worker per core
    out = tmp_path / "study"
    argv = ["reproduce", "--preset", "tiny", "--only", "fig3", "--scheduler", "local", "--out", str(out)]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "dask scheduler tcp://127.0.0.1:" in err and "2 workers x 1 thread" in err
    assert "first run on worker" in err and "with numba's compile or cache load" in err
    assert "reused 0 finished runs, trained 3, 0 failed" in err
    assert (out / "report.md").exists() and len(os.listdir(out / "runs")) == 3 + 1  # failures.json
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "reused 3 finished runs, trained 0" in err and "dask scheduler" not in err
