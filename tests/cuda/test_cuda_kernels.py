"""Every CUDA op against its CPU twin, which tests/ checks against the loop reference and torch.

Each mode x padding_mode x align_corners x 4-D/5-D x dtype; the atomic and the
deterministic input gradient; the non-finite coordinate rule.
"""

import numpy as np
import pytest

import stn_numba
from cuda_cases import bits, host, random_case
from sampler_cases import ALIGN, COMBO_ARGS, DTYPES, LEAN_COMBOS
from tolerances import tolerances

# Under the simulator the kernels run as Python on NumPy scalars, which warn where compiled code silently
# makes a NaN (Inf - Inf while reflecting an infinite coordinate, which the non-finite rule then discards).
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in scalar subtract:RuntimeWarning")


def run_both(cuda, function, arrays, *args, **options):
    """``function(*arrays, *args)`` on host arrays and on device copies of them:
    (CPU result, CUDA result on the host)."""
    cpu = function(*arrays, *args, **options)
    gpu = function(*(cuda.to_device(a) for a in arrays), *args, **options)
    if isinstance(cpu, tuple):
        return cpu, tuple(None if g is None else host(g) for g in gpu)
    return cpu, host(gpu)


# ---------------------------------------------------------------- affine_grid
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("size", [(2, 1, 3, 5), (2, 1, 2, 3, 4), (1, 1, 1, 1)], ids=["2d", "3d", "1x1"])
def test_affine_grid_matches_cpu(rng, cuda, size, align_corners, dtype):
    dim = len(size) - 2
    theta = rng.standard_normal((size[0], dim, dim + 1)).astype(dtype)
    cpu, gpu = run_both(cuda, stn_numba.affine_grid, [theta], size=size, align_corners=align_corners)
    np.testing.assert_allclose(gpu, cpu, **tolerances(dtype, "rounding"))
    grad_grid = rng.standard_normal(cpu.shape).astype(dtype)
    cpu, gpu = run_both(cuda, stn_numba.affine_grid_backward, [grad_grid], size=size, align_corners=align_corners)
    np.testing.assert_allclose(gpu, cpu, **tolerances(dtype, "rounding"))


