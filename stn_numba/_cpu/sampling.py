"""CPU kernels of ``grid_sample`` and its backward.

The sampler of Jaderberg et al., "Spatial Transformer Networks" (NeurIPS
2015), with PyTorch's modes and paddings; the scalar math is in
`stn_numba._coords`. The 2-D kernels view their arrays as 3-D ones with depth
1, so one compiled implementation per dtype serves both.

Work split. The output points of an image are cut into blocks of ``_BLOCK``
points. For a block the kernel first tabulates every tap: per axis (a
vectorised loop over a contiguous copy of one grid component), then their
outer product (flat input index, weight and, for the backward, the weight's
derivative along each grid component). It then runs over the channels with
these tables, so the coordinate math is done once per point and the
per-channel loops are plain gathers. Forward blocks of all images are spread
over the threads in ``_MAX_GROUPS`` groups, each with its own tables.

Determinism. The forward and ``grad_grid`` are owned per output point. The
``grad_input`` scatter is owned per image: a backward work item is a chunk of
one image's points and adds, point by point in a fixed order, into its own
target. With fewer images than ``_PARALLEL_CHUNKS`` an image is cut into
several chunks: chunk 0 adds straight into ``grad_input``, every other chunk
into a private buffer that covers only the input rows its taps read (found by
a first pass), and these buffers are then added row by row in chunk order.
The chunking depends only on the shapes, so results are bitwise identical run
to run and for any thread count.

Taps with weight 0 (outside the image, or a NaN grid value) are skipped, not
multiplied: ``0 * inf`` from an infinite input pixel never reaches a point
that does not use that pixel.
"""

import numpy as np
from numba import njit, prange

from .._codes import BICUBIC, BILINEAR, BORDER, NEAREST, REFLECTION, ZEROS
from .._coords import cubic_taps, linear_taps, nearest_tap

_BLOCK = 512  # points tabulated at once (their tables stay in cache)
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
    """Tap tables for one group of work items.

    Axis 2 is a trivial depth axis (index 0, weight 1) for 2-D grids.
    """
    coordinate = np.empty(_BLOCK, dtype)
    axis_index = np.zeros((3, 4, _BLOCK), np.int64)
    axis_weight = np.zeros((3, 4, _BLOCK), dtype)
    axis_slope = np.zeros((3, 4, _BLOCK), dtype)
    if axes == 2:
        axis_weight[2, 0, :] = 1
    index = np.empty((taps, _BLOCK), np.int64)
    weight = np.empty((taps, _BLOCK), dtype)
    slopes = np.empty((3, taps, _BLOCK), dtype)
    products = np.empty((taps, _BLOCK), dtype)
    accumulator = np.empty(_BLOCK, dtype)
    return (coordinate, axis_index, axis_weight, axis_slope, index, weight,
            slopes, products, accumulator)


@njit(inline="always")
def _axis_taps_loop(coordinate, count, size, mode, padding_mode,
                    align_corners, index, weight, slope, a):
    # Inlined into `_axis_taps`, with constant mode and padding where it
    # matters for speed.
    if mode == NEAREST:
        for p in range(count):
            index[a, 0, p], weight[a, 0, p] = nearest_tap(
                coordinate[p], size, padding_mode, align_corners)
    elif mode == BICUBIC:
        for p in range(count):
            i, w, d = cubic_taps(coordinate[p], size, padding_mode,
                                 align_corners)
            index[a, 0, p], index[a, 1, p], index[a, 2, p], index[a, 3, p] = i
            weight[a, 0, p], weight[a, 1, p], weight[a, 2, p], weight[a, 3, p] = w
            slope[a, 0, p], slope[a, 1, p], slope[a, 2, p], slope[a, 3, p] = d
    else:
        for p in range(count):
            (index[a, 0, p], index[a, 1, p], weight[a, 0, p], weight[a, 1, p],
             slope[a, 0, p], slope[a, 1, p]) = linear_taps(
                coordinate[p], size, padding_mode, align_corners)


