"""Every family's grid and its backward, and the parameter conversions, on the GPU, against the CPU."""

import numpy as np
import pytest

import stn_numba
import stn_numba.grids
from cuda_cases import bits, host
from sampler_cases import ALIGN, DTYPES
from stn_numba._families import GRID_FAMILIES
from tolerances import tolerances


def assert_same_on_gpu(cuda, function, arrays, *args, dtype, **options):
    """``function`` on device copies of ``arrays`` matches it on the host arrays."""
    expected = function(*arrays, *args, **options)
    got = function(*(cuda.to_device(a) for a in arrays), *args, **options)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_allclose(host(got), expected, **tolerances(dtype, "rounding"))
    return got


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", GRID_FAMILIES.values(), ids=lambda f: f.name)
def test_every_family(rng, cuda, family, dtype):
    size = (2, 1, 3, 4)
    identity = family.identity((2, 3))
    params = (identity + 0.1 * rng.standard_normal((2, *identity.shape))).astype(dtype)
    options = family.options((2, 3))
    assert_same_on_gpu(cuda, family.grid, [params], size, dtype=dtype, align_corners=True, **options)
    grad_grid = rng.standard_normal((2, 3, 4, 2)).astype(dtype)
    assert_same_on_gpu(cuda, family.backward, [grad_grid, params], size, dtype=dtype, align_corners=True,
                       **options)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_projective_grid(rng, cuda, align_corners, dtype):
    size = (2, 1, 4, 5)
    theta = rng.standard_normal((2, 3, 3))
    theta[:, 2] = [0.2, -0.1, 1.0]
    theta[1, 2] = [0.0, 0.0, 1e-9]  # w clamped away from 0
    theta = theta.astype(dtype)
    assert_same_on_gpu(cuda, stn_numba.projective_grid, [theta], size, dtype=dtype, align_corners=align_corners)
    grad_grid = rng.standard_normal((2, 4, 5, 2)).astype(dtype)
    assert_same_on_gpu(cuda, stn_numba.projective_grid_backward, [grad_grid, theta], size, dtype=dtype,
                       align_corners=align_corners)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_tps_grid(rng, cuda, align_corners, dtype):
    control_points = (3, 3)
    size = (2, 1, 9, 8)  # 72 points: two passes of the reduction tree
    points = stn_numba.tps_control_points(control_points)
    theta = (points + 0.1 * rng.standard_normal((2, *points.shape))).astype(dtype)
    assert_same_on_gpu(cuda, stn_numba.tps_grid, [theta], size, control_points, dtype=dtype,
                       align_corners=align_corners)
    grad_grid = rng.standard_normal((2, 9, 8, 2)).astype(dtype)
    got = assert_same_on_gpu(cuda, stn_numba.tps_grid_backward, [grad_grid], size, control_points, dtype=dtype,
                             align_corners=align_corners)
    again = stn_numba.tps_grid_backward(cuda.to_device(grad_grid), size, control_points, align_corners=align_corners)
    np.testing.assert_array_equal(bits(host(again)), bits(host(got)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_parameter_conversions(rng, cuda, dtype):
    grad_theta = rng.standard_normal((3, 2, 3)).astype(dtype)
    attention = rng.standard_normal((3, 3)).astype(dtype)
    similarity = rng.standard_normal((3, 4)).astype(dtype)
    assert_same_on_gpu(cuda, stn_numba.grids.attention_to_affine, [attention], dtype=dtype)
    assert_same_on_gpu(cuda, stn_numba.grids.attention_to_affine_backward, [grad_theta], dtype=dtype)
    assert_same_on_gpu(cuda, stn_numba.grids.similarity_to_affine, [similarity], dtype=dtype)
    assert_same_on_gpu(cuda, stn_numba.grids.similarity_to_affine_backward, [grad_theta, similarity], dtype=dtype)
