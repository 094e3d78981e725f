"""CPU kernels of ``grid_sample`` and its backward.

The sampler of Jaderberg et al., "Spatial Transformer Networks" (NeurIPS
2015), with PyTorch's modes and paddings; the scalar math is in
`stn_numba._coords`. The 2-D kernels view their arrays as 3-D ones with depth
1, so one compiled implementation per dtype serves both.

Work split. The output points of one image are cut into blocks of ``_BLOCK``
points. For a block, the kernel first tabulates every tap (flat input index,
weight, and for the backward the weight's derivative along each grid
component), then runs over the channels with these tables, so the coordinate
math is done once per point and the per-channel loops are plain gathers.

Determinism. The forward and ``grad_grid`` are owned per output point. The
``grad_input`` scatter is owned per image: each backward work item is a chunk
of one image's points and adds into its own buffer, in a fixed order. When
there are fewer images than ``_PARALLEL_CHUNKS``, an image is cut into several
chunks, chunk 0 adds straight into ``grad_input`` and the others into private
buffers that are then summed in chunk order. The chunking depends only on the
shapes, so results are bitwise identical for any thread count.
"""

import numpy as np
from numba import njit, prange

from .._codes import BICUBIC, NEAREST
from .._coords import cubic_taps, linear_taps, nearest_tap

_BLOCK = 256  # points whose taps are tabulated at once (tables stay in cache)
_PARALLEL_CHUNKS = 4  # backward: cut images so that N * chunks reaches this
_MIN_CHUNK_POINTS = 16384  # backward: fewest points worth a private buffer
_PARTIAL_BUDGET = 2**25  # backward: most elements of private buffers
_MAX_GROUPS = 64  # prange tasks; each allocates one workspace (any value
# gives the same results: it groups work items, it does not split them)


@njit(cache=True)
def _taps_per_axis(mode):
    if mode == NEAREST:
        return 1
    if mode == BICUBIC:
        return 4
    return 2


@njit(cache=True)
def _workspace(taps, axes, dtype):
    """Tap tables for one group of work items (two allocations).

    Axis 2 is a trivial depth axis (index 0, weight 1) for 2-D grids.
    """
    axis_table = 3 * 4 * _BLOCK
    tap_table = taps * _BLOCK
    indices = np.zeros(axis_table + tap_table, np.int64)
    values = np.zeros(2 * axis_table + 5 * tap_table + _BLOCK, dtype)
    axis_index = indices[:axis_table].reshape(3, 4, _BLOCK)
    index = indices[axis_table:].reshape(taps, _BLOCK)
    axis_weight = values[:axis_table].reshape(3, 4, _BLOCK)
    axis_slope = values[axis_table:2 * axis_table].reshape(3, 4, _BLOCK)
    rest = values[2 * axis_table:]
    weight = rest[:tap_table].reshape(taps, _BLOCK)
    slopes = rest[tap_table:4 * tap_table].reshape(3, taps, _BLOCK)
    products = rest[4 * tap_table:5 * tap_table].reshape(taps, _BLOCK)
    accumulator = rest[5 * tap_table:]
    if axes == 2:
        axis_weight[2, 0, :] = 1
    return (axis_index, axis_weight, axis_slope, index, weight, slopes,
            products, accumulator)


@njit(cache=True)
def _axis_taps(grid, n, start, count, axis, size, mode, padding_mode,
               align_corners, index, weight, slope):
    """Tabulate the 1-D taps of points ``start..start+count`` along one axis.

    ``index``, ``weight`` and ``slope`` are (taps per axis, _BLOCK) tables.
    """
    if mode == NEAREST:
        for p in range(count):
            i, w = nearest_tap(grid[n, start + p, axis], size, padding_mode,
                               align_corners)
            index[0, p] = i
            weight[0, p] = w
            slope[0, p] = 0
    elif mode == BICUBIC:
        for p in range(count):
            i, w, d = cubic_taps(grid[n, start + p, axis], size, padding_mode,
                                 align_corners)
            index[0, p], index[1, p], index[2, p], index[3, p] = i
            weight[0, p], weight[1, p], weight[2, p], weight[3, p] = w
            slope[0, p], slope[1, p], slope[2, p], slope[3, p] = d
    else:
        for p in range(count):
            i0, i1, w0, w1, d0, d1 = linear_taps(
                grid[n, start + p, axis], size, padding_mode, align_corners)
            index[0, p] = i0
            index[1, p] = i1
            weight[0, p] = w0
            weight[1, p] = w1
            slope[0, p] = d0
            slope[1, p] = d1


