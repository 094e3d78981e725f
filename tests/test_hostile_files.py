"""Hostile and damaged files: checkpoints (stn_numba.io), MNIST files (stn_numba.data) and the CLI.

Fills the gaps left by tests/test_io.py, tests/test_data.py and tests/test_cli.py:
pickle payloads never run, malformed ``.npz`` members and IDX headers give a
clear error naming the file, a checkpoint survives its writer being killed
mid-write, and a real Ctrl-C (SIGINT) at any moment of training leaves a
loadable checkpoint that ``--resume`` continues.
"""

import ctypes
import gzip
import io as bytes_io
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy_format

from stn_numba import cli, experiments, io
from stn_numba.data import mnist


# ------------------------------------------------------------------ helpers
class Payload:
    """Unpickling this creates ``marker``: proof that a loader ran pickle."""

    def __init__(self, marker):
        self.marker = os.fspath(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def npy_bytes(shape, data=b"", descr="<f8"):
    """A .npy header declaring ``shape`` followed by ``data`` (which may not match it)."""
    buffer = bytes_io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def write_zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def idx_header(type_code, shape):
    return bytes([0, 0, type_code, len(shape)]) + b"".join(int(n).to_bytes(4, "big") for n in shape)


# ----------------------------------------------------------------- no pickle
def pickle_payload_files(directory, marker):
    """Files that run ``Payload`` if anything unpickles them: name -> path."""
    raw = directory / "raw.npz"
    raw.write_bytes(pickle.dumps(Payload(marker)))
    object_array = directory / "object_array.npz"
    np.savez(object_array, weight=np.array([Payload(marker)], dtype=object))
    npy = directory / "plain.npy"
    np.save(npy, np.array([Payload(marker)], dtype=object))
    return {"raw": raw, "object_array": object_array, "npy": npy}


@pytest.mark.parametrize("kind", ["raw", "object_array", "npy"])
def test_checkpoint_pickle_payloads_never_run(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = pickle_payload_files(tmp_path, marker)[kind]
    with pytest.raises(ValueError, match=str(path)):
        io.load(path)
    assert not marker.exists()


def test_mnist_files_holding_pickles_are_refused_naming_them(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Payload(marker))
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(payload))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        mnist.load_mnist(tmp_path)
    assert not marker.exists()


def test_loaders_never_allow_pickle(tmp_path, monkeypatch):
    """Every np.load in the loaders passes allow_pickle=False, and nothing reaches pickle at all."""
    calls = []
    real_load = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("allow_pickle"))
        return real_load(*args, **kwargs)

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle was called")

    monkeypatch.setattr(np, "load", spy)
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, no_pickle)
    io.save({"model": {"w": np.arange(3.0)}, "epoch": 2, "note": "text"}, tmp_path / "c.npz")
    assert io.load(tmp_path / "c.npz")["epoch"].item() == 2
    mnist.read_bundled()
    assert calls and all(allow is False for allow in calls), calls


# ------------------------------------------------------- malformed archives
def test_npz_member_shorter_than_its_header_names_the_file(tmp_path):
    path = write_zip(tmp_path / "c.npz", {"w.npy": npy_bytes((10,), bytes(16))})
    with pytest.raises(ValueError, match=f"{path}.*corrupt"):
        io.load(path)


def test_npz_member_declaring_a_huge_shape_is_refused_naming_the_file(tmp_path):
    """A 100-byte file must not make load try to allocate 8 TiB (a MemoryError today)."""
    path = write_zip(tmp_path / "c.npz", {"w.npy": npy_bytes((2**40,), bytes(16))})
    with pytest.raises(ValueError, match=str(path)):
        io.load(path)


def test_npz_member_that_is_not_an_array_is_refused_naming_the_file(tmp_path):
    """np.load returns raw bytes for a zip member without the .npy magic; a checkpoint holds only arrays."""
    path = write_zip(tmp_path / "c.npz", {"w.npy": npy_bytes((2,), bytes(16)), "evil": b"#!/bin/sh\necho hi\n"})
    with pytest.raises(ValueError, match=str(path)):
        io.load(path)


