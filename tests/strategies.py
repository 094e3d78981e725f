"""Random cases for the fuzz tests: a seeded corpus and hypothesis strategies.

Every case is a :class:`SamplerCase` (``grid_sample`` and its backward), a
:class:`GridCase` (a grid generator and its backward) or a :class:`FusedCase`
(``affine_grid_sample`` and its backward). They draw

- shapes with 0-sized batches, channels and output axes, and 1-pixel axes;
- float32 or float64 values, including the hostile ones of :func:`special_values`
  (NaN, ±Inf, ±1e38, denormals, ±1 ± 1 ulp) and, for grids, points 2**31 and
  2**32 pixels away;
- a memory layout per array argument (:data:`LAYOUTS`): non-contiguous,
  transposed, negatively strided, unaligned, read-only or byte-swapped views of
  the same values (built by the ``layout_variants`` fixture of conftest.py).

The corpus (:func:`corpus`) is reproducible case by case: case ``i`` of a family
comes from ``numpy.random.default_rng((seed, family, i))``. Its size is
``STN_NUMBA_FUZZ_CASES`` cases per family (default 300, the CI setting) and its
seed ``STN_NUMBA_FUZZ_SEED``; ``STN_NUMBA_FUZZ_CASES=10000`` is the long mode
(docs/reliability.md).
"""

import dataclasses
import os

import numpy as np
from hypothesis import strategies as st

import reference
from test_sampling import pixel_to_grid

FUZZ_CASES = int(os.environ.get("STN_NUMBA_FUZZ_CASES", "300"))
FUZZ_SEED = int(os.environ.get("STN_NUMBA_FUZZ_SEED", "20151205"))

# "contiguous" is the array as made; "permuted" is a C-contiguous array of
# permuted axes, transposed back (a non-contiguous transposed view); the rest
# are the conftest.py layout variants.
LAYOUTS = ("contiguous", "permuted", "unaligned", "strided", "negative_strides", "fortran", "read_only",
           "byte_swapped")
# STN_NUMBA_FUZZ_DTYPES=float64 halves the kernels compiled (the bounds-checked CI run).
DTYPES = tuple(np.dtype(name).type for name in os.environ.get("STN_NUMBA_FUZZ_DTYPES", "float32,float64").split(","))
FAR_PIXELS = (2.0**31, -(2.0**31), 2.0**32, -(2.0**32), 2.0**31 - 0.5, 2.0**32 + 1.5)
# Fraction of hostile values per regime of a case.
REGIMES = {"regular": 0.0, "sprinkled": 0.15, "hostile": 0.6}


def special_values(dtype):
    """Hostile scalars of ``dtype``: NaN, ±Inf, ±1e38, ±0, denormals, and ±1 ± 1 ulp."""
    dtype = np.dtype(dtype)
    one, tiny = dtype.type(1), np.finfo(dtype).smallest_subnormal
    return np.array([np.nan, np.inf, -np.inf, 1e38, -1e38, 0.0, -0.0, tiny, -tiny, 1.0, -1.0,
                     np.nextafter(one, 2 * one), np.nextafter(one, 0 * one),
                     np.nextafter(-one, -2 * one), np.nextafter(-one, 0 * one)], dtype)


@dataclasses.dataclass
class _SamplingCase:
    """The options shared by the sampler cases, and how a case describes itself in a failure."""

    mode: str
    padding_mode: str
    align_corners: bool
    input_requires_grad: bool
    layouts: dict

    @property
    def options(self):
        return self.mode, self.padding_mode, self.align_corners

    def describe(self):
        return (f"{self.op} input {self.input.shape} {self.input.dtype}, {self.geometry}, "
                f"{self.options}, input_requires_grad={self.input_requires_grad}, layouts {self.layouts}")


