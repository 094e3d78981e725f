"""warp (an image sampled at p + u(p), u in pixels), tricubic sampling, and integrate_velocity.

warp is checked against grid_sample at the equivalent absolute grid (which
tests/test_sampling.py checks against the reference and torch), by float64
central differences, for precision on large images, determinism and the
non-finite rule; tricubic against the reference and against 2-D bicubic on a
volume constant along one axis; integrate_velocity on flows with known
results.
"""

import numba
import numpy as np
import pytest

import reference
import stn_numba
from sampler_cases import ALIGN, ALL_PADDINGS, MODES, PADDINGS
from stn_numba import nn
from stn_numba.nn import functional as F
from stn_numba.tensor import Tensor

MODE_DIMS = [(dim, mode) for dim in (2, 3) for mode in MODES]
FILL = 1.25


def fill_of(padding_mode):
    return {"fill_value": FILL} if padding_mode == "constant" else {}


def absolute_grid(displacement, align_corners):
    """The normalised grid (N, *S, A) of the points p + u(p) (x, y[, z] last), in float64."""
    spatial = displacement.shape[2:]
    pixels = np.meshgrid(*[np.arange(size, dtype=np.float64) for size in spatial], indexing="ij")
    components = []
    for k in range(len(spatial)):  # grid component k reads array axis -1 - k
        axis = len(spatial) - 1 - k
        size = spatial[axis]
        point = pixels[axis][None] + displacement[:, axis].astype(np.float64)
        components.append(2 * point / (size - 1) - 1 if align_corners else (2 * point + 1) / size - 1)
    return np.stack(components, axis=-1)


def displacement_gradient(grad_grid, spatial, align_corners):
    """The gradient of a displacement from that of its absolute grid (chain rule: dg/dp)."""
    dims = len(spatial)
    return np.stack([grad_grid[..., dims - 1 - axis] * (2 / (spatial[axis] - 1) if align_corners else 2 / spatial[axis])
                     for axis in range(dims)], axis=1)


def case(rng, dim, dtype=np.float64, reach=3.0):
    shape = (2, 3) + (5, 6, 7)[-dim:]
    input = rng.standard_normal(shape)
    displacement = rng.uniform(-reach, reach, (2, dim) + shape[2:])
    grad_output = rng.standard_normal(shape)
    return input.astype(dtype), displacement.astype(dtype), grad_output.astype(dtype)


@pytest.mark.parametrize("padding_mode", ALL_PADDINGS)
@pytest.mark.parametrize("dim, mode", MODE_DIMS)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_warp_is_grid_sample_at_the_absolute_grid(rng, dim, mode, padding_mode, align_corners):
    args, kwargs = (mode, padding_mode, align_corners), fill_of(padding_mode)
    input, displacement, grad_output = case(rng, dim)
    grid = absolute_grid(displacement, align_corners)
    np.testing.assert_allclose(stn_numba.warp(input, displacement, *args, **kwargs),
                               stn_numba.grid_sample(input, grid, *args, **kwargs), rtol=1e-10, atol=1e-11)
    grad_input, grad_displacement = stn_numba.warp_backward(grad_output, input, displacement, *args, **kwargs)
    expected_input, grad_grid = stn_numba.grid_sample_backward(grad_output, input, grid, *args, **kwargs)
    np.testing.assert_allclose(grad_input, expected_input, rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(grad_displacement, displacement_gradient(grad_grid, input.shape[2:], align_corners),
                               rtol=1e-9, atol=1e-10)
    skipped, only = stn_numba.warp_backward(grad_output, input, displacement, *args, input_requires_grad=False,
                                            **kwargs)
    assert skipped is None
    np.testing.assert_array_equal(only, grad_displacement)


@pytest.mark.parametrize("dim, mode", [(2, "bilinear"), (2, "bicubic"), (3, "bilinear"), (3, "nearest")])
def test_float32_warp_matches_float64(rng, dim, mode):
    input, displacement, grad_output = case(rng, dim, np.float32, reach=1.5)
    exact = stn_numba.warp(input.astype(np.float64), displacement.astype(np.float64), mode, "border")
    got = stn_numba.warp(input, displacement, mode, "border")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, exact, rtol=2e-4, atol=2e-4)


def test_relative_offsets_keep_their_precision_on_large_images(rng):
    """A float32 warp of a 2**18-pixel row by a sub-pixel field against the float64
    truth: the relative offsets keep u's precision; an absolute normalised grid
    rounds p + u, so its error grows with the image (pytorch#94816)."""
    width = 2**18
    input = rng.standard_normal((1, 1, 1, width)).astype(np.float32)
    displacement = np.zeros((1, 2, 1, width), np.float32)
    displacement[:, 1] = rng.uniform(-0.5, 0.5, width).astype(np.float32)
    truth = stn_numba.warp(input.astype(np.float64), displacement.astype(np.float64))
    relative = np.abs(stn_numba.warp(input, displacement) - truth).max()
    grid = absolute_grid(displacement, False).astype(np.float32)
    absolute = np.abs(stn_numba.grid_sample(input, grid) - truth).max()
    assert relative < 2e-6
    assert absolute > 100 * relative


