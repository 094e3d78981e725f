"""Window gathering for convolution and pooling on the CPU.

Convolution is computed as im2col + BLAS: :func:`im2col` copies every
receptive field of image n into a column of ``cols[n]`` (C·kh·kw, Ho·Wo), so the
forward pass is ``weight2d @ cols[n]``, already in (N, O, Ho·Wo) layout, and the
weight gradient is ``Σ_n grad[n] @ cols[n].T``: one GEMM per image, each small
enough to stay in cache (OpenBLAS was 3-4x slower on one product with a very
long inner dimension). :func:`col2im` scatters the gradient of the columns
back onto the image. Both are Numba kernels whose inner loops
copy or add runs along an image row (contiguous for stride 1); zero padding is
handled by index ranges, without a padded copy.

Max pooling is a Numba kernel that records the flat index of each window's
maximum; average pooling gathers its windows with NumPy strides.

Every backward kernel gives each (n, c) plane to one task, which adds in a
fixed order, so the results are bitwise deterministic for any thread count.
"""

from dataclasses import dataclass

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable


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


@njit(parallel=True, cache=True)
def _im2col_kernel(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    n_images, channels, height, width = x.shape
    taps = channels * kh * kw
    for task in prange(n_images * taps):
        n = task // taps
        k = task - n * taps
        c = k // (kh * kw)
        i = (k // kw) % kh
        j = k % kw
        source = x[n, c].ravel()
        target = cols[n, k]
        x_offset = j * dw - pw
        lo, hi = _valid_range(wo, sw, x_offset, width)
        for oh in range(ho):
            y = oh * sh - ph + i * dh
            if not 0 <= y < height:
                lo_row, hi_row = wo, wo      # the whole row is padding
            else:
                lo_row, hi_row = lo, hi
            start = y * width + x_offset
            if sw == 1:
                _gather_row(source, start, 1, lo_row, hi_row, target, oh * wo, wo)
            else:
                _gather_row(source, start, sw, lo_row, hi_row, target, oh * wo, wo)


@njit(parallel=True, cache=True)
def _col2im_kernel(cols, dx, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    n_images, channels, height, width = dx.shape
    for task in prange(n_images * channels):
        n = task // channels
        c = task - n * channels
        target = dx[n, c].ravel()
        target[:] = 0
        for i in range(kh):
            for j in range(kw):
                source = cols[n, (c * kh + i) * kw + j]
                x_offset = j * dw - pw
                lo, hi = _valid_range(wo, sw, x_offset, width)
                for oh in range(ho):
                    y = oh * sh - ph + i * dh
                    if 0 <= y < height:
                        start = y * width + x_offset
                        if sw == 1:
                            _scatter_row(source, oh * wo, lo, hi, target, start, 1)
                        else:
                            _scatter_row(source, oh * wo, lo, hi, target, start, sw)


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


def im2col(x, geometry):
    """Receptive fields of ``x`` (N, C, H, W) as columns: (N, C·kh·kw, Ho·Wo), in x's dtype."""
    g = geometry
    cols = np.empty((g.n, g.c * g.taps, g.ho * g.wo), x.dtype)
    if cols.size:
        _im2col_kernel(np.ascontiguousarray(x), cols, *_geometry_args(g))
    return cols


def col2im(cols, geometry):
    """Adjoint of :func:`im2col`: sum each column's entries back onto the image (N, C, H, W)."""
    dx = np.zeros(geometry.input_shape, cols.dtype)
    if cols.size:
        _col2im_kernel(np.ascontiguousarray(cols), dx, *_geometry_args(geometry))
    return dx


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
        _max_pool_kernel(np.ascontiguousarray(x), out, argmax, _tap_ranges(g.ho, g.sh, g.ph, g.dh, g.kh, g.h),
                         _tap_ranges(g.wo, g.sw, g.pw, g.dw, g.kw, g.w), g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
    return out, argmax


def max_pool_backward(grad, argmax, geometry):
    """Route each output's gradient to its maximum (deterministic: one task per plane)."""
    dx = np.zeros(geometry.input_shape, grad.dtype)
    if grad.size:
        _max_pool_backward_kernel(np.ascontiguousarray(grad), argmax, dx)
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
