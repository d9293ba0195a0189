"""Time npgen's CUDA backend on one GPU, meter its products and decide its targets (run by
bench/gpu.sh).

Each row is written to ``OUT/gpu.json`` (and the table to ``OUT/gpu.md``) as soon as it is
measured, by an atomic rewrite of the file, so a run stopped by a timeout keeps every row it
finished; ``"complete": true`` marks a run that measured them all, and only a complete run
decides the targets.

Measures, on the device it finds:

* per-step times of the batched GAN (:class:`npgen.models.replicas.Lockstep`, the paper's
  G 1-128-256-1 and spectrally normed D 1-512-256-128-1, batch 1000), VAE (encoder
  1-256-128-2, decoder 1-128-256-1) and SGM (the score network) at R = 1, 10, 100 and 330
  replicas, beside the time of their products alone, with the products' FLOPs as a share of
  the GPU's FP32 peak over each (bench/gpu_meter.py: the FLOP count, checked against the
  products' own shapes, the CUDA-event timer, the peak by device name, the TF32 setting);
* the published PyTorch GAN step on the same GPU (one run, as the published code trains);
* the SGM sampler (:func:`npgen.models.sgm_device.sample_many`): the Figure 3 batch's runs of
  50 000 samples each in one launch, plain and carrying the sampler's gradient and traces,
  as seconds per Langevin step and per launch (from two launches of different lengths);
* every GPU batch of the paper preset (the runs that share an architecture, as
  :func:`npgen.study.devices.batches` groups them), timed as one batch and projected to its
  20 000 steps; the SGM batch's sampling projected to its passes (one plain, two with the
  gradient) of 1000 steps.

Targets (:data:`TARGETS`), decided only from a complete run on a GPU: Figure 3 of the paper
preset (330 runs, training and sampling) in at most 10 minutes; the whole paper preset in at
most an hour; the products at R = 330 at least 50% of FP32 peak. Each is "met", "not met"
(with the number), "inconclusive" (with the reason) or, without a GPU, "not measured on a GPU".
With ``--dry-run`` everything runs at tiny sizes (under the simulator when
NUMBA_ENABLE_CUDASIM=1, the paper batches with tiny plain stand-ins) to check the script
itself; its numbers are not measurements. Under the simulator it first prints each model's
launches and copies per training step (bench/launch_count.py).
"""

import argparse
import os
import platform
import sys
import time
from collections import Counter

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_meter import ProductMeter, fp32_peak, step_flops, tf32_setting  # noqa: E402

REPLICAS = (1, 10, 100, 330)
KINDS = ("gan", "vae", "sgm")
PAPER = {"batch": 1000, "steps": 20000, "m_values": 11, "seeds": 10}
#: One SGM run's sampling in the paper preset: its samples and steps per level (10 levels),
#: and the passes a run takes, by kind: the samples, then the gradient and the traced pass.
PAPER_SAMPLING = {"samples": 50000, "steps_per_level": 100}
SAMPLING_PASSES = {"plain": 1, "gradient": 2}
#: Steps per level of the two timed sampler launches (their difference gives a step's time).
SAMPLER_TIMED_STEPS = (2, 4)
#: Samples traced per run in the traced pass (npgen.study.sampler: 10 per class and the max).
TRACED_SAMPLES = 31
#: The targets: key -> (what, the bound's words, its number, its unit).
TARGETS = {"figure3": ("Figure 3 of the paper preset (330 runs, training and sampling)",
                       "at most", 600, "s"),
           "paper": ("the whole paper preset", "at most", 3600, "s"),
           "products": ("the products at R = 330, of each model", "at least", 50, "% of FP32 peak")}
NOT_ON_GPU = "not measured on a GPU"
DRY = {"replicas": (1, 2), "batch": 4, "base_width": 2, "n_layers": 2, "steps": 1,
       "sampler": {"replicas": 2, "samples": 8}, "batch_runs": 2}


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


def time_models(ck, models, settings, budget):
    """(seconds per step, products' seconds per step, counted product FLOPs per step, the
    products' timer) of ``models`` trained in lockstep at the batch size of ``settings``: the
    step timed alone, then its products counted and timed by ProductMeter over more steps."""
    from npgen.models.replicas import Lockstep

    B, R = settings["batch"], len(models)
    batched = Lockstep(models, ck, B, 4 * B)
    data = ck.to_device(np.random.default_rng(0).standard_normal((R, 4 * B, 1), np.float32))
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
    seconds = (time.perf_counter() - start) / steps
    metered = settings["steps"]
    with ProductMeter(ck) as meter:
        for k in range(metered):
            if k % 4 == 0:
                batched.start_epoch()
            batched.step(data, (k % 4) * B)
        product_seconds = meter.seconds()
    return seconds, product_seconds / metered, meter.flops / metered, meter.timer


