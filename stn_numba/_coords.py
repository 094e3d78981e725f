"""Scalar coordinate math shared by the CPU and CUDA kernels.

Every function here is a ``numba.extending.register_jitable`` function of
scalars, so ``@njit`` and ``@cuda.jit`` kernels call the same code and follow
the same rules. They are dtype-generic: constants are built with ``type(x)(c)``
from an argument, so a float32 kernel computes in float32 throughout. They are
``forceinline``: inlined into the kernels' loops, they let LLVM vectorise them.
The two rounding functions, `floor_value` and `round_half_even`, are the
exception: overloaded per target, because numba-cuda lowers no NumPy ufunc.

The formulas follow PyTorch's ``grid_sampler`` (aten ``GridSampler.h``) for the
sampler of Jaderberg et al., "Spatial Transformer Networks" (NeurIPS 2015),
with one rule for non-finite and huge coordinates (see CONTRIBUTING.md):

* a NaN grid value samples nothing: every tap gets weight 0 and derivative 0;
* ±Inf and huge values behave as far outside: zeros padding reads 0, border
  clips to the nearest edge, reflection reflects finite values exactly (its
  flip parity is computed in floating point, so it never overflows an int) and
  sends ±Inf to the nearest edge; circular padding, which has no nearest
  edge, samples nothing at ±Inf (as at a NaN) and wraps huge finite values
  after the clamp below (a deterministic point in range);
* before any float-to-int conversion a coordinate is clamped to
  ``±max(2**24, 4*size)``, so index arithmetic never overflows, and every tap
  of a clamped coordinate lies outside ``[0, size)`` (the nearest tap with
  zeros padding converts only a value it found inside the image).

Tap indices have the integer type of ``size``: int64 as a rule; int32 where a
CPU kernel has checked that ``4 * size`` and the flat index of every pixel fit
in int32 (see `stn_numba._cpu.loads`), so that its gathers take 32-bit offsets.

Tap functions return indices already clamped into ``[0, size-1]`` with weight 0
where a tap is outside the image, so kernels can gather without branches; a
kernel must skip zero-weight taps (not multiply ``0 * value``) so that an
infinite input pixel cannot leak into points that do not use it.
"""

import math

import numpy as np
from numba import types
from numba.extending import overload, register_jitable

from ._codes import BICUBIC, BILINEAR, BORDER, CIRCULAR, CONSTANT, NEAREST, REFLECTION, ZEROS

_CUBIC_A = -0.75  # cubic convolution parameter, as in PyTorch
_MIN_SAFE_BOUND = 2**24


def floor_value(x):
    """``x`` rounded down, in ``x``'s float type (NaN and ±Inf unchanged).

    ``np.floor`` in CPU kernels. The CUDA target lowers no NumPy ufunc, so
    `stn_numba._cuda.rounding` maps this to libdevice's ``floor``; the CUDA
    simulator runs this body as Python.
    """
    return np.floor(x)


def round_half_even(x):
    """``x`` rounded to the nearest integer, ties to even (``np.rint``), in
    ``x``'s float type; libdevice's ``rint`` in CUDA kernels, as `floor_value`."""
    return np.rint(x)


@overload(floor_value, target="cpu", jit_options={"forceinline": True})
def _floor_value_cpu(x):
    return lambda x: np.floor(x)


@overload(round_half_even, target="cpu", jit_options={"forceinline": True})
def _round_half_even_cpu(x):
    return lambda x: np.rint(x)


@register_jitable(forceinline=True)
def unnormalize(g, size, align_corners):
    """Map a grid value in [-1, 1] to a pixel coordinate.

    Parameters
    ----------
    g : float
        Grid value (not NaN).
    size : int
        Image size along this axis.
    align_corners : bool
        True: -1 and 1 are the centres of the corner pixels; False: their
        outer edges.

    Returns
    -------
    x : float
        ``(g + 1) / 2 * (size - 1)`` or ``((g + 1) * size - 1) / 2``,
        computed as ``(g + 1) * scale + offset`` like PyTorch's CPU kernel.
        ±Inf stays ±Inf (even when ``size - 1 == 0``).
    scale : float
        ``dx/dg``.
    """
    x, scale = _scaled(g, size, align_corners)
    if x != x:  # only Inf * 0: keep the infinity "far outside"
        x = g
    return x, scale


@register_jitable(forceinline=True)
def _scaled(g, size, align_corners):
    """`unnormalize` without its care for ``Inf * 0`` (a NaN ``x`` for an
    infinite ``g`` where ``scale`` is 0: one pixel with align_corners)."""
    one = type(g)(1)
    half = type(g)(0.5)
    if align_corners:
        scale = type(g)(size - 1) * half
        x = (g + one) * scale
    else:
        scale = type(g)(size) * half
        x = (g + one) * scale - half
    return x, scale


@register_jitable(forceinline=True)
def clip_coordinate(x, size):
    """Clip ``x`` to ``[0, size-1]``.

    Returns
    -------
    x : float
        The clipped coordinate.
    grad : float
        ``d clipped / dx``: 1 strictly inside, 0 on or beyond a border (as in
        PyTorch, where a border counts as clipped).
    """
    zero = type(x)(0)
    high = type(x)(size - 1)
    if x <= zero:
        return zero, zero
    if x >= high:
        return high, zero
    return x, type(x)(1)


@register_jitable(forceinline=True)
def reflect_coordinate(x, size, align_corners):
    """Reflect ``x`` about the image borders until it lies between them.

    The borders are the corner pixel centres (``align_corners=True``) or the
    outer pixel edges (False). The result may still need clipping.

    Returns
    -------
    x : float
        The reflected coordinate; ±Inf maps to the nearest border.
    grad : float
        ``d reflected / dx``: +1 or -1, 0 for ±Inf or an empty span.
    """
    # One return and no early exits: every case is computed and the right
    # value selected, so a loop over points vectorises.
    zero = type(x)(0)
    one = type(x)(1)
    low = zero if align_corners else type(x)(-0.5)
    span = type(x)(size - 1) if align_corners else type(x)(size)
    empty = span <= zero  # align_corners with one pixel: no span to reflect in
    distance = abs(x - low)
    sign = -one if x < low else one
    twice_span = span + span
    # The remainder modulo two spans (its parity of flips: whether it reaches
    # one span) by floor division, which vectorises, where fmod is a libm
    # call per value (5x the cost of the whole bilinear tap). It is exact
    # while the quotient times the span is (below 2**24 pixels in float32,
    # so for every coordinate the samplers compare with torch): the product
    # is then an integer the format holds, and the difference of two floats
    # within a factor 2 of each other is exact. Farther out it stays a
    # deterministic point in range. (A quotient off by one, from the
    # reciprocal's rounding, is put right by the two corrections.)
    step = one / (one if empty else twice_span)  # empty: the result is 0 anyway
    remainder = distance - floor_value(distance * step) * twice_span
    remainder = remainder + twice_span if remainder < zero else remainder
    remainder = remainder - twice_span if remainder >= twice_span else remainder
    first_half = remainder < span
    reflected = (remainder if first_half else twice_span - remainder) + low
    grad = sign if first_half else -sign
    infinite = math.isinf(distance)  # ±Inf: the nearest border
    reflected = ((low if sign < zero else low + span) if infinite else reflected)
    grad = zero if infinite or empty else grad
    return (zero if empty else reflected), grad


