"""Window gathering for convolution and pooling on the CPU.

Convolution is computed as im2col + one BLAS matrix product: :func:`im2col`
copies every receptive field into a row of a matrix (N·Ho·Wo, C·kh·kw), so the
forward pass is ``cols @ weight.T`` and the weight gradient ``grad.T @ cols``,
each a single large GEMM. :func:`col2im` scatters the gradient of the columns
back onto the image. Both are Numba kernels that handle zero padding with
bounds checks (no padded copy). ``col2im`` gives each (n, c) plane to one task,
which adds its taps in a fixed order, so it is bitwise deterministic.

Pooling gathers its windows as (N, C, Ho, Wo, kh·kw) with NumPy strides.
"""

from dataclasses import dataclass

import numpy as np
from numba import njit, prange


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


@njit(parallel=True, cache=True)
def _im2col_kernel(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    n_images, channels, height, width = x.shape
    zero = x.dtype.type(0)
    for task in prange(n_images * ho):
        n = task // ho
        oh = task - n * ho
        for ow in range(wo):
            row = task * wo + ow
            k = 0
            for c in range(channels):
                for i in range(kh):
                    y = oh * sh - ph + i * dh
                    for j in range(kw):
                        xx = ow * sw - pw + j * dw
                        if 0 <= y < height and 0 <= xx < width:
                            cols[row, k] = x[n, c, y, xx]
                        else:
                            cols[row, k] = zero
                        k += 1


@njit(parallel=True, cache=True)
def _col2im_kernel(cols, dx, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    n_images, channels, height, width = dx.shape
    for task in prange(n_images * channels):
        n = task // channels
        c = task - n * channels
        plane = dx[n, c]
        plane[:, :] = 0
        for oh in range(ho):
            for ow in range(wo):
                row = (n * ho + oh) * wo + ow
                k = c * kh * kw
                for i in range(kh):
                    y = oh * sh - ph + i * dh
                    for j in range(kw):
                        xx = ow * sw - pw + j * dw
                        if 0 <= y < height and 0 <= xx < width:
                            plane[y, xx] += cols[row, k]
                        k += 1


def _geometry_args(g):
    return (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.ho, g.wo)


def im2col(x, geometry):
    """Receptive fields of ``x`` (N, C, H, W) as rows: (N·Ho·Wo, C·kh·kw), in x's dtype."""
    g = geometry
    cols = np.empty((g.n * g.ho * g.wo, g.c * g.taps), x.dtype)
    if cols.size:
        _im2col_kernel(np.ascontiguousarray(x), cols, *_geometry_args(g))
    return cols


def col2im(cols, geometry):
    """Adjoint of :func:`im2col`: sum each row's entries back onto the image (N, C, H, W)."""
    dx = np.zeros(geometry.input_shape, cols.dtype)
    if cols.size:
        _col2im_kernel(np.ascontiguousarray(cols), dx, *_geometry_args(geometry))
    return dx


def rows_to_nchw(rows, geometry):
    """(N·Ho·Wo, O) → contiguous (N, O, Ho, Wo)."""
    g = geometry
    return np.ascontiguousarray(rows.reshape(g.n, g.ho, g.wo, -1).transpose(0, 3, 1, 2))


def nchw_to_rows(array):
    """(N, O, Ho, Wo) → contiguous (N·Ho·Wo, O)."""
    return np.ascontiguousarray(array.transpose(0, 2, 3, 1)).reshape(-1, array.shape[1])


def _window_view(padded, g):
    """Read-only strided view (N, C, Ho, Wo, kh, kw) of a padded input."""
    if padded.shape != (g.n, g.c, g.h + 2 * g.ph, g.w + 2 * g.pw):
        raise ValueError(f"input of shape {padded.shape} does not match the window geometry {g}")
    sn, sc, sy, sx = padded.strides
    return np.lib.stride_tricks.as_strided(
        padded, shape=(g.n, g.c, g.ho, g.wo, g.kh, g.kw),
        strides=(sn, sc, sy * g.sh, sx * g.sw, sy * g.dh, sx * g.dw), writeable=False)


def windows(x, geometry, fill):
    """Pooling windows of ``x`` as a contiguous (N, C, Ho, Wo, kh·kw) array; padding reads ``fill``."""
    g = geometry
    if g.ph or g.pw:
        x = np.pad(x, ((0, 0), (0, 0), (g.ph, g.ph), (g.pw, g.pw)), constant_values=fill)
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
