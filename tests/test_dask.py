"""stn_numba.dask: batch-chunked and spatially chunked warps and their
gradients against the in-memory functions, the dask-image drop-in against
dask-image and scipy.ndimage, zarr in and out, and a real LocalCluster that
loses a worker mid-computation.

Arrays are small (a few thousand output points per call) so the whole file
stays well under a minute and a half on 2 cores. Skipped without dask.
"""

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import stn_numba  # noqa: E402
import stn_numba.dask as sd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HAS_DASK_IMAGE = importlib.util.find_spec("dask_image") is not None
HAS_ZARR = importlib.util.find_spec("zarr") is not None
SYNC = {"scheduler": "sync"}


def _theta(rng, n, spatial, dtype):
    """Rotations (by angles that hit no pixel ties), scales 0.8-1.25 and shifts."""
    theta = np.zeros((n, spatial, spatial + 1))
    for item in range(n):
        angle = rng.uniform(-0.5, 0.5)
        rotation = np.eye(spatial)
        rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
        theta[item, :, :spatial] = rotation * rng.uniform(0.8, 1.25, spatial)
        theta[item, :, spatial] = rng.uniform(-0.3, 0.3, spatial)
    return theta.astype(dtype)


def _compute(*arrays):
    return dask.compute(*arrays, **SYNC)


def _dependencies(array, key):
    """The input chunks that the task of output chunk ``key`` reads."""
    from dask.core import get_dependencies

    return get_dependencies(dict(array.__dask_graph__()), (array.name,) + key)


# ------------------------------------------------------------ import
def test_import_stn_numba_does_not_import_dask():
    code = "import sys, stn_numba; assert 'dask' not in sys.modules, sorted(m for m in sys.modules if 'dask' in m)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


# ------------------------------------------------------------ batch-chunked (item 1)
@pytest.mark.parametrize("spatial, dtype", [(2, np.float32), (3, np.float64)])
def test_batch_chunked_forward_is_bitwise_the_in_memory_call(rng, spatial, dtype):
    n, c = 7, 3
    in_shape, out_shape = ((12, 14), (11, 13)) if spatial == 2 else ((6, 7, 8), (5, 6, 6))
    images = rng.random((n, c) + in_shape).astype(dtype)
    theta = _theta(rng, n, spatial, dtype)
    size = (n, c) + out_shape
    grid = stn_numba.affine_grid(theta, size)
    x = da.from_array(images, chunks=(2, 2) + in_shape)
    fused = sd.affine_grid_sample(x, theta, size, padding_mode="border")
    sampled = sd.grid_sample(x, da.from_array(grid, chunks=(3,) + grid.shape[1:]), padding_mode="border")
    assert fused.chunks == ((2, 2, 2, 1), (2, 1)) + tuple((s,) for s in out_shape)
    fused, sampled = _compute(fused, sampled)
    expected = stn_numba.affine_grid_sample(images, theta, size, padding_mode="border")
    np.testing.assert_array_equal(fused, expected)
    np.testing.assert_array_equal(sampled, stn_numba.grid_sample(images, grid, padding_mode="border"))
    # NumPy in, dask out
    np.testing.assert_array_equal(sd.affine_grid_sample(images, theta, size, padding_mode="border").compute(**SYNC),
                                  expected)


def test_batch_chunked_backward_is_bitwise_the_in_memory_call(rng):
    n, c, shape = 9, 3, (12, 14)
    images = rng.random((n, c) + shape)
    theta = _theta(rng, n, 2, np.float64)
    size = (n, c) + shape
    grid = stn_numba.affine_grid(theta, size)
    grad_output = rng.standard_normal(size)
    x = da.from_array(images, chunks=(2, 1) + shape)
    go = da.from_array(grad_output, chunks=(2, 1) + shape)
    grad_input, grad_theta = sd.affine_grid_sample_backward(go, x, theta, size)
    gi_grid, grad_grid = sd.grid_sample_backward(go, x, da.from_array(grid, chunks=(2, 12, 14, 2)), "nearest")
    assert grad_input.chunks == x.chunks  # back to the input's chunks
    grad_input, grad_theta, gi_grid, grad_grid = _compute(grad_input, grad_theta, gi_grid, grad_grid)
    expected_input, expected_theta = stn_numba.affine_grid_sample_backward(grad_output, images, theta, size)
    np.testing.assert_array_equal(grad_input, expected_input)
    np.testing.assert_array_equal(grad_theta, expected_theta)
    expected_input, expected_grid = stn_numba.grid_sample_backward(grad_output, images, grid, "nearest")
    np.testing.assert_array_equal(gi_grid, expected_input)
    np.testing.assert_array_equal(grad_grid, expected_grid)
    _, only_theta = sd.affine_grid_sample_backward(go, x, theta, size, input_requires_grad=False)
    assert _ is None
    np.testing.assert_array_equal(only_theta.compute(**SYNC), expected_theta)


