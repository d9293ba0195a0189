"""How a cuda study samples a batch of SGM runs (npgen.study.devices.draw_sgm_batch): three
calls of the batched sampler, each run's own traced samples in the third, and a run whose
sampling fails (diverged, or a pass that drew other samples) is that run's error only. The
batched sampler is stood in for by each model's CPU sampler (tests/test_cuda_sampler.py checks
the launch itself)."""

import numpy as np
import pytest

from npgen import SGM
from npgen.study import devices, sampler
from npgen.study.runs import sample_seed

N = 40


def _batch():
    models, configs = [], []
    for seed in (0, 1, 2):
        model = SGM(seed=seed, sigmas=[1.0, 0.5], backend="cpu")
        model.mean, model.std = 0.0, 2.0
        models.append(model)
        configs.append({"model": "sgm", "m": 1.0, "seed": seed, "n_samples": N, "denoise": False})
    return models, configs


class _OnHost:
    """sample_many on each model's CPU sampler, with its calls recorded; ``spoil(call, r,
    result)`` may replace run r's result of a call."""

    def __init__(self, spoil=lambda call, r, result: result):
        self.calls, self.spoil = [], spoil

    def __call__(self, models, n, seeds, traces=None, **options):
        self.calls.append({"seeds": seeds, "traces": traces, **options})
        traces = traces or [None] * len(models)
        return [self.spoil(len(self.calls), r, model.sample(n, seed=seed, trace=trace, quiet=True,
                                                            n_steps_per_level=5, **options))
                for r, (model, seed, trace) in enumerate(zip(models, seeds, traces))]


def test_three_calls_draw_each_runs_passes(monkeypatch):
    models, configs = _batch()
    fake = _OnHost()
    monkeypatch.setattr(devices, "sample_many", fake)
    draws = devices.draw_sgm_batch(models, configs)
    assert [call.get("lipschitz", False) for call in fake.calls] == [False, True, True]
    assert all(call["seeds"] == [sample_seed(c) for c in configs] for call in fake.calls)
    for model, config, draw, trace in zip(models, configs, draws, fake.calls[2]["traces"]):
        alone = model.sample(N, seed=sample_seed(config), quiet=True, n_steps_per_level=5)
        np.testing.assert_array_equal(draw.samples, alone)
        np.testing.assert_array_equal(trace, sampler.traced_for(alone, draw.gradient, config["m"]))
        np.testing.assert_array_equal(draw.traced.traced, trace)
        assert draw.traced.grad_sq_by_step.shape == (11, trace.size)


@pytest.mark.parametrize("spoiled, error", [
    (lambda call, r, result: ValueError("diverged") if r == 1 and call == 1 else result,
     "diverged"),
    (lambda call, r, result: (result[0] + 1, result[1]) if r == 1 and call == 3 else result,
     "the traced sampling pass drew other samples")])
def test_a_run_whose_sampling_fails_is_its_own_error(monkeypatch, spoiled, error):
    models, configs = _batch()
    monkeypatch.setattr(devices, "sample_many", _OnHost(spoiled))
    first, second, third = devices.draw_sgm_batch(models, configs)
    assert isinstance(second, (ValueError, RuntimeError)) and error in str(second)
    assert isinstance(first, sampler.SamplerDraws) and isinstance(third, sampler.SamplerDraws)