@register_jitable(forceinline=True)
def safe_coordinate(x, size):
    """Clamp ``x`` to ``±max(2**24, 4*size)`` so it converts to an index safely.

    Every tap of a clamped coordinate lies outside ``[0, size)``, so results
    are unchanged for zeros padding; the clamp's gradient is irrelevant.
    """
    bound = type(x)(max(_MIN_SAFE_BOUND, 4 * size))
    return min(max(x, -bound), bound)


@register_jitable(forceinline=True)
def pad_coordinate(x, size, padding_mode, align_corners):
    """Apply the padding mode to a pixel coordinate (bilinear and nearest).

    Returns
    -------
    x : float
        zeros and circular: ``x`` made safe (see `safe_coordinate`; circular
        wraps the taps, `pad_index`); border: clipped; reflection: reflected,
        then clipped. Always safe to floor to an index.
    grad : float
        ``d padded / dx``.
    """
    if padding_mode == BORDER:
        return clip_coordinate(x, size)
    if padding_mode == REFLECTION:
        x, grad_reflect = reflect_coordinate(x, size, align_corners)
        x, grad_clip = clip_coordinate(x, size)
        return x, grad_reflect * grad_clip
    return safe_coordinate(x, size), type(x)(1)


@register_jitable(forceinline=True)
def floor_index(x, size):
    """``floor(x)`` as an index (``size``'s type), for a coordinate already
    made safe: one rounding and one conversion."""
    return type(size)(floor_value(x))


@register_jitable(forceinline=True)
def nearest_index(x, size):
    """``x`` rounded half to even (`round_half_even`) as an index
    (``size``'s type), for a safe ``x``: one rounding and one conversion."""
    return type(size)(round_half_even(x))


@register_jitable(forceinline=True)
def reflect_index(i, size, align_corners):
    """Reflect an integer tap index into ``[0, size-1]``.

    Integer twin of `reflect_coordinate` followed by clipping, for the bicubic
    taps, which PyTorch pads one by one. The result has ``size``'s type.
    """
    if align_corners:
        if size <= 1:
            return type(size)(0)
        period = 2 * (size - 1)
        m = abs(i) % period
        if m >= size:
            m = period - m
        return type(size)(m)
    period = 2 * size
    m = i if i >= 0 else -1 - i  # reflection about the edge at -0.5
    m = m % period
    if m >= size:
        m = period - 1 - m
    return type(size)(m)


@register_jitable(forceinline=True)
def pad_index(i, size, padding_mode, align_corners):
    """Map an integer tap index into the image.

    Returns
    -------
    index : int
        An index in ``[0, size-1]`` of ``size``'s type (clamped when the tap
        is outside, so a gather never reads out of bounds; wrapped, ``i mod
        size``, with circular padding).
    inside : bool
        False when zeros padding makes the tap read 0.
    """
    i = type(size)(i)  # an offset tap of a safe coordinate: no overflow
    last = type(size)(size - 1)
    if padding_mode == REFLECTION:
        return reflect_index(i, size, align_corners), True
    if padding_mode == CIRCULAR:
        return type(size)(i % size), True  # (a floored modulo: never negative)
    inside = i >= 0 and i <= last
    index = min(max(i, type(size)(0)), last)
    if padding_mode == BORDER:
        return index, True
    return index, inside


@register_jitable(forceinline=True)
def cubic_coefficients(t):
    """Cubic convolution weights of the taps at offsets -1, 0, 1, 2.

    ``t`` in [0, 1) is the distance from the tap at offset 0; the kernel has
    A = -0.75 as in PyTorch's bicubic ``grid_sample`` and ``interpolate``.
    """
    one = type(t)(1)
    a = type(t)(_CUBIC_A)
    a2 = a + type(t)(2)
    a3 = a + type(t)(3)
    a5 = type(t)(5) * a
    a8 = type(t)(8) * a
    a4 = type(t)(4) * a
    s = t + one
    u = one - t
    v = u + one
    return (
        ((a * s - a5) * s + a8) * s - a4,
        (a2 * t - a3) * t * t + one,
        (a2 * u - a3) * u * u + one,
        ((a * v - a5) * v + a8) * v - a4,
    )


@register_jitable(forceinline=True)
def cubic_coefficient_derivatives(t):
    """``d/dt`` of each weight returned by `cubic_coefficients`."""
    one = type(t)(1)
    two = type(t)(2)
    three = type(t)(3)
    a = type(t)(_CUBIC_A)
    a2 = a + two
    a3 = a + three
    s = t + one
    u = one - t
    v = u + one
    return (
        (three * a * s - type(t)(10) * a) * s + type(t)(8) * a,
        (three * a2 * t - two * a3) * t,
        -((three * a2 * u - two * a3) * u),
        -((three * a * v - type(t)(10) * a) * v + type(t)(8) * a),
    )


@register_jitable(forceinline=True)
def _unnormalize_or_mask(g, size, padding_mode, align_corners):
    """``unnormalize(g)`` and whether ``g`` samples nothing: a NaN, or with
    circular padding ±Inf (a finite ``g`` whose coordinate overflows is huge,
    not infinite: it wraps); such a ``g`` is computed as 0 (its taps are
    masked by the caller)."""
    lost = g != g
    x, scale = unnormalize(type(g)(0) if lost else g, size, align_corners)
    if padding_mode == CIRCULAR and math.isinf(g):  # (folds away for other paddings)
        x, scale = unnormalize(type(g)(0), size, align_corners)
        lost = True
    return x, scale, lost


@register_jitable(forceinline=True)
def _linear_coordinate(g, size, padding_mode, align_corners):
    """``floor(x)``, ``t = x - floor(x)``, ``dx/dg`` and whether ``g`` is NaN,
    for the padded pixel coordinate ``x`` of ``g`` (linear taps)."""
    x, scale, is_nan = _unnormalize_or_mask(g, size, padding_mode, align_corners)
    x, grad_pad = pad_coordinate(x, size, padding_mode, align_corners)
    first = floor_index(x, size)
    return first, x - type(x)(first), scale * grad_pad, is_nan


@register_jitable(forceinline=True)
def linear_taps(g, size, padding_mode, align_corners):
    """The two linear-interpolation taps of grid value ``g`` along one axis.

    Returns
    -------
    i0, i1 : int (``size``'s type)
        Tap indices ``floor(x)`` and ``floor(x) + 1``, clamped into the image
        (wrapped with circular padding).
    w0, w1 : float
        Their weights ``1 - t`` and ``t``, 0 for a tap outside the image or a
        NaN ``g``.
    d0, d1 : float
        ``d w / d g`` including the unnormalise and padding factors (0 where
        the weight is forced to 0).
    """
    first, t, slope, is_nan = _linear_coordinate(g, size, padding_mode, align_corners)
    return linear_taps_at(first, t, slope, is_nan, size, padding_mode)


