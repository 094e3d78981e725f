"""The fused ``affine_grid_sample`` on the GPU against the CPU, which tests/ checks against the
composed ops, the loop reference and torch.

Each mode x padding_mode x align_corners x 4-D/5-D x dtype, forward and backward (the atomic and
the deterministic ``grad_input``); bitwise repeatability; the same bits as the composed GPU ops;
dispatch (GPU arrays in, GPU arrays out, streams, empty batches).
"""

import numpy as np
import pytest

import stn_numba
import stn_numba._cuda
from cuda_cases import INPUT_SHAPES, OUTPUT_SPATIAL, SIMULATED, bits, host
from sampler_cases import COMBO_ARGS, DTYPES, LEAN_COMBOS
from tolerances import tolerances


def fused_case(rng, dim, dtype, spatial=None, zoom=1.3):
    """(input, theta, size, grad_output): near-identity transforms scaled by ``zoom``, so that
    some output points fall outside the input (zoom > 1) or many share its pixels (zoom < 1)."""
    shape = INPUT_SHAPES[dim]
    spatial = OUTPUT_SPATIAL[dim] if spatial is None else spatial
    size = (shape[0], shape[1], *spatial)
    theta = np.zeros((shape[0], dim, dim + 1))
    theta[:, :, :dim] = zoom * (np.eye(dim) + 0.3 * rng.standard_normal((shape[0], dim, dim)))
    theta[:, :, dim] = 0.3 * rng.standard_normal((shape[0], dim))
    input = rng.standard_normal(shape)
    grad_output = rng.standard_normal(size)
    return input.astype(dtype), theta.astype(dtype), size, grad_output.astype(dtype)


def on_device(cuda, *arrays):
    return [cuda.to_device(a) for a in arrays]


def is_numba_device_array(value):
    return bool(getattr(value, "__cuda_ndarray__", False))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(COMBO_ARGS, LEAN_COMBOS)
def test_fused_matches_cpu(rng, cuda, dim, mode, padding_mode, align_corners, dtype):
    input, theta, size, grad_output = fused_case(rng, dim, dtype)
    args = (size, mode, padding_mode, align_corners)
    d_grad_output, d_input, d_theta = on_device(cuda, grad_output, input, theta)
    output = stn_numba.affine_grid_sample(d_input, d_theta, *args)
    assert is_numba_device_array(output) and output.dtype == dtype
    np.testing.assert_allclose(host(output), stn_numba.affine_grid_sample(input, theta, *args),
                               **tolerances(dtype, "rounding"))
    expected_input, expected_theta = stn_numba.affine_grid_sample_backward(grad_output, input, theta, *args)
    for deterministic in (False, True):
        grad_input, grad_theta = stn_numba.affine_grid_sample_backward(
            d_grad_output, d_input, d_theta, *args, deterministic=deterministic)
        assert is_numba_device_array(grad_input) and is_numba_device_array(grad_theta)
        np.testing.assert_allclose(host(grad_input), expected_input, err_msg="grad_input",
                                   **tolerances(dtype, "rounding"))
        np.testing.assert_allclose(host(grad_theta), expected_theta, err_msg="grad_theta",
                                   **tolerances(dtype, "rounding"))


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("dim", [2, 3])
def test_grad_theta_alone(rng, cuda, dim, deterministic):
    input, theta, size, grad_output = fused_case(rng, dim, np.float64)
    expected = stn_numba.affine_grid_sample_backward(grad_output, input, theta, size, input_requires_grad=False)
    got = stn_numba.affine_grid_sample_backward(*on_device(cuda, grad_output, input, theta), size,
                                                input_requires_grad=False, deterministic=deterministic)
    assert expected[0] is None and got[0] is None
    np.testing.assert_allclose(host(got[1]), expected[1], rtol=1e-12, atol=1e-12)


