"""Argument checks that turn a user's mistake into one clear sentence.

Every public entry point of npgen validates its inputs here before any numba kernel sees
them, so a wrong shape or a NaN never surfaces as a typing traceback from deep inside a kernel.
"""

import math

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


def dtype_of(dtype):
    """Return the numpy dtype for ``dtype`` ('float32', 'float64' or the numpy type)."""
    for name, np_type in DTYPES.items():
        if dtype in (name, np_type) or (isinstance(dtype, np.dtype) and dtype == np_type):
            return np.dtype(np_type)
    raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def check_matrix(name, x, n_cols, dtype):
    """Check that ``x`` is a finite 2-D array of shape (n, n_cols) and the given dtype.

    Returns ``x`` as a C-contiguous array (a copy only when the layout requires one).
    """
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array of shape (n, {n_cols}), got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != n_cols or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (n, {n_cols}) with n >= 1, got {x.shape}")
    if x.dtype != dtype:
        raise ValueError(
            f"{name} must have dtype {np.dtype(dtype).name} to match the network, got {x.dtype.name}"
            f" (convert it with .astype(np.{np.dtype(dtype).name}))"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values; npgen accepts finite inputs only")
    return np.ascontiguousarray(x)


def as_real_array(name, values, dtype, shape_hint):
    """``values`` as a numpy array of ``dtype`` if it holds real numbers that ``dtype`` can hold.

    Accepted: arrays and nested lists of ints or floats. Refused, with one sentence naming
    ``name``: complex numbers, booleans, strings, objects, ragged lists, NaN or inf, and values
    beyond the largest finite number of ``dtype`` (about 3.4e38 for float32), which a cast
    would turn into inf. ``shape_hint`` (e.g. "(n, 1)") goes into the messages.
    """
    try:
        array = np.asarray(values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array of shape {shape_hint}") from None
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers (ints or floats) in an array of shape"
                         f" {shape_hint}, got dtype {array.dtype.name}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf values; npgen accepts finite inputs only")
    largest = float(np.finfo(dtype).max)
    if array.size and float(np.max(np.abs(array.astype(np.float64)))) > largest:
        raise ValueError(f"{name} holds values beyond the range of {np.dtype(dtype).name}"
                         f" (|x| <= {largest:.3g}); rescale the data")
    return array.astype(dtype, copy=False)


def check_bool(name, value):
    """Return ``value`` if it is a bool (Python's or numpy's), else raise: "no", "false", 0 and
    None are not bools, and reading them as truthy would switch a feature on by accident."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def accepted_numbers(low=-math.inf, high=math.inf, low_open=False, high_open=False, integer=False):
    """What :func:`check_number` accepts, in words: 'a finite number >= 0', 'an integer in [1, 7]'."""
    kind = "an integer" if integer else "a finite number"
    if math.isinf(low) and math.isinf(high):
        return kind
    if math.isinf(high):
        return f"{kind} {'>' if low_open else '>='} {low:g}"
    if math.isinf(low):
        return f"{kind} {'<' if high_open else '<='} {high:g}"
    return f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_number(name, value, low=-math.inf, high=math.inf, low_open=False, high_open=False,
                 integer=False):
    """Check that ``value`` is a finite number in the given interval and return it."""
    accepted = accepted_numbers(low, high, low_open, high_open, integer)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be {accepted}, got {_shown(value)}")
    exact = isinstance(value, (int, np.integer))  # no float(): 10**400 has none, and is finite
    if integer and not exact and not float(value).is_integer():
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not (exact or math.isfinite(value)) or too_low or too_high or (
            exact and not integer and abs(value) > np.finfo(np.float64).max):
        raise ValueError(f"{name} must be {accepted}, got {_shown(value)}")
    return int(value) if integer else float(value)


def _shown(value, width=40):
    """``repr(value)``, cut to ``width`` characters (a 401-digit integer as '1000...000 (401 digits)')."""
    text = repr(value)
    if len(text) <= width:
        return text
    if isinstance(value, (int, np.integer)):
        return f"{text[:6]}...{text[-3:]} ({len(text.lstrip('-'))} digits)"
    return text[:width] + "..."


def check_choice(name, value, choices):
    """Check that ``value`` is one of ``choices`` and return it."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_betas(betas):
    """Check Adam's (beta1, beta2), each in [0, 1), and return them as a tuple of floats."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return tuple(check_number(f"betas[{i}]", b, low=0, high=1, high_open=True)
                 for i, b in enumerate(betas))


#: The largest seed npgen accepts: every seed fits a signed 64-bit integer, as kernels take it.
MAX_SEED = 2 ** 63 - 1


def check_seed(value, name="seed"):
    """Check that ``value`` is an integer seed in [0, 2**63 - 1] and return it as an int."""
    try:
        return check_number(name, value, low=0, high=MAX_SEED, integer=True)
    except ValueError:
        raise ValueError(f"{name} must be an integer in [0, 2**63 - 1], got {_shown(value)}") from None