@register_jitable(forceinline=True)
def linear_taps_at(first, t, slope, lost, size, padding_mode):
    """`linear_taps` of the padded coordinate ``first + t`` (``first`` an
    integer of ``size``'s type, ``0 <= t < 1``; ``slope``: its derivative;
    ``lost``: it samples nothing)."""
    zero = type(t)(0)
    w1 = t
    w0 = type(t)(1) - w1
    tap_padding = CIRCULAR if padding_mode == CIRCULAR else ZEROS  # (the coordinate is padded already)
    i0, inside0 = pad_index(first, size, tap_padding, False)
    i1, inside1 = pad_index(first + 1, size, tap_padding, False)
    inside0 = inside0 and not lost
    inside1 = inside1 and not lost
    return (
        i0,
        i1,
        w0 if inside0 else zero,
        w1 if inside1 else zero,
        -slope if inside0 else zero,
        slope if inside1 else zero,
    )


@register_jitable(forceinline=True)
def linear_pair_taps(g, size, padding_mode, align_corners):
    """The linear taps of ``g`` as weights of one pair of adjacent pixels,
    for kernels that read both with one load (``2 <= size <= 2**24``; not
    circular padding, whose taps at the last pixel are the first and last).

    Returns
    -------
    start : int (``size``'s type)
        The pair's first pixel, in ``[0, size-2]``.
    low, high : float
        The weights of pixels ``start`` and ``start + 1``: the (index,
        weight) terms of `linear_taps` whose weight or derivative is
        nonzero, in the same order; a tap just outside an edge has weight 0
        and leaves its slot to the other.
    low_slope, high_slope : float
        Their derivatives ``d weight / d g``, as in `linear_taps`.
    """
    x, slope = padded_pair_coordinate(g, size, padding_mode, align_corners)
    return pair_taps_at(x, slope, size, g != g)


@register_jitable(forceinline=True)
def padded_pair_coordinate(g, size, padding_mode, align_corners):
    """The pixel coordinate `linear_pair_taps` takes its taps from (``g``
    unnormalised and padded) and its derivative ``d x / d g``."""
    x, scale = _scaled(g, size, align_corners)
    grad_pad = type(g)(1)
    if padding_mode != ZEROS:
        x, grad_pad = pad_coordinate(x, size, padding_mode, align_corners)
    return x, scale * grad_pad


@register_jitable(forceinline=True)
def pair_taps_at(x, slope, size, is_nan):
    """`linear_pair_taps` from its padded coordinate ``x`` (``slope``: d x / d g;
    ``is_nan``: the grid value was NaN)."""
    # As `linear_taps`, with the index arithmetic done in floating point
    # (exact: integers below 2**24) and the NaN rule folded into the
    # coordinate, so the vectorised loops need no 64-bit integer lanes. With
    # two pixels or more ``scale`` is not 0, and only ``start``, inside the
    # image, becomes an integer: so zeros padding needs no safe coordinate
    # (±Inf and huge values match none of the cases below: no tap).
    zero = type(x)(0)
    first = type(x)(-2) if is_nan else floor_value(x)  # NaN: no tap inside
    w1 = x - first
    w0 = type(x)(1) - w1
    start = min(max(first, zero), type(x)(size - 2))
    both = first == start  # both taps inside
    left = first == type(x)(-1)  # only pixel 0, in the pair's low slot
    right = first == type(x)(size - 1)  # only pixel size - 1, in the high slot
    # selects, not branches: the callers' loops vectorise
    low = w0 if both else (w1 if left else zero)
    high = w1 if both else (w0 if right else zero)
    low_slope = -slope if both else (slope if left else zero)
    high_slope = slope if both else (-slope if right else zero)
    return type(size)(start), low, high, low_slope, high_slope


def rounded_index(x, size):
    """``rint(x)`` (ties to even) as an index of ``size``'s type where it lies
    in ``[0, size)``, else 0, and whether it does.

    Tested in floating point, where a NaN, ±Inf or huge ``x`` fails, so it
    needs no safe coordinate or NaN mask and only a value inside is
    converted. Exact while ``size`` converts exactly (below 2**24 pixels in
    float32); beyond, ``float(size)`` may round down, dropping a last pixel,
    but never up past one, so no index leaves the image. Overloaded per
    target, as the rounding functions: CPU kernels with int32 sizes read the
    index from the bits of a shifted ``x`` (`_rounded_index_cpu`); the CUDA
    target maps this to the body below (`stn_numba._cuda.rounding`).
    """
    return _rounded_index(x, size)


@register_jitable(forceinline=True)
def _rounded_index(x, size):
    zero = type(x)(0)
    rounded = round_half_even(x)
    inside = (rounded >= zero) & (rounded < type(x)(size))
    return type(size)(rounded if inside else zero), inside


# float type -> (its NumPy type, the signed and unsigned integer types of its
# bits, 1.5 * 2**mantissa bits, the bits of that)
_ROUNDING_SHIFTS = {types.float32: (np.float32, np.int32, np.uint32, np.float32(1.5 * 2**23), 0x4B400000),
                    types.float64: (np.float64, np.int64, np.uint64, 1.5 * 2**52, 0x4338000000000000)}


@overload(rounded_index, target="cpu", inline="always")
def _rounded_index_cpu(x, size):
    """`rounded_index` in two vector instructions and one comparison for an
    int32 ``size``, which the CPU kernels give only for axes of at most
    2**22 pixels (`stn_numba._cpu.loads.narrow`). Adding the shift s = 1.5 *
    2**m (m mantissa bits) rounds ``x`` to an integer, ties to even, and the
    bits of ``x + s`` minus those of ``s`` are that integer for |x| < 2**(m-1)
    (2**22 in float32); a larger ``x`` gives at least 2**(m-1), a more
    negative one, a negative ``x + s``, ±Inf or a NaN a value outside
    ``[0, 2**(m-1))`` as well (as unsigned: a negative one is huge), and no
    step overflows. So one unsigned comparison with ``size`` tells inside,
    with the same indices as the rounding."""
    if size != types.int32 or x not in _ROUNDING_SHIFTS:
        return lambda x, size: _rounded_index(x, size)
    float_type, bits, unsigned, shift, shift_bits = _ROUNDING_SHIFTS[x]

    def rounded_index_from_bits(x, size):
        index = float_type(x + shift).view(bits) - bits(shift_bits)
        inside = unsigned(index) < unsigned(size)
        return np.int32(index) * np.int32(inside), inside

    return rounded_index_from_bits


