"""Displacement fields: maps p -> p + u(p) given in pixels.

A displacement field ``u`` has shape (N, 2, H, W) or (N, 3, D, H, W): a
component per spatial axis, in array-axis order ((d,) y, x), in pixels (the
convention of MONAI's ``Warp`` and voxelmorph's ``SpatialTransformer``). It
maps the pixel p of an image to the source point p + u(p).

Every function validates its arguments, picks the CPU or CUDA kernel
(:mod:`stn_numba._device`) and calls it.

:func:`warp` samples an image at p + u(p) with the offsets kept relative
into the kernel: the source point of pixel i is held as the index i +
floor(u) and the fraction u - floor(u), so its precision is u's, however
large the image (an absolute normalised grid, as torch's ``grid_sample``
takes, rounds i + u first: pytorch#94816). It takes every mode and padding of
:func:`stn_numba.grid_sample` (bicubic on volumes too: tricubic, 4×4×4 taps).
:func:`integrate_velocity` integrates a stationary velocity field into a
displacement by scaling and squaring (MONAI's ``DVF2DDF``, voxelmorph's
``VecInt``).
"""

import numpy as np

from . import _checks, _device
from ._codes import CONSTANT


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
        backend.kernels.jacobian_determinant[spatial](backend.contiguous(displacement, dtype), output)
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
        backend.kernels.jacobian_determinant_backward[len(expected) - 1](
            backend.contiguous(grad_output, dtype), backend.contiguous(displacement, dtype), grad_displacement)
    return grad_displacement


# ------------------------------------------------------------ warping
def warp(input, displacement, mode="bilinear", padding_mode="zeros", align_corners=False, *, fill_value=0.0,
         device=None, stream=None):
    """Sample ``input`` at each pixel p + displacement(p): warp it by a field in pixels.

    The spatial transformer's sampler (Jaderberg et al., 2015, §3.3) with a
    dense displacement field as its grid generator, as MONAI's ``Warp`` and
    voxelmorph's ``SpatialTransformer`` compute it, but with the offsets kept
    relative into the kernel (see the module docstring). Equals
    :func:`stn_numba.grid_sample` at the absolute grid of p + u, to rounding.

    Parameters
    ----------
    input : array_like, float32 or float64
        Images (N, C, H, W) or volumes (N, C, D, H, W).
    displacement : array_like, same dtype
        (N, 2, H, W) or (N, 3, D, H, W): per pixel, the offset of its source
        point in pixels, components in array-axis order ((z,) y, x).
    mode : {"bilinear", "nearest", "bicubic"}, optional
        As in :func:`stn_numba.grid_sample`; "bicubic" on volumes is
        tricubic (4×4×4 taps, A = −0.75). Default "bilinear".
    padding_mode : {"zeros", "border", "reflection", "circular", "constant"}, optional
        As in :func:`stn_numba.grid_sample`. Default "zeros".
    align_corners : bool, optional
        Where reflection mirrors: about the corner pixels' centres (True) or
        their outer edges (False, default). Pixel positions do not depend on
        it (MONAI's ``Warp`` samples with align_corners=True).
    fill_value : float, optional
        What taps outside read with ``padding_mode="constant"``.
    device, stream
        As in :func:`stn_numba.grid_sample`.

    Returns
    -------
    output : ndarray, same shape and dtype as ``input``

    See Also
    --------
    warp_backward : gradients with respect to ``input`` and ``displacement``.
    integrate_velocity : a diffeomorphic displacement from a velocity field.

    Examples
    --------
    Shift an image one pixel to the left (each pixel reads its right neighbour):

    >>> import numpy as np
    >>> from stn_numba import warp
    >>> image = np.arange(4, dtype=np.float64).reshape(1, 1, 1, 4)
    >>> shift = np.zeros((1, 2, 1, 4))
    >>> shift[:, 1] = 1.0                      # x component, in pixels
    >>> warp(image, shift)[0, 0, 0]
    array([1., 2., 3., 0.])
    >>> warp(image, shift, padding_mode="circular")[0, 0, 0]
    array([1., 2., 3., 0.])
    """
    backend, (input, displacement) = _device.resolve(device, stream, input=input, displacement=displacement)
    dtype, mode_code, padding_code, align, fill = _checks.warp_args(input, displacement, mode, padding_mode,
                                                                   align_corners, fill_value)
    output = backend.empty(tuple(input.shape), dtype)
    if output.size:
        backend.kernels.warp[len(input.shape) - 2](
            backend.contiguous(input, dtype), backend.contiguous(displacement, dtype), output, mode_code,
            padding_code, align, np.dtype(dtype).type(fill))
    return output


