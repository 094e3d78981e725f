"""Fuzzing: random shapes, layouts and hostile values against the loop reference and the non-finite rule.

Cases come from ``tests/strategies.py``: a seeded corpus of
``STN_NUMBA_FUZZ_CASES`` cases per family (default 300; set 10000 for the long
mode) and hypothesis strategies. Every case runs the op and its backward on
views in the case's memory layouts and checks:

- shapes, dtypes, and that no argument was written to;
- the non-finite rule of CONTRIBUTING.md: with finite ``input`` and
  ``grad_output`` every result of the sampler is finite, and a point with a NaN
  component samples nothing;
- values against ``tests/reference.py``, point by point, wherever the
  reference is exact: every point except finite ones beyond
  :func:`reflection_limit` with reflection or circular padding (where the kernels may
  return any deterministic in-range point; there the output must lie within
  the input's range and the point is left out of the ``grad_input`` check).

The kernels compute the pixel coordinate in the case's dtype, the reference in
float64 from the same grid value, so the two may differ by ``delta`` pixels
(:func:`axis_geometry`). Tolerances follow from that bound, and where a
coordinate lies within ``delta`` of a kink (a multiple of half a pixel), the
kernel may match the reference on either side of it or exactly on it.

Grid generators are compared with the reference within the rounding of their
sums (where no partial sum can overflow the dtype), and with non-finite
parameters must be non-finite exactly where the reference is. Under
``NUMBA_BOUNDSCHECK=1`` the kernels run as serial bounds-checked copies
(:func:`serial_bounds_checked_kernels`). Last, random command lines for the
``stn-numba`` CLI.
"""

import itertools
import os
import re

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference
import stn_numba
import strategies
from stn_numba import cli, experiments
from stn_numba._cpu import grids as cpu_grids
from stn_numba._cpu import sampling as cpu_sampling
from stn_numba._families import GRID_FAMILIES

