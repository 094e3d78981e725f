"""The stn-numba command: demo smoke run, train → checkpoint → resume → evaluate, argument and I/O errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from stn_numba import cli, experiments, io

TINY = ["--train-limit", "48", "--test-limit", "40", "--batch-size", "16"]
# Hand-counted from the recipe: conv 9×9 (1→32), conv 7×7 (32→32), then linear 32·5·5 → 10 on the
# 42×42 canvas or 32·2·2 → 10 on the transformer's 28×28 output; the localisation net has conv 5×5
# (1→20), conv 5×5 (20→20), linear 20·4·4 → 50 and the regressor 50 → 6.
CONVOLUTIONS = (32 * 81 + 32) + (32 * 32 * 49 + 32)
CNN_PARAMS = CONVOLUTIONS + (800 * 10 + 10)
ST_CNN_PARAMS = CONVOLUTIONS + (128 * 10 + 10) + (20 * 25 + 20) + (20 * 20 * 25 + 20) + (320 * 50 + 50) + (50 * 6 + 6)


def _run(capsys, *argv):
    """main(argv) in this process; returns (exit status, stdout, stderr)."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _metrics(directory):
    with open(directory / experiments.METRICS) as file:
        return [json.loads(line) for line in file]


def _without_timings(record):
    return {k: v for k, v in record.items() if "seconds" not in k and k != "images_per_second"}


