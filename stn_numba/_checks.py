"""Argument validation shared by every public function.

Each check raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right
kind, wrong value) with a message that names the argument, what was expected
and what was given, so no bad input ever reaches a kernel.
"""

import numbers
import operator

import numpy as np

from . import _codes

# Spatial rank (2 or 3) -> (theta shape without N, grid component count).
_THETA_SHAPES = {2: (2, 3), 3: (3, 4)}


def _describe(value):
    """A short description of ``value`` for error messages."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"


_NATIVE_FLOATS = {np.dtype(np.float32), np.dtype(np.float64)}


def float_dtype(array, name):
    """Return the dtype of ``array``, which must be float32 or float64."""
    dtype = array.dtype
    if dtype in _NATIVE_FLOATS:
        return dtype  # the common case, without the conversions below
    dtype = np.dtype(dtype)
    if dtype.kind != "f" or dtype.itemsize not in (4, 8):
        raise TypeError(f"{name} must have dtype float32 or float64, got {dtype}")
    return dtype.newbyteorder("=")


def same_dtype(**arrays):
    """Return the common float dtype of ``arrays``; mixing float32 and float64 is refused."""
    first, *rest = arrays.values()
    dtype = first.dtype
    if dtype in _NATIVE_FLOATS:
        for array in rest:
            if array.dtype != dtype:
                break
        else:
            return dtype  # the common case
    dtypes = {name: float_dtype(array, name) for name, array in arrays.items()}
    if len(set(dtypes.values())) > 1:
        given = ", ".join(f"{name} is {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"{', '.join(dtypes)} must share one dtype (float32 or float64), but {given}")
    return next(iter(dtypes.values()))


def ndim(array, name, allowed, what):
    """Check that ``array.ndim`` is one of ``allowed``; ``what`` describes the layout."""
    if array.ndim not in allowed:
        raise ValueError(f"{name} must be {what}, got {_describe(array)}")


def align_corners(value):
    """Return ``align_corners`` as a bool; None means False, as in torch."""
    if value is None:
        return False
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"align_corners must be True or False, got {_describe(value)}")


def mode(value):
    """Return the integer code of an interpolation ``mode`` (bicubic on 5-D
    input is tricubic)."""
    if not isinstance(value, str) or value not in _codes.MODES:
        raise ValueError(f"mode must be one of {sorted(_codes.MODES)}, got {value!r}")
    return _codes.MODES[value]


def padding_mode(value):
    """Return the integer code of a ``padding_mode``."""
    if not isinstance(value, str) or value not in _codes.PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {sorted(_codes.PADDING_MODES)}, got {value!r}")
    return _codes.PADDING_MODES[value]


def fill_value(value, padding_code):
    """Return ``fill_value`` as a float: any real number with
    ``padding_mode="constant"``, only 0 with the other paddings (which read
    no fill)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"fill_value must be a real number, got {_describe(value)}")
    value = float(value)
    if padding_code != _codes.CONSTANT and value != 0.0:
        name = next(name for name, code in _codes.PADDING_MODES.items() if code == padding_code)
        raise ValueError(f"fill_value applies only to padding_mode='constant', got fill_value={value!r} with "
                         f"padding_mode={name!r}")
    return value


def size(value, spatial_dims=None, name="size"):
    """Return ``size`` (N, C, H, W) or (N, C, D, H, W) as a tuple of non-negative ints
    (``name``: the argument's, for errors)."""
    lengths = (4, 5) if spatial_dims is None else (spatial_dims + 2,)
    if type(value) is tuple and len(value) in lengths:
        for d in value:
            if type(d) is not int or d < 0:
                break
        else:
            return value  # the common case: a tuple of Python ints
    try:
        dims = tuple(operator.index(d) for d in value)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints (N, C, H, W) or (N, C, D, H, W), "
                        f"got {value!r}") from None
    if len(dims) not in (4, 5):
        raise ValueError(f"{name} must have 4 (N, C, H, W) or 5 (N, C, D, H, W) entries, got {len(dims)}: {dims}")
    if spatial_dims is not None and len(dims) != spatial_dims + 2:
        raise ValueError(f"{name} must have {spatial_dims + 2} entries to match, got {dims}")
    if any(d < 0 for d in dims):
        raise ValueError(f"{name} must not contain negative entries, got {dims}")
    return dims