def warp_backward(grad_output, input, displacement, mode="bilinear", padding_mode="zeros", align_corners=False, *,
                  fill_value=0.0, input_requires_grad=True, deterministic=False, device=None, stream=None):
    """Gradients of :func:`warp` with respect to ``input`` and ``displacement``.

    Exact: ``grad_input`` scatters ``grad_output`` back with the interpolation
    weights; ``grad_displacement`` is ``grad_output`` times the derivative of
    the interpolant at the source point (one-sided at kinks, as
    :func:`stn_numba.grid_sample_backward`), in pixels. On the CPU both are
    bitwise the same for any thread count; on the GPU ``grad_displacement``
    is, and ``grad_input`` is with ``deterministic=True``.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the output, shape of ``input``.
    input, displacement, mode, padding_mode, align_corners, fill_value
        As given to :func:`warp`.
    input_requires_grad : bool, optional
        If False, ``grad_input`` is not computed and None is returned in its place.
    deterministic : bool, optional
        As in :func:`stn_numba.grid_sample_backward`: GPU only (the CPU
        always is deterministic); False adds ``grad_input`` atomically (its
        last bits may change from run to run), True sums each pixel's
        contributions in a fixed order, at the cost of a record per tap.
    device, stream
        As in :func:`stn_numba.grid_sample`.

    Returns
    -------
    grad_input : ndarray or None
        Same shape and dtype as ``input``.
    grad_displacement : ndarray
        Same shape and dtype as ``displacement``; zeros for mode="nearest".
    """
    backend, (grad_output, input, displacement) = _device.resolve(
        device, stream, grad_output=grad_output, input=input, displacement=displacement)
    dtype, mode_code, padding_code, align, fill = _checks.warp_args(input, displacement, mode, padding_mode,
                                                                   align_corners, fill_value)
    _checks.shape_for(grad_output, "grad_output", tuple(input.shape), "the output of warp")
    dtype = _checks.same_dtype(grad_output=grad_output, input=input)
    return _warp_backward(backend, grad_output, input, displacement, dtype, mode_code, padding_code, align, fill,
                          input_requires_grad, deterministic)


def _warp_backward(backend, grad_output, input, displacement, dtype, mode_code, padding_code, align, fill,
                   input_requires_grad, deterministic):
    """Allocate and run the warp's backward kernel (arguments validated)."""
    grad_input = backend.empty(tuple(input.shape) if input_requires_grad else (0,) * len(input.shape), dtype)
    grad_displacement = backend.empty(tuple(displacement.shape), dtype)
    backward = backend.kernels.backward("warp", len(input.shape) - 2, deterministic)
    if grad_displacement.size:
        backward(
            backend.contiguous(grad_output, dtype), backend.contiguous(input, dtype),
            backend.contiguous(displacement, dtype), grad_input, grad_displacement, mode_code, padding_code, align,
            np.dtype(dtype).type(fill), bool(input_requires_grad))
    elif input_requires_grad:
        grad_input = backend.zeros(tuple(input.shape), dtype)
    return (grad_input if input_requires_grad else None), grad_displacement


# ------------------------------------------------------------ velocity fields
def integrate_velocity(velocity, steps=7, mode="bilinear", padding_mode="zeros", align_corners=False, *,
                       device=None, stream=None):
    """Integrate a stationary velocity field into a displacement by scaling and squaring.

    ``u = v / 2**steps``, then ``steps`` times ``u <- u + warp(u, u)`` (the
    map composed with itself): the displacement of the flow of ``v`` after
    unit time, a diffeomorphism for smooth ``v`` (Arsigny et al., 2006; MONAI's
    ``DVF2DDF``, voxelmorph's ``VecInt``, both with 7 steps by default).

    Parameters
    ----------
    velocity : array_like, float32 or float64
        (N, 2, H, W) or (N, 3, D, H, W) in pixels, components in array-axis order.
    steps : int, optional
        Squarings, at least 0 (0: ``u = v``). Default 7.
    mode, padding_mode, align_corners
        As in :func:`warp`, for each composition (MONAI and voxelmorph:
        bilinear, zeros). ``padding_mode="constant"`` is refused (a fill
        value is no displacement).
    device, stream
        As in :func:`stn_numba.grid_sample`.

    Returns
    -------
    displacement : ndarray, same shape and dtype as ``velocity``

    See Also
    --------
    integrate_velocity_backward : the gradient with respect to ``velocity``.
    jacobian_determinant : where the result folds.

    Examples
    --------
    A constant velocity gives the same constant displacement:

    >>> import numpy as np
    >>> from stn_numba import integrate_velocity
    >>> v = np.full((1, 2, 8, 8), 0.5)
    >>> bool(np.allclose(integrate_velocity(v, padding_mode="border"), 0.5))
    True
    """
    backend, (velocity,) = _device.resolve(device, stream, velocity=velocity)
    dtype, options = _integration_args(velocity, steps, mode, padding_mode, align_corners)
    return _integrate(backend, velocity, int(steps), dtype, options)[-1]


