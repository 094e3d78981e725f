"""Slow, obviously-right reference implementations of the core ops.

Everything here is written straight from the formulas, with explicit Python
loops and float64 math, for tiny shapes only. The tests compare the Numba
kernels with these functions, and ``test_reference_*`` tests compare these
functions with ``torch.nn.functional`` so that the reference itself is
trustworthy.

The sampler follows Jaderberg et al., "Spatial Transformer Networks" (2015):
eq. (1) for the affine grid and eqs. (5)-(7) for bilinear sampling,

    V = sum_n sum_m U_nm max(0, 1 - |x - m|) max(0, 1 - |y - n|),

with the padding mode applied to the coordinate (x, y) as torch does. Each
sampled value is a weighted sum of input pixels; :func:`sample_point_taps`
lists the (pixel, weight, d weight / d grid) triples of one sample point, and
forward, grad_input (the transpose: the same weights scattered) and grad_grid
(the weight derivatives) are all built from that one list.

Conventions are those of PyTorch 2.x, including the one-sided derivatives at
kinks: the derivative of ``max(0, 1 - |x - m|)`` is the right derivative, and
clipping or reflecting a coordinate that lands exactly on a border has
gradient 0. The non-finite rule of CONTRIBUTING.md replaces torch where torch
is inconsistent: a NaN component samples nothing, and an infinite coordinate
with border or reflection padding samples the nearest edge.
"""

import itertools
import math

import numpy as np

