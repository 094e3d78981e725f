"""The CUDA suite: the ``_cuda`` kernels against the CPU kernels, and GPU dispatch.

It runs in its own process, under the Numba CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, which must be set before numba is imported; see
scripts/run_tests.sh) or, without it, on a real GPU. With neither, every test
here is skipped. Under the simulator, which runs each GPU thread as a Python
thread, blocks are shrunk to 32 threads and shapes are tiny.
"""

import pytest

import stn_numba._cuda
from cuda_cases import SIMULATED


def _cuda_unavailable_reason():
    try:
        from numba import cuda
    except ImportError as error:
        return f"numba-cuda is not installed ({error})"
    if not cuda.is_available():
        return "no CUDA GPU (set NUMBA_ENABLE_CUDASIM=1 to run these tests under the simulator)"
    return None


UNAVAILABLE = _cuda_unavailable_reason()


def pytest_configure(config):
    config.addinivalue_line("markers", "subprocess: runs in a fresh interpreter; needs no GPU")


def pytest_collection_modifyitems(config, items):
    if UNAVAILABLE is None:
        return
    skip = pytest.mark.skip(reason=UNAVAILABLE)
    for item in items:
        if "tests/cuda/" in item.nodeid.replace("\\", "/") and "subprocess" not in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _small_blocks_under_the_simulator():
    """32-thread blocks under the simulator (each thread is a Python thread)."""
    saved = stn_numba._cuda.THREADS_PER_BLOCK
    if SIMULATED:
        stn_numba._cuda.THREADS_PER_BLOCK = 32
    yield
    stn_numba._cuda.THREADS_PER_BLOCK = saved


@pytest.fixture(scope="session")
def cuda():
    """The numba.cuda module (real or simulated)."""
    from numba import cuda

    return cuda


@pytest.fixture
def launch_streams(monkeypatch):
    """The stream of every CUDA kernel launch the test makes, in order."""
    from stn_numba._cuda import grids, sampling

    launched_on = []

    def spy(kernel, count, stream):
        launched_on.append(stream)
        return stn_numba._cuda.launch(kernel, count, stream)

    monkeypatch.setattr(grids, "launch", spy)
    monkeypatch.setattr(sampling, "launch", spy)
    return launched_on
