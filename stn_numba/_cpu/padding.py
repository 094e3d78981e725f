"""CPU kernels of constant padding (``padding_mode="constant"``).

The samplers run with zeros padding; then `fill_outside` adds, at every
output point, ``fill_value`` times the share of the point's interpolation
weight that falls outside the input (`stn_numba._coords.fill_share`): as if
every tap outside read ``fill_value`` (scipy.ndimage's "grid-constant" with
``cval``). The share is exactly 0 inside, so those points keep zeros
padding's bits. `fill_outside_backward` adds the share's derivative to the
grid gradient. Every value is owned by one point, so results do not depend
on the threads. The CUDA twins are `stn_numba._cuda.padding`.
"""

from numba import prange

from .._codegen import njit
from .._coords import fill_point_gradient, fill_share

_POINTS_PER_TASK = 4096
# below this many points a call runs on the calling thread (a pool launch
# costs more than a small call's whole work)
_SERIAL_POINTS = 1 << 14


@njit(inline="always")
def _piece(job, pieces, count):
    """(image, first point, stop) of task ``job``: ``pieces`` tasks an image of ``count`` points."""
    first = (job % pieces) * _POINTS_PER_TASK
    return job // pieces, first, min(first + _POINTS_PER_TASK, count)


def _make(parallel):
    loop = prange if parallel else range

    @njit(parallel=parallel, cache=True, nogil=True)
    def forward(grid, output, sizes, fill, mode, align_corners):
        """output (N, C, P) += fill · share at each point of grid (N, P, A)."""
        n_batch, count, _ = grid.shape
        pieces = -(-count // _POINTS_PER_TASK)
        for job in loop(n_batch * pieces):
            n, first, stop = _piece(job, pieces, count)
            for p in range(first, stop):
                share = fill_share(grid, n, p, sizes, mode, align_corners)[0]
                if share != 0:  # (a fill of ±Inf or NaN reaches only points it weighs)
                    added = fill * share
                    for c in range(output.shape[1]):
                        output[n, c, p] = output[n, c, p] + added  # (owned by this point)

    @njit(parallel=parallel, cache=True, nogil=True)
    def backward(grad_output, grid, grad_grid, sizes, fill, mode, align_corners):
        """grad_grid (N, P, A) += the fill's term (`fill_point_gradient`)."""
        n_batch, count, axes = grid.shape
        pieces = -(-count // _POINTS_PER_TASK)
        for job in loop(n_batch * pieces):
            n, first, stop = _piece(job, pieces, count)
            for p in range(first, stop):
                terms = fill_point_gradient(grad_output, grid, n, p, sizes, mode, align_corners, fill)
                for a in range(axes):
                    grad_grid[n, p, a] = grad_grid[n, p, a] + terms[a]  # (owned by this point)

    return forward, backward


_SERIAL, _PARALLEL = _make(False), _make(True)


def _flat(grid, output):
    """The grid (N, *So, A) as (N, P, A) and the output (N, C, *So) as (N, C, P)."""
    n_batch, axes = grid.shape[0], grid.shape[-1]
    return grid.reshape(n_batch, -1, axes), output.reshape(output.shape[0], output.shape[1], -1)


def _kernels(grid):
    return _PARALLEL if grid.size // grid.shape[-1] >= _SERIAL_POINTS else _SERIAL


def fill_outside(grid, output, sizes, fill, mode, align_corners):
    """Add ``fill`` (of the output's dtype) times each point's outside share
    to ``output``, sampled with zeros padding from an input of spatial
    ``sizes`` (W, H, D), D = 1 for images."""
    grid, output = _flat(grid, output)
    _kernels(grid)[0](grid, output, sizes, fill, mode, align_corners)


def fill_outside_backward(grad_output, grid, grad_grid, sizes, fill, mode, align_corners):
    """Add the fill's term to ``grad_grid``, zeros padding's grid gradient."""
    flat_grid, flat_grad_output = _flat(grid, grad_output)
    _kernels(grid)[1](flat_grad_output, flat_grid, grad_grid.reshape(flat_grid.shape), sizes, fill, mode,
                      align_corners)
