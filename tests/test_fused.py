"""The fused affine warp ``affine_grid_sample`` and its backward, and the tape op.

``affine_grid_sample(input, theta, size)`` must equal
``grid_sample(input, affine_grid(theta, size))`` (checked against the unfused
stn_numba path, itself checked against ``tests/reference.py`` and torch in
``test_sampling.py``), match torch's ``F.grid_sample(F.affine_grid(...))``
with autograd, and have the gradients of float64 central finite differences.
"""

import numpy as np
import pytest

import reference
import stn_numba
import stn_numba.nn as nn
import stn_numba.nn.functional as F
from sampler_cases import COMBO_ARGS, COMBOS, DTYPES, INPUT_SHAPES, TORCH_COMBOS
from stn_numba import sampling
from stn_numba.tensor import Tensor
from tolerances import tolerances

OUTPUT_SPATIAL = {2: (4, 7), 3: (2, 3, 4)}


def random_theta(rng, n_batch, dim, spread=0.35):
    """Affine matrices near the identity; with ``spread`` some points fall outside [-1, 1]."""
    return np.eye(dim, dim + 1) * 1.1 + rng.uniform(-spread, spread, (n_batch, dim, dim + 1))


def random_case(rng, dim, dtype, input_shape=None, out_spatial=None):
    """(input, theta, size, grad_output) in ``dtype``."""
    input_shape = input_shape or INPUT_SHAPES[dim]
    size = input_shape[:2] + tuple(out_spatial or OUTPUT_SPATIAL[dim])
    return (rng.standard_normal(input_shape).astype(dtype), random_theta(rng, input_shape[0], dim).astype(dtype),
            size, rng.standard_normal(size).astype(dtype))


def unfused(grad_output, input, theta, size, *args, input_requires_grad=True):
    """(output, grad_input, grad_theta) of grid_sample(affine_grid(...)) in stn_numba."""
    align_corners = args[2]
    grid = stn_numba.affine_grid(theta, size, align_corners)
    output = stn_numba.grid_sample(input, grid, *args)
    grad_input, grad_grid = stn_numba.grid_sample_backward(grad_output, input, grid, *args,
                                                           input_requires_grad=input_requires_grad)
    return output, grad_input, stn_numba.affine_grid_backward(grad_grid, size, align_corners)


def fused(grad_output, input, theta, size, *args, input_requires_grad=True):
    return (stn_numba.affine_grid_sample(input, theta, size, *args),
            *stn_numba.affine_grid_sample_backward(grad_output, input, theta, size, *args,
                                                   input_requires_grad=input_requires_grad))


def torch_affine_grid_sample(input, theta, size, mode, padding_mode, align_corners, grad_output):
    """torch in float64: (output, grad_input, grad_theta) of F.grid_sample(F.affine_grid(...)) by autograd."""
    import torch

    input_t = torch.tensor(np.asarray(input, np.float64), requires_grad=True)
    theta_t = torch.tensor(np.asarray(theta, np.float64), requires_grad=True)
    grid = torch.nn.functional.affine_grid(theta_t, list(size), align_corners=align_corners)
    output = torch.nn.functional.grid_sample(input_t, grid, mode=mode, padding_mode=padding_mode,
                                             align_corners=align_corners)
    output.backward(torch.tensor(np.asarray(grad_output, np.float64)))
    return output.detach().numpy(), input_t.grad.numpy(), theta_t.grad.numpy()


def assert_theta_gradient_close(got, expected, dtype):
    # A sum over every output point: scale the tolerance by the sum's size.
    tolerance = tolerances(dtype, "sampled")
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=tolerance["rtol"], atol=tolerance["atol"] * scale,
                               err_msg="grad_theta")


