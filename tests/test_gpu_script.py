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
#: The rows of a dry run before the paper batches, in order (no PyTorch row: the dry run never
#: times torch); then one row per GPU batch of the paper preset.
DRY_RUN_ROWS = (["GAN step (npgen cuda)"] * 2 + ["VAE step (npgen cuda)"] * 2
                + ["SGM step (npgen cuda)"] * 2
                + ["SGM sampler, one launch, plain (8 samples each)",
                   "SGM sampler, one launch, with the gradient and traces (8 samples each)"])


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
    batches, cpu_runs = _gpu_module().paper_batches(dry_run=True)
    whats = [row["what"] for row in result["rows"]]
    assert whats[:len(DRY_RUN_ROWS)] == DRY_RUN_ROWS
    assert len(whats) == len(DRY_RUN_ROWS) + len(batches) and len(batches) >= 10
    assert all(what.startswith("Paper batch: ") for what in whats[len(DRY_RUN_ROWS):])
    assert all(row["seconds_per_step"] > 0 for row in result["rows"])
    steps = [row for row in result["rows"] if "product_gflop_per_step" in row]
    assert len(steps) == 6 + len(batches)
    for row in steps:  # the formulas count what the backend's products did, every one
        assert row["counted_product_gflop_per_step"] == pytest.approx(row["product_gflop_per_step"],
                                                                      rel=1e-12), row
        assert row["product_seconds_per_step"] > 0
        assert row["percent_of_fp32_peak_step"] is None is row["percent_of_fp32_peak_products"]
    assert result["fp32_peak_tflops"] is None and result["cpu_runs_of_the_paper_preset"] == cpu_runs
    assert result["tf32"]["tf32"] is None and "no CuPy" in result["tf32"]["how"]
    assert result["product_timer"].startswith("host clock")
    assert [t["verdict"] for t in result["targets"]] == ["not measured on a GPU"] * 3
    text = (out / "gpu.md").read_text(encoding="utf-8")
    assert "dry run: tiny sizes, not a measurement" in text and "TF32: unknown" in text
    assert "% of FP32 peak, products |" in text and "Products timed by: host clock" in text
    assert sum(line.startswith("| ") for line in text.splitlines()) == 1 + len(whats)
    assert text.count(": not measured on a GPU.") == 3
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


