"""The mode x padding x align_corners x dims cases shared by the sampler test files."""

import numpy as np
import pytest

import reference

DTYPES = [np.float64, np.float32]
MODES = list(reference.MODES)  # every mode in 2-D and 3-D: bicubic on volumes is tricubic
PADDINGS = list(reference.PADDING_MODES)  # "constant" takes a fill value: tests/test_padding.py
ALL_PADDINGS = PADDINGS + ["constant"]  # the ops tested with every padding, constant (and a fill value) too
ALIGN = [False, True]

COMBOS = [
    pytest.param(dim, mode, padding, align, id=f"{dim}d-{mode}-{padding}-{'aligned' if align else 'unaligned'}")
    for dim in (2, 3)
    for mode in MODES
    for padding in PADDINGS
    for align in ALIGN
]
COMBO_ARGS = "dim, mode, padding_mode, align_corners"
# torch has no circular padding (scipy.ndimage's "grid-wrap" anchors it: tests/test_padding.py) and no
# tricubic (the reference anchors it, and 2-D bicubic on volumes constant along an axis)
TORCH_COMBOS = [case for case in COMBOS if case.values[2] != "circular" and case.values[:2] != (3, "bicubic")]
# Tricubic compiles a parallel kernel per padding and dtype on the larger special cases (10-15 s each
# in CI), and runs 64 taps a point in the CUDA simulator's Python: the costly tests and the CUDA suite
# take it with zeros and reflection padding only (its per-axis taps are bicubic's, which takes every
# padding), the others everywhere.
LEAN_COMBOS = [case for case in COMBOS
               if case.values[:2] != (3, "bicubic") or case.values[2] in ("zeros", "reflection")]

INPUT_SHAPES = {2: (2, 3, 5, 6), 3: (2, 2, 3, 4, 5)}