# ---------------------------------------------------------------- fused == unfused
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(COMBO_ARGS, COMBOS)
def test_equals_grid_sample_of_affine_grid(rng, dim, mode, padding_mode, align_corners, dtype):
    """Forward and grad_input bitwise (same coordinates, same taps, same order); grad_theta to rounding."""
    args = (mode, padding_mode, align_corners)
    input, theta, size, grad_output = random_case(rng, dim, dtype)
    expected = unfused(grad_output, input, theta, size, *args)
    got = fused(grad_output, input, theta, size, *args)
    for array, like in zip(got, (expected[0], input, theta)):
        assert array.dtype == dtype and array.shape == like.shape
    np.testing.assert_array_equal(got[0], expected[0], err_msg="output")
    np.testing.assert_array_equal(got[1], expected[1], err_msg="grad_input")
    assert_theta_gradient_close(got[2], expected[2], dtype)
    if mode == "nearest":
        assert not got[2].any()
    # Skipping grad_input changes nothing else.
    skipped, grad_theta = stn_numba.affine_grid_sample_backward(grad_output, input, theta, size, *args,
                                                                input_requires_grad=False)
    assert skipped is None
    assert_theta_gradient_close(grad_theta, got[2], dtype)


@pytest.mark.parametrize("dim, channels", [(2, 1), (2, 4), (3, 3)])
@pytest.mark.parametrize("input_requires_grad", [True, False])
def test_few_channel_bilinear_backward_is_bitwise_the_unfused_ops(rng, dim, channels, input_requires_grad):
    """Bilinear with 1-4 channels runs the grid path's backward on the affine grid (it is faster there)."""
    input_shape = (2, channels) + INPUT_SHAPES[dim][2:]
    out_spatial = (9, 40) if dim == 2 else (5, 6, 7)  # float64 sums long enough to differ in another order
    input, theta, size, grad_output = random_case(rng, dim, np.float64, input_shape, out_spatial)
    args = ("bilinear", "reflection", False)
    got = fused(grad_output, input, theta, size, *args, input_requires_grad=input_requires_grad)
    expected = unfused(grad_output, input, theta, size, *args, input_requires_grad=input_requires_grad)
    np.testing.assert_array_equal(got[2].view(np.uint64), expected[2].view(np.uint64))
    if input_requires_grad:
        np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("input_spatial, output_spatial", [((7, 7), (2, 3)), ((3, 4), (9, 11)), ((6, 5), (1, 1)),
                                                           ((4, 4, 4), (2, 1, 3)), ((2, 3, 2), (4, 5, 3))])
def test_down_and_upsampling_sizes(rng, input_spatial, output_spatial, dtype):
    dim = len(input_spatial)
    args = ("bilinear", "border", True)
    input, theta, size, grad_output = random_case(rng, dim, dtype, (2, 3, *input_spatial), output_spatial)
    got = fused(grad_output, input, theta, size, *args)
    expected = unfused(grad_output, input, theta, size, *args)
    assert got[0].shape == size
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert_theta_gradient_close(got[2], expected[2], dtype)


def test_large_output_spans_several_blocks_and_chunks(rng):
    """One image of 2 * 16384 points: several backward chunks with private buffers (see the kernel docstring)."""
    input, theta, size, grad_output = random_case(rng, 2, np.float64, (1, 2, 16, 16), (128, 256))
    args = ("bilinear", "reflection", False)
    got = fused(grad_output, input, theta, size, *args)
    expected = unfused(grad_output, input, theta, size, *args)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-12, atol=1e-12)
    assert_theta_gradient_close(got[2], expected[2], np.float64)


# ---------------------------------------------------------------- torch
@pytest.mark.parametrize(COMBO_ARGS, TORCH_COMBOS)
def test_matches_torch(rng, dim, mode, padding_mode, align_corners):
    pytest.importorskip("torch")
    args = (mode, padding_mode, align_corners)
    for dtype in DTYPES:
        input, theta, size, grad_output = random_case(rng, dim, dtype)
        output, grad_input, grad_theta = torch_affine_grid_sample(input, theta, size, *args, grad_output)
        got = fused(grad_output, input, theta, size, *args)
        np.testing.assert_allclose(got[0], output, err_msg="output", **tolerances(dtype, "sampled"))
        np.testing.assert_allclose(got[1], grad_input, err_msg="grad_input", **tolerances(dtype, "sampled"))
        assert_theta_gradient_close(got[2], grad_theta, dtype)


