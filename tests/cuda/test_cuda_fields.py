"""jacobian_determinant and its backward on the GPU, against the CPU."""

import numpy as np
import pytest

from cuda_cases import host
from sampler_cases import DTYPES
from stn_numba import fields
from tolerances import tolerances


@pytest.mark.parametrize("shape", [(2, 2, 3, 4), (1, 2, 1, 3), (1, 3, 2, 3, 4)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fields_on_the_gpu_match_the_cpu(cuda, rng, shape, dtype):
    u = rng.uniform(-0.8, 0.8, shape).astype(dtype)
    weights = rng.standard_normal((shape[0],) + shape[2:]).astype(dtype)
    d_u, d_weights = cuda.to_device(u), cuda.to_device(weights)
    np.testing.assert_allclose(host(fields.jacobian_determinant(d_u)), fields.jacobian_determinant(u),
                               **tolerances(dtype, "rounding"))
    np.testing.assert_allclose(host(fields.jacobian_determinant_backward(d_weights, d_u)),
                               fields.jacobian_determinant_backward(weights, u), **tolerances(dtype, "rounding"))
