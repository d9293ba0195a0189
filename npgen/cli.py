"""The ``npgen`` command line.

    npgen demo                      a short end-to-end run (a GAN, a VAE and an SGM on a two-mode mixture)
    npgen lipschitz WEIGHTS.npz     exact Lipschitz constant (or certified bounds) of a saved network
    npgen bounds --m 10 [--sigma 1] [--lip 25] [--lam 0.5]
                                    every lower bound of the paper's Section 3, as a table

User errors (bad values, unreadable files) print one sentence and exit with status 2.
"""

import argparse
import sys


def _cmd_lipschitz(args):
    from .lipschitz import lipschitz_report
    print(lipschitz_report(args.weights))


def _cmd_bounds(args):
    from .theory import bounds_table, format_bounds_table
    print(format_bounds_table(bounds_table(args.m, sigma=args.sigma, lip=args.lip, lam=args.lam)))


def _cmd_demo(args):
    from .demo import run_demo
    run_demo(m=args.m, seed=args.seed, quiet=args.quiet)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="npgen",
        description="Push-forward generative models and exact Lipschitz constants (numpy + numba).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="train a GAN, a VAE and an SGM briefly on a two-mode mixture")
    demo.add_argument("--m", type=float, default=4.0, help="half-distance between the modes (default 4)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress lines")
    demo.set_defaults(handler=_cmd_demo)

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
