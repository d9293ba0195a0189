"""Batched training on the cuda backend, under numba-cuda's simulator (started by
tests/test_cuda.py in a fresh process, as tests/test_cuda_kernels.py): a batched step is the CPU
model's step with the device's latents, replica r of a batch is the run trained alone, and the
SGM's sampler on the device is the CPU sampler."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numba import config

if not (config.ENABLE_CUDASIM or os.environ.get("NPGEN_CUDA_DEVICE") == "1"):
    pytest.skip("runs in the CUDA simulator, in the subprocess tests/test_cuda.py starts"
                " (or on a GPU with NPGEN_CUDA_DEVICE=1)", allow_module_level=True)

from npgen import GAN, SGM, VAE
from npgen.data import two_gaussians
from npgen.kernels import cuda as ck
from npgen.kernels import numpy_ref
from npgen.models import replicas
from npgen.models.replicas import fit_many
from npgen.study import devices, metrics_schema, plans, reproduce, runs, sweep
from tiny_study import ONE_RUN_PLAN, TINY_PARTICLES, register

if config.ENABLE_CUDASIM:
    ck.configure(threads=1, max_blocks=1)  # the simulator's cost is per thread launched

#: Bit for bit under the simulator (numpy's products per replica); on a GPU cuBLAS may pick
#: another algorithm for another batch count, so float32 rounding.
SAME = (np.testing.assert_array_equal if config.ENABLE_CUDASIM else
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6))
TINY_ARCHITECTURE = {"n_layers": 2, "base_width": 2}
TINY = dict(TINY_ARCHITECTURE, lr=1e-2)


#: Skip networks at three layers, where a resnet generator's last layer adds a narrower node
#: (zero-padded) and every densenet layer but the first concatenates.
SKIPS = {"plain": {}, "resnet": {"skip": "resnet", "n_layers": 3},
         "densenet": {"skip": "densenet", "n_layers": 3}}


def _gans(seeds, dtype="float64", **options):
    return [GAN(seed=seed, dtype=dtype, **dict(TINY, **options)) for seed in seeds]


def _data(ms, seeds, n):
    return [two_gaussians(m, n=n, seed=seed) for m, seed in zip(ms, seeds)]


@pytest.mark.parametrize("options", [
    {}, {"sn_generator": True}, {"gp_lipschitz": (0.5, 0.5)},
    {"gp_lipschitz": (0.5, 2.0), "sn_generator": True}, SKIPS["resnet"],
    dict(SKIPS["densenet"], sn_generator=True), dict(SKIPS["resnet"], gp_lipschitz=(0.5, 2.0)),
    dict(SKIPS["densenet"], gp_lipschitz=(1.0, 1.0)), {"loss": "hinge"},
    {"loss": "hinge", "discriminator_first": True}])
def test_a_batched_step_is_the_cpu_step_with_the_device_latents(options):
    """Penalized GANs of one target or of two targets in one batch, and resnet and densenet
    generators (with spectral norm, with the penalty), too."""
    seeds, ms, n = [3, 4], [1.0, 4.0], 6

    def gans():
        targets = options.get("gp_lipschitz", (None, None))
        return [_gans([seed], **dict(options, gp_lipschitz=target))[0]
                for seed, target in zip(seeds, targets)]
    batched, alone = gans(), gans()
    datasets = _data(ms, seeds, n)
    histories = fit_many(batched, datasets, epochs=1, batch_size=n)
    for model, cpu, data, history in zip(batched, alone, datasets, histories):
        states = ck.rng_states([cpu.seed])
        z1, z2 = (ck.standard_normal(states, ck.to_device(np.zeros((1, n, 1)))).copy_to_host()[0]
                  for _ in range(2))
        batch = data[numpy_ref.shuffle_order(cpu.seed, 0, n)]
        if cpu.discriminator_first:  # the discriminator takes the first latents
            losses = cpu.discriminator_gradient(batch, z1)
            cpu.discriminator_optimizer.step()
            losses.update(cpu.generator_gradient(z2))
            cpu.generator_optimizer.step()
        else:
            losses = cpu.generator_gradient(z1)
            cpu.generator_optimizer.step()
            losses.update(cpu.discriminator_gradient(batch, z2))
            cpu.discriminator_optimizer.step()
        assert set(history) == set(losses) | {"wall_time_s"}
        for name, value in losses.items():
            np.testing.assert_allclose(history[name], [value], rtol=1e-10)
        if "gp_lipschitz" in options:
            assert losses["penalty"] > 0  # the penalty's gradient took part in the step
        for name in ("generator", "discriminator"):
            got, want = model.networks()[name], cpu.networks()[name]
            np.testing.assert_allclose(got.params, want.params, rtol=1e-10, atol=1e-12)
            if got.spectral_norm:
                for k in range(got.n_layers):
                    np.testing.assert_allclose(got.sn_u[k], want.sn_u[k], rtol=1e-10)
                    np.testing.assert_allclose(got.sn_v[k], want.sn_v[k], rtol=1e-10)


@pytest.mark.parametrize("kl, skip", [("correct", "plain"), ("paper", "plain"),
                                      ("correct", "resnet"), ("paper", "densenet")])
def test_a_batched_vae_step_is_the_cpu_step_with_the_device_noise(kl, skip):
    seeds, ms, n = [3, 4], [1.0, 4.0], 6
    options = dict(TINY, kl=kl, **SKIPS[skip])
    batched = [VAE(seed=seed, dtype="float64", **options) for seed in seeds]
    alone = [VAE(seed=seed, dtype="float64", **options) for seed in seeds]
    datasets = _data(ms, seeds, n)
    histories = fit_many(batched, datasets, epochs=1, batch_size=n)
    for model, cpu, data, history in zip(batched, alone, datasets, histories):
        eps = ck.standard_normal(ck.rng_states([cpu.seed]),
                                 ck.to_device(np.zeros((1, n, 1)))).copy_to_host()[0]
        losses = cpu.negative_elbo_gradient(data[numpy_ref.shuffle_order(cpu.seed, 0, n)], eps)
        cpu.encoder_optimizer.step()
        cpu.decoder_optimizer.step()
        for name, net in cpu.networks().items():
            np.testing.assert_allclose(model.networks()[name].params, net.params, rtol=1e-10,
                                       atol=1e-12)
        for name, value in losses.items():
            np.testing.assert_allclose(history[name], [value / n], rtol=1e-10)


@pytest.mark.parametrize("threads", [1, 4])
def test_the_gradient_penalty_is_the_textbooks_row_by_row(threads):
    """Each replica its own target, B = 7 rows of d = 2: replica 0 random tangents; replica 1
    a tie between rows 2, 5 and 6 (row 5 on another thread than row 2 when threads = 4, row 6
    on the same one: row 2 is penalized, as numpy's argmax); replica 2 all zero (no
    gradient); replica 3 a NaN row among finite ones and replica 4 NaN rows only (numpy's
    argmax picks the first NaN: a NaN penalty and no gradient, and no write outside the
    replica's rows)."""
    rng = np.random.default_rng(5)
    tangent = rng.standard_normal((5, 7, 2))
    tangent[1, [2, 5, 6]] = [3.0, -4.0]
    tangent[2] = 0
    tangent[3, 4, 1] = np.nan
    tangent[4] = np.nan
    targets = [2.0, 0.5, 1.0, 1.0, 1.0]
    grad, penalty = ck.to_device(np.full((5, 7, 2), 7.0)), ck.to_device(np.zeros(5))
    before = dict(ck.LAUNCH)
    ck.configure(threads=threads)
    try:
        ck.gradient_penalty(ck.to_device(tangent), ck.to_device(np.array(targets)), 10.0, grad,
                            penalty)
    finally:
        ck.configure(**before)
    for r in range(5):
        expected, expected_grad = numpy_ref.gradient_penalty(tangent[r], targets[r], 10.0)
        np.testing.assert_allclose(penalty.copy_to_host()[r], expected, rtol=1e-12)
        np.testing.assert_allclose(grad.copy_to_host()[r], expected_grad, rtol=1e-12, atol=0)
    assert np.flatnonzero(grad.copy_to_host()[1].any(axis=1)).tolist() == [2]
    assert np.isnan(penalty.copy_to_host()[3:]).all()


def _device_noise(seed, n):
    """The first (n, 1) normals of the device stream of a run seeded ``seed``."""
    return ck.standard_normal(ck.rng_states([seed]),
                              ck.to_device(np.zeros((1, n, 1)))).copy_to_host()[0]


@pytest.mark.parametrize("weighting", ["paper", "sigma2"])
def test_a_batched_sgm_step_is_the_cpu_step_with_the_device_noise(weighting):
    """Each replica: the CPU model's standardization, the device's shuffle, the level the CPU
    model draws for the epoch's step, the device's noise; the weights after the step and the
    loss are the CPU model's denoising_loss and Adam step on that batch."""
    seeds, ms, n = [3, 4], [1.0, 4.0], 6
    batched = [SGM(seed=seed, dtype="float64", weighting=weighting, lr=1e-2) for seed in seeds]
    alone = [SGM(seed=seed, dtype="float64", weighting=weighting, lr=1e-2) for seed in seeds]
    datasets = _data(ms, seeds, n)
    histories = fit_many(batched, datasets, epochs=1, batch_size=n)
    for model, cpu, data, history in zip(batched, alone, datasets, histories):
        standardized, (cpu.mean, cpu.std) = cpu.training_data(data)
        batch = standardized[numpy_ref.shuffle_order(cpu.seed, 0, n)]
        sigma = float(cpu.sigmas[cpu.rng.integers(cpu.sigmas.size, size=1)[0]])
        loss = cpu.denoising_loss(batch, _device_noise(cpu.seed, n), sigma)
        cpu.optimizer.step()
        np.testing.assert_allclose(model.score.params, cpu.score.params, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(history["loss"], [loss / n], rtol=1e-10)
        assert (model.mean, model.std) == (cpu.mean, cpu.std)


def test_the_device_sampler_is_the_cpu_sampler():
    """SGM.sample(device="cuda") draws the CPU chain's samples and carries its gradient, the
    traced steps included (2 levels of 3 steps, 4 samples: the simulator's cost is per step)."""
    model = SGM(seed=2, dtype="float64", sigmas=[1.0, 0.5], lr=1e-2)
    fit_many([model], _data([3.0], [2], 6), epochs=1, batch_size=6)
    options = {"n": 4, "seed": 9, "n_steps_per_level": 3, "quiet": True, "lipschitz": True,
               "trace": [1, 3], "step_lr": 0.05}
    on_cpu, cpu_gradient = model.sample(**options)
    on_device, gradient = model.sample(**options, device="cuda")
    np.testing.assert_allclose(on_device, on_cpu, rtol=1e-12)
    for name in ("dx0", "grad_sq", "grad_sq_by_level", "grad_sq_by_step"):
        np.testing.assert_allclose(getattr(gradient, name), getattr(cpu_gradient, name),
                                   rtol=1e-10)
    assert np.ptp(cpu_gradient.grad_sq) > 0  # the gradients carry information


def _trained(model):
    return model.mean is not None if isinstance(model, SGM) else model.trained


@pytest.mark.parametrize("kind", [GAN, VAE, SGM])
def test_replica_r_of_a_batch_is_the_run_trained_alone(kind):
    seeds, ms, n = [5, 6, 7], [0.0, 2.0, 6.0], 8
    options = {"lr": 1e-2} if kind is SGM else TINY
    together = [kind(seed=seed, dtype="float32", **options) for seed in seeds]
    histories = fit_many(together, _data(ms, seeds, n), epochs=1, batch_size=4)
    for r, (seed, m) in enumerate(zip(seeds, ms)):
        alone = kind(seed=seed, dtype="float32", **options)
        [history] = fit_many([alone], _data([m], [seed], n), epochs=1, batch_size=4)
        for name, net in alone.networks().items():
            SAME(together[r].networks()[name].params, net.params)
        for name, values in history.items():
            if name != "wall_time_s":
                SAME(values, histories[r][name])
        assert _trained(together[r])


def _held_bytes(batched, *arrays):
    """Bytes of the distinct host buffers behind the simulator's device arrays that ``arrays``
    and the batched model (its networks, optimizers and workspaces) hold, each counted once."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    buffers, seen, todo = {}, set(), [batched, *arrays]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, FakeCUDAArray):
            root = item._ary
            while isinstance(root.base, np.ndarray):
                root = root.base
            buffers[id(root)] = root.nbytes
        elif isinstance(item, (list, tuple)):
            todo += item
        elif isinstance(item, dict):
            todo += item.values()
        elif type(item).__module__.startswith("npgen."):  # the batch, its networks, Adams, workspaces
            todo += vars(item).values()
    return sum(buffers.values())


@pytest.mark.skipif(not config.ENABLE_CUDASIM, reason="counts the simulator's host buffers")
@pytest.mark.parametrize("kind, options", [
    (GAN, {}), (GAN, dict(SKIPS["densenet"], sn_generator=True)),
    (GAN, dict(SKIPS["densenet"], gp_lipschitz=1.0)),
    (VAE, SKIPS["resnet"]), (VAE, dict(SKIPS["densenet"], base_width=8))])
def test_replica_bytes_bound_what_a_replica_holds_after_a_step(kind, options):
    """After one step every buffer of a replica exists (the workspaces of each batch size a
    network runs, skip layouts' input buffers included): replica_bytes is at least their sum,
    and not more than a quarter above it (the densenet VAE is wide enough for its input buffers
    to exceed the estimate's margin on the batch buffers)."""
    B, n = 4, 8
    model = kind(seed=1, dtype="float64", **dict(TINY, **options))
    batched = replicas.Lockstep([model], ck, B, n)
    data = ck.to_device(_data([2.0], [1], n)[0][None])
    batched.start_epoch()
    batched.step(data, 0)
    held = _held_bytes(batched, data)
    assert held <= replicas.replica_bytes(model, B, n) <= 1.25 * held


def test_a_diverging_replica_is_reported_and_the_others_train_on(monkeypatch):
    """Replica 1's discriminator loss turns NaN at the second step (one step an epoch: a
    wrapped read of the second epoch's losses reports it so): it is reported failed with the
    CPU run's sentence, replica 0 trains to the end."""
    real_read = replicas.Lockstep.epoch_losses
    calls = []

    def epoch_losses(self):
        losses = real_read(self)
        calls.append(1)
        if len(calls) == 2:
            losses["discriminator"][0, 1] = np.nan
        return losses

    monkeypatch.setattr(replicas.Lockstep, "epoch_losses", epoch_losses)
    seeds, n = [1, 2], 4
    models = _gans(seeds, dtype="float32")
    curves = [[], []]
    out = fit_many(models, _data([1.0, 1.0], seeds, n), epochs=2, batch_size=4,
                   on_epoch=[lambda e, h, c=c: c.append(e) for c in curves])
    assert isinstance(out[0], dict) and models[0].trained and curves[0] == [1, 2]
    assert str(out[1]) == "GAN training diverged at step 2: the discriminator loss is nan"
    assert not models[1].trained and curves[1] == [1]


def test_a_diverging_sgm_replica_stays_untrained(monkeypatch):
    """An SGM replica whose loss turns NaN is reported with the CPU run's sentence and keeps no
    standardization (it cannot sample); the other one trains on."""
    real_read = replicas.Lockstep.epoch_losses

    def epoch_losses(self):
        losses = real_read(self)
        losses["loss"][:, 0] = np.nan
        return losses

    monkeypatch.setattr(replicas.Lockstep, "epoch_losses", epoch_losses)
    models = [SGM(seed=seed, lr=1e-2) for seed in (1, 2)]
    out = fit_many(models, _data([1.0, 1.0], [1, 2], 4), epochs=1, batch_size=4)
    assert str(out[0]) == "SGM training diverged at step 1: loss 'loss' (score) is nan"
    assert models[0].mean is None and isinstance(out[1], dict) and models[1].mean is not None
    with pytest.raises(RuntimeError, match="sample needs a trained model"):
        models[0].sample(3)


SIM_PRESET = {"epochs": 1, "batch_size": 4, "lr": 1e-3, "gan_lr": 1e-2, "gan_betas": [0.5, 0.999],
              "n_data": 8, "n_samples": 50}


def _tiny_models(config):
    """The run's model at tiny widths (the simulator's cost grows with them); the SGM's score
    network has its fixed widths, at two noise levels."""
    if config["model"] == "sgm":
        return SGM(seed=config["seed"], lr=config["lr"], sigmas=[1.0, 0.5])
    kind = {"gan": GAN, "vae": VAE}[config["model"]]
    options = {"kl": config["kl"]} if config["model"] == "vae" else {}
    return kind(seed=config["seed"], lr=config["lr"], betas=tuple(config["betas"]),
                **TINY_ARCHITECTURE, **options)


class _SampleOnHost:
    """The batched device sampler's stand-in for a whole study under the simulator (3 passes
    of 1000 steps would take it hours; tests/test_cuda_sampler.py checks the launch itself):
    each model's CPU sampler, with the calls counted."""

    calls = 0

    def __call__(self, models, n, seeds, traces=None, **options):
        type(self).calls += 1
        traces = traces or [None] * len(models)
        return [model.sample(n, seed=seed, trace=trace, quiet=True, **options)
                for model, seed, trace in zip(models, seeds, traces)]


def test_reproduce_on_cuda_trains_every_model_on_the_device_and_reports(tmp_path, monkeypatch):
    """npgen reproduce --device cuda on Figure 3 of a one-run plan: the GAN, the VAE and the
    SGM train on the device (their config.json says so), the SGM samples there, and the report
    and a redrawn figure read all three."""
    register(monkeypatch, plan=ONE_RUN_PLAN)
    monkeypatch.setitem(runs.PRESETS, "sim", SIM_PRESET)
    monkeypatch.setitem(plans.PLANS, "sim", ONE_RUN_PLAN)
    monkeypatch.setitem(runs.PARTICLE_PRESETS, "sim", dict(TINY_PARTICLES, batch_size=4))
    monkeypatch.setattr(devices, "build_model", _tiny_models)
    monkeypatch.setattr(devices, "sample_many", _SampleOnHost())
    out = str(tmp_path / "study")
    report = reproduce.reproduce("sim", only="fig3", out=out, quiet=True, device="cuda")
    with open(os.path.join(out, "study.json"), encoding="utf-8") as handle:
        assert json.load(handle) == {"preset": "sim", "device": "cuda"}
    devices_seen = {}
    for folder in os.listdir(os.path.join(out, "runs")):
        if folder.startswith(".") or not os.path.isdir(os.path.join(out, "runs", folder)):
            continue  # failures.json, .lock
        with open(os.path.join(out, "runs", folder, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
        devices_seen[config["model"]] = config.get("device", "cpu")
    assert devices_seen == {"gan": "cuda", "vae": "cuda", "sgm": "cuda"}
    assert _SampleOnHost.calls == 3  # the batch's samples, then its gradients and its traces
    assert os.path.exists(report) and os.path.exists(reproduce.redraw_figure("3", out))


def test_a_cuda_sweep_stores_batched_runs_like_cpu_runs(tmp_path, monkeypatch):
    """BatchedRuns through the sweep: one batch for the four GAN runs (two m, two seeds), each
    stored as a CPU run is (files, keys, the metrics the report reads), with its device in
    config.json; the run trained alone in a batch of one has the same weights and numbers."""
    monkeypatch.setitem(runs.PRESETS, "sim", SIM_PRESET)
    monkeypatch.setattr(devices, "build_model", _tiny_models)
    configs = devices.device_plan({"fig": [runs.make_config("gan", m, "sim", seed)
                                           for m in (0.0, 5.0) for seed in (0, 1)]}, "cuda")["fig"]
    trained = []
    real_fit_many = devices.fit_many
    monkeypatch.setattr(devices, "fit_many", lambda models, *a, **k: trained.append(len(models))
                        or real_fit_many(models, *a, **k))
    run_dir = tmp_path / "runs"
    results = sweep.run_sweep(configs, devices.BatchedRuns(configs, run_dir), run_dir, quiet=True)
    assert trained == [4]
    for run, metrics in zip(configs, results):
        folder = sweep.find_run_dir(run, run_dir)
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
            assert json.load(handle)["device"] == "cuda"
        metrics_schema.check_metrics(metrics, "gan", folder)
        assert metrics["batch"]["replicas"] == 4
        assert {"model", "samples.npy", "history.json", "histogram.png"} <= set(os.listdir(folder))
    alone_dir = tmp_path / "alone"
    [alone] = sweep.run_sweep(configs[3:], devices.BatchedRuns(configs[3:], alone_dir), alone_dir,
                              quiet=True)
    assert trained == [4, 1]
    SAME(alone["lipschitz"], results[3]["lipschitz"])
    if config.ENABLE_CUDASIM:  # on a GPU, a rounding-level change of weights may move a sample
        assert alone["mass_between"] == results[3]["mass_between"]


def test_loss_shapes_that_do_not_fit_are_one_sentence():
    x, sigma = ck.to_device(np.zeros((2, 3, 1))), ck.to_device(np.zeros(2))
    with pytest.raises(ValueError, match="score_matching_noisy: array shapes do not fit"):
        ck.score_matching_noisy(x, x, ck.to_device(np.zeros(3)), x)
    with pytest.raises(ValueError, match="score_matching_loss: array shapes do not fit"):
        ck.score_matching_loss(x, x, sigma, 3, x, ck.to_device(np.zeros(2)))
    with pytest.raises(ValueError, match="gradient_penalty: array shapes do not fit"):
        ck.gradient_penalty(x, ck.to_device(np.ones(2)), 1.0, x, ck.to_device(np.zeros(3)))


def test_the_device_shuffle_is_a_permutation_that_does_not_depend_on_r():
    """Replica r's order in an epoch is numpy_ref.shuffle_order of its seed and the epoch
    alone: the same at R = 1 and R = 3, a permutation of the rows, another in the next epoch."""
    n, seeds = 13, np.array([7, 2 ** 63 + 1, 0], np.uint64)
    orders = {}
    for R in (1, 3):
        out, keys = ck.zeros((R, n), np.int64), ck.zeros((R, n), np.uint64)
        for epoch in (0, 1):
            ck.shuffle_orders(ck.to_device(seeds[:R]), epoch, keys, out)
            orders[R, epoch] = out.copy_to_host()
    for epoch in (0, 1):
        np.testing.assert_array_equal(orders[1, epoch][0], orders[3, epoch][0])
        for r, seed in enumerate(seeds):
            order = orders[3, epoch][r]
            np.testing.assert_array_equal(np.sort(order), np.arange(n))
            np.testing.assert_array_equal(order, numpy_ref.shuffle_order(int(seed), epoch, n))
    assert not np.array_equal(orders[3, 0], orders[3, 1])
    assert len({tuple(order) for order in orders[3, 0]}) == 3


def _launch_count():
    """bench/launch_count.py, the counting hook bench/gpu.py prints with --dry-run."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                        "launch_count.py")
    spec = importlib.util.spec_from_file_location("launch_count", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not config.ENABLE_CUDASIM, reason="counts the simulator's launches and copies")
@pytest.mark.parametrize("kind", ["GAN", "VAE", "SGM"])
def test_a_training_step_keeps_to_its_launch_budget_and_copies_nothing(kind):
    """A step of the lockstep loop launches at most BUDGET[kind] kernels, products and fills,
    and copies nothing between host and device (the cuBLAS stand-in's own copies of its
    operands aside). The counts are those of R = 2 run, equal at R = 5 and at R = 330 with the
    kernel bodies and products not run: they do not depend on R."""
    counter = _launch_count()
    counts = counter.step_counts(kind, 2)
    assert counts == counter.step_counts(kind, 5, execute=False) == counter.step_counts(
        kind, 330, execute=False)
    assert counts["to_host"] == counts["to_device"] == 0
    assert counts["launches"] <= counter.BUDGET[kind], counts


@pytest.mark.skipif(not config.ENABLE_CUDASIM, reason="counts the simulator's copies")
def test_an_epochs_losses_are_its_one_read():
    """The epoch's losses come to the host in one copy, one row per step."""
    B, n = 4, 8
    models = [GAN(seed=seed, dtype="float64", **TINY) for seed in (1, 2)]
    batched = replicas.Lockstep(models, ck, B, n)
    data = ck.to_device(np.stack([two_gaussians(2.0, n=n, seed=s) for s in (1, 2)]))
    batched.start_epoch()
    for start in (0, B):
        batched.step(data, start)
    counter = _launch_count()
    with counter.LaunchCounter() as counts:
        losses = batched.epoch_losses()
    assert counts["to_host"] == 1 and all(values.shape == (n // B, 2) for values in losses.values())