CUBIC_A = -0.75
MODES = ("bilinear", "nearest", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection")


# ----------------------------------------------------------------- affine grid
def base_coordinate(index, size, align_corners):
    """Normalised coordinate in [-1, 1] of pixel ``index`` on an axis of ``size`` pixels."""
    if size == 1:
        return 0.0
    if align_corners:
        return -1.0 + 2.0 * index / (size - 1)
    return (2.0 * index + 1.0) / size - 1.0


def _base_points(spatial, align_corners):
    """Yield (spatial index tuple, homogeneous base point [x, y, (z,) 1])."""
    for index in itertools.product(*(range(s) for s in spatial)):
        # spatial order is (D,) H, W; the point is x (W), y (H), (z (D)), 1.
        point = [base_coordinate(i, s, align_corners) for i, s in zip(index, spatial)]
        yield index, np.array(point[::-1] + [1.0])


def affine_grid(theta, size, align_corners=False):
    """Eq. (1): grid[n, ..., :] = theta[n] @ [x, y, (z,) 1] at every output pixel."""
    theta = np.asarray(theta, dtype=np.float64)
    n_batch, spatial = size[0], tuple(size[2:])
    grid = np.zeros((n_batch, *spatial, len(spatial)))
    for n in range(n_batch):
        for index, point in _base_points(spatial, align_corners):
            for row in range(len(spatial)):
                grid[(n, *index, row)] = sum(theta[n, row, j] * point[j] for j in range(len(point)))
    return grid


def affine_grid_backward(grad_grid, size, align_corners=False):
    """grad_theta[n, i, j] = sum over pixels of grad_grid[n, ..., i] * base_point[j]."""
    grad_grid = np.asarray(grad_grid, dtype=np.float64)
    n_batch, spatial = size[0], tuple(size[2:])
    k = len(spatial)
    grad_theta = np.zeros((n_batch, k, k + 1))
    for n in range(n_batch):
        for index, point in _base_points(spatial, align_corners):
            for i in range(k):
                for j in range(k + 1):
                    grad_theta[n, i, j] += grad_grid[(n, *index, i)] * point[j]
    return grad_theta


# ---------------------------------------------------------- coordinate helpers
def unnormalize(g, size, align_corners):
    """Pixel coordinate of grid value ``g`` and d(coordinate)/d(g)."""
    if align_corners:
        scale = (size - 1) / 2.0
        return (g + 1.0) * scale, scale
    scale = size / 2.0
    return ((g + 1.0) * size - 1.0) / 2.0, scale


def clip(x, size):
    """Clip to [0, size - 1]; the gradient is 0 where clipped and exactly on a border (torch)."""
    if x <= 0:
        return 0.0, 0.0
    if x >= size - 1:
        return float(size - 1), 0.0
    return x, 1.0


def reflect(x, twice_low, twice_high):
    """Reflect ``x`` about low and high until it lies between them; returns (value, d value/dx)."""
    if twice_low == twice_high:
        return 0.0, 0.0
    low = twice_low / 2.0
    span = (twice_high - twice_low) / 2.0
    sign = 1.0
    distance = x - low
    if distance < 0:
        sign, distance = -1.0, -distance
    extra = math.fmod(distance, span)
    flips = math.floor(distance / span)
    if math.fmod(flips, 2.0) == 0.0:
        return extra + low, sign
    return span - extra + low, -sign


def pad_coordinate(x, size, padding_mode, align_corners):
    """Apply the padding mode to a pixel coordinate; returns (coordinate, d/dx factor)."""
    if padding_mode == "zeros":
        return x, 1.0
    if math.isinf(x):  # the non-finite rule: the nearest edge
        return (0.0 if x < 0 else float(size - 1)), 0.0
    factor = 1.0
    if padding_mode == "reflection":
        if align_corners:
            x, factor = reflect(x, 0.0, 2.0 * (size - 1))
        else:
            x, factor = reflect(x, -1.0, 2.0 * size - 1.0)
    x, clip_factor = clip(x, size)
    return x, factor * clip_factor


def in_bounds(index, size):
    return 0 <= index < size


def linear_weight(x, m):
    """The bilinear kernel max(0, 1 - |x - m|) and its right derivative in x."""
    weight = max(0.0, 1.0 - abs(x - m))
    if m - 1 <= x < m:
        slope = 1.0
    elif m <= x < m + 1:
        slope = -1.0
    else:
        slope = 0.0
    return weight, slope


def cubic_weight(s):
    """Keys' cubic convolution kernel W(s) with A = -0.75, and dW/ds."""
    a, t = CUBIC_A, abs(s)
    sign = 1.0 if s >= 0 else -1.0
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1, sign * (3 * (a + 2) * t**2 - 2 * (a + 3) * t)
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, sign * (3 * a * t**2 - 10 * a * t + 8 * a)
    return 0.0, 0.0


def pad_tap(m, size, padding_mode, align_corners):
    """Pixel index read by bicubic tap ``m`` (padding applied per tap), or None for a zero."""
    if padding_mode == "zeros":
        return m if in_bounds(m, size) else None
    coordinate, _ = pad_coordinate(float(m), size, padding_mode, align_corners)
    return int(coordinate)


def axis_taps(g, size, mode, padding_mode, align_corners):
    """Taps of one grid component along one axis: [(pixel index, weight, d weight / d g)]."""
    x, scale = unnormalize(g, size, align_corners)
    if mode == "bicubic":
        if math.isinf(x):  # the non-finite rule: zeros reads nothing, else the nearest edge
            if padding_mode == "zeros":
                return []
            return [(0 if x < 0 else size - 1, 1.0, 0.0)]
        base = math.floor(x)
        t = x - base  # exact; x - m would round to 0 when |x| > 2**53
        taps = []
        for offset in (-1, 0, 1, 2):
            weight, slope = cubic_weight(t - offset)
            index = pad_tap(base + offset, size, padding_mode, align_corners)
            if index is not None:
                taps.append((index, weight, slope * scale))
        return taps
    x, factor = pad_coordinate(x, size, padding_mode, align_corners)
    if mode == "nearest":
        index = round(x) if math.isfinite(x) else None  # Python rounds half to even, like torch
        return [(index, 1.0, 0.0)] if index is not None and in_bounds(index, size) else []
    # bilinear: the sum over every in-bounds pixel m of max(0, 1 - |x - m|), eq. (6)
    taps = []
    for m in range(size):
        weight, slope = linear_weight(x, m)
        if weight != 0.0 or slope != 0.0:
            taps.append((m, weight, slope * factor * scale))
    return taps


def sample_point_taps(point, spatial, mode, padding_mode, align_corners):
    """Taps of one sample point: [(spatial index tuple, weight, d weight / d point)].

    ``point`` is in grid order (x, y, (z)); ``spatial`` in array order ((D,) H, W).
    The weight is the product of the per-axis weights.
    """
    if any(math.isnan(c) for c in point):  # the non-finite rule: NaN samples nothing
        return []
    k = len(spatial)
    # axis a of the array (0 = D or H) is read by grid component k - 1 - a
    per_axis = [axis_taps(point[k - 1 - a], spatial[a], mode, padding_mode, align_corners) for a in range(k)]
    taps = []
    for combo in itertools.product(*per_axis):
        index = tuple(t[0] for t in combo)
        weight = math.prod(t[1] for t in combo)
        d_point = np.zeros(k)
        for a in range(k):
            others = math.prod(t[1] for b, t in enumerate(combo) if b != a)
            d_point[k - 1 - a] = combo[a][2] * others
        taps.append((index, weight, d_point))
    return taps


def _sample_points(grid):
    """Yield (n, output index tuple, point) over every sample point of a grid."""
    for n in range(grid.shape[0]):
        for out_index in itertools.product(*(range(s) for s in grid.shape[1:-1])):
            yield n, out_index, grid[(n, *out_index)]


# -------------------------------------------------------------------- sampling
def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False):
    """output[n, c, p] = sum over taps of U[n, c, tap] * weight(tap), in float64."""
    input = np.asarray(input, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    spatial = input.shape[2:]
    output = np.zeros((input.shape[0], input.shape[1], *grid.shape[1:-1]))
    for n, out_index, point in _sample_points(grid):
        for index, weight, _ in sample_point_taps(point, spatial, mode, padding_mode, align_corners):
            for c in range(input.shape[1]):
                output[(n, c, *out_index)] += input[(n, c, *index)] * weight
    return output


def grid_sample_backward(grad_output, input, grid, mode="bilinear", padding_mode="zeros", align_corners=False):
    """(grad_input, grad_grid): the transpose of the forward, and the weights' derivatives."""
    grad_output = np.asarray(grad_output, dtype=np.float64)
    input = np.asarray(input, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    spatial = input.shape[2:]
    grad_input = np.zeros(input.shape)
    grad_grid = np.zeros(grid.shape)
    for n, out_index, point in _sample_points(grid):
        for index, weight, d_point in sample_point_taps(point, spatial, mode, padding_mode, align_corners):
            for c in range(input.shape[1]):
                upstream = grad_output[(n, c, *out_index)]
                grad_input[(n, c, *index)] += upstream * weight
                grad_grid[(n, *out_index)] += upstream * input[(n, c, *index)] * d_point
    return grad_input, grad_grid


# ------------------------------------------------------------ finite differences
def central_difference(function, x, eps=1e-6):
    """Gradient of the scalar ``function(x)`` w.r.t. the float64 array ``x``, by central differences."""
    x = np.array(x, dtype=np.float64)
    gradient = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + eps
        plus = function(x.copy())
        x[i] = saved - eps
        minus = function(x.copy())
        x[i] = saved
        gradient[i] = (plus - minus) / (2.0 * eps)
    return gradient


# ------------------------------------------------------------------ torch oracle
def torch_affine_grid(theta, size, align_corners=False, grad_grid=None):
    """torch's affine_grid in float64, and grad_theta for ``grad_grid`` by autograd."""
    import torch

    theta_t = torch.tensor(np.asarray(theta, dtype=np.float64), requires_grad=True)
    grid = torch.nn.functional.affine_grid(theta_t, list(size), align_corners=align_corners)
    if grad_grid is None:
        return grid.detach().numpy()
    grid.backward(torch.tensor(np.asarray(grad_grid, dtype=np.float64)))
    return grid.detach().numpy(), theta_t.grad.numpy()


def torch_grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False, grad_output=None):
    """torch's grid_sample in float64; with ``grad_output``, also (grad_input, grad_grid) by autograd."""
    import torch

    input_t = torch.tensor(np.asarray(input, dtype=np.float64), requires_grad=True)
    grid_t = torch.tensor(np.asarray(grid, dtype=np.float64), requires_grad=True)
    output = torch.nn.functional.grid_sample(
        input_t, grid_t, mode=mode, padding_mode=padding_mode, align_corners=align_corners
    )
    if grad_output is None:
        return output.detach().numpy()
    output.backward(torch.tensor(np.asarray(grad_output, dtype=np.float64)))
    return output.detach().numpy(), input_t.grad.numpy(), grid_t.grad.numpy()
