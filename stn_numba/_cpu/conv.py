"""Convolution and pooling kernels on the CPU.

Convolution is im2col + GEMM, fused per block of output rows: each task
gathers the receptive fields of a few output rows of one image into a buffer
small enough to stay in cache (:data:`BLOCK_BYTES`) and multiplies it by the
weights with BLAS (Numba's ``np.dot``). Gathering the whole batch first, as a
separate pass, wrote and re-read tens of MB and was 2-3x slower on the
tutorial's layers. The tasks run in parallel over images and row blocks, so
BLAS is held to one thread meanwhile (:func:`single_threaded_blas`).

The backward pass recomputes the columns instead of keeping them. Each task
owns a range of images: it writes their input gradients (adding the columns'
gradients back onto the image, the adjoint of the gather) and sums their
weight gradients into its own buffer; the buffers are added in order at the
end. Zero padding is handled by index ranges, without a padded copy.

Max pooling is a Numba kernel that records the flat index of each window's
maximum; average pooling gathers its windows with NumPy strides.

Every backward kernel gives each output element to one task, which adds in a
fixed order that depends on the shapes only, so the results are bitwise
deterministic for any thread count.
"""

from dataclasses import dataclass

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from .._threading import guard, single_threaded_blas

#: Bytes of gathered columns per GEMM: a block of output rows whose columns fit in a core's L2 cache.
BLOCK_BYTES = 128 * 1024
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
# wrap-around and LLVM vectorises them; stride 1 is passed as a literal for the
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
def _im2col_rows(image, cols, row0, rows, kh, kw, sh, sw, ph, pw, dh, dw, wo):
    """Receptive fields of output rows [row0, row0 + rows) of one (C, H, W) image as columns of ``cols``.

    ``cols[(c·kh + i)·kw + j, r·wo + ow]`` is the input under tap (i, j) of
    channel c for output (row0 + r, ow), or 0 where that tap lies in the padding.
    """
    channels, height, width = image.shape
    for c in range(channels):
        source = image[c].ravel()
        for i in range(kh):
            for j in range(kw):
                target = cols[(c * kh + i) * kw + j]
                x_offset = j * dw - pw
                lo, hi = _valid_range(wo, sw, x_offset, width)
                for r in range(rows):
                    y = (row0 + r) * sh - ph + i * dh
                    lo_row, hi_row = (lo, hi) if 0 <= y < height else (wo, wo)   # a padding row
                    start = y * width + x_offset
                    if sw == 1:
                        _gather_row(source, start, 1, lo_row, hi_row, target, r * wo, wo)
                    else:
                        _gather_row(source, start, sw, lo_row, hi_row, target, r * wo, wo)


@register_jitable(inline="always")
def _col2im_rows(cols, image, row0, rows, kh, kw, sh, sw, ph, pw, dh, dw, wo):
    """Adjoint of :func:`_im2col_rows`: add every column entry onto the input pixel it was read from."""
    channels, height, width = image.shape
    for c in range(channels):
        target = image[c].ravel()
        for i in range(kh):
            for j in range(kw):
                source = cols[(c * kh + i) * kw + j]
                x_offset = j * dw - pw
                lo, hi = _valid_range(wo, sw, x_offset, width)
                for r in range(rows):
                    y = (row0 + r) * sh - ph + i * dh
                    if 0 <= y < height:
                        start = y * width + x_offset
                        if sw == 1:
                            _scatter_row(source, r * wo, lo, hi, target, start, 1)
                        else:
                            _scatter_row(source, r * wo, lo, hi, target, start, sw)