# ---------------------------------------------------------------- finite differences
@pytest.mark.parametrize(COMBO_ARGS, COMBOS)
def test_gradients_match_finite_differences(rng, dim, mode, padding_mode, align_corners):
    input = rng.standard_normal((2, 2) + (4, 5, 6)[-dim:])
    size = (2, 2) + (3, 4, 5)[-dim:]
    theta = random_theta(rng, 2, dim, spread=0.2)
    weights = rng.standard_normal(size)
    args = (mode, padding_mode, align_corners)

    def loss_of_input(x):
        return float(np.sum(stn_numba.affine_grid_sample(x, theta, size, *args) * weights))

    def loss_of_theta(t):
        return float(np.sum(stn_numba.affine_grid_sample(input, t, size, *args) * weights))

    grad_input, grad_theta = stn_numba.affine_grid_sample_backward(weights, input, theta, size, *args)
    np.testing.assert_allclose(grad_input, reference.central_difference(loss_of_input, input), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(grad_theta, reference.central_difference(loss_of_theta, theta), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- determinism
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim, mode, input_requires_grad", [(2, "bilinear", True), (2, "bilinear", False),
                                                            (2, "bicubic", True), (3, "bilinear", True)])
def test_backward_is_bitwise_deterministic(rng, results_for_every_thread_count, dim, mode, input_requires_grad,
                                           dtype):
    """Several images, blocks and (2-D) private chunks; no bit may depend on the thread count."""
    if dim == 2:
        input_shape, out_spatial = (1, 2, 16, 16), (128, 256)  # 2 chunks of 16384 points
    else:
        input_shape, out_spatial = (3, 2, 6, 6, 6), (8, 8, 9)
    input, theta, size, grad_output = random_case(rng, dim, dtype, input_shape, out_spatial)
    args = (mode, "border", False)
    results = results_for_every_thread_count(
        lambda: fused(grad_output, input, theta, size, *args, input_requires_grad=input_requires_grad))
    for result in results[1:]:
        for got, first in zip(result, results[0]):
            np.testing.assert_array_equal(got, first)


@pytest.mark.parametrize("name", ["input", "theta", "grad_output"])
def test_layouts_give_the_same_result(rng, layout_variants, compiled_specialisations, name):
    arrays = dict(zip(("input", "theta", "size", "grad_output"), random_case(rng, 2, np.float32)))
    args = ("bicubic", "reflection", False)
    expected = fused(arrays["grad_output"], arrays["input"], arrays["theta"], arrays["size"], *args)
    compiled = compiled_specialisations()
    for layout, variant in layout_variants(arrays[name]).items():
        case = {**arrays, name: variant}
        got = fused(case["grad_output"], case["input"], case["theta"], case["size"], *args)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e, err_msg=f"{name} {layout}")
    # every layout reaches the kernels as the same C-contiguous, writeable array type
    assert compiled_specialisations() - compiled == set()


# ---------------------------------------------------------------- empty shapes
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("input_shape, size", [
    ((0, 2, 3, 4), (0, 2, 5, 2)),
    ((0, 2, 3, 4, 2), (0, 2, 5, 1, 3)),
    ((2, 2, 3, 4), (2, 2, 0, 5)),
    ((2, 0, 3, 4), (2, 0, 3, 4)),
    ((2, 2, 3, 4, 2), (2, 2, 2, 0, 3)),
])
def test_empty_batch_channels_or_output(input_shape, size, dtype):
    dim = len(size) - 2
    input = np.ones(input_shape, dtype)
    theta = np.broadcast_to(np.eye(dim, dim + 1), (size[0], dim, dim + 1)).astype(dtype)
    output = stn_numba.affine_grid_sample(input, theta, size)
    assert output.shape == size and output.dtype == dtype
    grad_input, grad_theta = stn_numba.affine_grid_sample_backward(np.ones(size, dtype), input, theta, size)
    assert grad_input.shape == input_shape and grad_input.dtype == dtype and not grad_input.any()
    assert grad_theta.shape == theta.shape and grad_theta.dtype == dtype and not grad_theta.any()