@register_jitable(inline="always")
def nearest_zeros_tap(g, size, align_corners):
    """`nearest_tap` with zeros padding: no safe coordinate or NaN mask (see
    `rounded_index`); a tap outside gets index 0 (planning kernels take
    border's taps, at the edge). Inlined by Numba, not LLVM: the CPU
    kernels' loops then keep their constants in registers (256x1x28²,
    1 thread: 9% faster). Code that Numba inlines holds no conditional
    expression (here and in `_rounded_index_cpu`): the variables of their
    branches trip Numba's internal NumbaIRAssumptionWarning."""
    index, inside = rounded_index(_scaled(g, size, align_corners)[0], size)
    return index, type(g)(inside)


@register_jitable(forceinline=True)
def nearest_tap(g, size, padding_mode, align_corners):
    """The nearest-neighbour tap of grid value ``g`` along one axis.

    Returns
    -------
    index : int (``size``'s type)
        ``rint(x)`` clamped into the image (wrapped with circular padding);
        with zeros padding, 0 for a tap outside it.
    weight : float
        1, or 0 when the tap is outside the image or ``g`` is NaN. The
        derivative is 0 everywhere.
    """
    if padding_mode == ZEROS:
        return nearest_zeros_tap(g, size, align_corners)
    x, _, is_nan = _unnormalize_or_mask(g, size, padding_mode, align_corners)
    x, _ = pad_coordinate(x, size, padding_mode, align_corners)
    return nearest_tap_at(nearest_index(x, size), is_nan, size, padding_mode, g)


@register_jitable(forceinline=True)
def nearest_tap_at(rounded, lost, size, padding_mode, like):
    """`nearest_tap` of the rounded padded coordinate ``rounded`` (an integer
    of ``size``'s type; ``lost``: it samples nothing); the weight has
    ``like``'s type."""
    tap_padding = CIRCULAR if padding_mode == CIRCULAR else ZEROS  # (the coordinate is padded already)
    index, inside = pad_index(rounded, size, tap_padding, False)
    return index, type(like)(1) if inside and not lost else type(like)(0)


@register_jitable(forceinline=True)
def cubic_taps(g, size, padding_mode, align_corners):
    """The four cubic-convolution taps of grid value ``g`` along one axis.

    Unlike the linear taps, the padding applies to each tap index, not to the
    coordinate (as in PyTorch). With reflection, ±Inf pads like border, so it
    lands on the nearest edge.

    Returns
    -------
    indices : 4-tuple of int (``size``'s type)
        Padded tap indices for offsets -1, 0, 1, 2 from ``floor(x)``.
    weights : 4-tuple of float
        Cubic weights, 0 for taps outside the image (zeros) or a NaN ``g``.
    derivatives : 4-tuple of float
        ``d weight / d g`` (0 where the weight is forced to 0).
    """
    x, scale, is_nan = _unnormalize_or_mask(g, size, padding_mode, align_corners)
    tap_padding = padding_mode
    if padding_mode == REFLECTION and math.isinf(x):
        tap_padding = BORDER
    x = safe_coordinate(x, size)
    first = floor_index(x, size)
    return cubic_taps_at(first, x - type(x)(first), scale, is_nan, size, tap_padding, align_corners)


@register_jitable(forceinline=True)
def cubic_taps_at(first, t, scale, lost, size, tap_padding, align_corners):
    """`cubic_taps` of the coordinate ``first + t`` (``first`` an integer of
    ``size``'s type, ``0 <= t < 1``; ``scale``: its derivative; ``lost``: it
    samples nothing), each tap index padded by ``tap_padding``."""
    zero = type(t)(0)
    c0, c1, c2, c3 = cubic_coefficients(t)
    e0, e1, e2, e3 = cubic_coefficient_derivatives(t)
    i0, in0 = pad_index(first - 1, size, tap_padding, align_corners)
    i1, in1 = pad_index(first, size, tap_padding, align_corners)
    i2, in2 = pad_index(first + 1, size, tap_padding, align_corners)
    i3, in3 = pad_index(first + 2, size, tap_padding, align_corners)
    keep = not lost
    in0 = in0 and keep
    in1 = in1 and keep
    in2 = in2 and keep
    in3 = in3 and keep
    return (
        (i0, i1, i2, i3),
        (
            c0 if in0 else zero,
            c1 if in1 else zero,
            c2 if in2 else zero,
            c3 if in3 else zero,
        ),
        (
            e0 * scale if in0 else zero,
            e1 * scale if in1 else zero,
            e2 * scale if in2 else zero,
            e3 * scale if in3 else zero,
        ),
    )


@register_jitable(forceinline=True)
def taps_per_axis(mode):
    """Interpolation taps along each axis of a mode code: 1 nearest, 2 linear, 4 cubic."""
    if mode == NEAREST:
        return 1
    if mode == BICUBIC:
        return 4
    return 2


@register_jitable(forceinline=True)
def single_tap(index, weight):
    """One tap in `mode_taps`' form: ``index`` with ``weight`` and slope 0."""
    zero = type(weight)(0)
    return (index, index, index, index), (weight, zero, zero, zero), (zero, zero, zero, zero), 1


@register_jitable(forceinline=True)
def _linear_pair(i0, i1, w0, w1, d0, d1):
    """The two taps of `linear_taps` in `mode_taps`' form."""
    zero = type(w0)(0)
    return (i0, i1, i1, i1), (w0, w1, zero, zero), (d0, d1, zero, zero), 2


@register_jitable(forceinline=True)
def mode_taps(g, size, mode, padding_mode, align_corners):
    """The taps of grid value ``g`` along one axis in ``mode``: 4-tuples
    (indices, weights, d weight / d g) of which the first ``count`` are used
    (`taps_per_axis`; the rest have weight 0), and ``count``: `nearest_tap`,
    `linear_taps` or `cubic_taps`."""
    if mode == NEAREST:
        index, weight = nearest_tap(g, size, padding_mode, align_corners)
        return single_tap(index, weight)
    if mode == BICUBIC:
        indices, weights, slopes = cubic_taps(g, size, padding_mode, align_corners)
        return indices, weights, slopes, 4
    i0, i1, w0, w1, d0, d1 = linear_taps(g, size, padding_mode, align_corners)
    return _linear_pair(i0, i1, w0, w1, d0, d1)


@register_jitable(forceinline=True)
def point_tap_count(taps):
    """The taps of a point whose axes' taps are ``taps`` (z, y, x; each in
    `mode_taps`' form): the product of its axes'."""
    return taps[0][3] * taps[1][3] * taps[2][3]


@register_jitable(forceinline=True)
def point_tap(taps, j):
    """Tap ``j`` of a point of `point_tap_count`'s ``taps``, x fastest: its
    (z, y, x) indices and weight (w_z · w_y) · w_x."""
    taps_z, taps_y, taps_x = taps
    a, b, k = j // (taps_y[3] * taps_x[3]), (j // taps_x[3]) % taps_y[3], j % taps_x[3]
    return taps_z[0][a], taps_y[0][b], taps_x[0][k], (taps_z[1][a] * taps_y[1][b]) * taps_x[1][k]