@dataclasses.dataclass
class SamplerCase(_SamplingCase):
    """Arguments of grid_sample and grid_sample_backward, with a layout per array."""

    op = "grid_sample"
    input: np.ndarray
    grid: np.ndarray
    grad_output: np.ndarray

    @property
    def geometry(self):
        return f"grid {self.grid.shape}"


@dataclasses.dataclass
class GridCase:
    """A grid generator ``family`` with its parameters, output size and a gradient for its backward."""

    family: str  # affine, projective, attention, similarity, tps
    params: np.ndarray  # theta or (N, k) parameters
    size: tuple
    align_corners: bool
    grad_grid: np.ndarray
    layouts: dict
    control_points: object = None  # tps only

    def describe(self):
        extra = f", control_points {np.asarray(self.control_points).tolist()}" if self.family == "tps" else ""
        return (f"{self.family}_grid params {self.params.shape} {self.params.dtype}, size {self.size}, "
                f"align_corners={self.align_corners}{extra}, layouts {self.layouts}")


# ------------------------------------------------------------- value drawing
def _mix(rng, regular, dtype, fraction, extra=()):
    """``regular`` with about ``fraction`` of its entries replaced by hostile values."""
    values = np.asarray(regular, np.float64).copy()
    pool = np.concatenate([special_values(dtype).astype(np.float64), np.asarray(extra, np.float64)])
    hostile = rng.random(values.shape) < fraction
    values[hostile] = rng.choice(pool, hostile.sum()) if pool.size else values[hostile]
    with np.errstate(over="ignore"):
        return values.astype(dtype)


def _grid_values(rng, shape, dtype, sizes, align_corners, fraction):
    """Grid points: uniform in [-1.6, 1.6], a fifth exactly on pixels or half pixels, some hostile
    (:func:`special_values` and points 2**31 and 2**32 pixels away).

    ``sizes[k]`` is the input size read by component k (x, y, z).
    """
    grid = np.empty(shape)
    for k, size in enumerate(sizes):
        regular = rng.uniform(-1.6, 1.6, shape[:-1])
        on_kinks = rng.random(shape[:-1]) < 0.2
        regular[on_kinks] = pixel_to_grid(rng.integers(-4, 2 * size + 3, on_kinks.sum()) / 2.0, size, align_corners)
        with np.errstate(divide="ignore", invalid="ignore"):  # size 1: no finite grid value is far
            far = pixel_to_grid(np.array(FAR_PIXELS), size, align_corners)
        far = far[np.isfinite(far)]
        grid[..., k] = _mix(rng, regular, dtype, fraction, far)
    return grid.astype(dtype)


def _layouts(rng, names):
    return {name: str(rng.choice(LAYOUTS)) if rng.random() < 0.7 else "contiguous" for name in names}


# ------------------------------------------------------------------- sampler
def sampler_case(rng):
    """A random grid_sample case (see the module docstring)."""
    dtype = DTYPES[rng.integers(len(DTYPES))]
    dim = 2 if rng.random() < 0.7 else 3
    mode = str(rng.choice(list(reference.MODES)))
    padding_mode = str(rng.choice(reference.PADDING_MODES))
    align_corners = bool(rng.integers(2))
    n_batch = int(rng.choice([0, 1, 1, 2, 2, 3]))
    channels = int(rng.choice([0, 1, 2, 2, 3]))
    spatial = tuple(int(rng.choice([1, 1, 2, 3, 4, 5, 7])) for _ in range(dim))
    out_spatial = tuple(int(rng.choice([0, 1, 1, 2, 3, 4])) for _ in range(dim))
    fraction = REGIMES[str(rng.choice(list(REGIMES)))]
    grid = _grid_values(rng, (n_batch, *out_spatial, dim), dtype, spatial[::-1], align_corners, fraction)
    return SamplerCase(
        input=rng.standard_normal((n_batch, channels, *spatial)).astype(dtype),
        grid=grid,
        grad_output=rng.standard_normal((n_batch, channels, *out_spatial)).astype(dtype),
        mode=mode, padding_mode=padding_mode, align_corners=align_corners,
        input_requires_grad=bool(rng.random() < 0.8),
        layouts=_layouts(rng, ("input", "grid", "grad_output")),
    )


