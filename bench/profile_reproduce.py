#!/usr/bin/env python
"""Where the time of an ``npgen reproduce`` went: seconds per figure, per model and per phase.

    python bench/profile_reproduce.py OUT [--clock cpu|wall] [--write bench/results/reproduce_profile.txt]

OUT is the ``--out`` folder of a reproduction whose runs timed their phases (metrics.json's
``phase_seconds``, :mod:`npgen.study.phase_times`). Each run counts once, under the first figure
that needs it. ``cpu`` (the default) sums the runs' process CPU seconds, which on a shared
machine measure the work better than the wall clock; the first run of each worker process also
pays numba's compile or cache load, inside its ``train`` phase. Figure 7's runs (fig7/) are not
read.
"""

import argparse
import sys

from npgen.study.phase_profile import format_profile, reproduction_rows
from npgen.util.io import atomic_write_text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="the --out folder of an npgen reproduce")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--write", help="also write the table to this file")
    args = parser.parse_args(argv)
    try:
        text = format_profile(reproduction_rows(args.out), args.clock)
    except ValueError as err:
        sys.exit(f"profile_reproduce: {err}")
    print(text)
    if args.write:
        atomic_write_text(args.write, text + "\n")


if __name__ == "__main__":
    main()
