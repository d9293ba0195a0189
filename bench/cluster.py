#!/usr/bin/env python
"""Sweeps on dask.distributed against the process pool, and the paper preset's projected wall time.

    python bench/cluster.py [--runs 16] [--noop-runs 200] [--repeats 1] [--out bench/results/cluster]

Measured in one run, on this machine, each sweep into a fresh folder:

* the wall time of one sweep of short training runs (GAN, quick preset cut to 1 epoch of 200
  steps) on a local dask cluster of 1 worker, of 2 workers (1 thread each, the runs' files
  shipped back and written by the client, as ``npgen reproduce --scheduler`` does), and on the
  sweep's own pool of 2 spawned processes (``--jobs 2``). A dask sweep's time starts once the
  cluster is up (the cluster's start is timed on its own); the pool's includes starting it.
  Every worker's first run imports npgen and loads numba's cached kernels (the bench first
  fills the cache in its own process);
* the scheduler's overhead per run: the wall time per run of a sweep of runs that do nothing
  on 2 workers (submit, schedule, run, ship back, write the run folder: the fastest pace a
  sweep can go, whatever the cluster's size), and, for the training sweep, the
  worker time not spent inside runs: (workers x wall - the runs' own seconds) / runs;
* os.getloadavg() before and after every timing: the machine may be shared with other work,
  and a 1-minute load above the core count means the times are slower than the machine.

With ``--repeats N`` the three training sweeps run N times, interleaved, each repeat starting
with the next of them (so that a load that rises or falls does not always hit the same one),
and the summary compares the fastest of each (the one least slowed by other work).

It then projects the wall time of the paper preset (770 runs) on N single-threaded workers
from measured per-run costs (see :func:`paper_run_seconds`), scheduling the runs each to the
first free worker in three orders: figure order, the sweep's (largest
:func:`npgen.study.runs.run_cost` first) and the measured longest first.

Writes ``OUT.json`` (every number) and ``OUT.txt`` (the table).
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import heapq
import json
import platform
import shutil
import tempfile
import time

import distributed

from npgen.study.cluster import start_local_cluster
from npgen.study.plans import plan, selected_figures
from npgen.study.reproduce import cluster_run, sweep_run
from npgen.study.runs import make_config, run_cost, train_run
from npgen.study.sweep import MARKER_FILE, find_run_dir, run_sweep

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
#: Measured ms per training step of the paper preset (batch 1000) by model and depth:
#: bench/results/depth_step_times.txt (GAN and VAE, depths 2-6).
DEPTH_STEP_TIMES = os.path.join(RESULTS, "depth_step_times.txt")
#: The SGM's paper-preset step and its sampling (50 000 samples), README "Presets" (measured).
SGM_STEP_MS, SGM_SAMPLING_S = 2.3, 3.7


def noop_run(config, run_dir):
    """A run that does nothing: what is left of a sweep's time is its bookkeeping."""
    return {"seed": config["seed"]}


