"""Bad input raises ValueError or TypeError naming the argument, the expectation and what was given.

Never a Numba typing error, never a crash. The exact wording is free: each
case matches the argument's name and checks that the given value (a shape,
a dtype, a name) is quoted.
"""

import re

import numba
import numpy as np
import pytest

import stn_numba

F64, F32 = np.float64, np.float32


def zeros(*shape, dtype=F64):
    return np.zeros(shape, dtype)


IMAGE, GRID_2D, OUT_2D = zeros(2, 3, 5, 6), zeros(2, 4, 3, 2), zeros(2, 3, 4, 3)
VOLUME, GRID_3D = zeros(2, 3, 4, 5, 6), zeros(2, 2, 4, 3, 3)


def sample(**changes):
    arguments = {"input": IMAGE, "grid": GRID_2D, **changes}
    return lambda: stn_numba.grid_sample(**arguments)


def sample_backward(**changes):
    arguments = {"grad_output": OUT_2D, "input": IMAGE, "grid": GRID_2D, **changes}
    return lambda: stn_numba.grid_sample_backward(**arguments)


def grid(**changes):
    arguments = {"theta": zeros(2, 2, 3), "size": (2, 3, 5, 6), **changes}
    return lambda: stn_numba.affine_grid(**arguments)


def grid_backward(**changes):
    arguments = {"grad_grid": zeros(2, 5, 6, 2), "size": (2, 3, 5, 6), **changes}
    return lambda: stn_numba.affine_grid_backward(**arguments)