@njit(parallel=True, cache=True)
def _conv_forward_kernel(x, weight2d, bias, out, block_rows, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    n_images = x.shape[0]
    taps = weight2d.shape[1]
    n_blocks = (ho + block_rows - 1) // block_rows
    for task in prange(n_images * n_blocks):
        n = task // n_blocks
        row0 = (task - n * n_blocks) * block_rows
        rows = min(block_rows, ho - row0)
        cols = np.empty((taps, rows * wo), x.dtype)
        _im2col_rows(x[n], cols, row0, rows, kh, kw, sh, sw, ph, pw, dh, dw, wo)
        block = np.dot(weight2d, cols)
        for o in range(out.shape[1]):
            out[n, o, row0 * wo:(row0 + rows) * wo] = block[o] + bias[o]


@njit(parallel=True, cache=True)
def _conv_backward_kernel(x, weight2d_t, grad, dx, partial_dw, need_dx, need_dw, block_rows,
                          kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    n_images = grad.shape[0]
    taps = weight2d_t.shape[0]
    n_chunks = partial_dw.shape[0]
    for chunk in prange(n_chunks):
        partial_dw[chunk] = 0
        for n in range(chunk * n_images // n_chunks, (chunk + 1) * n_images // n_chunks):
            if need_dx:
                dx[n] = 0
            for row0 in range(0, ho, block_rows):
                rows = min(block_rows, ho - row0)
                grad_block = np.ascontiguousarray(grad[n, :, row0 * wo:(row0 + rows) * wo])
                if need_dw:
                    cols = np.empty((taps, rows * wo), x.dtype)
                    _im2col_rows(x[n], cols, row0, rows, kh, kw, sh, sw, ph, pw, dh, dw, wo)
                    partial_dw[chunk] += np.dot(grad_block, cols.T)
                if need_dx:
                    _col2im_rows(np.dot(weight2d_t, grad_block), dx[n], row0, rows,
                                 kh, kw, sh, sw, ph, pw, dh, dw, wo)


@njit(parallel=True, cache=True)
def _max_pool_kernel(x, out, argmax, row_taps, col_taps, kh, kw, sh, sw, ph, pw, dh, dw):
    n_images, channels, height, width = x.shape
    ho, wo = out.shape[2], out.shape[3]
    lowest = x.dtype.type(-np.inf)
    for task in prange(n_images * channels):
        n = task // channels
        c = task - n * channels
        plane = x[n, c]
        out_plane = out[n, c]
        argmax_plane = argmax[n, c]
        for oh in range(ho):
            y0 = oh * sh - ph
            for ow in range(wo):
                x0 = ow * sw - pw
                # As torch: start at -inf on the first tap; a larger value or a NaN takes over.
                best = lowest
                best_index = (y0 + row_taps[oh, 0] * dh) * width + x0 + col_taps[ow, 0] * dw
                for i in range(row_taps[oh, 0], row_taps[oh, 1]):
                    y = y0 + i * dh
                    row = plane[y]
                    for j in range(col_taps[ow, 0], col_taps[ow, 1]):
                        value = row[x0 + j * dw]
                        if value > best or value != value:
                            best = value
                            best_index = y * width + x0 + j * dw
                out_plane[oh, ow] = best
                argmax_plane[oh, ow] = best_index


@njit(parallel=True, cache=True)
def _max_pool_backward_kernel(grad, argmax, dx):
    n_images, channels = dx.shape[0], dx.shape[1]
    ho, wo = grad.shape[2], grad.shape[3]
    for task in prange(n_images * channels):
        n = task // channels
        c = task - n * channels
        plane = dx[n, c].ravel()
        plane[:] = 0
        for oh in range(ho):
            for ow in range(wo):
                plane[argmax[n, c, oh, ow]] += grad[n, c, oh, ow]


def _geometry_args(g):
    return (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.ho, g.wo)


def _block_rows(geometry, itemsize):
    """Output rows per block: the block's columns stay within :data:`BLOCK_BYTES`, and at least one row."""
    g = geometry
    return max(1, min(g.ho, BLOCK_BYTES // max(1, g.c * g.taps * g.wo * itemsize)))


def conv2d_forward(x, weight, bias, geometry, block_rows=None):
    """Cross-correlation of ``x`` (N, C, H, W) with ``weight`` (O, C, kh, kw), plus ``bias`` (O,) or None.

    Returns the output as (N, O, Ho·Wo). ``block_rows`` (output rows gathered per
    GEMM) defaults to what fits :data:`BLOCK_BYTES`.
    """
    g = geometry
    out = np.empty((g.n, weight.shape[0], g.ho * g.wo), x.dtype)
    if bias is None:
        bias = np.zeros(weight.shape[0], x.dtype)
    if out.size:
        block_rows = block_rows or _block_rows(g, x.dtype.itemsize)
        with single_threaded_blas():
            guard(_conv_forward_kernel)(np.ascontiguousarray(x), np.ascontiguousarray(weight.reshape(len(weight), -1)),
                                 np.ascontiguousarray(bias), out, block_rows, *_geometry_args(g))
    return out


def conv2d_backward(grad, x, weight, geometry, need_dx=True, need_dw=True, block_rows=None):
    """Gradients of :func:`conv2d_forward` for ``grad`` (N, O, Ho·Wo): (dx or None, dweight or None).

    ``x`` is read only for the weight gradient, and may be None without it.

    The weight gradient is summed per chunk of :data:`WEIGHT_GRAD_CHUNKS` image
    ranges, then over the chunks in order: the split depends on N only, so the
    result is the same for any thread count.
    """
    g = geometry
    out_channels = weight.shape[0]
    dx = np.empty(g.input_shape if need_dx else (0, 0, 0, 0), grad.dtype)
    # Without a weight gradient every image is a task of its own.
    chunks = min(g.n, WEIGHT_GRAD_CHUNKS) if need_dw else g.n
    partial_dw = np.empty((chunks, out_channels, g.c * g.taps) if need_dw else (chunks, 0, 0), grad.dtype)
    if g.n:
        block_rows = block_rows or _block_rows(g, grad.dtype.itemsize)
        weight2d_t = np.ascontiguousarray(weight.reshape(out_channels, -1).T)
        with single_threaded_blas():
            x = np.ascontiguousarray(x) if need_dw else np.empty((0, 0, 0, 0), grad.dtype)
            guard(_conv_backward_kernel)(x, weight2d_t, np.ascontiguousarray(grad), dx, partial_dw,
                                  need_dx, need_dw, block_rows, *_geometry_args(g))
    dw = partial_dw.sum(axis=0).reshape(weight.shape) if need_dw else None
    return (dx if need_dx else None), dw


def _tap_ranges(out, stride, pad, dilation, kernel, size):
    """For each output index, the [first, last + 1) kernel taps that fall inside the input."""
    start = np.arange(out) * stride - pad
    first = np.maximum(0, -(start // dilation))
    first = np.where(start + first * dilation < 0, first + 1, first)
    last = np.minimum(kernel, (size - 1 - start) // dilation + 1)
    return np.stack([first, np.maximum(first, last)], axis=1).astype(np.int64)


def max_pool(x, geometry):
    """Max pooling of (N, C, H, W): the output and, per output, the flat in-plane index of its maximum."""
    g = geometry
    out = np.empty((g.n, g.c, g.ho, g.wo), x.dtype)
    argmax = np.empty(out.shape, np.int64)
    if out.size:
        guard(_max_pool_kernel)(np.ascontiguousarray(x), out, argmax, _tap_ranges(g.ho, g.sh, g.ph, g.dh, g.kh, g.h),
                         _tap_ranges(g.wo, g.sw, g.pw, g.dw, g.kw, g.w), g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
    return out, argmax


def max_pool_backward(grad, argmax, geometry):
    """Route each output's gradient to its maximum (deterministic: one task per plane)."""
    dx = np.zeros(geometry.input_shape, grad.dtype)
    if grad.size:
        guard(_max_pool_backward_kernel)(np.ascontiguousarray(grad), argmax, dx)
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
