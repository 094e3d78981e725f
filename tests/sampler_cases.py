"""The mode x padding x align_corners x dims cases shared by the sampler test files."""

import numpy as np
import pytest

import reference

DTYPES = [np.float64, np.float32]
PADDINGS = list(reference.PADDING_MODES)
ALIGN = [False, True]


def modes_for(dim):
    """The modes defined for ``dim`` spatial dimensions (all: bicubic on volumes is tricubic)."""
    return list(reference.MODES)


COMBOS = [
    pytest.param(dim, mode, padding, align, id=f"{dim}d-{mode}-{padding}-{'aligned' if align else 'unaligned'}")
    for dim in (2, 3)
    for mode in modes_for(dim)
    for padding in PADDINGS
    for align in ALIGN
]
COMBO_ARGS = "dim, mode, padding_mode, align_corners"
# torch has no circular padding (scipy.ndimage's "grid-wrap" anchors it: tests/test_padding.py) and no
# tricubic (the reference anchors it, and 2-D bicubic on volumes constant along an axis)
TORCH_COMBOS = [case for case in COMBOS if case.values[2] != "circular" and case.values[:2] != (3, "bicubic")]
# Tricubic compiles a parallel kernel per padding and dtype on the larger special cases (10-15 s each
# in CI): the costly tests take it with zeros and reflection padding only, the others everywhere.
LEAN_COMBOS = [case for case in COMBOS
               if case.values[:2] != (3, "bicubic") or case.values[2] in ("zeros", "reflection")]

INPUT_SHAPES = {2: (2, 3, 5, 6), 3: (2, 2, 3, 4, 5)}
