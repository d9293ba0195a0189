"""The ``npgen`` command line.

    npgen reproduce [--preset quick|paper] [--only fig3,fig4] [--jobs N | --scheduler ADDRESS|local]
                    [--device cpu|cuda] [--out DIR] [--mnist DIR]
                                    the paper's Sections 4.1 and 4.2: runs, figures, report.md and report.html
                                    (--scheduler: on a dask.distributed cluster, npgen[dask])
    npgen figure N --from DIR       redraw figure N (1-7, 3b, "grid", "cauchy", "particles") from a reproduction's stored runs
    npgen train gan|vae|sgm|particles --m M [--preset quick|paper] [--seed S] [--out DIR] [--force]
                [--gp L] [--sn-generator] [--layers N] [--skip resnet]     (GAN)
                [--latent cauchy]                                          (GAN)
                [--particles N] [--divergence kl|alpha]                    (particles)
                [--kl paper] [--layers N] [--skip resnet]                  (VAE)
                [--weighting sigma2] [--denoise]                           (SGM)
                                    one training run into DIR (config, weights, samples, metrics, histogram)
    npgen lipschitz WEIGHTS.npz [--sigma 1,0.1]
                                    exact Lipschitz constant (or an enclosure, or bounds) of a saved network;
                                    of a score network at each noise level
    npgen bounds --m 10 [--sigma 1] [--lip 25] [--lam 0.5]
                                    every lower bound of the paper's Section 3, as a table

User errors (bad values, options of another model, unusable files or folders, training that
diverges) print one sentence on one line and exit with status 2; Ctrl-C exits with 130.
Nothing is written before the arguments are checked, and no command leaves a half-written
folder: ``npgen train`` refuses an existing run folder unless given --force, and never
writes into a folder that is not an npgen run.
"""

import argparse
import sys

from .analysis.lipschitz import lipschitz_report
from .analysis.theory import bounds_table, format_bounds_table
from .study.plans import PLANS
from .study.reproduce import redraw_figure, reproduce
from .study.metrics_schema import summarize_metrics
from .study.runs import PRESETS, TrainingDiverged, train_command


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``npgen X: error: ...; see npgen X --help``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _noise_levels(text):
    """``--sigma 1,0.1``: a comma-separated list of positive numbers."""
    try:
        levels = [float(part) for part in text.split(",")]
    except ValueError:
        levels = []
    if not levels or not all(0 < level < float("inf") for level in levels):
        raise argparse.ArgumentTypeError(f"expected positive numbers separated by commas, got {text!r}")
    return levels


def _cmd_lipschitz(args):
    print(lipschitz_report(args.weights, sigmas=args.sigma, quiet=False))


def _cmd_bounds(args):
    print(format_bounds_table(bounds_table(args.m, sigma=args.sigma, lip=args.lip, lam=args.lam)))


def _cmd_train(args):
    out = f"npgen-run-{args.model}-m{args.m:g}-seed{args.seed}" if args.out is None else args.out
    _, metrics = train_command(args.model, args.m, args.preset, args.seed, out, force=args.force,
                               gp_lipschitz=args.gp, sn_generator=args.sn_generator,
                               kl=args.kl, weighting=args.weighting, n_layers=args.layers,
                               skip=args.skip, denoise=args.denoise, latent=args.latent,
                               n_particles=args.particles, divergence=args.divergence)
    print(summarize_metrics(metrics))
    print(f"wrote {out}/ (config.json, metrics.json, samples.npy, model/, histogram.png)")


def _cmd_reproduce(args):
    report = reproduce(preset=args.preset, only=args.only, jobs=args.jobs, out=args.out,
                       device=args.device, mnist=args.mnist, scheduler=args.scheduler)
    print(f"wrote {report} and {report[:-3]}.html")


def _cmd_figure(args):
    print(f"wrote {redraw_figure(args.number, args.source)}")


