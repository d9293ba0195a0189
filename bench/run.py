#!/usr/bin/env python
"""npgen's benchmark: one table of workload x backend, on one thread.

    python bench/run.py [--json PATH] [--repeats 3] [--only gan_step,vae_step] [--cpu-time]

Columns: ms per call, GFLOP/s (the same flop count for every backend: the dense-layer products
the algorithm needs, 2*n*in*out per product), % of this machine's sgemm peak (a float32 numpy
matmul measured in the same run, on one thread), and speed-up against torch when torch is
importable (torch is never a dependency of npgen; its implementation of each step lives here,
written as the paper's published code does it). ``--cpu-time`` times with the process's CPU
seconds instead of the wall clock, for a machine shared with other work (every implementation
runs on one thread, so the two agree on an idle machine).
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import npgen  # noqa: E402
import npgen.models.gan  # noqa: E402
import npgen.models.push_forward  # noqa: E402
import npgen.models.vae  # noqa: E402
import npgen.nn.dense_score  # noqa: E402
from npgen.data import two_gaussians  # noqa: E402
from npgen.study.runs import PRESETS, build_model, make_config  # noqa: E402

BATCH = 1000
BACKENDS = ("numpy", "cpu")
#: The clock of every timing here: time.perf_counter, or time.process_time with --cpu-time.
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]

try:
    import torch
    torch.set_num_threads(1)
except ImportError:
    torch = None

# --------------------------------------------------------------------------- flop model


def dense_flops(sizes, n, forward=True, weight_grads=True, input_grads=True, first_input_grad=False):
    """Flops of the dense products of an MLP ``sizes`` on n rows (2*n*in*out per product)."""
    total = 0
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        product = 2 * n * fan_in * fan_out
        total += product * (forward + weight_grads)
        if input_grads and (k > 0 or first_input_grad):
            total += product
    return total


GENERATOR = (1, 128, 256, 1)
DISCRIMINATOR = (1, 512, 256, 128, 1)
ENCODER = (1, 256, 128, 2)          # the two heads 128 -> 1 counted as one 128 -> 2 layer


def gan_step_flops(n=BATCH, generator=GENERATOR, discriminator=DISCRIMINATOR):
    """Generator step: G forward, D forward, D input-gradients, G backward;
    discriminator step: G forward, D forward and backward on 2n rows (real and fake)."""
    g_step = (dense_flops(generator, n, weight_grads=False, input_grads=False)
              + dense_flops(discriminator, n, weight_grads=False, first_input_grad=True)
              + dense_flops(generator, n, forward=False))
    d_step = (dense_flops(generator, n, weight_grads=False, input_grads=False)
              + dense_flops(discriminator, 2 * n))
    return g_step + d_step


def vae_step_flops(n=BATCH, encoder=ENCODER, generator=GENERATOR):
    return dense_flops(encoder, n) + dense_flops(generator, n, first_input_grad=True)


def score_step_flops(n=BATCH):
    """One sigma per batch: the embedding's 64 columns of the 160- and 260-wide inputs are the
    same for every row, so per row the products are 1 -> 96, 96 -> 196 and 196 -> 1 (forward,
    weight gradients, and input gradients past the first layer); the embedding path runs once."""
    per_row = dense_flops((1, 96, 196, 1), n)
    once = dense_flops((16, 32, 64), 1) + 2 * 3 * (64 * 196 + 64)
    return per_row + once


# --------------------------------------------------------------------------- npgen steps


def npgen_step(model_name, backend):
    """A zero-argument callable doing one npgen training step at the paper's sizes."""
    data = two_gaussians(5.0, n=BATCH, seed=0)
    if model_name == "gan":
        model = npgen.GAN(seed=0, backend=backend)
    elif model_name == "vae":
        model = npgen.VAE(seed=0, backend=backend)
    else:
        model = npgen.SGM(seed=0, backend=backend)
        data = (data - data.mean()) / data.std()
    return lambda: model.step(data)


# --------------------------------------------------------------------------- torch steps


def torch_mlp(sizes, activation, spectral_norm=False, output=None):
    layers = []
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = torch.nn.Linear(fan_in, fan_out)
        layers.append(torch.nn.utils.spectral_norm(linear) if spectral_norm else linear)
        if k < len(sizes) - 2:
            layers.append(activation())
    if output is not None:
        layers.append(output)
    return torch.nn.Sequential(*layers)


