"""The paper's other grid generators: projective, thin-plate spline, attention and similarity.

Each is compared with the loop reference per dtype and align_corners, its
backward with float64 central differences, and its identity parameters with
the identity affine grid.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import reference
import stn_numba
from sampler_cases import ALIGN, DTYPES
from stn_numba import _tps, grids
from stn_numba._families import GRID_FAMILIES
from tolerances import tolerances

SIZES = [(2, 1, 3, 4), (1, 2, 1, 3)]  # the second has a unit axis (base coordinate 0)
MIN_W = 2.0**-20


def identity_grid(size, align_corners, dtype=np.float64):
    theta = np.broadcast_to(np.eye(2, 3, dtype=dtype), (size[0], 2, 3))
    return stn_numba.affine_grid(theta, size, align_corners=align_corners)


def random_grad_grid(rng, size, dtype=np.float64):
    return rng.standard_normal((size[0], *size[2:], 2)).astype(dtype)


def assert_matches_finite_differences(forward, backward, x, weights, eps=1e-6, rtol=1e-7, atol=1e-8):
    """backward(weights) equals the central-difference gradient of sum(forward(x) * weights) at x."""
    expected = reference.central_difference(lambda t: float(np.sum(forward(t) * weights)), x, eps)
    np.testing.assert_allclose(backward(weights), expected, rtol=rtol, atol=atol)


# ------------------------------------------------------------------ projective
def random_homography(rng, n, dtype=np.float64):
    """Homographies with h33 = 1 and |h31|, |h32| <= 0.25, so w = h_3 · p stays in [0.5, 1.5]."""
    theta = rng.standard_normal((n, 3, 3))
    theta[:, 2, :2] = rng.uniform(-0.25, 0.25, (n, 2))
    theta[:, 2, 2] = 1.0
    return theta.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_projective_grid_backward_matches_reference(rng, size, align_corners, dtype):
    theta, grad_grid = random_homography(rng, size[0], dtype), random_grad_grid(rng, size, dtype)
    grad_theta = stn_numba.projective_grid_backward(grad_grid, theta, size, align_corners=align_corners)
    assert grad_theta.dtype == dtype and grad_theta.shape == (size[0], 3, 3)
    expected = reference.projective_grid_backward(grad_grid, theta, size, align_corners)
    np.testing.assert_allclose(grad_theta, expected, **tolerances(dtype, "grid"))


@pytest.mark.parametrize("align_corners", ALIGN)
def test_projective_grid_backward_matches_finite_differences(rng, align_corners):
    size = (2, 1, 4, 5)
    theta = random_homography(rng, 2)
    assert_matches_finite_differences(
        lambda t: stn_numba.projective_grid(t, size, align_corners=align_corners),
        lambda g: stn_numba.projective_grid_backward(g, theta, size, align_corners=align_corners),
        theta, random_grad_grid(rng, size))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_projective_grid_without_perspective_is_affine_grid(rng, align_corners, dtype):
    size = (3, 1, 4, 5)
    theta = random_homography(rng, 3, dtype)
    theta[:, 2] = (0, 0, 1)
    np.testing.assert_allclose(stn_numba.projective_grid(theta, size, align_corners=align_corners),
                               stn_numba.affine_grid(theta[:, :2], size, align_corners=align_corners),
                               **tolerances(dtype, "grid"))
    # ... and then the first two rows of the gradient are affine_grid's.
    grad_grid = random_grad_grid(rng, size, dtype)
    grad_theta = stn_numba.projective_grid_backward(grad_grid, theta, size, align_corners=align_corners)
    np.testing.assert_allclose(grad_theta[:, :2],
                               stn_numba.affine_grid_backward(grad_grid, size, align_corners=align_corners),
                               **tolerances(dtype, "grid"))


def horizon_homography(dtype, h33):
    """w = x + h33: with h33 = 0 the middle column of an odd-width grid lies on the horizon (w = 0)."""
    theta = np.array([[[1.0, 0.5, 0.25], [0.5, -1.0, 0.75], [1.0, 0.0, h33]]])
    return theta.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("h33, sign", [(0.0, 1.0), (-1e-9, -1.0), (4e-7, 1.0), (-4e-7, -1.0)])
def test_projective_near_zero_w_is_clamped_keeping_its_sign(h33, sign, dtype):
    size = (1, 1, 3, 5)  # align_corners=True puts the middle column at x = 0, so w = h33 there
    theta = horizon_homography(dtype, h33)
    grid = stn_numba.projective_grid(theta, size, align_corners=True)
    ys = np.array([-1.0, 0.0, 1.0])
    numerators = np.stack([0.5 * ys + 0.25, -ys + 0.75], axis=-1)  # (h_1 · p, h_2 · p) at x = 0
    np.testing.assert_allclose(grid[0, :, 2], numerators / (sign * MIN_W), rtol=1e-6)
    np.testing.assert_allclose(grid, reference.projective_grid(theta, size, True), **tolerances(dtype, "grid"))
    assert np.all(np.isfinite(grid))

    grad_grid = np.zeros(grid.shape, dtype)
    grad_grid[0, :, 2] = 1.0  # only the clamped points
    grad_theta = stn_numba.projective_grid_backward(grad_grid, theta, size, align_corners=True)
    # The clamped w is constant: the third row gets nothing, the others p / (±2**-20).
    np.testing.assert_array_equal(grad_theta[0, 2], 0.0)
    np.testing.assert_allclose(grad_theta[0, :2], np.tile([0.0, 0.0, 3.0], (2, 1)) / (sign * MIN_W), rtol=1e-6)


def test_projective_backward_matches_finite_differences_with_clamped_points(rng):
    # w = 4e-7 at the middle column: steps of 1e-7 keep it in (0, 2**-20), clamped on one side
    # (w = 0 itself is a jump from +2**20 to -2**20 times the numerator, as the exact map jumps
    # from +inf to -inf). Grid values there are ~1e6, hence the atol.
    size = (1, 1, 3, 5)
    theta = horizon_homography(np.float64, 4e-7)
    assert_matches_finite_differences(
        lambda t: stn_numba.projective_grid(t, size, align_corners=True),
        lambda g: stn_numba.projective_grid_backward(g, theta, size, align_corners=True),
        theta, random_grad_grid(rng, size), eps=1e-7, rtol=1e-7, atol=1e-2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_projective_horizon_stays_finite_and_samples_far_outside(rng, dtype):
    size = (1, 1, 3, 5)
    theta = horizon_homography(dtype, 0.0) * dtype(1e3)  # large finite entries
    grid = stn_numba.projective_grid(theta, size, align_corners=True)
    assert np.all(np.isfinite(grid))
    grad_theta = stn_numba.projective_grid_backward(random_grad_grid(rng, size, dtype), theta, size,
                                                    align_corners=True)
    assert np.all(np.isfinite(grad_theta))
    # The samplers treat the huge coordinates as far outside: zeros padding reads 0.
    image = rng.uniform(1.0, 2.0, (1, 1, 4, 4)).astype(dtype)
    output = stn_numba.grid_sample(image, grid, align_corners=True)
    assert np.all(np.abs(grid[0, :, 2]) > 1e5)
    np.testing.assert_array_equal(output[0, 0, :, 2], 0)


# ------------------------------------------------------------- thin-plate spline
EXPLICIT_POINTS = np.array([[-0.9, -0.8], [0.7, -0.6], [0.1, 0.2], [-0.5, 0.9], [0.8, 0.75]])
CONTROL_POINTS = [(4, 4), (2, 3), EXPLICIT_POINTS]
CONTROL_IDS = ["4x4", "2x3", "explicit"]


def perturbed_control_points(rng, control_points, n, dtype=np.float64):
    points = stn_numba.tps_control_points(control_points)
    return (points + 0.2 * rng.standard_normal((n, *points.shape))).astype(dtype)


def test_tps_control_points_layout():
    points = stn_numba.tps_control_points((2, 3))
    np.testing.assert_array_equal(points, [[-1, -1], [0, -1], [1, -1], [-1, 1], [0, 1], [1, 1]])
    assert stn_numba.tps_control_points().shape == (16, 2)
    np.testing.assert_array_equal(stn_numba.tps_control_points(EXPLICIT_POINTS.tolist()), EXPLICIT_POINTS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("control_points", CONTROL_POINTS, ids=CONTROL_IDS)
@pytest.mark.parametrize("size", [(2, 1, 5, 6), (1, 1, 1, 3)])
@pytest.mark.parametrize("align_corners", ALIGN)
def test_tps_grid_matches_reference(rng, size, align_corners, control_points, dtype):
    theta = perturbed_control_points(rng, control_points, size[0], dtype)
    grid = stn_numba.tps_grid(theta, size, control_points, align_corners=align_corners)
    assert grid.dtype == dtype and grid.shape == (size[0], *size[2:], 2)
    points = stn_numba.tps_control_points(control_points)
    expected = reference.tps_grid(theta, size, points, align_corners)
    np.testing.assert_allclose(grid, expected, **tolerances(dtype, "tps"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("control_points", CONTROL_POINTS, ids=CONTROL_IDS)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_tps_grid_backward_matches_reference(rng, align_corners, control_points, dtype):
    size = (2, 1, 4, 5)
    grad_grid = random_grad_grid(rng, size, dtype)
    grad_theta = stn_numba.tps_grid_backward(grad_grid, size, control_points, align_corners=align_corners)
    points = stn_numba.tps_control_points(control_points)
    assert grad_theta.dtype == dtype and grad_theta.shape == (2, len(points), 2)
    expected = reference.tps_grid_backward(grad_grid, size, points, align_corners)
    np.testing.assert_allclose(grad_theta, expected, **tolerances(dtype, "tps"))


@pytest.mark.parametrize("control_points", CONTROL_POINTS, ids=CONTROL_IDS)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_tps_grid_backward_matches_finite_differences(rng, align_corners, control_points):
    size = (2, 1, 4, 5)
    theta = perturbed_control_points(rng, control_points, 2)
    assert_matches_finite_differences(
        lambda t: stn_numba.tps_grid(t, size, control_points, align_corners=align_corners),
        lambda g: stn_numba.tps_grid_backward(g, size, control_points, align_corners=align_corners),
        theta, random_grad_grid(rng, size))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("control_points", CONTROL_POINTS, ids=CONTROL_IDS)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_tps_control_points_at_rest_give_identity_grid(align_corners, control_points, dtype):
    size = (2, 1, 5, 6)
    points = stn_numba.tps_control_points(control_points).astype(dtype)
    theta = np.broadcast_to(points, (2, *points.shape))
    np.testing.assert_allclose(stn_numba.tps_grid(theta, size, control_points, align_corners=align_corners),
                               identity_grid(size, align_corners, dtype), **tolerances(dtype, "grid"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_tps_grid_interpolates_the_control_points(rng, dtype):
    # With align_corners=True, 7 pixels per axis put pixels 0, 2, 4, 6 on a 4x4 control grid.
    size = (2, 1, 7, 7)
    theta = perturbed_control_points(rng, (4, 4), 2, dtype)
    grid = stn_numba.tps_grid(theta, size, (4, 4), align_corners=True)
    np.testing.assert_allclose(grid[:, ::2, ::2].reshape(2, 16, 2), theta, **tolerances(dtype, "grid"))
    # Explicit control points on pixel centres of an align_corners=False grid.
    size = (1, 1, 4, 4)
    centres = (2 * np.arange(4) + 1) / 4 - 1
    pixels = [(0, 1), (3, 0), (2, 2), (1, 3)]  # (row, column)
    points = np.array([(centres[c], centres[r]) for r, c in pixels])
    theta = perturbed_control_points(rng, points, 1, dtype)
    grid = stn_numba.tps_grid(theta, size, points, align_corners=False)
    np.testing.assert_allclose(np.array([grid[0, r, c] for r, c in pixels]), theta[0], **tolerances(dtype, "grid"))


def test_tps_matrix_is_cached_per_configuration(rng):
    cached = _tps._cached_matrix
    cached.cache_clear()
    theta = perturbed_control_points(rng, (3, 3), 1)
    first = stn_numba.tps_grid(theta, (1, 1, 4, 4), (3, 3))
    stn_numba.tps_grid_backward(first, (1, 1, 4, 4), (3, 3))
    assert cached.cache_info().misses == 1 and cached.cache_info().hits == 1
    stn_numba.tps_grid(theta.astype(np.float32), (1, 1, 4, 4), (3, 3))
    stn_numba.tps_grid(theta, (1, 1, 4, 4), (3, 3), align_corners=True)
    assert cached.cache_info().misses == 3


BLAS_THREADS_SCRIPT = """
import hashlib, numpy as np, stn_numba
rng = np.random.default_rng(0)
size = (2, 1, 256, 256)  # large enough for OpenBLAS to use several threads
for dtype in (np.float64, np.float32):
    theta = rng.standard_normal((2, 16, 2)).astype(dtype)
    grad_grid = rng.standard_normal((2, 256, 256, 2)).astype(dtype)
    for result in (stn_numba.tps_grid(theta, size), stn_numba.tps_grid_backward(grad_grid, size)):
        print(hashlib.sha256(result.tobytes()).hexdigest())