# ------------------------------------------------------------ spatially chunked (items 2, 3)
SPATIAL_CASES = [
    (2, "bilinear", "zeros", False),
    (2, "bilinear", "reflection", True),
    (2, "bilinear", "reflection", False),
    (2, "bicubic", "border", False),
    (2, "nearest", "zeros", True),
    (3, "bilinear", "border", True),
    (3, "bilinear", "reflection", False),
]


def _volume_case(rng, spatial, dtype=np.float64):
    if spatial == 2:
        in_shape, out_shape, in_chunks, out_chunks = (26, 31), (29, 27), (7, 8), (8, 10)
    else:
        in_shape, out_shape, in_chunks, out_chunks = (9, 11, 12), (10, 9, 11), (4, 5, 5), (4, 4, 5)
    images = rng.random((2, 2) + in_shape).astype(dtype)
    theta = _theta(rng, 2, spatial, dtype)
    theta[1, :, spatial] += 0.9  # the second image reaches well past an edge
    return images, theta, (2, 2) + out_shape, in_chunks, out_chunks


@pytest.mark.parametrize("spatial, mode, padding, align", SPATIAL_CASES)
def test_spatially_chunked_forward_is_bitwise_the_in_memory_call(rng, spatial, mode, padding, align):
    images, theta, size, in_chunks, out_chunks = _volume_case(rng, spatial)
    x = da.from_array(images, chunks=(1, 2) + in_chunks)
    expected = stn_numba.affine_grid_sample(images, theta, size, mode, padding, align)
    fused = sd.affine_grid_sample(x, theta, size, mode, padding, align, output_chunks=out_chunks)
    grid = stn_numba.affine_grid(theta, size, align)
    sampled = sd.grid_sample(x, da.from_array(grid, chunks=(1,) + out_chunks + (spatial,)), mode, padding, align)
    assert fused.chunks[2:] == sampled.chunks[2:] == da.core.normalize_chunks(out_chunks, size[2:])
    fused, sampled = _compute(fused, sampled)
    np.testing.assert_array_equal(fused, expected)
    np.testing.assert_array_equal(sampled, expected)


