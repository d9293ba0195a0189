"""Progress bars for long work: tqdm (rate, ETA, the latest numbers), set up once for npgen.

On a terminal a bar is redrawn in place every half second. Anywhere else (a log file, CI) it
prints one plain line at the start, then at most one every :data:`LOG_INTERVAL` seconds, and
one at the end. ``quiet`` prints nothing.
"""

import sys
import time

from tqdm import tqdm

#: Seconds between two lines of a bar written to a log (a stream that is not a terminal).
LOG_INTERVAL = 30.0
#: Seconds between two redraws of a bar on a terminal.
TERMINAL_INTERVAL = 0.5


class LogLines:
    """The stream tqdm writes to when the real one is not a terminal: each redraw of the bar
    becomes one line of its own (tqdm's carriage returns and cursor moves are dropped)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        text = text.replace("\r", "").replace("\x1b[A", "").strip("\n")
        if text.strip():
            self.stream.write(text + "\n")

    def flush(self):
        self.stream.flush()


def is_terminal(stream):
    """Whether ``stream`` is an interactive terminal."""
    return hasattr(stream, "isatty") and stream.isatty()


def progress_bar(total, label="", unit="step", quiet=False, stream=None, position=None, leave=True,
                 log_interval=LOG_INTERVAL, **options):
    """A tqdm bar of ``total`` ``unit``s named ``label`` on ``stream`` (stderr by default):
    in place on a terminal, one line per ``log_interval`` seconds elsewhere, nothing when
    ``quiet``. ``position``: the bar's line among several (0 is the top)."""
    stream = sys.stderr if stream is None else stream
    tty = is_terminal(stream)
    return tqdm(total=total, desc=label, unit=unit, disable=quiet, position=position, leave=leave,
                file=stream if tty else LogLines(stream), mininterval=TERMINAL_INTERVAL if tty else log_interval,
                dynamic_ncols=tty, ascii=None if tty else True, **options)


def advance(bar, k=1, **numbers):
    """Advance ``bar`` by ``k``; ``numbers`` (the latest losses, say) are shown beside it and
    formatted only when the bar is about to be redrawn or reaches its total, so a training step
    pays one time check."""
    if bar.disable:
        return
    if numbers and (time.time() - bar.last_print_t >= bar.mininterval or bar.n + k >= (bar.total or 0) > 0):
        bar.set_postfix(numbers, refresh=False)
    bar.update(k)


def format_seconds(seconds):
    """'1:02:03', '03:05': tqdm's interval format ('?' for an unknown one)."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "?"
    return tqdm.format_interval(max(0.0, seconds))
