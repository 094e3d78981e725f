"""Choosing the GPU: device arrays in and out, device="cuda", streams, foreign GPU arrays, errors."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import stn_numba
import stn_numba._cuda
from cuda_cases import SIMULATED, host
from stn_numba._arrays import is_device_array

REPO_ROOT = Path(__file__).resolve().parents[2]


def is_numba_device_array(value):
    return bool(getattr(value, "__cuda_ndarray__", False))


@pytest.fixture
def case(rng):
    input = rng.standard_normal((2, 2, 3, 4))
    grid = rng.uniform(-1.1, 1.1, (2, 3, 2, 2))
    grad_output = rng.standard_normal((2, 2, 3, 2))
    theta = rng.standard_normal((2, 2, 3))
    return input, grid, grad_output, theta


def test_device_arrays_in_device_arrays_out(cuda, case):
    input, grid, grad_output, theta = case
    d_input, d_grid, d_grad_output, d_theta = (cuda.to_device(a) for a in case)
    results = [
        stn_numba.affine_grid(d_theta, (2, 2, 3, 2)),
        stn_numba.affine_grid_backward(d_grid, (2, 2, 3, 2)),
        stn_numba.grid_sample(d_input, d_grid),
        *stn_numba.grid_sample_backward(d_grad_output, d_input, d_grid),
    ]
    assert all(is_numba_device_array(r) for r in results)
    np.testing.assert_allclose(host(results[2]), stn_numba.grid_sample(input, grid), rtol=1e-12, atol=1e-12)


def test_device_cuda_moves_numpy_arrays_to_the_gpu(case):
    input, grid, grad_output, theta = case
    grid_on_gpu = stn_numba.affine_grid(theta, (2, 2, 3, 2), device="cuda")
    output = stn_numba.grid_sample(input, grid, device="cuda")
    grad_input, grad_grid = stn_numba.grid_sample_backward(grad_output, input, grid, device="cuda")
    assert all(is_numba_device_array(r) for r in (grid_on_gpu, output, grad_input, grad_grid))
    np.testing.assert_allclose(host(output), stn_numba.grid_sample(input, grid), rtol=1e-12, atol=1e-12)
    # with device="cuda", GPU and host arrays may be mixed
    mixed = stn_numba.grid_sample(input, stn_numba.affine_grid(theta, (2, 2, 3, 2), device="cuda"), device="cuda")
    np.testing.assert_allclose(host(mixed), stn_numba.grid_sample(input, stn_numba.affine_grid(theta, (2, 2, 3, 2))),
                               rtol=1e-12, atol=1e-12)


def test_mixed_host_and_device_arrays_are_refused(cuda, case):
    input, grid, grad_output, _ = case
    with pytest.raises(ValueError, match="input is a host array, grid is a GPU array"):
        stn_numba.grid_sample(input, cuda.to_device(grid))
    with pytest.raises(ValueError, match="GPU array but the op runs on the CPU"):
        stn_numba.grid_sample(cuda.to_device(input), grid, device="cpu")


def test_bad_dtypes_on_the_gpu_get_the_usual_errors(cuda, case):
    input, grid, _, _ = case
    with pytest.raises(TypeError, match="input must have dtype float32 or float64, got int64"):
        stn_numba.grid_sample(cuda.to_device(input.astype(np.int64)), cuda.to_device(grid))
    with pytest.raises(TypeError, match="must share one dtype"):
        stn_numba.grid_sample(cuda.to_device(input.astype(np.float32)), cuda.to_device(grid))
    with pytest.raises(TypeError, match="grid must have dtype float32 or float64, got <U1"):
        stn_numba.grid_sample(input, np.full(grid.shape, "a"), device="cuda")


def test_strided_device_arrays_are_copied_on_the_device(cuda, rng):
    wide = rng.standard_normal((2, 2, 3, 8))
    grid = rng.uniform(-1.1, 1.1, (2, 3, 2, 2))
    strided = cuda.to_device(wide)[:, :, :, ::2]
    assert not strided.is_c_contiguous()
    output = stn_numba.grid_sample(strided, cuda.to_device(grid))
    np.testing.assert_allclose(host(output), stn_numba.grid_sample(wide[..., ::2], grid), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("deterministic", [False, True])
def test_stream_is_honoured(cuda, case, launch_streams, deterministic):
    """Every launch and every result is on the given stream."""
    stream = cuda.stream()
    input, grid, grad_output, theta = (cuda.to_device(a, stream=stream) for a in case)
    results = [
        stn_numba.affine_grid(theta, (2, 2, 3, 2), stream=stream),
        stn_numba.affine_grid_backward(grid, (2, 2, 3, 2), stream=stream),
        stn_numba.grid_sample(input, grid, stream=stream),
        *stn_numba.grid_sample_backward(grad_output, input, grid, stream=stream, deterministic=deterministic),
    ]
    stream.synchronize()
    assert launch_streams and all(s is stream for s in launch_streams)
    assert all(r.stream is stream for r in results)
    np.testing.assert_allclose(host(results[2]), stn_numba.grid_sample(case[0], case[1]), rtol=1e-12, atol=1e-12)


def test_calls_on_alternating_streams_each_launch_on_their_own(cuda, case, launch_streams):
    """The backend's launchers are bound once per stream: a later call never reuses another stream's."""
    first, second = cuda.stream(), cuda.stream()
    for stream in (first, second, None, first):
        launch_streams.clear()
        on = stream or 0
        stn_numba.grid_sample(*(cuda.to_device(a, stream=on) for a in case[:2]), stream=stream)
        assert launch_streams and all(s is on for s in launch_streams)


def test_stream_must_be_a_numba_stream(cuda, case):
    with pytest.raises(TypeError, match="stream must be None or a numba CUDA stream"):
        stn_numba.grid_sample(*(cuda.to_device(a) for a in case[:2]), stream=object())
    with pytest.raises(ValueError, match="stream is only meaningful for GPU work"):
        stn_numba.grid_sample(*case[:2], stream=cuda.stream())


def test_launch_block_size_does_not_change_results(cuda, case, monkeypatch):
    input, grid, grad_output, theta = (cuda.to_device(a) for a in case)

    def run():
        return [host(a) for a in (stn_numba.affine_grid_backward(grid, (2, 2, 3, 2)),
                                  stn_numba.grid_sample(input, grid),
                                  *stn_numba.grid_sample_backward(grad_output, input, grid, deterministic=True))]

    first = run()
    monkeypatch.setattr(stn_numba._cuda, "THREADS_PER_BLOCK", 8)
    for a, b in zip(first, run()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dim", [2, 3])
def test_empty_batch(cuda, dim):
    input = cuda.to_device(np.zeros((0, 2) + (3,) * dim, np.float32))
    grid = cuda.to_device(np.zeros((0,) + (2,) * dim + (dim,), np.float32))
    theta = cuda.to_device(np.zeros((0, dim, dim + 1), np.float32))
    size = (0, 2) + (2,) * dim
    assert host(stn_numba.affine_grid(theta, size)).shape == (0,) + (2,) * dim + (dim,)
    assert host(stn_numba.affine_grid_backward(grid, size)).shape == (0, dim, dim + 1)
    output = stn_numba.grid_sample(input, grid)
    assert is_numba_device_array(output) and output.shape == (0, 2) + (2,) * dim
    for deterministic in (False, True):
        grad_input, grad_grid = stn_numba.grid_sample_backward(output, input, grid, deterministic=deterministic)
        assert grad_input.shape == input.shape and grad_grid.shape == grid.shape


def test_empty_output_gives_zero_gradients(cuda, rng):
    input = cuda.to_device(rng.standard_normal((1, 1, 3, 3)))
    grid = cuda.to_device(np.zeros((1, 0, 4, 2)))
    grad_output = cuda.to_device(np.zeros((1, 1, 0, 4)))
    grad_input, grad_grid = stn_numba.grid_sample_backward(grad_output, input, grid)
    assert not host(grad_input).any() and grad_grid.shape == (1, 0, 4, 2)
    assert not host(stn_numba.affine_grid_backward(grid, (1, 1, 0, 4))).any()


# ---------------------------------------------------------------- foreign GPU arrays
@pytest.mark.skipif(not SIMULATED, reason="the simulator's own array type")
def test_simulator_arrays_are_detected(cuda):
    array = cuda.to_device(np.zeros(3))
    assert type(array).__name__ == "FakeCUDAArray" and not hasattr(array, "__cuda_array_interface__")
    assert is_device_array(array)


@pytest.mark.skipif(not SIMULATED, reason="only the simulator cannot view CUDA array interfaces")
def test_simulator_refuses_cuda_array_interface_objects_clearly(cuda, case):
    class Foreign:
        shape, dtype, ndim = (2, 3, 2, 2), np.dtype(np.float64), 4
        __cuda_array_interface__ = {"shape": (2, 3, 2, 2), "typestr": "<f8", "data": (0, False), "version": 3}

    with pytest.raises(TypeError, match="grid: the CUDA simulator cannot view __cuda_array_interface__"):
        stn_numba.grid_sample(cuda.to_device(case[0]), Foreign())


def cuda_torch():
    torch = pytest.importorskip("torch")
    if SIMULATED or not torch.cuda.is_available():
        pytest.skip("needs torch with a real CUDA GPU")
    return torch


def test_torch_tensors_are_used_in_place_and_results_viewed_without_copy(case):
    torch = cuda_torch()
    input, grid = (torch.as_tensor(a, device="cuda") for a in case[:2])
    output = stn_numba.grid_sample(input, grid)
    view = torch.as_tensor(output, device="cuda")
    assert view.data_ptr() == output.__cuda_array_interface__["data"][0]
    np.testing.assert_allclose(view.cpu().numpy(), stn_numba.grid_sample(*case[:2]), rtol=1e-12, atol=1e-12)
    # a strided tensor is read through its strides (copied on the GPU, not via the host)
    wide = torch.as_tensor(np.repeat(case[0], 2, axis=-1), device="cuda")[..., ::2]
    np.testing.assert_allclose(host(stn_numba.grid_sample(wide, grid)), stn_numba.grid_sample(*case[:2]),
                               rtol=1e-12, atol=1e-12)


def test_dlpack_only_tensors_are_viewed_without_copy(case):
    torch = cuda_torch()

    class DLPackOnly:
        """A CUDA tensor that offers only DLPack (as JAX arrays do)."""

        def __init__(self, tensor):
            self._tensor = tensor

        def __dlpack__(self, **kwargs):
            return self._tensor.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self._tensor.__dlpack_device__()

    input, grid = (torch.as_tensor(a, device="cuda") for a in case[:2])
    backend = stn_numba._cuda.backend.CudaBackend()
    view = backend.as_array(DLPackOnly(input), "input")
    assert view.__cuda_array_interface__["data"][0] == input.data_ptr()
    output = stn_numba.grid_sample(DLPackOnly(input), DLPackOnly(grid))
    np.testing.assert_allclose(host(output), stn_numba.grid_sample(*case[:2]), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- no GPU at all
def run_python(*pieces):
    """Run the code ``pieces`` (each dedented) in a fresh interpreter, without the simulator."""
    code = "".join(textwrap.dedent(piece) for piece in pieces)
    environment = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), environment.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, cwd=REPO_ROOT, timeout=300)


ASK_FOR_THE_GPU = """
    import numpy as np
    import stn_numba
    print(stn_numba.grid_sample(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 1, 2)))[0, 0, 0, 0])
    try:
        stn_numba.grid_sample(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 1, 2)), device="cuda")
    except Exception as error:
        print(type(error).__name__, error)
