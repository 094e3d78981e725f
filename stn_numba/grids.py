"""Grid generators: part 2 of a spatial transformer (Jaderberg et al., 2015, §3.2).

A grid generator maps every output pixel (x_t, y_t) to the source point
(x_s, y_s) = A_θ (x_t, y_t, 1)ᵀ at which the sampler reads the input. Grids hold
normalised coordinates: -1 and +1 are the input's edges (align_corners=False)
or its corner pixels' centres (align_corners=True), exactly as in
``torch.nn.functional.affine_grid``.

Every function validates its arguments, picks the CPU or CUDA kernel
(:mod:`stn_numba._device`) and calls it; nothing else happens here.
"""

from . import _checks, _device


def affine_grid(theta, size, align_corners=False, *, device=None, stream=None):
    """Generate the sampling grid of a batch of affine transforms.

    Same semantics as ``torch.nn.functional.affine_grid`` (PyTorch 2.x), on
    NumPy arrays (or GPU arrays, see ``device``).

    Parameters
    ----------
    theta : array_like, float32 or float64
        Affine matrices A_θ, shape (N, 2, 3) for 2-D or (N, 3, 4) for 3-D.
    size : sequence of int
        Target output size (N, C, H, W) or (N, C, D, H, W). Only N and the
        spatial sizes matter; C is accepted for torch compatibility.
    align_corners : bool, optional
        If True, -1 and +1 refer to the centres of the corner pixels; if False
        (default, as in torch) to the outer edges of the corner pixels.
    device : {None, "cpu", "cuda"}, optional
        None (default) runs where ``theta`` lives; "cuda" runs on the GPU and
        returns a GPU array.
    stream : numba CUDA stream, optional
        The stream for GPU work.

    Returns
    -------
    grid : ndarray, shape (N, H, W, 2) or (N, D, H, W, 3), dtype of ``theta``
        ``grid[n, h, w] = theta[n] @ (x_w, y_h, 1)``, the last axis ordered
        (x, y) or (x, y, z).

    See Also
    --------
    affine_grid_backward : the gradient with respect to ``theta``.
    stn_numba.grid_sample : samples an input at a grid.

    Notes
    -----
    Differences from torch: none in the values. torch's ``align_corners=None``
    (with a warning) is accepted here as False without a warning.

    Examples
    --------
    >>> import numpy as np
    >>> from stn_numba import affine_grid
    >>> identity = np.array([[[1, 0, 0], [0, 1, 0]]], dtype=np.float32)
    >>> affine_grid(identity, (1, 1, 2, 3), align_corners=True)[0, :, :, 0]
    array([[-1.,  0.,  1.],
           [-1.,  0.,  1.]], dtype=float32)
    """
    backend, (theta,) = _device.resolve(device, stream, theta=theta)
    _checks.ndim(theta, "theta", (3,), "a 3-D array (N, 2, 3) or (N, 3, 4)")
    dims = _checks.size(size)
    dtype = _checks.theta_for_size(theta, dims)
    align = _checks.align_corners(align_corners)
    spatial = len(dims) - 2
    grid = backend.empty((dims[0],) + dims[2:] + (spatial,), dtype)
    if grid.size:
        backend.kernel(f"affine_grid_{spatial}d")(backend.contiguous(theta, dtype), grid, align)
    return grid


def affine_grid_backward(grad_grid, size, align_corners=False, *, device=None, stream=None):
    """Gradient of :func:`affine_grid` with respect to ``theta``.

    ``affine_grid`` is linear in θ, so this is the exact vector-Jacobian
    product: ``grad_theta[n, i, j] = Σ_p grad_grid[n, p, i] · base[p, j]``,
    where ``base[p] = (x_p, y_p, 1)`` are the output pixels' normalised
    coordinates.

    Parameters
    ----------
    grad_grid : array_like, float32 or float64
        Gradient of the loss with respect to the grid, shape (N, H, W, 2) or
        (N, D, H, W, 3).
    size : sequence of int
        The ``size`` given to :func:`affine_grid`.
    align_corners : bool, optional
        As given to :func:`affine_grid`.
    device, stream
        As in :func:`affine_grid`.

    Returns
    -------
    grad_theta : ndarray, shape (N, 2, 3) or (N, 3, 4), dtype of ``grad_grid``
    """
    backend, (grad_grid,) = _device.resolve(device, stream, grad_grid=grad_grid)
    dims = _checks.size(size)
    dtype = _checks.grad_grid_for(grad_grid, dims)
    align = _checks.align_corners(align_corners)
    spatial = len(dims) - 2
    # The kernel overwrites grad_theta; with an empty grid it is zero.
    allocate = backend.empty if grad_grid.size else backend.zeros
    grad_theta = allocate((dims[0], spatial, spatial + 1), dtype)
    if grad_grid.size:
        kernel = backend.kernel(f"affine_grid_{spatial}d_backward")
        kernel(backend.contiguous(grad_grid, dtype), grad_theta, align)
    return grad_theta
