"""CUDA twins of `stn_numba._cpu.fields`: one thread per point, the same
per-point math (`stn_numba._coords`), so the same order of operations."""

from numba import cuda

from .._coords import determinant_cofactors, determinant_gradient, field_jacobian
from . import launch


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
