"""CUDA twins of `stn_numba._cpu.fields`: one thread per point, the same
per-point math (`stn_numba._coords`), so the same order of operations. The
warp's input gradient is scattered with atomic adds, or (deterministic) through
the sampler's count, scan, place, sort and gather."""

import numpy as np
from numba import cuda

from .._coords import (
    determinant_cofactors,
    determinant_gradient,
    field_jacobian,
    point_tap,
    point_tap_count,
    store_field_gradient,
    taps_per_axis,
    warp_point,
    warp_point_gradient,
    warp_point_taps,
)
from . import launch
from .sampling import exclusive_scan, gather_taps, tap_pixel
from .sampling import fill as set_all


@cuda.jit(device=True)
def _thread_point(array):
    """(n, z, y, x) of this thread's point of an (N, A, D, H, W) array, and whether it has one."""
    n_batch, _, depth, height, width = array.shape
    item = cuda.grid(1)
    x = item % width
    rest = item // width
    return rest // (depth * height), (rest // height) % depth, rest % height, x, item < n_batch * depth * height * width


@cuda.jit
def _jacobian_determinant(u, output):
    n, z, y, x, inside = _thread_point(u)
    if inside:
        output[n, z, y, x] = determinant_cofactors(field_jacobian(u, n, z, y, x))[0]


@cuda.jit
def _jacobian_determinant_backward(grad_output, u, grad_u):
    n, z, y, x, inside = _thread_point(u)
    if inside:
        totals = determinant_gradient(grad_output, u, n, z, y, x)
        for i in range(u.shape[1]):
            grad_u[n, i, z, y, x] = totals[i]


def _view(array, spatial):
    """A 2-D field (N, A, H, W) or map (N, H, W) as its 3-D view, depth 1."""
    if spatial == 3:
        return array
    return array.reshape(array.shape[:-2] + (1,) + array.shape[-2:])


def _determinant(displacement, output, stream):
    spatial = displacement.ndim - 2
    launch(_jacobian_determinant, output.size, stream)(_view(displacement, spatial), _view(output, spatial))


def _determinant_backward(grad_output, displacement, grad_displacement, stream):
    spatial = displacement.ndim - 2
    launch(_jacobian_determinant_backward, grad_output.size, stream)(
        _view(grad_output, spatial), _view(displacement, spatial), _view(grad_displacement, spatial))


def jacobian_determinant_2d(displacement, output, stream=0):
    _determinant(displacement, output, stream)


def jacobian_determinant_3d(displacement, output, stream=0):
    _determinant(displacement, output, stream)


def jacobian_determinant_2d_backward(grad_output, displacement, grad_displacement, stream=0):
    _determinant_backward(grad_output, displacement, grad_displacement, stream)


def jacobian_determinant_3d_backward(grad_output, displacement, grad_displacement, stream=0):
    _determinant_backward(grad_output, displacement, grad_displacement, stream)


@cuda.jit
def _warp(input, u, output, mode, padding_mode, align_corners, fill):
    n, z, y, x, inside = _thread_point(input)
    if inside:
        warp_point(input, u, output, n, z, y, x, mode, padding_mode, align_corners, fill)


@cuda.jit
def _warp_displacement_gradient(grad_output, input, u, grad_u, mode, padding_mode, align_corners, fill):
    n, z, y, x, inside = _thread_point(input)
    if inside:
        store_field_gradient(grad_u, n, z, y, x, *warp_point_gradient(
            grad_output, input, u, n, z, y, x, mode, padding_mode, align_corners, fill))


@cuda.jit
def _warp_input_gradient(grad_output, input, u, grad_input, mode, padding_mode, align_corners):
    """Scatter each point's grad_output into grad_input with atomic adds."""
    n, z, y, x, inside = _thread_point(input)
    if not inside:
        return
    taps = warp_point_taps(input, u, n, z, y, x, mode, padding_mode, align_corners)
    for c in range(input.shape[1]):
        for j in range(point_tap_count(taps)):
            tap_z, tap_y, tap_x, weight = point_tap(taps, j)
            if weight != 0:
                cuda.atomic.add(grad_input, (n, c, tap_z, tap_y, tap_x), grad_output[n, c, z, y, x] * weight)


@cuda.jit
def _warp_count_taps(input, u, counts, mode, padding_mode, align_corners):
    """``counts[pixel]`` += the point's non-zero taps on that pixel (exact integer atomics)."""
    n, z, y, x, inside = _thread_point(input)
    if not inside:
        return
    taps = warp_point_taps(input, u, n, z, y, x, mode, padding_mode, align_corners)
    for j in range(point_tap_count(taps)):
        tap_z, tap_y, tap_x, weight = point_tap(taps, j)
        if weight != 0:
            cuda.atomic.add(counts, tap_pixel(n, tap_z, tap_y, tap_x, *input.shape[2:]), 1)


@cuda.jit
def _warp_place_taps(input, u, offsets, counts, keys, weights, mode, padding_mode, align_corners, taps_per_point):
    """Write each non-zero tap's (key, weight) into its pixel's segment, as the sampler's
    `_place_taps` (key: the point's flat index times ``taps_per_point`` plus the tap's)."""
    n, z, y, x, inside = _thread_point(input)
    if not inside:
        return
    point = (z * input.shape[3] + y) * input.shape[4] + x
    taps = warp_point_taps(input, u, n, z, y, x, mode, padding_mode, align_corners)
    for j in range(point_tap_count(taps)):
        tap_z, tap_y, tap_x, weight = point_tap(taps, j)
        if weight != 0:
            pixel = tap_pixel(n, tap_z, tap_y, tap_x, *input.shape[2:])
            slot = offsets[pixel] + cuda.atomic.add(counts, pixel, -1) - 1
            keys[slot] = point * taps_per_point + j
            weights[slot] = weight


