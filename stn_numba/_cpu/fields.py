"""CPU kernels of the displacement-field functions (`stn_numba.fields`).

A field is viewed as (N, A, D, H, W) (D = 1 for 2-D fields); the per-point
math is `stn_numba._coords`' (the CUDA twins call the same). Every output
value is owned by one point, so the results do not depend on the threads.
"""

from numba import prange

from .._codegen import njit
from .._coords import determinant_cofactors, determinant_gradient, field_jacobian


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