def test_an_output_chunk_reads_only_the_input_chunks_under_it(rng):
    images = rng.random((1, 1, 40, 40))
    theta = np.array([[[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]])  # zoom into the centre
    out = sd.affine_grid_sample(da.from_array(images, chunks=(1, 1, 8, 8)), theta, (1, 1, 40, 40),
                                output_chunks=(8, 8))
    # the output's top-left 8x8 chunk samples input pixels 9.5..13.5: input chunks (1, 1) (8..15) only
    assert len(_dependencies(out, (0, 0, 0, 0))) == 1
    assert len(_dependencies(out, (0, 0, 2, 2))) <= 4
    np.testing.assert_array_equal(out.compute(**SYNC), stn_numba.affine_grid_sample(images, theta, (1, 1, 40, 40)))


def test_thin_pieces_of_input_chunks_are_cut_and_larger_ones_read_whole(rng):
    images = rng.random((1, 1, 64, 64))
    # a shift by 1.5 pixels: an output chunk reads 3-pixel strips of two neighbouring chunks (48 of their
    # 256 pixels: whole chunks) and the 3x3 corner of a third (9 pixels: a cut)
    theta = np.array([[[1.0, 0.0, 3.0 / 64], [0.0, 1.0, 3.0 / 64]]])
    x = da.from_array(images, chunks=(1, 1, 16, 16))
    out = sd.affine_grid_sample(x, theta, (1, 1, 64, 64), output_chunks=(16, 16))
    from dask.core import get_dependencies

    graph = dict(out.__dask_graph__())
    pieces = {key: get_dependencies(graph, key) for key in graph if key[0] == out.name}
    cut = {dep for deps in pieces.values() for dep in deps if dep[0] != x.name}
    whole = {dep for deps in pieces.values() for dep in deps if dep[0] == x.name}
    assert cut and whole
    assert all(math.prod(np.shape(dask.get(graph, dep))) <= 16 * 16 * sd._CUT_SHARE for dep in cut)
    np.testing.assert_array_equal(out.compute(**SYNC), stn_numba.affine_grid_sample(images, theta, (1, 1, 64, 64)))
    # the same pieces of a 2-D image, whose tasks add the batch and channel axes themselves
    from scipy import ndimage

    image = da.from_array(images[0, 0], chunks=16)
    shifted = sd.affine_transform(image, np.eye(2), (1.5, 1.5), mode="grid-constant")
    graph = dict(shifted.__dask_graph__())
    assert any(key[0] not in (shifted.name, image.name) for key in graph)  # a cut
    np.testing.assert_allclose(shifted.compute(**SYNC), ndimage.affine_transform(
        images[0, 0], np.eye(2), (1.5, 1.5), order=1, mode="grid-constant"), rtol=0, atol=1e-12)


@pytest.mark.parametrize("spatial, mode, padding, align", [SPATIAL_CASES[1], SPATIAL_CASES[5]])
def test_spatially_chunked_backward(rng, spatial, mode, padding, align):
    images, theta, size, in_chunks, out_chunks = _volume_case(rng, spatial)
    grad_output = rng.standard_normal(size)
    grid = stn_numba.affine_grid(theta, size, align)
    x = da.from_array(images, chunks=(1, 1) + in_chunks)
    go = da.from_array(grad_output, chunks=(1, 1) + out_chunks)
    results = []
    for _ in range(2):  # deterministic: the same bits twice
        gi_fused, grad_theta = sd.affine_grid_sample_backward(go, x, theta, size, mode, padding, align)
        gi_grid, grad_grid = sd.grid_sample_backward(go, x, da.from_array(grid, chunks=(1,) + out_chunks + (spatial,)),
                                                     mode, padding, align)
        results.append(_compute(gi_fused, grad_theta, gi_grid, grad_grid))
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)
    gi_fused, grad_theta, gi_grid, grad_grid = results[0]
    assert gi_fused.shape == images.shape and grad_theta.shape == theta.shape
    expected_input, expected_theta = stn_numba.affine_grid_sample_backward(grad_output, images, theta, size, mode,
                                                                           padding, align)
    np.testing.assert_allclose(gi_fused, expected_input, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_theta, expected_theta, rtol=1e-10, atol=1e-10)
    expected_input, expected_grid = stn_numba.grid_sample_backward(grad_output, images, grid, mode, padding, align)
    np.testing.assert_allclose(gi_grid, expected_input, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(grad_grid, expected_grid)  # per output point: bitwise


def test_grid_with_nan_and_far_points_in_a_spatially_chunked_input(rng):
    images = rng.random((1, 2, 20, 22))
    grid = rng.uniform(-1.2, 1.2, (1, 9, 10, 2))
    grid[0, 0, :4] = np.nan
    grid[0, 1, 0] = [np.inf, -1e30]
    grid[0, 8, :, 0] = np.nan  # a whole chunk row NaN in x
    x = da.from_array(images, chunks=(1, 1, 6, 7))
    for padding in ("zeros", "border", "reflection"):
        got = sd.grid_sample(x, da.from_array(grid, chunks=(1, 4, 5, 2)), padding_mode=padding).compute(**SYNC)
        np.testing.assert_array_equal(got, stn_numba.grid_sample(images, grid, padding_mode=padding))


# ------------------------------------------------------------ dask-image drop-in (item 4)
def _matrix(rng, ndim):
    angle = 0.3719
    rotation = np.eye(ndim)
    rotation[-2:, -2:] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return rotation * np.array([1.0837, 0.9123, 1.0411][:ndim]), rng.uniform(-4, 4, ndim) + 0.3183


SCIPY_MODES = ["constant", "grid-constant", "nearest", "mirror", "reflect", "grid-wrap"]


@pytest.mark.parametrize("ndim", [2, 3])
def test_affine_transform_matches_scipy_and_dask_image(rng, ndim):
    import scipy.ndimage as ndi

    shape, chunks, out_shape, out_chunks = (((31, 37), (8, 9), (35, 33), (9, 10)) if ndim == 2 else
                                            ((11, 13, 12), (4, 5, 5), (12, 11, 13), (5, 4, 6)))
    image = rng.random(shape)
    matrix, offset = _matrix(rng, ndim)
    lazy = da.from_array(image, chunks=chunks)
    for mode in SCIPY_MODES:
        for order in (0, 1):
            cval = 0.0 if mode in ("constant", "grid-constant") and order else 1.75  # (the default, then not)
            got = sd.affine_transform(lazy, matrix, offset, out_shape, order, out_chunks, mode=mode, cval=cval)
            assert got.chunks == da.core.normalize_chunks(out_chunks, out_shape) and got.dtype == image.dtype
            got = got.compute(**SYNC)
            expected = ndi.affine_transform(image, matrix, offset, out_shape, order=order, mode=mode, cval=cval)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9, err_msg=f"{mode} order {order}")
            if HAS_DASK_IMAGE and mode in ("constant", "grid-constant", "nearest"):  # dask-image refuses the others
                from dask_image.ndinterp import affine_transform as dask_image_affine

                theirs = dask_image_affine(lazy, matrix, offset, out_shape, order, out_chunks, mode=mode, cval=cval)
                np.testing.assert_allclose(got, theirs.compute(**SYNC), rtol=0, atol=1e-9, err_msg=mode)


