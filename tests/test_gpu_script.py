"""bench/gpu.sh and bench/gpu.py as the GPU machine runs them: without POT, distributed or
mlxtend, with ``python3``, the timing rows before the device tests, and every row in gpu.json
as soon as it is measured."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "gpu.sh")
#: Modules the GPU machine does not have.
MISSING = ("ot", "distributed", "mlxtend")
#: Loaded by every interpreter started with the folder on PYTHONPATH: importing a module of
#: MISSING (or a submodule) raises ImportError, as on a machine without them.
HIDER = f'''import importlib.abc
import sys


class _Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {MISSING!r}:
            raise ImportError(f"No module named {{name!r}} (hidden by the test)")
        return None


sys.meta_path.insert(0, _Missing())
'''
#: The rows of a dry run, in order (no PyTorch row: the dry run never times torch).
DRY_RUN_ROWS = (["GAN step (npgen cuda)"] * 2 + ["VAE step (npgen cuda)"] * 2
                + ["SGM step (npgen cuda)"] * 2
                + ["Langevin step (8 samples each)", "Langevin step (one run's 8 samples)",
                   "Figure 3 GAN runs as one batch", "Figure 3 VAE runs as one batch",
                   "Figure 3 SGM runs as one batch", "Figure 4 penalized GAN runs as one batch"])


def _environment(bin_folder, python_path=None):
    """os.environ with ``bin_folder`` first on PATH (its python3 is the one gpu.sh calls)."""
    env = dict(os.environ, PATH=bin_folder + os.pathsep + os.environ["PATH"])
    env.pop("PYTHONPATH", None)
    if python_path is not None:
        env["PYTHONPATH"] = python_path
    return env


def test_the_dry_run_writes_every_row_without_pot_distributed_or_mlxtend(tmp_path):
    """bench/gpu.sh --dry-run under the simulator, with POT, distributed and mlxtend hidden
    from every interpreter it starts: every row is in gpu.json and the table, and the device
    tests are collected."""
    pytest.importorskip("numba_cuda")
    assert subprocess.run(["bash", "-n", SCRIPT], check=False).returncode == 0
    hider = tmp_path / "hider"
    hider.mkdir()
    (hider / "sitecustomize.py").write_text(HIDER, encoding="utf-8")
    env = _environment(os.path.dirname(sys.executable), str(hider))
    for name in MISSING:
        hidden = subprocess.run(["python3", "-c", f"import {name}"], env=env,
                                capture_output=True, text=True, check=False)
        assert "hidden by the test" in hidden.stderr, hidden.stderr[-2000:]
    out = tmp_path / "out"
    done = subprocess.run(["bash", SCRIPT, "--dry-run", str(out)], env=env,
                          capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for kind in ("GAN", "VAE", "SGM"):  # the launch counts come before the rows
        assert f"{kind} step: " in done.stdout.split("| what |")[0], done.stdout[-3000:]
    result = json.loads((out / "gpu.json").read_text(encoding="utf-8"))
    assert result["complete"] and result["dry_run"]
    assert [row["what"] for row in result["rows"]] == DRY_RUN_ROWS
    assert all(row["seconds_per_step"] > 0 for row in result["rows"])
    text = (out / "gpu.md").read_text(encoding="utf-8")
    assert "dry run: tiny sizes, not a measurement" in text and "67 TFLOP/s" in text
    assert sum(line.startswith("| ") for line in text.splitlines()) == 1 + len(DRY_RUN_ROWS)
    assert "tests collected" in (out / "device_tests.txt").read_text(encoding="utf-8")


def test_the_script_runs_the_rows_first_and_goes_on_after_a_failure(tmp_path):
    """With a python3 that fails every command, gpu.sh still runs each step, bench/gpu.py
    before the device tests, and exits with the failure's status."""
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    log = tmp_path / "calls.txt"
    (bin_folder / "python3").write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexit 3\n')
    (bin_folder / "python3").chmod(0o755)
    done = subprocess.run(["bash", SCRIPT, str(tmp_path / "out")], env=_environment(str(bin_folder)),
                          capture_output=True, text=True, timeout=60, check=False)
    calls = log.read_text().splitlines()
    assert done.returncode == 3, done.stderr
    rows = [k for k, call in enumerate(calls) if call.startswith("bench/gpu.py --out")]
    tests = [k for k, call in enumerate(calls) if call.startswith("-m pytest")
             and "tests/test_cuda_replicas.py" in call]
    assert len(rows) == 1 and len(tests) == 1 and rows[0] < tests[0], calls


def _gpu_module():
    spec = importlib.util.spec_from_file_location("bench_gpu", os.path.join(ROOT, "bench", "gpu.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_row_is_in_the_files_as_soon_as_it_is_added(tmp_path):
    gpu = _gpu_module()
    results = gpu.Results(str(tmp_path), {"device": "test", "dry_run": True, "fp32_roof_tflops": 67,
                                          "python": "3", "not_timed": "nothing"})
    row = {"what": "GAN step (npgen cuda)", "replicas": 1, "seconds_per_step": 0.5,
           "product_gflop_per_step": 1.0, "percent_of_fp32_roof": 3.0}
    results.add(row)
    written = json.loads((tmp_path / "gpu.json").read_text(encoding="utf-8"))
    assert written["rows"] == [row] and not written["complete"]
    assert "rows measured so far: 1." in (tmp_path / "gpu.md").read_text(encoding="utf-8")
    results.finish()
    assert json.loads((tmp_path / "gpu.json").read_text(encoding="utf-8"))["complete"]
    assert sorted(os.listdir(tmp_path)) == ["gpu.json", "gpu.md"]  # no temporary file left
