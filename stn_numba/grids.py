"""Grid generators: part 2 of a spatial transformer (Jaderberg et al., 2015, §3.2).

A grid generator maps every output pixel (x_t, y_t) to the source point
(x_s, y_s) = A_θ (x_t, y_t, 1)ᵀ at which the sampler reads the input. Grids hold
normalised coordinates: -1 and +1 are the input's edges (align_corners=False)
or its corner pixels' centres (align_corners=True), exactly as in
``torch.nn.functional.affine_grid``.

Every function validates its arguments, picks the CPU or CUDA kernel
(:mod:`stn_numba._device`) and calls it; nothing else happens here.

GPU arrays (numba device arrays, CuPy arrays, torch CUDA tensors) are used in
place and give numba device arrays, which ``cupy.asarray(grid)`` and
``torch.as_tensor(grid, device="cuda")`` view without a copy (through
``__cuda_array_interface__``); see :mod:`stn_numba.sampling`.
"""

from . import _checks, _device, _tps


def _parameter_gradient(backend, grad_grid, shape, dtype):
    """The array of a grid backward's parameter gradient: the kernel overwrites it, and without points
    (``grad_grid`` empty, no kernel runs) it is zero."""
    return (backend.empty if grad_grid.size else backend.zeros)(shape, dtype)


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
    key = _device.remembered_key("affine_grid", device, stream, (theta,), size, align_corners)
    grid = _device.run_remembered(key, theta)
    if grid is not None:
        return grid
    backend, (theta,) = _device.resolve(device, stream, theta=theta)
    _checks.ndim(theta, "theta", (3,), "a 3-D array (N, 2, 3) or (N, 3, 4)")
    dims = _checks.size(size)
    dtype = _checks.theta_for_size(theta, dims)
    align = _checks.align_corners(align_corners)
    spatial = len(dims) - 2
    kernel = backend.kernels.affine_grid[spatial]
    grid = backend.empty((dims[0],) + dims[2:] + (spatial,), dtype)
    if grid.size:
        kernel(backend.contiguous(theta, dtype), grid, align)
        if key is not None and theta.dtype == dtype:
            _device.remember(key, backend.runner(kernel, (grid.shape,), dtype, align))
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
    grad_theta = _parameter_gradient(backend, grad_grid, (dims[0], spatial, spatial + 1), dtype)
    if grad_grid.size:
        kernel = backend.kernels.affine_grid_backward[spatial]
        kernel(backend.contiguous(grad_grid, dtype), grad_theta, align)
    return grad_theta


# ------------------------------------------------------------- projective grid
def projective_grid(theta, size, align_corners=False, *, device=None, stream=None):
    """Generate the sampling grid of a batch of projective transforms (homographies).

    The paper's 8-parameter projective transformation (Jaderberg et al.,
    2015, §3.2) is the 3×3 matrix H with ``h33 = 1``; pass it whole. Each
    output pixel with normalised base coordinates (x, y) (those of
    :func:`affine_grid`) samples the source point

    ``(x_s, y_s) = (h11 x + h12 y + h13, h21 x + h22 y + h23) / w``,
    ``w = h31 x + h32 y + h33``.

    With ``h31 = h32 = 0`` and ``h33 = 1`` this is ``affine_grid(H[:, :2])``.

    Parameters
    ----------
    theta : array_like, float32 or float64
        Homographies H, shape (N, 3, 3).
    size : sequence of int
        Target output size (N, C, H, W); 2-D only.
    align_corners : bool, optional
        As in :func:`affine_grid`.
    device, stream
        As in :func:`affine_grid`.

    Returns
    -------
    grid : ndarray, shape (N, H, W, 2), dtype of ``theta``

    See Also
    --------
    projective_grid_backward : the gradient with respect to ``theta``.

    Notes
    -----
    Where ``|w| < 2**-20`` (near the homography's horizon line, where the
    source point goes to infinity), ``w`` is replaced by ``±2**-20`` with its
    sign (0 counts as positive). Those points get huge but finite
    coordinates, which the samplers treat as far outside (zeros padding reads
    0, border the nearest edge); a finite ``theta`` never gives NaN or Inf,
    unless ``h · (x, y, 1)`` itself overflows the dtype. The threshold is
    absolute, which is meaningful for the paper's scale ``h33 = 1``; it is
    exact in float32 and float64. There is no torch counterpart.
    """
    backend, (theta,) = _device.resolve(device, stream, theta=theta)
    dims = _checks.size_2d(size, "projective_grid")
    dtype = _checks.shape_for(theta, "theta", (dims[0], 3, 3), "N homographies")
    align = _checks.align_corners(align_corners)
    grid = backend.empty((dims[0], dims[2], dims[3], 2), dtype)
    if grid.size:
        backend.kernels.projective_grid(backend.contiguous(theta, dtype), grid, align)
    return grid


