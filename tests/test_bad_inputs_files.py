"""More bad inputs, in the table form of tests/test_bad_inputs.py (its world and its checks):
saved models whose files contradict each other, and mistakes that used to be found only after
the work (an MNIST folder without a 3 or a 7, one particle, a mount point as --out).

Every saved model is a real one, trained for a few steps here, then copied with one field
changed: its config.json, a network file's recorded settings, or its arrays. Loading the copy
must fail in one sentence that names the field.
"""

import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from npgen import GAN, SGM, VAE, cli
from npgen.data import two_gaussians
from npgen.models import DigitClassifier, Particles, VectorSGM, WassersteinEmbedding
from npgen.study import figure7, reproduce, runs
from npgen.util.io import atomic_directory
from test_bad_inputs import (  # noqa: F401 -- world is the shared folder's fixture
    rewrite_model_config, rewrite_network_file, tree_digest, world,
    test_the_api_refuses_in_one_sentence_and_changes_nothing as api_row_refused,
    test_the_cli_refuses_in_one_sentence_and_changes_nothing as cli_row_refused)
from test_mnist_data import write_set

HELD_CLI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "held_cli.py")


def trained_models():
    """{folder name: (class, a trained tiny model)} of every model that saves."""
    line = np.linspace(-1, 1, 40, dtype=np.float32)[:, None]
    rng = np.random.default_rng(0)
    images = rng.random((64, 784), dtype=np.float32)
    gan, vae, sgm = GAN(base_width=4, seed=2), VAE(base_width=4, seed=2), SGM(seed=1)
    for model in (gan, vae, sgm):
        model.fit(line, epochs=1, batch_size=10, quiet=True)
    vector = VectorSGM(data_dim=3, sigmas=[1.0, 0.5, 0.1], hidden_sizes=(8, 8), n_steps_per_level=2)
    vector.fit(rng.standard_normal((40, 3)).astype(np.float32), epochs=1, batch_size=10, quiet=True)
    particles = Particles(n_particles=40, width=8, n_layers=3, batch_size=30, dtype="float64", seed=3)
    particles.fit(two_gaussians(2.0, n=200, seed=1), n_steps=2, quiet=True)
    classifier = DigitClassifier(hidden=(8,), seed=1)
    classifier.fit(images, np.arange(64) % 10, epochs=1, batch_size=32, quiet=True)
    embedding = WassersteinEmbedding(code_dim=3, encoder_hidden=(8,), decoder_hidden=(8,), seed=1)
    embedding.fit(images[:32], images[32:], rng.random(32) + 0.5, epochs=1, batch_size=8, quiet=True)
    return {"gan": (GAN, gan), "vae": (VAE, vae), "sgm": (SGM, sgm), "vector-sgm": (VectorSGM, vector),
            "particles": (Particles, particles), "classifier": (DigitClassifier, classifier),
            "embedding": (WassersteinEmbedding, embedding)}


CLASSES = {}


def _in_config(**change):
    """A config.json edit: ``change`` ({"a.b": value}) sets meta["config"]["a"]["b"]; a key
    "/standardization" addresses the top level instead, and the value DELETE removes it."""
    def edit(meta):
        for dotted, value in change.items():
            target = meta if dotted.startswith("/") else meta["config"]
            *path, last = dotted.lstrip("/").split(".")
            for key in path:
                target = target[key]
            if value is DELETE:
                del target[last]
            else:
                target[last] = value
    return edit


DELETE = object()