@register_jitable(forceinline=True)
def outside_share(g, size, mode, align_corners):
    """The share of the interpolation weight of grid value ``g`` along one
    axis that falls on taps outside ``[0, size)`` (those zeros padding drops),
    and its derivative ``d share / d g``: `outside_share_at` of its unpadded
    coordinate. ``mode`` is a `stn_numba._codes` mode code."""
    first, t, slope, lost = _linear_coordinate(g, size, ZEROS, align_corners)
    return outside_share_at(first, t, slope, lost, size, mode)


@register_jitable(forceinline=True)
def outside_share_at(first, t, slope, lost, size, mode):
    """`outside_share` of the unpadded coordinate ``first + t`` (``first`` an
    integer of ``size``'s type, ``0 <= t < 1``; ``slope``: its derivative;
    ``lost``: it samples nothing).

    Exactly 0 where every tap is inside and exactly 1 where none is (or the
    point is lost), so constant padding (`stn_numba._cpu.padding`) leaves
    points inside the image bitwise as zeros padding gives them; in between,
    the sum of the outside taps' weights (the weights of each mode sum to 1).
    """
    zero = type(t)(0)
    one = type(t)(1)
    if lost:
        return one, zero
    if mode == NEAREST:
        rounded = first + _rounds_up(first, t)
        return (zero if rounded >= 0 and rounded < size else one), zero
    if mode == BILINEAR:
        inside0 = first >= 0 and first < size
        inside1 = first + 1 >= 0 and first + 1 < size
        if not (inside0 or inside1):
            return one, zero
        if inside0 and inside1:
            return zero, zero
        return (t, slope) if inside0 else (one - t, -slope)
    weights = cubic_coefficients(t)
    slopes = cubic_coefficient_derivatives(t)
    share = zero
    share_slope = zero
    inside = 0
    for k in range(4):
        tap = first - 1 + k
        if tap >= 0 and tap < size:
            inside += 1
        else:
            share += weights[k]
            share_slope += slopes[k] * slope
    if inside == 0:
        return one, zero
    if inside == 4:
        return zero, zero
    return share, share_slope


@register_jitable(forceinline=True)
def _rounds_up(first, t):
    """1 where ``first + t`` (``0 <= t < 1``) rounds half to even up to
    ``first + 1`` (as ``rint``), else 0, in ``first``'s type."""
    half = type(t)(0.5)
    return type(first)(1) if t > half or (t == half and first % 2 != 0) else type(first)(0)


@register_jitable(forceinline=True)
def combined_share(share_x, slope_x, share_y, slope_y, share_z, slope_z):
    """The weight a point gives constant padding's fill from its axes'
    outside shares: ``1 - Π_a (1 - share_a)``, and its derivative along x, y
    and z."""
    one = type(share_x)(1)
    kept_x, kept_y, kept_z = one - share_x, one - share_y, one - share_z
    return (one - (kept_x * kept_y) * kept_z,
            (slope_x * kept_y) * kept_z, (slope_y * kept_x) * kept_z, (slope_z * kept_x) * kept_y)


@register_jitable(forceinline=True)
def fill_gradient(upstream, fill, slope_x, slope_y, slope_z):
    """The fill's term of a point's coordinate gradient along x, y and z:
    ``fill · upstream · slope`` (``upstream``: Σ_c grad_output), exactly 0
    where the slope is (so a non-finite fill reaches only points it weighs)."""
    zero = type(upstream)(0)
    scaled = fill * upstream
    return (scaled * slope_x if slope_x != 0 else zero, scaled * slope_y if slope_y != 0 else zero,
            scaled * slope_z if slope_z != 0 else zero)


@register_jitable(forceinline=True)
def fill_share(grid, n, p, sizes, mode, align_corners):
    """`combined_share` at point ``p`` of image ``n`` of a grid viewed as
    (N, P, A); ``sizes``: the input's (W, H, D), D = 1 for images."""
    zero = type(grid[n, p, 0])(0)
    share_x, slope_x = outside_share(grid[n, p, 0], sizes[0], mode, align_corners)
    share_y, slope_y = outside_share(grid[n, p, 1], sizes[1], mode, align_corners)
    share_z, slope_z = zero, zero
    if grid.shape[2] == 3:
        share_z, slope_z = outside_share(grid[n, p, 2], sizes[2], mode, align_corners)
    return combined_share(share_x, slope_x, share_y, slope_y, share_z, slope_z)


@register_jitable(forceinline=True)
def fill_point_gradient(grad_output, grid, n, p, sizes, mode, align_corners, fill):
    """The fill's term of the gradient of grid point ``p`` of image ``n``
    (grid (N, P, A), grad_output (N, C, P)) along x, y and z."""
    _, slope_x, slope_y, slope_z = fill_share(grid, n, p, sizes, mode, align_corners)
    upstream = type(fill)(0)
    if slope_x != 0 or slope_y != 0 or slope_z != 0:
        for c in range(grad_output.shape[1]):
            upstream += grad_output[n, c, p]
    return fill_gradient(upstream, fill, slope_x, slope_y, slope_z)


@register_jitable(forceinline=True)
def affine_base_coordinate(i, size, align_corners, like):
    """The normalised coordinate of pixel ``i`` of ``size`` (``affine_grid``).

    ``(2i - (size-1)) / (size-1)`` with align_corners=True and
    ``(2i - (size-1)) / size`` with False (PyTorch's
    ``linspace(-1, 1, size)``, scaled by ``(size-1)/size`` when False),
    rounded once, so exactly symmetric; 0 when ``size == 1``. ``like`` is any
    value of the working float type (only its type is used).
    """
    if size <= 1:
        return type(like)(0)
    numerator = type(like)(2 * i - (size - 1))
    if align_corners:
        return numerator / type(like)(size - 1)
    return numerator / type(like)(size)


@register_jitable(forceinline=True)
def affine_line(theta, n, a, y, z, dims):
    """Component ``a`` of ``theta[n] @ (x, y[, z], 1)`` along a grid line
    (y and z fixed, x varying), as ``(slope, offset)``: its value at x is
    `line_point` ``slope * x + offset``. ``dims`` is A (theta[n] is A x
    (A+1)); z is used only where A == 3. The offset is ``(t1 y + tA) + t2 z``
    in that order, `affine_grid`'s on both targets, so every affine grid
    value (the grid kernels, the fused samplers) has the same bits."""
    offset = theta[n, a, 1] * y + theta[n, a, dims]
    if dims == 3:
        offset += theta[n, a, 2] * z
    return theta[n, a, 0], offset


@register_jitable(forceinline=True)
def line_point(line, x):
    """The value at ``x`` of a line ``(slope, offset)`` of `affine_line`."""
    return line[0] * x + line[1]


@register_jitable(forceinline=True)
def affine_component(theta, n, a, x, y, z):
    """Component ``a`` of ``theta[n] @ (x, y[, z], 1)`` (theta (N, A, A+1)):
    `affine_line`'s arithmetic at one point."""
    return line_point(affine_line(theta, n, a, y, z, theta.shape[1]), x)