@njit(cache=True)
def _tabulate(grid, n, start, count, depth, height, width, mode,
              padding_mode, align_corners, with_slopes, workspace):
    """Fill the tap tables of a block: flat index, weight, and (if asked)
    the weight's derivative along each grid component."""
    axis_index, axis_weight, axis_slope, index, weight, slopes = workspace[:6]
    axes = grid.shape[2]
    sizes = (width, height, depth)
    for a in range(axes):
        _axis_taps(grid, n, start, count, a, sizes[a], mode, padding_mode,
                   align_corners, axis_index[a], axis_weight[a],
                   axis_slope[a])
    per_axis = _taps_per_axis(mode)
    t = 0
    for kz in range(per_axis if axes == 3 else 1):
        for ky in range(per_axis):
            for kx in range(per_axis):
                for p in range(count):
                    index[t, p] = ((axis_index[2, kz, p] * height
                                    + axis_index[1, ky, p]) * width
                                   + axis_index[0, kx, p])
                    weight[t, p] = (axis_weight[2, kz, p] * axis_weight[1, ky, p]
                                    * axis_weight[0, kx, p])
                if with_slopes:
                    for p in range(count):
                        slopes[0, t, p] = (axis_weight[2, kz, p]
                                           * axis_weight[1, ky, p]
                                           * axis_slope[0, kx, p])
                    for p in range(count):
                        slopes[1, t, p] = (axis_weight[2, kz, p]
                                           * axis_slope[1, ky, p]
                                           * axis_weight[0, kx, p])
                    if axes == 3:
                        for p in range(count):
                            slopes[2, t, p] = (axis_slope[2, kz, p]
                                               * axis_weight[1, ky, p]
                                               * axis_weight[0, kx, p])
                t += 1
    return t


@njit(cache=True)
def _gather(source, index, weight, taps, count, out):
    """``out[p] = sum_t weight[t, p] * source[index[t, p]]``, skipping
    zero-weight taps (so an Inf pixel cannot reach points that skip it)."""
    zero = out.dtype.type(0)
    for p in range(count):
        out[p] = zero
    for t in range(taps):
        for p in range(count):
            w = weight[t, p]
            if w != zero:
                out[p] += w * source[index[t, p]]


@njit(cache=True)
def _accumulate_products(source, index, taps, count, grad_out, products):
    """``products[t, p] += grad_out[p] * source[index[t, p]]``."""
    for t in range(taps):
        for p in range(count):
            products[t, p] += grad_out[p] * source[index[t, p]]


@njit(cache=True)
def _scatter(target, index, weight, taps, count, grad_out):
    """``target[index[t, p]] += grad_out[p] * weight[t, p]``, in a fixed
    order, skipping zero-weight taps."""
    zero = weight.dtype.type(0)
    for t in range(taps):
        for p in range(count):
            w = weight[t, p]
            if w != zero:
                target[index[t, p]] += grad_out[p] * w


@njit(cache=True)
def _grid_gradient(slopes, products, taps, count, grad_grid, n, start,
                   accumulator):
    """``grad_grid[n, p, a] = sum_t slopes[a, t, p] * products[t, p]``,
    skipping zero slopes."""
    zero = accumulator.dtype.type(0)
    for a in range(grad_grid.shape[2]):
        for p in range(count):
            accumulator[p] = zero
        for t in range(taps):
            for p in range(count):
                s = slopes[a, t, p]
                if s != zero:
                    accumulator[p] += s * products[t, p]
        for p in range(count):
            grad_grid[n, start + p, a] = accumulator[p]


