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
``circular``   the input repeated periodically, with a period of its size in
               pixels (each tap index wraps: scipy.ndimage's "grid-wrap")
``constant``   ``fill_value`` for every tap outside the input (scipy.ndimage's
               "grid-constant" with ``cval``; "zeros" is ``fill_value=0``)
=============  =====================================================================

=============  ===================================================  ===========
mode           interpolation                                        input
=============  ===================================================  ===========
``bilinear``   2×2 taps (2×2×2, i.e. trilinear, on 5-D input)       4-D or 5-D
``nearest``    the nearest pixel, ties to even (as torch)           4-D or 5-D
``bicubic``    4×4 taps, cubic convolution with A = −0.75 (4×4×4,   4-D or 5-D
               tricubic, on 5-D input)
=============  ===================================================  ===========

Non-finite coordinates, where torch is inconsistent (and its CPU backward can
crash), follow one rule here: a NaN component samples nothing (output 0,
gradients 0); ±Inf and huge values behave as far outside (zeros padding gives
0, constant ``fill_value``, border the nearest edge, reflection a deterministic
in-range point; circular, which has no edge, samples nothing at ±Inf, and
wraps huge finite values to a deterministic in-range point);
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
from ._codes import CONSTANT, fill_sizes, sampled_padding


def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False, *, fill_value=0.0,
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
        Interpolation; see the module table (bicubic on volumes is tricubic,
        which torch lacks). Default "bilinear".
    padding_mode : {"zeros", "border", "reflection", "circular", "constant"}, optional
        What points outside the input read; see the module table. Default "zeros".
    align_corners : bool, optional
        If True, ±1 are the centres of the corner pixels; if False (default,
        as in torch) their outer edges.
    fill_value : float, optional
        What taps outside the input read with ``padding_mode="constant"``
        (any other padding takes only the default, 0.0). NaN and ±Inf reach
        only the points whose taps fall outside.
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
    docstring, ``align_corners=None`` means False without a warning, and the
    paddings "circular" and "constant", which torch lacks.

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
    >>> grid_sample(image, grid, padding_mode="circular", align_corners=True)[0, 0, 0]
    array([1., 2., 3., 0.])
    >>> grid_sample(image, grid, padding_mode="constant", align_corners=True, fill_value=9)[0, 0, 0]
    array([1., 2., 3., 9.])
    """
    key = _device.remembered_key("grid_sample", device, stream, (input, grid), mode, padding_mode, fill_value,
                                 align_corners)
    output = _device.run_remembered(key, input, grid)
    if output is not None:
        return output
    backend, (input, grid) = _device.resolve(device, stream, input=input, grid=grid)
    dtype, mode_code, padding_code, align = _checks.grid_sample_args(input, grid, mode, padding_mode, align_corners)
    fill = _checks.fill_value(fill_value, padding_code)
    if padding_code == CONSTANT:
        grid = backend.contiguous(grid, dtype)  # once: the sampler and the fill both read it
    output = _run_forward(backend.kernels.grid_sample[input.ndim - 2], backend, input, grid,
                          tuple(input.shape[:2]) + tuple(grid.shape[1:-1]), dtype, mode_code, padding_code, align)
    if padding_code == CONSTANT:
        _fill_outside(backend, grid, output, input.shape, fill, mode_code, align)
    elif output.size and key is not None and input.dtype == grid.dtype == dtype:  # (a key: NumPy arrays on the CPU)
        _device.remember(key, backend.forward_runner(False, input.shape, output.shape, dtype, mode_code,
                                                     padding_code, align))
    return output


def _run_forward(kernel, backend, input, points, shape, dtype, mode_code, padding_code, align):
    """Allocate a sampler forward's output of ``shape`` and run ``kernel``
    (one of ``backend.kernels``) on it (``points``: the grid or theta); nothing to sample, nothing run.
    Constant padding runs as zeros (the caller adds the fill)."""
    output = backend.empty(shape, dtype)
    if output.size:
        kernel(backend.contiguous(input, dtype), backend.contiguous(points, dtype), output, mode_code,
               sampled_padding(padding_code), align)
    return output


def _fill_outside(backend, grid, output, input_shape, fill, mode_code, align):
    """Constant padding's second step: add ``fill`` times each point's share
    of interpolation weight outside the input (exactly 0 inside)."""
    if output.size:
        backend.kernels.fill_outside(backend.contiguous(grid, output.dtype), output, fill_sizes(input_shape[2:]),
                                     output.dtype.type(fill), mode_code, align)


def _fill_outside_backward(backend, grad_output, grid, grad_grid, input_shape, fill, mode_code, align):
    """Add constant padding's fill term to ``grad_grid`` (zeros padding's)."""
    if grad_output.size:
        dtype = grad_grid.dtype
        backend.kernels.fill_outside_backward(backend.contiguous(grad_output, dtype), backend.contiguous(grid, dtype),
                                              grad_grid, fill_sizes(input_shape[2:]), dtype.type(fill), mode_code,
                                              align)


def grid_sample_backward(grad_output, input, grid, mode="bilinear", padding_mode="zeros", align_corners=False, *,
                         fill_value=0.0, input_requires_grad=True, deterministic=False, device=None, stream=None):
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
    input, grid, mode, padding_mode, align_corners, fill_value
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
        (see ``stn_numba._cuda.sampling``).
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
                                 padding_mode, fill_value, input_requires_grad, deterministic, align_corners)
    gradients = _device.run_remembered(key, grad_output, input, grid)
    if gradients is not None:
        return gradients
    backend, (grad_output, input, grid) = _device.resolve(
        device, stream, grad_output=grad_output, input=input, grid=grid)
    dtype, mode_code, padding_code, align = _checks.grid_sample_args(input, grid, mode, padding_mode, align_corners)
    fill = _checks.fill_value(fill_value, padding_code)
    _checks.grad_output_for(grad_output, input, grid)
    dtype = _checks.same_dtype(grad_output=grad_output, input=input)
    constant = padding_code == CONSTANT
    if constant:  # once: the sampler's backward and the fill's both read them
        grad_output, grid = backend.contiguous(grad_output, dtype), backend.contiguous(grid, dtype)
    backward = backend.kernels.backward("grid_sample", input.ndim - 2, deterministic)
    grad_input, grad_grid = _run_backward(backward, backend, None if constant else key, grad_output, input, grid,
                                          dtype, mode_code, padding_code, align, input_requires_grad)
    if constant:
        _fill_outside_backward(backend, grad_output, grid, grad_grid, input.shape, fill, mode_code, align)
    return grad_input, grad_grid


def _run_backward(kernel, backend, key, grad_output, input, points, dtype, mode_code, padding_code, align,
                  input_requires_grad):
    """Allocate the gradients of a sampler backward and run ``kernel`` (one of
    ``backend.kernels``); then
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
    if grad_output.size:
        options = mode_code, sampled_padding(padding_code), align, bool(input_requires_grad)
        kernel(backend.contiguous(grad_output, dtype), backend.contiguous(input, dtype),
               backend.contiguous(points, dtype), grad_input, grad_points, *options)
        if key is not None and input_requires_grad and grad_output.dtype == input.dtype == points.dtype == dtype:
            _device.remember(key, backend.runner(kernel, (input_shape, grad_points.shape), dtype, *options))
    return (grad_input if input_requires_grad else None), grad_points