def test_affine_transform_matrix_forms_cval_and_float32(rng):
    import scipy.ndimage as ndi

    image = rng.random((30, 34))
    lazy = da.from_array(image, chunks=(8, 8))
    matrix, offset = _matrix(rng, 2)
    homogeneous = np.eye(3)
    homogeneous[:2, :2], homogeneous[:2, 2] = matrix, offset
    expected = ndi.affine_transform(image, matrix, offset, order=1, cval=2.5)  # scipy defaults to order 3
    for form in (homogeneous, homogeneous[:2]):
        got = sd.affine_transform(lazy, form, offset=99.0, mode="constant", cval=2.5).compute(**SYNC)
        np.testing.assert_allclose(got, expected, atol=1e-9)  # offset ignored, as in scipy
    diagonal = np.array([0.8731, 1.1237])
    np.testing.assert_allclose(sd.affine_transform(lazy, diagonal, 1.37, (25, 41), mode="nearest").compute(**SYNC),
                               ndi.affine_transform(image, diagonal, 1.37, (25, 41), order=1, mode="nearest"),
                               atol=1e-9)
    single = image.astype(np.float32)
    got = sd.affine_transform(da.from_array(single, chunks=(8, 8)), matrix, offset).compute(**SYNC)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ndi.affine_transform(single.astype(np.float64), matrix, offset, order=1), atol=2e-5)


def test_constant_mode_mask_by_runs_equals_the_mask_point_by_point(rng):
    for trial in range(400):
        ndim = 2 + trial % 2
        matrix = rng.normal(size=(ndim, ndim)) if trial % 3 else np.round(rng.normal(size=(ndim, ndim)) * 2) / 2
        matrix = np.eye(ndim) if trial % 7 == 0 else matrix  # exact boundary hits
        offset = rng.normal(size=ndim) * 5 if trial % 3 else np.round(rng.normal(size=ndim) * 4) / 2
        size = tuple(rng.integers(1, 20, ndim))
        shape, origin = tuple(rng.integers(1, 12, ndim)), tuple(rng.integers(-5, 20, ndim))
        by_runs, by_points = np.zeros((1, 1) + shape), np.zeros((1, 1) + shape)
        mask = sd._Mask(matrix, offset, 1.0)
        sd._apply_mask(by_runs, mask, origin, size)
        sd._apply_mask_per_point(by_points, mask, origin, size)
        np.testing.assert_array_equal(by_runs, by_points)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"mode": "wrap"}, ValueError, ["mode must be one of", "'wrap'"]),
    ({"order": 3}, ValueError, ["order must be 0", "got 3"]),
    ({"order": True}, ValueError, ["order must be 0"]),
    ({"matrix": np.eye(4)}, ValueError, ["matrix must have shape", "(4, 4)"]),
    ({"matrix": np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]])}, ValueError, ["bottom row"]),
    ({"offset": [1.0, 2.0, 3.0]}, ValueError, ["offset must be"]),
    ({"output_shape": (4,)}, ValueError, ["output_shape must be 2"]),
    ({"cval": "x"}, TypeError, ["cval must be a real number"]),
    ({"prefilter": "yes"}, TypeError, ["prefilter must be True or False"]),
])
def test_affine_transform_refuses_what_it_does_not_support(kwargs, error, words):
    arguments = {"image": da.zeros((8, 8), chunks=4), "matrix": np.eye(2)}
    arguments.update(kwargs)
    with pytest.raises(error) as info:
        sd.affine_transform(**arguments)
    for word in words:
        assert word in str(info.value)