# Hostile values make NumPy warn in the reference and in BLAS; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
# The fixture is a stateless function, so hypothesis may reuse it across examples.
HYPOTHESIS = settings(max_examples=max(15, strategies.FUZZ_CASES // 20),
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SHOWN_FAILURES = 5


# ------------------------------------------------------------------- layouts
def in_layout(array, layout, layout_variants):
    """``array``'s values in the memory ``layout`` (one of strategies.LAYOUTS)."""
    if layout == "contiguous":
        return array
    if layout == "permuted":
        order = np.roll(np.arange(array.ndim), 1)
        return np.ascontiguousarray(array.transpose(order)).transpose(np.argsort(order))
    return layout_variants(array)[layout]


def frozen(arrays):
    """Bytes of each array's values, to check that no argument is written to."""
    return [np.ascontiguousarray(a).tobytes() for a in arrays]


def run_failures(cases, check, layout_variants):
    """Run ``check`` on every (index, case); fail listing the first failing cases."""
    failures = []
    count = 0
    for index, case in cases:
        count += 1
        try:
            check(case, layout_variants)
        except Exception as error:  # collect, so one run reports every bad case
            failures.append(f"case {index}: {case.describe()}\n    {type(error).__name__}: {error}")
    assert not failures, (f"{len(failures)} of {count} cases failed (seed {strategies.FUZZ_SEED}); first ones:\n"
                          + "\n".join(failures[:SHOWN_FAILURES]))


# ------------------------------------------------------------- sampler oracle
def eps(dtype):
    return float(np.finfo(dtype).eps)


def subnormal(dtype):
    """An absolute tolerance for results that underflow: a few of the smallest subnormals."""
    return 64 * float(np.finfo(dtype).smallest_subnormal)


def reflection_limit(dtype):
    """Largest |x| in pixels at which reflection is compared with the reference.

    float64: 2**23, below the clamp bound (the existing large-coordinate tests
    check the reference there). float32: where the coordinate's rounding error
    reaches 1e-3 pixels; beyond, the reflected point is only defined up to it.
    """
    return min(2.0**23, 1e-3 / (8 * eps(dtype)))


def axis_geometry(g, size, align_corners, dtype):
    """(x, scale, delta): the float64 pixel coordinate of grid value ``g``, dx/dg, and a bound on
    how far the kernel's coordinate, computed in ``dtype``, may lie from x."""
    x, scale = reference.unnormalize(g, size, align_corners)
    return x, scale, 4 * eps(dtype) * (abs(g + 1) * scale + abs(x) + 1)


def near_kink(x, delta, size, padding_mode):
    """Whether x is within ``delta`` of a multiple of 0.5 where the result has a kink or jump."""
    if padding_mode not in ("reflection", "circular") and not -3.5 <= x <= size + 2.5:
        return False  # no tap, border or rounding boundary out there
    return abs(x - round(2 * x) / 2) <= delta


def point_result(point, spatial, options, values, upstream, slopes):
    """The reference at one sample point, with the sizes that bound its rounding.

    ``values`` is the (C, *spatial) image, ``upstream`` the (C,) grad_output
    there, ``slopes`` dg/dx per component. Returns the output (C,), grad_grid
    (k,), the taps, and sums over the taps: |value * weight| (C,),
    |upstream| . |value| * |dweight| (k,), |upstream| . |value| (a scalar),
    per component the largest output change per pixel of coordinate error
    (k,), and |value| (C,).
    """
    taps = reference.sample_point_taps(point, spatial, *options)
    output, output_size = np.zeros(values.shape[0]), np.zeros(values.shape[0])
    grad_point, gradient_size = np.zeros(len(point)), np.zeros(len(point))
    upstream_size, output_slope, pixel_size = 0.0, np.zeros(len(point)), np.zeros(values.shape[0])
    for index, weight, d_point in taps:
        pixel = values[(slice(None), *index)]
        pixel_size += np.abs(pixel)
        output += pixel * weight
        output_size += np.abs(pixel * weight)
        grad_point += (upstream @ pixel) * d_point
        gradient_size += (np.abs(upstream) @ np.abs(pixel)) * np.abs(d_point)
        upstream_size += np.abs(upstream) @ np.abs(pixel)
        output_slope += np.abs(d_point) * slopes * np.abs(pixel).max(initial=0)
    return output, grad_point, taps, output_size, gradient_size, upstream_size, output_slope, pixel_size


def weight_ulps(mode):
    """Absolute error of one tap weight (or its derivative over the scale), in units of eps.

    Cubic weights near |s| = 2 are small differences of terms up to about 36,
    so their error is absolute, not relative to the weight.
    """
    return 64 if mode == "bicubic" else 4


def kink_grid_value(x, size, align_corners):
    """A float64 grid value whose reference coordinate is exactly the kink nearest x, or None."""
    kink = round(2 * x) / 2
    g = 2.0 * kink / (size - 1) - 1.0 if align_corners else (2.0 * kink + 1.0) / size - 1.0
    for _ in range(4):
        coordinate = reference.unnormalize(g, size, align_corners)[0]
        if coordinate == kink:
            return g
        g = np.nextafter(g, np.inf if coordinate < kink else -np.inf)
    return None


def check_point(case, point, spatial, values, upstream, got_output, got_grad):
    """Compare one point with the reference; return its taps, coordinate errors (pixels) and dg/dx, or raise.

    Components within ``delta`` of a kink are also tried exactly on the kink
    and nudged by 2 delta to either side; the kernel must match one of the
    combinations. Tolerances: 64 ulps of the sums and the weights'
    absolute error (:func:`weight_ulps`), plus the coordinate error times the
    first derivative (output) or a bound of 5 per pixel squared on the second
    (grad_grid).
    """
    dtype = case.input.dtype
    k = len(point)
    geometry = [axis_geometry(point[a], spatial[k - 1 - a], case.align_corners, dtype) for a in range(k)]
    deltas = np.array([delta if np.isfinite(x) else 0.0 for x, _, delta in geometry])
    scales = np.array([scale for _, scale, _ in geometry])
    slopes = np.divide(1.0, scales, out=np.zeros(k), where=scales > 0)
    options = [[point[a]] for a in range(k)]
    if not np.isnan(point).any():
        for a, (x, scale, delta) in enumerate(geometry):
            size = spatial[k - 1 - a]
            if np.isfinite(x) and scale > 0 and near_kink(x, delta, size, case.padding_mode):
                on_kink = kink_grid_value(x, size, case.align_corners)
                options[a] += [point[a] - 2 * delta / scale, point[a] + 2 * delta / scale] + \
                    ([] if on_kink is None else [on_kink])
    first_try = None
    for candidate in itertools.product(*options):
        output, grad_point, taps, output_size, gradient_size, upstream_size, output_slope, pixel_size = \
            point_result(np.array(candidate), spatial, case.options, values, upstream, slopes)
        rounding = eps(dtype) * weight_ulps(case.mode)
        output_tolerance = (64 * eps(dtype) * output_size + rounding * pixel_size + 4 * output_slope @ deltas
                            + subnormal(dtype))
        gradient_tolerance = (64 * eps(dtype) * gradient_size + rounding * scales * upstream_size
                              + 20 * scales * upstream_size * deltas.sum() + subnormal(dtype))
        if (np.all(np.abs(got_output - output) <= output_tolerance)
                and np.all(np.abs(got_grad - grad_point) <= gradient_tolerance)):
            return taps, deltas, slopes
        first_try = first_try or (output, grad_point)
    raise AssertionError(f"point {point.tolist()} (pixels {[g[0] for g in geometry]}): output {got_output}, "
                         f"expected {first_try[0]}; grad_grid {got_grad}, expected {first_try[1]}")


def rule_point(point, spatial, case):
    """``point`` with the non-finite rule applied where the reference does not implement it.

    On an axis of size 1 with align_corners=True the reference computes
    ``(±Inf + 1) * 0 = NaN``, while the rule treats ±Inf as far outside: zeros
    and circular padding sample nothing (as for NaN), border and reflection
    read the only pixel (grid value 0) with gradient 0 (the scale is 0).
    """
    k = len(point)
    point = point.copy()
    for a in range(k):
        if np.isinf(point[a]) and case.align_corners and spatial[k - 1 - a] == 1:
            point[a] = np.nan if case.padding_mode in ("zeros", "circular") else 0.0
    return point


def is_compared(point, spatial, case):
    """False for points the reference does not define exactly (see reflection_limit)."""
    if case.padding_mode not in ("reflection", "circular") or np.isnan(point).any():
        return True
    if case.padding_mode == "circular" and np.isinf(point).any():
        return True  # samples nothing, as the reference
    k = len(point)
    for a in range(k):
        x, _, _ = axis_geometry(point[a], spatial[k - 1 - a], case.align_corners, case.input.dtype)
        if np.isfinite(x) and abs(x) > reflection_limit(case.input.dtype):
            return False
    return True


def check_sampler(case, layout_variants):
    """Run grid_sample and its backward on ``case`` and check everything listed in the module docstring."""
    dtype = case.input.dtype
    arrays = [in_layout(getattr(case, name), case.layouts[name], layout_variants)
              for name in ("input", "grid", "grad_output")]
    before = frozen(arrays)
    input, grid, grad_output = arrays
    output = stn_numba.grid_sample(input, grid, *case.options)
    grad_input, grad_grid = stn_numba.grid_sample_backward(grad_output, input, grid, *case.options,
                                                           input_requires_grad=case.input_requires_grad)
    assert frozen(arrays) == before, "an argument was written to"
    # grad_grid does not depend on whether grad_input is computed: bitwise
    other_input, other_grid = stn_numba.grid_sample_backward(
        case.grad_output, case.input, case.grid, *case.options, input_requires_grad=not case.input_requires_grad)
    np.testing.assert_array_equal(grad_grid, other_grid, err_msg="grad_grid depends on input_requires_grad")
    if not case.input_requires_grad:
        assert grad_input is None
        grad_input = other_input
    for name, result, shape in (("output", output, case.grad_output.shape), ("grad_input", grad_input, input.shape),
                                ("grad_grid", grad_grid, grid.shape)):
        assert result.dtype == dtype and result.shape == shape, f"{name}: {result.dtype} {result.shape}"
        assert np.isfinite(result).all(), f"{name} is not finite: {result[~np.isfinite(result)][:4]}"

    spatial = case.input.shape[2:]
    values = case.input.astype(np.float64)
    upstream = case.grad_output.astype(np.float64)
    points = case.grid.astype(np.float64)
    expected_input, weight_size, weight_error = np.zeros(values.shape), np.zeros(values.shape), np.zeros(values.shape)
    masked = upstream.copy()
    for n, out_index in itertools.product(range(points.shape[0]), np.ndindex(points.shape[1:-1])):
        point = rule_point(points[(n, *out_index)], spatial, case)
        at = (n, slice(None), *out_index)
        if not is_compared(point, spatial, case):
            # any deterministic in-range point: the output lies within the input's range
            flat = values[n].reshape(values.shape[1], int(np.prod(spatial)))
            low, high = flat.min(1), flat.max(1)
            # cubic weights can be negative (more so in 3-D); float weights sum to 1 only up to rounding
            overshoot = {2: 0.4, 3: 0.8}[len(spatial)] if case.mode == "bicubic" else 0
            spread = overshoot * (high - low) + 64 * eps(dtype) * np.abs(flat).max(1)
            assert np.all(output[at] >= low - spread) and np.all(output[at] <= high + spread), \
                f"reflected point {point.tolist()} gives {output[at]} outside [{low}, {high}]"
            masked[at] = 0
            continue
        taps, deltas, slopes = check_point(case, point, spatial, values[n], upstream[at], output[at],
                                           grad_grid[(n, *out_index)])
        for index, weight, d_point in taps:
            scatter = upstream[at] * weight
            expected_input[(n, slice(None), *index)] += scatter
            weight_size[(n, slice(None), *index)] += np.abs(scatter)
            # the weight's own rounding and its error from the coordinate's
            weight_error[(n, slice(None), *index)] += np.abs(upstream[at]) * (
                eps(dtype) * weight_ulps(case.mode) + 4 * (np.abs(d_point) * slopes) @ deltas)
    if (masked != upstream).any():
        grad_input, _ = stn_numba.grid_sample_backward(masked.astype(dtype), case.input, case.grid, *case.options)
    points_per_image = int(np.prod(points.shape[1:-1]))
    tolerance = (points_per_image + 16) * eps(dtype) * weight_size + weight_error + subnormal(dtype)
    bad = np.abs(grad_input - expected_input) > tolerance
    assert not bad.any(), (f"grad_input differs at {np.argwhere(bad)[:3].tolist()}: got {grad_input[bad][:3]}, "
                           f"expected {expected_input[bad][:3]}")


# ---------------------------------------------------------------- grid oracle
def assert_close_where_defined(got, expected, tolerance, name, exact_nonfinite, unchecked=False):
    """Compare a float result with a float64 reference computed in another operation order.

    Where the reference is not finite (non-finite arguments), the result must,
    with ``exact_nonfinite``, be the same NaN or infinity; without it (a
    gradient, which the rule allows but does not require to be non-finite
    then) it is free. Where it is finite, the result must be within ``tolerance``, or
    not NaN if the reference overflows the dtype; ``tolerance`` is NaN where
    the finite value is not compared (partial sums that might overflow the
    dtype in one operation order). Nothing at all is checked where
    ``unchecked`` (results that depend on the rounding, such as the sign of a
    projective denominator that cancels to about 0).
    """
    unchecked = np.broadcast_to(unchecked, got.shape)
    expected = np.broadcast_to(expected, got.shape)
    tolerance = np.broadcast_to(tolerance, got.shape)
    compared = ~np.isnan(tolerance) & ~unchecked
    tolerance = np.where(compared, tolerance, 0.0)
    limit = np.finfo(got.dtype).max
    finite = compared & np.isfinite(expected) & (np.abs(expected) <= limit)
    bad = finite & ~(np.abs(got - expected) <= tolerance)
    assert not bad.any(), (f"{name} differs at {np.argwhere(bad)[:3].tolist()}: got {got[bad][:3]}, "
                           f"expected {expected[bad][:3]}, tolerance {tolerance[bad][:3]}")
    overflow = compared & np.isfinite(expected) & (np.abs(expected) > limit)
    assert not np.isnan(got[overflow]).any(), f"{name}: NaN where the reference overflows the dtype"
    if exact_nonfinite:
        nonfinite = ~np.isfinite(expected) & ~unchecked
        same = (np.isnan(got) & np.isnan(expected)) | (got == expected)
        assert same[nonfinite].all(), (f"{name}: {got[nonfinite & ~same][:3]} at "
                                       f"{np.argwhere(nonfinite & ~same)[:3].tolist()} where the reference has "
                                       f"{expected[nonfinite & ~same][:3]}")


def rounding_tolerance(sizes, dtype, ulps):
    """``ulps * eps * sizes``, where ``sizes`` bounds the magnitude of every partial sum.

    NaN (not compared) where the sizes come near the dtype's largest value
    (or are not finite), so a partial sum might overflow in one operation
    order and not the other.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        tolerance = ulps * (eps(dtype) * sizes + subnormal(dtype))
    return np.where(sizes < np.finfo(dtype).max / 8, tolerance, np.nan)


def grid_call(case, params, grad_grid):
    """(grid, grad_params) of the case's family, through the public functions."""
    family = GRID_FAMILIES[case.family]
    options = family.options(case.control_points)
    return (family.grid(params, case.size, align_corners=case.align_corners, **options),
            family.backward(grad_grid, params, case.size, align_corners=case.align_corners, **options))


def reference_grid(case, params):
    if case.family == "affine":
        return reference.affine_grid(params, case.size, case.align_corners)
    if case.family == "projective":
        return reference.projective_grid(params, case.size, case.align_corners)
    if case.family == "attention":
        return reference.attention_grid(params, case.size, case.align_corners)
    if case.family == "similarity":
        return reference.similarity_grid(params, case.size, case.align_corners)
    return reference.tps_grid(params, case.size, stn_numba.tps_control_points(case.control_points),
                              case.align_corners)


def base_points(case):
    """The float64 base points (..., x, y[, z]) of an output ``case.size`` and ``case.align_corners``."""
    return reference.affine_grid(np.eye(len(case.size) - 2, len(case.size) - 1)[None], (1, 1, *case.size[2:]),
                                 case.align_corners)[0]


def affine_backward_tolerance(case, grad_grid, dtype):
    """Rounding tolerance of grad_theta = sum over points of grad_grid * (x, y[, z], 1)."""
    points = np.abs(base_points(case))
    base = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], -1)
    dim = len(case.size) - 2
    points_per_image = int(np.prod(case.size[2:]))
    per_point = np.abs(np.asarray(grad_grid, np.float64)).reshape(len(grad_grid), points_per_image, dim)
    sizes = np.einsum("npi,pj->nij", per_point, base.reshape(points_per_image, dim + 1))
    tolerance = rounding_tolerance(sizes, dtype, points_per_image + 8)
    # the kernel adds up grad_grid along rows before weighting: where that may overflow, see the test below
    overflowing_rows = per_point.sum(1)[:, :, None] >= np.finfo(dtype).max / 8
    tolerance[np.broadcast_to(overflowing_rows, tolerance.shape)] = np.nan
    return tolerance


