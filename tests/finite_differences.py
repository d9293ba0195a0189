"""Central finite differences, the yardstick every hand-written gradient in npgen is checked against."""

import numpy as np

EPS = 1e-6


def central_difference(f, values, indices=None):
    """d f / d values[i] for i in ``indices`` (default: every entry), by central differences.

    ``f()`` returns a scalar and reads ``values``, which is perturbed in place and restored.
    The error is O(EPS^2) times the third derivative, far below the tolerance of
    :func:`assert_matches_fd` in float64.
    """
    indices = range(values.size) if indices is None else indices
    out = []
    for i in indices:
        keep = values.flat[i]
        values.flat[i] = keep + EPS
        up = f()
        values.flat[i] = keep - EPS
        down = f()
        values.flat[i] = keep
        out.append((up - down) / (2 * EPS))
    return np.array(out)


def assert_matches_fd(actual, expected):
    """Agreement to 1e-6 relative, with an absolute floor scaled by the gradient's size."""
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-8 * scale)
