"""Tests of stn_numba.data.distortions: the distorted MNIST variants of Jaderberg et al. (2015)."""

import numpy as np
import pytest
from scipy import ndimage

from stn_numba import grids
from stn_numba.data import distortions, load_bundled

OUTPUT_SIDE = {"R": 28, "RTS": 42, "P": 28, "E": 28, "TC": 60}
KINDS = sorted(distortions.DISTORTIONS)


@pytest.fixture(scope="module")
def digits():
    return load_bundled().test_images[:6]


def similarity(angle, scale=1.0, shift=(0.0, 0.0), n=1):
    return {"angle": np.full(n, angle), "scale": np.full(n, scale), "shift": np.tile(shift, (n, 1))}


# --- common behaviour -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_shape_dtype_and_range(digits, kind):
    out = distortions.distort(digits, kind, np.random.default_rng(0))
    side = OUTPUT_SIDE[kind]
    assert out.shape == (len(digits), 1, side, side) and out.dtype == np.float32
    assert out.flags.c_contiguous
    # Bilinear weights sum to one, so values stay in the input's [0, 1] up to rounding.
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    assert np.all(out.sum(axis=(1, 2, 3)) > 0)


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_generator_is_deterministic_and_fresh_per_call(digits, kind):
    first = distortions.distort(digits, kind, np.random.default_rng(7))
    np.testing.assert_array_equal(first, distortions.distort(digits, kind, np.random.default_rng(7)))
    rng = np.random.default_rng(7)
    distortions.distort(digits, kind, rng)
    assert not np.array_equal(first, distortions.distort(digits, kind, rng))
    assert not np.array_equal(first, distortions.distort(digits, kind, np.random.default_rng(8)))


def test_chunking_does_not_change_results(digits, monkeypatch):
    params = distortions.DISTORTIONS["RTS"].draw(digits, np.random.default_rng(1))
    whole = distortions.DISTORTIONS["RTS"].apply(digits, params)
    monkeypatch.setattr(distortions, "CHUNK", 4)
    np.testing.assert_array_equal(whole, distortions.DISTORTIONS["RTS"].apply(digits, params))


def test_channels_share_one_warp(digits):
    pair = np.concatenate([digits[:2], 1 - digits[:2]], axis=1)
    params = distortions.DISTORTIONS["R"].draw(pair, np.random.default_rng(2))
    out = distortions.DISTORTIONS["R"].apply(pair, params)
    np.testing.assert_array_equal(out[:, :1], distortions.DISTORTIONS["R"].apply(digits[:2], params))


def test_bad_arguments(digits):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="kind must be one of R, RTS, P.*got 'X'"):
        distortions.distort(digits, "X", rng)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator.*got int"):
        distortions.distort(digits, "R", 0)
    with pytest.raises(TypeError, match="images must be floating point.*to_float_images"):
        distortions.distort((digits * 255).astype(np.uint8), "R", rng)
    with pytest.raises(ValueError, match=r"images must be a 4-D array \(N, C, H, W\), got shape \(6, 28, 28\)"):
        distortions.distort(digits[:, 0], "R", rng)
    with pytest.raises(ValueError, match="min <= max"):
        distortions.RandomSimilarity(max_angle=10, min_scale=2, max_scale=1)


# --- R and RTS ---------------------------------------------------------------------


def test_zero_rotation_is_identity(digits):
    out = distortions.DISTORTIONS["R"].apply(digits, similarity(0.0, n=len(digits)))
    np.testing.assert_allclose(out, digits, atol=1e-5)


@pytest.mark.parametrize("angle", [30.0, -75.0])
def test_rotation_matches_scipy(digits, angle):
    out = distortions.DISTORTIONS["R"].apply(digits, similarity(angle, n=len(digits)))
    reference = np.stack([ndimage.rotate(image[0], angle, reshape=False, order=1) for image in digits])
    # scipy's edge handling differs (constant mode); compare away from the border.
    np.testing.assert_allclose(out[:, 0, 3:-3, 3:-3], reference[:, 3:-3, 3:-3], atol=1e-5)
    assert np.abs(out - digits).max() > 0.5


def test_rts_matches_scipy_affine_transform(digits):
    angle, scale, shift = 25.0, 0.8, (5.0, -3.5)  # shift (x, y) in canvas pixels
    out = distortions.DISTORTIONS["RTS"].apply(digits[:2], similarity(angle, scale, shift, n=2))
    # Output pixel (row, col) reads input pixel centre + R(angle) (offset - shift) / scale, with y down.
    a = np.deg2rad(angle)
    rotation_rc = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) / scale
    out_centre, in_centre = np.full(2, 41 / 2), np.full(2, 27 / 2)
    offset = in_centre - rotation_rc @ (out_centre + np.array(shift[::-1]))
    rows, cols = np.mgrid[:42, :42]
    source = np.einsum("ij,jhw->ihw", rotation_rc, np.stack([rows, cols])) + offset[:, None, None]
    inside = np.all((source >= 1) & (source <= 26), axis=0)
    assert inside.sum() > 400
    for image, warped in zip(digits[:2, 0], out[:, 0]):
        reference = ndimage.affine_transform(image, rotation_rc, offset, output_shape=(42, 42), order=1)
        np.testing.assert_allclose(warped[inside], reference[inside], atol=1e-5)