def step_row(what, models, settings, timing, peak):
    """A row of a timed batch: its step, its products, their FLOPs (the formula's, and the
    count of the products that ran) and both rates as a share of the FP32 peak."""
    seconds, product_seconds, counted, _ = timing
    flops = len(models) * step_flops(models[0], settings["batch"])
    return {"what": what, "replicas": len(models), "seconds_per_step": seconds,
            "product_seconds_per_step": product_seconds, "product_gflop_per_step": flops / 1e9,
            "counted_product_gflop_per_step": counted / 1e9,
            "percent_of_fp32_peak_step": None if peak is None else 100 * flops / seconds / peak,
            "percent_of_fp32_peak_products": (None if peak is None
                                              else 100 * flops / product_seconds / peak)}


def time_sampler(replicas, n, lipschitz):
    """(seconds per Langevin step, seconds per launch besides its steps) of sample_many on R
    SGMs (the paper's 10 noise levels, untrained networks) of n samples each, from two
    launches of SAMPLER_TIMED_STEPS steps per level; with ``lipschitz``, carrying the
    sampler's gradient and tracing TRACED_SAMPLES samples of each run."""
    from npgen import SGM
    from npgen.models.sgm_device import sample_many

    models = [SGM(seed=r, backend="numpy") for r in range(replicas)]
    for model in models:
        model.mean, model.std = 0.0, 1.0
    traces = [np.arange(min(TRACED_SAMPLES, n))] * replicas if lipschitz else None
    seeds = list(range(replicas))
    levels = models[0].sigmas.size
    seconds = []
    for steps in (1, *SAMPLER_TIMED_STEPS):  # the first compiles and warms up
        start = time.perf_counter()
        sample_many(models, n, seeds, n_steps_per_level=steps, lipschitz=lipschitz, traces=traces)
        seconds.append(time.perf_counter() - start)
    short, long = SAMPLER_TIMED_STEPS
    per_step = (seconds[2] - seconds[1]) / (levels * (long - short))
    return per_step, seconds[1] - per_step * levels * short


def paper_batches(dry_run):
    """The GPU batches of the paper preset (:func:`npgen.study.devices.batches` over its
    unique cuda runs), each with the plan's figures its runs appear in, and the preset's runs
    that stay on CPU, in words. A dry run keeps DRY['batch_runs'] runs of each batch."""
    from npgen.study import devices, plans, sweep

    figures = {}
    for figure, configs in devices.device_plan(plans.plan("paper"), "cuda").items():
        for config in configs:
            figures.setdefault(sweep.config_key(config), (config, set()))[1].add(figure)
    on_device = [config for config, _ in figures.values() if config.get("device") == "cuda"]
    out = []
    for batch in devices.batches(on_device, None, None):
        names = sorted(set().union(*(figures[sweep.config_key(c)][1] for c in batch)))
        out.append((batch[:DRY["batch_runs"]] if dry_run else batch, names))
    on_cpu = Counter(describe(config) for config, _ in figures.values()
                     if config.get("device") != "cuda")
    return out, "; ".join(f"{count} runs of {what}" for what, count in sorted(on_cpu.items()))


def batch_models(batch, settings, dry_run):
    """The untrained models of a paper batch; in a dry run, tiny plain stand-ins of their kind."""
    from npgen.study.runs import build_model

    if not dry_run:
        return [build_model(config, backend="numpy") for config in batch]
    kind = "penalized gan" if batch[0].get("gp_lipschitz") is not None else batch[0]["model"]
    return [_model(kind, r, settings) for r in range(len(batch))]


def describe(config):
    """A paper batch's architecture in a few words."""
    words = [config["model"].upper()]
    if config["model"] in ("gan", "vae"):
        words += [config.get("skip", "plain"), f"{config['n_layers']} layers"]
    if config.get("sn_generator"):
        words.append("spectrally normed generator")
    if config.get("gp_lipschitz") is not None:
        words.append("gradient penalty")
    if config.get("latent", "gaussian") != "gaussian":
        words.append(f"{config['latent']} latents")
    return ", ".join(words)


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
        self.out, self.result = out, dict(header, rows=[], complete=False, targets=None)
        self.write()

    def add(self, row):
        self.result["rows"].append(row)
        self.write()

    def finish(self):
        self.result["complete"] = True
        self.result["targets"] = decide_targets(self.result)
        self.write()
        return self.result

    def write(self):
        from npgen.util.io import atomic_write_json, atomic_write_text

        atomic_write_json(os.path.join(self.out, "gpu.json"), self.result)
        atomic_write_text(os.path.join(self.out, "gpu.md"), table(self.result) + "\n")