def projective_grid_backward(grad_grid, theta, size, align_corners=False, *, device=None, stream=None):
    """Gradient of :func:`projective_grid` with respect to ``theta``.

    The exact vector-Jacobian product by the quotient rule: with
    ``p = (x, y, 1)`` and the source point ``s = (x_s, y_s)``,
    ``d s_i / d h_ij = p_j / w`` for the rows i = 1, 2 and
    ``d s / d h_3j = -s p_j / w``. Where ``w`` was clamped (see
    :func:`projective_grid`) the clamped ``w`` is constant, so the third row
    gets nothing from that pixel; every gradient stays finite.

    Parameters
    ----------
    grad_grid : array_like, float32 or float64
        Gradient of the loss with respect to the grid, shape (N, H, W, 2).
    theta : array_like
        The homographies given to :func:`projective_grid`, same dtype.
    size, align_corners, device, stream
        As given to :func:`projective_grid`.

    Returns
    -------
    grad_theta : ndarray, shape (N, 3, 3), dtype of ``grad_grid``
    """
    backend, (grad_grid, theta) = _device.resolve(device, stream, grad_grid=grad_grid, theta=theta)
    dims = _checks.size_2d(size, "projective_grid_backward")
    _checks.shape_for(theta, "theta", (dims[0], 3, 3), "N homographies")
    _checks.grad_grid_for(grad_grid, dims)
    dtype = _checks.same_dtype(grad_grid=grad_grid, theta=theta)
    align = _checks.align_corners(align_corners)
    grad_theta = _parameter_gradient(backend, grad_grid, (dims[0], 3, 3), dtype)
    if grad_grid.size:
        kernel = backend.kernels.projective_grid_backward
        kernel(backend.contiguous(grad_grid, dtype), backend.contiguous(theta, dtype), grad_theta, align)
    return grad_theta


# ---------------------------------------------------------- thin-plate spline
def tps_control_points(control_points=(4, 4)):
    """The control points of a thin-plate spline grid, in normalised (x, y) coordinates.

    Parameters
    ----------
    control_points : (int, int) or array_like, optional
        ``(rows, columns)``: a regular grid of ``rows × columns`` points
        spanning [-1, 1]² (corners included), listed row by row, so point
        ``r * columns + c`` is ``(linspace(-1, 1, columns)[c],
        linspace(-1, 1, rows)[r])``. Default (4, 4), 16 points. Or an explicit
        (K, 2) array of (x, y) points: at least 3, distinct, not all on one
        line.

    Returns
    -------
    points : ndarray, shape (K, 2), float64
        A new array. It is also the identity ``theta`` of :func:`tps_grid`.
    """
    spec = _checks.control_points(control_points)
    return _tps.regular_control_points(*spec) if isinstance(spec, tuple) else spec


def _tps_arguments(size, control_points, align_corners, op):
    """Validate the arguments shared by the TPS functions; return (dims, control points (K, 2), align_corners)."""
    dims = _checks.size_2d(size, op)
    points = tps_control_points(control_points)
    return dims, points, _checks.align_corners(align_corners)


