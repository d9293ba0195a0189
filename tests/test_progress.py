"""Progress bars (npgen.util.progress, tqdm): quiet prints nothing; in a log (not a terminal) a
bar prints whole lines, at most one per interval besides its first and its last, and the last
one carries the latest numbers."""

import io

from npgen.util.progress import advance, format_seconds, progress_bar


def run_bar(steps, **options):
    stream = io.StringIO()
    bar = progress_bar(steps, "train", stream=stream, **options)
    for step in range(steps):
        advance(bar, 1, loss=step / 100)
    bar.close()
    return stream.getvalue()


def test_quiet_prints_nothing():
    assert run_bar(50, quiet=True) == ""


def test_in_a_log_a_bar_prints_its_first_and_last_line_within_one_interval():
    text = run_bar(500, log_interval=3600.0)
    first, last = text.splitlines()
    assert "\r" not in text and "\x1b" not in text
    assert first.startswith("train:") and "0/500" in first
    assert "500/500" in last and "loss=4.99" in last and "step/s" in last


def test_in_a_log_a_bar_without_an_interval_prints_a_line_per_step():
    lines = run_bar(20, log_interval=0.0).splitlines()  # the first, one per step, the closing one
    assert len(lines) == 22 and all(line.startswith("train:") for line in lines)
    assert "10/20" in lines[10] and "loss=0.09" in lines[10]


def test_seconds_are_written_as_tqdm_writes_them():
    assert (format_seconds(65), format_seconds(3725), format_seconds(float("nan"))) == ("01:05", "1:02:05", "?")
