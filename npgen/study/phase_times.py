"""What a run's phases cost: wall and process (CPU) seconds per phase, recorded into its metrics.

A run (:func:`npgen.study.runs.train_run`) trains, samples and measures; each of these phases is
timed by :class:`PhaseClock` and written as ``metrics["phase_seconds"]``:
``{phase: {"wall": s, "cpu": s}}``. ``cpu`` is :func:`time.process_time`, the CPU seconds of every
thread of the run's process: on a machine shared with other work it does not count the time the
run waited for a core, so it compares runs better than ``wall`` does. A phase entered several
times adds up; a phase timed inside another (``lipschitz_curve`` inside ``train``) is counted in
both, and :data:`INSIDE` names the enclosing one.

:mod:`npgen.study.phase_profile` sums them over the runs of a reproduction.
"""

import contextlib
import time

#: Phases timed inside another phase: {inner: outer}.
INSIDE = {"lipschitz_curve": "train", "sampler_search": "exact_score"}


class PhaseClock:
    """Wall and process seconds per named phase (module doc)."""

    def __init__(self):
        self.seconds = {}

    @contextlib.contextmanager
    def phase(self, name):
        """Time the ``with`` block as (part of) phase ``name``."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - wall, time.process_time() - cpu)

    def add(self, name, wall, cpu):
        entry = self.seconds.setdefault(name, {"wall": 0.0, "cpu": 0.0})
        entry["wall"] += wall
        entry["cpu"] += cpu

    def timed(self, name, function):
        """``function`` wrapped so that each call is timed as phase ``name`` (None stays None)."""
        if function is None:
            return None

        def call(*args, **kwargs):
            with self.phase(name):
                return function(*args, **kwargs)
        return call
