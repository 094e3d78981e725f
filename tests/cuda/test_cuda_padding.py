"""Constant padding (``fill_value``) on the GPU against the CPU, which tests/test_padding.py checks
against scipy.ndimage, the reference and finite differences. (Circular padding runs through every
case of ``sampler_cases.LEAN_COMBOS``.)"""

import numpy as np
import pytest

import stn_numba
from cuda_cases import host, random_case
from sampler_cases import ALIGN, DTYPES
from test_cuda_fused import fused_case, on_device
from tolerances import tolerances

FILL = -1.75


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim, mode", [(2, "bilinear"), (2, "nearest"), (2, "bicubic"), (3, "bilinear"),
                                       (3, "nearest")])
@pytest.mark.parametrize("align_corners", ALIGN)
def test_constant_padding_on_the_gpu_matches_the_cpu(cuda, rng, dim, mode, align_corners, dtype):
    args = (mode, "constant", align_corners)
    input, grid, grad_output = random_case(rng, dim, dtype, spread=1.8)
    grid.reshape(-1, dim)[-1] = np.nan  # reads the fill
    d_input, d_grid, d_grad_output = on_device(cuda, input, grid, grad_output)
    np.testing.assert_allclose(host(stn_numba.grid_sample(d_input, d_grid, *args, fill_value=FILL)),
                               stn_numba.grid_sample(input, grid, *args, fill_value=FILL),
                               **tolerances(dtype, "rounding"))
    for deterministic in (False, True):
        got = stn_numba.grid_sample_backward(d_grad_output, d_input, d_grid, *args, fill_value=FILL,
                                             deterministic=deterministic)
        expected = stn_numba.grid_sample_backward(grad_output, input, grid, *args, fill_value=FILL)
        for g, e in zip(got, expected):
            np.testing.assert_allclose(host(g), e, **tolerances(dtype, "rounding"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [2, 3])
def test_fused_constant_padding_on_the_gpu_matches_the_cpu(cuda, rng, dim, dtype):
    input, theta, size, grad_output = fused_case(rng, dim, dtype, zoom=1.6)
    args = ("bilinear", "constant", False)
    d_input, d_theta, d_grad_output = on_device(cuda, input, theta, grad_output)
    np.testing.assert_allclose(host(stn_numba.affine_grid_sample(d_input, d_theta, size, *args, fill_value=FILL)),
                               stn_numba.affine_grid_sample(input, theta, size, *args, fill_value=FILL),
                               **tolerances(dtype, "rounding"))
    got = stn_numba.affine_grid_sample_backward(d_grad_output, d_input, d_theta, size, *args, fill_value=FILL)
    expected = stn_numba.affine_grid_sample_backward(grad_output, input, theta, size, *args, fill_value=FILL)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(host(g), e, **tolerances(dtype, "rounding"))
