"""Shared helpers of the CUDA suite: tiny inputs (the mode combinations: ``sampler_cases.LEAN_COMBOS``)."""

import numba
import numpy as np

#: Whether numba.cuda is the CUDA simulator (NUMBA_ENABLE_CUDASIM=1 before numba was imported).
SIMULATED = bool(numba.config.ENABLE_CUDASIM)

INPUT_SHAPES = {2: (2, 2, 3, 4), 3: (2, 2, 2, 3, 4)}
OUTPUT_SPATIAL = {2: (3, 4), 3: (2, 3, 3)}


def random_case(rng, dim, dtype, spread=1.3):
    """(input, grid, grad_output): points inside and up to ``spread`` - 1 outside [-1, 1],
    some with a component exactly on a border or the centre."""
    shape = INPUT_SHAPES[dim]
    input = rng.standard_normal(shape)
    grid = rng.uniform(-spread, spread, (shape[0], *OUTPUT_SPATIAL[dim], dim))
    special = [-1.0, 1.0, 0.0, 0.5, -1.5]  # edges or corner centres, the centre, outside
    flat = grid.reshape(-1, dim)
    flat[: len(special), 0] = special
    flat[len(special) : 2 * len(special), dim - 1] = special
    grad_output = rng.standard_normal((shape[0], shape[1], *OUTPUT_SPATIAL[dim]))
    return input.astype(dtype), grid.astype(dtype), grad_output.astype(dtype)


def host(array):
    """A device array's contents as a NumPy array."""
    return array.copy_to_host()


def bits(array):
    """The raw bytes of an array, to compare results bitwise."""
    return np.ascontiguousarray(array).view(np.uint8)