def tps_grid(theta, size, control_points=(4, 4), align_corners=False, *, device=None, stream=None):
    """Generate the sampling grid of a batch of thin-plate spline transforms.

    The paper's thin-plate spline transformation (Jaderberg et al., 2015,
    §3.2 and §4.1): K control points ``c_k`` on the output (see
    :func:`tps_control_points`); ``theta[n, k]`` is where the localisation
    network puts control point k in the source image. The grid is Bookstein's
    thin-plate spline that maps each ``c_k`` exactly to ``theta[n, k]`` and
    bends least in between:
    ``f(p) = a_0 + a_1 x + a_2 y + Σ_k w_k U(|p - c_k|)``, with the radial
    basis ``U(r) = r² log r²`` (``U(0) = 0``; any constant multiple of U gives
    the same spline). ``theta = tps_control_points(control_points)`` is the
    identity: the grid equals :func:`affine_grid` of the identity.

    Parameters
    ----------
    theta : array_like, float32 or float64
        Source positions of the control points, shape (N, K, 2), (x, y) last.
    size : sequence of int
        Target output size (N, C, H, W); 2-D only.
    control_points : (int, int) or array_like, optional
        As in :func:`tps_control_points`; default (4, 4), so K = 16.
    align_corners : bool, optional
        As in :func:`affine_grid`: where the pixels lie relative to the
        control points' [-1, 1] square.
    device, stream
        As in :func:`affine_grid`.

    Returns
    -------
    grid : ndarray, shape (N, H, W, 2), dtype of ``theta``

    See Also
    --------
    tps_grid_backward : the gradient with respect to ``theta``.

    Notes
    -----
    The spline is linear in ``theta``: ``grid[n] = M @ theta[n]`` with an
    (H·W, K) matrix M that depends only on the configuration (H, W, control
    points, align_corners, dtype). M is computed once with
    ``scipy.linalg.solve`` in float64 on the host and cached (16
    configurations, least recently used first out). On the CPU it is applied
    with BLAS (``np.matmul``), which ran several times faster than Numba loops;
    OpenBLAS keeps each product's reduction on one thread, so the backward is
    bitwise identical for any thread count (a BLAS without that property, such
    as MKL without ``MKL_CBWR``, may differ in the last bits). On the GPU, M
    is copied to the device on every call. There is no torch counterpart.
    """
    backend, (theta,) = _device.resolve(device, stream, theta=theta)
    dims, points, align = _tps_arguments(size, control_points, align_corners, "tps_grid")
    dtype = _checks.shape_for(theta, "theta", (dims[0], len(points), 2), "the source point of each control point")
    grid = backend.empty((dims[0], dims[2], dims[3], 2), dtype)
    if grid.size:
        matrix = backend.as_array(_tps.matrix(dims[2], dims[3], points, align, dtype), "matrix")
        kernel = backend.kernels.tps_grid
        kernel(matrix, backend.contiguous(theta, dtype), grid.reshape(dims[0], dims[2] * dims[3], 2))
    return grid


def tps_grid_backward(grad_grid, size, control_points=(4, 4), align_corners=False, *, device=None, stream=None):
    """Gradient of :func:`tps_grid` with respect to ``theta``.

    The grid is ``M @ theta`` (see :func:`tps_grid`), so this is the exact
    ``grad_theta[n] = Mᵀ @ grad_grid[n]``.

    Parameters
    ----------
    grad_grid : array_like, float32 or float64
        Gradient of the loss with respect to the grid, shape (N, H, W, 2).
    size, control_points, align_corners, device, stream
        As given to :func:`tps_grid`.

    Returns
    -------
    grad_theta : ndarray, shape (N, K, 2), dtype of ``grad_grid``
    """
    backend, (grad_grid,) = _device.resolve(device, stream, grad_grid=grad_grid)
    dims, points, align = _tps_arguments(size, control_points, align_corners, "tps_grid_backward")
    dtype = _checks.grad_grid_for(grad_grid, dims)
    grad_theta = _parameter_gradient(backend, grad_grid, (dims[0], len(points), 2), dtype)
    if grad_grid.size:
        matrix = backend.as_array(_tps.matrix(dims[2], dims[3], points, align, dtype), "matrix")
        kernel = backend.kernels.tps_grid_backward
        kernel(matrix, backend.contiguous(grad_grid, dtype).reshape(dims[0], dims[2] * dims[3], 2), grad_theta)
    return grad_theta


# ------------------------------------------------- attention and similarity
ATTENTION_PARAMETERS = ("s", "tx", "ty")
SIMILARITY_PARAMETERS = ("s", "angle", "tx", "ty")