"""


def test_tps_is_bitwise_identical_for_any_blas_thread_count():
    # OpenBLAS reads its thread count at import, so each count runs in its own process.
    root = pathlib.Path(__file__).resolve().parents[1]
    outputs = [
        subprocess.run([sys.executable, "-c", BLAS_THREADS_SCRIPT], cwd=root, check=True, capture_output=True,
                       text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": str(threads)}).stdout
        for threads in (1, 3)
    ]
    assert len(outputs[0].split()) == 4 and outputs[0] == outputs[1]


# ------------------------------------------------------- attention and similarity
def random_similarity(rng, n, dtype=np.float64):
    return np.column_stack([rng.uniform(0.5, 1.5, n), rng.uniform(-np.pi, np.pi, n),
                            rng.uniform(-0.5, 0.5, (n, 2))]).astype(dtype)


def random_attention(rng, n, dtype=np.float64):
    return np.column_stack([rng.uniform(0.5, 1.5, n), rng.uniform(-0.5, 0.5, (n, 2))]).astype(dtype)


# family: (random parameters for n transforms, the reference grid)
PARAMETRIC_FAMILIES = {
    "projective": (random_homography, reference.projective_grid),
    "attention": (random_attention, reference.attention_grid),
    "similarity": (random_similarity, reference.similarity_grid),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("family", PARAMETRIC_FAMILIES)
def test_projective_attention_and_similarity_grids_match_reference(rng, family, size, align_corners, dtype):
    random_params, reference_grid = PARAMETRIC_FAMILIES[family]
    params = random_params(rng, size[0], dtype)
    grid = GRID_FAMILIES[family].grid(params, size, align_corners=align_corners)
    assert grid.dtype == dtype and grid.shape == (size[0], *size[2:], 2)
    np.testing.assert_allclose(grid, reference_grid(params, size, align_corners), **tolerances(dtype, "grid"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conversions_to_affine(rng, dtype):
    s, angle, tx, ty = random_similarity(rng, 1, dtype)[0]
    theta = grids.similarity_to_affine(np.array([[s, angle, tx, ty]], dtype))
    assert theta.dtype == dtype
    expected = [[s * np.cos(angle), -s * np.sin(angle), tx], [s * np.sin(angle), s * np.cos(angle), ty]]
    np.testing.assert_allclose(theta[0], expected, **tolerances(dtype, "grid"))
    theta = grids.attention_to_affine(np.array([[s, tx, ty]], dtype))
    np.testing.assert_array_equal(theta[0], np.array([[s, 0, tx], [0, s, ty]], dtype))


def test_positive_angle_turns_the_content_counter_clockwise_on_screen():
    image = np.zeros((1, 1, 5, 5))
    image[0, 0, 2, 3] = 1.0  # right of the centre
    grid = stn_numba.similarity_grid(np.array([[1.0, np.pi / 2, 0, 0]]), image.shape, align_corners=True)
    output = stn_numba.grid_sample(image, grid, mode="nearest", align_corners=True)
    assert np.argwhere(output[0, 0] > 0.5).tolist() == [[1, 2]]  # above the centre


@pytest.mark.parametrize("align_corners", ALIGN)
def test_attention_and_similarity_backward_match_finite_differences(rng, align_corners):
    size = (2, 1, 4, 5)
    weights = random_grad_grid(rng, size)
    assert_matches_finite_differences(
        lambda p: stn_numba.attention_grid(p, size, align_corners=align_corners),
        lambda g: stn_numba.attention_grid_backward(g, size, align_corners=align_corners),
        random_attention(rng, 2), weights)
    params = random_similarity(rng, 2)
    assert_matches_finite_differences(
        lambda p: stn_numba.similarity_grid(p, size, align_corners=align_corners),
        lambda g: stn_numba.similarity_grid_backward(g, params, size, align_corners=align_corners),
        params, weights)


def test_conversion_backward_match_finite_differences(rng):
    weights = rng.standard_normal((3, 2, 3))
    assert_matches_finite_differences(grids.attention_to_affine, grids.attention_to_affine_backward,
                                      random_attention(rng, 3), weights)
    params = random_similarity(rng, 3)
    assert_matches_finite_differences(grids.similarity_to_affine,
                                      lambda g: grids.similarity_to_affine_backward(g, params), params, weights)


def test_parameter_backward_in_float32(rng):
    size = (2, 1, 3, 4)
    grad_grid, params = random_grad_grid(rng, size), random_similarity(rng, 2)
    single = stn_numba.similarity_grid_backward(grad_grid.astype(np.float32), params.astype(np.float32), size)
    assert single.dtype == np.float32 and single.shape == (2, 4)
    np.testing.assert_allclose(single, stn_numba.similarity_grid_backward(grad_grid, params, size), rtol=1e-5,
                               atol=1e-5)
    single = stn_numba.attention_grid_backward(grad_grid.astype(np.float32), size)
    assert single.dtype == np.float32 and single.shape == (2, 3)
    np.testing.assert_allclose(single, stn_numba.attention_grid_backward(grad_grid, size), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ every family
def identity_parameters(family, n, dtype, control_points=(2, 2)):
    """The family's identity parameters for ``n`` images, and the options its functions take."""
    identity = family.identity(control_points).astype(dtype)
    return np.broadcast_to(identity, (n, *identity.shape)), family.options(control_points)