def short_runs(n):
    """``n`` GAN runs of 200 steps (the quick preset, 1 epoch, 5 000 samples drawn)."""
    return [make_config("gan", m, "quick", seed=seed, epochs=1, n_samples=5000)
            for seed in range(n // 4 + 1) for m in (0, 2, 5, 8)][:n]


def load():
    return [round(x, 2) for x in os.getloadavg()]


def run_seconds(configs, out):
    """The runs' own seconds (the completion markers'), summed."""
    total = 0.0
    for config in configs:
        with open(os.path.join(find_run_dir(config, out), MARKER_FILE), encoding="utf-8") as handle:
            total += json.load(handle)["seconds"]
    return total


def timed_sweep(configs, run_fn, workers, use_dask, scratch):
    """One sweep into a fresh folder: wall seconds, the runs' own seconds, loads, cluster start."""
    out = tempfile.mkdtemp(dir=scratch)
    row = {"workers": workers, "engine": "dask" if use_dask else "process pool", "runs": len(configs),
           "load_before": load()}
    if use_dask:
        start = time.perf_counter()
        cluster = start_local_cluster(workers)
        client = distributed.Client(cluster)
        row["cluster_start_s"] = time.perf_counter() - start
        try:
            start = time.perf_counter()
            run_sweep(configs, run_fn, out, executor=client.get_executor(pure=False),
                      shared_filesystem=False, quiet=True)
            row["wall_s"] = time.perf_counter() - start
        finally:
            client.close()
            cluster.close()
    else:
        start = time.perf_counter()
        run_sweep(configs, run_fn, out, jobs=workers, quiet=True)
        row["wall_s"] = time.perf_counter() - start
    row["load_after"] = load()
    row["runs_own_s"] = run_seconds(configs, out)
    row["lost_per_run_s"] = (workers * row["wall_s"] - row["runs_own_s"]) / len(configs)
    shutil.rmtree(out)
    return row


def fastest(sweeps, engine, workers):
    return min(row["wall_s"] for row in sweeps if (row["engine"], row["workers"]) == (engine, workers))


# --------------------------------------------------------------------------- paper projection

def read_step_times(path=DEPTH_STEP_TIMES):
    """{(model, depth): ms per step} from lines 'GAN 3 45.8 ms/step'."""
    times = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            model, depth, ms, _ = line.split()
            times[(model.lower(), int(depth))] = float(ms)
    return times


def paper_run_seconds(config, step_ms):
    """Seconds of one paper-preset run: its steps x the measured step time of its model and
    depth (skip connections, spectral norm and the gradient penalty taken at the plain
    network's cost), plus the SGM's sampling. Sampling and Lipschitz tracking of the GAN and
    VAE are left out (seconds against their 15 min and 2.8 min)."""
    steps = config["epochs"] * (config["n_data"] // config["batch_size"])
    if config["model"] == "sgm":
        return steps * SGM_STEP_MS / 1e3 + SGM_SAMPLING_S
    return steps * step_ms[(config["model"], config["n_layers"])] / 1e3


#: The studies of the paper preset's plan that are not the paper's (they are not projected).
BEYOND_THE_PAPER = ("cauchy", "particles")


def paper_figure_order():
    """The paper preset's distinct runs in figure order (``npgen reproduce`` hands them to the
    workers largest :func:`npgen.study.runs.run_cost` first)."""
    runs = plan("paper")
    seen, order = set(), []
    for name in selected_figures(None):
        if name in BEYOND_THE_PAPER or name not in runs:  # Figure 7: a sweep of its own
            continue
        for config in runs[name]:
            key = json.dumps(config, sort_keys=True)
            if key not in seen:
                seen.add(key)
                order.append(config)
    return order


def makespan(costs, workers, overhead_s=0.0):
    """Wall seconds of running ``costs`` in order, each on the first free of ``workers``."""
    free = [0.0] * workers
    for cost in costs:
        heapq.heappush(free, heapq.heappop(free) + cost + overhead_s)
    return max(free)


def project(overhead_s, cores=(1, 2, 8, 16, 32, 64, 128, 256)):
    step_ms = read_step_times()
    configs = paper_figure_order()
    costs = [paper_run_seconds(config, step_ms) for config in configs]
    by_estimate = [cost for _, cost in sorted(zip(configs, costs), key=lambda pair: -run_cost(pair[0]))]
    longest_first = sorted(costs, reverse=True)
    return {"runs": len(costs), "core_hours": sum(costs) / 3600, "longest_run_h": max(costs) / 3600,
            "overhead_per_run_s": overhead_s,
            "wall_h_figure_order": {n: makespan(costs, n, overhead_s) / 3600 for n in cores},
            "wall_h": {n: makespan(by_estimate, n, overhead_s) / 3600 for n in cores},
            "wall_h_longest_first": {n: makespan(longest_first, n, overhead_s) / 3600 for n in cores}}


# --------------------------------------------------------------------------- report

def table(result):
    lines = [(f"machine: {result['machine']['cpus']} CPUs, {result['machine']['platform']};"
              f" distributed {result['machine']['distributed']}"),
             "load averages (1, 5, 15 min) are os.getloadavg() before and after each timing.", "",
             f"sweep of {result['short_runs']} short GAN runs (200 steps each):",
             "| engine | workers | wall | runs' own time | lost per run | cluster start | load before -> after |",
             "|---|---|---|---|---|---|---|"]
    for row in result["sweeps"]:
        start = f"{row['cluster_start_s']:.1f} s" if "cluster_start_s" in row else "(in wall)"
        lines.append(f"| {row['engine']} | {row['workers']} | {row['wall_s']:.1f} s | {row['runs_own_s']:.1f} s"
                     f" | {row['lost_per_run_s']:.2f} s | {start} | {row['load_before']} -> {row['load_after']} |")
    s = result["summary"]
    lines += ["", f"dask, 2 workers vs 1: {s['speedup_2_vs_1']:.2f}x faster (target >= 1.8x)",
              (f"dask, 2 workers vs the process pool of 2: {s['dask_vs_pool']:.3f} of its wall time"
               " (target <= 1.10)"), "",
              f"sweeps of {result['noop_runs']} runs that do nothing (the overhead per run):"]
    for row in result["noop"]:
        lines.append(f"- {row['engine']}, {row['workers']} workers: {1e3 * row['wall_s'] / row['runs']:.1f} ms"
                     f" per run (load {row['load_before']} -> {row['load_after']})")
    p = result["paper_projection"]
    lines += ["", (f"paper preset, projected: {p['runs']} runs, {p['core_hours']:.0f} core-hours, longest"
                   f" run {p['longest_run_h']:.1f} h, + {p['overhead_per_run_s'] * 1e3:.0f} ms per run of overhead"),
              "| cores | wall (figure order) | wall (npgen's order: run_cost, largest first)"
              " | wall (measured longest first) |", "|---|---|---|---|"]
    for n in p["wall_h"]:
        lines.append(f"| {n} | {p['wall_h_figure_order'][n]:.1f} h | {p['wall_h'][n]:.1f} h"
                     f" | {p['wall_h_longest_first'][n]:.1f} h |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=16, help="short training runs per sweep")
    parser.add_argument("--noop-runs", type=int, default=200, help="runs per overhead sweep")
    parser.add_argument("--repeats", type=int, default=1, help="times each training sweep runs")
    parser.add_argument("--out", default=os.path.join(RESULTS, "cluster"), help="OUT.json and OUT.txt")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="npgen-bench-cluster-")
    try:
        with tempfile.TemporaryDirectory() as warm:  # fill numba's cache before any timing
            train_run(short_runs(1)[0], warm)
        configs = short_runs(args.runs)
        modes = [(cluster_run, 1, True), (cluster_run, 2, True), (sweep_run, 2, False)]
        sweeps = [timed_sweep(configs, run_fn, workers, use_dask, scratch)
                  for repeat in range(args.repeats)  # each repeat starts with the next mode
                  for run_fn, workers, use_dask in modes[repeat % 3:] + modes[:repeat % 3]]
        noops = [{"seed": seed} for seed in range(args.noop_runs)]
        noop = [timed_sweep(noops, noop_run, 2, True, scratch),
                timed_sweep(noops, noop_run, 2, False, scratch)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    overhead = noop[0]["wall_s"] / noop[0]["runs"]  # the sweep's pace when runs cost nothing
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "distributed": distributed.__version__},
        "short_runs": args.runs, "noop_runs": args.noop_runs, "sweeps": sweeps, "noop": noop,
        "summary": {"speedup_2_vs_1": fastest(sweeps, "dask", 1) / fastest(sweeps, "dask", 2),
                    "dask_vs_pool": fastest(sweeps, "dask", 2) / fastest(sweeps, "process pool", 2)},
        "paper_projection": project(overhead),
        "sources": {"step_times": os.path.relpath(DEPTH_STEP_TIMES, os.path.dirname(RESULTS)),
                    "sgm": f"{SGM_STEP_MS} ms per step + {SGM_SAMPLING_S} s sampling (README, Presets)"},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
    text = table(result)
    with open(args.out + ".txt", "w", encoding="utf-8") as handle:
        handle.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
