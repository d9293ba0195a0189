"""Time npgen's CUDA backend on one GPU and print one table (run by bench/gpu.sh).

Each row is written to ``OUT/gpu.json`` (and the table to ``OUT/gpu.md``) as soon as it is
measured, by an atomic rewrite of the file, so a run stopped by a timeout keeps every row it
finished; ``"complete": true`` marks a run that measured them all.

Measures, on the device it finds:

* per-step times of the batched GAN (:class:`npgen.models.replicas.Lockstep`, the paper's
  G 1-128-256-1 and spectrally normed D 1-512-256-128-1, batch 1000), VAE (encoder
  1-256-128-2, decoder 1-128-256-1) and SGM (the score network, x path 1-96-196-1) at R = 1,
  10, 100 and 330 replicas, with the FLOPs of their matrix products and their rate as a share
  of the FP32 roof;
* the published PyTorch GAN step on the same GPU (one run, as the published code trains);
* annealed Langevin sampling (:func:`npgen.kernels.cuda.annealed_langevin`) of R score
  networks of the paper's widths, and of one run's 50 000 samples as ``SGM.sample(...,
  device="cuda")`` runs it;
* the paper preset's Figure 3 (11 m x 10 seeds = 110 runs of each model, 20 000 steps each):
  each model's runs as one batch, as many steps as the time budget allows, projected to
  20 000 steps; the SGMs' sampling (3 passes of 1000 steps over 50 000 samples per run, one
  run at a time) projected from the timed steps; and their sum.
* the paper preset's Figure 4 penalized GANs (13 targets x 10 seeds) as one batch, projected
  the same way.

The roof is 67 TFLOP/s: the FP32 (non-tensor-core) peak NVIDIA states for the H200 SXM. With
``--dry-run`` everything runs at tiny sizes (under the simulator when NUMBA_ENABLE_CUDASIM=1)
to check the script itself; its numbers are not measurements. Under the simulator it first
prints each model's launches and copies per training step (bench/launch_count.py).
"""

import argparse
import os
import platform
import sys
import time

import numpy as np

#: FP32 peak of the H200 SXM without tensor cores (NVIDIA's datasheet), in FLOP/s.
FP32_ROOF = 67e12
REPLICAS = (1, 10, 100, 330)
KINDS = ("gan", "vae", "sgm")
PAPER = {"batch": 1000, "steps": 20000, "m_values": 11, "seeds": 10}
#: One SGM run's sampling in the paper preset: its samples and Langevin steps (10 levels of
#: 100), and the passes a run takes (the samples, the sampler's gradient, the traces).
PAPER_SAMPLING = {"samples": 50000, "steps": 1000}
SAMPLING_PASSES = 3
DRY = {"replicas": (1, 2), "batch": 4, "base_width": 2, "n_layers": 2, "steps": 1,
       "langevin": (2, 8, 3, 4), "sweep_runs": 2, "sampling": {"samples": 8, "steps": 3}}


def product_flops(sizes, rows, weight_grads, input_grads):
    """FLOPs of a dense network's products for ``rows`` rows: 2 rows in out for the forward
    of each layer, as much again for each of its weight gradient and its input gradient."""
    total = 0
    for k, (fan_in, out) in enumerate(zip(sizes[:-1], sizes[1:])):
        passes = 1 + weight_grads + (input_grads and k > 0)
        total += 2 * rows * fan_in * out * passes
    return total


def gan_step_flops(model, batch):
    """Product FLOPs of one GAN step (generator step, then discriminator step on 2B rows)."""
    G, D = model.generator.sizes, model.discriminator.sizes
    generator_step = (product_flops(G, batch, True, False)
                      + product_flops(D, batch, False, True) + 2 * batch * D[0] * D[1])
    discriminator_step = product_flops(G, batch, False, False) + product_flops(D, 2 * batch, True, False)
    return generator_step + discriminator_step


def vae_step_flops(model, batch):
    """Product FLOPs of one VAE step: encoder forward and backward (no input gradient),
    decoder forward and backward down to its input z."""
    decoder = model.decoder.sizes
    return (product_flops(model.encoder.sizes, batch, True, False)
            + product_flops(decoder, batch, True, True) + 2 * batch * decoder[0] * decoder[1])


