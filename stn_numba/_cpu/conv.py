"""Convolution and pooling kernels on the CPU.

Convolution is im2col + GEMM, fused per block of output rows: each task
gathers the receptive fields of a few output rows of one image into a buffer
small enough to stay in cache (:data:`BLOCK_BYTES`) and multiplies it by the
weights with BLAS (:func:`stn_numba._cpu.blas.gemm`), which writes straight
into the output. Gathering the whole batch first, as a separate pass, wrote
and re-read tens of MB and was 2-3x slower on the tutorial's layers. The
kernel rows are split into groups (:class:`_TapRowGroups`) that share one
gathered matrix, shifted by whole output rows, with one GEMM per group: a
7×7 kernel over 32 channels gathers 7x less than a full im2col (its forward
pass went from 8.7 to 4.7 ms on the demo CNN's batch, 2 cores). The tasks run
in parallel over images and row blocks, so BLAS is held to one thread
meanwhile (:func:`stn_numba._threading.single_threaded_blas`).

The backward pass gathers the patches again instead of keeping them. Each
task owns a range of images: it writes their input gradients (adding the
patches' gradients back onto the image, the adjoint of the gather) and sums
their weight gradients into its own buffer; the buffers are added in order
at the end. Zero padding is handled by index ranges, without a padded copy;
convolutions with no padding and unit steps (the CNNs') gather and scatter
with plain row copies instead (:func:`_plain_patches`).

Max pooling is a Numba kernel that records which tap of each window won;
average pooling gathers its windows with NumPy strides.

Outputs, gradients and partial sums come from the tape's reuse pool
(:func:`stn_numba._memory.empty`): a training step needs the same ones every
time.

Every backward kernel gives each output element to one task, which adds in a
fixed order that depends on the shapes only, so the results are bitwise
deterministic for any thread count.
"""

from dataclasses import dataclass

import numpy as np
from numba import njit, prange, types
from numba.extending import overload, register_jitable

from .. import _memory
from .._threading import guard, single_threaded_blas
from .blas import MAX_BLAS_INT, gemm

#: Bytes of gathered patches per task: a block of output rows whose patches fit in a core's L2 cache.
BLOCK_BYTES = 128 * 1024
#: Smallest inner dimension of the convolution GEMMs worth a group of its own (see _TapRowGroups).
MIN_GEMM_DEPTH = 64
#: Weight-gradient partial sums per call (fewer for smaller batches): enough for the cores, and
#: fixed by the shape, so that the sum does not depend on the thread count.
WEIGHT_GRAD_CHUNKS = 16


@dataclass(frozen=True)
class Geometry:
    """Shapes of a 2-D sliding-window operation on an (N, C, H, W) input."""

    n: int
    c: int
    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int

    @classmethod
    def of(cls, input_shape, kernel, stride, padding, dilation):
        return cls(*(int(v) for v in tuple(input_shape) + tuple(kernel) + tuple(stride)
                     + tuple(padding) + tuple(dilation)))

    @property
    def ho(self):
        return (self.h + 2 * self.ph - self.dh * (self.kh - 1) - 1) // self.sh + 1

    @property
    def wo(self):
        return (self.w + 2 * self.pw - self.dw * (self.kw - 1) - 1) // self.sw + 1

    @property
    def taps(self):
        return self.kh * self.kw

    @property
    def input_shape(self):
        return (self.n, self.c, self.h, self.w)


