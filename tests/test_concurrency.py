"""Concurrency: Python threads and forked processes give bitwise the results of serial calls.

stn_numba runs on Numba's TBB threading layer where the ``tbb`` package is
installed (``stn_numba/_threading.py``), the only layer that is safe both with
several Python threads and after ``fork``. The tests check that layer in this
process and, in subprocesses, what happens on the fallbacks a user may end up
with: workqueue (stn_numba serialises its kernels, so threads work) and GNU
OpenMP (threads work; a forked child that runs a kernel is aborted by Numba
with a clear message rather than hanging).
"""

import concurrent.futures
import importlib.metadata
import json
import multiprocessing
import os
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest

import stn_numba
from stn_numba import _threading
from stn_numba._cpu import conv

THREADS = 8
WORKLOADS = 16


def workload(seed):
    """Forward and backward of every op on tiny random arrays: a list of result arrays."""
    rng = np.random.default_rng(seed)
    dtype = (np.float32, np.float64)[seed % 2]
    image = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
    volume = rng.standard_normal((1, 2, 3, 4, 5)).astype(dtype)
    theta = (np.eye(2, 3) + 0.3 * rng.standard_normal((2, 2, 3))).astype(dtype)
    theta_3d = (np.eye(3, 4) + 0.3 * rng.standard_normal((1, 3, 4))).astype(dtype)
    results = []
    grid = stn_numba.affine_grid(theta, (2, 3, 4, 7))
    grid_3d = stn_numba.affine_grid(theta_3d, (1, 2, 2, 3, 4))
    for mode in ("bilinear", "nearest", "bicubic"):
        output = stn_numba.grid_sample(image, grid, mode, "reflection")
        results += [output, *stn_numba.grid_sample_backward(np.ones_like(output), image, grid, mode, "reflection")]
    output = stn_numba.grid_sample(volume, grid_3d, "bilinear", "border", True)
    results += [grid, grid_3d, output,
                *stn_numba.grid_sample_backward(np.cos(output), volume, grid_3d, "bilinear", "border", True),
                stn_numba.affine_grid_backward(np.sin(grid), (2, 3, 4, 7)),
                stn_numba.affine_grid_backward(np.sin(grid_3d), (1, 2, 2, 3, 4))]
    fused = stn_numba.affine_grid_sample(image, theta, (2, 3, 4, 7), "bicubic", "border")
    results += [fused, *stn_numba.affine_grid_sample_backward(np.sin(fused), image, theta, (2, 3, 4, 7), "bicubic",
                                                             "border")]
    homography = np.concatenate([theta, np.array([[[0.1, -0.1, 1.0]]] * 2, dtype)], axis=1)
    results += [stn_numba.projective_grid(homography, (2, 1, 3, 4)),
                stn_numba.projective_grid_backward(np.sin(grid[:, :3, :4]), homography, (2, 1, 3, 4))]
    control = stn_numba.tps_control_points((3, 3))
    tps_theta = (control + 0.1 * rng.standard_normal((2, 9, 2))).astype(dtype)
    results += [stn_numba.tps_grid(tps_theta, (2, 1, 4, 7), (3, 3)),
                stn_numba.tps_grid_backward(np.sin(grid), (2, 1, 4, 7), (3, 3))]
    params = np.array([[0.9, 0.3, 0.1, -0.2], [1.1, -0.5, 0.0, 0.3]], dtype)
    results += [stn_numba.similarity_grid(params, (2, 1, 4, 7)),
                stn_numba.similarity_grid_backward(np.sin(grid), params, (2, 1, 4, 7)),
                stn_numba.attention_grid(params[:, [0, 2, 3]], (2, 1, 4, 7)),
                stn_numba.attention_grid_backward(np.sin(grid), (2, 1, 4, 7))]
    weight = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    geometry = conv.Geometry.of(image.shape, weight.shape[2:], (1, 2), (1, 0), (1, 1))
    features = conv.conv2d_forward(image, weight, None, geometry, block_rows=2)
    results += [features, *conv.conv2d_backward(np.sin(features), image, weight, geometry, block_rows=2)]
    pool = conv.Geometry.of(image.shape, (2, 2), (2, 2), (1, 1), (1, 1))
    pooled, taps = conv.max_pool(image, pool)
    results += [pooled, taps, conv.max_pool_backward(np.cos(pooled), taps, pool)]
    return results


def serial_results():
    return [workload(seed) for seed in range(WORKLOADS)]


