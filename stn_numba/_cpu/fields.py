"""CPU kernels of the displacement-field functions (`stn_numba.fields`).

A field is viewed as (N, A, D, H, W) (D = 1 for 2-D fields), and so is an
image warped by it; the per-point math is `stn_numba._coords`' (the CUDA
twins call the same). Every output value and every field gradient is owned by
one point. The warp's input gradient is a scatter: a work item is a run of
one image's output lines, which adds into the image's gradient (the first run)
or a private buffer of it (the others), and the buffers are then added in run
order. The runs depend on the shapes only, so results do not depend on the
threads.
"""

import math

import numpy as np
from numba import prange

from .._codegen import njit
from .._coords import (
    determinant_cofactors,
    determinant_gradient,
    field_jacobian,
    point_tap,
    point_tap_count,
    store_field_gradient,
    warp_point,
    warp_point_gradient,
    warp_point_taps,
)

_RUNS = 4  # warp backward: cut images so that N * runs reaches this
_BUFFER_BUDGET = 2**25  # warp backward: most elements of private buffers
_SERIAL_POINTS = 1 << 12  # warps of fewer points run on the calling thread


@njit(parallel=True, cache=True, nogil=True)
def _jacobian_determinant(u, output):
    """``output[n, z, y, x]`` = det(I + ∇u) at every point of the field ``u``."""
    n_batch, _, depth, height, width = u.shape
    for line in prange(n_batch * depth * height):
        n, z, y = line // (depth * height), (line // height) % depth, line % height
        for x in range(width):
            output[n, z, y, x] = determinant_cofactors(field_jacobian(u, n, z, y, x))[0]


@njit(parallel=True, cache=True, nogil=True)
def _jacobian_determinant_backward(grad_output, u, grad_u):
    """``grad_u`` at every point: `determinant_gradient`, owned by the point."""
    n_batch, axes, depth, height, width = u.shape
    for line in prange(n_batch * depth * height):
        n, z, y = line // (depth * height), (line // height) % depth, line % height
        for x in range(width):
            totals = determinant_gradient(grad_output, u, n, z, y, x)
            for i in range(axes):
                grad_u[n, i, z, y, x] = totals[i]


def jacobian_determinant_2d(displacement, output):
    """(N, 2, H, W) ``displacement`` -> (N, H, W) ``output``."""
    n_batch, axes, height, width = displacement.shape
    _jacobian_determinant(displacement.reshape(n_batch, axes, 1, height, width),
                          output.reshape(n_batch, 1, height, width))


def jacobian_determinant_3d(displacement, output):
    """(N, 3, D, H, W) ``displacement`` -> (N, D, H, W) ``output``."""
    _jacobian_determinant(displacement, output)


def jacobian_determinant_2d_backward(grad_output, displacement, grad_displacement):
    """Overwrite (N, 2, H, W) ``grad_displacement`` from (N, H, W) ``grad_output``."""
    n_batch, axes, height, width = displacement.shape
    _jacobian_determinant_backward(grad_output.reshape(n_batch, 1, height, width),
                                   displacement.reshape(n_batch, axes, 1, height, width),
                                   grad_displacement.reshape(n_batch, axes, 1, height, width))


def jacobian_determinant_3d_backward(grad_output, displacement, grad_displacement):
    """Overwrite (N, 3, D, H, W) ``grad_displacement`` from (N, D, H, W) ``grad_output``."""
    _jacobian_determinant_backward(grad_output, displacement, grad_displacement)