@njit(parallel=True, cache=True)
def _sample(source, grid, output, mode, padding_mode, align_corners):
    """Forward on (N, C, D, H, W) input, (N, P, A) grid, (N, C, P) output."""
    n_batch, channels, depth, height, width = source.shape
    points = grid.shape[1]
    axes = grid.shape[2]
    volume = depth * height * width
    if volume == 0:
        output[:] = 0
        return
    flat = source.reshape(n_batch, channels, volume)
    taps = _taps_per_axis(mode) ** axes
    blocks = (points + _BLOCK - 1) // _BLOCK
    items = n_batch * blocks
    groups = min(items, _MAX_GROUPS)
    for group in prange(groups):
        workspace = _workspace(taps, axes, grid.dtype)
        index, weight = workspace[3], workspace[4]
        for item in range(group * items // groups,
                          (group + 1) * items // groups):
            n = item // blocks
            start = (item % blocks) * _BLOCK
            count = min(_BLOCK, points - start)
            _tabulate(grid, n, start, count, depth, height, width, mode,
                      padding_mode, align_corners, False, workspace)
            for c in range(channels):
                _gather(flat[n, c], index, weight, taps, count,
                        output[n, c, start:start + count])


@njit(cache=True)
def _backward_chunks(n_batch, channels, volume, points, input_requires_grad):
    """Work items per image in the backward, from the shapes only."""
    if not input_requires_grad:
        return max(1, (points + _BLOCK - 1) // _BLOCK)
    if n_batch >= _PARALLEL_CHUNKS:
        return 1
    chunks = (_PARALLEL_CHUNKS + n_batch - 1) // n_batch
    chunks = min(chunks, points // _MIN_CHUNK_POINTS)
    chunks = min(chunks, 1 + _PARTIAL_BUDGET // max(1, n_batch * channels * volume))
    return max(1, chunks)


@njit(parallel=True, cache=True)
def _sample_backward(grad_output, source, grid, grad_source, grad_grid, mode,
                     padding_mode, align_corners, input_requires_grad):
    """Backward on (N, C, P) grad_output, (N, C, D, H, W) input, (N, P, A)
    grid; grad_source is (N, C, D*H*W) or a 0-size dummy."""
    n_batch, channels, depth, height, width = source.shape
    points = grid.shape[1]
    axes = grid.shape[2]
    volume = depth * height * width
    if volume == 0:
        grad_grid[:] = 0
        return
    flat = source.reshape(n_batch, channels, volume)
    taps = _taps_per_axis(mode) ** axes
    with_slopes = mode != NEAREST
    chunks = _backward_chunks(n_batch, channels, volume, points,
                              input_requires_grad)
    private = np.empty((n_batch, chunks - 1 if input_requires_grad else 0,
                        channels, volume), grid.dtype)
    no_target = np.empty((0, 0), grid.dtype)
    items = n_batch * chunks
    groups = min(items, _MAX_GROUPS)
    for group in prange(groups):
        workspace = _workspace(taps, axes, grid.dtype)
        index, weight, slopes = workspace[3], workspace[4], workspace[5]
        products, accumulator = workspace[6], workspace[7]
        for item in range(group * items // groups,
                          (group + 1) * items // groups):
            n = item // chunks
            chunk = item % chunks
            target = no_target
            if input_requires_grad:
                if chunk == 0:
                    target = grad_source[n]
                else:
                    target = private[n, chunk - 1]
                target[:] = 0
            stop = (chunk + 1) * points // chunks
            for start in range(chunk * points // chunks, stop, _BLOCK):
                count = min(_BLOCK, stop - start)
                _tabulate(grid, n, start, count, depth, height, width, mode,
                          padding_mode, align_corners, with_slopes, workspace)
                if with_slopes:
                    products[:, :count] = 0
                    for c in range(channels):
                        _accumulate_products(flat[n, c], index, taps, count,
                                             grad_output[n, c, start:],
                                             products)
                    _grid_gradient(slopes, products, taps, count, grad_grid,
                                   n, start, accumulator)
                else:
                    grad_grid[n, start:start + count] = 0
                if input_requires_grad:
                    for c in range(channels):
                        _scatter(target[c], index, weight, taps, count,
                                 grad_output[n, c, start:])
    if input_requires_grad and chunks > 1:
        size = channels * volume
        total = grad_source.reshape(n_batch, size)
        parts = private.reshape(n_batch, chunks - 1, size)
        pieces = (size + 4095) // 4096
        for piece in prange(n_batch * pieces):
            n = piece // pieces
            lo = (piece % pieces) * 4096
            hi = min(size, lo + 4096)
            for chunk in range(chunks - 1):
                for j in range(lo, hi):
                    total[n, j] += parts[n, chunk, j]


@njit(cache=True)
def grid_sample_2d(input, grid, output, mode, padding_mode, align_corners):
    """Sample (N, C, H, W) ``input`` at (N, Ho, Wo, 2) ``grid`` into
    (N, C, Ho, Wo) ``output`` (see the module docstring)."""
    n_batch, channels, height, width = input.shape
    points = grid.shape[1] * grid.shape[2]
    _sample(input.reshape(n_batch, channels, 1, height, width),
            grid.reshape(n_batch, points, 2),
            output.reshape(n_batch, channels, points),
            mode, padding_mode, align_corners)


@njit(cache=True)
def grid_sample_3d(input, grid, output, mode, padding_mode, align_corners):
    """Sample (N, C, D, H, W) ``input`` at (N, Do, Ho, Wo, 3) ``grid`` into
    (N, C, Do, Ho, Wo) ``output``."""
    n_batch, channels = input.shape[0], input.shape[1]
    points = grid.shape[1] * grid.shape[2] * grid.shape[3]
    _sample(input, grid.reshape(n_batch, points, 3),
            output.reshape(n_batch, channels, points),
            mode, padding_mode, align_corners)


@njit(cache=True)
def grid_sample_2d_backward(grad_output, input, grid, grad_input, grad_grid,
                            mode, padding_mode, align_corners,
                            input_requires_grad):
    """Overwrite ``grad_grid`` (N, Ho, Wo, 2) and, if
    ``input_requires_grad``, ``grad_input`` (N, C, H, W); otherwise
    ``grad_input`` may be a 0-size dummy and is not touched."""
    n_batch, channels, height, width = input.shape
    points = grid.shape[1] * grid.shape[2]
    shape = grad_input.shape
    _sample_backward(grad_output.reshape(n_batch, channels, points),
                     input.reshape(n_batch, channels, 1, height, width),
                     grid.reshape(n_batch, points, 2),
                     grad_input.reshape(shape[0], shape[1],
                                        shape[2] * shape[3]),
                     grad_grid.reshape(n_batch, points, 2),
                     mode, padding_mode, align_corners, input_requires_grad)


@njit(cache=True)
def grid_sample_3d_backward(grad_output, input, grid, grad_input, grad_grid,
                            mode, padding_mode, align_corners,
                            input_requires_grad):
    """5-D twin of `grid_sample_2d_backward`."""
    n_batch, channels = input.shape[0], input.shape[1]
    points = grid.shape[1] * grid.shape[2] * grid.shape[3]
    shape = grad_input.shape
    _sample_backward(grad_output.reshape(n_batch, channels, points),
                     input,
                     grid.reshape(n_batch, points, 3),
                     grad_input.reshape(shape[0], shape[1],
                                        shape[2] * shape[3] * shape[4]),
                     grad_grid.reshape(n_batch, points, 3),
                     mode, padding_mode, align_corners, input_requires_grad)
