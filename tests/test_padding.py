"""The paddings torch lacks: "circular" (scipy.ndimage's "grid-wrap") and
"constant" with a fill value (scipy.ndimage's "grid-constant" with cval).

Circular also runs through every sampler case of ``sampler_cases.COMBOS``
(the reference, finite differences, the non-finite rule); constant, which
takes a fill value, is tested here: against scipy, the reference, finite
differences, and on the fused, tape and Dask paths.
"""

import numpy as np
import pytest
from scipy import ndimage

import reference
import stn_numba
from sampler_cases import ALIGN, DTYPES
from stn_numba.nn import functional as F
from stn_numba.tensor import Tensor
from test_sampling import pixel_to_grid, random_cases, smooth_case
from tolerances import tolerances

FILL = 2.5
SCIPY_MODES = {"circular": "grid-wrap", "constant": "grid-constant"}
MODE_DIMS = [(2, "bilinear"), (2, "nearest"), (2, "bicubic"), (3, "bilinear"), (3, "nearest")]
# small work runs serially, larger on the pool, with their own kernels
SCIPY_SHAPES = {2: [((2, 3, 5, 7), (3, 4)), ((2, 3, 40, 50), (30, 40))],
                3: [((2, 3, 4, 5, 6), (3, 4, 5)), ((2, 3, 12, 13, 14), (10, 11, 12))]}


def scipy_sample(input, grid, order, mode, align_corners, cval=0.0):
    """``map_coordinates`` of every (n, c) plane at the grid's pixel coordinates."""
    spatial = input.shape[2:]
    output = np.empty(input.shape[:2] + grid.shape[1:-1])
    for n in range(input.shape[0]):
        coordinates = [pixel_of(grid[n, ..., len(spatial) - 1 - axis], size, align_corners)
                       for axis, size in enumerate(spatial)]
        for c in range(input.shape[1]):
            output[n, c] = ndimage.map_coordinates(input[n, c], coordinates, order=order, mode=mode, cval=cval)
    return output


def pixel_of(g, size, align_corners):
    return (g + 1.0) * (size - 1) / 2.0 if align_corners else ((g + 1.0) * size - 1.0) / 2.0


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("mode, order", [("nearest", 0), ("bilinear", 1)])
@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("padding_mode", ["circular", "constant"])
def test_matches_scipy(rng, dim, mode, order, align_corners, padding_mode):
    for shape, out_spatial in SCIPY_SHAPES[dim]:
        input = rng.standard_normal(shape)
        grid = rng.uniform(-2.5, 2.5, (shape[0],) + out_spatial + (dim,))
        fill = FILL if padding_mode == "constant" else 0.0
        expected = scipy_sample(input, grid, order, SCIPY_MODES[padding_mode], align_corners, fill)
        for dtype in DTYPES:
            got = stn_numba.grid_sample(input.astype(dtype), grid.astype(dtype), mode, padding_mode, align_corners,
                                        fill_value=fill)
            if dtype == np.float32 and mode == "nearest":  # a float32 point may round to the other pixel
                assert np.mean(got == expected.astype(dtype)) > 0.99
                continue
            np.testing.assert_allclose(got, expected, **tolerances(dtype, "sampled"))


# ---------------------------------------------------------------- constant: the reference
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim, mode", MODE_DIMS)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_constant_matches_reference(rng, dim, mode, align_corners, dtype):
    args = (mode, "constant", align_corners)
    for input, grid, grad_output in random_cases(rng, dim, dtype, spread=1.75):
        output = stn_numba.grid_sample(input, grid, *args, fill_value=FILL)
        np.testing.assert_allclose(output, reference.grid_sample(input, grid, *args, fill_value=FILL),
                                   **tolerances(dtype, "sampled"))
        grad_input, grad_grid = stn_numba.grid_sample_backward(grad_output, input, grid, *args, fill_value=FILL)
        expected_input, expected_grid = reference.grid_sample_backward(grad_output, input, grid, *args,
                                                                       fill_value=FILL)
        np.testing.assert_allclose(grad_input, expected_input, err_msg="grad_input", **tolerances(dtype, "sampled"))
        np.testing.assert_allclose(grad_grid, expected_grid, err_msg="grad_grid", **tolerances(dtype, "sampled"))