def test_grad_theta_over_two_reduction_passes(rng, cuda):
    """72 output points: two passes of the 32-way reduction tree behind grad_theta."""
    input, theta, size, grad_output = fused_case(rng, 2, np.float64, spatial=(8, 9))
    expected = stn_numba.affine_grid_sample_backward(grad_output, input, theta, size)
    got = stn_numba.affine_grid_sample_backward(*on_device(cuda, grad_output, input, theta), size,
                                                deterministic=True)
    np.testing.assert_allclose(host(got[0]), expected[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(got[1]), expected[1], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- determinism
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim, mode", [(2, "bilinear"), (2, "bicubic"), (3, "bilinear")])
def test_deterministic_backward_is_bitwise_repeatable(rng, cuda, dim, mode, dtype):
    """A zoom into the input: many output points share each pixel (long segments to sort)."""
    input, theta, size, grad_output = fused_case(rng, dim, dtype, spatial=(5,) * dim, zoom=0.4)
    args = (size, mode, "border", False)
    d_arrays = on_device(cuda, grad_output, input, theta)
    runs = [[host(g) for g in stn_numba.affine_grid_sample_backward(*d_arrays, *args, deterministic=True)]
            for _ in range(3)]
    for run in runs[1:]:
        for got, first in zip(run, runs[0]):
            np.testing.assert_array_equal(bits(got), bits(first))
    expected = stn_numba.affine_grid_sample_backward(grad_output, input, theta, *args)
    for got, want in zip(runs[0], expected):
        np.testing.assert_allclose(got, want, **tolerances(dtype, "rounding"))


@pytest.mark.skipif(not SIMULATED, reason="bitwise equality across kernels is checked under the simulator, "
                                          "where no fused multiply-add can differ")
@pytest.mark.parametrize("dim, mode", [(2, "bicubic"), (3, "bilinear")])
def test_same_bits_as_the_composed_gpu_ops(rng, cuda, dim, mode):
    """The fused kernels compute each point as affine_grid does and reduce grad_theta with
    affine_grid_backward's tree: the same bits as the composed ops on the GPU."""
    input, theta, size, grad_output = fused_case(rng, dim, np.float32)
    args = (mode, "reflection", True)
    d_grad_output, d_input, d_theta = on_device(cuda, grad_output, input, theta)
    grid = stn_numba.affine_grid(d_theta, size, align_corners=True)
    composed = host(stn_numba.grid_sample(d_input, grid, *args))
    np.testing.assert_array_equal(bits(host(stn_numba.affine_grid_sample(d_input, d_theta, size, *args))),
                                  bits(composed))
    grad_input, grad_grid = stn_numba.grid_sample_backward(d_grad_output, d_input, grid, *args, deterministic=True)
    grad_theta = stn_numba.affine_grid_backward(grad_grid, size, align_corners=True)
    fused = stn_numba.affine_grid_sample_backward(d_grad_output, d_input, d_theta, size, *args, deterministic=True)
    np.testing.assert_array_equal(bits(host(fused[0])), bits(host(grad_input)))
    np.testing.assert_array_equal(bits(host(fused[1])), bits(host(grad_theta)))


# ---------------------------------------------------------------- dispatch
def test_device_cuda_moves_numpy_arrays_to_the_gpu(rng):
    input, theta, size, grad_output = fused_case(rng, 2, np.float64)
    output = stn_numba.affine_grid_sample(input, theta, size, device="cuda")
    grads = stn_numba.affine_grid_sample_backward(grad_output, input, theta, size, device="cuda")
    assert all(is_numba_device_array(r) for r in (output, *grads))
    np.testing.assert_allclose(host(output), stn_numba.affine_grid_sample(input, theta, size), rtol=1e-12, atol=1e-12)


def test_mixed_host_and_device_arrays_are_refused(rng, cuda):
    input, theta, size, _ = fused_case(rng, 2, np.float64)
    with pytest.raises(ValueError, match="input is a host array, theta is a GPU array"):
        stn_numba.affine_grid_sample(input, cuda.to_device(theta), size)


@pytest.mark.parametrize("deterministic", [False, True])
def test_stream_is_honoured(rng, cuda, launch_streams, deterministic):
    """Every launch and every result is on the given stream."""
    input, theta, size, grad_output = fused_case(rng, 2, np.float64)
    stream = cuda.stream()
    d_grad_output, d_input, d_theta = (cuda.to_device(a, stream=stream) for a in (grad_output, input, theta))
    results = [stn_numba.affine_grid_sample(d_input, d_theta, size, stream=stream),
               *stn_numba.affine_grid_sample_backward(d_grad_output, d_input, d_theta, size, stream=stream,
                                                      deterministic=deterministic)]
    stream.synchronize()
    assert launch_streams and all(s is stream for s in launch_streams)
    assert all(r.stream is stream for r in results)


@pytest.mark.parametrize("dim", [2, 3])
def test_empty_batch(cuda, dim):
    input = cuda.to_device(np.zeros((0, 2) + (3,) * dim, np.float32))
    theta = cuda.to_device(np.zeros((0, dim, dim + 1), np.float32))
    size = (0, 2) + (2,) * dim
    output = stn_numba.affine_grid_sample(input, theta, size)
    assert is_numba_device_array(output) and output.shape == size
    for deterministic in (False, True):
        grad_input, grad_theta = stn_numba.affine_grid_sample_backward(output, input, theta, size,
                                                                       deterministic=deterministic)
        assert grad_input.shape == input.shape and grad_theta.shape == theta.shape


def test_one_pixel_output(rng, cuda):
    """A 1x1 output (base coordinate 0) of a 1x1 input: the smallest shapes."""
    input, theta = rng.standard_normal((2, 1, 1, 1)), rng.standard_normal((2, 2, 3))
    grad_output = rng.standard_normal((2, 1, 1, 1))
    size = (2, 1, 1, 1)
    for align_corners in (False, True):
        got = stn_numba.affine_grid_sample_backward(*on_device(cuda, grad_output, input, theta), size,
                                                    align_corners=align_corners, deterministic=True)
        expected = stn_numba.affine_grid_sample_backward(grad_output, input, theta, size, align_corners=align_corners)
        for g, e in zip(got, expected):
            np.testing.assert_allclose(host(g), e, rtol=1e-12, atol=1e-12)
