"""CUDA kernels of ``grid_sample``, the fused ``affine_grid_sample``, and their backward.

Twins of :mod:`stn_numba._cpu.sampling`: the host-side launchers below have the
CPU kernels' names and argument order, plus the ``stream`` they launch on, and
follow the same rules (the scalar math is `stn_numba._coords`, shared with the
CPU; zero-weight taps are skipped, so an infinite pixel never reaches a point
that does not use it). As on the CPU, a 2-D input is a 3-D one of depth 1.

Work split: one thread per output point. It computes the point's taps along
each axis once, then loops over the channels.

The fused affine warp (``affine_grid_sample_*``) runs the same kernels: each
thread computes its point's grid value from theta and its base coordinates
(`_source_point`, with the arithmetic of the affine grid kernel, so it gets
the same bits) instead of reading a grid, so the forward never stores the
grid. Its backward writes the per-point ``grad_grid`` to a scratch array
(A floats per output point) and reduces it into ``grad_theta`` with the
affine grid's backward, the fixed tree of :mod:`.grids`: deterministic.

``grad_grid`` is owned per point, so it is deterministic. ``grad_input`` is a
scatter; there are two versions (also of ``affine_grid_sample_*_backward``):

- ``grid_sample_*_backward`` adds with ``cuda.atomic.add``: fast, but the
  order of the additions, and so the rounding, changes from run to run
  (as in torch's CUDA backward);
- ``grid_sample_*_backward_deterministic`` is bitwise reproducible. It counts
  the taps that land on each input pixel (integer atomics, exact), turns the
  counts into segment offsets with an exclusive scan, writes one record
  (tap key = point * taps + tap, weight) per tap into its pixel's segment, and
  finally runs one thread per input pixel that sorts its segment by key
  (heapsort, in place) and adds ``grad_output * weight`` over it in that
  order, for each channel. Extra memory: two int64 arrays of one entry per
  input pixel and image, and room for one record (int64 key + one float)
  per tap, N * points * taps records (taps: 1 nearest, 4 bilinear,
  8 trilinear, 16 bicubic), e.g. 12 bytes * 4 taps = 48 bytes per float32
  bilinear output point. Extra time: two more passes over the points (count,
  place) that redo the tap math, the scan, and the per-pixel sort, which
  grows as k log k in the k taps landing on a pixel (large when upsampling
  a lot). Only the CUDA simulator has measured it so far, on tiny shapes
  (1-3x the atomic backward there); simulator times say nothing about a
  GPU, where ``benchmarks/bench_cuda.py`` measures both.
"""

import math

import numpy as np
from numba import cuda

from .._codes import NEAREST
from .._coords import (
    affine_component,
    mode_taps,
    point_tap,
    point_tap_count,
    single_tap,
    taps_per_axis,
)
from . import launch, rounding  # noqa: F401 (rounding: lowers _coords' floor_value and round_half_even)
from .grids import _affine_grid_backward, affine_base_point

_SCAN_FAN_IN = 256  # values one thread adds in one pass of the scan


@cuda.jit
def _fill(values, value):
    item = cuda.grid(1)
    if item < values.size:
        values[item] = value


def fill(array, value, stream=0):
    """Set every element of a C-contiguous device array to ``value``."""
    flat = array.reshape(array.size)
    launch(_fill, flat.size, stream)(flat, flat.dtype.type(value))


@cuda.jit(device=True)
def _source_point(points, affine, n, p, out_shape, align_corners):
    """The grid value (x, y, z) of output point ``p`` of image ``n`` (z 0 in 2-D), and A.

    ``points`` is a grid (N, P, A), or, with ``affine``, matrices theta (N, A, A+1): the value is then
    computed from theta and the base coordinates of an ``out_shape`` (D, H, W) affine grid, with
    `affine_grid`'s arithmetic (`stn_numba._coords.affine_component`), and never stored."""
    zero = points.dtype.type(0)
    if not affine:
        axes = points.shape[2]
        return points[n, p, 0], points[n, p, 1], points[n, p, 2] if axes == 3 else zero, axes
    axes = points.shape[1]
    x, y, z = affine_base_point(p, out_shape[0], out_shape[1], out_shape[2], align_corners, zero)
    along_z = affine_component(points, n, 2, x, y, z) if axes == 3 else zero
    return affine_component(points, n, 0, x, y, z), affine_component(points, n, 1, x, y, z), along_z, axes