@register_jitable
def _valid_range(out, stride, offset, size):
    """The outputs o in [lo, hi) whose tap o·stride + offset lies in [0, size)."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    hi = (size - 1 - offset) // stride + 1 if size - 1 - offset >= 0 else 0
    return min(lo, out), max(min(hi, out), min(lo, out))


# The copy loops run over views made inside the parallel body (not arrays captured
# from outside it) with unsigned indices, so that Numba emits no negative-index
# wrap-around and LLVM vectorises them; stride 1 has a loop of its own for the
# same reason. Measured on the tutorial's shapes: 2-8x faster than flat signed
# index arithmetic.


@register_jitable(inline="always")
def _gather_row(source, start, step, lo, hi, target, begin, count):
    """target[begin + o] = source[start + o·step] for o in [lo, hi), 0 for the other o < count."""
    zero = target.dtype.type(0)
    for o in range(lo):
        target[begin + o] = zero
    if step == 1:
        s, d = np.uint64(start + lo), np.uint64(begin + lo)
        for o in range(np.uint64(hi - lo)):
            target[d + o] = source[s + o]
    else:
        for o in range(lo, hi):
            target[begin + o] = source[start + o * step]
    for o in range(hi, count):
        target[begin + o] = zero


@register_jitable(inline="always")
def _scatter_row(source, begin, lo, hi, target, start, step):
    """target[start + o·step] += source[begin + o] for o in [lo, hi)."""
    if step == 1:
        s, d = np.uint64(begin + lo), np.uint64(start + lo)
        for o in range(np.uint64(hi - lo)):
            target[d + o] += source[s + o]
    else:
        for o in range(lo, hi):
            target[start + o * step] += source[begin + o]


@register_jitable(inline="always")
def _gather_patches(image, patches, row0, g, kw, sh, sw, ph, pw, dh, dw, wo):
    """im2col of one group of g kernel rows, for the output rows from ``row0`` that ``patches`` has room for.

    ``patches[(c·g + b)·kw + j, r·wo + x]`` is the input under tap (b, j) of
    channel c for output (row0 + r, x), or 0 where that tap lies in the padding.
    """
    channels, height, width = image.shape
    rows = patches.shape[1] // wo
    for c in range(channels):
        source = image[c].ravel()
        for b in range(g):
            for j in range(kw):
                target = patches[(c * g + b) * kw + j]
                x_offset = j * dw - pw
                lo, hi = _valid_range(wo, sw, x_offset, width)
                for r in range(rows):
                    y = (row0 + r) * sh - ph + b * dh
                    lo_row, hi_row = (lo, hi) if 0 <= y < height else (wo, wo)   # a padding row
                    start = y * width + x_offset
                    _gather_row(source, start, sw, lo_row, hi_row, target, r * wo, wo)


def _plain_patches(image, patches, row0, g, kw, wo, adding):
    """:func:`_gather_patches` (``adding`` False) or :func:`_scatter_patches` (True) without
    padding and with unit strides and dilations (the CNNs' convolutions): each row of a patch row
    is part of an input row, copied or added whole. ``adding`` must be a literal."""


@overload(_plain_patches, prefer_literal=True, inline="always")
def _plain_patches_case(image, patches, row0, g, kw, wo, adding):
    if not isinstance(adding, types.BooleanLiteral):
        return None
    add = adding.literal_value  # a constant: Numba prunes the other branch

    def plain_patches(image, patches, row0, g, kw, wo, adding):
        for c in range(image.shape[0]):
            plane = image[c]
            for b in range(g):
                for j in range(kw):
                    patch_row = patches[(c * g + b) * kw + j]
                    for r in range(patches.shape[1] // wo):
                        image_part = plane[row0 + r + b, j:j + wo]
                        patch_part = patch_row[r * wo:(r + 1) * wo]
                        for o in range(wo):
                            if add:
                                image_part[o] += patch_part[o]
                            else:
                                patch_part[o] = image_part[o]

    return plain_patches


def _move_patches(image, patches, row0, g, kw, wo, steps, adding):
    """:func:`_gather_patches` (``adding`` False) or :func:`_scatter_patches` (True, a literal);
    ``steps`` is (sh, sw, ph, pw, dh, dw), or None for no padding and unit steps, which takes
    :func:`_plain_patches` (1.3-1.5x faster on the CNNs' layers). Types, not flags: a kernel
    compiles one body, not all."""


@overload(_move_patches, prefer_literal=True, inline="always")
def _move_patches_case(image, patches, row0, g, kw, wo, steps, adding):
    if not isinstance(adding, types.BooleanLiteral):
        return None
    if isinstance(steps, types.NoneType):
        return lambda image, patches, row0, g, kw, wo, steps, adding: _plain_patches(
            image, patches, row0, g, kw, wo, adding)
    if adding.literal_value:
        def scatter(image, patches, row0, g, kw, wo, steps, adding):
            sh, sw, ph, pw, dh, dw = steps
            _scatter_patches(patches, image, row0, g, kw, sh, sw, ph, pw, dh, dw, wo)
        return scatter

    def gather(image, patches, row0, g, kw, wo, steps, adding):
        sh, sw, ph, pw, dh, dw = steps
        _gather_patches(image, patches, row0, g, kw, sh, sw, ph, pw, dh, dw, wo)
    return gather


@register_jitable(inline="always")
def _scatter_patches(patches, image, row0, g, kw, sh, sw, ph, pw, dh, dw, wo):
    """Adjoint of :func:`_gather_patches`: add every entry onto the input pixel it was read from.

    Kept apart from the gather rather than behind a flag: a flag would compile
    both bodies into every kernel that inlines either (measured: 2.8 s more
    cold compilation of the two convolution kernels, 17.6 s instead of 14.8).
    """
    channels, height, width = image.shape
    rows = patches.shape[1] // wo
    for c in range(channels):
        target = image[c].ravel()
        for b in range(g):
            for j in range(kw):
                source = patches[(c * g + b) * kw + j]
                x_offset = j * dw - pw
                lo, hi = _valid_range(wo, sw, x_offset, width)
                for r in range(rows):
                    y = (row0 + r) * sh - ph + b * dh
                    if 0 <= y < height:
                        start = y * width + x_offset
                        _scatter_row(source, r * wo, lo, hi, target, start, sw)


@njit(parallel=True, cache=True, nogil=True)
def _conv_forward_kernel(x, weight_g, bias, out, block_rows, group_offsets, g, kw, ho, wo, steps):
    n_images = x.shape[0]
    span = group_offsets[-1]
    n_blocks = (ho + block_rows - 1) // block_rows
    for task in prange(n_images * n_blocks):
        n = task // n_blocks
        row0 = (task - n * n_blocks) * block_rows
        rows = min(block_rows, ho - row0)
        patches = np.empty((weight_g.shape[2], (rows + span) * wo), x.dtype)
        _move_patches(x[n], patches, row0, g, kw, wo, steps, False)
        block = out[n, :, row0 * wo:(row0 + rows) * wo]
        for o in range(block.shape[0]):
            block[o] = bias[o]
        for a in range(len(group_offsets)):
            q = group_offsets[a] * wo
            gemm(weight_g[a], patches[:, q:q + rows * wo], block, True)


@njit(parallel=True, cache=True, nogil=True)
def _conv_backward_kernel(x, weight_g, grad, dx, partial_dw, need_dx, need_dw, block_rows, group_offsets,
                          g, kw, ho, wo, steps):
    n_images = grad.shape[0]
    n_chunks = partial_dw.shape[0]
    taps = weight_g.shape[2]
    span = group_offsets[-1]
    for chunk in prange(n_chunks):
        partial_dw[chunk] = 0
        for n in range(chunk * n_images // n_chunks, (chunk + 1) * n_images // n_chunks):
            if need_dx:
                dx[n] = 0
            for row0 in range(0, ho, block_rows):
                rows = min(block_rows, ho - row0)
                grad_block = grad[n, :, row0 * wo:(row0 + rows) * wo]
                if need_dw:
                    patches = np.empty((taps, (rows + span) * wo), x.dtype)
                    _move_patches(x[n], patches, row0, g, kw, wo, steps, False)
                    for a in range(len(group_offsets)):
                        q = group_offsets[a] * wo
                        gemm(patches[:, q:q + rows * wo], grad_block.T, partial_dw[chunk, a], True)
                if need_dx:
                    d_patches = np.zeros((taps, (rows + span) * wo), grad.dtype)
                    for a in range(len(group_offsets)):
                        q = group_offsets[a] * wo
                        gemm(weight_g[a].T, grad_block, d_patches[:, q:q + rows * wo], True)
                    _move_patches(dx[n], d_patches, row0, g, kw, wo, steps, True)


@register_jitable(forceinline=True)
def _take(value, best, tap, best_tap):
    """A window's running (maximum, tap) after one more tap: a larger value or a NaN takes over, as in torch."""
    take = (value > best) | (value != value)
    return (value if take else best), (tap if take else best_tap)


@njit(parallel=True, cache=True, nogil=True)
def _max_pool_kernel(x, out, taps, row_taps, col_taps, sh, sw, ph, pw, dh, dw, kw):
    n_images, channels, height, width = x.shape
    ho, wo = out.shape[2], out.shape[3]
    lowest = x.dtype.type(-np.inf)
    for task in prange(n_images * channels):
        n = task // channels
        c = task - n * channels
        plane = x[n, c].ravel()
        for oh in range(ho):
            best = out[n, c, oh]
            best_tap = taps[n, c, oh]
            # As torch: start at -inf on the window's first tap (then `_take`).
            best[:] = lowest
            for ow in range(wo):
                best_tap[ow] = row_taps[oh, 0] * kw + col_taps[ow, 0]
            # Taps outermost, so that the loop over a row of windows vectorises; each window
            # still sees its taps in row-major order. (int32 tap numbers: 2.5x faster than int64 indices.)
            for i in range(row_taps[oh, 0], row_taps[oh, 1]):
                y = oh * sh - ph + i * dh
                for j in range(kw):
                    tap = np.int32(i * kw + j)
                    x_offset = j * dw - pw
                    lo, hi = _valid_range(wo, sw, x_offset, width)
                    start = y * width + x_offset + lo * sw
                    source = plane[start:start + (hi - lo - 1) * sw + 1:sw]
                    window_best = best[lo:hi]
                    window_tap = best_tap[lo:hi]
                    for k in range(hi - lo):
                        window_best[k], window_tap[k] = _take(source[k], window_best[k], tap, window_tap[k])


@njit(parallel=True, cache=True, nogil=True)
def _max_pool_2x2_kernel(x, out, taps):
    """`_max_pool_kernel` for 2×2 windows with stride 2 inside the input (the CNNs' pools): the four
    taps unrolled and the stride a constant, so the loop over a row of windows vectorises (7x faster
    than with the stride an argument on the demo CNN's first pool, 2 cores)."""
    n_images, channels, height, width = x.shape
    ho, wo = out.shape[2], out.shape[3]
    lowest = x.dtype.type(-np.inf)
    x, out, taps = x.reshape(-1), out.reshape(-1), taps.reshape(-1)
    for plane in prange(n_images * channels):
        for oh in range(ho):
            at = (plane * ho + oh) * wo
            top = (plane * height + 2 * oh) * width
            for ow in range(wo):
                left = top + 2 * ow
                best, tap = _take(x[np.uint64(left)], lowest, np.int32(0), np.int32(0))  # unsigned: no wrap-around
                best, tap = _take(x[np.uint64(left + 1)], best, np.int32(1), tap)
                best, tap = _take(x[np.uint64(left + width)], best, np.int32(2), tap)
                best, tap = _take(x[np.uint64(left + width + 1)], best, np.int32(3), tap)
                out[np.uint64(at + ow)] = best
                taps[np.uint64(at + ow)] = tap


@njit(parallel=True, cache=True, nogil=True)
def _max_pool_2x2_backward_kernel(grad, taps, dx):
    """`_max_pool_backward_kernel` for the windows of `_max_pool_2x2_kernel`, which tile the input:
    each pixel is written once (its window's gradient or 0), with no scatter, in a loop over the
    columns of an input row, whose stores are contiguous, so it vectorises."""
    n_images, channels, height, width = dx.shape
    ho, wo = grad.shape[2], grad.shape[3]
    zero = dx.dtype.type(0)
    grad, taps, dx = grad.reshape(-1), taps.reshape(-1), dx.reshape(-1)
    for plane in prange(n_images * channels):
        start = plane * height * width
        for i in range(start + 2 * ho * width, start + height * width):  # rows no window reaches
            dx[np.uint64(i)] = zero
        for oh in range(ho):
            at = (plane * ho + oh) * wo
            top = start + 2 * oh * width
            for column in range(2 * wo):
                window = at + (column >> 1)  # unsigned indices: no wrap-around
                value = grad[np.uint64(window)]
                tap = taps[np.uint64(window)]
                side = np.int32(column & 1)
                dx[np.uint64(top + column)] = value if tap == side else zero
                dx[np.uint64(top + width + column)] = value if tap == side + 2 else zero
            for column in range(2 * wo, width):  # a column no window reaches
                dx[np.uint64(top + column)] = zero
                dx[np.uint64(top + width + column)] = zero


@njit(parallel=True, cache=True, nogil=True)
def _max_pool_backward_kernel(grad, taps, dx, tap_offsets, sh, sw, ph, pw):
    n_images, channels, height, width = dx.shape
    ho, wo = grad.shape[2], grad.shape[3]
    for task in prange(n_images * channels):
        n = task // channels
        c = task - n * channels
        plane = dx[n, c].ravel()
        plane[:] = 0
        for oh in range(ho):
            for ow in range(wo):
                corner = (oh * sh - ph) * width + ow * sw - pw
                plane[corner + tap_offsets[taps[n, c, oh, ow]]] += grad[n, c, oh, ow]


@dataclass(frozen=True)
class _TapRowGroups:
    """How a convolution's kernel rows are split into groups, one GEMM per group.

    Group a holds kernel rows [a·g, (a + 1)·g). Its patch matrix is the one of
    group 0 shifted down by ``offsets[a]`` output rows (a·g·dh rows, with
    stride 1), so one gathered matrix serves every group and holds each input
    value about kw·g times, not kw·kh as a full im2col does. Small g means
    thin GEMMs, so g is the smallest divisor of kh that gives each GEMM an
    inner dimension C·g·kw of at least :data:`MIN_GEMM_DEPTH`. With a row
    stride the groups' shifts would not be whole rows, so there g = kh.
    """

    g: int
    offsets: np.ndarray

    @classmethod
    def of(cls, geometry):
        kh = geometry.kh
        g = kh
        if geometry.sh == 1:
            g = next(d for d in range(1, kh + 1) if kh % d == 0 and geometry.c * d * geometry.kw >= MIN_GEMM_DEPTH
                     or d == kh)
        return cls(g, np.arange(kh // g, dtype=np.int64) * g * geometry.dh)

    def block_rows(self, geometry, itemsize):
        """Output rows per task: the patches stay within :data:`BLOCK_BYTES` (at least one row), in equal blocks."""
        row_bytes = geometry.wo * geometry.c * self.g * geometry.kw * itemsize
        most = int(max(1, min(geometry.ho, BLOCK_BYTES // max(1, row_bytes) - self.offsets[-1])))
        blocks = -(-geometry.ho // most)
        return -(-geometry.ho // blocks)

    def weights(self, weight):
        """``weight`` (O, C, kh, kw) as one (O, C·g·kw) matrix per group, C-contiguous: (kh/g, O, C·g·kw)."""
        out_channels, channels, kh, kw = weight.shape
        grouped = weight.reshape(out_channels, channels, kh // self.g, self.g, kw).transpose(2, 0, 1, 3, 4)
        return np.ascontiguousarray(grouped.reshape(kh // self.g, out_channels, -1))

    def kernel_args(self, geometry):
        g = geometry
        steps = (g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
        return (self.offsets, self.g, g.kw, g.ho, g.wo, None if steps == (1, 1, 0, 0, 1, 1) else steps)


def _check_blas_sizes(geometry, out_channels):
    g = geometry
    largest = max(g.ho * g.wo, g.c * g.taps, out_channels)
    if largest > MAX_BLAS_INT:
        raise ValueError(f"conv2d: BLAS takes sizes up to 2**31 - 1, and this convolution needs {largest} "
                         f"(output planes of {g.ho}×{g.wo}, {g.c}×{g.kh}×{g.kw} taps, {out_channels} output channels)")


def conv2d_forward(x, weight, bias, geometry, block_rows=None):
    """Cross-correlation of ``x`` (N, C, H, W) with ``weight`` (O, C, kh, kw), plus ``bias`` (O,) or None.

    Returns the output as (N, O, Ho·Wo). ``block_rows`` (output rows per
    task) defaults to what keeps the patches within :data:`BLOCK_BYTES`.
    """
    g = geometry
    _check_blas_sizes(g, weight.shape[0])
    groups = _TapRowGroups.of(g)
    out = _memory.empty((g.n, weight.shape[0], g.ho * g.wo), x.dtype)
    if bias is None:
        bias = np.zeros(weight.shape[0], x.dtype)
    if out.size:
        with single_threaded_blas():
            guard(_conv_forward_kernel)(np.ascontiguousarray(x), groups.weights(weight), np.ascontiguousarray(bias),
                                        out, block_rows or groups.block_rows(g, x.dtype.itemsize),
                                        *groups.kernel_args(g))
    return out


def conv2d_backward(grad, x, weight, geometry, need_dx=True, need_dw=True, block_rows=None):
    """Gradients of :func:`conv2d_forward` for ``grad`` (N, O, Ho·Wo): (dx or None, dweight or None).

    ``x`` is read only for the weight gradient, and may be None without it.

    The weight gradient is summed per chunk of :data:`WEIGHT_GRAD_CHUNKS` image
    ranges, then over the chunks in order: the split depends on N only, so the
    result is the same for any thread count.
    """
    g = geometry
    _check_blas_sizes(g, weight.shape[0])
    groups = _TapRowGroups.of(g)
    weight_g = groups.weights(weight)
    n_groups, out_channels, taps = weight_g.shape
    dx = _memory.empty(g.input_shape if need_dx else (0, 0, 0, 0), grad.dtype)
    # Without a weight gradient every image is a task of its own.
    chunks = min(g.n, WEIGHT_GRAD_CHUNKS) if need_dw else g.n
    partial_dw = _memory.empty((chunks, n_groups, taps, out_channels) if need_dw else (chunks, 0, 0, 0),
                               grad.dtype)
    if g.n:
        x = np.ascontiguousarray(x) if need_dw else np.empty((0, 0, 0, 0), grad.dtype)
        with single_threaded_blas():
            guard(_conv_backward_kernel)(x, weight_g, np.ascontiguousarray(grad), dx, partial_dw, need_dx, need_dw,
                                         block_rows or groups.block_rows(g, grad.dtype.itemsize),
                                         *groups.kernel_args(g))
    dw = None
    if need_dw:
        # (groups, C·g·kw, O) → (O, C, kh, kw)
        summed = partial_dw.sum(axis=0).reshape(n_groups, g.c, groups.g, g.kw, out_channels)
        dw = np.ascontiguousarray(summed.transpose(4, 1, 0, 2, 3)).reshape(weight.shape)
    return (dx if need_dx else None), dw


def _tap_ranges(out, stride, pad, dilation, kernel, size):
    """For each output index, the [first, last + 1) kernel taps that fall inside the input."""
    start = np.arange(out) * stride - pad
    first = np.maximum(0, -(start // dilation))
    first = np.where(start + first * dilation < 0, first + 1, first)
    last = np.minimum(kernel, (size - 1 - start) // dilation + 1)
    return np.stack([first, np.maximum(first, last)], axis=1).astype(np.int64)


def _pool_args(g):
    return (g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.kw)


def _tiling_2x2(g):
    """Whether the windows are 2×2 with stride 2, inside the input (no padding, no dilation): the
    CNNs' pools, which have kernels of their own."""
    return g.kh == g.kw == 2 and g.sh == g.sw == 2 and not (g.ph or g.pw) and g.dh == g.dw == 1


def max_pool(x, geometry):
    """Max pooling of (N, C, H, W): the output, and per output the window tap i·kw + j it took (int32).

    As in torch, each window keeps its first maximum, and a NaN wins over any
    number (the window's last NaN).
    """
    g = geometry
    if g.taps > np.iinfo(np.int32).max:
        raise ValueError(f"max_pool2d: kernel of {g.kh}×{g.kw} taps is too large (at most 2**31 - 1 taps)")
    out = _memory.empty((g.n, g.c, g.ho, g.wo), x.dtype)
    taps = _memory.empty(out.shape, np.int32)
    if out.size and _tiling_2x2(g):
        guard(_max_pool_2x2_kernel)(np.ascontiguousarray(x), out, taps)
    elif out.size:
        guard(_max_pool_kernel)(np.ascontiguousarray(x), out, taps, _tap_ranges(g.ho, g.sh, g.ph, g.dh, g.kh, g.h),
                                _tap_ranges(g.wo, g.sw, g.pw, g.dw, g.kw, g.w), *_pool_args(g))
    return out, taps


def max_pool_backward(grad, taps, geometry):
    """Route each output's gradient to the input under the tap :func:`max_pool` took (one task per plane)."""
    dx = _memory.empty(geometry.input_shape, grad.dtype)
    g = geometry
    if dx.size and _tiling_2x2(g):
        guard(_max_pool_2x2_backward_kernel)(np.ascontiguousarray(grad), taps, dx)
    elif dx.size:
        # Tap i·kw + j of a window lies i·dh rows and j·dw columns from the window's corner.
        tap_offsets = (np.arange(g.kh)[:, None] * g.dh * g.w + np.arange(g.kw)[None, :] * g.dw).ravel()
        guard(_max_pool_backward_kernel)(np.ascontiguousarray(grad), taps, dx, tap_offsets, g.sh, g.sw, g.ph, g.pw)
    return dx


def _window_view(padded, g):
    """Read-only strided view (N, C, Ho, Wo, kh, kw) of a padded input."""
    if padded.shape != (g.n, g.c, g.h + 2 * g.ph, g.w + 2 * g.pw):
        raise ValueError(f"input of shape {padded.shape} does not match the window geometry {g}")
    sn, sc, sy, sx = padded.strides
    return np.lib.stride_tricks.as_strided(
        padded, shape=(g.n, g.c, g.ho, g.wo, g.kh, g.kw),
        strides=(sn, sc, sy * g.sh, sx * g.sw, sy * g.dh, sx * g.dw), writeable=False)


def windows(x, geometry):
    """Pooling windows of ``x`` as a contiguous (N, C, Ho, Wo, kh·kw) array; padding reads 0."""
    g = geometry
    if g.ph or g.pw:
        x = np.pad(x, ((0, 0), (0, 0), (g.ph, g.ph), (g.pw, g.pw)))
    view = _window_view(x, g)
    return view.reshape(view.shape[:4] + (g.taps,))


def in_bounds_taps(geometry, dtype):
    """How many taps of each output's window lie inside the unpadded input, shape (Ho, Wo)."""
    g = geometry

    def per_axis(size, out, kernel, stride, pad, dilation):
        start = np.arange(out)[:, None] * stride - pad + np.arange(kernel)[None, :] * dilation
        return ((start >= 0) & (start < size)).sum(axis=1)

    rows = per_axis(g.h, g.ho, g.kh, g.sh, g.ph, g.dh)
    cols = per_axis(g.w, g.wo, g.kw, g.sw, g.pw, g.dw)
    return np.multiply.outer(rows, cols).astype(dtype)


def windows_backward(taps, geometry):
    """Adjoint of :func:`windows`: add each tap's gradient (N, C, Ho, Wo, kh·kw) onto (N, C, H, W)."""
    g = geometry
    padded = np.zeros((g.n, g.c, g.h + 2 * g.ph, g.w + 2 * g.pw), taps.dtype)
    taps = taps.reshape(taps.shape[:4] + (g.kh, g.kw))
    for i in range(g.kh):
        for j in range(g.kw):
            y0, x0 = i * g.dh, j * g.dw
            padded[:, :, y0:y0 + g.sh * (g.ho - 1) + 1:g.sh, x0:x0 + g.sw * (g.wo - 1) + 1:g.sw] += taps[..., i, j]
    return padded[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w]
