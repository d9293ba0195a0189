"""The ``npgen`` command line.

    npgen reproduce [--preset quick|paper] [--only fig3,fig4] [--jobs N] [--out DIR]
                                    the paper's Section 4.1: runs, figures, report.md and report.html
    npgen figure N --from DIR       redraw figure N (1-6, or "grid") from a reproduction's stored runs
    npgen train gan|vae|sgm --m M [--preset quick|paper] [--seed S] [--out DIR] [--gp L]
                [--sn-generator] [--kl paper] [--weighting sigma2] [--layers N] [--skip resnet]
                                    one training run into DIR (config, weights, samples, metrics, histogram)
    npgen lipschitz WEIGHTS.npz     exact Lipschitz constant (or an enclosure, or bounds) of a saved network
    npgen bounds --m 10 [--sigma 1] [--lip 25] [--lam 0.5]
                                    every lower bound of the paper's Section 3, as a table

User errors (bad values, unreadable files) print one sentence and exit with status 2.
"""

import argparse
import os
import sys

from .analysis.lipschitz import lipschitz_report
from .analysis.theory import bounds_table, format_bounds_table
from .study.reproduce import redraw_figure, reproduce
from .study.runs import summarize_metrics, train_command


def _cmd_lipschitz(args):
    print(lipschitz_report(args.weights))


def _cmd_bounds(args):
    print(format_bounds_table(bounds_table(args.m, sigma=args.sigma, lip=args.lip, lam=args.lam)))


def _cmd_train(args):
    out = args.out or f"npgen-run-{args.model}-m{args.m:g}-seed{args.seed}"
    _, metrics = train_command(args.model, args.m, args.preset, args.seed, out,
                               gp_lipschitz=args.gp, sn_generator=args.sn_generator,
                               kl=args.kl, weighting=args.weighting, n_layers=args.layers,
                               skip=args.skip, denoise=args.denoise)
    print(summarize_metrics(metrics))
    print(f"wrote {out}/ (config.json, metrics.json, samples.npy, model/, histogram.png)")


def _cmd_reproduce(args):
    report = reproduce(preset=args.preset, only=args.only, jobs=args.jobs, out=args.out)
    print(f"wrote {report} and {report[:-3]}.html")


def _cmd_figure(args):
    print(f"wrote {redraw_figure(args.number, args.source)}")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="npgen",
        description="Push-forward generative models and exact Lipschitz constants (numpy + numba).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rep = sub.add_parser("reproduce", help="reproduce the paper's Section 4.1 (figures 1-6 and a report)")
    rep.add_argument("--preset", choices=["quick", "paper"], default="quick")
    rep.add_argument("--only", default=None, help="comma-separated figures: fig1,...,fig6,grid")
    rep.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                     help="parallel worker processes (default: one per CPU core)")
    rep.add_argument("--out", default="npgen-results", help="output folder (default ./npgen-results)")
    rep.set_defaults(handler=_cmd_reproduce)

    fig = sub.add_parser("figure", help="redraw one figure from stored results, without training")
    fig.add_argument("number", help="1, 2, 3, 4, 5, 6 or grid")
    fig.add_argument("--from", dest="source", required=True, help="a folder written by npgen reproduce")
    fig.set_defaults(handler=_cmd_figure)

    train = sub.add_parser("train", help="train one model on 1/2 N(-m, 1) + 1/2 N(m, 1)")
    train.add_argument("model", choices=["gan", "vae", "sgm"])
    train.add_argument("--m", type=float, required=True, help="modes at -m and +m")
    train.add_argument("--preset", choices=["quick", "paper"], default="quick")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default=None, help="run folder (default npgen-run-MODEL-mM-seedS)")
    train.add_argument("--gp", type=float, default=None, metavar="L", help="GAN: gradient penalty towards Lip L")
    train.add_argument("--sn-generator", action="store_true", help="GAN: spectral norm on the generator")
    train.add_argument("--kl", choices=["correct", "paper"], default="correct",
                       help="VAE: the textbook KL (default) or the published code's")
    train.add_argument("--weighting", choices=["paper", "sigma2"], default="paper",
                       help="SGM: loss weight sigma (the published code) or sigma^2 (Song & Ermon)")
    train.add_argument("--denoise", action="store_true", help="SGM: final denoising step")
    train.add_argument("--layers", type=int, default=3, help="GAN/VAE: layers of the generator (default 3)")
    train.add_argument("--skip", choices=["plain", "resnet", "densenet"], default="plain")
    train.set_defaults(handler=_cmd_train)

    lip = sub.add_parser("lipschitz", help="Lipschitz constant of a saved npgen network (.npz)")
    lip.add_argument("weights", help="an .npz file written by npgen (MLP.save)")
    lip.set_defaults(handler=_cmd_lipschitz)

    bounds = sub.add_parser("bounds", help="the paper's lower bounds for 1/2 N(-m, s^2) + 1/2 N(m, s^2)")
    bounds.add_argument("--m", type=float, required=True, help="modes at -m and +m")
    bounds.add_argument("--sigma", type=float, default=1.0, help="std of each mode (default 1)")
    bounds.add_argument("--lip", type=float, default=None, help="Lipschitz constant of the generator")
    bounds.add_argument("--lam", type=float, default=0.5, help="weight of the left mode (default 0.5)")
    bounds.set_defaults(handler=_cmd_bounds)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except ValueError as err:
        print(f"npgen {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"npgen {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
