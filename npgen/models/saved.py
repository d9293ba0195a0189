"""Saving a model of several networks as one folder, whole or not at all, and reading it back.

The folder holds one npgen network file per network (``<name>.npz``, :mod:`npgen.nn.files`)
and ``config.json`` (the model's name, the format version and its constructor arguments,
:func:`npgen.util.io.write_model_meta`). It is written into a temporary folder renamed into
place once complete (:func:`npgen.util.io.atomic_directory`), so Ctrl-C during a save leaves
the folder as it was. A model provides ``config()`` and ``networks()`` (name -> MLP).
"""

import os

import numpy as np

from ..nn.files import read_network_file
from ..util.io import (
    atomic_directory,
    check_model_folder,
    read_model_meta,
    read_npy,
    write_model_meta,
)


def save_model(model, path_dir, arrays=None):
    """Write ``model`` to the folder ``path_dir``: a new or empty folder, or one holding a saved
    model of the same class (replaced whole); any other folder is refused in one sentence.
    ``arrays`` ({name: array}) are stored beside the networks as ``<name>.npy``."""
    name = type(model).__name__
    check_model_folder(path_dir, name)
    with atomic_directory(path_dir, replace=True) as tmp:
        for net_name, net in model.networks().items():
            net.save(os.path.join(tmp, f"{net_name}.npz"))
        for array_name, array in (arrays or {}).items():
            np.save(os.path.join(tmp, f"{array_name}.npy"), array, allow_pickle=False)
        write_model_meta(tmp, name, model.config())


def load_model(cls, path_dir, backend=None, kinds=("MLP",)):
    """The model of class ``cls`` saved by :func:`save_model` in ``path_dir``, marked trained
    (its network files of the ``kinds`` of :mod:`npgen.nn.files`). Raises ValueError (one
    sentence naming the file) for a folder that holds no such model, a corrupt config.json,
    or network files that do not fit it."""
    meta = read_model_meta(path_dir, cls.__name__)
    try:
        model = cls(**meta["config"], backend=backend)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path_dir}/config.json is corrupt ({err})") from None
    for net_name, net in model.networks().items():
        path = os.path.join(os.fspath(path_dir), f"{net_name}.npz")
        _, arrays = read_network_file(path, kinds)
        try:
            net.load_state_dict(arrays)
        except ValueError as err:
            raise ValueError(f"{path} does not fit {path_dir}/config.json: {err}") from None
    model.trained = True
    return model


def load_saved_arrays(path_dir, names):
    """The arrays ``names`` stored by :func:`save_model` in ``path_dir``, as {name: array},
    unchecked (the model checks their shapes); a missing or unreadable one is one ValueError
    naming its file."""
    loaded = {}
    for name in names:
        path = os.path.join(os.fspath(path_dir), f"{name}.npy")
        loaded[name] = read_npy(path)
    return loaded