def penalized_gan_step_flops(model, batch):
    """Product FLOPs of one GAN step with the gradient penalty: the plain step's, plus the
    generator's tangent path (a forward product per layer, and the weight and input
    gradients of the tangents)."""
    return gan_step_flops(model, batch) + product_flops(model.generator.sizes, batch, True, True)


def sgm_step_flops(model, batch):
    """Product FLOPs of one SGM step: the score network's x path 1-96-196-1 forward and
    backward down to its first layer (the embedding's one row per replica is left out)."""
    from npgen.nn.score import HIDDEN_WIDTHS

    return product_flops([1, *HIDDEN_WIDTHS, 1], batch, True, True)


def _model(kind, seed, settings):
    """An untrained model of ``kind`` at the timed widths (only its initial weights are used)."""
    from npgen import GAN, SGM, VAE
    from npgen.study.plans import PLANS

    targets = PLANS["paper"].gp_values  # Figure 4's, one per replica in turn
    if kind == "sgm":
        return SGM(seed=seed, backend="numpy")
    widths = {"n_layers": settings["n_layers"], "base_width": settings["base_width"]}
    if kind == "penalized gan":
        return GAN(seed=seed, gp_lipschitz=targets[seed % len(targets)], backend="numpy", **widths)
    return {"gan": GAN, "vae": VAE}[kind](seed=seed, backend="numpy", **widths)


def time_steps(ck, kind, replicas, settings, budget):
    """(seconds per step, product FLOPs per step) of the batched GAN, VAE, SGM or penalized
    GAN at R replicas."""
    from npgen.models.replicas import Lockstep

    flops = {"gan": gan_step_flops, "vae": vae_step_flops, "sgm": sgm_step_flops,
             "penalized gan": penalized_gan_step_flops}[kind]
    B = settings["batch"]
    models = [_model(kind, r, settings) for r in range(replicas)]
    batched = Lockstep(models, ck, B, 4 * B)
    data = ck.to_device(np.random.default_rng(0).standard_normal((replicas, 4 * B, 1), np.float32))
    batched.start_epoch()
    batched.step(data, 0)  # compiles and warms up
    ck.synchronize()
    steps, start = 0, time.perf_counter()
    while steps < settings["steps"] or (time.perf_counter() - start < budget and steps < 200):
        if steps % 4 == 0:  # an epoch's orders and noise, drawn as fit_many draws them
            batched.start_epoch()
        batched.step(data, (steps % 4) * B)
        steps += 1
    ck.synchronize()
    return (time.perf_counter() - start) / steps, flops(models[0], B)


def time_torch_gan(settings, steps=50):
    """Seconds per step of the published PyTorch GAN on CUDA, or None without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    from torch import nn
    sn = nn.utils.spectral_norm
    device = torch.device("cuda")
    G = nn.Sequential(nn.Linear(1, 128), nn.LeakyReLU(0.2), nn.Linear(128, 256), nn.LeakyReLU(0.2),
                      nn.Linear(256, 1)).to(device)
    D = nn.Sequential(sn(nn.Linear(1, 512)), nn.LeakyReLU(0.2), sn(nn.Linear(512, 256)),
                      nn.LeakyReLU(0.2), sn(nn.Linear(256, 128)), nn.LeakyReLU(0.2),
                      sn(nn.Linear(128, 1)), nn.Sigmoid()).to(device)
    opt_g, opt_d = (torch.optim.Adam(net.parameters(), lr=1e-4) for net in (G, D))
    bce = nn.BCELoss()
    B = settings["batch"]
    x = torch.randn(B, 1, device=device)
    ones, zeros = torch.ones(B, 1, device=device), torch.zeros(B, 1, device=device)

    def step():
        opt_g.zero_grad()
        bce(D(G(torch.randn(B, 1, device=device))), ones).backward()
        opt_g.step()
        opt_d.zero_grad()
        fake = G(torch.randn(B, 1, device=device)).detach()
        ((bce(D(x), ones) + bce(D(fake), zeros)) / 2).backward()
        opt_d.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def time_langevin(ck, replicas, n, steps, hidden):
    """Seconds per Langevin step of R replicas of n samples, score widths ``hidden``."""
    h1, h2 = hidden
    rng = np.random.default_rng(0)

    def draw(*shape, scale=1.0):
        return ck.to_device((scale * rng.standard_normal(shape)).astype(np.float32))

    x = draw(replicas, n)
    W1, b1 = draw(replicas, h1, 1), draw(replicas, h1)
    W2a, beff2 = draw(replicas, h2, h1, scale=0.1), draw(replicas, 1, h2)
    W3a, beff3 = draw(replicas, 1, h2, scale=0.1), draw(replicas, 1)
    alphas = ck.to_device(np.full((replicas, 1), 1e-4, np.float32))
    seeds = list(range(replicas))
    ck.annealed_langevin(x, W1, b1, W2a, beff2, W3a, beff3, alphas, 1, seeds, 0, 0.01, 0.2)
    ck.synchronize()
    start = time.perf_counter()
    ck.annealed_langevin(x, W1, b1, W2a, beff2, W3a, beff3, alphas, steps, seeds, 1, 0.01, 0.2)
    ck.synchronize()
    return (time.perf_counter() - start) / steps


def print_launch_counts():
    """Print the launches and copies of one training step of each model, counted under the
    simulator by bench/launch_count.py (the counts test_cuda_replicas.py holds to a budget)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from launch_count import BUDGET, step_counts

    for kind in BUDGET:
        counts = step_counts(kind, 2)
        print(f"{kind} step: {counts['launches']} launches ({counts['kernels']} kernels +"
              f" {counts['products']} products + {counts['fills']} fills; budget"
              f" {BUDGET[kind]}), {counts['to_host']} copies to the host and"
              f" {counts['to_device']} to the device")


