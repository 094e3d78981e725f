"""The translations of docs/coming_from.md and the table of docs/nonfinite.md, where no other test checks them.

Each test computes both sides of a row: the call a user knows (scipy.ndimage,
torch, MONAI) and the stn_numba call the page gives for it. Rows that other
test files already check are named there, not repeated here.
"""

import warnings

import numpy as np
import pytest

import stn_numba
from tolerances import tolerances

# ---------------------------------------------------------------- scipy.ndimage.map_coordinates
# scipy mode -> (padding_mode, align_corners values it holds for, cval)
SCIPY_PADDINGS = {
    "nearest": ("border", (False, True), 0.0),
    "mirror": ("reflection", (True,), 0.0),
    "reflect": ("reflection", (False,), 0.0),
    "grid-constant": ("zeros", (False, True), 0.0),
    "grid-wrap": ("circular", (False, True), 0.0),
}


def grid_of(coordinates, spatial, align_corners):
    """A stn_numba grid (1, *out, dims), last axis (x, y[, z]) in [-1, 1], from scipy's
    pixel ``coordinates`` (dims, *out) in array-axis order (row, column)."""
    dims = len(spatial)
    components = []
    for k in range(dims):  # grid component k is array axis dims - 1 - k
        size, x = spatial[dims - 1 - k], coordinates[dims - 1 - k]
        components.append(2.0 * x / (size - 1) - 1.0 if align_corners else (2.0 * x + 1.0) / size - 1.0)
    return np.stack(components, axis=-1)[None]


@pytest.mark.parametrize("spatial", [(5, 7), (4, 5, 6)])
@pytest.mark.parametrize("scipy_mode", list(SCIPY_PADDINGS))
def test_map_coordinates_modes_are_padding_modes(rng, spatial, scipy_mode):
    ndimage = pytest.importorskip("scipy.ndimage")
    padding_mode, aligns, cval = SCIPY_PADDINGS[scipy_mode]
    image = rng.standard_normal(spatial)
    out = (6, 7) if len(spatial) == 2 else (3, 4, 5)
    coordinates = rng.uniform(-1.5 * max(spatial), 2.5 * max(spatial), (len(spatial),) + out)  # in and far out
    for order, mode in ((0, "nearest"), (1, "bilinear")):
        expected = ndimage.map_coordinates(image, coordinates, order=order, mode=scipy_mode, cval=cval)
        for align_corners in aligns:
            got = stn_numba.grid_sample(image[None, None], grid_of(coordinates, spatial, align_corners), mode,
                                        padding_mode, align_corners)[0, 0]
            np.testing.assert_allclose(got, expected, **tolerances(np.float64, "sampled"),
                                       err_msg=f"{scipy_mode} order {order} align_corners={align_corners}")