def _to_affine(kernel_of, params, names, device, stream, batch=None):
    """Validate (N, len(names)) ``params`` and convert them to (N, 2, 3)
    affine matrices with the kernel ``kernel_of(backend.kernels)``."""
    backend, (params,) = _device.resolve(device, stream, params=params)
    dtype = _checks.parameters(params, "params", names, batch)
    theta = backend.empty((params.shape[0], 2, 3), dtype)
    if params.shape[0]:
        kernel_of(backend.kernels)(backend.contiguous(params, dtype), theta)
    return theta


def _attention_kernel(kernels):
    return kernels.attention_to_affine


def _similarity_kernel(kernels):
    return kernels.similarity_to_affine


def attention_to_affine(params, *, device=None, stream=None):
    """Affine matrices of attention transforms: (s, tx, ty) → [[s, 0, tx], [0, s, ty]].

    The paper's attention transformation (Jaderberg et al., 2015, eq. (2)
    in §3.2): an isotropic scale and a translation, which crop and zoom.

    Parameters
    ----------
    params : array_like, float32 or float64
        Shape (N, 3): scale s and translation (tx, ty), in normalised
        coordinates. (1, 0, 0) is the identity.
    device, stream
        As in :func:`affine_grid`.

    Returns
    -------
    theta : ndarray, shape (N, 2, 3), dtype of ``params``
    """
    return _to_affine(_attention_kernel, params, ATTENTION_PARAMETERS, device, stream)


def attention_to_affine_backward(grad_theta, *, device=None, stream=None):
    """Gradient of ``attention_to_affine``: (g00 + g11, g02, g12) per row.

    The conversion is linear, so the parameters are not needed.

    Parameters
    ----------
    grad_theta : array_like, float32 or float64
        Gradient with respect to the affine matrices, shape (N, 2, 3).
    device, stream
        As in :func:`affine_grid`.

    Returns
    -------
    grad_params : ndarray, shape (N, 3), dtype of ``grad_theta``
    """
    backend, (grad_theta,) = _device.resolve(device, stream, grad_theta=grad_theta)
    _checks.ndim(grad_theta, "grad_theta", (3,), "a 3-D array (N, 2, 3)")
    dtype = _checks.shape_for(grad_theta, "grad_theta", (len(grad_theta), 2, 3), "N affine matrices")
    grad_params = backend.empty((len(grad_theta), 3), dtype)
    if len(grad_theta):
        backend.kernels.attention_to_affine_backward(backend.contiguous(grad_theta, dtype), grad_params)
    return grad_params


def similarity_to_affine(params, *, device=None, stream=None):
    """Affine matrices of similarity transforms: (s, angle, tx, ty) → [s R(angle) | (tx, ty)].

    ``theta = [[s cos a, -s sin a, tx], [s sin a, s cos a, ty]]``: scale,
    rotation and translation, the distortions of the rotated and RTS MNIST
    experiments (Jaderberg et al., 2015, §4.1). The rotation acts on the grid's (x, y), with y pointing
    down the image: a positive angle turns the sampling grid clockwise on
    screen, so the output shows the input turned counter-clockwise.

    Parameters
    ----------
    params : array_like, float32 or float64
        Shape (N, 4): scale s, angle in radians, translation (tx, ty) in
        normalised coordinates. (1, 0, 0, 0) is the identity.
    device, stream
        As in :func:`affine_grid`.

    Returns
    -------
    theta : ndarray, shape (N, 2, 3), dtype of ``params``
    """
    return _to_affine(_similarity_kernel, params, SIMILARITY_PARAMETERS, device, stream)


