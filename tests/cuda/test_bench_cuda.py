"""Smoke tests of benchmarks/bench_cuda.py: without a GPU it stops cleanly; under the simulator it
runs end to end (times meaningless) and writes a well-formed report."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args):
    environment = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), environment.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "benchmarks.bench_cuda", "--quick", *map(str, args)],
                          capture_output=True, text=True, env=environment, cwd=REPO_ROOT, timeout=600)


@pytest.mark.subprocess
def test_without_a_gpu_it_says_so_and_exits_cleanly(tmp_path):
    probe = subprocess.run([sys.executable, "-c", "from numba import cuda; print(cuda.is_available())"],
                           capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"})
    if probe.stdout.strip() != "False":
        pytest.skip("this machine has a usable GPU")
    result = run_bench("--shapes", "tiny", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "nothing to measure: no CUDA GPU" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.subprocess
def test_under_the_simulator_it_writes_a_report(tmp_path):
    result = run_bench("--simulator", "--shapes", "2x1x6x6:4x5", "--impl", "cuda,cpu",
                       "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["settings"]["simulator"] and payload["device"]["name"] == "CUDA simulator"
    ops = {(row["impl"], row["op"]) for row in payload["rows"]}
    assert ops == {("cpu", "affine_grid"), ("cpu", "grid_sample"), ("cpu", "grid_sample fwd+bwd"),
                   ("cuda", "affine_grid"), ("cuda", "grid_sample"), ("cuda", "grid_sample fwd+bwd"),
                   ("cuda", "grid_sample fwd+bwd deterministic")}
    for row in payload["rows"]:
        assert row["median_ms"] > 0 and row["gb_per_s"] > 0
        if row["impl"] == "cuda":  # the GPU computed what the CPU did
            assert row["rel_diff_vs_cpu"] < 1e-5, row
    report = (tmp_path / "results.md").read_text()
    assert "CUDA SIMULATOR: these times mean nothing" in report and "| stn_numba CUDA |" in report
    assert "Chart not drawn" in report  # no torch CUDA under the simulator: no ratio to draw


@pytest.mark.subprocess
def test_replot_redraws_the_report_from_a_results_json(tmp_path):
    committed = REPO_ROOT / "benchmarks" / "results" / "cuda-nvidia-h200"
    (tmp_path / "results.json").write_bytes((committed / "results.json").read_bytes())
    result = run_bench("--replot", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "results.md").read_text()
    assert report.startswith((committed / "results.md").read_text().split("\n![")[0])  # the same text
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "ratios.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert report.rstrip().endswith("![stn_numba CUDA / torch CUDA](ratios.png)")
    else:
        assert "Chart not drawn: matplotlib is not installed" in report
