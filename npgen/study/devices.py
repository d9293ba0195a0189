"""Where a study's runs train: on CPU one by one, or on a CUDA GPU in batches of replicas.

With ``device="cuda"`` every run that :func:`npgen.models.replicas.fit_many` can batch (the
GANs and VAEs of Figures 2 to 6, plain, resnet or densenet, a GAN's generator with or without
spectral norm and with or without the gradient penalty, Gaussian latents only, and every SGM)
records
``"device": "cuda"`` in its configuration. Its key changes with it: a GPU run draws its latents
on the device, so it is its own run, stored beside CPU runs in the same way (run folder,
config.json, metrics.json, report). An SGM's samples, and the sampler's gradient,
also come from the device: the SGM runs of a batch are sampled together, each of the three
sampling passes (the samples, the sampler's gradient, the traces) one launch for the whole
batch (:func:`draw_sgm_batch`). The other runs stay CPU runs.

The runs of a sweep that share an architecture, and differ only in m and seed, train as one
batch (:func:`batches`); a group larger than the device's free memory holds is split, from an
estimate of each replica's bytes (:func:`npgen.models.replicas.replica_bytes`).
"""

import json
import time

from .. import kernels
from ..models.replicas import fit_many, replica_bytes
from ..models.sgm_device import sample_many
from ..util.checks import check_choice
from .fingerprint import code_fingerprint
from .run_metrics import lipschitz_tracker
from .runs import build_model, finish_run, run_data, sample_seed
from .sampler import SamplerDraws, check_same_samples, traced_for
from .sweep import config_key, find_run_dir

DEVICES = ("cpu", "cuda")

#: The share of the device's free memory a batch may plan to use (the rest is left to CuPy's
#: temporaries, the CUDA context and the estimate's error).
MEMORY_SHARE = 0.8


def check_device(device):
    """``device`` if it is one of :data:`DEVICES`, else a ValueError naming ``--device``."""
    return check_choice("--device", device, DEVICES)


def batchable(config):
    """Whether fit_many trains this run: an SGM, a VAE or a GAN (plain, resnet or densenet
    networks alike, a GAN with or without the gradient penalty) with Gaussian latents (the
    device draws no others: the Cauchy-latent GANs stay CPU runs)."""
    return (config["model"] in ("sgm", "vae", "gan")
            and config.get("latent", "gaussian") == "gaussian")


def device_plan(runs, device):
    """The plan ``{figure: [config, ...]}`` for ``device``: unchanged for cpu; for cuda, every
    batchable run gains ``"device": "cuda"`` and the code fingerprint of cuda runs."""
    if check_device(device) == "cpu":
        return runs
    code = code_fingerprint("cuda")
    return {figure: [dict(c, device="cuda", code=code) if batchable(c) else c for c in configs]
            for figure, configs in runs.items()}


def architecture(config):
    """What the runs of one batch share: the configuration without m, seed and the gradient
    penalty's target (penalized GANs of any targets batch together)."""
    shared = {k: v for k, v in config.items() if k not in ("m", "seed")}
    if shared.get("gp_lipschitz") is not None:
        shared["gp_lipschitz"] = "any target"
    return json.dumps(shared, sort_keys=True)


