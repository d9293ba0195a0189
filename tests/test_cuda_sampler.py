"""The SGM sampler of many runs in one launch (npgen.models.sgm_device), under numba-cuda's
simulator (started by tests/test_cuda.py in a fresh process): each run's chain is the CPU
kernel's and numpy_ref's, with and without the sampler's gradient, its traces the CPU trace.
Tiny sizes: 5 samples, 2 levels of 3 steps, R = 2 (the simulator's cost is per step)."""

import os

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numba import config

if not (config.ENABLE_CUDASIM or os.environ.get("NPGEN_CUDA_DEVICE") == "1"):
    pytest.skip("runs in the CUDA simulator, in the subprocess tests/test_cuda.py starts"
                " (or on a GPU with NPGEN_CUDA_DEVICE=1)", allow_module_level=True)

from npgen import GAN, SGM
from npgen.kernels import cuda as ck
from npgen.kernels import numpy_ref
from npgen.models import sgm_device
from npgen.nn.score import SLOPE, SLOPE_X

if config.ENABLE_CUDASIM:
    ck.configure(threads=4, max_blocks=2)  # several threads, and a grid-stride loop over 10 chains

N, STEPS, SEEDS = 5, 3, [3, 4]
#: Stated tolerances against the CPU: float64 to rounding; float32 to a few ulps per step, the
#: CPU kernel summing the 196 units in another order.
TOLERANCE = {"float64": {"rtol": 1e-12, "atol": 1e-12}, "float32": {"rtol": 2e-5, "atol": 2e-6}}
OPTIONS = {"n_steps_per_level": STEPS, "step_lr": 0.05}


def _models(dtype):
    """Two SGMs with different networks and standardizations, at two noise levels (untrained
    networks: the sampler only needs weights and a standardization)."""
    models = []
    for seed in (0, 1):
        model = SGM(seed=seed, sigmas=[1.0, 0.5], dtype=dtype, backend="cpu")
        model.mean, model.std = 0.5 * seed - 0.2, 1.5 + seed
        models.append(model)
    return models


def _textbook_chain(model, seed):
    """numpy_ref's chain of ``model.sample(N, seed, **OPTIONS, lipschitz=True)`` in
    standardized units: (x, dx0, grad_sq), from the model's start and noise seed."""
    x, noise_seed = model._chain_start(N, seed)
    beff2, beff3, alphas = model._chain_levels(OPTIONS["step_lr"])
    w = model.score.weights
    return numpy_ref.annealed_langevin(x, w["fc_1.weight"], w["fc_1.bias"], w["fc_2.x"], beff2,
                                       w["fc_3.x"], beff3, alphas, STEPS, noise_seed, 0, SLOPE_X,
                                       SLOPE, np.ones_like(x), np.ones_like(x))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_launch_samples_each_run_as_its_cpu_chain(dtype):
    models = _models(dtype)
    together = sgm_device.sample_many(models, N, SEEDS, **OPTIONS)
    for model, seed, samples in zip(models, SEEDS, together):
        alone = model.sample(N, seed=seed, quiet=True, **OPTIONS)
        np.testing.assert_allclose(samples, alone, **TOLERANCE[dtype])
        x, _, _ = _textbook_chain(model, seed)
        np.testing.assert_allclose(samples[:, 0], x * model.std + model.mean, **TOLERANCE[dtype])
        assert np.ptp(samples) > 0.1  # the chain moved the samples apart


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_gradient_and_the_traces_are_the_cpu_chains(dtype):
    """dx0, grad_sq and grad_sq after each level of each run, as the CPU sampler and numpy_ref
    give them; run 0 traces samples 4, 0 and 0 again (a repeat is its own column), run 1 none."""
    models = _models(dtype)
    traces = [[4, 0, 0], None]
    together = sgm_device.sample_many(models, N, SEEDS, lipschitz=True, traces=traces, **OPTIONS)
    for model, seed, trace, (samples, gradient) in zip(models, SEEDS, traces, together):
        cpu_samples, cpu = model.sample(N, seed=seed, quiet=True, lipschitz=True, trace=trace,
                                        **OPTIONS)
        np.testing.assert_allclose(samples, cpu_samples, **TOLERANCE[dtype])
        for name in ("dx0", "grad_sq", "grad_sq_by_level"):
            np.testing.assert_allclose(getattr(gradient, name), getattr(cpu, name),
                                       **TOLERANCE[dtype])
        _, dx0, grad_sq = _textbook_chain(model, seed)
        np.testing.assert_allclose(gradient.dx0, dx0, **TOLERANCE[dtype])
        np.testing.assert_allclose(gradient.grad_sq, grad_sq, **TOLERANCE[dtype])
        assert gradient.grad_sq_by_level.shape == (3, N) and gradient.steps_per_level == STEPS
        if trace is None:
            assert gradient.traced is None and gradient.grad_sq_by_step is None
            continue
        assert gradient.grad_sq_by_step.shape == (2 * STEPS + 1, 3)
        np.testing.assert_array_equal(gradient.traced, trace)
        np.testing.assert_allclose(gradient.grad_sq_by_step, cpu.grad_sq_by_step, **TOLERANCE[dtype])
        np.testing.assert_array_equal(gradient.grad_sq_by_step[-1], gradient.grad_sq[trace])
        assert np.ptp(gradient.grad_sq_by_step[:, 0]) > 0  # the trace moves