@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("family", [f for f in GRID_FAMILIES.values() if f.name != "tps"], ids=lambda f: f.name)
def test_identity_parameters_give_the_identity_grid_exactly(family, align_corners):
    # (tps: test_tps_control_points_at_rest_give_identity_grid, to rounding)
    size = (2, 1, 3, 4)
    params, options = identity_parameters(family, 2, np.float64)
    np.testing.assert_array_equal(family.grid(params, size, align_corners=align_corners, **options),
                                  identity_grid(size, align_corners))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(0, 1, 3, 4), (2, 1, 0, 4)])
@pytest.mark.parametrize("family", GRID_FAMILIES.values(), ids=lambda f: f.name)
def test_empty_shapes(family, size, dtype):
    params, options = identity_parameters(family, size[0], dtype)
    grid = family.grid(params, size, **options)
    assert grid.shape == (size[0], *size[2:], 2) and grid.dtype == dtype
    grad = family.backward(np.zeros(grid.shape, dtype), params, size, **options)
    assert grad.shape == params.shape and grad.dtype == dtype
    np.testing.assert_array_equal(grad, 0)


def test_layouts_give_the_same_result(rng, layout_variants):
    size = (3, 1, 4, 5)
    theta, grad_grid = random_homography(rng, 3), random_grad_grid(rng, size)
    expected_grid = stn_numba.projective_grid(theta, size)
    expected_grad = stn_numba.projective_grid_backward(grad_grid, theta, size)
    for name, variant in layout_variants(theta).items():
        np.testing.assert_array_equal(stn_numba.projective_grid(variant, size), expected_grid, err_msg=name)
    for name, variant in layout_variants(grad_grid).items():
        np.testing.assert_array_equal(stn_numba.projective_grid_backward(variant, theta, size), expected_grad,
                                      err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_is_bitwise_deterministic(rng, results_for_every_thread_count, dtype):
    size = (3, 1, 13, 17)
    theta, grad_grid = random_homography(rng, 3, dtype), random_grad_grid(rng, size, dtype)
    for call in (lambda: stn_numba.projective_grid_backward(grad_grid, theta, size),
                 lambda: stn_numba.tps_grid_backward(grad_grid, size)):
        results = results_for_every_thread_count(call)
        for result in results[1:]:
            np.testing.assert_array_equal(result, results[0])


# ------------------------------------------------------------------ validation
def test_projective_validation():
    theta = np.tile(np.eye(3), (2, 1, 1))
    with pytest.raises(ValueError, match=r"theta must have shape \(2, 3, 3\).*got ndarray of shape \(2, 2, 3\)"):
        stn_numba.projective_grid(theta[:, :2], (2, 1, 3, 4))
    with pytest.raises(ValueError, match="size must have 4 entries.*projective_grid makes 2-D grids only"):
        stn_numba.projective_grid(theta, (2, 1, 3, 4, 5))
    with pytest.raises(TypeError, match="theta must have dtype float32 or float64, got int64"):
        stn_numba.projective_grid(theta.astype(np.int64), (2, 1, 3, 4))
    with pytest.raises(TypeError, match="grad_grid, theta must share one dtype"):
        stn_numba.projective_grid_backward(np.zeros((2, 3, 4, 2), np.float32), theta, (2, 1, 3, 4))
    with pytest.raises(ValueError, match=r"grad_grid must have shape \(2, 3, 4, 2\)"):
        stn_numba.projective_grid_backward(np.zeros((2, 4, 3, 2)), theta, (2, 1, 3, 4))
    with pytest.raises(TypeError, match="align_corners must be True or False"):
        stn_numba.projective_grid(theta, (2, 1, 3, 4), align_corners="yes")


@pytest.mark.parametrize("control_points, error, message", [
    ((1, 4), ValueError, r"each at least 2, got \(1, 4\)"),
    ((4, 4, 4), ValueError, "must be 2 ints"),
    ((4.0, 4.0), TypeError, "must be ints"),
    ("4x4", TypeError, "control_points must be"),
    ([[0, 0], [1, 1]], ValueError, r"at least 3 of them, got shape \(2, 2\)"),
    ([[0, 0], [1]], ValueError, "ragged"),
    (7, TypeError, "control_points must be .* got int 7"),
    ([[0, 0], [1, 1], [0.5, 0.5]], ValueError, "on one line"),
    ([[0, 0], [1, 0], [0, 0], [0, 1]], ValueError, "distinct"),
    ([[0, 0], [1, 0], [np.nan, 1]], ValueError, "finite"),
    (np.zeros((4, 3)), ValueError, r"got shape \(4, 3\)"),
])
def test_tps_control_point_validation(control_points, error, message):
    with pytest.raises(error, match=message):
        stn_numba.tps_control_points(control_points)
    with pytest.raises(error, match=message):
        stn_numba.tps_grid_backward(np.zeros((1, 3, 3, 2)), (1, 1, 3, 3), control_points)


def test_tps_theta_validation():
    with pytest.raises(ValueError, match=r"theta must have shape \(2, 16, 2\) \(the source point of each "
                                         r"control point\), got ndarray of shape \(2, 9, 2\)"):
        stn_numba.tps_grid(np.zeros((2, 9, 2)), (2, 1, 3, 3))
    with pytest.raises(ValueError, match="tps_grid makes 2-D grids only"):
        stn_numba.tps_grid(np.zeros((2, 16, 2)), (2, 1, 3, 3, 3))


def test_parameter_validation():
    with pytest.raises(ValueError, match=r"params must have shape \(2, 3\) \(rows \(s, tx, ty\)\), got ndarray "
                                         r"of shape \(2, 4\)"):
        stn_numba.attention_grid(np.zeros((2, 4)), (2, 1, 3, 3))
    with pytest.raises(ValueError, match=r"params must have shape \(3, 4\)"):
        stn_numba.similarity_grid(np.zeros((2, 4)), (3, 1, 3, 3))
    with pytest.raises(ValueError, match=r"params must be a 2-D array \(N, 4\)"):
        grids.similarity_to_affine(np.zeros(4))
    with pytest.raises(TypeError, match="grad_grid, params must share one dtype"):
        stn_numba.similarity_grid_backward(np.zeros((2, 3, 3, 2)), np.zeros((2, 4), np.float32), (2, 1, 3, 3))
    with pytest.raises(ValueError, match=r"grad_theta must have shape \(2, 2, 3\)"):
        grids.similarity_to_affine_backward(np.zeros((3, 2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="attention_grid_backward makes 2-D grids only"):
        stn_numba.attention_grid_backward(np.zeros((1, 2, 2, 2, 3)), (1, 1, 2, 2, 2))