def measure(dry_run, budget, out):
    """Every timing of the module doc, each row written to ``out`` as it is measured; returns
    them, with the targets' verdicts, as a JSON-able dict."""
    from npgen import kernels
    from npgen.models.sgm import NOISE_LEVELS
    ck = kernels.get_replica_backend("cuda")
    if dry_run:
        budget = 0.0  # exactly DRY["steps"] steps
        if ck.SIMULATOR:
            ck.configure(threads=1, max_blocks=1)
            print_launch_counts()
        settings = {key: DRY[key] for key in ("batch", "base_width", "n_layers", "steps")}
        replicas, sampler = DRY["replicas"], DRY["sampler"]
    else:
        settings = {"batch": PAPER["batch"], "base_width": 128, "n_layers": 3, "steps": 20}
        replicas = REPLICAS
    batches, cpu_runs = paper_batches(dry_run)
    if not dry_run:
        sgm_batch = next(batch for batch, _ in batches if batch[0]["model"] == "sgm")
        sampler = {"replicas": len(sgm_batch), "samples": PAPER_SAMPLING["samples"]}
    name = device_name(ck)
    peak, peak_source = (None, "no GPU") if ck.SIMULATOR else fp32_peak(name)
    results = Results(out, {
        "device": name, "dry_run": dry_run, "simulator": ck.SIMULATOR,
        "fp32_peak_tflops": None if peak is None else peak / 1e12, "peak_source": peak_source,
        "tf32": tf32_setting(), "product_timer": ProductMeter(ck).timer,
        "python": platform.python_version(), "cpu_runs_of_the_paper_preset": cpu_runs,
        "not_timed": f"the paper preset's runs that stay on CPU ({cpu_runs or 'none'}), and"
                     " each run's measurements after training and sampling (exact Lipschitz"
                     " constants, the exact-score sampler, histograms, MW2), on the host"})
    for kind in KINDS:
        for R in replicas:
            models = [_model(kind, r, settings) for r in range(R)]
            timing = time_models(ck, models, settings, budget=min(8.0, budget / 30))
            results.add(step_row(f"{kind.upper()} step (npgen cuda)", models, settings, timing,
                                 peak))
    torch_seconds = None if dry_run else time_torch_gan(settings)
    if torch_seconds is not None:
        flops = step_flops(_model("gan", 0, settings), settings["batch"])
        results.add({"what": "GAN step (published PyTorch, one run)", "replicas": 1,
                     "seconds_per_step": torch_seconds, "product_gflop_per_step": flops / 1e9,
                     "percent_of_fp32_peak_step": None if peak is None
                     else 100 * flops / torch_seconds / peak,
                     "note": "npgen's product count of the step; torch's generator step also"
                             " computes the discriminator's weight gradients, not counted"})
    sgm_figures = next(names for batch, names in batches if batch[0]["model"] == "sgm")
    chain_steps = NOISE_LEVELS.size * PAPER_SAMPLING["steps_per_level"]
    for kind, passes in SAMPLING_PASSES.items():
        per_step, per_launch = time_sampler(sampler["replicas"], sampler["samples"],
                                            lipschitz=kind == "gradient")
        how = "plain" if kind == "plain" else "with the gradient and traces"
        results.add({"what": f"SGM sampler, one launch, {how} ({sampler['samples']} samples each)",
                     "replicas": sampler["replicas"], "seconds_per_step": per_step,
                     "seconds_per_launch": per_launch, "figures": sgm_figures,
                     "projected_seconds": passes * (per_launch + chain_steps * per_step),
                     "projection": f"{passes} pass{'es' if passes > 1 else ''} of"
                                   f" {chain_steps} steps of the SGM batch's"
                                   f" {sampler['replicas']} runs"})
    for batch, names in batches:
        models = batch_models(batch, settings, dry_run)
        own = settings if dry_run else dict(settings, batch=batch[0]["batch_size"])
        timing = time_models(ck, models, own, budget=budget / 60)
        steps = PAPER["steps"] if dry_run else (batch[0]["epochs"] * batch[0]["n_data"]
                                                // batch[0]["batch_size"])
        row = step_row(f"Paper batch: {describe(batch[0])}", models, own, timing, peak)
        row.update(figures=names, projected_seconds=timing[0] * steps,
                   projection=f"{steps} training steps of {len(models)} replicas")
        results.add(row)
    return results.finish()


def decide_targets(result):
    """Each target's verdict (TARGETS) from a complete run's rows: 'not measured on a GPU'
    under the simulator or in a dry run."""
    if result["dry_run"] or result["simulator"]:
        return [{"target": what, "bound": f"{words} {number} {unit}", "verdict": NOT_ON_GPU}
                for what, words, number, unit in TARGETS.values()]
    rows = result["rows"]
    projected = [row for row in rows if "projected_seconds" in row]
    figure3 = sum(row["projected_seconds"] for row in projected if "fig3" in row["figures"])
    paper = sum(row["projected_seconds"] for row in projected)
    verdicts = {"figure3": _limit_verdict(figure3, "figure3", "projected from the timed steps"),
                "paper": _limit_verdict(paper, "paper", "projected for the GPU batches alone")}
    if verdicts["paper"]["verdict"] == "met" and result["cpu_runs_of_the_paper_preset"]:
        verdicts["paper"] = {"verdict": "inconclusive", "measured": (
            f"{paper:.0f} s projected for the GPU batches; not timed: {result['not_timed']}")}
    verdicts["products"] = _products_verdict(result, rows)
    return [dict(verdicts[key], target=what, bound=f"{words} {number} {unit}")
            for key, (what, words, number, unit) in TARGETS.items()]


def _limit_verdict(seconds, key, how):
    return {"verdict": "met" if seconds <= TARGETS[key][2] else "not met",
            "measured": f"{seconds:.0f} s ({seconds / 60:.1f} min) {how}"}


def _products_verdict(result, rows):
    shares = {row["what"].split()[0]: row["percent_of_fp32_peak_products"] for row in rows
              if row["replicas"] == 330 and row["what"].endswith("step (npgen cuda)")}
    if result["fp32_peak_tflops"] is None:
        return {"verdict": "inconclusive", "measured": f"peak unknown for {result['device']}"}
    measured = ", ".join(f"{kind} {share:.0f}%" for kind, share in shares.items())
    if result["tf32"]["tf32"]:
        measured += " (TF32 on: the products ran on tensor cores)"
    met = len(shares) == len(KINDS) and all(share >= TARGETS["products"][2]
                                            for share in shares.values())
    return {"verdict": "met" if met else "not met", "measured": measured}


def _cell(value, form):
    return "" if value is None else format(value, form)


def table(result):
    """The measurements as one markdown table, then the projections and the targets."""
    tf32 = result["tf32"]
    peak = ("peak unknown: no percentages" if result["fp32_peak_tflops"] is None
            else f"{result['fp32_peak_tflops']:g} TFLOP/s ({result['peak_source']})")
    lines = [f"Device: {result['device']}" + (" (dry run: tiny sizes, not a measurement)"
                                              if result["dry_run"] else ""),
             f"FP32 peak: {peak}; % = product FLOPs / time / peak, over the whole step and over"
             " the products alone.",
             f"TF32: {'unknown' if tf32['tf32'] is None else 'on' if tf32['tf32'] else 'off'}"
             f" (CUPY_TF32={tf32['CUPY_TF32']}, NVIDIA_TF32_OVERRIDE="
             f"{tf32['NVIDIA_TF32_OVERRIDE']}; {tf32['how']}).",
             f"Products timed by: {result['product_timer']}.", "",
             "| what | R | ms / step | product GFLOP / step | products ms / step"
             " | % of FP32 peak, step | % of FP32 peak, products |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        gflop = _cell(row.get("product_gflop_per_step"), ".3g")
        counted = row.get("counted_product_gflop_per_step")
        if counted is not None and not np.isclose(counted, row["product_gflop_per_step"],
                                                  rtol=1e-9):
            gflop += f" (products that ran: {counted:.3g})"
        product_ms = row.get("product_seconds_per_step")
        product_ms = None if product_ms is None else 1e3 * product_ms
        lines.append(f"| {row['what']} | {row['replicas']} | {1e3 * row['seconds_per_step']:.3g} |"
                     f" {gflop} | {_cell(product_ms, '.3g')} |"
                     f" {_cell(row.get('percent_of_fp32_peak_step'), '.2g')} |"
                     f" {_cell(row.get('percent_of_fp32_peak_products'), '.2g')} |")
    lines.append("")
    for row in result["rows"]:
        if "projected_seconds" in row:
            lines.append(f"{row['what']}: {row['projected_seconds']:.0f} s projected for"
                         f" {row['projection']} ({', '.join(row['figures'])}).")
    if result["complete"]:
        for target in result["targets"]:
            measured = f" ({target['measured']})" if "measured" in target else ""
            lines.append(f"Target: {target['target']}, {target['bound']}:"
                         f" {target['verdict']}{measured}.")
    else:
        lines.append(f"Incomplete (still running, or stopped): rows measured so far:"
                     f" {len(result['rows'])}; the targets are decided by a complete run.")
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