def build_parser():
    parser = _Parser(
        prog="npgen",
        description="Push-forward generative models and exact Lipschitz constants (numpy + numba).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rep = sub.add_parser("reproduce", help="reproduce the paper's Sections 4.1 and 4.2 (figures 1-7 and a report)")
    rep.add_argument("--preset", choices=sorted(PLANS), default="quick")
    rep.add_argument("--jobs", type=int, default=None,
                     help="parallel worker processes (default: one per CPU core; 1 with --device cuda)")
    rep.add_argument("--scheduler", default=None, metavar="ADDRESS|local",
                     help="run on a dask.distributed cluster: a scheduler's address (tcp://HOST:8786),"
                          " or local for one worker per CPU core on this machine (npgen[dask])")
    rep.add_argument("--device", default="cpu",
                     help="cpu, or cuda: the GANs that batch train on one GPU, in batches of"
                          " replicas (needs npgen[cuda])")
    rep.add_argument("--only", default=None,
                     help="comma-separated figures: fig1,...,fig7,fig3b,grid,cauchy,particles")
    rep.add_argument("--out", default="npgen-results", help="output folder (default ./npgen-results)")
    rep.add_argument("--mnist", default=None, metavar="DIR",
                     help="Figure 7: folder of the MNIST IDX files (default $NPGEN_MNIST_DIR, else the"
                          " 5 000-image subset of npgen[mnist])")
    rep.set_defaults(handler=_cmd_reproduce)

    fig = sub.add_parser("figure", help="redraw one figure from stored results, without training")
    fig.add_argument("number", help="1, 2, 3, 3b, 4, 5, 6, 7, grid, cauchy or particles")
    fig.add_argument("--from", dest="source", required=True, help="a folder written by npgen reproduce")
    fig.set_defaults(handler=_cmd_figure)

    train = sub.add_parser("train", help="train one model on 1/2 N(-m, 1) + 1/2 N(m, 1)")
    train.add_argument("model", choices=["gan", "vae", "sgm", "particles"])
    train.add_argument("--m", type=float, required=True, help="modes at -m and +m")
    train.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default=None,
                       help="run folder, new or empty (default npgen-run-MODEL-mM-seedS)")
    train.add_argument("--force", action="store_true",
                       help="replace the npgen run in --out, once the new run is complete")
    # Model options default to None (not given): an option of another model is refused.
    train.add_argument("--gp", type=float, default=None, metavar="L", help="GAN: gradient penalty towards Lip L")
    train.add_argument("--sn-generator", action="store_true", default=None,
                       help="GAN: spectral norm on the generator")
    train.add_argument("--kl", choices=["correct", "paper"], default=None,
                       help="VAE: the textbook KL (default) or the published code's")
    train.add_argument("--weighting", choices=["paper", "sigma2"], default=None,
                       help="SGM: loss weight sigma (the published code, default) or sigma^2 (Song & Ermon)")
    train.add_argument("--denoise", action="store_true", default=None, help="SGM: final denoising step")
    train.add_argument("--layers", type=int, default=None,
                       help="GAN/VAE: layers of the generator / decoder (default 3)")
    train.add_argument("--skip", choices=["plain", "resnet", "densenet"], default=None,
                       help="GAN/VAE: skip connections of the generator / decoder (default plain)")
    train.add_argument("--latent", choices=["gaussian", "cauchy"], default=None,
                       help="GAN: law of the latent z (default gaussian)")
    train.add_argument("--particles", type=int, default=None, metavar="N",
                       help="particles: how many (default 50000)")
    train.add_argument("--divergence", choices=["kl", "alpha"], default=None,
                       help="particles: the Lipschitz-regularized divergence (default kl; alpha = 2)")
    train.set_defaults(handler=_cmd_train)

    lip = sub.add_parser("lipschitz", help="Lipschitz constant of a saved npgen network (.npz)")
    lip.add_argument("weights", help="an .npz file written by npgen (MLP.save, or an SGM's score.npz)")
    lip.add_argument("--sigma", type=_noise_levels, default=None, metavar="S[,S...]",
                     help="score networks: the noise levels (default: those it was trained on)")
    lip.set_defaults(handler=_cmd_lipschitz)

    bounds = sub.add_parser("bounds", help="the paper's lower bounds for 1/2 N(-m, s^2) + 1/2 N(m, s^2)")
    bounds.add_argument("--m", type=float, required=True, help="modes at -m and +m")
    bounds.add_argument("--sigma", type=float, default=1.0, help="std of each mode (default 1)")
    bounds.add_argument("--lip", type=float, default=None, help="Lipschitz constant of the generator")
    bounds.add_argument("--lam", type=float, default=0.5, help="weight of the left mode (default 0.5)")
    bounds.set_defaults(handler=_cmd_bounds)
    return parser


def _one_line(text):
    return " ".join(str(text).split())


def main(argv=None):
    """Run one command; return its exit status (0, 2 for a user error, 130 for Ctrl-C)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or an argument error already printed on one line
        return stop.code
    try:
        args.handler(args)
    except (ValueError, TrainingDiverged) as err:
        print(f"npgen {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system refused something the checks could not foresee
        where = f" {err.filename}" if err.filename else ""
        print(f"npgen {args.command}: error: cannot write or read{where}: {err.strerror or err}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"npgen {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