@cuda.jit(device=True)
def _thread_point(points, out_shape):
    """This thread's output point: (n, p) of the N images of ``out_shape`` (D, H, W) points, N =
    ``points.shape[0]``, and whether it has one."""
    count = out_shape[0] * out_shape[1] * out_shape[2]
    item = cuda.grid(1)
    if item >= points.shape[0] * count:
        return 0, 0, False
    return item // count, item % count, True


@cuda.jit(device=True)
def _point_taps(points, affine, n, p, out_shape, depth, height, width, mode, padding_mode, align_corners):
    """The taps of output point ``p`` of image ``n`` (`_source_point`) along z, y and x, each in
    `stn_numba._coords.mode_taps`' form; a 2-D point has one z tap, of weight 1 at index 0."""
    along_x, along_y, along_z, axes = _source_point(points, affine, n, p, out_shape, align_corners)
    taps_z = single_tap(type(depth)(0), type(along_z)(1))
    if axes == 3:
        taps_z = mode_taps(along_z, depth, mode, padding_mode, align_corners)
    return (taps_z, mode_taps(along_y, height, mode, padding_mode, align_corners),
            mode_taps(along_x, width, mode, padding_mode, align_corners))


@cuda.jit
def _sample(source, points, affine, out_shape, output, depth, height, width, mode, padding_mode,
            align_corners):
    """Forward on (N, C, D*H*W) input and (N, C, P) output, the points given by ``points`` and
    ``affine`` (`_source_point`): one thread per point."""
    n, p, inside = _thread_point(points, out_shape)
    if not inside:
        return
    taps_z, taps_y, taps_x = _point_taps(points, affine, n, p, out_shape, depth, height, width, mode,
                                         padding_mode, align_corners)
    zero = points.dtype.type(0)
    for c in range(output.shape[1]):
        total = zero
        for kz in range(taps_z[3]):
            for ky in range(taps_y[3]):
                weight_zy = taps_z[1][kz] * taps_y[1][ky]
                row = (taps_z[0][kz] * height + taps_y[0][ky]) * width
                for kx in range(taps_x[3]):
                    weight = weight_zy * taps_x[1][kx]
                    if weight != zero:
                        total += weight * source[n, c, row + taps_x[0][kx]]
        output[n, c, p] = total


@cuda.jit
def _sample_backward(grad_output, source, points, affine, out_shape, grad_source, grad_grid, depth,
                     height, width, mode, padding_mode, align_corners, scatter):
    """``grad_grid`` (N, P, A) of every point and, if ``scatter``, ``grad_source`` (N, C, D*H*W),
    zeroed by the caller, by atomic adds: one thread per point (``points``, ``affine``: `_source_point`)."""
    n, p, inside = _thread_point(points, out_shape)
    if not inside:
        return
    taps_z, taps_y, taps_x = _point_taps(points, affine, n, p, out_shape, depth, height, width, mode,
                                         padding_mode, align_corners)
    axes = grad_grid.shape[2]
    with_slopes = mode != NEAREST
    zero = points.dtype.type(0)
    grad_x = zero
    grad_y = zero
    grad_z = zero
    for c in range(grad_output.shape[1]):
        upstream = grad_output[n, c, p]
        for kz in range(taps_z[3]):
            for ky in range(taps_y[3]):
                row = (taps_z[0][kz] * height + taps_y[0][ky]) * width
                for kx in range(taps_x[3]):
                    index = row + taps_x[0][kx]
                    if with_slopes:
                        product = upstream * source[n, c, index]
                        slope = taps_z[1][kz] * taps_y[1][ky] * taps_x[2][kx]
                        if slope != zero:
                            grad_x += slope * product
                        slope = taps_z[1][kz] * taps_y[2][ky] * taps_x[1][kx]
                        if slope != zero:
                            grad_y += slope * product
                        if axes == 3:
                            slope = taps_z[2][kz] * taps_y[1][ky] * taps_x[1][kx]
                            if slope != zero:
                                grad_z += slope * product
                    if scatter:
                        weight = taps_z[1][kz] * taps_y[1][ky] * taps_x[1][kx]
                        if weight != zero:
                            cuda.atomic.add(grad_source, (n, c, index), upstream * weight)
    grad_grid[n, p, 0] = grad_x
    grad_grid[n, p, 1] = grad_y
    if axes == 3:
        grad_grid[n, p, 2] = grad_z


