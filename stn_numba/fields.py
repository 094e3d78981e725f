"""Displacement fields: maps p -> p + u(p) given in pixels.

A displacement field ``u`` has shape (N, 2, H, W) or (N, 3, D, H, W): a
component per spatial axis, in array-axis order ((d,) y, x), in pixels (the
convention of MONAI's ``Warp`` and voxelmorph's ``SpatialTransformer``). It
maps the pixel p of an image to the source point p + u(p).

Every function validates its arguments, picks the CPU or CUDA kernel
(:mod:`stn_numba._device`) and calls it.
"""

from . import _checks, _device


def jacobian_determinant(displacement, *, device=None, stream=None):
    """The determinant of the Jacobian of p -> p + u(p) at every pixel: det(I + ∇u).

    Where it is at most 0 the map folds (it is not locally invertible there);
    its mean over a region is the region's change of volume. Derivatives are
    ``numpy.gradient``'s differences (edge_order=1): central inside, one-sided
    on the borders, 0 along an axis of size 1 (as voxelmorph's
    ``jacobian_determinant`` computes them). A NaN or Inf in the field
    reaches the determinants whose differences read it.

    Parameters
    ----------
    displacement : array_like, float32 or float64
        (N, 2, H, W) or (N, 3, D, H, W), components in array-axis order, in pixels.
    device, stream
        As in :func:`stn_numba.grid_sample`.

    Returns
    -------
    determinant : ndarray, shape (N, H, W) or (N, D, H, W), dtype of ``displacement``

    See Also
    --------
    jacobian_determinant_backward : the gradient with respect to ``displacement``.

    Examples
    --------
    A field that stretches x by half and shrinks y by a quarter:

    >>> import numpy as np
    >>> from stn_numba.fields import jacobian_determinant
    >>> y, x = np.mgrid[0:4, 0:5].astype(np.float64)
    >>> field = np.stack([-0.25 * y, 0.5 * x])[None]      # (1, 2, 4, 5)
    >>> np.allclose(jacobian_determinant(field), 1.5 * 0.75)
    True
    """
    backend, (displacement,) = _device.resolve(device, stream, displacement=displacement)
    dtype = _checks.displacement(displacement)
    spatial = len(displacement.shape) - 2
    output = backend.empty((displacement.shape[0],) + tuple(displacement.shape[2:]), dtype)
    if output.size:
        backend.kernel(f"jacobian_determinant_{spatial}d")(backend.contiguous(displacement, dtype), output)
    return output


def jacobian_determinant_backward(grad_output, displacement, *, device=None, stream=None):
    """Gradient of :func:`jacobian_determinant` with respect to ``displacement``.

    Exact: each determinant's cofactors (∂det/∂J) carried back through the
    differences that made J. Each value of the result is summed in a fixed
    order, so it is bitwise the same for any thread count, on the CPU and
    the GPU.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the determinants, (N, H, W) or (N, D, H, W).
    displacement, device, stream
        As given to :func:`jacobian_determinant`.

    Returns
    -------
    grad_displacement : ndarray, same shape and dtype as ``displacement``
    """
    backend, (grad_output, displacement) = _device.resolve(
        device, stream, grad_output=grad_output, displacement=displacement)
    _checks.displacement(displacement)
    expected = (displacement.shape[0],) + tuple(displacement.shape[2:])
    _checks.shape_for(grad_output, "grad_output", expected, "the output of jacobian_determinant")
    dtype = _checks.same_dtype(grad_output=grad_output, displacement=displacement)
    grad_displacement = backend.empty(tuple(displacement.shape), dtype)
    if grad_displacement.size:
        backend.kernel(f"jacobian_determinant_{len(expected) - 1}d_backward")(
            backend.contiguous(grad_output, dtype), backend.contiguous(displacement, dtype), grad_displacement)
    return grad_displacement
