"""Samplers: part 3 of a spatial transformer (Jaderberg et al., 2015, §3.3).

The sampler reads the input U at the source points of a grid. For bilinear
interpolation the paper writes it as

    V_i^c = Σ_n Σ_m U^c_nm · max(0, 1 − |x_i − m|) · max(0, 1 − |y_i − n|),

which is differentiable in U and, almost everywhere, in the source points
(x_i, y_i); both gradients are exact here (:func:`grid_sample_backward`).

The functions follow ``torch.nn.functional.grid_sample`` (PyTorch 2.x): same
arguments, same layouts, same values.

=============  =====================================================================
padding_mode   what a sample point outside the input reads
=============  =====================================================================
``zeros``      0 for every tap outside the input
``border``     the nearest edge pixel (the coordinate is clipped)
``reflection`` the input mirrored about its borders (about the corner pixels'
               centres with align_corners=True, about the outer edges otherwise)
=============  =====================================================================

=============  ===================================================  ===========
mode           interpolation                                        input
=============  ===================================================  ===========
``bilinear``   2×2 taps (2×2×2, i.e. trilinear, on 5-D input)       4-D or 5-D
``nearest``    the nearest pixel, ties to even (as torch)           4-D or 5-D
``bicubic``    4×4 taps, cubic convolution with A = −0.75           4-D only
=============  ===================================================  ===========

Non-finite coordinates, where torch is inconsistent (and its CPU backward can
crash), follow one rule here: a NaN component samples nothing (output 0,
gradients 0); ±Inf and huge values behave as far outside (zeros padding gives
0, border the nearest edge, reflection a deterministic in-range point);
gradients are never NaN or Inf unless the input or grad_output are.

Every function validates its arguments, picks the CPU or CUDA kernel
(:mod:`stn_numba._device`) and calls it; nothing else happens here.

GPU arrays: numba device arrays, CuPy arrays, torch CUDA tensors (anything
with ``__cuda_array_interface__`` or a CUDA ``__dlpack__``) are used in place,
without a copy, and the results are numba device arrays on the same GPU. They
expose ``__cuda_array_interface__``, so ``cupy.asarray(result)`` and
``torch.as_tensor(result, device="cuda")`` are zero-copy views of them;
``result.copy_to_host()`` copies one to a NumPy array.
"""

from . import _checks, _device


