"""affine_grid and affine_grid_backward against the loop reference, finite differences and torch."""

import numpy as np
import pytest

import reference
import stn_numba
from sampler_cases import ALIGN, DTYPES
from tolerances import tolerances

# (N, C, spatial...) sizes: 2-D and 3-D, including unit axes (base coordinate 0).
SIZES = [(2, 3, 5, 6), (1, 1, 1, 4), (2, 1, 3, 1), (2, 2, 3, 4, 5), (1, 1, 1, 2, 1)]


def random_theta(rng, size, dtype=np.float64):
    spatial = len(size) - 2
    return rng.standard_normal((size[0], spatial, spatial + 1)).astype(dtype)


def random_grad_grid(rng, size, dtype=np.float64):
    return rng.standard_normal((size[0], *size[2:], len(size) - 2)).astype(dtype)


# ------------------------------------------------------------------ the reference itself
# torch warns about unit-size grids with align_corners=True; the values are still compared.
@pytest.mark.filterwarnings("ignore:Since version 1.3.0:UserWarning")
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_reference_matches_torch(rng, size, align_corners):
    pytest.importorskip("torch")
    theta, grad_grid = random_theta(rng, size), random_grad_grid(rng, size)
    grid, grad_theta = reference.torch_affine_grid(theta, size, align_corners, grad_grid)
    np.testing.assert_allclose(reference.affine_grid(theta, size, align_corners), grid, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(reference.affine_grid_backward(grad_grid, size, align_corners), grad_theta,
                               rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ stn_numba vs reference
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_affine_grid_matches_reference(rng, size, align_corners, dtype):
    theta = random_theta(rng, size, dtype)
    grid = stn_numba.affine_grid(theta, size, align_corners=align_corners)
    assert grid.dtype == dtype
    assert grid.shape == (size[0], *size[2:], len(size) - 2)
    np.testing.assert_allclose(grid, reference.affine_grid(theta, size, align_corners), **tolerances(dtype, "grid"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_affine_grid_backward_matches_reference(rng, size, align_corners, dtype):
    grad_grid = random_grad_grid(rng, size, dtype)
    grad_theta = stn_numba.affine_grid_backward(grad_grid, size, align_corners=align_corners)
    assert grad_theta.dtype == dtype
    np.testing.assert_allclose(grad_theta, reference.affine_grid_backward(grad_grid, size, align_corners),
                               **tolerances(dtype, "grid"))


@pytest.mark.parametrize("size", [(2, 1, 4, 5), (2, 1, 2, 3, 4)])
@pytest.mark.parametrize("align_corners", ALIGN)
def test_affine_grid_backward_matches_finite_differences(rng, size, align_corners):
    theta, weights = random_theta(rng, size), random_grad_grid(rng, size)

    def loss(t):
        return float(np.sum(stn_numba.affine_grid(t, size, align_corners=align_corners) * weights))

    expected = reference.central_difference(loss, theta)
    got = stn_numba.affine_grid_backward(weights, size, align_corners=align_corners)
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(2, 3, 5, 6), (2, 2, 3, 4, 5)])
@pytest.mark.parametrize("align_corners", ALIGN)
def test_affine_grid_matches_torch(rng, size, align_corners, dtype):
    pytest.importorskip("torch")
    theta, grad_grid = random_theta(rng, size, dtype), random_grad_grid(rng, size, dtype)
    expected_grid, expected_grad = reference.torch_affine_grid(theta, size, align_corners, grad_grid)
    np.testing.assert_allclose(stn_numba.affine_grid(theta, size, align_corners=align_corners), expected_grid,
                               **tolerances(dtype, "grid"))
    np.testing.assert_allclose(stn_numba.affine_grid_backward(grad_grid, size, align_corners=align_corners),
                               expected_grad, **tolerances(dtype, "grid"))


@pytest.mark.parametrize("align_corners", ALIGN)
def test_identity_theta_gives_base_coordinates(align_corners):
    grid = stn_numba.affine_grid(np.eye(2, 3)[None], (1, 1, 3, 4), align_corners=align_corners)
    if align_corners:
        xs, ys = np.linspace(-1, 1, 4), np.linspace(-1, 1, 3)
    else:
        xs, ys = (2 * np.arange(4) + 1) / 4 - 1, (2 * np.arange(3) + 1) / 3 - 1
    np.testing.assert_allclose(grid[0, :, :, 0], np.broadcast_to(xs, (3, 4)), atol=1e-15)
    np.testing.assert_allclose(grid[0, :, :, 1], np.broadcast_to(ys[:, None], (3, 4)), atol=1e-15)


# ------------------------------------------------------------------ shapes, dtypes, layouts
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(0, 1, 3, 4), (0, 2, 2, 3, 4)])
def test_empty_batch(size, dtype):
    spatial = len(size) - 2
    grid = stn_numba.affine_grid(np.zeros((0, spatial, spatial + 1), dtype), size)
    assert grid.shape == (0, *size[2:], spatial) and grid.dtype == dtype
    grad_theta = stn_numba.affine_grid_backward(np.zeros((0, *size[2:], spatial), dtype), size)
    assert grad_theta.shape == (0, spatial, spatial + 1) and grad_theta.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(3, 1, 4, 5), (3, 1, 2, 3, 4)])
def test_layouts_give_the_same_result(rng, layout_variants, compiled_specialisations, size, dtype):
    theta, grad_grid = random_theta(rng, size, dtype), random_grad_grid(rng, size, dtype)
    expected_grid = stn_numba.affine_grid(theta, size)
    expected_grad = stn_numba.affine_grid_backward(grad_grid, size)
    compiled = compiled_specialisations()
    for name, variant in layout_variants(theta).items():
        got = stn_numba.affine_grid(variant, size)
        assert got.dtype == dtype, name
        np.testing.assert_array_equal(got, expected_grid, err_msg=name)
    for name, variant in layout_variants(grad_grid).items():
        np.testing.assert_array_equal(stn_numba.affine_grid_backward(variant, size), expected_grad, err_msg=name)
    # every layout reaches the kernels as the same C-contiguous, writeable array type
    assert compiled_specialisations() - compiled == set()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(5, 1, 13, 17), (5, 1, 5, 6, 7)])
def test_backward_is_bitwise_deterministic(rng, results_for_every_thread_count, size, dtype):
    grad_grid = random_grad_grid(rng, size, dtype)
    results = results_for_every_thread_count(lambda: stn_numba.affine_grid_backward(grad_grid, size))
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])