def check_affine(case, grid, grad_params, params, grad_grid):
    dtype = grid.dtype
    points = np.abs(base_points(case))
    base = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], -1)
    # |theta_i| . |p| bounds every partial sum of row i at every point
    sizes = np.einsum("nij,...j->n...i", np.abs(params), base)
    assert_close_where_defined(grid, reference.affine_grid(params, case.size, case.align_corners),
                               rounding_tolerance(sizes, dtype, 8), "grid", exact_nonfinite=True)
    tolerance = affine_backward_tolerance(case, grad_grid, dtype)
    expected = reference.affine_grid_backward(grad_grid, case.size, case.align_corners)
    assert_close_where_defined(grad_params, expected, tolerance, "grad_theta", exact_nonfinite=False)


def projective_ambiguous(params, case, dtype):
    """Per batch item, whether some point's clamped denominator depends on rounding (sign or clamp)."""
    base = base_points(case)
    w = (params[:, None, None, 2, 0] * base[..., 0] + params[:, None, None, 2, 1] * base[..., 1]
         + params[:, None, None, 2, 2])
    size = np.abs(params[:, None, None, 2, 0] * base[..., 0]) + np.abs(params[:, None, None, 2, 1] * base[..., 1]) \
        + np.abs(params[:, None, None, 2, 2])
    margin = 16 * eps(dtype) * size + subnormal(dtype)  # w may underflow to ±0 in the dtype
    with np.errstate(invalid="ignore"):
        near = (np.abs(w) <= margin) | (np.abs(np.abs(w) - reference.PROJECTIVE_MIN_W) <= margin)
    return near.reshape(len(params), int(np.prod(case.size[2:]))).any(axis=1), w, size


