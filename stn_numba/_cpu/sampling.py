"""CPU kernels of ``grid_sample``, the fused ``affine_grid_sample`` and their
backward.

The sampler of Jaderberg et al., "Spatial Transformer Networks" (NeurIPS
2015), with PyTorch's modes and paddings; the scalar math is in
`stn_numba._coords`.

One small kernel per case. `kernels` builds, for one (spatial dims, mode,
padding, grid or fused) case, a forward and a backward kernel in which these
are compile-time constants; Numba compiles only those a program calls, and
caches them on disk. A case's loops hold no branch on the mode or padding,
the taps unroll, and a first call compiles one case, not every mode at once.
Each kernel comes in a parallel and a serial version: the entry points at the
end of this module (the kernel contract's names, those of the CUDA twins) run
small work serially on the calling thread, so it does not wake the thread
pool, and the serial tabled versions take the padding as an argument, so
one of them serves every padding (a third of the compilations, where speed
hardly matters). The serial pointwise forward is specialised on the padding,
as its loops vectorise only then. The pointwise backward of one channel
takes the pool from a few hundred output values (`_SERIAL_POINTWISE`), as
its serial loop does not vectorise; the pointwise forward from 65,536
tap reads of one channel, a few thousand of several (`_POOL_FORWARD`). The region
kernels (`sample_region`, `tap_extent`),
for chunked work on a part of a larger input and output, come in both
versions too.

Points. The sample points come from a grid or, for the fused affine warp,
from ``theta @ (x, y[, z], 1)`` over the output's base coordinates, computed
in `affine_grid`'s order of operations so both paths give the same bits. The
fused backward reduces each point's coordinate gradient with its base
coordinates into a float64 ``theta`` gradient per work item, added in
work-item order; the grid is never materialised, except in the bilinear
backward with up to four channels, which is faster as the grid path's on the
affine grid, then `affine_grid`'s backward (`_through_grid`).

Work split. The output of an image is cut into tiles of at most ``_BLOCK``
points, up to ``_TILE_WIDTH`` columns wide, so neighbouring output rows, which
read the same input lines, run together. For a tile the kernel tabulates the
taps along each axis (tap index times the axis stride, weight and, backward,
the weight's derivative), one vectorised loop per axis over a contiguous row
of grid values; then, per channel, one loop over the tile's points combines
them (flat index = sum of the axis indices, weight = product of the axis
weights) and gathers. Arrays are passed flat with offsets and the per-tile
functions are inlined into the parallel loop (Numba's IR inlining), where
Numba tells LLVM that the arrays do not alias: the gathers vectorise, and no
array view is made per tile. Tiles of all images are spread over at most
``_MAX_GROUPS`` tasks, each with its own tables.

Pointwise forward. The forward mostly skips the tables: it computes each
point's taps and gathers them in one loop over a run of output points (a
flat run of the grid, or one output line fused), whose values stay in
registers (`_make_pointwise`), with the same arithmetic in the same order,
so the same bits. A run samples up to four channels with the same taps
(`_pointwise_planes`: bicubic always, bilinear with a channel count
divisible by 2, 3 or 4 where no table is kept). Nearest with several
channels writes each point's one tap (flat offset and weight) to a small
table, then gathers every channel from it (`_gather_table`); so does 2-D
bilinear read in pairs with several channels (fused: six or more), an
offset and four weights a point. Bilinear with other channel counts keeps
the tabled kernel. Fused outputs with short lines sample each
task's points from a small grid of them (`_task_grid`, `_SHORT_LINE`).
Small work runs this way for any channel count, a channel at a time. Where an
input plane is small enough (`loads.narrow`: under 2**29 pixels, 2 to 2**22
along each axis) the taps are int32 and the gathers take 32-bit offsets
(twice the lanes of Numba's int64 ones), and bilinear reads each input row's
two x taps as one 64-bit pair (`linear_pair_taps`, whose index arithmetic is
in floating point), and the rows (and slices) in pairs. Circular padding
(whose taps at the last pixel are the last and the first) and tricubic take
the tabled kernels only, with the padding an argument (`_general`). The parallel region
forward (`sample_region`) runs pointwise too: the taps of the whole input,
shifted into the part, bilinear read in pairs as well (inside the part
wherever a weight is not 0).
A gather starts no hardware prefetcher on AMD Zen, so on all but tiny planes
there the 2-D forward first asks the cache for the input lines a task will
read, from every few of its points (`_prefetch_lines`; nearest with several
channels, from its table of taps; nearest of one channel, one tap a point,
runs faster without), and the 2-D pointwise backward those of each tile:
without it, 224² batches ran up to twice as long, and small rotations of large
images 2-3 times as long as larger ones (the measurements are in the README's
performance section). Other hosts' prefetchers seem to follow gathers: there
the grid path prefetches from planes of 181² pixels (`_PREFETCH_PLANE`), the
fused warp never, the backward as on Zen. The 3-D forward prefetches lines of
two slices on inputs larger than the caches (`_PREFETCH_VOLUME`), parts of an
input included.

Pointwise backward. The bilinear and nearest backward of inputs with up to
four channels runs pointwise too (`_make_pointwise_backward`), with the
tabled kernel's work items, tile by tile in its order: one vectorised loop
over a run of a tile's points computes their taps, each tap's product with
grad_output summed over the channels, the grid gradient and the input offset
and weight of each tap, then a scalar loop per channel scatters these into
grad_input; the same terms in the same order as the tabled kernel, so the
same bits.

Determinism. The forward and ``grad_grid`` are owned per output point. The
``grad_input`` scatter is owned per image: a backward work item is a chunk of
one image's tiles and adds, point by point in a fixed order, into its own
target. With fewer images than ``PARALLEL_CHUNKS`` an image is cut into
several chunks: chunk 0 adds straight into ``grad_input``, every other chunk
into a private buffer that covers only the input rows its taps read (found by
a first pass), and these buffers are then added row by row in chunk order.
The chunking depends only on the shapes, so results are bitwise identical run
to run, serial or parallel, for any thread count.

Taps with weight 0 (outside the image, or a NaN grid value) are skipped, not
multiplied: ``0 * inf`` from an infinite input pixel never reaches a point
that does not use that pixel.
"""

import collections
import functools
import math

import numpy as np
from llvmlite.binding import get_host_cpu_name
from numba import prange, types
from numba.core.errors import TypingError
from numba.extending import overload, register_jitable

from .._codegen import njit
from .._codes import BICUBIC, BILINEAR, BORDER, CIRCULAR, NEAREST, ZEROS
from .._coords import (
    affine_line,
    cubic_taps,
    line_point,
    linear_pair_taps,
    linear_taps,
    nearest_tap,
    nearest_zeros_tap,
    taps_per_axis,
    unnormalize,
)
from .grids import (
    _base_coordinates,
    _sum_chunks,
    affine_grid_2d,
    affine_grid_2d_backward,
    affine_grid_3d,
    affine_grid_3d_backward,
)
from .loads import load_at, load_pair, narrow, prefetch, store_at

_BLOCK = 256  # most points in a tile (its tables stay in L1)
_TILE_WIDTH = 32  # widest tile (see "Work split")
_MAX_GROUPS = 64  # parallel tasks; each allocates one workspace (any value
# gives the same results: it groups work items, it does not split them)
# Below this many tap reads a call runs serially, on the calling thread: the
# serial tabled kernels (backward, regions) keep up with the parallel ones up
# to about 48x48, and one serial kernel serves every padding.
_SERIAL_WORK = 1 << 13
# The pointwise backward of one channel runs on the pool from this many
# output values: its serial loop does not vectorise (only a parallel loop
# gets Numba's no-alias promise to LLVM), and waking the pool costs about a
# microsecond. Measured at 2 threads, whole calls, forward then: nearest
# 2x1x28² 13.5 -> 4.5 µs, 8x1x28² 46 -> 5.9 µs, 1x1x64² 31 -> 7.2 µs;
# bilinear 2x1x28² 17.3 -> 5.1 µs. Small inputs take one plane at a time,
# so that they add no kernel per channel count.
_SERIAL_POINTWISE = 256
# The pointwise forward runs on the pool from this many tap reads (output
# values times taps a value), by spatial dims; below it, serially. The serial
# kernels are specialised on the padding, as the parallel ones, and their
# loops vectorise: their reads and writes tell LLVM they never alias
# (`loads.store_at`). A launch on the pool costs more than the kernels alone
# suggest: on the Intel Xeon host, through TBB (the layer stn_numba loads),
# whole calls back to back, 2 threads, µs, the earlier limits (2-D 2^14, 3-D
# 2^12) against these: bilinear 1x1x64² 18-19 -> 9-16, border 17-20 -> 10-13,
# 8x1x28² 18-22 -> 12-16, 1x1x96² 20-27 -> 17-18; bicubic 1x1x32² 16-20 ->
# 9-10; 3-D 1x1x16³ trilinear 19-24 -> 17-19, nearest 18-20 -> 8-9; at 1
# thread 1x1x64² 11-14 -> 9-10, 1x1x32² bicubic 11-14 -> 9-10. From 2^16 tap
# reads the pool kept up or won (4x3x64² bilinear: 42-50 against 73-87 µs
# serially). (Kernels alone on the Zen 5 host, serial / parallel: bilinear
# 1x1x64² 5.9 / 6.7, bicubic 1x1x32² 6.3 / 6.1, 3-D nearest 1x1x16³ 7.9 /
# 5.6.) Inputs of several channels keep the earlier limits: a serial run
# samples one plane at a time, the pool's several, and 4x3x32² bilinear
# reflection took 35-39 µs serially against 22-24 on the pool.
_POOL_FORWARD = {2: 1 << 16, 3: 1 << 16}
_POOL_FORWARD_CHANNELS = {2: 1 << 14, 3: 1 << 12}
_POINTWISE_TASK = 4096  # output points per task of the pointwise kernels
# Fewest tasks of a parallel pointwise forward: small inputs have their lines
# split among them, as a launch wakes the pool anyway (2 threads, whole
# calls: nearest 1x1x64² 6.4 -> 6.0 µs, 1x1x32² 4.2 -> 3.4 µs, bilinear
# 1x1x64² 9.9 -> 7.7-8.9 µs). A constant, not the thread count: a kernel
# that asks Numba for that cannot be cached.
_MIN_POOL_TASKS = 4
PARALLEL_CHUNKS = 4  # backward: cut images so that N * chunks reaches this (the dask layer reads it)
_MIN_CHUNK_POINTS = 16384  # backward: fewest points worth a private buffer
_PARTIAL_BUDGET = 2**25  # backward: most elements of private buffers
# NumPy's error model: a float division by zero gives Inf instead of raising,
# so no division carries an exception branch, which would keep the loops
# over points (reflection's floor division, for one) from vectorising. No
# kernel divides by zero on valid input. The kernels release the GIL while
# they run, so other Python threads (a thread pool's, a Dask worker's
# transfers) go on meanwhile.
_KERNEL_OPTIONS = {"cache": True, "error_model": "numpy", "nogil": True}


# Channels a parallel pointwise forward run samples at once, largest first;
# measured on the benchmark shapes against the tables (taps computed once
# for all channels): bilinear runs of 2-4 planes win at any channel count
# they divide, bicubic runs always. Nearest with several channels tabulates
# each piece's taps once (one offset and weight a point) and then gathers
# them channel by channel (``ALL_CHANNELS``).
_RUN_PLANES = (4, 3, 2)
ALL_CHANNELS = 0
_TABLE_PIECE = 2048  # points of a table's piece (nearest 16 KiB, bilinear 40 KiB: about L1)
# Parallel 2-D bilinear with int32 reads (pairs of pixels) tabulates each
# piece's taps once too (an offset and four weights a point) from this many
# channels, (grid, fused): then one channel's loop only gathers. Against
# runs, kernels alone, 2 threads (1 thread): 16x64x56² grid 1.62-1.64 ->
# 1.10 ms (3.28-3.36 -> 2.21-2.23), fused 1.75-1.78 -> 1.09-1.14 (3.54-3.64
# -> 2.27-2.28); 8x3x224² grid 0.67-0.69 -> 0.52 (1.31-1.37 -> 1.04-1.06);
# fused runs win up to 4 channels (32x3x224²: 2.86-3.04 ms, tabled 3.38-3.55).
_PAIR_TABLE_CHANNELS = (2, 6)
# A fused output line shorter than _SHORT_LINE, unless it fills whole vectors
# (16 float32 lanes on AVX-512), leaves much of its vector loop to the scalar
# remainder: a task's points are then written to a small grid and sampled as
# one run. Measured at 1 thread, fused: 256x1x28² 1.40 -> 0.72-1.0 ms,
# 128x1x12² 0.22 -> 0.11 ms; 16² lines lost 15-40% this way.
_SHORT_LINE = 32
_VECTOR_LANES = 16
# 2-D forwards of inputs with planes of at least this many pixels have each
# task's input lines prefetched before they sample them (see the module
# docstring). On AMD Zen hosts from small planes: without the prefetches,
# 1 thread, 16x64x56² nearest ran 2.8x as long (the 784 pixels of 256x1x28²
# gained nothing). Elsewhere from 181² pixels: on an Intel Xeon (Emerald
# Rapids), whose prefetchers seem to follow the gathers, smaller planes
# lost time to them, alternating processes, 2 threads (1 thread): 64x3x128²
# -> 64² nearest 0.68 -> 0.52 ms (0.92 -> 0.81), bilinear 1.06 -> 0.96
# (1.65 -> 1.50), fused 1.18 -> 0.86 (1.57 -> 1.14); 16x64x56² fused 2.09
# -> 1.60 (3.40 -> 3.00); there 224² planes still gained (nearest of three
# channels: 8-15%), though not in the fused warp. (The host's CPU name is
# part of the key of Numba's cache unless NUMBA_CPU_NAME is set; under either
# rule the kernels compute the same bits.)
_ZEN_HOST = get_host_cpu_name().startswith("znver")
_PREFETCH_PLANE = 2**11 if _ZEN_HOST else 2**15
# The 2-D pointwise backward prefetches each tile's lines from this many
# pixels a plane (the 784 pixels of 256x1x28² gained nothing).
_PREFETCH_PLANE_BACKWARD = 2**11
# 3-D forwards prefetch from inputs of this many voxels (4 MiB of float32):
# a 141x177x177 input rotated in its planes, 1 thread, grid path 22-23 ->
# 10.3 ms, fused 8.0-8.8 -> 7.1 ms, nearest 5.4-6.5 -> 2.9 ms; within the
# caches (4x1x64³) the fused and nearest forwards lost 0-30% with them.
_PREFETCH_VOLUME = 2**20
_PREFETCH_STRIDE = 8  # output points a prefetched point stands for


