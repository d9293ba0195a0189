"""The progress of a sweep (:func:`npgen.study.sweep.run_sweep`): a tqdm bar of runs and one
line per worker."""

import sys
import time

from tqdm import tqdm

from ..util.progress import format_seconds, is_terminal, progress_bar


class SweepProgress:
    """The sweep's progress: a tqdm bar of runs (done/total, rate, ETA, failures, the last run)
    and, on a terminal, one line per worker under it with the run it is on and since when.

    In a log (not a terminal) the bar prints one line at most every
    :data:`npgen.util.progress.LOG_INTERVAL` seconds and after the last run, and the worker
    lines are left out. Notes go on their own lines above the bar. The bar counts finished runs,
    those found on disk included; its rate counts this sweep's. Runs computed on workers that
    report themselves (:data:`Shipped`) add the number of workers seen and the mean seconds of a
    worker's first run, which pays numba's compile (or its cache load), beside the mean of
    later runs.
    """

    def __init__(self, total, quiet):
        self.total, self.quiet = total, quiet
        self.done = self.failed = self.finished = 0
        self.workers = set()
        self.first_seconds, self.later_seconds = [], []
        self.stream = sys.stderr
        self.bar, self.lines, self.slots, self.started = None, [], [], {}

    def open(self, n_workers):
        """Draw the bar (from the runs already done) and, on a terminal, ``n_workers`` worker lines."""
        self.bar = progress_bar(self.total, "sweep", unit="run", quiet=self.quiet, stream=self.stream,
                                initial=self.done, position=0)
        if not self.quiet and is_terminal(self.stream):
            self.lines = [progress_bar(None, f"worker {k + 1}: idle", quiet=False, stream=self.stream,
                                       position=k + 1, leave=False, bar_format="{desc}")
                          for k in range(n_workers)]
            self.slots = [None] * n_workers

    def close(self):
        for bar in self.lines + ([self.bar] if self.bar is not None else []):
            bar.close()

    def note(self, message):
        """A line of its own: above the bars on a terminal, between the bar's lines in a log."""
        if self.quiet:
            return
        if is_terminal(self.stream):
            tqdm.write(f"sweep: {message}", file=self.stream)
        else:
            self.stream.write(f"sweep: {message}\n")
            self.stream.flush()

    def running(self, names):
        """Show the runs in flight, each on the worker line it took when it started (a run keeps
        its line until it ends), with how long it has run; runs beyond the lines wait unshown."""
        now = time.perf_counter()
        self.slots = [name if name in names else None for name in self.slots]
        for name in names:
            if name not in self.slots and None in self.slots:
                self.slots[self.slots.index(None)] = name
                self.started[name] = now
        for k, (line, name) in enumerate(zip(self.lines, self.slots)):
            line.set_description_str(f"worker {k + 1}: idle" if name is None else
                                     f"worker {k + 1}: {name}, {format_seconds(now - self.started[name])}")

    def shipped(self, name, shipped):
        """Count a run computed on a worker that reported itself; note a worker's first run."""
        self.workers.add(shipped.worker)
        (self.first_seconds if shipped.first else self.later_seconds).append(shipped.seconds)
        if shipped.first:
            self.note(f"{name}: first run on worker {shipped.worker},"
                      f" {format_seconds(shipped.seconds)} with numba's compile or cache load")

    def advance(self, name, failed):
        self.finished += 1
        self.failed += failed
        self.done += not failed
        if self.bar is None or self.bar.disable:
            return
        numbers = {"failed": self.failed} if self.failed else {}
        if self.workers:  # workers met in an earlier sweep have no first run in this one
            first, later = self.first_seconds, self.later_seconds
            numbers.update(workers=len(self.workers),
                           first=format_seconds(sum(first) / len(first)) if first else "-",
                           later=format_seconds(sum(later) / len(later)) if later else "-")
        self.bar.set_postfix(numbers, last=name, refresh=False)
        self.bar.update(1)