def batches(configs, bytes_per_replica, free_bytes):
    """The configurations grouped by :func:`architecture`, in first-seen order, each group
    split into batches of at most MEMORY_SHARE * free_bytes / bytes_per_replica(config)
    replicas (at least one; no split when free_bytes is None)."""
    groups = {}
    for config in configs:
        groups.setdefault(architecture(config), []).append(config)
    out = []
    for group in groups.values():
        size = len(group)
        if free_bytes is not None:
            size = max(1, int(MEMORY_SHARE * free_bytes // bytes_per_replica(group[0])))
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


def draw_sgm_batch(models, configs):
    """The :class:`npgen.study.sampler.SamplerDraws` of SGM runs of one batch (trained models,
    configurations that differ only in m and seed), or, for a run whose sampling failed, its
    error: each pass samples every run in one launch (:func:`sample_many`), the traced pass
    with each run's own traced samples."""
    n, seeds = configs[0]["n_samples"], [sample_seed(c) for c in configs]
    options = {"denoise": configs[0]["denoise"]}
    plain = sample_many(models, n, seeds, **options)
    gradients = sample_many(models, n, seeds, lipschitz=True, **options)
    traces = [None if isinstance(p, Exception) or isinstance(g, Exception)
              else traced_for(p, g[1], c["m"]) for p, g, c in zip(plain, gradients, configs)]
    traced = sample_many(models, n, seeds, lipschitz=True, traces=traces, **options)
    draws = []
    for samples, with_gradient, with_traces in zip(plain, gradients, traced):
        failed = next((r for r in (samples, with_gradient, with_traces) if isinstance(r, Exception)),
                      None)
        try:
            if failed is not None:
                raise failed
            check_same_samples(with_gradient[0], samples, "sampler's gradient")
            check_same_samples(with_traces[0], samples, "traced sampling")
            draws.append(SamplerDraws(samples, with_gradient[1], with_traces[1]))
        except (ValueError, RuntimeError) as error:
            draws.append(error)
    return draws


def config_replica_bytes(config):
    """Device bytes one replica of this run needs (see replica_bytes)."""
    return replica_bytes(build_model(config), config["batch_size"], config["n_data"])


class BatchedRuns:
    """The sweep's run function of a cuda study: ``self(config, run_dir)`` as train_run.

    The first call for a run trains its whole batch (the unfinished runs of ``configs`` with
    its architecture, see :func:`batches`) with fit_many and keeps the trained models (an SGM
    batch is also sampled, :func:`draw_sgm_batch`); each call then measures and writes one of
    them. A replica whose training diverged
    raises its error there, so the sweep records it as a failed run; an error of the whole
    batch (the device out of memory, say) is recorded for each of its runs, trained once.
    """

    def __init__(self, configs, runs_dir):
        unique = {config_key(c): c for c in configs if c.get("device") == "cuda"}
        pending = [c for c in unique.values() if find_run_dir(c, runs_dir) is None]
        backend = kernels.get_replica_backend("cuda")
        self.batches = batches(pending, config_replica_bytes, backend.free_bytes())
        self.trained, self.drawn = {}, {}

    def __call__(self, config, run_dir):
        key = config_key(config)
        if key not in self.trained:
            self._train_batch_of(key)
        model, outcome, curve, seconds, replicas = self.trained.pop(key)
        draws = self.drawn.pop(key, None)
        for failure in (outcome, draws):
            if isinstance(failure, Exception):
                raise failure
        metrics = finish_run(model, outcome, curve, config, run_dir, time.perf_counter(),
                             train_seconds=seconds / replicas, draws=draws)
        metrics["batch"] = {"replicas": replicas, "train_seconds": seconds}
        return metrics

    def _train_batch_of(self, key):
        batch = next((b for b in self.batches if key in {config_key(c) for c in b}), None)
        if batch is None:
            raise ValueError(f"run {key[:12]} is not one of this study's pending cuda runs")
        models = [build_model(c) for c in batch]
        trackers = [lipschitz_tracker(model, c) for model, c in zip(models, batch)]
        callbacks = [on_epoch for _, on_epoch in trackers]
        start = time.perf_counter()
        try:
            outcomes = fit_many(models, [run_data(c) for c in batch], batch[0]["epochs"],
                                batch[0]["batch_size"],
                                on_epoch=callbacks if all(callbacks) else None)
        except Exception as error:  # noqa: BLE001 -- the batch's error is each of its runs' own
            outcomes = [error] * len(batch)
        seconds = time.perf_counter() - start
        for c, model, outcome, (curve, _) in zip(batch, models, outcomes, trackers):
            self.trained[config_key(c)] = (model, outcome, curve, seconds, len(batch))
        trained = [k for k, outcome in enumerate(outcomes) if not isinstance(outcome, Exception)]
        if batch[0]["model"] == "sgm" and trained:
            try:
                draws = draw_sgm_batch([models[k] for k in trained], [batch[k] for k in trained])
            except Exception as error:  # noqa: BLE001 -- as training's: each run's own
                draws = [error] * len(trained)
            self.drawn.update((config_key(batch[k]), d) for k, d in zip(trained, draws))
