"""CUDA kernels of ``affine_grid`` and its backward.

Twins of :mod:`stn_numba._cpu.grids`: the host-side launchers below have the
CPU kernels' names and argument order, plus the ``stream`` they launch on. As
on the CPU, a 2-D grid is a 3-D one of depth 1, so one kernel serves both.

The forward runs one thread per grid point. The backward is a sum over every
point of an image; it is a tree of passes in which each thread adds
``_FAN_IN`` values in a fixed order: thread ``t`` of a pass over ``T`` values
adds values ``t, t + U, t + 2U, ...`` (``U = ceil(T / _FAN_IN)``), so adjacent
threads read adjacent memory. The tree depends on the shapes only, so
``grad_theta`` is bitwise identical run to run and for any launch
configuration, with no atomics.
"""


from numba import cuda

from .._coords import affine_base_coordinate
from . import launch

_FAN_IN = 32  # values one thread adds in one reduction pass


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
    like = grid.dtype.type(0)
    x = affine_base_coordinate(w, width, align_corners, like)
    y = affine_base_coordinate(row % height, height, align_corners, like)
    z = affine_base_coordinate(row // height, depth, align_corners, like)
    for a in range(axes):
        offset = theta[n, a, 1] * y + theta[n, a, axes]
        if axes == 3:
            offset += theta[n, a, 2] * z
        grid[n, row, w, a] = theta[n, a, 0] * x + offset


@cuda.jit
def _affine_grid_backward_partials(grad_grid, partial, depth, height, width, align_corners):
    """``partial[n, t, a, k]`` = sum over points ``p = t, t + T, ...`` (``_FAN_IN`` of them) of
    ``grad_grid[n, p, a] * base_k(p)``, base = (x, y[, z], 1); ``grad_grid`` is (N, P, A),
    ``partial`` (N, T, A, A+1) with ``T = ceil(P / _FAN_IN)``."""
    n_batch, chunks, axes, _ = partial.shape
    points = grad_grid.shape[1]
    item = cuda.grid(1)
    if item >= n_batch * chunks * axes:
        return
    a = item % axes
    t = (item // axes) % chunks
    n = item // (axes * chunks)
    like = grad_grid.dtype.type(0)
    sum_x = like
    sum_y = like
    sum_z = like
    sum_1 = like
    for q in range(_FAN_IN):
        p = q * chunks + t
        if p < points:
            g = grad_grid[n, p, a]
            row = p // width
            sum_x += g * affine_base_coordinate(p % width, width, align_corners, like)
            sum_y += g * affine_base_coordinate(row % height, height, align_corners, like)
            sum_z += g * affine_base_coordinate(row // height, depth, align_corners, like)
            sum_1 += g
    partial[n, t, a, 0] = sum_x
    partial[n, t, a, 1] = sum_y
    if axes == 3:
        partial[n, t, a, 2] = sum_z
    partial[n, t, a, axes] = sum_1


@cuda.jit
def _sum_strided(values, sums):
    """``sums[n, u, m]`` = sum of ``values[n, u + q*U, m]`` over ``q < _FAN_IN``, in order;
    ``values`` is (N, T, M), ``sums`` (N, U, M) with ``U = ceil(T / _FAN_IN)``."""
    n_batch, count, width = values.shape
    groups = sums.shape[1]
    item = cuda.grid(1)
    if item >= n_batch * groups * width:
        return
    m = item % width
    u = (item // width) % groups
    n = item // (width * groups)
    total = values.dtype.type(0)
    for q in range(_FAN_IN):
        t = q * groups + u
        if t < count:
            total += values[n, t, m]
    sums[n, u, m] = total


def _affine_grid_backward(grad_grid, grad_theta, align_corners, stream):
    """``grad_grid`` (N, D, H, W, A) into ``grad_theta`` (N, A, A+1) through the reduction tree."""
    n_batch, depth, height, width, axes = grad_grid.shape
    points = depth * height * width
    terms = axes * (axes + 1)
    chunks = max(1, -(-points // _FAN_IN))

    def buffer(count):
        if count == 1:
            return grad_theta.reshape(n_batch, 1, terms)
        return cuda.device_array((n_batch, count, terms), dtype=grad_theta.dtype, stream=stream)

    partial = buffer(chunks)
    launch(_affine_grid_backward_partials, n_batch * chunks * axes, stream)(
        grad_grid.reshape(n_batch, points, axes), partial.reshape(n_batch, chunks, axes, axes + 1),
        depth, height, width, align_corners)
    while chunks > 1:
        groups = -(-chunks // _FAN_IN)
        sums = buffer(groups)
        launch(_sum_strided, n_batch * groups * terms, stream)(partial, sums)
        partial, chunks = sums, groups


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