# ------------------------------------------------- deterministic grad_input
@cuda.jit(device=True)
def tap_pixel(n, tap_z, tap_y, tap_x, depth, height, width):
    """The flat (N·D·H·W) pixel of a tap of image ``n``."""
    return ((n * depth + tap_z) * height + tap_y) * width + tap_x


@cuda.jit
def _count_taps(points, affine, out_shape, counts, depth, height, width, mode, padding_mode,
                align_corners):
    """``counts[n * D*H*W + pixel]`` += the point's non-zero taps on that pixel (exact integer atomics);
    N = ``points.shape[0]``, P points per image in ``out_shape``."""
    n, p, inside = _thread_point(points, out_shape)
    if not inside:
        return
    taps = _point_taps(points, affine, n, p, out_shape, depth, height, width, mode, padding_mode, align_corners)
    zero = points.dtype.type(0)
    for j in range(point_tap_count(taps)):
        tap_z, tap_y, tap_x, weight = point_tap(taps, j)
        if weight != zero:
            cuda.atomic.add(counts, tap_pixel(n, tap_z, tap_y, tap_x, depth, height, width), 1)


@cuda.jit
def _place_taps(points, affine, out_shape, offsets, counts, keys, weights, depth, height, width, mode,
                padding_mode, align_corners):
    """Write each non-zero tap's (key, weight) into its pixel's segment ``offsets[e]:offsets[e+1]``.

    ``counts`` (from `_count_taps`) is counted back down to 0 to hand out the slots; which slot a
    record gets depends on timing, which the final sort by key undoes."""
    n, p, inside = _thread_point(points, out_shape)
    if not inside:
        return
    taps = _point_taps(points, affine, n, p, out_shape, depth, height, width, mode, padding_mode, align_corners)
    taps_per_point = point_tap_count(taps)
    zero = points.dtype.type(0)
    for j in range(taps_per_point):
        tap_z, tap_y, tap_x, weight = point_tap(taps, j)
        if weight != zero:
            pixel = tap_pixel(n, tap_z, tap_y, tap_x, depth, height, width)
            slot = offsets[pixel] + cuda.atomic.add(counts, pixel, -1) - 1
            keys[slot] = p * taps_per_point + j
            weights[slot] = weight


@cuda.jit(device=True)
def _sift_down(keys, weights, start, root, count):
    """Restore the max-heap order below ``root`` in the heap ``keys[start:start+count]``."""
    while True:
        child = 2 * root + 1
        if child >= count:
            return
        if child + 1 < count and keys[start + child + 1] > keys[start + child]:
            child += 1
        if keys[start + root] >= keys[start + child]:
            return
        keys[start + root], keys[start + child] = keys[start + child], keys[start + root]
        weights[start + root], weights[start + child] = weights[start + child], weights[start + root]
        root = child


