"""CUDA twins of `stn_numba._cpu.fields`: one thread per point, the same
per-point math (`stn_numba._coords`), so the same order of operations. The
warp's input gradient is scattered with atomic adds."""

from numba import cuda

from .._coords import (
    determinant_cofactors,
    determinant_gradient,
    field_jacobian,
    store_field_gradient,
    warp_point,
    warp_point_gradient,
    warp_point_taps,
    warp_tap,
    warp_tap_count,
)
from . import launch
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
        for j in range(warp_tap_count(taps)):
            tap_z, tap_y, tap_x, weight = warp_tap(taps, j)
            if weight != 0:
                cuda.atomic.add(grad_input, (n, c, tap_z, tap_y, tap_x), grad_output[n, c, z, y, x] * weight)


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
                          align_corners, fill, input_requires_grad, stream):
    spatial = input.ndim - 2
    views = _view(grad_output, spatial), _view(input, spatial), _view(displacement, spatial)
    launch(_warp_displacement_gradient, _points(grad_output), stream)(
        *views, _view(grad_displacement, spatial), mode, padding_mode, align_corners, fill)
    if input_requires_grad:
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


def field_add(target, addend, stream=0):
    launch(_field_add, target.size, stream)(target.reshape(target.size), addend.reshape(addend.size))


def field_scale(target, source, factor, stream=0):
    launch(_field_scale, target.size, stream)(target.reshape(target.size), source.reshape(source.size),
                                              target.dtype.type(factor))