def torch_gan_step(batch=BATCH, lr=1e-4):
    """The published code's GAN step: generator step, then discriminator step with fresh z."""
    torch.manual_seed(0)
    leaky = lambda: torch.nn.LeakyReLU(0.2)  # noqa: E731
    G = torch_mlp(GENERATOR, leaky)
    D = torch_mlp(DISCRIMINATOR, leaky, spectral_norm=True, output=torch.nn.Sigmoid())
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.9, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.9, 0.999))
    bce = torch.nn.BCELoss()
    x = torch.from_numpy(two_gaussians(5.0, n=batch, seed=0))
    ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)

    def step():
        opt_g.zero_grad()
        loss_g = bce(D(G(torch.randn(batch, 1))), ones)
        loss_g.backward()
        opt_g.step()
        opt_d.zero_grad()
        fake = G(torch.randn(batch, 1)).detach()
        loss_d = (bce(D(x), ones) + bce(D(fake), zeros)) / 2
        loss_d.backward()
        opt_d.step()
    return step


def torch_vae_step(batch=BATCH, lr=1e-4):
    """The published code's VAE step (Gaussian decoder with variance c = 0.1)."""
    torch.manual_seed(0)
    encoder = torch_mlp(ENCODER[:3], torch.nn.ReLU, output=torch.nn.ReLU())
    mean_head, logvar_head = torch.nn.Linear(128, 1), torch.nn.Linear(128, 1)
    decoder = torch_mlp(GENERATOR, lambda: torch.nn.LeakyReLU(0.2))
    params = [p for m in (encoder, mean_head, logvar_head, decoder) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    x = torch.from_numpy(two_gaussians(5.0, n=batch, seed=0))

    def step():
        opt.zero_grad()
        h = encoder(x)
        mu, logvar = mean_head(h), logvar_head(h)
        z = mu + torch.exp(logvar / 2) * torch.randn_like(mu)
        recon = ((x - decoder(z)) ** 2).sum() / (2 * 0.1)
        kl = 0.5 * (mu ** 2 + torch.exp(logvar) - logvar - 1).sum()
        (recon + kl).backward()
        opt.step()
    return step


def torch_score_net():
    """The published code's score network s(x, sigma) (the sigma embedding computed per sample)."""

    class ScoreNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.freqs = torch.exp(-torch.arange(8) * np.log(10000) / 7)
            self.embed = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.LeakyReLU(0.2),
                                             torch.nn.Linear(32, 64), torch.nn.LeakyReLU(0.2))
            self.x_in = torch.nn.Linear(1, 96)
            self.hidden = torch.nn.Linear(160, 196)
            self.out = torch.nn.Linear(260, 1)

        def forward(self, x, sigma):
            angles = sigma * self.freqs
            e = self.embed(torch.cat([torch.sin(angles), torch.cos(angles)], dim=1))
            h = torch.nn.functional.leaky_relu(self.x_in(x), 0.01)
            h = self.hidden(torch.cat([h, e], dim=1))
            h = torch.nn.functional.leaky_relu(torch.cat([h, e], dim=1), 0.2)
            return self.out(h)

    return ScoreNet()


NOISE_LEVELS = 0.6 ** np.arange(10)


def torch_score_step(batch=BATCH, lr=1e-4):
    """The published code's score-network step: one sigma per batch."""
    torch.manual_seed(0)
    net = torch_score_net()
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999))
    data = two_gaussians(5.0, n=batch, seed=0)
    x = torch.from_numpy((data - data.mean()) / data.std())
    levels = torch.from_numpy(NOISE_LEVELS.astype(np.float32))

    def step():
        opt.zero_grad()
        sigma = levels[torch.randint(10, (1,))].expand(batch, 1)
        noisy = x + sigma * torch.randn_like(x)
        target = (x - noisy) / sigma ** 2
        loss = (sigma * (net(noisy, sigma) - target) ** 2).sum()
        loss.backward()
        opt.step()
    return step