def _assert_png(path):
    image = pytest.importorskip("matplotlib.image").imread(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.ndim == 3 and min(image.shape[:2]) > 100
    assert image[..., :3].std() > 0.05, f"{path.name} is blank"


def test_quick_demo_writes_a_report_and_figures(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    status, out, err = _run(capsys, "demo", "--quick", "--out", tmp_path)
    assert status == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["distortion"] == "RTS" and report["epochs"] == 1 and report["quick"] is True
    assert (report["train_digits"], report["test_digits"]) == experiments.QUICK_DIGITS
    assert set(report["models"]) == {"cnn", "st-cnn"}
    assert report["models"]["cnn"]["params"] == CNN_PARAMS
    assert report["models"]["st-cnn"]["params"] == ST_CNN_PARAMS
    for name, result in report["models"].items():
        assert 0 <= result["test_error_pct"] <= 100, name
        assert result["train_seconds"] > 0 and result["images_per_second"] > 0, name
        assert [r["epoch"] for r in result["history"]] == [1]
        assert result["history"][0]["images"] == experiments.QUICK_DIGITS[0]
    assert report["machine"]["logical_cpus"] >= 1 and report["machine"]["numba_threads"] >= 1
    assert report["total_seconds"] > 0
    _assert_png(tmp_path / "transformed.png")
    _assert_png(tmp_path / "curves.png")
    assert "test error" in out and "st-cnn" in out and "report.json" in out
    assert "Traceback" not in err


def test_train_checkpoint_resume_evaluate_round_trip(tmp_path, capsys, monkeypatch):
    """An interrupted run resumed from its checkpoint ends bitwise equal to an uninterrupted one."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    status, out, err = _run(capsys, "train", "--model", "st-cnn", "--epochs", 2, "--out", straight, *TINY)
    assert status == 0, err
    assert "test error" in out and "checkpoint" in out

    def interrupt(line):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:       # Ctrl-C right after the first epoch's checkpoint
        patch.setattr(cli, "_echo", interrupt)
        status, _, err = _run(capsys, "train", "--model", "st-cnn", "--epochs", 2, "--out", resumed, *TINY)
    assert status == 130 and "interrupted" in err and "Traceback" not in err
    assert [r["epoch"] for r in _metrics(resumed)] == [1]
    assert int(io.load(resumed / experiments.CHECKPOINT)["epoch"]) == 1

    status, _, err = _run(capsys, "train", "--resume", "--out", resumed)   # settings come from the checkpoint
    assert status == 0, err
    expected, actual = io.load(straight / experiments.CHECKPOINT), io.load(resumed / experiments.CHECKPOINT)
    assert int(actual["epoch"]) == 2
    for key, value in expected["model"].items():
        np.testing.assert_array_equal(actual["model"][key], value, err_msg=key)
    for key, value in expected["optimizer"]["state"].items():
        np.testing.assert_array_equal(actual["optimizer"]["state"][key]["momentum_buffer"],
                                      value["momentum_buffer"], err_msg=key)
    assert [_without_timings(r) for r in _metrics(resumed)] == [_without_timings(r) for r in _metrics(straight)]

    status, out, err = _run(capsys, "evaluate", resumed / experiments.CHECKPOINT, "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["epoch"] == 2 and result["distortion"] == "RTS" and result["test_digits"] == 40
    assert result["test_error_pct"] == _metrics(resumed)[-1]["test_error_pct"]
    status, out, _ = _run(capsys, "evaluate", resumed / experiments.CHECKPOINT)
    assert status == 0 and "st-cnn (affine) after 2 epochs on RTS: test error" in out


def test_a_finished_run_resumes_to_the_same_result(tmp_path, capsys):
    status, _, err = _run(capsys, "train", "--model", "cnn", "--epochs", 1, "--out", tmp_path, *TINY)
    assert status == 0, err
    before = (tmp_path / experiments.METRICS).read_text()
    status, out, err = _run(capsys, "train", "--resume", "--out", tmp_path)
    assert status == 0, err
    assert (tmp_path / experiments.METRICS).read_text() == before
    assert "cnn on RTS: test error" in out


@pytest.mark.parametrize("argv,message", [
    ([], "the following arguments are required: COMMAND"),
    (["fly"], "invalid choice: 'fly'"),
    (["train"], "the following arguments are required: --out"),
    (["train", "--out", "x", "--distortion", "Q"], "argument --distortion: invalid choice: 'Q'"),
    (["train", "--out", "x", "--model", "mlp"], "argument --model: invalid choice"),
    (["train", "--out", "x", "--transform", "rigid"], "argument --transform: invalid choice"),
    (["train", "--out", "x", "--epochs", "0"], "--epochs: expected a positive integer, got '0'"),
    (["train", "--out", "x", "--lr", "nan"], "--lr: expected a positive number, got 'nan'"),
    (["train", "--out", "x", "--batch-size", "many"], "--batch-size: expected a positive integer"),
    (["demo", "--epochs", "-3"], "--epochs: expected a positive integer, got '-3'"),
    (["evaluate"], "the following arguments are required: CHECKPOINT"),
    (["evaluate", "c.npz", "--distortion", "RST"], "invalid choice: 'RST'"),
])
def test_bad_arguments_print_usage_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    _, err = capsys.readouterr()
    assert exit_info.value.code == 2
    assert err.startswith("usage: stn-numba") and message in err and "Traceback" not in err


def test_python_dash_m_entry_point():
    bad = subprocess.run([sys.executable, "-m", "stn_numba", "train", "--out", "x", "--model", "mlp"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("usage: stn-numba") and "Traceback" not in bad.stderr
    good = subprocess.run([sys.executable, "-m", "stn_numba", "--help"], capture_output=True, text=True, timeout=120)
    assert good.returncode == 0 and "demo" in good.stdout and "evaluate" in good.stdout


def _assert_one_line_error(status, err, command, *fragments):
    assert status == 1
    assert err.startswith(f"stn-numba {command}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_unwritable_output_directory_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    status, _, err = _run(capsys, "train", "--out", blocker / "run", *TINY)
    _assert_one_line_error(status, err, "train", str(blocker))
    status, _, err = _run(capsys, "demo", "--quick", "--out", blocker)
    _assert_one_line_error(status, err, "demo", str(blocker))


def test_resume_and_overwrite_mistakes_are_one_line_errors(tmp_path, capsys):
    status, _, err = _run(capsys, "train", "--resume", "--out", tmp_path / "empty")
    _assert_one_line_error(status, err, "train", "nothing to resume")
    status, _, err = _run(capsys, "train", "--model", "cnn", "--epochs", 1, "--out", tmp_path, *TINY)
    assert status == 0, err
    status, _, err = _run(capsys, "train", "--model", "cnn", "--epochs", 1, "--out", tmp_path, *TINY)
    _assert_one_line_error(status, err, "train", "already holds a checkpoint", "--resume")
    status, _, err = _run(capsys, "train", "--resume", "--epochs", 3, "--out", tmp_path)
    _assert_one_line_error(status, err, "train", "cannot resume", "epochs=3 (checkpoint: 1)")
    status, _, err = _run(capsys, "evaluate", tmp_path / experiments.CHECKPOINT, "--distortion", "R")
    _assert_one_line_error(status, err, "evaluate", "takes 42×42 images", "R makes 28×28")


def test_missing_corrupt_and_foreign_checkpoints_are_one_line_errors(tmp_path, capsys):
    status, _, err = _run(capsys, "evaluate", tmp_path / "nope.npz")
    _assert_one_line_error(status, err, "evaluate", "does not exist")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    status, _, err = _run(capsys, "evaluate", corrupt)
    _assert_one_line_error(status, err, "evaluate", "corrupt")
    foreign = tmp_path / "foreign.npz"
    io.save({"weights": np.zeros(3)}, foreign)
    status, _, err = _run(capsys, "evaluate", foreign)
    _assert_one_line_error(status, err, "evaluate", "not a stn-numba training checkpoint")