def _make_warp(mode, parallel):
    """The warp's forward and backward for one mode, a constant of their
    loops (its tap counts then are, and the taps unroll); the padding is an
    argument (a fifth of the compilations)."""
    loop = prange if parallel else range

    @njit(parallel=parallel, cache=True, nogil=True, error_model="numpy")
    def forward(input, u, output, padding_mode, align_corners, fill):
        """``output`` (N, C, D, H, W) = ``input`` sampled at each point + u."""
        n_batch, _, depth, height, width = input.shape
        for line in loop(n_batch * depth * height):
            n, z, y = line // (depth * height), (line // height) % depth, line % height
            for x in range(width):
                warp_point(input, u, output, n, z, y, x, mode, padding_mode, align_corners, fill)

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def backward(grad_output, input, u, grad_input, grad_u, buffers, runs, padding_mode, align_corners, fill,
                 input_requires_grad):
        """Overwrite ``grad_u`` and, if ``input_requires_grad``, ``grad_input``:
        run r > 0 of image n scatters into ``buffers[n * (runs - 1) + r - 1]``,
        added afterwards by `_add_buffers`."""
        n_batch, _, depth, height, width = input.shape
        lines = depth * height
        for item in prange(n_batch * runs):
            n, run = item // runs, item % runs
            target = grad_input if run == 0 else buffers
            image = n if run == 0 else n * (runs - 1) + run - 1
            if input_requires_grad:
                target[image] = 0
            for line in range(run * lines // runs, (run + 1) * lines // runs):
                z, y = line // height, line % height
                for x in range(width):
                    store_field_gradient(grad_u, n, z, y, x, *warp_point_gradient(
                        grad_output, input, u, n, z, y, x, mode, padding_mode, align_corners, fill))
                    if input_requires_grad:
                        _scatter_point(grad_output, input, u, target, image, n, z, y, x, mode, padding_mode,
                                       align_corners)

    return forward, backward


_WARPS = {}  # (mode, parallel) -> (forward, backward)


def _warp_kernels(mode, parallel):
    kernels = _WARPS.get((mode, parallel))
    if kernels is None:
        kernels = _WARPS[mode, parallel] = _make_warp(mode, parallel)
    return kernels


@njit(inline="always")
def _scatter_point(grad_output, input, u, target, image, n, z, y, x, mode, padding_mode, align_corners):
    """Add grad_output at (z, y, x) times each tap's weight into ``target[image]``."""
    taps = warp_point_taps(input, u, n, z, y, x, mode, padding_mode, align_corners)
    for c in range(input.shape[1]):
        for j in range(point_tap_count(taps)):
            tap_z, tap_y, tap_x, weight = point_tap(taps, j)
            if weight != 0:
                target[image, c, tap_z, tap_y, tap_x] += grad_output[n, c, z, y, x] * weight


@njit(parallel=True, cache=True, nogil=True)
def _add_buffers(grad_input, buffers, runs):
    """Add each image's private buffers into its gradient, in run order; planes run in parallel."""
    n_batch, channels = grad_input.shape[:2]
    for plane in prange(n_batch * channels):
        n, c = plane // channels, plane % channels
        for run in range(1, runs):
            grad_input[n, c] += buffers[n * (runs - 1) + run - 1, c]


def _view(array, spatial):
    """An image, field or gradient of ``spatial`` dims as its (N, A, D, H, W) view."""
    return array if spatial == 3 else array.reshape(array.shape[:2] + (1,) + array.shape[2:])


def _warp_runs(shape):
    """Runs per image of the warp backward: enough for N * runs to reach
    `_RUNS`, at most one per output line, within the buffer budget."""
    n_batch, channels = shape[:2]
    lines = math.prod(shape[2:-1])
    runs = max(1, min(-(-_RUNS // max(n_batch, 1)), lines))
    while runs > 1 and n_batch * (runs - 1) * channels * math.prod(shape[2:]) > _BUFFER_BUDGET:
        runs -= 1
    return runs


def _run_warp(input, displacement, output, mode, padding_mode, align_corners, fill):
    spatial = input.ndim - 2
    kernel = _warp_kernels(mode, output.size // max(1, output.shape[1]) >= _SERIAL_POINTS)[0]
    kernel(_view(input, spatial), _view(displacement, spatial), _view(output, spatial), padding_mode, align_corners,
           fill)


def _run_warp_backward(grad_output, input, displacement, grad_input, grad_displacement, mode, padding_mode,
                       align_corners, fill, input_requires_grad):
    spatial = input.ndim - 2
    volume = _view(input, spatial)
    runs = _warp_runs(volume.shape) if input_requires_grad else 1
    buffers = np.empty((input.shape[0] * (runs - 1),) + volume.shape[1:], input.dtype)
    target = _view(grad_input, spatial) if input_requires_grad else np.empty((0,) + volume.shape[1:], input.dtype)
    _warp_kernels(mode, True)[1](_view(grad_output, spatial), volume, _view(displacement, spatial), target,
                                 _view(grad_displacement, spatial), buffers, runs, padding_mode, align_corners,
                                 fill, input_requires_grad)
    if runs > 1:
        _add_buffers(target, buffers, runs)


def warp_2d(input, displacement, output, mode, padding_mode, align_corners, fill):
    """(N, C, H, W) ``input`` at each pixel + (N, 2, H, W) ``displacement`` into ``output``."""
    _run_warp(input, displacement, output, mode, padding_mode, align_corners, fill)


def warp_3d(input, displacement, output, mode, padding_mode, align_corners, fill):
    """(N, C, D, H, W) ``input`` at each voxel + (N, 3, D, H, W) ``displacement`` into ``output``."""
    _run_warp(input, displacement, output, mode, padding_mode, align_corners, fill)


def warp_2d_backward(grad_output, input, displacement, grad_input, grad_displacement, mode, padding_mode,
                     align_corners, fill, input_requires_grad):
    """Overwrite ``grad_displacement`` and (if ``input_requires_grad``) ``grad_input``."""
    _run_warp_backward(grad_output, input, displacement, grad_input, grad_displacement, mode, padding_mode,
                       align_corners, fill, input_requires_grad)


def warp_3d_backward(grad_output, input, displacement, grad_input, grad_displacement, mode, padding_mode,
                     align_corners, fill, input_requires_grad):
    """As `warp_2d_backward`, 5-D."""
    _run_warp_backward(grad_output, input, displacement, grad_input, grad_displacement, mode, padding_mode,
                       align_corners, fill, input_requires_grad)


def field_add(target, addend):
    """``target += addend`` (same shape and dtype)."""
    np.add(target, addend, out=target)


def field_scale(target, source, factor):
    """``target = factor * source``, in the arrays' dtype."""
    np.multiply(source, target.dtype.type(factor), out=target)