def test_bad_arguments_name_the_argument():
    x = da.zeros((2, 1, 8, 8), chunks=(1, 1, 4, 4))
    theta = np.zeros((2, 2, 3))
    with pytest.raises(TypeError, match="image must have dtype float32 or float64"):
        sd.affine_transform(da.zeros((8, 8), dtype=np.uint8, chunks=4), np.eye(2))
    with pytest.raises(ValueError, match="image must be 2-D or 3-D"):
        sd.affine_transform(np.zeros(5), np.eye(1))
    with pytest.raises(ValueError, match="theta must have shape"):
        sd.affine_grid_sample(x, np.zeros((3, 2, 3)), (2, 1, 8, 8))
    with pytest.raises(ValueError, match="output_chunks must"):
        sd.affine_grid_sample(x, theta, (2, 1, 8, 8), output_chunks=(4, 4, 4))
    with pytest.raises(ValueError, match="grid must have shape"):
        sd.grid_sample(x, da.zeros((2, 4, 4, 3), chunks=2))
    with pytest.raises(TypeError, match="share one dtype"):
        sd.grid_sample(x, da.zeros((2, 4, 4, 2), dtype=np.float32, chunks=2))
    with pytest.raises(ValueError, match="grad_output must have shape"):
        sd.grid_sample_backward(da.zeros((2, 1, 3, 3), chunks=2), x, np.zeros((2, 4, 4, 2)))
    with pytest.raises(ValueError, match="grad_output must have shape"):
        sd.affine_grid_sample_backward(np.zeros((2, 1, 8, 7)), x, theta, (2, 1, 8, 8))
    with pytest.raises(TypeError, match="input_requires_grad must be True or False"):
        sd.grid_sample_backward(da.zeros((2, 1, 4, 4), chunks=2), x, np.zeros((2, 4, 4, 2)), input_requires_grad=1)
    with pytest.raises(ValueError, match="mode must be one of"):
        sd.grid_sample(x, np.zeros((2, 4, 4, 2)), mode="cubic")
    with pytest.raises(ValueError, match="unknown"):
        sd.grid_sample(x[x[:, 0, 0, 0] > 0], np.zeros((2, 4, 4, 2)))
    with pytest.raises(TypeError, match="NumPy chunks"):
        sd.grid_sample(x.map_blocks(lambda b: b, meta=np.ma.masked_array(np.empty((0,) * 4))),
                       np.zeros((2, 4, 4, 2)))


# ------------------------------------------------------------ out of core (item 5)
def test_memmap_input(rng, tmp_path):
    import scipy.ndimage as ndi

    data = rng.random((40, 44))
    stored = np.memmap(tmp_path / "image.raw", dtype=np.float64, mode="w+", shape=data.shape)
    stored[:] = data
    stored.flush()
    image = da.from_array(np.memmap(tmp_path / "image.raw", dtype=np.float64, mode="r", shape=data.shape),
                          chunks=(10, 11))
    matrix, offset = _matrix(rng, 2)
    expected = ndi.affine_transform(data, matrix, offset, order=1, mode="nearest")
    got = sd.affine_transform(image, matrix, offset, mode="nearest").compute(scheduler="threads")
    np.testing.assert_allclose(got, expected, atol=1e-9)
    # the memmap itself: each task reopens the file and reads its own region
    direct = np.memmap(tmp_path / "image.raw", dtype=np.float64, mode="r", shape=data.shape)
    got = sd.affine_transform(direct, matrix, offset, mode="nearest", output_chunks=(10, 11))
    assert len(dict(got.__dask_graph__())) == got.npartitions
    np.testing.assert_allclose(got.compute(scheduler="threads"), expected, atol=1e-9)


# ------------------------------------------------------------ a real cluster
@pytest.fixture(scope="module")
def client():
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=40)
    try:
        with distributed.Client(cluster) as connected:
            yield connected
    finally:
        cluster.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _peak_rss(pids, stop, peaks):
    import psutil

    processes = {pid: psutil.Process(pid) for pid in pids}
    while not stop():
        for pid, process in processes.items():
            try:
                peaks[pid] = max(peaks.get(pid, 0), process.memory_info().rss)
            except psutil.Error:
                pass
        time.sleep(0.01)


