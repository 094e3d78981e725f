"""CPU kernels of the displacement-field functions (`stn_numba.fields`).

A field is viewed as (N, A, D, H, W) (D = 1 for 2-D fields); the per-point
math is `stn_numba._coords`' (the CUDA twins call the same). Every output
value is owned by one point, so the results do not depend on the threads.
"""

from numba import prange

from .._codegen import njit
from .._coords import determinant_cofactors, difference_weight, field_jacobian


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
    """``grad_u[n, i, m]`` = Σ over axes a and the points k whose difference
    along a reads m: grad_output[k] · ∂det/∂J_ia at k · the difference's
    weight of m; a fixed order at every point."""
    n_batch, axes, depth, height, width = u.shape
    first = 3 - axes  # the view axis of component 0
    for line in prange(n_batch * depth * height):
        n, z, y = line // (depth * height), (line // height) % depth, line % height
        for x in range(width):
            like = u[n, 0, z, y, x]
            totals = (type(like)(0), type(like)(0), type(like)(0))
            for a in range(axes):
                axis = first + a
                m = z if axis == 0 else (y if axis == 1 else x)
                size = u.shape[2 + axis]
                for k in range(max(m - 1, 0), min(m + 1, size - 1) + 1):
                    weight = difference_weight(k, m, size, like)
                    if weight == 0:
                        continue
                    kz, ky, kx = (k, y, x) if axis == 0 else ((z, k, x) if axis == 1 else (z, y, k))
                    cofactors = determinant_cofactors(field_jacobian(u, n, kz, ky, kx))[1]
                    g = grad_output[n, kz, ky, kx] * weight
                    totals = (totals[0] + g * cofactors[a], totals[1] + g * cofactors[3 + a],
                              totals[2] + g * cofactors[6 + a])
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