def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False, *,
                device=None, stream=None):
    """Sample ``input`` at the normalised source points of ``grid``.

    Same semantics as ``torch.nn.functional.grid_sample`` (PyTorch 2.x), on
    NumPy arrays (or GPU arrays, see ``device``).

    Parameters
    ----------
    input : array_like, float32 or float64
        Images (N, C, H, W) or volumes (N, C, D, H, W). Any strides and byte
        order; inputs that are not C-contiguous, native-endian and writeable
        are copied (nothing is ever written to them).
    grid : array_like, same dtype as ``input``
        Source points (N, H_out, W_out, 2) or (N, D_out, H_out, W_out, 3) in
        normalised coordinates, last axis (x, y) or (x, y, z). The output size
        comes from the grid, so it may differ from the input's (the paper's
        downsampling).
    mode : {"bilinear", "nearest", "bicubic"}, optional
        Interpolation; see the module table. Default "bilinear".
    padding_mode : {"zeros", "border", "reflection"}, optional
        What points outside the input read; see the module table. Default "zeros".
    align_corners : bool, optional
        If True, ±1 are the centres of the corner pixels; if False (default,
        as in torch) their outer edges.
    device : {None, "cpu", "cuda"}, optional
        None (default) runs where the arrays live; "cuda" runs on the GPU and
        returns a GPU array.
    stream : numba CUDA stream, optional
        The stream for GPU work.

    Returns
    -------
    output : ndarray, shape (N, C, H_out, W_out) or (N, C, D_out, H_out, W_out)
        Same dtype as ``input``.

    See Also
    --------
    grid_sample_backward : gradients with respect to ``input`` and ``grid``.
    stn_numba.affine_grid : builds a grid from affine matrices.

    Notes
    -----
    Differences from torch: the non-finite coordinate rule of the module
    docstring, and ``align_corners=None`` means False without a warning.

    Examples
    --------
    Shift a 1×1×1×4 image one pixel to the left:

    >>> import numpy as np
    >>> from stn_numba import grid_sample
    >>> image = np.arange(4, dtype=np.float64).reshape(1, 1, 1, 4)
    >>> x = np.linspace(-1, 1, 4) + 2 / 3            # one pixel, normalised
    >>> grid = np.stack([x, np.zeros(4)], axis=-1).reshape(1, 1, 4, 2)
    >>> grid_sample(image, grid, align_corners=True)[0, 0, 0]
    array([1., 2., 3., 0.])
    >>> grid_sample(image, grid, padding_mode="border", align_corners=True)[0, 0, 0]
    array([1., 2., 3., 3.])
    """
    key = _device.remembered_key("grid_sample", device, stream, (input, grid), mode, padding_mode, align_corners)
    output = _device.run_remembered(key, input, grid)
    if output is not None:
        return output
    backend, (input, grid) = _device.resolve(device, stream, input=input, grid=grid)
    dtype, mode_code, padding_code, align = _checks.grid_sample_args(input, grid, mode, padding_mode, align_corners)
    name = f"grid_sample_{input.ndim - 2}d"
    output = backend.empty(tuple(input.shape[:2]) + tuple(grid.shape[1:-1]), dtype)
    if output.size:
        backend.kernel(name)(backend.contiguous(input, dtype), backend.contiguous(grid, dtype), output,
                             mode_code, padding_code, align)
        if key is not None and input.dtype == grid.dtype == dtype:  # (a key: NumPy arrays on the CPU)
            _device.remember(key, backend.forward_runner(False, input.shape, output.shape, dtype, mode_code,
                                                         padding_code, align))
    return output


def grid_sample_backward(grad_output, input, grid, mode="bilinear", padding_mode="zeros", align_corners=False, *,
                         input_requires_grad=True, deterministic=False, device=None, stream=None):
    """Gradients of :func:`grid_sample` with respect to ``input`` and ``grid``.

    The exact vector-Jacobian products of :func:`grid_sample`: ``grad_input``
    scatters ``grad_output`` back with the interpolation weights (the paper's
    ∂V/∂U), ``grad_grid`` is ``grad_output`` times the derivative of the
    interpolant in the source point (the paper's ∂V/∂x_s, ∂V/∂y_s), times the
    unnormalisation scale and the padding's derivative. Where the
    interpolant has a kink (a sample point exactly on a pixel), the one-sided
    derivative torch uses is taken. Deterministic on the CPU: the same inputs
    give bitwise the same gradients on every run and for any thread count. On
    the GPU ``grad_grid`` always is; ``grad_input`` is with
    ``deterministic=True``.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the output of :func:`grid_sample`.
    input, grid, mode, padding_mode, align_corners
        As given to :func:`grid_sample`.
    input_requires_grad : bool, optional
        If False, ``grad_input`` is not computed (it is the costly scatter) and
        None is returned in its place. Default True.
    deterministic : bool, optional
        GPU only; the CPU is always deterministic and ignores it. False
        (default): ``grad_input`` is added up with atomic adds, whose order,
        and so the last bits of the result, change from run to run (as in
        torch's CUDA backward). True: each input pixel's contributions are
        sorted and summed in a fixed order, so ``grad_input`` is bitwise
        reproducible; this costs extra passes and memory for one record
        (an int64 and a float) per interpolation tap of every output point
        (see :mod:`stn_numba._cuda.sampling`).
    device, stream
        As in :func:`grid_sample`.

    Returns
    -------
    grad_input : ndarray or None
        Same shape and dtype as ``input``.
    grad_grid : ndarray
        Same shape and dtype as ``grid``; zeros for mode="nearest", whose
        output is piecewise constant in the grid.
    """
    key = _device.remembered_key("grid_sample_backward", device, stream, (grad_output, input, grid), mode,
                                 padding_mode, input_requires_grad, deterministic, align_corners)
    gradients = _device.run_remembered(key, grad_output, input, grid)
    if gradients is not None:
        return gradients
    backend, (grad_output, input, grid) = _device.resolve(
        device, stream, grad_output=grad_output, input=input, grid=grid)
    dtype, mode_code, padding_code, align = _checks.grid_sample_args(input, grid, mode, padding_mode, align_corners)
    _checks.grad_output_for(grad_output, input, grid)
    dtype = _checks.same_dtype(grad_output=grad_output, input=input)
    return _run_backward(backend, key, f"grid_sample_{input.ndim - 2}d_backward", grad_output, input, grid, dtype,
                         mode_code, padding_code, align, input_requires_grad, deterministic)