def _bench_module(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}",
                                                  os.path.join(ROOT, "bench", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gpu_module():
    return _bench_module("gpu")


def _meter_module():
    return _bench_module("gpu_meter")


HEADER = {"device": "test", "dry_run": False, "simulator": False, "fp32_peak_tflops": 67.0,
          "peak_source": "H100 SXM, NVIDIA datasheet", "python": "3", "not_timed": "nothing",
          "product_timer": "CUDA events", "cpu_runs_of_the_paper_preset": "",
          "tf32": {"CUPY_TF32": None, "NVIDIA_TF32_OVERRIDE": None, "tf32": False, "how": "test"}}


def test_each_row_is_in_the_files_as_soon_as_it_is_added(tmp_path):
    gpu = _gpu_module()
    results = gpu.Results(str(tmp_path), dict(HEADER, dry_run=True))
    row = {"what": "GAN step (npgen cuda)", "replicas": 1, "seconds_per_step": 0.5,
           "product_gflop_per_step": 1.0, "counted_product_gflop_per_step": 1.0,
           "product_seconds_per_step": 0.25, "percent_of_fp32_peak_step": 3.0,
           "percent_of_fp32_peak_products": 6.0}
    results.add(row)
    written = json.loads((tmp_path / "gpu.json").read_text(encoding="utf-8"))
    assert written["rows"] == [row] and not written["complete"] and written["targets"] is None
    assert "rows measured so far: 1; the targets are decided by a complete run." in (
        tmp_path / "gpu.md").read_text(encoding="utf-8")
    results.finish()
    assert json.loads((tmp_path / "gpu.json").read_text(encoding="utf-8"))["complete"]
    assert sorted(os.listdir(tmp_path)) == ["gpu.json", "gpu.md"]  # no temporary file left


# --------------------------------------------------------------------------- the meter


def test_product_flops_are_the_hand_count():
    """Each model's step on 10 rows, product by product (2 rows fan_in fan_out each). A layer
    of one input launches no product for its forward and weight gradient (the cuda backend
    makes that outer product in its bias and column kernels); its input gradient is one."""
    from npgen import GAN, SGM, VAE
    gpu, meter = _gpu_module(), _meter_module()
    gan = GAN(n_layers=2, base_width=2, backend="numpy")  # G 1-2-1, D 1-4-2-1
    assert (gan.generator.sizes, gan.discriminator.sizes) == ((1, 2, 1), (1, 4, 2, 1))
    G_forward = 2 * 10 * (2 * 1)  # the first layer (one input) is fused
    G_hidden_input = 2 * 10 * (2 * 1)
    D_forward = 2 * 10 * (4 * 2 + 2 * 1)
    D_hidden_input = 2 * 10 * (4 * 2 + 2 * 1)
    D_first_input = 2 * 10 * (1 * 4)
    generator_step = (G_forward + D_forward + D_hidden_input + D_first_input  # D to its input
                      + G_forward + G_hidden_input)  # G's weight and hidden input gradients
    discriminator_step = G_forward + 2 * (2 * D_forward + D_hidden_input)  # on 2B rows
    assert gpu.step_flops(gan, 10) == generator_step + discriminator_step == 1840
    penalized = GAN(n_layers=2, base_width=2, gp_lipschitz=1.0, backend="numpy")
    G_whole = 2 * 10 * (1 * 2 + 2 * 1)  # the jvp's tangent forward and its backward fuse nothing
    jvp_generator = G_forward + G_whole + 2 * G_whole + 2 * G_hidden_input
    assert gpu.step_flops(penalized, 10) == (
        1840 - (2 * G_forward + G_hidden_input) + jvp_generator) == 2080
    vae = VAE(n_layers=2, base_width=2, backend="numpy")  # encoder 1-4-2-2, decoder 1-2-1
    assert (vae.encoder.sizes, vae.decoder.sizes) == ((1, 4, 2, 2), (1, 2, 1))
    encoder = 2 * 10 * (4 * 2 + 2 * 2)
    encoder_hidden_input = 2 * 10 * (4 * 2 + 2 * 2)
    decoder = 2 * 10 * (2 * 1)
    decoder_inputs = 2 * 10 * (2 * 1 + 1 * 2)  # its hidden input gradient and z's
    assert gpu.step_flops(vae, 10) == (2 * encoder + encoder_hidden_input + 2 * decoder
                                       + decoder_inputs) == 880
    x_path = 2 * 10 * (96 * 196 + 196 * 1)  # the noise-level embedding runs in its own kernels
    x_hidden_input = 2 * 10 * (96 * 196 + 196 * 1)
    assert gpu.step_flops(SGM(backend="numpy"), 10) == 2 * x_path + x_hidden_input == 1140720
    assert meter.product_flops([3, 5], 7) == 2 * 7 * 15
    assert meter.product_flops([3, 5], 7, input_grad=True) == 2 * 2 * 7 * 15


def test_the_peak_is_found_by_the_device_name_or_unknown():
    meter = _meter_module()
    assert meter.fp32_peak("NVIDIA H100 80GB HBM3") == (67e12, "H100 SXM, NVIDIA datasheet")
    assert meter.fp32_peak("NVIDIA H100 PCIe")[0] == 51e12
    assert meter.fp32_peak("NVIDIA H100 NVL")[0] == 60e12
    assert meter.fp32_peak("NVIDIA H200")[0] == 67e12
    assert meter.fp32_peak("NVIDIA H200 NVL")[0] == 60e12
    assert meter.fp32_peak("NVIDIA A100-SXM4-80GB") == (None, "peak unknown")


def _gpu_result(peak=67.0, cpu_runs="", fig3_seconds=100.0, share=60.0, tf32=False):
    """A complete result of a GPU run with the given numbers."""
    rows = [{"what": f"{kind} step (npgen cuda)", "replicas": 330, "seconds_per_step": 1.0,
             "percent_of_fp32_peak_products": share} for kind in ("GAN", "VAE", "SGM")]
    rows += [{"what": "Paper batch: GAN", "replicas": 110, "seconds_per_step": 0.01,
              "projected_seconds": fig3_seconds, "figures": ["fig3", "fig5"], "projection": "p"},
             {"what": "Paper batch: VAE", "replicas": 10, "seconds_per_step": 0.01,
              "projected_seconds": 1000.0, "figures": ["fig5"], "projection": "p"}]
    tf32_setting = dict(HEADER["tf32"], tf32=tf32)
    return dict(HEADER, fp32_peak_tflops=peak, cpu_runs_of_the_paper_preset=cpu_runs,
                tf32=tf32_setting, rows=rows, complete=True)


def test_targets_are_decided_from_a_gpu_run_only():
    gpu = _gpu_module()

    def verdicts(**numbers):
        return [(t["verdict"], t.get("measured"))
                for t in gpu.decide_targets(_gpu_result(**numbers))]

    assert verdicts() == [("met", "100 s (1.7 min) projected from the timed steps"),
                          ("met", "1100 s (18.3 min) projected for the GPU batches alone"),
                          ("met", "GAN 60%, VAE 60%, SGM 60%")]
    slow = verdicts(fig3_seconds=3000.0, share=40.0, tf32=True)
    assert slow[0] == ("not met", "3000 s (50.0 min) projected from the timed steps")
    assert slow[1][0] == "not met" and slow[2] == (
        "not met", "GAN 40%, VAE 40%, SGM 40% (TF32 on: the products ran on tensor cores)")
    untimed = verdicts(cpu_runs="66 runs of PARTICLES", peak=None)
    assert untimed[1][0] == "inconclusive" and "not timed: nothing" in untimed[1][1]
    assert untimed[2] == ("inconclusive", "peak unknown for test")
    for flag in ("dry_run", "simulator"):
        result = dict(_gpu_result(), **{flag: True})
        assert {t["verdict"] for t in gpu.decide_targets(result)} == {"not measured on a GPU"}
    text = gpu.table(dict(_gpu_result(), targets=gpu.decide_targets(_gpu_result())))
    assert ("Target: Figure 3 of the paper preset (330 runs, training and sampling), at most"
            " 600 s: met (100 s (1.7 min) projected from the timed steps).") in text
