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


def save_model(model, path_dir, arrays=None, network_extras=None, **meta_extras):
    """Write ``model`` to the folder ``path_dir``: a new or empty folder, or one holding a saved
    model of the same class (replaced whole); any other folder is refused in one sentence.
    ``arrays`` ({name: array}) are stored beside the networks as ``<name>.npy``;
    ``network_extras`` ({network name: keyword arguments}) go to that network's ``save``, and
    ``meta_extras`` into config.json beside the constructor arguments."""
    name = type(model).__name__
    check_model_folder(path_dir, name)
    with atomic_directory(path_dir, replace=True) as tmp:
        for net_name, net in model.networks().items():
            net.save(os.path.join(tmp, f"{net_name}.npz"), **(network_extras or {}).get(net_name, {}))
        for array_name, array in (arrays or {}).items():
            np.save(os.path.join(tmp, f"{array_name}.npy"), array, allow_pickle=False)
        write_model_meta(tmp, name, model.config(), **meta_extras)


def check_recorded(path, recorded, expected, source):
    """Refuse, in one sentence naming the field, a saved file ``path`` whose ``recorded``
    fields ({field: value}, as read from it) contradict the ``expected`` ones ({field: value},
    what ``source`` says they must be): each field of ``expected`` must be recorded, equal."""
    for field, value in expected.items():
        if field not in recorded:
            raise ValueError(f"{path} records no {field}, which {source} gives as {value!r};"
                             " the saved files contradict each other")
        if recorded[field] != value:
            raise ValueError(f"{path} records {field} = {recorded[field]!r}, but {source} gives"
                             f" {value!r}; the saved files contradict each other")


def load_model(cls, path_dir, backend=None, kinds=("MLP",), restore=None):
    """The model of class ``cls`` saved by :func:`save_model` in ``path_dir``, marked trained
    (its network files of the ``kinds`` of :mod:`npgen.nn.files`). Raises ValueError (one
    sentence naming the file, and the field where files disagree) for a folder that holds no
    such model, a corrupt config.json, or network files that do not fit it: every setting a
    network file records must be the one config.json builds (its layer sizes, noise levels,
    seed, ...), and its arrays must have the shapes those settings give.
    ``restore(model, meta, files)``, if given, checks and restores what the class saved beyond
    its networks: ``meta`` is config.json, ``files`` {network name: (path, recorded settings)}.
    """
    meta = read_model_meta(path_dir, cls.__name__)
    source = os.path.join(os.fspath(path_dir), "config.json")
    try:
        model = cls(**meta["config"], backend=backend)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source} is corrupt ({err})") from None
    files = {}
    for net_name, net in model.networks().items():
        path = os.path.join(os.fspath(path_dir), f"{net_name}.npz")
        recorded, arrays = read_network_file(path, kinds)
        check_recorded(path, recorded, net.config(), f"{source} (the {net_name} network it builds)")
        try:
            net.load_state_dict(arrays)
        except ValueError as err:
            raise ValueError(f"{path} does not fit {source}: {err}") from None
        files[net_name] = (path, recorded)
    if restore is not None:
        restore(model, meta, files)
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