# ------------------------------------------------------------ fused affine warp
def affine_grid_sample(input, theta, size, mode="bilinear", padding_mode="zeros", align_corners=False, *,
                       fill_value=0.0, device=None, stream=None):
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
    mode, padding_mode, align_corners, fill_value
        As in :func:`grid_sample`; ``align_corners`` applies to both the grid
        and the sampler, as when the two torch functions are given the same
        value. (With ``padding_mode="constant"`` the grid is stored for the
        moment the fill reads it.)
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
                                 fill_value, align_corners)
    output = _device.run_remembered(key, input, theta)
    if output is not None:
        return output
    backend, (input, theta) = _device.resolve(device, stream, input=input, theta=theta)
    dims, dtype, mode_code, padding_code, align = _checks.affine_grid_sample_args(
        input, theta, size, mode, padding_mode, align_corners)
    fill = _checks.fill_value(fill_value, padding_code)
    if padding_code == CONSTANT:
        grid = _affine_points(backend, theta, dims, dtype, align)
        output = _run_forward(backend.kernels.grid_sample[len(dims) - 2], backend, input, grid, dims, dtype,
                              mode_code, padding_code, align)
        _fill_outside(backend, grid, output, input.shape, fill, mode_code, align)
        return output
    output = _run_forward(backend.kernels.affine_grid_sample[len(dims) - 2], backend, input, theta, dims, dtype,
                          mode_code, padding_code, align)
    if output.size and key is not None and input.dtype == theta.dtype == dtype:
        _device.remember(key, backend.forward_runner(True, input.shape, dims, dtype, mode_code, padding_code, align))
    return output


