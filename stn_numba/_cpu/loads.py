"""Loads at a 32-bit offset, for gathers that vectorise well.

Numba indexes arrays with int64, so a vectorised loop of tap reads becomes
gathers with 64-bit offsets (``vgatherqps``: 8 lanes a gather on AVX-512).
A read of ``base + offset`` with ``offset`` an int32 sign-extended in the
address computation lets LLVM use 32-bit offsets (``vgatherdps``: 16
lanes). The pointwise kernels use these only where every offset fits in
int32 (`narrow`); ``base`` (an image's start) stays int64.

`prefetch` asks the cache for a line ahead of the gathers that will read it
(a gather starts no hardware prefetcher).

The reads of `load_at` and `load_pair` and the writes of `store_at` carry
LLVM alias scopes that say they never alias each other: Numba makes that
promise only inside parallel loops, and without it a serial loop that
gathers and stores does not vectorise. The kernels read inputs with the
former and write a fresh output with the latter, never the same array.
"""

import math

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_INT32 = ir.IntType(32)
_INT64 = ir.IntType(64)
# A plane (one channel of one image) is read with int32 offsets when it has
# fewer pixels than this: then ``4 * size`` of every axis (the safe-coordinate
# bound, see `stn_numba._coords`), every tap index and every flat offset fit
# in int32.
_NARROW_PLANE = 2**29
# Most pixels along an axis of such a plane: the nearest tap's rounding from
# a float32's bits (`stn_numba._coords.rounded_index`) is exact to 2**22, and
# pair taps (`stn_numba._coords.linear_pair_taps`), whose index arithmetic is
# in floating point, to 2**24.
_NARROW_AXIS = 2**22


def narrow(plane_shape, pairs=True):
    """Whether planes of ``plane_shape`` ((D,) H, W) are read with int32
    offsets and, in the bilinear kernels, pairs of adjacent pixels, rows
    (and slices) (which need at least 2 pixels along every axis;
    ``pairs=False``: a kernel that reads none)."""
    return (all((2 if pairs else 1) <= size <= _NARROW_AXIS for size in plane_shape)
            and math.prod(plane_shape) < _NARROW_PLANE)


def _address(context, builder, array_type, array, base, base_type, offset, count=1):
    """The address of ``array.flat[base + offset]``; bounds-checked for
    ``count`` items when Numba's bounds checking is on (the fuzz tests)."""
    array = context.make_array(array_type)(context, builder, array)
    base = context.cast(builder, base, base_type, types.int64)
    offset = builder.sext(offset, _INT64)
    if context.enable_boundscheck:
        first = builder.add(base, offset)
        cgutils.do_boundscheck(context, builder, first, array.nitems)
        cgutils.do_boundscheck(context, builder, builder.add(first, ir.Constant(_INT64, count - 1)),
                               array.nitems)
    return builder.gep(builder.gep(array.data, [base], inbounds=True), [offset], inbounds=True)


def _checked(array, base, offset):
    return (isinstance(array, types.Array) and isinstance(base, types.Integer)
            and isinstance(offset, types.Integer) and offset.bitwidth <= 32)


@intrinsic
def load_at(typingctx, array, base, offset):
    """``array.flat[base + offset]``, ``offset`` an int32 (unchecked unless
    Numba's bounds checking is on)."""
    if not _checked(array, base, offset):
        return None

    def codegen(context, builder, signature, args):
        load = builder.load(_address(context, builder, signature.args[0], args[0], args[1],
                                     signature.args[1], args[2]))
        _tag(builder, load, "read")
        return load

    return array.dtype(array, base, offset), codegen


@intrinsic
def load_pair(typingctx, array, base, offset):
    """``(array.flat[base + offset], array.flat[base + offset + 1])``
    (unchecked unless Numba's bounds checking is on); for float32, one 64-bit
    load (a gather of pairs vectorised)."""
    if not _checked(array, base, offset):
        return None
    pair = types.UniTuple(array.dtype, 2)

    def codegen(context, builder, signature, args):
        address = _address(context, builder, signature.args[0], args[0], args[1],
                           signature.args[1], args[2], count=2)
        value_type = address.type.pointee
        if value_type == ir.FloatType():
            word = builder.load(builder.bitcast(address, _INT64.as_pointer()), align=4)
            _tag(builder, word, "read")
            low = builder.bitcast(builder.trunc(word, _INT32), value_type)
            high = builder.bitcast(builder.trunc(builder.lshr(word, ir.Constant(_INT64, 32)), _INT32),
                                   value_type)
        else:
            low = builder.load(address)
            high = builder.load(builder.gep(address, [ir.Constant(_INT64, 1)], inbounds=True))
        return context.make_tuple(builder, signature.return_type, (low, high))

    return pair(array, base, offset), codegen


@intrinsic
def prefetch(typingctx, array, index):
    """Ask the cache for the line holding ``array.flat[index]``, for reading
    soon (``llvm.prefetch``: no value changes; bounds-checked when Numba's
    bounds checking is on)."""
    if not (isinstance(array, types.Array) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        address = _address(context, builder, signature.args[0], args[0], args[1], signature.args[1],
                           ir.Constant(_INT32, 0))
        byte_pointer = ir.IntType(8).as_pointer()
        function = builder.module.declare_intrinsic(
            "llvm.prefetch", fnty=ir.FunctionType(ir.VoidType(), [byte_pointer, _INT32, _INT32, _INT32]))
        # a read (0), kept in every cache level (3), of data (1)
        builder.call(function, [builder.bitcast(address, byte_pointer), ir.Constant(_INT32, 0),
                                ir.Constant(_INT32, 3), ir.Constant(_INT32, 1)])
        return context.get_dummy_value()

    return types.none(array, index), codegen


def _tag(builder, instruction, kind):
    """Put ``instruction`` (a ``kind`` "read" or "write") in its alias scope,
    with no alias in the other (see the module docstring)."""
    module = builder.module
    domain = module.add_metadata([ir.MetaDataString(module, "stn_numba.kernel")])
    read = module.add_metadata([ir.MetaDataString(module, "stn_numba.read"), domain])
    write = module.add_metadata([ir.MetaDataString(module, "stn_numba.write"), domain])
    own, other = (read, write) if kind == "read" else (write, read)
    instruction.set_metadata("alias.scope", module.add_metadata([own]))
    instruction.set_metadata("noalias", module.add_metadata([other]))


@intrinsic
def store_at(typingctx, array, index, value):
    """``array.flat[index] = value``, a write no `load_at`/`load_pair` read aliases."""
    if not (isinstance(array, types.Array) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        address = _address(context, builder, signature.args[0], args[0], args[1], signature.args[1],
                           ir.Constant(_INT32, 0))
        value = context.cast(builder, args[2], signature.args[2], signature.args[0].dtype)
        store = builder.store(value, address)
        _tag(builder, store, "write")
        return context.get_dummy_value()

    return types.none(array, index, value), codegen