SMOOTH_FRACTIONS = np.array([0.11, 0.27, 0.38, 0.62, 0.79, 0.91])


def smooth_case(rng, dim):
    """float64 (input, displacement, weights) whose points lie 0.11 pixels or more from every half
    pixel (where the kinks are), some of them outside the input."""
    shape = (1, 2) + (4, 5, 6)[-dim:]
    whole = rng.integers(-3, 3, (1, dim) + shape[2:])
    displacement = whole + rng.choice(SMOOTH_FRACTIONS, (1, dim) + shape[2:])
    return rng.standard_normal(shape), displacement, rng.standard_normal(shape)


@pytest.mark.parametrize("padding_mode", ALL_PADDINGS)
@pytest.mark.parametrize("dim, mode", [(2, "bilinear"), (2, "bicubic"), (3, "bilinear"), (3, "bicubic")])
def test_warp_gradients_match_finite_differences(rng, dim, mode, padding_mode):
    input, displacement, weights = smooth_case(rng, dim)
    args, kwargs = (mode, padding_mode, True), fill_of(padding_mode)

    def loss_of_input(x):
        return float(np.sum(stn_numba.warp(x, displacement, *args, **kwargs) * weights))

    def loss_of_displacement(u):
        return float(np.sum(stn_numba.warp(input, u, *args, **kwargs) * weights))

    grad_input, grad_displacement = stn_numba.warp_backward(weights, input, displacement, *args, **kwargs)
    np.testing.assert_allclose(grad_input, reference.central_difference(loss_of_input, input), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(grad_displacement, reference.central_difference(loss_of_displacement, displacement),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dim", [2, 3])
def test_warp_backward_is_bitwise_the_same_for_any_thread_count(rng, dim):
    input, displacement, grad_output = case(rng, dim, np.float32)
    input, displacement, grad_output = input[:1], displacement[:1], grad_output[:1]  # one image: four runs
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        try:
            results.append(stn_numba.warp_backward(grad_output, input, displacement, "bicubic", "reflection"))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for first, second in zip(*results):
        np.testing.assert_array_equal(first.view(np.uint32), second.view(np.uint32))


@pytest.mark.parametrize("padding_mode", ALL_PADDINGS)
@pytest.mark.parametrize("mode", MODES)
def test_non_finite_displacements_follow_the_rule(rng, mode, padding_mode):
    input = rng.standard_normal((1, 2, 4, 5))
    displacement = np.zeros((1, 2, 4, 5))
    displacement[0, 1, 0, :3] = [np.nan, np.inf, -np.inf]
    kwargs = fill_of(padding_mode)
    output = stn_numba.warp(input, displacement, mode, padding_mode, **kwargs)
    gradients = stn_numba.warp_backward(np.ones_like(input), input, displacement, mode, padding_mode, **kwargs)
    assert np.isfinite(output).all() and all(np.isfinite(g).all() for g in gradients)
    nan_point, plus, minus = output[0, :, 0, 0], output[0, :, 0, 1], output[0, :, 0, 2]
    outside = FILL if padding_mode == "constant" else 0.0
    np.testing.assert_array_equal(nan_point, outside)
    if padding_mode in ("zeros", "constant", "circular"):  # far outside, or (circular) nothing
        np.testing.assert_array_equal(plus, outside)
        np.testing.assert_array_equal(minus, outside)
    else:  # the nearest edge
        np.testing.assert_allclose(plus, input[0, :, 0, -1], rtol=1e-12)
        np.testing.assert_allclose(minus, input[0, :, 0, 0], rtol=1e-12)
    assert not gradients[1][0, :, 0, 0].any()  # a NaN point: no gradient at all
    assert not gradients[1][0, 1, 0, 1:3].any()  # an infinite component: none along it


@pytest.mark.parametrize("kwargs, error, words", [
    ({"displacement": np.zeros((1, 2, 4, 4))}, ValueError, ["displacement must have shape (1, 2, 4, 5)"]),
    ({"displacement": np.zeros((1, 3, 4, 5))}, ValueError, ["displacement must have shape"]),
    ({"displacement": np.zeros((1, 2, 4, 5), np.float32)}, TypeError, ["must share one dtype"]),
    ({"input": np.zeros((1, 2, 0, 5)), "displacement": np.zeros((1, 2, 0, 5))}, ValueError, ["non-empty"]),
    ({"mode": "area"}, ValueError, ["mode must be one of"]),
    ({"padding_mode": "wrap"}, ValueError, ["padding_mode must be one of"]),
    ({"fill_value": 2.0}, ValueError, ["fill_value applies only to padding_mode='constant'"]),
    ({"align_corners": "yes"}, TypeError, ["align_corners must be True or False"]),
])
def test_bad_warp_arguments_are_named(kwargs, error, words):
    arguments = {"input": np.zeros((1, 2, 4, 5)), "displacement": np.zeros((1, 2, 4, 5)), **kwargs}
    for call in (lambda: stn_numba.warp(**arguments),
                 lambda: stn_numba.warp_backward(np.zeros(arguments["input"].shape), **arguments)):
        with pytest.raises(error) as caught:
            call()
        for word in words:
            assert word in str(caught.value)


# ---------------------------------------------------------------- tricubic
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_tricubic_on_a_volume_constant_along_z_is_bicubic_of_a_slice(rng, padding_mode, align_corners):
    image = rng.standard_normal((2, 3, 6, 7))
    volume = np.repeat(image[:, :, None], 5, axis=2)  # (N, C, D, H, W), constant along z
    grid = rng.uniform(-1.6, 1.6, (2, 3, 4, 5, 3))
    pixel_z = rng.uniform(1.0, 2.99, grid.shape[:-1])  # every z tap inside
    grid[..., 2] = 2 * pixel_z / 4 - 1 if align_corners else (2 * pixel_z + 1) / 5 - 1
    args = ("bicubic", padding_mode, align_corners)
    flat_grid = grid[..., :2].reshape(2, 3 * 4, 5, 2)
    expected = stn_numba.grid_sample(image, flat_grid, *args).reshape(2, 3, 3, 4, 5)
    np.testing.assert_allclose(stn_numba.grid_sample(volume, grid, *args), expected, rtol=1e-10, atol=1e-11)


# ---------------------------------------------------------------- integrate_velocity
def test_a_constant_velocity_gives_the_same_constant_displacement(rng):
    velocity = np.empty((2, 3, 4, 5, 6))
    velocity[:, 0], velocity[:, 1], velocity[:, 2] = 0.4, -0.7, 1.3
    for padding_mode in ("border", "circular"):
        np.testing.assert_allclose(stn_numba.integrate_velocity(velocity, padding_mode=padding_mode), velocity,
                                   rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(stn_numba.integrate_velocity(velocity, steps=0), velocity)


def test_the_flows_of_v_and_minus_v_undo_each_other():
    """A smooth periodic velocity: the displacements of +v and -v compose to nearly
    zero (each map undoes the other), and the map never folds."""
    y, x = np.mgrid[0:48, 0:48] / 48.0
    velocity = np.stack([1.2 * np.sin(2 * np.pi * x), 1.2 * np.cos(2 * np.pi * y)])[None]
    forward = stn_numba.integrate_velocity(velocity, padding_mode="circular")
    backward = stn_numba.integrate_velocity(-velocity, padding_mode="circular")
    composed = forward + stn_numba.warp(backward, forward, padding_mode="circular")  # backward after forward
    assert np.abs(forward).max() > 1.0
    assert np.abs(composed).max() < 0.03 * np.abs(forward).max()
    assert stn_numba.jacobian_determinant(forward).min() > 0


@pytest.mark.parametrize("dim", [2, 3])
def test_integrate_velocity_gradient_matches_finite_differences(rng, dim):
    velocity = rng.uniform(-0.8, 0.8, (1, dim) + (5, 6, 4)[:dim])
    weights = rng.standard_normal(velocity.shape)
    for padding_mode in ("zeros", "circular"):
        def loss(v, padding_mode=padding_mode):
            return float(np.sum(stn_numba.integrate_velocity(v, 3, padding_mode=padding_mode) * weights))

        got = stn_numba.integrate_velocity_backward(weights, velocity, 3, padding_mode=padding_mode)
        np.testing.assert_allclose(got, reference.central_difference(loss, velocity), rtol=1e-6, atol=1e-7)


def test_bad_integration_arguments_are_named():
    velocity = np.zeros((1, 2, 4, 4))
    with pytest.raises(ValueError, match="steps must be an int of at least 0"):
        stn_numba.integrate_velocity(velocity, steps=-1)
    with pytest.raises(ValueError, match="steps must be an int"):
        stn_numba.integrate_velocity(velocity, steps=2.5)
    with pytest.raises(ValueError, match="'constant'"):
        stn_numba.integrate_velocity(velocity, padding_mode="constant")
    with pytest.raises(ValueError, match="velocity must have shape"):
        stn_numba.integrate_velocity(np.zeros((1, 3, 4, 4)))


# ---------------------------------------------------------------- the tape and the layers
def test_tape_ops_and_layers_give_the_backward_functions(rng):
    input, displacement, weights = case(rng, 2)
    x, u = Tensor(input, requires_grad=True), Tensor(displacement, requires_grad=True)
    layer = nn.Warp(padding_mode="constant", fill_value=FILL)
    (layer(x, u) * Tensor(weights)).sum().backward()
    expected = stn_numba.warp_backward(weights, input, displacement, padding_mode="constant", fill_value=FILL)
    np.testing.assert_array_equal(x.grad, expected[0])
    np.testing.assert_array_equal(u.grad, expected[1])
    v = Tensor(displacement * 0.2, requires_grad=True)
    integrated = nn.IntegrateVelocity(steps=4)(v)
    np.testing.assert_array_equal(integrated.data, stn_numba.integrate_velocity(displacement * 0.2, 4))
    (F.warp(Tensor(input), integrated) * Tensor(weights)).sum().backward()
    grad_u = stn_numba.warp_backward(weights, input, integrated.data)[1]
    np.testing.assert_array_equal(v.grad, stn_numba.integrate_velocity_backward(grad_u, displacement * 0.2, 4))
