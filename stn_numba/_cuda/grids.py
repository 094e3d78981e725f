"""CUDA kernels of the grid generators and their backward.

Twins of :mod:`stn_numba._cpu.grids` (affine, projective and thin-plate spline
grids; attention and similarity parameters to affine matrices): the host-side
launchers below have the CPU kernels' names and argument order, plus the
``stream`` they launch on. As on the CPU, a 2-D affine grid is a 3-D one of
depth 1, so one kernel serves both.

A grid kernel runs one thread per grid point; a parameter conversion one thread
per image. A grid's backward is a sum over every point of an image; it is a
tree of passes in which each thread adds
``_FAN_IN`` values in a fixed order: thread ``t`` of a pass over ``T`` values
adds values ``t, t + U, t + 2U, ...`` (``U = ceil(T / _FAN_IN)``), so adjacent
threads read adjacent memory. The tree depends on the shapes only, so
``grad_theta`` is bitwise identical run to run and for any launch
configuration, with no atomics. As on the CPU, the affine and projective
backward sum in float64 and round once at the end (with float32 gradients no
partial sum overflows: a sum that overflows float32 becomes ±Inf, never NaN).
"""

import numpy as np
from numba import cuda

from .._coords import (
    affine_base_coordinate,
    affine_component,
    attention_to_affine,
    attention_to_affine_backward,
    projective_lines,
    projective_point,
    projective_point_gradient,
    similarity_to_affine,
    similarity_to_affine_backward,
)
from . import launch

_FAN_IN = 32  # values one thread adds in one reduction pass