def check_projective(case, grid, grad_params, params, grad_grid):
    dtype = grid.dtype
    ambiguous, w, w_size = projective_ambiguous(params, case, dtype)
    base = base_points(case)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        clamped = np.where(np.abs(w) < reference.PROJECTIVE_MIN_W, reference.PROJECTIVE_MIN_W, np.abs(w))
        numerator_size = np.stack([np.abs(params[:, None, None, i, 0] * base[..., 0])
                                   + np.abs(params[:, None, None, i, 1] * base[..., 1])
                                   + np.abs(params[:, None, None, i, 2]) for i in range(2)], -1)
        expected = reference.projective_grid(params, case.size, case.align_corners)
        sizes = (numerator_size + np.abs(expected) * w_size[..., None]) / clamped[..., None]
        tolerance = rounding_tolerance(sizes, dtype, 8)
    assert_close_where_defined(grid, expected, tolerance, "grid", exact_nonfinite=True,
                               unchecked=ambiguous[:, None, None, None])
    # per point: |g| / |w| times (1 + |s|), amplified by the cancellation in w and in the numerators
    points = int(np.prod(case.size[2:]))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        per_point = (np.abs(grad_grid).sum(-1) / clamped * ((1 + np.abs(expected).sum(-1)) * (1 + w_size / clamped)
                                                           + numerator_size.sum(-1) / clamped))
        sizes = per_point.reshape(len(params), points).sum(1)
        tolerance = rounding_tolerance(sizes[:, None, None] * np.ones((1, 3, 3)), dtype, 16 * (points + 8))
    expected_theta = reference.projective_grid_backward(grad_grid, params, case.size, case.align_corners)
    # a finite source point that overflows the dtype: see the test below
    overflowing = (np.isfinite(expected) & (np.abs(expected) > np.finfo(dtype).max)).reshape(len(params), 2 * points)
    assert_close_where_defined(grad_params, expected_theta, tolerance, "grad_theta", exact_nonfinite=False,
                               unchecked=(ambiguous | overflowing.any(axis=1))[:, None, None])