def similarity_to_affine_backward(grad_theta, params, *, device=None, stream=None):
    """Gradient of ``similarity_to_affine`` with respect to ``params``.

    With ``c = cos a``, ``t = sin a`` and ``g = grad_theta[n]``:
    ``d/ds = c (g00 + g11) + t (g10 - g01)``,
    ``d/da = s (c (g10 - g01) - t (g00 + g11))``, ``d/dtx = g02``,
    ``d/dty = g12``.

    Parameters
    ----------
    grad_theta : array_like, float32 or float64
        Gradient with respect to the affine matrices, shape (N, 2, 3).
    params : array_like
        The parameters given to ``similarity_to_affine``, same dtype.
    device, stream
        As in :func:`affine_grid`.

    Returns
    -------
    grad_params : ndarray, shape (N, 4), dtype of ``grad_theta``
    """
    backend, (grad_theta, params) = _device.resolve(device, stream, grad_theta=grad_theta, params=params)
    _checks.parameters(params, "params", SIMILARITY_PARAMETERS)
    _checks.shape_for(grad_theta, "grad_theta", (params.shape[0], 2, 3), "N affine matrices")
    dtype = _checks.same_dtype(grad_theta=grad_theta, params=params)
    grad_params = backend.empty(params.shape, dtype)
    if params.shape[0]:
        kernel = backend.kernels.similarity_to_affine_backward
        kernel(backend.contiguous(grad_theta, dtype), backend.contiguous(params, dtype), grad_params)
    return grad_params


def attention_grid(params, size, align_corners=False, *, device=None, stream=None):
    """Generate the sampling grid of a batch of attention transforms (scale + translation).

    ``affine_grid(attention_to_affine(params), size)``: the source point of
    base point (x, y) is ``(s x + tx, s y + ty)`` (Jaderberg et al., 2015,
    §3.2).

    Parameters
    ----------
    params : array_like, float32 or float64
        Shape (N, 3): (s, tx, ty), see ``attention_to_affine``.
    size : sequence of int
        Target output size (N, C, H, W); 2-D only.
    align_corners, device, stream
        As in :func:`affine_grid`.

    Returns
    -------
    grid : ndarray, shape (N, H, W, 2), dtype of ``params``
    """
    dims = _checks.size_2d(size, "attention_grid")
    theta = _to_affine(_attention_kernel, params, ATTENTION_PARAMETERS, device, stream, dims[0])
    return affine_grid(theta, dims, align_corners, device=device, stream=stream)


def attention_grid_backward(grad_grid, size, align_corners=False, *, device=None, stream=None):
    """Gradient of :func:`attention_grid` with respect to ``params``, shape (N, 3).

    The map is linear in the parameters, so they are not needed: this is
    ``attention_to_affine_backward(affine_grid_backward(grad_grid, size))``.
    """
    _checks.size_2d(size, "attention_grid_backward")
    grad_theta = affine_grid_backward(grad_grid, size, align_corners, device=device, stream=stream)
    return attention_to_affine_backward(grad_theta, device=device, stream=stream)


def similarity_grid(params, size, align_corners=False, *, device=None, stream=None):
    """Generate the sampling grid of a batch of similarity transforms (scale, rotation, translation).

    ``affine_grid(similarity_to_affine(params), size)``: the source point of
    base point (x, y) is ``s R(angle) (x, y) + (tx, ty)``.

    Parameters
    ----------
    params : array_like, float32 or float64
        Shape (N, 4): (s, angle, tx, ty), see ``similarity_to_affine``.
    size : sequence of int
        Target output size (N, C, H, W); 2-D only.
    align_corners, device, stream
        As in :func:`affine_grid`.

    Returns
    -------
    grid : ndarray, shape (N, H, W, 2), dtype of ``params``
    """
    dims = _checks.size_2d(size, "similarity_grid")
    theta = _to_affine(_similarity_kernel, params, SIMILARITY_PARAMETERS, device, stream, dims[0])
    return affine_grid(theta, dims, align_corners, device=device, stream=stream)


def similarity_grid_backward(grad_grid, params, size, align_corners=False, *, device=None, stream=None):
    """Gradient of :func:`similarity_grid` with respect to ``params``, shape (N, 4).

    ``similarity_to_affine_backward(affine_grid_backward(grad_grid, size), params)``,
    exact: the chain rule through the conversion.
    """
    dims = _checks.size_2d(size, "similarity_grid_backward")
    _, (grad_grid, params) = _device.resolve(device, stream, grad_grid=grad_grid, params=params)
    _checks.parameters(params, "params", SIMILARITY_PARAMETERS, dims[0])
    _checks.same_dtype(grad_grid=grad_grid, params=params)
    grad_theta = affine_grid_backward(grad_grid, dims, align_corners, device=device, stream=stream)
    return similarity_to_affine_backward(grad_theta, params, device=device, stream=stream)