@pytest.mark.parametrize("size", [(2, 1, 40, 45), (1, 1, 3, 20, 40)], ids=["2d", "3d"])
def test_affine_grid_backward_over_several_reduction_passes(rng, cuda, size):
    """1800 and 2400 points: three passes of the 32-way reduction tree, bitwise repeatable."""
    dim = len(size) - 2
    grad_grid = rng.standard_normal((size[0], *size[2:], dim))
    expected = stn_numba.affine_grid_backward(grad_grid, size)
    device_grad = cuda.to_device(grad_grid)
    first = host(stn_numba.affine_grid_backward(device_grad, size))
    np.testing.assert_allclose(first, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(bits(host(stn_numba.affine_grid_backward(device_grad, size))), bits(first))


# ---------------------------------------------------------------- grid_sample
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(COMBO_ARGS, LEAN_COMBOS)
def test_grid_sample_matches_cpu(rng, cuda, dim, mode, padding_mode, align_corners, dtype):
    input, grid, grad_output = random_case(rng, dim, dtype)
    args = (mode, padding_mode, align_corners)
    cpu, gpu = run_both(cuda, stn_numba.grid_sample, [input, grid], *args)
    np.testing.assert_allclose(gpu, cpu, **tolerances(dtype, "rounding"))
    expected = stn_numba.grid_sample_backward(grad_output, input, grid, *args)
    on_device = [cuda.to_device(a) for a in (grad_output, input, grid)]
    for deterministic in (False, True):
        grad_input, grad_grid = stn_numba.grid_sample_backward(*on_device, *args, deterministic=deterministic)
        np.testing.assert_allclose(host(grad_input), expected[0], err_msg="grad_input", **tolerances(dtype, "rounding"))
        np.testing.assert_allclose(host(grad_grid), expected[1], err_msg="grad_grid", **tolerances(dtype, "rounding"))


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("dim", [2, 3])
def test_grad_grid_alone(rng, cuda, dim, deterministic):
    input, grid, grad_output = random_case(rng, dim, np.float64)
    expected = stn_numba.grid_sample_backward(grad_output, input, grid, input_requires_grad=False)
    got = stn_numba.grid_sample_backward(*(cuda.to_device(a) for a in (grad_output, input, grid)),
                                         input_requires_grad=False, deterministic=deterministic)
    assert expected[0] is None and got[0] is None
    np.testing.assert_allclose(host(got[1]), expected[1], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- determinism
def crowded_case(rng, dim, mode, dtype):
    """Many points on few pixels: long segments in the deterministic scatter, including points whose
    taps share a pixel (clipped to the border)."""
    shape = (1, 2) + (3,) * dim
    points = rng.uniform(-1.6, -0.2, (1,) + (6,) * dim + (dim,))
    input = rng.standard_normal(shape)
    grad_output = rng.standard_normal((1, 2) + (6,) * dim)
    return input.astype(dtype), points.astype(dtype), grad_output.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim, mode", [(2, "bilinear"), (2, "bicubic"), (3, "bilinear"), (2, "nearest")])
def test_deterministic_grad_input_is_bitwise_repeatable(rng, cuda, dim, mode, dtype):
    input, grid, grad_output = crowded_case(rng, dim, mode, dtype)
    args = (mode, "border", False)
    expected = stn_numba.grid_sample_backward(grad_output, input, grid, *args)[0]
    on_device = [cuda.to_device(a) for a in (grad_output, input, grid)]
    runs = [host(stn_numba.grid_sample_backward(*on_device, *args, deterministic=True)[0]) for _ in range(3)]
    for run in runs:
        np.testing.assert_array_equal(bits(run), bits(runs[0]))
    np.testing.assert_allclose(runs[0], expected, **tolerances(dtype, "rounding"))


def test_deterministic_sum_does_not_depend_on_the_record_order(rng, cuda):
    """The final pass sorts each pixel's records by key: any slot order the atomics hand out gives
    the same bits, the sum in key order."""
    from stn_numba._cuda import launch, sampling

    taps, records = 4, 40
    keys = rng.choice(25 * taps, records, replace=False).astype(np.int64)
    weights = rng.uniform(0.1, 1.0, records).astype(np.float32)
    grad_output = rng.standard_normal((1, 3, 25)).astype(np.float32) * np.float32(1e3)
    offsets = np.array([0, 17, records], dtype=np.int64)  # two pixels: 17 and 23 records

    def gather(order):
        grad_source = cuda.device_array((1, 3, 2), dtype=np.float32)
        launch(sampling.gather_taps, 2, 0)(cuda.to_device(grad_output), cuda.to_device(offsets),
                                            cuda.to_device(keys[order]), cuda.to_device(weights[order]),
                                            taps, grad_source)
        return host(grad_source)

    # which records a pixel holds is fixed; only their order within the segment may change
    segments = [np.arange(0, 17), np.arange(17, records)]
    results = [gather(np.concatenate([rng.permutation(s) for s in segments])) for _ in range(4)]
    for result in results:
        np.testing.assert_array_equal(bits(result), bits(results[0]))
    for pixel, segment in enumerate(segments):
        in_key_order = segment[np.argsort(keys[segment])]
        for c in range(3):
            total = np.float32(0)
            for r in in_key_order:
                total = np.float32(total + grad_output[0, c, keys[r] // taps] * weights[r])
            np.testing.assert_allclose(results[0][0, c, pixel], total, rtol=1e-6)


def test_exclusive_scan(rng, cuda):
    """The scan behind the segment offsets, over several levels of chunks (exact: integers)."""
    from stn_numba._cuda import sampling

    for size in (1, 255, 256, 257, 70_000):
        values = rng.integers(0, 17, size).astype(np.int64)
        offsets = cuda.device_array(size + 1, dtype=np.int64)
        sampling.exclusive_scan(cuda.to_device(values), offsets, 0)
        np.testing.assert_array_equal(host(offsets), np.concatenate([[0], np.cumsum(values)]))


# ---------------------------------------------------------------- the non-finite rule
def nonfinite_case(rng, dim, dtype):
    """Points with NaN, ±Inf and huge components; an input with an infinite pixel."""
    values = [np.nan, np.inf, -np.inf, 1e38, -1e38, 3e9, 0.3]
    points = []
    for axis in range(dim):
        p = rng.uniform(-0.8, 0.8, (len(values), dim))
        p[:, axis] = values
        points.append(p)
    with np.errstate(over="ignore"):
        grid = np.concatenate(points).reshape((1, -1) + (1,) * (dim - 1) + (dim,)).astype(dtype)
    input = rng.standard_normal((1, 2) + (4,) * dim).astype(dtype)
    grad_output = rng.standard_normal((1, 2) + grid.shape[1:-1]).astype(dtype)
    return input, grid, grad_output


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(COMBO_ARGS, LEAN_COMBOS)
def test_nonfinite_rule_matches_cpu(rng, cuda, dim, mode, padding_mode, align_corners, dtype):
    input, grid, grad_output = nonfinite_case(rng, dim, dtype)
    args = (mode, padding_mode, align_corners)
    nan_points = np.isnan(grid).any(axis=-1)[0]
    cpu, gpu = run_both(cuda, stn_numba.grid_sample, [input, grid], *args)
    assert np.isfinite(gpu).all()
    assert not gpu[:, :, nan_points].any()
    np.testing.assert_allclose(gpu, cpu, **tolerances(dtype, "rounding"))
    expected = stn_numba.grid_sample_backward(grad_output, input, grid, *args)
    on_device = [cuda.to_device(a) for a in (grad_output, input, grid)]
    for deterministic in (False, True):
        grad_input, grad_grid = (host(g) for g in stn_numba.grid_sample_backward(
            *on_device, *args, deterministic=deterministic))
        assert np.isfinite(grad_input).all() and np.isfinite(grad_grid).all()
        assert not grad_grid[0][nan_points].any()
        np.testing.assert_allclose(grad_input, expected[0], **tolerances(dtype, "rounding"))
        np.testing.assert_allclose(grad_grid, expected[1], **tolerances(dtype, "rounding"))


@pytest.mark.parametrize("deterministic", [False, True])
def test_infinite_pixel_reaches_only_the_points_that_read_it(cuda, deterministic):
    """Zero-weight taps are skipped, as on the CPU: 0 * Inf never makes a NaN."""
    input = np.zeros((1, 1, 3, 3))
    input[0, 0, 1, 1] = np.inf
    # pixel centres (align_corners=True): the centre reads the Inf pixel, the corner does not
    grid = np.array([[[[0.0, 0.0], [-1.0, -1.0]]]])
    grad_output = np.ones((1, 1, 1, 2))
    output = host(stn_numba.grid_sample(cuda.to_device(input), cuda.to_device(grid), align_corners=True))
    assert output[0, 0, 0, 0] == np.inf and output[0, 0, 0, 1] == 0.0
    grad_input, _ = stn_numba.grid_sample_backward(*(cuda.to_device(a) for a in (grad_output, input, grid)),
                                                   align_corners=True, deterministic=deterministic)
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = expected[0, 0, 0, 0] = 1.0
    np.testing.assert_array_equal(host(grad_input), expected)
