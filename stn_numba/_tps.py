"""The thin-plate spline's set-up, in NumPy on the host: control points and the spline as a matrix.

:func:`stn_numba.tps_grid` validates its arguments and calls
:func:`matrix` here; the kernels apply that matrix (``grid = M @ theta``).
Bookstein's interpolation system is solved in float64 with
``scipy.linalg.solve``, once per configuration (cached). Nothing here imports
the public layer: the output's base points are computed with the kernels' own
:func:`stn_numba._coords.affine_base_coordinate`, so they are bitwise those of
:func:`stn_numba.affine_grid` of the identity.
"""

import functools

import numpy as np

from ._coords import affine_base_coordinate


def _points_row_by_row(xs, ys):
    """The points (x, y) of the grid ``xs`` × ``ys``, shape (len(ys) * len(xs), 2), row by row."""
    ys, xs = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def regular_control_points(rows, columns):
    """A regular ``rows`` × ``columns`` grid of (x, y) points spanning [-1, 1]², corners included, row by row."""
    return _points_row_by_row(np.linspace(-1.0, 1.0, columns), np.linspace(-1.0, 1.0, rows))


def _base_points(height, width, align_corners):
    """The normalised base points (x, y) of an (H, W) output, shape (H*W, 2), float64, row by row."""

    def axis(size):
        return np.array([affine_base_coordinate(i, size, align_corners, np.float64(0)) for i in range(size)],
                        dtype=np.float64)

    return _points_row_by_row(axis(width), axis(height))


def _radial(squared_distance):
    """The thin-plate kernel U(r) = r² log r² of squared distances, with U(0) = 0."""
    safe = np.where(squared_distance > 0, squared_distance, 1.0)
    return np.where(squared_distance > 0, squared_distance * np.log(safe), 0.0)


def _squared_distances(a, b):
    return np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)


def matrix(height, width, control_points, align_corners, dtype):
    """M, shape (H*W, K), with ``grid = M @ theta``: the spline as a linear map of theta.

    Parameters
    ----------
    height, width : int
        The output's spatial size.
    control_points : ndarray, shape (K, 2), float64
        Validated control points (x, y), see :func:`stn_numba.tps_control_points`.
    align_corners : bool
    dtype : numpy.dtype
        The dtype of the returned matrix.

    Returns
    -------
    ndarray, shape (H*W, K), C-contiguous
        Cached per configuration (16 of them, least recently used first out):
        do not write to it.
    """
    return _cached_matrix(height, width, tuple(map(tuple, control_points.tolist())), align_corners, dtype)


@functools.lru_cache(maxsize=16)
def _cached_matrix(height, width, points, align_corners, dtype):
    """:func:`matrix`, with the control points a tuple of (x, y) pairs, so that they can be a cache key.

    Bookstein's interpolation system ``L [w; a] = [theta; 0]``, with
    ``L = [[U(|c_i - c_j|), P], [Pᵀ, 0]]`` and ``P`` the rows (1, x_k, y_k),
    gives ``f(p) = b(p) L⁻¹ [theta; 0]`` at a pixel with
    ``b(p) = (U(|p - c_k|)..., 1, x, y)``. With B the rows b(p) of all
    pixels and L symmetric, ``Mᵀ = (L⁻¹ Bᵀ)[:K]``: one scipy solve in float64.
    """
    control = np.array(points)
    count = len(control)
    system = np.zeros((count + 3, count + 3))
    system[:count, :count] = _radial(_squared_distances(control, control))
    system[:count, count] = 1.0
    system[:count, count + 1:] = control
    system[count:, :count] = system[:count, count:].T
    base = _base_points(height, width, align_corners)
    features = np.hstack([_radial(_squared_distances(base, control)), np.ones((len(base), 1)), base])
    import scipy.linalg  # here, not at module level: it doubles the import time of stn_numba

    coefficients = scipy.linalg.solve(system, features.T, assume_a="sym")
    return np.ascontiguousarray(coefficients[:count].T, dtype=dtype)