@njit(cache=True)
def _axis_taps(coordinate, count, size, mode, padding_mode, align_corners,
               index, weight, slope, a):
    """Tabulate the 1-D taps of ``count`` grid values along axis ``a`` into
    the (axis, tap, point) tables; the slope of a nearest tap stays 0."""
    # Linear taps with zeros or border padding get loops of their own, which
    # vectorise (reflection calls fmod; nearest and bicubic are less used).
    if mode == NEAREST or mode == BICUBIC or padding_mode == REFLECTION:
        _axis_taps_loop(coordinate, count, size, mode, padding_mode,
                        align_corners, index, weight, slope, a)
    elif padding_mode == ZEROS:
        _axis_taps_loop(coordinate, count, size, BILINEAR, ZEROS,
                        align_corners, index, weight, slope, a)
    else:
        _axis_taps_loop(coordinate, count, size, BILINEAR, BORDER,
                        align_corners, index, weight, slope, a)


@njit(cache=True)
def _copy_component(grid, n, start, count, axis, coordinate):
    """Copy one grid component into a contiguous buffer, so that the tap
    loops read unit-stride data and vectorise."""
    for p in range(count):
        coordinate[p] = grid[n, start + p, axis]


@njit(cache=True)
def _combine_taps(count, height, width, axis_index, axis_weight, kz, ky, kx,
                  index, weight, t):
    """Tap ``t`` = per-axis taps (kx, ky, kz): flat index and weight."""
    for p in range(count):
        index[t, p] = ((axis_index[2, kz, p] * height + axis_index[1, ky, p])
                       * width + axis_index[0, kx, p])
    for p in range(count):
        weight[t, p] = (axis_weight[2, kz, p] * axis_weight[1, ky, p]
                        * axis_weight[0, kx, p])


@njit(cache=True)
def _combine_slopes(count, axes, axis_weight, axis_slope, kz, ky, kx,
                    slopes, t):
    """Derivatives of tap ``t``'s weight along each grid component."""
    for p in range(count):
        slopes[0, t, p] = (axis_weight[2, kz, p] * axis_weight[1, ky, p]
                           * axis_slope[0, kx, p])
    for p in range(count):
        slopes[1, t, p] = (axis_weight[2, kz, p] * axis_slope[1, ky, p]
                           * axis_weight[0, kx, p])
    if axes == 3:
        for p in range(count):
            slopes[2, t, p] = (axis_slope[2, kz, p] * axis_weight[1, ky, p]
                               * axis_weight[0, kx, p])


@njit(cache=True)
def _tabulate(grid, n, start, count, depth, height, width, mode,
              padding_mode, align_corners, with_slopes, workspace):
    """Fill the tap tables of a block: flat index, weight, and (if asked)
    the weight's derivative along each grid component.

    The taps are the outer product of the per-axis taps. Tables are passed
    whole with row numbers (views would cost reference counting), and every
    inner loop runs over points with unit stride, so it vectorises.
    """
    (coordinate, axis_index, axis_weight, axis_slope, index, weight,
     slopes) = workspace[:7]
    axes = grid.shape[2]
    sizes = (width, height, depth)
    for a in range(axes):
        _copy_component(grid, n, start, count, a, coordinate)
        _axis_taps(coordinate, count, sizes[a], mode, padding_mode,
                   align_corners, axis_index, axis_weight, axis_slope, a)
    per_axis = _taps_per_axis(mode)
    t = 0
    for kz in range(per_axis if axes == 3 else 1):
        for ky in range(per_axis):
            for kx in range(per_axis):
                _combine_taps(count, height, width, axis_index, axis_weight,
                              kz, ky, kx, index, weight, t)
                if with_slopes:
                    _combine_slopes(count, axes, axis_weight, axis_slope,
                                    kz, ky, kx, slopes, t)
                t += 1


@njit(inline="always")
def _gather_loop(source, index, weight, taps, count, out):
    zero = out.dtype.type(0)
    for p in range(count):
        total = zero
        for t in range(taps):
            w = weight[t, p]
            term = w * source[index[t, p]]
            if w != zero:
                total += term
        out[p] = total


@njit(cache=True)
def _gather(source, index, weight, taps, count, out):
    """``out[p] = sum_t weight[t, p] * source[index[t, p]]``, skipping
    zero-weight taps (so an Inf pixel cannot reach points that skip it)."""
    # A constant tap count (2-D bilinear) lets LLVM unroll the tap loop.
    if taps == 4:
        _gather_loop(source, index, weight, 4, count, out)
    else:
        _gather_loop(source, index, weight, taps, count, out)