PROJECTIVE_MIN_DENOMINATOR = 2.0**-20  # exact in float32 and float64


@register_jitable(forceinline=True)
def projective_denominator(w):
    """The denominator ``w = h_3 · (x, y, 1)`` of a projective grid, kept away from 0.

    Returns
    -------
    w : float
        ``w``, or ``±2**-20`` with the sign of ``w`` (0 counts as positive)
        where ``|w| < 2**-20``: points near the horizon line then map to huge
        finite coordinates, which the samplers treat as far outside. NaN
        stays NaN.
    slope : float
        ``d (returned w) / dw``: 1, or 0 where clamped.
    """
    limit = type(w)(PROJECTIVE_MIN_DENOMINATOR)
    if abs(w) < limit:
        if w >= type(w)(0):
            return limit, type(w)(0)
        return -limit, type(w)(0)
    return w, type(w)(1)


@register_jitable(forceinline=True)
def projective_lines(theta, n, y):
    """The rows of ``theta[n]`` (3 x 3) along a projective grid line of
    base coordinate ``y``: `affine_line` of each, a 2-D affine row."""
    zero = type(y)(0)  # (no z)
    return (affine_line(theta, n, 0, y, zero, 2), affine_line(theta, n, 1, y, zero, 2),
            affine_line(theta, n, 2, y, zero, 2))


@register_jitable(forceinline=True)
def projective_point(lines, x):
    """The projective grid value (x, y) at base coordinate ``x`` of a line
    of `projective_lines`: ``(h_1 · p, h_2 · p) / w``, ``w = h_3 · p`` kept
    away from 0 by `projective_denominator`."""
    denominator, _ = projective_denominator(line_point(lines[2], x))
    return line_point(lines[0], x) / denominator, line_point(lines[1], x) / denominator


@register_jitable(forceinline=True)
def projective_point_gradient(theta, n, x, y, grad_x, grad_y):
    """The quotient rule at one point of image ``n`` of a projective grid, in float64.

    With ``w = h_3 · p`` kept away from 0 (`projective_denominator`), the
    source point ``s = (h_1 · p, h_2 · p) / w`` and ``p = (x, y, 1)``, row i < 2
    of ``grad_theta`` gets ``f_i p`` and row 2 gets ``f_w p``.

    Returns
    -------
    f_x, f_y : float64
        ``grad_x / w`` and ``grad_y / w``.
    f_w : float64
        ``-(f_x s_x + f_y s_y)``, 0 where ``w`` was clamped.

    Notes
    -----
    float64 throughout, whatever the dtype of ``theta`` and the gradients:
    with float32 values no intermediate overflows (not even where the float32
    source point is ±Inf), so finite arguments never give ``0 * Inf``, while
    non-finite ones propagate as in plain arithmetic.
    """
    x = np.float64(x)
    y = np.float64(y)
    w, slope = projective_denominator(_projective_row(theta, n, 2, x, y))
    inverse = 1.0 / w  # one division; |w| >= 2**-20, so it is finite
    factor_x = np.float64(grad_x) * inverse
    factor_y = np.float64(grad_y) * inverse
    source_x = _projective_row(theta, n, 0, x, y) * inverse
    source_y = _projective_row(theta, n, 1, x, y) * inverse
    return factor_x, factor_y, -slope * (factor_x * source_x + factor_y * source_y)


@register_jitable(forceinline=True)
def _projective_row(theta, n, i, x, y):
    """``theta[n, i] · (x, y, 1)`` in float64, in the grid's order ``a x + (b y + c)``."""
    return np.float64(theta[n, i, 0]) * x + (np.float64(theta[n, i, 1]) * y + np.float64(theta[n, i, 2]))


# ------------------------------------------------------------ attention and similarity
# One image ``n`` a call: the CPU kernels loop over images, the CUDA ones run
# a thread each.


@register_jitable(forceinline=True)
def attention_to_affine(params, theta, n):
    """Row (s, tx, ty) of ``params`` (N, 3) into ``theta[n]`` = [[s, 0, tx], [0, s, ty]]."""
    zero = theta.dtype.type(0)
    theta[n, 0, 0] = params[n, 0]
    theta[n, 0, 1] = zero
    theta[n, 0, 2] = params[n, 1]
    theta[n, 1, 0] = zero
    theta[n, 1, 1] = params[n, 0]
    theta[n, 1, 2] = params[n, 2]


@register_jitable(forceinline=True)
def attention_to_affine_backward(grad_theta, grad_params, n):
    """Row ``n`` of ``grad_params`` (N, 3): (g00 + g11, g02, g12) of ``grad_theta[n]``."""
    grad_params[n, 0] = grad_theta[n, 0, 0] + grad_theta[n, 1, 1]
    grad_params[n, 1] = grad_theta[n, 0, 2]
    grad_params[n, 2] = grad_theta[n, 1, 2]


@register_jitable(forceinline=True)
def similarity_to_affine(params, theta, n):
    """Row (s, angle, tx, ty) of ``params`` (N, 4) into ``theta[n]`` = [s R(angle) | (tx, ty)]."""
    scale = params[n, 0]
    cosine = scale * math.cos(params[n, 1])
    sine = scale * math.sin(params[n, 1])
    theta[n, 0, 0] = cosine
    theta[n, 0, 1] = -sine
    theta[n, 0, 2] = params[n, 2]
    theta[n, 1, 0] = sine
    theta[n, 1, 1] = cosine
    theta[n, 1, 2] = params[n, 3]


@register_jitable(forceinline=True)
def similarity_to_affine_backward(grad_theta, params, grad_params, n):
    """Row ``n`` of ``grad_params`` (N, 4): the chain rule through `similarity_to_affine`."""
    cosine = math.cos(params[n, 1])
    sine = math.sin(params[n, 1])
    diagonal = grad_theta[n, 0, 0] + grad_theta[n, 1, 1]
    skew = grad_theta[n, 1, 0] - grad_theta[n, 0, 1]
    grad_params[n, 0] = cosine * diagonal + sine * skew
    grad_params[n, 1] = params[n, 0] * (cosine * skew - sine * diagonal)
    grad_params[n, 2] = grad_theta[n, 0, 2]
    grad_params[n, 3] = grad_theta[n, 1, 2]


# ------------------------------------------------------------ displacement fields
# A field u is viewed as (N, A, D, H, W): A components in array-axis order,
# D = 1 for 2-D fields, whose axes are then the view's last two.


@register_jitable(forceinline=True)
def _difference_ends(k, size):
    """The two samples of the difference at ``k`` along an axis of ``size``
    (numpy.gradient with edge_order=1) and whether it is halved: (k-1, k+1)
    halved inside, (0, 1) and (size-2, size-1) whole at the ends, the same
    sample twice (no difference) when size < 2."""
    low = k - 1 if k > 0 else k
    high = k + 1 if k < size - 1 else k
    return low, high, low != k and high != k