def theta_for_size(theta, dims):
    """Check that ``theta`` is (N, 2, 3) for a 4-entry size or (N, 3, 4) for a 5-entry size."""
    expected = (dims[0],) + _THETA_SHAPES[len(dims) - 2]
    if tuple(theta.shape) != expected:
        raise ValueError(f"theta must have shape {expected} for size {dims}, got {_describe(theta)}")
    return float_dtype(theta, "theta")


def sampler_options(mode_name, padding_name, align, spatial):
    """(mode code, padding code, align_corners) of valid sampler options."""
    if align is None or type(align) is bool:  # not 1 or 1.0, which equal True as keys
        try:
            return _VALID_OPTIONS[mode_name, padding_name, align, spatial]  # the common case
        except (KeyError, TypeError):  # unknown, or unhashable
            pass
    return mode(mode_name), padding_mode(padding_name), align_corners(align)


# Every valid (mode, padding_mode, align_corners, spatial dims) -> codes.
_VALID_OPTIONS = {
    (mode_name, padding_name, align, spatial): (code, padding_code, bool(align))
    for mode_name, code in _codes.MODES.items() for padding_name, padding_code in _codes.PADDING_MODES.items()
    for align in (False, True, None) for spatial in (2, 3)
}


def grid_sample_args(input, grid, mode_name, padding_name, align):
    """Validate ``grid_sample`` arguments; return (dtype, mode code, padding code, align_corners)."""
    # plain comparisons, with the helpers only on the way to an error: a small call's fixed cost counts
    shape, grid_shape = input.shape, grid.shape  # (no negative indices: the CUDA simulator's shapes refuse them)
    rank = len(shape)
    if rank != 4 and rank != 5:
        ndim(input, "input", (4, 5), "4-D (N, C, H, W) or 5-D (N, C, D, H, W)")
    spatial = rank - 2
    if len(grid_shape) != rank or grid_shape[spatial + 1] != spatial:
        layout = "(N, H_out, W_out, 2)" if spatial == 2 else "(N, D_out, H_out, W_out, 3)"
        raise ValueError(f"grid must have shape {layout} for {rank}-D input, got {_describe(grid)}")
    if grid_shape[0] != shape[0]:
        raise ValueError(f"grid and input must have the same batch size, got {grid_shape[0]} and {shape[0]}")
    if 0 in shape[2:]:
        raise ValueError(f"input must have non-empty spatial dimensions, got {_describe(input)}")
    dtype = input.dtype
    if dtype not in _NATIVE_FLOATS or grid.dtype != dtype:
        dtype = same_dtype(input=input, grid=grid)
    return (dtype, *sampler_options(mode_name, padding_name, align, spatial))


def grad_output_for(grad_output, input, grid):
    """Check that ``grad_output`` has the shape grid_sample(input, grid) returns."""
    expected = tuple(input.shape[:2]) + tuple(grid.shape[1:-1])
    if tuple(grad_output.shape) != expected:
        raise ValueError(f"grad_output must have shape {expected} (the output of grid_sample), "
                         f"got {_describe(grad_output)}")


def grad_grid_for(grad_grid, dims):
    """Check that ``grad_grid`` has the shape affine_grid(theta, size) returns."""
    expected = (dims[0],) + dims[2:] + (len(dims) - 2,)
    if tuple(grad_grid.shape) != expected:
        raise ValueError(f"grad_grid must have shape {expected} for size {dims}, got {_describe(grad_grid)}")
    return float_dtype(grad_grid, "grad_grid")


