"""jacobian_determinant and its backward against numpy.gradient and float64 central differences."""

import numba
import numpy as np
import pytest

import reference
import stn_numba.nn.functional as F
from sampler_cases import DTYPES
from stn_numba import fields
from stn_numba.tensor import Tensor
from tolerances import tolerances

SHAPES = [(2, 2, 5, 6), (1, 2, 1, 4), (1, 2, 2, 3), (2, 3, 3, 4, 5), (1, 3, 1, 2, 4)]


def reference_determinant(u):
    """det(I + ∇u) with numpy.gradient's differences (0 along an axis of size 1) and numpy.linalg.det."""
    n_batch, axes = u.shape[:2]
    spatial = u.shape[2:]
    jacobian = np.zeros((n_batch, *spatial, axes, axes))
    for i in range(axes):
        for a in range(axes):
            if spatial[a] > 1:
                jacobian[..., i, a] = np.gradient(u[:, i], axis=1 + a)
            jacobian[..., i, a] += 1.0 if i == a else 0.0
    return np.linalg.det(jacobian)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_determinant_matches_numpy(rng, shape, dtype):
    u = rng.uniform(-0.8, 0.8, shape)
    got = fields.jacobian_determinant(u.astype(dtype))
    assert got.dtype == dtype and got.shape == (shape[0],) + shape[2:]
    np.testing.assert_allclose(got, reference_determinant(u), **tolerances(dtype, "rounding"))


@pytest.mark.parametrize("dim", [2, 3])
def test_affine_fields_have_the_matrix_determinant_everywhere(rng, dim):
    """u(p) = (A - I) p: every difference is exact, the borders' too."""
    matrix = np.eye(dim) + rng.uniform(-0.6, 0.6, (dim, dim))
    points = np.stack(np.mgrid[tuple(slice(0, s) for s in (3, 4, 5)[-dim:])]).astype(np.float64)
    u = np.einsum("ij,j...->i...", matrix - np.eye(dim), points)[None]
    np.testing.assert_allclose(fields.jacobian_determinant(u), np.linalg.det(matrix), rtol=1e-12)
    folded = u.copy()
    folded[0, -1] = -2.0 * points[-1]  # x -> -x: a fold everywhere
    assert (fields.jacobian_determinant(folded) < 0).all() == (np.linalg.det(matrix) > 0)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward_matches_finite_differences(rng, shape):
    u = rng.uniform(-0.8, 0.8, shape)
    weights = rng.standard_normal((shape[0],) + shape[2:])

    def loss(field):
        return float(np.sum(fields.jacobian_determinant(field) * weights))

    np.testing.assert_allclose(fields.jacobian_determinant_backward(weights, u),
                               reference.central_difference(loss, u), rtol=1e-7, atol=1e-8)


def test_backward_gives_the_same_bits_for_any_thread_count(rng):
    u = rng.uniform(-0.8, 0.8, (2, 3, 9, 10, 11)).astype(np.float32)
    weights = rng.standard_normal((2, 9, 10, 11)).astype(np.float32)
    saved = numba.get_num_threads()
    try:
        results = []
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            results.append(fields.jacobian_determinant_backward(weights, u))
    finally:
        numba.set_num_threads(saved)
    for other in results[1:]:
        np.testing.assert_array_equal(other.view(np.uint32), results[0].view(np.uint32))


def test_tape_op_gives_the_backward_function_gradient(rng):
    u = rng.uniform(-0.5, 0.5, (2, 2, 4, 5))
    weights = rng.standard_normal((2, 4, 5))
    field = Tensor(u, requires_grad=True)
    (F.jacobian_determinant(field) * Tensor(weights)).sum().backward()
    np.testing.assert_array_equal(field.grad, fields.jacobian_determinant_backward(weights, u))


def test_empty_fields_give_empty_results():
    assert fields.jacobian_determinant(np.zeros((0, 2, 3, 4))).shape == (0, 3, 4)
    assert fields.jacobian_determinant_backward(np.zeros((2, 0, 4)), np.zeros((2, 2, 0, 4))).shape == (2, 2, 0, 4)


@pytest.mark.parametrize("call, error, message", [
    (lambda: fields.jacobian_determinant(np.zeros((1, 3, 4, 5))), ValueError,
     r"displacement must have shape \(N, 2, H, W\) or \(N, 3, D, H, W\)"),
    (lambda: fields.jacobian_determinant(np.zeros((2, 4, 5))), ValueError, "displacement must have shape"),
    (lambda: fields.jacobian_determinant(np.zeros((1, 2, 4, 5), np.int32)), TypeError,
     "displacement must have dtype float32 or float64"),
    (lambda: fields.jacobian_determinant_backward(np.zeros((1, 4, 4)), np.zeros((1, 2, 4, 5))), ValueError,
     r"grad_output must have shape \(1, 4, 5\)"),
    (lambda: fields.jacobian_determinant_backward(np.zeros((1, 4, 5), np.float32), np.zeros((1, 2, 4, 5))),
     TypeError, "grad_output, displacement must share one dtype"),
])
def test_bad_arguments_get_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