def check_linear_family(case, grid, grad_params, params, grad_grid):
    """attention, similarity and tps: grid vs the reference; backward as the adjoint of a
    central-difference directional derivative of the reference (finite moderate cases only)."""
    dtype = grid.dtype
    expected = reference_grid(case, params) if np.isfinite(params).all() else None
    magnitude = 1 + np.abs(params).max(initial=0)
    if expected is not None:
        tolerance = rounding_tolerance(np.full(grid.shape, magnitude), dtype, 1e3)
        assert_close_where_defined(grid, expected, tolerance, "grid", exact_nonfinite=False)
    moderate = np.isfinite(params).all() and np.abs(params).max(initial=0) < 1e3 and np.isfinite(grad_grid).all() \
        and np.abs(grad_grid).max(initial=0) < 1e3
    if moderate and params.size and grad_grid.size:
        direction = np.random.default_rng(0).standard_normal(params.shape)
        step = 1e-6
        derivative = (reference_grid(case, params + step * direction)
                      - reference_grid(case, params - step * direction)) / (2 * step)
        lhs = float(np.sum(grad_params.astype(np.float64) * direction))
        rhs = float(np.sum(grad_grid * derivative))
        scale = np.abs(grad_grid).sum() * magnitude * np.abs(direction).max()
        assert abs(lhs - rhs) <= (1e-6 if dtype == np.float64 else 1e-4) * (1 + scale), \
            f"<grad_params, v> = {lhs}, <grad_grid, dgrid/dv> = {rhs}"