def size_2d(value, op):
    """Return ``size`` (N, C, H, W) for ``op``, which supports 2-D grids only."""
    dims = size(value)
    if len(dims) != 4:
        raise ValueError(f"size must have 4 entries (N, C, H, W): {op} makes 2-D grids only, got {dims}")
    return dims


def shape_for(array, name, expected, what):
    """Check that ``array`` has shape ``expected`` (``what`` explains it); return its float dtype."""
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)} ({what}), got {_describe(array)}")
    return float_dtype(array, name)


def control_points(value):
    """Thin-plate spline control points: (rows, columns) ints, or a (K, 2) array of (x, y) points.

    Returns the (rows, columns) tuple, each at least 2, or the points as a
    float64 (K, 2) array of at least 3 finite, distinct points not all on one
    line (else the spline's linear system is singular).
    """
    expected = "control_points must be (rows, columns) or a (K, 2) array of (x, y) points"
    try:
        rank = np.ndim(value)
    except ValueError:  # a ragged nested sequence
        raise ValueError(f"{expected}, got the ragged sequence {value!r}") from None
    if rank == 0 or isinstance(value, (str, bytes)):
        raise TypeError(f"{expected}, got {_describe(value)}")
    if rank == 1:
        try:
            grid = tuple(operator.index(d) for d in value)
        except TypeError:
            raise TypeError(f"control_points (rows, columns) must be ints, got {value!r}") from None
        if len(grid) != 2 or min(grid) < 2:
            raise ValueError(f"control_points (rows, columns) must be 2 ints, each at least 2, got {grid}")
        return grid
    try:
        points = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{expected}, got {_describe(value)}") from None
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < 3:
        raise ValueError(f"{expected}, at least 3 of them, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("control_points must be finite, got NaN or Inf")
    if len(np.unique(points, axis=0)) != len(points):
        raise ValueError("control_points must be distinct, got repeated points")
    if np.linalg.matrix_rank(np.column_stack([np.ones(len(points)), points])) < 3:
        raise ValueError("control_points must not all lie on one line (the thin-plate spline is then undefined)")
    return points


def parameters(params, name, names, batch=None):
    """Check that ``params`` is (N, len(names)), with N == ``batch`` if given; return its float dtype."""
    layout = f"({', '.join(names)})"
    ndim(params, name, (2,), f"a 2-D array (N, {len(names)}) of rows {layout}")
    rows = params.shape[0] if batch is None else batch
    return shape_for(params, name, (rows, len(names)), f"rows {layout}")


def affine_grid_sample_args(input, theta, size_value, mode_name, padding_name, align):
    """Validate ``affine_grid_sample`` arguments; return (dims, dtype, mode code, padding code, align_corners)."""
    shape = input.shape  # (plain comparisons first, as in `grid_sample_args`)
    rank = len(shape)
    if rank != 4 and rank != 5:
        ndim(input, "input", (4, 5), "4-D (N, C, H, W) or 5-D (N, C, D, H, W)")
    if len(theta.shape) != 3:
        ndim(theta, "theta", (3,), "a 3-D array (N, 2, 3) or (N, 3, 4)")
    dims = size(size_value)
    if len(dims) != rank:
        raise ValueError(f"size must have {rank} entries (N, C, ...output spatial size) for "
                         f"{rank}-D input, got {dims}")
    if dims[0] != shape[0] or dims[1] != shape[1]:
        axis, what = (0, "batch size N") if dims[0] != shape[0] else (1, "channel count C")
        raise ValueError(f"size[{axis}] must be input's {what} ({shape[axis]}), got size {dims}")
    if theta.shape != (dims[0],) + _THETA_SHAPES[rank - 2]:
        theta_for_size(theta, dims)  # raises, naming what was expected
    if 0 in shape[2:]:
        raise ValueError(f"input must have non-empty spatial dimensions, got {_describe(input)}")
    dtype = input.dtype
    if dtype not in _NATIVE_FLOATS or theta.dtype != dtype:
        dtype = same_dtype(input=input, theta=theta)
    return (dims, dtype, *sampler_options(mode_name, padding_name, align, rank - 2))


def grid_push_args(values, grid, input_shape, mode_name, padding_name, align):
    """Validate ``grid_push`` arguments; return (dims, dtype, mode code,
    padding code, align_corners), ``dims`` the shape of the pushed image."""
    rank = len(values.shape)
    if rank != 4 and rank != 5:
        ndim(values, "values", (4, 5), "4-D (N, C, H_out, W_out) or 5-D (N, C, D_out, H_out, W_out)")
    spatial = rank - 2
    grid_shape = tuple(grid.shape)
    if len(grid_shape) != rank or grid_shape[spatial + 1] != spatial:
        layout = "(N, H_out, W_out, 2)" if spatial == 2 else "(N, D_out, H_out, W_out, 3)"
        raise ValueError(f"grid must have shape {layout} for {rank}-D values, got {_describe(grid)}")
    expected = (grid_shape[0], values.shape[1]) + grid_shape[1:-1]
    if tuple(values.shape) != expected:
        raise ValueError(f"values must have shape {expected} (N and the spatial size of grid), "
                         f"got {_describe(values)}")
    dims = size(input_shape, spatial, "input_shape")
    if dims[:2] != expected[:2]:
        raise ValueError(f"input_shape must start with the (N, C) of values, {expected[:2]}, got {dims}")
    if 0 in dims[2:]:
        raise ValueError(f"input_shape must have non-empty spatial dimensions, got {dims}")
    dtype = same_dtype(values=values, grid=grid)
    options = sampler_options(mode_name, padding_name, align, spatial)
    if options[1] == _codes.CONSTANT:
        raise ValueError("padding_mode='constant' has no push: sampling with a fill is affine in the input, not "
                         "linear, and the adjoint of its linear part is the push with padding_mode='zeros'")
    return (dims, dtype, *options)


def pushed_gradient(grad_output, values_shape, what):
    """Check that ``grad_output`` can be the gradient of a push of values of
    ``values_shape``: its (N, C), then a non-empty spatial size of the same
    rank; return its shape. ``what`` names the op's output."""
    expected = tuple(values_shape[:2])
    shape = tuple(grad_output.shape)
    if len(shape) != len(values_shape) or shape[:2] != expected or 0 in shape[2:]:
        raise ValueError(f"grad_output must have shape {expected} + a non-empty {len(values_shape) - 2}-D "
                         f"spatial size ({what}), got {_describe(grad_output)}")
    return shape


def warp_args(input, field, mode_name, padding_name, align, fill):
    """Validate ``warp`` arguments; return (dtype, mode code, padding code, align_corners, fill)."""
    ndim(input, "input", (4, 5), "4-D (N, C, H, W) or 5-D (N, C, D, H, W)")
    spatial = len(input.shape) - 2
    expected = (input.shape[0], spatial) + tuple(input.shape[2:])
    if tuple(field.shape) != expected:
        raise ValueError(f"displacement must have shape {expected} (N, a component per spatial axis, the input's "
                         f"spatial size), got {_describe(field)}")
    if 0 in input.shape[2:]:
        raise ValueError(f"input must have non-empty spatial dimensions, got {_describe(input)}")
    dtype = same_dtype(input=input, displacement=field)
    padding_code = padding_mode(padding_name)
    return dtype, mode(mode_name), padding_code, align_corners(align), fill_value(
        fill, padding_code)


def displacement(field, name="displacement"):
    """Check a displacement field, (N, 2, H, W) or (N, 3, D, H, W); return its float dtype."""
    shape = tuple(field.shape)
    if len(shape) not in (4, 5) or shape[1] != len(shape) - 2:
        raise ValueError(f"{name} must have shape (N, 2, H, W) or (N, 3, D, H, W) (a component per "
                         f"spatial axis), got {_describe(field)}")
    return float_dtype(field, name)
