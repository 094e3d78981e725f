"""Smoke test of the benchmark suite: ``python -m benchmarks --quick`` on tiny shapes.

It checks that the report is written and well-formed, and that every
implementation computed the same thing as torch (the sums of |output| agree),
so a broken benchmark (wrong coordinate convention, wrong op) fails here.
Timings are not checked: they mean nothing on a loaded CI machine.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
# OpenCV's fixed-point interpolation weights (1/32 steps) are coarser than float32.
CHECKSUM_TOLERANCE = {"stn_numba": 1e-5, "scipy": 1e-5, "opencv": 1e-2}


def run_benchmarks(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "benchmarks", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    process = run_benchmarks("--quick", "--rounds", "2", "--shapes", "tiny", "--out", out,
                             "--startup-families", "affine_grid 2-D")
    assert process.returncode == 0, process.stderr[-3000:]
    return out, process


def test_json_report(quick_run):
    out, _ = quick_run
    payload = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert payload["machine"]["cpu"] and payload["machine"]["threads"] == 2
    assert "numpy" in payload["machine"]["versions"]
    assert payload["copy_bandwidth"]["gb_per_s"] > 0
    assert len(payload["settings"]["cases"]) == 3
    timed = [row for row in payload["rows"] if "median_ms" in row]
    impls = {row["impl"] for row in timed}
    assert {"stn_numba", "scipy"} <= impls
    assert payload["settings"]["rounds"] == 2
    for row in timed:
        assert row["median_ms"] > 0 and row["q1_ms"] <= row["median_ms"] <= row["q3_ms"]
        assert len(row["round_medians_ms"]) == 2 and row["median_ms"] == min(row["round_medians_ms"])
        assert row["repeats"] >= 2 and row["bytes"] > 0 and row["floor_ms"] > 0
        assert row["gb_per_s"] > 0
    stn_ops = {(row["spec"], row["op"]) for row in timed if row["impl"] == "stn_numba"}
    assert len(stn_ops) >= 3 * 3  # affine_grid, grid_sample, fwd+bwd on every shape
    for row in payload["rows"]:
        if "median_ms" not in row:
            assert row["note"].startswith("n/a")
    fixed = {(row["impl"], row["op"]): row for row in payload["fixed_cost"]}
    for op in ("affine_grid", "grid_sample", "grid_sample_backward", "affine_grid_sample"):
        row = fixed[("stn_numba", op)]
        assert 0 < row["min_us"] <= row["median_us"] <= row["max_us"]


@pytest.mark.skipif(not HAS_TORCH, reason="torch is the anchor of the ratios")
def test_every_implementation_agrees_with_torch(quick_run):
    out, _ = quick_run
    payload = json.loads((out / "results.json").read_text(encoding="utf-8"))
    compared = 0
    for row in payload["rows"]:
        if "median_ms" not in row or row["impl"] == "torch":
            continue
        assert row["ratio_vs_torch"] > 0
        assert row["rel_diff_vs_torch"] < CHECKSUM_TOLERANCE[row["impl"]], row
        compared += 1
    assert compared >= 9


def test_markdown_report(quick_run):
    out, process = quick_run
    payload = json.loads((out / "results.json").read_text(encoding="utf-8"))
    text = (out / "results.md").read_text(encoding="utf-8")
    assert payload["machine"]["cpu"] in text and "Memory-copy floor" in text
    table = [line for line in text.splitlines() if line.startswith("| ") and " → " in line]
    assert len(table) == len(payload["rows"])
    header = next(line for line in text.splitlines() if line.startswith("| shape |"))
    assert all(line.count("|") == header.count("|") for line in table)
    assert "| shape |" in process.stdout  # the table is printed too


def test_startup_measured(quick_run):
    out, _ = quick_run
    payload = json.loads((out / "results.json").read_text(encoding="utf-8"))
    startup = payload["startup"]
    assert "skipped" not in startup, startup.get("skipped")
    assert list(startup["cold"]["compile_s"]) == ["affine_grid 2-D"]  # the cheapest compile
    assert startup["cold"]["compile_s"]["affine_grid 2-D"] > 0
    warm = startup["warm"]
    assert warm["first_call"] == "affine_grid 2-D" and warm["import_s"] > 0 and warm["first_call_s"] > 0
    assert "first call (compile) of affine_grid 2-D" in (out / "results.md").read_text(encoding="utf-8")


def test_ratio_chart(quick_run):
    out, _ = quick_run
    text = (out / "results.md").read_text(encoding="utf-8")
    if HAS_MATPLOTLIB and HAS_TORCH:
        assert (out / "ratios.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "ratios.png" in text
    else:
        assert "Chart not drawn" in text


def test_rounds_are_merged_on_the_median_round():
    from benchmarks._sampler import merge_rounds

    def row(median, impl="stn_numba", op="grid_sample"):
        return {"impl": impl, "spec": "1x1x4x4", "op": op, "median_ms": median, "iqr_ms": median / 10}

    untimed = {"impl": "stn_numba", "spec": "1x1x4x4", "op": "bicubic", "note": "n/a"}
    rounds = [[row(3.0), row(5.0, "torch"), untimed], [row(1.0), row(4.0, "torch"), untimed],
              [row(2.0), row(6.0, "torch"), untimed]]
    merged = {(each["impl"], each["op"]): each for each in merge_rounds(rounds)}
    assert merged["stn_numba", "grid_sample"]["median_ms"] == 2.0
    assert merged["stn_numba", "grid_sample"]["iqr_ms"] == 0.2  # the median round's own spread
    assert merged["stn_numba", "grid_sample"]["round_medians_ms"] == [3.0, 1.0, 2.0]
    assert merged["torch", "grid_sample"]["median_ms"] == 5.0
    assert merged["stn_numba", "bicubic"]["note"] == "n/a"
    assert merge_rounds(rounds[:2])[0]["median_ms"] == 1.0  # an even count: the lower middle


def test_serving_worker_answers_rows_and_reports_its_death():
    """A serving sampler worker times the row it is asked for, answers {} for an op its
    implementation lacks, and a worker that dies is a WorkerError naming its last words."""
    from benchmarks._harness import Worker, WorkerError

    worker = Worker("benchmarks._sampler", ["--impl", "stn_numba", "--threads", 1, "--quick"], threads=1,
                    timeout=300)
    try:
        assert "threads_applied" in worker.answer()
        row = worker.request({"spec": "2x1x5x6:4x3", "op": "grid_sample"})
        assert (row["impl"], row["spec"], row["op"]) == ("stn_numba", "2x1x5x6:4x3", "grid_sample")
        assert row["median_ms"] > 0 and row["repeats"] >= 2 and row["checksum"][0] > 0
        assert worker.request({"spec": "2x1x5x6:4x3", "op": "no such op"}) == {}
        with pytest.raises(WorkerError, match="exited with 1 and no result"):
            worker.request({"spec": "not a shape", "op": "grid_sample"})
    finally:
        worker.close()


def test_bad_option_is_refused():
    process = run_benchmarks("--shapes", "3x3", timeout=60)
    assert process.returncode == 2
    assert "--shapes" in process.stderr and "'3x3'" in process.stderr


@pytest.mark.parametrize("model", ["tutorial", "cnn"])
def test_training_step_benchmark_runs(model):
    """``bench_train_step --quick`` times each implementation it can import (torch is optional)."""
    process = subprocess.run([sys.executable, "-m", "benchmarks.bench_train_step", "--quick", "--model", model,
                              "--batch", "4", "--size", "28", "--impl", "stn_numba"],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    assert f"{'Tutorial STN' if model == 'tutorial' else 'Table-1 CNN'} training step, batch 4" in process.stdout
    assert "| stn_numba |" in process.stdout


def test_demo_recipe_benchmark_runs_both_libraries_on_the_same_digits():
    """``bench_demo --quick``: one epoch of the demo's CNN recipe on 300 digits with each library."""
    pytest.importorskip("torch")
    process = subprocess.run([sys.executable, "-m", "benchmarks.bench_demo", "--quick"],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "The demo's CNN recipe (RTS, batch 64, 1 epochs)" in process.stdout
    rows = [line for line in process.stdout.splitlines() if line.startswith(("| stn_numba |", "| torch |"))]
    assert len(rows) == 2 and rows[1].endswith("| 1.00× |")