def _pointwise_planes(mode, channels, fused, pairs):
    """Channels per run of the parallel pointwise forward, ``ALL_CHANNELS``,
    or None for the tabled kernel; ``pairs``: bilinear would read pairs of
    pixels (2-D, int32 offsets, the whole input)."""
    if channels == 1:
        return 1
    if mode == NEAREST or (mode == BILINEAR and pairs and channels >= _PAIR_TABLE_CHANNELS[fused]):
        return ALL_CHANNELS
    divisors = [planes for planes in _RUN_PLANES if channels % planes == 0]
    return divisors[0] if divisors else (1 if mode == BICUBIC else None)


# ------------------------------------------------------------ geometry
@njit(cache=True, nogil=True)
def _tiling(width, height, depth):
    """How an output (Wo, Ho, Do) is cut into tiles: (tile width, tile
    height, tiles across, tiles per depth slice, tiles per image). Tiles of
    one row band have equal heights, so no band ends in a sliver."""
    tile_width = min(width, _TILE_WIDTH)
    bands = -(-height // max(1, _BLOCK // tile_width))
    tile_height = -(-height // bands)
    across = -(-width // tile_width)
    per_slice = across * bands
    return tile_width, tile_height, across, per_slice, depth * per_slice


@njit(inline="always")
def _tile(number, tiling, width, height):
    """Tile ``number`` of an image: (first point, rows, columns, z, row,
    column); its points are ``first + r * width + c``."""
    tile_width, tile_height, across, per_slice, _ = tiling
    z = number // per_slice
    rest = number - z * per_slice
    row = (rest // across) * tile_height
    column = (rest % across) * tile_width
    rows = min(tile_height, height - row)
    columns = min(tile_width, width - column)
    return (z * height + row) * width + column, rows, columns, z, row, column


# One task's tables, for the ``_BLOCK`` points of a tile at most.
Workspace = collections.namedtuple("Workspace", [
    "index",  # per (axis, tap) row: the tap's index times the axis stride
    "weight",  # per (axis, tap) row: the tap's weight
    "slope",  # per (axis, tap) row: the weight's derivative in the grid value
    "products",  # per tap: grad_output times input, summed over channels
    "coordinate",  # the grid values of one axis, in a contiguous row
    "gradient",  # one grid component's gradient per point
])


@njit(inline="always")
def _workspace(spatial, per_axis, dtype, backward):
    """A task's `Workspace`. The forward needs neither slopes, products nor
    gradients and shares those slots (fewer allocations per call)."""
    rows = spatial * per_axis
    index = np.zeros((rows, _BLOCK), np.int64)
    weight = np.zeros((rows, _BLOCK), dtype)
    coordinate = np.empty(_BLOCK, dtype)
    if backward:
        return Workspace(index, weight, np.zeros((rows, _BLOCK), dtype), np.empty((per_axis**spatial, _BLOCK), dtype),
                         coordinate, np.empty(_BLOCK, dtype))
    return Workspace(index, weight, weight, weight, coordinate, coordinate)


# ------------------------------------------------------------ per tile
# Inlined into the kernels, where the mode, padding, dims and path are
# constants: the branches on them fold away.
def _tabulate(grid, theta, bases, n, points, tile, sizes, region, out_width,
              align_corners, mode, padding, fused, spatial, per_axis,
              with_slopes, windowed, axes, tables):
    """Tabulate the taps of a tile's points along ``axes`` (a range of axis
    numbers): tap index times the axis stride, weight and (``with_slopes``)
    its derivative, per (axis, tap) row.

    ``sizes`` (W, H, D) are the input's, whose strides the indices use.
    ``windowed``: the input is the part of a larger one that starts at
    ``region[3:]`` (x, y, z) of a whole of size ``region[:3]``; the taps are
    those of the whole (its coordinates, its padding at its edges), shifted
    to the part's indices and clamped into it (taps outside the part must
    have weight 0: the caller's promise).

    The grid values (flat grid, interleaved components) are first copied
    into a contiguous row, so the tap loop vectorises; fused, they are
    ``theta[n, axis] @ (x, y[, z], 1)`` in `affine_grid`'s order of
    operations. Compiled once per value of the literal constants (mode,
    padding, path, dims, slopes), with them as constants in the loops.
    """


@overload(_tabulate, prefer_literal=True, jit_options={**_KERNEL_OPTIONS, "forceinline": True})
def _tabulate_case(grid, theta, bases, n, points, tile, sizes, region,
                   out_width, align_corners, mode, padding, fused, spatial,
                   per_axis, with_slopes, windowed, axes, tables):
    kind, from_theta, dims, per, slopes, part = (
        _literal(argument) for argument in (mode, fused, spatial, per_axis, with_slopes, windowed))
    # the padding is a constant of parallel kernels, an argument of serial ones
    constant_padding = padding.literal_value if isinstance(padding, types.IntegerLiteral) else None

    def tabulate(grid, theta, bases, n, points, tile, sizes, region,
                 out_width, align_corners, mode, padding, fused, spatial,
                 per_axis, with_slopes, windowed, axes, tables):
        index, weight, slope, coordinate = tables.index, tables.weight, tables.slope, tables.coordinate
        first, rows, columns, z, row, column = tile
        count = rows * columns
        width, height, depth = sizes
        pad = padding if constant_padding is None else constant_padding
        for axis in axes:
            extent = width if axis == 0 else (height if axis == 1 else depth)
            size = region[axis] if part else extent
            shift = region[3 + axis] if part else 0
            stride = 1 if axis == 0 else (width if axis == 1 else width * height)
            if from_theta:
                xs, ys, zs = bases
                for r in range(rows):
                    line = affine_line(theta, n, axis, ys[row + r], zs[z], dims)
                    for c in range(columns):
                        coordinate[r * columns + c] = line_point(line, xs[column + c])
            else:
                at = (n * points + first) * dims + axis
                for r in range(rows):
                    for c in range(columns):
                        coordinate[r * columns + c] = grid[at + (r * out_width + c) * dims]
            k0 = axis * per
            for p in range(count):
                g = coordinate[p]
                if kind == NEAREST:
                    i, w = nearest_tap(g, size, pad, align_corners)
                    index[k0, p] = _local(i, shift, extent, part) * stride
                    weight[k0, p] = w
                elif kind == BICUBIC:
                    i, w, d = cubic_taps(g, size, pad, align_corners)
                    for k in range(4):
                        index[k0 + k, p] = _local(i[k], shift, extent, part) * stride
                        weight[k0 + k, p] = w[k]
                        if slopes:
                            slope[k0 + k, p] = d[k]
                else:
                    i0, i1, w0, w1, d0, d1 = linear_taps(g, size, pad, align_corners)
                    index[k0, p] = _local(i0, shift, extent, part) * stride
                    index[k0 + 1, p] = _local(i1, shift, extent, part) * stride
                    weight[k0, p] = w0
                    weight[k0 + 1, p] = w1
                    if slopes:
                        slope[k0, p] = d0
                        slope[k0 + 1, p] = d1

    return tabulate


@njit(inline="always")
def _unsigned(index):
    """A flat index (never negative) as uint64: Numba then emits no
    negative-index wrap-around, which costs instructions per tap and turns
    strided reads into gathers."""
    return np.uint64(index)


@njit(inline="always")
def _local(index, shift, extent, windowed):
    """A tap index of the whole input as an index of the part at hand, in
    the index's own integer type (int32 stays int32)."""
    if windowed:
        kind = type(index)
        return min(max(kind(index - shift), kind(0)), kind(extent - 1))
    return index


def _literal(argument):
    """The value of a literal argument type (see `_tabulate`)."""
    if not isinstance(argument, types.Literal):
        raise TypingError(f"expected a literal constant, got {argument}")
    return argument.literal_value


@njit(inline="always")
def _tap(index, weight, spatial, per_axis, kz, ky, kx, p):
    """Flat index and weight (w_z * w_y) * w_x of tap (kz, ky, kx) of point p."""
    if spatial == 3:
        return ((index[2 * per_axis + kz, p] + index[per_axis + ky, p]) + index[kx, p],
                (weight[2 * per_axis + kz, p] * weight[per_axis + ky, p]) * weight[kx, p])
    return (index[per_axis + ky, p] + index[kx, p],
            weight[per_axis + ky, p] * weight[kx, p])


@njit(inline="always")
def _tile_gather(source, source_at, output, output_at, tile, width, spatial,
                 per_axis, tables):
    """``output[point] = sum over taps of weight * source[index]`` for one
    channel of a tile, skipping zero weights (an Inf pixel cannot reach
    points that skip it); taps in (z, y, x) order."""
    index, weight = tables.index, tables.weight
    first, rows, columns = tile[0], tile[1], tile[2]
    zero = output.dtype.type(0)
    for r in range(rows):
        at = output_at + first + r * width
        for c in range(columns):
            p = r * columns + c
            total = zero
            for kz in range(per_axis if spatial == 3 else 1):
                for ky in range(per_axis):
                    for kx in range(per_axis):
                        i, w = _tap(index, weight, spatial, per_axis, kz, ky, kx, p)
                        term = w * source[source_at + i]
                        if w != zero:
                            total += term
            output[at + c] = total


@njit(inline="always")
def _tile_backward(source, source_at, grad_output, output_at, target,
                   target_at, tile, width, spatial, per_axis, with_grid,
                   with_input, tables):
    """One channel of a tile's backward: ``products[t, p] += g * source[i]``
    (for grad_grid) and ``target[i - target_at] += g * weight`` (grad_input,
    zero weights skipped) over the taps t, in a fixed order, with g the
    point's grad_output."""
    index, weight, products = tables.index, tables.weight, tables.products
    first, rows, columns = tile[0], tile[1], tile[2]
    zero = grad_output.dtype.type(0)
    for r in range(rows):
        at = output_at + first + r * width
        for c in range(columns):
            p = r * columns + c
            g = grad_output[at + c]
            t = 0
            for kz in range(per_axis if spatial == 3 else 1):
                for ky in range(per_axis):
                    for kx in range(per_axis):
                        i, w = _tap(index, weight, spatial, per_axis, kz, ky, kx, p)
                        if with_grid:
                            products[t, p] += g * source[source_at + i]
                        if with_input and w != zero:
                            target[i - target_at] += g * w
                        t += 1


@njit(inline="always")
def _tile_grid_gradient(count, axis, spatial, per_axis, tables):
    """``gradient[p] = sum over taps t of slope[t, p] * products[t, p]`` for
    grid component ``axis``, skipping zero slopes; a tap's slope is the
    derivative of its weight (w_z * w_y) * w_x along that component."""
    weight, slope, products, out = tables.weight, tables.slope, tables.products, tables.gradient
    zero = out.dtype.type(0)
    z0, y0 = 2 * per_axis, per_axis
    for p in range(count):
        total = zero
        t = 0
        for kz in range(per_axis if spatial == 3 else 1):
            for ky in range(per_axis):
                for kx in range(per_axis):
                    wz = weight[z0 + kz, p] if spatial == 3 else weight.dtype.type(1)
                    if axis == 0:
                        s = (wz * weight[y0 + ky, p]) * slope[kx, p]
                    elif axis == 1:
                        s = (wz * slope[y0 + ky, p]) * weight[kx, p]
                    else:
                        s = (slope[z0 + kz, p] * weight[y0 + ky, p]) * weight[kx, p]
                    term = s * products[t, p]
                    if s != zero:
                        total += term
                    t += 1
        out[p] = total


@njit(inline="always")
def _store_grid_gradient(grad_grid, n, points, tile, width, axis, spatial,
                         values):
    """Write a tile's gradient of grid component ``axis`` (flat grid)."""
    first, rows, columns = tile[0], tile[1], tile[2]
    at = (n * points + first) * spatial + axis
    for r in range(rows):
        for c in range(columns):
            grad_grid[at + (r * width + c) * spatial] = values[r * columns + c]


@njit(inline="always")
def _add_theta_gradient(point_gradient, tile, bases, theta_sums, item, axis,
                        spatial):
    """``theta_sums[item, axis] += sum_p point_gradient[p] * (x, y[, z], 1)_p``
    over a tile's points, the chain rule through ``coordinate = theta[axis]
    @ (x, y[, z], 1)``; float64 sums, as `_affine_grid_backward`."""
    xs, ys, zs = bases
    _, rows, columns, z, row, column = tile
    plain = along_x = along_y = 0.0
    for r in range(rows):
        row_sum = 0.0
        for c in range(columns):
            g = np.float64(point_gradient[r * columns + c])
            row_sum += g
            along_x += g * np.float64(xs[column + c])
        plain += row_sum
        along_y += row_sum * np.float64(ys[row + r])
    theta_sums[item, axis, 0] += along_x
    theta_sums[item, axis, 1] += along_y
    if spatial == 3:
        theta_sums[item, axis, 2] += plain * np.float64(zs[z])
    theta_sums[item, axis, spatial] += plain


@njit(inline="always")
def _affine_parts(points, out_region, align_corners, fused, spatial):
    """Fused: theta (N, A, A+1) from the flat points, and the base
    coordinates (xs, ys, zs) of the output, which is the part starting at
    ``out_region[3:]`` of a whole of size ``out_region[:3]`` (W, H, D);
    grid path: empty stand-ins."""
    if fused:
        return (points.reshape(-1, spatial, spatial + 1),
                (_base_coordinates(out_region[0], align_corners, points)[out_region[3]:],
                 _base_coordinates(out_region[1], align_corners, points)[out_region[4]:],
                 _base_coordinates(out_region[2], align_corners, points)[out_region[5]:]))
    empty = np.empty(0, points.dtype)
    return np.empty((0, spatial, spatial + 1), points.dtype), (empty, empty, empty)


@njit(inline="always")
def _sizes(array, spatial):
    """(W, H, D) of an (N, C, *S) array, D = 1 in 2-D."""
    return array.shape[-1], array.shape[-2], array.shape[-3] if spatial == 3 else 1


@njit(inline="always")
def _region(window, at):
    """(whole size (W, H, D), origin (x, y, z)) of the input (``at`` 0) or
    output (``at`` 6) of a windowed kernel, from ``window`` (`region_window`)."""
    return (window[at], window[at + 1], window[at + 2], window[at + 3], window[at + 4], window[at + 5])


@njit(inline="always")
def _whole(sizes):
    """The region of an array that is the whole: its sizes, origin 0. Int64
    throughout: a tuple mixing literal ints trips Numba's array analysis of
    parallel kernels (and so did a tuple of two regions)."""
    zero = np.int64(0)
    return (np.int64(sizes[0]), np.int64(sizes[1]), np.int64(sizes[2]), zero, zero, zero)


# ------------------------------------------------------------ backward phases
@njit(inline="always")
def _gradient_target(item, n, channels, volume, width, rows, offsets, buffered):
    """Where work item ``item`` (of image ``n``) adds its input gradient:
    (offset of the image's first pixel in the target, elements per channel).
    Chunk 0 adds into grad_input itself; a ``buffered`` chunk into its
    private buffer at ``offsets[item]``, which holds input rows
    ``rows[item, 0]..rows[item, 1]`` of each channel."""
    if buffered:
        return offsets[item] - rows[item, 0] * width, (rows[item, 1] - rows[item, 0] + 1) * width
    return n * channels * volume, volume


@njit(inline="always")
def _zero_target(target, image_at, span, channels, first_row_at):
    """Zero the part of ``target`` that a work item adds into."""
    at = image_at + first_row_at
    target[at:at + channels * span] = 0


@njit(inline="always")
def _tile_channels_backward(source, grad_output, target, n, channels, volume, count, image_at, span, tile,
                            out_width, spatial, per_axis, with_grid, with_input, tables):
    """Every channel of a tile's backward (`_tile_backward`), its taps
    tabulated in ``tables``: the products summed over channels, and the input
    gradient added into ``target``."""
    if with_grid:
        # (named first: inlined into a prange body, a slice assignment to a
        # namedtuple's field itself was lost, the buffer left as np.empty made it)
        products = tables.products
        products[:] = 0
    for c in range(channels):
        _tile_backward(source, (n * channels + c) * volume, grad_output, (n * channels + c) * count, target,
                       -(image_at + c * span), tile, out_width, spatial, per_axis, with_grid, with_input, tables)


@njit(inline="always")
def _tile_points_gradient(grad_points, theta_sums, bases, item, n, count, tile, out_width, spatial, per_axis,
                          with_grid, fused, tables):
    """A tile's gradient of each grid component, from the products in
    ``tables`` (zeros for nearest): stored into the grid's gradient, or, fused,
    added into work item ``item``'s theta sums."""
    gradient = tables.gradient  # (see `_tile_channels_backward`)
    for axis in range(spatial):
        if with_grid:
            _tile_grid_gradient(tile[1] * tile[2], axis, spatial, per_axis, tables)
        else:
            gradient[:] = 0
        if fused:
            _add_theta_gradient(gradient, tile, bases, theta_sums, item, axis, spatial)
        else:
            _store_grid_gradient(grad_points, n, count, tile, out_width, axis, spatial, gradient)


# ------------------------------------------------------------ backward chunks
@njit(cache=True, nogil=True)
def _chunk_tiles(chunk, chunks, tiles):
    """First and one-past-last tile of a backward chunk of an image."""
    return chunk * tiles // chunks, (chunk + 1) * tiles // chunks


@njit(inline="always")
def _tap_rows(grid, theta, bases, n, points, first_tile, stop_tile, tiling,
              sizes, region, out_sizes, align_corners, mode, padding, fused,
              spatial, per_axis, windowed, tables):
    """Lowest and highest input row (``z * height + y``) that any tap of the
    tiles ``first_tile..stop_tile-1`` of image ``n`` reads, or (0, -1)."""
    width, height, depth = sizes
    out_width, out_height, _ = out_sizes
    index = tables.index
    low = depth * height
    high = -1
    for number in range(first_tile, stop_tile):
        tile = _tile(number, tiling, out_width, out_height)
        count = tile[1] * tile[2]
        # the y and z taps; with width 1 their strides are 1 and height:
        # input rows
        _tabulate(grid, theta, bases, n, points, tile, (1, height, depth),
                  region, out_width, align_corners, mode, padding, fused,
                  spatial, per_axis, False, windowed, range(1, spatial),
                  tables)
        for kz in range(per_axis if spatial == 3 else 1):
            for ky in range(per_axis):
                for p in range(count):
                    row = index[per_axis + ky, p]
                    if spatial == 3:
                        row += index[2 * per_axis + kz, p]
                    low = min(low, row)
                    high = max(high, row)
    return low, high


@njit(parallel=True, cache=True, nogil=True)
def _add_private_rows(grad_source, rows, offsets, buffers, chunks):
    """Add the private buffers into grad_input (N, C, D, H, W), each input
    row in chunk order; rows are independent, so they run in parallel."""
    n_batch, channels, depth, height, width = grad_source.shape
    image_rows = depth * height
    volume = image_rows * width
    flat = grad_source.reshape(-1)
    for job in prange(n_batch * image_rows):
        n = job // image_rows
        row = job % image_rows
        for item in range(n * chunks + 1, (n + 1) * chunks):
            low, high = rows[item, 0], rows[item, 1]
            if low <= row <= high:
                span = (high - low + 1) * width
                for c in range(channels):
                    source_at = offsets[item] + c * span + (row - low) * width
                    target_at = (n * channels + c) * volume + row * width
                    for x in range(width):
                        flat[target_at + x] += buffers[source_at + x]


# ------------------------------------------------------------ kernels
@register_jitable
def _planning_padding(mode, padding):
    """The padding whose taps the planning kernels (``chunk_rows``,
    ``extent``) read: they need a tap outside the image at the nearest edge
    (monotone in the coordinate), which a nearest tap with zeros padding
    does not give (`nearest_tap`: index 0) and one with border padding does,
    with the same index for every tap inside."""
    return BORDER if mode == NEAREST and padding == ZEROS else padding


def _make_kernels(spatial, mode, padding, fused, parallel, windowed):
    """The kernels of one case: forward, backward, and the backward's
    planners ``chunk_rows`` and ``extent``. ``parallel`` chooses ``prange``
    over task groups or one serial loop (same bits)."""
    return (_make_samplers(spatial, mode, padding, fused, parallel, windowed)
            + _make_planners(spatial, mode, padding, fused, parallel, windowed))


def _make_samplers(spatial, mode, padding, fused, parallel, windowed):
    """The forward and backward kernels of one case (see `_make_kernels`).
    Arrays arrive flat (C order), with their sizes."""
    loop = prange if parallel else range
    per_axis = taps_per_axis(mode)
    with_grid = mode != NEAREST

    @njit(parallel=parallel, **_KERNEL_OPTIONS)
    def forward(source, points, output, window, padding_mode, align_corners):
        """Sample ``source`` (N, C, *S) into ``output`` (N, C, *So) at the
        grid (N, *So, A) or, fused, theta (N, A, A+1) ``points``; a
        windowed case samples parts of a larger input and output
        (``window``, see `region_window`)."""
        pad = padding_mode if padding is None else padding
        n_batch, channels = source.shape[0], source.shape[1]
        sizes, out_sizes = _sizes(source, spatial), _sizes(output, spatial)
        # (``window`` is None unless windowed)
        region = _region(window, 0) if windowed else _whole(sizes)
        out_region = _region(window, 6) if windowed else _whole(out_sizes)
        out_width, out_height, out_depth = out_sizes
        volume = sizes[0] * sizes[1] * sizes[2]
        count = out_width * out_height * out_depth
        # flat views, made here: returned from a helper, Numba would count
        # them as aliases and the parallel loop would lose its no-alias
        # promise to LLVM
        source = source.reshape(-1)
        points = points.reshape(-1)
        output = output.reshape(-1)
        theta, bases = _affine_parts(points, out_region, align_corners, fused, spatial)
        tiling = _tiling(out_width, out_height, out_depth)
        tiles = tiling[4]
        items = n_batch * tiles
        groups = min(items, _MAX_GROUPS) if parallel else 1
        for group in loop(groups):
            tables = _workspace(spatial, per_axis, output.dtype, False)
            for item in range(group * items // groups, (group + 1) * items // groups):
                n = item // tiles
                tile = _tile(item % tiles, tiling, out_width, out_height)
                _tabulate(points, theta, bases, n, count, tile, sizes, region,
                          out_width, align_corners, mode, pad, fused,
                          spatial, per_axis, False, windowed, range(spatial),
                          tables)
                for c in range(channels):
                    _tile_gather(source, (n * channels + c) * volume, output,
                                 (n * channels + c) * count, tile, out_width,
                                 spatial, per_axis, tables)

    @njit(parallel=parallel, **_KERNEL_OPTIONS)
    def backward(grad_output, source, points, grad_source, grad_points,
                 chunks, rows, offsets, buffers, window, padding_mode,
                 align_corners, input_requires_grad):
        """Backward of `forward`: overwrites ``grad_points`` (the grid's or
        theta's gradient) and, if ``input_requires_grad``, ``grad_source``
        (else it may be a 0-size dummy). A work item is chunk ``k`` of
        ``chunks`` of an image's tiles; for k > 0 it adds into its private
        buffer, ``buffers[offsets[item]:]`` for input rows ``rows[item]``
        (see `_backward_plan`)."""
        pad = padding_mode if padding is None else padding
        n_batch, channels = source.shape[0], source.shape[1]
        sizes, out_sizes = _sizes(source, spatial), _sizes(grad_output, spatial)
        # (``window`` is None unless windowed)
        region = _region(window, 0) if windowed else _whole(sizes)
        out_region = _region(window, 6) if windowed else _whole(out_sizes)
        width, height, depth = sizes
        out_width, out_height, out_depth = out_sizes
        volume = width * height * depth
        count = out_width * out_height * out_depth
        dtype = grad_output.dtype
        grad_output = grad_output.reshape(-1)
        source = source.reshape(-1)
        points = points.reshape(-1)
        grad_source = grad_source.reshape(-1)
        grad_points = grad_points.reshape(-1)
        theta, bases = _affine_parts(points, out_region, align_corners, fused, spatial)
        tiling = _tiling(out_width, out_height, out_depth)
        tiles = tiling[4]
        items = n_batch * chunks
        groups = min(items, _MAX_GROUPS) if parallel else 1
        theta_sums = np.zeros((items if fused else 0, spatial, spatial + 1), np.float64)
        for group in loop(groups):
            tables = _workspace(spatial, per_axis, dtype, True)
            for item in range(group * items // groups, (group + 1) * items // groups):
                n = item // chunks
                chunk = item % chunks
                # grad_input goes to the image itself, or to the item's
                # private buffer (chosen here, not returned from a helper,
                # which Numba would count as an alias: see `forward`)
                buffered = input_requires_grad and chunk > 0
                target = buffers if buffered else grad_source
                image_at, span = _gradient_target(item, n, channels, volume, width, rows, offsets, buffered)
                if input_requires_grad:
                    _zero_target(target, image_at, span, channels, rows[item, 0] * width if buffered else 0)
                first, stop = _chunk_tiles(chunk, chunks, tiles)
                for number in range(first, stop):
                    tile = _tile(number, tiling, out_width, out_height)
                    _tabulate(points, theta, bases, n, count, tile, sizes,
                              region, out_width, align_corners, mode, pad,
                              fused, spatial, per_axis, with_grid, windowed,
                              range(spatial), tables)
                    _tile_channels_backward(source, grad_output, target, n, channels, volume, count, image_at, span,
                                            tile, out_width, spatial, per_axis, with_grid, input_requires_grad, tables)
                    _tile_points_gradient(grad_points, theta_sums, bases, item, n, count, tile, out_width, spatial,
                                          per_axis, with_grid, fused, tables)
        if fused:
            _sum_chunks(theta_sums.reshape(n_batch, chunks, spatial, spatial + 1),
                        grad_points.reshape(n_batch, spatial, spatial + 1))

    return forward, backward


def _make_planners(spatial, mode, padding, fused, parallel, windowed):
    """The kernels that plan a case's backward (see `_make_kernels`):
    ``chunk_rows`` for the private buffers, ``extent`` for a window's reads."""
    loop = prange if parallel else range
    per_axis = taps_per_axis(mode)
    planning_padding = None if padding is None else _planning_padding(mode, padding)

    @njit(parallel=parallel, **_KERNEL_OPTIONS)
    def chunk_rows(grad_output, source, points, chunks, window, padding_mode,
                   align_corners, rows):
        """``rows[item]`` = the lowest and highest input row (z * H + y) that
        backward work item ``item`` (chunk k > 0 of an image) reads."""
        pad = _planning_padding(mode, padding_mode) if padding is None else planning_padding
        n_batch = source.shape[0]
        sizes, out_sizes = _sizes(source, spatial), _sizes(grad_output, spatial)
        # (``window`` is None unless windowed)
        region = _region(window, 0) if windowed else _whole(sizes)
        out_region = _region(window, 6) if windowed else _whole(out_sizes)
        out_width, out_height, out_depth = out_sizes
        count = out_width * out_height * out_depth
        points = points.reshape(-1)
        theta, bases = _affine_parts(points, out_region, align_corners, fused, spatial)
        tiling = _tiling(out_width, out_height, out_depth)
        items = n_batch * chunks
        groups = min(items, _MAX_GROUPS) if parallel else 1
        for group in loop(groups):
            tables = _workspace(spatial, per_axis, points.dtype, False)
            for item in range(group * items // groups, (group + 1) * items // groups):
                first, stop = _chunk_tiles(item % chunks, chunks, tiling[4])
                rows[item, 0], rows[item, 1] = _tap_rows(
                    points, theta, bases, item // chunks, count, first, stop,
                    tiling, sizes, region, out_sizes, align_corners, mode,
                    pad, fused, spatial, per_axis, windowed, tables)

    @njit(parallel=parallel, **_KERNEL_OPTIONS)
    def extent(points, n_batch, out_sizes, window, padding_mode, align_corners,
               bounds):
        """``bounds[group, axis]`` = the lowest and highest tap index along
        input axis (x, y, z) that the points of a task group read, for an
        output of ``out_sizes`` (W, H, D) and the whole input and output of
        ``window``; zero- and nonzero-weight taps alike (a gradient reads
        both)."""
        pad = _planning_padding(mode, padding_mode) if padding is None else planning_padding
        points = points.reshape(-1)
        region = _region(window, 0)
        out_region = _region(window, 6)
        theta, bases = _affine_parts(points, out_region, align_corners, fused, spatial)
        out_width, out_height, out_depth = out_sizes
        count = out_width * out_height * out_depth
        tiling = _tiling(out_width, out_height, out_depth)
        tiles = tiling[4]
        items = n_batch * tiles
        groups = bounds.shape[0]
        for group in loop(groups):
            tables = _workspace(spatial, per_axis, points.dtype, False)
            index = tables.index
            for axis in range(spatial):
                bounds[group, axis, 0] = region[axis]
                bounds[group, axis, 1] = -1
            for item in range(group * items // groups, (group + 1) * items // groups):
                tile = _tile(item % tiles, tiling, out_width, out_height)
                for axis in range(spatial):
                    # sizes of 1 but along ``axis``: index = tap, stride 1
                    along = (region[0] if axis == 0 else 1, region[1] if axis == 1 else 1,
                             region[2] if axis == 2 else 1)
                    _tabulate(points, theta, bases, item // tiles, count, tile,
                              along, region, out_width, align_corners, mode,
                              pad, fused, spatial, per_axis, False, False,
                              range(axis, axis + 1), tables)
                    for k in range(per_axis):
                        for p in range(tile[1] * tile[2]):
                            bounds[group, axis, 0] = min(bounds[group, axis, 0], index[axis * per_axis + k, p])
                            bounds[group, axis, 1] = max(bounds[group, axis, 1], index[axis * per_axis + k, p])

    return chunk_rows, extent


# The taps of one grid value along one axis as tuples (indices, weights,
# slopes); the forward drops the slopes, which LLVM then never computes.
@njit(inline="always")
def _nearest_axis_taps(g, size, padding, align_corners):
    # nearest_tap dispatches zeros padding the same way, but LLVM inlines it,
    # and the vector loop then reloads its constants (see nearest_zeros_tap)
    if padding == ZEROS:  # (a constant in the parallel kernels)
        i, w = nearest_zeros_tap(g, size, align_corners)
    else:
        i, w = nearest_tap(g, size, padding, align_corners)
    return (i,), (w,), (type(w)(0),)


@njit(inline="always")
def _linear_axis_taps(g, size, padding, align_corners):
    i0, i1, w0, w1, d0, d1 = linear_taps(g, size, padding, align_corners)
    return (i0, i1), (w0, w1), (d0, d1)


@njit(inline="always")
def _linear_pair_axis_taps(g, size, padding, align_corners):
    start, low, high, low_slope, high_slope = linear_pair_taps(g, size, padding, align_corners)
    return (start,), (low, high), (low_slope, high_slope)


@njit(inline="always")
def _linear_paired_axis_taps(g, size, padding, align_corners):
    """`_linear_axis_taps` as the pair of rows (or slices) that
    `linear_pair_taps` names: the same nonzero terms, in the same order."""
    start, low, high, low_slope, high_slope = linear_pair_taps(g, size, padding, align_corners)
    return (start, type(start)(start + 1)), (low, high), (low_slope, high_slope)


@njit(inline="always")
def _cubic_axis_taps(g, size, padding, align_corners):
    return cubic_taps(g, size, padding, align_corners)


@njit(inline="always")
def _add_term(total, weight, value):
    """``total + weight * value``, or ``total`` for a zero weight (see the
    module docstring)."""
    term = weight * value
    return total + term if weight != type(total)(0) else total


@njit(inline="always")
def _row_terms(total, source, base, row, ix, wx, w_row):
    """Add the x taps of one input row: one read each."""
    for kx in range(len(ix)):
        total = _add_term(total, w_row * wx[kx], source[_unsigned(base + (row + ix[kx]))])
    return total


@njit(inline="always")
def _narrow_row_terms(total, source, base, row, ix, wx, w_row):
    """`_row_terms` with int32 offsets."""
    for kx in range(len(ix)):
        total = _add_term(total, w_row * wx[kx], load_at(source, base, np.int32(row + ix[kx])))
    return total


@njit(inline="always")
def _pair_row_terms(total, source, base, row, ix, wx, w_row):
    """`_row_terms` of a pair of taps (`linear_pair_taps`), one load."""
    low, high = load_pair(source, base, np.int32(row + ix[0]))
    return _add_term(_add_term(total, w_row * wx[0], low), w_row * wx[1], high)


# by mode, for (wide, narrow) offsets: the taps along y (and z), along x,
# and the function adding a row's x taps; narrow planes have 2 to 2**22
# pixels along every axis (`loads.narrow`), so bilinear takes pairs there
_AXIS_TAPS = {NEAREST: (_nearest_axis_taps, _nearest_axis_taps),
              BILINEAR: (_linear_axis_taps, _linear_paired_axis_taps),
              BICUBIC: (_cubic_axis_taps, _cubic_axis_taps)}
_X_TAPS = {NEAREST: (_nearest_axis_taps, _nearest_axis_taps),
           BILINEAR: (_linear_axis_taps, _linear_pair_axis_taps),
           BICUBIC: (_cubic_axis_taps, _cubic_axis_taps)}
_ROW_TERMS = {NEAREST: (_row_terms, _narrow_row_terms),
              BILINEAR: (_row_terms, _pair_row_terms),
              BICUBIC: (_row_terms, _narrow_row_terms)}


def _local_taps(indices, shift, extent):
    """`_local` of each index of a tuple of 1, 2 or 4 taps."""


@overload(_local_taps, jit_options={**_KERNEL_OPTIONS, "forceinline": True})
def _local_taps_case(indices, shift, extent):
    count = len(indices)
    if count == 1:
        return lambda indices, shift, extent: (_local(indices[0], shift, extent, True),)
    if count == 2:
        return lambda indices, shift, extent: (_local(indices[0], shift, extent, True),
                                               _local(indices[1], shift, extent, True))
    return lambda indices, shift, extent: (
        _local(indices[0], shift, extent, True), _local(indices[1], shift, extent, True),
        _local(indices[2], shift, extent, True), _local(indices[3], shift, extent, True))


@njit(**{**_KERNEL_OPTIONS, "forceinline": True})
def _lines(theta, bases, n, line, out_height, dims):
    """The components of ``theta[n] @ (x, y[, z], 1)`` along output line
    ``line`` (z * Ho + y), as `affine_line`'s (slope, offset) each (the z
    component is x's in 2-D, unused)."""
    _, ys, zs = bases
    z = line // out_height
    row = line - z * out_height
    line_x = affine_line(theta, n, 0, ys[row], zs[z], dims)
    line_y = affine_line(theta, n, 1, ys[row], zs[z], dims)
    line_z = line_x
    if dims == 3:
        line_z = affine_line(theta, n, 2, ys[row], zs[z], dims)
    return line_x, line_y, line_z


@njit(**{**_KERNEL_OPTIONS, "forceinline": True})
def _task_grid(grid, theta, bases, n, first, stop, out_width, out_height, dims):
    """Write the sample points of output lines ``first..stop-1`` of image
    ``n`` to ``grid`` as a flat grid (interleaved components), the fused
    path's values: short lines are then sampled in one long run."""
    xs = bases[0]
    for line in range(first, stop):
        line_x, line_y, line_z = _lines(theta, bases, n, line, out_height, dims)
        at = (line - first) * out_width * dims
        for column in range(out_width):
            grid[at + column * dims] = line_point(line_x, xs[column])
            grid[at + column * dims + 1] = line_point(line_y, xs[column])
            if dims == 3:
                grid[at + column * dims + 2] = line_point(line_z, xs[column])


def _sample_run(source, points, points_at, output, theta, bases, n, channel,
                channels, line, first, stop, sizes, out_sizes, region, pad,
                align_corners, mode, fused, spatial, narrow, planes, windowed, serial, table, table_at):
    """The pointwise forward of the output points in columns ``first..stop-1``
    of output line ``line`` (z * Ho + y) of channels ``channel`` to
    ``channel + planes - 1`` of image ``n`` (each point's taps computed
    once for them); on the grid path a run may go on over the next lines
    (columns past the width), and column 0 of ``line`` is point
    ``points_at`` of ``points`` (a flat grid). ``narrow``: the input's
    planes are read with int32 offsets (`loads.narrow`), bilinear in
    pairs. ``windowed``: the input is a part of a larger one (``region``,
    as in `_tabulate`); taps are clamped into it (a pair of pixels stays
    inside: where a pixel's weight is not 0, it is one of `tap_extent`'s).
    ``planes`` ``ALL_CHANNELS``: each point's taps go to ``table``
    (`_new_table`; None otherwise), column ``first`` at ``table_at``, for
    `_gather_table`. ``serial``: the kernel runs on the calling thread,
    where only reads tagged as never aliasing the writes (`loads`) let the
    loop vectorise; a parallel loop has Numba's promise, and there the
    plain read of a 3-D point's z keeps the grid's interleaved loads
    (tagged, they became gathers: 4x1x64³ nearest lost its vectorised
    loop). Compiled once per value of the literal constants (mode, fused,
    dims, narrow, planes, windowed, serial) and inlined by LLVM, not Numba:
    the parallel loop's array analysis fails on the tuples of taps. (An
    overload, not a closure: a closure holding a dispatcher gets a new cache
    key in every process, so Numba would compile it every time.)"""


@overload(_sample_run, prefer_literal=True, jit_options={**_KERNEL_OPTIONS, "forceinline": True})
def _sample_run_case(source, points, points_at, output, theta, bases, n, channel,
                     channels, line, first, stop, sizes, out_sizes, region, pad,
                     align_corners, mode, fused, spatial, narrow, planes, windowed, serial, table, table_at):
    from_theta, dims, narrowed = _literal(fused), _literal(spatial), _literal(narrow)
    run_planes, part, tagged_z = _literal(planes), _literal(windowed), _literal(serial)
    axis_taps, x_taps = _AXIS_TAPS[_literal(mode)][narrowed], _X_TAPS[_literal(mode)][narrowed]
    row_terms = _ROW_TERMS[_literal(mode)][narrowed]
    # in a part, a pair's first pixel stays one short of the part's last
    x_last = 1 if narrowed and _literal(mode) == BILINEAR else 0
    index = np.int32 if narrowed else np.int64  # tap indices follow the sizes' type
    # a write no read aliases (`loads.store_at`): what lets the serial kernels,
    # which run one plane at a time, vectorise; runs of several planes keep
    # plain writes (bicubic's three planes ran 3x slower with it)
    one_plane = run_planes == 1
    pair_table = run_planes == ALL_CHANNELS and _literal(mode) == BILINEAR

    def sample_run(source, points, points_at, output, theta, bases, n, channel,
                   channels, line, first, stop, sizes, out_sizes, region, pad,
                   align_corners, mode, fused, spatial, narrow, planes, windowed, serial, table, table_at):
        width, height, depth = index(sizes[0]), index(sizes[1]), index(sizes[2])
        # the taps are those of the whole input (``sizes`` unless windowed), shifted into the part
        whole_width, whole_height, whole_depth = index(region[0]), index(region[1]), index(region[2])
        shift_x, shift_y, shift_z = index(region[3]), index(region[4]), index(region[5])
        out_width, out_height, out_depth = out_sizes
        count = out_width * out_height * out_depth
        volume = sizes[0] * sizes[1] * sizes[2]
        image_at = (n * channels + channel) * volume
        at = (n * channels + channel) * count + line * out_width
        xs = bases[0]
        zero = output.dtype.type(0)
        line_x = line_y = line_z = (zero, zero)
        if from_theta:
            line_x, line_y, line_z = _lines(theta, bases, n, line, out_height, dims)
        for column in range(first, stop):
            if from_theta:
                x = load_at(xs, column, np.int32(0))
                gx = line_point(line_x, x)
                gy = line_point(line_y, x)
                gz = line_point(line_z, x) if dims == 3 else zero
            else:
                point = (points_at + column) * dims
                gx, gy = load_pair(points, _unsigned(point), np.int32(0))
                gz = zero
                if dims == 3:  # (see ``serial``)
                    gz = load_at(points, point + 2, np.int32(0)) if tagged_z else points[_unsigned(point + 2)]
            ix, wx, _ = x_taps(gx, whole_width, pad, align_corners)
            iy, wy, _ = axis_taps(gy, whole_height, pad, align_corners)
            iz, wz, _ = axis_taps(gz, whole_depth, pad, align_corners)  # 2-D: unused
            if part:
                ix = _local_taps(ix, shift_x, width - x_last)
                iy = _local_taps(iy, shift_y, height)
                iz = _local_taps(iz, shift_z, depth)
            if run_planes == ALL_CHANNELS:  # (z, y, x) as in `_row_terms`
                k = table_at + (column - first)
                if pair_table:  # the rows iy[0] and iy[0] + 1 (`_pair_row_terms`)
                    table[0][k] = iy[0] * width + ix[0]
                    table[1][k] = wy[0] * wx[0]
                    table[2][k] = wy[0] * wx[1]
                    table[3][k] = wy[1] * wx[0]
                    table[4][k] = wy[1] * wx[1]
                elif dims == 3:
                    table[0][k] = iz[0] * (width * height) + iy[0] * width + ix[0]
                    table[1][k] = (wz[0] * wy[0]) * wx[0]
                else:
                    table[0][k] = iy[0] * width + ix[0]
                    table[1][k] = wy[0] * wx[0]
            else:
                for plane in range(run_planes):
                    total = zero
                    for kz in range(len(iz) if dims == 3 else 1):
                        for ky in range(len(iy)):
                            if dims == 3:
                                total = row_terms(total, source, image_at + plane * volume,
                                                  iz[kz] * (width * height) + iy[ky] * width,
                                                  ix, wx, wz[kz] * wy[ky])
                            else:
                                total = row_terms(total, source, image_at + plane * volume,
                                                  iy[ky] * width, ix, wx, wy[ky])
                    if one_plane:
                        store_at(output, _unsigned(at + plane * count + column), total)
                    else:
                        output[_unsigned(at + plane * count + column)] = total

    return sample_run


@njit(inline="always")
def _prefetch_index(g, whole, origin, high, align_corners):
    """Along one axis, the index in an input part at ``origin`` of a whole of
    ``whole`` pixels of the pixel at or left of grid value ``g``, clamped
    into [0, ``high``] (NaN to 0). Clamped as a float (no conversion
    overflows), then as an integer (a float32 bound over 2**24 may have
    rounded up)."""
    zero = type(g)(0)
    x = unnormalize(g, whole, align_corners)[0] - type(g)(origin)
    return min(np.int64(min(x if x > zero else zero, type(g)(high))), high)


@njit(inline="always")
def _prefetch_offset(gx, gy, gz, sizes, region, align_corners, dims):
    """The flat offset in a ``sizes`` input (the part of the whole input
    that ``region`` names) of the pixel of grid point (gx, gy[, gz]) in the
    upper of its two rows (and the front of its two slices), clamped so that
    the rows (slices) after it are in the input too: what `_prefetch_point`
    asks the cache for."""
    column = _prefetch_index(gx, region[0], region[3], sizes[0] - 1, align_corners)
    row = _prefetch_index(gy, region[1], region[4], max(sizes[1] - 2, 0), align_corners)
    offset = row * sizes[0] + column
    if dims == 3:
        plane = _prefetch_index(gz, region[2], region[5], max(sizes[2] - 2, 0), align_corners)
        offset += plane * (sizes[0] * sizes[1])
    return offset


@njit(inline="always")
def _prefetch_point(source, image_at, gx, gy, gz, sizes, region, align_corners, dims):
    """Ask the cache for the input lines of grid point (gx, gy[, gz]) in the
    image at ``image_at``: `_prefetch_offset`'s pixel, the one below it and,
    in 3-D, the two behind them."""
    at = image_at + _prefetch_offset(gx, gy, gz, sizes, region, align_corners, dims)
    below = sizes[0]
    if sizes[1] == 1:
        below = 0
    prefetch(source, at)
    prefetch(source, at + below)
    if dims == 3:
        behind = sizes[0] * sizes[1]
        if sizes[2] == 1:
            behind = 0
        prefetch(source, at + behind)
        prefetch(source, at + behind + below)


@njit(**{**_KERNEL_OPTIONS, "forceinline": True})
def _prefetch_lines(source, theta, bases, n, image_at, first, stop, sizes, out_sizes, region, align_corners,
                    dims):
    """Prefetch the input lines that fused output lines ``first..stop-1`` of
    image ``n`` read from the image at ``image_at``, from every
    `_PREFETCH_STRIDE`-th point (`_PREFETCH_PLANE`); `_prefetch_points` on
    the grid path. A hint: no value depends on it."""
    xs = bases[0]
    for line in range(first, stop):
        line_x, line_y, line_z = _lines(theta, bases, n, line, out_sizes[1], dims)
        for column in range(0, out_sizes[0], _PREFETCH_STRIDE):
            gx = line_point(line_x, xs[column])
            gy = line_point(line_y, xs[column])
            gz = gx
            if dims == 3:
                gz = line_point(line_z, xs[column])
            _prefetch_point(source, image_at, gx, gy, gz, sizes, region, align_corners, dims)


@njit(**{**_KERNEL_OPTIONS, "forceinline": True})
def _prefetch_points(source, points, image_at, first, stop, sizes, region, align_corners, dims):
    """`_prefetch_lines` of the grid's points ``first..stop-1`` (flat)."""
    for point in range(first, stop, _PREFETCH_STRIDE):
        gx = points[_unsigned(dims * point)]
        gy = points[_unsigned(dims * point + 1)]
        gz = gx
        if dims == 3:
            gz = points[_unsigned(dims * point + 2)]
        _prefetch_point(source, image_at, gx, gy, gz, sizes, region, align_corners, dims)


def _read(source, base, offset):
    """``source[base + offset]``, with an int32 ``offset`` read as such
    (`loads.load_at`)."""


@overload(_read, jit_options={**_KERNEL_OPTIONS, "forceinline": True})
def _read_case(source, base, offset):
    if offset.bitwidth <= 32:
        return lambda source, base, offset: load_at(source, base, offset)
    return lambda source, base, offset: source[_unsigned(base + offset)]


def _new_table(mode, narrow, output):
    """The table of a piece's taps that `_sample_run` fills for
    `_gather_table`: nearest (flat offsets, weights); bilinear (offsets of
    the upper pair, weights of its low and high pixel, of the lower pair's).
    Offsets int32 where ``narrow``."""


@overload(_new_table, prefer_literal=True, jit_options={**_KERNEL_OPTIONS, "forceinline": True})
def _new_table_case(mode, narrow, output):
    index = np.int32 if _literal(narrow) else np.int64
    if _literal(mode) == BILINEAR:
        return lambda mode, narrow, output: (
            np.empty(_TABLE_PIECE, index), np.empty(_TABLE_PIECE, output.dtype),
            np.empty(_TABLE_PIECE, output.dtype), np.empty(_TABLE_PIECE, output.dtype),
            np.empty(_TABLE_PIECE, output.dtype))
    return lambda mode, narrow, output: (np.empty(_TABLE_PIECE, index), np.empty(_TABLE_PIECE, output.dtype))


def _gather_table(source, output, table, length, image_at, at, channels, volume, count, width, prefetching):
    """The forward of a piece of ``length`` points tabulated by `_sample_run`
    (`_new_table`), channel by channel, into ``output[at + p]``: the terms
    of `_add_term`, from 0, in the order of `_row_terms`, so the same bits.
    ``width``: the input's, the lower pair's offset from the upper.
    ``prefetching``: each channel's input lines are asked for first (as in
    `_prefetch_lines`). The stores alias no read (`loads.store_at`), so the
    loop vectorises."""


@overload(_gather_table, jit_options={**_KERNEL_OPTIONS, "forceinline": True})
def _gather_table_case(source, output, table, length, image_at, at, channels, volume, count, width, prefetching):
    if len(table) == 2:
        def gather_taps(source, output, table, length, image_at, at, channels, volume, count, width, prefetching):
            offsets, weights = table
            zero = output.dtype.type(0)
            for channel in range(channels):
                base = image_at + channel * volume
                if prefetching:
                    for p in range(0, length, _PREFETCH_STRIDE):
                        prefetch(source, base + offsets[p])
                for p in range(length):
                    store_at(output, _unsigned(at + channel * count + p),
                             _add_term(zero, weights[p], _read(source, base, offsets[p])))

        return gather_taps

    def gather_pairs(source, output, table, length, image_at, at, channels, volume, count, width, prefetching):
        offsets, upper_low, upper_high, lower_low, lower_high = table
        zero = output.dtype.type(0)
        below = np.int32(width)
        for channel in range(channels):
            base = image_at + channel * volume
            if prefetching:
                for p in range(0, length, _PREFETCH_STRIDE):
                    prefetch(source, base + offsets[p])
                    prefetch(source, base + (offsets[p] + below))
            for p in range(length):
                low, high = load_pair(source, base, offsets[p])
                total = _add_term(_add_term(zero, upper_low[p], low), upper_high[p], high)
                low, high = load_pair(source, base, np.int32(offsets[p] + below))
                total = _add_term(_add_term(total, lower_low[p], low), lower_high[p], high)
                store_at(output, _unsigned(at + channel * count + p), total)

    return gather_pairs


def _make_pointwise(spatial, mode, padding, fused, parallel, narrow, planes, windowed):
    """The pointwise forward kernel of one case (see the module docstring):
    the same arithmetic, in the same order, as `_make_kernels`' forward, so
    the same bits; a run samples ``planes`` channels (a divisor of the
    channel count) at once, or all of them from a table of its taps
    (``ALL_CHANNELS``)."""
    loop = prange if parallel else range
    serial = not parallel
    # (a constant, so that Numba prunes the branch.) No prefetches in serial
    # kernels (small work: they compile faster without), in 2-D parts of an
    # input (stn_numba.dask's tasks ran 3-6% longer with them), nor in 2-D
    # nearest of one channel, one tap a point (with them, 1 thread:
    # 1x1x2048² 2.8 -> 4.1 ms, 8x1x224² 0.22 -> 0.28 ms; 2 threads 1.4-1.6 ->
    # 2.1 ms and 0.11-0.15 -> 0.14 ms), nor, but on AMD Zen, in the 2-D fused
    # warp (see `_PREFETCH_PLANE`; on the Intel Xeon, alternating processes,
    # 2 threads: 32x3x224² 4.6-7.4 -> 3.7-4.7 ms, 1x1x2048² 4.9-6.2 -> 3.4-3.8
    # ms; 1 thread 32x3x224² 9.5-14.6 -> 6.1-11.2 ms).
    prefetches = parallel and (spatial == 3 or not (windowed or (mode == NEAREST and planes == 1)
                                                    or (fused and not _ZEN_HOST)))

    @njit(parallel=parallel, **_KERNEL_OPTIONS)
    def forward(source, points, output, window, padding_mode, align_corners):
        """As `_make_kernels`' forward. A task is a run
        of about ``_POINTWISE_TASK`` output points of an image: whole output
        lines fused (each line's part of theta @ (x, y[, z], 1) is computed
        once), any run of the flat grid otherwise. The padding is the kernel's
        constant (``padding_mode``: the kernel contract's argument)."""
        pad = padding
        n_batch, channels = source.shape[0], source.shape[1]
        sizes, out_sizes = _sizes(source, spatial), _sizes(output, spatial)
        out_width = out_sizes[0]
        lines = out_sizes[1] * out_sizes[2]
        volume = sizes[0] * sizes[1] * sizes[2]
        count = out_width * lines
        source = source.reshape(-1)
        points = points.reshape(-1)
        output = output.reshape(-1)
        # (``window`` is None unless windowed)
        region = _region(window, 0) if windowed else _whole(sizes)
        out_region = _region(window, 6) if windowed else _whole(out_sizes)
        theta, bases = _affine_parts(points, out_region, align_corners, fused, spatial)
        per_task = max(1, _POINTWISE_TASK // out_width)  # output lines per task
        if parallel and n_batch * -(-lines // per_task) < _MIN_POOL_TASKS:
            per_task = -(-lines // -(-_MIN_POOL_TASKS // n_batch))  # (small inputs)
        tasks = -(-lines // per_task)
        # fused, short lines are sampled from a grid of the task's points,
        # in one long vectorised run (see `_SHORT_LINE`)
        task_grids = (fused and out_width < _SHORT_LINE and out_width % _VECTOR_LANES != 0
                      and planes != ALL_CHANNELS)
        prefetching = volume >= (_PREFETCH_PLANE if spatial == 2 else _PREFETCH_VOLUME)
        for task in loop(n_batch * tasks):
            n = task // tasks
            first = (task % tasks) * per_task
            stop = min(first + per_task, lines)
            if planes == ALL_CHANNELS:
                table = _new_table(mode, narrow, output)
                if fused:  # pieces of whole lines, or of one line longer than a piece
                    per_piece = max(1, _TABLE_PIECE // out_width)
                    for piece_first in range(first, stop, per_piece):
                        piece_stop = min(piece_first + per_piece, stop)
                        for start in range(0, out_width, _TABLE_PIECE):
                            end = min(start + _TABLE_PIECE, out_width)
                            for line in range(piece_first, piece_stop):
                                _sample_run(source, points, 0, output, theta, bases, n, 0, channels, line, start,
                                            end, sizes, out_sizes, region, pad, align_corners, mode, fused,
                                            spatial, narrow, planes, windowed, serial, table,
                                            (line - piece_first) * (end - start))
                            _gather_table(source, output, table, (piece_stop - piece_first) * (end - start),
                                          n * channels * volume,
                                          n * channels * count + piece_first * out_width + start,
                                          channels, volume, count, sizes[0], prefetches and prefetching)
                else:  # pieces of the task's flat run
                    length = (stop - first) * out_width
                    for start in range(0, length, _TABLE_PIECE):
                        end = min(start + _TABLE_PIECE, length)
                        _sample_run(source, points, n * count + first * out_width, output, theta, bases, n, 0,
                                    channels, first, start, end, sizes, out_sizes, region, pad, align_corners,
                                    mode, fused, spatial, narrow, planes, windowed, serial, table, 0)
                        _gather_table(source, output, table, end - start, n * channels * volume,
                                      n * channels * count + first * out_width + start,
                                      channels, volume, count, sizes[0], prefetches and prefetching)
            elif task_grids:
                task_grid = np.empty((stop - first) * out_width * spatial, output.dtype)
                _task_grid(task_grid, theta, bases, n, first, stop, out_width, out_sizes[1], spatial)
                for channel in range(0, channels, planes):
                    _sample_run(source, task_grid, 0, output, theta, bases, n,
                                channel, channels, first, 0,
                                (stop - first) * out_width, sizes, out_sizes,
                                region, pad, align_corners, mode, False,
                                spatial, narrow, planes, windowed, serial, None, 0)
            else:
                for channel in range(0, channels, planes):
                    if prefetches:
                        if prefetching:
                            for plane in range(channel, channel + planes):
                                image_at = (n * channels + plane) * volume
                                if fused:
                                    _prefetch_lines(source, theta, bases, n, image_at, first, stop, sizes,
                                                    out_sizes, region, align_corners, spatial)
                                else:
                                    _prefetch_points(source, points, image_at, n * count + first * out_width,
                                                     n * count + stop * out_width, sizes, region,
                                                     align_corners, spatial)
                    if fused:
                        for line in range(first, stop):
                            _sample_run(source, points, 0, output, theta, bases, n,
                                        channel, channels, line, 0, out_width,
                                        sizes, out_sizes, region, pad,
                                        align_corners, mode, fused, spatial,
                                        narrow, planes, windowed, serial, None, 0)
                    else:
                        _sample_run(source, points, n * count + first * out_width, output, theta, bases, n,
                                    channel, channels, first, 0,
                                    (stop - first) * out_width, sizes, out_sizes,
                                    region, pad, align_corners, mode, fused,
                                    spatial, narrow, planes, windowed, serial, None, 0)

    return forward


_POINTWISE = {}  # (spatial, mode, padding, fused, parallel, narrow, planes, windowed) -> forward kernel


def pointwise(spatial, mode, padding, fused, parallel, narrow, planes=1, windowed=False):
    """The pointwise forward kernel of a case (built once)."""
    case = (spatial, mode, padding, fused, parallel, narrow, planes, windowed)
    kernel = _POINTWISE.get(case)
    if kernel is None:
        kernel = _POINTWISE[case] = _make_pointwise(*case)
    return kernel


@njit(inline="always")
def _add_grid_terms(grads, product, w_row, d_row, dz_wy, wx, dx, dims):
    """Add one tap's terms to a point's grid gradient ``grads`` (x, y, z):
    the tap's weight is ``w_row * wx`` and its product over the channels
    ``product`` (`_tap_products`); its slopes along x, y, z are ``w_row *
    dx``, ``d_row * wx`` and ``dz_wy * wx``, as in `_tile_grid_gradient`."""
    grad_x, grad_y, grad_z = grads
    grad_x = _add_term(grad_x, w_row * dx, product)
    grad_y = _add_term(grad_y, d_row * wx, product)
    if dims == 3:
        grad_z = _add_term(grad_z, dz_wy * wx, product)
    return grad_x, grad_y, grad_z


@njit(inline="always")
def _tap_products(source, base, offset, volume, grad_output, g_at, count, planes):
    """``(sum over channels c of g_c * source[base + c * volume + offset],)``
    added from 0 channel by channel (the tabled backward's products), ``g_c``
    the point's grad_output in channel c (``g_at + c * count``)."""
    total = grad_output.dtype.type(0)
    for c in range(planes):
        total = total + grad_output[_unsigned(g_at + c * count)] * load_at(source, base + c * volume, offset)
    return (total,)


@njit(inline="always")
def _pair_products(source, base, offset, volume, grad_output, g_at, count, planes):
    """`_tap_products` of the taps at ``offset`` and ``offset + 1``, one load
    a channel."""
    low_total = high_total = grad_output.dtype.type(0)
    for c in range(planes):
        g = grad_output[_unsigned(g_at + c * count)]
        low, high = load_pair(source, base + c * volume, offset)
        low_total = low_total + g * low
        high_total = high_total + g * high
    return low_total, high_total


@njit(inline="always")
def _row_backward(offset, wx, dx, products, w_row, d_row, dz_wy, grads, index,
                  weight, group, at, dims):
    """A row's x taps, pixels ``offset``, ``offset + 1``, ...: their input
    offsets and weights go to ``index[group, at + k * _BLOCK]`` and
    ``weight[group, at + k * _BLOCK]``; returns ``grads`` with their
    grid-gradient terms added."""
    for k in range(len(wx)):
        index[group, _unsigned(at + k * _BLOCK)] = offset + np.int32(k)
        weight[group, _unsigned(at + k * _BLOCK)] = w_row * wx[k]
        grads = _add_grid_terms(grads, products[k], w_row, d_row, dz_wy, wx[k], dx[k], dims)
    return grads


# by mode: the products of a row's x taps (the narrow x taps of `_X_TAPS`:
# consecutive pixels from ix[0])
_ROW_PRODUCTS = {NEAREST: _tap_products, BILINEAR: _pair_products}


def _backward_run(grad_output, source, points, grad_points, index, weight,
                  group, n, first, stop, at, sizes, count, pad, align_corners,
                  mode, spatial, planes):
    """The pointwise backward of output points ``first..stop-1`` (flat) of
    image ``n`` (``planes`` channels, all of the input's; planes read with
    int32 offsets): writes their grid gradient, and the input offset and
    weight of each of their taps into ``index[group]`` and
    ``weight[group]``, tap t of the run's point k at ``t * _BLOCK + at +
    k`` (consecutive slots: stores that vectorise), for `_scatter_tile`.
    The same arithmetic, in the same order, as the tabled backward, so the
    same bits. An overload on the literal mode, dims and planes, inlined by
    LLVM (see `_sample_run`)."""


@overload(_backward_run, prefer_literal=True, jit_options={**_KERNEL_OPTIONS, "forceinline": True})
def _backward_run_case(grad_output, source, points, grad_points, index,
                       weight, group, n, first, stop, at, sizes, count, pad,
                       align_corners, mode, spatial, planes):
    dims, channels = _literal(spatial), _literal(planes)
    axis_taps = _AXIS_TAPS[_literal(mode)][True]
    x_taps_narrow, row_products = _X_TAPS[_literal(mode)][True], _ROW_PRODUCTS[_literal(mode)]
    x_taps = taps_per_axis(_literal(mode))

    def backward_run(grad_output, source, points, grad_points, index, weight,
                     group, n, first, stop, at, sizes, count, pad,
                     align_corners, mode, spatial, planes):
        width, height, depth = np.int32(sizes[0]), np.int32(sizes[1]), np.int32(sizes[2])
        volume = sizes[0] * sizes[1] * sizes[2]
        image_at = n * channels * volume
        zero = grad_output.dtype.type(0)
        for p in range(first, stop):
            g_at = n * channels * count + p
            point = (n * count + p) * dims
            gz = points[_unsigned(point + 2)] if dims == 3 else zero
            ix, wx, dx = x_taps_narrow(points[_unsigned(point)], width, pad, align_corners)
            iy, wy, dy = axis_taps(points[_unsigned(point + 1)], height, pad, align_corners)
            iz, wz, dz = axis_taps(gz, depth, pad, align_corners)  # 2-D: unused
            grads = (zero, zero, zero)
            slot = at + (p - first)
            for kz in range(len(iz) if dims == 3 else 1):
                for ky in range(len(iy)):
                    if dims == 3:
                        row = iz[kz] * (width * height) + iy[ky] * width
                        w_row, d_row, dz_wy = wz[kz] * wy[ky], wz[kz] * dy[ky], dz[kz] * wy[ky]
                    else:
                        row, w_row, d_row, dz_wy = iy[ky] * width, wy[ky], dy[ky], zero
                    offset = np.int32(row + ix[0])
                    products = row_products(source, image_at, offset, volume, grad_output, g_at, count, channels)
                    grads = _row_backward(offset, wx, dx, products, w_row, d_row, dz_wy, grads, index,
                                          weight, group, slot + (kz * len(iy) + ky) * x_taps * _BLOCK, dims)
            grad_points[_unsigned(point)] = grads[0]
            grad_points[_unsigned(point + 1)] = grads[1]
            if dims == 3:
                grad_points[_unsigned(point + 2)] = grads[2]

    return backward_run


@njit(**{**_KERNEL_OPTIONS, "forceinline": True})
def _scatter_tile(grad_output, target, index, weight, group, output_at,
                  target_at, tile, width, taps):
    """``target[target_at + offset] += g * weight`` for every tap of a
    tile's points as `_backward_run` recorded them, point by point in the
    tile's order, tap by tap, skipping zero weights (the tabled backward's
    order). (Inlined by LLVM, not Numba: Numba's IR inlining would make its
    arguments aliases of the kernel's, which then loses its no-alias promise
    to LLVM.)"""
    first, rows, columns = tile[0], tile[1], tile[2]
    zero = grad_output.dtype.type(0)
    for r in range(rows):
        for c in range(columns):
            g = grad_output[_unsigned(output_at + first + r * width + c)]
            point = r * columns + c
            for t in range(taps):
                w = weight[group, _unsigned(t * _BLOCK + point)]
                if w != zero:
                    target[_unsigned(target_at + index[group, _unsigned(t * _BLOCK + point)])] += g * w


@njit(**{**_KERNEL_OPTIONS, "forceinline": True})
def _zero(array, first, stop):
    """``array[first:stop] = 0`` (in a parallel kernel, with no view: see
    `_scatter_tile`)."""
    for i in range(first, stop):
        array[_unsigned(i)] = 0


def _make_pointwise_backward(spatial, mode, padding, planes):
    """The pointwise (parallel) backward kernel of one case: grid path,
    ``planes`` channels (`_POINTWISE_BACKWARD_PLANES`), planes read with
    int32 offsets."""
    taps = taps_per_axis(mode) ** spatial
    prefetches = spatial == 2  # (a constant, as in `_make_pointwise`: 3-D kernels compile without them)

    @njit(parallel=True, **_KERNEL_OPTIONS)
    def backward(grad_output, source, points, grad_source, grad_points,
                 chunks, rows, offsets, buffers, index, weight, padding_mode,
                 align_corners, input_requires_grad):
        """As `_make_kernels`' backward, without ``window``, with the same
        work items (chunks of an image's tiles, with their private buffers)
        and tile order: per tile, the grid gradient and the taps in one
        vectorised loop per run of consecutive points, then the scatter.
        ``index`` and ``weight`` (groups, taps * `_BLOCK`) are the task
        groups' tables: arguments, not allocated here, so that LLVM knows
        they alias no other array."""
        n_batch = source.shape[0]
        sizes, out_sizes = _sizes(source, spatial), _sizes(grad_output, spatial)
        out_width, out_height, out_depth = out_sizes
        volume = sizes[0] * sizes[1] * sizes[2]
        count = out_width * out_height * out_depth
        image_volume = planes * volume
        grad_output = grad_output.reshape(-1)
        source = source.reshape(-1)
        points = points.reshape(-1)
        grad_source = grad_source.reshape(-1)
        grad_points = grad_points.reshape(-1)
        tiling = _tiling(out_width, out_height, out_depth)
        items = n_batch * chunks
        groups = index.shape[0]
        prefetching = volume >= _PREFETCH_PLANE_BACKWARD  # (see `_prefetch_lines`)
        for group in prange(groups):
            for item in range(group * items // groups, (group + 1) * items // groups):
                n = item // chunks
                chunk = item % chunks
                # grad_input target: the image itself (chunk 0) or the
                # item's private buffer of input rows rows[item, 0].. of
                # each channel
                if input_requires_grad:
                    if chunk == 0:
                        _zero(grad_source, n * image_volume, (n + 1) * image_volume)
                    else:
                        _zero(buffers, offsets[item], offsets[item + 1])
                first, stop = _chunk_tiles(chunk, chunks, tiling[4])
                for number in range(first, stop):
                    tile = _tile(number, tiling, out_width, out_height)
                    first_point, rows_, columns = tile[0], tile[1], tile[2]
                    # a tile of whole output lines is one run of points (no
                    # tuples here: Numba would count them as aliases, and
                    # the loop would lose its no-alias promise)
                    runs = 1 if columns == out_width else rows_
                    length = rows_ * columns if columns == out_width else columns
                    if prefetches:
                        if prefetching:  # the tile's input lines first
                            for r in range(runs):
                                for c in range(planes):
                                    _prefetch_points(source, points, (n * planes + c) * volume,
                                                     n * count + first_point + r * out_width,
                                                     n * count + first_point + r * out_width + length,
                                                     sizes, _whole(sizes), align_corners, spatial)
                    for r in range(runs):
                        _backward_run(grad_output, source, points, grad_points,
                                      index, weight, group, n,
                                      first_point + r * out_width,
                                      first_point + r * out_width + length,
                                      r * length, sizes, count,
                                      padding, align_corners, mode, spatial,
                                      planes)
                    for c in range(planes if input_requires_grad else 0):
                        if chunk == 0:
                            _scatter_tile(grad_output, grad_source, index, weight,
                                          group, (n * planes + c) * count,
                                          (n * planes + c) * volume, tile,
                                          out_width, taps)
                        else:
                            span = (rows[item, 1] - rows[item, 0] + 1) * sizes[0]
                            _scatter_tile(grad_output, buffers, index, weight,
                                          group, (n * planes + c) * count,
                                          offsets[item] - rows[item, 0] * sizes[0] + c * span,
                                          tile, out_width, taps)

    return backward


_POINTWISE_BACKWARD = {}  # (spatial, mode, padding, planes) -> backward kernel
# channel counts of the pointwise backward (more: the tabled one, whose
# tables hold each tap's products over the channels)
_POINTWISE_BACKWARD_PLANES = (1, 2, 3, 4)


def pointwise_backward(spatial, mode, padding, planes=1):
    """The pointwise backward kernel of a case (built once)."""
    case = (spatial, mode, padding, planes)
    kernel = _POINTWISE_BACKWARD.get(case)
    if kernel is None:
        kernel = _POINTWISE_BACKWARD[case] = _make_pointwise_backward(*case)
    return kernel


_CASES = {}  # (spatial, mode, padding, fused, parallel, windowed) -> kernels


def kernels(spatial, mode, padding, fused, parallel, windowed=False):
    """The (forward, backward, chunk_rows) kernels of a case (built once;
    each compiled on its first call)."""
    case = (spatial, mode, padding, fused, parallel, windowed)
    pair = _CASES.get(case)
    if pair is None:
        pair = _CASES[case] = _make_kernels(*case)
    return pair


# ------------------------------------------------------------ entry points
# Plain Python: each picks its case's kernel, serial for small work, which
# then runs without waking the thread pool.
def _parallel(spatial, mode, work_items):
    """Whether work runs on the thread pool (else serially)."""
    return work_items * taps_per_axis(mode) ** spatial >= _SERIAL_WORK


def _kernel(spatial, mode, padding_mode, fused, work_items, which, windowed=False):
    """The tabled kernel ``which`` of a case (see `_specialised_padding`)."""
    parallel = _parallel(spatial, mode, work_items)
    return kernels(spatial, mode, _specialised_padding(spatial, mode, padding_mode, parallel), fused, parallel,
                   windowed)[which]


def _specialised_padding(spatial, mode, padding_mode, parallel):
    """The padding a tabled kernel is compiled for, or None for the kernel
    that takes it as an argument: parallel kernels are specialised on it;
    serial ones, for small work, take it as an argument (a third of the
    compilations), and so do the rarer general cases (`_general`)."""
    return padding_mode if parallel and not _general(spatial, mode, padding_mode) else None


def _general(spatial, mode, padding_mode):
    """Whether a case runs the tabled kernels with the padding an argument,
    never the pointwise ones: circular padding (whose bilinear taps are no
    pair of adjacent pixels at the last pixel) and tricubic. Each then
    compiles one kernel for every padding, not one per padding and path
    (a suite's cold compile time), at some speed on large work."""
    return padding_mode == CIRCULAR or (spatial == 3 and mode == BICUBIC)


def _forward(fused, input, points, output, mode, padding_mode, align_corners,
             window=None):
    kernel = (_remembered_forward_kernel(fused, input.shape, output.size, mode, padding_mode) if window is None
              else _forward_kernel(fused, input.shape, output.size, mode, padding_mode, window))
    kernel(input, points, output, window, padding_mode, align_corners)


def _forward_kernel(fused, shape, out_size, mode, padding_mode, window=None):
    """The forward kernel for an input of ``shape`` and an output of ``out_size`` elements."""
    spatial = len(shape) - 2
    windowed = window is not None
    parallel = _parallel(spatial, mode, out_size)
    pool_from = (_POOL_FORWARD if shape[1] == 1 else _POOL_FORWARD_CHANNELS)[spatial]
    on_pool = parallel if windowed else out_size * taps_per_axis(mode) ** spatial >= pool_from
    # a part (bilinear reads pairs there too); its taps are the whole input's, which must fit too
    pairs = mode == BILINEAR or not windowed
    whole = tuple(window[:spatial].tolist())[::-1] if windowed else None
    if _general(spatial, mode, padding_mode):
        return _kernel(spatial, mode, padding_mode, fused, out_size, 0, windowed)
    reads_narrow = narrow(shape[2:], pairs) and (not windowed or narrow(whole, pairs))
    planes = _pointwise_planes(mode, shape[1], fused, spatial == 2 and reads_narrow and not windowed)
    if not on_pool and (planes != ALL_CHANNELS or mode == BILINEAR):
        planes = 1  # (a serial run of several planes does not vectorise: 2-3x slower)
    if planes is None or (windowed and not parallel):  # the tabled kernel
        return _kernel(spatial, mode, padding_mode, fused, out_size, 0, windowed)
    return pointwise(spatial, mode, padding_mode, fused, on_pool, reads_narrow, planes, windowed)


# what a call on a small input pays in Python counts (the fixed cost of a call)
_remembered_forward_kernel = functools.lru_cache(maxsize=256)(_forward_kernel)


def forward_runner(fused, shape, out_shape, dtype, mode, padding_mode, align_corners):
    """A function of (input, points) that returns a new ``out_shape`` output
    of ``dtype`` computed by the forward kernel these shapes and options
    select, as `grid_sample_2d` and its siblings do, without their lookup:
    for callers that remember it for calls like this one
    (`stn_numba._device`)."""
    kernel = _remembered_forward_kernel(fused, shape, math.prod(out_shape), mode, padding_mode)

    def run(input, points):
        output = np.empty(out_shape, dtype)
        kernel(input, points, output, None, padding_mode, align_corners)
        return output

    return run


def _backward(fused, grad_output, input, points, grad_input, grad_points,
              mode, padding_mode, align_corners, input_requires_grad,
              window=None):
    windowed = window is not None
    if fused and not windowed and _through_grid(input.shape, mode, padding_mode):
        _backward_through_grid(grad_output, input, points, grad_input, grad_points, mode, padding_mode,
                               align_corners, input_requires_grad)
        return
    chunks, rows, offsets, buffers = _backward_plan(
        fused, grad_output, input, points, mode, padding_mode, align_corners,
        input_requires_grad, window, windowed)
    kernel, slots = _remembered_backward_kernel(fused, input.shape, grad_output.size, mode, padding_mode, windowed)
    if slots:
        groups = min(input.shape[0] * chunks, _MAX_GROUPS)
        kernel(grad_output, input, points, grad_input, grad_points, chunks, rows, offsets, buffers,
               np.empty((groups, slots), np.int32), np.empty((groups, slots), grad_output.dtype),
               padding_mode, align_corners, bool(input_requires_grad))
    else:
        kernel(grad_output, input, points, grad_input, grad_points, chunks, rows, offsets, buffers,
               window, padding_mode, align_corners, bool(input_requires_grad))
    if buffers.size:
        volumes = grad_input.reshape(grad_input.shape[:2] + (-1,) + grad_input.shape[-2:])
        _add_private_rows(volumes, rows, offsets, buffers, chunks)


def _through_grid(shape, mode, padding_mode):
    """Whether the fused backward runs as the grid path's on the affine grid,
    then `affine_grid`'s backward: bilinear with 1-4 channels (planes of
    int32 offsets), where the grid path's pointwise backward beats the fused
    tabled one by more than writing and reading the grid cost. Alternating
    processes, 2 threads (1 thread), ms: 32x3x224² 34-49 -> 21-25 (55-60 ->
    35-42), 64x3x64² 6.2-6.8 -> 2.1-2.6 (7.4-8.1 -> 4.5), 16x2x96² 2.7-2.9
    -> 0.9-1.1 (2.9-3.2 -> 1.8-2.0), 2x2x32³ 1.8-2.1 -> 0.9-1.1; one
    channel 256x1x28² 1.4-2.8 -> 0.9-1.5 (2.6-2.8 -> 1.7-1.9), 16x1x128²
    1.6-1.8 -> 1.1 (3.3-3.6 -> 2.2-2.4), 1x1x2048² 41-72 -> 34-55, 4x1x64³
    23-40 -> 13-15 (45-46 -> 17-20); 8x1x28² lost 0.06-0.07 -> 0.08. Nearest
    lost (32x3x224² 7.8-8.4 -> 12-15). From the channels, mode and sizes
    only, never the batch: a batch chunk of `stn_numba.dask` sums theta's
    gradient as the whole batch does. Not the general cases (`_general`),
    whose grid path has no pointwise backward."""
    return (mode == BILINEAR and not _general(len(shape) - 2, mode, padding_mode)
            and shape[1] <= max(_POINTWISE_BACKWARD_PLANES) and narrow(shape[2:]))


def _backward_through_grid(grad_output, input, theta, grad_input, grad_theta, mode, padding_mode, align_corners,
                           input_requires_grad):
    """The fused backward as ``affine_grid`` (the forward's coordinates,
    bitwise), the grid path's backward and ``affine_grid``'s backward: so
    bitwise the unfused ops' gradients."""
    spatial = input.ndim - 2
    grid = np.empty((grad_output.shape[0],) + grad_output.shape[2:] + (spatial,), grad_output.dtype)
    (affine_grid_2d if spatial == 2 else affine_grid_3d)(theta, grid, align_corners)
    grad_grid = np.empty_like(grid)
    _backward(False, grad_output, input, grid, grad_input, grad_grid, mode, padding_mode, align_corners,
              input_requires_grad)
    (affine_grid_2d_backward if spatial == 2 else affine_grid_3d_backward)(grad_grid, grad_theta, align_corners)


def _backward_kernel(fused, shape, out_size, mode, padding_mode, windowed):
    """The backward kernel for an input of ``shape`` and an output of
    ``out_size`` elements, and the tap slots of its per-group tables (the
    pointwise kernel's; 0: the tabled kernel, which allocates its own)."""
    spatial = len(shape) - 2
    # small single-channel work too: the pointwise kernel vectorises (see _SERIAL_POINTWISE;
    # 2x1x28² bilinear forward + backward, 2 threads: 26.3 -> 16.1-23.1 µs)
    on_pool = _parallel(spatial, mode, out_size) or (shape[1] == 1 and out_size >= _SERIAL_POINTWISE)
    if (on_pool and not windowed and not fused and mode != BICUBIC and not _general(spatial, mode, padding_mode)
            and shape[1] in _POINTWISE_BACKWARD_PLANES and narrow(shape[2:])):
        return (pointwise_backward(spatial, mode, padding_mode, shape[1]),
                taps_per_axis(mode) ** spatial * _BLOCK)
    return _kernel(spatial, mode, padding_mode, fused, out_size, 1, windowed), 0


_remembered_backward_kernel = functools.lru_cache(maxsize=256)(_backward_kernel)


def _backward_plan(fused, grad_output, input, points, mode, padding_mode,
                   align_corners, input_requires_grad, window, windowed):
    """The backward's work items, from the shapes only: ``chunks`` per
    image; with more than one, each chunk k > 0 adds into a private buffer
    for the input rows its taps read (``rows``, found by the case's
    ``chunk_rows`` kernel), at ``offsets`` in ``buffers``, summed into
    grad_input in chunk order afterwards (`_add_private_rows`)."""
    n_batch, channels = input.shape[:2]
    no_buffers = _NO_ROWS, _NO_OFFSETS, _NO_BUFFERS[grad_output.dtype]
    out_points = grad_output[0, 0].size
    if input_requires_grad and (n_batch >= PARALLEL_CHUNKS or out_points < 2 * _MIN_CHUNK_POINTS):
        return (1,) + no_buffers  # the common cases: an image per work item
    out_sizes = grad_output.shape[:1:-1] + (1,) * (5 - grad_output.ndim)
    tiles = _tiling(*out_sizes)[4]
    if not input_requires_grad:
        return (tiles,) + no_buffers  # no scatter: any tile is a work item
    volume = input[0, 0].size
    chunks = min(-(-PARALLEL_CHUNKS // n_batch), out_points // _MIN_CHUNK_POINTS, tiles,
                 1 + _PARTIAL_BUDGET // max(1, n_batch * channels * volume))
    if chunks <= 1:
        return (1,) + no_buffers
    rows = np.zeros((n_batch * chunks, 2), np.int64)
    spatial = input.ndim - 2
    chunk_rows = kernels(spatial, mode, _specialised_padding(spatial, mode, padding_mode, True), fused, True,
                         windowed)[2]
    chunk_rows(grad_output, input, points, chunks, window, padding_mode, align_corners, rows)
    rows[::chunks] = (0, -1)  # chunk 0 adds into grad_input itself
    sizes = (rows[:, 1] - rows[:, 0] + 1) * input.shape[-1] * channels
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return chunks, rows, offsets, np.empty(offsets[-1], grad_output.dtype)


_NO_ROWS = np.zeros((0, 2), np.int64)
_NO_OFFSETS = np.zeros(1, np.int64)
_NO_BUFFERS = {np.dtype(t): np.empty(0, t) for t in (np.float32, np.float64)}


def region_window(input_size, input_origin, output_size=None, output_origin=None):
    """The ``window`` of the region kernels: the whole input's spatial size
    and the origin of the part given, then the same for the output (fused
    path; the grid path ignores it), each in array-axis order ((D,) H, W),
    as 12 int64 (x, y, z sizes and origins)."""
    def xyz(values, fill):
        values = tuple(values)[::-1]
        return values + (fill,) * (3 - len(values))

    output_size = input_size if output_size is None else output_size
    output_origin = (0,) * len(input_size) if output_origin is None else output_origin
    return np.array(xyz(input_size, 1) + xyz(input_origin, 0) + xyz(output_size, 1)
                    + xyz(output_origin, 0), np.int64)


def sample_region(input, points, output, window, fused, mode, padding_mode,
                  align_corners):
    """`grid_sample_2d`/`_3d` (``fused`` False) or `affine_grid_sample_2d`/
    `_3d` (True) on parts of a larger input and output (``window``, from
    `region_window`): ``input`` is the part of the whole input at the given
    origin, and must hold every tap the points read; fused, ``output`` is
    the part of the whole output at the output origin."""
    _forward(fused, input, points, output, mode, padding_mode, align_corners,
             window)


def tap_extent(points, output_shape, window, fused, mode, padding_mode,
               align_corners):
    """The input region that sampling at ``points`` reads: for each spatial
    axis in array order ((D,) H, W), the lowest and highest index of any tap
    (with zero weight or not: gradients read both) of the whole input of
    ``window`` (`region_window`); for an output of ``output_shape`` (N, C,
    *So), fused the part of the whole output at the window's output origin.
    A region holding these rows, columns (and slices) gives `sample_region`
    the same results as the whole input."""
    spatial = len(output_shape) - 2
    out_sizes = tuple(output_shape[:1:-1]) + (1,) * (3 - spatial)
    work = output_shape[0] * math.prod(out_sizes)
    parallel = _parallel(spatial, mode, work)
    groups = min(_MAX_GROUPS, max(1, output_shape[0] * _tiling(*out_sizes)[4])) if parallel else 1
    bounds = np.empty((groups, 3, 2), np.int64)
    kernels(spatial, mode, _specialised_padding(spatial, mode, padding_mode, parallel), fused, parallel, True)[3](
        points, output_shape[0], out_sizes, window, padding_mode, align_corners, bounds)
    low, high = bounds[:, :spatial, 0].min(axis=0), bounds[:, :spatial, 1].max(axis=0)
    return np.stack([low, high], axis=1)[::-1]


@njit(inline="always")
def _inside(base, slope, column, size):
    """Whether source coordinate ``base + slope * column`` is in [0, size - 1]."""
    coordinate = base + slope * np.float64(column)
    return coordinate >= 0 and coordinate <= size - 1


@njit(cache=True, nogil=True)
def inside_runs(matrix, offset, origin, out_shape, in_size, first, stop):
    """For each line of the last axis of an output box (``out_shape`` at
    ``origin``, flat line order), the columns ``first[j] <= k < stop[j]``
    whose source pixel ``matrix @ o + offset`` lies in [0, size - 1] on every
    axis (`stn_numba.dask`'s mode "constant"). Along a line a coordinate is
    ``base + slope * o`` (float64, that order): monotone, so the inside points
    form one run, found from the two crossings and checked at its ends with
    that same formula (the division rounds)."""
    dims = len(in_size)
    width = out_shape[dims - 1]
    column_origin = origin[dims - 1]
    for line in range(len(first)):
        low_all, stop_all = np.int64(0), width
        for i in range(dims):
            base = offset[i]
            rest = line
            for j in range(dims - 1):
                after = 1
                for k in range(j + 1, dims - 1):
                    after *= out_shape[k]
                base = base + matrix[i, j] * np.float64(origin[j] + rest // after)
                rest = rest % after
            slope = matrix[i, dims - 1]
            size = in_size[i]
            if slope == 0.0:
                low = np.int64(0)
                if not _inside(base, slope, column_origin, size):
                    low = width
                high = width - 1
            else:
                a = (0.0 - base) / slope - column_origin
                b = (size - 1.0 - base) / slope - column_origin
                low = np.int64(np.ceil(min(max(min(a, b), -2.0), width + 1.0)))
                high = np.int64(np.floor(min(max(max(a, b), -2.0), width + 1.0)))
                if low - 1 >= 0 and _inside(base, slope, column_origin + low - 1, size):
                    low -= 1
                if low < width and not _inside(base, slope, column_origin + low, size):
                    low += 1
                if high + 1 < width and _inside(base, slope, column_origin + high + 1, size):
                    high += 1
                if high >= 0 and not _inside(base, slope, column_origin + high, size):
                    high -= 1
            low_all = max(low_all, low)
            stop_all = min(stop_all, high + 1)
        first[line] = low_all
        stop[line] = stop_all


@njit(cache=True, nogil=True)
def fill_outside_runs(values, first, stop, value):
    """Set ``values[i, j, k]`` (lead i, line j, column k) to ``value`` outside
    ``first[j] <= k < stop[j]``: the columns of each line that are not its one
    run of inside points (`stn_numba.dask`'s mode "constant")."""
    width = values.shape[2]
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            low, high = min(max(first[j], 0), width), min(max(stop[j], 0), width)
            for k in range(low):
                values[i, j, k] = value
            for k in range(max(high, low), width):
                values[i, j, k] = value


def sample_region_backward(grad_output, input, points, grad_input,
                           grad_points, window, fused, mode, padding_mode,
                           align_corners, input_requires_grad):
    """The backward of `sample_region`: ``grad_input`` is the part's
    gradient; fused, ``grad_points`` is theta's gradient from this part of
    the output only."""
    _backward(fused, grad_output, input, points, grad_input, grad_points,
              mode, padding_mode, align_corners, input_requires_grad, window)


def grid_sample_2d(input, grid, output, mode, padding_mode, align_corners):
    """Sample (N, C, H, W) ``input`` at (N, Ho, Wo, 2) ``grid`` into
    (N, C, Ho, Wo) ``output`` (see the module docstring)."""
    _forward(False, input, grid, output, mode, padding_mode, align_corners)


def grid_sample_3d(input, grid, output, mode, padding_mode, align_corners):
    """Sample (N, C, D, H, W) ``input`` at (N, Do, Ho, Wo, 3) ``grid`` into
    (N, C, Do, Ho, Wo) ``output``."""
    _forward(False, input, grid, output, mode, padding_mode, align_corners)


def affine_grid_sample_2d(input, theta, output, mode, padding_mode,
                          align_corners):
    """Sample (N, C, H, W) ``input`` at ``affine_grid(theta, output.shape)``
    into (N, C, Ho, Wo) ``output``, without building the grid; ``theta`` is
    (N, 2, 3)."""
    _forward(True, input, theta, output, mode, padding_mode, align_corners)


def affine_grid_sample_3d(input, theta, output, mode, padding_mode,
                          align_corners):
    """5-D twin of `affine_grid_sample_2d`; ``theta`` is (N, 3, 4)."""
    _forward(True, input, theta, output, mode, padding_mode, align_corners)


def grid_sample_2d_backward(grad_output, input, grid, grad_input, grad_grid,
                            mode, padding_mode, align_corners,
                            input_requires_grad):
    """Overwrite ``grad_grid`` (N, Ho, Wo, 2) and, if
    ``input_requires_grad``, ``grad_input`` (N, C, H, W); otherwise
    ``grad_input`` may be a 0-size dummy and is not touched."""
    _backward(False, grad_output, input, grid, grad_input, grad_grid, mode,
              padding_mode, align_corners, input_requires_grad)


def grid_sample_3d_backward(grad_output, input, grid, grad_input, grad_grid,
                            mode, padding_mode, align_corners,
                            input_requires_grad):
    """5-D twin of `grid_sample_2d_backward`."""
    _backward(False, grad_output, input, grid, grad_input, grad_grid, mode,
              padding_mode, align_corners, input_requires_grad)


def affine_grid_sample_2d_backward(grad_output, input, theta, grad_input,
                                   grad_theta, mode, padding_mode,
                                   align_corners, input_requires_grad):
    """Overwrite ``grad_theta`` (N, 2, 3) and, if ``input_requires_grad``,
    ``grad_input`` (N, C, H, W) (else a 0-size dummy, not touched), for
    `affine_grid_sample_2d` with output gradient ``grad_output``
    (N, C, Ho, Wo)."""
    _backward(True, grad_output, input, theta, grad_input, grad_theta, mode,
              padding_mode, align_corners, input_requires_grad)


def affine_grid_sample_3d_backward(grad_output, input, theta, grad_input,
                                   grad_theta, mode, padding_mode,
                                   align_corners, input_requires_grad):
    """5-D twin of `affine_grid_sample_2d_backward`; ``theta`` (N, 3, 4)."""
    _backward(True, grad_output, input, theta, grad_input, grad_theta, mode,
              padding_mode, align_corners, input_requires_grad)
