"""CUDA twins of `stn_numba._cpu.fields`: one thread per point, the same
per-point math (`stn_numba._coords`), so the same order of operations. The
warp's input gradient is scattered with atomic adds."""

from numba import cuda

from .._coords import (
    determinant_cofactors,
    determinant_gradient,
    field_jacobian,
    warp_point,
    warp_point_gradient,
    warp_point_taps,
)
from . import launch
from .sampling import fill as set_all


@cuda.jit(device=True)
def _point(item, depth, height, width):
    """(n, z, y, x) of flat point ``item``."""
    x = item % width
    rest = item // width
    return rest // (depth * height), (rest // height) % depth, rest % height, x


@cuda.jit
def _jacobian_determinant(u, output):
    n_batch, _, depth, height, width = u.shape
    item = cuda.grid(1)
    if item >= n_batch * depth * height * width:
        return
    n, z, y, x = _point(item, depth, height, width)
    output[n, z, y, x] = determinant_cofactors(field_jacobian(u, n, z, y, x))[0]


@cuda.jit
def _jacobian_determinant_backward(grad_output, u, grad_u):
    n_batch, axes, depth, height, width = u.shape
    item = cuda.grid(1)
    if item >= n_batch * depth * height * width:
        return
    n, z, y, x = _point(item, depth, height, width)
    totals = determinant_gradient(grad_output, u, n, z, y, x)
    for i in range(axes):
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
    n_batch, _, depth, height, width = input.shape
    item = cuda.grid(1)
    if item >= n_batch * depth * height * width:
        return
    n, z, y, x = _point(item, depth, height, width)
    warp_point(input, u, output, n, z, y, x, mode, padding_mode, align_corners, fill)


@cuda.jit
def _warp_displacement_gradient(grad_output, input, u, grad_u, mode, padding_mode, align_corners, fill):
    n_batch, _, depth, height, width = input.shape
    item = cuda.grid(1)
    if item >= n_batch * depth * height * width:
        return
    n, z, y, x = _point(item, depth, height, width)
    axes = u.shape[1]
    along_z, along_y, along_x = warp_point_gradient(grad_output, input, u, n, z, y, x, mode, padding_mode,
                                                    align_corners, fill)
    if axes == 3:
        grad_u[n, 0, z, y, x] = along_z
    grad_u[n, axes - 2, z, y, x] = along_y
    grad_u[n, axes - 1, z, y, x] = along_x


@cuda.jit
def _warp_input_gradient(grad_output, input, u, grad_input, mode, padding_mode, align_corners):
    """Scatter each point's grad_output into grad_input with atomic adds."""
    n_batch, channels, depth, height, width = input.shape
    item = cuda.grid(1)
    if item >= n_batch * depth * height * width:
        return
    n, z, y, x = _point(item, depth, height, width)
    taps_z, taps_y, taps_x = warp_point_taps(input, u, n, z, y, x, mode, padding_mode, align_corners)
    for c in range(channels):
        upstream = grad_output[n, c, z, y, x]
        for a in range(taps_z[3]):
            for b in range(taps_y[3]):
                weight_zy = taps_z[1][a] * taps_y[1][b]
                if weight_zy == 0:
                    continue
                for k in range(taps_x[3]):
                    weight = weight_zy * taps_x[1][k]
                    if weight != 0:
                        cuda.atomic.add(grad_input, (n, c, taps_z[0][a], taps_y[0][b], taps_x[0][k]),
                                        upstream * weight)


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