def device_name(ck):
    """The GPU's name, or the simulator's."""
    if ck.SIMULATOR:
        return "numba-cuda simulator (no GPU)"
    from numba import cuda
    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


class Results:
    """The measurements as a JSON-able dict, with OUT/gpu.json and OUT/gpu.md rewritten
    atomically after every row."""

    def __init__(self, out, header):
        self.out, self.result = out, dict(header, rows=[], complete=False)
        self.write()

    def add(self, row):
        self.result["rows"].append(row)
        self.write()

    def finish(self):
        self.result["complete"] = True
        self.write()
        return self.result

    def write(self):
        from npgen.util.io import atomic_write_json, atomic_write_text

        atomic_write_json(os.path.join(self.out, "gpu.json"), self.result)
        atomic_write_text(os.path.join(self.out, "gpu.md"), table(self.result) + "\n")


def measure(dry_run, budget, out):
    """Every timing of the module doc, each row written to ``out`` as it is measured; returns
    them as a JSON-able dict."""
    from npgen import kernels
    ck = kernels.get_replica_backend("cuda")
    from npgen.study.plans import PLANS
    if dry_run:
        budget = 0.0  # exactly DRY["steps"] steps
        if ck.SIMULATOR:
            ck.configure(threads=1, max_blocks=1)
            print_launch_counts()
        settings = {"batch": DRY["batch"], "base_width": DRY["base_width"],
                    "n_layers": DRY["n_layers"], "steps": DRY["steps"]}
        replicas, langevin = DRY["replicas"], DRY["langevin"]
        sweep_runs, sampling = DRY["sweep_runs"], DRY["sampling"]
    else:
        settings = {"batch": PAPER["batch"], "base_width": 128, "n_layers": 3, "steps": 20}
        replicas, langevin = REPLICAS, (330, 1000, 50, (96, 196))
        sweep_runs, sampling = PAPER["m_values"] * PAPER["seeds"], PAPER_SAMPLING
    results = Results(out, {
        "device": device_name(ck), "dry_run": dry_run, "fp32_roof_tflops": FP32_ROOF / 1e12,
        "python": platform.python_version(),
        "not_timed": "the runs that stay on CPU with --device cuda (resnet/densenet networks,"
                     " particles, Figure 7), and the other figures' batches"})
    first_step = None
    for kind in KINDS:
        for R in replicas:
            seconds, flops = time_steps(ck, kind, R, settings, budget=min(8.0, budget / 30))
            row = {"what": f"{kind.upper()} step (npgen cuda)", "replicas": R,
                   "seconds_per_step": seconds, "product_gflop_per_step": R * flops / 1e9,
                   "percent_of_fp32_roof": 100 * R * flops / seconds / FP32_ROOF}
            first_step = first_step or row
            results.add(row)
    torch_seconds = None if dry_run else time_torch_gan(settings)
    if torch_seconds is not None:
        flops = first_step["product_gflop_per_step"] * 1e9
        results.add({"what": "GAN step (published PyTorch, one run)", "replicas": 1,
                     "seconds_per_step": torch_seconds, "product_gflop_per_step": flops / 1e9,
                     "percent_of_fp32_roof": 100 * flops / torch_seconds / FP32_ROOF})
    if dry_run:
        R, n, steps, hidden = langevin[0], langevin[1], langevin[2], (langevin[3], langevin[3])
    else:
        R, n, steps, hidden = langevin
    results.add({"what": f"Langevin step ({n} samples each)", "replicas": R,
                 "seconds_per_step": time_langevin(ck, R, n, steps, hidden),
                 "product_gflop_per_step": None, "percent_of_fp32_roof": None})
    one_run = time_langevin(ck, 1, sampling["samples"], steps, hidden)
    results.add({"what": f"Langevin step (one run's {sampling['samples']} samples)", "replicas": 1,
                 "seconds_per_step": one_run, "product_gflop_per_step": None,
                 "percent_of_fp32_roof": None,
                 "projected_seconds": one_run * sampling["steps"] * SAMPLING_PASSES * sweep_runs,
                 "figure": 3,
                 "projection": f"Figure 3's {sweep_runs} SGM runs sampled, {SAMPLING_PASSES} passes"
                               f" of {sampling['steps']} steps each"})
    for kind in KINDS:
        seconds, flops = time_steps(ck, kind, sweep_runs, settings, budget=budget / 8)
        results.add({"what": f"Figure 3 {kind.upper()} runs as one batch", "replicas": sweep_runs,
                     "seconds_per_step": seconds, "product_gflop_per_step": sweep_runs * flops / 1e9,
                     "percent_of_fp32_roof": 100 * sweep_runs * flops / seconds / FP32_ROOF,
                     "projected_seconds": seconds * PAPER["steps"], "figure": 3,
                     "projection": f"{PAPER['steps']} training steps of {sweep_runs} replicas"})
    penalized_runs = 2 if dry_run else len(PLANS["paper"].gp_values) * PAPER["seeds"]
    seconds, flops = time_steps(ck, "penalized gan", penalized_runs, settings, budget=budget / 8)
    results.add({"what": "Figure 4 penalized GAN runs as one batch", "replicas": penalized_runs,
                 "seconds_per_step": seconds, "product_gflop_per_step": penalized_runs * flops / 1e9,
                 "percent_of_fp32_roof": 100 * penalized_runs * flops / seconds / FP32_ROOF,
                 "projected_seconds": seconds * PAPER["steps"], "figure": 4,
                 "projection": f"{PAPER['steps']} training steps of {penalized_runs} replicas"})
    return results.finish()