def _warp_input_gradient_deterministic(grad_output, input, displacement, grad_input, mode, padding_mode,
                                       align_corners, stream):
    """``grad_input`` (N, C, D, H, W views) through the sampler's count, scan, place, sort and gather:
    each pixel's contributions summed in the order of their points and taps."""
    pixels = grad_input.size // max(1, grad_input.shape[1])
    taps = taps_per_axis(mode) ** displacement.shape[1]
    counts = cuda.device_array(pixels, dtype=np.int64, stream=stream)
    set_all(counts, 0, stream)
    launch(_warp_count_taps, pixels, stream)(input, displacement, counts, mode, padding_mode, align_corners)
    offsets = cuda.device_array(pixels + 1, dtype=np.int64, stream=stream)
    exclusive_scan(counts, offsets, stream)
    records = max(1, pixels * taps)  # room for every tap (reading the count back would stall the stream)
    keys = cuda.device_array(records, dtype=np.int64, stream=stream)
    weights = cuda.device_array(records, dtype=input.dtype, stream=stream)
    launch(_warp_place_taps, pixels, stream)(input, displacement, offsets, counts, keys, weights, mode,
                                            padding_mode, align_corners, taps)
    n_batch, channels = grad_input.shape[:2]
    launch(gather_taps, pixels, stream)(grad_output.reshape(n_batch, channels, pixels // max(1, n_batch)), offsets,
                                        keys, weights, taps,
                                        grad_input.reshape(n_batch, channels, pixels // max(1, n_batch)))


@cuda.jit
def _field_add(target, addend):
    item = cuda.grid(1)
    if item < target.size:
        target[item] += addend[item]


@cuda.jit
def _field_scale(target, source, factor):
    item = cuda.grid(1)
    if item < target.size:
        target[item] = factor * source[item]


def _points(array):
    """Points of an (N, C, *S) array: N times its spatial size."""
    return array.size // max(1, array.shape[1])


def _warp_launch(input, displacement, output, mode, padding_mode, align_corners, fill, stream):
    spatial = input.ndim - 2
    launch(_warp, _points(output), stream)(_view(input, spatial), _view(displacement, spatial),
                                          _view(output, spatial), mode, padding_mode, align_corners, fill)


def _warp_backward_launch(grad_output, input, displacement, grad_input, grad_displacement, mode, padding_mode,
                          align_corners, fill, input_requires_grad, stream, deterministic=False):
    spatial = input.ndim - 2
    views = _view(grad_output, spatial), _view(input, spatial), _view(displacement, spatial)
    launch(_warp_displacement_gradient, _points(grad_output), stream)(
        *views, _view(grad_displacement, spatial), mode, padding_mode, align_corners, fill)
    if input_requires_grad and deterministic:
        _warp_input_gradient_deterministic(*views, _view(grad_input, spatial), mode, padding_mode, align_corners,
                                           stream)
    elif input_requires_grad:
        set_all(grad_input, 0, stream)
        launch(_warp_input_gradient, _points(grad_output), stream)(*views, _view(grad_input, spatial), mode,
                                                                  padding_mode, align_corners)


def warp_2d(input, displacement, output, mode, padding_mode, align_corners, fill, stream=0):
    _warp_launch(input, displacement, output, mode, padding_mode, align_corners, fill, stream)


def warp_3d(input, displacement, output, mode, padding_mode, align_corners, fill, stream=0):
    _warp_launch(input, displacement, output, mode, padding_mode, align_corners, fill, stream)


def warp_2d_backward(grad_output, input, displacement, grad_input, grad_displacement, mode, padding_mode,
                     align_corners, fill, input_requires_grad, stream=0):
    _warp_backward_launch(grad_output, input, displacement, grad_input, grad_displacement, mode, padding_mode,
                          align_corners, fill, input_requires_grad, stream)


def warp_3d_backward(grad_output, input, displacement, grad_input, grad_displacement, mode, padding_mode,
                     align_corners, fill, input_requires_grad, stream=0):
    _warp_backward_launch(grad_output, input, displacement, grad_input, grad_displacement, mode, padding_mode,
                          align_corners, fill, input_requires_grad, stream)


def warp_2d_backward_deterministic(grad_output, input, displacement, grad_input, grad_displacement, mode,
                                   padding_mode, align_corners, fill, input_requires_grad, stream=0):
    _warp_backward_launch(grad_output, input, displacement, grad_input, grad_displacement, mode, padding_mode,
                          align_corners, fill, input_requires_grad, stream, deterministic=True)


def warp_3d_backward_deterministic(grad_output, input, displacement, grad_input, grad_displacement, mode,
                                   padding_mode, align_corners, fill, input_requires_grad, stream=0):
    _warp_backward_launch(grad_output, input, displacement, grad_input, grad_displacement, mode, padding_mode,
                          align_corners, fill, input_requires_grad, stream, deterministic=True)


def field_add(target, addend, stream=0):
    launch(_field_add, target.size, stream)(target.reshape(target.size), addend.reshape(addend.size))


def field_scale(target, source, factor, stream=0):
    launch(_field_scale, target.size, stream)(target.reshape(target.size), source.reshape(source.size),
                                              target.dtype.type(factor))