"""


@pytest.mark.subprocess
def test_without_numba_cuda_import_works_and_the_gpu_error_says_how_to_install():
    block_numba_cuda = """
        import sys
        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name in ("numba.cuda", "numba_cuda") or name.startswith(("numba.cuda.", "numba_cuda.")):
                    raise ImportError(f"No module named {name!r}")
        sys.meta_path.insert(0, Blocker())
    """
    result = run_python(block_numba_cuda, ASK_FOR_THE_GPU)
    assert result.returncode == 0, result.stderr
    cpu_line, error_line = result.stdout.strip().splitlines()
    assert cpu_line == "1.0"
    assert error_line.startswith("CudaUnavailableError") and "pip install stn-numba[cuda]" in error_line


@pytest.mark.subprocess
def test_without_a_gpu_import_works_and_the_gpu_error_says_what_is_missing():
    probe = run_python("from numba import cuda; print(cuda.is_available())")
    if probe.stdout.strip() != "False":
        pytest.skip("this machine has a usable GPU")
    result = run_python(ASK_FOR_THE_GPU)
    assert result.returncode == 0, result.stderr
    cpu_line, error_line = result.stdout.strip().splitlines()
    assert cpu_line == "1.0"
    assert error_line.startswith("CudaUnavailableError") and "CUDA GPU and its driver" in error_line