@cuda.jit(device=True)
def _heapsort(keys, weights, start, count):
    """Sort ``keys[start:start+count]`` ascending, moving ``weights`` along (in place)."""
    for root in range(count // 2 - 1, -1, -1):
        _sift_down(keys, weights, start, root, count)
    for end in range(count - 1, 0, -1):
        keys[start], keys[start + end] = keys[start + end], keys[start]
        weights[start], weights[start + end] = weights[start + end], weights[start]
        _sift_down(keys, weights, start, 0, end)


@cuda.jit
def gather_taps(grad_output, offsets, keys, weights, taps, grad_source):
    """``grad_source[n, c, e]`` = sum over pixel e's records, sorted by key, of
    ``grad_output[n, c, key // taps] * weight``: one thread per pixel, in a fixed order."""
    n_batch, channels, volume = grad_source.shape
    item = cuda.grid(1)
    if item >= n_batch * volume:
        return
    n = item // volume
    e = item % volume
    start = offsets[item]
    count = offsets[item + 1] - start
    _heapsort(keys, weights, start, count)
    for c in range(channels):
        total = grad_source.dtype.type(0)
        for r in range(start, start + count):
            total += grad_output[n, c, keys[r] // taps] * weights[r]
        grad_source[n, c, e] = total


@cuda.jit
def _chunk_sums(values, sums):
    """``sums[u]`` = sum of ``values[u*F:(u+1)*F]`` (F = ``_SCAN_FAN_IN``)."""
    u = cuda.grid(1)
    if u >= sums.size:
        return
    total = 0
    for i in range(u * _SCAN_FAN_IN, min(values.size, (u + 1) * _SCAN_FAN_IN)):
        total += values[i]
    sums[u] = total


@cuda.jit
def _chunk_scan(values, chunk_offsets, offsets):
    """``offsets[i + 1]`` = ``chunk_offsets[u]`` + the sum of ``values`` from chunk u's start to
    i inclusive, for i in chunk u; ``offsets[0]`` = 0."""
    u = cuda.grid(1)
    if u >= chunk_offsets.size - 1:
        return
    if u == 0:
        offsets[0] = 0
    total = chunk_offsets[u]
    for i in range(u * _SCAN_FAN_IN, min(values.size, (u + 1) * _SCAN_FAN_IN)):
        total += values[i]
        offsets[i + 1] = total


def exclusive_scan(values, offsets, stream):
    """``offsets`` (size + 1) = 0 and the running sums of the int64 ``values`` (exact: integers)."""
    chunks = -(-values.size // _SCAN_FAN_IN)
    chunk_offsets = cuda.device_array(chunks + 1, dtype=np.int64, stream=stream)
    if chunks == 1:
        fill(chunk_offsets, 0, stream)
    else:
        sums = cuda.device_array(chunks, dtype=np.int64, stream=stream)
        launch(_chunk_sums, chunks, stream)(values, sums)
        exclusive_scan(sums, chunk_offsets, stream)
    launch(_chunk_scan, chunks, stream)(values, chunk_offsets, offsets)


def _input_gradient_deterministic(grad_output, points, affine, out_shape, grad_source, depth, height, width,
                                  mode, padding_mode, align_corners, stream):
    """``grad_source`` (N, C, V) overwritten through count, scan, place, sort and gather."""
    n_batch = points.shape[0]
    count = out_shape[0] * out_shape[1] * out_shape[2]
    axes = points.shape[1] if affine else points.shape[2]
    pixels = grad_source.shape[0] * grad_source.shape[2]
    taps = taps_per_axis(mode) ** axes
    counts = cuda.device_array(pixels, dtype=np.int64, stream=stream)
    fill(counts, 0, stream)
    shape_args = (depth, height, width, mode, padding_mode, align_corners)
    launch(_count_taps, n_batch * count, stream)(points, affine, out_shape, counts, *shape_args)
    offsets = cuda.device_array(pixels + 1, dtype=np.int64, stream=stream)
    exclusive_scan(counts, offsets, stream)
    # Room for every tap: reading the exact count back would stall the stream.
    records = max(1, n_batch * count * taps)
    keys = cuda.device_array(records, dtype=np.int64, stream=stream)
    weights = cuda.device_array(records, dtype=points.dtype, stream=stream)
    launch(_place_taps, n_batch * count, stream)(points, affine, out_shape, offsets, counts, keys, weights,
                                                 *shape_args)
    launch(gather_taps, pixels, stream)(grad_output, offsets, keys, weights, taps, grad_source)


# ------------------------------------------------------------- launchers
def _spatial_shape(shape):
    """The (D, H, W) of a 4-D (depth 1) or 5-D (N, C, ...) shape, as ints."""
    return tuple(int(size) for size in ((1,) + tuple(shape[2:]))[-3:])


def _flat_grid(grid):
    """A (N, Ho, Wo, 2) or (N, Do, Ho, Wo, 3) grid as (N, P, A)."""
    axes = grid.shape[grid.ndim - 1]  # the simulator's shapes refuse negative indices
    return grid.reshape(grid.shape[0], math.prod(grid.shape[1:grid.ndim - 1]), axes)


def _forward(input, points, affine, output, mode, padding_mode, align_corners, stream):
    """``output`` (N, C, [Do,] Ho, Wo) sampled from ``input`` at the points of ``points`` and ``affine``
    (`_source_point`)."""
    n_batch, channels = input.shape[0], input.shape[1]
    sizes = _spatial_shape(input.shape)
    out_shape = _spatial_shape(output.shape)
    count = out_shape[0] * out_shape[1] * out_shape[2]
    launch(_sample, n_batch * count, stream)(
        input.reshape(n_batch, channels, sizes[0] * sizes[1] * sizes[2]), points, affine, out_shape,
        output.reshape(n_batch, channels, count), *sizes, mode, padding_mode, align_corners)


def _backward(grad_output, input, points, affine, grad_input, grad_grid, mode, padding_mode, align_corners,
              input_requires_grad, stream, deterministic):
    """Overwrite ``grad_grid`` (N, [Do,] Ho, Wo, A) and, if ``input_requires_grad``, ``grad_input``,
    by atomic adds or, if ``deterministic``, the sorted per-pixel sums."""
    n_batch, channels = input.shape[0], input.shape[1]
    sizes = _spatial_shape(input.shape)
    out_shape = _spatial_shape(grad_output.shape)
    count = out_shape[0] * out_shape[1] * out_shape[2]
    upstream = grad_output.reshape(n_batch, channels, count)
    source = input.reshape(n_batch, channels, sizes[0] * sizes[1] * sizes[2])
    if input_requires_grad:
        grad_source = grad_input.reshape(source.shape)
    else:
        grad_source = cuda.device_array((0, 0, 0), dtype=grad_grid.dtype, stream=stream)
    atomic = input_requires_grad and not deterministic
    if atomic:
        fill(grad_source, 0, stream)
    launch(_sample_backward, n_batch * count, stream)(
        upstream, source, points, affine, out_shape, grad_source, _flat_grid(grad_grid), *sizes, mode, padding_mode,
        align_corners, atomic)
    if input_requires_grad and deterministic:
        _input_gradient_deterministic(upstream, points, affine, out_shape, grad_source, *sizes, mode,
                                      padding_mode, align_corners, stream)


def _affine_backward(grad_output, input, theta, grad_input, grad_theta, mode, padding_mode, align_corners,
                     input_requires_grad, stream, deterministic):
    """`_backward` of the fused op: its ``grad_grid`` goes to a scratch array, reduced into
    ``grad_theta`` by the affine grid's backward (its fixed tree, so deterministic)."""
    out_shape = _spatial_shape(grad_output.shape)
    grad_grid = cuda.device_array((theta.shape[0], *out_shape, theta.shape[1]), dtype=theta.dtype, stream=stream)
    _backward(grad_output, input, theta, True, grad_input, grad_grid, mode, padding_mode, align_corners,
              input_requires_grad, stream, deterministic)
    _affine_grid_backward(grad_grid, grad_theta, align_corners, stream)


def grid_sample_2d(input, grid, output, mode, padding_mode, align_corners, stream=0):
    """Sample (N, C, H, W) ``input`` at (N, Ho, Wo, 2) ``grid`` into (N, C, Ho, Wo) ``output``."""
    _forward(input, _flat_grid(grid), False, output, mode, padding_mode, align_corners, stream)


def grid_sample_3d(input, grid, output, mode, padding_mode, align_corners, stream=0):
    """Sample (N, C, D, H, W) ``input`` at (N, Do, Ho, Wo, 3) ``grid`` into (N, C, Do, Ho, Wo) ``output``."""
    _forward(input, _flat_grid(grid), False, output, mode, padding_mode, align_corners, stream)


def grid_sample_2d_backward(grad_output, input, grid, grad_input, grad_grid, mode, padding_mode,
                            align_corners, input_requires_grad, stream=0):
    """Overwrite ``grad_grid`` (N, Ho, Wo, 2) and, if ``input_requires_grad``, ``grad_input``
    (N, C, H, W) by atomic adds; otherwise ``grad_input`` may be a 0-size dummy and is not touched."""
    _backward(grad_output, input, _flat_grid(grid), False, grad_input, grad_grid, mode, padding_mode,
              align_corners, input_requires_grad, stream, False)


def grid_sample_3d_backward(grad_output, input, grid, grad_input, grad_grid, mode, padding_mode,
                            align_corners, input_requires_grad, stream=0):
    """5-D twin of `grid_sample_2d_backward`."""
    _backward(grad_output, input, _flat_grid(grid), False, grad_input, grad_grid, mode, padding_mode,
              align_corners, input_requires_grad, stream, False)


def grid_sample_2d_backward_deterministic(grad_output, input, grid, grad_input, grad_grid, mode,
                                          padding_mode, align_corners, input_requires_grad, stream=0):
    """`grid_sample_2d_backward` with a bitwise reproducible ``grad_input`` (module docstring)."""
    _backward(grad_output, input, _flat_grid(grid), False, grad_input, grad_grid, mode, padding_mode,
              align_corners, input_requires_grad, stream, True)


def grid_sample_3d_backward_deterministic(grad_output, input, grid, grad_input, grad_grid, mode,
                                          padding_mode, align_corners, input_requires_grad, stream=0):
    """`grid_sample_3d_backward` with a bitwise reproducible ``grad_input`` (module docstring)."""
    _backward(grad_output, input, _flat_grid(grid), False, grad_input, grad_grid, mode, padding_mode,
              align_corners, input_requires_grad, stream, True)


# ------------------------------------------------------- fused affine_grid_sample
def affine_grid_sample_2d(input, theta, output, mode, padding_mode, align_corners, stream=0):
    """``grid_sample_2d(input, affine_grid_2d(theta))`` into (N, C, Ho, Wo) ``output``, for (N, C, H, W)
    ``input`` and (N, 2, 3) ``theta``, without the grid in memory."""
    _forward(input, theta, True, output, mode, padding_mode, align_corners, stream)


def affine_grid_sample_3d(input, theta, output, mode, padding_mode, align_corners, stream=0):
    """5-D twin of `affine_grid_sample_2d`: (N, C, D, H, W) ``input``, (N, 3, 4) ``theta``,
    (N, C, Do, Ho, Wo) ``output``."""
    _forward(input, theta, True, output, mode, padding_mode, align_corners, stream)


def affine_grid_sample_2d_backward(grad_output, input, theta, grad_input, grad_theta, mode, padding_mode,
                                   align_corners, input_requires_grad, stream=0):
    """Overwrite ``grad_theta`` (N, 2, 3) and, if ``input_requires_grad``, ``grad_input`` (N, C, H, W)
    by atomic adds; otherwise ``grad_input`` may be a 0-size dummy and is not touched."""
    _affine_backward(grad_output, input, theta, grad_input, grad_theta, mode, padding_mode, align_corners,
                     input_requires_grad, stream, False)


def affine_grid_sample_3d_backward(grad_output, input, theta, grad_input, grad_theta, mode, padding_mode,
                                   align_corners, input_requires_grad, stream=0):
    """5-D twin of `affine_grid_sample_2d_backward`."""
    _affine_backward(grad_output, input, theta, grad_input, grad_theta, mode, padding_mode, align_corners,
                     input_requires_grad, stream, False)


def affine_grid_sample_2d_backward_deterministic(grad_output, input, theta, grad_input, grad_theta, mode,
                                                 padding_mode, align_corners, input_requires_grad, stream=0):
    """`affine_grid_sample_2d_backward` with a bitwise reproducible ``grad_input`` (module docstring)."""
    _affine_backward(grad_output, input, theta, grad_input, grad_theta, mode, padding_mode, align_corners,
                     input_requires_grad, stream, True)


def affine_grid_sample_3d_backward_deterministic(grad_output, input, theta, grad_input, grad_theta, mode,
                                                 padding_mode, align_corners, input_requires_grad, stream=0):
    """`affine_grid_sample_3d_backward` with a bitwise reproducible ``grad_input`` (module docstring)."""
    _affine_backward(grad_output, input, theta, grad_input, grad_theta, mode, padding_mode, align_corners,
                     input_requires_grad, stream, True)
