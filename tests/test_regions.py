"""Region kernels: sampling a part of a larger input (and, fused, output) gives the whole's results.

The chunked (Dask) layer relies on these to warp a huge image chunk by chunk:
`tap_extent` names the input rows and columns a chunk of points reads, and
`sample_region` / `sample_region_backward` on that part of the input must
give bitwise what the whole-array ops give (padding at the whole's edges).
"""

import numpy as np
import pytest

import stn_numba
from stn_numba._codes import MODES, PADDING_MODES
from stn_numba._cpu import sampling

# A subset of the cases (each compiles kernels of its own): every padding, every mode, both paths and dims.
CASES = [
    pytest.param(2, "bilinear", "zeros", False, id="2d-bilinear-zeros-grid"),
    pytest.param(2, "bilinear", "border", True, id="2d-bilinear-border-fused"),
    pytest.param(2, "bicubic", "reflection", False, id="2d-bicubic-reflection-grid"),
    pytest.param(3, "nearest", "border", False, id="3d-nearest-border-grid"),
    pytest.param(3, "bilinear", "reflection", True, id="3d-bilinear-reflection-fused"),
]


def whole_case(rng, spatial):
    """Whole input (N, C, *S), a grid reaching past the edges, thetas, and the output spatial size."""
    sizes = (11, 13, 12)[:spatial] if spatial == 3 else (17, 19)
    input = rng.standard_normal((2, 2) + sizes)
    out = (5, 7, 6)[:spatial] if spatial == 3 else (9, 8)
    grid = rng.uniform(-1.4, 1.4, (2,) + out + (spatial,))
    theta = np.concatenate([np.eye(spatial) * 1.2 + rng.uniform(-0.3, 0.3, (2, spatial, spatial)),
                            rng.uniform(-0.5, 0.5, (2, spatial, 1))], axis=2)
    return input, grid, theta, out


def whole_ops(input, grid, theta, out, mode, padding, fused, align):
    size = input.shape[:2] + out
    if fused:
        output = stn_numba.affine_grid_sample(input, theta, size, mode, padding, align)
        grad_output = np.cos(np.arange(output.size)).reshape(output.shape)
        grads = stn_numba.affine_grid_sample_backward(grad_output, input, theta, size, mode, padding, align)
    else:
        output = stn_numba.grid_sample(input, grid, mode, padding, align)
        grad_output = np.cos(np.arange(output.size)).reshape(output.shape)
        grads = stn_numba.grid_sample_backward(grad_output, input, grid, mode, padding, align)
    return output, grad_output, grads


@pytest.mark.parametrize("spatial, mode, padding, fused", CASES)
@pytest.mark.parametrize("align", [False, True])
def test_a_chunk_of_the_output_from_its_input_region_is_bitwise_the_whole(rng, spatial, mode, padding, fused, align):
    input, grid, theta, out = whole_case(rng, spatial)
    output, grad_output, (grad_input, grad_points) = whole_ops(input, grid, theta, out, mode, padding, fused, align)
    codes = (fused, MODES[mode], PADDING_MODES[padding], align)
    # an output chunk: the second half along the first spatial axis (and the grid's matching part)
    start = out[0] // 2
    chunk = (slice(None), slice(None), slice(start, None))
    points = theta if fused else np.ascontiguousarray(grid[:, start:])
    chunk_shape = output[chunk].shape
    whole = sampling.region_window(input.shape[2:], (0,) * spatial, out, (start,) + (0,) * (spatial - 1))
    extent = sampling.tap_extent(points, chunk_shape, whole, *codes)
    assert extent.shape == (spatial, 2) and np.all(extent[:, 0] <= extent[:, 1])
    assert np.all(extent[:, 0] >= 0) and np.all(extent[:, 1] < input.shape[2:])
    region = (slice(None), slice(None)) + tuple(slice(low, high + 1) for low, high in extent)
    part = np.ascontiguousarray(input[region])
    window = sampling.region_window(input.shape[2:], extent[:, 0], out, (start,) + (0,) * (spatial - 1))

    part_output = np.empty(chunk_shape)
    sampling.sample_region(part, points, part_output, window, *codes)
    np.testing.assert_array_equal(part_output, output[chunk])

    grad_part = np.empty_like(part)
    grad_chunk_points = np.empty_like(points)
    sampling.sample_region_backward(np.ascontiguousarray(grad_output[chunk]), part, points, grad_part,
                                    grad_chunk_points, window, *codes, True)
    if not fused:
        np.testing.assert_array_equal(grad_chunk_points, grad_points[:, start:])
    # the chunk's input gradient: the whole's from the chunk's grad_output alone, inside the region
    masked = np.zeros_like(grad_output)
    masked[chunk] = grad_output[chunk]
    if fused:
        expected_input, expected_theta = stn_numba.affine_grid_sample_backward(
            masked, input, theta, input.shape[:2] + out, mode, padding, align)
        np.testing.assert_allclose(grad_chunk_points, expected_theta, rtol=1e-12, atol=1e-12)
    else:
        expected_input, _ = stn_numba.grid_sample_backward(masked, input, grid, mode, padding, align)
    np.testing.assert_array_equal(grad_part, expected_input[region])
    outside = expected_input.copy()
    outside[region] = 0
    assert not outside.any(), "the chunk's taps reach outside the extent"


def test_a_region_smaller_than_the_extent_changes_the_result(rng):
    """The test above can fail: one row fewer than the extent gives different values."""
    input, grid, _, out = whole_case(rng, 2)
    output = stn_numba.grid_sample(input, grid, "bilinear", "border")
    whole = sampling.region_window(input.shape[2:], (0, 0))
    extent = sampling.tap_extent(grid, output.shape, whole, False, MODES["bilinear"], PADDING_MODES["border"], False)
    low = extent[:, 0] + (1, 0)
    part = np.ascontiguousarray(input[:, :, low[0]:extent[0, 1] + 1, low[1]:extent[1, 1] + 1])
    part_output = np.empty_like(output)
    sampling.sample_region(part, grid, part_output, sampling.region_window(input.shape[2:], low),
                           False, MODES["bilinear"], PADDING_MODES["border"], False)
    assert not np.array_equal(part_output, output)


def test_large_chunks_run_the_parallel_region_kernels(rng):
    """Enough points for the parallel kernels (and split backward work items)."""
    input = rng.standard_normal((1, 1, 150, 160))
    grid = rng.uniform(-1.05, 1.05, (1, 140, 150, 2))
    output = stn_numba.grid_sample(input, grid, "bilinear", "reflection")
    grad_output = np.cos(np.arange(output.size)).reshape(output.shape)
    grad_input, grad_grid = stn_numba.grid_sample_backward(grad_output, input, grid, "bilinear", "reflection")
    codes = (False, MODES["bilinear"], PADDING_MODES["reflection"], False)
    extent = sampling.tap_extent(grid, output.shape, sampling.region_window(input.shape[2:], (0, 0)), *codes)
    region = (slice(None), slice(None)) + tuple(slice(low, high + 1) for low, high in extent)
    part = np.ascontiguousarray(input[region])
    window = sampling.region_window(input.shape[2:], extent[:, 0])
    part_output = np.empty_like(output)
    sampling.sample_region(part, grid, part_output, window, *codes)
    np.testing.assert_array_equal(part_output, output)
    grad_part, grad_points = np.empty_like(part), np.empty_like(grid)
    sampling.sample_region_backward(grad_output, part, grid, grad_part, grad_points, window, *codes, True)
    np.testing.assert_array_equal(grad_points, grad_grid)
    np.testing.assert_array_equal(grad_part, grad_input[region])