@register_jitable(forceinline=True)
def field_derivative(u, n, i, z, y, x, axis):
    """∂u_i/∂(view axis ``axis``: 0 D, 1 H, 2 W) at (z, y, x): numpy.gradient's difference."""
    k = z if axis == 0 else (y if axis == 1 else x)
    low, high, halved = _difference_ends(k, u.shape[2 + axis])
    dz, dy, dx = 1 if axis == 0 else 0, 1 if axis == 1 else 0, 1 if axis == 2 else 0
    difference = (u[n, i, z + dz * (high - k), y + dy * (high - k), x + dx * (high - k)]
                  - u[n, i, z + dz * (low - k), y + dy * (low - k), x + dx * (low - k)])
    return difference * type(difference)(0.5) if halved else difference


@register_jitable(forceinline=True)
def difference_weight(k, m, size, like):
    """The weight of sample ``m`` in `field_derivative`'s difference at ``k``
    along an axis of ``size`` (0 unless m is one of its two samples)."""
    low, high, halved = _difference_ends(k, size)
    scale = type(like)(0.5) if halved else type(like)(1)
    if low == high:
        return type(like)(0)
    if m == high:
        return scale
    if m == low:
        return -scale
    return type(like)(0)


@register_jitable(forceinline=True)
def _jacobian_entry(u, n, z, y, x, i, a):
    """Entry (i, a) of `field_jacobian`."""
    axes = u.shape[1]
    like = u[n, 0, z, y, x]
    identity = type(like)(1) if i == a else type(like)(0)
    if i >= axes or a >= axes:
        return identity
    return identity + field_derivative(u, n, i, z, y, x, 3 - axes + a)


@register_jitable(forceinline=True)
def field_jacobian(u, n, z, y, x):
    """The Jacobian I + ∇u of the map p -> p + u(p) at (z, y, x), rows the
    components, as a row-major 3x3 tuple; for 2-D fields (A = 2) the upper
    left 2x2 block is the map's and the rest the identity's."""
    return (_jacobian_entry(u, n, z, y, x, 0, 0), _jacobian_entry(u, n, z, y, x, 0, 1),
            _jacobian_entry(u, n, z, y, x, 0, 2), _jacobian_entry(u, n, z, y, x, 1, 0),
            _jacobian_entry(u, n, z, y, x, 1, 1), _jacobian_entry(u, n, z, y, x, 1, 2),
            _jacobian_entry(u, n, z, y, x, 2, 0), _jacobian_entry(u, n, z, y, x, 2, 1),
            _jacobian_entry(u, n, z, y, x, 2, 2))


@register_jitable(forceinline=True)
def determinant_cofactors(m):
    """The determinant of a row-major 3x3 tuple ``m`` and its cofactors
    (∂det/∂m, row-major), by expansion along the first row."""
    c0 = m[4] * m[8] - m[5] * m[7]
    c1 = m[5] * m[6] - m[3] * m[8]
    c2 = m[3] * m[7] - m[4] * m[6]
    cofactors = (c0, c1, c2,
                 m[2] * m[7] - m[1] * m[8], m[0] * m[8] - m[2] * m[6], m[1] * m[6] - m[0] * m[7],
                 m[1] * m[5] - m[2] * m[4], m[2] * m[3] - m[0] * m[5], m[0] * m[4] - m[1] * m[3])
    return m[0] * c0 + m[1] * c1 + m[2] * c2, cofactors


@register_jitable(forceinline=True)
def determinant_gradient(grad_output, u, n, z, y, x):
    """The gradient of Σ grad_output · det(I + ∇u) with respect to u at (z,
    y, x), components 0..2 (those past A are 0): over the axes a and the
    points k whose difference along a reads this point, grad_output[k] ·
    ∂det/∂J_ia at k · the difference's weight of it, in that fixed order."""
    axes = u.shape[1]
    like = u[n, 0, z, y, x]
    totals = (type(like)(0), type(like)(0), type(like)(0))
    for a in range(axes):
        axis = 3 - axes + a
        m = z if axis == 0 else (y if axis == 1 else x)
        size = u.shape[2 + axis]
        for k in range(max(m - 1, 0), min(m + 1, size - 1) + 1):
            weight = difference_weight(k, m, size, like)
            if weight == 0:
                continue
            kz, ky, kx = (k, y, x) if axis == 0 else ((z, k, x) if axis == 1 else (z, y, k))
            cofactors = determinant_cofactors(field_jacobian(u, n, kz, ky, kx))[1]
            g = grad_output[n, kz, ky, kx] * weight
            totals = (totals[0] + g * cofactors[a], totals[1] + g * cofactors[3 + a], totals[2] + g * cofactors[6 + a])
    return totals


# ------------------------------------------------------------ warping by a displacement field
# The source point of pixel i displaced by u pixels stays split as an index
# and a fraction, first = i + floor(u) and t = u - floor(u), so it keeps u's
# precision however large i is (a normalised grid would round i + u first).


@register_jitable(forceinline=True)
def displaced_coordinate(i, u, size, padding_mode, align_corners, pad):
    """Pixel ``i`` displaced by ``u`` pixels along an axis of ``size``, as
    (first, t, slope, lost): the coordinate ``first + t`` (``first`` of
    ``size``'s type, ``0 <= t < 1``), with border or reflection padding
    applied if ``pad`` (the linear and nearest taps; bicubic pads its taps),
    ``slope`` its derivative in ``u``, and whether it samples nothing (a NaN
    ``u``; ±Inf with circular padding). ``u`` is clamped like
    `safe_coordinate`; ±Inf pads like border with reflection (the nearest
    edge). Reflection converts to one float only for points outside the
    image."""
    zero = type(u)(0)
    lost = u != u or (padding_mode == CIRCULAR and math.isinf(u))
    infinite = math.isinf(u)
    bound = type(u)(max(_MIN_SAFE_BOUND, 4 * size))
    u = zero if lost else min(max(u, -bound), bound)
    whole = floor_value(u)
    first = type(size)(i) + type(size)(whole)
    t = u - whole
    padding = BORDER if padding_mode == REFLECTION and infinite else padding_mode
    last = type(size)(size - 1)
    if pad and padding == BORDER:
        if first < 0 or (first == 0 and t == zero):
            return type(size)(0), zero, zero, lost
        if first >= last:
            return last, zero, zero, lost
    elif pad and padding == REFLECTION and not (first >= 0 and (first > 0 or t > zero) and first < last):
        x, grad_reflect = reflect_coordinate(type(u)(first) + t, size, align_corners)
        x, grad_clip = clip_coordinate(x, size)
        first = floor_index(x, size)
        return first, x - type(x)(first), grad_reflect * grad_clip, lost
    return first, t, type(u)(1), lost