# ---------------------------------------------------------------- validation
GOOD = dict(input=np.zeros((2, 3, 4, 5)), theta=np.zeros((2, 2, 3)), size=(2, 3, 6, 7))


@pytest.mark.parametrize("change, error, message", [
    (dict(input=np.zeros((2, 3, 4))), ValueError, "input must be 4-D"),
    (dict(theta=np.zeros((2, 6))), ValueError, "theta must be a 3-D array"),
    (dict(theta=np.zeros((2, 3, 4))), ValueError, r"theta must have shape \(2, 2, 3\)"),
    (dict(theta=np.zeros((1, 2, 3))), ValueError, r"theta must have shape \(2, 2, 3\)"),
    (dict(size=(2, 3, 6, 7, 8)), ValueError, "size must have 4 entries"),
    (dict(size=(3, 3, 6, 7)), ValueError, r"size\[0\] must be input's batch size N \(2\)"),
    (dict(size=(2, 1, 6, 7)), ValueError, r"size\[1\] must be input's channel count C \(3\)"),
    (dict(size=(2, 3, -1, 7)), ValueError, "size must not contain negative"),
    (dict(size=(2, 3, 6.5, 7)), TypeError, "size must be a sequence of ints"),
    (dict(size=None), TypeError, "size must be a sequence of ints"),
    (dict(theta=np.zeros((2, 2, 3), np.float32)), TypeError, "input, theta must share one dtype"),
    (dict(theta=np.zeros((2, 2, 3), np.int64)), TypeError, "theta must have dtype float32 or float64"),
    (dict(input=np.zeros((2, 3, 0, 5))), ValueError, "input must have non-empty spatial dimensions"),
    (dict(mode="area"), ValueError, "mode must be one of"),
    (dict(padding_mode="wrap"), ValueError, "padding_mode must be one of"),
    (dict(align_corners="yes"), TypeError, "align_corners must be True or False"),
])
def test_bad_arguments_are_refused(change, error, message):
    arguments = {**GOOD, **change}
    with pytest.raises(error, match=message):
        stn_numba.affine_grid_sample(**arguments)
    grad_output = np.zeros(GOOD["size"])
    with pytest.raises(error, match=message):
        stn_numba.affine_grid_sample_backward(grad_output, **arguments)


@pytest.mark.parametrize("grad_output, error, message", [
    (np.zeros((2, 3, 6, 6)), ValueError, r"grad_output must have shape \(2, 3, 6, 7\)"),
    (np.zeros((2, 3, 6, 7), np.float32), TypeError, "grad_output, input must share one dtype"),
])
def test_bad_grad_output_is_refused(grad_output, error, message):
    with pytest.raises(error, match=message):
        stn_numba.affine_grid_sample_backward(grad_output, **GOOD)


