"""CUDA twins of `stn_numba._cpu.padding`: one thread per point, the same
per-point math (`stn_numba._coords.fill_share`), in the same order."""

from numba import cuda

from .._coords import fill_point_gradient, fill_share
from . import launch


@cuda.jit
def _fill_outside(grid, output, sizes, fill, mode, align_corners):
    n_batch, count, _ = grid.shape
    item = cuda.grid(1)
    if item >= n_batch * count:
        return
    n, p = item // count, item % count
    share = fill_share(grid, n, p, sizes, mode, align_corners)[0]
    if share != 0:
        added = fill * share
        for c in range(output.shape[1]):
            output[n, c, p] = output[n, c, p] + added


@cuda.jit
def _fill_outside_backward(grad_output, grid, grad_grid, sizes, fill, mode, align_corners):
    n_batch, count, axes = grid.shape
    item = cuda.grid(1)
    if item >= n_batch * count:
        return
    n, p = item // count, item % count
    terms = fill_point_gradient(grad_output, grid, n, p, sizes, mode, align_corners, fill)
    for a in range(axes):
        grad_grid[n, p, a] = grad_grid[n, p, a] + terms[a]


def _flat(grid, output):
    """(N, P, A) and (N, C, P) views (no negative indices: the simulator's shapes refuse them)."""
    n_batch, axes = grid.shape[0], grid.shape[grid.ndim - 1]
    return grid.reshape(n_batch, grid.size // (n_batch * axes), axes), output.reshape(
        output.shape[0], output.shape[1], output.size // max(1, output.shape[0] * output.shape[1]))


def fill_outside(grid, output, sizes, fill, mode, align_corners, stream=0):
    grid, output = _flat(grid, output)
    launch(_fill_outside, grid.shape[0] * grid.shape[1], stream)(grid, output, sizes, fill, mode, align_corners)


def fill_outside_backward(grad_output, grid, grad_grid, sizes, fill, mode, align_corners, stream=0):
    flat_grid, flat_grad_output = _flat(grid, grad_output)
    launch(_fill_outside_backward, flat_grid.shape[0] * flat_grid.shape[1], stream)(
        flat_grad_output, flat_grid, grad_grid.reshape(flat_grid.shape), sizes, fill, mode, align_corners)
