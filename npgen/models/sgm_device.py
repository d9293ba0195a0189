"""Annealed Langevin sampling of many SGM runs in one launch on a CUDA GPU.

R trained SGMs (one architecture, one number of noise levels, one dtype; :func:`fit_many`
trains such a batch) are sampled by one call of the cuda backend's ``annealed_langevin``: an
(R, n) array of chains, replica r with its own score network, start and noise seed, every
level and step in one launch. Each replica's start and noise come from its seed as in
:meth:`npgen.models.sgm.SGM.sample`, so its samples are that method's on the CPU, to float
rounding. With ``lipschitz=True`` the launch also carries the sampler's gradient (dx0,
grad_sq), writes grad_sq after every level into an (R, L, n) device array and, for the traced
samples, after every step into an (R, T, k) array, each read once at the end.
"""

import numpy as np

from .. import kernels
from ..nn.score import SLOPE, SLOPE_X, ScoreNetwork
from ..util.checks import check_seed
from .langevin_options import STEP_LR, STEPS_PER_LEVEL, check_sampling, check_trace


def device_backend():
    """The replica backend the chains run on: the cuda backend."""
    return kernels.get_replica_backend("cuda")


def _check_models(models):
    """``models`` as a list of trained SGMs that can share a launch."""
    if not isinstance(models, (list, tuple)) or not models:
        raise ValueError("models must be a non-empty list of trained SGMs")
    for k, model in enumerate(models):
        is_sgm = isinstance(getattr(model, "score", None), ScoreNetwork)  # an npgen.models.SGM
        if not is_sgm or model.mean is None:
            what = "an untrained SGM" if is_sgm else f"a {type(model).__name__}"
            raise ValueError(f"models must be trained SGMs (call fit or fit_many first);"
                             f" models[{k}] is {what}")
    first = models[0]
    if any(m.dtype != first.dtype or m.sigmas.size != first.sigmas.size for m in models):
        raise ValueError("models sampled together must have one dtype and one number of noise"
                         " levels")
    return list(models)


def sample_many(models, n, seeds, denoise=False, step_lr=STEP_LR,
                n_steps_per_level=STEPS_PER_LEVEL, lipschitz=False, traces=None):
    """``model.sample(n, seed, denoise, step_lr, n_steps_per_level, lipschitz=lipschitz,
    trace=trace, device="cuda")`` for each model, seed and trace (``seeds`` one int or None
    per model; ``traces`` None or one sequence of sample indices, or None, per model), all in
    one launch. Returns one entry per model: what ``sample`` returns, or the ValueError it
    would raise when the step size made that model's samples NaN or inf (the others are
    unaffected)."""
    models = _check_models(models)
    if not isinstance(seeds, (list, tuple)) or len(seeds) != len(models):
        raise ValueError(f"seeds must be a list of one seed (or None) per model ({len(models)})")
    if traces is None:
        traces = [None] * len(models)
    if not isinstance(traces, (list, tuple)) or len(traces) != len(models):
        raise ValueError(f"traces must be None or a list of one trace (or None) per model"
                         f" ({len(models)})")
    n, _, options = check_sampling(n, None, denoise, True, lipschitz, step_lr,
                                    n_steps_per_level)
    seeds = [None if seed is None else check_seed(seed) for seed in seeds]
    traces = [check_trace(trace, n, lipschitz) for trace in traces]
    return sample_checked(models, n, seeds, traces, **options)


def sample_checked(models, n, seeds, traces, denoise, lipschitz, step_lr, n_steps_per_level,
                   quiet=True):
    """:func:`sample_many` on checked arguments (``traces`` as int64 index arrays or None);
    ``quiet`` is accepted for :meth:`SGM.sample`'s options (one launch has no progress)."""
    ck = device_backend()
    R, L, steps = len(models), models[0].sigmas.size, n_steps_per_level
    starts = [model._chain_start(n, seed) for model, seed in zip(models, seeds)]
    levels = [model._chain_levels(step_lr) for model in models]
    x = ck.to_device(np.stack([start for start, _ in starts]))
    weights = [np.stack([m.score.weights[name] for m in models])
               for name in ("fc_1.weight", "fc_1.bias", "fc_2.x", "fc_3.x")]
    beff2, beff3, alphas = (ck.to_device(np.stack([lv[k] for lv in levels])) for k in range(3))
    bad_level = ck.to_device(np.full(R, L, np.int64))
    gradient, outputs = [], {}
    if lipschitz:
        gradient = [ck.to_device(np.ones((R, n), models[0].dtype)) for _ in range(2)]
        outputs["by_level"] = ck.zeros((R, L, n), models[0].dtype)
        if any(trace is not None for trace in traces):
            slots, columns = _trace_slots(traces, n)
            outputs["trace_slot"] = ck.to_device(slots)
            outputs["traces"] = ck.zeros((R, L * steps, max(1, slots.max() + 1)), models[0].dtype)
    ck.annealed_langevin(x, *weights[:3], beff2, weights[3], beff3, alphas, steps,
                         [seed for _, seed in starts], 0, SLOPE_X, SLOPE, *gradient,
                         bad_level=bad_level, **outputs)
    x, bad_level = ck.to_host(x), ck.to_host(bad_level)
    gradient = [ck.to_host(array) for array in gradient]
    host = {name: ck.to_host(array) for name, array in outputs.items()}
    results = []
    for r, model in enumerate(models):
        if bad_level[r] < L:
            results.append(model._diverged(step_lr, int(bad_level[r])))
            continue
        own_gradient = tuple(array[r].copy() for array in gradient)
        by_level = by_step = None
        if lipschitz:
            by_level = np.concatenate([np.ones((1, n), x.dtype), host["by_level"][r]])
        if traces[r] is not None:
            by_step = np.concatenate([np.ones((1, traces[r].size), x.dtype),
                                      host["traces"][r][:, columns[r]]])
        results.append(model._finish_chain(x[r].copy(), own_gradient, denoise, steps, by_level,
                                           traces[r], by_step))
    return results


def _trace_slots(traces, n):
    """(slots (R, n) int64: each traced sample's column in the traces array, -1 elsewhere;
    per replica, the columns of its trace's indices in order, repeats included)."""
    slots = np.full((len(traces), n), -1, np.int64)
    columns = []
    for r, trace in enumerate(traces):
        if trace is None:
            columns.append(None)
            continue
        unique, inverse = np.unique(trace, return_inverse=True)
        slots[r, unique] = np.arange(unique.size)
        columns.append(inverse)
    return slots, columns
