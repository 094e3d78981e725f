"""CPU kernels of ``grid_sample``, the fused ``affine_grid_sample`` and their
backward.

The sampler of Jaderberg et al., "Spatial Transformer Networks" (NeurIPS
2015), with PyTorch's modes and paddings; the scalar math is in
`stn_numba._coords`. The 2-D kernels view their arrays as 3-D ones with depth
1, so one compiled implementation per dtype serves both.

Grid or affine. The sample points come either from a grid or, for the fused
affine warp, from ``theta @ (x, y[, z], 1)`` over the output's base
coordinates, computed per block where the grid path copies a grid component
(`_load_coordinates`), in `affine_grid`'s order of operations. Both paths are
one compiled implementation with a ``fused`` flag; the unused arrays are
empty. The fused backward reduces each point's coordinate gradient with its
base coordinates into a private ``theta`` gradient per work item, added in
work-item order afterwards; the grid is never materialised.

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

import math

import numpy as np
from numba import njit, prange

from .._codes import BICUBIC, BILINEAR, BORDER, NEAREST, REFLECTION, ZEROS
from .._coords import cubic_taps, linear_taps, nearest_tap
from .grids import _base_coordinates, _sum_chunks

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
    ``base_point`` holds the block's base coordinates (x, y, z) in the fused
    path.
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
    base_point = np.empty((3, _BLOCK), dtype)
    return (coordinate, axis_index, axis_weight, axis_slope, index, weight,
            slopes, products, accumulator, base_point)


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
def _base_points(bases, start, count, base_point):
    """The base coordinates (x, y, z) of output points ``start`` to
    ``start + count - 1`` (flat over depth, height, width), row by row."""
    xs, ys, zs = bases
    width, height = xs.shape[0], ys.shape[0]
    point = start
    while point < start + count:
        row = point // width
        column = point - row * width
        length = min(width - column, start + count - point)
        y, z = ys[row % height], zs[row // height]
        at = point - start
        for k in range(length):
            base_point[0, at + k] = xs[column + k]
            base_point[1, at + k] = y
            base_point[2, at + k] = z
        point += length


@njit(cache=True)
def _load_coordinates(grid, theta, fused, n, start, count, axis, base_point,
                      coordinate):
    """Component ``axis`` of points ``start..`` of image ``n`` into a
    contiguous buffer, so that the tap loops read unit-stride data and
    vectorise: copied from the grid, or (fused) ``theta[n, axis] @ (x, y[, z],
    1)`` in `affine_grid`'s order of operations, so the two paths agree
    bitwise."""
    if not fused:
        for p in range(count):
            coordinate[p] = grid[n, start + p, axis]
        return
    axes = theta.shape[1]
    slope, along_y = theta[n, axis, 0], theta[n, axis, 1]
    along_z, constant = theta[n, axis, 2], theta[n, axis, axes]
    if axes == 3:
        for p in range(count):
            coordinate[p] = slope * base_point[0, p] + (
                (along_y * base_point[1, p] + constant) + along_z * base_point[2, p])
    else:
        for p in range(count):
            coordinate[p] = slope * base_point[0, p] + (along_y * base_point[1, p] + constant)


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
def _tabulate(grid, theta, bases, fused, n, start, count, depth, height,
              width, mode, padding_mode, align_corners, with_slopes,
              workspace):
    """Fill the tap tables of a block: flat index, weight, and (if asked)
    the weight's derivative along each grid component (and, fused, the
    block's base points).

    The taps are the outer product of the per-axis taps. Tables are passed
    whole with row numbers (views would cost reference counting), and every
    inner loop runs over points with unit stride, so it vectorises.
    """
    (coordinate, axis_index, axis_weight, axis_slope, index, weight,
     slopes) = workspace[:7]
    base_point = workspace[9]
    axes = grid.shape[2]
    sizes = (width, height, depth)
    if fused:
        _base_points(bases, start, count, base_point)
    for a in range(axes):
        _load_coordinates(grid, theta, fused, n, start, count, a, base_point,
                          coordinate)
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


@njit(cache=True)
def _add_theta_gradient(point_gradient, count, base_point, theta_sums, item,
                        axis):
    """``theta_sums[item, axis] += sum_p point_gradient[p] * (x, y[, z], 1)_p``,
    the chain rule through ``coordinate = theta[axis] @ (x, y[, z], 1)``;
    float64 sums (``theta_sums`` is float64), as `_affine_grid_backward`."""
    axes = theta_sums.shape[1]
    plain = along_x = along_y = along_z = 0.0
    for p in range(count):
        g = np.float64(point_gradient[p])
        plain += g
        along_x += g * np.float64(base_point[0, p])
        along_y += g * np.float64(base_point[1, p])
        if axes == 3:
            along_z += g * np.float64(base_point[2, p])
    theta_sums[item, axis, 0] += along_x
    theta_sums[item, axis, 1] += along_y
    if axes == 3:
        theta_sums[item, axis, 2] += along_z
    theta_sums[item, axis, axes] += plain


@njit(inline="always")
def _grid_gradient_loop(slopes, products, taps, count, grad_grid, n, start,
                        fused, base_point, theta_sums, item, accumulator):
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
        if fused:
            _add_theta_gradient(accumulator, count, base_point, theta_sums,
                                item, a)
        else:
            for p in range(count):
                grad_grid[n, start + p, a] = accumulator[p]


@njit(cache=True)
def _grid_gradient(slopes, products, taps, count, grad_grid, n, start, fused,
                   base_point, theta_sums, item, accumulator):
    """``grad_grid[n, p, a] = sum_t slopes[a, t, p] * products[t, p]``,
    skipping zero slopes; fused, that is reduced into ``theta_sums[item]``
    instead (`_add_theta_gradient`)."""
    if taps == 4:
        _grid_gradient_loop(slopes, products, 4, count, grad_grid, n, start,
                            fused, base_point, theta_sums, item, accumulator)
    else:
        _grid_gradient_loop(slopes, products, taps, count, grad_grid, n,
                            start, fused, base_point, theta_sums, item,
                            accumulator)


@njit(cache=True)
def _zero_columns(table, count):
    """``table[:, :count] = 0`` (a loop, not an array expression, so no
    nested parfor is generated inside the callers' prange)."""
    for r in range(table.shape[0]):
        for p in range(count):
            table[r, p] = 0


@njit(cache=True)
def _output_bases(fused, output_shape, align_corners, like):
    """Base coordinates (xs, ys, zs) of an (N, C, Do, Ho, Wo) output, as
    `affine_grid`'s; empty for the grid path."""
    depth, height, width = output_shape[2:] if fused else (0, 0, 0)
    return (_base_coordinates(width, align_corners, like),
            _base_coordinates(height, align_corners, like),
            _base_coordinates(depth, align_corners, like))


@njit(parallel=True, cache=True)
def _sample(source, grid, theta, fused, output, mode, padding_mode,
            align_corners):
    """Forward on (N, C, D, H, W) input into (N, C, Do, Ho, Wo) output, at
    the points of the (N, P, A) grid or, fused, of ``theta`` (N, A, A+1)
    over the output's base coordinates; the other is empty."""
    n_batch, channels, depth, height, width = source.shape
    bases = _output_bases(fused, output.shape, align_corners, output)
    points = output.shape[2] * output.shape[3] * output.shape[4]
    flat_output = output.reshape(n_batch, channels, points)
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
        workspace = _workspace(taps, axes, output.dtype)
        index, weight = workspace[4], workspace[5]
        for item in range(group * items // groups,
                          (group + 1) * items // groups):
            n = item // blocks
            start = (item % blocks) * _BLOCK
            count = min(_BLOCK, points - start)
            # No slopes; np.bool_, as a literal False would compile a
            # second specialisation of `_tabulate`.
            _tabulate(grid, theta, bases, fused, n, start, count, depth,
                      height, width, mode, padding_mode, align_corners,
                      np.bool_(False), workspace)
            for c in range(channels):
                _gather(flat[n, c], index, weight, taps, count,
                        flat_output[n, c, start:start + count])


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
def _tap_rows(grid, theta, bases, fused, n, start, stop, depth, height, mode,
              padding_mode, align_corners, workspace):
    """Lowest and highest input row (``z * height + y``) that any tap of the
    points ``start..stop`` of image ``n`` reads, or (0, -1) for no points."""
    coordinate, axis_index, axis_weight, axis_slope = workspace[:4]
    base_point = workspace[9]
    axes = grid.shape[2]
    per_axis = _taps_per_axis(mode)
    low = depth * height
    high = -1
    for block in range(start, stop, _BLOCK):
        count = min(_BLOCK, stop - block)
        if fused:
            _base_points(bases, block, count, base_point)
        for a in range(1, axes):
            _load_coordinates(grid, theta, fused, n, block, count, a,
                              base_point, coordinate)
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
def _sample_backward(grad_output, source, grid, theta, fused, grad_source,
                     grad_grid, grad_theta, mode, padding_mode, align_corners,
                     input_requires_grad):
    """Backward on (N, C, Do, Ho, Wo) grad_output, (N, C, D, H, W) input and
    the sample points of `_sample`; grad_source is (N, C, D*H*W) or a 0-size
    dummy. Overwrites grad_grid (N, P, A), or fused grad_theta (N, A, A+1).

    With several chunks per image, chunk 0 adds into ``grad_source`` and
    chunk k > 0 into a private buffer covering only the input rows its taps
    read (found by a first pass); the buffers are then added row by row in
    chunk order. Fused, each work item sums its theta gradient privately in
    float64; these are added in chunk order and rounded once.
    """
    n_batch, channels, depth, height, width = source.shape
    bases = _output_bases(fused, grad_output.shape, align_corners, grad_output)
    points = grad_output.shape[2] * grad_output.shape[3] * grad_output.shape[4]
    flat_grad_output = grad_output.reshape(n_batch, channels, points)
    axes = grid.shape[2]
    volume = depth * height * width
    dtype = grad_output.dtype
    if volume == 0:
        _zero_columns(grad_grid.reshape(grad_grid.shape[0] * grad_grid.shape[1], axes), axes)
        _zero_columns(grad_theta.reshape(grad_theta.shape[0], axes * (axes + 1)), axes * (axes + 1))
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
            workspace = _workspace(taps, axes, dtype)
            for item in range(group * items // groups,
                              (group + 1) * items // groups):
                if item % chunks:
                    first, stop = _chunk_points(item % chunks, chunks, points)
                    rows[item, 0], rows[item, 1] = _tap_rows(
                        grid, theta, bases, fused, item // chunks, first,
                        stop, depth, height, mode, padding_mode,
                        align_corners, workspace)
                else:
                    rows[item, 1] = -1
        for item in range(items):
            size = (rows[item, 1] - rows[item, 0] + 1) * width * channels
            offsets[item + 1] = offsets[item] + size
    buffers = np.empty(offsets[items], dtype)
    no_target = np.empty((channels, 0), dtype)
    theta_sums = np.zeros((items if fused else 0, axes, axes + 1), np.float64)
    for group in prange(groups):
        workspace = _workspace(taps, axes, dtype)
        index, weight, slopes = workspace[4], workspace[5], workspace[6]
        products, accumulator = workspace[7], workspace[8]
        base_point = workspace[9]
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
                _tabulate(grid, theta, bases, fused, n, start, count, depth,
                          height, width, mode, padding_mode, align_corners,
                          with_slopes, workspace)
                if with_slopes:
                    _zero_columns(products, count)
                for c in range(channels):
                    _backward_channel(flat[n, c], target[c], shift, index,
                                      weight, taps, count,
                                      flat_grad_output[n, c, start:], products,
                                      with_slopes, input_requires_grad)
                if with_slopes:
                    _grid_gradient(slopes, products, taps, count, grad_grid,
                                   n, start, fused, base_point, theta_sums,
                                   item, accumulator)
                elif not fused:
                    _zero_columns(grad_grid[n, start:start + count], axes)
    if fused:
        _sum_chunks(theta_sums.reshape(n_batch, chunks, axes, axes + 1),
                    grad_theta)
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


# ------------------------------------------------------------ entry points
# Plain Python: each views its arrays as `_sample` / `_sample_backward` take
# them (5-D images, (N, P, A) points, empty arrays for the unused grid or
# theta), so those two are the only compiled kernels, one specialisation per
# dtype for 2-D and 3-D, grid and fused alike.
def _volumes(array):
    """(N, C, H, W) as (N, C, 1, H, W); 5-D arrays unchanged (views)."""
    if array.ndim == 4:
        return array.reshape(array.shape[:2] + (1,) + array.shape[2:])
    return array


def _points(grid):
    """A (N, ..., A) grid as (N, P, A) (a view)."""
    return grid.reshape(grid.shape[0], math.prod(grid.shape[1:-1]), grid.shape[-1])


def _flat_volumes(array):
    """(N, C, ...) as (N, C, volume) (a view; a 0-size dummy stays 0-size)."""
    return array.reshape(array.shape[0], array.shape[1], math.prod(array.shape[2:]))


def _no_grid(n_batch, axes, dtype):
    return np.empty((n_batch, 0, axes), dtype)


def _no_theta(axes, dtype):
    return np.empty((0, axes, axes + 1), dtype)


def _grid_sample(input, grid, output, mode, padding_mode, align_corners):
    axes = grid.shape[-1]
    _sample(_volumes(input), _points(grid), _no_theta(axes, grid.dtype), False,
            _volumes(output), mode, padding_mode, align_corners)


def _grid_sample_backward(grad_output, input, grid, grad_input, grad_grid,
                          mode, padding_mode, align_corners,
                          input_requires_grad):
    axes = grid.shape[-1]
    # theta is empty and so is its gradient, which is not written.
    no_theta = _no_theta(axes, grid.dtype)
    _sample_backward(_volumes(grad_output), _volumes(input), _points(grid),
                     no_theta, False, _flat_volumes(grad_input),
                     _points(grad_grid), no_theta, mode, padding_mode,
                     align_corners, bool(input_requires_grad))


def _affine_grid_sample(input, theta, output, mode, padding_mode,
                        align_corners):
    _sample(_volumes(input), _no_grid(theta.shape[0], theta.shape[1], theta.dtype),
            theta, True, _volumes(output), mode, padding_mode, align_corners)


def _affine_grid_sample_backward(grad_output, input, theta, grad_input,
                                 grad_theta, mode, padding_mode,
                                 align_corners, input_requires_grad):
    # The grid is empty and so is its gradient, which is not written.
    no_grid = _no_grid(theta.shape[0], theta.shape[1], theta.dtype)
    _sample_backward(_volumes(grad_output), _volumes(input), no_grid, theta,
                     True, _flat_volumes(grad_input), no_grid, grad_theta,
                     mode, padding_mode, align_corners,
                     bool(input_requires_grad))


def grid_sample_2d(input, grid, output, mode, padding_mode, align_corners):
    """Sample (N, C, H, W) ``input`` at (N, Ho, Wo, 2) ``grid`` into
    (N, C, Ho, Wo) ``output`` (see the module docstring)."""
    _grid_sample(input, grid, output, mode, padding_mode, align_corners)


def grid_sample_3d(input, grid, output, mode, padding_mode, align_corners):
    """Sample (N, C, D, H, W) ``input`` at (N, Do, Ho, Wo, 3) ``grid`` into
    (N, C, Do, Ho, Wo) ``output``."""
    _grid_sample(input, grid, output, mode, padding_mode, align_corners)


def affine_grid_sample_2d(input, theta, output, mode, padding_mode,
                          align_corners):
    """Sample (N, C, H, W) ``input`` at ``affine_grid(theta, output.shape)``
    into (N, C, Ho, Wo) ``output``, without building the grid; ``theta`` is
    (N, 2, 3)."""
    _affine_grid_sample(input, theta, output, mode, padding_mode,
                        align_corners)


def affine_grid_sample_3d(input, theta, output, mode, padding_mode,
                          align_corners):
    """5-D twin of `affine_grid_sample_2d`; ``theta`` is (N, 3, 4)."""
    _affine_grid_sample(input, theta, output, mode, padding_mode,
                        align_corners)


def grid_sample_2d_backward(grad_output, input, grid, grad_input, grad_grid,
                            mode, padding_mode, align_corners,
                            input_requires_grad):
    """Overwrite ``grad_grid`` (N, Ho, Wo, 2) and, if
    ``input_requires_grad``, ``grad_input`` (N, C, H, W); otherwise
    ``grad_input`` may be a 0-size dummy and is not touched."""
    _grid_sample_backward(grad_output, input, grid, grad_input, grad_grid,
                          mode, padding_mode, align_corners,
                          input_requires_grad)


def grid_sample_3d_backward(grad_output, input, grid, grad_input, grad_grid,
                            mode, padding_mode, align_corners,
                            input_requires_grad):
    """5-D twin of `grid_sample_2d_backward`."""
    _grid_sample_backward(grad_output, input, grid, grad_input, grad_grid,
                          mode, padding_mode, align_corners,
                          input_requires_grad)


def affine_grid_sample_2d_backward(grad_output, input, theta, grad_input,
                                   grad_theta, mode, padding_mode,
                                   align_corners, input_requires_grad):
    """Overwrite ``grad_theta`` (N, 2, 3) and, if ``input_requires_grad``,
    ``grad_input`` (N, C, H, W) (else a 0-size dummy, not touched), for
    `affine_grid_sample_2d` with output gradient ``grad_output``
    (N, C, Ho, Wo)."""
    _affine_grid_sample_backward(grad_output, input, theta, grad_input,
                                 grad_theta, mode, padding_mode,
                                 align_corners, input_requires_grad)


def affine_grid_sample_3d_backward(grad_output, input, theta, grad_input,
                                   grad_theta, mode, padding_mode,
                                   align_corners, input_requires_grad):
    """5-D twin of `affine_grid_sample_2d_backward`; ``theta`` (N, 3, 4)."""
    _affine_grid_sample_backward(grad_output, input, theta, grad_input,
                                 grad_theta, mode, padding_mode,
                                 align_corners, input_requires_grad)
