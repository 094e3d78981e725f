"""CPU kernels of ``affine_grid`` and its backward.

The grid generator of Jaderberg et al., "Spatial Transformer Networks"
(NeurIPS 2015): each output point is ``theta @ (x, y[, z], 1)`` over the
normalised base coordinates (`stn_numba._coords.affine_base_coordinate`).
The 2-D kernels view the grid as a 3-D one with depth 1, so one compiled
implementation per dtype serves both.

Determinism of the backward: the rows (one depth and height index each) of an
image are cut into chunks of about ``_CHUNK_POINTS`` points, from the shapes
only; each chunk sums its rows into private partial sums, which are then added
in chunk order. Summing rows first keeps float32 sums accurate.
"""

import numpy as np
from numba import njit, prange

from .._coords import affine_base_coordinate

_CHUNK_POINTS = 65536  # points per backward chunk


@njit(cache=True)
def _base_coordinates(size, align_corners, like):
    out = np.empty(size, like.dtype)
    for i in range(size):
        out[i] = affine_base_coordinate(i, size, align_corners, out.dtype.type(0))
    return out


@njit(parallel=True, cache=True)
def _affine_grid(theta, grid, depth, height, align_corners):
    """``theta`` (N, A, A+1) into ``grid`` (N, depth*height, W, A)."""
    n_batch, rows, width, axes = grid.shape
    xs = _base_coordinates(width, align_corners, grid)
    ys = _base_coordinates(height, align_corners, grid)
    zs = _base_coordinates(depth, align_corners, grid)
    for item in prange(n_batch * rows):
        n = item // rows
        row = item % rows
        y = ys[row % height]
        z = zs[row // height]
        for a in range(axes):
            offset = theta[n, a, 1] * y + theta[n, a, axes]
            if axes == 3:
                offset += theta[n, a, 2] * z
            slope = theta[n, a, 0]
            for w in range(width):
                grid[n, row, w, a] = slope * xs[w] + offset


@njit(parallel=True, cache=True)
def _affine_grid_backward(grad_grid, grad_theta, depth, height, align_corners):
    """``grad_theta[n, a, k] = sum over points of grad_grid[..., a] * base_k``
    with base = (x, y[, z], 1)."""
    n_batch, rows, width, axes = grad_grid.shape
    xs = _base_coordinates(width, align_corners, grad_grid)
    ys = _base_coordinates(height, align_corners, grad_grid)
    zs = _base_coordinates(depth, align_corners, grad_grid)
    rows_per_chunk = max(1, _CHUNK_POINTS // max(1, width))
    chunks = max(1, (rows + rows_per_chunk - 1) // rows_per_chunk)
    partial = np.zeros((n_batch, chunks, axes, axes + 1), grad_grid.dtype)
    zero = grad_grid.dtype.type(0)
    for item in prange(n_batch * chunks):
        n = item // chunks
        chunk = item % chunks
        sums = partial[n, chunk]
        for row in range(chunk * rows_per_chunk,
                         min(rows, (chunk + 1) * rows_per_chunk)):
            y = ys[row % height]
            z = zs[row // height]
            for a in range(axes):
                plain = zero
                weighted = zero
                for w in range(width):
                    g = grad_grid[n, row, w, a]
                    plain += g
                    weighted += g * xs[w]
                sums[a, 0] += weighted
                sums[a, 1] += plain * y
                if axes == 3:
                    sums[a, 2] += plain * z
                sums[a, axes] += plain
    for n in prange(n_batch):
        grad_theta[n] = 0
        for chunk in range(chunks):
            grad_theta[n] += partial[n, chunk]


@njit(cache=True)
def affine_grid_2d(theta, grid, align_corners):
    """``theta`` (N, 2, 3) into ``grid`` (N, H, W, 2), like
    ``torch.nn.functional.affine_grid``."""
    n_batch, height, width, _ = grid.shape
    _affine_grid(theta, grid.reshape(n_batch, height, width, 2), np.int64(1), height,
                 align_corners)


@njit(cache=True)
def affine_grid_3d(theta, grid, align_corners):
    """``theta`` (N, 3, 4) into ``grid`` (N, D, H, W, 3)."""
    n_batch, depth, height, width, _ = grid.shape
    _affine_grid(theta, grid.reshape(n_batch, depth * height, width, 3),
                 depth, height, align_corners)


@njit(cache=True)
def affine_grid_2d_backward(grad_grid, grad_theta, align_corners):
    """Overwrite ``grad_theta`` (N, 2, 3) from ``grad_grid`` (N, H, W, 2)."""
    n_batch, height, width, _ = grad_grid.shape
    _affine_grid_backward(grad_grid.reshape(n_batch, height, width, 2),
                          grad_theta, np.int64(1), height, align_corners)


@njit(cache=True)
def affine_grid_3d_backward(grad_grid, grad_theta, align_corners):
    """Overwrite ``grad_theta`` (N, 3, 4) from ``grad_grid`` (N, D, H, W, 3)."""
    n_batch, depth, height, width, _ = grad_grid.shape
    _affine_grid_backward(
        grad_grid.reshape(n_batch, depth * height, width, 3), grad_theta,
        depth, height, align_corners)
