"""Memory: no growth over many calls, no copy where a view works, int64 index arithmetic.

What the public functions copy (docs/reliability.md): an array argument that is
not C-contiguous, native-endian, aligned and writeable is copied once before
the kernel runs; a C-contiguous, native-endian, aligned, writeable one reaches
the kernel as it is (a view at most). Results are always new arrays.
"""

import json
import subprocess
import sys
import textwrap
import tracemalloc

import numba
import numpy as np
import pytest

import reference
import stn_numba
from stn_numba import _codes, _coords, _device

# ----------------------------------------------------------------- RSS growth
ITERATIONS = 1000
RSS_GROWTH_LIMIT_KIB = 2048

RSS_SCRIPT = textwrap.dedent("""
    import json, resource
    import numpy as np
    import stn_numba

    rng = np.random.default_rng(0)
    image = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    volume = rng.standard_normal((1, 2, 3, 4, 5))
    theta = (np.eye(2, 3) + 0.1 * rng.standard_normal((2, 2, 3))).astype(np.float32)
    theta_3d = np.eye(3, 4)[None] + 0.1 * rng.standard_normal((1, 3, 4))
    control = stn_numba.tps_control_points((3, 3))[None].astype(np.float32)

    def step():
        grid = stn_numba.affine_grid(theta, image.shape)
        output = stn_numba.grid_sample(image, grid, "bicubic", "reflection")
        _, grad_grid = stn_numba.grid_sample_backward(output, image, grid, "bicubic", "reflection")
        stn_numba.affine_grid_backward(grad_grid, image.shape)
        grid_3d = stn_numba.affine_grid(theta_3d, volume.shape)
        output_3d = stn_numba.grid_sample(volume, grid_3d)
        _, grad_grid_3d = stn_numba.grid_sample_backward(output_3d, volume, grid_3d)
        stn_numba.affine_grid_backward(grad_grid_3d, volume.shape)
        fused = stn_numba.affine_grid_sample(image, theta, image.shape, "bilinear", "border")
        stn_numba.affine_grid_sample_backward(fused, image, theta, image.shape, "bilinear", "border")
        tps = stn_numba.tps_grid(control, (1, 3, 8, 8), (3, 3))
        stn_numba.tps_grid_backward(tps, (1, 3, 8, 8), (3, 3))

    def rss_kib():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() // 1024

    for _ in range(50):  # load the kernels, fill the allocators' pools
        step()
    peak, current = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rss_kib()
    for _ in range({iterations}):
        step()
    print(json.dumps({{"peak_before": peak, "peak_after": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "rss_before": current, "rss_after": rss_kib()}}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm; ru_maxrss in KiB")
def test_many_forward_backward_iterations_do_not_grow_memory():
    done = subprocess.run([sys.executable, "-c", RSS_SCRIPT.format(iterations=ITERATIONS)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rss = json.loads(done.stdout)
    growth = rss["peak_after"] - rss["peak_before"]
    print(f"{ITERATIONS} iterations: peak RSS grew {growth} KiB, RSS {rss['rss_after'] - rss['rss_before']} KiB "
          f"(from {rss['peak_before']} KiB)")
    assert growth < RSS_GROWTH_LIMIT_KIB, rss
    assert rss["rss_after"] - rss["rss_before"] < RSS_GROWTH_LIMIT_KIB, rss


# ---------------------------------------------------------------- no copies
def _ops(rng):
    """(name, call, arguments): every public array op with small C-contiguous float64 arguments."""
    image = rng.standard_normal((2, 3, 5, 6))
    grid = rng.uniform(-1.2, 1.2, (2, 4, 3, 2))
    theta = np.eye(2, 3) + 0.1 * rng.standard_normal((2, 2, 3))
    homography = np.eye(3) + 0.1 * rng.standard_normal((2, 3, 3))
    tps_theta = stn_numba.tps_control_points((3, 3))[None] + 0.1 * rng.standard_normal((2, 9, 2))
    params = np.array([[1.0, 0.3, 0.1, -0.2], [0.8, -0.1, 0.0, 0.2]])
    size = (2, 3, 4, 3)
    return [
        ("grid_sample", stn_numba.grid_sample, {"input": image, "grid": grid}),
        ("grid_sample_backward", stn_numba.grid_sample_backward,
         {"grad_output": rng.standard_normal((2, 3, 4, 3)), "input": image, "grid": grid}),
        ("affine_grid", lambda theta: stn_numba.affine_grid(theta, size), {"theta": theta}),
        ("affine_grid_backward", lambda grad_grid: stn_numba.affine_grid_backward(grad_grid, size),
         {"grad_grid": grid}),
        ("projective_grid", lambda theta: stn_numba.projective_grid(theta, size), {"theta": homography}),
        ("projective_grid_backward", lambda grad_grid, theta: stn_numba.projective_grid_backward(
            grad_grid, theta, size), {"grad_grid": grid, "theta": homography}),
        ("tps_grid", lambda theta: stn_numba.tps_grid(theta, size, (3, 3)), {"theta": tps_theta}),
        ("tps_grid_backward", lambda grad_grid: stn_numba.tps_grid_backward(grad_grid, size, (3, 3)),
         {"grad_grid": grid}),
        ("similarity_grid", lambda params: stn_numba.similarity_grid(params, size), {"params": params}),
        ("similarity_grid_backward", lambda grad_grid, params: stn_numba.similarity_grid_backward(
            grad_grid, params, size), {"grad_grid": grid, "params": params}),
        ("attention_grid", lambda params: stn_numba.attention_grid(params, size),
         {"params": np.ascontiguousarray(params[:, [0, 2, 3]])}),
        ("affine_grid_sample", lambda input, theta: stn_numba.affine_grid_sample(input, theta, size),
         {"input": image, "theta": theta}),
        ("affine_grid_sample_backward", lambda grad_output, input, theta: stn_numba.affine_grid_sample_backward(
            grad_output, input, theta, size),
         {"grad_output": rng.standard_normal(size), "input": image, "theta": theta}),
    ]


OP_NAMES = [name for name, _, _ in _ops(np.random.default_rng(0))]
COPIED_LAYOUTS = ["unaligned", "strided", "negative_strides", "fortran", "read_only", "byte_swapped"]


@pytest.fixture
def kernel_arguments(monkeypatch):
    """The array arguments of every CPU kernel call, recorded by wrapping the kernels."""
    seen = []

    def spy_on(kernel):
        def spy(*args):
            seen.extend(a for a in args if isinstance(a, np.ndarray))
            return kernel(*args)
        return spy

    backend = _device._cpu_backend()
    monkeypatch.setattr(backend, "kernels", backend.kernels.map(spy_on))
    return seen


@pytest.mark.parametrize("layout", ["contiguous"] + COPIED_LAYOUTS)
@pytest.mark.parametrize("op", OP_NAMES)
def test_inputs_are_copied_only_when_they_must_be(rng, layout_variants, kernel_arguments, op, layout):
    """C-contiguous writeable native arrays reach the kernels in place; other layouts are copied;
    results never alias arguments and arguments are never written to."""
    _, call, arguments = next(entry for entry in _ops(rng) if entry[0] == op)
    given = {name: array if layout == "contiguous" else layout_variants(array)[layout]
             for name, array in arguments.items()}
    before = {name: array.copy() for name, array in given.items()}
    results = call(**given)
    results = [r for r in (results if isinstance(results, tuple) else (results,)) if r is not None]
    assert kernel_arguments, "no kernel ran"
    for name, array in given.items():
        in_place = any(np.shares_memory(array, seen) for seen in kernel_arguments)
        assert in_place == (layout == "contiguous"), f"{name}: reached the kernel in place: {in_place}"
        np.testing.assert_array_equal(array, before[name], err_msg=f"{name} was written to")
        for result in results:
            assert not np.shares_memory(result, array), f"a result aliases {name}"


def test_a_large_contiguous_input_is_not_copied():
    """Sampling 4 points of an 8 MB image allocates far less than the image (tracemalloc sees NumPy's
    allocations); the same image in Fortran order is copied once."""
    image = np.zeros((1, 1, 1024, 1024))
    grid = np.zeros((1, 2, 2, 2))
    stn_numba.grid_sample(image, grid)  # load the kernel first
    peaks = {}
    for name, array in (("contiguous", image), ("fortran", np.asfortranarray(image))):
        tracemalloc.start()
        stn_numba.grid_sample(array, grid)
        stn_numba.grid_sample_backward(np.ones((1, 1, 2, 2)), array, grid, input_requires_grad=False)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks["contiguous"] < image.nbytes // 8, peaks
    assert peaks["fortran"] >= image.nbytes, peaks


# ------------------------------------------------------ int64 index arithmetic
@numba.njit(cache=False)
def _index_helpers(x, i, size, padding_mode, align_corners):
    return (_coords.floor_index(x, size), _coords.nearest_index(x, size), _coords.reflect_index(i, size, align_corners),
            _coords.pad_index(i, size, padding_mode, align_corners))


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("i", [2**31 + 3, -(2**31) - 5, 2**32 + 1, 2**40 + 7, -(2**40) - 2])
def test_index_helpers_compute_in_int64(i, align_corners):
    """Integer taps far beyond int32 (a coordinate at the clamp bound of a huge axis gives such taps),
    against the reference's per-tap padding."""
    size = 5
    x = float(i) + 0.5  # exactly representable in float64
    floor, nearest, reflected, padded = _index_helpers(x, i, size, _codes.ZEROS, align_corners)
    assert floor == i
    assert nearest == round(x)  # a tie: to even
    assert reflected == reference.pad_tap(i, size, "reflection", align_corners)
    assert padded == (reference.pad_tap(i, size, "border", align_corners), False)
    assert _index_helpers(x, i, size, _codes.BORDER, align_corners)[3] == padded[:1] + (True,)


HUGE_SHAPE = (1, 1, 2**16 + 1, 2**15 + 1)  # 2**31 + 98305 pixels, 8.6 GB of float32


def test_flat_indices_beyond_int32_read_the_right_pixels():
    """An image of more than 2**31 pixels: sampling pixels past flat index 2**31 reads them, not a wrapped one.

    np.zeros maps untouched pages lazily, so only the pages written and read
    here use memory; skipped where the system refuses the 8.6 GB mapping.
    """
    try:
        image = np.zeros(HUGE_SHAPE, np.float32)
    except MemoryError:
        pytest.skip("the system refuses an 8.6 GB lazy mapping")
    height, width = HUGE_SHAPE[2:]
    pixels = [(height - 1, width - 1, 7.0), (height - 2, 1000, 3.0), (12345, 678, 5.0)]  # (row, column, value)
    assert (height - 2) * width + 1000 > 2**31
    for row, column, value in pixels:
        image[0, 0, row, column] = value
    # align_corners=True: pixel i sits at 2 i / (size - 1) - 1, exact in float32 for these sizes
    grid = np.array([[[[2 * c / (width - 1) - 1, 2 * r / (height - 1) - 1] for r, c, _ in pixels]]], np.float32)
    expected = np.array([value for _, _, value in pixels], np.float32)
    for mode in ("nearest", "bilinear", "bicubic"):
        output = stn_numba.grid_sample(image, grid, mode, "zeros", True)
        np.testing.assert_array_equal(output[0, 0, 0], expected, err_msg=mode)
    # On a pixel the right derivative is taken: d/dx = (next pixel - this one) * (size - 1) / 2, next = 0 here.
    _, grad_grid = stn_numba.grid_sample_backward(np.ones((1, 1, 1, 3), np.float32), image, grid, "bilinear",
                                                  "zeros", True, input_requires_grad=False)
    scale = np.array([(width - 1) / 2, (height - 1) / 2], np.float32)
    np.testing.assert_allclose(grad_grid[0, 0], -expected[:, None] * scale, rtol=1e-6)


# ---------------------------------------------------------------- freed memory kept for reuse (training loops)
FAULTS_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from stn_numba._memory import reuse_freed_memory

    applied = [reuse_freed_memory(), reuse_freed_memory()] if sys.argv[1] == "reuse" else []

    def faults_of_a_fresh_16_mib_array():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        np.ones(4 * 1024 * 1024, np.float32)          # allocated, every page touched, freed
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults_of_a_fresh_16_mib_array()
    print(json.dumps({"applied": applied, "faults": faults_of_a_fresh_16_mib_array()}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_reuse_freed_memory_stops_page_faults_on_a_repeated_large_allocation():
    def run(mode):
        done = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT, mode], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    default, reused = run("default"), run("reuse")
    assert reused["applied"] == [True, False]          # applied once per process
    # By default glibc maps such an array afresh each time: at least one fault per page, and
    # NumPy asks for 2 MiB (huge) pages, so at least 8.
    assert default["faults"] >= 16 // 2, default
    assert reused["faults"] <= 2, reused


# ---------------------------------------------------------------- the tape's reuse pool
POOLED = (512, 256)  # float32: 512 KiB, above POOL_SMALLEST


def test_the_pool_hands_a_buffer_out_again_only_when_no_array_refers_to_it():
    from stn_numba import _memory

    _memory.empty_cache()
    first = _memory.empty(POOLED, np.float32)
    address = first.ctypes.data
    view = first[3:5].reshape(-1)                       # a view keeps the buffer in use
    del first
    second = _memory.empty(POOLED, np.float32)
    assert second.ctypes.data != address
    del view
    third = _memory.empty((POOLED[0] * POOLED[1],), np.int32)   # same size, another dtype and shape
    assert third.ctypes.data == address
    assert third.shape == (POOLED[0] * POOLED[1],) and third.dtype == np.int32 and third.flags.c_contiguous
    small = _memory.empty((4, 4), np.float64)           # small arrays are plain NumPy ones
    assert small.base is None


def test_the_pool_keeps_at_most_its_limit_and_drops_the_least_recently_used(monkeypatch):
    from stn_numba import _memory

    _memory.empty_cache()
    n = POOLED[0] * POOLED[1] * 4
    monkeypatch.setattr(_memory, "POOL_BYTES", 2 * n)
    pool = _memory._pool()
    a, b, c = _memory.empty((n // 2,), np.uint8), _memory.empty((n // 2,), np.uint8), _memory.empty((n,), np.uint8)
    plain = _memory.empty((n // 4,), np.uint8)           # full, all in use: a plain array
    assert pool.nbytes == 2 * n and plain.base is None
    address_b, address_c = b.ctypes.data, c.ctypes.data
    del a, b, c
    a = _memory.empty((n // 2,), np.uint8)              # the first idle buffer of its size again
    quarter = _memory.empty((n // 4,), np.uint8)        # room made by dropping b's, used least recently
    assert pool.nbytes == n // 2 + n + n // 4
    assert [buffer.ctypes.data for buffer in pool.buffers[n // 2]] == [a.ctypes.data] != [address_b]
    assert [buffer.ctypes.data for buffer in pool.buffers[n]] == [address_c]
    assert not np.shares_memory(a, quarter)


def test_each_thread_has_its_own_pool_and_empty_cache_empties_it():
    import threading

    from stn_numba import _memory

    _memory.empty_cache()
    address = _memory.empty(POOLED, np.float32).ctypes.data   # idle again at once
    other = {}

    def allocate():
        array = _memory.empty(POOLED, np.float32)
        other["address"], other["pool bytes"] = array.ctypes.data, _memory._pool().nbytes

    worker = threading.Thread(target=allocate)
    worker.start()
    worker.join()
    assert other["address"] != address and other["pool bytes"] == POOLED[0] * POOLED[1] * 4
    assert _memory._pool().nbytes == POOLED[0] * POOLED[1] * 4
    _memory.empty_cache()
    assert _memory._pool().nbytes == 0


def test_a_layer_output_the_caller_keeps_is_never_overwritten_by_the_next_step():
    from stn_numba import nn
    from stn_numba.tensor import Tensor, manual_seed

    manual_seed(0)
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.MaxPool2d(2), nn.ReLU())
    inputs = [Tensor(rng.standard_normal((16, 1, 34, 34)).astype(np.float32), requires_grad=True)
              for _ in range(3)]
    kept = []
    for x in inputs:
        out = model(x)
        out.backward(np.ones(out.shape, np.float32))
        kept.append((out.data, out.data.copy(), x.grad, x.grad.copy()))
    for output, output_copy, grad, grad_copy in kept:
        assert np.array_equal(output, output_copy) and np.array_equal(grad, grad_copy)
    assert not np.shares_memory(kept[0][0], kept[1][0])