GRID_CHECKS = {"affine": check_affine, "projective": check_projective, "attention": check_linear_family,
               "similarity": check_linear_family, "tps": check_linear_family}


def check_grid(case, layout_variants):
    """Run a grid generator and its backward on ``case``: shapes, dtypes, no writes, values."""
    dtype = case.params.dtype
    arrays = [in_layout(case.params, case.layouts["params"], layout_variants),
              in_layout(case.grad_grid, case.layouts["grad_grid"], layout_variants)]
    before = frozen(arrays)
    grid, grad_params = grid_call(case, *arrays)
    assert frozen(arrays) == before, "an argument was written to"
    assert grid.dtype == dtype and grid.shape == case.grad_grid.shape, f"grid {grid.dtype} {grid.shape}"
    assert grad_params.dtype == dtype and grad_params.shape == case.params.shape, \
        f"grad_params {grad_params.dtype} {grad_params.shape}"
    if np.isfinite(case.params).all() and np.isfinite(case.grad_grid).all() and case.family != "projective":
        # linear in the parameters (or in grad_grid): finite in, finite out unless it overflows
        limit = np.finfo(dtype).max / 64
        if np.abs(case.params).max(initial=0) < limit and np.abs(case.grad_grid).max(initial=0) < limit:
            assert np.isfinite(grid).all() and np.isfinite(grad_params).all(), "finite input, non-finite result"
    GRID_CHECKS[case.family](case, grid, grad_params, case.params.astype(np.float64),
                             case.grad_grid.astype(np.float64))


# ------------------------------------------------------------------ fused op
def check_fused(case, layout_variants):
    """affine_grid_sample and its backward against grid_sample of affine_grid (the composition the
    other families check against the reference): forward and grad_input bitwise, grad_theta to
    rounding and finite (the sampler's grad_grid always is)."""
    dtype = case.input.dtype
    arrays = [in_layout(getattr(case, name), case.layouts[name], layout_variants)
              for name in ("input", "theta", "grad_output")]
    before = frozen(arrays)
    input, theta, grad_output = arrays
    output = stn_numba.affine_grid_sample(input, theta, case.size, *case.options)
    grad_input, grad_theta = stn_numba.affine_grid_sample_backward(
        grad_output, input, theta, case.size, *case.options, input_requires_grad=case.input_requires_grad)
    assert frozen(arrays) == before, "an argument was written to"
    grid = stn_numba.affine_grid(case.theta, case.size, case.align_corners)
    composed = stn_numba.grid_sample(case.input, grid, *case.options)
    composed_input, composed_grid = stn_numba.grid_sample_backward(case.grad_output, case.input, grid, *case.options)
    assert output.dtype == dtype and output.tobytes() == composed.tobytes(), "output differs from the composition"
    if case.input_requires_grad:
        assert grad_input.tobytes() == composed_input.tobytes(), "grad_input differs from the composition"
    else:
        assert grad_input is None
    assert grad_theta.dtype == dtype and grad_theta.shape == case.theta.shape
    expected = reference.affine_grid_backward(composed_grid.astype(np.float64), case.size, case.align_corners)
    assert_close_where_defined(grad_theta, expected, affine_backward_tolerance(case, composed_grid, dtype),
                               "grad_theta", exact_nonfinite=False)


# --------------------------------------------------------------------- tests
def test_sampler_corpus(layout_variants):
    run_failures(strategies.corpus("sampler"), check_sampler, layout_variants)


def test_grid_corpus(layout_variants):
    run_failures(strategies.corpus("grids"), check_grid, layout_variants)


def test_the_corpus_draws_every_grid_family():
    assert sorted(strategies.GRID_FAMILIES) == sorted(GRID_FAMILIES) == sorted(GRID_CHECKS)


def test_fused_corpus(layout_variants):
    run_failures(strategies.corpus("fused"), check_fused, layout_variants)


@HYPOTHESIS
@given(case=strategies.sampler_cases())
def test_sampler_hypothesis(layout_variants, case):
    check_sampler(case, layout_variants)


@HYPOTHESIS
@given(case=strategies.grid_cases())
def test_grid_hypothesis(layout_variants, case):
    check_grid(case, layout_variants)


@pytest.mark.parametrize("spatial, padding_mode, fused", [
    (2, "zeros", False), (2, "border", True), (2, "reflection", False), (3, "zeros", True), (3, "reflection", False)])
