"""``stn-numba table1`` on a tiny MNIST folder: the table files, skipping finished cells, resuming, errors."""

import gzip
import json

import numpy as np
import pytest

from stn_numba import cli, experiments, table1
from stn_numba.data import mnist

TINY = ["--epochs", "1", "--batch-size", "32"]


def _idx(array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes(), mtime=0)


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """An MNIST folder of 96 training and 48 test digits of the bundled subset, as IDX .gz files."""
    images, labels, is_test, _ = mnist.read_bundled()
    directory = tmp_path_factory.mktemp("mnist")
    for stem, part in (("train", ~is_test), ("t10k", is_test)):
        count = 96 if stem == "train" else 48
        (directory / f"{stem}-images-idx3-ubyte.gz").write_bytes(_idx(images[part][:count]))
        (directory / f"{stem}-labels-idx1-ubyte.gz").write_bytes(_idx(labels[part][:count]))
    return directory


def _run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _read(path):
    return json.loads(path.read_text())


def _without_timings(record):
    return {k: v for k, v in record.items() if "seconds" not in k and k != "images_per_second"}


def _metrics(directory):
    return [_without_timings(json.loads(line)) for line in (directory / experiments.METRICS).read_text().splitlines()]


def _one_line_error(status, err, *fragments):
    assert status == 1 and err.startswith("stn-numba table1: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_a_small_table_writes_json_md_figure_and_skips_finished_cells(tmp_path, capsys, mnist_dir):
    out = tmp_path / "table"
    argv = ["table1", "--mnist-dir", mnist_dir, "--out", out, "--distortions", "R", "--models", "cnn,st-cnn-aff",
            *TINY]
    status, stdout, err = _run(capsys, *argv)
    assert status == 0, err
    errors = _read(out / "table1.json")
    assert list(errors) == ["R"] and list(errors["R"]) == ["cnn", "st-cnn-aff"]
    for value in errors["R"].values():
        assert isinstance(value, float) and 0 <= value <= 100
    for model in ("cnn", "st-cnn-aff"):
        history = [json.loads(line) for line in (out / "R" / model / experiments.METRICS).read_text().splitlines()]
        assert len(history) == 1 and history[0]["images"] == 96
        assert errors["R"][model] == round(history[0]["test_error_pct"], 2)

    md = (out / "table1.md").read_text()
    assert "Partial table: 2 of 16 cells finished" in md
    assert f"| CNN | **{errors['R']['cnn']:.2f}** (1.2) | — (0.8) | — (1.5) | — (1.4) |" in md
    assert f"| ST-CNN Aff | **{errors['R']['st-cnn-aff']:.2f}** (0.7) | — (0.5) |" in md
    assert "| ST-CNN TPS | — (0.7) | — (0.5) | — (0.8) | — (1.1) |" in md
    assert "1 epoch per cell" in md and "batch 32" in md
    assert "96 training and 48 test digits: **not the full MNIST" in md

    cells = _read(out / "table1_cells.json")
    assert set(cells["cells"]) == {"R/cnn", "R/st-cnn-aff"} and cells["recipe"]["epochs"] == 1
    assert cells["cells"]["R/st-cnn-aff"]["config"]["transform"] == "affine"
    assert (cells["train_digits"], cells["test_digits"]) == (96, 48)
    assert "[2/2] R st-cnn-aff: test error" in stdout
    assert "ST-CNN Aff" in stdout and "(0.7)" in stdout and "Traceback" not in err

    pytest.importorskip("matplotlib")
    assert (out / "R" / table1.FIGURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"](R/{table1.FIGURE})" in md and "RTS/" not in md

    # The same command again: both cells are finished, nothing is trained or rewritten.
    checkpoints = {m: (out / "R" / m / experiments.CHECKPOINT).read_bytes() for m in ("cnn", "st-cnn-aff")}
    (out / "R" / table1.FIGURE).unlink()                   # a lost figure is drawn again
    status, stdout, err = _run(capsys, *argv)
    assert status == 0, err
    assert "[1/2] R cnn: finished earlier" in stdout and "[2/2] R st-cnn-aff: finished earlier" in stdout
    assert "epoch   1/1" not in stdout
    for model, content in checkpoints.items():
        assert (out / "R" / model / experiments.CHECKPOINT).read_bytes() == content
    assert _read(out / "table1.json") == errors
    assert (out / "R" / table1.FIGURE).exists()

    # Later calls may leave the recipe out (it is the table's) but must not contradict it.
    status, _, err = _run(capsys, "table1", "--mnist-dir", mnist_dir, "--out", out, "--distortions", "R",
                          "--models", "cnn")
    assert status == 0, err
    status, _, err = _run(capsys, "table1", "--mnist-dir", mnist_dir, "--out", out, "--epochs", "2")
    _one_line_error(status, err, "holds a table made with other settings", "epochs=2 (the table's: 1)",
                    "another --out")
    other = tmp_path / "other-mnist"
    other.symlink_to(mnist_dir)
    status, _, err = _run(capsys, "table1", "--mnist-dir", other, "--out", out)
    _one_line_error(status, err, "--mnist-dir", str(other))


def test_an_interrupted_cell_resumes_to_the_uninterrupted_result(tmp_path, capsys, monkeypatch, mnist_dir):
    argv = ["--mnist-dir", mnist_dir, "--distortions", "RTS", "--models", "cnn", "--epochs", "2",
            "--batch-size", "32"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    status, _, err = _run(capsys, "table1", "--out", straight, *argv)
    assert status == 0, err

    def interrupt(line):
        if "epoch   1/2" in line:                        # Ctrl-C right after the first epoch's checkpoint
            raise KeyboardInterrupt
        print(line)

    with monkeypatch.context() as patch:
        patch.setattr(cli, "_echo", interrupt)
        status, _, err = _run(capsys, "table1", "--out", resumed, *argv)
    assert status == 130 and "interrupted; the same command continues" in err and "Traceback" not in err
    assert _read(resumed / "table1.json") == {"RTS": {"cnn": None}}
    assert "Partial table: 0 of 16" in (resumed / "table1.md").read_text()

    status, stdout, err = _run(capsys, "table1", "--out", resumed, *argv)
    assert status == 0, err
    assert "[1/1] RTS cnn: resuming after epoch 1 of 2" in stdout
    assert _metrics(resumed / "RTS" / "cnn") == _metrics(straight / "RTS" / "cnn")
    assert _read(resumed / "table1.json") == _read(straight / "table1.json")
    assert _read(resumed / "table1_cells.json")["cells"]["RTS/cnn"]["status"] == "done"


def test_a_cell_of_other_settings_is_refused_before_training(tmp_path, capsys, mnist_dir):
    out = tmp_path / "table"
    status, _, err = _run(capsys, "train", "--out", out / "R" / "cnn", "--distortion", "R", "--model", "cnn",
                          "--epochs", "1", "--mnist-dir", mnist_dir, "--train-limit", "16", "--test-limit", "8")
    assert status == 0, err
    status, _, err = _run(capsys, "table1", "--mnist-dir", mnist_dir, "--out", out, *TINY)
    _one_line_error(status, err, str(out / "R" / "cnn"), "holds a run of other settings", "batch_size=32")
    assert not (out / "R" / "st-cnn-aff").exists() and not (out / table1.RECIPE_FILE).exists()


def test_missing_mnist_files_are_a_one_line_error_and_write_nothing(tmp_path, capsys):
    status, _, err = _run(capsys, "table1", "--mnist-dir", tmp_path, "--out", tmp_path / "table")
    _one_line_error(status, err, "holds no MNIST train labels file")
    assert not (tmp_path / "table" / table1.RECIPE_FILE).exists()


@pytest.mark.parametrize("argv,message", [
    (["table1", "--out", "x"], "the following arguments are required: --mnist-dir"),
    (["table1", "--mnist-dir", "m"], "the following arguments are required: --out"),
    (["table1", "--mnist-dir", "m", "--out", "x", "--distortions", "R,Q"],
     "argument --distortions: invalid choice 'Q' (choose from R, RTS, P, E)"),
    (["table1", "--mnist-dir", "m", "--out", "x", "--distortions", "TC"], "--distortions: invalid choice 'TC'"),
    (["table1", "--mnist-dir", "m", "--out", "x", "--distortions", ""], "--distortions: invalid choice ''"),
    (["table1", "--mnist-dir", "m", "--out", "x", "--models", "cnn,st-cnn"],
     "argument --models: invalid choice 'st-cnn' (choose from cnn, st-cnn-aff, st-cnn-proj, st-cnn-tps)"),
    (["table1", "--mnist-dir", "m", "--out", "x", "--epochs", "0"], "--epochs: expected a positive integer, got '0'"),
    (["table1", "--mnist-dir", "m", "--out", "x", "--lr", "-1"], "--lr: expected a positive number, got '-1'"),
])
def test_bad_arguments_print_usage_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    _, err = capsys.readouterr()
    assert exit_info.value.code == 2
    assert err.startswith("usage: stn-numba table1") and message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("stn-numba table1: error: ")


def test_the_paper_numbers():
    """Table 1 of the paper, MNIST part: CNN and the three ST-CNNs on R, RTS, P, E."""
    rows = {"cnn": (1.2, 0.8, 1.5, 1.4), "st-cnn-aff": (0.7, 0.5, 0.8, 1.2),
            "st-cnn-proj": (0.8, 0.6, 0.8, 1.3), "st-cnn-tps": (0.7, 0.5, 0.8, 1.1)}
    assert {m: tuple(table1.PAPER[d][m] for d in table1.DISTORTIONS) for m in table1.MODELS} == rows
    assert {m: table1.MODELS[m] for m in rows} == {"cnn": ("cnn", "affine"), "st-cnn-aff": ("st-cnn", "affine"),
                                                   "st-cnn-proj": ("st-cnn", "projective"),
                                                   "st-cnn-tps": ("st-cnn", "tps")}


def test_a_full_table_in_markdown():
    recipe = table1.DEFAULT_RECIPE
    cells = {(d, m): {"status": "done", "epochs": recipe.epochs, "epochs_done": recipe.epochs,
                      "test_error_pct": 1.0 + 0.01 * i, "train_seconds": 600.0, "eval_seconds": 75.0,
                      "images_per_second": 2000.0, "train_digits": 60000, "config": {}}
             for i, (d, m) in enumerate((d, m) for d in table1.DISTORTIONS for m in table1.MODELS)}
    md = table1.markdown(cells, recipe, (60000, 10000), figures=["R"])
    assert "Partial" not in md and "(the full MNIST)" in md and "not comparable" not in md
    assert "| ST-CNN TPS | **1.03** (0.7) | **1.07** (0.5) | **1.11** (0.8) | **1.15** (1.1) |" in md
    assert f"{recipe.epochs} epochs per cell" in md and "time of the cells so far: 3.00 h" in md
    assert "](R/transformed.png)" in md and "](RTS/" not in md
    assert table1.table(cells)["E"]["st-cnn-tps"] == 1.15


def test_without_matplotlib_the_table_is_written_without_figures(tmp_path, capsys, monkeypatch, mnist_dir):
    monkeypatch.setattr(table1, "_have_matplotlib", lambda: False)
    out = tmp_path / "table"
    status, stdout, err = _run(capsys, "table1", "--mnist-dir", mnist_dir, "--out", out, "--distortions", "P",
                               "--models", "st-cnn-aff", *TINY)
    assert status == 0, err
    assert "matplotlib is not installed: no figures" in stdout
    assert list(_read(out / "table1.json")) == ["P"] and not (out / "P" / table1.FIGURE).exists()
    assert "transformed.png" not in (out / "table1.md").read_text()