def test_npz_entries_nested_under_an_array_name_the_file(tmp_path):
    path = write_zip(tmp_path / "c.npz", {"a.npy": npy_bytes((1,), bytes(8)), "a/b.npy": npy_bytes((1,), bytes(8))})
    with pytest.raises(ValueError, match=f"{path}.*'a/b'"):
        io.load(path)


def test_idx_header_whose_size_product_overflows_int64_names_the_file(tmp_path):
    """2**31 * 2**31 * 4 = 2**64 wraps to 0 in int64, matching a header-only file; the reader must
    still refuse it with its own message (today: NumPy's reshape error, without the file name)."""
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(idx_header(0x08, (2**31, 2**31, 4)))
    with pytest.raises(ValueError, match=str(path)):
        mnist.read_idx(path)


# ----------------------------------------------------- atomic checkpoints
WRITER_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from stn_numba import io
    path = sys.argv[1]
    print("ready", flush=True)
    for generation in range(1, 10**6):
        io.save({"generation": generation, "weight": np.full(2**21, float(generation))}, path)
""")


def test_a_checkpoint_survives_its_writer_being_killed(tmp_path):
    """SIGKILL at random moments of back-to-back 16 MB saves: the file always loads whole.

    Leftovers are only the killed save's temporary file (``c.npz.*.tmp``).
    """
    path = tmp_path / "c.npz"
    io.save({"generation": 0, "weight": np.zeros(2**21)}, path)
    rng = np.random.default_rng(0)
    for delay in rng.uniform(0.05, 0.6, 5):
        writer = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(path)], stdout=subprocess.PIPE,
                                  text=True)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(delay)
        writer.kill()
        writer.wait(timeout=60)
        writer.stdout.close()
        checkpoint = io.load(path)
        generation = checkpoint["generation"].item()
        np.testing.assert_array_equal(checkpoint["weight"], np.full(2**21, float(generation)))
    leftovers = sorted(set(os.listdir(tmp_path)) - {"c.npz"})
    assert all(name.startswith("c.npz.") and name.endswith(".tmp") for name in leftovers), leftovers


def test_a_save_failing_after_a_partial_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    io.save({"a": np.ones(3)}, path)
    real_savez = np.savez

    def half_then_full_disk(file, **arrays):
        file.write(b"PK\x03\x04" + bytes(1000))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", half_then_full_disk)
    with pytest.raises(OSError, match="No space left"):
        io.save({"a": np.zeros(3)}, path)
    monkeypatch.setattr(np, "savez", real_savez)
    assert os.listdir(tmp_path) == ["c.npz"]
    np.testing.assert_array_equal(io.load(path)["a"], np.ones(3))


# ---------------------------------------------------------------- the CLI
TINY = ["--model", "cnn", "--train-limit", "48", "--test-limit", "16", "--batch-size", "16"]


def stn_numba_command(*argv):
    return [sys.executable, "-m", "stn_numba", *map(str, argv)]


def restore_default_sigint():
    """In the child, before exec: SIGINT back to its default. A shell's
    background job starts with SIGINT ignored, the child would inherit that,
    and Python turns SIGINT into KeyboardInterrupt only if it was not."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def completed_epochs(directory):
    try:
        with open(directory / experiments.METRICS) as file:
            return [json.loads(line)["epoch"] for line in file]
    except FileNotFoundError:
        return []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_sigint_during_training_leaves_a_checkpoint_that_resume_continues(tmp_path):
    """A real Ctrl-C at a random moment after the first epoch, then --resume to the end."""
    out = tmp_path / "run"
    epochs = 100  # 0.02-0.05 s each on 2 cores: the signal lands well before the end
    rng = np.random.default_rng(1)
    training = subprocess.Popen(stn_numba_command("train", "--out", out, "--epochs", epochs, *TINY),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=restore_default_sigint)
    deadline = time.monotonic() + 300
    while not completed_epochs(out) and time.monotonic() < deadline and training.poll() is None:
        time.sleep(0.05)
    assert completed_epochs(out), "no epoch finished"
    time.sleep(rng.uniform(0, 1.5))  # anywhere in a later epoch, its evaluation or its save
    training.send_signal(signal.SIGINT)
    _, err = training.communicate(timeout=120)
    if training.returncode == 0:
        pytest.skip("training finished before the signal arrived")
    assert training.returncode == 130, err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("stn-numba train: interrupted") and "Traceback" not in err, err
    saved = io.load(out / experiments.CHECKPOINT)
    done = int(saved["epoch"])
    assert 1 <= done < epochs
    resumed = subprocess.run(stn_numba_command("train", "--resume", "--out", out), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert completed_epochs(out) == list(range(1, epochs + 1))
    assert int(io.load(out / experiments.CHECKPOINT)["epoch"]) == epochs


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_sigint_before_the_first_checkpoint_leaves_nothing_to_resume(tmp_path):
    """Ctrl-C during start-up. (While the modules are still being imported, Python itself reports
    the KeyboardInterrupt with a traceback and exits by SIGINT; after that the CLI exits with 130.)"""
    out = tmp_path / "run"
    training = subprocess.Popen(stn_numba_command("train", "--out", out, "--epochs", 3, *TINY),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=restore_default_sigint)
    time.sleep(0.5)
    training.send_signal(signal.SIGINT)
    _, err = training.communicate(timeout=120)
    assert training.returncode in (130, -signal.SIGINT), err
    assert not (out / experiments.CHECKPOINT).exists()
    status = cli.main(["train", "--resume", "--out", str(out)])
    assert status == 1


def test_ctrl_c_swallowed_by_a_ctypes_callback_still_interrupts_the_command(tmp_path, monkeypatch, capsys):
    """Ctrl-C while Numba compiles can land in llvmlite's ctypes callback, where Python drops the
    KeyboardInterrupt: the command must still stop with 130, not train on."""
    def interrupt():
        raise KeyboardInterrupt

    def train_while_compiling(args):
        ctypes.CFUNCTYPE(None)(interrupt)()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # training goes on
            time.sleep(0.001)
        return 0

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        monkeypatch.setattr(cli, "_train", train_while_compiling)
        status = cli.main(["train", "--out", str(tmp_path / "run")])
    finally:
        signal.signal(signal.SIGINT, previous)
    _, err = capsys.readouterr()
    assert status == 130, err
    assert err.startswith("stn-numba train: interrupted"), err


def test_hostile_mnist_dir_is_a_one_line_cli_error(tmp_path, capsys):
    """--mnist-dir with a pickle in place of the training images: exit 1, one line naming the file."""
    marker = tmp_path / "pwned"
    data = tmp_path / "mnist"
    data.mkdir()
    for stem, shape in (("train-images-idx3-ubyte", (2, 28, 28)), ("train-labels-idx1-ubyte", (2,)),
                        ("t10k-images-idx3-ubyte", (2, 28, 28)), ("t10k-labels-idx1-ubyte", (2,))):
        (data / stem).write_bytes(idx_header(0x08, shape) + bytes(int(np.prod(shape))))
    (data / "train-images-idx3-ubyte").write_bytes(pickle.dumps(Payload(marker)))
    status = cli.main(["train", "--out", str(tmp_path / "run"), "--mnist-dir", str(data), *TINY])
    _, err = capsys.readouterr()
    assert status == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("stn-numba train: error: ") and "train-images-idx3-ubyte" in err, err
    assert not marker.exists()


def test_missing_mnist_dir_is_a_one_line_cli_error(tmp_path, capsys):
    status = cli.main(["train", "--out", str(tmp_path / "run"), "--mnist-dir", str(tmp_path / "nowhere"), *TINY])
    _, err = capsys.readouterr()
    assert status == 1 and err.count("\n") == 1 and "nowhere" in err and "Traceback" not in err, err


def test_disk_full_while_checkpointing_is_a_one_line_cli_error(tmp_path, capsys, monkeypatch):
    def full_disk(file, **arrays):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    status = cli.main(["train", "--out", str(tmp_path / "run"), "--epochs", "1", *TINY])
    _, err = capsys.readouterr()
    assert status == 1 and err.count("\n") == 1 and "No space left on device" in err, err
    assert os.listdir(tmp_path / "run") == [experiments.METRICS]