# (call, exception types, argument name, text that must be quoted from what was given)
CASES = {
    # grid_sample: ranks and shapes
    "input_3d": (sample(input=zeros(3, 5, 6)), ValueError, "input", r"\(3, 5, 6\)"),
    "input_6d": (sample(input=zeros(1, 1, 2, 2, 2, 2)), ValueError, "input", r"\(1, 1, 2, 2, 2, 2\)"),
    "grid_rank": (sample(grid=zeros(2, 4, 3, 1, 2)), ValueError, "grid", r"\(2, 4, 3, 1, 2\)"),
    "grid_last_dim_2d": (sample(grid=zeros(2, 4, 3, 3)), ValueError, "grid", r"\(2, 4, 3, 3\)"),
    "grid_last_dim_3d": (sample(input=VOLUME, grid=zeros(2, 2, 4, 3, 2)), ValueError, "grid", r"\(2, 2, 4, 3, 2\)"),
    "batch_mismatch": (sample(grid=zeros(3, 4, 3, 2)), ValueError, "grid", "3"),
    "empty_height": (sample(input=zeros(2, 3, 0, 6)), ValueError, "input", r"\(2, 3, 0, 6\)"),
    "empty_depth": (sample(input=zeros(2, 3, 0, 5, 6), grid=GRID_3D), ValueError, "input", r"\(2, 3, 0, 5, 6\)"),
    # grid_sample: dtypes
    "input_int": (sample(input=zeros(2, 3, 5, 6, dtype=np.int64)), TypeError, "input", "int64"),
    "grid_int": (sample(grid=zeros(2, 4, 3, 2, dtype=np.int32)), TypeError, "grid", "int32"),
    "input_complex": (sample(input=zeros(2, 3, 5, 6, dtype=np.complex128)), TypeError, "input", "complex128"),
    "input_float16": (sample(input=zeros(2, 3, 5, 6, dtype=np.float16)), TypeError, "input", "float16"),
    "input_bool": (sample(input=zeros(2, 3, 5, 6, dtype=bool)), TypeError, "input", "bool"),
    "mixed_float": (sample(grid=zeros(2, 4, 3, 2, dtype=F32)), TypeError, "grid", "float32"),
    # grid_sample: names and flags
    "mode_unknown": (sample(mode="linear"), ValueError, "mode", "linear"),
    "mode_case": (sample(mode="Bilinear"), ValueError, "mode", "Bilinear"),
    "mode_none": (sample(mode=None), (ValueError, TypeError), "mode", "None"),
    "mode_int": (sample(mode=0), (ValueError, TypeError), "mode", "0"),
    "padding_unknown": (sample(padding_mode="wrap"), ValueError, "padding_mode", "wrap"),
    "fill_without_constant": (sample(padding_mode="border", fill_value=1.0), ValueError, "fill_value", "border"),
    "fill_not_a_number": (sample(padding_mode="constant", fill_value="0"), TypeError, "fill_value", "'0'"),
    "padding_none": (sample(padding_mode=None), (ValueError, TypeError), "padding_mode", "None"),
    "unknown_mode_5d": (sample(input=VOLUME, grid=GRID_3D, mode="tricubic"), ValueError, "mode", "tricubic"),
    "align_corners_str": (sample(align_corners="yes"), TypeError, "align_corners", "yes"),
    # grid_sample_backward
    "grad_output_shape": (sample_backward(grad_output=zeros(2, 3, 4, 4)), ValueError, "grad_output",
                          r"\(2, 3, 4, 4\)"),
    "grad_output_rank": (sample_backward(grad_output=zeros(2, 3, 12)), ValueError, "grad_output", r"\(2, 3, 12\)"),
    "grad_output_dtype": (sample_backward(grad_output=zeros(2, 3, 4, 3, dtype=F32)), TypeError, "grad_output",
                          "float32"),
    "grad_output_int": (sample_backward(grad_output=zeros(2, 3, 4, 3, dtype=np.int64)), TypeError, "grad_output",
                        "int64"),
    "backward_input_rank": (sample_backward(input=zeros(3, 5, 6)), ValueError, "input", r"\(3, 5, 6\)"),
    "backward_mode": (sample_backward(mode="area"), ValueError, "mode", "area"),
    "backward_padding": (sample_backward(padding_mode="wrap"), ValueError, "padding_mode", "wrap"),
    "backward_unknown_mode_5d": (sample_backward(grad_output=zeros(2, 3, 2, 4, 3), input=VOLUME, grid=GRID_3D,
                                                 mode="tricubic"), ValueError, "mode", "tricubic"),
    "backward_mixed_float": (sample_backward(input=zeros(2, 3, 5, 6, dtype=F32),
                                             grad_output=zeros(2, 3, 4, 3, dtype=F32)), TypeError, "grid", "float64"),
    # affine_grid
    "theta_2d": (grid(theta=zeros(2, 3)), ValueError, "theta", r"\(2, 3\)"),
    "theta_shape": (grid(theta=zeros(2, 2, 2)), ValueError, "theta", r"\(2, 2, 2\)"),
    "theta_for_3d_size": (grid(size=(2, 3, 4, 5, 6)), ValueError, "theta", r"\(2, 2, 3\)"),
    "theta_3d_for_2d_size": (grid(theta=zeros(2, 3, 4)), ValueError, "theta", r"\(2, 3, 4\)"),
    "theta_batch": (grid(theta=zeros(3, 2, 3)), ValueError, "theta", r"\(3, 2, 3\)"),
    "theta_int": (grid(theta=zeros(2, 2, 3, dtype=np.int64)), TypeError, "theta", "int64"),
    "theta_complex": (grid(theta=zeros(2, 2, 3, dtype=np.complex64)), TypeError, "theta", "complex64"),
    "size_negative": (grid(size=(2, 3, -5, 6)), ValueError, "size", "-5"),
    "size_negative_batch": (grid(size=(-2, 3, 5, 6)), ValueError, "size", "-2"),
    "size_length": (grid(size=(2, 3, 5)), ValueError, "size", r"\(2, 3, 5\)|3"),
    "size_float": (grid(size=(2, 3, 5.5, 6)), TypeError, "size", "5.5"),
    "size_none": (grid(size=None), TypeError, "size", "None"),
    "affine_align_corners": (grid(align_corners=1.0), TypeError, "align_corners", "1.0"),
    # affine_grid_backward
    "grad_grid_shape": (grid_backward(grad_grid=zeros(2, 6, 5, 2)), ValueError, "grad_grid", r"\(2, 6, 5, 2\)"),
    "grad_grid_last_dim": (grid_backward(grad_grid=zeros(2, 5, 6, 3)), ValueError, "grad_grid", r"\(2, 5, 6, 3\)"),
    "grad_grid_int": (grid_backward(grad_grid=zeros(2, 5, 6, 2, dtype=np.int32)), TypeError, "grad_grid", "int32"),
    "backward_size_negative": (grid_backward(size=(2, 3, 5, -6)), ValueError, "size", "-6"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_clearly(case):
    call, expected_type, argument, given = CASES[case]
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    error = info.value
    assert isinstance(error, expected_type), f"{type(error).__name__}: {error}"
    assert not isinstance(error, numba.core.errors.NumbaError), f"a Numba error: {error}"
    message = str(error)
    assert argument in message, f"{argument!r} not named in: {message}"
    assert re.search(given, message), f"given value {given!r} not quoted in: {message}"
