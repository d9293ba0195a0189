"""The one file format of npgen's networks: an .npz of the weights plus a configuration entry.

Every network npgen saves (an :class:`npgen.MLP`, the SGM's :class:`npgen.ScoreNetwork`) is
one .npz file: the arrays of its ``state_dict()`` (torch's names) and, under
:data:`CONFIG_KEY`, a JSON text holding ``kind`` (the class), ``format`` (the version,
:data:`FORMAT_VERSION`) and the constructor arguments. :func:`read_network_file` checks all of
it before any network is built, so a foreign, damaged or future file is refused in one sentence.
"""

import json

import numpy as np

from ..util.io import atomic_savez, read_npz

CONFIG_KEY = "__npgen_mlp__"
FORMAT_VERSION = 1


def write_network_file(path, kind, config, state):
    """Save ``state`` (name -> array) and ``config`` (JSON-able dict) as a network of ``kind``."""
    meta = dict(config, format=FORMAT_VERSION, kind=kind)
    atomic_savez(path, **state, **{CONFIG_KEY: np.array(json.dumps(meta))})


def read_network_file(path, kinds):
    """(meta, arrays) of the network file ``path``, whose kind must be one of ``kinds``.

    ``meta`` is the parsed configuration entry (a dict with "kind" and "format"); ``arrays``
    the weights. Raises ValueError with one sentence, naming the file, when it is not an npgen
    network file, its entry is damaged, its format version is not :data:`FORMAT_VERSION`, or
    it holds another kind of network (the message names the reader for that kind).
    """
    arrays = read_npz(path)
    if CONFIG_KEY not in arrays:
        raise ValueError(f"{path} is not an npgen network file (no {CONFIG_KEY} entry)")
    entry = arrays.pop(CONFIG_KEY)
    try:
        meta = json.loads(str(entry)) if entry.dtype.kind == "U" and entry.ndim == 0 else None
    except ValueError as err:
        raise ValueError(f"{path} has a corrupt npgen configuration entry ({err})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} has a corrupt npgen configuration entry (not a JSON object)")
    version = meta.get("format")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ValueError(f"{path} has network format version {version!r}; this npgen reads"
                         f" version {FORMAT_VERSION}")
    kind = meta.get("kind")
    if kind not in kinds:
        raise ValueError(f"{path} holds a network of kind {kind!r}, not {' or '.join(kinds)};"
                         " read any npgen network file with npgen.nn.load_network")
    return meta, arrays


def build_network(cls, path, meta, arrays, backend=None):
    """The network of class ``cls`` that a checked file's ``meta`` and ``arrays`` describe.

    ``cls.FILE_FIELDS`` names its constructor arguments in ``meta``. Raises ValueError with one
    sentence, naming the file, when one is missing or they do not describe a valid network.
    """
    missing = [key for key in cls.FILE_FIELDS if key not in meta]
    if missing:
        raise ValueError(f"{path} has a corrupt npgen configuration entry (no {missing[0]!r})")
    try:
        net = cls(**{key: meta[key] for key in cls.FILE_FIELDS}, backend=backend)
        net.load_state_dict(arrays)
    except ValueError as err:
        raise ValueError(f"{path} does not hold a valid {cls.__name__}: {err}") from None
    extra = sorted(set(arrays) - set(net.state_dict()))
    if extra:
        raise ValueError(f"{path} holds arrays that no {cls.__name__} has ({', '.join(map(repr, extra[:5]))}"
                         f"{f' and {len(extra) - 5} more' * (len(extra) > 5)}); npgen reads only the files it"
                         " saved, with the arrays of the network's state_dict()")
    return net


def check_state(state, shapes):
    """Check a state dict against ``shapes`` (key -> shape) before anything is copied: every key
    present, each a finite float array of its shape; else one ValueError naming the key."""
    for key, shape in shapes.items():
        if key not in state:
            raise ValueError(f"state is missing {key!r}; expected the keys {sorted(shapes)}")
        value = np.asarray(state[key])
        if value.shape != shape or value.dtype.kind != "f":
            raise ValueError(f"state[{key!r}] must be a float array of shape {shape},"
                             f" got {value.dtype.name} {value.shape}")
        if not np.isfinite(value).all():
            raise ValueError(f"state[{key!r}] contains NaN or inf values")