#: (model, copy's name, the change: a config.json edit or (network name, recorded change,
#: arrays change)), fragment the refusal must hold).
TAMPERED = [
    ("gan", "seed", _in_config(seed=3), "generator.npz records seed = "),
    ("gan", "n_layers", _in_config(n_layers=4), "generator.npz records sizes = [1, 4, 8, 1]"),
    ("gan", "sn_generator", _in_config(sn_generator=True), "generator.npz records spectral_norm = False"),
    ("gan", "net-skip", ("generator", {"skip": "resnet"}, None), "generator.npz records skip = 'resnet'"),
    ("gan", "net-shape", ("generator", None, {"0.weight": np.zeros((5, 1), np.float32)}),
     "generator.npz does not fit"),
    ("vae", "base_width", _in_config(base_width=5), "encoder.npz records sizes = "),
    ("vae", "net-activation", ("decoder", {"activation": "tanh"}, None), "decoder.npz records activation = 'tanh'"),
    ("vae", "net-missing-field", ("decoder", {"skip": DELETE}, None), "decoder.npz records no skip"),
    ("sgm", "mean-null", _in_config(**{"/standardization.mean": None}), "records no standardization.mean"),
    ("sgm", "std-null", _in_config(**{"/standardization.std": None}), "records no standardization.std"),
    ("sgm", "no-standardization", _in_config(**{"/standardization": DELETE}), "records no standardization.mean"),
    ("sgm", "sigmas", _in_config(sigmas=[1.0, 0.6, 0.36]), "score.npz records noise_levels = "),
    ("sgm", "std", _in_config(**{"/standardization.std": 2.5}), "score.npz records data_std = "),
    ("sgm", "net-noise-levels", ("score", {"noise_levels": [1.0, 0.5]}, None), "score.npz records noise_levels = [1.0, 0.5]"),
    ("sgm", "dtype", _in_config(dtype="float64"), "score.npz records dtype = 'float32'"),
    ("vector-sgm", "sigmas", _in_config(sigmas=[1.0, 0.5, 0.2]), "score.npz records sigmas = [1.0, 0.5, 0.1]"),
    ("vector-sgm", "data_mean", _in_config(data_mean=0.25), "score.npz records data_mean = "),
    ("vector-sgm", "hidden_sizes", _in_config(hidden_sizes=[8, 9]), "score.npz records hidden_sizes = [8, 8]"),
    ("vector-sgm", "data_dim", _in_config(data_dim=4), "score.npz records data_dim = 3"),
    ("vector-sgm", "net-sigmas", ("score", {"sigmas": [2.0, 0.5, 0.1]}, None), "score.npz records sigmas = [2.0, 0.5, 0.1]"),
    ("particles", "width", _in_config(width=9), "discriminator.npz records sizes = [1, 8, 8, 1]"),
    ("particles", "n_particles", _in_config(n_particles=41), "particles.npy must hold finite float64 particles"),
    ("particles", "seed", _in_config(seed=4), "discriminator.npz records seed = "),
    ("classifier", "hidden", _in_config(hidden=[9]), "classifier.npz records sizes = [784, 8, 10]"),
    ("classifier", "net-slope", ("classifier", {"slope": 0.3}, None), "classifier.npz records slope = 0.3"),
    ("embedding", "code_dim", _in_config(code_dim=4), "encoder.npz records sizes = [784, 8, 3]"),
    ("embedding", "net-seed", ("decoder", {"seed": 12345}, None), "decoder.npz records seed = 12345"),
]


def make_tampered(root, saved, model, name, change):
    target = root / f"{model}-{name}"
    if callable(change):
        rewrite_model_config(saved[model], target, change)
        return
    shutil.copytree(saved[model], target)
    net, recorded, arrays = change
    path = target / f"{net}.npz"
    deleted = [key for key, value in (recorded or {}).items() if value is DELETE]
    if deleted:
        with np.load(path) as data:
            stored = dict(data)
        meta = json.loads(str(stored["__npgen_mlp__"]))
        for key in deleted:
            del meta[key]
        rewrite_network_file(path, path, text=json.dumps(meta))
        return
    rewrite_network_file(path, path, recorded, arrays)


@pytest.fixture(scope="module")
def files_world(world):
    """The shared world plus saved models of every kind, their tampered copies and MNIST folders."""
    root = world / "saved"
    saved = {}
    for name, (cls, model) in trained_models().items():
        saved[name] = root / name
        model.save(saved[name])
        CLASSES[name] = cls
    for model, name, change, _ in TAMPERED:
        make_tampered(root / "tampered", saved, model, name, change)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (1200, 28, 28), dtype=np.uint8)
    for digit in (3, 7):
        write_set(world / f"mnist-no{digit}", images, np.where(np.arange(1200) % 10 == digit, 0, np.arange(1200) % 10))
    write_set(world / "mnist-small", images[:500], np.arange(500) % 10)
    return world


def test_every_saved_model_loads_as_saved(files_world):
    for name, cls in CLASSES.items():
        assert cls.load(files_world / "saved" / name) is not None, name


# --------------------------------------------------------------------------- the second table

