"""The tests' dtype-dependent tolerances, in one table.

``np.testing.assert_allclose(got, expected, **tolerances(dtype, kind))``: the
kind says why a result may differ from the expected one, and so how far.
"""

import numpy as np

#: kind -> dtype -> (rtol, atol)
TOLERANCES = {
    # A grid point is a short dot product (a row of theta with the base point), rounded in the dtype.
    "grid": {np.float64: (1e-12, 1e-12), np.float32: (1e-5, 1e-5)},
    # A thin-plate spline grid solves the spline's linear system, whose conditioning costs float64 digits.
    "tps": {np.float64: (1e-10, 1e-10), np.float32: (1e-5, 1e-5)},
    # One formula evaluated in another order (CPU and GPU kernels differ in summation order and fused
    # multiply-adds; a Jacobian determinant against numpy's): results differ only in rounding.
    "rounding": {np.float64: (1e-12, 1e-12), np.float32: (2e-5, 2e-5)},
    # A sampler against the float64 reference: sums of up to 64 taps a point, whose weights and slopes
    # (scaled by half the axis size) are rounded in the dtype.
    "sampled": {np.float64: (1e-10, 1e-11), np.float32: (2e-4, 2e-4)},
}


def tolerances(dtype, kind):
    """``{"rtol": ..., "atol": ...}`` for comparing results of ``dtype`` of the given kind.

    Parameters
    ----------
    dtype : numpy dtype or scalar type
        The dtype the compared result was computed in (float32 or float64).
    kind : {"grid", "tps", "rounding", "sampled"}
        Why the result may differ from the expected one (see `TOLERANCES`).

    Returns
    -------
    dict
        Keyword arguments for ``np.testing.assert_allclose``.
    """
    rtol, atol = TOLERANCES[kind][np.dtype(dtype).type]
    return {"rtol": rtol, "atol": atol}