def test_rts_draws_stay_in_the_paper_ranges(digits):
    images = np.zeros((500, 1, 28, 28), dtype=np.float32)
    params = distortions.DISTORTIONS["RTS"].draw(images, np.random.default_rng(3))
    assert np.all(np.abs(params["angle"]) <= 45) and np.ptp(params["angle"]) > 80
    assert np.all((params["scale"] >= 0.7) & (params["scale"] <= 1.2)) and np.ptp(params["scale"]) > 0.45
    margin = (42 - 28 * params["scale"]) / 2
    assert np.all(np.abs(params["shift"]) <= margin[:, None])
    assert np.all(np.abs(params["shift"]).max(axis=0) > 0.8 * margin.max())


def test_rts_canvas_holds_the_digit(digits):
    rts = distortions.DISTORTIONS["RTS"]
    params = rts.draw(digits, np.random.default_rng(4))
    out = rts.apply(digits, params)
    # The digit's ink is scaled by scale² in area; sampling keeps it to a few per cent.
    ratio = out.sum(axis=(1, 2, 3)) / digits.sum(axis=(1, 2, 3)) / params["scale"] ** 2
    np.testing.assert_allclose(ratio, 1.0, atol=0.06)
    # The ink's centroid sits where the digit's centre was moved.
    rows, cols = np.mgrid[:42, :42] - 41 / 2
    mass = out[:, 0].sum(axis=(1, 2))
    centroid = np.stack([(out[:, 0] * cols).sum(axis=(1, 2)), (out[:, 0] * rows).sum(axis=(1, 2))], -1) / mass[:, None]
    in_rows, in_cols = np.mgrid[:28, :28] - 27 / 2
    in_mass = digits[:, 0].sum(axis=(1, 2))
    in_centroid = np.stack([(digits[:, 0] * in_cols).sum(axis=(1, 2)), (digits[:, 0] * in_rows).sum(axis=(1, 2))], -1)
    in_centroid /= in_mass[:, None]
    a = np.deg2rad(params["angle"])
    # A counter-clockwise turn on screen (y down) moves (x, y) to (x cos + y sin, -x sin + y cos).
    turned = np.stack([in_centroid[:, 0] * np.cos(a) + in_centroid[:, 1] * np.sin(a),
                       -in_centroid[:, 0] * np.sin(a) + in_centroid[:, 1] * np.cos(a)], -1)
    expected = params["scale"][:, None] * turned + params["shift"]
    np.testing.assert_allclose(centroid, expected, atol=0.3)


# --- P -------------------------------------------------------------------------------


def test_corner_homography_maps_corners_to_the_square():
    rng = np.random.default_rng(5)
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * 0.8 + rng.normal(0, 0.1, (3, 4, 2))
    homographies = distortions.corner_homography(corners)
    assert homographies.shape == (3, 3, 3) and np.all(homographies[:, 2, 2] == 1)
    mapped = np.einsum("nij,nkj->nki", homographies, np.concatenate([corners, np.ones((3, 4, 1))], -1))
    square = np.broadcast_to([[-1, -1], [1, -1], [1, 1], [-1, 1]], (3, 4, 2))
    np.testing.assert_allclose(mapped[..., :2] / mapped[..., 2:], square, atol=1e-12)


def test_projective_with_unmoved_corners_is_identity(digits):
    square = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    out = distortions.DISTORTIONS["P"].apply(digits, {"corners": np.tile(square, (len(digits), 1, 1))})
    np.testing.assert_allclose(out, digits, atol=1e-5)


def test_projective_scaling_alone_matches_the_affine_path(digits):
    square = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    out = distortions.DISTORTIONS["P"].apply(digits, {"corners": np.tile(0.8 * square, (len(digits), 1, 1))})
    scaled = distortions.DISTORTIONS["R"].apply(digits, similarity(0.0, 0.8, n=len(digits)))
    np.testing.assert_allclose(out, scaled, atol=1e-5)