CLI_ROWS = [
    ("particles-count-1", ["train", "particles", "--m", "5", "--particles", "1"],
     "n_particles (--particles) must be an integer in [2, "),
    ("mnist-without-3", ["reproduce", "--only", "fig7", "--mnist", "mnist-no3", "--out", "new-study"],
     "hold no 3 among their labels; Figure 7 needs both digits 3 and 7"),
    ("mnist-without-7", ["reproduce", "--mnist", "mnist-no7", "--out", "new-study"], "hold no 7 among their labels"),
    ("mnist-too-few", ["reproduce", "--only", "fig7", "--mnist", "mnist-small", "--out", "new-study"],
     "hold 500 training images; Figure 7 needs at least 1001"),
]

API_ROWS = [
    (f"{model}-load-tampered-{name}",
     lambda w, model=model, name=name: CLASSES[model].load(w / "saved" / "tampered" / f"{model}-{name}"),
     ValueError, fragment) for model, name, _, fragment in TAMPERED
] + [
    ("sgm-save-untrained", lambda w: SGM().save(w / "saved" / "untrained-sgm"), RuntimeError,
     "save needs a trained model"),
]


@pytest.mark.parametrize("argv, fragment", [row[1:] for row in CLI_ROWS], ids=[row[0] for row in CLI_ROWS])
def test_the_cli_refuses_before_any_work(files_world, argv, fragment, capsys, monkeypatch):
    for module, work in ((runs, "train_run"), (reproduce, "run_sweep"), (figure7, "run_fig7_stage")):
        monkeypatch.setattr(module, work, lambda *a, **k: pytest.fail("worked before refusing"))
    cli_row_refused(files_world, argv, fragment, capsys, monkeypatch)


@pytest.mark.parametrize("action, error, fragment", [row[1:] for row in API_ROWS], ids=[row[0] for row in API_ROWS])
def test_a_saved_model_whose_files_contradict_each_other_is_refused(files_world, action, error, fragment):
    api_row_refused(files_world, action, error, fragment)


def test_the_second_table_holds_its_rows():
    assert len(CLI_ROWS) + len(API_ROWS) >= 32


# --------------------------------------------------------------------------- a mount point as --out

def test_a_mount_point_as_out_is_refused_before_training(tmp_path, monkeypatch, capsys):
    """The check, with os.path.ismount saying yes for an empty folder (no privileges needed)."""
    (tmp_path / "mnt").mkdir()
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: os.path.abspath(p) == str(tmp_path / "mnt") or real(p))
    monkeypatch.setattr(runs, "train_run", lambda *a, **k: pytest.fail("trained before refusing"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "gan", "--m", "5", "--out", "mnt"]) == 2
    err = capsys.readouterr().err
    assert err == ("npgen train: error: --out mnt is a mount point, which npgen train cannot replace by the"
                   " finished run folder; give a new folder inside it\n")


def test_a_read_only_mount_point_as_out_is_refused_for_real(tmp_path):
    """A real read-only tmpfs mounted on an empty folder, in a mount namespace of its own
    (``unshare -rm``: no root needed where user namespaces are allowed; skipped elsewhere).
    Before the fix, training ran and then said the folder "was created by someone else"."""
    (tmp_path / "mnt").mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro tmpfs {tmp_path / 'mnt'}"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.strip()}")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro tmpfs mnt && exec {sys.executable}"
                           f" {HELD_CLI} - train gan --m 5 --preset tiny --out mnt"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == ["npgen train: error: --out mnt is a mount point, which npgen train"
                                        " cannot replace by the finished run folder; give a new folder inside it"]
    assert os.listdir(tmp_path) == ["mnt"]


def test_a_folder_that_cannot_be_renamed_into_place_is_not_blamed_on_someone_else(tmp_path, monkeypatch):
    """Only a folder that appeared meanwhile "was created by someone else"; any other refusal
    of the final rename (a busy mount point, another file system) says what the system said."""
    real = os.rename

    def busy(source, target):
        if os.path.basename(target) == "out":
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        return real(source, target)
    monkeypatch.setattr(os, "rename", busy)
    with pytest.raises(ValueError, match=r"out cannot be replaced by the folder npgen wrote beside it"
                                         r" \(Device or resource busy\); nothing was replaced"):
        with atomic_directory(tmp_path / "out") as tmp:
            open(os.path.join(tmp, "a.txt"), "w").close()
    assert os.listdir(tmp_path) == []