def threaded_results(repeats=3):
    """Every workload ``repeats`` times, spread over THREADS threads that start together."""
    barrier = threading.Barrier(THREADS)

    def run(thread):
        barrier.wait()
        return [(seed, workload(seed)) for _ in range(repeats) for seed in range(thread, WORKLOADS, THREADS)]

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        return [item for batch in pool.map(run, range(THREADS)) for item in batch]


def assert_bitwise_equal(got, expected):
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.dtype == b.dtype and a.shape == b.shape, f"result {i}"
        assert a.tobytes() == b.tobytes(), f"result {i} differs"


def blas_threads():
    from threadpoolctl import threadpool_info

    return sorted(library["num_threads"] for library in threadpool_info() if library["user_api"] == "blas")


def forked_results(seeds, timeout=120):
    """``workload`` of ``seeds`` in a multiprocessing pool of 2 forked processes."""
    with multiprocessing.get_context("fork").Pool(2) as pool:
        return pool.map_async(workload, seeds).get(timeout)


def forked_results_or_error(seeds, timeout=120):
    """As `forked_results`, but a dead worker gives BrokenProcessPool instead of a wait for the lost task."""
    context = multiprocessing.get_context("fork")
    try:
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
            return list(pool.map(workload, seeds, timeout=timeout))
    except Exception as error:
        return type(error).__name__


# ------------------------------------------------------------ this process
def test_the_tbb_package_gives_the_tbb_layer():
    try:
        importlib.metadata.version("tbb")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the tbb package is not installed: Numba uses its fallback layer")
    if os.environ.get("NUMBA_THREADING_LAYER", "default") != "default":
        pytest.skip("the user chose a threading layer")
    assert _threading.threading_layer() == "tbb"
    assert numba.config.THREADING_LAYER == "default", "stn_numba must not change numba.config"


def test_threads_give_the_serial_results():
    expected = serial_results()
    blas_limits = blas_threads()
    for seed, results in threaded_results():
        assert_bitwise_equal(results, expected[seed])
    assert blas_threads() == blas_limits        # the convolutions' single-threaded BLAS is undone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork start method")
def test_forked_pool_after_use_gives_the_serial_results():
    if _threading.threading_layer() == "omp":
        pytest.skip("GNU OpenMP is not fork-safe (see test_fallback_layers)")
    expected = serial_results()[:4]  # the kernels run in this process before the fork
    for got, want in zip(forked_results(range(4)), expected):
        assert_bitwise_equal(got, want)


def test_nothing_is_loaded_once_numba_has_chosen_a_layer():
    _threading.threading_layer()
    assert _threading.load_pip_tbb() is None


# --------------------------------------------------------- other layers
LAYER_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import test_concurrency as t
expected = t.serial_results()
report = {{"layer": t._threading.threading_layer()}}
report["threads"] = all(t.assert_bitwise_equal(r, expected[s]) is None for s, r in t.threaded_results(1))
forked = t.forked_results_or_error(range(2), timeout=60)
report["fork"] = forked if isinstance(forked, str) else all(
    t.assert_bitwise_equal(g, w) is None for g, w in zip(forked, expected))
print(json.dumps(report))
"""


def run_with_layer(layer):
    """Run the threads and fork checks in a fresh process with NUMBA_THREADING_LAYER=``layer``."""
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
    script = LAYER_SCRIPT.format(tests=os.path.dirname(__file__))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork start method; GNU OpenMP")
def test_fallback_layers():
    """workqueue: threads and fork both work (stn_numba serialises its kernels).

    omp (GNU OpenMP), the user's explicit choice here: threads work; a forked
    child that runs a kernel is terminated by Numba with a message naming the
    problem (so the pool breaks instead of hanging). docs/reliability.md
    tells users to install tbb or use the "forkserver" or "spawn" start method.
    """
    workqueue, _ = run_with_layer("workqueue")
    assert workqueue == {"layer": "workqueue", "threads": True, "fork": True}
    omp, stderr = run_with_layer("omp")
    assert omp["layer"] == "omp" and omp["threads"] is True
    assert omp["fork"] == "BrokenProcessPool"
    assert "fork() called from a process already using GNU OpenMP" in stderr


def test_single_threaded_blas_limits_nested_uses_and_restores_the_limits():
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS the context limits, loaded before `before`)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        with _threading.single_threaded_blas():
            with _threading.single_threaded_blas():
                assert set(blas_threads()) == {1}
            assert set(blas_threads()) == {1}
        assert blas_threads() == before