def test_bilinear_on_a_part_reads_only_the_part(spatial, padding_mode, fused):
    """`stn_numba.dask`'s chunks: bilinear on a part of the input (the region `tap_extent` names)
    reads pairs of pixels, which must stay inside the part, for hostile points too (NaN, ±Inf,
    huge, on and just past the edges), and give the whole input's bits. The serial kernel here;
    in the bounds-checked run (NUMBA_BOUNDSCHECK=1) a read outside the part's array raises."""
    from stn_numba._codes import BILINEAR, PADDING_MODES

    padding = PADDING_MODES[padding_mode]
    rng = np.random.default_rng(spatial * 10 + padding)
    whole_spatial, out_spatial = (9, 11, 13)[-spatial:], (6, 7, 10)[-spatial:]
    for dtype in strategies.DTYPES:
        input = rng.standard_normal((2, 2) + whole_spatial).astype(dtype)
        for trial in range(12):
            if fused:
                points = (np.eye(spatial, spatial + 1) * rng.uniform(0.2, 1.5)
                          + rng.uniform(-0.8, 0.8, (2, spatial, spatial + 1))).astype(dtype)
                if trial % 4 == 3:
                    points[0, 0, spatial] = (np.nan, np.inf, 1e30)[trial % 3]
            else:
                points = rng.choice([-1.0, 1.0, -1.0 - 1e-7, 1.0 + 1e-7, 0.0], (2,) + out_spatial + (spatial,))
                points = (points + rng.uniform(-0.6, 0.6, points.shape) * (trial % 3 > 0)).astype(dtype)
                points.flat[trial::7] = rng.choice([np.nan, np.inf, -np.inf, 3e38, -3e38, 1e7, -1.0, 1.0],
                                                   points.flat[trial::7].size)
            whole = np.empty((2, 2) + out_spatial, dtype)
            cpu_sampling.pointwise(spatial, BILINEAR, padding, fused, False, True)(
                input, points, whole, None, padding, False)
            start = out_spatial[0] // 2  # the second half of the output along its first axis
            chunk_points = points if fused else np.ascontiguousarray(points[:, start:])
            out_origin = (start,) + (0,) * (spatial - 1)
            chunk_shape = (2, 2, out_spatial[0] - start) + out_spatial[1:]
            extent = cpu_sampling.tap_extent(
                chunk_points, chunk_shape,
                cpu_sampling.region_window(whole_spatial, (0,) * spatial, out_spatial, out_origin),
                fused, BILINEAR, padding, False)
            if np.any(extent[:, 1] - extent[:, 0] < 1):
                continue  # a part one pixel wide along an axis reads no pairs
            part = np.ascontiguousarray(input[(slice(None), slice(None))
                                              + tuple(slice(low, high + 1) for low, high in extent)])
            chunk = np.empty(chunk_shape, dtype)
            cpu_sampling.pointwise(spatial, BILINEAR, padding, fused, False, True, 1, True)(
                part, chunk_points, chunk,
                cpu_sampling.region_window(whole_spatial, extent[:, 0], out_spatial, out_origin), padding, False)
            bits = np.uint32 if dtype == np.float32 else np.uint64
            np.testing.assert_array_equal(chunk.view(bits), whole[:, :, start:].view(bits),
                                          err_msg=f"trial {trial}, {np.dtype(dtype).name}")


def test_affine_grid_backward_gives_no_nan_when_a_row_sum_overflows():
    """Found by test_grid_hypothesis. One row of 4 points, grad_grid all 1e38 (float32): the y
    coefficients of grad_theta are exactly 0 (every base y is 0), the constant ones overflow.

    The kernel adds each row of grad_grid up first (4e38 overflows float32 to Inf) and then
    multiplies by the row's y = 0, giving Inf * 0 = NaN where the answer is 0.
    """
    grad_grid = np.full((1, 1, 4, 2), 1e38, np.float32)
    expected = reference.affine_grid_backward(grad_grid, (1, 1, 1, 4))
    assert (expected[0, :, 1] == 0).all() and (expected[0, :, 2] > np.finfo(np.float32).max).all()
    grad_theta = stn_numba.affine_grid_backward(grad_grid, (1, 1, 1, 4))
    np.testing.assert_array_equal(grad_theta[0, :, :2], expected[0, :, :2].astype(np.float32))
    assert np.isposinf(grad_theta[0, :, 2]).all()