def table(result):
    """The measurements as one markdown table."""
    lines = [f"Device: {result['device']}" + (" (dry run: tiny sizes, not a measurement)"
                                              if result["dry_run"] else ""),
             f"Roof: {result['fp32_roof_tflops']:g} TFLOP/s FP32 (H200 SXM, non-tensor-core);"
             " % = product FLOPs / step time / roof.", "",
             "| what | R | ms / step | product GFLOP / step | % of FP32 roof |",
             "|---|---:|---:|---:|---:|"]
    for row in result["rows"]:
        gflop = "" if row["product_gflop_per_step"] is None else f"{row['product_gflop_per_step']:.3g}"
        share = "" if row["percent_of_fp32_roof"] is None else f"{row['percent_of_fp32_roof']:.2g}"
        lines.append(f"| {row['what']} | {row['replicas']} | {1e3 * row['seconds_per_step']:.3g} |"
                     f" {gflop} | {share} |")
    lines.append("")
    projected = [row for row in result["rows"] if "projected_seconds" in row]
    for row in projected:
        lines.append(f"{row['what']}: {row['projected_seconds']:.0f} s projected for"
                     f" {row['projection']}.")
    if result["complete"]:
        total = sum(row["projected_seconds"] for row in projected if row["figure"] == 3)
        lines.append(f"Figure 3, paper preset (training and sampling): {total:.0f} s"
                     f" ({total / 60:.1f} min) projected; target 600 s.")
    else:
        lines.append(f"Incomplete (still running, or stopped): rows measured so far:"
                     f" {len(result['rows'])}.")
    lines.append(f"Not timed: {result['not_timed']}.")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu.json and gpu.md")
    parser.add_argument("--budget", type=float, default=240.0,
                        help="seconds the timing loops may take in all (default 240)")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny sizes, to check the script (not a measurement)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    print(table(measure(args.dry_run, args.budget, args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
