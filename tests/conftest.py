"""Shared test configuration.

Hypothesis runs few, derandomised examples without a deadline: the first call
of a kernel compiles it, and CI (2 cores, cold Numba cache) must stay fast and
reproducible.
"""

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "stn",
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("stn")


@pytest.fixture
def rng():
    """A seeded generator, so that every test sees the same data on every run."""
    return np.random.default_rng(20151205)


def _layout_variants(array):
    """Arrays equal to ``array`` in other memory layouts: name -> array."""
    strided = np.empty((*array.shape[:-1], 2 * array.shape[-1]), array.dtype)[..., ::2]
    strided[...] = array
    read_only = array.copy()
    read_only.flags.writeable = False
    buffer = np.empty(array.nbytes + 1, np.uint8)
    unaligned = np.frombuffer(buffer, array.dtype, array.size, offset=1).reshape(array.shape)
    unaligned[...] = array
    return {
        "unaligned": unaligned,
        "strided": strided,
        "negative_strides": np.ascontiguousarray(array[::-1, ..., ::-1])[::-1, ..., ::-1],
        "fortran": np.asfortranarray(array),
        "read_only": read_only,
        "byte_swapped": array.astype(array.dtype.newbyteorder("S")),
    }


@pytest.fixture
def layout_variants():
    """Strided, negatively strided, Fortran-ordered, read-only, unaligned and byte-swapped copies of an array."""
    return _layout_variants


def _results_for_every_thread_count(call):
    """``call()`` twice for each Numba thread count from 1 to the maximum, restoring the count."""
    saved = numba.get_num_threads()
    results = []
    try:
        for threads in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(threads)
            results += [call(), call()]
    finally:
        numba.set_num_threads(saved)
    return results


@pytest.fixture
def results_for_every_thread_count():
    """Run a callable twice per thread count; bitwise-deterministic code gives equal results."""
    return _results_for_every_thread_count


def _compiled_specialisations():
    """The compiled specialisations of every CPU kernel: a set of (kernel, signature)."""
    from stn_numba._cpu import grids, sampling

    named = [(f"{module.__name__}.{name}", kernel)
             for module in (grids, sampling) for name, kernel in vars(module).items()]
    named += [(f"sampling.kernels{case}[{direction}]", pair[direction])
              for case, pair in sampling._CASES.items() for direction in (0, 1)]
    named += [(f"sampling.pointwise{case}", kernel) for case, kernel in sampling._POINTWISE.items()]
    named += [(f"sampling.pointwise_backward{case}", kernel)
              for case, kernel in sampling._POINTWISE_BACKWARD.items()]
    return {(name, str(signature)) for name, kernel in named if hasattr(kernel, "signatures")
            for signature in kernel.signatures}


@pytest.fixture
def compiled_specialisations():
    """Compiled kernel specialisations, to check that layouts reach kernels as one array type."""
    return _compiled_specialisations