@njit(inline="always")
def _backward_channel_loop(source, target, shift, index, weight, taps, count,
                           grad_out, products, with_products, with_scatter):
    zero = weight.dtype.type(0)
    for p in range(count):
        g = grad_out[p]
        for t in range(taps):
            i = index[t, p]
            if with_products:
                products[t, p] += g * source[i]
            if with_scatter:
                w = weight[t, p]
                if w != zero:
                    target[i - shift] += g * w


@njit(cache=True)
def _backward_channel(source, target, shift, index, weight, taps, count,
                      grad_out, products, with_products, with_scatter):
    """For one channel: ``products[t, p] += grad_out[p] *
    source[index[t, p]]`` (for grad_grid) and ``target[index[t, p] - shift]
    += grad_out[p] * weight[t, p]`` (grad_input; zero weights skipped), in a
    fixed order."""
    if taps == 4:
        _backward_channel_loop(source, target, shift, index, weight, 4, count,
                               grad_out, products, with_products, with_scatter)
    else:
        _backward_channel_loop(source, target, shift, index, weight, taps,
                               count, grad_out, products, with_products,
                               with_scatter)


@njit(inline="always")
def _grid_gradient_loop(slopes, products, taps, count, grad_grid, n, start,
                        accumulator):
    zero = products.dtype.type(0)
    for a in range(grad_grid.shape[2]):
        for p in range(count):
            total = zero
            for t in range(taps):
                s = slopes[a, t, p]
                term = s * products[t, p]
                if s != zero:
                    total += term
            accumulator[p] = total
        for p in range(count):
            grad_grid[n, start + p, a] = accumulator[p]


@njit(cache=True)
def _grid_gradient(slopes, products, taps, count, grad_grid, n, start,
                   accumulator):
    """``grad_grid[n, p, a] = sum_t slopes[a, t, p] * products[t, p]``,
    skipping zero slopes."""
    if taps == 4:
        _grid_gradient_loop(slopes, products, 4, count, grad_grid, n, start,
                            accumulator)
    else:
        _grid_gradient_loop(slopes, products, taps, count, grad_grid, n,
                            start, accumulator)


@njit(cache=True)
def _zero_columns(table, count):
    """``table[:, :count] = 0`` (a loop, not an array expression, so no
    nested parfor is generated inside the callers' prange)."""
    for r in range(table.shape[0]):
        for p in range(count):
            table[r, p] = 0


@njit(parallel=True, cache=True)
def _sample(source, grid, output, mode, padding_mode, align_corners):
    """Forward on (N, C, D, H, W) input, (N, P, A) grid, (N, C, P) output."""
    n_batch, channels, depth, height, width = source.shape
    points = grid.shape[1]
    axes = grid.shape[2]
    volume = depth * height * width
    if volume == 0:
        _zero_columns(output.reshape(n_batch * channels, points), points)
        return
    flat = source.reshape(n_batch, channels, volume)
    taps = _taps_per_axis(mode) ** axes
    blocks = (points + _BLOCK - 1) // _BLOCK
    items = n_batch * blocks
    groups = min(items, _MAX_GROUPS)
    for group in prange(groups):
        workspace = _workspace(taps, axes, grid.dtype)
        index, weight = workspace[4], workspace[5]
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


@njit(cache=True)
def _chunk_points(chunk, chunks, points):
    """First and one-past-last point of a backward chunk of an image."""
    return chunk * points // chunks, (chunk + 1) * points // chunks


@njit(cache=True)
def _tap_rows(grid, n, start, stop, depth, height, mode, padding_mode,
              align_corners, workspace):
    """Lowest and highest input row (``z * height + y``) that any tap of the
    points ``start..stop`` of image ``n`` reads, or (0, -1) for no points."""
    coordinate, axis_index, axis_weight, axis_slope = workspace[:4]
    axes = grid.shape[2]
    per_axis = _taps_per_axis(mode)
    low = depth * height
    high = -1
    for block in range(start, stop, _BLOCK):
        count = min(_BLOCK, stop - block)
        for a in range(1, axes):
            _copy_component(grid, n, block, count, a, coordinate)
            _axis_taps(coordinate, count, depth if a == 2 else height, mode,
                       padding_mode, align_corners, axis_index, axis_weight,
                       axis_slope, a)
        for kz in range(per_axis if axes == 3 else 1):
            for ky in range(per_axis):
                for p in range(count):
                    row = axis_index[2, kz, p] * height + axis_index[1, ky, p]
                    low = min(low, row)
                    high = max(high, row)
    return low, high