# --------------------------------------------------------------------- grids
# stn_numba._families.GRID_FAMILIES, in the order that seeds the corpus (test_fuzz checks they agree)
GRID_FAMILIES = ("affine", "projective", "attention", "similarity", "tps")


def _regular_params(rng, family, n_batch, dim, control_points):
    """Parameters near the identity of ``family``."""
    if family == "affine":
        return np.eye(dim, dim + 1) + 0.5 * rng.standard_normal((n_batch, dim, dim + 1))
    if family == "projective":
        theta = np.eye(3) + 0.3 * rng.standard_normal((n_batch, 3, 3))
        if rng.random() < 0.3:  # points on or near the horizon, where w is clamped
            theta[:, 2, 2] = rng.choice([0.0, 1e-9, -1e-9, 2.0**-20, -(2.0**-20)], n_batch)
            theta[:, 2, :2] = 0.0
        return theta
    if family == "attention":
        return np.column_stack([rng.uniform(0.2, 1.5, n_batch), rng.uniform(-1, 1, (n_batch, 2))])
    if family == "similarity":
        return np.column_stack([rng.uniform(0.2, 1.5, n_batch), rng.uniform(-4, 4, n_batch),
                                rng.uniform(-1, 1, (n_batch, 2))])
    points = np.asarray(control_points, np.float64) if np.ndim(control_points) == 2 else \
        reference.tps_control_points(*control_points)
    return np.asarray(points)[None] + 0.1 * rng.standard_normal((n_batch, len(points), 2))


def grid_case(rng, family=None):
    """A random case of a grid generator (see the module docstring)."""
    family = family or str(rng.choice(GRID_FAMILIES))
    dtype = DTYPES[rng.integers(len(DTYPES))]
    dim = 3 if family == "affine" and rng.random() < 0.3 else 2
    n_batch = int(rng.choice([0, 1, 1, 2, 3]))
    size = (n_batch, int(rng.choice([1, 3]))) + tuple(int(rng.choice([0, 1, 1, 2, 3, 5])) for _ in range(dim))
    control_points = None
    if family == "tps":
        control_points = (int(rng.integers(2, 4)), int(rng.integers(2, 4))) if rng.random() < 0.7 else \
            rng.uniform(-1, 1, (int(rng.integers(3, 7)), 2))
    fraction = REGIMES[str(rng.choice(list(REGIMES)))]
    params = _mix(rng, _regular_params(rng, family, n_batch, dim, control_points), dtype, fraction,
                  extra=(2.0**31, -(2.0**32)))
    grad_grid = _mix(rng, rng.standard_normal((n_batch, *size[2:], dim)), dtype, fraction / 2)
    return GridCase(family, params, size, bool(rng.integers(2)), grad_grid,
                    _layouts(rng, ("params", "grad_grid")), control_points)


# ----------------------------------------------------------------- fused op
@dataclasses.dataclass
class FusedCase(_SamplingCase):
    """Arguments of affine_grid_sample and its backward, with a layout per array."""

    op = "affine_grid_sample"
    input: np.ndarray
    theta: np.ndarray
    size: tuple
    grad_output: np.ndarray

    @property
    def geometry(self):
        return f"size {self.size}"


def fused_case(rng):
    """A random affine_grid_sample case: a sampler case whose grid comes from a hostile theta."""
    base = sampler_case(rng)
    dim = base.input.ndim - 2
    n_batch, channels = base.input.shape[:2]
    fraction = REGIMES[str(rng.choice(list(REGIMES)))]
    theta = _mix(rng, np.eye(dim, dim + 1) + 0.5 * rng.standard_normal((n_batch, dim, dim + 1)), base.input.dtype,
                 fraction, extra=(2.0**31, -(2.0**32), 4.0e6))
    return FusedCase(input=base.input, theta=theta, size=(n_batch, channels, *base.grid.shape[1:-1]),
                     grad_output=base.grad_output, mode=base.mode, padding_mode=base.padding_mode,
                     align_corners=base.align_corners, input_requires_grad=base.input_requires_grad,
                     layouts={"input": base.layouts["input"], "theta": base.layouts["grid"],
                              "grad_output": base.layouts["grad_output"]})


