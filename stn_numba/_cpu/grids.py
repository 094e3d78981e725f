"""CPU kernels of the grid generators (affine, projective, thin-plate spline,
attention and similarity) and their backward.

The grid generator of Jaderberg et al., "Spatial Transformer Networks"
(NeurIPS 2015): each output point is ``theta @ (x, y[, z], 1)`` over the
normalised base coordinates (`stn_numba._coords.affine_base_coordinate`).
The 2-D kernels view the grid as a 3-D one with depth 1, so one compiled
implementation per dtype serves both.

Determinism of the backward: the rows (one depth and height index each) of an
image are cut into chunks of about ``_CHUNK_POINTS`` points, from the shapes
only; each chunk sums its rows into private partial sums, which are then added
in chunk order.

Overflow: the backward sums in float64 whatever the dtype and rounds once at
the end. With float32 values no partial sum can overflow, so a row's sum
times its base coordinate y (or z) is never ``Inf * 0``, and a coefficient
whose value overflows float32 becomes ±Inf, never NaN. (float64 gradients
near the largest float64 can still overflow a row sum.)
"""

import numpy as np
from numba import prange

from .._codegen import njit
from .._coords import (
    affine_base_coordinate,
    affine_line,
    attention_to_affine,
    attention_to_affine_backward,
    line_point,
    projective_lines,
    projective_point,
    projective_point_gradient,
    similarity_to_affine,
    similarity_to_affine_backward,
)

_CHUNK_POINTS = 65536  # points per backward chunk


@njit(cache=True, nogil=True)
def _base_coordinates(size, align_corners, like):
    """The normalised base coordinates of one axis, in ``like``'s dtype."""
    out = np.empty(size, like.dtype)
    for i in range(size):
        out[i] = affine_base_coordinate(i, size, align_corners, out.dtype.type(0))
    return out


@njit(cache=True, nogil=True)
def _sum_chunks(partial, total):
    """``total[n] = sum over chunks of partial[n, chunk]``, in chunk order
    (there is at least one chunk), rounded to ``total``'s dtype at the end."""
    n_batch, chunks, rows, columns = partial.shape
    for n in range(n_batch):
        for r in range(rows):
            for k in range(columns):
                value = partial[n, 0, r, k]
                for chunk in range(1, chunks):
                    value += partial[n, chunk, r, k]
                total[n, r, k] = value