def _run_backward(backend, key, name, grad_output, input, points, dtype, mode_code, padding_code, align,
                  input_requires_grad, deterministic):
    """Allocate the gradients of a sampler backward and run its kernel; then
    remember the call under ``key`` where it has one and runs as it will
    next time (input gradient wanted, arrays of ``dtype``).

    ``points`` is the grid or theta: the second differentiable argument.
    Returns (grad_input or None, grad_points).
    """
    input_shape = tuple(input.shape) if input_requires_grad else (0,) * input.ndim
    # The kernel overwrites both gradients; with nothing to sample they are zero.
    allocate = backend.empty if grad_output.size else backend.zeros
    grad_input = allocate(input_shape, dtype)
    grad_points = allocate(tuple(points.shape), dtype)
    if deterministic and backend.name == "cuda":
        name += "_deterministic"  # the CPU kernel always is
    if grad_output.size:
        options = mode_code, padding_code, align, bool(input_requires_grad)
        backend.kernel(name)(backend.contiguous(grad_output, dtype), backend.contiguous(input, dtype),
                             backend.contiguous(points, dtype), grad_input, grad_points, *options)
        if key is not None and input_requires_grad and grad_output.dtype == input.dtype == points.dtype == dtype:
            _device.remember(key, backend.runner(name, (input_shape, grad_points.shape), dtype, *options))
    return (grad_input if input_requires_grad else None), grad_points


# ------------------------------------------------------------ fused affine warp
def affine_grid_sample(input, theta, size, mode="bilinear", padding_mode="zeros", align_corners=False, *,
                       device=None, stream=None):
    """Warp ``input`` by affine transforms: ``grid_sample(input, affine_grid(theta, size))`` in one pass.

    The grid generator and sampler of Jaderberg et al. (2015), §3.2–3.3, fused:
    each output point's source coordinate ``theta[n] @ (x, y[, z], 1)`` is
    computed inside the kernel, so the (N, ..., 2|3) grid is never stored.
    The result equals :func:`grid_sample` of :func:`~stn_numba.affine_grid`
    with the same arguments (on the CPU bitwise: the coordinates are computed
    in the same order of operations).

    Parameters
    ----------
    input : array_like, float32 or float64
        Images (N, C, H, W) or volumes (N, C, D, H, W), as in :func:`grid_sample`.
    theta : array_like, same dtype as ``input``
        Affine matrices, (N, 2, 3) for images or (N, 3, 4) for volumes.
    size : sequence of int
        Output size (N, C, H_out, W_out) or (N, C, D_out, H_out, W_out);
        N and C must be those of ``input``. The spatial size may differ from
        the input's (the paper's downsampling).
    mode, padding_mode, align_corners
        As in :func:`grid_sample`; ``align_corners`` applies to both the grid
        and the sampler, as when the two torch functions are given the same value.
    device, stream
        As in :func:`grid_sample`.

    Returns
    -------
    output : ndarray, shape ``size``, dtype of ``input``

    See Also
    --------
    affine_grid_sample_backward : gradients with respect to ``input`` and ``theta``.

    Notes
    -----
    torch has no fused op; this matches
    ``F.grid_sample(input, F.affine_grid(theta, size, align_corners), mode,
    padding_mode, align_corners)``, with the non-finite coordinate rule of the
    module docstring (a non-finite ``theta`` gives non-finite coordinates,
    which follow it).

    Examples
    --------
    >>> import numpy as np
    >>> from stn_numba import affine_grid_sample
    >>> image = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> flip = np.array([[[-1, 0, 0], [0, 1, 0]]], dtype=np.float32)   # mirror x
    >>> affine_grid_sample(image, flip, (1, 1, 4, 4))[0, 0, 0]
    array([3., 2., 1., 0.], dtype=float32)
    """
    key = _device.remembered_key("affine_grid_sample", device, stream, (input, theta), size, mode, padding_mode,
                                 align_corners)
    output = _device.run_remembered(key, input, theta)
    if output is not None:
        return output
    backend, (input, theta) = _device.resolve(device, stream, input=input, theta=theta)
    dims, dtype, mode_code, padding_code, align = _checks.affine_grid_sample_args(
        input, theta, size, mode, padding_mode, align_corners)
    name = f"affine_grid_sample_{len(dims) - 2}d"
    output = backend.empty(dims, dtype)
    if output.size:
        backend.kernel(name)(backend.contiguous(input, dtype), backend.contiguous(theta, dtype), output,
                             mode_code, padding_code, align)
        if key is not None and input.dtype == theta.dtype == dtype:
            _device.remember(key, backend.forward_runner(True, input.shape, dims, dtype, mode_code, padding_code,
                                                         align))
    return output