def affine_grid_sample_backward(grad_output, input, theta, size, mode="bilinear", padding_mode="zeros",
                                align_corners=False, *, fill_value=0.0, input_requires_grad=True, deterministic=False,
                                device=None, stream=None):
    """Gradients of :func:`affine_grid_sample` with respect to ``input`` and ``theta``.

    The exact vector-Jacobian products: ``grad_input`` as in
    :func:`grid_sample_backward`, and, by the chain rule through the affine
    grid, ``grad_theta[n, i, j] = Σ_p grad_grid[n, p, i] · base[p, j]`` with
    ``base[p] = (x_p, y_p[, z_p], 1)``, where ``grad_grid`` is what
    :func:`grid_sample_backward` would give. The sum is reduced in a fixed
    order over chunks that depend on the shapes only, so both gradients are
    bitwise identical for any thread count on the CPU. (On the CPU, bilinear
    with up to four channels runs faster as those ops themselves, so it then
    stores the grid and its gradient for a moment, and gives their bits.)
    On the GPU ``grad_theta`` always is (a fixed reduction tree); ``grad_input``
    is with ``deterministic=True``.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the output, shape ``size``.
    input, theta, size, mode, padding_mode, align_corners, fill_value
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
                                 mode, padding_mode, fill_value, input_requires_grad, deterministic, align_corners)
    gradients = _device.run_remembered(key, grad_output, input, theta)
    if gradients is not None:
        return gradients
    backend, (grad_output, input, theta) = _device.resolve(
        device, stream, grad_output=grad_output, input=input, theta=theta)
    dims, dtype, mode_code, padding_code, align = _checks.affine_grid_sample_args(
        input, theta, size, mode, padding_mode, align_corners)
    fill = _checks.fill_value(fill_value, padding_code)
    _checks.shape_for(grad_output, "grad_output", dims, "the output of affine_grid_sample")
    dtype = _checks.same_dtype(grad_output=grad_output, input=input)
    if padding_code == CONSTANT:  # through the grid, which the fill's gradient reads
        spatial = len(dims) - 2
        grid = _affine_points(backend, theta, dims, dtype, align)
        backward = backend.kernels.backward("grid_sample", spatial, deterministic)
        grad_input, grad_grid = _run_backward(backward, backend, None, grad_output, input, grid, dtype, mode_code,
                                              padding_code, align, input_requires_grad)
        _fill_outside_backward(backend, grad_output, grid, grad_grid, input.shape, fill, mode_code, align)
        grad_theta = backend.zeros(tuple(theta.shape), dtype)
        if grad_grid.size:
            backend.kernels.affine_grid_backward[spatial](grad_grid, grad_theta, align)
        return grad_input, grad_theta
    backward = backend.kernels.backward("affine_grid_sample", len(dims) - 2, deterministic)
    return _run_backward(backward, backend, key, grad_output, input, theta, dtype, mode_code,
                         padding_code, align, input_requires_grad)


def _affine_points(backend, theta, dims, dtype, align):
    """The affine grid of ``theta`` for an output of ``dims`` (`affine_grid`'s kernel)."""
    spatial = len(dims) - 2
    grid = backend.empty((dims[0],) + tuple(dims[2:]) + (spatial,), dtype)
    if grid.size:
        backend.kernels.affine_grid[spatial](backend.contiguous(theta, dtype), grid, align)
    return grid


# ------------------------------------------------------------ splatting: the sampler's adjoint
def grid_push(values, grid, input_shape, mode="bilinear", padding_mode="zeros", align_corners=False, *,
              deterministic=False, device=None, stream=None):
    """Splat ``values`` at the source points of ``grid`` onto an image of ``input_shape``.

    The adjoint of :func:`grid_sample` with respect to its input: each value
    is added to the input pixels that sampling at its point would read, with
    the same interpolation weights and padding (a tap that
    ``padding_mode`` sends to another pixel adds there; a tap that reads
    zeros adds nothing). So ``⟨grid_push(v, grid), u⟩ = ⟨v, grid_sample(u,
    grid)⟩`` for every ``u`` and ``v``, and ``grid_push`` equals the
    ``grad_input`` of :func:`grid_sample_backward` (MONAI's ``grid_push``;
    in torch, the autograd of ``grid_sample`` with respect to its input).
    Deterministic on the CPU; on the GPU with ``deterministic=True``.

    Parameters
    ----------
    values : array_like, float32 or float64
        (N, C, H_out, W_out) or (N, C, D_out, H_out, W_out): one value per
        channel and grid point.
    grid : array_like, same dtype as ``values``
        Source points, as in :func:`grid_sample`: (N, H_out, W_out, 2) or
        (N, D_out, H_out, W_out, 3), normalised, last axis (x, y[, z]).
    input_shape : sequence of int
        The shape of the image pushed onto, (N, C, H, W) or (N, C, D, H, W):
        the input :func:`grid_sample` would sample. N and C are those of
        ``values``.
    mode, padding_mode, align_corners
        As in :func:`grid_sample`.
    deterministic : bool, optional
        As in :func:`grid_sample_backward`: GPU only (the CPU always is
        deterministic); True sums each pixel's contributions in a fixed order.
    device, stream
        As in :func:`grid_sample`.

    Returns
    -------
    pushed : ndarray, shape ``input_shape``, dtype of ``values``

    See Also
    --------
    grid_push_backward : gradients with respect to ``values`` and ``grid``.
    grid_count : the push of ones (how much weight each pixel receives).

    Examples
    --------
    Push four ones at the pixel centres of a 1×1×1×4 image shifted by half
    a pixel: each lands half on its own pixel and half on the next.

    >>> import numpy as np
    >>> from stn_numba import grid_push
    >>> x = np.linspace(-1, 1, 4) + 1 / 3           # half a pixel, normalised
    >>> grid = np.stack([x, np.zeros(4)], axis=-1).reshape(1, 1, 4, 2)
    >>> grid_push(np.ones((1, 1, 1, 4)), grid, (1, 1, 1, 4), align_corners=True)[0, 0, 0]
    array([0.5, 1. , 1. , 1. ])
    """
    backend, (values, grid) = _device.resolve(device, stream, values=values, grid=grid)
    dims, dtype, mode_code, padding_code, align = _checks.grid_push_args(
        values, grid, input_shape, mode, padding_mode, align_corners)
    return _push(backend, values, grid, dims, dtype, mode_code, padding_code, align, deterministic)


def _push(backend, values, grid, dims, dtype, mode_code, padding_code, align, deterministic):
    """Run the sampler backward's input gradient on an input of zeros: the
    push; its grid gradient, then all zeros, is dropped."""
    zeros = backend.zeros(dims, dtype)
    pushed, _ = _run_backward(backend.kernels.backward("grid_sample", len(dims) - 2, deterministic), backend, None,
                              values, zeros, grid, dtype, mode_code, padding_code, align, True)
    return pushed


def grid_push_backward(grad_output, values, grid, mode="bilinear", padding_mode="zeros", align_corners=False, *,
                       values_requires_grad=True, device=None, stream=None):
    """Gradients of :func:`grid_push` with respect to ``values`` and ``grid``.

    As the push is the adjoint of :func:`grid_sample`, ``⟨g, grid_push(v,
    grid)⟩ = ⟨v, grid_sample(g, grid)⟩``: the gradient of ``values`` is
    ``grid_sample(grad_output, grid)``, and that of ``grid`` is the grid
    gradient of :func:`grid_sample_backward` with ``grad_output`` as the
    input sampled and ``values`` as the output's gradient; exact, and
    deterministic on the CPU and the GPU.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the output of :func:`grid_push`
        (shape ``input_shape``).
    values, grid, mode, padding_mode, align_corners
        As given to :func:`grid_push`.
    values_requires_grad : bool, optional
        If False, the gradient of ``values`` is not computed and None is
        returned in its place. Default True.
    device, stream
        As in :func:`grid_sample`.

    Returns
    -------
    grad_values : ndarray or None
        Same shape and dtype as ``values``.
    grad_grid : ndarray
        Same shape and dtype as ``grid``; zeros for mode="nearest".
    """
    backend, (grad_output, values, grid) = _device.resolve(
        device, stream, grad_output=grad_output, values=values, grid=grid)
    pushed_shape = _checks.pushed_gradient(grad_output, values.shape, "the output of grid_push")
    dims, dtype, mode_code, padding_code, align = _checks.grid_push_args(
        values, grid, pushed_shape, mode, padding_mode, align_corners)
    dtype = _checks.same_dtype(grad_output=grad_output, values=values)
    grad_values = None
    if values_requires_grad:
        grad_values = _run_forward(backend.kernels.grid_sample[len(dims) - 2], backend, grad_output, grid,
                                   tuple(values.shape), dtype, mode_code, padding_code, align)
    _, grad_grid = _run_backward(backend.kernels.grid_sample_backward[len(dims) - 2], backend, None, values,
                                 grad_output, grid, dtype, mode_code, padding_code, align, False)
    return grad_values, grad_grid


def grid_count(grid, input_shape, mode="bilinear", padding_mode="zeros", align_corners=False, *,
               deterministic=False, device=None, stream=None):
    """The weight each input pixel receives from the points of ``grid``: the
    :func:`grid_push` of ones (MONAI's ``grid_count``).

    Where sampling at ``grid`` reads every pixel once with full weight, the
    count is 1; a pixel the points skip counts 0, one they crowd counts more
    (the density of a splat, or the normaliser that turns a push into a
    weighted average).

    Parameters
    ----------
    grid : array_like, float32 or float64
        (N, H_out, W_out, 2) or (N, D_out, H_out, W_out, 3), as in :func:`grid_sample`.
    input_shape : sequence of int
        (N, C, H, W) or (N, C, D, H, W), as in :func:`grid_push`; the count is
        the same for every channel, so C is not used.
    mode, padding_mode, align_corners, deterministic, device, stream
        As in :func:`grid_push`.

    Returns
    -------
    count : ndarray, shape (N, 1, H, W) or (N, 1, D, H, W), dtype of ``grid``

    See Also
    --------
    grid_count_backward : the gradient with respect to ``grid``.
    """
    backend, (grid,) = _device.resolve(device, stream, grid=grid)
    dims, ones, dtype, mode_code, padding_code, align = _count_args(backend, grid, input_shape, mode,
                                                                    padding_mode, align_corners)
    return _push(backend, ones, grid, dims, dtype, mode_code, padding_code, align, deterministic)


def _count_args(backend, grid, input_shape, mode, padding_mode, align_corners):
    """Validate the arguments of `grid_count` (and its backward); return
    (count shape, values of ones, dtype, mode code, padding code, align)."""
    dims = _checks.size(input_shape, name="input_shape")
    if len(grid.shape) != len(dims) or grid.shape[0] != dims[0]:
        raise ValueError(f"grid must have {len(dims)} dimensions and input_shape's batch size ({dims[0]}) "
                         f"for input_shape {dims}, got shape {tuple(grid.shape)}")
    dtype = _checks.float_dtype(grid, "grid")
    ones = backend.full((dims[0], 1) + tuple(grid.shape[1:-1]), 1, dtype)
    dims, dtype, mode_code, padding_code, align = _checks.grid_push_args(
        ones, grid, (dims[0], 1) + dims[2:], mode, padding_mode, align_corners)
    return dims, ones, dtype, mode_code, padding_code, align


def grid_count_backward(grad_output, grid, mode="bilinear", padding_mode="zeros", align_corners=False, *,
                        device=None, stream=None):
    """Gradient of :func:`grid_count` with respect to ``grid``
    (:func:`grid_push_backward` with values of ones).

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the count, (N, 1, H, W) or (N, 1, D, H, W).
    grid, mode, padding_mode, align_corners, device, stream
        As given to :func:`grid_count`.

    Returns
    -------
    grad_grid : ndarray
        Same shape and dtype as ``grid``; zeros for mode="nearest".
    """
    backend, (grad_output, grid) = _device.resolve(device, stream, grad_output=grad_output, grid=grid)
    _checks.ndim(grid, "grid", (4, 5), "(N, H_out, W_out, 2) or (N, D_out, H_out, W_out, 3)")
    counted_shape = _checks.pushed_gradient(grad_output, (grid.shape[0], 1) + tuple(grid.shape[1:-1]),
                                            "the output of grid_count")
    dims, ones, dtype, mode_code, padding_code, align = _count_args(backend, grid, counted_shape, mode,
                                                                    padding_mode, align_corners)
    dtype = _checks.same_dtype(grad_output=grad_output, grid=grid)
    _, grad_grid = _run_backward(backend.kernels.grid_sample_backward[len(dims) - 2], backend, None, ones,
                                 grad_output, grid, dtype, mode_code, padding_code, align, False)
    return grad_grid
