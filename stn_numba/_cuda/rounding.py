"""CUDA lowering of the shared rounding functions `_coords.floor_value`,
`_coords.round_half_even` and `_coords.rounded_index`.

numba-cuda lowers neither ``np.floor`` nor ``np.rint`` (compiling a kernel that
calls them raises ``KeyError: <ufunc 'floor'>``), so the shared math calls these
two, which the CPU target maps to NumPy and this module maps to libdevice.
`rounded_index`, whose CPU form reads an index from a float's bits, keeps its
plain body here. The kernel modules import this module before they compile
anything.
"""

from numba.cuda import libdevice, types
from numba.cuda.extending import overload

from .._coords import _rounded_index, floor_value, round_half_even, rounded_index


@overload(floor_value, target="cuda")
def _floor_value_cuda(x):
    if x == types.float32:
        return lambda x: libdevice.floorf(x)
    return lambda x: libdevice.floor(x)


@overload(round_half_even, target="cuda")
def _round_half_even_cuda(x):
    if x == types.float32:
        return lambda x: libdevice.rintf(x)
    return lambda x: libdevice.rint(x)


@overload(rounded_index, target="cuda")
def _rounded_index_cuda(x, size):
    return lambda x, size: _rounded_index(x, size)