@cuda.jit(device=True)
def affine_base_point(p, depth, height, width, align_corners, like):
    """The base coordinates (x, y, z) of point ``p`` (flat over depth, height, width) of an affine grid."""
    row = p // width
    return (affine_base_coordinate(p % width, width, align_corners, like),
            affine_base_coordinate(row % height, height, align_corners, like),
            affine_base_coordinate(row // height, depth, align_corners, like))


@cuda.jit
def _affine_grid(theta, grid, depth, height, align_corners):
    """``theta`` (N, A, A+1) into ``grid`` (N, depth*height, W, A): one thread per point."""
    n_batch, rows, width, axes = grid.shape
    item = cuda.grid(1)
    if item >= n_batch * rows * width:
        return
    w = item % width
    row = (item // width) % rows
    n = item // (width * rows)
    x, y, z = affine_base_point(row * width + w, depth, height, width, align_corners, grid.dtype.type(0))
    for a in range(axes):
        grid[n, row, w, a] = affine_component(theta, n, a, x, y, z)


@cuda.jit(device=True)
def _pass_item(n_batch, chunks, lanes):
    """This thread's (n, t, lane) in a reduction pass over (N, T, lanes) work items, and whether it has
    one; it adds the values ``t, t + T, ...`` (`_pass_stop`)."""
    item = cuda.grid(1)
    if item >= n_batch * chunks * lanes:
        return 0, 0, 0, False
    return item // (lanes * chunks), (item // lanes) % chunks, item % lanes, True


@cuda.jit(device=True)
def _pass_stop(chunks, count):
    """Where the values ``t, t + T, ...`` (T = ``chunks``) that a pass's thread ``t`` adds stop, of
    ``count``: ``_FAN_IN`` of them at most (``range(t, _pass_stop(T, count), T)``)."""
    return min(count, _FAN_IN * chunks)


@cuda.jit
def _affine_grid_backward_partials(grad_grid, depth, height, width, align_corners, partial):
    """``partial[n, t, a*(A+1) + k]`` = sum over points ``p = t, t + T, ...`` (``_FAN_IN`` of them)
    of ``grad_grid[n, p, a] * base_k(p)`` in float64, base = (x, y[, z], 1); ``grad_grid`` is (N, P, A),
    ``partial`` (N, T, A*(A+1)): one thread per (n, t, a)."""
    n_batch, chunks, _ = partial.shape
    points, axes = grad_grid.shape[1], grad_grid.shape[2]
    n, t, a, inside = _pass_item(n_batch, chunks, axes)
    if not inside:
        return
    like = grad_grid.dtype.type(0)
    sum_x = 0.0
    sum_y = 0.0
    sum_z = 0.0
    sum_1 = 0.0
    for p in range(t, _pass_stop(chunks, points), chunks):
        g = np.float64(grad_grid[n, p, a])
        x, y, z = affine_base_point(p, depth, height, width, align_corners, like)
        sum_x += g * np.float64(x)
        sum_y += g * np.float64(y)
        sum_z += g * np.float64(z)
        sum_1 += g
    first = a * (axes + 1)
    partial[n, t, first] = sum_x
    partial[n, t, first + 1] = sum_y
    if axes == 3:
        partial[n, t, first + 2] = sum_z
    partial[n, t, first + axes] = sum_1


@cuda.jit
def _sum_strided(values, sums):
    """``sums[n, u, m]`` = sum of ``values[n, u + q*U, m]`` over ``q < _FAN_IN``, in order, in
    ``values``' dtype; ``values`` is (N, T, M), ``sums`` (N, U, M) with ``U = ceil(T / _FAN_IN)``."""
    n_batch, count, width = values.shape
    groups = sums.shape[1]
    n, u, m, inside = _pass_item(n_batch, groups, width)
    if not inside:
        return
    total = values.dtype.type(0)
    for t in range(u, _pass_stop(groups, count), groups):
        total += values[n, t, m]
    sums[n, u, m] = total


def _sum_over_points(out, points, lanes, stream, first_pass, *args):
    """Overwrite ``out`` (N, ...) with per-image sums over ``points`` points, through the tree.

    ``first_pass(*args, partial)`` writes the first level, ``partial`` (N, T, out.size / N) with
    ``T = ceil(points / _FAN_IN)``, from ``lanes`` threads per (n, t); `_sum_strided` passes follow.
    Every level but the last (``out`` itself) is float64.
    """
    n_batch = out.shape[0]
    terms = out.size // n_batch
    chunks = max(1, -(-points // _FAN_IN))

    def buffer(count):
        if count == 1:
            return out.reshape(n_batch, 1, terms)
        return cuda.device_array((n_batch, count, terms), dtype=np.float64, stream=stream)

    partial = buffer(chunks)
    launch(first_pass, n_batch * chunks * lanes, stream)(*args, partial)
    while chunks > 1:
        groups = -(-chunks // _FAN_IN)
        sums = buffer(groups)
        launch(_sum_strided, n_batch * groups * terms, stream)(partial, sums)
        partial, chunks = sums, groups


def _affine_grid_backward(grad_grid, grad_theta, align_corners, stream):
    """``grad_grid`` (N, D, H, W, A) into ``grad_theta`` (N, A, A+1)."""
    n_batch, depth, height, width, axes = grad_grid.shape
    points = depth * height * width
    _sum_over_points(grad_theta, points, axes, stream, _affine_grid_backward_partials,
                     grad_grid.reshape(n_batch, points, axes), depth, height, width, align_corners)


def affine_grid_2d(theta, grid, align_corners, stream=0):
    """``theta`` (N, 2, 3) into ``grid`` (N, H, W, 2), like ``torch.nn.functional.affine_grid``."""
    n_batch, height, width, _ = grid.shape
    launch(_affine_grid, n_batch * height * width, stream)(theta, grid, 1, height, align_corners)


def affine_grid_3d(theta, grid, align_corners, stream=0):
    """``theta`` (N, 3, 4) into ``grid`` (N, D, H, W, 3)."""
    n_batch, depth, height, width, _ = grid.shape
    launch(_affine_grid, n_batch * depth * height * width, stream)(
        theta, grid.reshape(n_batch, depth * height, width, 3), depth, height, align_corners)


def affine_grid_2d_backward(grad_grid, grad_theta, align_corners, stream=0):
    """Overwrite ``grad_theta`` (N, 2, 3) from ``grad_grid`` (N, H, W, 2)."""
    n_batch, height, width, _ = grad_grid.shape
    _affine_grid_backward(grad_grid.reshape(n_batch, 1, height, width, 2), grad_theta, align_corners, stream)


def affine_grid_3d_backward(grad_grid, grad_theta, align_corners, stream=0):
    """Overwrite ``grad_theta`` (N, 3, 4) from ``grad_grid`` (N, D, H, W, 3)."""
    _affine_grid_backward(grad_grid, grad_theta, align_corners, stream)


# ------------------------------------------------------------- projective grid
@cuda.jit
def _projective_grid(theta, grid, align_corners):
    """``theta`` (N, 3, 3) into ``grid`` (N, H, W, 2): ``(h_1 · p, h_2 · p) / (h_3 · p)``, p = (x, y, 1)."""
    n_batch, height, width, _ = grid.shape
    item = cuda.grid(1)
    if item >= n_batch * height * width:
        return
    w = item % width
    row = (item // width) % height
    n = item // (width * height)
    like = grid.dtype.type(0)
    x = affine_base_coordinate(w, width, align_corners, like)
    y = affine_base_coordinate(row, height, align_corners, like)
    source_x, source_y = projective_point(projective_lines(theta, n, y), x)
    grid[n, row, w, 0] = source_x
    grid[n, row, w, 1] = source_y


@cuda.jit
def _projective_grid_backward_partials(grad_grid, theta, height, width, align_corners, partial):
    """``partial[n, t, 3*i + k]`` = sum over points ``p = t, t + T, ...`` of ``f_i(p) * base_k(p)``
    in float64, base = (x, y, 1), f = (g_x / w, g_y / w, -(g · s) / w times the clamp's slope),
    s the source point (the quotient rule, `projective_point_gradient`); ``grad_grid`` is (N, P, 2):
    one thread per (n, t)."""
    n_batch, chunks, _ = partial.shape
    points = grad_grid.shape[1]
    n, t, _, inside = _pass_item(n_batch, chunks, 1)
    if not inside:
        return
    zero = grad_grid.dtype.type(0)
    sums = cuda.local.array(9, np.float64)
    for k in range(9):
        sums[k] = 0.0
    for p in range(t, _pass_stop(chunks, points), chunks):
        x, y, _ = affine_base_point(p, 1, height, width, align_corners, zero)
        factors = projective_point_gradient(theta, n, x, y, grad_grid[n, p, 0], grad_grid[n, p, 1])
        for i in range(3):
            sums[3 * i] += factors[i] * np.float64(x)
            sums[3 * i + 1] += factors[i] * np.float64(y)
            sums[3 * i + 2] += factors[i]
    for k in range(9):
        partial[n, t, k] = sums[k]


# ---------------------------------------------------------- thin-plate spline
@cuda.jit
def _tps_grid(matrix, theta, grid):
    """``grid[n, p, c]`` = sum over k of ``matrix[p, k] * theta[n, k, c]``, in order of k:
    one thread per (n, p)."""
    n_batch, points, _ = grid.shape
    item = cuda.grid(1)
    if item >= n_batch * points:
        return
    p = item % points
    n = item // points
    for c in range(2):
        total = grid.dtype.type(0)
        for k in range(matrix.shape[1]):
            total += matrix[p, k] * theta[n, k, c]
        grid[n, p, c] = total


@cuda.jit
def _tps_grid_backward_partials(matrix, grad_grid, partial):
    """``partial[n, t, 2*k + c]`` = sum over points ``p = t, t + T, ...`` of
    ``matrix[p, k] * grad_grid[n, p, c]``: one thread per (n, t, k, c)."""
    n_batch, chunks, terms = partial.shape
    points = grad_grid.shape[1]
    n, t, term, inside = _pass_item(n_batch, chunks, terms)
    if not inside:
        return
    k = term // 2
    c = term % 2
    total = grad_grid.dtype.type(0)
    for p in range(t, _pass_stop(chunks, points), chunks):
        total += matrix[p, k] * grad_grid[n, p, c]
    partial[n, t, term] = total


# ------------------------------------------------- attention and similarity
@cuda.jit
def _attention_to_affine(params, theta):
    n = cuda.grid(1)
    if n < params.shape[0]:
        attention_to_affine(params, theta, n)


@cuda.jit
def _attention_to_affine_backward(grad_theta, grad_params):
    n = cuda.grid(1)
    if n < grad_theta.shape[0]:
        attention_to_affine_backward(grad_theta, grad_params, n)


@cuda.jit
def _similarity_to_affine(params, theta):
    n = cuda.grid(1)
    if n < params.shape[0]:
        similarity_to_affine(params, theta, n)


@cuda.jit
def _similarity_to_affine_backward(grad_theta, params, grad_params):
    n = cuda.grid(1)
    if n < params.shape[0]:
        similarity_to_affine_backward(grad_theta, params, grad_params, n)


def projective_grid_2d(theta, grid, align_corners, stream=0):
    """``theta`` (N, 3, 3) into ``grid`` (N, H, W, 2)."""
    n_batch, height, width, _ = grid.shape
    launch(_projective_grid, n_batch * height * width, stream)(theta, grid, align_corners)


def projective_grid_2d_backward(grad_grid, theta, grad_theta, align_corners, stream=0):
    """Overwrite ``grad_theta`` (N, 3, 3) from ``grad_grid`` (N, H, W, 2) by the quotient rule."""
    n_batch, height, width, _ = grad_grid.shape
    _sum_over_points(grad_theta, height * width, 1, stream, _projective_grid_backward_partials,
                     grad_grid.reshape(n_batch, height * width, 2), theta, height, width, align_corners)


def tps_grid_2d(matrix, theta, grid, stream=0):
    """``grid[n] = matrix @ theta[n]``: ``matrix`` (P, K), ``theta`` (N, K, 2), ``grid`` (N, P, 2)."""
    launch(_tps_grid, grid.shape[0] * grid.shape[1], stream)(matrix, theta, grid)


def tps_grid_2d_backward(matrix, grad_grid, grad_theta, stream=0):
    """Overwrite ``grad_theta`` (N, K, 2) with ``matrixᵀ @ grad_grid[n]`` (``grad_grid`` (N, P, 2))."""
    terms = 2 * matrix.shape[1]
    _sum_over_points(grad_theta, grad_grid.shape[1], terms, stream, _tps_grid_backward_partials, matrix, grad_grid)


def attention_to_affine_2d(params, theta, stream=0):
    """Rows (s, tx, ty) of ``params`` (N, 3) into ``theta`` (N, 2, 3) = [[s, 0, tx], [0, s, ty]]."""
    launch(_attention_to_affine, params.shape[0], stream)(params, theta)


def attention_to_affine_2d_backward(grad_theta, grad_params, stream=0):
    """Overwrite ``grad_params`` (N, 3) with (g00 + g11, g02, g12) of ``grad_theta`` (N, 2, 3)."""
    launch(_attention_to_affine_backward, grad_theta.shape[0], stream)(grad_theta, grad_params)


def similarity_to_affine_2d(params, theta, stream=0):
    """Rows (s, angle, tx, ty) of ``params`` (N, 4) into ``theta`` (N, 2, 3) = [s R(angle) | (tx, ty)]."""
    launch(_similarity_to_affine, params.shape[0], stream)(params, theta)


def similarity_to_affine_2d_backward(grad_theta, params, grad_params, stream=0):
    """Overwrite ``grad_params`` (N, 4) with the chain rule through `similarity_to_affine_2d`."""
    launch(_similarity_to_affine_backward, params.shape[0], stream)(grad_theta, params, grad_params)
