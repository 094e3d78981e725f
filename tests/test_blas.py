"""The BLAS product on strided views that the convolution kernels call (stn_numba._cpu.blas.gemm)."""

import numpy as np
import pytest
from numba import njit

from stn_numba._cpu.blas import gemm


@njit(cache=True)
def _gemm(a, b, c, accumulate):
    gemm(a, b, c, accumulate)


def _views(matrix, rows, columns):
    """A (rows, columns) window of ``matrix`` with a row stride, and the transpose of such a window."""
    return [matrix[1:1 + rows, 2:2 + columns], matrix[3:3 + columns, 1:1 + rows].T]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("accumulate", [False, True])
def test_gemm_on_strided_and_transposed_views_touches_only_its_window(rng, dtype, accumulate):
    big = rng.standard_normal((12, 14)).astype(dtype)
    for a in _views(big, 4, 7):
        for b in _views(big[::-1].copy(), 7, 5):
            c = rng.standard_normal((9, 11)).astype(dtype)
            before = c.copy()
            window = c[2:6, 3:8]
            expected = a.astype(np.float64) @ b + (window if accumulate else 0)
            _gemm(a, b, window, accumulate)
            np.testing.assert_allclose(window, expected, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-5)
            outside = np.ones(c.shape, bool)
            outside[2:6, 3:8] = False
            np.testing.assert_array_equal(c[outside], before[outside])


def test_gemm_without_accumulate_ignores_what_c_held(rng):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    c = np.full((3, 2), np.nan)
    _gemm(a, b, c, False)
    np.testing.assert_allclose(c, a @ b, rtol=1e-13)


def test_gemm_with_an_empty_inner_dimension(rng):
    c = rng.standard_normal((3, 2))
    kept = c.copy()
    _gemm(np.empty((3, 0)), np.empty((0, 2)), c, True)
    np.testing.assert_array_equal(c, kept)
    _gemm(np.empty((3, 0)), np.empty((0, 2)), c, False)
    np.testing.assert_array_equal(c, 0)


def test_convolutions_beyond_blas_sizes_are_refused_before_allocating():
    from stn_numba._cpu import conv

    x, weight = np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 1, 1))
    huge = conv.Geometry.of((1, 1, 2**16, 2**16), (1, 1), (1, 1), (0, 0), (1, 1))   # 2**32 output pixels
    with pytest.raises(ValueError, match="BLAS takes sizes up to 2\\*\\*31 - 1.*65536×65536"):
        conv.conv2d_forward(x, weight, None, huge)
    with pytest.raises(ValueError, match="BLAS takes sizes up to"):
        conv.conv2d_backward(np.zeros((1, 1, 4)), x, weight, huge)