# -------------------------------------------------------------------- corpus
FAMILIES = {"sampler": sampler_case, "grids": grid_case, "fused": fused_case}


def corpus(family, count=None, seed=None):
    """Yield (index, case): ``count`` reproducible cases of ``family`` (a key of FAMILIES)."""
    count = FUZZ_CASES if count is None else count
    seed = FUZZ_SEED if seed is None else seed
    family_number = list(FAMILIES).index(family)
    for index in range(count):
        yield index, FAMILIES[family](np.random.default_rng((seed, family_number, index)))


# ---------------------------------------------------------------- hypothesis
def hostile_floats(dtype):
    """Hypothesis floats of ``dtype``: mostly moderate, often hostile."""
    width = np.dtype(dtype).itemsize * 8
    return st.one_of(
        st.floats(-1.5, 1.5, width=width),
        st.sampled_from(special_values(dtype).tolist()),
        st.floats(width=width),  # anything, NaN and Inf included
    )


@st.composite
def sampler_cases(draw):
    """Hypothesis strategy of :class:`SamplerCase` with element-wise hostile grids."""
    from hypothesis.extra import numpy as hnp

    dtype = draw(st.sampled_from(DTYPES))
    dim = draw(st.sampled_from([2, 3]))
    mode = draw(st.sampled_from(list(reference.MODES)))
    padding_mode = draw(st.sampled_from(reference.PADDING_MODES))
    n_batch = draw(st.integers(0, 2))
    channels = draw(st.integers(0, 2))
    spatial = draw(st.tuples(*[st.integers(1, 4)] * dim))
    out_spatial = draw(st.tuples(*[st.integers(0, 3)] * dim))
    grid = draw(hnp.arrays(dtype, (n_batch, *out_spatial, dim), elements=hostile_floats(dtype)))
    moderate = st.floats(-3, 3, width=np.dtype(dtype).itemsize * 8)
    return SamplerCase(
        input=draw(hnp.arrays(dtype, (n_batch, channels, *spatial), elements=moderate)),
        grid=grid,
        grad_output=draw(hnp.arrays(dtype, (n_batch, channels, *out_spatial), elements=moderate)),
        mode=mode, padding_mode=padding_mode, align_corners=draw(st.booleans()),
        input_requires_grad=draw(st.booleans()),
        layouts={name: draw(st.sampled_from(LAYOUTS)) for name in ("input", "grid", "grad_output")},
    )


@st.composite
def grid_cases(draw):
    """Hypothesis strategy of :class:`GridCase` (affine and projective) with hostile parameters."""
    from hypothesis.extra import numpy as hnp

    dtype = draw(st.sampled_from(DTYPES))
    family = draw(st.sampled_from(["affine", "projective"]))
    dim = draw(st.sampled_from([2, 3])) if family == "affine" else 2
    n_batch = draw(st.integers(0, 2))
    size = (n_batch, 1) + draw(st.tuples(*[st.integers(0, 4)] * dim))
    shape = (n_batch, dim, dim + 1) if family == "affine" else (n_batch, 3, 3)
    return GridCase(
        family=family,
        params=draw(hnp.arrays(dtype, shape, elements=hostile_floats(dtype))),
        size=size,
        align_corners=draw(st.booleans()),
        grad_grid=draw(hnp.arrays(dtype, (n_batch, *size[2:], dim), elements=hostile_floats(dtype))),
        layouts={name: draw(st.sampled_from(LAYOUTS)) for name in ("params", "grad_grid")},
    )
