"""warp, its backward and integrate_velocity on the GPU against the CPU, which tests/test_warp.py
checks against grid_sample, finite differences and known flows."""

import numpy as np
import pytest

import stn_numba
from cuda_cases import host
from sampler_cases import ALL_PADDINGS, DTYPES
from tolerances import tolerances


def warp_case(rng, dim, dtype):
    shape = (2, 2) + (3, 4, 5)[-dim:]
    input = rng.standard_normal(shape)
    displacement = rng.uniform(-2.5, 2.5, (2, dim) + shape[2:])
    displacement.reshape(-1)[:3] = [np.nan, np.inf, -np.inf]
    grad_output = rng.standard_normal(shape)
    return input.astype(dtype), displacement.astype(dtype), grad_output.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_mode", ALL_PADDINGS)
@pytest.mark.parametrize("dim, mode", [(2, "bilinear"), (2, "nearest"), (2, "bicubic"), (3, "bilinear"),
                                       (3, "bicubic")])
def test_warp_on_the_gpu_matches_the_cpu(cuda, rng, dim, mode, padding_mode, dtype):
    input, displacement, grad_output = warp_case(rng, dim, dtype)
    args = (mode, padding_mode, padding_mode == "reflection")
    kwargs = {"fill_value": -0.5} if padding_mode == "constant" else {}
    d_input, d_displacement, d_grad_output = (cuda.to_device(a) for a in (input, displacement, grad_output))
    np.testing.assert_allclose(host(stn_numba.warp(d_input, d_displacement, *args, **kwargs)),
                               stn_numba.warp(input, displacement, *args, **kwargs), **tolerances(dtype, "rounding"))
    expected = stn_numba.warp_backward(grad_output, input, displacement, *args, **kwargs)
    for deterministic in (False, True):
        got = stn_numba.warp_backward(d_grad_output, d_input, d_displacement, *args, deterministic=deterministic,
                                      **kwargs)
        for g, e in zip(got, expected):
            np.testing.assert_allclose(host(g), e, **tolerances(dtype, "rounding"))
    skipped, only = stn_numba.warp_backward(d_grad_output, d_input, d_displacement, *args,
                                            input_requires_grad=False, **kwargs)
    assert skipped is None
    np.testing.assert_allclose(host(only), expected[1], **tolerances(dtype, "rounding"))


@pytest.mark.parametrize("dim", [2, 3])
def test_integrate_velocity_on_the_gpu_matches_the_cpu(cuda, rng, dim):
    velocity = rng.uniform(-1, 1, (1, dim) + (3, 4, 5)[-dim:])
    weights = rng.standard_normal(velocity.shape)
    d_velocity = cuda.to_device(velocity)
    np.testing.assert_allclose(host(stn_numba.integrate_velocity(d_velocity, 3, padding_mode="border")),
                               stn_numba.integrate_velocity(velocity, 3, padding_mode="border"),
                               **tolerances(np.float64, "rounding"))
    np.testing.assert_allclose(
        host(stn_numba.integrate_velocity_backward(cuda.to_device(weights), d_velocity, 3, padding_mode="border")),
        stn_numba.integrate_velocity_backward(weights, velocity, 3, padding_mode="border"),
        **tolerances(np.float64, "rounding"))


def test_deterministic_warp_backward_gives_the_same_bits_every_run(cuda, rng):
    input, displacement, grad_output = warp_case(rng, 3, np.float32)
    d_arrays = [cuda.to_device(a) for a in (grad_output, input, displacement)]
    runs = [host(stn_numba.warp_backward(*d_arrays, "bicubic", deterministic=True)[0]) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].view(np.uint32), runs[1].view(np.uint32))
    velocity = rng.uniform(-1, 1, displacement.shape).astype(np.float32)
    d_velocity = cuda.to_device(velocity)
    np.testing.assert_allclose(
        host(stn_numba.integrate_velocity_backward(d_velocity, d_velocity, 2, deterministic=True)),
        stn_numba.integrate_velocity_backward(velocity, velocity, 2), **tolerances(np.float32, "rounding"))
