"""grid_push, grid_count and their backwards: the sampler's adjoint (splatting).

Checked against the loop reference written from the taps
(``reference.grid_push``), the adjoint identity ⟨push(v), u⟩ = ⟨v, sample(u)⟩,
float64 central differences, and torch's autograd of grid_sample with respect
to its input.
"""

import numba
import numpy as np
import pytest

import reference
import stn_numba
import stn_numba.nn.functional as F
from sampler_cases import ALIGN, COMBO_ARGS, COMBOS, DTYPES, TORCH_COMBOS
from stn_numba.tensor import Tensor
from test_sampling import random_case, smooth_case, special_case
from tolerances import tolerances


def cases(rng, dim, mode, align_corners, dtype=np.float64):
    """(input, grid, values): random points inside and outside, and points on pixels and borders."""
    return [random_case(rng, dim, dtype, spread=1.5), special_case(rng, dim, mode, align_corners, dtype)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(COMBO_ARGS, COMBOS)
def test_push_matches_reference(rng, dim, mode, padding_mode, align_corners, dtype):
    args = (mode, padding_mode, align_corners)
    for input, grid, values in cases(rng, dim, mode, align_corners, dtype):
        pushed = stn_numba.grid_push(values, grid, input.shape, *args)
        assert pushed.shape == input.shape and pushed.dtype == dtype
        np.testing.assert_allclose(pushed, reference.grid_push(values, grid, input.shape, *args),
                                   **tolerances(dtype, "sampled"))


@pytest.mark.parametrize(COMBO_ARGS, COMBOS)
def test_push_is_the_adjoint_of_sample(rng, dim, mode, padding_mode, align_corners):
    args = (mode, padding_mode, align_corners)
    for input, grid, values in cases(rng, dim, mode, align_corners):
        pushed_dot = np.vdot(stn_numba.grid_push(values, grid, input.shape, *args), input)
        sampled_dot = np.vdot(values, stn_numba.grid_sample(input, grid, *args))
        assert abs(pushed_dot - sampled_dot) <= 1e-12 * max(1.0, abs(sampled_dot))


@pytest.mark.parametrize(COMBO_ARGS, TORCH_COMBOS)
def test_push_is_torchs_input_gradient(rng, dim, mode, padding_mode, align_corners):
    pytest.importorskip("torch")
    args = (mode, padding_mode, align_corners)
    for input, grid, values in cases(rng, dim, mode, align_corners):
        _, grad_input, _ = reference.torch_grid_sample(input, grid, *args, grad_output=values)
        np.testing.assert_allclose(stn_numba.grid_push(values, grid, input.shape, *args), grad_input,
                                   rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize(COMBO_ARGS, COMBOS)
def test_push_gradients_match_finite_differences(rng, dim, mode, padding_mode, align_corners):
    weights, grid, values = smooth_case(rng, dim, align_corners)  # the loss weighs the pushed image
    args = (mode, padding_mode, align_corners)

    def loss_of_values(v):
        return float(np.sum(stn_numba.grid_push(v, grid, weights.shape, *args) * weights))

    def loss_of_grid(g):
        return float(np.sum(stn_numba.grid_push(values, g, weights.shape, *args) * weights))

    grad_values, grad_grid = stn_numba.grid_push_backward(weights, values, grid, *args)
    np.testing.assert_allclose(grad_values, reference.central_difference(loss_of_values, values),
                               rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(grad_grid, reference.central_difference(loss_of_grid, grid), rtol=1e-6, atol=1e-6)
    skipped, grid_only = stn_numba.grid_push_backward(weights, values, grid, *args, values_requires_grad=False)
    assert skipped is None
    np.testing.assert_array_equal(grid_only, grad_grid)


@pytest.mark.parametrize(COMBO_ARGS, COMBOS)
def test_count_is_the_push_of_ones_with_exact_gradients(rng, dim, mode, padding_mode, align_corners):
    weights, grid, _ = smooth_case(rng, dim, align_corners)
    args = (mode, padding_mode, align_corners)
    input_shape = (1, 3) + weights.shape[2:]  # the count is one channel whatever C is
    count = stn_numba.grid_count(grid, input_shape, *args)
    ones = np.ones((1, 1) + grid.shape[1:-1])
    np.testing.assert_allclose(count, reference.grid_push(ones, grid, (1, 1) + input_shape[2:], *args),
                               rtol=1e-12, atol=1e-12)
    weights = weights[:, :1]

    def loss(g):
        return float(np.sum(stn_numba.grid_count(g, input_shape, *args) * weights))

    np.testing.assert_allclose(stn_numba.grid_count_backward(weights, grid, *args),
                               reference.central_difference(loss, grid), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("align_corners", ALIGN)
def test_identity_grid_counts_every_pixel_once(dim, align_corners):
    size = (2, 1) + (3, 4, 5)[-dim:]
    theta = np.tile(np.eye(dim, dim + 1), (2, 1, 1))
    grid = stn_numba.affine_grid(theta, size, align_corners)
    for mode in ("bilinear", "nearest"):
        np.testing.assert_allclose(stn_numba.grid_count(grid, size, mode, align_corners=align_corners), 1.0,
                                   rtol=1e-12)


def test_push_gives_the_same_bits_for_any_thread_count(rng):
    values = rng.standard_normal((2, 3, 40, 48)).astype(np.float32)
    grid = rng.uniform(-1.2, 1.2, (2, 40, 48, 2)).astype(np.float32)
    saved = numba.get_num_threads()
    try:
        pushed = []
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            pushed.append(stn_numba.grid_push(values, grid, (2, 3, 33, 31)))
    finally:
        numba.set_num_threads(saved)
    for other in pushed[1:]:
        np.testing.assert_array_equal(other.view(np.uint32), pushed[0].view(np.uint32))


def test_no_points_push_nothing():
    pushed = stn_numba.grid_push(np.ones((2, 3, 0, 4)), np.zeros((2, 0, 4, 2)), (2, 3, 5, 6))
    assert pushed.shape == (2, 3, 5, 6) and not pushed.any()
    grad_values, grad_grid = stn_numba.grid_push_backward(np.ones((2, 3, 5, 6)), np.ones((2, 3, 0, 4)),
                                                          np.zeros((2, 0, 4, 2)))
    assert grad_values.shape == (2, 3, 0, 4) and grad_grid.shape == (2, 0, 4, 2)


def test_tape_ops_give_the_backward_functions_gradients(rng):
    input, grid, values = random_case(rng, 2)
    weights = rng.standard_normal(input.shape)
    values_t, grid_t = Tensor(values, requires_grad=True), Tensor(grid, requires_grad=True)
    (F.grid_push(values_t, grid_t, input.shape, "bicubic", "reflection") * Tensor(weights)).sum().backward()
    expected = stn_numba.grid_push_backward(weights, values, grid, "bicubic", "reflection")
    np.testing.assert_array_equal(values_t.grad, expected[0])
    np.testing.assert_array_equal(grid_t.grad, expected[1])

    count_weights = weights[:, :1]
    grid_t = Tensor(grid, requires_grad=True)
    (F.grid_count(grid_t, input.shape, align_corners=True) * Tensor(count_weights)).sum().backward()
    np.testing.assert_array_equal(grid_t.grad, stn_numba.grid_count_backward(count_weights, grid,
                                                                             align_corners=True))


def _bad_calls():
    values, grid = np.ones((2, 3, 4, 5)), np.zeros((2, 4, 5, 2))
    push, count = stn_numba.grid_push, stn_numba.grid_count
    return [
        (lambda: push(values[0], grid, (2, 3, 6, 6)), ValueError, "values must be 4-D"),
        (lambda: push(values[:, :, :3], grid, (2, 3, 6, 6)), ValueError, r"values must have shape \(2, 3, 4, 5\)"),
        (lambda: push(values, grid[..., :1], (2, 3, 6, 6)), ValueError, "grid must have shape"),
        (lambda: push(values, grid, (2, 2, 6, 6)), ValueError, "input_shape must start with the \\(N, C\\)"),
        (lambda: push(values, grid, (2, 3, 6)), ValueError, r"input_shape must have 4 \(N, C, H, W\) or 5"),
        (lambda: push(values, grid, (2, 3, 6, 6, 6)), ValueError, "input_shape must have 4 entries to match"),
        (lambda: push(values, grid, (2, 3, 0, 6)), ValueError, "input_shape must have non-empty spatial"),
        (lambda: push(values, grid, (2, 3, 6.5, 6)), TypeError, "input_shape must be a sequence of ints"),
        (lambda: push(values.astype(np.float32), grid, (2, 3, 6, 6)), TypeError, "values, grid must share"),
        (lambda: push(values, grid, (2, 3, 6, 6), "linear"), ValueError, "mode must be one of"),
        (lambda: push(values, grid, (2, 3, 6, 6), padding_mode="wrap"), ValueError, "padding_mode must be"),
        (lambda: stn_numba.grid_push_backward(np.ones((2, 3, 6)), values, grid), ValueError,
         r"grad_output must have shape \(2, 3\) \+ a non-empty 2-D"),
        (lambda: count(grid, (3, 1, 6, 6)), ValueError, "grid must have 4 dimensions and input_shape's batch"),
        (lambda: stn_numba.grid_count_backward(np.ones((2, 3, 6, 6)), grid), ValueError,
         r"grad_output must have shape \(2, 1\)"),
    ]


@pytest.mark.parametrize("call, error, message", _bad_calls())
def test_bad_arguments_get_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