@njit(inline="always")
def _affine_grid_rows(theta, grid, xs, ys, zs, height, first, last):
    """Rows ``first..last-1`` (over images and depth * height) of the grid."""
    rows, width, axes = grid.shape[1:]
    for item in range(first, last):
        n = item // rows
        row = item % rows
        y = ys[row % height]
        z = zs[row // height]
        for a in range(axes):
            line = affine_line(theta, n, a, y, z, axes)
            for w in range(width):
                grid[n, row, w, a] = line_point(line, xs[w])


_MAX_TASKS = 64  # parallel tasks of affine_grid (any value gives the same grid)


def _make_affine_grid(parallel):
    """``theta`` (N, A, A+1) into ``grid`` (N, depth*height, W, A): rows over
    the threads, or (small work) serially on the calling thread."""
    loop = prange if parallel else range

    @njit(parallel=parallel, cache=True, nogil=True)
    def affine_grid(theta, grid, depth, height, align_corners):
        n_batch, rows, width, axes = grid.shape
        xs = _base_coordinates(width, align_corners, grid)
        ys = _base_coordinates(height, align_corners, grid)
        zs = _base_coordinates(depth, align_corners, grid)
        items = n_batch * rows
        tasks = min(items, _MAX_TASKS) if parallel else 1
        for task in loop(tasks):
            _affine_grid_rows(theta, grid, xs, ys, zs, height,
                              task * items // tasks, (task + 1) * items // tasks)

    return affine_grid


_affine_grid = _make_affine_grid(True)
_affine_grid_serial = _make_affine_grid(False)
_SERIAL_POINTS = 1 << 14  # grids smaller than this are made on the calling thread


@njit(parallel=True, cache=True, nogil=True)
def _affine_grid_backward(grad_grid, grad_theta, depth, height, align_corners):
    """``grad_theta[n, a, k] = sum over points of grad_grid[..., a] * base_k``
    with base = (x, y[, z], 1), summed in float64."""
    n_batch, rows, width, axes = grad_grid.shape
    # the dtype's base coordinates (the forward's), held in float64
    xs = _base_coordinates(width, align_corners, grad_grid).astype(np.float64)
    ys = _base_coordinates(height, align_corners, grad_grid).astype(np.float64)
    zs = _base_coordinates(depth, align_corners, grad_grid).astype(np.float64)
    rows_per_chunk = max(1, _CHUNK_POINTS // max(1, width))
    chunks = max(1, (rows + rows_per_chunk - 1) // rows_per_chunk)
    partial = np.zeros((n_batch, chunks, axes, axes + 1), np.float64)
    for item in prange(n_batch * chunks):
        n = item // chunks
        chunk = item % chunks
        sums = partial[n, chunk]
        for row in range(chunk * rows_per_chunk,
                         min(rows, (chunk + 1) * rows_per_chunk)):
            y = ys[row % height]
            z = zs[row // height]
            for a in range(axes):
                plain = 0.0
                weighted = 0.0
                for w in range(width):
                    g = np.float64(grad_grid[n, row, w, a])
                    plain += g
                    weighted += g * xs[w]
                sums[a, 0] += weighted
                sums[a, 1] += plain * y
                if axes == 3:
                    sums[a, 2] += plain * z
                sums[a, axes] += plain
    _sum_chunks(partial, grad_theta)


def affine_grid_2d(theta, grid, align_corners):
    """``theta`` (N, 2, 3) into ``grid`` (N, H, W, 2), like
    ``torch.nn.functional.affine_grid``."""
    n_batch, height, width, _ = grid.shape
    kernel = _affine_grid_serial if grid.size < _SERIAL_POINTS else _affine_grid
    kernel(theta, grid.reshape(n_batch, height, width, 2), 1, height, align_corners)


def affine_grid_3d(theta, grid, align_corners):
    """``theta`` (N, 3, 4) into ``grid`` (N, D, H, W, 3)."""
    n_batch, depth, height, width, _ = grid.shape
    kernel = _affine_grid_serial if grid.size < _SERIAL_POINTS else _affine_grid
    kernel(theta, grid.reshape(n_batch, depth * height, width, 3), depth, height, align_corners)


@njit(cache=True, nogil=True)
def _affine_grid_box(theta, grid, xs, ys, zs, height):
    _affine_grid_rows(theta, grid, xs, ys, zs, height, 0, grid.shape[0] * grid.shape[1])


def affine_grid_part(theta, grid, whole, origin, align_corners):
    """The values of ``affine_grid(theta)`` for an output of spatial size
    ``whole`` in the box at ``origin`` (both in array order) of ``grid``'s
    spatial shape, into ``grid`` (N, *box, A): bitwise those of the whole
    grid there (an output chunk's points, for `stn_numba.dask`)."""
    n_batch, spatial = grid.shape[0], grid.shape[-1]
    pad = 3 - spatial
    depth, height, width = (1,) * pad + tuple(grid.shape[1:-1])
    zs, ys, xs = (_base_coordinates(size, align_corners, grid)[first:first + length]
                  for size, first, length in zip((1,) * pad + tuple(whole), (0,) * pad + tuple(origin),
                                                 (depth, height, width)))
    _affine_grid_box(theta, grid.reshape(n_batch, depth * height, width, spatial), xs, ys, zs, height)


@njit(cache=True, nogil=True)
def affine_grid_2d_backward(grad_grid, grad_theta, align_corners):
    """Overwrite ``grad_theta`` (N, 2, 3) from ``grad_grid`` (N, H, W, 2)."""
    n_batch, height, width, _ = grad_grid.shape
    _affine_grid_backward(grad_grid.reshape(n_batch, height, width, 2),
                          grad_theta, np.int64(1), height, align_corners)


@njit(cache=True, nogil=True)
def affine_grid_3d_backward(grad_grid, grad_theta, align_corners):
    """Overwrite ``grad_theta`` (N, 3, 4) from ``grad_grid`` (N, D, H, W, 3)."""
    n_batch, depth, height, width, _ = grad_grid.shape
    _affine_grid_backward(
        grad_grid.reshape(n_batch, depth * height, width, 3), grad_theta,
        depth, height, align_corners)


# ------------------------------------------------------------- projective grid
@njit(parallel=True, cache=True, nogil=True)
def projective_grid_2d(theta, grid, align_corners):
    """``theta`` (N, 3, 3) into ``grid`` (N, H, W, 2): ``(h_1 · p, h_2 · p) / (h_3 · p)``, p = (x, y, 1).

    The denominator is kept away from 0 (`stn_numba._coords.projective_point`).
    """
    n_batch, height, width, _ = grid.shape
    xs = _base_coordinates(width, align_corners, grid)
    ys = _base_coordinates(height, align_corners, grid)
    for item in prange(n_batch * height):
        n = item // height
        row = item % height
        lines = projective_lines(theta, n, ys[row])
        for w in range(width):
            source_x, source_y = projective_point(lines, xs[w])
            grid[n, row, w, 0] = source_x
            grid[n, row, w, 1] = source_y


@njit(parallel=True, cache=True, nogil=True)
def projective_grid_2d_backward(grad_grid, theta, grad_theta, align_corners):
    """Overwrite ``grad_theta`` (N, 3, 3) from ``grad_grid`` (N, H, W, 2) by the quotient rule.

    Per point, with the source point s = (h_1 · p, h_2 · p) / w:
    row i < 2 of theta gets ``g_i p / w``, row 2 gets ``-(g · s) p / w``
    (0 where w was clamped), in float64 (`projective_point_gradient`).
    Chunked and summed like `_affine_grid_backward`.
    """
    n_batch, height, width, _ = grad_grid.shape
    xs = _base_coordinates(width, align_corners, grad_grid)
    ys = _base_coordinates(height, align_corners, grad_grid)
    rows_per_chunk = max(1, _CHUNK_POINTS // max(1, width))
    chunks = max(1, (height + rows_per_chunk - 1) // rows_per_chunk)
    partial = np.zeros((n_batch, chunks, 3, 3), np.float64)
    for item in prange(n_batch * chunks):
        n = item // chunks
        chunk = item % chunks
        sums = partial[n, chunk]
        for row in range(chunk * rows_per_chunk, min(height, (chunk + 1) * rows_per_chunk)):
            # Row sums of the three per-point factors, plain and times x.
            plain_x = plain_y = plain_w = 0.0
            weighted_x = weighted_y = weighted_w = 0.0
            for w in range(width):
                x = np.float64(xs[w])
                factor_x, factor_y, factor_w = projective_point_gradient(
                    theta, n, xs[w], ys[row], grad_grid[n, row, w, 0], grad_grid[n, row, w, 1])
                plain_x += factor_x
                plain_y += factor_y
                plain_w += factor_w
                weighted_x += factor_x * x
                weighted_y += factor_y * x
                weighted_w += factor_w * x
            y = np.float64(ys[row])
            sums[0, 0] += weighted_x
            sums[0, 1] += plain_x * y
            sums[0, 2] += plain_x
            sums[1, 0] += weighted_y
            sums[1, 1] += plain_y * y
            sums[1, 2] += plain_y
            sums[2, 0] += weighted_w
            sums[2, 1] += plain_w * y
            sums[2, 2] += plain_w
    _sum_chunks(partial, grad_theta)


# ---------------------------------------------------------- thin-plate spline
# BLAS rather than Numba: the spline is a matrix product, which np.matmul ran
# several times faster than Numba loops here. OpenBLAS never splits a product's
# reduction across threads, so these are bitwise identical for any thread count.
def tps_grid_2d(matrix, theta, grid):
    """``grid[n] = matrix @ theta[n]``: ``matrix`` (P, K), ``theta`` (N, K, 2), ``grid`` (N, P, 2).

    The thin-plate spline as a linear map; ``matrix`` is built and cached by
    `stn_numba.tps_grid`.
    """
    np.matmul(matrix, theta, out=grid)


def tps_grid_2d_backward(matrix, grad_grid, grad_theta):
    """Overwrite ``grad_theta`` (N, K, 2) with ``matrixᵀ @ grad_grid[n]`` (``grad_grid`` (N, P, 2))."""
    np.matmul(matrix.T, grad_grid, out=grad_theta)


# ------------------------------------------------- attention and similarity
@njit(parallel=True, cache=True, nogil=True)
def attention_to_affine_2d(params, theta):
    """Rows (s, tx, ty) of ``params`` (N, 3) into ``theta`` (N, 2, 3) = [[s, 0, tx], [0, s, ty]]."""
    for n in prange(params.shape[0]):
        attention_to_affine(params, theta, n)


@njit(parallel=True, cache=True, nogil=True)
def attention_to_affine_2d_backward(grad_theta, grad_params):
    """Overwrite ``grad_params`` (N, 3) with (g00 + g11, g02, g12) of ``grad_theta`` (N, 2, 3)."""
    for n in prange(grad_theta.shape[0]):
        attention_to_affine_backward(grad_theta, grad_params, n)


@njit(parallel=True, cache=True, nogil=True)
def similarity_to_affine_2d(params, theta):
    """Rows (s, angle, tx, ty) of ``params`` (N, 4) into ``theta`` (N, 2, 3) = [s R(angle) | (tx, ty)]."""
    for n in prange(params.shape[0]):
        similarity_to_affine(params, theta, n)


@njit(parallel=True, cache=True, nogil=True)
def similarity_to_affine_2d_backward(grad_theta, params, grad_params):
    """Overwrite ``grad_params`` (N, 4) with the chain rule through `similarity_to_affine_2d`."""
    for n in prange(params.shape[0]):
        similarity_to_affine_backward(grad_theta, params, grad_params, n)
