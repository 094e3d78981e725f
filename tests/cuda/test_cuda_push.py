"""grid_push, grid_count and their backwards on the GPU, against the CPU."""

import numpy as np
import pytest

import stn_numba
from cuda_cases import bits, host, random_case
from sampler_cases import COMBO_ARGS, DTYPES, LEAN_COMBOS
from tolerances import tolerances


@pytest.mark.parametrize(COMBO_ARGS, LEAN_COMBOS)
def test_push_on_the_gpu_matches_the_cpu(cuda, rng, dim, mode, padding_mode, align_corners):
    input, grid, values = random_case(rng, dim, np.float64)
    args = (mode, padding_mode, align_corners)
    expected = stn_numba.grid_push(values, grid, input.shape, *args)
    d_values, d_grid = cuda.to_device(values), cuda.to_device(grid)
    for deterministic in (False, True):
        pushed = stn_numba.grid_push(d_values, d_grid, input.shape, *args, deterministic=deterministic)
        np.testing.assert_allclose(host(pushed), expected, **tolerances(np.float64, "rounding"))


@pytest.mark.parametrize("dim, mode", [(2, "bilinear"), (2, "bicubic"), (3, "bilinear")])
@pytest.mark.parametrize("dtype", DTYPES)
def test_push_and_count_backwards_and_count_on_the_gpu_match_the_cpu(cuda, rng, dim, mode, dtype):
    input, grid, values = random_case(rng, dim, dtype)
    args = (mode, "reflection", False)
    d_input, d_grid, d_values = (cuda.to_device(a) for a in (input, grid, values))
    for got, expected in zip(stn_numba.grid_push_backward(d_input, d_values, d_grid, *args),
                             stn_numba.grid_push_backward(input, values, grid, *args)):
        np.testing.assert_allclose(host(got), expected, **tolerances(dtype, "rounding"))
    np.testing.assert_allclose(host(stn_numba.grid_count(d_grid, input.shape, *args)),
                               stn_numba.grid_count(grid, input.shape, *args), **tolerances(dtype, "rounding"))
    count_weights = input[:, :1].copy()
    np.testing.assert_allclose(host(stn_numba.grid_count_backward(cuda.to_device(count_weights), d_grid, *args)),
                               stn_numba.grid_count_backward(count_weights, grid, *args),
                               **tolerances(dtype, "rounding"))


def test_deterministic_push_gives_the_same_bits_every_run(cuda, rng):
    input, grid, values = random_case(rng, 2, np.float32)
    d_values, d_grid = cuda.to_device(values), cuda.to_device(grid)
    runs = [host(stn_numba.grid_push(d_values, d_grid, input.shape, deterministic=True)) for _ in range(2)]
    np.testing.assert_array_equal(bits(runs[0]), bits(runs[1]))
