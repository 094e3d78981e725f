"""BLAS matrix products on strided views, callable from Numba kernels.

``np.dot`` inside a Numba kernel copies operands that are not contiguous and
always overwrites its output. The convolution kernels multiply column
ranges of larger matrices and accumulate several products into one result,
so :func:`gemm` takes 2-D views with any row stride, transposed or not, and
adds to ``c``: no copies and no temporaries. It calls the same BLAS as
Numba's ``np.dot`` (SciPy's, through Numba's ``numba_xxgemm`` helper), and
by name, so the kernels that use it can be cached.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, register_jitable
from numba.np.linalg import check_blas_return, ensure_blas, get_blas_kind

_CHAR = ir.IntType(8)
_VOID_P = _CHAR.as_pointer()
_INTP = cgutils.intp_t
#: Largest dimension or leading dimension BLAS takes (its Fortran integers are 32-bit).
MAX_BLAS_INT = 2**31 - 1


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Fortran ``xGEMM`` (column-major): c = alpha·op(a)·op(b) + beta·c; trans flags are 0 or 1."""
    if not all(isinstance(x, types.Array) for x in (a, b, c)) or len({a.dtype, b.dtype, c.dtype}) != 1:
        raise TypingError("_xxgemm: a, b and c must be arrays of one dtype")
    dtype = c.dtype
    signature = types.int32(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, sig, args):
        ensure_blas()
        flag_a, flag_b, m_, n_, k_, alpha_, a_, lda_, b_, ldb_, beta_, c_, ldc_ = args
        fnty = ir.FunctionType(ir.IntType(32), [_CHAR, _CHAR, _CHAR, _INTP, _INTP, _INTP, _VOID_P, _VOID_P, _INTP,
                                                _VOID_P, _INTP, _VOID_P, _VOID_P, _INTP])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")

        def trans(flag, flag_type):
            nonzero = builder.icmp_signed("!=", flag, context.get_constant(flag_type, 0))
            return builder.select(nonzero, ir.Constant(_CHAR, ord("t")), ir.Constant(_CHAR, ord("n")))

        def scalar_slot(value, value_type):
            return builder.bitcast(cgutils.alloca_once_value(builder, context.cast(builder, value, value_type, dtype)),
                                   _VOID_P)

        def data(array, array_type):
            return builder.bitcast(context.make_array(array_type)(context, builder, array).data, _VOID_P)

        def intp(value, value_type):
            return context.cast(builder, value, value_type, types.intp)

        status = builder.call(fn, (
            ir.Constant(_CHAR, ord(get_blas_kind(dtype))), trans(flag_a, sig.args[0]), trans(flag_b, sig.args[1]),
            intp(m_, sig.args[2]), intp(n_, sig.args[3]), intp(k_, sig.args[4]), scalar_slot(alpha_, sig.args[5]),
            data(a_, sig.args[6]), intp(lda_, sig.args[7]), data(b_, sig.args[8]), intp(ldb_, sig.args[9]),
            scalar_slot(beta_, sig.args[10]), data(c_, sig.args[11]), intp(ldc_, sig.args[12])))
        check_blas_return(context, builder, status)
        return status

    return signature, codegen


@register_jitable(inline="always")
def _layout(matrix):
    """(transposed, leading dimension) of a 2-D view with a unit stride along one axis, in elements."""
    rows, columns = matrix.shape
    row_stride = matrix.strides[0] // matrix.itemsize
    column_stride = matrix.strides[1] // matrix.itemsize
    if column_stride == 1 or columns == 1:
        return 0, max(row_stride, columns, 1)
    return 1, max(column_stride, rows, 1)


@register_jitable
def gemm(a, b, c, accumulate):
    """``c += a @ b`` if ``accumulate``, else ``c = a @ b``, for 2-D views of one dtype.

    Each of ``a`` and ``b`` may be row-major with any row stride or the
    transpose of such a view; ``c`` must be row-major. Without ``accumulate``
    the old contents of ``c`` are not read. Dimensions and strides must stay
    below :data:`MAX_BLAS_INT` (checked by the callers, outside the kernels).
    """
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        if not accumulate:
            c[:, :] = 0
        return
    # Row-major c is column-major cᵀ = bᵀ·aᵀ, and a row-major view read as column-major is its transpose.
    trans_a, lda = _layout(a)
    trans_b, ldb = _layout(b)
    _, ldc = _layout(c)
    _xxgemm(trans_b, trans_a, n, m, k, 1.0, b, ldb, a, lda, 1.0 if accumulate else 0.0, c, ldc)
