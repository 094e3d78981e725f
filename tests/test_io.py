"""Checkpoints: round trips, atomic writes, and clear errors for bad files."""

import os

import numpy as np
import pytest

import stn_numba.nn as nn
from stn_numba import io, optim
from stn_numba.tensor import Tensor


def _model():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))


def _listing(directory):
    return sorted(os.listdir(directory))


def test_nested_round_trip_keeps_values_dtypes_and_structure(tmp_path):
    state = {
        "model": {"conv.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "bn.num_batches_tracked": np.int64(4)},
        "optimizer": {"state": {}, "param_groups": {"0": {"lr": 0.1, "nesterov": True, "params": np.arange(2)}}},
        "epoch": 7,
        "name": "run-1",
        "tensor": Tensor(np.ones(2)),
    }
    io.save(state, tmp_path / "c.npz")
    loaded = io.load(tmp_path / "c.npz")
    assert loaded.path == os.fspath(tmp_path / "c.npz") and loaded["model"].path == loaded.path
    assert loaded["model"]["conv.weight"].dtype == np.float32
    np.testing.assert_array_equal(loaded["model"]["conv.weight"], state["model"]["conv.weight"])
    assert loaded["model"]["bn.num_batches_tracked"].dtype == np.int64
    assert loaded["optimizer"]["state"] == {}
    group = loaded["optimizer"]["param_groups"]["0"]
    assert group["lr"].item() == 0.1 and group["nesterov"].item() is True
    assert loaded["epoch"].item() == 7 and loaded["name"].item() == "run-1"
    np.testing.assert_array_equal(loaded["tensor"], 1.0)


def test_model_round_trip_gives_identical_outputs(tmp_path, rng):
    model = _model()
    model(Tensor(rng.standard_normal((4, 1, 4, 4)).astype(np.float32)))   # move the running stats
    io.save(model.state_dict(), tmp_path / "m.npz")
    other = _model()
    other.load_state_dict(io.load(tmp_path / "m.npz"))
    model.eval(), other.eval()
    x = Tensor(rng.standard_normal((2, 1, 4, 4)).astype(np.float32))
    np.testing.assert_array_equal(model(x).data, other(x).data)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)


def test_save_replaces_atomically_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "c.npz"
    io.save({"a": np.ones(2)}, path)
    io.save({"a": np.zeros(3)}, path)
    assert _listing(tmp_path) == ["c.npz"]
    np.testing.assert_array_equal(io.load(path)["a"], np.zeros(3))


def test_a_failed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    io.save({"a": np.ones(2)}, path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save({"a": np.zeros(2)}, path)
    monkeypatch.undo()
    assert _listing(tmp_path) == ["c.npz"]
    np.testing.assert_array_equal(io.load(path)["a"], np.ones(2))


def test_save_refuses_object_arrays_and_bad_keys(tmp_path):
    with pytest.raises(TypeError, match="'w' is an object array"):
        io.save({"w": np.array([None, 1])}, tmp_path / "c.npz")
    with pytest.raises(TypeError, match="'w/x' is an object array"):
        io.save({"w": {"x": [{"a": 1}]}}, tmp_path / "c.npz")
    with pytest.raises(ValueError, match="without '/'"):
        io.save({"a/b": np.ones(1)}, tmp_path / "c.npz")
    with pytest.raises(ValueError, match="non-empty strings"):
        io.save({3: np.ones(1)}, tmp_path / "c.npz")
    with pytest.raises(TypeError, match="mapping"):
        io.save([np.ones(1)], tmp_path / "c.npz")
    assert _listing(tmp_path) == []


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz does not exist"):
        io.load(tmp_path / "nothing.npz")


def test_truncated_file(tmp_path):
    path = tmp_path / "c.npz"
    io.save({"weight": np.arange(1000.0)}, path)
    data = path.read_bytes()
    for length in (len(data) // 2, 10, 0):
        path.write_bytes(data[:length])
        with pytest.raises(ValueError, match=f"{path}.*(truncated|corrupt|empty)"):
            io.load(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "c.npz"
    io.save({"weight": np.arange(1000.0)}, path)
    data = bytearray(path.read_bytes())
    data[200:260] = bytes(60)  # zero out part of the stored array
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{path} is truncated or corrupt"):
        io.load(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=f"{path} is not an .npz archive"):
        io.load(path)


def test_pickled_content_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, payload=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="object arrays.*pickle"):
        io.load(path)


def test_wrong_architecture_names_the_file_and_the_problem(tmp_path):
    path = tmp_path / "m.npz"
    io.save(_model().state_dict(), path)
    other = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    with pytest.raises(KeyError, match=f"from {path}.*missing keys \\['3.weight', '3.bias'\\]"
                                       f".*unexpected keys \\['1.weight'"):
        other.load_state_dict(io.load(path))
    wider = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match=f"from {path}.*0.weight: checkpoint \\(2, 1, 3, 3\\), model \\(4, 1, 3, 3\\)"):
        wider.load_state_dict(io.load(path))


def test_full_training_checkpoint_with_optimizer(tmp_path, rng):
    model = _model()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x = Tensor(rng.standard_normal((4, 1, 4, 4)).astype(np.float32))
    model(x).sum().backward()
    opt.step()
    io.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}, tmp_path / "run.npz")
    checkpoint = io.load(tmp_path / "run.npz")
    fresh = _model()
    fresh.load_state_dict(checkpoint["model"])
    opt2 = optim.Adam(fresh.parameters(), lr=1e-3)
    opt2.load_state_dict(checkpoint["optimizer"])
    assert checkpoint["epoch"].item() == 1
    for p, q in zip(opt.state.values(), opt2.state.values()):
        assert p["step"] == q["step"] == 1
        np.testing.assert_array_equal(p["exp_avg"], q["exp_avg"])