@register_jitable(forceinline=True)
def displaced_taps(i, u, size, mode, padding_mode, align_corners):
    """The taps along one axis of pixel ``i`` displaced by ``u`` pixels, in
    `mode_taps`' form (slopes: d weight / d u); constant padding takes zeros
    padding's taps (its fill is added apart)."""
    cubic = mode == BICUBIC
    first, t, slope, lost = displaced_coordinate(i, u, size, padding_mode, align_corners, not cubic)
    if mode == NEAREST:
        index, weight = nearest_tap_at(first + _rounds_up(first, t), lost, size, padding_mode, u)
        return single_tap(index, weight)
    if not cubic:
        i0, i1, w0, w1, d0, d1 = linear_taps_at(first, t, slope, lost, size, padding_mode)
        return _linear_pair(i0, i1, w0, w1, d0, d1)
    tap_padding = padding_mode if padding_mode == BORDER or padding_mode == REFLECTION or padding_mode == CIRCULAR \
        else ZEROS  # (constant: zeros)
    if padding_mode == REFLECTION and math.isinf(u):
        tap_padding = BORDER  # the nearest edge
    indices, weights, slopes = cubic_taps_at(first, t, slope, lost, size, tap_padding, align_corners)
    return indices, weights, slopes, 4


@register_jitable(forceinline=True)
def displaced_share(i, u, size, mode, align_corners):
    """`outside_share_at` of pixel ``i`` displaced by ``u`` (constant padding)."""
    first, t, slope, lost = displaced_coordinate(i, u, size, ZEROS, align_corners, False)
    return outside_share_at(first, t, slope, lost, size, mode)


@register_jitable(forceinline=True)
def _point_displacement(u, n, z, y, x):
    """The displacement of point (z, y, x) of a field viewed as (N, A, D, H,
    W) along z, y and x (z's 0 for 2-D fields)."""
    axes = u.shape[1]
    along_z = u[n, 0, z, y, x] if axes == 3 else type(u[n, 0, z, y, x])(0)
    return along_z, u[n, axes - 2, z, y, x], u[n, axes - 1, z, y, x]


@register_jitable(forceinline=True)
def warp_point_taps(input, u, n, z, y, x, mode, padding_mode, align_corners):
    """The taps along z, y and x of point (z, y, x) of ``input`` (N, C, D, H,
    W) warped by the field ``u``: `displaced_taps` of each axis (z: pixel z
    itself for 2-D fields, whose D is 1)."""
    depth, height, width = input.shape[2], input.shape[3], input.shape[4]
    along_z, along_y, along_x = _point_displacement(u, n, z, y, x)
    if u.shape[1] == 3:
        taps_z = displaced_taps(z, along_z, depth, mode, padding_mode, align_corners)
    else:  # one tap of weight 1
        taps_z = single_tap(type(depth)(z), type(along_z)(1))
    return (taps_z, displaced_taps(y, along_y, height, mode, padding_mode, align_corners),
            displaced_taps(x, along_x, width, mode, padding_mode, align_corners))


@register_jitable(forceinline=True)
def warp_point_share(input, u, n, z, y, x, mode, align_corners):
    """`combined_share` of point (z, y, x) warped by ``u`` (constant padding)."""
    depth, height, width = input.shape[2], input.shape[3], input.shape[4]
    along_z, along_y, along_x = _point_displacement(u, n, z, y, x)
    share_z, slope_z = displaced_share(z, along_z, depth, mode, align_corners)
    share_y, slope_y = displaced_share(y, along_y, height, mode, align_corners)
    share_x, slope_x = displaced_share(x, along_x, width, mode, align_corners)
    return combined_share(share_x, slope_x, share_y, slope_y, share_z, slope_z)


@register_jitable(forceinline=True)
def warp_point(input, u, output, n, z, y, x, mode, padding_mode, align_corners, fill):
    """Write ``output[n, :, z, y, x]``: ``input`` sampled at (z, y, x) + u(z, y,
    x), every channel from the same taps (zero weights skipped), plus
    ``fill`` times the point's outside share with constant padding."""
    taps = warp_point_taps(input, u, n, z, y, x, mode, padding_mode, align_corners)
    share = warp_point_share(input, u, n, z, y, x, mode, align_corners)[0] if padding_mode == CONSTANT \
        else type(fill)(0)
    for c in range(input.shape[1]):
        total = type(fill)(0)
        for j in range(point_tap_count(taps)):
            tap_z, tap_y, tap_x, weight = point_tap(taps, j)
            if weight != 0:
                total += weight * input[n, c, tap_z, tap_y, tap_x]
        output[n, c, z, y, x] = total + fill * share if share != 0 else total


@register_jitable(forceinline=True)
def warp_point_gradient(grad_output, input, u, n, z, y, x, mode, padding_mode, align_corners, fill):
    """The gradient of Σ grad_output · warp(input, u) with respect to u at
    (z, y, x), along z, y and x: over the taps, Σ_c grad_output · input at the
    tap, times each axis's weight derivative and the other axes' weights, in
    a fixed order; plus the fill's term with constant padding."""
    zero = type(fill)(0)
    taps_z, taps_y, taps_x = warp_point_taps(input, u, n, z, y, x, mode, padding_mode, align_corners)
    total_z, total_y, total_x = zero, zero, zero
    if mode == NEAREST:
        return total_z, total_y, total_x
    for a in range(taps_z[3]):
        for b in range(taps_y[3]):
            for k in range(taps_x[3]):
                wz, wy, wx = taps_z[1][a], taps_y[1][b], taps_x[1][k]
                dz, dy, dx = taps_z[2][a], taps_y[2][b], taps_x[2][k]
                if wz == 0 and dz == 0 or wy == 0 and dy == 0 or wx == 0 and dx == 0:
                    continue
                value = zero
                for c in range(input.shape[1]):
                    value += grad_output[n, c, z, y, x] * input[n, c, taps_z[0][a], taps_y[0][b], taps_x[0][k]]
                total_z += value * (dz * wy * wx)
                total_y += value * (wz * dy * wx)
                total_x += value * (wz * wy * dx)
    if padding_mode == CONSTANT:
        _, slope_x, slope_y, slope_z = warp_point_share(input, u, n, z, y, x, mode, align_corners)
        if slope_x != 0 or slope_y != 0 or slope_z != 0:
            upstream = zero
            for c in range(input.shape[1]):
                upstream += grad_output[n, c, z, y, x]
            fill_x, fill_y, fill_z = fill_gradient(upstream, fill, slope_x, slope_y, slope_z)
            total_z, total_y, total_x = total_z + fill_z, total_y + fill_y, total_x + fill_x
    return total_z, total_y, total_x


@register_jitable(forceinline=True)
def store_field_gradient(grad_u, n, z, y, x, along_z, along_y, along_x):
    """Store a point's gradient along z, y and x into a field viewed as (N, A,
    D, H, W) (a 2-D field has no z component)."""
    axes = grad_u.shape[1]
    if axes == 3:
        grad_u[n, 0, z, y, x] = along_z
    grad_u[n, axes - 2, z, y, x] = along_y
    grad_u[n, axes - 1, z, y, x] = along_x