def test_projective_warp_matches_scipy_map_coordinates(digits):
    corners = distortions.DISTORTIONS["P"].draw(digits[:2], np.random.default_rng(12))["corners"]
    out = distortions.DISTORTIONS["P"].apply(digits[:2], {"corners": corners})
    homographies = distortions.corner_homography(corners)  # checked on the corners above
    centres = (2 * np.arange(28) + 1) / 28 - 1  # pixel centres, align_corners=False
    x, y = np.meshgrid(centres, centres)
    for image, warped, h in zip(digits[:2, 0], out[:, 0], homographies):
        mapped = np.einsum("ij,jhw->ihw", h, np.stack([x, y, np.ones_like(x)]))
        source_x, source_y = ((mapped[:2] / mapped[2]) + 1) * 28 / 2 - 0.5
        inside = (source_x >= 1) & (source_x <= 26) & (source_y >= 1) & (source_y <= 26)
        assert inside.sum() > 300
        reference = ndimage.map_coordinates(image, [source_y, source_x], order=1)
        np.testing.assert_allclose(warped[inside], reference[inside], atol=1e-5)


def test_projective_draws():
    images = np.zeros((2000, 1, 28, 28), dtype=np.float32)
    corners = distortions.DISTORTIONS["P"].draw(images, np.random.default_rng(6))["corners"]
    square = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    # Every quadrilateral is convex with the square's orientation, so the warp never folds.
    edges = np.roll(corners, -1, axis=1) - corners
    following = np.roll(edges, -1, axis=1)
    turns = edges[..., 0] * following[..., 1] - edges[..., 1] * following[..., 0]
    assert np.all(turns > 0)
    # Scale in [0.75, 1] (mean 0.875) and σ = 5 px = 5/14 in normalised units, per axis.
    scale = (corners * square).mean(axis=(1, 2))
    assert abs(scale.mean() - 0.875) < 0.02
    noise = corners - scale[:, None, None] * square
    assert abs(noise.std() - 5 / 14) < 0.03


# --- E -------------------------------------------------------------------------------


def control_points():
    return grids.tps_control_points((4, 4))


def test_elastic_without_noise_is_identity(digits):
    sources = np.tile(control_points(), (len(digits), 1, 1))
    out = distortions.DISTORTIONS["E"].apply(digits, {"sources": sources})
    np.testing.assert_allclose(out, digits, atol=1e-5)


def test_elastic_scaling_alone_matches_the_affine_path(digits):
    # A thin-plate spline reproduces affine maps exactly.
    sources = np.tile(control_points() / 0.8, (len(digits), 1, 1))
    out = distortions.DISTORTIONS["E"].apply(digits, {"sources": sources})
    scaled = distortions.DISTORTIONS["R"].apply(digits, similarity(0.0, 0.8, n=len(digits)))
    np.testing.assert_allclose(out, scaled, atol=1e-5)


def test_elastic_draws():
    images = np.zeros((2000, 1, 28, 28), dtype=np.float32)
    sources = distortions.DISTORTIONS["E"].draw(images, np.random.default_rng(11))["sources"]
    assert sources.shape == (2000, 16, 2)
    control = control_points()
    # Control points read at c / scale + noise, scale ~ U(0.75, 1), σ = 1.5 px = 1.5/14 normalised.
    # The least-squares estimate of 1/scale carries noise of σ/|c| ≈ 0.025, hence the slack.
    inverse_scale = (sources * control).sum(axis=(1, 2)) / (control**2).sum()
    assert inverse_scale.min() > 1 - 0.12 and inverse_scale.max() < 4 / 3 + 0.12
    assert abs(inverse_scale.mean() - np.log(4 / 3) / 0.25) < 0.01
    noise = sources - inverse_scale[:, None, None] * control
    assert abs(noise.std() - 1.5 / 14) < 0.01


# --- TC ------------------------------------------------------------------------------


def test_translated_cluttered_matches_a_loop_reference(digits):
    tc = distortions.DISTORTIONS["TC"]
    params = tc.draw(digits, np.random.default_rng(9))
    out = tc.apply(digits, params)
    for i, image in enumerate(digits[:, 0]):
        expected = np.zeros((60, 60), dtype=np.float32)
        row, col = params["position"][i]
        expected[row:row + 28, col:col + 28] = image
        for source, (cut_row, cut_col), (row, col) in zip(params["source"][i], params["cut"][i], params["paste"][i]):
            assert source != i
            patch = digits[source, 0, cut_row:cut_row + 6, cut_col:cut_col + 6]
            expected[row:row + 6, col:col + 6] = np.maximum(expected[row:row + 6, col:col + 6], patch)
        np.testing.assert_array_equal(out[i, 0], expected)


def test_translated_cluttered_draws_cover_the_canvas():
    images = np.zeros((400, 1, 28, 28), dtype=np.float32)
    params = distortions.DISTORTIONS["TC"].draw(images, np.random.default_rng(10))
    assert params["position"].min() == 0 and params["position"].max() == 32
    assert params["paste"].min() == 0 and params["paste"].max() == 54
    assert params["cut"].min() == 0 and params["cut"].max() == 22
    assert np.all(params["source"] != np.arange(400)[:, None]) and params["source"].max() == 399


def test_translated_cluttered_needs_other_digits(digits):
    with pytest.raises(ValueError, match="at least 2 images"):
        distortions.distort(digits[:1], "TC", np.random.default_rng(0))
