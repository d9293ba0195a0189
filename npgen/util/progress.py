"""A one-line progress report for long work: done/total, rate, ETA and the latest numbers."""

import sys
import time


def format_seconds(seconds):
    """'1h02m', '3m05s' or '12.3s'."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{seconds:.1f}s"


class Progress:
    """Prints ``label  done/total  rate unit/s  ETA  key=value ...`` on one refreshed line.

    ``update(k, **numbers)`` advances by k; the line is redrawn at most every ``interval``
    seconds (and at the end). ``quiet=True`` prints nothing. On a terminal the line is
    rewritten in place; elsewhere (a log file, CI) one line per ``log_interval`` seconds.
    """

    def __init__(self, total, label="", unit="step", quiet=False, stream=None, interval=0.5,
                 log_interval=30.0):
        self.total, self.label, self.unit, self.quiet = total, label, unit, quiet
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval if self.tty else log_interval
        self.done = 0
        self.numbers = {}
        self.start = time.perf_counter()
        self._last_draw = -float("inf")

    def update(self, k=1, **numbers):
        self.done += k
        self.numbers.update(numbers)
        now = time.perf_counter()
        if not self.quiet and (now - self._last_draw >= self.interval or self.done >= self.total):
            self._last_draw = now
            self._draw(now)

    def _draw(self, now):
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else float("nan")
        eta = (self.total - self.done) / rate if rate and rate == rate else float("nan")
        values = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in self.numbers.items())
        line = (f"{self.label} {self.done}/{self.total} {rate:.1f} {self.unit}/s "
                f"ETA {format_seconds(eta)} {values}").strip()
        end = "" if self.tty and self.done < self.total else "\n"
        self.stream.write(("\r\x1b[K" if self.tty else "") + line + end)
        self.stream.flush()

    def close(self):
        """Finish the line (prints a final report if the last update was not drawn)."""
        if not self.quiet and self.tty and self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()

    @property
    def elapsed(self):
        return time.perf_counter() - self.start