def affine_grid_sample_backward(grad_output, input, theta, size, mode="bilinear", padding_mode="zeros",
                                align_corners=False, *, input_requires_grad=True, deterministic=False, device=None,
                                stream=None):
    """Gradients of :func:`affine_grid_sample` with respect to ``input`` and ``theta``.

    The exact vector-Jacobian products: ``grad_input`` as in
    :func:`grid_sample_backward`, and, by the chain rule through the affine
    grid, ``grad_theta[n, i, j] = Σ_p grad_grid[n, p, i] · base[p, j]`` with
    ``base[p] = (x_p, y_p[, z_p], 1)``, where ``grad_grid`` is what
    :func:`grid_sample_backward` would give (never stored). The sum is
    reduced in a fixed order over chunks that depend on the shapes only, so
    both gradients are bitwise identical for any thread count on the CPU.
    On the GPU ``grad_theta`` always is (a fixed reduction tree); ``grad_input``
    is with ``deterministic=True``.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the output, shape ``size``.
    input, theta, size, mode, padding_mode, align_corners
        As given to :func:`affine_grid_sample`.
    input_requires_grad : bool, optional
        If False, ``grad_input`` is not computed and None is returned in its
        place. Default True.
    deterministic : bool, optional
        As in :func:`grid_sample_backward`: GPU only (the CPU always is
        deterministic and ignores it); True makes the GPU's ``grad_input``
        bitwise reproducible, at the cost described there.
    device, stream
        As in :func:`grid_sample`.

    Returns
    -------
    grad_input : ndarray or None
        Same shape and dtype as ``input``.
    grad_theta : ndarray
        Same shape and dtype as ``theta``; zeros for mode="nearest".
    """
    key = _device.remembered_key("affine_grid_sample_backward", device, stream, (grad_output, input, theta), size,
                                 mode, padding_mode, input_requires_grad, deterministic, align_corners)
    gradients = _device.run_remembered(key, grad_output, input, theta)
    if gradients is not None:
        return gradients
    backend, (grad_output, input, theta) = _device.resolve(
        device, stream, grad_output=grad_output, input=input, theta=theta)
    dims, dtype, mode_code, padding_code, align = _checks.affine_grid_sample_args(
        input, theta, size, mode, padding_mode, align_corners)
    _checks.shape_for(grad_output, "grad_output", dims, "the output of affine_grid_sample")
    dtype = _checks.same_dtype(grad_output=grad_output, input=input)
    return _run_backward(backend, key, f"affine_grid_sample_{len(dims) - 2}d_backward", grad_output, input,
                         theta, dtype, mode_code, padding_code, align, input_requires_grad, deterministic)
