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

Two paddings torch lacks: "circular" repeats the input with a period of its
size (a tap at pixel m reads pixel m mod size; ±Inf samples nothing), and
"constant" reads ``fill_value`` at every tap outside the input (a NaN or
infinite point reads it with full weight). A tap outside is listed with the
index None, which reads the fill.
"""

import itertools
import math

import numpy as np

CUBIC_A = -0.75
MODES = ("bilinear", "nearest", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection", "circular")  # and "constant", with a fill value


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
    if padding_mode in ("zeros", "circular", "constant"):  # the taps do the padding
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
    """Pixel index read by bicubic tap ``m`` (padding applied per tap), or None
    for a tap outside (a zero, or constant's fill)."""
    if padding_mode in ("zeros", "constant"):
        return m if in_bounds(m, size) else None
    if padding_mode == "circular":
        return m % size
    coordinate, _ = pad_coordinate(float(m), size, padding_mode, align_corners)
    return int(coordinate)


def axis_taps(g, size, mode, padding_mode, align_corners):
    """Taps of one grid component along one axis: [(pixel index, weight, d weight / d g)];
    with constant padding, taps outside have index None."""
    x, scale = unnormalize(g, size, align_corners)
    if math.isinf(x) and padding_mode in ("zeros", "circular", "constant"):
        # the non-finite rule: zeros and circular read nothing, constant the fill
        return [(None, 1.0, 0.0)] if padding_mode == "constant" else []
    if mode == "bicubic":
        if math.isinf(x):  # the nearest edge
            return [(0 if x < 0 else size - 1, 1.0, 0.0)]
        base = math.floor(x)
        t = x - base  # exact; x - m would round to 0 when |x| > 2**53
        taps = []
        for offset in (-1, 0, 1, 2):
            weight, slope = cubic_weight(t - offset)
            index = pad_tap(base + offset, size, padding_mode, align_corners)
            if index is not None or padding_mode == "constant":
                taps.append((index, weight, slope * scale))
        return taps
    x, factor = pad_coordinate(x, size, padding_mode, align_corners)
    if mode == "nearest":
        index = round(x) if math.isfinite(x) else None  # Python rounds half to even, like torch
        if padding_mode == "circular":
            return [(index % size, 1.0, 0.0)]
        if padding_mode == "constant":
            return [(index if in_bounds(index, size) else None, 1.0, 0.0)]
        return [(index, 1.0, 0.0)] if index is not None and in_bounds(index, size) else []
    if padding_mode in ("circular", "constant"):  # the two pixels around x, wrapped or outside
        base = math.floor(x)
        taps = []
        for m in (base, base + 1):
            weight, slope = linear_weight(x, m)
            index = m % size if padding_mode == "circular" else (m if in_bounds(m, size) else None)
            taps.append((index, weight, slope * scale))
        return taps
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
    The weight is the product of the per-axis weights. With constant padding
    a tap outside along any axis has index None.
    """
    k = len(spatial)
    if any(math.isnan(c) for c in point):  # the non-finite rule: NaN samples nothing (constant: the fill)
        return [(None, 1.0, np.zeros(k))] if padding_mode == "constant" else []
    # axis a of the array (0 = D or H) is read by grid component k - 1 - a
    per_axis = [axis_taps(point[k - 1 - a], spatial[a], mode, padding_mode, align_corners) for a in range(k)]
    taps = []
    for combo in itertools.product(*per_axis):
        index = tuple(t[0] for t in combo)
        index = None if None in index else index
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
def _read(input, n, c, index, fill_value):
    """The input value a tap reads: a pixel, or the fill (index None)."""
    return fill_value if index is None else input[(n, c, *index)]


def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False, fill_value=0.0):
    """output[n, c, p] = sum over taps of U[n, c, tap] * weight(tap), in float64."""
    input = np.asarray(input, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    spatial = input.shape[2:]
    output = np.zeros((input.shape[0], input.shape[1], *grid.shape[1:-1]))
    for n, out_index, point in _sample_points(grid):
        for index, weight, _ in sample_point_taps(point, spatial, mode, padding_mode, align_corners):
            for c in range(input.shape[1]):
                output[(n, c, *out_index)] += _read(input, n, c, index, fill_value) * weight
    return output


def grid_sample_backward(grad_output, input, grid, mode="bilinear", padding_mode="zeros", align_corners=False,
                         fill_value=0.0):
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
                if index is not None:
                    grad_input[(n, c, *index)] += upstream * weight
                grad_grid[(n, *out_index)] += upstream * _read(input, n, c, index, fill_value) * d_point
    return grad_input, grad_grid


def grid_push(values, grid, input_shape, mode="bilinear", padding_mode="zeros", align_corners=False):
    """pushed[n, c, tap] = sum over the points reading tap of values[n, c, p] * weight(tap), in float64."""
    values = np.asarray(values, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    pushed = np.zeros(input_shape)
    for n, out_index, point in _sample_points(grid):
        for index, weight, _ in sample_point_taps(point, input_shape[2:], mode, padding_mode, align_corners):
            for c in range(values.shape[1]):
                pushed[(n, c, *index)] += values[(n, c, *out_index)] * weight
    return pushed


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


# ------------------------------------------------------- other grid families
# The paper's other transformations (Jaderberg et al. 2015, §3.2 and §4):
# projective, thin-plate spline, attention and similarity, from the formulas.
PROJECTIVE_MIN_W = 2.0**-20  # |w| is raised to this, keeping its sign (0 counts as +)


def _projective_w(w):
    """The clamped denominator and its derivative d(clamped)/dw."""
    if abs(w) < PROJECTIVE_MIN_W:
        return (PROJECTIVE_MIN_W if w >= 0 else -PROJECTIVE_MIN_W), 0.0
    return w, 1.0


def projective_grid(theta, size, align_corners=False):
    """(x_s, y_s) = (h_1 · p, h_2 · p) / (h_3 · p) with p = (x, y, 1), h_i the rows of theta[n]."""
    theta = np.asarray(theta, dtype=np.float64)
    n_batch, spatial = size[0], tuple(size[2:])
    grid = np.zeros((n_batch, *spatial, 2))
    for n in range(n_batch):
        for index, point in _base_points(spatial, align_corners):
            w, _ = _projective_w(sum(theta[n, 2, j] * point[j] for j in range(3)))
            for row in range(2):
                grid[(n, *index, row)] = sum(theta[n, row, j] * point[j] for j in range(3)) / w
    return grid


def projective_grid_backward(grad_grid, theta, size, align_corners=False):
    """Quotient rule: d x_s/d h_1j = p_j / w, d x_s/d h_3j = -x_s p_j / w (0 where w is clamped)."""
    grad_grid = np.asarray(grad_grid, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    n_batch, spatial = size[0], tuple(size[2:])
    grad_theta = np.zeros((n_batch, 3, 3))
    for n in range(n_batch):
        for index, point in _base_points(spatial, align_corners):
            w, slope = _projective_w(sum(theta[n, 2, j] * point[j] for j in range(3)))
            source = [sum(theta[n, row, j] * point[j] for j in range(3)) / w for row in range(2)]
            g = grad_grid[(n, *index)]
            for j in range(3):
                for row in range(2):
                    grad_theta[n, row, j] += g[row] * point[j] / w
                grad_theta[n, 2, j] -= slope * (g[0] * source[0] + g[1] * source[1]) * point[j] / w
    return grad_theta


def tps_control_points(rows, columns):
    """A rows x columns grid of points in [-1, 1]², row by row: point r * columns + c is (x_c, y_r)."""
    return [(x, y) for y in np.linspace(-1.0, 1.0, rows) for x in np.linspace(-1.0, 1.0, columns)]


def tps_radial(squared_distance):
    """The thin-plate kernel U = r² log r², with U(0) = 0."""
    return 0.0 if squared_distance == 0 else squared_distance * math.log(squared_distance)


def tps_grid(theta, size, control_points, align_corners=False):
    """Bookstein's thin-plate spline through control point c_k -> theta[n, k], at every output pixel.

    Per batch item and output component, solve the (K + 3) system
    [[U(|c_i - c_j|), 1, x_i, y_i], [1, 0...], [x_j, 0...], [y_j, 0...]] [w; a] = [theta[:, component]; 0]
    and evaluate f(p) = a_0 + a_1 x + a_2 y + sum_k w_k U(|p - c_k|).
    """
    theta = np.asarray(theta, dtype=np.float64)
    points = np.asarray(control_points, dtype=np.float64)
    n_batch, spatial, count = size[0], tuple(size[2:]), len(points)
    system = np.zeros((count + 3, count + 3))
    for i in range(count):
        for j in range(count):
            system[i, j] = tps_radial(float(np.sum((points[i] - points[j]) ** 2)))
        system[i, count:] = system[count:, i] = (1.0, points[i, 0], points[i, 1])
    grid = np.zeros((n_batch, *spatial, 2))
    for n in range(n_batch):
        coefficients = np.linalg.solve(system, np.vstack([theta[n], np.zeros((3, 2))]))
        weights, affine = coefficients[:count], coefficients[count:]
        for index, point in _base_points(spatial, align_corners):
            for component in range(2):
                value = affine[0, component] + affine[1, component] * point[0] + affine[2, component] * point[1]
                for k in range(count):
                    value += weights[k, component] * tps_radial(float(np.sum((point[:2] - points[k]) ** 2)))
                grid[(n, *index, component)] = value
    return grid


def tps_grid_backward(grad_grid, size, control_points, align_corners=False):
    """The transpose of the linear map theta -> tps_grid: grad_theta[n, k, c] = <grad_grid[n], tps_grid(e_kc)>."""
    grad_grid = np.asarray(grad_grid, dtype=np.float64)
    count = len(control_points)
    grad_theta = np.zeros((size[0], count, 2))
    for k in range(count):
        for component in range(2):
            unit = np.zeros((1, count, 2))
            unit[0, k, component] = 1.0
            response = tps_grid(unit, (1, *size[1:]), control_points, align_corners)[0]
            for n in range(size[0]):
                grad_theta[n, k, component] = np.sum(grad_grid[n] * response)
    return grad_theta


def similarity_grid(params, size, align_corners=False):
    """(s, angle, tx, ty): x_s = s (cos a x - sin a y) + tx, y_s = s (sin a x + cos a y) + ty."""
    params = np.asarray(params, dtype=np.float64)
    n_batch, spatial = size[0], tuple(size[2:])
    grid = np.zeros((n_batch, *spatial, 2))
    for n in range(n_batch):
        s, angle, tx, ty = params[n]
        for index, (x, y, _) in _base_points(spatial, align_corners):
            grid[(n, *index, 0)] = s * (math.cos(angle) * x - math.sin(angle) * y) + tx
            grid[(n, *index, 1)] = s * (math.sin(angle) * x + math.cos(angle) * y) + ty
    return grid


def attention_grid(params, size, align_corners=False):
    """(s, tx, ty): x_s = s x + tx, y_s = s y + ty, a similarity without rotation."""
    params = np.asarray(params, dtype=np.float64)
    return similarity_grid(np.stack([params[:, 0], np.zeros(len(params)), params[:, 1], params[:, 2]], axis=1),
                           size, align_corners)


# ----------------------------------------------------------------- convolution and pooling


def _window_taps(out_index, kernel, stride, padding, dilation):
    """Input coordinates read by output ``out_index`` along one axis: o·stride − padding + k·dilation."""
    return [out_index * stride - padding + k * dilation for k in range(kernel)]


def _conv_products(x_shape, weight_shape, stride, padding, dilation):
    """Every (n, o, p, q, c, i, j, y, x) of the convolution sum whose input pixel (y, x) lies inside the input."""
    n_images, channels, height, width = x_shape
    out_channels, _, kh, kw = weight_shape
    ho = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    for n, o, p, q, c in itertools.product(range(n_images), range(out_channels), range(ho), range(wo),
                                           range(channels)):
        for i, y in enumerate(_window_taps(p, kh, stride[0], padding[0], dilation[0])):
            for j, xx in enumerate(_window_taps(q, kw, stride[1], padding[1], dilation[1])):
                if 0 <= y < height and 0 <= xx < width:
                    yield n, o, p, q, c, i, j, y, xx


def conv2d(x, weight, bias, stride, padding, dilation):
    """out[n, o, p, q] = bias[o] + Σ_c Σ_i Σ_j weight[o, c, i, j] · x[n, c, y_i, x_j], zero outside the input."""
    ho = (x.shape[2] + 2 * padding[0] - dilation[0] * (weight.shape[2] - 1) - 1) // stride[0] + 1
    wo = (x.shape[3] + 2 * padding[1] - dilation[1] * (weight.shape[3] - 1) - 1) // stride[1] + 1
    out = np.zeros((x.shape[0], weight.shape[0], ho, wo))
    if bias is not None:
        out += np.asarray(bias, np.float64)[:, None, None]
    for n, o, p, q, c, i, j, y, xx in _conv_products(x.shape, weight.shape, stride, padding, dilation):
        out[n, o, p, q] += float(weight[o, c, i, j]) * float(x[n, c, y, xx])
    return out


def conv2d_backward(grad, x, weight, stride, padding, dilation):
    """(d out / d x)ᵀ grad and (d out / d weight)ᵀ grad: every product of the forward sum, transposed."""
    dx, dw = np.zeros(x.shape), np.zeros(weight.shape)
    for n, o, p, q, c, i, j, y, xx in _conv_products(x.shape, weight.shape, stride, padding, dilation):
        dx[n, c, y, xx] += float(weight[o, c, i, j]) * float(grad[n, o, p, q])
        dw[o, c, i, j] += float(x[n, c, y, xx]) * float(grad[n, o, p, q])
    return dx, dw


def max_pool2d(x, kernel, stride, padding, dilation):
    """Window maxima and the flat in-plane index of each (the first maximum; a NaN wins, the last NaN as torch)."""
    n_images, channels, height, width = x.shape
    ho = (height + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    wo = (width + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    out = np.zeros((n_images, channels, ho, wo), x.dtype)
    argmax = np.zeros(out.shape, np.int64)
    for n, c, p, q in itertools.product(range(n_images), range(channels), range(ho), range(wo)):
        best, best_index = -math.inf, None
        for y in _window_taps(p, kernel[0], stride[0], padding[0], dilation[0]):
            for xx in _window_taps(q, kernel[1], stride[1], padding[1], dilation[1]):
                if 0 <= y < height and 0 <= xx < width:
                    value = x[n, c, y, xx]
                    if best_index is None or value > best or math.isnan(value):
                        best, best_index = value, y * width + xx
        out[n, c, p, q], argmax[n, c, p, q] = best, best_index
    return out, argmax