def torch_langevin_level(n=50000, steps=100, step_lr=2e-5):
    """One noise level (100 steps) of the published annealed Langevin loop on n samples."""
    torch.manual_seed(0)
    net = torch_score_net()
    x0 = torch.randn(n, 1)

    def level():
        with torch.no_grad():
            x = x0.clone()
            sigma = float(NOISE_LEVELS[0])
            alpha = step_lr * (sigma / NOISE_LEVELS[-1]) ** 2
            labels = torch.full((n, 1), sigma)
            for _ in range(steps):
                x = x + alpha / 2 * net(x, labels) + np.sqrt(alpha) * torch.randn_like(x)
    return level


def torch_run(make_step, steps):
    """A whole training run of ``steps`` steps of a torch step."""
    def run():
        step = make_step()
        for _ in range(steps):
            step()
    return run


QUICK = PRESETS["quick"]
QUICK_STEPS = QUICK["epochs"] * (50000 // QUICK["batch_size"])


def npgen_quick_run(model_name):
    """One training run of the quick preset (2000 steps of batch 250), numba backend."""
    data = two_gaussians(5.0, n=50000, seed=0)
    config = make_config(model_name, 5.0, "quick")
    return lambda: build_model(config).fit(data, epochs=QUICK["epochs"], batch_size=QUICK["batch_size"],
                                           quiet=True)


def npgen_langevin():
    """Annealed Langevin, 50 000 samples x 10 levels x 100 steps, the paper's step rule."""
    model = npgen.SGM(seed=0)
    model.fit(two_gaussians(5.0, n=50000, seed=0), epochs=1, quiet=True)  # sets the standardization
    return lambda: model.sample(50000, seed=0, quiet=True)


def lipschitz_workloads():
    """Exact Lipschitz constant against the paper's grid estimate, for a paper-size generator
    (1-128-256-1) and the score network at sigma = 1, both at initialization."""
    from npgen.analysis.lipschitz import exact_lipschitz_1d, paper_grid_estimate
    from npgen.nn.score import ScoreNetwork
    generator = npgen.MLP([1, 128, 256, 1], seed=0)
    score_layers = ScoreNetwork(seed=0).layers_at(1.0)
    def estimators(net):
        return {"exact": lambda: (lambda: exact_lipschitz_1d(net).constant),
                "grid": lambda: (lambda: paper_grid_estimate(net))}
    return {"lip_generator": ("Lipschitz of G 1-128-256-1", None, estimators(generator)),
            "lip_score": ("Lipschitz of the score network in x at sigma = 1", None, estimators(score_layers))}


def workloads():
    """{key: (title, flops per call or None, {implementation: zero-argument callable factory})}."""
    table = {
        "gan_step": ("GAN training step, batch 1000 (G 1-128-256-1, D 1-512-256-128-1 + SN)",
                     gan_step_flops(), {b: (lambda b=b: npgen_step("gan", b)) for b in BACKENDS}),
        "vae_step": ("VAE training step, batch 1000 (enc 1-256-128-(1,1), dec 1-128-256-1)",
                     vae_step_flops(), {b: (lambda b=b: npgen_step("vae", b)) for b in BACKENDS}),
        "score_step": ("score-network training step, batch 1000", score_step_flops(),
                       {b: (lambda b=b: npgen_step("sgm", b)) for b in BACKENDS}),
        "langevin": ("annealed Langevin, 50 000 samples x 1000 steps", None, {"cpu": npgen_langevin}),
    }
    for model, flops in (("gan", gan_step_flops), ("vae", vae_step_flops), ("sgm", score_step_flops)):
        table[f"{model}_quick_run"] = (f"{model.upper()} training run, quick preset ({QUICK_STEPS} steps, batch 250)",
                                       QUICK_STEPS * flops(QUICK["batch_size"]),
                                       {"cpu": lambda model=model: npgen_quick_run(model)})
    if torch is not None:
        table["gan_step"][2]["torch"] = torch_gan_step
        table["vae_step"][2]["torch"] = torch_vae_step
        table["score_step"][2]["torch"] = torch_score_step
        table["langevin"][2]["torch"] = torch_langevin_level
        for model, make in (("gan", torch_gan_step), ("vae", torch_vae_step), ("sgm", torch_score_step)):
            table[f"{model}_quick_run"][2]["torch"] = (
                lambda make=make: torch_run(lambda: make(QUICK["batch_size"], QUICK["lr"]), QUICK_STEPS))
    return table


# --------------------------------------------------------------------------- 784-d (Figure 7)

BATCH_784 = 128
LANGEVIN_BATCH_784 = 5000
SCORE_LEVELS_784 = 30          # the quick preset's noise levels
GENERATOR_784 = (784, *npgen.models.push_forward.MNIST_GENERATOR_HIDDEN, 784)
DISCRIMINATOR_784 = (784, *npgen.models.gan.MNIST_DISCRIMINATOR_HIDDEN, 1)
ENCODER_784 = (784, *npgen.models.vae.MNIST_ENCODER_HIDDEN, 2 * 784)
SCORE_784 = (784, *npgen.nn.dense_score.HIDDEN_SIZES, 784)


def score784_layers(levels=SCORE_LEVELS_784):
    """(fan_in, fan_out) of the 784-d score network: the hidden layers read the one-hot level too."""
    d, h1, h2, _ = SCORE_784
    return [(d + levels, h1), (h1 + levels, h2), (h2, d)]


def score784_step_flops(n=BATCH_784):
    """Forward, weight gradients, and input gradients past the first layer."""
    return sum(2 * n * i * o * (3 if k > 0 else 2) for k, (i, o) in enumerate(score784_layers()))


def langevin784_step_flops(n=LANGEVIN_BATCH_784):
    """One step: the three products of s(x, sigma_l) with the level folded into the biases."""
    d, h1, h2, _ = SCORE_784
    return 2 * n * (d * h1 + h1 * h2 + h2 * d)


def mnist_like(n, seed=0):
    """n rows of 784 values in [0, 1], shaped like MNIST pixels (sparse, a quarter lit)."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, 784)) * (rng.random((n, 784)) < 0.25)).astype(np.float32)


def npgen_step_784(model_name, backend):
    """One npgen training step of the Figure 7 networks (mixture: latent dimension 784)."""
    data = mnist_like(BATCH_784)
    if model_name == "gan":
        model = npgen.GAN(latent_dim=784, data_dim=784, hidden_sizes=GENERATOR_784[1:-1],
                          discriminator_hidden_sizes=DISCRIMINATOR_784[1:-1], loss="hinge",
                          discriminator_first=True, lr=2e-4, betas=(0.5, 0.999), seed=0, backend=backend)
    elif model_name == "vae":
        model = npgen.VAE(latent_dim=784, data_dim=784, hidden_sizes=GENERATOR_784[1:-1],
                          encoder_hidden_sizes=ENCODER_784[1:-1], decoder_variance=0.0225, lr=2e-4,
                          seed=0, backend=backend)
    else:
        sigmas = np.geomspace(15.0, 0.01, SCORE_LEVELS_784)
        model = npgen.models.VectorSGM(784, sigmas, data_mean=0.13, data_scale=0.3, lr=2e-4, seed=0,
                                       backend=backend)
    return lambda: model.step(data)


def npgen_langevin_784(backend="cpu"):
    """One annealed-Langevin step of the 784-d score network on 5000 samples (level 10)."""
    from npgen import kernels
    net = npgen.nn.DenseScoreNetwork(784, np.geomspace(15.0, 0.01, SCORE_LEVELS_784), data_mean=0.13,
                                     data_scale=0.3, seed=0, backend=backend)
    arguments = net.langevin_arguments(10)
    x = mnist_like(LANGEVIN_BATCH_784)
    alphas = np.full(1, 1e-4, np.float32)
    step = [0]

    def call():
        net.backend.annealed_langevin_mlp(x, *arguments, alphas, 1, 0, step[0], kernels.SILU, 0.2)
        step[0] += 1
    return call


def torch_gan_step_784(batch=BATCH_784, lr=2e-4):
    """The published MNIST GAN step: hinge loss, discriminator step first (D(x) and D(G(z))
    evaluated separately, as published), then the generator step."""
    torch.manual_seed(0)
    leaky = lambda: torch.nn.LeakyReLU(0.2)  # noqa: E731
    G = torch_mlp(GENERATOR_784, leaky)
    D = torch_mlp(DISCRIMINATOR_784, leaky, spectral_norm=True)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    x = torch.from_numpy(mnist_like(batch))

    def step():
        opt_d.zero_grad()
        fake = G(torch.randn(batch, 784)).detach()
        loss_d = (torch.relu(1 - D(x)).mean() + torch.relu(1 + D(fake)).mean()) / 2
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = -D(G(torch.randn(batch, 784))).mean()
        loss_g.backward()
        opt_g.step()
    return step


def torch_vae_step_784(batch=BATCH_784, lr=2e-4):
    """The VAE step of Figure 7's networks (Gaussian decoder, variance 0.15^2)."""
    torch.manual_seed(0)
    encoder = torch_mlp(ENCODER_784, torch.nn.ReLU)
    decoder = torch_mlp(GENERATOR_784, lambda: torch.nn.LeakyReLU(0.2))
    params = [p for m in (encoder, decoder) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    x = torch.from_numpy(mnist_like(batch))

    def step():
        opt.zero_grad()
        code = encoder(x)
        mu, logvar = code[:, :784], code[:, 784:]
        z = mu + torch.exp(logvar / 2) * torch.randn_like(mu)
        recon = ((x - decoder(z)) ** 2).sum() / (2 * 0.0225)
        kl = 0.5 * (mu ** 2 + torch.exp(logvar) - logvar - 1).sum()
        (recon + kl).backward()
        opt.step()
    return step


def torch_score_net_784(levels=SCORE_LEVELS_784):
    """npgen's 784-d network r in torch: [u; e_l] -> SiLU -> [h1; e_l] -> SiLU -> 784."""
    (i1, o1), (i2, o2), (i3, o3) = score784_layers(levels)

    class ScoreNet784(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(i1, o1, bias=False)
            self.fc2 = torch.nn.Linear(i2, o2, bias=False)
            self.fc3 = torch.nn.Linear(i3, o3)

        def raw(self, x, onehot):
            h = torch.nn.functional.silu(self.fc1(torch.cat([x, onehot], dim=1)))
            h = torch.nn.functional.silu(self.fc2(torch.cat([h, onehot], dim=1)))
            return self.fc3(h)

    return ScoreNet784()


def torch_score_step_784(batch=BATCH_784, lr=2e-4, mu=0.13, s_d=0.3):
    """Denoising score matching with one level per row, weight sigma^2 (npgen's VectorSGM):
    R = s_d c r(c (x~ - mu)) - sigma c^2 (x~ - mu) + eps, L = ||R||^2 / (2B)."""
    torch.manual_seed(0)
    net = torch_score_net_784()
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999))
    sigmas = torch.from_numpy(np.geomspace(15.0, 0.01, SCORE_LEVELS_784).astype(np.float32))
    x = torch.from_numpy(mnist_like(batch))

    def step():
        opt.zero_grad()
        levels = torch.randint(SCORE_LEVELS_784, (batch,))
        onehot = torch.nn.functional.one_hot(levels, SCORE_LEVELS_784).float()
        eps = torch.randn_like(x)
        sigma = sigmas[levels][:, None]
        c = 1 / torch.sqrt(s_d ** 2 + sigma ** 2)
        centred = x + sigma * eps - mu
        residual = s_d * c * net.raw(c * centred, onehot) - sigma * c ** 2 * centred + eps
        loss = (residual ** 2).sum() / (2 * batch)
        loss.backward()
        opt.step()
    return step


def torch_langevin_784(n=LANGEVIN_BATCH_784):
    """One annealed-Langevin step of the same network on n samples (level 10):
    s = (s_d c / sigma) r(c (x - mu)) - c^2 (x - mu)."""
    torch.manual_seed(0)
    net = torch_score_net_784()
    x = torch.from_numpy(mnist_like(n))
    onehot = torch.nn.functional.one_hot(torch.full((n,), 10), SCORE_LEVELS_784).float()
    sigma = float(np.geomspace(15.0, 0.01, SCORE_LEVELS_784)[10])
    mu, s_d, alpha = 0.13, 0.3, 1e-4
    c = 1 / np.sqrt(s_d ** 2 + sigma ** 2)

    def step():
        with torch.no_grad():
            centred = x - mu
            score = s_d * c / sigma * net.raw(c * centred, onehot) - c ** 2 * centred
            x.add_(alpha / 2 * score + np.sqrt(alpha) * torch.randn_like(x))
    return step


def workloads_784():
    """The Figure 7 rows: training steps at batch 128 and the Langevin step at batch 5000."""
    table = {
        "gan784_step": (f"GAN step, batch {BATCH_784} (G {'-'.join(map(str, GENERATOR_784))}, "
                        f"D {'-'.join(map(str, DISCRIMINATOR_784))} + SN, hinge)",
                        gan_step_flops(BATCH_784, GENERATOR_784, DISCRIMINATOR_784),
                        {b: (lambda b=b: npgen_step_784("gan", b)) for b in BACKENDS}),
        "vae784_step": (f"VAE step, batch {BATCH_784} (enc {'-'.join(map(str, ENCODER_784))}, "
                        f"dec {'-'.join(map(str, GENERATOR_784))})",
                        vae_step_flops(BATCH_784, ENCODER_784, GENERATOR_784),
                        {b: (lambda b=b: npgen_step_784("vae", b)) for b in BACKENDS}),
        "score784_step": (f"score-network step, batch {BATCH_784} ({'-'.join(map(str, SCORE_784))}, "
                          f"{SCORE_LEVELS_784} levels)", score784_step_flops(),
                          {b: (lambda b=b: npgen_step_784("sgm", b)) for b in BACKENDS}),
        "langevin784_step": (f"annealed Langevin step in 784-d, {LANGEVIN_BATCH_784} samples",
                             langevin784_step_flops(), {b: (lambda b=b: npgen_langevin_784(b)) for b in BACKENDS}),
    }
    if torch is not None:
        table["gan784_step"][2]["torch"] = torch_gan_step_784
        table["vae784_step"][2]["torch"] = torch_vae_step_784
        table["score784_step"][2]["torch"] = torch_score_step_784
        table["langevin784_step"][2]["torch"] = torch_langevin_784
    return table


#: Workloads whose torch implementation is timed on a part and scaled: {key: factor}.
TORCH_SCALE = {"langevin": 10}     # one of the ten noise levels


# --------------------------------------------------------------------------- timing


def time_call(fn, repeats, min_time=1.0, warmup=3):
    """Best over ``repeats`` of the mean seconds per call, each repeat lasting >= min_time."""
    for _ in range(warmup):
        fn()
    start = clock()
    fn()
    once = max(clock() - start, 1e-6)
    calls = max(1, int(min_time / once))
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        for _ in range(calls):
            fn()
        best = min(best, (clock() - start) / calls)
    return best


def time_once(fn):
    """Seconds of one call (for workloads that last many seconds: whole runs)."""
    start = clock()
    fn()
    return clock() - start


def sgemm_peak_gflops(size=2048, repeats=5):
    """Single-thread float32 numpy matmul rate: the roof every row is compared with."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    b = a.copy()
    seconds = time_call(lambda: a @ b, repeats, min_time=0.5, warmup=1)
    return 2 * size ** 3 / seconds / 1e9


def run(only, repeats):
    load_start = os.getloadavg()
    peak = sgemm_peak_gflops()
    rows = []
    table = workloads()
    table.update(workloads_784())
    table.update(lipschitz_workloads())
    for key, (title, flops, impls) in table.items():
        if only and key not in only:
            continue
        results = {}
        for name, make in impls.items():
            print(f"timing {key} [{name}]", file=sys.stderr, flush=True)
            fn = make()
            value = fn() if key.startswith("lip_") else None
            if key.endswith("_quick_run") or key == "langevin":
                if key == "langevin" and name != "torch":
                    fn()                           # compile (or load from cache) first
                seconds = time_once(fn)
            else:
                seconds = time_call(fn, repeats)
            seconds *= TORCH_SCALE.get(key, 1) if name == "torch" else 1
            results[name] = (seconds, value)
        torch_s = results.get("torch", (None,))[0]
        for name, (seconds, value) in results.items():
            rows.append(_row(key, title, name, seconds, flops, peak, torch_s, value))
    machine = dict(_machine(), load_average_at_start=load_start, load_average_at_end=os.getloadavg(),
                   clock="process CPU seconds" if clock is CLOCK["cpu"] else "wall seconds")
    return {"sgemm_peak_gflops": peak, "batch": BATCH, "rows": rows, "machine": machine,
            "notes": {"langevin": "torch timed on one noise level (100 steps) and multiplied by 10",
                      "lip_*": "value = the Lipschitz estimate; exact is npgen's, grid the paper's"}}


def _row(key, title, backend, seconds, flops, peak, torch_s, value=None):
    gflops = flops / seconds / 1e9 if flops else None
    return {"workload": key, "title": title, "backend": backend, "ms": seconds * 1e3,
            "gflop_per_call": flops / 1e9 if flops else None, "gflops": gflops,
            "pct_peak": 100 * gflops / peak if gflops else None,
            "speedup_vs_torch": torch_s / seconds if torch_s and backend != "torch" else None,
            "value": value}


def _machine():
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "processor": platform.processor() or platform.machine()}
    try:
        import numba
        info["numba"] = numba.__version__
    except ImportError:
        pass
    if torch is not None:
        info["torch"] = torch.__version__
    return info


def format_table(result):
    def cell(value, fmt):
        width = int(fmt.split(".")[0] or 0)
        return f"{'-':>{width}}" if value is None else format(value, fmt)
    loads = [result["machine"].get(k) for k in ("load_average_at_start", "load_average_at_end")]
    lines = [f"sgemm peak (float32 numpy matmul 2048^3, 1 thread): {result['sgemm_peak_gflops']:.1f} GFLOP/s",
             f"clock: {result['machine'].get('clock', 'wall seconds')}",
             *([f"load average (1, 5, 15 min) at start {tuple(round(v, 2) for v in loads[0])}, at end "
                f"{tuple(round(v, 2) for v in loads[1])} (on {os.cpu_count()} cores)"] if None not in loads else []),
             "", f"{'workload':<16} {'impl':<6} {'ms':>11} {'GFLOP/s':>8} {'% peak':>7} {'vs torch':>9}  value"]
    for r in result["rows"]:
        lines.append(f"{r['workload']:<16} {r['backend']:<6} {r['ms']:>11.3f} "
                     f"{cell(r['gflops'], '8.1f')} {cell(r['pct_peak'], '6.1f')}% "
                     f"{cell(r['speedup_vs_torch'], '8.2f')}x  {cell(r['value'], '.6g')}")
    lines += ["", *(f"{k}: {v}" for k, v in result["notes"].items())]
    return "\n".join(lines)


def profile_steps(steps=30):
    """Where the time of a training step goes: every kernel call timed, by kernel, in ms per step.
    The remainder is Python: the models' and networks' own code between kernel calls."""
    from collections import defaultdict

    from npgen import kernels
    backend = kernels.get_backend("cpu")
    totals = defaultdict(float)
    originals = {}
    for name in backend.__all__:
        fn = getattr(backend, name)
        if not callable(fn):
            continue
        originals[name] = fn

        def timed(*args, _fn=fn, _name=name):
            start = time.perf_counter()
            out = _fn(*args)
            totals[_name] += time.perf_counter() - start
            return out
        setattr(backend, name, timed)
    report = {}
    try:
        for model in ("gan", "vae"):
            step = npgen_step(model, "cpu")
            for _ in range(3):
                step()
            totals.clear()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            wall = (time.perf_counter() - start) / steps
            kernels_ms = {k: 1e3 * v / steps for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
            report[model] = {"step_ms": 1e3 * wall, "kernels_ms": kernels_ms,
                             "python_ms": 1e3 * wall - sum(kernels_ms.values())}
    finally:
        for name, fn in originals.items():
            setattr(backend, name, fn)
    return report


def format_profile(report):
    lines = []
    for model, r in report.items():
        lines.append(f"{model}_step: {r['step_ms']:.2f} ms per step")
        for name, ms in r["kernels_ms"].items():
            lines.append(f"  {name:<24} {ms:8.3f} ms  {100 * ms / r['step_ms']:5.1f}%")
        lines.append(f"  {'python (between kernels)':<24} {r['python_ms']:8.3f} ms  "
                     f"{100 * r['python_ms'] / r['step_ms']:5.1f}%")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the table as JSON to this path")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="instead of the table: the GAN and VAE steps' time by kernel")
    names = sorted(workloads()) + sorted(workloads_784()) + ["lip_generator", "lip_score"]
    parser.add_argument("--only", default="", help=f"comma-separated subset of {names}")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with process CPU seconds instead of the wall clock (a shared machine)")
    args = parser.parse_args(argv)
    global clock
    clock = CLOCK["cpu" if args.cpu_time else "wall"]
    only = {w for w in args.only.split(",") if w}
    unknown = only - set(names)
    if unknown:
        parser.error(f"--only must name workloads among {names}, got {sorted(unknown)}")
    if args.profile:
        print(format_profile(profile_steps()))
        return
    result = run(only, args.repeats)
    print(format_table(result))
    if args.json:
        from npgen.util.io import atomic_write_json
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
