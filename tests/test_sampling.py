"""grid_sample and grid_sample_backward against the loop reference, finite differences and torch.

Every mode x padding_mode x align_corners x 4-D/5-D x dtype is compared with
``tests/reference.py``, which is itself checked against torch (float64, with
autograd) on random points and on points exactly on pixels, half pixels and
borders, where the derivative is one-sided.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference
import stn_numba
from sampler_cases import ALIGN, COMBO_ARGS, COMBOS, DTYPES, INPUT_SHAPES, LEAN_COMBOS, MODES, PADDINGS, TORCH_COMBOS
from tolerances import tolerances

UNIT_AXIS_SHAPES = {2: (1, 2, 1, 4), 3: (1, 2, 3, 1, 1)}  # unit axes: zero scale with align_corners=True
OUTPUT_SPATIAL = {2: (3, 4), 3: (2, 3, 2)}


def pixel_to_grid(pixel, size, align_corners):
    """The grid value whose unnormalised coordinate is ``pixel`` (exact for dyadic sizes)."""
    pixel = np.asarray(pixel, dtype=np.float64)
    return 2.0 * pixel / (size - 1) - 1.0 if align_corners else (2.0 * pixel + 1.0) / size - 1.0


def random_case(rng, dim, dtype=np.float64, spread=1.25, shape=None):
    """(input, grid, grad_output) with grid points inside and up to ``spread`` - 1 outside [-1, 1]."""
    shape = shape or INPUT_SHAPES[dim]
    input = rng.standard_normal(shape)
    grid = rng.uniform(-spread, spread, (shape[0], *OUTPUT_SPATIAL[dim], dim))
    grad_output = rng.standard_normal((shape[0], shape[1], *OUTPUT_SPATIAL[dim]))
    return input.astype(dtype), grid.astype(dtype), grad_output.astype(dtype)


def random_cases(rng, dim, dtype=np.float64, spread=1.25):
    """A random case, and one whose input has unit spatial axes."""
    return [random_case(rng, dim, dtype, spread), random_case(rng, dim, dtype, spread, UNIT_AXIS_SHAPES[dim])]


def as_grid(points, dim):
    """Points (P, dim) as a grid (1, P, 1, dim) or (1, P, 1, 1, dim)."""
    return points.reshape((1, len(points)) + (1,) * (dim - 1) + (dim,))


def special_points(rng, dim, size, align_corners):
    """Points with components exactly on pixels, half pixels and borders, from 2.5 pixels outside.

    ``size`` should make the unnormalisation exact: size - 1 a power of two
    with align_corners=True, size a power of two otherwise.
    """
    pixels = np.arange(-5, 2 * size + 4) / 2.0
    points = []
    for axis in range(dim):
        p = rng.uniform(0.1, size - 1.1, (len(pixels), dim))
        p[:, axis] = pixels
        points.append(p)
    edges = [-0.5, 0.0, size - 1.0, size - 0.5]
    points.append(np.array(np.meshgrid(*[edges] * dim)).reshape(dim, -1).T)
    return as_grid(pixel_to_grid(np.concatenate(points), size, align_corners), dim)


def special_case(rng, dim, mode, align_corners, dtype=np.float64):
    size = 5 if align_corners else 4
    grid = special_points(rng, dim, size, align_corners)
    input = rng.standard_normal((1, 2) + (size,) * dim)
    grad_output = rng.standard_normal((1, 2, *grid.shape[1:-1]))
    return input.astype(dtype), grid.astype(dtype), grad_output.astype(dtype)


def large_case(rng, dim, align_corners):
    """float64 points up to 2**23 pixels away, below the clamp bound of 2**24 pixels, on a dyadic cube."""
    size = 5 if align_corners else 4
    pixels = [2.0**23 + 0.25, -(2.0**23) - 0.75, 1e6 + 0.375, -1e6 + 2.5, 12345.625]
    return nonfinite_case(rng, dim, pixel_to_grid(pixels, size, align_corners), np.float64, spatial=(size,) * 3)


def smooth_pixels(rng, count, size):
    """Pixel coordinates at least 0.03 pixels from every multiple of 0.5, where all kinks lie.

    Includes points just inside and just outside the borders and the
    reflection lines, so finite differences never straddle a kink.
    """
    near = np.array([-0.03, 0.03, -0.47, -0.53, size - 1.03, size - 0.97, size - 0.53, size - 0.47])
    halves = rng.integers(-3, 2 * size + 1, count)
    random = (halves + rng.uniform(0.06, 0.94, count)) / 2.0
    return np.concatenate([near, random])


def smooth_case(rng, dim, align_corners):
    """float64 (input, grid, weights) whose grid is smooth within +-1e-5 of every point."""
    shape = (1, 2) + (4, 5, 6)[-dim:]
    components = []
    for k in range(dim):  # grid component k (x, y, z) reads array axis -1 - k
        size = shape[-1 - k]
        components.append(pixel_to_grid(rng.permutation(smooth_pixels(rng, 10, size)), size, align_corners))
    grid = as_grid(np.stack(components, axis=-1), dim)
    input = rng.standard_normal(shape)
    weights = rng.standard_normal((1, 2, *grid.shape[1:-1]))
    return input, grid, weights


def assert_backward_close(got, expected, dtype):
    (got_input, got_grid), (expected_input, expected_grid) = got, expected
    np.testing.assert_allclose(got_input, expected_input, err_msg="grad_input", **tolerances(dtype, "sampled"))
    np.testing.assert_allclose(got_grid, expected_grid, err_msg="grad_grid", **tolerances(dtype, "sampled"))


# ---------------------------------------------------------------- the reference itself
@pytest.mark.parametrize(COMBO_ARGS, TORCH_COMBOS)
def test_reference_matches_torch(rng, dim, mode, padding_mode, align_corners):
    pytest.importorskip("torch")
    args = (mode, padding_mode, align_corners)
    cases = [*random_cases(rng, dim, spread=1.5), special_case(rng, dim, mode, align_corners),
             large_case(rng, dim, align_corners)]
    for input, grid, grad_output in cases:
        output, grad_input, grad_grid = reference.torch_grid_sample(input, grid, *args, grad_output=grad_output)
        np.testing.assert_allclose(reference.grid_sample(input, grid, *args), output, rtol=1e-12, atol=1e-12)
        assert_backward_close(reference.grid_sample_backward(grad_output, input, grid, *args),
                              (grad_input, grad_grid), np.float64)


# ---------------------------------------------------------------- stn_numba vs reference
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(COMBO_ARGS, COMBOS)
def test_forward_matches_reference(rng, dim, mode, padding_mode, align_corners, dtype):
    for input, grid, _ in random_cases(rng, dim, dtype):
        output = stn_numba.grid_sample(input, grid, mode, padding_mode, align_corners)
        assert output.dtype == dtype
        assert output.shape == input.shape[:2] + grid.shape[1:-1]
        expected = reference.grid_sample(input, grid, mode, padding_mode, align_corners)
        np.testing.assert_allclose(output, expected, **tolerances(dtype, "sampled"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(COMBO_ARGS, COMBOS)
def test_backward_matches_reference(rng, dim, mode, padding_mode, align_corners, dtype):
    args = (mode, padding_mode, align_corners)
    for input, grid, grad_output in random_cases(rng, dim, dtype):
        grad_input, grad_grid = stn_numba.grid_sample_backward(grad_output, input, grid, *args)
        assert grad_input.dtype == dtype and grad_grid.dtype == dtype
        assert grad_input.shape == input.shape and grad_grid.shape == grid.shape
        assert_backward_close((grad_input, grad_grid),
                              reference.grid_sample_backward(grad_output, input, grid, *args), dtype)
        if mode == "nearest":
            assert not grad_grid.any()
        # Skipping grad_input changes nothing else.
        skipped, grad_grid_only = stn_numba.grid_sample_backward(grad_output, input, grid, *args,
                                                                 input_requires_grad=False)
        assert skipped is None
        np.testing.assert_array_equal(grad_grid_only, grad_grid)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(COMBO_ARGS, LEAN_COMBOS)
def test_exact_pixels_and_borders_match_reference(rng, dim, mode, padding_mode, align_corners, dtype):
    """Points exactly on pixels and borders: one-sided derivatives, as torch (the reference is checked above)."""
    input, grid, grad_output = special_case(rng, dim, mode, align_corners, dtype)
    args = (mode, padding_mode, align_corners)
    np.testing.assert_allclose(stn_numba.grid_sample(input, grid, *args),
                               reference.grid_sample(input, grid, *args), **tolerances(dtype, "sampled"))
    assert_backward_close(stn_numba.grid_sample_backward(grad_output, input, grid, *args),
                          reference.grid_sample_backward(grad_output, input, grid, *args), dtype)


@pytest.mark.parametrize(COMBO_ARGS, TORCH_COMBOS)
def test_matches_torch(rng, dim, mode, padding_mode, align_corners):
    pytest.importorskip("torch")
    args = (mode, padding_mode, align_corners)
    for dtype in DTYPES:
        for input, grid, grad_output in [*random_cases(rng, dim, dtype, spread=1.5),
                                         special_case(rng, dim, mode, align_corners, dtype)]:
            output, grad_input, grad_grid = reference.torch_grid_sample(input, grid, *args, grad_output=grad_output)
            np.testing.assert_allclose(stn_numba.grid_sample(input, grid, *args), output,
                                       **tolerances(dtype, "sampled"))
            assert_backward_close(stn_numba.grid_sample_backward(grad_output, input, grid, *args),
                                  (grad_input, grad_grid), dtype)


# ---------------------------------------------------------------- finite differences
@pytest.mark.parametrize(COMBO_ARGS, COMBOS)
def test_gradients_match_finite_differences(rng, dim, mode, padding_mode, align_corners):
    input, grid, weights = smooth_case(rng, dim, align_corners)
    args = (mode, padding_mode, align_corners)

    def loss_of_input(x):
        return float(np.sum(stn_numba.grid_sample(x, grid, *args) * weights))

    def loss_of_grid(g):
        return float(np.sum(stn_numba.grid_sample(input, g, *args) * weights))

    grad_input, grad_grid = stn_numba.grid_sample_backward(weights, input, grid, *args)
    np.testing.assert_allclose(grad_input, reference.central_difference(loss_of_input, input), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(grad_grid, reference.central_difference(loss_of_grid, grid), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dim, mode", [(2, "bilinear"), (2, "bicubic"), (3, "bilinear")])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_theta_gradient_through_sampler_matches_finite_differences(rng, dim, mode, padding_mode, align_corners):
    """The spatial transformer's chain: theta -> affine_grid -> grid_sample."""
    input = rng.standard_normal((2, 2) + (4, 5, 6)[-dim:])
    size = (2, 2) + (3, 4, 5)[-dim:]
    theta = np.eye(dim, dim + 1) * 1.1 + rng.uniform(-0.2, 0.2, (2, dim, dim + 1))
    weights = rng.standard_normal(size)
    args = (mode, padding_mode, align_corners)

    def loss(t):
        return float(np.sum(stn_numba.grid_sample(input, stn_numba.affine_grid(t, size, align_corners), *args)
                            * weights))

    grid = stn_numba.affine_grid(theta, size, align_corners)
    _, grad_grid = stn_numba.grid_sample_backward(weights, input, grid, *args, input_requires_grad=False)
    grad_theta = stn_numba.affine_grid_backward(grad_grid, size, align_corners)
    np.testing.assert_allclose(grad_theta, reference.central_difference(loss, theta), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- properties
def draw_setup(data, dims=(2, 3)):
    """Draw (dim, mode, padding_mode, align_corners, dtype, generator)."""
    dim = data.draw(st.sampled_from(dims), label="dim")
    mode = data.draw(st.sampled_from(MODES), label="mode")
    padding_mode = data.draw(st.sampled_from(PADDINGS), label="padding_mode")
    align_corners = data.draw(st.booleans(), label="align_corners")
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    return dim, mode, padding_mode, align_corners, dtype, np.random.default_rng(seed)


def draw_size(data, dim):
    spatial = data.draw(st.lists(st.integers(1, 6 if dim == 2 else 4), min_size=dim, max_size=dim), label="spatial")
    return (data.draw(st.integers(1, 2), label="N"), data.draw(st.integers(1, 3), label="C"), *spatial)


@given(data=st.data())
def test_identity_theta_reproduces_the_input(data):
    dim, mode, padding_mode, align_corners, dtype, rng = draw_setup(data)
    size = draw_size(data, dim)
    input = rng.standard_normal(size).astype(dtype)
    theta = np.broadcast_to(np.eye(dim, dim + 1), (size[0], dim, dim + 1)).astype(dtype)
    grid = stn_numba.affine_grid(theta, size, align_corners)
    output = stn_numba.grid_sample(input, grid, mode, padding_mode, align_corners)
    np.testing.assert_allclose(output, input, rtol=1e-5, atol=1e-5 if dtype == np.float32 else 1e-12)


def shifted(input, shifts, padding_mode):
    """input[..., i + shift] per spatial axis: zeros or the clipped edge outside."""
    spatial = input.shape[2:]
    output = np.zeros_like(input)
    for index in np.ndindex(*spatial):
        source = [i + s for i, s in zip(index, shifts)]
        if padding_mode == "border":
            source = [min(max(i, 0), n - 1) for i, n in zip(source, spatial)]
        elif not all(0 <= i < n for i, n in zip(source, spatial)):
            continue
        output[(..., *index)] = input[(..., *source)]
    return output


@given(data=st.data())
def test_integer_pixel_translation_is_a_shift(data):
    dim, mode, _, align_corners, dtype, rng = draw_setup(data)
    padding_mode = data.draw(st.sampled_from(["zeros", "border"]), label="padding_mode")
    size = draw_size(data, dim)
    spatial = size[2:]
    shifts = [data.draw(st.integers(-n, n), label="shift") for n in spatial]  # array order: (D,) H, W
    theta = np.zeros((size[0], dim, dim + 1))
    theta[:, :, :dim] = np.eye(dim)
    for axis, (shift, n) in enumerate(zip(shifts, spatial)):
        unit = (n - 1) / 2 if align_corners else n / 2  # pixels per normalised unit
        if unit == 0:
            shifts[axis] = 0  # a unit axis with align_corners=True ignores translation
            continue
        theta[:, dim - 1 - axis, dim] = shift / unit
    input = rng.standard_normal(size).astype(dtype)
    grid = stn_numba.affine_grid(theta.astype(dtype), size, align_corners)
    output = stn_numba.grid_sample(input, grid, mode, padding_mode, align_corners)
    np.testing.assert_allclose(output, shifted(input, shifts, padding_mode), rtol=1e-5,
                               atol=1e-4 if dtype == np.float32 else 1e-10)


def draw_grid_case(data):
    dim, mode, padding_mode, align_corners, dtype, rng = draw_setup(data)
    size = draw_size(data, dim)
    out_spatial = data.draw(st.lists(st.integers(1, 4), min_size=dim, max_size=dim), label="out_spatial")
    grid = rng.uniform(-1.5, 1.5, (size[0], *out_spatial, dim)).astype(dtype)
    return (mode, padding_mode, align_corners), size, grid, dtype, rng


@given(data=st.data())
def test_linear_in_the_input(data):
    args, size, grid, dtype, rng = draw_grid_case(data)
    first, second = rng.standard_normal((2, *size)).astype(dtype)
    a, b = dtype(1.5), dtype(-0.75)
    combined = stn_numba.grid_sample(a * first + b * second, grid, *args)
    separate = a * stn_numba.grid_sample(first, grid, *args) + b * stn_numba.grid_sample(second, grid, *args)
    np.testing.assert_allclose(combined, separate, rtol=1e-5, atol=1e-5 if dtype == np.float32 else 1e-12)


@given(data=st.data())
def test_grad_input_is_the_adjoint(data):
    """<grid_sample(x), y> == <x, grad_input(y)>."""
    args, size, grid, dtype, rng = draw_grid_case(data)
    x = rng.standard_normal(size).astype(dtype)
    y = rng.standard_normal(size[:2] + grid.shape[1:-1]).astype(dtype)
    grad_input, _ = stn_numba.grid_sample_backward(y, x, grid, *args)
    forward = np.vdot(stn_numba.grid_sample(x, grid, *args).astype(np.float64), y.astype(np.float64))
    adjoint = np.vdot(x.astype(np.float64), grad_input.astype(np.float64))
    assert np.isclose(forward, adjoint, rtol=1e-4 if dtype == np.float32 else 1e-12,
                      atol=1e-4 if dtype == np.float32 else 1e-12)


# ---------------------------------------------------------------- shapes, dtypes, layouts
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("input_spatial, output_spatial", [((7, 7), (2, 3)), ((3, 4), (9, 11)),
                                                           ((4, 4, 4), (2, 1, 3)), ((2, 3, 2), (4, 5, 3))])
def test_output_size_follows_the_grid(rng, input_spatial, output_spatial, dtype):
    """Down- and upsampling: the output has the grid's spatial size."""
    dim = len(input_spatial)
    input = rng.standard_normal((2, 3, *input_spatial)).astype(dtype)
    grid = rng.uniform(-1.1, 1.1, (2, *output_spatial, dim)).astype(dtype)
    output = stn_numba.grid_sample(input, grid, align_corners=True)
    assert output.shape == (2, 3, *output_spatial) and output.dtype == dtype
    np.testing.assert_allclose(output, reference.grid_sample(input, grid, align_corners=True),
                               **tolerances(dtype, "sampled"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("input_shape, grid_shape", [
    ((0, 2, 3, 4), (0, 2, 5, 2)),
    ((0, 2, 3, 4, 2), (0, 2, 5, 1, 3)),
    ((2, 2, 3, 4), (2, 0, 5, 2)),
    ((2, 2, 3, 4, 2), (2, 2, 0, 1, 3)),
])
def test_empty_batch_or_output(input_shape, grid_shape, dtype):
    input, grid = np.ones(input_shape, dtype), np.zeros(grid_shape, dtype)
    output = stn_numba.grid_sample(input, grid)
    assert output.shape == input_shape[:2] + grid_shape[1:-1] and output.dtype == dtype
    grad_input, grad_grid = stn_numba.grid_sample_backward(np.ones(output.shape, dtype), input, grid)
    assert grad_input.shape == input_shape and grad_input.dtype == dtype and not grad_input.any()
    assert grad_grid.shape == grid_shape and grad_grid.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim, mode", [(2, "bicubic"), (3, "bilinear")])
def test_layouts_give_the_same_result(rng, layout_variants, compiled_specialisations, dim, mode, dtype):
    arrays = dict(zip(("input", "grid", "grad_output"), random_case(rng, dim, dtype)))
    args = (mode, "reflection", False)

    def run(input, grid, grad_output):
        return (stn_numba.grid_sample(input, grid, *args),
                *stn_numba.grid_sample_backward(grad_output, input, grid, *args))

    expected = run(**arrays)
    compiled = compiled_specialisations()
    for name, array in arrays.items():
        for layout, variant in layout_variants(array).items():
            got = run(**{**arrays, name: variant})
            for g, e in zip(got, expected):
                assert g.dtype == dtype, (name, layout)
                np.testing.assert_array_equal(g, e, err_msg=f"{name} {layout}")
    # every layout reaches the kernels as the same C-contiguous, writeable array type
    assert compiled_specialisations() - compiled == set()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim, mode", [(2, "bilinear"), (2, "bicubic"), (3, "bilinear")])
def test_backward_is_bitwise_deterministic(rng, results_for_every_thread_count, dim, mode, dtype):
    """Many sample points hit the same pixels; the result must not depend on runs or thread counts."""
    input = rng.standard_normal((3, 2) + ((16, 16) if dim == 2 else (6, 6, 6))).astype(dtype)
    out_spatial = (24, 24) if dim == 2 else (8, 8, 8)
    grid = rng.uniform(-0.4, 0.4, (3, *out_spatial, dim)).astype(dtype)
    grad_output = rng.standard_normal((3, 2, *out_spatial)).astype(dtype)
    results = results_for_every_thread_count(
        lambda: stn_numba.grid_sample_backward(grad_output, input, grid, mode, "border", False))
    for grad_input, grad_grid in results[1:]:
        np.testing.assert_array_equal(grad_input, results[0][0])
        np.testing.assert_array_equal(grad_grid, results[0][1])


def test_cpu_kernels_release_the_gil():
    """Other Python threads (a thread pool's tasks, a Dask worker's transfers) run while a kernel computes."""
    import numba

    from stn_numba._codes import BICUBIC, BILINEAR, NEAREST, ZEROS
    from stn_numba._cpu import conv, grids, sampling

    kernels = [value for module in (conv, grids, sampling) for value in vars(module).values()
               if isinstance(value, numba.core.registry.CPUDispatcher)
               and value.targetoptions.get("inline", "never") == "never"]
    shape, size = (2, 3, 8, 8), 384
    for mode in (NEAREST, BILINEAR, BICUBIC):
        kernels += [sampling._forward_kernel(fused, shape, size, mode, ZEROS) for fused in (False, True)]
        kernels += [sampling._backward_kernel(False, shape[:1] + (1,) + shape[2:], size, mode, ZEROS, False)[0]]
    assert len(kernels) > 20
    assert [kernel.py_func.__name__ for kernel in kernels if not kernel.targetoptions.get("nogil")] == []


@pytest.mark.parametrize("dim, mode, padding_mode", [
    (2, "nearest", "zeros"), (2, "bilinear", "reflection"), (2, "bicubic", "border"),
    (3, "bilinear", "zeros"), (3, "nearest", "reflection")])
def test_small_forwards_stay_on_the_calling_thread_and_larger_ones_take_the_pool(rng, dim, mode, padding_mode):
    """The pointwise forward, grid and fused alike, runs serially below `_POOL_FORWARD` tap reads
    (output values times taps a value; `_POOL_FORWARD_CHANNELS` with several channels) and on the
    pool from there; the backward of one channel takes the pool from `_SERIAL_POINTWISE`. The serial
    forward kernels, specialised on the padding as the parallel ones (their loops vectorise only then),
    give the tabled kernel's bits, non-finite points included."""
    from stn_numba._codes import MODES, PADDING_MODES
    from stn_numba._cpu import sampling

    mode_code, padding = MODES[mode], PADDING_MODES[padding_mode]
    taps = sampling.taps_per_axis(mode_code) ** dim
    shapes = (((1, 1, 4, 4), (2, 3, 11, 13), (2, 1, 11, 13), (2, 1, 28, 28), (1, 2, 100, 100), (1, 1, 256, 256))
              if dim == 2 else ((1, 1, 4, 4, 4), (1, 2, 2, 3, 4), (2, 3, 5, 6, 7), (2, 1, 9, 11, 13),
                                (1, 1, 16, 16, 20), (1, 2, 16, 16, 16), (1, 1, 32, 48, 48)))
    sizes = [int(np.prod(shape)) for shape in shapes]
    limits = [(sampling._POOL_FORWARD if shape[1] == 1 else sampling._POOL_FORWARD_CHANNELS)[dim]
              for shape in shapes]
    for one_channel in (True, False):  # both sides of both limits
        assert {size * taps >= limit for shape, size, limit in zip(shapes, sizes, limits)
                if (shape[1] == 1) == one_channel} == {False, True}
    for shape, size, limit in zip(shapes, sizes, limits):
        for fused in (False, True):
            kernel = sampling._forward_kernel(fused, shape, size, mode_code, padding)
            assert kernel.targetoptions.get("parallel", False) == (size * taps >= limit), (shape, fused)
        if mode != "bicubic" and shape[1] == 1:
            tap_slots = sampling._backward_kernel(False, shape, size, mode_code, padding, False)[1]
            assert (tap_slots > 0) == (size >= sampling._SERIAL_POINTWISE), shape  # pointwise tables
        if size * taps >= limit:
            continue
        input = rng.standard_normal(shape).astype(np.float32)
        input.flat[3] = np.inf
        grid = rng.uniform(-1.2, 1.2, (shape[0], *shape[2:], dim)).astype(np.float32)
        grid.flat[1:30:5] = np.nan, np.inf, -np.inf, 3e38, -3e38, 1e7
        theta = (np.eye(dim, dim + 1) + rng.uniform(-0.4, 0.4, (shape[0], dim, dim + 1))).astype(np.float32)
        for fused, points in ((False, grid), (True, theta)):
            tabled = np.empty_like(input)
            sampling.kernels(dim, mode_code, None, fused, False)[0](input, points, tabled, None, padding, False)
            if fused:
                result = stn_numba.affine_grid_sample(input, theta, shape, mode=mode, padding_mode=padding_mode)
            else:
                result = stn_numba.grid_sample(input, grid, mode=mode, padding_mode=padding_mode)
            assert np.isfinite(tabled).any()
            np.testing.assert_array_equal(result.view(np.uint32), tabled.view(np.uint32), err_msg=str((shape, fused)))


@pytest.mark.parametrize("narrow", [False, True], ids=["int64", "int32"])
@pytest.mark.parametrize("dim, mode, padding_mode, fused, channels, plane, dtype, align_corners", [
    (2, "bilinear", "zeros", False, 1, (11, 13), np.float32, False),
    (2, "bilinear", "border", True, 1, (11, 13), np.float32, False),
    (2, "bilinear", "reflection", False, 2, (11, 2), np.float32, False),
    (2, "bilinear", "zeros", False, 1, (2, 13), np.float32, True),
    (2, "bilinear", "reflection", True, 1, (2, 2), np.float32, True),
    (2, "bilinear", "zeros", False, 1, (11, 13), np.float64, True),
    (2, "nearest", "reflection", True, 1, (11, 13), np.float32, False),
    (2, "bicubic", "border", False, 3, (11, 13), np.float32, False),
    (3, "bilinear", "reflection", True, 1, (11, 13), np.float32, False),
    (3, "bilinear", "border", False, 1, (2, 13), np.float32, True),
    (3, "nearest", "zeros", False, 1, (11, 13), np.float32, False),
    (3, "bilinear", "zeros", True, 4, (11, 13), np.float32, False),
    (2, "nearest", "zeros", True, 3, (11, 13), np.float32, False),
    (3, "nearest", "border", False, 2, (11, 13), np.float64, False),
    (2, "bilinear", "zeros", False, 1, (181, 182), np.float32, False),
    (2, "bilinear", "border", True, 1, (181, 182), np.float32, True),
    (2, "bicubic", "zeros", False, 3, (181, 182), np.float32, False),
    (2, "nearest", "reflection", False, 3, (181, 182), np.float32, True),
    (2, "nearest", "zeros", True, 1, (181, 182), np.float64, False),
    (2, "bilinear", "reflection", False, 8, (11, 13), np.float32, False),
    (2, "bilinear", "reflection", False, 6, (181, 182), np.float64, True),
    (2, "bilinear", "zeros", True, 6, (181, 182), np.float32, False),
    (2, "bilinear", "border", True, 16, (11, 13), np.float64, True),
    (2, "bilinear", "zeros", False, 3, (181, 182), np.float32, True),
    (2, "bilinear", "border", False, 2, (2, 2), np.float32, False)])
def test_pointwise_and_tabled_forward_give_the_same_bits(rng, dim, mode, padding_mode, fused, channels, plane,
                                                        dtype, align_corners, narrow):
    """Most inputs take the pointwise forward kernel, the others (and the region kernels of
    `stn_numba.dask`) the tabled one: both must compute the same bits, non-finite points included,
    whether the pointwise kernel reads with int64 or int32 offsets (bilinear: pairs of adjacent
    pixels, rows and slices, which move a tap just outside the image's edge to the pair's other
    slot), a channel at a time or several with the same taps (nearest, and 2-D bilinear read in
    pairs: all of them, from a table of each piece's taps), and on planes of `_PREFETCH_PLANE`
    pixels or more with each task's input lines prefetched first (grid, fused, the tables)."""
    from stn_numba._codes import MODES, PADDING_MODES
    from stn_numba._cpu import sampling

    spatial = ((9,) + plane)[-dim:]
    out_spatial = (7, 12, 10)[-dim:]
    input = rng.standard_normal((3, channels, *spatial)).astype(dtype)
    input.flat[5] = np.inf
    if fused:
        points = (np.eye(dim, dim + 1) + rng.uniform(-0.6, 0.6, (3, dim, dim + 1))).astype(dtype)
    else:
        points = rng.uniform(-1.4, 1.4, (3, *out_spatial, dim)).astype(dtype)
        points.flat[3:24:4] = np.nan, np.inf, -np.inf, 3e38, -3e38, 1e7
    case = (dim, MODES[mode], PADDING_MODES[padding_mode], fused, True)
    pointwise, tabled = (np.empty((3, channels, *out_spatial), dtype) for _ in range(2))
    planes = sampling._pointwise_planes(case[1], channels, fused, dim == 2 and narrow)
    sampling.pointwise(*case, narrow, planes)(input, points, pointwise, None, case[2], align_corners)
    sampling.kernels(*case)[0](input, points, tabled, None, case[2], align_corners)
    assert np.isfinite(tabled).any()
    bits = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(pointwise.view(bits), tabled.view(bits))


@pytest.mark.parametrize("zen", [False, True])
def test_fused_forward_gives_the_same_bits_with_and_without_prefetches(rng, monkeypatch, zen):
    """The 2-D fused warp prefetches its input lines on AMD Zen hosts only (`_ZEN_HOST`), whatever
    host the tests run on: built either way, its kernel gives the tabled kernel's bits."""
    from stn_numba._codes import BILINEAR, ZEROS
    from stn_numba._cpu import sampling

    monkeypatch.setattr(sampling, "_ZEN_HOST", zen)
    input = rng.standard_normal((2, 3, 181, 182)).astype(np.float32)
    input.flat[5] = np.inf
    theta = (np.eye(2, 3) + rng.uniform(-0.6, 0.6, (2, 2, 3))).astype(np.float32)
    pointwise, tabled = (np.empty((2, 3, 40, 50), np.float32) for _ in range(2))
    sampling._make_pointwise(2, BILINEAR, ZEROS, True, True, True, 3, False)(input, theta, pointwise, None, ZEROS,
                                                                             False)
    sampling.kernels(2, BILINEAR, ZEROS, True, True)[0](input, theta, tabled, None, ZEROS, False)
    assert np.isfinite(tabled).any()
    np.testing.assert_array_equal(pointwise.view(np.uint32), tabled.view(np.uint32))



def test_repeated_calls_run_the_remembered_kernel_and_other_calls_are_still_validated(rng, monkeypatch):
    """A grid_sample call that repeats the shapes, dtypes and options of a valid one on NumPy arrays
    that need no copy runs the kernel chosen then (`_device.remember`): same values, no validation.
    Anything else takes the general path: new shapes or options, options equal to valid ones but of
    another type (align_corners=1), unhashable ones, copied arrays (read-only, strided, big-endian),
    and GPU requests."""
    from stn_numba import _device

    monkeypatch.setattr(_device, "_remembered", {})
    input = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    grid = rng.uniform(-1.2, 1.2, (2, 4, 7, 2)).astype(np.float32)
    first = stn_numba.grid_sample(input, grid, mode="nearest", align_corners=True)
    assert len(_device._remembered) == 1
    calls = []
    monkeypatch.setattr(stn_numba.sampling._checks, "grid_sample_args",
                        lambda *args, checked=stn_numba.sampling._checks.grid_sample_args:
                        calls.append(1) or checked(*args))
    np.testing.assert_array_equal(stn_numba.grid_sample(input, grid, mode="nearest", align_corners=True), first)
    input[0, 0, 0, 0] += 1  # values are not part of the key
    np.testing.assert_array_equal(stn_numba.grid_sample(input, grid, mode="nearest", align_corners=True),
                                  reference.grid_sample(input, grid, "nearest", "zeros", True))
    assert not calls
    with pytest.raises(TypeError, match="align_corners"):
        stn_numba.grid_sample(input, grid, mode="nearest", align_corners=1)
    with pytest.raises(ValueError, match="mode"):
        stn_numba.grid_sample(input, grid, mode=["nearest"], align_corners=True)
    with pytest.raises(ValueError, match="grid"):
        stn_numba.grid_sample(input, grid[:, :, :, :1].copy(), mode="nearest", align_corners=True)
    expected = reference.grid_sample(input, grid, "nearest", "zeros", True)
    read_only = input.copy()
    read_only.flags.writeable = False
    for other in (read_only, np.asfortranarray(input), input.astype(">f4")):
        np.testing.assert_array_equal(stn_numba.grid_sample(other, grid, mode="nearest", align_corners=True), expected)
    assert len(calls) == 6 and len(_device._remembered) == 1
    assert _device.remembered_key("grid_sample", "cuda", None, (input, grid), "nearest", "zeros", True) is None


def test_repeated_affine_and_backward_calls_are_remembered_and_other_calls_still_validated(rng, monkeypatch):
    """affine_grid, affine_grid_sample and both backward ops remember their calls as grid_sample does:
    a repeat gives the values of the new arrays without validation; a size of floats or numpy ints
    (equal to a valid size, refused or converted by validation) is never remembered, nor a backward
    without the input gradient; an align_corners of another type is validated again."""
    from stn_numba import _checks, _device

    monkeypatch.setattr(_device, "_remembered", {})
    input = rng.standard_normal((2, 3, 5, 6))
    theta = np.eye(2, 3) + rng.uniform(-0.3, 0.3, (2, 2, 3))
    size = (2, 3, 4, 7)
    grid = stn_numba.affine_grid(theta, size)
    grad_output = rng.standard_normal(size)
    calls = {
        "affine_grid": lambda: stn_numba.affine_grid(theta, size),
        "affine_grid_sample": lambda: stn_numba.affine_grid_sample(input, theta, size, padding_mode="border"),
        "grid_sample_backward": lambda: stn_numba.grid_sample_backward(grad_output, input, grid),
        "affine_grid_sample_backward": lambda: stn_numba.affine_grid_sample_backward(grad_output, input, theta, size),
    }

    def expected():
        grid_now = reference.affine_grid(theta, size, False)
        grad_input, grad_grid_now = reference.grid_sample_backward(grad_output, input, grid_now, "bilinear", "zeros",
                                                                   False)
        return {"affine_grid": grid_now,
                "affine_grid_sample": reference.grid_sample(input, grid_now, "bilinear", "border", False),
                "grid_sample_backward": reference.grid_sample_backward(grad_output, input, grid, "bilinear", "zeros",
                                                                       False),
                "affine_grid_sample_backward": (grad_input,
                                                reference.affine_grid_backward(grad_grid_now, size, False))}

    for call in calls.values():
        call()
    assert len(_device._remembered) == 4
    validations = []

    def counted(check):
        return lambda *args, **kwargs: validations.append(1) or check(*args, **kwargs)

    for name in ("size", "affine_grid_sample_args", "grid_sample_args"):
        monkeypatch.setattr(_checks, name, counted(getattr(_checks, name)))
    input += 1  # values are not part of the key
    theta[:, :, 2] += 0.1
    for name, values in expected().items():
        results = calls[name]()
        for result, value in zip(*((results, values) if name.endswith("backward") else ((results,), (values,)))):
            np.testing.assert_allclose(result, value, rtol=1e-10, atol=1e-12, err_msg=name)
    assert not validations and len(_device._remembered) == 4
    with pytest.raises(TypeError, match="size"):
        stn_numba.affine_grid(theta, (2.0, 3, 4, 7))
    with pytest.raises(TypeError, match="size"):
        stn_numba.affine_grid_sample(input, theta, (2, 3.0, 4, 7))
    with pytest.raises(TypeError, match="size"):
        stn_numba.affine_grid_sample_backward(grad_output, input, theta, (2, 3, 4.0, 7))
    with pytest.raises(TypeError, match="align_corners"):
        stn_numba.affine_grid_sample(input, theta, size, align_corners=1)
    numpy_size = tuple(np.int64(length) for length in size)
    np.testing.assert_array_equal(stn_numba.affine_grid(theta, numpy_size), calls["affine_grid"]())
    assert stn_numba.grid_sample_backward(grad_output, input, grid, input_requires_grad=False)[0] is None
    assert len(_device._remembered) == 4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 2, 7, 2**21 + 3, 2**22])
def test_rounded_index_from_a_float_s_bits_is_rint_inside_the_axis(dtype, size):
    """The CPU kernels' nearest tap with zeros padding reads ``rint(x)`` from the bits of ``x`` plus a
    shift where the axis size is an int32 (at most 2**22 pixels: `loads.narrow`). It must give
    `rint`'s index (ties to even) and the same inside/outside verdict as rounding and comparing in
    floating point, for ties, both edges, either side of 2**22 and 2**23, huge values, ±0, ±Inf, NaN."""
    from numba import njit

    from stn_numba._coords import rounded_index

    from_bits = njit(lambda x, size: rounded_index(x, np.int32(size)))
    halves = np.arange(-6, 13) / 2
    edges = np.array([size - 1, size, 2**22, 2**23, 2**24, 2**31, 1e7, 3e38])[:, None] + np.array([-0.5, 0, 0.5])
    values = np.concatenate([halves, -halves, edges.ravel(), -edges.ravel(), [0.0, -0.0, np.inf, -np.inf, np.nan]])
    values = values.astype(dtype)
    values = np.concatenate([values, np.nextafter(values, dtype(np.inf)), np.nextafter(values, dtype(-np.inf))])
    for x in values:
        index, inside = from_bits(x, size)
        rounded = np.rint(x)
        expected_inside = bool(0 <= rounded < size)  # NaN: False
        assert (inside, index) == (expected_inside, int(rounded) if expected_inside else 0), x


def test_narrow_planes_have_at_most_2_22_pixels_along_an_axis():
    """The int32 kernels round from a float's bits, exact to 2**22 (`rounded_index`), and read
    pairs of pixels, which need 2 along every axis."""
    from stn_numba._cpu.loads import narrow

    assert narrow((2, 2**22)) and narrow((2**22, 2))
    assert not narrow((2, 2**22 + 1)) and not narrow((1, 2**22 + 1), pairs=False)
    assert narrow((1, 2**22), pairs=False) and not narrow((1, 9))
    assert not narrow((2**15, 2**15))  # 2**30 pixels: no int32 flat index


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("sizes, region", [
    ((1, 1, 1), None), ((7, 1, 1), None), ((1, 5, 1), None), ((6, 4, 1), None), ((2**25 + 4, 2, 1), None),
    ((6, 4, 3), None), ((3, 1, 2), None), ((1, 2, 2**24 + 3), None),
    ((5, 4, 3), (40, 30, 20, 7, 11, 3)),  # a part of a larger input, at an origin
    ((5, 4, 1), (2**25, 9, 1, 2**25 - 5, 5, 0))])
def test_prefetch_offsets_stay_in_the_input(sizes, region, align_corners, dtype):
    """The pixel a prefetch reads, the one below it and (3-D) the two behind them lie in the input (or
    in the part of it a windowed kernel reads) for any grid value: NaN, ±Inf, huge, far outside, on the
    edges (a float32 bound above 2**24 rounds)."""
    from stn_numba._cpu import sampling

    width, height, depth = sizes
    dims = 3 if depth > 1 or region is not None and region[2] > 1 else 2
    region = np.array(region or sizes + (0, 0, 0), np.int64)
    values = [np.nan, np.inf, -np.inf, 3e38, -3e38, -1.5, -1.0, -0.2, 0.0, 0.7, 1.0, 1.3, 1e7]
    next_row = width if height > 1 else 0
    next_plane = width * height if depth > 1 else 0
    for gx in values:
        for gy in values:
            for gz in values if dims == 3 else [gx]:
                offset = sampling._prefetch_offset(dtype(gx), dtype(gy), dtype(gz), sizes, region, align_corners,
                                                   dims)
                assert 0 <= offset and offset + next_row + next_plane < width * height * depth, (gx, gy, gz, offset)

@pytest.mark.parametrize("mode, padding_mode, fused", [
    ("bilinear", "zeros", True), ("bilinear", "reflection", False), ("nearest", "border", True)])
def test_tables_of_pieces_across_and_within_output_lines_give_the_tabled_bits(rng, mode, padding_mode, fused):
    """The pointwise forward with a table (several channels: nearest, 2-D bilinear) fills it piece by
    piece: fused, whole output lines together where they fit in a piece, else pieces of one line; on
    the grid path, pieces of a task's flat run. Lines of 3 and of `_TABLE_PIECE` + 52 points must
    give the tabled kernel's bits."""
    from stn_numba._codes import MODES, PADDING_MODES
    from stn_numba._cpu import sampling

    mode_code, padding = MODES[mode], PADDING_MODES[padding_mode]
    input = rng.standard_normal((2, 6, 9, 11)).astype(np.float32)
    input.flat[7] = np.inf
    for out_spatial in [(40, 3), (2, sampling._TABLE_PIECE + 52)]:
        if fused:
            points = (np.eye(2, 3) + rng.uniform(-0.6, 0.6, (2, 2, 3))).astype(np.float32)
        else:
            points = rng.uniform(-1.4, 1.4, (2, *out_spatial, 2)).astype(np.float32)
            points.flat[3:24:4] = np.nan, np.inf, -np.inf, 3e38, -3e38, 1e7
        tabled, pointwise = (np.empty((2, 6, *out_spatial), np.float32) for _ in range(2))
        assert sampling._pointwise_planes(mode_code, 6, fused, True) == sampling.ALL_CHANNELS
        sampling.pointwise(2, mode_code, padding, fused, True, True, sampling.ALL_CHANNELS)(
            input, points, pointwise, None, padding, False)
        sampling.kernels(2, mode_code, padding, fused, True)[0](input, points, tabled, None, padding, False)
        assert np.isfinite(tabled).any()
        np.testing.assert_array_equal(pointwise.view(np.uint32), tabled.view(np.uint32), err_msg=str(out_spatial))


@pytest.mark.parametrize("dim, mode, padding_mode, fused, channels, narrow", [
    (2, "bilinear", "zeros", False, 1, True), (2, "bilinear", "zeros", False, 1, False),
    (2, "nearest", "reflection", True, 1, True), (2, "bicubic", "border", False, 3, True),
    (3, "bilinear", "reflection", True, 1, True), (3, "nearest", "zeros", False, 1, True)])
def test_windowed_pointwise_forward_gives_the_whole_bits(rng, monkeypatch, dim, mode, padding_mode, fused,
                                                        channels, narrow):
    """The pointwise forward on a part of the input (the region kernels of `stn_numba.dask`) computes
    the taps of the whole input, shifted into the part: an output chunk sampled from the input region
    `tap_extent` names has the bits of the same points sampled from the whole input, whether the kernel
    is called directly or picked by `sample_region` (int32 reads there: small planes)."""
    from stn_numba._codes import MODES, PADDING_MODES
    from stn_numba._cpu import sampling

    spatial, out_spatial = (9, 11, 13)[-dim:], (7, 12, 10)[-dim:]
    input = rng.standard_normal((3, channels, *spatial)).astype(np.float32)
    if fused:
        points = (np.eye(dim, dim + 1) + rng.uniform(-0.3, 0.3, (3, dim, dim + 1))).astype(np.float32)
    else:
        points = rng.uniform(-0.6, 0.7, (3, *out_spatial, dim)).astype(np.float32)
        points.flat[3:24:4] = np.nan, np.inf, -np.inf, 3e38, -3e38, 1e7
    mode_code, padding = MODES[mode], PADDING_MODES[padding_mode]
    whole = np.empty((3, channels, *out_spatial), np.float32)
    sampling.pointwise(dim, mode_code, padding, fused, True, narrow, channels)(
        input, points, whole, None, padding, False)
    start = out_spatial[0] // 2  # the output chunk: the second half along the first axis
    chunk_points = points if fused else np.ascontiguousarray(points[:, start:])
    chunk = np.full(whole[:, :, start:].shape, np.nan, np.float32)
    out_origin = (start,) + (0,) * (dim - 1)
    extent = sampling.tap_extent(chunk_points, chunk.shape,
                                 sampling.region_window(spatial, (0,) * dim, out_spatial, out_origin),
                                 fused, mode_code, padding, False)
    assert np.all(extent[:, 0] > 0) or fused  # a part, shifted from the whole
    part = np.ascontiguousarray(input[(slice(None), slice(None)) + tuple(slice(a, b + 1) for a, b in extent)])
    window = sampling.region_window(spatial, extent[:, 0], out_spatial, out_origin)
    if narrow:  # as the dask layer calls it (first: it must build the kernel itself)
        monkeypatch.setattr(sampling, "_SERIAL_WORK", 0)  # the parallel (pointwise) kernels
        sampling.sample_region(part, chunk_points, chunk, window, fused, mode_code, padding, False)
    else:
        sampling.pointwise(dim, mode_code, padding, fused, True, narrow, channels, True)(
            part, chunk_points, chunk, window, padding, False)
    assert np.isfinite(chunk).any()
    np.testing.assert_array_equal(chunk.view(np.uint32), whole[:, :, start:].view(np.uint32))


@pytest.mark.parametrize("dim, mode, padding_mode, out_spatial, plane, channels, align_corners", [
    (2, "bilinear", "zeros", (7, 10), (11, 13), 1, False), (2, "bilinear", "reflection", (9, 70), (11, 13), 1, False),
    (2, "bilinear", "border", (7, 10), (2, 2), 1, True), (2, "nearest", "border", (9, 70), (11, 13), 1, False),
    (2, "bilinear", "zeros", (9, 70), (11, 13), 3, False), (2, "nearest", "reflection", (7, 10), (11, 13), 2, True),
    (3, "bilinear", "border", (5, 6, 40), (11, 13), 1, False), (3, "bilinear", "zeros", (5, 6, 10), (2, 13), 1, True),
    (3, "bilinear", "reflection", (5, 6, 10), (11, 13), 4, False),
    (3, "nearest", "zeros", (7, 12, 10), (11, 13), 1, False),
    (2, "bilinear", "zeros", (9, 70), (45, 70), 2, False), (2, "nearest", "border", (7, 10), (45, 70), 1, True)])
def test_pointwise_and_tabled_backward_give_the_same_bits(rng, dim, mode, padding_mode, out_spatial, plane,
                                                         channels, align_corners):
    """The backward of batches of up to 4 channels runs pointwise (`sampling.pointwise_backward`),
    other cases tabled: both must give the same bits, non-finite points and pixels included, with
    tiles of whole output lines and tiles narrower than a line, rows (and slices) read in pairs,
    each tap's products summed over the channels in the same order, and (planes of
    `_PREFETCH_PLANE_BACKWARD` pixels or more) each tile's input lines prefetched first."""
    from stn_numba._codes import MODES, PADDING_MODES
    from stn_numba._cpu import sampling

    spatial = ((9,) + plane)[-dim:]
    input = rng.standard_normal((4, channels, *spatial)).astype(np.float32)
    input.flat[5] = np.inf
    points = rng.uniform(-1.4, 1.4, (4, *out_spatial, dim)).astype(np.float32)
    points.flat[3:24:4] = np.nan, np.inf, -np.inf, 3e38, -3e38, 1e7
    grad_output = rng.standard_normal((4, channels, *out_spatial)).astype(np.float32)
    padding = PADDING_MODES[padding_mode]
    slots = sampling.taps_per_axis(MODES[mode]) ** dim * sampling._BLOCK
    pointwise = np.full_like(input, np.nan), np.full_like(points, np.nan)
    no_buffers = np.zeros((0, 2), np.int64), np.zeros(1, np.int64), np.empty(0, np.float32)
    sampling.pointwise_backward(dim, MODES[mode], padding, channels)(
        grad_output, input, points, *pointwise, 1, *no_buffers, np.empty((2, slots), np.int32),
        np.empty((2, slots), np.float32), padding, align_corners, True)
    tabled = np.full_like(input, np.nan), np.full_like(points, np.nan)
    sampling.kernels(dim, MODES[mode], padding, False, True)[1](
        grad_output, input, points, *tabled, 1, *no_buffers, None, padding, align_corners, True)
    assert np.isfinite(tabled[0]).any() and np.isfinite(tabled[1]).any()
    for ours, theirs in zip(pointwise, tabled):
        np.testing.assert_array_equal(ours.view(np.uint32), theirs.view(np.uint32))


@pytest.mark.parametrize("n_batch, mode, channels", [(1, "bilinear", 1), (2, "nearest", 3)])
def test_chunked_pointwise_backward_gives_the_tabled_bits(rng, monkeypatch, n_batch, mode, channels):
    """Big images in small batches are cut into chunks with private grad_input buffers (a part of
    each channel): the pointwise backward (int32 reads) and the tabled one (forced here by refusing
    narrow reads) give the same bits."""
    from stn_numba._codes import MODES
    from stn_numba._cpu import sampling

    input = rng.standard_normal((n_batch, channels, 150, 170)).astype(np.float32)
    grid = rng.uniform(-1.1, 1.1, (n_batch, 160, 210, 2)).astype(np.float32)
    grad_output = rng.standard_normal((n_batch, channels, 160, 210)).astype(np.float32)
    assert sampling._backward_plan(False, grad_output, input, grid, MODES[mode], 0, False, True,
                                   None, False)[0] > 1
    assert sampling._backward_kernel(False, input.shape, grad_output.size, MODES[mode], 0, False)[1] > 0
    pointwise = stn_numba.grid_sample_backward(grad_output, input, grid, mode)
    monkeypatch.setattr(sampling, "narrow", lambda plane_shape: False)
    monkeypatch.setattr(sampling, "_remembered_backward_kernel", sampling._backward_kernel)  # choose anew
    assert sampling._remembered_backward_kernel(False, input.shape, grad_output.size, MODES[mode], 0, False)[1] == 0
    tabled = stn_numba.grid_sample_backward(grad_output, input, grid, mode)
    for ours, theirs in zip(pointwise, tabled):
        np.testing.assert_array_equal(ours.view(np.uint32), theirs.view(np.uint32))


# ---------------------------------------------------------------- the non-finite rule
def points_with(rng, dim, values):
    """Points whose one component (each in turn) is a special grid value, the others random inside."""
    points = []
    for axis in range(dim):
        p = rng.uniform(-0.8, 0.8, (len(values), dim))
        p[:, axis] = values
        points.append(p)
    points.append(np.repeat(np.asarray(values, dtype=np.float64)[:, None], dim, axis=1))  # every component
    return as_grid(np.concatenate(points), dim)


def nonfinite_case(rng, dim, values, dtype, spatial=(4, 5, 6)):
    input = rng.standard_normal((1, 2) + tuple(spatial[-dim:])).astype(dtype)
    with np.errstate(over="ignore"):
        grid = points_with(rng, dim, values).astype(dtype)
    grad_output = rng.standard_normal((1, 2, *grid.shape[1:-1])).astype(dtype)
    return input, grid, grad_output


def assert_finite(*arrays):
    for array in arrays:
        assert np.isfinite(array).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(COMBO_ARGS, COMBOS)
def test_nan_samples_nothing(rng, dim, mode, padding_mode, align_corners, dtype):
    input, grid, grad_output = nonfinite_case(rng, dim, [np.nan, 0.3, -0.6], dtype)
    nan_points = np.isnan(grid).any(axis=-1)
    args = (mode, padding_mode, align_corners)
    output = stn_numba.grid_sample(input, grid, *args)
    grad_input, grad_grid = stn_numba.grid_sample_backward(grad_output, input, grid, *args)
    assert_finite(output, grad_input, grad_grid)
    assert not output[:, :, nan_points[0]].any()
    assert not grad_grid[nan_points].any()
    # the NaN points add nothing to grad_input
    without = np.where(nan_points[:, None], 0, grad_output).astype(dtype)
    np.testing.assert_allclose(grad_input, stn_numba.grid_sample_backward(without, input, grid, *args)[0],
                               **tolerances(dtype, "sampled"))
    np.testing.assert_allclose(output, reference.grid_sample(input, grid, *args), **tolerances(dtype, "sampled"))
    assert_backward_close((grad_input, grad_grid),
                          reference.grid_sample_backward(grad_output, input, grid, *args), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(COMBO_ARGS, COMBOS)
def test_infinity_is_far_outside(rng, dim, mode, padding_mode, align_corners, dtype):
    """zeros: 0; border and reflection: the nearest edge (the reference implements the rule)."""
    input, grid, grad_output = nonfinite_case(rng, dim, [np.inf, -np.inf, 0.4], dtype)
    args = (mode, padding_mode, align_corners)
    output = stn_numba.grid_sample(input, grid, *args)
    grad_input, grad_grid = stn_numba.grid_sample_backward(grad_output, input, grid, *args)
    assert_finite(output, grad_input, grad_grid)
    np.testing.assert_allclose(output, reference.grid_sample(input, grid, *args), **tolerances(dtype, "sampled"))
    assert_backward_close((grad_input, grad_grid),
                          reference.grid_sample_backward(grad_output, input, grid, *args), dtype)


# Grid values far outside: +-1e38 (overflows float32 when unnormalised), and
# pixel offsets of 2**31 and 2**32 (wrap to in-range indices if converted to
# int32), all beyond the clamp bound of 2**24 pixels.
FAR_PIXELS = [2.0**31, -(2.0**31), 2.0**32, -(2.0**32), 2.0**32 + 2, 2.0**31 + 1.5, -(2.0**31) - 3.5, 2.0**24 * 3]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(COMBO_ARGS, COMBOS)
def test_huge_coordinates_are_far_outside(rng, dim, mode, padding_mode, align_corners, dtype):
    size = 5 if align_corners else 4  # a cube of a dyadic size: exact pixel offsets
    values = np.concatenate([[1e38, -1e38], pixel_to_grid(FAR_PIXELS, size, align_corners)])
    input, grid, grad_output = nonfinite_case(rng, dim, values, dtype, spatial=(size,) * 3)
    args = (mode, padding_mode, align_corners)
    output = stn_numba.grid_sample(input, grid, *args)
    grad_input, grad_grid = stn_numba.grid_sample_backward(grad_output, input, grid, *args)
    assert_finite(output, grad_input, grad_grid)
    again = (stn_numba.grid_sample(input, grid, *args),
             *stn_numba.grid_sample_backward(grad_output, input, grid, *args))
    for first, second in zip((output, grad_input, grad_grid), again):
        np.testing.assert_array_equal(first, second)
    if padding_mode not in ("reflection", "circular"):
        # zeros reads nothing, border the clipped edge: exactly what the reference computes
        np.testing.assert_allclose(output, reference.grid_sample(input, grid, *args), **tolerances(dtype, "sampled"))
        assert_backward_close((grad_input, grad_grid),
                              reference.grid_sample_backward(grad_output, input, grid, *args), dtype)
    elif mode != "bicubic":
        # a deterministic in-range point: a convex combination of input pixels
        flat = input.reshape(input.shape[:2] + (-1,))
        low, high = flat.min(-1), flat.max(-1)
        out = output.reshape(output.shape[:2] + (-1,))
        slack = 1e-5 if dtype == np.float32 else 1e-12
        assert (out >= low[..., None] - slack).all() and (out <= high[..., None] + slack).all()


@pytest.mark.parametrize(COMBO_ARGS, COMBOS)
def test_large_coordinates_below_the_clamp_bound_match_reference(rng, dim, mode, padding_mode, align_corners):
    """Up to 2**24 pixels away every padding mode, reflection included, matches torch (float64).

    (``test_reference_matches_torch`` checks the reference on these points.)
    """
    input, grid, grad_output = large_case(rng, dim, align_corners)
    args = (mode, padding_mode, align_corners)
    np.testing.assert_allclose(stn_numba.grid_sample(input, grid, *args),
                               reference.grid_sample(input, grid, *args), rtol=1e-9, atol=1e-9)
    got = stn_numba.grid_sample_backward(grad_output, input, grid, *args)
    expected = reference.grid_sample_backward(grad_output, input, grid, *args)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9)