@pytest.mark.parametrize("dim, mode", MODE_DIMS)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_constant_gradients_match_finite_differences(rng, dim, mode, align_corners):
    input, grid, weights = smooth_case(rng, dim, align_corners)
    args = (mode, "constant", align_corners)

    def loss_of_input(x):
        return float(np.sum(stn_numba.grid_sample(x, grid, *args, fill_value=FILL) * weights))

    def loss_of_grid(g):
        return float(np.sum(stn_numba.grid_sample(input, g, *args, fill_value=FILL) * weights))

    grad_input, grad_grid = stn_numba.grid_sample_backward(weights, input, grid, *args, fill_value=FILL)
    np.testing.assert_allclose(grad_input, reference.central_difference(loss_of_input, input), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(grad_grid, reference.central_difference(loss_of_grid, grid), rtol=1e-6, atol=1e-6)
    if mode != "nearest":
        assert np.abs(grad_grid).max() > 0  # (points straddle the border: the fill moves the gradient)


def fused_case(rng, dim, dtype=np.float64):
    shape = (2, 2) + (5, 6, 7)[-dim:]
    theta = np.zeros((2, dim, dim + 1))
    theta[:, :, :dim] = np.eye(dim) * 1.6 + rng.normal(0, 0.2, (2, dim, dim))
    theta[:, :, dim] = rng.normal(0, 0.3, (2, dim))
    size = shape[:2] + (4, 5, 6)[-dim:]
    input = rng.standard_normal(shape)
    grad_output = rng.standard_normal(size)
    return input.astype(dtype), theta.astype(dtype), size, grad_output.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim, mode", MODE_DIMS)
def test_fused_constant_is_the_unfused_ops_bitwise(rng, dim, mode, dtype):
    input, theta, size, grad_output = fused_case(rng, dim, dtype)
    args = (mode, "constant", False)
    grid = stn_numba.affine_grid(theta, size)
    np.testing.assert_array_equal(stn_numba.affine_grid_sample(input, theta, size, *args, fill_value=FILL),
                                  stn_numba.grid_sample(input, grid, *args, fill_value=FILL))
    grad_input, grad_theta = stn_numba.affine_grid_sample_backward(grad_output, input, theta, size, *args,
                                                                   fill_value=FILL)
    expected_input, grad_grid = stn_numba.grid_sample_backward(grad_output, input, grid, *args, fill_value=FILL)
    np.testing.assert_array_equal(grad_input, expected_input)
    np.testing.assert_array_equal(grad_theta, stn_numba.affine_grid_backward(grad_grid, size))


def test_fused_constant_theta_gradient_matches_finite_differences(rng):
    input, theta, size, weights = fused_case(rng, 2)
    args = ("bilinear", "constant", True)

    def loss(t):
        return float(np.sum(stn_numba.affine_grid_sample(input, t, size, *args, fill_value=FILL) * weights))

    _, grad_theta = stn_numba.affine_grid_sample_backward(weights, input, theta, size, *args, fill_value=FILL)
    np.testing.assert_allclose(grad_theta, reference.central_difference(loss, theta), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- constant: exactness and the non-finite rule
@pytest.mark.parametrize("dim, mode", MODE_DIMS)
def test_constant_leaves_points_inside_bitwise_as_zeros_and_fills_points_outside(rng, dim, mode):
    shape = (2, 3) + (6, 7, 8)[-dim:]
    input = rng.standard_normal(shape).astype(np.float32)
    inside = rng.uniform(-0.4, 0.4, (2, 9) + (10,) * (dim - 1) + (dim,)).astype(np.float32)  # every tap inside
    fill = np.float32(1e30)  # any leak of it would show
    np.testing.assert_array_equal(stn_numba.grid_sample(input, inside, mode, "constant", fill_value=fill),
                                  stn_numba.grid_sample(input, inside, mode, "zeros"))
    far = np.full_like(inside, 3.0)
    for value in (np.nan, np.inf, -np.inf, 5.0, -1e30):
        far[..., 0] = value
        output = stn_numba.grid_sample(input, far, mode, "constant", fill_value=fill)
        assert (output == fill).all(), value
        grad_input, grad_grid = stn_numba.grid_sample_backward(np.ones_like(output), input, far, mode, "constant",
                                                               fill_value=fill)
        assert not grad_input.any() and not grad_grid.any()


def test_a_nan_fill_reaches_only_points_whose_taps_fall_outside(rng):
    input = rng.standard_normal((1, 1, 6, 6))
    grid = np.zeros((1, 1, 3, 2))
    grid[0, 0, :, 0] = [0.0, 0.9, 1.5]  # inside, partly outside (bilinear), wholly outside
    output = stn_numba.grid_sample(input, grid, padding_mode="constant", fill_value=np.nan)[0, 0, 0]
    assert np.isfinite(output[0]) and np.isnan(output[1]) and np.isnan(output[2])


# ---------------------------------------------------------------- circular
@pytest.mark.parametrize("dim, mode", MODE_DIMS)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_circular_repeats_the_input_with_a_period_of_its_size(rng, dim, mode, align_corners):
    shape = (1, 2) + (4, 8, 16)[-dim:]  # sizes whose normalised periods are exact
    input = rng.standard_normal(shape)
    pixels = rng.uniform(-1.5, 16.5, (1, 5, 6) + (7,) * (dim - 2) + (dim,))
    sizes = shape[:1:-1]  # along x, y[, z]
    grid = np.stack([pixel_to_grid(pixels[..., k], sizes[k], align_corners) for k in range(dim)], axis=-1)
    shifted = np.stack([pixel_to_grid(pixels[..., k] + sizes[k] * (k + 1), sizes[k], align_corners)
                        for k in range(dim)], axis=-1)
    np.testing.assert_allclose(stn_numba.grid_sample(input, shifted, mode, "circular", align_corners),
                               stn_numba.grid_sample(input, grid, mode, "circular", align_corners),
                               rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs, error, words", [
    ({"padding_mode": "zeros", "fill_value": 1.0}, ValueError, ["fill_value applies only", "'zeros'"]),
    ({"padding_mode": "circular", "fill_value": -2}, ValueError, ["fill_value applies only", "'circular'"]),
    ({"padding_mode": "constant", "fill_value": "1"}, TypeError, ["fill_value must be a real number"]),
    ({"padding_mode": "constant", "fill_value": True}, TypeError, ["fill_value must be a real number"]),
    ({"padding_mode": "constant", "fill_value": np.ones(2)}, TypeError, ["fill_value must be a real number"]),
    ({"padding_mode": "wrap"}, ValueError, ["padding_mode must be one of", "circular", "constant"]),
])
def test_bad_fill_values_and_paddings_are_named(rng, kwargs, error, words):
    input = rng.standard_normal((1, 1, 4, 4))
    grid = rng.uniform(-1, 1, (1, 2, 2, 2))
    for call in (lambda: stn_numba.grid_sample(input, grid, **kwargs),
                 lambda: stn_numba.grid_sample_backward(np.ones((1, 1, 2, 2)), input, grid, **kwargs),
                 lambda: stn_numba.affine_grid_sample(input, np.eye(2, 3)[None], (1, 1, 3, 3), **kwargs)):
        with pytest.raises(error) as caught:
            call()
        for word in words:
            assert word in str(caught.value)


def test_push_refuses_constant_padding(rng):
    grid = rng.uniform(-1, 1, (1, 2, 2, 2))
    with pytest.raises(ValueError, match="'constant' has no push"):
        stn_numba.grid_push(np.ones((1, 1, 2, 2)), grid, (1, 1, 4, 4), padding_mode="constant")
    with pytest.raises(ValueError, match="'constant' has no push"):
        stn_numba.grid_count(grid, (1, 1, 4, 4), padding_mode="constant")


# ---------------------------------------------------------------- the tape and the layer
def test_tape_ops_carry_the_fill_value(rng):
    input, grid, grad_output = random_cases(rng, 2, spread=1.75)[0]
    x, g = Tensor(input, requires_grad=True), Tensor(grid, requires_grad=True)
    output = F.grid_sample(x, g, "bilinear", "constant", fill_value=FILL)
    (output * Tensor(grad_output)).sum().backward()
    expected = stn_numba.grid_sample_backward(grad_output, input, grid, "bilinear", "constant", fill_value=FILL)
    np.testing.assert_array_equal(output.data, stn_numba.grid_sample(input, grid, "bilinear", "constant",
                                                                     fill_value=FILL))
    np.testing.assert_array_equal(x.grad, expected[0])
    np.testing.assert_array_equal(g.grad, expected[1])
    image, theta, size, weights = fused_case(rng, 2)
    t = Tensor(theta, requires_grad=True)
    (F.affine_grid_sample(Tensor(image), t, size, "bilinear", "constant", fill_value=FILL)
     * Tensor(weights)).sum().backward()
    np.testing.assert_array_equal(t.grad, stn_numba.affine_grid_sample_backward(
        weights, image, theta, size, "bilinear", "constant", fill_value=FILL)[1])


def test_spatial_transformer_takes_a_fill_value(rng):
    from stn_numba import nn

    localisation = nn.Sequential(nn.Flatten(), nn.Linear(64, 4, dtype=np.float64))
    layer = nn.SpatialTransformer(localisation, "affine", in_features=4, padding_mode="constant", fill_value=-1.0,
                                  dtype=np.float64)
    layer.regressor.bias.data[...] = [0.5, 0.0, 0.9, 0.0, 0.5, 0.0]  # half scale, shifted right: part outside
    output = layer(Tensor(rng.random((2, 1, 8, 8)))).data
    assert (output == -1.0).any() and (output >= 0).any()
    with pytest.raises(ValueError, match="fill_value applies only"):
        nn.SpatialTransformer(localisation, "affine", in_features=4, fill_value=1.0)


# ---------------------------------------------------------------- Dask
@pytest.mark.parametrize("padding_mode", ["circular", "constant"])
@pytest.mark.parametrize("dim", [2, 3])
def test_dask_regions_match_the_in_memory_call(rng, dim, padding_mode):
    da = pytest.importorskip("dask.array")
    import stn_numba.dask as sd

    shape = (2, 2) + (22, 24, 26)[-dim:]
    chunks = (1, 2) + (8, 9, 10)[-dim:]
    input = rng.standard_normal(shape)
    fill = FILL if padding_mode == "constant" else 0.0
    kwargs = {"fill_value": fill}
    # inside, across one edge, far outside: chunks that read a part, wrap or read the fill only
    grid = rng.uniform(-0.6, 0.6, (2,) + (18, 20, 22)[-dim:] + (dim,))
    grid[:, :5] += 0.9
    grid[:, -4:] -= 3.5
    grad_output = rng.standard_normal((2, 2) + grid.shape[1:-1])
    lazy_input = da.from_array(input, chunks=chunks)
    lazy_grid = da.from_array(grid, chunks=(1,) + (6, 7, 8)[-dim:] + (dim,))
    sync = {"scheduler": "synchronous"}
    modes = ["bilinear", "nearest", "bicubic"] if dim == 2 else ["bilinear", "nearest"]
    if dim == 3 and padding_mode == "circular":
        # bilinear only: each mode compiles windowed circular kernels of its own (70 s for both in CI),
        # and the other modes' wrapped taps along each axis are those checked in 2-D
        modes = ["bilinear"]
    for mode in modes:
        args = (mode, padding_mode, False)
        np.testing.assert_array_equal(sd.grid_sample(lazy_input, lazy_grid, *args, **kwargs).compute(**sync),
                                      stn_numba.grid_sample(input, grid, *args, **kwargs), err_msg=mode)
        got = [g.compute(**sync) for g in sd.grid_sample_backward(grad_output, lazy_input, lazy_grid, *args,
                                                                  **kwargs)]
        expected = stn_numba.grid_sample_backward(grad_output, input, grid, *args, **kwargs)
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-12, atol=1e-12, err_msg=mode)
        np.testing.assert_array_equal(got[1], expected[1], err_msg=mode)
        theta = np.zeros((2, dim, dim + 1))
        theta[:, :, :dim] = np.eye(dim) * 1.3
        theta[:, 0, dim] = [0.4, -0.7]
        size = shape[:2] + (18, 20, 22)[-dim:]
        out_chunks = (6, 7, 8)[-dim:]
        np.testing.assert_array_equal(
            sd.affine_grid_sample(lazy_input, theta, size, *args, output_chunks=out_chunks, **kwargs).compute(**sync),
            stn_numba.affine_grid_sample(input, theta, size, *args, **kwargs), err_msg=mode)
        fused_grad_output = da.from_array(rng.standard_normal(size), chunks=(2, 2) + out_chunks)
        got = [g.compute(**sync) for g in sd.affine_grid_sample_backward(fused_grad_output, lazy_input, theta, size,
                                                                         *args, **kwargs)]
        expected = stn_numba.affine_grid_sample_backward(fused_grad_output.compute(), input, theta, size, *args,
                                                         **kwargs)
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-10, err_msg=mode)