def test_the_gradient_pass_draws_the_plain_pass_samples_bit_for_bit():
    """The study checks that its three passes draw the same samples exactly."""
    models = _models("float32")
    plain = sgm_device.sample_many(models, N, SEEDS, **OPTIONS)
    traced = sgm_device.sample_many(models, N, SEEDS, lipschitz=True, traces=[[1], [2, 3]],
                                    **OPTIONS)
    for samples, (again, _) in zip(plain, traced):
        np.testing.assert_array_equal(samples, again)


def test_sgm_sample_on_cuda_is_one_launch_with_its_traces(monkeypatch):
    launches = []
    real = ck.annealed_langevin
    monkeypatch.setattr(ck, "annealed_langevin", lambda *a, **k: launches.append(k) or real(*a, **k))
    model = _models("float64")[0]
    samples, gradient = model.sample(N, seed=7, quiet=True, lipschitz=True, trace=[2],
                                     device="cuda", **OPTIONS)
    assert len(launches) == 1 and {"by_level", "trace_slot", "traces"} <= set(launches[0])
    cpu_samples, cpu = model.sample(N, seed=7, quiet=True, lipschitz=True, trace=[2], **OPTIONS)
    np.testing.assert_allclose(samples, cpu_samples, **TOLERANCE["float64"])
    np.testing.assert_allclose(gradient.grad_sq_by_step, cpu.grad_sq_by_step, **TOLERANCE["float64"])


def test_sgm_trace_on_cuda_is_the_cpu_trace():
    """SGM.trace traces in sample's one launch on a GPU and runs the traced chains alone on
    the CPU: the same samples and per-step |grad g|^2."""
    model = _models("float64")[1]
    samples, by_step = model.trace(N, [4, 1], seed=7, quiet=True, device="cuda", **OPTIONS)
    cpu_samples, cpu_by_step = model.trace(N, [4, 1], seed=7, quiet=True, **OPTIONS)
    assert samples.shape == (2, 1) and by_step.shape == (2 * STEPS + 1, 2)
    np.testing.assert_allclose(samples, cpu_samples, **TOLERANCE["float64"])
    np.testing.assert_allclose(by_step, cpu_by_step, **TOLERANCE["float64"])
    assert np.ptp(by_step, axis=0).min() > 0


def test_a_run_whose_samples_diverge_is_its_own_error():
    """Run 1's score network made huge: its samples are inf or NaN after level 0, which comes
    back as the ValueError its CPU sampler raises; run 0 is sampled as alone."""
    models = _models("float64")
    models[1].score.weights["fc_3.x"][...] *= 1e300
    with pytest.raises(ValueError, match="at noise level 0") as on_cpu:
        models[1].sample(N, seed=SEEDS[1], quiet=True, **OPTIONS)
    first, second = sgm_device.sample_many(models, N, SEEDS, lipschitz=True, **OPTIONS)
    assert isinstance(second, ValueError) and str(second) == str(on_cpu.value)
    np.testing.assert_allclose(first[0], models[0].sample(N, seed=SEEDS[0], quiet=True, **OPTIONS),
                               **TOLERANCE["float64"])


def test_arguments_that_do_not_fit_are_one_sentence():
    models = _models("float64")
    untrained = SGM(seed=5, sigmas=[1.0, 0.5], dtype="float64")
    for call, message in [
            (lambda: sgm_device.sample_many(models + [untrained], N, SEEDS + [1]),
             r"models\[2\] is an untrained SGM"),
            (lambda: sgm_device.sample_many([GAN()], N, [1]), r"models\[0\] is a GAN"),
            (lambda: sgm_device.sample_many(models, N, [1]), "one seed .or None. per model .2."),
            (lambda: sgm_device.sample_many(models, N, SEEDS, traces=[[1]]), "one trace"),
            (lambda: sgm_device.sample_many(models, N, SEEDS, traces=[[1], None]),
             "trace records the sampler's gradient"),
            (lambda: sgm_device.sample_many([models[0], _models("float32")[1]], N, SEEDS),
             "one dtype and one number of noise levels")]:
        with pytest.raises(ValueError, match=message):
            call()