# ---------------------------------------------------------------- non-finite theta
NONFINITE = [(0, 0, 2, np.nan), (0, 1, 1, np.inf), (1, 0, 2, -np.inf), (0, 0, 0, np.inf), (1, 1, 0, 1e38),
             (1, 0, 1, -1e38), (0, 1, 2, 3e9)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(COMBO_ARGS, COMBOS)
def test_nonfinite_and_huge_theta_follow_the_rule(rng, dim, mode, padding_mode, align_corners, dtype):
    """NaN, ±Inf and huge entries: the grid path's values (its non-finite rule), finite gradients."""
    args = (mode, padding_mode, align_corners)
    input, theta, size, grad_output = random_case(rng, dim, dtype)
    with np.errstate(over="ignore"):
        for n, row, column, value in NONFINITE:
            theta[n, row, column] = value
    with np.errstate(invalid="ignore", over="ignore"):
        expected = unfused(grad_output, input, theta, size, *args)
    got = fused(grad_output, input, theta, size, *args)
    for array in got:
        assert np.isfinite(array).all()
    np.testing.assert_array_equal(got[0], expected[0], err_msg="output")
    np.testing.assert_array_equal(got[1], expected[1], err_msg="grad_input")
    assert_theta_gradient_close(got[2], expected[2], dtype)


def test_nan_theta_samples_nothing(rng):
    input, theta, size, grad_output = random_case(rng, 2, np.float64)
    theta[1, 1, 2] = np.nan
    output, grad_input, grad_theta = fused(grad_output, input, theta, size, "bilinear", "border", False)
    assert not output[1].any() and not grad_input[1].any() and not grad_theta[1].any()
    assert output[0].any() and grad_theta[0].any()


# ---------------------------------------------------------------- the tape op and the layer
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim, mode", [(2, "bicubic"), (3, "bilinear")])
def test_tape_op_equals_affine_grid_then_grid_sample(rng, dim, mode, dtype):
    input, theta, size, weights = random_case(rng, dim, dtype)
    args = (mode, "reflection", True)
    results = []
    for op in ("fused", "unfused"):
        x, t = Tensor(input.copy(), requires_grad=True), Tensor(theta.copy(), requires_grad=True)
        if op == "fused":
            out = F.affine_grid_sample(x, t, size, *args)
        else:
            out = F.grid_sample(x, F.affine_grid(t, size, args[2]), *args)
        (out * Tensor(weights)).sum().backward()
        assert out.dtype == dtype and x.grad.dtype == dtype and t.grad.dtype == dtype
        results.append((out.data, x.grad, t.grad))
    (out, grad_input, grad_theta), expected = results
    np.testing.assert_array_equal(out, expected[0])
    np.testing.assert_array_equal(grad_input, expected[1])
    assert_theta_gradient_close(grad_theta, expected[2], dtype)


def test_tape_op_computes_the_input_gradient_only_when_needed(rng, monkeypatch):
    calls = []
    original = sampling.affine_grid_sample_backward

    def spy(*args, **kwargs):
        calls.append(kwargs["input_requires_grad"])
        return original(*args, **kwargs)

    monkeypatch.setattr(sampling, "affine_grid_sample_backward", spy)
    input, theta, size, _ = random_case(rng, 2, np.float64)
    x, t = Tensor(input), Tensor(theta, requires_grad=True)
    F.affine_grid_sample(x, t, size).sum().backward()
    assert calls == [False] and x.grad is None and t.grad is not None
    x, t = Tensor(input, requires_grad=True), Tensor(theta)
    F.affine_grid_sample(x, t, size).sum().backward()
    assert calls == [False, True] and x.grad is not None and t.grad is None


def test_tape_op_refuses_non_tensors(rng):
    input, theta, size, _ = random_case(rng, 2, np.float64)
    with pytest.raises(TypeError, match="theta must be a stn_numba.Tensor"):
        F.affine_grid_sample(Tensor(input), theta, size)


def test_affine_spatial_transformer_uses_the_fused_op(rng, monkeypatch):
    calls = []
    original = sampling.affine_grid_sample

    def spy(*args, **kwargs):
        calls.append(args[2])
        return original(*args, **kwargs)

    monkeypatch.setattr(sampling, "affine_grid_sample", spy)
    layer = nn.SpatialTransformer(nn.Flatten(), "affine", output_size=(3, 4), in_features=2 * 5 * 6,
                                  dtype=np.float64)
    layer.regressor.weight.data[...] = rng.uniform(-0.01, 0.01, layer.regressor.weight.shape)
    input = Tensor(rng.standard_normal((2, 2, 5, 6)))
    output = layer(input)
    assert calls == [(2, 2, 3, 4)]
    theta = layer.localise(input).data.reshape(-1, 2, 3)
    expected = stn_numba.grid_sample(input.data, stn_numba.affine_grid(theta, (2, 2, 3, 4)))
    np.testing.assert_array_equal(output.data, expected)
    output.sum().backward()
    assert layer.regressor.weight.grad is not None and np.isfinite(layer.regressor.weight.grad).all()