def test_projective_grid_backward_gives_no_nan_when_a_source_point_overflows():
    """Found by test_grid_hypothesis. float32 theta with h13 = 1e38 sends the source x of every
    point to 1e38 / w, up to 4e38: beyond float32, so the grid holds Inf (correct: far outside).
    grad_grid is 0, so grad_theta is exactly 0 (the reference, in float64, gives 0).

    The kernel forms ``-slope * (factor_x * source_x + ...)`` with factor_x = 0 and
    source_x = Inf: 0 * Inf = NaN in row 2 of grad_theta. The sampler's rule gives exactly
    this grad_grid (0) at infinite points, so such a NaN would reach the optimiser.
    """
    theta = np.array([[[1, 1, 1e38], [1, 1, 1], [1, 1, 1]]], np.float32)
    grad_grid = np.zeros((1, 1, 4, 2), np.float32)
    assert np.isinf(stn_numba.projective_grid(theta, (1, 1, 1, 4))).any()
    expected = reference.projective_grid_backward(grad_grid, theta, (1, 1, 1, 4))
    assert (expected == 0).all()
    np.testing.assert_array_equal(stn_numba.projective_grid_backward(grad_grid, theta, (1, 1, 1, 4)), expected)


BOUNDS_CHECKED = os.environ.get("NUMBA_BOUNDSCHECK") == "1"


@pytest.fixture(scope="module", autouse=True)
def serial_bounds_checked_kernels():
    """With NUMBA_BOUNDSCHECK=1, the CPU kernels run as serial bounds-checked copies.

    Numba loses exceptions raised inside parallel regions (numba/numba#9380,
    #2811): a bounds-checked ``parallel=True`` kernel reads out of bounds and
    returns as if nothing happened. Compiled without ``parallel`` (``prange``
    is then ``range``), the same source raises IndexError. The grid kernels
    and helpers are replaced by such copies, so the copies call each other;
    the sampler has serial twins of its kernels, used for all work here.
    """
    if not BOUNDS_CHECKED:
        yield
        return
    patch = pytest.MonkeyPatch()
    for module in (cpu_grids, cpu_sampling):
        for name, value in list(vars(module).items()):
            if isinstance(value, numba.core.registry.CPUDispatcher):
                options = {k: v for k, v in value.targetoptions.items()
                           if k not in ("parallel", "cache", "boundscheck")}
                patch.setattr(module, name, numba.njit(**options, boundscheck=True)(value.py_func))
    patch.setattr(cpu_sampling, "_SERIAL_WORK", float("inf"))
    patch.setattr(cpu_sampling, "_SERIAL_POINTWISE", float("inf"))
    patch.setattr(cpu_sampling, "_POOL_FORWARD", dict.fromkeys(cpu_sampling._POOL_FORWARD, float("inf")))
    for choice in (cpu_sampling._remembered_forward_kernel, cpu_sampling._remembered_backward_kernel):
        choice.cache_clear()  # kernels chosen before the serial bound changed
    yield
    patch.undo()
    for choice in (cpu_sampling._remembered_forward_kernel, cpu_sampling._remembered_backward_kernel):
        choice.cache_clear()


@pytest.mark.skipif(not BOUNDS_CHECKED, reason="only in the bounds-checked run (NUMBA_BOUNDSCHECK=1)")
def test_bounds_checking_is_on():
    """An out-of-bounds read in a kernel raises in this run: theta has 1 item, the grid 2."""
    with pytest.raises(IndexError):
        cpu_grids.affine_grid_2d(np.zeros((1, 2, 3)), np.empty((2, 3, 3, 2)), False)


# ------------------------------------------------------------------- the CLI
CLI_TOKENS = ["demo", "train", "evaluate", "fly", "--out", "--epochs", "--lr", "--batch-size", "--seed",
              "--distortion", "--model", "--transform", "--train-limit", "--test-limit", "--mnist-dir", "--resume",
              "--quick", "--json", "--help", "--", "-", "0", "-1", "3", "2.5", "nan", "inf", "-inf", "1e309", "abc",
              "R", "RTS", "P", "cnn", "st-cnn", "tps", "x", "", "c.npz", "/nonexistent/dir", "é💥", "a\x00b",
              "-" * 300]


class Reached(Exception):
    """Raised by the stubbed experiment functions: the arguments were accepted."""


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(st.sampled_from(CLI_TOKENS), max_size=8))
def test_cli_arguments_never_give_a_traceback(monkeypatch, capsys, argv):
    """Any argument list: usage + a one-line error and exit 2, help and exit 0, a one-line error and
    exit 1, or the experiment starts (stubbed here). Never another exception."""
    def reached(*args, **kwargs):
        raise Reached

    for name in ("train", "run_demo", "evaluate_checkpoint", "read_checkpoint"):
        monkeypatch.setattr(experiments, name, reached)
    try:
        status = cli.main(argv)
    except SystemExit as exit:
        status = exit.code
        _, err = capsys.readouterr()
        if status == 2:
            assert re.fullmatch(r"stn-numba[\w -]*: error: [^\n]*", err.strip().splitlines()[-1]), err
        else:
            assert status == 0 and "--help" in argv, (status, err)
        return
    except Reached:
        return
    _, err = capsys.readouterr()
    assert status == 1 and err.startswith("stn-numba ") and err.count("\n") == 1, (status, err)