@njit(parallel=True, cache=True)
def _sample_backward(grad_output, source, grid, grad_source, grad_grid, mode,
                     padding_mode, align_corners, input_requires_grad):
    """Backward on (N, C, P) grad_output, (N, C, D, H, W) input, (N, P, A)
    grid; grad_source is (N, C, D*H*W) or a 0-size dummy.

    With several chunks per image, chunk 0 adds into ``grad_source`` and
    chunk k > 0 into a private buffer covering only the input rows its taps
    read (found by a first pass); the buffers are then added row by row in
    chunk order.
    """
    n_batch, channels, depth, height, width = source.shape
    points = grid.shape[1]
    axes = grid.shape[2]
    volume = depth * height * width
    if volume == 0:
        _zero_columns(grad_grid.reshape(n_batch * points, axes), axes)
        return
    flat = source.reshape(n_batch, channels, volume)
    taps = _taps_per_axis(mode) ** axes
    with_slopes = mode != NEAREST
    chunks = _backward_chunks(n_batch, channels, volume, points,
                              input_requires_grad)
    items = n_batch * chunks
    groups = min(items, _MAX_GROUPS)
    private = input_requires_grad and chunks > 1
    # Row range and buffer offset of every private chunk.
    rows = np.zeros((items, 2), np.int64)
    offsets = np.zeros(items + 1, np.int64)
    if private:
        for group in prange(groups):
            workspace = _workspace(taps, axes, grid.dtype)
            for item in range(group * items // groups,
                              (group + 1) * items // groups):
                if item % chunks:
                    first, stop = _chunk_points(item % chunks, chunks, points)
                    rows[item, 0], rows[item, 1] = _tap_rows(
                        grid, item // chunks, first, stop, depth, height, mode,
                        padding_mode, align_corners, workspace)
                else:
                    rows[item, 1] = -1
        for item in range(items):
            size = (rows[item, 1] - rows[item, 0] + 1) * width * channels
            offsets[item + 1] = offsets[item] + size
    buffers = np.empty(offsets[items], grid.dtype)
    no_target = np.empty((channels, 0), grid.dtype)
    for group in prange(groups):
        workspace = _workspace(taps, axes, grid.dtype)
        index, weight, slopes = workspace[4], workspace[5], workspace[6]
        products, accumulator = workspace[7], workspace[8]
        for item in range(group * items // groups,
                          (group + 1) * items // groups):
            n = item // chunks
            chunk = item % chunks
            target = no_target
            shift = 0
            if input_requires_grad:
                if chunk == 0:
                    target = grad_source[n]
                else:
                    span = (rows[item, 1] - rows[item, 0] + 1) * width
                    target = buffers[offsets[item]:offsets[item + 1]].reshape(
                        channels, span)
                    shift = rows[item, 0] * width
                _zero_columns(target, target.shape[1])
            first, stop = _chunk_points(chunk, chunks, points)
            for start in range(first, stop, _BLOCK):
                count = min(_BLOCK, stop - start)
                _tabulate(grid, n, start, count, depth, height, width, mode,
                          padding_mode, align_corners, with_slopes, workspace)
                if with_slopes:
                    _zero_columns(products, count)
                for c in range(channels):
                    _backward_channel(flat[n, c], target[c], shift, index,
                                      weight, taps, count,
                                      grad_output[n, c, start:], products,
                                      with_slopes, input_requires_grad)
                if with_slopes:
                    _grid_gradient(slopes, products, taps, count, grad_grid,
                                   n, start, accumulator)
                else:
                    _zero_columns(grad_grid[n, start:start + count], axes)
    if private:
        image_rows = depth * height
        for job in prange(n_batch * image_rows):
            n = job // image_rows
            row = job % image_rows
            for item in range(n * chunks + 1, (n + 1) * chunks):
                low, high = rows[item, 0], rows[item, 1]
                if low <= row <= high:
                    span = (high - low + 1) * width
                    part = buffers[offsets[item]:offsets[item + 1]]
                    for c in range(channels):
                        source_at = c * span + (row - low) * width
                        target_at = row * width
                        for x in range(width):
                            grad_source[n, c, target_at + x] += part[source_at + x]


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