def integrate_velocity_backward(grad_output, velocity, steps=7, mode="bilinear", padding_mode="zeros",
                                align_corners=False, *, deterministic=False, device=None, stream=None):
    """Gradient of :func:`integrate_velocity` with respect to ``velocity``.

    Back through the squarings: with ``u_{k+1} = u_k + warp(u_k, u_k)``, the
    gradient of ``u_k`` is that of ``u_{k+1}`` plus both gradients of
    :func:`warp_backward` (its input and its displacement are both ``u_k``);
    finally divided by ``2**steps``. Exact, and bitwise the same for any
    thread count on the CPU, and on the GPU with ``deterministic=True`` (as in
    :func:`warp_backward`). It recomputes the forward's fields (and holds all
    ``steps + 1`` of them).

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the displacement, shape of ``velocity``.
    velocity, steps, mode, padding_mode, align_corners, device, stream
        As given to :func:`integrate_velocity`.
    deterministic : bool, optional
        As in :func:`warp_backward`.

    Returns
    -------
    grad_velocity : ndarray, same shape and dtype as ``velocity``
    """
    backend, (grad_output, velocity) = _device.resolve(device, stream, grad_output=grad_output, velocity=velocity)
    dtype, options = _integration_args(velocity, steps, mode, padding_mode, align_corners)
    _checks.shape_for(grad_output, "grad_output", tuple(velocity.shape), "the output of integrate_velocity")
    dtype = _checks.same_dtype(grad_output=grad_output, velocity=velocity)
    fields = _integrate(backend, velocity, int(steps), dtype, options, keep=True)
    grad = backend.contiguous(grad_output, dtype)
    for field in reversed(fields[:-1]):
        grad_input, grad_displacement = _warp_backward(backend, grad, field, field, dtype, *options, True,
                                                       deterministic)
        backend.kernels.field_add(grad_input, grad)  # (a new array: grad_output is never written)
        backend.kernels.field_add(grad_input, grad_displacement)
        grad = grad_input
    grad_velocity = backend.empty(tuple(velocity.shape), dtype)
    backend.kernels.field_scale(grad_velocity, grad, 0.5**int(steps))  # (a power of two: exact)
    return grad_velocity


def _integration_args(velocity, steps, mode, padding_mode, align_corners):
    """Validate `integrate_velocity`'s arguments; return (dtype, (mode, padding, align, fill))."""
    _checks.displacement(velocity, "velocity")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an int of at least 0, got {steps!r}")
    dtype, mode_code, padding_code, align, fill = _checks.warp_args(velocity, velocity, mode, padding_mode,
                                                                    align_corners, 0.0)
    if padding_code == CONSTANT:
        raise ValueError("integrate_velocity takes padding_mode 'zeros', 'border', 'reflection' or 'circular', "
                         "got 'constant' (a fill value is no displacement)")
    return dtype, (mode_code, padding_code, align, fill)


def _integrate(backend, velocity, steps, dtype, options, keep=False):
    """The fields u_0 .. u_steps of the scaling and squaring (only the last unless ``keep``)."""
    mode_code, padding_code, align, fill = options
    field = backend.empty(tuple(velocity.shape), dtype)
    backend.kernels.field_scale(field, backend.contiguous(velocity, dtype), 0.5**steps)
    fields = [field]
    for _ in range(steps):
        composed = backend.empty(tuple(field.shape), dtype)
        if composed.size:
            backend.kernels.warp[len(field.shape) - 2](field, field, composed, mode_code, padding_code, align,
                                                            np.dtype(dtype).type(fill))
        backend.kernels.field_add(composed, field)
        field = composed
        fields = fields + [field] if keep else [field]
    return fields