@pytest.mark.skipif(not HAS_ZARR, reason="zarr is not installed")
def test_zarr_in_zarr_out_on_a_cluster_with_bounded_worker_memory(client, rng, tmp_path):
    import threading

    import scipy.ndimage as ndi
    import zarr

    shape, chunks = (2048, 2048), (128, 192)  # 32 MiB of float64 in chunks of 192 KiB
    data = rng.random(shape)
    stored = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=shape, chunks=chunks, dtype=data.dtype)
    stored[:] = data
    matrix, offset = _matrix(rng, 2)
    expected = ndi.affine_transform(data, matrix, offset, order=0, mode="nearest")
    source = zarr.open_array(str(tmp_path / "in.zarr"), mode="r")
    # a small warp of the same store first (kernels compiled or loaded, zarr's machinery started in each
    # worker), so that the memory measured below is the warp's own
    for _ in range(2):
        sd.affine_transform(source, matrix, offset, (512, 512), order=0, mode="nearest",
                            output_chunks=chunks).to_zarr(str(tmp_path / "warm.zarr"), overwrite=True)
    pids = list(client.run(os.getpid).values())
    import psutil

    before = {pid: psutil.Process(pid).memory_info().rss for pid in pids}
    peaks, done = {}, []
    sampler = threading.Thread(target=_peak_rss, args=(pids, lambda: done, peaks))
    sampler.start()
    try:
        # zarr in (each task reads its own input region), zarr out (each task writes its chunk)
        warped = sd.affine_transform(source, matrix, offset, order=0, mode="nearest", output_chunks=chunks)
        assert len(dict(warped.__dask_graph__())) == warped.npartitions  # no task holds input chunks
        warped.to_zarr(str(tmp_path / "out.zarr"))
    finally:
        done.append(True)
        sampler.join()
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[:], expected)
    growth = max(peaks[pid] - before[pid] for pid in pids)
    print(f"peak RSS growth per worker: {growth / 2**20:.1f} MiB (whole image {data.nbytes / 2**20:.0f} MiB, "
          f"chunks {np.prod(chunks) * 8 / 2**10:.0f} KiB)")
    assert growth < data.nbytes // 4, "a worker held more than a quarter of the image: was it gathered?"


def test_numba_threads_follow_the_workers_share_of_cores(client):
    hosts = {}
    for worker in client.scheduler_info()["workers"].values():
        hosts[worker["host"]] = hosts.get(worker["host"], 0) + worker["nthreads"]
    cores = client.submit(sd._usable_cores, pure=False).result()
    expected = max(1, cores // sum(hosts.values()))
    assert client.submit(sd.numba_threads, hosts, pure=False).result() == expected
    assert sd.numba_threads({"elsewhere": 1}) >= 1
    with dask.config.set({"stn_numba.numba_threads": 1}):
        assert sd.numba_threads() == 1


def _slow(block):
    time.sleep(0.15)
    return block


def test_a_worker_killed_mid_computation_changes_nothing(client, rng):
    images = rng.random((1, 1, 48, 48))
    theta = _theta(rng, 1, 2, np.float64)
    size = (1, 1, 48, 48)
    expected = stn_numba.affine_grid_sample(images, theta, size, padding_mode="reflection")
    x = da.from_array(images, chunks=(1, 1, 12, 12)).map_blocks(_slow, dtype=images.dtype)
    warped = sd.affine_grid_sample(x, theta, size, padding_mode="reflection", output_chunks=(12, 12)).persist()
    futures = distributed.futures_of(warped)
    distributed.wait(futures, return_when="FIRST_COMPLETED")
    assert not all(future.done() for future in futures), "the computation ended before a worker could be killed"
    victim = next(iter(client.run(os.getpid).values()))
    os.kill(victim, signal.SIGKILL)
    np.testing.assert_array_equal(warped.compute(), expected)
    assert victim not in client.run(os.getpid).values()


# ------------------------------------------------------------ benchmark smoke
def test_bench_dask_quick(tmp_path):
    process = subprocess.run([sys.executable, "-m", "benchmarks.bench_dask", "--quick", "--out", str(tmp_path)],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads((tmp_path / "results.json").read_text())
    assert {row["case"] for row in report["rows"]} == {"image", "volume", "batch"}
    for row in report["rows"]:
        assert row["stn_numba_s"] > 0 and row["max_abs_difference"] < 1e-3
        assert all(peak > 0 for peak in row["peak_rss_mib"].values())
    assert (tmp_path / "results.md").exists()