# ---------------------------------------------------------------- torch
def test_align_corners_none_is_false_without_a_warning(rng):
    """torch 2.x warns on ``align_corners=None``; stn_numba reads it as False, silently."""
    input = rng.standard_normal((2, 3, 5, 6))
    theta = np.tile(np.eye(2, 3), (2, 1, 1)) + rng.uniform(-0.2, 0.2, (2, 2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grid = stn_numba.affine_grid(theta, (2, 3, 4, 5), align_corners=None)
        output = stn_numba.grid_sample(input, grid, align_corners=None)
        grads = stn_numba.grid_sample_backward(np.ones_like(output), input, grid, align_corners=None)
    np.testing.assert_array_equal(grid, stn_numba.affine_grid(theta, (2, 3, 4, 5), align_corners=False))
    np.testing.assert_array_equal(output, stn_numba.grid_sample(input, grid, align_corners=False))
    for got, expected in zip(grads, stn_numba.grid_sample_backward(np.ones_like(output), input, grid)):
        np.testing.assert_array_equal(got, expected)
    torch = pytest.importorskip("torch")
    with pytest.warns(UserWarning, match="align_corners"):
        torch.nn.functional.grid_sample(torch.tensor(input), torch.tensor(grid), align_corners=None)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_input_requires_grad_false_is_torchs_input_without_grad(rng, mode):
    torch = pytest.importorskip("torch")
    input, grid = rng.standard_normal((2, 3, 5, 6)), rng.uniform(-1.2, 1.2, (2, 4, 5, 2))
    grad_output = rng.standard_normal((2, 3, 4, 5))
    input_t, grid_t = torch.tensor(input), torch.tensor(grid, requires_grad=True)  # the image needs no gradient
    torch.nn.functional.grid_sample(input_t, grid_t, mode, "border", False).backward(torch.tensor(grad_output))
    assert input_t.grad is None
    grad_input, grad_grid = stn_numba.grid_sample_backward(grad_output, input, grid, mode, "border",
                                                           input_requires_grad=False)
    assert grad_input is None
    np.testing.assert_allclose(grad_grid, grid_t.grad.numpy(), **tolerances(np.float64, "sampled"))


def test_tape_gives_torch_autograds_gradients(rng):
    """``Tensor(..., requires_grad=True)``, ``F.affine_grid``, ``F.grid_sample``, ``.backward()``, ``.grad``."""
    torch = pytest.importorskip("torch")
    import stn_numba.nn.functional as F
    from stn_numba.tensor import Tensor

    images, target = rng.standard_normal((2, 1, 7, 8)), rng.standard_normal((2, 1, 6, 6))
    theta = np.tile(np.eye(2, 3), (2, 1, 1)) + rng.uniform(-0.3, 0.3, (2, 2, 3))
    results = {}
    for name, lib, tensor, functional in (("torch", torch, torch.tensor, torch.nn.functional),
                                          ("stn_numba", stn_numba, Tensor, F)):
        x, t = tensor(images, requires_grad=True), tensor(theta, requires_grad=True)
        grid = functional.affine_grid(t, (2, 1, 6, 6), align_corners=False)
        output = functional.grid_sample(x, grid, "bilinear", "reflection", align_corners=False)
        loss = ((output - tensor(target)) ** 2).mean()
        loss.backward()
        with lib.no_grad():
            again = functional.grid_sample(x, grid, "bilinear", "reflection", align_corners=False)
        assert not again.requires_grad
        results[name] = [a.detach().numpy() if hasattr(a, "detach") else a for a in (loss, x.grad, t.grad)]
    for got, expected in zip(results["stn_numba"], results["torch"]):
        np.testing.assert_allclose(got, expected, **tolerances(np.float64, "sampled"))


# ---------------------------------------------------------------- MONAI (skipped where MONAI is not installed)
@pytest.mark.parametrize("padding_mode", ["border", "zeros", "reflection"])
def test_monai_warp_is_warp_with_its_padding_and_aligned_corners(rng, padding_mode):
    """MONAI's ``Warp`` (bilinear, default padding "border") on a displacement in voxels, array-axis order."""
    torch = pytest.importorskip("torch")
    warp_block = pytest.importorskip("monai.networks.blocks")
    image, ddf = rng.standard_normal((2, 3, 6, 7)), rng.uniform(-4, 4, (2, 2, 6, 7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Using PyTorch native grid_sample" without MONAI's compiled extension
        block = warp_block.Warp() if padding_mode == "border" else warp_block.Warp(padding_mode=padding_mode)
        theirs = block(torch.tensor(image), torch.tensor(ddf)).numpy()
    ours = stn_numba.warp(image, ddf, "bilinear", padding_mode, align_corners=True)
    np.testing.assert_allclose(ours, theirs, **tolerances(np.float64, "sampled"))
    if padding_mode == "border":  # stn_numba's default padding is zeros, MONAI's Warp's border
        assert not np.allclose(stn_numba.warp(image, ddf), theirs)


def test_monai_dvf2ddf_is_integrate_velocity(rng):
    torch = pytest.importorskip("torch")
    warp_block = pytest.importorskip("monai.networks.blocks")
    velocity = rng.uniform(-3, 3, (1, 2, 8, 9))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = warp_block.DVF2DDF()(torch.tensor(velocity)).numpy()  # 7 steps, bilinear, zeros
    np.testing.assert_allclose(stn_numba.integrate_velocity(velocity), theirs, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- docs/nonfinite.md: the table
# 2-D (H, W) = (4, 8), 3-D (D, H, W) = (4, 8, 4): with align_corners=False an edge pixel's centre,
# ±(size-1)/size, is exact in binary, so the edge points below are exact pixel centres.
SPATIAL = {2: (4, 8), 3: (4, 8, 4)}
FILL = 2.5
PADDINGS = ["zeros", "constant", "border", "reflection", "circular"]


def special_points(rng, dim, value, dtype):
    """(1, P, 1[, 1], dim) points: each has one component (each in turn; then all) set to ``value``, the rest inside."""
    points = rng.uniform(-0.7, 0.7, (dim + 1, 3, dim))
    for k in range(dim):
        points[k, :, k] = value
    points[dim] = value
    with np.errstate(over="ignore"):
        return points.reshape((1, -1) + (1,) * (dim - 1) + (dim,)).astype(dtype)


def edge_points(points, spatial, align_corners, sign_of):
    """``points`` with each special component replaced by the centre of the edge pixel on its side."""
    edges = points.copy()
    for k in range(points.shape[-1]):
        size = spatial[len(spatial) - 1 - k]
        edge = 1.0 if align_corners else (size - 1) / size
        special = ~np.isfinite(points[..., k]) | (np.abs(points[..., k]) > 1e6)
        edges[..., k] = np.where(special, np.sign(sign_of[..., k]) * edge, points[..., k])
    return edges


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("padding_mode", PADDINGS)
def test_the_nonfinite_table(rng, padding_mode, dtype):
    """Every cell of docs/nonfinite.md's table: NaN, ±Inf and huge finite points, each padding mode."""
    far_pixels = 2.0**31
    for dim, spatial in SPATIAL.items():
        input = rng.standard_normal((1, 2) + spatial).astype(dtype)
        low, high = input.min(), input.max()
        for mode in ("bilinear", "nearest", "bicubic"):
            for align_corners in (False, True):
                args = (mode, padding_mode, align_corners)
                kwargs = {"fill_value": FILL} if padding_mode == "constant" else {}
                outside = FILL if padding_mode == "constant" else 0.0
                huge = [1e30, -1e30, far_pixels * 2 / min(spatial), -far_pixels * 2 / min(spatial)]
                for kind, values in (("nan", [np.nan]), ("inf", [np.inf, -np.inf]), ("huge", huge)):
                    for value in values:
                        where = f"{dim}-D {mode} align_corners={align_corners} {value}"
                        grid = special_points(rng, dim, value, dtype)
                        grad_output = np.ones((1, 2) + grid.shape[1:-1], dtype)
                        output = stn_numba.grid_sample(input, grid, *args, **kwargs)
                        grad_input, grad_grid = stn_numba.grid_sample_backward(grad_output, input, grid, *args,
                                                                               **kwargs)
                        # gradients are never NaN or Inf with a finite input and grad_output
                        assert np.isfinite(output).all() and np.isfinite(grad_input).all(), where
                        assert np.isfinite(grad_grid).all(), where
                        nothing = (kind == "nan" or padding_mode in ("zeros", "constant")
                                   or (kind == "inf" and padding_mode == "circular"))
                        if nothing:  # output 0 (constant: the fill), every gradient 0
                            np.testing.assert_array_equal(output, outside, err_msg=where)
                            assert not grad_input.any() and not grad_grid.any(), where
                        elif padding_mode == "border" or kind == "inf":  # border, reflection at ±Inf: the edge
                            edges = edge_points(grid, spatial, align_corners, grid)
                            at_edge = stn_numba.grid_sample(input, edges, *args)
                            edge_input, edge_grid = stn_numba.grid_sample_backward(grad_output, input, edges, *args)
                            np.testing.assert_allclose(output, at_edge, **tolerances(dtype, "sampled"), err_msg=where)
                            np.testing.assert_allclose(grad_input, edge_input, **tolerances(dtype, "sampled"),
                                                       err_msg=where)
                            special = edges != grid
                            if mode == "bicubic":  # none along a far component (bicubic: its taps' slopes sum
                                np.testing.assert_allclose(  # to 0, to rounding, on four copies of the edge)
                                    grad_grid[special], 0, atol=tolerances(dtype, "sampled")["atol"], err_msg=where)
                            else:
                                assert not grad_grid[special].any(), where
                            np.testing.assert_allclose(grad_grid[~special], edge_grid[~special],
                                                       **tolerances(dtype, "sampled"), err_msg=where)
                        else:  # reflection and circular, huge finite: a deterministic point inside
                            again = stn_numba.grid_sample(input, grid, *args)
                            np.testing.assert_array_equal(output, again, err_msg=where)
                            if mode != "bicubic":  # (cubic weights may overshoot the input's range)
                                slack = 1e-5 if dtype == np.float32 else 1e-12
                                assert (output >= low - slack).all() and (output <= high + slack).all(), where
